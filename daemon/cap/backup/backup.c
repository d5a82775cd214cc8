/*
 * backup: schedules, catalog, retention, verification and the module's life cycle (see backup.h).
 * The watch conditions and the control commands are in backup_cmd.c; the module's structure is in
 * backup_internal.h.
 */
#include "cap/backup/backup.h"

#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomicfile.h"
#include "cap/backup/backup_internal.h"
#include "cfgtree.h"
#include "clock.h"
#include "cron.h"
#include "core/core.h"
#include "core/schedclock.h"
#include "err.h"
#include "log.h"
#include "retention.h"

#define BACKUP_TICK_MS 1000
#define BACKUP_WATCH_EVERY_MS 1000 /* cheap arithmetic over the catalog; events only on a change */
#define BACKUP_FAILURES_KEPT 100

int64_t backups__now(void)
{
    return clock_wall_ms() / 1000;
}

static void backups_maybe_closed(Backups *b)
{
    if (!b->closing || b->pending > 0 || b->job_kind != JOB_NONE)
        return;
    void (*cb)(void *) = b->closed_cb;
    void *data = b->closed_data;
    config_backup_free(&b->cfg);
    pgconn_follow_clear(&b->follow);
    free(b->cluster);
    free(b->failures_path);
    free(b->sched);
    free(b->next_due);
    free(b->phys_sched);
    free(b->phys_next_due);
    json_decref(b->catalog);
    json_decref(b->failures);
    json_decref(b->verify_manifest);
    backup_tool_version_clear(&b->pg_dump_version);
    backup_tool_version_clear(&b->pg_basebackup_version);
    free(b);
    if (cb)
        cb(data);
}

/* ---- background tasks (pool) ---- */

typedef enum { TASK_SCAN, TASK_WRITE, TASK_UNLINK, TASK_LOADKEY } TaskKind;

typedef struct BackupTask {
    uv_work_t req;
    Backups *b;
    TaskKind kind;
    char *path;      /* TASK_WRITE target / TASK_SCAN dir */
    char *path2;     /* failures path */
    char *text;      /* TASK_WRITE content */
    json_t *names;   /* TASK_UNLINK: array of paths */
    json_t *manifest;/* TASK_WRITE of a manifest: its directory in path */
    ConfigBackup *cfg;
    BackupScan scan;
    uint8_t key[BCF_KEY_LEN];
    char err[512];
    int result;
    void (*after)(struct BackupTask *t);
} BackupTask;

static void backups_task_work(uv_work_t *req)
{
    BackupTask *t = req->data;
    switch (t->kind) {
    case TASK_SCAN:
        backup_catalog_scan(t->path, t->path2, &t->scan);
        break;
    case TASK_WRITE:
        if (t->manifest)
            t->result = backup_manifest_write(t->path, t->manifest);
        else
            t->result = atomicfile_write(t->path, t->text, strlen(t->text), 0640);
        break;
    case TASK_UNLINK: {
        size_t i;
        json_t *p;
        json_array_foreach(t->names, i, p) {
            if (unlink(json_string_value(p)) < 0 && errno != ENOENT && t->result == 0) {
                t->result = -errno;
                snprintf(t->err, sizeof(t->err), "cannot delete '%s': %s", json_string_value(p), strerror(errno));
            }
        }
        if (t->path)
            atomicfile_fsync_dir(t->path);
        break;
    }
    case TASK_LOADKEY: /* the key of the file's key id: backups written before a rotation stay readable */
        t->result = t->path ? backup_load_key_of_file(t->cfg, t->path, t->key, t->err, sizeof(t->err))
                            : backup_load_key(t->cfg, t->key, t->err, sizeof(t->err));
        break;
    }
}

static void backups_task_done(uv_work_t *req, int status)
{
    BackupTask *t = req->data;
    Backups *b = t->b;
    if (status < 0 && t->result == 0)
        t->result = status;
    if (t->after)
        t->after(t);
    b->pending--;
    free(t->path);
    free(t->path2);
    free(t->text);
    json_decref(t->names);
    json_decref(t->manifest);
    json_decref(t->scan.manifests);
    json_decref(t->scan.failures);
    memset(t->key, 0, sizeof(t->key));
    free(t);
    backups_maybe_closed(b);
}

static BackupTask *backups_task_new(Backups *b, TaskKind kind, void (*after)(BackupTask *t))
{
    BackupTask *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->b = b;
    t->kind = kind;
    t->after = after;
    t->req.data = t;
    return t;
}

static void backups_task_queue(BackupTask *t)
{
    t->b->pending++;
    int r = uv_queue_work(t->b->core->loop, &t->req, backups_task_work, backups_task_done);
    if (r < 0)
        backups_task_done(&t->req, r);
}

/* ---- catalog queries ---- */

json_t *backups__newest(const Backups *b)
{
    size_t n = json_array_size(b->catalog);
    return n ? json_array_get(b->catalog, n - 1) : NULL;
}

json_t *backups__newest_of(const Backups *b, BackupKind kind)
{
    for (size_t i = json_array_size(b->catalog); i-- > 0;) {
        json_t *m = json_array_get(b->catalog, i);
        if (backup_manifest_kind(m) == kind)
            return m;
    }
    return NULL;
}

unsigned backups__consecutive_failures(const Backups *b, BackupKind kind)
{
    json_t *newest = backups__newest_of(b, kind);
    int64_t since = newest ? backup_manifest_started(newest) : -1;
    unsigned n = 0;
    size_t i;
    json_t *f;
    json_array_foreach(b->failures, i, f) {
        /* A failure record is shaped like a manifest as far as "kind" goes. */
        if (backup_manifest_kind(f) == kind && json_integer_value(json_object_get(f, "started_at_unix")) > since)
            n++;
    }
    return n;
}

