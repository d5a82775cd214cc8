/*
 * pgconn: one libpq connection on the libuv loop (see pgconn.h for the contract).
 *
 * States: IDLE (no connection) -> RESOLVING (uv_getaddrinfo per host name) -> CONNECTING
 * (PQconnectPoll driven by uv_poll) -> READY (connected; a query may be in flight) -> back to IDLE
 * when the connection fails, is lost or times out. CLOSING is final.
 * The one uv_timer serves, one at a time, the connect timeout, the query timeout, and "deferred"
 * completions (a failure found inside pgconn_query() is reported on the next loop turn so that
 * callbacks never run inside pgconn_query()).
 * Conninfo parsing and the host name lookups are in pgconninfo.c; the connection's structure is in
 * pgconn_internal.h.
 */
#include "pgconn.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "backoff.h"
#include "err.h"
#include "pgconn_internal.h"

enum {
    PGCONN_DEFAULT_CONNECT_MS = 10000,
    PGCONN_DEFAULT_QUERY_MS = 30000,
    PGCONN_DEFAULT_RECONNECT_MIN_MS = 100,
    PGCONN_DEFAULT_RECONNECT_MAX_MS = 10000,
};

/* A PQcancel on the thread pool; owns itself, knows nothing of the connection. */
typedef struct PgCancelJob {
    uv_work_t req;
    PGcancel *cancel;
} PgCancelJob;

/* ---- small helpers ------------------------------------------------------------------------- */

static void pgconn_trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
        s[--n] = '\0';
}

__attribute__((format(printf, 3, 4))) void pgconn__fmt(char *dst, size_t size,
                                                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(dst, size, fmt, ap);
    va_end(ap);
    pgconn_trim(dst);
}

static void pgconn_set_error(PgConn *c, const char *msg)
{
    pgconn__fmt(c->errmsg, sizeof(c->errmsg), "%s", msg && *msg ? msg : "unknown database error");
}

/* ---- handles ------------------------------------------------------------------------------- */

static void pgconn_handle_closed(PgConn *c)
{
    c->handles_open--;
    if (c->state != PGCONN_CLOSING || c->handles_open > 0)
        return;
    void (*cb)(void *) = c->closed_cb;
    void *data = c->closed_data;
    pgconn__free_strv(c->keys, c->nkv);
    pgconn__free_strv(c->vals, c->nkv);
    for (size_t i = 0; i < c->nhosts; i++) {
        free(c->hosts[i].host);
        free(c->hosts[i].port);
        for (size_t j = 0; j < c->hosts[i].naddrs; j++)
            free(c->hosts[i].addrs[j]);
    }
    free(c->hosts);
    free(c->port);
    free(c);
    if (cb)
        cb(data);
}

static void pgconn_on_poll_closed(uv_handle_t *h)
{
    PgPoll *p = (PgPoll *)h;
    PgConn *c = p->owner;
    free(p);
    pgconn_handle_closed(c);
}

static void pgconn_on_timer_closed(uv_handle_t *h)
{
    pgconn_handle_closed((PgConn *)h->data);
}

static void pgconn_poll_close(PgConn *c)
{
    if (!c->poll)
        return;
    uv_poll_stop(&c->poll->handle);
    uv_close((uv_handle_t *)&c->poll->handle, pgconn_on_poll_closed);
    c->poll = NULL;
}

static void pgconn_on_poll(uv_poll_t *h, int status, int events);

/*
 * Watch PQsocket() for events. The socket is compared by identity, not only by number: libpq may
 * close its socket and open the next one on the same fd number inside one PQconnectPoll call.
 */
