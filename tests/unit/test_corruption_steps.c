/*
 * Unit tests for database_corruption's own steps (daemon/scenario/database_corruption*.c):
 * preserve_evidence, restore_database (from the backup file and from the standby restore),
 * validate_restore, switch_database and put_back_original, and the probes that answer after a
 * crash, each run by the real engine (lib/fsm) over a one-row copy of the scenario's own row.
 *
 * The database server is a fake catalog of databases (name, COMMENT, ALLOW_CONNECTIONS, open
 * sessions): pgconn is replaced at link time (-Wl,--wrap) by a fake that interprets the handful of
 * statements these steps send (the catalog inspection, ALTER DATABASE ... RENAME TO / ALLOW_CONNECTIONS,
 * COMMENT ON DATABASE, pg_terminate_backend) the way PostgreSQL answers them, errors included, and
 * answers on the loop, never inside the call; backup_restore_into is replaced by a fake that creates
 * the database. Faults are injected by statement text. The integration tests run the same steps
 * against a real server; these cover the orders, the idempotence and the failure paths quickly.
 */
// WRAP: pgconn_new pgconn_query pgconn_close pgconn_is_busy backup_restore_into backup_restore_cancel
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "cap/backup/backup.h"
#include "cap/standby.h"
#include "err.h"
#include "fsm.h"
#include "pgconn.h"
#include "scenario/database_corruption_internal.h"
#include "scenario/scn_internal.h"

extern const ScenarioDef scenario_database_corruption;

/* ---- the fake server: a catalog of databases ---- */

typedef struct FakeDb {
    bool used;
    char name[128];
    char comment[400];
    bool allow;
    int sessions;
} FakeDb;

#define MAX_DBS 8
#define MAX_LOG 32

typedef struct FakeServer {
    FakeDb dbs[MAX_DBS];
    char log[MAX_LOG][600];     /* every statement, in order (parameters after " | ") */
    int nlog;
    char conninfo[MAX_LOG][256]; /* the conninfo of each connection opened */
    int nconn;
    char fail_match[96];        /* a statement containing this fails (once per match, all attempts) */
    char validate_answer[8];    /* what a validation query answers ("t" unless set) */
    bool hold;                  /* queries never answer (a step in flight at a "crash") */
    /* backup_restore_into */
    int restores;
    int restore_result;
    bool restore_replace;
    char restore_db[128], restore_name[128];
} FakeServer;

static FakeServer srv;

static FakeDb *db_find(const char *name)
{
    for (int i = 0; i < MAX_DBS; i++)
        if (srv.dbs[i].used && strcmp(srv.dbs[i].name, name) == 0)
            return &srv.dbs[i];
    return NULL;
}

/* The database `name`, which the test expects to exist. */
static FakeDb *db_get(const char *name)
{
    FakeDb *d = db_find(name);
    if (!d) {
        fail_msg("database '%s' does not exist in the fake catalog", name);
        abort();
    }
    return d;
}

static void db_add(const char *name, const char *comment, bool allow, int sessions)
{
    for (int i = 0; i < MAX_DBS; i++)
        if (!srv.dbs[i].used) {
            srv.dbs[i] = (FakeDb){.used = true, .allow = allow, .sessions = sessions};
            snprintf(srv.dbs[i].name, sizeof(srv.dbs[i].name), "%s", name);
            snprintf(srv.dbs[i].comment, sizeof(srv.dbs[i].comment), "%s", comment ? comment : "");
            return;
        }
    fail_msg("fake catalog full");
}

static int n_dbs(void)
{
    int n = 0;
    for (int i = 0; i < MAX_DBS; i++)
        n += srv.dbs[i].used;
    return n;
}

/* The identifier after `*p` ("name", doubled quotes undone); advances *p past it. */
static bool take_ident(const char **p, char *out, size_t n)
{
    const char *s = *p;
    size_t o = 0;
    while (*s == ' ')
        s++;
    if (*s != '"')
        return false;
    for (s++; *s; s++) {
        if (*s == '"') {
            if (s[1] != '"')
                break;
            s++;
        }
        if (o + 1 < n)
            out[o++] = *s;
    }
    if (*s != '"')
        return false;
    out[o] = '\0';
    *p = s + 1;
    return true;
}

