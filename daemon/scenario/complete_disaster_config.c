/*
 * complete_disaster_config: the scenario's own section, scenarios.complete_disaster (the shared
 * keys mode, rto and rpo are read for it by config/config_scenarios.c): the recovery host's empty
 * data directory, the port the recovered server listens on, how the server's programs run, the
 * halt (app_crash's keys, read by app_crash__read_halt) and how the bucket is read. See
 * conf/drsupervisor.yaml and docs/complete-disaster.md.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cfgtree.h"
#include "config/config.h"
#include "scenario/complete_disaster_internal.h"

/* A path that restore_command and pg_ctl's options quote: no quotes, no backslashes. */
static void cd_path_key(const CfgSection *s, const char *key, const char *v)
{
    if (v && (v[0] != '/' || strpbrk(v, "'\"\\\n")))
        cfg_error(s->ctx, cfg_get(s->map, key), "'%s.%s' must be an absolute path without quotes or backslashes",
                  s->path, key);
}

static void cd_config_read(const CfgSection *s, void *data)
{
    CdConfig *c = data;
    PitrConfig *p = &c->pitr;
    cfg_string(s, "data_directory", false, NULL, &p->data_directory);
    cfg_string(s, "scratch_directory", false, NULL, &p->scratch_directory);
    cfg_string(s, "pg_ctl", false, "/usr/lib/postgresql/15/bin/pg_ctl", &p->pg_ctl);
    cfg_string(s, "tar", false, "/bin/tar", &p->tar);
    cfg_string_list(s, "run_as", &p->run_as, &p->n_run_as);
    cfg_int(s, "port", 0, 65535, 0, &p->side_port);
    cfg_duration_ms(s, "start_timeout", false, 10ull * 60 * 1000, 1000, &p->start_timeout_ms);
    cfg_string_list(s, "validation_queries", &p->validation_queries, &p->n_validation_queries);
    cfg_size(s, "range_size", 8u << 20, 64u << 10, 1u << 30, &c->range_size);
    cfg_size(s, "wal_segment_size", 16u << 20, 1u << 20, 1u << 30, &c->segment_size);
    cfg_duration_ms(s, "fetch_timeout", false, 5ull * 60 * 1000, 1000, &c->fetch_timeout_ms);
    app_crash__read_halt(s, &c->halt);
    cd_path_key(s, "data_directory", p->data_directory);
    cd_path_key(s, "scratch_directory", p->scratch_directory);
    cd_path_key(s, "pg_ctl", p->pg_ctl);
    cd_path_key(s, "tar", p->tar);
    if (c->segment_size & (c->segment_size - 1))
        cfg_error(s->ctx, cfg_get(s->map, "wal_segment_size"), "'%s.wal_segment_size' must be a power of 2 (the "
                  "server's wal_segment_size)", s->path);
    if (p->start_timeout_ms > 6ull * 3600 * 1000)
        cfg_error(s->ctx, cfg_get(s->map, "start_timeout"), "'%s.start_timeout' is at most 6h", s->path);
    if (p->run_as && p->run_as[0][0] != '/')
        cfg_error(s->ctx, cfg_get(s->map, "run_as"), "'%s.run_as' must start with an absolute program path", s->path);
}

static void cd_config_done(void *data)
{
    CdConfig *c = data;
    pitr__config_done(&c->pitr);
    app_crash__halt_done(&c->halt);
    memset(c, 0, sizeof(*c));
}

static int cd_config_copy(const void *src, void *dst)
{
    const CdConfig *s = src;
    CdConfig *d = dst;
    *d = *s;
    memset(&d->halt, 0, sizeof(d->halt));
    int r = pitr__config_copy(&s->pitr, &d->pitr);
    if (r == 0)
        r = app_crash__copy_halt(&s->halt, &d->halt);
    if (r < 0) {
        cd_config_done(d);
        return -ENOMEM;
    }
    return 0;
}

const ConfigScenarioSection complete_disaster_config_section = {
    .name = "complete_disaster",
    .size = sizeof(CdConfig),
    .default_rto_ms = 60ull * 60 * 1000, /* the runbooks' 30-60 minutes */
    .default_rpo_ms = 5ull * 60 * 1000,
    .read = cd_config_read,
    .copy = cd_config_copy,
    .done = cd_config_done,
};