static int pgconn_poll_watch(PgConn *c, int events)
{
    int fd = PQsocket(c->pq);
    struct stat st;

    if (fd < 0)
        return -EBADF;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (c->poll && (c->poll_fd != fd || c->poll_dev != st.st_dev || c->poll_ino != st.st_ino))
        pgconn_poll_close(c);
    if (!c->poll) {
        PgPoll *p = calloc(1, sizeof(*p));
        if (!p)
            return -ENOMEM;
        int r = uv_poll_init_socket(c->loop, &p->handle, fd);
        if (r < 0) {
            free(p);
            return r;
        }
        p->owner = c;
        c->handles_open++;
        c->poll = p;
        c->poll_fd = fd;
        c->poll_dev = st.st_dev;
        c->poll_ino = st.st_ino;
    }
    return uv_poll_start(&c->poll->handle, events, pgconn_on_poll);
}

static void pgconn_on_timer(uv_timer_t *t);

static void pgconn_timer_start(PgConn *c, PgConnTimer use, uint64_t ms)
{
    c->timer_use = use;
    uv_timer_start(&c->timer, pgconn_on_timer, ms, 0);
}

static void pgconn_timer_stop(PgConn *c)
{
    c->timer_use = PGCONN_TIMER_NONE;
    uv_timer_stop(&c->timer);
}

/* Poll handle first, then PQfinish (libpq closes the socket). */
static void pgconn_drop(PgConn *c)
{
    pgconn_poll_close(c);
    if (c->pq) {
        PQfinish(c->pq);
        c->pq = NULL;
    }
    if (c->resolve) {
        c->resolve->owner = NULL;
        uv_cancel((uv_req_t *)&c->resolve->req);
        c->resolve = NULL;
    }
    PQclear(c->last_res);
    c->last_res = NULL;
    c->copying = false;
    pgconn_timer_stop(c);
    if (c->state != PGCONN_CLOSING)
        c->state = PGCONN_IDLE;
}

static void pgconn_arm_backoff(PgConn *c)
{
    c->failures++;
    c->backoff_ms = backoff_ms(c->opts.reconnect_min_ms, c->opts.reconnect_max_ms, c->failures);
    c->retry_at = uv_now(c->loop) + c->backoff_ms;
}

/* ---- completion ---------------------------------------------------------------------------- */

static void pgconn_query_free(PgQuery *q)
{
    free(q->sql);
    if (q->params)
        pgconn__free_strv(q->params, (size_t)q->nparams);
    memset(q, 0, sizeof(*q));
}

/* Report the outstanding query's outcome; takes res. Touches nothing of c after the callback. */
static void pgconn_complete(PgConn *c, int status, PGresult *res, const char *msg)
{
    if (!c->busy) {
        PQclear(res);
        return;
    }
    if (c->in_query_call) {
        /* found inside pgconn_query(): report on the next loop turn */
        PQclear(res);
        c->deferred_status = status;
        pgconn__fmt(c->deferred_msg, sizeof(c->deferred_msg), "%s", msg ? msg : "");
        pgconn_timer_start(c, PGCONN_TIMER_DEFERRED, 0);
        return;
    }
    PgQuery q = c->q;
    char text[PGCONN_MSG_MAX];
    memset(&c->q, 0, sizeof(c->q));
    c->busy = false;
    c->sent = false;
    if (msg)
        pgconn__fmt(text, sizeof(text), "%s", msg);
    q.cb(c, status, res, msg ? text : NULL, q.data);
    PQclear(res);
    pgconn_query_free(&q);
}

/* The connection failed or was lost: drop it, arm the backoff, fail the query if any. */
void pgconn__fail(PgConn *c, int status, const char *msg)
{
    pgconn_set_error(c, msg);
    c->sqlstate[0] = '\0';
    pgconn_drop(c);
    pgconn_arm_backoff(c);
    pgconn_complete(c, status, NULL, c->errmsg);
}

static void pgconn_fail_pq(PgConn *c, int status)
{
    char msg[PGCONN_MSG_MAX];
    pgconn__fmt(msg, sizeof(msg), "%s", c->pq ? PQerrorMessage(c->pq) : "no connection");
    pgconn__fail(c, status, msg);
}

/* ---- query --------------------------------------------------------------------------------- */

