/*
 * backup_internal: what the backup module's files share (daemon/backup*.c); not for other modules.
 *
 *   backup.c          the module: schedules, catalog in memory, retention, verification, life cycle
 *   backup_cmd.c      the module's watch conditions and control commands
 *   backup_job.c      one backup: pg_dump or pg_basebackup -> worker (compress, encrypt, write) ->
 *                     verify -> commit
 *   backup_state.c    the state files captured beside a backup (an encrypted ustar archive)
 *   backup_verify.c   streaming verification of a file into a child's stdin (pg_restore --list, or
 *                     pg_restore -d for a test restore), or through the base backup check
 *   backup_basetar.c  a base backup's tar checked as it streams: structure, server files, every file
 *                     against the server's backup_manifest, the WAL range
 *   backup_restore.c  restoring a backup into a new database (backup_restore_into), and the test
 *                     restore into a scratch database with validation queries
 *   backup_catalog.c  manifests (build, parse, write), directory scan, failure log, key loading
 */
#ifndef DRSUP_BACKUP_INTERNAL_H
#define DRSUP_BACKUP_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "atomicfile.h"
#include "cap/backup/backup.h"
#include "backupstream.h"
#include "pgmanifest.h"
#include "prio.h"
#include "config/config.h"
#include "pgconn.h"
#include "core/control.h"
#include "cron.h"
#include "core/events.h"

/* Bytes handed to a worker at a time (and the most pg_dump output buffered on the loop). */
#define BACKUP_HANDOFF_BYTES (4u * 1024u * 1024u)
/* File bytes read per read() in verification, and decrypted output handed to a child at a time. */
#define BACKUP_VERIFY_READ_BYTES (1024u * 1024u)
#define BACKUP_VERIFY_OUT_BYTES (4u * 1024u * 1024u)
/* Spool mode: file bytes decrypted per pool work item (a cancel is seen between two). */
#define BACKUP_VERIFY_SPOOL_SLICE_BYTES (64u * 1024u * 1024u)


/* A growable byte buffer. */
typedef struct BackupBuf {
    uint8_t *data;
    size_t len, cap;
} BackupBuf;

int backup_buf_append(BackupBuf *b, const void *data, size_t len);
void backup_buf_free(BackupBuf *b);

/* ---- keys (backup_keys.c); blocking: pool threads only ---- */

/* The key new backups are written with: the key ring's current key, else cfg->key_path (key_file,
 * or where the configuration loader found key_credential). DR_EKEY + message. */
int backup_load_key(const ConfigBackup *cfg, uint8_t key[BCF_KEY_LEN], char *err, size_t errlen);
/* The key of id want (32 hex digits, a manifest's key_id; NULL or "": the configured key): the
 * writing key, the configured key, backup.previous_keys, the ring, in that order. DR_EKEY + message. */
int backup_load_key_for(const ConfigBackup *cfg, const char *want, uint8_t key[BCF_KEY_LEN], char *err, size_t errlen);
/* A new random key in the ring (0600, durable) made current; the ids of the new and of the key it
 * replaces ("" if none could be read). 0, DR_ECONFIG (no ring), DR_EKEY or -errno with err. */
int backup_keys_rotate(const ConfigBackup *cfg, char new_id[33], char old_id[33], char *err, size_t errlen);
/* The key that reads the backup file at path: the one of the key id in its header (a file that is
 * not a container: the writing key, and its verification then says what is wrong). */
int backup_load_key_of_file(const ConfigBackup *cfg, const char *path, uint8_t key[BCF_KEY_LEN], char *err,
                            size_t errlen);

/* ---- manifests and catalog (backup_catalog.c) ---- */

/* "2024-01-02T03:04:05Z" */
void backup_time_rfc3339(int64_t unix_s, char *out, size_t n);
/* Parse the above; -1 when not parseable. */
int64_t backup_time_parse(const char *s);
/* What a backup holds: a pg_dump archive of one database (logical), or a tar of the whole cluster's
 * data directory from pg_basebackup (physical). Manifests without "kind" (written before physical
 * backups existed) are logical; a kind this version does not know is BACKUP_KIND_UNKNOWN (never
 * verified, never deleted by retention, never restored from). */
typedef enum { BACKUP_KIND_LOGICAL = 0, BACKUP_KIND_PHYSICAL, BACKUP_KIND_UNKNOWN, BACKUP_KIND_N } BackupKind;