json_t *backups__find(const Backups *b, const char *name)
{
    size_t i;
    json_t *m;
    json_array_foreach(b->catalog, i, m) {
        if (strcmp(json_string_value(json_object_get(m, "file")), name) == 0)
            return m;
    }
    return NULL;
}

json_t *backups_newest_verified(const Backups *b, bool *ret_scanned)
{
    if (ret_scanned)
        *ret_scanned = b && b->scanned;
    if (!b)
        return NULL;
    for (size_t i = json_array_size(b->catalog); i-- > 0;) {
        json_t *m = json_array_get(b->catalog, i);
        if (backup_manifest_kind(m) == BACKUP_KIND_LOGICAL && backup_manifest_verified(m))
            return json_deep_copy(m);
    }
    return NULL;
}

json_t *backups_newest_verified_before(const Backups *b, int64_t before_ms, bool *ret_scanned)
{
    if (ret_scanned)
        *ret_scanned = b && b->scanned;
    if (!b)
        return NULL;
    for (size_t i = json_array_size(b->catalog); i-- > 0;) {
        json_t *m = json_array_get(b->catalog, i);
        if (backup_manifest_kind(m) != BACKUP_KIND_LOGICAL || !backup_manifest_verified(m))
            continue;
        /* the backup finished and its verification ran before T: both predate what T bounds */
        int64_t finished = backup_manifest_finished(m);
        int64_t verified = backup_time_parse(
            json_string_value(json_object_get(json_object_get(m, "verification"), "verified_at")));
        if (finished >= 0 && verified >= 0 && finished * 1000 < before_ms && verified * 1000 < before_ms)
            return json_deep_copy(m);
    }
    return NULL;
}

/* ---- rotating the backup key (backup_keys.c does the files, on the pool) ---- */

typedef struct BackupRotate {
    uv_work_t req;
    Backups *b;
    ConfigBackup cfg;
    BackupsKeyRotatedFn done;
    void *data;
    int result;
    char new_id[33], old_id[33], err[512];
} BackupRotate;

static void backups_rotate_work(uv_work_t *req)
{
    BackupRotate *r = req->data;
    r->result = backup_keys_rotate(&r->cfg, r->new_id, r->old_id, r->err, sizeof(r->err));
}

static void backups_rotate_done(uv_work_t *req, int status)
{
    BackupRotate *r = req->data;
    Backups *b = r->b;
    if (status < 0 && r->result == 0)
        r->result = status;
    if (r->result == 0) {
        json_t *d = json_pack("{s:s,s:s}", "key_id", r->new_id, "previous_key_id", r->old_id);
        events_emit(b->core->events, SEV_WARNING, "backup.key", NULL, false, d,
                    "backup key rotated: new backups are written under key id %s; those under %s stay readable",
                    r->new_id, r->old_id[0] ? r->old_id : "(unknown)");
        json_decref(d);
    }
    r->done(r->result, r->new_id, r->old_id, r->result < 0 ? r->err : "", r->data);
    config_backup_free(&r->cfg);
    free(r);
    b->pending--;
    backups_maybe_closed(b);
}

int backups_rotate_key(Backups *b, BackupsKeyRotatedFn done, void *data)
{
    if (!b || !b->enabled)
        return DR_ECONFIG;
    if (b->closing)
        return DR_ECANCELED;
    BackupRotate *r = calloc(1, sizeof(*r));
    if (!r)
        return -ENOMEM;
    if (config_backup_copy(&b->cfg, &r->cfg) < 0) {
        free(r);
        return -ENOMEM;
    }
    r->b = b;
    r->done = done;
    r->data = data;
    r->req.data = r;
    b->pending++;
    int rc = uv_queue_work(b->core->loop, &r->req, backups_rotate_work, backups_rotate_done);
    if (rc < 0) {
        b->pending--;
        config_backup_free(&r->cfg);
        free(r);
    }
    return rc;
}

json_t *backups_catalog(const Backups *b, bool *ret_scanned)
{
    if (ret_scanned)
        *ret_scanned = b && b->scanned;
    return b ? json_deep_copy(b->catalog) : json_array();
}

void backups_set_offsite_list(Backups *b, BackupsOffsiteListFn fn, void *data)
{
    b->offsite_list_fn = fn;
    b->offsite_list_data = data;
}

void backups_set_offsite(Backups *b, BackupsOffsiteFn fn, void *data)
{
    b->offsite_fn = fn;
    b->offsite_data = data;
}

json_t *backups_physical(const Backups *b, bool *ret_scanned)
{
    json_t *out = json_array();
    size_t i;
    json_t *m;
    if (ret_scanned)
        *ret_scanned = b && b->scanned;
    if (!b || !out)
        return out;
    json_array_foreach(b->catalog, i, m) if (backup_manifest_kind(m) == BACKUP_KIND_PHYSICAL)
        json_array_append_new(out, json_deep_copy(m));
    return out;
}

const char *backups__restore_status(const json_t *m)
{
    const char *s = json_string_value(json_object_get(json_object_get(m, "verification"), "restore_test"));
    return s ? s : "skipped";
}

/* ---- failures ---- */

static void backups_persist_failures(Backups *b);

static void backups_after_failures_written(BackupTask *t)
{
    Backups *b = t->b;
    b->failures_writing = false;
    if (b->failures_dirty && !b->closing)
        backups_persist_failures(b);
}

