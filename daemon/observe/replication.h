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
#include <stdbool.h>
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
 * One standby as the choice of a promotion candidate sees it. why_not set by the caller (not
 * empty) makes it ineligible with that reason; the choice fills it for the others it refuses.
 */
typedef struct ReplCandidate {
    const char *name;
    int64_t priority;        /* 0: never promoted */
    ReplState state;         /* replicating: ok or lagging */
    int64_t lag_bytes;       /* WAL not replayed, -1 unknown */
    int64_t timeline;        /* -1 unknown (then not compared) */
    uint64_t received_lsn;   /* pg_last_wal_receive_lsn(), 0 unknown */
    char why_not[200];       /* "" when eligible */
} ReplCandidate;

/*
 * The standby to promote among c[0..n): replicating, within maximum_lag_bytes, on the primary's
 * timeline (when both are known) and priority above 0; of those the one that received the most
 * WAL (when both positions are known, else the least behind), then the highest priority. Fills
 * why_not of every other; returns the index chosen or -1. Pure: used by failover-status, the
 * detection of a primary failure and the primary_failure scenario's choice.
 */
int replication_choose_candidate(ReplCandidate *c, size_t n, int64_t primary_timeline, uint64_t maximum_lag_bytes);

/* How the old primary would be fenced in a failover (replication_failover_rule). */
typedef enum {
    REPL_FENCE_NONE = 0,   /* nothing: no fence hook and failover.self_fence off (a blocker) */
    REPL_FENCE_HOOK,       /* the fence hook (failover.fence); self_fence, if on, backs it up */
    REPL_FENCE_STOP,       /* no hook: the daemon stops the node with its stop command (self_fence: stop) */
    REPL_FENCE_READ_ONLY,  /* no hook: the daemon makes it read-only (self_fence: read_only, or stop
                              with no stop command in replication.nodes) */
} ReplFenceBy;

/* What the readiness rule of a failover needs to know besides the configuration. */
typedef struct ReplFailoverFacts {
    bool candidate;             /* a standby is eligible */
    bool fence_check_ok;        /* no failover.fence_check, or its last run passed */
    bool primary_has_stop;      /* the primary's replication.nodes entry has a stop command */
} ReplFailoverFacts;

/*
 * Would a failover succeed (the rule of failover-status and readiness' failover.ready)? NULL when
 * it would, else why not, for people. *ret_fence_by (may be NULL) says how the old primary would be
 * fenced: a missing fence hook is no blocker while failover.self_fence (stop or read_only) fences it
 * (steps/fence.c); with self_fence off it is. Pure.
 */
const char *replication_failover_rule(const ConfigFailover *f, const ReplFailoverFacts *facts, ReplFenceBy *ret_fence_by);
/* "hook", "stop", "read_only" or "none". */
const char *replication_fence_by_name(ReplFenceBy by);

/* The cluster as a promotion sees it (replication_failover_view). */
typedef struct ReplFailoverView {
    bool configured;           /* a failover section and at least one standby */
    char primary[64];          /* the node taken as the primary now */
    bool primary_answered;     /* the primary answered a replication probe after since_ms */
    unsigned standbys_asked;   /* standbys that answered after since_ms */
    unsigned standbys_lost;    /* of those, the ones whose WAL receiver is not streaming */
    char lost_by[128];         /* their names, comma separated */
    char candidate[64];        /* "" when no standby is eligible */
    char candidate_conninfo[1024];
    uint64_t candidate_lsn;    /* its received position, 0 unknown */
    int64_t candidate_lag_bytes;
    int64_t candidate_priority;
    char why[600];             /* no candidate: each standby's reason */
} ReplFailoverView;

/*
 * What the standbys say of the primary since since_ms (wall ms; the first failed probe), and
 * which standby would be promoted. With since_ms > 0 a standby's eligibility is its last judgment
 * while it still replicated, if that was at most two rounds before since_ms (once the primary is
 * gone the standby no longer streams and is judged broken); it must still answer and be in
 * recovery. since_ms 0: the current judgment (failover-status).
 */
void replication_failover_view(const Replication *r, int64_t since_ms, ReplFailoverView *v);

/* One node as a planned switchover sees it now (replication_node_view). */
typedef struct ReplNodeView {
    bool known;              /* configured in replication.nodes */
    bool primary;            /* taken as the primary now */
    bool answered;           /* its last probe answered */
    bool in_recovery;
    bool streaming;          /* its WAL receiver is streaming */
    ReplState state;         /* a standby's judgment (REPL_UNKNOWN for the primary) */
    int64_t lag_bytes;       /* WAL not replayed, -1 unknown */
    int64_t sampled_ms;      /* its last probe, 0 never */
    char why[400];           /* why it is not ok, "" when it is */
} ReplNodeView;

/* The node `name` as the last probe round judged it. Pure. */
void replication_node_view(const Replication *r, const char *name, ReplNodeView *v);

/* A node's conninfo (replication.nodes), NULL when unknown. Borrowed, valid until the next reload. */
const char *replication_node_conninfo(const Replication *r, const char *name);

/*
 * Record durably that `node` is the primary now (state_dir/primary.json, written atomically on
 * the thread pool), after a promotion on `timeline` by run `run`; then the module treats it as
 * the primary, emits replication.primary and tells the listener. done(status, data) on the loop.
 */
typedef void (*ReplRecordDone)(int status, void *data);
void replication_record_primary(Replication *r, const char *node, int64_t timeline, const char *run,
                                ReplRecordDone done, void *data);
/* Who is told when the primary changes (at start from the record too): the wiring, which points
 * the liveness probe at it. One listener; fn(node, conninfo, data). */
typedef void (*ReplPrimaryFn)(const char *node, const char *conninfo, void *data);
void replication_on_primary(Replication *r, ReplPrimaryFn fn, void *data);
/* The conninfo of the node configured as the primary (role primary in replication.nodes), NULL when
 * none: the server whose conninfos follow a promotion. Borrowed, valid until the next reload. */
const char *replication_configured_primary_conninfo(const Replication *r);
/* What the wiring made follow the primary ({primary, conninfos: [{key, follows, why}]}; copied),
 * shown by replication_status as "follows" once a promotion is recorded. */
void replication_set_follows(Replication *r, const json_t *follows);

/*
 * After every round: split is true when two or more nodes answered as primaries (reachable and
 * pg_is_in_recovery() false), `nodes` their names, comma separated. One listener (the wiring,
 * which tells the detector); fn(split, nodes, data).
 */
typedef void (*ReplSplitFn)(bool split, const char *nodes, void *data);
void replication_on_split_brain(Replication *r, ReplSplitFn fn, void *data);
/* The nodes whose last answer says they are primaries, comma separated into out (n bytes); how many. */
size_t replication_writable_nodes(const Replication *r, char *out, size_t n);

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
