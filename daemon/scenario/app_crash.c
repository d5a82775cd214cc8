/*
 * app_crash: the scenario, as one static table, its definition and its own steps.
 *
 * Owns the runbook "the trading platform crashed, the database is fine" (Sofia scenario 1): the
 * kill switch (the venue's halt, persisted first; when the platform cannot confirm it within
 * halt_wait, the configured out-of-band halt, e.g. the exchange's cancel-all or dead-man
 * endpoint, confirmed by its exit status or 2xx answer), the platform restarted in shadow mode
 * (a command with restart_env, e.g. TRADING_MODE=shadow, or an HTTP action; idempotent by
 * contract), waited for (platform.health_url 2xx and the venue's halt re-asserted on the
 * restarted platform, within health_timeout; restart_attempts tries, restart_delay apart), then
 * the shared reconcile, resume in shadow, resume live (gate in manual mode) and post-resume watch.
 * It starts on the incident kind app_crash (the detector: detect/detector_sm.h) or drctl execute.
 *
 * Fail closed: a platform that is not back after restart_attempts leaves the run in
 * not_restarted, trading halted (halt.json), a critical page; a kill switch nobody confirms ends in
 * stayed_halted. What the run did is in its context (journaled): "kill_switch" {by: venue |
 * out_of_band, how, ms}, "restart" {attempts, last, healthy_ms}. Each attempt is recorded before
 * its restart runs, so a restart after kill -9 goes on counting from where it was.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/venue/venue.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "scenario/app_crash_internal.h"
#include "scenario/scn_internal.h"
#include "scenario/steps/steps.h"

enum {
    DETECTED,
    HALTED,
    RESTARTED,
    RECONCILED,
    SHADOW,
    LIVE,
    WATCHED,
    STAYED_HALTED,
    NOT_RESTARTED,
    NOT_RECONCILED,
    WATCH_FAILED,
    HALTED_AFTER_WATCH,
    N_STATES
};

#define AC_HALT_POLL_MS 100u

static const AppCrashConfig *ac_cfg(const ScnRun *run)
{
    return run->cfg.data;
}

/* The halt's settings of the step (app_crash__halt's: app_crash's own section, or another scenario's
 * copy of its keys). */
static const AppCrashConfig *ac_halt_cfg(const ScnStep *st)
{
    return st->halt;
}

static int64_t ac_ctx_int(const ScnRun *run, const char *obj, const char *key)
{
    const json_t *v = json_object_get(json_object_get(run->ctx, obj), key);
    return json_is_integer(v) ? json_integer_value(v) : 0;
}

/* Trading is halted and the platform says so (the venue's own confirmation). */
static bool ac_venue_confirms_halt(const ScnRun *run)
{
    Venue *v = run->caps->venue;
    return v && venue_halted(v) && venue_mode(v) == VENUE_MODE_HALTED;
}

/* Run a configured action (command with env, or HTTP POST), then then(). */
static void ac_action(ScnStep *st, const char *what, const AppCrashAction *a, const char *const *env,
                      ScnHookDone then)
{
    if (a->argc)
        scn_hook_run(st, what, (const char *const *)a->argv, env, a->timeout_ms, then);
    else
        scn_hook_http(st, what, "POST", a->url, a->body, a->timeout_ms, then);
}

static bool ac_action_set(const AppCrashAction *a)
{
    return a->argc || a->url;
}

static void ac_describe_action(const AppCrashAction *a, char *out, size_t n)
{
    if (a->argc)
        snprintf(out, n, "the command '%s'", a->argv[0]);
    else if (a->url)
        snprintf(out, n, "POST %s", a->url);
    else
        snprintf(out, n, "(none configured)");
}

/* ---- halt_trading: the kill switch ---- */

static void kill_switch_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    const char *by = json_string_value(json_object_get(json_object_get(run->ctx, "kill_switch"), "by"));
    const char *how = json_string_value(json_object_get(json_object_get(run->ctx, "kill_switch"), "how"));
    if (status < 0)
        scn_finish(st, status, "cannot record the kill switch: %s", err_str(status));
    else if (by && !strcmp(by, "venue"))
        scn_finish(st, 0, "the venue confirms trading is halted");
    else
        scn_finish(st, 0, "the platform did not confirm the halt within %llu ms; the out-of-band halt %s (the venue "
                   "keeps re-asserting the halt)", (unsigned long long)ac_halt_cfg(st)->halt_wait_ms, how ? how : "?");
}

