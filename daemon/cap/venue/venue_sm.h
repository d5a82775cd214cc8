/*
 * venue_sm: the venue's halt and resume as one small state machine (pure; no I/O, no clock).
 *
 * Owns the rule that decides what a halt or resume request, and each answer from the platform,
 * does next. States: LIVE (not held, nothing in flight), HALTING (held, a halt in flight until the
 * platform confirms it), HALTED (held and confirmed), RESUMING (a resume in flight), and
 * RESUMING_THEN_HALT (a halt arrived while a resume was in flight: the halt is held durably at
 * once and sent as soon as the resume's answer is in, whatever it was). A halt always wins: it is
 * never answered before the platform confirmed it, and a resume in flight can never release a halt
 * requested meanwhile. venue.c carries the decisions out; tests/unit/test_venue_sm.c walks every
 * state and event and every interleaving of a few of them.
 */
#ifndef DRSUP_VENUE_SM_H
#define DRSUP_VENUE_SM_H

#include <stdbool.h>

typedef enum {
    VENUE_SM_LIVE = 0,
    VENUE_SM_HALTING,
    VENUE_SM_HALTED,
    VENUE_SM_RESUMING,
    VENUE_SM_RESUMING_THEN_HALT,
    VENUE_SM_N_STATES
} VenueSmState;

typedef enum {
    VENUE_SM_HALT = 0,        /* a halt is requested (operator, detector, scenario, re-assertion) */
    VENUE_SM_HALT_CONFIRMED,  /* the platform's status says halted after the halt was sent */
    VENUE_SM_HALT_FAILED,     /* the halt action or its status check failed */
    VENUE_SM_RESUME,          /* a resume passed its checks (guard, reconcile) and is to be sent */
    VENUE_SM_RESUME_CONFIRMED,/* the platform's status shows the mode the resume asked for */
    VENUE_SM_RESUME_FAILED,   /* the resume action or its check failed */
    VENUE_SM_N_EVENTS
} VenueSmEvent;

/* What to do, a bit set. */
enum {
    VENUE_SM_DO_HOLD = 1u << 0,           /* persist "halted" (write ahead) */
    VENUE_SM_DO_SEND_HALT = 1u << 1,      /* send the halt (after the hold is durable) */
    VENUE_SM_DO_QUEUE_HALT = 1u << 2,     /* the requester waits for the confirmation */
    VENUE_SM_DO_ANSWER_HALT = 1u << 3,    /* answer every halt waiter (and this request): halted */
    VENUE_SM_DO_RETRY_HALT = 1u << 4,     /* send the halt again after a backoff */
    VENUE_SM_DO_SEND_RESUME = 1u << 5,
    VENUE_SM_DO_REFUSE_RESUME = 1u << 6,  /* busy: a halt or a resume is in flight */
    VENUE_SM_DO_RELEASE = 1u << 7,        /* persist "not halted": trading runs */
    VENUE_SM_DO_RESUME_OK = 1u << 8,      /* answer the resume: done */
    VENUE_SM_DO_RESUME_FAILED = 1u << 9,  /* answer the resume: it failed */
    VENUE_SM_DO_RESUME_OVERRULED = 1u << 10, /* answer the resume: a halt came meanwhile */
    VENUE_SM_DO_IGNORE = 1u << 11,        /* the event does not belong to this state (late answer) */
};

typedef struct VenueSm {
    VenueSmState state;
    VenueSmState resume_from; /* LIVE or HALTED: where a failed resume leaves us */
} VenueSm;

/* Start: held (halt.json said halted; not yet confirmed) or live. */
void venue_sm_init(VenueSm *sm, bool held);
/*
 * Apply one event; returns the VENUE_SM_DO_* set. platform_halted: the last status the platform
 * gave says halted (a halt request in HALTED is answered at once only then; otherwise it is sent).
 */
unsigned venue_sm_apply(VenueSm *sm, VenueSmEvent ev, bool platform_halted);
/* Trading is held halted (durably) in this state. */
bool venue_sm_held(const VenueSm *sm);
/* A halt is requested and not confirmed yet. */
bool venue_sm_halt_pending(const VenueSm *sm);
/* A halt or a resume is in flight. */
bool venue_sm_busy(const VenueSm *sm);
const char *venue_sm_state_name(VenueSmState s);
const char *venue_sm_event_name(VenueSmEvent e);

#endif
