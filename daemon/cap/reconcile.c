/*
 * reconcile: database against exchange, replay of missing fills, report (see reconcile.h).
 *
 * The duplicate and stale-order checks read only what the replay never writes (orders) and take
 * the longest on a large database (the duplicate check groups every order): they run on a second
 * connection of their own (the side chain), at the same time as the main chain's exchange reads,
 * positions, replay and referential checks. The run ends when both chains are idle.
 */
#include "cap/reconcile.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"
#include "core/control.h"
#include "core/core.h"
#include "err.h"
#include "log.h"
#include "pgconn.h"
#include "cap/venue/venue.h"

typedef enum {
    RC_EX_POSITIONS = 0,
    RC_EX_FILLS,
    RC_DB_POSITIONS,
    RC_DUPLICATES,
    RC_STALE,
    RC_MISSING,
    RC_REPLAY,
    RC_RECOMPUTE,
    RC_DB_POSITIONS_AFTER,
    RC_EX_POSITIONS_LATE,
    RC_MISSING_AFTER,
    RC_REFERENTIAL,
    RC_DONE
} ReconcileStep;

typedef struct ReconcileRun {
    Reconcile *owner;
    char *run_id;
    int64_t since_ms, started_ms;
    ReconcileDoneFn cb;
    void *data;
    PgConn *pg;
    ReconcileStep step;
    bool waiting;               /* an operation is outstanding */
    PgConn *side;               /* the side chain's connection (duplicates, stale), or NULL */
    ReconcileStep side_step;    /* RC_DUPLICATES, RC_STALE, then RC_DONE */
    bool side_waiting;          /* a side query is outstanding */
    bool main_done;             /* the main chain reached RC_DONE and waits for the side */
    bool finished;              /* reconcile_finish ran: a late side callback does nothing */
    bool side_used;             /* the side chain runs the duplicate and stale checks */
    json_t *ex_positions;       /* array */
    json_t *ex_positions_late;  /* array: read again after the database's last read (live trading) */
    json_t *ex_fills;           /* array */
    json_t *db_before, *db_after;  /* symbol -> {"quantity","avg_price"} */
    json_t *duplicates, *stale; /* arrays of objects */
    json_t *missing, *missing_after; /* arrays of fill ids */
    json_t *actions;            /* actions_taken */
    json_t *referential;        /* one {"query","violations","examples"} per referential query run */
    size_t ref_i;
    size_t replay_i;
    size_t replayed, replay_failed;
    bool recomputed;
    bool compare_only;          /* reconcile_start_compare: nothing replayed, no venue note */
    bool cancelled;             /* reconcile_cancel: ends at the next step */
    int error;
    char errmsg[512];
} ReconcileRun;

struct Reconcile {
    Core *core;
    Venue *venue;
    ReconcileRun *run;
    PgConnFollow follow; /* reconcile.conninfo after a promotion (reconcile_follow_primary) */
    bool closing;
    void (*closed_cb)(void *);
    void *closed_data;
};

static void reconcile_advance(ReconcileRun *run);


static const ConfigReconcile *reconcile_cfg(const ReconcileRun *run)
{
    return &run->owner->core->cfg->reconcile;
}

/* ---- values ---- */

static bool reconcile_num(const json_t *v, double *ret)
{
    if (json_is_number(v)) {
        *ret = json_number_value(v);
        return true;
    }
    if (json_is_string(v)) {
        char *end = NULL;
        const char *s = json_string_value(v);
        *ret = strtod(s, &end);
        return end != s;
    }
    *ret = 0;
    return v == NULL || json_is_null(v);
}

static bool reconcile_close_enough(double a, double b, double abs_tol, double rel_tol)
{
    double diff = fabs(a - b), scale = fmax(fabs(a), fabs(b));
    return diff <= abs_tol + rel_tol * scale + 1e-9 * scale + 1e-12;
}

