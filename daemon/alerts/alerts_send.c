/*
 * alerts_send: delivery on one channel: the pump that decides what may be sent now (backoff,
 * Retry-After pause, token bucket, Slack grouping window, one PagerDuty transfer per dedup key),
 * building the request, and what happens to the deliveries when the channel answers; and the
 * dead-man heartbeat.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts/alerts_internal.h"
#include "backoff.h"
#include "cfgtree.h"
#include "clock.h"
#include "err.h"
#include "log.h"

struct AlertSend {
    AlertChanQ *q;
    AlertEntry **entries;
    size_t n;
    uint64_t http_id;
    uint64_t started_mono;
    AlertSend *next;
};

static void alerts_on_timer(uv_timer_t *t)
{
    alerts__pump(t->data);
}

static void alerts_wake(AlertChanQ *q, uint64_t wait_ms)
{
    uv_timer_start(&q->timer, alerts_on_timer, wait_ms ? wait_ms : 1, 0);
}

static void alerts_record(AlertChanQ *q, const AlertSend *s, bool ok, long status, const char *error)
{
    AlertDelivery *dl = &q->recent[q->recent_pos];
    Alerts *a = q->a;

    memset(dl, 0, sizeof(*dl));
    dl->ts_ms = clock_wall_ms();
    dl->ok = ok;
    dl->http_status = status;
    dl->n_alerts = (unsigned)s->n;
    dl->first_seq = s->entries[0]->m.seq;
    dl->latency_ms = (double)(uv_now(a->core->loop) - s->started_mono);
    if (s->n == 1)
        snprintf(dl->what, sizeof(dl->what), "%s%.180s", s->entries[0]->m.resolved ? "resolve: " : "",
                 s->entries[0]->m.summary);
    else
        snprintf(dl->what, sizeof(dl->what), "%zu alerts grouped into one message", s->n);
    snprintf(dl->error, sizeof(dl->error), "%s", error ? error : "");
    q->recent_pos = (q->recent_pos + 1) % ALERTS_RECENT;
    if (q->n_recent < ALERTS_RECENT)
        q->n_recent++;

}

/*
 * The "alerts" status component: down while any configured channel is broken (its last answer
 * was a refusal, or it failed twice in a row), with that channel's last error; up otherwise.
 */
static void alerts_update_health(Alerts *a, double latency_ms)
{
    Component *c = status_component(a->core->status, "alerts");
    char msg[400] = "";

    if (!c)
        return;
    for (unsigned ch = 0; ch < ALERT_CH_COUNT && !msg[0]; ch++) {
        const AlertChanQ *q = &a->q[ch];
        if (!alerts__configured(a, q->ch) || q->n_recent == 0 || (!q->refused && q->fail_streak < 2))
            continue;
        const AlertDelivery *dl = &q->recent[(q->recent_pos + ALERTS_RECENT - 1) % ALERTS_RECENT];
        snprintf(msg, sizeof(msg), "%s: %s%s", alertfmt_channel_name(q->ch),
                 q->refused ? "refused (dead-lettered, see drctl alerts): " : "failing: ",
                 dl->error[0] ? dl->error : "failed");
    }
    status_observe(c, msg[0] == '\0', latency_ms, msg[0] ? msg : NULL, NULL, 1);
}

static void alerts_send_free(AlertSend *s)
{
    free(s->entries);
    free(s);
}

static void alerts_send_unlink(AlertChanQ *q, AlertSend *s)
{
    for (AlertSend **pp = &q->sends; *pp; pp = &(*pp)->next) {
        if (*pp == s) {
            *pp = s->next;
            break;
        }
    }
    q->in_flight--;
}

