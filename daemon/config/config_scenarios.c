/*
 * config_scenarios: the `scenarios` section. Owns the keys every scenario shares (admin_conninfo,
 * database) and the registry of the scenarios' own sections (scenarios.<name>): each registered
 * section is read here for the keys all of them have (mode, rto, rpo) and then by the reader its
 * scenario registered (config.h, ConfigScenarioSection). The config layer knows no scenario by
 * name; the scenario layer registers them (scenario/registry.c, scenario_register_config).
 */
#include "config/config_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "cfgtree.h"

static const ConfigScenarioSection *config_sections[CONFIG_MAX_SCENARIO_SECTIONS];
static size_t config_n_sections;

int config_register_scenario_section(const ConfigScenarioSection *sec)
{
    for (size_t i = 0; i < config_n_sections; i++) {
        if (config_sections[i] == sec)
            return 0;
        if (strcmp(config_sections[i]->name, sec->name) == 0)
            return -EEXIST;
    }
    if (config_n_sections == CONFIG_MAX_SCENARIO_SECTIONS)
        return -ENOSPC;
    config_sections[config_n_sections++] = sec;
    return 0;
}

const ConfigScenario *config_scenario(const Config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->scenarios.n; i++)
        if (strcmp(cfg->scenarios.list[i].def->name, name) == 0)
            return &cfg->scenarios.list[i];
    return NULL;
}

/* scenarios.<name>: the shared keys, then the scenario's own reader, then unknown keys. */
static void config_read_scenario(const CfgSection *parent, const ConfigScenarioSection *def, ConfigScenario *sc)
{
    static const char *const modes[] = {"automatic", "manual", NULL};
    CfgSection s = cfg_section(parent, def->name, false);
    int mode = 0;

    sc->def = def;
    cfg_duration_ms(&s, "rto", false, def->default_rto_ms, 1000, &sc->rto_ms);
    cfg_duration_ms(&s, "rpo", false, def->default_rpo_ms, 1000, &sc->rpo_ms);
    if (cfg_enum(&s, "mode", modes, 0, &mode))
        sc->manual = mode == 1;
    if (def->size && !(sc->data = calloc(1, def->size))) {
        cfg_error(s.ctx, s.map ? s.map : parent->map, "'%s': out of memory", s.path);
        return;
    }
    if (def->read)
        def->read(&s, sc->data);
    cfg_check_unknown(&s);
}

void config__read_scenarios(const CfgSection *top, ConfigScenarios *sc)
{
    CfgSection s = cfg_section(top, "scenarios", false);

    cfg_string(&s, "admin_conninfo", false, NULL, &sc->admin_conninfo);
    cfg_string(&s, "database", false, NULL, &sc->database);
    if (sc->database && (!sc->database[0] || strlen(sc->database) > 30 || strpbrk(sc->database, "\"\\")))
        cfg_error(s.ctx, cfg_get(s.map, "database"),
                  "'scenarios.database' must be 1..30 characters without quotes or backslashes");
    config__check_conninfo_password(&s, "admin_conninfo");
    config__check_conninfo_passfile(&s, "admin_conninfo");
    config__check_child_conninfo(&s, "admin_conninfo", sc->admin_conninfo);
    if (config_n_sections && !(sc->list = calloc(config_n_sections, sizeof(*sc->list)))) {
        cfg_error(s.ctx, s.map ? s.map : top->map, "'scenarios': out of memory");
        return;
    }
    for (size_t i = 0; i < config_n_sections; i++, sc->n++)
        config_read_scenario(&s, config_sections[i], &sc->list[i]);
    cfg_check_unknown(&s);
}
