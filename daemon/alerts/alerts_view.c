/*
 * alerts_view: the operator's side of alerts: `alerts` (open conditions, the outbox with each
 * delivery's state, dead letters, the last deliveries per channel, the heartbeat), `alert.test`
 * (one or many test events, end to end through the outbox, to one channel or all) and
 * `alerts.resolve` (close an open condition by hand); the alert metrics (open conditions by
 * severity, deliveries, failed attempts, dead letters and the outbox per channel).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts/alerts_internal.h"
#include "err.h"

static const char *alerts_entry_state(const AlertEntry *e)
{
    switch (e->state) {
    case ENTRY_WRITING:
        return "writing";
    case ENTRY_READY:
        return e->attempts ? "retrying" : "pending";
    case ENTRY_SENDING:
        return "sending";
    case ENTRY_REMOVING:
        return "delivered";
    default:
        return "unknown";
    }
}

static json_t *alerts_channel_json(const Alerts *a, const AlertChanQ *q)
{
    uint64_t now = uv_now(a->core->loop);
    json_t *recent = json_array();
    json_t *o;

    for (size_t i = 0; i < q->n_recent; i++) {
        const AlertDelivery *dl = &q->recent[(q->recent_pos + ALERTS_RECENT - 1 - i) % ALERTS_RECENT];
        json_array_append_new(recent, json_pack("{s:I,s:b,s:i,s:i,s:I,s:f,s:s,s:s?}", "ts_ms", (json_int_t)dl->ts_ms,
                                                "ok", dl->ok, "http_status", (int)dl->http_status, "alerts",
                                                (int)dl->n_alerts, "first_seq", (json_int_t)dl->first_seq,
                                                "latency_ms", dl->latency_ms, "what", dl->what, "error",
                                                dl->error[0] ? dl->error : NULL));
    }
    o = json_pack("{s:b,s:I,s:i,s:i,s:I,s:I,s:I,s:o}", "configured", alerts__configured(a, q->ch), "queued",
                  (json_int_t)q->n, "in_flight", (int)q->in_flight, "failing", (int)q->fail_streak, "delivered",
                  (json_int_t)q->delivered, "dead_letters", (json_int_t)q->dead_total, "failed_attempts",
                  (json_int_t)q->failed_attempts, "recent", recent);
    if (o && q->resume_mono > now) {
        json_object_set_new(o, "paused_until_ms", json_integer((json_int_t)alerts__wall_of(a, q->resume_mono)));
        if (q->pause_reason)
            json_object_set_new(o, "pause_reason", json_string(q->pause_reason));
    }
    return o;
}

static void alerts_cmd_view(CtlCall *call, const json_t *args, void *data)
{
    Alerts *a = data;
    uint64_t now = uv_now(a->core->loop);
    json_t *res, *chans = json_object(), *conds = json_array(), *outbox = json_array(), *dead = json_array();

    (void)args;
    for (unsigned ch = 0; ch < ALERT_CH_COUNT; ch++) {
        const AlertChanQ *q = &a->q[ch];
        json_object_set_new(chans, alertfmt_channel_name((AlertChannel)ch), alerts_channel_json(a, q));
        for (const AlertEntry *e = q->head; e; e = e->next) {
            json_t *o = json_pack("{s:I,s:s,s:s,s:s,s:s,s:s?,s:s,s:I,s:i,s:I,s:s?}", "seq", (json_int_t)e->m.seq,
                                  "channel", alertfmt_channel_name(e->m.channel), "state", alerts_entry_state(e),
                                  "action", e->m.resolved ? "resolve" : "trigger", "dedup_key", e->m.dedup_key,
                                  "condition", e->m.condition, "summary", e->m.summary, "occurrences",
                                  (json_int_t)e->m.occurrences, "attempts", (int)e->attempts, "created_ms",
                                  (json_int_t)e->created_ms, "last_error", e->last_error);
            if (o && e->state == ENTRY_READY) {
                uint64_t next = q->resume_mono > now ? q->resume_mono : now;
                json_object_set_new(o, "next_attempt_ms", json_integer((json_int_t)alerts__wall_of(a, next)));
            }
            if (o)
                json_object_set_new(o, "severity", json_string(events_severity_name(e->m.severity)));
            json_array_append_new(outbox, o);
        }
        for (size_t i = 0; i < q->n_dead; i++) {
            const AlertDead *dd = &q->dead[(q->dead_pos + i) % ALERTS_MAX_DEAD];
            json_array_append_new(dead, json_pack("{s:I,s:s,s:s,s:s,s:s,s:s,s:I}", "seq", (json_int_t)dd->m.seq,
                                                  "channel", alertfmt_channel_name(dd->m.channel), "action",
                                                  dd->m.resolved ? "resolve" : "trigger", "dedup_key",
                                                  dd->m.dedup_key, "summary", dd->m.summary, "reason",
                                                  dd->reason ? dd->reason : "", "ts_ms", (json_int_t)dd->ts_ms));
        }
    }
    for (const AlertCondition *c = a->conds; c; c = c->next) {
        json_t *cl = json_array();
        for (unsigned ch = 0; ch < ALERT_CH_COUNT; ch++)
            if (c->channels & (1u << ch))
                json_array_append_new(cl, json_string(alertfmt_channel_name((AlertChannel)ch)));
        json_array_append_new(conds, json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:o}", "condition", c->key, "kind",
                                               c->kind, "severity", events_severity_name(c->severity), "summary",
                                               c->summary, "opened_ms", (json_int_t)c->opened_ms, "last_ms",
                                               (json_int_t)c->last_ms, "occurrences", (json_int_t)c->occurrences,
                                               "suppressed", (json_int_t)c->suppressed, "channels", cl));
    }
    json_t *hb = json_pack("{s:b,s:I,s:I,s:I,s:I,s:I,s:s?}", "configured", a->enabled && a->hb_url != NULL,
                           "interval_ms", (json_int_t)a->hb_interval_ms, "last_ok_ms", (json_int_t)a->hb_last_ok_ms,
                           "last_attempt_ms", (json_int_t)a->hb_last_try_ms, "ok", (json_int_t)a->hb_ok_count,
                           "failures", (json_int_t)a->hb_fail_count, "last_error", a->hb_error);
    res = json_pack("{s:b,s:b,s:s?,s:o,s:o,s:o,s:o,s:o,s:I,s:I}", "enabled", a->enabled, "outbox_loaded", a->loaded,
                    "source", a->source, "channels", chans, "conditions", conds, "outbox", outbox, "dead_letters",
                    dead, "heartbeat", hb, "follower_skipped", (json_int_t)a->follower_skipped, "held",
                    (json_int_t)a->hold.n);
    control_reply_ok(call, res);
}

static void alerts_cmd_test(CtlCall *call, const json_t *args, void *data)
{
    Alerts *a = data;
    const char *chname = json_string_value(json_object_get(args, "channel"));
    const char *cond = json_string_value(json_object_get(args, "condition"));
    const char *sevname = json_string_value(json_object_get(args, "severity"));
    const char *text = json_string_value(json_object_get(args, "summary"));
    const json_t *jcount = json_object_get(args, "count");
    bool resolve = json_is_true(json_object_get(args, "resolve"));
    json_int_t count = jcount ? json_integer_value(jcount) : 1;
    Severity sev = SEV_ERROR;
    unsigned mask = 0;
    AlertChannel ch;

    if (!a->enabled) {
        control_reply_error(call, DR_ESTATE, "alerts are not configured (no 'alerts' section)");
        return;
    }
    if (chname) {
        if (alertfmt_channel_parse(chname, &ch) < 0) {
            control_reply_error(call, DR_EBADARG, "unknown channel '%s' (pagerduty, slack, webhook)", chname);
            return;
        }
        if (!alerts__configured(a, ch)) {
            control_reply_error(call, DR_EBADARG, "channel '%s' is not configured", chname);
            return;
        }
        mask = 1u << ch;
    } else {
        for (unsigned c = 0; c < ALERT_CH_COUNT; c++)
            if (alerts__configured(a, (AlertChannel)c))
                mask |= 1u << c;
    }
    if (!mask) {
        control_reply_error(call, DR_ESTATE, "no alert channel is configured");
        return;
    }
    if (sevname && events_severity_parse(sevname, &sev) < 0) {
        control_reply_error(call, DR_EBADARG, "severity must be info, warning, error or critical");
        return;
    }
    if ((jcount && !json_is_integer(jcount)) || count < 1 || count > 10000) {
        control_reply_error(call, DR_EBADARG, "count must be between 1 and 10000");
        return;
    }
    if (cond && (!cond[0] || strlen(cond) > 200)) {
        control_reply_error(call, DR_EBADARG, "condition must be 1 to 200 characters");
        return;
    }
    if (resolve && !cond) {
        control_reply_error(call, DR_EBADARG, "--resolve needs --condition");
        return;
    }
    const PeerCred *peer = control_call_peer(call);
    json_t *det = json_pack("{s:b,s:s,s:s,s:i}", "test", 1, "action",
                            "nothing: this is a test alert sent by an operator (drctl alert test)", "drctl",
                            "drctl alerts", "requested_by_uid", peer ? (int)peer->uid : -1);
    a->forcing = true;
    a->force_mask = mask;
    if (resolve) {
        events_emit(a->core->events, sev, "alert.test", cond, true, det, "%s", text ? text : "test condition resolved");
        count = 1;
    } else {
        for (json_int_t i = 0; i < count; i++) {
            if (text)
                events_emit(a->core->events, sev, "alert.test", cond, false, det, "%s", text);
            else if (count > 1)
                events_emit(a->core->events, sev, "alert.test", cond, false, det,
                            "test alert %lld of %lld from drctl: alert delivery works", (long long)(i + 1),
                            (long long)count);
            else
                events_emit(a->core->events, sev, "alert.test", cond, false, det,
                            "test alert from drctl: alert delivery works");
        }
    }
    a->forcing = false;
    a->force_mask = 0;
    json_decref(det);
    json_t *chans = json_array();
    for (unsigned c = 0; c < ALERT_CH_COUNT; c++)
        if (mask & (1u << c))
            json_array_append_new(chans, json_string(alertfmt_channel_name((AlertChannel)c)));
    control_reply_ok(call, json_pack("{s:I,s:o,s:s?,s:b}", "events", (json_int_t)count, "channels", chans,
                                     "condition", cond, "resolve", resolve));
}

/*
 * `alerts.resolve`: an operator closes an open condition by hand (its cause is gone, but nothing
 * will say so: a failed run's scenario condition, a corruption an operator repaired). The
 * resolution goes out like any other: to exactly the channels that were told about it, after
 * their pending triggers. Who and why are in the event (logged once) and its details.
 */
