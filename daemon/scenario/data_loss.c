/*
 * data_loss: rows gone from a watched table (or the table itself), as one static table, its
 * definition and its own steps (docs/scenarios.md, docs/data-loss.md).
 *
 * Owns the runbook "someone deleted the trades": the detector (detect/watched.h) saw a watched
 * table drop beyond its limit between two probes, or vanish, and starts the run with the recovery
 * target (the last good observation's time) and the tables (their statements, last good values
 * and floors) as the run's parameters; an operator starts it with drctl execute --scenario
 * data_loss --before T (planned first: a T the archive cannot reach is refused before any run
 * starts). Then: plan the point-in-time recovery, halt trading (confirmed), record the evidence
 * (each watched table's number on the live cluster as the loss left it; the switch keeps that
 * cluster's data directory as DATA_DIRECTORY.before-RUN), recover to the target with
 * point_in_time's steps (point_in_time_internal.h: base backup, WAL, side port, promotion),
 * validate (each watched table back to at least its floor, the last good value less its allowed
 * drop, then the configured validation queries), switch it in, reconcile with the exchange (the
 * fills after the restore point replayed), resume in shadow, wait for an operator's approval (by
 * default in every mode: a data loss may have been deliberate; scenarios.data_loss.approve_resume
 * false keeps the gate to manual mode), live, watch.
 *
 * What the run decided is in its context (journaled) besides point_in_time's: "evidence"
 * {tables: [{name, value, gone}]} and "recovered" {tables: [{name, value, floor, back}]}. The
 * report says per table how many rows were lost and how many came back, and the RPO achieved.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/wal/wal.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "pgconn.h"
#include "scenario/data_loss_internal.h"
#include "scenario/scn_internal.h"
#include "scenario/steps/steps.h"

enum {
    DETECTED,
    PLANNED,
    HALTED,
    EVIDENCE_KEPT,
    RESTORED,
    STAGED,
    STARTED,
    PROMOTED,
    VALIDATED,
    SWITCHED,
    RECONCILED,
    SHADOW,
    APPROVED,
    LIVE,
    WATCHED,
    NOT_POSSIBLE,
    STAYED_HALTED,
    NOT_RECOVERED,
    NOT_VALIDATED,
    NOT_SWITCHED,
    NOT_RECONCILED,
    WATCH_FAILED,
    HALTED_AFTER_WATCH,
    N_STATES
};

/* The run's own context: point_in_time's (its directories), first. */
typedef struct DataLossRun {
    PitrRun pitr;
} DataLossRun;

static const DataLossConfig *dl_cfg(const ScnRun *run)
{
    return run->cfg.data;
}

static int64_t dl_target_ms(const ScnRun *run)
{
    const json_t *t = scn_run_param(run, "target_ms");
    return json_is_integer(t) ? json_integer_value(t) : 0;
}

/* The watched tables the run was started with (borrowed; an array, maybe empty). */
static const json_t *dl_tables(const ScnRun *run)
{
    const json_t *t = scn_run_param(run, "tables");
    return json_is_array(t) ? t : NULL;
}

static const char *dl_table_str(const json_t *t, const char *key)
{
    return json_string_value(json_object_get(t, key));
}

/* ---- record_evidence: the watched tables as the loss left them, on the live cluster ---- */

static void evidence_next(ScnStep *st);

static void evidence_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    (void)run;
    if (status < 0)
        scn_finish(st, status, "cannot record the evidence: %s", err_str(status));
    else
        scn_finish(st, 0, "%zu watched table%s read on the live cluster; its data directory '%s' is kept as "
                   "'%s.before-%s' by the switch", st->idx, st->idx == 1 ? "" : "s",
                   dl_cfg(run)->pitr.data_directory, dl_cfg(run)->pitr.data_directory, run->id);
}

static void evidence_answered(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    const json_t *t = json_array_get(dl_tables(st->run), st->idx);
    const char *sqlstate = status < 0 && st->pg ? pgconn_last_sqlstate(st->pg) : "";
    bool gone = status < 0 && (!strcmp(sqlstate, "42P01") || !strcmp(sqlstate, "3F000"));
    if (status < 0 && !gone) {
        scn_fail_sql(st, status, "cannot read a watched table on the live cluster", errmsg);
        return;
    }
    json_t *e = json_pack("{s:s,s:b}", "name", dl_table_str(t, "name") ?: "?", "gone", gone);
    if (!gone && res && PQntuples(res) == 1 && PQnfields(res) == 2 && !PQgetisnull(res, 0, 1))
        json_object_set_new(e, "value", json_integer(strtoll(PQgetvalue(res, 0, 1), NULL, 10)));
    json_array_append_new(json_object_get(st->acc, "tables"), e);
    st->idx++;
    evidence_next(st);
}

