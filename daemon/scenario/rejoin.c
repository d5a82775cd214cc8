/*
 * rejoin: rebuild a node (the old primary after a switchover or a failover) as a standby of the
 * current primary, as one static table, its definition, its own steps and the command that starts
 * it (drctl rejoin NODE; docs/replication.md).
 *
 * Owns the runbook "NODE follows the new primary again": check the node (known, has a
 * data_directory, is not the primary) and the new primary's settings (pg_rewind needs
 * wal_log_hints = on or data checksums, and full_page_writes = on; without them the rewind is
 * skipped for a fresh base backup), stop the node (its stop command or pg_ctl), CHECKPOINT on the
 * new primary (pg_rewind reads its control file), pg_rewind --target-pgdata DIR --source-server
 * CONNINFO as the server's user (with -c and restore_command when scenarios.rejoin.restore_command
 * is set); when pg_rewind refuses or fails, a fresh pg_basebackup into the directory with the old
 * one kept aside as evidence (DIR.before-rejoin-TAG); then what was copied over from the new
 * primary rewritten (port, primary_conninfo, primary_slot_name in postgresql.auto.conf),
 * standby.signal, the replication slot recreated on the new primary, the node started, and waited
 * for until the new primary's pg_stat_replication shows it streaming.
 *
 * Its steps after check_node are also network_partition's, which rebuilds the node it fenced in its
 * own run (rejoin_steps.h; the settings then come from the running configuration's
 * scenarios.rejoin). Trading is not touched: the platform writes to the new primary throughout. A rejoin run is a
 * run like the others (journaled, one at a time): while it runs no other scenario starts.
 *
 * Context (journaled): "node" {name, conninfo, data_directory}, "source" {name, conninfo} (taken
 * once), "settings" {wal_log_hints, data_checksums, full_page_writes, rewind}, "copy" {how}. Every
 * step is safe to run again: the checks read; the stop and start ask pg_ctl status first; CHECKPOINT
 * repeats; pg_rewind again on a rewound directory finds nothing to do, and on a half-rewound one
 * fails, which leads to the base backup; the base backup sets the node's own directory aside only
 * once and removes a half-made copy before starting again; the configuration is rewritten to the
 * same text; the slot is created only when missing; the wait reads.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "clock.h"
#include "err.h"
#include "log.h"
#include "observe/replication.h"
#include "pgconn.h"
#include "scenario/rejoin_internal.h"
#include "scenario/rejoin_steps.h"
#include "scenario/scn_internal.h"
#include "scenario/steps/steps.h"

enum {
    DETECTED,
    CHECKED,
    SETTINGS_READ,
    STOPPED,
    CHECKPOINTED,
    REWIND_FAILED,
    COPIED,
    CONFIGURED,
    SLOT_READY,
    STARTED,
    STREAMING,
    REFUSED,
    NOT_REJOINED,
    N_STATES
};

#define RJ_POLL_MS 250u

/* scenarios.rejoin's settings: the run's own copy, or, for another scenario running rejoin's steps
 * (network_partition, rejoin_steps.h), the running configuration's. */
static const RejoinConfig *rj_cfg(const ScnRun *run)
{
    if (run->def == &scenario_rejoin)
        return run->cfg.data;
    const ConfigScenario *sc = config_scenario(run->core->cfg, scenario_rejoin.name);
    static const RejoinConfig none = {0};
    return sc && sc->data ? sc->data : &none;
}

static uint64_t rj_now_ms(void)
{
    return clock_mono_us() / 1000u;
}

/* The node's replication slot: its name, lower case, [a-z0-9_] only. */
static void rj_slot_name(const char *node, char *out, size_t n)
{
    size_t k = 0;
    for (const char *p = node ? node : ""; *p && k + 1 < n; p++) {
        char c = *p >= 'A' && *p <= 'Z' ? (char)(*p - 'A' + 'a') : *p;
        out[k++] = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ? c : '_';
    }
    out[k] = '\0';
}

