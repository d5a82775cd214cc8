/*
 * drill_internal: what drill.c (the job) and drill_book.c (history, schedule, free space,
 * readiness, metrics, the listing commands) share; not for other modules.
 */
#ifndef DRSUP_DRILL_INTERNAL_H
#define DRSUP_DRILL_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cron.h"
#include "pgsql.h"
#include "scenario/drill.h"
#include "scenario/scenario.h"

typedef struct DrillRun DrillRun;
typedef struct DrillPitr DrillPitr;

/* One step of a scenario's drill: a row of its stage table (drill.c). */
typedef struct DrillStageDef {
    const char *name;          /* the step's name in the report */
    void (*run)(DrillRun *run); /* starts it; ends with drill__step_end then drill__advance */
    const char *rto_key;       /* its duration is part of the RTO estimate, as rto.<rto_key>; NULL: not */
    bool cleanup;              /* undoes the scratch side: runs after a failed or aborted step too */
} DrillStageDef;

#define DRILL_MAX_STAGES 12

struct DrillRun {
    Drills *ds;
    const ScenarioDef *def;
    const DrillStageDef *stages; /* the scenario's stage table */
    size_t n_stages;
    char id[96];
    char tag[48];
    char trigger[32];
    char database[64];     /* the live database: never written */
    char scratch[64];      /* the scratch database (<db>_drill_<tag>; point_in_time: <db> on the scratch cluster) */
    char *admin_conninfo;  /* the live server's admin conninfo (CREATE/DROP DATABASE) */
    char *scratch_ro;      /* the scratch database, every transaction read-only */
    char **queries;        /* validation queries (a copy) */
    size_t n_queries;
    unsigned restore_jobs;
    uint64_t restore_maintenance_work_mem_kb;
    uint64_t restore_timeout_ms;
    uint64_t rto_target_ms;
    int64_t target_ms;     /* the recovery's target: point_in_time --timestamp, data_loss --before,
                            * security_breach --since (0: the end of the archive) */
    bool target_exclusive; /* the recovery stops just before target_ms (security_breach) */
    bool count_watched;    /* the detector's watched tables are counted in the validation (data_loss) */
    const char *never_run; /* the real run's live steps a drill never runs (static), or NULL */
    int64_t since_ms;      /* the reconcile compares the exchange's fills from here (0: every fill) */
    bool venue;            /* a venue is configured: the reconcile runs */
    int64_t started_ms;
    size_t stage;          /* index into stages; n_stages: the report */
    uint64_t t0;           /* the step's start (loop ms) */
    int64_t t0_wall;
    int64_t dur[DRILL_MAX_STAGES];
    int64_t halt_ms;       /* the halt of the scenario's newest incident report, -1 unknown */
    char halt_from[96];    /* that run's id */
    json_t *steps;
    json_t *backup;
    json_t *validation;
    json_t *reconcile;     /* its report */
    size_t q_i;
    struct BackupRestore *restore;
    PgSqlSeq *seq;
    bool reconciling;
    bool scratch_maybe;    /* the restore started: there may be a scratch side to undo */
    bool scratch_dropped;  /* ... and it is gone */
    bool failed;
    char failure[600];
    bool aborted;
    char abort_reason[300];
    CtlCall *waiter;
    DrillPitr *pitr;       /* point_in_time's own state (drill_pitr.c), or NULL */
    /* the report write (thread pool) */
    uv_work_t req;
    char dir[4096], path[4200];
    char *text;
    int write_result;
    json_t *report;
};

/* drill.c, for the stage functions: a step's start, its end (status PASS/FAIL/ABORTED/SKIPPED;
 * the first FAIL is the drill's failure), and the next step (after a failure or an abort, only
 * the cleanup steps, when there is something to undo). */
