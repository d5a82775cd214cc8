/*
 * switchover_config: the scenario's own section, scenarios.switchover (the shared keys mode, rto
 * and rpo are read for it by config/config_scenarios.c). The nodes' data directories and stop
 * commands are in replication.nodes, the repoint hook and maximum_lag in failover:. See
 * conf/drsupervisor.yaml and docs/replication.md.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cfgtree.h"
#include "config/config.h"
#include "scenario/switchover_internal.h"

static void so_config_read(const CfgSection *s, void *data)
{
    SwitchoverConfig *c = data;
    cfg_string(s, "pg_ctl", false, "/usr/lib/postgresql/15/bin/pg_ctl", &c->pg_ctl);
    cfg_string_list(s, "run_as", &c->run_as, &c->n_run_as);
    cfg_duration_ms(s, "drain_timeout", false, 10000, 0, &c->drain_timeout_ms);
    cfg_duration_ms(s, "catchup_timeout", false, 30000, 100, &c->catchup_timeout_ms);
    cfg_duration_ms(s, "stop_timeout", false, 60000, 1000, &c->stop_timeout_ms);
    cfg_duration_ms(s, "promote_timeout", false, 60000, 1000, &c->promote_timeout_ms);
    if (c->pg_ctl && c->pg_ctl[0] != '/')
        cfg_error(s->ctx, cfg_get(s->map, "pg_ctl"), "'%s.pg_ctl' must be an absolute path", s->path);
    if (c->run_as && c->run_as[0][0] != '/')
        cfg_error(s->ctx, cfg_get(s->map, "run_as"), "'%s.run_as' must start with an absolute program path", s->path);
    if (c->drain_timeout_ms > SO_DRAIN_MAX_MS - 30000)
        cfg_error(s->ctx, cfg_get(s->map, "drain_timeout"), "'%s.drain_timeout' is at most 4m30s", s->path);
    if (c->catchup_timeout_ms > SO_CATCHUP_MAX_MS - 30000)
        cfg_error(s->ctx, cfg_get(s->map, "catchup_timeout"), "'%s.catchup_timeout' is at most 9m30s", s->path);
    if (c->stop_timeout_ms > SO_STOP_MAX_MS / 2 - 10000)
        cfg_error(s->ctx, cfg_get(s->map, "stop_timeout"), "'%s.stop_timeout' is at most 2m20s", s->path);
    if (c->promote_timeout_ms > 90000)
        cfg_error(s->ctx, cfg_get(s->map, "promote_timeout"), "'%s.promote_timeout' is at most 90s (the promote "
                                                               "step's own deadline is 120 s)", s->path);
}

static void so_config_done(void *data)
{
    SwitchoverConfig *c = data;
    free(c->pg_ctl);
    config_list_free(c->run_as, c->n_run_as);
    memset(c, 0, sizeof(*c));
}

static int so_config_copy(const void *src, void *dst)
{
    const SwitchoverConfig *s = src;
    SwitchoverConfig *d = dst;
    int r = 0;

    *d = *s;
    d->pg_ctl = NULL;
    d->run_as = NULL;
    r |= config_str_copy(s->pg_ctl, &d->pg_ctl);
    r |= config_list_copy(s->run_as, s->n_run_as, &d->run_as);
    if (r) {
        so_config_done(d);
        return -ENOMEM;
    }
    return 0;
}

const ConfigScenarioSection switchover_config_section = {
    .name = "switchover",
    .size = sizeof(SwitchoverConfig),
    .default_rto_ms = 60ull * 1000,
    .default_rpo_ms = 60ull * 1000, /* nothing is restored: the report's RPO is null */
    .read = so_config_read,
    .copy = so_config_copy,
    .done = so_config_done,
};
