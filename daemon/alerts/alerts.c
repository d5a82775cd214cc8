/*
 * alerts: routing and the module's life cycle (see alerts.h); the files of the module:
 *   alerts.c         events -> conditions -> deliveries per channel (routes, repeat suppression,
 *                    events kept until the outbox is loaded), PagerDuty coalescing, configuration,
 *                    start and close;
 *   alerts_outbox.c  the queue entries and their files (write, remove, dead letters, load at start),
 *                    the open conditions' file;
 *   alerts_send.c    delivery on each channel (pump, backoff, token bucket, answers) and heartbeat;
 *   alerts_cond.c    open conditions; alerts_view.c: `drctl alerts` and `alert.test`.
 *
 * Life of one delivery: an event matches routes -> one AlertEntry per channel, appended to that
 * channel's queue -> its file is written on the thread pool (ENTRY_WRITING) -> ENTRY_READY ->
 * the channel's pump sends it when its backoff, token bucket and (Slack) grouping window allow
 * (ENTRY_SENDING) -> accepted: the file is removed on the thread pool, then the entry freed;
 * retryable failure: back to READY with the channel paused (exponential backoff with jitter, or
 * Retry-After); permanent failure or out of attempts: moved to the dead letters (file to
 * outbox/dead/). PagerDuty keeps only the newest state per dedup key among entries not yet sent;
 * Slack sends every ready entry as one message (grouped when more than one).
 */
#include "alerts/alerts.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alerts/alerts_internal.h"
#include "core/leader.h"
#include "cfgtree.h"
#include "clock.h"
#include "err.h"
#include "log.h"

/* A copy of an event that arrived before the outbox was loaded. */
typedef struct AlertEarly {
    Event ev;          /* strings and details owned */
    bool forced;
    unsigned force_mask;
} AlertEarly;

int64_t alerts__wall_of(const Alerts *a, uint64_t mono)
{
    uint64_t now = uv_now(a->core->loop);
    return clock_wall_ms() + (mono > now ? (int64_t)(mono - now) : -(int64_t)(now - mono));
}

bool alerts__configured(const Alerts *a, AlertChannel ch)
{
    if (!a->enabled)
        return false;
    switch (ch) {
    case ALERT_CH_PAGERDUTY:
        return a->pd_key && a->pd_url;
    case ALERT_CH_SLACK:
        return a->slack_url != NULL;
    case ALERT_CH_WEBHOOK:
        return a->webhook_url != NULL;
    default:
        return false;
    }
}

uint32_t alerts__rand(Alerts *a)
{
    uint32_t x = a->rng;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return a->rng = x ? x : 0x9e3779b9u;
}

/*
 * ---- PagerDuty coalescing ----
 * Repeats fold: of two queued entries for one dedup key that are neighbours (no other entry of
 * that key between them, in sequence order) and of the same action, only the newer is sent, with
 * the occurrences of both. A trigger and a resolve never fold: a trigger that was never delivered
 * goes out before its resolve, or nobody would have been paged for what the resolve closes.
 */
void alerts__coalesce_pd(AlertChanQ *q, AlertEntry *e)
{
    AlertEntry *prev = NULL, *next = NULL; /* the nearest older and newer live entries of the key */
    for (AlertEntry *o = q->head; o; o = o->next) {
        if (o == e || o->state == ENTRY_REMOVING || strcmp(o->m.dedup_key, e->m.dedup_key))
            continue;
        if (o->m.seq < e->m.seq && (!prev || o->m.seq > prev->m.seq))
            prev = o;
        if (o->m.seq > e->m.seq && (!next || o->m.seq < next->m.seq))
            next = o;
    }
    if (next && (next->state == ENTRY_READY || next->state == ENTRY_WRITING) && next->m.resolved == e->m.resolved) {
        if (!e->m.resolved)
            next->m.occurrences += e->m.occurrences;
        alerts__remove_entry(q, e);
        return;
    }
    if (prev && prev->state == ENTRY_READY && prev->m.resolved == e->m.resolved) {
        if (!e->m.resolved)
            e->m.occurrences += prev->m.occurrences;
        log_debug("alerts", "pagerduty: alert %llu folded into %llu (same dedup key and action)",
                  (unsigned long long)prev->m.seq, (unsigned long long)e->m.seq);
        alerts__remove_entry(q, prev);
    }
}

static AlertChanQ *alerts_q(Alerts *a, AlertChannel ch)
{
    return &a->q[ch];
}

