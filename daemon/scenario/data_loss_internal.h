/*
 * data_loss_internal: what data_loss.c and data_loss_config.c share; not for other modules. The
 * scenario's own settings (scenarios.data_loss): the point-in-time recovery's keys, read by
 * point_in_time's reader from this section (so its run is laid out as a point_in_time run, see
 * point_in_time_internal.h), and the resume gate.
 */
#ifndef DRSUP_SCN_DATA_LOSS_INTERNAL_H
#define DRSUP_SCN_DATA_LOSS_INTERNAL_H

#include <stdbool.h>

#include "config/config.h"
#include "scenario/point_in_time_internal.h"

typedef struct DataLossConfig {
    PitrConfig pitr;     /* first: the pitr__ steps read the run's section as a PitrConfig */
    bool approve_resume; /* the live resume waits for drctl approve in every mode (default true) */
} DataLossConfig;

extern const ConfigScenarioSection data_loss_config_section;

#endif
