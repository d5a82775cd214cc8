/*
 * replication: the cluster's streaming replication as the daemon sees it (docs/replication.md).
 *
 * Owns one connection per configured node (replication.nodes) and the probe timer: each round asks
 * every node, on the loop, for its role, timeline and WAL positions (the primary also for
 * pg_stat_replication and its replication slots, a standby for its WAL receiver), then classifies
 * each standby: ok, lag warning or critical (bytes of WAL not yet replayed, and the replay lag in
 * time), or broken (unreachable, not in recovery, no streaming WAL receiver, or not connected to the
 * primary). A change that holds for `debounce` rounds opens or closes the condition
 * replication.lag:CLUSTER/NODE or replication.broken:CLUSTER/NODE. Also the replication_status
 * control command (drctl replication-status, drctl check replication).
 */
#ifndef DRSUP_REPLICATION_H
#define DRSUP_REPLICATION_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/core.h"

typedef struct Replication Replication;

typedef enum {
    REPL_UNKNOWN = 0, /* not judged (no sample yet, or the primary could not be asked) */
    REPL_OK,
    REPL_LAG_WARNING,
    REPL_LAG_CRITICAL,
    REPL_BROKEN,
} ReplState;

Replication *replication_new(Core *core);
/* Apply the replication section (connections remade when the nodes change). 0 or -ENOMEM. */
int replication_apply_config(Replication *r, const Config *cfg);
void replication_close(Replication *r, void (*closed_cb)(void *data), void *data);

/*
 * Classify one standby from the two samples of a round (the node samples replication.c builds:
 * {"reachable", "in_recovery", "timeline", "lsn", "receiver": {"status", ...}, "replay_age_s",
 * "standbys": [{"name", "state", "lag_bytes", "replay_lag_s"}], "error"}). *lag_bytes and *lag_s
 * are set when known (else -1). Pure: exposed for tests.
 */
ReplState replication_classify(const ConfigReplication *cfg, const char *name, const json_t *primary,
                               const json_t *standby, int64_t *lag_bytes, double *lag_s, char *why, size_t whylen);
const char *replication_state_name(ReplState s);

#endif
