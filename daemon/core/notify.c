/*
 * notify: sd_notify and the loop-driven watchdog (see notify.h).
 */
#include "core/notify.h"

#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "clock.h"

struct Notify {
    uv_loop_t *loop;
    uv_timer_t watchdog;
    bool timer_init;
    char last_status[256];
};

Notify *notify_new(uv_loop_t *loop)
{
    Notify *n = calloc(1, sizeof(*n));
    if (n)
        n->loop = loop;
    return n;
}

static void notify_on_watchdog(uv_timer_t *t)
{
    (void)t;
    /* This runs on the loop: if the loop were stuck, the ping would not go out. */
    sd_notify(0, "WATCHDOG=1");
}

uint64_t notify_watchdog_start(Notify *n)
{
    uint64_t usec = 0;

    if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
        return 0;
    uv_timer_init(n->loop, &n->watchdog);
    n->timer_init = true;
    uint64_t ms = usec / 2000;
    if (ms == 0)
        ms = 1;
    sd_notify(0, "WATCHDOG=1");
    uv_timer_start(&n->watchdog, notify_on_watchdog, ms, ms);
    return usec;
}

static void notify_status_line(char *dst, size_t n, const char *status)
{
    size_t i = 0;
    for (; status && status[i] && i + 1 < n; i++)
        dst[i] = status[i] == '\n' ? ' ' : status[i];
    dst[i] = '\0';
}

void notify_ready(Notify *n, const char *status)
{
    if (!n)
        return;
    notify_status_line(n->last_status, sizeof(n->last_status), status ? status : "running");
    sd_notifyf(0, "READY=1\nSTATUS=%s", n->last_status);
}

void notify_status(Notify *n, const char *status)
{
    char line[256];

    if (!n)
        return;
    notify_status_line(line, sizeof(line), status);
    if (strcmp(line, n->last_status) == 0)
        return;
    memcpy(n->last_status, line, sizeof(line));
    sd_notifyf(0, "STATUS=%s", line);
}

void notify_reloading(Notify *n)
{
    (void)n;
    /* MONOTONIC_USEC is for systemd >= 253 (Type=notify-reload); 252 ignores it. */
    sd_notifyf(0, "RELOADING=1\nSTATUS=reloading configuration\nMONOTONIC_USEC=%" PRIu64,
               clock_mono_us());
}

void notify_stopping(Notify *n)
{
    (void)n;
    sd_notify(0, "STOPPING=1\nSTATUS=stopping");
}

static void notify_on_closed(uv_handle_t *h)
{
    free(h->data);
}

void notify_close(Notify *n)
{
    if (!n)
        return;
    if (n->timer_init) {
        n->watchdog.data = n;
        uv_close((uv_handle_t *)&n->watchdog, notify_on_closed);
    } else {
        free(n);
    }
}
