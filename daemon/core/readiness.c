/*
 * readiness: the registry of readiness checks, the readiness command and metrics (see readiness.h).
 *
 * The score is the share of checks that pass, a warning counting half: 100 when every check
 * passes. The command's `nagios` is the worst level (0 every check passes, 1 a warning, 2 a
 * failure), which drctl readiness exits with.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "core/readiness.h"

typedef struct ReadyCheckFn {
    ReadinessFn fn;
    void *data;
} ReadyCheckFn;

struct Readiness {
    ReadyCheckFn *fns;
    size_t n, cap;
};

struct ReadyWriter {
    json_t *checks;
};

Readiness *readiness_new(void)
{
    return calloc(1, sizeof(Readiness));
}

Readiness *readiness_free(Readiness *r)
{
    if (r)
        free(r->fns);
    free(r);
    return NULL;
}

int readiness_register(Readiness *r, ReadinessFn fn, void *data)
{
    if (!r || !fn)
        return -EINVAL;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        ReadyCheckFn *t = realloc(r->fns, cap * sizeof(*t));
        if (!t)
            return -ENOMEM;
        r->fns = t;
        r->cap = cap;
    }
    r->fns[r->n++] = (ReadyCheckFn){fn, data};
    return 0;
}

const char *readiness_level_name(ReadyLevel l)
{
    return l == READY_PASS ? "PASS" : l == READY_WARN ? "WARN" : "FAIL";
}

void readiness_add(ReadyWriter *w, const char *check, ReadyLevel level, const char *fmt, ...)
{
    char evidence[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(evidence, sizeof(evidence), fmt, ap);
    va_end(ap);
    json_array_append_new(w->checks, json_pack("{s:s,s:s,s:i,s:s}", "check", check, "status",
                                               readiness_level_name(level), "level", (int)level, "evidence",
                                               evidence));
}

json_t *readiness_run(Readiness *r)
{
    ReadyWriter w = {.checks = json_array()};
    double points = 0;
    int worst = 0;
    size_t i;
    json_t *c;
    if (!w.checks)
        return NULL;
    for (size_t k = 0; r && k < r->n; k++)
        r->fns[k].fn(&w, r->fns[k].data);
    json_array_foreach(w.checks, i, c) {
        int l = (int)json_integer_value(json_object_get(c, "level"));
        points += l == READY_PASS ? 1.0 : l == READY_WARN ? 0.5 : 0.0;
        if (l > worst)
            worst = l;
    }
    size_t n = json_array_size(w.checks);
    return json_pack("{s:i,s:i,s:o}", "score", n ? (int)(100.0 * points / (double)n + 0.5) : 0, "nagios", worst,
                     "checks", w.checks);
}

static void readiness_cmd(CtlCall *call, const json_t *args, void *data)
{
    (void)args;
    json_t *o = readiness_run(data);
    if (!o) {
        control_reply_error(call, -ENOMEM, "out of memory");
        return;
    }
    control_reply_ok(call, o);
}

static void readiness_collect(MetricsWriter *mw, void *data)
{
    json_t *o = readiness_run(data);
    size_t i;
    json_t *c;
    if (!o)
        return;
    metrics_family(mw, "drsupervisor_readiness_score", METRIC_GAUGE,
                   "share of readiness checks that pass, a warning counting half (0..100)");
    metrics_value(mw, "drsupervisor_readiness_score", (double)json_integer_value(json_object_get(o, "score")));
    metrics_family(mw, "drsupervisor_readiness_check", METRIC_GAUGE, "a readiness check: 0 pass, 1 warn, 2 fail");
    json_array_foreach(json_object_get(o, "checks"), i, c) {
        const char *const l[][2] = {{"check", json_string_value(json_object_get(c, "check"))}};
        metrics_sample(mw, "drsupervisor_readiness_check", l, 1,
                       (double)json_integer_value(json_object_get(c, "level")));
    }
    json_decref(o);
}

int readiness_publish(Readiness *r, Control *ctl, Metrics *m)
{
    int rc = 0;
    if (ctl) {
        CtlCommand cmd = {"readiness", false, readiness_cmd, r,
                          "is the installation ready for a disaster: every check PASS/WARN/FAIL with its evidence"};
        rc = control_register(ctl, &cmd, 1);
    }
    if (rc == 0 && m)
        rc = metrics_register(m, readiness_collect, r);
    return rc;
}
