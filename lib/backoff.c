/*
 * backoff: exponential backoff with an optional equal jitter (see backoff.h).
 */
#include "backoff.h"

uint64_t backoff_ms(uint64_t base_ms, uint64_t cap_ms, unsigned attempt)
{
    uint64_t d = base_ms;
    if (attempt == 0)
        attempt = 1;
    for (unsigned i = 1; i < attempt && d < cap_ms; i++)
        d = d > UINT64_MAX / 2 ? UINT64_MAX : d * 2;
    return d > cap_ms ? cap_ms : d;
}

uint64_t backoff_jitter_ms(uint64_t base_ms, uint64_t cap_ms, unsigned attempt, uint32_t rnd)
{
    uint64_t d = backoff_ms(base_ms, cap_ms, attempt);
    uint64_t half = d / 2;
    uint64_t r = half + (uint64_t)(((unsigned __int128)(d - half) * rnd) >> 32);
    return r ? r : (base_ms ? 1 : 0);
}
