/*
 * leader: high availability, the election of the one daemon that acts (docs/ha.md).
 *
 * Owns the etcd lease and the leader key PREFIX/leader (through etcd 3.4's JSON gateway on
 * lib/httpc, never blocking), the follower's polling of that key, the leader's keep-alives, the
 * step-down on its own monotonic clock when it has not renewed within the TTL, the planned
 * hand-over (drctl step-down), the fencing token (the leader key's create revision), the guarded
 * writes of state under the prefix (the halt state, written before a halt goes out) and its reads
 * (the halt state read back by a new leader).
 *
 * Without an `ha:` section the daemon is alone and always acts: leader_acting() is true and the
 * token is 0. Every function takes a NULL Leader as "no high availability".
 */
#ifndef DRSUP_LEADER_H
#define DRSUP_LEADER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "core/events.h"
#include "httpc.h"

typedef struct Leader Leader;

typedef enum {
    LEADER_BECAME = 0, /* this daemon won the election: it acts from now on */
    LEADER_LOST,       /* it stopped acting (lease not renewed in time, or stepped down) */
    LEADER_REJOIN,     /* a former leader's hold is over: restart to campaign with fresh state */
} LeaderChange;
typedef void (*LeaderChangedFn)(LeaderChange change, void *data);
typedef void (*LeaderDoneFn)(int result, const char *message, void *data);

Leader *leader_new(uv_loop_t *loop, HttpClient *http, EventBus *events);
/* Copy cfg->ha; the first call with the section present starts campaigning. Turning ha on or off
 * needs a restart (refused by leader_check_config). */
int leader_apply_config(Leader *l, const Config *cfg);
int leader_check_config(const Leader *l, const Config *cfg, char *err, size_t errlen);
void leader_on_change(Leader *l, LeaderChangedFn fn, void *data);
void leader_close(Leader *l, void (*closed_cb)(void *data), void *data);

bool leader_enabled(const Leader *l);
/* May this daemon change the world now? Always true without ha; with ha, only while it holds the
 * leader key and its lease is valid on its own monotonic clock. */
bool leader_acting(const Leader *l);
/* What the alert gate does with an event of this daemon (other than its own ha.* events). */
typedef enum {
    LEADER_GATE_PAGE = 0, /* page: no ha, this daemon acts, or no other leader is known (etcd
                             unreachable past the start grace, the key absent, or last seen more
                             than two TTLs ago): duplicates rather than silence */
    LEADER_GATE_QUIET,    /* another node leads (etcd named it within the last two TTLs): it pages */
    LEADER_GATE_HOLD,     /* the start grace: a follower not yet answered by etcd, for at most one
                             TTL after start; hold it until leader_on_settled's callback */
} LeaderGate;
LeaderGate leader_alert_gate(const Leader *l);
/* Who is told, once, that the start grace is over: at etcd's first answer to the read of the
 * leader key, or one TTL after start without one. fn(data) on the loop; one listener (the
 * alerts, which page or drop what they held); NULL fn forgets it. No-op on a NULL Leader. */
void leader_on_settled(Leader *l, void (*fn)(void *data), void *data);
/* The fencing token: the leader key's create revision while acting, else 0. */
int64_t leader_token(const Leader *l);
/* "not the leader (leader: NODE)" into why. */
void leader_refusal(const Leader *l, char *why, size_t n);
json_t *leader_status_json(const Leader *l);

/* Write PREFIX/name = value in etcd, only while this daemon's leader key stands (guarded by its
 * create revision). done(0) at once without ha; DR_ENOTLEADER when not acting or deposed. */
void leader_put_state(Leader *l, const char *name, const char *value, LeaderDoneFn done, void *data);
/* Read PREFIX/name from etcd (any role): got(0, value or NULL when absent, ...) or got(<0, NULL,
 * message). got(0, NULL) at once without ha. */
typedef void (*LeaderGotFn)(int result, const char *value, const char *message, void *data);
void leader_get_state(Leader *l, const char *name, LeaderGotFn got, void *data);
/* Planned hand-over: stop acting, revoke the lease (which deletes the key), hold off campaigning
 * for ha.step_down_hold. DR_ENOTLEADER when not the leader. */
void leader_step_down(Leader *l, LeaderDoneFn done, void *data);

#endif