/* ---- routing ---- */

static unsigned alerts_route_mask(const Alerts *a, Severity sev, const char *kind, const char *condition)
{
    unsigned mask = 0;
    for (size_t i = 0; i < a->n_routes; i++)
        if (alertfmt_route_matches(&a->routes[i], sev, kind, condition))
            mask |= a->routes[i].channels;
    return mask;
}

static void alerts_enqueue(Alerts *a, AlertChannel ch, const Event *ev, const char *key)
{
    AlertChanQ *q = alerts_q(a, ch);
    AlertEntry *e = calloc(1, sizeof(*e));

    if (!e) {
        log_error("alerts", "out of memory: alert for %s lost: %s", alertfmt_channel_name(ch), ev->summary);
        return;
    }
    e->m.channel = ch;
    e->m.severity = ev->severity;
    e->m.kind = strdup(ev->kind);
    e->m.condition = ev->condition ? strdup(ev->condition) : NULL;
    e->m.resolved = ev->resolved;
    e->m.summary = strdup(ev->summary);
    e->m.details = ev->details ? json_deep_copy(ev->details) : NULL;
    e->m.ts_ms = ev->ts_ms;
    e->m.dedup_key = strdup(key);
    e->m.occurrences = 1;
    e->created_ms = clock_wall_ms();
    e->enq_mono = uv_now(a->core->loop);
    if (!e->m.kind || !e->m.summary || !e->m.dedup_key || (ev->condition && !e->m.condition)) {
        alerts__entry_free(e);
        log_error("alerts", "out of memory: alert for %s lost: %s", alertfmt_channel_name(ch), ev->summary);
        return;
    }
    alerts__list_append(q, e);
    e->m.seq = a->next_seq++;
    alerts__start_write(a, e);
}

/* A repeat of an open condition within repeat_interval: fold it into a pending entry, if any. */
static void alerts_fold_repeat(Alerts *a, AlertChannel ch, const char *key, const Event *ev)
{
    for (AlertEntry *e = alerts_q(a, ch)->tail; e; e = e->prev) {
        if (!e->m.resolved && !strcmp(e->m.dedup_key, key) &&
            (e->state == ENTRY_WRITING || e->state == ENTRY_READY)) {
            e->m.occurrences++;
            e->m.ts_ms = ev->ts_ms;
            return;
        }
    }
}

/* Route one event: open/track/close its condition, suppress repeats, queue a delivery per channel. */
static void alerts_route(Alerts *a, const Event *ev, bool forced, unsigned force_mask)
{
    Severity route_sev = ev->severity;
    const char *route_kind = ev->kind;
    AlertCondition *c = NULL;
    char key[ALERTFMT_PD_DEDUP_MAX + 1];
    unsigned mask = 0;
    bool changed = false;

    if (ev->condition) {
        c = alerts__cond_find(a, ev->condition);
        if (ev->resolved) {
            if (!c) {
                /* Never opened here (the open set survives restarts): nobody to tell. */
                log_debug("alerts", "resolution of '%s', which was not open, not sent", ev->condition);
                return;
            }
            route_sev = c->severity;
            route_kind = c->kind;
        } else if (!c) {
            c = alerts__cond_open(a, ev->condition, ev->kind, ev->severity, ev->ts_ms);
            changed = c != NULL;
        }
    }
    if (c && !ev->resolved) {
        c->occurrences++;
        c->last_ms = ev->ts_ms;
        if (ev->severity > c->severity)
            c->severity = ev->severity;
        char *s = strdup(ev->summary);
        if (s) {
            free(c->summary);
            c->summary = s;
        }
    }
    mask = forced ? force_mask : alerts_route_mask(a, route_sev, route_kind, ev->condition);
    if (!strncmp(ev->kind, "alerts.", 7) && ev->details) {
        AlertChannel self;
        if (alertfmt_channel_parse(json_string_value(json_object_get(ev->details, "channel")), &self) == 0)
            mask &= ~(1u << self);
    }
    alertfmt_dedup_key(a->cluster, ev->condition, a->boot_ms, ev->seq, key, sizeof(key));
    uint64_t now = uv_now(a->core->loop);
    for (unsigned ch = 0; ch < ALERT_CH_COUNT; ch++) {
        unsigned bit = 1u << ch;
        if (!(mask & bit) || !alerts__configured(a, (AlertChannel)ch))
            continue;
        if (ev->resolved && c && !(c->channels & bit))
            continue; /* that channel never heard of it */
        if (!ev->resolved && c && (c->channels & bit) && ev->severity <= c->sent_sev[ch] &&
            now - c->last_enq_mono[ch] < a->repeat_ms) {
            c->suppressed++;
            alerts_fold_repeat(a, (AlertChannel)ch, key, ev);
            continue;
        }
        alerts_enqueue(a, (AlertChannel)ch, ev, key);
        if (c && !ev->resolved) {
            changed = changed || !(c->channels & bit);
            c->channels |= bit;
            c->last_enq_mono[ch] = now;
            c->sent_sev[ch] = ev->severity;
        }
    }
    if (ev->resolved && c) {
        alerts__cond_remove(a, c);
        changed = true;
    }
    if (changed)
        alerts__conds_save(a);
}

