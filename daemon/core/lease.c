/*
 * lease: the recovery lease (see lease.h).
 */
#include "core/lease.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

typedef struct LeaseListener {
    LeaseChangedFn fn;
    void *data;
} LeaseListener;

struct Lease {
    bool held;
    char *holder;
    LeaseListener *listeners;
    size_t n_listeners;
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
