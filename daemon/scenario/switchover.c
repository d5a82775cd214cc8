/*
 * switchover: the planned change of primary, as one static table, its definition, its own steps
 * and the command that starts it (drctl switchover --to NODE [--manual]; docs/replication.md).
 *
 * Owns the runbook "make NODE the primary with no committed write lost": the target is checked
 * before anything is touched (known, a standby, streaming, within failover.maximum_lag: refused up
 * front with the reason, trading untouched), then halt trading (confirmed), drain (writing
 * transactions on the old primary given drain_timeout to end), check the target again, make the
 * old primary refuse writes (ALTER SYSTEM SET default_transaction_read_only = on, reloaded and
 * seen to apply, then every other client session terminated: steps/fence.c's scn_refuse_writes,
 * the daemon's own read-only fencing too; it keeps running so its last WAL
 * streams to the target), wait until the target has replayed up to the old primary's final WAL
 * position (bounded by catchup_timeout; fails closed: the read-only setting is undone and trading
 * stays halted), stop the old primary cleanly (its stop command, or pg_ctl stop -m fast as the
 * server's user), promote the target and point the platform at it (steps/promote.c, shared with
 * primary_failure; the new primary recorded in state_dir/primary.json), reconcile, resume in
 * shadow, then live (a gate in manual mode, like the promotion), then watch.
 *
 * The old primary is stopped, not only read-only, before the promotion: a read-only setting can
 * be overridden by a session (SET transaction_read_only = off), a stopped server cannot be
 * written to. It is made read-only first because it has to keep running until the target has
 * replayed its last WAL.
 *
 * What the run decided is in its context (journaled): "old_primary" {name, conninfo} and "standby"
 * {name, conninfo} (the target; taken once by check_request, never again), "final" {lsn}, then
 * promote's "promote_from", "promotion" and "repoint". Every step is safe to run again: the
 * checks only read; ALTER SYSTEM, the reload and the terminations repeat harmlessly and the final
 * position is read again (it can only be later); the catch-up wait only reads; the stop asks
 * pg_ctl status first (a stop command must be idempotent, its contract); promote asks the target
 * whether it left recovery already; undo_read_only resets the setting again.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "core/lease.h"
#include "err.h"
#include "log.h"
#include "observe/replication.h"
#include "pgconn.h"
#include "scenario/scn_internal.h"
#include "scenario/steps/steps.h"
#include "scenario/switchover_internal.h"

enum {
    DETECTED,
    REQUESTED,
    HALTED,
    DRAINED,
    TARGET_CHECKED,
    READ_ONLY,
    CAUGHT_UP,
    OLD_STOPPED,
    PROMOTED,
    REPOINTED,
    RECONCILED,
    SHADOW,
    LIVE,
    STANDBYS_REPOINTED,
    WATCHED,
    REFUSED,
    UNDO_READ_ONLY,
    STAYED_HALTED,
    NOT_PROMOTED,
    NOT_REPOINTED,
    NOT_RECONCILED,
    WATCH_FAILED,
    HALTED_AFTER_WATCH,
    N_STATES
};

#define SO_POLL_MS 200u

static const SwitchoverConfig *so_cfg(const ScnRun *run)
{
    return run->cfg.data;
}

static uint64_t so_now_ms(void)
{
    return clock_mono_us() / 1000u;
}

static const char *so_target(const ScnRun *run)
{
    return json_string_value(scn_run_param(run, "to"));
}

/*
 * Why a switchover to `to` is not possible now ("" when it is): unknown, the primary, not a
 * streaming standby, or further behind than failover.maximum_lag. Pure (the monitor's last round).
 */
