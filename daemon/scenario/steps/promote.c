/*
 * steps/promote: the steps of a change of primary that primary_failure and switchover share:
 * promote_standby (pg_promote on the node in ctx "standby" {name, conninfo}, then checked to have
 * left recovery on a new timeline, recorded in ctx "promotion" and as the primary,
 * replication_record_primary: state_dir/primary.json), repoint_platform (the failover.repoint
 * hook, ctx "repoint"), and the reconcile and post-resume watch against the new primary
 * (database.conninfo retargeted to it).
 *
 * Idempotent: promote first asks the node whether it is still in recovery (a node promoted before
 * a restart is confirmed and recorded, never promoted twice); the repoint hook must be idempotent
 * (its contract, docs/replication.md).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "err.h"
#include "log.h"
#include "observe/replication.h"
#include "pgconn.h"
#include "scenario/scn_internal.h"
#include "scenario/steps/steps.h"

/* NAME=conninfo for a hook's environment, or NAME= when the conninfo holds a password (secrets never
 * travel to a child: the hook finds the node by its name). */
void scn_env_conninfo(char *out, size_t n, const char *name, const char *conninfo)
{
    bool secret = conninfo && pgconn_conninfo_has_password(conninfo);
    snprintf(out, n, "%s=%s", name, conninfo && !secret ? conninfo : "");
    if (secret)
        log_warning("scenario", "%s is left empty: the node's conninfo holds a password", name);
}


/* ---- promote_standby ---- */

#define SCN_PROMOTE_STATE_SQL                                                                                                \
    "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN (SELECT timeline_id FROM pg_control_checkpoint()) " \
    "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END"

static void promote_recorded_primary(int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "promoted, but cannot record the new primary: %s", err_str(status));
    else
        scn_finish(st, 0, "'%s' is the primary now, on timeline %lld", scn_ctx_str(st->run, "standby", "name"),
                   (long long)scn_ctx_int(st->run, "promotion", "timeline"));
}

static void promote_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0) {
        scn_finish(st, status, "cannot record the promotion: %s", err_str(status));
        return;
    }
    replication_record_primary(run->caps->replication, scn_ctx_str(run, "standby", "name"),
                               scn_ctx_int(run, "promotion", "timeline"), run->id, promote_recorded_primary, st);
}

/* After pg_promote: not in recovery, and on a new timeline. */
static void promote_on_state_after(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    if (status < 0 || !res || PQntuples(res) != 1) {
        scn_fail_sql(st, status < 0 ? status : DR_EDB, "cannot ask the promoted standby", errmsg);
        return;
    }
    int64_t was = scn_ctx_int(st->run, "promote_from", "timeline");
    long long tl = atoll(PQgetvalue(res, 0, 1));
    if (strcmp(PQgetvalue(res, 0, 0), "f") != 0) {
        scn_finish(st, DR_ESTATE, "'%s' is still in recovery after pg_promote", scn_ctx_str(st->run, "standby", "name"));
        return;
    }
    if (was > 0 && tl <= was) {
        scn_finish(st, DR_ESTATE, "'%s' accepts writes but is still on timeline %lld", scn_ctx_str(st->run, "standby",
                   "name"), tl);
        return;
    }
    scn_context_set(st->run, "promotion",
                    json_pack("{s:s,s:I,s:I,s:I}", "node", scn_ctx_str(st->run, "standby", "name"), "timeline",
                              (json_int_t)tl, "previous_timeline", (json_int_t)was, "at_ms",
                              (json_int_t)clock_wall_ms()),
                    promote_recorded, st);
}

static void promote_on_promoted(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    if (status < 0 || !res || PQntuples(res) != 1) {
        scn_fail_sql(st, status < 0 ? status : DR_EDB, "pg_promote failed", errmsg);
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        scn_finish(st, -ETIMEDOUT, "pg_promote did not finish within %llu s",
                   (unsigned long long)(st->wait_ms / 1000));
        return;
    }
    scn_sql(st, NULL, SCN_PROMOTE_STATE_SQL, 0, NULL, promote_on_state_after);
}

static void promote_send(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    char secs[24];
    const char *p[1] = {secs};
    (void)run;
    if (status < 0) {
        scn_finish(st, status, "cannot record the timeline before the promotion: %s", err_str(status));
        return;
    }
    snprintf(secs, sizeof(secs), "%llu", (unsigned long long)(st->wait_ms / 1000));
    scn_sql(st, NULL, "SELECT pg_promote(true, $1::int)", 1, p, promote_on_promoted);
}

static void promote_on_state_before(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    if (status < 0 || !res || PQntuples(res) != 1) {
        scn_fail_sql(st, status < 0 ? status : DR_EDB, "cannot ask the standby to promote", errmsg);
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "f") == 0) { /* promoted before a restart: confirm and record */
        promote_on_state_after(st, status, res, errmsg);
        return;
    }
    scn_context_set(st->run, "promote_from", json_pack("{s:I}", "timeline", (json_int_t)atoll(PQgetvalue(res, 0, 1))),
                    promote_send, st);
}

