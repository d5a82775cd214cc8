/*
 * complete_disaster_internal: what complete_disaster.c (the table, the steps, execute),
 * complete_disaster_config.c (scenarios.complete_disaster), complete_disaster_bucket.c (the
 * bucket read from the loop: listings, GETs, the plan) and complete_disaster_files.c (the
 * thread-pool workers) share; not for other modules.
 *
 * The run is laid out as a point_in_time run (point_in_time_internal.h): its settings start with a
 * PitrConfig (data_directory: the configured one, empty; side_port: the configured port), its
 * context with a PitrRun (data_dir: the configured data directory itself), its parameters hold
 * "to_end": true and "plan" (the bucket's plan, made before the run started).
 */
#ifndef DRSUP_SCN_COMPLETE_DISASTER_INTERNAL_H
#define DRSUP_SCN_COMPLETE_DISASTER_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "bcf.h"
#include "httpc.h"
#include "config/config.h"
#include "core/core.h"
#include "scenario/app_crash_internal.h"
#include "scenario/point_in_time_internal.h"

typedef struct CdConfig {
    PitrConfig pitr;         /* first: point_in_time's steps read it (side_port is `port`) */
    AppCrashConfig halt;     /* halt_wait and out_of_band_halt_* only (app_crash's keys, read the same way) */
    uint64_t range_size;     /* bytes of one ranged GET of the base backup */
    uint64_t segment_size;   /* the cluster's WAL segment size (names -> segment numbers) */
    uint64_t fetch_timeout_ms; /* one request to the bucket */
} CdConfig;

/* The run's own context: point_in_time's first, then where the container is spooled. */
typedef struct CdRun {
    PitrRun pitr;
    char spool[4200];        /* scratch/disaster-TAG.spool: the base backup's container (encrypted) */
} CdRun;

extern const ConfigScenarioSection complete_disaster_config_section;

/* ---- complete_disaster_bucket.c: the bucket, from the loop (lib/httpc, lib/s3req) ---- */

/* One GET's answer: err 0 and resp (status checked by the caller), or err < 0 with errmsg. */
typedef void (*CdGetFn)(int err, const HttpResponse *resp, const char *errmsg, void *data);
/* GET <prefix>{backups|wal}/name (bytes [from, from+len) when len > 0) with repository.s3's
 * credentials; *http_id the request (httpc_cancel answers done with DR_ECANCELED). 0 or <0 with msg. */
int cd__get(Core *core, uint64_t timeout_ms, bool wal, const char *name, uint64_t from, uint64_t len, size_t max,
            CdGetFn done, void *data, uint64_t *http_id, char *msg, size_t msglen);

/* GET <prefix>state/name (the whole object, at most max bytes), as cd__get. */
int cd__get_state(Core *core, uint64_t timeout_ms, const char *name, size_t max, CdGetFn done, void *data,
                  uint64_t *http_id, char *msg, size_t msglen);
/* One ListObjectsV2 page of <prefix>sub/ (token "" for the first); done with the answer (its status
 * unchecked: cd__list_names checks it). 0 or <0 with msg. */
int cd__list_page(Core *core, uint64_t timeout_ms, const char *sub, const char *token, CdGetFn done, void *data,
                  uint64_t *http_id, char *msg, size_t msglen);
/* A page's names under <prefix>sub/ (no deeper ones) appended to out, token the next page's ("" for
 * the last); false when the answer is an S3 error. */
bool cd__list_names(const Core *core, const HttpResponse *resp, const char *sub, json_t *out, char *token, size_t n);

/* ---- complete_disaster_platform.c: restore_platform_state ---- */

/* The step: the base backup's state tar (the manifest's state_files) fetched from the bucket,
 * verified (its SHA-256, every chunk authenticated with the key its header names), unpacked on
 * the thread pool and each member written atomically (0600) at its path when that path is one of
 * the recovery host's backup.state_files (any other member refused, not written); the run's
 * context "platform_state" {in_manifest, restored, file, files, bytes, refused, absent}. A manifest
 * naming no tar: the step says so. A tar missing from the bucket: the step fails. And its plan. */
void cd__step_restore_platform(FsmCall *call, void *ctx, FsmDone done);
void cd__plan_restore_platform(FsmCall *call, void *ctx, FsmDone done);

/* ---- complete_disaster_state.c: restore_state_files ---- */

/* The step: every object under <prefix>state/ (the lost host's catalog first, then primary.json,
 * the audit log and head, the incident reports) written into state_dir/history/; the run's context
 * "state" {directory, files, bytes, catalog_backups}. And its dry-run plan. */
void cd__step_restore_state(FsmCall *call, void *ctx, FsmDone done);
void cd__plan_restore_state(FsmCall *call, void *ctx, FsmDone done);

