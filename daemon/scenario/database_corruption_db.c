/*
 * database_corruption_db: the database_corruption steps that change databases (see database_corruption.c).
 *
 * Owns preserve_evidence (refuse connections to X, end its sessions, rename it to X_damaged_T),
 * restore_database (take the standby restore when it holds the selected backup, else restore the
 * backup into X_restore_T with backup_restore_into; then mark the restore complete),
 * switch_database (rename X_restore_T to X, or run the configured switch command) and
 * put_back_original (rename X_damaged_T back to X and allow connections); with their probes and
 * dry-run plans. Each inspects the catalog first and does only what is left.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/backup/backup.h"
#include "child.h"
#include "core/core.h"
#include "err.h"
#include "log.h"
#include "pgconn.h"
#include "pgsql.h"
#include "scenario/database_corruption_internal.h"
#include "scenario/scn_internal.h"
#include "cap/standby.h"

/* ---- preserve_evidence ---- */

static void preserve_renamed(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0) {
        scn_fail_sql(st, status, "cannot rename the damaged database", errmsg);
        return;
    }
    scn_finish(st, 0, "'%s' is kept as '%s' (connections refused, never dropped)", st->run->database, corruption_run(st->run)->damaged);
}

static void preserve_terminated(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    char a[160], b[160], sql[400];
    (void)res;
    if (status < 0) {
        scn_fail_sql(st, status, "cannot end the sessions of the damaged database", errmsg);
        return;
    }
    pgsql_quote_ident(st->run->database, a, sizeof(a));
    pgsql_quote_ident(corruption_run(st->run)->damaged, b, sizeof(b));
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s RENAME TO %s", a, b);
    scn_sql(st, NULL, sql, 0, NULL, preserve_renamed);
}

static void preserve_closed(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    const char *p[1] = {st->run->database};
    (void)res;
    if (status < 0) {
        scn_fail_sql(st, status, "cannot refuse new connections to the damaged database", errmsg);
        return;
    }
    scn_sql(st, NULL,
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            1, p, preserve_terminated);
}

/* The server itself does not answer (no server on the port or socket), as opposed to a query
 * that failed: the cluster is down, not one database damaged. */
static bool corruption_no_server(int status, const PGresult *res, const char *errmsg)
{
    return status < 0 && !res && errmsg &&
           (strstr(errmsg, "Connection refused") || strstr(errmsg, "No such file or directory") ||
            strstr(errmsg, "the database system is starting up") || strstr(errmsg, "the database system is shutting down"));
}

static void preserve_inspected(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    char a[160], sql[300];
    (void)res;
    /* The cluster does not start (pg_control damaged, the data directory lost): nothing can be
     * restored inside it. With a WAL archive, on the step's last attempt (the server stayed down
     * across every retry), hand the run to the recovery of the whole cluster to the end of the
     * archive (point_in_time, incident cluster_damaged) instead of failing closed. */
    if (corruption_no_server(status, res, errmsg) && st->run->core->cfg->wal.enabled &&
        scenario_handoff_incident(st->run->def, "handed_to_point_in_time") && fsm_call_attempt(st->call) >= 3) {
        fsm_call_set_outcome(st->call, "cluster_down");
        scn_finish(st, 0, "the server does not answer on any attempt (%s): the cluster itself is damaged; handing "
                   "over to point_in_time, the whole cluster recovered to the end of the WAL archive", errmsg);
        return;
    }
    if (status < 0) {
        scn_fail_sql(st, status, "cannot inspect the databases", errmsg);
        return;
    }
    if (st->db.damaged && !st->db.orig) {
        scn_finish(st, 0, "already preserved: '%s' is kept as '%s'", st->run->database, corruption_run(st->run)->damaged);
        return;
    }
    if (!st->db.orig) {
        scn_finish(st, -ENOENT, "database '%s' does not exist: nothing to preserve", st->run->database);
        return;
    }
    if (st->db.damaged) {
        scn_finish(st, DR_ESTATE, "both '%s' and '%s' exist: refusing to guess which is the evidence",
                   st->run->database, corruption_run(st->run)->damaged);
        return;
    }
    pgsql_quote_ident(st->run->database, a, sizeof(a));
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS false", a);
    scn_sql(st, NULL, sql, 0, NULL, preserve_closed);
}

