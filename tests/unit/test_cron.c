/*
 * Unit tests for lib/cron: parsing (fields, names, steps, macros, every error message) and
 * cron_next across minute, hour, day, month and year boundaries, leap years, the day-of-month /
 * day-of-week OR rule, and impossible expressions.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <time.h>

#include "cron.h"

static int64_t ts(int y, int mo, int d, int h, int mi, int s)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = h, .tm_min = mi,
                    .tm_sec = s};
    return (int64_t)timegm(&tm);
}

static void fmt(int64_t t, char *buf, size_t n)
{
    time_t tt = (time_t)t;
    struct tm tm;
    gmtime_r(&tt, &tm);
    strftime(buf, n, "%Y-%m-%d %H:%M:%S %a", &tm);
}

/* Asserts that expr's next match after `after` is `want` (both as readable strings on failure). */
static void next_is(const char *expr, int64_t after, int64_t want)
{
    CronExpr e;
    char err[128] = "";
    int r = cron_parse(expr, &e, err, sizeof(err));
    if (r != 0)
        print_error("parse '%s': %s\n", expr, err);
    assert_int_equal(r, 0);
    int64_t got = 0;
    assert_int_equal(cron_next(&e, after, &got), 0);
    if (got != want) {
        char a[64], b[64], c[64];
        fmt(after, a, sizeof(a));
        fmt(got, b, sizeof(b));
        fmt(want, c, sizeof(c));
        print_error("'%s' after %s: got %s, want %s\n", expr, a, b, c);
    }
    assert_int_equal(got, want);
}

static void parse_fails(const char *expr, const char *want_msg)
{
    CronExpr e;
    memset(&e, 0xab, sizeof(e));
    CronExpr before = e;
    char err[160] = "";
    assert_int_equal(cron_parse(expr, &e, err, sizeof(err)), -EINVAL);
    assert_string_equal(err, want_msg);
    assert_memory_equal(&e, &before, sizeof(e)); /* untouched on failure */
}

static void test_every_minute(void **state)
{
    (void)state;
    next_is("* * * * *", ts(2026, 3, 1, 10, 0, 0), ts(2026, 3, 1, 10, 1, 0)); /* strictly after */
    next_is("* * * * *", ts(2026, 3, 1, 10, 0, 59), ts(2026, 3, 1, 10, 1, 0));
    next_is("* * * * *", ts(2026, 3, 1, 10, 59, 30), ts(2026, 3, 1, 11, 0, 0));
    next_is("* * * * *", ts(2026, 12, 31, 23, 59, 0), ts(2027, 1, 1, 0, 0, 0)); /* year rollover */
}

static void test_minute_hour_boundaries(void **state)
{
    (void)state;
    next_is("30 * * * *", ts(2026, 3, 1, 10, 29, 0), ts(2026, 3, 1, 10, 30, 0));
    next_is("30 * * * *", ts(2026, 3, 1, 10, 30, 0), ts(2026, 3, 1, 11, 30, 0));
    next_is("30 * * * *", ts(2026, 3, 1, 23, 45, 0), ts(2026, 3, 2, 0, 30, 0));
    next_is("0 23 * * *", ts(2026, 3, 31, 23, 0, 0), ts(2026, 4, 1, 23, 0, 0)); /* month rollover */
    next_is("15 10 * * *", ts(2026, 3, 1, 10, 14, 59), ts(2026, 3, 1, 10, 15, 0));
}

static void test_daily_weekly_monthly(void **state)
{
    (void)state;
    /* daily at 02:00 */
    next_is("0 2 * * *", ts(2026, 3, 1, 1, 59, 0), ts(2026, 3, 1, 2, 0, 0));
    next_is("0 2 * * *", ts(2026, 3, 1, 2, 0, 0), ts(2026, 3, 2, 2, 0, 0));
    next_is("0 2 * * *", ts(2026, 12, 31, 3, 0, 0), ts(2027, 1, 1, 2, 0, 0));
    /* weekly, Sunday 03:00. 2026-03-01 is a Sunday. */
    next_is("0 3 * * 0", ts(2026, 3, 1, 3, 0, 0), ts(2026, 3, 8, 3, 0, 0));
    next_is("0 3 * * 0", ts(2026, 2, 26, 12, 0, 0), ts(2026, 3, 1, 3, 0, 0));
    next_is("0 3 * * 7", ts(2026, 2, 26, 12, 0, 0), ts(2026, 3, 1, 3, 0, 0)); /* 7 = Sunday */
    next_is("0 3 * * 0", ts(2026, 12, 28, 0, 0, 0), ts(2027, 1, 3, 3, 0, 0));
    /* monthly, 1st at 04:00 */
    next_is("0 4 1 * *", ts(2026, 1, 1, 4, 0, 0), ts(2026, 2, 1, 4, 0, 0));
    next_is("0 4 1 * *", ts(2026, 12, 15, 0, 0, 0), ts(2027, 1, 1, 4, 0, 0));
    /* 31st skips short months */
    next_is("0 0 31 * *", ts(2026, 3, 31, 0, 0, 0), ts(2026, 5, 31, 0, 0, 0));
}

