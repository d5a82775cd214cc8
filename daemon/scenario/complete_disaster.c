/*
 * complete_disaster: the primary host is gone; a recovery host rebuilds the platform from the
 * off-site bucket, as one static table, its definition and its own steps (drctl execute
 * --scenario complete_disaster; docs/complete-disaster.md, docs/scenarios.md).
 *
 * Owns the runbook "the site is lost": on a host whose configuration points at the same bucket
 * (repository.s3) and the same backup key, with an empty state directory and no local backups,
 * plan from the bucket before any run starts (the newest verified base backup whose manifest is
 * there and the WAL after it, continuous: refused with the reason otherwise), halt trading (the
 * venue, confirmed, else the out-of-band halt: app_crash's, with this section's copy of its
 * keys), restore the lost host's state files from the bucket into state_dir/history (its catalog
 * first), download the base backup in ranges and verify it as it arrives (every chunk
 * authenticated with the key, the SHA-256 against the manifest; spooled encrypted, never as
 * plaintext), unpack it into the configured empty data directory (the base backup is the
 * cluster: no initdb; 0700, its owner the server's user), put the platform's state files from the
 * backup's state tar at their configured paths (complete_disaster_platform.c), fetch and verify every WAL file after
 * it into a staging directory (a timeline's last .partial made a full segment file), recover to
 * the end of the archive with point_in_time's steps (no recovery_target_time: PostgreSQL replays
 * what restore_command finds, then promotes; on the configured port), validate, put the recovery
 * settings back and remove the spool and the staged WAL, reconcile with the exchange (the fills
 * after the recovery point replayed), resume in shadow, wait for an operator's approval (always:
 * new hardware), live, watch.
 *
 * What the run decided is in its context (journaled) besides point_in_time's: "state" {directory,
 * files, bytes, catalog_backups} (restore_state_files: the lost host's state files from the
 * bucket, complete_disaster_state.c), "download" {name,
 * bytes, ranges, chunks, sha256, ms}, "restore" {data_directory, uid, gid, bytes, ms, files_synced,
 * sync_ms: the unpacked tree is fsynced before the restore is recorded}, "wal" (with
 * downloaded_bytes, newest_file, newest_archived_ms, ms). The report has the RTO, the RPO
 * (detection minus the newest archived point recovered), the bytes downloaded and where the time
 * went. Every step is safe to run again: the download starts over, the restore empties the data
 * directory it marked, staging rewrites its files.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/backup/backup.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "synctree.h"
#include "scenario/complete_disaster_internal.h"
#include "scenario/scn_internal.h"
#include "scenario/steps/steps.h"
#include "walarchive.h"

enum {
    DETECTED,
    PLANNED,
    HALTED,
    STATE_RESTORED,
    DOWNLOADED,
    RESTORED,
    PLATFORM_RESTORED,
    STAGED,
    STARTED,
    PROMOTED,
    VALIDATED,
    TIDIED,
    RECONCILED,
    SHADOW,
    APPROVED,
    LIVE,
    WATCHED,
    NOT_POSSIBLE,
    STAYED_HALTED,
    NOT_RECOVERED,
    NOT_VALIDATED,
    NOT_RECONCILED,
    WATCH_FAILED,
    HALTED_AFTER_WATCH,
    N_STATES
};

/* While the base backup is unpacked, the writeback of what tar has written so far is started this
 * often (as point_in_time does), so that the final sync waits only for the tail. */
#define CD_WRITEBACK_MS 500u

static const CdConfig *cd_cfg(const ScnRun *run)
{
    return run->cfg.data;
}

static CdRun *cd_run(const ScnRun *run)
{
    return run->own;
}

static const json_t *cd_plan_of(const ScnRun *run)
{
    return json_object_get(run->ctx, "plan");
}

static const char *cd_base_str(const ScnRun *run, const char *key)
{
    return json_string_value(json_object_get(json_object_get(cd_plan_of(run), "base_backup"), key));
}

/* ---- work on the thread pool (the step's CdWork: st->node_op, freed with the step) ---- */

static void cd_work_free_v(void *w)
{
    cd__work_free(w);
}