json_t *reconcile_compare_positions(const json_t *exchange, json_t *db, double quantity_tolerance,
                                    double price_tolerance)
{
    json_t *out = json_array();
    json_t *seen = json_object();
    size_t i;
    const json_t *p;
    const char *sym;
    json_t *dbp;

    if (!out || !seen) {
        json_decref(seen);
        return out;
    }
    json_array_foreach(exchange, i, p) {
        const char *s = json_string_value(json_object_get(p, "symbol"));
        if (!s)
            continue;
        json_object_set_new(seen, s, json_true());
        const json_t *d = json_object_get(db, s);
        double eq, ep, dq = 0, dp = 0;
        reconcile_num(json_object_get(p, "quantity"), &eq);
        reconcile_num(json_object_get(p, "avg_price"), &ep);
        if (d) {
            reconcile_num(json_object_get(d, "quantity"), &dq);
            reconcile_num(json_object_get(d, "avg_price"), &dp);
        }
        /* a side that reports no average price (null: the platform's mapping has none, or the
         * positions query returns NULL) is compared on quantities only */
        bool prices = !json_is_null(json_object_get(p, "avg_price")) && d && !json_is_null(json_object_get(d, "avg_price"));
        const char *kind = NULL;
        if (!reconcile_close_enough(eq, dq, quantity_tolerance, 0))
            kind = d ? "quantity" : "missing_in_database";
        else if (prices && fabs(eq) > 1e-12 && !reconcile_close_enough(ep, dp, 0, price_tolerance))
            kind = "avg_price";
        if (kind)
            json_array_append_new(out, json_pack("{s:s,s:s,s:f,s:f,s:f,s:f}", "symbol", s, "kind", kind,
                                                 "exchange_quantity", eq, "db_quantity", dq, "exchange_avg_price",
                                                 ep, "db_avg_price", dp));
    }
    json_object_foreach(db, sym, dbp) {
        if (json_object_get(seen, sym))
            continue;
        double dq, dp;
        reconcile_num(json_object_get(dbp, "quantity"), &dq);
        reconcile_num(json_object_get(dbp, "avg_price"), &dp);
        if (!reconcile_close_enough(0, dq, quantity_tolerance, 0))
            json_array_append_new(out, json_pack("{s:s,s:s,s:f,s:f,s:f,s:f}", "symbol", sym, "kind",
                                                 "missing_on_exchange", "exchange_quantity", 0.0, "db_quantity", dq,
                                                 "exchange_avg_price", 0.0, "db_avg_price", dp));
    }
    json_decref(seen);
    return out;
}

/* ---- the report ---- */

static json_t *reconcile_check(const char *name, bool pass, json_t *detail)
{
    return json_pack("{s:s,s:s,s:o}", "name", name, "status", pass ? "PASS" : "FAIL", "detail",
                     detail ? detail : json_object());
}

json_t *reconcile_mismatched_in_both(const json_t *first, const json_t *late)
{
    json_t *out = json_array();
    size_t i;
    const json_t *m;
    json_array_foreach(first, i, m) {
        const char *sym = json_string_value(json_object_get(m, "symbol"));
        size_t k;
        const json_t *l;
        json_array_foreach(late, k, l) {
            if (sym && !strcmp(sym, json_string_value(json_object_get(l, "symbol")) ?: "")) {
                json_array_append_new(out, json_deep_copy(m));
                break;
            }
        }
    }
    return out;
}

static bool reconcile_in_mismatches(const json_t *list, const char *symbol)
{
    size_t i;
    const json_t *m;
    json_array_foreach(list, i, m) {
        if (strcmp(json_string_value(json_object_get(m, "symbol")), symbol) == 0)
            return true;
    }
    return false;
}

