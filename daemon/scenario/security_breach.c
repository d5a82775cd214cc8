/*
 * security_breach: the scenario, as one static table, its definition and its own steps.
 *
 * Owns the runbook "someone who should not has been in" (ShivX procedure 4, CryptoOrchestrator
 * scenario 4): the emergency close (the venue halts, persisted first, then the platform's
 * close_all; on by default, emergency_close: false skips it), the halt confirmed by the platform,
 * the lockdown commands (firewall, revoke API keys) and then the rotate commands (database
 * passwords, platform keys), each confirmed by its exit status 0 and recorded with its outcome,
 * the damaged database kept as evidence (never dropped), the newest backup that finished AND was
 * verified before T restored into a fresh database, validated, switched in, reconciled, then a
 * gate in every mode (resuming after a breach needs a person: drctl approve), shadow, live.
 *
 * T is the run's parameter since_ms (drctl execute --scenario security_breach --since T, or the
 * signed webhook's "since"), else the detection time (the daemon's own tamper signals). It starts
 * on the incident kind security_breach (detect/detector.h: the webhook, the tamper signals) or
 * drctl execute.
 *
 * Fail closed: any step that fails before the restore ends the run in stayed_halted (trading is
 * halted from the first step on); a restore that fails puts the original back and stays halted.
 * What the run did is in its context (journaled, in the incident report): "emergency_close",
 * "lockdown" and "rotate" (each command, its outcome), "backup", "validation", "reconcile".
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "atomicfile.h"
#include "cap/venue/venue.h"
#include "cap/wal/wal.h"
#include "clock.h"
#include "core/core.h"
#include "detect/detector.h"
#include "err.h"
#include "log.h"
#include "scenario/scn_internal.h"
#include "scenario/security_breach_internal.h"
#include "scenario/steps/steps.h"

enum {
    DETECTED,
    CLOSED,
    HALTED,
    LOCKED_DOWN,
    CREDS_ROTATED,
    ROTATED,
    PRESERVED,
    EVIDENCE_KEPT,
    LOGICAL_CHOSEN,
    BACKUP_SELECTED,
    RESTORED,
    VALIDATED,
    SWITCHED,
    PITR_PLANNED,
    BASE_RESTORED,
    WAL_STAGED,
    RECOVERY_STARTED,
    RECOVERED,
    CLUSTER_VALIDATED,
    RECONCILED,
    SHADOW,
    LIVE,
    RESTORE_FAILED,
    STAYED_HALTED,
    NOT_RECONCILED,
    N_STATES
};

/* T: the operator's --since (or the webhook's), else when the breach was detected. */
static int64_t breach_since_ms(const ScnRun *run)
{
    const json_t *p = scn_run_param(run, "since_ms");
    return json_is_integer(p) && json_integer_value(p) > 0 ? (int64_t)json_integer_value(p) : run->detected_ms;
}

/* ---- emergency_close: halt (persisted first), then the platform closes every position ---- */

static void close_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    const char *how = scn_ctx_str(run, "emergency_close", "how");
    if (status < 0)
        scn_finish(st, status, "cannot record the emergency close: %s", err_str(status));
    else
        scn_finish(st, 0, "%s", how ? how : "emergency close done");
}

static void close_record(ScnStep *st, bool closed, const char *how)
{
    scn_context_set(st->run, "emergency_close",
                    json_pack("{s:b,s:s,s:I}", "closed", closed, "how", how, "ms", (json_int_t)clock_wall_ms()),
                    close_recorded, st);
}

static void close_on_closed_all(int result, const json_t *answer, const char *text, const char *message, void *data)
{
    ScnStep *st = data;
    char how[400];
    (void)answer;
    (void)text;
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    if (result < 0) {
        scn_finish(st, result, "trading is halted, but closing the positions failed: %s",
                   message ? message : err_str(result));
        return;
    }
    snprintf(how, sizeof(how), "trading is halted and the platform closed every position");
    close_record(st, true, how);
}

static void close_after_halt(int result, const char *message, void *data)
{
    ScnStep *st = data;
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    if (result < 0) {
        scn_finish(st, result, "not closing positions: the halt is not confirmed: %s",
                   message ? message : err_str(result));
        return;
    }
    int r = venue_action(st->run->caps->venue, VENUE_CLOSE_ALL, NULL, close_on_closed_all, st);
    if (r < 0)
        scn_finish(st, r, "trading is halted, but the close_all action cannot run: %s", err_str(r));
}

static bool breach_close_configured(const ScnRun *run)
{
    return run->core->cfg->venue.enabled && run->core->cfg->venue.actions[VENUE_CLOSE_ALL].kind != VENUE_ACTION_NONE;
}

