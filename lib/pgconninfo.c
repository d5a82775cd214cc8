/*
 * pgconninfo: a connection's conninfo and host names (see pgconn_internal.h).
 *
 * Owns parsing the conninfo into the options passed to libpq as they are plus the hosts (and
 * ports) to look up; telling Unix socket directories, IP literals and names apart; the lookups of
 * host names with uv_getaddrinfo, one at a time, into at most PGCONN_MAX_ADDRS addresses per host;
 * keeping passwords out of parse error messages; telling whether a conninfo holds a password; and
 * the conninfo a child program gets on its command line (refused when it would carry a secret).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "err.h"
#include "pgconn_internal.h"

char *pgconn__join(char **parts, size_t n)
{
    size_t len = 1;
    for (size_t i = 0; i < n; i++)
        len += strlen(parts[i] ? parts[i] : "") + 1;
    char *out = malloc(len);
    if (!out)
        return NULL;
    char *p = out;
    for (size_t i = 0; i < n; i++) {
        const char *s = parts[i] ? parts[i] : "";
        size_t l = strlen(s);
        if (i > 0)
            *p++ = ',';
        memcpy(p, s, l);
        p += l;
    }
    *p = '\0';
    return out;
}

/* Split a comma list into malloc'd strings; returns the count or 0 on OOM. */
static size_t pgconn_split(const char *s, char ***ret)
{
    size_t n = 1;
    for (const char *p = s; *p; p++)
        n += *p == ',';
    char **v = calloc(n, sizeof(*v));
    if (!v)
        return 0;
    const char *start = s;
    for (size_t i = 0; i < n; i++) {
        const char *end = strchr(start, ',');
        size_t l = end ? (size_t)(end - start) : strlen(start);
        v[i] = strndup(start, l);
        if (!v[i]) {
            for (size_t j = 0; j < i; j++)
                free(v[j]);
            free(v);
            return 0;
        }
        start = end ? end + 1 : start + l;
    }
    *ret = v;
    return n;
}

void pgconn__free_strv(char **v, size_t n)
{
    if (!v)
        return;
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Conninfo parse errors quote fragments of the input; drop them when a password may be there. */
static void pgconn_drop_quoted(char *s)
{
    char *w = s;
    bool in = false;
    for (char *r = s; *r; r++) {
        if (*r == '"') {
            if (!in) {
                memcpy(w, "\"...", 4);
                w += 4;
            } else {
                *w++ = '"';
            }
            in = !in;
            continue;
        }
        if (!in)
            *w++ = *r;
    }
    *w = '\0';
}

static void pgconn_on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    PgResolve *rs = (PgResolve *)req;
    PgConn *c = rs->owner;
    size_t idx = rs->host_idx;

    free(rs);
    if (!c) {
        uv_freeaddrinfo(res);
        return;
    }
    c->resolve = NULL;
    PgHost *h = &c->hosts[idx];
    if (status < 0) {
        if (!c->resolve_err[0])
            pgconn__fmt(c->resolve_err, sizeof(c->resolve_err),
                       "could not translate host name \"%s\" to address: %s", h->host,
                       uv_strerror(status));
    }
    for (struct addrinfo *ai = res; ai && h->naddrs < PGCONN_MAX_ADDRS; ai = ai->ai_next) {
        char buf[64] = "";
        if (ai->ai_family == AF_INET)
            uv_ip4_name((const struct sockaddr_in *)(const void *)ai->ai_addr, buf, sizeof(buf));
        else if (ai->ai_family == AF_INET6)
            uv_ip6_name((const struct sockaddr_in6 *)(const void *)ai->ai_addr, buf, sizeof(buf));
        else
            continue;
        bool dup = false;
        for (size_t j = 0; j < h->naddrs; j++)
            dup |= strcmp(h->addrs[j], buf) == 0;
        if (dup || !buf[0])
            continue;
        char *s = strdup(buf);
        if (!s)
            break;
        h->addrs[h->naddrs++] = s;
    }
    uv_freeaddrinfo(res);
    c->resolve_idx = idx + 1;
    pgconn__resolve_next(c);
}

