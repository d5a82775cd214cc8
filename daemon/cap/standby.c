/*
 * standby: the newest verified backup, restored in advance (see standby.h).
 *
 * One cycle at a time, every step asynchronous on the admin connection:
 *   inspect    which of X_drsup_standby / X_drsup_staging exist, and the standby's COMMENT
 *   (done)     when the standby already holds the target backup
 *   restore    backup_restore_into (cap/backup): the key, DROP a leftover staging database (an
 *              interrupted cycle), CREATE DATABASE X_drsup_staging, verify + decrypt into a 0600
 *              temporary beside the backups, then pg_restore -j standby_jobs on it (the temporary
 *              is removed after; a failed restore drops its partial database itself)
 *   analyze    ANALYZE in the staging database (the restored copy starts with statistics)
 *   seal       ALTER DATABASE ... ALLOW_CONNECTIONS false (nobody can change it from now on)
 *   replace    DROP the previous standby, RENAME the staging database to the standby name
 *   mark       COMMENT ON DATABASE: "drsupervisor standby: backup NAME sha256 HEX"
 * The mark comes last: a standby without the mark of the selected backup is never used.
 * A failure drops the partial staging database (it may be large: never leave it filling the disk),
 * opens the condition standby.failed:<cluster> and retries with backoff (60 s doubling to 1 h, at
 * once for a newer backup). A recovery run, a reload that changes the names, or shutdown stops the
 * cycle at the next step boundary (a running pg_restore is killed).
 */
#include "cap/standby.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "backoff.h"
#include "cap/backup/backup.h"
#include "clock.h"
#include "core/core.h"
#include "err.h"
#include "core/events.h"
#include "log.h"
#include "pgconn.h"
#include "pgsql.h"

#define STANDBY_TICK_MS 5000
#define STANDBY_RETRY_MIN_MS (60u * 1000u)
#define STANDBY_RETRY_MAX_MS (3600u * 1000u)

typedef enum { SB_OFF = 0, SB_WAITING, SB_STAGING, SB_READY, SB_FAILED, SB_PAUSED } SbState;

static const char *const sb_state_names[] = {"off", "waiting", "staging", "ready", "failed", "paused"};

typedef void (*SbNext)(Standby *sb, int status, const PGresult *res, const char *errmsg);

struct Standby {
    Core *core;
    Backups *backups;
    bool enabled;
    int64_t jobs;
    uint64_t restore_timeout_ms;
    char database[64];
    char standby_db[96], staging_db[96];
    char *admin;            /* admin conninfo (key=value, dbname=postgres), NULL when not derivable */
    char config_error[256]; /* why the names cannot be derived */
    uv_timer_t timer;
    int sub;

    SbState state;
    char waiting_for[128];
    char held_name[256], held_sha[80]; /* what the standby database holds; "" when unknown */
    int64_t held_ms;                   /* when it was staged (wall ms; 0 unknown) */
    char last_error[768];
    int64_t last_error_ms;
    char failed_name[256];
    unsigned failures;
    uint64_t retry_at;                 /* loop ms */
    uint64_t last_duration_ms;
    bool cond_open;

    /* the cycle in progress */
    bool busy, stop;
    char target_name[256], target_sha[80];
    int64_t target_started_ms;
    char *cyc_admin;
    char cyc_standby[96], cyc_staging[96];
    int64_t cyc_jobs;
    PgConn *pg, *db;
    SbNext next;
    BackupRestore *restore;
    bool created;        /* the staging database holds this cycle's restore */
    bool found;          /* the standby already held the target */
    bool ending_stopped; /* the drop in flight ends a stopped (not failed) cycle */
    char fail_msg[768];
    uint64_t t0;

    bool closing;
    void (*closed_cb)(void *data);
    void *closed_data;
};

void standby_dbname(const char *database, char *out, size_t n)
{
    snprintf(out, n, "%s" STANDBY_SUFFIX, database);
}

void standby_marker(const char *name, const char *sha256_hex, char *out, size_t n)
{
    snprintf(out, n, STANDBY_MARKER_PREFIX "%s sha256 %s", name, sha256_hex);
}