void scn_step_promote(FsmCall *call, void *ctx, FsmDone done, uint64_t timeout_ms)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    st->wait_ms = timeout_ms;
    const char *ci = scn_ctx_str(st->run, "standby", "conninfo");
    if (!ci || !st->run->caps->replication) {
        scn_finish(st, DR_ESTATE, "no standby was chosen");
        return;
    }
    scn_sql(st, ci, SCN_PROMOTE_STATE_SQL, 0, NULL, promote_on_state_before);
}

void scn_plan_promote(FsmCall *call, FsmDone done, uint64_t timeout_ms)
{
    char msg[300];
    snprintf(msg, sizeof(msg), "would run pg_promote(true, %llu) on the chosen standby, then check that it left "
             "recovery on a new timeline and record it as the primary",
             (unsigned long long)(timeout_ms / 1000));
    done(call, 0, msg);
}

/* ---- repoint_platform ---- */

static void repoint_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the repoint: %s", err_str(status));
    else
        scn_finish(st, 0, "the platform writes to '%s' now (the repoint hook %s)", scn_ctx_str(run, "standby", "name"),
                   scn_ctx_str(run, "repoint", "hook"));
}

static void repoint_exited(ScnStep *st, bool ok, int64_t status, const char *how)
{
    (void)status;
    if (!ok) {
        scn_finish(st, DR_ESTATE, "the repoint hook %s: trading stays halted", how);
        return;
    }
    scn_context_set(st->run, "repoint", json_pack("{s:s,s:I}", "hook", how, "ms", (json_int_t)clock_wall_ms()),
                    repoint_recorded, st);
}

void scn_step_repoint_platform(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    const ConfigFailover *f;
    char node[128], ci[1200], old[128], tl[64], run[128];
    const char *env[] = {node, ci, old, tl, run, NULL};

    if (!st)
        return;
    f = &st->run->core->cfg->replication.failover;
    if (!f->n_repoint) {
        scn_finish(st, DR_ECONFIG, "no repoint hook is configured (failover.repoint): the platform would keep writing "
                   "to the old primary; trading stays halted");
        return;
    }
    snprintf(node, sizeof(node), "DRSUP_NEW_PRIMARY=%s", scn_ctx_str(st->run, "standby", "name") ?: "");
    scn_env_conninfo(ci, sizeof(ci), "DRSUP_NEW_PRIMARY_CONNINFO", scn_ctx_str(st->run, "standby", "conninfo"));
    snprintf(old, sizeof(old), "DRSUP_OLD_PRIMARY=%s", scn_ctx_str(st->run, "old_primary", "name") ?: "");
    snprintf(tl, sizeof(tl), "DRSUP_TIMELINE=%lld", (long long)scn_ctx_int(st->run, "promotion", "timeline"));
    snprintf(run, sizeof(run), "DRSUP_RUN=%s", st->run->id);
    scn_hook_run(st, "repoint hook", (const char *const *)f->repoint, env, f->hook_timeout_ms, repoint_exited);
}

void scn_plan_repoint_platform(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    const ConfigFailover *f = &run->core->cfg->replication.failover;
    char msg[600];
    snprintf(msg, sizeof(msg), "would run the repoint hook '%s' with DRSUP_NEW_PRIMARY and DRSUP_NEW_PRIMARY_CONNINFO",
             f->n_repoint ? f->repoint[0] : "(none configured: the run would stay halted)");
    done(call, 0, msg);
}

/* ---- against the new primary: reconcile and the watch ---- */

int scn_run_retarget_db(ScnRun *run, const char *ctx_key)
{
    const char *ci = scn_ctx_str(run, ctx_key, "conninfo");
    char *to = NULL;
    if (!ci)
        return DR_ESTATE;
    int r = pgconn_conninfo_retarget(run->db_conninfo, ci, &to);
    if (r < 0)
        return r;
    free(run->db_conninfo);
    run->db_conninfo = to;
    return 0;
}

void scn_step_reconcile_new_primary(FsmCall *call, void *ctx, FsmDone done)
{
    int r = scn_run_retarget_db(ctx, "standby");
    if (r < 0)
        done(call, r, "cannot name the database on the new primary");
    else
        scn_step_reconcile(call, ctx, done);
}

void scn_step_watch_new_primary(FsmCall *call, void *ctx, FsmDone done)
{
    int r = scn_run_retarget_db(ctx, "standby");
    if (r < 0)
        done(call, r, "cannot name the database on the new primary");
    else
        scn_step_post_resume_watch(call, ctx, done);
}

/* ---- confirm_fence: an operator fenced the node by hand (an operator gate) ---- */

static void confirm_fence_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    (void)run;
    if (status < 0)
        scn_finish(st, status, "cannot record the fence: %s", err_str(status));
    else
        scn_finish(st, 0, "an operator confirmed the fence");
}

void scn_step_confirm_fence(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    scn_context_set(st->run, "fence", json_pack("{s:s,s:s,s:I}", "by", "operator", "hook", "approved by an operator",
                                                "ms", (json_int_t)clock_wall_ms()), confirm_fence_recorded, st);
}