/* A retryable failure: pause the channel, count the attempt, give up on entries out of attempts. */
static void alerts_retry_later(AlertChanQ *q, AlertSend *s, uint64_t delay_ms, const char *why)
{
    Alerts *a = q->a;
    char d[40];

    uint64_t now = uv_now(a->core->loop);
    /* Transfers that were already under way when the channel last failed say nothing new. */
    if (q->fail_streak == 0 || s->started_mono >= q->last_fail_mono)
        q->fail_streak++;
    q->last_fail_mono = now;
    q->failed_attempts++;
    if (now + delay_ms > q->resume_mono)
        q->resume_mono = now + delay_ms;
    free(q->pause_reason);
    q->pause_reason = strdup(why);
    cfg_format_duration(delay_ms, d, sizeof(d));
    log_warning("alerts", "delivery to %s failed (%s); %zu alert%s kept in the outbox, next attempt in %s",
                alertfmt_channel_name(q->ch), why, s->n, s->n == 1 ? "" : "s", d);
    for (size_t i = 0; i < s->n; i++) {
        AlertEntry *e = s->entries[i];
        e->state = ENTRY_READY;
        e->attempts++;
        free(e->last_error);
        e->last_error = strdup(why);
        if (e->attempts >= a->max_attempts) {
            char reason[400];
            snprintf(reason, sizeof(reason), "gave up after %u attempts, last: %s", e->attempts, why);
            alerts__bury(q, e, reason);
        }
    }
}

static void alerts_on_sent(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    AlertSend *s = data;
    AlertChanQ *q = s->q;
    Alerts *a = q->a;
    char why[300];

    alerts_send_unlink(q, s);
    if (err == DR_ECANCELED || a->closing) {
        for (size_t i = 0; i < s->n; i++)
            s->entries[i]->state = ENTRY_READY;
        alerts_send_free(s);
        return;
    }
    AlertOutcome out = alertfmt_classify(q->ch, err, resp->status, resp->body);
    if (err != 0) {
        snprintf(why, sizeof(why), "%s", errmsg && errmsg[0] ? errmsg : err_str(err));
    } else {
        char body[120];
        size_t k = 0;
        for (size_t i = 0; i < resp->body_len && k + 1 < sizeof(body); i++)
            body[k++] = resp->body[i] >= 32 && resp->body[i] < 127 ? resp->body[i] : ' ';
        body[k] = '\0';
        snprintf(why, sizeof(why), "HTTP %ld%s%s", resp->status, k ? ": " : "", body);
    }
    alerts_record(q, s, out == ALERTFMT_ACCEPTED, resp->status, out == ALERTFMT_ACCEPTED ? NULL : why);

    if (out == ALERTFMT_ACCEPTED) {
        q->fail_streak = 0;
        q->refused = false;
        q->delivered += s->n;
        free(q->pause_reason);
        q->pause_reason = NULL;
        for (size_t i = 0; i < s->n; i++) {
            log_info("alerts", "delivered alert %llu to %s (%s%s)", (unsigned long long)s->entries[i]->m.seq,
                     alertfmt_channel_name(q->ch), s->entries[i]->m.resolved ? "resolve, " : "",
                     s->entries[i]->m.dedup_key);
            alerts__remove_entry(q, s->entries[i]);
        }
    } else if (out == ALERTFMT_PERMANENT) {
        char reason[400];
        q->refused = true;
        snprintf(reason, sizeof(reason), "%s refused it (%s): a configuration or payload error, not retried",
                 alertfmt_channel_name(q->ch), why);
        for (size_t i = 0; i < s->n; i++)
            alerts__bury(q, s->entries[i], reason);
    } else {
        uint64_t delay = 0;
        const char *ra = err == 0 && resp->status == 429 ? httpc_response_header(resp, "Retry-After") : NULL;
        if (ra && alertfmt_retry_after_ms(ra, clock_wall_ms(), &delay) == 0)
            ;
        else if (err == 0 && resp->status == 429 && q->ch == ALERT_CH_SLACK)
            delay = a->slack_ra_ms;
        else
            delay = backoff_jitter_ms(a->retry_base_ms, a->retry_cap_ms, q->fail_streak + 1, alerts__rand(a));
        alerts_retry_later(q, s, delay, why);
    }
    alerts_update_health(a, (double)(uv_now(a->core->loop) - s->started_mono));
    alerts_send_free(s);
    alerts__pump(q);
}

