/*
 * validate: the post-recovery checklist (see validate.h and docs/operations.md).
 *
 * One validation at a time, all on the loop: health (synchronous), the database (its own
 * nonblocking connection: SELECT 1, then backup.verify.validation_queries, each row PASS unless it
 * errs or its first value is false), the reconcile (reconcile_start against database.conninfo,
 * with the exchange's fills since `since_ms`, default an hour ago: it replays what is missing, as
 * drctl reconcile does), then the readiness checks of the backups, the WAL archive and the alerts.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "err.h"
#include "pgconn.h"
#include "scenario/validate.h"

struct Validate {
    Core *core;
    Reconcile *reconcile;
    CtlCall *call;        /* the validation in flight, or NULL */
    json_t *checks;
    PgConn *pg;
    size_t query_i;
    int64_t since_ms;
    bool reconciling;
    bool closing;
    unsigned pending;     /* the connection closing, a reconcile running */
    void (*closed_cb)(void *data);
    void *closed_data;
};

static void validate_row(Validate *v, const char *name, const char *status, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void validate_row(Validate *v, const char *name, const char *status, const char *fmt, ...)
{
    char detail[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    json_array_append_new(v->checks, json_pack("{s:s,s:s,s:s}", "name", name, "status", status, "detail", detail));
}

static void validate_maybe_closed(Validate *v)
{
    if (!v->closing || v->pending)
        return;
    void (*cb)(void *) = v->closed_cb;
    void *cd = v->closed_data;
    json_decref(v->checks);
    free(v);
    if (cb)
        cb(cd);
}

static void validate_pg_closed(void *data)
{
    Validate *v = data;
    v->pending--;
    validate_maybe_closed(v);
}

static void validate_drop_pg(Validate *v)
{
    if (!v->pg)
        return;
    PgConn *pg = v->pg;
    v->pg = NULL;
    v->pending++;
    pgconn_close(pg, validate_pg_closed, v);
}

/* The readiness checks of these areas, as rows. */
static void validate_from_readiness(Validate *v)
{
    static const char *const areas[] = {"backup.", "wal.", "alerts."};
    json_t *r = readiness_run(v->core->readiness);
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(r, "checks"), i, c) {
        const char *name = json_string_value(json_object_get(c, "check"));
        for (size_t a = 0; name && a < sizeof(areas) / sizeof(areas[0]); a++)
            if (!strncmp(name, areas[a], strlen(areas[a])))
                validate_row(v, name, json_string_value(json_object_get(c, "status")), "%s",
                             json_string_value(json_object_get(c, "evidence")));
    }
    json_decref(r);
}

static void validate_finish(Validate *v)
{
    size_t i;
    json_t *c;
    bool ok = true;
    validate_drop_pg(v);
    validate_from_readiness(v);
    json_array_foreach(v->checks, i, c) if (!strcmp(json_string_value(json_object_get(c, "status")), "FAIL")) ok = false;
    CtlCall *call = v->call;
    v->call = NULL;
    control_reply_ok(call, json_pack("{s:b,s:O}", "ok", ok, "checks", v->checks));
    json_decref(v->checks);
    v->checks = NULL;
}

static void validate_on_reconcile(int result, json_t *report, void *data)
{
    Validate *v = data;
    size_t i;
    json_t *c;
    char failed[400] = "";
    size_t len = 0;
    v->pending--;
    v->reconciling = false;
    if (v->closing) {
        json_decref(report);
        validate_maybe_closed(v);
        return;
    }
    json_array_foreach(json_object_get(report, "checks"), i, c) {
        if (strcmp(json_string_value(json_object_get(c, "status")), "PASS") != 0 && len < sizeof(failed))
            len += (size_t)snprintf(failed + len, sizeof(failed) - len, "%s%s", len ? ", " : "",
                                    json_string_value(json_object_get(c, "name")));
    }
    if (result == 0)
        validate_row(v, "reconcile", "PASS", "the database matches the exchange (%zu checks)",
                     json_array_size(json_object_get(report, "checks")));
    else if (result == DR_ESTATE)
        validate_row(v, "reconcile", "FAIL", "failed: %s (drctl reconcile for the report)", failed);
    else
        validate_row(v, "reconcile", "FAIL", "could not run: %s",
                     json_string_value(json_object_get(report, "error")) ? json_string_value(json_object_get(report, "error"))
                                                                        : err_str(result));
    json_decref(report);
    validate_finish(v);
}

static void validate_reconcile(Validate *v)
{
    char id[64];
    const Config *cfg = v->core->cfg;
    if (!cfg->venue.enabled) {
        validate_row(v, "reconcile", "WARN", "no venue: section: positions are not compared with the exchange");
        validate_finish(v);
        return;
    }
    snprintf(id, sizeof(id), "validate-%lld", (long long)clock_wall_ms());
    int r = reconcile_start(v->reconcile, cfg->database.conninfo, v->since_ms, id, validate_on_reconcile, v);
    if (r < 0) {
        validate_row(v, "reconcile", "FAIL", "could not start: %s", err_str(r));
        validate_finish(v);
        return;
    }
    v->reconciling = true;
    v->pending++;
}

static void validate_next_query(Validate *v);

static void validate_on_query(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    Validate *v = data;
    const ConfigBackup *b = &v->core->cfg->backup;
    (void)c;
    if (status == DR_ECANCELED || v->closing)
        return;
    const char *q = v->query_i == 0 ? "SELECT 1" : b->validation_queries[v->query_i - 1];
    char name[32];
    snprintf(name, sizeof(name), v->query_i == 0 ? "database" : "database.query_%zu", v->query_i);
    if (status != 0)
        validate_row(v, name, "FAIL", "%s: %s", q, errmsg ? errmsg : err_str(status));
    else if (res && PQntuples(res) > 0 && PQnfields(res) > 0 && !strcmp(PQgetvalue(res, 0, 0), "f"))
        validate_row(v, name, "FAIL", "%s: its first value is false", q);
    else
        validate_row(v, name, "PASS", "%s: %d row(s)%s%s", q, res ? PQntuples(res) : 0,
                     res && PQntuples(res) > 0 && PQnfields(res) > 0 ? ", first value " : "",
                     res && PQntuples(res) > 0 && PQnfields(res) > 0 ? PQgetvalue(res, 0, 0) : "");
    if (status != 0 && v->query_i == 0) { /* not even connected: the queries would say the same */
        validate_reconcile(v);
        return;
    }
    v->query_i++;
    validate_next_query(v);
}

static void validate_next_query(Validate *v)
{
    const ConfigBackup *b = &v->core->cfg->backup;
    if (v->query_i > 0 && (!b->enabled || v->query_i > b->n_validation_queries)) {
        validate_reconcile(v);
        return;
    }
    const char *q = v->query_i == 0 ? "SELECT 1" : b->validation_queries[v->query_i - 1];
    int r = pgconn_query(v->pg, q, 0, NULL, validate_on_query, v);
    if (r < 0) {
        validate_row(v, "database", "FAIL", "cannot query: %s", err_str(r));
        validate_reconcile(v);
    }
}

static void validate_cmd(CtlCall *call, const json_t *args, void *data)
{
    Validate *v = data;
    const json_t *since = json_object_get(args, "since_ms");
    size_t i;
    const char *key;
    json_t *c;
    if (v->call) {
        control_reply_error(call, DR_EBUSY, "a validation is running already");
        return;
    }
    v->checks = json_array();
    v->call = call;
    v->query_i = 0;
    v->since_ms = json_is_integer(since) ? json_integer_value(since) : clock_wall_ms() - 3600 * 1000;
    /* every component up (or disabled) */
    json_t *comps = status_components_json(v->core->status);
    json_object_foreach(comps, key, c) {
        const char *h = json_string_value(json_object_get(c, "health"));
        if (h && strcmp(h, "disabled") != 0)
            validate_row(v, key, !strcmp(h, "up") ? "PASS" : "FAIL", "%s", h);
    }
    (void)i;
    json_decref(comps);
    PgConnOptions opts = {.connect_timeout_ms = 5000, .query_timeout_ms = 30000};
    char *msg = NULL;
    v->pg = pgconn_new_msg(v->core->loop, v->core->cfg->database.conninfo, &opts, &msg);
    if (!v->pg) {
        validate_row(v, "database", "FAIL", "database.conninfo: %s", msg ? msg : "out of memory");
        free(msg);
        validate_reconcile(v);
        return;
    }
    validate_next_query(v);
}

Validate *validate_new(Core *core, Reconcile *reconcile)
{
    Validate *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->core = core;
    v->reconcile = reconcile;
    CtlCommand cmd = {"validate", true, validate_cmd, v,
                      "the post-recovery checklist: health, database and validation queries, reconcile, backups, "
                      "WAL archive, alerts (args: since_ms)"};
    if (control_register(core->control, &cmd, 1) < 0) {
        free(v);
        return NULL;
    }
    return v;
}

void validate_close(Validate *v, void (*closed_cb)(void *data), void *data)
{
    if (!v)
        return;
    v->closing = true;
    v->closed_cb = closed_cb;
    v->closed_data = data;
    if (v->call) {
        control_reply_error(v->call, DR_ECANCELED, "the daemon is stopping");
        v->call = NULL;
    }
    validate_drop_pg(v);
    validate_maybe_closed(v);
}
