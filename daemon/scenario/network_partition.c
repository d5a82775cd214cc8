/*
 * network_partition: the split-brain scenario, as one static table, its definition and its own
 * steps.
 *
 * Owns the runbook "two nodes accept writes: halt at once, decide which side is authoritative from
 * the daemon's own record (never a guess), keep what the other side wrote as evidence, fence it,
 * let a person confirm, reconcile the authoritative side with the exchange, resume". It starts on
 * the incident kind network_partition (the detector, when one replication round finds two nodes
 * out of recovery: detect/detector_sm.h) or by drctl execute.
 *
 * The authoritative node is the one the daemon takes as the primary: the last promotion it
 * recorded (state_dir/primary.json, written before the platform was repointed) or, with none, the
 * node configured as `role: primary`. If that node does not answer as a primary itself, nothing
 * can be decided and the run stays halted. The other node is dumped (pg_dump -Fc of the protected
 * database, state_dir/runs/<run>.<node>.dump, with its timeline and WAL position in the context)
 * before it is fenced: the writes that landed there are what a rebuild would discard. Fencing is
 * the failover.fence hook (DRSUP_OLD_PRIMARY names the node to fence), then the daemon checks with a
 * fresh connection that the node no longer answers as a writable primary, and when it still does
 * fences it itself (failover.self_fence: its stop command, then read-only; steps/fence.c); a fence
 * not confirmed waits for an operator. After the
 * fence the run always waits for a person (FSM_GATE_OPERATOR, in every mode): resuming after a
 * split brain is a decision. Then the fenced node is rebuilt as a standby of the authoritative one
 * in the same run when its data_directory is configured (plan_rejoin, then rejoin's steps from
 * rejoin_steps.h: pg_rewind or a fresh base backup, configured, its slot, started, streaming); else,
 * or when a rejoin step fails (the node stays fenced), the report says the rebuild is left to the
 * operator (drctl rejoin NODE). Then the reconcile against the authoritative node, the resume and
 * the watch.
 *
 * Context: "authoritative" {name, conninfo}, "other" {name, conninfo}, "evidence" {path, timeline,
 * lsn, or unreachable}, "fence" {by (hook, stop, read_only, none or operator), hook, ms}, "self_fence"
 * (steps/fence.c), "approval" {ms}, "rejoin" {by: run or operator, note, failed}, and rejoin's
 * "node", "source", "settings", "copy". Every step is safe to run again:
 * the decision is taken once; the dump is written again under the same name; the fence hook must
 * be idempotent; the check only reads.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "err.h"
#include "log.h"
#include "observe/replication.h"
#include "pgconn.h"
#include "scenario/network_partition_internal.h"
#include "scenario/rejoin_steps.h"
#include "scenario/scn_internal.h"
#include "scenario/steps/steps.h"

enum {
    DETECTED,
    HALTED,
    DECIDED,
    EVIDENCE_KEPT,
    EVIDENCE_MISSING,
    FENCE_UNCONFIRMED,
    FENCED,
    APPROVED,
    RJ_PLANNED,
    RJ_SETTINGS_READ,
    RJ_STOPPED,
    RJ_CHECKPOINTED,
    RJ_REWIND_FAILED,
    RJ_COPIED,
    RJ_CONFIGURED,
    RJ_SLOT_READY,
    RJ_STARTED,
    REJOIN_FAILED,
    REJOINED,
    RECONCILED,
    SHADOW,
    LIVE,
    WATCHED,
    STAYED_HALTED,
    NOT_RECONCILED,
    WATCH_FAILED,
    HALTED_AFTER_WATCH,
    N_STATES
};

#define NP_EVIDENCE_TIMEOUT_MS (30ull * 60 * 1000)

static const ConfigFailover *np_failover(const ScnRun *run)
{
    return &run->core->cfg->replication.failover;
}

/* ---- decide_authoritative ---- */

static void decided(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0) {
        scn_finish(st, status, "cannot record the decision: %s", err_str(status));
        return;
    }
    if (scn_ctx_str(run, "other", "name"))
        scn_finish(st, 0, "'%s' is authoritative (the daemon's record of the primary); '%s' is not",
                   scn_ctx_str(run, "authoritative", "name"), scn_ctx_str(run, "other", "name"));
    else
        scn_finish(st, 0, "'%s' is authoritative; no other node answers as a primary now",
                   scn_ctx_str(run, "authoritative", "name"));
}