static void step_emergency_close(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char reason[512];
    if (!st)
        return;
    if (!breach_cfg(st->run)->emergency_close) {
        close_record(st, false, "skipped: scenarios.security_breach.emergency_close is false");
        return;
    }
    if (!st->run->caps->venue) {
        scn_finish(st, DR_ECANCELED, "the daemon is stopping");
        return;
    }
    if (!breach_close_configured(st->run)) {
        scn_finish(st, -ENOTSUP, "emergency_close is on but no 'venue.close_all' action is configured");
        return;
    }
    snprintf(reason, sizeof(reason), "scenario %s run %s: emergency close: %s", st->run->def->name, st->run->id,
             st->run->reason ? st->run->reason : "-");
    venue_halt(st->run->caps->venue, reason, st->run->id, close_after_halt, st);
}

static void plan_emergency_close(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    if (!breach_cfg(run)->emergency_close)
        done(call, 0, "would skip the emergency close (emergency_close: false)");
    else if (!breach_close_configured(run))
        done(call, -ENOTSUP, "emergency_close is on but no 'venue.close_all' action is configured");
    else
        done(call, 0, "would halt trading, then have the platform close every position (venue.close_all)");
}

/* ---- lockdown, rotate_credentials: configured commands, one after the other ---- */

static void hooks_next(ScnStep *st);

static bool hooks_is_lockdown(const FsmCall *call)
{
    return strcmp(fsm_call_row(call)->step_name, "lockdown") == 0;
}

static const char *hooks_key(const ScnStep *st)
{
    return hooks_is_lockdown(st->call) ? "lockdown" : "rotate";
}

static void hooks_list(const ScnStep *st, char *const **ret, size_t *ret_n)
{
    bool lock = hooks_is_lockdown(st->call);
    *ret = lock ? breach_cfg(st->run)->lockdown_commands : breach_cfg(st->run)->rotate_commands;
    *ret_n = lock ? breach_cfg(st->run)->n_lockdown_commands : breach_cfg(st->run)->n_rotate_commands;
}

static void hooks_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    char *const *list;
    size_t n;
    (void)run;
    hooks_list(st, &list, &n);
    if (status < 0) {
        scn_finish(st, status, "cannot record the %s commands: %s", hooks_key(st), err_str(status));
        return;
    }
    const json_t *last = json_array_get(st->acc, json_array_size(st->acc) - 1);
    if (!json_is_true(json_object_get(last, "ok"))) {
        /* recorded for the report; the step fails and trading stays halted */
        scn_finish(st, DR_ECHILD, "%s command '%s' %s: not confirmed, trading stays halted", hooks_key(st),
                   list[st->idx], json_string_value(json_object_get(last, "how")));
        return;
    }
    st->idx++;
    hooks_next(st);
}

/* A command's output as text for the record: printable ASCII kept, anything else '?'. */
static json_t *hooks_output(const char *out)
{
    char buf[4097];
    size_t n = 0;
    for (; out && out[n] && n < sizeof(buf) - 1; n++)
        buf[n] = (out[n] == '\n' || out[n] == '\t' || (out[n] >= ' ' && out[n] <= '~')) ? out[n] : '?';
    buf[n] = '\0';
    return json_string(buf);
}

static void hooks_exited(ScnStep *st, bool ok, int64_t status, const char *how)
{
    char *const *list;
    size_t n;
    hooks_list(st, &list, &n);
    json_array_append_new(st->acc, json_pack("{s:s,s:b,s:I,s:s,s:o}", "command", list[st->idx], "ok", ok, "status",
                                             (json_int_t)status, "how", how, "stdout", hooks_output(st->hook_stdout)));
    scn_context_set(st->run, hooks_key(st), json_deep_copy(st->acc), hooks_recorded, st);
}

static void hooks_next(ScnStep *st)
{
    char *const *list;
    size_t n;
    char e_run[160], e_since[64], e_step[64];
    hooks_list(st, &list, &n);
    if (st->idx >= n) {
        if (n)
            scn_finish(st, 0, "%zu %s command(s) confirmed (exit 0)", n, hooks_key(st));
        else
            scn_finish(st, 0, "no %s commands are configured", hooks_key(st));
        return;
    }
    snprintf(e_run, sizeof(e_run), "DRSUP_RUN=%s", st->run->id);
    snprintf(e_since, sizeof(e_since), "DRSUP_SINCE_MS=%lld", (long long)breach_since_ms(st->run));
    snprintf(e_step, sizeof(e_step), "DRSUP_STEP=%s", hooks_key(st));
    const char *env[] = {e_run, e_since, e_step, NULL};
    const char *argv[] = {list[st->idx], NULL};
    scn_hook_run(st, hooks_key(st), argv, env, breach_cfg(st->run)->hook_timeout_ms, hooks_exited);
}

