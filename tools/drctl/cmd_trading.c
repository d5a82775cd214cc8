/*
 * drctl trading commands: trading, halt, resume, emergency-close, reconcile, venue check.
 *
 * Owns their table entries and the rendering of their replies. reconcile's exit status follows
 * ready_to_trade (DRCTL_EXIT_UNLESS_READY_TO_TRADE); its --since accepts three spellings of a time.
 * venue check's follows ok (every configured read action understood).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cfgtree.h"
#include "clock.h"
#include "drctl.h"

static void drctl_print_mode(const json_t *r)
{
    printf("trading is %s\n", drctl_str(r, "mode", "?"));
}

static void drctl_print_closed(const json_t *r)
{
    (void)r;
    printf("trading is halted and the platform closed all positions\n");
}

static void drctl_print_trading(const json_t *r)
{
    char since[64];
    if (!json_is_true(json_object_get(r, "enabled"))) {
        printf("no venue is configured: the daemon cannot halt or resume trading\n");
        return;
    }
    drctl_ago(drctl_int(r, "mode_ms"), since, sizeof(since));
    printf("platform mode  %s (reported %s)\n", drctl_str(r, "mode", "?"), since);
    if (json_is_true(json_object_get(r, "halted"))) {
        drctl_ago(drctl_int(r, "halted_since_ms"), since, sizeof(since));
        printf("held halted    since %s: %s%s\n", since, drctl_str(r, "reason", "-"),
               json_is_true(json_object_get(r, "halting")) ? " (halt not yet confirmed)" : "");
    } else {
        printf("held halted    no\n");
    }
    if (drctl_int(r, "halt_attempts") > 0 || json_is_string(json_object_get(r, "last_error")))
        printf("last error     %s (attempt %" PRId64 ")\n", drctl_str(r, "last_error", "-"), drctl_int(r, "halt_attempts"));
}

int drctl_parse_time(const char *text, int64_t *ret_ms)
{
    uint64_t dur;
    char *end = NULL;
    struct tm tm;

    if (text[0] >= '0' && text[0] <= '9') { /* digits only: epoch milliseconds, whatever their value */
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (!errno && end && !*end) {
            *ret_ms = v;
            return 0;
        }
    }
    if (cfg_parse_duration_ms(text, &dur) == 0) {
        *ret_ms = clock_wall_ms() - (int64_t)dur;
        return 0;
    }
    memset(&tm, 0, sizeof(tm));
    end = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!end)
        end = strptime(text, "%Y-%m-%d %H:%M:%S", &tm);
    if (end && (*end == '\0' || strcmp(end, "Z") == 0)) {
        *ret_ms = (int64_t)timegm(&tm) * 1000;
        return 0;
    }
    return -EINVAL;
}

int drctl_args_since(const OptParse *p, DrctlRequest *req, const char *command)
{
    const char *since = optspec_string(p, "since", NULL);
    int64_t ms;

    json_object_del(req->args, "since");
    if (!since)
        return 0;
    if (drctl_parse_time(since, &ms) < 0) {
        fprintf(stderr, "drctl %s: --since needs epoch milliseconds, an ISO-8601 UTC time "
                        "(2025-08-29T10:00:00Z) or a duration ago (2h), not '%s'\n", command, since);
        return DRCTL_EXIT_USAGE;
    }
    json_object_set_new(req->args, "since_ms", json_integer(ms));
    return 0;
}

static int drctl_args_reconcile(const OptParse *p, DrctlRequest *req)
{
    return drctl_args_since(p, req, "reconcile");
}