static void decided_auth(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    json_t *other = st->acc;
    st->acc = NULL;
    if (status < 0) {
        json_decref(other);
        scn_finish(st, status, "cannot record the decision: %s", err_str(status));
        return;
    }
    if (!other) {
        decided(run, 0, st);
        return;
    }
    scn_context_set(run, "other", other, decided, st);
}

static void step_decide_authoritative(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    const Replication *repl;
    ReplFailoverView v;
    char writable[256], *save = NULL, *tok;
    const char *other = NULL;
    unsigned others = 0;

    if (!st)
        return;
    if (scn_ctx_str(st->run, "authoritative", "name")) { /* decided before a restart: never again */
        scn_finish(st, 0, "'%s' was decided authoritative already", scn_ctx_str(st->run, "authoritative", "name"));
        return;
    }
    repl = st->run->caps->replication;
    if (!repl) {
        scn_finish(st, DR_ECONFIG, "no replication monitor: the cluster's nodes are unknown");
        return;
    }
    replication_failover_view(repl, 0, &v);
    replication_writable_nodes(repl, writable, sizeof(writable));
    const char *auth_ci = v.primary[0] ? replication_node_conninfo(repl, v.primary) : NULL;
    if (!auth_ci) {
        scn_finish(st, DR_ESTATE, "the daemon has no primary on record or in replication.nodes: which side is "
                   "authoritative cannot be decided; trading stays halted");
        return;
    }
    bool auth_writable = false;
    for (tok = strtok_r(writable, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!strcmp(tok, v.primary)) {
            auth_writable = true;
        } else {
            others++;
            other = tok;
        }
    }
    if (!auth_writable) {
        scn_finish(st, DR_ESTATE, "'%s', the node the platform was last pointed at, does not answer as a primary: "
                   "which side is authoritative cannot be decided; trading stays halted, operator needed",
                   v.primary);
        return;
    }
    if (others > 1) {
        scn_finish(st, DR_ESTATE, "%u other nodes answer as primaries: one at a time only; trading stays halted, "
                   "operator needed", others);
        return;
    }
    const char *other_ci = other ? replication_node_conninfo(repl, other) : NULL;
    st->acc = other && other_ci ? json_pack("{s:s,s:s}", "name", other, "conninfo", other_ci) : NULL;
    scn_context_set(st->run, "authoritative", json_pack("{s:s,s:s}", "name", v.primary, "conninfo", auth_ci),
                    decided_auth, st);
}

static void plan_decide_authoritative(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    ReplFailoverView v;
    char msg[400];
    if (run->caps->replication)
        replication_failover_view(run->caps->replication, 0, &v);
    else
        memset(&v, 0, sizeof(v));
    snprintf(msg, sizeof(msg), "would take '%s' as authoritative (the daemon's record of the primary) if it answers "
             "as a primary", v.primary[0] ? v.primary : "(none known)");
    done(call, 0, msg);
}

/* ---- preserve_evidence: what the other side wrote ---- */

static void evidence_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the evidence: %s", err_str(status));
    else if (scn_ctx_str(run, "evidence", "path"))
        scn_finish(st, 0, "'%s' (timeline %lld, at %s) dumped to %s", scn_ctx_str(run, "other", "name"),
                   (long long)scn_ctx_int(run, "evidence", "timeline"), scn_ctx_str(run, "evidence", "lsn"),
                   scn_ctx_str(run, "evidence", "path"));
    else
        scn_finish(st, 0, "%s", scn_ctx_str(run, "evidence", "note"));
}

static void evidence_dumped(ScnStep *st, bool ok, int64_t status, const char *how)
{
    json_t *ev = st->acc;
    (void)status;
    st->acc = NULL;
    if (!ok) {
        json_decref(ev);
        scn_finish(st, DR_ESTATE, "pg_dump of '%s' %s: what it wrote is not saved (drctl approve to go on without "
                   "it, or drctl abort)", scn_ctx_str(st->run, "other", "name"), how);
        return;
    }
    scn_context_set(st->run, "evidence", ev, evidence_recorded, st);
}

/* The dump's file is made 0600 before pg_dump writes it (pg_dump keeps the mode of a file it
 * truncates); open, fchmod and close go through the thread pool. */
typedef struct NpDumpFile {
    uv_fs_t req;
    ScnStep *st;
    uv_file fd;
    int stage; /* 0 open, 1 fchmod, 2 close */
    int error;
} NpDumpFile;

