/*
 * steps/standbys: repoint_standbys, the step of a change of primary (primary_failure, switchover)
 * that points every other standby of replication.nodes at the new primary (ctx "standby"), after
 * the promotion and off the trading path (docs/replication.md, "The other standbys").
 *
 * For each node that is neither the new nor the old primary, one after the other: the
 * failover.repoint_standby hook when one is configured; else, on the node (its conninfo from
 * replication.nodes, a role that may ALTER SYSTEM), its primary_conninfo retargeted to the new
 * primary's host and port (its user, passfile and TLS settings kept) with application_name=<node>,
 * its primary_slot_name created on the new primary when it has one, ALTER SYSTEM SET
 * primary_conninfo and pg_reload_conf() (PostgreSQL 13+ applies it on reload). Then a bounded wait
 * (failover.standby_timeout) until the new primary's pg_stat_replication shows it streaming. A
 * standby that does not follow does not fail the run: it is reported (ctx "standbys"), logged,
 * and its replication.broken condition stays open (that is the page).
 *
 * Idempotent: the setting, the reload and the slot (created only when missing) repeat harmlessly;
 * the result is recorded once every standby was tried.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "log.h"
#include "observe/replication.h"
#include "pgconn.h"
#include "scenario/scn_internal.h"
#include "scenario/steps/steps.h"

#define SB_POLL_MS 250u

#define SB_SETTINGS_SQL                                                                                               \
    "SELECT pg_is_in_recovery(), current_setting('primary_conninfo'), current_setting('primary_slot_name')"
#define SB_SLOT_SQL                                                                                                   \
    "SELECT pg_create_physical_replication_slot($1, true) WHERE NOT EXISTS "                                         \
    "(SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)"
#define SB_STREAMING_SQL                                                                                              \
    "SELECT count(*) FROM pg_stat_replication WHERE application_name = $1 AND state = 'streaming'"

static void sb_next(ScnStep *st);

/* st->acc: {"todo": [{name, conninfo}], "done": [{node, how, following, why}]}; st->idx the node
 * in todo being repointed. The node's new primary_conninfo and slot while it is. */
static json_t *sb_node(const ScnStep *st)
{
    return json_array_get(json_object_get(st->acc, "todo"), st->idx);
}

static const char *sb_node_str(const ScnStep *st, const char *key)
{
    return json_string_value(json_object_get(sb_node(st), key));
}

static const char *sb_new_primary(const ScnStep *st)
{
    return scn_ctx_str(st->run, "standby", "conninfo");
}

/* Close the connection the last statement used: the next one goes to another server. */
static void sb_disconnect(ScnStep *st)
{
    if (st->pg) {
        pgconn_close(st->pg, NULL, NULL);
        st->pg = NULL;
    }
}