static void alerts_early_free(AlertEarly *e)
{
    alerts_event_free(&e->ev);
}

static void alerts_drop_early(Alerts *a)
{
    for (size_t i = 0; i < a->n_early; i++)
        alerts_early_free(&a->early[i]);
    free(a->early);
    a->early = NULL;
    a->n_early = 0;
}

/* Until the outbox (and the open conditions) are loaded, events wait in memory, in order. */
static void alerts_keep_early(Alerts *a, const Event *ev)
{
    AlertEarly *n = realloc(a->early, (a->n_early + 1) * sizeof(*n));
    if (!n) {
        log_error("alerts", "out of memory: alert lost: %s", ev->summary);
        return;
    }
    a->early = n;
    AlertEarly *e = &a->early[a->n_early];
    memset(e, 0, sizeof(*e));
    if (alerts_event_copy(&e->ev, ev) < 0) {
        log_error("alerts", "out of memory: alert lost: %s", ev->summary);
        return;
    }
    e->forced = a->forcing;
    e->force_mask = a->force_mask;
    a->n_early++;
}

void alerts__replay_early(Alerts *a)
{
    AlertEarly *early = a->early;
    size_t n = a->n_early;

    a->early = NULL;
    a->n_early = 0;
    for (size_t i = 0; i < n; i++) {
        if (a->enabled && !a->closing)
            alerts_route(a, &early[i].ev, early[i].forced, early[i].force_mask);
        alerts_early_free(&early[i]);
    }
    free(early);
}

/* An event past the high-availability gate: kept until the outbox is loaded, else routed. */
static void alerts_admit(Alerts *a, const Event *ev)
{
    if (!a->loaded) {
        alerts_keep_early(a, ev);
        return;
    }
    alerts_route(a, ev, a->forcing, a->force_mask);
}

static void alerts_admit_held(const Event *ev, void *data)
{
    alerts_admit(data, ev);
}

/* The start grace is over (etcd's first answer, or one TTL without one): the held alerts are
 * paged, or dropped when another node leads and pages them. */
static void alerts_end_hold(Alerts *a, LeaderGate gate)
{
    size_t n = a->hold.n;
    uint64_t dropped = a->hold.dropped;

    if (!n)
        return;
    if (gate == LEADER_GATE_QUIET || a->closing || !a->enabled) {
        alerts_hold_release(&a->hold, NULL, NULL);
        a->follower_skipped += n;
        log_info("alerts", "%zu alert(s) held until etcd's first answer not paged: %s (%" PRIu64 " older ones "
                 "dropped beyond the hold's %d)", n, gate == LEADER_GATE_QUIET ? "another node leads and pages them"
                 : "alerts are off", dropped, ALERTS_HOLD_MAX);
        return;
    }
    log_notice("alerts", "paging %zu alert(s) held until etcd's first answer: no other node is known to lead (%" PRIu64
               " older ones dropped beyond the hold's %d)", n, dropped, ALERTS_HOLD_MAX);
    alerts_hold_release(&a->hold, alerts_admit_held, a);
}

void alerts__leader_settled(void *data)
{
    Alerts *a = data;
    alerts_end_hold(a, leader_alert_gate(a->core->leader));
}