static void test_leap_years(void **state)
{
    (void)state;
    next_is("0 0 29 2 *", ts(2026, 1, 1, 0, 0, 0), ts(2028, 2, 29, 0, 0, 0));
    next_is("0 0 29 2 *", ts(2028, 2, 29, 0, 0, 0), ts(2032, 2, 29, 0, 0, 0));
    next_is("0 12 * 2 *", ts(2028, 2, 28, 13, 0, 0), ts(2028, 2, 29, 12, 0, 0));
    next_is("0 12 * 2 *", ts(2027, 2, 28, 13, 0, 0), ts(2028, 2, 1, 12, 0, 0));
    next_is("0 0 * * *", ts(2028, 2, 28, 0, 0, 0), ts(2028, 2, 29, 0, 0, 0));
    next_is("0 0 * * *", ts(2027, 2, 28, 0, 0, 0), ts(2027, 3, 1, 0, 0, 0));
    /* 2100 is not a leap year: from 2099 the next Feb 29 is in 2104 */
    next_is("0 0 29 2 *", ts(2099, 1, 1, 0, 0, 0), ts(2104, 2, 29, 0, 0, 0));
}

static void test_dom_dow_or_rule(void **state)
{
    (void)state;
    /* Both restricted: the 13th OR any Friday. 2026-03-06 is a Friday, 2026-03-13 also a Friday. */
    next_is("0 0 13 * 5", ts(2026, 3, 1, 0, 0, 0), ts(2026, 3, 6, 0, 0, 0));
    next_is("0 0 13 * mon", ts(2026, 3, 1, 0, 0, 0), ts(2026, 3, 2, 0, 0, 0)); /* Monday first */
    next_is("0 0 1 * fri", ts(2026, 3, 28, 0, 0, 0), ts(2026, 4, 1, 0, 0, 0)); /* Wed the 1st */
    next_is("0 0 15 * wed", ts(2026, 3, 12, 0, 0, 0), ts(2026, 3, 15, 0, 0, 0)); /* Sunday the 15th */
    /* Day-of-week '*': only day-of-month counts, and vice versa. */
    next_is("0 0 13 * *", ts(2026, 3, 1, 0, 0, 0), ts(2026, 3, 13, 0, 0, 0));
    next_is("0 0 * * 1", ts(2026, 3, 1, 0, 0, 0), ts(2026, 3, 2, 0, 0, 0));
    /* A field starting with '*' counts as unrestricted: AND rule, odd days that are Mondays
     * (the OR rule would give Monday 2026-03-02). */
    next_is("0 0 */2 * 1", ts(2026, 3, 1, 0, 0, 0), ts(2026, 3, 9, 0, 0, 0));
}

static void test_steps_lists_ranges(void **state)
{
    (void)state;
    next_is("*/15 * * * *", ts(2026, 3, 1, 10, 0, 0), ts(2026, 3, 1, 10, 15, 0));
    next_is("*/15 * * * *", ts(2026, 3, 1, 10, 46, 0), ts(2026, 3, 1, 11, 0, 0));
    next_is("10-50/10 * * * *", ts(2026, 3, 1, 10, 50, 0), ts(2026, 3, 1, 11, 10, 0));
    next_is("10-50/10 * * * *", ts(2026, 3, 1, 10, 11, 0), ts(2026, 3, 1, 10, 20, 0));
    next_is("5/20 * * * *", ts(2026, 3, 1, 10, 46, 0), ts(2026, 3, 1, 11, 5, 0));
    next_is("1,5,40 * * * *", ts(2026, 3, 1, 10, 5, 0), ts(2026, 3, 1, 10, 40, 0));
    next_is("0 9-17 * * 1-5", ts(2026, 3, 6, 17, 0, 0), ts(2026, 3, 9, 9, 0, 0)); /* Fri -> Mon */
    next_is("0 0 * * 5-7", ts(2026, 3, 2, 0, 0, 0), ts(2026, 3, 6, 0, 0, 0));    /* range to 7 */
    next_is("0 0 * * 6-7", ts(2026, 3, 1, 0, 0, 0), ts(2026, 3, 7, 0, 0, 0));
    next_is("0 0 * * 6-7", ts(2026, 3, 7, 0, 0, 0), ts(2026, 3, 8, 0, 0, 0));
    next_is("0 */6 * * *", ts(2026, 3, 1, 18, 0, 0), ts(2026, 3, 2, 0, 0, 0));
    next_is("0 0 1 */3 *", ts(2026, 2, 1, 0, 0, 0), ts(2026, 4, 1, 0, 0, 0));
}

