/*
 * cron: parsing of five-field cron expressions and next-match computation in UTC (see cron.h).
 */
#include "cron.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

typedef struct CronField {
    const char *name;
    int min;
    int max;
    const char *const *names; /* names[i] is the value min + i, or NULL */
} CronField;

static const char *const cron_month_names[] = {"jan", "feb", "mar", "apr", "may", "jun",
                                               "jul", "aug", "sep", "oct", "nov", "dec", NULL};
static const char *const cron_wday_names[] = {"sun", "mon", "tue", "wed", "thu", "fri", "sat", NULL};

static const CronField cron_fields[5] = {
    {"minute", 0, 59, NULL},
    {"hour", 0, 23, NULL},
    {"day-of-month", 1, 31, NULL},
    {"month", 1, 12, cron_month_names},
    {"day-of-week", 0, 7, cron_wday_names},
};

static const struct {
    const char *name;
    const char *expansion;
} cron_macros[] = {
    {"@hourly", "0 * * * *"},    {"@daily", "0 0 * * *"},   {"@midnight", "0 0 * * *"},
    {"@weekly", "0 0 * * 0"},    {"@monthly", "0 0 1 * *"}, {"@yearly", "0 0 1 1 *"},
    {"@annually", "0 0 1 1 *"},
};

__attribute__((format(printf, 3, 4))) static int cron_fail(char *err, size_t errlen, const char *fmt,
                                                           ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -EINVAL;
}

/* Parses a number or a name at *p (advancing it). 0, or -EINVAL with err filled. */
static int cron_parse_value(const char **p, const char *end, int idx, int *ret, char *err, size_t errlen)
{
    const CronField *f = &cron_fields[idx];
    const char *s = *p;
    if (s < end && isdigit((unsigned char)*s)) {
        long v = 0;
        while (s < end && isdigit((unsigned char)*s)) {
            v = v * 10 + (*s - '0');
            if (v > 1000)
                v = 1000; /* clamp: reported as out of range below */
            s++;
        }
        if (v < f->min || v > f->max)
            return cron_fail(err, errlen, "field %d (%s): value %.*s out of range %d-%d", idx + 1, f->name,
                             (int)(s - *p > 20 ? 20 : s - *p), *p, f->min, f->max);
        *ret = (int)v;
        *p = s;
        return 0;
    }
    if (s < end && isalpha((unsigned char)*s) && f->names) {
        const char *w = s;
        while (s < end && isalpha((unsigned char)*s))
            s++;
        size_t wl = (size_t)(s - w);
        for (int i = 0; f->names[i]; i++) {
            if (wl == 3 && strncasecmp(w, f->names[i], 3) == 0) {
                *ret = f->min + i;
                *p = s;
                return 0;
            }
        }
        return cron_fail(err, errlen, "field %d (%s): unknown name '%.*s'", idx + 1, f->name, (int)wl, w);
    }
    if (s >= end)
        return cron_fail(err, errlen, "field %d (%s): missing value", idx + 1, f->name);
    return cron_fail(err, errlen, "field %d (%s): unexpected character '%c'", idx + 1, f->name, *s);
}

/* Parses one field [s, end) into a bit set over the field's own range. */
static int cron_parse_field(const char *s, const char *end, int idx, uint64_t *ret_bits, bool *ret_star,
                            char *err, size_t errlen)
{
    const CronField *f = &cron_fields[idx];
    uint64_t bits = 0;
    *ret_star = (*s == '*');
    const char *p = s;
    for (;;) {
        const char *item_end = memchr(p, ',', (size_t)(end - p));
        if (!item_end)
            item_end = end;
        if (item_end == p)
            return cron_fail(err, errlen, "field %d (%s): empty list element", idx + 1, f->name);
        int lo, hi, step = 1;
        bool single = false;
        if (*p == '*') {
            lo = f->min;
            hi = f->max;
            p++;
        } else {
            int r = cron_parse_value(&p, item_end, idx, &lo, err, errlen);
            if (r < 0)
                return r;
            if (p < item_end && *p == '-') {
                p++;
                r = cron_parse_value(&p, item_end, idx, &hi, err, errlen);
                if (r < 0)
                    return r;
                if (hi < lo)
                    return cron_fail(err, errlen, "field %d (%s): range %d-%d is reversed", idx + 1,
                                     f->name, lo, hi);
            } else {
                hi = lo;
                single = true;
            }
        }
        if (p < item_end && *p == '/') {
            p++;
            if (p >= item_end || !isdigit((unsigned char)*p))
                return cron_fail(err, errlen, "field %d (%s): step must be a positive number", idx + 1,
                                 f->name);
            long v = 0;
            const char *digits = p;
            while (p < item_end && isdigit((unsigned char)*p)) {
                v = v * 10 + (*p - '0');
                if (v > 1000)
                    v = 1000;
                p++;
            }
            if (v < 1 || v > f->max - f->min + 1)
                return cron_fail(err, errlen, "field %d (%s): step %.*s out of range 1-%d", idx + 1, f->name,
                                 (int)(p - digits > 20 ? 20 : p - digits), digits, f->max - f->min + 1);
            step = (int)v;
            if (single)
                hi = f->max; /* "5/15" means "5-max/15" */
        }
        if (p != item_end)
            return cron_fail(err, errlen, "field %d (%s): unexpected character '%c'", idx + 1, f->name, *p);
        for (int v = lo; v <= hi; v += step)
            bits |= UINT64_C(1) << v;
        if (item_end == end)
            break;
        p = item_end + 1;
        if (p == end)
            return cron_fail(err, errlen, "field %d (%s): empty list element", idx + 1, f->name);
    }
    *ret_bits = bits;
    return 0;
}