void scn_step_preserve_evidence(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (st)
        scn_inspect(st, preserve_inspected);
}

static void probe_preserve_inspected(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0)
        scn_fail_sql(st, status, "cannot inspect the databases", errmsg);
    else if (st->db.damaged)
        scn_answer(st, FSM_PROBE_YES, "'%s' exists", corruption_run(st->run)->damaged);
    else if (st->db.orig)
        scn_answer(st, FSM_PROBE_NO, "'%s' is still under its own name", st->run->database);
    else
        scn_answer(st, FSM_PROBE_UNKNOWN, "neither '%s' nor '%s' exists", st->run->database, corruption_run(st->run)->damaged);
}

void scn_probe_preserve_evidence(FsmCall *call, void *ctx, FsmProbeDone done)
{
    ScnStep *st = scn_step_new(call, ctx, NULL, done);
    if (st)
        scn_inspect(st, probe_preserve_inspected);
}

void scn_plan_preserve_evidence(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char msg[600];
    snprintf(msg, sizeof(msg),
             "would refuse new connections to '%s', end its sessions (pg_terminate_backend) and rename it to '%s'",
             run->database, corruption_run(run)->damaged);
    done(call, 0, msg);
}

/* ---- restore_database ---- */

static const char *scn_backup_name(const ScnRun *run)
{
    return json_string_value(json_object_get(json_object_get(run->ctx, "backup"), "name"));
}

static void restore_marked(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0) {
        scn_fail_sql(st, status, "restored, but cannot mark the restore complete", errmsg);
        return;
    }
    if (st->from_standby)
        scn_finish(st, 0, "backup '%s' taken from the standby restore '%s' as '%s' in %.1f s", scn_backup_name(st->run),
                   corruption_run(st->run)->standby, corruption_run(st->run)->restored, (double)(uv_now(st->run->core->loop) - st->t0) / 1000.0);
    else
        scn_finish(st, 0, "backup '%s' restored into '%s' in %.1f s", scn_backup_name(st->run), corruption_run(st->run)->restored,
                   (double)(uv_now(st->run->core->loop) - st->t0) / 1000.0);
}

static void restore_on_restored(const BackupRestoreResult *res, void *data)
{
    ScnStep *st = data;
    char a[160], sql[512], drop[700] = "";

    st->restore = NULL;
    if (st->cancelled) {
        scn_cancelled(st);
        return;
    }
    if (res->status < 0) {
        if (!res->dropped)
            snprintf(drop, sizeof(drop), " (the partial '%s' could not be dropped: %s)", corruption_run(st->run)->restored,
                     res->drop_error);
        switch (res->stage) {
        case BACKUP_RESTORE_KEY:
            scn_finish(st, res->status, "cannot load the backup key: %s", res->error);
            break;
        case BACKUP_RESTORE_REPLACE:
            scn_fail_sql(st, res->status, "cannot drop the incomplete restore database", res->error);
            break;
        case BACKUP_RESTORE_CREATE:
            scn_fail_sql(st, res->status, "cannot create the restore database", res->error);
            break;
        default:
            scn_finish(st, res->status, "restore of '%s' into '%s' failed: %s%s", scn_backup_name(st->run),
                       corruption_run(st->run)->restored, res->error, drop);
            break;
        }
        return;
    }
    pgsql_quote_ident(corruption_run(st->run)->restored, a, sizeof(a));
    /* Run ids hold only [0-9A-Za-z-]: the literal needs no escaping. */
    snprintf(sql, sizeof(sql), "COMMENT ON DATABASE %s IS '" SCN_MARKER "%s'", a, st->run->id);
    scn_sql(st, NULL, sql, 0, NULL, restore_marked);
}

