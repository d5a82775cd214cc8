/*
 * listenaddr: parsing "HOST:PORT", "[V6]:PORT" and "unix:/PATH" (see listenaddr.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "listenaddr.h"

int listenaddr_parse(const char *text, ListenAddr *ret, char *why, size_t whylen)
{
    unsigned char bin[16];

    memset(ret, 0, sizeof(*ret));
    if (!text || !text[0]) {
        snprintf(why, whylen, "empty address");
        return -EINVAL;
    }
    if (!strncmp(text, "unix:", 5)) {
        if (text[5] != '/' || strlen(text + 5) >= sizeof(ret->path)) {
            snprintf(why, whylen, "'%s': a Unix socket needs an absolute path shorter than %zu bytes", text,
                     sizeof(ret->path));
            return -EINVAL;
        }
        ret->kind = LISTENADDR_UNIX;
        snprintf(ret->path, sizeof(ret->path), "%s", text + 5);
        return 0;
    }
    const char *colon = strrchr(text, ':');
    char *end = NULL;
    long port = colon ? strtol(colon + 1, &end, 10) : -1;
    size_t hl = colon ? (size_t)(colon - text) : 0;
    if (!colon || !end || *end || colon[1] == '\0' || port < 1 || port > 65535 || hl == 0 || hl >= sizeof(ret->host)) {
        snprintf(why, whylen, "'%s' must be HOST:PORT, [IPV6]:PORT or unix:/PATH (port 1-65535)", text);
        return -EINVAL;
    }
    if (text[0] == '[') {
        if (hl < 3 || text[hl - 1] != ']') {
            snprintf(why, whylen, "'%s': an IPv6 address goes in brackets, [::1]:9187", text);
            return -EINVAL;
        }
        memcpy(ret->host, text + 1, hl - 2);
        ret->kind = LISTENADDR_TCP6;
    } else {
        memcpy(ret->host, text, hl);
        ret->kind = LISTENADDR_TCP4;
    }
    if (inet_pton(ret->kind == LISTENADDR_TCP6 ? AF_INET6 : AF_INET, ret->host, bin) != 1) {
        snprintf(why, whylen, "'%s': '%s' is not a numeric %s address (names are not resolved)", text, ret->host,
                 ret->kind == LISTENADDR_TCP6 ? "IPv6" : "IPv4");
        return -EINVAL;
    }
    ret->port = (int)port;
    return 0;
}