/* Thread-pool work runs in parallel: two writes of one file could land out of order, so the
 * failures file has at most one write in flight and the newest content is written last. */
static void backups_persist_failures(Backups *b)
{
    if (b->failures_writing) {
        b->failures_dirty = true;
        return;
    }
    b->failures_dirty = false;
    BackupTask *t = backups_task_new(b, TASK_WRITE, backups_after_failures_written);
    if (!t)
        return;
    b->failures_writing = true;
    t->path = strdup(b->failures_path);
    t->text = json_dumps(b->failures, JSON_INDENT(1));
    if (!t->path || !t->text) {
        free(t->path);
        free(t->text);
        free(t);
        b->failures_writing = false;
        return;
    }
    backups_task_queue(t);
}

static void backups_record_failure(Backups *b, BackupKind kind, const char *name, int64_t started, const char *stage,
                                   int code, const char *error)
{
    char when[32], at[32];
    backup_time_rfc3339(started, when, sizeof(when));
    backup_time_rfc3339(backups__now(), at, sizeof(at));
    json_array_append_new(b->failures, json_pack("{s:s,s:s,s:s,s:I,s:s,s:s,s:s,s:s}", "kind", backup_kind_name(kind),
                                                 "file", name, "started_at", when, "started_at_unix",
                                                 (json_int_t)started, "failed_at", at, "stage", stage, "code",
                                                 err_name(code), "error", error));
    while (json_array_size(b->failures) > BACKUP_FAILURES_KEPT)
        json_array_remove(b->failures, 0);
    backups_persist_failures(b);
}

/* ---- retention ---- */

static void backups_after_unlink(BackupTask *t)
{
    if (t->result < 0)
        events_emit(t->b->core->events, SEV_WARNING, "backup.retention", NULL, false, NULL, "retention: %s", t->err);
}

static void backups_apply_retention(Backups *b)
{
    size_t n = json_array_size(b->catalog);
    RetentionPolicy p = {.max_age_s = (int64_t)(b->cfg.retention_max_age_ms / 1000),
                         .daily = (unsigned)b->cfg.keep_daily,
                         .weekly = (unsigned)b->cfg.keep_weekly,
                         .monthly = (unsigned)b->cfg.keep_monthly};
    if (n == 0)
        return;
    /* A recovery run may be restoring (or about to restore) one of these backups, or need an older
     * one if that fails: delete nothing until it has ended. The next backup retries. */
    if (lease_held(b->core->lease)) {
        log_notice("backup", "retention skipped: a recovery run is active; it runs again after the next backup");
        return;
    }
    bool *keep = calloc(n, sizeof(*keep));
    BackupTask *t = backups_task_new(b, TASK_UNLINK, backups_after_unlink);
    if (!keep || !t) {
        free(keep);
        free(t);
        return;
    }
    /* Each kind on its own: the newest verified logical and the newest verified physical backup
     * are both always kept (retention_decide's safety rules, per kind), and a physical backup never
     * counts as the daily backup of a logical series or the other way round. A kind this version
     * does not know is never deleted. */
    size_t drop = 0;
    RetentionItem *sub = calloc(n, sizeof(*sub));
    size_t *idx = calloc(n, sizeof(*idx));
    bool *subkeep = calloc(n, sizeof(*subkeep));
    if (!sub || !idx || !subkeep) {
        free(sub);
        free(idx);
        free(subkeep);
        free(keep);
        free(t);
        return;
    }
    for (size_t i = 0; i < n; i++)
        keep[i] = true;
    for (int kind = BACKUP_KIND_LOGICAL; kind <= BACKUP_KIND_PHYSICAL; kind++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++) {
            json_t *m = json_array_get(b->catalog, i);
            if (backup_manifest_kind(m) != (BackupKind)kind)
                continue;
            sub[k] = (RetentionItem){backup_manifest_started(m), backup_manifest_verified(m)};
            idx[k++] = i;
        }
        if (k == 0)
            continue;
        drop += retention_decide(sub, k, backups__now(), &p, subkeep);
        for (size_t j = 0; j < k; j++)
            keep[idx[j]] = subkeep[j];
    }
    free(sub);
    free(idx);
    free(subkeep);
    t->names = json_array();
    t->path = strdup(b->cfg.directory);
    json_t *gone = json_array();
    for (size_t i = n; drop && i-- > 0;) {
        if (keep[i])
            continue;
        json_t *m = json_array_get(b->catalog, i);
        const char *file = json_string_value(json_object_get(m, "file"));
        const char *state = json_string_value(json_object_get(json_object_get(m, "state_files"), "file"));
        char path[4096];
        /* The manifest goes first, so a crash in between leaves a file without manifest, which the next
         * scan ignores, rather than a manifest pointing at nothing. */
        snprintf(path, sizeof(path), "%s/%s%s", b->cfg.directory, file, BACKUP_MANIFEST_SUFFIX);
        json_array_append_new(t->names, json_string(path));
        snprintf(path, sizeof(path), "%s/%s", b->cfg.directory, file);
        json_array_append_new(t->names, json_string(path));
        if (state) {
            snprintf(path, sizeof(path), "%s/%s", b->cfg.directory, state);
            json_array_append_new(t->names, json_string(path));
        }
        json_array_append_new(gone, json_string(file));
        json_array_remove(b->catalog, i);
    }
    free(keep);
    if (json_array_size(gone)) {
        json_t *det = json_pack("{s:O}", "deleted", gone);
        events_emit(b->core->events, SEV_INFO, "backup.retention", NULL, false, det, "retention: deleting %zu old backup(s)",
                    json_array_size(gone));
        json_decref(det);
        backups_task_queue(t);
    } else {
        json_decref(t->names);
        free(t->path);
        free(t);
    }
    json_decref(gone);
}