static void restore_on_started(void *data)
{
    ScnStep *st = data;
    if (getenv("DRSUP_CRASH_IN_RESTORE")) {
        LogFields lf = {st->run->id, st->run->def->name, "restore_database"};
        log_emit(LOG_CRIT, "scenario", &lf, "DRSUP_CRASH_IN_RESTORE is set: killing the daemon in the restore (test hook)");
        raise(SIGKILL);
    }
}

/* Restore the selected backup into X_restore_T (replacing an incomplete one of this run). */
static void restore_from_file(ScnStep *st, bool replace)
{
    char spool[128];
    const json_t *b = json_object_get(st->run->ctx, "backup");
    unsigned n_jobs = (unsigned)corruption_cfg(st->run)->restore_jobs;
    /* restore_jobs > 0: decrypt into a 0600 temporary beside the backups (removed afterwards), then
     * pg_restore -j N on it (a parallel restore needs a file); 0: stream into one pg_restore. */
    snprintf(spool, sizeof(spool), ".restore-%s.dump", st->run->id);
    BackupRestoreOpts o = {.jobs = n_jobs,
                           .spool_name = spool,
                           .timeout_ms = corruption_cfg(st->run)->restore_timeout_ms,
                           .replace = replace,
                           .maintenance_work_mem_kb = corruption_cfg(st->run)->restore_maintenance_work_mem / 1024,
                           .started = restore_on_started};
    LogFields lf = {st->run->id, st->run->def->name, "restore_database"};
    if (n_jobs > 0)
        log_emit(LOG_NOTICE, "scenario", &lf, "restoring backup '%s' into database '%s' (decrypt to '%s/%s', then "
                 "pg_restore -j%u)", scn_backup_name(st->run), corruption_run(st->run)->restored, st->run->bcfg.directory, spool,
                 n_jobs);
    else
        log_emit(LOG_NOTICE, "scenario", &lf, "restoring backup '%s' into database '%s' (streamed into pg_restore)",
                 scn_backup_name(st->run), corruption_run(st->run)->restored);
    int r = backup_restore_into(st->run->caps->backups, scn_backup_name(st->run),
                                json_string_value(json_object_get(b, "sha256")), st->run->admin_conninfo,
                                corruption_run(st->run)->restored, &o, restore_on_restored, st, &st->restore);
    if (r < 0)
        scn_finish(st, r, "cannot start the restore: %s", err_str(r));
}

/* Does the standby restore hold the backup this run selected (name and SHA-256 in its mark)? */
static bool scn_standby_usable(const ScnStep *st)
{
    const json_t *b = json_object_get(st->run->ctx, "backup");
    const char *sha = json_string_value(json_object_get(b, "sha256"));
    char marker[400];
    if (!corruption_cfg(st->run)->standby || !st->db.standby || !sha)
        return false;
    standby_marker(scn_backup_name(st->run), sha, marker, sizeof(marker));
    return strcmp(st->db.standby_comment, marker) == 0;
}

static void restore_standby_allowed(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    char a[160], sql[512];
    (void)res;
    if (status < 0) {
        scn_fail_sql(st, status, "cannot allow connections to the standby copy", errmsg);
        return;
    }
    st->from_standby = true;
    pgsql_quote_ident(corruption_run(st->run)->restored, a, sizeof(a));
    snprintf(sql, sizeof(sql), "COMMENT ON DATABASE %s IS '" SCN_MARKER "%s'", a, st->run->id);
    scn_sql(st, NULL, sql, 0, NULL, restore_marked);
}

