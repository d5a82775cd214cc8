/*
 * Unit tests for lib/retention: age rule, daily/weekly/monthly tiers with a fake clock (times are
 * arguments), tier boundaries across weeks, months and years, the safety rules (newest verified and
 * newest kept, future times kept) and the no-rule policy.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "retention.h"

static int64_t ts(int y, int mo, int d, int h, int mi)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi};
    return (int64_t)timegm(&tm);
}

#define DAY 86400

static void test_no_rule_keeps_all(void **state)
{
    (void)state;
    RetentionItem it[3] = {{ts(2020, 1, 1, 2, 0), false}, {ts(2021, 1, 1, 2, 0), true}, {ts(2024, 1, 1, 2, 0), false}};
    bool keep[3];
    RetentionPolicy p = {0};
    assert_int_equal(retention_decide(it, 3, ts(2024, 6, 1, 0, 0), &p, keep), 0);
    assert_true(keep[0] && keep[1] && keep[2]);
}

static void test_max_age(void **state)
{
    (void)state;
    int64_t now = ts(2024, 3, 31, 12, 0);
    RetentionItem it[40];
    bool keep[40];
    /* One verified backup a day at 02:00 for 40 days, newest first. */
    for (int i = 0; i < 40; i++)
        it[i] = (RetentionItem){ts(2024, 3, 31, 2, 0) - (int64_t)i * DAY, true};
    RetentionPolicy p = {.max_age_s = 30 * DAY};
    size_t dropped = retention_decide(it, 40, now, &p, keep);
    /* Within 30 days of now (12:00): i = 0..29 (i=30 is 30 days and 10 hours old). */
    assert_int_equal(dropped, 10);
    for (int i = 0; i < 40; i++)
        assert_int_equal(keep[i], i < 30);
    /* Exactly at the limit is kept. */
    RetentionItem edge[2] = {{now - 30 * DAY, false}, {now - 30 * DAY - 1, false}};
    bool k2[2];
    RetentionItem newest = {now, false};
    RetentionItem three[3] = {edge[0], edge[1], newest};
    bool k3[3];
    (void)k2;
    retention_decide(three, 3, now, &p, k3);
    assert_true(k3[0]);
    assert_false(k3[1]);
    assert_true(k3[2]);
}

static void test_daily_tier_newest_per_day(void **state)
{
    (void)state;
    /* Two backups a day (02:00 and 14:00) for 5 days; keep 3 daily -> the 14:00 ones of the last 3 days. */
    RetentionItem it[10];
    bool keep[10];
    for (int d = 0; d < 5; d++) {
        it[2 * d] = (RetentionItem){ts(2024, 1, 10 + d, 2, 0), false};
        it[2 * d + 1] = (RetentionItem){ts(2024, 1, 10 + d, 14, 0), false};
    }
    RetentionPolicy p = {.daily = 3};
    size_t dropped = retention_decide(it, 10, ts(2024, 2, 1, 0, 0), &p, keep);
    assert_int_equal(dropped, 7);
    for (int i = 0; i < 10; i++)
        assert_int_equal(keep[i], i == 5 || i == 7 || i == 9);
}

static void test_weekly_tier_across_year(void **state)
{
    (void)state;
    /* Daily backups from Mon 2023-12-18 to Wed 2024-01-10. Weeks start Monday: the newest of each of
     * the last 3 weeks are Wed 01-10, Sun 01-07, Sun 12-31 (the week that spans the new year). */
    RetentionItem it[24];
    bool keep[24];
    for (int i = 0; i < 24; i++)
        it[i] = (RetentionItem){ts(2023, 12, 18, 3, 0) + (int64_t)i * DAY, false};
    RetentionPolicy p = {.weekly = 3};
    size_t dropped = retention_decide(it, 24, ts(2024, 1, 10, 12, 0), &p, keep);
    assert_int_equal(dropped, 21);
    assert_true(keep[23]);  /* 2024-01-10 */
    assert_true(keep[20]);  /* 2024-01-07 (Sunday) */
    assert_true(keep[13]);  /* 2023-12-31 (Sunday) */
    assert_false(keep[14]); /* 2024-01-01 (Monday) belongs to the week of 01-07 */
    assert_false(keep[6]);  /* 2023-12-24, fourth week back */
}

static void test_monthly_tier_and_february(void **state)
{
    (void)state;
    /* Backups on 28 Feb, 29 Feb, 1 Mar 2024 and 31 Jan 2024, keep 2 monthly -> 1 Mar and 29 Feb. */
    RetentionItem it[4] = {{ts(2024, 1, 31, 23, 59), false},
                           {ts(2024, 2, 28, 0, 0), false},
                           {ts(2024, 2, 29, 23, 59), false},
                           {ts(2024, 3, 1, 0, 0), false}};
    bool keep[4];
    RetentionPolicy p = {.monthly = 2};
    assert_int_equal(retention_decide(it, 4, ts(2024, 3, 2, 0, 0), &p, keep), 2);
    assert_false(keep[0]);
    assert_false(keep[1]);
    assert_true(keep[2]);
    assert_true(keep[3]);
}

static void test_newest_verified_never_deleted(void **state)
{
    (void)state;
    int64_t now = ts(2024, 5, 1, 0, 0);
    /* Only an old backup is verified; everything is older than max_age. */
    RetentionItem it[3] = {{now - 100 * DAY, true}, {now - 90 * DAY, false}, {now - 80 * DAY, false}};
    bool keep[3];
    RetentionPolicy p = {.max_age_s = 7 * DAY};
    assert_int_equal(retention_decide(it, 3, now, &p, keep), 1);
    assert_true(keep[0]);  /* newest verified */
    assert_false(keep[1]);
    assert_true(keep[2]);  /* newest of all */
}

static void test_union_of_rules_and_future(void **state)
{
    (void)state;
    int64_t now = ts(2024, 6, 15, 12, 0);
    RetentionItem it[4] = {{ts(2024, 1, 15, 2, 0), true},  /* kept by monthly: the 2nd month with a backup */
                           {ts(2023, 1, 15, 2, 0), true},  /* too old for everything */
                           {ts(2024, 6, 14, 2, 0), true},  /* within age */
                           {now + 3600, false}};           /* future: kept */
    bool keep[4];
    RetentionPolicy p = {.max_age_s = 7 * DAY, .monthly = 2};
    assert_int_equal(retention_decide(it, 4, now, &p, keep), 1);
    assert_true(keep[0]);
    assert_false(keep[1]);
    assert_true(keep[2]);
    assert_true(keep[3]);
    /* Empty input. */
    assert_int_equal(retention_decide(NULL, 0, now, &p, keep), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_rule_keeps_all),
        cmocka_unit_test(test_max_age),
        cmocka_unit_test(test_daily_tier_newest_per_day),
        cmocka_unit_test(test_weekly_tier_across_year),
        cmocka_unit_test(test_monthly_tier_and_february),
        cmocka_unit_test(test_newest_verified_never_deleted),
        cmocka_unit_test(test_union_of_rules_and_future),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
