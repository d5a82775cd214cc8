/*
 * reconcile: the database compared with the exchange, and repaired where the exchange proves it.
 *
 * Owns reconcile runs (one at a time) and the `reconcile` control command. A run, all on the loop
 * (lib/pgconn for SQL over its own connection, venue_action for the exchange):
 *   1. the exchange's positions and its fills since `since_ms` (venue actions positions, fills);
 *   2. the database's positions, duplicate client_order_ids and stale open orders (configured SQL);
 *   3. the exchange's fills missing from the database, replayed one statement each (configured SQL,
 *      default: the order if missing and the fill, ON CONFLICT DO NOTHING, so a second run inserts
 *      nothing), then positions recomputed (drsup_recompute_positions() when it exists);
 *   4. positions and fills compared again;
 *   5. the referential queries (reconcile.referential_queries, default: fills whose order row is
 *      missing), each returning one row per violation: counted, the first 10 kept as examples.
 * The report follows Sofia's template: {"run","started_at","finished_at","since",
 * "checks":[{"name","status":"PASS|FAIL","detail"}...] (positions_match,
 * no_duplicate_client_order_ids, no_stale_open_orders, fills_complete, referential_integrity), "discrepancies":[...],
 * "actions_taken":[{"action":"replayed_fill","fill_id",...}...], "ready_to_trade", "error"?}.
 * Anything unresolved fails closed: ready_to_trade false. Tolerances and SQL: cfg->reconcile.
 * Run it with trading halted: a live exchange moves under the comparison.
 */
#ifndef DRSUP_RECONCILE_H
#define DRSUP_RECONCILE_H

#include <jansson.h>
#include <stdint.h>

#include "cap/venue/venue.h"
#include "config/config.h"
#include "core/core.h"

typedef struct Reconcile Reconcile;

/*
 * Completion of a run. result: 0 when every check passed (ready_to_trade true); DR_ESTATE when a
 * check failed (a mismatch that replaying could not resolve, duplicates, stale orders); another
 * negative code when the run could not finish (venue or database error: report "error"; the
 * daemon stopping: DR_ECANCELED). report: always non-NULL (except on OOM), a new reference the
 * callback owns.
 */
typedef void (*ReconcileDoneFn)(int result, json_t *report /* new reference, caller owns */, void *data);

/*
 * Start a run against the database at conninfo (e.g. the restored database) with the exchange's
 * fills since since_ms (wall clock ms). run_id names the run in the report and logs. Returns 0 and
 * calls cb exactly once later (never from inside this call), or DR_EBUSY (a run is active),
 * DR_ECANCELED (stopping), DR_ECONFIG (bad conninfo), -ENOMEM without calling it. On shutdown an
 * active run ends with DR_ECANCELED before reconcile_close's closed_cb.
 */
int reconcile_start(Reconcile *r, const char *conninfo, int64_t since_ms, const char *run_id, ReconcileDoneFn cb,
                    void *data);

/*
 * The same, comparing only (a drill's rehearsal against a scratch restore): steps 1, 2, 4 and 5 as
 * above, nothing replayed or recomputed (step 3 only counts the fills missing: fills_complete says
 * how many a real run would replay), and a pass is not noted on the venue (it opens no resume
 * path). The report says "mode": "compare". Same returns and callback as reconcile_start.
 */
int reconcile_start_compare(Reconcile *r, const char *conninfo, int64_t since_ms, const char *run_id,
                            ReconcileDoneFn cb, void *data);
/* Stop the run started with (cb, data), if it is the active one: it ends with DR_ECANCELED once its
 * operation in flight answers (a query or venue read, each bounded by its timeout). */
void reconcile_cancel(Reconcile *r, ReconcileDoneFn cb, void *data);

/* Module life: registers the `reconcile` command. */
Reconcile *reconcile_new(Core *core, Venue *venue);
void reconcile_close(Reconcile *r, void (*closed_cb)(void *data), void *data);
/* After a promotion (at start from its record too): `drctl reconcile` uses reconcile.conninfo
 * retargeted to `to` when it names the old primary's server `from` (pgconn_conninfo_follow). A
 * scenario's reconcile uses the run's own conninfo. 0, or -ENOMEM. */
int reconcile_follow_primary(Reconcile *r, const char *from, const char *to);

/*
 * Compare the exchange's positions (JSON array of {"symbol","quantity","avg_price"}, numbers or
 * numeric strings) with the database's (object symbol -> {"quantity","avg_price"} as text). A
 * symbol missing on one side counts as quantity 0. Returns a new array of mismatches. Exposed for
 * tests.
 */
json_t *reconcile_compare_positions(const json_t *exchange, json_t *db, double quantity_tolerance,
                                    double price_tolerance);
/*
 * The mismatches of `first` (the database against the exchange read before it) whose symbol is
 * also in `late` (the same database read against the exchange read again after it): only those
 * are real while the platform trades, since a trade recorded between the reads puts the database
 * ahead of the first read and level with the late one. A new array; exposed for tests.
 */
json_t *reconcile_mismatched_in_both(const json_t *first, const json_t *late);

#endif