BackupKind backup_manifest_kind(const json_t *m);
/* "logical", "physical", "unknown". */
const char *backup_kind_name(BackupKind k);
/* Verified as docs/backup-format.md defines it: container ok and SHA-256 match, and for a logical
 * backup pg_restore --list ok. False for an unknown kind. */
bool backup_manifest_verified(const json_t *m);

/* Result of scanning the directory (pool thread): manifests sorted by start (oldest first), failure
 * records, and a message when the directory could not be read. */
typedef struct BackupScan {
    json_t *manifests; /* array */
    json_t *failures;  /* array */
    char error[512];
} BackupScan;

/* Blocking: read every manifest in `dir` (dropping entries whose file is gone), remove temporaries
 * left by a crash, and load the failure log from `failures_path`. */
void backup_catalog_scan(const char *dir, const char *failures_path, BackupScan *ret);
/* Blocking: write a manifest atomically beside its file. 0 or -errno. */
int backup_manifest_write(const char *dir, const json_t *manifest);
/*
 * Start-up: the manifest is a backup's commit record (written last, atomically). Remove what an
 * interrupted commit left: backup files under final names ("*_backup_*.drbk") that no manifest
 * names (the dump or state set renamed before the kill), and manifests whose dump is gone (a
 * retention or delete interrupted between the two unlinks). removed(path, what) is called for
 * each removal. Blocking. Returns the count.
 */
int backup_catalog_sweep_uncommitted(const char *dir, void (*removed)(const char *path, const char *what));

/* ---- state files (backup_state.c) ---- */

/* Blocking (worker): archive cfg->state_files (ustar), compress and encrypt it with key (created_at
 * in the container header) into a new temporary of `path` (lib/atomicfile; the caller commits or
 * aborts it). On success *ret_af is that temporary and *ret_info the manifest's "state_files"
 * object {file: name, file_size_bytes, sha256, entries: [{path, size}], missing: [{path, error}]}
 * (new reference). Unreadable files are listed as missing, not errors. 0, or a negative code with
 * a message in err (then nothing is left behind). */
int backup_state_capture(const ConfigBackup *cfg, const uint8_t key[BCF_KEY_LEN], int64_t created_at,
                         const char *path, const char *name, AtomicFile **ret_af, json_t **ret_info, char *err,
                         size_t errlen);

/* ---- streaming verification (backup_verify.c) ---- */

typedef struct BackupVerifyResult {
    bool container_ok;      /* every chunk, the final chunk and the codec checks passed */
    bool sha_checked;       /* an expected SHA-256 was given */
    bool sha_match;
    bool child_ok;          /* the child exited 0 (and, if required, read everything) */
    bool child_ran;
    char child_status[96];  /* "exited with status 1" */
    BackupStreamStats stats;
    char key_id_hex[2 * BCF_KEY_ID_LEN + 1];
    bool tar_checked;       /* base_tar: the decrypted tar went through the base backup check ... */
    bool tar_ok;            /* ... and passed: every file matched the server's backup_manifest */
    size_t files_verified;  /* when tar_ok */
    char checksum_algorithm[8];
    char error[1024];       /* first failure, "" when none */
} BackupVerifyResult;

typedef struct BackupVerify BackupVerify;
typedef void (*BackupVerifyDoneFn)(const BackupVerifyResult *res, void *data);

/* A physical backup's verification object v gets what the base backup check of vr found: "files"
 * ("ok", "failed", or "skipped" when vr is NULL or the tar was not checked), and when ok
 * "files_verified" and "checksum_algorithm". */
void backups__verification_files(json_t *v, const BackupVerifyResult *vr); /* backup_catalog.c */

typedef struct BackupVerifyOptions {
    const char *path;                /* file to read */
    const uint8_t *key;              /* BCF_KEY_LEN bytes, copied */
    const char *expected_sha256_hex; /* or NULL */
    const char *const *argv;         /* child reading the decrypted dump on stdin; NULL: no child */
    bool child_must_read_all;        /* a child that stops reading early fails (restore) */
    uint64_t timeout_ms;             /* for the child; 0 none */
    /* Spool mode, or NULL: the whole decrypted dump is first written to this file (created 0600,
     * replacing a leftover of the same name; on the thread pool, a slice at a time), then the child
     * runs with its stdin on /dev/null and this path appended to argv (pg_restore -j N ... FILE:
     * a parallel restore needs a seekable file, not a pipe); the file is removed before done(),
     * whatever happened. Needs room for the uncompressed dump. */
    const char *spool_path;
    /* NULL or a NULL-terminated "NAME=value" list for the child's environment (copied). */
    const char *const *child_env;
    /* CPU and I/O priority of the child and of the worker's decrypting ({0, PRIO_IO_NORMAL}: as is). */
    PrioSpec priority;
    /* A physical backup (no child): the decrypted tar goes through backup_basetar on the worker,
     * computing base_algo for every file. */
    bool base_tar;
    PgManifestAlgo base_algo;
} BackupVerifyOptions;