static void test_names(void **state)
{
    (void)state;
    next_is("0 0 1 jan *", ts(2026, 3, 1, 0, 0, 0), ts(2027, 1, 1, 0, 0, 0));
    next_is("0 0 1 JUN-aug *", ts(2026, 8, 2, 0, 0, 0), ts(2027, 6, 1, 0, 0, 0));
    next_is("0 0 1 Mar,Dec *", ts(2026, 3, 1, 0, 0, 0), ts(2026, 12, 1, 0, 0, 0));
    next_is("0 0 * * SUN", ts(2026, 3, 2, 0, 0, 0), ts(2026, 3, 8, 0, 0, 0));
    next_is("0 0 * * mon-fri", ts(2026, 3, 7, 0, 0, 0), ts(2026, 3, 9, 0, 0, 0));
    next_is("0 0 * * Sat", ts(2026, 3, 1, 0, 0, 0), ts(2026, 3, 7, 0, 0, 0));
}

static void test_macros(void **state)
{
    (void)state;
    next_is("@hourly", ts(2026, 3, 1, 10, 0, 0), ts(2026, 3, 1, 11, 0, 0));
    next_is("@daily", ts(2026, 3, 1, 10, 0, 0), ts(2026, 3, 2, 0, 0, 0));
    next_is("@midnight", ts(2026, 3, 1, 10, 0, 0), ts(2026, 3, 2, 0, 0, 0));
    next_is("@weekly", ts(2026, 3, 1, 10, 0, 0), ts(2026, 3, 8, 0, 0, 0));
    next_is("@monthly", ts(2026, 3, 1, 10, 0, 0), ts(2026, 4, 1, 0, 0, 0));
    next_is("@yearly", ts(2026, 3, 1, 10, 0, 0), ts(2027, 1, 1, 0, 0, 0));
    next_is("  @annually  ", ts(2026, 3, 1, 10, 0, 0), ts(2027, 1, 1, 0, 0, 0));

    CronExpr a, b;
    assert_int_equal(cron_parse("@daily", &a, NULL, 0), 0);
    assert_int_equal(cron_parse("0 0 * * *", &b, NULL, 0), 0);
    assert_memory_equal(&a, &b, sizeof(a));
}

static void test_parse_bits(void **state)
{
    (void)state;
    CronExpr e;
    assert_int_equal(cron_parse(" 0,59 0-23/23 1,31 12 0,7 ", &e, NULL, 0), 0);
    assert_true(e.minutes == ((UINT64_C(1) << 0) | (UINT64_C(1) << 59)));
    assert_int_equal(e.hours, (1u << 0) | (1u << 23));
    assert_int_equal(e.mdays, (1u << 1) | (1u << 31));
    assert_int_equal(e.months, 1u << 12);
    assert_int_equal(e.wdays, 1u); /* 0 and 7 are both Sunday */
    assert_false(e.mday_star);
    assert_false(e.wday_star);
    assert_int_equal(cron_parse("* * * * *", &e, NULL, 0), 0);
    assert_true(e.mday_star && e.wday_star);
    assert_int_equal(e.wdays, 0x7f);
}

