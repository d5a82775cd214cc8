/*
 * drill_pitr: the scratch-cluster drills (drctl drill --scenario point_in_time [--timestamp T],
 * data_loss [--before T], security_breach [--since T]; docs/drills.md): their stage table and its
 * steps, built on point_in_time's run-independent cores (point_in_time_core.h), and the sweep at
 * start of scratch clusters a killed daemon left. Each scenario drills with its own recovery
 * settings (scenarios.point_in_time, scenarios.data_loss, scenarios.security_breach.pitr: the
 * PitrConfig at the def's pitr_config_offset) and its own target rule (drill.c's drill_kind);
 * data_loss also counts the detector's watched tables on the scratch cluster.
 *
 * Owns the drill's scratch cluster: the plan (wal_plan: the newest verified base backup before T,
 * or before the end of the archive, and continuous WAL to it; refused with the plan's reason),
 * the base backup unpacked into <scratch>/drill-<tag>.data (owned by the live data directory's
 * owner, as the real restore), the WAL staged into <scratch>/drill-<tag>.wal and the recovery
 * settings written (archive_mode off: the scratch server never archives into anything), the
 * server started on the drill's own port (drills.point_in_time.port, never the scenario's
 * side_port; claimed on the recovery lease while a server may listen there), its promotion waited for
 * (a server that exits meanwhile fails the wait at once with its log's end), then the shared validate and compare-only reconcile steps
 * on it, and always (success, failure, abort) the server stopped (pg_ctl -m immediate) and both
 * directories removed. The live cluster, its data directory and the scenario's own new data
 * directory are never touched: the scratch names start with "drill-", the real run's "pitr-".
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "child.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "scenario/drill_internal.h"
#include "detect/watched.h"
#include "scenario/point_in_time_core.h"

#define DRILL_PITR_POLL_MS 300u
#define DRILL_PITR_SWEEP_MAX 16

struct DrillPitr {
    PitrConfig c;          /* a copy of scenarios.point_in_time (a reload does not change a drill) */
    char parent[4096];     /* where the scratch cluster is built */
    PitrRun dirs;          /* its data_dir, wal_dir, log */
    int64_t port;          /* the scratch server's port */
    WalArchive *wal;
    uint64_t margin_ms;    /* reconcile.restore_point_margin */
    json_t *plan;          /* wal_plan's */
    int64_t point_ms;      /* the point the data goes back to (T, or the archive's end) */
    int64_t archive_end_ms;
    bool to_end;
    uid_t uid;
    gid_t gid;
    BackupUnpack *unpack;
    ChildProc *child;
    uv_timer_t *timer;     /* the promotion poll (freed in its close callback) */
    bool started;          /* pg_ctl start ran: the server may be up */
    bool stopped, removed;
    bool claimed;          /* the port is claimed on the lease (released once no server can be on it) */
    json_t *promotion;
    json_t *server_exit;   /* the scratch server stopped before its promotion: {error, log, log_tail} */
    uint64_t alive_at;     /* when the server was last checked for (uv_now; 0 never) */
    unsigned server_gone;  /* checks in a row that found it not running */
};

/* The recovery settings a drill of def uses: its section's PitrConfig (security_breach's pitr:
 * subsection, at the def's offset), NULL when the section is absent. */
static const PitrConfig *drill_pitr_settings(const Config *cfg, const ScenarioDef *def)
{
    const ConfigScenario *sc = config_scenario(cfg, def->name);
    return sc && sc->data ? (const PitrConfig *)(const void *)((const char *)sc->data + def->pitr_config_offset) : NULL;
}

/* The scenarios that drill on a scratch cluster (drill.c's drill_kind gives them these stages). */
static const char *const drill_pitr_scenarios[] = {"point_in_time", "data_loss", "security_breach"};

/* One piece of file work on the thread pool for a drill step. */
typedef struct DrillPitrWork {
    PitrWork w; /* its fn is the worker; its req.data is this; its st (an engine step) unused */
    DrillRun *run;
    void (*then)(DrillRun *run, PitrWork *w);
} DrillPitrWork;

static void drill_pitr_work_run(uv_work_t *req)
{
    DrillPitrWork *dw = req->data;
    dw->w.result = dw->w.fn(&dw->w);
}

static void drill_pitr_work_after(uv_work_t *req, int status)
{
    DrillPitrWork *dw = req->data;
    if (status < 0 && dw->w.result == 0)
        dw->w.result = status;
    dw->then(dw->run, &dw->w);
    free(dw);
}