static void alerts_on_event(const Event *ev, void *data)
{
    Alerts *a = data;

    if (a->closing || !a->enabled)
        return;
    /* High availability: only the leader pages, or every daemon would page the same failure (they
     * all probe the platform). A follower's events still reach its log and `drctl watch`. It keeps
     * quiet only while another node is known to lead: with etcd unreachable or no leader, every
     * daemon pages (duplicates, never silence), and each pages its own ha.* events (a lost lease,
     * a takeover). In the start grace, before etcd's first answer, they are held (alerts_hold.h). */
    if (strncmp(ev->kind, "ha.", 3) && !a->forcing) {
        LeaderGate gate = leader_alert_gate(a->core->leader);
        if (gate == LEADER_GATE_HOLD) {
            if (alerts_hold_push(&a->hold, ev) < 0)
                log_error("alerts", "out of memory: alert lost: %s", ev->summary);
            return;
        }
        alerts_end_hold(a, gate); /* the grace ended before its callback: keep the order */
        if (gate == LEADER_GATE_QUIET) {
            a->follower_skipped++;
            return;
        }
    }
    alerts_admit(a, ev);
}

/* ---- life cycle ---- */

Alerts *alerts_new(Core *d)
{
    Alerts *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->core = d;
    a->boot_ms = clock_wall_ms();
    a->rng = (uint32_t)a->boot_ms ^ ((uint32_t)getpid() << 16) ^ 0x5bd1e995u;
    for (unsigned ch = 0; ch < ALERT_CH_COUNT; ch++) {
        AlertChanQ *q = &a->q[ch];
        q->a = a;
        q->ch = (AlertChannel)ch;
        uv_timer_init(d->loop, &q->timer);
        q->timer.data = q;
    }
    alertfmt_bucket_init(&a->q[ALERT_CH_PAGERDUTY].bucket, 2.0, 20.0, uv_now(d->loop));
    alertfmt_bucket_init(&a->q[ALERT_CH_SLACK].bucket, 1.0, 1.0, uv_now(d->loop));
    alertfmt_bucket_init(&a->q[ALERT_CH_WEBHOOK].bucket, 5.0, 10.0, uv_now(d->loop));
    uv_timer_init(d->loop, &a->hb_timer);
    a->hb_timer.data = a;
    a->sub_id = events_subscribe(d->events, alerts_on_event, a);
    leader_on_settled(d->leader, alerts__leader_settled, a);
    if (a->sub_id < 0 || alerts__register_commands(a) < 0) {
        /* Timers are initialised: the caller closes us through alerts_close. */
        log_error("alerts", "cannot set up alerts: out of memory");
    }
    return a;
}

int alerts_start(Alerts *a)
{
    if (asprintf(&a->dir, "%s/outbox", a->core->cfg->node_dir) < 0) {
        a->dir = NULL;
        return -ENOMEM;
    }
    if (asprintf(&a->cond_path, "%s/alerts-conditions.json", a->core->cfg->node_dir) < 0) {
        a->cond_path = NULL;
        return -ENOMEM;
    }
    return alerts__outbox_load(a);
}

static char *alerts_dup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void alerts_free_config(Alerts *a)
{
    free(a->source);
    free(a->cluster);
    if (a->pd_key)
        explicit_bzero(a->pd_key, strlen(a->pd_key));
    free(a->pd_key);
    free(a->pd_url);
    if (a->slack_url)
        explicit_bzero(a->slack_url, strlen(a->slack_url));
    free(a->slack_url);
    free(a->webhook_url);
    if (a->hmac)
        explicit_bzero(a->hmac, a->hmac_len);
    free(a->hmac);
    free(a->hb_url);
    for (size_t i = 0; i < a->n_routes; i++) {
        free(a->routes[i].kind);
        free(a->routes[i].condition);
    }
    free(a->routes);
    a->routes = NULL;
    a->n_routes = 0;
}