CdWork *cd__work_of(ScnStep *st)
{
    if (st->node_op)
        return st->node_op;
    CdWork *w = calloc(1, sizeof(*w));
    if (!w || config_backup_copy(&st->run->bcfg, &w->backup) < 0) {
        free(w);
        scn_finish(st, -ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(w->dir, sizeof(w->dir), "%s", cd_run(st->run)->pitr.data_dir);
    snprintf(w->spool, sizeof(w->spool), "%s", cd_run(st->run)->spool);
    snprintf(w->wal_dir, sizeof(w->wal_dir), "%s", cd_run(st->run)->pitr.wal_dir);
    w->seg_size = cd_cfg(st->run)->segment_size;
    w->uid = (uid_t)scn_ctx_int(st->run, "restore", "uid");
    w->gid = (gid_t)scn_ctx_int(st->run, "restore", "gid");
    w->st = st;
    st->node_op = w;
    st->node_op_free = cd_work_free_v;
    return w;
}

static void cd_work_run(uv_work_t *req)
{
    CdWork *w = req->data;
    w->err[0] = '\0';
    w->result = w->fn(w);
}

static void cd_work_after(uv_work_t *req, int status)
{
    CdWork *w = req->data;
    ScnStep *st = w->st;
    if (status < 0 && w->result == 0)
        w->result = status;
    if (st->cancelled || fsm_call_cancelled(st->call))
        scn_cancelled(st);
    else
        w->then(st, w);
}

void cd__queue(ScnStep *st, CdWork *w, int (*fn)(CdWork *w), void (*then)(ScnStep *st, CdWork *w))
{
    w->fn = fn;
    w->then = then;
    w->req.data = w;
    int r = uv_queue_work(st->run->core->loop, &w->req, cd_work_run, cd_work_after);
    if (r < 0)
        scn_finish(st, r, "cannot queue work on the thread pool: %s", err_str(r));
}

static bool cd_http_cancelled(ScnStep *st, int err)
{
    st->http_id = 0;
    if (err == DR_ECANCELED || st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return true;
    }
    return false;
}

/* ---- halt_trading: the venue, else the out-of-band halt ---- */

static void step_halt(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (st)
        app_crash__halt(st, &cd_cfg(st->run)->halt);
}

static void plan_halt(FsmCall *call, void *ctx, FsmDone done)
{
    app_crash__plan_halt(call, &cd_cfg(ctx)->halt, done);
}

/* ---- download_base_backup: ranges, each verified on the pool and spooled (encrypted) ---- */

static void download_range(ScnStep *st);

static void download_unspooled(ScnStep *st, CdWork *w)
{
    if (w->result < 0)
        log_warning("scenario", "%s, ignoring: remove it by hand", w->err);
    scn_finish(st, w->fail, "%s", w->fail_msg);
}

/* A failed download: its spool (a part of the container, encrypted) removed, then st finished. */
static void download_fail(ScnStep *st, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void download_fail(ScnStep *st, int code, const char *fmt, ...)
{
    CdWork *w = st->node_op;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->fail_msg, sizeof(w->fail_msg), fmt, ap);
    va_end(ap);
    w->fail = code;
    cd__queue(st, w, cd__unspool_work, download_unspooled);
}

static void download_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the download: %s", err_str(status));
    else
        scn_finish(st, 0, "base backup '%s' downloaded from the bucket and verified (%lld bytes in %lld ranges, %lld "
                   "chunks, SHA-256 as its manifest's)", scn_ctx_str(run, "download", "name"),
                   (long long)scn_ctx_int(run, "download", "bytes"), (long long)scn_ctx_int(run, "download", "ranges"),
                   (long long)scn_ctx_int(run, "download", "chunks"));
}

static void download_verified(ScnStep *st, CdWork *w)
{
    if (w->result < 0) {
        download_fail(st, w->result, "%s", w->err);
        return;
    }
    if (!w->last) {
        st->idx++;
        download_range(st);
        return;
    }
    const char *want = cd_base_str(st->run, "sha256");
    if (!want || strcmp(want, w->sha)) {
        download_fail(st, DR_ECORRUPT, "the base backup from the bucket has SHA-256 %s, its manifest says %s: not used",
                   w->sha, want ? want : "(none)");
        return;
    }
    json_t *d = json_pack("{s:s,s:I,s:I,s:I,s:s,s:I}", "name", w->name, "bytes", (json_int_t)w->offset, "ranges",
                          (json_int_t)st->idx + 1, "chunks", (json_int_t)w->chunks, "sha256", w->sha, "ms",
                          (json_int_t)(uv_now(st->run->core->loop) - st->t0));
    scn_context_set(st->run, "download", d, download_recorded, st);
}

static void download_got(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    ScnStep *st = data;
    if (cd_http_cancelled(st, err))
        return;
    CdWork *w = st->node_op;
    uint64_t size = (uint64_t)json_integer_value(json_object_get(json_object_get(cd_plan_of(st->run), "base_backup"),
                                                                 "file_size_bytes"));
    uint64_t want = size - w->offset < cd_cfg(st->run)->range_size ? size - w->offset : cd_cfg(st->run)->range_size;
    if (err != 0) {
        download_fail(st, err, "%s", errmsg);
        return;
    }
    if (resp->body_len != want) {
        download_fail(st, DR_ECORRUPT, "the bucket answered %zu bytes for the range at %llu of '%s', not %llu", resp->body_len,
                   (unsigned long long)w->offset, w->name, (unsigned long long)want);
        return;
    }
    if (!(w->buf = malloc(want ? want : 1))) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    memcpy(w->buf, resp->body, want);
    w->len = want;
    w->last = w->offset + want >= size;
    cd__queue(st, w, cd__range_work, download_verified);
}

static void download_range(ScnStep *st)
{
    CdWork *w = st->node_op;
    char msg[600];
    uint64_t size = (uint64_t)json_integer_value(json_object_get(json_object_get(cd_plan_of(st->run), "base_backup"),
                                                                 "file_size_bytes"));
    uint64_t len = size - w->offset < cd_cfg(st->run)->range_size ? size - w->offset : cd_cfg(st->run)->range_size;
    int r = cd__get(st->run->core, cd_cfg(st->run)->fetch_timeout_ms, false, w->name, w->offset, len,
                    (size_t)len + 4096, download_got, st, &st->http_id, msg, sizeof(msg));
    if (r < 0)
        download_fail(st, r, "%s", msg);
}

static void download_prepared(ScnStep *st, CdWork *w)
{
    if (w->result < 0) {
        scn_finish(st, w->result, "%s (nothing was written into it)", w->err);
        return;
    }
    w->offset = 0;
    st->idx = 0;
    download_range(st);
}

static void step_download(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    const char *name = cd_base_str(st->run, "name");
    if (!name || strchr(name, '/') || json_integer_value(json_object_get(json_object_get(cd_plan_of(st->run),
                                                                                         "base_backup"),
                                                                         "file_size_bytes")) <= 0) {
        scn_finish(st, DR_ECORRUPT, "the run's plan names no base backup");
        return;
    }
    CdWork *w = cd__work_of(st);
    if (!w)
        return;
    snprintf(w->name, sizeof(w->name), "%s", name);
    cd__queue(st, w, cd__prepare_work, download_prepared);
}

static void plan_download(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char msg[4800];
    snprintf(msg, sizeof(msg), "would download the newest verified base backup from the bucket in ranges of %llu "
             "bytes, each verified with the backup key as it arrives, into '%s' (encrypted)",
             (unsigned long long)cd_cfg(run)->range_size, cd_run(run)->spool);
    done(call, 0, msg);
}

/* ---- restore_base_backup: the spooled container unpacked into the data directory ---- */

static void restore_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the restore: %s", err_str(status));
    else
        scn_finish(st, 0, "base backup '%s' unpacked into '%s' and synced (%lld bytes, %lld files fsynced in %lld ms; "
                   "no initdb: the base backup is the cluster)", scn_ctx_str(run, "download", "name"),
                   cd_run(run)->pitr.data_dir, (long long)scn_ctx_int(run, "restore", "bytes"),
                   (long long)scn_ctx_int(run, "restore", "files_synced"),
                   (long long)scn_ctx_int(run, "restore", "sync_ms"));
}

