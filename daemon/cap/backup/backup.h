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

typedef struct Backups Backups;
struct Daemon;

/* Create the module and register its commands. NULL on OOM. */
Backups *backups_new(struct Daemon *d);
/* Would backups_apply_config() accept cfg (every schedule parses)? 0, or <0 with the reason in err.
 * Pure (no I/O). */
int backups_check_config(const Backups *b, const Config *cfg, char *err, size_t errlen);
/* Can the backup key (key_file or key_credential) be loaded now? 0, or <0 with the reason in err; the
 * key is wiped. Advice only: each backup loads it again. Blocking: reads a file, so call it off the
 * loop (reload work, or before the loop runs). */
int backups_check_key(const Config *cfg, char *err, size_t errlen);
/* Apply (or re-apply after reload) the configuration: schedules, settings; rescans when the directory
 * changed. After a passed backups_check_config() it fails only on DR_ECANCELED or -ENOMEM. */
int backups_apply_config(Backups *b, const Config *cfg);
/* Cancel what runs (pg_dump killed, temporaries removed) and close; closed_cb(data) when done. */
void backups_close(Backups *b, void (*closed_cb)(void *data), void *data);

/* The newest VERIFIED backup of the catalog (docs/backup-format.md: container ok, sha256 match,
 * pg_restore --list ok): a new reference to a copy of its manifest, or NULL when there is none.
 * *ret_scanned (if non-NULL) tells whether the catalog has been loaded yet. Loop thread. */
json_t *backups_newest_verified(const Backups *b, bool *ret_scanned);

#endif
