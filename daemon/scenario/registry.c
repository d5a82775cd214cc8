/*
 * registry: the scenarios this daemon can run (see scenario.h). Adding a scenario adds its
 * definition's line here.
 */
#include "scenario/scenario.h"

#include <string.h>

extern const ScenarioDef scenario_database_corruption;

static const ScenarioDef *const scenario_registry[] = {
    &scenario_database_corruption,
};

size_t scenario_count(void)
{
    return sizeof(scenario_registry) / sizeof(scenario_registry[0]);
}

const ScenarioDef *scenario_at(size_t i)
{
    return i < scenario_count() ? scenario_registry[i] : NULL;
}

const ScenarioDef *scenario_find(const char *name)
{
    for (size_t i = 0; name && i < scenario_count(); i++)
        if (strcmp(scenario_registry[i]->name, name) == 0)
            return scenario_registry[i];
    return NULL;
}

const ScenarioDef *scenario_for_incident(const char *kind)
{
    for (size_t i = 0; kind && i < scenario_count(); i++)
        for (const char *const *k = scenario_registry[i]->handles; k && *k; k++)
            if (strcmp(*k, kind) == 0)
                return scenario_registry[i];
    return NULL;
}
