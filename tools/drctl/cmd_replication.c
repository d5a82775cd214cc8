/*
 * drctl replication commands: replication-status (a table like patronictl list), check
 * replication (a Nagios-style check like repmgr node check: one line, exit 0/1/2/3) and
 * failover-status (would a failover succeed now; exit 1 when not); switchover and rejoin (a planned
 * change of primary, the old primary rebuilt as a standby: each starts a run).
 *
 * Owns their table entries and the rendering of the daemon's replication_status reply.
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "drctl.h"

static void drctl_lag_text(const json_t *n, char *out, size_t len)
{
    const json_t *b = json_object_get(n, "lag_bytes"), *s = json_object_get(n, "lag_s");
    char size[32];
    if (!json_is_integer(b)) {
        snprintf(out, len, "-");
        return;
    }
    drctl_size(json_integer_value(b), size, sizeof(size));
    snprintf(out, len, "%s / %.1fs", size, json_is_number(s) ? json_number_value(s) : 0.0);
}

void drctl_print_follows(const json_t *f)
{
    size_t i;
    const json_t *c;
    if (!json_is_object(f))
        return;
    printf("\nfollowing the primary %s:\n", drctl_str(f, "primary", "?"));
    json_array_foreach(json_object_get(f, "conninfos"), i, c)
        printf("  %-26s %-4s %s\n", drctl_str(c, "key", "?"), json_is_true(json_object_get(c, "follows")) ? "yes" : "no",
               drctl_str(c, "why", ""));
}

static void drctl_print_replication(const json_t *r)
{
    size_t i;
    const json_t *n;

    if (!json_is_true(json_object_get(r, "enabled"))) {
        printf("no replication.nodes are configured: the daemon watches no standby\n");
        return;
    }
    printf("%-12s %-8s %-12s %-3s %-12s %-13s %-20s %s\n", "NODE", "EXPECTED", "ROLE", "TL", "LSN", "STATE",
           "LAG (BYTES / TIME)", "REASON");
    json_array_foreach(json_object_get(r, "nodes"), i, n) {
        char lag[64];
        char tl[24] = "-";
        const json_t *t = json_object_get(n, "timeline");
        if (json_is_integer(t))
            snprintf(tl, sizeof(tl), "%" JSON_INTEGER_FORMAT, json_integer_value(t));
        drctl_lag_text(n, lag, sizeof(lag));
        const char *reason = drctl_str(n, "reason", "");
        printf("%-12s %-8s %-12s %-3s %-12s %-13s %-20s %s\n", drctl_str(n, "name", "?"), drctl_str(n, "expected_role", "?"),
               drctl_str(n, "role", "?"), tl, drctl_str(n, "lsn", "-"), drctl_str(n, "state", "-"), lag,
               reason[0] ? reason : drctl_str(n, "error", ""));
    }
    drctl_print_follows(json_object_get(r, "follows"));
}

static void drctl_print_check(const json_t *r)
{
    size_t i;
    const json_t *n;
    const char *sep = "";

    printf("REPLICATION %s:", drctl_str(r, "check", "UNKNOWN"));
    json_array_foreach(json_object_get(r, "nodes"), i, n) {
        if (!strcmp(drctl_str(n, "expected_role", ""), "primary"))
            continue;
        char lag[64];
        drctl_lag_text(n, lag, sizeof(lag));
        printf("%s %s %s (lag %s)", sep, drctl_str(n, "name", "?"), drctl_str(n, "state", "?"), lag);
        const char *reason = drctl_str(n, "reason", "");
        if (reason[0])
            printf(": %s", reason);
        sep = ";";
    }
    if (!json_array_size(json_object_get(r, "nodes")))
        printf(" no replication.nodes configured");
    printf("\n");
}

static void drctl_print_failover(const json_t *r)
{
    size_t i;
    const json_t *c;
    const json_t *fe = json_object_get(r, "fencing");

    if (json_is_true(json_object_get(r, "would_succeed")))
        printf("a failover would succeed now: %s would be promoted\n", drctl_str(r, "candidate", "?"));
    else
        printf("a failover would NOT succeed now: %s\n", drctl_str(r, "why", "?"));
    printf("\n%-12s %-8s %-13s %-14s %-3s %s\n", "STANDBY", "PRIORITY", "STATE", "LAG BYTES", "TL", "ELIGIBLE");
    json_array_foreach(json_object_get(r, "candidates"), i, c) {
        char tl[24] = "-";
        if (json_is_integer(json_object_get(c, "timeline")))
            snprintf(tl, sizeof(tl), "%" JSON_INTEGER_FORMAT, json_integer_value(json_object_get(c, "timeline")));
        printf("%-12s %-8" PRId64 " %-13s %-14" PRId64 " %-3s %s%s%s\n", drctl_str(c, "name", "?"),
               drctl_int(c, "priority"), drctl_str(c, "state", "?"), drctl_int(c, "lag_bytes"), tl,
               json_is_true(json_object_get(c, "eligible")) ? "yes" : "no", json_is_string(json_object_get(c, "reason")) ? ": " : "",
               drctl_str(c, "reason", ""));
    }
    const char *by = drctl_str(fe, "by", "");
    if (!strcmp(by, "stop"))
        printf("\nfencing   no fence hook: the daemon stops the old primary with its stop command, then makes it "
               "read-only if that fails (failover.self_fence: stop)");
    else if (!strcmp(by, "read_only"))
        printf("\nfencing   no fence hook: the daemon makes the old primary read-only (failover.self_fence: %s%s)",
               drctl_str(fe, "self_fence", "?"), !strcmp(drctl_str(fe, "self_fence", ""), "stop") ? ", no stop command" : "");
    else if (!strcmp(by, "none"))
        printf("\nfencing   NOT configured (no fence hook, failover.self_fence: off)");
    else
        printf("\nfencing   %s", json_is_true(json_object_get(fe, "configured")) ? "the fence hook" : "NOT configured");
    if (json_is_true(json_object_get(fe, "check_configured"))) {
        char ago[64];
        drctl_ago(drctl_int(fe, "last_check_ms"), ago, sizeof(ago));
        printf(", check %s %s (%s)", json_is_true(json_object_get(fe, "last_check_ok")) ? "passed" : "FAILED", ago,
               drctl_str(fe, "last_check_message", ""));
    }
    printf("\nrepoint   %s\n", json_is_true(json_object_get(json_object_get(r, "repoint"), "configured")) ? "configured"
                                                                                                   : "NOT configured");
    const json_t *rs = json_object_get(r, "repoint_standby");
    if (json_is_object(rs))
        printf("standbys  pointed at the new primary by %s (each gets %" PRId64 " s to stream)\n",
               !strcmp(drctl_str(rs, "by", ""), "hook") ? "the repoint_standby hook"
                                                        : "ALTER SYSTEM SET primary_conninfo + pg_reload_conf()",
               drctl_int(rs, "standby_timeout_ms") / 1000);
}

const OptCommand drctl_cmd_failover_status = {
    .name = "failover-status",
    .summary = "would a failover succeed now: the standby it would promote and why, fencing, repoint",
    .description = "Would a failover succeed now? The standby that would be promoted (eligible: replicating, within "
                   "failover.maximum_lag, on the primary's timeline, priority above 0; the least behind first, "
                   "then priority) and why each other is not; how the old primary would be fenced (the fence hook, "
                   "else failover.self_fence's stop command or read-only; neither is a blocker) and whether the "
                   "hook's check (failover.fence_check, run now) passed; whether the platform's repoint is configured. Exits "
                   "1 unless a failover would succeed. The promotion itself is the primary_failure scenario; a "
                   "planned one is drctl switchover.",
    .data = &(const DrctlAction){.wire = "failover_status", .exit = DRCTL_EXIT_UNLESS_OK, .print = drctl_print_failover},
};

static void drctl_print_run_started(const json_t *r)
{
    printf("%s run %s started (%s mode): drctl run %s\n", drctl_str(r, "scenario", "?"), drctl_str(r, "run", "?"),
           drctl_str(r, "mode", "?"), drctl_str(r, "run", "?"));
}

const OptCommand drctl_cmd_switchover = {
    .name = "switchover",
    .summary = "a planned switchover to a standby, no committed write lost (a switchover run) [operator]",
    .description = "Make NODE the primary (the switchover scenario, docs/replication.md): halt trading, let the "
                   "writing transactions end (scenarios.switchover.drain_timeout), make the old primary refuse "
                   "writes, wait until NODE has replayed its last WAL (0 bytes behind, catchup_timeout; if it never "
                   "does, the old primary is made writable again and trading stays halted), stop the old primary, "
                   "promote NODE, repoint the platform (failover.repoint), reconcile, resume in shadow, then live. "
                   "Refused before anything is touched when NODE is not a node of replication.nodes, is the primary, "
                   "is not streaming, or is further behind than failover.maximum_lag. --manual stops before the "
                   "promotion and the live resume until drctl approve. Prints the run id; exits 1 when refused.",
    .options = (const OptSpec[]){
        {.name = "to", .kind = OPTSPEC_STRING, .required = true, .metavar = "NODE",
         .help = "the standby to promote (a name in replication.nodes)"},
        {.name = "manual", .kind = OPTSPEC_FLAG, .help = "the run stops at its gates until drctl approve"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "switchover", .exit = DRCTL_EXIT_UNLESS_OK, .print = drctl_print_run_started},
};

const OptCommand drctl_cmd_rejoin = {
    .name = "rejoin",
    .summary = "rebuild a node (the old primary) as a standby of the primary (a rejoin run) [operator]",
    .description = "Rebuild NODE as a standby of the current primary (the rejoin scenario, docs/replication.md): "
                   "stop it, CHECKPOINT on the primary, pg_rewind its data directory from the primary (a fresh "
                   "pg_basebackup instead when pg_rewind cannot be used or fails, the old directory kept aside as "
                   "evidence), rewrite port, primary_conninfo and primary_slot_name, write standby.signal, create "
                   "its replication slot on the primary, start it and wait until the primary sees it streaming. "
                   "Trading is not touched. Refused when NODE is unknown, is the primary or has no data_directory in "
                   "replication.nodes. --manual stops before the rewind (or base backup) until drctl approve. "
                   "Prints the run id; exits 1 when refused.",
    .options = (const OptSpec[]){
        {.name = "node", .kind = OPTSPEC_POSITIONAL, .required = true, .metavar = "NODE",
         .help = "the node to rebuild (a name in replication.nodes)"},
        {.name = "manual", .kind = OPTSPEC_FLAG, .help = "the run stops at its gates until drctl approve"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "rejoin", .exit = DRCTL_EXIT_UNLESS_OK, .print = drctl_print_run_started},
};

const OptCommand drctl_cmd_replication_status = {
    .name = "replication-status",
    .summary = "every node's role, timeline and WAL position; every standby's lag and state",
    .description = "The cluster's nodes as the daemon last saw them (replication.nodes): the role each is "
                   "expected to have and has, its timeline and WAL position; for each standby its state (ok, "
                   "lag_warning, lag_critical, broken), the lag in bytes of WAL not yet replayed and in "
                   "seconds, and why it is not ok.",
    .data = &(const DrctlAction){.wire = "replication_status", .print = drctl_print_replication},
};

static const OptCommand drctl_cmd_check_replication = {
    .name = "replication",
    .summary = "one line and a Nagios exit status: 0 ok, 1 lag warning, 2 critical or broken, 3 unknown",
    .description = "A monitoring check in the style of repmgr node check: one line naming each standby's state "
                   "and lag, and the exit status 0 (every standby ok), 1 (a lag above lag_warning or "
                   "lag_bytes_warning), 2 (a lag above a critical threshold, or replication broken) or 3 (not "
                   "known yet, no standby configured, or the daemon cannot be asked).",
    .data = &(const DrctlAction){.wire = "replication_status", .exit = DRCTL_EXIT_NAGIOS, .print = drctl_print_check},
};

const OptCommand drctl_cmd_check = {
    .name = "check",
    .summary = "monitoring checks with Nagios exit statuses: replication",
    .description = "Checks for a monitoring system: one line each, exit 0 ok, 1 warning, 2 critical, 3 unknown.",
    .subs = (const OptCommand *const[]){&drctl_cmd_check_replication, NULL},
};
