/*
 * venue_text: the pure text work of the venue adapter: expanding {{reason}}-style templates
 * (JSON-escaped, percent-encoded or raw), signing a request (HMAC-SHA256, venue.sign) and reading the platform's mode from an answer (the
 * positions and fills answers are read in venue_map.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/venue/venue.h"
#include "cap/venue/venue_internal.h"
#include "err.h"
#include "jpath.h"

/* ---- templates and answers ---- */

char *venue_expand(const char *tmpl, char how, const char *const vars[][2], size_t n_vars)
{
    size_t cap = strlen(tmpl) * 2 + 64, o = 0;
    char *out = malloc(cap);

    if (!out)
        return NULL;
#define VENUE_PUT(ch)                                                                                \
    do {                                                                                             \
        if (o + 8 >= cap) {                                                                          \
            char *n_ = realloc(out, cap *= 2);                                                       \
            if (!n_) {                                                                               \
                free(out);                                                                           \
                return NULL;                                                                         \
            }                                                                                        \
            out = n_;                                                                                \
        }                                                                                            \
        out[o++] = (ch);                                                                             \
    } while (0)
    for (const char *p = tmpl; *p;) {
        const char *val = NULL;
        size_t skip = 0;
        if (p[0] == '{' && p[1] == '{') {
            for (size_t i = 0; i < n_vars; i++) {
                size_t kl = strlen(vars[i][0]);
                if (strncmp(p + 2, vars[i][0], kl) == 0 && strncmp(p + 2 + kl, "}}", 2) == 0) {
                    val = vars[i][1] ? vars[i][1] : "";
                    skip = kl + 4;
                }
            }
        }
        if (!val) {
            VENUE_PUT(*p++);
            continue;
        }
        for (const unsigned char *s = (const unsigned char *)val; *s; s++) {
            if (how == 'j' && (*s == '"' || *s == '\\')) {
                VENUE_PUT('\\');
                VENUE_PUT((char)*s);
            } else if (how == 'j' && *s < 0x20) {
                char esc[8];
                snprintf(esc, sizeof(esc), "\\u%04x", *s);
                for (char *e = esc; *e; e++)
                    VENUE_PUT(*e);
            } else if (how == 'u' && !((*s >= 'A' && *s <= 'Z') || (*s >= 'a' && *s <= 'z') ||
                                       (*s >= '0' && *s <= '9') || strchr("-._~", *s))) {
                char esc[4];
                snprintf(esc, sizeof(esc), "%%%02X", *s);
                for (char *e = esc; *e; e++)
                    VENUE_PUT(*e);
            } else {
                VENUE_PUT((char)*s);
            }
        }
        p += skip;
    }
    out[o] = '\0';
#undef VENUE_PUT
    return out;
}

VenueMode venue_parse_mode(const ConfigVenue *cfg, const json_t *answer, const char *text)
{
    char buf[128];
    const char *value = NULL;

    const char *path = cfg->mode_field ? cfg->mode_field : "mode";
    if (path[0] && (json_is_object(answer) || json_is_array(answer))) {
        const json_t *m = jpath_get(answer, path);
        value = json_is_true(m) ? "true" : json_is_false(m) ? "false" : json_string_value(m);
    } else if (json_is_string(answer)) {
        value = json_string_value(answer);
    } else if (text) {
        size_t n = 0;
        while (*text == ' ' || *text == '\n' || *text == '\t' || *text == '\r')
            text++;
        while (text[n] && n + 1 < sizeof(buf) && text[n] != '\n' && text[n] != '\r') {
            buf[n] = text[n];
            n++;
        }
        while (n > 0 && buf[n - 1] == ' ')
            n--;
        buf[n] = '\0';
        value = buf;
    }
    if (!value)
        return VENUE_MODE_UNKNOWN;
    static const VenueMode modes[3] = {VENUE_MODE_HALTED, VENUE_MODE_SHADOW, VENUE_MODE_LIVE};
    for (int m = 0; m < 3; m++)
        for (size_t i = 0; i < cfg->n_mode_values[m]; i++)
            if (strcmp(value, cfg->mode_values[m][i]) == 0)
                return modes[m];
    return VENUE_MODE_UNKNOWN;
}


/* ---- signing ---- */

int venue_sign_headers(const ConfigVenueSign *g, const char *method, const char *url, const char *body, int64_t now_ms,
                       char **ret_sig, char **ret_ts)
{
    char stamp[32], hex[2 * EVP_MAX_MD_SIZE + 1], b64[4 * ((EVP_MAX_MD_SIZE + 2) / 3) + 1];
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int maclen = 0;
    const char *path = "/", *p;
    int r = 0;

    *ret_sig = *ret_ts = NULL;
    snprintf(stamp, sizeof(stamp), "%" PRId64, g->seconds ? now_ms / 1000 : now_ms);
    /* the path and query as sent: after scheme://authority */
    if ((p = strstr(url, "://")) && (p = strchr(p + 3, '/')))
        path = p;
    const char *vars[4][2] = {{"timestamp", stamp}, {"method", method}, {"path", path}, {"body", body ? body : ""}};
    char *payload = venue_expand(g->payload, 'r', vars, 4);
    if (!payload)
        return -ENOMEM;
    if (!HMAC(EVP_sha256(), g->key, (int)g->key_len, (const unsigned char *)payload, strlen(payload), mac, &maclen))
        r = DR_EINTERNAL;
    explicit_bzero(payload, strlen(payload));
    free(payload);
    if (r < 0)
        return r;
    if (g->base64) {
        EVP_EncodeBlock((unsigned char *)b64, mac, (int)maclen);
    } else {
        for (unsigned int i = 0; i < maclen; i++)
            snprintf(hex + 2 * i, 3, "%02x", mac[i]);
    }
    if (asprintf(ret_sig, "%s: %s", g->header, g->base64 ? b64 : hex) < 0) {
        *ret_sig = NULL;
        return -ENOMEM;
    }
    if (g->timestamp_header && asprintf(ret_ts, "%s: %s", g->timestamp_header, stamp) < 0) {
        *ret_ts = NULL;
        free(*ret_sig);
        *ret_sig = NULL;
        return -ENOMEM;
    }
    return 0;
}