/* Look up the next host name (one at a time), then connect. */
void pgconn__resolve_next(PgConn *c)
{
    while (c->resolve_idx < c->nhosts) {
        size_t i = c->resolve_idx;
        if (c->hosts[i].kind != PGCONN_HOST_NAME) {
            c->resolve_idx++;
            continue;
        }
        PgResolve *rs = calloc(1, sizeof(*rs));
        if (!rs) {
            pgconn__fail(c, -ENOMEM, "out of memory");
            return;
        }
        struct addrinfo hints;
        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        rs->owner = c;
        rs->host_idx = i;
        int r = uv_getaddrinfo(c->loop, &rs->req, pgconn_on_resolved, c->hosts[i].host, NULL,
                               &hints);
        if (r == 0) {
            c->resolve = rs;
            c->state = PGCONN_RESOLVING;
            return;
        }
        free(rs);
        if (!c->resolve_err[0])
            pgconn__fmt(c->resolve_err, sizeof(c->resolve_err),
                       "could not translate host name \"%s\" to address: %s", c->hosts[i].host,
                       uv_strerror(r));
        c->resolve_idx++;
    }
    pgconn__start_pq(c);
}

/* ---- conninfo ------------------------------------------------------------------------------ */

static bool pgconn_may_hold_password(const char *conninfo)
{
    for (const char *p = conninfo; *p; p++)
        if (strncasecmp(p, "password", 8) == 0)
            return true;
    return strchr(conninfo, '@') != NULL;
}

static PgHostKind pgconn_host_kind(const char *h)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (h[0] == '\0' || h[0] == '/' || h[0] == '@')
        return PGCONN_HOST_UNIX;
    if (uv_inet_pton(AF_INET, h, buf) == 0 || uv_inet_pton(AF_INET6, h, buf) == 0)
        return PGCONN_HOST_LITERAL;
    return PGCONN_HOST_NAME;
}

static int pgconn_push_kv(PgConn *c, const char *k, const char *v)
{
    char *kk = strdup(k), *vv = strdup(v);
    if (!kk || !vv) {
        free(kk);
        free(vv);
        return -ENOMEM;
    }
    c->keys[c->nkv] = kk;
    c->vals[c->nkv++] = vv;
    return 0;
}

