/*
 * security_breach_config: the scenario's own section, scenarios.security_breach (the shared keys
 * mode, rto and rpo are read for it by config/config_scenarios.c): the emergency close, the
 * lockdown and rotate commands, the restore's settings (the same keys as database_corruption's) and
 * pitr: (point_in_time's keys, read by its reader) for the recovery to just before T.
 * See conf/drsupervisor.yaml and docs/security-breach.md.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfgtree.h"
#include "config/config.h"
#include "err.h"
#include "scenario/security_breach_internal.h"

static void breach_check_programs(const CfgSection *s, const char *key, char *const *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (list[i][0] != '/')
            cfg_error(s->ctx, cfg_get(s->map, key), "'%s.%s' entries must be absolute program paths ('%s')", s->path,
                      key, list[i]);
}

static void breach_config_read(const CfgSection *s, void *data)
{
    BreachConfig *c = data;
    CorruptionConfig *r = &c->restore;

    cfg_bool(s, "emergency_close", true, &c->emergency_close);
    cfg_string_list(s, "lockdown_commands", &c->lockdown_commands, &c->n_lockdown_commands);
    cfg_string_list(s, "rotate_commands", &c->rotate_commands, &c->n_rotate_commands);
    cfg_duration_ms(s, "hook_timeout", false, 60000, 100, &c->hook_timeout_ms);
    cfg_bool(s, "rotate_backup_key", true, &c->rotate_backup_key);
    if (c->hook_timeout_ms > 600000)
        cfg_error(s->ctx, cfg_get(s->map, "hook_timeout"), "'%s.hook_timeout' is at most 10m", s->path);
    breach_check_programs(s, "lockdown_commands", c->lockdown_commands, c->n_lockdown_commands);
    breach_check_programs(s, "rotate_commands", c->rotate_commands, c->n_rotate_commands);
    if (c->n_lockdown_commands > 16 || c->n_rotate_commands > 16)
        cfg_error(s->ctx, s->map, "'%s': at most 16 lockdown and 16 rotate commands", s->path);

    cfg_string_list(s, "validation_queries", &r->validation_queries, &r->n_validation_queries);
    cfg_string_list(s, "switch_command", &r->switch_command, &r->n_switch_command);
    cfg_duration_ms(s, "restore_timeout", false, 3600ull * 1000, 1000, &r->restore_timeout_ms);
    cfg_int(s, "restore_jobs", 0, 64, 2, &r->restore_jobs);
    r->standby = false; /* a standby restore may hold what the intruder wrote: never used here */
    if (r->switch_command && r->switch_command[0][0] != '/')
        cfg_error(s->ctx, cfg_get(s->map, "switch_command"),
                  "'%s.switch_command' must start with an absolute program path", s->path);

    /* pitr: the cluster recovered to just before T when the WAL archive reaches it (point_in_time's
     * keys); without it, or incomplete, the logical restore is the only way */
    CfgSection p = cfg_section(s, "pitr", false);
    pitr__config_read(&p, &c->pitr);
    c->pitr_configured = p.map && c->pitr.data_directory && c->pitr.side_port && c->pitr.n_switch_command;
    if (p.map && !c->pitr_configured)
        cfg_error(s->ctx, p.map, "'%s.pitr' needs data_directory, side_port and switch_command", s->path);
}

static void breach_config_done(void *data)
{
    BreachConfig *c = data;
    config_list_free(c->restore.validation_queries, c->restore.n_validation_queries);
    config_list_free(c->restore.switch_command, c->restore.n_switch_command);
    config_list_free(c->lockdown_commands, c->n_lockdown_commands);
    config_list_free(c->rotate_commands, c->n_rotate_commands);
    pitr__config_done(&c->pitr);
    memset(c, 0, sizeof(*c));
}

static int breach_config_copy(const void *src, void *dst)
{
    const BreachConfig *s = src;
    BreachConfig *d = dst;
    int r = 0;

    *d = *s;
    d->restore.validation_queries = d->restore.switch_command = NULL;
    d->lockdown_commands = d->rotate_commands = NULL;
    memset(&d->pitr, 0, sizeof(d->pitr));
    r |= config_list_copy(s->restore.validation_queries, s->restore.n_validation_queries,
                          &d->restore.validation_queries);
    r |= config_list_copy(s->restore.switch_command, s->restore.n_switch_command, &d->restore.switch_command);
    r |= config_list_copy(s->lockdown_commands, s->n_lockdown_commands, &d->lockdown_commands);
    r |= config_list_copy(s->rotate_commands, s->n_rotate_commands, &d->rotate_commands);
    if (!r && pitr__config_copy(&s->pitr, &d->pitr) < 0)
        r = 1;
    if (r) {
        breach_config_done(d);
        return -ENOMEM;
    }
    return 0;
}

const ConfigScenarioSection breach_config_section = {
    .name = "security_breach",
    .size = sizeof(BreachConfig),
    .default_rto_ms = 60ull * 60 * 1000,
    .default_rpo_ms = 24ull * 3600 * 1000,
    .read = breach_config_read,
    .copy = breach_config_copy,
    .done = breach_config_done,
};
