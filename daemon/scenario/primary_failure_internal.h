/*
 * primary_failure_internal: what primary_failure.c and primary_failure_config.c share; not for
 * other modules. The scenario's own settings, scenarios.primary_failure.
 */
#ifndef DRSUP_SCN_PRIMARY_FAILURE_INTERNAL_H
#define DRSUP_SCN_PRIMARY_FAILURE_INTERNAL_H

#include <stdint.h>

#include "config/config.h"

typedef struct PrimaryFailureConfig {
    uint64_t promote_timeout_ms; /* pg_promote(wait => true, wait_seconds => this) */
} PrimaryFailureConfig;

extern const ConfigScenarioSection primary_failure_config_section;

#endif
