/*
 * drctl drills: drill (rehearse a scenario against a scratch database or cluster, never the live one; waits
 * for the report, exit 1 unless it passed), drills (every drill and the last per scenario) and
 * drill-report (one report).
 *
 * Owns their table entries and the rendering of drill reports.
 */
#include <stdio.h>
#include <string.h>

#include "drctl.h"

/* --timestamp (point_in_time), --before (data_loss), --since (security_breach): the recovery's
 * target, as epoch ms under the option's wire name (the daemon checks it is the scenario's). */
static int drctl_args_drill(const OptParse *p, DrctlRequest *req)
{
    static const char *const opts[] = {"timestamp", "before", "since"};
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        const char *t = optspec_string(p, opts[i], NULL);
        char wire[32];
        int64_t ms;
        json_object_del(req->args, opts[i]);
        if (!t)
            continue;
        if (drctl_parse_time(t, &ms) < 0) {
            fprintf(stderr, "drctl drill: --%s needs epoch milliseconds, an ISO-8601 UTC time "
                            "(2025-08-29T10:00:00Z) or a duration ago (10m), not '%s'\n", opts[i], t);
            return DRCTL_EXIT_USAGE;
        }
        snprintf(wire, sizeof(wire), "%s_ms", opts[i]);
        json_object_set_new(req->args, wire, json_integer(ms));
    }
    return 0;
}

static void drctl_print_drill_report(const json_t *r)
{
    size_t i;
    const json_t *s;
    char d[32], est[32], tgt[32];
    const json_t *rto = json_object_get(r, "rto");
    if (!json_object_get(r, "steps")) { /* --detach: the drill started */
        printf("drill %s of %s started (scratch %s); drctl drill-report %s when it ends\n",
               drctl_str(r, "id", "?"), drctl_str(r, "scenario", "?"), drctl_str(r, "scratch_database", "cluster"),
               drctl_str(r, "id", "?"));
        return;
    }
    printf("drill %s of %s (%s), %s -> %s\n", drctl_str(r, "id", "?"), drctl_str(r, "scenario", "?"),
           drctl_str(r, "trigger", "?"), drctl_str(r, "started_at", "?"), drctl_str(r, "finished_at", "?"));
    const json_t *cl = json_object_get(r, "scratch_cluster");
    if (cl)
        printf("scratch cluster '%s' on port %lld (%s); the live cluster untouched\n\n", drctl_str(cl, "data_directory", "?"),
               (long long)drctl_int(cl, "port"), json_is_true(json_object_get(cl, "removed")) ? "stopped and removed"
                                                                                             : "NOT REMOVED");
    else
        printf("scratch database '%s' (%s); live database '%s' untouched\n\n", drctl_str(r, "scratch_database", "?"),
               json_is_true(json_object_get(r, "scratch_dropped")) ? "dropped" : "NOT DROPPED", drctl_str(r, "database", "?"));
    printf("%-19s %-8s %9s  %s\n", "STEP", "STATUS", "DURATION", "DETAIL");
    json_array_foreach(json_object_get(r, "steps"), i, s) {
        drctl_ms(json_object_get(s, "duration_ms"), d, sizeof(d));
        printf("%-19s %-8s %9s  %s\n", drctl_str(s, "step", "?"), drctl_str(s, "status", "?"), d,
               drctl_str(s, "detail", ""));
    }
    drctl_ms(json_object_get(rto, "estimate_ms"), est, sizeof(est));
    drctl_ms(json_object_get(rto, "target_ms"), tgt, sizeof(tgt));
    printf("\nRTO estimate %s, target %s%s\n", est, tgt,
           json_is_true(json_object_get(rto, "met")) ? " (met)" : json_is_false(json_object_get(rto, "met")) ? " (EXCEEDED)" : "");
    const json_t *rpo = json_object_get(r, "rpo");
    if (rpo) {
        drctl_ms(json_object_get(rpo, "estimate_ms"), est, sizeof(est));
        drctl_ms(json_object_get(rpo, "target_ms"), tgt, sizeof(tgt));
        printf("RPO estimate %s (the archive's end against the drill's start), target %s%s%s\n", est, tgt,
               json_is_true(json_object_get(rpo, "met")) ? " (met)" : json_is_false(json_object_get(rpo, "met")) ? " (EXCEEDED)" : "",
               json_is_false(json_object_get(rpo, "timestamp_reached")) ? "; the archive does NOT reach the target" : "");
    }
    printf("DRILL %s%s%s\n", json_is_true(json_object_get(r, "ok")) ? "PASSED" : strcmp(drctl_str(r, "outcome", ""), "aborted") ? "FAILED" : "ABORTED",
           json_is_string(json_object_get(r, "failure")) ? ": " : "", drctl_str(r, "failure", ""));
}