static bool starts(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* A result of one row of `n` text columns (NULL: SQL NULL). */
static PGresult *result_row(int n, const char *const *values)
{
    static char colname[] = "c";
    PGresAttDesc att[4];
    char buf[512];
    assert_true(n <= 4);
    for (int i = 0; i < n; i++)
        att[i] = (PGresAttDesc){.name = colname, .typid = 25, .typlen = -1, .atttypmod = -1};
    PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
    assert_non_null(res);
    assert_true(PQsetResultAttrs(res, n, att));
    for (int i = 0; i < n; i++) {
        if (!values[i]) {
            assert_true(PQsetvalue(res, 0, i, NULL, -1));
            continue;
        }
        snprintf(buf, sizeof(buf), "%s", values[i]);
        assert_true(PQsetvalue(res, 0, i, buf, (int)strlen(buf)));
    }
    return res;
}

/* Execute one statement as PostgreSQL would: 0 and a result, or DR_EDB and the server's message. */
static int server_exec(const char *sql, int np, const char *const *params, PGresult **ret, char *err, size_t errlen)
{
    char a[128], b[128];
    const char *p = sql;

    *ret = NULL;
    if (srv.fail_match[0] && strstr(sql, srv.fail_match)) {
        snprintf(err, errlen, "ERROR:  injected failure of \"%s\"", srv.fail_match);
        return DR_EDB;
    }
    if (starts(sql, "SELECT (SELECT count(*) FROM pg_database")) {
        assert_int_equal(np, 4);
        const char *v[4];
        for (int i = 0; i < 4; i++) {
            const FakeDb *d = db_find(params[i]);
            v[i] = i < 2 ? (d ? "1" : "0") : d ? d->comment : NULL;
        }
        *ret = result_row(4, v);
        return 0;
    }
    if (starts(sql, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1")) {
        FakeDb *d = db_find(params[0]);
        char n[16];
        snprintf(n, sizeof(n), "%d", d ? d->sessions : 0);
        if (d)
            d->sessions = 0;
        const char *v[1] = {n};
        *ret = result_row(1, v);
        return 0;
    }
    if (starts(sql, "ALTER DATABASE ")) {
        p += strlen("ALTER DATABASE ");
        assert_true(take_ident(&p, a, sizeof(a)));
        FakeDb *d = db_find(a);
        if (!d) {
            snprintf(err, errlen, "ERROR:  database \"%s\" does not exist", a);
            return DR_EDB;
        }
        if (starts(p, " RENAME TO ")) {
            p += strlen(" RENAME TO ");
            assert_true(take_ident(&p, b, sizeof(b)));
            if (db_find(b)) {
                snprintf(err, errlen, "ERROR:  database \"%s\" already exists", b);
                return DR_EDB;
            }
            if (d->sessions) {
                snprintf(err, errlen, "ERROR:  database \"%s\" is being accessed by other users", a);
                return DR_EDB;
            }
            snprintf(d->name, sizeof(d->name), "%s", b);
        } else if (strcmp(p, " ALLOW_CONNECTIONS false") == 0) {
            d->allow = false;
        } else if (strcmp(p, " ALLOW_CONNECTIONS true") == 0) {
            d->allow = true;
        } else {
            fail_msg("unexpected ALTER DATABASE: %s", sql);
        }
        *ret = PQmakeEmptyPGresult(NULL, PGRES_COMMAND_OK);
        return 0;
    }
    if (starts(sql, "COMMENT ON DATABASE ")) {
        p += strlen("COMMENT ON DATABASE ");
        assert_true(take_ident(&p, a, sizeof(a)));
        FakeDb *d = db_find(a);
        if (!d) {
            snprintf(err, errlen, "ERROR:  database \"%s\" does not exist", a);
            return DR_EDB;
        }
        const char *q = strchr(p, '\'');
        const char *e = q ? strrchr(q + 1, '\'') : NULL;
        assert_non_null(e);
        snprintf(d->comment, sizeof(d->comment), "%.*s", (int)(e - q - 1), q + 1);
        *ret = PQmakeEmptyPGresult(NULL, PGRES_COMMAND_OK);
        return 0;
    }
    /* Anything else is a validation query, run in the restored database: one value. */
    const char *v[1] = {srv.validate_answer[0] ? srv.validate_answer : "t"};
    *ret = result_row(1, v);
    return 0;
}

/* ---- the fake pgconn: one connection, one query at a time, answered on the loop ---- */

struct PgConn {
    uv_timer_t timer;
    PgConnResultCb cb;
    void *data;
    char *sql;
    int np;
    char *params[8];
    bool busy;
};

static int open_conns;

static void fake_conn_clear(PgConn *c)
{
    free(c->sql);
    c->sql = NULL;
    for (int i = 0; i < c->np; i++)
        free(c->params[i]);
    c->np = 0;
    c->busy = false;
}

static void fake_on_timer(uv_timer_t *t)
{
    PgConn *c = t->data;
    char err[512] = "";
    PGresult *res = NULL;
    int status = server_exec(c->sql, c->np, (const char *const *)c->params, &res, err, sizeof(err));
    PgConnResultCb cb = c->cb;
    void *data = c->data;
    fake_conn_clear(c);
    cb(c, status, res, status < 0 ? err : NULL, data);
    PQclear(res);
}

PgConn *__wrap_pgconn_new(uv_loop_t *loop, const char *conninfo, const PgConnOptions *opts);
PgConn *__wrap_pgconn_new(uv_loop_t *loop, const char *conninfo, const PgConnOptions *opts)
{
    (void)opts;
    PgConn *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    assert_true(srv.nconn < MAX_LOG);
    snprintf(srv.conninfo[srv.nconn++], sizeof(srv.conninfo[0]), "%s", conninfo);
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    open_conns++;
    return c;
}

int __wrap_pgconn_query(PgConn *c, const char *sql, int nparams, const char *const *params, PgConnResultCb cb,
                        void *data);
int __wrap_pgconn_query(PgConn *c, const char *sql, int nparams, const char *const *params, PgConnResultCb cb,
                        void *data)
{
    assert_false(c->busy);
    assert_true(nparams <= 8);
    assert_true(srv.nlog < MAX_LOG);
    size_t o = (size_t)snprintf(srv.log[srv.nlog], sizeof(srv.log[0]), "%s", sql);
    for (int i = 0; i < nparams && o < sizeof(srv.log[0]); i++)
        o += (size_t)snprintf(srv.log[srv.nlog] + o, sizeof(srv.log[0]) - o, "%s%s", i ? ", " : " | ", params[i]);
    srv.nlog++;
    c->sql = strdup(sql);
    c->np = nparams;
    for (int i = 0; i < nparams; i++)
        c->params[i] = strdup(params[i]);
    c->cb = cb;
    c->data = data;
    c->busy = true;
    if (!srv.hold)
        uv_timer_start(&c->timer, fake_on_timer, 0, 0);
    return 0;
}

bool __wrap_pgconn_is_busy(const PgConn *c);
bool __wrap_pgconn_is_busy(const PgConn *c)
{
    return c->busy;
}

static void fake_on_closed(uv_handle_t *h)
{
    free(h->data);
    open_conns--;
}

void __wrap_pgconn_close(PgConn *c, void (*closed_cb)(void *data), void *data);
void __wrap_pgconn_close(PgConn *c, void (*closed_cb)(void *data), void *data)
{
    assert_null(closed_cb);
    (void)data;
    if (!c)
        return;
    uv_timer_stop(&c->timer);
    if (c->busy) { /* as the real one: the pending callback runs now, cancelled */
        PgConnResultCb cb = c->cb;
        void *d = c->data;
        fake_conn_clear(c);
        cb(c, DR_ECANCELED, NULL, "cancelled", d);
    }
    uv_close((uv_handle_t *)&c->timer, fake_on_closed);
}

/* ---- the fake backup_restore_into: creates the database, answers on the loop ---- */

struct BackupRestore {
    uv_timer_t timer;
    BackupRestoreDoneFn done;
    void *data;
    bool cancelled;
};

static void restore_on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void restore_on_timer(uv_timer_t *t)
{
    BackupRestore *r = t->data;
    BackupRestoreResult res = {.status = r->cancelled ? DR_ECANCELED : srv.restore_result,
                               .stage = BACKUP_RESTORE_RESTORE,
                               .error = srv.restore_result ? "pg_restore: error: could not read input file" : "",
                               .dropped = true,
                               .drop_error = ""};
    if (res.status == 0)
        db_add(srv.restore_db, "", true, 0);
    r->done(&res, r->data);
    uv_close((uv_handle_t *)&r->timer, restore_on_closed);
}

int __wrap_backup_restore_into(Backups *b, const char *name, const char *sha256_hex, const char *admin_conninfo,
                               const char *dbname, const BackupRestoreOpts *opts, BackupRestoreDoneFn done, void *data,
                               BackupRestore **ret_restore);
int __wrap_backup_restore_into(Backups *b, const char *name, const char *sha256_hex, const char *admin_conninfo,
                               const char *dbname, const BackupRestoreOpts *opts, BackupRestoreDoneFn done, void *data,
                               BackupRestore **ret_restore)
{
    (void)b;
    assert_non_null(sha256_hex);
    assert_string_equal(admin_conninfo, "host=/tmp user=postgres");
    srv.restores++;
    srv.restore_replace = opts->replace;
    snprintf(srv.restore_db, sizeof(srv.restore_db), "%s", dbname);
    snprintf(srv.restore_name, sizeof(srv.restore_name), "%s", name);
    if (opts->replace) { /* DROP DATABASE IF EXISTS */
        FakeDb *d = db_find(dbname);
        if (d)
            d->used = false;
    }
    BackupRestore *r = calloc(1, sizeof(*r));
    assert_non_null(r);
    r->done = done;
    r->data = data;
    uv_timer_init(uv_default_loop(), &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, restore_on_timer, 0, 0);
    if (ret_restore)
        *ret_restore = r;
    return 0;
}

void __wrap_backup_restore_cancel(BackupRestore *r, bool drop_partial);
void __wrap_backup_restore_cancel(BackupRestore *r, bool drop_partial)
{
    (void)drop_partial;
    r->cancelled = true;
}

/* ---- a run of one of the scenario's rows, through the engine ---- */

typedef struct Harness {
    uv_loop_t *loop;
    Config cfg;
    Core core;
    Scenarios s;
    ScnRun *run;
    CorruptionConfig ccfg;
    FsmRun *fsm;
    FsmState states[2];
    FsmRow row;
    FsmTable table;
    char *events[8];   /* what the engine recorded */
    size_t n_events;
    bool finished;
} Harness;

static Harness h;

#define BACKUP_NAME "backup-20261202T110000Z.bcf"
#define BACKUP_SHA "5d41402abc4b2a76b9719d911017c592ae7c4ba1d0c1e0c8e7b1e1d1e1a1b1c1"

static void mem_record(FsmRun *run, const char *ev, FsmRecorded then, void *data)
{
    (void)data;
    assert_true(h.n_events < 8);
    h.events[h.n_events++] = strdup(ev);
    then(run, 0);
}

static void on_notice(FsmRun *run, const FsmNotice *n, void *data)
{
    (void)run;
    (void)data;
    if (n->kind == FSM_NOTICE_FINISHED)
        h.finished = true;
}

static int setup(void **state)
{
    (void)state;
    char err[256];
    memset(&srv, 0, sizeof(srv));
    memset(&h, 0, sizeof(h));
    h.loop = uv_default_loop();
    static char cluster[] = "test";
    h.cfg.cluster = cluster;
    h.core.loop = h.loop;
    h.core.cfg = &h.cfg;
    h.s.core = &h.core;
    h.s.caps.backups = (Backups *)&h; /* fakes: never dereferenced */
    h.run = calloc(1, sizeof(*h.run));
    h.run->s = &h.s;
    h.run->core = &h.core;
    h.run->caps = &h.s.caps;
    h.run->def = &scenario_database_corruption;
    h.run->refs = 1;
    h.run->ctx = json_pack("{s:{s:s,s:s}}", "backup", "name", BACKUP_NAME, "sha256", BACKUP_SHA);
    h.run->reason = strdup("checksum failures");
    h.run->bcfg.enabled = true;
    static char dir[] = "/var/backups/drsupervisor";
    h.run->bcfg.directory = dir;
    h.run->admin_conninfo = strdup("host=/tmp user=postgres");
    snprintf(h.run->id, sizeof(h.run->id), "20261202T120000Z-corruption-ab12");
    snprintf(h.run->tag, sizeof(h.run->tag), "20261202t120000z_ab12");
    snprintf(h.run->database, sizeof(h.run->database), "trading");
    h.ccfg.restore_timeout_ms = 60000;
    h.ccfg.restore_jobs = 2;
    h.run->cfg.def = &corruption_config_section;
    h.run->cfg.data = &h.ccfg;
    h.run->own = calloc(1, scenario_database_corruption.ctx_size);
    assert_int_equal(scenario_database_corruption.ctx_init(h.run, err, sizeof(err)), 0);
    h.s.runs = h.run;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fsm_run_free(h.fsm);
    uv_run(h.loop, UV_RUN_DEFAULT);
    assert_int_equal(open_conns, 0); /* every connection a step opened is closed */
    for (size_t i = 0; i < h.n_events; i++)
        free(h.events[i]);
    json_decref(h.run->ctx);
    free(h.run->reason);
    free(h.run->admin_conninfo);
    free(h.run->own);
    free(h.run);
    return 0;
}

/* The scenario's own row for `step`, as a one-row table (from state 0 to state 1). */
static void use_row(const char *step)
{
    const FsmTable *t = scenario_database_corruption.table;
    const FsmRow *found = NULL;
    for (int i = 0; i < t->row_count; i++)
        if (strcmp(t->rows[i].step_name, step) == 0)
            found = &t->rows[i];
    if (!found) {
        fail_msg("database_corruption has no row '%s'", step);
        abort();
    }
    h.states[0] = (FsmState){"before", FSM_STATE_ACTIVE};
    h.states[1] = (FsmState){"after", FSM_STATE_SUCCESS};
    h.row = *found;
    h.row.from = 0;
    h.row.to = 1;
    h.row.gate = FSM_GATE_NONE;
    h.row.on_failure = FSM_NO_STATE;
    h.table = (FsmTable){"one_step", h.states, 2, &h.row, 1, NULL, 0};
}

static FsmRun *new_fsm(void)
{
    FsmRunOptions o = {.id = h.run->id, .mode = FSM_MODE_AUTOMATIC, .ctx = h.run, .record = mem_record,
                       .notify = on_notice, .backoff_initial_ms = 1, .backoff_max_ms = 2};
    int r = 0;
    char err[256];
    FsmRun *fsm = fsm_run_new(h.loop, &h.table, &o, &r, err, sizeof(err));
    assert_non_null(fsm);
    h.run->fsm = fsm;
    return fsm;
}

/* Until the run finished, or nothing is left to run (a held run waits for an operator). */
static void run_until_finished(void)
{
    while (!h.finished && uv_run(h.loop, UV_RUN_ONCE))
        ;
    assert_true(h.finished || fsm_run_status(h.fsm) == FSM_RUN_HELD);
}

/* Run the row `step` of the scenario; the run's final status. */
static FsmStatus run_row(const char *step)
{
    use_row(step);
    h.fsm = new_fsm();
    assert_int_equal(fsm_run_start(h.fsm), 0);
    run_until_finished();
    return fsm_run_status(h.fsm);
}

/* The row's step is in flight (its first statement sent, never answered) when the daemon "dies":
 * the run is resumed from what was recorded (start, intent), against the catalog as it is then. */
static FsmStatus crash_and_resume(const char *step, void (*change_catalog)(void))
{
    use_row(step);
    srv.hold = true;
    h.fsm = new_fsm();
    assert_int_equal(fsm_run_start(h.fsm), 0);
    while (srv.nlog == 0 && uv_run(h.loop, UV_RUN_ONCE))
        ;
    assert_int_equal(srv.nlog, 1);
    size_t n = h.n_events;
    assert_int_equal(n, 2); /* start, intent */
    fsm_run_free(h.fsm);    /* the step is cancelled: its connection closes */
    uv_run(h.loop, UV_RUN_NOWAIT);
    srv.hold = false;
    srv.nlog = 0;
    if (change_catalog)
        change_catalog();
    const char *evs[2] = {h.events[0], h.events[1]};
    h.fsm = new_fsm();
    char err[256];
    assert_int_equal(fsm_run_resume(h.fsm, evs, 2, err, sizeof(err)), 0);
    run_until_finished();
    return fsm_run_status(h.fsm);
}

static const char *last_message(void)
{
    static char buf[1024];
    json_t *j = fsm_run_to_json(h.fsm);
    json_t *steps = json_object_get(j, "steps");
    const char *m = json_string_value(json_object_get(json_array_get(steps, json_array_size(steps) - 1), "message"));
    snprintf(buf, sizeof(buf), "%s", m ? m : "");
    json_decref(j);
    return buf;
}

static int log_index(const char *prefix)
{
    for (int i = 0; i < srv.nlog; i++)
        if (starts(srv.log[i], prefix))
            return i;
    return -1;
}

static void assert_contains(const char *s, const char *want)
{
    if (!strstr(s, want))
        fail_msg("'%s' does not contain '%s'", s, want);
}

/* ---- preserve_evidence ---- */

static void test_preserve_closes_ends_sessions_then_renames(void **state)
{
    (void)state;
    db_add("trading", "", true, 3);
    assert_int_equal(run_row("preserve_evidence"), FSM_RUN_SUCCEEDED);
    /* The evidence is kept under its new name, closed to new sessions; nothing was dropped. */
    FakeDb *d = db_get("trading_damaged_20261202t120000z_ab12");
    assert_false(d->allow);
    assert_int_equal(d->sessions, 0);
    assert_null(db_find("trading"));
    assert_int_equal(n_dbs(), 1);
    /* In this order: refuse new connections, end the sessions, rename (a rename with sessions fails). */
    int closed = log_index("ALTER DATABASE \"trading\" ALLOW_CONNECTIONS false");
    int ended = log_index("SELECT count(pg_terminate_backend(pid))");
    int renamed = log_index("ALTER DATABASE \"trading\" RENAME TO \"trading_damaged_20261202t120000z_ab12\"");
    assert_true(closed > 0 && ended > closed && renamed > ended);
    assert_contains(srv.log[ended], "| trading");
    assert_contains(last_message(), "is kept as 'trading_damaged_20261202t120000z_ab12'");
    /* Every statement went to the admin connection. */
    for (int i = 0; i < srv.nconn; i++)
        assert_string_equal(srv.conninfo[i], "host=/tmp user=postgres");
}

static void test_preserve_again_changes_nothing(void **state)
{
    (void)state;
    db_add("trading_damaged_20261202t120000z_ab12", "", false, 0);
    assert_int_equal(run_row("preserve_evidence"), FSM_RUN_SUCCEEDED);
    assert_int_equal(srv.nlog, 1); /* the inspection only */
    assert_contains(last_message(), "already preserved");
}

static void test_preserve_refuses_to_guess(void **state)
{
    (void)state;
    db_add("trading", "", true, 0);
    db_add("trading_damaged_20261202t120000z_ab12", "", false, 0);
    assert_int_equal(run_row("preserve_evidence"), FSM_RUN_FAILED);
    assert_contains(last_message(), "refusing to guess which is the evidence");
    assert_non_null(db_find("trading"));
    assert_non_null(db_find("trading_damaged_20261202t120000z_ab12"));
    assert_int_equal(log_index("ALTER"), -1);
}

static void test_preserve_failed_rename_names_the_server_error(void **state)
{
    (void)state;
    db_add("trading", "", true, 1);
    snprintf(srv.fail_match, sizeof(srv.fail_match), "RENAME TO");
    assert_int_equal(run_row("preserve_evidence"), FSM_RUN_FAILED);
    assert_contains(last_message(), "cannot rename the damaged database");
    assert_contains(last_message(), "injected failure");
    assert_non_null(db_find("trading")); /* still there under its name: put_back has nothing to undo */
}

static void test_preserve_nothing_to_preserve(void **state)
{
    (void)state;
    assert_int_equal(run_row("preserve_evidence"), FSM_RUN_FAILED);
    assert_contains(last_message(), "does not exist: nothing to preserve");
}

static void rename_to_damaged(void)
{
    FakeDb *d = db_get("trading");
    snprintf(d->name, sizeof(d->name), "trading_damaged_20261202t120000z_ab12");
    d->allow = false;
}

static void test_preserve_probe_after_crash(void **state)
{
    (void)state;
    /* The rename had taken effect before the crash: the probe says so, nothing runs again. */
    db_add("trading", "", true, 0);
    assert_int_equal(crash_and_resume("preserve_evidence", rename_to_damaged), FSM_RUN_SUCCEEDED);
    assert_int_equal(srv.nlog, 1);
    assert_int_equal(log_index("ALTER"), -1);
    assert_contains(last_message(), "'trading_damaged_20261202t120000z_ab12' exists");
}

static void test_preserve_probe_no_runs_it_again(void **state)
{
    (void)state;
    db_add("trading", "", true, 2);
    assert_int_equal(crash_and_resume("preserve_evidence", NULL), FSM_RUN_SUCCEEDED);
    assert_true(log_index("ALTER DATABASE \"trading\" RENAME TO") > 0);
    assert_non_null(db_find("trading_damaged_20261202t120000z_ab12"));
}

/* ---- restore_database ---- */

#define MARKER SCN_MARKER "20261202T120000Z-corruption-ab12"

static void test_restore_from_the_file_and_mark_complete(void **state)
{
    (void)state;
    assert_int_equal(run_row("restore_database"), FSM_RUN_SUCCEEDED);
    assert_int_equal(srv.restores, 1);
    assert_false(srv.restore_replace);
    assert_string_equal(srv.restore_name, BACKUP_NAME);
    assert_string_equal(srv.restore_db, "trading_restore_20261202t120000z_ab12");
    FakeDb *d = db_get("trading_restore_20261202t120000z_ab12");
    assert_string_equal(d->comment, MARKER);
    assert_contains(last_message(), "restored into 'trading_restore_20261202t120000z_ab12'");
}

static void test_restore_replaces_an_incomplete_one(void **state)
{
    (void)state;
    db_add("trading_restore_20261202t120000z_ab12", "", true, 0); /* not marked: interrupted */
    assert_int_equal(run_row("restore_database"), FSM_RUN_SUCCEEDED);
    assert_int_equal(srv.restores, 1);
    assert_true(srv.restore_replace);
    assert_string_equal(db_get("trading_restore_20261202t120000z_ab12")->comment, MARKER);
}

static void test_restore_complete_is_not_restored_again(void **state)
{
    (void)state;
    db_add("trading_restore_20261202t120000z_ab12", MARKER, true, 0);
    assert_int_equal(run_row("restore_database"), FSM_RUN_SUCCEEDED);
    assert_int_equal(srv.restores, 0);
    assert_contains(last_message(), "already holds the complete restore");
}

static void test_restore_takes_the_standby_that_holds_the_backup(void **state)
{
    (void)state;
    char marker[400];
    standby_marker(BACKUP_NAME, BACKUP_SHA, marker, sizeof(marker));
    h.ccfg.standby = true;
    db_add("trading_drsup_standby", marker, false, 0);
    assert_int_equal(run_row("restore_database"), FSM_RUN_SUCCEEDED);
    assert_int_equal(srv.restores, 0); /* a rename, not a pg_restore */
    assert_null(db_find("trading_drsup_standby"));
    FakeDb *d = db_get("trading_restore_20261202t120000z_ab12");
    assert_true(d->allow);
    assert_string_equal(d->comment, MARKER);
    assert_contains(last_message(), "taken from the standby restore");
}

static void test_restore_ignores_a_standby_of_another_backup(void **state)
{
    (void)state;
    char marker[400];
    standby_marker("backup-20261201T110000Z.bcf", BACKUP_SHA, marker, sizeof(marker));
    h.ccfg.standby = true;
    db_add("trading_drsup_standby", marker, false, 0);
    assert_int_equal(run_row("restore_database"), FSM_RUN_SUCCEEDED);
    assert_int_equal(srv.restores, 1);
    assert_non_null(db_find("trading_drsup_standby")); /* left alone */
}

static void test_restore_falls_back_to_the_file_when_the_standby_rename_fails(void **state)
{
    (void)state;
    char marker[400];
    standby_marker(BACKUP_NAME, BACKUP_SHA, marker, sizeof(marker));
    h.ccfg.standby = true;
    db_add("trading_drsup_standby", marker, false, 1); /* a session in it: the rename fails */
    assert_int_equal(run_row("restore_database"), FSM_RUN_SUCCEEDED);
    assert_int_equal(srv.restores, 1);
    assert_string_equal(db_get("trading_restore_20261202t120000z_ab12")->comment, MARKER);
}

static void test_restore_failure_is_reported(void **state)
{
    (void)state;
    srv.restore_result = DR_ECHILD;
    assert_int_equal(run_row("restore_database"), FSM_RUN_FAILED);
    assert_contains(last_message(), "restore of '" BACKUP_NAME "' into 'trading_restore_20261202t120000z_ab12' failed");
    assert_contains(last_message(), "could not read input file");
    assert_null(db_find("trading_restore_20261202t120000z_ab12"));
}

static void test_restore_without_a_selected_backup(void **state)
{
    (void)state;
    json_object_del(h.run->ctx, "backup");
    assert_int_equal(run_row("restore_database"), FSM_RUN_FAILED);
    assert_contains(last_message(), "no backup was selected");
    assert_int_equal(srv.nlog, 0);
}

static void mark_restore_complete(void)
{
    db_add("trading_restore_20261202t120000z_ab12", MARKER, true, 0);
}

static void unmarked_restore(void)
{
    db_add("trading_restore_20261202t120000z_ab12", "", true, 0);
}

static void test_restore_probe_after_crash(void **state)
{
    (void)state;
    /* Marked complete before the crash: yes, nothing restored again. */
    assert_int_equal(crash_and_resume("restore_database", mark_restore_complete), FSM_RUN_SUCCEEDED);
    assert_int_equal(srv.restores, 0);
    assert_contains(last_message(), "is marked complete");
}

static void test_restore_probe_unknown_holds_the_run(void **state)
{
    (void)state;
    /* Half done (exists, not marked) and the step is not idempotent: the run waits for an operator. */
    assert_int_equal(crash_and_resume("restore_database", unmarked_restore), FSM_RUN_HELD);
    assert_int_equal(srv.restores, 0);
}

/* ---- validate_restore ---- */

static void test_validate_runs_in_the_restored_database(void **state)
{
    (void)state;
    static char q1[] = "SELECT count(*) > 0 FROM orders", q2[] = "SELECT true";
    char *q[] = {q1, q2};
    h.ccfg.validation_queries = q;
    h.ccfg.n_validation_queries = 2;
    assert_int_equal(run_row("validate_restore"), FSM_RUN_SUCCEEDED);
    assert_int_equal(srv.nlog, 2);
    assert_string_equal(srv.log[0], "SELECT count(*) > 0 FROM orders");
    assert_string_equal(srv.conninfo[0], "host=/tmp user=postgres dbname='trading_restore_20261202t120000z_ab12'");
    json_t *v = json_object_get(h.run->ctx, "validation");
    assert_int_equal(json_array_size(v), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(v, 0), "value")), "t");
    assert_contains(last_message(), "2 validation queries passed");
    h.ccfg.validation_queries = NULL;
    h.ccfg.n_validation_queries = 0;
}

