/*
 * control: Unix-socket server, framing, roles and dispatch (see control.h).
 */
#include "core/control.h"

#include <errno.h>
#include <grp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include "clock.h"
#include "ctlproto.h"
#include "err.h"
#include "log.h"

#define CTL_WATCH_MAX_QUEUED (4u * 1024u * 1024u)
#define CTL_READ_BUF 16384
/* Replies queued for one client: past PAUSE its requests are no longer read (back-pressure: a
 * client that pipelines without reading stops being served, not the daemon's memory growing),
 * below RESUME they are read again; past MAX (what the requests already read can still add) it
 * is dropped, with one log line. */
#define CTL_CLIENT_PAUSE_QUEUED (1u * 1024u * 1024u)
#define CTL_CLIENT_RESUME_QUEUED (256u * 1024u)
#define CTL_CLIENT_MAX_QUEUED (8u * 1024u * 1024u)
/* Slots only operators may take: readers are refused once max_clients minus these are in use, so
 * idle observers can never lock out a halt. */
#define CTL_OPERATOR_SLOTS_MAX 8u
/* Refused connections are logged at most once per interval, with how many were refused. */
#define CTL_REFUSAL_LOG_INTERVAL_US (10u * 1000u * 1000u)

typedef struct CtlClient CtlClient;

struct CtlCall {
    Control *ctl;
    CtlClient *client; /* NULL once the client went away */
    CtlCall *next;     /* in the client's list of unanswered calls */
    json_t *id;
    char *cmd;
    PeerCred peer;
    Role role;
    json_t *audit_args; /* a command that needs the operator role: its arguments, for the audit hook */
};

struct CtlClient {
    Control *ctl;
    uv_pipe_t pipe;
    CtlLineBuf lb;
    PeerCred peer;
    unsigned long serial;
    CtlClient *prev, *next;
    CtlCall *calls;
    size_t write_queued;
    bool watching, eof, closing, close_after_write;
    bool read_paused; /* back-pressure: its replies are not being read */
    char readbuf[CTL_READ_BUF];
};

typedef struct CtlWrite {
    uv_write_t req;
    CtlClient *client;
    size_t len;
    char data[];
} CtlWrite;

struct Control {
    uv_loop_t *loop;
    EventBus *events;
    int events_sub;
    uv_pipe_t server;
    bool server_init, closing;
    char *path;
    bool activated;
    CtlClient *clients;
    unsigned n_clients;
    unsigned closing_clients; /* unlinked, waiting for their close callback */
    unsigned long next_serial;
    unsigned n_watchers;
    size_t open_calls;
    CtlCommand *cmds;
    size_t n_cmds;
    size_t max_request;
    unsigned max_clients;
    unsigned refused;            /* refusals not logged yet */
    uint64_t refusal_logged_us;  /* when the last refusal line was logged (0: never) */
    const RolePolicy *roles;
    RolePolicy default_roles;
    CtlAuditFn audit_fn;
    void *audit_data;
    CtlGateFn gate_fn;
    void *gate_data;
    /* the socket file watched for a changed owner or mode (a tamper signal, detect/breach.c) */
    uv_fs_poll_t sock_poll;
    bool poll_init, sock_reported;
    uid_t sock_uid;
    gid_t sock_gid;
    mode_t sock_mode;
    void (*closed_cb)(void *);
    void *closed_data;
};

static void control_maybe_free(Control *ctl);
static void control_client_close(CtlClient *c);
static void control_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf);
static void control_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

Control *control_new(uv_loop_t *loop, EventBus *events)
{
    Control *ctl = calloc(1, sizeof(*ctl));
    if (!ctl)
        return NULL;
    ctl->loop = loop;
    ctl->events = events;
    ctl->max_request = CTLPROTO_DEFAULT_MAX_LINE;
    ctl->max_clients = 64;
    ctl->default_roles.daemon_uid = geteuid();
    ctl->roles = &ctl->default_roles;
    return ctl;
}

void control_configure(Control *ctl, const ConfigControl *cfg, const RolePolicy *roles)
{
    ctl->max_request = (size_t)cfg->max_request;
    ctl->max_clients = (unsigned)cfg->max_clients;
    ctl->roles = roles ? roles : &ctl->default_roles;
}

