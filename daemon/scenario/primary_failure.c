/*
 * primary_failure: the scenario, as one static table, its definition and its own steps.
 *
 * Owns the runbook "the primary is gone: halt trading, fence the old primary, promote the best
 * standby, point the platform at it, reconcile against it, resume in shadow, then live, then
 * watch", and its fail-closed branches: fencing (the hook, then the daemon's own measures of
 * failover.self_fence on a node still writable, each confirmed by a fresh connection) not confirmed waits for an operator (never a
 * promotion without it); no standby within failover.maximum_lag, a promotion that does not take,
 * or a repoint that fails leave trading halted. It starts on the incident kind primary_failure
 * (the detector, when its probes and the standbys agree: detect/detector_sm.h) or by drctl execute.
 *
 * What the run decided is in its context (journaled, so a restart follows the same choice):
 * "old_primary" {name, conninfo, candidate} (taken when the fence step first runs, before the hook:
 * candidate is the standby the detection-time view would promote then, {name, conninfo,
 * received_lsn, lag_bytes, priority} or null), "fence" (the hook's exit or the operator; by: hook,
 * stop, read_only or operator), "self_fence" (the daemon's own measures, steps/fence.c), "standby"
 * {name, conninfo, received_lsn, lag_bytes, priority} (chosen once, never again), "promote_from"
 * {timeline}, "promotion" {node, timeline, previous_timeline},
 * "repoint". Every step is safe to run again: the fence and repoint hooks must be idempotent (their
 * contract, docs/replication.md); promote asks the standby whether it is still in recovery first.
 * Once the promotion is confirmed the new primary is recorded (replication_record_primary: roles,
 * replication-status and the liveness probe follow it, across restarts), and the run's reconcile
 * and watch use database.conninfo retargeted to it. The promotion, the repoint and the reconcile and
 * watch against the new primary are steps/promote.c's, shared with the switchover scenario.
 *
 * A daemon restarted after the fence has no judgment of the standbys from before the primary was
 * lost (the replication monitor's history is the process's): once the fenced primary is gone every
 * standby reads broken or unknown. select_standby then takes old_primary's candidate, recorded by an
 * earlier life of the daemon before it fenced, if that node still answers and is in recovery (its
 * WAL cannot have moved since: its primary is fenced); otherwise it fails closed as before.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "err.h"
#include "log.h"
#include "observe/replication.h"
#include "pgconn.h"
#include "scenario/primary_failure_internal.h"
#include "scenario/scn_internal.h"
#include "scenario/steps/steps.h"

enum {
    DETECTED,
    HALTED,
    FENCE_UNCONFIRMED,
    FENCED,
    STANDBY_SELECTED,
    PROMOTED,
    REPOINTED,
    RECONCILED,
    SHADOW,
    LIVE,
    STANDBYS_REPOINTED,
    WATCHED,
    STAYED_HALTED,
    NOT_PROMOTED,
    NOT_REPOINTED,
    NOT_RECONCILED,
    WATCH_FAILED,
    HALTED_AFTER_WATCH,
    N_STATES
};

static const ConfigFailover *pf_failover(const ScnRun *run)
{
    return &run->core->cfg->replication.failover;
}

static const PrimaryFailureConfig *pf_cfg(const ScnRun *run)
{
    return run->cfg.data;
}

/* The run's own context (run->own): what this life of the daemon did, never journaled. */
typedef struct PfRun {
    bool candidate_here; /* old_primary's candidate was taken by this process (its monitor saw the detection) */
} PfRun;

/* A view's candidate as the context records it, or JSON null. */
static json_t *pf_candidate_json(const ReplFailoverView *v)
{
    char lsn[32];
    if (!v->candidate[0])
        return json_null();
    snprintf(lsn, sizeof(lsn), "%X/%X", (unsigned)(v->candidate_lsn >> 32), (unsigned)(v->candidate_lsn & 0xffffffffu));
    return json_pack("{s:s,s:s,s:s,s:I,s:I}", "name", v->candidate, "conninfo", v->candidate_conninfo, "received_lsn",
                     lsn, "lag_bytes", (json_int_t)v->candidate_lag_bytes, "priority",
                     (json_int_t)v->candidate_priority);
}

/* ---- fence_old_primary ---- */

