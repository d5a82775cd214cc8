/*
 * config: schema walk from the YAML tree into Config (see config.h). Owns the entry points
 * (config_load, config_load_string, config_free, the per-section free and copy helpers), the
 * top-level keys and the sections control, database, platform and alerts (with secrets read from
 * files or credentials). The venue is read in config_venue.c, the recovery side's sections
 * (backup, detector, reconcile, scenarios) in config_recovery.c; config_internal.h holds what they
 * share.
 */
#include "config/config_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "cfgtree.h"
#include "err.h"
#include "log.h"

static void config_free_secret(char *s, size_t len)
{
    if (s) {
        explicit_bzero(s, len ? len : strlen(s));
        free(s);
    }
}

static void config_free_alerts(ConfigAlerts *a)
{
    free(a->source);
    free(a->credentials_dir);
    config_free_secret(a->pd_routing_key, 0);
    free(a->pd_url);
    config_free_secret(a->slack_url, 0);
    config_free_secret(a->webhook_url, 0);
    config_free_secret(a->webhook_secret, a->webhook_secret_len);
    config_free_secret(a->heartbeat_url, 0);
    for (size_t i = 0; i < a->n_routes; i++) {
        free(a->routes[i].kind);
        free(a->routes[i].condition);
    }
    free(a->routes);
}

void config_list_free(char **list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        free(list[i]);
    free(list);
}

void config_backup_free(ConfigBackup *b)
{
    free(b->directory);
    free(b->prefix);
    free(b->conninfo);
    free(b->pg_dump);
    free(b->pg_restore);
    config_list_free(b->schedules, b->n_schedules);
    free(b->key_file);
    free(b->key_credential);
    free(b->key_path);
    config_list_free(b->previous_keys, b->n_previous_keys);
    free(b->keyring_dir);
    config_list_free(b->state_files, b->n_state_files);
    free(b->restore_schedule);
    config_list_free(b->validation_queries, b->n_validation_queries);
    free(b->physical_pg_basebackup);
    free(b->physical_conninfo);
    config_list_free(b->physical_schedules, b->n_physical_schedules);
    memset(b, 0, sizeof(*b));
}

int config_str_copy(const char *src, char **dst)
{
    *dst = NULL;
    if (src && !(*dst = strdup(src)))
        return -ENOMEM;
    return 0;
}

int config_list_copy(char *const *src, size_t n, char ***dst)
{
    *dst = NULL;
    if (n == 0)
        return 0;
    if (!(*dst = calloc(n + 1, sizeof(**dst)))) /* NULL after the last, as cfg_string_list: usable as argv */
        return -ENOMEM;
    for (size_t i = 0; i < n; i++)
        if (!((*dst)[i] = strdup(src[i])))
            return -ENOMEM;
    return 0;
}

int config_backup_copy(const ConfigBackup *src, ConfigBackup *dst)
{
    int r = 0;

    *dst = *src;
    r |= config_str_copy(src->directory, &dst->directory);
    r |= config_str_copy(src->prefix, &dst->prefix);
    r |= config_str_copy(src->conninfo, &dst->conninfo);
    r |= config_str_copy(src->pg_dump, &dst->pg_dump);
    r |= config_str_copy(src->pg_restore, &dst->pg_restore);
    r |= config_str_copy(src->key_file, &dst->key_file);
    r |= config_str_copy(src->key_credential, &dst->key_credential);
    r |= config_str_copy(src->key_path, &dst->key_path);
    r |= config_str_copy(src->keyring_dir, &dst->keyring_dir);
    dst->previous_keys = NULL;
    r |= config_list_copy(src->previous_keys, src->n_previous_keys, &dst->previous_keys);
    r |= config_str_copy(src->restore_schedule, &dst->restore_schedule);
    r |= config_list_copy(src->schedules, src->n_schedules, &dst->schedules);
    r |= config_list_copy(src->state_files, src->n_state_files, &dst->state_files);
    r |= config_list_copy(src->validation_queries, src->n_validation_queries, &dst->validation_queries);
    r |= config_str_copy(src->physical_pg_basebackup, &dst->physical_pg_basebackup);
    r |= config_str_copy(src->physical_conninfo, &dst->physical_conninfo);
    r |= config_list_copy(src->physical_schedules, src->n_physical_schedules, &dst->physical_schedules);
    if (r) {
        config_backup_free(dst);
        return -ENOMEM;
    }
    return 0;
}