static void pgconn_flush_and_watch(PgConn *c)
{
    int r = PQflush(c->pq);
    if (r < 0) {
        pgconn_fail_pq(c, DR_EDB);
        return;
    }
    c->q.flushing = r == 1;
    r = pgconn_poll_watch(c, UV_READABLE | (c->q.flushing ? UV_WRITABLE : 0));
    if (r < 0) {
        char msg[PGCONN_MSG_MAX];
        pgconn__fmt(msg, sizeof(msg), "cannot watch the database socket: %s", uv_strerror(r));
        pgconn__fail(c, DR_EDB, msg);
    }
}

static void pgconn_send(PgConn *c)
{
    c->sqlstate[0] = '\0';
    if (c->q.simple ? !PQsendQuery(c->pq, c->q.sql)
                    : !PQsendQueryParams(c->pq, c->q.sql, c->q.nparams, NULL, (const char *const *)c->q.params, NULL,
                                         NULL, 0)) {
        pgconn_fail_pq(c, DR_EDB);
        return;
    }
    c->sent = true;
    pgconn_timer_start(c, PGCONN_TIMER_QUERY, c->opts.query_timeout_ms);
    pgconn_flush_and_watch(c);
}

/* All results drained (PQgetResult gave NULL): report the last one. */
static void pgconn_finish_query(PgConn *c)
{
    PGresult *res = c->last_res;
    const char *msg = NULL;
    int status = 0;

    c->last_res = NULL;
    pgconn_timer_stop(c);
    c->sent = false;
    c->copying = false;
    if (!res) {
        msg = "query returned no result";
        status = DR_EDB;
    } else {
        ExecStatusType st = PQresultStatus(res);
        if (st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) {
            const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
            status = DR_EDB;
            pgconn_set_error(c, PQresultErrorMessage(res));
            snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", state ? state : "");
            msg = c->errmsg;
        }
    }
    if (PQstatus(c->pq) == CONNECTION_BAD) {
        if (!msg) {
            pgconn_set_error(c, PQerrorMessage(c->pq));
            msg = c->errmsg;
            status = DR_EDB;
        }
        pgconn_drop(c);
        pgconn_arm_backoff(c);
    } else {
        int r = pgconn_poll_watch(c, UV_READABLE);
        if (r < 0) {
            pgconn_drop(c);
            pgconn_arm_backoff(c);
        }
    }
    pgconn_complete(c, status, res, msg);
}

static void pgconn_query_io(PgConn *c, int status, int events);

/* Streaming: hand every complete message to copy_cb; at the end of the copy, collect the
 * command's results like a query's. */
static void pgconn_copy_io(PgConn *c, int status, int events)
{
    if (status < 0 || (events & UV_READABLE)) {
        if (status < 0 || PQconsumeInput(c->pq) != 1) {
            char msg[PGCONN_MSG_MAX];
            pgconn__fmt(msg, sizeof(msg), "%s", status < 0 ? uv_strerror(status) : PQerrorMessage(c->pq));
            pgconn__fail(c, DR_EDB, msg);
            return;
        }
    }
    if (c->q.flushing) {
        int r = PQflush(c->pq);
        if (r < 0) {
            pgconn_fail_pq(c, DR_EDB);
            return;
        }
        c->q.flushing = r == 1;
    }
    for (;;) {
        char *buf = NULL;
        int n = PQgetCopyData(c->pq, &buf, 1);
        if (n > 0) {
            c->q.copy_cb(c, buf, (size_t)n, c->q.data);
            PQfreemem(buf);
            if (c->state != PGCONN_READY || !c->copying)
                return; /* closed (or failed) from the callback */
            continue;
        }
        if (n == 0)
            break;
        if (n == -2) {
            pgconn_fail_pq(c, DR_EDB);
            return;
        }
        /* -1: the server ended the copy; its results follow (our CopyDone is sent there) */
        c->copying = false;
        pgconn_query_io(c, 0, 0);
        return;
    }
    int r = pgconn_poll_watch(c, UV_READABLE | (c->q.flushing ? UV_WRITABLE : 0));
    if (r < 0)
        pgconn__fail(c, DR_EDB, uv_strerror(r));
}