/* Start; done(res) runs once on the loop. NULL when out of memory. */
BackupVerify *backup_verify_start(uv_loop_t *loop, const BackupVerifyOptions *opt, BackupVerifyDoneFn done,
                                  void *data);
/* Stop early (shutdown): the child is killed and done() runs with an error. */
void backup_verify_cancel(BackupVerify *v);

/* ---- one backup (backup_job.c) ---- */

typedef struct BackupJob BackupJob;

/* Which file a program path named (stat, following symbolic links): a package upgrade that
 * replaces the binary changes it. */
typedef struct BackupToolId {
    uint64_t dev, ino, size;
    int64_t mtime_ns;
} BackupToolId;

/* What `<program> --version` said, remembered per program file: the module keeps the last one
 * (Backups.pg_dump_version) and hands it to each job, which reads the version again only when
 * the path or the file it names changed. */
typedef struct BackupToolVersion {
    char *path;      /* as configured; NULL when nothing is known */
    BackupToolId id;
    char *version;   /* "15.8 (Debian 15.8-0+deb12u1)": the first line, without "pg_dump (PostgreSQL) " */
} BackupToolVersion;

/* Replace *dst with a copy of src (src NULL: clear). 0 or -ENOMEM (then *dst is cleared). */
int backup_tool_version_set(BackupToolVersion *dst, const BackupToolVersion *src);
void backup_tool_version_clear(BackupToolVersion *v);
/* The version in `--version` output (first line; after "(PostgreSQL) " when present), printable
 * ASCII only, into out. False when there is none. */
bool backup_tool_version_parse(const char *output, char *out, size_t n);

/* Name part of a physical backup file: "<prefix>_backup_YYYYMMDD_HHMMSS.base.tar.zst.drbk". */
#define BACKUP_PHYSICAL_EXT ".base.tar"

/* Members of a base backup's tar that the server wrote, and how much of each is kept in memory
 * while the tar streams past (the manifest lists every file: about 150 bytes each). */
#define BACKUP_TAR_LABEL "backup_label"
#define BACKUP_TAR_MANIFEST "backup_manifest"
#define BACKUP_TAR_CAPTURE_BYTES (256u << 20)

/* The WAL a base backup needs (from the server's backup_manifest), and what else it says. */
typedef struct BackupWalRange {
    char start_lsn[24];      /* "0/2000028": the lowest Start-LSN */
    char stop_lsn[24];       /* the highest End-LSN */
    uint32_t timeline;       /* of the range the backup started on */
    uint32_t stop_timeline;  /* of the range it ended on (the same unless a standby was promoted) */
    size_t files;            /* entries in the manifest's Files */
    char manifest_checksum[65]; /* its Manifest-Checksum (SHA-256 of the manifest, hex) */
    uint64_t tar_members;    /* regular files, directories, links in the tar */
    size_t files_verified;   /* entries of Files found in the tar with their size and checksum */
    char checksum_algorithm[8]; /* what was compared: "CRC32C", "SHA256", ... or "NONE" (sizes) */
} BackupWalRange;

/* Read the WAL-Ranges of a backup_manifest (JSON text, len bytes). 0 and *ret filled, or -EBADMSG
 * with the reason in err (*ret untouched). Pure. */
int backup_basebackup_wal_range(const char *manifest, size_t len, BackupWalRange *ret, char *err, size_t errlen);

/* The file checksums pg_basebackup is told to write by default (--manifest-checksums=CRC32C,
 * PostgreSQL's default, given explicitly so the check knows the algorithm while the tar streams:
 * the manifest is its last member; backup.physical.manifest_checksums may name another), and what
 * a manifest of ours without "checksum_algorithm" was taken with. */
#define BACKUP_MANIFEST_CHECKSUMS PGMANIFEST_CRC32C

/* A base backup's tar checked as it streams past (backup_basetar.c; blocking: pool threads only,
 * one thread at a time). Memory: the server's backup_manifest (up to BACKUP_TAR_CAPTURE_BYTES)
 * and per file its path, size and checksum (lib/pgmanifest). */