static void restore_standby_renamed(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    char a[160], sql[300];
    (void)res;
    LogFields lf = {st->run->id, st->run->def->name, "restore_database"};
    if (status < 0) {
        /* Whatever happened to it, the backup file is still there: restore from it. */
        log_emit(LOG_WARNING, "scenario", &lf, "cannot take the standby '%s' (%s): restoring from the backup file",
                 corruption_run(st->run)->standby, errmsg ? errmsg : err_str(status));
        restore_from_file(st, false);
        return;
    }
    log_emit(LOG_NOTICE, "scenario", &lf, "backup '%s' was restored in advance: standby '%s' renamed to '%s'",
             scn_backup_name(st->run), corruption_run(st->run)->standby, corruption_run(st->run)->restored);
    pgsql_quote_ident(corruption_run(st->run)->restored, a, sizeof(a));
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS true", a);
    scn_sql(st, NULL, sql, 0, NULL, restore_standby_allowed);
}

static void restore_inspected(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    char a[160], sql[400];
    (void)res;
    if (status < 0) {
        scn_fail_sql(st, status, "cannot inspect the databases", errmsg);
        return;
    }
    if (st->db.restored_complete) {
        scn_finish(st, 0, "'%s' already holds the complete restore of '%s'", corruption_run(st->run)->restored, scn_backup_name(st->run));
        return;
    }
    if (!st->db.restored && scn_standby_usable(st)) {
        /* The standby restore holds exactly the selected backup: take it (a rename). */
        pgsql_quote_ident(corruption_run(st->run)->standby, a, sizeof(a));
        char b[160];
        pgsql_quote_ident(corruption_run(st->run)->restored, b, sizeof(b));
        snprintf(sql, sizeof(sql), "ALTER DATABASE %s RENAME TO %s", a, b);
        scn_sql(st, NULL, sql, 0, NULL, restore_standby_renamed);
        return;
    }
    if (st->db.restored) {
        /* An interrupted restore of this run: our own scratch database, never the good one. */
        LogFields lf = {st->run->id, st->run->def->name, "restore_database"};
        log_emit(LOG_WARNING, "scenario", &lf, "dropping the incomplete restore database '%s' before restoring again",
                 corruption_run(st->run)->restored);
        restore_from_file(st, true);
        return;
    }
    restore_from_file(st, false);
}

void scn_step_restore_database(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    if (!scn_backup_name(st->run)) {
        scn_finish(st, DR_ESTATE, "no backup was selected");
        return;
    }
    scn_inspect(st, restore_inspected);
}

static void probe_restore_inspected(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0)
        scn_fail_sql(st, status, "cannot inspect the databases", errmsg);
    else if (st->db.restored_complete)
        scn_answer(st, FSM_PROBE_YES, "'%s' is marked complete", corruption_run(st->run)->restored);
    else if (!st->db.restored)
        scn_answer(st, FSM_PROBE_NO, "'%s' does not exist", corruption_run(st->run)->restored);
    else
        scn_answer(st, FSM_PROBE_UNKNOWN, "'%s' exists but the restore is not marked complete", corruption_run(st->run)->restored);
}

void scn_probe_restore_database(FsmCall *call, void *ctx, FsmProbeDone done)
{
    ScnStep *st = scn_step_new(call, ctx, NULL, done);
    if (st)
        scn_inspect(st, probe_restore_inspected);
}

void scn_plan_restore_database(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    const char *name = scn_backup_name(run) ? scn_backup_name(run) : "?";
    const char *pgr = run->bcfg.pg_restore ? run->bcfg.pg_restore : "pg_restore";
    char msg[1200], standby[400] = "";
    if (corruption_cfg(run)->standby)
        snprintf(standby, sizeof(standby), "would rename the standby restore '%s' to '%s' if it holds backup '%s'; "
                 "otherwise ", corruption_run(run)->standby, corruption_run(run)->restored, name);
    snprintf(msg, sizeof(msg), "%swould CREATE DATABASE '%s' and restore '%s/%s' decrypted with '%s -d %s'", standby,
             corruption_run(run)->restored, run->bcfg.directory ? run->bcfg.directory : "?", name, pgr, corruption_run(run)->restored);
    done(call, 0, msg);
}