static void so_refusal(const Replication *r, const Config *cfg, const char *to, char *why, size_t n)
{
    ReplNodeView v;
    why[0] = '\0';
    if (!r || !cfg->replication.enabled) {
        snprintf(why, n, "no replication.nodes are configured: there is no standby to switch over to");
        return;
    }
    replication_node_view(r, to, &v);
    if (!v.known)
        snprintf(why, n, "'%s' is not a node of replication.nodes", to ? to : "");
    else if (v.primary)
        snprintf(why, n, "'%s' is the primary already", to);
    else if (!v.sampled_ms)
        snprintf(why, n, "'%s' has not been probed yet", to);
    else if (!v.answered)
        snprintf(why, n, "'%s' does not answer", to);
    else if (!v.in_recovery)
        snprintf(why, n, "'%s' is not in recovery (not a standby)", to);
    else if (!v.streaming)
        snprintf(why, n, "'%s' is not streaming from the primary", to);
    else if (v.state != REPL_OK && v.state != REPL_LAG_WARNING && v.state != REPL_LAG_CRITICAL)
        snprintf(why, n, "'%s' is not replicating (%s%s%s)", to, replication_state_name(v.state), v.why[0] ? ": " : "",
                 v.why);
    else if (v.lag_bytes < 0)
        snprintf(why, n, "'%s''s lag is not known yet", to);
    else if ((uint64_t)v.lag_bytes > cfg->replication.failover.maximum_lag_bytes)
        snprintf(why, n, "'%s' is %lld bytes behind, more than failover.maximum_lag (%llu)", to,
                 (long long)v.lag_bytes, (unsigned long long)cfg->replication.failover.maximum_lag_bytes);
}

/* ---- check_request: the target and the old primary, once ---- */

static void request_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the switchover's nodes: %s", err_str(status));
    else
        scn_finish(st, 0, "a switchover from '%s' to '%s'", scn_ctx_str(run, "old_primary", "name"),
                   scn_ctx_str(run, "standby", "name"));
}

static void request_old_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    json_t *t = st->acc;
    st->acc = NULL;
    if (status < 0) {
        json_decref(t);
        request_recorded(run, status, st);
        return;
    }
    scn_context_set(run, "standby", t, request_recorded, st);
}

