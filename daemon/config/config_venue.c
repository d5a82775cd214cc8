/*
 * config_venue: the venue section of the configuration (docs/venue.md).
 *
 * Owns the reading of the seven actions (HTTP or command), the check of their templates (every
 * {{placeholder}} known, {{credential:NAME}} only in headers, where it is replaced by the secret at
 * load), the answer mappings of status, positions and fills (paths checked with lib/jpath), the
 * paging of fills, the request signer, the mode values and the timings; and their freeing.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"
#include "jpath.h"

static void config_free_map(ConfigVenueMap *m)
{
    char **strs[] = {&m->list,  &m->symbol,          &m->quantity, &m->avg_price, &m->side, &m->fill_id,
                     &m->client_order_id, &m->order_id, &m->price,    &m->fee,       &m->executed_at};
    for (size_t i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        free(*strs[i]);
        *strs[i] = NULL;
    }
    config_list_free(m->plus, m->n_plus);
    config_list_free(m->minus, m->n_minus);
}

void config__free_venue(ConfigVenue *v)
{
    for (int i = 0; i < VENUE_N_ACTIONS; i++) {
        ConfigVenueAction *a = &v->actions[i];
        free(a->method);
        free(a->url);
        free(a->body);
        for (size_t h = 0; v->secret_headers[i] && h < a->n_headers; h++)
            explicit_bzero(a->headers[h], strlen(a->headers[h]));
        config_list_free(a->headers, a->n_headers);
        config_list_free(a->argv, a->argc);
    }
    config_free_map(&v->positions_map);
    config_free_map(&v->fills_map);
    free(v->pages.cursor);
    if (v->sign.key) {
        explicit_bzero(v->sign.key, v->sign.key_len);
        free(v->sign.key);
    }
    free(v->sign.header);
    free(v->sign.timestamp_header);
    free(v->sign.payload);
    free(v->mode_field);
    for (int i = 0; i < 3; i++)
        config_list_free(v->mode_values[i], v->n_mode_values[i]);
}

static const char *const config_venue_action_names[VENUE_N_ACTIONS] = {
    [VENUE_HALT] = "halt",           [VENUE_RESUME] = "resume",       [VENUE_SHADOW] = "shadow",
    [VENUE_STATUS] = "status",       [VENUE_POSITIONS] = "positions", [VENUE_FILLS] = "fills",
    [VENUE_CLOSE_ALL] = "close_all",
};

/* ---- templates ---- */

/* Is `name` (the text between {{ and }}) a placeholder of this action? */
static bool config_placeholder_ok(VenueActionId id, const char *name, size_t len, bool header)
{
    static const char *const common[] = {"reason", "run", "cluster"};
    static const char *const fmts[] = {"", ":ms", ":s", ":us", ":rfc3339"};

    for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++)
        if (strlen(common[i]) == len && !strncmp(name, common[i], len))
            return true;
    if (id == VENUE_FILLS) {
        for (int w = 0; w < 2; w++) {
            const char *base = w ? "until" : "since";
            for (size_t f = 0; f < sizeof(fmts) / sizeof(fmts[0]); f++)
                if (len == 5 + strlen(fmts[f]) && !strncmp(name, base, 5) && !strncmp(name + 5, fmts[f], len - 5))
                    return true;
        }
        if ((len == 6 && !strncmp(name, "cursor", 6)) || (len == 5 && !strncmp(name, "limit", 5)))
            return true;
    }
    return header && len > 11 && !strncmp(name, "credential:", 11);
}