static void sb_on_timer_closed(uv_handle_t *h)
{
    Standby *sb = h->data;
    void (*cb)(void *) = sb->closed_cb;
    void *data = sb->closed_data;
    free(sb->admin);
    free(sb);
    if (cb)
        cb(data);
}

/* ---- the end of a cycle ---- */

static void sb_on_tick(uv_timer_t *t);

static void sb_cycle_end(Standby *sb, bool ok, bool stopped)
{
    uint64_t took = uv_now(sb->core->loop) - sb->t0;
    char key[300];

    if (sb->pg) {
        pgconn_close(sb->pg, NULL, NULL);
        sb->pg = NULL;
    }
    if (sb->db) {
        pgconn_close(sb->db, NULL, NULL);
        sb->db = NULL;
    }
    sb->busy = false;
    snprintf(key, sizeof(key), "standby.failed:%s", sb->core->cfg->cluster);
    if (ok) {
        snprintf(sb->held_name, sizeof(sb->held_name), "%s", sb->target_name);
        snprintf(sb->held_sha, sizeof(sb->held_sha), "%s", sb->target_sha); /* held_ms: set by sb_marked */
        sb->state = SB_READY;
        sb->failures = 0;
        sb->failed_name[0] = '\0';
        json_t *det = json_pack("{s:s,s:s,s:I}", "backup", sb->held_name, "database", sb->cyc_standby, "duration_ms",
                                (json_int_t)took);
        events_emit(sb->core->events, SEV_INFO, "standby.ready", sb->cond_open ? key : NULL, sb->cond_open, det,
                    "standby '%s' holds backup '%s' (%s in %.1f s)", sb->cyc_standby, sb->held_name,
                    sb->found ? "found in place" : "restored", (double)took / 1000.0);
        json_decref(det);
        sb->cond_open = false;
        sb->last_duration_ms = took;
    } else if (stopped) {
        sb->state = SB_WAITING;
        snprintf(sb->waiting_for, sizeof(sb->waiting_for), "stopped");
        log_notice("standby", "staging of backup '%s' stopped (%s)", sb->target_name,
                   sb->closing ? "the daemon is stopping" : "a recovery run is active or the configuration changed");
    } else {
        sb->state = SB_FAILED;
        snprintf(sb->last_error, sizeof(sb->last_error), "%s", sb->fail_msg);
        sb->last_error_ms = clock_wall_ms();
        snprintf(sb->failed_name, sizeof(sb->failed_name), "%s", sb->target_name);
        sb->failures++;
        uint64_t backoff = backoff_ms(STANDBY_RETRY_MIN_MS, STANDBY_RETRY_MAX_MS, sb->failures);
        sb->retry_at = uv_now(sb->core->loop) + backoff;
        json_t *det = json_pack("{s:s,s:s,s:I,s:I}", "backup", sb->target_name, "error", sb->fail_msg, "failures",
                                (json_int_t)sb->failures, "retry_in_ms", (json_int_t)backoff);
        events_emit(sb->core->events, SEV_WARNING, "standby.failed", key, false, det,
                    "standby restore of backup '%s' failed (a recovery would restore from the file): %s; retry in %llu s",
                    sb->target_name, sb->fail_msg, (unsigned long long)(backoff / 1000));
        json_decref(det);
        sb->cond_open = true;
    }
    free(sb->cyc_admin);
    sb->cyc_admin = NULL;
    if (sb->closing) {
        if (!uv_is_closing((uv_handle_t *)&sb->timer))
            uv_close((uv_handle_t *)&sb->timer, sb_on_timer_closed);
        return;
    }
    /* Look again soon (not from inside this callback chain). */
    uv_timer_start(&sb->timer, sb_on_tick, 0, STANDBY_TICK_MS);
}

static void sb_sql(Standby *sb, PgConn *on, const char *sql, int np, const char *const *params, SbNext next);

