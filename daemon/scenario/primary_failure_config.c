/*
 * primary_failure_config: the scenario's own section, scenarios.primary_failure (the shared keys
 * mode, rto and rpo are read for it by config/config_scenarios.c). The hooks and limits of a
 * promotion are the cluster's, in the top-level failover: section (config/config_replication.c).
 * See conf/drsupervisor.yaml and docs/replication.md.
 */
#include <string.h>

#include "cfgtree.h"
#include "config/config.h"
#include "scenario/primary_failure_internal.h"

static void primary_failure_config_read(const CfgSection *s, void *data)
{
    PrimaryFailureConfig *c = data;
    cfg_duration_ms(s, "promote_timeout", false, 60000, 1000, &c->promote_timeout_ms);
    if (c->promote_timeout_ms > 90000)
        cfg_error(s->ctx, cfg_get(s->map, "promote_timeout"), "'%s.promote_timeout' is at most 90s (the promote "
                                                               "step's own deadline is 120 s)", s->path);
}

static int primary_failure_config_copy(const void *src, void *dst)
{
    memcpy(dst, src, sizeof(PrimaryFailureConfig));
    return 0;
}

static void primary_failure_config_done(void *data)
{
    memset(data, 0, sizeof(PrimaryFailureConfig));
}

const ConfigScenarioSection primary_failure_config_section = {
    .name = "primary_failure",
    .size = sizeof(PrimaryFailureConfig),
    .default_rto_ms = 60ull * 1000,
    .default_rpo_ms = 60ull * 1000,
    .read = primary_failure_config_read,
    .copy = primary_failure_config_copy,
    .done = primary_failure_config_done,
};