static json_t *reconcile_report(ReconcileRun *run, int *ret_result)
{
    const ConfigReconcile *cfg = reconcile_cfg(run);
    char started[40], finished[40], since[40];
    bool complete = run->step == RC_DONE && (!run->side_used || run->side_step == RC_DONE) && run->error == 0;
    json_t *checks = json_array(), *disc = json_array();
    size_t i;
    json_t *m;

    clock_format_utc_ms(run->started_ms, started, sizeof(started));
    clock_format_utc_ms(clock_wall_ms(), finished, sizeof(finished));
    clock_format_utc_ms(run->since_ms, since, sizeof(since));
    json_t *before = reconcile_compare_positions(run->ex_positions, run->db_before, cfg->quantity_tolerance,
                                                 cfg->price_tolerance);
    json_t *after = run->db_after ? reconcile_compare_positions(run->ex_positions, run->db_after,
                                                                cfg->quantity_tolerance, cfg->price_tolerance)
                                  : json_incref(before);
    if (run->ex_positions_late) {
        /* A symbol that matches the exchange as it was just after the database's last read is not
         * a mismatch: a trade the platform recorded between the two reads moved it. */
        json_t *late = reconcile_compare_positions(run->ex_positions_late, run->db_after ? run->db_after : run->db_before,
                                                   cfg->quantity_tolerance, cfg->price_tolerance);
        json_t *both = reconcile_mismatched_in_both(after, late);
        json_decref(late);
        json_decref(after);
        after = both;
    }
    bool pos_ok = complete && json_array_size(after) == 0;
    bool dup_ok = complete && json_array_size(run->duplicates) == 0;
    bool stale_ok = complete && json_array_size(run->stale) == 0;
    bool fills_ok = complete && json_array_size(run->missing_after) == 0 && run->replay_failed == 0;
    json_int_t ref_violations = 0;
    json_array_foreach(run->referential, i, m)
        ref_violations += json_integer_value(json_object_get(m, "violations"));
    bool ref_ok = complete && ref_violations == 0 && json_array_size(run->referential) == cfg->n_referential_queries;

    json_array_append_new(checks, reconcile_check("positions_match", pos_ok,
                                                  json_pack("{s:I,s:I,s:I,s:f,s:f}", "symbols_on_exchange",
                                                            (json_int_t)json_array_size(run->ex_positions),
                                                            "mismatches_before", (json_int_t)json_array_size(before),
                                                            "mismatches_after", (json_int_t)json_array_size(after),
                                                            "quantity_tolerance", cfg->quantity_tolerance,
                                                            "price_tolerance", cfg->price_tolerance)));
    json_array_append_new(checks, reconcile_check("no_duplicate_client_order_ids", dup_ok,
                                                  json_pack("{s:I}", "duplicates",
                                                            (json_int_t)json_array_size(run->duplicates))));
    json_array_append_new(checks, reconcile_check("no_stale_open_orders", stale_ok,
                                                  json_pack("{s:I,s:I}", "stale", (json_int_t)json_array_size(run->stale),
                                                            "stale_after_ms", (json_int_t)cfg->stale_after_ms)));
    json_array_append_new(checks, reconcile_check("fills_complete", fills_ok,
                                                  json_pack("{s:I,s:I,s:I,s:I,s:I}", "exchange_fills",
                                                            (json_int_t)json_array_size(run->ex_fills), "missing_before",
                                                            (json_int_t)json_array_size(run->missing), "replayed",
                                                            (json_int_t)run->replayed, "replay_failed",
                                                            (json_int_t)run->replay_failed, "missing_after",
                                                            (json_int_t)json_array_size(run->missing_after))));
    json_array_append_new(checks, reconcile_check("referential_integrity", ref_ok,
                                                  json_pack("{s:I,s:I,s:O}", "queries",
                                                            (json_int_t)cfg->n_referential_queries, "violations",
                                                            ref_violations, "results",
                                                            run->referential ? run->referential : json_array())));
    json_array_foreach(before, i, m) {
        json_t *c = json_deep_copy(m);
        json_object_set_new(c, "check", json_string("positions_match"));
        json_object_set_new(c, "resolved", json_boolean(!reconcile_in_mismatches(after, json_string_value(json_object_get(m, "symbol")))));
        json_array_append_new(disc, c);
    }
    json_array_foreach(after, i, m) {
        if (reconcile_in_mismatches(before, json_string_value(json_object_get(m, "symbol"))))
            continue;
        json_t *c = json_deep_copy(m);
        json_object_set_new(c, "check", json_string("positions_match"));
        json_object_set_new(c, "resolved", json_false());
        json_array_append_new(disc, c);
    }
    json_array_foreach(run->duplicates, i, m) {
        json_t *c = json_deep_copy(m);
        json_object_set_new(c, "check", json_string("no_duplicate_client_order_ids"));
        json_object_set_new(c, "resolved", json_false());
        json_array_append_new(disc, c);
    }
    json_array_foreach(run->stale, i, m) {
        json_t *c = json_deep_copy(m);
        json_object_set_new(c, "check", json_string("no_stale_open_orders"));
        json_object_set_new(c, "resolved", json_false());
        json_array_append_new(disc, c);
    }
    json_array_foreach(run->missing_after, i, m) {
        json_array_append_new(disc, json_pack("{s:s,s:O,s:b}", "check", "fills_complete", "fill_id", m, "resolved", 0));
    }
    json_array_foreach(run->referential, i, m) {
        if (json_integer_value(json_object_get(m, "violations")) > 0) {
            json_t *c = json_deep_copy(m);
            json_object_set_new(c, "check", json_string("referential_integrity"));
            json_object_set_new(c, "resolved", json_false());
            json_array_append_new(disc, c);
        }
    }
    bool ready = pos_ok && dup_ok && stale_ok && fills_ok && ref_ok;
    json_t *rep = json_pack("{s:s,s:s,s:s,s:s,s:I,s:o,s:o,s:O,s:b}", "run", run->run_id, "started_at", started,
                            "finished_at", finished, "since", since, "since_ms", (json_int_t)run->since_ms, "checks",
                            checks, "discrepancies", disc, "actions_taken", run->actions, "ready_to_trade", ready);
    if (rep && run->error)
        json_object_set_new(rep, "error", json_pack("{s:s,s:s}", "code", err_name(run->error), "message",
                                                    run->errmsg[0] ? run->errmsg : err_str(run->error)));
    json_decref(before);
    json_decref(after);
    *ret_result = run->error ? run->error : ready ? 0 : DR_ESTATE;
    if (rep)
        json_object_set_new(rep, "result", json_string(*ret_result ? err_name(*ret_result) : "ok"));
    if (rep)
        json_object_set_new(rep, "mode", json_string(run->compare_only ? "compare" : "repair"));
    return rep;
}

/* ---- finishing ---- */

static void reconcile_free_run(ReconcileRun *run)
{
    json_decref(run->ex_positions);
    json_decref(run->ex_fills);
    json_decref(run->db_before);
    json_decref(run->db_after);
    json_decref(run->ex_positions_late);
    json_decref(run->duplicates);
    json_decref(run->stale);
    json_decref(run->missing);
    json_decref(run->missing_after);
    json_decref(run->actions);
    json_decref(run->referential);
    free(run->run_id);
    free(run);
}

static void reconcile_module_maybe_closed(Reconcile *r)
{
    if (!r->closing || r->run)
        return;
    void (*cb)(void *) = r->closed_cb;
    void *data = r->closed_data;
    pgconn_follow_clear(&r->follow);
    free(r);
    if (cb)
        cb(data);
}

