/*
 * Unit tests for lib/s3req: requests built for AWS's published examples give AWS's signatures
 * (GET Bucket Lifecycle and GET Bucket with max-keys and prefix: virtual-host style, the example
 * key and date), the URL and Host of both URL styles with the path and query encoded as signed,
 * the extra signed headers, refusals, the CompleteMultipartUpload body, reading S3's XML answers
 * (UploadId, Code, Message, entities, an <Error> inside a 200) and which failures are retried.
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

#include "s3req.h"

static const S3Target aws = {"https://s3.amazonaws.com", "us-east-1", "examplebucket", true, "AKIAIOSFODNN7EXAMPLE",
                             "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"};

static const char *header(const S3Built *b, const char *name)
{
    size_t n = strlen(name);
    for (size_t i = 0; i < b->n_headers; i++)
        if (!strncmp(b->headers[i], name, n) && b->headers[i][n] == ':')
            return b->headers[i] + n + 2;
    return NULL;
}

static void test_aws_examples(void **state)
{
    (void)state;
    S3Built b;
    SigV4Pair lc[] = {{"lifecycle", ""}};
    assert_int_equal(s3req_build(&aws, "GET", "", lc, 1, S3REQ_EMPTY_SHA256, NULL, 0, "20130524T000000Z", &b), 0);
    assert_string_equal(b.url, "https://examplebucket.s3.amazonaws.com/?lifecycle=");
    assert_string_equal(header(&b, "Host"), "examplebucket.s3.amazonaws.com");
    assert_string_equal(header(&b, "x-amz-date"), "20130524T000000Z");
    assert_string_equal(header(&b, "x-amz-content-sha256"), S3REQ_EMPTY_SHA256);
    assert_string_equal(header(&b, "Authorization"),
                        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
                        "SignedHeaders=host;x-amz-content-sha256;x-amz-date, "
                        "Signature=fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543");
    s3req_free(&b);

    SigV4Pair q[] = {{"prefix", "J"}, {"max-keys", "2"}};
    assert_int_equal(s3req_build(&aws, "GET", "", q, 2, S3REQ_EMPTY_SHA256, NULL, 0, "20130524T000000Z", &b), 0);
    assert_string_equal(b.url, "https://examplebucket.s3.amazonaws.com/?max-keys=2&prefix=J"); /* sorted */
    assert_non_null(strstr(header(&b, "Authorization"),
                           "Signature=34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7"));
    s3req_free(&b);
}

static void test_path_style_and_encoding(void **state)
{
    (void)state;
    S3Target t = aws;
    S3Built b;
    t.endpoint = "http://127.0.0.1:9000";
    t.virtual_host = false;
    SigV4Pair q[] = {{"uploadId", "a/b+c="}, {"partNumber", "3"}};
    SigV4Pair meta[] = {{"x-amz-meta-sha256", "abc"}};
    assert_int_equal(s3req_build(&t, "PUT", "prod/wal/a b+c.drbk", q, 2, S3REQ_EMPTY_SHA256, meta, 1,
                                 "20261203T120000Z", &b), 0);
    assert_string_equal(b.url, "http://127.0.0.1:9000/examplebucket/prod/wal/a%20b%2Bc.drbk"
                               "?partNumber=3&uploadId=a%2Fb%2Bc%3D");
    assert_string_equal(header(&b, "Host"), "127.0.0.1:9000");
    assert_string_equal(header(&b, "x-amz-meta-sha256"), "abc");
    assert_non_null(strstr(header(&b, "Authorization"),
                           "SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-meta-sha256, "));
    /* the secret is used, never shown */
    for (size_t i = 0; i < b.n_headers; i++)
        assert_null(strstr(b.headers[i], t.secret_key));
    s3req_free(&b);
    /* another secret, another signature */
    S3Built b2;
    t.secret_key = "other";
    assert_int_equal(s3req_build(&t, "PUT", "k", NULL, 0, S3REQ_EMPTY_SHA256, NULL, 0, "20261203T120000Z", &b2), 0);
    t.secret_key = aws.secret_key;
    assert_int_equal(s3req_build(&t, "PUT", "k", NULL, 0, S3REQ_EMPTY_SHA256, NULL, 0, "20261203T120000Z", &b), 0);
    assert_string_not_equal(header(&b, "Authorization"), header(&b2, "Authorization"));
    s3req_free(&b);
    s3req_free(&b2);
}

