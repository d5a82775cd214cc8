/*
 * app_crash_config: the scenario's own section, scenarios.app_crash (the shared keys mode, rto
 * and rpo are read for it by config/config_scenarios.c): how the platform is restarted in shadow
 * mode, how long it is waited for, and the out-of-band halt used when the platform cannot answer
 * its own. See conf/drsupervisor.yaml and docs/scenarios.md.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfgtree.h"
#include "config/config.h"
#include "scenario/app_crash_internal.h"

/* An action's keys (<name>_command or <name>_url, with <name>_body and <name>_timeout) are
 * read with their literal names; this checks what they say together. */
static void app_crash_check_action(const CfgSection *s, const char *name, const AppCrashAction *a)
{
    char key[64];
    snprintf(key, sizeof(key), "%s_command", name);
    if (a->argc && a->argv[0][0] != '/')
        cfg_error(s->ctx, cfg_get(s->map, key), "'%s.%s' must start with an absolute program path", s->path, key);
    snprintf(key, sizeof(key), "%s_url", name);
    if (a->url && strncmp(a->url, "http://", 7) && strncmp(a->url, "https://", 8))
        cfg_error(s->ctx, cfg_get(s->map, key), "'%s.%s' must be an http:// or https:// URL", s->path, key);
    if (a->url && a->argc)
        cfg_error(s->ctx, cfg_get(s->map, key), "'%s.%s' and '%s.%s_command' exclude each other", s->path, key,
                  s->path, name);
    snprintf(key, sizeof(key), "%s_timeout", name);
    if (a->timeout_ms > 600000)
        cfg_error(s->ctx, cfg_get(s->map, key), "'%s.%s' is at most 10m", s->path, key);
}

void app_crash__read_halt(const CfgSection *s, AppCrashConfig *c)
{
    cfg_duration_ms(s, "halt_wait", false, 5000, 0, &c->halt_wait_ms);
    if (c->halt_wait_ms > 60000)
        cfg_error(s->ctx, cfg_get(s->map, "halt_wait"), "'%s.halt_wait' is at most 60s", s->path);
    cfg_string_list(s, "out_of_band_halt_command", &c->out_of_band_halt.argv, &c->out_of_band_halt.argc);
    cfg_string(s, "out_of_band_halt_url", false, NULL, &c->out_of_band_halt.url);
    cfg_string(s, "out_of_band_halt_body", false, NULL, &c->out_of_band_halt.body);
    cfg_duration_ms(s, "out_of_band_halt_timeout", false, 10000, 100, &c->out_of_band_halt.timeout_ms);
    app_crash_check_action(s, "out_of_band_halt", &c->out_of_band_halt);
    if (c->out_of_band_halt.timeout_ms > 60000)
        cfg_error(s->ctx, cfg_get(s->map, "out_of_band_halt_timeout"), "'%s.out_of_band_halt_timeout' is at most 60s",
                  s->path);
}

static void app_crash_config_read(const CfgSection *s, void *data)
{
    AppCrashConfig *c = data;

    cfg_string_list(s, "restart_command", &c->restart.argv, &c->restart.argc);
    cfg_string(s, "restart_url", false, NULL, &c->restart.url);
    cfg_string(s, "restart_body", false, NULL, &c->restart.body);
    cfg_duration_ms(s, "restart_timeout", false, 60000, 100, &c->restart.timeout_ms);
    app_crash_check_action(s, "restart", &c->restart);
    cfg_string_list(s, "restart_env", &c->restart_env, &c->n_restart_env);
    if (!cfg_get(s->map, "restart_env") && (c->restart_env = calloc(2, sizeof(char *))) &&
        (c->restart_env[0] = strdup("TRADING_MODE=shadow")))
        c->n_restart_env = 1;
    for (size_t i = 0; i < c->n_restart_env; i++)
        if (!strchr(c->restart_env[i], '=') || c->restart_env[i][0] == '=')
            cfg_error(s->ctx, cfg_get(s->map, "restart_env"), "'%s.restart_env' entries are NAME=value ('%s')",
                      s->path, c->restart_env[i]);
    cfg_int(s, "restart_attempts", 1, 10, 3, &c->restart_attempts);
    cfg_duration_ms(s, "restart_delay", false, 5000, 0, &c->restart_delay_ms);
    cfg_duration_ms(s, "health_timeout", false, 60000, 100, &c->health_timeout_ms);
    cfg_duration_ms(s, "health_interval", false, 500, 10, &c->health_interval_ms);
    app_crash__read_halt(s, c);
    uint64_t one = c->restart.timeout_ms + c->health_timeout_ms + c->restart_delay_ms;
    if ((uint64_t)c->restart_attempts * one > APP_CRASH_RESTART_BUDGET_MS)
        cfg_error(s->ctx, cfg_get(s->map, "restart_attempts"), "'%s': restart_attempts x (restart_timeout + "
                  "health_timeout + restart_delay) is at most 1h", s->path);
}

static void app_crash_action_done(AppCrashAction *a)
{
    config_list_free(a->argv, a->argc);
    free(a->url);
    free(a->body);
}

static void app_crash_config_done(void *data)
{
    AppCrashConfig *c = data;
    app_crash_action_done(&c->restart);
    app_crash_action_done(&c->out_of_band_halt);
    config_list_free(c->restart_env, c->n_restart_env);
    memset(c, 0, sizeof(*c));
}

static int app_crash_action_copy(const AppCrashAction *s, AppCrashAction *d)
{
    *d = *s;
    d->argv = NULL;
    d->url = s->url ? strdup(s->url) : NULL;
    d->body = s->body ? strdup(s->body) : NULL;
    int r = config_list_copy(s->argv, s->argc, &d->argv);
    return r || (s->url && !d->url) || (s->body && !d->body) ? -ENOMEM : 0;
}

void app_crash__halt_done(AppCrashConfig *c)
{
    app_crash_action_done(&c->out_of_band_halt);
    memset(&c->out_of_band_halt, 0, sizeof(c->out_of_band_halt));
}

int app_crash__copy_halt(const AppCrashConfig *src, AppCrashConfig *dst)
{
    dst->halt_wait_ms = src->halt_wait_ms;
    return app_crash_action_copy(&src->out_of_band_halt, &dst->out_of_band_halt);
}

static int app_crash_config_copy(const void *src, void *dst)
{
    const AppCrashConfig *s = src;
    AppCrashConfig *d = dst;
    int r = 0;

    *d = *s;
    d->restart_env = NULL;
    memset(&d->restart, 0, sizeof(d->restart));
    memset(&d->out_of_band_halt, 0, sizeof(d->out_of_band_halt));
    r |= app_crash_action_copy(&s->restart, &d->restart);
    r |= app_crash_action_copy(&s->out_of_band_halt, &d->out_of_band_halt);
    r |= config_list_copy(s->restart_env, s->n_restart_env, &d->restart_env);
    if (r) {
        app_crash_config_done(d);
        return -ENOMEM;
    }
    return 0;
}

const ConfigScenarioSection app_crash_config_section = {
    .name = "app_crash",
    .size = sizeof(AppCrashConfig),
    .default_rto_ms = 5ull * 60 * 1000, /* Sofia's runbook: 5 minutes */
    .default_rpo_ms = 60ull * 1000,
    .read = app_crash_config_read,
    .copy = app_crash_config_copy,
    .done = app_crash_config_done,
};