typedef struct BackupBaseTar BackupBaseTar;
/* algo: the file checksum the manifest is expected to use. NULL on OOM. */
BackupBaseTar *backup_basetar_new(PgManifestAlgo algo);
void backup_basetar_free(BackupBaseTar *bt);
/* The next bytes of the tar: 0, or -EBADMSG (not a tar) with the reason in err. */
int backup_basetar_update(BackupBaseTar *bt, const uint8_t *data, size_t len, char *err, size_t errlen);
/* The tar ended: it must be complete, hold PG_VERSION, global/pg_control, backup_label and the
 * server's backup_manifest, whose Manifest-Checksum must hold and whose every file must be in the
 * tar with its size and checksum (and nothing else but backup_manifest). 0 and *ret filled (the WAL
 * range, the member count, files_verified, checksum_algorithm); -EBADMSG (a broken tar or
 * manifest), -EILSEQ (files differ: the first by path and the count), -ENOTSUP (a manifest in
 * another algorithm), -ENOMEM; the reason in err. */
int backup_basetar_finish(BackupBaseTar *bt, BackupWalRange *ret, char *err, size_t errlen);

typedef struct BackupJobResult {
    int status;              /* 0 ok, or the error */
    const char *name;        /* backup file name */
    const char *stage;       /* where it failed: "connect", "key", "open", "dump", "write", "verify", "commit" */
    const char *error;       /* message, "" on success */
    json_t *manifest;        /* on success: the manifest written (borrowed) */
    int64_t started_at;
    BackupKind kind;
    /* `pg_dump --version` (logical) or `pg_basebackup --version` (physical) as read by this job
     * (borrowed), for the module to remember; NULL when the job used what it was given, or could
     * not tell. */
    const BackupToolVersion *tool_learned;
} BackupJobResult;

typedef void (*BackupJobDoneFn)(const BackupJobResult *res, void *data);

/* Start a backup of `kind` (logical: pg_dump of cfg->conninfo's database; physical: pg_basebackup
 * of cfg->physical_conninfo's cluster) with a private copy of `cfg`. tool_known (may be NULL;
 * copied) is the version of that kind's program remembered from an earlier job: used when it still
 * describes the program file, else the job runs `<program> --version` (lib/child) before the dump.
 * done runs once on the loop, then the job frees itself. */
BackupJob *backup_job_start(uv_loop_t *loop, const ConfigBackup *cfg, BackupKind kind,
                            const BackupToolVersion *tool_known, BackupJobDoneFn done, void *data);
void backup_job_cancel(BackupJob *job);
const char *backup_job_name(const BackupJob *job);

/* ---- restore into a database, and the test restore (backup_restore.c) ---- */

/* backup_restore_into() with the configuration and loop given, the key when already loaded (key
 * NULL: loaded on the thread pool), and sha256_hex NULL allowed (no SHA-256 check). */
int backup__restore_into(uv_loop_t *loop, const ConfigBackup *cfg, const char *name, const char *sha256_hex,
                         const uint8_t *key, const char *admin_conninfo, const char *dbname,
                         const BackupRestoreOpts *opts, BackupRestoreDoneFn done, void *data,
                         BackupRestore **ret_restore);

typedef struct BackupTestRestore BackupTestRestore;
/* result: object {"status":"ok"|"failed","database":..,"duration_ms":..,"queries":[...],"error":..}. */
typedef void (*BackupTestRestoreDoneFn)(json_t *result, void *data);

/* Restore file `name` (of cfg->directory) into drsup_verify_<time>_<pid> on cfg->conninfo's server,
 * run the validation queries in it, drop it. done runs once on the loop; NULL when it cannot start. */
BackupTestRestore *backup_test_restore_start(uv_loop_t *loop, const ConfigBackup *cfg, const char *name,
                                             const uint8_t key[BCF_KEY_LEN], const char *expected_sha256_hex,
                                             BackupTestRestoreDoneFn done, void *data);
void backup_test_restore_cancel(BackupTestRestore *r);

/* ---- the module (backup.c, backup_cmd.c) ---- */


typedef enum { JOB_NONE = 0, JOB_BACKUP, JOB_VERIFY, JOB_RESTORE } JobKind;

typedef struct BackupWaiter {
    CtlCall *call;
    bool physical, wait; /* a deferred `backup now` (b->deferred): its arguments */
    struct BackupWaiter *next;
} BackupWaiter;

