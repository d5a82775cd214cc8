/* daemon/reconcile.h */
#ifndef DRSUP_RECONCILE_H
#define DRSUP_RECONCILE_H

#include <jansson.h>
#include <stdint.h>

typedef struct Daemon Daemon;
typedef void (*ReconcileDoneFn)(int result, json_t *report /* new reference, caller owns */, void *data);
/* Compare the database (conninfo) with the venue's view, replay fills missing since since_ms, compare again.
 * result 0 and report.ready_to_trade==true when reconciled; DR_ESTATE with the report when a mismatch remains. */
int reconcile_start(Daemon *d, const char *conninfo, int64_t since_ms, const char *run_id, ReconcileDoneFn cb, void *data);

#endif
