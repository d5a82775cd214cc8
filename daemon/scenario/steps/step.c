/*
 * steps/step: one invocation of a step or probe (ScnStep) and its plumbing: creation, finishing,
 * answering, cancelling, and one SQL statement at a time on the invocation's own connection. Every
 * scenario step is built on it (steps.h).
 */
#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/backup/backup.h"
#include "child.h"
#include "err.h"
#include "httpc.h"
#include "pgconn.h"
#include "scenario/steps/steps.h"

/* ---- one step or probe invocation ---- */

ScnStep *scn_step_new(FsmCall *call, void *ctx, FsmDone done, FsmProbeDone pdone)
{
    ScnStep *st = calloc(1, sizeof(*st));
    if (!st) {
        if (done)
            done(call, -ENOMEM, "out of memory");
        else
            pdone(call, FSM_PROBE_UNKNOWN, "out of memory");
        return NULL;
    }
    st->run = ctx;
    st->call = call;
    st->done = done;
    st->pdone = pdone;
    scn_run_ref(st->run);
    st->t0 = uv_now(st->run->core->loop);
    fsm_call_set_data(call, st);
    return st;
}

static void scn_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void scn_step_free(ScnStep *st)
{
    if (st->timer)
        uv_close((uv_handle_t *)st->timer, scn_timer_closed);
    if (st->pg)
        pgconn_close(st->pg, NULL, NULL);
    if (st->child)
        child_free(st->child);
    json_decref(st->acc);
    free(st->conninfo);
    if (st->node_op_free)
        st->node_op_free(st->node_op);
    free(st->hook_stdout);
    scn__fence_free(st->fence);
    ScnRun *run = st->run;
    free(st);
    scn_run_unref(run);
}

void scn_finish(ScnStep *st, int result, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!fsm_call_cancelled(st->call))
        fsm_call_set_data(st->call, NULL);
    st->done(st->call, result, msg);
    scn_step_free(st);
}

void scn_answer(ScnStep *st, FsmProbeAnswer a, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (!fsm_call_cancelled(st->call))
        fsm_call_set_data(st->call, NULL);
    st->pdone(st->call, a, msg);
    scn_step_free(st);
}

int scn_step_wait(ScnStep *st, uint64_t ms, uv_timer_cb cb)
{
    if (!st->timer) {
        st->timer = malloc(sizeof(*st->timer));
        if (!st->timer || uv_timer_init(st->run->core->loop, st->timer) < 0) {
            free(st->timer);
            st->timer = NULL;
            return -ENOMEM;
        }
        st->timer->data = st;
    }
    return uv_timer_start(st->timer, cb, ms, 0);
}

/* The step stopped because it was cancelled (timeout, abort, shutdown). */
void scn_cancelled(ScnStep *st)
{
    if (st->pdone)
        scn_answer(st, FSM_PROBE_UNKNOWN, "cancelled");
    else
        scn_finish(st, DR_ECANCELED, "cancelled");
}

void scn_cancel(FsmCall *call, void *ctx)
{
    ScnStep *st = fsm_call_get_data(call);
    (void)ctx;
    if (!st)
        return;
    st->cancelled = true;
    if (st->restore)
        backup_restore_cancel(st->restore, false); /* the next attempt replaces the partial copy */
    if (st->unpack)
        backup_unpack_cancel(st->unpack);
    if (st->child)
        child_kill(st->child, SIGKILL);
    if (st->http_id) {
        uint64_t id = st->http_id;
        st->http_id = 0;
        httpc_cancel(st->run->core->http, id); /* its callback runs now and finishes st */
        return;
    }
    if (st->timer && uv_is_active((uv_handle_t *)st->timer)) {
        uv_timer_stop(st->timer); /* waiting for the next check: nothing else will finish st */
        scn_cancelled(st);
        return;
    }
    PgConn *pg = st->pg;
    if (pg && pgconn_is_busy(pg)) {
        st->pg = NULL;
        pgconn_close(pg, NULL, NULL); /* the pending callback runs now and finishes st */
    }
}

/* ---- SQL helpers ---- */

static void scn_on_sql(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    ScnStep *st = data;
    (void)c;
    if (st->cancelled || status == DR_ECANCELED) {
        if (!st->pg || status == DR_ECANCELED)
            st->pg = NULL; /* closed by scn_cancel */
        scn_cancelled(st);
        return;
    }
    st->next(st, status, res, errmsg ? errmsg : (status < 0 ? err_str(status) : NULL));
}

void scn_fail_sql(ScnStep *st, int status, const char *what, const char *errmsg)
{
    if (st->pdone)
        scn_answer(st, FSM_PROBE_UNKNOWN, "%s: %s", what, errmsg ? errmsg : err_str(status));
    else
        scn_finish(st, status < 0 ? status : DR_EDB, "%s: %s", what, errmsg ? errmsg : err_str(status));
}

/* Run sql on the connection to `conninfo` (admin when NULL), then next(). */
void scn_sql(ScnStep *st, const char *conninfo, const char *sql, int np, const char *const *params,
             ScnSqlNext next)
{
    if (!st->pg) {
        PgConnOptions po = {.connect_timeout_ms = 10000, .query_timeout_ms = 600000};
        st->pg = pgconn_new(st->run->core->loop, conninfo ? conninfo : st->run->admin_conninfo, &po);
    }
    st->next = next;
    int r = st->pg ? pgconn_query(st->pg, sql, np, params, scn_on_sql, st) : -EINVAL;
    if (r < 0)
        scn_fail_sql(st, r, "cannot send a query to the database server (check scenarios.admin_conninfo)", NULL);
}

