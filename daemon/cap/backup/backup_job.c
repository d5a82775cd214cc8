/*
 * backup_job: one backup, logical (pg_dump) or physical (pg_basebackup), from the child's stdout
 * to a verified, catalogued file.
 *
 * Owns the pipeline of one backup (the same for both kinds; "the dump" is pg_dump's archive or
 * pg_basebackup's tar):
 *   1. loop: ask the server for the database name, version and size (pgconn; also proves the
 *      conninfo works before anything is written);
 *   2. worker: load the key, open the temporary of the backup file (lib/atomicfile), capture the
 *      configured state files into an encrypted tar beside it (backup_state.c), stat the pg_dump
 *      program;
 *   2b. loop: unless the module remembers the version of that very file, run `pg_dump --version`
 *      (lib/child) for the manifest's pg_dump_version (or pg_basebackup_version);
 *   3. loop: spawn `pg_dump -Fc -Z0`, or `pg_basebackup -D - -Ft -X none` (the tar of the data
 *      directory, with the server's backup_label and backup_manifest inside; no WAL: tar to stdout
 *      cannot stream it, the WAL archive supplies it); its stdout is collected into a buffer of up to
 *      BACKUP_HANDOFF_BYTES, which is handed to a worker (compress, encrypt, write) while the next
 *      buffer fills; when both are full, pg_dump's stdout is paused (child_stdout_pause), so memory
 *      stays at about two buffers whatever the database size, and the loop never compresses,
 *      encrypts, hashes or writes;
 *   4. worker: finish the stream (final chunk), giving size counters and the file's SHA-256;
 *   5. verify the temporary (backup_verify: decrypt, every chunk, SHA-256, decompress, and for a
 *      logical backup pg_restore --list on the stream, for a physical one the tar check below on
 *      the decrypted stream) unless disabled. A physical backup's tar is also checked as it
 *      streams past, on the worker (backup_basetar): it must be a complete tar holding
 *      PG_VERSION, global/pg_control, backup_label and the server's backup_manifest, whose
 *      WAL-Ranges give the manifest's start and stop LSN and timeline, and every file that
 *      manifest lists must be in the tar with its size and CRC32C; else the backup fails;
 *   6. worker: commit (fsync, rename to the final name, fsync the directory), then write the
 *      manifest atomically.
 * Any failure before 6 discards the temporaries: nothing appears under a final name.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomicfile.h"
#include "cap/backup/backup_internal.h"
#include "child.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "pgconn.h"

#define BACKUP_VERSION_TIMEOUT_MS 10000

/* The server answering: its address as it sees the connection ("local": a unix socket) and port. */
#define BACKUP_SERVER_SQL "coalesce(host(inet_server_addr()), 'local') || ':' || current_setting('port')"
#define BACKUP_DB_INFO_SQL                                                                                  \
    "SELECT current_database(), current_setting('server_version'), "                                       \
    "pg_database_size(current_database())::text, " BACKUP_SERVER_SQL
/* Physical: the size is the cluster's (every database; the data directory holds a bit more). */
#define BACKUP_CLUSTER_INFO_SQL                                                                             \
    "SELECT current_database(), current_setting('server_version'), "                                       \
    "(SELECT sum(pg_database_size(oid)) FROM pg_database)::bigint::text, " BACKUP_SERVER_SQL

struct BackupJob {
    uv_loop_t *loop;
    ConfigBackup cfg; /* private copy */
    BackupKind kind;  /* logical or physical */
    char *tool;       /* cfg.pg_dump or cfg.physical_pg_basebackup (borrowed from cfg) */
    const char *tool_name; /* "pg_dump" or "pg_basebackup", for messages */
    const char *conninfo;  /* cfg.conninfo or cfg.physical_conninfo */
    BackupWalRange wal;    /* physical: from the server's backup_manifest in the tar */
    BackupBaseTar *base;   /* physical, worker side: the tar checked as it streams past */
    BackupJobDoneFn done;
    void *data;

    char name[256];
    char state_name[256];
    char path[4096];
    char state_path[4096];
    int64_t started_at;  /* Unix seconds */
    int64_t finished_at;
    int64_t finished_at_ms; /* the same, Unix ms (the manifest's finished_at_ms) */
    uint64_t started_mono_ms;

    PgConn *pg;
    char *database;
    char *server_version;
    char *server;          /* "address:port" of the server that answered (BACKUP_SERVER_SQL) */
    int64_t db_size;

    BackupToolVersion tool_known;   /* what the module remembered (copy) */
    BackupToolVersion tool_learned; /* read by this job */
    BackupToolId tool_id;           /* worker: the file `tool` names ... */
    bool tool_id_ok;                /* ... when stat worked */
    const char *tool_version;       /* for the manifest: borrowed from known or learned, or NULL */
    ChildProc *version_child;       /* `<tool> --version` */

    /* worker-owned while a work item runs */
    uv_work_t work;
    uint8_t key[BCF_KEY_LEN];
    AtomicFile *af, *state_af;
    BackupStreamWriter *writer;
    BackupStreamStats stats;
    json_t *state_info; /* manifest's "state_files" */
    BackupBuf work_buf;
    int work_err;
    const char *work_stage; /* where work_err belongs when not the work item's own stage */
    char work_msg[1024];
    json_t *manifest;
    bool committed;

