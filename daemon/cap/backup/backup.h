/*
 * backup: the backup capability of the daemon.
 *
 * Owns the backup schedules (cron, UTC), the one-at-a-time job slot (a backup, a verification or a
 * test restore), the in-memory catalog rebuilt from the backup directory's manifests at start
 * (off the loop), the failure log (state_dir/backup-failures.json), retention after each successful
 * backup, the watch conditions (backup age, size against the baseline, consecutive failures, failed
 * verification or test restore) and the `backup` status component, and the control commands
 * backups, backup_now, backup_status and verify; and restoring a verified backup into a new
 * database for whoever needs one (the test restore, the standby, the corruption scenario). See
 * docs/backups.md.
 */
#ifndef DRSUP_BACKUP_H
#define DRSUP_BACKUP_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/core.h"

typedef struct Backups Backups;

/* A backup file's manifest is <file><BACKUP_MANIFEST_SUFFIX> in the same directory. */
#define BACKUP_MANIFEST_SUFFIX ".manifest.json"

/* Create the module and register its commands. NULL on OOM. */
Backups *backups_new(Core *core);
/* Would backups_apply_config() accept cfg (every schedule parses)? 0, or <0 with the reason in err.
 * Pure (no I/O). */
int backups_check_config(const Backups *b, const Config *cfg, char *err, size_t errlen);
/*
 * Start-up only, before the loop runs and before anything writes into the backup directory:
 * remove what a killed daemon left there, each with a log line: temporaries of backups and
 * manifests that never committed (".<name>.tmp.<pid>.<random>") and the plaintext restore spools
 * (".restore-*.dump", ".standby-staging.dump"). Returns the count removed. Blocking (a directory
 * listing).
 */
int backups_clean_leftovers(const Config *cfg);
/* Apply (or re-apply after reload) the configuration: schedules, settings; rescans when the directory
 * changed. After a passed backups_check_config() it fails only on DR_ECANCELED or -ENOMEM. */
int backups_apply_config(Backups *b, const Config *cfg);
/*
 * After a promotion (at start from its record too): backup.conninfo and backup.physical.conninfo
 * follow it when they name the old primary's server `from` (pgconn_conninfo_follow), retargeted
 * to `to`; any other is used as written. Kept across reloads; the next backup uses it (one running
 * keeps its own). 0, or -ENOMEM.
 */
int backups_follow_primary(Backups *b, const char *from, const char *to);
/* Cancel what runs (pg_dump killed, temporaries removed) and close; closed_cb(data) when done. */
void backups_close(Backups *b, void (*closed_cb)(void *data), void *data);

/* The newest VERIFIED backup of the catalog (docs/backup-format.md: container ok, sha256 match,
 * pg_restore --list ok): a new reference to a copy of its manifest, or NULL when there is none.
 * *ret_scanned (if non-NULL) tells whether the catalog has been loaded yet. Loop thread. */
json_t *backups_newest_verified(const Backups *b, bool *ret_scanned);
/* The same bounded by before_ms (wall ms): the newest verified logical backup that finished and
 * was verified (verification.verified_at) before it, a new reference to a copy, or NULL. A backup
 * taken or checked after T (a breach's start) is never the answer. Loop thread. */
json_t *backups_newest_verified_before(const Backups *b, int64_t before_ms, bool *ret_scanned);
/* Every physical (base) backup of the catalog, oldest first: a new array of copies of their
 * manifests (verified or not: see "verification"), NULL on OOM. *ret_scanned (if non-NULL) tells
 * whether the catalog has been loaded yet. Loop thread. (The WAL archive keeps what they need.) */
json_t *backups_physical(const Backups *b, bool *ret_scanned);
/* Rotate the daemon's backup key (backup_keys.c): a new random key in the key ring
 * (state_dir/backup-keys/<id>.key, 0600), made the key new backups are written with; backups
 * under earlier keys stay readable (each is read with the key of its key id). done(status, new and
 * previous key ids, why) on the loop, once. 0, or DR_ECONFIG (no backups), DR_ECANCELED, -ENOMEM
 * without calling done. */
typedef void (*BackupsKeyRotatedFn)(int status, const char *new_id, const char *old_id, const char *err, void *data);
int backups_rotate_key(Backups *b, BackupsKeyRotatedFn done, void *data);
/* Every backup of the catalog (logical and physical), oldest first: a new array of copies of their
 * manifests (verified or not), NULL on OOM. *ret_scanned as above. Loop thread. (The off-site
 * uploader copies the verified ones.) */
