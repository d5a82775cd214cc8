/*
 * drctl render: text helpers shared by the command files.
 *
 * Owns how times, sizes and durations read in drctl's tables ("3.2s ago", "in 30s", "1.5 MiB"),
 * tolerant getters for reply fields (a missing field renders as a default, never a crash), the
 * --json output, and the one-line rendering of streamed events.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "cfgtree.h"
#include "clock.h"
#include "drctl.h"

void drctl_ago(int64_t ts_ms, char *out, size_t n)
{
    char d[40];
    if (ts_ms <= 0) {
        snprintf(out, n, "-");
        return;
    }
    int64_t diff = clock_wall_ms() - ts_ms;
    if (diff < 0)
        diff = 0;
    if (diff < 10000) {
        snprintf(out, n, "%.1fs ago", (double)diff / 1000.0);
        return;
    }
    cfg_format_duration((uint64_t)(diff / 1000) * 1000, d, sizeof(d));
    snprintf(out, n, "%s ago", d);
}

void drctl_in(int64_t ts_ms, char *out, size_t n)
{
    char d[40];
    int64_t diff = ts_ms - clock_wall_ms();
    if (ts_ms <= 0) {
        snprintf(out, n, "-");
        return;
    }
    if (diff <= 0) {
        snprintf(out, n, "now");
        return;
    }
    cfg_format_duration((uint64_t)diff, d, sizeof(d));
    snprintf(out, n, "in %s", d);
}

void drctl_size(int64_t bytes, char *out, size_t n)
{
    if (bytes >= 1 << 20)
        snprintf(out, n, "%.1f MiB", (double)bytes / 1048576.0);
    else if (bytes >= 1 << 10)
        snprintf(out, n, "%.1f KiB", (double)bytes / 1024.0);
    else
        snprintf(out, n, "%" PRId64 " B", bytes);
}

void drctl_ms(const json_t *v, char *out, size_t n)
{
    if (json_is_integer(v))
        snprintf(out, n, "%.1fs", (double)json_integer_value(v) / 1000.0);
    else
        snprintf(out, n, "-");
}

const char *drctl_str(const json_t *o, const char *key, const char *def)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : def;
}

int64_t drctl_int(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : json_is_real(v) ? (int64_t)json_real_value(v) : 0;
}

void drctl_print_json(const json_t *r)
{
    char *s = json_dumps(r, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (s)
        printf("%s\n", s);
    free(s);
}

void drctl_print_event(const json_t *ev, bool json)
{
    if (json) {
        char *s = json_dumps(ev, JSON_COMPACT);
        printf("%s\n", s ? s : "{}");
        free(s);
    } else {
        char when[32];
        time_t t = (time_t)(drctl_int(ev, "ts_ms") / 1000);
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        printf("%s %-8s %-20s %s%s\n", when, drctl_str(ev, "severity", "?"), drctl_str(ev, "kind", "?"),
               json_is_true(json_object_get(ev, "resolved")) ? "resolved: " : "", drctl_str(ev, "summary", ""));
    }
    fflush(stdout);
}
