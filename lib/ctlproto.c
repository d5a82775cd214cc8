/*
 * ctlproto: line framing and JSON codec for the control socket (see ctlproto.h).
 */
#include "ctlproto.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

void ctl_linebuf_init(CtlLineBuf *lb, size_t max_line)
{
    memset(lb, 0, sizeof(*lb));
    lb->max_line = max_line ? max_line : CTLPROTO_DEFAULT_MAX_LINE;
}

void ctl_linebuf_done(CtlLineBuf *lb)
{
    free(lb->buf);
    memset(lb, 0, sizeof(*lb));
}

static int ctl_linebuf_append(CtlLineBuf *lb, const char *data, size_t len)
{
    if (lb->len + len + 1 > lb->cap) {
        size_t cap = lb->cap ? lb->cap : 1024;
        while (cap < lb->len + len + 1)
            cap *= 2;
        char *nb = realloc(lb->buf, cap);
        if (!nb)
            return -ENOMEM;
        lb->buf = nb;
        lb->cap = cap;
    }
    memcpy(lb->buf + lb->len, data, len);
    lb->len += len;
    return 0;
}

int ctl_linebuf_feed(CtlLineBuf *lb, const char *data, size_t len, CtlLineFn on_line, void *ctx)
{
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;

        if (lb->discarding) {
            if (nl)
                lb->discarding = false;
        } else if (lb->len + take > lb->max_line) {
            lb->len = 0;
            lb->discarding = !nl;
            int r = on_line(ctx, NULL, 0);
            if (r)
                return r;
        } else {
            int r = ctl_linebuf_append(lb, data, take);
            if (r < 0)
                return r;
            if (nl) {
                size_t l = lb->len;
                if (l > 0 && lb->buf[l - 1] == '\r')
                    l--;
                lb->buf[l] = '\0';
                lb->len = 0;
                r = on_line(ctx, lb->buf, l);
                if (r)
                    return r;
            }
        }
        if (!nl)
            break;
        len -= take + 1;
        data = nl + 1;
    }
    /* Do not keep a large buffer around after one big request. */
    if (lb->len == 0 && lb->cap > 64 * 1024) {
        free(lb->buf);
        lb->buf = NULL;
        lb->cap = 0;
    }
    return 0;
}

void ctl_request_done(CtlRequest *req)
{
    json_decref(req->id);
    json_decref(req->args);
    free(req->cmd);
    memset(req, 0, sizeof(*req));
}

int ctl_request_parse(const char *line, size_t len, CtlRequest *req, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *root, *id, *cmd, *args;
    const char *key;
    json_t *val;

    memset(req, 0, sizeof(*req));
    req->id = json_null();
    root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "invalid JSON at column %d: %s", jerr.column, jerr.text);
        return DR_EPROTO;
    }
    if (!json_is_object(root)) {
        snprintf(err, errlen, "a request must be a JSON object");
        json_decref(root);
        return DR_EPROTO;
    }
    id = json_object_get(root, "id");
    if (id) {
        if (json_is_object(id) || json_is_array(id)) {
            snprintf(err, errlen, "'id' must be a number, string or null");
            json_decref(root);
            return DR_EPROTO;
        }
        json_decref(req->id);
        req->id = json_incref(id);
    }
    json_object_foreach(root, key, val) {
        if (strcmp(key, "id") && strcmp(key, "cmd") && strcmp(key, "args")) {
            snprintf(err, errlen, "unknown field '%.64s' in request", key);
            json_decref(root);
            return DR_EPROTO;
        }
    }
    cmd = json_object_get(root, "cmd");
    if (!json_is_string(cmd) || json_string_length(cmd) == 0) {
        snprintf(err, errlen, "'cmd' must be a non-empty string");
        json_decref(root);
        return DR_EPROTO;
    }
    args = json_object_get(root, "args");
    if (args && !json_is_object(args) && !json_is_null(args)) {
        snprintf(err, errlen, "'args' must be an object");
        json_decref(root);
        return DR_EPROTO;
    }
    req->cmd = strdup(json_string_value(cmd));
    req->args = args && json_is_object(args) ? json_incref(args) : json_object();
    json_decref(root);
    if (!req->cmd || !req->args) {
        ctl_request_done(req);
        return -ENOMEM;
    }
    return 0;
}

static char *ctl_dump_line(json_t *obj)
{
    char *s = json_dumps(obj, JSON_COMPACT | JSON_ENSURE_ASCII);
    json_decref(obj);
    if (!s)
        return NULL;
    size_t l = strlen(s);
    char *out = realloc(s, l + 2);
    if (!out) {
        free(s);
        return NULL;
    }
    out[l] = '\n';
    out[l + 1] = '\0';
    return out;
}

char *ctl_reply_ok(const json_t *id, const json_t *result)
{
    json_t *o = json_pack("{s:O?,s:b,s:O?}", "id", id, "ok", 1, "result", result);
    return o ? ctl_dump_line(o) : NULL;
}

/* Length of the valid UTF-8 sequence at p (1 to 4), or 0 when the byte at p does not start one. */
static size_t ctl_utf8_seq_len(const unsigned char *p)
{
    unsigned char b = p[0], lo = 0x80, hi = 0xbf;
    size_t n;

    if (b < 0x80)
        return 1;
    if (b >= 0xc2 && b <= 0xdf)
        n = 2;
    else if (b >= 0xe0 && b <= 0xef)
        n = 3, lo = b == 0xe0 ? 0xa0 : 0x80, hi = b == 0xed ? 0x9f : 0xbf; /* no overlongs, no surrogates */
    else if (b >= 0xf0 && b <= 0xf4)
        n = 4, lo = b == 0xf0 ? 0x90 : 0x80, hi = b == 0xf4 ? 0x8f : 0xbf; /* nothing past U+10FFFF */
    else
        return 0;
    if (p[1] < lo || p[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (p[i] < 0x80 || p[i] > 0xbf)
            return 0;
    return n;
}

/* A copy of `text` with every byte that is not part of valid UTF-8 replaced by '?'. Caller frees. */
static char *ctl_utf8_repair(const char *text)
{
    size_t len = strlen(text);
    char *out = malloc(len + 1);

    if (!out)
        return NULL;
    for (size_t i = 0; i < len;) {
        size_t n = ctl_utf8_seq_len((const unsigned char *)text + i);
        if (n == 0) {
            out[i++] = '?';
        } else {
            memcpy(out + i, text + i, n);
            i += n;
        }
    }
    out[len] = '\0';
    return out;
}

/* The message may quote what the client sent (jansson's error text, a cut "'%.64s'"): repaired
 * into valid UTF-8, so that every request gets its answer. */
char *ctl_reply_error(const json_t *id, const char *code, const char *message)
{
    char *c = ctl_utf8_repair(code), *m = ctl_utf8_repair(message);
    json_t *o = c && m ? json_pack("{s:O?,s:b,s:{s:s,s:s}}", "id", id, "ok", 0, "error", "code", c, "message", m)
                       : NULL;

    free(c);
    free(m);
    return o ? ctl_dump_line(o) : NULL;
}

char *ctl_event_line(const json_t *event)
{
    json_t *o = json_pack("{s:O}", "event", event);
    return o ? ctl_dump_line(o) : NULL;
}

char *ctl_request_line(json_int_t id, const char *cmd, const json_t *args)
{
    json_t *o = args ? json_pack("{s:I,s:s,s:O}", "id", id, "cmd", cmd, "args", args)
                     : json_pack("{s:I,s:s,s:{}}", "id", id, "cmd", cmd, "args");
    return o ? ctl_dump_line(o) : NULL;
}
