/*
 * drill: one drill, start to report (see drill.h and docs/drills.md).
 *
 * A drill is a short sequence on the loop, one stage table per scenario (drill_kind): rows of
 * {name, step, RTO key, cleanup}, every step measured. database_corruption's: select_backup (the
 * catalog's newest verified backup, as the real run's select_backup), restore (backup_restore_into
 * into <db>_drill_<tag> with the scenario's restore settings, at normal priority as the real
 * restore), validate (each validation query on its own read-only connection to the scratch
 * database), reconcile (reconcile_start_compare against the scratch database, read-only: nothing
 * replayed, nothing noted on the venue), drop_scratch (DROP DATABASE ... WITH (FORCE)).
 * point_in_time's, data_loss's and security_breach's (drill_pitr.c): a scratch cluster recovered
 * on its own port with the scenario's own section and target rule, validated, compared, stopped
 * and removed. The scenarios without a drill are answered with why and what to run instead. Then the report. A failed or aborted step skips the rest but
 * never the cleanup rows. The RTO estimate is the sum of the rows with an RTO key (drill_rules.c)
 * plus the halt_trading step of the scenario's newest incident report (read first, on the thread
 * pool) when there is one; the steps that touch the live side cannot be measured.
 */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "atomicfile.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "pgsql.h"
#include "scenario/drill_internal.h"
#include "scenario/drill_rules.h"
#include "scenario/scenario.h"

static void drill_next(DrillRun *run);

static const char *drill_stage_name(const DrillRun *run)
{
    return run->stage < run->n_stages ? run->stages[run->stage].name : "report";
}

void drill__step_begin(DrillRun *run)
{
    run->t0 = uv_now(run->ds->core->loop);
    run->t0_wall = clock_wall_ms();
}

void drill__step_end(DrillRun *run, const char *status, const char *fmt, ...)
{
    char detail[700], at[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    int64_t d = (int64_t)(uv_now(run->ds->core->loop) - run->t0);
    const char *name = drill_stage_name(run);
    if (run->stage < run->n_stages)
        run->dur[run->stage] = d;
    clock_format_utc_ms(run->t0_wall, at, sizeof(at));
    json_array_append_new(run->steps, json_pack("{s:s,s:s,s:s,s:I,s:s}", "step", name, "status", status, "started_at",
                                                at, "duration_ms", (json_int_t)d, "detail", detail));
    LogFields lf = {run->id, run->def->name, name};
    log_emit(!strcmp(status, "FAIL") ? LOG_WARNING : LOG_INFO, "drill", &lf, "drill step %s %s: %s", name, status,
             detail);
    if (!strcmp(status, "FAIL") && !run->failed && !run->aborted) {
        run->failed = true;
        snprintf(run->failure, sizeof(run->failure), "%s: %.580s", name, detail);
    }
}

/* The next row; after a failed or aborted step only the cleanup rows, if there may be something
 * to undo. */
void drill__advance(DrillRun *run)
{
    run->stage++;
    if (run->failed || run->aborted) {
        while (run->stage < run->n_stages && (!run->stages[run->stage].cleanup || !run->scratch_maybe))
            run->stage++;
    }
    drill_next(run);
}

/* ---- the halt's time, from the scenario's newest incident report (thread pool) ---- */

/* Incident reports are <run id>.json, the id "<UTC time>-<short name>-<tag>": the newest of the
 * scenario sorts last. Its timeline's halt_trading (outcome ok) is how long a real halt took. */
static void drill_halt_work(uv_work_t *req)
{
    DrillRun *run = req->data;
    char want[80], best[256] = "", path[4500], *text = NULL;
    size_t len;
    struct dirent *de;
    run->halt_ms = -1;
    snprintf(want, sizeof(want), "-%s-", run->def->short_name);
    DIR *dh = opendir(run->dir);
    if (!dh)
        return;
    while ((de = readdir(dh))) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || !strncmp(de->d_name, "drill-", 6) || l < 6 || l >= sizeof(best) ||
            strcmp(de->d_name + l - 5, ".json") != 0 || !strstr(de->d_name, want))
            continue;
        if (strcmp(de->d_name, best) > 0)
            snprintf(best, sizeof(best), "%s", de->d_name);
    }
    closedir(dh);
    if (!best[0])
        return;
    snprintf(path, sizeof(path), "%s/%s", run->dir, best);
    if (atomicfile_read_all(path, 64u << 20, &text, &len) < 0)
        return;
    json_t *rep = json_loadb(text, len, 0, NULL);
    free(text);
    size_t i;
    json_t *st;
    json_array_foreach(json_object_get(rep, "timeline"), i, st) {
        const char *name = json_string_value(json_object_get(st, "step"));
        const char *outcome = json_string_value(json_object_get(st, "outcome"));
        if (name && outcome && !strcmp(name, "halt_trading") && !strcmp(outcome, "ok") &&
            json_is_integer(json_object_get(st, "end_ms"))) {
            run->halt_ms = json_integer_value(json_object_get(st, "end_ms")) -
                           json_integer_value(json_object_get(st, "start_ms"));
            snprintf(run->halt_from, sizeof(run->halt_from), "%.*s", (int)(strlen(best) - 5), best);
            if (run->halt_ms < 0)
                run->halt_ms = -1;
            break;
        }
    }
    json_decref(rep);
}