static void config_free_detector(ConfigDetector *d)
{
    free(d->conninfo);
    config_list_free(d->corruption_queries, d->n_corruption_queries);
    config_list_free(d->amcheck_indexes, d->n_amcheck_indexes);
    config_list_free(d->restart_command, d->n_restart_command);
    free(d->server_log);
    free(d->data_directory);
    config_list_free(d->damage_patterns, d->n_damage_patterns);
    for (size_t i = 0; i < d->n_watched_tables; i++) {
        free(d->watched_tables[i].name);
        free(d->watched_tables[i].table);
        free(d->watched_tables[i].query);
    }
    free(d->watched_tables);
}

static void config_free_reconcile(ConfigReconcile *r)
{
    free(r->conninfo);
    free(r->positions_query);
    free(r->duplicates_query);
    free(r->stale_orders_query);
    free(r->missing_fills_query);
    free(r->replay_fill_query);
    config_list_free(r->replay_fill_params, r->n_replay_fill_params);
    free(r->recompute_query);
    free(r->post_resume_checks_ms);
    config_list_free(r->referential_queries, r->n_referential_queries);
}

void config_scenario_free(ConfigScenario *sc)
{
    if (sc->data && sc->def->done)
        sc->def->done(sc->data);
    free(sc->data);
    memset(sc, 0, sizeof(*sc));
}

int config_scenario_copy(const ConfigScenario *src, ConfigScenario *dst)
{
    *dst = *src;
    dst->data = NULL;
    if (!src->data)
        return 0;
    if (!(dst->data = calloc(1, src->def->size)))
        return -ENOMEM;
    if (!src->def->copy) {
        memcpy(dst->data, src->data, src->def->size);
        return 0;
    }
    if (src->def->copy(src->data, dst->data) < 0) {
        config_scenario_free(dst);
        return -ENOMEM;
    }
    return 0;
}

void config_scenarios_free(ConfigScenarios *s)
{
    free(s->admin_conninfo);
    free(s->database);
    for (size_t i = 0; i < s->n; i++)
        config_scenario_free(&s->list[i]);
    free(s->list);
    memset(s, 0, sizeof(*s));
}

int config_scenarios_copy(const ConfigScenarios *src, ConfigScenarios *dst)
{
    int r = 0;

    memset(dst, 0, sizeof(*dst));
    r |= config_str_copy(src->admin_conninfo, &dst->admin_conninfo);
    r |= config_str_copy(src->database, &dst->database);
    if (!r && src->n && !(dst->list = calloc(src->n, sizeof(*dst->list))))
        r = -ENOMEM;
    for (size_t i = 0; !r && i < src->n; i++) {
        r = config_scenario_copy(&src->list[i], &dst->list[i]);
        if (!r)
            dst->n++;
    }
    if (r) {
        config_scenarios_free(dst);
        return -ENOMEM;
    }
    return 0;
}

