/*
 * point_in_time_internal: what point_in_time.c and point_in_time_config.c share; not for other
 * modules. The scenario's own settings (scenarios.point_in_time) and its run context.
 */
#ifndef DRSUP_SCN_POINT_IN_TIME_INTERNAL_H
#define DRSUP_SCN_POINT_IN_TIME_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/control.h"

typedef struct PitrConfig {
    char *data_directory;    /* the live cluster's data directory (its owner is the server's user) */
    char *scratch_directory; /* where the recovered cluster is built; default: data_directory's parent */
    char *pg_ctl;            /* pg_ctl of the server's version */
    char *tar;               /* tar that unpacks the base backup (reads it on stdin) */
    char **run_as;           /* prefix argv for pg_ctl and tar (runuser -u postgres --); may be empty */
    size_t n_run_as;
    int64_t side_port;       /* the recovered server listens here until it is switched in (0: unset) */
    uint64_t start_timeout_ms; /* from pg_ctl start to promotion */
    uint64_t switch_timeout_ms;
    char **validation_queries; /* on the recovered server, before the switch; none: SELECT 1 */
    size_t n_validation_queries;
    char **switch_command;   /* argv: puts the recovered cluster in the live one's place (idempotent) */
    size_t n_switch_command;
} PitrConfig;

extern const ConfigScenarioSection point_in_time_config_section;
extern const struct ScenarioDef scenario_point_in_time;

/* `recover` without --dry-run (the WAL archive's command hands it over; data: the Scenarios). */
void pitr__cmd_recover(CtlCall *call, const json_t *args, void *data);

#endif
