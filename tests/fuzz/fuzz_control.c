/*
 * fuzz_control: libFuzzer harness for the control socket server (daemon/core/control.c): framing,
 * request decoding, role checks, dispatch, replies and event streaming, end to end.
 *
 * Owns a test double of the daemon's command table and the checks. control.c has no entry below
 * its socket (control_on_line is static and needs a connected client), so the harness runs the real
 * server: one Control listening on a socket in a temporary directory, on its own libuv loop, kept
 * for the whole run. Each input is one client connection: the first byte picks the caller's role
 * (bit 0: operator or reader; the peer's uid comes from a wrapped roles_peer_cred), a small
 * request limit (bit 1) and whether the client hangs up without reading (bit 2); the second byte
 * seeds the sizes of the writes; the rest is what the client sends. The registered commands:
 *   status (read-only) answers at once; halt (mutating) answers at once and aborts if it ever runs
 *   for a reader; later (read-only) and resume (mutating) answer on a later loop turn; fail
 *   answers an error quoting its argument; watch turns the connection into an event stream.
 * Checks: every line the server writes is one JSON object; a client that reads gets exactly one
 * reply per request line (and per dropped over-long line); a reader never reaches a mutating
 * handler and gets permission_denied for it; every connection is closed by the server once the
 * client has hung up, also a watching one, so no client is left behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/control.h"
#include "ctlproto.h"
#include "log.h"

// WRAP: roles_peer_cred

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int __real_roles_peer_cred(int fd, PeerCred *ret);
int __wrap_roles_peer_cred(int fd, PeerCred *ret);

#define FUZZ_CONTROL_DAEMON_UID 4242u
#define FUZZ_CONTROL_READER_UID 1000u
#define FUZZ_CONTROL_MAX_DEFERRED 256
#define FUZZ_CONTROL_SPINS 2000

typedef struct FuzzControl {
    uv_loop_t loop;
    EventBus *events;
    Control *ctl;
    ConfigControl cfg;
    RolePolicy roles;
    char dir[64], path[96];
    uid_t peer_uid;   /* what the wrapped roles_peer_cred reports for the next client */
    bool operator_;   /* this input's caller is an operator */
    bool watching;    /* this input's client asked to watch */
    CtlCall *deferred[FUZZ_CONTROL_MAX_DEFERRED];
    size_t n_deferred;
} FuzzControl;

static FuzzControl fz;

int __wrap_roles_peer_cred(int fd, PeerCred *ret)
{
    int r = __real_roles_peer_cred(fd, ret);
    if (r == 0) {
        ret->uid = fz.peer_uid;
        ret->gid = fz.peer_uid;
        ret->n_groups = 0;
    }
    return r;
}

static void fuzz_control_status(CtlCall *call, const json_t *args, void *data)
{
    (void)data;
    if (control_call_role(call) != (fz.operator_ ? ROLE_OPERATOR : ROLE_READER))
        abort();
    control_reply_ok(call, json_pack("{s:O}", "args", args));
}

static void fuzz_control_mutating(CtlCall *call, const json_t *args, void *data)
{
    (void)args;
    if (!fz.operator_ || control_call_role(call) != ROLE_OPERATOR)
        abort(); /* a mutating command ran for a reader */
    if (data && fz.n_deferred < FUZZ_CONTROL_MAX_DEFERRED)
        fz.deferred[fz.n_deferred++] = call;
    else
        control_reply_ok(call, NULL);
}

static void fuzz_control_later(CtlCall *call, const json_t *args, void *data)
{
    (void)args;
    (void)data;
    if (fz.n_deferred < FUZZ_CONTROL_MAX_DEFERRED)
        fz.deferred[fz.n_deferred++] = call;
    else
        control_reply_error(call, -EBUSY, "too many deferred calls");
}

static void fuzz_control_fail(CtlCall *call, const json_t *args, void *data)
{
    const char *what = json_string_value(json_object_get(args, "what"));
    (void)data;
    control_reply_error(call, -EINVAL, "cannot do '%s'", what ? what : "(nothing)");
}

