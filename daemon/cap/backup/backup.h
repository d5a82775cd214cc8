/*
 * backup: the backup capability of the daemon.
 *
 * Owns the backup schedules (cron, UTC), the one-at-a-time job slot (a backup, a verification or a
 * test restore), the in-memory catalog rebuilt from the backup directory's manifests at start
 * (off the loop), the failure log (state_dir/backup-failures.json), retention after each successful
 * backup, the watch conditions (backup age, size against the baseline, consecutive failures, failed
 * verification or test restore) and the `backup` status component, and the control commands
 * backups, backup_now, backup_status and verify. See docs/backups.md.
 */
#ifndef DRSUP_BACKUP_H
#define DRSUP_BACKUP_H

#include <jansson.h>
#include <stdbool.h>

#include "config/config.h"
#include "core/core.h"

typedef struct Backups Backups;

/* Create the module and register its commands. NULL on OOM. */
Backups *backups_new(Core *core);
/* Apply (or re-apply after reload) the configuration: schedules, settings; rescans when the directory
 * changed. */
int backups_apply_config(Backups *b, const Config *cfg);
/* Cancel what runs (pg_dump killed, temporaries removed) and close; closed_cb(data) when done. */
void backups_close(Backups *b, void (*closed_cb)(void *data), void *data);

/* The newest VERIFIED backup of the catalog (docs/backup-format.md: container ok, sha256 match,
 * pg_restore --list ok): a new reference to a copy of its manifest, or NULL when there is none.
 * *ret_scanned (if non-NULL) tells whether the catalog has been loaded yet. Loop thread. */
json_t *backups_newest_verified(const Backups *b, bool *ret_scanned);

#endif
