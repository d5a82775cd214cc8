/*
 * alerts: routing events to PagerDuty, Slack and a generic webhook, never lost, never duplicated,
 * never a flood.
 *
 * Owns the subscription to the event bus, the routing rules (copied from configuration), the open
 * conditions, one delivery queue per channel (its own timer, token bucket, backoff state and
 * transfers on the shared HTTP client, so a slow channel never delays another), the durable outbox
 * in state_dir/outbox (every delivery is written there on the thread pool before it is sent and
 * removed only after the channel accepted it; reloaded and resumed at start), dead letters, the
 * dead-man heartbeat, the "alerts" status component, and the control commands `alerts`,
 * `alert.test` and `alerts.resolve` (an operator closes a condition by hand). See docs/alerts.md. Loop thread only.
 */
#ifndef DRSUP_ALERTS_H
#define DRSUP_ALERTS_H

#include "core/core.h"

typedef struct Alerts Alerts;

/* A module bound to the core: subscribes to its events and registers its control commands. NULL on OOM. */
Alerts *alerts_new(Core *core);
/* Load the outbox (thread pool) and resume pending deliveries. Events that arrive meanwhile are
 * kept in memory and written once the load is done. 0 or a negative code (logged). */
int alerts_start(Alerts *a);
/* Apply (a new) configuration: channels, secrets, routes, timings, heartbeat. Copies what it keeps. */
int alerts_apply_config(Alerts *a, const Config *cfg);
/* Cancel transfers (their deliveries stay in the outbox), close timers, wait for file work, free;
 * then closed_cb(data). */
void alerts_close(Alerts *a, void (*closed_cb)(void *data), void *data);

#endif
