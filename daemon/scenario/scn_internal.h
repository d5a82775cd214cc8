/*
 * scn_internal: what the scenario layer's files share (daemon/scenario/ and steps/); not for other modules.
 *
 *   runner.c          runs: journals, starting, the resume guard, events, the end of a run
 *   scan.c            the start-up scan: history, resumption of unfinished runs
 *   commands.c        the control commands execute, runs, run, approve, abort, incidents, incident
 *   report.c          incident reports (RTO/RPO, timeline, reconcile report; JSON and text; writing)
 *   run_metrics.c     the runs' Prometheus families, from the history of finished runs
 *   registry.c        the ScenarioDefs (scenario.h); steps/ the shared steps (steps.h)
 *   database_corruption.c, database_corruption_db.c  the database_corruption scenario
 *   primary_failure.c   the primary_failure scenario
 *   point_in_time.c, point_in_time_files.c  the point_in_time scenario (drctl recover --timestamp)
 *   switchover.c        the switchover scenario (drctl switchover --to NODE)
 *   rejoin.c, rejoin_files.c  the rejoin scenario (drctl rejoin NODE)
 *   data_loss.c         the data_loss scenario (a watched table lost rows; point_in_time's steps)
 *   drill.c, drill_book.c, drill_rules.c  drills (drill.h): a job of their own, not runs; they use
 *                     none of this header
 *   security_breach.c, security_breach_config.c  the security_breach scenario (docs/security-breach.md)
 *
 * A run (ScnRun) is owned by the Scenarios list; anything that may outlive a callback (a step in
 * flight, a journal append, a report write) holds a reference (scn_run_ref/unref). The run's
 * journal (state_dir/runs/<id>.journal) holds the engine's events and the scenario's own context
 * records {"ev":"scn.context","run":ID,"key":K,"value":V} (the backup chosen, validation results,
 * the reconcile report, the detection), replayed into run->ctx on resume.
 */
#ifndef DRSUP_SCN_INTERNAL_H
#define DRSUP_SCN_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/control.h"
#include "fsm.h"
#include "journal.h"
#include "pgconn.h"
#include "scenario/scenario.h"
#include "scenario/scenarios.h"

typedef struct ScnCmd ScnCmd;

struct Scenarios {
    Core *core;
    ScenarioCaps caps;
    ScnRun *runs;       /* every live run object (active, dry runs, finishing) */
    ScnRun *active;     /* the unfinished run, or NULL */
    json_t *history;    /* summaries of finished runs, oldest first */
    bool loading;       /* start-up scan of state_dir/runs in progress */
    char *queued_scenario; /* a trigger that arrived while loading: started after the scan */
    char *queued_reason;
    int64_t queued_detected_ms;
    json_t *queued_params;
    bool closing;
    unsigned pending;   /* thread-pool work not tied to a run */
    ScnCmd *cmds;       /* command reads in flight */
    uint64_t crash_after_record;
    PgConnFollow follow; /* database.conninfo and scenarios.admin_conninfo after a promotion */
    int sub_id;         /* events bus subscription (venue.resume), or <= 0 */
    bool failed_open[16]; /* per registry index: a failed or aborted run left scenario:<name> open */
    void (*closed_cb)(void *data);
    void *closed_data;
};


struct ScnRun {
    Scenarios *s;
    Core *core;
    const ScenarioCaps *caps; /* the runner's (s->caps) */
    const ScenarioDef *def;
    FsmRun *fsm;
    Journal *journal;        /* NULL for dry runs and report-only replays */
    char id[96];
    char tag[48];            /* database-name-safe suffix, e.g. "20261123t101500z_ab12" */
    char *reason;
    json_t *params;          /* scn_trigger_params' (owned), or NULL; a resumed run reads ctx "detection" */
    int64_t detected_ms;
    FsmMode mode;
    bool dry;
    json_t *ctx;             /* context (object): persisted keys */
    void *own;               /* the scenario's own context (ScenarioDef.ctx_size bytes), or NULL */
    bool own_ready;          /* ctx_init succeeded: ctx_done is owed */
    json_t *plan;            /* dry run: planned steps */
    ConfigScenario cfg;      /* copies taken when the run was created: the scenario's section */
    ConfigBackup bcfg;
    char *db_conninfo;       /* database.conninfo */
    char *admin_conninfo;    /* key=value, no dbname */
    char database[64];       /* the protected database (config_scenario_databases) */
    bool resume_allowed;     /* one of this run's resume steps is calling venue_resume */
    char running_step[64];   /* the step in flight ("" between steps): ScenarioDef.disturbs reads it */
    bool resumed;            /* the live step committed (trading is live; the run only watches) */
    unsigned refs;
    bool released;           /* the owner's reference was dropped */
    bool finished;
    void *waiter;            /* CtlCall waiting for a dry run's plan */
    ScnRun *next;
};