static void pgconn_query_io(PgConn *c, int status, int events)
{
    bool consumed = true;

    if (status < 0 || (events & UV_READABLE))
        consumed = PQconsumeInput(c->pq) == 1 && status >= 0;
    if (consumed && c->q.flushing) {
        int r = PQflush(c->pq);
        if (r < 0)
            consumed = false;
        else
            c->q.flushing = r == 1;
    }
    /* Drain. A broken connection makes PQisBusy false, so its error result is collected too. */
    while (!PQisBusy(c->pq)) {
        PGresult *r = PQgetResult(c->pq);
        if (!r) {
            pgconn_finish_query(c);
            return;
        }
        ExecStatusType st = PQresultStatus(r);
        if (st == PGRES_COPY_BOTH && c->q.copy_cb && !c->copying) {
            PQclear(r);
            c->copying = true;
            pgconn_timer_stop(c); /* a stream has no query deadline */
            pgconn_copy_io(c, status, 0);
            return;
        }
        if (st == PGRES_COPY_IN && c->q.copy_cb) {
            /* the server ended its side of the stream: answer with our CopyDone */
            PQclear(r);
            if (PQputCopyEnd(c->pq, NULL) != 1) {
                pgconn_fail_pq(c, DR_EDB);
                return;
            }
            c->q.flushing = true;
            continue;
        }
        if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            PQclear(r);
            pgconn__fail(c, DR_EDB, "COPY is not supported by pgconn");
            return;
        }
        /* keep the first error (the cause, e.g. FATAL 57P01), else the latest result; after a
         * stream, the end-of-timeline tuple rather than the CommandComplete that follows it */
        if (c->last_res && (PQresultStatus(c->last_res) == PGRES_FATAL_ERROR ||
                            (c->q.copy_cb && PQresultStatus(c->last_res) == PGRES_TUPLES_OK &&
                             st != PGRES_FATAL_ERROR))) {
            PQclear(r);
            continue;
        }
        PQclear(c->last_res);
        c->last_res = r;
    }
    if (!consumed) {
        char msg[PGCONN_MSG_MAX];
        pgconn__fmt(msg, sizeof(msg), "%s", status < 0 ? uv_strerror(status) : PQerrorMessage(c->pq));
        pgconn__fail(c, DR_EDB, msg);
        return;
    }
    int r = pgconn_poll_watch(c, UV_READABLE | (c->q.flushing ? UV_WRITABLE : 0));
    if (r < 0)
        pgconn__fail(c, DR_EDB, uv_strerror(r));
}

/* Connected and idle: readable means notices, notifications, or the server going away. */
static void pgconn_idle_io(PgConn *c, int status)
{
    if (status >= 0 && PQconsumeInput(c->pq) == 1 && PQstatus(c->pq) == CONNECTION_OK) {
        PGnotify *n;
        while ((n = PQnotifies(c->pq)) != NULL)
            PQfreemem(n);
        return;
    }
    pgconn_set_error(c, status < 0 ? uv_strerror(status) : PQerrorMessage(c->pq));
    c->sqlstate[0] = '\0';
    pgconn_drop(c);
    if (c->lost_cb) {
        char msg[PGCONN_MSG_MAX];
        pgconn__fmt(msg, sizeof(msg), "%s", c->errmsg[0] ? c->errmsg : "connection to the server was lost");
        c->lost_cb(c, msg, c->lost_data); /* may query or close: c is not touched after */
    }
}

void pgconn_set_lost_cb(PgConn *c, PgConnLostCb cb, void *data)
{
    c->lost_cb = cb;
    c->lost_data = data;
}

/* ---- connect ------------------------------------------------------------------------------- */

static void pgconn_connected(PgConn *c)
{
    pgconn_timer_stop(c);
    if (PQsetnonblocking(c->pq, 1) != 0) {
        pgconn_fail_pq(c, DR_EDB);
        return;
    }
    c->failures = 0;
    c->backoff_ms = 0;
    c->retry_at = 0;
    c->state = PGCONN_READY;
    if (c->busy) {
        pgconn_send(c);
        return;
    }
    int r = pgconn_poll_watch(c, UV_READABLE);
    if (r < 0)
        pgconn__fail(c, DR_EDB, uv_strerror(r));
}

