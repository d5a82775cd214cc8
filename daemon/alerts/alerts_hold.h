/*
 * alerts_hold: the events a follower holds in its start grace (high availability, docs/ha.md).
 *
 * Owns a bounded queue of event copies, in order. A daemon that starts as a follower does not
 * know, until etcd's first answer (at most one TTL), whether another node leads and pages for the
 * cluster: what it would page in that time is held here, then paged (nobody else leads, or this
 * daemon acts) or dropped (another node leads) at once when the answer comes. At most
 * ALERTS_HOLD_MAX are held: a further one drops the oldest, counted (dropped), and logged once
 * per grace, so a storm cannot grow memory and is never silent.
 */
#ifndef DRSUP_ALERTS_HOLD_H
#define DRSUP_ALERTS_HOLD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/events.h"

#define ALERTS_HOLD_MAX 64

typedef struct AlertHold {
    Event held[ALERTS_HOLD_MAX];     /* a ring, the oldest at head; kind, condition, summary and
                                        details owned */
    size_t head, n;
    uint64_t dropped;                /* the oldest dropped since the hold began */
} AlertHold;

/* Copy ev (its strings and details) into *dst. 0 or -ENOMEM (then *dst holds nothing). */
int alerts_event_copy(Event *dst, const Event *ev);
/* Free a copy made by alerts_event_copy. */
void alerts_event_free(Event *ev);

/* Hold a copy of ev; full: the oldest goes (counted, logged at the first drop). 0 or -ENOMEM. */
int alerts_hold_push(AlertHold *h, const Event *ev);
/* Hand every held event, oldest first, to fn (borrowed for the call), then empty the hold and
 * reset its drop count. The number handed over. fn may be NULL (drop them). */
size_t alerts_hold_release(AlertHold *h, void (*fn)(const Event *ev, void *data), void *data);

#endif
