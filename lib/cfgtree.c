/*
 * cfgtree: libyaml event stream -> CfgNode tree; typed getters with positioned errors (see cfgtree.h).
 */
#include "cfgtree.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include "err.h"

#define CFG_MAX_DEPTH 64

void cfg_ctx_init(CfgCtx *ctx, const char *file)
{
    memset(ctx, 0, sizeof(*ctx));
    ctx->file = strdup(file ? file : "<config>");
}

void cfg_ctx_done(CfgCtx *ctx)
{
    for (size_t i = 0; i < ctx->n_errors; i++)
        free(ctx->errors[i]);
    free(ctx->errors);
    free(ctx->file);
    memset(ctx, 0, sizeof(*ctx));
}

static void cfg_add_error(CfgCtx *ctx, unsigned line, unsigned col, const char *fmt, va_list ap)
{
    char msg[1024];
    char *full = NULL;
    char **grown;

    vsnprintf(msg, sizeof(msg), fmt, ap);
    if ((line == 0 ? asprintf(&full, "%s: %s", ctx->file, msg)
                   : asprintf(&full, "%s:%u:%u: %s", ctx->file, line, col, msg)) < 0)
        return;
    grown = realloc(ctx->errors, (ctx->n_errors + 1) * sizeof(*grown));
    if (!grown) {
        free(full);
        return;
    }
    ctx->errors = grown;
    ctx->errors[ctx->n_errors++] = full;
}

void cfg_error(CfgCtx *ctx, const CfgNode *at, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_add_error(ctx, at ? at->line : 1, at ? at->col : 1, fmt, ap);
    va_end(ap);
}