static void evidence_next(ScnStep *st)
{
    const json_t *t = json_array_get(dl_tables(st->run), st->idx);
    if (!t) {
        json_t *acc = st->acc;
        st->acc = NULL;
        scn_context_set(st->run, "evidence", acc, evidence_recorded, st);
        return;
    }
    if (!dl_table_str(t, "sql")) {
        scn_finish(st, DR_ECORRUPT, "watched table %zu of the run has no statement", st->idx);
        return;
    }
    scn_sql(st, st->run->db_conninfo, dl_table_str(t, "sql"), 0, NULL, evidence_answered);
}

static void step_record_evidence(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    if (!(st->acc = json_pack("{s:[],s:s}", "tables", "data_directory", dl_cfg(st->run)->pitr.data_directory ?: ""))) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    evidence_next(st);
}

static void plan_record_evidence(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char msg[600];
    snprintf(msg, sizeof(msg), "would read the %zu watched table%s on the live cluster (the loss as it stands); the "
             "switch keeps its data directory as evidence", json_array_size(dl_tables(run)),
             json_array_size(dl_tables(run)) == 1 ? "" : "s");
    done(call, 0, msg);
}

/* ---- validate_recovery: the watched tables back, then the validation queries ---- */

static void recovered_next(ScnStep *st);

static void recovered_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    char where[200];
    if (status < 0) {
        scn_finish(st, status, "cannot record the recovered tables: %s", err_str(status));
        return;
    }
    char *ci = pitr__side_conninfo(run, run->database);
    snprintf(where, sizeof(where), "'%s' of the recovered server (port %lld), every watched table back,",
             run->database, (long long)dl_cfg(run)->pitr.side_port);
    if (!ci)
        scn_finish(st, -ENOMEM, "out of memory");
    else
        scn_validate(st, dl_cfg(run)->pitr.validation_queries, dl_cfg(run)->pitr.n_validation_queries, ci, where);
    free(ci);
}

static void recovered_answered(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    const json_t *t = json_array_get(dl_tables(st->run), st->idx);
    const char *name = dl_table_str(t, "name") ?: "?";
    if (status < 0) {
        scn_finish(st, DR_ECORRUPT, "watched table '%s' on the recovered server: %s", name, errmsg ? errmsg : "");
        return;
    }
    if (!res || PQntuples(res) != 1 || PQnfields(res) != 2 || PQgetisnull(res, 0, 1)) {
        scn_finish(st, DR_ECORRUPT, "watched table '%s' on the recovered server: not one number", name);
        return;
    }
    int64_t v = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    const json_t *floor = json_object_get(t, "floor");
    bool back = !json_is_integer(floor) || v >= json_integer_value(floor);
    json_t *e = json_pack("{s:s,s:I,s:O,s:b}", "name", name, "value", (json_int_t)v, "floor",
                          floor ? floor : json_null(), "back", back);
    json_array_append_new(json_object_get(st->acc, "tables"), e);
    if (!back) {
        scn_finish(st, DR_ECORRUPT, "watched table '%s' on the recovered server is %lld, below %lld (the last good "
                   "observation less its allowed drop): the recovery did not bring the rows back", name, (long long)v,
                   (long long)json_integer_value(floor));
        return;
    }
    st->idx++;
    recovered_next(st);
}

static void recovered_next(ScnStep *st)
{
    const json_t *t = json_array_get(dl_tables(st->run), st->idx);
    if (!t) {
        json_t *acc = st->acc;
        st->acc = NULL;
        st->idx = 0;
        if (st->pg) { /* scn_validate connects afresh */
            pgconn_close(st->pg, NULL, NULL);
            st->pg = NULL;
        }
        scn_context_set(st->run, "recovered", acc, recovered_recorded, st);
        return;
    }
    char *ci = pitr__side_conninfo(st->run, st->run->database);
    if (!ci) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    scn_sql(st, ci, dl_table_str(t, "sql") ?: "SELECT NULL, NULL", 0, NULL, recovered_answered);
    free(ci);
}

