/*
 * database_corruption_internal: what database_corruption.c and database_corruption_db.c share; not for other
 * modules.
 *
 * One step or probe invocation (ScnStep: owned by the invocation, freed when it finishes or
 * answers), its SQL helpers and the catalog inspection, and the database steps the table in
 * database_corruption.c names; its settings (database_corruption_config.c).
 */
#ifndef DRSUP_SCN_CORRUPTION_INTERNAL_H
#define DRSUP_SCN_CORRUPTION_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <uv.h>

#include "cap/backup/backup.h"
#include "child.h"
#include "fsm.h"
#include "pgconn.h"
#include "scenario/scn_internal.h"
#include "scenario/steps/steps.h"

#define SCN_MARKER "drsupervisor: restore complete, run "

/* database_corruption's own part of a run (ScnRun.own): the databases it names for run tag T. */
typedef struct CorruptionRun {
    char damaged[128];  /* X_damaged_T: the evidence */
    char restored[128]; /* X_restore_T: the restore, renamed to X by the switch */
    char standby[128];  /* the standby restore's database (cap/standby.h) */
} CorruptionRun;

static inline CorruptionRun *corruption_run(const ScnRun *run)
{
    return run->own;
}

/* database_corruption's own settings, scenarios.database_corruption (database_corruption_config.c). */
typedef struct CorruptionConfig {
    char **validation_queries;    /* run in the restored database; NULL: backup.verify.validation_queries */
    size_t n_validation_queries;
    char **switch_command;        /* argv run instead of the rename, or NULL */
    size_t n_switch_command;
    uint64_t restore_timeout_ms;  /* one restore attempt */
    int64_t restore_jobs;         /* pg_restore -j N from a decrypted temporary file; 0: streamed
                                     into a single pg_restore (no temporary file) */
    uint64_t restore_maintenance_work_mem; /* bytes; maintenance_work_mem of the restore's sessions
                                              (PGOPTIONS for pg_restore: its index builds sort in
                                              memory); 0: the server's own setting */
    bool standby;                 /* keep the newest verified backup restored in advance (cap/standby.c) */
    int64_t standby_jobs;         /* pg_restore -j N of a standby restore (1: one server backend busy) */
} CorruptionConfig;

/* The run's copy of the settings (taken when the run was created). */
static inline const CorruptionConfig *corruption_cfg(const ScnRun *run)
{
    return run->cfg.data;
}

extern const ConfigScenarioSection corruption_config_section;
/* ScenarioDef.configure: the standby restore, from the section. */
int corruption_configure(const struct ScenarioCaps *caps, const Config *cfg, const ConfigScenario *sc, bool apply,
                         char *err, size_t errlen);

/* Which of X, X_damaged_T, X_restore_T, X_drsup_standby exist, is the restore marked complete, and
 * what does the standby's COMMENT say? Then then(). */
void scn_inspect(ScnStep *st, ScnSqlNext then);

/* The database steps (database_corruption_db.c). */
void scn_step_preserve_evidence(FsmCall *call, void *ctx, FsmDone done);
void scn_probe_preserve_evidence(FsmCall *call, void *ctx, FsmProbeDone done);
void scn_plan_preserve_evidence(FsmCall *call, void *ctx, FsmDone done);
void scn_step_restore_database(FsmCall *call, void *ctx, FsmDone done);
void scn_probe_restore_database(FsmCall *call, void *ctx, FsmProbeDone done);
void scn_plan_restore_database(FsmCall *call, void *ctx, FsmDone done);
/* The restored database answers the scenario's validation_queries (else backup.validation_queries). */
void scn_step_validate_restore(FsmCall *call, void *ctx, FsmDone done);
void scn_plan_validate_restore(FsmCall *call, void *ctx, FsmDone done);
void scn_step_switch_database(FsmCall *call, void *ctx, FsmDone done);
void scn_probe_switch_database(FsmCall *call, void *ctx, FsmProbeDone done);
void scn_plan_switch_database(FsmCall *call, void *ctx, FsmDone done);
void scn_step_put_back_original(FsmCall *call, void *ctx, FsmDone done);

#endif
