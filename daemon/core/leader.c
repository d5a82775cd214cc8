/*
 * leader: the election in etcd, the lease kept on this daemon's own clock, the fencing token
 * (see leader.h and docs/ha.md).
 *
 * One election request is in flight at a time (a range of the leader key, a lease grant, the
 * create transaction or a keep-alive); guarded puts and the step-down's revoke run beside it.
 * Validity is counted from the moment a grant or keep-alive was SENT, on CLOCK_MONOTONIC: etcd
 * may extend a lease after its own leader changes, so its view is never trusted to end ours.
 */
#include "core/leader.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "clock.h"
#include "err.h"
#include "etcdgw.h"
#include "log.h"

typedef enum { LS_OFF = 0, LS_FOLLOWER, LS_LEADER, LS_HOLD } LeaderState;
typedef enum { LR_RANGE, LR_GRANT, LR_CREATE, LR_KEEPALIVE, LR_REVOKE, LR_PUT, LR_GET } LeaderReqKind;

typedef struct LeaderReq LeaderReq;
struct LeaderReq {
    Leader *l;
    LeaderReqKind kind;
    uint64_t id;
    uint64_t sent_us;
    LeaderDoneFn done;
    LeaderGotFn got; /* LR_GET */
    void *data;
    LeaderReq *next;
};

struct Leader {
    uv_loop_t *loop;
    HttpClient *http;
    EventBus *events;
    bool enabled;
    char **endpoints;
    size_t n_endpoints, ep;
    char *prefix, *node, *key;
    uint64_t ttl_ms, poll_ms, timeout_ms, hold_ms;

    LeaderState state;
    bool busy;                /* an election request is in flight */
    bool was_leader;          /* acted in this process: rejoins only through a restart */
    uv_timer_t tick, deadline;
    bool timers;
    int64_t lease_id, lease_ttl_s;
    uint64_t grant_sent_us;
    uint64_t valid_until_us;  /* CLOCK_MONOTONIC: acting only before this */
    uint64_t hold_until_us;
    int64_t token;            /* the leader key's create revision, while leader */
    char *holder;             /* who the key names (this node while leader) */
    int64_t holder_rev;
    uint64_t holder_seen_us;  /* when etcd last named another node as the leader */
    uint64_t started_us;      /* when ha was turned on */
    uint64_t unreachable_us;  /* since when no etcd endpoint has answered (0: one answers) */
    bool etcd_alarm;          /* condition ha.etcd:NODE open */
    bool answered;            /* etcd has answered a read of the leader key since then */
    bool settled;             /* the start grace is over (answered, or one TTL passed) */
    uv_timer_t grace;         /* ends the start grace one TTL after start */
    void (*settled_fn)(void *data);
    void *settled_data;
    int64_t since_ms, renewed_ms;
    char last_error[256];
    LeaderReq *reqs;

    LeaderChangedFn fn;
    void *fn_data;
    bool closing;
    int open_handles;
    void (*closed_cb)(void *data);
    void *closed_data;
};

static void leader_tick(Leader *l);

Leader *leader_new(uv_loop_t *loop, HttpClient *http, EventBus *events)
{
    Leader *l = calloc(1, sizeof(*l));
    if (l) {
        l->loop = loop;
        l->http = http;
        l->events = events;
    }
    return l;
}

void leader_on_change(Leader *l, LeaderChangedFn fn, void *data)
{
    l->fn = fn;
    l->fn_data = data;
}

bool leader_enabled(const Leader *l)
{
    return l && l->enabled;
}

bool leader_acting(const Leader *l)
{
    if (!leader_enabled(l))
        return true;
    return l->state == LS_LEADER && clock_mono_us() < l->valid_until_us;
}

LeaderGate leader_alert_gate(const Leader *l)
{
    if (!leader_enabled(l) || leader_acting(l))
        return LEADER_GATE_PAGE;
    uint64_t now = clock_mono_us();
    if (!l->answered) /* just started: the first read decides, for at most one TTL */
        return !l->settled && now - l->started_us < l->ttl_ms * 1000u ? LEADER_GATE_HOLD : LEADER_GATE_PAGE;
    if (!l->holder || !strcmp(l->holder, l->node) || !l->holder_seen_us)
        return LEADER_GATE_PAGE;
    return now - l->holder_seen_us < 2 * l->ttl_ms * 1000u ? LEADER_GATE_QUIET : LEADER_GATE_PAGE;
}

