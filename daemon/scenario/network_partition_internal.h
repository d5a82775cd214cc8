/*
 * network_partition_internal: what network_partition.c and network_partition_config.c share; not
 * for other modules.
 */
#ifndef DRSUP_SCN_NETWORK_PARTITION_INTERNAL_H
#define DRSUP_SCN_NETWORK_PARTITION_INTERNAL_H

#include "config/config.h"

extern const ConfigScenarioSection network_partition_config_section;

#endif