/* Every {{...}} in `text` must be a placeholder of the action. */
static void config_check_template(const CfgSection *s, const CfgNode *at, VenueActionId id, const char *key,
                                  const char *text, bool header)
{
    for (const char *p = text ? strstr(text, "{{") : NULL; p; p = strstr(p + 2, "{{")) {
        if (p[2] < 'a' || p[2] > 'z')
            continue; /* not a placeholder: a command's own braces, as in --format '{{.State.Status}}' */
        const char *end = strstr(p + 2, "}}");
        if (!end) {
            cfg_error(s->ctx, at, "'%s.%s': '{{' without a closing '}}'", s->path, key);
            return;
        }
        size_t len = (size_t)(end - (p + 2));
        if (!config_placeholder_ok(id, p + 2, len, header)) {
            bool cred = len > 11 && !strncmp(p + 2, "credential:", 11);
            cfg_error(s->ctx, at, "'%s.%s': %s '{{%.*s}}'%s", s->path, key,
                      cred ? "a credential may only be used in headers:" : "unknown placeholder", (int)len > 80 ? 80 : (int)len,
                      p + 2,
                      cred ? ""
                           : id == VENUE_FILLS ? " (known: reason, run, cluster, since[:ms|s|us|rfc3339], until[...], cursor, limit)"
                                               : " (known here: reason, run, cluster)");
        }
        p = end;
    }
}

/* Replace each {{credential:NAME}} of a header by the secret ($CREDENTIALS_DIRECTORY/NAME, else
 * cred_dir/NAME). Returns true when the header held one. */
static bool config_header_credentials(const CfgSection *s, const CfgNode *at, const char *cred_dir, char **header)
{
    bool any = false;
    char *p;

    while ((p = strstr(*header, "{{credential:")) != NULL) {
        char *end = strstr(p, "}}");
        char name[256], path[4096], why[600];
        char *secret = NULL;
        size_t nl = end ? (size_t)(end - (p + 13)) : 0;

        if (!end || nl == 0 || nl >= sizeof(name))
            return any; /* reported by the template check */
        memcpy(name, p + 13, nl);
        name[nl] = '\0';
        if (config__credential_path(name, cred_dir, path, sizeof(path), why, sizeof(why)) < 0) {
            cfg_error(s->ctx, at, "'%s.headers': {{credential:%s}}: %s", s->path, name, why);
            return any;
        }
        if (config__read_secret_file(path, &secret, NULL, why, sizeof(why)) < 0) {
            cfg_error(s->ctx, at, "'%s.headers': {{credential:%s}}: %s", s->path, name, why);
            return any;
        }
        size_t pre = (size_t)(p - *header), sl = strlen(secret), rest = strlen(end + 2);
        char *n = malloc(pre + sl + rest + 1);
        if (!n) {
            explicit_bzero(secret, sl);
            free(secret);
            cfg_error(s->ctx, at, "out of memory");
            return any;
        }
        memcpy(n, *header, pre);
        memcpy(n + pre, secret, sl);
        memcpy(n + pre + sl, end + 2, rest + 1);
        explicit_bzero(secret, sl);
        free(secret);
        explicit_bzero(*header, strlen(*header));
        free(*header);
        *header = n;
        any = true;
        if (strpbrk(n, "\r\n"))
            cfg_error(s->ctx, at, "'%s.headers': the credential '%s' holds a line break", s->path, name);
    }
    return any;
}

/* ---- answer mappings ---- */

static void config_map_path(const CfgSection *s, const char *key, bool optional, const char *def, char **ret)
{
    char why[300];

    cfg_string(s, key, false, def, ret);
    if (!*ret)
        return;
    if (!(*ret)[0] && !optional) {
        cfg_error(s->ctx, cfg_get(s->map, key), "'%s.%s' is required and cannot be empty", s->path, key);
        return;
    }
    if ((*ret)[0] && !jpath_valid(*ret, why, sizeof(why)))
        cfg_error(s->ctx, cfg_get(s->map, key), "'%s.%s': %s", s->path, key, why);
}

static void config_map_values(const CfgSection *s, const char *key, const char *d1, const char *d2, char ***ret,
                              size_t *n)
{
    cfg_string_list(s, key, ret, n);
    if (*n == 0) {
        config_list_free(*ret, 0);
        *ret = calloc(2, sizeof(char *));
        if (*ret && ((*ret)[0] = strdup(d1)) && ((*ret)[1] = strdup(d2)))
            *n = 2;
    }
}