static void reconcile_on_pg_closed(void *data)
{
    ReconcileRun *run = data;
    Reconcile *r = run->owner;
    reconcile_free_run(run);
    r->run = NULL;
    reconcile_module_maybe_closed(r);
}

static void reconcile_finish(ReconcileRun *run)
{
    int result = 0;
    run->finished = true;
    if (run->side) {
        /* Its outstanding query (after a failure of the main chain) is cancelled; the callback,
         * run from inside pgconn_close, sees finished and does nothing. */
        PgConn *side = run->side;
        run->side = NULL;
        pgconn_close(side, NULL, NULL);
        run->side_waiting = false;
    }
    json_t *rep = reconcile_report(run, &result);
    Reconcile *owner = run->owner;
    Core *d = owner->core;

    if (run->compare_only) {
        /* A rehearsal: its caller judges and reports it; nothing here is a reason to trade or to page. */
        events_emit(d->events, SEV_INFO, "reconcile", NULL, false, rep, "reconcile '%s' (compare only) ended: %s",
                    run->run_id, result == 0 ? "every check passed" : run->error ? (run->errmsg[0] ? run->errmsg : err_str(run->error))
                                                                            : "discrepancies found");
    } else if (result == 0) {
        events_emit(d->events, SEV_INFO, "reconcile", NULL, false, rep, "reconcile '%s' passed: ready to trade (%zu fill%s replayed)",
                    run->run_id, run->replayed, run->replayed == 1 ? "" : "s");
        if (owner->venue)
            venue_note_reconciled(owner->venue, clock_wall_ms());
    }
    else
        events_emit(d->events, result == DR_ECANCELED ? SEV_WARNING : SEV_ERROR, "reconcile", NULL, false, rep,
                    "reconcile '%s' FAILED: %s; not ready to trade", run->run_id,
                    run->error ? (run->errmsg[0] ? run->errmsg : err_str(run->error)) : "unresolved discrepancies");
    ReconcileDoneFn cb = run->cb;
    void *cbdata = run->data;
    run->cb = NULL;
    if (cb)
        cb(result, rep, cbdata); /* the callback owns rep */
    else
        json_decref(rep);
    PgConn *pg = run->pg;
    run->pg = NULL;
    if (pg)
        pgconn_close(pg, reconcile_on_pg_closed, run);
    else
        reconcile_on_pg_closed(run);
}

