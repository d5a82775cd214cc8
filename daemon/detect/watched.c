/*
 * watched: the watched-table probe (see watched.h; the rule is in watched_rule.c).
 */
#include "detect/watched.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "core/lease.h"
#include "detect/watched_rule.h"
#include "err.h"
#include "log.h"
#include "pgconn.h"

/* statement_timestamp() is set when the statement starts, before its snapshot: floor()ed to the ms,
 * no commit the number did not see lies at or before it. */
#define WATCHED_TS "floor(extract(epoch FROM statement_timestamp()) * 1000)::bigint"

typedef struct WatchedTable {
    char *name;
    char *sql;            /* SELECT <server time ms>, <the number> */
    WatchedLimit limit;
    WatchedObs good;      /* the last good observation */
    bool seen;            /* the last sweep read it */
    bool gone;
    int64_t value, at_ms; /* what the last sweep saw */
    WatchedVerdict verdict;
} WatchedTable;

struct Watched {
    Core *core;
    WatchedLossFn loss_fn;
    void *loss_data;
    WatchedTable *tables;
    size_t n_tables;
    PgConn *pg;
    char *conninfo;
    uint64_t interval_ms, timeout_ms;
    uv_timer_t timer;
    bool sweeping;
    size_t next;          /* the table the sweep reads now */
    bool lost;            /* this sweep found a loss */
    bool reported;        /* a loss was reported: nothing more until watched_reset */
    int pending;
    bool closing;
    void (*closed_cb)(void *);
    void *closed_data;
};

static void watched_sweep_next(Watched *w);

char *watched_count_sql(const ConfigWatchedTable *c)
{
    char *out = NULL;
    int n;
    if (c->table) {
        const char *dot = strchr(c->table, '.');
        if (dot)
            n = asprintf(&out, "SELECT count(*) FROM \"%.*s\".\"%s\"", (int)(dot - c->table), c->table, dot + 1);
        else
            n = asprintf(&out, "SELECT count(*) FROM \"%s\"", c->table);
    } else {
        n = asprintf(&out, "SELECT ((%s))::bigint", c->query);
    }
    return n < 0 ? NULL : out;
}

/* The statement that reads one watched table: the server's statement time and its number. */
static char *watched_sql(const ConfigWatchedTable *c)
{
    char *count = watched_count_sql(c), *out = NULL;
    if (count && asprintf(&out, "SELECT " WATCHED_TS ", (%s)", count) < 0)
        out = NULL;
    free(count);
    return out;
}

static void watched_tables_free(WatchedTable *t, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(t[i].name);
        free(t[i].sql);
    }
    free(t);
}

static void watched_forget(Watched *w)
{
    for (size_t i = 0; i < w->n_tables; i++) {
        w->tables[i].good = (WatchedObs){0};
        w->tables[i].seen = w->tables[i].gone = false;
    }
}

/* ---- the loss ---- */

static json_t *watched_table_json(const WatchedTable *t)
{
    json_t *j = json_pack("{s:s,s:s,s:b,s:s}", "name", t->name, "sql", t->sql, "loss",
                          t->seen && watched_verdict_loss(t->verdict), "verdict",
                          t->seen ? watched_verdict_name(t->verdict) : "unknown");
    if (!j)
        return NULL;
    if (t->good.have) {
        json_object_set_new(j, "last_good", json_integer(t->good.value));
        json_object_set_new(j, "last_good_ms", json_integer(t->good.at_ms));
        json_object_set_new(j, "floor", json_integer(watched_floor(&t->limit, t->good.value)));
    }
    if (t->seen) {
        json_object_set_new(j, "observed", t->gone ? json_null() : json_integer(t->value));
        json_object_set_new(j, "observed_ms", json_integer(t->at_ms));
        json_object_set_new(j, "gone", json_boolean(t->gone));
    }
    return j;
}

json_t *watched_tables_json(const Watched *w)
{
    json_t *a = json_array();
    for (size_t i = 0; a && w && i < w->n_tables; i++)
        json_array_append_new(a, watched_table_json(&w->tables[i]));
    return a;
}

/* The sweep found a loss: one report with every table, the target the earliest last good time of
 * a table that lost rows. */
static void watched_report(Watched *w)
{
    int64_t target = 0;
    char reason[600] = "", why[300];
    size_t len = 0;
    for (size_t i = 0; i < w->n_tables; i++) {
        const WatchedTable *t = &w->tables[i];
        if (!t->seen || !watched_verdict_loss(t->verdict))
            continue;
        if (t->good.have && (!target || t->good.at_ms < target))
            target = t->good.at_ms;
        watched_judge(&t->limit, &t->good, t->gone, t->value, t->name, why, sizeof(why));
        if (len < sizeof(reason))
            len += (size_t)snprintf(reason + len, sizeof(reason) - len, "%s%s", len ? "; " : "", why);
    }
    json_t *params = json_pack("{s:I,s:s,s:o}", "target_ms", (json_int_t)target, "source", "detector", "tables",
                               watched_tables_json(w));
    w->reported = true;
    w->loss_fn(reason, clock_wall_ms(), params, w->loss_data);
    json_decref(params);
}