static void kill_switch_record(ScnStep *st, const char *by, const char *how)
{
    scn_context_set(st->run, "kill_switch", json_pack("{s:s,s:s,s:I}", "by", by, "how", how, "ms",
                                                      (json_int_t)clock_wall_ms()), kill_switch_recorded, st);
}

static void out_of_band_done(ScnStep *st, bool ok, int64_t status, const char *how)
{
    (void)status;
    if (!ok) {
        scn_finish(st, DR_ESTATE, "the platform did not confirm the halt and the out-of-band halt %s: trading is "
                   "not known to be stopped", how);
        return;
    }
    kill_switch_record(st, "out_of_band", how);
}

static void kill_switch_poll(uv_timer_t *t);

static void kill_switch_check(ScnStep *st)
{
    const AppCrashConfig *c = ac_halt_cfg(st);
    char reason[256], runv[128];
    const char *env[] = {reason, runv, NULL};

    if (ac_venue_confirms_halt(st->run)) {
        kill_switch_record(st, "venue", "the venue's status action reports halted");
        return;
    }
    if (uv_now(st->run->core->loop) - st->t0 < c->halt_wait_ms) {
        if (scn_step_wait(st, AC_HALT_POLL_MS, kill_switch_poll) < 0)
            scn_finish(st, -ENOMEM, "cannot wait for the halt's confirmation: out of memory");
        return;
    }
    if (!ac_action_set(&c->out_of_band_halt)) {
        scn_finish(st, DR_ESTATE, "the platform did not confirm the halt within %llu ms and no out-of-band halt is "
                   "configured (scenarios.%s.out_of_band_halt_command or _url); the venue keeps retrying",
                   (unsigned long long)c->halt_wait_ms, st->run->def->name);
        return;
    }
    events_emit(st->run->core->events, SEV_WARNING, "scenario.step", NULL, false, NULL,
                "run %s: the platform did not confirm the halt within %llu ms: running the out-of-band halt",
                st->run->id, (unsigned long long)c->halt_wait_ms);
    snprintf(reason, sizeof(reason), "DRSUP_REASON=%s", st->run->reason ? st->run->reason : st->run->def->name);
    snprintf(runv, sizeof(runv), "DRSUP_RUN=%s", st->run->id);
    ac_action(st, "out-of-band halt", &c->out_of_band_halt, env, out_of_band_done);
}

static void kill_switch_poll(uv_timer_t *t)
{
    kill_switch_check(t->data);
}

void app_crash__halt(ScnStep *st, const AppCrashConfig *c)
{
    char reason[512];

    st->halt = c;
    if (!st->run->caps->venue || !venue_enabled(st->run->caps->venue)) {
        scn_finish(st, -ENOTSUP, "no venue is configured: the daemon cannot halt trading");
        return;
    }
    /* Persisted first and retried by the venue until the platform confirms it (fail closed):
     * the restarted platform gets the halt too. */
    snprintf(reason, sizeof(reason), "scenario %s run %s: %s", st->run->def->name, st->run->id,
             st->run->reason ? st->run->reason : "-");
    venue_halt(st->run->caps->venue, reason, st->run->id, NULL, NULL);
    kill_switch_check(st);
}

static void step_kill_switch(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (st)
        app_crash__halt(st, ac_cfg(st->run));
}

void app_crash__plan_halt(FsmCall *call, const AppCrashConfig *c, FsmDone done)
{
    char oob[400], msg[700];
    ac_describe_action(&c->out_of_band_halt, oob, sizeof(oob));
    snprintf(msg, sizeof(msg), "would halt through the venue (persisted, retried) and wait %llu ms for its "
             "confirmation; unconfirmed, the out-of-band halt %s", (unsigned long long)c->halt_wait_ms, oob);
    done(call, 0, msg);
}

static void plan_kill_switch(FsmCall *call, void *ctx, FsmDone done)
{
    app_crash__plan_halt(call, ac_cfg(ctx), done);
}

