/*
 * wal_sync: synchronous archiving (wal.synchronous; see wal_internal.h and docs/wal.md).
 *
 * Owns the primary's synchronous_standby_names as far as the archive is concerned, over its own
 * nonblocking connection (wal.conninfo without replication=true): once the receiver streams and
 * has caught up, ALTER SYSTEM SET synchronous_standby_names = '"<application_name>"' and
 * pg_reload_conf(), so every commit waits until its WAL is sealed in the archive (RPO 0); when the
 * receiver has been down for wal.synchronous_fallback, ALTER SYSTEM RESET and pg_reload_conf()
 * again, so the platform goes on committing (critical page wal.sync:C), and back once caught up.
 * A value the daemon did not set (someone else's standbys) is never changed. When the daemon
 * itself dies, nobody here can fall back: the systemd unit's ExecStopPost runs
 * `drsupervisord --release-sync` (wal_release_sync, blocking, outside the loop), which resets it.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/wal/wal_internal.h"
#include "err.h"
#include "log.h"

enum { WAL_SYNC_SHOW = 1, WAL_SYNC_SET, WAL_SYNC_RESET, WAL_SYNC_RELOAD_ON, WAL_SYNC_RELOAD_OFF };

/* The value the daemon writes: the receiver's application_name, quoted. */
static void wal_sync_value(const ConfigWal *cfg, char *out, size_t n)
{
    snprintf(out, n, "\"%s\"", cfg->application_name);
}

/* wal.conninfo as a normal connection: a database to connect to when it names none. */
static char *wal_sync_conninfo(const ConfigWal *cfg)
{
    char *err = NULL, *s = NULL;
    bool has_db = false;
    PQconninfoOption *opts = PQconninfoParse(cfg->conninfo, &err);
    PQfreemem(err);
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (!strcmp(o->keyword, "dbname") && o->val && o->val[0])
            has_db = true;
    PQconninfoFree(opts);
    bool uri = pgconn_conninfo_is_uri(cfg->conninfo);
    if (has_db || uri)
        return strdup(cfg->conninfo);
    if (asprintf(&s, "%s dbname=postgres", cfg->conninfo) < 0)
        return NULL;
    return s;
}

static void wal_sync_send(WalArchive *w, int step);