/* ---- switch_database ---- */

static void switch_renamed(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0) {
        scn_fail_sql(st, status, "cannot rename the restored database into place", errmsg);
        return;
    }
    scn_finish(st, 0, "'%s' is now '%s'", corruption_run(st->run)->restored, st->run->database);
}

static void switch_on_exit(ChildProc *c, int64_t exit_status, int term_signal, void *data)
{
    ScnStep *st = data;
    size_t n = 0;
    const char *err = child_stderr(c, &n);
    char tail[300];
    snprintf(tail, sizeof(tail), "%s", n > 280 ? err + n - 280 : err);
    if (st->cancelled) {
        scn_cancelled(st);
        return;
    }
    if (term_signal || exit_status != 0)
        scn_finish(st, DR_ECHILD, "switch command '%s' %s %d: %s", corruption_cfg(st->run)->switch_command[0],
                   term_signal ? "killed by signal" : "exited with status", term_signal ? term_signal : (int)exit_status, tail);
    else
        scn_finish(st, 0, "switch command '%s' moved the platform to '%s'", corruption_cfg(st->run)->switch_command[0], corruption_run(st->run)->restored);
}

static void switch_inspected(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    char a[160], b[160], sql[400];
    (void)res;
    if (status < 0) {
        scn_fail_sql(st, status, "cannot inspect the databases", errmsg);
        return;
    }
    if (corruption_cfg(st->run)->n_switch_command) {
        char e1[200], e2[200], e3[200];
        snprintf(e1, sizeof(e1), "DRSUP_DATABASE=%s", st->run->database);
        snprintf(e2, sizeof(e2), "DRSUP_RESTORED_DATABASE=%s", corruption_run(st->run)->restored);
        snprintf(e3, sizeof(e3), "DRSUP_RUN=%s", st->run->id);
        const char *env[] = {e1, e2, e3, NULL};
        ChildOptions o = {.argv = (const char *const *)corruption_cfg(st->run)->switch_command,
                          .env = env,
                          .timeout_ms = 60000,
                          .on_exit = switch_on_exit,
                          .data = st};
        int r = 0;
        pgconn_close(st->pg, NULL, NULL);
        st->pg = NULL;
        st->child = child_spawn(st->run->core->loop, &o, &r);
        if (!st->child)
            scn_finish(st, r, "cannot run switch command '%s': %s", corruption_cfg(st->run)->switch_command[0], err_str(r));
        return;
    }
    if (st->db.orig && !st->db.restored) {
        scn_finish(st, 0, "already switched: '%s' is in place", st->run->database);
        return;
    }
    if (st->db.orig) {
        scn_finish(st, DR_ESTATE, "'%s' exists again: refusing to switch over it", st->run->database);
        return;
    }
    if (!st->db.restored) {
        scn_finish(st, -ENOENT, "'%s' does not exist", corruption_run(st->run)->restored);
        return;
    }
    pgsql_quote_ident(corruption_run(st->run)->restored, a, sizeof(a));
    pgsql_quote_ident(st->run->database, b, sizeof(b));
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s RENAME TO %s", a, b);
    scn_sql(st, NULL, sql, 0, NULL, switch_renamed);
}

void scn_step_switch_database(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (st)
        scn_inspect(st, switch_inspected);
}

static void probe_switch_inspected(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0)
        scn_fail_sql(st, status, "cannot inspect the databases", errmsg);
    else if (corruption_cfg(st->run)->n_switch_command)
        scn_answer(st, FSM_PROBE_UNKNOWN, "a switch command is configured: it runs again");
    else if (st->db.orig && !st->db.restored)
        scn_answer(st, FSM_PROBE_YES, "'%s' is in place and '%s' is gone", st->run->database, corruption_run(st->run)->restored);
    else if (st->db.restored && !st->db.orig)
        scn_answer(st, FSM_PROBE_NO, "'%s' is not renamed yet", corruption_run(st->run)->restored);
    else
        scn_answer(st, FSM_PROBE_UNKNOWN, "unexpected set of databases");
}