static void drctl_print_reconcile(const json_t *r)
{
    size_t i;
    const json_t *c;
    bool ready = json_is_true(json_object_get(r, "ready_to_trade"));

    printf("reconcile %s  (exchange fills since %s)\n", drctl_str(r, "run", "?"), drctl_str(r, "since", "?"));
    printf("%-32s %-6s %s\n", "CHECK", "STATUS", "DETAIL");
    json_array_foreach(json_object_get(r, "checks"), i, c) {
        char *detail = json_dumps(json_object_get(c, "detail"), JSON_COMPACT);
        printf("%-32s %-6s %s\n", drctl_str(c, "name", "?"), drctl_str(c, "status", "?"), detail ? detail : "");
        free(detail);
    }
    json_array_foreach(json_object_get(r, "discrepancies"), i, c) {
        char *line = json_dumps(c, JSON_COMPACT);
        printf("%s %s\n", i == 0 ? "\ndiscrepancies:\n " : " ", line ? line : "");
        free(line);
    }
    json_array_foreach(json_object_get(r, "actions_taken"), i, c) {
        printf("%s %s %s\n", i == 0 ? "\nactions taken:\n " : " ", drctl_str(c, "action", "?"), drctl_str(c, "fill_id", ""));
    }
    const json_t *err = json_object_get(r, "error");
    if (json_is_object(err))
        printf("\nerror: %s: %s\n", drctl_str(err, "code", "?"), drctl_str(err, "message", "?"));
    printf("\nready_to_trade: %s\n", ready ? "true" : "false (FAIL: trading must stay halted)");
}

const OptCommand drctl_cmd_trading = {
    .name = "trading",
    .summary = "the platform's trading mode and the halt state",
    .description = "The platform's last reported mode, whether the daemon holds trading halted (since when, why, "
                   "and whether the halt is confirmed), and the last halt error.",
    .data = &(const DrctlAction){.wire = "trading", .print = drctl_print_trading},
};