/* ---- backups ---- */

static void backups_answer_waiters(Backups *b, const BackupJobResult *res)
{
    BackupWaiter *w = b->waiters;
    b->waiters = NULL;
    while (w) {
        BackupWaiter *next = w->next;
        if (res->status == 0)
            control_reply_ok(w->call, json_pack("{s:s,s:O}", "name", res->name, "manifest", res->manifest));
        else
            control_reply_error(w->call, res->status, "backup '%s' failed (%s): %s", res->name, res->stage, res->error);
        free(w);
        w = next;
    }
}

static void backups_job_done(const BackupJobResult *res, void *data)
{
    Backups *b = data;
    Component *c = status_component(b->core->status, "backup");

    b->job = NULL;
    b->job_kind = JOB_NONE;
    if (res->tool_learned) /* else: read again next time */
        (void)backup_tool_version_set(res->kind == BACKUP_KIND_PHYSICAL ? &b->pg_basebackup_version : &b->pg_dump_version,
                                      res->tool_learned);
    if (res->manifest)
        b->last_named_started = b->job_started;
    if (res->status == 0 && res->manifest) {
        json_array_append(b->catalog, res->manifest);
        json_t *m = res->manifest;
        events_emit(b->core->events, SEV_INFO, "backup.done", NULL, false, m,
                    "%s backup '%s' done: %lld bytes (%s %lld bytes) in %.1f s%s", backup_kind_name(res->kind),
                    res->name, (long long)json_integer_value(json_object_get(m, "file_size_bytes")),
                    res->kind == BACKUP_KIND_PHYSICAL ? "tar" : "dump",
                    (long long)json_integer_value(json_object_get(m, res->kind == BACKUP_KIND_PHYSICAL
                                                                         ? "tar_size_bytes"
                                                                         : "dump_size_bytes")),
                    (double)json_integer_value(json_object_get(m, "duration_ms")) / 1000.0,
                    backup_manifest_verified(m) ? ", verified" : "");
        if (c)
            status_observe(c, true, (double)json_integer_value(json_object_get(m, "duration_ms")), NULL, NULL, 1);
        if (backup_manifest_verified(m))
            backups__condition(b, COND_VERIFY, false, SEV_ERROR, NULL, "backup '%s' verified", res->name);
        if (!b->closing)
            backups_apply_retention(b);
    } else {
        json_t *det = json_pack("{s:s,s:s,s:s,s:s}", "kind", backup_kind_name(res->kind), "file", res->name, "stage",
                                res->stage, "code", err_name(res->status));
        events_emit(b->core->events, SEV_ERROR, "backup.failed", NULL, false, det, "%s backup '%s' failed (%s): %s",
                    backup_kind_name(res->kind), res->name, res->stage, res->error);
        json_decref(det);
        if (c)
            status_observe(c, false, 0, res->error, NULL, (uint64_t)b->cfg.watch_failures);
        if (res->manifest) /* failed after its commit (the manifest is in place): still a backup */
            json_array_append(b->catalog, res->manifest);
        if (strcmp(res->stage, "verify") == 0)
            backups__condition(b, COND_VERIFY, true, SEV_ERROR, NULL, "verification of new backup '%s' failed: %s",
                              res->name, res->error);
        if (res->status != DR_ECANCELED)
            backups_record_failure(b, res->kind, res->name, res->started_at, res->stage, res->status, res->error);
    }
    backups_answer_waiters(b, res);
    if (!b->closing)
        backups__watch(b);
    status_changed(b->core->status);
    /* A backup's stream leaves free chunks in the pool workers' arena (two pieces in flight, the
     * codec's contexts): hand them back, so the footprint returns to idle between backups. CPU only
     * (madvise of free pages), well under a millisecond on this daemon's heap. */
    (void)malloc_trim(0);
    backups_maybe_closed(b);
}

const char *backups__busy_message(const Backups *b, char *buf, size_t n)
{
    char ago[48];
    cfg_format_duration((uint64_t)(backups__now() - b->job_started) * 1000, ago, sizeof(ago));
    snprintf(buf, n, "%s '%s' is running (started %s ago); one at a time",
             b->job_kind == JOB_BACKUP ? (b->job_backup_kind == BACKUP_KIND_PHYSICAL ? "a physical backup" : "a backup") : b->job_kind == JOB_VERIFY ? "a verification of" : "a test restore of",
             b->job_name, ago);
    return buf;
}

int backups__start_backup(Backups *b, bool scheduled, BackupKind kind)
{
    if (!leader_acting(b->core->leader))
        return DR_ENOTLEADER; /* high availability: the leader backs up */
    if (b->job_kind != JOB_NONE)
        return DR_EBUSY;
    /* A backup named after this very second exists already (names have one-second resolution). */
    if (backups__now() <= b->last_named_started)
        return -EAGAIN;
    b->job = backup_job_start(b->core->loop, &b->cfg, kind,
                              kind == BACKUP_KIND_PHYSICAL ? &b->pg_basebackup_version : &b->pg_dump_version,
                              backups_job_done, b);
    if (!b->job)
        return -ENOMEM;
    b->job_kind = JOB_BACKUP;
    b->job_backup_kind = kind;
    b->job_scheduled = scheduled;
    b->job_started = backups__now();
    snprintf(b->job_name, sizeof(b->job_name), "%s", backup_job_name(b->job));
    log_info("backup", "%s backup '%s' started (%s)", backup_kind_name(kind), b->job_name,
             scheduled ? "scheduled" : "on demand");
    return 0;
}

