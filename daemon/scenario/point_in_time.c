/*
 * point_in_time: the point-in-time recovery, as one static table, its definition and its own steps
 * (drctl recover --timestamp T [--manual]; docs/scenarios.md, docs/wal.md).
 *
 * Owns the runbook "the cluster must go back to T": plan (the newest verified base backup before
 * T and continuous WAL to T, wal_plan_decide; refused with the reason before anything is touched),
 * halt trading, restore the base backup into a fresh data directory (verified and decrypted on the
 * thread pool into a `tar -x` child run as the server's user; the directory 0700, owned by the
 * owner of the live data directory), stage the WAL (the segments the replay needs decrypted by the
 * daemon into a spool the server's user owns: the key never leaves the daemon, and restore_command
 * is a plain cp from there), write recovery.signal and the recovery settings (recovery_target_time
 * = T, recovery_target_action = promote), start the server on the side port (pg_ctl, run as the
 * server's user), wait for its promotion (pg_is_in_recovery() polled on a nonblocking connection,
 * bounded by start_timeout; a server that exits meanwhile, pg_ctl status says twice, fails the
 * step at once with its log's FATAL line and end, ctx "server_exit"), validate it, switch it in
 * (the configured switch command, idempotent), reconcile, resume in shadow, then live (a gate in
 * manual mode), then watch.
 *
 * What the run decided is in its context (journaled): "plan" (wal_plan's), "restore" {data_directory,
 * uid, gid, bytes}, "wal" {directory, files, bytes}, "promotion" (or "server_exit" {error, log,
 * log_tail, wait_ms}), "validation", "switch". Every step is safe to run again: the restore starts
 * from an empty directory, staging rewrites its files, the start asks pg_ctl status first, the
 * wait and validation only read, the switch command must be idempotent (its contract).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/wal/wal.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "pgconn.h"
#include "synctree.h"
#include "scenario/point_in_time_internal.h"
#include "scenario/scn_internal.h"
#include "scenario/steps/steps.h"

enum {
    DETECTED,
    PLANNED,
    HALTED,
    RESTORED,
    STAGED,
    STARTED,
    PROMOTED,
    VALIDATED,
    SWITCHED,
    RECONCILED,
    SHADOW,
    LIVE,
    WATCHED,
    NOT_POSSIBLE,
    STAYED_HALTED,
    NOT_RECOVERED,
    NOT_VALIDATED,
    NOT_SWITCHED,
    NOT_RECONCILED,
    WATCH_FAILED,
    HALTED_AFTER_WATCH,
    N_STATES
};

#define PITR_POLL_MS 300u
/* While the base backup is unpacked, the writeback of what tar has written so far is started this
 * often, so that the disk writes during the unpack and the final sync waits only for the tail. */
#define PITR_WRITEBACK_MS 500u

static const PitrConfig *pitr_cfg(const ScnRun *run)
{
    return (const PitrConfig *)((const char *)run->cfg.data + run->def->pitr_config_offset);
}

static PitrRun *pitr_run(const ScnRun *run)
{
    return (PitrRun *)((char *)run->own + run->def->pitr_run_offset);
}

/* The "target_ms" parameter, else the one the run's scenario named in its context. */
static int64_t pitr_target_ms(const ScnRun *run)
{
    const json_t *t = scn_run_param(run, "target_ms");
    if (json_is_integer(t))
        return json_integer_value(t);
    return pitr_run(run)->target_ms ? pitr_run(run)->target_ms(run) : 0;
}

/* The run recovers to the end of what the staged WAL holds (parameter "to_end"): no
 * recovery_target_time; PostgreSQL replays until restore_command finds no next file, then promotes. */
static bool pitr_to_end(const ScnRun *run)
{
    const char *incident = json_string_value(scn_run_param(run, "incident"));
    return json_is_true(scn_run_param(run, "to_end")) ||
           (incident && !strcmp(incident, SCENARIO_INCIDENT_CLUSTER_DAMAGED));
}

/* What the plan is asked for: the target, or the end of the archive. */
static int64_t pitr_plan_target_ms(const ScnRun *run)
{
    return pitr_to_end(run) && !pitr_target_ms(run) ? WAL_PLAN_TO_END : pitr_target_ms(run);
}

/* The point the data goes back to: the target, or (to the end) where the plan found the archive
 * ending; 0 before the plan. */
static int64_t pitr_point_ms(const ScnRun *run)
{
    if (pitr_target_ms(run) || !pitr_to_end(run))
        return pitr_target_ms(run);
    int64_t end = scn_ctx_int(run, "plan", "target_ms");
    return end > 0 ? end : 0;
}

/* Where the replay goes, for people: the target time, or "the end of the archive". */
static const char *pitr_target_said(const ScnRun *run)
{
    const char *t = scn_ctx_str(run, "wal", "recovery_target");
    return t && t[0] ? t : scn_ctx_str(run, "wal", "recovery_target_time");
}

/* T as recovery_target_time: RFC 3339 with "+00" for the "Z", an abbreviation the server cannot
 * read yet when it checks the setting at start ("2026-12-03T10:16:05.123+00"). */
void pitr__target_text(int64_t ms, char *out, size_t n)
{
    char s[40];
    clock_format_utc_ms(ms, s, sizeof(s));
    s[strcspn(s, "Z")] = '\0';
    snprintf(out, n, "%s+00", s);
}

