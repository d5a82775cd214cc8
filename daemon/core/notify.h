/*
 * notify: the daemon's side of the systemd service protocol.
 *
 * Owns sd_notify messages (READY=1, STATUS=, RELOADING=1, STOPPING=1) and the watchdog: when
 * systemd enables it (WATCHDOG_USEC), a timer on the loop itself sends WATCHDOG=1 at half the
 * interval, so a wedged loop stops the pings and systemd restarts us. Never from another thread.
 * Without NOTIFY_SOCKET every call is a cheap no-op.
 */
#ifndef DRSUP_NOTIFY_H
#define DRSUP_NOTIFY_H

#include <stdint.h>
#include <uv.h>

typedef struct Notify Notify;

Notify *notify_new(uv_loop_t *loop);
/* Start the watchdog timer if enabled. Returns the interval in µs (0 when disabled). */
uint64_t notify_watchdog_start(Notify *n);
void notify_ready(Notify *n, const char *status);
void notify_status(Notify *n, const char *status);
void notify_reloading(Notify *n);
void notify_stopping(Notify *n);
void notify_close(Notify *n); /* frees once the timer handle is closed */

#endif