/* Run again after a crash, every command runs again: they are idempotent by contract (a firewall
 * rule set, a key revoked twice, a password set to a new value once more). */
static void step_hooks(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    st->acc = json_array();
    if (!st->acc) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    st->idx = 0;
    hooks_next(st);
}

static void plan_hooks(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    bool lock = hooks_is_lockdown(call);
    char *const *list = lock ? breach_cfg(run)->lockdown_commands : breach_cfg(run)->rotate_commands;
    size_t n = lock ? breach_cfg(run)->n_lockdown_commands : breach_cfg(run)->n_rotate_commands;
    char msg[1200];
    size_t o = 0;
    if (n)
        o += (size_t)snprintf(msg, sizeof(msg), "would run, each confirmed by exit 0:");
    else
        o += (size_t)snprintf(msg, sizeof(msg), "no %s commands are configured", lock ? "lockdown" : "rotate");
    for (size_t i = 0; i < n && o < sizeof(msg); i++)
        o += (size_t)snprintf(msg + o, sizeof(msg) - o, " '%s'", list[i]);
    done(call, 0, msg);
}

/* ---- rotate_backup_key: the daemon's own key (cap/backup's key ring) ---- */

static void key_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the new backup key id: %s", err_str(status));
    else
        scn_finish(st, 0, "new backups are written under key id %s; those under %s stay readable",
                   scn_ctx_str(run, "backup_key", "key_id"), scn_ctx_str(run, "backup_key", "previous_key_id"));
}

static void key_rotated(int status, const char *new_id, const char *old_id, const char *err, void *data)
{
    ScnStep *st = data;
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    if (status < 0) {
        scn_finish(st, status, "cannot rotate the backup key: %s", err && err[0] ? err : err_str(status));
        return;
    }
    /* the WAL archive's next segments follow (a restart reads the ring's current anyway) */
    if (st->run->caps->wal && wal_key_rotated(st->run->caps->wal) < 0)
        log_warning("scenario", "run %s: the WAL archive keeps its key until the daemon restarts", st->run->id);
    scn_context_set(st->run, "backup_key", json_pack("{s:s,s:s}", "key_id", new_id, "previous_key_id", old_id),
                    key_recorded, st);
}

static void step_rotate_backup_key(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    if (!breach_cfg(st->run)->rotate_backup_key || !st->run->bcfg.enabled) {
        scn_finish(st, 0, "skipped: %s", !st->run->bcfg.enabled ? "backups are not configured"
                                                                 : "rotate_backup_key is false");
        return;
    }
    if (scn_ctx_str(st->run, "backup_key", "key_id")) { /* rotated before a restart: once per run */
        key_recorded(st->run, 0, st);
        return;
    }
    int r = backups_rotate_key(st->run->caps->backups, key_rotated, st);
    if (r < 0)
        scn_finish(st, r, "cannot rotate the backup key: %s", err_str(r));
}

/* After a crash: the rotation is recorded in the run's context once its files are durable. */
static void probe_rotate_backup_key(FsmCall *call, void *ctx, FsmProbeDone done)
{
    ScnStep *st = scn_step_new(call, ctx, NULL, done);
    if (!st)
        return;
    if (scn_ctx_str(st->run, "backup_key", "key_id"))
        scn_answer(st, FSM_PROBE_YES, "the backup key was rotated to %s", scn_ctx_str(st->run, "backup_key", "key_id"));
    else
        scn_answer(st, FSM_PROBE_NO, "no rotation is recorded");
}

static void plan_rotate_backup_key(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    if (!breach_cfg(run)->rotate_backup_key || !run->bcfg.enabled)
        done(call, 0, "would skip the backup key rotation");
    else
        done(call, 0, "would generate a new backup key (state_dir/backup-keys, 0600) for new backups; older backups "
             "stay readable with their key");
}

/* ---- collect_evidence: state_dir/runs/<id>.evidence/ (thread pool) ---- */

typedef struct BreachEvidence {
    uv_work_t req;
    ScnStep *st;
    char dir[4200], state_dir[4096];
    char *hooks;   /* hooks.json's text */
    json_t *files; /* what was written (set on the loop after the work) */
    int result;
    size_t n_files;
    char names[24][32];
    char err[600];
} BreachEvidence;

