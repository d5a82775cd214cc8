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

#include "cap/backup/backup.h"
#include "config/config.h"
#include "core/core.h"

typedef struct WalArchive WalArchive;

/* The archive completes the base backups of `backups`: its retention keeps what the oldest of them
 * needs, and recovery plans start from them. */
WalArchive *wal_new(Core *core, Backups *backups);
/* Apply the wal section: the receiver (re)started when its connection or archive changed. 0, or
 * DR_ECANCELED / -ENOMEM. */
int wal_apply_config(WalArchive *w, const Config *cfg);
/*
 * drsupervisord --release-sync (the unit's ExecStopPost=): when the primary's
 * synchronous_standby_names is the archive's, reset it so commits stop waiting for a receiver that
 * is gone. BLOCKING (libpq's PQconnectdb/PQexec): only for the one-shot command, never the loop.
 * 0 with what it did in msg, or DR_EDB.
 */
int wal_release_sync(const ConfigWal *cfg, char *msg, size_t n);
/* Stop receiving (what is received but not sealed is still in the slot) and close. */
void wal_close(WalArchive *w, void (*closed_cb)(void *data), void *data);

#endif