static void sb_after_drop(Standby *sb, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (!sb->ending_stopped && status < 0 && status != DR_ECANCELED) {
        size_t l = strlen(sb->fail_msg);
        snprintf(sb->fail_msg + l, sizeof(sb->fail_msg) - l, "; the partial copy '%s' could not be dropped: %s",
                 sb->cyc_staging, errmsg ? errmsg : err_str(status));
    }
    sb_cycle_end(sb, false, sb->ending_stopped);
}

/* End a cycle that failed or was stopped: drop the partial staging database when this cycle
 * created it (it may be large: never leave it filling the disk; not while the daemon stops), then
 * end and report. */
static void sb_end_dropping(Standby *sb, bool stopped)
{
    char ident[128], sql[256];
    if (sb->db) {
        pgconn_close(sb->db, NULL, NULL);
        sb->db = NULL;
    }
    if (!sb->created || sb->closing || (stopped && !sb->pg)) {
        sb_cycle_end(sb, false, stopped);
        return;
    }
    sb->created = false;
    sb->ending_stopped = stopped;
    pgsql_quote_ident(sb->cyc_staging, ident, sizeof(ident));
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", ident);
    sb_sql(sb, NULL, sql, 0, NULL, sb_after_drop);
}

/* The cycle failed: the message, then the partial copy goes. */
static void sb_fail(Standby *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_fail(Standby *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(sb->fail_msg, sizeof(sb->fail_msg), fmt, ap);
    va_end(ap);
    sb_end_dropping(sb, false);
}

/* Stopped at a step boundary (a run became active, reload, shutdown). */
static void sb_stopped(Standby *sb)
{
    sb_end_dropping(sb, true);
}

/* ---- SQL plumbing ---- */

static void sb_on_sql(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    Standby *sb = data;
    SbNext next = sb->next;
    if (status == DR_ECANCELED) {
        /* The connection is being closed (shutdown): forget it. */
        if (sb->pg == c)
            sb->pg = NULL;
        if (sb->db == c)
            sb->db = NULL;
    }
    if (next == sb_after_drop) {
        next(sb, status, res, errmsg);
        return;
    }
    if (sb->stop || status == DR_ECANCELED) {
        sb_stopped(sb);
        return;
    }
    next(sb, status, res, errmsg ? errmsg : (status < 0 ? err_str(status) : NULL));
}

/* Run sql on `on` (the admin connection when NULL), then next(). */
static void sb_sql(Standby *sb, PgConn *on, const char *sql, int np, const char *const *params, SbNext next)
{
    if (!on) {
        if (!sb->pg) {
            PgConnOptions po = {.connect_timeout_ms = 10000, .query_timeout_ms = 600000};
            sb->pg = pgconn_new(sb->core->loop, sb->cyc_admin, &po);
        }
        on = sb->pg;
    }
    sb->next = next;
    int r = on ? pgconn_query(on, sql, np, params, sb_on_sql, sb) : -EINVAL;
    if (r < 0) {
        if (next == sb_after_drop)
            next(sb, r, NULL, "cannot send a query");
        else
            sb_fail(sb, "cannot send a query to the database server (check scenarios.admin_conninfo): %s", err_str(r));
    }
}

/* ---- the steps ---- */

static void sb_marked(Standby *sb, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0) {
        sb_fail(sb, "cannot mark the standby '%s': %s", sb->cyc_standby, errmsg);
        return;
    }
    sb->held_ms = clock_wall_ms();
    sb_cycle_end(sb, true, false);
}

static void sb_renamed(Standby *sb, int status, const PGresult *res, const char *errmsg)
{
    char ident[128], marker[400], sql[600];
    (void)res;
    if (status < 0) {
        sb_fail(sb, "cannot rename '%s' to '%s': %s", sb->cyc_staging, sb->cyc_standby, errmsg);
        return;
    }
    sb->created = false;
    pgsql_quote_ident(sb->cyc_standby, ident, sizeof(ident));
    standby_marker(sb->target_name, sb->target_sha, marker, sizeof(marker));
    /* Backup names and SHA-256 hex hold no quotes (the catalog only lists its own names). */
    snprintf(sql, sizeof(sql), "COMMENT ON DATABASE %s IS '%s'", ident, marker);
    sb_sql(sb, NULL, sql, 0, NULL, sb_marked);
}

