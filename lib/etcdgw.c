/*
 * etcdgw: etcd 3.4's v3 JSON gateway, requests and answers (see etcdgw.h).
 */
#include "etcdgw.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "err.h"

void etcdgw_kv_done(EtcdKv *kv)
{
    if (kv) {
        free(kv->value);
        memset(kv, 0, sizeof(*kv));
    }
}

/* ---- base64 (OpenSSL's block coder: standard alphabet, with padding) ---- */

static char *etcdgw_b64(const char *s)
{
    size_t n = strlen(s);
    char *out = malloc(4 * ((n + 2) / 3) + 1);
    if (out)
        EVP_EncodeBlock((unsigned char *)out, (const unsigned char *)s, (int)n);
    return out;
}

static int etcdgw_unb64(const char *b64, char **ret, size_t *ret_len)
{
    size_t n = strlen(b64);
    if (n % 4 != 0)
        return DR_EPROTO;
    char *out = malloc(n / 4 * 3 + 1);
    if (!out)
        return -ENOMEM;
    int m = n ? EVP_DecodeBlock((unsigned char *)out, (const unsigned char *)b64, (int)n) : 0;
    if (m < 0) {
        free(out);
        return DR_EPROTO;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes */
    for (size_t i = n; i > 0 && b64[i - 1] == '=' && m > 0; i--)
        m--;
    out[m] = '\0';
    *ret = out;
    *ret_len = (size_t)m;
    return 0;
}

/* ---- requests ---- */

static char *etcdgw_dump(json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    return s;
}

static char *etcdgw_num(int64_t v, char buf[24])
{
    snprintf(buf, 24, "%" PRId64, v);
    return buf;
}

char *etcdgw_grant_body(int64_t ttl_s)
{
    char n[24];
    return etcdgw_dump(json_pack("{s:s}", "TTL", etcdgw_num(ttl_s, n)));
}

char *etcdgw_lease_id_body(int64_t lease_id)
{
    char n[24];
    return etcdgw_dump(json_pack("{s:s}", "ID", etcdgw_num(lease_id, n)));
}

char *etcdgw_range_body(const char *key)
{
    char *k = etcdgw_b64(key);
    char *s = k ? etcdgw_dump(json_pack("{s:s}", "key", k)) : NULL;
    free(k);
    return s;
}

char *etcdgw_delete_body(const char *key)
{
    return etcdgw_range_body(key); /* the same shape: {"key": ...} */
}

static json_t *etcdgw_put_obj(const char *k64, const char *v64, int64_t lease_id)
{
    char n[24];
    json_t *p = json_pack("{s:s,s:s}", "key", k64, "value", v64);
    if (p && lease_id)
        json_object_set_new(p, "lease", json_string(etcdgw_num(lease_id, n)));
    return p;
}

char *etcdgw_put_body(const char *key, const char *value, int64_t lease_id)
{
    char *k = etcdgw_b64(key), *v = etcdgw_b64(value);
    char *s = k && v ? etcdgw_dump(etcdgw_put_obj(k, v, lease_id)) : NULL;
    free(k);
    free(v);
    return s;
}

char *etcdgw_create_body(const char *key, const char *value, int64_t lease_id)
{
    char *k = etcdgw_b64(key), *v = etcdgw_b64(value);
    char *s = NULL;
    if (k && v)
        s = etcdgw_dump(json_pack("{s:[{s:s,s:s,s:s,s:s}],s:[{s:o}],s:[{s:{s:s}}]}", "compare", "key", k, "result",
                                  "EQUAL", "target", "CREATE", "create_revision", "0", "success", "request_put",
                                  etcdgw_put_obj(k, v, lease_id), "failure", "request_range", "key", k));
    free(k);
    free(v);
    return s;
}

char *etcdgw_put_if_body(const char *key, const char *value, const char *guard_key, int64_t guard_rev)
{
    char *k = etcdgw_b64(key), *v = etcdgw_b64(value), *g = etcdgw_b64(guard_key);
    char n[24], *s = NULL;
    if (k && v && g)
        s = etcdgw_dump(json_pack("{s:[{s:s,s:s,s:s,s:s}],s:[{s:o}]}", "compare", "key", g, "result", "EQUAL",
                                  "target", "CREATE", "create_revision", etcdgw_num(guard_rev, n), "success",
                                  "request_put", etcdgw_put_obj(k, v, 0)));
    free(k);
    free(v);
    free(g);
    return s;
}

/* ---- answers ---- */

int etcdgw_number(const void *json_value, int64_t *ret)
{
    const json_t *v = json_value;
    *ret = 0;
    if (!v)
        return 0;
    if (json_is_integer(v)) {
        *ret = (int64_t)json_integer_value(v);
        return 0;
    }
    if (!json_is_string(v))
        return DR_EPROTO;
    const char *s = json_string_value(v);
    char *end = NULL;
    if (!*s || strspn(s, "-0123456789") != strlen(s))
        return DR_EPROTO;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    if (errno || !end || *end)
        return DR_EPROTO;
    *ret = (int64_t)n;
    return 0;
}

/* Parse body; the gateway's error object becomes DR_EHTTP with its message. */
static int etcdgw_load(const char *body, size_t len, json_t **ret, char *err, size_t errlen)
{
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);
    *ret = NULL;
    if (!json_is_object(j)) {
        json_decref(j);
        snprintf(err, errlen, "the etcd gateway's answer is not a JSON object");
        return DR_EPROTO;
    }
    const json_t *e = json_object_get(j, "error");
    if (e) {
        const char *m = json_string_value(json_object_get(j, "message"));
        snprintf(err, errlen, "etcd: %.200s", m ? m : json_is_string(e) ? json_string_value(e) : "error");
        json_decref(j);
        return DR_EHTTP;
    }
    *ret = j;
    return 0;
}

