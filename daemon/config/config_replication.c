/*
 * config_replication: the replication section (docs/replication.md): the cluster's nodes (name,
 * conninfo, the role each is expected to have), how often they are probed, and the lag thresholds
 * (repmgr's defaults: 300 s warning, 600 s critical), with the debounce of the conditions; and the
 * metrics section (the address of the Prometheus endpoint, checked here, listened on by core)
 * and the inbound_webhook section (the signed security webhook served on the same listener);
 * and the audit section (the audit log's rotation: size and files kept).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"
#include "listenaddr.h"
#include "pgconn.h"

void config__free_replication(ConfigReplication *r)
{
    for (size_t i = 0; i < r->n_nodes; i++) {
        free(r->nodes[i].name);
        free(r->nodes[i].conninfo);
        free(r->nodes[i].data_directory);
        config_list_free(r->nodes[i].stop, r->nodes[i].n_stop);
        config_list_free(r->nodes[i].start, r->nodes[i].n_start);
    }
    free(r->nodes);
    r->nodes = NULL;
    r->n_nodes = 0;
    config_list_free(r->failover.fence, r->failover.n_fence);
    config_list_free(r->failover.fence_check, r->failover.n_fence_check);
    config_list_free(r->failover.repoint, r->failover.n_repoint);
    config_list_free(r->failover.repoint_standby, r->failover.n_repoint_standby);
}

/* A hook: an argv list whose program is an absolute path, NULL-terminated for exec. */
static void config_read_hook(const CfgSection *s, const char *key, char ***argv, size_t *argc)
{
    cfg_string_list(s, key, argv, argc);
    if (*argc) { /* NULL-terminated, as exec wants it */
        char **t = realloc(*argv, (*argc + 1) * sizeof(char *));
        if (!t) {
            cfg_error(s->ctx, cfg_get(s->map, key), "out of memory");
            return;
        }
        t[*argc] = NULL;
        *argv = t;
    }
    if (*argc && (*argv)[0][0] != '/')
        cfg_error(s->ctx, cfg_get(s->map, key), "'%s.%s' must start with an absolute path (argv, no shell)", s->path,
                  key);
}

static void config_read_node(CfgCtx *ctx, const CfgNode *item, size_t idx, ConfigReplicationNode *n)
{
    CfgSection s = {.ctx = ctx, .map = item, .where = item};
    static const char *const roles[] = {"standby", "primary", NULL};
    char msg[256];
    int role = 0;

    snprintf(s.path, sizeof(s.path), "replication.nodes[%zu]", idx);
    cfg_string(&s, "name", true, NULL, &n->name);
    cfg_string(&s, "conninfo", true, NULL, &n->conninfo);
    cfg_enum(&s, "role", roles, 0, &role);
    cfg_int(&s, "priority", 0, 1000000, 100, &n->priority);
    cfg_string(&s, "data_directory", false, NULL, &n->data_directory);
    config_read_hook(&s, "stop", &n->stop, &n->n_stop);
    config_read_hook(&s, "start", &n->start, &n->n_start);
    cfg_check_unknown(&s);
    if (n->data_directory && (n->data_directory[0] != '/' || strpbrk(n->data_directory, "'\"\\\n")))
        cfg_error(ctx, cfg_get(item, "data_directory"), "'%s.data_directory' must be an absolute path without "
                                                        "quotes or backslashes", s.path);
    n->primary = role == 1;
    if (n->name && (!n->name[0] || strpbrk(n->name, " /\t\r\n")))
        cfg_error(ctx, cfg_get(item, "name"), "'%s.name' must be a non-empty word (no spaces or '/'): it is part "
                                              "of condition keys", s.path);
    if (n->conninfo && pgconn_check_conninfo(n->conninfo, msg, sizeof(msg)) != 0)
        cfg_error(ctx, cfg_get(item, "conninfo"), "'%s.conninfo': %s", s.path, msg);
}

static void config_read_failover(const CfgSection *top, ConfigFailover *f)
{
    static const char *const self_fence[] = {"off", "read_only", "stop", NULL}; /* CONFIG_SELF_FENCE_* */
    CfgSection s = cfg_section(top, "failover", false);

    f->enabled = s.map != NULL;
    cfg_size(&s, "maximum_lag", 1ull << 20, 0, UINT64_MAX, &f->maximum_lag_bytes); /* Patroni's maximum_lag_on_failover */
    config_read_hook(&s, "fence", &f->fence, &f->n_fence);
    config_read_hook(&s, "fence_check", &f->fence_check, &f->n_fence_check);
    config_read_hook(&s, "repoint", &f->repoint, &f->n_repoint);
    config_read_hook(&s, "repoint_standby", &f->repoint_standby, &f->n_repoint_standby);
    cfg_duration_ms(&s, "standby_timeout", false, 30000, 1000, &f->standby_timeout_ms);
    cfg_duration_ms(&s, "hook_timeout", false, 10000, 100, &f->hook_timeout_ms);
    cfg_duration_ms(&s, "grace", false, 3000, 0, &f->grace_ms);
    cfg_enum(&s, "self_fence", self_fence, CONFIG_SELF_FENCE_STOP, &f->self_fence);
    cfg_check_unknown(&s);
    if (f->n_fence_check && !f->n_fence)
        cfg_error(s.ctx, cfg_get(s.map, "fence_check"), "'failover.fence_check' checks a 'fence' hook, which is "
                                                         "not configured");
}

