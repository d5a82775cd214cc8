/*
 * drill: rehearsals of recovery scenarios against a scratch environment (drctl drill, docs/drills.md).
 *
 * Owns drills, one at a time, as a job of their own beside the scenario engine (never a run: a
 * drill holds no recovery lease, so the detector halts and the runner starts on a real incident as
 * usual, and it has no resume step, so it can never open the venue's resume path): for a scenario
 * with a drill (ScenarioDef.drill_settings) the newest verified backup restored into a scratch
 * database <db>_drill_<tag> through backup_restore_into (the real restore's path and settings, so
 * its duration is the real one), the scenario's validation queries there, a compare-only
 * reconcile of it with the exchange (nothing replayed, nothing noted on the venue), the scratch
 * database dropped, and the report state_dir/incidents/drill-<...>.json (atomically, on the
 * thread pool) with the RTO a real run would have against the scenario's target. The scratch
 * database is declared aside on the recovery lease while it exists. A recovery run taking the
 * lease aborts the drill in flight. Also the scheduled drills (drills.schedule), the
 * drill.failed:<scenario> condition, the drills' metrics, the readiness checks drill.<scenario>
 * and restore.free_space (statvfs on the thread pool, cached), and the control commands drill,
 * drills and drill_report.
 */
#ifndef DRSUP_DRILL_H
#define DRSUP_DRILL_H

#include "cap/backup/backup.h"
#include "cap/reconcile.h"
#include "cap/wal/wal.h"
#include "config/config.h"
#include "core/core.h"

typedef struct Drills Drills;

/* wal (may be NULL): the archive point_in_time drills plan and stage from. Registers the commands, the readiness checks and the metrics. NULL on OOM. */
Drills *drills_new(Core *core, Backups *backups, Reconcile *reconcile, WalArchive *wal);
/* Would drills_apply_config accept cfg (each scheduled scenario exists and has a drill)? Pure. */
int drills_check_config(const Drills *ds, const Config *cfg, char *err, size_t errlen);
/* The schedule and the free-space check from cfg (on start and every reload). 0 or -ENOMEM. */
int drills_apply_config(Drills *ds, const Config *cfg);
/* Read the history of drill reports (thread pool). 0 or a negative libuv code. */
int drills_start(Drills *ds);
/* A drill in flight is aborted (its scratch database dropped); closed_cb(data) once nothing is left. */
void drills_close(Drills *ds, void (*closed_cb)(void *data), void *data);

#endif