/* fn on the thread pool with the drill's directories; then(run, w) on the loop. */
static void drill_pitr_work(DrillRun *run, int (*fn)(PitrWork *w), void (*then)(DrillRun *run, PitrWork *w),
                            const char *target, const char *extra)
{
    DrillPitr *p = run->pitr;
    DrillPitrWork *dw = calloc(1, sizeof(*dw));
    if (!dw) {
        drill__step_end(run, "FAIL", "out of memory");
        drill__advance(run);
        return;
    }
    dw->run = run;
    dw->then = then;
    dw->w.fn = fn;
    snprintf(dw->w.live, sizeof(dw->w.live), "%s", p->c.data_directory);
    snprintf(dw->w.dir, sizeof(dw->w.dir), "%s", p->dirs.data_dir);
    snprintf(dw->w.wal_dir, sizeof(dw->w.wal_dir), "%s", p->dirs.wal_dir);
    snprintf(dw->w.target, sizeof(dw->w.target), "%s", target ? target : "");
    snprintf(dw->w.extra, sizeof(dw->w.extra), "%s", extra ? extra : "");
    dw->w.uid = p->uid;
    dw->w.gid = p->gid;
    dw->w.exclusive = run->target_exclusive; /* security_breach: just before T */
    dw->w.req.data = dw;
    int r = uv_queue_work(run->ds->core->loop, &dw->w.req, drill_pitr_work_run, drill_pitr_work_after);
    if (r < 0) {
        free(dw);
        drill__step_end(run, "FAIL", "cannot queue work on the thread pool: %s", err_str(r));
        drill__advance(run);
    }
}

/* An abort seen when a step's callback comes back: the step ends ABORTED. */
static bool drill_pitr_aborted(DrillRun *run, const char *what)
{
    if (!run->aborted)
        return false;
    drill__step_end(run, "ABORTED", "%s stopped: %s", what, run->abort_reason);
    drill__advance(run);
    return true;
}

/* ---- plan_recovery ---- */

static void drill_pitr_planned(int status, json_t *plan, const char *err, void *data)
{
    DrillRun *run = data;
    DrillPitr *p = run->pitr;
    char when[40];
    if (status < 0) {
        json_decref(plan);
        if (!drill_pitr_aborted(run, "the plan")) {
            drill__step_end(run, "FAIL", "cannot plan the recovery: %s", err);
            drill__advance(run);
        }
        return;
    }
    p->plan = plan;
    p->archive_end_ms = json_integer_value(json_object_get(plan, "archive_end_ms"));
    if (drill_pitr_aborted(run, "the plan"))
        return;
    if (!json_is_true(json_object_get(plan, "ok"))) {
        drill__step_end(run, "FAIL", "a recovery to %s is not possible: %s", p->to_end ? "the end of the archive" : "the target",
                        json_string_value(json_object_get(plan, "why")));
        drill__advance(run);
        return;
    }
    const json_t *b = json_object_get(plan, "base_backup");
    p->point_ms = json_integer_value(json_object_get(plan, "target_ms"));
    run->since_ms = p->point_ms > (int64_t)p->margin_ms ? p->point_ms - (int64_t)p->margin_ms : 0;
    run->backup = json_pack("{s:s?,s:s?,s:s?,s:I}", "name", json_string_value(json_object_get(b, "name")),
                            "finished_at", json_string_value(json_object_get(b, "finished_at")), "start_lsn",
                            json_string_value(json_object_get(b, "start_lsn")), "file_size_bytes",
                            json_integer_value(json_object_get(b, "file_size_bytes")));
    clock_format_utc_ms(p->point_ms, when, sizeof(when));
    drill__step_end(run, "PASS", "base backup '%s', WAL %s to %s (%lld segments), to %s%s",
                    json_string_value(json_object_get(b, "name")),
                    json_string_value(json_object_get(json_object_get(plan, "wal"), "from_segment")),
                    json_string_value(json_object_get(json_object_get(plan, "wal"), "to_segment")),
                    (long long)json_integer_value(json_object_get(json_object_get(plan, "wal"), "segments")), when,
                    p->to_end ? " (the end of the archive)" : "");
    drill__advance(run);
}

static void drill_pitr_plan(DrillRun *run)
{
    DrillPitr *p = run->pitr;
    char msg[300];
    drill__step_begin(run);
    int r = wal_plan(p->wal, p->to_end ? WAL_PLAN_TO_END : run->target_ms, drill_pitr_planned, run, msg, sizeof(msg));
    if (r < 0) {
        drill__step_end(run, "FAIL", "cannot plan the recovery: %s", msg);
        drill__advance(run);
    }
}

/* ---- restore_base_backup ---- */

static void drill_pitr_unpacked(int status, const char *error, uint64_t bytes, void *data)
{
    DrillRun *run = data;
    run->pitr->unpack = NULL;
    const char *name = json_string_value(json_object_get(run->backup, "name"));
    if (status == DR_ECANCELED || run->aborted) {
        drill__step_end(run, "ABORTED", "the unpack was stopped: %s", run->abort_reason);
    } else if (status < 0) {
        drill__step_end(run, "FAIL", "cannot unpack base backup '%s': %s", name, error);
    } else {
        json_object_set_new(run->backup, "unpacked_bytes", json_integer((json_int_t)bytes));
        drill__step_end(run, "PASS", "base backup '%s' unpacked into '%s' (%llu bytes)", name, run->pitr->dirs.data_dir,
                        (unsigned long long)bytes);
    }
    drill__advance(run);
}

