/*
 * core: the narrow handle every module below the wiring receives instead of the whole daemon.
 *
 * Holds borrowed pointers to the shared services the wiring (core/daemon.c) owns: the loop, the
 * configuration now running (the pointer is replaced on reload; modules read it through the
 * handle, never keep the Config), the events bus, the status model, the control socket, the HTTP
 * client, the recovery lease and the metrics registry. It names no module: a module that needs another capability gets
 * it passed explicitly, so the include lines show every dependency (see docs/architecture.md).
 */
#ifndef DRSUP_CORE_H
#define DRSUP_CORE_H

#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "core/control.h"
#include "core/events.h"
#include "core/leader.h"
#include "core/lease.h"
#include "core/metrics.h"
#include "core/readiness.h"
#include "core/status.h"
#include "httpc.h"

typedef struct Core {
    uv_loop_t *loop;
    const Config *cfg;       /* the configuration now running */
    const char *config_path;
    int64_t started_ms;      /* wall clock at start */
    EventBus *events;
    Status *status;
    Control *control;
    HttpClient *http;
    Lease *lease;
    Leader *leader;          /* high availability: may this daemon act now? (core/leader.h; NULL-safe) */
    Metrics *metrics;        /* modules register their collectors (core/metrics.h) */
    Readiness *readiness;    /* modules register their readiness checks (core/readiness.h) */
} Core;

#endif