/* ---- the sweep ---- */

static void watched_sweep_end(Watched *w)
{
    w->sweeping = false;
    if (w->lost && !w->reported && !w->closing && !lease_held(w->core->lease))
        watched_report(w);
}

static void watched_on_result(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    Watched *w = data;
    if (status == DR_ECANCELED || w->closing || w->next >= w->n_tables) {
        w->sweeping = false;
        return;
    }
    WatchedTable *t = &w->tables[w->next];
    const char *sqlstate = status < 0 ? pgconn_last_sqlstate(c) : "";
    bool gone = status < 0 && (!strcmp(sqlstate, "42P01") || !strcmp(sqlstate, "3F000"));
    if (status < 0 && !gone) {
        /* No observation: the liveness probe reports a database that does not answer. */
        log_debug("detector", "watched table '%s' not read: %s", t->name, errmsg ? errmsg : err_str(status));
        w->sweeping = false;
        return;
    }
    int64_t value = 0, at = clock_wall_ms();
    if (!gone) {
        if (!res || PQntuples(res) != 1 || PQnfields(res) != 2 || PQgetisnull(res, 0, 0)) {
            log_warning("detector", "watched table '%s': the probe did not return one number; skipped", t->name);
            w->next++;
            watched_sweep_next(w);
            return;
        }
        at = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
        value = PQgetisnull(res, 0, 1) ? 0 : strtoll(PQgetvalue(res, 0, 1), NULL, 10);
    }
    char why[300];
    t->verdict = watched_judge(&t->limit, &t->good, gone, value, t->name, why, sizeof(why));
    t->seen = true;
    t->gone = gone;
    t->value = value;
    t->at_ms = at;
    if (watched_verdict_good(t->verdict)) {
        if (t->verdict == WATCHED_SHRANK)
            log_info("detector", "%s", why);
        t->good = (WatchedObs){.have = true, .value = value, .at_ms = at};
    } else if (watched_verdict_loss(t->verdict)) {
        w->lost = true;
        if (w->reported)
            log_debug("detector", "%s (reported already)", why);
    } else {
        log_debug("detector", "%s", why);
    }
    w->next++;
    watched_sweep_next(w);
}

static void watched_sweep_next(Watched *w)
{
    if (w->next >= w->n_tables) {
        watched_sweep_end(w);
        return;
    }
    int r = pgconn_query(w->pg, w->tables[w->next].sql, 0, NULL, watched_on_result, w);
    if (r < 0) {
        log_warning("detector", "cannot probe watched table '%s': %s", w->tables[w->next].name, err_str(r));
        w->sweeping = false;
    }
}

static void watched_on_timer(uv_timer_t *timer)
{
    Watched *w = timer->data;
    if (w->sweeping || w->closing || !w->pg)
        return;
    if (lease_held(w->core->lease)) { /* a run changes the database: a new baseline after it */
        watched_forget(w);
        return;
    }
    w->sweeping = true;
    w->lost = false;
    w->next = 0;
    watched_sweep_next(w);
}

/* ---- metrics ---- */

static void watched_collect(MetricsWriter *mw, void *data)
{
    const Watched *w = data;
    if (!w->n_tables)
        return;
    metrics_family(mw, "drsupervisor_watched_table_rows", METRIC_GAUGE,
                   "the last value a watched table's probe read (its row count or query)");
    for (size_t i = 0; i < w->n_tables; i++)
        if (w->tables[i].seen && !w->tables[i].gone) {
            const char *labels[][2] = {{"table", w->tables[i].name}};
            metrics_sample(mw, "drsupervisor_watched_table_rows", labels, 1, (double)w->tables[i].value);
        }
    metrics_family(mw, "drsupervisor_watched_table_last_good_timestamp_seconds", METRIC_GAUGE,
                   "when a watched table's last good observation was true (the data-loss recovery target)");
    for (size_t i = 0; i < w->n_tables; i++)
        if (w->tables[i].good.have) {
            const char *labels[][2] = {{"table", w->tables[i].name}};
            metrics_sample(mw, "drsupervisor_watched_table_last_good_timestamp_seconds", labels, 1,
                           (double)w->tables[i].good.at_ms / 1000.0);
        }
}

/* ---- life cycle ---- */

Watched *watched_new(Core *core, WatchedLossFn fn, void *data)
{
    Watched *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->core = core;
    w->loss_fn = fn;
    w->loss_data = data;
    uv_timer_init(core->loop, &w->timer);
    w->timer.data = w;
    if (core->metrics && metrics_register(core->metrics, watched_collect, w) < 0)
        log_error("detector", "cannot add the watched tables' metrics: out of memory; /metrics goes on without them");
    return w;
}