static void fence_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the fence: %s", err_str(status));
    else
        scn_finish(st, 0, "the old primary '%s' is fenced (%s)", scn_ctx_str(run, "old_primary", "name"),
                   scn_ctx_str(run, "fence", "hook"));
}

/* steps/fence.c confirmed the fence (a fresh connection: down, a standby or read-only), or not. */
static void fence_confirmed(ScnStep *st, bool fenced, const char *by, const char *how)
{
    if (!fenced) {
        scn_finish(st, DR_ESTATE, "%s: the old primary '%s' is not known to be fenced, no promotion (fence it by "
                   "hand, then drctl approve; or drctl abort)", how, scn_ctx_str(st->run, "old_primary", "name"));
        return;
    }
    scn_context_set(st->run, "fence", json_pack("{s:s,s:s,s:I}", "by", by, "hook", how, "ms",
                                                (json_int_t)clock_wall_ms()), fence_recorded, st);
}

static void fence_exited(ScnStep *st, bool ok, int64_t status, const char *how)
{
    (void)status;
    if (!ok) {
        scn_finish(st, DR_ESTATE, "the fence hook %s: the old primary '%s' is not known to be fenced, no promotion "
                   "(fence it by hand, then drctl approve; or drctl abort)", how,
                   scn_ctx_str(st->run, "old_primary", "name"));
        return;
    }
    scn_fence_confirm(st, scn_ctx_str(st->run, "old_primary", "name"), scn_ctx_str(st->run, "old_primary", "conninfo"),
                      true, how, fence_confirmed);
}

static void fence_spawn(ScnStep *st)
{
    const ConfigFailover *f = pf_failover(st->run);
    char old[128], ci[1200], run[128];
    const char *env[] = {old, ci, run, NULL};

    if (!f->n_fence && f->self_fence == CONFIG_SELF_FENCE_OFF) {
        scn_finish(st, DR_ECONFIG, "no fence hook is configured (failover.fence) and failover.self_fence is off: the "
                   "old primary could keep accepting writes, no promotion");
        return;
    }
    if (!f->n_fence) { /* the daemon's own fencing alone */
        scn_fence_confirm(st, scn_ctx_str(st->run, "old_primary", "name"),
                          scn_ctx_str(st->run, "old_primary", "conninfo"), false, NULL, fence_confirmed);
        return;
    }
    snprintf(old, sizeof(old), "DRSUP_OLD_PRIMARY=%s", scn_ctx_str(st->run, "old_primary", "name") ?: "");
    scn_env_conninfo(ci, sizeof(ci), "DRSUP_OLD_PRIMARY_CONNINFO", scn_ctx_str(st->run, "old_primary", "conninfo"));
    snprintf(run, sizeof(run), "DRSUP_RUN=%s", st->run->id);
    scn_hook_run(st, "fence hook", (const char *const *)f->fence, env, f->hook_timeout_ms, fence_exited);
}

static void fence_old_known(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    (void)run;
    if (status < 0)
        scn_finish(st, status, "cannot record the old primary: %s", err_str(status));
    else
        fence_spawn(st);
}

/* A standby this process's monitor has not judged yet (just started: no probe round behind it). */
static bool pf_standby_unjudged(const ScnRun *run, const char *old)
{
    const ConfigReplication *rc = &run->core->cfg->replication;
    ReplNodeView nv;
    for (size_t i = 0; i < rc->n_nodes; i++) {
        if (!strcmp(rc->nodes[i].name, old))
            continue;
        replication_node_view(run->caps->replication, rc->nodes[i].name, &nv);
        if (nv.known && !nv.primary && nv.state == REPL_UNKNOWN && (!nv.sampled_ms || nv.answered))
            return true;
    }
    return false;
}

static void fence_record_old(ScnStep *st);

static void fence_judged(uv_timer_t *t)
{
    fence_record_old(t->data);
}

/* The old primary, and the standby the detection-time view would promote (before the hook, for a
 * daemon restarted after it). A monitor that has not judged the standbys yet (the daemon restarted
 * in this step) gets a few probe rounds first. */
