/*
 * Unit tests for daemon/detect/watched_rule: the data-loss rule of a watched table. The first
 * observation is the baseline; a value going up is good; a drop beyond max_drop_rows or beyond
 * max_drop_percent (whichever is stricter) is a loss, a drop within both is a legitimate shrink
 * that becomes the new baseline (so a slow shrink, probe after probe, is never a loss); a table
 * gone is a loss; the floor a recovery must reach is the last good value less the allowed drop.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "detect/watched_rule.h"

static const WatchedLimit pct5_rows1000 = {.max_drop_percent = 5, .max_drop_rows = 1000};

static WatchedObs obs(int64_t v)
{
    return (WatchedObs){.have = true, .value = v, .at_ms = 1000};
}

static void test_first_observation_is_the_baseline(void **state)
{
    (void)state;
    WatchedObs none = {0};
    char why[200];
    assert_int_equal(watched_judge(&pct5_rows1000, &none, false, 0, "trades", why, sizeof(why)), WATCHED_FIRST);
    assert_true(watched_verdict_good(WATCHED_FIRST));
    assert_non_null(strstr(why, "first observation"));
}

static void test_going_up_or_staying_is_good(void **state)
{
    (void)state;
    WatchedObs g = obs(100);
    assert_int_equal(watched_judge(&pct5_rows1000, &g, false, 100, "t", NULL, 0), WATCHED_GOOD);
    assert_int_equal(watched_judge(&pct5_rows1000, &g, false, 5000000, "t", NULL, 0), WATCHED_GOOD);
}

static void test_percent_limit(void **state)
{
    (void)state;
    WatchedObs g = obs(10000); /* 5 %: 500 rows; the row limit (1000) is the looser one */
    assert_int_equal(watched_judge(&pct5_rows1000, &g, false, 9500, "t", NULL, 0), WATCHED_SHRANK);
    char why[200];
    assert_int_equal(watched_judge(&pct5_rows1000, &g, false, 9499, "trades", why, sizeof(why)), WATCHED_LOSS);
    assert_string_equal(why, "'trades' dropped from 10000 to 9499 (-501 rows, 5.0 %) between two probes");
    WatchedLimit pct_only = {.max_drop_percent = 50, .max_drop_rows = -1};
    assert_int_equal(watched_judge(&pct_only, &g, false, 5000, "t", NULL, 0), WATCHED_SHRANK);
    assert_int_equal(watched_judge(&pct_only, &g, false, 4999, "t", NULL, 0), WATCHED_LOSS);
}

static void test_rows_limit(void **state)
{
    (void)state;
    WatchedObs g = obs(1000000); /* 5 %: 50000 rows; the row limit (1000) is the stricter one */
    assert_int_equal(watched_judge(&pct5_rows1000, &g, false, 999000, "t", NULL, 0), WATCHED_SHRANK);
    assert_int_equal(watched_judge(&pct5_rows1000, &g, false, 998999, "t", NULL, 0), WATCHED_LOSS);
    WatchedLimit rows_only = {.max_drop_percent = -1, .max_drop_rows = 10};
    WatchedObs small = obs(12);
    assert_int_equal(watched_judge(&rows_only, &small, false, 2, "t", NULL, 0), WATCHED_SHRANK);
    assert_int_equal(watched_judge(&rows_only, &small, false, 1, "t", NULL, 0), WATCHED_LOSS);
    assert_int_equal(watched_judge(&rows_only, &small, false, 0, "t", NULL, 0), WATCHED_LOSS);
}

static void test_table_gone_is_a_loss(void **state)
{
    (void)state;
    WatchedObs g = obs(10), none = {0};
    char why[200];
    assert_int_equal(watched_judge(&pct5_rows1000, &g, true, 0, "trades", why, sizeof(why)), WATCHED_GONE);
    assert_string_equal(why, "'trades' no longer exists (it had 10)");
    assert_false(watched_verdict_good(WATCHED_GONE));
    assert_true(watched_verdict_loss(WATCHED_GONE));
    assert_false(watched_verdict_good(WATCHED_LOSS));
    assert_true(watched_verdict_loss(WATCHED_LOSS));
    /* absent before the first observation: missing, neither a baseline nor a loss */
    assert_int_equal(watched_judge(&pct5_rows1000, &none, true, 0, "trades", why, sizeof(why)), WATCHED_MISSING);
    assert_string_equal(why, "'trades' does not exist (never observed)");
    assert_false(watched_verdict_good(WATCHED_MISSING));
    assert_false(watched_verdict_loss(WATCHED_MISSING));
    assert_false(watched_verdict_loss(WATCHED_SHRANK));
}

static void test_slow_shrink_is_never_a_loss(void **state)
{
    (void)state;
    /* 4 % a probe, 40 probes: 80 % gone in all, never more than the limit between two probes */
    WatchedLimit pct5 = {.max_drop_percent = 5, .max_drop_rows = -1};
    WatchedObs g = obs(100000);
    for (int i = 0; i < 40; i++) {
        int64_t v = g.value - g.value * 4 / 100;
        WatchedVerdict r = watched_judge(&pct5, &g, false, v, "t", NULL, 0);
        assert_true(watched_verdict_good(r));
        g.value = v;
    }
    assert_true(g.value < 20000);
}

static void test_from_zero(void **state)
{
    (void)state;
    WatchedObs zero = obs(0);
    assert_int_equal(watched_judge(&pct5_rows1000, &zero, false, 0, "t", NULL, 0), WATCHED_GOOD);
    assert_int_equal(watched_allowed_drop(&pct5_rows1000, 0), 0);
}

static void test_floor(void **state)
{
    (void)state;
    assert_int_equal(watched_floor(&pct5_rows1000, 10000), 9500);
    assert_int_equal(watched_floor(&pct5_rows1000, 1000000), 999000);
    WatchedLimit rows_only = {.max_drop_percent = -1, .max_drop_rows = 5000};
    assert_int_equal(watched_floor(&rows_only, 300), 0);
    assert_int_equal(watched_floor(&rows_only, 6000), 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_first_observation_is_the_baseline),
        cmocka_unit_test(test_going_up_or_staying_is_good),
        cmocka_unit_test(test_percent_limit),
        cmocka_unit_test(test_rows_limit),
        cmocka_unit_test(test_table_gone_is_a_loss),
        cmocka_unit_test(test_slow_shrink_is_never_a_loss),
        cmocka_unit_test(test_from_zero),
        cmocka_unit_test(test_floor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