/* The tree is on disk and its marker gone: only now is the restore recorded. */
static void restore_synced(ScnStep *st, CdWork *w)
{
    if (w->result < 0) {
        scn_finish(st, w->result, "%s", w->err);
        return;
    }
    json_t *r = json_pack("{s:s,s:I,s:I,s:I,s:I,s:I,s:I}", "data_directory", w->dir, "uid", (json_int_t)w->uid,
                          "gid", (json_int_t)w->gid, "bytes", (json_int_t)w->offset, "ms",
                          (json_int_t)(uv_now(st->run->core->loop) - st->t0), "files_synced",
                          (json_int_t)w->synced_files, "sync_ms", (json_int_t)w->sync_ms);
    scn_context_set(st->run, "restore", r, restore_recorded, st);
}

static void restore_unpacked(int status, const char *error, uint64_t bytes, void *data)
{
    ScnStep *st = data;
    st->unpack = NULL;
    synctree_ticker_stop(cd_run(st->run)->pitr.writeback);
    cd_run(st->run)->pitr.writeback = NULL;
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    if (status < 0) {
        scn_finish(st, status, "cannot unpack base backup '%s': %s", scn_ctx_str(st->run, "download", "name"), error);
        return;
    }
    CdWork *w = st->node_op;
    w->offset = bytes;
    cd__queue(st, w, cd__marked_work, restore_synced);
}