static void sb_replaced_old(Standby *sb, int status, const PGresult *res, const char *errmsg)
{
    char a[128], b[128], sql[300];
    (void)res;
    if (status < 0) {
        sb_fail(sb, "cannot drop the previous standby '%s': %s", sb->cyc_standby, errmsg);
        return;
    }
    sb->held_name[0] = sb->held_sha[0] = '\0';
    pgsql_quote_ident(sb->cyc_staging, a, sizeof(a));
    pgsql_quote_ident(sb->cyc_standby, b, sizeof(b));
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s RENAME TO %s", a, b);
    sb_sql(sb, NULL, sql, 0, NULL, sb_renamed);
}

static void sb_sealed(Standby *sb, int status, const PGresult *res, const char *errmsg)
{
    char ident[128], sql[256];
    (void)res;
    if (status < 0) {
        sb_fail(sb, "cannot refuse connections to '%s': %s", sb->cyc_staging, errmsg);
        return;
    }
    pgsql_quote_ident(sb->cyc_standby, ident, sizeof(ident));
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", ident);
    sb_sql(sb, NULL, sql, 0, NULL, sb_replaced_old);
}

static void sb_analyzed(Standby *sb, int status, const PGresult *res, const char *errmsg)
{
    char ident[128], sql[256];
    (void)res;
    pgconn_close(sb->db, NULL, NULL);
    sb->db = NULL;
    if (status < 0) {
        sb_fail(sb, "ANALYZE in '%s' failed: %s", sb->cyc_staging, errmsg);
        return;
    }
    pgsql_quote_ident(sb->cyc_staging, ident, sizeof(ident));
    snprintf(sql, sizeof(sql), "ALTER DATABASE %s ALLOW_CONNECTIONS false", ident);
    sb_sql(sb, NULL, sql, 0, NULL, sb_sealed);
}

static void sb_on_restored(const BackupRestoreResult *res, void *data)
{
    Standby *sb = data;
    char *ci = NULL, drop[700] = "";

    sb->restore = NULL;
    if (res->status == 0)
        sb->created = true; /* from now on a failure or a stop drops it here */
    if (sb->stop || res->status == DR_ECANCELED) {
        sb_stopped(sb);
        return;
    }
    if (res->status < 0) {
        if (!res->dropped)
            snprintf(drop, sizeof(drop), "; the partial copy '%s' could not be dropped: %s", sb->cyc_staging,
                     res->drop_error);
        switch (res->stage) {
        case BACKUP_RESTORE_KEY:
            sb_fail(sb, "cannot load the backup key: %s%s", res->error, drop);
            break;
        case BACKUP_RESTORE_REPLACE:
            sb_fail(sb, "cannot drop the leftover '%s': %s%s", sb->cyc_staging, res->error, drop);
            break;
        case BACKUP_RESTORE_CREATE:
            sb_fail(sb, "cannot create '%s': %s%s", sb->cyc_staging, res->error, drop);
            break;
        default:
            sb_fail(sb, "restore of '%s' into '%s' failed: %s%s", sb->target_name, sb->cyc_staging, res->error, drop);
            break;
        }
        return;
    }
    if (!(ci = pgsql_conninfo_dbname(sb->cyc_admin, sb->cyc_staging))) {
        sb_fail(sb, "out of memory");
        return;
    }
    PgConnOptions po = {.connect_timeout_ms = 10000, .query_timeout_ms = 3600000};
    sb->db = pgconn_new(sb->core->loop, ci, &po);
    free(ci);
    if (!sb->db) {
        sb_fail(sb, "cannot connect to '%s': bad conninfo or out of memory", sb->cyc_staging);
        return;
    }
    sb_sql(sb, sb->db, "ANALYZE", 0, NULL, sb_analyzed);
}

/* Restore the target backup into the staging database (replacing a leftover of an interrupted
 * cycle when there is one). */