void leader_on_settled(Leader *l, void (*fn)(void *data), void *data)
{
    if (!l)
        return;
    l->settled_fn = fn;
    l->settled_data = data;
}

/* The start grace is over: tell the listener once. */
static void leader_settle(Leader *l)
{
    if (l->settled)
        return;
    l->settled = true;
    uv_timer_stop(&l->grace);
    if (l->settled_fn && !l->closing)
        l->settled_fn(l->settled_data);
}

static void leader_on_grace(uv_timer_t *t)
{
    Leader *l = t->data;
    if (!l->answered)
        log_warning("ha", "etcd has not answered within the TTL (%" PRIu64 " s) since start: every alert is paged "
                    "until it names a leader", l->ttl_ms / 1000);
    leader_settle(l);
}

int64_t leader_token(const Leader *l)
{
    return leader_enabled(l) && leader_acting(l) ? l->token : 0;
}

void leader_refusal(const Leader *l, char *why, size_t n)
{
    snprintf(why, n, "not the leader (leader: %s)", l && l->holder && l->state != LS_LEADER ? l->holder : "none");
}

static void leader_free_strings(Leader *l)
{
    for (size_t i = 0; i < l->n_endpoints; i++)
        free(l->endpoints[i]);
    free(l->endpoints);
    l->endpoints = NULL;
    l->n_endpoints = 0;
    free(l->prefix);
    free(l->node);
    free(l->key);
    l->prefix = l->node = l->key = NULL;
}

int leader_check_config(const Leader *l, const Config *cfg, char *err, size_t errlen)
{
    if (!l || !l->timers)
        return 0; /* before the start (or --check-config): anything config_load accepted */
    if (cfg->ha.enabled != l->enabled) {
        snprintf(err, errlen, "turning 'ha' on or off needs a restart");
        return DR_ECONFIG;
    }
    if (l->enabled && (strcmp(cfg->ha.node, l->node) || strcmp(cfg->ha.prefix, l->prefix))) {
        snprintf(err, errlen, "'ha.node' and 'ha.prefix' are read at start: changing them needs a restart");
        return DR_ECONFIG;
    }
    return 0;
}

static void leader_on_handle_closed(uv_handle_t *h)
{
    Leader *l = h->data;
    if (--l->open_handles > 0)
        return;
    void (*cb)(void *) = l->closed_cb;
    void *data = l->closed_data;
    leader_free_strings(l);
    free(l->holder);
    free(l);
    if (cb)
        cb(data);
}

int leader_apply_config(Leader *l, const Config *cfg)
{
    const ConfigHa *h = &cfg->ha;
    if (l->closing)
        return DR_ECANCELED;
    if (!h->enabled)
        return 0;
    char **eps = calloc(h->n_endpoints, sizeof(*eps));
    if (!eps)
        return -ENOMEM;
    for (size_t i = 0; i < h->n_endpoints; i++)
        if (!(eps[i] = strdup(h->endpoints[i]))) {
            while (i-- > 0)
                free(eps[i]);
            free(eps);
            return -ENOMEM;
        }
    for (size_t i = 0; i < l->n_endpoints; i++)
        free(l->endpoints[i]);
    free(l->endpoints);
    l->endpoints = eps;
    l->n_endpoints = h->n_endpoints;
    l->ep = 0;
    l->ttl_ms = h->ttl_ms;
    l->poll_ms = h->poll_interval_ms;
    l->timeout_ms = h->request_timeout_ms;
    l->hold_ms = h->step_down_hold_ms;
    if (l->enabled)
        return 0; /* node and prefix are read once (leader_check_config) */
    l->prefix = strdup(h->prefix);
    l->node = strdup(h->node);
    if (!l->prefix || !l->node || asprintf(&l->key, "%sleader", h->prefix) < 0) {
        l->key = NULL;
        leader_free_strings(l);
        return -ENOMEM;
    }
    l->enabled = true;
    l->state = LS_FOLLOWER;
    l->started_us = clock_mono_us();
    uv_timer_init(l->loop, &l->tick);
    uv_timer_init(l->loop, &l->deadline);
    uv_timer_init(l->loop, &l->grace);
    l->tick.data = l->deadline.data = l->grace.data = l;
    l->open_handles = 3;
    l->timers = true;
    uv_timer_start(&l->grace, leader_on_grace, l->ttl_ms, 0);
    log_notice("ha", "high availability on: node '%s', leader key '%s', TTL %" PRIu64 " s, %zu etcd endpoint(s)",
               l->node, l->key, l->ttl_ms / 1000, l->n_endpoints);
    leader_tick(l);
    return 0;
}