/* Fill keys/vals and hosts from conninfo. Returns 0, -ENOMEM, or DR_ECONFIG with *msg set. */
int pgconn__parse(PgConn *c, const char *conninfo, char *msg, size_t msgsize)
{
    char *err = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo, &err);
    const char *host = NULL, *hostaddr = NULL, *port = NULL;
    size_t nopts = 0;
    int r = 0;
    char **hv = NULL, **pv = NULL;
    size_t nh = 0, np = 0;

    if (!opts) {
        if (!err)
            return -ENOMEM;
        pgconn__fmt(msg, msgsize, "invalid conninfo: %s", err);
        PQfreemem(err);
        if (pgconn_may_hold_password(conninfo))
            pgconn_drop_quoted(msg);
        return DR_ECONFIG;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++)
        nopts++;
    c->keys = calloc(nopts + 1, sizeof(*c->keys));
    c->vals = calloc(nopts + 1, sizeof(*c->vals));
    if (!c->keys || !c->vals) {
        r = -ENOMEM;
        goto out;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val)
            continue;
        if (strcmp(o->keyword, "host") == 0)
            host = o->val;
        else if (strcmp(o->keyword, "hostaddr") == 0)
            hostaddr = o->val;
        else if (strcmp(o->keyword, "port") == 0)
            port = o->val;
        else if ((r = pgconn_push_kv(c, o->keyword, o->val)) < 0)
            goto out;
    }
    const char *effective = host && *host ? host : getenv("PGHOST");
    if (!(hostaddr && *hostaddr) && effective && *effective) {
        nh = pgconn_split(effective, &hv);
        np = port && *port ? pgconn_split(port, &pv) : 0;
        if (nh == 0 || (port && *port && np == 0)) {
            r = -ENOMEM;
            goto out;
        }
        if (np > 1 && np != nh) {
            pgconn__fmt(msg, msgsize, "invalid conninfo: could not match %zu port numbers to %zu hosts",
                       np, nh);
            r = DR_ECONFIG;
            goto out;
        }
        c->hosts = calloc(nh, sizeof(*c->hosts));
        if (!c->hosts) {
            r = -ENOMEM;
            goto out;
        }
        c->nhosts = nh;
        for (size_t i = 0; i < nh; i++) {
            c->hosts[i].kind = pgconn_host_kind(hv[i]);
            c->rewrite_hosts |= c->hosts[i].kind != PGCONN_HOST_UNIX;
            c->hosts[i].host = hv[i];
            hv[i] = NULL;
            if (np > 1) {
                c->hosts[i].port = pv[i];
                pv[i] = NULL;
            }
        }
        if (np == 1) {
            c->port = pv[0];
            pv[0] = NULL;
        }
    }
    if (!c->rewrite_hosts) {
        /* nothing to look up: hand host/hostaddr/port to libpq as given */
        if ((host && (r = pgconn_push_kv(c, "host", host)) < 0) ||
            (hostaddr && (r = pgconn_push_kv(c, "hostaddr", hostaddr)) < 0) ||
            (port && (r = pgconn_push_kv(c, "port", port)) < 0))
            goto out;
    }
out:
    pgconn__free_strv(hv, nh);
    pgconn__free_strv(pv, np);
    PQconninfoFree(opts);
    return r;
}

/* ---- conninfo for a child program ---------------------------------------------------------- */

static bool pgconn_looks_like_conninfo(const char *s)
{
    return strchr(s, '=') || strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

/* The end of a conninfo being built: r 0 hands buf (an empty string when nothing was appended) to
 * *ret; otherwise buf is freed and r returned. */
static int pgconn_give_conninfo(int r, char *buf, char **ret)
{
    if (r == 0 && !buf && !(buf = strdup("")))
        r = -ENOMEM;
    if (r < 0) {
        free(buf);
        return r;
    }
    *ret = buf;
    return 0;
}

static int pgconn_append_kv(char **buf, size_t *len, size_t *cap, const char *k, const char *v)
{
    size_t need = *len + strlen(k) + 2 * strlen(v) + 5;
    if (need > *cap) {
        size_t nc = *cap ? *cap : 128;
        while (nc < need)
            nc *= 2;
        char *nb = realloc(*buf, nc);
        if (!nb)
            return -ENOMEM;
        *buf = nb;
        *cap = nc;
    }
    char *p = *buf + *len;
    if (*len)
        *p++ = ' ';
    p += sprintf(p, "%s='", k);
    for (const char *q = v; *q; q++) {
        if (*q == '\'' || *q == '\\')
            *p++ = '\\';
        *p++ = *q;
    }
    *p++ = '\'';
    *p = '\0';
    *len = (size_t)(p - *buf);
    return 0;
}

bool pgconn_conninfo_has_password(const char *conninfo)
{
    char *err = NULL;
    bool found = false;
    PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &err);
    if (!opts) {
        PQfreemem(err);
        return false;
    }
    for (PQconninfoOption *o = opts; o->keyword && !found; o++)
        found = o->val && strcmp(o->keyword, "password") == 0;
    PQconninfoFree(opts);
    return found;
}

