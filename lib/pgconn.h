/*
 * pgconn: one libpq connection driven by the libuv loop, never blocking it.
 *
 * Owns a PGconn, the uv_poll watching its socket, one uv_timer (connect or query timeout), the
 * parsed conninfo, and at most one outstanding query. Mechanism only: it does not log and knows
 * nothing about what the queries mean.
 *
 * Connection life:
 *   - Lazy: the first pgconn_query() connects. Host names are resolved with uv_getaddrinfo on the
 *     thread pool and handed to libpq as hostaddr= (every address of a name becomes one libpq host
 *     entry, so libpq still tries them in order); IP literals go straight to hostaddr=; unix-socket
 *     directories need no lookup. libpq therefore never resolves a name on the loop thread.
 *   - PQconnectStartParams + PQconnectPoll, polled with uv_poll; the socket is re-checked after
 *     every PQconnectPoll (libpq may switch sockets: next host, SSL/GSS fallback) and the uv_poll
 *     re-created when it changed. libpq ignores connect_timeout here, so our own timer enforces
 *     connect_timeout_ms over lookup + connect.
 *   - A failed connect or a lost connection arms a backoff: reconnect_min_ms after the first
 *     failure, doubling per consecutive failure up to reconnect_max_ms; a successful connect resets
 *     it. A query issued while the backoff runs FAILS FAST: no connect is attempted, and its
 *     callback gets DR_EDB with the error of the failed attempt on the next loop turn (also in
 *     pgconn_last_error()). It does not wait for the backoff, so a caller on a periodic tick never
 *     piles up behind a dead server; pgconn_backoff_remaining_ms() tells when a retry is allowed.
 *   - Query timeout: the query is cancelled with PQcancel on the thread pool (PQcancel blocks), the
 *     connection is dropped at once, the callback gets -ETIMEDOUT, and the next query reconnects
 *     without backoff (the server answered the connect; it was the query that was slow).
 *   - While idle the socket is watched for readability, so a server that goes away is noticed
 *     (pgconn_is_connected() turns false) before the next query, at once (a crashed server's
 *     connections close): the lost callback, when set, is told. Losing an idle connection arms no
 *     backoff: it says nothing about whether a new connection would work, so the next query
 *     connects at once.
 *
 * Teardown order: uv_poll_stop + uv_close on the poll handle first, then PQfinish. We do not dup
 * the socket (as libpquv does): a dup would keep a socket libpq has abandoned open towards the
 * server until our close callback runs, and it costs an fd per connection. Instead the poll is
 * keyed by the socket's identity (fd number plus st_dev/st_ino), which also catches libpq closing
 * a socket and getting the same fd number back for its next one.
 *
 * Callbacks are never called from inside pgconn_query(). pgconn_close() calls the pending
 * callback (DR_ECANCELED) before it returns. A callback may call pgconn_query() or
 * pgconn_close() on its own connection.
 *
 * Messages handed out never contain the password: libpq does not echo it, and conninfo parse
 * errors have their quoted fragments removed when the conninfo carries a password.
 */
#ifndef DRSUP_PGCONN_H
#define DRSUP_PGCONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>
#include <uv.h>

typedef struct PgConn PgConn;

typedef struct PgConnOptions {
    uint64_t connect_timeout_ms; /* lookup + connect; 0 = 10000 */
    uint64_t query_timeout_ms;   /* send to last result; 0 = 30000 */
    uint64_t reconnect_min_ms;   /* backoff after the first failure; 0 = 100 */
    uint64_t reconnect_max_ms;   /* backoff ceiling; 0 = 10000 (raised to min if below it) */
} PgConnOptions;

/*
 * Result of one query.
 * status 0: res is the LAST non-NULL PGresult of the query (PGRES_TUPLES_OK or PGRES_COMMAND_OK),
 *   errmsg is NULL.
 * status DR_EDB: errmsg is libpq's message (no trailing newline). When the query produced an
 *   error result, res is the FIRST one (the cause: a backend killed under a query gives its FATAL
 *   57P01 result, not libpq's later "server closed the connection") and pgconn_last_sqlstate()
 *   gives its SQLSTATE (e.g. "42P01", "XX001"; "" when libpq made the error itself). res is NULL
 *   when no result exists (connect failure). If the connection broke it has been dropped, and the
 *   next query reconnects after the backoff.
 * status -ETIMEDOUT: connect or query timeout (res NULL, errmsg says which).
 * status DR_ECANCELED: pgconn_close() was called (res NULL).
 * status -ENOMEM: allocation failed (res NULL).
 * res and errmsg are borrowed and valid only during the callback.
 */