/* ---- restart_platform: restarted in shadow mode, healthy, halted ---- */

static void restart_attempt(ScnStep *st);
static void restart_on_delay(uv_timer_t *t);

static void restart_healthy_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the restart: %s", err_str(status));
    else
        scn_finish(st, 0, "the platform is back (restart attempt %lld of %lld): healthy, in shadow mode, halted",
                   (long long)ac_ctx_int(run, "restart", "attempts"), (long long)ac_cfg(run)->restart_attempts);
}

static void restart_failed_attempt(ScnStep *st, const char *why)
{
    const AppCrashConfig *c = ac_cfg(st->run);
    int64_t n = ac_ctx_int(st->run, "restart", "attempts");

    events_emit(st->run->core->events, SEV_ERROR, "scenario.step", NULL, false, NULL,
                "run %s: restart attempt %lld of %lld: %s", st->run->id, (long long)n, (long long)c->restart_attempts,
                why);
    if (n >= c->restart_attempts) {
        scn_finish(st, DR_ESTATE, "the platform is not back after %lld restart attempt%s (last: %s): trading stays "
                   "halted, operator needed", (long long)n, n == 1 ? "" : "s", why);
        return;
    }
    if (scn_step_wait(st, c->restart_delay_ms, restart_on_delay) < 0)
        scn_finish(st, -ENOMEM, "cannot wait for the next restart attempt: out of memory");
}

static void restart_health_poll(uv_timer_t *t);
static void restart_on_status(int result, const json_t *answer, const char *text, const char *message, void *data);

static void restart_wait_again(ScnStep *st, const char *why)
{
    const AppCrashConfig *c = ac_cfg(st->run);
    if (uv_now(st->run->core->loop) - st->t0 >= c->health_timeout_ms) {
        char msg[600];
        snprintf(msg, sizeof(msg), "not back within %llu ms of the restart (%s)",
                 (unsigned long long)c->health_timeout_ms, why);
        restart_failed_attempt(st, msg);
        return;
    }
    if (scn_step_wait(st, c->health_interval_ms, restart_health_poll) < 0)
        scn_finish(st, -ENOMEM, "cannot wait for the platform's health: out of memory");
}

static void restart_on_health(ScnStep *st, bool ok, int64_t status, const char *how)
{
    (void)status;
    char why[400];
    if (!ok) {
        snprintf(why, sizeof(why), "its health URL %s", how);
        restart_wait_again(st, why);
        return;
    }
    /* Healthy: the kill switch must hold on the restarted platform before anything else, as
     * the platform itself answers now (the venue's last mode may be from before the crash). */
    int r = st->run->caps->venue ? venue_action(st->run->caps->venue, VENUE_STATUS, NULL, restart_on_status, st)
                                 : DR_ECANCELED;
    if (r < 0)
        scn_finish(st, r, "cannot ask the restarted platform for its mode: %s", err_str(r));
}

/* The restarted platform's own answer: halted (the venue re-asserts its halt on a platform that
 * reports shadow or live while held halted), or wait. */
static void restart_on_status(int result, const json_t *answer, const char *text, const char *message, void *data)
{
    ScnStep *st = data;
    char why[400];

    if (st->cancelled || fsm_call_cancelled(st->call) || result == DR_ECANCELED) {
        scn_cancelled(st);
        return;
    }
    VenueMode m = result < 0 ? VENUE_MODE_UNKNOWN : venue_parse_mode(&st->run->core->cfg->venue, answer, text);
    if (m != VENUE_MODE_HALTED || !ac_venue_confirms_halt(st->run)) {
        if (result < 0)
            snprintf(why, sizeof(why), "healthy, but its status action failed: %s",
                     message ? message : err_str(result));
        else
            snprintf(why, sizeof(why), "healthy, but it reports '%s': the halt is not re-asserted on it yet",
                     venue_mode_name(m));
        restart_wait_again(st, why);
        return;
    }
    json_t *r = json_deep_copy(json_object_get(st->run->ctx, "restart"));
    json_object_set_new(r, "healthy_ms", json_integer(clock_wall_ms()));
    scn_context_set(st->run, "restart", r, restart_healthy_recorded, st);
}