static void evidence_spawn(ScnStep *st)
{
    const char *path = json_string_value(json_object_get(st->acc, "path"));
    const char *argv[] = {st->run->bcfg.pg_dump ? st->run->bcfg.pg_dump : "pg_dump", "-Fc", "--no-password", "-f",
                          path, "-d", st->conninfo, NULL};
    scn_hook_run(st, "pg_dump of the other node", argv, NULL, NP_EVIDENCE_TIMEOUT_MS, evidence_dumped);
}

static void evidence_file_step(uv_fs_t *req)
{
    NpDumpFile *f = req->data;
    ScnStep *st = f->st;
    ssize_t res = req->result;

    uv_fs_req_cleanup(req);
    if (res < 0 && !f->error)
        f->error = (int)res;
    if (f->stage == 0 && res >= 0) {
        f->fd = (uv_file)res;
        f->stage = 1;
        if (uv_fs_fchmod(st->run->core->loop, &f->req, f->fd, 0600, evidence_file_step) == 0)
            return;
        f->error = -EIO;
    }
    if (f->stage == 1) {
        f->stage = 2;
        if (uv_fs_close(st->run->core->loop, &f->req, f->fd, evidence_file_step) == 0)
            return;
    }
    int err = f->error;
    free(f);
    if (st->cancelled || fsm_call_cancelled(st->call))
        scn_cancelled(st);
    else if (err < 0)
        scn_finish(st, -EIO, "cannot create the evidence file %s: %s",
                   json_string_value(json_object_get(st->acc, "path")), uv_strerror(err));
    else
        evidence_spawn(st);
}

static void evidence_on_position(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    const char *other = scn_ctx_str(st->run, "other", "name");
    char path[1024], *db_ci = NULL, *child_ci = NULL, msg[256];

    if (status < 0 || !res || PQntuples(res) != 1) {
        /* It does not answer: nothing can be dumped now; its data directory keeps what it wrote. */
        char note[600];
        snprintf(note, sizeof(note), "'%s' does not answer (%s): nothing to dump now; its data directory keeps what "
                 "it wrote, keep it before a rebuild", other, errmsg && errmsg[0] ? errmsg : err_str(status));
        scn_context_set(st->run, "evidence", json_pack("{s:b,s:s}", "unreachable", 1, "note", note),
                        evidence_recorded, st);
        return;
    }
    scn_path(st->run->s, path, sizeof(path), "runs", st->run->id, "");
    size_t len = strlen(path);
    snprintf(path + len, sizeof(path) - len, ".%s.dump", other);
    int r = pgconn_conninfo_retarget(st->run->db_conninfo, scn_ctx_str(st->run, "other", "conninfo"), &db_ci);
    if (r == 0)
        r = pgconn_child_conninfo(db_ci, &child_ci, msg, sizeof(msg));
    free(db_ci);
    if (r < 0) {
        scn_finish(st, r, "cannot name the database on '%s' for pg_dump: %s", other, r == DR_ECONFIG ? msg : err_str(r));
        return;
    }
    free(st->conninfo);
    st->conninfo = child_ci;
    json_decref(st->acc);
    st->acc = json_pack("{s:s,s:I,s:s}", "path", path, "timeline", (json_int_t)atoll(PQgetvalue(res, 0, 0)), "lsn",
                        PQgetvalue(res, 0, 1));
    NpDumpFile *f = calloc(1, sizeof(*f));
    if (!f || !st->acc) {
        free(f);
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    f->st = st;
    f->req.data = f;
    r = uv_fs_open(st->run->core->loop, &f->req, path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600,
                   evidence_file_step);
    if (r < 0) {
        free(f);
        scn_finish(st, -EIO, "cannot create the evidence file %s: %s", path, uv_strerror(r));
    }
}

static void step_preserve_evidence(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    const char *ci = scn_ctx_str(st->run, "other", "conninfo");
    if (!ci) {
        scn_finish(st, 0, "no other node to keep evidence of");
        return;
    }
    scn_sql(st, ci,
            "SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int, "
            "pg_current_wal_lsn()::text",
            0, NULL, evidence_on_position);
}

static void plan_preserve_evidence(FsmCall *call, void *ctx, FsmDone done)
{
    (void)ctx;
    done(call, 0, "would pg_dump the protected database of the other node into state_dir/runs/<run>.<node>.dump, "
         "with its timeline and WAL position");
}

/* ---- fence_other ---- */

static void fence_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the fence: %s", err_str(status));
    else
        scn_finish(st, 0, "'%s' is fenced (%s)", scn_ctx_str(run, "other", "name") ?: "nothing",
                   scn_ctx_str(run, "fence", "hook"));
}