typedef void (*PgConnResultCb)(PgConn *c, int status, const PGresult *res, const char *errmsg,
                               void *data);

/*
 * Create a connection object (does not connect yet). conninfo is libpq key=value or URI form;
 * opts may be NULL for defaults. Returns NULL on bad conninfo or OOM; then, when ret_errmsg is
 * not NULL, *ret_errmsg is a malloc'd message for the caller to free (NULL on OOM).
 */
PgConn *pgconn_new_msg(uv_loop_t *loop, const char *conninfo, const PgConnOptions *opts,
                       char **ret_errmsg);
/* pgconn_new_msg() without the message. */
PgConn *pgconn_new(uv_loop_t *loop, const char *conninfo, const PgConnOptions *opts);
/*
 * Check that conninfo would be accepted by pgconn_new_msg(), without creating anything: 0, or
 * DR_ECONFIG with the reason in msg (never the password), or -ENOMEM. Pure: no I/O, no handle.
 */
int pgconn_check_conninfo(const char *conninfo, char *msg, size_t msgsize);

/* Whether conninfo is in URI form (postgresql:// or postgres://), where keywords are added as query
 * parameters rather than as " key=value". Pure. */
bool pgconn_conninfo_is_uri(const char *conninfo);

/*
 * Whether conninfo (key=value or URI form, as libpq's PQconninfoParse reads it) gives a password,
 * empty or not. A conninfo libpq cannot parse gives none. Pure.
 */
bool pgconn_conninfo_has_password(const char *conninfo);

/*
 * The passfile= of conninfo (as PQconninfoParse reads it): 0 with *ret_path malloc'd (the caller
 * frees), or NULL when there is none or libpq cannot parse it; -ENOMEM. Pure.
 */
int pgconn_conninfo_passfile(const char *conninfo, char **ret_path);

/*
 * The conninfo for a child program such as pg_dump or pg_restore, whose command line any local
 * user can read in /proc/PID/cmdline: *ret_conninfo (malloc'd, the caller frees) is the same
 * connection as key=value text (for -d). Secrets never travel to a child: DR_ECONFIG with the
 * reason in msg (never a secret) when the conninfo holds a password or an sslpassword, or a dbname
 * that is itself a conninfo (the child's password comes from a passfile: passfile= in the conninfo
 * or PGPASSFILE); -ENOMEM. Pure.
 */
int pgconn_child_conninfo(const char *conninfo, char **ret_conninfo, char *msg, size_t msgsize);

/*
 * The same connection as conninfo (database, user, options, ...) but to the server `server`
 * names: host, hostaddr and port are taken from server (dropped when server has none), every
 * other keyword from conninfo. *ret_conninfo is key=value text, malloc'd (the caller frees).
 * 0, DR_ECONFIG when either cannot be parsed, -ENOMEM. Pure. Used to follow a promoted standby.
 */
int pgconn_conninfo_retarget(const char *conninfo, const char *server, char **ret_conninfo);

/*
 * Whether conninfos a and b name the same server: the same port (5432 when unset) and the same
 * hostaddr when both give one, else the same host or the one's hostaddr written as the other's
 * host (a unix-socket directory compared without trailing slashes; neither giving a host: both
 * the default socket). Names are compared as written, never resolved. 1 yes, 0 no, DR_ECONFIG
 * when either cannot be parsed. Pure.
 */
int pgconn_conninfo_same_server(const char *a, const char *b);

/*
 * The rule that makes a conninfo follow a promotion: when conninfo names the server `from` names
 * (pgconn_conninfo_same_server), *ret_conninfo is conninfo retargeted to `to` (malloc'd, the
 * caller frees) and 1 is returned; otherwise (some other server, or from or to NULL) 0 with
 * *ret_conninfo NULL. DR_ECONFIG when one cannot be parsed, -ENOMEM. Pure.
 */
int pgconn_conninfo_follow(const char *conninfo, const char *from, const char *to, char **ret_conninfo);

/* What a module's conninfos follow: the old primary's server (from) and the new one's (to), both
 * NULL before any promotion. Owned by the module; both strings owned by the struct. */
