/*
 * s3req: S3 request building and answer reading (see s3req.h). The URL's path and query are
 * encoded exactly as lib/sigv4 encodes them for the canonical request, and the Host header is
 * given explicitly, so what is signed is what curl sends.
 */
#include "s3req.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define S3REQ_AUTH_MAX 1024

int s3req_check_endpoint(const char *endpoint, char *why, size_t whylen)
{
    const char *host;
    if (!endpoint || (strncmp(endpoint, "http://", 7) != 0 && strncmp(endpoint, "https://", 8) != 0)) {
        snprintf(why, whylen, "must start with http:// or https://");
        return -EINVAL;
    }
    host = strstr(endpoint, "://") + 3;
    if (!*host || strpbrk(host, "/?#@ \t\r\n")) {
        snprintf(why, whylen, "must be scheme://host[:port] only (no path, query or user)");
        return -EINVAL;
    }
    return 0;
}

void s3req_amz_date(int64_t wall_ms, char out[17])
{
    time_t t = (time_t)(wall_ms / 1000);
    struct tm tm;
    if (!gmtime_r(&t, &tm) || strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm) != 16)
        snprintf(out, 17, "19700101T000000Z");
}

static int s3req_cmp_pair(const void *a, const void *b)
{
    const SigV4Pair *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->value, y->value);
}

/* "?a=b&c=d" of the pairs, sorted and encoded as the canonical query ("" for none). */
static char *s3req_query(const SigV4Pair *query, size_t n)
{
    SigV4Pair *sorted;
    char *out, *p;
    size_t len = 1;
    if (n == 0)
        return strdup("");
    if (!(sorted = malloc(n * sizeof(*sorted))))
        return NULL;
    memcpy(sorted, query, n * sizeof(*sorted));
    qsort(sorted, n, sizeof(*sorted), s3req_cmp_pair);
    char **enc = calloc(2 * n, sizeof(*enc));
    if (!enc) {
        free(sorted);
        return NULL;
    }
    bool ok = true;
    for (size_t i = 0; i < n && ok; i++) {
        enc[2 * i] = sigv4_uri_encode(sorted[i].name, 0);
        enc[2 * i + 1] = sigv4_uri_encode(sorted[i].value, 0);
        ok = enc[2 * i] && enc[2 * i + 1];
        if (ok)
            len += strlen(enc[2 * i]) + strlen(enc[2 * i + 1]) + 2;
    }
    out = ok ? malloc(len + 1) : NULL;
    if (out) {
        p = out;
        for (size_t i = 0; i < n; i++)
            p += sprintf(p, "%c%s=%s", i ? '&' : '?', enc[2 * i], enc[2 * i + 1]);
    }
    for (size_t i = 0; i < 2 * n; i++)
        free(enc[i]);
    free(enc);
    free(sorted);
    return out;
}

static int s3req_header(S3Built *b, const char *name, const char *value)
{
    if (b->n_headers >= S3REQ_MAX_HEADERS)
        return -ENOSPC;
    size_t n = strlen(name) + strlen(value) + 3;
    char *h = malloc(n);
    if (!h)
        return -ENOMEM;
    snprintf(h, n, "%s: %s", name, value);
    b->headers[b->n_headers++] = h;
    return 0;
}

int s3req_build(const S3Target *t, const char *method, const char *key, const SigV4Pair *query, size_t n_query,
                const char *payload_sha256, const SigV4Pair *extra, size_t n_extra, const char *amz_date,
                S3Built *ret)
{
    char why[128], auth[S3REQ_AUTH_MAX];
    S3Built b = {0};
    char *path = NULL, *enc_path = NULL, *qs = NULL, *host = NULL;
    int r = -ENOMEM;

    if (!t || !method || !key || !payload_sha256 || !amz_date || !t->bucket || !t->bucket[0] || !t->region ||
        !t->access_key || !t->secret_key || key[0] == '/' || s3req_check_endpoint(t->endpoint, why, sizeof(why)) < 0 ||
        (n_query && !query) || (n_extra && !extra))
        return -EINVAL;
    if (n_extra > 4)
        return -ENOSPC;
    const char *scheme_end = strstr(t->endpoint, "://") + 3;
    size_t scheme_len = (size_t)(scheme_end - t->endpoint);
    /* the path as signed (not encoded) and the host */
    if (t->virtual_host) {
        if (asprintf(&host, "%s.%s", t->bucket, scheme_end) < 0)
            host = NULL;
        if (asprintf(&path, "/%s", key) < 0)
            path = NULL;
    } else {
        host = strdup(scheme_end);
        if (asprintf(&path, "/%s%s%s", t->bucket, key[0] ? "/" : "", key) < 0)
            path = NULL;
    }
    if (!host || !path || !(enc_path = sigv4_uri_encode(path, 1)) || !(qs = s3req_query(query, n_query)))
        goto out;
    if (asprintf(&b.url, "%.*s%s%s%s", (int)scheme_len, t->endpoint, host, enc_path, qs) < 0) {
        b.url = NULL;
        goto out;
    }
    SigV4Pair hdrs[3 + 4];
    size_t nh = 0;
    hdrs[nh++] = (SigV4Pair){"host", host};
    hdrs[nh++] = (SigV4Pair){"x-amz-content-sha256", payload_sha256};
    hdrs[nh++] = (SigV4Pair){"x-amz-date", amz_date};
    for (size_t i = 0; i < n_extra; i++)
        hdrs[nh++] = extra[i];
    SigV4Request sr = {method, path, query, n_query, hdrs, nh, payload_sha256};
    SigV4Key sk = {t->access_key, t->secret_key, t->region, "s3"};
    r = sigv4_sign(&sr, &sk, amz_date, auth, sizeof(auth), NULL, 0);
    if (r < 0)
        goto out;
    r = 0;
    for (size_t i = 0; i < nh && r == 0; i++)
        r = s3req_header(&b, i == 0 ? "Host" : hdrs[i].name, hdrs[i].value);
    if (r == 0)
        r = s3req_header(&b, "Authorization", auth);
out:
    explicit_bzero(auth, sizeof(auth));
    free(path);
    free(enc_path);
    free(qs);
    free(host);
    if (r < 0) {
        s3req_free(&b);
        return r;
    }
    *ret = b;
    return 0;
}

