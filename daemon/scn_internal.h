/*
 * scn_internal: what the scenario files share (daemon/scenarios.c, scn_*.c); not for other modules.
 *
 *   scenarios.c       runs: journals, resume at start, the resume guard, events, commands
 *   scn_report.c      incident reports (RTO/RPO, timeline, reconcile report; JSON and text)
 *   scn_corruption.c  the database_corruption table and its steps
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

#include "config.h"
#include "fsm.h"
#include "journal.h"
#include "scenarios.h"

typedef struct ScnRun ScnRun;

typedef struct ScnDef {
    const char *name;       /* "database_corruption" */
    const char *short_name; /* "corruption": part of run ids */
    const FsmTable *table;
    /* May trading resume now (called by the venue's resume guard for the active run)? */
    bool (*may_resume)(const ScnRun *run);
    /* Name of the step whose end marks "trading is live again" (RTO end). */
    const char *live_step;
} ScnDef;

extern const ScnDef scn_corruption_def;

struct ScnRun {
    Scenarios *s;
    Daemon *d;
    const ScnDef *def;
    FsmRun *fsm;
    Journal *journal;        /* NULL for dry runs and report-only replays */
    char id[96];
    char tag[48];            /* database-name-safe suffix, e.g. "20261123t101500z_ab12" */
    char *reason;
    int64_t detected_ms;
    FsmMode mode;
    bool dry;
    json_t *ctx;             /* context (object): persisted keys */
    json_t *plan;            /* dry run: planned steps */
    ConfigScenarios cfg;     /* copies taken when the run was created */
    ConfigBackup bcfg;
    char *db_conninfo;       /* database.conninfo */
    char *admin_conninfo;    /* key=value, no dbname */
    char database[64], db_damaged[128], db_restored[128];
    bool resume_allowed;     /* one of this run's resume steps is calling venue_resume */
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

/* Reports (scn_report.c): the incident report of a finished run (new reference), and its text. */
json_t *scn_report_build(const ScnRun *run, const char *cluster);
char *scn_report_text(const json_t *report);

#endif
