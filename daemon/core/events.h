/*
 * events: everything that happens in the daemon, as one kind of record.
 *
 * Owns the event bus. An event has a severity, a kind ("probe.database"), an optional condition
 * key ("database.down:main") that stays open until an event with resolved=true for the same key,
 * a one-line summary and structured details, and, for a scenario run, the run, scenario and step.
 * events_emit() logs it, once (journald fields COMPONENT=, EVENT=, CONDITION=, RUN=, SCENARIO=,
 * STEP=; on stderr the run fields at the end of the line, as log_emit writes them) and hands it to
 * every subscriber in order: control-socket watchers and alert routing. Subscribers must not block
 * and must copy what they keep.
 */
#ifndef DRSUP_EVENTS_H
#define DRSUP_EVENTS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "log.h"

typedef enum { SEV_INFO = 0, SEV_WARNING, SEV_ERROR, SEV_CRITICAL } Severity;

typedef struct Event {
    uint64_t seq;          /* increasing per daemon run */
    int64_t ts_ms;         /* wall clock, ms since the epoch */
    Severity severity;
    const char *kind;      /* dotted name, e.g. "probe.database" */
    const char *condition; /* condition key, or NULL for a one-off event */
    bool resolved;         /* this event clears the condition */
    const char *summary;   /* one line for people */
    const json_t *details; /* object, may be NULL */
    const char *run;       /* scenario run id, or NULL */
    const char *scenario;  /* scenario name, or NULL */
    const char *step;      /* step name, or NULL */
} Event;

typedef void (*EventSinkFn)(const Event *ev, void *data);

typedef struct EventBus EventBus;

EventBus *events_new(void);
EventBus *events_free(EventBus *bus);
/* Returns a subscription id (>0) or -ENOMEM. */
int events_subscribe(EventBus *bus, EventSinkFn fn, void *data);
void events_unsubscribe(EventBus *bus, int id);

/* Emit an event. `details` is borrowed. Summary printf-style. */
void events_emit(EventBus *bus, Severity sev, const char *kind, const char *condition, bool resolved,
                 const json_t *details, const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* The same for an event of a scenario run: `fields` (borrowed, may be NULL) carries run, scenario
 * and step into the event, its log line and its JSON. Callers log nothing else for it. */
void events_emit_run(EventBus *bus, Severity sev, const char *kind, const char *condition, bool resolved,
                     const json_t *details, const LogFields *fields, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));

const char *events_severity_name(Severity sev);
int events_severity_parse(const char *name, Severity *ret);
/* The event as a JSON object (new reference). */
json_t *events_to_json(const Event *ev);

#endif
