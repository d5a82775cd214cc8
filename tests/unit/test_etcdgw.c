/*
 * Unit tests for lib/etcdgw: etcd 3.4's JSON gateway answers as they really come (numbers as
 * strings, false and zero fields left out, the keep-alive's {"result"} wrapper and its missing TTL
 * on an expired lease, the error object) and the request bodies (base64 keys, the create-if-absent
 * compare on create_revision "0").
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>

#include "err.h"
#include "etcdgw.h"

#define S(x) x, strlen(x)

static void test_grant(void **state)
{
    (void)state;
    char err[256];
    int64_t id = 0, ttl = 0;
    assert_int_equal(etcdgw_parse_grant(S("{\"header\":{\"revision\":\"1\"},\"ID\":\"4111120413810417669\",\"TTL\":\"2\"}"),
                                        &id, &ttl, err, sizeof(err)), 0);
    assert_true(id == 4111120413810417669LL);
    assert_int_equal(ttl, 2);
    /* no ID: nothing was granted */
    assert_int_equal(etcdgw_parse_grant(S("{\"header\":{},\"TTL\":\"2\"}"), &id, &ttl, err, sizeof(err)), DR_EPROTO);
    /* a number that is not one */
    assert_int_equal(etcdgw_parse_grant(S("{\"ID\":\"12x\",\"TTL\":\"2\"}"), &id, &ttl, err, sizeof(err)), DR_EPROTO);
    assert_int_equal(etcdgw_parse_grant(S("{\"ID\":true,\"TTL\":\"2\"}"), &id, &ttl, err, sizeof(err)), DR_EPROTO);
    /* the gateway's error object */
    assert_int_equal(etcdgw_parse_grant(S("{\"error\":\"x\",\"message\":\"etcdserver: too many requests\",\"code\":8}"),
                                        &id, &ttl, err, sizeof(err)), DR_EHTTP);
    assert_non_null(strstr(err, "too many requests"));
    assert_int_equal(etcdgw_parse_grant(S("not json"), &id, &ttl, err, sizeof(err)), DR_EPROTO);
}

static void test_keepalive(void **state)
{
    (void)state;
    char err[256];
    int64_t ttl = -1;
    assert_int_equal(etcdgw_parse_keepalive(S("{\"result\":{\"header\":{\"revision\":\"2\"},\"ID\":\"7\",\"TTL\":\"5\"}}"),
                                            &ttl, err, sizeof(err)), 0);
    assert_int_equal(ttl, 5);
    /* an expired lease: 200 with no TTL */
    assert_int_equal(etcdgw_parse_keepalive(S("{\"result\":{\"header\":{\"revision\":\"3\"},\"ID\":\"7\"}}"), &ttl, err,
                                            sizeof(err)), -ENOENT);
    /* an integer where a string is usual is read too; a bare object as well */
    assert_int_equal(etcdgw_parse_keepalive(S("{\"ID\":\"7\",\"TTL\":4}"), &ttl, err, sizeof(err)), 0);
    assert_int_equal(ttl, 4);
    assert_int_equal(etcdgw_parse_keepalive(S("{\"result\":\"x\"}"), &ttl, err, sizeof(err)), DR_EPROTO);
}

static void test_create_won_and_lost(void **state)
{
    (void)state;
    char err[256];
    bool won = false;
    int64_t rev = 0;
    EtcdKv kv;
    assert_int_equal(etcdgw_parse_create(S("{\"header\":{\"revision\":\"12\"},\"succeeded\":true,\"responses\":"
                                           "[{\"response_put\":{\"header\":{\"revision\":\"12\"}}}]}"),
                                         &won, &rev, &kv, err, sizeof(err)), 0);
    assert_true(won);
    assert_int_equal(rev, 12);
    assert_false(kv.found);
    /* lost: no "succeeded" at all, the holder in the range answer ("bjE=" is "n1") */
    assert_int_equal(etcdgw_parse_create(S("{\"header\":{\"revision\":\"2\"},\"responses\":[{\"response_range\":{"
                                           "\"header\":{\"revision\":\"2\"},\"kvs\":[{\"key\":\"L3gvbGVhZGVy\","
                                           "\"create_revision\":\"2\",\"mod_revision\":\"2\",\"version\":\"1\","
                                           "\"value\":\"bjE=\",\"lease\":\"41\"}],\"count\":\"1\"}}]}"),
                                         &won, &rev, &kv, err, sizeof(err)), 0);
    assert_false(won);
    assert_true(kv.found);
    assert_string_equal(kv.value, "n1");
    assert_int_equal(kv.create_revision, 2);
    assert_int_equal(kv.lease, 41);
    etcdgw_kv_done(&kv);
    /* lost and the key vanished meanwhile: an empty range (no kvs, no count) */
    assert_int_equal(etcdgw_parse_create(S("{\"header\":{\"revision\":\"3\"},\"responses\":[{\"response_range\":"
                                           "{\"header\":{\"revision\":\"3\"}}}]}"),
                                         &won, &rev, &kv, err, sizeof(err)), 0);
    assert_false(won);
    assert_false(kv.found);
    assert_int_equal(etcdgw_parse_create(S("{\"succeeded\":\"yes\"}"), &won, &rev, &kv, err, sizeof(err)), DR_EPROTO);
}

