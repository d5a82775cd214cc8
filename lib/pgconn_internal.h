/*
 * pgconn_internal: what pgconn.c (the connection state machine) and pgconninfo.c (conninfo
 * parsing, host name lookups) share; not for other modules.
 *
 * The connection (PgConn) is owned by its creator through pgconn_new/pgconn_close; its hosts,
 * keys and values and resolved addresses are owned by the connection.
 */
#ifndef DRSUP_PGCONN_INTERNAL_H
#define DRSUP_PGCONN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <libpq-fe.h>
#include <uv.h>

#include "pgconn.h"

enum { PGCONN_MSG_MAX = 512, PGCONN_MAX_ADDRS = 8 };

typedef enum {
    PGCONN_IDLE,
    PGCONN_RESOLVING,
    PGCONN_CONNECTING,
    PGCONN_READY,
    PGCONN_CLOSING,
} PgConnState;

typedef enum {
    PGCONN_TIMER_NONE,
    PGCONN_TIMER_CONNECT,
    PGCONN_TIMER_QUERY,
    PGCONN_TIMER_DEFERRED,
} PgConnTimer;

typedef enum {
    PGCONN_HOST_UNIX,    /* socket directory or empty: no lookup, no hostaddr */
    PGCONN_HOST_LITERAL, /* IP literal: hostaddr is the host itself */
    PGCONN_HOST_NAME,    /* name: resolved with uv_getaddrinfo */
} PgHostKind;

typedef struct PgHost {
    char *host;
    char *port;            /* this host's port when ports are given per host, else NULL */
    PgHostKind kind;
    char *addrs[PGCONN_MAX_ADDRS]; /* resolved addresses of the current attempt */
    size_t naddrs;
} PgHost;

/* A uv_poll on the connection socket; freed in its close callback. */
typedef struct PgPoll {
    uv_poll_t handle;
    PgConn *owner;
} PgPoll;

/* A lookup in flight; detached (owner NULL) when the connection gives up on it. */
typedef struct PgResolve {
    uv_getaddrinfo_t req;
    PgConn *owner;
    size_t host_idx;
} PgResolve;


typedef struct PgQuery {
    char *sql;
    char **params;
    int nparams;
    PgConnResultCb cb;
    PgConnCopyCb copy_cb; /* pgconn_copy_both: the messages of the COPY BOTH stream */
    void *data;
    bool simple;   /* PQsendQuery (the replication protocol's commands) */
    bool flushing; /* PQflush returned 1: wait for writable too */
} PgQuery;

struct PgConn {
    uv_loop_t *loop;
    PgConnOptions opts;
    PgConnState state;

    /* conninfo: the options passed through as they are, plus the hosts we resolve */
    char **keys;
    char **vals;
    size_t nkv;
    bool rewrite_hosts; /* false: host/hostaddr/port are in keys/vals unchanged */
    PgHost *hosts;
    size_t nhosts;
    char *port;         /* single port value (or NULL) when not per host */
    size_t resolve_idx;
    PgResolve *resolve;
    char resolve_err[PGCONN_MSG_MAX];

    PGconn *pq;
    PgPoll *poll;
    int poll_fd;
    dev_t poll_dev;
    ino_t poll_ino;

    uv_timer_t timer;
    PgConnTimer timer_use;
    unsigned handles_open;

    bool busy;
    bool sent;
    bool copying;  /* inside the COPY BOTH of a pgconn_copy_both() */
    bool in_query_call;
    PgQuery q;
    PgConnLostCb lost_cb;
    void *lost_data;
    PGresult *last_res;
    int deferred_status;
    char deferred_msg[PGCONN_MSG_MAX];

    unsigned failures;
    uint64_t backoff_ms;
    uint64_t retry_at;

    char errmsg[PGCONN_MSG_MAX];
    char sqlstate[6];

    void (*closed_cb)(void *data);
    void *closed_data;
};

/* snprintf into dst, then trim trailing white space and newlines. */
__attribute__((format(printf, 3, 4))) void pgconn__fmt(char *dst, size_t size, const char *fmt, ...);
/* The connection failed or was lost: drop it, arm the backoff, fail the query if any. */
void pgconn__fail(PgConn *c, int status, const char *msg);
/* Build host/hostaddr/port from this attempt's lookups and start libpq's connect. */
void pgconn__start_pq(PgConn *c);

/* pgconninfo.c */
/* Fill keys/vals and hosts from conninfo. Returns 0, -ENOMEM, or DR_ECONFIG with *msg set. */
int pgconn__parse(PgConn *c, const char *conninfo, char *msg, size_t msgsize);
/* Look up the next host name (one at a time), then connect (pgconn__start_pq). */
void pgconn__resolve_next(PgConn *c);
/* parts joined with ',' (NULL parts as empty); NULL on OOM. Caller frees. */
char *pgconn__join(char **parts, size_t n);
/* Free n strings and the vector (NULL is a no-op). */
void pgconn__free_strv(char **v, size_t n);

#endif