static void restore_prepared(ScnStep *st, CdWork *w)
{
    char path[4500];
    if (w->result < 0) {
        scn_finish(st, w->result, "%s", w->err);
        return;
    }
    const PitrConfig *c = &cd_cfg(st->run)->pitr;
    const char *prog[] = {c->tar, "-x", "-f", "-", "-C", w->dir, NULL};
    const char *v[64];
    size_t k = 0;
    for (size_t i = 0; i < c->n_run_as && k + 1 < 64; i++)
        v[k++] = c->run_as[i];
    for (size_t i = 0; prog[i] && k + 1 < 64; i++)
        v[k++] = prog[i];
    v[k] = NULL;
    snprintf(path, sizeof(path), "%s/%s", w->spool, scn_ctx_str(st->run, "download", "name"));
    int r = backup_unpack_file(st->run->caps->backups, path, scn_ctx_str(st->run, "download", "sha256"), v,
                               c->start_timeout_ms, restore_unpacked, st, &st->unpack);
    if (r < 0) {
        scn_finish(st, r, "cannot unpack the spooled base backup: %s", err_str(r));
        return;
    }
    /* Without it the unpack is only slower to sync at the end: no failure, ignoring. */
    cd_run(st->run)->pitr.writeback = synctree_ticker_start(st->run->core->loop, w->dir, CD_WRITEBACK_MS);
}

static void step_restore(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    if (!scn_ctx_str(st->run, "download", "name") || !scn_ctx_str(st->run, "download", "sha256")) {
        scn_finish(st, DR_ECORRUPT, "the run recorded no download");
        return;
    }
    CdWork *w = cd__work_of(st);
    if (w)
        cd__queue(st, w, cd__prepare_work, restore_prepared);
}

static void plan_restore(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char msg[4600];
    snprintf(msg, sizeof(msg), "would unpack the base backup into '%s' (it must exist and be empty, owned by the "
             "server's user; made 0700), with '%s' run as the server's user", cd_run(run)->pitr.data_dir,
             cd_cfg(run)->pitr.tar);
    done(call, 0, msg);
}

/* ---- stage_wal: every WAL file of the plan fetched, verified, decrypted, staged ---- */

static void stage_next(ScnStep *st);

static void stage_written(ScnStep *st, CdWork *w)
{
    if (w->result < 0) {
        scn_finish(st, w->result, "%s", w->err);
        return;
    }
    json_t *a = st->acc;
    json_object_set_new(a, "files", json_integer(json_integer_value(json_object_get(a, "files")) + 1));
    json_object_set_new(a, "bytes", json_integer(json_integer_value(json_object_get(a, "bytes")) + (json_int_t)w->len));
    if (!strstr(w->name, ".history") && w->created_at * 1000 >= json_integer_value(json_object_get(a,
                                                                                                "newest_archived_ms"))) {
        json_object_set_new(a, "newest_archived_ms", json_integer((json_int_t)w->created_at * 1000));
        json_object_set_new(a, "newest_file", json_string(w->name));
    }
    st->idx++;
    stage_next(st);
}

static void stage_got(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    ScnStep *st = data;
    if (cd_http_cancelled(st, err))
        return;
    CdWork *w = st->node_op;
    if (err != 0) {
        scn_finish(st, err, "%s", errmsg);
        return;
    }
    if (!(w->buf = malloc(resp->body_len ? resp->body_len : 1))) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    memcpy(w->buf, resp->body, resp->body_len);
    w->len = resp->body_len;
    json_t *a = st->acc;
    json_object_set_new(a, "downloaded_bytes", json_integer(json_integer_value(json_object_get(a, "downloaded_bytes")) +
                                                            (json_int_t)resp->body_len));
    cd__queue(st, w, cd__wal_work, stage_written);
}