/* The recovered server's conninfo: the admin conninfo on the side port, database dbname. */
char *pitr__side_conninfo(const ScnRun *run, const char *dbname)
{
    char *ci = scn_conninfo_for(run, dbname), *out = NULL;
    if (ci && asprintf(&out, "%s port=%lld", ci, (long long)pitr_cfg(run)->side_port) < 0)
        out = NULL;
    free(ci);
    return out;
}

/* The n strings of list, then prog's (NULL-terminated; may be NULL), as one NULL-terminated argv in v
 * of cap entries (the strings borrowed). */
static const char *const *pitr_vec(const char **v, size_t cap, char *const *list, size_t n, const char *const *prog)
{
    size_t k = 0;
    for (size_t i = 0; i < n && k + 1 < cap; i++)
        v[k++] = list[i];
    for (size_t i = 0; prog && prog[i] && k + 1 < cap; i++)
        v[k++] = prog[i];
    v[k] = NULL;
    return v;
}


/* ---- work on the thread pool ---- */

static void pitr_work_run(uv_work_t *req)
{
    PitrWork *w = req->data;
    w->result = w->fn(w);
}

static void pitr_work_after(uv_work_t *req, int status)
{
    PitrWork *w = req->data;
    if (status < 0 && w->result == 0)
        w->result = status;
    ScnStep *st = w->st;
    if (st->cancelled || fsm_call_cancelled(st->call))
        scn_cancelled(st);
    else
        w->then(st, w);
    free(w);
}

static void pitr_work_queue(ScnStep *st, PitrWork *w, int (*fn)(PitrWork *w), PitrWorkDone then)
{
    w->st = st;
    w->fn = fn;
    w->then = then;
    w->req.data = w;
    int r = uv_queue_work(st->run->core->loop, &w->req, pitr_work_run, pitr_work_after);
    if (r < 0) {
        free(w);
        scn_finish(st, r, "cannot queue work on the thread pool: %s", err_str(r));
    }
}

static PitrWork *pitr_work_new(ScnStep *st)
{
    PitrWork *w = calloc(1, sizeof(*w));
    if (!w) {
        scn_finish(st, -ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(w->live, sizeof(w->live), "%s", pitr_cfg(st->run)->data_directory);
    snprintf(w->dir, sizeof(w->dir), "%s", pitr_run(st->run)->data_dir);
    snprintf(w->wal_dir, sizeof(w->wal_dir), "%s", pitr_run(st->run)->wal_dir);
    w->uid = (uid_t)scn_ctx_int(st->run, "restore", "uid");
    w->gid = (gid_t)scn_ctx_int(st->run, "restore", "gid");
    return w;
}

/* ---- plan_recovery ---- */

static void plan_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the plan: %s", err_str(status));
    else
        scn_finish(st, 0, "base backup '%s', WAL %s to %s (%lld segments)", scn_ctx_str(run, "plan", "base_backup_name"),
                   json_string_value(json_object_get(json_object_get(json_object_get(run->ctx, "plan"), "wal"),
                                                     "from_segment")),
                   json_string_value(json_object_get(json_object_get(json_object_get(run->ctx, "plan"), "wal"),
                                                     "to_segment")),
                   (long long)json_integer_value(json_object_get(json_object_get(json_object_get(run->ctx, "plan"),
                                                                                 "wal"), "segments")));
}

static void plan_made(int status, json_t *plan, const char *err, void *data)
{
    ScnStep *st = data;
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        json_decref(plan);
        scn_cancelled(st);
        return;
    }
    if (status < 0) {
        scn_finish(st, status, "cannot plan the recovery: %s", err);
        return;
    }
    if (!json_is_true(json_object_get(plan, "ok"))) {
        scn_finish(st, DR_ESTATE, "a recovery to the target is not possible: %s (nothing was touched)",
                   json_string_value(json_object_get(plan, "why")));
        json_decref(plan);
        return;
    }
    json_object_set(plan, "base_backup_name", json_object_get(json_object_get(plan, "base_backup"), "name"));
    scn_context_set(st->run, "plan", plan, plan_recorded, st);
}

const char *pitr__unconfigured(const PitrConfig *c, const ScenarioCaps *caps, int64_t target_ms, const char *section,
                               char *buf, size_t n)
{
    const char *key = !c->data_directory ? "data_directory" : !c->side_port ? "side_port"
                      : !c->n_switch_command ? "switch_command" : NULL;
    if (!target_ms)
        return "the run has no target (drctl recover --timestamp T starts it)";
    if (!caps->wal)
        return "there is no WAL archive";
    if (!key)
        return "";
    snprintf(buf, n, "scenarios.%s.%s is not set", section, key);
    return buf;
}

void pitr__step_plan_recovery(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char msg[300], buf[200];
    if (!st)
        return;
    const json_t *made = scn_run_param(st->run, "plan");
    if (json_is_object(made)) { /* made before the run started (complete_disaster's, from the bucket) */
        plan_made(0, json_deep_copy(made), "", st);
        return;
    }
    const char *why = pitr__unconfigured(pitr_cfg(st->run), st->run->caps, pitr_plan_target_ms(st->run), st->run->def->name,
                                         buf, sizeof(buf));
    if (why[0]) {
        scn_finish(st, DR_ECONFIG, "%s (nothing was touched)", why);
        return;
    }
    int r = wal_plan(st->run->caps->wal, pitr_plan_target_ms(st->run), plan_made, st, msg, sizeof(msg));
    if (r < 0)
        scn_finish(st, r, "cannot plan the recovery: %s", msg);
}

