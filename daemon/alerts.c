/*
 * alerts: routing, open conditions, the durable outbox and per-channel delivery (see alerts.h).
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
#include "alerts.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "alerts_internal.h"
#include "atomicfile.h"
#include "cfgtree.h"
#include "err.h"
#include "log.h"
#include "outbox.h"

typedef enum { WORK_LOAD, WORK_WRITE, WORK_REMOVE, WORK_BURY, WORK_CONDS } AlertWorkOp;

/* A copy of an event that arrived before the outbox was loaded. */
typedef struct AlertEarly {
    Event ev;          /* strings and details owned */
    bool forced;
    unsigned force_mask;
} AlertEarly;

typedef struct AlertWork {
    uv_work_t req;
    Alerts *a;
    AlertWorkOp op;
    AlertEntry *e;     /* WRITE, REMOVE */
    uint64_t seq;      /* WRITE, REMOVE, BURY */
    AlertChannel ch;
    char *text;        /* WRITE, CONDS; LOAD: the conditions file */
    size_t text_len;
    int result;
    OutboxLoad load;   /* LOAD */
} AlertWork;


static void alerts_maybe_closed(Alerts *a);

int64_t alerts__wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t alerts__wall_of(const Alerts *a, uint64_t mono)
{
    uint64_t now = uv_now(a->d->loop);
    return alerts__wall_ms() + (mono > now ? (int64_t)(mono - now) : -(int64_t)(now - mono));
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

/* ---- entries ---- */

static void alerts_entry_free(AlertEntry *e)
{
    if (!e)
        return;
    alertfmt_msg_free_fields(&e->m);
    free(e->last_error);
    free(e);
}

static void alerts_list_append(AlertChanQ *q, AlertEntry *e)
{
    e->prev = q->tail;
    e->next = NULL;
    if (q->tail)
        q->tail->next = e;
    else
        q->head = e;
    q->tail = e;
    q->n++;
}

/* Insert keeping seq order. */
static void alerts_list_insert_sorted(AlertChanQ *q, AlertEntry *e)
{
    AlertEntry *at = q->head;
    while (at && at->m.seq < e->m.seq)
        at = at->next;
    if (!at) {
        alerts_list_append(q, e);
        return;
    }
    e->next = at;
    e->prev = at->prev;
    if (at->prev)
        at->prev->next = e;
    else
        q->head = e;
    at->prev = e;
    q->n++;
}

static void alerts_list_unlink(AlertChanQ *q, AlertEntry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        q->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        q->tail = e->prev;
    e->prev = e->next = NULL;
    q->n--;
}

/* ---- thread-pool work ---- */

static void alerts_work_run(uv_work_t *req)
{
    AlertWork *w = req->data;
    switch (w->op) {
    case WORK_LOAD:
        w->result = outbox_load(w->a->dir, ALERTS_MAX_DEAD, &w->load);
        if (atomicfile_read_all(w->a->cond_path, 16u * 1024u * 1024u, &w->text, &w->text_len) < 0)
            w->text = NULL;
        break;
    case WORK_CONDS:
        w->result = atomicfile_write(w->a->cond_path, w->text, strlen(w->text), 0600);
        break;
    case WORK_WRITE:
        w->result = outbox_write(w->a->dir, w->seq, w->ch, w->text);
        break;
    case WORK_REMOVE:
        w->result = outbox_remove(w->a->dir, w->seq, w->ch);
        break;
    case WORK_BURY:
        w->result = outbox_bury(w->a->dir, w->seq, w->ch);
        break;
    }
}

static void alerts_work_done(uv_work_t *req, int status);

static int alerts_queue_work(Alerts *a, AlertWork *w)
{
    w->a = a;
    w->req.data = w;
    int r = uv_queue_work(a->d->loop, &w->req, alerts_work_run, alerts_work_done);
    if (r == 0)
        a->pending_works++;
    return r;
}

static void alerts_start_write(Alerts *a, AlertEntry *e)
{
    AlertWork *w = calloc(1, sizeof(*w));
    json_t *j = alertfmt_msg_to_json(&e->m);

    e->state = ENTRY_WRITING;
    if (w && j)
        w->text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (w && w->text) {
        w->op = WORK_WRITE;
        w->e = e;
        w->seq = e->m.seq;
        w->ch = e->m.channel;
        if (alerts_queue_work(a, w) == 0)
            return;
    }
    if (w)
        free(w->text);
    free(w);
    log_error("alerts", "cannot write alert %llu for %s to the outbox; delivering it from memory only",
              (unsigned long long)e->m.seq, alertfmt_channel_name(e->m.channel));
    e->state = ENTRY_READY;
}

/* Accepted or superseded: remove the file, then free the entry. */
void alerts__remove_entry(AlertChanQ *q, AlertEntry *e)
{
    Alerts *a = q->a;
    e->state = ENTRY_REMOVING;
    if (e->durable) {
        AlertWork *w = calloc(1, sizeof(*w));
        if (w) {
            w->op = WORK_REMOVE;
            w->e = e;
            w->seq = e->m.seq;
            w->ch = e->m.channel;
            if (alerts_queue_work(a, w) == 0)
                return;
            free(w);
        }
        log_error("alerts", "cannot remove delivered alert %llu from the outbox; it may be sent again after a "
                  "restart", (unsigned long long)e->m.seq);
    }
    alerts_list_unlink(q, e);
    alerts_entry_free(e);
}

/* ---- dead letters ---- */

static void alerts_dead_push(AlertChanQ *q, AlertMsg *m, const char *reason, int64_t ts_ms)
{
    AlertDead *slot;
    if (q->n_dead < ALERTS_MAX_DEAD) {
        slot = &q->dead[(q->dead_pos + q->n_dead) % ALERTS_MAX_DEAD];
        q->n_dead++;
    } else {
        slot = &q->dead[q->dead_pos];
        alertfmt_msg_free_fields(&slot->m);
        free(slot->reason);
        q->dead_pos = (q->dead_pos + 1) % ALERTS_MAX_DEAD;
    }
    slot->m = *m;
    memset(m, 0, sizeof(*m));
    slot->reason = strdup(reason);
    slot->ts_ms = ts_ms;
}

void alerts__bury(AlertChanQ *q, AlertEntry *e, const char *reason)
{
    Alerts *a = q->a;
    bool cascade = strncmp(e->m.kind, "alerts.", 7) != 0;
    char summary[200];

    log_crit("alerts", "alert %llu to %s dead-lettered, it will not be retried: %s (alert: %s)",
             (unsigned long long)e->m.seq, alertfmt_channel_name(q->ch), reason, e->m.summary);
    snprintf(summary, sizeof(summary), "%.180s", e->m.summary);
    q->dead_total++;
    if (e->durable) {
        AlertWork *w = calloc(1, sizeof(*w));
        if (w) {
            w->op = WORK_BURY;
            w->seq = e->m.seq;
            w->ch = e->m.channel;
            if (alerts_queue_work(a, w) < 0)
                free(w);
        }
    }
    alerts_list_unlink(q, e);
    alerts_dead_push(q, &e->m, reason, alerts__wall_ms());
    alerts_entry_free(e);
    if (cascade) {
        /* Tell the other channels (never this one: no loops). */
        json_t *det = json_pack("{s:s,s:s,s:s}", "channel", alertfmt_channel_name(q->ch), "reason", reason,
                                "drctl", "drctl alerts");
        events_emit(a->d->events, SEV_ERROR, "alerts.delivery", NULL, false, det,
                    "alert delivery to %s failed for good: %s (alert was: %s)", alertfmt_channel_name(q->ch),
                    reason, summary);
        json_decref(det);
    }
}

/* ---- PagerDuty coalescing: only the newest state per dedup key is sent ---- */

static void alerts_coalesce_pd(AlertChanQ *q, AlertEntry *e)
{
    AlertEntry *o, *next;
    for (o = q->head; o; o = next) {
        next = o->next;
        if (o == e || strcmp(o->m.dedup_key, e->m.dedup_key))
            continue;
        if (o->m.seq > e->m.seq && (o->state == ENTRY_READY || o->state == ENTRY_WRITING)) {
            if (!o->m.resolved && !e->m.resolved)
                o->m.occurrences += e->m.occurrences;
            alerts__remove_entry(q, e);
            return;
        }
        if (o->m.seq < e->m.seq && o->state == ENTRY_READY) {
            if (!o->m.resolved && !e->m.resolved)
                e->m.occurrences += o->m.occurrences;
            log_debug("alerts", "pagerduty: alert %llu superseded by %llu (same dedup key)",
                      (unsigned long long)o->m.seq, (unsigned long long)e->m.seq);
            alerts__remove_entry(q, o);
        }
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
    e->created_ms = alerts__wall_ms();
    e->enq_mono = uv_now(a->d->loop);
    if (!e->m.kind || !e->m.summary || !e->m.dedup_key || (ev->condition && !e->m.condition)) {
        alerts_entry_free(e);
        log_error("alerts", "out of memory: alert for %s lost: %s", alertfmt_channel_name(ch), ev->summary);
        return;
    }
    alerts_list_append(q, e);
    e->m.seq = a->next_seq++;
    alerts_start_write(a, e);
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
    uint64_t now = uv_now(a->d->loop);
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
    free((char *)(uintptr_t)e->ev.kind);
    free((char *)(uintptr_t)e->ev.condition);
    free((char *)(uintptr_t)e->ev.summary);
    json_decref((json_t *)(uintptr_t)e->ev.details);
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
    e->ev = *ev;
    e->ev.kind = strdup(ev->kind);
    e->ev.condition = ev->condition ? strdup(ev->condition) : NULL;
    e->ev.summary = strdup(ev->summary);
    e->ev.details = ev->details ? json_deep_copy(ev->details) : NULL;
    e->forced = a->forcing;
    e->force_mask = a->force_mask;
    if (!e->ev.kind || !e->ev.summary || (ev->condition && !e->ev.condition)) {
        alerts_early_free(e);
        log_error("alerts", "out of memory: alert lost: %s", ev->summary);
        return;
    }
    a->n_early++;
}

static void alerts_replay_early(Alerts *a)
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

static void alerts_on_event(const Event *ev, void *data)
{
    Alerts *a = data;

    if (a->closing || !a->enabled)
        return;
    if (!a->loaded) {
        alerts_keep_early(a, ev);
        return;
    }
    alerts_route(a, ev, a->forcing, a->force_mask);
}

void alerts__conds_save(Alerts *a)
{
    a->cond_dirty = true;
    if (!a->loaded || a->closing || a->cond_writing || !a->cond_path)
        return;
    AlertWork *w = calloc(1, sizeof(*w));
    if (!w || !(w->text = alerts__conds_to_text(a))) {
        free(w);
        log_error("alerts", "out of memory: open conditions not saved");
        return;
    }
    w->op = WORK_CONDS;
    if (alerts_queue_work(a, w) < 0) {
        free(w->text);
        free(w);
        log_error("alerts", "cannot save the open conditions to '%s'", a->cond_path);
        return;
    }
    a->cond_dirty = false;
    a->cond_writing = true;
}

/* ---- work completion ---- */

static void alerts_load_done(Alerts *a, AlertWork *w)
{
    OutboxLoad *l = &w->load;
    uint64_t floor_seq = (uint64_t)a->boot_ms * 1000;

    if (w->result < 0)
        log_error("alerts", "cannot read the alert outbox '%s': %s; new alerts are still written there",
                  a->dir, err_str(w->result));
    if (l->n_bad)
        log_warning("alerts", "alert outbox: %zu unreadable file%s set aside in '%s/dead'", l->n_bad,
                    l->n_bad == 1 ? "" : "s", a->dir);
    a->next_seq = l->max_seq + 1 > floor_seq ? l->max_seq + 1 : floor_seq;
    if (w->text) {
        int n = alerts__conds_from_text(a, w->text, w->text_len);
        if (n < 0)
            log_error("alerts", "'%s' is not readable JSON; open conditions start empty", a->cond_path);
        else if (n > 0)
            log_notice("alerts", "%d open condition%s restored", n, n == 1 ? "" : "s");
    }
    for (size_t i = 0; i < l->n_msgs; i++) {
        AlertEntry *e = calloc(1, sizeof(*e));
        if (!e)
            break;
        e->m = l->msgs[i];
        memset(&l->msgs[i], 0, sizeof(l->msgs[i]));
        e->state = ENTRY_READY;
        e->durable = true;
        e->created_ms = e->m.ts_ms;
        e->enq_mono = uv_now(a->d->loop);
        alerts_list_insert_sorted(alerts_q(a, e->m.channel), e);
        /* Remember open conditions, so their resolution reaches the same channels. */
        if (e->m.condition && !e->m.resolved) {
            AlertCondition *c = alerts__cond_find(a, e->m.condition);
            bool fresh = !c;
            if (fresh && (c = alerts__cond_open(a, e->m.condition, e->m.kind, e->m.severity, e->m.ts_ms))) {
                char *sum = strdup(e->m.summary);
                if (sum) {
                    free(c->summary);
                    c->summary = sum;
                }
                c->occurrences = e->m.occurrences;
            }
            if (c) {
                a->cond_dirty = a->cond_dirty || fresh || !(c->channels & (1u << e->m.channel));
                c->channels |= 1u << e->m.channel;
                c->sent_sev[e->m.channel] = e->m.severity;
                c->last_enq_mono[e->m.channel] = e->enq_mono;
            }
        }
    }
    for (size_t i = 0; i < l->n_dead; i++)
        alerts_dead_push(alerts_q(a, l->dead[i].channel), &l->dead[i], "dead-lettered before the last restart",
                         l->dead[i].ts_ms);
    if (l->n_msgs || l->n_dead)
        log_notice("alerts", "alert outbox: %zu pending deliver%s resumed, %zu dead letter%s kept", l->n_msgs,
                   l->n_msgs == 1 ? "y" : "ies", l->n_dead, l->n_dead == 1 ? "" : "s");
    outbox_load_done(l);
    a->loaded = true;
    alerts_replay_early(a);
    if (a->cond_dirty)
        alerts__conds_save(a);
    AlertChanQ *pd = alerts_q(a, ALERT_CH_PAGERDUTY);
    for (AlertEntry *e = pd->head; e; e = e->next)
        if (e->state == ENTRY_READY)
            alerts_coalesce_pd(pd, e);
    for (unsigned ch = 0; ch < ALERT_CH_COUNT; ch++)
        alerts__pump(alerts_q(a, (AlertChannel)ch));
}

static void alerts_work_done(uv_work_t *req, int status)
{
    AlertWork *w = req->data;
    Alerts *a = w->a;

    a->pending_works--;
    if (status < 0 && w->result == 0)
        w->result = status;
    if (a->closing) {
        if (w->op == WORK_LOAD)
            outbox_load_done(&w->load);
        /* Entries are freed with their queues. */
    } else if (w->op == WORK_LOAD) {
        alerts_load_done(a, w);
    } else if (w->op == WORK_WRITE) {
        AlertEntry *e = w->e;
        AlertChanQ *q = alerts_q(a, e->m.channel);
        if (w->result < 0)
            log_error("alerts", "cannot write alert %llu for %s to the outbox '%s': %s; delivering it from memory "
                      "only", (unsigned long long)e->m.seq, alertfmt_channel_name(q->ch), a->dir,
                      err_str(w->result));
        e->durable = w->result == 0;
        e->state = ENTRY_READY;
        if (q->ch == ALERT_CH_PAGERDUTY)
            alerts_coalesce_pd(q, e);
        alerts__pump(q);
    } else if (w->op == WORK_REMOVE) {
        AlertEntry *e = w->e;
        AlertChanQ *q = alerts_q(a, e->m.channel);
        if (w->result < 0)
            log_error("alerts", "cannot remove delivered alert %llu from the outbox: %s; it may be sent again "
                      "after a restart", (unsigned long long)e->m.seq, err_str(w->result));
        alerts_list_unlink(q, e);
        alerts_entry_free(e);
        alerts__pump(q);
    } else if (w->op == WORK_CONDS) {
        a->cond_writing = false;
        if (w->result < 0)
            log_error("alerts", "cannot save the open conditions to '%s': %s", a->cond_path, err_str(w->result));
        if (a->cond_dirty)
            alerts__conds_save(a);
    } else if (w->op == WORK_BURY && w->result < 0) {
        log_error("alerts", "cannot move dead alert %llu to '%s/dead': %s", (unsigned long long)w->seq, a->dir,
                  err_str(w->result));
    }
    free(w->text);
    free(w);
    alerts_maybe_closed(a);
}

/* ---- life cycle ---- */

Alerts *alerts_new(Daemon *d)
{
    Alerts *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    a->d = d;
    a->boot_ms = alerts__wall_ms();
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
    if (a->sub_id < 0 || alerts__register_commands(a) < 0) {
        /* Timers are initialised: the caller closes us through alerts_close. */
        log_error("alerts", "cannot set up alerts: out of memory");
    }
    return a;
}

int alerts_start(Alerts *a)
{
    AlertWork *w;

    if (asprintf(&a->dir, "%s/outbox", a->d->cfg->state_dir) < 0) {
        a->dir = NULL;
        return -ENOMEM;
    }
    if (asprintf(&a->cond_path, "%s/alerts-conditions.json", a->d->cfg->state_dir) < 0) {
        a->cond_path = NULL;
        return -ENOMEM;
    }
    w = calloc(1, sizeof(*w));
    if (!w)
        return -ENOMEM;
    w->op = WORK_LOAD;
    int r = alerts_queue_work(a, w);
    if (r < 0) {
        free(w);
        log_error("alerts", "cannot load the alert outbox: %s", err_str(r));
    }
    return r;
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

    Component *comp = status_component(a->d->status, "alerts");
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
            alerts_entry_free(e);
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
    free(a->cond_path);
    free(a->hb_error);
    free(a->dir);
    alerts_free_config(a);
}

static void alerts_maybe_closed(Alerts *a)
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
    alerts_maybe_closed(a);
}

void alerts_close(Alerts *a, void (*closed_cb)(void *data), void *data)
{
    a->closing = true;
    a->closed_cb = closed_cb;
    a->closed_data = data;
    if (a->sub_id > 0)
        events_unsubscribe(a->d->events, a->sub_id);
    for (unsigned ch = 0; ch < ALERT_CH_COUNT; ch++) {
        AlertChanQ *q = &a->q[ch];
        alerts__cancel_sends(q);
        q->timer.data = a;
        a->pending_handles++;
        uv_close((uv_handle_t *)&q->timer, alerts_on_handle_closed);
    }
    if (a->hb_busy && a->d->http)
        httpc_cancel(a->d->http, a->hb_id);
    a->pending_handles++;
    uv_close((uv_handle_t *)&a->hb_timer, alerts_on_handle_closed);
}