static void fuzz_control_watch(CtlCall *call, const json_t *args, void *data)
{
    (void)args;
    (void)data;
    int r = control_call_watch(call);
    if (r < 0) {
        control_reply_error(call, r, "cannot watch");
        return;
    }
    fz.watching = true;
    control_reply_ok(call, NULL);
}

static void fuzz_control_answer_deferred(void)
{
    size_t n = fz.n_deferred;
    fz.n_deferred = 0;
    for (size_t i = 0; i < n; i++)
        control_reply_ok(fz.deferred[i], json_pack("{s:b}", "late", 1));
}

static void fuzz_control_cleanup(void)
{
    unlink(fz.path);
    rmdir(fz.dir);
}

static void fuzz_control_setup(void)
{
    static const CtlCommand cmds[] = {
        {"status", false, fuzz_control_status, NULL, "answers at once"},
        {"halt", true, fuzz_control_mutating, NULL, "mutating, answers at once"},
        {"resume", true, fuzz_control_mutating, &fz, "mutating, answers later"},
        {"later", false, fuzz_control_later, NULL, "answers on a later loop turn"},
        {"fail", false, fuzz_control_fail, NULL, "answers an error quoting args.what"},
        {"watch", false, fuzz_control_watch, NULL, "streams events"},
    };
    char err[256] = "";

    signal(SIGPIPE, SIG_IGN);
    log_init(LOG_CRIT, false);
    snprintf(fz.dir, sizeof(fz.dir), "/tmp/drsup-fuzz-control.XXXXXX");
    if (!mkdtemp(fz.dir))
        abort();
    snprintf(fz.path, sizeof(fz.path), "%s/control.sock", fz.dir);
    atexit(fuzz_control_cleanup);
    if (uv_loop_init(&fz.loop) != 0 || !(fz.events = events_new()) || !(fz.ctl = control_new(&fz.loop, fz.events)))
        abort();
    fz.cfg = (ConfigControl){.socket_path = fz.path, .mode = 0600, .max_request = 65536, .max_clients = 64};
    if (control_listen(fz.ctl, &fz.cfg, err, sizeof(err)) != 0) {
        fprintf(stderr, "fuzz_control: %s\n", err);
        abort();
    }
    fz.roles = (RolePolicy){.daemon_uid = FUZZ_CONTROL_DAEMON_UID};
    if (control_register(fz.ctl, cmds, sizeof(cmds) / sizeof(cmds[0])) != 0)
        abort();
}

typedef struct FuzzOut {
    char *p;
    size_t len, cap;
    bool eof;
} FuzzOut;

/* One loop turn, then the deferred answers, then whatever the server wrote. */
static void fuzz_control_pump(int fd, FuzzOut *out)
{
    uv_run(&fz.loop, UV_RUN_NOWAIT);
    fuzz_control_answer_deferred();
    uv_run(&fz.loop, UV_RUN_NOWAIT);
    while (fd >= 0 && !out->eof) {
        if (out->len + 4096 > out->cap) {
            out->cap = out->cap ? out->cap * 2 : 8192;
            if (!(out->p = realloc(out->p, out->cap)))
                abort();
        }
        ssize_t n = read(fd, out->p + out->len, out->cap - out->len);
        if (n > 0)
            out->len += (size_t)n;
        else if (n == 0 || (errno != EAGAIN && errno != EINTR))
            out->eof = true;
        else
            break;
    }
}

static int fuzz_control_count_requests(void *ctx, const char *line, size_t len)
{
    size_t *n = ctx;
    if (!line || len > 0)
        (*n)++;
    return 0;
}