static int etcdgw_field(const json_t *obj, const char *name, int64_t *ret, char *err, size_t errlen)
{
    if (etcdgw_number(json_object_get(obj, name), ret) < 0) {
        snprintf(err, errlen, "the etcd gateway's '%s' is not a number", name);
        return DR_EPROTO;
    }
    return 0;
}

static int etcdgw_revision(const json_t *obj, int64_t *ret_revision, char *err, size_t errlen)
{
    int64_t rev = 0;
    int r = etcdgw_field(json_object_get(obj, "header"), "revision", &rev, err, errlen);
    if (r == 0 && ret_revision)
        *ret_revision = rev;
    return r;
}

int etcdgw_parse_grant(const char *body, size_t len, int64_t *ret_id, int64_t *ret_ttl, char *err, size_t errlen)
{
    json_t *j;
    int r = etcdgw_load(body, len, &j, err, errlen);
    if (r == 0)
        r = etcdgw_field(j, "ID", ret_id, err, errlen);
    if (r == 0)
        r = etcdgw_field(j, "TTL", ret_ttl, err, errlen);
    if (r == 0 && (*ret_id == 0 || *ret_ttl <= 0)) {
        snprintf(err, errlen, "the etcd gateway granted no lease (no ID or TTL)");
        r = DR_EPROTO;
    }
    json_decref(j);
    return r;
}

int etcdgw_parse_keepalive(const char *body, size_t len, int64_t *ret_ttl, char *err, size_t errlen)
{
    json_t *j;
    int r = etcdgw_load(body, len, &j, err, errlen);
    if (r == 0) {
        /* a streamed answer: {"result": {...}} (a bare object is read as well) */
        const json_t *res = json_object_get(j, "result");
        if (res && !json_is_object(res)) {
            snprintf(err, errlen, "the etcd gateway's keep-alive 'result' is not an object");
            r = DR_EPROTO;
        } else {
            r = etcdgw_field(res ? res : j, "TTL", ret_ttl, err, errlen);
        }
    }
    if (r == 0 && *ret_ttl <= 0) {
        snprintf(err, errlen, "the lease has expired (the keep-alive answer has no TTL)");
        r = -ENOENT;
    }
    json_decref(j);
    return r;
}