void s3req_free(S3Built *b)
{
    if (!b)
        return;
    free(b->url);
    for (size_t i = 0; i < b->n_headers; i++)
        free(b->headers[i]);
    memset(b, 0, sizeof(*b));
}

/* out (cap bytes) += s, XML-escaped. Returns the new length, or cap when it did not fit. */
static size_t s3req_xml_escape(char *out, size_t len, size_t cap, const char *s)
{
    for (; *s; s++) {
        const char *e = NULL;
        switch (*s) {
        case '"': e = "&quot;"; break;
        case '&': e = "&amp;"; break;
        case '<': e = "&lt;"; break;
        case '>': e = "&gt;"; break;
        case '\'': e = "&apos;"; break;
        default: break;
        }
        size_t el = e ? strlen(e) : 1;
        if (len + el >= cap)
            return cap;
        if (e)
            memcpy(out + len, e, el);
        else
            out[len] = *s;
        len += el;
    }
    out[len] = '\0';
    return len;
}

char *s3req_complete_body(const char *const *etags, size_t n)
{
    static const char head[] = "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">";
    static const char tail[] = "</CompleteMultipartUpload>";
    size_t cap = sizeof(head) + sizeof(tail) + 1, len = 0;
    char *out;
    if (n == 0 || !etags)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (!etags[i])
            return NULL;
        cap += 64 + 6 * strlen(etags[i]);
    }
    if (!(out = malloc(cap)))
        return NULL;
    len = (size_t)snprintf(out, cap, "%s", head);
    for (size_t i = 0; i < n; i++) {
        len += (size_t)snprintf(out + len, cap - len, "<Part><PartNumber>%zu</PartNumber><ETag>", i + 1);
        len = s3req_xml_escape(out, len, cap, etags[i]);
        len += (size_t)snprintf(out + len, cap - len, "</ETag></Part>");
    }
    snprintf(out + len, cap - len, "%s", tail);
    return out;
}

static const char *s3req_memmem(const char *h, size_t hl, const char *n)
{
    size_t nl = strlen(n);
    if (nl > hl)
        return NULL;
    for (size_t i = 0; i + nl <= hl; i++)
        if (memcmp(h + i, n, nl) == 0)
            return h + i;
    return NULL;
}

int s3req_xml_text(const char *body, size_t len, const char *tag, char *out, size_t n)
{
    static const struct { const char *ent; char c; } ents[] = {
        {"&quot;", '"'}, {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&apos;", '\''}};
    char open[80], close[80];
    const char *s, *e;
    size_t o = 0;

    if (!body || !tag || n == 0 || strlen(tag) > 70)
        return -ENOENT;
    snprintf(open, sizeof(open), "<%s>", tag);
    snprintf(close, sizeof(close), "</%s>", tag);
    if (!(s = s3req_memmem(body, len, open)))
        return -ENOENT;
    s += strlen(open);
    if (!(e = s3req_memmem(s, len - (size_t)(s - body), close)))
        return -ENOENT;
    while (s < e) {
        char c = *s++;
        if (c == '&') {
            size_t i;
            for (i = 0; i < sizeof(ents) / sizeof(ents[0]); i++) {
                size_t el = strlen(ents[i].ent);
                if ((size_t)(e - (s - 1)) >= el && memcmp(s - 1, ents[i].ent, el) == 0) {
                    c = ents[i].c;
                    s += el - 1;
                    break;
                }
            }
        }
        if (o + 1 >= n)
            return -ENOSPC;
        out[o++] = c;
    }
    out[o] = '\0';
    return 0;
}

bool s3req_is_error(const char *body, size_t len)
{
    const char *p = body;
    if (!body)
        return false;
    if (len >= 5 && memcmp(p, "<?xml", 5) == 0) {
        const char *q = memchr(p, '>', len);
        if (!q)
            return false;
        len -= (size_t)(q + 1 - p);
        p = q + 1;
    }
    while (len && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')) {
        p++;
        len--;
    }
    return len >= 7 && memcmp(p, "<Error>", 7) == 0;
}

bool s3req_retryable(long status, const char *code)
{
    static const char *const codes[] = {"RequestTimeout", "SlowDown", "InternalError", "OperationAborted",
                                        "ServiceUnavailable", NULL};
    if (code && code[0])
        for (size_t i = 0; codes[i]; i++)
            if (strcmp(code, codes[i]) == 0)
                return true;
    return status == 0 || status == 408 || status == 429 || status >= 500;
}