json_t *backups_catalog(const Backups *b, bool *ret_scanned);
/* Who can tell whether a backup file is off-site too (the off-site uploader, registered by the
 * wiring): `backups` then shows each one's location, "local" or "both". fn NULL: every one local. */
typedef bool (*BackupsOffsiteFn)(const char *file, void *data);
void backups_set_offsite(Backups *b, BackupsOffsiteFn fn, void *data);
/* Who lists the backups that are in the bucket (the off-site uploader's record): a new array of
 * {name, kind, started_at, file_size_bytes, verified, location: "offsite"}, NULL on OOM. `backups`
 * adds the ones the local catalog no longer has (removed by backup.retention), oldest first, before
 * the local ones. fn NULL: none. */
typedef json_t *(*BackupsOffsiteListFn)(void *data);
void backups_set_offsite_list(Backups *b, BackupsOffsiteListFn fn, void *data);
/* Load the configured key (backup.key_file or backup.key_credential), whatever the key ring says
 * (complete_disaster's downloads, the off-site verification). 0, or DR_EKEY with err. Blocking:
 * thread pool only. */
int backups_load_key(const ConfigBackup *cfg, uint8_t key[32], char *err, size_t errlen);
/* The key new files are written with: the ring's current (after a rotation), else the configured
 * key; and the key of a key id (32 hex digits) by the ring's order (docs/security-breach.md). For
 * the WAL archive, whose new segments follow a rotation. 0, or DR_EKEY with err. Blocking: thread
 * pool only. */
int backups_load_writing_key(const ConfigBackup *cfg, uint8_t key[32], char *err, size_t errlen);
int backups_load_key_for_id(const ConfigBackup *cfg, const char *key_id, uint8_t key[32], char *err, size_t errlen);
/* The key of the container whose first `len` bytes are `head` (its header names the key id): a file
 * written before or after a key rotation, from the bucket (complete_disaster, verify --offsite).
 * Fewer bytes than a header, or not a container: the configured key. Blocking: thread pool only. */
int backups_load_key_for_header(const ConfigBackup *cfg, const uint8_t *head, size_t len, uint8_t key[32], char *err,
                                size_t errlen);
/* A manifest's started_at / finished_at as Unix seconds (-1 if missing). */
int64_t backup_manifest_started(const json_t *m);
int64_t backup_manifest_finished(const json_t *m);
/* The wall-clock ms the backup had certainly finished by (Unix ms, -1 if finished_at is missing):
 * finished_at_ms + 1 when the manifest records it in finished_at's second, else the end of
 * finished_at's second (a manifest written before finished_at_ms existed). A base backup may
 * serve a recovery to T only when this is <= T: the backup's consistency point is before it. */
int64_t backup_manifest_finished_by_ms(const json_t *m);
/* Whether a manifest says its backup verified (container, checksum, and pg_restore --list for a
 * logical one). */
bool backup_manifest_is_verified(const json_t *m);

/* ---- restoring a backup into a new database ---- */

typedef struct BackupRestore BackupRestore;

typedef struct BackupRestoreOpts {
    /* 0: stream the decrypted dump into one pg_restore (nothing touches the disk). N > 0: decrypt
     * it first into a 0600 spool file in the backup directory (on the thread pool), then
     * `pg_restore -j N` on that file (a parallel restore needs a file); the spool is removed
     * whatever happens. Needs room for the uncompressed dump. */
    unsigned jobs;
    const char *spool_name; /* the spool's file name in the backup directory; NULL: .restore-<dbname>.dump */
    uint64_t timeout_ms;    /* for pg_restore; 0: none */
    /* maintenance_work_mem of pg_restore's sessions in kB (PGOPTIONS, which a conninfo's own
     * options= overrides): index and constraint builds sort in memory; 0: the server's setting. */
    uint64_t maintenance_work_mem_kb;
    bool replace;           /* DROP DATABASE IF EXISTS dbname first: the leftover of an interrupted restore */
    bool low_priority;      /* background work (test restore, standby): backup.nice / backup.ioprio for
                             * pg_restore and the decrypting worker; a recovery's restore runs at normal
                             * priority (its RTO counts) */
    /* When pg_restore was started (dbname exists, not complete yet); may be NULL. */
    void (*started)(void *data);
} BackupRestoreOpts;