static void sb_restore(Standby *sb, bool leftover)
{
    BackupRestoreOpts o = {.jobs = (unsigned)sb->cyc_jobs,
                           .spool_name = ".standby-staging.dump",
                           .timeout_ms = sb->restore_timeout_ms,
                           .replace = leftover,
                           .low_priority = true};
    int r = backup_restore_into(sb->backups, sb->target_name, sb->target_sha, sb->cyc_admin, sb->cyc_staging, &o,
                                sb_on_restored, sb, &sb->restore);
    if (r < 0)
        sb_fail(sb, "cannot start the restore: %s", err_str(r));
}

static void sb_leftover_dropped(Standby *sb, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0)
        log_warning("standby", "cannot drop the leftover '%s': %s", sb->cyc_staging, errmsg);
    sb_cycle_end(sb, true, false);
}

static void sb_inspected(Standby *sb, int status, const PGresult *res, const char *errmsg)
{
    char marker[400], ident[128], sql[256];
    bool staging = false;
    const char *comment = NULL;

    if (status < 0) {
        sb_fail(sb, "cannot inspect the databases: %s", errmsg);
        return;
    }
    for (int i = 0; i < PQntuples(res); i++) {
        if (strcmp(PQgetvalue(res, i, 0), sb->cyc_staging) == 0)
            staging = true;
        else
            comment = PQgetvalue(res, i, 1);
    }
    standby_marker(sb->target_name, sb->target_sha, marker, sizeof(marker));
    if (comment && strcmp(comment, marker) == 0) {
        sb->held_ms = 0;
        sb->found = true;
        if (staging) {
            /* The standby is good; the leftover of an interrupted staging goes. */
            pgsql_quote_ident(sb->cyc_staging, ident, sizeof(ident));
            snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", ident);
            sb_sql(sb, NULL, sql, 0, NULL, sb_leftover_dropped);
            return;
        }
        sb_cycle_end(sb, true, false);
        return;
    }
    log_notice("standby", "staging backup '%s' into '%s' (pg_restore -j%lld; the standby %s)", sb->target_name,
               sb->cyc_staging, (long long)sb->cyc_jobs,
               comment ? (comment[0] ? "holds an older backup" : "is not marked complete") : "does not exist yet");
    if (staging)
        log_notice("standby", "dropping the leftover '%s' of an interrupted staging", sb->cyc_staging);
    sb_restore(sb, staging);
}

static void sb_cycle_begin(Standby *sb, const json_t *m)
{
    const char *name = json_string_value(json_object_get(m, "file"));
    const char *sha = json_string_value(json_object_get(m, "sha256"));

    if (!name || !sha || strlen(name) >= sizeof(sb->target_name) || strlen(sha) >= sizeof(sb->target_sha) ||
        strpbrk(name, "'\\") || strpbrk(sha, "'\\"))
        return; /* not a manifest of ours */
    if (!(sb->cyc_admin = strdup(sb->admin))) {
        log_error("standby", "cannot start a standby restore: out of memory");
        return;
    }
    snprintf(sb->target_name, sizeof(sb->target_name), "%s", name);
    snprintf(sb->target_sha, sizeof(sb->target_sha), "%s", sha);
    memcpy(sb->cyc_standby, sb->standby_db, sizeof(sb->cyc_standby));
    memcpy(sb->cyc_staging, sb->staging_db, sizeof(sb->cyc_staging));
    sb->cyc_jobs = sb->jobs;
    sb->busy = true;
    sb->stop = false;
    sb->created = false;
    sb->found = false;
    sb->fail_msg[0] = '\0';
    sb->state = SB_STAGING;
    sb->target_started_ms = clock_wall_ms();
    sb->t0 = uv_now(sb->core->loop);
    const char *p[2] = {sb->cyc_standby, sb->cyc_staging};
    sb_sql(sb, NULL,
           "SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database "
           "WHERE datname IN ($1, $2)",
           2, p, sb_inspected);
}

/* ---- deciding ---- */

static void sb_stop_cycle(Standby *sb)
{
    if (sb->stop)
        return;
    sb->stop = true;
    /* At shutdown the partial copy stays for the next cycle to drop (no new connection now). */
    if (sb->restore)
        backup_restore_cancel(sb->restore, !sb->closing);
}