    /* loop side */
    ChildProc *dump;
    BackupBuf fill;
    bool worker_busy, paused, dump_exited, killed, canceled, ending;
    int64_t dump_status;
    int dump_signal;
    BackupVerify *verify;

    int status;
    const char *stage;
    char errmsg[1024];
};

static void backup_job_pump(BackupJob *job);
static void backup_job_end(BackupJob *job);
static void backup_job_spawn_dump(BackupJob *job);
static void backup_job_read_version(BackupJob *job);

const char *backup_job_name(const BackupJob *job)
{
    return job->name;
}

static void backup_job_fail(BackupJob *job, int status, const char *stage, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Record the first failure; later ones are consequences. */
static void backup_job_fail(BackupJob *job, int status, const char *stage, const char *fmt, ...)
{
    va_list ap;
    if (job->status < 0)
        return;
    job->status = status < 0 ? status : DR_EINTERNAL;
    job->stage = stage;
    va_start(ap, fmt);
    vsnprintf(job->errmsg, sizeof(job->errmsg), fmt, ap);
    va_end(ap);
}

static int backup_job_queue(BackupJob *job, uv_work_cb fn, uv_after_work_cb after)
{
    job->worker_busy = true;
    job->work.data = job;
    int r = uv_queue_work(job->loop, &job->work, fn, after);
    if (r < 0)
        job->worker_busy = false;
    return r;
}

/* The file checksums pg_basebackup is told to write (backup.physical.manifest_checksums). */
static PgManifestAlgo backup_job_checksums(const BackupJob *job)
{
    int a = job->cfg.physical_manifest_checksums;
    return a >= 0 && a < PGMANIFEST_ALGO_N ? (PgManifestAlgo)a : BACKUP_MANIFEST_CHECKSUMS;
}

/* ---- sinks (worker) ---- */

static int backup_job_file_sink(void *ctx, const uint8_t *data, size_t len)
{
    return atomicfile_append(ctx, data, len);
}

/* ---- step 2: prepare (worker) ---- */

static void backup_job_prepare_work(uv_work_t *req)
{
    BackupJob *job = req->data;
    char err[512] = "";
    struct stat st;
    int r;

    r = backup_load_key(&job->cfg, job->key, err, sizeof(err));
    if (r < 0) {
        job->work_err = r;
        snprintf(job->work_msg, sizeof(job->work_msg), "%s", err);
        return;
    }
    if (mkdir(job->cfg.directory, 0700) < 0 && errno != EEXIST) {
        job->work_err = -errno;
        snprintf(job->work_msg, sizeof(job->work_msg), "cannot create backup directory '%s': %s",
                 job->cfg.directory, strerror(errno));
        return;
    }
    if (stat(job->path, &st) == 0) {
        job->work_err = -EEXIST;
        snprintf(job->work_msg, sizeof(job->work_msg), "'%.900s' already exists", job->path);
        return;
    }
    job->af = atomicfile_open(job->path, 0600, &r);
    if (!job->af) {
        job->work_err = r;
        snprintf(job->work_msg, sizeof(job->work_msg), "cannot create a file in '%s': %s", job->cfg.directory,
                 err_str(r));
        return;
    }
    job->writer = backupstream_writer_new(job->key, (CodecKind)job->cfg.codec, (int)job->cfg.level,
                                          (uint32_t)job->cfg.chunk_size, backup_job_file_sink, job->af);
    if (!job->writer || bcf_writer_set_created_at(backupstream_writer_bcf(job->writer), job->started_at) < 0) {
        job->work_err = -ENOMEM;
        snprintf(job->work_msg, sizeof(job->work_msg), "cannot set up the encryption pipeline");
        return;
    }
    if (job->kind == BACKUP_KIND_PHYSICAL) {
        job->base = backup_basetar_new(backup_job_checksums(job));
        if (!job->base) {
            job->work_err = -ENOMEM;
            snprintf(job->work_msg, sizeof(job->work_msg), "out of memory");
            return;
        }
    }
    if (job->cfg.n_state_files) {
        r = backup_state_capture(&job->cfg, job->key, job->started_at, job->state_path, job->state_name,
                                 &job->state_af, &job->state_info, job->work_msg, sizeof(job->work_msg));
        if (r < 0)
            job->work_err = r;
    }
    if (stat(job->tool, &st) == 0) { /* a name without '/' is not found here: read every time */
        job->tool_id = (BackupToolId){.dev = (uint64_t)st.st_dev,
                                      .ino = (uint64_t)st.st_ino,
                                      .size = (uint64_t)st.st_size,
                                      .mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec};
        job->tool_id_ok = true;
    }
}

/* ---- step 3: stream pg_dump through workers ---- */

/* The priority of this backup's work: pg_dump, its verification, the compressing workers. */
static PrioSpec backup_job_priority(const BackupJob *job)
{
    return (PrioSpec){(int)job->cfg.nice, (PrioIoClass)job->cfg.ioprio};
}

static void backup_job_write_work(uv_work_t *req)
{
    BackupJob *job = req->data;
    PrioSpec prio = backup_job_priority(job);
    PrioSaved saved;
    /* compression, encryption and the write at backup priority, then the pool thread is put
     * back; what cannot be lowered stays as it is, ignoring */
    (void)prio_thread_lower(&prio, &saved);
    if (job->base && !job->work_err &&
        backup_basetar_update(job->base, job->work_buf.data, job->work_buf.len, job->work_msg, sizeof(job->work_msg)) < 0)
        job->work_err = DR_ECORRUPT;
    int r = backupstream_writer_write(job->writer, job->work_buf.data, job->work_buf.len);
    (void)prio_thread_restore(&saved);
    if (r < 0 && !job->work_err) {
        job->work_err = r;
        snprintf(job->work_msg, sizeof(job->work_msg), "%s", backupstream_writer_errmsg(job->writer));
    }
    job->work_buf.len = 0;
}

static void backup_job_write_done(uv_work_t *req, int status)
{
    BackupJob *job = req->data;
    job->worker_busy = false;
    if (status < 0)
        backup_job_fail(job, status, "write", "worker canceled");
    if (job->work_err)
        backup_job_fail(job, job->work_err, "write", "writing '%s': %s", job->name, job->work_msg);
    backup_job_pump(job);
}

static void backup_job_on_stdout(ChildProc *c, const char *buf, size_t len, void *data)
{
    BackupJob *job = data;
    if (job->status < 0)
        return; /* failing: drain and discard until the child is gone */
    if (backup_buf_append(&job->fill, buf, len) < 0) {
        backup_job_fail(job, -ENOMEM, "dump", "out of memory buffering %s output", job->tool_name);
        backup_job_pump(job);
        return;
    }
    if (job->fill.len >= BACKUP_HANDOFF_BYTES) {
        backup_job_pump(job);
        if (job->fill.len >= BACKUP_HANDOFF_BYTES && !job->paused) {
            child_stdout_pause(c);
            job->paused = true;
        }
    }
}

static void backup_job_on_dump_exit(ChildProc *c, int64_t exit_status, int term_signal, void *data)
{
    BackupJob *job = data;
    char how[96], line[512] = "";
    size_t n = 0;
    const char *tail = child_stderr(c, &n);

    job->dump_exited = true;
    job->dump_status = exit_status;
    job->dump_signal = term_signal;
    if (exit_status != 0 || term_signal != 0) {
        child_describe_exit(exit_status, term_signal, how, sizeof(how));
        if (tail && n) {
            const char *end = tail + n;
            while (end > tail && (end[-1] == '\n' || end[-1] == '\r'))
                end--;
            const char *start = end;
            while (start > tail && start[-1] != '\n')
                start--;
            snprintf(line, sizeof(line), ": %.*s", (int)(end - start), start);
        }
        backup_job_fail(job, DR_ECHILD, "dump", "%s %s%s%s", job->tool_name, how, child_timed_out(c) ? " (timed out)" : "",
                        line);
    }
    backup_job_pump(job);
}

/* ---- step 4: finish the stream (worker) ---- */

/* Physical (worker): the tar is complete, holds what a data directory cannot do without, and
 * every file the server's backup_manifest lists is in it with its size and checksum; the manifest
 * says which WAL the backup needs. A broken tar is a failed write; files that differ from the
 * server's record fail the verification. */
static int backup_job_check_tar(BackupJob *job)
{
    int r = backup_basetar_finish(job->base, &job->wal, job->work_msg, sizeof(job->work_msg));
    if (r == -EBADMSG)
        return DR_ECORRUPT;
    if (r < 0)
        job->work_stage = "verify";
    return r == -ENOMEM ? r : r < 0 ? DR_ECORRUPT : 0;
}

static void backup_job_finish_work(uv_work_t *req)
{
    BackupJob *job = req->data;
    PrioSpec prio = backup_job_priority(job);
    PrioSaved saved;
    (void)prio_thread_lower(&prio, &saved);
    int r = backupstream_writer_finish(job->writer, &job->stats);
    (void)prio_thread_restore(&saved);
    if (r < 0) {
        job->work_err = r;
        snprintf(job->work_msg, sizeof(job->work_msg), "%s", backupstream_writer_errmsg(job->writer));
        return;
    }
    if (job->base && (r = backup_job_check_tar(job)) < 0)
        job->work_err = r;
}

/* ---- step 6: commit (worker) ---- */

/* Test hook: DRSUP_CRASH_IN_BACKUP_COMMIT=N kills the daemon at commit step N (1: the state set
 * renamed, 2: the dump renamed too, the manifest not written). Never set in production. */
static void backup_job_crash_point(int step)
{
    const char *at = getenv("DRSUP_CRASH_IN_BACKUP_COMMIT");
    if (at && atoi(at) == step)
        raise(SIGKILL);
}

static void backup_job_commit_work(uv_work_t *req)
{
    BackupJob *job = req->data;
    int r = 0;

    if (job->state_af) {
        r = atomicfile_commit(job->state_af);
        job->state_af = NULL;
        if (r < 0) {
            job->work_err = r;
            snprintf(job->work_msg, sizeof(job->work_msg), "commit '%s': %s", job->state_name, err_str(r));
            return;
        }
    }
    backup_job_crash_point(1);
    r = atomicfile_commit(job->af);
    job->af = NULL;
    if (r < 0) {
        job->work_err = r;
        snprintf(job->work_msg, sizeof(job->work_msg), "commit '%s': %s", job->name, err_str(r));
        if (job->state_info)
            unlink(job->state_path);
        return;
    }
    backup_job_crash_point(2);
    /* The manifest is the commit record: until it is in place the backup does not exist (the
     * start-up sweep removes files no manifest names), so a manifest that cannot be written
     * takes the files back out. */
    r = backup_manifest_write(job->cfg.directory, job->manifest);
    if (r < 0) {
        job->work_err = r;
        snprintf(job->work_msg, sizeof(job->work_msg), "writing the manifest of '%s': %s (nothing kept)", job->name,
                 err_str(r));
        unlink(job->path);
        if (job->state_info)
            unlink(job->state_path);
        atomicfile_fsync_dir(job->cfg.directory);
        return;
    }
    job->committed = true;
}

static json_t *backup_job_manifest(BackupJob *job, const BackupVerifyResult *vr)
{
    char started[32], finished[32], verified[32], keyid[2 * BCF_KEY_ID_LEN + 1];
    uint8_t kid[BCF_KEY_ID_LEN];
    json_t *verification;

    bcf_key_id(job->key, kid);
    bcf_hex(kid, sizeof(kid), keyid);
    backup_time_rfc3339(job->started_at, started, sizeof(started));
    backup_time_rfc3339(job->finished_at, finished, sizeof(finished));
    backup_time_rfc3339(backups__now(), verified, sizeof(verified));
    if (vr)
        verification = json_pack("{s:s,s:s,s:b,s:s,s:s,s:n}", "verified_at", verified, "container",
                                  vr->container_ok ? "ok" : "failed", "sha256_match", vr->sha_match,
                                  "pg_restore_list", vr->child_ok ? "ok" : "failed", "restore_test", "skipped",
                                  "error");
    else
        verification = json_pack("{s:n,s:s,s:b,s:s,s:s,s:n}", "verified_at", "container", "skipped", "sha256_match",
                                 0, "pg_restore_list", "skipped", "restore_test", "skipped", "error");
    json_t *m = json_pack("{s:i,s:s,s:s,s:s,s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:s,s:I,s:I,s:I,s:s,s:s,s:o,s:I}",
                          "manifest_version", 1, "file", job->name, "format", "bcf1", "database",
                          job->database ? job->database : "", "server_version",
                          job->server_version ? job->server_version : "", "pg_dump_version",
                          job->tool_version ? job->tool_version : "", "started_at",
                          started, "finished_at", finished, "db_size_bytes", (json_int_t)job->db_size,
                          "dump_size_bytes", (json_int_t)job->stats.plain_bytes, "payload_size_bytes",
                          (json_int_t)job->stats.payload_bytes, "file_size_bytes", (json_int_t)job->stats.file_bytes,
                          "codec", codec_name((CodecKind)job->cfg.codec), "codec_level",
                          (json_int_t)codec_effective_level((CodecKind)job->cfg.codec, (int)job->cfg.level),
                          "chunk_size", (json_int_t)job->cfg.chunk_size, "chunks", (json_int_t)job->stats.chunks,
                          "key_id", keyid, "sha256", job->stats.file_sha256_hex, "verification", verification,
                          "duration_ms", (json_int_t)(uv_now(job->loop) - job->started_mono_ms));
    if (m) /* the finish at the precision a recovery's choice of base backup needs (wal_plan) */
        json_object_set_new(m, "finished_at_ms", json_integer((json_int_t)job->finished_at_ms));
    if (m && job->state_info)
        json_object_set(m, "state_files", job->state_info);
    if (m && job->server) /* after a failover: which server the backup came from */
        json_object_set_new(m, "server", json_string(job->server));
    if (!m)
        return NULL;
    if (job->kind == BACKUP_KIND_LOGICAL) {
        json_object_set_new(m, "kind", json_string("logical"));
        return m;
    }
    /* Physical: the whole cluster's data directory as pg_basebackup's tar. The server's own
     * backup_manifest (a checksum of every file) and backup_label are members of that tar. */
    json_t *wal = json_pack("{s:s,s:s,s:I,s:I}", "start_lsn", job->wal.start_lsn, "stop_lsn", job->wal.stop_lsn,
                            "timeline", (json_int_t)job->wal.timeline, "stop_timeline",
                            (json_int_t)job->wal.stop_timeline);
    json_t *smf = json_pack("{s:s,s:s,s:I,s:s,s:I,s:I,s:s}", "where", "in the tar", "member", BACKUP_TAR_MANIFEST,
                            "files", (json_int_t)job->wal.files, "manifest_checksum", job->wal.manifest_checksum,
                            "tar_members", (json_int_t)job->wal.tar_members, "files_verified",
                            (json_int_t)job->wal.files_verified, "checksum_algorithm", job->wal.checksum_algorithm);
    json_object_del(m, "database");
    json_object_del(m, "pg_dump_version");
    json_object_del(m, "db_size_bytes");
    json_object_del(m, "dump_size_bytes");
    json_object_del(json_object_get(m, "verification"), "pg_restore_list");
    backups__verification_files(json_object_get(m, "verification"), vr);
    if (!wal || !smf || json_object_set_new(m, "kind", json_string("physical")) < 0 ||
        json_object_set_new(m, "payload", json_string("tar")) < 0 ||
        json_object_set_new(m, "pg_basebackup_version", json_string(job->tool_version ? job->tool_version : "")) < 0 ||
        json_object_set_new(m, "cluster_size_bytes", json_integer((json_int_t)job->db_size)) < 0 ||
        json_object_set_new(m, "tar_size_bytes", json_integer((json_int_t)job->stats.plain_bytes)) < 0 ||
        json_object_set_new(m, "backup_manifest", smf) < 0 ||
        json_object_set_new(m, "wal", wal) < 0) {
        json_decref(m);
        return NULL;
    }
    return m;
}

static void backup_job_commit_done(uv_work_t *req, int status)
{
    BackupJob *job = req->data;
    job->worker_busy = false;
    if (status < 0 || job->work_err)
        backup_job_fail(job, status < 0 ? status : job->work_err, "commit", "%s",
                        job->work_msg[0] ? job->work_msg : "worker canceled");
    backup_job_end(job);
}

static void backup_job_commit(BackupJob *job, const BackupVerifyResult *vr)
{
    job->manifest = backup_job_manifest(job, vr);
    if (!job->manifest) {
        backup_job_fail(job, -ENOMEM, "commit", "out of memory building the manifest");
        backup_job_end(job);
        return;
    }
    if (backup_job_queue(job, backup_job_commit_work, backup_job_commit_done) < 0) {
        backup_job_fail(job, DR_EINTERNAL, "commit", "cannot queue work");
        backup_job_end(job);
    }
}

/* ---- step 5: verify ---- */

static void backup_job_verified(const BackupVerifyResult *vr, void *data)
{
    BackupJob *job = data;
    job->verify = NULL;
    if (job->canceled) {
        backup_job_fail(job, DR_ECANCELED, "verify", "canceled: the daemon is stopping");
        backup_job_end(job);
        return;
    }
    if (!vr->container_ok || !vr->sha_match || (job->kind == BACKUP_KIND_LOGICAL && !vr->child_ok) ||
        (job->kind == BACKUP_KIND_PHYSICAL && !vr->tar_ok)) {
        backup_job_fail(job, DR_ECORRUPT, "verify", "verification of '%s' failed: %s", job->name,
                        vr->error[0] ? vr->error : "unknown reason");
        backup_job_end(job);
        return;
    }
    backup_job_commit(job, vr);
}

static void backup_job_finish_done(uv_work_t *req, int status)
{
    BackupJob *job = req->data;
    job->worker_busy = false;
    if (status < 0 || job->work_err)
        backup_job_fail(job, status < 0 ? status : job->work_err, job->work_stage ? job->work_stage : "write",
                        "finishing '%s': %s", job->name, job->work_msg);
    if (job->status < 0) {
        backup_job_end(job);
        return;
    }
    job->finished_at_ms = clock_wall_ms();
    job->finished_at = job->finished_at_ms / 1000;
    if (!job->cfg.verify_after_backup) {
        backup_job_commit(job, NULL);
        return;
    }
    const char *argv[] = {job->cfg.pg_restore, "--list", NULL};
    BackupVerifyOptions o = {.path = atomicfile_temp_path(job->af),
                             .key = job->key,
                             .expected_sha256_hex = job->stats.file_sha256_hex,
                             .argv = job->kind == BACKUP_KIND_LOGICAL ? argv : NULL, /* physical: the container */
                             .timeout_ms = job->cfg.dump_timeout_ms,
                             .priority = backup_job_priority(job),
                             .base_tar = job->kind == BACKUP_KIND_PHYSICAL,
                             .base_algo = backup_job_checksums(job)};
    job->verify = backup_verify_start(job->loop, &o, backup_job_verified, job);
    if (!job->verify) {
        backup_job_fail(job, -ENOMEM, "verify", "out of memory");
        backup_job_end(job);
    }
}

/* The streaming state machine, run after every event while pg_dump runs. */
static void backup_job_pump(BackupJob *job)
{
    if (job->worker_busy || job->ending || !job->dump)
        return;
    if (job->status < 0) {
        if (!job->dump_exited) {
            if (!job->killed) {
                job->killed = true;
                child_kill(job->dump, SIGTERM);
            }
            if (job->paused) {
                job->paused = false;
                child_stdout_resume(job->dump); /* let it drain so the exit can be seen */
            }
            return;
        }
        backup_job_end(job);
        return;
    }
    if (job->fill.len >= BACKUP_HANDOFF_BYTES || (job->dump_exited && job->fill.len > 0)) {
        BackupBuf t = job->work_buf;
        job->work_buf = job->fill;
        job->fill = t;
        job->fill.len = 0;
        if (backup_job_queue(job, backup_job_write_work, backup_job_write_done) < 0) {
            backup_job_fail(job, DR_EINTERNAL, "write", "cannot queue work");
            backup_job_pump(job);
            return;
        }
        if (job->paused) {
            job->paused = false;
            child_stdout_resume(job->dump);
        }
        return;
    }
    if (job->dump_exited) {
        child_free(job->dump);
        job->dump = NULL;
        if (backup_job_queue(job, backup_job_finish_work, backup_job_finish_done) < 0) {
            backup_job_fail(job, DR_EINTERNAL, "write", "cannot queue work");
            backup_job_end(job);
        }
    }
}

/* ---- step 2b: pg_dump's version ---- */

static bool backup_tool_id_equal(const BackupToolId *a, const BackupToolId *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns;
}

static void backup_job_on_version_exit(ChildProc *c, int64_t exit_status, int term_signal, void *data)
{
    BackupJob *job = data;
    size_t n = 0;
    const char *out = child_stdout(c, &n);
    char version[256] = "", how[96];
    bool ok = exit_status == 0 && term_signal == 0 && backup_tool_version_parse(out, version, sizeof(version));

    child_describe_exit(exit_status, term_signal, how, sizeof(how));
    if (child_timed_out(c))
        snprintf(how, sizeof(how), "timed out");
    child_free(c);
    job->version_child = NULL;
    if (job->canceled) {
        backup_job_fail(job, DR_ECANCELED, "dump", "canceled: the daemon is stopping");
        backup_job_end(job);
        return;
    }
    if (ok) {
        BackupToolVersion v = {.path = job->tool, .id = job->tool_id, .version = version};
        if (backup_tool_version_set(&job->tool_learned, &v) == 0)
            job->tool_version = job->tool_learned.version;
        log_info("backup", "%s '%s' is version '%s'", job->tool_name, job->tool, version);
    } else {
        /* Not a reason to fail the backup: pg_dump itself says what is wrong, if anything is. */
        log_warning("backup", "'%s --version' %s without a version; the manifest's %s_version stays empty",
                    job->tool, exit_status == 0 && term_signal == 0 ? "answered" : how, job->tool_name);
    }
    backup_job_spawn_dump(job);
}

/* Use the remembered version when it describes the file cfg.pg_dump names now; else read it. */
static void backup_job_read_version(BackupJob *job)
{
    const BackupToolVersion *k = &job->tool_known;
    int err = 0;

    if (k->path && k->version && job->tool_id_ok && strcmp(k->path, job->tool) == 0 &&
        backup_tool_id_equal(&k->id, &job->tool_id)) {
        job->tool_version = k->version;
        backup_job_spawn_dump(job);
        return;
    }
    const char *argv[] = {job->tool, "--version", NULL};
    ChildOptions co = {.argv = argv,
                       .stdin_mode = CHILD_STDIN_NULL,
                       .stdout_mode = CHILD_STDOUT_CAPTURE,
                       .stdout_limit = 4096,
                       .stderr_limit = 4096,
                       .timeout_ms = BACKUP_VERSION_TIMEOUT_MS,
                       .kill_grace_ms = 1000,
                       .on_exit = backup_job_on_version_exit,
                       .data = job};
    job->version_child = child_spawn(job->loop, &co, &err);
    if (!job->version_child) {
        backup_job_fail(job, DR_ECHILD, "dump", "cannot run %s '%s': %s", job->tool_name, job->tool, err_str(err));
        backup_job_end(job);
    }
}

static void backup_job_prepare_done(uv_work_t *req, int status)
{
    BackupJob *job = req->data;

    job->worker_busy = false;
    if (status < 0 || job->work_err) {
        int code = status < 0 ? status : job->work_err;
        backup_job_fail(job, code, code == DR_EKEY ? "key" : "open", "%s", job->work_msg);
        backup_job_end(job);
        return;
    }
    if (job->canceled) {
        backup_job_fail(job, DR_ECANCELED, "dump", "canceled: the daemon is stopping");
        backup_job_end(job);
        return;
    }
    backup_job_read_version(job);
}

static void backup_job_spawn_dump(BackupJob *job)
{
    int err = 0;
    char msg[256], *conninfo = NULL;
    /* Refused at load already; checked again so a secret can never reach the child's argv. */
    int r = pgconn_child_conninfo(job->conninfo, &conninfo, msg, sizeof(msg));
    if (r < 0) {
        backup_job_fail(job, r, "dump", "cannot hand the conninfo to %s: %s", job->tool_name,
                        r == DR_ECONFIG ? msg : err_str(r));
        backup_job_end(job);
        return;
    }
    const char *logical[] = {job->tool, "-Fc", "-Z0", "--no-password", "-d", conninfo, NULL};
    /* Tar to stdout: the server's backup_manifest is injected into the tar; no WAL (-X stream
     * cannot write to stdout, -X fetch would need the WAL kept on the server: the archive has it).
     * The file checksums are named (CRC32C is PostgreSQL's default anyway): the manifest is the
     * tar's last member, and each file's checksum is computed while it streams past, before. */
    char checksums[40];
    snprintf(checksums, sizeof(checksums), "--manifest-checksums=%s", pgmanifest_algo_name(backup_job_checksums(job)));
    const char *physical[] = {job->tool, "-D", "-", "-Ft", "-X", "none", "--no-password", checksums, "-c",
                              job->cfg.physical_fast_checkpoint ? "fast" : "spread", "-d", conninfo, NULL};
    bool phys = job->kind == BACKUP_KIND_PHYSICAL;
    PrioSpec prio = backup_job_priority(job);
    ChildOptions co = {.argv = phys ? physical : logical,
                       .stdin_mode = CHILD_STDIN_NULL,
                       .stdout_mode = CHILD_STDOUT_STREAM,
                       .on_stdout = backup_job_on_stdout,
                       .timeout_ms = job->cfg.dump_timeout_ms,
                       .priority = &prio,
                       .on_exit = backup_job_on_dump_exit,
                       .data = job};
    job->dump = child_spawn(job->loop, &co, &err);
    free(conninfo);
    if (!job->dump) {
        backup_job_fail(job, DR_ECHILD, "dump", "cannot run %s '%s': %s", job->tool_name, job->tool, err_str(err));
        backup_job_end(job);
    }
}

/* ---- step 1: database facts ---- */

static void backup_job_on_db_info(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    BackupJob *job = data;

    (void)c;
    if (status == 0 && res && PQntuples(res) == 1 && PQnfields(res) == 4) {
        job->database = strdup(PQgetvalue(res, 0, 0));
        job->server_version = strdup(PQgetvalue(res, 0, 1));
        job->server = strdup(PQgetvalue(res, 0, 3));
        job->db_size = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
    } else {
        backup_job_fail(job, status < 0 ? status : DR_EDB, "connect", "cannot query the database: %s",
                        errmsg ? errmsg : err_str(status));
    }
    pgconn_close(job->pg, NULL, NULL);
    job->pg = NULL;
    if (job->status < 0 || job->canceled) {
        backup_job_fail(job, DR_ECANCELED, "connect", "canceled: the daemon is stopping");
        backup_job_end(job);
        return;
    }
    if (backup_job_queue(job, backup_job_prepare_work, backup_job_prepare_done) < 0) {
        backup_job_fail(job, DR_EINTERNAL, "open", "cannot queue work");
        backup_job_end(job);
    }
}

/* ---- the end: discard temporaries (worker), report, free ---- */

static void backup_job_cleanup_work(uv_work_t *req)
{
    BackupJob *job = req->data;
    atomicfile_abort(job->af);
    atomicfile_abort(job->state_af);
    job->af = job->state_af = NULL;
    backupstream_writer_free(job->writer);
    job->writer = NULL;
    backup_basetar_free(job->base);
    job->base = NULL;
}

static void backup_job_cleanup_done(uv_work_t *req, int status)
{
    BackupJob *job = req->data;
    BackupJobResult res = {.status = job->status,
                           .name = job->name,
                           .stage = job->stage ? job->stage : "",
                           .error = job->errmsg,
                           .manifest = job->status == 0 || job->committed ? job->manifest : NULL,
                           .started_at = job->started_at,
                           .kind = job->kind,
                           .tool_learned = job->tool_learned.version && job->tool_id_ok
                                                  ? &job->tool_learned
                                                  : NULL};
    (void)status;
    job->done(&res, job->data);
    memset(job->key, 0, sizeof(job->key));
    json_decref(job->manifest);
    json_decref(job->state_info);
    backup_buf_free(&job->fill);
    backup_buf_free(&job->work_buf);
    free(job->database);
    free(job->server_version);
    free(job->server);
    backup_tool_version_clear(&job->tool_known);
    backup_tool_version_clear(&job->tool_learned);
    config_backup_free(&job->cfg);
    free(job);
}

static void backup_job_end(BackupJob *job)
{
    if (job->ending)
        return;
    job->ending = true;
    child_free(job->dump);
    job->dump = NULL;
    child_free(job->version_child);
    job->version_child = NULL;
    if (backup_job_queue(job, backup_job_cleanup_work, backup_job_cleanup_done) < 0) {
        backup_job_cleanup_work(&job->work); /* cannot happen with a live loop; do it here rather than leak */
        backup_job_cleanup_done(&job->work, 0);
    }
}

BackupJob *backup_job_start(uv_loop_t *loop, const ConfigBackup *cfg, BackupKind kind,
                            const BackupToolVersion *tool_known, BackupJobDoneFn done, void *data)
{
    BackupJob *job = calloc(1, sizeof(*job));
    char *msg = NULL;

    if (!job)
        return NULL;
    if (config_backup_copy(cfg, &job->cfg) < 0) {
        free(job);
        return NULL;
    }
    (void)backup_tool_version_set(&job->tool_known, tool_known); /* out of memory: read it again */
    job->loop = loop;
    job->kind = kind == BACKUP_KIND_PHYSICAL ? BACKUP_KIND_PHYSICAL : BACKUP_KIND_LOGICAL;
    if (job->kind == BACKUP_KIND_PHYSICAL) {
        job->tool = job->cfg.physical_pg_basebackup;
        job->tool_name = "pg_basebackup";
        job->conninfo = job->cfg.physical_conninfo ? job->cfg.physical_conninfo : job->cfg.conninfo;
    } else {
        job->tool = job->cfg.pg_dump;
        job->tool_name = "pg_dump";
        job->conninfo = job->cfg.conninfo;
    }
    job->done = done;
    job->data = data;
    job->started_at = backups__now();
    job->started_mono_ms = uv_now(loop);
    backupstream_file_name(job->cfg.prefix, job->started_at, (CodecKind)job->cfg.codec, job->name, sizeof(job->name));
    /* "<prefix>_backup_YYYYMMDD_HHMMSS" + ".state.tar<codec>.drbk" */
    size_t stem = strlen(job->name) - strlen(".dump") - strlen(codec_file_ext((CodecKind)job->cfg.codec)) -
                  strlen(BCF_FILE_EXT);
    if (job->kind == BACKUP_KIND_PHYSICAL) /* "<prefix>_backup_YYYYMMDD_HHMMSS.base.tar<codec>.drbk" */
        snprintf(job->name + stem, sizeof(job->name) - stem, "%s%s%s", BACKUP_PHYSICAL_EXT,
                 codec_file_ext((CodecKind)job->cfg.codec), BCF_FILE_EXT);
    snprintf(job->state_name, sizeof(job->state_name), "%.*s.state.tar%s%s", (int)stem, job->name,
             codec_file_ext((CodecKind)job->cfg.codec), BCF_FILE_EXT);
    snprintf(job->path, sizeof(job->path), "%s/%s", job->cfg.directory, job->name);
    snprintf(job->state_path, sizeof(job->state_path), "%s/%s", job->cfg.directory, job->state_name);

    PgConnOptions po = {.connect_timeout_ms = 10000, .query_timeout_ms = 30000};
    job->pg = pgconn_new_msg(loop, job->conninfo, &po, &msg);
    if (!job->pg) {
        backup_job_fail(job, DR_ECONFIG, "connect", "bad conninfo: %s", msg ? msg : "out of memory");
        free(msg);
        job->dump_exited = true;
        backup_job_end(job);
        return job;
    }
    int r = pgconn_query(job->pg, job->kind == BACKUP_KIND_PHYSICAL ? BACKUP_CLUSTER_INFO_SQL : BACKUP_DB_INFO_SQL, 0, NULL, backup_job_on_db_info, job);
    if (r < 0) {
        backup_job_fail(job, r, "connect", "cannot query the database: %s", err_str(r));
        pgconn_close(job->pg, NULL, NULL);
        job->pg = NULL;
        backup_job_end(job);
    }
    return job;
}

void backup_job_cancel(BackupJob *job)
{
    if (!job || job->canceled)
        return;
    job->canceled = true;
    backup_job_fail(job, DR_ECANCELED, "dump", "canceled: the daemon is stopping");
    if (job->pg) {
        pgconn_close(job->pg, NULL, NULL); /* calls the pending callback, which ends the job */
        return;
    }
    if (job->verify) {
        backup_verify_cancel(job->verify);
        return;
    }
    if (job->version_child) {
        child_kill(job->version_child, SIGKILL); /* its exit callback ends the job */
        return;
    }
    backup_job_pump(job);
}

/* ---- remembered tool versions ---- */

void backup_tool_version_clear(BackupToolVersion *v)
{
    free(v->path);
    free(v->version);
    *v = (BackupToolVersion){0};
}

int backup_tool_version_set(BackupToolVersion *dst, const BackupToolVersion *src)
{
    backup_tool_version_clear(dst);
    if (!src || !src->path || !src->version)
        return 0;
    dst->path = strdup(src->path);
    dst->version = strdup(src->version);
    dst->id = src->id;
    if (!dst->path || !dst->version) {
        backup_tool_version_clear(dst);
        return -ENOMEM;
    }
    return 0;
}

bool backup_tool_version_parse(const char *output, char *out, size_t n)
{
    static const char marker[] = "(PostgreSQL) ";
    const char *line = output ? output : "";
    size_t len = strcspn(line, "\r\n");
    const char *m = memmem(line, len, marker, sizeof(marker) - 1);
    size_t o = 0;

    if (m) {
        len -= (size_t)(m + sizeof(marker) - 1 - line);
        line = m + sizeof(marker) - 1;
    }
    while (len > 0 && (*line == ' ' || *line == '\t'))
        line++, len--;
    while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
        len--;
    for (size_t i = 0; i < len && o + 1 < n; i++)
        out[o++] = line[i] >= 0x20 && line[i] < 0x7f ? line[i] : '?';
    if (n)
        out[o] = '\0';
    return o > 0;
}
