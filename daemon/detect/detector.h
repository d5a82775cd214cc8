/*
 * detector: observations of the database turned into actions.
 *
 * Owns the detector's state machine (daemon/detect/detector_sm.h, the rules) and what carries its
 * decisions out: the halt (venue_halt, fail closed), the restart command of a database that is
 * merely down (lib/child, with a delay, a deadline and a bounded number of attempts; its output
 * and the server log are searched for damaged-file messages), the scheduled corruption check
 * (configured queries and amcheck's bt_index_check over its own nonblocking connection, so a
 * damaged page shows up as XX001), the start of the database_corruption scenario once corruption
 * is confirmed (an incident of kind "corruption" handed to whoever registered for incidents: the
 * scenario runner maps it to the scenario that handles it), the events of each decision (conditions detector.unreachable:<cluster>,
 * detector.restart:<cluster>, detector.corruption:<cluster>, detector.failover:<cluster>,
 * detector.app_crash:<cluster>: the platform's health probe down while the database answers, the
 * incident kind "app_crash"; detector.split_brain:<cluster>: two primaries, the incident kind
 * "network_partition"; detector.data_loss:<cluster>: a watched table lost rows, detect/watched.h,
 * the incident kind "data_loss" with the recovery target as its parameters) and the detector section of
 * `drctl status`. The liveness probe (daemon/observe/probes.c) feeds it each result.
 *
 * Trading is never resumed here: when the database comes back the halt stays, and an operator
 * (drctl resume, after checking) or a scenario's reconcile resumes it.
 */
#ifndef DRSUP_DETECTOR_H
#define DRSUP_DETECTOR_H

#include <jansson.h>
#include <stdint.h>

#include "cap/venue/venue.h"
#include "config/config.h"
#include "core/core.h"
#include "detect/detector_sm.h"

/* Incident kinds the detector reports (ScenarioDef.handles names them). */
#define INCIDENT_CORRUPTION "corruption"
/* The primary does not answer, the standbys lost it too, and one can be promoted (detector_sm.h). */
#define INCIDENT_PRIMARY_FAILURE "primary_failure"
/* The platform's health fails platform.down_after times while the database answers (detector.app_crash). */
#define INCIDENT_APP_CRASH "app_crash"
/* Two or more nodes answer as primaries in one replication round (detector_sm.h: split brain). */
#define INCIDENT_NETWORK_PARTITION "network_partition"
/* A watched table dropped beyond its limit between two probes, or is gone (detector.watched_tables). */
#define INCIDENT_DATA_LOSS "data_loss"
/* Someone who should not has been in: a signed webhook (core/webhook.c) or one of the daemon's own
 * tamper signals (a backup failing verification, the configuration file changed without a reload,
 * the control socket's owner or mode changed), each raised by its own module. */
#define INCIDENT_SECURITY_BREACH "security_breach"

typedef struct Detector Detector;

/*
 * An incident of `kind` was confirmed because of `reason` at `detected_ms` (wall clock), with the
 * run's parameters (borrowed; NULL: none; data_loss: the recovery target and the tables). The handler
 * starts the matching recovery and returns 0 with the run's id in ret_run, -EINPROGRESS when it is
 * queued, -EBUSY when a run is already active, or another negative code (then trading stays halted
 * and the detector raises a critical event with err_str of it).
 */
typedef int (*DetectorIncidentFn)(const char *kind, const char *reason, int64_t detected_ms, const json_t *params,
                                  char *ret_run, size_t run_len, void *data);

/* The detector halts through `venue` (borrowed; outlives the detector). */
Detector *detector_new(Core *core, Venue *venue);
/* Who hears about incidents (the scenario runner); NULL: nobody, an incident is a critical event. */
void detector_on_incident(Detector *det, DetectorIncidentFn fn, void *data);
/* Report an incident another source confirmed (detect/breach.c: the signed webhook, the tamper
 * signals) to whoever hears about incidents: the handler's answer (0 with the run in ret_run,
 * -EINPROGRESS, -EBUSY, ...), -ENOSYS when nobody does. Never from inside an events callback. */
int detector_report_incident(Detector *det, const char *kind, const char *reason, int64_t detected_ms, char *ret_run,
                             size_t run_len);
/*
 * Where the detector learns what the replication side says of the primary (the wiring registers
 * the replication monitor): fill *out for the failures since since_ms (wall ms) and return true,
 * or false when there is nothing to ask (then a lost primary only halts).
 */
typedef bool (*DetectorStandbyViewFn)(int64_t since_ms, DetectorStandbyView *out, void *data);
void detector_on_standby_view(Detector *det, DetectorStandbyViewFn fn, void *data);
/* Would detector_apply_config() accept cfg? 0, or <0 with the reason in err. Pure (no I/O). */
int detector_check_config(const Detector *det, const Config *cfg, char *err, size_t errlen);
/* Start or re-time the corruption check from cfg->detector (also on reload). After a passed
 * detector_check_config() it fails only on DR_ECANCELED or -ENOMEM. */
int detector_apply_config(Detector *det, const Config *cfg);
/* After a promotion (at start from its record too): the corruption check and the watched tables
 * use detector.conninfo retargeted to `to` when it names the old primary's server `from`
 * (pgconn_conninfo_follow); their connections are remade. Kept across reloads. 0, or -ENOMEM. */
int detector_follow_primary(Detector *det, const char *from, const char *to);
/* Stop timers, kill a running restart command, close the check connection; closed_cb when done. */
void detector_close(Detector *det, void (*closed_cb)(void *data), void *data);

/* The liveness probe answered; checksum_failures is the sum over pg_stat_database (< 0: unknown). */
void detector_db_probe_ok(Detector *det, int64_t checksum_failures);
/* The liveness probe failed with SQLSTATE sqlstate ("" when libpq made the error) and message. */
void detector_db_probe_failed(Detector *det, const char *sqlstate, const char *message);

/* The platform's health probe answered (2xx), or failed with message (detector_sm.h: app crash). */
void detector_platform_probe_ok(Detector *det);
void detector_platform_probe_failed(Detector *det, const char *message);

/* A recovery run ended (run: its id): forget the episode, back to healthy, checks re-armed; the
 * conditions it opened stay open until their cause is gone (detector_sm.h), except that
 * recovered (the run succeeded) resolves detector.corruption. */
void detector_run_ended(Detector *det, const char *run, bool recovered);

/* A replication round ended (the wiring relays observe/replication's rounds): seen when two or more
 * nodes answered as primaries, `nodes` their names. Ignored while a recovery run holds the lease
 * (a failover or a switchover has two primaries for a moment). */
void detector_split_brain(Detector *det, bool seen, const char *nodes);

/* The watched tables: each one's statement, last good observation and floor (detect/watched.h). New
 * reference (an empty array when none are configured). */
json_t *detector_watched_tables_json(const Detector *det);

/* {"phase":..., "consecutive_failures":..., ...} for `drctl status`. New reference. */
json_t *detector_status_json(const Detector *det);

#endif