void standby_kick(Standby *sb)
{
    bool scanned = false;

    if (!sb || sb->closing || !leader_acting(sb->core->leader))
        return; /* high availability: only the leader restores the standby */
    bool active = lease_held(sb->core->lease);
    if (sb->busy) {
        if (active || !sb->enabled)
            sb_stop_cycle(sb);
        return;
    }
    if (!sb->enabled) {
        sb->state = SB_OFF;
        return;
    }
    if (active) {
        sb->state = SB_PAUSED;
        return;
    }
    if (sb->state == SB_PAUSED) {
        /* A run may have taken the standby: what it holds is unknown until inspected again. */
        sb->held_name[0] = sb->held_sha[0] = '\0';
        sb->state = SB_WAITING;
    }
    if (!sb->admin) {
        sb->state = SB_FAILED;
        snprintf(sb->last_error, sizeof(sb->last_error), "%s", sb->config_error);
        return;
    }
    json_t *m = sb->backups ? backups_newest_verified(sb->backups, &scanned) : NULL;
    if (!m) {
        sb->state = SB_WAITING;
        snprintf(sb->waiting_for, sizeof(sb->waiting_for), "%s",
                 scanned ? "no verified backup yet" : "the backup catalog is being read");
        return;
    }
    const char *name = json_string_value(json_object_get(m, "file"));
    const char *sha = json_string_value(json_object_get(m, "sha256"));
    if (!name || !sha) {
        json_decref(m);
        return;
    }
    if (sb->state == SB_READY && strcmp(sb->held_name, name) == 0 && strcmp(sb->held_sha, sha) == 0) {
        json_decref(m);
        return;
    }
    if (sb->state == SB_FAILED && strcmp(sb->failed_name, name) == 0 && uv_now(sb->core->loop) < sb->retry_at) {
        json_decref(m);
        return;
    }
    sb_cycle_begin(sb, m);
    json_decref(m);
}

static void sb_on_tick(uv_timer_t *t)
{
    standby_kick(t->data);
}

static void sb_on_event(const Event *ev, void *data)
{
    Standby *sb = data;
    /* A backup finished or was verified: the newest verified one may have changed. */
    if (strncmp(ev->kind, "backup.", 7) == 0 && sb->enabled && !sb->busy && !sb->closing)
        uv_timer_start(&sb->timer, sb_on_tick, 0, STANDBY_TICK_MS);
}

/* ---- life cycle ---- */

/* A run took the lease (stop staging) or released it (it may have taken the standby). */
static void sb_on_lease(bool held, void *data)
{
    (void)held;
    standby_kick(data);
}

Standby *standby_new(Core *d, Backups *backups)
{
    Standby *sb = calloc(1, sizeof(*sb));
    if (!sb)
        return NULL;
    sb->core = d;
    sb->backups = backups;
    uv_timer_init(d->loop, &sb->timer);
    sb->timer.data = sb;
    sb->sub = events_subscribe(d->events, sb_on_event, sb);
    if (sb->sub < 0 || lease_listen(d->lease, sb_on_lease, sb) < 0) {
        if (sb->sub >= 0)
            events_unsubscribe(d->events, sb->sub);
        uv_close((uv_handle_t *)&sb->timer, sb_on_timer_closed);
        return NULL;
    }
    return sb;
}

int standby_check_config(const Standby *sb, const Config *cfg, const StandbySettings *set, char *err, size_t errlen)
{
    char database[64], msg[256], *admin = NULL;

    (void)sb;
    if (!set->enabled)
        return 0;
    if (!cfg->backup.enabled) {
        snprintf(err, errlen, "the standby restore (scenarios.database_corruption.standby) needs a 'backup' section");
        return DR_ECONFIG;
    }
    int r = config_scenario_databases(cfg, database, sizeof(database), &admin, msg, sizeof(msg));
    free(admin);
    if (r < 0)
        snprintf(err, errlen, "%s", r == -ENOMEM ? err_str(r) : msg);
    return r;
}