static const char *alerts_url(const Alerts *a, AlertChannel ch)
{
    return ch == ALERT_CH_PAGERDUTY ? a->pd_url : ch == ALERT_CH_SLACK ? a->slack_url : a->webhook_url;
}

static void alerts_send(AlertChanQ *q, AlertEntry **batch, size_t n)
{
    Alerts *a = q->a;
    AlertCtx ctx = {.source = a->source, .cluster = a->cluster};
    AlertSend *s = calloc(1, sizeof(*s));
    json_t *body = NULL;
    char *text = NULL;
    char sig[128] = "", stamp[64] = "", deliv[64] = "";
    const char *headers[5];
    size_t nh = 0;

    if (!s || !(s->entries = malloc(n * sizeof(*s->entries)))) {
        free(s);
        alerts_wake(q, 1000);
        return;
    }
    memcpy(s->entries, batch, n * sizeof(*batch));
    s->n = n;
    s->q = q;
    s->started_mono = uv_now(a->core->loop);
    headers[nh++] = "Content-Type: application/json";
    if (q->ch == ALERT_CH_PAGERDUTY) {
        body = alertfmt_pagerduty(&batch[0]->m, &ctx, a->pd_key);
    } else if (q->ch == ALERT_CH_SLACK) {
        const AlertMsg *msgs[ALERTS_SLACK_BATCH];
        for (size_t i = 0; i < n; i++)
            msgs[i] = &batch[i]->m;
        body = alertfmt_slack(msgs, n, &ctx);
    } else {
        int64_t now = clock_wall_ms();
        body = alertfmt_webhook(&batch[0]->m, &ctx, now);
        snprintf(stamp, sizeof(stamp), "X-Drsup-Timestamp: %lld", (long long)(now / 1000));
        snprintf(deliv, sizeof(deliv), "X-Drsup-Delivery: %llu", (unsigned long long)batch[0]->m.seq);
        headers[nh++] = stamp;
        headers[nh++] = deliv;
    }
    if (body)
        text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    if (text && q->ch == ALERT_CH_WEBHOOK && a->hmac) {
        char hex[65];
        if (alertfmt_hmac_hex(a->hmac, a->hmac_len, text, strlen(text), hex) == 0) {
            snprintf(sig, sizeof(sig), "X-Drsup-Signature: sha256=%s", hex);
            headers[nh++] = sig;
        }
    }
    if (!text) {
        alerts_send_free(s);
        alerts_wake(q, 1000);
        return;
    }
    HttpRequest req = {.method = "POST",
                       .url = alerts_url(a, q->ch),
                       .headers = headers,
                       .n_headers = nh,
                       .body = text,
                       .body_len = strlen(text),
                       .timeout_ms = a->timeout_ms,
                       .connect_timeout_ms = a->timeout_ms,
                       .max_response = 64 * 1024};
    for (size_t i = 0; i < n; i++)
        batch[i]->state = ENTRY_SENDING;
    s->next = q->sends;
    q->sends = s;
    q->in_flight++;
    int r = httpc_request(a->core->http, &req, alerts_on_sent, s, &s->http_id);
    explicit_bzero(text, strlen(text)); /* PagerDuty bodies carry the routing key */
    free(text);
    if (r < 0) {
        char why[200];
        alerts_send_unlink(q, s);
        snprintf(why, sizeof(why), "cannot start the request: %s", err_str(r));
        alerts_record(q, s, false, 0, why);
        if (r == -EINVAL) {
            q->refused = true;
            for (size_t i = 0; i < n; i++)
                alerts__bury(q, batch[i], why);
        } else {
            alerts_retry_later(q, s, backoff_jitter_ms(a->retry_base_ms, a->retry_cap_ms, q->fail_streak + 1,
                                                         alerts__rand(a)),
                               why);
        }
        alerts_update_health(a, 0);
        alerts_send_free(s);
        alerts_wake(q, 1);
    }
}

static bool alerts_key_in_flight(const AlertChanQ *q, const char *key)
{
    for (const AlertEntry *e = q->head; e; e = e->next)
        if (e->state == ENTRY_SENDING && !strcmp(e->m.dedup_key, key))
            return true;
    return false;
}