static void restart_health_check(ScnStep *st)
{
    const char *url = st->run->core->cfg->platform.health_url;
    scn_hook_http(st, "health", "GET", url, NULL, st->run->core->cfg->platform.probe_timeout_ms, restart_on_health);
}

static void restart_health_poll(uv_timer_t *t)
{
    restart_health_check(t->data);
}

static void restart_ran(ScnStep *st, bool ok, int64_t status, const char *how)
{
    (void)status;
    char why[400];
    if (!ok) {
        snprintf(why, sizeof(why), "the restart %s", how);
        restart_failed_attempt(st, why);
        return;
    }
    st->t0 = uv_now(st->run->core->loop);
    restart_health_check(st);
}

static void restart_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    const AppCrashConfig *c = ac_cfg(run);
    char runv[128];
    const char **env = calloc(c->n_restart_env + 2, sizeof(*env));

    if (status < 0 || !env) {
        free(env);
        scn_finish(st, status < 0 ? status : -ENOMEM, "cannot record the restart attempt: %s",
                   err_str(status < 0 ? status : -ENOMEM));
        return;
    }
    for (size_t i = 0; i < c->n_restart_env; i++)
        env[i] = c->restart_env[i];
    snprintf(runv, sizeof(runv), "DRSUP_RUN=%s", run->id);
    env[c->n_restart_env] = runv;
    ac_action(st, "restart", &c->restart, env, restart_ran); /* child_spawn copies env */
    free(env);
}

/* One attempt: recorded durably, then the restart action, then the wait for health. */
static void restart_attempt(ScnStep *st)
{
    int64_t n = ac_ctx_int(st->run, "restart", "attempts") + 1;
    scn_context_set(st->run, "restart", json_pack("{s:I,s:I}", "attempts", (json_int_t)n, "at_ms",
                                                  (json_int_t)clock_wall_ms()), restart_recorded, st);
}

static void restart_on_delay(uv_timer_t *t)
{
    restart_attempt(t->data);
}

static void step_restart_platform(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    const AppCrashConfig *c;

    if (!st)
        return;
    c = ac_cfg(st->run);
    if (!ac_action_set(&c->restart)) {
        scn_finish(st, DR_ECONFIG, "no restart is configured (scenarios.app_crash.restart_command or restart_url): "
                   "trading stays halted, operator needed");
        return;
    }
    if (!st->run->core->cfg->platform.health_url) {
        scn_finish(st, DR_ECONFIG, "no platform.health_url: the platform's return cannot be seen; trading stays "
                   "halted");
        return;
    }
    int64_t n = ac_ctx_int(st->run, "restart", "attempts");
    if (n >= c->restart_attempts) { /* every attempt made before a restart of the daemon */
        scn_finish(st, DR_ESTATE, "the platform is not back after %lld restart attempts: trading stays halted, "
                   "operator needed", (long long)n);
        return;
    }
    restart_attempt(st);
}

static void plan_restart_platform(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    const AppCrashConfig *c = ac_cfg(run);
    char act[400], msg[900];
    ac_describe_action(&c->restart, act, sizeof(act));
    snprintf(msg, sizeof(msg), "would restart the platform in shadow mode with %s%s, then wait up to %llu ms for "
             "platform.health_url and the halt on it; %lld attempts, %llu ms apart", act,
             c->n_restart_env && c->restart.argc ? " (restart_env in its environment)" : "",
             (unsigned long long)c->health_timeout_ms, (long long)c->restart_attempts,
             (unsigned long long)c->restart_delay_ms);
    done(call, 0, msg);
}

/* ---- the table ---- */

