/*
 * clock: the two clocks the daemon reads, in one place.
 *
 * Owns nothing but the conversions: the wall clock (CLOCK_REALTIME) in milliseconds since the Unix
 * epoch, for timestamps that people and files see, and the monotonic clock (CLOCK_MONOTONIC) in
 * microseconds, for what systemd wants monotonic. Timers and durations on the loop use uv_now().
 * Every module reads the time through these (not clock_gettime), so a unit test can fake it for all
 * of them with -Wl,--wrap=clock_wall_ms.
 */
#ifndef DRSUP_CLOCK_H
#define DRSUP_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Now, wall clock: milliseconds since 1970-01-01T00:00:00Z. */
int64_t clock_wall_ms(void);
/* Now, monotonic clock: microseconds since an unspecified start (CLOCK_MONOTONIC). */
uint64_t clock_mono_us(void);
/* Wall-clock ms as RFC 3339 UTC with milliseconds, "2026-12-03T10:27:54.590Z" (what reports show
 * and PostgreSQL reads as a timestamptz), into out of n bytes (>= 25 for all of it). */
void clock_format_utc_ms(int64_t ms, char *out, size_t n);

#endif
