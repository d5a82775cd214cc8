/*
 * watched_rule: the data-loss rule of a watched table (see watched_rule.h).
 */
#include "detect/watched_rule.h"

#include <stdio.h>

int64_t watched_allowed_drop(const WatchedLimit *lim, int64_t good)
{
    int64_t allowed = INT64_MAX;
    if (lim->max_drop_rows >= 0)
        allowed = lim->max_drop_rows;
    if (lim->max_drop_percent >= 0 && good > 0) {
        double d = (double)good * lim->max_drop_percent / 100.0;
        int64_t p = d >= (double)INT64_MAX ? INT64_MAX : (int64_t)d; /* rounded down: stricter */
        if (p < allowed)
            allowed = p;
    } else if (lim->max_drop_percent >= 0) {
        allowed = 0; /* nothing to take a share of: any drop below 0 is beyond the limit */
    }
    return allowed < 0 ? 0 : allowed;
}

int64_t watched_floor(const WatchedLimit *lim, int64_t good)
{
    int64_t allowed = watched_allowed_drop(lim, good);
    return allowed >= good ? (good < 0 ? good : 0) : good - allowed;
}

WatchedVerdict watched_judge(const WatchedLimit *lim, const WatchedObs *last_good, bool gone, int64_t value,
                             const char *name, char *why, size_t n)
{
    char scratch[8];
    if (!why) {
        why = scratch;
        n = sizeof(scratch);
    }
    if (gone && !last_good->have) {
        snprintf(why, n, "'%s' does not exist (never observed)", name);
        return WATCHED_MISSING;
    }
    if (gone) {
        snprintf(why, n, "'%s' no longer exists (it had %lld)", name, (long long)last_good->value);
        return WATCHED_GONE;
    }
    if (!last_good->have) {
        snprintf(why, n, "'%s' is %lld (first observation)", name, (long long)value);
        return WATCHED_FIRST;
    }
    int64_t good = last_good->value;
    if (value >= good) {
        snprintf(why, n, "'%s' is %lld (was %lld)", name, (long long)value, (long long)good);
        return WATCHED_GOOD;
    }
    int64_t drop = good - value, allowed = watched_allowed_drop(lim, good);
    double pct = good > 0 ? 100.0 * (double)drop / (double)good : 100.0;
    snprintf(why, n, "'%s' dropped from %lld to %lld (-%lld rows, %.1f %%) between two probes%s", name,
             (long long)good, (long long)value, (long long)drop, pct,
             drop > allowed ? "" : ", within its limit");
    return drop > allowed ? WATCHED_LOSS : WATCHED_SHRANK;
}

bool watched_verdict_good(WatchedVerdict v)
{
    return v == WATCHED_FIRST || v == WATCHED_GOOD || v == WATCHED_SHRANK;
}

bool watched_verdict_loss(WatchedVerdict v)
{
    return v == WATCHED_LOSS || v == WATCHED_GONE;
}

const char *watched_verdict_name(WatchedVerdict v)
{
    static const char *const names[] = {"first", "good", "shrank", "loss", "gone", "missing"};
    return (unsigned)v < sizeof(names) / sizeof(names[0]) ? names[v] : "?";
}
