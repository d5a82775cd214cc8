/*
 * Unit tests for the alert gate of high availability: daemon/core/leader's leader_alert_gate and
 * its start grace, and daemon/alerts/alerts_hold (what a follower holds until etcd's first answer).
 * etcd is scripted through a wrapped httpc_request (each read of the leader key is answered by the
 * test), the monotonic clock is skewed through a wrapped clock_mono_us. Pinned: before etcd's
 * first answer a follower holds (at most 64, the oldest dropped and counted), and is told once
 * when the grace ends; then it pages when nobody leads, keeps quiet while another node leads (for
 * two TTLs after etcd last named it), and pages when one TTL passes with no answer at all.
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
#include <uv.h>

#include "alerts/alerts_hold.h"
#include "config/config.h"
#include "core/events.h"
#include "core/leader.h"
#include "err.h"
#include "httpc.h"

// WRAP: httpc_request httpc_cancel clock_mono_us

/* ---- scripted etcd ---- */

typedef struct Sent {
    bool live;
    uint64_t id;
    char url[256];
    HttpDoneCb cb;
    void *data;
} Sent;

static Sent sent[8];
static uint64_t next_id = 1;
static uint64_t skew_us;

uint64_t __real_clock_mono_us(void);
uint64_t __wrap_clock_mono_us(void);
uint64_t __wrap_clock_mono_us(void)
{
    return __real_clock_mono_us() + skew_us;
}

int __wrap_httpc_request(HttpClient *c, const HttpRequest *req, HttpDoneCb cb, void *data, uint64_t *ret_id);
int __wrap_httpc_request(HttpClient *c, const HttpRequest *req, HttpDoneCb cb, void *data, uint64_t *ret_id)
{
    (void)c;
    for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++)
        if (!sent[i].live) {
            sent[i] = (Sent){.live = true, .id = next_id++, .cb = cb, .data = data};
            snprintf(sent[i].url, sizeof(sent[i].url), "%s", req->url);
            *ret_id = sent[i].id;
            return 0;
        }
    return -ENOMEM;
}

int __wrap_httpc_cancel(HttpClient *c, uint64_t id);
int __wrap_httpc_cancel(HttpClient *c, uint64_t id)
{
    (void)c;
    for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++)
        if (sent[i].live && sent[i].id == id) {
            sent[i].live = false;
            sent[i].cb(DR_ECANCELED, NULL, "canceled", sent[i].data);
            return 0;
        }
    return -ENOENT;
}

/* Answer the pending read of the leader key with body (HTTP 200). */
static void etcd_answers_range(const char *body)
{
    for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++)
        if (sent[i].live && strstr(sent[i].url, "v3/kv/range")) {
            HttpResponse resp = {.status = 200, .body = body, .body_len = strlen(body)};
            sent[i].live = false;
            sent[i].cb(0, &resp, NULL, sent[i].data);
            return;
        }
    fail_msg("no read of the leader key is pending");
}

/* {"value": "b"} under the leader key, or none. */
#define ETCD_LEADER_B                                                                                                \
    "{\"header\":{\"revision\":\"7\"},\"kvs\":[{\"key\":\"L2RyL2xlYWRlcg==\",\"create_revision\":\"7\","            \
    "\"mod_revision\":\"7\",\"version\":\"1\",\"value\":\"Yg==\"}],\"count\":\"1\"}"
#define ETCD_NO_LEADER "{\"header\":{\"revision\":\"7\"}}"

/* ---- a follower ---- */

typedef struct Fixture {
    uv_loop_t loop;
    EventBus *events;
    Leader *l;
    Config cfg;
    char *endpoints[1];
    unsigned settled;
} Fixture;

static void on_settled(void *data)
{
    ((Fixture *)data)->settled++;
}

static char ep[] = "http://127.0.0.1:1", prefix[] = "/dr/", node[] = "a";

static Fixture *follower_start(uint64_t ttl_ms)
{
    Fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    memset(sent, 0, sizeof(sent));
    skew_us = 0;
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->events = events_new();
    f->l = leader_new(&f->loop, (HttpClient *)(uintptr_t)1, f->events);
    assert_non_null(f->l);
    leader_on_settled(f->l, on_settled, f);
    f->endpoints[0] = ep;
    f->cfg.ha = (ConfigHa){.enabled = true, .endpoints = f->endpoints, .n_endpoints = 1, .prefix = prefix,
                           .node = node, .ttl_ms = ttl_ms, .poll_interval_ms = 60000, .request_timeout_ms = 1000,
                           .step_down_hold_ms = 1000};
    assert_int_equal(leader_apply_config(f->l, &f->cfg), 0);
    return f;
}

static void closed(void *data)
{
    *(bool *)data = true;
}