static void cfg_error_at(CfgCtx *ctx, unsigned line, unsigned col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void cfg_error_at(CfgCtx *ctx, unsigned line, unsigned col, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    cfg_add_error(ctx, line, col, fmt, ap);
    va_end(ap);
}

char *cfg_ctx_join_errors(const CfgCtx *ctx)
{
    size_t len = 0;
    char *out, *p;

    if (ctx->n_errors == 0)
        return NULL;
    for (size_t i = 0; i < ctx->n_errors; i++)
        len += strlen(ctx->errors[i]) + 1;
    out = malloc(len + 1);
    if (!out)
        return NULL;
    p = out;
    for (size_t i = 0; i < ctx->n_errors; i++) {
        size_t l = strlen(ctx->errors[i]);
        memcpy(p, ctx->errors[i], l);
        p += l;
        *p++ = '\n';
    }
    p[-1] = '\0';
    return out;
}

void cfg_node_free(CfgNode *node)
{
    if (!node)
        return;
    free(node->scalar);
    for (size_t i = 0; i < node->n; i++) {
        if (node->kind == CFG_NODE_MAP) {
            free(node->keys[i]);
            cfg_node_free(node->keynodes[i]);
        }
        cfg_node_free(node->items[i]);
    }
    free(node->keys);
    free(node->keynodes);
    free(node->items);
    free(node->used);
    free(node);
}

static CfgNode *cfg_node_new(CfgNodeKind kind, const yaml_mark_t *mark)
{
    CfgNode *n = calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->kind = kind;
    n->line = (unsigned)mark->line + 1;
    n->col = (unsigned)mark->column + 1;
    return n;
}

/* Reads one node starting at the current event; *ev holds that event on entry (consumed here). */
static int cfg_build(CfgCtx *ctx, yaml_parser_t *p, yaml_event_t *ev, int depth, CfgNode **ret);

static int cfg_next(CfgCtx *ctx, yaml_parser_t *p, yaml_event_t *ev)
{
    if (!yaml_parser_parse(p, ev)) {
        cfg_error_at(ctx, (unsigned)p->problem_mark.line + 1, (unsigned)p->problem_mark.column + 1,
                     "YAML syntax error: %s%s%s", p->problem ? p->problem : "unknown",
                     p->context ? " " : "", p->context ? p->context : "");
        return DR_ECONFIG;
    }
    return 0;
}

static int cfg_push(CfgNode *parent, const char *key, CfgNode *keynode, CfgNode *item)
{
    size_t n = parent->n + 1;
    CfgNode **items = realloc(parent->items, n * sizeof(*items));
    if (!items)
        return -ENOMEM;
    parent->items = items;
    if (parent->kind == CFG_NODE_MAP) {
        char **keys = realloc(parent->keys, n * sizeof(*keys));
        if (!keys)
            return -ENOMEM;
        parent->keys = keys;
        CfgNode **kn = realloc(parent->keynodes, n * sizeof(*kn));
        if (!kn)
            return -ENOMEM;
        parent->keynodes = kn;
        bool *used = realloc(parent->used, n * sizeof(*used));
        if (!used)
            return -ENOMEM;
        parent->used = used;
        keys[parent->n] = strdup(key);
        if (!keys[parent->n])
            return -ENOMEM;
        kn[parent->n] = keynode;
        used[parent->n] = false;
    }
    items[parent->n] = item;
    parent->n = n;
    return 0;
}

static int cfg_build(CfgCtx *ctx, yaml_parser_t *p, yaml_event_t *ev, int depth, CfgNode **ret)
{
    CfgNode *node = NULL;
    int r = 0;

    *ret = NULL;
    if (depth > CFG_MAX_DEPTH) {
        cfg_error_at(ctx, (unsigned)ev->start_mark.line + 1, (unsigned)ev->start_mark.column + 1,
                     "nesting deeper than %d levels", CFG_MAX_DEPTH);
        yaml_event_delete(ev);
        return DR_ECONFIG;
    }
    switch (ev->type) {
    case YAML_SCALAR_EVENT:
        node = cfg_node_new(CFG_NODE_SCALAR, &ev->start_mark);
        if (!node) {
            yaml_event_delete(ev);
            return -ENOMEM;
        }
        node->scalar = strndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
        node->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
        if (strlen(node->scalar) != ev->data.scalar.length) {
            cfg_error(ctx, node, "NUL byte inside a value");
            r = DR_ECONFIG;
        }
        yaml_event_delete(ev);
        break;
    case YAML_ALIAS_EVENT:
        cfg_error_at(ctx, (unsigned)ev->start_mark.line + 1, (unsigned)ev->start_mark.column + 1,
                     "YAML aliases are not supported in the configuration");
        yaml_event_delete(ev);
        return DR_ECONFIG;
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT: {
        bool is_map = ev->type == YAML_MAPPING_START_EVENT;
        yaml_event_type_t end = is_map ? YAML_MAPPING_END_EVENT : YAML_SEQUENCE_END_EVENT;
        node = cfg_node_new(is_map ? CFG_NODE_MAP : CFG_NODE_SEQ, &ev->start_mark);
        yaml_event_delete(ev);
        if (!node)
            return -ENOMEM;
        for (;;) {
            yaml_event_t e;
            CfgNode *key = NULL, *val = NULL;
            r = cfg_next(ctx, p, &e);
            if (r < 0)
                break;
            if (e.type == end) {
                yaml_event_delete(&e);
                break;
            }
            if (is_map) {
                if (e.type != YAML_SCALAR_EVENT) {
                    cfg_error_at(ctx, (unsigned)e.start_mark.line + 1, (unsigned)e.start_mark.column + 1,
                                 "mapping keys must be plain strings");
                    yaml_event_delete(&e);
                    r = DR_ECONFIG;
                    break;
                }
                r = cfg_build(ctx, p, &e, depth + 1, &key);
                if (r < 0)
                    break;
                for (size_t i = 0; i < node->n; i++) {
                    if (strcmp(node->keys[i], key->scalar) == 0) {
                        cfg_error(ctx, key, "duplicate key '%s' (first at line %u)", key->scalar,
                                  node->keynodes[i]->line);
                        r = DR_ECONFIG;
                    }
                }
                r = r < 0 ? r : cfg_next(ctx, p, &e);
                if (r < 0) {
                    cfg_node_free(key);
                    break;
                }
            }
            r = cfg_build(ctx, p, &e, depth + 1, &val);
            if (r < 0) {
                cfg_node_free(key);
                cfg_node_free(val);
                break;
            }
            r = cfg_push(node, key ? key->scalar : NULL, key, val);
            if (r < 0) {
                cfg_node_free(key);
                cfg_node_free(val);
                break;
            }
        }
        break;
    }
    default:
        cfg_error_at(ctx, (unsigned)ev->start_mark.line + 1, (unsigned)ev->start_mark.column + 1,
                     "unexpected YAML structure");
        yaml_event_delete(ev);
        return DR_ECONFIG;
    }
    if (r < 0) {
        cfg_node_free(node);
        return r;
    }
    *ret = node;
    return 0;
}

static int cfg_parse(CfgCtx *ctx, yaml_parser_t *p, CfgNode **ret_root)
{
    yaml_event_t ev;
    CfgNode *root = NULL;
    int r;

    *ret_root = NULL;
    /* STREAM-START, then DOCUMENT-START or STREAM-END for an empty file. */
    r = cfg_next(ctx, p, &ev);
    if (r < 0)
        return r;
    yaml_event_delete(&ev);
    r = cfg_next(ctx, p, &ev);
    if (r < 0)
        return r;
    if (ev.type == YAML_STREAM_END_EVENT) {
        yaml_event_delete(&ev);
        cfg_error_at(ctx, 1, 1, "the configuration is empty");
        return DR_ECONFIG;
    }
    yaml_event_delete(&ev);
    r = cfg_next(ctx, p, &ev);
    if (r < 0)
        return r;
    r = cfg_build(ctx, p, &ev, 0, &root);
    if (r < 0)
        return r;
    r = cfg_next(ctx, p, &ev); /* DOCUMENT-END */
    if (r < 0) {
        cfg_node_free(root);
        return r;
    }
    yaml_event_delete(&ev);
    r = cfg_next(ctx, p, &ev);
    if (r < 0) {
        cfg_node_free(root);
        return r;
    }
    if (ev.type != YAML_STREAM_END_EVENT) {
        cfg_error_at(ctx, (unsigned)ev.start_mark.line + 1, (unsigned)ev.start_mark.column + 1,
                     "only one YAML document is allowed");
        yaml_event_delete(&ev);
        cfg_node_free(root);
        return DR_ECONFIG;
    }
    yaml_event_delete(&ev);
    if (root->kind != CFG_NODE_MAP) {
        cfg_error(ctx, root, "the configuration must be a mapping of sections");
        cfg_node_free(root);
        return DR_ECONFIG;
    }
    *ret_root = root;
    return 0;
}

int cfg_parse_string(CfgCtx *ctx, const char *text, size_t len, CfgNode **ret_root)
{
    yaml_parser_t p;
    int r;

    if (!yaml_parser_initialize(&p))
        return -ENOMEM;
    yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
    r = cfg_parse(ctx, &p, ret_root);
    yaml_parser_delete(&p);
    return r;
}

int cfg_parse_file(CfgCtx *ctx, const char *path, CfgNode **ret_root)
{
    yaml_parser_t p;
    FILE *f;
    int r;

    f = fopen(path, "re");
    if (!f) {
        r = -errno;
        cfg_error_at(ctx, 0, 0, "cannot open: %s", strerror(-r));
        return r;
    }
    if (!yaml_parser_initialize(&p)) {
        fclose(f);
        return -ENOMEM;
    }
    yaml_parser_set_input_file(&p, f);
    r = cfg_parse(ctx, &p, ret_root);
    yaml_parser_delete(&p);
    fclose(f);
    return r;
}

const CfgNode *cfg_get(const CfgNode *map, const char *key)
{
    if (!map || map->kind != CFG_NODE_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++) {
        if (strcmp(map->keys[i], key) == 0) {
            map->used[i] = true;
            return map->items[i];
        }
    }
    return NULL;
}

static const char *cfg_kind_name(const CfgNode *n)
{
    return n->kind == CFG_NODE_MAP ? "a mapping" : n->kind == CFG_NODE_SEQ ? "a list" : "a value";
}

static bool cfg_is_null(const CfgNode *n)
{
    return n->kind == CFG_NODE_SCALAR && n->plain &&
           (n->scalar[0] == '\0' || strcmp(n->scalar, "~") == 0 || strcmp(n->scalar, "null") == 0);
}

static void cfg_fullkey(const CfgSection *s, const char *key, char *out, size_t n)
{
    int w = s->path[0] ? snprintf(out, n, "%s.%s", s->path, key) : snprintf(out, n, "%s", key);
    if (w < 0 || (size_t)w >= n)
        out[n - 1] = '\0'; /* a truncated name in a message is acceptable */
}

/* The scalar under key, NULL if absent/null; records missing/kind errors. *ok false on error. */
static const CfgNode *cfg_scalar(const CfgSection *s, const char *key, bool required, bool *ok)
{
    const CfgNode *n = cfg_get(s->map, key);
    char fk[256];

    *ok = true;
    cfg_fullkey(s, key, fk, sizeof(fk));
    if (!n || cfg_is_null(n)) {
        if (required) {
            cfg_error(s->ctx, n ? n : s->where, "missing required key '%s'", fk);
            *ok = false;
        }
        return NULL;
    }
    if (n->kind != CFG_NODE_SCALAR) {
        cfg_error(s->ctx, n, "'%s' must be a single value, not %s", fk, cfg_kind_name(n));
        *ok = false;
        return NULL;
    }
    return n;
}

CfgSection cfg_section(const CfgSection *parent, const char *key, bool required)
{
    CfgSection s = {.ctx = parent->ctx, .map = NULL, .where = parent->map ? parent->map : parent->where};
    const CfgNode *n = cfg_get(parent->map, key);
    const char *path = s.path;

    cfg_fullkey(parent, key, s.path, sizeof(s.path));
    if (!n || cfg_is_null(n)) {
        if (required)
            cfg_error(parent->ctx, n ? n : s.where, "missing required section '%s'", path);
        return s;
    }
    if (n->kind != CFG_NODE_MAP) {
        cfg_error(parent->ctx, n, "'%s' must be a mapping of keys, not %s", path, cfg_kind_name(n));
        return s;
    }
    s.map = n;
    s.where = n;
    return s;
}

bool cfg_string(const CfgSection *s, const char *key, bool required, const char *def, char **ret)
{
    bool ok;
    const CfgNode *n = cfg_scalar(s, key, required, &ok);

    if (!ok)
        return false;
    free(*ret);
    *ret = NULL;
    if (n)
        *ret = strdup(n->scalar);
    else if (def)
        *ret = strdup(def);
    return true;
}

bool cfg_bool(const CfgSection *s, const char *key, bool def, bool *ret)
{
    bool ok;
    const CfgNode *n = cfg_scalar(s, key, false, &ok);
    char fk[256];

    if (!ok)
        return false;
    if (!n) {
        *ret = def;
        return true;
    }
    static const char *const yes[] = {"true", "yes", "on", NULL};
    static const char *const no[] = {"false", "no", "off", NULL};
    for (int i = 0; yes[i]; i++) {
        if (strcasecmp(n->scalar, yes[i]) == 0) {
            *ret = true;
            return true;
        }
        if (strcasecmp(n->scalar, no[i]) == 0) {
            *ret = false;
            return true;
        }
    }
    cfg_fullkey(s, key, fk, sizeof(fk));
    cfg_error(s->ctx, n, "'%s' must be true or false, not '%s'", fk, n->scalar);
    return false;
}

bool cfg_int(const CfgSection *s, const char *key, int64_t min, int64_t max, int64_t def, int64_t *ret)
{
    bool ok;
    const CfgNode *n = cfg_scalar(s, key, false, &ok);
    char fk[256], *end;
    long long v;

    if (!ok)
        return false;
    if (!n) {
        *ret = def;
        return true;
    }
    cfg_fullkey(s, key, fk, sizeof(fk));
    errno = 0;
    v = strtoll(n->scalar, &end, 10);
    if (errno || end == n->scalar || *end) {
        cfg_error(s->ctx, n, "'%s' must be a whole number, not '%s'", fk, n->scalar);
        return false;
    }
    if (v < min || v > max) {
        cfg_error(s->ctx, n, "'%s' is %lld, outside %" PRId64 "..%" PRId64, fk, v, min, max);
        return false;
    }
    *ret = v;
    return true;
}

int cfg_parse_duration_ms(const char *text, uint64_t *ret_ms)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"ms", 1}, {"s", 1000}, {"m", 60000}, {"min", 60000}, {"h", 3600000},
                 {"d", 86400000}, {"w", 604800000}};
    const char *p = text;
    uint64_t total = 0;

    if (strcmp(text, "0") == 0) {
        *ret_ms = 0;
        return 0;
    }
    if (!*p)
        return -EINVAL;
    while (*p) {
        char *end;
        char unit[4] = "";
        size_t ul = 0;
        uint64_t mult = 0;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        errno = 0;
        unsigned long long v = strtoull(p, &end, 10);
        if (errno || end == p)
            return -EINVAL;
        p = end;
        while (*p && ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))) {
            if (ul + 1 >= sizeof(unit))
                return -EINVAL;
            unit[ul++] = *p++;
        }
        unit[ul] = '\0';
        for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
            if (strcmp(unit, units[i].unit) == 0)
                mult = units[i].ms;
        if (!mult)
            return -EINVAL;
        if (v > UINT64_MAX / mult || total + v * mult < total)
            return -ERANGE;
        total += v * mult;
    }
    *ret_ms = total;
    return 0;
}

