/*
 * drctl: what drctl's files share.
 *
 * Owns the shape of a drctl command (DrctlAction, hung off each OptCommand of the command table as
 * its data), the run context, the transport entry point and the rendering helpers. The command
 * table itself is data: every command is an OptCommand (lib/optspec) defined in the file of its
 * area (cmd_health.c, cmd_trading.c, cmd_backup.c, cmd_recovery.c, cmd_replication.c, cmd_alerts.c, cmd_audit.c, cmd_drill.c,
 * cmd_call.c, cmd_ha.c,
 * cmd_help.c) and listed once, in display order, in main.c.
 *
 * Exit status: 0 ok, 1 the command failed or was refused, 2 usage error, 3 the daemon could not be
 * reached or did not answer in time.
 */
#ifndef DRCTL_DRCTL_H
#define DRCTL_DRCTL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "optspec.h"

#define DRCTL_DEFAULT_SOCKET "/run/drsupervisor/control.sock"
#define DRCTL_EXIT_OK 0
#define DRCTL_EXIT_FAILED 1
#define DRCTL_EXIT_USAGE 2
#define DRCTL_EXIT_UNREACHABLE 3

/* Where a command runs. */
typedef enum DrctlWhere {
    DRCTL_NEEDS_DAEMON, /* one request over the control socket */
    DRCTL_NO_DAEMON,    /* runs here and never connects (backup decrypt, help, completion) */
} DrctlWhere;

/* How a daemon command's exit status follows from the reply. */
typedef enum DrctlExitPolicy {
    DRCTL_EXIT_BY_REPLY,             /* 0 when the daemon answered ok, 1 when it answered an error */
    DRCTL_EXIT_UNLESS_READY_TO_TRADE, /* as above, and 1 unless result.ready_to_trade is true (--json too:
                                         scripts trust the exit code) */
    DRCTL_EXIT_UNLESS_OK,            /* as above, and 1 unless result.ok is true (--json too) */
    DRCTL_EXIT_NAGIOS,               /* result.nagios: 0 ok, 1 warning, 2 critical, 3 unknown (an error
                                        reply or no daemon is 3 too, as Nagios plugins do) */
} DrctlExitPolicy;

/* The run context: global options, and the table (for help and completion). */
typedef struct Drctl {
    const char *socket_path;
    bool json;
    uint64_t timeout_ms;
    const OptCommand *root;
} Drctl;

/* One request: the daemon's command name and its arguments (owned). */
typedef struct DrctlRequest {
    const char *wire;
    json_t *args;
} DrctlRequest;

/*
 * What a command does, beside its options (OptCommand.data). A daemon command's arguments are its
 * options and positionals by name ("dry-run" becomes "dry_run"; flags true, strings as typed,
 * numbers as numbers); args, when set, adjusts them afterwards.
 */
typedef struct DrctlAction {
    DrctlWhere where;
    const char *wire;       /* the daemon's command name (DRCTL_NEEDS_DAEMON); NULL: args sets it */
    DrctlExitPolicy exit;
    bool streams;           /* the reply is followed by events until the daemon hangs up (watch) */
    /* 0, or DRCTL_EXIT_USAGE after printing why on stderr */
    int (*args)(const OptParse *p, DrctlRequest *req);
    /* the readable rendering of a result (not called with --json); NULL: print nothing */
    void (*print)(const json_t *result);
    /* DRCTL_NO_DAEMON: does the work, returns the exit status */
    int (*run)(const Drctl *c, const OptParse *p);
} DrctlAction;

/* ---- the command table (each defined in its area's file) ---- */

extern const OptCommand drctl_cmd_status, drctl_cmd_ping, drctl_cmd_reload, drctl_cmd_watch, drctl_cmd_commands;
extern const OptCommand drctl_cmd_trading, drctl_cmd_halt, drctl_cmd_resume, drctl_cmd_emergency_close,
    drctl_cmd_reconcile, drctl_cmd_venue;
extern const OptCommand drctl_cmd_replication_status, drctl_cmd_failover_status, drctl_cmd_check, drctl_cmd_audit;
extern const OptCommand drctl_cmd_switchover, drctl_cmd_rejoin;
extern const OptCommand drctl_cmd_backups, drctl_cmd_backup_status, drctl_cmd_backup, drctl_cmd_verify;
extern const OptCommand drctl_cmd_offsite_status;
extern const OptCommand drctl_cmd_leader;
extern const OptCommand drctl_cmd_step_down;
/* The ha reply (drctl leader, the ha line of drctl status). */
void drctl_print_ha(const json_t *r);
extern const OptCommand drctl_cmd_wal_status, drctl_cmd_wal_fetch, drctl_cmd_recover, drctl_cmd_readiness,
    drctl_cmd_validate;
extern const OptCommand drctl_cmd_drill, drctl_cmd_drills, drctl_cmd_drill_report;
extern const OptCommand drctl_cmd_execute, drctl_cmd_runs, drctl_cmd_run, drctl_cmd_approve, drctl_cmd_abort,
    drctl_cmd_incidents, drctl_cmd_incident;
extern const OptCommand drctl_cmd_alerts, drctl_cmd_alert;
extern const OptCommand drctl_cmd_call, drctl_cmd_help, drctl_cmd_completion;

/* ---- transport.c ---- */

/*
 * Send one request line and wait (c->timeout_ms) for its reply; with streams, print the events
 * that follow until the daemon hangs up. 0 with *ret_reply (caller frees), or DRCTL_EXIT_USAGE
 * (socket path too long) or DRCTL_EXIT_UNREACHABLE, the reason printed on stderr.
 */
int drctl_transport_call(const Drctl *c, const char *line, bool streams, json_t **ret_reply);

/* ---- cmd_trading.c ---- */

/* A time as people give it to --since: digits are epoch ms; a duration (2h) is that long ago; or an
 * ISO-8601 UTC time. 0, or -EINVAL. */
int drctl_parse_time(const char *text, int64_t *ret_ms);
/* A command's --since option as since_ms in its arguments: 0, or DRCTL_EXIT_USAGE after saying why. */
int drctl_args_since(const OptParse *p, DrctlRequest *req, const char *command);

/* ---- render.c ---- */

/* "3.2s ago", "2h5m ago", "-" for 0 */
void drctl_ago(int64_t ts_ms, char *out, size_t n);
/* After a promotion: which conninfos follow the new primary ({primary, conninfos}; cmd_replication.c). */
void drctl_print_follows(const json_t *f);
/* "in 30s", "now", "-" for 0 */
void drctl_in(int64_t ts_ms, char *out, size_t n);
/* "1.5 MiB", "12.0 KiB", "300 B" */
void drctl_size(int64_t bytes, char *out, size_t n);
/* milliseconds as "1.5s", "-" when not a number */
void drctl_ms(const json_t *v, char *out, size_t n);
const char *drctl_str(const json_t *o, const char *key, const char *def);
int64_t drctl_int(const json_t *o, const char *key);
/* Pretty JSON with sorted keys on stdout. */
void drctl_print_json(const json_t *r);
/* One streamed event: a line of text, or compact JSON with json. */
void drctl_print_event(const json_t *ev, bool json);


#endif
