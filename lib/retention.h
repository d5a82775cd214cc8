/*
 * retention: which backups a retention policy keeps. A pure function, no I/O, no clock.
 *
 * Owns the retention decision only; the daemon lists the catalog, calls retention_decide() with
 * the current time, and deletes what it is told to. Rules (a backup is kept if ANY rule keeps it):
 *   - age: started at most max_age_s seconds before `now` (when max_age_s > 0);
 *   - tiers: the newest backup of each of the `daily` most recent UTC days that have a backup,
 *     likewise of the `weekly` most recent weeks (ISO weeks, Monday to Sunday, UTC) and the
 *     `monthly` most recent calendar months (UTC);
 *   - safety: the newest verified backup, and the newest backup of all, are always kept; so is any
 *     backup that claims to start after `now` (clock skew: do not delete what we do not understand).
 * A policy with no rule at all (max_age_s == 0 and every tier 0) keeps everything.
 * Thread-safe (no state).
 */
#ifndef DRSUP_RETENTION_H
#define DRSUP_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct RetentionItem {
    int64_t started_at; /* Unix seconds, UTC */
    bool verified;
} RetentionItem;

typedef struct RetentionPolicy {
    int64_t max_age_s;  /* 0: no age rule */
    unsigned daily;     /* 0: no daily tier */
    unsigned weekly;
    unsigned monthly;
} RetentionPolicy;

/* Fills keep[i] for each of the n items (any order). Returns how many are NOT kept. */
size_t retention_decide(const RetentionItem *items, size_t n, int64_t now, const RetentionPolicy *policy,
                        bool *keep);

#endif