void cfg_format_duration(uint64_t ms, char *out, size_t n)
{
    static const struct {
        const char *unit;
        uint64_t ms;
    } units[] = {{"d", 86400000}, {"h", 3600000}, {"m", 60000}, {"s", 1000}, {"ms", 1}};
    size_t o = 0;

    if (n == 0)
        return;
    out[0] = '\0';
    if (ms == 0) {
        snprintf(out, n, "0s");
        return;
    }
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]) && o < n; i++) {
        if (ms >= units[i].ms) {
            int w = snprintf(out + o, n - o, "%" PRIu64 "%s", ms / units[i].ms, units[i].unit);
            if (w < 0)
                return;
            o += (size_t)w;
            ms %= units[i].ms;
        }
    }
}

int cfg_parse_size(const char *text, uint64_t *ret_bytes)
{
    static const struct {
        const char *unit;
        uint64_t mult;
    } units[] = {{"", 1},
                 {"B", 1},
                 {"K", 1024},
                 {"KB", 1000},
                 {"KiB", 1024},
                 {"M", 1024 * 1024},
                 {"MB", 1000 * 1000},
                 {"MiB", 1024 * 1024},
                 {"G", 1024ULL * 1024 * 1024},
                 {"GB", 1000ULL * 1000 * 1000},
                 {"GiB", 1024ULL * 1024 * 1024},
                 {"T", 1024ULL * 1024 * 1024 * 1024},
                 {"TB", 1000ULL * 1000 * 1000 * 1000},
                 {"TiB", 1024ULL * 1024 * 1024 * 1024}};
    char *end;
    unsigned long long v;

    if (*text < '0' || *text > '9')
        return -EINVAL;
    errno = 0;
    v = strtoull(text, &end, 10);
    if (errno)
        return -ERANGE;
    while (*end == ' ')
        end++;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
        if (strcmp(end, units[i].unit) == 0) {
            if (v > UINT64_MAX / units[i].mult)
                return -ERANGE;
            *ret_bytes = v * units[i].mult;
            return 0;
        }
    }
    return -EINVAL;
}