int alerts_apply_config(Alerts *a, const Config *cfg)
{
    const ConfigAlerts *c = &cfg->alerts;

    if (a->closing)
        return DR_ECANCELED;
    alerts_free_config(a);
    a->enabled = c->enabled;
    a->source = alerts_dup(c->source ? c->source : "localhost");
    a->cluster = alerts_dup(cfg->cluster);
    a->pd_key = alerts_dup(c->pd_routing_key);
    a->pd_url = alerts_dup(c->pd_url);
    a->slack_url = alerts_dup(c->slack_url);
    a->webhook_url = alerts_dup(c->webhook_url);
    a->hmac = NULL;
    a->hmac_len = 0;
    if (c->webhook_secret && (a->hmac = malloc(c->webhook_secret_len + 1))) {
        memcpy(a->hmac, c->webhook_secret, c->webhook_secret_len + 1);
        a->hmac_len = c->webhook_secret_len;
    }
    a->hb_url = alerts_dup(c->heartbeat_url);
    a->timeout_ms = c->timeout_ms ? c->timeout_ms : 10000;
    a->retry_base_ms = c->retry_base_ms ? c->retry_base_ms : 30000;
    a->retry_cap_ms = c->retry_cap_ms ? c->retry_cap_ms : 300000;
    a->max_attempts = c->max_attempts > 0 ? (unsigned)c->max_attempts : 50;
    a->slack_ra_ms = c->slack_retry_after_ms;
    a->repeat_ms = c->repeat_interval_ms;
    a->group_ms = c->group_window_ms;
    a->hb_interval_ms = c->heartbeat_interval_ms ? c->heartbeat_interval_ms : 60000;
    if (c->n_routes && (a->routes = calloc(c->n_routes, sizeof(*a->routes)))) {
        for (size_t i = 0; i < c->n_routes; i++) {
            a->routes[i] = c->routes[i];
            a->routes[i].kind = alerts_dup(c->routes[i].kind);
            a->routes[i].condition = alerts_dup(c->routes[i].condition);
        }
        a->n_routes = c->n_routes;
    }
    if ((c->pd_routing_key && !a->pd_key) || (c->slack_url && !a->slack_url) || (c->webhook_url && !a->webhook_url) ||
        !a->source || !a->cluster || (c->n_routes && !a->routes))
        return -ENOMEM;

    Component *comp = status_component(a->core->status, "alerts");
    if (comp) {
        if (!a->enabled)
            status_set_health(comp, HEALTH_DISABLED);
        else if (comp->health == HEALTH_DISABLED)
            status_set_health(comp, HEALTH_UNKNOWN);
    }
    if (a->enabled && a->hb_url)
        uv_timer_start(&a->hb_timer, alerts__heartbeat_tick, 0, a->hb_interval_ms);
    else
        uv_timer_stop(&a->hb_timer);
    for (unsigned ch = 0; ch < ALERT_CH_COUNT; ch++)
        alerts__pump(alerts_q(a, (AlertChannel)ch));
    return 0;
}

static void alerts_free_all(Alerts *a)
{
    for (unsigned ch = 0; ch < ALERT_CH_COUNT; ch++) {
        AlertChanQ *q = &a->q[ch];
        AlertEntry *e = q->head;
        while (e) {
            AlertEntry *n = e->next;
            alerts__entry_free(e);
            e = n;
        }
        for (size_t i = 0; i < q->n_dead; i++) {
            AlertDead *dd = &q->dead[(q->dead_pos + i) % ALERTS_MAX_DEAD];
            alertfmt_msg_free_fields(&dd->m);
            free(dd->reason);
        }
        free(q->pause_reason);
    }
    while (a->conds) {
        AlertCondition *n = a->conds->next;
        alerts__cond_free(a->conds);
        a->conds = n;
    }
    alerts_drop_early(a);
    alerts_hold_release(&a->hold, NULL, NULL);
    free(a->cond_path);
    free(a->hb_error);
    free(a->dir);
    alerts_free_config(a);
}

void alerts__maybe_closed(Alerts *a)
{
    if (!a->closing || a->pending_works > 0 || a->pending_handles > 0)
        return;
    void (*cb)(void *) = a->closed_cb;
    void *data = a->closed_data;
    alerts_free_all(a);
    free(a);
    if (cb)
        cb(data);
}

static void alerts_on_handle_closed(uv_handle_t *h)
{
    Alerts *a = h->data;
    a->pending_handles--;
    alerts__maybe_closed(a);
}

void alerts_close(Alerts *a, void (*closed_cb)(void *data), void *data)
{
    a->closing = true;
    a->closed_cb = closed_cb;
    a->closed_data = data;
    if (a->sub_id > 0)
        events_unsubscribe(a->core->events, a->sub_id);
    leader_on_settled(a->core->leader, NULL, NULL); /* NULL when the leader closed first */
    for (unsigned ch = 0; ch < ALERT_CH_COUNT; ch++) {
        AlertChanQ *q = &a->q[ch];
        alerts__cancel_sends(q);
        q->timer.data = a;
        a->pending_handles++;
        uv_close((uv_handle_t *)&q->timer, alerts_on_handle_closed);
    }
    if (a->hb_busy && a->core->http)
        httpc_cancel(a->core->http, a->hb_id);
    a->pending_handles++;
    uv_close((uv_handle_t *)&a->hb_timer, alerts_on_handle_closed);
}
