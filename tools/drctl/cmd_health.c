/*
 * drctl health commands: status, ping, reload, watch, commands.
 *
 * Owns their table entries (options, descriptions, wire names) and the readable rendering of
 * their replies. watch streams: the transport prints its events.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cfgtree.h"
#include "drctl.h"

static void drctl_print_status(const json_t *r)
{
    char up[48], since[64], last[64], lat[32];
    const json_t *ctl = json_object_get(r, "control");
    const char *name;
    json_t *c;

    cfg_format_duration((uint64_t)drctl_int(r, "uptime_s") * 1000, up, sizeof(up));
    printf("drsupervisord %s  cluster %s  pid %" PRId64 "  up %s  %s\n", drctl_str(r, "version", "?"),
           drctl_str(r, "cluster", "?"), drctl_int(r, "pid"), up, drctl_str(r, "state", "?"));
    printf("config   %s\n", drctl_str(r, "config_file", "?"));
    printf("socket   %s (%" PRId64 " client%s)\n", drctl_str(ctl, "socket", "?"), drctl_int(ctl, "clients"),
           drctl_int(ctl, "clients") == 1 ? "" : "s");
    if (json_is_object(json_object_get(r, "ha")))
        drctl_print_ha(json_object_get(r, "ha"));
    printf("\n");
    printf("%-10s %-9s %-12s %-12s %-10s %s\n", "COMPONENT", "HEALTH", "SINCE", "LAST CHECK", "LATENCY",
           "LAST ERROR");
    json_object_foreach(json_object_get(r, "components"), name, c) {
        const json_t *obs = json_object_get(c, "last_observation");
        const json_t *err = json_object_get(c, "last_error");
        drctl_ago(drctl_int(c, "since_ms"), since, sizeof(since));
        drctl_ago(json_is_object(obs) ? drctl_int(obs, "ts_ms") : 0, last, sizeof(last));
        if (json_is_object(obs) && json_is_true(json_object_get(obs, "ok")))
            snprintf(lat, sizeof(lat), "%.1f ms", json_number_value(json_object_get(obs, "latency_ms")));
        else
            snprintf(lat, sizeof(lat), "-");
        char errtxt[200] = "-";
        if (json_is_object(err)) {
            char ago[64];
            drctl_ago(drctl_int(err, "ts_ms"), ago, sizeof(ago));
            snprintf(errtxt, sizeof(errtxt), "%.120s (%s)", drctl_str(err, "message", "?"), ago);
        }
        printf("%-10s %-9s %-12s %-12s %-10s %s\n", name, drctl_str(c, "health", "?"), since, last, lat, errtxt);
        const json_t *exp = json_object_get(c, "expected");
        if (json_is_object(exp)) {
            char ago[64];
            drctl_ago(drctl_int(exp, "ts_ms"), ago, sizeof(ago));
            printf("%-10s %" PRId64 " failure(s) caused by a recovery, not counted (last %s): %.120s; by %.200s\n", "",
                   drctl_int(exp, "failures"), ago, drctl_str(exp, "message", "?"), drctl_str(exp, "attributed_to", "?"));
        }
    }
    drctl_print_follows(json_object_get(r, "follows_primary"));
    const json_t *sb = json_object_get(r, "standby");
    if (json_is_object(sb) && json_is_true(json_object_get(sb, "enabled"))) {
        printf("\nstandby restore: %s", drctl_str(sb, "state", "?"));
        if (json_is_string(json_object_get(sb, "backup")))
            printf(", backup %s in '%s'", drctl_str(sb, "backup", ""), drctl_str(sb, "database", "?"));
        if (json_is_string(json_object_get(sb, "staging_backup")))
            printf(", staging %s", drctl_str(sb, "staging_backup", ""));
        if (json_is_string(json_object_get(sb, "waiting_for")))
            printf(" (%s)", drctl_str(sb, "waiting_for", ""));
        if (json_is_string(json_object_get(sb, "last_error")) && strcmp(drctl_str(sb, "state", ""), "failed") == 0)
            printf(": %s", drctl_str(sb, "last_error", ""));
        printf("\n");
    }
    const json_t *det = json_object_get(r, "detector");
    if (json_is_object(det)) {
        printf("\ndetector %s", drctl_str(det, "phase", "?"));
        if (json_is_string(json_object_get(det, "first_signal")))
            printf(": %s", drctl_str(det, "first_signal", ""));
        if (json_is_string(json_object_get(det, "scenario_run")))
            printf(" (run %s)", drctl_str(det, "scenario_run", ""));
        printf("\n");
        size_t i;
        const json_t *t;
        json_array_foreach(json_object_get(det, "watched_tables"), i, t) {
            char ago[64] = "never";
            if (json_is_integer(json_object_get(t, "last_good_ms")))
                drctl_ago(drctl_int(t, "last_good_ms"), ago, sizeof(ago));
            printf("  watched %-20s %-8s ", drctl_str(t, "name", "?"), drctl_str(t, "verdict", "?"));
            if (json_is_true(json_object_get(t, "gone")))
                printf("gone");
            else if (json_is_integer(json_object_get(t, "observed")))
                printf("%lld", (long long)drctl_int(t, "observed"));
            else
                printf("-");
            if (json_is_integer(json_object_get(t, "last_good")))
                printf(" (last good %lld, %s; floor %lld)", (long long)drctl_int(t, "last_good"), ago,
                       (long long)drctl_int(t, "floor"));
            printf("\n");
        }
    }
}

static void drctl_print_ping(const json_t *r)
{
    (void)r;
    printf("pong\n");
}

static void drctl_print_reload(const json_t *r)
{
    (void)r;
    printf("configuration reloaded\n");
}

static void drctl_print_help(const json_t *r)
{
    size_t i;
    json_t *c;
    printf("commands the daemon offers (your role: %s):\n", drctl_str(r, "role", "?"));
    json_array_foreach(json_object_get(r, "commands"), i, c)
        printf("  %-22s %s%s\n", drctl_str(c, "name", "?"), drctl_str(c, "summary", ""),
               json_is_true(json_object_get(c, "mutating")) ? " [operator]" : "");
}

const OptCommand drctl_cmd_status = {
    .name = "status",
    .summary = "daemon and component health",
    .description = "Version, cluster, pid, uptime, configuration file and control socket; then each component "
                   "(alerts, database, platform, venue, backup, recovery) with its health (up, down, unknown, "
                   "disabled), since when, the last check, its latency and the last error; then the detector's "
                   "phase, each watched table (its last value and verdict, the last good observation and its "
                   "floor) and, when the standby restore is on, its state.",
    .data = &(const DrctlAction){.wire = "status", .print = drctl_print_status},
};

const OptCommand drctl_cmd_ping = {
    .name = "ping",
    .summary = "check that the daemon answers",
    .description = "Check that the daemon answers: prints 'pong'.",
    .data = &(const DrctlAction){.wire = "ping", .print = drctl_print_ping},
};

const OptCommand drctl_cmd_reload = {
    .name = "reload",
    .summary = "re-read the configuration; waits until done [operator]",
    .description = "Re-read the configuration file and wait until it is applied, or refused with the list of "
                   "problems (the running configuration then stays). [operator]",
    .data = &(const DrctlAction){.wire = "reload", .print = drctl_print_reload},
};

const OptCommand drctl_cmd_watch = {
    .name = "watch",
    .summary = "print events as they happen, until interrupted",
    .description = "Print events as they happen, one line each (UTC time, severity, kind, summary; a resolution "
                   "is marked), until interrupted. With --json, one JSON object a line.",
    .data = &(const DrctlAction){.wire = "watch", .streams = true},
};

const OptCommand drctl_cmd_commands = {
    .name = "commands",
    .summary = "list the commands the daemon offers",
    .description = "List the commands the daemon offers (wire names, as used by 'drctl call'), which need the "
                   "operator role, and the caller's role.",
    .data = &(const DrctlAction){.wire = "help", .print = drctl_print_help},
};
