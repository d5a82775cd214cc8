/*
 * watched_rule: the data-loss rule for one watched table, as a pure function (no I/O, no clock).
 *
 * Owns what a watched table's new observation means against the last good one: the first
 * observation is the baseline; a value that went up or stayed is good; a drop within the limits is
 * good too (a slow, legitimate shrink: archiving, a cleanup job); a drop by more than
 * max_drop_rows, or by more than max_drop_percent of the last good value, is a loss; the table gone
 * (the relation no longer exists) after a good observation is a loss of every row, and before any
 * (a table not created yet, a misspelt name) only missing: there is nothing to go back to. Only a
 * good observation becomes the new last good one; after a loss the last good one stays, and is the
 * recovery target.
 * detector/watched.c carries it out; tests/unit/test_watched_rule.c reads like the specification.
 */
#ifndef DRSUP_WATCHED_RULE_H
#define DRSUP_WATCHED_RULE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct WatchedLimit {
    double max_drop_percent; /* < 0: not set */
    int64_t max_drop_rows;   /* < 0: not set */
} WatchedLimit;

typedef struct WatchedObs {
    bool have;     /* false until the first observation */
    int64_t value; /* the row count or the query's number */
    int64_t at_ms; /* when it was true (wall ms; the server's clock as the probe read it) */
} WatchedObs;

typedef enum WatchedVerdict {
    WATCHED_FIRST = 0, /* no good observation before: this one is the baseline */
    WATCHED_GOOD,      /* the same or more */
    WATCHED_SHRANK,    /* less, within the limits: good, the new baseline */
    WATCHED_LOSS,      /* less, beyond a limit */
    WATCHED_GONE,      /* the relation no longer exists */
    WATCHED_MISSING,   /* it does not exist and never did while watched: no baseline, no loss (yet) */
} WatchedVerdict;

/* How far the value may drop below `good` and still be good: the smaller of the limits set
 * (max_drop_rows, max_drop_percent of good), never negative. */
int64_t watched_allowed_drop(const WatchedLimit *lim, int64_t good);
/* The least value that counts as "back" after a recovery to an observation of `good`. */
int64_t watched_floor(const WatchedLimit *lim, int64_t good);
/* The verdict on a new observation (value, or gone) against last_good. A sentence for people in
 * why (may be NULL): "'trades' dropped from 10000 to 120 (-9880 rows, 98.8 %) between two probes". */
WatchedVerdict watched_judge(const WatchedLimit *lim, const WatchedObs *last_good, bool gone, int64_t value,
                             const char *name, char *why, size_t n);
/* True for the verdicts that make the observation the new last good one; a loss is LOSS or GONE. */
bool watched_verdict_good(WatchedVerdict v);
bool watched_verdict_loss(WatchedVerdict v);
const char *watched_verdict_name(WatchedVerdict v);

#endif