static void test_validate_false_fails(void **state)
{
    (void)state;
    snprintf(srv.validate_answer, sizeof(srv.validate_answer), "f");
    assert_int_equal(run_row("validate_restore"), FSM_RUN_FAILED);
    assert_contains(last_message(), "validation query 'SELECT 1' answered false"); /* the default query */
}

static void test_validate_error_fails(void **state)
{
    (void)state;
    snprintf(srv.fail_match, sizeof(srv.fail_match), "SELECT 1");
    assert_int_equal(run_row("validate_restore"), FSM_RUN_FAILED);
    assert_contains(last_message(), "validation query 'SELECT 1' failed: ERROR:  injected failure");
}

/* ---- switch_database ---- */

static void test_switch_renames_the_restore_into_place(void **state)
{
    (void)state;
    db_add("trading_damaged_20261202t120000z_ab12", "", false, 0);
    db_add("trading_restore_20261202t120000z_ab12", MARKER, true, 0);
    assert_int_equal(run_row("switch_database"), FSM_RUN_SUCCEEDED);
    assert_non_null(db_find("trading"));
    assert_string_equal(db_get("trading")->comment, MARKER);
    assert_null(db_find("trading_restore_20261202t120000z_ab12"));
    assert_non_null(db_find("trading_damaged_20261202t120000z_ab12")); /* the evidence stays */
}

