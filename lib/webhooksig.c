/*
 * webhooksig: signature, freshness and replay check of a signed webhook (see webhooksig.h).
 */
#include "webhooksig.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

static int webhooksig_mac(const uint8_t *secret, size_t secret_len, const char *timestamp, const char *nonce,
                          const uint8_t *body, size_t body_len, uint8_t mac[32])
{
    int ok = 0;
    EVP_MAC *m = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *c = m ? EVP_MAC_CTX_new(m) : NULL;
    OSSL_PARAM p[] = {OSSL_PARAM_construct_utf8_string("digest", (char *)(uintptr_t)"SHA256", 0), OSSL_PARAM_END};
    size_t out = 0;
    if (c && EVP_MAC_init(c, secret, secret_len, p) &&
        EVP_MAC_update(c, (const uint8_t *)timestamp, strlen(timestamp)) &&
        EVP_MAC_update(c, (const uint8_t *)".", 1) && EVP_MAC_update(c, (const uint8_t *)nonce, strlen(nonce)) &&
        EVP_MAC_update(c, (const uint8_t *)".", 1) && (body_len == 0 || EVP_MAC_update(c, body, body_len)) &&
        EVP_MAC_final(c, mac, &out, 32) && out == 32)
        ok = 1;
    EVP_MAC_CTX_free(c);
    EVP_MAC_free(m);
    return ok ? 0 : -EINVAL;
}

int webhooksig_sign(const uint8_t *secret, size_t secret_len, const char *timestamp, const char *nonce,
                    const uint8_t *body, size_t body_len, char out[65])
{
    uint8_t mac[32];
    if (!secret || !secret_len || !timestamp || !nonce || webhooksig_mac(secret, secret_len, timestamp, nonce, body,
                                                                          body_len, mac) < 0)
        return -EINVAL;
    for (int i = 0; i < 32; i++)
        snprintf(out + 2 * i, 3, "%02x", mac[i]);
    return 0;
}

static int webhooksig_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool webhooksig_parse_ts(const char *s, int64_t *ret)
{
    int64_t v = 0;
    if (!s || !*s || strlen(s) > 12)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
        v = v * 10 + (*s - '0');
    }
    *ret = v;
    return true;
}

static bool webhooksig_nonce_ok(const char *n)
{
    size_t len = n ? strlen(n) : 0;
    if (len == 0 || len > WEBHOOKSIG_NONCE_MAX)
        return false;
    for (; *n; n++)
        if (*n <= ' ' || *n > '~')
            return false;
    return true;
}

/* Forget nonces whose timestamp left the window: a replay of them is refused as stale anyway. */
static void webhooksig_expire(WebhookNonces *seen, int64_t now_s, int64_t window_s)
{
    size_t o = 0;
    for (size_t i = 0; i < seen->n; i++)
        if (seen->e[i].ts >= now_s - window_s && seen->e[i].ts <= now_s + window_s)
            seen->e[o++] = seen->e[i];
    seen->n = o;
}

WebhookSigResult webhooksig_verify(const uint8_t *secret, size_t secret_len, const char *timestamp, const char *nonce,
                                   const uint8_t *body, size_t body_len, const char *signature, int64_t now_s,
                                   int64_t window_s, WebhookNonces *seen, char *why, size_t whylen)
{
    int64_t ts;
    uint8_t got[32], want[32], h[32];

    if (!webhooksig_parse_ts(timestamp, &ts)) {
        snprintf(why, whylen, "the timestamp header is missing or not Unix seconds");
        return WEBHOOKSIG_MALFORMED;
    }
    if (!webhooksig_nonce_ok(nonce)) {
        snprintf(why, whylen, "the nonce header is missing, too long or not printable");
        return WEBHOOKSIG_MALFORMED;
    }
    if (signature && strncmp(signature, "sha256=", 7) == 0)
        signature += 7;
    if (!signature || strlen(signature) != 64) {
        snprintf(why, whylen, "the signature header is missing or not 64 hex digits");
        return WEBHOOKSIG_MALFORMED;
    }
    for (int i = 0; i < 32; i++) {
        int hi = webhooksig_hexval(signature[2 * i]), lo = webhooksig_hexval(signature[2 * i + 1]);
        if (hi < 0 || lo < 0) {
            snprintf(why, whylen, "the signature header is not hex");
            return WEBHOOKSIG_MALFORMED;
        }
        got[i] = (uint8_t)(hi << 4 | lo);
    }
    if (ts < now_s - window_s || ts > now_s + window_s) {
        snprintf(why, whylen, "the timestamp is %lld s from now, outside the %lld s window",
                 (long long)(ts - now_s), (long long)window_s);
        return WEBHOOKSIG_STALE;
    }
    if (webhooksig_mac(secret, secret_len, timestamp, nonce, body, body_len, want) < 0 ||
        CRYPTO_memcmp(got, want, 32) != 0) {
        snprintf(why, whylen, "the signature does not match (wrong secret, or the body, timestamp or nonce changed)");
        return WEBHOOKSIG_BAD_SIGNATURE;
    }
    SHA256((const uint8_t *)nonce, strlen(nonce), h);
    webhooksig_expire(seen, now_s, window_s);
    for (size_t i = 0; i < seen->n; i++)
        if (memcmp(seen->e[i].hash, h, 32) == 0) {
            snprintf(why, whylen, "the nonce was already used within the window: a replay");
            return WEBHOOKSIG_REPLAYED;
        }
    if (seen->n >= WEBHOOKSIG_MAX_NONCES) {
        snprintf(why, whylen, "too many requests within the window (%d nonces remembered)", WEBHOOKSIG_MAX_NONCES);
        return WEBHOOKSIG_BUSY;
    }
    memcpy(seen->e[seen->n].hash, h, 32);
    seen->e[seen->n].ts = ts;
    seen->n++;
    if (whylen)
        why[0] = '\0';
    return WEBHOOKSIG_OK;
}

int webhooksig_http_status(WebhookSigResult r)
{
    switch (r) {
    case WEBHOOKSIG_OK:
        return 200;
    case WEBHOOKSIG_MALFORMED:
        return 400;
    case WEBHOOKSIG_BUSY:
        return 503;
    default:
        return 401;
    }
}