static void stage_next(ScnStep *st)
{
    CdWork *w = st->node_op;
    const json_t *wal = json_object_get(cd_plan_of(st->run), "wal");
    const char *name = json_string_value(json_array_get(json_object_get(wal, "files"), st->idx));
    char msg[600];
    uint32_t tli;
    uint64_t segno;
    if (!name) {
        json_t *acc = st->acc;
        st->acc = NULL;
        json_object_set_new(acc, "ms", json_integer((json_int_t)(uv_now(st->run->core->loop) - st->t0)));
        pitr__stage_settle(st, acc); /* to the end: no recovery_target_time */
        return;
    }
    WalFileKind k = walarchive_classify(name, w->seg_size, &tli, &segno);
    if (k == WALFILE_HISTORY)
        snprintf(w->name, sizeof(w->name), "%08X.history", tli);
    else if (k == WALFILE_SEGMENT || k == WALFILE_PARTIAL_END)
        walarchive_seg_name(tli, segno, w->seg_size, w->name);
    else {
        scn_finish(st, DR_ECORRUPT, "'%s' of the plan is not a WAL archive file", name);
        return;
    }
    w->pad = k == WALFILE_PARTIAL_END; /* the timeline's last piece: a full segment file, zeros after its end */
    int r = cd__get(st->run->core, cd_cfg(st->run)->fetch_timeout_ms, true, name, 0, 0,
                    (size_t)(w->seg_size + w->seg_size / 4 + (1u << 20)), stage_got, st, &st->http_id, msg,
                    sizeof(msg));
    if (r < 0)
        scn_finish(st, r, "%s", msg);
}

static void step_stage(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    if (!cd__work_of(st))
        return;
    if (!(st->acc = json_pack("{s:I,s:I,s:I,s:I,s:n}", "files", (json_int_t)0, "bytes", (json_int_t)0,
                              "downloaded_bytes", (json_int_t)0, "newest_archived_ms", (json_int_t)0, "newest_file"))) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    st->idx = 0;
    stage_next(st);
}

static void plan_stage(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char msg[4600];
    snprintf(msg, sizeof(msg), "would fetch the WAL after the base backup from the bucket, verify and decrypt it into "
             "'%s', and recover to the end of the archive (no recovery_target_time)", cd_run(run)->pitr.wal_dir);
    done(call, 0, msg);
}

/* ---- validate_recovery ---- */

static void step_validate(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char where[200];
    if (!st)
        return;
    char *ci = pitr__side_conninfo(st->run, st->run->database);
    snprintf(where, sizeof(where), "'%s' of the recovered server (port %lld)", st->run->database,
             (long long)cd_cfg(st->run)->pitr.side_port);
    if (!ci)
        scn_finish(st, -ENOMEM, "out of memory");
    else
        scn_validate(st, cd_cfg(st->run)->pitr.validation_queries, cd_cfg(st->run)->pitr.n_validation_queries, ci,
                     where);
    free(ci);
}

static void plan_validate(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    scn_plan_validation(call, cd_cfg(run)->pitr.validation_queries, cd_cfg(run)->pitr.n_validation_queries,
                        "the recovered server", done);
}

/* ---- finish_recovery: the settings back, the spool and the staged WAL removed ---- */

static void tidied(ScnStep *st, CdWork *w)
{
    if (w->result < 0)
        scn_finish(st, w->result, "%s", w->err);
    else
        scn_finish(st, 0, "the base backup's postgresql.auto.conf is back (no restore_command); the spool '%s' and "
                   "the staged WAL '%s' are removed", w->spool, w->wal_dir);
}

static void step_tidy(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    CdWork *w = cd__work_of(st);
    if (w)
        cd__queue(st, w, cd__tidy_work, tidied);
}

/* ---- approve_resume ---- */

static void step_approve_resume(FsmCall *call, void *ctx, FsmDone done)
{
    (void)ctx;
    done(call, 0, "an operator approved the live resume on the recovery host");
}

/* ---- the table ---- */