static int etcdgw_kv_from(const json_t *kvs, EtcdKv *kv, char *err, size_t errlen)
{
    memset(kv, 0, sizeof(*kv));
    if (!kvs)
        return 0;
    if (!json_is_array(kvs)) {
        snprintf(err, errlen, "the etcd gateway's 'kvs' is not a list");
        return DR_EPROTO;
    }
    if (json_array_size(kvs) == 0)
        return 0;
    const json_t *e = json_array_get(kvs, 0);
    const char *v64 = json_string_value(json_object_get(e, "value"));
    int r = 0;
    if (!json_is_object(e) || (json_object_get(e, "value") && !v64)) {
        snprintf(err, errlen, "the etcd gateway's key is not an object with a string value");
        return DR_EPROTO;
    }
    r = etcdgw_unb64(v64 ? v64 : "", &kv->value, &kv->value_len);
    if (r < 0) {
        snprintf(err, errlen, "the etcd gateway's value is not base64");
        return r;
    }
    if (r == 0)
        r = etcdgw_field(e, "create_revision", &kv->create_revision, err, errlen);
    if (r == 0)
        r = etcdgw_field(e, "mod_revision", &kv->mod_revision, err, errlen);
    if (r == 0)
        r = etcdgw_field(e, "lease", &kv->lease, err, errlen);
    if (r < 0)
        etcdgw_kv_done(kv);
    else
        kv->found = true;
    return r;
}

int etcdgw_parse_range(const char *body, size_t len, EtcdKv *kv, int64_t *ret_revision, char *err, size_t errlen)
{
    json_t *j;
    memset(kv, 0, sizeof(*kv));
    int r = etcdgw_load(body, len, &j, err, errlen);
    if (r == 0)
        r = etcdgw_revision(j, ret_revision, err, errlen);
    if (r == 0)
        r = etcdgw_kv_from(json_object_get(j, "kvs"), kv, err, errlen);
    json_decref(j);
    return r;
}

int etcdgw_parse_create(const char *body, size_t len, bool *ret_won, int64_t *ret_revision, EtcdKv *holder,
                        char *err, size_t errlen)
{
    json_t *j;
    memset(holder, 0, sizeof(*holder));
    *ret_won = false;
    int r = etcdgw_load(body, len, &j, err, errlen);
    if (r == 0)
        r = etcdgw_revision(j, ret_revision, err, errlen);
    if (r == 0) {
        const json_t *s = json_object_get(j, "succeeded");
        if (s && !json_is_boolean(s)) {
            snprintf(err, errlen, "the etcd gateway's 'succeeded' is not a boolean");
            r = DR_EPROTO;
        }
        *ret_won = json_is_true(s); /* absent: false (the gateway leaves false out) */
    }
    if (r == 0 && !*ret_won) {
        const json_t *resp = json_array_get(json_object_get(j, "responses"), 0);
        const json_t *range = json_object_get(resp, "response_range");
        r = etcdgw_kv_from(json_object_get(range, "kvs"), holder, err, errlen);
    }
    json_decref(j);
    return r;
}

int etcdgw_parse_plain(const char *body, size_t len, int64_t *ret_revision, char *err, size_t errlen)
{
    json_t *j;
    int r = etcdgw_load(body, len, &j, err, errlen);
    if (r == 0)
        r = etcdgw_revision(j, ret_revision, err, errlen);
    json_decref(j);
    return r;
}

int etcdgw_parse_put_if(const char *body, size_t len, bool *ret_done, char *err, size_t errlen)
{
    json_t *j;
    *ret_done = false;
    int r = etcdgw_load(body, len, &j, err, errlen);
    if (r == 0) {
        const json_t *s = json_object_get(j, "succeeded");
        if (s && !json_is_boolean(s)) {
            snprintf(err, errlen, "the etcd gateway's 'succeeded' is not a boolean");
            r = DR_EPROTO;
        }
        *ret_done = json_is_true(s);
    }
    json_decref(j);
    return r;
}