static void drill_halt_done(uv_work_t *req, int status)
{
    DrillRun *run = req->data;
    if (status < 0)
        run->halt_ms = -1;
    if (run->aborted) /* before any step: nothing to undo */
        run->stage = run->n_stages;
    drill_next(run);
}

/* ---- select_backup ---- */

static void drill_select(DrillRun *run)
{
    bool scanned = false;
    drill__step_begin(run);
    json_t *m = backups_newest_verified(run->ds->backups, &scanned);
    if (!run->ds->core->cfg->backup.enabled || !m) {
        drill__step_end(run, "FAIL", "%s", !run->ds->core->cfg->backup.enabled ? "backups are not configured (no 'backup' section)"
                                          : scanned ? "no verified backup in the catalog"
                                                    : "the backup catalog is not loaded yet");
        json_decref(m);
        drill__advance(run);
        return;
    }
    run->backup = json_pack("{s:s?,s:s?,s:I,s:s?,s:I}", "name", json_string_value(json_object_get(m, "file")),
                            "started_at", json_string_value(json_object_get(m, "started_at")), "started_ms",
                            (json_int_t)backup_manifest_started(m) * 1000, "sha256",
                            json_string_value(json_object_get(m, "sha256")), "db_size_bytes",
                            json_integer_value(json_object_get(m, "db_size_bytes")));
    json_decref(m);
    run->since_ms = json_integer_value(json_object_get(run->backup, "started_ms"));
    drill__step_end(run, "PASS", "backup '%s' taken at %s", json_string_value(json_object_get(run->backup, "name")),
                   json_string_value(json_object_get(run->backup, "started_at")));
    drill__advance(run);
}

/* ---- restore ---- */

static void drill_on_restored(const BackupRestoreResult *res, void *data)
{
    DrillRun *run = data;
    run->restore = NULL;
    if (res->status == 0)
        drill__step_end(run, "PASS", "backup '%s' restored into '%s' in %.1fs",
                       json_string_value(json_object_get(run->backup, "name")), run->scratch,
                       (double)res->duration_ms / 1000.0);
    else if (res->status == DR_ECANCELED)
        drill__step_end(run, "ABORTED", "the restore was stopped: %s", run->abort_reason);
    else
        drill__step_end(run, "FAIL", "restoring backup '%s' into '%s' failed (%s): %s%s%s",
                       json_string_value(json_object_get(run->backup, "name")), run->scratch, err_name(res->status),
                       res->error && res->error[0] ? res->error : err_str(res->status),
                       res->drop_error && res->drop_error[0] ? "; the partial database could not be dropped: " : "",
                       res->drop_error ? res->drop_error : "");
    drill__advance(run);
}

static void drill_restore(DrillRun *run)
{
    char spool[160];
    drill__step_begin(run);
    snprintf(spool, sizeof(spool), ".restore-%s.dump", run->id);
    BackupRestoreOpts o = {.jobs = run->restore_jobs,
                           .spool_name = spool,
                           .timeout_ms = run->restore_timeout_ms,
                           .maintenance_work_mem_kb = run->restore_maintenance_work_mem_kb,
                           .replace = true}; /* a leftover of an interrupted drill of the same tag */
    run->scratch_maybe = true;
    int r = backup_restore_into(run->ds->backups, json_string_value(json_object_get(run->backup, "name")),
                                json_string_value(json_object_get(run->backup, "sha256")), run->admin_conninfo,
                                run->scratch, &o, drill_on_restored, run, &run->restore);
    if (r < 0) {
        run->scratch_maybe = false;
        drill__step_end(run, "FAIL", "cannot start the restore: %s", err_str(r));
        drill__advance(run);
    }
}

