/*
 * offsite_internal: what offsite.c (the module: queue, record, scan, conditions, commands),
 * offsite_upload.c (one file's way into the bucket) and offsite_work.c (the thread-pool jobs)
 * share. Nothing outside daemon/cap/offsite/ includes it.
 */
#ifndef DRSUP_OFFSITE_INTERNAL_H
#define DRSUP_OFFSITE_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cap/offsite/offsite.h"
#include "s3req.h"

/* OFS_STATE: one of the daemon's non-secret state files (the catalog, primary.json, the audit log,
 * incident reports) under PREFIXstate/, replaced whenever its SHA-256 changes (never the keys).
 * OFS_STATE_TAR: a backup's `.state.tar` (backup.state_files, encrypted like the backup) under
 * PREFIXbackups/, after its container and before its manifest (a manifest in the bucket never
 * names a tar that is not there). */
typedef enum { OFS_BACKUP = 0, OFS_MANIFEST, OFS_WAL, OFS_ABORT, OFS_DELETE, OFS_STATE, OFS_STATE_TAR } OffsiteKind;

/* Where a task is. The HTTP phases are re-entered after a retryable failure. */
typedef enum {
    OT_WAITING = 0, /* queued (or waiting for retry_at): the next step is t->next_phase */
    OT_HASHING,     /* job: size and SHA-256 of the file (and its bytes when it goes in one PUT) */
    OT_PUT,         /* PutObject */
    OT_CREATE,      /* CreateMultipartUpload */
    OT_SAVE_UPLOAD, /* the upload id being recorded before any part */
    OT_READ_PART,   /* job: part `part` read and hashed */
    OT_PART,        /* UploadPart */
    OT_HASH_DONE,   /* job: the CompleteMultipartUpload body hashed */
    OT_COMPLETE,    /* CompleteMultipartUpload */
    OT_HEAD,        /* HeadObject: size and x-amz-meta-sha256 */
    OT_SAVE,        /* the object being recorded */
    OT_ABORT,       /* AbortMultipartUpload */
    OT_SAVE_DELETE, /* retention: waiting for the record that no longer claims the object */
    OT_DELETE,      /* retention: DeleteObject */
} OffsiteTaskPhase;

typedef struct OffsiteTask {
    struct OffsiteTask *prev, *next;
    Offsite *o;
    OffsiteKind kind;
    char *name;              /* file name (backup, manifest or WAL file) */
    char *path;              /* local path */
    char *key;               /* object key, prefix included */
    char *after;             /* key that must be off-site first (a state tar after its backup, a manifest
                              * after its state tar or, with none, its backup), or NULL */
    json_t *meta;            /* a backup's kind, start and start LSN, recorded with it (retention), or NULL */
    int64_t born_ms;         /* wall time the file became eligible (lag), 0 for an abort */
    OffsiteTaskPhase phase, next_phase;
    bool active;             /* started: counts against concurrency */
    bool busy;               /* a job or a transfer of it is in flight */
    bool seen;               /* found by the latest scan */
    uint64_t retry_at;       /* loop ms before which it does not start again */
    unsigned attempt;        /* failed tries of the current request */
    uint64_t size;
    char sha256[65];         /* the whole file's */
    uint8_t *body;           /* the bytes being sent (a single PUT, a part, the complete body) */
    size_t body_len;
    char body_sha[65];
    char *upload_id;         /* multipart */
    char **etags;
    size_t n_parts, part;    /* part: the 0-based index being read or sent */
    uint64_t http_id;
    bool failed;             /* its last try failed: counts for offsite.failed */
    bool gone;               /* the file was removed locally during its upload: abort, then drop */
    char last_error[400];
    uint64_t save_gen;       /* the record generation it waits for */
} OffsiteTask;

struct Offsite {
    Core *core;
    Backups *backups;
    ConfigOffsite cfg;       /* own copy (keys included, wiped at free) */
    char *cluster;
    char *backup_dir, *wal_dir;
    char *state_dir, *node_dir; /* the state files copied under PREFIXstate/ (node_dir: the audit log's) */
    char *state_path;
    S3Target target;
    uv_timer_t tick;
    bool tick_open, closing;
    int sub;                 /* events subscription */
    void (*closed_cb)(void *data);
    void *closed_data;
    unsigned jobs;           /* thread-pool jobs in flight */
    uint32_t rng;            /* xorshift state for the backoff's jitter (seeded from getrandom) */

    bool loaded, loading;    /* the record */
    json_t *objects;         /* key -> {size, sha256, at_ms} */
    json_t *multipart;       /* upload id -> {key, at_ms}: uploads to abort if the daemon dies */
    json_t *removed;         /* key -> {size, at_ms, done}: taken out by retention (never uploaded again) */
    uint64_t gen, saved_gen; /* record generations: changed, on disk */
    bool saving;
    uint64_t saving_gen;
    char save_error[400];

    bool scanning;
    uint64_t next_scan;      /* loop ms */
    char scan_error[400];

    struct OffsiteVerify *verify; /* drctl verify --offsite in progress (one at a time), or NULL */

    OffsiteTask *head, *tail; /* the queue, oldest file first */
    size_t n_tasks;
    unsigned n_active;

