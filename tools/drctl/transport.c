/*
 * drctl transport: one request/reply exchange over the control socket.
 *
 * Owns connecting to the Unix socket, sending the request line, reading reply lines (ctlproto
 * framing) until the reply arrives or the timeout passes, and, for a streaming command (watch),
 * printing the events that follow until the daemon hangs up. A plain blocking client: it is not
 * the daemon, and it waits for one answer with a timeout. Every failure to reach the daemon or to
 * get an answer in time is exit status 3, with the reason on stderr.
 */
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "ctlproto.h"
#include "clock.h"
#include "drctl.h"

typedef struct DrctlReadCtx {
    json_t *reply;
    bool streams;
    bool json;
} DrctlReadCtx;

static int drctl_connect(const Drctl *c, int *ret_fd)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    if (strlen(c->socket_path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "drctl: socket path too long: '%s'\n", c->socket_path);
        return DRCTL_EXIT_USAGE;
    }
    strcpy(sa.sun_path, c->socket_path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        fprintf(stderr, "drctl: cannot reach drsupervisord at '%s': %s%s\n", c->socket_path, strerror(e),
                e == ENOENT || e == ECONNREFUSED ? " (is the daemon running? see --socket)"
                : e == EACCES                     ? " (are you in the socket's group?)"
                                                  : "");
        if (fd >= 0)
            close(fd);
        return DRCTL_EXIT_UNREACHABLE;
    }
    *ret_fd = fd;
    return 0;
}

static int drctl_send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

static int drctl_on_line(void *data, const char *line, size_t len)
{
    DrctlReadCtx *ctx = data;
    json_error_t jerr;

    if (!line) {
        fprintf(stderr, "drctl: the daemon sent an over-long line\n");
        return -EPROTO;
    }
    json_t *j = json_loadb(line, len, 0, &jerr);
    if (!json_is_object(j)) {
        json_decref(j);
        fprintf(stderr, "drctl: the daemon sent something that is not JSON: %.80s\n", line);
        return -EPROTO;
    }
    json_t *ev = json_object_get(j, "event");
    if (ev) {
        drctl_print_event(ev, ctx->json);
        json_decref(j);
        return 0;
    }
    if (ctx->reply) {
        json_decref(j);
        return 0;
    }
    ctx->reply = j;
    return ctx->streams && json_is_true(json_object_get(j, "ok")) ? 0 : 1;
}

/* Read until the reply (or, when streaming, until the daemon hangs up). */
static int drctl_exchange(const Drctl *c, int fd, const char *line, bool streams, json_t **ret_reply)
{
    DrctlReadCtx ctx = {.streams = streams, .json = c->json};
    CtlLineBuf lb;
    char buf[65536];
    int64_t deadline = clock_wall_ms() + (int64_t)c->timeout_ms;
    int r;

    if (drctl_send_all(fd, line, strlen(line)) < 0) {
        fprintf(stderr, "drctl: cannot send the request: %s\n", strerror(errno));
        return DRCTL_EXIT_UNREACHABLE;
    }
    ctl_linebuf_init(&lb, 64u * 1024u * 1024u);
    for (;;) {
        int wait = -1;
        if (!streams || !ctx.reply) {
            int64_t left = deadline - clock_wall_ms();
            if (left <= 0) {
                fprintf(stderr, "drctl: no answer from the daemon within %" PRIu64 " ms\n", c->timeout_ms);
                ctl_linebuf_done(&lb);
                return DRCTL_EXIT_UNREACHABLE;
            }
            wait = left > INT32_MAX ? INT32_MAX : (int)left;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        r = poll(&pfd, 1, wait);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            continue;
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ctl_linebuf_done(&lb);
            if (ctx.reply && streams) {
                json_decref(ctx.reply);
                fprintf(stderr, "drctl: the daemon closed the connection\n");
                return DRCTL_EXIT_UNREACHABLE;
            }
            fprintf(stderr, "drctl: the daemon closed the connection without answering\n");
            return DRCTL_EXIT_UNREACHABLE;
        }
        r = ctl_linebuf_feed(&lb, buf, (size_t)n, drctl_on_line, &ctx);
        if (r < 0) {
            ctl_linebuf_done(&lb);
            json_decref(ctx.reply);
            return DRCTL_EXIT_UNREACHABLE;
        }
        if (r > 0)
            break;
    }
    ctl_linebuf_done(&lb);
    *ret_reply = ctx.reply;
    return 0;
}

int drctl_transport_call(const Drctl *c, const char *line, bool streams, json_t **ret_reply)
{
    int fd = -1;
    int r = drctl_connect(c, &fd);
    if (r == 0)
        r = drctl_exchange(c, fd, line, streams, ret_reply);
    if (fd >= 0)
        close(fd);
    return r;
}
