/*
 * cron: cron expressions, evaluated in UTC.
 *
 * Owns parsing of the classic five-field schedule ("minute hour day-of-month month day-of-week")
 * and computing the next matching minute. Supported: '*', lists "1,5", ranges "1-5", steps "*\/15",
 * "10-50/10" and "5/15" (= 5-max/15), month names jan..dec and weekday names sun..sat
 * (case-insensitive), day-of-week 0 and 7 both Sunday, and the macros @hourly, @daily,
 * @midnight, @weekly, @monthly, @yearly, @annually.
 *
 * Day rule (as in Vixie cron): when both day-of-month and day-of-week are restricted, a day
 * matches if EITHER matches; if one of them starts with '*' (including "*\/2"), both must match.
 *
 * Pure computation, no allocation, no local time: safe on the loop thread and from any thread.
 */
#ifndef DRSUP_CRON_H
#define DRSUP_CRON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct CronExpr {
    uint64_t minutes;  /* bit n set: minute n (0-59) */
    uint32_t hours;    /* bit n: hour n (0-23) */
    uint32_t mdays;    /* bit n: day of month n (1-31) */
    uint16_t months;   /* bit n: month n (1-12) */
    uint8_t wdays;     /* bit n: weekday n (0 = Sunday .. 6) */
    bool mday_star;    /* day-of-month field started with '*' */
    bool wday_star;    /* day-of-week field started with '*' */
} CronExpr;

/* How far ahead cron_next looks before deciding an expression never matches. */
#define CRON_HORIZON_YEARS 5

/*
 * Parses expr into *ret. Returns 0, or -EINVAL with a message in err (if err != NULL) naming the
 * field and the reason, e.g. "field 2 (hour): value 24 out of range 0-23". *ret is untouched on
 * failure.
 */
int cron_parse(const char *expr, CronExpr *ret, char *err, size_t errlen);

/*
 * Stores in *ret_next the first matching minute (Unix seconds, UTC, seconds = 0) strictly after
 * after_unix_seconds. Returns 0; -ENOENT if nothing matches within CRON_HORIZON_YEARS years (e.g.
 * "0 0 31 2 *"); -EOVERFLOW if the time is outside what the C library can convert; -EINVAL for
 * NULL arguments. Skips whole months, days and hours, so it is cheap even for rare schedules.
 */
int cron_next(const CronExpr *e, int64_t after_unix_seconds, int64_t *ret_next);

#endif