static void config_read_map(const CfgSection *action, VenueActionId id, ConfigVenueMap *m)
{
    CfgSection s = cfg_section(action, "answer", false);
    static const char *const times[] = {"auto", "rfc3339", "utc", "s", "ms", "us", NULL};
    bool fills = id == VENUE_FILLS;
    char why[300];

    cfg_string(&s, "list", false, NULL, &m->list);
    if (m->list && m->list[0] && !jpath_valid(m->list, why, sizeof(why)))
        cfg_error(s.ctx, cfg_get(s.map, "list"), "'%s.list': %s", s.path, why);
    config_map_path(&s, "symbol", false, "symbol", &m->symbol);
    config_map_path(&s, "quantity", false, "quantity", &m->quantity);
    if (fills) {
        config_map_path(&s, "side", true, "side", &m->side);
        config_map_path(&s, "fill_id", false, "fill_id", &m->fill_id);
        config_map_path(&s, "client_order_id", true, "client_order_id", &m->client_order_id);
        config_map_path(&s, "order_id", true, "", &m->order_id);
        config_map_path(&s, "price", false, "price", &m->price);
        config_map_path(&s, "fee", true, "", &m->fee);
        config_map_path(&s, "executed_at", false, "executed_at", &m->executed_at);
        config_map_values(&s, "buy", "buy", "BUY", &m->plus, &m->n_plus);
        config_map_values(&s, "sell", "sell", "SELL", &m->minus, &m->n_minus);
        cfg_enum(&s, "time", times, VENUE_TIME_AUTO, &m->time);
    } else {
        config_map_path(&s, "side", true, "", &m->side);
        config_map_path(&s, "avg_price", true, "avg_price", &m->avg_price);
        config_map_values(&s, "long", "long", "buy", &m->plus, &m->n_plus);
        config_map_values(&s, "short", "short", "sell", &m->minus, &m->n_minus);
    }
    cfg_check_unknown(&s);
}

static void config_read_pages(const CfgSection *fills, ConfigVenuePages *pg)
{
    CfgSection s = cfg_section(fills, "pages", false);
    static const char *const bys[] = {"none", "cursor", "since", NULL};
    char why[300];
    char *by = NULL;

    pg->max = 100;
    if (!s.map)
        return;
    cfg_string(&s, "cursor", false, NULL, &pg->cursor);
    cfg_string(&s, "by", false, NULL, &by);
    cfg_int(&s, "limit", 1, 1000000, 0, &pg->limit);
    cfg_int(&s, "max", 1, 100000, 100, &pg->max);
    cfg_check_unknown(&s);
    pg->by = pg->cursor ? VENUE_PAGES_CURSOR : VENUE_PAGES_NONE;
    if (by) {
        int k = -1;
        for (int i = 0; bys[i]; i++)
            if (!strcmp(by, bys[i]))
                k = i;
        if (k < 0)
            cfg_error(s.ctx, cfg_get(s.map, "by"), "'%s.by' must be cursor or since, not '%s'", s.path, by);
        else if (k == VENUE_PAGES_SINCE && pg->cursor)
            cfg_error(s.ctx, cfg_get(s.map, "by"), "'%s': by: since and a cursor exclude each other", s.path);
        else if (k == VENUE_PAGES_CURSOR && !pg->cursor)
            cfg_error(s.ctx, cfg_get(s.map, "by"), "'%s': by: cursor needs 'cursor: PATH'", s.path);
        else
            pg->by = k;
        free(by);
    }
    if (pg->cursor && !(pg->cursor[0] && jpath_valid(pg->cursor, why, sizeof(why))))
        cfg_error(s.ctx, cfg_get(s.map, "cursor"), "'%s.cursor': %s", s.path, pg->cursor[0] ? why : "is empty");
    if (pg->by == VENUE_PAGES_SINCE && pg->limit == 0)
        cfg_error(s.ctx, s.map, "'%s': by: since needs 'limit' (the page size of the platform)", s.path);
    if (pg->by != VENUE_PAGES_SINCE && pg->limit != 0)
        cfg_error(s.ctx, cfg_get(s.map, "limit"), "'%s.limit' only applies with by: since", s.path);
}