/* steps/fence.c: after the hook (or with none), the node must not answer as a writable primary;
 * the daemon's own fencing (failover.self_fence) when it still does. */
static void fence_confirmed(ScnStep *st, bool fenced, const char *by, const char *how)
{
    if (!fenced) {
        scn_finish(st, DR_ESTATE, "%s: not fenced (fence it by hand, then drctl approve; or drctl abort)", how);
        return;
    }
    scn_context_set(st->run, "fence", json_pack("{s:s,s:s,s:I}", "by", by, "hook", how, "ms",
                                                (json_int_t)clock_wall_ms()), fence_recorded, st);
}

static void fence_exited(ScnStep *st, bool ok, int64_t status, const char *how)
{
    (void)status;
    if (!ok) {
        scn_finish(st, DR_ESTATE, "the fence hook %s: '%s' is not known to be fenced (fence it by hand, then drctl "
                   "approve; or drctl abort)", how, scn_ctx_str(st->run, "other", "name"));
        return;
    }
    scn_fence_confirm(st, scn_ctx_str(st->run, "other", "name"), scn_ctx_str(st->run, "other", "conninfo"), true, how,
                      fence_confirmed);
}

static void step_fence_other(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char node[128], ci[1200], run[128];
    const char *env[] = {node, ci, run, "DRSUP_REASON=split_brain", NULL};
    if (!st)
        return;
    const char *other = scn_ctx_str(st->run, "other", "name");
    const ConfigFailover *f = np_failover(st->run);
    if (!other) {
        scn_context_set(st->run, "fence", json_pack("{s:s,s:s,s:I}", "by", "none", "hook",
                                                    "nothing to fence: no other node answered as a primary", "ms",
                                                    (json_int_t)clock_wall_ms()), fence_recorded, st);
        return;
    }
    if (!f->n_fence && f->self_fence == CONFIG_SELF_FENCE_OFF) {
        scn_finish(st, DR_ECONFIG, "no fence hook is configured (failover.fence) and failover.self_fence is off: '%s' "
                   "could keep accepting writes", other);
        return;
    }
    if (!f->n_fence) { /* the daemon's own fencing alone */
        scn_fence_confirm(st, other, scn_ctx_str(st->run, "other", "conninfo"), false, NULL, fence_confirmed);
        return;
    }
    snprintf(node, sizeof(node), "DRSUP_OLD_PRIMARY=%s", other);
    scn_env_conninfo(ci, sizeof(ci), "DRSUP_OLD_PRIMARY_CONNINFO", scn_ctx_str(st->run, "other", "conninfo"));
    snprintf(run, sizeof(run), "DRSUP_RUN=%s", st->run->id);
    scn_hook_run(st, "fence hook", (const char *const *)f->fence, env, f->hook_timeout_ms, fence_exited);
}

static void plan_fence_other(FsmCall *call, void *ctx, FsmDone done)
{
    const ConfigFailover *f = np_failover(ctx);
    char msg[1200], self[500];
    scn_fence_plan(ctx, scn_ctx_str(ctx, "other", "name"), self, sizeof(self));
    snprintf(msg, sizeof(msg), "would run the fence hook '%s' for the other node (DRSUP_OLD_PRIMARY), then check with a "
             "fresh connection that it no longer answers as a writable primary; %s",
             f->n_fence ? f->fence[0] : "(none configured)", self);
    done(call, 0, msg);
}

/* ---- gates: a person approves going on (the fence's gate is the shared confirm_fence) ---- */

static void evidence_skipped(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    (void)run;
    if (status < 0)
        scn_finish(st, status, "cannot record the approval: %s", err_str(status));
    else
        scn_finish(st, 0, "an operator chose to go on without the other node's dump");
}

static void step_skip_evidence(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    scn_context_set(st->run, "evidence", json_pack("{s:b,s:s}", "skipped", 1, "note",
                                                   "an operator approved going on without the dump"),
                    evidence_skipped, st);
}

