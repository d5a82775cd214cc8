/*
 * drctl recovery commands: execute, runs, run, approve, abort, incidents, incident.
 *
 * Owns their table entries and the rendering of scenario runs, their timelines and incident
 * reports.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include "drctl.h"

static void drctl_print_execute(const json_t *r)
{
    size_t i;
    json_t *st;
    if (!json_is_true(json_object_get(r, "dry_run"))) {
        printf("started run %s (%s, %s mode); follow it with: drctl run %s\n", drctl_str(r, "run", "?"),
               drctl_str(r, "scenario", "?"), drctl_str(r, "mode", "?"), drctl_str(r, "run", "?"));
        return;
    }
    printf("dry run of %s for database '%s' (nothing was changed):\n", drctl_str(r, "scenario", "?"),
           drctl_str(r, "database", "?"));
    json_array_foreach(json_object_get(r, "plan"), i, st)
        printf("  %zu. %-18s %s\n", i + 1, drctl_str(st, "step", "?"), drctl_str(st, "action", drctl_str(st, "sentence", "")));
}

static void drctl_print_runs(const json_t *r)
{
    size_t i;
    json_t *x;
    const json_t *list = json_object_get(r, "runs");
    if (!json_array_size(list)) {
        printf("no scenario runs%s\n", json_is_true(json_object_get(r, "loading")) ? " (still loading)" : "");
        return;
    }
    printf("%-38s %-20s %-17s %-18s %-9s %-9s\n", "RUN", "SCENARIO", "STATUS", "STATE", "RTO", "RPO");
    json_array_foreach(list, i, x) {
        char rto[32], rpo[32];
        drctl_ms(json_object_get(x, "rto_ms"), rto, sizeof(rto));
        drctl_ms(json_object_get(x, "rpo_ms"), rpo, sizeof(rpo));
        printf("%-38s %-20s %-17s %-18s %-9s %-9s\n", drctl_str(x, "run", "?"), drctl_str(x, "scenario", "?"),
               drctl_str(x, "status", "?"), drctl_str(x, "state", "?"), rto, rpo);
    }
}

static void drctl_print_run(const json_t *r)
{
    size_t i;
    json_t *st;
    printf("run %s (%s, %s mode): %s, state %s\n", drctl_str(r, "run", "?"), drctl_str(r, "scenario", "?"),
           drctl_str(r, "mode", "?"), drctl_str(r, "status", "?"), drctl_str(r, "state", "?"));
    if (json_string_value(json_object_get(r, "message")))
        printf("message: %s\n", drctl_str(r, "message", ""));
    printf("%-18s %-11s %-9s %-4s %s\n", "STEP", "OUTCOME", "DURATION", "TRY", "MESSAGE");
    json_array_foreach(json_object_get(r, "steps"), i, st) {
        int64_t a = drctl_int(st, "start_ms"), b = drctl_int(st, "end_ms");
        char dur[32];
        snprintf(dur, sizeof(dur), "%.1fs", b > a ? (double)(b - a) / 1000.0 : 0.0);
        printf("%-18s %-11s %-9s %-4" PRId64 " %s\n", drctl_str(st, "step", "?"), drctl_str(st, "outcome", "?"), dur,
               drctl_int(st, "attempts"), drctl_str(st, "message", ""));
    }
    /* What probes saw of the run's own doings (a live run keeps it in its context, a report at top level). */
    const json_t *at = json_object_get(r, "attributed");
    if (!json_is_array(at))
        at = json_object_get(json_object_get(r, "context"), "attributed");
    if (json_array_size(at) > 0)
        printf("\nattributed to the run (observed, not paged):\n");
    json_array_foreach(at, i, st)
        printf("  %" PRId64 " probe failure(s) of '%s' from step %s: %s\n", drctl_int(st, "attributed"),
               drctl_str(st, "database", "?"), drctl_str(st, "step", "?"), drctl_str(st, "last_error", ""));
}

static void drctl_print_run_status(const json_t *r)
{
    printf("run %s: %s\n", drctl_str(r, "run", "?"), drctl_str(r, "status", "?"));
}

static void drctl_print_incidents(const json_t *r)
{
    json_t *wrap = json_pack("{s:O}", "runs", json_object_get(r, "incidents"));
    drctl_print_runs(wrap);
    json_decref(wrap);
}

static void drctl_print_incident(const json_t *r)
{
    fputs(drctl_str(r, "text", ""), stdout);
}

#define DRCTL_RUN_ARG                                                                                             \
    {.name = "run", .kind = OPTSPEC_POSITIONAL, .required = true, .metavar = "RUN",                              \
     .help = "the run id (from drctl runs)"}

/* --before T (data_loss) and --since T (security_breach): epoch ms on the wire. */
static int drctl_args_time(const OptParse *p, DrctlRequest *req, const char *opt, const char *wire)
{
    const char *t = optspec_string(p, opt, NULL);
    int64_t ms;
    json_object_del(req->args, opt);
    if (!t)
        return 0;
    if (drctl_parse_time(t, &ms) < 0) {
        fprintf(stderr, "drctl execute: --%s needs epoch milliseconds, an ISO-8601 UTC time "
                        "(2025-08-29T10:00:00Z) or a duration ago (10m), not '%s'\n", opt, t);
        return DRCTL_EXIT_USAGE;
    }
    json_object_set_new(req->args, wire, json_integer(ms));
    return 0;
}

