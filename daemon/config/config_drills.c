/*
 * config_drills: the drills section (docs/drills.md): the scheduled drills (a cron expression and
 * the scenario to rehearse, each entry), how old the last drill of a scenario may be before
 * readiness warns, the factor of the free-space rule for a restore, and where a point_in_time
 * drill builds its scratch cluster (drills.point_in_time: port, scratch_directory). Which scenarios can be
 * drilled is the scenarios' business: drills_check_config (daemon/scenario/drill.c) checks the
 * names against them.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"
#include "cron.h"

void config__free_drills(ConfigDrills *d)
{
    for (size_t i = 0; i < d->n_schedule; i++) {
        free(d->schedule[i].cron);
        free(d->schedule[i].scenario);
    }
    free(d->schedule);
    free(d->pitr_scratch_directory);
    memset(d, 0, sizeof(*d));
}

static void config_read_drill_entry(CfgCtx *ctx, const CfgNode *item, size_t idx, ConfigDrillEntry *e)
{
    CfgSection s = {.ctx = ctx, .map = item, .where = item};
    CronExpr expr;
    char err[160];

    snprintf(s.path, sizeof(s.path), "drills.schedule[%zu]", idx);
    cfg_string(&s, "cron", true, NULL, &e->cron);
    cfg_string(&s, "scenario", true, NULL, &e->scenario);
    cfg_check_unknown(&s);
    if (e->cron && cron_parse(e->cron, &expr, err, sizeof(err)) < 0)
        cfg_error(ctx, cfg_get(item, "cron"), "'%s.cron': bad cron schedule '%s': %s", s.path, e->cron, err);
}

void config__read_drills(const CfgSection *top, ConfigDrills *d)
{
    CfgSection s = cfg_section(top, "drills", false);
    char *factor = NULL;

    d->enabled = s.map != NULL;
    cfg_duration_ms(&s, "max_age", false, 35ull * 24 * 3600 * 1000, 60000, &d->max_age_ms);
    cfg_string(&s, "free_space_factor", false, "1.5", &factor);
    const CfgNode *sched = cfg_get(s.map, "schedule");
    CfgSection p = cfg_section(&s, "point_in_time", false);
    cfg_int(&p, "port", 0, 65535, 0, &d->pitr_port);
    cfg_string(&p, "scratch_directory", false, NULL, &d->pitr_scratch_directory);
    if (d->pitr_scratch_directory && (d->pitr_scratch_directory[0] != '/' || strpbrk(d->pitr_scratch_directory, "'\"\\\n")))
        cfg_error(p.ctx, cfg_get(p.map, "scratch_directory"), "'drills.point_in_time.scratch_directory' must be an "
                  "absolute path without quotes or backslashes");
    cfg_check_unknown(&p);
    cfg_check_unknown(&s);
    d->free_space_factor = 1.5;
    if (factor) {
        char *end = NULL;
        double f = strtod(factor, &end);
        if (!end || end == factor || *end || !isfinite(f) || f <= 0)
            cfg_error(s.ctx, cfg_get(s.map, "free_space_factor"), "'drills.free_space_factor' must be a number above "
                                                                   "0 (e.g. 1.5), not '%s'", factor);
        else
            d->free_space_factor = f;
        free(factor);
    }
    if (sched && sched->kind == CFG_NODE_SEQ) {
        d->schedule = calloc(sched->n ? sched->n : 1, sizeof(*d->schedule));
        for (size_t i = 0; d->schedule && i < sched->n; i++) {
            if (sched->items[i]->kind != CFG_NODE_MAP) {
                cfg_error(s.ctx, sched->items[i], "'drills.schedule' items must be mappings {cron, scenario}");
                continue;
            }
            config_read_drill_entry(s.ctx, sched->items[i], i, &d->schedule[d->n_schedule++]);
        }
    } else if (sched) {
        cfg_error(s.ctx, sched, "'drills.schedule' must be a list of {cron, scenario}");
    }
}
