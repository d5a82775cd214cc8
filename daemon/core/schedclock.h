/*
 * schedclock: the clock the cron schedules are read against (backup.schedules,
 * backup.physical.schedules, backup.verify.restore_schedule, drills.schedule).
 *
 * Owns one test hook: the wall clock plus DRSUP_TEST_SCHEDULE_SKEW_S seconds (1 to 86399; read
 * once, from the environment), so that a test reaches the next minute boundary in seconds instead
 * of waiting up to a minute. Only when a schedule fires moves: names, reports and times stay on
 * the wall clock (clock_wall_ms). Unset (production), it is the wall clock.
 */
#ifndef DRSUP_SCHEDCLOCK_H
#define DRSUP_SCHEDCLOCK_H

#include <stdint.h>

/* Now, as the schedules read it: milliseconds since the Unix epoch (the wall clock + the skew). */
int64_t schedclock_now_ms(void);
/* The same in whole seconds. */
int64_t schedclock_now_s(void);

#endif
