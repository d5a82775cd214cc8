/*
 * status: component health records (see status.h).
 */
#include "core/status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "clock.h"

struct Status {
    Component **items;
    size_t n;
    StatusChangedFn changed_fn;
    void *changed_data;
};

/* Messages (libpq's especially) span lines; status shows one. */
static char *status_one_line(const char *msg)
{
    char *out = malloc(strlen(msg) + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = msg; *p; p++) {
        if (*p == '\n' || *p == '\t' || *p == '\r') {
            if (o > out && o[-1] != ' ')
                *o++ = ' ';
        } else {
            *o++ = *p;
        }
    }
    while (o > out && o[-1] == ' ')
        o--;
    *o = '\0';
    return out;
}

Status *status_new(void)
{
    return calloc(1, sizeof(Status));
}

Status *status_free(Status *st)
{
    if (!st)
        return NULL;
    for (size_t i = 0; i < st->n; i++) {
        free(st->items[i]->name);
        free(st->items[i]->last_error);
        free(st->items[i]->expected_error);
        free(st->items[i]->expected_by);
        json_decref(st->items[i]->last_detail);
        free(st->items[i]);
    }
    free(st->items);
    free(st);
    return NULL;
}

Component *status_component(Status *st, const char *name)
{
    for (size_t i = 0; i < st->n; i++)
        if (strcmp(st->items[i]->name, name) == 0)
            return st->items[i];
    Component **items = realloc(st->items, (st->n + 1) * sizeof(*items));
    if (!items)
        return NULL;
    st->items = items;
    Component *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->name = strdup(name);
    if (!c->name) {
        free(c);
        return NULL;
    }
    c->since_ms = clock_wall_ms();
    st->items[st->n++] = c;
    return c;
}

const char *status_health_name(Health h)
{
    switch (h) {
    case HEALTH_UP:
        return "up";
    case HEALTH_DOWN:
        return "down";
    case HEALTH_DISABLED:
        return "disabled";
    case HEALTH_UNKNOWN:
    default:
        return "unknown";
    }
}

void status_set_health(Component *c, Health h)
{
    if (c->health != h) {
        c->health = h;
        c->since_ms = clock_wall_ms();
    }
}

int status_observe(Component *c, bool ok, double latency_ms, const char *error, const json_t *detail,
                   uint64_t down_after)
{
    Health before = c->health;

    c->last_obs_ms = clock_wall_ms();
    c->last_ok = ok;
    c->last_latency_ms = latency_ms;
    c->observations++;
    json_decref(c->last_detail);
    c->last_detail = detail ? json_deep_copy(detail) : NULL;
    if (ok) {
        c->consecutive_failures = 0;
        status_set_health(c, HEALTH_UP);
    } else {
        c->failures++;
        c->consecutive_failures++;
        free(c->last_error);
        c->last_error = status_one_line(error ? error : "failed");
        c->last_error_ms = c->last_obs_ms;
        if (c->consecutive_failures >= (down_after ? down_after : 1))
            status_set_health(c, HEALTH_DOWN);
    }
    return c->health != before ? (int)c->health : -1;
}

void status_observe_expected(Component *c, const char *error, const char *attributed_to)
{
    char *e = status_one_line(error ? error : "failed"), *by = strdup(attributed_to ? attributed_to : "");
    c->expected_failures++;
    c->expected_ms = clock_wall_ms();
    if (e && by) {
        free(c->expected_error);
        free(c->expected_by);
        c->expected_error = e;
        c->expected_by = by;
    } else {
        free(e);
        free(by);
    }
}

json_t *status_components_json(const Status *st)
{
    json_t *all = json_object();

    for (size_t i = 0; all && i < st->n; i++) {
        const Component *c = st->items[i];
        json_t *o = json_pack("{s:s,s:I,s:I,s:I,s:I}", "health", status_health_name(c->health), "since_ms",
                              (json_int_t)c->since_ms, "consecutive_failures",
                              (json_int_t)c->consecutive_failures, "observations",
                              (json_int_t)c->observations, "failures", (json_int_t)c->failures);
        if (!o)
            continue;
        if (c->last_obs_ms) {
            json_t *obs = json_pack("{s:I,s:b,s:f}", "ts_ms", (json_int_t)c->last_obs_ms, "ok", c->last_ok,
                                    "latency_ms", c->last_latency_ms);
            if (obs && c->last_detail)
                json_object_set(obs, "detail", c->last_detail);
            json_object_set_new(o, "last_observation", obs ? obs : json_null());
        } else {
            json_object_set_new(o, "last_observation", json_null());
        }
        if (c->last_error)
            json_object_set_new(o, "last_error",
                                json_pack("{s:s,s:I}", "message", c->last_error, "ts_ms",
                                          (json_int_t)c->last_error_ms));
        else
            json_object_set_new(o, "last_error", json_null());
        if (c->expected_failures)
            json_object_set_new(o, "expected", json_pack("{s:I,s:I,s:s?,s:s?}", "failures",
                                                         (json_int_t)c->expected_failures, "ts_ms",
                                                         (json_int_t)c->expected_ms, "message", c->expected_error,
                                                         "attributed_to", c->expected_by));
        json_object_set_new(all, c->name, o);
    }
    return all;
}

void status_summary(const Status *st, char *out, size_t n)
{
    size_t o = 0;

    if (n == 0)
        return;
    out[0] = '\0';
    for (size_t i = 0; i < st->n && o < n; i++) {
        int w = snprintf(out + o, n - o, "%s%s %s", i ? ", " : "", st->items[i]->name,
                         status_health_name(st->items[i]->health));
        if (w < 0)
            break;
        o += (size_t)w;
    }
}

void status_on_change(Status *st, StatusChangedFn fn, void *data)
{
    st->changed_fn = fn;
    st->changed_data = data;
}

void status_changed(Status *st)
{
    if (st && st->changed_fn)
        st->changed_fn(st->changed_data);
}