const OptCommand drctl_cmd_drill = {
    .name = "drill",
    .summary = "rehearse a scenario against a scratch database or cluster, never the live one; the report with its RTO "
               "[operator]",
    .description = "The monthly DR test as one command. database_corruption: the newest verified backup restored into "
                   "a scratch database <db>_drill_<tag> (the real restore's path and settings), the scenario's "
                   "validation queries there, a read-only reconcile of it with the exchange (nothing replayed, no "
                   "venue action), the scratch database dropped. point_in_time: the newest verified base backup "
                   "before --timestamp T (default: the end of the WAL archive) and the WAL to T restored into a "
                   "scratch cluster on the drill's own port (drills.point_in_time), its promotion waited for, the "
                   "validation queries and the read-only reconcile on it, then the scratch server stopped and its "
                   "directory removed, whatever happened. data_loss and security_breach drill the same way with their "
                   "own sections (scenarios.data_loss; scenarios.security_breach.pitr), targets (data_loss: to "
                   "--before T; security_breach: to just before --since T; default: the end of the archive) and "
                   "RTO/RPO targets; data_loss also counts the watched tables on the scratch cluster; a breach drill "
                   "never runs the close, the halt, the lockdown or rotate hooks. The report has every step's duration, "
                   "the RTO a real run would have against the scenario's target and, for the scratch-cluster drills, "
                   "the RPO. Trading is not halted, the live database is not written. Waits for the report (a large "
                   "restore needs a longer --timeout, or --detach). A recovery run starting meanwhile aborts the drill. "
                   "Exits 1 unless the drill passed. complete_disaster, app_crash, primary_failure and "
                   "network_partition have no drill: the answer says what to run instead. [operator]",
    .options = (const OptSpec[]){
        {.name = "scenario", .kind = OPTSPEC_STRING, .required = true, .metavar = "NAME",
         .help = "the scenario to rehearse (database_corruption, point_in_time, data_loss, security_breach)"},
        {.name = "timestamp", .kind = OPTSPEC_STRING, .metavar = "T",
         .help = "point_in_time: the target (epoch ms, an ISO-8601 UTC time, or a duration ago); default: the end "
                 "of the archive"},
        {.name = "before", .kind = OPTSPEC_STRING, .metavar = "T",
         .help = "data_loss: the time the data was still whole, as its execute's --before; default: the end of the "
                 "archive"},
        {.name = "since", .kind = OPTSPEC_STRING, .metavar = "T",
         .help = "security_breach: the breach's start, as its execute's --since (recovered to just before T); "
                 "default: the end of the archive"},
        {.name = "detach", .kind = OPTSPEC_FLAG, .help = "print the drill id at once; drctl drill-report ID later"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "drill", .exit = DRCTL_EXIT_UNLESS_OK, .args = drctl_args_drill,
                                 .print = drctl_print_drill_report},
};

static void drctl_print_drills(const json_t *r)
{
    size_t i;
    const json_t *x;
    char rto[32], tgt[32], d[32];
    const json_t *list = json_object_get(r, "drills");
    if (json_array_size(list) == 0)
        printf("no drills yet%s\n", json_is_false(json_object_get(r, "loaded")) ? " (still loading)" : "");
    else
        printf("%-46s %-20s %-8s %-10s %9s %9s %9s\n", "DRILL", "SCENARIO", "OUTCOME", "TRIGGER", "DURATION", "RTO",
               "TARGET");
    json_array_foreach(list, i, x) {
        drctl_ms(json_object_get(x, "duration_ms"), d, sizeof(d));
        drctl_ms(json_object_get(x, "rto_estimate_ms"), rto, sizeof(rto));
        drctl_ms(json_object_get(x, "rto_target_ms"), tgt, sizeof(tgt));
        printf("%-46s %-20s %-8s %-10s %9s %9s %9s\n", drctl_str(x, "id", "?"), drctl_str(x, "scenario", "?"),
               drctl_str(x, "outcome", "?"), drctl_str(x, "trigger", "?"), d, rto, tgt);
    }
    json_array_foreach(json_object_get(r, "schedule"), i, x)
        printf("%sscheduled: %s at %s (cron '%s')\n", i ? "" : "\n", drctl_str(x, "scenario", "?"),
               drctl_str(x, "next_at", "never"), drctl_str(x, "cron", "?"));
    if (json_is_string(json_object_get(r, "running")))
        printf("\nrunning: %s\n", drctl_str(r, "running", "?"));
}

const OptCommand drctl_cmd_drills = {
    .name = "drills",
    .summary = "drill reports: outcome, duration, RTO against the target",
    .description = "Every drill (the reports in state_dir/incidents/drill-*.json), oldest first, with its outcome, "
                   "trigger (operator or schedule), duration and the RTO it measured against the scenario's target, "
                   "and the next scheduled drill of each drills.schedule entry; --json adds the last drill per "
                   "scenario.",
    .data = &(const DrctlAction){.wire = "drills", .print = drctl_print_drills},
};

const OptCommand drctl_cmd_drill_report = {
    .name = "drill-report",
    .summary = "print one drill report",
    .description = "Print one drill report: its steps with their durations and details, the RTO estimate and the "
                   "target; --json prints the whole report (the backup, each validation query, the compare-only "
                   "reconcile's report).",
    .options = (const OptSpec[]){
        {.name = "id", .kind = OPTSPEC_POSITIONAL, .required = true, .metavar = "ID", .help = "the drill id (from drctl drills)"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "drill_report", .print = drctl_print_drill_report},
};