Config *config_free(Config *cfg)
{
    if (!cfg)
        return NULL;
    config__free_venue(&cfg->venue);
    config__free_replication(&cfg->replication);
    config__free_wal(&cfg->wal);
    config_offsite_free(&cfg->offsite);
    config__free_drills(&cfg->drills);
    config__free_ha(&cfg->ha);
    free(cfg->metrics.listen);
    free(cfg->inbound_webhook.path);
    config_free_secret(cfg->inbound_webhook.secret, cfg->inbound_webhook.secret_len);
    free(cfg->path);
    free(cfg->cluster);
    free(cfg->state_dir);
    free(cfg->node_dir);
    free(cfg->control.socket_path);
    free(cfg->control.group);
    free(cfg->control.operators_group);
    free(cfg->database.conninfo);
    free(cfg->platform.health_url);
    config_free_alerts(&cfg->alerts);
    config_backup_free(&cfg->backup);
    config_free_detector(&cfg->detector);
    config_free_reconcile(&cfg->reconcile);
    config_scenarios_free(&cfg->scenarios);
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
    /* 250 ms: with down_after 2 a dead database halts trading in about half a second. */
    cfg_duration_ms(&s, "probe_interval", false, 250, 10, &d->probe_interval_ms);
    cfg_duration_ms(&s, "probe_timeout", false, 2000, 10, &d->probe_timeout_ms);
    cfg_duration_ms(&s, "connect_timeout", false, 2000, 10, &d->connect_timeout_ms);
    cfg_int(&s, "down_after", 1, 1000, 2, &d->down_after);
    cfg_check_unknown(&s);
    config__check_conninfo_password(&s, "conninfo");
    config__check_conninfo_passfile(&s, "conninfo");
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

/* ---- alerts ---- */

static const char *const config_channel_names[] = {"pagerduty", "slack", "webhook", NULL};

/*
 * Read a secret from a file: a regular file owned by the daemon's user (or root) that group and
 * others cannot access, at most 64 KiB, trailing newlines and blanks dropped. Opened with
 * O_NONBLOCK and checked with fstat before any read, so a FIFO or a device planted at the path is
 * refused at once instead of blocking the load. The content never appears in messages.
 */
int config__read_secret_file(const char *path, char **ret, size_t *ret_len, char *why, size_t why_len)
{
    struct stat st;
    char *buf = NULL;
    size_t len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);

    if (fd < 0) {
        int e = errno;
        snprintf(why, why_len, "cannot open '%.400s': %s", path, strerror(e));
        return -e;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        snprintf(why, why_len, "'%.400s' is not a regular file", path);
        close(fd);
        return DR_EKEY;
    }
    if (st.st_uid != geteuid() && st.st_uid != 0) {
        snprintf(why, why_len, "'%.400s' is owned by uid %u, not by the daemon's user (uid %u) or root", path,
                 (unsigned)st.st_uid, (unsigned)geteuid());
        close(fd);
        return DR_EKEY;
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        snprintf(why, why_len, "'%.400s' is accessible by group or others (mode %04o); chmod 600 it", path,
                 (unsigned)(st.st_mode & 07777));
        close(fd);
        return DR_EKEY;
    }
    if (st.st_size > 64 * 1024 || !(buf = malloc((size_t)st.st_size + 1))) {
        snprintf(why, why_len, "'%.400s' is too large for a secret", path);
        close(fd);
        return DR_EKEY;
    }
    while (len < (size_t)st.st_size) {
        ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' ' || buf[len - 1] == '\t'))
        len--;
    buf[len] = '\0';
    if (len == 0) {
        snprintf(why, why_len, "'%.400s' is empty", path);
        free(buf);
        return DR_EKEY;
    }
    *ret = buf;
    if (ret_len)
        *ret_len = len;
    return 0;
}

int config__credential_path(const char *name, const char *cred_dir, char *path, size_t n, char *why, size_t whylen)
{
    const char *dir = getenv("CREDENTIALS_DIRECTORY");

    if (!dir || !dir[0])
        dir = cred_dir;
    if (strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..")) {
        snprintf(why, whylen, "'%.200s' must be a credential name, not a path", name);
        return -EINVAL;
    }
    if (!dir) {
        snprintf(why, whylen, "credential '%.200s': $CREDENTIALS_DIRECTORY is not set (LoadCredential= in the unit) "
                              "and alerts.credentials_dir is not configured", name);
        return -EINVAL;
    }
    snprintf(path, n, "%s/%s", dir, name);
    return 0;
}