/* ---- validate ---- */

static void drill_next_query(DrillRun *run);

static void drill_on_query(const PgSqlSeqResult *r, void *data)
{
    DrillRun *run = data;
    const char *q = run->n_queries ? run->queries[run->q_i] : "SELECT 1";
    run->seq = NULL;
    if (r->status == DR_ECANCELED) {
        drill__step_end(run, "ABORTED", "stopped at '%s': %s", q, run->abort_reason);
        drill__advance(run);
        return;
    }
    bool is_false = r->status == 0 && r->res && PQntuples(r->res) > 0 && PQnfields(r->res) > 0 &&
                    !strcmp(PQgetvalue(r->res, 0, 0), "f");
    const char *first = r->status == 0 && r->res && PQntuples(r->res) > 0 && PQnfields(r->res) > 0
                            ? PQgetvalue(r->res, 0, 0) : NULL;
    json_array_append_new(run->validation, json_pack("{s:s,s:b,s:s?,s:s?}", "query", q, "ok", r->status == 0 && !is_false,
                                                     "first_value", first, "error",
                                                     r->status ? (r->errmsg ? r->errmsg : err_str(r->status)) : NULL));
    if (r->status != 0 || is_false) {
        drill__step_end(run, "FAIL", "'%s' in '%s': %s", q, run->scratch,
                       is_false ? "its first value is false" : r->errmsg ? r->errmsg : err_str(r->status));
        drill__advance(run);
        return;
    }
    run->q_i++;
    if (run->q_i >= (run->n_queries ? run->n_queries : 1)) {
        drill__step_end(run, "PASS", "%zu validation quer%s answered in '%s'", run->q_i, run->q_i == 1 ? "y" : "ies",
                       run->scratch);
        drill__advance(run);
        return;
    }
    drill_next_query(run);
}

static void drill_next_query(DrillRun *run)
{
    const char *q = run->n_queries ? run->queries[run->q_i] : "SELECT 1";
    PgConnOptions opts = {.connect_timeout_ms = 10000, .query_timeout_ms = 600000};
    int r = pgsql_seq_start(run->ds->core->loop, run->scratch_ro, &opts, &q, 1, drill_on_query, run, &run->seq);
    if (r < 0) {
        drill__step_end(run, "FAIL", "cannot run '%s': %s", q, err_str(r));
        drill__advance(run);
    }
}

void drill__validate(DrillRun *run)
{
    drill__step_begin(run);
    run->q_i = 0;
    drill_next_query(run);
}

/* ---- reconcile (compare only) ---- */

static void drill_on_reconciled(int result, json_t *report, void *data)
{
    DrillRun *run = data;
    size_t i;
    json_t *c;
    char failed[300] = "";
    size_t len = 0;
    run->reconciling = false;
    run->reconcile = report;
    if (result == DR_ECANCELED) {
        drill__step_end(run, "ABORTED", "stopped: %s", run->aborted ? run->abort_reason : "the daemon is stopping");
        drill__advance(run);
        return;
    }
    if (result != 0 && result != DR_ESTATE) {
        const json_t *e = json_object_get(report, "error");
        drill__step_end(run, "FAIL", "could not compare with the exchange: %s",
                       json_string_value(json_object_get(e, "message")) ? json_string_value(json_object_get(e, "message"))
                                                                        : err_str(result));
        drill__advance(run);
        return;
    }
    /* Positions and missing fills are what the real run's replay repairs: counted, not failed.
     * Duplicates, stale orders and referential violations survive a replay: they fail the drill. */
    json_int_t missing = 0, mismatches = 0;
    json_array_foreach(json_object_get(report, "checks"), i, c) {
        const char *name = json_string_value(json_object_get(c, "name"));
        const json_t *det = json_object_get(c, "detail");
        if (!name)
            continue;
        if (!strcmp(name, "fills_complete"))
            missing = json_integer_value(json_object_get(det, "missing_before"));
        else if (!strcmp(name, "positions_match"))
            mismatches = json_integer_value(json_object_get(det, "mismatches_before"));
        else if (strcmp(json_string_value(json_object_get(c, "status")), "PASS") != 0 && len < sizeof(failed))
            len += (size_t)snprintf(failed + len, sizeof(failed) - len, "%s%s", len ? ", " : "", name);
    }
    if (len)
        drill__step_end(run, "FAIL", "the restore compared with the exchange fails what a replay cannot repair: %s "
                       "(drctl drill-report for the discrepancies)", failed);
    else
        drill__step_end(run, "PASS", "compared with the exchange, read-only: a real run would replay %lld fill%s "
                       "(%lld position%s differ before it); nothing was replayed",
                       (long long)missing, missing == 1 ? "" : "s", (long long)mismatches, mismatches == 1 ? "" : "s");
    drill__advance(run);
}