/* Why NODE cannot be rejoined now ("" when it can), and the current primary's name. Pure. */
static void rj_refusal(const ScnRun *run, const Replication *r, const Config *cfg, const char *node, char *primary,
                       size_t plen, char *why, size_t n)
{
    ReplFailoverView fv;
    ReplNodeView v;
    why[0] = '\0';
    primary[0] = '\0';
    if (!r || !cfg->replication.enabled) {
        snprintf(why, n, "no replication.nodes are configured");
        return;
    }
    replication_node_view(r, node, &v);
    replication_failover_view(r, 0, &fv);
    snprintf(primary, plen, "%s", fv.primary);
    const ConfigReplicationNode *c = NULL;
    for (size_t i = 0; node && i < cfg->replication.n_nodes; i++)
        if (!strcmp(cfg->replication.nodes[i].name, node))
            c = &cfg->replication.nodes[i];
    (void)run;
    if (!v.known || !c)
        snprintf(why, n, "'%s' is not a node of replication.nodes", node ? node : "");
    else if (v.primary)
        snprintf(why, n, "'%s' is the primary: only another node can be rejoined to it", node);
    else if (!c->data_directory)
        snprintf(why, n, "'%s' has no data_directory in replication.nodes", node);
    else if (!fv.primary[0])
        snprintf(why, n, "no node is the primary");
}

/* The conninfo of the new primary for the rejoined node: its host, hostaddr, port, user and TLS
 * settings, application_name NODE; never a password (a passfile of the server's user holds it).
 * Caller frees; NULL on a bad conninfo. */
static char *rj_primary_conninfo(const char *source, const char *node, bool with_dbname)
{
    static const char *const keep[] = {"host", "hostaddr", "port", "user", "sslmode", "sslrootcert", "sslcert",
                                       "sslkey", "passfile", "connect_timeout", NULL};
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(source, &err);
    PQfreemem(err);
    if (!opts)
        return NULL;
    size_t cap = 2048, o = 0;
    char *out = calloc(1, cap);
    for (PQconninfoOption *p = opts; out && p->keyword; p++) {
        bool k = with_dbname && !strcmp(p->keyword, "dbname");
        for (size_t i = 0; keep[i] && !k; i++)
            k = !strcmp(p->keyword, keep[i]);
        if (!k || !p->val || !p->val[0] || strpbrk(p->val, " '\\"))
            continue;
        o += (size_t)snprintf(out + o, cap > o ? cap - o : 0, "%s%s=%s", o ? " " : "", p->keyword, p->val);
    }
    if (out && node)
        o += (size_t)snprintf(out + o, cap > o ? cap - o : 0, "%sapplication_name=%s", o ? " " : "", node);
    PQconninfoFree(opts);
    if (out && o >= cap) {
        free(out);
        return NULL;
    }
    return out;
}

/* 'value' for postgresql.auto.conf (single quotes doubled). */
static void rj_quote(const char *v, char *out, size_t n)
{
    size_t k = 0;
    if (n < 3)
        return;
    out[k++] = '\'';
    for (const char *p = v; *p && k + 3 < n; p++) {
        if (*p == '\'')
            out[k++] = '\'';
        out[k++] = *p;
    }
    out[k++] = '\'';
    out[k] = '\0';
}

/* run_as + the words (NULL-terminated) into v. */
static const char *const *rj_argv(const ScnRun *run, const char **v, size_t cap, const char *const *words)
{
    size_t k = 0;
    for (size_t i = 0; i < rj_cfg(run)->n_run_as && k + 1 < cap; i++)
        v[k++] = rj_cfg(run)->run_as[i];
    for (size_t i = 0; words[i] && k + 1 < cap; i++)
        v[k++] = words[i];
    v[k] = NULL;
    return v;
}