static const FsmState ac_states[N_STATES] = {
    [DETECTED] = {"detected", FSM_STATE_ACTIVE},
    [HALTED] = {"halted", FSM_STATE_ACTIVE},
    [RESTARTED] = {"restarted_in_shadow", FSM_STATE_ACTIVE},
    [RECONCILED] = {"reconciled", FSM_STATE_ACTIVE},
    [SHADOW] = {"trading_in_shadow", FSM_STATE_ACTIVE},
    [LIVE] = {"live", FSM_STATE_ACTIVE},
    [WATCHED] = {"watch_passed", FSM_STATE_SUCCESS},
    [STAYED_HALTED] = {"stayed_halted", FSM_STATE_FAILURE},
    [NOT_RESTARTED] = {"not_restarted", FSM_STATE_FAILURE},
    [NOT_RECONCILED] = {"not_reconciled", FSM_STATE_FAILURE},
    [WATCH_FAILED] = {"watch_failed", FSM_STATE_ACTIVE},
    [HALTED_AFTER_WATCH] = {"halted_after_watch", FSM_STATE_FAILURE},
};

static const FsmRow ac_rows[] = {
    /* from, to, step, sentence, step fn, probe, plan, cancel, timeout ms, attempts, idempotent, gate, on_failure */
    {DETECTED, HALTED, "halt_trading", "trading is halted: the venue confirms it, or the out-of-band halt did",
     step_kill_switch, NULL, plan_kill_switch, scn_cancel, 150000, 2, true, FSM_GATE_NONE, STAYED_HALTED},
    {HALTED, RESTARTED, "restart_platform", "the platform is restarted in shadow mode, healthy and halted",
     step_restart_platform, NULL, plan_restart_platform, scn_cancel, APP_CRASH_RESTART_BUDGET_MS + 60000, 1, true,
     FSM_GATE_NONE, NOT_RESTARTED},
    {RESTARTED, RECONCILED, "reconcile", "the database matches the exchange's positions and fills",
     scn_step_reconcile, NULL, scn_plan_reconcile, NULL, 600000, 2, true, FSM_GATE_NONE, NOT_RECONCILED},
    {RECONCILED, SHADOW, "resume_shadow", "trading resumes in shadow mode (paper only)",
     scn_step_resume_shadow, NULL, scn_plan_resume_shadow, NULL, 30000, 3, true, FSM_GATE_NONE, FSM_NO_STATE},
    {SHADOW, LIVE, "resume_live", "trading is live again",
     scn_step_resume_live, scn_probe_resume_live, scn_plan_resume_live, scn_cancel, 30000, 3, false, FSM_GATE_APPROVAL,
     FSM_NO_STATE},
    {LIVE, WATCHED, "post_resume_watch", "the database still matches the exchange after the resume",
     scn_step_post_resume_watch, NULL, scn_plan_post_resume_watch, scn_cancel, SCN_WATCH_TIMEOUT_MS, 1, true,
     FSM_GATE_NONE, WATCH_FAILED},
    {WATCH_FAILED, HALTED_AFTER_WATCH, "halt_after_watch", "trading is halted again: the post-resume watch failed",
     scn_step_halt_after_watch, NULL, scn_plan_halt_trading, NULL, 30000, 10, true, FSM_GATE_NONE, FSM_NO_STATE},
};

static const FsmTable ac_table = {"app_crash", ac_states, N_STATES, ac_rows,
                                  (int)(sizeof(ac_rows) / sizeof(ac_rows[0])), NULL, 0};

static bool ac_may_resume(const ScnRun *run)
{
    return scn_may_resume_in(run, RECONCILED, SHADOW);
}

/* The kill switch and the restarts. */
static void ac_report_extras(const ScnRun *run, json_t *rep)
{
    const json_t *k = json_object_get(run->ctx, "kill_switch");
    const json_t *r = json_object_get(run->ctx, "restart");
    json_object_set_new(rep, "app_crash", json_pack("{s:o,s:o}", "kill_switch", k ? json_deep_copy(k) : json_null(),
                                                    "restart", r ? json_deep_copy(r) : json_null()));
}

static const char *const ac_handles[] = {INCIDENT_APP_CRASH, NULL};

const ScenarioDef scenario_app_crash = {
    .name = "app_crash",
    .short_name = "appcrash",
    .summary = "halt (out of band when the platform cannot answer), restart the platform in shadow, reconcile, resume",
    .table = &ac_table,
    .handles = ac_handles,
    .live_step = "resume_live",
    .may_resume = ac_may_resume,
    .restore_point_ms = NULL, /* nothing restored: the RPO is the report's null */
    .report_extras = ac_report_extras,
    .config = &app_crash_config_section,
};
