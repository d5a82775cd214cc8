/*
 * lease: the recovery lease, the one answer to "is a recovery running?".
 *
 * Owns the flag that a recovery run (or the start-up scan that may resume one) holds while trading
 * must not resume and destructive background work (retention, the standby restore) must wait, the
 * holder's name, and the callbacks of the modules that want to hear when it is taken or released.
 * The scenario runner takes and releases it; everyone else only reads it or listens. Lower layers
 * include this header instead of asking the scenario engine. Loop thread only.
 */
#ifndef DRSUP_LEASE_H
#define DRSUP_LEASE_H

#include <stdbool.h>

typedef struct Lease Lease;
/* Called after the lease changed hands (held: the new state). */
typedef void (*LeaseChangedFn)(bool held, void *data);

Lease *lease_new(void);
Lease *lease_free(Lease *l);
/* Take the lease for `holder` ("run corruption-2026...", "start-up scan"); replaces the holder's
 * name if already held. 0 or -ENOMEM. Listeners hear about it only when it was free. */
int lease_take(Lease *l, const char *holder);
/* Release it (no-op when free); listeners are called. */
void lease_release(Lease *l);
bool lease_held(const Lease *l);
/* The holder's name, "" when free. */
const char *lease_holder(const Lease *l);
/* Listen to changes. 0 or -ENOMEM. The listener is removed with lease_unlisten. */
int lease_listen(Lease *l, LeaseChangedFn fn, void *data);
void lease_unlisten(Lease *l, LeaseChangedFn fn, void *data);

#endif
