/*
 * etcdgw: the requests to and answers from etcd 3.4's v3 JSON gateway (grpc-gateway over HTTP).
 *
 * Owns the JSON of lease grant, keep-alive and revoke, a put, a range of one key and the
 * "create only if absent" transaction, and the reading of their answers with the gateway's
 * quirks: paths under /v3, keys and values base64, 64-bit numbers written as strings, fields that
 * are false or zero left out (a lost transaction has no "succeeded"; a keep-alive on an expired
 * lease answers 200 with no "TTL"), a keep-alive answer wrapped in {"result": ...}, and failures
 * as {"error", "message", "code"}. Pure: no I/O; the HTTP is the caller's (lib/httpc).
 */
#ifndef DRSUP_ETCDGW_H
#define DRSUP_ETCDGW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One key as a range or a lost transaction shows it. value is owned (NUL-terminated). */
typedef struct EtcdKv {
    bool found;
    char *value;
    size_t value_len;
    int64_t create_revision, mod_revision, lease;
} EtcdKv;

void etcdgw_kv_done(EtcdKv *kv);

/* Request bodies (caller frees; NULL on allocation failure). Keys and values are raw bytes. */
char *etcdgw_grant_body(int64_t ttl_s);
char *etcdgw_lease_id_body(int64_t lease_id); /* keep-alive and revoke: {"ID":"N"} */
char *etcdgw_range_body(const char *key);
char *etcdgw_put_body(const char *key, const char *value, int64_t lease_id); /* lease 0: none */
char *etcdgw_delete_body(const char *key);
/* Put key = value attached to lease_id only if key does not exist (compare create_revision = 0);
 * otherwise read it (the failure branch ranges over it). */
char *etcdgw_create_body(const char *key, const char *value, int64_t lease_id);

/* Put key = value (no lease) only if guard_key's create_revision is still guard_rev: a write that
 * a deposed leader cannot make (the fencing of the halt state). */
char *etcdgw_put_if_body(const char *key, const char *value, const char *guard_key, int64_t guard_rev);

/*
 * Answers. Each returns 0, or a negative code with one line in err: DR_EPROTO (not JSON, a
 * field of the wrong type, a number that is not one), DR_EHTTP (the gateway's {"error": ...}:
 * its message is copied), -ENOENT (keep-alive: the lease has expired or is unknown).
 */
int etcdgw_parse_grant(const char *body, size_t len, int64_t *ret_id, int64_t *ret_ttl, char *err, size_t errlen);
int etcdgw_parse_keepalive(const char *body, size_t len, int64_t *ret_ttl, char *err, size_t errlen);
/* A range of one key: kv->found false when absent. ret_revision: the header's revision (may be NULL). */
int etcdgw_parse_range(const char *body, size_t len, EtcdKv *kv, int64_t *ret_revision, char *err, size_t errlen);
/* The create transaction: *ret_won, the header's revision (the new key's create_revision when
 * won) and, when lost, the key that exists in *holder (found false if it vanished meanwhile). */
int etcdgw_parse_create(const char *body, size_t len, bool *ret_won, int64_t *ret_revision, EtcdKv *holder,
                        char *err, size_t errlen);
/* The guarded put: *ret_done false when the guard no longer held. */
int etcdgw_parse_put_if(const char *body, size_t len, bool *ret_done, char *err, size_t errlen);
/* Any other answer (put, delete, revoke): 0 unless it is the gateway's error object. */
int etcdgw_parse_plain(const char *body, size_t len, int64_t *ret_revision, char *err, size_t errlen);

/* A gateway number: a JSON string of decimal digits (or a JSON integer); absent is 0. 0, or
 * DR_EPROTO for anything else. Exposed for tests. */
int etcdgw_number(const void *json_value, int64_t *ret);

#endif
