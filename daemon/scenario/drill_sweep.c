/*
 * drill_sweep: the start-up sweep of scratch databases that database_corruption drills of a killed
 * daemon left (docs/drills.md).
 *
 * Owns one short sequence on the loop, over lib/pgsql's nonblocking connections (lib/pgconn) with
 * the live server's admin conninfo: the server's database names listed, and each one that is
 * exactly a drill's scratch database of the protected database (drill_is_scratch_name:
 * "<db>_drill_" and a tag of the drill's form, nothing else) dropped with DROP DATABASE ... WITH
 * (FORCE), one at a time, each logged. A drill started meanwhile keeps its own. With high
 * availability only the acting leader sweeps (a follower's start must not drop the scratch
 * database of the leader's drill in flight); without ha the daemon always acts. A failure is a
 * warning and the daemon carries on: the leftover stays, to be dropped by hand.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "pgsql.h"
#include "scenario/drill_internal.h"
#include "scenario/drill_rules.h"

#define DRILL_SWEEP_DB_MAX 32

typedef struct DrillDbSweep {
    Drills *ds;
    char *admin;                          /* the live server's admin conninfo (owned) */
    char database[64];                    /* the protected database */
    char names[DRILL_SWEEP_DB_MAX][64];   /* the leftovers found */
    size_t n, i;
} DrillDbSweep;

static void drill_db_sweep_next(DrillDbSweep *sw);

static void drill_db_sweep_free(DrillDbSweep *sw)
{
    Drills *ds = sw->ds;
    free(sw->admin);
    free(sw);
    ds->pending--;
    drill__maybe_closed(ds);
}

static void drill_db_dropped(const PgSqlSeqResult *r, void *data)
{
    DrillDbSweep *sw = data;
    const char *name = sw->names[sw->i];
    if (r->status == 0)
        log_notice("drill", "dropped the leftover scratch database '%s' of a drill the daemon did not finish", name);
    else
        log_warning("drill", "cannot drop the leftover scratch database '%s': %s (drop it by hand)", name,
                    r->errmsg ? r->errmsg : err_str(r->status));
    sw->i++;
    drill_db_sweep_next(sw);
}

static void drill_db_sweep_next(DrillDbSweep *sw)
{
    PgConnOptions opts = {.connect_timeout_ms = 5000, .query_timeout_ms = 60000};
    char q[140], stmt[200];
    while (sw->i < sw->n && !sw->ds->closing) {
        const char *name = sw->names[sw->i];
        const DrillRun *now = sw->ds->run;
        if (now && !now->pitr && !strcmp(now->scratch, name)) { /* a drill started meanwhile: its own */
            sw->i++;
            continue;
        }
        if (pgsql_quote_ident(name, q, sizeof(q)) < 0) {
            sw->i++;
            continue;
        }
        snprintf(stmt, sizeof(stmt), "DROP DATABASE IF EXISTS %s WITH (FORCE)", q);
        const char *s = stmt;
        log_notice("drill", "a scratch database '%s' is left from a drill the daemon did not finish: dropping it", name);
        int r = pgsql_seq_start(sw->ds->core->loop, sw->admin, &opts, &s, 1, drill_db_dropped, sw, NULL);
        if (r == 0)
            return;
        log_warning("drill", "cannot drop the leftover scratch database '%s': %s (drop it by hand)", name, err_str(r));
        sw->i++;
    }
    drill_db_sweep_free(sw);
}

static void drill_db_listed(const PgSqlSeqResult *r, void *data)
{
    DrillDbSweep *sw = data;
    if (r->status != 0 || !r->res) {
        log_warning("drill", "cannot look for leftover scratch databases: %s",
                    r->errmsg ? r->errmsg : err_str(r->status ? r->status : DR_EPROTO));
        drill_db_sweep_free(sw);
        return;
    }
    for (int row = 0; row < PQntuples(r->res) && sw->n < DRILL_SWEEP_DB_MAX; row++) {
        const char *name = PQgetvalue(r->res, row, 0);
        if (drill_is_scratch_name(sw->database, name) && strlen(name) < sizeof(sw->names[0]))
            snprintf(sw->names[sw->n++], sizeof(sw->names[0]), "%s", name);
    }
    drill_db_sweep_next(sw);
}

void drill__db_sweep(Drills *ds)
{
    static const char *const list = "SELECT datname FROM pg_database WHERE datname LIKE '%\\_drill\\_%' ORDER BY 1";
    char err[300];
    if (!leader_acting(ds->core->leader)) {
        log_info("drill", "not the acting leader: leftover scratch databases of drills are the leader's to sweep");
        return;
    }
    DrillDbSweep *sw = calloc(1, sizeof(*sw));
    if (!sw) {
        log_warning("drill", "cannot look for leftover scratch databases: out of memory");
        return;
    }
    sw->ds = ds;
    if (config_scenario_databases(ds->core->cfg, sw->database, sizeof(sw->database), &sw->admin, err, sizeof(err)) < 0) {
        free(sw);
        return; /* no database configured: no drill could have left one */
    }
    ds->pending++;
    PgConnOptions opts = {.connect_timeout_ms = 5000, .query_timeout_ms = 30000};
    int r = pgsql_seq_start(ds->core->loop, sw->admin, &opts, &list, 1, drill_db_listed, sw, NULL);
    if (r < 0) {
        log_warning("drill", "cannot look for leftover scratch databases: %s", err_str(r));
        drill_db_sweep_free(sw);
    }
}
