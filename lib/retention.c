/*
 * retention: the retention decision (see retention.h).
 */
#include "retention.h"

#include <stdlib.h>
#include <time.h>

typedef enum { TIER_DAY, TIER_WEEK, TIER_MONTH } RetentionTier;

static int64_t retention_floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && ((a < 0) != (b < 0))) ? q - 1 : q;
}

/* The period a time falls in, as an increasing integer. */
static int64_t retention_period(int64_t t, RetentionTier tier)
{
    int64_t day = retention_floor_div(t, 86400);
    if (tier == TIER_DAY)
        return day;
    if (tier == TIER_WEEK)
        return retention_floor_div(day + 3, 7); /* 1970-01-01 was a Thursday; weeks start Monday */
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm))
        return day;
    return (int64_t)tm.tm_year * 12 + tm.tm_mon;
}

/* Keep the newest item of each of the `count` most recent periods. */
static void retention_keep_tier(const RetentionItem *items, size_t n, RetentionTier tier, unsigned count, bool *keep)
{
    unsigned periods = 0;
    bool *done = calloc(n ? n : 1, sizeof(*done));
    if (!done) {
        /* Out of memory: keeping everything is the safe answer. */
        for (size_t i = 0; i < n; i++)
            keep[i] = true;
        return;
    }
    /* Repeatedly pick the newest item not yet in a handled period. O(n^2), n is small. */
    while (periods < count) {
        size_t best = n;
        for (size_t i = 0; i < n; i++)
            if (!done[i] && (best == n || items[i].started_at > items[best].started_at))
                best = i;
        if (best == n)
            break;
        int64_t p = retention_period(items[best].started_at, tier);
        keep[best] = true;
        for (size_t i = 0; i < n; i++)
            if (!done[i] && retention_period(items[i].started_at, tier) == p)
                done[i] = true;
        periods++;
    }
    free(done);
}

size_t retention_decide(const RetentionItem *items, size_t n, int64_t now, const RetentionPolicy *policy,
                        bool *keep)
{
    bool any_rule = policy->max_age_s > 0 || policy->daily || policy->weekly || policy->monthly;
    size_t newest = n, newest_verified = n, dropped = 0;

    for (size_t i = 0; i < n; i++) {
        keep[i] = !any_rule || items[i].started_at > now ||
                  (policy->max_age_s > 0 && now - items[i].started_at <= policy->max_age_s);
        if (newest == n || items[i].started_at > items[newest].started_at)
            newest = i;
        if (items[i].verified && (newest_verified == n || items[i].started_at > items[newest_verified].started_at))
            newest_verified = i;
    }
    if (policy->daily)
        retention_keep_tier(items, n, TIER_DAY, policy->daily, keep);
    if (policy->weekly)
        retention_keep_tier(items, n, TIER_WEEK, policy->weekly, keep);
    if (policy->monthly)
        retention_keep_tier(items, n, TIER_MONTH, policy->monthly, keep);
    if (newest < n)
        keep[newest] = true;
    if (newest_verified < n)
        keep[newest_verified] = true;
    for (size_t i = 0; i < n; i++)
        dropped += !keep[i];
    return dropped;
}
