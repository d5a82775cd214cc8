/*
 * alerts_internal: the Alerts structure shared by the alerts module's files: daemon/alerts/alerts.c
 * (routing, life cycle), alerts_outbox.c (the entries and their files), alerts_send.c (delivery),
 * alerts_cond.c (open conditions) and alerts_view.c (control commands and the operator's view).
 * Not for other modules.
 */
#ifndef DRSUP_ALERTS_INTERNAL_H
#define DRSUP_ALERTS_INTERNAL_H

#include "alerts/alertfmt.h"
#include "alerts/alerts.h"
#include "alerts/alerts_hold.h"

#define ALERTS_RECENT 8      /* last deliveries kept per channel */
#define ALERTS_MAX_DEAD 50   /* dead letters kept in memory per channel (files stay on disk) */
#define ALERTS_SLACK_BATCH 100

typedef enum {
    ENTRY_WRITING = 0,  /* being written to the outbox */
    ENTRY_READY,        /* on disk, waiting for its channel */
    ENTRY_SENDING,      /* in a transfer */
    ENTRY_REMOVING,     /* accepted or superseded; its file is being removed */
} AlertEntryState;

typedef struct AlertEntry {
    AlertMsg m;
    AlertEntryState state;
    bool durable;      /* its file exists */
    unsigned attempts; /* failed attempts so far */
    uint64_t enq_mono; /* loop time it was queued (or loaded) */
    int64_t created_ms;
    char *last_error;
    struct AlertEntry *prev, *next;
} AlertEntry;

typedef struct AlertDead {
    AlertMsg m;
    char *reason;
    int64_t ts_ms;
} AlertDead;

typedef struct AlertDelivery {
    int64_t ts_ms;
    bool ok;
    long http_status;
    unsigned n_alerts;
    uint64_t first_seq;
    double latency_ms;
    char what[200];
    char error[300];
} AlertDelivery;

typedef struct AlertSend AlertSend;

typedef struct AlertChanQ {
    Alerts *a;
    AlertChannel ch;
    AlertEntry *head, *tail;
    size_t n;
    AlertDead dead[ALERTS_MAX_DEAD]; /* ring, oldest first from dead_pos when full */
    size_t n_dead, dead_pos;
    uv_timer_t timer;
    AlertSend *sends;
    unsigned in_flight;
    unsigned fail_streak;
    bool refused;         /* the last answer was a permanent refusal (until a success) */
    uint64_t resume_mono; /* nothing is sent before this loop time (backoff, Retry-After) */
    uint64_t last_fail_mono; /* when the last failure was counted (concurrent failures count once) */
    char *pause_reason;
    AlertBucket bucket;
    AlertDelivery recent[ALERTS_RECENT];
    size_t n_recent, recent_pos;
    uint64_t delivered, dead_total, failed_attempts;
} AlertChanQ;

typedef struct AlertCondition {
    char *key, *kind, *summary;
    Severity severity; /* worst while open */
    int64_t opened_ms, last_ms;
    uint64_t occurrences, suppressed;
    unsigned channels; /* channels told about it */
    uint64_t last_enq_mono[ALERT_CH_COUNT];
    Severity sent_sev[ALERT_CH_COUNT];
    struct AlertCondition *next;
} AlertCondition;

struct Alerts {
    Core *core;
    int sub_id;
    bool loaded, closing, enabled, forcing;
    unsigned force_mask;
    char *dir;         /* state_dir/outbox, fixed at start */
    char *cond_path;   /* state_dir/alerts-conditions.json */
    bool cond_writing, cond_dirty;
    uint64_t next_seq;
    int64_t boot_ms;
    /* copies from configuration */
    char *source, *cluster, *pd_key, *pd_url, *slack_url, *webhook_url, *hmac, *hb_url;
    size_t hmac_len;
    uint64_t timeout_ms, retry_base_ms, retry_cap_ms, slack_ra_ms, repeat_ms, group_ms, hb_interval_ms;
    unsigned max_attempts;
    ConfigAlertRoute *routes;
    size_t n_routes;
    AlertChanQ q[ALERT_CH_COUNT];
    AlertCondition *conds;
    struct AlertEarly *early; /* events that arrived before the outbox was loaded, in order */
    size_t n_early;
    uint64_t follower_skipped; /* high availability: events not routed because this daemon did not lead */
    AlertHold hold;            /* high availability: a follower's events in its start grace (alerts_hold.h) */
    /* heartbeat */
    uv_timer_t hb_timer;
    bool hb_busy;
    uint64_t hb_id, hb_started_mono, hb_ok_count, hb_fail_count;
    int64_t hb_last_ok_ms, hb_last_try_ms;
    char *hb_error;
    /* life cycle */
    int pending_works, pending_handles;
    void (*closed_cb)(void *);
    void *closed_data;
    uint32_t rng;
};