/* ---- verification on demand and on schedule ---- */

static void backups_verify_finished(Backups *b, bool ok, const char *error, json_t *reply)
{
    b->job_kind = JOB_NONE;
    b->verify = NULL;
    b->restore = NULL;
    memset(b->key, 0, sizeof(b->key));
    if (b->verify_call) {
        if (ok)
            control_reply_ok(b->verify_call, json_incref(reply));
        else
            control_reply_error(b->verify_call, DR_ECORRUPT, "%s", error);
        b->verify_call = NULL;
    }
    json_decref(b->verify_manifest);
    b->verify_manifest = NULL;
    if (!b->closing)
        backups__watch(b);
    backups_maybe_closed(b);
}

/* Replace the catalog's copy of a manifest and write it (worker). */
static void backups_update_manifest(Backups *b, json_t *m)
{
    const char *file = json_string_value(json_object_get(m, "file"));
    size_t i;
    json_t *old;
    json_array_foreach(b->catalog, i, old) {
        if (strcmp(json_string_value(json_object_get(old, "file")), file) == 0) {
            json_array_set(b->catalog, i, m);
            break;
        }
    }
    BackupTask *t = backups_task_new(b, TASK_WRITE, NULL);
    if (!t)
        return;
    t->path = strdup(b->cfg.directory);
    t->manifest = json_incref(m);
    backups_task_queue(t);
}

static void backups_on_verified(const BackupVerifyResult *vr, void *data)
{
    Backups *b = data;
    json_t *m = json_deep_copy(b->verify_manifest);
    json_t *v = json_object_get(m, "verification");
    char when[32];
    bool logical = backup_manifest_kind(m) == BACKUP_KIND_LOGICAL;
    bool ok = vr->container_ok && vr->sha_match && (logical ? vr->child_ok : vr->tar_ok);
    const char *file = json_string_value(json_object_get(m, "file"));

    backup_time_rfc3339(backups__now(), when, sizeof(when));
    if (!json_is_object(v)) {
        v = json_object();
        json_object_set_new(m, "verification", v);
    }
    json_object_set_new(v, "verified_at", json_string(when));
    json_object_set_new(v, "container", json_string(vr->container_ok ? "ok" : "failed"));
    json_object_set_new(v, "sha256_match", json_boolean(vr->sha_match));
    if (logical)
        json_object_set_new(v, "pg_restore_list", json_string(vr->child_ok ? "ok" : "failed"));
    else
        backups__verification_files(v, vr);
    json_object_set_new(v, "error", vr->error[0] ? json_string(vr->error) : json_null());
    if (!b->closing)
        backups_update_manifest(b, m);
    if (ok) {
        events_emit(b->core->events, SEV_INFO, "backup.verify", NULL, false, v, "backup '%s' verified", file);
        backups__condition(b, COND_VERIFY, false, SEV_ERROR, NULL, "backup '%s' verified", file);
    } else {
        events_emit(b->core->events, SEV_ERROR, "backup.verify", NULL, false, v, "verification of '%s' failed: %s", file,
                    vr->error);
        backups__condition(b, COND_VERIFY, true, SEV_ERROR, v, "verification of '%s' failed: %s", file, vr->error);
    }
    char msg[1200];
    snprintf(msg, sizeof(msg), "verification of '%s' failed: %s", file, vr->error[0] ? vr->error : "unknown reason");
    json_t *reply = json_pack("{s:s,s:O}", "name", file, "verification", v);
    backups_verify_finished(b, ok, msg, reply);
    json_decref(reply);
    json_decref(m);
}

static void backups_on_restored(json_t *result, void *data)
{
    Backups *b = data;
    json_t *m = json_deep_copy(b->verify_manifest);
    json_t *v = json_object_get(m, "verification");
    const char *file = json_string_value(json_object_get(m, "file"));
    bool ok = result && strcmp(json_string_value(json_object_get(result, "status")), "ok") == 0;
    const char *error = result ? json_string_value(json_object_get(result, "error")) : "out of memory";

    if (!json_is_object(v)) {
        v = json_object();
        json_object_set_new(m, "verification", v);
    }
    json_object_set_new(v, "restore_test", json_string(ok ? "ok" : "failed"));
    if (result)
        json_object_set(m, "restore_test", result);
    if (!b->closing)
        backups_update_manifest(b, m);
    if (ok) {
        events_emit(b->core->events, SEV_INFO, "backup.restore_test", NULL, false, result,
                    "test restore of '%s' passed in %.1f s", file,
                    (double)json_integer_value(json_object_get(result, "duration_ms")) / 1000.0);
        backups__condition(b, COND_RESTORE, false, SEV_ERROR, NULL, "test restore of '%s' passed", file);
    } else {
        events_emit(b->core->events, SEV_ERROR, "backup.restore_test", NULL, false, result, "test restore of '%s' failed: %s",
                    file, error ? error : "unknown");
        backups__condition(b, COND_RESTORE, true, SEV_ERROR, result, "test restore of '%s' failed: %s", file,
                          error ? error : "unknown");
    }
    char msg[1200];
    snprintf(msg, sizeof(msg), "test restore of '%s' failed: %s", file, error ? error : "unknown");
    json_t *reply = json_pack("{s:s,s:O}", "name", file, "restore_test", result ? result : json_null());
    backups_verify_finished(b, ok, msg, reply);
    json_decref(reply);
    json_decref(m);
}

