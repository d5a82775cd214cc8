/*
 * backup_restore: restoring a verified backup into a new database, and the test restore (see
 * backup.h and backup_internal.h).
 *
 * Owns backup_restore_into(), the one way the daemon restores a backup file into a database: the
 * key loaded on the thread pool (unless given), [DROP DATABASE IF EXISTS the leftover,] CREATE
 * DATABASE, then a streaming verification whose child is `pg_restore -d` (the decrypted dump piped
 * into it, never on disk) or, with jobs > 0, a 0600 spool file and `pg_restore -j N` on it; a
 * failure or a cancel drops the partial database (DROP DATABASE IF EXISTS ... WITH (FORCE)) before
 * the one callback. What the caller does with the restored database (ANALYZE, rename, COMMENT
 * marks) is the caller's policy.
 *
 * And the test restore built on it: the backup restored into drsup_verify_<time>_<pid> on the
 * backup's server, the configured validation queries run in it (each result and duration
 * recorded), and the scratch database dropped whatever happened before.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cap/backup/backup_internal.h"
#include "core/core.h"
#include "err.h"
#include "pgconn.h"
#include "pgsql.h"

#define RESTORE_MAX_ROWS 20

static const PgConnOptions restore_admin_opts = {.connect_timeout_ms = 10000, .query_timeout_ms = 600000};

/* ---- restore into a database ---- */

struct BackupRestore {
    uv_loop_t *loop;
    ConfigBackup cfg;
    char *path, *sha, *admin, *dbname, *target_conninfo, *spool;
    char ident[256];
    BackupRestoreOpts opts; /* spool_name not kept */
    BackupRestoreDoneFn done;
    void *data;

    uint8_t key[BCF_KEY_LEN];
    uv_work_t work;
    bool work_busy;
    int work_result;
    char key_err[512];

    uv_timer_t defer; /* runs a cancel on a later loop turn; closed last */
    PgSqlSeq *sql;
    BackupVerify *verify;
    BackupRestoreStage stage;
    bool created, canceled, drop_on_cancel, dropping, finished;
    int status;
    char error[1024];
    char drop_error[512];
    uint64_t t0;
};

static void restore_into_on_closed(uv_handle_t *h)
{
    BackupRestore *r = h->data;
    memset(r->key, 0, sizeof(r->key));
    config_backup_free(&r->cfg);
    free(r->path);
    free(r->sha);
    free(r->admin);
    free(r->dbname);
    free(r->target_conninfo);
    free(r->spool);
    free(r);
}

static void restore_into_finish(BackupRestore *r)
{
    BackupRestoreResult res = {.status = r->status,
                               .stage = r->status == 0 ? BACKUP_RESTORE_DONE : r->stage,
                               .error = r->error,
                               .dropped = r->status != 0 && !r->created,
                               .drop_error = r->drop_error,
                               .duration_ms = uv_now(r->loop) - r->t0};
    r->finished = true;
    memset(r->key, 0, sizeof(r->key));
    r->done(&res, r->data);
    uv_close((uv_handle_t *)&r->defer, restore_into_on_closed);
}

static void restore_into_on_dropped(const PgSqlSeqResult *sr, void *data)
{
    BackupRestore *r = data;
    r->sql = NULL;
    if (sr->status == 0)
        r->created = false;
    else
        snprintf(r->drop_error, sizeof(r->drop_error), "%s", sr->errmsg);
    restore_into_finish(r);
}

/* The restore failed or was cancelled (r->status says why): drop what it created, then end. */
static void restore_into_cleanup(BackupRestore *r)
{
    char sql[320];
    if (!r->created || (r->canceled && !r->drop_on_cancel)) {
        restore_into_finish(r);
        return;
    }
    r->dropping = true;
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", r->ident);
    const char *stmts[] = {sql};
    int rc = pgsql_seq_start(r->loop, r->admin, &restore_admin_opts, stmts, 1, restore_into_on_dropped, r, &r->sql);
    if (rc < 0) {
        snprintf(r->drop_error, sizeof(r->drop_error), "%s", err_str(rc));
        restore_into_finish(r);
    }
}