static void config_read_sign(const CfgSection *venue, const char *cred_dir, ConfigVenueSign *g)
{
    CfgSection s = cfg_section(venue, "sign", false);
    static const char *const stamps[] = {"ms", "s", NULL};
    static const char *const encs[] = {"hex", "base64", NULL};
    int stamp = 0, enc = 0;

    if (!s.map)
        return;
    g->enabled = true;
    config__secret(&s, "key", false, cred_dir, &g->key, &g->key_len);
    if (!g->key)
        cfg_error(s.ctx, s.map, "'%s' needs key_file or key_credential", s.path);
    cfg_string(&s, "header", false, "X-Signature", &g->header);
    cfg_string(&s, "timestamp_header", false, NULL, &g->timestamp_header);
    cfg_string(&s, "payload", false, "{{timestamp}}{{method}}{{path}}{{body}}", &g->payload);
    cfg_enum(&s, "timestamp", stamps, 0, &stamp);
    cfg_enum(&s, "encoding", encs, 0, &enc);
    cfg_check_unknown(&s);
    g->seconds = stamp == 1;
    g->base64 = enc == 1;
    const char *hs[2] = {g->header, g->timestamp_header};
    for (int i = 0; i < 2; i++)
        if (hs[i] && (!hs[i][0] || strpbrk(hs[i], ": \t\r\n")))
            cfg_error(s.ctx, cfg_get(s.map, i ? "timestamp_header" : "header"), "'%s.%s' must be a header name",
                      s.path, i ? "timestamp_header" : "header");
    for (const char *p = g->payload ? strstr(g->payload, "{{") : NULL; p; p = strstr(p + 2, "{{")) {
        static const char *const ok[] = {"{{timestamp}}", "{{method}}", "{{path}}", "{{body}}"};
        bool known = false;
        for (size_t i = 0; i < 4; i++)
            known = known || !strncmp(p, ok[i], strlen(ok[i]));
        if (!known) {
            cfg_error(s.ctx, cfg_get(s.map, "payload"),
                      "'%s.payload': unknown placeholder at '%.20s' (known: timestamp, method, path, body)", s.path, p);
            break;
        }
    }
}

/* ---- actions ---- */

