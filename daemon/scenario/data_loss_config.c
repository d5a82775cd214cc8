/*
 * data_loss_config: the scenario's own section, scenarios.data_loss: the same keys as
 * scenarios.point_in_time (data_directory, scratch_directory, pg_ctl, tar, run_as, side_port,
 * start_timeout, switch_timeout, validation_queries, switch_command; read by point_in_time's
 * reader) and approve_resume. The shared keys mode, rto and rpo are read for it by
 * config/config_scenarios.c. See conf/drsupervisor.yaml and docs/scenarios.md.
 */
#include <errno.h>
#include <string.h>

#include "cfgtree.h"
#include "config/config.h"
#include "scenario/data_loss_internal.h"

static void data_loss_config_read(const CfgSection *s, void *data)
{
    DataLossConfig *c = data;
    pitr__config_read(s, &c->pitr);
    cfg_bool(s, "approve_resume", true, &c->approve_resume);
}

static void data_loss_config_done(void *data)
{
    DataLossConfig *c = data;
    pitr__config_done(&c->pitr);
    memset(c, 0, sizeof(*c));
}

static int data_loss_config_copy(const void *src, void *dst)
{
    const DataLossConfig *s = src;
    DataLossConfig *d = dst;
    d->approve_resume = s->approve_resume;
    return pitr__config_copy(&s->pitr, &d->pitr);
}

const ConfigScenarioSection data_loss_config_section = {
    .name = "data_loss",
    .size = sizeof(DataLossConfig),
    .default_rto_ms = 30ull * 60 * 1000,
    .default_rpo_ms = 60ull * 1000,
    .read = data_loss_config_read,
    .copy = data_loss_config_copy,
    .done = data_loss_config_done,
};