/* ---- requests ---- */

static void leader_on_answer(int err, const HttpResponse *resp, const char *errmsg, void *data);

static int leader_post(Leader *l, LeaderReqKind kind, const char *path, char *body, LeaderDoneFn done, void *data)
{
    char url[1024];
    const char *hdrs[] = {"Content-Type: application/json"};
    LeaderReq *q = body ? calloc(1, sizeof(*q)) : NULL;
    int r;

    if (!q) {
        free(body);
        return -ENOMEM;
    }
    const char *ep = l->endpoints[l->ep % l->n_endpoints];
    size_t n = strlen(ep);
    snprintf(url, sizeof(url), "%s%s%s", ep, n && ep[n - 1] == '/' ? "" : "/", path);
    *q = (LeaderReq){.l = l, .kind = kind, .sent_us = clock_mono_us(), .done = done, .data = data};
    HttpRequest req = {.method = "POST", .url = url, .headers = hdrs, .n_headers = 1, .body = body,
                       .body_len = strlen(body), .timeout_ms = l->timeout_ms, .connect_timeout_ms = l->timeout_ms,
                       .max_response = 64 * 1024};
    r = httpc_request(l->http, &req, leader_on_answer, q, &q->id);
    free(body);
    if (r < 0) {
        free(q);
        return r;
    }
    q->next = l->reqs;
    l->reqs = q;
    return 0;
}

static void leader_note_error(Leader *l, const char *what, const char *msg)
{
    if (strcmp(l->last_error, msg) != 0)
        log_warning("ha", "%s: %s", what, msg);
    snprintf(l->last_error, sizeof(l->last_error), "%s", msg);
}

static void leader_set_holder(Leader *l, const char *name, int64_t rev)
{
    if (!l->holder || !name || strcmp(l->holder, name) || l->holder_rev != rev) {
        free(l->holder);
        l->holder = name ? strdup(name) : NULL;
        l->holder_rev = rev;
        if (name && l->state != LS_LEADER)
            log_info("ha", "the leader is '%s' (revision %" PRId64 ")", name, rev);
    }
}

static void leader_on_tick(uv_timer_t *t)
{
    leader_tick(t->data);
}

static void leader_arm_tick(Leader *l, uint64_t ms)
{
    if (!l->closing)
        uv_timer_start(&l->tick, leader_on_tick, ms, 0);
}

/* Stop acting now (the caller says why). */
static void leader_lose(Leader *l, const char *why, bool planned)
{
    if (l->state != LS_LEADER)
        return;
    l->state = LS_HOLD;
    l->valid_until_us = 0;
    l->hold_until_us = clock_mono_us() + l->hold_ms * 1000;
    uv_timer_stop(&l->deadline);
    events_emit(l->events, planned ? SEV_WARNING : SEV_CRITICAL, "ha.leader", NULL, false, NULL,
                "node '%s' stopped acting as the leader (token %" PRId64 "): %s", l->node, l->token, why);
    leader_set_holder(l, NULL, 0);
    if (l->fn && !l->closing)
        l->fn(LEADER_LOST, l->fn_data);
    leader_arm_tick(l, l->poll_ms);
}

static void leader_on_deadline(uv_timer_t *t)
{
    Leader *l = t->data;
    if (l->state == LS_LEADER && clock_mono_us() >= l->valid_until_us)
        leader_lose(l, "the lease was not renewed within its TTL (this daemon's own clock)", false);
    else if (l->state == LS_LEADER)
        uv_timer_start(&l->deadline, leader_on_deadline, (l->valid_until_us - clock_mono_us()) / 1000 + 1, 0);
}

static void leader_renewed(Leader *l, uint64_t sent_us, int64_t ttl_s)
{
    uint64_t ttl_ms = (uint64_t)ttl_s * 1000 < l->ttl_ms ? (uint64_t)ttl_s * 1000 : l->ttl_ms;
    uint64_t until = sent_us + ttl_ms * 1000;
    if (until > l->valid_until_us)
        l->valid_until_us = until;
    l->renewed_ms = clock_wall_ms();
    uint64_t now = clock_mono_us();
    uv_timer_start(&l->deadline, leader_on_deadline, l->valid_until_us > now ? (l->valid_until_us - now) / 1000 + 1 : 0,
                   0);
}