static void reconcile_fail(ReconcileRun *run, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void reconcile_fail(ReconcileRun *run, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(run->errmsg, sizeof(run->errmsg), fmt, ap);
    va_end(ap);
    run->error = code;
    reconcile_finish(run);
}

/* ---- steps ---- */

static void reconcile_on_venue(int result, const json_t *list, const char *request, const char *message, void *data)
{
    ReconcileRun *run = data;
    const char *what = run->step == RC_EX_FILLS ? "fills" : "positions";

    (void)request;
    run->waiting = false;
    if (run->owner->closing && result == 0)
        result = DR_ECANCELED;
    if (result < 0) {
        /* the message names the action, the element, the field and the path (venue_read) */
        reconcile_fail(run, result, "%s", message && message[0] ? message : err_str(result));
        return;
    }
    json_t *arr = json_deep_copy(list);
    if (!arr) {
        reconcile_fail(run, -ENOMEM, "out of memory reading the exchange's %s", what);
        return;
    }
    if (run->step == RC_EX_POSITIONS)
        run->ex_positions = arr;
    else if (run->step == RC_EX_POSITIONS_LATE)
        run->ex_positions_late = arr;
    else
        run->ex_fills = arr;
    run->step++;
    reconcile_advance(run);
}

static json_t *reconcile_rows_positions(const PGresult *res)
{
    json_t *o = json_object();
    for (int i = 0; o && res && i < PQntuples(res) && PQnfields(res) >= 3; i++)
        json_object_set_new(o, PQgetvalue(res, i, 0),
                            json_pack("{s:s,s:s?}", "quantity", PQgetvalue(res, i, 1), "avg_price",
                                      PQgetisnull(res, i, 2) ? NULL : PQgetvalue(res, i, 2)));
    return o;
}

static json_t *reconcile_rows_objects(const PGresult *res, const char *const *names, int n)
{
    json_t *a = json_array();
    for (int i = 0; a && res && i < PQntuples(res); i++) {
        json_t *o = json_object();
        for (int f = 0; f < n && f < PQnfields(res); f++)
            json_object_set_new(o, names[f], PQgetisnull(res, i, f) ? json_null() : json_string(PQgetvalue(res, i, f)));
        json_array_append_new(a, o);
    }
    return a;
}

static json_t *reconcile_rows_first(const PGresult *res)
{
    json_t *a = json_array();
    for (int i = 0; a && res && i < PQntuples(res) && PQnfields(res) >= 1; i++)
        json_array_append_new(a, json_string(PQgetvalue(res, i, 0)));
    return a;
}

static const json_t *reconcile_fill_by_id(const ReconcileRun *run, const char *id)
{
    size_t i;
    const json_t *f;
    json_array_foreach(run->ex_fills, i, f) {
        const char *fid = json_string_value(json_object_get(f, "fill_id"));
        if (fid && strcmp(fid, id) == 0)
            return f;
    }
    return NULL;
}

/* Examples of violations a referential query's report keeps (the count is of every row). */
#define RECONCILE_EXAMPLES 10

static const char *cfg_q(const ReconcileRun *run, size_t i)
{
    return reconcile_cfg(run)->referential_queries[i];
}

static void reconcile_on_sql(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    ReconcileRun *run = data;
    static const char *const dup_names[] = {"client_order_id", "count"};
    static const char *const stale_names[] = {"client_order_id", "symbol", "created_at"};

    run->waiting = false;
    if (status == DR_ECANCELED) {
        run->pg = NULL; /* closing: it frees itself */
        reconcile_fail(run, DR_ECANCELED, "the daemon is stopping");
        return;
    }
    if (status != 0 && run->step == RC_REPLAY) {
        /* One fill could not be replayed: record it, go on with the others; fills_complete fails. */
        const char *id = json_string_value(json_array_get(run->missing, run->replay_i));
        run->replay_failed++;
        json_array_append_new(run->actions, json_pack("{s:s,s:s,s:s}", "action", "replay_failed", "fill_id", id ? id : "?",
                                                      "error", errmsg ? errmsg : err_str(status)));
        run->replay_i++;
        reconcile_advance(run);
        return;
    }
    if (status != 0) {
        static const char *const names[] = {"", "", "database positions", "duplicate check", "stale order check",
                                            "missing fill check", "", "position recompute", "database positions",
                                            "missing fill check", "referential check"};
        const char *sqlstate = pgconn_last_sqlstate(c);
        reconcile_fail(run, status == -ETIMEDOUT ? status : DR_EDB, "%s failed: %s%s%s", names[run->step],
                       sqlstate[0] ? sqlstate : "", sqlstate[0] ? ": " : "", errmsg ? errmsg : err_str(status));
        return;
    }
    switch (run->step) {
    case RC_DB_POSITIONS:
        run->db_before = reconcile_rows_positions(res);
        break;
    case RC_DB_POSITIONS_AFTER:
        run->db_after = reconcile_rows_positions(res);
        break;
    case RC_DUPLICATES:
        run->duplicates = reconcile_rows_objects(res, dup_names, 2);
        break;
    case RC_STALE:
        run->stale = reconcile_rows_objects(res, stale_names, 3);
        break;
    case RC_MISSING:
        run->missing = reconcile_rows_first(res);
        break;
    case RC_MISSING_AFTER:
        run->missing_after = reconcile_rows_first(res);
        break;
    case RC_REPLAY: {
        const char *id = json_string_value(json_array_get(run->missing, run->replay_i));
        const json_t *f = reconcile_fill_by_id(run, id);
        json_t *act = json_deep_copy(f);
        json_object_set_new(act, "action", json_string("replayed_fill"));
        json_array_append_new(run->actions, act);
        run->replayed++;
        run->replay_i++;
        reconcile_advance(run);
        return;
    }
    case RC_REFERENTIAL: {
        /* One row per violation: counted, the first few kept as examples (every column as text). */
        json_t *examples = json_array();
        int rows = res ? PQntuples(res) : 0;
        for (int k = 0; examples && k < rows && k < RECONCILE_EXAMPLES; k++) {
            json_t *o = json_object();
            for (int fi = 0; o && fi < PQnfields(res); fi++)
                json_object_set_new(o, PQfname(res, fi), PQgetisnull(res, k, fi) ? json_null() : json_string(PQgetvalue(res, k, fi)));
            json_array_append_new(examples, o);
        }
        json_array_append_new(run->referential,
                              json_pack("{s:s,s:I,s:o}", "query", cfg_q(run, run->ref_i), "violations", (json_int_t)rows,
                                        "examples", examples ? examples : json_array()));
        run->ref_i++;
        reconcile_advance(run);
        return;
    }
    case RC_RECOMPUTE:
        run->recomputed = true;
        json_array_append_new(run->actions, json_pack("{s:s}", "action", "recomputed_positions"));
        break;
    default:
        break;
    }
    run->step++;
    reconcile_advance(run);
}

/* ---- the side chain: the duplicate and stale-order checks on their own connection ---- */

static void reconcile_side_advance(ReconcileRun *run);

/* Both chains idle and the main one at its end (or failed): the report. */
static void reconcile_maybe_finish(ReconcileRun *run)
{
    if (!run->finished && run->main_done && !run->side_waiting)
        reconcile_finish(run);
}

static void reconcile_on_side_sql(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    ReconcileRun *run = data;
    static const char *const dup_names[] = {"client_order_id", "count"};
    static const char *const stale_names[] = {"client_order_id", "symbol", "created_at"};

    run->side_waiting = false;
    if (run->finished)
        return; /* dropped by reconcile_finish */
    if (status == DR_ECANCELED) {
        run->side = NULL; /* closed by reconcile_close: it frees itself */
        if (!run->error) {
            run->error = DR_ECANCELED;
            snprintf(run->errmsg, sizeof(run->errmsg), "the daemon is stopping");
        }
        run->side_step = RC_DONE;
        reconcile_maybe_finish(run);
        return;
    }
    if (status != 0) {
        const char *sqlstate = pgconn_last_sqlstate(c);
        if (!run->error) {
            run->error = status == -ETIMEDOUT ? status : DR_EDB;
            snprintf(run->errmsg, sizeof(run->errmsg), "%s failed: %s%s%s",
                     run->side_step == RC_DUPLICATES ? "duplicate check" : "stale order check", sqlstate[0] ? sqlstate : "",
                     sqlstate[0] ? ": " : "", errmsg ? errmsg : err_str(status));
        }
        run->side_step = RC_DONE;
        reconcile_maybe_finish(run);
        return;
    }
    if (run->side_step == RC_DUPLICATES) {
        run->duplicates = reconcile_rows_objects(res, dup_names, 2);
        run->side_step = RC_STALE;
    } else {
        run->stale = reconcile_rows_objects(res, stale_names, 3);
        run->side_step = RC_DONE;
    }
    reconcile_side_advance(run);
}

static void reconcile_side_advance(ReconcileRun *run)
{
    const ConfigReconcile *cfg = reconcile_cfg(run);
    char buf[32];
    int r = 0;

    if (run->error || run->owner->closing || run->cancelled)
        run->side_step = RC_DONE; /* the main chain reports why */
    if (run->side_step == RC_DUPLICATES) {
        r = pgconn_query(run->side, cfg->duplicates_query, 0, NULL, reconcile_on_side_sql, run);
    } else if (run->side_step == RC_STALE) {
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)cfg->stale_after_ms);
        const char *p[1] = {buf};
        r = pgconn_query(run->side, cfg->stale_orders_query, 1, p, reconcile_on_side_sql, run);
    } else {
        reconcile_maybe_finish(run);
        return;
    }
    if (r < 0) {
        if (!run->error) {
            run->error = r;
            snprintf(run->errmsg, sizeof(run->errmsg), "cannot run the %s: %s",
                     run->side_step == RC_DUPLICATES ? "duplicate check" : "stale order check", err_str(r));
        }
        run->side_step = RC_DONE;
        reconcile_maybe_finish(run);
        return;
    }
    run->side_waiting = true;
}