int control_register(Control *ctl, const CtlCommand *cmds, size_t n)
{
    CtlCommand *all = realloc(ctl->cmds, (ctl->n_cmds + n) * sizeof(*all));
    if (!all)
        return -ENOMEM;
    memcpy(all + ctl->n_cmds, cmds, n * sizeof(*cmds));
    ctl->cmds = all;
    ctl->n_cmds += n;
    return 0;
}

unsigned control_client_count(const Control *ctl)
{
    return ctl->n_clients;
}

const char *control_socket_path(const Control *ctl)
{
    return ctl->path ? ctl->path : "(none)";
}

/* ---- writing ---- */

static void control_on_write(uv_write_t *req, int status)
{
    CtlWrite *w = (CtlWrite *)req;
    CtlClient *c = w->client;

    (void)status; /* a failed write shows up as a read error or EOF on the same client */
    c->write_queued -= w->len;
    free(w);
    if (c->close_after_write && c->write_queued == 0) {
        control_client_close(c);
        return;
    }
    if (c->read_paused && !c->closing && c->write_queued <= CTL_CLIENT_RESUME_QUEUED) {
        c->read_paused = false;
        if (!c->eof)
            uv_read_start((uv_stream_t *)&c->pipe, control_on_alloc, control_on_read);
    }
}

/* Queue one line (with its '\n'); takes ownership of `line`. */
static void control_send(CtlClient *c, char *line)
{
    size_t len;
    CtlWrite *w;

    if (!line)
        return;
    if (c->closing) {
        free(line);
        return;
    }
    len = strlen(line);
    w = malloc(sizeof(*w) + len);
    if (!w) {
        free(line);
        return;
    }
    memcpy(w->data, line, len);
    free(line);
    w->client = c;
    w->len = len;
    uv_buf_t buf = uv_buf_init(w->data, (unsigned)len);
    int r = uv_write(&w->req, (uv_stream_t *)&c->pipe, &buf, 1, control_on_write);
    if (r < 0) {
        free(w);
        control_client_close(c);
        return;
    }
    c->write_queued += len;
    if (c->write_queued > CTL_CLIENT_MAX_QUEUED && !c->watching) {
        log_warning("control", "dropping client (uid %u pid %d): %zu bytes of replies it does not read",
                    (unsigned)c->peer.uid, (int)c->peer.pid, c->write_queued);
        control_client_close(c);
        return;
    }
    if (c->write_queued > CTL_CLIENT_PAUSE_QUEUED && !c->read_paused && !c->eof) {
        c->read_paused = true; /* resumed from control_on_write once it reads again */
        uv_read_stop((uv_stream_t *)&c->pipe);
    }
}

/* ---- calls ---- */

static void control_call_free(CtlCall *call)
{
    Control *ctl = call->ctl;

    if (call->client) {
        CtlCall **pp = &call->client->calls;
        while (*pp && *pp != call)
            pp = &(*pp)->next;
        if (*pp)
            *pp = call->next;
        CtlClient *c = call->client;
        if (c->eof && !c->calls && !c->watching)
            c->close_after_write = true, (c->write_queued == 0 ? control_client_close(c) : (void)0);
    }
    json_decref(call->id);
    json_decref(call->audit_args);
    free(call->cmd);
    free(call);
    ctl->open_calls--;
    control_maybe_free(ctl);
}

void control_set_audit(Control *ctl, CtlAuditFn fn, void *data)
{
    ctl->audit_fn = fn;
    ctl->audit_data = data;
}

void control_set_gate(Control *ctl, CtlGateFn fn, void *data)
{
    ctl->gate_fn = fn;
    ctl->gate_data = data;
}

void control_reply_ok(CtlCall *call, json_t *result)
{
    if (call->audit_args && call->ctl->audit_fn)
        call->ctl->audit_fn(&call->peer, call->cmd, call->audit_args, 0, NULL, call->ctl->audit_data);
    if (call->client) {
        json_t *res = result ? result : json_object();
        control_send(call->client, ctl_reply_ok(call->id, res));
        json_decref(res);
    } else {
        json_decref(result);
    }
    control_call_free(call);
}

void control_reply_error(CtlCall *call, int code, const char *fmt, ...)
{
    char msg[2048];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (call->audit_args && call->ctl->audit_fn)
        call->ctl->audit_fn(&call->peer, call->cmd, call->audit_args, code, msg, call->ctl->audit_data);
    if (call->client)
        control_send(call->client, ctl_reply_error(call->id, err_name(code), msg));
    control_call_free(call);
}