static void backups_after_key(BackupTask *t)
{
    Backups *b = t->b;
    char path[4096];
    const char *file = json_string_value(json_object_get(b->verify_manifest, "file"));
    const char *sha = json_string_value(json_object_get(b->verify_manifest, "sha256"));

    if (t->result < 0 || b->closing) {
        char msg[700];
        snprintf(msg, sizeof(msg), "cannot verify '%s': %s", file, b->closing ? "the daemon is stopping" : t->err);
        if (!b->closing)
            events_emit(b->core->events, SEV_ERROR, "backup.verify", NULL, false, NULL, "%s", msg);
        backups_verify_finished(b, false, msg, NULL);
        return;
    }
    memcpy(b->key, t->key, sizeof(b->key));
    snprintf(path, sizeof(path), "%s/%s", b->cfg.directory, file);
    if (b->verify_restore) {
        b->job_kind = JOB_RESTORE;
        b->restore = backup_test_restore_start(b->core->loop, &b->cfg, file, b->key, sha, backups_on_restored, b);
        if (!b->restore && b->job_kind == JOB_RESTORE && b->verify_manifest)
            backups_verify_finished(b, false, "cannot start the test restore", NULL);
        return;
    }
    const char *argv[] = {b->cfg.pg_restore, "--list", NULL};
    bool logical = backup_manifest_kind(b->verify_manifest) == BACKUP_KIND_LOGICAL;
    /* A physical backup's files are checked in the algorithm it was taken with (older manifests
     * do not say: PostgreSQL's default, which is what pg_basebackup wrote without the option). */
    PgManifestAlgo algo = BACKUP_MANIFEST_CHECKSUMS;
    const char *taken = json_string_value(
        json_object_get(json_object_get(b->verify_manifest, "backup_manifest"), "checksum_algorithm"));
    if (taken && !pgmanifest_algo_parse(taken, &algo))
        algo = BACKUP_MANIFEST_CHECKSUMS;
    BackupVerifyOptions o = {.path = path, .key = b->key, .expected_sha256_hex = sha, .argv = logical ? argv : NULL,
                             .timeout_ms = b->cfg.dump_timeout_ms,
                             .priority = {(int)b->cfg.nice, (PrioIoClass)b->cfg.ioprio},
                             .base_tar = !logical,
                             .base_algo = algo};
    b->verify = backup_verify_start(b->core->loop, &o, backups_on_verified, b);
    if (!b->verify)
        backups_verify_finished(b, false, "out of memory", NULL);
}

/* Start a verification (restore=false) or test restore of manifest m. */
int backups__start_verify(Backups *b, json_t *m, bool restore, CtlCall *call)
{
    if (!leader_acting(b->core->leader))
        return DR_ENOTLEADER; /* the verified flags are the leader's to write */
    if (b->job_kind != JOB_NONE)
        return DR_EBUSY;
    if (backup_manifest_kind(m) == BACKUP_KIND_UNKNOWN || (restore && backup_manifest_kind(m) != BACKUP_KIND_LOGICAL))
        return -EOPNOTSUPP;
    BackupTask *t = backups_task_new(b, TASK_LOADKEY, backups_after_key);
    if (!t)
        return -ENOMEM;
    t->cfg = &b->cfg; /* read-only while the task runs; a reload replaces b->cfg only on the loop */
    if (asprintf(&t->path, "%s/%s", b->cfg.directory, json_string_value(json_object_get(m, "file"))) < 0)
        t->path = NULL; /* then the writing key, and a key id mismatch is reported as such */
    b->job_kind = restore ? JOB_RESTORE : JOB_VERIFY;
    b->job_started = backups__now();
    snprintf(b->job_name, sizeof(b->job_name), "%s", json_string_value(json_object_get(m, "file")));
    b->verify_manifest = json_deep_copy(m);
    b->verify_restore = restore;
    b->verify_call = call;
    log_info("backup", "%s of '%s' started", restore ? "test restore" : "verification", b->job_name);
    backups_task_queue(t);
    return 0;
}

/* ---- schedule ---- */

static void backups_on_tick(uv_timer_t *h)
{
    Backups *b = h->data;
    int64_t now = schedclock_now_s();
    char msg[512];

    if (b->closing)
        return;
    backups__start_deferred(b); /* before the schedules: an operator asked first */
    if (!b->enabled)
        return;
    for (size_t i = 0; i < b->n_sched + b->n_phys_sched; i++) {
        bool phys = i >= b->n_sched;
        size_t j = phys ? i - b->n_sched : i;
        int64_t *due = phys ? &b->phys_next_due[j] : &b->next_due[j];
        if (now < *due)
            continue;
        int r = backups__start_backup(b, true, phys ? BACKUP_KIND_PHYSICAL : BACKUP_KIND_LOGICAL);
        if (r == DR_ENOTLEADER) {
            /* a follower: the leader takes this one; ours is the next */
            if (cron_next(phys ? &b->phys_sched[j] : &b->sched[j], now, due) < 0)
                *due = INT64_MAX;
            continue;
        }
        if (r == -EAGAIN)
            continue; /* the previous backup started this very second: next tick */
        if (cron_next(phys ? &b->phys_sched[j] : &b->sched[j], now, due) < 0)
            *due = INT64_MAX;
        if (r == DR_EBUSY)
            events_emit(b->core->events, SEV_WARNING, "backup.skipped", NULL, false, NULL,
                        "scheduled %sbackup '%s' skipped: %s", phys ? "physical " : "",
                        phys ? b->cfg.physical_schedules[j] : b->cfg.schedules[j],
                        backups__busy_message(b, msg, sizeof(msg)));
        else if (r < 0)
            events_emit(b->core->events, SEV_ERROR, "backup.failed", NULL, false, NULL,
                        "scheduled %sbackup not started: %s", phys ? "physical " : "", err_str(r));
    }
    if (b->has_restore && now >= b->restore_next) {
        if (cron_next(&b->restore_cron, now, &b->restore_next) < 0)
            b->restore_next = INT64_MAX;
        json_t *m = backups__newest_of(b, BACKUP_KIND_LOGICAL); /* a test restore is pg_restore's */
        int r = m ? backups__start_verify(b, m, true, NULL) : -ENOENT;
        if (r == DR_ENOTLEADER)
            ; /* a follower: the leader's test restore */
        else if (r == DR_EBUSY)
            events_emit(b->core->events, SEV_WARNING, "backup.skipped", NULL, false, NULL,
                        "scheduled test restore skipped: %s", backups__busy_message(b, msg, sizeof(msg)));
        else if (r == -ENOENT)
            events_emit(b->core->events, SEV_WARNING, "backup.restore_test", NULL, false, NULL,
                        "scheduled test restore skipped: there is no backup yet");
    }
    if (uv_now(b->core->loop) - b->last_watch_ms >= BACKUP_WATCH_EVERY_MS)
        backups__watch(b);
}

