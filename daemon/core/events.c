/*
 * events: event bus with logging and fan-out (see events.h).
 */
#include "core/events.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>
#include <time.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "clock.h"
#include "log.h"

typedef struct EventSub {
    int id;
    EventSinkFn fn;
    void *data;
} EventSub;

struct EventBus {
    EventSub *subs;
    size_t n_subs;
    int next_id;
    uint64_t seq;
};

static const char *const severity_names[] = {"info", "warning", "error", "critical"};

const char *events_severity_name(Severity sev)
{
    return sev <= SEV_CRITICAL ? severity_names[sev] : "unknown";
}

int events_severity_parse(const char *name, Severity *ret)
{
    for (int i = 0; i <= SEV_CRITICAL; i++) {
        if (strcmp(name, severity_names[i]) == 0) {
            *ret = (Severity)i;
            return 0;
        }
    }
    return -EINVAL;
}

EventBus *events_new(void)
{
    EventBus *bus = calloc(1, sizeof(*bus));
    if (bus)
        bus->next_id = 1;
    return bus;
}

EventBus *events_free(EventBus *bus)
{
    if (!bus)
        return NULL;
    free(bus->subs);
    free(bus);
    return NULL;
}

int events_subscribe(EventBus *bus, EventSinkFn fn, void *data)
{
    EventSub *n = realloc(bus->subs, (bus->n_subs + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    bus->subs = n;
    bus->subs[bus->n_subs] = (EventSub){.id = bus->next_id++, .fn = fn, .data = data};
    return bus->subs[bus->n_subs++].id;
}

void events_unsubscribe(EventBus *bus, int id)
{
    for (size_t i = 0; i < bus->n_subs; i++) {
        if (bus->subs[i].id == id) {
            memmove(&bus->subs[i], &bus->subs[i + 1], (bus->n_subs - i - 1) * sizeof(bus->subs[0]));
            bus->n_subs--;
            return;
        }
    }
}

json_t *events_to_json(const Event *ev)
{
    json_t *o = json_pack("{s:I,s:I,s:s,s:s,s:s?,s:b,s:s}", "seq", (json_int_t)ev->seq, "ts_ms",
                          (json_int_t)ev->ts_ms, "severity", events_severity_name(ev->severity), "kind",
                          ev->kind, "condition", ev->condition, "resolved", ev->resolved, "summary",
                          ev->summary);
    if (o && ev->details)
        json_object_set_new(o, "details", json_deep_copy(ev->details));
    if (o && ev->run)
        json_object_set_new(o, "run", json_string(ev->run));
    if (o && ev->scenario)
        json_object_set_new(o, "scenario", json_string(ev->scenario));
    if (o && ev->step)
        json_object_set_new(o, "step", json_string(ev->step));
    return o;
}

static int events_priority(const Event *ev)
{
    if (ev->resolved)
        return LOG_NOTICE;
    switch (ev->severity) {
    case SEV_CRITICAL:
        return LOG_CRIT;
    case SEV_ERROR:
        return LOG_ERR;
    case SEV_WARNING:
        return LOG_WARNING;
    case SEV_INFO:
    default:
        return LOG_INFO;
    }
}

static void events_vemit(EventBus *bus, Severity sev, const char *kind, const char *condition, bool resolved,
                         const json_t *details, const LogFields *fields, const char *fmt, va_list ap)
    __attribute__((format(printf, 8, 0)));

static void events_vemit(EventBus *bus, Severity sev, const char *kind, const char *condition, bool resolved,
                         const json_t *details, const LogFields *fields, const char *fmt, va_list ap)
{
    char summary[1024];
    Event ev;

    vsnprintf(summary, sizeof(summary), fmt, ap);
    ev = (Event){.seq = ++bus->seq,
                 .ts_ms = clock_wall_ms(),
                 .severity = sev,
                 .kind = kind,
                 .condition = condition,
                 .resolved = resolved,
                 .summary = summary,
                 .details = details,
                 .run = fields ? fields->run : NULL,
                 .scenario = fields ? fields->scenario : NULL,
                 .step = fields ? fields->step : NULL};

    int prio = events_priority(&ev);
    if (log_is_journal()) {
        if (prio <= log_get_max_priority())
            sd_journal_send("MESSAGE=%s", summary, "PRIORITY=%i", prio, "SYSLOG_IDENTIFIER=drsupervisord",
                            "COMPONENT=%s", kind, "EVENT=%s", kind, "CONDITION=%s",
                            condition ? condition : "", "SEVERITY=%s", events_severity_name(sev), "RUN=%s",
                            ev.run ? ev.run : "", "SCENARIO=%s", ev.scenario ? ev.scenario : "", "STEP=%s",
                            ev.step ? ev.step : "", NULL);
    } else {
        log_emit(prio, kind, fields, "%s%s", resolved ? "resolved: " : "", summary);
    }
    /*
     * Hand it to every subscriber, with no allocation that could fail and drop them. Subscribers may
     * subscribe or unsubscribe from the callback, so walk by id rather than by index: ids increase
     * in list order, each turn takes the first subscriber after the last one called, and those added
     * during this emit (id >= last_id) wait for the next event.
     */
    int last_id = bus->next_id, prev = 0;
    for (;;) {
        EventSub *next = NULL;
        for (size_t j = 0; j < bus->n_subs; j++)
            if (bus->subs[j].id > prev && bus->subs[j].id < last_id) {
                next = &bus->subs[j];
                break;
            }
        if (!next)
            break;
        EventSub call = *next;
        prev = call.id;
        call.fn(&ev, call.data);
    }
}

void events_emit(EventBus *bus, Severity sev, const char *kind, const char *condition, bool resolved,
                 const json_t *details, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    events_vemit(bus, sev, kind, condition, resolved, details, NULL, fmt, ap);
    va_end(ap);
}

void events_emit_run(EventBus *bus, Severity sev, const char *kind, const char *condition, bool resolved,
                     const json_t *details, const LogFields *fields, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    events_vemit(bus, sev, kind, condition, resolved, details, fields, fmt, ap);
    va_end(ap);
}
