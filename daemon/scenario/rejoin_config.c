/*
 * rejoin_config: the scenario's own section, scenarios.rejoin (the shared keys mode, rto and rpo
 * are read for it by config/config_scenarios.c). The nodes' data directories and their start and
 * stop commands are in replication.nodes. See conf/drsupervisor.yaml and docs/replication.md.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cfgtree.h"
#include "config/config.h"
#include "scenario/rejoin_internal.h"

static void rj_path_key(const CfgSection *s, const char *key, const char *v)
{
    if (v && v[0] != '/')
        cfg_error(s->ctx, cfg_get(s->map, key), "'%s.%s' must be an absolute path", s->path, key);
}

static void rj_config_read(const CfgSection *s, void *data)
{
    RejoinConfig *c = data;
    cfg_string(s, "pg_ctl", false, "/usr/lib/postgresql/15/bin/pg_ctl", &c->pg_ctl);
    cfg_string(s, "pg_rewind", false, "/usr/lib/postgresql/15/bin/pg_rewind", &c->pg_rewind);
    cfg_string(s, "pg_basebackup", false, "/usr/lib/postgresql/15/bin/pg_basebackup", &c->pg_basebackup);
    cfg_string_list(s, "run_as", &c->run_as, &c->n_run_as);
    cfg_string(s, "restore_command", false, NULL, &c->restore_command);
    cfg_duration_ms(s, "stop_timeout", false, 60000, 1000, &c->stop_timeout_ms);
    cfg_duration_ms(s, "copy_timeout", false, 3600000, 1000, &c->copy_timeout_ms);
    cfg_duration_ms(s, "stream_timeout", false, 120000, 1000, &c->stream_timeout_ms);
    rj_path_key(s, "pg_ctl", c->pg_ctl);
    rj_path_key(s, "pg_rewind", c->pg_rewind);
    rj_path_key(s, "pg_basebackup", c->pg_basebackup);
    if (c->run_as && c->run_as[0][0] != '/')
        cfg_error(s->ctx, cfg_get(s->map, "run_as"), "'%s.run_as' must start with an absolute program path", s->path);
    if (c->restore_command && strpbrk(c->restore_command, "\n"))
        cfg_error(s->ctx, cfg_get(s->map, "restore_command"), "'%s.restore_command' is one line", s->path);
    if (c->stop_timeout_ms > 140000)
        cfg_error(s->ctx, cfg_get(s->map, "stop_timeout"), "'%s.stop_timeout' is at most 2m20s", s->path);
    if (c->copy_timeout_ms > RJ_COPY_MAX_MS - 60000)
        cfg_error(s->ctx, cfg_get(s->map, "copy_timeout"), "'%s.copy_timeout' is at most 5h59m", s->path);
    if (c->stream_timeout_ms > 30ull * 60 * 1000)
        cfg_error(s->ctx, cfg_get(s->map, "stream_timeout"), "'%s.stream_timeout' is at most 30m", s->path);
}

static void rj_config_done(void *data)
{
    RejoinConfig *c = data;
    free(c->pg_ctl);
    free(c->pg_rewind);
    free(c->pg_basebackup);
    free(c->restore_command);
    config_list_free(c->run_as, c->n_run_as);
    memset(c, 0, sizeof(*c));
}

static int rj_config_copy(const void *src, void *dst)
{
    const RejoinConfig *s = src;
    RejoinConfig *d = dst;
    int r = 0;

    *d = *s;
    d->pg_ctl = d->pg_rewind = d->pg_basebackup = d->restore_command = NULL;
    d->run_as = NULL;
    r |= config_str_copy(s->pg_ctl, &d->pg_ctl);
    r |= config_str_copy(s->pg_rewind, &d->pg_rewind);
    r |= config_str_copy(s->pg_basebackup, &d->pg_basebackup);
    r |= config_str_copy(s->restore_command, &d->restore_command);
    r |= config_list_copy(s->run_as, s->n_run_as, &d->run_as);
    if (r) {
        rj_config_done(d);
        return -ENOMEM;
    }
    return 0;
}

const ConfigScenarioSection rejoin_config_section = {
    .name = "rejoin",
    .size = sizeof(RejoinConfig),
    .default_rto_ms = 60ull * 60 * 1000, /* trading is not halted: the RTO measures the rebuild */
    .default_rpo_ms = 60ull * 1000,
    .read = rj_config_read,
    .copy = rj_config_copy,
    .done = rj_config_done,
};