/* ---- life cycle ---- */

static void backups_after_scan(BackupTask *t)
{
    Backups *b = t->b;
    json_decref(b->catalog);
    b->catalog = t->scan.manifests;
    t->scan.manifests = NULL;
    /* The failures file is read at the first scan only: later scans (a new directory after a
     * reload) could read it while a newer version is still being written. */
    if (!b->failures_loaded && t->scan.failures) {
        json_array_extend(t->scan.failures, b->failures); /* any failure recorded before the scan */
        json_decref(b->failures);
        b->failures = t->scan.failures;
        t->scan.failures = NULL;
        b->failures_loaded = true;
    }
    snprintf(b->scan_error, sizeof(b->scan_error), "%s", t->scan.error);
    b->scanned = true;
    if (b->scan_error[0])
        log_warning("backup", "%s", b->scan_error);
    else
        log_info("backup", "catalog: %zu backup(s) in '%s'", json_array_size(b->catalog), t->path);
    if (!b->closing)
        backups__watch(b);
}

static void backups_rescan(Backups *b)
{
    BackupTask *t = backups_task_new(b, TASK_SCAN, backups_after_scan);
    if (!t)
        return;
    t->path = strdup(b->cfg.directory);
    t->path2 = strdup(b->failures_path);
    if (!t->path || !t->path2) {
        free(t->path);
        free(t->path2);
        free(t);
        return;
    }
    backups_task_queue(t);
}

Backups *backups_new(Core *d)
{
    Backups *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->core = d;
    b->catalog = json_array();
    b->failures = json_array();
    if (!b->catalog || !b->failures || backups__commands_register(b) < 0) {
        json_decref(b->catalog);
        json_decref(b->failures);
        free(b);
        return NULL;
    }
    uv_timer_init(d->loop, &b->tick);
    b->tick.data = b;
    return b;
}

int backups_check_config(const Backups *b, const Config *cfg, char *err, size_t errlen)
{
    const ConfigBackup *bc = &cfg->backup;
    char why[256];
    CronExpr e;

    (void)b;
    if (!bc->enabled)
        return 0;
    for (size_t i = 0; i < bc->n_schedules; i++)
        if (cron_parse(bc->schedules[i], &e, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "bad schedule '%s': %s", bc->schedules[i], why);
            return DR_ECONFIG;
        }
    for (size_t i = 0; i < bc->n_physical_schedules; i++)
        if (cron_parse(bc->physical_schedules[i], &e, why, sizeof(why)) < 0) {
            snprintf(err, errlen, "bad physical schedule '%s': %s", bc->physical_schedules[i], why);
            return DR_ECONFIG;
        }
    if (bc->restore_schedule && cron_parse(bc->restore_schedule, &e, why, sizeof(why)) < 0) {
        snprintf(err, errlen, "bad restore_schedule '%s': %s", bc->restore_schedule, why);
        return DR_ECONFIG;
    }
    return 0;
}

static void backups_log_removed(const char *path, long long size, void *data)
{
    (void)data;
    log_warning("backup", "removed '%s' (%lld bytes) left by an interrupted backup or restore", path, size);
}

static void backups_log_swept(const char *path, const char *what)
{
    log_warning("backup", "removed '%s': %s", path, what);
}

static bool backups_is_spool(const char *name)
{
    size_t n = strlen(name);
    return strcmp(name, ".standby-staging.dump") == 0 ||
           (strncmp(name, ".restore-", 9) == 0 && n > 14 && strcmp(name + n - 5, ".dump") == 0);
}

int backups_clean_leftovers(const Config *cfg)
{
    const char *dir = cfg->backup.directory;
    int count = 0;

    if (!cfg->backup.enabled || !dir)
        return 0;
    int r = atomicfile_remove_temporaries(dir, backups_log_removed, NULL);
    if (r < 0) {
        if (r != -ENOENT)
            log_warning("backup", "cannot look for leftovers in '%s': %s", dir, err_str(r));
        return 0;
    }
    count += r;
    count += backup_catalog_sweep_uncommitted(dir, backups_log_swept);
    DIR *dh = opendir(dir);
    struct dirent *de;
    while (dh && (de = readdir(dh))) {
        char path[4096];
        struct stat st;
        if (!backups_is_spool(de->d_name) || snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path))
            continue;
        if (lstat(path, &st) == 0 && S_ISREG(st.st_mode) && unlink(path) == 0) {
            log_warning("backup", "removed '%s' (%lld bytes): the plaintext spool of a restore that was interrupted",
                        path, (long long)st.st_size);
            count++;
        }
    }
    if (dh)
        closedir(dh);
    return count;
}