static void step_validate_recovery(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    if (!(st->acc = json_pack("{s:[]}", "tables"))) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    recovered_next(st);
}

static void plan_validate_recovery(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char msg[700];
    snprintf(msg, sizeof(msg), "would check on the recovered server that the %zu watched table%s are back (at least "
             "the last good observation less the allowed drop), then run %zu validation quer%s",
             json_array_size(dl_tables(run)), json_array_size(dl_tables(run)) == 1 ? "" : "s",
             dl_cfg(run)->pitr.n_validation_queries, dl_cfg(run)->pitr.n_validation_queries == 1 ? "y" : "ies");
    done(call, 0, msg);
}

/* ---- resume_shadow, approve_resume ---- */

/* Without the gate (approve_resume: false, automatic mode) the run goes from shadow straight to
 * the live resume. */
static void step_resume_shadow(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    if (!dl_cfg(run)->approve_resume && run->mode != FSM_MODE_MANUAL)
        fsm_call_set_outcome(call, "no_approval_needed");
    scn_step_resume_shadow(call, ctx, done);
}

static void step_approve_resume(FsmCall *call, void *ctx, FsmDone done)
{
    (void)ctx;
    done(call, 0, "an operator approved the live resume (a data loss may have been deliberate)");
}

/* ---- the table ---- */

static const FsmState dl_states[N_STATES] = {
    [DETECTED] = {"detected", FSM_STATE_ACTIVE},
    [PLANNED] = {"planned", FSM_STATE_ACTIVE},
    [HALTED] = {"halted", FSM_STATE_ACTIVE},
    [EVIDENCE_KEPT] = {"evidence_kept", FSM_STATE_ACTIVE},
    [RESTORED] = {"base_backup_restored", FSM_STATE_ACTIVE},
    [STAGED] = {"wal_staged", FSM_STATE_ACTIVE},
    [STARTED] = {"recovery_started", FSM_STATE_ACTIVE},
    [PROMOTED] = {"recovered", FSM_STATE_ACTIVE},
    [VALIDATED] = {"validated", FSM_STATE_ACTIVE},
    [SWITCHED] = {"switched", FSM_STATE_ACTIVE},
    [RECONCILED] = {"reconciled", FSM_STATE_ACTIVE},
    [SHADOW] = {"trading_in_shadow", FSM_STATE_ACTIVE},
    [APPROVED] = {"resume_approved", FSM_STATE_ACTIVE},
    [LIVE] = {"live", FSM_STATE_ACTIVE},
    [WATCHED] = {"watch_passed", FSM_STATE_SUCCESS},
    [NOT_POSSIBLE] = {"not_possible", FSM_STATE_FAILURE},
    [STAYED_HALTED] = {"stayed_halted", FSM_STATE_FAILURE},
    [NOT_RECOVERED] = {"not_recovered", FSM_STATE_FAILURE},
    [NOT_VALIDATED] = {"not_validated", FSM_STATE_FAILURE},
    [NOT_SWITCHED] = {"not_switched", FSM_STATE_FAILURE},
    [NOT_RECONCILED] = {"not_reconciled", FSM_STATE_FAILURE},
    [WATCH_FAILED] = {"watch_failed", FSM_STATE_ACTIVE},
    [HALTED_AFTER_WATCH] = {"halted_after_watch", FSM_STATE_FAILURE},
};