static void leader_became(Leader *l, int64_t revision)
{
    l->state = LS_LEADER;
    l->token = revision;
    l->was_leader = true;
    l->since_ms = clock_wall_ms();
    leader_set_holder(l, l->node, revision);
    leader_renewed(l, l->grant_sent_us, l->lease_ttl_s);
    events_emit(l->events, SEV_WARNING, "ha.leader", NULL, false, NULL,
                "node '%s' is the leader now (fencing token %" PRId64 ", lease %" PRId64 ")", l->node, revision,
                l->lease_id);
    if (l->fn)
        l->fn(LEADER_BECAME, l->fn_data);
}

/* A lost candidate's unused lease: revoked best-effort, a failure ignored (it expires within its TTL). */
static void leader_revoke_quietly(Leader *l, int64_t lease_id)
{
    if (lease_id)
        (void)leader_post(l, LR_REVOKE, "v3/lease/revoke", etcdgw_lease_id_body(lease_id), NULL, NULL);
}

/* etcd unreachable for longer than the TTL opens ha.etcd:NODE (error): this daemon can neither
 * lead nor take over, whoever leads; the first answer resolves it. An HTTP error answer is an
 * answer (etcd is there). */
static void leader_reachability(Leader *l, int err, const char *msg)
{
    char cond[96];
    uint64_t now = clock_mono_us();

    snprintf(cond, sizeof(cond), "ha.etcd:%s", l->node);
    if (err == 0) {
        l->unreachable_us = 0;
        if (l->etcd_alarm) {
            l->etcd_alarm = false;
            events_emit(l->events, SEV_INFO, "ha.etcd", cond, true, NULL, "node '%s' reaches etcd again", l->node);
        }
        return;
    }
    if (err == DR_ECANCELED)
        return;
    if (!l->unreachable_us)
        l->unreachable_us = now;
    if (!l->etcd_alarm && now - l->unreachable_us >= l->ttl_ms * 1000u) {
        l->etcd_alarm = true;
        events_emit(l->events, SEV_ERROR, "ha.etcd", cond, false, NULL,
                    "node '%s' has reached no etcd endpoint for %" PRIu64 " s: it can neither lead nor take over (%s)",
                    l->node, (now - l->unreachable_us) / 1000000u, msg[0] ? msg : "no answer");
    }
}

