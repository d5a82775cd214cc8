/*
 * alerts_outbox: the durable side of alerts: the queue entries and their files.
 *
 * Owns each delivery's life on disk, driven from the loop with the file operations of
 * daemon/alerts/outbox.c run on the thread pool: an entry's file is written when it is queued
 * (ENTRY_WRITING -> ENTRY_READY), removed once it was accepted or superseded (ENTRY_REMOVING, then
 * the entry is freed), moved to outbox/dead/ when it is dead-lettered (with the in-memory ring of
 * dead letters per channel and the cascade event); the outbox and the open conditions
 * (state_dir/alerts-conditions.json) loaded at start, after which the events that arrived early
 * are routed; and the open conditions saved (one write at a time, the newest state wins).
 * Routing and the life cycle are in alerts.c, sending in alerts_send.c.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alerts/alerts_internal.h"
#include "atomicfile.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "alerts/outbox.h"

typedef enum { WORK_LOAD, WORK_WRITE, WORK_REMOVE, WORK_BURY, WORK_CONDS } AlertWorkOp;

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

/* ---- entries ---- */

void alerts__entry_free(AlertEntry *e)
{
    if (!e)
        return;
    alertfmt_msg_free_fields(&e->m);
    free(e->last_error);
    free(e);
}

void alerts__list_append(AlertChanQ *q, AlertEntry *e)
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
        alerts__list_append(q, e);
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
    int r = uv_queue_work(a->core->loop, &w->req, alerts_work_run, alerts_work_done);
    if (r == 0)
        a->pending_works++;
    return r;
}

void alerts__start_write(Alerts *a, AlertEntry *e)
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
    alerts__entry_free(e);
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
    alerts_dead_push(q, &e->m, reason, clock_wall_ms());
    alerts__entry_free(e);
    if (cascade) {
        /* Tell the other channels (never this one: no loops). */
        json_t *det = json_pack("{s:s,s:s,s:s}", "channel", alertfmt_channel_name(q->ch), "reason", reason,
                                "drctl", "drctl alerts");
        events_emit(a->core->events, SEV_ERROR, "alerts.delivery", NULL, false, det,
                    "alert delivery to %s failed for good: %s (alert was: %s)", alertfmt_channel_name(q->ch),
                    reason, summary);
        json_decref(det);
    }
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
        e->enq_mono = uv_now(a->core->loop);
        alerts_list_insert_sorted(&a->q[e->m.channel], e);
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
        alerts_dead_push(&a->q[l->dead[i].channel], &l->dead[i], "dead-lettered before the last restart",
                         l->dead[i].ts_ms);
    if (l->n_msgs || l->n_dead)
        log_notice("alerts", "alert outbox: %zu pending deliver%s resumed, %zu dead letter%s kept", l->n_msgs,
                   l->n_msgs == 1 ? "y" : "ies", l->n_dead, l->n_dead == 1 ? "" : "s");
    outbox_load_done(l);
    a->loaded = true;
    alerts__replay_early(a);
    if (a->cond_dirty)
        alerts__conds_save(a);
    AlertChanQ *pd = &a->q[ALERT_CH_PAGERDUTY];
    for (AlertEntry *e = pd->head; e; e = e->next)
        if (e->state == ENTRY_READY)
            alerts__coalesce_pd(pd, e);
    for (unsigned ch = 0; ch < ALERT_CH_COUNT; ch++)
        alerts__pump(&a->q[(AlertChannel)ch]);
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
        AlertChanQ *q = &a->q[e->m.channel];
        if (w->result < 0)
            log_error("alerts", "cannot write alert %llu for %s to the outbox '%s': %s; delivering it from memory "
                      "only", (unsigned long long)e->m.seq, alertfmt_channel_name(q->ch), a->dir,
                      err_str(w->result));
        e->durable = w->result == 0;
        e->state = ENTRY_READY;
        if (q->ch == ALERT_CH_PAGERDUTY)
            alerts__coalesce_pd(q, e);
        alerts__pump(q);
    } else if (w->op == WORK_REMOVE) {
        AlertEntry *e = w->e;
        AlertChanQ *q = &a->q[e->m.channel];
        if (w->result < 0)
            log_error("alerts", "cannot remove delivered alert %llu from the outbox: %s; it may be sent again "
                      "after a restart", (unsigned long long)e->m.seq, err_str(w->result));
        alerts_list_unlink(q, e);
        alerts__entry_free(e);
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
    alerts__maybe_closed(a);
}

/* ---- start ---- */

int alerts__outbox_load(Alerts *a)
{
    AlertWork *w = calloc(1, sizeof(*w));

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