static const FsmRow dl_rows[] = {
    /* from, to, step, sentence, step fn, probe, plan, cancel, timeout ms, attempts, idempotent, gate, on_failure */
    {DETECTED, PLANNED, "plan_recovery", "a verified base backup and continuous WAL reach the last good observation",
     pitr__step_plan_recovery, NULL, NULL, NULL, 60000, 1, true, FSM_GATE_NONE, NOT_POSSIBLE},
    {PLANNED, HALTED, "halt_trading", "trading is halted and the venue confirms it",
     scn_step_halt_trading, NULL, scn_plan_halt_trading, NULL, 30000, 10, true, FSM_GATE_NONE, FSM_NO_STATE},
    {HALTED, EVIDENCE_KEPT, "record_evidence", "the watched tables are recorded as the loss left them",
     step_record_evidence, NULL, plan_record_evidence, scn_cancel, 120000, 3, true, FSM_GATE_NONE, STAYED_HALTED},
    {EVIDENCE_KEPT, RESTORED, "restore_base_backup", "the base backup is unpacked into a fresh data directory",
     pitr__step_restore_base_backup, NULL, pitr__plan_restore_base_backup, scn_cancel, 6u * 3600u * 1000u, 2, true,
     FSM_GATE_APPROVAL, STAYED_HALTED},
    {RESTORED, STAGED, "stage_wal", "the WAL to the last good observation is staged and the recovery settings written",
     pitr__step_stage_wal, NULL, NULL, NULL, 3600u * 1000u, 5, true, FSM_GATE_NONE, STAYED_HALTED},
    {STAGED, STARTED, "start_recovery", "the recovered server starts on the side port",
     pitr__step_start_recovery, NULL, pitr__plan_start_recovery, scn_cancel, 120000, 2, true, FSM_GATE_NONE,
     NOT_RECOVERED},
    {STARTED, PROMOTED, "wait_for_promotion", "the recovered server replayed to the target and was promoted",
     pitr__step_wait_for_promotion, NULL, NULL, scn_cancel, 7u * 3600u * 1000u, 1, true, FSM_GATE_NONE, NOT_RECOVERED},
    {PROMOTED, VALIDATED, "validate_recovery", "the watched tables are back and the validation queries pass",
     step_validate_recovery, NULL, plan_validate_recovery, scn_cancel, 600000, 2, true, FSM_GATE_NONE, NOT_VALIDATED},
    {VALIDATED, SWITCHED, "switch_cluster", "the recovered cluster takes the live one's place (the old one kept)",
     pitr__step_switch_cluster, NULL, pitr__plan_switch_cluster, scn_cancel, 3600u * 1000u, 2, true, FSM_GATE_APPROVAL,
     NOT_SWITCHED},
    {SWITCHED, RECONCILED, "reconcile", "the recovered database matches the exchange (fills since the target replayed)",
     scn_step_reconcile, NULL, scn_plan_reconcile, NULL, 600000, 2, true, FSM_GATE_NONE, NOT_RECONCILED},
    {RECONCILED, SHADOW, "resume_shadow", "trading resumes in shadow mode (paper only)",
     step_resume_shadow, NULL, scn_plan_resume_shadow, NULL, 30000, 3, true, FSM_GATE_NONE, FSM_NO_STATE},
    {SHADOW, APPROVED, "approve_resume", "an operator approved the live resume (the loss may have been deliberate)",
     step_approve_resume, NULL, NULL, NULL, 30000, 1, true, FSM_GATE_OPERATOR, FSM_NO_STATE},
    {APPROVED, LIVE, "resume_live", "trading is live again",
     scn_step_resume_live, scn_probe_resume_live, scn_plan_resume_live, scn_cancel, 30000, 3, false, FSM_GATE_NONE,
     FSM_NO_STATE},
    {LIVE, WATCHED, "post_resume_watch", "the recovered database still matches the exchange after the resume",
     scn_step_post_resume_watch, NULL, scn_plan_post_resume_watch, scn_cancel, SCN_WATCH_TIMEOUT_MS, 1, true,
     FSM_GATE_NONE, WATCH_FAILED},
    {WATCH_FAILED, HALTED_AFTER_WATCH, "halt_after_watch", "trading is halted again: the post-resume watch failed",
     scn_step_halt_after_watch, NULL, scn_plan_halt_trading, NULL, 30000, 10, true, FSM_GATE_NONE, FSM_NO_STATE},
};

/* approve_resume: false (automatic mode): shadow, then live without the operator's gate. */
static const FsmBranch dl_branches[] = {
    {RECONCILED, "no_approval_needed", APPROVED},
};

static const FsmTable dl_table = {"data_loss", dl_states, N_STATES, dl_rows,
                                  (int)(sizeof(dl_rows) / sizeof(dl_rows[0])), dl_branches,
                                  (int)(sizeof(dl_branches) / sizeof(dl_branches[0]))};

/* Trading may resume only from this run's own resume steps, after the reconcile committed. */
static bool dl_may_resume(const ScnRun *run)
{
    int s = fsm_run_state(run->fsm);
    return run->resume_allowed && (s == RECONCILED || s == APPROVED);
}

