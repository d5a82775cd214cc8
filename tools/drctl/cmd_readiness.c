/*
 * drctl checklists: readiness (is this installation ready for a disaster now? every check
 * PASS/WARN/FAIL with its evidence and a score; the exit status like a Nagios plugin: 0 every check
 * passes, 1 a warning, 2 a failure, 3 the daemon cannot be asked) and validate (the post-recovery
 * checklist: PASS/FAIL rows, exit 1 unless none failed).
 *
 * Owns their table entries and the rendering of the daemon's replies.
 */
#include <stdio.h>

#include "drctl.h"

static void drctl_print_readiness(const json_t *r)
{
    size_t i;
    const json_t *c;
    printf("%-24s %-6s %s\n", "CHECK", "STATUS", "EVIDENCE");
    json_array_foreach(json_object_get(r, "checks"), i, c)
        printf("%-24s %-6s %s\n", drctl_str(c, "check", "?"), drctl_str(c, "status", "?"), drctl_str(c, "evidence", ""));
    printf("\nreadiness %lld/100\n", (long long)drctl_int(r, "score"));
}

const OptCommand drctl_cmd_readiness = {
    .name = "readiness",
    .summary = "ready for a disaster now? every check PASS/WARN/FAIL with its evidence, a score, a Nagios exit",
    .description = "Every readiness check the daemon knows, each PASS, WARN or FAIL with its evidence: the newest "
                   "logical backup (age, verified) and its test restore, the newest base backup when they are "
                   "scheduled, the WAL archive (streaming, behind, gaps) and whether the newest base backup's WAL "
                   "is in it, the standbys' replication, whether a failover would succeed and the fence hook's "
                   "last dry run, each alert channel's deliveries, and whether the configuration file changed "
                   "without a reload. The score is the share of checks passing (a warning counts half). Exits 0 "
                   "when every check passes, 1 with a warning, 2 with a failure, 3 when the daemon cannot be "
                   "asked. The same checks are metrics (drsupervisor_readiness_check).",
    .data = &(const DrctlAction){.wire = "readiness", .exit = DRCTL_EXIT_NAGIOS, .print = drctl_print_readiness},
};

static int drctl_args_validate(const OptParse *p, DrctlRequest *req)
{
    return drctl_args_since(p, req, "validate");
}

static void drctl_print_validate(const json_t *r)
{
    size_t i;
    const json_t *c;
    printf("%-24s %-6s %s\n", "CHECK", "STATUS", "DETAIL");
    json_array_foreach(json_object_get(r, "checks"), i, c)
        printf("%-24s %-6s %s\n", drctl_str(c, "name", "?"), drctl_str(c, "status", "?"), drctl_str(c, "detail", ""));
    printf("\nVALIDATION %s\n", json_is_true(json_object_get(r, "ok")) ? "PASSED" : "FAILED");
}

const OptCommand drctl_cmd_validate = {
    .name = "validate",
    .summary = "the post-recovery checklist: health, database, reconcile, backups, WAL archive, alerts (PASS/FAIL)",
    .description = "The runbooks' checklist after a recovery, as one command: every component's health, the "
                   "database (a connection, then backup.verify.validation_queries), a reconcile with the exchange "
                   "(fills since --since, default an hour ago; missing fills are replayed, as drctl reconcile "
                   "does), and the readiness checks of the backups, the WAL archive and the alert channels. "
                   "Exits 1 unless no row failed.",
    .options = (const OptSpec[]){
        {.name = "since", .kind = OPTSPEC_STRING, .metavar = "T",
         .help = "the exchange's fills since T for the reconcile (epoch ms, ISO-8601 UTC, or 2h)"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "validate", .exit = DRCTL_EXIT_UNLESS_OK, .args = drctl_args_validate,
                                 .print = drctl_print_validate},
};
