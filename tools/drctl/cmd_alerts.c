/*
 * drctl alert commands: alerts (and alerts resolve KEY --reason R), alert test.
 *
 * Owns their table entries and the rendering of the alert view: channels, open conditions, the
 * outbox, dead letters, last deliveries and the heartbeat.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "drctl.h"

static void drctl_print_alerts(const json_t *r)
{
    const char *name;
    const json_t *c, *o;
    size_t i;
    char a1[64], a2[64];

    printf("alerts %s", json_is_true(json_object_get(r, "enabled")) ? "enabled" : "disabled (no 'alerts' section)");
    if (json_object_get(r, "source"))
        printf(", source %s", drctl_str(r, "source", "?"));
    printf("\n\n%-10s %-10s %-6s %-9s %-9s %-5s %s\n", "CHANNEL", "CONFIGURED", "QUEUED", "IN-FLIGHT", "DELIVERED",
           "DEAD", "STATE");
    json_object_foreach(json_object_get(r, "channels"), name, c) {
        char state[300] = "ok";
        if (!json_is_true(json_object_get(c, "configured")))
            snprintf(state, sizeof(state), "not configured");
        else if (json_object_get(c, "paused_until_ms")) {
            drctl_in(drctl_int(c, "paused_until_ms"), a1, sizeof(a1));
            snprintf(state, sizeof(state), "retrying %s after %" PRId64 " failure(s): %.150s", a1,
                     drctl_int(c, "failing"), drctl_str(c, "pause_reason", "?"));
        }
        printf("%-10s %-10s %-6" PRId64 " %-9" PRId64 " %-9" PRId64 " %-5" PRId64 " %s\n", name,
               json_is_true(json_object_get(c, "configured")) ? "yes" : "no", drctl_int(c, "queued"),
               drctl_int(c, "in_flight"), drctl_int(c, "delivered"), drctl_int(c, "dead_letters"), state);
    }
    printf("\nOPEN CONDITIONS\n");
    if (json_array_size(json_object_get(r, "conditions")) == 0)
        printf("  (none)\n");
    json_array_foreach(json_object_get(r, "conditions"), i, o) {
        drctl_ago(drctl_int(o, "opened_ms"), a1, sizeof(a1));
        printf("  %-30s %-8s opened %-12s seen %" PRId64 "x  %.100s\n", drctl_str(o, "condition", "?"),
               drctl_str(o, "severity", "?"), a1, drctl_int(o, "occurrences"), drctl_str(o, "summary", ""));
    }
    printf("\nOUTBOX\n");
    if (json_array_size(json_object_get(r, "outbox")) == 0)
        printf("  (empty: everything was delivered)\n");
    else
        printf("  %-17s %-10s %-9s %-8s %-8s %-12s %s\n", "SEQ", "CHANNEL", "STATE", "ACTION", "ATTEMPTS",
               "NEXT", "SUMMARY / LAST ERROR");
    json_array_foreach(json_object_get(r, "outbox"), i, o) {
        drctl_in(drctl_int(o, "next_attempt_ms"), a1, sizeof(a1));
        const char *err = drctl_str(o, "last_error", NULL);
        printf("  %-17" PRId64 " %-10s %-9s %-8s %-8" PRId64 " %-12s %.80s%s%.120s\n", drctl_int(o, "seq"),
               drctl_str(o, "channel", "?"), drctl_str(o, "state", "?"), drctl_str(o, "action", "?"),
               drctl_int(o, "attempts"), a1, drctl_str(o, "summary", ""), err ? " / " : "", err ? err : "");
    }
    if (json_array_size(json_object_get(r, "dead_letters")) > 0) {
        printf("\nDEAD LETTERS (not retried; see the reason, fix, then 'drctl alert test')\n");
        json_array_foreach(json_object_get(r, "dead_letters"), i, o) {
            drctl_ago(drctl_int(o, "ts_ms"), a1, sizeof(a1));
            printf("  %-17" PRId64 " %-10s %-8s %-12s %.80s: %.160s\n", drctl_int(o, "seq"),
                   drctl_str(o, "channel", "?"), drctl_str(o, "action", "?"), a1, drctl_str(o, "summary", ""),
                   drctl_str(o, "reason", "?"));
        }
    }
    printf("\nLAST DELIVERIES\n");
    int any = 0;
    json_object_foreach(json_object_get(r, "channels"), name, c) {
        json_array_foreach(json_object_get(c, "recent"), i, o) {
            any = 1;
            drctl_ago(drctl_int(o, "ts_ms"), a1, sizeof(a1));
            snprintf(a2, sizeof(a2), "%s HTTP %" PRId64, json_is_true(json_object_get(o, "ok")) ? "ok" : "FAILED",
                     drctl_int(o, "http_status"));
            printf("  %-10s %-12s %-16s %.90s%s%.120s\n", name, a1, a2, drctl_str(o, "what", ""),
                   json_object_get(o, "error") ? " / " : "", drctl_str(o, "error", ""));
        }
    }
    if (!any)
        printf("  (none yet)\n");
    const json_t *hb = json_object_get(r, "heartbeat");
    if (json_is_true(json_object_get(hb, "configured"))) {
        drctl_ago(drctl_int(hb, "last_ok_ms"), a1, sizeof(a1));
        printf("\nHEARTBEAT last ok %s, %" PRId64 " ok, %" PRId64 " failed%s%s\n", a1, drctl_int(hb, "ok"),
               drctl_int(hb, "failures"), json_object_get(hb, "last_error") ? ", last error: " : "",
               drctl_str(hb, "last_error", ""));
    }
}

static void drctl_print_alert_test(const json_t *r)
{
    size_t i;
    const json_t *c;
    printf("%" PRId64 " test event%s queued for", drctl_int(r, "events"), drctl_int(r, "events") == 1 ? "" : "s");
    json_array_foreach(json_object_get(r, "channels"), i, c)
        printf("%s%s", i ? ", " : " ", json_string_value(c));
    printf("; follow delivery with 'drctl alerts'\n");
}

/* `alerts` alone is the view; `alerts resolve KEY --reason R` closes a condition by hand. (The
 * view keeps its plain name, so the action is a positional word rather than a sub-command.) */
