/*
 * backup_restore: the test restore of one backup into a scratch database (see backup_internal.h).
 *
 * Owns the sequence CREATE DATABASE drsup_verify_<time>_<pid> on the backup's server, a streaming
 * verification whose child is `pg_restore -d <scratch>` (so the decrypted dump never touches the
 * disk), the configured validation queries run in the scratch database (each result and duration
 * recorded), and DROP DATABASE ... WITH (FORCE), which runs whatever happened before.
 * The conninfo must be in key=value form: " dbname=<scratch>" is appended to it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cap/backup/backup_internal.h"
#include "err.h"
#include "pgconn.h"

#define RESTORE_MAX_ROWS 20

struct BackupRestore {
    uv_loop_t *loop;
    ConfigBackup cfg;
    char *path;
    uint8_t key[BCF_KEY_LEN];
    char *sha;
    BackupRestoreDoneFn done;
    void *data;

    char dbname[64];
    char *scratch_conninfo;
    PgConn *admin, *scratch;
    BackupVerify *verify;
    bool created, canceled;
    size_t query_idx;
    uint64_t t0, q0;
    json_t *queries;
    char error[1024];
};

static void backup_restore_drop(BackupRestore *r);

static void backup_restore_set_error(BackupRestore *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void backup_restore_set_error(BackupRestore *r, const char *fmt, ...)
{
    va_list ap;
    if (r->error[0])
        return;
    va_start(ap, fmt);
    vsnprintf(r->error, sizeof(r->error), fmt, ap);
    va_end(ap);
}

static void backup_restore_finish(BackupRestore *r, bool dropped)
{
    json_t *res = json_pack("{s:s,s:s,s:I,s:b,s:O}", "status", r->error[0] ? "failed" : "ok", "database", r->dbname,
                            "duration_ms", (json_int_t)(uv_now(r->loop) - r->t0), "dropped", dropped, "queries",
                            r->queries);
    if (res)
        json_object_set_new(res, "error", r->error[0] ? json_string(r->error) : json_null());
    if (r->admin)
        pgconn_close(r->admin, NULL, NULL);
    r->done(res, r->data);
    json_decref(res);
    json_decref(r->queries);
    free(r->scratch_conninfo);
    free(r->path);
    free(r->sha);
    memset(r->key, 0, sizeof(r->key));
    config_backup_free(&r->cfg);
    free(r);
}

static void backup_restore_on_drop(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    BackupRestore *r = data;
    (void)c;
    (void)res;
    if (status < 0)
        backup_restore_set_error(r, "could not drop scratch database '%s': %s", r->dbname,
                                 errmsg ? errmsg : err_str(status));
    backup_restore_finish(r, status == 0);
}

static void backup_restore_drop(BackupRestore *r)
{
    char sql[160];
    if (r->scratch) {
        pgconn_close(r->scratch, NULL, NULL);
        r->scratch = NULL;
    }
    if (!r->created || !r->admin) {
        backup_restore_finish(r, !r->created);
        return;
    }
    snprintf(sql, sizeof(sql), "DROP DATABASE IF EXISTS \"%s\" WITH (FORCE)", r->dbname);
    if (pgconn_query(r->admin, sql, 0, NULL, backup_restore_on_drop, r) < 0) {
        backup_restore_set_error(r, "could not drop scratch database '%s'", r->dbname);
        backup_restore_finish(r, false);
    }
}

static void backup_restore_next_query(BackupRestore *r);

static void backup_restore_on_query(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    BackupRestore *r = data;
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
        backup_restore_set_error(r, "validation query %zu failed: %s", r->query_idx + 1,
                                 errmsg ? errmsg : err_str(status));
    }
    json_array_append_new(r->queries, rec);
    r->query_idx++;
    if (r->canceled)
        backup_restore_drop(r);
    else
        backup_restore_next_query(r);
}

static void backup_restore_next_query(BackupRestore *r)
{
    if (r->query_idx >= r->cfg.n_validation_queries) {
        backup_restore_drop(r);
        return;
    }
    if (!r->scratch) {
        PgConnOptions po = {.connect_timeout_ms = 10000, .query_timeout_ms = 600000};
        r->scratch = pgconn_new(r->loop, r->scratch_conninfo, &po);
    }
    r->q0 = uv_now(r->loop);
    if (!r->scratch ||
        pgconn_query(r->scratch, r->cfg.validation_queries[r->query_idx], 0, NULL, backup_restore_on_query, r) < 0) {
        backup_restore_set_error(r, "cannot run validation queries in '%s'", r->dbname);
        backup_restore_drop(r);
    }
}

static void backup_restore_on_restored(const BackupVerifyResult *vr, void *data)
{
    BackupRestore *r = data;
    r->verify = NULL;
    if (!vr->container_ok || (vr->sha_checked && !vr->sha_match) || !vr->child_ok) {
        backup_restore_set_error(r, "restore into '%s' failed: %s", r->dbname, vr->error[0] ? vr->error : "unknown");
        backup_restore_drop(r);
        return;
    }
    if (r->canceled) {
        backup_restore_set_error(r, "canceled");
        backup_restore_drop(r);
        return;
    }
    backup_restore_next_query(r);
}

static void backup_restore_on_create(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    BackupRestore *r = data;
    (void)c;
    (void)res;
    if (status < 0 || r->canceled) {
        backup_restore_set_error(r, "cannot create scratch database '%s': %s", r->dbname,
                                 errmsg ? errmsg : err_str(status));
        if (status == 0)
            r->created = true;
        backup_restore_drop(r);
        return;
    }
    r->created = true;
    const char *argv[] = {r->cfg.pg_restore, "--no-owner", "--no-privileges", "--exit-on-error",
                          "-d", r->scratch_conninfo, NULL};
    BackupVerifyOptions o = {.path = r->path,
                             .key = r->key,
                             .expected_sha256_hex = r->sha,
                             .argv = argv,
                             .child_must_read_all = true,
                             .timeout_ms = r->cfg.dump_timeout_ms};
    r->verify = backup_verify_start(r->loop, &o, backup_restore_on_restored, r);
    if (!r->verify) {
        backup_restore_set_error(r, "out of memory");
        backup_restore_drop(r);
    }
}

BackupRestore *backup_restore_start(uv_loop_t *loop, const ConfigBackup *cfg, const char *path,
                                    const uint8_t key[BCF_KEY_LEN], const char *expected_sha256_hex,
                                    BackupRestoreDoneFn done, void *data)
{
    BackupRestore *r = calloc(1, sizeof(*r));
    char sql[160];

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
    memcpy(r->key, key, BCF_KEY_LEN);
    r->path = strdup(path);
    r->sha = expected_sha256_hex ? strdup(expected_sha256_hex) : NULL;
    r->queries = json_array();
    snprintf(r->dbname, sizeof(r->dbname), "drsup_verify_%lld_%d", (long long)time(NULL), (int)getpid());
    if (asprintf(&r->scratch_conninfo, "%s dbname=%s", cfg->conninfo, r->dbname) < 0)
        r->scratch_conninfo = NULL;
    PgConnOptions po = {.connect_timeout_ms = 10000, .query_timeout_ms = 600000};
    r->admin = pgconn_new(loop, cfg->conninfo, &po);
    snprintf(sql, sizeof(sql), "CREATE DATABASE \"%s\"", r->dbname);
    if (!r->path || !r->queries || !r->scratch_conninfo || !r->admin ||
        pgconn_query(r->admin, sql, 0, NULL, backup_restore_on_create, r) < 0) {
        backup_restore_set_error(r, "cannot start the test restore (bad conninfo or out of memory)");
        backup_restore_finish(r, true);
        return NULL;
    }
    return r;
}

void backup_restore_cancel(BackupRestore *r)
{
    if (!r || r->canceled)
        return;
    r->canceled = true;
    if (r->verify)
        backup_verify_cancel(r->verify);
}
