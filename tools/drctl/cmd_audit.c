/*
 * drctl audit: the daemon's audit log (docs/audit.md): the records since T, and with --verify a
 * check of the whole hash chain across the kept rotated files and its head (exit 1 when it fails).
 *
 * Owns its table entry and the rendering of the records.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drctl.h"

static void drctl_print_audit(const json_t *r)
{
    size_t i;
    const json_t *rec;

    printf("%-6s %-24s %-8s %-26s %s\n", "SEQ", "TIME", "TYPE", "WHAT", "DETAIL");
    json_array_foreach(json_object_get(r, "records"), i, rec) {
        const char *type = drctl_str(rec, "type", "?");
        char what[64], *args = NULL;
        if (!strcmp(type, "command")) {
            snprintf(what, sizeof(what), "%s (uid %" PRId64 ")", drctl_str(rec, "command", "?"), drctl_int(rec, "uid"));
            args = json_dumps(json_object_get(rec, "args"), JSON_COMPACT | JSON_SORT_KEYS);
            printf("%-6" PRId64 " %-24s %-8s %-26s %s %s%s%s\n", drctl_int(rec, "seq"), drctl_str(rec, "ts", "?"), type,
                   what, drctl_str(rec, "outcome", "?"), args ? args : "", json_is_string(json_object_get(rec, "error")) ? ": " : "",
                   drctl_str(rec, "error", ""));
            free(args);
        } else {
            snprintf(what, sizeof(what), "%s", drctl_str(rec, "kind", "?"));
            printf("%-6" PRId64 " %-24s %-8s %-26s %s: %s\n", drctl_int(rec, "seq"), drctl_str(rec, "ts", "?"), type, what,
                   drctl_str(rec, "severity", "?"), drctl_str(rec, "summary", ""));
        }
    }
    const json_t *v = json_object_get(r, "verify");
    if (json_is_object(v)) {
        size_t n_files = json_array_size(json_object_get(v, "files"));
        if (json_is_true(json_object_get(v, "ok")))
            printf("\nverified: %" PRId64 " records in %zu file%s, the chain and the head are intact (%s)\n",
                   drctl_int(v, "records"), n_files, n_files == 1 ? "" : "s", drctl_str(r, "file", "?"));
        else
            printf("\nVERIFY FAILED: %s (%s)\n", drctl_str(v, "error", "?"), drctl_str(r, "file", "?"));
        if (json_is_string(json_object_get(v, "start")))
            printf("%s\n", drctl_str(v, "start", ""));
    }
}

static int drctl_args_audit(const OptParse *p, DrctlRequest *req)
{
    return drctl_args_since(p, req, "audit");
}

const OptCommand drctl_cmd_audit = {
    .name = "audit",
    .summary = "the audit log: operator commands and the daemon's actions; --verify checks the chain [operator]",
    .description = "The daemon's append-only audit log: every command that needs the operator role (who, when, "
                   "the arguments, the outcome) and every action the daemon took (halts, resumes, runs and "
                   "their steps, backups, conditions). The newest 1000 records since --since (default: all). "
                   "--verify checks the whole hash chain, across the rotated files kept (audit.log.1 ..), and its "
                   "head: an edited, inserted or removed record, a removed rotated file, or a cut-off end, fails "
                   "it (exit 1); records rotated out (audit.keep) are reported as the chain's start. [operator]",
    .options = (const OptSpec[]){
        {.name = "since", .kind = OPTSPEC_STRING, .metavar = "T",
         .help = "records since T: epoch ms, ISO-8601 UTC time, or a duration ago (2h)"},
        {.name = "verify", .kind = OPTSPEC_FLAG, .help = "check the hash chain and the head (exit 1 on failure)"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "audit", .exit = DRCTL_EXIT_UNLESS_OK, .args = drctl_args_audit,
                                 .print = drctl_print_audit},
};