static int drctl_args_alerts(const OptParse *p, DrctlRequest *req)
{
    const char *action = optspec_string(p, "action", NULL);
    const char *key = optspec_string(p, "key", NULL);
    const char *reason = optspec_string(p, "reason", NULL);

    json_object_del(req->args, "action");
    if (!action) {
        if (reason) {
            fprintf(stderr, "drctl alerts: --reason goes with 'alerts resolve KEY --reason R'\n");
            return DRCTL_EXIT_USAGE;
        }
        return 0; /* the view: wire "alerts" */
    }
    if (strcmp(action, "resolve") != 0) {
        fprintf(stderr, "drctl alerts: unknown action '%s' (the only one is 'resolve KEY --reason R')\n", action);
        return DRCTL_EXIT_USAGE;
    }
    if (!key || !reason || !reason[0]) {
        fprintf(stderr, "drctl alerts resolve: needs the condition KEY and --reason R (drctl alerts lists the open "
                        "conditions)\n");
        return DRCTL_EXIT_USAGE;
    }
    req->wire = "alerts.resolve";
    return 0;
}

static void drctl_print_alerts_or_resolved(const json_t *r)
{
    size_t i;
    const json_t *c;

    if (!json_object_get(r, "condition")) {
        drctl_print_alerts(r);
        return;
    }
    printf("condition %s resolved (%s); the resolution goes to", drctl_str(r, "condition", "?"),
           drctl_str(r, "reason", ""));
    if (json_array_size(json_object_get(r, "channels")) == 0)
        printf(" no channel (none was told of it)");
    json_array_foreach(json_object_get(r, "channels"), i, c)
        printf("%s%s", i ? ", " : " ", json_string_value(c));
    printf("; follow delivery with 'drctl alerts'\n");
}

const OptCommand drctl_cmd_alerts = {
    .name = "alerts",
    .summary = "open conditions, alert outbox, dead letters, last deliveries per channel; alerts resolve KEY "
               "--reason R closes a condition [operator]",
    .description = "Alert delivery: each channel (PagerDuty, Slack, webhook) with its queue, deliveries and "
                   "whether it is retrying; open conditions; the outbox (pending, retrying with the next attempt "
                   "time, sending); dead letters with the reason; the last deliveries per channel; the heartbeat. "
                   "'alerts resolve KEY --reason R' closes the open condition KEY by hand (its cause is gone but "
                   "nothing will say so): the resolution goes to every channel that was told of it, and who and why "
                   "are logged; an unknown KEY is an error. [operator for resolve]",
    .options = (const OptSpec[]){
        {.name = "action", .kind = OPTSPEC_POSITIONAL, .metavar = "resolve",
         .help = "resolve: close the condition KEY by hand"},
        {.name = "key", .kind = OPTSPEC_POSITIONAL, .metavar = "KEY",
         .help = "the condition key, as drctl alerts lists it (detector.unreachable:prod)"},
        {.name = "reason", .short_name = 'r', .kind = OPTSPEC_STRING, .metavar = "TEXT",
         .help = "why the condition is over (logged, sent with the resolution's details)"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "alerts", .args = drctl_args_alerts, .print = drctl_print_alerts_or_resolved},
};

static const OptCommand drctl_cmd_alert_test = {
    .name = "test",
    .summary = "send test alerts end to end (a channel check; --count N: a load check) [operator]",
    .description = "Send test alerts end to end through the outbox, to one channel or to every configured "
                   "channel (routes are not consulted). --count N with --condition is a load check: N events for "
                   "one condition give one page and one Slack message; --resolve resolves the condition. "
                   "[operator]",
    .options = (const OptSpec[]){
        {.name = "channel", .kind = OPTSPEC_STRING, .metavar = "C",
         .help = "pagerduty, slack or webhook (default: every configured channel)"},
        {.name = "condition", .kind = OPTSPEC_STRING, .metavar = "KEY", .help = "the condition key (disk.full:test)"},
        {.name = "count", .kind = OPTSPEC_INT, .metavar = "N", .min = 1, .max = 10000,
         .help = "send N events (1 to 10000)"},
        {.name = "severity", .kind = OPTSPEC_STRING, .metavar = "S", .help = "info, warning, error or critical"},
        {.name = "resolve", .kind = OPTSPEC_FLAG, .help = "resolve the condition (needs --condition)"},
        {.name = "summary", .kind = OPTSPEC_STRING, .metavar = "TEXT", .help = "the alert's text"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "alert.test", .print = drctl_print_alert_test},
};

const OptCommand drctl_cmd_alert = {
    .name = "alert",
    .summary = "send test alerts",
    .description = "Send test alerts end to end (alert test).",
    .subs = (const OptCommand *const[]){&drctl_cmd_alert_test, NULL},
};
