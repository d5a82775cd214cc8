/*
 * lease: the recovery lease (see lease.h).
 */
#include "core/lease.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

typedef struct LeaseListener {
    LeaseChangedFn fn;
    void *data;
} LeaseListener;

#define LEASE_MAX_DISTURBANCES 4
#define LEASE_MAX_PORTS 4

typedef struct LeasePort {
    int port;
    char claimant[128];
} LeasePort;

struct Lease {
    bool held;
    char *holder;
    LeaseListener *listeners;
    size_t n_listeners;
    LeaseDisturbance dist[LEASE_MAX_DISTURBANCES];
    size_t n_dist;
    LeasePort ports[LEASE_MAX_PORTS];
    size_t n_ports;
};

Lease *lease_new(void)
{
    return calloc(1, sizeof(Lease));
}

Lease *lease_free(Lease *l)
{
    if (l) {
        free(l->holder);
        free(l->listeners);
        free(l);
    }
    return NULL;
}

static void lease_tell(const Lease *l)
{
    /* Listeners must not listen or unlisten from inside the callback. */
    for (size_t i = 0; i < l->n_listeners; i++)
        l->listeners[i].fn(l->held, l->listeners[i].data);
}

int lease_take(Lease *l, const char *holder)
{
    char *name = strdup(holder ? holder : "");
    if (!name)
        return -ENOMEM;
    free(l->holder);
    l->holder = name;
    if (!l->held) {
        l->held = true;
        lease_tell(l);
    }
    return 0;
}

void lease_release(Lease *l)
{
    if (!l->held)
        return;
    l->held = false;
    /* The holder's declarations end with it; those declared aside (a drill's) stay. */
    size_t keep = 0;
    for (size_t i = 0; i < l->n_dist; i++)
        if (l->dist[i].aside)
            l->dist[keep++] = l->dist[i];
    l->n_dist = keep;
    free(l->holder);
    l->holder = NULL;
    lease_tell(l);
}

bool lease_held(const Lease *l)
{
    return l && l->held;
}

const char *lease_holder(const Lease *l)
{
    return l && l->holder ? l->holder : "";
}

int lease_listen(Lease *l, LeaseChangedFn fn, void *data)
{
    LeaseListener *n = realloc(l->listeners, (l->n_listeners + 1) * sizeof(*n));
    if (!n)
        return -ENOMEM;
    l->listeners = n;
    l->listeners[l->n_listeners++] = (LeaseListener){fn, data};
    return 0;
}

void lease_unlisten(Lease *l, LeaseChangedFn fn, void *data)
{
    for (size_t i = 0; i < l->n_listeners; i++) {
        if (l->listeners[i].fn == fn && l->listeners[i].data == data) {
            memmove(&l->listeners[i], &l->listeners[i + 1], (l->n_listeners - i - 1) * sizeof(*l->listeners));
            l->n_listeners--;
            return;
        }
    }
}

/* ---- declared disturbances ---- */

static LeaseDisturbance *lease_find(Lease *l, const char *database)
{
    for (size_t i = 0; i < l->n_dist; i++)
        if (!strcmp(l->dist[i].database, database))
            return &l->dist[i];
    return NULL;
}

int lease_expect(Lease *l, const LeaseDisturbance *d)
{
    if (!l || !l->held || !d || !d->database[0] || !d->kinds)
        return -EINVAL;
    LeaseDisturbance *o = lease_find(l, d->database);
    if (o && o->aside)
        return -EINVAL;
    if (!o) {
        if (l->n_dist >= LEASE_MAX_DISTURBANCES)
            return -ENOMEM;
        o = &l->dist[l->n_dist++];
        *o = *d;
        o->aside = false;
        o->count = 0;
        o->first_ms = o->last_ms = 0;
        o->last_error[0] = '\0';
        return 0;
    }
    /* Same database, maybe a later step: the new words, the count so far. */
    o->kinds = d->kinds;
    memcpy(o->run, d->run, sizeof(o->run));
    memcpy(o->scenario, d->scenario, sizeof(o->scenario));
    memcpy(o->step, d->step, sizeof(o->step));
    memcpy(o->what, d->what, sizeof(o->what));
    return 0;
}