/* RPO: the data goes back to the last good observation (or the operator's T). */
static int64_t dl_restore_point_ms(const ScnRun *run)
{
    return dl_target_ms(run);
}

/* The first entry of ctx[key].tables named `name`, or NULL. */
static const json_t *dl_ctx_table(const ScnRun *run, const char *key, const char *name)
{
    size_t i;
    const json_t *t;
    json_array_foreach(json_object_get(json_object_get(run->ctx, key), "tables"), i, t)
        if (name && !strcmp(dl_table_str(t, "name") ?: "", name))
            return t;
    return NULL;
}

/* Per watched table: the last good observation, what the loss left (evidence), what came back. */
static json_t *dl_report_tables(const ScnRun *run)
{
    json_t *out = json_array();
    size_t i;
    const json_t *t;
    json_array_foreach(dl_tables(run), i, t) {
        const char *name = dl_table_str(t, "name");
        const json_t *ev = dl_ctx_table(run, "evidence", name), *rec = dl_ctx_table(run, "recovered", name);
        const json_t *good = json_object_get(t, "last_good");
        json_t *e = json_pack("{s:s?,s:O?,s:O?,s:O?}", "name", name, "last_good", good, "last_good_ms",
                              json_object_get(t, "last_good_ms"), "floor", json_object_get(t, "floor"));
        if (!e)
            continue;
        int64_t after = -1;
        if (ev) {
            after = json_is_true(json_object_get(ev, "gone")) ? 0 : json_integer_value(json_object_get(ev, "value"));
            json_object_set_new(e, "after_loss", json_is_true(json_object_get(ev, "gone")) ? json_string("gone")
                                                                                            : json_integer(after));
        }
        if (ev && json_is_integer(good))
            json_object_set_new(e, "rows_lost", json_integer(json_integer_value(good) - after));
        if (rec) {
            json_object_set_new(e, "recovered_value", json_deep_copy(json_object_get(rec, "value")));
            if (ev)
                json_object_set_new(e, "rows_recovered",
                                    json_integer(json_integer_value(json_object_get(rec, "value")) - after));
        }
        json_array_append_new(out, e);
    }
    return out;
}

static void dl_report_extras(const ScnRun *run, json_t *rep)
{
    static const char *const keys[] = {"plan", "restore", "wal", "promotion", "validation", "switch"};
    char at[40];
    json_t *p = json_object();
    if (!p)
        return;
    clock_format_utc_ms(dl_target_ms(run), at, sizeof(at));
    json_object_set_new(p, "target_ms", json_integer(dl_target_ms(run)));
    json_object_set_new(p, "target", json_string(at));
    json_object_set(p, "source", json_object_get(json_object_get(json_object_get(run->ctx, "detection"), "params"),
                                                 "source") ?: json_null());
    json_object_set_new(p, "tables", dl_report_tables(run));
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const json_t *v = json_object_get(run->ctx, keys[i]);
        json_object_set_new(p, keys[i], v ? json_deep_copy(v) : json_null());
    }
    json_object_set_new(rep, "data_loss", p);
}

/* ---- drctl execute --scenario data_loss --before T: planned first, then the run ---- */

typedef struct DlRequest {
    Scenarios *s;
    CtlCall *call;
    int64_t target_ms;
    FsmMode mode;
    char reason[600];
} DlRequest;

/* The watched tables as the detector knows them, without floors: the operator chose T, and what
 * the tables held then was not observed (the run records what comes back). */
static json_t *dl_operator_tables(const Scenarios *s)
{
    json_t *a = s->caps.detector ? detector_watched_tables_json(s->caps.detector) : json_array();
    size_t i;
    json_t *t;
    json_array_foreach(a, i, t) {
        json_object_del(t, "floor");
        json_object_del(t, "loss");
        json_object_del(t, "verdict");
    }
    return a;
}