/* The fill ids of the exchange as a PostgreSQL text[] literal. */
static char *reconcile_id_array(const json_t *fills)
{
    size_t cap = 16, len = 0, i;
    const json_t *f;
    char *s = malloc(cap);
    if (!s)
        return NULL;
    s[len++] = '{';
    json_array_foreach(fills, i, f) {
        const char *id = json_string_value(json_object_get(f, "fill_id"));
        if (!id)
            continue;
        size_t need = len + 2 * strlen(id) + 4;
        if (need > cap) {
            while (cap < need)
                cap *= 2;
            char *n = realloc(s, cap);
            if (!n) {
                free(s);
                return NULL;
            }
            s = n;
        }
        if (s[len - 1] != '{')
            s[len++] = ',';
        s[len++] = '"';
        for (const char *p = id; *p; p++) {
            if (*p == '"' || *p == '\\')
                s[len++] = '\\';
            s[len++] = *p;
        }
        s[len++] = '"';
    }
    s[len++] = '}';
    s[len] = '\0';
    return s;
}

/* One missing fill replayed: $1..$n are the canonical fields named by reconcile.replay_fill_params
 * (the venue gives them as text: decimals exact, executed_at RFC 3339 UTC; unknown ones NULL). */
static int reconcile_replay_one(ReconcileRun *run)
{
    const ConfigReconcile *cfg = reconcile_cfg(run);
    const char *id = json_string_value(json_array_get(run->missing, run->replay_i));
    const json_t *f = reconcile_fill_by_id(run, id);
    const char *vals[RECONCILE_MAX_REPLAY_PARAMS] = {0};

    if (!f || cfg->n_replay_fill_params > RECONCILE_MAX_REPLAY_PARAMS)
        return DR_EINTERNAL;
    for (size_t i = 0; i < cfg->n_replay_fill_params; i++)
        vals[i] = json_string_value(json_object_get(f, cfg->replay_fill_params[i]));
    return pgconn_query(run->pg, cfg->replay_fill_query, (int)cfg->n_replay_fill_params, vals, reconcile_on_sql, run);
}