static void alerts_cmd_resolve(CtlCall *call, const json_t *args, void *data)
{
    Alerts *a = data;
    const char *key = json_string_value(json_object_get(args, "key"));
    const char *reason = json_string_value(json_object_get(args, "reason"));

    if (!a->enabled) {
        control_reply_error(call, DR_ESTATE, "alerts are not configured (no 'alerts' section): no condition is open");
        return;
    }
    if (!key || !key[0]) {
        control_reply_error(call, DR_EBADARG, "the condition key is missing (drctl alerts lists the open ones)");
        return;
    }
    if (!reason || !reason[0]) {
        control_reply_error(call, DR_EBADARG, "--reason is required: say why the condition is over");
        return;
    }
    if (strlen(reason) > 500) {
        control_reply_error(call, DR_EBADARG, "the reason must be at most 500 characters");
        return;
    }
    AlertCondition *c = alerts__cond_find(a, key);
    if (!c) {
        control_reply_error(call, -ENOENT, "no open condition '%.200s' (drctl alerts lists the open ones)", key);
        return;
    }
    /* The condition is freed while the resolution is routed: keep what the reply needs. */
    char kind[128];
    json_t *chans = json_array();
    snprintf(kind, sizeof(kind), "%s", c->kind);
    for (unsigned ch = 0; ch < ALERT_CH_COUNT; ch++)
        if ((c->channels & (1u << ch)) && alerts__configured(a, (AlertChannel)ch))
            json_array_append_new(chans, json_string(alertfmt_channel_name((AlertChannel)ch)));
    const PeerCred *peer = control_call_peer(call);
    long uid = peer ? (long)peer->uid : -1;
    json_t *det = json_pack("{s:s,s:s,s:i,s:s}", "resolved_by", "operator", "reason", reason, "requested_by_uid",
                            (int)uid, "action", "nothing: an operator closed the condition by hand (drctl alerts resolve)");
    /* To exactly the channels that heard of it, whatever the routes say now. */
    a->forcing = true;
    a->force_mask = c->channels;
    events_emit(a->core->events, SEV_INFO, kind, key, true, det, "resolved by an operator (uid %ld): %s", uid, reason);
    a->forcing = false;
    a->force_mask = 0;
    json_decref(det);
    control_reply_ok(call, json_pack("{s:s,s:s,s:s,s:o}", "condition", key, "kind", kind, "reason", reason,
                                     "channels", chans));
}

