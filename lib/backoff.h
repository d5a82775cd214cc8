/*
 * backoff: exponential backoff arithmetic, one pure function for every retry in the daemon.
 *
 * Owns nothing: no clock, no random source, no state. The delay before retry `attempt` (1 for the
 * first retry after the first failure) is base * 2^(attempt-1), capped at cap (attempt 0 counts as
 * 1; no overflow for any attempt). With jitter the caller hands in a random 32-bit value and gets
 * "equal jitter": a delay in [d/2, d] where d is the capped delay, never 0 unless base is 0.
 */
#ifndef DRSUP_BACKOFF_H
#define DRSUP_BACKOFF_H

#include <stdint.h>

/* min(cap_ms, base_ms * 2^(attempt-1)). */
uint64_t backoff_ms(uint64_t base_ms, uint64_t cap_ms, unsigned attempt);
/* backoff_ms() with equal jitter from rnd (uniform over uint32_t): d/2 + (d - d/2) * rnd / 2^32,
 * at least 1 when base_ms > 0. */
uint64_t backoff_jitter_ms(uint64_t base_ms, uint64_t cap_ms, unsigned attempt, uint32_t rnd);

#endif