static void pgconn_connect_step(PgConn *c)
{
    int r;
    switch (PQconnectPoll(c->pq)) {
    case PGRES_POLLING_READING:
        r = pgconn_poll_watch(c, UV_READABLE);
        break;
    case PGRES_POLLING_WRITING:
        r = pgconn_poll_watch(c, UV_WRITABLE);
        break;
    case PGRES_POLLING_OK:
        pgconn_connected(c);
        return;
    default:
        pgconn_fail_pq(c, DR_EDB);
        return;
    }
    if (r < 0) {
        char msg[PGCONN_MSG_MAX];
        pgconn__fmt(msg, sizeof(msg), "cannot watch the database socket: %s", uv_strerror(r));
        pgconn__fail(c, DR_EDB, msg);
    }
}

static void pgconn_on_poll(uv_poll_t *h, int status, int events)
{
    PgConn *c = ((PgPoll *)h)->owner;

    switch (c->state) {
    case PGCONN_CONNECTING:
        pgconn_connect_step(c);
        break;
    case PGCONN_READY:
        if (c->copying)
            pgconn_copy_io(c, status, events);
        else if (c->sent)
            pgconn_query_io(c, status, events);
        else
            pgconn_idle_io(c, status);
        break;
    default:
        break;
    }
}

static void pgconn_ignore_notice(void *arg, const char *message)
{
    (void)arg;
    (void)message;
}

/* Build host/hostaddr/port from this attempt's lookups and start libpq's connect. */
void pgconn__start_pq(PgConn *c)
{
    size_t n = c->nkv;
    const char **keys = calloc(n + 4, sizeof(*keys));
    const char **vals = calloc(n + 4, sizeof(*vals));
    char *hoststr = NULL, *addrstr = NULL, *portstr = NULL;
    size_t cap = c->nhosts * PGCONN_MAX_ADDRS, ne = 0;
    char **eh = calloc(cap + 1, sizeof(*eh)), **ea = calloc(cap + 1, sizeof(*ea));
    char **ep = calloc(cap + 1, sizeof(*ep));
    bool any_addr = false;

    if (!keys || !vals || !eh || !ea || !ep)
        goto oom;
    for (size_t i = 0; i < n; i++) {
        keys[i] = c->keys[i];
        vals[i] = c->vals[i];
    }
    if (c->rewrite_hosts) {
        for (size_t i = 0; i < c->nhosts; i++) {
            PgHost *h = &c->hosts[i];
            if (h->kind == PGCONN_HOST_NAME) {
                for (size_t j = 0; j < h->naddrs; j++, ne++) {
                    eh[ne] = h->host;
                    ea[ne] = h->addrs[j];
                    ep[ne] = h->port;
                    any_addr = true;
                }
            } else {
                eh[ne] = h->host;
                ea[ne] = h->kind == PGCONN_HOST_LITERAL ? h->host : NULL;
                any_addr |= h->kind == PGCONN_HOST_LITERAL;
                ep[ne] = h->port;
                ne++;
            }
        }
        if (ne == 0) {
            pgconn__fail(c, DR_EDB, c->resolve_err[0] ? c->resolve_err : "no usable host");
            goto out;
        }
        hoststr = pgconn__join(eh, ne);
        addrstr = any_addr ? pgconn__join(ea, ne) : NULL;
        portstr = c->hosts[0].port ? pgconn__join(ep, ne) : (c->port ? strdup(c->port) : NULL);
        if (!hoststr || (any_addr && !addrstr) || ((c->hosts[0].port || c->port) && !portstr))
            goto oom;
        keys[n] = "host";
        vals[n++] = hoststr;
        if (addrstr) {
            keys[n] = "hostaddr";
            vals[n++] = addrstr;
        }
        if (portstr) {
            keys[n] = "port";
            vals[n++] = portstr;
        }
    }
    c->pq = PQconnectStartParams(keys, vals, 0);
    if (!c->pq)
        goto oom;
    if (PQstatus(c->pq) == CONNECTION_BAD) {
        pgconn_fail_pq(c, DR_EDB);
        goto out;
    }
    /* libpq prints notices (and errors arriving while idle) on stderr by default: lib/ is silent */
    PQsetNoticeProcessor(c->pq, pgconn_ignore_notice, NULL);
    c->state = PGCONN_CONNECTING;
    /* as if PQconnectPoll had returned PGRES_POLLING_WRITING */
    int r = pgconn_poll_watch(c, UV_WRITABLE);
    if (r < 0) {
        char msg[PGCONN_MSG_MAX];
        pgconn__fmt(msg, sizeof(msg), "cannot watch the database socket: %s", uv_strerror(r));
        pgconn__fail(c, DR_EDB, msg);
    }
    goto out;
oom:
    pgconn__fail(c, -ENOMEM, "out of memory");
out:
    free(keys);
    free(vals);
    free(eh);
    free(ea);
    free(ep);
    free(hoststr);
    free(addrstr);
    free(portstr);
}

