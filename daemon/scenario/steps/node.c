/*
 * steps/node: one node's server stopped or started by a step (switchover's old primary, rejoin's
 * node): the node's own stop/start command from replication.nodes (argv, its contract: idempotent,
 * exit 0 confirms), or pg_ctl -D data_directory run as the server's user (run_as), asked for its
 * status first, so running it again after a crash is harmless: a stopped server is not stopped
 * twice, a running one is not started twice. Children through steps/hook.c (lib/child, never
 * blocking the loop).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "err.h"
#include "scenario/steps/steps.h"

typedef struct ScnNodeOp {
    char name[64];
    char dir[4096];
    char **cmd; /* the node's own command (copied), or NULL */
    size_t n_cmd;
    char pg_ctl[4096];
    char **run_as;
    size_t n_run_as;
    uint64_t timeout_ms;
    bool start;
    ScnNodeDone then;
} ScnNodeOp;

static void node_op_free(void *data)
{
    ScnNodeOp *op = data;
    if (!op)
        return;
    config_list_free(op->cmd, op->n_cmd);
    config_list_free(op->run_as, op->n_run_as);
    free(op);
}

const ConfigReplicationNode *scn_node_config(const ScnRun *run, const char *name)
{
    const ConfigReplication *r = &run->core->cfg->replication;
    for (size_t i = 0; name && i < r->n_nodes; i++)
        if (r->nodes[i].name && !strcmp(r->nodes[i].name, name))
            return &r->nodes[i];
    return NULL;
}

static ScnNodeOp *node_op(ScnStep *st)
{
    return st->node_op;
}

/* The op's step ends: then() is called once, the op freed with the step. */
static void node_then(ScnStep *st, bool ok, const char *how)
{
    node_op(st)->then(st, ok, how);
}

/* run_as + pg_ctl -D dir + the words (NULL-terminated) into v (cap entries). */
static const char *const *node_pg_ctl_argv(const ScnNodeOp *op, const char **v, size_t cap, const char *const *words)
{
    size_t k = 0;
    for (size_t i = 0; i < op->n_run_as && k + 1 < cap; i++)
        v[k++] = op->run_as[i];
    const char *head[] = {op->pg_ctl, "-D", op->dir};
    for (size_t i = 0; i < 3 && k + 1 < cap; i++)
        v[k++] = head[i];
    for (size_t i = 0; words[i] && k + 1 < cap; i++)
        v[k++] = words[i];
    v[k] = NULL;
    return v;
}

static void node_after_action(ScnStep *st, bool ok, int64_t status, const char *how);

static void node_status_exited(ScnStep *st, bool ok, int64_t status, const char *how)
{
    ScnNodeOp *op = node_op(st);
    char secs[24], msg[400];
    const char *v[64];
    (void)ok;
    snprintf(secs, sizeof(secs), "%llu", (unsigned long long)(op->timeout_ms / 1000));
    if (status != 0 && status != 3) { /* 4: no data directory; anything else: pg_ctl cannot tell */
        snprintf(msg, sizeof(msg), "pg_ctl status for '%.200s' %s", op->dir, how);
        node_then(st, false, msg);
        return;
    }
    bool running = status == 0;
    if (!op->start && !running) {
        snprintf(msg, sizeof(msg), "no server runs in '%.200s'", op->dir);
        node_then(st, true, msg);
        return;
    }
    if (op->start && running) {
        snprintf(msg, sizeof(msg), "the server in '%.200s' runs already", op->dir);
        node_then(st, true, msg);
        return;
    }
    if (op->start) {
        char log[4200];
        snprintf(log, sizeof(log), "%s/drsupervisor-start.log", op->dir);
        const char *w[] = {"-l", log, "-w", "-t", secs, "start", NULL};
        scn_hook_run(st, "pg_ctl start", node_pg_ctl_argv(op, v, 64, w), NULL, op->timeout_ms + 10000,
                     node_after_action);
    } else {
        const char *w[] = {"-m", "fast", "-w", "-t", secs, "stop", NULL};
        scn_hook_run(st, "pg_ctl stop", node_pg_ctl_argv(op, v, 64, w), NULL, op->timeout_ms + 10000,
                     node_after_action);
    }
}

static void node_after_action(ScnStep *st, bool ok, int64_t status, const char *how)
{
    ScnNodeOp *op = node_op(st);
    char msg[500];
    (void)status;
    snprintf(msg, sizeof(msg), "%s '%.200s' %s", op->cmd ? (op->start ? "the start command of" : "the stop command of")
                                                     : (op->start ? "pg_ctl start of" : "pg_ctl stop of"),
             op->cmd ? op->name : op->dir, how);
    node_then(st, ok, msg);
}

static void node_run(ScnStep *st, const ConfigReplicationNode *n, const ScnPgCtl *pc, bool start, ScnNodeDone then)
{
    ScnNodeOp *op = calloc(1, sizeof(*op));
    char *const *cmd = start ? n->start : n->stop;
    size_t n_cmd = start ? n->n_start : n->n_stop;
    int r = op ? 0 : -ENOMEM;

    if (op) {
        st->node_op = op;
        st->node_op_free = node_op_free;
        op->then = then;
        op->start = start;
        op->timeout_ms = pc->timeout_ms;
        snprintf(op->name, sizeof(op->name), "%s", n->name);
        snprintf(op->dir, sizeof(op->dir), "%s", n->data_directory ? n->data_directory : "");
        snprintf(op->pg_ctl, sizeof(op->pg_ctl), "%s", pc->pg_ctl ? pc->pg_ctl : "");
        r = config_list_copy(cmd, n_cmd, &op->cmd);
        op->n_cmd = n_cmd;
        if (r == 0)
            r = config_list_copy(pc->run_as, pc->n_run_as, &op->run_as);
        op->n_run_as = pc->n_run_as;
    }
    if (r < 0) {
        then(st, false, "out of memory");
        return;
    }
    if (op->cmd) {
        char node[100], dir[4200], run[128];
        const char *env[] = {node, dir, run, NULL};
        snprintf(node, sizeof(node), "DRSUP_NODE=%s", op->name);
        snprintf(dir, sizeof(dir), "DRSUP_DATA_DIRECTORY=%s", op->dir);
        snprintf(run, sizeof(run), "DRSUP_RUN=%s", st->run->id);
        scn_hook_run(st, start ? "start command" : "stop command", (const char *const *)op->cmd, env,
                     op->timeout_ms + 10000, node_after_action);
        return;
    }
    if (!op->dir[0]) {
        char msg[300];
        snprintf(msg, sizeof(msg), "node '%s' has neither a %s command nor a data_directory in replication.nodes",
                 op->name, start ? "start" : "stop");
        then(st, false, msg);
        return;
    }
    const char *v[64];
    const char *w[] = {"status", NULL};
    scn_hook_run(st, "pg_ctl status", node_pg_ctl_argv(op, v, 64, w), NULL, 30000, node_status_exited);
}

void scn_node_stop(ScnStep *st, const ConfigReplicationNode *n, const ScnPgCtl *pc, ScnNodeDone then)
{
    node_run(st, n, pc, false, then);
}

void scn_node_start(ScnStep *st, const ConfigReplicationNode *n, const ScnPgCtl *pc, ScnNodeDone then)
{
    node_run(st, n, pc, true, then);
}
