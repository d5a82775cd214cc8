/*
 * sigv4: AWS Signature Version 4 (see sigv4.h).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include "sigv4.h"

static void sigv4_hex(const unsigned char *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

void sigv4_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(data, len, md);
    sigv4_hex(md, sizeof(md), out);
}

static bool sigv4_hmac(const void *key, size_t key_len, const char *msg, unsigned char out[32])
{
    unsigned int n = 0;
    return HMAC(EVP_sha256(), key, (int)key_len, (const unsigned char *)msg, strlen(msg), out, &n) && n == 32;
}

char *sigv4_uri_encode(const char *s, int keep_slash)
{
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1), *o = out;
    if (!out)
        return NULL;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
            c == '.' || c == '~' || (keep_slash && c == '/')) {
            *o++ = (char)c;
        } else {
            o += sprintf(o, "%%%02X", c);
        }
    }
    *o = '\0';
    return out;
}

/* A growing string. */
typedef struct SigV4Str {
    char *p;
    size_t len, cap;
    bool oom;
} SigV4Str;

static void sigv4_put(SigV4Str *s, const char *t, size_t n)
{
    if (s->oom)
        return;
    if (s->len + n + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 512;
        while (cap < s->len + n + 1)
            cap *= 2;
        char *q = realloc(s->p, cap);
        if (!q) {
            s->oom = true;
            return;
        }
        s->p = q;
        s->cap = cap;
    }
    memcpy(s->p + s->len, t, n);
    s->len += n;
    s->p[s->len] = '\0';
}

static void sigv4_puts(SigV4Str *s, const char *t)
{
    sigv4_put(s, t, strlen(t));
}

/* One header as it is signed: the name in lower case, the value trimmed, inner runs of spaces one. */
typedef struct SigV4Hdr {
    char *name;
    char *value;
} SigV4Hdr;

static int sigv4_cmp_hdr(const void *a, const void *b)
{
    return strcmp(((const SigV4Hdr *)a)->name, ((const SigV4Hdr *)b)->name);
}

typedef struct SigV4Q {
    char *k, *v; /* encoded */
} SigV4Q;

static int sigv4_cmp_q(const void *a, const void *b)
{
    const SigV4Q *x = a, *y = b;
    int c = strcmp(x->k, y->k);
    return c ? c : strcmp(x->v, y->v);
}

static char *sigv4_trim(const char *v)
{
    char *out = malloc(strlen(v) + 1), *o = out;
    bool space = false;
    if (!out)
        return NULL;
    while (*v == ' ' || *v == '\t')
        v++;
    for (; *v; v++) {
        if (*v == ' ' || *v == '\t') {
            space = true;
            continue;
        }
        if (space && o != out)
            *o++ = ' ';
        space = false;
        *o++ = *v;
    }
    *o = '\0';
    return out;
}

static bool sigv4_valid_date(const char *d)
{
    if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z')
        return false;
    for (int i = 0; i < 15; i++)
        if (i != 8 && (d[i] < '0' || d[i] > '9'))
            return false;
    return true;
}