/* Send what may be sent now; otherwise arm the channel's timer for when it may. */
void alerts__pump(AlertChanQ *q)
{
    Alerts *a = q->a;
    unsigned max_in_flight = q->ch == ALERT_CH_PAGERDUTY ? 4 : 1;

    if (a->closing || !a->loaded || !a->core->http || !alerts__configured(a, q->ch))
        return;
    for (;;) {
        uint64_t now = uv_now(a->core->loop);
        AlertEntry *batch[ALERTS_SLACK_BATCH];
        size_t nb = 0;

        if (q->in_flight >= max_in_flight)
            return;
        if (now < q->resume_mono) {
            alerts_wake(q, q->resume_mono - now);
            return;
        }
        if (q->ch == ALERT_CH_SLACK) {
            for (AlertEntry *e = q->head; e && nb < ALERTS_SLACK_BATCH; e = e->next)
                if (e->state == ENTRY_READY)
                    batch[nb++] = e;
            if (nb == 0)
                return;
            if (now < batch[0]->enq_mono + a->group_ms) {
                alerts_wake(q, batch[0]->enq_mono + a->group_ms - now);
                return;
            }
        } else {
            for (AlertEntry *e = q->head; e; e = e->next) {
                if (q->ch == ALERT_CH_WEBHOOK && e->state == ENTRY_WRITING)
                    break; /* keep the webhook's order */
                if (e->state != ENTRY_READY)
                    continue;
                if (q->ch == ALERT_CH_PAGERDUTY && alerts_key_in_flight(q, e->m.dedup_key))
                    continue;
                batch[nb++] = e;
                break;
            }
            if (nb == 0)
                return;
        }
        uint64_t wait = alertfmt_bucket_take(&q->bucket, now);
        if (wait) {
            alerts_wake(q, wait);
            return;
        }
        alerts_send(q, batch, nb);
    }
}


void alerts__cancel_sends(AlertChanQ *q)
{
    Alerts *a = q->a;
    while (q->sends) {
        AlertSend *s = q->sends;
        if (!a->core->http || httpc_cancel(a->core->http, s->http_id) < 0) {
            alerts_send_unlink(q, s);
            alerts_send_free(s);
        }
    }
}

/* ---- heartbeat ---- */

static void alerts_on_heartbeat_done(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    Alerts *a = data;
    bool ok = err == 0 && resp->status >= 200 && resp->status < 300;
    char why[300];

    a->hb_busy = false;
    a->hb_id = 0;
    if (err == DR_ECANCELED || a->closing)
        return;
    if (ok) {
        if (a->hb_error)
            log_notice("alerts", "heartbeat delivered again");
        free(a->hb_error);
        a->hb_error = NULL;
        a->hb_ok_count++;
        a->hb_last_ok_ms = clock_wall_ms();
        return;
    }
    if (err)
        snprintf(why, sizeof(why), "%s", errmsg && errmsg[0] ? errmsg : err_str(err));
    else
        snprintf(why, sizeof(why), "HTTP %ld", resp->status);
    if (!a->hb_error)
        log_warning("alerts", "heartbeat failed: %s", why);
    free(a->hb_error);
    a->hb_error = strdup(why);
    a->hb_fail_count++;
}

void alerts__heartbeat_tick(uv_timer_t *t)
{
    Alerts *a = t->data;
    HttpRequest req = {.method = "GET",
                       .url = a->hb_url,
                       .timeout_ms = a->timeout_ms < a->hb_interval_ms ? a->timeout_ms : a->hb_interval_ms,
                       .max_response = 16 * 1024};

    if (a->hb_busy || !a->hb_url || !a->core->http || a->closing)
        return;
    a->hb_last_try_ms = clock_wall_ms();
    int r = httpc_request(a->core->http, &req, alerts_on_heartbeat_done, a, &a->hb_id);
    if (r < 0) {
        free(a->hb_error);
        a->hb_error = strdup(err_str(r));
        a->hb_fail_count++;
        return;
    }
    a->hb_busy = true;
}
