/*
 * daemon: the wiring of one drsupervisord process.
 *
 * Owns the Daemon structure that ties the modules together (loop, current configuration, event
 * bus, status model, control socket, probes, systemd notifications), the built-in control commands
 * (status, ping, reload), configuration reload (parsed on the thread pool, applied on the loop,
 * refused whole when invalid) and orderly shutdown (every handle closed, uv_loop_close() == 0).
 */
#ifndef DRSUP_DAEMON_H
#define DRSUP_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cap/backup/backup.h"
#include "cap/offsite/offsite.h"
#include "cap/wal/wal.h"
#include "core/core.h"
#include "config/config.h"
#include "core/control.h"
#include "core/events.h"
#include "httpc.h"
#include "core/notify.h"
#include "core/roles.h"
#include "core/status.h"
#include "detect/breach.h"

typedef struct Probes Probes;
typedef struct Audit Audit;
typedef struct Replication Replication;
typedef struct Validate Validate;
typedef struct Drills Drills;
typedef struct Alerts Alerts;
typedef struct Venue Venue;
typedef struct Detector Detector;
typedef struct Scenarios Scenarios;
typedef struct Reconcile Reconcile;
typedef struct Standby Standby;

typedef struct ReloadWaiter ReloadWaiter;

typedef struct Daemon {
    Core core;            /* the services the modules get a handle to (core/core.h) */
    Config *cfg;          /* current configuration, owned; replaced whole on reload (core.cfg views it) */
    RolePolicy roles;     /* resolved from cfg->control.operators_group */
    char *config_path;    /* owned; core.config_path views it */
    uint64_t started_mono_ms;
    Audit *audit;         /* the hash-chained audit log (core/audit.c) */
    Probes *probes;
    Replication *replication; /* the standbys' lag (daemon/observe/replication.c) */
    json_t *follows;      /* after a promotion: which conninfos follow the new primary (daemon_follow_primary) */
    Alerts *alerts;
    Venue *venue;
    Backups *backups;
    WalArchive *wal;
    Offsite *offsite;
    Detector *detector;   /* probe results -> halt / restart / corruption (daemon/detect/detector.c) */
    BreachSignals *breach; /* the signed webhook and the tamper signals -> security_breach (detect/breach.c) */
    Scenarios *scenarios; /* recovery runs (daemon/scenario/runner.c) */
    Reconcile *reconcile; /* database against the exchange (daemon/cap/reconcile.c) */
    Validate *validate;   /* drctl validate: the post-recovery checklist (daemon/scenario/validate.c) */
    Drills *drills;       /* drctl drill: rehearsals against a scratch database (daemon/scenario/drill.c) */
    Standby *standby;     /* the newest verified backup restored in advance (daemon/cap/standby.c) */
    Notify *notify;
    uv_signal_t sig_term, sig_int, sig_hup;
    bool handles_started; /* daemon_start made the signal handles and the status timer */
    uv_timer_t status_timer; /* refreshes sd_notify STATUS= */
    uv_fs_poll_t config_poll; /* the configuration file, stat'ed on the thread pool every 5 s */
    bool config_dirty;        /* it changed since it was last loaded (readiness: config.reloaded) */
    int64_t config_changed_ms;
    bool acting_started;  /* the leader's start (halt re-asserted, runs resumed) happened */
    bool stopping;
    int closing_modules;
    bool reloading;
    ReloadWaiter *reload_waiters;
    unsigned reloads_ok, reloads_failed;
    int exit_code;
} Daemon;

/* Build the daemon around an already-loaded configuration (ownership of cfg and roles taken). Logs
 * its own errors (which module could not be set up). */
int daemon_init(Daemon *d, uv_loop_t *loop, const char *config_path, Config *cfg, RolePolicy *roles);
/* Listen, start probes, then READY=1. Logs its own errors. */
int daemon_start(Daemon *d);
/* Begin an orderly stop (idempotent). The loop ends when every handle is closed. */
void daemon_stop(Daemon *d, int exit_code);
/* Release what is left after uv_run returned. */
void daemon_done(Daemon *d);

/*
 * Reload the configuration file: parse it (thread pool), ask every module whether it accepts it, and
 * only then swap and apply. done(result, errors, data) runs on the loop when finished; on failure
 * errors says whether the old configuration still runs, then one line per refusing module.
 */
typedef void (*DaemonReloadFn)(int result, const char *errors, void *data);
void daemon_reload(Daemon *d, DaemonReloadFn done, void *data);

/*
 * Would every module accept cfg? 0, or <0 with one "module: reason" line per refusing module in
 * *ret_errors (caller frees). Pure; d may be NULL (drsupervisord --check-config, before any module
 * exists). Used before a reload swaps anything and at start.
 */
int daemon_check_config(const Daemon *d, const Config *cfg, char **ret_errors);

/* Refresh sd_notify STATUS= from the status model. */
void daemon_update_status(Daemon *d);


#endif