bool cfg_duration_ms(const CfgSection *s, const char *key, bool required, uint64_t def, uint64_t min,
                     uint64_t *ret)
{
    bool ok;
    const CfgNode *n = cfg_scalar(s, key, required, &ok);
    char fk[256], a[32];
    uint64_t v;

    if (!ok)
        return false;
    if (!n) {
        *ret = def;
        return true;
    }
    cfg_fullkey(s, key, fk, sizeof(fk));
    if (cfg_parse_duration_ms(n->scalar, &v) < 0) {
        cfg_error(s->ctx, n,
                  "'%s' must be a duration with a unit such as 250ms, 10s, 5m, 26h or 7d, not '%s'", fk,
                  n->scalar);
        return false;
    }
    if (v < min) {
        cfg_format_duration(min, a, sizeof(a));
        cfg_error(s->ctx, n, "'%s' is %s, below the minimum of %s", fk, n->scalar, a);
        return false;
    }
    *ret = v;
    return true;
}

bool cfg_size(const CfgSection *s, const char *key, uint64_t def, uint64_t min, uint64_t max, uint64_t *ret)
{
    bool ok;
    const CfgNode *n = cfg_scalar(s, key, false, &ok);
    char fk[256];
    uint64_t v;

    if (!ok)
        return false;
    if (!n) {
        *ret = def;
        return true;
    }
    cfg_fullkey(s, key, fk, sizeof(fk));
    if (cfg_parse_size(n->scalar, &v) < 0) {
        cfg_error(s->ctx, n, "'%s' must be a size such as 4096, 64KiB, 10MiB or 2GB, not '%s'", fk,
                  n->scalar);
        return false;
    }
    if (v < min || v > max) {
        cfg_error(s->ctx, n, "'%s' is %s, outside %" PRIu64 "..%" PRIu64 " bytes", fk, n->scalar, min,
                  max);
        return false;
    }
    *ret = v;
    return true;
}