static void approval_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the approval: %s", err_str(status));
    else
        scn_finish(st, 0, "an operator confirmed '%s' as authoritative", scn_ctx_str(run, "authoritative", "name"));
}

static void step_approve(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    scn_context_set(st->run, "approval", json_pack("{s:I}", "ms", (json_int_t)clock_wall_ms()), approval_recorded, st);
}

static void plan_approve(FsmCall *call, void *ctx, FsmDone done)
{
    (void)ctx;
    done(call, 0, "would wait for drctl approve (always, in every mode: resuming after a split brain is a person's "
         "decision)");
}

/* ---- plan_rejoin: the fenced node rebuilt as a standby in this run, or left to the operator ---- */

#define NP_LEFT_TO_OPERATOR "left_to_operator"

static void rejoin_decided(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0) {
        scn_finish(st, status, "cannot record the rejoin: %s", err_str(status));
        return;
    }
    if (!strcmp(scn_ctx_str(run, "rejoin", "by") ?: "", "operator")) {
        fsm_call_set_outcome(st->call, NP_LEFT_TO_OPERATOR);
        scn_finish(st, 0, "%s", scn_ctx_str(run, "rejoin", "note"));
        return;
    }
    scn_finish(st, 0, "'%s' is rebuilt as a standby of '%s' now (rejoin's steps)", scn_ctx_str(run, "node", "name"),
               scn_ctx_str(run, "source", "name"));
}

static void rejoin_set_by_run(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0) {
        rejoin_decided(run, status, st);
        return;
    }
    scn_context_set(run, "rejoin", json_pack("{s:s,s:s}", "by", "run", "note", "rebuilt as a standby by this run"),
                    rejoin_decided, st);
}

static void rejoin_node_set(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0) {
        rejoin_decided(run, status, st);
        return;
    }
    scn_context_set(run, "source", json_pack("{s:s,s:s}", "name", scn_ctx_str(run, "authoritative", "name"),
                                             "conninfo", scn_ctx_str(run, "authoritative", "conninfo")),
                    rejoin_set_by_run, st);
}

static void rejoin_left(ScnStep *st, const char *why)
{
    char note[600];
    snprintf(note, sizeof(note), "left to the operator: drctl rejoin %s (%s)", scn_ctx_str(st->run, "other", "name"),
             why);
    scn_context_set(st->run, "rejoin", json_pack("{s:s,s:s}", "by", "operator", "note", note), rejoin_decided, st);
}

static void step_plan_rejoin(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    ScnRun *run = st->run;
    const char *other = scn_ctx_str(run, "other", "name");
    if (scn_ctx_str(run, "rejoin", "by")) { /* decided before a restart: the same way again */
        rejoin_decided(run, 0, st);
        return;
    }
    if (!other) {
        scn_context_set(run, "rejoin", json_pack("{s:s,s:s}", "by", "operator", "note", "no other node to rejoin"),
                        rejoin_decided, st);
        return;
    }
    const ConfigReplicationNode *n = scn_node_config(run, other);
    if (!n || !n->data_directory) {
        rejoin_left(st, "it has no data_directory in replication.nodes");
        return;
    }
    scn_context_set(run, "node", json_pack("{s:s,s:s,s:s}", "name", n->name, "conninfo", n->conninfo,
                                           "data_directory", n->data_directory),
                    rejoin_node_set, st);
}

static void plan_plan_rejoin(FsmCall *call, void *ctx, FsmDone done)
{
    ReplFailoverView v;
    ScnRun *run = ctx;
    char msg[400], writable[256];
    const char *other = NULL;
    if (run->caps->replication) {
        replication_failover_view(run->caps->replication, 0, &v);
        replication_writable_nodes(run->caps->replication, writable, sizeof(writable));
        char *save = NULL;
        for (char *t = strtok_r(writable, ",", &save); t; t = strtok_r(NULL, ",", &save))
            if (strcmp(t, v.primary) != 0)
                other = t;
    }
    const ConfigReplicationNode *n = other ? scn_node_config(run, other) : NULL;
    if (n && n->data_directory)
        snprintf(msg, sizeof(msg), "would rebuild '%s' as a standby (rejoin's steps: pg_rewind or a fresh base "
                 "backup into %s) before the reconcile", n->name, n->data_directory);
    else
        snprintf(msg, sizeof(msg), "would leave the rejoin of the fenced node to the operator (drctl rejoin NODE): "
                 "no data_directory for it in replication.nodes");
    done(call, 0, msg);
}