/* alerts.c */
/* Is channel ch configured (has its URL / key)? */
bool alerts__configured(const Alerts *a, AlertChannel ch);
/* Wall-clock time of loop time `mono` (ms since the epoch). */
int64_t alerts__wall_of(const Alerts *a, uint64_t mono);
/* Send what may be sent now on q, or arm its timer (alerts_send.c). */
void alerts__pump(AlertChanQ *q);
/* Cancel q's transfers; their deliveries go back to ready (alerts_send.c). */
void alerts__cancel_sends(AlertChanQ *q);
/* Accepted or superseded: remove the file (thread pool), then free the entry (alerts_outbox.c). */
void alerts__remove_entry(AlertChanQ *q, AlertEntry *e);
/* Refused for good or out of attempts: to the dead letters and outbox/dead/ (alerts_outbox.c). */
void alerts__bury(AlertChanQ *q, AlertEntry *e, const char *reason);
uint32_t alerts__rand(Alerts *a);
/* The heartbeat timer's callback: one GET to the heartbeat URL unless one is under way (alerts_send.c). */
void alerts__heartbeat_tick(uv_timer_t *t);
/* Open conditions (alerts_cond.c). */
AlertCondition *alerts__cond_find(Alerts *a, const char *key);
AlertCondition *alerts__cond_open(Alerts *a, const char *key, const char *kind, Severity sev, int64_t ts);
void alerts__cond_free(AlertCondition *c);
void alerts__cond_remove(Alerts *a, AlertCondition *c);
/* The set as JSON text (caller frees; NULL on OOM), and back (adds the conditions; count or -EINVAL). */
char *alerts__conds_to_text(const Alerts *a);
int alerts__conds_from_text(Alerts *a, const char *text, size_t len);
/* Write the set to disk soon (thread pool; one write at a time, the newest state wins). */
void alerts__conds_save(Alerts *a);
/* PagerDuty sends only the newest state per dedup key: drop whichever of e and its older or newer
 * unsent twins is superseded, adding up occurrences (alerts.c). */
void alerts__coalesce_pd(AlertChanQ *q, AlertEntry *e);
/* Route the events that arrived before the outbox was loaded, in order (alerts.c). */
void alerts__replay_early(Alerts *a);
/* The leader's start grace is over (leader_on_settled): page or drop the held alerts. */
void alerts__leader_settled(void *data);
/* Free a closing Alerts once no work and no handle is pending; then its closed callback (alerts.c). */
void alerts__maybe_closed(Alerts *a);
/* The entries (alerts_outbox.c): free one (not linked), append one to its channel's queue. */
void alerts__entry_free(AlertEntry *e);
void alerts__list_append(AlertChanQ *q, AlertEntry *e);
/* Write a queued entry's file (thread pool): ENTRY_WRITING, then ENTRY_READY and the channel
 * pumped; when it cannot be queued the entry is delivered from memory only (alerts_outbox.c). */
void alerts__start_write(Alerts *a, AlertEntry *e);
/* Load the outbox and the open conditions (thread pool); then replay the early events and pump
 * every channel. 0 or a negative code (alerts_outbox.c). */
int alerts__outbox_load(Alerts *a);
/* Register `alerts`, `alert.test` and `alerts.resolve` (alerts_view.c). */
int alerts__register_commands(Alerts *a);

#endif