bool cfg_mode(const CfgSection *s, const char *key, mode_t def, mode_t *ret)
{
    bool ok;
    const CfgNode *n = cfg_scalar(s, key, false, &ok);
    char fk[256], *end;
    unsigned long v;

    if (!ok)
        return false;
    if (!n) {
        *ret = def;
        return true;
    }
    cfg_fullkey(s, key, fk, sizeof(fk));
    errno = 0;
    v = strtoul(n->scalar, &end, 8);
    if (errno || end == n->scalar || *end || v > 07777) {
        cfg_error(s->ctx, n, "'%s' must be an octal file mode such as \"0660\", not '%s'", fk, n->scalar);
        return false;
    }
    *ret = (mode_t)v;
    return true;
}

bool cfg_enum(const CfgSection *s, const char *key, const char *const *names, int def, int *ret)
{
    bool ok;
    const CfgNode *n = cfg_scalar(s, key, false, &ok);
    char fk[256], list[512] = "";
    size_t o = 0;

    if (!ok)
        return false;
    if (!n) {
        *ret = def;
        return true;
    }
    for (int i = 0; names[i]; i++) {
        if (strcmp(n->scalar, names[i]) == 0) {
            *ret = i;
            return true;
        }
        int w = snprintf(list + o, sizeof(list) - o, "%s%s", i ? ", " : "", names[i]);
        if (w > 0 && (size_t)w < sizeof(list) - o)
            o += (size_t)w;
    }
    cfg_fullkey(s, key, fk, sizeof(fk));
    cfg_error(s->ctx, n, "'%s' must be one of %s, not '%s'", fk, list, n->scalar);
    return false;
}