static void step_check_request(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    ReplFailoverView fv;
    char why[600];

    if (!st)
        return;
    ScnRun *run = st->run;
    if (scn_ctx_str(run, "standby", "name")) { /* taken before a restart: never a second choice */
        request_recorded(run, 0, st);
        return;
    }
    const char *to = so_target(run);
    if (!to) {
        scn_finish(st, DR_EBADARG, "the run has no target node (drctl switchover --to NODE starts it)");
        return;
    }
    so_refusal(run->caps->replication, run->core->cfg, to, why, sizeof(why));
    if (why[0]) {
        scn_finish(st, DR_ESTATE, "no switchover: %s (trading untouched)", why);
        return;
    }
    replication_failover_view(run->caps->replication, 0, &fv);
    const ConfigReplicationNode *old = scn_node_config(run, fv.primary);
    if (!old) {
        scn_finish(st, DR_ECONFIG, "no primary among replication.nodes (trading untouched)");
        return;
    }
    if (!old->n_stop && !old->data_directory) {
        scn_finish(st, DR_ECONFIG, "the primary '%s' has neither a stop command nor a data_directory in "
                   "replication.nodes: it could not be stopped before the promotion (trading untouched)", old->name);
        return;
    }
    if (!run->core->cfg->replication.failover.n_repoint) {
        scn_finish(st, DR_ECONFIG, "no repoint hook is configured (failover.repoint): the platform would keep "
                   "writing to the old primary (trading untouched)");
        return;
    }
    json_t *o = json_pack("{s:s,s:s}", "name", old->name, "conninfo", old->conninfo);
    json_t *t = json_pack("{s:s,s:s}", "name", to, "conninfo", replication_node_conninfo(run->caps->replication, to));
    if (!o || !t) {
        json_decref(o);
        json_decref(t);
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    st->acc = t; /* recorded once the old primary is */
    scn_context_set(run, "old_primary", o, request_old_recorded, st);
}

static void plan_check_request(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char why[600], msg[800];
    so_refusal(run->caps->replication, run->core->cfg, so_target(run), why, sizeof(why));
    if (why[0])
        snprintf(msg, sizeof(msg), "would refuse: %s", why);
    else
        snprintf(msg, sizeof(msg), "would switch over to '%s'", so_target(run));
    done(call, 0, msg);
}

/* ---- drain: the writes in flight end (bounded) ---- */

#define SO_WRITERS_SQL                                                                                               \
    "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() "      \
    "AND backend_xid IS NOT NULL"

static void drain_ask(ScnStep *st);

static void drain_tick(uv_timer_t *t)
{
    drain_ask(t->data);
}

static void drain_on_count(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    if (status < 0 || !res || PQntuples(res) != 1) {
        scn_fail_sql(st, status < 0 ? status : DR_EDB, "cannot ask the old primary for its writing sessions", errmsg);
        return;
    }
    long long n = atoll(PQgetvalue(res, 0, 0));
    if (n == 0) {
        scn_finish(st, 0, "no transaction is writing on the old primary");
        return;
    }
    if (so_now_ms() >= st->deadline_ms) {
        scn_finish(st, 0, "%lld transaction(s) still writing after drain_timeout: they are terminated next", n);
        return;
    }
    if (scn_step_wait(st, SO_POLL_MS, drain_tick) < 0)
        scn_finish(st, -ENOMEM, "out of memory");
}

static void drain_ask(ScnStep *st)
{
    scn_sql(st, scn_ctx_str(st->run, "old_primary", "conninfo"), SO_WRITERS_SQL, 0, NULL, drain_on_count);
}

static void step_drain(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    st->deadline_ms = so_now_ms() + so_cfg(st->run)->drain_timeout_ms;
    drain_ask(st);
}

/* ---- check_target: still a streaming standby within the limit, after the drain ---- */

static void step_check_target(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char why[600];
    so_refusal(run->caps->replication, run->core->cfg, scn_ctx_str(run, "standby", "name"), why, sizeof(why));
    if (why[0]) {
        char msg[800];
        snprintf(msg, sizeof(msg), "no switchover: %s; trading stays halted", why);
        done(call, DR_ESTATE, msg);
        return;
    }
    done(call, 0, "the target streams from the primary within failover.maximum_lag");
}

/* ---- refuse_writes: the old primary read-only, its sessions ended, its final position ---- */

static void refuse_final_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the old primary's final position: %s", err_str(status));
    else
        scn_finish(st, 0, "'%s' refuses writes; its final WAL position is %s", scn_ctx_str(run, "old_primary", "name"),
                   scn_ctx_str(run, "final", "lsn"));
}

static void refuse_on_final(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    if (status < 0 || !res || PQntuples(res) != 1) {
        scn_fail_sql(st, status < 0 ? status : DR_EDB, "cannot read the old primary's WAL position", errmsg);
        return;
    }
    scn_context_set(st->run, "final", json_pack("{s:s,s:I}", "lsn", PQgetvalue(res, 0, 0), "terminated",
                                                (json_int_t)st->idx), refuse_final_recorded, st);
}

/* steps/fence.c made it refuse writes and ended its other sessions: then its final position. */
static void refuse_done(ScnStep *st, int status, long long terminated, const char *what, const char *errmsg)
{
    if (status < 0) {
        char msg[300];
        snprintf(msg, sizeof(msg), "%s on the old primary", what);
        scn_fail_sql(st, status, msg, errmsg);
        return;
    }
    st->idx = (size_t)terminated;
    scn_sql(st, NULL, "SELECT pg_current_wal_flush_lsn()::text", 0, NULL, refuse_on_final);
}

static void step_refuse_writes(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    scn_refuse_writes(st, scn_ctx_str(st->run, "old_primary", "conninfo"), refuse_done);
}

/* ---- catch_up: the target replayed the old primary's final position (bounded) ---- */

static void catchup_ask(ScnStep *st);

static void catchup_tick(uv_timer_t *t)
{
    catchup_ask(t->data);
}

