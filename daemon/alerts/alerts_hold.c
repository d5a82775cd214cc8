/*
 * alerts_hold: a follower's alerts held in its start grace until etcd's first answer (see
 * alerts_hold.h); the event copies that alerts.c also keeps for its early events.
 */
#include "alerts/alerts_hold.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

void alerts_event_free(Event *ev)
{
    free((char *)(uintptr_t)ev->kind);
    free((char *)(uintptr_t)ev->condition);
    free((char *)(uintptr_t)ev->summary);
    json_decref((json_t *)(uintptr_t)ev->details);
    memset(ev, 0, sizeof(*ev));
}

int alerts_event_copy(Event *dst, const Event *ev)
{
    *dst = *ev;
    dst->kind = strdup(ev->kind);
    dst->condition = ev->condition ? strdup(ev->condition) : NULL;
    dst->summary = strdup(ev->summary);
    dst->details = ev->details ? json_deep_copy(ev->details) : NULL;
    /* run, scenario and step are not kept: alert routing does not read them */
    dst->run = dst->scenario = dst->step = NULL;
    if (!dst->kind || !dst->summary || (ev->condition && !dst->condition) || (ev->details && !dst->details)) {
        alerts_event_free(dst);
        return -ENOMEM;
    }
    return 0;
}

int alerts_hold_push(AlertHold *h, const Event *ev)
{
    Event copy;
    int r = alerts_event_copy(&copy, ev);
    if (r < 0)
        return r;
    if (h->n == ALERTS_HOLD_MAX) {
        if (h->dropped++ == 0)
            log_warning("alerts", "more than %d alerts held until etcd's first answer: the oldest are dropped "
                        "(counted when the hold ends)", ALERTS_HOLD_MAX);
        alerts_event_free(&h->held[h->head]);
        h->head = (h->head + 1) % ALERTS_HOLD_MAX;
        h->n--;
    }
    h->held[(h->head + h->n) % ALERTS_HOLD_MAX] = copy;
    h->n++;
    return 0;
}

size_t alerts_hold_release(AlertHold *h, void (*fn)(const Event *ev, void *data), void *data)
{
    size_t n = h->n;
    for (size_t i = 0; i < n; i++) {
        Event *ev = &h->held[(h->head + i) % ALERTS_HOLD_MAX];
        if (fn)
            fn(ev, data);
        alerts_event_free(ev);
    }
    h->head = h->n = 0;
    h->dropped = 0;
    return n;
}
