/*
 * database_corruption: the scenario, as one static table, its definition and its own steps.
 *
 * Owns the runbook "halt trading, keep the damaged database as evidence, restore the newest
 * verified backup into a fresh database, validate it, switch the platform to it, reconcile with the
 * exchange, resume in shadow, then live, then watch (reconcile again shortly after the resume)",
 * and its failure branches "put the original back, stay halted" and "halt again when the watch
 * fails". Every step is asynchronous and safe to run again: each first inspects the catalog of
 * databases (does the original, the damaged copy, the restored copy exist, and is the restore
 * marked complete?) and does only what is left. The probes answer the same question after a crash.
 *
 * Database names for run tag T: the protected database X, the evidence X_damaged_T (connections
 * refused, never dropped), the restore X_restore_T (marked complete with a COMMENT once pg_restore
 * and the copy finished; renamed to X by the switch).
 *
 * The shared steps (halt, select backup, reconcile, resume) are in daemon/scenario/steps/. This
 * file holds the table, the definition, the step plumbing (one invocation, its SQL, the catalog
 * inspection) and validate_restore; database_corruption_db.c holds the steps that change
 * databases (preserve evidence, restore, switch, put back).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cap/backup/backup.h"
#include "child.h"
#include "core/core.h"
#include "err.h"
#include "log.h"
#include "pgconn.h"
#include "scenario/database_corruption_internal.h"
#include "scenario/scn_internal.h"
#include "scenario/steps/steps.h"
#include "cap/venue/venue.h"

enum {
    DETECTED,
    HALTED,
    PRESERVED,
    BACKUP_SELECTED,
    RESTORED,
    VALIDATED,
    SWITCHED,
    RECONCILED,
    SHADOW,
    LIVE,
    WATCHED,
    RESTORE_FAILED,
    STAYED_HALTED,
    NOT_RECONCILED,
    WATCH_FAILED,
    HALTED_AFTER_WATCH,
    HANDED_TO_PITR,
    N_STATES
};

static void scn_on_inspected(ScnStep *st, int status, const PGresult *res, const char *errmsg);

/* Which of X, X_damaged_T, X_restore_T exist, and is the restore marked complete? Then then(). */
void scn_inspect(ScnStep *st, ScnSqlNext then)
{
    const char *p[4] = {st->run->database, corruption_run(st->run)->damaged, corruption_run(st->run)->restored, corruption_run(st->run)->standby};
    st->then = then;
    scn_sql(st, NULL,
            "SELECT (SELECT count(*) FROM pg_database WHERE datname = $1),"
            " (SELECT count(*) FROM pg_database WHERE datname = $2),"
            " (SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = $3),"
            " (SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = $4)",
            4, p, scn_on_inspected);
}

static void scn_on_inspected(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    ScnSqlNext then = st->then;
    char marker[256];

    if (status == 0 && res && PQntuples(res) == 1) {
        st->db.orig = atoi(PQgetvalue(res, 0, 0)) > 0;
        st->db.damaged = atoi(PQgetvalue(res, 0, 1)) > 0;
        st->db.restored = !PQgetisnull(res, 0, 2);
        snprintf(marker, sizeof(marker), SCN_MARKER "%s", st->run->id);
        st->db.restored_complete = st->db.restored && strncmp(PQgetvalue(res, 0, 2), marker, strlen(marker)) == 0;
        st->db.standby = !PQgetisnull(res, 0, 3);
        snprintf(st->db.standby_comment, sizeof(st->db.standby_comment), "%s", PQgetvalue(res, 0, 3));
    }
    then(st, status, res, errmsg);
}

/* ---- validate_restore ---- */

/* ---- the table ---- */

static const FsmState corruption_states[N_STATES] = {
    [DETECTED] = {"detected", FSM_STATE_ACTIVE},
    [HALTED] = {"halted", FSM_STATE_ACTIVE},
    [PRESERVED] = {"evidence_preserved", FSM_STATE_ACTIVE},
    [BACKUP_SELECTED] = {"backup_selected", FSM_STATE_ACTIVE},
    [RESTORED] = {"restored", FSM_STATE_ACTIVE},
    [VALIDATED] = {"validated", FSM_STATE_ACTIVE},
    [SWITCHED] = {"switched", FSM_STATE_ACTIVE},
    [RECONCILED] = {"reconciled", FSM_STATE_ACTIVE},
    [SHADOW] = {"trading_in_shadow", FSM_STATE_ACTIVE},
    [LIVE] = {"live", FSM_STATE_ACTIVE},
    [WATCHED] = {"watch_passed", FSM_STATE_SUCCESS},
    [RESTORE_FAILED] = {"restore_failed", FSM_STATE_ACTIVE},
    [STAYED_HALTED] = {"stayed_halted", FSM_STATE_FAILURE},
    [NOT_RECONCILED] = {"not_reconciled", FSM_STATE_FAILURE},
    [WATCH_FAILED] = {"watch_failed", FSM_STATE_ACTIVE},
    [HALTED_AFTER_WATCH] = {"halted_after_watch", FSM_STATE_FAILURE},
    [HANDED_TO_PITR] = {"handed_to_point_in_time", FSM_STATE_HANDOFF},
};