void scn_probe_switch_database(FsmCall *call, void *ctx, FsmProbeDone done)
{
    ScnStep *st = scn_step_new(call, ctx, NULL, done);
    if (st)
        scn_inspect(st, probe_switch_inspected);
}

void scn_plan_switch_database(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char msg[600];
    if (corruption_cfg(run)->n_switch_command)
        snprintf(msg, sizeof(msg), "would run '%s' with DRSUP_RESTORED_DATABASE=%s", corruption_cfg(run)->switch_command[0],
                 corruption_run(run)->restored);
    else
        snprintf(msg, sizeof(msg), "would rename '%s' to '%s'", corruption_run(run)->restored, run->database);
    done(call, 0, msg);
}

/* ---- put_back_original ---- */

static void putback_allowed(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0) {
        scn_fail_sql(st, status, "cannot allow connections again", errmsg);
        return;
    }
    scn_finish(st, 0, "'%s' is in place; trading stays halted", st->run->database);
}

static void putback_allow(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    char a[160], sql[300];
    (void)res;
    if (status < 0) {
        scn_fail_sql(st, status, "cannot rename the original database back", errmsg);
        return;
    }
    pgsql_quote_ident(st->run->database, a, sizeof(a));
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS true", a);
    scn_sql(st, NULL, sql, 0, NULL, putback_allowed);
}

static void putback_inspected(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    char a[160], b[160], sql[400];
    (void)res;
    if (status < 0) {
        scn_fail_sql(st, status, "cannot inspect the databases", errmsg);
        return;
    }
    if (st->db.orig) {
        putback_allow(st, 0, NULL, NULL);
        return;
    }
    if (!st->db.damaged) {
        scn_finish(st, -ENOENT, "neither '%s' nor '%s' exists: nothing to put back", st->run->database, corruption_run(st->run)->damaged);
        return;
    }
    pgsql_quote_ident(corruption_run(st->run)->damaged, a, sizeof(a));
    pgsql_quote_ident(st->run->database, b, sizeof(b));
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s RENAME TO %s", a, b);
    scn_sql(st, NULL, sql, 0, NULL, putback_allow);
}

void scn_step_put_back_original(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (st)
        scn_inspect(st, putback_inspected);
}

/* ---- validate_restore (database_corruption, security_breach) ---- */

/* The run's section's validation_queries (database_corruption's, or security_breach's restore part),
 * else backup.validation_queries, else SELECT 1. */
static void scn_restore_validation_queries(const ScnRun *run, char *const **ret, size_t *ret_n)
{
    bool own = corruption_cfg(run)->n_validation_queries > 0;
    *ret = own ? corruption_cfg(run)->validation_queries : run->bcfg.validation_queries;
    *ret_n = own ? corruption_cfg(run)->n_validation_queries : run->bcfg.n_validation_queries;
}

void scn_step_validate_restore(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char *const *q;
    size_t n;
    char where[160];
    if (!st)
        return;
    scn_restore_validation_queries(st->run, &q, &n);
    char *ci = scn_conninfo_for(st->run, corruption_run(st->run)->restored);
    snprintf(where, sizeof(where), "'%s'", corruption_run(st->run)->restored);
    if (!ci)
        scn_finish(st, -ENOMEM, "out of memory");
    else
        scn_validate(st, q, n, ci, where);
    free(ci);
}

void scn_plan_validate_restore(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char *const *q;
    size_t n;
    char where[160];
    scn_restore_validation_queries(run, &q, &n);
    snprintf(where, sizeof(where), "'%s'", corruption_run(run)->restored);
    scn_plan_validation(call, q, n, where, done);
}