/* ---- restore_base_backup ---- */

static void restore_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the restore: %s", err_str(status));
    else
        scn_finish(st, 0, "base backup '%s' unpacked into '%s' (%lld bytes)", scn_ctx_str(run, "plan", "base_backup_name"),
                   pitr_run(run)->data_dir, (long long)scn_ctx_int(run, "restore", "bytes"));
}

/* The tree is on disk: only now is the restore recorded (the step's commit follows the record). */
static void restore_synced(ScnStep *st, PitrWork *w)
{
    if (w->result < 0) {
        scn_finish(st, w->result, "cannot make the unpacked base backup durable: %s", w->err);
        return;
    }
    json_t *r = st->acc; /* {uid, gid} of the live data directory's owner, bytes */
    st->acc = NULL;
    json_object_set_new(r, "data_directory", json_string(pitr_run(st->run)->data_dir));
    json_object_set_new(r, "files_synced", json_integer((json_int_t)w->synced_files));
    json_object_set_new(r, "sync_ms", json_integer((json_int_t)w->sync_ms));
    scn_context_set(st->run, "restore", r, restore_recorded, st);
}

static void restore_unpacked(int status, const char *error, uint64_t bytes, void *data)
{
    ScnStep *st = data;
    st->unpack = NULL;
    synctree_ticker_stop(pitr_run(st->run)->writeback);
    pitr_run(st->run)->writeback = NULL;
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    if (status < 0) {
        scn_finish(st, status, "cannot unpack base backup '%s': %s", scn_ctx_str(st->run, "plan", "base_backup_name"),
                   error);
        return;
    }
    json_object_set_new(st->acc, "bytes", json_integer((json_int_t)bytes));
    PitrWork *w = pitr_work_new(st);
    if (w)
        pitr_work_queue(st, w, pitr__sync_work, restore_synced);
}

/* Core (run-independent; a drill calls it too): base backup `name` verified, decrypted and unpacked
 * by c's tar (run as c's run_as) into data_dir, bounded by c's start_timeout. backup_unpack_base's
 * contract. */
int pitr__unpack_base(Backups *b, const PitrConfig *c, const char *name, const char *data_dir, BackupUnpackDoneFn done,
                      void *data, BackupUnpack **ret)
{
    const char *prog[] = {c->tar, "-x", "-f", "-", "-C", data_dir, NULL};
    const char *v[64];
    return backup_unpack_base(b, name, pitr_vec(v, 64, c->run_as, c->n_run_as, prog), c->start_timeout_ms, done, data,
                              ret);
}

static void restore_prepared(ScnStep *st, PitrWork *w)
{
    if (w->result < 0) {
        scn_finish(st, w->result, "%s", w->err);
        return;
    }
    if (!(st->acc = json_pack("{s:I,s:I}", "uid", (json_int_t)w->uid, "gid", (json_int_t)w->gid))) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    int r = pitr__unpack_base(st->run->caps->backups, pitr_cfg(st->run), scn_ctx_str(st->run, "plan", "base_backup_name"),
                              pitr_run(st->run)->data_dir, restore_unpacked, st, &st->unpack);
    if (r < 0) {
        scn_finish(st, r, "cannot unpack base backup '%s': %s", scn_ctx_str(st->run, "plan", "base_backup_name"),
                   err_str(r));
        return;
    }
    /* Without it the unpack is only slower to sync at the end: no failure, ignoring. */
    pitr_run(st->run)->writeback = synctree_ticker_start(st->run->core->loop, pitr_run(st->run)->data_dir,
                                                         PITR_WRITEBACK_MS);
}

void pitr__step_restore_base_backup(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    PitrWork *w = pitr_work_new(st);
    if (w)
        pitr_work_queue(st, w, pitr__prepare_work, restore_prepared);
}

void pitr__plan_restore_base_backup(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char msg[4600];
    snprintf(msg, sizeof(msg), "would unpack the base backup into '%s' (0700, owned by the owner of '%s')",
             pitr_run(run)->data_dir, pitr_cfg(run)->data_directory ? pitr_cfg(run)->data_directory : "(unset)");
    done(call, 0, msg);
}

/* ---- stage_wal ---- */

static void stage_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the staged WAL: %s", err_str(status));
    else
        scn_finish(st, 0, "%lld WAL files (%lld bytes) staged in '%s'; recovery.signal and the recovery settings "
                   "written (target %s)", (long long)scn_ctx_int(run, "wal", "files"),
                   (long long)scn_ctx_int(run, "wal", "bytes"), pitr_run(run)->wal_dir, pitr_target_said(run));
}

static void stage_settings_written(ScnStep *st, PitrWork *w)
{
    if (w->result < 0) {
        scn_finish(st, w->result, "%s", w->err);
        return;
    }
    json_t *v = st->acc; /* {files, bytes, ...} */
    st->acc = NULL;
    json_object_set_new(v, "directory", json_string(pitr_run(st->run)->wal_dir));
    if (w->target[0])
        json_object_set_new(v, "recovery_target_time", json_string(w->target));
    json_object_set_new(v, "recovery_target", json_string(w->target[0] ? w->target : "the end of the archive"));
    scn_context_set(st->run, "wal", v, stage_recorded, st);
}