/* Worker: copy state_dir/<name> into the evidence directory if it exists. 1 copied, 0 absent, <0. */
static int evidence_copy(BreachEvidence *e, const char *name)
{
    char src[4400], dst[4400], *data = NULL;
    size_t len = 0;
    snprintf(src, sizeof(src), "%s/%s", e->state_dir, name);
    int r = atomicfile_read_all(src, 1u << 30, &data, &len);
    if (r == -ENOENT)
        return 0;
    if (r == 0) {
        snprintf(dst, sizeof(dst), "%s/%s", e->dir, name);
        r = atomicfile_write(dst, data, len, 0600);
    }
    free(data);
    if (r < 0) {
        snprintf(e->err, sizeof(e->err), "cannot copy '%.400s': %s", src, strerror(-r));
        return r;
    }
    if (e->n_files < sizeof(e->names) / sizeof(e->names[0]))
        snprintf(e->names[e->n_files++], sizeof(e->names[0]), "%s", name);
    return 1;
}

static void evidence_work(uv_work_t *req)
{
    BreachEvidence *e = req->data;
    char path[4400], name[32];
    if (mkdir(e->dir, 0700) < 0 && errno != EEXIST) {
        e->result = -errno;
        snprintf(e->err, sizeof(e->err), "cannot create '%.400s': %s", e->dir, strerror(errno));
        return;
    }
    /* the audit trail as it is now: the log, its head, the rotated files kept */
    if ((e->result = evidence_copy(e, "audit.log")) < 0 || (e->result = evidence_copy(e, "audit.head")) < 0)
        return;
    for (int i = 1; i <= 20; i++) {
        snprintf(name, sizeof(name), "audit.log.%d", i);
        if ((e->result = evidence_copy(e, name)) <= 0)
            break;
    }
    if (e->result < 0)
        return;
    snprintf(path, sizeof(path), "%s/hooks.json", e->dir);
    e->result = atomicfile_write(path, e->hooks, strlen(e->hooks), 0600);
    if (e->result < 0)
        snprintf(e->err, sizeof(e->err), "cannot write '%.400s': %s", path, strerror(-e->result));
    else
        snprintf(e->names[e->n_files++], sizeof(e->names[0]), "hooks.json");
}

static void evidence_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the evidence: %s", err_str(status));
    else
        scn_finish(st, 0, "the audit trail and the hooks' outcomes are in '%s'", scn_ctx_str(run, "evidence", "dir"));
}

static void evidence_done(uv_work_t *req, int status)
{
    BreachEvidence *e = req->data;
    ScnStep *st = e->st;
    int r = status < 0 ? status : e->result;
    if (r < 0) {
        scn_finish(st, r, "%s", e->err[0] ? e->err : err_str(r));
    } else {
        json_t *files = json_array();
        for (size_t i = 0; i < e->n_files; i++)
            json_array_append_new(files, json_string(e->names[i]));
        scn_context_set(st->run, "evidence", json_pack("{s:s,s:o,s:s}", "dir", e->dir, "files", files, "database",
                                                       corruption_run(st->run)->damaged), evidence_recorded, st);
    }
    free(e->hooks);
    free(e);
}

/* Idempotent: the files are written again (the audit trail has grown by then: the newer copy). */
static void step_collect_evidence(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    BreachEvidence *e = calloc(1, sizeof(*e));
    json_t *h = json_object();
    static const char *const keys[] = {"emergency_close", "lockdown", "rotate", "backup_key"};
    for (size_t i = 0; h && i < sizeof(keys) / sizeof(keys[0]); i++) {
        const json_t *v = json_object_get(st->run->ctx, keys[i]);
        json_object_set_new(h, keys[i], v ? json_deep_copy(v) : json_null());
    }
    if (e && h) {
        json_object_set_new(h, "run", json_string(st->run->id));
        e->hooks = json_dumps(h, JSON_INDENT(2));
    }
    json_decref(h);
    if (!e || !e->hooks) {
        if (e)
            free(e->hooks);
        free(e);
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    e->st = st;
    e->req.data = e;
    scn_path(st->run->s, e->dir, sizeof(e->dir), "runs", st->run->id, ".evidence");
    snprintf(e->state_dir, sizeof(e->state_dir), "%s", st->run->core->cfg->node_dir); /* the audit log's */
    int r = uv_queue_work(st->run->core->loop, &e->req, evidence_work, evidence_done);
    if (r < 0) {
        free(e->hooks);
        free(e);
        scn_finish(st, r, "cannot start copying the evidence: %s", err_str(r));
    }
}

static void plan_collect_evidence(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char dir[4200], msg[4400];
    scn_path(run->s, dir, sizeof(dir), "runs", run->id, ".evidence");
    snprintf(msg, sizeof(msg), "would copy the audit trail and the hooks' outcomes to '%s'", dir);
    done(call, 0, msg);
}

/* ---- plan_restore: the cluster to just before T when the archive reaches it, else logical ---- */

static bool breach_recovers_cluster(const ScnRun *run)
{
    const char *m = scn_ctx_str(run, "restore_method", "method");
    return m && !strcmp(m, "point_in_time");
}

static void method_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0) {
        scn_finish(st, status, "cannot record the restore method: %s", err_str(status));
        return;
    }
    if (breach_recovers_cluster(run)) {
        fsm_call_set_outcome(st->call, "point_in_time");
        scn_finish(st, 0, "the cluster is recovered to just before the breach: base backup '%s' and the WAL archive",
                   scn_ctx_str(run, "plan", "base_backup_name"));
    } else {
        scn_finish(st, 0, "the newest logical backup verified before the breach is restored: %s",
                   scn_ctx_str(run, "restore_method", "why"));
    }
}