/* Every line is a JSON object: a reply with "ok" and "id", or an event. Returns the replies. */
static size_t fuzz_control_check_output(const FuzzOut *out)
{
    size_t replies = 0;
    for (size_t off = 0; off < out->len;) {
        const char *nl = memchr(out->p + off, '\n', out->len - off);
        if (!nl)
            abort(); /* the server writes whole lines */
        size_t n = (size_t)(nl - (out->p + off));
        json_t *j = json_loadb(out->p + off, n, 0, NULL);
        if (!json_is_object(j))
            abort();
        if (!json_object_get(j, "event")) {
            json_t *ok = json_object_get(j, "ok");
            if (!json_is_boolean(ok) || !json_object_get(j, "id"))
                abort();
            if (json_is_false(ok) && !json_is_string(json_object_get(json_object_get(j, "error"), "code")))
                abort();
            replies++;
        }
        json_decref(j);
        off += n + 1;
    }
    return replies;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FuzzOut out = {0};

    if (size < 2)
        return -1;
    if (!fz.ctl)
        fuzz_control_setup();
    fz.operator_ = !(data[0] & 1);
    fz.peer_uid = fz.operator_ ? (data[0] & 8 ? 0 : FUZZ_CONTROL_DAEMON_UID) : FUZZ_CONTROL_READER_UID;
    fz.cfg.max_request = data[0] & 2 ? 256 : 65536;
    control_configure(fz.ctl, &fz.cfg, &fz.roles);
    bool hang_up = data[0] & 4;
    uint32_t seed = data[1];
    const char *in = (const char *)data + 2;
    size_t len = size - 2;
    fz.watching = false;

    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", fz.path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0)
        abort();
    fuzz_control_pump(fd, &out);

    for (size_t off = 0, spins = 0; off < len && spins < FUZZ_CONTROL_SPINS; spins++) {
        seed = seed * 1103515245u + 12345u;
        size_t step = seed % 2 ? len - off : 1 + (seed >> 16) % 61;
        if (step > len - off)
            step = len - off;
        ssize_t n = write(fd, in + off, step);
        if (n > 0)
            off += (size_t)n;
        else if (errno != EAGAIN && errno != EINTR)
            break; /* the server hung up (it may, after a line it could not take) */
        fuzz_control_pump(fd, &out);
    }
    if (hang_up) {
        close(fd);
        fd = -1;
    } else {
        shutdown(fd, SHUT_WR);
    }
    /* Let the server answer everything; a watcher gets an event, then the client hangs up. */
    for (size_t spins = 0; spins < FUZZ_CONTROL_SPINS && fd >= 0 && !out.eof; spins++) {
        fuzz_control_pump(fd, &out);
        if (fz.watching && fz.n_deferred == 0 && spins == 8)
            events_emit(fz.events, SEV_INFO, "fuzz.event", NULL, false, NULL, "an event for the watcher");
        if (fz.watching && spins == 16)
            break;
    }
    if (fd >= 0) {
        fuzz_control_pump(fd, &out);
        close(fd);
    }
    for (size_t spins = 0; spins < FUZZ_CONTROL_SPINS && control_client_count(fz.ctl) > 0; spins++) {
        fuzz_control_pump(-1, &out);
        if (spins % 64 == 8)
            events_emit(fz.events, SEV_INFO, "fuzz.event", NULL, false, NULL, "an event after the hang-up");
    }
    if (control_client_count(fz.ctl) != 0) {
        fprintf(stderr, "fuzz_control: the server kept a client that hung up%s\n",
                fz.watching ? " (a watcher)" : "");
        abort();
    }
    fuzz_control_answer_deferred();

    size_t replies = fuzz_control_check_output(&out);
    if (!hang_up && !fz.watching) {
        /* One reply per request line and per dropped over-long line, as the framing sees them. */
        size_t expected = 0;
        CtlLineBuf lb;
        ctl_linebuf_init(&lb, fz.cfg.max_request);
        ctl_linebuf_feed(&lb, in, len, fuzz_control_count_requests, &expected);
        ctl_linebuf_done(&lb);
        if (replies != expected) {
            fprintf(stderr, "fuzz_control: %zu replies for %zu requests\n", replies, expected);
            abort();
        }
    }
    free(out.p);
    return 0;
}