static void reconcile_advance(ReconcileRun *run)
{
    const ConfigReconcile *cfg = reconcile_cfg(run);
    Reconcile *owner = run->owner;
    char buf[32];
    int r = 0;

    if (run->owner->closing) {
        reconcile_fail(run, DR_ECANCELED, "the daemon is stopping");
        return;
    }
    if (run->cancelled) {
        reconcile_fail(run, DR_ECANCELED, "cancelled by its caller");
        return;
    }
    if (run->error) {
        /* The side chain failed: its error is the run's. */
        reconcile_finish(run);
        return;
    }
    for (;;) {
        switch (run->step) {
        case RC_EX_POSITIONS:
            r = venue_read(owner->venue, VENUE_POSITIONS, 0, reconcile_on_venue, run);
            break;
        case RC_EX_FILLS:
            r = venue_read(owner->venue, VENUE_FILLS, run->since_ms, reconcile_on_venue, run);
            break;
        case RC_EX_POSITIONS_LATE: {
            /* Only when a mismatch is left: the exchange again, to tell a trade in flight between
             * the two reads (the database ahead of the first read) from a real difference. */
            json_t *mm = reconcile_compare_positions(run->ex_positions, run->db_after ? run->db_after : run->db_before,
                                                     cfg->quantity_tolerance, cfg->price_tolerance);
            bool need = json_array_size(mm) > 0;
            json_decref(mm);
            if (!need) {
                run->step++;
                continue;
            }
            r = venue_read(owner->venue, VENUE_POSITIONS, 0, reconcile_on_venue, run);
            break;
        }
        case RC_DB_POSITIONS:
        case RC_DB_POSITIONS_AFTER:
            if (run->step == RC_DB_POSITIONS_AFTER && !run->recomputed && run->replayed == 0) {
                run->step++;
                continue; /* nothing changed */
            }
            r = pgconn_query(run->pg, cfg->positions_query, 0, NULL, reconcile_on_sql, run);
            break;
        case RC_DUPLICATES:
            if (run->side_used) {
                run->step++;
                continue;
            }
            r = pgconn_query(run->pg, cfg->duplicates_query, 0, NULL, reconcile_on_sql, run);
            break;
        case RC_STALE: {
            if (run->side_used) {
                run->step++;
                continue;
            }
            snprintf(buf, sizeof(buf), "%llu", (unsigned long long)cfg->stale_after_ms);
            const char *p[1] = {buf};
            r = pgconn_query(run->pg, cfg->stale_orders_query, 1, p, reconcile_on_sql, run);
            break;
        }
        case RC_MISSING:
        case RC_MISSING_AFTER: {
            if (json_array_size(run->ex_fills) == 0 ||
                (run->step == RC_MISSING_AFTER && run->replayed == 0 && run->replay_failed == 0)) {
                json_t **slot = run->step == RC_MISSING ? &run->missing : &run->missing_after;
                *slot = run->step == RC_MISSING ? json_array() : json_deep_copy(run->missing);
                run->step++;
                continue;
            }
            char *ids = reconcile_id_array(run->ex_fills);
            const char *p[1] = {ids};
            r = ids ? pgconn_query(run->pg, cfg->missing_fills_query, 1, p, reconcile_on_sql, run) : -ENOMEM;
            free(ids);
            break;
        }
        case RC_REFERENTIAL:
            if (run->ref_i >= cfg->n_referential_queries) {
                run->step++;
                continue;
            }
            r = pgconn_query(run->pg, cfg->referential_queries[run->ref_i], 0, NULL, reconcile_on_sql, run);
            break;
        case RC_REPLAY:
            if (run->compare_only || run->replay_i >= json_array_size(run->missing)) {
                run->step++;
                continue;
            }
            r = reconcile_replay_one(run);
            break;
        case RC_RECOMPUTE: {
            json_t *mm = reconcile_compare_positions(run->ex_positions, run->db_before, cfg->quantity_tolerance,
                                                     cfg->price_tolerance);
            bool need = !run->compare_only && (run->replayed > 0 || json_array_size(mm) > 0) && cfg->recompute_query[0];
            json_decref(mm);
            if (!need) {
                run->step++;
                continue;
            }
            r = pgconn_query(run->pg, cfg->recompute_query, 0, NULL, reconcile_on_sql, run);
            break;
        }
        case RC_DONE:
        default:
            run->main_done = true;
            reconcile_maybe_finish(run);
            return;
        }
        break;
    }
    if (r < 0) {
        reconcile_fail(run, r, "cannot run step %d: %s", (int)run->step, err_str(r));
        return;
    }
    run->waiting = true;
}

/* ---- entry points ---- */

static int reconcile_begin(Reconcile *r, const char *conninfo, int64_t since_ms, const char *run_id, bool compare_only,
                           ReconcileDoneFn cb, void *data)
{
    ReconcileRun *run;
    char *msg = NULL;

    if (!r || r->closing)
        return DR_ECANCELED;
    const ConfigReconcile *cfg = &r->core->cfg->reconcile;
    if (r->run)
        return DR_EBUSY;
    run = calloc(1, sizeof(*run));
    if (!run)
        return -ENOMEM;
    PgConnOptions opts = {.connect_timeout_ms = r->core->cfg->database.connect_timeout_ms,
                          .query_timeout_ms = cfg->query_timeout_ms};
    run->pg = pgconn_new_msg(r->core->loop, conninfo, &opts, &msg);
    if (!run->pg) {
        char red[512];
        log_redact_conninfo(conninfo, red, sizeof(red));
        log_error("reconcile", "cannot use conninfo '%s': %s", red, msg ? msg : "out of memory");
        free(msg);
        free(run);
        return DR_ECONFIG;
    }
    run->owner = r;
    run->compare_only = compare_only;
    run->run_id = strdup(run_id && run_id[0] ? run_id : "reconcile");
    run->since_ms = since_ms;
    run->started_ms = clock_wall_ms();
    run->cb = cb;
    run->data = data;
    run->actions = json_array();
    run->referential = json_array();
    if (!run->run_id || !run->actions || !run->referential) {
        pgconn_close(run->pg, NULL, NULL);
        reconcile_free_run(run);
        return -ENOMEM;
    }
    /* The side chain's connection (the same conninfo, parsed already above); without it, the main
     * chain runs those checks itself. */
    run->side = pgconn_new(r->core->loop, conninfo, &opts);
    run->side_used = run->side != NULL;
    run->side_step = RC_DUPLICATES;
    r->run = run;
    log_info("reconcile", "reconcile '%s' started (exchange fills since %lld%s)", run->run_id, (long long)since_ms,
             compare_only ? "; compare only" : "");
    /* The first step is a venue action, which never calls back from inside the call; the side
     * chain's query neither. */
    if (run->side_used)
        reconcile_side_advance(run);
    reconcile_advance(run);
    return 0;
}

