/*
 * Unit tests for lib/clock: the wall clock agrees with time() to the second (and counts
 * milliseconds), and the monotonic clock never goes back and advances across a short sleep of the
 * thread (nanosleep, no loop involved).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <time.h>

#include "clock.h"

static void test_wall_matches_time(void **state)
{
    (void)state;
    int64_t before = (int64_t)time(NULL);
    int64_t ms = clock_wall_ms();
    int64_t after = (int64_t)time(NULL);
    assert_true(ms / 1000 >= before && ms / 1000 <= after);
    assert_true(ms > 1600000000000); /* 2020: milliseconds, not seconds */
}

static void test_mono_advances(void **state)
{
    (void)state;
    uint64_t a = clock_mono_us();
    struct timespec d = {.tv_sec = 0, .tv_nsec = 20 * 1000 * 1000};
    nanosleep(&d, NULL);
    uint64_t b = clock_mono_us();
    assert_true(b >= a + 19000);
    assert_true(b - a < 5u * 1000u * 1000u);
    for (int i = 0; i < 1000; i++) {
        uint64_t c = clock_mono_us();
        assert_true(c >= b);
        b = c;
    }
}

static void test_format_utc_ms(void **state)
{
    char out[32];
    (void)state;
    clock_format_utc_ms(1796293674590LL, out, sizeof(out));
    assert_string_equal(out, "2026-12-03T10:27:54.590Z");
    clock_format_utc_ms(5, out, sizeof(out));
    assert_string_equal(out, "1970-01-01T00:00:00.005Z");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wall_matches_time),
        cmocka_unit_test(test_mono_advances),
        cmocka_unit_test(test_format_utc_ms),
    };
    return cmocka_run_group_tests_name("clock", tests, NULL, NULL);
}