static void dl_request_planned(int status, json_t *plan, const char *err, void *data)
{
    DlRequest *q = data;
    char id[96], why[512] = "";
    if (status < 0 || q->s->closing) {
        control_reply_error(q->call, status < 0 ? status : DR_ECANCELED, "%s",
                            status < 0 ? err : "the daemon is stopping");
    } else if (!json_is_true(json_object_get(plan, "ok"))) {
        control_reply_error(q->call, DR_ESTATE, "a recovery to before the loss is not possible: %s (no run started, "
                            "nothing was touched)", json_string_value(json_object_get(plan, "why")));
    } else {
        json_t *params = json_pack("{s:I,s:s,s:o}", "target_ms", (json_int_t)q->target_ms, "source", "operator",
                                   "tables", dl_operator_tables(q->s));
        int r = scn_trigger_params(q->s, "data_loss", q->reason, clock_wall_ms(), q->mode, params, NULL, id, sizeof(id),
                                   why, sizeof(why));
        json_decref(params);
        if (r < 0)
            control_reply_error(q->call, r == -EBUSY ? DR_EBUSY : r, "%s", why);
        else
            control_reply_ok(q->call, json_pack("{s:s,s:s,s:s,s:O}", "run", id, "scenario", "data_loss", "mode",
                                                fsm_mode_name(q->mode), "plan", plan));
    }
    json_decref(plan);
    free(q);
}

static void dl_execute(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    const json_t *t = json_object_get(args, "before_ms");
    const char *reason = json_string_value(json_object_get(args, "reason"));
    const ConfigScenario *sc = config_scenario(s->core->cfg, "data_loss");
    char msg[300], buf[200];
    if (!json_is_integer(t) || json_integer_value(t) <= 0) {
        control_reply_error(call, DR_EBADARG, "data_loss needs --before T: the time the data was still whole (the "
                            "detector starts it by itself with its last good observation)");
        return;
    }
    const char *why = sc ? pitr__unconfigured(sc->data, &s->caps, json_integer_value(t), "data_loss", buf, sizeof(buf))
                         : "no configuration";
    if (why[0]) {
        control_reply_error(call, DR_ECONFIG, "%s: no run started (drctl execute --scenario data_loss --dry-run plans "
                            "one)", why);
        return;
    }
    if (s->active || s->loading) {
        control_reply_error(call, DR_EBUSY, "%s",
                            s->active ? "a recovery run is already active" : "unfinished runs are still being loaded");
        return;
    }
    DlRequest *q = calloc(1, sizeof(*q));
    if (!q) {
        control_reply_error(call, -ENOMEM, "out of memory");
        return;
    }
    const PeerCred *pc = control_call_peer(call);
    q->s = s;
    q->call = call;
    q->target_ms = json_integer_value(t);
    q->mode = json_is_true(json_object_get(args, "manual")) || sc->manual ? FSM_MODE_MANUAL : FSM_MODE_AUTOMATIC;
    snprintf(q->reason, sizeof(q->reason), "operator request (uid %ld): data loss, recover to before %lld%s%s",
             pc ? (long)pc->uid : -1L, (long long)q->target_ms, reason ? ": " : "", reason ? reason : "");
    int r = wal_plan(s->caps.wal, q->target_ms, dl_request_planned, q, msg, sizeof(msg));
    if (r < 0) {
        control_reply_error(call, r, "%s", msg);
        free(q);
    }
}

/* A drill (drill_pitr.c) validates the scratch cluster with the scenario's own queries (and counts
 * the detector's watched tables there). */
static void dl_drill_settings(const ConfigScenario *sc, const ConfigBackup *b, ScenarioDrillSettings *ret)
{
    const DataLossConfig *c = sc->data;
    (void)b;
    memset(ret, 0, sizeof(*ret));
    if (!c)
        return;
    ret->validation_queries = c->pitr.validation_queries;
    ret->n_validation_queries = c->pitr.n_validation_queries;
    ret->restore_timeout_ms = c->pitr.start_timeout_ms;
}

const ScenarioDef scenario_data_loss = {
    .name = "data_loss",
    .short_name = "loss",
    .summary = "rows gone from a watched table: halt, keep the evidence, recover to the last good observation, "
               "switch it in, reconcile, resume after an operator's approval",
    .table = &dl_table,
    .handles = (const char *const[]){INCIDENT_DATA_LOSS, NULL},
    .live_step = "resume_live",
    .ctx_size = sizeof(DataLossRun),
    .ctx_init = pitr__ctx_init,
    .may_resume = dl_may_resume,
    .restore_point_ms = dl_restore_point_ms,
    .report_extras = dl_report_extras,
    .config = &data_loss_config_section,
    .execute = dl_execute,
    .drill_settings = dl_drill_settings,
};