/* The node's outcome; then the next node. */
static void sb_done_node(ScnStep *st, bool following, const char *how, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void sb_done_node(ScnStep *st, bool following, const char *how, const char *fmt, ...)
{
    char why[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    const char *name = sb_node_str(st, "name");
    json_array_append_new(json_object_get(st->acc, "done"), json_pack("{s:s,s:s,s:b,s:s}", "node", name ? name : "?",
                                                                      "how", how, "following", following, "why", why));
    if (following)
        log_notice("scenario", "standby '%s' streams from the new primary '%s' (%s)", name,
                   scn_ctx_str(st->run, "standby", "name"), how);
    else
        log_error("scenario", "standby '%s' does not follow the new primary '%s': %s (replication.broken stays open)",
                  name, scn_ctx_str(st->run, "standby", "name"), why);
    sb_disconnect(st);
    st->idx++;
    sb_next(st);
}

/* ---- the wait: streaming from the new primary ---- */

static void sb_poll(ScnStep *st);

static void sb_on_poll_timer(uv_timer_t *t)
{
    sb_poll(t->data);
}

static void sb_on_streaming(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    const char *how = json_object_get(st->acc, "hook") ? "the repoint_standby hook" : "primary_conninfo";
    if (status == 0 && res && PQntuples(res) == 1 && atoll(PQgetvalue(res, 0, 0)) > 0) {
        sb_done_node(st, true, how, "streams from the new primary");
        return;
    }
    if (status < 0)
        sb_disconnect(st); /* asked again on a fresh connection */
    if (uv_now(st->run->core->loop) >= st->deadline_ms) {
        sb_done_node(st, false, how, "not streaming from the new primary within %llu s%s%s",
                     (unsigned long long)(st->run->core->cfg->replication.failover.standby_timeout_ms / 1000),
                     status < 0 ? ": " : "", status < 0 ? (errmsg ? errmsg : err_str(status)) : "");
        return;
    }
    if (scn_step_wait(st, SB_POLL_MS, sb_on_poll_timer) < 0)
        scn_finish(st, -ENOMEM, "out of memory");
}

static void sb_poll(ScnStep *st)
{
    const char *p[1] = {sb_node_str(st, "name")};
    scn_sql(st, sb_new_primary(st), SB_STREAMING_SQL, 1, p, sb_on_streaming);
}

static void sb_wait_streaming(ScnStep *st)
{
    sb_disconnect(st);
    st->deadline_ms = uv_now(st->run->core->loop) + st->run->core->cfg->replication.failover.standby_timeout_ms;
    sb_poll(st);
}

/* ---- the hook ---- */

static void sb_hook_exited(ScnStep *st, bool ok, int64_t status, const char *how)
{
    (void)status;
    if (!ok) {
        sb_done_node(st, false, "the repoint_standby hook", "the repoint_standby hook %s", how);
        return;
    }
    sb_wait_streaming(st);
}

static void sb_run_hook(ScnStep *st, const ConfigFailover *f)
{
    char node[128], node_ci[1200], primary[128], ci[1200], run[128];
    const char *env[] = {node, node_ci, primary, ci, run, NULL};
    snprintf(node, sizeof(node), "DRSUP_STANDBY=%s", sb_node_str(st, "name"));
    scn_env_conninfo(node_ci, sizeof(node_ci), "DRSUP_STANDBY_CONNINFO", sb_node_str(st, "conninfo"));
    snprintf(primary, sizeof(primary), "DRSUP_NEW_PRIMARY=%s", scn_ctx_str(st->run, "standby", "name") ?: "");
    scn_env_conninfo(ci, sizeof(ci), "DRSUP_NEW_PRIMARY_CONNINFO", sb_new_primary(st));
    snprintf(run, sizeof(run), "DRSUP_RUN=%s", st->run->id);
    json_object_set_new(st->acc, "hook", json_true());
    scn_hook_run(st, "repoint_standby", (const char *const *)f->repoint_standby, env, f->hook_timeout_ms,
                 sb_hook_exited);
}

/* ---- primary_conninfo + reload ---- */

static void sb_on_reloaded(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0) {
        sb_done_node(st, false, "primary_conninfo", "pg_reload_conf() failed: %s", errmsg ? errmsg : err_str(status));
        return;
    }
    sb_wait_streaming(st);
}

static void sb_on_altered(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0) {
        sb_done_node(st, false, "primary_conninfo", "ALTER SYSTEM SET primary_conninfo failed: %s",
                     errmsg ? errmsg : err_str(status));
        return;
    }
    scn_sql(st, sb_node_str(st, "conninfo"), "SELECT pg_reload_conf()", 0, NULL, sb_on_reloaded);
}

/* 'value' as an SQL literal (standard_conforming_strings: only ' is doubled). NULL on ENOMEM. */
static char *sb_sql_literal(const char *v)
{
    size_t n = strlen(v), o = 0;
    char *s = malloc(2 * n + 3);
    if (!s)
        return NULL;
    s[o++] = '\'';
    for (const char *p = v; *p; p++) {
        if (*p == '\'')
            s[o++] = '\'';
        s[o++] = *p;
    }
    s[o++] = '\'';
    s[o] = '\0';
    return s;
}