static void fence_record_old(ScnStep *st)
{
    const ConfigReplication *rc = &st->run->core->cfg->replication;
    ReplFailoverView v;

    replication_failover_view(st->run->caps->replication, 0, &v);
    const char *ci = replication_node_conninfo(st->run->caps->replication, v.primary);
    if (!v.primary[0] || !ci) {
        scn_finish(st, DR_ECONFIG, "no primary among replication.nodes: nothing to fence, no promotion");
        return;
    }
    if (pf_standby_unjudged(st->run, v.primary) && clock_mono_us() / 1000u < st->deadline_ms) {
        if (scn_step_wait(st, rc->interval_ms, fence_judged) < 0)
            scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    char old[sizeof(v.primary)];
    snprintf(old, sizeof(old), "%s", v.primary);
    replication_failover_view(st->run->caps->replication, st->run->detected_ms, &v);
    json_t *cand = pf_candidate_json(&v);
    const char *det = json_string_value(scn_run_param(st->run, "candidate"));
    const char *dci = det ? replication_node_conninfo(st->run->caps->replication, det) : NULL;
    if (json_is_null(cand) && det && dci && strcmp(det, old)) {
        /* this monitor has no judgment from before the loss (restarted after the detection): the
         * detection's own candidate, recorded with the run's start */
        json_decref(cand);
        cand = json_pack("{s:s,s:s,s:n,s:n,s:n,s:b}", "name", det, "conninfo", dci, "received_lsn", "lag_bytes",
                         "priority", "from_detection", 1);
    } else {
        ((PfRun *)st->run->own)->candidate_here = true;
    }
    scn_context_set(st->run, "old_primary", json_pack("{s:s,s:s,s:o}", "name", old, "conninfo", ci, "candidate", cand),
                    fence_old_known, st);
}

static void step_fence_old_primary(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);

    if (!st)
        return;
    if (scn_ctx_str(st->run, "old_primary", "name")) {
        fence_spawn(st);
        return;
    }
    if (!st->run->caps->replication) {
        scn_finish(st, DR_ECONFIG, "no replication monitor: the cluster's nodes are unknown");
        return;
    }
    const ConfigReplication *rc = &st->run->core->cfg->replication;
    st->deadline_ms = clock_mono_us() / 1000u + (uint64_t)(rc->debounce + 2) * (rc->interval_ms + rc->timeout_ms);
    fence_record_old(st);
}

static void plan_fence_old_primary(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    const ConfigFailover *f = pf_failover(run);
    ReplFailoverView v;
    char msg[1200], self[500];
    if (run->caps->replication)
        replication_failover_view(run->caps->replication, 0, &v);
    else
        memset(&v, 0, sizeof(v));
    scn_fence_plan(run, v.primary, self, sizeof(self));
    snprintf(msg, sizeof(msg), "would run the fence hook '%s' for the old primary, then check with a fresh connection "
             "that it is down (the hook's exit 0), a standby or read-only; %s",
             f->n_fence ? f->fence[0] : "(none configured)", self);
    done(call, 0, msg);
}

/* ---- select_standby ---- */

static void select_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the standby chosen: %s", err_str(status));
    else
        scn_finish(st, 0, "standby '%s' is chosen (%lld bytes behind, priority %lld)",
                   scn_ctx_str(run, "standby", "name"), (long long)scn_ctx_int(run, "standby", "lag_bytes"),
                   (long long)scn_ctx_int(run, "standby", "priority"));
}

static void step_select_standby(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    ReplFailoverView v;

    if (!st)
        return;
    if (scn_ctx_str(st->run, "standby", "name")) { /* chosen before a restart: never a second choice */
        scn_finish(st, 0, "standby '%s' was chosen already", scn_ctx_str(st->run, "standby", "name"));
        return;
    }
    if (!st->run->caps->replication) {
        scn_finish(st, DR_ECONFIG, "no replication monitor: no standby to promote");
        return;
    }
    /* The standbys as they were when the primary was lost (the detection's time). */
    replication_failover_view(st->run->caps->replication, st->run->detected_ms, &v);
    const char *old = scn_ctx_str(st->run, "old_primary", "name");
    if (!v.candidate[0] || (old && !strcmp(v.candidate, old))) {
        json_t *before = json_object_get(json_object_get(st->run->ctx, "old_primary"), "candidate");
        const char *name = json_string_value(json_object_get(before, "name"));
        ReplNodeView nv;
        if (name && !((PfRun *)st->run->own)->candidate_here && (!old || strcmp(name, old))) {
            /* restarted after the fence: this monitor never saw the standbys replicate from it */
            replication_node_view(st->run->caps->replication, name, &nv);
            if (nv.known && nv.answered && nv.in_recovery) {
                LogFields lf = {st->run->id, st->run->def->name, NULL};
                log_emit(LOG_NOTICE, "scenario", &lf, "the standbys' judgment from before the fence went with the "
                         "daemon's restart: '%s', the candidate recorded before the fence, still answers in recovery",
                         name);
                scn_context_set(st->run, "standby", json_deep_copy(before), select_recorded, st);
                return;
            }
        }
        scn_finish(st, DR_ESTATE, "no standby can be promoted (%s): trading stays halted, no promotion",
                   v.why[0] ? v.why : "none eligible");
        return;
    }
    scn_context_set(st->run, "standby", pf_candidate_json(&v), select_recorded, st);
}