static void catchup_on_replay(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    if (status < 0 || !res || PQntuples(res) != 1) {
        scn_fail_sql(st, status < 0 ? status : DR_EDB, "cannot ask the target for its replay position", errmsg);
        return;
    }
    if (!strcmp(PQgetvalue(res, 0, 0), "t")) {
        scn_finish(st, 0, "'%s' replayed up to %s (the old primary's final position %s): 0 bytes behind",
                   scn_ctx_str(st->run, "standby", "name"), PQgetvalue(res, 0, 1), scn_ctx_str(st->run, "final", "lsn"));
        return;
    }
    if (so_now_ms() >= st->deadline_ms) {
        scn_finish(st, -ETIMEDOUT, "'%s' replayed only up to %s of %s within catchup_timeout: the read-only setting "
                   "is undone, trading stays halted", scn_ctx_str(st->run, "standby", "name"),
                   PQgetisnull(res, 0, 1) ? "nothing" : PQgetvalue(res, 0, 1), scn_ctx_str(st->run, "final", "lsn"));
        return;
    }
    if (scn_step_wait(st, SO_POLL_MS, catchup_tick) < 0)
        scn_finish(st, -ENOMEM, "out of memory");
}

static void catchup_ask(ScnStep *st)
{
    const char *p[1] = {scn_ctx_str(st->run, "final", "lsn")};
    scn_sql(st, scn_ctx_str(st->run, "standby", "conninfo"),
            "SELECT coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false), pg_last_wal_replay_lsn()::text", 1, p,
            catchup_on_replay);
}

static void step_catch_up(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    if (!scn_ctx_str(st->run, "final", "lsn")) {
        scn_finish(st, DR_ESTATE, "the old primary's final position is not known");
        return;
    }
    st->deadline_ms = so_now_ms() + so_cfg(st->run)->catchup_timeout_ms;
    catchup_ask(st);
}

/* ---- stop_old_primary ---- */

static void stop_done(ScnStep *st, bool ok, const char *how)
{
    if (ok)
        scn_finish(st, 0, "the old primary '%s' is stopped (%s)", scn_ctx_str(st->run, "old_primary", "name"), how);
    else
        scn_finish(st, DR_ESTATE, "the old primary '%s' is not known to be stopped: %s; no promotion",
                   scn_ctx_str(st->run, "old_primary", "name"), how);
}

static void step_stop_old_primary(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    const SwitchoverConfig *c = so_cfg(st->run);
    const ConfigReplicationNode *n = scn_node_config(st->run, scn_ctx_str(st->run, "old_primary", "name"));
    if (!n) {
        scn_finish(st, DR_ECONFIG, "the old primary '%s' is no longer in replication.nodes",
                   scn_ctx_str(st->run, "old_primary", "name"));
        return;
    }
    ScnPgCtl pc = {c->pg_ctl, c->run_as, c->n_run_as, c->stop_timeout_ms};
    scn_node_stop(st, n, &pc, stop_done);
}

static void plan_stop_old_primary(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    ReplFailoverView v;
    char msg[700];
    replication_failover_view(run->caps->replication, 0, &v);
    const ConfigReplicationNode *n = scn_node_config(run, v.primary);
    if (n && n->n_stop)
        snprintf(msg, sizeof(msg), "would stop '%s' with its stop command '%s'", n->name, n->stop[0]);
    else if (n && n->data_directory)
        snprintf(msg, sizeof(msg), "would stop '%s' with '%s -D %s -m fast stop'", n->name, so_cfg(run)->pg_ctl,
                 n->data_directory);
    else
        snprintf(msg, sizeof(msg), "cannot stop the primary: no stop command or data_directory in replication.nodes");
    done(call, 0, msg);
}

/* ---- promote (steps/promote.c) ---- */

static void step_promote_target(FsmCall *call, void *ctx, FsmDone done)
{
    scn_step_promote(call, ctx, done, so_cfg(ctx)->promote_timeout_ms);
}

static void plan_promote_target(FsmCall *call, void *ctx, FsmDone done)
{
    scn_plan_promote(call, done, so_cfg(ctx)->promote_timeout_ms);
}

/* ---- undo_read_only: the old primary writable again (the switchover did not happen) ---- */

static void undo_on_reloaded(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0)
        scn_fail_sql(st, status, "pg_reload_conf failed on the old primary", errmsg);
    else
        scn_finish(st, 0, "'%s' accepts writes again (default_transaction_read_only reset); trading stays halted",
                   scn_ctx_str(st->run, "old_primary", "name"));
}