static void follower_stop(Fixture *f)
{
    bool done = false;
    leader_close(f->l, closed, &done);
    while (!done)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    events_free(f->events);
    free(f);
}

/* ---- the hold ---- */

static void collect(const Event *ev, void *data)
{
    char *out = data;
    size_t n = strlen(out);
    snprintf(out + n, 4096 - n, "%s%s", n ? "," : "", ev->summary);
}

static void hold_n(AlertHold *h, int from, int to)
{
    for (int i = from; i < to; i++) {
        char summary[32];
        json_t *det = json_pack("{s:i}", "i", i);
        snprintf(summary, sizeof(summary), "alert %d", i);
        Event ev = {.seq = (uint64_t)i, .severity = SEV_ERROR, .kind = "probe.database", .condition = "database.down:x",
                    .summary = summary, .details = det};
        assert_int_equal(alerts_hold_push(h, &ev), 0);
        json_decref(det);
    }
}

static void test_hold_is_bounded_oldest_dropped_and_counted(void **state)
{
    (void)state;
    static AlertHold h;
    char *out = calloc(1, 4096);
    assert_non_null(out);
    hold_n(&h, 0, ALERTS_HOLD_MAX + 6);
    assert_int_equal(h.n, ALERTS_HOLD_MAX);
    assert_int_equal(h.dropped, 6);
    assert_int_equal(alerts_hold_release(&h, collect, out), ALERTS_HOLD_MAX);
    /* in order, from the seventh: the six oldest went */
    assert_true(!strncmp(out, "alert 6,alert 7,", 16));
    assert_non_null(strstr(out, ",alert 69"));
    assert_null(strstr(out, "alert 5,"));
    assert_int_equal(h.n, 0);
    assert_int_equal(h.dropped, 0);
    /* released to nobody: dropped (and freed: LeakSanitizer sees nothing) */
    hold_n(&h, 0, 3);
    assert_int_equal(alerts_hold_release(&h, NULL, NULL), 3);
    free(out);
}

/* ---- the gate ---- */

static void test_held_until_the_first_answer_then_paged_when_nobody_leads(void **state)
{
    (void)state;
    Fixture *f = follower_start(10000);
    assert_int_equal(leader_alert_gate(f->l), LEADER_GATE_HOLD);
    assert_int_equal(f->settled, 0);
    etcd_answers_range(ETCD_NO_LEADER);
    assert_int_equal(f->settled, 1);
    assert_int_equal(leader_alert_gate(f->l), LEADER_GATE_PAGE); /* campaigning: nobody else pages */
    follower_stop(f);
}

static void test_held_until_the_first_answer_then_quiet_while_another_leads(void **state)
{
    (void)state;
    Fixture *f = follower_start(10000);
    assert_int_equal(leader_alert_gate(f->l), LEADER_GATE_HOLD);
    etcd_answers_range(ETCD_LEADER_B);
    assert_int_equal(f->settled, 1);
    assert_int_equal(leader_alert_gate(f->l), LEADER_GATE_QUIET);
    /* etcd named b 5 s ago: still quiet */
    skew_us = 5000000;
    assert_int_equal(leader_alert_gate(f->l), LEADER_GATE_QUIET);
    /* b not named by etcd for two TTLs: nobody is known to page */
    skew_us = 20000001;
    assert_int_equal(leader_alert_gate(f->l), LEADER_GATE_PAGE);
    assert_int_equal(f->settled, 1);
    follower_stop(f);
}

static void test_no_answer_within_the_ttl_pages(void **state)
{
    (void)state;
    Fixture *f = follower_start(30); /* the grace timer is real: 30 ms */
    assert_int_equal(leader_alert_gate(f->l), LEADER_GATE_HOLD);
    while (!f->settled)
        uv_run(&f->loop, UV_RUN_ONCE);
    assert_int_equal(f->settled, 1);
    assert_int_equal(leader_alert_gate(f->l), LEADER_GATE_PAGE);
    /* a late answer naming another leader: quiet from then on, and no second call */
    etcd_answers_range(ETCD_LEADER_B);
    assert_int_equal(leader_alert_gate(f->l), LEADER_GATE_QUIET);
    assert_int_equal(f->settled, 1);
    follower_stop(f);
}

static void test_without_ha_everything_pages(void **state)
{
    (void)state;
    assert_int_equal(leader_alert_gate(NULL), LEADER_GATE_PAGE);
    leader_on_settled(NULL, on_settled, NULL); /* a no-op */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hold_is_bounded_oldest_dropped_and_counted),
        cmocka_unit_test(test_held_until_the_first_answer_then_paged_when_nobody_leads),
        cmocka_unit_test(test_held_until_the_first_answer_then_quiet_while_another_leads),
        cmocka_unit_test(test_no_answer_within_the_ttl_pages),
        cmocka_unit_test(test_without_ha_everything_pages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