static void pgconn_start_connect(PgConn *c)
{
    for (size_t i = 0; i < c->nhosts; i++) {
        for (size_t j = 0; j < c->hosts[i].naddrs; j++)
            free(c->hosts[i].addrs[j]);
        c->hosts[i].naddrs = 0;
    }
    c->resolve_idx = 0;
    c->resolve_err[0] = '\0';
    c->state = PGCONN_RESOLVING;
    pgconn_timer_start(c, PGCONN_TIMER_CONNECT, c->opts.connect_timeout_ms);
    if (c->rewrite_hosts)
        pgconn__resolve_next(c);
    else
        pgconn__start_pq(c);
}

/* Thread pool: PQcancel opens a connection and blocks; best effort, the query already failed. */
static void pgconn_cancel_work(uv_work_t *req)
{
    PgCancelJob *job = (PgCancelJob *)req;
    char err[256];
    (void)PQcancel(job->cancel, err, (int)sizeof(err));
}

static void pgconn_cancel_done(uv_work_t *req, int status)
{
    PgCancelJob *job = (PgCancelJob *)req;
    (void)status;
    PQfreeCancel(job->cancel);
    free(job);
}

static void pgconn_on_timer(uv_timer_t *t)
{
    PgConn *c = t->data;
    PgConnTimer use = c->timer_use;
    char msg[PGCONN_MSG_MAX];

    c->timer_use = PGCONN_TIMER_NONE;
    switch (use) {
    case PGCONN_TIMER_CONNECT:
        pgconn__fmt(msg, sizeof(msg), "could not connect within %llu ms%s",
                   (unsigned long long)c->opts.connect_timeout_ms,
                   c->state == PGCONN_RESOLVING ? " (host name lookup)" : "");
        pgconn__fail(c, -ETIMEDOUT, msg);
        break;
    case PGCONN_TIMER_QUERY: {
        /* PQcancel blocks (it opens a new connection): run it on the thread pool. */
        PGcancel *cancel = PQgetCancel(c->pq);
        PgCancelJob *job = cancel ? calloc(1, sizeof(*job)) : NULL;
        bool queued = false;
        if (job) {
            job->cancel = cancel;
            queued = uv_queue_work(c->loop, &job->req, pgconn_cancel_work, pgconn_cancel_done) == 0;
        }
        if (!queued) {
            PQfreeCancel(cancel);
            free(job);
        }
        pgconn__fmt(msg, sizeof(msg), "query timed out after %llu ms (%s)",
                   (unsigned long long)c->opts.query_timeout_ms,
                   queued ? "cancel sent, connection dropped" : "connection dropped");
        pgconn_set_error(c, msg);
        c->sqlstate[0] = '\0';
        pgconn_drop(c); /* no backoff: the server did answer the connect */
        pgconn_complete(c, -ETIMEDOUT, NULL, msg);
        break;
    }
    case PGCONN_TIMER_DEFERRED:
        pgconn_complete(c, c->deferred_status, NULL, c->deferred_msg);
        break;
    case PGCONN_TIMER_NONE:
        break;
    }
}