/* backup.conninfo and backup.physical.conninfo (as configured in c) as they follow the primary. */
static int backups_follow(Backups *b, const ConfigBackup *c)
{
    char *ci = pgconn_follow_apply(&b->follow, c->conninfo, NULL);
    char *phys = pgconn_follow_apply(&b->follow, c->physical_conninfo, NULL);
    if ((c->conninfo && !ci) || (c->physical_conninfo && !phys)) {
        free(ci);
        free(phys);
        return -ENOMEM;
    }
    free(b->cfg.conninfo);
    free(b->cfg.physical_conninfo);
    b->cfg.conninfo = ci;
    b->cfg.physical_conninfo = phys;
    return 0;
}

int backups_follow_primary(Backups *b, const char *from, const char *to)
{
    int r = pgconn_follow_set(&b->follow, from, to);
    if (r <= 0 || !b->enabled)
        return r < 0 ? r : 0;
    return backups_follow(b, &b->core->cfg->backup);
}

int backups_apply_config(Backups *b, const Config *cfg)
{
    ConfigBackup copy;
    bool rescan;
    int64_t now = schedclock_now_s();

    if (b->closing)
        return DR_ECANCELED;
    status_component(b->core->status, "backup");
    if (!cfg->backup.enabled) {
        b->enabled = false;
        uv_timer_stop(&b->tick);
        backups__watch(b);
        return 0;
    }
    if (config_backup_copy(&cfg->backup, &copy) < 0)
        return -ENOMEM;
    rescan = !b->enabled || !b->cfg.directory || strcmp(b->cfg.directory, copy.directory) != 0;
    config_backup_free(&b->cfg);
    b->cfg = copy;
    b->enabled = true;
    if (backups_follow(b, &cfg->backup) < 0)
        return -ENOMEM;
    free(b->cluster);
    b->cluster = strdup(cfg->cluster);
    free(b->failures_path);
    if (asprintf(&b->failures_path, "%s/backup-failures.json", cfg->state_dir) < 0)
        b->failures_path = NULL;
    free(b->sched);
    free(b->next_due);
    b->n_sched = b->cfg.n_schedules;
    b->sched = calloc(b->n_sched ? b->n_sched : 1, sizeof(*b->sched));
    b->next_due = calloc(b->n_sched ? b->n_sched : 1, sizeof(*b->next_due));
    free(b->phys_sched);
    free(b->phys_next_due);
    b->n_phys_sched = b->cfg.n_physical_schedules;
    b->phys_sched = calloc(b->n_phys_sched ? b->n_phys_sched : 1, sizeof(*b->phys_sched));
    b->phys_next_due = calloc(b->n_phys_sched ? b->n_phys_sched : 1, sizeof(*b->phys_next_due));
    if (!b->cluster || !b->failures_path || !b->sched || !b->next_due || !b->phys_sched || !b->phys_next_due) {
        b->n_sched = b->n_phys_sched = 0; /* the tick must not walk arrays that are not there */
        return -ENOMEM;
    }
    for (size_t i = 0; i < b->n_sched; i++) {
        if (cron_parse(b->cfg.schedules[i], &b->sched[i], NULL, 0) < 0 ||
            cron_next(&b->sched[i], now, &b->next_due[i]) < 0)
            b->next_due[i] = INT64_MAX;
    }
    for (size_t i = 0; i < b->n_phys_sched; i++) {
        if (cron_parse(b->cfg.physical_schedules[i], &b->phys_sched[i], NULL, 0) < 0 ||
            cron_next(&b->phys_sched[i], now, &b->phys_next_due[i]) < 0)
            b->phys_next_due[i] = INT64_MAX;
    }
    b->has_restore = b->cfg.restore_schedule && cron_parse(b->cfg.restore_schedule, &b->restore_cron, NULL, 0) == 0 &&
                     cron_next(&b->restore_cron, now, &b->restore_next) == 0;
    if (rescan) {
        b->scanned = false;
        backups_rescan(b);
    } else {
        backups__watch(b); /* new limits take effect now, not at the next periodic check */
    }
    uv_timer_start(&b->tick, backups_on_tick, BACKUP_TICK_MS, BACKUP_TICK_MS);
    return 0;
}

static void backups_on_timer_closed(uv_handle_t *h)
{
    Backups *b = h->data;
    b->pending--;
    backups_maybe_closed(b);
}

void backups_close(Backups *b, void (*closed_cb)(void *data), void *data)
{
    b->closing = true;
    b->closed_cb = closed_cb;
    b->closed_data = data;
    /* The control socket closes first and answers every pending call itself ("canceled"): forget
     * ours without replying. */
    while (b->waiters) {
        BackupWaiter *n = b->waiters->next;
        free(b->waiters);
        b->waiters = n;
    }
    while (b->deferred) {
        BackupWaiter *n = b->deferred->next;
        free(b->deferred);
        b->deferred = n;
    }
    b->verify_call = NULL;
    b->pending++;
    uv_close((uv_handle_t *)&b->tick, backups_on_timer_closed);
    if (b->job)
        backup_job_cancel(b->job);
    if (b->verify)
        backup_verify_cancel(b->verify);
    if (b->restore)
        backup_test_restore_cancel(b->restore);
}
