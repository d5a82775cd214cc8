/*
 * Unit tests for lib/backoff: the doubling and its cap, attempt 0, no overflow for huge attempts,
 * the equal-jitter bounds (the cases the alerts' retry delays relied on, moved here with the
 * function), and the sequences the standby, the FSM and pgconn used before they shared it.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "backoff.h"

static void test_doubling_and_cap(void **state)
{
    (void)state;
    assert_int_equal(backoff_ms(100, 10000, 1), 100);
    assert_int_equal(backoff_ms(100, 10000, 2), 200);
    assert_int_equal(backoff_ms(100, 10000, 3), 400);
    assert_int_equal(backoff_ms(100, 10000, 7), 6400);
    assert_int_equal(backoff_ms(100, 10000, 8), 10000);
    assert_int_equal(backoff_ms(100, 10000, 9), 10000);
    /* attempt 0 is the first */
    assert_int_equal(backoff_ms(100, 10000, 0), 100);
    /* a base above the cap is capped */
    assert_int_equal(backoff_ms(500, 300, 1), 300);
    assert_int_equal(backoff_ms(0, 300, 5), 0);
}

static void test_no_overflow(void **state)
{
    (void)state;
    assert_int_equal(backoff_ms(1000, UINT64_MAX, 200), UINT64_MAX);
    assert_int_equal(backoff_ms(UINT64_MAX / 2 + 1, UINT64_MAX, 3), UINT64_MAX);
    assert_int_equal(backoff_ms(1, 60000, UINT32_MAX), 60000);
}

/* The standby's retry: 60 s doubling to 1 h. */
static void test_standby_sequence(void **state)
{
    (void)state;
    const uint64_t want[] = {60000, 120000, 240000, 480000, 960000, 1920000, 3600000, 3600000};
    for (unsigned n = 1; n <= 8; n++)
        assert_int_equal(backoff_ms(60000, 3600000, n), want[n - 1]);
}

static void test_jitter(void **state)
{
    (void)state;
    /* Equal jitter: [d/2, d] with d = min(cap, base * 2^(n-1)). */
    assert_int_equal(backoff_jitter_ms(1000, 60000, 1, 0), 500);
    assert_int_equal(backoff_jitter_ms(1000, 60000, 1, UINT32_MAX), 999);
    assert_int_equal(backoff_jitter_ms(1000, 60000, 3, 0), 2000);
    assert_int_equal(backoff_jitter_ms(1000, 60000, 20, 0), 30000);
    assert_true(backoff_jitter_ms(1000, 60000, 200, UINT32_MAX) <= 60000);
    assert_true(backoff_jitter_ms(1000, 60000, 200, UINT32_MAX) >= 59990);
    assert_int_equal(backoff_jitter_ms(1000, 60000, 2, UINT32_MAX / 2 + 1), 1500);
    assert_int_equal(backoff_jitter_ms(1, 1, 1, 0), 1);
    assert_int_equal(backoff_jitter_ms(0, 100, 1, UINT32_MAX), 0);
    uint64_t prev = 0;
    for (unsigned n = 1; n < 12; n++) {
        uint64_t lo = backoff_jitter_ms(100, 100000, n, 0);
        assert_true(lo >= prev);
        prev = lo;
    }
    for (unsigned n = 1; n < 40; n++)
        for (uint32_t r = 0; r < UINT32_MAX - (1u << 26); r += 1u << 26) {
            uint64_t d = backoff_ms(300, 45000, n), j = backoff_jitter_ms(300, 45000, n, r);
            assert_true(j >= d / 2 && j <= d);
        }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doubling_and_cap),
        cmocka_unit_test(test_no_overflow),
        cmocka_unit_test(test_standby_sequence),
        cmocka_unit_test(test_jitter),
    };
    return cmocka_run_group_tests_name("backoff", tests, NULL, NULL);
}