static const FsmRow corruption_rows[] = {
    /* from, to, step, sentence, step fn, probe, plan, cancel, timeout ms, attempts, idempotent, gate, on_failure */
    {DETECTED, HALTED, "halt_trading", "trading is halted and the venue confirms it",
     scn_step_halt_trading, NULL, scn_plan_halt_trading, NULL, 30000, 10, true, FSM_GATE_NONE, FSM_NO_STATE},
    {HALTED, PRESERVED, "preserve_evidence", "the damaged database is kept under a new name, never dropped",
     scn_step_preserve_evidence, scn_probe_preserve_evidence, scn_plan_preserve_evidence, scn_cancel, 60000, 3, true,
     FSM_GATE_NONE, RESTORE_FAILED},
    {PRESERVED, BACKUP_SELECTED, "select_backup", "the newest verified backup is chosen as the restore point",
     scn_step_select_backup, NULL, scn_plan_select_backup, NULL, 10000, 3, true, FSM_GATE_NONE, RESTORE_FAILED},
    {BACKUP_SELECTED, RESTORED, "restore_database", "the backup is restored into a fresh database",
     scn_step_restore_database, scn_probe_restore_database, scn_plan_restore_database, scn_cancel, 6u * 3600u * 1000u, 1, false,
     FSM_GATE_APPROVAL, RESTORE_FAILED},
    {RESTORED, VALIDATED, "validate_restore", "the restored database answers the validation queries",
     scn_step_validate_restore, NULL, scn_plan_validate_restore, scn_cancel, 600000, 2, true, FSM_GATE_NONE, RESTORE_FAILED},
    {VALIDATED, SWITCHED, "switch_database", "the platform's database is now the restored one",
     scn_step_switch_database, scn_probe_switch_database, scn_plan_switch_database, scn_cancel, 120000, 3, true,
     FSM_GATE_APPROVAL, RESTORE_FAILED},
    {SWITCHED, RECONCILED, "reconcile", "the database matches the exchange's positions and fills",
     scn_step_reconcile, NULL, scn_plan_reconcile, NULL, 600000, 2, true, FSM_GATE_NONE, NOT_RECONCILED},
    {RECONCILED, SHADOW, "resume_shadow", "trading resumes in shadow mode (paper only)",
     scn_step_resume_shadow, NULL, scn_plan_resume_shadow, NULL, 30000, 3, true, FSM_GATE_NONE, FSM_NO_STATE},
    {SHADOW, LIVE, "resume_live", "trading is live again",
     scn_step_resume_live, scn_probe_resume_live, scn_plan_resume_live, scn_cancel, 30000, 3, false, FSM_GATE_APPROVAL,
     FSM_NO_STATE},
    {LIVE, WATCHED, "post_resume_watch", "the database still matches the exchange after the resume",
     scn_step_post_resume_watch, NULL, scn_plan_post_resume_watch, scn_cancel, SCN_WATCH_TIMEOUT_MS, 1, true,
     FSM_GATE_NONE, WATCH_FAILED},
    {RESTORE_FAILED, STAYED_HALTED, "put_back_original", "the original database is back in place; trading stays halted",
     scn_step_put_back_original, NULL, NULL, scn_cancel, 60000, 3, true, FSM_GATE_NONE, FSM_NO_STATE},
    {WATCH_FAILED, HALTED_AFTER_WATCH, "halt_after_watch", "trading is halted again: the post-resume watch failed",
     scn_step_halt_after_watch, NULL, scn_plan_halt_trading, NULL, 30000, 10, true, FSM_GATE_NONE, FSM_NO_STATE},
};

/* preserve_evidence found no server at all (with a WAL archive): the cluster is recovered whole. */
static const FsmBranch corruption_branches[] = {
    {HALTED, "cluster_down", HANDED_TO_PITR},
};