/* ---- metrics ---- */

static void alerts_collect(MetricsWriter *w, void *data)
{
    const Alerts *a = data;
    static const char *const sevs[] = {"info", "warning", "error", "critical"};
    double open[4] = {0};
    const char *const fams[][2] = {
        {"drsupervisor_alerts_delivered_total", "alert messages the channel accepted"},
        {"drsupervisor_alerts_failed_attempts_total", "delivery attempts that failed (retried)"},
        {"drsupervisor_alerts_dead_letters_total", "alert messages given up on after every retry"},
        {"drsupervisor_alerts_queued", "alert messages waiting in the outbox"},
    };

    for (const AlertCondition *c = a->conds; c; c = c->next)
        if ((unsigned)c->severity < 4)
            open[c->severity]++;
    metrics_family(w, "drsupervisor_alert_conditions_open", METRIC_GAUGE, "open alert conditions, by severity");
    for (int s = 0; s < 4; s++) {
        const char *const l[][2] = {{"severity", sevs[s]}};
        metrics_sample(w, "drsupervisor_alert_conditions_open", l, 1, open[s]);
    }
    for (size_t f = 0; f < sizeof(fams) / sizeof(fams[0]); f++) {
        metrics_family(w, fams[f][0], f < 3 ? METRIC_COUNTER : METRIC_GAUGE, fams[f][1]);
        for (unsigned ch = 0; ch < ALERT_CH_COUNT; ch++) {
            const AlertChanQ *q = &a->q[ch];
            const char *const l[][2] = {{"channel", alertfmt_channel_name((AlertChannel)ch)}};
            if (!alerts__configured(a, q->ch))
                continue;
            double v = f == 0 ? (double)q->delivered : f == 1 ? (double)q->failed_attempts
                       : f == 2 ? (double)q->dead_total : (double)q->n;
            metrics_sample(w, fams[f][0], l, 1, v);
        }
    }
}

