/*
 * point_in_time_config: the scenario's own section, scenarios.point_in_time (the shared keys mode,
 * rto and rpo are read for it by config/config_scenarios.c). See conf/drsupervisor.yaml and
 * docs/scenarios.md.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cfgtree.h"
#include "config/config.h"
#include "scenario/point_in_time_internal.h"

/* A path that restore_command and pg_ctl's options quote: no quotes, no backslashes. */
static void pitr_path_key(const CfgSection *s, const char *key, const char *v)
{
    if (v && (v[0] != '/' || strpbrk(v, "'\"\\\n")))
        cfg_error(s->ctx, cfg_get(s->map, key), "'%s.%s' must be an absolute path without quotes or backslashes",
                  s->path, key);
}

void pitr__config_read(const CfgSection *s, void *data)
{
    PitrConfig *c = data;
    cfg_string(s, "data_directory", false, NULL, &c->data_directory);
    cfg_string(s, "scratch_directory", false, NULL, &c->scratch_directory);
    cfg_string(s, "pg_ctl", false, "/usr/lib/postgresql/15/bin/pg_ctl", &c->pg_ctl);
    cfg_string(s, "tar", false, "/bin/tar", &c->tar);
    cfg_string_list(s, "run_as", &c->run_as, &c->n_run_as);
    cfg_int(s, "side_port", 0, 65535, 0, &c->side_port);
    cfg_duration_ms(s, "start_timeout", false, 10ull * 60 * 1000, 1000, &c->start_timeout_ms);
    cfg_duration_ms(s, "switch_timeout", false, 5ull * 60 * 1000, 1000, &c->switch_timeout_ms);
    cfg_string_list(s, "validation_queries", &c->validation_queries, &c->n_validation_queries);
    cfg_string_list(s, "switch_command", &c->switch_command, &c->n_switch_command);
    pitr_path_key(s, "data_directory", c->data_directory);
    pitr_path_key(s, "scratch_directory", c->scratch_directory);
    pitr_path_key(s, "pg_ctl", c->pg_ctl);
    pitr_path_key(s, "tar", c->tar);
    if (c->start_timeout_ms > 6ull * 3600 * 1000)
        cfg_error(s->ctx, cfg_get(s->map, "start_timeout"), "'%s.start_timeout' is at most 6h", s->path);
    if (c->run_as && c->run_as[0][0] != '/')
        cfg_error(s->ctx, cfg_get(s->map, "run_as"), "'%s.run_as' must start with an absolute program path", s->path);
    if (c->switch_command && c->switch_command[0][0] != '/')
        cfg_error(s->ctx, cfg_get(s->map, "switch_command"),
                  "'%s.switch_command' must start with an absolute program path", s->path);
}

void pitr__config_done(void *data)
{
    PitrConfig *c = data;
    free(c->data_directory);
    free(c->scratch_directory);
    free(c->pg_ctl);
    free(c->tar);
    config_list_free(c->run_as, c->n_run_as);
    config_list_free(c->validation_queries, c->n_validation_queries);
    config_list_free(c->switch_command, c->n_switch_command);
    memset(c, 0, sizeof(*c));
}

int pitr__config_copy(const void *src, void *dst)
{
    const PitrConfig *s = src;
    PitrConfig *d = dst;
    int r = 0;

    *d = *s;
    d->data_directory = d->scratch_directory = d->pg_ctl = d->tar = NULL;
    d->run_as = d->validation_queries = d->switch_command = NULL;
    r |= config_str_copy(s->data_directory, &d->data_directory);
    r |= config_str_copy(s->scratch_directory, &d->scratch_directory);
    r |= config_str_copy(s->pg_ctl, &d->pg_ctl);
    r |= config_str_copy(s->tar, &d->tar);
    r |= config_list_copy(s->run_as, s->n_run_as, &d->run_as);
    r |= config_list_copy(s->validation_queries, s->n_validation_queries, &d->validation_queries);
    r |= config_list_copy(s->switch_command, s->n_switch_command, &d->switch_command);
    if (r) {
        pitr__config_done(d);
        return -ENOMEM;
    }
    return 0;
}

const ConfigScenarioSection point_in_time_config_section = {
    .name = "point_in_time",
    .size = sizeof(PitrConfig),
    .default_rto_ms = 30ull * 60 * 1000,
    .default_rpo_ms = 60ull * 1000,
    .read = pitr__config_read,
    .copy = pitr__config_copy,
    .done = pitr__config_done,
};