static void leader_handle(Leader *l, LeaderReq *q, int err, const HttpResponse *resp, const char *errmsg)
{
    char msg[256] = "";
    int r = err;
    static const char *const what[] = {"reading the leader key", "granting a lease", "campaigning",
                                       "renewing the lease", "revoking the lease", "writing state to etcd",
                                       "reading state from etcd"};

    if (r == 0 && resp->status != 200) {
        /* the gateway's errors come as JSON with a non-200 status: read its message */
        r = etcdgw_parse_plain(resp->body, resp->body_len, NULL, msg, sizeof(msg));
        if (r == 0) {
            snprintf(msg, sizeof(msg), "etcd answered HTTP %ld", resp->status);
            r = DR_EHTTP;
        }
    } else if (r < 0) {
        snprintf(msg, sizeof(msg), "%s", errmsg);
    }
    if (err != 0 && err != DR_ECANCELED)
        l->ep++; /* no answer (refused, timed out): the next endpoint next time */
    leader_reachability(l, err, msg);

    switch (q->kind) {
    case LR_RANGE: {
        EtcdKv kv;
        l->busy = false;
        if (r == 0)
            r = etcdgw_parse_range(resp->body, resp->body_len, &kv, NULL, msg, sizeof(msg));
        if (r < 0) {
            leader_note_error(l, what[q->kind], msg);
            break;
        }
        l->last_error[0] = '\0';
        l->answered = true;
        if (l->state == LS_LEADER) {
            /* the leader's own check after each renewal: its key still stands, unchanged */
            if (!kv.found || kv.create_revision != l->token)
                leader_lose(l, kv.found ? "the leader key was replaced in etcd" : "the leader key was deleted in etcd",
                            false);
        } else if (kv.found) {
            leader_set_holder(l, kv.value, kv.create_revision);
            l->holder_seen_us = clock_mono_us();
        } else if (l->state == LS_FOLLOWER) {
            leader_set_holder(l, NULL, 0);
            l->busy = true;
            l->grant_sent_us = clock_mono_us();
            r = leader_post(l, LR_GRANT, "v3/lease/grant", etcdgw_grant_body((int64_t)(l->ttl_ms / 1000)), NULL, NULL);
            if (r < 0) {
                l->busy = false;
                leader_note_error(l, what[LR_GRANT], err_str(r));
            }
        }
        etcdgw_kv_done(&kv);
        leader_settle(l); /* after the holder is known: the listener asks leader_alert_gate */
        break;
    }
    case LR_GRANT:
        l->busy = false;
        if (r == 0)
            r = etcdgw_parse_grant(resp->body, resp->body_len, &l->lease_id, &l->lease_ttl_s, msg, sizeof(msg));
        if (r < 0) {
            leader_note_error(l, what[q->kind], msg);
            break;
        }
        l->grant_sent_us = q->sent_us;
        l->busy = true;
        r = leader_post(l, LR_CREATE, "v3/kv/txn", etcdgw_create_body(l->key, l->node, l->lease_id), NULL, NULL);
        if (r < 0) {
            l->busy = false;
            leader_note_error(l, what[LR_CREATE], err_str(r));
        }
        break;
    case LR_CREATE: {
        bool won = false;
        int64_t rev = 0;
        EtcdKv holder;
        l->busy = false;
        if (r == 0)
            r = etcdgw_parse_create(resp->body, resp->body_len, &won, &rev, &holder, msg, sizeof(msg));
        if (r < 0) {
            leader_note_error(l, what[q->kind], msg);
            leader_revoke_quietly(l, l->lease_id);
            l->lease_id = 0;
            break;
        }
        l->last_error[0] = '\0';
        if (won && l->state == LS_FOLLOWER && clock_mono_us() < l->grant_sent_us + l->ttl_ms * 1000) {
            leader_became(l, rev);
        } else {
            if (holder.found)
                leader_set_holder(l, holder.value, holder.create_revision);
            leader_revoke_quietly(l, l->lease_id); /* lost (or won too late): the key goes with it */
            l->lease_id = 0;
        }
        etcdgw_kv_done(&holder);
        break;
    }
    case LR_KEEPALIVE: {
        int64_t ttl = 0;
        l->busy = false;
        if (r == 0)
            r = etcdgw_parse_keepalive(resp->body, resp->body_len, &ttl, msg, sizeof(msg));
        if (l->state != LS_LEADER)
            break;
        if (r == -ENOENT) {
            leader_lose(l, "etcd says the lease has expired", false);
        } else if (r < 0) {
            /* retry soon (another endpoint, or etcd electing its own leader): the lease is still ours */
            leader_note_error(l, what[q->kind], msg);
            leader_arm_tick(l, l->ttl_ms / 10);
        } else {
            l->last_error[0] = '\0';
            leader_renewed(l, q->sent_us, ttl);
            l->busy = true; /* then: does the key still stand? */
            if (leader_post(l, LR_RANGE, "v3/kv/range", etcdgw_range_body(l->key), NULL, NULL) < 0)
                l->busy = false;
        }
        break;
    }
    case LR_REVOKE:
        if (r == 0)
            r = etcdgw_parse_plain(resp->body, resp->body_len, NULL, msg, sizeof(msg));
        if (q->done)
            q->done(r, r < 0 ? msg : "stepped down: the lease is revoked and the leader key deleted", q->data);
        return;
    case LR_PUT: {
        bool done = false;
        if (r == 0)
            r = etcdgw_parse_put_if(resp->body, resp->body_len, &done, msg, sizeof(msg));
        if (r == 0 && !done) {
            snprintf(msg, sizeof(msg), "not written: this daemon's leader key no longer stands (deposed)");
            r = DR_ENOTLEADER;
        }
        if (q->done)
            q->done(r, r < 0 ? msg : "written", q->data);
        return;
    }
    case LR_GET: {
        EtcdKv kv = {0};
        if (r == 0)
            r = etcdgw_parse_range(resp->body, resp->body_len, &kv, NULL, msg, sizeof(msg));
        q->got(r, r == 0 && kv.found ? kv.value : NULL, r < 0 ? msg : "read", q->data);
        if (r == 0)
            etcdgw_kv_done(&kv);
        return;
    }
    }
}