static ScnPgCtl rj_pg_ctl(const ScnRun *run)
{
    const RejoinConfig *c = rj_cfg(run);
    return (ScnPgCtl){c->pg_ctl, c->run_as, c->n_run_as, c->stop_timeout_ms};
}

/* ---- file work on the thread pool ---- */

static void rj_work_cb(uv_work_t *req)
{
    RejoinWork *w = req->data;
    w->result = w->fn(w);
}

static void rj_work_done(uv_work_t *req, int status)
{
    RejoinWork *w = req->data;
    if (status < 0 && w->result == 0)
        w->result = status;
    w->then(w->st, w);
    free(w);
}

static void rj_queue(ScnStep *st, RejoinWork *w, int (*fn)(RejoinWork *), RejoinWorkDone then)
{
    w->st = st;
    w->fn = fn;
    w->then = then;
    w->req.data = w;
    int r = uv_queue_work(st->run->core->loop, &w->req, rj_work_cb, rj_work_done);
    if (r < 0) {
        free(w);
        scn_finish(st, r, "cannot queue the file work: %s", err_str(r));
    }
}

/* ---- check_node ---- */

static void check_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the nodes: %s", err_str(status));
    else
        scn_finish(st, 0, "'%s' is rebuilt as a standby of '%s'", scn_ctx_str(run, "node", "name"),
                   scn_ctx_str(run, "source", "name"));
}

static void check_node_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    json_t *src = st->acc;
    st->acc = NULL;
    if (status < 0) {
        json_decref(src);
        check_recorded(run, status, st);
        return;
    }
    scn_context_set(run, "source", src, check_recorded, st);
}

static void step_check_node(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char why[500], primary[64];
    if (!st)
        return;
    ScnRun *run = st->run;
    if (scn_ctx_str(run, "source", "name")) {
        check_recorded(run, 0, st);
        return;
    }
    const char *node = json_string_value(scn_run_param(run, "node"));
    rj_refusal(run, run->caps->replication, run->core->cfg, node, primary, sizeof(primary), why, sizeof(why));
    if (why[0]) {
        scn_finish(st, DR_ESTATE, "no rejoin: %s", why);
        return;
    }
    const ConfigReplicationNode *n = scn_node_config(run, node);
    st->acc = json_pack("{s:s,s:s}", "name", primary, "conninfo",
                        replication_node_conninfo(run->caps->replication, primary));
    json_t *o = json_pack("{s:s,s:s,s:s}", "name", n->name, "conninfo", n->conninfo, "data_directory",
                          n->data_directory);
    if (!st->acc || !o) {
        json_decref(o);
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    scn_context_set(run, "node", o, check_node_recorded, st);
}

/* ---- check_settings: can pg_rewind work (else a fresh base backup) ---- */

static void settings_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the settings: %s", err_str(status));
    else if (json_is_true(json_object_get(json_object_get(run->ctx, "settings"), "rewind")))
        scn_finish(st, 0, "pg_rewind can be used (wal_log_hints %s, data checksums %s, full_page_writes on)",
                   scn_ctx_str(run, "settings", "wal_log_hints"), scn_ctx_str(run, "settings", "data_checksums"));
    else
        scn_finish(st, 0, "pg_rewind cannot be used (it needs wal_log_hints = on or data checksums, and "
                   "full_page_writes = on): a fresh base backup instead");
}

static void settings_on_answer(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    if (status < 0 || !res || PQntuples(res) != 1) {
        scn_fail_sql(st, status < 0 ? status : DR_EDB, "cannot read the new primary's settings", errmsg);
        return;
    }
    const char *hints = PQgetvalue(res, 0, 0), *sums = PQgetvalue(res, 0, 1), *fpw = PQgetvalue(res, 0, 2);
    bool rewind = (!strcmp(hints, "on") || !strcmp(sums, "on")) && !strcmp(fpw, "on");
    scn_context_set(st->run, "settings",
                    json_pack("{s:s,s:s,s:s,s:b}", "wal_log_hints", hints, "data_checksums", sums, "full_page_writes",
                              fpw, "rewind", rewind),
                    settings_recorded, st);
}