static void restore_into_fail(BackupRestore *r, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void restore_into_fail(BackupRestore *r, int status, const char *fmt, ...)
{
    va_list ap;
    if (r->status == 0) {
        r->status = status < 0 ? status : DR_EINTERNAL;
        va_start(ap, fmt);
        vsnprintf(r->error, sizeof(r->error), fmt, ap);
        va_end(ap);
    }
    restore_into_cleanup(r);
}

static void restore_into_on_restored(const BackupVerifyResult *vr, void *data)
{
    BackupRestore *r = data;
    r->verify = NULL;
    if (r->canceled) {
        restore_into_fail(r, DR_ECANCELED, "canceled");
        return;
    }
    if (!vr->container_ok || (vr->sha_checked && !vr->sha_match)) {
        restore_into_fail(r, DR_ECORRUPT, "%s", vr->error[0] ? vr->error : "the file failed verification");
        return;
    }
    if (!vr->child_ok) {
        restore_into_fail(r, DR_ECHILD, "%s", vr->error[0] ? vr->error : "pg_restore failed");
        return;
    }
    restore_into_finish(r);
}

static void restore_into_start_restore(BackupRestore *r)
{
    char jobs[24], msg[256], pgoptions[96], *conninfo = NULL;
    r->stage = BACKUP_RESTORE_RESTORE;
    int rc = pgconn_child_conninfo(r->target_conninfo, &conninfo, msg, sizeof(msg));
    if (rc < 0) {
        restore_into_fail(r, rc, "cannot hand the admin conninfo to pg_restore: %s",
                          rc == DR_ECONFIG ? msg : err_str(rc));
        return;
    }
    snprintf(jobs, sizeof(jobs), "-j%u", r->opts.jobs);
    snprintf(pgoptions, sizeof(pgoptions), "PGOPTIONS=-c maintenance_work_mem=%llukB",
             (unsigned long long)r->opts.maintenance_work_mem_kb);
    const char *env[] = {pgoptions, NULL};
    const char *argv[] = {r->cfg.pg_restore, "--no-owner", "--no-privileges", "--exit-on-error", "-d",
                          conninfo, r->opts.jobs > 0 ? jobs : NULL, NULL};
    BackupVerifyOptions o = {.path = r->path,
                             .key = r->key,
                             .expected_sha256_hex = r->sha,
                             .argv = argv,
                             .child_must_read_all = true,
                             .timeout_ms = r->opts.timeout_ms,
                             .spool_path = r->opts.jobs > 0 ? r->spool : NULL,
                             .child_env = r->opts.maintenance_work_mem_kb ? env : NULL,
                             .priority = {r->opts.low_priority ? (int)r->cfg.nice : 0,
                                          r->opts.low_priority ? (PrioIoClass)r->cfg.ioprio : PRIO_IO_NORMAL}};
    r->verify = backup_verify_start(r->loop, &o, restore_into_on_restored, r);
    memset(r->key, 0, sizeof(r->key)); /* the verification has its own copy */
    free(conninfo);
    if (!r->verify) {
        restore_into_fail(r, -ENOMEM, "cannot start the restore: out of memory");
        return;
    }
    if (r->opts.started)
        r->opts.started(r->data);
}

static void restore_into_on_created(const PgSqlSeqResult *sr, void *data)
{
    BackupRestore *r = data;
    bool at_create = !r->opts.replace || sr->done >= 1;
    r->sql = NULL;
    /* A CREATE that was cancelled may have happened anyway: count it as created (the drop is
     * IF EXISTS). */
    if (sr->status == 0 || (sr->status == DR_ECANCELED && at_create))
        r->created = true;
    if (r->canceled || sr->status == DR_ECANCELED) {
        restore_into_fail(r, DR_ECANCELED, "canceled");
        return;
    }
    if (sr->status < 0) {
        r->stage = at_create ? BACKUP_RESTORE_CREATE : BACKUP_RESTORE_REPLACE;
        restore_into_fail(r, sr->status, "%s", sr->errmsg);
        return;
    }
    restore_into_start_restore(r);
}

static int restore_into_create(BackupRestore *r)
{
    char drop[320], create[300];
    const char *stmts[2];
    size_t n = 0;
    snprintf(drop, sizeof(drop), "DROP DATABASE IF EXISTS %s WITH (FORCE)", r->ident);
    snprintf(create, sizeof(create), "CREATE DATABASE %s", r->ident);
    if (r->opts.replace)
        stmts[n++] = drop;
    stmts[n++] = create;
    r->stage = r->opts.replace ? BACKUP_RESTORE_REPLACE : BACKUP_RESTORE_CREATE;
    return pgsql_seq_start(r->loop, r->admin, &restore_admin_opts, stmts, n, restore_into_on_created, r, &r->sql);
}

static void restore_into_key_work(uv_work_t *req)
{
    BackupRestore *r = req->data;
    r->work_result = backup_load_key_of_file(&r->cfg, r->path, r->key, r->key_err, sizeof(r->key_err));
}

static void restore_into_key_done(uv_work_t *req, int status)
{
    BackupRestore *r = req->data;
    r->work_busy = false;
    if (status < 0 && r->work_result == 0)
        r->work_result = status;
    if (r->canceled) {
        restore_into_fail(r, DR_ECANCELED, "canceled");
        return;
    }
    if (r->work_result < 0) {
        restore_into_fail(r, r->work_result, "%s", r->key_err[0] ? r->key_err : err_str(r->work_result));
        return;
    }
    int rc = restore_into_create(r);
    if (rc < 0)
        restore_into_fail(r, rc, "%s", rc == -EINVAL ? "bad admin conninfo" : err_str(rc));
}

static void restore_into_on_defer(uv_timer_t *t)
{
    BackupRestore *r = t->data;
    if (r->finished)
        return;
    if (r->verify)
        backup_verify_cancel(r->verify);
    else if (r->sql && (!r->dropping || !r->drop_on_cancel))
        pgsql_seq_cancel(r->sql);
}

int backup__restore_into(uv_loop_t *loop, const ConfigBackup *cfg, const char *name, const char *sha256_hex,
                         const uint8_t *key, const char *admin_conninfo, const char *dbname,
                         const BackupRestoreOpts *opts, BackupRestoreDoneFn done, void *data,
                         BackupRestore **ret_restore)
{
    static const BackupRestoreOpts none = {0};
    if (!cfg->enabled || !cfg->directory || !cfg->pg_restore)
        return DR_ECONFIG;
    if (!name || !name[0] || name[0] == '.' || strchr(name, '/') || !admin_conninfo || !dbname || !dbname[0])
        return -EINVAL;
    BackupRestore *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    if (config_backup_copy(cfg, &r->cfg) < 0) {
        free(r);
        return -ENOMEM;
    }
    r->loop = loop;
    r->opts = opts ? *opts : none;
    r->opts.spool_name = NULL;
    r->done = done;
    r->data = data;
    r->t0 = uv_now(loop);
    r->stage = BACKUP_RESTORE_KEY;
    r->work.data = r;
    bool ok = asprintf(&r->path, "%s/%s", cfg->directory, name) >= 0 &&
              (opts && opts->spool_name ? asprintf(&r->spool, "%s/%s", cfg->directory, opts->spool_name)
                                        : asprintf(&r->spool, "%s/.restore-%s.dump", cfg->directory, dbname)) >= 0;
    if (!ok)
        r->path = r->spool = NULL;
    r->sha = sha256_hex ? strdup(sha256_hex) : NULL;
    r->admin = strdup(admin_conninfo);
    r->dbname = strdup(dbname);
    r->target_conninfo = pgsql_conninfo_dbname(admin_conninfo, dbname);
    int rc = 0;
    if (!r->path || !r->spool || (sha256_hex && !r->sha) || !r->admin || !r->dbname || !r->target_conninfo)
        rc = -ENOMEM;
    else if (pgsql_quote_ident(dbname, r->ident, sizeof(r->ident)) < 0 ||
             (opts && opts->spool_name && (strchr(opts->spool_name, '/') || opts->spool_name[0] != '.')))
        rc = -EINVAL;
    else if (key) {
        memcpy(r->key, key, BCF_KEY_LEN);
        rc = restore_into_create(r);
    } else if ((rc = uv_queue_work(loop, &r->work, restore_into_key_work, restore_into_key_done)) == 0)
        r->work_busy = true;
    if (rc < 0) {
        memset(r->key, 0, sizeof(r->key));
        config_backup_free(&r->cfg);
        free(r->path);
        free(r->spool);
        free(r->sha);
        free(r->admin);
        free(r->dbname);
        free(r->target_conninfo);
        free(r);
        return rc;
    }
    uv_timer_init(loop, &r->defer);
    r->defer.data = r;
    if (ret_restore)
        *ret_restore = r;
    return 0;
}

int backup_restore_into(Backups *b, const char *name, const char *sha256_hex, const char *admin_conninfo,
                        const char *dbname, const BackupRestoreOpts *opts, BackupRestoreDoneFn done, void *data,
                        BackupRestore **ret_restore)
{
    if (!b || !b->enabled)
        return DR_ECONFIG;
    if (!sha256_hex)
        return -EINVAL;
    const json_t *m = name ? backups__find(b, name) : NULL;
    if (m && backup_manifest_kind(m) != BACKUP_KIND_LOGICAL)
        return -EINVAL; /* pg_restore cannot read a base backup's tar */
    return backup__restore_into(b->core->loop, &b->cfg, name, sha256_hex, NULL, admin_conninfo, dbname, opts, done,
                                data, ret_restore);
}

void backup_restore_cancel(BackupRestore *r, bool drop_partial)
{
    if (!r || r->finished || r->canceled)
        return;
    r->canceled = true;
    r->drop_on_cancel = drop_partial;
    /* Not from here: a verification or a statement may answer at once, and done() never runs
     * inside this call. A key load is waited for. */
    uv_timer_start(&r->defer, restore_into_on_defer, 0, 0);
}

/* ---- the test restore ---- */

struct BackupTestRestore {
    uv_loop_t *loop;
    ConfigBackup cfg;
    BackupTestRestoreDoneFn done;
    void *data;

    char dbname[64];
    char ident[80];
    char *scratch_conninfo;
    BackupRestore *restore;
    PgConn *scratch;
    bool restored, canceled;
    size_t query_idx;
    uint64_t t0, q0;
    json_t *queries;
    char error[1024];
};

static void backup_test_restore_set_error(BackupTestRestore *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void backup_test_restore_set_error(BackupTestRestore *r, const char *fmt, ...)
{
    va_list ap;
    if (r->error[0])
        return;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
}

static void backup_test_restore_free(BackupTestRestore *r)
{
    json_decref(r->queries);
    free(r->scratch_conninfo);
    config_backup_free(&r->cfg);
    free(r);
}

static void backup_test_restore_finish(BackupTestRestore *r, bool dropped)
{
    json_t *res = json_pack("{s:s,s:s,s:I,s:b,s:O}", "status", r->error[0] ? "failed" : "ok", "database", r->dbname,
                            "duration_ms", (json_int_t)(uv_now(r->loop) - r->t0), "dropped", dropped, "queries",
                            r->queries);
    if (res)
        json_object_set_new(res, "error", r->error[0] ? json_string(r->error) : json_null());
    r->done(res, r->data);
    json_decref(res);
    backup_test_restore_free(r);
}

static void backup_test_restore_on_drop(const PgSqlSeqResult *sr, void *data)
{
    BackupTestRestore *r = data;
    if (sr->status < 0)
        backup_test_restore_set_error(r, "could not drop scratch database '%s': %s", r->dbname, sr->errmsg);
    backup_test_restore_finish(r, sr->status == 0);
}

static void backup_test_restore_drop(BackupTestRestore *r)
{
    char sql[160];
    if (r->scratch) {
        pgconn_close(r->scratch, NULL, NULL);
        r->scratch = NULL;
    }
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS %s WITH (FORCE)", r->ident);
    const char *stmts[] = {sql};
    if (pgsql_seq_start(r->loop, r->cfg.conninfo, &restore_admin_opts, stmts, 1, backup_test_restore_on_drop, r,
                        NULL) < 0) {
        backup_test_restore_set_error(r, "could not drop scratch database '%s'", r->dbname);
        backup_test_restore_finish(r, false);
    }
}

static void backup_test_restore_next_query(BackupTestRestore *r);

static void backup_test_restore_on_query(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    BackupTestRestore *r = data;
    const char *q = r->cfg.validation_queries[r->query_idx];
    json_t *rec = json_pack("{s:s,s:I}", "query", q, "duration_ms", (json_int_t)(uv_now(r->loop) - r->q0));
    (void)c;
    if (status == 0 && res) {
        json_t *rows = json_array();
        int nr = PQntuples(res), nf = PQnfields(res);
        for (int i = 0; i < nr && i < RESTORE_MAX_ROWS; i++) {
            json_t *row = json_array();
            for (int j = 0; j < nf; j++)
                json_array_append_new(row, PQgetisnull(res, i, j) ? json_null() : json_string(PQgetvalue(res, i, j)));
            json_array_append_new(rows, row);
        }
        json_object_set_new(rec, "rows", rows);
        json_object_set_new(rec, "status", json_string("ok"));
    } else {
        json_object_set_new(rec, "status", json_string("failed"));
        json_object_set_new(rec, "error", json_string(errmsg ? errmsg : err_str(status)));
        backup_test_restore_set_error(r, "validation query %zu failed: %s", r->query_idx + 1,
                                      errmsg ? errmsg : err_str(status));
    }
    json_array_append_new(r->queries, rec);
    r->query_idx++;
    if (r->canceled)
        backup_test_restore_drop(r);
    else
        backup_test_restore_next_query(r);
}

static void backup_test_restore_next_query(BackupTestRestore *r)
{
    if (r->query_idx >= r->cfg.n_validation_queries) {
        backup_test_restore_drop(r);
        return;
    }
    if (!r->scratch) {
        PgConnOptions po = {.connect_timeout_ms = 10000, .query_timeout_ms = 600000};
        r->scratch = pgconn_new(r->loop, r->scratch_conninfo, &po);
    }
    r->q0 = uv_now(r->loop);
    if (!r->scratch ||
        pgconn_query(r->scratch, r->cfg.validation_queries[r->query_idx], 0, NULL, backup_test_restore_on_query,
                     r) < 0) {
        backup_test_restore_set_error(r, "cannot run validation queries in '%s'", r->dbname);
        backup_test_restore_drop(r);
    }
}

static void backup_test_restore_on_restored(const BackupRestoreResult *res, void *data)
{
    BackupTestRestore *r = data;
    r->restore = NULL;
    if (res->status < 0) {
        if (res->status == DR_ECANCELED)
            backup_test_restore_set_error(r, "canceled");
        else if (res->stage == BACKUP_RESTORE_RESTORE)
            backup_test_restore_set_error(r, "restore into '%s' failed: %s", r->dbname, res->error);
        else
            backup_test_restore_set_error(r, "cannot create scratch database '%s': %s", r->dbname, res->error);
        if (!res->dropped)
            snprintf(r->error + strlen(r->error), sizeof(r->error) - strlen(r->error),
                     "; could not drop scratch database '%s': %s", r->dbname, res->drop_error);
        backup_test_restore_finish(r, res->dropped);
        return;
    }
    r->restored = true;
    if (r->canceled) {
        backup_test_restore_set_error(r, "canceled");
        backup_test_restore_drop(r);
        return;
    }
    backup_test_restore_next_query(r);
}

BackupTestRestore *backup_test_restore_start(uv_loop_t *loop, const ConfigBackup *cfg, const char *name,
                                             const uint8_t key[BCF_KEY_LEN], const char *expected_sha256_hex,
                                             BackupTestRestoreDoneFn done, void *data)
{
    BackupTestRestore *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    if (config_backup_copy(cfg, &r->cfg) < 0) {
        free(r);
        return NULL;
    }
    r->loop = loop;
    r->done = done;
    r->data = data;
    r->t0 = uv_now(loop);
    r->queries = json_array();
    snprintf(r->dbname, sizeof(r->dbname), "drsup_verify_%lld_%d", (long long)backups__now(), (int)getpid());
    pgsql_quote_ident(r->dbname, r->ident, sizeof(r->ident));
    r->scratch_conninfo = pgsql_conninfo_dbname(cfg->conninfo, r->dbname);
    BackupRestoreOpts o = {.timeout_ms = cfg->dump_timeout_ms, .low_priority = true};
    if (!r->queries || !r->scratch_conninfo ||
        backup__restore_into(loop, &r->cfg, name, expected_sha256_hex, key, cfg->conninfo,
                             r->dbname, &o, backup_test_restore_on_restored, r, &r->restore) < 0) {
        backup_test_restore_free(r);
        return NULL;
    }
    return r;
}

void backup_test_restore_cancel(BackupTestRestore *r)
{
    if (!r || r->canceled)
        return;
    r->canceled = true;
    if (r->restore)
        backup_restore_cancel(r->restore, true);
}