static const FsmState cd_states[N_STATES] = {
    [DETECTED] = {"requested", FSM_STATE_ACTIVE},
    [PLANNED] = {"planned", FSM_STATE_ACTIVE},
    [HALTED] = {"halted", FSM_STATE_ACTIVE},
    [STATE_RESTORED] = {"state_restored", FSM_STATE_ACTIVE},
    [DOWNLOADED] = {"base_backup_downloaded", FSM_STATE_ACTIVE},
    [RESTORED] = {"base_backup_restored", FSM_STATE_ACTIVE},
    [PLATFORM_RESTORED] = {"platform_state_restored", FSM_STATE_ACTIVE},
    [STAGED] = {"wal_staged", FSM_STATE_ACTIVE},
    [STARTED] = {"recovery_started", FSM_STATE_ACTIVE},
    [PROMOTED] = {"recovered", FSM_STATE_ACTIVE},
    [VALIDATED] = {"validated", FSM_STATE_ACTIVE},
    [TIDIED] = {"recovery_finished", FSM_STATE_ACTIVE},
    [RECONCILED] = {"reconciled", FSM_STATE_ACTIVE},
    [SHADOW] = {"trading_in_shadow", FSM_STATE_ACTIVE},
    [APPROVED] = {"resume_approved", FSM_STATE_ACTIVE},
    [LIVE] = {"live", FSM_STATE_ACTIVE},
    [WATCHED] = {"watch_passed", FSM_STATE_SUCCESS},
    [NOT_POSSIBLE] = {"not_possible", FSM_STATE_FAILURE},
    [STAYED_HALTED] = {"stayed_halted", FSM_STATE_FAILURE},
    [NOT_RECOVERED] = {"not_recovered", FSM_STATE_FAILURE},
    [NOT_VALIDATED] = {"not_validated", FSM_STATE_FAILURE},
    [NOT_RECONCILED] = {"not_reconciled", FSM_STATE_FAILURE},
    [WATCH_FAILED] = {"watch_failed", FSM_STATE_ACTIVE},
    [HALTED_AFTER_WATCH] = {"halted_after_watch", FSM_STATE_FAILURE},
};