void pitr__stage_settle(ScnStep *st, json_t *acc)
{
    st->acc = acc;
    PitrWork *w = pitr_work_new(st);
    if (!w)
        return;
    if (!pitr_to_end(st->run)) {
        pitr__target_text(pitr_target_ms(st->run), w->target, sizeof(w->target));
        w->exclusive = pitr_run(st->run)->exclusive;
    }
    pitr_work_queue(st, w, pitr__settings_work, stage_settings_written);
}

static void stage_done(int status, uint64_t files, uint64_t bytes, const char *err, void *data)
{
    ScnStep *st = data;
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    if (status < 0) {
        scn_finish(st, status, "cannot stage the WAL: %s", err);
        return;
    }
    json_t *acc = json_pack("{s:I,s:I}", "files", (json_int_t)files, "bytes", (json_int_t)bytes);
    if (!acc) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    pitr__stage_settle(st, acc);
}

void pitr__step_stage_wal(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char msg[300];
    if (!st)
        return;
    int r = wal_stage(st->run->caps->wal, json_object_get(st->run->ctx, "plan"), pitr_run(st->run)->wal_dir,
                      (uid_t)scn_ctx_int(st->run, "restore", "uid"), (gid_t)scn_ctx_int(st->run, "restore", "gid"),
                      stage_done, st, msg, sizeof(msg));
    if (r < 0)
        scn_finish(st, r, "cannot stage the WAL: %s", msg);
}

/* ---- start_recovery ---- */

/* Core: run_as + pg_ctl start of the cluster in data_dir on port (its log at log; -W: the caller
 * waits for the promotion itself), into v (cap entries; the strings borrowed, port's text in
 * portbuf). */
const char *const *pitr__pg_ctl_start_argv(const PitrConfig *c, const char *data_dir, const char *log, int64_t port,
                                           char *portbuf, size_t portlen, const char **v, size_t cap)
{
    snprintf(portbuf, portlen, "-p %lld", (long long)port);
    const char *prog[] = {c->pg_ctl, "-D", data_dir, "-l", log, "-o", portbuf, "-W", "start", NULL};
    return pitr_vec(v, cap, c->run_as, c->n_run_as, prog);
}

/* Core: run_as + pg_ctl -D data_dir `verb...` (status; -m immediate stop) into v. */
const char *const *pitr__pg_ctl_argv(const PitrConfig *c, const char *data_dir, const char *const *verb, const char **v,
                                     size_t cap)
{
    const char *prog[16] = {c->pg_ctl, "-D", data_dir};
    size_t k = 3;
    for (size_t i = 0; verb && verb[i] && k + 1 < sizeof(prog) / sizeof(prog[0]); i++)
        prog[k++] = verb[i];
    prog[k] = NULL;
    return pitr_vec(v, cap, c->run_as, c->n_run_as, prog);
}

static void start_exited(ScnStep *st, bool ok, int64_t status, const char *how)
{
    (void)status;
    if (!ok)
        scn_finish(st, DR_ECHILD, "pg_ctl start %s (the server's log: '%s')", how, pitr_run(st->run)->log);
    else
        scn_finish(st, 0, "the recovered server is starting on port %lld, recovering to %s",
                   (long long)pitr_cfg(st->run)->side_port, pitr_target_said(st->run));
}

static void start_status_exited(ScnStep *st, bool ok, int64_t status, const char *how)
{
    char port[32];
    (void)how;
    if (ok) { /* started before a restart */
        scn_finish(st, 0, "the recovered server is running already (port %lld)", (long long)pitr_cfg(st->run)->side_port);
        return;
    }
    (void)status;
    const char *v[64];
    scn_hook_run(st, "pg_ctl start", pitr__pg_ctl_start_argv(pitr_cfg(st->run), pitr_run(st->run)->data_dir,
                                                            pitr_run(st->run)->log, pitr_cfg(st->run)->side_port, port,
                                                            sizeof(port), v, 64),
                 NULL, 60000, start_exited);
}

void pitr__step_start_recovery(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    static const char *const verb[] = {"status", NULL};
    const char *v[64];
    const char *who = lease_port_claimant(st->run->core->lease, (int)pitr_cfg(st->run)->side_port);
    if (who) { /* a drill's scratch cluster (the drill ends within seconds of a run taking the lease) */
        scn_finish(st, DR_EBUSY, "port %lld is held by %s: the recovered server cannot start there yet",
                   (long long)pitr_cfg(st->run)->side_port, who);
        return;
    }
    scn_hook_run(st, "pg_ctl status", pitr__pg_ctl_argv(pitr_cfg(st->run), pitr_run(st->run)->data_dir, verb, v, 64),
                 NULL, 30000, start_status_exited);
}

void pitr__plan_start_recovery(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char msg[600];
    snprintf(msg, sizeof(msg), "would start the recovered server with '%s' on port %lld", pitr_cfg(run)->pg_ctl,
             (long long)pitr_cfg(run)->side_port);
    done(call, 0, msg);
}

/* ---- wait_for_promotion ---- */

static void promotion_poll(ScnStep *st);