static void sb_alter(ScnStep *st)
{
    char *lit = sb_sql_literal(sb_node_str(st, "primary_conninfo"));
    char *sql = NULL;
    if (!lit || asprintf(&sql, "ALTER SYSTEM SET primary_conninfo = %s", lit) < 0) {
        free(lit);
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    free(lit);
    sb_disconnect(st);
    scn_sql(st, sb_node_str(st, "conninfo"), sql, 0, NULL, sb_on_altered);
    free(sql);
}

static void sb_on_slot(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0) {
        sb_done_node(st, false, "primary_conninfo", "cannot create the replication slot '%s' on the new primary: %s",
                     sb_node_str(st, "slot"), errmsg ? errmsg : err_str(status));
        return;
    }
    sb_alter(st);
}

/* The node's primary_conninfo for the new primary: its own (user, passfile, TLS kept), else the
 * new primary's node conninfo, with the new primary's host/hostaddr/port and application_name=<node>.
 * A password of the daemon's configuration is never written to another server: DR_ECONFIG. */
static int sb_primary_conninfo(ScnStep *st, const char *current, char **ret)
{
    char *to = NULL, *out = NULL;
    bool own = current && current[0];
    if (!own && pgconn_conninfo_has_password(sb_new_primary(st)))
        return DR_ECONFIG;
    int r = pgconn_conninfo_retarget(own ? current : sb_new_primary(st), sb_new_primary(st), &to);
    if (r < 0)
        return r;
    /* a later keyword wins in libpq; a node name is one word (config: no spaces) */
    r = asprintf(&out, "%s application_name=%s", to, sb_node_str(st, "name")) < 0 ? -ENOMEM : 0;
    free(to);
    *ret = r == 0 ? out : NULL;
    return r;
}

static void sb_on_settings(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    if (status < 0 || !res || PQntuples(res) != 1) {
        sb_done_node(st, false, "primary_conninfo", "cannot ask the node: %s",
                     errmsg ? errmsg : status < 0 ? err_str(status) : "no answer");
        return;
    }
    if (strcmp(PQgetvalue(res, 0, 0), "t") != 0) {
        sb_done_node(st, false, "primary_conninfo", "not in recovery: left alone (drctl rejoin makes it a standby)");
        return;
    }
    char *ci = NULL;
    int r = sb_primary_conninfo(st, PQgetvalue(res, 0, 1), &ci);
    if (r < 0) {
        sb_done_node(st, false, "primary_conninfo", "cannot write its primary_conninfo: %s",
                     r == DR_ECONFIG ? "it has none, and the new primary's conninfo holds a password, which is not "
                                       "written to another server (use a passfile, or failover.repoint_standby)"
                                     : err_str(r));
        return;
    }
    const char *slot = PQgetvalue(res, 0, 2);
    json_t *n = sb_node(st);
    json_object_set_new(n, "primary_conninfo", json_string(ci));
    json_object_set_new(n, "slot", json_string(slot));
    free(ci);
    if (!slot[0]) {
        sb_alter(st);
        return;
    }
    const char *p[1] = {slot};
    sb_disconnect(st);
    scn_sql(st, sb_new_primary(st), SB_SLOT_SQL, 1, p, sb_on_slot);
}

/* ---- the step ---- */