/*
 * A secret given as `<name>_file: PATH` or `<name>_credential: ID` (systemd LoadCredential=,
 * $CREDENTIALS_DIRECTORY/ID, else credentials_dir/ID), or, when plain_ok, as `<name>: VALUE`
 * (only for values that are not secret, such as a webhook URL without a token).
 */
void config__secret(const CfgSection *s, const char *name, bool plain_ok, const char *cred_dir,
                          char **ret, size_t *ret_len)
{
    char kfile[64], kcred[64], why[600], path[4096];
    char *file = NULL, *cred = NULL, *plain = NULL;
    const CfgNode *at;

    snprintf(kfile, sizeof(kfile), "%s_file", name);
    snprintf(kcred, sizeof(kcred), "%s_credential", name);
    cfg_string(s, kfile, false, NULL, &file);
    cfg_string(s, kcred, false, NULL, &cred);
    if (plain_ok)
        cfg_string(s, name, false, NULL, &plain);
    if ((file != NULL) + (cred != NULL) + (plain != NULL) > 1) {
        cfg_error(s->ctx, s->where, "'%s': give only one of %s_file, %s_credential%s%s", s->path, name, name,
                  plain_ok ? " or " : "", plain_ok ? name : "");
        goto out;
    }
    if (plain) {
        *ret = plain;
        if (ret_len)
            *ret_len = strlen(plain);
        plain = NULL;
        goto out;
    }
    if (cred) {
        at = cfg_get(s->map, kcred);
        if (config__credential_path(cred, cred_dir, path, sizeof(path), why, sizeof(why)) < 0) {
            cfg_error(s->ctx, at, "'%s.%s': %s", s->path, kcred, why);
            goto out;
        }
    } else if (file) {
        at = cfg_get(s->map, kfile);
        snprintf(path, sizeof(path), "%s", file);
    } else {
        goto out;
    }
    if (config__read_secret_file(path, ret, ret_len, why, sizeof(why)) < 0)
        cfg_error(s->ctx, at, "'%s.%s': %s", s->path, cred ? kcred : kfile, why);
out:
    free(file);
    free(cred);
    if (plain)
        free(plain);
}

static bool config_is_http_url(const char *u)
{
    return u && (!strncmp(u, "http://", 7) || !strncmp(u, "https://", 8));
}

static void config_read_route(CfgCtx *ctx, const CfgNode *item, size_t idx, ConfigAlertRoute *r)
{
    CfgSection rs = {.ctx = ctx, .map = item, .where = item};
    static const char *const sevs[] = {"info", "warning", "error", "critical", NULL};
    char **chans = NULL;
    size_t n_chans = 0;
    int sev = 2;

    snprintf(rs.path, sizeof(rs.path), "alerts.routes[%zu]", idx);
    CfgSection m = cfg_section(&rs, "match", false);
    if (cfg_enum(&m, "min_severity", sevs, 2, &sev))
        r->min_severity = sev;
    cfg_string(&m, "kind", false, NULL, &r->kind);
    cfg_string(&m, "condition", false, NULL, &r->condition);
    cfg_check_unknown(&m);
    cfg_string_list(&rs, "channels", &chans, &n_chans);
    if (n_chans == 0)
        cfg_error(ctx, item, "'%s.channels' must name at least one of pagerduty, slack, webhook", rs.path);
    for (size_t i = 0; i < n_chans; i++) {
        bool found = false;
        for (unsigned c = 0; config_channel_names[c]; c++) {
            if (chans[i] && !strcmp(chans[i], config_channel_names[c])) {
                r->channels |= 1u << c;
                found = true;
            }
        }
        if (!found)
            cfg_error(ctx, cfg_get(item, "channels"), "'%s.channels': unknown channel '%s' (pagerduty, slack, webhook)",
                      rs.path, chans[i] ? chans[i] : "");
        free(chans[i]);
    }
    free(chans);
    cfg_check_unknown(&rs);
}

