/*
 * probes: periodic observations of the supervised world.
 *
 * Owns the probe timers and their connections: database liveness (a query over a nonblocking
 * libpq connection: reachability, latency, recovery state, server version) and the trading
 * platform's health URL (HTTP GET over the shared client; 2xx is healthy). Each result becomes an
 * observation in the status model; a change of health becomes an event with a condition key
 * ("database.down:<cluster>") that opens on the way down and resolves on the way up.
 * A probe still running when its timer fires again is not started twice. The database probe's
 * connection stays open between probes: when it breaks while idle (a crashed server closes its
 * connections) that counts as a failed probe at once, and a confirming probe runs right away on a
 * fresh connection, so a crash is seen in milliseconds; a hang still takes its probe intervals,
 * and a blip (one connection lost, the server fine) is one failure and one success.
 * A database failure that a running recovery declared on the lease (core/lease.h: its own rename
 * of the database) is attributed to the run: shown in status ("expected") and logged as the run's,
 * neither a failure towards database.down nor a success, and not passed to the sink (the
 * detector); so are its repeats from the reconnect backoff. Any other failure is reported as usual.
 * Every attempt that ran to an answer (success, error or timeout; not a backoff's repeat or a lost
 * idle connection) is timed into the probe's histogram, drsupervisor_probe_duration_seconds{probe,
 * target} (target: the database's name, or the health URL's scheme, host and port), restarted when
 * its target changes.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "observe/probes.h"
#include "clock.h"
#include "err.h"
#include "httpc.h"
#include "log.h"
#include "pgconn.h"

#define PROBE_DB_SQL                                                                                 \
    "SELECT pg_is_in_recovery()::text, current_setting('server_version'), "                         \
    "(SELECT coalesce(checksum_failures, 0) FROM pg_stat_database WHERE datname = current_database())::text"

typedef struct Probe {
    struct Probes *owner;
    const char *name; /* component name */
    uv_timer_t timer;
    bool busy;
    uint64_t started_ms;
    uint64_t started_ns;     /* uv_hrtime() at the start: the histogram's resolution */
    uint64_t interval_ms;
    uint64_t down_after;
    char condition[192];
    bool replay;             /* this probe met the connection's backoff: its failure repeats the last attempt's */
    bool last_attributed;    /* the last failed attempt was attributed to a recovery run */
    char attributed_by[512]; /* ... to whom */
    char target[128];        /* the histogram's target label */
    MetricsHistogram duration;
} Probe;

/* Seconds: probes answer in well under a millisecond on a local socket and up to their timeout. */
static const double probes_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                        0.1,    0.25,  0.5,    1,     2.5,  5,     10};

struct Probes {
    Core *core;
    ProbeSink sink;
    Probe db, platform;
    PgConn *pg;
    char *conninfo;    /* the one the probe uses: database.conninfo, or retargeted to `server` */
    char *server;      /* probes_set_server: the promoted node's conninfo, or NULL */
    PgConnOptions pg_opts;
    char dbname[64];   /* the database the probe connects to (for the lease's declarations) */
    char *health_url;
    uint64_t health_timeout_ms;
    uint64_t http_id;
    bool closing;
    int pending;
    void (*closed_cb)(void *);
    void *closed_data;
};

static void probes_maybe_closed(Probes *p)
{
    if (!p->closing || p->pending > 0)
        return;
    void (*cb)(void *) = p->closed_cb;
    void *data = p->closed_data;
    free(p->conninfo);
    free(p->server);
    free(p->health_url);
    free(p);
    if (cb)
        cb(data);
}

