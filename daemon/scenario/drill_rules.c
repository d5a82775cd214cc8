/*
 * drill_rules: RTO of a drill, readiness of the last drill, free space for a restore (see drill_rules.h).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "scenario/drill_rules.h"

int64_t drill_rto_estimate(const int64_t *durations_ms, size_t n, int64_t halt_ms)
{
    int64_t sum = halt_ms > 0 ? halt_ms : 0;
    for (size_t i = 0; durations_ms && i < n; i++)
        if (durations_ms[i] > 0)
            sum += durations_ms[i];
    return sum;
}

bool drill_rto_met(int64_t rto_ms, uint64_t target_ms)
{
    return target_ms == 0 || (rto_ms >= 0 && (uint64_t)rto_ms <= target_ms);
}

static void drill_fmt_ms(int64_t ms, char *out, size_t n)
{
    if (ms < 0)
        snprintf(out, n, "-");
    else if (ms < 60000)
        snprintf(out, n, "%.1fs", (double)ms / 1000.0);
    else if (ms < 3600000)
        snprintf(out, n, "%lldm%02llds", (long long)(ms / 60000), (long long)(ms / 1000 % 60));
    else if (ms < 86400000)
        snprintf(out, n, "%lldh%02lldm", (long long)(ms / 3600000), (long long)(ms / 60000 % 60));
    else
        snprintf(out, n, "%lldd%02lldh", (long long)(ms / 86400000), (long long)(ms / 3600000 % 24));
}

ReadyLevel drill_judge_last(const DrillLast *last, int64_t now_ms, uint64_t max_age_ms, char *why, size_t n)
{
    char age[32], rto[32], target[32];
    if (!last || !last->exists) {
        snprintf(why, n, "no drill yet (drctl drill --scenario S, or drills.schedule)");
        return READY_WARN;
    }
    int64_t a = now_ms - last->finished_ms;
    drill_fmt_ms(a < 0 ? 0 : a, age, sizeof(age));
    drill_fmt_ms(last->rto_ms, rto, sizeof(rto));
    drill_fmt_ms((int64_t)last->rto_target_ms, target, sizeof(target));
    if (!last->ok) {
        snprintf(why, n, "the last drill '%s' (%s ago) failed: %s", last->id ? last->id : "?", age,
                 last->failure && last->failure[0] ? last->failure : "see drctl drill-report");
        return READY_FAIL;
    }
    if (!drill_rto_met(last->rto_ms, last->rto_target_ms)) {
        snprintf(why, n, "the last drill '%s' (%s ago) passed, but its RTO %s exceeds the target %s",
                 last->id ? last->id : "?", age, rto, target);
        return READY_FAIL;
    }
    if (a > 0 && (uint64_t)a > max_age_ms) {
        char max[32];
        drill_fmt_ms((int64_t)max_age_ms, max, sizeof(max));
        snprintf(why, n, "the last drill '%s' passed %s ago, longer than drills.max_age %s", last->id ? last->id : "?",
                 age, max);
        return READY_WARN;
    }
    if (last->rto_target_ms)
        snprintf(why, n, "the last drill '%s' passed %s ago: RTO %s within the target %s", last->id ? last->id : "?", age,
                 rto, target);
    else
        snprintf(why, n, "the last drill '%s' passed %s ago: RTO %s (no target)", last->id ? last->id : "?", age, rto);
    return READY_PASS;
}

uint64_t drill_space_needed(uint64_t backup_bytes, double factor)
{
    double need = ceil((double)backup_bytes * (factor > 0 ? factor : 0));
    if (!(need < 18446744073709551615.0))
        return UINT64_MAX;
    return (uint64_t)need;
}

ReadyLevel drill_judge_space(uint64_t free_bytes, uint64_t needed_bytes)
{
    return free_bytes >= needed_bytes ? READY_PASS : READY_FAIL;
}

/* The database's name cut so "_drill_" and the tag fit in 63 bytes. */
static int drill_scratch_keep(const char *database)
{
    int keep = 63 - (int)strlen("_drill_") - DRILL_SCRATCH_TAG_LEN;
    int len = (int)strlen(database);
    return len < keep ? len : keep;
}

void drill_scratch_name(const char *database, const char *tag, char *out, size_t n)
{
    snprintf(out, n, "%.*s_drill_%s", drill_scratch_keep(database), database, tag);
}

bool drill_is_scratch_name(const char *database, const char *name)
{
    static const char shape[] = "99999999t999999z_xxxx"; /* 9: a digit, x: a lowercase hex digit */
    int keep = drill_scratch_keep(database);
    if (strncmp(name, database, (size_t)keep) != 0 || strncmp(name + keep, "_drill_", 7) != 0)
        return false;
    const char *tag = name + keep + 7;
    if (strlen(tag) != DRILL_SCRATCH_TAG_LEN)
        return false;
    for (size_t i = 0; i < DRILL_SCRATCH_TAG_LEN; i++) {
        char c = tag[i];
        bool ok = shape[i] == '9' ? c >= '0' && c <= '9'
                  : shape[i] == 'x' ? (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')
                                    : c == shape[i];
        if (!ok)
            return false;
    }
    return true;
}