int lease_expect_aside(Lease *l, const LeaseDisturbance *d)
{
    if (!l || !d || !d->database[0] || !d->kinds)
        return -EINVAL;
    LeaseDisturbance *o = lease_find(l, d->database);
    if (o && !o->aside)
        return -EINVAL;
    if (!o) {
        if (l->n_dist >= LEASE_MAX_DISTURBANCES)
            return -ENOMEM;
        o = &l->dist[l->n_dist++];
    }
    *o = *d;
    o->aside = true;
    o->count = 0;
    o->first_ms = o->last_ms = 0;
    o->last_error[0] = '\0';
    return 0;
}

bool lease_expect_end(Lease *l, const char *database, LeaseDisturbance *ret)
{
    LeaseDisturbance *o = l && database ? lease_find(l, database) : NULL;
    if (!o)
        return false;
    if (ret)
        *ret = *o;
    size_t i = (size_t)(o - l->dist);
    memmove(&l->dist[i], &l->dist[i + 1], (l->n_dist - i - 1) * sizeof(l->dist[0]));
    l->n_dist--;
    return true;
}

const LeaseDisturbance *lease_disturbances(const Lease *l, size_t *ret_n)
{
    *ret_n = l ? l->n_dist : 0;
    return l ? l->dist : NULL;
}

/* The server quotes the database's name: 'database "shop" does not exist'. */
static bool lease_says(const char *message, const char *database, const char *tail)
{
    char want[160];
    if (!message)
        return false;
    snprintf(want, sizeof(want), "database \"%s\" %s", database, tail);
    return strstr(message, want) != NULL;
}

bool lease_disturbance_matches(const LeaseDisturbance *d, const char *database, const char *sqlstate,
                               const char *message)
{
    if (!d || !database || !database[0] || strcmp(d->database, database))
        return false;
    if (!sqlstate)
        sqlstate = "";
    if ((d->kinds & LEASE_DB_MISSING) && (!strcmp(sqlstate, "3D000") || lease_says(message, database, "does not exist")))
        return true;
    if ((d->kinds & LEASE_DB_REFUSING) && lease_says(message, database, "is not currently accepting connections"))
        return true;
    if ((d->kinds & LEASE_DB_TERMINATED) &&
        (!strcmp(sqlstate, "57P01") ||
         (message && strstr(message, "terminating connection due to administrator command"))))
        return true;
    if ((d->kinds & LEASE_DB_STOPPED) &&
        (!strcmp(sqlstate, "57P03") || (message && (strstr(message, "the database system is shutting down") ||
                                                    strstr(message, "Connection refused")))))
        return true;
    return false;
}

const LeaseDisturbance *lease_attribute(Lease *l, const char *database, const char *sqlstate, const char *message,
                                        int64_t now_ms)
{
    if (!l)
        return NULL;
    for (size_t i = 0; i < l->n_dist; i++) {
        LeaseDisturbance *d = &l->dist[i];
        if ((!l->held && !d->aside) || !lease_disturbance_matches(d, database, sqlstate, message))
            continue;
        if (!d->count++)
            d->first_ms = now_ms;
        d->last_ms = now_ms;
        snprintf(d->last_error, sizeof(d->last_error), "%s", message ? message : "");
        return d;
    }
    return NULL;
}

static size_t lease_port_index(const Lease *l, int port)
{
    size_t i = 0;
    while (l && i < l->n_ports && l->ports[i].port != port)
        i++;
    return l ? i : 0;
}

static LeasePort *lease_port_find(Lease *l, int port)
{
    size_t i = lease_port_index(l, port);
    return l && i < l->n_ports ? &l->ports[i] : NULL;
}

int lease_port_claim(Lease *l, int port, const char *claimant)
{
    if (!l || port <= 0 || !claimant || !claimant[0])
        return -EINVAL;
    LeasePort *p = lease_port_find(l, port);
    if (p)
        return strncmp(p->claimant, claimant, sizeof(p->claimant) - 1) == 0 ? 0 : -EADDRINUSE;
    if (l->n_ports >= LEASE_MAX_PORTS)
        return -ENOMEM;
    p = &l->ports[l->n_ports++];
    p->port = port;
    snprintf(p->claimant, sizeof(p->claimant), "%s", claimant);
    return 0;
}

void lease_port_release(Lease *l, int port)
{
    LeasePort *p = lease_port_find(l, port);
    if (!p)
        return;
    size_t i = (size_t)(p - l->ports);
    memmove(&l->ports[i], &l->ports[i + 1], (l->n_ports - i - 1) * sizeof(l->ports[0]));
    l->n_ports--;
}

const char *lease_port_claimant(const Lease *l, int port)
{
    size_t i = lease_port_index(l, port);
    return l && i < l->n_ports ? l->ports[i].claimant : NULL;
}