/* Record the outcome; emit an event when the component's health changes. */
static void probes_record(Probe *pr, bool ok, double latency_ms, const char *error, const json_t *detail)
{
    Core *d = pr->owner->core;
    Component *c = status_component(d->status, pr->name);
    Health before;
    int changed;

    if (!c)
        return;
    before = c->health;
    changed = status_observe(c, ok, latency_ms, error, detail, pr->down_after);
    if (changed < 0)
        return;
    if (changed == HEALTH_DOWN)
        events_emit(d->events, SEV_ERROR, pr->name[0] == 'd' ? "probe.database" : "probe.platform",
                    pr->condition, false, detail, "%s is down after %llu failed probes: %s", pr->name,
                    (unsigned long long)c->consecutive_failures, error ? error : "failed");
    else if (changed == HEALTH_UP && before == HEALTH_DOWN)
        events_emit(d->events, SEV_INFO, pr->name[0] == 'd' ? "probe.database" : "probe.platform",
                    pr->condition, true, detail, "%s is up again (%.1f ms)", pr->name, latency_ms);
    else if (changed == HEALTH_UP)
        /* First sight after a start: resolves a condition left open by a previous run of the
         * daemon (alerting ignores resolutions of conditions that are not open). */
        events_emit(d->events, SEV_INFO, pr->name[0] == 'd' ? "probe.database" : "probe.platform",
                    pr->condition, true, detail, "%s is up (%.1f ms)", pr->name, latency_ms);
    status_changed(d->status);
}

/* The attempt that started at pr->started_ns has its answer. */
static void probes_timed(Probe *pr)
{
    metrics_histogram_observe(&pr->duration, (double)(uv_hrtime() - pr->started_ns) / 1e9);
}

/* A new target is a new series: the histogram starts over. */
static void probes_set_target(Probe *pr, const char *target)
{
    if (!strcmp(pr->target, target))
        return;
    snprintf(pr->target, sizeof(pr->target), "%s", target);
    metrics_histogram_init(&pr->duration, probes_buckets, sizeof(probes_buckets) / sizeof(probes_buckets[0]));
}

static void probes_collect(MetricsWriter *w, void *data)
{
    const Probes *p = data;
    const Probe *const all[] = {&p->db, &p->platform};

    metrics_family(w, "drsupervisor_probe_duration_seconds", METRIC_HISTOGRAM,
                   "how long each probe attempt took to its answer (success, error or timeout)");
    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
        if (!all[i]->target[0] || (all[i] == &p->platform && !p->health_url))
            continue;
        const char *const l[][2] = {{"probe", all[i]->name}, {"target", all[i]->target}};
        metrics_histogram(w, "drsupervisor_probe_duration_seconds", l, 2, &all[i]->duration);
    }
}

/* ---- database ---- */

/* A failure a running recovery declared it would cause (core/lease.h) is shown and logged as the
 * run's, and reported to nobody else: not towards database.down, not to the detector. The first
 * one of a declaration is an event of the run; the count is in status and in the run's report. */
static bool probes_attributed(Probe *pr, const char *sqlstate, const char *why)
{
    Probes *p = pr->owner;
    Core *d = p->core;
    bool replay = pr->replay;
    pr->replay = false;
    if (replay && pr->last_attributed) {
        /* No new attempt was made (backoff): the same failure as the attributed one before, even if
         * the run's declaration ended since (the switch put the database back a moment ago). */
        Component *c = status_component(d->status, pr->name);
        if (c)
            status_observe_expected(c, why, pr->attributed_by);
        log_debug("probe.database", "repeat of a failure attributed to %s: %s", pr->attributed_by, why);
        return true;
    }
    const LeaseDisturbance *ld = lease_attribute(d->lease, p->dbname, sqlstate, why, clock_wall_ms());
    pr->last_attributed = ld != NULL;
    if (!ld)
        return false;
    snprintf(pr->attributed_by, sizeof(pr->attributed_by), "run %s (%s): %s", ld->run, ld->step, ld->what);
    Component *c = status_component(d->status, pr->name);
    if (c)
        status_observe_expected(c, why, pr->attributed_by);
    if (ld->count == 1) {
        LogFields lf = {ld->run, ld->scenario, ld->step};
        json_t *det = json_pack("{s:s,s:s,s:s}", "database", ld->database, "sqlstate", sqlstate ? sqlstate : "",
                                "attributed_to", ld->run);
        events_emit_run(d->events, SEV_INFO, "probe.database", NULL, false, det, &lf,
                        "database probe failed as the recovery run declared (not an outage, not paged): %s; "
                        "further ones are counted in drctl status", why);
        json_decref(det);
    } else {
        log_debug("probe.database", "probe failure attributed to run %s (%llu so far): %s", ld->run,
                  (unsigned long long)ld->count, why);
    }
    status_changed(d->status);
    return true;
}

