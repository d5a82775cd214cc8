/*
 * scenarios: the recovery scenarios the daemon runs (interface; implemented in daemon/scenario/runner.c).
 *
 * Owns scenario runs: one generic engine (lib/fsm) over one static table per scenario, a durable
 * journal per run in state_dir/runs/, modes (automatic, manual, dry run), RTO/RPO measurement and
 * incident reports, and the control commands execute/runs/run/approve/abort/incidents.
 */
#ifndef DRSUP_SCENARIOS_H
#define DRSUP_SCENARIOS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cap/backup/backup.h"
#include "cap/reconcile.h"
#include "cap/standby.h"
#include "cap/venue/venue.h"
#include "cap/wal/wal.h"
#include "config/config.h"
#include "core/core.h"
#include "detect/detector.h"
#include "observe/replication.h"

typedef struct Scenarios Scenarios;

/* The capabilities the steps act through (borrowed; they outlive the runner). */
typedef struct ScenarioCaps {
    Venue *venue;
    Backups *backups;
    Reconcile *reconcile;
    Standby *standby;
    Detector *detector;
    Replication *replication; /* the cluster's nodes: primary_failure promotes through it */
    WalArchive *wal;          /* the WAL archive: point_in_time plans and replays from it (may be NULL) */
} ScenarioCaps;

/* The runner takes the recovery lease (core->lease) while a run is unfinished or runs are being
 * loaded, registers the venue's resume guard and the detector's incident handler. */
Scenarios *scenarios_new(Core *core, const ScenarioCaps *caps);
/* Would the runs accept cfg (the admin conninfo parses, the database to protect is known)? 0, or <0
 * with the reason in err. Pure (no I/O). */
int scenarios_check_config(const Scenarios *s, const Config *cfg, char *err, size_t errlen);
int scenarios_apply_config(Scenarios *s, const Config *cfg);
/* After a promotion (at start from its record too): a run started (or resumed) from now on uses
 * database.conninfo and scenarios.admin_conninfo (or the one derived from database.conninfo)
 * retargeted to `to` when they name the old primary's server `from` (pgconn_conninfo_follow). A
 * run keeps what it took. 0, or -ENOMEM. */
int scenarios_follow_primary(Scenarios *s, const char *from, const char *to);
/* Replay unfinished runs from state_dir/runs and resume them (called at start, after the venue). */
int scenarios_start(Scenarios *s);
void scenarios_close(Scenarios *s, void (*closed_cb)(void *data), void *data);

/*
 * Start a scenario run because the detector (or an operator) saw `reason` at `detected_ms` (wall
 * clock, ms). Returns 0 and fills ret_run_id (may be NULL), -EBUSY when a run of any scenario is
 * already active (the detector then just records the observation), -ENOENT for an unknown
 * scenario name.
 */
int scenarios_trigger(Scenarios *s, const char *scenario, const char *reason, int64_t detected_ms,
                      char *ret_run_id, size_t run_id_len);
/* The same with the run's parameters (an object, copied; NULL: none), as scn_trigger_params. */
int scenarios_trigger_params(Scenarios *s, const char *scenario, const char *reason, int64_t detected_ms,
                             const json_t *params, char *ret_run_id, size_t run_id_len);

/* True while a run is unfinished (trading must not resume), or while runs are being loaded. */
bool scenarios_active(const Scenarios *s);

/* One line for sd_notify STATUS= ("recovery RUN: running, restored"), "" when idle. */
void scenarios_status_line(const Scenarios *s, char *out, size_t n);

#endif