static void test_range(void **state)
{
    (void)state;
    char err[256];
    int64_t rev = 0;
    EtcdKv kv;
    /* absent key: no kvs, no count */
    assert_int_equal(etcdgw_parse_range(S("{\"header\":{\"revision\":\"3\"}}"), &kv, &rev, err, sizeof(err)), 0);
    assert_false(kv.found);
    assert_int_equal(rev, 3);
    /* an empty value is left out too */
    assert_int_equal(etcdgw_parse_range(S("{\"header\":{},\"kvs\":[{\"key\":\"eA==\",\"create_revision\":\"9\"}]}"),
                                        &kv, &rev, err, sizeof(err)), 0);
    assert_true(kv.found);
    assert_string_equal(kv.value, "");
    assert_int_equal(kv.create_revision, 9);
    assert_int_equal(kv.lease, 0);
    etcdgw_kv_done(&kv);
    assert_int_equal(etcdgw_parse_range(S("{\"kvs\":[{\"value\":\"!!!\"}]}"), &kv, &rev, err, sizeof(err)), DR_EPROTO);
    assert_int_equal(etcdgw_parse_range(S("{\"kvs\":{}}"), &kv, &rev, err, sizeof(err)), DR_EPROTO);
}

static void test_put_if(void **state)
{
    (void)state;
    char err[256];
    bool done = true;
    assert_int_equal(etcdgw_parse_put_if(S("{\"header\":{\"revision\":\"5\"}}"), &done, err, sizeof(err)), 0);
    assert_false(done);
    assert_int_equal(etcdgw_parse_put_if(S("{\"header\":{},\"succeeded\":true}"), &done, err, sizeof(err)), 0);
    assert_true(done);
}

static void test_bodies(void **state)
{
    (void)state;
    char *b = etcdgw_create_body("/x/leader", "n1", 41);
    assert_non_null(b);
    assert_non_null(strstr(b, "\"key\":\"L3gvbGVhZGVy\""));
    assert_non_null(strstr(b, "\"create_revision\":\"0\""));
    assert_non_null(strstr(b, "\"target\":\"CREATE\""));
    assert_non_null(strstr(b, "\"value\":\"bjE=\""));
    assert_non_null(strstr(b, "\"lease\":\"41\""));
    free(b);
    b = etcdgw_grant_body(5);
    assert_string_equal(b, "{\"TTL\":\"5\"}");
    free(b);
    b = etcdgw_lease_id_body(4111120413810417669LL);
    assert_string_equal(b, "{\"ID\":\"4111120413810417669\"}");
    free(b);
    b = etcdgw_put_if_body("/x/halt", "{}", "/x/leader", 12);
    assert_non_null(strstr(b, "\"create_revision\":\"12\""));
    assert_null(strstr(b, "lease"));
    free(b);
}

static void test_number(void **state)
{
    (void)state;
    int64_t v = 1;
    assert_int_equal(etcdgw_number(NULL, &v), 0);
    assert_int_equal(v, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_grant),       cmocka_unit_test(test_keepalive), cmocka_unit_test(test_create_won_and_lost),
        cmocka_unit_test(test_range),       cmocka_unit_test(test_put_if),    cmocka_unit_test(test_bodies),
        cmocka_unit_test(test_number),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