/* The database a conninfo names (dbname, else user), "" when it names neither. */
static void probes_dbname(const char *conninfo, char *out, size_t n)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    const char *db = NULL, *user = NULL;

    out[0] = '\0';
    PQfreemem(err);
    for (PQconninfoOption *o = opts; o && o->keyword; o++) {
        if (!strcmp(o->keyword, "dbname") && o->val && o->val[0])
            db = o->val;
        if (!strcmp(o->keyword, "user") && o->val && o->val[0])
            user = o->val;
    }
    snprintf(out, n, "%s", db ? db : user ? user : "");
    PQconninfoFree(opts);
}

static void probes_on_db_result(PgConn *conn, int status, const PGresult *res, const char *errmsg, void *data)
{
    Probe *pr = data;
    Probes *p = pr->owner;
    double latency = (double)(uv_now(p->core->loop) - pr->started_ms);
    json_t *detail = NULL;

    (void)conn;
    pr->busy = false;
    if (status == DR_ECANCELED)
        return;
    if (!pr->replay)
        probes_timed(pr);
    if (status == 0 && res && PQntuples(res) == 1 && PQnfields(res) == 3) {
        pr->replay = pr->last_attributed = false;
        detail = json_pack("{s:b,s:s,s:I}", "in_recovery", strcmp(PQgetvalue(res, 0, 0), "true") == 0,
                           "server_version", PQgetvalue(res, 0, 1), "checksum_failures",
                           (json_int_t)strtoll(PQgetvalue(res, 0, 2), NULL, 10));
        probes_record(pr, true, latency, NULL, detail);
        p->sink.db_ok(p->sink.data, strtoll(PQgetvalue(res, 0, 2), NULL, 10));
    } else {
        const char *sqlstate = p->pg ? pgconn_last_sqlstate(p->pg) : "";
        const char *why = status == 0 ? "unexpected probe result" : errmsg ? errmsg : err_str(status);
        if (probes_attributed(pr, sqlstate, why))
            return;
        if (sqlstate[0])
            detail = json_pack("{s:s}", "sqlstate", sqlstate);
        probes_record(pr, false, latency, why, detail);
        p->sink.db_failed(p->sink.data, sqlstate, why);
    }
    json_decref(detail);
}

static void probes_db_probe(Probe *pr);

static void probes_db_tick(uv_timer_t *t)
{
    probes_db_probe(t->data);
}

/* The idle connection broke: a failed observation now, and the confirming probe at once. */
static void probes_on_db_lost(PgConn *conn, const char *errmsg, void *data)
{
    Probe *pr = data;
    Probes *p = pr->owner;
    char why[600];

    (void)conn;
    if (p->closing || pr->busy)
        return;
    snprintf(why, sizeof(why), "the connection to the database was lost: %s", errmsg);
    pr->replay = false; /* a new observation */
    if (!probes_attributed(pr, "", why)) {
        probes_record(pr, false, 0, why, NULL);
        p->sink.db_failed(p->sink.data, "", why);
    }
    probes_db_probe(pr);
}

static void probes_db_probe(Probe *pr)
{
    Probes *p = pr->owner;
    int r;

    if (pr->busy || !p->pg)
        return;
    pr->started_ms = uv_now(p->core->loop);
    pr->started_ns = uv_hrtime();
    pr->replay = pgconn_backoff_remaining_ms(p->pg) > 0;
    r = pgconn_query(p->pg, PROBE_DB_SQL, 0, NULL, probes_on_db_result, pr);
    if (r == 0) {
        pr->busy = true;
        return;
    }
    if (r == -EBUSY)
        return;
    /* Still backing off after a failure: that is an observation too. */
    const char *last = pgconn_last_error(p->pg);
    if (probes_attributed(pr, pgconn_last_sqlstate(p->pg), last && last[0] ? last : err_str(r)))
        return;
    probes_record(pr, false, 0, last && last[0] ? last : err_str(r), NULL);
    p->sink.db_failed(p->sink.data, "", last && last[0] ? last : err_str(r));
}

/* ---- platform health URL ---- */

static void probes_platform_failed(Probe *pr, double latency, const char *msg, const json_t *detail)
{
    Probes *p = pr->owner;
    probes_record(pr, false, latency, msg, detail);
    if (p->sink.platform_failed)
        p->sink.platform_failed(p->sink.data, msg);
}

