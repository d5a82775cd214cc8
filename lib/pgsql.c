/*
 * pgsql: identifier and conninfo quoting, and statement sequences on their own connection (see
 * pgsql.h).
 *
 * A sequence owns its PgConn, a copy of the statements and one uv_timer that delivers the end on
 * a later loop turn (so done() never runs inside pgsql_seq_cancel(), whose pgconn_close() answers
 * the statement in flight at once); the sequence is freed in the timer's close callback.
 */
#include "pgsql.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

int pgsql_quote_ident(const char *name, char *out, size_t n)
{
    size_t o = 0;
    if (n == 0)
        return -ENAMETOOLONG;
    if (n < 3)
        goto too_long;
    out[o++] = '"';
    for (const char *p = name; *p; p++) {
        size_t need = *p == '"' ? 2 : 1;
        if (o + need + 2 > n) /* this, the closing quote and the NUL */
            goto too_long;
        if (*p == '"')
            out[o++] = '"';
        out[o++] = *p;
    }
    out[o++] = '"';
    out[o] = '\0';
    return 0;
too_long:
    out[0] = '\0';
    return -ENAMETOOLONG;
}

char *pgsql_conninfo_dbname(const char *conninfo, const char *dbname)
{
    size_t cl = strlen(conninfo), dl = strlen(dbname);
    char *out = malloc(cl + 2 * dl + sizeof(" dbname=''"));
    if (!out)
        return NULL;
    memcpy(out, conninfo, cl);
    size_t o = cl;
    memcpy(out + o, " dbname='", 9);
    o += 9;
    for (const char *p = dbname; *p; p++) {
        if (*p == '\'' || *p == '\\')
            out[o++] = '\\';
        out[o++] = *p;
    }
    out[o++] = '\'';
    out[o] = '\0';
    return out;
}

struct PgSqlSeq {
    uv_loop_t *loop;
    PgConn *pg;
    char **stmts;
    size_t n, next;
    PgSqlSeqDoneFn done;
    void *data;
    uv_timer_t timer;
    bool ended, canceled;
    int status;
    char *errmsg;
    PGresult *res; /* a copy of the result handed to done() */
};

static void pgsql_seq_free_stmts(char **stmts, size_t n)
{
    for (size_t i = 0; stmts && i < n; i++)
        free(stmts[i]);
    free(stmts);
}

static void pgsql_seq_on_closed(uv_handle_t *h)
{
    PgSqlSeq *s = h->data;
    pgsql_seq_free_stmts(s->stmts, s->n);
    free(s->errmsg);
    PQclear(s->res);
    free(s);
}

static void pgsql_seq_on_timer(uv_timer_t *t)
{
    PgSqlSeq *s = t->data;
    PgSqlSeqResult r = {.status = s->status, .done = s->next, .res = s->res, .errmsg = s->errmsg};
    if (s->pg) {
        pgconn_close(s->pg, NULL, NULL);
        s->pg = NULL;
    }
    s->done(&r, s->data);
    uv_close((uv_handle_t *)&s->timer, pgsql_seq_on_closed);
}

/* Remember how it ended and deliver it on the next loop turn. */
static void pgsql_seq_end(PgSqlSeq *s, int status, const PGresult *res, const char *errmsg)
{
    s->ended = true;
    s->status = status;
    if (errmsg)
        s->errmsg = strdup(errmsg);
    if (status < 0 && !s->errmsg)
        s->errmsg = strdup(err_str(status));
    if (res && status == 0)
        s->res = PQcopyResult(res, PG_COPYRES_ATTRS | PG_COPYRES_TUPLES);
    uv_timer_start(&s->timer, pgsql_seq_on_timer, 0, 0);
}

static void pgsql_seq_on_result(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data);

static void pgsql_seq_send(PgSqlSeq *s)
{
    int r = pgconn_query(s->pg, s->stmts[s->next], 0, NULL, pgsql_seq_on_result, s);
    if (r < 0)
        pgsql_seq_end(s, r, NULL, NULL);
}

static void pgsql_seq_on_result(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    PgSqlSeq *s = data;
    (void)c;
    if (s->ended)
        return;
    if (s->canceled || status == DR_ECANCELED) {
        pgsql_seq_end(s, DR_ECANCELED, NULL, NULL);
        return;
    }
    if (status < 0) {
        pgsql_seq_end(s, status, res, errmsg);
        return;
    }
    if (++s->next == s->n) {
        pgsql_seq_end(s, 0, res, NULL);
        return;
    }
    pgsql_seq_send(s);
}

int pgsql_seq_start(uv_loop_t *loop, const char *conninfo, const PgConnOptions *opts, const char *const *stmts,
                    size_t n, PgSqlSeqDoneFn done, void *data, PgSqlSeq **ret_seq)
{
    char *msg = NULL;
    if (n == 0 || !conninfo)
        return -EINVAL;
    PgSqlSeq *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    s->n = n;
    s->stmts = calloc(n, sizeof(*s->stmts));
    for (size_t i = 0; s->stmts && i < n; i++) {
        if (!(s->stmts[i] = strdup(stmts[i]))) {
            pgsql_seq_free_stmts(s->stmts, n);
            s->stmts = NULL;
        }
    }
    if (s->stmts)
        s->pg = pgconn_new_msg(loop, conninfo, opts, &msg);
    if (!s->pg) {
        int r = msg ? -EINVAL : -ENOMEM; /* pgconn gives a message for a conninfo it cannot parse */
        free(msg);
        pgsql_seq_free_stmts(s->stmts, n);
        free(s);
        return r;
    }
    s->loop = loop;
    s->done = done;
    s->data = data;
    uv_timer_init(loop, &s->timer);
    s->timer.data = s;
    pgsql_seq_send(s);
    if (ret_seq)
        *ret_seq = s;
    return 0;
}

void pgsql_seq_cancel(PgSqlSeq *s)
{
    if (!s || s->ended || s->canceled)
        return;
    s->canceled = true;
    PgConn *pg = s->pg;
    s->pg = NULL;
    pgconn_close(pg, NULL, NULL); /* answers the statement in flight with DR_ECANCELED now */
    if (!s->ended)
        pgsql_seq_end(s, DR_ECANCELED, NULL, NULL);
}