void drill__reconcile(DrillRun *run)
{
    drill__step_begin(run);
    if (!run->venue) {
        drill__step_end(run, "SKIPPED", "no venue: section: nothing to compare the restore with");
        drill__advance(run);
        return;
    }
    int r = reconcile_start_compare(run->ds->reconcile, run->scratch_ro, run->since_ms, run->id, drill_on_reconciled, run);
    if (r < 0) {
        drill__step_end(run, "FAIL", "cannot start the compare-only reconcile: %s",
                       r == DR_EBUSY ? "a reconcile is running already" : err_str(r));
        drill__advance(run);
        return;
    }
    run->reconciling = true;
}

/* ---- drop_scratch ---- */

static void drill_on_dropped(const PgSqlSeqResult *r, void *data)
{
    DrillRun *run = data;
    run->seq = NULL;
    if (r->status == 0) {
        run->scratch_dropped = true;
        drill__step_end(run, "PASS", "'%s' dropped", run->scratch);
    } else {
        drill__step_end(run, "FAIL", "'%s' could not be dropped (drop it by hand): %s", run->scratch,
                       r->errmsg ? r->errmsg : err_str(r->status));
    }
    lease_expect_end(run->ds->core->lease, run->scratch, NULL);
    drill__advance(run);
}

static void drill_drop(DrillRun *run)
{
    char q[80], stmt[200];
    drill__step_begin(run);
    pgsql_quote_ident(run->scratch, q, sizeof(q));
    snprintf(stmt, sizeof(stmt), "DROP DATABASE IF EXISTS %s WITH (FORCE)", q);
    const char *s = stmt;
    PgConnOptions opts = {.connect_timeout_ms = 5000, .query_timeout_ms = 60000};
    int r = pgsql_seq_start(run->ds->core->loop, run->admin_conninfo, &opts, &s, 1, drill_on_dropped, run, &run->seq);
    if (r < 0) {
        drill__step_end(run, "FAIL", "cannot drop '%s': %s", run->scratch, err_str(r));
        lease_expect_end(run->ds->core->lease, run->scratch, NULL);
        drill__advance(run);
    }
}

/* ---- the report ---- */

static void drill_free(DrillRun *run)
{
    free(run->admin_conninfo);
    free(run->scratch_ro);
    config_list_free(run->queries, run->n_queries);
    drill__pitr_free(run);
    json_decref(run->steps);
    json_decref(run->backup);
    json_decref(run->validation);
    json_decref(run->reconcile);
    json_decref(run->report);
    free(run->text);
    free(run);
}