void config__read_replication(const CfgSection *top, ConfigReplication *r)
{
    CfgSection s = cfg_section(top, "replication", false);
    const CfgNode *nodes = cfg_get(s.map, "nodes");
    size_t primaries = 0;

    cfg_duration_ms(&s, "interval", false, 2000, 100, &r->interval_ms);
    cfg_duration_ms(&s, "timeout", false, 2000, 10, &r->timeout_ms);
    cfg_duration_ms(&s, "lag_warning", false, 300000, 0, &r->lag_warning_ms);
    cfg_duration_ms(&s, "lag_critical", false, 600000, 0, &r->lag_critical_ms);
    cfg_size(&s, "lag_bytes_warning", 64ull << 20, 0, UINT64_MAX, &r->lag_bytes_warning);
    cfg_size(&s, "lag_bytes_critical", 1ull << 30, 0, UINT64_MAX, &r->lag_bytes_critical);
    cfg_int(&s, "debounce", 1, 100, 2, &r->debounce);
    if (s.map && !nodes)
        cfg_error(s.ctx, s.map, "'replication' needs 'nodes' (a list of {name, conninfo, role})");
    if (nodes && nodes->kind == CFG_NODE_SEQ && nodes->n > 0) {
        if (!(r->nodes = calloc(nodes->n, sizeof(*r->nodes))))
            return;
        for (size_t i = 0; i < nodes->n; i++) {
            if (nodes->items[i]->kind != CFG_NODE_MAP) {
                cfg_error(s.ctx, nodes->items[i], "'replication.nodes' items must be mappings {name, conninfo, role}");
                continue;
            }
            config_read_node(s.ctx, nodes->items[i], i, &r->nodes[r->n_nodes]);
            for (size_t k = 0; k < r->n_nodes; k++)
                if (r->nodes[k].name && r->nodes[r->n_nodes].name && !strcmp(r->nodes[k].name, r->nodes[r->n_nodes].name))
                    cfg_error(s.ctx, nodes->items[i], "'replication.nodes[%zu]': the name '%s' is used twice", i,
                              r->nodes[k].name);
            primaries += r->nodes[r->n_nodes].primary;
            r->n_nodes++;
        }
    } else if (nodes) {
        cfg_error(s.ctx, nodes, "'replication.nodes' must be a non-empty list of {name, conninfo, role}");
    }
    cfg_check_unknown(&s);
    config_read_failover(top, &r->failover);
    r->enabled = r->n_nodes > 0;
    if (r->failover.enabled && !r->enabled)
        cfg_error(s.ctx, cfg_get(top->map, "failover"), "'failover' needs 'replication.nodes' (the standbys it could promote)");
    if (r->enabled && primaries != 1)
        cfg_error(s.ctx, nodes, "'replication.nodes' must have exactly one node with role: primary (it has %zu)",
                  primaries);
    if (r->lag_warning_ms > r->lag_critical_ms)
        cfg_error(s.ctx, s.map, "'replication.lag_warning' is above 'lag_critical'");
    if (r->lag_bytes_warning > r->lag_bytes_critical)
        cfg_error(s.ctx, s.map, "'replication.lag_bytes_warning' is above 'lag_bytes_critical'");
}

void config__read_audit(const CfgSection *top, ConfigAudit *a)
{
    CfgSection s = cfg_section(top, "audit", false);

    cfg_size(&s, "max_bytes", CONFIG_AUDIT_MAX_BYTES_DEFAULT, 4096, 1ull << 40, &a->max_bytes);
    cfg_int(&s, "keep", 1, 1000, CONFIG_AUDIT_KEEP_DEFAULT, &a->keep);
    cfg_check_unknown(&s);
}

void config__read_metrics(const CfgSection *top, ConfigMetrics *m)
{
    CfgSection s = cfg_section(top, "metrics", false);
    char why[200];
    ListenAddr la;

    m->enabled = s.map != NULL;
    cfg_string(&s, "listen", false, "127.0.0.1:9187", &m->listen);
    cfg_check_unknown(&s);
    if (m->enabled && m->listen && listenaddr_parse(m->listen, &la, why, sizeof(why)) < 0)
        cfg_error(s.ctx, cfg_get(s.map, "listen"), "'metrics.listen': %s", why);
}

void config__read_inbound_webhook(const CfgSection *top, const ConfigMetrics *m, const char *cred_dir,
                                  ConfigInboundWebhook *w)
{
    CfgSection s = cfg_section(top, "inbound_webhook", false);

    w->enabled = s.map != NULL;
    cfg_string(&s, "path", false, "/security-breach", &w->path);
    cfg_duration_ms(&s, "window", false, 300000, 1000, &w->window_ms);
    config__secret(&s, "secret", false, cred_dir, &w->secret, &w->secret_len);
    cfg_check_unknown(&s);
    if (!w->enabled)
        return;
    if (w->window_ms > 3600000)
        cfg_error(s.ctx, cfg_get(s.map, "window"), "'inbound_webhook.window' is at most 1h");
    if (!w->path || w->path[0] != '/' || strlen(w->path) >= 128 || !strcmp(w->path, "/metrics") || strchr(w->path, '?'))
        cfg_error(s.ctx, cfg_get(s.map, "path"), "'inbound_webhook.path' must be a path such as /security-breach "
                  "(not /metrics, no query, under 128 characters)");
    if (!w->secret || w->secret_len < 16)
        cfg_error(s.ctx, s.map, "'inbound_webhook' needs secret_file or secret_credential holding at least 16 bytes");
    if (!m->enabled)
        cfg_error(s.ctx, s.map, "'inbound_webhook' is served by the metrics listener: add a 'metrics' section "
                  "(metrics.listen, loopback by default)");
}