const PeerCred *control_call_peer(const CtlCall *call)
{
    return &call->peer;
}

Role control_call_role(const CtlCall *call)
{
    return call->role;
}

static void control_on_event(const Event *ev, void *data)
{
    Control *ctl = data;
    json_t *j = events_to_json(ev);
    char *line = j ? ctl_event_line(j) : NULL;

    json_decref(j);
    if (!line)
        return;
    for (CtlClient *c = ctl->clients; c; c = c->next) {
        if (!c->watching || c->closing)
            continue;
        if (c->write_queued > CTL_WATCH_MAX_QUEUED) {
            log_warning("control", "dropping watcher (uid %u): it is not reading its events",
                        (unsigned)c->peer.uid);
            control_client_close(c);
            continue;
        }
        control_send(c, strdup(line));
    }
    free(line);
}

int control_call_watch(CtlCall *call)
{
    Control *ctl = call->ctl;

    if (!call->client)
        return -ENOTCONN;
    if (!call->client->watching) {
        call->client->watching = true;
        if (ctl->n_watchers++ == 0) {
            int id = events_subscribe(ctl->events, control_on_event, ctl);
            if (id < 0)
                return id;
            ctl->events_sub = id;
        }
    }
    return 0;
}

/* ---- requests ---- */

static void control_builtin_help(CtlCall *call, const json_t *args, void *data)
{
    Control *ctl = data;
    json_t *list = json_array();

    (void)args;
    for (size_t i = 0; i < ctl->n_cmds; i++)
        json_array_append_new(list, json_pack("{s:s,s:b,s:s}", "name", ctl->cmds[i].name, "mutating",
                                              ctl->cmds[i].mutating, "summary",
                                              ctl->cmds[i].summary ? ctl->cmds[i].summary : ""));
    control_reply_ok(call, json_pack("{s:o,s:s}", "commands", list, "role",
                                     call->role == ROLE_OPERATOR ? "operator" : "reader"));
}

static const CtlCommand *control_find(const Control *ctl, const char *name)
{
    for (size_t i = 0; i < ctl->n_cmds; i++)
        if (strcmp(ctl->cmds[i].name, name) == 0)
            return &ctl->cmds[i];
    return NULL;
}

static int control_on_line(void *data, const char *line, size_t len)
{
    CtlClient *c = data;
    Control *ctl = c->ctl;
    CtlRequest req;
    char err[512];

    if (!line) {
        char msg[128];
        snprintf(msg, sizeof(msg), "request line longer than %zu bytes was discarded", ctl->max_request);
        control_send(c, ctl_reply_error(json_null(), err_name(DR_ETOOBIG), msg));
        return 0;
    }
    if (len == 0)
        return 0; /* blank lines are allowed between requests */
    if (ctl_request_parse(line, len, &req, err, sizeof(err)) < 0) {
        control_send(c, ctl_reply_error(req.id, err_name(DR_EPROTO), err));
        ctl_request_done(&req);
        return 0;
    }

    CtlCall *call = calloc(1, sizeof(*call));
    if (!call) {
        ctl_request_done(&req);
        return -ENOMEM;
    }
    call->ctl = ctl;
    call->client = c;
    call->id = req.id;
    call->cmd = req.cmd;
    call->peer = c->peer;
    req.id = NULL;
    req.cmd = NULL;
    call->next = c->calls;
    c->calls = call;
    ctl->open_calls++;

    const char *why = NULL;
    call->role = roles_decide(ctl->roles, &c->peer, &why);

    if (strcmp(call->cmd, "help") == 0) {
        control_builtin_help(call, req.args, ctl);
    } else {
        const CtlCommand *cmd = control_find(ctl, call->cmd);
        if (cmd && cmd->mutating) /* answered or refused, it goes to the audit log */
            call->audit_args = req.args ? json_incref(req.args) : json_object();
        if (!cmd) {
            control_reply_error(call, DR_EUNKNOWNCMD, "unknown command '%.64s'; 'help' lists the commands",
                                call->cmd);
        } else if (cmd->mutating && call->role != ROLE_OPERATOR) {
            log_notice("control", "refused '%s' to uid %u pid %d: %s", cmd->name, (unsigned)c->peer.uid,
                       (int)c->peer.pid, why);
            control_reply_error(call, DR_EPERM,
                                "'%s' changes the daemon and needs the operator role: %s%s%s%s", cmd->name, why,
                                ctl->roles->has_group ? " '" : "",
                                ctl->roles->has_group ? ctl->roles->group_name : "",
                                ctl->roles->has_group ? "'" : "");
        } else {
            char gwhy[256] = "";
            if (cmd->mutating && ctl->gate_fn && !ctl->gate_fn(cmd->name, gwhy, sizeof(gwhy), ctl->gate_data))
                control_reply_error(call, DR_ENOTLEADER, "%s", gwhy);
            else
                cmd->fn(call, req.args, cmd->data);
        }
    }
    ctl_request_done(&req);
    return c->closing ? 1 : 0;
}