bool cfg_string_list(const CfgSection *s, const char *key, char ***ret, size_t *ret_n)
{
    const CfgNode *n = cfg_get(s->map, key);
    char fk[256];
    char **out;

    *ret = NULL;
    *ret_n = 0;
    if (!n || cfg_is_null(n))
        return true;
    cfg_fullkey(s, key, fk, sizeof(fk));
    if (n->kind == CFG_NODE_SCALAR) {
        out = calloc(2, sizeof(*out)); /* a NULL after the last: the list is usable as an argv */
        if (!out)
            return false;
        out[0] = strdup(n->scalar);
        *ret = out;
        *ret_n = 1;
        return true;
    }
    if (n->kind != CFG_NODE_SEQ) {
        cfg_error(s->ctx, n, "'%s' must be a list of values, not %s", fk, cfg_kind_name(n));
        return false;
    }
    if (n->n == 0)
        return true; /* an empty list is no values: NULL and 0, nothing for the caller to free */
    out = calloc(n->n + 1, sizeof(*out));
    if (!out)
        return false;
    for (size_t i = 0; i < n->n; i++) {
        if (n->items[i]->kind != CFG_NODE_SCALAR) {
            cfg_error(s->ctx, n->items[i], "'%s' item %zu must be a single value, not %s", fk, i + 1,
                      cfg_kind_name(n->items[i]));
            for (size_t j = 0; j < i; j++)
                free(out[j]);
            free(out);
            return false;
        }
        out[i] = strdup(n->items[i]->scalar);
    }
    *ret = out;
    *ret_n = n->n;
    return true;
}

void cfg_check_unknown(const CfgSection *s)
{
    char fk[256];

    if (!s->map)
        return;
    for (size_t i = 0; i < s->map->n; i++) {
        if (!s->map->used[i]) {
            cfg_fullkey(s, s->map->keys[i], fk, sizeof(fk));
            cfg_error(s->ctx, s->map->keynodes[i], "unknown key '%s'", fk);
        }
    }
}
