/*
 * fuzz_ctlproto: libFuzzer harness for lib/ctlproto, the control protocol's framing and codec.
 *
 * Owns nothing but the checks. The first two bytes choose the line limit and the split points; the
 * rest is a byte stream from a client. The stream is framed twice, fed whole and fed in pieces
 * whose sizes come from the fuzzer: both must yield the same lines and the same drops (framing
 * does not depend on how the bytes arrive). Every line is then decoded with ctl_request_parse and
 * its contract checked, and answered the way the daemon answers: the reply (ok or error, with the
 * request's id) must always be produced, be one line, and decode back to the same id; a request
 * line re-encoded the way drctl writes it must decode to the same command and arguments.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctlproto.h"
#include "err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct FuzzLines {
    char **line; /* NULL entry: a dropped over-long line */
    size_t *len;
    size_t n, cap;
} FuzzLines;

static int fuzz_ctlproto_collect(void *ctx, const char *line, size_t len)
{
    FuzzLines *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 16;
        l->line = realloc(l->line, l->cap * sizeof(*l->line));
        l->len = realloc(l->len, l->cap * sizeof(*l->len));
        if (!l->line || !l->len)
            abort();
    }
    if (line && line[len] != '\0')
        abort(); /* lines are NUL-terminated for the decoder */
    if (line && memchr(line, '\n', len))
        abort();
    l->line[l->n] = line ? memcpy(malloc(len + 1), line, len + 1) : NULL;
    l->len[l->n] = len;
    l->n++;
    return 0;
}

static void fuzz_ctlproto_lines_free(FuzzLines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->line[i]);
    free(l->line);
    free(l->len);
}

/* A reply must exist, be exactly one line, and carry `id` back. */
static void fuzz_ctlproto_check_reply(char *reply, const json_t *id)
{
    if (!reply)
        abort();
    size_t n = strlen(reply);
    if (n < 2 || reply[n - 1] != '\n' || memchr(reply, '\n', n - 1))
        abort();
    json_t *back = json_loadb(reply, n - 1, 0, NULL);
    if (!json_is_object(back) || !json_equal(json_object_get(back, "id"), id))
        abort();
    json_decref(back);
    free(reply);
}

static void fuzz_ctlproto_decode(const char *line, size_t len)
{
    CtlRequest req;
    char err[512] = "";

    int r = ctl_request_parse(line, len, &req, err, sizeof(err));
    if (!req.id || json_is_object(req.id) || json_is_array(req.id))
        abort();
    if (r < 0) {
        if (r != DR_EPROTO || !err[0] || req.cmd)
            abort();
        fuzz_ctlproto_check_reply(ctl_reply_error(req.id, err_name(DR_EPROTO), err), req.id);
        ctl_request_done(&req);
        return;
    }
    if (!req.cmd || !json_is_object(req.args))
        abort();
    fuzz_ctlproto_check_reply(ctl_reply_ok(req.id, req.args), req.id);
    char msg[128];
    snprintf(msg, sizeof(msg), "unknown command '%.64s'", req.cmd);
    fuzz_ctlproto_check_reply(ctl_reply_error(req.id, err_name(DR_EUNKNOWNCMD), msg), req.id);

    /* drctl's encoding of the same request decodes to the same command and arguments. */
    if (req.cmd[0]) { /* "" when the command began with \u0000 */
        char *again = ctl_request_line(7, req.cmd, req.args);
        CtlRequest req2;
        if (!again)
            abort();
        if (ctl_request_parse(again, strlen(again) - 1, &req2, err, sizeof(err)) != 0 ||
            strcmp(req2.cmd, req.cmd) != 0 || !json_equal(req2.args, req.args) ||
            json_integer_value(req2.id) != 7)
            abort();
        ctl_request_done(&req2);
        free(again);
    }
    ctl_request_done(&req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FuzzLines whole = {0}, split = {0};
    CtlLineBuf lb;

    if (size < 2)
        return -1;
    size_t max_line = data[0] & 1 ? 64 : CTLPROTO_DEFAULT_MAX_LINE;
    uint32_t seed = data[1];
    const char *in = (const char *)data + 2;
    size_t len = size - 2;

    ctl_linebuf_init(&lb, max_line);
    if (ctl_linebuf_feed(&lb, in, len, fuzz_ctlproto_collect, &whole) != 0)
        abort();
    ctl_linebuf_done(&lb);

    ctl_linebuf_init(&lb, max_line);
    for (size_t off = 0; off < len;) {
        seed = seed * 1103515245u + 12345u;
        size_t step = 1 + (seed >> 16) % 17;
        if (step > len - off)
            step = len - off;
        if (ctl_linebuf_feed(&lb, in + off, step, fuzz_ctlproto_collect, &split) != 0)
            abort();
        off += step;
    }
    ctl_linebuf_done(&lb);

    if (whole.n != split.n)
        abort();
    for (size_t i = 0; i < whole.n; i++) {
        if ((whole.line[i] == NULL) != (split.line[i] == NULL) || whole.len[i] != split.len[i] ||
            (whole.line[i] && memcmp(whole.line[i], split.line[i], whole.len[i]) != 0))
            abort();
        if (whole.line[i] && whole.len[i] > max_line)
            abort();
        if (whole.line[i] && whole.len[i] > 0)
            fuzz_ctlproto_decode(whole.line[i], whole.len[i]);
    }
    fuzz_ctlproto_lines_free(&whole);
    fuzz_ctlproto_lines_free(&split);
    return 0;
}
