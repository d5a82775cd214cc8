/*
 * wal: the continuous, encrypted WAL archive (docs/wal.md).
 *
 * Owns the WAL receiver (a replication connection to the primary over a physical slot, streamed
 * on the loop with libpq's COPY BOTH), the segment being received (in memory; sealed into the
 * encrypted partial file at least every wal.flush_interval and only then reported flushed to the
 * primary, so the slot keeps what is not yet durable), the archive directory (complete segments,
 * timeline history files; lib/walarchive), its retention (what the oldest base backup needs is
 * kept), its conditions (wal.stalled:C, wal.lag:C, wal.gap:C), the wal_status and recover (the
 * plan of a point-in-time recovery: --dry-run) control commands and the archive's metrics.
 */
#ifndef DRSUP_WAL_H
#define DRSUP_WAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "cap/backup/backup.h"
#include "config/config.h"
#include "core/control.h"
#include "core/core.h"

typedef struct WalArchive WalArchive;

/* The archive completes the base backups of `backups`: its retention keeps what the oldest of them
 * needs, and recovery plans start from them. */
WalArchive *wal_new(Core *core, Backups *backups);
/* Apply the wal section: the receiver (re)started when its connection or archive changed. 0, or
 * DR_ECANCELED / -ENOMEM. */
int wal_apply_config(WalArchive *w, const Config *cfg);
/*
 * After a promotion (at start from its record too): wal.conninfo follows it when it names the old
 * primary's server `from` (pgconn_conninfo_follow), retargeted to `to`; the receiver then
 * reconnects there (its slot created when wal.create_slot) and follows the new timeline. Kept
 * across reloads. 0, or DR_ECANCELED / -ENOMEM.
 */
int wal_follow_primary(WalArchive *w, const char *from, const char *to);
/*
 * drsupervisord --release-sync (the unit's ExecStopPost=): when the primary's
 * synchronous_standby_names is the archive's, reset it so commits stop waiting for a receiver that
 * is gone. BLOCKING (libpq's PQconnectdb/PQexec): only for the one-shot command, never the loop.
 * 0 with what it did in msg, or DR_EDB.
 */
int wal_release_sync(const ConfigWal *cfg, char *msg, size_t n);
/* The plan of a recovery to target_ms (wall ms), as drctl recover --dry-run shows it: made from
 * a listing of the archive on the thread pool and the catalog's base backups (wal_plan_decide).
 * done(status, plan, err, data) runs once on the loop: status 0 with plan (a new reference the
 * callee owns; plan.ok says whether a recovery is possible, plan.why why not), or <0 with err
 * (DR_ECANCELED at shutdown). Returns 0, or DR_ESTATE (no archive, or not read yet: msg says) or
 * -ENOMEM without calling done. */
typedef void (*WalPlanFn)(int status, json_t *plan, const char *err, void *data);
int wal_plan(WalArchive *w, int64_t target_ms, WalPlanFn done, void *data, char *msg, size_t msglen);
/* target_ms for a plan to the end of the archive: the newest verified base backup and every WAL
 * file after it, continuous (the plan's target_ms is then the archive's end). */
#define WAL_PLAN_TO_END INT64_MAX

/* Decrypt, verify and write into `dir` (created 0700 if missing; it and every file owned by
 * uid:gid, files 0600) what a recovery following `plan` (wal_plan's) replays: the segments from
 * the plan's first to its last and the one after it when archived (the newest timeline's copy of
 * each; the segment being received as its sealed bytes followed by zeros, as drctl wal-fetch gives
 * it) and every timeline history file. The key never leaves the daemon: the files are plaintext
 * WAL, as the server's own pg_wal/ holds it. On the archive's job queue (thread pool), in order
 * with its sealing. done(status, files, bytes, err, data) once on the loop. Returns 0, or
 * DR_ESTATE / -EINVAL / -ENOMEM without calling done. */
typedef void (*WalStageFn)(int status, uint64_t files, uint64_t bytes, const char *err, void *data);
int wal_stage(WalArchive *w, const json_t *plan, const char *dir, uid_t uid, gid_t gid, WalStageFn done, void *data,
              char *msg, size_t msglen);

/* The handler of `recover` without dry_run (the scenario layer's: a recovery run). Until one is
 * set, the daemon refuses. */
void wal_set_recover_handler(WalArchive *w, CtlHandlerFn fn, void *data);

/* Before retention removes a file it no longer needs, ask may_go(file name, data) (on the loop):
 * a file it refuses stays (the off-site copy has not got it yet) and is asked about again within
 * seconds. NULL: no one to ask. */
void wal_set_may_go(WalArchive *w, bool (*may_go)(const char *file, void *data), void *data);
/* The server's WAL segment size in bytes, 0 until the receiver learned it. `wal` is a WalArchive. */
uint64_t wal_segment_size(void *wal);

/* Stop receiving (what is received but not sealed is still in the slot) and close. */
void wal_close(WalArchive *w, void (*closed_cb)(void *data), void *data);
/* The backup key was rotated (security_breach's rotate_backup_key): the writing key is loaded again
 * (the key ring's current) on the archive's job queue, and the segments from the next one on are
 * written with it; the one being received keeps its key. Every file stays readable by its key id.
 * 0, or <0 (out of memory; no archive running). */
int wal_key_rotated(WalArchive *w);

#endif