static const FsmRow cd_rows[] = {
    /* from, to, step, sentence, step fn, probe, plan, cancel, timeout ms, attempts, idempotent, gate, on_failure */
    {DETECTED, PLANNED, "plan_recovery", "the bucket holds a verified base backup and continuous WAL after it",
     pitr__step_plan_recovery, NULL, NULL, NULL, 60000, 1, true, FSM_GATE_NONE, NOT_POSSIBLE},
    {PLANNED, HALTED, "halt_trading", "trading is halted: the venue confirms it, or the out-of-band halt ran",
     step_halt, NULL, plan_halt, scn_cancel, 150000, 2, true, FSM_GATE_NONE, STAYED_HALTED},
    {HALTED, STATE_RESTORED, "restore_state_files", "the lost host's state files (its catalog first) are in "
     "state_dir/history", cd__step_restore_state, NULL, cd__plan_restore_state, scn_cancel, 600000, 3, true,
     FSM_GATE_NONE, STAYED_HALTED},
    {STATE_RESTORED, DOWNLOADED, "download_base_backup", "the base backup is downloaded from the bucket and verified",
     step_download, NULL, plan_download, scn_cancel, 6u * 3600u * 1000u, 3, true, FSM_GATE_NONE, STAYED_HALTED},
    {DOWNLOADED, RESTORED, "restore_base_backup", "the base backup is unpacked into the empty data directory",
     step_restore, NULL, plan_restore, scn_cancel, 6u * 3600u * 1000u, 2, true, FSM_GATE_NONE, STAYED_HALTED},
    {RESTORED, PLATFORM_RESTORED, "restore_platform_state", "the platform's state files from the base backup's state "
     "tar are at their configured paths (trading stays halted)", cd__step_restore_platform, NULL,
     cd__plan_restore_platform, scn_cancel, 600000, 3, true, FSM_GATE_NONE, STAYED_HALTED},
    {PLATFORM_RESTORED, STAGED, "stage_wal", "the WAL after the base backup is fetched, verified and staged",
     step_stage, NULL, plan_stage, scn_cancel, 3600u * 1000u, 3, true, FSM_GATE_NONE, STAYED_HALTED},
    {STAGED, STARTED, "start_recovery", "the recovered server starts on the configured port",
     pitr__step_start_recovery, NULL, pitr__plan_start_recovery, scn_cancel, 120000, 2, true, FSM_GATE_NONE,
     NOT_RECOVERED},
    {STARTED, PROMOTED, "wait_for_promotion", "the recovered server replayed to the end of the archive and was promoted",
     pitr__step_wait_for_promotion, NULL, NULL, scn_cancel, 7u * 3600u * 1000u, 1, true, FSM_GATE_NONE, NOT_RECOVERED},
    {PROMOTED, VALIDATED, "validate_recovery", "the validation queries pass on the recovered server",
     step_validate, NULL, plan_validate, scn_cancel, 600000, 2, true, FSM_GATE_NONE, NOT_VALIDATED},
    {VALIDATED, TIDIED, "finish_recovery", "the recovery settings are put back, the spool and the staged WAL removed",
     step_tidy, NULL, NULL, NULL, 600000, 2, true, FSM_GATE_NONE, NOT_VALIDATED},
    {TIDIED, RECONCILED, "reconcile", "the recovered database matches the exchange (fills since the recovery point "
     "replayed)", scn_step_reconcile, NULL, scn_plan_reconcile, NULL, 600000, 2, true, FSM_GATE_NONE, NOT_RECONCILED},
    {RECONCILED, SHADOW, "resume_shadow", "trading resumes in shadow mode (paper only)",
     scn_step_resume_shadow, NULL, scn_plan_resume_shadow, NULL, 30000, 3, true, FSM_GATE_NONE, FSM_NO_STATE},
    {SHADOW, APPROVED, "approve_resume", "an operator approved the live resume (the platform is on new hardware)",
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

static const FsmTable cd_table = {"complete_disaster", cd_states, N_STATES, cd_rows,
                                  (int)(sizeof(cd_rows) / sizeof(cd_rows[0])), NULL, 0};

static bool cd_may_resume(const ScnRun *run)
{
    int s = fsm_run_state(run->fsm);
    return run->resume_allowed && (s == RECONCILED || s == APPROVED);
}

/* RPO: the data goes back to the newest archived point recovered (the newest WAL file's time). */
static int64_t cd_restore_point_ms(const ScnRun *run)
{
    return scn_ctx_int(run, "wal", "newest_archived_ms");
}

static void cd_report_extras(const ScnRun *run, json_t *rep)
{
    static const char *const keys[] = {"plan", "kill_switch", "state", "download", "restore", "wal", "promotion",
                                       "validation"};
    json_t *p = json_object();
    char at[40] = "";
    if (!p)
        return;
    int64_t point = cd_restore_point_ms(run);
    if (point)
        clock_format_utc_ms(point, at, sizeof(at));
    json_object_set_new(p, "recovered_to", point ? json_string(at) : json_null());
    json_object_set_new(p, "recovered_to_ms", json_integer(point));
    json_object_set_new(p, "bytes_downloaded", json_integer(scn_ctx_int(run, "download", "bytes") +
                                                            scn_ctx_int(run, "wal", "downloaded_bytes")));
    json_object_set_new(p, "time_ms", json_pack("{s:I,s:I,s:I,s:I}", "download", (json_int_t)scn_ctx_int(run, "download",
                                                                                                         "ms"),
                                                "unpack", (json_int_t)scn_ctx_int(run, "restore", "ms"), "wal",
                                                (json_int_t)scn_ctx_int(run, "wal", "ms"), "replay",
                                                (json_int_t)scn_ctx_int(run, "promotion", "wait_ms")));
    json_object_set_new(p, "port", json_integer(cd_cfg(run)->pitr.side_port));
    const json_t *ps = json_object_get(run->ctx, "platform_state");
    bool named = json_object_get(json_object_get(cd_plan_of(run), "base_backup"), "state_files") != NULL;
    json_object_set_new(p, "state_files", ps ? json_deep_copy(ps)
                                             : json_pack("{s:b,s:b,s:s}", "in_manifest", named, "restored", 0, "why",
                                                         "the run did not reach restore_platform_state"));
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const json_t *v = json_object_get(run->ctx, keys[i]);
        json_object_set_new(p, keys[i], v ? json_deep_copy(v) : json_null());
    }
    json_object_set_new(rep, "complete_disaster", p);
}

/* The data directory is the configured one itself; the spool and the staged WAL beside it. */
static int cd_ctx_init(ScnRun *run, char *err, size_t errlen)
{
    const PitrConfig *c = &cd_cfg(run)->pitr;
    CdRun *p = cd_run(run);
    char parent[4096] = "";
    (void)err;
    (void)errlen;
    if (c->scratch_directory)
        snprintf(parent, sizeof(parent), "%s", c->scratch_directory);
    else if (c->data_directory) {
        snprintf(parent, sizeof(parent), "%s", c->data_directory);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent)
            *slash = '\0';
    }
    snprintf(p->pitr.data_dir, sizeof(p->pitr.data_dir), "%s", c->data_directory ? c->data_directory : "");
    snprintf(p->pitr.wal_dir, sizeof(p->pitr.wal_dir), "%.4000s/disaster-%s.wal", parent, run->tag);
    snprintf(p->pitr.log, sizeof(p->pitr.log), "%.4000s/recovery-server.log", p->pitr.data_dir);
    snprintf(p->spool, sizeof(p->spool), "%.4000s/disaster-%s.spool", parent, run->tag);
    return 0;
}

/* ---- drctl execute --scenario complete_disaster: planned from the bucket first, then the run ---- */

typedef struct CdRequest {
    Scenarios *s;
    CtlCall *call;
    FsmMode mode;
    uint64_t http_id;
    char reason[600];
} CdRequest;