int pgconn_conninfo_passfile(const char *conninfo, char **ret_path)
{
    char *err = NULL;
    int r = 0;
    *ret_path = NULL;
    PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &err);
    if (!opts) {
        PQfreemem(err);
        return 0;
    }
    for (PQconninfoOption *o = opts; o->keyword; o++)
        if (o->val && o->val[0] && strcmp(o->keyword, "passfile") == 0 && !(*ret_path = strdup(o->val)))
            r = -ENOMEM;
    PQconninfoFree(opts);
    return r;
}

int pgconn_child_conninfo(const char *conninfo, char **ret_conninfo, char *msg, size_t msgsize)
{
    char *err = NULL, *buf = NULL;
    size_t len = 0, cap = 0;
    int r = 0;
    PQconninfoOption *opts = PQconninfoParse(conninfo ? conninfo : "", &err);

    if (!opts) {
        if (!err)
            return -ENOMEM;
        pgconn__fmt(msg, msgsize, "invalid conninfo: %s", err);
        PQfreemem(err);
        if (pgconn_may_hold_password(conninfo))
            pgconn_drop_quoted(msg);
        return DR_ECONFIG;
    }
    for (PQconninfoOption *o = opts; o->keyword && r == 0; o++) {
        if (!o->val)
            continue;
        if (strcmp(o->keyword, "password") == 0) {
            pgconn__fmt(msg, msgsize, "the conninfo holds a password, which a child program could only "
                                      "get on its command line or in its environment: use a passfile");
            r = DR_ECONFIG;
        } else if (strcmp(o->keyword, "sslpassword") == 0) {
            pgconn__fmt(msg, msgsize, "the conninfo holds an sslpassword, which a child program could "
                                      "only get on its command line: use a key without a passphrase");
            r = DR_ECONFIG;
        } else if (strcmp(o->keyword, "dbname") == 0 && pgconn_looks_like_conninfo(o->val)) {
            pgconn__fmt(msg, msgsize, "the conninfo's dbname is a conninfo of its own: write its "
                                      "keywords at the top level");
            r = DR_ECONFIG;
        } else {
            r = pgconn_append_kv(&buf, &len, &cap, o->keyword, o->val);
        }
    }
    PQconninfoFree(opts);
    return pgconn_give_conninfo(r, buf, ret_conninfo);
}

/* The value of keyword in a parsed option array, NULL when unset. */
static const char *pgconn_option(const PQconninfoOption *opts, const char *keyword)
{
    for (const PQconninfoOption *o = opts; o->keyword; o++)
        if (o->val && strcmp(o->keyword, keyword) == 0)
            return o->val;
    return NULL;
}

static bool pgconn_is_address_keyword(const char *keyword)
{
    return strcmp(keyword, "host") == 0 || strcmp(keyword, "hostaddr") == 0 || strcmp(keyword, "port") == 0;
}

int pgconn_conninfo_retarget(const char *conninfo, const char *server, char **ret_conninfo)
{
    char *err = NULL, *buf = NULL;
    size_t len = 0, cap = 0;
    int r = 0;
    PQconninfoOption *base = PQconninfoParse(conninfo ? conninfo : "", &err);
    PQfreemem(err);
    err = NULL;
    PQconninfoOption *to = base ? PQconninfoParse(server ? server : "", &err) : NULL;
    PQfreemem(err);

    if (!base || !to) {
        PQconninfoFree(base);
        return DR_ECONFIG;
    }
    for (PQconninfoOption *o = base; o->keyword && r == 0; o++) {
        const char *v = pgconn_is_address_keyword(o->keyword) ? pgconn_option(to, o->keyword) : o->val;
        if (v)
            r = pgconn_append_kv(&buf, &len, &cap, o->keyword, v);
    }
    PQconninfoFree(base);
    PQconninfoFree(to);
    return pgconn_give_conninfo(r, buf, ret_conninfo);
}

/* Where a parsed conninfo points: its host and hostaddr ("" when unset; a unix-socket directory
 * without its trailing slashes) and its port ("5432" when unset). */
