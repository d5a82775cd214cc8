/*
 * venue_internal: what the venue's files share (daemon/cap/venue/venue.c, venue_cmd.c, venue_text.c,
 * venue_read.c).
 * Not for other modules: they use venue.h.
 */
#ifndef DRSUP_VENUE_INTERNAL_H
#define DRSUP_VENUE_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "child.h"
#include "cap/venue/venue.h"
#include "cap/venue/venue_sm.h"

typedef struct VenueWaiter {
    VenueDoneFn fn;
    void *data;
    struct VenueWaiter *next;
} VenueWaiter;

typedef struct VenueCall {
    Venue *v;
    VenueActionId id;
    VenueResultFn cb;
    void *data;
    uint64_t http_id;
    ChildProc *child;
    struct VenueCall *next;
} VenueCall;

typedef struct VenuePersist {
    uv_work_t req;
    Venue *v;
    char *path;
    char *json;
    int result;
    void (*then)(Venue *v, int result);
} VenuePersist;

struct Venue {
    Core *core;
    /* persisted intent */
    bool halted;
    char *reason, *run;
    int64_t since_ms;
    int64_t requested_ms;  /* the newest halt request (not re-assertions): a reconcile must follow it */
    int64_t reconciled_ms; /* the newest passing reconcile */
    /* what the platform last said */
    VenueMode mode;
    int64_t mode_ms;
    char *last_error;
    /* halt machinery: the state machine decides (venue_sm.h), this file carries it out */
    VenueSm sm;
    bool escalated;
    unsigned attempts;
    VenueWaiter *halt_waiters;
    uv_timer_t retry_timer;
    VenueResumeGuardFn guard;
    void *guard_data;
    uv_timer_t status_timer;
    bool status_busy;
    VenueCall *calls;
    int pending; /* handles and work items still open */
    bool closing;
    void (*closed_cb)(void *);
    void *closed_data;
};

/* venue_action, and the request as people read it ("GET http://...", "command /usr/bin/x") in
 * `request` (may be NULL). */
int venue__action(Venue *v, VenueActionId id, const VenueWindow *w, VenueResultFn cb, void *data, char *request,
                  size_t request_len);
/* The signature header ("Name: value") and, when configured, the timestamp header of one request
 * (venue.sign) at now_ms. 0, or -ENOMEM / DR_EINTERNAL. (venue_text.c) */
int venue_sign_headers(const ConfigVenueSign *g, const char *method, const char *url, const char *body, int64_t now_ms,
                       char **ret_sig, char **ret_ts);
/* Register venue_check (venue_read.c), called by venue__register_commands. */
int venue__register_check(Venue *v);
/* The venue section of the configuration in force. */
const ConfigVenue *venue__cfg(const Venue *v);
/* Register halt, resume, trading and emergency_close on the control socket (venue_cmd.c). */
int venue__register_commands(Venue *v); /* 0 or -ENOMEM */

#endif