static json_t *drill_build_report(DrillRun *run)
{
    char started[40], finished[40];
    int64_t now = clock_wall_ms();
    int64_t rto_dur[DRILL_MAX_STAGES];
    size_t n_rto = 0;
    json_t *rto_o = json_object();
    for (size_t i = 0; i < run->n_stages; i++) {
        if (!run->stages[i].rto_key)
            continue;
        rto_dur[n_rto++] = run->dur[i];
        json_object_set_new(rto_o, run->stages[i].rto_key, json_integer(run->dur[i]));
    }
    int64_t rto = drill_rto_estimate(rto_dur, n_rto, run->halt_ms);
    bool measured = !run->failed && !run->aborted;
    const char *outcome = run->aborted ? "aborted" : run->failed ? "failed" : "passed";
    clock_format_utc_ms(run->started_ms, started, sizeof(started));
    clock_format_utc_ms(now, finished, sizeof(finished));
    json_object_set_new(rto_o, "estimate_ms", measured ? json_integer(rto) : json_null());
    json_object_set_new(rto_o, "target_ms", run->rto_target_ms ? json_integer((json_int_t)run->rto_target_ms) : json_null());
    json_object_set_new(rto_o, "met", measured ? json_boolean(drill_rto_met(rto, run->rto_target_ms)) : json_null());
    json_object_set_new(rto_o, "halt_ms", run->halt_ms >= 0 ? json_integer(run->halt_ms) : json_null());
    json_object_set_new(rto_o, "halt_from", run->halt_ms >= 0 ? json_string(run->halt_from) : json_null());
    const char *live_steps = run->pitr ? "switch_cluster" : "preserve_evidence and switch_database";
    char nm[300];
    snprintf(nm, sizeof(nm), "%s%s: a drill does not touch the live side (%s)",
             run->halt_ms >= 0 ? "" : "halt_trading (no incident report of the scenario has one), ", live_steps,
             run->pitr ? "the switch command: seconds" : "two renames: seconds");
    json_object_set_new(rto_o, "not_measured", json_string(nm));
    json_t *rep = json_pack("{s:s,s:s,s:s,s:s,s:s,s:I,s:s,s:I,s:I,s:s,s:b,s:O,s:o,s:s,s:s,s:b}", "kind", "drill", "id",
                            run->id, "scenario", run->def->name, "cluster", run->ds->core->cfg->cluster ? run->ds->core->cfg->cluster : "",
                            "started_at", started, "started_ms", (json_int_t)run->started_ms, "finished_at", finished,
                            "finished_ms", (json_int_t)now, "duration_ms", (json_int_t)(now - run->started_ms),
                            "outcome", outcome, "ok", !run->failed && !run->aborted, "steps", run->steps, "rto", rto_o,
                            "database", run->database, "scratch_database", run->scratch, "scratch_dropped",
                            run->scratch_dropped || !run->scratch_maybe);
    json_object_set_new(rep, "trigger", json_string(run->trigger));
    json_object_set_new(rep, "backup", run->backup ? json_incref(run->backup) : json_null());
    json_object_set_new(rep, "validation", json_incref(run->validation));
    json_object_set_new(rep, "reconcile", run->reconcile ? json_incref(run->reconcile) : json_null());
    json_object_set_new(rep, "failure", run->failed ? json_string(run->failure) : run->aborted ? json_string(run->abort_reason)
                                                                                                : json_null());
    if (run->pitr)
        drill__pitr_report(run, rep);
    json_object_set_new(rep, "live_side", json_string("untouched: trading not halted, the platform's mode and the "
                                                      "exchange not acted on, the live database not written"));
    if (run->never_run) /* the real run's steps that act on the live side: a drill never runs them */
        json_object_set_new(rep, "never_run", json_string(run->never_run));
    return rep;
}

static void drill_write_work(uv_work_t *req)
{
    DrillRun *run = req->data;
    if (mkdir(run->dir, 0750) < 0 && errno != EEXIST) {
        run->write_result = -errno;
        return;
    }
    run->write_result = atomicfile_write(run->path, run->text, strlen(run->text), 0640);
}

static void drill_write_done(uv_work_t *req, int status)
{
    DrillRun *run = req->data;
    Drills *ds = run->ds;
    LogFields lf = {run->id, run->def->name, NULL};
    if (status < 0 && run->write_result == 0)
        run->write_result = status;
    if (run->write_result < 0)
        events_emit_run(ds->core->events, SEV_ERROR, "drill.report", NULL, false, NULL, &lf,
                        "cannot write the drill report '%s': %s", run->path, err_str(run->write_result));
    else
        log_emit(LOG_NOTICE, "drill", &lf, "drill report written to '%s'", run->path);
    const char *outcome = json_string_value(json_object_get(run->report, "outcome"));
    char cond[128];
    snprintf(cond, sizeof(cond), "drill.failed:%s", run->def->name);
    if (run->failed)
        events_emit_run(ds->core->events, SEV_ERROR, "drill.failed", cond, false, run->report, &lf,
                        "drill of %s FAILED: %s (drctl drill-report %s)", run->def->name, run->failure, run->id);
    else if (run->aborted)
        events_emit_run(ds->core->events, SEV_WARNING, "drill.aborted", NULL, false, run->report, &lf,
                        "drill of %s aborted: %s", run->def->name, run->abort_reason);
    else
        events_emit_run(ds->core->events, SEV_INFO, "drill.passed", cond, true, run->report, &lf,
                        "drill of %s passed: RTO estimate %.1fs%s", run->def->name,
                        (double)json_integer_value(json_object_get(json_object_get(run->report, "rto"), "estimate_ms")) / 1000.0,
                        json_is_false(json_object_get(json_object_get(run->report, "rto"), "met")) ? ", ABOVE the target" : "");
    (void)outcome;
    drill__book_add(ds, drill__summary(run->report));
    if (run->waiter) {
        control_reply_ok(run->waiter, json_incref(run->report));
        run->waiter = NULL;
    }
    ds->run = NULL;
    drill_free(run);
    ds->pending--;
    drill__maybe_closed(ds);
}