/* Readiness (core/readiness.h): a channel is configured, and each one delivers. No heartbeat is
 * sent: a channel that has delivered nothing since the daemon started is a warning until a test
 * (drctl alert test) or a real alert goes through. */
static void alerts_readiness(ReadyWriter *w, void *data)
{
    const Alerts *a = data;
    size_t configured = 0;
    for (unsigned ch = 0; ch < ALERT_CH_COUNT; ch++) {
        const AlertChanQ *q = &a->q[ch];
        char check[64];
        if (!alerts__configured(a, q->ch))
            continue;
        configured++;
        snprintf(check, sizeof(check), "alerts.%s", alertfmt_channel_name((AlertChannel)ch));
        if (q->dead_total)
            readiness_add(w, check, READY_FAIL, "%llu alert(s) given up on since start (drctl alerts: dead letters)",
                          (unsigned long long)q->dead_total);
        else if (q->n && q->failed_attempts)
            readiness_add(w, check, READY_WARN, "%llu alert(s) waiting, %llu delivery attempt(s) failed",
                          (unsigned long long)q->n, (unsigned long long)q->failed_attempts);
        else if (!q->delivered)
            readiness_add(w, check, READY_WARN, "nothing delivered since the daemon started (drctl alert test)");
        else
            readiness_add(w, check, READY_PASS, "%llu alert(s) delivered since start, none given up on",
                          (unsigned long long)q->delivered);
    }
    if (!configured)
        readiness_add(w, "alerts.channels", READY_FAIL, "no alert channel is configured: nobody is paged");
}

int alerts__register_commands(Alerts *a)
{
    CtlCommand cmds[] = {
        {"alerts", false, alerts_cmd_view, a, "open conditions, the alert outbox, dead letters, last deliveries"},
        {"alert.test", true, alerts_cmd_test, a,
         "send test alerts end to end (args: channel, condition, count, severity, resolve, summary)"},
        {"alerts.resolve", true, alerts_cmd_resolve, a,
         "close an open condition by hand; the resolution goes to every channel told of it (args: key, reason)"},
    };
    int r = control_register(a->core->control, cmds, sizeof(cmds) / sizeof(cmds[0]));
    if (r == 0 && a->core->metrics)
        r = metrics_register(a->core->metrics, alerts_collect, a);
    if (r == 0 && a->core->readiness)
        r = readiness_register(a->core->readiness, alerts_readiness, a);
    return r;
}