static void method_record(ScnStep *st, bool pitr, const char *why)
{
    scn_context_set(st->run, "restore_method",
                    json_pack("{s:s,s:s}", "method", pitr ? "point_in_time" : "logical", "why", why),
                    method_recorded, st);
}

static void plan_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    (void)run;
    if (status < 0)
        scn_finish(st, status, "cannot record the recovery plan: %s", err_str(status));
    else
        method_record(st, true, "a verified base backup and continuous WAL reach T");
}

static void plan_made(int status, json_t *plan, const char *err, void *data)
{
    ScnStep *st = data;
    char why[700];
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        json_decref(plan);
        scn_cancelled(st);
        return;
    }
    if (status < 0 || !json_is_true(json_object_get(plan, "ok"))) {
        snprintf(why, sizeof(why), "the WAL archive does not reach T: %s",
                 status < 0 ? err : json_string_value(json_object_get(plan, "why")) ?: "?");
        json_decref(plan);
        method_record(st, false, why);
        return;
    }
    json_object_set(plan, "base_backup_name", json_object_get(json_object_get(plan, "base_backup"), "name"));
    scn_context_set(st->run, "plan", plan, plan_recorded, st);
}

/* Decided once (a restart that finds the method recorded takes it). */
static void step_plan_restore(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char msg[300];
    if (!st)
        return;
    if (scn_ctx_str(st->run, "restore_method", "method")) {
        method_recorded(st->run, 0, st);
        return;
    }
    if (!breach_cfg(st->run)->pitr_configured || !st->run->caps->wal) {
        method_record(st, false, !st->run->caps->wal ? "there is no WAL archive"
                                                     : "scenarios.security_breach.pitr is not configured");
        return;
    }
    int r = wal_plan(st->run->caps->wal, breach_since_ms(st->run), plan_made, st, msg, sizeof(msg));
    if (r < 0) {
        char why[400];
        snprintf(why, sizeof(why), "cannot plan a recovery to T: %s", msg);
        method_record(st, false, why);
    }
}

static void plan_plan_restore(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    if (breach_cfg(run)->pitr_configured && run->caps->wal)
        done(call, 0, "would recover the cluster to just before T if a verified base backup and continuous WAL reach "
             "it, else restore the newest logical backup verified before T");
    else
        done(call, 0, "would restore the newest logical backup verified before T (no pitr section or no WAL archive)");
}

/* ---- select_backup: the newest one verified before T ---- */

static void step_select_backup(FsmCall *call, void *ctx, FsmDone done)
{
    scn_step_select_backup_before(call, ctx, breach_since_ms(ctx), done);
}

static void plan_select_backup(FsmCall *call, void *ctx, FsmDone done)
{
    scn_plan_select_backup_before(call, ctx, breach_since_ms(ctx), done);
}

/* ---- validate_restore ---- */

/* ---- the table ---- */