static void drill_write(DrillRun *run)
{
    run->report = drill_build_report(run);
    run->text = run->report ? json_dumps(run->report, JSON_INDENT(2) | JSON_SORT_KEYS) : NULL;
    drill__path(run->ds, run->dir, sizeof(run->dir), NULL);
    drill__path(run->ds, run->path, sizeof(run->path), run->id);
    run->req.data = run;
    int r = run->text ? uv_queue_work(run->ds->core->loop, &run->req, drill_write_work, drill_write_done) : -ENOMEM;
    if (r < 0) {
        run->write_result = r;
        drill_write_done(&run->req, r);
    }
}

static void drill_next(DrillRun *run)
{
    if (run->stage < run->n_stages)
        run->stages[run->stage].run(run);
    else
        drill_write(run);
}

/* ---- the stage tables ---- */

/* database_corruption: the newest verified backup restored into a scratch database. */
static const DrillStageDef drill_corruption_stages[] = {
    /* name, run, rto key, cleanup */
    {"select_backup", drill_select, "select_ms", false},
    {"restore", drill_restore, "restore_ms", false},
    {"validate", drill__validate, "validate_ms", false},
    {"reconcile", drill__reconcile, "reconcile_ms", false},
    {"drop_scratch", drill_drop, NULL, true},
};

typedef struct DrillKind {
    const char *scenario;
    const DrillStageDef *stages;
    size_t n_stages;
    const char *target_option; /* the drctl option that sets its target ("timestamp"), NULL: none */
    bool exclusive;            /* the recovery stops just before the target (recovery_target_inclusive off) */
    bool watched;              /* the detector's watched tables are counted in its validation */
    const char *never_run;     /* the real run's steps a drill never runs (for the report), or NULL */
} DrillKind;

/* The scenario's stage table into ret; false: it has none. (A function, not a table of tables:
 * point_in_time's row count is another file's constant.) data_loss and security_breach restore
 * through point_in_time's steps in their real runs, so they drill on its scratch-cluster stages,
 * each with its own section, target rule and RTO/RPO targets. */
static bool drill_kind(const char *scenario, DrillKind *ret)
{
    if (!strcmp(scenario, "database_corruption"))
        *ret = (DrillKind){scenario, drill_corruption_stages,
                           sizeof(drill_corruption_stages) / sizeof(drill_corruption_stages[0]), NULL, false, false, NULL};
    else if (!strcmp(scenario, "point_in_time"))
        *ret = (DrillKind){scenario, drill__pitr_stages, drill__n_pitr_stages, "timestamp", false, false, NULL};
    else if (!strcmp(scenario, "data_loss")) /* --before T as its execute; default: the end of the archive */
        *ret = (DrillKind){scenario, drill__pitr_stages, drill__n_pitr_stages, "before", false, true,
                           "halt_trading, record_evidence and switch_cluster"};
    else if (!strcmp(scenario, "security_breach")) /* to just before --since T; default: the end of the archive */
        *ret = (DrillKind){scenario, drill__pitr_stages, drill__n_pitr_stages, "since", true, false,
                           "emergency_close, halt_trading, the lockdown and rotate hooks, the backup key's rotation "
                           "and switch_cluster"};
    else
        return false;
    return true;
}

/* Why a scenario has no drill, and what rehearses its part instead. */
static const char *drill_none_why(const char *scenario)
{
    static const struct {
        const char *scenario, *why;
    } none[] = {
        {"complete_disaster", "it rebuilds the platform on the recovery site from off-site storage; check the off-site "
                              "copies with 'drctl verify --offsite NAME' and rehearse the recovery itself with "
                              "'drctl drill --scenario point_in_time'"},
        {"app_crash", "its steps act on the live trading platform (kill switch, restart in shadow mode), which a drill "
                      "never touches; 'drctl readiness' shows the platform's health and the kill switch"},
        {"primary_failure", "it fences the primary and promotes a standby, which cannot be rehearsed on a scratch "
                            "copy; 'drctl failover-status' says whether a standby is ready to take over"},
        {"network_partition", "it fences one side of a split cluster; 'drctl failover-status' and 'drctl "
                              "replication-status' show the fencing and the standbys' timelines"},
    };
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
        if (!strcmp(none[i].scenario, scenario))
            return none[i].why;
    return "it restores nothing that a scratch copy could rehearse";
}

/* ---- starting and aborting ---- */

static void drill_tag(char *out, size_t n)
{
    char t[32];
    time_t now = (time_t)(clock_wall_ms() / 1000);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(t, sizeof(t), "%Y%m%dt%H%M%Sz", &tm);
    snprintf(out, n, "%s_%04x", t, (unsigned)(clock_mono_us() & 0xffff));
}

