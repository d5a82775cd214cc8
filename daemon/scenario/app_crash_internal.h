/*
 * app_crash_internal: what app_crash.c and app_crash_config.c share; not for other modules. The
 * scenario's own settings, scenarios.app_crash.
 */
#ifndef DRSUP_SCN_APP_CRASH_INTERNAL_H
#define DRSUP_SCN_APP_CRASH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* One way of acting on the world: a command (argv, no shell) or an HTTP request; at most one. */
typedef struct AppCrashAction {
    char **argv;        /* command: argv[0] an absolute path */
    size_t argc;
    char *url;          /* HTTP: POST url (with body, JSON, or none) */
    char *body;
    uint64_t timeout_ms;
} AppCrashAction;

typedef struct AppCrashConfig {
    AppCrashAction restart;          /* restart the platform in shadow mode (idempotent) */
    char **restart_env;              /* NAME=value added to the restart command's environment */
    size_t n_restart_env;
    int64_t restart_attempts;
    uint64_t restart_delay_ms;       /* between attempts */
    uint64_t health_timeout_ms;      /* after one restart: the wait for health (and the halt re-asserted) */
    uint64_t health_interval_ms;
    uint64_t halt_wait_ms;           /* the venue's confirmation waited for before the out-of-band halt */
    AppCrashAction out_of_band_halt; /* the exchange's cancel-all / dead-man switch, or a command */
} AppCrashConfig;

extern const ConfigScenarioSection app_crash_config_section;

/* The longest a restart_platform step may take with these settings (its row allows more). */
#define APP_CRASH_RESTART_BUDGET_MS (3600ull * 1000)

#endif