    /* what the conditions and the metrics show */
    int lag_level;
    bool failed_open;
    uint64_t bytes_total, objects_total, failures_total, requests_total, retries_total;
    char last_key[512];
    int64_t last_ms;
    uint64_t last_bytes;
    char last_failure[640];
    int64_t last_failure_ms;

    /* retention (offsite_retention.c) */
    uint64_t (*seg_size_fn)(void *data); /* the WAL segment size (0: not known yet) */
    void *seg_size_data;
    uint64_t deleted_total, deleted_bytes;
    char last_deleted[512];
    int64_t last_deleted_ms;
    int64_t ret_last_ms, ret_oldest_base_s;
    size_t ret_kept_backups, ret_kept_base, ret_kept_wal;
    char ret_wal_from[24];
};

/* ---- offsite.c ---- */
/* The record changed: save it (coalesced); the generation to wait for. */
uint64_t offsite__record_changed(Offsite *o);
/* A random 32-bit value for the backoff's jitter. */
uint32_t offsite__rand(Offsite *o);
/* Start what can start. */
void offsite__kick(Offsite *o);
/* t reached the bucket (checked): counted, recorded. */
void offsite__task_uploaded(OffsiteTask *t);
/* t failed beyond retries (or for a reason retrying cannot fix). */
void offsite__task_failed(OffsiteTask *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* The task is finished: unlinked and freed (the caller no longer uses it). */
void offsite__task_done(OffsiteTask *t);
/* Free t's upload state (body, etags, upload id); keeps it queued. */
void offsite__task_reset(OffsiteTask *t);
/* Queue a task, in the order of born_ms (abort and delete tasks, born 0, first). NULL on OOM. */
OffsiteTask *offsite__task_add(Offsite *o, OffsiteKind kind, const char *name, const char *path, const char *key,
                               const char *after, int64_t born_ms);

/* ---- offsite_retention.c ---- */
/* repository.s3.retention has a rule. */
bool offsite__retention_enabled(const Offsite *o);
/* After a scan: decide what the bucket keeps; what it does not is taken out of the record (write
 * ahead) and queued for DeleteObject. */
void offsite__retention(Offsite *o);
/* The record was read: its `removed` map; deletes not done yet are queued again. */
void offsite__retention_load(Offsite *o, const json_t *rec);
/* t's DeleteObject succeeded (or the object was already gone). */
void offsite__delete_done(OffsiteTask *t);
/* offsite_status's "retention". A new object. */
json_t *offsite__retention_status(const Offsite *o);

/* ---- offsite_upload.c ---- */
/* Run t's next step (t->next_phase): start, or go on after a retry. */
void offsite__task_step(OffsiteTask *t);
/* Abort t's multipart upload (DELETE ?uploadId); then t starts over (or, an abort task, ends).
 * A delete task (OFS_DELETE) waits for its record, then sends DeleteObject. */
void offsite__task_abort(OffsiteTask *t);
/* The record generation t waits for is on disk (ok) or could not be written. */
void offsite__task_saved(OffsiteTask *t, bool ok);

/* ---- offsite_verify.c ---- */
/* The verify_offsite command: download a backup from the bucket and verify it. */
void offsite__cmd_verify(CtlCall *call, const json_t *args, void *data);
/* Keys of the bucket objects. */
void offsite__key(const Offsite *o, bool wal, const char *name, char *out, size_t n);
/* Close: the verification's transfer cancelled, its caller answered. */
void offsite__verify_cancel(Offsite *o);

/* ---- offsite_work.c: jobs on the thread pool; done(job) runs on the loop ---- */
typedef enum { OJ_LOAD, OJ_SAVE, OJ_SCAN, OJ_HASH, OJ_READ, OJ_HASH_BUF, OJ_CALL } OffsiteJobKind;
typedef struct OffsiteJob {
    uv_work_t work;
    Offsite *o;
    OffsiteJobKind kind;
    OffsiteTask *task;
    void (*done)(struct OffsiteJob *j);
    void (*fn)(struct OffsiteJob *j); /* OJ_CALL: runs on the pool */
    void *arg;                        /* OJ_CALL: the caller's */
    /* in */
    char *path, *path2;      /* LOAD/SAVE: the record; SCAN: backup dir, wal dir (or NULL) */
    char *state_dir, *node_dir; /* SCAN: where the state files are (NULL: not copied yet) */
    char *text;              /* SAVE: the JSON */
    json_t *catalog;         /* SCAN: the catalog's manifests */
    uint64_t offset, len, limit;
    const uint8_t *in;       /* HASH_BUF: borrowed from the task */
    size_t in_len;
    /* out */
    int status;
    char err[400];
    json_t *result;          /* LOAD: the record; SCAN: [{kind, name, path, born_ms, sha256 (state files)}] */
    uint8_t *buf;
    size_t buf_len;
    uint64_t size;
    char sha[65];
} OffsiteJob;
OffsiteJob *offsite__job_new(Offsite *o, OffsiteJobKind kind, void (*done)(OffsiteJob *j));
/* Queue j (owned from here; freed after done). 0, or <0 (j freed, done not called). */
int offsite__job_queue(OffsiteJob *j);

#endif