static void test_parse_errors(void **state)
{
    (void)state;
    parse_fails("0 24 * * *", "field 2 (hour): value 24 out of range 0-23");
    parse_fails("60 * * * *", "field 1 (minute): value 60 out of range 0-59");
    parse_fails("0 0 0 * *", "field 3 (day-of-month): value 0 out of range 1-31");
    parse_fails("0 0 32 * *", "field 3 (day-of-month): value 32 out of range 1-31");
    parse_fails("0 0 * 13 *", "field 4 (month): value 13 out of range 1-12");
    parse_fails("0 0 * * 8", "field 5 (day-of-week): value 8 out of range 0-7");
    parse_fails("99999999999999999999 * * * *", "field 1 (minute): value 99999999999999999999 out of range 0-59");
    parse_fails("0 0 * foo *", "field 4 (month): unknown name 'foo'");
    parse_fails("0 0 * * sunday", "field 5 (day-of-week): unknown name 'sunday'");
    parse_fails("0 jan * * *", "field 2 (hour): unexpected character 'j'");
    parse_fails("0 5-1 * * *", "field 2 (hour): range 5-1 is reversed");
    parse_fails("*/0 * * * *", "field 1 (minute): step 0 out of range 1-60");
    parse_fails("0 */25 * * *", "field 2 (hour): step 25 out of range 1-24");
    parse_fails("0 */99999999999999999999999 * * *", "field 2 (hour): step 99999999999999999999 out of range 1-24");
    next_is("*/007 * * * *", ts(2026, 3, 1, 10, 0, 0), ts(2026, 3, 1, 10, 7, 0)); /* leading zeros */
    parse_fails("*/ * * * *", "field 1 (minute): step must be a positive number");
    parse_fails("*/x * * * *", "field 1 (minute): step must be a positive number");
    parse_fails("1,,2 * * * *", "field 1 (minute): empty list element");
    parse_fails("1, * * * *", "field 1 (minute): empty list element");
    parse_fails(",1 * * * *", "field 1 (minute): empty list element");
    parse_fails("1- * * * *", "field 1 (minute): missing value");
    parse_fails("-1 * * * *", "field 1 (minute): unexpected character '-'");
    parse_fails("*5 * * * *", "field 1 (minute): unexpected character '5'");
    parse_fails("1-2-3 * * * *", "field 1 (minute): unexpected character '-'");
    parse_fails("0 0 * * *x", "field 5 (day-of-week): unexpected character 'x'");
    parse_fails("0 0 * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 4");
    parse_fails("0 0 * * * *", "expected 5 fields (minute hour day-of-month month day-of-week), got 6");
    parse_fails("", "expected 5 fields (minute hour day-of-month month day-of-week), got 0");
    parse_fails("@reboot", "unknown macro '@reboot'");
    parse_fails("@daily 5", "unexpected text after @daily");
    parse_fails(NULL, "no expression");
    /* a NULL error buffer is allowed */
    CronExpr e;
    assert_int_equal(cron_parse("bad", &e, NULL, 0), -EINVAL);
}

static void test_impossible_and_horizon(void **state)
{
    (void)state;
    CronExpr e;
    int64_t next = 42;
    assert_int_equal(cron_parse("0 0 31 2 *", &e, NULL, 0), 0);
    clock_t c0 = clock();
    assert_int_equal(cron_next(&e, ts(2026, 1, 1, 0, 0, 0), &next), -ENOENT);
    assert_int_equal(next, 42); /* untouched */
    assert_true(clock() - c0 < CLOCKS_PER_SEC / 10); /* skips months and days, not minutes */
    assert_int_equal(cron_parse("0 0 30 feb *", &e, NULL, 0), 0);
    assert_int_equal(cron_next(&e, ts(2026, 1, 1, 0, 0, 0), &next), -ENOENT);
    /* Feb 29 is beyond the 5-year horizon when starting just after one from 2096 (2100 not leap) */
    assert_int_equal(cron_parse("0 0 29 2 *", &e, NULL, 0), 0);
    assert_int_equal(cron_next(&e, ts(2096, 3, 1, 0, 0, 0), &next), -ENOENT);
    assert_int_equal(cron_next(NULL, 0, &next), -EINVAL);
    assert_int_equal(cron_next(&e, 0, NULL), -EINVAL);
}

static void test_negative_and_epoch(void **state)
{
    (void)state;
    next_is("* * * * *", -1, 0);
    next_is("* * * * *", -61, -60);
    next_is("0 0 1 1 *", ts(1969, 6, 1, 0, 0, 0), 0);
    /* Thursday 1970-01-01: the first Sunday is Jan 4 */
    next_is("0 0 * * sun", -30, ts(1970, 1, 4, 0, 0, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_minute),
        cmocka_unit_test(test_minute_hour_boundaries),
        cmocka_unit_test(test_daily_weekly_monthly),
        cmocka_unit_test(test_leap_years),
        cmocka_unit_test(test_dom_dow_or_rule),
        cmocka_unit_test(test_steps_lists_ranges),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_macros),
        cmocka_unit_test(test_parse_bits),
        cmocka_unit_test(test_parse_errors),
        cmocka_unit_test(test_impossible_and_horizon),
        cmocka_unit_test(test_negative_and_epoch),
    };
    return cmocka_run_group_tests_name("cron", tests, NULL, NULL);
}