static void leader_on_answer(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    LeaderReq *q = data;
    Leader *l = q->l;
    for (LeaderReq **p = &l->reqs; *p; p = &(*p)->next)
        if (*p == q) {
            *p = q->next;
            break;
        }
    if (l->closing) {
        if (q->done)
            q->done(DR_ECANCELED, "the daemon is stopping", q->data);
        if (q->got)
            q->got(DR_ECANCELED, NULL, "the daemon is stopping", q->data);
        if (q->kind != LR_PUT && q->kind != LR_REVOKE && q->kind != LR_GET)
            l->busy = false;
    } else {
        leader_handle(l, q, err, resp, errmsg);
    }
    free(q);
}

/* ---- the cycle ---- */

static void leader_tick(Leader *l)
{
    int r = 0;
    if (l->closing || !l->enabled)
        return;
    switch (l->state) {
    case LS_OFF:
        return;
    case LS_HOLD:
        if (clock_mono_us() < l->hold_until_us) {
            /* no campaign, but keep reading who leads (drctl leader on a former leader tells it) */
            uint64_t left = (l->hold_until_us - clock_mono_us()) / 1000 + 1;
            if (!l->busy) {
                l->busy = true;
                r = leader_post(l, LR_RANGE, "v3/kv/range", etcdgw_range_body(l->key), NULL, NULL);
            }
            leader_arm_tick(l, left < l->poll_ms ? left : l->poll_ms);
            break;
        }
        if (l->was_leader) {
            /* What this process knows of the runs may be stale: a fresh start re-reads it all. */
            log_notice("ha", "the hold after stepping down is over: restarting to campaign again");
            if (l->fn)
                l->fn(LEADER_REJOIN, l->fn_data);
            return;
        }
        l->state = LS_FOLLOWER;
        __attribute__((fallthrough)); /* now a follower: poll like one */
    case LS_FOLLOWER:
        if (!l->busy) {
            l->busy = true;
            r = leader_post(l, LR_RANGE, "v3/kv/range", etcdgw_range_body(l->key), NULL, NULL);
        }
        leader_arm_tick(l, l->poll_ms);
        break;
    case LS_LEADER:
        if (!l->busy) {
            l->busy = true;
            r = leader_post(l, LR_KEEPALIVE, "v3/lease/keepalive", etcdgw_lease_id_body(l->lease_id), NULL, NULL);
        }
        leader_arm_tick(l, l->ttl_ms / 3);
        break;
    }
    if (r < 0) {
        l->busy = false;
        leader_note_error(l, "cannot send a request to etcd", err_str(r));
    }
}

void leader_put_state(Leader *l, const char *name, const char *value, LeaderDoneFn done, void *data)
{
    char why[256], *key = NULL;
    if (!leader_enabled(l)) {
        done(0, "no high availability", data);
        return;
    }
    if (!leader_acting(l)) {
        leader_refusal(l, why, sizeof(why));
        done(DR_ENOTLEADER, why, data);
        return;
    }
    int r = asprintf(&key, "%s%s", l->prefix, name) < 0 ? -ENOMEM : 0;
    if (r == 0)
        r = leader_post(l, LR_PUT, "v3/kv/txn", etcdgw_put_if_body(key, value, l->key, l->token), done, data);
    free(key);
    if (r < 0)
        done(r, err_str(r), data);
}

void leader_get_state(Leader *l, const char *name, LeaderGotFn got, void *data)
{
    char *key = NULL;
    if (!leader_enabled(l)) {
        got(0, NULL, "no high availability", data);
        return;
    }
    int r = asprintf(&key, "%s%s", l->prefix, name) < 0 ? -ENOMEM : 0;
    if (r == 0)
        r = leader_post(l, LR_GET, "v3/kv/range", etcdgw_range_body(key), NULL, data);
    free(key);
    if (r < 0) {
        got(r, NULL, err_str(r), data);
        return;
    }
    l->reqs->got = got; /* leader_post put it first */
}

