/*
 * steps: the steps every recovery scenario may put in its table (the files of daemon/scenario/steps/).
 *
 * Each is an lib/fsm step (or probe, or dry-run plan) over a ScnRun as the context: asynchronous,
 * safe to run again, acting on the world only through the run's capabilities (run->caps: venue,
 * backups, reconcile). A scenario file names them in its table next to its own steps.
 *
 *   step.c           one invocation (ScnStep): finish, answer, cancel, one SQL statement at a time
 *   halt.c           halt_trading: halted and confirmed by the platform
 *   select_backup.c  select_backup: the newest verified backup is the restore point (ctx "backup");
 *                    bounded: the newest one that finished and was verified before T
 *   reconcile.c      reconcile: the database matches the exchange (ctx "reconcile")
 *   resume.c         resume_shadow, resume_live: through the venue's resume guard
 *   hook.c           a hook or configured command run by a step
 *   validate.c       validation queries on a restored database (ctx "validation")
 *   watch.c          post_resume_watch: reconciles after resume_live (ctx "post_resume_watch"),
 *                    and halt_after_watch: trading halted again when the watch failed
 *   promote.c        promote_standby, repoint_platform, and the reconcile and watch against the new
 *                    primary: a change of primary (primary_failure, switchover)
 *   node.c           a node's server stopped or started (its configured command, or pg_ctl)
 *   fence.c          a fence confirmed by a fresh connection, and the daemon's own fencing
 *                    (failover.self_fence: the node's stop command, then read-only; ctx "self_fence")
 *   standbys.c       repoint_standbys: the other standbys pointed at the new primary (ctx "standbys")
 *   hook.c           a step's configured action (a hook command or an HTTP request) run to its
 *                    confirming outcome
 */
#ifndef DRSUP_SCENARIO_STEPS_H
#define DRSUP_SCENARIO_STEPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <libpq-fe.h>
#include <uv.h>

#include "cap/backup/backup.h"
#include "child.h"
#include "fsm.h"
#include "pgconn.h"
#include "scenario/scn_internal.h"

/* ---- one invocation (step.c) ---- */

typedef struct ScnStep ScnStep;
typedef struct ScnFence ScnFence; /* fence.c's confirmation in flight */
typedef void (*ScnFenceNext)(ScnStep *st);
/* scn_refuse_writes ended: status 0 and the sessions it terminated, or a negative code with what
 * failed and the server's message. */
typedef void (*ScnRefuseDone)(ScnStep *st, int status, long long terminated, const char *what, const char *errmsg);
typedef void (*ScnSqlNext)(ScnStep *st, int status, const PGresult *res, const char *errmsg);

typedef struct ScnDbState {
    bool orig, damaged, restored, restored_complete;
    bool standby;              /* the standby restore's database exists */
    char standby_comment[400]; /* its COMMENT ("" when none) */
} ScnDbState;

struct ScnStep {
    ScnRun *run;
    FsmCall *call;
    FsmDone done;        /* a step or a plan */
    FsmProbeDone pdone;  /* a probe */
    bool cancelled;
    PgConn *pg;
    ScnSqlNext next;
    ScnSqlNext then; /* after scn_inspect */
    ScnDbState db;          /* database_corruption's catalog inspection */
    BackupRestore *restore; /* restore_database: the restore from the backup file */
    ChildProc *child;
    int work_result;
    size_t idx;
    json_t *acc;
    uint64_t t0;
    bool from_standby; /* restore_database took the standby restore */
    uv_timer_t *timer; /* post_resume_watch: the wait for its next check (closed with the step) */
    char *const *queries; /* scn_validate: the queries (borrowed from the run's configuration) */
    size_t n_queries;
    char *conninfo;    /* scn_validate: where they run (owned) */
    char where[160];   /* scn_validate: that place, for people */
    BackupUnpack *unpack; /* point_in_time: the base backup being unpacked */
    bool reconnect;       /* point_in_time: the next poll on a fresh connection */
    unsigned server_gone; /* point_in_time: checks in a row that found its server not running */
    uint64_t alive_at;    /* point_in_time: when its server was last checked (uv_now; 0 never) */
    uint64_t http_id;  /* an HTTP request in flight (lib/httpc), 0 when none: cancelled with the step */
    uint64_t wait_ms;  /* promote: pg_promote's wait; switchover's and rejoin's polls: their deadline */
    uint64_t deadline_ms; /* switchover's and rejoin's polls: the monotonic ms they give up at */
    void *node_op;        /* node.c: the stop or start in flight (freed with the step) */
    void (*node_op_free)(void *op);
    const void *halt;  /* app_crash__halt: the halt's settings (an AppCrashConfig of the run's configuration) */
    char *hook_stdout; /* scn_hook_run: the last command's stdout (its head, at most 4 KiB; owned), or NULL */
    ScnFence *fence;   /* fence.c: the confirmation in flight (freed with the step) */
    ScnFenceNext fence_next; /* fence.c: what follows a record of the daemon's fencing */
    ScnRefuseDone refuse_then; /* fence.c: scn_refuse_writes's caller */
};