int reconcile_start(Reconcile *r, const char *conninfo, int64_t since_ms, const char *run_id, ReconcileDoneFn cb,
                    void *data)
{
    return reconcile_begin(r, conninfo, since_ms, run_id, false, cb, data);
}

int reconcile_start_compare(Reconcile *r, const char *conninfo, int64_t since_ms, const char *run_id,
                            ReconcileDoneFn cb, void *data)
{
    return reconcile_begin(r, conninfo, since_ms, run_id, true, cb, data);
}

void reconcile_cancel(Reconcile *r, ReconcileDoneFn cb, void *data)
{
    if (r && r->run && r->run->cb == cb && r->run->data == data)
        r->run->cancelled = true;
}

static void reconcile_cmd_done(int result, json_t *report, void *data)
{
    CtlCall *call = data;
    if (result == 0 || result == DR_ESTATE || (report && json_object_get(report, "checks")))
        control_reply_ok(call, report); /* the report says PASS or FAIL; drctl exits 1 on FAIL */
    else {
        json_decref(report);
        control_reply_error(call, result, "reconcile failed: %s", err_str(result));
    }
}

static void reconcile_cmd(CtlCall *call, const json_t *args, void *data)
{
    Reconcile *r = data;
    Core *d = r->core;
    const json_t *since = json_object_get(args, "since_ms");
    int64_t since_ms;
    char id[64];

    if (since && !json_is_integer(since)) {
        control_reply_error(call, DR_EBADARG, "since_ms must be an integer (epoch milliseconds)");
        return;
    }
    since_ms = since ? (int64_t)json_integer_value(since)
                     : clock_wall_ms() - (int64_t)d->cfg->reconcile.default_since_ms;
    if (!venue_enabled(r->venue)) {
        control_reply_error(call, DR_ESTATE, "no venue is configured: nothing to reconcile against");
        return;
    }
    snprintf(id, sizeof(id), "manual-%lld", (long long)clock_wall_ms());
    char *conninfo = pgconn_follow_apply(&r->follow, d->cfg->reconcile.conninfo, NULL);
    int rc = conninfo ? reconcile_start(r, conninfo, since_ms, id, reconcile_cmd_done, call) : -ENOMEM;
    free(conninfo);
    if (rc < 0)
        control_reply_error(call, rc, "cannot start a reconcile: %s", rc == DR_EBUSY ? "one is already running" : err_str(rc));
}

Reconcile *reconcile_new(Core *d, Venue *venue)
{
    Reconcile *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->core = d;
    r->venue = venue;
    const CtlCommand cmds[] = {
        {"reconcile", true, reconcile_cmd, r,
         "compare the database with the exchange, replay missing fills, report PASS/FAIL (since_ms)"},
    };
    if (control_register(d->control, cmds, sizeof(cmds) / sizeof(cmds[0])) < 0) {
        free(r);
        return NULL;
    }
    return r;
}

int reconcile_follow_primary(Reconcile *r, const char *from, const char *to)
{
    int rc = pgconn_follow_set(&r->follow, from, to);
    return rc < 0 ? rc : 0;
}

void reconcile_close(Reconcile *r, void (*closed_cb)(void *data), void *data)
{
    r->closing = true;
    r->closed_cb = closed_cb;
    r->closed_data = data;
    if (r->run && r->run->side && r->run->side_waiting) {
        /* The side chain's query: closing calls it back with DR_ECANCELED, recorded; the run
         * finishes once the main chain is idle too. */
        PgConn *side = r->run->side;
        pgconn_close(side, NULL, NULL);
        if (!r->run)
            return;
    }
    if (r->run && r->run->pg && r->run->waiting && r->run->step >= RC_DB_POSITIONS) {
        /* A query is outstanding: closing calls it back with DR_ECANCELED, which finishes the run. */
        PgConn *pg = r->run->pg;
        pgconn_close(pg, NULL, NULL);
        return;
    }
    /* A venue call is outstanding: the venue closes too and cancels it; the run finishes then. */
    reconcile_module_maybe_closed(r);
}