/* A rejoin step failed: the node stays fenced (stopped, or not started before it was configured as
 * a standby); the run goes on to the reconcile, the rebuild is the operator's. */
static void rejoin_failed_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the rejoin: %s", err_str(status));
    else
        scn_finish(st, 0, "%s", scn_ctx_str(run, "rejoin", "note"));
}

static void step_rejoin_failed(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char note[300];
    if (!st)
        return;
    snprintf(note, sizeof(note), "the run's rejoin of '%s' failed (its steps say why): it stays fenced; left to the "
             "operator: drctl rejoin %s", scn_ctx_str(st->run, "other", "name"), scn_ctx_str(st->run, "other", "name"));
    log_warning("scenario", "%s", note);
    scn_context_set(st->run, "rejoin", json_pack("{s:s,s:s,s:b}", "by", "operator", "note", note, "failed", 1),
                    rejoin_failed_recorded, st);
}

/* ---- against the authoritative node: reconcile and the watch ---- */

static void step_reconcile_authoritative(FsmCall *call, void *ctx, FsmDone done)
{
    int r = scn_run_retarget_db(ctx, "authoritative");
    if (r < 0)
        done(call, r, "cannot name the database on the authoritative node");
    else
        scn_step_reconcile(call, ctx, done);
}

static void step_watch_authoritative(FsmCall *call, void *ctx, FsmDone done)
{
    int r = scn_run_retarget_db(ctx, "authoritative");
    if (r < 0)
        done(call, r, "cannot name the database on the authoritative node");
    else
        scn_step_post_resume_watch(call, ctx, done);
}

/* ---- the table ---- */

static const FsmState np_states[N_STATES] = {
    [DETECTED] = {"detected", FSM_STATE_ACTIVE},
    [HALTED] = {"halted", FSM_STATE_ACTIVE},
    [DECIDED] = {"authoritative_decided", FSM_STATE_ACTIVE},
    [EVIDENCE_KEPT] = {"evidence_kept", FSM_STATE_ACTIVE},
    [EVIDENCE_MISSING] = {"evidence_missing", FSM_STATE_ACTIVE},
    [FENCE_UNCONFIRMED] = {"fence_unconfirmed", FSM_STATE_ACTIVE},
    [FENCED] = {"fenced", FSM_STATE_ACTIVE},
    [APPROVED] = {"approved", FSM_STATE_ACTIVE},
    [RJ_PLANNED] = {"rejoin_planned", FSM_STATE_ACTIVE},
    [RJ_SETTINGS_READ] = {"rejoin_settings_read", FSM_STATE_ACTIVE},
    [RJ_STOPPED] = {"rejoin_stopped", FSM_STATE_ACTIVE},
    [RJ_CHECKPOINTED] = {"rejoin_checkpointed", FSM_STATE_ACTIVE},
    [RJ_REWIND_FAILED] = {"rejoin_rewind_failed", FSM_STATE_ACTIVE},
    [RJ_COPIED] = {"rejoin_copied", FSM_STATE_ACTIVE},
    [RJ_CONFIGURED] = {"rejoin_configured", FSM_STATE_ACTIVE},
    [RJ_SLOT_READY] = {"rejoin_slot_ready", FSM_STATE_ACTIVE},
    [RJ_STARTED] = {"rejoin_started", FSM_STATE_ACTIVE},
    [REJOIN_FAILED] = {"rejoin_failed", FSM_STATE_ACTIVE},
    [REJOINED] = {"rejoined", FSM_STATE_ACTIVE},
    [RECONCILED] = {"reconciled", FSM_STATE_ACTIVE},
    [SHADOW] = {"trading_in_shadow", FSM_STATE_ACTIVE},
    [LIVE] = {"live", FSM_STATE_ACTIVE},
    [WATCHED] = {"watch_passed", FSM_STATE_SUCCESS},
    [STAYED_HALTED] = {"stayed_halted", FSM_STATE_FAILURE},
    [NOT_RECONCILED] = {"not_reconciled", FSM_STATE_FAILURE},
    [WATCH_FAILED] = {"watch_failed", FSM_STATE_ACTIVE},
    [HALTED_AFTER_WATCH] = {"halted_after_watch", FSM_STATE_FAILURE},
};

