/*
 * fuzz_cron: libFuzzer harness for lib/cron.
 *
 * Owns nothing but the check: the input is one cron expression (any bytes, cut at the first NUL);
 * cron_parse must accept it or refuse it with a message, and for an accepted one cron_next, from a
 * few fixed instants, must return a minute strictly later than the start that the expression
 * really matches (checked field by field with gmtime_r), or -ENOENT / -EOVERFLOW.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cron.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_cron_check_match(const CronExpr *e, int64_t after, int64_t next)
{
    struct tm tm;
    time_t t = (time_t)next;

    if (next <= after || next % 60 != 0 || !gmtime_r(&t, &tm))
        abort();
    if (!(e->minutes >> tm.tm_min & 1) || !(e->hours >> tm.tm_hour & 1) || !(e->months >> (tm.tm_mon + 1) & 1))
        abort();
    bool mday = e->mdays >> tm.tm_mday & 1, wday = e->wdays >> tm.tm_wday & 1;
    bool day = (e->mday_star || e->wday_star) ? (mday && wday) : (mday || wday);
    if (!day)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const int64_t starts[] = {0, 1700000000, 1709210000 /* around 2024-02-29 */, 4102444740};
    char expr[512], err[256] = "";
    CronExpr e;

    if (size >= sizeof(expr))
        return -1;
    memcpy(expr, data, size);
    expr[size] = '\0';
    memset(&e, 0xa5, sizeof(e));
    if (cron_parse(expr, &e, err, sizeof(err)) < 0) {
        if (!err[0])
            abort(); /* a refusal always says why */
        return 0;
    }
    for (size_t i = 0; i < sizeof(starts) / sizeof(starts[0]); i++) {
        int64_t next = 0;
        int r = cron_next(&e, starts[i], &next);
        if (r == 0)
            fuzz_cron_check_match(&e, starts[i], next);
        else if (r != -ENOENT && r != -EOVERFLOW)
            abort();
    }
    return 0;
}
