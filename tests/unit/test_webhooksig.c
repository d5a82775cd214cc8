/*
 * Unit tests for lib/webhooksig: a good signature accepted once, then refused as a replay; a
 * forged one (wrong secret, changed body, timestamp or nonce) refused; the window both ways; bad
 * headers are 400; expired nonces forgotten; a full replay memory refuses; the signature
 * checked against an HMAC-SHA-256 computed independently (openssl's one-shot HMAC()).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/hmac.h>

#include "webhooksig.h"

static const uint8_t secret[] = "s3cret-shared-with-the-sender";
#define SLEN (sizeof(secret) - 1)
static const char body[] = "{\"reason\":\"ids alert 4711\"}";
#define NOW 1764763200

static WebhookSigResult check(WebhookNonces *seen, const char *ts, const char *nonce, const char *b, const char *sig,
                              int64_t now)
{
    char why[256];
    return webhooksig_verify(secret, SLEN, ts, nonce, (const uint8_t *)b, strlen(b), sig, now, 300, seen, why,
                             sizeof(why));
}

static void test_independent_hmac(void **state)
{
    (void)state;
    char sig[65], want[65];
    unsigned char mac[32];
    unsigned len = 0;
    char msg[256];
    snprintf(msg, sizeof(msg), "%d.%s.%s", NOW, "n-1", body);
    HMAC(EVP_sha256(), secret, (int)SLEN, (const unsigned char *)msg, strlen(msg), mac, &len);
    for (int i = 0; i < 32; i++)
        snprintf(want + 2 * i, 3, "%02x", mac[i]);
    assert_int_equal(webhooksig_sign(secret, SLEN, "1764763200", "n-1", (const uint8_t *)body, strlen(body), sig), 0);
    assert_string_equal(sig, want);
}

static void test_good_once_then_replay(void **state)
{
    (void)state;
    WebhookNonces *seen = calloc(1, sizeof(*seen));
    char sig[65], pref[80];
    assert_int_equal(webhooksig_sign(secret, SLEN, "1764763200", "n-1", (const uint8_t *)body, strlen(body), sig), 0);
    assert_int_equal(check(seen, "1764763200", "n-1", body, sig, NOW + 10), WEBHOOKSIG_OK);
    assert_int_equal(check(seen, "1764763200", "n-1", body, sig, NOW + 20), WEBHOOKSIG_REPLAYED);
    assert_int_equal(webhooksig_http_status(WEBHOOKSIG_REPLAYED), 401);
    /* a new nonce with the prefix form is fine */
    assert_int_equal(webhooksig_sign(secret, SLEN, "1764763200", "n-2", (const uint8_t *)body, strlen(body), sig), 0);
    snprintf(pref, sizeof(pref), "sha256=%s", sig);
    assert_int_equal(check(seen, "1764763200", "n-2", body, pref, NOW), WEBHOOKSIG_OK);
    assert_int_equal(seen->n, 2);
    free(seen);
}

static void test_forged(void **state)
{
    (void)state;
    WebhookNonces *seen = calloc(1, sizeof(*seen));
    char sig[65], other[65];
    const uint8_t wrong[] = "not-the-secret";
    assert_int_equal(webhooksig_sign(wrong, sizeof(wrong) - 1, "1764763200", "n-1", (const uint8_t *)body,
                                     strlen(body), other), 0);
    assert_int_equal(check(seen, "1764763200", "n-1", body, other, NOW), WEBHOOKSIG_BAD_SIGNATURE);
    assert_int_equal(webhooksig_sign(secret, SLEN, "1764763200", "n-1", (const uint8_t *)body, strlen(body), sig), 0);
    assert_int_equal(check(seen, "1764763200", "n-1", "{\"reason\":\"other\"}", sig, NOW), WEBHOOKSIG_BAD_SIGNATURE);
    assert_int_equal(check(seen, "1764763201", "n-1", body, sig, NOW), WEBHOOKSIG_BAD_SIGNATURE);
    assert_int_equal(check(seen, "1764763200", "n-X", body, sig, NOW), WEBHOOKSIG_BAD_SIGNATURE);
    sig[0] = sig[0] == '0' ? '1' : '0';
    assert_int_equal(check(seen, "1764763200", "n-1", body, sig, NOW), WEBHOOKSIG_BAD_SIGNATURE);
    assert_int_equal(seen->n, 0); /* nothing remembered from a refusal */
    assert_int_equal(webhooksig_http_status(WEBHOOKSIG_BAD_SIGNATURE), 401);
    free(seen);
}