static void test_switch_refuses_over_an_existing_database(void **state)
{
    (void)state;
    db_add("trading", "", true, 0); /* something recreated it */
    db_add("trading_restore_20261202t120000z_ab12", MARKER, true, 0);
    assert_int_equal(run_row("switch_database"), FSM_RUN_FAILED);
    assert_contains(last_message(), "exists again: refusing to switch over it");
    assert_int_equal(log_index("ALTER"), -1);
}

static void test_switch_already_done(void **state)
{
    (void)state;
    db_add("trading", MARKER, true, 0);
    assert_int_equal(run_row("switch_database"), FSM_RUN_SUCCEEDED);
    assert_contains(last_message(), "already switched");
    assert_int_equal(log_index("ALTER"), -1);
}

static void switched(void)
{
    FakeDb *d = db_get("trading_restore_20261202t120000z_ab12");
    snprintf(d->name, sizeof(d->name), "trading");
}

static void test_switch_probe_after_crash(void **state)
{
    (void)state;
    db_add("trading_restore_20261202t120000z_ab12", MARKER, true, 0);
    assert_int_equal(crash_and_resume("switch_database", switched), FSM_RUN_SUCCEEDED);
    assert_int_equal(log_index("ALTER"), -1);
    assert_contains(last_message(), "is in place");
}