typedef enum { COND_AGE, COND_SIZE, COND_FAILURES, COND_VERIFY, COND_RESTORE, COND_N } CondId;

struct Backups {
    Core *core;
    bool enabled;
    BackupsOffsiteFn offsite_fn; /* where a backup is (backups_set_offsite), or NULL */
    void *offsite_data;
    BackupsOffsiteListFn offsite_list_fn; /* the bucket's backups (backups_set_offsite_list), or NULL */
    void *offsite_list_data;
    ConfigBackup cfg;            /* conninfos as they follow the primary (backups_follow_primary) */
    PgConnFollow follow;
    char *cluster;
    char *failures_path;
    CronExpr *sched;
    int64_t *next_due;
    size_t n_sched;
    CronExpr *phys_sched;     /* backup.physical.schedules */
    int64_t *phys_next_due;
    size_t n_phys_sched;
    bool has_restore;
    CronExpr restore_cron;
    int64_t restore_next;
    uv_timer_t tick;
    uint64_t last_watch_ms;

    json_t *catalog;  /* manifests, oldest first */
    json_t *failures; /* failure records, oldest first */
    bool failures_loaded;   /* read from state_dir once; memory is the truth after that */
    bool failures_writing;  /* one write of the failures file at a time, in order ... */
    bool failures_dirty;    /* ... and another after it when it changed meanwhile */
    bool scanned;
    char scan_error[512];

    JobKind job_kind;
    char job_name[256];
    int64_t job_started;
    int64_t last_named_started; /* Unix seconds of the newest backup that took its final name */
    bool job_scheduled;
    BackupJob *job;
    BackupVerify *verify;
    BackupTestRestore *restore;
    CtlCall *verify_call;     /* on-demand verification waiting for its answer */
    json_t *verify_manifest;  /* copy being verified */
    uint8_t key[BCF_KEY_LEN]; /* for a verification, loaded by a worker, wiped after */
    bool verify_restore;
    BackupWaiter *waiters;    /* `backup now --wait` */
    BackupWaiter *deferred;   /* `backup now` in the second a backup was named: started at the next tick */
    BackupKind job_backup_kind;        /* of the running JOB_BACKUP */
    BackupToolVersion pg_dump_version; /* the last `pg_dump --version` a job read */
    BackupToolVersion pg_basebackup_version; /* the last `pg_basebackup --version` */

    bool cond_open[COND_N];
    bool cond_known[COND_N]; /* evaluated since start: the first evaluation always reports, so a
                                condition an earlier run of the daemon left open (alerts keeps it)
                                is resolved when its cause is gone */
    char verify_error[512];
    char restore_error[512];

    bool closing;
    int pending;
    void (*closed_cb)(void *);
    void *closed_data;
};

/* backup.c */
/* Now, Unix seconds. */
int64_t backups__now(void);
/* The newest manifest in the catalog (borrowed), or NULL. */
json_t *backups__newest(const Backups *b);
/* The newest manifest of one kind (borrowed), or NULL. */
json_t *backups__newest_of(const Backups *b, BackupKind kind);
/* Failures of backups of `kind` since the newest backup of that kind started (failure records
 * without a kind are logical). */
unsigned backups__consecutive_failures(const Backups *b, BackupKind kind);
/* The manifest of backup `name` (borrowed), or NULL. */
json_t *backups__find(const Backups *b, const char *name);
/* The manifest's test restore status: "ok", "failed" or "skipped". */
const char *backups__restore_status(const json_t *m);
/* What is running, for a "busy" reply. */
const char *backups__busy_message(const Backups *b, char *buf, size_t n);
/* Start a backup of `kind`: 0, DR_EBUSY, -EAGAIN (a backup started less than a second ago) or
 * another negative code. */
int backups__start_backup(Backups *b, bool scheduled, BackupKind kind);
/* Start the deferred `backup now` calls (the backup tick, once a new second has begun). */
void backups__start_deferred(Backups *b);
/* Verify (or test-restore) manifest m; call (may be NULL) gets the answer. 0 or negative (DR_EBUSY). */
int backups__start_verify(Backups *b, json_t *m, bool restore, CtlCall *call);

/* backup_cmd.c */
/* Open or close condition id (an event only on a change). */
void backups__condition(Backups *b, CondId id, bool open, Severity sev, const json_t *details, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Re-evaluate the age, size and failure conditions and the "backup" status component. */
void backups__watch(Backups *b);
int backups__commands_register(Backups *b); /* 0 or -ENOMEM */

#endif
