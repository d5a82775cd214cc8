/*
 * config: schema walk from the YAML tree into Config (see config.h).
 */
#include "config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "cfgtree.h"
#include "err.h"
#include "log.h"

Config *config_free(Config *cfg)
{
    if (!cfg)
        return NULL;
    free(cfg->path);
    free(cfg->cluster);
    free(cfg->state_dir);
    free(cfg->control.socket_path);
    free(cfg->control.group);
    free(cfg->control.operators_group);
    free(cfg->database.conninfo);
    free(cfg->platform.health_url);
    free(cfg);
    return NULL;
}

static void config_read_control(const CfgSection *top, ConfigControl *c)
{
    CfgSection s = cfg_section(top, "control", false);

    cfg_string(&s, "socket", false, "/run/drsupervisor/control.sock", &c->socket_path);
    cfg_mode(&s, "mode", 0660, &c->mode);
    cfg_string(&s, "group", false, NULL, &c->group);
    cfg_string(&s, "operators_group", false, NULL, &c->operators_group);
    cfg_size(&s, "max_request", 64 * 1024, 256, 16 * 1024 * 1024, &c->max_request);
    cfg_int(&s, "max_clients", 1, 10000, 64, &c->max_clients);
    cfg_check_unknown(&s);
    if (c->socket_path && c->socket_path[0] != '/')
        cfg_error(s.ctx, cfg_get(s.map, "socket"), "'control.socket' must be an absolute path");
    else if (c->socket_path && strlen(c->socket_path) >= 108)
        cfg_error(s.ctx, cfg_get(s.map, "socket"), "'control.socket' is longer than 107 bytes");
}

static void config_read_database(const CfgSection *top, ConfigDatabase *d)
{
    CfgSection s = cfg_section(top, "database", true);

    cfg_string(&s, "conninfo", true, NULL, &d->conninfo);
    cfg_duration_ms(&s, "probe_interval", false, 1000, 10, &d->probe_interval_ms);
    cfg_duration_ms(&s, "probe_timeout", false, 2000, 10, &d->probe_timeout_ms);
    cfg_duration_ms(&s, "connect_timeout", false, 2000, 10, &d->connect_timeout_ms);
    cfg_int(&s, "down_after", 1, 1000, 2, &d->down_after);
    cfg_check_unknown(&s);
}

static void config_read_platform(const CfgSection *top, ConfigPlatform *p)
{
    CfgSection s = cfg_section(top, "platform", false);

    cfg_string(&s, "health_url", false, NULL, &p->health_url);
    cfg_duration_ms(&s, "probe_interval", false, 1000, 10, &p->probe_interval_ms);
    cfg_duration_ms(&s, "probe_timeout", false, 2000, 10, &p->probe_timeout_ms);
    cfg_int(&s, "down_after", 1, 1000, 2, &p->down_after);
    cfg_check_unknown(&s);
    if (p->health_url && strncmp(p->health_url, "http://", 7) && strncmp(p->health_url, "https://", 8))
        cfg_error(s.ctx, cfg_get(s.map, "health_url"),
                  "'platform.health_url' must start with http:// or https://");
}

static int config_from_tree(CfgCtx *ctx, const CfgNode *root, const char *path, Config **ret)
{
    Config *cfg = calloc(1, sizeof(*cfg));
    CfgSection top = {.ctx = ctx, .map = root, .where = root};
    static const char *const levels[] = {"critical", "error", "warning", "notice", "info", "debug", NULL};
    int level_idx = 4;

    if (!cfg)
        return -ENOMEM;
    cfg->path = strdup(path);
    cfg_string(&top, "cluster", false, "main", &cfg->cluster);
    cfg_string(&top, "state_dir", false, "/var/lib/drsupervisor", &cfg->state_dir);
    if (cfg_enum(&top, "log_level", levels, 4, &level_idx))
        cfg->log_level = LOG_CRIT + level_idx;
    config_read_control(&top, &cfg->control);
    config_read_database(&top, &cfg->database);
    config_read_platform(&top, &cfg->platform);
    cfg_check_unknown(&top);
    if (cfg->state_dir && cfg->state_dir[0] != '/')
        cfg_error(ctx, cfg_get(root, "state_dir"), "'state_dir' must be an absolute path");

    if (ctx->n_errors > 0) {
        config_free(cfg);
        return DR_ECONFIG;
    }
    *ret = cfg;
    return 0;
}

static int config_finish(CfgCtx *ctx, int r, CfgNode *root, const char *path, Config **ret,
                         char **ret_errors)
{
    if (r >= 0)
        r = config_from_tree(ctx, root, path, ret);
    if (r < 0 && ret_errors) {
        *ret_errors = cfg_ctx_join_errors(ctx);
        if (!*ret_errors)
            *ret_errors = strdup(err_str(r));
    }
    cfg_node_free(root);
    cfg_ctx_done(ctx);
    return r < 0 && r != -ENOMEM ? DR_ECONFIG : r;
}

int config_load(const char *path, Config **ret, char **ret_errors)
{
    CfgCtx ctx;
    CfgNode *root = NULL;

    *ret = NULL;
    if (ret_errors)
        *ret_errors = NULL;
    cfg_ctx_init(&ctx, path);
    int r = cfg_parse_file(&ctx, path, &root);
    return config_finish(&ctx, r, root, path, ret, ret_errors);
}

int config_load_string(const char *name, const char *text, Config **ret, char **ret_errors)
{
    CfgCtx ctx;
    CfgNode *root = NULL;

    *ret = NULL;
    if (ret_errors)
        *ret_errors = NULL;
    cfg_ctx_init(&ctx, name);
    int r = cfg_parse_string(&ctx, text, strlen(text), &root);
    return config_finish(&ctx, r, root, name, ret, ret_errors);
}
