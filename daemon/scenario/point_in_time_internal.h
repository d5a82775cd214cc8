/*
 * point_in_time_internal: what point_in_time.c and point_in_time_config.c share, and the
 * point-in-time recovery's steps that data_loss.c puts in its own table; not for other modules.
 * The settings, the directories' names and the run-independent cores are point_in_time_core.h's.
 * The scenario's own settings (scenarios.point_in_time) and its run context.
 *
 * A run of another scenario may use the pitr__ steps when it is laid out as a point_in_time run:
 * its section's settings (run->cfg.data) start with a PitrConfig (read by pitr__config_read from
 * its own keys), its context (run->own) starts with a PitrRun (named by pitr__ctx_init), and its
 * parameters hold "target_ms" (the recovery target, wall-clock ms), or "to_end": true (the recovery
 * goes to the end of the staged WAL: no recovery_target_time; PostgreSQL replays until
 * restore_command finds no next file, then promotes), and may hold "plan" (made before the run
 * started, in wal_plan's form: plan_recovery records it instead of asking the local archive).
 */
#ifndef DRSUP_SCN_POINT_IN_TIME_INTERNAL_H
#define DRSUP_SCN_POINT_IN_TIME_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <libpq-fe.h>
#include <uv.h>

#include "cap/backup/backup.h"
#include "config/config.h"
#include "core/control.h"
#include "fsm.h"
#include "scenario/point_in_time_core.h"
#include "scenario/scenario.h"

extern const ConfigScenarioSection point_in_time_config_section;

/* The section's PitrConfig keys (point_in_time_config.c; copy and release: point_in_time_core.h). */
struct CfgSection;
void pitr__config_read(const struct CfgSection *s, void *data);

struct ScnStep;
/* The steps (rows of point_in_time's table; see point_in_time.c for what each records). */
void pitr__step_plan_recovery(FsmCall *call, void *ctx, FsmDone done);
void pitr__step_restore_base_backup(FsmCall *call, void *ctx, FsmDone done);
void pitr__plan_restore_base_backup(FsmCall *call, void *ctx, FsmDone done);
void pitr__step_stage_wal(FsmCall *call, void *ctx, FsmDone done);
/* The end of a stage_wal step once its WAL is in the run's wal_dir: acc ({files, bytes, ...}; owned)
 * becomes the context's "wal" after the recovery settings are written (to the run's target, or to
 * the end with "to_end"); then st is finished. */
void pitr__stage_settle(struct ScnStep *st, json_t *acc);
void pitr__step_start_recovery(FsmCall *call, void *ctx, FsmDone done);
void pitr__plan_start_recovery(FsmCall *call, void *ctx, FsmDone done);
void pitr__step_wait_for_promotion(FsmCall *call, void *ctx, FsmDone done);
void pitr__step_validate_recovery(FsmCall *call, void *ctx, FsmDone done);
void pitr__plan_validate_recovery(FsmCall *call, void *ctx, FsmDone done);
void pitr__step_switch_cluster(FsmCall *call, void *ctx, FsmDone done);
void pitr__plan_switch_cluster(FsmCall *call, void *ctx, FsmDone done);
/* The run's directories, named from its tag (a ScenarioDef.ctx_init). */
int pitr__ctx_init(ScnRun *run, char *err, size_t errlen);
/* The recovered server's conninfo: the admin conninfo on the side port, database dbname. Caller frees. */
char *pitr__side_conninfo(const ScnRun *run, const char *dbname);

/* What is missing for a recovery run of section scenarios.<section> to get through ("" if nothing;
 * the text may be in buf). */
struct ScenarioCaps;
const char *pitr__unconfigured(const PitrConfig *c, const struct ScenarioCaps *caps, int64_t target_ms,
                               const char *section, char *buf, size_t n);
extern const struct ScenarioDef scenario_point_in_time;

/* `recover` without --dry-run (the WAL archive's command hands it over; data: the Scenarios). */
void pitr__cmd_recover(CtlCall *call, const json_t *args, void *data);

#endif