/* ---- public -------------------------------------------------------------------------------- */

PgConn *pgconn_new_msg(uv_loop_t *loop, const char *conninfo, const PgConnOptions *opts,
                       char **ret_errmsg)
{
    char msg[PGCONN_MSG_MAX] = "";
    PgConn *c = calloc(1, sizeof(*c));

    if (ret_errmsg)
        *ret_errmsg = NULL;
    if (!c)
        return NULL;
    c->loop = loop;
    if (opts)
        c->opts = *opts;
    if (!c->opts.connect_timeout_ms)
        c->opts.connect_timeout_ms = PGCONN_DEFAULT_CONNECT_MS;
    if (!c->opts.query_timeout_ms)
        c->opts.query_timeout_ms = PGCONN_DEFAULT_QUERY_MS;
    if (!c->opts.reconnect_min_ms)
        c->opts.reconnect_min_ms = PGCONN_DEFAULT_RECONNECT_MIN_MS;
    if (!c->opts.reconnect_max_ms)
        c->opts.reconnect_max_ms = PGCONN_DEFAULT_RECONNECT_MAX_MS;
    if (c->opts.reconnect_max_ms < c->opts.reconnect_min_ms)
        c->opts.reconnect_max_ms = c->opts.reconnect_min_ms;

    int r = conninfo ? pgconn__parse(c, conninfo, msg, sizeof(msg)) : DR_ECONFIG;
    if (r == 0 && uv_timer_init(loop, &c->timer) != 0)
        r = -ENOMEM;
    if (r < 0) {
        if (!conninfo)
            snprintf(msg, sizeof(msg), "invalid conninfo: none given");
        if (ret_errmsg && msg[0])
            *ret_errmsg = strdup(msg);
        c->state = PGCONN_CLOSING;
        c->handles_open = 1;
        pgconn_handle_closed(c); /* frees; no handle was initialised */
        return NULL;
    }
    c->timer.data = c;
    c->handles_open = 1;
    c->state = PGCONN_IDLE;
    return c;
}

PgConn *pgconn_new(uv_loop_t *loop, const char *conninfo, const PgConnOptions *opts)
{
    return pgconn_new_msg(loop, conninfo, opts, NULL);
}

