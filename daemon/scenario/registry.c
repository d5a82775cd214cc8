/*
 * registry: the scenarios this daemon can run (see scenario.h). Adding a scenario adds its
 * definition's line here.
 */
#include "scenario/scenario.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "config/config.h"
#include "err.h"

extern const ScenarioDef scenario_database_corruption;
extern const ScenarioDef scenario_primary_failure;
extern const ScenarioDef scenario_point_in_time;
extern const ScenarioDef scenario_app_crash;
extern const ScenarioDef scenario_network_partition;
extern const ScenarioDef scenario_switchover;
extern const ScenarioDef scenario_rejoin;
extern const ScenarioDef scenario_data_loss;
extern const ScenarioDef scenario_security_breach;
extern const ScenarioDef scenario_complete_disaster;

static const ScenarioDef *const scenario_registry[] = {
    &scenario_database_corruption,
    &scenario_primary_failure,
    &scenario_point_in_time,
    &scenario_app_crash,
    &scenario_network_partition,
    &scenario_switchover,
    &scenario_rejoin,
    &scenario_data_loss,
    &scenario_security_breach,
    &scenario_complete_disaster,
};

int scenario_register_config(void)
{
    for (size_t i = 0; i < scenario_count(); i++) {
        const ScenarioDef *def = scenario_registry[i];
        int r = def->config ? config_register_scenario_section(def->config) : -EINVAL;
        if (r < 0)
            return r;
    }
    return 0;
}

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

const char *scenario_handoff_incident(const ScenarioDef *def, const char *state)
{
    for (const ScenarioHandoff *h = def->handoffs; h && h->state; h++)
        if (state && strcmp(h->state, state) == 0)
            return h->incident;
    return NULL;
}

int scenario_registry_validate(char *err, size_t errlen)
{
    for (size_t i = 0; i < scenario_count(); i++) {
        const ScenarioDef *def = scenario_registry[i];
        const FsmTable *t = def->table;
        if (fsm_table_validate(t, err, errlen) < 0)
            return DR_ECONFIG;
        if (!def->config || strcmp(def->config->name, def->name) != 0) {
            snprintf(err, errlen, "%s: its configuration section (ScenarioDef.config) is %s", def->name,
                     def->config ? "named differently" : "missing");
            return DR_ECONFIG;
        }
        for (int s = 0; s < t->state_count; s++) {
            if (t->states[s].kind != FSM_STATE_HANDOFF)
                continue;
            const char *kind = scenario_handoff_incident(def, t->states[s].name);
            const ScenarioDef *to = kind ? scenario_for_incident(kind) : NULL;
            if (!to || to == def) {
                snprintf(err, errlen, "%s: hand-off state '%s' %s", def->name, t->states[s].name,
                         !kind ? "names no incident kind (ScenarioDef.handoffs)"
                               : "hands off to an incident kind no other scenario handles");
                return DR_ECONFIG;
            }
        }
    }
    return 0;
}