/* Core: does the answer to pg_is_in_recovery() say the server was promoted? */
bool pitr__promoted(const PGresult *res)
{
    return res && PQntuples(res) == 1 && PQnfields(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "f");
}

static void promotion_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the promotion: %s", err_str(status));
    else
        scn_finish(st, 0, "the recovered server replayed to %s and was promoted (%lld ms)",
                   pitr_target_said(run), (long long)scn_ctx_int(run, "promotion", "wait_ms"));
}

static void promotion_tick(uv_timer_t *t)
{
    promotion_poll(t->data);
}

/* Finished once the server's exit is recorded (ctx "server_exit": the report has the log's end). */
static void promotion_exit_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    const json_t *x = json_object_get(run->ctx, "server_exit");
    char text[900];
    (void)status; /* the failure is the message either way */
    pitr__server_gone_text(json_string_value(json_object_get(x, "error")) ?: "",
                           json_string_value(json_object_get(x, "log_tail")) ?: "", text, sizeof(text));
    scn_finish(st, DR_ECHILD, "the recovered server stopped before its promotion (pg_ctl status: no server running; "
               "its log '%.200s'): %s", pitr_run(run)->log, text);
}

/* The answer of pitr__server_check after a failed poll: believed gone on the second answer in a row. */
static void promotion_checked(int state, const char *error, const char *tail, void *data)
{
    ScnStep *st = data;
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    st->server_gone = state == 0 ? st->server_gone + 1 : 0;
    if (st->server_gone < 2) {
        uv_timer_start(st->timer, promotion_tick, PITR_POLL_MS, 0);
        return;
    }
    json_t *x = json_pack("{s:s,s:s,s:s,s:I}", "error", error, "log", pitr_run(st->run)->log, "log_tail", tail,
                          "wait_ms", (json_int_t)(uv_now(st->run->core->loop) - st->t0));
    if (!x) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    scn_context_set(st->run, "server_exit", x, promotion_exit_recorded, st);
}

static void promotion_answered(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    uint64_t now = uv_now(st->run->core->loop), waited = now - st->t0;
    bool promoted = status >= 0 && pitr__promoted(res);
    if (promoted) {
        json_t *p = json_pack("{s:I,s:I}", "wait_ms", (json_int_t)waited, "at_ms", (json_int_t)clock_wall_ms());
        scn_context_set(st->run, "promotion", p, promotion_recorded, st);
        return;
    }
    if (waited >= pitr_cfg(st->run)->start_timeout_ms) {
        scn_finish(st, -ETIMEDOUT, "the recovered server was not promoted within start_timeout (%s; its log: '%s')",
                   status < 0 ? (errmsg ? errmsg : err_str(status)) : "still in recovery", pitr_run(st->run)->log);
        return;
    }
    st->reconnect = status < 0; /* a fresh connection next time: the server may only now accept them */
    if (status < 0 && (!st->alive_at || now - st->alive_at >= PITR_ALIVE_EVERY_MS)) {
        /* no answer: is there still a server? (one that exited is not waited for until start_timeout) */
        PitrServerCheck *k;
        st->alive_at = now;
        if (pitr__server_check(st->run->core->loop, pitr_cfg(st->run), pitr_run(st->run)->data_dir,
                               pitr_run(st->run)->log, promotion_checked, st, &k) == 0)
            return;
        /* pg_ctl could not be started: the poll goes on, bounded by start_timeout */
    }
    uv_timer_start(st->timer, promotion_tick, PITR_POLL_MS, 0);
}

static void promotion_poll(ScnStep *st)
{
    if (st->reconnect && st->pg) {
        pgconn_close(st->pg, NULL, NULL);
        st->pg = NULL;
    }
    char *ci = pitr__side_conninfo(st->run, "postgres");
    if (!ci) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    scn_sql(st, ci, "SELECT pg_is_in_recovery()", 0, NULL, promotion_answered);
    free(ci);
}

void pitr__step_wait_for_promotion(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    if (!(st->timer = malloc(sizeof(*st->timer)))) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    uv_timer_init(st->run->core->loop, st->timer);
    st->timer->data = st;
    promotion_poll(st);
}

/* ---- validate_recovery ---- */

void pitr__step_validate_recovery(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char where[200];
    if (!st)
        return;
    char *ci = pitr__side_conninfo(st->run, st->run->database);
    snprintf(where, sizeof(where), "'%s' of the recovered server (port %lld)", st->run->database,
             (long long)pitr_cfg(st->run)->side_port);
    if (!ci)
        scn_finish(st, -ENOMEM, "out of memory");
    else
        scn_validate(st, pitr_cfg(st->run)->validation_queries, pitr_cfg(st->run)->n_validation_queries, ci, where);
    free(ci);
}

void pitr__plan_validate_recovery(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    scn_plan_validation(call, pitr_cfg(run)->validation_queries, pitr_cfg(run)->n_validation_queries,
                        "the recovered server", done);
}

/* ---- switch_cluster ---- */

static void switch_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the switch: %s", err_str(status));
    else
        scn_finish(st, 0, "the recovered cluster is in the live one's place (switch command %s)",
                   scn_ctx_str(run, "switch", "command"));
}

static void switch_unstaged(ScnStep *st, PitrWork *w)
{
    if (w->result < 0)
        log_warning("scenario", "%s, ignoring: remove it by hand", w->err);
    json_t *how = st->acc;
    st->acc = NULL;
    scn_context_set(st->run, "switch", how, switch_recorded, st);
}