void leader_step_down(Leader *l, LeaderDoneFn done, void *data)
{
    char why[256];
    if (!leader_enabled(l)) {
        done(-ENOTSUP, "high availability is off (no 'ha' section): there is no leader to step down", data);
        return;
    }
    if (!leader_acting(l)) {
        leader_refusal(l, why, sizeof(why));
        done(DR_ENOTLEADER, why, data);
        return;
    }
    int64_t lease = l->lease_id;
    leader_lose(l, "drctl step-down (a planned hand-over)", true);
    l->lease_id = 0;
    int r = leader_post(l, LR_REVOKE, "v3/lease/revoke", etcdgw_lease_id_body(lease), done, data);
    if (r < 0)
        done(r, "stopped acting, but cannot revoke the lease: it expires within its TTL", data);
}

json_t *leader_status_json(const Leader *l)
{
    if (!leader_enabled(l))
        return json_pack("{s:b,s:b}", "enabled", 0, "acting", 1);
    bool acting = leader_acting(l);
    uint64_t now = clock_mono_us();
    const char *role = l->state == LS_LEADER ? (acting ? "leader" : "expiring")
                       : l->state == LS_HOLD ? "stepped_down" : "follower";
    char lease[24];
    snprintf(lease, sizeof(lease), "%" PRId64, l->lease_id);
    json_t *j = json_pack("{s:b,s:s,s:s,s:b,s:s?,s:I,s:I,s:s}", "enabled", 1, "node", l->node, "role", role, "acting",
                          acting, "leader", l->holder, "revision", (json_int_t)l->holder_rev, "ttl_s",
                          (json_int_t)(l->ttl_ms / 1000), "key", l->key);
    if (!j)
        return NULL;
    if (l->state == LS_LEADER) {
        json_object_set_new(j, "since_ms", json_integer(l->since_ms));
        json_object_set_new(j, "token", json_integer(l->token));
        json_object_set_new(j, "lease_id", json_string(lease));
        json_object_set_new(j, "lease_remaining_ms",
                            json_integer(l->valid_until_us > now ? (json_int_t)((l->valid_until_us - now) / 1000) : 0));
        json_object_set_new(j, "renewed_ms", json_integer(l->renewed_ms));
    }
    if (l->state == LS_HOLD)
        json_object_set_new(j, "hold_remaining_ms",
                            json_integer(l->hold_until_us > now ? (json_int_t)((l->hold_until_us - now) / 1000) : 0));
    json_object_set_new(j, "endpoint", json_string(l->endpoints[l->ep % l->n_endpoints]));
    if (l->last_error[0])
        json_object_set_new(j, "last_error", json_string(l->last_error));
    return j;
}

static void leader_close_now(Leader *l);

static void leader_on_close_revoked(int result, const char *message, void *data)
{
    Leader *l = data;
    (void)result;
    (void)message;
    leader_close_now(l);
}

void leader_close(Leader *l, void (*closed_cb)(void *data), void *data)
{
    if (!l) {
        if (closed_cb)
            closed_cb(data);
        return;
    }
    l->closing = true;
    l->closed_cb = closed_cb;
    l->closed_data = data;
    if (l->state == LS_LEADER && leader_acting(l) && l->lease_id) {
        /* A clean stop hands over at once: stop acting, revoke the lease (its key goes with it),
         * then close; bounded by ha.request_timeout. */
        int64_t lease = l->lease_id;
        leader_lose(l, "the daemon is stopping: the lease is revoked, a follower takes over at its next poll", true);
        l->lease_id = 0;
        if (leader_post(l, LR_REVOKE, "v3/lease/revoke", etcdgw_lease_id_body(lease), leader_on_close_revoked, l) == 0)
            return;
    }
    leader_close_now(l);
}

static void leader_close_now(Leader *l)
{
    void (*closed_cb)(void *data) = l->closed_cb;
    void *data = l->closed_data;
    while (l->reqs)
        if (httpc_cancel(l->http, l->reqs->id) < 0) {
            LeaderReq *q = l->reqs; /* cannot happen: its callback has not run yet */
            l->reqs = q->next;
            free(q);
        }
    if (l->state == LS_LEADER)
        log_notice("ha", "stopping: the lease expires in etcd within its TTL (%" PRIu64 " s)", l->ttl_ms / 1000);
    if (!l->timers) {
        leader_free_strings(l);
        free(l->holder);
        free(l);
        if (closed_cb)
            closed_cb(data);
        return;
    }
    uv_close((uv_handle_t *)&l->tick, leader_on_handle_closed);
    uv_close((uv_handle_t *)&l->deadline, leader_on_handle_closed);
    uv_close((uv_handle_t *)&l->grace, leader_on_handle_closed);
}