int pgconn_check_conninfo(const char *conninfo, char *msg, size_t msgsize)
{
    PgConn *c;
    int r;

    if (msgsize)
        msg[0] = '\0';
    if (!conninfo) {
        snprintf(msg, msgsize, "invalid conninfo: none given");
        return DR_ECONFIG;
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    r = pgconn__parse(c, conninfo, msg, msgsize);
    c->state = PGCONN_CLOSING;
    c->handles_open = 1;
    pgconn_handle_closed(c); /* frees what the parse kept; no handle was initialised */
    return r;
}

/* Take q (sql already copied) as the outstanding query and send it, connecting first if needed. */
static void pgconn_start_query(PgConn *c, PgQuery q)
{
    c->q = q;
    c->busy = true;
    c->in_query_call = true;
    if (c->state == PGCONN_READY) {
        pgconn_send(c);
    } else if (c->retry_at && uv_now(c->loop) < c->retry_at) {
        pgconn_complete(c, DR_EDB, NULL, c->errmsg); /* fail fast, deferred to the next turn */
    } else {
        pgconn_start_connect(c);
    }
    c->in_query_call = false;
}

static int pgconn_start_simple(PgConn *c, const char *sql, PgConnCopyCb copy_cb, PgConnResultCb cb, void *data)
{
    if (!c || !sql || !cb)
        return -EINVAL;
    if (c->state == PGCONN_CLOSING)
        return DR_ECANCELED;
    if (c->busy)
        return -EBUSY;
    PgQuery q = {.cb = cb, .copy_cb = copy_cb, .data = data, .simple = true};
    if (!(q.sql = strdup(sql)))
        return -ENOMEM;
    pgconn_start_query(c, q);
    return 0;
}

int pgconn_simple_query(PgConn *c, const char *sql, PgConnResultCb cb, void *data)
{
    return pgconn_start_simple(c, sql, NULL, cb, data);
}

int pgconn_copy_both(PgConn *c, const char *sql, PgConnCopyCb copy_cb, PgConnResultCb done_cb, void *data)
{
    if (!copy_cb)
        return -EINVAL;
    return pgconn_start_simple(c, sql, copy_cb, done_cb, data);
}

int pgconn_copy_put(PgConn *c, const void *msg, size_t len)
{
    if (!c || !c->copying || c->state != PGCONN_READY || !msg || len > INT32_MAX)
        return -EINVAL;
    int q = PQputCopyData(c->pq, msg, (int)len);
    if (q == 0)
        return -EAGAIN; /* libpq's buffer is full (nonblocking): not queued, try again later */
    if (q != 1) {
        pgconn_fail_pq(c, DR_EDB);
        return DR_EDB;
    }
    int r = PQflush(c->pq);
    if (r < 0) {
        pgconn_fail_pq(c, DR_EDB);
        return DR_EDB;
    }
    if (r == 1 && !c->q.flushing) {
        c->q.flushing = true;
        if (pgconn_poll_watch(c, UV_READABLE | UV_WRITABLE) < 0) {
            pgconn__fail(c, DR_EDB, "cannot watch the database socket");
            return DR_EDB;
        }
    }
    return 0;
}

bool pgconn_is_streaming(const PgConn *c)
{
    return c && c->copying && c->state == PGCONN_READY;
}

int pgconn_query(PgConn *c, const char *sql, int nparams, const char *const *params,
                 PgConnResultCb cb, void *data)
{
    if (!c || !sql || !cb || nparams < 0 || (nparams > 0 && !params))
        return -EINVAL;
    if (c->state == PGCONN_CLOSING)
        return DR_ECANCELED;
    if (c->busy)
        return -EBUSY;

    PgQuery q = {.nparams = nparams, .cb = cb, .data = data};
    q.sql = strdup(sql);
    if (!q.sql)
        return -ENOMEM;
    if (nparams > 0) {
        q.params = calloc((size_t)nparams, sizeof(*q.params));
        if (!q.params) {
            pgconn_query_free(&q);
            return -ENOMEM;
        }
        for (int i = 0; i < nparams; i++) {
            if (params[i] && !(q.params[i] = strdup(params[i]))) {
                pgconn_query_free(&q);
                return -ENOMEM;
            }
        }
    }
    pgconn_start_query(c, q);
    return 0;
}

bool pgconn_is_connected(const PgConn *c)
{
    return c && c->state == PGCONN_READY;
}

bool pgconn_is_busy(const PgConn *c)
{
    return c && c->busy;
}

const char *pgconn_last_sqlstate(const PgConn *c)
{
    return c ? c->sqlstate : "";
}

const char *pgconn_last_error(const PgConn *c)
{
    return c ? c->errmsg : "";
}

uint64_t pgconn_backoff_remaining_ms(const PgConn *c)
{
    if (!c || !c->retry_at || c->state == PGCONN_READY)
        return 0;
    uint64_t now = uv_now(c->loop);
    return now < c->retry_at ? c->retry_at - now : 0;
}

void pgconn_close(PgConn *c, void (*closed_cb)(void *data), void *data)
{
    if (!c || c->state == PGCONN_CLOSING)
        return;
    c->state = PGCONN_CLOSING;
    c->closed_cb = closed_cb;
    c->closed_data = data;
    pgconn_drop(c);
    c->in_query_call = false;
    pgconn_complete(c, DR_ECANCELED, NULL, "connection closed");
    uv_close((uv_handle_t *)&c->timer, pgconn_on_timer_closed);
}