static void test_refusals(void **state)
{
    (void)state;
    S3Target t = aws;
    S3Built b = {0};
    char why[128];
    assert_int_equal(s3req_build(&t, "GET", "/lead", NULL, 0, S3REQ_EMPTY_SHA256, NULL, 0, "20130524T000000Z", &b),
                     -EINVAL);
    assert_int_equal(s3req_build(&t, "GET", "k", NULL, 0, S3REQ_EMPTY_SHA256, NULL, 0, "2013-05-24", &b), -EINVAL);
    assert_null(b.url);
    t.endpoint = "https://s3.amazonaws.com/path";
    assert_int_equal(s3req_build(&t, "GET", "k", NULL, 0, S3REQ_EMPTY_SHA256, NULL, 0, "20130524T000000Z", &b),
                     -EINVAL);
    assert_int_equal(s3req_check_endpoint("ftp://x", why, sizeof(why)), -EINVAL);
    assert_int_equal(s3req_check_endpoint("https://u:p@x", why, sizeof(why)), -EINVAL);
    assert_int_equal(s3req_check_endpoint("https://s3.eu-west-1.amazonaws.com", why, sizeof(why)), 0);
    assert_int_equal(s3req_check_endpoint("http://[::1]:9000", why, sizeof(why)), 0);
    char d[17];
    s3req_amz_date(1369353600000, d);
    assert_string_equal(d, "20130524T000000Z");
}

static void test_complete_body(void **state)
{
    (void)state;
    const char *etags[] = {"\"aa\"", "\"b&b\""};
    char *x = s3req_complete_body(etags, 2);
    assert_string_equal(x, "<CompleteMultipartUpload xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                           "<Part><PartNumber>1</PartNumber><ETag>&quot;aa&quot;</ETag></Part>"
                           "<Part><PartNumber>2</PartNumber><ETag>&quot;b&amp;b&quot;</ETag></Part>"
                           "</CompleteMultipartUpload>");
    free(x);
    assert_null(s3req_complete_body(etags, 0));
}

static void test_answers(void **state)
{
    (void)state;
    char out[64];
    const char *init = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult><Bucket>b</Bucket>"
                       "<Key>k</Key><UploadId>VXBsb2FkIElE&amp;x</UploadId></InitiateMultipartUploadResult>";
    assert_int_equal(s3req_xml_text(init, strlen(init), "UploadId", out, sizeof(out)), 0);
    assert_string_equal(out, "VXBsb2FkIElE&x");
    assert_false(s3req_is_error(init, strlen(init)));
    assert_int_equal(s3req_xml_text(init, strlen(init), "Code", out, sizeof(out)), -ENOENT);
    assert_int_equal(s3req_xml_text(init, strlen(init), "UploadId", out, 5), -ENOSPC);
    const char *err = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>SignatureDoesNotMatch</Code>"
                      "<Message>The request signature we calculated does not match</Message></Error>";
    assert_true(s3req_is_error(err, strlen(err)));
    assert_int_equal(s3req_xml_text(err, strlen(err), "Code", out, sizeof(out)), 0);
    assert_string_equal(out, "SignatureDoesNotMatch");
    /* not past the end of what arrived */
    assert_int_equal(s3req_xml_text(err, 60, "Code", out, sizeof(out)), -ENOENT);
    assert_false(s3req_is_error("", 0));

    assert_true(s3req_retryable(0, NULL));
    assert_true(s3req_retryable(503, "SlowDown"));
    assert_true(s3req_retryable(500, ""));
    assert_true(s3req_retryable(200, "InternalError")); /* an error inside a 200 */
    assert_true(s3req_retryable(400, "RequestTimeout"));
    assert_false(s3req_retryable(403, "SignatureDoesNotMatch"));
    assert_false(s3req_retryable(404, "NoSuchBucket"));
    assert_false(s3req_retryable(400, "XAmzContentSHA256Mismatch"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_aws_examples), cmocka_unit_test(test_path_style_and_encoding),
        cmocka_unit_test(test_refusals),     cmocka_unit_test(test_complete_body),
        cmocka_unit_test(test_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