typedef struct PgConnServer {
    char host[256], hostaddr[256], port[32];
} PgConnServer;

static void pgconn_server_of(const PQconninfoOption *opts, PgConnServer *s)
{
    const char *host = pgconn_option(opts, "host"), *addr = pgconn_option(opts, "hostaddr");
    const char *port = pgconn_option(opts, "port");
    snprintf(s->host, sizeof(s->host), "%s", host ? host : "");
    snprintf(s->hostaddr, sizeof(s->hostaddr), "%s", addr ? addr : "");
    snprintf(s->port, sizeof(s->port), "%s", port && port[0] ? port : "5432");
    for (size_t n = strlen(s->host); n > 1 && s->host[0] == '/' && s->host[n - 1] == '/'; n--)
        s->host[n - 1] = '\0';
}

static bool pgconn_same_address(const char *a, const char *b)
{
    return a[0] && b[0] && strcmp(a, b) == 0;
}

int pgconn_conninfo_same_server(const char *a, const char *b)
{
    char *err = NULL;
    PQconninfoOption *oa = PQconninfoParse(a ? a : "", &err);
    PQfreemem(err);
    err = NULL;
    PQconninfoOption *ob = oa ? PQconninfoParse(b ? b : "", &err) : NULL;
    PQfreemem(err);
    if (!oa || !ob) {
        PQconninfoFree(oa);
        return DR_ECONFIG;
    }
    PgConnServer sa, sb;
    pgconn_server_of(oa, &sa);
    pgconn_server_of(ob, &sb);
    PQconninfoFree(oa);
    PQconninfoFree(ob);
    if (strcmp(sa.port, sb.port) != 0)
        return 0;
    if (!sa.host[0] && !sa.hostaddr[0] && !sb.host[0] && !sb.hostaddr[0])
        return 1; /* both the default unix socket */
    if (sa.hostaddr[0] && sb.hostaddr[0])
        return strcmp(sa.hostaddr, sb.hostaddr) == 0;
    return pgconn_same_address(sa.host, sb.host) || pgconn_same_address(sa.hostaddr, sb.host) ||
           pgconn_same_address(sa.host, sb.hostaddr);
}

int pgconn_conninfo_follow(const char *conninfo, const char *from, const char *to, char **ret_conninfo)
{
    *ret_conninfo = NULL;
    if (!conninfo || !from || !to)
        return 0;
    int same = pgconn_conninfo_same_server(conninfo, from);
    if (same <= 0)
        return same;
    int r = pgconn_conninfo_retarget(conninfo, to, ret_conninfo);
    return r < 0 ? r : 1;
}

int pgconn_follow_set(PgConnFollow *f, const char *from, const char *to)
{
    char *a = from && to ? strdup(from) : NULL, *b = from && to ? strdup(to) : NULL;
    if (from && to && (!a || !b)) {
        free(a);
        free(b);
        return -ENOMEM;
    }
    bool same = (!a && !f->from) || (a && f->from && !strcmp(a, f->from) && !strcmp(b, f->to));
    pgconn_follow_clear(f);
    f->from = a;
    f->to = b;
    return same ? 0 : 1;
}

void pgconn_follow_clear(PgConnFollow *f)
{
    free(f->from);
    free(f->to);
    f->from = f->to = NULL;
}

char *pgconn_follow_apply(const PgConnFollow *f, const char *conninfo, bool *ret_followed)
{
    char *to = NULL;
    if (ret_followed)
        *ret_followed = false;
    if (!conninfo)
        return NULL;
    if (pgconn_conninfo_follow(conninfo, f->from, f->to, &to) == 1) {
        if (ret_followed)
            *ret_followed = true;
        return to;
    }
    return strdup(conninfo);
}

bool pgconn_conninfo_is_uri(const char *conninfo)
{
    return conninfo && (!strncmp(conninfo, "postgresql://", 13) || !strncmp(conninfo, "postgres://", 11));
}