static int drctl_args_execute(const OptParse *p, DrctlRequest *req)
{
    int r = drctl_args_time(p, req, "before", "before_ms");
    return r ? r : drctl_args_time(p, req, "since", "since_ms");
}

const OptCommand drctl_cmd_execute = {
    .name = "execute",
    .summary = "run a recovery scenario now (dry run: print the plan, change nothing) [operator]",
    .description = "Start a recovery run now; prints the run id. Scenarios: database_corruption, "
                   "primary_failure, network_partition, app_crash, data_loss, security_breach, complete_disaster (point_in_time "
                   "through drctl recover, switchover and rejoin through their commands). --dry-run prints the "
                   "plan and changes nothing (it fails if a step could not run, for example with no venue); "
                   "--manual stops at the gates (restore, switch, resume_live) until approve. One run at a time. "
                   "data_loss takes --before T, the time the data was still whole: it is planned first, and a T "
                   "the WAL archive cannot reach is refused before any run starts. security_breach takes --since "
                   "T, when the incident began: it restores the newest backup that finished and was verified "
                   "before T (default: now). complete_disaster runs on a recovery host: planned from the "
                   "off-site bucket first (no verified base backup there, or WAL with a gap, is refused before "
                   "any run starts). [operator]",
    .options = (const OptSpec[]){
        {.name = "scenario", .kind = OPTSPEC_STRING, .required = true, .metavar = "NAME",
         .help = "the scenario (database_corruption, primary_failure, network_partition, app_crash, data_loss, "
                 "security_breach, complete_disaster)"},
        {.name = "dry-run", .kind = OPTSPEC_FLAG, .help = "print the plan, change nothing"},
        {.name = "manual", .kind = OPTSPEC_FLAG, .help = "stop at the gates until drctl approve"},
        {.name = "reason", .short_name = 'r', .kind = OPTSPEC_STRING, .metavar = "TEXT", .help = "why (recorded)"},
        {.name = "before", .kind = OPTSPEC_STRING, .metavar = "T",
         .help = "data_loss: recover to T, when the data was still whole (epoch ms, ISO-8601 UTC, or 10m ago)"},
        {.name = "since", .kind = OPTSPEC_STRING, .metavar = "T",
         .help = "when the incident began (security_breach restores a backup verified before T): epoch ms, an "
                 "ISO-8601 UTC time, or a duration ago (10m)"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "execute", .args = drctl_args_execute, .print = drctl_print_execute},
};

const OptCommand drctl_cmd_runs = {
    .name = "runs",
    .summary = "scenario runs: the active one, then finished ones",
    .description = "Scenario runs: the active one, then finished ones, with status, state, RTO and RPO.",
    .data = &(const DrctlAction){.wire = "runs", .print = drctl_print_runs},
};

const OptCommand drctl_cmd_run = {
    .name = "run",
    .summary = "one run's timeline: every step, outcome, duration, message",
    .description = "One run's timeline: every step with its outcome, duration, attempts and message.",
    .options = (const OptSpec[]){DRCTL_RUN_ARG, {0}},
    .data = &(const DrctlAction){.wire = "run", .print = drctl_print_run},
};

const OptCommand drctl_cmd_approve = {
    .name = "approve",
    .summary = "continue a run waiting at a gate or held after a restart [operator]",
    .description = "Continue a run waiting at a gate, or held after a restart because a step that is not "
                   "idempotent (the restore) was interrupted. [operator]",
    .options = (const OptSpec[]){DRCTL_RUN_ARG, {0}},
    .data = &(const DrctlAction){.wire = "approve", .print = drctl_print_run_status},
};

const OptCommand drctl_cmd_abort = {
    .name = "abort",
    .summary = "end a run; trading stays halted [operator]",
    .description = "End a run. Trading stays halted. [operator]",
    .options = (const OptSpec[]){
        DRCTL_RUN_ARG,
        {.name = "reason", .short_name = 'r', .kind = OPTSPEC_STRING, .metavar = "TEXT", .help = "why (recorded)"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "abort", .print = drctl_print_run_status},
};

const OptCommand drctl_cmd_incidents = {
    .name = "incidents",
    .summary = "incident reports (RTO, RPO, outcome)",
    .description = "Incident reports of finished runs (status, state, RTO, RPO).",
    .data = &(const DrctlAction){.wire = "incidents", .print = drctl_print_incidents},
};

const OptCommand drctl_cmd_incident = {
    .name = "incident",
    .summary = "print one incident report",
    .description = "Print one incident report: a readable summary (timeline, each reconcile attempt with its "
                   "checks and the replayed fills counted per symbol, the post-resume watch); --json prints the "
                   "whole report, every replayed fill and attempt included.",
    .options = (const OptSpec[]){DRCTL_RUN_ARG, {0}},
    .data = &(const DrctlAction){.wire = "incident", .print = drctl_print_incident},
};