static void config_read_venue_action(const CfgSection *venue, const char *cred_dir, VenueActionId id,
                                     ConfigVenue *v)
{
    ConfigVenueAction *a = &v->actions[id];
    CfgSection s = cfg_section(venue, config_venue_action_names[id], false);
    bool reads = id == VENUE_STATUS || id == VENUE_POSITIONS || id == VENUE_FILLS;

    if (id == VENUE_POSITIONS || id == VENUE_FILLS)
        config_read_map(&s, id, id == VENUE_FILLS ? &v->fills_map : &v->positions_map);
    if (id == VENUE_FILLS)
        config_read_pages(&s, &v->pages);
    if (id == VENUE_STATUS) {
        CfgSection ans = cfg_section(&s, "answer", false);
        char *mode = NULL;
        cfg_string(&ans, "mode", false, NULL, &mode);
        cfg_check_unknown(&ans);
        if (mode && v->mode_field) {
            cfg_error(s.ctx, cfg_get(ans.map, "mode"), "'%s.answer.mode' and 'venue.mode_field' are the same "
                                                        "setting: give one", s.path);
            free(mode);
        } else if (mode) {
            v->mode_field = mode;
        }
    }
    if (!s.map)
        return;
    cfg_string(&s, "url", false, NULL, &a->url);
    cfg_string_list(&s, "command", &a->argv, &a->argc);
    cfg_string(&s, "method", false, a->url && reads ? "GET" : "POST", &a->method);
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
    config_check_template(&s, cfg_get(s.map, "url"), id, "url", a->url, false);
    config_check_template(&s, cfg_get(s.map, "body"), id, "body", a->body, false);
    for (size_t i = 0; i < a->argc; i++)
        config_check_template(&s, cfg_get(s.map, "command"), id, "command", a->argv[i], false);
    for (size_t i = 0; i < a->n_headers; i++) {
        const CfgNode *at = cfg_get(s.map, "headers");
        if (!strchr(a->headers[i], ':') || strpbrk(a->headers[i], "\r\n")) {
            cfg_error(s.ctx, at, "'%s.headers' item %zu must be 'Name: value'", s.path, i + 1);
            continue;
        }
        config_check_template(&s, at, id, "headers", a->headers[i], true);
        if (config_header_credentials(&s, at, cred_dir, &a->headers[i]))
            v->secret_headers[id] = true;
    }
    if (id == VENUE_FILLS && v->pages.by != VENUE_PAGES_NONE) {
        /* cursor paging needs the cursor in the request; paging by since needs the page size the
         * daemon counts with, or a platform that pages smaller ends the read after one page */
        const char *need = v->pages.by == VENUE_PAGES_CURSOR ? "{{cursor}}" : "{{limit}}";
        bool used = (a->url && strstr(a->url, need)) || (a->body && strstr(a->body, need));
        for (size_t i = 0; i < a->argc; i++)
            used = used || strstr(a->argv[i], need);
        if (!used)
            cfg_error(s.ctx, s.map, "'%s': pages.%s needs %s in the url, body or command", s.path,
                      v->pages.by == VENUE_PAGES_CURSOR ? "cursor" : "by: since", need);
    }
}

void config__read_venue(const CfgSection *top, const char *cred_dir, ConfigVenue *v)
{
    CfgSection s = cfg_section(top, "venue", false);
    static const char *const mode_names[3] = {"halted", "shadow", "live"};
    char why[300];

    v->enabled = s.map != NULL;
    cfg_string(&s, "mode_field", false, NULL, &v->mode_field);
    for (int i = 0; i < VENUE_N_ACTIONS; i++)
        config_read_venue_action(&s, cred_dir, (VenueActionId)i, v);
    if (!v->mode_field)
        v->mode_field = strdup("mode");
    else if (v->mode_field[0] && !jpath_valid(v->mode_field, why, sizeof(why)))
        cfg_error(s.ctx, s.map, "'venue' status mode path: %s", why);
    CfgSection modes = cfg_section(&s, "modes", false);
    for (int i = 0; i < 3; i++) {
        cfg_string_list(&modes, mode_names[i], &v->mode_values[i], &v->n_mode_values[i]);
        if (v->n_mode_values[i] == 0) {
            config_list_free(v->mode_values[i], 0);
            v->mode_values[i] = calloc(1, sizeof(char *));
            if (v->mode_values[i] && (v->mode_values[i][0] = strdup(mode_names[i])))
                v->n_mode_values[i] = 1;
        }
    }
    cfg_check_unknown(&modes);
    config_read_sign(&s, cred_dir, &v->sign);
    cfg_duration_ms(&s, "timeout", false, 5000, 10, &v->timeout_ms);
    cfg_duration_ms(&s, "retry_base", false, 250, 10, &v->retry_base_ms);
    cfg_duration_ms(&s, "retry_cap", false, 5000, 10, &v->retry_cap_ms);
    cfg_int(&s, "escalate_after", 1, 1000, 3, &v->escalate_after);
    cfg_duration_ms(&s, "status_interval", false, 2000, 0, &v->status_interval_ms);
    cfg_check_unknown(&s);
    if (v->enabled && (v->actions[VENUE_HALT].kind == VENUE_ACTION_NONE || v->actions[VENUE_STATUS].kind == VENUE_ACTION_NONE))
        cfg_error(s.ctx, s.map, "'venue' needs at least a 'halt' and a 'status' action (a halt counts only when status confirms it)");
}