static void switch_exited(ScnStep *st, bool ok, int64_t status, const char *how)
{
    (void)status;
    if (!ok) {
        scn_finish(st, DR_ECHILD, "the switch command %s: trading stays halted (the recovered server is on port %lld)",
                   how, (long long)pitr_cfg(st->run)->side_port);
        return;
    }
    if (!(st->acc = json_pack("{s:s,s:I}", "command", how, "ms", (json_int_t)clock_wall_ms()))) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    PitrWork *w = pitr_work_new(st);
    if (w)
        pitr_work_queue(st, w, pitr__unstage_work, switch_unstaged);
}

static void switch_tidied(ScnStep *st, PitrWork *w)
{
    char dir[4200], port[64], run[128], live[4200], pgctl[4200];
    const char *env[] = {dir, port, run, live, pgctl, NULL};
    const PitrConfig *c = pitr_cfg(st->run);
    if (w->result < 0) {
        scn_finish(st, w->result, "%s", w->err);
        return;
    }
    snprintf(dir, sizeof(dir), "DRSUP_RECOVERED_DATA_DIRECTORY=%s", pitr_run(st->run)->data_dir);
    snprintf(port, sizeof(port), "DRSUP_RECOVERED_PORT=%lld", (long long)c->side_port);
    snprintf(run, sizeof(run), "DRSUP_RUN=%s", st->run->id);
    snprintf(live, sizeof(live), "DRSUP_DATA_DIRECTORY=%s", c->data_directory);
    snprintf(pgctl, sizeof(pgctl), "DRSUP_PG_CTL=%s", c->pg_ctl);
    const char *v[64];
    scn_hook_run(st, "switch command", pitr_vec(v, 64, c->switch_command, c->n_switch_command, NULL), env,
                 c->switch_timeout_ms, switch_exited);
}

/* The base backup's settings back, the switch command, then the staged WAL removed. */
void pitr__step_switch_cluster(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    PitrWork *w = pitr_work_new(st);
    if (w)
        pitr_work_queue(st, w, pitr__tidy_work, switch_tidied);
}

void pitr__plan_switch_cluster(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char msg[600];
    snprintf(msg, sizeof(msg), "would run '%s' with DRSUP_RECOVERED_DATA_DIRECTORY, DRSUP_RECOVERED_PORT and DRSUP_RUN",
             pitr_cfg(run)->n_switch_command ? pitr_cfg(run)->switch_command[0] : "(none configured)");
    done(call, 0, msg);
}

/* ---- the table ---- */

static const FsmState pitr_states[N_STATES] = {
    [DETECTED] = {"requested", FSM_STATE_ACTIVE},
    [PLANNED] = {"planned", FSM_STATE_ACTIVE},
    [HALTED] = {"halted", FSM_STATE_ACTIVE},
    [RESTORED] = {"base_backup_restored", FSM_STATE_ACTIVE},
    [STAGED] = {"wal_staged", FSM_STATE_ACTIVE},
    [STARTED] = {"recovery_started", FSM_STATE_ACTIVE},
    [PROMOTED] = {"recovered", FSM_STATE_ACTIVE},
    [VALIDATED] = {"validated", FSM_STATE_ACTIVE},
    [SWITCHED] = {"switched", FSM_STATE_ACTIVE},
    [RECONCILED] = {"reconciled", FSM_STATE_ACTIVE},
    [SHADOW] = {"trading_in_shadow", FSM_STATE_ACTIVE},
    [LIVE] = {"live", FSM_STATE_ACTIVE},
    [WATCHED] = {"watch_passed", FSM_STATE_SUCCESS},
    [NOT_POSSIBLE] = {"not_possible", FSM_STATE_FAILURE},
    [STAYED_HALTED] = {"stayed_halted", FSM_STATE_FAILURE},
    [NOT_RECOVERED] = {"not_recovered", FSM_STATE_FAILURE},
    [NOT_VALIDATED] = {"not_validated", FSM_STATE_FAILURE},
    [NOT_SWITCHED] = {"not_switched", FSM_STATE_FAILURE},
    [NOT_RECONCILED] = {"not_reconciled", FSM_STATE_FAILURE},
    [WATCH_FAILED] = {"watch_failed", FSM_STATE_ACTIVE},
    [HALTED_AFTER_WATCH] = {"halted_after_watch", FSM_STATE_FAILURE},
};