static const FsmRow np_rows[] = {
    /* from, to, step, sentence, step fn, probe, plan, cancel, timeout ms, attempts, idempotent, gate, on_failure */
    {DETECTED, HALTED, "halt_trading", "trading is halted and the venue confirms it",
     scn_step_halt_trading, NULL, scn_plan_halt_trading, NULL, 30000, 10, true, FSM_GATE_NONE, FSM_NO_STATE},
    {HALTED, DECIDED, "decide_authoritative", "the node the platform was last pointed at is authoritative",
     step_decide_authoritative, NULL, plan_decide_authoritative, NULL, 10000, 2, true, FSM_GATE_NONE, STAYED_HALTED},
    {DECIDED, EVIDENCE_KEPT, "preserve_evidence", "what the other node holds is dumped before it is fenced",
     step_preserve_evidence, NULL, plan_preserve_evidence, scn_cancel, NP_EVIDENCE_TIMEOUT_MS + 60000, 2, true,
     FSM_GATE_NONE, EVIDENCE_MISSING},
    {EVIDENCE_MISSING, EVIDENCE_KEPT, "skip_evidence", "an operator goes on without the other node's dump",
     step_skip_evidence, NULL, NULL, NULL, 10000, 1, true, FSM_GATE_OPERATOR, STAYED_HALTED},
    {EVIDENCE_KEPT, FENCED, "fence_other", "the other node is fenced: its fence hook exited 0 or the daemon's own "
     "fencing took, and it no longer answers as a writable primary", step_fence_other, NULL, plan_fence_other,
     scn_cancel, 120000, 2, true, FSM_GATE_NONE,
     FENCE_UNCONFIRMED},
    {FENCE_UNCONFIRMED, FENCED, "confirm_fence", "an operator confirms that the other node is fenced",
     scn_step_confirm_fence, NULL, NULL, NULL, 10000, 1, true, FSM_GATE_OPERATOR, STAYED_HALTED},
    {FENCED, APPROVED, "approve_authoritative", "a person confirms the authoritative side before anything resumes",
     step_approve, NULL, plan_approve, NULL, 10000, 1, true, FSM_GATE_OPERATOR, STAYED_HALTED},
    {APPROVED, RJ_PLANNED, "plan_rejoin", "the fenced node is rebuilt by this run if its data_directory is "
     "configured, else left to the operator", step_plan_rejoin, NULL, plan_plan_rejoin, NULL, 10000, 2, true,
     FSM_GATE_NONE, REJOIN_FAILED},
    /* rejoin's steps (rejoin_steps.h): a failure leaves the node fenced and the rebuild to the operator */
    {RJ_PLANNED, RJ_SETTINGS_READ, "check_settings", "the authoritative node's settings say whether pg_rewind can be "
     "used", rejoin_step_check_settings, NULL, NULL, scn_cancel, 30000, 2, true, FSM_GATE_NONE, REJOIN_FAILED},
    {RJ_SETTINGS_READ, RJ_STOPPED, "stop_node", "the fenced node's server is stopped",
     rejoin_step_stop_node, NULL, NULL, scn_cancel, 300000, 2, true, FSM_GATE_NONE, REJOIN_FAILED},
    {RJ_STOPPED, RJ_CHECKPOINTED, "checkpoint", "the authoritative node made a checkpoint (pg_rewind reads its "
     "control file)", rejoin_step_checkpoint, NULL, NULL, scn_cancel, 600000, 2, true, FSM_GATE_NONE, REJOIN_FAILED},
    {RJ_CHECKPOINTED, RJ_COPIED, "rewind", "pg_rewind made the fenced node's data directory follow the authoritative "
     "node", rejoin_step_rewind, NULL, NULL, scn_cancel, REJOIN_STEPS_COPY_TIMEOUT_MS, 1, true, FSM_GATE_APPROVAL,
     RJ_REWIND_FAILED},
    {RJ_REWIND_FAILED, RJ_COPIED, "base_backup", "a fresh base backup replaced the fenced node's data directory (kept "
     "aside)", rejoin_step_base_backup, NULL, NULL, scn_cancel, REJOIN_STEPS_COPY_TIMEOUT_MS, 2, true,
     FSM_GATE_APPROVAL, REJOIN_FAILED},
    {RJ_COPIED, RJ_CONFIGURED, "configure", "the fenced node is configured as a standby of the authoritative node",
     rejoin_step_configure, NULL, NULL, NULL, 60000, 2, true, FSM_GATE_NONE, REJOIN_FAILED},
    {RJ_CONFIGURED, RJ_SLOT_READY, "create_slot", "the authoritative node has the fenced node's replication slot",
     rejoin_step_create_slot, NULL, NULL, scn_cancel, 30000, 2, true, FSM_GATE_NONE, REJOIN_FAILED},
    {RJ_SLOT_READY, RJ_STARTED, "start_node", "the fenced node's server is started as a standby",
     rejoin_step_start_node, NULL, NULL, scn_cancel, 300000, 2, true, FSM_GATE_NONE, REJOIN_FAILED},
    {RJ_STARTED, REJOINED, "wait_streaming", "the authoritative node sees the rebuilt node streaming",
     rejoin_step_wait_streaming, NULL, NULL, scn_cancel, REJOIN_STEPS_STREAM_TIMEOUT_MS, 1, true, FSM_GATE_NONE,
     REJOIN_FAILED},
    {REJOIN_FAILED, REJOINED, "leave_rejoin_to_operator", "the rejoin failed: the node stays fenced, its rebuild is the "
     "operator's", step_rejoin_failed, NULL, NULL, NULL, 10000, 2, true, FSM_GATE_NONE, STAYED_HALTED},
    {REJOINED, RECONCILED, "reconcile", "the authoritative node matches the exchange's positions and fills",
     step_reconcile_authoritative, NULL, scn_plan_reconcile, NULL, 600000, 2, true, FSM_GATE_NONE, NOT_RECONCILED},
    {RECONCILED, SHADOW, "resume_shadow", "trading resumes in shadow mode (paper only)",
     scn_step_resume_shadow, NULL, scn_plan_resume_shadow, NULL, 30000, 3, true, FSM_GATE_NONE, FSM_NO_STATE},
    {SHADOW, LIVE, "resume_live", "trading is live again",
     scn_step_resume_live, scn_probe_resume_live, scn_plan_resume_live, scn_cancel, 30000, 3, false, FSM_GATE_APPROVAL,
     FSM_NO_STATE},
    {LIVE, WATCHED, "post_resume_watch", "the authoritative node still matches the exchange after the resume",
     step_watch_authoritative, NULL, scn_plan_post_resume_watch, scn_cancel, SCN_WATCH_TIMEOUT_MS, 1, true,
     FSM_GATE_NONE, WATCH_FAILED},
    {WATCH_FAILED, HALTED_AFTER_WATCH, "halt_after_watch", "trading is halted again: the post-resume watch failed",
     scn_step_halt_after_watch, NULL, scn_plan_halt_trading, NULL, 30000, 10, true, FSM_GATE_NONE, FSM_NO_STATE},
};