static void wal_sync_page(WalArchive *w, bool open, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void wal_sync_page(WalArchive *w, bool open, const char *fmt, ...)
{
    char key[160], text[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    snprintf(key, sizeof(key), "wal.sync:%s", w->core->cfg && w->core->cfg->cluster ? w->core->cfg->cluster : "main");
    if (open == w->sync_page_open)
        return;
    w->sync_page_open = open;
    events_emit(w->core->events, open ? SEV_CRITICAL : SEV_INFO, "wal.sync", key, !open, NULL, "%s", text);
}

static void wal_sync_on_result(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    WalArchive *w = data;
    char want[160];
    (void)c;
    if (status == DR_ECANCELED || w->closing)
        return;
    w->sync_busy = false;
    if (status != 0) {
        log_warning("wal", "synchronous archiving: %s", errmsg ? errmsg : err_str(status));
        snprintf(w->last_error, sizeof(w->last_error), "synchronous_standby_names: %.400s", errmsg ? errmsg : "failed");
        return; /* tried again at the next tick */
    }
    wal_sync_value(&w->cfg, want, sizeof(want));
    switch (w->sync_step) {
    case WAL_SYNC_SHOW: {
        const char *v = res && PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : "";
        if (!strcmp(v, want)) {
            w->sync_on = true; /* set already (a restart without --release-sync) */
            log_info("wal", "synchronous archiving is on (synchronous_standby_names = %s)", v);
        } else if (v[0]) {
            w->sync_foreign = true;
            events_emit(w->core->events, SEV_ERROR, "wal.sync", NULL, false, NULL,
                        "wal.synchronous is not in effect: synchronous_standby_names is '%s', set by someone else; "
                        "the daemon does not change it", v);
        } else {
            wal_sync_send(w, WAL_SYNC_SET);
        }
        return;
    }
    case WAL_SYNC_SET:
        wal_sync_send(w, WAL_SYNC_RELOAD_ON);
        return;
    case WAL_SYNC_RESET:
        wal_sync_send(w, WAL_SYNC_RELOAD_OFF);
        return;
    case WAL_SYNC_RELOAD_ON:
        w->sync_on = true;
        events_emit(w->core->events, SEV_INFO, "wal.sync", NULL, false, NULL,
                    "synchronous archiving on: every commit on the primary waits until its WAL is in the archive");
        wal_sync_page(w, false, "synchronous archiving is back: the archive has caught up");
        return;
    case WAL_SYNC_RELOAD_OFF:
        w->sync_on = false;
        if (!w->cfg.synchronous || w->closing)
            log_info("wal", "synchronous archiving off (synchronous_standby_names reset)");
        return;
    }
}

static void wal_sync_send(WalArchive *w, int step)
{
    static const char *const sql[] = {
        [WAL_SYNC_SHOW] = "SHOW synchronous_standby_names",
        [WAL_SYNC_RESET] = "ALTER SYSTEM RESET synchronous_standby_names",
        [WAL_SYNC_RELOAD_ON] = "SELECT pg_reload_conf()",
        [WAL_SYNC_RELOAD_OFF] = "SELECT pg_reload_conf()",
    };
    char set[256], want[160];
    const char *q = sql[step];
    if (step == WAL_SYNC_SET) {
        wal_sync_value(&w->cfg, want, sizeof(want));
        snprintf(set, sizeof(set), "ALTER SYSTEM SET synchronous_standby_names = '%s'", want);
        q = set;
    }
    if (!w->sync_pg) {
        char *ci = wal_sync_conninfo(&w->cfg);
        PgConnOptions opts = {.connect_timeout_ms = w->cfg.timeout_ms, .query_timeout_ms = w->cfg.timeout_ms,
                              .reconnect_min_ms = 200, .reconnect_max_ms = 2000};
        w->sync_pg = ci ? pgconn_new(w->core->loop, ci, &opts) : NULL;
        free(ci);
        if (!w->sync_pg)
            return;
    }
    w->sync_step = step;
    if (pgconn_query(w->sync_pg, q, 0, NULL, wal_sync_on_result, w) == 0)
        w->sync_busy = true;
}

void wal__sync_tick(WalArchive *w)
{
    uint64_t now = uv_now(w->core->loop);
    if (w->sync_busy || w->closing)
        return;
    if (!w->cfg.synchronous || !w->cfg.enabled) {
        if (w->sync_on)
            wal_sync_send(w, WAL_SYNC_RESET); /* configured off: commits wait no more */
        return;
    }
    if (w->sync_foreign)
        return;
    if (!w->sync_on) {
        /* on once the receiver streams and is caught up: turning it on behind would stall commits */
        if (w->phase == WAL_STREAMING && w->flushed_lsn && w->flushed_lsn >= w->server_lsn && !w->sync_fell_back)
            wal_sync_send(w, WAL_SYNC_SHOW);
        else if (w->sync_fell_back && w->phase == WAL_STREAMING && w->flushed_lsn >= w->server_lsn) {
            w->sync_fell_back = false; /* caught up again after a fall-back */
            wal_sync_send(w, WAL_SYNC_SHOW);
        }
        return;
    }
    if (w->phase != WAL_STREAMING && w->down_since && now - w->down_since >= w->cfg.synchronous_fallback_ms) {
        w->sync_fell_back = true;
        wal_sync_page(w, true, "the WAL receiver has been down for %.1f s (%s): synchronous archiving suspended so "
                      "the platform can commit; the RPO is no longer 0 until it catches up",
                      (double)(now - w->down_since) / 1000.0, w->last_error[0] ? w->last_error : "not streaming");
        wal_sync_send(w, WAL_SYNC_RESET);
    }
}

void wal__sync_stop(WalArchive *w)
{
    if (w->sync_pg) {
        PgConn *pg = w->sync_pg;
        w->sync_pg = NULL;
        pgconn_close(pg, NULL, NULL);
    }
    w->sync_busy = false;
    w->sync_foreign = false;
}

int wal_release_sync(const ConfigWal *cfg, char *msg, size_t n)
{
    char want[160];
    int r = 0;
    if (!cfg->enabled) {
        snprintf(msg, n, "no wal: section: nothing to release");
        return 0;
    }
    char *ci = wal_sync_conninfo(cfg);
    PGconn *c = ci ? PQconnectdb(ci) : NULL;
    free(ci);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        snprintf(msg, n, "cannot connect to the primary: %s", c ? PQerrorMessage(c) : "out of memory");
        PQfinish(c);
        return DR_EDB;
    }
    wal_sync_value(cfg, want, sizeof(want));
    PGresult *res = PQexec(c, "SHOW synchronous_standby_names");
    const char *v = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 ? PQgetvalue(res, 0, 0) : NULL;
    if (!v) {
        snprintf(msg, n, "SHOW synchronous_standby_names: %s", PQerrorMessage(c));
        r = DR_EDB;
    } else if (strcmp(v, want) != 0) {
        snprintf(msg, n, "synchronous_standby_names is '%s': not the archive's, left alone", v);
    } else {
        PQclear(res);
        res = PQexec(c, "ALTER SYSTEM RESET synchronous_standby_names");
        if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            PQclear(res);
            res = PQexec(c, "SELECT pg_reload_conf()");
        }
        if (PQresultStatus(res) != PGRES_TUPLES_OK && PQresultStatus(res) != PGRES_COMMAND_OK) {
            snprintf(msg, n, "cannot reset synchronous_standby_names: %s", PQerrorMessage(c));
            r = DR_EDB;
        } else {
            snprintf(msg, n, "synchronous_standby_names reset: commits no longer wait for the archive");
        }
    }
    PQclear(res);
    PQfinish(c);
    return r;
}
