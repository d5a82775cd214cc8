/*
 * config_ha: the ha section (docs/ha.md): the etcd endpoints, the key prefix, this daemon's node
 * name, the lease's TTL, the follower's poll interval, the request timeout and the hold after a
 * step-down. Without the section the daemon acts alone, as before high availability existed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/config_internal.h"

void config__free_ha(ConfigHa *h)
{
    for (size_t i = 0; i < h->n_endpoints; i++)
        free(h->endpoints[i]);
    free(h->endpoints);
    free(h->prefix);
    free(h->node);
    memset(h, 0, sizeof(*h));
}

void config__read_ha(const CfgSection *top, const char *cluster, ConfigHa *h)
{
    CfgSection s = cfg_section(top, "ha", false);
    char host[256] = "";
    char def_prefix[300];

    h->enabled = s.map != NULL;
    if (gethostname(host, sizeof(host) - 1) < 0 || !host[0])
        snprintf(host, sizeof(host), "localhost");
    snprintf(def_prefix, sizeof(def_prefix), "/drsupervisor/%s/", cluster ? cluster : "main");
    if (h->enabled && !cfg_get(s.map, "endpoints"))
        cfg_error(s.ctx, s.map, "'ha.endpoints' is required: the etcd client URLs (http://host:2379)");
    cfg_string_list(&s, "endpoints", &h->endpoints, &h->n_endpoints);
    cfg_string(&s, "prefix", false, def_prefix, &h->prefix);
    cfg_string(&s, "node", false, host, &h->node);
    cfg_duration_ms(&s, "ttl", false, 5000, 2000, &h->ttl_ms);
    cfg_duration_ms(&s, "poll_interval", false, 1000, 100, &h->poll_interval_ms);
    cfg_duration_ms(&s, "request_timeout", false, 0, 100, &h->request_timeout_ms);
    cfg_duration_ms(&s, "step_down_hold", false, 30000, 0, &h->step_down_hold_ms);
    cfg_check_unknown(&s);
    if (!h->enabled)
        return;
    for (size_t i = 0; i < h->n_endpoints; i++)
        if (strncmp(h->endpoints[i], "http://", 7) && strncmp(h->endpoints[i], "https://", 8))
            cfg_error(s.ctx, cfg_get(s.map, "endpoints"), "'ha.endpoints' must be http:// or https:// URLs, not '%s'",
                      h->endpoints[i]);
    if (h->n_endpoints == 0 && cfg_get(s.map, "endpoints"))
        cfg_error(s.ctx, cfg_get(s.map, "endpoints"), "'ha.endpoints' must name at least one etcd endpoint");
    if (h->ttl_ms % 1000)
        cfg_error(s.ctx, cfg_get(s.map, "ttl"), "'ha.ttl' must be whole seconds (etcd's leases count in seconds)");
    if (h->prefix && (h->prefix[0] != '/' || h->prefix[strlen(h->prefix) - 1] != '/'))
        cfg_error(s.ctx, cfg_get(s.map, "prefix"), "'ha.prefix' must start and end with '/', not '%s'", h->prefix);
    if (h->node && (!h->node[0] || strlen(h->node) > 200 || strchr(h->node, '/') || !strcmp(h->node, ".") ||
                    !strcmp(h->node, "..")))
        cfg_error(s.ctx, cfg_get(s.map, "node"), "'ha.node' must be 1 to 200 characters, no '/' (it names "
                                                 "state_dir/nodes/NODE), not '%s'", h->node);
    /* One request must end well inside the TTL: a third of it by default. */
    if (!h->request_timeout_ms)
        h->request_timeout_ms = h->ttl_ms / 3;
    if (h->request_timeout_ms >= h->ttl_ms)
        cfg_error(s.ctx, cfg_get(s.map, "request_timeout"), "'ha.request_timeout' must be shorter than 'ha.ttl'");
    if (h->poll_interval_ms >= h->ttl_ms)
        cfg_error(s.ctx, cfg_get(s.map, "poll_interval"), "'ha.poll_interval' must be shorter than 'ha.ttl'");
}
