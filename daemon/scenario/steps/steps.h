/*
 * steps: the steps every recovery scenario may put in its table (the files of daemon/scenario/steps/).
 *
 * Each is an lib/fsm step (or probe, or dry-run plan) over a ScnRun as the context: asynchronous,
 * safe to run again, acting on the world only through the run's capabilities (run->caps: venue,
 * backups, reconcile). A scenario file names them in its table next to its own steps.
 *
 *   halt.c           halt_trading: halted and confirmed by the platform
 *   select_backup.c  select_backup: the newest verified backup is the restore point (ctx "backup")
 *   reconcile.c      reconcile: the database matches the exchange (ctx "reconcile")
 *   resume.c         resume_shadow, resume_live: through the venue's resume guard
 */
#ifndef DRSUP_SCENARIO_STEPS_H
#define DRSUP_SCENARIO_STEPS_H

#include <stdint.h>

#include "fsm.h"
#include "scenario/scn_internal.h"

void scn_step_halt_trading(FsmCall *call, void *ctx, FsmDone done);
void scn_plan_halt_trading(FsmCall *call, void *ctx, FsmDone done);

void scn_step_select_backup(FsmCall *call, void *ctx, FsmDone done);
void scn_plan_select_backup(FsmCall *call, void *ctx, FsmDone done);
/* The chosen backup's start (wall ms), 0 before select_backup: a ScenarioDef.restore_point_ms. */
int64_t scn_backup_restore_point_ms(const ScnRun *run);

void scn_step_reconcile(FsmCall *call, void *ctx, FsmDone done);
void scn_plan_reconcile(FsmCall *call, void *ctx, FsmDone done);

void scn_step_resume_shadow(FsmCall *call, void *ctx, FsmDone done);
void scn_plan_resume_shadow(FsmCall *call, void *ctx, FsmDone done);
void scn_step_resume_live(FsmCall *call, void *ctx, FsmDone done);
void scn_probe_resume_live(FsmCall *call, void *ctx, FsmProbeDone done);
void scn_plan_resume_live(FsmCall *call, void *ctx, FsmDone done);

#endif