int standby_apply_config(Standby *sb, const Config *cfg, const StandbySettings *set)
{
    char database[64] = "", standby[96] = "", staging[96] = "", *admin = NULL;
    bool was = sb->enabled;

    sb->config_error[0] = '\0';
    if (set->enabled &&
        config_scenario_databases(cfg, database, sizeof(database), &admin, sb->config_error, sizeof(sb->config_error)) == 0) {
        standby_dbname(database, standby, sizeof(standby));
        snprintf(staging, sizeof(staging), "%s" STANDBY_STAGING_SUFFIX, database);
    }
    bool changed = strcmp(standby, sb->standby_db) != 0 || (admin && sb->admin && strcmp(admin, sb->admin) != 0) ||
                   !admin != !sb->admin || set->jobs != sb->jobs;
    sb->enabled = set->enabled;
    sb->jobs = set->jobs;
    sb->restore_timeout_ms = set->restore_timeout_ms;
    snprintf(sb->database, sizeof(sb->database), "%s", database);
    memcpy(sb->standby_db, standby, sizeof(standby));
    memcpy(sb->staging_db, staging, sizeof(staging));
    free(sb->admin);
    sb->admin = admin;
    if (changed) {
        sb->held_name[0] = sb->held_sha[0] = '\0';
        if (sb->state == SB_READY)
            sb->state = SB_WAITING;
        if (sb->busy)
            sb_stop_cycle(sb);
    }
    if (sb->enabled && !was)
        log_info("standby", "standby restore on: the newest verified backup is kept restored as '%s'", sb->standby_db);
    else if (!sb->enabled && was)
        log_notice("standby", "standby restore off (an existing standby database is left in place)");
    if (!sb->closing)
        uv_timer_start(&sb->timer, sb_on_tick, 0, STANDBY_TICK_MS);
    return 0;
}

void standby_close(Standby *sb, void (*closed_cb)(void *data), void *data)
{
    if (!sb) {
        if (closed_cb)
            closed_cb(data);
        return;
    }
    sb->closing = true;
    sb->closed_cb = closed_cb;
    sb->closed_data = data;
    events_unsubscribe(sb->core->events, sb->sub);
    lease_unlisten(sb->core->lease, sb_on_lease, sb);
    uv_timer_stop(&sb->timer);
    if (!sb->busy) {
        uv_close((uv_handle_t *)&sb->timer, sb_on_timer_closed);
        return;
    }
    sb_stop_cycle(sb);
    /* A query in flight is answered with DR_ECANCELED now and ends the cycle; a pg_restore or a
     * key load ends it when it returns. */
    if (sb->db && pgconn_is_busy(sb->db))
        pgconn_close(sb->db, NULL, NULL);
    else if (sb->pg && pgconn_is_busy(sb->pg))
        pgconn_close(sb->pg, NULL, NULL);
}

json_t *standby_status_json(const Standby *sb)
{
    json_t *j = json_pack("{s:b,s:s}", "enabled", sb->enabled, "state", sb_state_names[sb->state]);
    if (!j)
        return NULL;
    if (sb->standby_db[0])
        json_object_set_new(j, "database", json_string(sb->standby_db));
    if (sb->held_name[0]) {
        json_object_set_new(j, "backup", json_string(sb->held_name));
        json_object_set_new(j, "sha256", json_string(sb->held_sha));
        if (sb->held_ms)
            json_object_set_new(j, "staged_ms", json_integer(sb->held_ms));
    }
    if (sb->busy) {
        json_object_set_new(j, "staging_backup", json_string(sb->target_name));
        json_object_set_new(j, "staging_since_ms", json_integer(sb->target_started_ms));
    }
    if (sb->state == SB_WAITING && sb->waiting_for[0])
        json_object_set_new(j, "waiting_for", json_string(sb->waiting_for));
    if (sb->last_duration_ms)
        json_object_set_new(j, "last_duration_ms", json_integer((json_int_t)sb->last_duration_ms));
    json_object_set_new(j, "failures", json_integer(sb->failures));
    if (sb->last_error[0]) {
        json_object_set_new(j, "last_error", json_string(sb->last_error));
        json_object_set_new(j, "last_error_ms", json_integer(sb->last_error_ms));
    }
    return j;
}