/* ---- connections ---- */

static void control_on_client_closed(uv_handle_t *h)
{
    CtlClient *c = h->data;
    Control *ctl = c->ctl;

    ctl_linebuf_done(&c->lb);
    free(c);
    ctl->closing_clients--;
    control_maybe_free(ctl);
}

/* Stop streaming events to this client. */
static void control_client_unwatch(CtlClient *c)
{
    Control *ctl = c->ctl;

    if (!c->watching)
        return;
    c->watching = false;
    if (--ctl->n_watchers == 0) {
        events_unsubscribe(ctl->events, ctl->events_sub);
        ctl->events_sub = 0;
    }
}

static void control_client_close(CtlClient *c)
{
    Control *ctl = c->ctl;

    if (c->closing)
        return;
    c->closing = true;
    for (CtlCall *call = c->calls; call; call = call->next)
        call->client = NULL; /* handlers answer later into the void */
    c->calls = NULL;
    control_client_unwatch(c);
    if (c->prev)
        c->prev->next = c->next;
    else
        ctl->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    ctl->n_clients--;
    ctl->closing_clients++;
    uv_close((uv_handle_t *)&c->pipe, control_on_client_closed);
}

static void control_on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    CtlClient *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->readbuf, sizeof(c->readbuf));
}

static void control_on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    CtlClient *c = s->data;

    if (nread > 0) {
        if (ctl_linebuf_feed(&c->lb, buf->base, (size_t)nread, control_on_line, c) < 0)
            control_client_close(c);
        return;
    }
    if (nread == UV_EOF) {
        /* The peer finished sending: answer what it asked, then hang up. A watcher's EOF ends its
         * stream: it has hung up (drctl watch keeps its side open while it wants events), and
         * kept as a watcher it would hold a client slot for good. */
        uv_read_stop(s);
        c->eof = true;
        control_client_unwatch(c);
        if (!c->calls && !c->watching) {
            c->close_after_write = true;
            if (c->write_queued == 0)
                control_client_close(c);
        }
        return;
    }
    if (nread < 0)
        control_client_close(c);
}

unsigned control_operator_slots(unsigned max_clients)
{
    unsigned r = max_clients / 4;
    return r > CTL_OPERATOR_SLOTS_MAX ? CTL_OPERATOR_SLOTS_MAX : r;
}

bool control_admits(unsigned n_clients, unsigned max_clients, unsigned operator_slots, bool operator)
{
    /* n_clients counts the one being admitted */
    return n_clients <= (operator ? max_clients : max_clients - operator_slots);
}

/* One line per CTL_REFUSAL_LOG_INTERVAL_US at most, counting the refusals since the last one. */
static void control_note_refusal(Control *ctl, const PeerCred *peer, bool operator, unsigned reserved)
{
    uint64_t now = clock_mono_us();
    ctl->refused++;
    if (ctl->refusal_logged_us && now - ctl->refusal_logged_us < CTL_REFUSAL_LOG_INTERVAL_US)
        return;
    log_warning("control", "refusing clients: %u connected (max_clients %u, %u of them for operators only); "
                "%u refused since the last such line (the latest uid %u, %s)",
                ctl->n_clients - 1, ctl->max_clients, reserved, ctl->refused, (unsigned)peer->uid,
                operator ? "an operator" : "a reader");
    ctl->refused = 0;
    ctl->refusal_logged_us = now;
}