void drill__step_begin(DrillRun *run);
void drill__step_end(DrillRun *run, const char *status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void drill__advance(DrillRun *run);
/* The shared validate and reconcile steps (on run->scratch_ro). */
void drill__validate(DrillRun *run);
void drill__reconcile(DrillRun *run);

/* drill_pitr.c: the scratch-cluster stage table (point_in_time, data_loss, security_breach), its preparation (the scratch cluster's
 * paths and port from the configuration; 0 or <0 with err), what an abort stops, its part of the
 * report, its release; and the start-up sweep of scratch clusters a killed daemon left. */
extern const DrillStageDef drill__pitr_stages[];
extern const size_t drill__n_pitr_stages;
int drill__pitr_prepare(DrillRun *run, WalArchive *wal, char *err, size_t errlen);
/* Is drills.point_in_time.port a port a real run uses (scenarios.point_in_time.side_port)? */
int drill__pitr_check_config(const Config *cfg, char *err, size_t errlen);
/* Is def's recovery configured for a scratch-cluster drill (its section's data_directory)? true
 * for a scenario that does not drill on a scratch cluster. Readiness lists only these. */
bool drill__pitr_configured(const Config *cfg, const ScenarioDef *def);
void drill__pitr_abort(DrillRun *run);
void drill__pitr_report(const DrillRun *run, json_t *rep);
void drill__pitr_free(DrillRun *run);
void drill__pitr_sweep(Drills *ds);

/* drill_sweep.c: at start, drop the scratch databases database_corruption drills of a killed
 * daemon left (only names drill_is_scratch_name accepts; the acting leader only). */
void drill__db_sweep(Drills *ds);

/* The free space measured on the thread pool (drill_book.c). */
typedef struct DrillSpace {
    bool measured;
    int64_t at_ms;
    char backup_dir[4096], data_dir[4096]; /* what was measured ("" none) */
    int backup_err, data_err;              /* -errno of statvfs, 0 ok */
    uint64_t backup_free, data_free;
} DrillSpace;

typedef struct DrillSched {
    CronExpr expr;
    char *cron;                            /* as configured, for drctl drills */
    char *scenario;
    int64_t next_s;                        /* Unix seconds of its next minute */
} DrillSched;

struct Drills {
    Core *core;
    Backups *backups;
    Reconcile *reconcile;
    WalArchive *wal;          /* the WAL archive (point_in_time drills), may be NULL */
    DrillRun *run;            /* the drill in flight, or NULL */
    json_t *history;          /* summaries of finished drills, oldest first */
    bool loaded;              /* the history was read */
    DrillSched *sched;
    size_t n_sched;
    uv_timer_t *sched_timer;  /* the next scheduled drill (closed at close) */
    uv_timer_t *space_timer;  /* the next free-space measurement */
    bool space_busy;
    DrillSpace space;
    bool closing;
    unsigned pending;         /* thread-pool work, handles closing, a drill in flight */
    void (*closed_cb)(void *data);
    void *closed_data;
};

/* drill.c: start a drill of `scenario` (target_ms: the recovery's target given by the drctl option
 * target_option, which must be the scenario's: "timestamp" for point_in_time, "before" for
 * data_loss, "since" for security_breach; 0 and NULL: the end of the archive; trigger: "operator",
 * "schedule"); waiter (may be NULL) is
 * answered with the report, or with the id at once when detach. 0, or <0 with err filled. */
int drill__start(Drills *ds, const char *scenario, int64_t target_ms, const char *target_option, const char *trigger,
                 CtlCall *waiter, bool detach, char *ret_id, size_t id_len, char *err, size_t errlen);
/* The lease was taken (a recovery run): abort the drill in flight. */
void drill__on_lease(bool held, void *data);
/* Abort the drill in flight (why, for the report). */
void drill__abort(Drills *ds, const char *why);
void drill__maybe_closed(Drills *ds);
/* The id of the drill in flight, NULL when none. */
const char *drill__running_id(const Drills *ds);
/* At close: the waiter answered, the drill in flight aborted (it still drops its scratch database). */
void drill__stop(Drills *ds);

/* drill_book.c */
int drill__book_register(Drills *ds);
/* A drill finished: its summary (stolen) into the history, the condition, metrics follow. */
void drill__book_add(Drills *ds, json_t *summary);
/* The summary of a drill report (new reference). */
json_t *drill__summary(const json_t *report);
/* state_dir/incidents (and /<id>.json) */
void drill__path(const Drills *ds, char *out, size_t n, const char *id);
void drill__book_close(Drills *ds);

#endif