/* The plan from the bucket: the newest verified base backup (its manifest) and the WAL after it,
 * in wal_plan's form plus what to fetch: {ok, why, base_backup {name, finished_at, start_lsn,
 * stop_lsn, file_size_bytes, sha256, key_id}, wal {from_segment, to_segment, segments,
 * continuous, missing, files [names], partial (name or null)}, bucket {backups, wal}}. done once
 * on the loop (never inside this call): status 0 with plan (owned by the callee), or <0 with err.
 * *http_id: the request in flight (0 between). */
typedef void (*CdPlanFn)(int status, json_t *plan, const char *err, void *data);
int cd__plan(Core *core, uint64_t seg_size, uint64_t timeout_ms, CdPlanFn done, void *data, uint64_t *http_id,
             char *msg, size_t msglen);

/* The pure part: the plan from the WAL listing (names) and the chosen manifest (NULL: none). */
json_t *cd__plan_decide(const json_t *manifest, const json_t *wal_names, uint64_t seg_size);

/* ---- complete_disaster_files.c: blocking, thread pool only ---- */

typedef struct CdWork {
    uv_work_t req;
    struct ScnStep *st;
    int (*fn)(struct CdWork *w);
    void (*then)(struct ScnStep *st, struct CdWork *w);
    char dir[4096];          /* the data directory */
    char spool[4200];        /* the spool directory */
    char wal_dir[4096];      /* the staged WAL */
    char name[256];          /* the file being written (spool: the container; WAL: its staged name) */
    ConfigBackup backup;     /* the key's settings (loaded on the pool) */
    uint8_t key[BCF_KEY_LEN];
    bool key_loaded;
    void *reader;            /* BackupStreamReader of the download (verify only) */
    uint8_t *buf;            /* bytes to push (owned) */
    size_t len;
    bool last;               /* the download's last range: finish the reader */
    bool pad;                /* WAL: a timeline's last partial segment, padded with zeros to seg_size */
    uint64_t seg_size;
    uint64_t offset;         /* bytes of the container written so far */
    char sha[65];            /* out: the container's SHA-256 (last range) */
    uint64_t chunks;
    uint64_t synced_files;   /* out (restore): regular files fsynced */
    uint64_t sync_ms;        /* out (restore): the tree's sync */
    int64_t created_at;      /* out (WAL): the container's creation time, Unix seconds */
    uid_t uid;
    gid_t gid;
    int result;
    char err[700];
    int fail;                /* a failed download: its code and message, for after the spool's removal */
    char fail_msg[1600];
    char want_sha[65];       /* state tar: the manifest's SHA-256 of it */
    json_t *out;             /* state tar: what was written and refused (owned) */
} CdWork;

/* The data directory: it must exist (made by the operator for the server's user) and be empty, or
 * hold only this daemon's unfinished restore (its marker file); emptied, 0700, marked; uid/gid
 * its owner's. The spool directory made (0700, the daemon's). */
int cd__prepare_work(CdWork *w);
/* One range of the container: verified (chunks, the key) and appended to the spool file; the last
 * one finishes the verification (sha filled) and syncs the file. */
int cd__range_work(CdWork *w);
/* One WAL file from the bucket: verified, decrypted and written as wal_dir/name (0600, uid:gid);
 * pad: zeros up to seg_size (a .partial piece made a segment file PostgreSQL accepts). */
int cd__wal_work(CdWork *w);
/* The unpack finished: the tree made durable (lib/synctree, then the directory's entry in its
 * parent; synced_files, sync_ms filled), only then the restore's marker removed (a crash before
 * leaves a marked directory the next attempt empties). */
int cd__marked_work(CdWork *w);
/* The spool removed (a failed download). */
int cd__unspool_work(CdWork *w);
/* The base backup's postgresql.auto.conf put back (the recovery settings done with), the spool and
 * the staged WAL removed. */
int cd__tidy_work(CdWork *w);
/* The state tar in buf: its SHA-256 against want_sha, decrypted and authenticated, each member
 * written at its path when that is one of backup.state_files (0600, atomically); *out filled
 * {files, bytes, refused [{path, why}], absent}. A damaged tar fails it, nothing written. */
int cd__platform_work(CdWork *w);
void cd__work_free(CdWork *w);

/* complete_disaster.c: the step's CdWork (st->node_op, made on first use; NULL after finishing st
 * on OOM), and fn queued on the thread pool with then called on the loop (not when cancelled). */
CdWork *cd__work_of(struct ScnStep *st);
void cd__queue(struct ScnStep *st, CdWork *w, int (*fn)(CdWork *w), void (*then)(struct ScnStep *st, CdWork *w));

extern const struct ScenarioDef scenario_complete_disaster;

#endif
