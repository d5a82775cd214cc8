/*
 * app_crash_internal: what app_crash.c and app_crash_config.c share, and the halt (the venue's,
 * then the out-of-band halt when the platform cannot confirm it) that complete_disaster.c shares;
 * not for other modules. The scenario's own settings, scenarios.app_crash.
 */
#ifndef DRSUP_SCN_APP_CRASH_INTERNAL_H
#define DRSUP_SCN_APP_CRASH_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "fsm.h"

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

/* The halt's keys of a section (halt_wait, out_of_band_halt_command / _url / _body / _timeout),
 * read as scenarios.app_crash reads them, into c's halt_wait_ms and out_of_band_halt; copied and
 * released with the rest of c (the other fields stay zero). */
struct CfgSection;
void app_crash__read_halt(const struct CfgSection *s, AppCrashConfig *c);
int app_crash__copy_halt(const AppCrashConfig *src, AppCrashConfig *dst);
void app_crash__halt_done(AppCrashConfig *c);
/* The halt as app_crash's kill_switch step does it, with c's settings (borrowed: the run's
 * configuration): the venue's halt (persisted, retried), its confirmation waited for halt_wait,
 * unconfirmed the out-of-band halt; records "kill_switch" {by, how, ms} and finishes st. */
struct ScnStep;
void app_crash__halt(struct ScnStep *st, const AppCrashConfig *c);
void app_crash__plan_halt(FsmCall *call, const AppCrashConfig *c, FsmDone done);

/* The longest a restart_platform step may take with these settings (its row allows more). */
#define APP_CRASH_RESTART_BUDGET_MS (3600ull * 1000)

#endif