static void config_read_alerts(const CfgSection *top, ConfigAlerts *a)
{
    CfgSection s = cfg_section(top, "alerts", false);
    char host[256] = "localhost";

    if (!s.map)
        return;
    a->enabled = true;
    if (gethostname(host, sizeof(host) - 1) < 0)
        snprintf(host, sizeof(host), "localhost");
    cfg_string(&s, "source", false, host, &a->source);
    cfg_string(&s, "credentials_dir", false, NULL, &a->credentials_dir);
    cfg_duration_ms(&s, "timeout", false, 10000, 100, &a->timeout_ms);
    cfg_duration_ms(&s, "repeat_interval", false, 3600 * 1000, 0, &a->repeat_interval_ms);
    cfg_duration_ms(&s, "group_window", false, 2000, 0, &a->group_window_ms);

    CfgSection pd = cfg_section(&s, "pagerduty", false);
    config__secret(&pd, "routing_key", false, a->credentials_dir, &a->pd_routing_key, NULL);
    cfg_string(&pd, "url", false, "https://events.pagerduty.com/v2/enqueue", &a->pd_url);
    cfg_check_unknown(&pd);
    if (pd.map && !a->pd_routing_key && pd.ctx->n_errors == 0)
        cfg_error(s.ctx, pd.map, "'alerts.pagerduty' needs routing_key_file or routing_key_credential");
    if (!config_is_http_url(a->pd_url))
        cfg_error(s.ctx, cfg_get(pd.map, "url"), "'alerts.pagerduty.url' must start with http:// or https://");

    CfgSection sl = cfg_section(&s, "slack", false);
    config__secret(&sl, "webhook_url", false, a->credentials_dir, &a->slack_url, NULL);
    cfg_duration_ms(&sl, "retry_after_default", false, 30000, 0, &a->slack_retry_after_ms);
    cfg_check_unknown(&sl);
    if (sl.map && !a->slack_url && sl.ctx->n_errors == 0)
        cfg_error(s.ctx, sl.map, "'alerts.slack' needs webhook_url_file or webhook_url_credential");
    if (a->slack_url && !config_is_http_url(a->slack_url))
        cfg_error(s.ctx, sl.map, "'alerts.slack' webhook URL must start with http:// or https://");

    CfgSection wh = cfg_section(&s, "webhook", false);
    config__secret(&wh, "url", true, a->credentials_dir, &a->webhook_url, NULL);
    config__secret(&wh, "hmac_secret", false, a->credentials_dir, &a->webhook_secret, &a->webhook_secret_len);
    cfg_check_unknown(&wh);
    if (wh.map && !a->webhook_url && wh.ctx->n_errors == 0)
        cfg_error(s.ctx, wh.map, "'alerts.webhook' needs url, url_file or url_credential");
    if (a->webhook_url && !config_is_http_url(a->webhook_url))
        cfg_error(s.ctx, wh.map, "'alerts.webhook' URL must start with http:// or https://");

    CfgSection rt = cfg_section(&s, "retry", false);
    cfg_duration_ms(&rt, "base", false, 30000, 1, &a->retry_base_ms);
    cfg_duration_ms(&rt, "cap", false, 300000, 1, &a->retry_cap_ms);
    cfg_int(&rt, "max_attempts", 1, 1000000, 50, &a->max_attempts);
    cfg_check_unknown(&rt);
    if (a->retry_cap_ms < a->retry_base_ms)
        cfg_error(s.ctx, rt.map ? rt.map : s.map, "'alerts.retry.cap' must not be below 'alerts.retry.base'");

    CfgSection hb = cfg_section(&s, "heartbeat", false);
    config__secret(&hb, "url", true, a->credentials_dir, &a->heartbeat_url, NULL);
    cfg_duration_ms(&hb, "interval", false, 60000, 100, &a->heartbeat_interval_ms);
    cfg_check_unknown(&hb);
    if (hb.map && !a->heartbeat_url && hb.ctx->n_errors == 0)
        cfg_error(s.ctx, hb.map, "'alerts.heartbeat' needs url, url_file or url_credential");
    if (a->heartbeat_url && !config_is_http_url(a->heartbeat_url))
        cfg_error(s.ctx, hb.map, "'alerts.heartbeat' URL must start with http:// or https://");

    const CfgNode *routes = cfg_get(s.map, "routes");
    unsigned configured = (a->pd_routing_key ? 1u << ALERT_CH_PAGERDUTY : 0) |
                          (a->slack_url ? 1u << ALERT_CH_SLACK : 0) | (a->webhook_url ? 1u << ALERT_CH_WEBHOOK : 0);
    if (routes && routes->kind == CFG_NODE_SEQ) {
        a->routes = calloc(routes->n ? routes->n : 1, sizeof(*a->routes));
        if (!a->routes)
            return;
        for (size_t i = 0; i < routes->n; i++) {
            if (routes->items[i]->kind != CFG_NODE_MAP) {
                cfg_error(s.ctx, routes->items[i], "'alerts.routes' items must be mappings with match and channels");
                continue;
            }
            config_read_route(s.ctx, routes->items[i], i, &a->routes[a->n_routes]);
            unsigned missing = a->routes[a->n_routes].channels & ~configured;
            for (unsigned c = 0; c < ALERT_CH_COUNT; c++)
                if (missing & (1u << c))
                    cfg_error(s.ctx, routes->items[i], "'alerts.routes[%zu]' sends to %s, which is not configured",
                              i, config_channel_names[c]);
            a->n_routes++;
        }
    } else if (routes && !(routes->kind == CFG_NODE_SCALAR && !routes->scalar[0])) {
        cfg_error(s.ctx, routes, "'alerts.routes' must be a list of {match: {...}, channels: [...]}");
    } else if (configured) {
        /* Default: errors and worse go everywhere that is configured. */
        a->routes = calloc(1, sizeof(*a->routes));
        if (!a->routes)
            return;
        a->routes[0] = (ConfigAlertRoute){.min_severity = 2, .channels = configured};
        a->n_routes = 1;
    }
    cfg_check_unknown(&s);
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
    config_read_alerts(&top, &cfg->alerts);
    config__read_venue(&top, cfg->alerts.credentials_dir, &cfg->venue);
    config__read_backup(&top, &cfg->database, cfg->alerts.credentials_dir, &cfg->backup);
    config__read_detector(&top, &cfg->database, &cfg->detector);
    config__read_reconcile(&top, &cfg->database, &cfg->reconcile);
    config__read_scenarios(&top, &cfg->scenarios);
    config__read_replication(&top, &cfg->replication);
    config__read_metrics(&top, &cfg->metrics);
    config__read_inbound_webhook(&top, &cfg->metrics, cfg->alerts.credentials_dir, &cfg->inbound_webhook);
    config__read_wal(&top, &cfg->backup, &cfg->wal);
    config__read_audit(&top, &cfg->audit);
    config__read_repository(&top, &cfg->backup, cfg->alerts.credentials_dir, &cfg->offsite);
    config__read_drills(&top, &cfg->drills);
    config__read_ha(&top, cfg->cluster, &cfg->ha);
    cfg_check_unknown(&top);
    if (cfg->state_dir && cfg->state_dir[0] != '/')
        cfg_error(ctx, cfg_get(root, "state_dir"), "'state_dir' must be an absolute path");
    if (cfg->state_dir && cfg->ha.enabled && cfg->ha.node) {
        if (asprintf(&cfg->node_dir, "%s/nodes/%s", cfg->state_dir, cfg->ha.node) < 0)
            cfg->node_dir = NULL;
    } else if (cfg->state_dir) {
        cfg->node_dir = strdup(cfg->state_dir);
    }
    if (cfg->backup.enabled && cfg->state_dir &&
        asprintf(&cfg->backup.keyring_dir, "%s/backup-keys", cfg->state_dir) < 0)
        cfg->backup.keyring_dir = NULL;

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