int cron_parse(const char *expr, CronExpr *ret, char *err, size_t errlen)
{
    if (!expr || !ret)
        return cron_fail(err, errlen, "no expression");
    while (isspace((unsigned char)*expr))
        expr++;
    if (*expr == '@') {
        size_t n = strcspn(expr, " \t\r\n");
        const char *rest = expr + n;
        while (isspace((unsigned char)*rest))
            rest++;
        for (size_t i = 0; i < sizeof(cron_macros) / sizeof(cron_macros[0]); i++) {
            if (strlen(cron_macros[i].name) == n && strncasecmp(expr, cron_macros[i].name, n) == 0) {
                if (*rest)
                    return cron_fail(err, errlen, "unexpected text after %s", cron_macros[i].name);
                return cron_parse(cron_macros[i].expansion, ret, err, errlen);
            }
        }
        return cron_fail(err, errlen, "unknown macro '%.*s'", (int)(n > 32 ? 32 : n), expr);
    }

    const char *start[5], *stop[5];
    int nf = 0;
    const char *p = expr;
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        if (!*p)
            break;
        const char *s = p;
        while (*p && !isspace((unsigned char)*p))
            p++;
        if (nf < 5) {
            start[nf] = s;
            stop[nf] = p;
        }
        nf++;
    }
    if (nf != 5)
        return cron_fail(err, errlen, "expected 5 fields (minute hour day-of-month month day-of-week), got %d",
                         nf);

    uint64_t bits[5];
    bool star[5];
    for (int i = 0; i < 5; i++) {
        int r = cron_parse_field(start[i], stop[i], i, &bits[i], &star[i], err, errlen);
        if (r < 0)
            return r;
    }
    CronExpr e = {
        .minutes = bits[0],
        .hours = (uint32_t)bits[1],
        .mdays = (uint32_t)bits[2],
        .months = (uint16_t)bits[3],
        .wdays = (uint8_t)((bits[4] | (bits[4] >> 7)) & 0x7f), /* 7 is Sunday too */
        .mday_star = star[2],
        .wday_star = star[4],
    };
    *ret = e;
    return 0;
}

static bool cron_day_matches(const CronExpr *e, const struct tm *tm)
{
    bool md = (e->mdays >> tm->tm_mday) & 1u;
    bool wd = (e->wdays >> tm->tm_wday) & 1u;
    if (e->mday_star || e->wday_star)
        return md && wd;
    return md || wd;
}

int cron_next(const CronExpr *e, int64_t after_unix_seconds, int64_t *ret_next)
{
    if (!e || !ret_next)
        return -EINVAL;
    /* First whole minute strictly after 'after' (floor division for negative times). */
    int64_t m = after_unix_seconds / 60;
    if (after_unix_seconds % 60 < 0)
        m--;
    if (m > INT64_MAX / 60 - 1)
        return -EOVERFLOW;
    time_t t = (time_t)((m + 1) * 60);

    struct tm tm;
    if (!gmtime_r(&t, &tm))
        return -EOVERFLOW;
    const int last_year = tm.tm_year + CRON_HORIZON_YEARS;

    while (tm.tm_year <= last_year) {
        if (!((e->months >> (tm.tm_mon + 1)) & 1u)) {
            tm.tm_mon++;
            tm.tm_mday = 1;
            tm.tm_hour = 0;
            tm.tm_min = 0;
        } else if (!cron_day_matches(e, &tm)) {
            tm.tm_mday++;
            tm.tm_hour = 0;
            tm.tm_min = 0;
        } else if (!((e->hours >> tm.tm_hour) & 1u)) {
            tm.tm_hour++;
            tm.tm_min = 0;
        } else {
            int min = tm.tm_min;
            while (min < 60 && !((e->minutes >> min) & 1u))
                min++;
            if (min < 60) {
                tm.tm_min = min;
                tm.tm_sec = 0;
                time_t r = timegm(&tm);
                if (r == (time_t)-1)
                    return -EOVERFLOW;
                *ret_next = (int64_t)r;
                return 0;
            }
            tm.tm_hour++;
            tm.tm_min = 0;
        }
        /* Normalise (month/day/hour overflow) and recompute the weekday. */
        tm.tm_sec = 0;
        t = timegm(&tm);
        if (t == (time_t)-1 || !gmtime_r(&t, &tm))
            return -EOVERFLOW;
    }
    return -ENOENT;
}