const OptCommand drctl_cmd_halt = {
    .name = "halt",
    .summary = "halt trading now; waits until the platform confirms [operator]",
    .description = "Halt trading now. The halt is persisted first, sent through the venue's halt action, and "
                   "answered only when the platform's status confirms it; unconfirmed halts are retried "
                   "forever. Prints 'trading is halted'. Fails when no venue is configured. [operator]",
    .options = (const OptSpec[]){
        {.name = "reason", .short_name = 'r', .kind = OPTSPEC_STRING, .required = true, .metavar = "TEXT",
         .help = "why (it is recorded and paged)"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "halt", .print = drctl_print_mode},
};

const OptCommand drctl_cmd_resume = {
    .name = "resume",
    .summary = "resume trading live (or shadow) once a reconcile has passed; --force overrides that, paged [operator]",
    .description = "Resume trading live, or in shadow (paper) mode. Refused while a recovery run is unfinished, "
                   "and, after a halt, until a reconcile has passed since the halt was asked for (this holds "
                   "across restarts). --force with a --reason overrides the reconcile requirement as a last "
                   "resort; it is recorded and raised as a critical event. [operator]",
    .options = (const OptSpec[]){
        {.name = "shadow", .kind = OPTSPEC_FLAG, .help = "resume in shadow (paper) mode"},
        {.name = "force", .kind = OPTSPEC_FLAG, .help = "resume without a passed reconcile (needs --reason; paged)"},
        {.name = "reason", .short_name = 'r', .kind = OPTSPEC_STRING, .metavar = "TEXT",
         .help = "why (recorded; required with --force)"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "resume", .print = drctl_print_mode},
};

const OptCommand drctl_cmd_emergency_close = {
    .name = "emergency-close",
    .summary = "halt trading (confirmed), then close every position on the platform; paged [operator]",
    .description = "Halt trading (persisted, confirmed by the platform, as halt), then run the configured "
                   "venue.close_all action so the platform closes every position. Trading stays halted. Fails "
                   "when no close_all action is configured, or, after the halt, when closing fails (a critical "
                   "event either way). [operator]",
    .options = (const OptSpec[]){
        {.name = "reason", .short_name = 'r', .kind = OPTSPEC_STRING, .required = true, .metavar = "TEXT",
         .help = "why (it is recorded and paged)"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "emergency_close", .print = drctl_print_closed},
};

const OptCommand drctl_cmd_reconcile = {
    .name = "reconcile",
    .summary = "compare the database with the exchange, replay missing fills; PASS/FAIL table, exit 1 on FAIL "
               "[operator]",
    .description = "Compare the database with the exchange (positions, duplicate client order ids, stale open "
                   "orders, missing fills), replay missing fills, and print a PASS/FAIL table, discrepancies, "
                   "actions taken and ready_to_trade. Exits 1 unless ready to trade, also with --json. Run it "
                   "with trading halted. [operator]",
    .options = (const OptSpec[]){
        {.name = "since", .kind = OPTSPEC_STRING, .metavar = "T",
         .help = "exchange fills since T: epoch ms, ISO-8601 UTC time, or a duration ago (2h); default "
                 "reconcile.default_since"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "reconcile", .exit = DRCTL_EXIT_UNLESS_READY_TO_TRADE,
                                 .args = drctl_args_reconcile, .print = drctl_print_reconcile},
};

/* ---- venue check ---- */

static void drctl_print_venue_part(const char *what, const json_t *p)
{
    if (!json_is_true(json_object_get(p, "configured"))) {
        printf("%-10s (not configured)\n", what);
        return;
    }
    bool ok = json_is_true(json_object_get(p, "ok"));
    printf("%-10s %-6s %s\n", what, ok ? "ok" : "FAIL", drctl_str(p, "request", "-"));
    if (!ok) {
        printf("  %s\n", drctl_str(p, "error", "?"));
        return;
    }
    if (!strcmp(what, "status")) {
        printf("  mode %s (answer: %s)\n", drctl_str(p, "mode", "?"), drctl_str(p, "answer", ""));
        return;
    }
    size_t i;
    const json_t *r;
    if (!strcmp(what, "positions")) {
        printf("  %" PRId64 " positions\n  %-16s %-20s %s\n", drctl_int(p, "count"), "SYMBOL", "QUANTITY", "AVG_PRICE");
        json_array_foreach(json_object_get(p, "positions"), i, r)
            printf("  %-16s %-20s %s\n", drctl_str(r, "symbol", "?"), drctl_str(r, "quantity", "?"),
                   drctl_str(r, "avg_price", "-"));
        return;
    }
    printf("  %" PRId64 " fills; the newest:\n  %-28s %-14s %-10s %-4s %-14s %s\n", drctl_int(p, "count"), "EXECUTED_AT",
           "FILL_ID", "SYMBOL", "SIDE", "QUANTITY", "PRICE");
    json_array_foreach(json_object_get(p, "fills"), i, r)
        printf("  %-28s %-14s %-10s %-4s %-14s %s\n", drctl_str(r, "executed_at", "?"), drctl_str(r, "fill_id", "?"),
               drctl_str(r, "symbol", "?"), drctl_str(r, "side", "?"), drctl_str(r, "quantity", "?"),
               drctl_str(r, "price", "?"));
}

static void drctl_print_venue_check(const json_t *r)
{
    drctl_print_venue_part("status", json_object_get(r, "status"));
    drctl_print_venue_part("positions", json_object_get(r, "positions"));
    printf("(fills since %s)\n", drctl_str(r, "fills_since", "?"));
    drctl_print_venue_part("fills", json_object_get(r, "fills"));
    printf("\n%s\n", json_is_true(json_object_get(r, "ok")) ? "every configured read action was understood"
                                                            : "FAIL: the daemon cannot read the platform's answers (above)");
}

static const OptCommand drctl_cmd_venue_check = {
    .name = "check",
    .summary = "call status, positions and fills once; show what the daemon understood, or why not [operator]",
    .description = "For writing a venue configuration: calls the status, positions and fills actions once each "
                   "(fills since reconcile.default_since ago), never an action that changes anything, and "
                   "prints the mode, the positions and the newest fills as the daemon read them through the "
                   "answer mappings, or, per action, exactly what it could not read (element, field, path and "
                   "an excerpt of the answer). Exits 1 unless every configured read action was understood, "
                   "also with --json. See docs/venue.md. [operator]",
    .data = &(const DrctlAction){.wire = "venue_check", .exit = DRCTL_EXIT_UNLESS_OK, .print = drctl_print_venue_check},
};

const OptCommand drctl_cmd_venue = {
    .name = "venue",
    .summary = "the venue adapter: check",
    .description = "Commands about the venue adapter (the trading platform as the daemon reads it).",
    .subs = (const OptCommand *const[]){&drctl_cmd_venue_check, NULL},
};
