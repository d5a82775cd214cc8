/*
 * alertfmt: the pure parts of alert delivery, with no I/O and no clock of their own.
 *
 * Owns what goes on the wire and the arithmetic of when: the PagerDuty Events API v2 body
 * (trigger and resolve), the Slack incoming-webhook message (one alert, or a burst grouped into
 * one message), the generic webhook body and its HMAC-SHA256 signature, dedup keys, ISO 8601
 * timestamps, Slack escaping and limits, how a channel's answer is classified (accepted, retry,
 * permanent failure), Retry-After, the per-channel token bucket, and route matching (the retry
 * delays themselves are lib/backoff's). daemon/alerts/alerts.c owns the policy and the I/O around these.
 */
#ifndef DRSUP_ALERTFMT_H
#define DRSUP_ALERTFMT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "core/events.h"

#define ALERTFMT_PD_SUMMARY_MAX 1024u  /* PagerDuty payload.summary limit, characters */
#define ALERTFMT_PD_DEDUP_MAX 255u     /* PagerDuty dedup_key limit */
#define ALERTFMT_SLACK_SECTION_MAX 3000u /* Slack section block text limit */

/* One alert as queued in the outbox: an event plus what delivery needs. Owned strings. */
typedef struct AlertMsg {
    uint64_t seq;          /* outbox sequence number */
    AlertChannel channel;
    Severity severity;
    char *kind;
    char *condition;       /* NULL for a one-off event */
    bool resolved;
    char *summary;
    json_t *details;       /* object or NULL (owned reference) */
    int64_t ts_ms;         /* when the event happened */
    char *dedup_key;
    uint64_t occurrences;  /* events folded into this one (>= 1) */
} AlertMsg;

/* Context of the sending daemon. Borrowed. */
typedef struct AlertCtx {
    const char *source;  /* hostname */
    const char *cluster;
} AlertCtx;

typedef enum { ALERTFMT_ACCEPTED = 0, ALERTFMT_RETRY, ALERTFMT_PERMANENT } AlertOutcome;

typedef struct AlertBucket {
    double tokens;
    double rate_per_ms;
    double burst;
    uint64_t last_ms;
} AlertBucket;

const char *alertfmt_channel_name(AlertChannel ch);
/* 0 and *ret set, or -EINVAL. */
int alertfmt_channel_parse(const char *name, AlertChannel *ret);

void alertfmt_msg_free_fields(AlertMsg *m);
/* The message as the outbox stores it (new reference), and back. parse: 0 or -EINVAL. */
json_t *alertfmt_msg_to_json(const AlertMsg *m);
int alertfmt_msg_from_json(const json_t *j, AlertMsg *ret);

/* "2015-07-17T08:42:58.315+0000" (UTC). */
void alertfmt_iso8601(int64_t ms, char *out, size_t n);

/*
 * Dedup key: "drsup:<cluster>:<condition>" for a condition; "drsup:<cluster>:event:<boot_ms>.<seq>"
 * for a one-off event (unique across restarts). Keys longer than 255 bytes are cut and end with
 * 16 hex digits of their SHA-256, so distinct long keys stay distinct.
 */
void alertfmt_dedup_key(const char *cluster, const char *condition, int64_t boot_ms, uint64_t ev_seq, char *out,
                        size_t n);

/* Copy at most max_chars UTF-8 characters of s (never splitting a character); "…" marks a cut. */
char *alertfmt_truncate_utf8(const char *s, size_t max_chars);

/* PagerDuty Events API v2 body: trigger with payload, or resolve {routing_key, dedup_key,
 * event_action}. New reference. */
json_t *alertfmt_pagerduty(const AlertMsg *m, const AlertCtx *ctx, const char *routing_key);

/* Append s to buf with Slack's &, <, > escaped, stopping before max total bytes (never inside an
 * entity or a UTF-8 character). Returns false if something was cut. */
bool alertfmt_slack_escape(char *buf, size_t max, const char *s);

/* What the daemon does about it, and the drctl command to look closer, for an alert. */
const char *alertfmt_action_text(const AlertMsg *m);
const char *alertfmt_drctl_hint(const AlertMsg *m);

/* Slack message for msgs[0..n-1] (n >= 1): one alert, or a grouped summary. New reference. */
json_t *alertfmt_slack(const AlertMsg *const *msgs, size_t n, const AlertCtx *ctx);

/* Generic webhook body. sent_ms goes in the body, so the signature covers it. New reference. */
json_t *alertfmt_webhook(const AlertMsg *m, const AlertCtx *ctx, int64_t sent_ms);

/* out = lowercase hex HMAC-SHA256(key, body): 64 characters + NUL. 0 or DR_EINTERNAL. */
int alertfmt_hmac_hex(const void *key, size_t key_len, const void *body, size_t body_len, char out[65]);

/*
 * Classify a delivery result. err is httpc's (0 = a response arrived). PagerDuty: 202 accepted;
 * Slack: 200 with body "ok"; webhook: any 2xx. 429, 5xx, network errors and unexpected answers
 * are retried; any other 4xx is permanent (configuration error).
 */
AlertOutcome alertfmt_classify(AlertChannel ch, int err, long status, const char *body);


/* Retry-After as delta seconds ("120") or an HTTP date; 0 and *ret_ms (from now_ms, >= 0), or -EINVAL. */
int alertfmt_retry_after_ms(const char *value, int64_t now_ms, uint64_t *ret_ms);

/* Token bucket: rate tokens per second, at most burst stored; starts full. */
void alertfmt_bucket_init(AlertBucket *b, double rate_per_s, double burst, uint64_t now_ms);
/* Take one token: 0 when taken, else milliseconds until one is available (nothing taken). */
uint64_t alertfmt_bucket_take(AlertBucket *b, uint64_t now_ms);

/* Does route r match an event? (min_severity, kind and condition patterns, fnmatch). */
bool alertfmt_route_matches(const ConfigAlertRoute *r, Severity sev, const char *kind, const char *condition);

#endif