typedef struct PgConnFollow {
    char *from, *to;
} PgConnFollow;
/* Copy from and to into f (either NULL: nothing followed). 1 when that changed f, 0 when not, -ENOMEM. */
int pgconn_follow_set(PgConnFollow *f, const char *from, const char *to);
void pgconn_follow_clear(PgConnFollow *f);
/* conninfo as it follows f (pgconn_conninfo_follow; as written when it names another server or
 * cannot be parsed), malloc'd; NULL when conninfo is NULL or out of memory. *ret_followed (may be
 * NULL) says whether it was retargeted. */
char *pgconn_follow_apply(const PgConnFollow *f, const char *conninfo, bool *ret_followed);

/*
 * Send one query (PQsendQueryParams: one statement, text parameters, text results; params[i]
 * NULL is SQL NULL; the strings are copied). Connects first when not connected. Returns 0 and
 * later calls cb exactly once (every database outcome, including a failure found at once such as
 * a refused connect or the backoff, arrives through cb, never from inside this call), or returns
 * without calling cb: -EBUSY (a query is outstanding), DR_ECANCELED (closing), -EINVAL, -ENOMEM.
 */
int pgconn_query(PgConn *c, const char *sql, int nparams, const char *const *params,
                 PgConnResultCb cb, void *data);

/*
 * The replication protocol (a conninfo with replication=true): pgconn_simple_query() sends one
 * command with the simple query protocol (the walsender accepts no other: IDENTIFY_SYSTEM,
 * TIMELINE_HISTORY, READ_REPLICATION_SLOT, CREATE_REPLICATION_SLOT), otherwise like
 * pgconn_query() without parameters.
 *
 * pgconn_copy_both() sends a command that enters COPY BOTH (START_REPLICATION): each message the
 * server sends is given to copy_cb (data borrowed for the call; the query timeout does not apply
 * while streaming), and pgconn_copy_put() sends messages back (standby status updates). When the
 * server ends the stream (end of its timeline, shutdown) our CopyDone is sent and done_cb gets the
 * command's result: the next timeline's tuple when the server sent one, else COMMAND_OK; a lost
 * connection or an error gives done_cb DR_EDB. copy_cb may call pgconn_close(). Same returns as
 * pgconn_query().
 */
typedef void (*PgConnCopyCb)(PgConn *c, const char *msg, size_t len, void *data);
int pgconn_simple_query(PgConn *c, const char *sql, PgConnResultCb cb, void *data);
int pgconn_copy_both(PgConn *c, const char *sql, PgConnCopyCb copy_cb, PgConnResultCb done_cb, void *data);
/* Queue one COPY message while streaming (flushed without blocking). 0, -EAGAIN (libpq's output
 * buffer is full: not queued), -EINVAL (not streaming), DR_EDB (the connection failed: done_cb is
 * told). */
int pgconn_copy_put(PgConn *c, const void *msg, size_t len);
/* True while a pgconn_copy_both() stream is open. */
bool pgconn_is_streaming(const PgConn *c);

/*
 * Called on the loop when an idle connection is found broken (EOF, reset, an error the server sent
 * before closing); errmsg is libpq's message. It may call pgconn_query() (connects anew) or
 * pgconn_close(). cb NULL: nobody is told.
 */
typedef void (*PgConnLostCb)(PgConn *c, const char *errmsg, void *data);
void pgconn_set_lost_cb(PgConn *c, PgConnLostCb cb, void *data);

/* True when a connection to the server is established (idle or running a query). */
bool pgconn_is_connected(const PgConn *c);

/* True while a query is outstanding (including its connect). */
bool pgconn_is_busy(const PgConn *c);

/* SQLSTATE of the last server-reported error ("" when the last query did not fail that way). */
const char *pgconn_last_sqlstate(const PgConn *c);

/* Message of the last failure ("" when none); stays until the next failure. */
const char *pgconn_last_error(const PgConn *c);

/* Milliseconds left before a reconnect is allowed (0 when a query may connect now). */
uint64_t pgconn_backoff_remaining_ms(const PgConn *c);

/*
 * Close: the pending callback, if any, is called with DR_ECANCELED before this returns; the
 * connection is dropped; c frees itself once its handles are closed, then closed_cb(data) runs
 * (closed_cb may be NULL). A query cancel still running on the thread pool is not waited for (it
 * owns its own memory, but uv_run keeps the loop alive until it returns; PQcancel has no timeout
 * of its own). pgconn_close(NULL, ...) and a second close are no-ops (its closed_cb is not called).
 */
void pgconn_close(PgConn *c, void (*closed_cb)(void *data), void *data);

#endif