static void probes_on_http_done(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    Probe *pr = data;
    Probes *p = pr->owner;
    double latency = (double)(uv_now(p->core->loop) - pr->started_ms);
    char msg[512];
    json_t *detail;

    pr->busy = false;
    p->http_id = 0;
    if (err == DR_ECANCELED)
        return;
    probes_timed(pr);
    detail = json_pack("{s:i}", "http_status", (int)resp->status);
    if (err == 0 && resp->status >= 200 && resp->status < 300) {
        probes_record(pr, true, latency, NULL, detail);
        if (p->sink.platform_ok)
            p->sink.platform_ok(p->sink.data);
    } else {
        if (err == 0)
            snprintf(msg, sizeof(msg), "health URL answered HTTP %ld", resp->status);
        else
            snprintf(msg, sizeof(msg), "%s", errmsg && errmsg[0] ? errmsg : err_str(err));
        probes_platform_failed(pr, latency, msg, detail);
    }
    json_decref(detail);
}

static void probes_platform_tick(uv_timer_t *t)
{
    Probe *pr = t->data;
    Probes *p = pr->owner;
    HttpRequest req = {.method = "GET",
                       .url = p->health_url,
                       .timeout_ms = p->health_timeout_ms,
                       .connect_timeout_ms = p->health_timeout_ms,
                       .max_response = 64 * 1024};

    if (pr->busy || !p->health_url || !p->core->http)
        return;
    pr->started_ms = uv_now(p->core->loop);
    pr->started_ns = uv_hrtime();
    int r = httpc_request(p->core->http, &req, probes_on_http_done, pr, &p->http_id);
    if (r < 0) {
        probes_platform_failed(pr, 0, err_str(r), NULL);
        return;
    }
    pr->busy = true;
}

/* ---- life cycle ---- */

static void probes_init_probe(Probes *p, Probe *pr, const char *name)
{
    pr->owner = p;
    pr->name = name;
    uv_timer_init(p->core->loop, &pr->timer);
    pr->timer.data = pr;
}

Probes *probes_new(Core *core, const ProbeSink *sink)
{
    Probes *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->core = core;
    p->sink = *sink;
    probes_init_probe(p, &p->db, "database");
    probes_init_probe(p, &p->platform, "platform");
    if (core->metrics && metrics_register(core->metrics, probes_collect, p) < 0)
        log_error("probe", "cannot add the probes' metrics: out of memory; /metrics goes on without them");
    return p;
}

static void probes_on_pg_closed(void *data)
{
    Probes *p = data;
    p->pending--;
    probes_maybe_closed(p);
}

static int probes_configure_db(Probes *p, const Config *cfg)
{
    const ConfigDatabase *db = &cfg->database;
    PgConnOptions opts = {.connect_timeout_ms = db->connect_timeout_ms,
                          .query_timeout_ms = db->probe_timeout_ms,
                          .reconnect_min_ms = db->probe_interval_ms / 2 ? db->probe_interval_ms / 2 : 1,
                          .reconnect_max_ms = db->probe_interval_ms};
    char *msg = NULL;

    snprintf(p->db.condition, sizeof(p->db.condition), "database.down:%s", cfg->cluster);
    p->db.down_after = (uint64_t)db->down_after;
    char *target = NULL;
    if (p->server) {
        int r = pgconn_conninfo_retarget(db->conninfo, p->server, &target);
        if (r < 0)
            return r;
    }
    const char *conninfo = target ? target : db->conninfo;
    bool same = p->pg && p->conninfo && strcmp(p->conninfo, conninfo) == 0 &&
                memcmp(&opts, &p->pg_opts, sizeof(opts)) == 0;
    if (!same) {
        PgConn *pg = pgconn_new_msg(p->core->loop, conninfo, &opts, &msg);
        if (!pg) {
            char red[512];
            log_redact_conninfo(conninfo, red, sizeof(red));
            log_error("probe.database", "cannot use conninfo '%s': %s", red, msg ? msg : "out of memory");
            free(msg);
            free(target);
            return DR_ECONFIG;
        }
        if (p->pg) {
            p->pending++;
            pgconn_close(p->pg, probes_on_pg_closed, p);
            p->db.busy = false;
        }
        p->pg = pg;
        p->pg_opts = opts;
        pgconn_set_lost_cb(pg, probes_on_db_lost, &p->db);
        free(p->conninfo);
        p->conninfo = strdup(conninfo);
        probes_dbname(conninfo, p->dbname, sizeof(p->dbname));
        probes_set_target(&p->db, p->dbname[0] ? p->dbname : "default");
    }
    free(target);
    if (p->db.interval_ms != db->probe_interval_ms || !uv_is_active((uv_handle_t *)&p->db.timer)) {
        p->db.interval_ms = db->probe_interval_ms;
        uv_timer_start(&p->db.timer, probes_db_tick, 0, db->probe_interval_ms);
    }
    return 0;
}