static void test_window(void **state)
{
    (void)state;
    WebhookNonces *seen = calloc(1, sizeof(*seen));
    char sig[65];
    assert_int_equal(webhooksig_sign(secret, SLEN, "1764763200", "n-1", (const uint8_t *)body, strlen(body), sig), 0);
    assert_int_equal(check(seen, "1764763200", "n-1", body, sig, NOW + 301), WEBHOOKSIG_STALE);
    assert_int_equal(check(seen, "1764763200", "n-1", body, sig, NOW - 301), WEBHOOKSIG_STALE);
    assert_int_equal(check(seen, "1764763200", "n-1", body, sig, NOW + 300), WEBHOOKSIG_OK);
    /* once the first use left the window, it is forgotten; the request itself is stale by then */
    assert_int_equal(check(seen, "1764763200", "n-1", body, sig, NOW + 900), WEBHOOKSIG_STALE);
    char ts[16], s2[65];
    snprintf(ts, sizeof(ts), "%d", NOW + 900);
    assert_int_equal(webhooksig_sign(secret, SLEN, ts, "n-3", (const uint8_t *)body, strlen(body), s2), 0);
    assert_int_equal(check(seen, ts, "n-3", body, s2, NOW + 900), WEBHOOKSIG_OK);
    assert_int_equal(seen->n, 1);
    free(seen);
}

static void test_malformed(void **state)
{
    (void)state;
    WebhookNonces *seen = calloc(1, sizeof(*seen));
    char sig[65];
    assert_int_equal(webhooksig_sign(secret, SLEN, "1764763200", "n-1", (const uint8_t *)body, strlen(body), sig), 0);
    assert_int_equal(check(seen, NULL, "n-1", body, sig, NOW), WEBHOOKSIG_MALFORMED);
    assert_int_equal(check(seen, "12ab", "n-1", body, sig, NOW), WEBHOOKSIG_MALFORMED);
    assert_int_equal(check(seen, "1764763200", "", body, sig, NOW), WEBHOOKSIG_MALFORMED);
    assert_int_equal(check(seen, "1764763200", "a b", body, sig, NOW), WEBHOOKSIG_MALFORMED);
    assert_int_equal(check(seen, "1764763200", "n-1", body, NULL, NOW), WEBHOOKSIG_MALFORMED);
    assert_int_equal(check(seen, "1764763200", "n-1", body, "abc", NOW), WEBHOOKSIG_MALFORMED);
    sig[5] = 'z';
    assert_int_equal(check(seen, "1764763200", "n-1", body, sig, NOW), WEBHOOKSIG_MALFORMED);
    assert_int_equal(webhooksig_http_status(WEBHOOKSIG_MALFORMED), 400);
    free(seen);
}

static void test_full_memory_refuses(void **state)
{
    (void)state;
    WebhookNonces *seen = calloc(1, sizeof(*seen));
    char sig[65], nonce[32];
    for (int i = 0; i <= WEBHOOKSIG_MAX_NONCES; i++) {
        snprintf(nonce, sizeof(nonce), "n-%d", i);
        assert_int_equal(
            webhooksig_sign(secret, SLEN, "1764763200", nonce, (const uint8_t *)body, strlen(body), sig), 0);
        assert_int_equal(check(seen, "1764763200", nonce, body, sig, NOW),
                         i < WEBHOOKSIG_MAX_NONCES ? WEBHOOKSIG_OK : WEBHOOKSIG_BUSY);
    }
    assert_int_equal(webhooksig_http_status(WEBHOOKSIG_BUSY), 503);
    free(seen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_independent_hmac), cmocka_unit_test(test_good_once_then_replay),
        cmocka_unit_test(test_forged),           cmocka_unit_test(test_window),
        cmocka_unit_test(test_malformed),        cmocka_unit_test(test_full_memory_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