static const FsmState breach_states[N_STATES] = {
    [DETECTED] = {"detected", FSM_STATE_ACTIVE},
    [CLOSED] = {"emergency_closed", FSM_STATE_ACTIVE},
    [HALTED] = {"halted", FSM_STATE_ACTIVE},
    [LOCKED_DOWN] = {"locked_down", FSM_STATE_ACTIVE},
    [CREDS_ROTATED] = {"credentials_rotated", FSM_STATE_ACTIVE},
    [ROTATED] = {"backup_key_rotated", FSM_STATE_ACTIVE},
    [PRESERVED] = {"evidence_preserved", FSM_STATE_ACTIVE},
    [EVIDENCE_KEPT] = {"evidence_collected", FSM_STATE_ACTIVE},
    [LOGICAL_CHOSEN] = {"logical_restore_chosen", FSM_STATE_ACTIVE},
    [BACKUP_SELECTED] = {"backup_selected", FSM_STATE_ACTIVE},
    [RESTORED] = {"restored", FSM_STATE_ACTIVE},
    [VALIDATED] = {"validated", FSM_STATE_ACTIVE},
    [SWITCHED] = {"switched", FSM_STATE_ACTIVE},
    [PITR_PLANNED] = {"recovery_planned", FSM_STATE_ACTIVE},
    [BASE_RESTORED] = {"base_backup_restored", FSM_STATE_ACTIVE},
    [WAL_STAGED] = {"wal_staged", FSM_STATE_ACTIVE},
    [RECOVERY_STARTED] = {"recovery_started", FSM_STATE_ACTIVE},
    [RECOVERED] = {"recovered", FSM_STATE_ACTIVE},
    [CLUSTER_VALIDATED] = {"cluster_validated", FSM_STATE_ACTIVE},
    [RECONCILED] = {"reconciled", FSM_STATE_ACTIVE},
    [SHADOW] = {"trading_in_shadow", FSM_STATE_ACTIVE},
    [LIVE] = {"live", FSM_STATE_SUCCESS},
    [RESTORE_FAILED] = {"restore_failed", FSM_STATE_ACTIVE},
    [STAYED_HALTED] = {"stayed_halted", FSM_STATE_FAILURE},
    [NOT_RECONCILED] = {"not_reconciled", FSM_STATE_FAILURE},
};