static void drill_pitr_prepared(DrillRun *run, PitrWork *w)
{
    DrillPitr *p = run->pitr;
    if (drill_pitr_aborted(run, "the restore"))
        return;
    if (w->result < 0) {
        drill__step_end(run, "FAIL", "%s", w->err);
        drill__advance(run);
        return;
    }
    p->uid = w->uid;
    p->gid = w->gid;
    int r = pitr__unpack_base(run->ds->backups, &p->c, json_string_value(json_object_get(run->backup, "name")),
                              p->dirs.data_dir, drill_pitr_unpacked, run, &p->unpack);
    if (r < 0) {
        drill__step_end(run, "FAIL", "cannot unpack base backup '%s': %s",
                        json_string_value(json_object_get(run->backup, "name")), err_str(r));
        drill__advance(run);
    }
}

static void drill_pitr_restore(DrillRun *run)
{
    drill__step_begin(run);
    run->scratch_maybe = true; /* from here on the directories are removed whatever happens */
    drill_pitr_work(run, pitr__prepare_work, drill_pitr_prepared, NULL, NULL);
}

/* ---- stage_wal ---- */

static void drill_pitr_settings_written(DrillRun *run, PitrWork *w)
{
    if (drill_pitr_aborted(run, "staging the WAL"))
        return;
    if (w->result < 0)
        drill__step_end(run, "FAIL", "%s", w->err);
    else
        drill__step_end(run, "PASS", "%lld WAL files (%lld bytes) staged in '%s'; recovery settings written (target %s)",
                        (long long)json_integer_value(json_object_get(run->pitr->plan, "staged_files")),
                        (long long)json_integer_value(json_object_get(run->pitr->plan, "staged_bytes")),
                        run->pitr->dirs.wal_dir, w->target[0] ? w->target : "the end of the archive");
    drill__advance(run);
}

/* The scratch server never archives or streams anywhere, whatever the base backup's settings say. */
static const char drill_pitr_extra[] = "# a drill's scratch cluster: nothing leaves it\narchive_mode = 'off'\n"
                                       "primary_conninfo = ''\nsynchronous_standby_names = ''\n";

static void drill_pitr_staged(int status, uint64_t files, uint64_t bytes, const char *err, void *data)
{
    DrillRun *run = data;
    char target[64] = "";
    if (drill_pitr_aborted(run, "staging the WAL"))
        return;
    if (status < 0) {
        drill__step_end(run, "FAIL", "cannot stage the WAL: %s", err);
        drill__advance(run);
        return;
    }
    json_object_set_new(run->pitr->plan, "staged_files", json_integer((json_int_t)files));
    json_object_set_new(run->pitr->plan, "staged_bytes", json_integer((json_int_t)bytes));
    if (!run->pitr->to_end)
        pitr__target_text(run->target_ms, target, sizeof(target));
    drill_pitr_work(run, pitr__settings_work, drill_pitr_settings_written, target, drill_pitr_extra);
}

static void drill_pitr_stage(DrillRun *run)
{
    DrillPitr *p = run->pitr;
    char msg[300];
    drill__step_begin(run);
    int r = wal_stage(p->wal, p->plan, p->dirs.wal_dir, p->uid, p->gid, drill_pitr_staged, run, msg, sizeof(msg));
    if (r < 0) {
        drill__step_end(run, "FAIL", "cannot stage the WAL: %s", msg);
        drill__advance(run);
    }
}

/* ---- start_recovery, stop_scratch: pg_ctl ---- */

typedef void (*DrillPitrExited)(DrillRun *run, bool ok, const char *how);

typedef struct DrillPitrCtl {
    DrillRun *run;
    DrillPitrExited then;
    char what[32];
} DrillPitrCtl;

static void drill_pitr_ctl_exited(ChildProc *c, int64_t status, int sig, void *data)
{
    DrillPitrCtl *pc = data;
    DrillRun *run = pc->run;
    DrillPitrExited then = pc->then;
    char how[600];
    size_t len = 0;
    const char *tail = child_stderr(c, &len);
    while (len && (tail[len - 1] == '\n' || tail[len - 1] == ' '))
        len--;
    if (sig)
        snprintf(how, sizeof(how), "%s was killed by signal %d", pc->what, sig);
    else
        snprintf(how, sizeof(how), "%s exited with status %lld%s%.*s", pc->what, (long long)status, len ? ": " : "",
                 (int)(len > 400 ? 400 : len), len > 400 ? tail + len - 400 : tail);
    bool ok = !sig && status == 0;
    child_free(c);
    run->pitr->child = NULL;
    free(pc);
    then(run, ok, how);
}