void rejoin_step_check_settings(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    scn_sql(st, scn_ctx_str(st->run, "source", "conninfo"),
            "SELECT current_setting('wal_log_hints'), current_setting('data_checksums'), "
            "current_setting('full_page_writes')",
            0, NULL, settings_on_answer);
}

/* ---- stop_node, start_node ---- */

static void node_done(ScnStep *st, bool ok, const char *how)
{
    scn_finish(st, ok ? 0 : DR_ESTATE, "%s", how);
}

void rejoin_step_stop_node(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    const ConfigReplicationNode *n = scn_node_config(st->run, scn_ctx_str(st->run, "node", "name"));
    ScnPgCtl pc = rj_pg_ctl(st->run);
    if (!n)
        scn_finish(st, DR_ECONFIG, "the node is no longer in replication.nodes");
    else
        scn_node_stop(st, n, &pc, node_done);
}

void rejoin_step_start_node(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    const ConfigReplicationNode *n = scn_node_config(st->run, scn_ctx_str(st->run, "node", "name"));
    ScnPgCtl pc = rj_pg_ctl(st->run);
    if (!n)
        scn_finish(st, DR_ECONFIG, "the node is no longer in replication.nodes");
    else
        scn_node_start(st, n, &pc, node_done);
}

/* ---- checkpoint on the new primary ---- */

static void checkpoint_on_done(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0)
        scn_fail_sql(st, status, "CHECKPOINT failed on the new primary", errmsg);
    else
        scn_finish(st, 0, "the new primary '%s' made a checkpoint", scn_ctx_str(st->run, "source", "name"));
}

void rejoin_step_checkpoint(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (st)
        scn_sql(st, scn_ctx_str(st->run, "source", "conninfo"), "CHECKPOINT", 0, NULL, checkpoint_on_done);
}

/* ---- rewind ---- */

static void copy_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    if (status < 0)
        scn_finish(st, status, "cannot record the copy: %s", err_str(status));
    else
        scn_finish(st, 0, "%s", scn_ctx_str(run, "copy", "how"));
}

static void rewind_exited(ScnStep *st, bool ok, int64_t status, const char *how)
{
    char msg[600];
    (void)status;
    if (!ok) {
        scn_finish(st, DR_ESTATE, "pg_rewind %s: a fresh base backup instead", how);
        return;
    }
    snprintf(msg, sizeof(msg), "pg_rewind made '%.300s' follow '%s'", scn_ctx_str(st->run, "node", "data_directory"),
             scn_ctx_str(st->run, "source", "name"));
    scn_context_set(st->run, "copy", json_pack("{s:s,s:s}", "by", "pg_rewind", "how", msg), copy_recorded, st);
}

static void rewind_spawn(ScnStep *st)
{
    const RejoinConfig *c = rj_cfg(st->run);
    char *src = rj_primary_conninfo(scn_ctx_str(st->run, "source", "conninfo"), NULL, true);
    const char *v[64];
    if (!src) {
        scn_finish(st, DR_ECONFIG, "the new primary's conninfo cannot be read");
        return;
    }
    const char *w[] = {c->pg_rewind, "--target-pgdata", scn_ctx_str(st->run, "node", "data_directory"),
                       "--source-server", src, c->restore_command ? "--restore-target-wal" : NULL, NULL};
    scn_hook_run(st, "pg_rewind", rj_argv(st->run, v, 64, w), NULL, c->copy_timeout_ms, rewind_exited);
    free(src); /* child_spawn copied the argv */
}

static void rewind_conf_written(ScnStep *st, RejoinWork *w)
{
    if (w->result < 0)
        scn_finish(st, w->result, "%s", w->err[0] ? w->err : err_str(w->result));
    else
        rewind_spawn(st);
}

