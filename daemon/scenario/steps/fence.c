/*
 * steps/fence: the confirmation of a fence, and the daemon's own fencing (failover.self_fence), for
 * the node that must stop taking writes: primary_failure's old primary, network_partition's other
 * node. Shared by both scenarios' fence steps, after their fence hook (or with none configured).
 *
 * A fence is confirmed only by what a fresh connection to the node sees: it does not answer (and
 * the fence hook or the node's stop command exited 0), or it answers as a standby, or read-only.
 * A node that still answers as a writable primary gets the daemon's own measures, in this order,
 * each confirmed the same way before the next: its stop command from replication.nodes
 * (self_fence: stop; steps/node.c, exit 0 confirms), then ALTER SYSTEM SET
 * default_transaction_read_only = on, pg_reload_conf(), seen to apply, and every other client
 * session terminated (self_fence: stop or read_only; scn_refuse_writes, which switchover's
 * refuse_writes uses too). read_only is
 * the weaker: a superuser session can SET transaction_read_only = off; a stopped server takes no
 * write at all.
 *
 * Write ahead: each measure is recorded in the run's context "self_fence" {node, mode, measures:
 * [{measure, started_ms, outcome, how, ended_ms}]} before it acts, and its outcome after; the
 * record is in the run's report. Running the step again is harmless: the check comes first (a node
 * fenced before a restart is confirmed, nothing is done twice), the stop command must be
 * idempotent (its contract), ALTER SYSTEM, the reload and the terminations repeat harmlessly.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "config/config.h"
#include "err.h"
#include "log.h"
#include "pgconn.h"
#include "scenario/steps/steps.h"

#define SCN_FENCE_CHECK_SQL "SELECT pg_is_in_recovery(), current_setting('transaction_read_only')"
#define SCN_FENCE_SETTING_WAIT_MS 10000u

struct ScnFence {
    char node[64];
    char *conninfo;
    char hook[600];  /* what the fence hook did ("" when none is configured) */
    bool hook_ok;    /* it exited 0 */
    bool stop_ok;    /* the stop command exited 0 */
    bool tried_stop, tried_read_only;
    char done_how[400]; /* the measures taken, for people */
    const char *measure; /* the one in flight */
    ScnFenceDone then;
};

void scn__fence_free(ScnFence *f)
{
    if (!f)
        return;
    free(f->conninfo);
    free(f);
}

static int fence_mode(const ScnStep *st)
{
    return st->run->core->cfg->replication.failover.self_fence;
}

static const char *fence_mode_name(int mode)
{
    return mode == CONFIG_SELF_FENCE_STOP ? "stop" : mode == CONFIG_SELF_FENCE_READ_ONLY ? "read_only" : "off";
}

static uint64_t fence_now_ms(void)
{
    return clock_mono_us() / 1000u;
}

/* A fresh connection for the next query (a session opened before a measure proves nothing). */
static void fence_fresh(ScnStep *st)
{
    PgConn *pg = st->pg;
    st->pg = NULL;
    pgconn_close(pg, NULL, NULL);
}

static void fence_check(ScnStep *st);

/* ---- the record: each measure written ahead, then its outcome ---- */

typedef ScnFenceNext FenceNext;

static void fence_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    (void)run;
    if (status < 0) {
        scn_finish(st, status, "cannot record the daemon's fencing of '%s': %s", st->fence->node, err_str(status));
        return;
    }
    FenceNext next = st->fence_next;
    st->fence_next = NULL;
    next(st);
}