int watched_check_config(const Config *cfg, char *err, size_t errlen)
{
    const ConfigDetector *dc = &cfg->detector;
    char msg[512], red[512];
    if (!dc->n_watched_tables)
        return 0;
    int r = pgconn_check_conninfo(dc->conninfo, msg, sizeof(msg));
    if (r < 0) {
        log_redact_conninfo(dc->conninfo ? dc->conninfo : "", red, sizeof(red));
        snprintf(err, errlen, "cannot use detector.conninfo '%s' for the watched tables: %s", red,
                 msg[0] ? msg : err_str(r));
    }
    return r;
}

static void watched_on_pg_closed(void *data)
{
    Watched *w = data;
    w->pending--;
    if (w->closing && w->pending == 0) {
        void (*cb)(void *) = w->closed_cb;
        void *cd = w->closed_data;
        watched_tables_free(w->tables, w->n_tables);
        free(w->conninfo);
        free(w);
        if (cb)
            cb(cd);
    }
}

int watched_apply_config(Watched *w, const Config *cfg, const char *conninfo)
{
    const ConfigDetector *dc = &cfg->detector;
    WatchedTable *t = dc->n_watched_tables ? calloc(dc->n_watched_tables, sizeof(*t)) : NULL;
    if (dc->n_watched_tables && !t)
        return -ENOMEM;
    for (size_t i = 0; i < dc->n_watched_tables; i++) {
        const ConfigWatchedTable *c = &dc->watched_tables[i];
        t[i].name = strdup(c->name);
        t[i].sql = watched_sql(c);
        t[i].limit = (WatchedLimit){.max_drop_percent = c->max_drop_percent, .max_drop_rows = c->max_drop_rows};
        if (!t[i].name || !t[i].sql) {
            watched_tables_free(t, i + 1);
            return -ENOMEM;
        }
        for (size_t k = 0; k < w->n_tables; k++) /* the same table: its last good observation stays */
            if (!strcmp(w->tables[k].name, t[i].name) && !strcmp(w->tables[k].sql, t[i].sql)) {
                t[i].good = w->tables[k].good;
                break;
            }
    }
    bool same = w->pg && w->conninfo && !strcmp(w->conninfo, conninfo) && w->timeout_ms == dc->watched_timeout_ms;
    if (w->pg && (!dc->n_watched_tables || !same)) {
        w->pending++;
        pgconn_close(w->pg, watched_on_pg_closed, w); /* a sweep in flight ends CANCELED */
        w->pg = NULL;
        w->sweeping = false;
    }
    if (dc->n_watched_tables && !w->pg) {
        PgConnOptions opts = {.connect_timeout_ms = cfg->database.connect_timeout_ms,
                              .query_timeout_ms = dc->watched_timeout_ms,
                              .reconnect_min_ms = 100,
                              .reconnect_max_ms = dc->watched_interval_ms};
        char *msg = NULL, red[512];
        if (!(w->pg = pgconn_new_msg(w->core->loop, conninfo, &opts, &msg))) {
            log_redact_conninfo(conninfo, red, sizeof(red));
            log_error("detector", "cannot use conninfo '%s' for the watched tables: %s", red,
                      msg ? msg : "out of memory");
            free(msg);
            watched_tables_free(t, dc->n_watched_tables);
            return DR_ECONFIG;
        }
        free(w->conninfo);
        w->conninfo = strdup(conninfo);
        w->timeout_ms = dc->watched_timeout_ms;
    }
    if (w->sweeping) { /* the sweep in flight reads the old list: it ends now, the next one reads the new */
        w->next = SIZE_MAX;
    }
    watched_tables_free(w->tables, w->n_tables);
    w->tables = t;
    w->n_tables = dc->n_watched_tables;
    if (!w->n_tables) {
        uv_timer_stop(&w->timer);
        w->interval_ms = 0;
    } else if (w->interval_ms != dc->watched_interval_ms || !uv_is_active((uv_handle_t *)&w->timer)) {
        w->interval_ms = dc->watched_interval_ms;
        uv_timer_start(&w->timer, watched_on_timer, 0, w->interval_ms);
    }
    return 0;
}

void watched_reset(Watched *w)
{
    if (!w)
        return;
    watched_forget(w);
    w->reported = false;
}

static void watched_on_timer_closed(uv_handle_t *h)
{
    watched_on_pg_closed(h->data);
}

void watched_close(Watched *w, void (*closed_cb)(void *data), void *data)
{
    w->closing = true;
    w->closed_cb = closed_cb;
    w->closed_data = data;
    if (w->pg) {
        w->pending++;
        pgconn_close(w->pg, watched_on_pg_closed, w);
        w->pg = NULL;
    }
    w->pending++;
    uv_close((uv_handle_t *)&w->timer, watched_on_timer_closed);
}