void rejoin_step_rewind(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    if (!json_is_true(json_object_get(json_object_get(st->run->ctx, "settings"), "rewind"))) {
        scn_finish(st, DR_ESTATE, "pg_rewind cannot be used with the new primary's settings: a fresh base backup");
        return;
    }
    const char *rc = rj_cfg(st->run)->restore_command;
    if (!rc) {
        rewind_spawn(st);
        return;
    }
    RejoinWork *w = calloc(1, sizeof(*w)); /* pg_rewind -c reads restore_command from the target */
    if (!w) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    snprintf(w->dir, sizeof(w->dir), "%s", scn_ctx_str(st->run, "node", "data_directory"));
    w->keys[0] = "restore_command";
    rj_quote(rc, w->vals[0], sizeof(w->vals[0]));
    w->n_keys = 1;
    rj_queue(st, w, rejoin__conf_work, rewind_conf_written);
}

/* ---- base_backup: when pg_rewind could not ---- */

static void basebackup_exited(ScnStep *st, bool ok, int64_t status, const char *how)
{
    char msg[900];
    (void)status;
    if (!ok) {
        scn_finish(st, DR_ESTATE, "pg_basebackup %s", how);
        return;
    }
    snprintf(msg, sizeof(msg), "a fresh base backup of '%s' is in '%.300s' (the old directory kept as "
             "'%.300s.before-rejoin-%s')", scn_ctx_str(st->run, "source", "name"),
             scn_ctx_str(st->run, "node", "data_directory"), scn_ctx_str(st->run, "node", "data_directory"),
             st->run->tag);
    scn_context_set(st->run, "copy", json_pack("{s:s,s:s}", "by", "pg_basebackup", "how", msg), copy_recorded, st);
}

static void basebackup_aside(ScnStep *st, RejoinWork *w)
{
    const RejoinConfig *c = rj_cfg(st->run);
    if (w->result < 0) {
        scn_finish(st, w->result, "%s", w->err[0] ? w->err : err_str(w->result));
        return;
    }
    char *src = rj_primary_conninfo(scn_ctx_str(st->run, "source", "conninfo"), NULL, false);
    const char *v[64];
    if (!src) {
        scn_finish(st, DR_ECONFIG, "the new primary's conninfo cannot be read");
        return;
    }
    const char *words[] = {c->pg_basebackup, "-D", scn_ctx_str(st->run, "node", "data_directory"), "-d", src,
                           "-X", "stream", "-c", "fast", "--no-password", NULL};
    scn_hook_run(st, "pg_basebackup", rj_argv(st->run, v, 64, words), NULL, c->copy_timeout_ms, basebackup_exited);
    free(src);
}

void rejoin_step_base_backup(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    RejoinWork *w = calloc(1, sizeof(*w));
    if (!w) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    snprintf(w->dir, sizeof(w->dir), "%s", scn_ctx_str(st->run, "node", "data_directory"));
    snprintf(w->evidence, sizeof(w->evidence), "%s.before-rejoin-%s", w->dir, st->run->tag);
    rj_queue(st, w, rejoin__aside_work, basebackup_aside);
}

/* ---- configure: what the copy brought over from the new primary, rewritten ---- */

static void configure_written(ScnStep *st, RejoinWork *w)
{
    if (w->result < 0)
        scn_finish(st, w->result, "%s", w->err[0] ? w->err : err_str(w->result));
    else
        scn_finish(st, 0, "postgresql.auto.conf names '%s' as the primary (slot %s, port %s) and standby.signal "
                   "is written", scn_ctx_str(st->run, "source", "name"), w->vals[2], w->vals[0][0] ? w->vals[0] : "-");
}

