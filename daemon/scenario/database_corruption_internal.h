/*
 * scn_corruption_internal: what scn_corruption.c and scn_corruption_db.c share; not for other
 * modules.
 *
 * One step or probe invocation (ScnStep: owned by the invocation, freed when it finishes or
 * answers), its SQL helpers and the catalog inspection, and the database steps the table in
 * scn_corruption.c names.
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

#define SCN_MARKER "drsupervisor: restore complete, run "

typedef struct ScnStep ScnStep;
typedef void (*ScnSqlNext)(ScnStep *st, int status, const PGresult *res, const char *errmsg);

typedef struct ScnDbState {
    bool orig, damaged, restored, restored_complete;
    bool standby;              /* the standby restore's database exists */
    char standby_comment[400]; /* its COMMENT ("" when none) */
} ScnDbState;

struct ScnStep {
    ScnRun *run;
    FsmCall *call;
    FsmDone done;        /* a step or a plan */
    FsmProbeDone pdone;  /* a probe */
    bool cancelled;
    PgConn *pg;
    ScnSqlNext next;
    ScnSqlNext then; /* after scn_inspect */
    ScnDbState db;
    BackupRestore *restore; /* restore_database: the restore from the backup file */
    ChildProc *child;
    int work_result;
    size_t idx;
    json_t *acc;
    uint64_t t0;
    bool from_standby; /* restore_database took the standby restore */
};

/* A new invocation for the step (done) or probe (pdone); NULL after answering "out of memory". */
ScnStep *scn_step_new(FsmCall *call, void *ctx, FsmDone done, FsmProbeDone pdone);
/* End the step with result and message (then free st). */
void scn_finish(ScnStep *st, int result, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Answer the probe (then free st). */
void scn_answer(ScnStep *st, FsmProbeAnswer a, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* The row's cancel hook: stops the invocation's query, child or verification (it then finishes). */
void scn_cancel(FsmCall *call, void *ctx);
/* The step stopped because it was cancelled (timeout, abort, shutdown). */
void scn_cancelled(ScnStep *st);
/* Finish the step or answer the probe after a failed query. */
void scn_fail_sql(ScnStep *st, int status, const char *what, const char *errmsg);
/* Run sql on the connection to `conninfo` (admin when NULL), then next(). */
void scn_sql(ScnStep *st, const char *conninfo, const char *sql, int np, const char *const *params, ScnSqlNext next);
/* Which of X, X_damaged_T, X_restore_T, X_drsup_standby exist, is the restore marked complete, and
 * what does the standby's COMMENT say? Then then(). */
void scn_inspect(ScnStep *st, ScnSqlNext then);

/* The database steps (scn_corruption_db.c). */
void scn_step_preserve_evidence(FsmCall *call, void *ctx, FsmDone done);
void scn_probe_preserve_evidence(FsmCall *call, void *ctx, FsmProbeDone done);
void scn_plan_preserve_evidence(FsmCall *call, void *ctx, FsmDone done);
void scn_step_restore_database(FsmCall *call, void *ctx, FsmDone done);
void scn_probe_restore_database(FsmCall *call, void *ctx, FsmProbeDone done);
void scn_plan_restore_database(FsmCall *call, void *ctx, FsmDone done);
void scn_step_switch_database(FsmCall *call, void *ctx, FsmDone done);
void scn_probe_switch_database(FsmCall *call, void *ctx, FsmProbeDone done);
void scn_plan_switch_database(FsmCall *call, void *ctx, FsmDone done);
void scn_step_put_back_original(FsmCall *call, void *ctx, FsmDone done);

#endif
