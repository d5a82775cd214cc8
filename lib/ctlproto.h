/*
 * ctlproto: the control-socket wire protocol, shared by the daemon and drctl.
 *
 * Owns framing and the request/reply codec. One JSON object per line (UTF-8, '\n' terminated):
 *   request  {"id":1,"cmd":"status","args":{}}
 *   reply    {"id":1,"ok":true,"result":{...}}
 *            {"id":1,"ok":false,"error":{"code":"unknown_command","message":"..."}}
 *   event    {"event":{...}}            (streamed to clients that asked to watch)
 * "id" may be any JSON scalar and is echoed back unchanged (null when the request had none or
 * could not be parsed). Lines longer than the limit are discarded whole and reported once.
 */
#ifndef DRSUP_CTLPROTO_H
#define DRSUP_CTLPROTO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define CTLPROTO_DEFAULT_MAX_LINE (64u * 1024u)

/* Accumulates bytes from a stream and yields complete lines. */
typedef struct CtlLineBuf {
    char *buf;
    size_t len, cap;
    size_t max_line;
    bool discarding; /* inside an over-long line: drop bytes until the next '\n' */
} CtlLineBuf;

void ctl_linebuf_init(CtlLineBuf *lb, size_t max_line);
void ctl_linebuf_done(CtlLineBuf *lb);

/*
 * Feed bytes; for each complete line call on_line(ctx, line, len) (line NUL-terminated, no '\n'),
 * or on_line(ctx, NULL, 0) once for each over-long line that was dropped. Stops early and returns
 * the callback's value when it returns nonzero. Returns 0 or -ENOMEM.
 */
typedef int (*CtlLineFn)(void *ctx, const char *line, size_t len);
int ctl_linebuf_feed(CtlLineBuf *lb, const char *data, size_t len, CtlLineFn on_line, void *ctx);

typedef struct CtlRequest {
    json_t *id;   /* owned; json_null() when absent */
    char *cmd;    /* owned */
    json_t *args; /* owned; an empty object when absent */
} CtlRequest;

/*
 * Parse one request line. On failure returns DR_EPROTO with a message in err; req->id is still
 * set when it could be recovered, so the error reply can carry it.
 */
int ctl_request_parse(const char *line, size_t len, CtlRequest *req, char *err, size_t errlen);
void ctl_request_done(CtlRequest *req);

/* Encode replies as one line with the trailing '\n'. Caller frees. Steals nothing. An error's code
 * and message may hold any bytes: what is not valid UTF-8 is sent as '?' (NULL only without memory). */
char *ctl_reply_ok(const json_t *id, const json_t *result);
char *ctl_reply_error(const json_t *id, const char *code, const char *message);
char *ctl_event_line(const json_t *event);
/* Encode a request line (drctl). */
char *ctl_request_line(json_int_t id, const char *cmd, const json_t *args);

#endif
