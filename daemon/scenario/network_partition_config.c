/*
 * network_partition_config: the scenario's section, scenarios.network_partition. It has only the
 * keys every scenario shares (mode, rto, rpo: read by config/config_scenarios.c); the fence hook
 * is the cluster's, failover.fence (config/config_replication.c). See conf/drsupervisor.yaml and
 * docs/replication.md.
 */
#include "config/config.h"
#include "scenario/network_partition_internal.h"

const ConfigScenarioSection network_partition_config_section = {
    .name = "network_partition",
    .size = 0,
    .default_rto_ms = 30ull * 60 * 1000, /* a person decides: minutes, not seconds */
    .default_rpo_ms = 60ull * 1000,
    .read = NULL,
};