static void cd_request_planned(int status, json_t *plan, const char *err, void *data)
{
    CdRequest *q = data;
    char id[96], why[512] = "";
    if (status < 0 || q->s->closing) {
        control_reply_error(q->call, status < 0 ? status : DR_ECANCELED, "%s",
                            status < 0 ? err : "the daemon is stopping");
    } else if (!json_is_true(json_object_get(plan, "ok"))) {
        control_reply_error(q->call, DR_ESTATE, "a recovery from the bucket is not possible: %s (no run started, "
                            "nothing was touched)", json_string_value(json_object_get(plan, "why")));
    } else {
        json_t *params = json_pack("{s:b,s:O}", "to_end", 1, "plan", plan);
        int r = scn_trigger_params(q->s, "complete_disaster", q->reason, clock_wall_ms(), q->mode, params, NULL, id,
                                   sizeof(id), why, sizeof(why));
        json_decref(params);
        if (r < 0)
            control_reply_error(q->call, r == -EBUSY ? DR_EBUSY : r, "%s", why);
        else
            control_reply_ok(q->call, json_pack("{s:s,s:s,s:s,s:O}", "run", id, "scenario", "complete_disaster",
                                                "mode", fsm_mode_name(q->mode), "plan", plan));
    }
    json_decref(plan);
    free(q);
}

/* What is missing for a run ("" if nothing; the text may be in buf). */
static const char *cd_unconfigured(const Scenarios *s, const CdConfig *c, char *buf, size_t n)
{
    const char *key = !c->pitr.data_directory ? "data_directory" : !c->pitr.side_port ? "port" : NULL;
    if (!s->core->cfg->offsite.enabled)
        return "no repository.s3 section: there is no bucket to recover from";
    if (!s->caps.backups || !s->core->cfg->backup.directory)
        return "no backup section: the backup key is needed to verify and decrypt what the bucket holds";
    if (!key)
        return "";
    snprintf(buf, n, "scenarios.complete_disaster.%s is not set", key);
    return buf;
}

static void cd_execute(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    const char *reason = json_string_value(json_object_get(args, "reason"));
    const ConfigScenario *sc = config_scenario(s->core->cfg, "complete_disaster");
    char msg[600], buf[200];
    const char *why = sc ? cd_unconfigured(s, sc->data, buf, sizeof(buf)) : "no configuration";
    if (why[0]) {
        control_reply_error(call, DR_ECONFIG, "%s: no run started", why);
        return;
    }
    if (s->active || s->loading) {
        control_reply_error(call, DR_EBUSY, "%s",
                            s->active ? "a recovery run is already active" : "unfinished runs are still being loaded");
        return;
    }
    CdRequest *q = calloc(1, sizeof(*q));
    if (!q) {
        control_reply_error(call, -ENOMEM, "out of memory");
        return;
    }
    const PeerCred *pc = control_call_peer(call);
    const CdConfig *c = sc->data;
    q->s = s;
    q->call = call;
    q->mode = json_is_true(json_object_get(args, "manual")) || sc->manual ? FSM_MODE_MANUAL : FSM_MODE_AUTOMATIC;
    snprintf(q->reason, sizeof(q->reason), "operator request (uid %ld): complete disaster, recover from the bucket%s%s",
             pc ? (long)pc->uid : -1L, reason ? ": " : "", reason ? reason : "");
    log_info("scenario", "complete_disaster: planning from the bucket '%s'", s->core->cfg->offsite.bucket);
    int r = cd__plan(s->core, c->segment_size, c->fetch_timeout_ms, cd_request_planned, q, &q->http_id, msg,
                     sizeof(msg));
    if (r < 0) {
        control_reply_error(call, r, "%s", msg);
        free(q);
    }
}

const ScenarioDef scenario_complete_disaster = {
    .name = "complete_disaster",
    .short_name = "disaster",
    .summary = "on a recovery host: halt, restore the newest verified base backup and the WAL after it from the "
               "off-site bucket, recover to the end of the archive, validate, reconcile, resume after an operator's "
               "approval",
    .table = &cd_table,
    .handles = NULL, /* an operator starts it, on the recovery host */
    .live_step = "resume_live",
    .ctx_size = sizeof(CdRun),
    .ctx_init = cd_ctx_init,
    .may_resume = cd_may_resume,
    .restore_point_ms = cd_restore_point_ms,
    .report_extras = cd_report_extras,
    .config = &complete_disaster_config_section,
    .execute = cd_execute,
};