static const FsmTable corruption_table = {"database_corruption", corruption_states, N_STATES, corruption_rows,
                                          (int)(sizeof(corruption_rows) / sizeof(corruption_rows[0])),
                                          corruption_branches,
                                          (int)(sizeof(corruption_branches) / sizeof(corruption_branches[0]))};

static const ScenarioHandoff corruption_handoffs[] = {
    {"handed_to_point_in_time", SCENARIO_INCIDENT_CLUSTER_DAMAGED},
    {NULL, NULL},
};

/* Trading may resume only from this run's own resume steps, after the reconcile committed. */
static bool corruption_may_resume(const ScnRun *run)
{
    return scn_may_resume_in(run, RECONCILED, SHADOW);
}

static void corruption_report_extras(const ScnRun *run, json_t *rep)
{
    const json_t *backup = json_object_get(run->ctx, "backup");
    json_object_set_new(rep, "backup", backup ? json_deep_copy(backup) : json_null());
    json_object_set_new(rep, "databases", json_pack("{s:s,s:s,s:s}", "original", run->database, "damaged",
                                                    corruption_run(run)->damaged, "restored", corruption_run(run)->restored));
    const json_t *v = json_object_get(run->ctx, "validation");
    json_object_set_new(rep, "validation", v ? json_deep_copy(v) : json_null());
}

/* Name the run's databases: the evidence, the restore and the standby of the protected one. */
static int corruption_ctx_init(ScnRun *run, char *err, size_t errlen)
{
    CorruptionRun *c = corruption_run(run);
    (void)err;
    (void)errlen;
    snprintf(c->damaged, sizeof(c->damaged), "%s_damaged_%s", run->database, run->tag);
    snprintf(c->restored, sizeof(c->restored), "%s_restore_%s", run->database, run->tag);
    standby_dbname(run->database, c->standby, sizeof(c->standby));
    return 0;
}

/* From the moment preserve_evidence starts (it refuses connections to X, ends its sessions and
 * renames it) until switch_database or put_back_original committed, X is away: a probe of X
 * failing with "does not exist", "not currently accepting connections" or a terminated session is
 * this run's doing. Anything else (the server refusing connections, a timeout) is not. */
static unsigned corruption_disturbs(const ScnRun *run, const char *running_step, char *what, size_t n)
{
    int s = fsm_run_state(run->fsm);
    bool away = s == PRESERVED || s == BACKUP_SELECTED || s == RESTORED || s == VALIDATED || s == RESTORE_FAILED ||
                (s == HALTED && running_step && !strcmp(running_step, "preserve_evidence"));
    if (!away)
        return 0;
    snprintf(what, n, "run %s keeps '%s' as '%s' and restores a backup: '%s' refuses connections, then does not exist, "
             "until switch_database (or put_back_original) commits",
             run->id, run->database, corruption_run(run)->damaged, run->database);
    return LEASE_DB_MISSING | LEASE_DB_REFUSING | LEASE_DB_TERMINATED;
}

/* A drill restores and validates as the real run does: the same queries, jobs and timeout. */
static void corruption_drill_settings(const ConfigScenario *sc, const ConfigBackup *b, ScenarioDrillSettings *ret)
{
    const CorruptionConfig *c = sc->data;
    bool own = c && c->n_validation_queries > 0;
    ret->validation_queries = own ? c->validation_queries : b->validation_queries;
    ret->n_validation_queries = own ? c->n_validation_queries : b->n_validation_queries;
    ret->restore_jobs = c ? (unsigned)c->restore_jobs : 0;
    ret->restore_timeout_ms = c ? c->restore_timeout_ms : 0;
    ret->restore_maintenance_work_mem_kb = c ? c->restore_maintenance_work_mem / 1024 : 0;
}

static const char *const corruption_handles[] = {INCIDENT_CORRUPTION, NULL};

const ScenarioDef scenario_database_corruption = {
    .name = "database_corruption",
    .short_name = "corruption",
    .summary = "restore the newest verified backup into a fresh database, reconcile, resume",
    .table = &corruption_table,
    .handles = corruption_handles,
    .handoffs = corruption_handoffs,
    .live_step = "resume_live",
    .ctx_size = sizeof(CorruptionRun),
    .ctx_init = corruption_ctx_init,
    .may_resume = corruption_may_resume,
    .restore_point_ms = scn_backup_restore_point_ms, /* RPO: back to the chosen backup's start */
    .report_extras = corruption_report_extras,
    .config = &corruption_config_section,
    .configure = corruption_configure,
    .disturbs = corruption_disturbs,
    .drill_settings = corruption_drill_settings,
};