static void plan_select_standby(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    ReplFailoverView v;
    char msg[900];
    if (run->caps->replication)
        replication_failover_view(run->caps->replication, 0, &v);
    else
        memset(&v, 0, sizeof(v));
    if (v.candidate[0])
        snprintf(msg, sizeof(msg), "would choose '%s' (the most WAL received within failover.maximum_lag, then priority)",
                 v.candidate);
    else
        snprintf(msg, sizeof(msg), "no standby would be chosen now (%s)", v.why);
    done(call, 0, msg);
}

/* ---- promote_standby (steps/promote.c, with the switchover's) ---- */

static void step_promote_standby(FsmCall *call, void *ctx, FsmDone done)
{
    scn_step_promote(call, ctx, done, pf_cfg(ctx)->promote_timeout_ms);
}

static void plan_promote_standby(FsmCall *call, void *ctx, FsmDone done)
{
    scn_plan_promote(call, done, pf_cfg(ctx)->promote_timeout_ms);
}

/* ---- the table ---- */

static const FsmState pf_states[N_STATES] = {
    [DETECTED] = {"detected", FSM_STATE_ACTIVE},
    [HALTED] = {"halted", FSM_STATE_ACTIVE},
    [FENCE_UNCONFIRMED] = {"fence_unconfirmed", FSM_STATE_ACTIVE},
    [FENCED] = {"fenced", FSM_STATE_ACTIVE},
    [STANDBY_SELECTED] = {"standby_selected", FSM_STATE_ACTIVE},
    [PROMOTED] = {"promoted", FSM_STATE_ACTIVE},
    [REPOINTED] = {"repointed", FSM_STATE_ACTIVE},
    [RECONCILED] = {"reconciled", FSM_STATE_ACTIVE},
    [SHADOW] = {"trading_in_shadow", FSM_STATE_ACTIVE},
    [LIVE] = {"live", FSM_STATE_ACTIVE},
    [STANDBYS_REPOINTED] = {"standbys_repointed", FSM_STATE_ACTIVE},
    [WATCHED] = {"watch_passed", FSM_STATE_SUCCESS},
    [STAYED_HALTED] = {"stayed_halted", FSM_STATE_FAILURE},
    [NOT_PROMOTED] = {"not_promoted", FSM_STATE_FAILURE},
    [NOT_REPOINTED] = {"not_repointed", FSM_STATE_FAILURE},
    [NOT_RECONCILED] = {"not_reconciled", FSM_STATE_FAILURE},
    [WATCH_FAILED] = {"watch_failed", FSM_STATE_ACTIVE},
    [HALTED_AFTER_WATCH] = {"halted_after_watch", FSM_STATE_FAILURE},
};