static const FsmBranch np_branches[] = {
    {APPROVED, NP_LEFT_TO_OPERATOR, REJOINED}, /* no data_directory: no rejoin in this run */
};

static const FsmTable np_table = {"network_partition", np_states, N_STATES, np_rows,
                                  (int)(sizeof(np_rows) / sizeof(np_rows[0])), np_branches,
                                  (int)(sizeof(np_branches) / sizeof(np_branches[0]))};

static bool np_may_resume(const ScnRun *run)
{
    return scn_may_resume_in(run, RECONCILED, SHADOW);
}

/* Which side won, what the other held, the fence. */
static void np_report_extras(const ScnRun *run, json_t *rep)
{
    json_t *p = json_object();
    static const char *const keys[] = {"authoritative", "other", "evidence", "fence", "self_fence", "approval",
                                       "rejoin", "copy"};
    if (!p)
        return;
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
        const json_t *v = json_object_get(run->ctx, keys[i]);
        json_t *c = v ? json_deep_copy(v) : json_null();
        if (c && json_is_object(c))
            json_object_del(c, "conninfo");
        json_object_set_new(p, keys[i], c);
    }
    json_object_set_new(rep, "partition", p);
}

static const char *const np_handles[] = {INCIDENT_NETWORK_PARTITION, NULL};

const ScenarioDef scenario_network_partition = {
    .name = "network_partition",
    .short_name = "partition",
    .summary = "two primaries: halt, keep the authoritative side, dump and fence the other, a person approves, "
               "reconcile, resume",
    .table = &np_table,
    .handles = np_handles,
    .live_step = "resume_live",
    .may_resume = np_may_resume,
    .restore_point_ms = NULL, /* nothing restored */
    .report_extras = np_report_extras,
    .config = &network_partition_config_section,
};