void rejoin_step_configure(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char slot[64];
    if (!st)
        return;
    const char *node = scn_ctx_str(st->run, "node", "name");
    char *pci = rj_primary_conninfo(scn_ctx_str(st->run, "source", "conninfo"), node, false);
    PQconninfoOption *own = PQconninfoParse(scn_ctx_str(st->run, "node", "conninfo"), NULL);
    RejoinWork *w = pci && own ? calloc(1, sizeof(*w)) : NULL;
    if (!w) {
        free(pci);
        PQconninfoFree(own);
        scn_finish(st, DR_ECONFIG, "cannot make the node's primary_conninfo");
        return;
    }
    snprintf(w->dir, sizeof(w->dir), "%s", scn_ctx_str(st->run, "node", "data_directory"));
    w->keys[0] = "port";
    for (PQconninfoOption *p = own; p->keyword; p++)
        if (!strcmp(p->keyword, "port") && p->val && p->val[0] && strspn(p->val, "0123456789") == strlen(p->val))
            snprintf(w->vals[0], sizeof(w->vals[0]), "%s", p->val);
    PQconninfoFree(own);
    w->keys[1] = "primary_conninfo";
    rj_quote(pci, w->vals[1], sizeof(w->vals[1]));
    free(pci);
    rj_slot_name(node, slot, sizeof(slot));
    w->keys[2] = "primary_slot_name";
    rj_quote(slot, w->vals[2], sizeof(w->vals[2]));
    w->keys[3] = "restore_command";
    if (rj_cfg(st->run)->restore_command)
        rj_quote(rj_cfg(st->run)->restore_command, w->vals[3], sizeof(w->vals[3]));
    w->keys[4] = "default_transaction_read_only"; /* a switchover's, when pg_rewind found nothing to copy */
    w->n_keys = 5;
    w->standby_signal = true;
    rj_queue(st, w, rejoin__conf_work, configure_written);
}

/* ---- create_slot on the new primary ---- */

static void slot_on_done(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    (void)res;
    if (status < 0)
        scn_fail_sql(st, status, "cannot create the replication slot on the new primary", errmsg);
    else
        scn_finish(st, 0, "the new primary has the physical replication slot for '%s'", scn_ctx_str(st->run, "node",
                                                                                                     "name"));
}

void rejoin_step_create_slot(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char slot[64];
    const char *p[1] = {slot};
    if (!st)
        return;
    rj_slot_name(scn_ctx_str(st->run, "node", "name"), slot, sizeof(slot));
    scn_sql(st, scn_ctx_str(st->run, "source", "conninfo"),
            "SELECT count(pg_create_physical_replication_slot($1, true)) WHERE NOT EXISTS "
            "(SELECT 1 FROM pg_replication_slots WHERE slot_name = $1)",
            1, p, slot_on_done);
}

/* ---- wait_streaming ---- */

static void streaming_ask(ScnStep *st);

static void streaming_tick(uv_timer_t *t)
{
    streaming_ask(t->data);
}

static void streaming_on_answer(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    if (status < 0 || !res) {
        scn_fail_sql(st, status < 0 ? status : DR_EDB, "cannot ask the new primary for its standbys", errmsg);
        return;
    }
    if (PQntuples(res) >= 1 && !strcmp(PQgetvalue(res, 0, 0), "streaming")) {
        scn_finish(st, 0, "'%s' streams from '%s'", scn_ctx_str(st->run, "node", "name"),
                   scn_ctx_str(st->run, "source", "name"));
        return;
    }
    if (rj_now_ms() >= st->deadline_ms) {
        scn_finish(st, -ETIMEDOUT, "'%s' is not streaming from '%s' after stream_timeout (%s)",
                   scn_ctx_str(st->run, "node", "name"), scn_ctx_str(st->run, "source", "name"),
                   PQntuples(res) ? PQgetvalue(res, 0, 0) : "not connected");
        return;
    }
    if (scn_step_wait(st, RJ_POLL_MS, streaming_tick) < 0)
        scn_finish(st, -ENOMEM, "out of memory");
}