static void sb_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    size_t i, following = 0, n = 0;
    json_t *e;
    char lagging[400] = "";
    (void)run;
    if (status < 0) {
        scn_finish(st, status, "cannot record the standbys: %s", err_str(status));
        return;
    }
    json_array_foreach(json_object_get(st->acc, "done"), i, e) {
        n++;
        if (json_is_true(json_object_get(e, "following"))) {
            following++;
        } else {
            size_t l = strlen(lagging);
            snprintf(lagging + l, sizeof(lagging) - l, "%s%s", l ? ", " : "",
                     json_string_value(json_object_get(e, "node")));
        }
    }
    if (!n)
        scn_finish(st, 0, "no other standby to point at the new primary");
    else if (following == n)
        scn_finish(st, 0, "%zu other standby(s) stream from '%s'", n, scn_ctx_str(st->run, "standby", "name"));
    else
        scn_finish(st, 0, "%zu of %zu other standby(s) stream from '%s'; not following: %s (paged: replication.broken "
                   "stays open; trading does not need them)", following, n, scn_ctx_str(st->run, "standby", "name"),
                   lagging);
}

static void sb_next(ScnStep *st)
{
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    if (st->idx >= json_array_size(json_object_get(st->acc, "todo"))) {
        json_t *done = json_incref(json_object_get(st->acc, "done"));
        scn_context_set(st->run, "standbys", done, sb_recorded, st);
        return;
    }
    const ConfigFailover *f = &st->run->core->cfg->replication.failover;
    json_object_del(st->acc, "hook");
    if (f->n_repoint_standby)
        sb_run_hook(st, f);
    else
        scn_sql(st, sb_node_str(st, "conninfo"), SB_SETTINGS_SQL, 0, NULL, sb_on_settings);
}

/* The other standbys: every node of replication.nodes but the new and the old primary (copied: a
 * reload may come while the step runs). A dry run, before either is chosen, names them as
 * failover-status does (the primary now, the candidate). */
static json_t *sb_todo(const ScnRun *run)
{
    const ConfigReplication *rc = &run->core->cfg->replication;
    const char *to = scn_ctx_str(run, "standby", "name"), *old = scn_ctx_str(run, "old_primary", "name");
    ReplFailoverView v;
    if ((!to || !old) && run->caps->replication) {
        replication_failover_view(run->caps->replication, 0, &v);
        to = to ? to : v.candidate;
        old = old ? old : v.primary;
    }
    json_t *todo = json_array();
    for (size_t i = 0; todo && i < rc->n_nodes; i++) {
        const ConfigReplicationNode *n = &rc->nodes[i];
        if ((to && !strcmp(n->name, to)) || (old && !strcmp(n->name, old)))
            continue;
        json_array_append_new(todo, json_pack("{s:s,s:s}", "name", n->name, "conninfo", n->conninfo));
    }
    return todo;
}

void scn_step_repoint_standbys(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    if (!sb_new_primary(st)) {
        scn_finish(st, DR_ESTATE, "no new primary is recorded in the run");
        return;
    }
    st->acc = json_pack("{s:o,s:[]}", "todo", sb_todo(st->run), "done");
    if (!st->acc) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    st->idx = 0;
    sb_next(st);
}

void scn_plan_repoint_standbys(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    const ConfigFailover *f = &run->core->cfg->replication.failover;
    json_t *todo = sb_todo(run);
    char msg[700];
    if (!json_array_size(todo))
        snprintf(msg, sizeof(msg), "no other standby in replication.nodes: nothing to point at the new primary");
    else if (f->n_repoint_standby)
        snprintf(msg, sizeof(msg), "would run the repoint_standby hook '%s' for each of %zu other standby(s), then wait "
                 "up to %llu s for each to stream from the new primary", f->repoint_standby[0], json_array_size(todo),
                 (unsigned long long)(f->standby_timeout_ms / 1000));
    else
        snprintf(msg, sizeof(msg), "would ALTER SYSTEM SET primary_conninfo (the new primary, application_name=<node>) "
                 "and pg_reload_conf() on each of %zu other standby(s), then wait up to %llu s for each to stream",
                 json_array_size(todo), (unsigned long long)(f->standby_timeout_ms / 1000));
    json_decref(todo);
    done(call, 0, msg);
}
