/*
 * steps/halt: halt_trading, the first step of every recovery: the venue halts (persisted first,
 * fail closed) and the step ends only when the platform confirms it. A scenario step.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cap/venue/venue.h"
#include "err.h"
#include "scenario/steps/steps.h"

static void scn_on_halted(int result, const char *message, void *data)
{
    ScnStep *st = data;
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    if (result < 0)
        scn_finish(st, result, "the halt is not confirmed: %s", message ? message : err_str(result));
    else
        scn_finish(st, 0, "the venue confirms trading is halted");
}

void scn_step_halt_trading(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char reason[512];
    if (!st)
        return;
    if (!st->run->caps->venue) {
        scn_finish(st, DR_ECANCELED, "the daemon is stopping");
        return;
    }
    snprintf(reason, sizeof(reason), "scenario %s run %s: %s", st->run->def->name, st->run->id,
             st->run->reason ? st->run->reason : "-");
    venue_halt(st->run->caps->venue, reason, st->run->id, scn_on_halted, st);
}

void scn_plan_halt_trading(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    const ConfigVenueAction *a = &run->core->cfg->venue.actions[VENUE_HALT];
    char msg[600];
    if (!run->core->cfg->venue.enabled) {
        done(call, -ENOTSUP, "no venue is configured: the daemon could not halt trading");
        return;
    }
    if (a->kind == VENUE_ACTION_HTTP)
        snprintf(msg, sizeof(msg), "would send the halt: %s %s, then wait until the status action confirms 'halted'",
                 a->method ? a->method : "POST", a->url);
    else
        snprintf(msg, sizeof(msg), "would run the halt command '%s', then wait until the status action confirms 'halted'",
                 a->argv ? a->argv[0] : "?");
    done(call, 0, msg);
}

