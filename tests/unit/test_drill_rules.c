/*
 * Unit tests for daemon/scenario/drill_rules: the rules of drills as a specification. The RTO a
 * real run would have is the sum of the measured steps (a step that did not run counts nothing)
 * and meets a target when it is at most the target (no target: met); the last drill of a scenario
 * is WARN when missing or older than drills.max_age, FAIL when it failed or its RTO exceeded the
 * target, else PASS; a restore needs the newest backup's size times drills.free_space_factor free;
 * the start-up sweep drops only names of the drill's exact scratch form.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "scenario/drill_rules.h"

#define DAY (24ll * 3600 * 1000)

static void test_rto_is_the_sum_of_the_measured_steps(void **state)
{
    (void)state;
    const int64_t steps[] = {20, 90000, 1500, 800};
    assert_int_equal(drill_rto_estimate(steps, 4, 0), 92320);
    assert_int_equal(drill_rto_estimate(steps, 4, 3000), 95320);      /* plus the halt when known */
    const int64_t partial[] = {20, -1, 0, 800};
    assert_int_equal(drill_rto_estimate(partial, 4, -5), 820);        /* not run: nothing */
    assert_int_equal(drill_rto_estimate(NULL, 0, 0), 0);
    assert_true(drill_rto_met(120000, 120000));
    assert_false(drill_rto_met(120001, 120000));
    assert_true(drill_rto_met(10 * DAY, 0));                          /* no target */
    assert_false(drill_rto_met(-1, 120000));                          /* not measured: not met */
}

static DrillLast passed(int64_t finished_ms, int64_t rto_ms, uint64_t target_ms)
{
    return (DrillLast){.exists = true, .ok = true, .finished_ms = finished_ms, .rto_ms = rto_ms,
                       .rto_target_ms = target_ms, .id = "drill-corruption-x", .failure = NULL};
}

static void test_the_last_drill_judged(void **state)
{
    (void)state;
    char why[600];
    int64_t now = 100 * DAY;
    uint64_t max_age = 35 * DAY;

    assert_int_equal(drill_judge_last(NULL, now, max_age, why, sizeof(why)), READY_WARN);
    assert_non_null(strstr(why, "no drill yet"));
    DrillLast none = {0};
    assert_int_equal(drill_judge_last(&none, now, max_age, why, sizeof(why)), READY_WARN);

    DrillLast ok = passed(now - DAY, 30000, 120000);
    assert_int_equal(drill_judge_last(&ok, now, max_age, why, sizeof(why)), READY_PASS);
    assert_non_null(strstr(why, "within the target"));

    DrillLast old = passed(now - 36 * DAY, 30000, 120000);
    assert_int_equal(drill_judge_last(&old, now, max_age, why, sizeof(why)), READY_WARN);
    assert_non_null(strstr(why, "drills.max_age"));
    DrillLast edge = passed(now - 35 * DAY, 30000, 120000);
    assert_int_equal(drill_judge_last(&edge, now, max_age, why, sizeof(why)), READY_PASS);

    DrillLast slow = passed(now - DAY, 130000, 120000);
    assert_int_equal(drill_judge_last(&slow, now, max_age, why, sizeof(why)), READY_FAIL);
    assert_non_null(strstr(why, "exceeds the target"));
    DrillLast slow_old = passed(now - 40 * DAY, 130000, 120000);               /* FAIL beats WARN */
    assert_int_equal(drill_judge_last(&slow_old, now, max_age, why, sizeof(why)), READY_FAIL);
    DrillLast no_target = passed(now - DAY, 10 * DAY, 0);
    assert_int_equal(drill_judge_last(&no_target, now, max_age, why, sizeof(why)), READY_PASS);

    DrillLast failed = {.exists = true, .ok = false, .finished_ms = now - 60000, .rto_ms = -1,
                        .rto_target_ms = 120000, .id = "drill-corruption-y", .failure = "restore: corrupt"};
    assert_int_equal(drill_judge_last(&failed, now, max_age, why, sizeof(why)), READY_FAIL);
    assert_non_null(strstr(why, "restore: corrupt"));
}

static void test_free_space_for_a_restore(void **state)
{
    (void)state;
    assert_int_equal(drill_space_needed(1000, 1.5), 1500);
    assert_int_equal(drill_space_needed(1001, 1.5), 1502);             /* rounded up */
    assert_int_equal(drill_space_needed(0, 1.5), 0);
    assert_true(drill_space_needed(UINT64_MAX / 2, 1e15) == UINT64_MAX); /* saturates */
    assert_int_equal(drill_judge_space(1500, drill_space_needed(1000, 1.5)), READY_PASS);
    assert_int_equal(drill_judge_space(1499, drill_space_needed(1000, 1.5)), READY_FAIL);
    assert_int_equal(drill_judge_space(UINT64_MAX - 1, drill_space_needed(1u << 20, 1e15)), READY_FAIL);
}

static void test_scratch_names(void **state)
{
    (void)state;
    char n[64];
    drill_scratch_name("trading", "20261203t040000z_1a2b", n, sizeof(n));
    assert_string_equal(n, "trading_drill_20261203t040000z_1a2b");
    assert_true(drill_is_scratch_name("trading", n));
    /* a long name is cut, never the tag, and still recognised */
    const char *longdb = "a_database_whose_name_is_long_enough_to_be_cut_here";
    drill_scratch_name(longdb, "20261203t040000z_ffff", n, sizeof(n));
    assert_int_equal(strlen(n), 63);
    assert_string_equal(n + 63 - 21, "20261203t040000z_ffff");
    assert_true(drill_is_scratch_name(longdb, n));
    /* nothing else: the live database, another database's drill, a tag of another shape, more after it */
    assert_false(drill_is_scratch_name("trading", "trading"));
    assert_false(drill_is_scratch_name("trading", "trading_drill_"));
    assert_false(drill_is_scratch_name("trading", "other_drill_20261203t040000z_1a2b"));
    assert_false(drill_is_scratch_name("trading", "trading2_drill_20261203t040000z_1a2b"));
    assert_false(drill_is_scratch_name("trading", "trading_drill_20261203t040000z_1A2B"));
    assert_false(drill_is_scratch_name("trading", "trading_drill_20261203t040000z_1a2b_x"));
    assert_false(drill_is_scratch_name("trading", "trading_drill_2026120t3040000z_1a2b"));
    assert_false(drill_is_scratch_name("trading", "trading_drill_my_own_copy_keep_it"));
    assert_false(drill_is_scratch_name("trading", "trading_breach_20261203t040000z_1a2b"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rto_is_the_sum_of_the_measured_steps),
        cmocka_unit_test(test_the_last_drill_judged),
        cmocka_unit_test(test_free_space_for_a_restore),
        cmocka_unit_test(test_scratch_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
