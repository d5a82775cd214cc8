/*
 * webhooksig: the check of a signed inbound webhook (security_breach's trigger, docs/security-breach.md).
 *
 * Owns the signature (hex HMAC-SHA-256 under a shared secret over "<timestamp>.<nonce>.<body>"),
 * the freshness window (the timestamp, Unix seconds, within window_s of now either way) and the
 * replay memory (each nonce accepted once while its timestamp is inside the window; the table is
 * bounded, and a full table of live nonces refuses rather than forgets). Pure: no I/O, no clock
 * (the caller gives now), no global state; the comparison is constant-time.
 */
#ifndef DRSUP_WEBHOOKSIG_H
#define DRSUP_WEBHOOKSIG_H

#include <stddef.h>
#include <stdint.h>

#define WEBHOOKSIG_MAX_NONCES 1024
#define WEBHOOKSIG_NONCE_MAX 128

typedef enum WebhookSigResult {
    WEBHOOKSIG_OK = 0,
    WEBHOOKSIG_MALFORMED,     /* a header missing or unreadable: HTTP 400 */
    WEBHOOKSIG_STALE,         /* the timestamp is outside the window: 401 */
    WEBHOOKSIG_BAD_SIGNATURE, /* the HMAC does not match: 401 */
    WEBHOOKSIG_REPLAYED,      /* this nonce was accepted within the window: 401 */
    WEBHOOKSIG_BUSY,          /* the replay memory is full of live nonces: 503 */
} WebhookSigResult;

typedef struct WebhookNonce {
    uint8_t hash[32]; /* SHA-256 of the nonce */
    int64_t ts;       /* its request's timestamp (s) */
} WebhookNonce;

/* The nonces accepted recently (zero it to start). */
typedef struct WebhookNonces {
    WebhookNonce e[WEBHOOKSIG_MAX_NONCES];
    size_t n;
} WebhookNonces;

/*
 * Check one request: timestamp (decimal Unix seconds), nonce (1..WEBHOOKSIG_NONCE_MAX printable
 * characters), body, signature (64 hex digits, optionally prefixed "sha256="). On WEBHOOKSIG_OK
 * the nonce is remembered in seen; otherwise seen is unchanged and why says what was wrong (never
 * the secret or the expected signature).
 */
WebhookSigResult webhooksig_verify(const uint8_t *secret, size_t secret_len, const char *timestamp, const char *nonce,
                                   const uint8_t *body, size_t body_len, const char *signature, int64_t now_s,
                                   int64_t window_s, WebhookNonces *seen, char *why, size_t whylen);
/* The signature a sender computes (hex, 64 digits + NUL into out[65]): for tests and tools. 0 or -EINVAL. */
int webhooksig_sign(const uint8_t *secret, size_t secret_len, const char *timestamp, const char *nonce,
                    const uint8_t *body, size_t body_len, char out[65]);
/* The HTTP status for a result (200, 400, 401, 503). */
int webhooksig_http_status(WebhookSigResult r);

#endif