static const FsmRow pitr_rows[] = {
    /* from, to, step, sentence, step fn, probe, plan, cancel, timeout ms, attempts, idempotent, gate, on_failure */
    {DETECTED, PLANNED, "plan_recovery", "a verified base backup and continuous WAL reach the target",
     pitr__step_plan_recovery, NULL, NULL, NULL, 60000, 1, true, FSM_GATE_NONE, NOT_POSSIBLE},
    {PLANNED, HALTED, "halt_trading", "trading is halted and the venue confirms it",
     scn_step_halt_trading, NULL, scn_plan_halt_trading, NULL, 30000, 10, true, FSM_GATE_NONE, FSM_NO_STATE},
    {HALTED, RESTORED, "restore_base_backup", "the base backup is unpacked into a fresh data directory",
     pitr__step_restore_base_backup, NULL, pitr__plan_restore_base_backup, scn_cancel, 6u * 3600u * 1000u, 2, true,
     FSM_GATE_APPROVAL, STAYED_HALTED},
    {RESTORED, STAGED, "stage_wal", "the WAL to the target is staged and the recovery settings written",
     pitr__step_stage_wal, NULL, NULL, NULL, 3600u * 1000u, 5, true, FSM_GATE_NONE, STAYED_HALTED},
    {STAGED, STARTED, "start_recovery", "the recovered server starts on the side port",
     pitr__step_start_recovery, NULL, pitr__plan_start_recovery, scn_cancel, 120000, 2, true, FSM_GATE_NONE,
     NOT_RECOVERED},
    {STARTED, PROMOTED, "wait_for_promotion", "the recovered server replayed to the target and was promoted",
     pitr__step_wait_for_promotion, NULL, NULL, scn_cancel, 7u * 3600u * 1000u, 1, true, FSM_GATE_NONE, NOT_RECOVERED},
    {PROMOTED, VALIDATED, "validate_recovery", "the validation queries pass on the recovered server",
     pitr__step_validate_recovery, NULL, pitr__plan_validate_recovery, scn_cancel, 600000, 2, true, FSM_GATE_NONE, NOT_VALIDATED},
    {VALIDATED, SWITCHED, "switch_cluster", "the recovered cluster takes the live one's place",
     pitr__step_switch_cluster, NULL, pitr__plan_switch_cluster, scn_cancel, 3600u * 1000u, 2, true, FSM_GATE_APPROVAL,
     NOT_SWITCHED},
    {SWITCHED, RECONCILED, "reconcile", "the recovered database matches the exchange's positions and fills",
     scn_step_reconcile, NULL, scn_plan_reconcile, NULL, 600000, 2, true, FSM_GATE_NONE, NOT_RECONCILED},
    {RECONCILED, SHADOW, "resume_shadow", "trading resumes in shadow mode (paper only)",
     scn_step_resume_shadow, NULL, scn_plan_resume_shadow, NULL, 30000, 3, true, FSM_GATE_NONE, FSM_NO_STATE},
    {SHADOW, LIVE, "resume_live", "trading is live again",
     scn_step_resume_live, scn_probe_resume_live, scn_plan_resume_live, scn_cancel, 30000, 3, false, FSM_GATE_APPROVAL,
     FSM_NO_STATE},
    {LIVE, WATCHED, "post_resume_watch", "the recovered database still matches the exchange after the resume",
     scn_step_post_resume_watch, NULL, scn_plan_post_resume_watch, scn_cancel, SCN_WATCH_TIMEOUT_MS, 1, true,
     FSM_GATE_NONE, WATCH_FAILED},
    {WATCH_FAILED, HALTED_AFTER_WATCH, "halt_after_watch", "trading is halted again: the post-resume watch failed",
     scn_step_halt_after_watch, NULL, scn_plan_halt_trading, NULL, 30000, 10, true, FSM_GATE_NONE, FSM_NO_STATE},
};

static const FsmTable pitr_table = {"point_in_time", pitr_states, N_STATES, pitr_rows,
                                    (int)(sizeof(pitr_rows) / sizeof(pitr_rows[0])), NULL, 0};

/* Trading may resume only from this run's own resume steps, after the reconcile committed. */
static bool pitr_may_resume(const ScnRun *run)
{
    return scn_may_resume_in(run, RECONCILED, SHADOW);
}

/* RPO: the data goes back to the target. */
static int64_t pitr_restore_point_ms(const ScnRun *run)
{
    return pitr_point_ms(run);
}

static void pitr_report_extras(const ScnRun *run, json_t *rep)
{
    static const char *const keys[] = {"plan",        "restore",    "wal",   "promotion",
                                       "server_exit", "validation", "switch"};
    json_t *p = json_object();
    if (!p)
        return;
    json_object_set_new(p, "target_ms", json_integer(pitr_point_ms(run)));
    json_object_set_new(p, "to_end", json_boolean(pitr_to_end(run)));
    json_object_set_new(p, "side_port", json_integer(pitr_cfg(run)->side_port));
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const json_t *v = json_object_get(run->ctx, keys[i]);
        json_object_set_new(p, keys[i], v ? json_deep_copy(v) : json_null());
    }
    json_object_set_new(rep, "point_in_time", p);
}

/* Name the run's directories from its tag, under scratch_directory (else data_directory's parent). */
int pitr__ctx_init(ScnRun *run, char *err, size_t errlen)
{
    PitrRun *p = pitr_run(run);
    char parent[4096];
    (void)err;
    (void)errlen;
    pitr__scratch_parent(pitr_cfg(run), parent, sizeof(parent));
    pitr__name_dirs(parent, "pitr", run->tag, p);
    return 0;
}

/* Core: where recovered clusters are built: scratch_directory, else data_directory's parent ("" neither). */
void pitr__scratch_parent(const PitrConfig *c, char *out, size_t n)
{
    out[0] = '\0';
    if (c->scratch_directory)
        snprintf(out, n, "%s", c->scratch_directory);
    else if (c->data_directory) {
        snprintf(out, n, "%s", c->data_directory);
        char *slash = strrchr(out, '/');
        if (slash && slash != out)
            *slash = '\0';
    }
}

