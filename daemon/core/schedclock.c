/*
 * schedclock: the schedules' clock, the wall clock plus the DRSUP_TEST_SCHEDULE_SKEW_S test hook
 * (see schedclock.h).
 */
#include <stdlib.h>

#include "clock.h"
#include "core/schedclock.h"

static int64_t schedclock_skew_ms(void)
{
    static int64_t skew = -1; /* read once: the loop thread is the only reader */
    if (skew < 0) {
        const char *e = getenv("DRSUP_TEST_SCHEDULE_SKEW_S");
        long long v = e ? strtoll(e, NULL, 10) : 0;
        skew = v > 0 && v < 86400 ? (int64_t)v * 1000 : 0;
    }
    return skew;
}

int64_t schedclock_now_ms(void)
{
    return clock_wall_ms() + schedclock_skew_ms();
}

int64_t schedclock_now_s(void)
{
    return schedclock_now_ms() / 1000;
}
