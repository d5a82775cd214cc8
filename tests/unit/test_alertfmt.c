/*
 * Unit tests for daemon/alertfmt: PagerDuty trigger and resolve bodies field by field, summary
 * and dedup-key limits, Slack escaping, the 3000-character section limit, grouped messages,
 * webhook body and HMAC (RFC 4231 vector), classification of answers, Retry-After,
 * the token bucket, route matching and the outbox message round trip.
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

#include "alerts/alertfmt.h"
#include "err.h"

static const AlertCtx ctx = {.source = "db1.example", .cluster = "prod"};

static AlertMsg msg(const char *kind, const char *cond, bool resolved, const char *summary)
{
    AlertMsg m = {.seq = 7, .channel = ALERT_CH_PAGERDUTY, .severity = SEV_ERROR, .resolved = resolved,
                  .ts_ms = 1437122578315, .occurrences = 1};
    char key[300];
    m.kind = strdup(kind);
    m.condition = cond ? strdup(cond) : NULL;
    m.summary = strdup(summary);
    alertfmt_dedup_key("prod", cond, 1000, 42, key, sizeof(key));
    m.dedup_key = strdup(key);
    m.details = json_pack("{s:s}", "sqlstate", "08006");
    return m;
}

static const char *sget(const json_t *o, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    const json_t *cur = o;
    for (char *tok = strtok(buf, "."); tok && cur; tok = strtok(NULL, "."))
        cur = json_object_get(cur, tok);
    return json_string_value(cur);
}

static void test_pagerduty_trigger(void **state)
{
    (void)state;
    AlertMsg m = msg("probe.database", "database.down:prod", false, "database is down");
    json_t *b = alertfmt_pagerduty(&m, &ctx, "KEY32");
    assert_non_null(b);
    assert_int_equal(json_object_size(b), 5);
    assert_string_equal(sget(b, "routing_key"), "KEY32");
    assert_string_equal(sget(b, "event_action"), "trigger");
    assert_string_equal(sget(b, "dedup_key"), "drsup:prod:database.down:prod");
    assert_string_equal(sget(b, "client"), "drsupervisor");
    const json_t *p = json_object_get(b, "payload");
    assert_int_equal(json_object_size(p), 8);
    assert_string_equal(sget(p, "summary"), "database is down");
    assert_string_equal(sget(p, "source"), "db1.example");
    assert_string_equal(sget(p, "severity"), "error");
    assert_string_equal(sget(p, "timestamp"), "2015-07-17T08:42:58.315+0000");
    assert_string_equal(sget(p, "component"), "database");
    assert_string_equal(sget(p, "group"), "prod");
    assert_string_equal(sget(p, "class"), "probe.database");
    assert_string_equal(sget(p, "custom_details.details.sqlstate"), "08006");
    assert_string_equal(sget(p, "custom_details.condition"), "database.down:prod");
    assert_string_equal(sget(p, "custom_details.look_closer"), "drctl status");
    json_decref(b);
    alertfmt_msg_free_fields(&m);
}

static void test_pagerduty_resolve_is_minimal(void **state)
{
    (void)state;
    AlertMsg m = msg("probe.database", "database.down:prod", true, "database is up again");
    json_t *b = alertfmt_pagerduty(&m, &ctx, "KEY32");
    json_t *want = json_pack("{s:s,s:s,s:s}", "routing_key", "KEY32", "dedup_key", "drsup:prod:database.down:prod",
                             "event_action", "resolve");
    assert_true(json_equal(b, want));
    json_decref(b);
    json_decref(want);
    alertfmt_msg_free_fields(&m);
}

static void test_summary_cut_at_1024_characters_utf8(void **state)
{
    (void)state;
    char big[4000] = "";
    for (int i = 0; i < 1500; i++)
        strcat(big, i % 2 ? "a" : "\xc3\xa9"); /* é, 2 bytes */
    AlertMsg m = msg("x.y", NULL, false, big);
    json_t *b = alertfmt_pagerduty(&m, &ctx, "K");
    const char *s = sget(json_object_get(b, "payload"), "summary");
    size_t chars = 0;
    for (const char *c = s; *c; c++)
        chars += ((unsigned char)*c & 0xC0) != 0x80;
    assert_int_equal(chars, 1024);
    assert_non_null(strstr(s, "\xe2\x80\xa6"));
    assert_true(json_is_string(json_object_get(json_object_get(b, "payload"), "summary")));
    json_decref(b);
    alertfmt_msg_free_fields(&m);
    char *t = alertfmt_truncate_utf8("short", 1024);
    assert_string_equal(t, "short");
    free(t);
}