static void streaming_ask(ScnStep *st)
{
    const char *p[1] = {scn_ctx_str(st->run, "node", "name")};
    scn_sql(st, scn_ctx_str(st->run, "source", "conninfo"),
            "SELECT state FROM pg_stat_replication WHERE application_name = $1 ORDER BY state = 'streaming' DESC", 1, p,
            streaming_on_answer);
}

void rejoin_step_wait_streaming(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    st->deadline_ms = rj_now_ms() + rj_cfg(st->run)->stream_timeout_ms;
    streaming_ask(st);
}

/* ---- the table ---- */

static const FsmState rj_states[N_STATES] = {
    [DETECTED] = {"requested", FSM_STATE_ACTIVE},
    [CHECKED] = {"checked", FSM_STATE_ACTIVE},
    [SETTINGS_READ] = {"settings_read", FSM_STATE_ACTIVE},
    [STOPPED] = {"stopped", FSM_STATE_ACTIVE},
    [CHECKPOINTED] = {"checkpointed", FSM_STATE_ACTIVE},
    [REWIND_FAILED] = {"rewind_failed", FSM_STATE_ACTIVE},
    [COPIED] = {"copied", FSM_STATE_ACTIVE},
    [CONFIGURED] = {"configured", FSM_STATE_ACTIVE},
    [SLOT_READY] = {"slot_ready", FSM_STATE_ACTIVE},
    [STARTED] = {"started", FSM_STATE_ACTIVE},
    [STREAMING] = {"streaming", FSM_STATE_SUCCESS},
    [REFUSED] = {"refused", FSM_STATE_FAILURE},
    [NOT_REJOINED] = {"not_rejoined", FSM_STATE_FAILURE},
};

static const FsmRow rj_rows[] = {
    /* from, to, step, sentence, step fn, probe, plan, cancel, timeout ms, attempts, idempotent, gate, on_failure */
    {DETECTED, CHECKED, "check_node", "the node is known, has a data directory and is not the primary",
     step_check_node, NULL, NULL, NULL, 10000, 1, true, FSM_GATE_NONE, REFUSED},
    {CHECKED, SETTINGS_READ, "check_settings", "the new primary's settings say whether pg_rewind can be used",
     rejoin_step_check_settings, NULL, NULL, scn_cancel, 30000, 2, true, FSM_GATE_NONE, NOT_REJOINED},
    {SETTINGS_READ, STOPPED, "stop_node", "the node's server is stopped",
     rejoin_step_stop_node, NULL, NULL, scn_cancel, 300000, 2, true, FSM_GATE_NONE, NOT_REJOINED},
    {STOPPED, CHECKPOINTED, "checkpoint", "the new primary made a checkpoint (pg_rewind reads its control file)",
     rejoin_step_checkpoint, NULL, NULL, scn_cancel, 600000, 2, true, FSM_GATE_NONE, NOT_REJOINED},
    {CHECKPOINTED, COPIED, "rewind", "pg_rewind made the node's data directory follow the new primary",
     rejoin_step_rewind, NULL, NULL, scn_cancel, RJ_COPY_MAX_MS, 1, true, FSM_GATE_APPROVAL, REWIND_FAILED},
    {REWIND_FAILED, COPIED, "base_backup", "a fresh base backup replaced the node's data directory (kept aside)",
     rejoin_step_base_backup, NULL, NULL, scn_cancel, RJ_COPY_MAX_MS, 2, true, FSM_GATE_APPROVAL, NOT_REJOINED},
    {COPIED, CONFIGURED, "configure", "the node is configured as a standby of the new primary",
     rejoin_step_configure, NULL, NULL, NULL, 60000, 2, true, FSM_GATE_NONE, NOT_REJOINED},
    {CONFIGURED, SLOT_READY, "create_slot", "the new primary has the node's replication slot",
     rejoin_step_create_slot, NULL, NULL, scn_cancel, 30000, 2, true, FSM_GATE_NONE, NOT_REJOINED},
    {SLOT_READY, STARTED, "start_node", "the node's server is started",
     rejoin_step_start_node, NULL, NULL, scn_cancel, 300000, 2, true, FSM_GATE_NONE, NOT_REJOINED},
    {STARTED, STREAMING, "wait_streaming", "the new primary sees the node streaming",
     rejoin_step_wait_streaming, NULL, NULL, scn_cancel, 31u * 60u * 1000u, 1, true, FSM_GATE_NONE, NOT_REJOINED},
};