int sigv4_sign(const SigV4Request *req, const SigV4Key *key, const char *amz_date, char *auth, size_t auth_len,
               char *canonical, size_t canonical_len)
{
    SigV4Str c = {0}, sh = {0}, sts = {0};
    SigV4Hdr *h = NULL;
    SigV4Q *q = NULL;
    int r = 0;
    char scope[160], date[9], hash[65];

    if (!req || !key || !req->method || !req->path || req->path[0] != '/' || !req->payload_sha256 ||
        !key->access_key || !key->secret_key || !key->region || !key->service || !sigv4_valid_date(amz_date) ||
        (req->n_headers && !req->headers) || (req->n_query && !req->query))
        return -EINVAL;
    memcpy(date, amz_date, 8);
    date[8] = '\0';
    h = calloc(req->n_headers ? req->n_headers : 1, sizeof(*h));
    q = calloc(req->n_query ? req->n_query : 1, sizeof(*q));
    if (!h || !q) {
        r = -ENOMEM;
        goto out;
    }
    /* the canonical request */
    sigv4_puts(&c, req->method);
    sigv4_puts(&c, "\n");
    char *path = sigv4_uri_encode(req->path, 1);
    if (!path) {
        r = -ENOMEM;
        goto out;
    }
    sigv4_puts(&c, path);
    free(path);
    sigv4_puts(&c, "\n");
    for (size_t i = 0; i < req->n_query; i++) {
        q[i].k = sigv4_uri_encode(req->query[i].name ? req->query[i].name : "", 0);
        q[i].v = sigv4_uri_encode(req->query[i].value ? req->query[i].value : "", 0);
        if (!q[i].k || !q[i].v) {
            r = -ENOMEM;
            goto out;
        }
    }
    qsort(q, req->n_query, sizeof(*q), sigv4_cmp_q);
    for (size_t i = 0; i < req->n_query; i++) {
        if (i)
            sigv4_puts(&c, "&");
        sigv4_puts(&c, q[i].k);
        sigv4_puts(&c, "=");
        sigv4_puts(&c, q[i].v);
    }
    sigv4_puts(&c, "\n");
    for (size_t i = 0; i < req->n_headers; i++) {
        const char *nm = req->headers[i].name, *v = req->headers[i].value;
        if (!nm || !nm[0] || !v) {
            r = -EINVAL;
            goto out;
        }
        h[i].name = strdup(nm);
        h[i].value = sigv4_trim(v);
        if (!h[i].name || !h[i].value) {
            r = -ENOMEM;
            goto out;
        }
        for (char *p = h[i].name; *p; p++)
            if (*p >= 'A' && *p <= 'Z')
                *p = (char)(*p - 'A' + 'a');
    }
    qsort(h, req->n_headers, sizeof(*h), sigv4_cmp_hdr);
    for (size_t i = 0; i < req->n_headers; i++) {
        bool same = i > 0 && !strcmp(h[i].name, h[i - 1].name);
        if (same) { /* a repeated header: its values joined by commas */
            c.len--; /* the newline */
            sigv4_puts(&c, ",");
        } else {
            sigv4_puts(&c, h[i].name);
            sigv4_puts(&c, ":");
            if (sh.len)
                sigv4_puts(&sh, ";");
            sigv4_puts(&sh, h[i].name);
        }
        sigv4_puts(&c, h[i].value);
        sigv4_puts(&c, "\n");
    }
    sigv4_puts(&c, "\n");
    sigv4_puts(&c, sh.len ? sh.p : "");
    sigv4_puts(&c, "\n");
    sigv4_puts(&c, req->payload_sha256);
    if (c.oom || sh.oom) {
        r = -ENOMEM;
        goto out;
    }
    /* the string to sign and the signature */
    snprintf(scope, sizeof(scope), "%s/%s/%s/aws4_request", date, key->region, key->service);
    sigv4_sha256_hex(c.p, c.len, hash);
    sigv4_puts(&sts, "AWS4-HMAC-SHA256\n");
    sigv4_puts(&sts, amz_date);
    sigv4_puts(&sts, "\n");
    sigv4_puts(&sts, scope);
    sigv4_puts(&sts, "\n");
    sigv4_puts(&sts, hash);
    if (sts.oom) {
        r = -ENOMEM;
        goto out;
    }
    unsigned char k1[32], k2[32], k3[32], k4[32], sig[32];
    char sighex[65];
    size_t sl = strlen(key->secret_key);
    char *ks = malloc(sl + 5);
    if (!ks) {
        r = -ENOMEM;
        goto out;
    }
    memcpy(ks, "AWS4", 4);
    memcpy(ks + 4, key->secret_key, sl + 1);
    bool ok = sigv4_hmac(ks, sl + 4, date, k1) && sigv4_hmac(k1, 32, key->region, k2) &&
              sigv4_hmac(k2, 32, key->service, k3) && sigv4_hmac(k3, 32, "aws4_request", k4) &&
              sigv4_hmac(k4, 32, sts.p, sig);
    OPENSSL_cleanse(ks, sl + 4);
    free(ks);
    OPENSSL_cleanse(k1, 32);
    OPENSSL_cleanse(k2, 32);
    OPENSSL_cleanse(k3, 32);
    OPENSSL_cleanse(k4, 32);
    if (!ok) {
        r = -EINVAL;
        goto out;
    }
    sigv4_hex(sig, 32, sighex);
    int n = snprintf(auth, auth_len, "AWS4-HMAC-SHA256 Credential=%s/%s, SignedHeaders=%s, Signature=%s",
                     key->access_key, scope, sh.len ? sh.p : "", sighex);
    if (n < 0 || (size_t)n >= auth_len)
        r = -ENOSPC;
    if (r == 0 && canonical) {
        if (c.len >= canonical_len)
            r = -ENOSPC;
        else
            memcpy(canonical, c.p, c.len + 1);
    }
out:
    for (size_t i = 0; h && i < req->n_headers; i++) {
        free(h[i].name);
        free(h[i].value);
    }
    for (size_t i = 0; q && i < req->n_query; i++) {
        free(q[i].k);
        free(q[i].v);
    }
    free(h);
    free(q);
    free(c.p);
    free(sh.p);
    free(sts.p);
    return r;
}
