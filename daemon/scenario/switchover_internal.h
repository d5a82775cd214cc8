/*
 * switchover_internal: what switchover.c and switchover_config.c share; not for other modules.
 * The scenario's own settings (scenarios.switchover), and the command that starts it.
 */
#ifndef DRSUP_SCN_SWITCHOVER_INTERNAL_H
#define DRSUP_SCN_SWITCHOVER_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/control.h"

typedef struct SwitchoverConfig {
    char *pg_ctl;                /* stops the old primary when its node has no stop command */
    char **run_as;               /* prefix argv for pg_ctl (runuser -u postgres --); may be empty */
    size_t n_run_as;
    uint64_t drain_timeout_ms;   /* after the halt: writing transactions given this long to end */
    uint64_t catchup_timeout_ms; /* the target given this long to replay the old primary's last WAL */
    uint64_t stop_timeout_ms;    /* pg_ctl stop -t */
    uint64_t promote_timeout_ms; /* pg_promote(wait => true, wait_seconds => this) */
} SwitchoverConfig;

/* Row deadlines: the configured waits are bounded below them (switchover_config.c checks). */
#define SO_DRAIN_MAX_MS (5u * 60u * 1000u)
#define SO_CATCHUP_MAX_MS (10u * 60u * 1000u)
#define SO_STOP_MAX_MS (5u * 60u * 1000u)

extern const ConfigScenarioSection switchover_config_section;
extern const struct ScenarioDef scenario_switchover;

/* switchover (drctl switchover --to NODE [--manual]); data: the Scenarios. */
void switchover__cmd(CtlCall *call, const json_t *args, void *data);

#endif