static void drill_pitr_ctl(DrillRun *run, const char *what, const char *const *argv, uint64_t timeout_ms,
                           DrillPitrExited then)
{
    DrillPitrCtl *pc = calloc(1, sizeof(*pc));
    int rc = -ENOMEM;
    if (pc) {
        pc->run = run;
        pc->then = then;
        snprintf(pc->what, sizeof(pc->what), "%s", what);
        ChildOptions opt = {.argv = argv, .stdin_mode = CHILD_STDIN_NULL, .stdout_mode = CHILD_STDOUT_CAPTURE,
                            .stdout_limit = 4096, .stderr_limit = 4096, .timeout_ms = timeout_ms,
                            .kill_grace_ms = 1000, .on_exit = drill_pitr_ctl_exited, .data = pc};
        run->pitr->child = child_spawn(run->ds->core->loop, &opt, &rc);
        if (run->pitr->child)
            return;
        free(pc);
    }
    char how[300];
    snprintf(how, sizeof(how), "cannot run %s '%s': %s", what, argv[0], err_str(rc));
    then(run, false, how);
}

static void drill_pitr_start_exited(DrillRun *run, bool ok, const char *how)
{
    if (!ok)
        drill__step_end(run, "FAIL", "%s (the server's log: '%s')", how, run->pitr->dirs.log);
    else if (!drill_pitr_aborted(run, "the start"))
        drill__step_end(run, "PASS", "the scratch server is starting on port %lld", (long long)run->pitr->port);
    else
        return;
    drill__advance(run);
}

static void drill_pitr_start(DrillRun *run)
{
    DrillPitr *p = run->pitr;
    char port[32];
    const char *v[64];
    drill__step_begin(run);
    p->started = true;
    drill_pitr_ctl(run, "pg_ctl start",
                   pitr__pg_ctl_start_argv(&p->c, p->dirs.data_dir, p->dirs.log, p->port, port, sizeof(port), v, 64),
                   60000, drill_pitr_start_exited);
}

static void drill_pitr_stop_exited(DrillRun *run, bool ok, const char *how)
{
    /* pg_ctl stop of a server that is not running: "PID file ... does not exist / Is server running?" */
    bool not_running = !ok && strstr(how, "Is server running");
    if (ok || not_running) {
        run->pitr->stopped = true;
        drill__step_end(run, "PASS", "%s", ok ? "the scratch server stopped" : "the scratch server was not running");
    } else {
        drill__step_end(run, "FAIL", "the scratch server could not be stopped (stop it by hand: pg_ctl -D '%s' stop): %s",
                        run->pitr->dirs.data_dir, how);
    }
    drill__advance(run);
}

static void drill_pitr_stop(DrillRun *run)
{
    DrillPitr *p = run->pitr;
    static const char *const verb[] = {"-m", "immediate", "-w", "-t", "60", "stop", NULL};
    const char *v[64];
    drill__step_begin(run);
    if (!p->started) {
        p->stopped = true;
        drill__step_end(run, "SKIPPED", "the scratch server was never started");
        drill__advance(run);
        return;
    }
    drill_pitr_ctl(run, "pg_ctl stop", pitr__pg_ctl_argv(&p->c, p->dirs.data_dir, verb, v, 64), 70000,
                   drill_pitr_stop_exited);
}

/* ---- wait_for_promotion ---- */

static void drill_pitr_poll(DrillRun *run);
static void drill_pitr_checked(int state, const char *error, const char *tail, void *data);

static void drill_pitr_timer_closed(uv_handle_t *h)
{
    free(h);
}

static void drill_pitr_poll_end(DrillRun *run)
{
    if (run->pitr->timer) {
        uv_close((uv_handle_t *)run->pitr->timer, drill_pitr_timer_closed);
        run->pitr->timer = NULL;
    }
    drill__advance(run);
}

static void drill_pitr_tick(uv_timer_t *t)
{
    drill_pitr_poll(t->data);
}

static void drill_pitr_answered(const PgSqlSeqResult *r, void *data)
{
    DrillRun *run = data;
    DrillPitr *p = run->pitr;
    run->seq = NULL;
    uint64_t waited = uv_now(run->ds->core->loop) - run->t0;
    if (r->status == DR_ECANCELED || run->aborted) {
        drill__step_end(run, "ABORTED", "the wait for the promotion was stopped: %s", run->abort_reason);
        drill_pitr_poll_end(run);
        return;
    }
    if (r->status == 0 && pitr__promoted(r->res)) {
        p->promotion = json_pack("{s:I,s:I}", "wait_ms", (json_int_t)waited, "at_ms", (json_int_t)clock_wall_ms());
        drill__step_end(run, "PASS", "the scratch server replayed to %s and was promoted (%llu ms)",
                        p->to_end ? "the end of the archive" : "the target", (unsigned long long)waited);
        drill_pitr_poll_end(run);
        return;
    }
    if (waited >= p->c.start_timeout_ms) {
        drill__step_end(run, "FAIL", "the scratch server was not promoted within start_timeout (%s; its log: '%s')",
                        r->status < 0 ? (r->errmsg ? r->errmsg : err_str(r->status)) : "still in recovery", p->dirs.log);
        drill_pitr_poll_end(run);
        return;
    }
    uint64_t now = uv_now(run->ds->core->loop);
    if (r->status < 0 && (!p->alive_at || now - p->alive_at >= PITR_ALIVE_EVERY_MS)) {
        PitrServerCheck *k; /* no answer: is there still a server? (one that exited is not waited for) */
        p->alive_at = now;
        if (pitr__server_check(run->ds->core->loop, &p->c, p->dirs.data_dir, p->dirs.log, drill_pitr_checked, run,
                               &k) == 0)
            return;
    }
    uv_timer_start(p->timer, drill_pitr_tick, DRILL_PITR_POLL_MS, 0);
}