/* ---- put_back_original ---- */

static void test_put_back_renames_and_reopens_the_original(void **state)
{
    (void)state;
    db_add("trading_damaged_20261202t120000z_ab12", "", false, 0);
    assert_int_equal(run_row("put_back_original"), FSM_RUN_SUCCEEDED);
    FakeDb *d = db_get("trading");
    assert_true(d->allow);
    assert_null(db_find("trading_damaged_20261202t120000z_ab12"));
    assert_true(log_index("ALTER DATABASE \"trading_damaged_20261202t120000z_ab12\" RENAME TO \"trading\"") <
                log_index("ALTER DATABASE \"trading\" ALLOW_CONNECTIONS true"));
    assert_contains(last_message(), "trading stays halted");
}

static void test_put_back_when_never_moved_only_reopens(void **state)
{
    (void)state;
    db_add("trading", "", false, 0); /* the preserve failed after refusing connections */
    assert_int_equal(run_row("put_back_original"), FSM_RUN_SUCCEEDED);
    assert_true(db_get("trading")->allow);
    assert_int_equal(log_index("ALTER DATABASE \"trading_damaged"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_preserve_closes_ends_sessions_then_renames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preserve_again_changes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preserve_refuses_to_guess, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preserve_failed_rename_names_the_server_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preserve_nothing_to_preserve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preserve_probe_after_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_preserve_probe_no_runs_it_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_from_the_file_and_mark_complete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_replaces_an_incomplete_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_complete_is_not_restored_again, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_takes_the_standby_that_holds_the_backup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_ignores_a_standby_of_another_backup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_falls_back_to_the_file_when_the_standby_rename_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_failure_is_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_without_a_selected_backup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_probe_after_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore_probe_unknown_holds_the_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_runs_in_the_restored_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_false_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validate_error_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_switch_renames_the_restore_into_place, setup, teardown),
        cmocka_unit_test_setup_teardown(test_switch_refuses_over_an_existing_database, setup, teardown),
        cmocka_unit_test_setup_teardown(test_switch_already_done, setup, teardown),
        cmocka_unit_test_setup_teardown(test_switch_probe_after_crash, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_back_renames_and_reopens_the_original, setup, teardown),
        cmocka_unit_test_setup_teardown(test_put_back_when_never_moved_only_reopens, setup, teardown),
    };
    return cmocka_run_group_tests_name("corruption_steps", tests, NULL, NULL);
}