static const FsmRow pf_rows[] = {
    /* from, to, step, sentence, step fn, probe, plan, cancel, timeout ms, attempts, idempotent, gate, on_failure */
    {DETECTED, HALTED, "halt_trading", "trading is halted and the venue confirms it",
     scn_step_halt_trading, NULL, scn_plan_halt_trading, NULL, 30000, 10, true, FSM_GATE_NONE, FSM_NO_STATE},
    {HALTED, FENCED, "fence_old_primary", "the old primary is fenced: its fence hook exited 0 or the daemon's own "
     "fencing took, and a fresh connection confirms it", step_fence_old_primary, NULL, plan_fence_old_primary,
     scn_cancel, 120000, 2, true, FSM_GATE_NONE,
     FENCE_UNCONFIRMED},
    {FENCE_UNCONFIRMED, FENCED, "confirm_fence", "an operator confirms that the old primary is fenced",
     scn_step_confirm_fence, NULL, NULL, NULL, 10000, 1, true, FSM_GATE_OPERATOR, STAYED_HALTED},
    {FENCED, STANDBY_SELECTED, "select_standby", "the standby with the most WAL within failover.maximum_lag is chosen",
     step_select_standby, NULL, plan_select_standby, NULL, 10000, 2, true, FSM_GATE_NONE, STAYED_HALTED},
    {STANDBY_SELECTED, PROMOTED, "promote_standby", "the chosen standby is promoted and on a new timeline",
     step_promote_standby, NULL, plan_promote_standby, scn_cancel, 120000, 2, true, FSM_GATE_APPROVAL, NOT_PROMOTED},
    {PROMOTED, REPOINTED, "repoint_platform", "the platform writes to the new primary: its repoint hook exited 0",
     scn_step_repoint_platform, NULL, scn_plan_repoint_platform, scn_cancel, 60000, 3, true, FSM_GATE_NONE, NOT_REPOINTED},
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
    {WATCH_FAILED, HALTED_AFTER_WATCH, "halt_after_watch", "trading is halted again: the post-resume watch failed",
     scn_step_halt_after_watch, NULL, scn_plan_halt_trading, NULL, 30000, 10, true, FSM_GATE_NONE, FSM_NO_STATE},
};

static const FsmTable pf_table = {"primary_failure", pf_states, N_STATES, pf_rows,
                                  (int)(sizeof(pf_rows) / sizeof(pf_rows[0])), NULL, 0};

/* Trading may resume only from this run's own resume steps, after the reconcile committed. */
static bool pf_may_resume(const ScnRun *run)
{
    return scn_may_resume_in(run, RECONCILED, SHADOW);
}

static void pf_copy(json_t *to, const char *key, const json_t *v)
{
    json_object_set_new(to, key, v ? json_deep_copy(v) : json_null());
}

/* The promoted node, the old primary, the timeline, and how long each step took. */
static void pf_report_extras(const ScnRun *run, json_t *rep)
{
    json_t *f = json_object();
    json_t *ms = json_object();
    const json_t *st;
    size_t i;

    if (!f || !ms) {
        json_decref(f);
        json_decref(ms);
        return;
    }
    pf_copy(f, "old_primary", json_object_get(json_object_get(run->ctx, "old_primary"), "name"));
    pf_copy(f, "promoted", json_object_get(json_object_get(run->ctx, "promotion"), "node"));
    pf_copy(f, "timeline", json_object_get(json_object_get(run->ctx, "promotion"), "timeline"));
    pf_copy(f, "previous_timeline", json_object_get(json_object_get(run->ctx, "promotion"), "previous_timeline"));
    pf_copy(f, "standby", json_object_get(run->ctx, "standby"));
    pf_copy(f, "fence", json_object_get(run->ctx, "fence"));
    pf_copy(f, "self_fence", json_object_get(run->ctx, "self_fence"));
    pf_copy(f, "repoint", json_object_get(run->ctx, "repoint"));
    pf_copy(f, "standbys", json_object_get(run->ctx, "standbys"));
    json_int_t first = 0;
    json_array_foreach(json_object_get(rep, "timeline"), i, st) {
        const char *name = json_string_value(json_object_get(st, "step"));
        json_int_t t0 = json_integer_value(json_object_get(st, "start_ms"));
        json_int_t t1 = json_integer_value(json_object_get(st, "end_ms"));
        if (!first)
            first = t0;
        if (name && t0 && t1) /* a step run again after a restart: its last attempt's time */
            json_object_set_new(ms, name, json_integer(t1 - t0));
    }
    /* from the first failed probe to the run's first step */
    json_object_set_new(f, "detect_ms", first && run->detected_ms ? json_integer(first - run->detected_ms) : json_null());
    json_object_set_new(f, "step_ms", ms);
    json_object_set_new(rep, "failover", f);
}

static const char *const pf_handles[] = {INCIDENT_PRIMARY_FAILURE, NULL};

const ScenarioDef scenario_primary_failure = {
    .name = "primary_failure",
    .short_name = "failover",
    .summary = "fence the lost primary, promote the best standby, repoint the platform, reconcile, resume",
    .table = &pf_table,
    .handles = pf_handles,
    .live_step = "resume_live",
    .may_resume = pf_may_resume,
    .restore_point_ms = NULL, /* nothing restored: the RPO is the report's null */
    .report_extras = pf_report_extras,
    .config = &primary_failure_config_section,
    .ctx_size = sizeof(PfRun),
};