static void test_dedup_keys(void **state)
{
    (void)state;
    char a[300], b[300], c[600];
    alertfmt_dedup_key("prod", NULL, 1700000000000, 5, a, sizeof(a));
    assert_string_equal(a, "drsup:prod:event:1700000000000.5");
    alertfmt_dedup_key("prod", NULL, 1700000000000, 6, b, sizeof(b));
    assert_string_not_equal(a, b);
    memset(c, 'x', 400);
    c[400] = '\0';
    alertfmt_dedup_key("prod", c, 0, 0, a, sizeof(a));
    c[399] = 'y';
    alertfmt_dedup_key("prod", c, 0, 0, b, sizeof(b));
    assert_int_equal(strlen(a), 255);
    assert_int_equal(strlen(b), 255);
    assert_string_not_equal(a, b); /* the hash tail keeps long keys apart */
}

static void test_slack_escape_and_limits(void **state)
{
    (void)state;
    char buf[64] = "";
    assert_true(alertfmt_slack_escape(buf, sizeof(buf), "a<b>&c <!channel>"));
    assert_string_equal(buf, "a&lt;b&gt;&amp;c &lt;!channel&gt;");
    char small[8] = "";
    assert_false(alertfmt_slack_escape(small, sizeof(small), "&&&"));
    assert_string_equal(small, "&amp;"); /* never half an entity */

    char big[8000];
    memset(big, '<', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    AlertMsg m = msg("probe.platform", "platform.down:prod", false, big);
    const AlertMsg *one[] = {&m};
    json_t *s = alertfmt_slack(one, 1, &ctx);
    size_t i;
    json_t *blk;
    assert_true(strlen(sget(s, "text")) <= 3000);
    json_array_foreach(json_object_get(s, "blocks"), i, blk) {
        if (!strcmp(sget(blk, "type"), "section")) {
            const char *t = sget(blk, "text.text");
            assert_true(strlen(t) <= ALERTFMT_SLACK_SECTION_MAX);
            assert_null(strchr(t, '<'));
        }
    }
    json_decref(s);
    alertfmt_msg_free_fields(&m);
}

static void test_slack_single_message_says_what_and_how(void **state)
{
    (void)state;
    AlertMsg m = msg("probe.database", "database.down:prod", false, "database is down");
    m.occurrences = 3;
    const AlertMsg *one[] = {&m};
    json_t *s = alertfmt_slack(one, 1, &ctx);
    char *dump = json_dumps(s, 0);
    assert_string_equal(sget(s, "text"), "[ERROR] prod: database is down (seen 3 times)");
    assert_non_null(strstr(dump, "What the daemon is doing"));
    assert_non_null(strstr(dump, "`drctl status`"));
    assert_non_null(strstr(dump, "`database.down:prod`"));
    free(dump);
    json_decref(s);
    m.resolved = true;
    s = alertfmt_slack(one, 1, &ctx);
    assert_int_equal(strncmp(sget(s, "text"), "[RESOLVED] prod:", 16), 0);
    json_decref(s);
    alertfmt_msg_free_fields(&m);
}

static void test_slack_grouped_message(void **state)
{
    (void)state;
    AlertMsg ms[150];
    const AlertMsg *ptrs[150];
    for (int i = 0; i < 150; i++) {
        char sum[64];
        snprintf(sum, sizeof(sum), "event number %d with some words", i);
        ms[i] = msg("alert.test", NULL, i == 0, sum);
        ms[i].severity = i % 3 == 0 ? SEV_CRITICAL : SEV_WARNING;
        ptrs[i] = &ms[i];
    }
    json_t *s = alertfmt_slack(ptrs, 150, &ctx);
    assert_int_equal(strncmp(sget(s, "text"), "150 alerts for cluster prod: 49 critical, 100 warning, 1 resolved", 60),
                     0);
    const char *list = sget(json_array_get(json_object_get(s, "blocks"), 1), "text.text");
    assert_true(strlen(list) <= ALERTFMT_SLACK_SECTION_MAX);
    assert_non_null(strstr(list, "event number 0 "));
    assert_non_null(strstr(list, "more (`drctl alerts`)"));
    json_decref(s);
    for (int i = 0; i < 150; i++)
        alertfmt_msg_free_fields(&ms[i]);
}

static void test_webhook_body_and_hmac(void **state)
{
    (void)state;
    char hex[65];
    /* RFC 4231 test case 2. */
    assert_int_equal(alertfmt_hmac_hex("Jefe", 4, "what do ya want for nothing?", 28, hex), 0);
    assert_string_equal(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");

    AlertMsg m = msg("backup.age", "backup.age:prod", false, "backup too old");
    json_t *b = alertfmt_webhook(&m, &ctx, 1700000000123);
    assert_int_equal(json_integer_value(json_object_get(b, "sent_ms")), 1700000000123);
    assert_int_equal(json_integer_value(json_object_get(b, "version")), 1);
    assert_string_equal(sget(b, "event.kind"), "backup.age");
    assert_string_equal(sget(b, "event.look_closer"), "drctl backups");
    assert_string_equal(sget(b, "dedup_key"), "drsup:prod:backup.age:prod");
    json_decref(b);
    alertfmt_msg_free_fields(&m);
}

static void test_classify(void **state)
{
    (void)state;
    assert_int_equal(alertfmt_classify(ALERT_CH_PAGERDUTY, 0, 202, "{}"), ALERTFMT_ACCEPTED);
    assert_int_equal(alertfmt_classify(ALERT_CH_PAGERDUTY, 0, 200, "{}"), ALERTFMT_RETRY);
    assert_int_equal(alertfmt_classify(ALERT_CH_PAGERDUTY, 0, 400, "{}"), ALERTFMT_PERMANENT);
    assert_int_equal(alertfmt_classify(ALERT_CH_PAGERDUTY, 0, 429, ""), ALERTFMT_RETRY);
    assert_int_equal(alertfmt_classify(ALERT_CH_PAGERDUTY, 0, 502, ""), ALERTFMT_RETRY);
    assert_int_equal(alertfmt_classify(ALERT_CH_PAGERDUTY, -ETIMEDOUT, 0, ""), ALERTFMT_RETRY);
    assert_int_equal(alertfmt_classify(ALERT_CH_SLACK, 0, 200, "ok"), ALERTFMT_ACCEPTED);
    assert_int_equal(alertfmt_classify(ALERT_CH_SLACK, 0, 200, "ok\n"), ALERTFMT_ACCEPTED);
    assert_int_equal(alertfmt_classify(ALERT_CH_SLACK, 0, 200, "okay"), ALERTFMT_RETRY);
    assert_int_equal(alertfmt_classify(ALERT_CH_SLACK, 0, 404, "no_service"), ALERTFMT_PERMANENT);
    assert_int_equal(alertfmt_classify(ALERT_CH_SLACK, 0, 410, "channel_is_archived"), ALERTFMT_PERMANENT);
    assert_int_equal(alertfmt_classify(ALERT_CH_SLACK, 0, 500, "rollup_error"), ALERTFMT_RETRY);
    assert_int_equal(alertfmt_classify(ALERT_CH_WEBHOOK, 0, 204, ""), ALERTFMT_ACCEPTED);
    assert_int_equal(alertfmt_classify(ALERT_CH_WEBHOOK, 0, 301, ""), ALERTFMT_PERMANENT);
    assert_int_equal(alertfmt_classify(ALERT_CH_WEBHOOK, DR_EHTTP, 0, ""), ALERTFMT_RETRY);
}

static void test_retry_after(void **state)
{
    (void)state;
    uint64_t ms = 0;
    assert_int_equal(alertfmt_retry_after_ms("120", 0, &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(alertfmt_retry_after_ms("0", 0, &ms), 0);
    assert_int_equal(ms, 0);
    /* Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 */
    assert_int_equal(alertfmt_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470000, &ms), 0);
    assert_int_equal(ms, 10000);
    assert_int_equal(alertfmt_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490000, &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(alertfmt_retry_after_ms("soon", 0, &ms), -EINVAL);
    assert_int_equal(alertfmt_retry_after_ms("-5", 0, &ms), -EINVAL);
    assert_int_equal(alertfmt_retry_after_ms("", 0, &ms), -EINVAL);
}

static void test_token_bucket(void **state)
{
    (void)state;
    AlertBucket b;
    alertfmt_bucket_init(&b, 1.0, 1.0, 1000);
    assert_int_equal(alertfmt_bucket_take(&b, 1000), 0);
    assert_int_equal(alertfmt_bucket_take(&b, 1000), 1000);
    assert_int_equal(alertfmt_bucket_take(&b, 1400), 600);
    assert_int_equal(alertfmt_bucket_take(&b, 2000), 0);
    /* Idle time never stores more than the burst. */
    assert_int_equal(alertfmt_bucket_take(&b, 100000), 0);
    assert_true(alertfmt_bucket_take(&b, 100000) > 0);
    alertfmt_bucket_init(&b, 2.0, 3.0, 0);
    int taken = 0;
    while (alertfmt_bucket_take(&b, 0) == 0)
        taken++;
    assert_int_equal(taken, 3);
    assert_int_equal(alertfmt_bucket_take(&b, 0), 500);
}

static void test_routes(void **state)
{
    (void)state;
    ConfigAlertRoute r = {.min_severity = SEV_ERROR, .kind = (char *)(uintptr_t)"probe.*", .channels = 1};
    assert_true(alertfmt_route_matches(&r, SEV_ERROR, "probe.database", NULL));
    assert_true(alertfmt_route_matches(&r, SEV_CRITICAL, "probe.platform", "x"));
    assert_false(alertfmt_route_matches(&r, SEV_WARNING, "probe.database", NULL));
    assert_false(alertfmt_route_matches(&r, SEV_CRITICAL, "backup.age", NULL));
    ConfigAlertRoute c = {.min_severity = SEV_INFO, .condition = (char *)(uintptr_t)"backup.*:prod", .channels = 2};
    assert_true(alertfmt_route_matches(&c, SEV_INFO, "backup.age", "backup.age:prod"));
    assert_false(alertfmt_route_matches(&c, SEV_INFO, "backup.age", NULL));
    assert_false(alertfmt_route_matches(&c, SEV_INFO, "backup.age", "backup.age:dev"));
}

static void test_msg_round_trip(void **state)
{
    (void)state;
    AlertMsg a = msg("alert.test", NULL, false, "one-off");
    AlertMsg b = {0};
    a.channel = ALERT_CH_SLACK;
    a.occurrences = 9;
    json_t *j = alertfmt_msg_to_json(&a);
    assert_int_equal(alertfmt_msg_from_json(j, &b), 0);
    assert_int_equal(b.seq, 7);
    assert_int_equal(b.channel, ALERT_CH_SLACK);
    assert_null(b.condition);
    assert_int_equal(b.occurrences, 9);
    assert_string_equal(b.dedup_key, a.dedup_key);
    assert_true(json_equal(b.details, a.details));
    json_decref(j);
    alertfmt_msg_free_fields(&b);
    free(a.condition);
    a.condition = strdup("c:prod");
    j = alertfmt_msg_to_json(&a);
    assert_int_equal(alertfmt_msg_from_json(j, &b), 0);
    assert_string_equal(b.condition, "c:prod");
    json_object_set_new(j, "channel", json_string("fax"));
    AlertMsg c = {0};
    assert_int_equal(alertfmt_msg_from_json(j, &c), -EINVAL);
    json_decref(j);
    alertfmt_msg_free_fields(&b);
    alertfmt_msg_free_fields(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pagerduty_trigger),
        cmocka_unit_test(test_pagerduty_resolve_is_minimal),
        cmocka_unit_test(test_summary_cut_at_1024_characters_utf8),
        cmocka_unit_test(test_dedup_keys),
        cmocka_unit_test(test_slack_escape_and_limits),
        cmocka_unit_test(test_slack_single_message_says_what_and_how),
        cmocka_unit_test(test_slack_grouped_message),
        cmocka_unit_test(test_webhook_body_and_hmac),
        cmocka_unit_test(test_classify),
        cmocka_unit_test(test_retry_after),
        cmocka_unit_test(test_token_bucket),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_msg_round_trip),
    };
    return cmocka_run_group_tests_name("alertfmt", tests, NULL, NULL);
}