/* The answer of pitr__server_check after a failed poll: believed gone on the second in a row. */
static void drill_pitr_checked(int state, const char *error, const char *tail, void *data)
{
    DrillRun *run = data;
    DrillPitr *p = run->pitr;
    char text[460];
    if (run->aborted) {
        drill__step_end(run, "ABORTED", "the wait for the promotion was stopped: %s", run->abort_reason);
        drill_pitr_poll_end(run);
        return;
    }
    p->server_gone = state == 0 ? p->server_gone + 1 : 0;
    if (p->server_gone < 2) {
        uv_timer_start(p->timer, drill_pitr_tick, DRILL_PITR_POLL_MS, 0);
        return;
    }
    json_decref(p->server_exit);
    p->server_exit = json_pack("{s:s,s:s,s:s}", "error", error, "log", p->dirs.log, "log_tail", tail);
    pitr__server_gone_text(error, tail, text, sizeof(text));
    drill__step_end(run, "FAIL", "the scratch server stopped before its promotion (pg_ctl status: no server running; "
                    "its log '%.120s'): %s", p->dirs.log, text);
    drill_pitr_poll_end(run);
}

/* The scratch server's conninfo for dbname: the admin conninfo on the drill's port. Caller frees. */
static char *drill_pitr_conninfo(const DrillRun *run, const char *dbname, const char *more)
{
    char *ci = pgsql_conninfo_dbname(run->admin_conninfo, dbname), *out = NULL;
    if (ci && asprintf(&out, "%s port=%lld%s", ci, (long long)run->pitr->port, more) < 0)
        out = NULL;
    free(ci);
    return out;
}

static void drill_pitr_poll(DrillRun *run)
{
    static const char *const q = "SELECT pg_is_in_recovery()";
    PgConnOptions opts = {.connect_timeout_ms = 5000, .query_timeout_ms = 10000};
    char *ci = drill_pitr_conninfo(run, "postgres", "");
    int r = ci ? pgsql_seq_start(run->ds->core->loop, ci, &opts, &q, 1, drill_pitr_answered, run, &run->seq) : -ENOMEM;
    free(ci);
    if (r < 0) {
        drill__step_end(run, "FAIL", "cannot ask the scratch server: %s", err_str(r));
        drill_pitr_poll_end(run);
    }
}

static void drill_pitr_wait(DrillRun *run)
{
    DrillPitr *p = run->pitr;
    drill__step_begin(run);
    if (!(p->timer = malloc(sizeof(*p->timer)))) {
        drill__step_end(run, "FAIL", "out of memory");
        drill__advance(run);
        return;
    }
    uv_timer_init(run->ds->core->loop, p->timer);
    p->timer->data = run;
    drill_pitr_poll(run);
}

/* ---- remove_scratch ---- */

static void drill_pitr_removed(DrillRun *run, PitrWork *w)
{
    if (w->result < 0) {
        drill__step_end(run, "FAIL", "%s (remove it by hand)", w->err);
    } else {
        run->pitr->removed = true;
        run->scratch_dropped = true;
        drill__step_end(run, "PASS", "'%s' and '%s' removed", run->pitr->dirs.data_dir, run->pitr->dirs.wal_dir);
    }
    drill__advance(run);
}

static void drill_pitr_remove(DrillRun *run)
{
    drill__step_begin(run);
    if (!run->pitr->stopped) { /* a server still running in it: removing its files under it helps no one */
        drill__step_end(run, "FAIL", "'%s' kept: its server could not be stopped", run->pitr->dirs.data_dir);
        drill__advance(run);
        return;
    }
    drill_pitr_work(run, pitr__remove_work, drill_pitr_removed, NULL, NULL);
}

/* ---- the table ---- */

const DrillStageDef drill__pitr_stages[] = {
    /* name, run, rto key, cleanup */
    {"plan_recovery", drill_pitr_plan, "plan_ms", false},
    {"restore_base_backup", drill_pitr_restore, "restore_ms", false},
    {"stage_wal", drill_pitr_stage, "stage_wal_ms", false},
    {"start_recovery", drill_pitr_start, "start_ms", false},
    {"wait_for_promotion", drill_pitr_wait, "replay_ms", false},
    {"validate", drill__validate, "validate_ms", false},
    {"reconcile", drill__reconcile, "reconcile_ms", false},
    {"stop_scratch", drill_pitr_stop, NULL, true},
    {"remove_scratch", drill_pitr_remove, NULL, true},
};
const size_t drill__n_pitr_stages = sizeof(drill__pitr_stages) / sizeof(drill__pitr_stages[0]);

/* ---- preparation, abort, report ---- */