/* Core: the directories of a recovered cluster named from prefix and tag under parent. */
void pitr__name_dirs(const char *parent, const char *prefix, const char *tag, PitrRun *p)
{
    snprintf(p->data_dir, sizeof(p->data_dir), "%.4000s/%.20s-%.60s.data", parent, prefix, tag);
    snprintf(p->wal_dir, sizeof(p->wal_dir), "%.4000s/%.20s-%.60s.wal", parent, prefix, tag);
    snprintf(p->log, sizeof(p->log), "%s/pitr-server.log", p->data_dir);
}

/* ---- recover --timestamp T [--manual]: plan first, then the run ---- */

typedef struct PitrRequest {
    Scenarios *s;
    CtlCall *call;
    int64_t target_ms;
    bool manual;
    char reason[200];
} PitrRequest;

static void pitr_request_planned(int status, json_t *plan, const char *err, void *data)
{
    PitrRequest *q = data;
    char id[96], why[512] = "";
    if (status < 0 || q->s->closing) {
        control_reply_error(q->call, status < 0 ? status : DR_ECANCELED, "%s", status < 0 ? err : "the daemon is stopping");
    } else if (!json_is_true(json_object_get(plan, "ok"))) {
        control_reply_error(q->call, DR_ESTATE, "a recovery to the target is not possible: %s (nothing was touched)",
                            json_string_value(json_object_get(plan, "why")));
    } else {
        json_t *params = json_pack("{s:I}", "target_ms", (json_int_t)q->target_ms);
        FsmMode mode = q->manual ? FSM_MODE_MANUAL : FSM_MODE_AUTOMATIC;
        int r = scn_trigger_params(q->s, scenario_point_in_time.name, q->reason, clock_wall_ms(), mode, params, NULL,
                                   id, sizeof(id), why, sizeof(why));
        json_decref(params);
        if (r < 0)
            control_reply_error(q->call, r == -EBUSY ? DR_EBUSY : r, "%s", why);
        else
            control_reply_ok(q->call, json_pack("{s:b,s:s,s:s,s:s,s:O}", "ok", 1, "run", id, "scenario",
                                                scenario_point_in_time.name, "mode", fsm_mode_name(mode), "plan", plan));
    }
    json_decref(plan);
    free(q);
}

void pitr__cmd_recover(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    const json_t *t = json_object_get(args, "timestamp_ms");
    const ConfigScenario *sc = config_scenario(s->core->cfg, scenario_point_in_time.name);
    char msg[300], buf[200];
    if (!json_is_integer(t)) {
        control_reply_error(call, DR_EBADARG, "--timestamp is required");
        return;
    }
    const char *why = sc ? pitr__unconfigured(sc->data, &s->caps, json_integer_value(t), scenario_point_in_time.name,
                                              buf, sizeof(buf))
                         : "no configuration";
    if (why[0]) {
        control_reply_error(call, DR_ECONFIG, "%s: no recovery run (drctl recover --dry-run plans one)", why);
        return;
    }
    if (s->active || s->loading) {
        control_reply_error(call, DR_EBUSY, "%s", s->active ? "a recovery run is already active" : "unfinished runs are "
                                                                                                  "still being loaded");
        return;
    }
    PitrRequest *q = calloc(1, sizeof(*q));
    if (!q) {
        control_reply_error(call, -ENOMEM, "out of memory");
        return;
    }
    const PeerCred *pc = control_call_peer(call);
    q->s = s;
    q->call = call;
    q->target_ms = json_integer_value(t);
    q->manual = json_is_true(json_object_get(args, "manual")) || (sc && sc->manual);
    snprintf(q->reason, sizeof(q->reason), "operator request (uid %ld): recover to %lld", pc ? (long)pc->uid : -1L,
             (long long)q->target_ms);
    int r = wal_plan(s->caps.wal, q->target_ms, pitr_request_planned, q, msg, sizeof(msg));
    if (r < 0) {
        control_reply_error(call, r, "%s", msg);
        free(q);
    }
}

/* A drill (drill_pitr.c) validates the scratch cluster with the scenario's own queries. */
static void pitr_drill_settings(const ConfigScenario *sc, const ConfigBackup *b, ScenarioDrillSettings *ret)
{
    const PitrConfig *c = sc->data;
    (void)b;
    memset(ret, 0, sizeof(*ret));
    if (!c)
        return;
    ret->validation_queries = c->validation_queries;
    ret->n_validation_queries = c->n_validation_queries;
    ret->restore_timeout_ms = c->start_timeout_ms;
}

static const char *const pitr_handles[] = {SCENARIO_INCIDENT_CLUSTER_DAMAGED, NULL};

const ScenarioDef scenario_point_in_time = {
    .name = "point_in_time",
    .short_name = "pitr",
    .summary = "recover the cluster to a point in time from a base backup and the WAL archive, switch it in, "
               "reconcile, resume",
    .table = &pitr_table,
    .handles = pitr_handles, /* drctl recover --timestamp T; a handed-off damaged cluster: to the end */
    .live_step = "resume_live",
    .ctx_size = sizeof(PitrRun),
    .ctx_init = pitr__ctx_init,
    .may_resume = pitr_may_resume,
    .restore_point_ms = pitr_restore_point_ms,
    .report_extras = pitr_report_extras,
    .config = &point_in_time_config_section,
    .drill_settings = pitr_drill_settings,
};