/* A new invocation for the step (done) or probe (pdone); NULL after answering "out of memory". */
ScnStep *scn_step_new(FsmCall *call, void *ctx, FsmDone done, FsmProbeDone pdone);
/* End the step with result and message (then free st). */
void scn_finish(ScnStep *st, int result, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Answer the probe (then free st). */
void scn_answer(ScnStep *st, FsmProbeAnswer a, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Call cb(st->timer) in ms (st->timer->data is st); a cancel while waiting ends the step. 0 or -ENOMEM. */
int scn_step_wait(ScnStep *st, uint64_t ms, uv_timer_cb cb);
/* The row's cancel hook: stops the invocation's query, child or verification (it then finishes). */
void scn_cancel(FsmCall *call, void *ctx);
/* The step stopped because it was cancelled (timeout, abort, shutdown). */
void scn_cancelled(ScnStep *st);
/* Finish the step or answer the probe after a failed query. */
void scn_fail_sql(ScnStep *st, int status, const char *what, const char *errmsg);
/* Run sql on the connection to `conninfo` (admin when NULL), then next(). */
void scn_sql(ScnStep *st, const char *conninfo, const char *sql, int np, const char *const *params, ScnSqlNext next);

/* ---- a configured action (hook.c) ---- */

/* The action ended: ok when it confirmed (exit 0 in time, HTTP 2xx); status the exit status or the
 * HTTP status (-1 when there was none); how says what happened, for people (with the end of a
 * command's stderr). A cancelled step finishes as cancelled instead. */
typedef void (*ScnHookDone)(ScnStep *st, bool ok, int64_t status, const char *how);
/* Run argv (NULL-terminated) with env (NULL-terminated NAME=value additions, may be NULL), killed
 * after timeout_ms, then then(); a program that cannot be started finishes the step. `what` names
 * it in messages. */
void scn_hook_run(ScnStep *st, const char *what, const char *const *argv, const char *const *env, uint64_t timeout_ms,
                  ScnHookDone then);
/* Send method (NULL: POST) url with body (JSON, may be NULL) within timeout_ms, then then(). */
void scn_hook_http(ScnStep *st, const char *what, const char *method, const char *url, const char *body,
                   uint64_t timeout_ms, ScnHookDone then);

/* ---- the shared steps ---- */


void scn_step_halt_trading(FsmCall *call, void *ctx, FsmDone done);
void scn_plan_halt_trading(FsmCall *call, void *ctx, FsmDone done);

void scn_step_select_backup(FsmCall *call, void *ctx, FsmDone done);
void scn_plan_select_backup(FsmCall *call, void *ctx, FsmDone done);
/* The same bounded: the newest backup that finished and was verified before before_ms (wall ms;
 * 0: no bound), for a scenario's own row function that knows its T (security_breach's --since). */
void scn_step_select_backup_before(FsmCall *call, void *ctx, int64_t before_ms, FsmDone done);
void scn_plan_select_backup_before(FsmCall *call, void *ctx, int64_t before_ms, FsmDone done);
/* The chosen backup's start (wall ms), 0 before select_backup: a ScenarioDef.restore_point_ms. */
int64_t scn_backup_restore_point_ms(const ScnRun *run);

/* validate.c: run queries[0..n) (n 0: "SELECT 1") one at a time on conninfo; each answer is recorded
 * in ctx "validation"; an error or a false answer fails the step, else it finishes naming `where`
 * ("'trading_restore_x'", "the recovered cluster on port 5433"). */
void scn_validate(ScnStep *st, char *const *queries, size_t n, const char *conninfo, const char *where);
/* Its dry-run plan: the queries it would run in `where`. */
void scn_plan_validation(FsmCall *call, char *const *queries, size_t n, const char *where, FsmDone done);

void scn_step_reconcile(FsmCall *call, void *ctx, FsmDone done);
/* The exchange's fills the run's reconcile (and its post-resume watch) compares from, wall ms: the
 * chosen logical backup's start; else, for a run restored to a point in time (the scenario's
 * restore_point_ms), that point minus reconcile.restore_point_margin; else 0 (every fill). */
int64_t scn_reconcile_since_ms(const ScnRun *run);
void scn_plan_reconcile(FsmCall *call, void *ctx, FsmDone done);

void scn_step_resume_shadow(FsmCall *call, void *ctx, FsmDone done);
void scn_plan_resume_shadow(FsmCall *call, void *ctx, FsmDone done);
void scn_step_resume_live(FsmCall *call, void *ctx, FsmDone done);
void scn_probe_resume_live(FsmCall *call, void *ctx, FsmProbeDone done);
void scn_plan_resume_live(FsmCall *call, void *ctx, FsmDone done);

/* post_resume_watch (watch.c): after resume_live, a reconcile at each of reconcile.post_resume_checks
 * (the plan is taken from the configuration when the watch starts and kept in ctx
 * "post_resume_watch" with every check and attempt, so a restart resumes the watch where it was,
 * on the same schedule). Missing fills are replayed; a check passes when one of its attempts (up
 * to SCN_WATCH_ATTEMPTS, SCN_WATCH_RETRY_MS apart) is ready to trade; a check that never passes,
 * or trading halted during the watch, fails the step. Idempotent; row timeout SCN_WATCH_TIMEOUT_MS. */
#define SCN_WATCH_ATTEMPTS 3u
#define SCN_WATCH_RETRY_MS 1000u
#define SCN_WATCH_TIMEOUT_MS (2u * 3600u * 1000u)
void scn_step_post_resume_watch(FsmCall *call, void *ctx, FsmDone done);
void scn_plan_post_resume_watch(FsmCall *call, void *ctx, FsmDone done);
/* ---- a change of primary (promote.c; primary_failure and switchover) ---- */

/* promote_standby: pg_promote(true, timeout_ms / 1000) on ctx "standby".conninfo unless it left
 * recovery already, then checked (not in recovery, a timeline above ctx "promote_from"), recorded
 * in ctx "promotion" {node, timeline, previous_timeline, at_ms} and as the primary. */
void scn_step_promote(FsmCall *call, void *ctx, FsmDone done, uint64_t timeout_ms);
void scn_plan_promote(FsmCall *call, FsmDone done, uint64_t timeout_ms);
/* repoint_platform: the failover.repoint hook with DRSUP_NEW_PRIMARY(_CONNINFO), DRSUP_OLD_PRIMARY
 * (ctx "old_primary".name), DRSUP_TIMELINE, DRSUP_RUN; ctx "repoint". */
void scn_step_repoint_platform(FsmCall *call, void *ctx, FsmDone done);
void scn_plan_repoint_platform(FsmCall *call, void *ctx, FsmDone done);
/* The run's database.conninfo retargeted (host, hostaddr, port) to the node in ctx[ctx_key].conninfo
 * ("standby": the promoted one; "authoritative": network_partition's). 0, DR_ESTATE (no such
 * context), or -ENOMEM. */
/* confirm_fence (an operator gate: primary_failure's and network_partition's fence not confirmed):
 * records ctx "fence" {by: operator}. */
void scn_step_confirm_fence(FsmCall *call, void *ctx, FsmDone done);
int scn_run_retarget_db(ScnRun *run, const char *ctx_key);
/* reconcile and post_resume_watch with the run's database.conninfo retargeted to ctx "standby". */
void scn_step_reconcile_new_primary(FsmCall *call, void *ctx, FsmDone done);
void scn_step_watch_new_primary(FsmCall *call, void *ctx, FsmDone done);
/* repoint_standbys (standbys.c): every other node of replication.nodes (neither ctx "standby" nor
 * ctx "old_primary") pointed at the new primary: the failover.repoint_standby hook, else ALTER
 * SYSTEM SET primary_conninfo (its own retargeted, application_name=<node>; its primary_slot_name
 * created on the new primary) and pg_reload_conf(); then up to failover.standby_timeout for the
 * new primary's pg_stat_replication to show it streaming. A standby that does not follow is
 * reported in ctx "standbys" and logged, never a failure of the step. */
void scn_step_repoint_standbys(FsmCall *call, void *ctx, FsmDone done);
void scn_plan_repoint_standbys(FsmCall *call, void *ctx, FsmDone done);
/* NAME=conninfo for a hook's environment, or NAME= (with a warning) when it holds a password. */
void scn_env_conninfo(char *out, size_t n, const char *name, const char *conninfo);

/* ---- a node's server (node.c; switchover and rejoin) ---- */

/* The node `name` of replication.nodes in the running configuration, NULL when unknown. */
const ConfigReplicationNode *scn_node_config(const ScnRun *run, const char *name);
/* How a node's server is driven without a command of its own: pg_ctl as the server's user. */
typedef struct ScnPgCtl {
    const char *pg_ctl;
    char *const *run_as;
    size_t n_run_as;
    uint64_t timeout_ms; /* pg_ctl -t, and the command's own deadline (plus 10 s) */
} ScnPgCtl;
/* ok: the node is stopped (its stop command exited 0; or pg_ctl status says no server runs, after
 * pg_ctl stop -m fast when one did). how says what happened, for people. */
typedef void (*ScnNodeDone)(ScnStep *st, bool ok, const char *how);
/* Stop node n's server (idempotent: a stopped server stays stopped). Its data_directory or a stop
 * command must be configured, else then(false). Copies what it needs (a reload may come). */
void scn_node_stop(ScnStep *st, const ConfigReplicationNode *n, const ScnPgCtl *pc, ScnNodeDone then);
/* Start it: its start command, or pg_ctl -D data_directory -l data_directory/drsupervisor-start.log -w
 * start after pg_ctl status found none running (idempotent). */
void scn_node_start(ScnStep *st, const ConfigReplicationNode *n, const ScnPgCtl *pc, ScnNodeDone then);

/* ---- a fence confirmed, and the daemon's own fencing (fence.c; primary_failure, network_partition) ---- */

/* fenced: a fresh connection to the node found it down (after the fence hook or its stop command
 * exited 0), in recovery, or read-only; by is "hook" (the fence hook alone), "stop" or "read_only"
 * (the daemon's own measure that did it); how says what happened, for people. */
typedef void (*ScnFenceDone)(ScnStep *st, bool fenced, const char *by, const char *how);
/* Confirm the fence of `node` at `conninfo` (both copied) after its fence hook (hook_ok: it exited
 * 0; hook_how what it did; NULL when none is configured); a node that still answers as a writable
 * primary, or that does not answer with nothing to confirm it is down, gets failover.self_fence's
 * measures (its stop command, then read-only), each written ahead in ctx "self_fence" and
 * confirmed the same way. then() once. */
void scn_fence_confirm(ScnStep *st, const char *node, const char *conninfo, bool hook_ok, const char *hook_how,
                       ScnFenceDone then);
/* The node refuses writes: ALTER SYSTEM SET default_transaction_read_only = on (on st's connection,
 * opened to conninfo when it has none), pg_reload_conf(), the setting seen to apply in st's own
 * session (at most 10 s), then every other client session terminated (pg_terminate_backend), so a
 * transaction already writing cannot commit; then() once (a failed send finishes the step).
 * Repeats harmlessly. Uses st->deadline_ms. */
void scn_refuse_writes(ScnStep *st, const char *conninfo, ScnRefuseDone then);
/* For a dry run's plan: what the daemon would do to `node` if the fence left it writable. */
void scn_fence_plan(const ScnRun *run, const char *node, char *out, size_t n);
void scn__fence_free(ScnFence *f);

/* halt_after_watch: the watch failed: trading halted again (confirmed), then a critical page. */
void scn_step_halt_after_watch(FsmCall *call, void *ctx, FsmDone done);

#endif