/* The drill's scratch place and port from the configuration: "" and 0 when it has none. */
static void drill_pitr_place(const Config *cfg, const PitrConfig *c, char *parent, size_t n, int64_t *ret_port)
{
    if (cfg->drills.pitr_scratch_directory)
        snprintf(parent, n, "%s", cfg->drills.pitr_scratch_directory);
    else
        pitr__scratch_parent(c, parent, n);
    *ret_port = cfg->drills.pitr_port ? cfg->drills.pitr_port : c->side_port ? c->side_port + 1 : 0;
}

bool drill__pitr_configured(const Config *cfg, const ScenarioDef *def)
{
    for (size_t i = 0; i < sizeof(drill_pitr_scenarios) / sizeof(drill_pitr_scenarios[0]); i++)
        if (!strcmp(def->name, drill_pitr_scenarios[i])) {
            const PitrConfig *c = drill_pitr_settings(cfg, def);
            return c && c->data_directory;
        }
    return true; /* not a scratch-cluster drill */
}

int drill__pitr_check_config(const Config *cfg, char *err, size_t errlen)
{
    for (size_t i = 0; i < sizeof(drill_pitr_scenarios) / sizeof(drill_pitr_scenarios[0]); i++) {
        const ScenarioDef *def = scenario_find(drill_pitr_scenarios[i]);
        const PitrConfig *c = def ? drill_pitr_settings(cfg, def) : NULL;
        if (c && c->side_port && cfg->drills.pitr_port == c->side_port) {
            snprintf(err, errlen, "drills.point_in_time.port %lld is scenarios.%s%s.side_port: a real recovery and a "
                     "drill would collide on it", (long long)c->side_port, def->name,
                     def->pitr_config_offset ? ".pitr" : "");
            return DR_ECONFIG;
        }
    }
    return 0;
}

