/*
 * steps/resume: resume_shadow and resume_live, trading resumed through the venue's resume guard
 * (this run's own call is let through once its reconcile committed), shadow always before live;
 * and the probe that asks the platform whether live already took effect. Scenario steps.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cap/venue/venue.h"
#include "clock.h"
#include "err.h"
#include "scenario/steps/steps.h"

static void scn_on_resumed(int result, const char *message, void *data)
{
    ScnStep *st = data;
    st->run->resume_allowed = false;
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    if (result < 0) {
        scn_finish(st, result, "resume refused or not confirmed: %s", message ? message : err_str(result));
        return;
    }
    if (st->idx == 1 && st->run->caps->venue) {
        /* shadow re-established after a restart re-asserted the halt; now live */
        st->idx = 0;
        st->run->resume_allowed = true;
        venue_resume(st->run->caps->venue, false, scn_on_resumed, st);
        return;
    }
    scn_finish(st, 0, "the venue confirms '%s'", message ? message : "?");
}

static void scn_resume(FsmCall *call, void *ctx, FsmDone done, bool shadow)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    Venue *v = st->run->caps->venue;
    if (!v) {
        scn_finish(st, DR_ECANCELED, "the daemon is stopping");
        return;
    }
    /* Going live from a halt (the venue re-asserts a persisted halt at start) passes through
     * shadow again: shadow always precedes live. */
    if (!shadow && venue_halted(v) && venue_mode(v) != VENUE_MODE_SHADOW)
        st->idx = 1;
    st->run->resume_allowed = true; /* the guard lets exactly this call through */
    /* This step runs only after the run's reconcile committed (its journal says so), which is
     * the passing reconcile the venue asks for, even when a crash came before the venue's own
     * record of it reached halt.json. */
    venue_note_reconciled(v, clock_wall_ms());
    venue_resume(v, shadow || st->idx == 1, scn_on_resumed, st);
}

void scn_step_resume_shadow(FsmCall *call, void *ctx, FsmDone done)
{
    scn_resume(call, ctx, done, true);
}

void scn_step_resume_live(FsmCall *call, void *ctx, FsmDone done)
{
    scn_resume(call, ctx, done, false);
}

static void probe_live_status(int result, const json_t *answer, const char *text, const char *message, void *data)
{
    ScnStep *st = data;
    if (st->cancelled || fsm_call_cancelled(st->call) || result == DR_ECANCELED) {
        scn_cancelled(st);
        return;
    }
    if (result < 0) {
        scn_answer(st, FSM_PROBE_UNKNOWN, "status action failed: %s", message ? message : err_str(result));
        return;
    }
    VenueMode m = venue_parse_mode(&st->run->core->cfg->venue, answer, text);
    if (m == VENUE_MODE_LIVE)
        scn_answer(st, FSM_PROBE_YES, "the venue reports live");
    else if (m == VENUE_MODE_SHADOW || m == VENUE_MODE_HALTED)
        scn_answer(st, FSM_PROBE_NO, "the venue reports '%s'", venue_mode_name(m));
    else
        scn_answer(st, FSM_PROBE_UNKNOWN, "the venue's mode is unknown");
}

void scn_probe_resume_live(FsmCall *call, void *ctx, FsmProbeDone done)
{
    ScnStep *st = scn_step_new(call, ctx, NULL, done);
    if (!st)
        return;
    int r = st->run->caps->venue ? venue_action(st->run->caps->venue, VENUE_STATUS, NULL, probe_live_status, st) : DR_ECANCELED;
    if (r < 0)
        scn_answer(st, FSM_PROBE_UNKNOWN, "cannot ask the venue: %s", err_str(r));
}

static void plan_resume(FsmCall *call, void *ctx, FsmDone done, VenueActionId id)
{
    ScnRun *run = ctx;
    const ConfigVenueAction *a = &run->core->cfg->venue.actions[id];
    char msg[600];
    if (a->kind == VENUE_ACTION_HTTP)
        snprintf(msg, sizeof(msg), "would send %s %s and wait for the status action to confirm",
                 a->method ? a->method : "POST", a->url);
    else if (a->kind == VENUE_ACTION_COMMAND)
        snprintf(msg, sizeof(msg), "would run '%s' and wait for the status action to confirm", a->argv[0]);
    else
        snprintf(msg, sizeof(msg), "no '%s' action is configured: this step would fail", id == VENUE_SHADOW ? "shadow" : "resume");
    done(call, 0, msg);
}

void scn_plan_resume_shadow(FsmCall *call, void *ctx, FsmDone done)
{
    plan_resume(call, ctx, done, VENUE_SHADOW);
}

void scn_plan_resume_live(FsmCall *call, void *ctx, FsmDone done)
{
    plan_resume(call, ctx, done, VENUE_RESUME);
}


bool scn_may_resume_from(const ScnRun *run, int reconciled, int shadow)
{
    int s = fsm_run_state(run->fsm);
    return run->resume_allowed && (s == reconciled || s == shadow);
}