static const FsmRow breach_rows[] = {
    /* from, to, step, sentence, step fn, probe, plan, cancel, timeout ms, attempts, idempotent, gate, on_failure */
    {DETECTED, CLOSED, "emergency_close", "trading is halted and every position closed (unless emergency_close is off)",
     step_emergency_close, NULL, plan_emergency_close, NULL, 60000, 3, true, FSM_GATE_NONE, STAYED_HALTED},
    {CLOSED, HALTED, "halt_trading", "trading is halted and the venue confirms it",
     scn_step_halt_trading, NULL, scn_plan_halt_trading, NULL, 30000, 10, true, FSM_GATE_NONE, STAYED_HALTED},
    {HALTED, LOCKED_DOWN, "lockdown", "every lockdown command confirmed (exit 0)",
     step_hooks, NULL, plan_hooks, scn_cancel, 20u * 600000u, 2, true, FSM_GATE_NONE, STAYED_HALTED},
    {LOCKED_DOWN, CREDS_ROTATED, "rotate_credentials", "every rotate command confirmed (exit 0)",
     step_hooks, NULL, plan_hooks, scn_cancel, 20u * 600000u, 2, true, FSM_GATE_NONE, STAYED_HALTED},
    {CREDS_ROTATED, ROTATED, "rotate_backup_key", "new backups are written under a new key; old ones stay readable",
     step_rotate_backup_key, probe_rotate_backup_key, plan_rotate_backup_key, NULL, 60000, 3, true, FSM_GATE_NONE,
     STAYED_HALTED},
    {ROTATED, PRESERVED, "preserve_evidence", "the current database is kept under a new name, never dropped",
     scn_step_preserve_evidence, scn_probe_preserve_evidence, scn_plan_preserve_evidence, scn_cancel, 60000, 3, true,
     FSM_GATE_NONE, RESTORE_FAILED},
    {PRESERVED, EVIDENCE_KEPT, "collect_evidence", "the audit trail and the hooks' outcomes are copied to the run's "
     "evidence directory", step_collect_evidence, NULL, plan_collect_evidence, NULL, 120000, 3, true, FSM_GATE_NONE,
     RESTORE_FAILED},
    {EVIDENCE_KEPT, LOGICAL_CHOSEN, "plan_restore", "the restore point is chosen: the cluster to just before the breach "
     "when the WAL archive reaches it, else a logical backup", step_plan_restore, NULL, plan_plan_restore, NULL, 70000, 3,
     true, FSM_GATE_NONE, RESTORE_FAILED},
    {LOGICAL_CHOSEN, BACKUP_SELECTED, "select_backup", "the newest backup verified before the breach is the restore point",
     step_select_backup, NULL, plan_select_backup, NULL, 10000, 3, true, FSM_GATE_NONE, RESTORE_FAILED},
    {BACKUP_SELECTED, RESTORED, "restore_database", "the backup is restored into a fresh database",
     scn_step_restore_database, scn_probe_restore_database, scn_plan_restore_database, scn_cancel,
     6u * 3600u * 1000u, 1, false, FSM_GATE_APPROVAL, RESTORE_FAILED},
    {RESTORED, VALIDATED, "validate_restore", "the restored database answers the validation queries",
     scn_step_validate_restore, NULL, scn_plan_validate_restore, scn_cancel, 600000, 2, true, FSM_GATE_NONE, RESTORE_FAILED},
    {VALIDATED, SWITCHED, "switch_database", "the platform's database is now the restored one",
     scn_step_switch_database, scn_probe_switch_database, scn_plan_switch_database, scn_cancel, 120000, 3, true,
     FSM_GATE_APPROVAL, RESTORE_FAILED},
    /* the recovery of the cluster to just before T (point_in_time's steps; outcome point_in_time) */
    {PITR_PLANNED, BASE_RESTORED, "restore_base_backup", "the base backup is unpacked into a fresh data directory",
     pitr__step_restore_base_backup, NULL, pitr__plan_restore_base_backup, scn_cancel, 6u * 3600u * 1000u, 2, true,
     FSM_GATE_APPROVAL, RESTORE_FAILED},
    {BASE_RESTORED, WAL_STAGED, "stage_wal", "the WAL to just before the breach is staged and the recovery settings "
     "written", pitr__step_stage_wal, NULL, NULL, NULL, 3600u * 1000u, 5, true, FSM_GATE_NONE, RESTORE_FAILED},
    {WAL_STAGED, RECOVERY_STARTED, "start_recovery", "the recovered server starts on the side port",
     pitr__step_start_recovery, NULL, pitr__plan_start_recovery, scn_cancel, 120000, 2, true, FSM_GATE_NONE,
     RESTORE_FAILED},
    {RECOVERY_STARTED, RECOVERED, "wait_for_promotion", "the recovered server replayed to just before the breach and "
     "was promoted", pitr__step_wait_for_promotion, NULL, NULL, scn_cancel, 7u * 3600u * 1000u, 1, true, FSM_GATE_NONE,
     RESTORE_FAILED},
    {RECOVERED, CLUSTER_VALIDATED, "validate_recovery", "the validation queries pass on the recovered server",
     pitr__step_validate_recovery, NULL, pitr__plan_validate_recovery, scn_cancel, 600000, 2, true, FSM_GATE_NONE,
     RESTORE_FAILED},
    {CLUSTER_VALIDATED, SWITCHED, "switch_cluster", "the recovered cluster takes the live one's place (the old one "
     "kept)", pitr__step_switch_cluster, NULL, pitr__plan_switch_cluster, scn_cancel, 3600u * 1000u, 2, true,
     FSM_GATE_APPROVAL, RESTORE_FAILED},
    {SWITCHED, RECONCILED, "reconcile", "the database matches the exchange's positions and fills",
     scn_step_reconcile, NULL, scn_plan_reconcile, NULL, 600000, 2, true, FSM_GATE_NONE, NOT_RECONCILED},
    {RECONCILED, SHADOW, "resume_shadow", "a person approved resuming after the breach; trading resumes in shadow",
     scn_step_resume_shadow, NULL, scn_plan_resume_shadow, NULL, 30000, 3, true, FSM_GATE_OPERATOR, FSM_NO_STATE},
    {SHADOW, LIVE, "resume_live", "trading is live again",
     scn_step_resume_live, scn_probe_resume_live, scn_plan_resume_live, scn_cancel, 30000, 3, false, FSM_GATE_APPROVAL,
     FSM_NO_STATE},
    {RESTORE_FAILED, STAYED_HALTED, "put_back_original", "the original database is back in place; trading stays halted",
     scn_step_put_back_original, NULL, NULL, scn_cancel, 60000, 3, true, FSM_GATE_NONE, FSM_NO_STATE},
};

/* The WAL archive reaches T: the cluster is recovered instead of a logical backup restored. */
static const FsmBranch breach_branches[] = {
    {EVIDENCE_KEPT, "point_in_time", PITR_PLANNED},
};

static const FsmTable breach_table = {"security_breach", breach_states, N_STATES, breach_rows,
                                      (int)(sizeof(breach_rows) / sizeof(breach_rows[0])), breach_branches,
                                      (int)(sizeof(breach_branches) / sizeof(breach_branches[0]))};

/* Trading may resume only from this run's own resume steps, after the reconcile committed (and
 * the operator's gate before resume_shadow was passed). */
static bool breach_may_resume(const ScnRun *run)
{
    return scn_may_resume_in(run, RECONCILED, SHADOW);
}

/* RPO: the cluster recovered to just before T (T itself), else the logical backup's start. */
static int64_t breach_restore_point_ms(const ScnRun *run)
{
    return breach_recovers_cluster(run) ? breach_since_ms(run) : scn_backup_restore_point_ms(run);
}