int drill__pitr_prepare(DrillRun *run, WalArchive *wal, char *err, size_t errlen)
{
    const Config *cfg = run->ds->core->cfg;
    const PitrConfig *c = drill_pitr_settings(cfg, run->def);
    const char *sub = run->def->pitr_config_offset ? ".pitr" : ""; /* security_breach's pitr: subsection */
    if (!wal || !cfg->wal.enabled) {
        snprintf(err, errlen, "there is no WAL archive (no 'wal' section)");
        return DR_ECONFIG;
    }
    if (!c || !c->data_directory) {
        snprintf(err, errlen, "scenarios.%s%s.data_directory is not set%s", run->def->name, sub,
                 sub[0] ? " (without it a breach restores a logical backup: drill database_corruption)" : "");
        return DR_ECONFIG;
    }
    DrillPitr *p = calloc(1, sizeof(*p));
    if (!p || pitr__config_copy(c, &p->c) < 0) {
        free(p);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    run->pitr = p;
    drill_pitr_place(cfg, c, p->parent, sizeof(p->parent), &p->port);
    if (!p->port || p->port > 65535 || (c->side_port && p->port == c->side_port)) {
        snprintf(err, errlen, "%s", !p->port || p->port > 65535
                                        ? "no port for the scratch cluster (drills.point_in_time.port, or "
                                          "the scenario's side_port + 1)"
                                        : "the drill's port is the scenario's side_port: a real recovery could "
                                          "collide with the drill");
        return DR_ECONFIG;
    }
    char who[128];
    snprintf(who, sizeof(who), "drill %s", run->id);
    int r = lease_port_claim(run->ds->core->lease, (int)p->port, who);
    if (r < 0) {
        snprintf(err, errlen, "port %lld for the scratch cluster: %s", (long long)p->port,
                 r == -EADDRINUSE ? lease_port_claimant(run->ds->core->lease, (int)p->port) : err_str(r));
        if (r == -EADDRINUSE)
            snprintf(err + strlen(err), errlen - strlen(err), " holds it");
        return r == -EADDRINUSE ? DR_EBUSY : r;
    }
    p->claimed = true;
    pitr__name_dirs(p->parent, "drill", run->tag, &p->dirs);
    p->wal = wal;
    p->margin_ms = cfg->reconcile.restore_point_margin_ms;
    p->to_end = run->target_ms == 0;
    /* validated on the scratch cluster in the protected database, every transaction read-only */
    snprintf(run->scratch, sizeof(run->scratch), "%s", run->database);
    free(run->scratch_ro);
    run->scratch_ro = drill_pitr_conninfo(run, run->database, " options='-c default_transaction_read_only=on'");
    if (!run->scratch_ro) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    run->restore_timeout_ms = p->c.start_timeout_ms;
    /* data_loss: each watched table's number read on the scratch cluster too (recorded in the
     * validation; an error, e.g. the table missing, fails the drill) */
    for (size_t i = 0; run->count_watched && i < cfg->detector.n_watched_tables; i++) {
        char *q = watched_count_sql(&cfg->detector.watched_tables[i]);
        char **more = q ? realloc(run->queries, (run->n_queries + 1) * sizeof(*more)) : NULL;
        if (!more) {
            free(q);
            snprintf(err, errlen, "out of memory");
            return -ENOMEM;
        }
        more[run->n_queries++] = q;
        run->queries = more;
    }
    return 0;
}

void drill__pitr_abort(DrillRun *run)
{
    DrillPitr *p = run->pitr;
    if (p->unpack)
        backup_unpack_cancel(p->unpack);
    else if (p->timer && uv_is_active((uv_handle_t *)p->timer)) { /* between two polls */
        uv_timer_stop(p->timer);
        drill__step_end(run, "ABORTED", "the wait for the promotion was stopped: %s", run->abort_reason);
        drill_pitr_poll_end(run);
    }
    /* the thread-pool work, wal_plan, wal_stage and pg_ctl start end soon: their callbacks see the abort */
}

void drill__pitr_report(const DrillRun *run, json_t *rep)
{
    const DrillPitr *p = run->pitr;
    const ConfigScenario *sc = config_scenario(run->ds->core->cfg, run->def->name);
    uint64_t rpo_target = sc ? sc->rpo_ms : 0;
    int64_t now = json_integer_value(json_object_get(rep, "started_ms"));
    bool reached = p->archive_end_ms > 0 && (p->to_end || p->archive_end_ms >= run->target_ms);
    json_object_set_new(rep, "scratch_cluster",
                        json_pack("{s:s,s:s,s:I,s:b,s:b,s:b,s:o,s:o}", "data_directory", p->dirs.data_dir, "wal_directory",
                                  p->dirs.wal_dir, "port", (json_int_t)p->port, "started", p->started, "stopped",
                                  p->stopped || !p->started, "removed", p->removed || !run->scratch_maybe, "promotion",
                                  p->promotion ? json_incref(p->promotion) : json_null(), "server_exit",
                                  p->server_exit ? json_incref(p->server_exit) : json_null()));
    json_object_set_new(rep, "plan", p->plan ? json_incref(p->plan) : json_null());
    /* RPO: what a recovery now would lose (the archive's end against the drill's start), or, to a
     * given T, whether the archive reaches it */
    json_t *rpo = json_pack("{s:b,s:o,s:o,s:o}", "to_end", p->to_end, "timestamp_ms",
                            p->to_end ? json_null() : json_integer(run->target_ms), "point_ms",
                            p->point_ms ? json_integer(p->point_ms) : json_null(), "archive_end_ms",
                            p->archive_end_ms ? json_integer(p->archive_end_ms) : json_null());
    int64_t rpo_ms = p->archive_end_ms ? (now > p->archive_end_ms ? now - p->archive_end_ms : 0) : -1;
    json_object_set_new(rpo, "estimate_ms", rpo_ms >= 0 ? json_integer(rpo_ms) : json_null());
    json_object_set_new(rpo, "target_ms", rpo_target ? json_integer((json_int_t)rpo_target) : json_null());
    json_object_set_new(rpo, "met", rpo_ms >= 0 ? json_boolean(!rpo_target || (uint64_t)rpo_ms <= rpo_target)
                                                : json_null());
    json_object_set_new(rpo, "timestamp_reached", p->to_end ? json_null() : json_boolean(reached));
    json_object_set_new(rpo, "exclusive", json_boolean(run->target_exclusive));
    json_object_set_new(rep, "rpo", rpo);
    json_object_set_new(rep, "scratch_database", json_null());
}

void drill__pitr_free(DrillRun *run)
{
    DrillPitr *p = run->pitr;
    if (!p)
        return;
    if (p->claimed && (p->stopped || !p->started)) /* else a server may still listen there: it stays claimed */
        lease_port_release(run->ds->core->lease, (int)p->port);
    pitr__config_done(&p->c);
    json_decref(p->plan);
    json_decref(p->promotion);
    json_decref(p->server_exit);
    free(p);
    run->pitr = NULL;
}

/* ---- the sweep at start: scratch clusters of drills a killed daemon left ---- */

typedef struct DrillSweep {
    Drills *ds;
    uv_work_t req;
    PitrConfig c;
    char parent[4096];
    char names[DRILL_PITR_SWEEP_MAX][256];
    size_t n, i;
    PitrWork w;
} DrillSweep;

static void drill_sweep_next(DrillSweep *sw);

static void drill_sweep_free(DrillSweep *sw)
{
    Drills *ds = sw->ds;
    pitr__config_done(&sw->c);
    free(sw);
    ds->pending--;
    drill__maybe_closed(ds);
}

static void drill_sweep_list(uv_work_t *req)
{
    DrillSweep *sw = req->data;
    DIR *dh = opendir(sw->parent);
    struct dirent *de;
    if (!dh)
        return;
    while ((de = readdir(dh)) && sw->n < DRILL_PITR_SWEEP_MAX) {
        size_t l = strlen(de->d_name);
        if (!strncmp(de->d_name, "drill-", 6) && l > 11 && l < 200 && !strcmp(de->d_name + l - 5, ".data"))
            snprintf(sw->names[sw->n++], sizeof(sw->names[0]), "%.*s", (int)(l - 5), de->d_name);
    }
    closedir(dh);
}

static void drill_sweep_removed(uv_work_t *req, int status)
{
    DrillSweep *sw = req->data;
    if (status < 0 || sw->w.result < 0)
        log_warning("drill", "cannot remove the leftover scratch cluster '%s': %s (remove it by hand)", sw->w.dir,
                    sw->w.err[0] ? sw->w.err : err_str(status < 0 ? status : sw->w.result));
    else
        log_notice("drill", "removed the leftover scratch cluster '%s' of a drill the daemon did not finish", sw->w.dir);
    sw->i++;
    drill_sweep_next(sw);
}

static void drill_sweep_remove_work(uv_work_t *req)
{
    DrillSweep *sw = req->data;
    sw->w.result = pitr__remove_work(&sw->w);
}

static void drill_sweep_stopped(ChildProc *c, int64_t status, int sig, void *data)
{
    DrillSweep *sw = data;
    (void)status;
    (void)sig;
    child_free(c);
    /* stopped, or not running: either way nothing serves from it now; its files go */
    sw->req.data = sw;
    if (uv_queue_work(sw->ds->core->loop, &sw->req, drill_sweep_remove_work, drill_sweep_removed) < 0) {
        sw->i++;
        drill_sweep_next(sw);
    }
}

static void drill_sweep_next(DrillSweep *sw)
{
    static const char *const verb[] = {"-m", "immediate", "-w", "-t", "60", "stop", NULL};
    const char *v[64];
    int rc;
    if (sw->i >= sw->n || sw->ds->closing) {
        drill_sweep_free(sw);
        return;
    }
    const DrillRun *now = sw->ds->run;
    if (now && now->pitr && strstr(now->pitr->dirs.data_dir, sw->names[sw->i])) { /* a drill started meanwhile */
        sw->i++;
        drill_sweep_next(sw);
        return;
    }
    memset(&sw->w, 0, sizeof(sw->w));
    snprintf(sw->w.dir, sizeof(sw->w.dir), "%.3800s/%s.data", sw->parent, sw->names[sw->i]);
    snprintf(sw->w.wal_dir, sizeof(sw->w.wal_dir), "%.3800s/%s.wal", sw->parent, sw->names[sw->i]);
    log_notice("drill", "a scratch cluster '%s' is left from a drill the daemon did not finish: stopping and removing it",
               sw->w.dir);
    ChildOptions opt = {.argv = pitr__pg_ctl_argv(&sw->c, sw->w.dir, verb, v, 64), .stdin_mode = CHILD_STDIN_NULL,
                        .stdout_mode = CHILD_STDOUT_CAPTURE, .stdout_limit = 4096, .stderr_limit = 4096,
                        .timeout_ms = 70000, .kill_grace_ms = 1000, .on_exit = drill_sweep_stopped, .data = sw};
    if (!child_spawn(sw->ds->core->loop, &opt, &rc)) {
        log_warning("drill", "cannot stop the leftover scratch cluster '%s' (pg_ctl: %s): remove it by hand", sw->w.dir,
                    err_str(rc));
        sw->i++;
        drill_sweep_next(sw);
    }
}

static void drill_sweep_listed(uv_work_t *req, int status)
{
    DrillSweep *sw = req->data;
    if (status < 0)
        sw->n = 0;
    drill_sweep_next(sw);
}

/* One sweep of the scratch place of c (a scenario's section) unless an earlier one (done[]) looked there. */
static void drill_pitr_sweep_place(Drills *ds, const PitrConfig *c, char (*done)[4096], size_t *n_done)
{
    const Config *cfg = ds->core->cfg;
    int64_t port;
    char parent[4096];
    drill_pitr_place(cfg, c, parent, sizeof(parent), &port);
    if (!parent[0])
        return;
    for (size_t i = 0; i < *n_done; i++)
        if (!strcmp(done[i], parent))
            return;
    snprintf(done[(*n_done)++], sizeof(done[0]), "%s", parent);
    DrillSweep *sw = calloc(1, sizeof(*sw));
    if (!sw || pitr__config_copy(c, &sw->c) < 0) {
        free(sw);
        log_warning("drill", "cannot look for leftover scratch clusters in '%s': out of memory", parent);
        return;
    }
    sw->ds = ds;
    snprintf(sw->parent, sizeof(sw->parent), "%s", parent);
    sw->req.data = sw;
    ds->pending++;
    if (uv_queue_work(ds->core->loop, &sw->req, drill_sweep_list, drill_sweep_listed) < 0)
        drill_sweep_free(sw);
}

void drill__pitr_sweep(Drills *ds)
{
    enum { N = sizeof(drill_pitr_scenarios) / sizeof(drill_pitr_scenarios[0]) };
    char done[N][4096]; /* the places looked at */
    size_t n_done = 0;
    for (size_t i = 0; i < N; i++) {
        const ScenarioDef *def = scenario_find(drill_pitr_scenarios[i]);
        const PitrConfig *c = def ? drill_pitr_settings(ds->core->cfg, def) : NULL;
        if (c && c->data_directory)
            drill_pitr_sweep_place(ds, c, done, &n_done);
    }
}
