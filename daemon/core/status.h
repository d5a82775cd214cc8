/*
 * status: the daemon's model of the world, as drctl status shows it.
 *
 * Owns one record per supervised component (database, platform, ...): its health, when that last
 * changed, the last observation (time, outcome, latency, detail) and the last error. Probes feed
 * observations in; the control socket, sd_notify STATUS= and (later) metrics read it out.
 * Loop thread only.
 */
#ifndef DRSUP_STATUS_H
#define DRSUP_STATUS_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

typedef enum { HEALTH_UNKNOWN = 0, HEALTH_UP, HEALTH_DOWN, HEALTH_DISABLED } Health;

typedef struct Component {
    char *name;
    Health health;
    int64_t since_ms;            /* wall time of the last health change */
    int64_t last_obs_ms;         /* wall time of the last observation, 0 if none */
    bool last_ok;
    double last_latency_ms;
    char *last_error;            /* last failure's message, kept after recovery */
    int64_t last_error_ms;
    json_t *last_detail;         /* object from the last observation, may be NULL */
    uint64_t consecutive_failures;
    uint64_t observations, failures;
    /* failures a running recovery declared it would cause (core/lease.h): counted apart */
    uint64_t expected_failures;
    int64_t expected_ms;         /* the last one */
    char *expected_error;        /* its message */
    char *expected_by;           /* who caused it: "run R (step S): what" */
} Component;

typedef struct Status Status;

Status *status_new(void);
Status *status_free(Status *st);
/* Find or create a component by name. Never NULL except on OOM. */
Component *status_component(Status *st, const char *name);
/*
 * Record one observation. The component goes DOWN after `down_after` consecutive failures and UP
 * on the first success. Returns the new health if it changed, or -1 if it did not.
 * `detail` is borrowed (copied). `error` may be NULL on success.
 */
int status_observe(Component *c, bool ok, double latency_ms, const char *error, const json_t *detail,
                   uint64_t down_after);
/*
 * Record a failed observation that a running recovery declared it would cause (attributed_to says
 * which run, which step, what it does): shown (status_components_json "expected"), neither a
 * failure towards DOWN nor a success, so the health and consecutive failures stay as they were.
 */
void status_observe_expected(Component *c, const char *error, const char *attributed_to);
void status_set_health(Component *c, Health h);
const char *status_health_name(Health h);
/* {"database":{...},"platform":{...}} */
json_t *status_components_json(const Status *st);
/* "database up, platform down" for sd_notify STATUS=. */
void status_summary(const Status *st, char *out, size_t n);

/*
 * Something that status shows changed outside status_observe (a halt, a backup, a run): tell the
 * listener the wiring set (it refreshes sd_notify STATUS=). Lets modules below core report a change
 * without calling up.
 */
typedef void (*StatusChangedFn)(void *data);
void status_on_change(Status *st, StatusChangedFn fn, void *data);
void status_changed(Status *st);

#endif