/* ctx "self_fence" with the measure started (outcome NULL) or ended, then next(st). */
static void fence_record(ScnStep *st, const char *outcome, const char *how, FenceNext next)
{
    ScnFence *f = st->fence;
    const json_t *old = json_object_get(st->run->ctx, "self_fence");
    json_t *rec = old && json_is_object(old) ? json_deep_copy(old) : json_object();
    json_t *ms = rec ? json_object_get(rec, "measures") : NULL;

    if (rec && !json_is_array(ms)) {
        ms = json_array();
        json_object_set_new(rec, "measures", ms);
    }
    json_t *m = outcome ? json_array_get(ms, json_array_size(ms) ? json_array_size(ms) - 1 : 0) : json_object();
    if (!rec || !ms || !m) {
        json_decref(rec);
        if (!outcome)
            json_decref(m);
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    json_object_set_new(rec, "node", json_string(f->node));
    json_object_set_new(rec, "mode", json_string(fence_mode_name(fence_mode(st))));
    if (!outcome) {
        json_object_set_new(m, "measure", json_string(f->measure));
        json_object_set_new(m, "started_ms", json_integer((json_int_t)clock_wall_ms()));
        json_array_append_new(ms, m);
    } else {
        json_object_set_new(m, "outcome", json_string(outcome));
        json_object_set_new(m, "how", json_string(how ? how : ""));
        json_object_set_new(m, "ended_ms", json_integer((json_int_t)clock_wall_ms()));
    }
    st->fence_next = next;
    scn_context_set(st->run, "self_fence", rec, fence_recorded, st);
}

static void fence_note(ScnFence *f, const char *what)
{
    size_t len = strlen(f->done_how);
    snprintf(f->done_how + len, sizeof(f->done_how) - len, "%s%.190s", len ? "; " : "", what);
}

/* ---- the stop command ---- */

static void fence_after_stop_recorded(ScnStep *st)
{
    fence_fresh(st);
    fence_check(st);
}

static void fence_stopped(ScnStep *st, bool ok, const char *how)
{
    ScnFence *f = st->fence;
    char note[500];
    f->stop_ok = ok;
    snprintf(note, sizeof(note), "%s", how);
    fence_note(f, note);
    log_warning("scenario", "self-fence of '%s': %s", f->node, how);
    fence_record(st, ok ? "ok" : "failed", how, fence_after_stop_recorded);
}

static void fence_stop_started(ScnStep *st)
{
    ScnFence *f = st->fence;
    const ConfigReplicationNode *n = scn_node_config(st->run, f->node);
    if (!n || !n->n_stop) {
        fence_stopped(st, false, "no stop command is configured any more");
        return;
    }
    ScnPgCtl pc = {NULL, NULL, 0, st->run->core->cfg->replication.failover.hook_timeout_ms};
    scn_node_stop(st, n, &pc, fence_stopped);
}

/* ---- read-only: the setting, the reload, the other sessions ended ---- */

static void fence_ro_done(ScnStep *st, int status, long long terminated, const char *what, const char *errmsg)
{
    ScnFence *f = st->fence;
    char how[600];
    if (status == 0)
        snprintf(how, sizeof(how), "default_transaction_read_only = on (ALTER SYSTEM, reloaded), %lld other "
                 "session(s) terminated", terminated);
    else
        snprintf(how, sizeof(how), "%s: %s", what, errmsg && errmsg[0] ? errmsg : err_str(status));
    fence_note(f, how);
    log_warning("scenario", "self-fence of '%s': %s", f->node, how);
    fence_record(st, status == 0 ? "ok" : "failed", how, fence_after_stop_recorded);
}

static void fence_ro_started(ScnStep *st)
{
    fence_fresh(st);
    scn_refuse_writes(st, st->fence->conninfo, fence_ro_done);
}

/* ---- refuse writes (switchover's refuse_writes and the read_only measure) ---- */

static void refuse_fail(ScnStep *st, int status, const char *what, const char *errmsg)
{
    ScnRefuseDone then = st->refuse_then;
    st->refuse_then = NULL;
    then(st, status < 0 ? status : DR_EDB, 0, what, errmsg);
}

static void refuse_on_terminated(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    if (status < 0 || !res || PQntuples(res) != 1) {
        refuse_fail(st, status, "cannot end the other sessions", errmsg);
        return;
    }
    ScnRefuseDone then = st->refuse_then;
    st->refuse_then = NULL;
    then(st, 0, atoll(PQgetvalue(res, 0, 0)), NULL, NULL);
}

static void refuse_ask_setting(ScnStep *st);

static void refuse_tick(uv_timer_t *t)
{
    refuse_ask_setting(t->data);
}

/* The reload reached the backends (ours is one): new sessions start read-only. Only then are the
 * others ended, so none reconnects writable in between. */
static void refuse_on_setting(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    if (status < 0 || !res || PQntuples(res) != 1) {
        refuse_fail(st, status, "cannot read default_transaction_read_only", errmsg);
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "on") != 0) {
        if (fence_now_ms() >= st->deadline_ms)
            refuse_fail(st, -ETIMEDOUT, "default_transaction_read_only", "still off 10 s after the reload");
        else if (scn_step_wait(st, 50, refuse_tick) < 0)
            scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    scn_sql(st, NULL,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND pid <> pg_backend_pid()",
            0, NULL, refuse_on_terminated);
}

static void refuse_ask_setting(ScnStep *st)
{
    scn_sql(st, NULL, "SELECT current_setting('default_transaction_read_only')", 0, NULL, refuse_on_setting);
}

static void refuse_on_reloaded(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0) {
        refuse_fail(st, status, "pg_reload_conf failed", errmsg);
        return;
    }
    st->deadline_ms = fence_now_ms() + SCN_FENCE_SETTING_WAIT_MS;
    refuse_ask_setting(st);
}

static void refuse_on_altered(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0) {
        refuse_fail(st, status, "ALTER SYSTEM SET default_transaction_read_only failed", errmsg);
        return;
    }
    scn_sql(st, NULL, "SELECT pg_reload_conf()", 0, NULL, refuse_on_reloaded);
}

void scn_refuse_writes(ScnStep *st, const char *conninfo, ScnRefuseDone then)
{
    st->refuse_then = then;
    /* one statement a query: ALTER SYSTEM cannot run in a transaction block */
    scn_sql(st, conninfo, "ALTER SYSTEM SET default_transaction_read_only = on", 0, NULL, refuse_on_altered);
}

/* ---- the check, and the next measure ---- */

