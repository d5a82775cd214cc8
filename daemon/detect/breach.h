/*
 * breach: the sources of the security_breach incident other than an operator (docs/security-breach.md).
 *
 * Owns the signed inbound webhook (a POST route on the metrics listener, inbound_webhook.*: the
 * HMAC, the window and the replay memory of lib/webhooksig; a refusal is answered 400/401/503 with
 * a log line and a warning event) and the daemon's own tamper signals, read from the events the
 * modules that see them publish: a backup failing verification ("backup.verify", cap/backup), a
 * WAL segment failing verification ("wal.gap" naming it, cap/wal), the configuration file changed
 * and not reloaded within detector.tamper_config_grace ("config.changed" then no "config.reload",
 * core/daemon), the control socket's owner or mode changed ("control.socket", core/control). With
 * detector.tamper each is the security_breach incident, reported through the detector, and pages
 * (a critical event, condition detector.security_breach:<cluster>); without, only a log line (the
 * module's own event pages at its severity). The webhook, when configured, always is.
 */
#ifndef DRSUP_BREACH_H
#define DRSUP_BREACH_H

#include "config/config.h"
#include "core/core.h"
#include "detect/detector.h"

typedef struct BreachSignals BreachSignals;

/* Listen to the events bus; report incidents through det (borrowed; outlives this). NULL on OOM. */
BreachSignals *breach_signals_new(Core *core, Detector *det);
/* Take cfg's inbound_webhook and detector.tamper settings (start and reload): the route is added,
 * changed or removed. 0, or a negative code (the route could not be added) with a log line. */
int breach_signals_apply_config(BreachSignals *b, const Config *cfg);
/* Stop (route removed, timers closed); closed_cb(data) from the loop when done. */
void breach_signals_close(BreachSignals *b, void (*closed_cb)(void *data), void *data);

#endif