static void undo_on_reset(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0) {
        scn_fail_sql(st, status, "ALTER SYSTEM RESET default_transaction_read_only failed on the old primary", errmsg);
        return;
    }
    scn_sql(st, NULL, "SELECT pg_reload_conf()", 0, NULL, undo_on_reloaded);
}

static void step_undo_read_only(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    scn_sql(st, scn_ctx_str(st->run, "old_primary", "conninfo"), "ALTER SYSTEM RESET default_transaction_read_only", 0,
            NULL, undo_on_reset);
}

/* ---- the table ---- */

static const FsmState so_states[N_STATES] = {
    [DETECTED] = {"requested", FSM_STATE_ACTIVE},
    [REQUESTED] = {"checked", FSM_STATE_ACTIVE},
    [HALTED] = {"halted", FSM_STATE_ACTIVE},
    [DRAINED] = {"drained", FSM_STATE_ACTIVE},
    [TARGET_CHECKED] = {"target_checked", FSM_STATE_ACTIVE},
    [READ_ONLY] = {"old_primary_read_only", FSM_STATE_ACTIVE},
    [CAUGHT_UP] = {"caught_up", FSM_STATE_ACTIVE},
    [OLD_STOPPED] = {"old_primary_stopped", FSM_STATE_ACTIVE},
    [PROMOTED] = {"promoted", FSM_STATE_ACTIVE},
    [REPOINTED] = {"repointed", FSM_STATE_ACTIVE},
    [RECONCILED] = {"reconciled", FSM_STATE_ACTIVE},
    [SHADOW] = {"trading_in_shadow", FSM_STATE_ACTIVE},
    [LIVE] = {"live", FSM_STATE_ACTIVE},
    [STANDBYS_REPOINTED] = {"standbys_repointed", FSM_STATE_ACTIVE},
    [WATCHED] = {"watch_passed", FSM_STATE_SUCCESS},
    [REFUSED] = {"refused", FSM_STATE_FAILURE},
    [UNDO_READ_ONLY] = {"not_caught_up", FSM_STATE_ACTIVE},
    [STAYED_HALTED] = {"stayed_halted", FSM_STATE_FAILURE},
    [NOT_PROMOTED] = {"not_promoted", FSM_STATE_FAILURE},
    [NOT_REPOINTED] = {"not_repointed", FSM_STATE_FAILURE},
    [NOT_RECONCILED] = {"not_reconciled", FSM_STATE_FAILURE},
    [WATCH_FAILED] = {"watch_failed", FSM_STATE_ACTIVE},
    [HALTED_AFTER_WATCH] = {"halted_after_watch", FSM_STATE_FAILURE},
};

