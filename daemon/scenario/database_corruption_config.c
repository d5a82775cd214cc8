/*
 * database_corruption_config: the scenario's own section, scenarios.database_corruption (the
 * shared keys mode, rto and rpo are read for it by config/config_scenarios.c), and the standby
 * restore it configures from that section. See conf/drsupervisor.yaml and docs/scenarios.md.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/standby.h"
#include "cfgtree.h"
#include "config/config.h"
#include "err.h"
#include "scenario/database_corruption_internal.h"
#include "scenario/scenarios.h"

static void corruption_config_read(const CfgSection *s, void *data)
{
    CorruptionConfig *c = data;

    cfg_string_list(s, "validation_queries", &c->validation_queries, &c->n_validation_queries);
    cfg_string_list(s, "switch_command", &c->switch_command, &c->n_switch_command);
    cfg_duration_ms(s, "restore_timeout", false, 3600ull * 1000, 1000, &c->restore_timeout_ms);
    cfg_int(s, "restore_jobs", 0, 64, 2, &c->restore_jobs);
    cfg_size(s, "restore_maintenance_work_mem", 256ull << 20, 0, 64ull << 30, &c->restore_maintenance_work_mem);
    if (c->restore_maintenance_work_mem && c->restore_maintenance_work_mem < (1ull << 20))
        cfg_error(s->ctx, cfg_get(s->map, "restore_maintenance_work_mem"),
                  "'%s.restore_maintenance_work_mem' must be 0 (the server's setting) or at least 1MB", s->path);
    cfg_bool(s, "standby", false, &c->standby);
    cfg_int(s, "standby_jobs", 1, 64, 1, &c->standby_jobs);
    if (c->switch_command && c->switch_command[0][0] != '/')
        cfg_error(s->ctx, cfg_get(s->map, "switch_command"),
                  "'%s.switch_command' must start with an absolute program path", s->path);
}

static void corruption_config_done(void *data)
{
    CorruptionConfig *c = data;
    config_list_free(c->validation_queries, c->n_validation_queries);
    config_list_free(c->switch_command, c->n_switch_command);
    memset(c, 0, sizeof(*c));
}

static int corruption_config_copy(const void *src, void *dst)
{
    const CorruptionConfig *s = src;
    CorruptionConfig *d = dst;
    int r = 0;

    *d = *s;
    d->validation_queries = d->switch_command = NULL;
    r |= config_list_copy(s->validation_queries, s->n_validation_queries, &d->validation_queries);
    r |= config_list_copy(s->switch_command, s->n_switch_command, &d->switch_command);
    if (r) {
        corruption_config_done(d);
        return -ENOMEM;
    }
    return 0;
}

const ConfigScenarioSection corruption_config_section = {
    .name = "database_corruption",
    .size = sizeof(CorruptionConfig),
    .default_rto_ms = 15ull * 60 * 1000,
    .default_rpo_ms = 24ull * 3600 * 1000,
    .read = corruption_config_read,
    .copy = corruption_config_copy,
    .done = corruption_config_done,
};

int corruption_configure(const ScenarioCaps *caps, const Config *cfg, const ConfigScenario *sc, bool apply, char *err,
                         size_t errlen)
{
    const CorruptionConfig *c = sc->data;
    StandbySettings set = {.enabled = c->standby, .jobs = c->standby_jobs, .restore_timeout_ms = c->restore_timeout_ms};

    if (!apply)
        return standby_check_config(caps->standby, cfg, &set, err, errlen);
    if (!caps->standby)
        return 0;
    int r = standby_apply_config(caps->standby, cfg, &set);
    if (r < 0)
        snprintf(err, errlen, "cannot configure the standby restore: %s", err_str(r));
    return r;
}