static void breach_report_extras(const ScnRun *run, json_t *rep)
{
    static const char *const keys[] = {"emergency_close", "lockdown", "rotate", "backup_key", "evidence",
                                       "restore_method", "backup", "plan", "restore", "wal", "promotion",
                                       "validation", "switch"};
    json_t *b = json_object();
    for (size_t i = 0; b && i < sizeof(keys) / sizeof(keys[0]); i++) {
        const json_t *v = json_object_get(run->ctx, keys[i]);
        json_object_set_new(b, keys[i], v ? json_deep_copy(v) : json_null());
    }
    if (!b)
        return;
    json_object_set_new(b, "since_ms", json_integer(breach_since_ms(run)));
    json_object_set_new(b, "restore_point_ms", json_integer(breach_restore_point_ms(run)));
    json_object_set_new(b, "databases",
                        json_pack("{s:s,s:s,s:s}", "original", run->database, "evidence", corruption_run(run)->damaged,
                                  "restored", corruption_run(run)->restored));
    json_object_set_new(rep, "security_breach", b);
}

/* Name the run's databases (the evidence X_breach_T and the restore X_restore_T) and, for a
 * recovery of the cluster, its directories and its target: just before T. */
static int breach_ctx_init(ScnRun *run, char *err, size_t errlen)
{
    CorruptionRun *c = corruption_run(run);
    BreachRun *b = run->own;
    int r = pitr__ctx_init(run, err, errlen);
    if (r < 0)
        return r;
    b->pitr.target_ms = breach_since_ms;
    b->pitr.exclusive = true;
    snprintf(c->damaged, sizeof(c->damaged), "%s_breach_%s", run->database, run->tag);
    snprintf(c->restored, sizeof(c->restored), "%s_restore_%s", run->database, run->tag);
    c->standby[0] = '\0'; /* never restored from a standby copy: it may hold what the intruder wrote */
    return 0;
}

/* As database_corruption's: from preserve_evidence until the switch or the put-back, X is away. */
static unsigned breach_disturbs(const ScnRun *run, const char *running_step, char *what, size_t n)
{
    int s = fsm_run_state(run->fsm);
    bool away = s == PRESERVED || s == EVIDENCE_KEPT || s == LOGICAL_CHOSEN || s == BACKUP_SELECTED || s == RESTORED ||
                s == VALIDATED || s == RESTORE_FAILED || (s >= PITR_PLANNED && s <= CLUSTER_VALIDATED) ||
                (s == ROTATED && running_step && !strcmp(running_step, "preserve_evidence"));
    if (!away)
        return 0;
    snprintf(what, n, "run %s keeps '%s' as '%s' (evidence) and restores a backup from before the breach: '%s' "
             "refuses connections, then does not exist, until switch_database (or put_back_original) commits",
             run->id, run->database, corruption_run(run)->damaged, run->database);
    return LEASE_DB_MISSING | LEASE_DB_REFUSING | LEASE_DB_TERMINATED;
}

static const char *const breach_handles[] = {INCIDENT_SECURITY_BREACH, NULL};

/* A drill (drill_pitr.c) recovers a scratch cluster with the pitr: subsection's settings and
 * validates it with its queries; it never runs the close, the halt, the lockdown or rotate hooks. */
static void breach_drill_settings(const ConfigScenario *sc, const ConfigBackup *b, ScenarioDrillSettings *ret)
{
    const BreachConfig *c = sc->data;
    (void)b;
    memset(ret, 0, sizeof(*ret));
    if (!c)
        return;
    ret->validation_queries = c->pitr.validation_queries;
    ret->n_validation_queries = c->pitr.n_validation_queries;
    ret->restore_timeout_ms = c->pitr.start_timeout_ms;
}

const ScenarioDef scenario_security_breach = {
    .name = "security_breach",
    .short_name = "breach",
    .summary = "close and halt, lock down, rotate credentials, keep evidence, restore a backup verified before the "
               "breach, reconcile, resume after approval",
    .table = &breach_table,
    .handles = breach_handles,
    .live_step = "resume_live",
    .ctx_size = sizeof(BreachRun),
    .ctx_init = breach_ctx_init,
    .may_resume = breach_may_resume,
    .restore_point_ms = breach_restore_point_ms,
    .report_extras = breach_report_extras,
    .config = &breach_config_section,
    .disturbs = breach_disturbs,
    .pitr_config_offset = offsetof(BreachConfig, pitr),
    .pitr_run_offset = offsetof(BreachRun, pitr),
    .drill_settings = breach_drill_settings,
};
