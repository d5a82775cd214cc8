/*
 * standby: the newest verified backup, restored in advance (scenarios.database_corruption.standby).
 * The scenario that uses it configures it (StandbySettings, from its own section).
 *
 * Owns the standby database X_drsup_standby of the protected database X: after every verified
 * backup (and at start, and after a recovery run) the backup is restored in the background into
 * X_drsup_staging (pg_restore -j standby_jobs from a 0600 temporary, then ANALYZE), connections to
 * it are refused, it replaces the previous standby under the standby name and is marked with a
 * COMMENT naming the backup and its SHA-256. The database_corruption scenario then takes the
 * standby (a rename) instead of restoring, when it holds exactly the backup the run selected.
 *
 * Nothing runs while a recovery run is active (a cycle in progress is stopped); a failure removes
 * the partial copy, is reported (status, event standby.failed:<cluster>) and retried with backoff.
 * Loop thread only. See docs/scenarios.md, "The standby restore".
 */
#ifndef DRSUP_STANDBY_H
#define DRSUP_STANDBY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cap/backup/backup.h"
#include "config/config.h"
#include "core/core.h"

typedef struct Standby Standby;

#define STANDBY_SUFFIX "_drsup_standby"
#define STANDBY_STAGING_SUFFIX "_drsup_staging"
#define STANDBY_MARKER_PREFIX "drsupervisor standby: backup "

/* What the scenario that uses the standby asks of it. Off (all zero) until it is configured. */
typedef struct StandbySettings {
    bool enabled;
    int64_t jobs;                 /* pg_restore -j N of a standby restore */
    uint64_t restore_timeout_ms;  /* one standby restore's deadline */
} StandbySettings;

Standby *standby_new(Core *core, Backups *backups);
/* Would standby_apply_config() run a standby with cfg and set (a backup section, a database to
 * protect)? 0, or <0 with the reason in err. Pure (no I/O). */
int standby_check_config(const Standby *sb, const Config *cfg, const StandbySettings *set, char *err, size_t errlen);
/* Apply (or re-apply after reload) the configuration, then look at what there is to do. */
int standby_apply_config(Standby *sb, const Config *cfg, const StandbySettings *set);
/* Re-evaluate now: start a cycle when the standby is behind the newest verified backup, or stop the
 * cycle in progress when a recovery run became active. Cheap; call it on any change. */
void standby_kick(Standby *sb);
/* Stop what runs (a pg_restore is killed; the partial copy is left for the next cycle to drop). */
void standby_close(Standby *sb, void (*closed_cb)(void *data), void *data);
/* {"enabled":..,"state":"off|waiting|staging|ready|failed|paused","database":..,"backup":..,...} */
json_t *standby_status_json(const Standby *sb);

/* The standby database's name for protected database `database`. */
void standby_dbname(const char *database, char *out, size_t n);
/* The COMMENT that marks a complete standby of the backup `name` with SHA-256 `sha256_hex`. */
void standby_marker(const char *name, const char *sha256_hex, char *out, size_t n);

#endif
