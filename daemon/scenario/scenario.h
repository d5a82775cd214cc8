/*
 * scenario: the interface a recovery scenario implements (ScenarioDef), and the registry of them.
 *
 * A scenario is one file in daemon/scenario/ that defines a ScenarioDef: its name, its step table
 * (lib/fsm), the incident kinds it handles (the detector reports kinds, never scenario names), and
 * the hooks the runner calls: a context of its own for each run, whether trading may resume, the
 * restore point its RPO is measured from, and what it adds to the incident report. The steps every
 * scenario may use are in daemon/scenario/steps/ (steps.h). The runner (runner.c) owns runs; the
 * registry (registry.c) lists the scenarios. See docs/architecture.md, "Adding a scenario".
 */
#ifndef DRSUP_SCENARIO_H
#define DRSUP_SCENARIO_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "fsm.h"

typedef struct ScnRun ScnRun;
struct ScenarioCaps; /* scenarios.h */
struct CtlCall;      /* core/control.h */

/* A hand-off state of the table (FSM_STATE_HANDOFF) and the incident kind it hands the run to:
 * the runner then starts the scenario that handles that kind, with the same detection time. */
/* The incident a scenario hands a run over to when the cluster itself is damaged (it does not
 * start: database_corruption cannot restore inside it): point_in_time recovers the whole cluster
 * to the end of the WAL archive. */
#define SCENARIO_INCIDENT_CLUSTER_DAMAGED "cluster_damaged"

typedef struct ScenarioHandoff {
    const char *state;
    const char *incident;
} ScenarioHandoff;

/* What a drill of the scenario needs from its section (drill.c): borrowed from the configuration. */
typedef struct ScenarioDrillSettings {
    char *const *validation_queries; /* run in the scratch restore (n 0: SELECT 1) */
    size_t n_validation_queries;
    unsigned restore_jobs;           /* as the real restore: pg_restore -j N from a spool, 0 streamed */
    uint64_t restore_timeout_ms;
    uint64_t restore_maintenance_work_mem_kb; /* as the real restore; 0: the server's setting */
} ScenarioDrillSettings;

typedef struct ScenarioDef {
    const char *name;            /* "database_corruption": drctl execute --scenario NAME */
    const char *short_name;      /* "corruption": part of run ids */
    const char *summary;         /* one line for listings */
    const FsmTable *table;
    const char *const *handles;  /* incident kinds it recovers from (NULL-terminated), may be NULL */
    const char *live_step;       /* the step whose end marks "trading is live again" (RTO end) */
    const ScenarioHandoff *handoffs; /* one per hand-off state ({NULL, NULL} ends it), may be NULL */
    /* The scenario's own run context: ctx_size bytes, zeroed, owned by the run (run->own) and
     * filled by ctx_init when the run is created or replayed; ctx_done releases what it holds. */
    size_t ctx_size;
    int (*ctx_init)(ScnRun *run, char *err, size_t errlen);
    void (*ctx_done)(ScnRun *run);
    /* May trading resume now (the venue's resume guard asks for the active run)? */
    bool (*may_resume)(const ScnRun *run);
    /* Wall-clock ms of the point the data was recovered to (RPO = detected - this), 0 if none yet. */
    int64_t (*restore_point_ms)(const ScnRun *run);
    /* Add the scenario's own fields to its incident report (rep is an object). May be NULL. */
    void (*report_extras)(const ScnRun *run, json_t *rep);
    /* Its section scenarios.<name> (config.h; registered by scenario_register_config): the
     * default RTO/RPO targets and the reader of its own keys. Required; its name is the def's. */
    const ConfigScenarioSection *config;
    /* Configure the capabilities the scenario keeps running between runs (the standby restore)
     * from its section sc: check only (apply false, pure) or apply. 0, or <0 with err filled.
     * May be NULL. Runs themselves copy the section when they are created. */
    int (*configure)(const struct ScenarioCaps *caps, const Config *cfg, const ConfigScenario *sc, bool apply,
                     char *err, size_t errlen);
    /* What the run does to the database it protects now, with running_step the step in flight
     * (NULL between steps, at a gate, held): LeaseDisturbanceKind bits (core/lease.h; 0: nothing)
     * and a sentence for people in `what`. The runner declares it on the recovery lease before
     * the step acts and ends it when this answers 0, so a probe failing that way is attributed to
     * the run instead of paging. May be NULL (the scenario disturbs nothing a probe sees). */
    unsigned (*disturbs)(const ScnRun *run, const char *running_step, char *what, size_t n);
    /* `drctl execute --scenario NAME` (not a dry run) answered by the scenario itself, so that its
     * parameters are checked before any run starts (data_loss plans its --before T first);
     * scenarios is the runner's Scenarios. NULL: the generic start. May be NULL. */
    void (*execute)(struct CtlCall *call, const json_t *args, void *scenarios);
    /* The scenario can be rehearsed by `drctl drill` (a restore of the newest verified backup into a
     * scratch database, its validation, a compare-only reconcile; daemon/scenario/drill.c): fill
     * ret from its section sc and the backup section b. NULL: no drill for it. */
    void (*drill_settings)(const ConfigScenario *sc, const ConfigBackup *b, ScenarioDrillSettings *ret);
    /* A scenario that uses point_in_time's steps (scenario/point_in_time_internal.h) with its
     * PitrConfig and PitrRun elsewhere than first in its section's settings and its context: their
     * byte offsets there (security_breach: after database_corruption's). 0: first. */
    size_t pitr_config_offset;
    size_t pitr_run_offset;
} ScenarioDef;

/* The registry (registry.c): every scenario this daemon can run, in listing order. */
/* Register every scenario's configuration section with the config layer; call once before the
 * first config_load. 0, or <0 (a registry bug: two sections of one name, too many). */
int scenario_register_config(void);
size_t scenario_count(void);
const ScenarioDef *scenario_at(size_t i);
const ScenarioDef *scenario_find(const char *name);
/* The scenario that handles incidents of `kind`, NULL if none does. */
const ScenarioDef *scenario_for_incident(const char *kind);
/* The incident kind a run of `def` that ended in hand-off state `state` hands over to, or NULL. */
const char *scenario_handoff_incident(const ScenarioDef *def, const char *state);
/* 0 if every registered scenario's table is valid and each of its hand-off states names an
 * incident another scenario handles; else DR_ECONFIG with the reason in err. */
int scenario_registry_validate(char *err, size_t errlen);

#endif