static void control_on_connection(uv_stream_t *server, int status)
{
    Control *ctl = server->data;
    CtlClient *c;
    uv_os_fd_t fd;

    if (status < 0) {
        log_warning("control", "accept failed: %s", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        return;
    c->ctl = ctl;
    c->serial = ++ctl->next_serial;
    ctl_linebuf_init(&c->lb, ctl->max_request);
    uv_pipe_init(ctl->loop, &c->pipe, 0);
    c->pipe.data = c;
    c->next = ctl->clients;
    if (ctl->clients)
        ctl->clients->prev = c;
    ctl->clients = c;
    ctl->n_clients++;
    if (uv_accept(server, (uv_stream_t *)&c->pipe) < 0) {
        control_client_close(c);
        return;
    }
    if (uv_fileno((uv_handle_t *)&c->pipe, &fd) < 0 || roles_peer_cred(fd, &c->peer) < 0) {
        log_warning("control", "cannot read peer credentials; closing the connection");
        control_client_close(c);
        return;
    }
    const char *why = NULL;
    Role role = roles_decide(ctl->roles, &c->peer, &why);
    unsigned reserved = control_operator_slots(ctl->max_clients);
    if (!control_admits(ctl->n_clients, ctl->max_clients, reserved, role == ROLE_OPERATOR)) {
        control_note_refusal(ctl, &c->peer, role == ROLE_OPERATOR, reserved);
        control_send(c, ctl_reply_error(json_null(), err_name(DR_EBUSY),
                                        role == ROLE_OPERATOR ? "too many clients connected"
                                                              : "too many clients connected (the remaining "
                                                                "slots are kept for operators)"));
        c->close_after_write = true;
        return;
    }
    uv_read_start((uv_stream_t *)&c->pipe, control_on_alloc, control_on_read);
}

static int control_find_activated_fd(void)
{
    int n = sd_listen_fds(0);
    for (int i = 0; i < n; i++) {
        int fd = SD_LISTEN_FDS_START + i;
        if (sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0)
            return fd;
    }
    return -1;
}

/* A socket file left by a dead daemon is removed; a live one is an error. */
static int control_clear_stale(const char *path, char *err, size_t errlen)
{
    struct stat st;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd, r;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISSOCK(st.st_mode)) {
        snprintf(err, errlen, "'%s' exists and is not a socket; refusing to replace it", path);
        return -EEXIST;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    r = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
    close(fd);
    if (r == 0) {
        snprintf(err, errlen, "another daemon is already listening on '%s'", path);
        return -EADDRINUSE;
    }
    return unlink(path) < 0 ? -errno : 0;
}

/* The socket's owner, group or mode is not what the daemon made it (stat on the thread pool, every
 * CONTROL_SOCK_POLL_MS): an error event "control.socket", once until it is as made again. */
#define CONTROL_SOCK_POLL_MS 2000
static void control_on_socket_stat(uv_fs_poll_t *h, int status, const uv_stat_t *prev, const uv_stat_t *curr)
{
    Control *ctl = h->data;
    char what[400];
    (void)prev;
    if (ctl->closing)
        return;
    if (status < 0)
        snprintf(what, sizeof(what), "the control socket '%s' is gone: %s", ctl->path, uv_strerror(status));
    else if (curr->st_uid != ctl->sock_uid || curr->st_gid != ctl->sock_gid ||
             (curr->st_mode & 07777) != (ctl->sock_mode & 07777))
        snprintf(what, sizeof(what), "the control socket '%s' changed: owner %llu:%llu mode %04o (the daemon made it "
                 "%llu:%llu mode %04o)", ctl->path, (unsigned long long)curr->st_uid, (unsigned long long)curr->st_gid,
                 (unsigned)(curr->st_mode & 07777), (unsigned long long)ctl->sock_uid,
                 (unsigned long long)ctl->sock_gid, (unsigned)(ctl->sock_mode & 07777));
    else
        what[0] = '\0';
    if (what[0] && !ctl->sock_reported)
        events_emit(ctl->events, SEV_ERROR, "control.socket", NULL, false, NULL, "%s", what);
    ctl->sock_reported = what[0] != '\0';
}

static void control_watch_socket(Control *ctl)
{
    struct stat st;
    if (stat(ctl->path, &st) < 0) /* just made by this process: a local, fast stat */
        return;
    ctl->sock_uid = st.st_uid;
    ctl->sock_gid = st.st_gid;
    ctl->sock_mode = st.st_mode;
    uv_fs_poll_init(ctl->loop, &ctl->sock_poll);
    ctl->sock_poll.data = ctl;
    ctl->poll_init = true;
    if (uv_fs_poll_start(&ctl->sock_poll, control_on_socket_stat, ctl->path, CONTROL_SOCK_POLL_MS) < 0)
        log_warning("control", "cannot watch '%s' for a changed owner or mode, ignoring", ctl->path);
}

static void control_on_poll_closed(uv_handle_t *h)
{
    Control *ctl = h->data;
    ctl->poll_init = false;
    control_maybe_free(ctl);
}

int control_listen(Control *ctl, const ConfigControl *cfg, char *err, size_t errlen)
{
    int r, fd;

    uv_pipe_init(ctl->loop, &ctl->server, 0);
    ctl->server.data = ctl;
    ctl->server_init = true;
    control_configure(ctl, cfg, NULL);

    fd = control_find_activated_fd();
    if (fd >= 0) {
        r = uv_pipe_open(&ctl->server, fd);
        if (r < 0) {
            snprintf(err, errlen, "cannot use the socket passed by systemd: %s", uv_strerror(r));
            return r;
        }
        ctl->activated = true;
        ctl->path = strdup("(systemd socket)");
    } else {
        r = control_clear_stale(cfg->socket_path, err, errlen);
        if (r < 0) {
            if (!err[0])
                snprintf(err, errlen, "cannot clear '%s': %s", cfg->socket_path, strerror(-r));
            return r;
        }
        /* Bind with a tight umask so the socket is never, even briefly, more open than asked. */
        mode_t old = umask(0177);
        r = uv_pipe_bind(&ctl->server, cfg->socket_path);
        umask(old);
        if (r < 0) {
            snprintf(err, errlen, "cannot bind '%s': %s", cfg->socket_path, uv_strerror(r));
            return r;
        }
        ctl->path = strdup(cfg->socket_path);
        if (cfg->group) {
            struct group *gr = getgrnam(cfg->group);
            if (!gr) {
                snprintf(err, errlen, "socket group '%s' does not exist", cfg->group);
                return DR_ECONFIG;
            }
            if (chown(cfg->socket_path, (uid_t)-1, gr->gr_gid) < 0) {
                r = -errno;
                snprintf(err, errlen, "cannot give '%s' to group '%s': %s", cfg->socket_path, cfg->group,
                         strerror(-r));
                return r;
            }
        }
        if (chmod(cfg->socket_path, cfg->mode) < 0) {
            r = -errno;
            snprintf(err, errlen, "cannot chmod '%s': %s", cfg->socket_path, strerror(-r));
            return r;
        }
    }
    r = uv_listen((uv_stream_t *)&ctl->server, 128, control_on_connection);
    if (r < 0) {
        snprintf(err, errlen, "cannot listen on '%s': %s", ctl->path, uv_strerror(r));
        return r;
    }
    if (!ctl->activated)
        control_watch_socket(ctl);
    return 0;
}

static void control_maybe_free(Control *ctl)
{
    if (!ctl->closing || ctl->server_init || ctl->poll_init || ctl->clients || ctl->closing_clients || ctl->open_calls)
        return;
    void (*cb)(void *) = ctl->closed_cb;
    void *data = ctl->closed_data;
    free(ctl->cmds);
    free(ctl->path);
    free(ctl);
    if (cb)
        cb(data);
}

static void control_on_server_closed(uv_handle_t *h)
{
    Control *ctl = h->data;
    ctl->server_init = false;
    control_maybe_free(ctl);
}

void control_close(Control *ctl, void (*closed_cb)(void *data), void *data)
{
    ctl->closing = true;
    ctl->closed_cb = closed_cb;
    ctl->closed_data = data;
    if (ctl->server_init) {
        if (!ctl->activated && ctl->path)
            unlink(ctl->path);
        uv_close((uv_handle_t *)&ctl->server, control_on_server_closed);
    }
    if (ctl->poll_init)
        uv_close((uv_handle_t *)&ctl->sock_poll, control_on_poll_closed);
    while (ctl->clients)
        control_client_close(ctl->clients);
    control_maybe_free(ctl);
}