static void fence_confirmed(ScnStep *st, const char *seen)
{
    ScnFence *f = st->fence;
    char how[2400];
    bool by_daemon = f->tried_stop || f->tried_read_only;
    if (by_daemon)
        snprintf(how, sizeof(how), "%s%s%s; then the daemon's own fencing: %s; it no longer answers as a primary (%s)",
                 f->hook[0] ? "the fence hook " : "no fence hook", f->hook, f->hook[0] ? " but left it writable" : "",
                 f->done_how, seen);
    else
        snprintf(how, sizeof(how), "the fence hook %s; it no longer answers as a primary (%s)", f->hook, seen);
    const char *by = !by_daemon ? "hook" : f->tried_read_only ? "read_only" : "stop";
    f->then(st, true, by, how);
}

static void fence_not_confirmed(ScnStep *st, const char *seen)
{
    ScnFence *f = st->fence;
    char how[2400];
    snprintf(how, sizeof(how), "%s%s; '%s' %s%s%s", f->hook[0] ? "the fence hook " : "no fence hook is configured",
             f->hook, f->node, seen, f->done_how[0] ? " after the daemon's own fencing: " : "", f->done_how);
    f->then(st, false, NULL, how);
}

/* The node still answers as a writable primary (writable) or does not answer (!writable): the next
 * measure, or the end. */
static void fence_next_measure(ScnStep *st, bool writable, const char *seen)
{
    ScnFence *f = st->fence;
    int mode = fence_mode(st);
    const ConfigReplicationNode *n = scn_node_config(st->run, f->node);
    char why[600];

    if (mode == CONFIG_SELF_FENCE_STOP && !f->tried_stop && n && n->n_stop) {
        f->tried_stop = true;
        f->measure = "stop";
        fence_record(st, NULL, NULL, fence_stop_started);
        return;
    }
    if (writable && mode != CONFIG_SELF_FENCE_OFF && !f->tried_read_only) {
        f->tried_read_only = true;
        f->measure = "read_only";
        fence_record(st, NULL, NULL, fence_ro_started);
        return;
    }
    if (!writable)
        snprintf(why, sizeof(why), "does not answer (%s), and neither a fence hook nor a stop command confirmed that "
                 "it is down", seen);
    else if (mode == CONFIG_SELF_FENCE_OFF)
        snprintf(why, sizeof(why), "still answers as a primary (writable), and failover.self_fence is off");
    else
        snprintf(why, sizeof(why), "still answers as a primary (writable)");
    fence_not_confirmed(st, why);
}

static void fence_on_check(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    ScnFence *f = st->fence;
    char seen[400];

    if (status < 0 || !res || PQntuples(res) != 1) {
        snprintf(seen, sizeof(seen), "%s", errmsg && errmsg[0] ? errmsg : err_str(status < 0 ? status : DR_EDB));
        if (f->hook_ok || f->stop_ok) {
            char s2[460];
            snprintf(s2, sizeof(s2), "it does not answer: %s", seen);
            fence_confirmed(st, s2);
        } else {
            fence_next_measure(st, false, seen);
        }
        return;
    }
    if (!strcmp(PQgetvalue(res, 0, 0), "t")) {
        fence_confirmed(st, "it answers as a standby, in recovery");
        return;
    }
    if (!strcmp(PQgetvalue(res, 0, 1), "on")) {
        fence_confirmed(st, "a new session is read-only");
        return;
    }
    fence_next_measure(st, true, "answers as a writable primary");
}

static void fence_check(ScnStep *st)
{
    scn_sql(st, st->fence->conninfo, SCN_FENCE_CHECK_SQL, 0, NULL, fence_on_check);
}

void scn_fence_confirm(ScnStep *st, const char *node, const char *conninfo, bool hook_ok, const char *hook_how,
                       ScnFenceDone then)
{
    ScnFence *f = calloc(1, sizeof(*f));
    if (!f || !node || !conninfo || !(f->conninfo = strdup(conninfo))) {
        free(f);
        scn_finish(st, node && conninfo ? -ENOMEM : DR_ESTATE, "%s", node && conninfo ? "out of memory"
                                                                                         : "no node to fence");
        return;
    }
    scn__fence_free(st->fence);
    st->fence = f;
    f->then = then;
    f->hook_ok = hook_ok;
    snprintf(f->node, sizeof(f->node), "%s", node);
    snprintf(f->hook, sizeof(f->hook), "%s", hook_how ? hook_how : "");
    fence_fresh(st);
    fence_check(st);
}

void scn_fence_plan(const ScnRun *run, const char *node, char *out, size_t n)
{
    int mode = run->core->cfg->replication.failover.self_fence;
    const ConfigReplicationNode *c = scn_node_config(run, node);
    if (mode == CONFIG_SELF_FENCE_OFF)
        snprintf(out, n, "if it still answers as a writable primary, an operator must fence it (failover.self_fence: "
                 "off)");
    else if (mode == CONFIG_SELF_FENCE_STOP && c && c->n_stop)
        snprintf(out, n, "if it still answers as a writable primary, the daemon stops it with its stop command '%s', "
                 "then makes it read-only if that fails", c->stop[0]);
    else
        snprintf(out, n, "if it still answers as a writable primary, the daemon makes it read-only "
                 "(default_transaction_read_only, its other sessions terminated)");
}