int drill__start(Drills *ds, const char *scenario, int64_t target_ms, const char *target_option, const char *trigger,
                 CtlCall *waiter, bool detach, char *ret_id, size_t id_len, char *err, size_t errlen)
{
    const Config *cfg = ds->core->cfg;
    const ScenarioDef *def = scenario ? scenario_find(scenario) : NULL;
    char tag[48], database[64];
    char *admin = NULL;

    if (ds->closing) {
        snprintf(err, errlen, "the daemon is stopping");
        return DR_ECANCELED;
    }
    if (!def) {
        snprintf(err, errlen, "no scenario '%s'", scenario ? scenario : "");
        return DR_EBADARG;
    }
    DrillKind k;
    const DrillKind *kind = drill_kind(def->name, &k) ? &k : NULL;
    if (!def->drill_settings || !kind) {
        snprintf(err, errlen, "scenario '%s' has no drill: %s (drills exist for: database_corruption, point_in_time, "
                 "data_loss, security_breach)", def->name, drill_none_why(def->name));
        return DR_EBADARG;
    }
    if (kind->n_stages > DRILL_MAX_STAGES) { /* a programmer's error: the table outgrew dur[] */
        snprintf(err, errlen, "scenario '%s': its drill has too many steps", def->name);
        return DR_EBADARG;
    }
    if (target_option && (!kind->target_option || strcmp(target_option, kind->target_option) != 0)) {
        if (kind->target_option)
            snprintf(err, errlen, "a %s drill takes --%s T, not --%s", def->name, kind->target_option, target_option);
        else
            snprintf(err, errlen, "a %s drill takes no --%s (it restores the newest verified backup)", def->name,
                     target_option);
        return DR_EBADARG;
    }
    if (target_ms < 0 || (target_option && !target_ms)) {
        snprintf(err, errlen, "--%s needs a time after the epoch", target_option ? target_option : "timestamp");
        return DR_EBADARG;
    }
    if (ds->run) {
        snprintf(err, errlen, "drill '%s' is running already", ds->run->id);
        return DR_EBUSY;
    }
    /* A recovery run owns the database now: a drill would compete with it for the server. */
    if (lease_held(ds->core->lease)) {
        snprintf(err, errlen, "a recovery is in charge (%s): no drill now", lease_holder(ds->core->lease));
        return DR_EBUSY;
    }
    int r = config_scenario_databases(cfg, database, sizeof(database), &admin, err, errlen);
    if (r < 0)
        return r;
    drill_tag(tag, sizeof(tag));
    DrillRun *run = calloc(1, sizeof(*run));
    if (!run) {
        free(admin);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    run->ds = ds;
    run->def = def;
    run->stages = kind->stages;
    run->n_stages = kind->n_stages;
    run->target_ms = target_ms;
    run->target_exclusive = kind->exclusive;
    run->count_watched = kind->watched;
    run->never_run = kind->never_run;
    snprintf(run->tag, sizeof(run->tag), "%s", tag);
    run->admin_conninfo = admin;
    snprintf(run->database, sizeof(run->database), "%s", database);
    snprintf(run->id, sizeof(run->id), "drill-%s-%s", def->short_name, tag);
    snprintf(run->trigger, sizeof(run->trigger), "%s", trigger);
    /* <db>_drill_<tag>, within the server's 63 bytes: the database's name is cut, never the tag. */
    drill_scratch_name(database, tag, run->scratch, sizeof(run->scratch));
    ScenarioDrillSettings set = {0};
    const ConfigScenario *sc = config_scenario(cfg, def->name);
    if (sc)
        def->drill_settings(sc, &cfg->backup, &set);
    run->restore_jobs = set.restore_jobs;
    run->restore_timeout_ms = set.restore_timeout_ms;
    run->restore_maintenance_work_mem_kb = set.restore_maintenance_work_mem_kb;
    run->rto_target_ms = sc ? sc->rto_ms : 0;
    run->venue = cfg->venue.enabled;
    run->steps = json_array();
    run->validation = json_array();
    run->started_ms = clock_wall_ms();
    char *dbci = pgsql_conninfo_dbname(admin, run->scratch);
    size_t need = dbci ? strlen(dbci) + 64 : 0;
    run->scratch_ro = dbci ? malloc(need) : NULL;
    if (run->scratch_ro)
        snprintf(run->scratch_ro, need, "%s options='-c default_transaction_read_only=on'", dbci);
    free(dbci);
    if (!run->steps || !run->validation || !run->scratch_ro ||
        (set.n_validation_queries && config_list_copy(set.validation_queries, set.n_validation_queries, &run->queries) < 0)) {
        drill_free(run);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    run->n_queries = set.n_validation_queries;
    LogFields lf = {run->id, def->name, NULL};
    bool pitr = kind->stages == drill__pitr_stages;
    if (pitr && (r = drill__pitr_prepare(run, ds->wal, err, errlen)) < 0) {
        drill_free(run);
        return r;
    }
    LeaseDisturbance d;
    memset(&d, 0, sizeof(d));
    snprintf(d.database, sizeof(d.database), "%s", run->scratch);
    d.kinds = LEASE_DB_MISSING | LEASE_DB_REFUSING | LEASE_DB_TERMINATED;
    snprintf(d.run, sizeof(d.run), "%s", run->id);
    snprintf(d.scenario, sizeof(d.scenario), "%s", def->name);
    snprintf(d.step, sizeof(d.step), "drill");
    snprintf(d.what, sizeof(d.what), "drill %.50s restores into scratch database '%.63s', then drops it; '%.40s' is untouched",
             run->id, run->scratch, database);
    d.declared_ms = run->started_ms;
    if (!pitr && lease_expect_aside(ds->core->lease, &d) < 0)
        log_emit(LOG_WARNING, "drill", &lf, "cannot declare the scratch database '%s' on the recovery lease: a probe "
                 "failing on it would page", run->scratch);
    ds->run = run;
    ds->pending++;
    if (waiter && detach) {
        json_t *started = json_pack("{s:s,s:s,s:s,s:b}", "id", run->id, "scenario", def->name, "scratch_database",
                                    run->scratch, "ok", 1);
        if (pitr && started) /* a scratch cluster, not a database */
            json_object_del(started, "scratch_database");
        control_reply_ok(waiter, started);
    }
    else
        run->waiter = waiter;
    if (ret_id)
        snprintf(ret_id, id_len, "%s", run->id);
    if (pitr)
        events_emit_run(ds->core->events, SEV_INFO, "drill.started", NULL, false, NULL, &lf,
                        "drill of %s started (%s): a base backup and the WAL into a scratch cluster; trading and the "
                        "live cluster are not touched", def->name, trigger);
    else
        events_emit_run(ds->core->events, SEV_INFO, "drill.started", NULL, false, NULL, &lf,
                        "drill of %s started (%s): the newest verified backup into scratch database '%s'; trading and "
                        "'%s' are not touched", def->name, trigger, run->scratch, database);
    /* First the halt's time from the newest incident report (thread pool), then the steps. */
    drill__path(ds, run->dir, sizeof(run->dir), NULL);
    run->halt_ms = -1;
    run->req.data = run;
    if (uv_queue_work(ds->core->loop, &run->req, drill_halt_work, drill_halt_done) < 0)
        drill_next(run);
    return 0;
}

void drill__abort(Drills *ds, const char *why)
{
    DrillRun *run = ds->run;
    if (!run || run->aborted || run->stage >= run->n_stages || run->stages[run->stage].cleanup)
        return;
    run->aborted = true;
    snprintf(run->abort_reason, sizeof(run->abort_reason), "%s", why);
    LogFields lf = {run->id, run->def->name, drill_stage_name(run)};
    log_emit(LOG_NOTICE, "drill", &lf, "aborting the drill: %s", why);
    if (run->restore)
        backup_restore_cancel(run->restore, true);
    else if (run->seq)
        pgsql_seq_cancel(run->seq);
    else if (run->reconciling)
        reconcile_cancel(ds->reconcile, drill_on_reconciled, run);
    else if (run->pitr)
        drill__pitr_abort(run);
}

const char *drill__running_id(const Drills *ds)
{
    return ds->run ? ds->run->id : NULL;
}

void drill__stop(Drills *ds)
{
    if (ds->run && ds->run->waiter) {
        control_reply_error(ds->run->waiter, DR_ECANCELED, "the daemon is stopping (drill '%s' aborted)", ds->run->id);
        ds->run->waiter = NULL;
    }
    drill__abort(ds, "the daemon is stopping");
}

void drill__on_lease(bool held, void *data)
{
    Drills *ds = data;
    char why[300];
    if (!held || !ds->run)
        return;
    snprintf(why, sizeof(why), "a recovery took charge (%s): the real run goes first", lease_holder(ds->core->lease));
    drill__abort(ds, why);
}
