/*
 * venue_cmd: the venue's control commands: halt, resume (with the paged --force override),
 * trading, and emergency_close (halt, confirmed, then the platform's close_all); venue_check is in
 * venue_read.c. Also the venue's metrics (held halted, the platform's mode, halt attempts).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/control.h"
#include "core/core.h"
#include "err.h"
#include "cap/venue/venue_internal.h"

/* ---- control commands ---- */

static void venue_reply_done(int result, const char *message, void *data)
{
    CtlCall *call = data;
    if (result < 0)
        control_reply_error(call, result, "%s", message);
    else
        control_reply_ok(call, json_pack("{s:s}", "mode", message));
}

static void venue_cmd_halt(CtlCall *call, const json_t *args, void *data)
{
    Venue *v = data;
    const char *reason = json_string_value(json_object_get(args, "reason"));
    char full[512];

    if (!reason || !reason[0]) {
        control_reply_error(call, DR_EBADARG, "halt needs a reason (drctl halt --reason TEXT)");
        return;
    }
    snprintf(full, sizeof(full), "operator (uid %u): %s", (unsigned)control_call_peer(call)->uid, reason);
    venue_halt(v, full, NULL, venue_reply_done, call);
}

static void venue_cmd_resume(CtlCall *call, const json_t *args, void *data)
{
    bool force = json_is_true(json_object_get(args, "force"));
    const char *reason = json_string_value(json_object_get(args, "reason"));
    char full[512];

    if (force && (!reason || !reason[0])) {
        control_reply_error(call, DR_EBADARG, "resume --force needs --reason TEXT (it is recorded and paged)");
        return;
    }
    snprintf(full, sizeof(full), "operator (uid %u): %s", (unsigned)control_call_peer(call)->uid, reason ? reason : "");
    venue_resume_opts(data, json_is_true(json_object_get(args, "shadow")), force, full, venue_reply_done, call);
}

/* emergency-close: halt (fail closed, confirmed), then have the platform close every position. */
typedef struct VenueClose {
    Venue *v;
    CtlCall *call;
    char reason[400];
} VenueClose;

static void venue_on_closed_all(int result, const json_t *answer, const char *text, const char *message, void *data)
{
    VenueClose *vc = data;
    (void)text;
    if (result < 0) {
        events_emit(vc->v->core->events, SEV_CRITICAL, "venue.close_all", NULL, false, NULL,
                    "emergency close FAILED (trading stays halted): %s", message);
        control_reply_error(vc->call, result, "trading is halted, but closing the positions failed: %s", message);
    } else {
        events_emit(vc->v->core->events, SEV_CRITICAL, "venue.close_all", NULL, false, answer,
                    "emergency close: the platform closed all positions (%s)", vc->reason);
        control_reply_ok(vc->call, json_pack("{s:s,s:O?}", "mode", "halted", "answer", answer));
    }
    free(vc);
}

static void venue_close_after_halt(int result, const char *message, void *data)
{
    VenueClose *vc = data;
    if (result < 0) {
        control_reply_error(vc->call, result, "not closing positions: the halt is not confirmed: %s", message);
        free(vc);
        return;
    }
    int r = venue_action(vc->v, VENUE_CLOSE_ALL, NULL, venue_on_closed_all, vc);
    if (r < 0) {
        control_reply_error(vc->call, r, "trading is halted, but the close_all action cannot run: %s",
                            r == -ENOTSUP ? "no 'close_all' action is configured" : err_str(r));
        free(vc);
    }
}

static void venue_cmd_emergency_close(CtlCall *call, const json_t *args, void *data)
{
    Venue *v = data;
    const char *reason = json_string_value(json_object_get(args, "reason"));
    VenueClose *vc;

    if (!reason || !reason[0]) {
        control_reply_error(call, DR_EBADARG, "emergency-close needs a reason (drctl emergency-close --reason TEXT)");
        return;
    }
    if (!venue_enabled(v) || venue__cfg(v)->actions[VENUE_CLOSE_ALL].kind == VENUE_ACTION_NONE) {
        control_reply_error(call, -ENOTSUP, "no 'venue.close_all' action is configured");
        return;
    }
    vc = calloc(1, sizeof(*vc));
    if (!vc) {
        control_reply_error(call, -ENOMEM, "out of memory");
        return;
    }
    vc->v = v;
    vc->call = call;
    snprintf(vc->reason, sizeof(vc->reason), "emergency close by operator (uid %u): %s",
             (unsigned)control_call_peer(call)->uid, reason);
    venue_halt(v, vc->reason, NULL, venue_close_after_halt, vc);
}


static void venue_cmd_trading(CtlCall *call, const json_t *args, void *data)
{
    (void)args;
    control_reply_ok(call, venue_status_json(data));
}

/* ---- metrics ---- */

static void venue_collect(MetricsWriter *w, void *data)
{
    const Venue *v = data;
    static const VenueMode modes[] = {VENUE_MODE_UNKNOWN, VENUE_MODE_HALTED, VENUE_MODE_SHADOW, VENUE_MODE_LIVE};

    if (!venue_enabled(v))
        return;
    metrics_family(w, "drsupervisor_trading_halted", METRIC_GAUGE,
                   "1 while the daemon holds trading halted (persisted intent), else 0");
    metrics_value(w, "drsupervisor_trading_halted", v->halted);
    metrics_family(w, "drsupervisor_trading_halt_pending", METRIC_GAUGE,
                   "1 while a halt is sent but not yet confirmed by the platform's status");
    metrics_value(w, "drsupervisor_trading_halt_pending", venue_sm_halt_pending(&v->sm));
    metrics_family(w, "drsupervisor_trading_mode", METRIC_GAUGE, "the platform's last reported mode (1 for it)");
    for (size_t i = 0; i < sizeof(modes) / sizeof(modes[0]); i++) {
        const char *const l[][2] = {{"mode", venue_mode_name(modes[i])}};
        metrics_sample(w, "drsupervisor_trading_mode", l, 1, v->mode == modes[i]);
    }
    metrics_family(w, "drsupervisor_trading_mode_reported_timestamp_seconds", METRIC_GAUGE,
                   "when the platform last reported its mode, Unix time (0: never)");
    metrics_value(w, "drsupervisor_trading_mode_reported_timestamp_seconds", (double)v->mode_ms / 1000.0);
    metrics_family(w, "drsupervisor_trading_halt_attempts", METRIC_GAUGE, "failed attempts of the current halt");
    metrics_value(w, "drsupervisor_trading_halt_attempts", v->attempts);
}

int venue__register_commands(Venue *v)
{
    CtlCommand cmds[] = {
        {"halt", true, venue_cmd_halt, v, "halt trading now (fail closed: persisted, confirmed, retried)"},
        {"resume", true, venue_cmd_resume, v, "resume trading (live, or shadow with shadow=true)"},
        {"trading", false, venue_cmd_trading, v, "the platform's trading mode and the halt state"},
        {"emergency_close", true, venue_cmd_emergency_close, v,
         "halt trading (confirmed), then have the platform close every position"},
    };
    int r = control_register(v->core->control, cmds, sizeof(cmds) / sizeof(cmds[0]));
    if (r == 0 && v->core->metrics)
        r = metrics_register(v->core->metrics, venue_collect, v);
    return r < 0 ? r : venue__register_check(v);
}