static void probes_configure_platform(Probes *p, const Config *cfg)
{
    const ConfigPlatform *pl = &cfg->platform;

    snprintf(p->platform.condition, sizeof(p->platform.condition), "platform.down:%s", cfg->cluster);
    p->platform.down_after = (uint64_t)pl->down_after;
    p->health_timeout_ms = pl->probe_timeout_ms;
    if (!pl->health_url) {
        uv_timer_stop(&p->platform.timer);
        if (p->http_id)
            httpc_cancel(p->core->http, p->http_id);
        free(p->health_url);
        p->health_url = NULL;
        Component *c = status_component(p->core->status, "platform");
        if (c)
            status_set_health(c, HEALTH_DISABLED);
        return;
    }
    if (!p->health_url || strcmp(p->health_url, pl->health_url)) {
        char origin[128];
        free(p->health_url);
        p->health_url = strdup(pl->health_url);
        httpc_redact_url(pl->health_url, origin, sizeof(origin));
        char *cut = strstr(origin, "/\xe2\x80\xa6"); /* the redaction's "/…" for the path */
        if (cut)
            *cut = '\0';
        probes_set_target(&p->platform, origin);
    }
    if (p->platform.interval_ms != pl->probe_interval_ms || !uv_is_active((uv_handle_t *)&p->platform.timer)) {
        p->platform.interval_ms = pl->probe_interval_ms;
        uv_timer_start(&p->platform.timer, probes_platform_tick, 0, pl->probe_interval_ms);
    }
}

/* What probes_configure_db() can refuse, checked before anything is swapped. */
int probes_check_config(const Probes *p, const Config *cfg, char *err, size_t errlen)
{
    char msg[512], red[512];

    (void)p;
    int r = pgconn_check_conninfo(cfg->database.conninfo, msg, sizeof(msg));
    if (r < 0) {
        log_redact_conninfo(cfg->database.conninfo ? cfg->database.conninfo : "", red, sizeof(red));
        snprintf(err, errlen, "cannot use database.conninfo '%s': %s", red, msg[0] ? msg : err_str(r));
    }
    return r;
}

int probes_apply_config(Probes *p, const Config *cfg)
{
    if (p->closing)
        return DR_ECANCELED;
    status_component(p->core->status, "database");
    status_component(p->core->status, "platform");
    int r = probes_configure_db(p, cfg);
    probes_configure_platform(p, cfg);
    return r;
}

static void probes_on_timer_closed(uv_handle_t *h)
{
    Probe *pr = h->data;
    pr->owner->pending--;
    probes_maybe_closed(pr->owner);
}

void probes_close(Probes *p, void (*closed_cb)(void *data), void *data)
{
    p->closing = true;
    p->closed_cb = closed_cb;
    p->closed_data = data;
    if (p->http_id && p->core->http)
        httpc_cancel(p->core->http, p->http_id);
    if (p->pg) {
        p->pending++;
        pgconn_close(p->pg, probes_on_pg_closed, p);
        p->pg = NULL;
    }
    p->pending += 2;
    uv_close((uv_handle_t *)&p->db.timer, probes_on_timer_closed);
    uv_close((uv_handle_t *)&p->platform.timer, probes_on_timer_closed);
}

int probes_set_server(Probes *p, const char *server)
{
    char *copy = server ? strdup(server) : NULL;
    if (server && !copy)
        return -ENOMEM;
    free(p->server);
    p->server = copy;
    if (p->closing)
        return DR_ECANCELED;
    int r = probes_configure_db(p, p->core->cfg);
    if (r == 0 && server)
        log_notice("probe.database", "the liveness probe follows the primary to another server now");
    return r;
}