/* Where a restore stopped. */
typedef enum {
    BACKUP_RESTORE_DONE = 0,
    BACKUP_RESTORE_KEY,     /* loading the backup key */
    BACKUP_RESTORE_REPLACE, /* dropping the leftover (opts.replace) */
    BACKUP_RESTORE_CREATE,  /* CREATE DATABASE */
    BACKUP_RESTORE_RESTORE, /* verify, decrypt, pg_restore */
} BackupRestoreStage;

typedef struct BackupRestoreResult {
    /* 0: dbname holds the backup. Else DR_EKEY (key), DR_EDB or -ETIMEDOUT (a statement),
     * DR_ECORRUPT (the file failed verification: container or SHA-256), DR_ECHILD (pg_restore
     * failed), DR_ECANCELED, -ENOMEM. */
    int status;
    BackupRestoreStage stage;
    const char *error;      /* why, for a message ("" on success); never holds a password */
    bool dropped;           /* on failure: the partial database is gone or was never created */
    const char *drop_error; /* on failure: why it could not be dropped ("" when it was, or need not be) */
    uint64_t duration_ms;
} BackupRestoreResult;

typedef void (*BackupRestoreDoneFn)(const BackupRestoreResult *res, void *data);

/*
 * Restore the backup file `name` of b's backup directory, verified against sha256_hex (the
 * manifest's), into a new database `dbname` on the server of admin_conninfo (key=value form;
 * connects to it for CREATE/DROP DATABASE, and with dbname appended for pg_restore -d): load the
 * key (thread pool), [drop the leftover,] CREATE DATABASE, verify + decrypt + pg_restore
 * --no-owner --no-privileges --exit-on-error. A failure drops the partial database before done().
 * Uses a copy of b's backup configuration as it is now; the restore does not need b afterwards.
 * Returns 0 and later calls done() exactly once on the loop (never from inside this call or
 * backup_restore_cancel()), *ret_restore (may be NULL) being the handle until then; or returns
 * DR_ECONFIG (backups are not configured), -EINVAL (a name that is not a backup file of the
 * directory, no sha256_hex, a dbname too long) or -ENOMEM without calling done().
 */
int backup_restore_into(Backups *b, const char *name, const char *sha256_hex, const char *admin_conninfo,
                        const char *dbname, const BackupRestoreOpts *opts, BackupRestoreDoneFn done, void *data,
                        BackupRestore **ret_restore);
/* Stop (a running pg_restore is killed); done() follows with DR_ECANCELED. drop_partial: drop the
 * database if it was created (false at shutdown: the next attempt finds it and replaces it). Only
 * valid until done() ran. */
void backup_restore_cancel(BackupRestore *r, bool drop_partial);

/* ---- unpacking a base backup (backup_unpack.c) ---- */

typedef struct BackupUnpack BackupUnpack;
/* status 0 (the child read the whole tar and exited 0), DR_EKEY, DR_ECORRUPT (the file failed
 * verification), DR_ECHILD (the child failed: error says how), DR_ECANCELED, -ENOMEM; bytes: the
 * tar's size. */
typedef void (*BackupUnpackDoneFn)(int status, const char *error, uint64_t bytes, void *data);
/*
 * Unpack the physical backup `name` of the catalog: load the key (thread pool), then verify and
 * decrypt the file (thread pool, against its manifest's SHA-256) into the stdin of the child argv
 * (NULL-terminated, copied; e.g. {"runuser", "-u", "postgres", "--", "tar", "-x", "-C", DIR, NULL}),
 * killed after timeout_ms (0: never). Returns 0 and later calls done() once on the loop (never from
 * inside this call), *ret (may be NULL) the handle until then; or DR_ECONFIG (backups are not
 * configured), -EINVAL (no physical backup of that name), -ENOMEM without calling done().
 */
int backup_unpack_base(Backups *b, const char *name, const char *const *argv, uint64_t timeout_ms,
                       BackupUnpackDoneFn done, void *data, BackupUnpack **ret);
/* The same for a base backup's container at `path` outside the catalog (downloaded from the bucket),
 * checked against sha256_hex (its manifest's). -EINVAL for a bad argument. */
int backup_unpack_file(Backups *b, const char *path, const char *sha256_hex, const char *const *argv,
                       uint64_t timeout_ms, BackupUnpackDoneFn done, void *data, BackupUnpack **ret);
/* Stop (the child is killed); done() follows with DR_ECANCELED. Only valid until done() ran. */
void backup_unpack_cancel(BackupUnpack *u);

#endif
