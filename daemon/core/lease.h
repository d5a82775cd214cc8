/*
 * lease: the recovery lease, the one answer to "is a recovery running?", and to "did the recovery
 * cause what a probe just saw?".
 *
 * Owns the flag that a recovery run (or the start-up scan that may resume one) holds while trading
 * must not resume and destructive background work (retention, the standby restore) must wait, the
 * holder's name, the callbacks of the modules that want to hear when it is taken or released, and
 * the disturbances the holder declared before acting: "database X will not exist / will refuse
 * connections / will have its sessions ended until step S ends". A probe that fails in a declared
 * way attributes the failure to the run (lease_attribute) instead of reporting an outage; any other
 * failure (connection refused, a timeout, another database) matches nothing and is reported as
 * usual. Also the server ports that work beside the runs holds (a drill's scratch cluster). The
 * scenario runner takes and releases the lease and declares the disturbances; everyone
 * else only reads it or listens. Lower layers include this header instead of asking the scenario
 * engine. Loop thread only.
 */
#ifndef DRSUP_LEASE_H
#define DRSUP_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct Lease Lease;
/* Called after the lease changed hands (held: the new state). */
typedef void (*LeaseChangedFn)(bool held, void *data);

/* What a declared disturbance does to a database; matched against a failure's SQLSTATE or the
 * server's message (a connect failure has no SQLSTATE in libpq, only the message). */
typedef enum {
    LEASE_DB_MISSING = 1u << 0,    /* it is renamed away: 3D000, 'database "X" does not exist' */
    LEASE_DB_REFUSING = 1u << 1,   /* ALLOW_CONNECTIONS false: 'database "X" is not currently accepting connections' */
    LEASE_DB_TERMINATED = 1u << 2, /* its sessions are ended: 57P01, 'terminating connection due to administrator command' */
    LEASE_DB_STOPPED = 1u << 3,    /* its server is stopped on purpose (a switchover): 57P03, 'the database system is
                                      shutting down', 'Connection refused' */
} LeaseDisturbanceKind;

/* One declared disturbance and what was attributed to it so far. */
typedef struct LeaseDisturbance {
    char database[64];   /* the database it concerns */
    unsigned kinds;      /* LeaseDisturbanceKind bits */
    char run[96], scenario[64], step[64]; /* who declared it, in which step */
    char what[256];      /* for people: "run R renames 'X' to 'X_damaged_T' ... until switch_database ends" */
    int64_t declared_ms;
    uint64_t count;      /* failures attributed to it */
    int64_t first_ms, last_ms;
    char last_error[256];
    bool aside;          /* declared by work that does not hold the lease (a drill): see lease_expect_aside */
} LeaseDisturbance;

Lease *lease_new(void);
Lease *lease_free(Lease *l);
/* Take the lease for `holder` ("run corruption-2026...", "start-up scan"); replaces the holder's
 * name if already held. 0 or -ENOMEM. Listeners hear about it only when it was free. */
int lease_take(Lease *l, const char *holder);
/* Release it (no-op when free): declared disturbances end with it; listeners are called. */
void lease_release(Lease *l);
bool lease_held(const Lease *l);
/* The holder's name, "" when free. */
const char *lease_holder(const Lease *l);
/* Listen to changes. 0 or -ENOMEM. The listener is removed with lease_unlisten. */
int lease_listen(Lease *l, LeaseChangedFn fn, void *data);
void lease_unlisten(Lease *l, LeaseChangedFn fn, void *data);

/* Declare a disturbance of `database` (the lease must be held): d's database, kinds, run, scenario,
 * step and what are copied; a declaration for the same database is replaced, keeping what was
 * attributed to it. 0, -EINVAL (lease free, no database or no kinds) or -ENOMEM. */
int lease_expect(Lease *l, const LeaseDisturbance *d);
/* Declare a disturbance of `database` by work that does not hold the lease and must not (a drill
 * restoring into a scratch database: holding the lease would stop the detector from halting on a
 * real failure). Kept, whoever holds the lease, until lease_expect_end; attributed like the
 * holder's. 0, -EINVAL (no database or no kinds, or a holder's declaration for it) or -ENOMEM. */
int lease_expect_aside(Lease *l, const LeaseDisturbance *d);
/* End the declaration for `database`; its record (with the attributed count) is copied to ret
 * when given. true when there was one. */
bool lease_expect_end(Lease *l, const char *database, LeaseDisturbance *ret);
/* The declarations in force (borrowed until the next call that changes the lease). */
const LeaseDisturbance *lease_disturbances(const Lease *l, size_t *ret_n);
/* Pure: does a failure of a connection to `database` with SQLSTATE `sqlstate` ("" when libpq made
 * the error) and `message` match d? */
bool lease_disturbance_matches(const LeaseDisturbance *d, const char *database, const char *sqlstate,
                               const char *message);
/* A probe of `database` failed: when a declaration matches, count it there and return it
 * (borrowed, as above): the failure is the holder's doing. NULL: report it as usual. */
const LeaseDisturbance *lease_attribute(Lease *l, const char *database, const char *sqlstate, const char *message,
                                        int64_t now_ms);

/* A server port held by work beside the runs (a point_in_time drill's scratch cluster) while its
 * server may listen there, so that a real run or another drill does not start one on it. Kept,
 * whoever holds the lease, until lease_port_release. 0, -EADDRINUSE (claimed by someone else),
 * -EINVAL (no port or no claimant) or -ENOMEM. Claiming again by the same claimant is a no-op. */
int lease_port_claim(Lease *l, int port, const char *claimant);
void lease_port_release(Lease *l, int port);
/* Who claimed port ("drill drill-pitr-..."), or NULL when no one did. */
const char *lease_port_claimant(const Lease *l, int port);

#endif