static const FsmTable rj_table = {"rejoin", rj_states, N_STATES, rj_rows,
                                  (int)(sizeof(rj_rows) / sizeof(rj_rows[0])), NULL, 0};

/* Trading is never halted or resumed by a rejoin. */
static bool rj_may_resume(const ScnRun *run)
{
    (void)run;
    return false;
}

static void rj_report_extras(const ScnRun *run, json_t *rep)
{
    json_t *f = json_object();
    if (!f)
        return;
    json_object_set_new(f, "node", json_deep_copy(json_object_get(json_object_get(run->ctx, "node"), "name")));
    json_object_set_new(f, "primary", json_deep_copy(json_object_get(json_object_get(run->ctx, "source"), "name")));
    json_object_set_new(f, "copy", json_deep_copy(json_object_get(run->ctx, "copy")));
    json_object_set_new(f, "settings", json_deep_copy(json_object_get(run->ctx, "settings")));
    json_object_set_new(rep, "rejoin", f);
}

/* ---- rejoin NODE ---- */

void rejoin__cmd(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    const char *node = json_string_value(json_object_get(args, "node"));
    const ConfigScenario *sc = config_scenario(s->core->cfg, scenario_rejoin.name);
    char why[600], id[96], reason[300], primary[64];

    if (!node || !node[0]) {
        control_reply_error(call, DR_EBADARG, "NODE is required");
        return;
    }
    rj_refusal(NULL, s->caps.replication, s->core->cfg, node, primary, sizeof(primary), why, sizeof(why));
    if (why[0]) {
        control_reply_error(call, DR_ESTATE, "no rejoin: %s (nothing was touched)", why);
        return;
    }
    bool manual = json_is_true(json_object_get(args, "manual")) || (sc && sc->manual);
    FsmMode mode = manual ? FSM_MODE_MANUAL : FSM_MODE_AUTOMATIC;
    const PeerCred *pc = control_call_peer(call);
    snprintf(reason, sizeof(reason), "operator request (uid %ld): rejoin '%s' to '%s'", pc ? (long)pc->uid : -1L,
             node, primary);
    json_t *params = json_pack("{s:s}", "node", node);
    int r = scn_trigger_params(s, scenario_rejoin.name, reason, clock_wall_ms(), mode, params, NULL, id, sizeof(id),
                               why, sizeof(why));
    json_decref(params);
    if (r < 0)
        control_reply_error(call, r == -EBUSY ? DR_EBUSY : r, "%s", why);
    else
        control_reply_ok(call, json_pack("{s:b,s:s,s:s,s:s,s:s,s:s}", "ok", 1, "run", id, "scenario",
                                         scenario_rejoin.name, "mode", fsm_mode_name(mode), "node", node, "primary",
                                         primary));
}

const ScenarioDef scenario_rejoin = {
    .name = "rejoin",
    .short_name = "rejoin",
    .summary = "rebuild a node as a standby of the primary: stop, pg_rewind (or a fresh base backup), configure, "
               "slot, start, streaming",
    .table = &rj_table,
    .handles = NULL, /* started by drctl rejoin NODE */
    .live_step = NULL,
    .may_resume = rj_may_resume,
    .restore_point_ms = NULL,
    .report_extras = rj_report_extras,
    .config = &rejoin_config_section,
};
