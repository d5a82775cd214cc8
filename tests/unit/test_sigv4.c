/*
 * Unit tests for lib/sigv4 against the examples AWS publishes for S3's header-based Signature
 * Version 4 (docs.aws.amazon.com, "Signature Calculations for the Authorization Header":
 * GET Object with a Range, PUT Object with a payload, GET Bucket Lifecycle, GET Bucket with query
 * parameters; all with the documentation's example key and date), and the canonical request's
 * rules: header case and spaces, repeated headers, query order and encoding, bad input.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sigv4.h"

static const SigV4Key aws = {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", "us-east-1", "s3"};
#define EMPTY_SHA "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static void check(const SigV4Request *req, const char *signed_headers, const char *signature)
{
    char auth[512], want[512];
    assert_int_equal(sigv4_sign(req, &aws, "20130524T000000Z", auth, sizeof(auth), NULL, 0), 0);
    snprintf(want, sizeof(want),
             "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
             "SignedHeaders=%s, Signature=%s",
             signed_headers, signature);
    assert_string_equal(auth, want);
}

static void test_get_object(void **state)
{
    (void)state;
    SigV4Pair h[] = {{"Host", "examplebucket.s3.amazonaws.com"}, {"Range", "bytes=0-9"},
                     {"x-amz-content-sha256", EMPTY_SHA}, {"x-amz-date", "20130524T000000Z"}};
    SigV4Request r = {"GET", "/test.txt", NULL, 0, h, 4, EMPTY_SHA};
    check(&r, "host;range;x-amz-content-sha256;x-amz-date",
          "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41");
}

static void test_put_object(void **state)
{
    (void)state;
    char sha[65];
    sigv4_sha256_hex("Welcome to Amazon S3.", 21, sha);
    assert_string_equal(sha, "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072");
    SigV4Pair h[] = {{"Date", "Fri, 24 May 2013 00:00:00 GMT"}, {"Host", "examplebucket.s3.amazonaws.com"},
                     {"x-amz-date", "20130524T000000Z"}, {"x-amz-storage-class", "REDUCED_REDUNDANCY"},
                     {"x-amz-content-sha256", sha}};
    SigV4Request r = {"PUT", "/test$file.text", NULL, 0, h, 5, sha};
    check(&r, "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
          "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd");
}

static void test_get_lifecycle(void **state)
{
    (void)state;
    SigV4Pair q[] = {{"lifecycle", ""}};
    SigV4Pair h[] = {{"Host", "examplebucket.s3.amazonaws.com"}, {"x-amz-date", "20130524T000000Z"},
                     {"x-amz-content-sha256", EMPTY_SHA}};
    SigV4Request r = {"GET", "/", q, 1, h, 3, EMPTY_SHA};
    check(&r, "host;x-amz-content-sha256;x-amz-date", "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
}

static void test_list_objects(void **state)
{
    (void)state;
    SigV4Pair q[] = {{"prefix", "J"}, {"max-keys", "2"}}; /* out of order: sorted when signed */
    SigV4Pair h[] = {{"Host", "examplebucket.s3.amazonaws.com"}, {"x-amz-date", "20130524T000000Z"},
                     {"x-amz-content-sha256", EMPTY_SHA}};
    SigV4Request r = {"GET", "/", q, 2, h, 3, EMPTY_SHA};
    check(&r, "host;x-amz-content-sha256;x-amz-date", "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7");
}

static void test_canonical_request_rules(void **state)
{
    (void)state;
    char auth[512], canon[2048];
    SigV4Pair q[] = {{"b", "x y"}, {"a", "2"}, {"a", "1"}, {"uploads", ""}};
    SigV4Pair h[] = {{"X-Amz-Meta-Note", "  two   spaces  "}, {"host", "h.example"}, {"X-Amz-Date", "20130524T000000Z"},
                     {"x-amz-meta-note", "again"}};
    SigV4Request r = {"PUT", "/bucket/a b/ü.txt", q, 4, h, 4, "UNSIGNED-PAYLOAD"};
    assert_int_equal(sigv4_sign(&r, &aws, "20130524T000000Z", auth, sizeof(auth), canon, sizeof(canon)), 0);
    assert_string_equal(canon, "PUT\n"
                               "/bucket/a%20b/%C3%BC.txt\n"
                               "a=1&a=2&b=x%20y&uploads=\n"
                               "host:h.example\n"
                               "x-amz-date:20130524T000000Z\n"
                               "x-amz-meta-note:two spaces,again\n"
                               "\n"
                               "host;x-amz-date;x-amz-meta-note\n"
                               "UNSIGNED-PAYLOAD");
    assert_non_null(strstr(auth, "SignedHeaders=host;x-amz-date;x-amz-meta-note, Signature="));
    /* the same request signed with another secret gives another signature */
    char auth2[512];
    SigV4Key other = aws;
    other.secret_key = "another";
    assert_int_equal(sigv4_sign(&r, &other, "20130524T000000Z", auth2, sizeof(auth2), NULL, 0), 0);
    assert_string_not_equal(auth, auth2);
    /* bad input */
    assert_int_equal(sigv4_sign(&r, &aws, "2013-05-24", auth, sizeof(auth), NULL, 0), -EINVAL);
    SigV4Request nopath = r;
    nopath.path = "bucket";
    assert_int_equal(sigv4_sign(&nopath, &aws, "20130524T000000Z", auth, sizeof(auth), NULL, 0), -EINVAL);
    assert_int_equal(sigv4_sign(&r, &aws, "20130524T000000Z", auth, 20, NULL, 0), -ENOSPC);
    char *e = sigv4_uri_encode("a/b c~_-.!", 0);
    assert_string_equal(e, "a%2Fb%20c~_-.%21");
    free(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get_object),    cmocka_unit_test(test_put_object),
        cmocka_unit_test(test_get_lifecycle), cmocka_unit_test(test_list_objects),
        cmocka_unit_test(test_canonical_request_rules),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
