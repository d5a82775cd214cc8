/*
 * alerts_cond: open conditions as alerts knows them, and their durable copy.
 *
 * A condition opens with its first event and closes with its resolution. Alerts remembers which
 * channels were told about it (so the resolution reaches exactly those), its worst severity and
 * how often it was seen. The set is kept in state_dir/alerts-conditions.json (written whole with
 * lib/atomicfile on the thread pool, by daemon/alerts/alerts.c, after every open, routing change and
 * close), so a resolution after a restart still reaches the channels that paged.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "alerts/alerts_internal.h"

AlertCondition *alerts__cond_find(Alerts *a, const char *key)
{
    for (AlertCondition *c = a->conds; c; c = c->next)
        if (!strcmp(c->key, key))
            return c;
    return NULL;
}

AlertCondition *alerts__cond_open(Alerts *a, const char *key, const char *kind, Severity sev, int64_t ts)
{
    AlertCondition *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->key = strdup(key);
    c->kind = strdup(kind);
    c->summary = strdup("");
    if (!c->key || !c->kind || !c->summary) {
        alerts__cond_free(c);
        return NULL;
    }
    c->severity = sev;
    c->opened_ms = c->last_ms = ts;
    c->next = a->conds;
    a->conds = c;
    return c;
}

void alerts__cond_free(AlertCondition *c)
{
    if (!c)
        return;
    free(c->key);
    free(c->kind);
    free(c->summary);
    free(c);
}

void alerts__cond_remove(Alerts *a, AlertCondition *c)
{
    for (AlertCondition **pp = &a->conds; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            alerts__cond_free(c);
            return;
        }
    }
}

char *alerts__conds_to_text(const Alerts *a)
{
    json_t *arr = json_array();
    char *text = NULL;

    if (!arr)
        return NULL;
    /* The list is newest first; write oldest first so a reload rebuilds the same order. */
    size_t n = 0;
    for (const AlertCondition *c = a->conds; c; c = c->next)
        n++;
    for (size_t i = n; i > 0; i--) {
        const AlertCondition *c = a->conds;
        for (size_t k = 1; k < i; k++)
            c = c->next;
        json_t *chans = json_array();
        for (unsigned ch = 0; ch < ALERT_CH_COUNT; ch++)
            if (c->channels & (1u << ch))
                json_array_append_new(chans, json_string(alertfmt_channel_name((AlertChannel)ch)));
        json_array_append_new(arr, json_pack("{s:s,s:s,s:s,s:s,s:I,s:I,s:I,s:o}", "condition", c->key, "kind",
                                             c->kind, "severity", events_severity_name(c->severity), "summary",
                                             c->summary, "opened_ms", (json_int_t)c->opened_ms, "last_ms",
                                             (json_int_t)c->last_ms, "occurrences", (json_int_t)c->occurrences,
                                             "channels", chans));
    }
    json_t *doc = json_pack("{s:i,s:o}", "version", 1, "conditions", arr);
    if (doc)
        text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

int alerts__conds_from_text(Alerts *a, const char *text, size_t len)
{
    json_t *doc = json_loadb(text, len, 0, NULL);
    json_t *arr = json_object_get(doc, "conditions");
    json_t *o;
    size_t i, n = 0;

    if (!json_is_array(arr)) {
        json_decref(doc);
        return -EINVAL;
    }
    json_array_foreach(arr, i, o) {
        const char *key = json_string_value(json_object_get(o, "condition"));
        const char *kind = json_string_value(json_object_get(o, "kind"));
        const char *sevname = json_string_value(json_object_get(o, "severity"));
        const char *summary = json_string_value(json_object_get(o, "summary"));
        Severity sev;
        if (!key || !kind || !sevname || events_severity_parse(sevname, &sev) < 0 || alerts__cond_find(a, key))
            continue;
        AlertCondition *c = alerts__cond_open(a, key, kind, sev,
                                              (int64_t)json_integer_value(json_object_get(o, "opened_ms")));
        if (!c)
            break;
        c->last_ms = (int64_t)json_integer_value(json_object_get(o, "last_ms"));
        c->occurrences = (uint64_t)json_integer_value(json_object_get(o, "occurrences"));
        if (summary) {
            char *s = strdup(summary);
            if (s) {
                free(c->summary);
                c->summary = s;
            }
        }
        size_t k;
        json_t *ch;
        json_array_foreach(json_object_get(o, "channels"), k, ch) {
            AlertChannel chan;
            if (alertfmt_channel_parse(json_string_value(ch), &chan) == 0) {
                c->channels |= 1u << chan;
                c->sent_sev[chan] = sev;
                /* repeat_interval counts from the restart: a probe finding the same failure again
                 * after a restart is a repeat, not a new page */
                c->last_enq_mono[chan] = uv_now(a->core->loop);
            }
        }
        n++;
    }
    json_decref(doc);
    return (int)n;
}