static const FsmRow so_rows[] = {
    /* from, to, step, sentence, step fn, probe, plan, cancel, timeout ms, attempts, idempotent, gate, on_failure */
    {DETECTED, REQUESTED, "check_request", "the target is a streaming standby within failover.maximum_lag",
     step_check_request, NULL, plan_check_request, NULL, 10000, 1, true, FSM_GATE_NONE, REFUSED},
    {REQUESTED, HALTED, "halt_trading", "trading is halted and the venue confirms it",
     scn_step_halt_trading, NULL, scn_plan_halt_trading, NULL, 30000, 10, true, FSM_GATE_NONE, FSM_NO_STATE},
    {HALTED, DRAINED, "drain", "no transaction is writing on the old primary (or drain_timeout passed)",
     step_drain, NULL, NULL, scn_cancel, SO_DRAIN_MAX_MS, 2, true, FSM_GATE_NONE, STAYED_HALTED},
    {DRAINED, TARGET_CHECKED, "check_target", "the target still streams within failover.maximum_lag",
     step_check_target, NULL, NULL, NULL, 10000, 1, true, FSM_GATE_NONE, STAYED_HALTED},
    {TARGET_CHECKED, READ_ONLY, "refuse_writes", "the old primary refuses writes and its sessions are ended",
     step_refuse_writes, NULL, NULL, scn_cancel, 30000, 2, true, FSM_GATE_NONE, UNDO_READ_ONLY},
    {READ_ONLY, CAUGHT_UP, "catch_up", "the target replayed the old primary's final WAL position",
     step_catch_up, NULL, NULL, scn_cancel, SO_CATCHUP_MAX_MS, 1, true, FSM_GATE_NONE, UNDO_READ_ONLY},
    {CAUGHT_UP, OLD_STOPPED, "stop_old_primary", "the old primary is stopped cleanly",
     step_stop_old_primary, NULL, plan_stop_old_primary, scn_cancel, SO_STOP_MAX_MS, 2, true, FSM_GATE_NONE,
     UNDO_READ_ONLY},
    {OLD_STOPPED, PROMOTED, "promote_standby", "the target is promoted and on a new timeline",
     step_promote_target, NULL, plan_promote_target, scn_cancel, 120000, 2, true, FSM_GATE_APPROVAL, NOT_PROMOTED},
    {PROMOTED, REPOINTED, "repoint_platform", "the platform writes to the new primary: its repoint hook exited 0",
     scn_step_repoint_platform, NULL, scn_plan_repoint_platform, scn_cancel, 60000, 3, true, FSM_GATE_NONE,
     NOT_REPOINTED},
    {REPOINTED, RECONCILED, "reconcile", "the new primary matches the exchange's positions and fills",
     scn_step_reconcile_new_primary, NULL, scn_plan_reconcile, NULL, 600000, 2, true, FSM_GATE_NONE, NOT_RECONCILED},
    {RECONCILED, SHADOW, "resume_shadow", "trading resumes in shadow mode (paper only)",
     scn_step_resume_shadow, NULL, scn_plan_resume_shadow, NULL, 30000, 3, true, FSM_GATE_NONE, FSM_NO_STATE},
    {SHADOW, LIVE, "resume_live", "trading is live again",
     scn_step_resume_live, scn_probe_resume_live, scn_plan_resume_live, scn_cancel, 30000, 3, false, FSM_GATE_APPROVAL,
     FSM_NO_STATE},
    /* off the trading path: a standby that does not follow is paged, the run goes on (its on_failure too) */
    {LIVE, STANDBYS_REPOINTED, "repoint_standbys", "the other standbys stream from the new primary (or are paged)",
     scn_step_repoint_standbys, NULL, scn_plan_repoint_standbys, scn_cancel, 600000, 1, true, FSM_GATE_NONE,
     STANDBYS_REPOINTED},
    {STANDBYS_REPOINTED, WATCHED, "post_resume_watch", "the new primary still matches the exchange after the resume",
     scn_step_watch_new_primary, NULL, scn_plan_post_resume_watch, scn_cancel, SCN_WATCH_TIMEOUT_MS, 1, true,
     FSM_GATE_NONE, WATCH_FAILED},
    {UNDO_READ_ONLY, STAYED_HALTED, "undo_read_only", "the old primary accepts writes again; trading stays halted",
     step_undo_read_only, NULL, NULL, scn_cancel, 30000, 3, true, FSM_GATE_NONE, FSM_NO_STATE},
    {WATCH_FAILED, HALTED_AFTER_WATCH, "halt_after_watch", "trading is halted again: the post-resume watch failed",
     scn_step_halt_after_watch, NULL, scn_plan_halt_trading, NULL, 30000, 10, true, FSM_GATE_NONE, FSM_NO_STATE},
};

static const FsmTable so_table = {"switchover", so_states, N_STATES, so_rows,
                                  (int)(sizeof(so_rows) / sizeof(so_rows[0])), NULL, 0};

static bool so_may_resume(const ScnRun *run)
{
    return scn_may_resume_in(run, RECONCILED, SHADOW);
}

/* refuse_writes ends the old primary's sessions (the liveness probe's among them); from
 * stop_old_primary until the promotion is recorded (the probe then follows the new primary) the
 * old primary is down on purpose. */