void scn_run_ref(ScnRun *run);
void scn_run_unref(ScnRun *run);

/* Persist ctx[key] = value (stolen) as a context record (in memory only for dry runs), then
 * then(run, status, data) on the loop once durable. */
typedef void (*ScnThenFn)(ScnRun *run, int status, void *data);
void scn_context_set(ScnRun *run, const char *key, json_t *value, ScnThenFn then, void *data);

/* The run's conninfo for database `dbname` (admin conninfo + dbname=...). Caller frees. */
char *scn_conninfo_for(const ScnRun *run, const char *dbname);

/* state_dir/<sub>[/<id><ext>] */
void scn_path(const Scenarios *s, char *out, size_t n, const char *sub, const char *id, const char *ext);
bool scn_id_valid(const char *id);
/* Free `s` and call its closed callback once it is closing and nothing is left in flight. */
void scn_maybe_closed(Scenarios *s);
/* A new run object (linked into s->runs, one owner's reference), NULL with err filled. */
ScnRun *scn_run_new(Scenarios *s, const ScenarioDef *def, const char *id, FsmMode mode, char *err, size_t errlen);
/* Drop the owner's reference: the engine run is stopped and freed, the rest when unused. */
void scn_run_release(ScnRun *run);
/* A run ended (or a dry run planned): reply/write its report, leave the active slot, release it. */
void scn_finished(ScnRun *run);
void scn_update_status(Scenarios *s);
/* The run's live step committed: trading is live again (set on the transition, and by the scan
 * for a resumed run whose journal holds that commit). */
bool scn_run_resumed(const ScnRun *run);
/* Start a run of `scenario` (waiter: the call a dry run replies to). 0 or negative, err filled. */
int scn_trigger(Scenarios *s, const char *scenario, const char *reason, int64_t detected_ms, FsmMode mode,
                CtlCall *waiter, char *ret_id, size_t id_len, char *err, size_t errlen);
/* The same with the run's parameters (an object, copied; NULL: none): what the operator asked for
 * (recover --timestamp: the target), journaled with the detection (ctx "detection"."params") so a
 * resumed run has them too; scn_run_param() reads them. */
int scn_trigger_params(Scenarios *s, const char *scenario, const char *reason, int64_t detected_ms, FsmMode mode,
                       const json_t *params, CtlCall *waiter, char *ret_id, size_t id_len, char *err, size_t errlen);
/* ctx[obj][key] of a run: a string (borrowed; NULL when absent), an integer (-1 when absent). */
const char *scn_ctx_str(const ScnRun *run, const char *obj, const char *key);
int64_t scn_ctx_int(const ScnRun *run, const char *obj, const char *key);
/* A ScenarioDef.may_resume's answer: this run's own resume step is asking (resume_allowed) and the
 * run is in its reconciled or its trading_in_shadow state (the reconcile committed). */
bool scn_may_resume_in(const ScnRun *run, int reconciled, int shadow);
/* The run's parameter `key` (borrowed), NULL when absent. */
const json_t *scn_run_param(const ScnRun *run, const char *key);

/* commands.c: register the control commands; answer the reads in flight at stop. */
int scn_commands_register(Scenarios *s);
void scn_commands_cancel(Scenarios *s);

/* Reports (report.c): the incident report of a finished run (new reference), and its text. */
json_t *scn_report_build(const ScnRun *run, const char *cluster);
char *scn_report_text(const json_t *report);
/* The summary of a report kept in the history (new reference). */
json_t *scn_summary(const json_t *rep);
/* Write the run's report to state_dir/incidents on the thread pool; adds its summary to the history. */
void scn_write_report(ScnRun *run);

/* run_metrics.c: add the runs' families to core->metrics (if any). 0 or -ENOMEM. */
int scn_metrics_register(Scenarios *s);

#endif
