/*
 * drill_rules: the pure judgements of drills (docs/drills.md, docs/readiness.md), kept apart from
 * the job so the unit tests read like the rules: the RTO a real run would have from a drill's
 * measured steps and whether it meets the target, the readiness of a scenario's last drill, and
 * the free space a restore needs, and the names of database_corruption drills' scratch databases.
 * No I/O, no allocation.
 */
#ifndef DRSUP_DRILL_RULES_H
#define DRSUP_DRILL_RULES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/readiness.h"

/* The RTO a real run would have: the sum of the measured durations (ms; a negative one, a step
 * that did not run, counts 0) plus halt_ms (the halt's typical time, 0 when not known). */
int64_t drill_rto_estimate(const int64_t *durations_ms, size_t n, int64_t halt_ms);
/* Does the estimate meet the target? A target of 0 is none: met. */
bool drill_rto_met(int64_t rto_ms, uint64_t target_ms);

/* A scenario's last finished (not aborted) drill, as readiness sees it. */
typedef struct DrillLast {
    bool exists;
    bool ok;              /* every step passed */
    int64_t finished_ms;  /* wall clock */
    int64_t rto_ms;       /* the estimate, -1 when not measured (the drill failed before) */
    uint64_t rto_target_ms; /* the scenario's rto when the drill ran, 0 none */
    const char *id;
    const char *failure;  /* why it failed ("" or NULL when ok) */
} DrillLast;

/* PASS: a passed drill younger than max_age_ms whose RTO met its target; WARN: none, or older;
 * FAIL: it failed, or its RTO exceeded the target. The evidence sentence goes to why. */
ReadyLevel drill_judge_last(const DrillLast *last, int64_t now_ms, uint64_t max_age_ms, char *why, size_t n);

/* The bytes a restore of a backup of backup_bytes needs free on a filesystem: backup_bytes * factor
 * (rounded up; saturates at UINT64_MAX). */
uint64_t drill_space_needed(uint64_t backup_bytes, double factor);
/* PASS when free_bytes >= needed, else FAIL. */
ReadyLevel drill_judge_space(uint64_t free_bytes, uint64_t needed_bytes);

/* A database_corruption drill's scratch database: "<database>_drill_<tag>" with the tag
 * "YYYYMMDDtHHMMSSz_xxxx" (UTC time, 4 lowercase hex digits), the database's name cut (never the
 * tag) to keep it within the server's 63 bytes. The name into out (n >= 64). */
#define DRILL_SCRATCH_TAG_LEN 21
void drill_scratch_name(const char *database, const char *tag, char *out, size_t n);
/* Is name exactly such a scratch database of `database` (the cut prefix, "_drill_", a tag of that
 * form and nothing more)? The start-up sweep drops only these. */
bool drill_is_scratch_name(const char *database, const char *name);

#endif
