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

static void config_free_list(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static void config_free_venue(ConfigVenue *v)
{
    for (int i = 0; i < VENUE_N_ACTIONS; i++) {
        ConfigVenueAction *a = &v->actions[i];
        free(a->method);
        free(a->url);
        free(a->body);
        config_free_list(a->headers, a->n_headers);
        config_free_list(a->argv, a->argc);
    }
    free(v->mode_field);
    for (int i = 0; i < 3; i++)
        config_free_list(v->mode_values[i], v->n_mode_values[i]);
}

Config *config_free(Config *cfg)
{
    if (!cfg)
        return NULL;
    config_free_venue(&cfg->venue);
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

static const char *const config_venue_action_names[VENUE_N_ACTIONS] = {
    [VENUE_HALT] = "halt",           [VENUE_RESUME] = "resume",       [VENUE_SHADOW] = "shadow",
    [VENUE_STATUS] = "status",       [VENUE_POSITIONS] = "positions", [VENUE_FILLS] = "fills",
    [VENUE_CLOSE_ALL] = "close_all",
};

static void config_read_venue_action(const CfgSection *venue, VenueActionId id, ConfigVenueAction *a)
{
    CfgSection s = cfg_section(venue, config_venue_action_names[id], false);

    if (!s.map)
        return;
    cfg_string(&s, "url", false, NULL, &a->url);
    cfg_string_list(&s, "command", &a->argv, &a->argc);
    cfg_string(&s, "method", false, a->url && (id == VENUE_STATUS || id == VENUE_POSITIONS || id == VENUE_FILLS) ? "GET" : "POST",
               &a->method);
    cfg_string_list(&s, "headers", &a->headers, &a->n_headers);
    cfg_string(&s, "body", false, NULL, &a->body);
    cfg_check_unknown(&s);
    if (a->url && a->argc) {
        cfg_error(s.ctx, s.map, "'%s' has both 'url' and 'command'; choose one", s.path);
    } else if (a->url) {
        a->kind = VENUE_ACTION_HTTP;
        if (strncmp(a->url, "http://", 7) && strncmp(a->url, "https://", 8))
            cfg_error(s.ctx, cfg_get(s.map, "url"), "'%s.url' must start with http:// or https://", s.path);
    } else if (a->argc) {
        a->kind = VENUE_ACTION_COMMAND;
        if (a->argv[0][0] != '/')
            cfg_error(s.ctx, cfg_get(s.map, "command"), "'%s.command' must start with an absolute path", s.path);
    } else {
        cfg_error(s.ctx, s.map, "'%s' needs a 'url' or a 'command'", s.path);
    }
    for (size_t i = 0; i < a->n_headers; i++)
        if (!strchr(a->headers[i], ':') || strpbrk(a->headers[i], "\r\n"))
            cfg_error(s.ctx, cfg_get(s.map, "headers"), "'%s.headers' item %zu must be 'Name: value'", s.path,
                      i + 1);
}

static void config_read_venue(const CfgSection *top, ConfigVenue *v)
{
    CfgSection s = cfg_section(top, "venue", false);
    static const char *const mode_names[3] = {"halted", "shadow", "live"};

    v->enabled = s.map != NULL;
    for (int i = 0; i < VENUE_N_ACTIONS; i++)
        config_read_venue_action(&s, (VenueActionId)i, &v->actions[i]);
    cfg_string(&s, "mode_field", false, "mode", &v->mode_field);
    CfgSection modes = cfg_section(&s, "modes", false);
    for (int i = 0; i < 3; i++) {
        cfg_string_list(&modes, mode_names[i], &v->mode_values[i], &v->n_mode_values[i]);
        if (v->n_mode_values[i] == 0) {
            v->mode_values[i] = calloc(1, sizeof(char *));
            if (v->mode_values[i]) {
                v->mode_values[i][0] = strdup(mode_names[i]);
                v->n_mode_values[i] = 1;
            }
        }
    }
    cfg_check_unknown(&modes);
    cfg_duration_ms(&s, "timeout", false, 5000, 10, &v->timeout_ms);
    cfg_duration_ms(&s, "retry_base", false, 250, 10, &v->retry_base_ms);
    cfg_duration_ms(&s, "retry_cap", false, 5000, 10, &v->retry_cap_ms);
    cfg_int(&s, "escalate_after", 1, 1000, 3, &v->escalate_after);
    cfg_duration_ms(&s, "status_interval", false, 2000, 0, &v->status_interval_ms);
    cfg_check_unknown(&s);
    if (v->enabled && (v->actions[VENUE_HALT].kind == VENUE_ACTION_NONE || v->actions[VENUE_STATUS].kind == VENUE_ACTION_NONE))
        cfg_error(s.ctx, s.map, "'venue' needs at least a 'halt' and a 'status' action (a halt counts only when status confirms it)");
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
    config_read_venue(&top, &cfg->venue);
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