static unsigned so_disturbs(const ScnRun *run, const char *running_step, char *what, size_t n)
{
    int s = fsm_run_state(run->fsm);
    const char *old = scn_ctx_str(run, "old_primary", "name") ?: "the primary";
    bool step = running_step != NULL;
    if (s == OLD_STOPPED || (s == CAUGHT_UP && step && !strcmp(running_step, "stop_old_primary"))) {
        snprintf(what, n, "run %s stops '%s' for a switchover: it is down until the target's promotion is recorded",
                 run->id, old);
        return LEASE_DB_STOPPED | LEASE_DB_TERMINATED;
    }
    if (s == TARGET_CHECKED && step && !strcmp(running_step, "refuse_writes")) {
        snprintf(what, n, "run %s makes '%s' read-only for a switchover and ends its sessions", run->id, old);
        return LEASE_DB_TERMINATED;
    }
    return 0;
}

static void so_copy(json_t *to, const char *key, const json_t *v)
{
    json_object_set_new(to, key, v ? json_deep_copy(v) : json_null());
}

static void so_report_extras(const ScnRun *run, json_t *rep)
{
    json_t *f = json_object();
    if (!f)
        return;
    so_copy(f, "old_primary", json_object_get(json_object_get(run->ctx, "old_primary"), "name"));
    so_copy(f, "promoted", json_object_get(json_object_get(run->ctx, "promotion"), "node"));
    so_copy(f, "timeline", json_object_get(json_object_get(run->ctx, "promotion"), "timeline"));
    so_copy(f, "final_lsn", json_object_get(json_object_get(run->ctx, "final"), "lsn"));
    so_copy(f, "terminated_sessions", json_object_get(json_object_get(run->ctx, "final"), "terminated"));
    so_copy(f, "repoint", json_object_get(run->ctx, "repoint"));
    so_copy(f, "standbys", json_object_get(run->ctx, "standbys"));
    json_object_set_new(rep, "switchover", f);
}

/* ---- switchover --to NODE [--manual]: refused up front, else the run ---- */

void switchover__cmd(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    const char *to = json_string_value(json_object_get(args, "to"));
    const ConfigScenario *sc = config_scenario(s->core->cfg, scenario_switchover.name);
    char why[600], id[96], reason[300];

    if (!to || !to[0]) {
        control_reply_error(call, DR_EBADARG, "--to NODE is required");
        return;
    }
    so_refusal(s->caps.replication, s->core->cfg, to, why, sizeof(why));
    if (why[0]) {
        control_reply_error(call, DR_ESTATE, "no switchover: %s (nothing was touched)", why);
        return;
    }
    bool manual = json_is_true(json_object_get(args, "manual")) || (sc && sc->manual);
    FsmMode mode = manual ? FSM_MODE_MANUAL : FSM_MODE_AUTOMATIC;
    const PeerCred *pc = control_call_peer(call);
    snprintf(reason, sizeof(reason), "operator request (uid %ld): switch over to '%s'", pc ? (long)pc->uid : -1L, to);
    json_t *params = json_pack("{s:s}", "to", to);
    int r = scn_trigger_params(s, scenario_switchover.name, reason, clock_wall_ms(), mode, params, NULL, id,
                               sizeof(id), why, sizeof(why));
    json_decref(params);
    if (r < 0)
        control_reply_error(call, r == -EBUSY ? DR_EBUSY : r, "%s", why);
    else
        control_reply_ok(call, json_pack("{s:b,s:s,s:s,s:s,s:s}", "ok", 1, "run", id, "scenario", scenario_switchover.name, "mode",
                                         fsm_mode_name(mode), "to", to));
}

const ScenarioDef scenario_switchover = {
    .name = "switchover",
    .short_name = "switchover",
    .summary = "planned change of primary: halt, drain, old primary read-only, target caught up, old primary "
               "stopped, target promoted, repoint, reconcile, resume",
    .table = &so_table,
    .handles = NULL, /* started by drctl switchover --to NODE */
    .live_step = "resume_live",
    .may_resume = so_may_resume,
    .restore_point_ms = NULL, /* nothing restored: the RPO is the report's null */
    .report_extras = so_report_extras,
    .config = &switchover_config_section,
    .disturbs = so_disturbs,
};
