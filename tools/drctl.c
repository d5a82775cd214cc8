/*
 * drctl: the operator's command-line client for drsupervisord.
 *
 * Owns the command line, one request/reply exchange over the control socket (ctlproto), and the
 * rendering of replies: readable tables by default, the raw result with --json. Exit status:
 * 0 ok, 1 the daemon refused or the command failed, 2 usage error, 3 daemon unreachable.
 * A plain blocking client: it is not the daemon, and it waits for one answer with a timeout.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "atomicfile.h"
#include "backupstream.h"
#include "cfgtree.h"
#include "ctlproto.h"
#include "err.h"

#define DRCTL_DEFAULT_SOCKET "/run/drsupervisor/control.sock"
#define DRCTL_EXIT_OK 0
#define DRCTL_EXIT_FAILED 1
#define DRCTL_EXIT_USAGE 2
#define DRCTL_EXIT_UNREACHABLE 3

typedef struct Drctl {
    const char *socket_path;
    bool json;
    uint64_t timeout_ms;
    int fd;
} Drctl;

typedef int (*DrctlPrintFn)(const json_t *result);
typedef int (*DrctlArgsFn)(int argc, char **argv, json_t *args);

typedef struct DrctlCommand {
    const char *name;   /* as typed */
    const char *cmd;    /* as sent */
    const char *usage;  /* arguments */
    const char *summary;
    DrctlArgsFn args;
    DrctlPrintFn print;
} DrctlCommand;

/* ---- formatting helpers ---- */

static int64_t drctl_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void drctl_ago(int64_t ts_ms, char *out, size_t n)
{
    char d[40];
    if (ts_ms <= 0) {
        snprintf(out, n, "-");
        return;
    }
    int64_t diff = drctl_now_ms() - ts_ms;
    if (diff < 0)
        diff = 0;
    if (diff < 10000) {
        snprintf(out, n, "%.1fs ago", (double)diff / 1000.0);
        return;
    }
    cfg_format_duration((uint64_t)(diff / 1000) * 1000, d, sizeof(d));
    snprintf(out, n, "%s ago", d);
}

static const char *drctl_str(const json_t *o, const char *key, const char *def)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : def;
}

static int64_t drctl_int(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : json_is_real(v) ? (int64_t)json_real_value(v) : 0;
}

/* ---- printers ---- */

static int drctl_print_status(const json_t *r)
{
    char up[48], since[64], last[64], lat[32];
    const json_t *ctl = json_object_get(r, "control");
    const char *name;
    json_t *c;

    cfg_format_duration((uint64_t)drctl_int(r, "uptime_s") * 1000, up, sizeof(up));
    printf("drsupervisord %s  cluster %s  pid %" PRId64 "  up %s  %s\n", drctl_str(r, "version", "?"),
           drctl_str(r, "cluster", "?"), drctl_int(r, "pid"), up, drctl_str(r, "state", "?"));
    printf("config   %s\n", drctl_str(r, "config_file", "?"));
    printf("socket   %s (%" PRId64 " client%s)\n\n", drctl_str(ctl, "socket", "?"), drctl_int(ctl, "clients"),
           drctl_int(ctl, "clients") == 1 ? "" : "s");
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
    }
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
    }
    return 0;
}

static int drctl_print_ping(const json_t *r)
{
    (void)r;
    printf("pong\n");
    return 0;
}

static int drctl_print_reload(const json_t *r)
{
    (void)r;
    printf("configuration reloaded\n");
    return 0;
}

static int drctl_print_help(const json_t *r)
{
    size_t i;
    json_t *c;
    printf("commands the daemon offers (your role: %s):\n", drctl_str(r, "role", "?"));
    json_array_foreach(json_object_get(r, "commands"), i, c)
        printf("  %-22s %s%s\n", drctl_str(c, "name", "?"), drctl_str(c, "summary", ""),
               json_is_true(json_object_get(c, "mutating")) ? " [operator]" : "");
    return 0;
}

static int drctl_print_json(const json_t *r)
{
    char *s = json_dumps(r, JSON_INDENT(2) | JSON_SORT_KEYS);
    if (s)
        printf("%s\n", s);
    free(s);
    return 0;
}

static void drctl_in(int64_t ts_ms, char *out, size_t n)
{
    char d[40];
    int64_t diff = ts_ms - drctl_now_ms();
    if (ts_ms <= 0) {
        snprintf(out, n, "-");
        return;
    }
    if (diff <= 0) {
        snprintf(out, n, "now");
        return;
    }
    cfg_format_duration((uint64_t)diff, d, sizeof(d));
    snprintf(out, n, "in %s", d);
}

static int drctl_print_alerts(const json_t *r)
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
    return 0;
}

static int drctl_print_alert_test(const json_t *r)
{
    size_t i;
    const json_t *c;
    printf("%" PRId64 " test event%s queued for", drctl_int(r, "events"), drctl_int(r, "events") == 1 ? "" : "s");
    json_array_foreach(json_object_get(r, "channels"), i, c)
        printf("%s%s", i ? ", " : " ", json_string_value(c));
    printf("; follow delivery with 'drctl alerts'\n");
    return 0;
}

/* ---- argument parsers ---- */

static int drctl_args_none(int argc, char **argv, json_t *args)
{
    (void)args;
    if (argc > 1) {
        fprintf(stderr, "drctl %s: unexpected argument '%s'\n", argv[0], argv[1]);
        return -EINVAL;
    }
    return 0;
}

static int drctl_args_call(int argc, char **argv, json_t *args)
{
    json_error_t jerr;
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "drctl call: usage: drctl call COMMAND ['{\"json\":\"args\"}']\n");
        return -EINVAL;
    }
    json_object_set_new(args, "__cmd", json_string(argv[1]));
    if (argc == 3) {
        json_t *a = json_loads(argv[2], 0, &jerr);
        if (!json_is_object(a)) {
            fprintf(stderr, "drctl call: arguments must be a JSON object: %s\n", a ? "not an object" : jerr.text);
            json_decref(a);
            return -EINVAL;
        }
        json_object_update(args, a);
        json_decref(a);
    }
    return 0;
}

/* alert test [--channel C] [--condition K] [--count N] [--severity S] [--resolve] [--summary TEXT] */
static int drctl_args_alert(int argc, char **argv, json_t *args)
{
    if (argc < 2 || strcmp(argv[1], "test")) {
        fprintf(stderr, "drctl alert: usage: drctl alert test [--channel pagerduty|slack|webhook] [--condition KEY] "
                        "[--count N] [--severity S] [--resolve] [--summary TEXT]\n");
        return -EINVAL;
    }
    for (int i = 2; i < argc; i++) {
        const char *o = argv[i];
        if (!strcmp(o, "--resolve")) {
            json_object_set_new(args, "resolve", json_true());
            continue;
        }
        if (i + 1 >= argc || (strcmp(o, "--channel") && strcmp(o, "--condition") && strcmp(o, "--count") &&
                              strcmp(o, "--severity") && strcmp(o, "--summary"))) {
            fprintf(stderr, "drctl alert test: unexpected argument '%s'\n", o);
            return -EINVAL;
        }
        const char *v = argv[++i];
        if (!strcmp(o, "--count")) {
            char *end = NULL;
            long long n = strtoll(v, &end, 10);
            if (!end || *end || n < 1 || n > 10000) {
                fprintf(stderr, "drctl alert test: --count needs a number from 1 to 10000, not '%s'\n", v);
                return -EINVAL;
            }
            json_object_set_new(args, "count", json_integer(n));
        } else {
            json_object_set_new(args, o + 2, json_string(v));
        }
    }
    return 0;
}

static int drctl_args_halt(int argc, char **argv, json_t *args)
{
    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "--reason") == 0 || strcmp(argv[i], "-r") == 0) && i + 1 < argc) {
            json_object_set_new(args, "reason", json_string(argv[++i]));
        } else if (strncmp(argv[i], "--reason=", 9) == 0) {
            json_object_set_new(args, "reason", json_string(argv[i] + 9));
        } else {
            fprintf(stderr, "drctl %s: unexpected argument '%s'\n", argv[0], argv[i]);
            return -EINVAL;
        }
    }
    if (!json_object_get(args, "reason")) {
        fprintf(stderr, "drctl %s: --reason TEXT is required (it is recorded and paged)\n", argv[0]);
        return -EINVAL;
    }
    return 0;
}

static int drctl_args_resume(int argc, char **argv, json_t *args)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--shadow") == 0) {
            json_object_set_new(args, "shadow", json_true());
        } else if (strcmp(argv[i], "--force") == 0) {
            json_object_set_new(args, "force", json_true());
        } else if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc) {
            json_object_set_new(args, "reason", json_string(argv[++i]));
        } else {
            fprintf(stderr, "drctl resume: unexpected argument '%s'\n", argv[i]);
            return -EINVAL;
        }
    }
    return 0;
}

static int drctl_print_mode(const json_t *r)
{
    printf("trading is %s\n", drctl_str(r, "mode", "?"));
    return 0;
}

static int drctl_print_closed(const json_t *r)
{
    (void)r;
    printf("trading is halted and the platform closed all positions\n");
    return 0;
}

static int drctl_print_trading(const json_t *r)
{
    char since[64];
    if (!json_is_true(json_object_get(r, "enabled"))) {
        printf("no venue is configured: the daemon cannot halt or resume trading\n");
        return 0;
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
    return 0;
}

/* ---- backups ---- */

static void drctl_size(int64_t bytes, char *out, size_t n)
{
    if (bytes >= 1 << 20)
        snprintf(out, n, "%.1f MiB", (double)bytes / 1048576.0);
    else if (bytes >= 1 << 10)
        snprintf(out, n, "%.1f KiB", (double)bytes / 1024.0);
    else
        snprintf(out, n, "%" PRId64 " B", bytes);
}

static int drctl_print_backups(const json_t *r)
{
    size_t i;
    json_t *b;
    char size[32], dur[32];

    printf("%-48s %-20s %10s %9s %-8s %s\n", "NAME", "STARTED", "SIZE", "DURATION", "VERIFIED", "TEST-RESTORED");
    json_array_foreach(json_object_get(r, "backups"), i, b) {
        drctl_size(drctl_int(b, "file_size_bytes"), size, sizeof(size));
        snprintf(dur, sizeof(dur), "%.1fs", (double)drctl_int(b, "duration_ms") / 1000.0);
        printf("%-48s %-20s %10s %9s %-8s %s\n", drctl_str(b, "name", "?"), drctl_str(b, "started_at", "?"), size, dur,
               json_is_true(json_object_get(b, "verified")) ? "yes" : "NO", drctl_str(b, "restore_test", "skipped"));
    }
    if (json_array_size(json_object_get(r, "backups")) == 0)
        printf("(no backups in %s)\n", drctl_str(r, "directory", "?"));
    const json_t *f = json_object_get(r, "failures");
    if (json_array_size(f)) {
        printf("\nrecent failures:\n");
        json_array_foreach(f, i, b)
            printf("  %-20s %-48s %-8s %s\n", drctl_str(b, "started_at", "?"), drctl_str(b, "file", "?"),
                   drctl_str(b, "stage", "?"), drctl_str(b, "error", ""));
    }
    const json_t *run = json_object_get(r, "running");
    if (json_is_object(run))
        printf("\nrunning: %s of %s\n", drctl_str(run, "kind", "?"), drctl_str(run, "name", "?"));
    return 0;
}

static int drctl_print_backup_status(const json_t *r)
{
    printf("%s\n", drctl_str(r, "line", "?"));
    return 0;
}

static int drctl_print_backup_now(const json_t *r)
{
    if (json_object_get(r, "manifest")) {
        const json_t *m = json_object_get(r, "manifest");
        char size[32];
        drctl_size(drctl_int(m, "file_size_bytes"), size, sizeof(size));
        printf("backup %s done: %s, sha256 %s\n", drctl_str(r, "name", "?"), size, drctl_str(m, "sha256", "?"));
    } else {
        printf("backup %s started\n", drctl_str(r, "name", "?"));
    }
    return 0;
}

static int drctl_print_verify(const json_t *r)
{
    const json_t *rt = json_object_get(r, "restore_test");
    if (json_is_object(rt)) {
        printf("test restore of %s: %s in %.1fs (scratch database %s, dropped: %s)\n", drctl_str(r, "name", "?"),
               drctl_str(rt, "status", "?"), (double)drctl_int(rt, "duration_ms") / 1000.0, drctl_str(rt, "database", "?"),
               json_is_true(json_object_get(rt, "dropped")) ? "yes" : "NO");
        size_t i;
        json_t *q;
        json_array_foreach(json_object_get(rt, "queries"), i, q) {
            char *rows = json_dumps(json_object_get(q, "rows"), JSON_COMPACT);
            printf("  %s -> %s (%" PRId64 " ms)\n", drctl_str(q, "query", "?"), rows ? rows : drctl_str(q, "error", "?"),
                   drctl_int(q, "duration_ms"));
            free(rows);
        }
        return 0;
    }
    const json_t *v = json_object_get(r, "verification");
    printf("%s: verified (container %s, sha256 %s, pg_restore --list %s)\n", drctl_str(r, "name", "?"),
           drctl_str(v, "container", "?"), json_is_true(json_object_get(v, "sha256_match")) ? "matches" : "MISMATCH",
           drctl_str(v, "pg_restore_list", "?"));
    return 0;
}

static int drctl_args_backup(int argc, char **argv, json_t *args)
{
    if (argc >= 2 && strcmp(argv[1], "now") == 0) {
        for (int i = 2; i < argc; i++) {
            if (strcmp(argv[i], "--wait") == 0) {
                json_object_set_new(args, "wait", json_true());
            } else {
                fprintf(stderr, "drctl backup now: unexpected argument '%s'\n", argv[i]);
                return -EINVAL;
            }
        }
        json_object_set_new(args, "__cmd", json_string("backup_now"));
        return 0;
    }
    fprintf(stderr, "drctl backup: usage: drctl backup now [--wait] | drctl backup decrypt --key-file K FILE [-o OUT] [--raw]\n");
    return -EINVAL;
}

static int drctl_args_verify(int argc, char **argv, json_t *args)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--restore") == 0)
            json_object_set_new(args, "restore", json_true());
        else if (argv[i][0] == '-' || json_object_get(args, "name")) {
            fprintf(stderr, "drctl verify: usage: drctl verify [NAME] [--restore]\n");
            return -EINVAL;
        } else
            json_object_set_new(args, "name", json_string(argv[i]));
    }
    return 0;
}

typedef struct DrctlDecrypt {
    AtomicFile *out;
} DrctlDecrypt;

static int drctl_decrypt_sink(void *ctx, const uint8_t *data, size_t len)
{
    return atomicfile_append(((DrctlDecrypt *)ctx)->out, data, len);
}

/* `drctl backup decrypt`: no daemon. Output under a temporary name, renamed only when the whole file
 * verified. */
static int drctl_backup_decrypt(int argc, char **argv)
{
    const char *key_file = NULL, *in = NULL, *outp = NULL;
    bool raw = false;
    char outbuf[4096], err[512] = "";
    uint8_t key[BCF_KEY_LEN];

    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--key-file") == 0 && i + 1 < argc)
            key_file = argv[++i];
        else if ((strcmp(argv[i], "-o") == 0 || strcmp(argv[i], "--output") == 0) && i + 1 < argc)
            outp = argv[++i];
        else if (strcmp(argv[i], "--raw") == 0)
            raw = true;
        else if (argv[i][0] != '-' && !in)
            in = argv[i];
        else {
            fprintf(stderr, "drctl backup decrypt: usage: drctl backup decrypt --key-file K FILE [-o OUT] [--raw]\n");
            return DRCTL_EXIT_USAGE;
        }
    }
    if (!key_file || !in) {
        fprintf(stderr, "drctl backup decrypt: usage: drctl backup decrypt --key-file K FILE [-o OUT] [--raw]\n");
        return DRCTL_EXIT_USAGE;
    }
    if (!outp) {
        /* x.dump.zst.drbk -> x.dump (or x.dump.zst with --raw) */
        snprintf(outbuf, sizeof(outbuf), "%s", in);
        size_t n = strlen(outbuf);
        if (n > 5 && strcmp(outbuf + n - 5, BCF_FILE_EXT) == 0)
            outbuf[n -= 5] = '\0';
        else {
            fprintf(stderr, "drctl backup decrypt: '%s' does not end in %s; name the output with -o\n", in, BCF_FILE_EXT);
            return DRCTL_EXIT_USAGE;
        }
        if (!raw) {
            char *dot = strrchr(outbuf, '.');
            if (dot && (strcmp(dot, ".zst") == 0 || strcmp(dot, ".gz") == 0))
                *dot = '\0';
        }
        outp = outbuf;
    }
    if (bcf_load_key_file(key_file, key, err, sizeof(err)) < 0) {
        fprintf(stderr, "drctl backup decrypt: %s\n", err);
        return DRCTL_EXIT_FAILED;
    }
    FILE *f = fopen(in, "rb");
    if (!f) {
        fprintf(stderr, "drctl backup decrypt: cannot open '%s': %s\n", in, strerror(errno));
        return DRCTL_EXIT_FAILED;
    }
    int r = 0;
    DrctlDecrypt ctx = {.out = atomicfile_open(outp, 0600, &r)};
    if (!ctx.out) {
        fprintf(stderr, "drctl backup decrypt: cannot create '%s': %s\n", outp, err_str(r));
        fclose(f);
        return DRCTL_EXIT_FAILED;
    }
    BackupStreamReader *rd = backupstream_reader_new(key, !raw, drctl_decrypt_sink, &ctx);
    memset(key, 0, sizeof(key));
    static uint8_t buf[1 << 20];
    size_t n;
    while (rd && r == 0 && (n = fread(buf, 1, sizeof(buf), f)) > 0)
        r = backupstream_reader_update(rd, buf, n);
    if (rd && r == 0 && ferror(f))
        r = -EIO;
    BackupStreamStats st;
    int fr = rd ? backupstream_reader_finish(rd, &st) : -ENOMEM;
    if (r == 0)
        r = fr;
    fclose(f);
    if (r < 0) {
        fprintf(stderr, "drctl backup decrypt: '%s' failed verification, nothing written: %s\n", in,
                rd && backupstream_reader_errmsg(rd)[0] ? backupstream_reader_errmsg(rd) : err_str(r));
        atomicfile_abort(ctx.out);
        backupstream_reader_free(rd);
        return DRCTL_EXIT_FAILED;
    }
    backupstream_reader_free(rd);
    r = atomicfile_commit(ctx.out);
    if (r < 0) {
        fprintf(stderr, "drctl backup decrypt: cannot write '%s': %s\n", outp, err_str(r));
        return DRCTL_EXIT_FAILED;
    }
    printf("%s: verified (%" PRIu64 " chunks, sha256 %s); wrote %s (%" PRIu64 " bytes)\n", in, st.chunks,
           st.file_sha256_hex, outp, raw ? st.payload_bytes : st.plain_bytes);
    return DRCTL_EXIT_OK;
}

/* ---- reconcile ---- */

/* --since: epoch milliseconds, an ISO-8601 UTC time (2025-08-29T10:00:00Z), or a duration ago (2h). */
static int drctl_parse_since(const char *text, int64_t *ret_ms)
{
    uint64_t dur;
    char *end = NULL;
    struct tm tm;

    if (text[0] >= '0' && text[0] <= '9') {
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (!errno && end && !*end && v > 100000000000LL) {
            *ret_ms = v;
            return 0;
        }
    }
    if (cfg_parse_duration_ms(text, &dur) == 0) {
        *ret_ms = drctl_now_ms() - (int64_t)dur;
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

static int drctl_args_reconcile(int argc, char **argv, json_t *args)
{
    for (int i = 1; i < argc; i++) {
        int64_t ms;
        if (strcmp(argv[i], "--since") == 0 && i + 1 < argc && drctl_parse_since(argv[i + 1], &ms) == 0) {
            json_object_set_new(args, "since_ms", json_integer(ms));
            i++;
        } else {
            fprintf(stderr, "drctl reconcile: usage: drctl reconcile [--since EPOCH_MS|ISO-8601|DURATION]\n");
            return -EINVAL;
        }
    }
    return 0;
}

static int drctl_print_reconcile(const json_t *r)
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
    return ready ? DRCTL_EXIT_OK : DRCTL_EXIT_FAILED;
}

/* ---- scenarios ---- */

static int drctl_args_execute(int argc, char **argv, json_t *args)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--scenario") == 0 && i + 1 < argc)
            json_object_set_new(args, "scenario", json_string(argv[++i]));
        else if (strncmp(argv[i], "--scenario=", 11) == 0)
            json_object_set_new(args, "scenario", json_string(argv[i] + 11));
        else if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc)
            json_object_set_new(args, "reason", json_string(argv[++i]));
        else if (strcmp(argv[i], "--dry-run") == 0)
            json_object_set_new(args, "dry_run", json_true());
        else if (strcmp(argv[i], "--manual") == 0)
            json_object_set_new(args, "manual", json_true());
        else {
            fprintf(stderr, "drctl execute: unexpected argument '%s'\n", argv[i]);
            return -EINVAL;
        }
    }
    if (!json_object_get(args, "scenario")) {
        fprintf(stderr, "drctl execute: usage: drctl execute --scenario NAME [--dry-run] [--manual] [--reason TEXT]\n");
        return -EINVAL;
    }
    return 0;
}

static int drctl_print_execute(const json_t *r)
{
    size_t i;
    json_t *st;
    if (!json_is_true(json_object_get(r, "dry_run"))) {
        printf("started run %s (%s, %s mode); follow it with: drctl run %s\n", drctl_str(r, "run", "?"),
               drctl_str(r, "scenario", "?"), drctl_str(r, "mode", "?"), drctl_str(r, "run", "?"));
        return 0;
    }
    printf("dry run of %s for database '%s' (nothing was changed):\n", drctl_str(r, "scenario", "?"),
           drctl_str(r, "database", "?"));
    json_array_foreach(json_object_get(r, "plan"), i, st)
        printf("  %zu. %-18s %s\n", i + 1, drctl_str(st, "step", "?"), drctl_str(st, "action", drctl_str(st, "sentence", "")));
    return 0;
}

static int drctl_args_run_id(int argc, char **argv, json_t *args)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--reason") == 0 && i + 1 < argc && strcmp(argv[0], "abort") == 0)
            json_object_set_new(args, "reason", json_string(argv[++i]));
        else if (argv[i][0] != '-' && !json_object_get(args, "run"))
            json_object_set_new(args, "run", json_string(argv[i]));
        else {
            fprintf(stderr, "drctl %s: unexpected argument '%s'\n", argv[0], argv[i]);
            return -EINVAL;
        }
    }
    if (!json_object_get(args, "run")) {
        fprintf(stderr, "drctl %s: usage: drctl %s RUN%s\n", argv[0], argv[0],
                strcmp(argv[0], "abort") == 0 ? " [--reason TEXT]" : "");
        return -EINVAL;
    }
    return 0;
}

static void drctl_ms(const json_t *v, char *out, size_t n)
{
    if (json_is_integer(v))
        snprintf(out, n, "%.1fs", (double)json_integer_value(v) / 1000.0);
    else
        snprintf(out, n, "-");
}

static int drctl_print_runs(const json_t *r)
{
    size_t i;
    json_t *x;
    const json_t *list = json_object_get(r, "runs");
    if (!json_array_size(list)) {
        printf("no scenario runs%s\n", json_is_true(json_object_get(r, "loading")) ? " (still loading)" : "");
        return 0;
    }
    printf("%-38s %-20s %-17s %-18s %-9s %-9s\n", "RUN", "SCENARIO", "STATUS", "STATE", "RTO", "RPO");
    json_array_foreach(list, i, x) {
        char rto[32], rpo[32];
        drctl_ms(json_object_get(x, "rto_ms"), rto, sizeof(rto));
        drctl_ms(json_object_get(x, "rpo_ms"), rpo, sizeof(rpo));
        printf("%-38s %-20s %-17s %-18s %-9s %-9s\n", drctl_str(x, "run", "?"), drctl_str(x, "scenario", "?"),
               drctl_str(x, "status", "?"), drctl_str(x, "state", "?"), rto, rpo);
    }
    return 0;
}

static int drctl_print_run(const json_t *r)
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
    return 0;
}

static int drctl_print_run_status(const json_t *r)
{
    printf("run %s: %s\n", drctl_str(r, "run", "?"), drctl_str(r, "status", "?"));
    return 0;
}

static int drctl_print_incidents(const json_t *r)
{
    json_t *wrap = json_pack("{s:O}", "runs", json_object_get(r, "incidents"));
    drctl_print_runs(wrap);
    json_decref(wrap);
    return 0;
}

static int drctl_print_incident(const json_t *r)
{
    fputs(drctl_str(r, "text", ""), stdout);
    return 0;
}

static const DrctlCommand drctl_commands[] = {
    {"status", "status", "", "daemon and component health", drctl_args_none, drctl_print_status},
    {"ping", "ping", "", "check that the daemon answers", drctl_args_none, drctl_print_ping},
    {"reload", "reload", "", "re-read the configuration; waits until done [operator]", drctl_args_none,
     drctl_print_reload},
    {"watch", "watch", "", "print events as they happen, until interrupted", drctl_args_none, NULL},
    {"alerts", "alerts", "", "open conditions, alert outbox, dead letters, last deliveries per channel",
     drctl_args_none, drctl_print_alerts},
    {"alert", "alert.test", "test [--channel C] [--condition K] [--count N] [--severity S] [--resolve] [--summary T]",
     "send test alerts end to end (a channel check; --count N: a load check) [operator]", drctl_args_alert,
     drctl_print_alert_test},
    {"halt", "halt", "--reason|-r TEXT", "halt trading now; waits until the platform confirms [operator]",
     drctl_args_halt, drctl_print_mode},
    {"resume", "resume", "[--shadow] [--force --reason TEXT]",
     "resume trading live (or shadow) once a reconcile has passed; --force overrides that, paged [operator]",
     drctl_args_resume,
     drctl_print_mode},
    {"trading", "trading", "", "the platform's trading mode and the halt state", drctl_args_none,
     drctl_print_trading},
    {"emergency-close", "emergency_close", "--reason TEXT",
     "halt trading (confirmed), then close every position on the platform; paged [operator]", drctl_args_halt,
     drctl_print_closed},
    {"commands", "help", "", "list the commands the daemon offers", drctl_args_none, drctl_print_help},
    {"backups", "backups", "", "list backups (name, time, size, duration, verified, test-restored)", drctl_args_none,
     drctl_print_backups},
    {"backup-status", "backup_status", "", "one line: latest backup, size, age, verified", drctl_args_none,
     drctl_print_backup_status},
    {"backup", NULL, "now [--wait]", "start a backup now [operator]", drctl_args_backup, drctl_print_backup_now},
    {"backup decrypt", NULL, "--key-file K FILE [-o|--output OUT] [--raw]",
     "turn a backup into a pg_restore input; no daemon needed", NULL, NULL},
    {"verify", "verify", "[NAME] [--restore]", "verify a backup (newest by default); --restore: test restore [operator]",
     drctl_args_verify, drctl_print_verify},
    {"reconcile", "reconcile", "[--since T]",
     "compare the database with the exchange, replay missing fills; PASS/FAIL table, exit 1 on FAIL [operator]",
     drctl_args_reconcile, drctl_print_reconcile},
    {"execute", "execute", "--scenario NAME [--dry-run] [--manual] [--reason TEXT]",
     "run a recovery scenario now (dry run: print the plan, change nothing) [operator]", drctl_args_execute,
     drctl_print_execute},
    {"runs", "runs", "", "scenario runs: the active one, then finished ones", drctl_args_none, drctl_print_runs},
    {"run", "run", "RUN", "one run's timeline: every step, outcome, duration, message", drctl_args_run_id,
     drctl_print_run},
    {"approve", "approve", "RUN", "continue a run waiting at a gate or held after a restart [operator]",
     drctl_args_run_id, drctl_print_run_status},
    {"abort", "abort", "RUN [--reason TEXT]", "end a run; trading stays halted [operator]", drctl_args_run_id,
     drctl_print_run_status},
    {"incidents", "incidents", "", "incident reports (RTO, RPO, outcome)", drctl_args_none, drctl_print_incidents},
    {"incident", "incident", "RUN", "print one incident report", drctl_args_run_id, drctl_print_incident},
    {"call", NULL, "COMMAND [JSON]", "send any command with raw JSON arguments", drctl_args_call,
     drctl_print_json},
};

static void drctl_usage(FILE *out)
{
    fprintf(out, "Usage: drctl [--socket PATH] [--json] [--timeout DURATION] COMMAND [ARGS]\n\n"
                 "Query and steer drsupervisord over its control socket.\n\nCommands:\n");
    for (size_t i = 0; i < sizeof(drctl_commands) / sizeof(drctl_commands[0]); i++) {
        char left[128];
        snprintf(left, sizeof(left), "%s %s", drctl_commands[i].name, drctl_commands[i].usage);
        if (strlen(left) > 36)
            fprintf(out, "  %s\n  %-36s %s\n", left, "", drctl_commands[i].summary);
        else
            fprintf(out, "  %-36s %s\n", left, drctl_commands[i].summary);
    }
    fprintf(out, "\nOptions:\n"
                 "  -s, --socket PATH     control socket (default $DRCTL_SOCKET or " DRCTL_DEFAULT_SOCKET ")\n"
                 "  -j, --json            print the daemon's JSON result instead of a table\n"
                 "  -t, --timeout DUR     how long to wait for an answer (default 30s; e.g. 500ms, 2m)\n"
                 "  -h, --help            show this help\n"
                 "  -V, --version         show the version\n"
                 "\nExit status: 0 ok, 1 the command failed or was refused, 2 usage error,\n"
                 "3 the daemon could not be reached or did not answer in time.\n"
                 "See drctl(1).\n");
}

/* ---- transport ---- */

static int drctl_connect(Drctl *c)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    if (strlen(c->socket_path) >= sizeof(sa.sun_path)) {
        fprintf(stderr, "drctl: socket path too long: '%s'\n", c->socket_path);
        return DRCTL_EXIT_USAGE;
    }
    strcpy(sa.sun_path, c->socket_path);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || connect(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        fprintf(stderr, "drctl: cannot reach drsupervisord at '%s': %s%s\n", c->socket_path, strerror(e),
                e == ENOENT || e == ECONNREFUSED ? " (is the daemon running? see --socket)"
                : e == EACCES                     ? " (are you in the socket's group?)"
                                                  : "");
        return DRCTL_EXIT_UNREACHABLE;
    }
    return 0;
}

static int drctl_send_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, buf, len, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        buf += w;
        len -= (size_t)w;
    }
    return 0;
}

typedef struct DrctlReadCtx {
    json_t *reply;
    bool watch;
    bool json;
} DrctlReadCtx;

static int drctl_on_line(void *data, const char *line, size_t len)
{
    DrctlReadCtx *ctx = data;
    json_error_t jerr;

    if (!line) {
        fprintf(stderr, "drctl: the daemon sent an over-long line\n");
        return -EPROTO;
    }
    json_t *j = json_loadb(line, len, 0, &jerr);
    if (!json_is_object(j)) {
        json_decref(j);
        fprintf(stderr, "drctl: the daemon sent something that is not JSON: %.80s\n", line);
        return -EPROTO;
    }
    json_t *ev = json_object_get(j, "event");
    if (ev) {
        if (ctx->json) {
            char *s = json_dumps(ev, JSON_COMPACT);
            printf("%s\n", s ? s : "{}");
            free(s);
        } else {
            char when[32];
            time_t t = (time_t)(drctl_int(ev, "ts_ms") / 1000);
            struct tm tm;
            gmtime_r(&t, &tm);
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
            printf("%s %-8s %-20s %s%s\n", when, drctl_str(ev, "severity", "?"), drctl_str(ev, "kind", "?"),
                   json_is_true(json_object_get(ev, "resolved")) ? "resolved: " : "",
                   drctl_str(ev, "summary", ""));
        }
        fflush(stdout);
        json_decref(j);
        return 0;
    }
    if (ctx->reply) {
        json_decref(j);
        return 0;
    }
    ctx->reply = j;
    return ctx->watch && json_is_true(json_object_get(j, "ok")) ? 0 : 1;
}

/* Read until the reply (or, when watching, until the daemon hangs up). */
static int drctl_exchange(Drctl *c, const char *line, bool watch, json_t **ret_reply)
{
    DrctlReadCtx ctx = {.watch = watch, .json = c->json};
    CtlLineBuf lb;
    char buf[65536];
    int64_t deadline = drctl_now_ms() + (int64_t)c->timeout_ms;
    int r;

    if (drctl_send_all(c->fd, line, strlen(line)) < 0) {
        fprintf(stderr, "drctl: cannot send the request: %s\n", strerror(errno));
        return DRCTL_EXIT_UNREACHABLE;
    }
    ctl_linebuf_init(&lb, 64u * 1024u * 1024u);
    for (;;) {
        int wait = -1;
        if (!watch || !ctx.reply) {
            int64_t left = deadline - drctl_now_ms();
            if (left <= 0) {
                fprintf(stderr, "drctl: no answer from the daemon within %" PRIu64 " ms\n", c->timeout_ms);
                ctl_linebuf_done(&lb);
                return DRCTL_EXIT_UNREACHABLE;
            }
            wait = (int)left;
        }
        struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
        r = poll(&pfd, 1, wait);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            continue;
        ssize_t n = recv(c->fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            ctl_linebuf_done(&lb);
            if (ctx.reply && watch) {
                json_decref(ctx.reply);
                fprintf(stderr, "drctl: the daemon closed the connection\n");
                return DRCTL_EXIT_UNREACHABLE;
            }
            fprintf(stderr, "drctl: the daemon closed the connection without answering\n");
            return DRCTL_EXIT_UNREACHABLE;
        }
        r = ctl_linebuf_feed(&lb, buf, (size_t)n, drctl_on_line, &ctx);
        if (r < 0) {
            ctl_linebuf_done(&lb);
            json_decref(ctx.reply);
            return DRCTL_EXIT_UNREACHABLE;
        }
        if (r > 0)
            break;
    }
    ctl_linebuf_done(&lb);
    *ret_reply = ctx.reply;
    return 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"socket", required_argument, NULL, 's'}, {"json", no_argument, NULL, 'j'},
        {"timeout", required_argument, NULL, 't'}, {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},      {NULL, 0, NULL, 0},
    };
    Drctl c = {.socket_path = getenv("DRCTL_SOCKET"), .timeout_ms = 30000, .fd = -1};
    const DrctlCommand *cmd = NULL;
    json_t *args, *reply = NULL;
    int o, r;

    if (!c.socket_path || !c.socket_path[0])
        c.socket_path = DRCTL_DEFAULT_SOCKET;
    while ((o = getopt_long(argc, argv, "+s:jt:hV", opts, NULL)) != -1) {
        switch (o) {
        case 's':
            c.socket_path = optarg;
            break;
        case 'j':
            c.json = true;
            break;
        case 't':
            if (cfg_parse_duration_ms(optarg, &c.timeout_ms) < 0 || c.timeout_ms == 0) {
                fprintf(stderr, "drctl: --timeout needs a duration such as 500ms or 2m, not '%s'\n", optarg);
                return DRCTL_EXIT_USAGE;
            }
            break;
        case 'h':
            drctl_usage(stdout);
            return DRCTL_EXIT_OK;
        case 'V':
            printf("drctl %s\n", DRSUP_VERSION);
            return DRCTL_EXIT_OK;
        default:
            drctl_usage(stderr);
            return DRCTL_EXIT_USAGE;
        }
    }
    if (optind >= argc) {
        drctl_usage(stderr);
        return DRCTL_EXIT_USAGE;
    }
    if (strcmp(argv[optind], "backup") == 0 && optind + 1 < argc && strcmp(argv[optind + 1], "decrypt") == 0)
        return drctl_backup_decrypt(argc - optind, argv + optind);
    for (size_t i = 0; i < sizeof(drctl_commands) / sizeof(drctl_commands[0]); i++)
        if (drctl_commands[i].args && strcmp(argv[optind], drctl_commands[i].name) == 0)
            cmd = &drctl_commands[i];
    if (!cmd) {
        fprintf(stderr, "drctl: unknown command '%s'; see drctl --help\n", argv[optind]);
        return DRCTL_EXIT_USAGE;
    }
    args = json_object();
    if (cmd->args(argc - optind, argv + optind, args) < 0) {
        json_decref(args);
        return DRCTL_EXIT_USAGE;
    }
    const char *wire = cmd->cmd;
    char *wire_owned = NULL;
    if (!wire) {
        wire_owned = strdup(json_string_value(json_object_get(args, "__cmd")));
        json_object_del(args, "__cmd");
        wire = wire_owned;
    }
    bool watch = strcmp(wire, "watch") == 0;
    char *line = ctl_request_line(1, wire, args);
    json_decref(args);
    r = drctl_connect(&c);
    if (r == 0)
        r = drctl_exchange(&c, line, watch, &reply);
    free(line);
    free(wire_owned);
    if (c.fd >= 0)
        close(c.fd);
    if (r != 0)
        return r;

    if (json_is_true(json_object_get(reply, "ok"))) {
        const json_t *res = json_object_get(reply, "result");
        r = DRCTL_EXIT_OK;
        if (c.json)
            drctl_print_json(res);
        else if (cmd->print)
            r = cmd->print(res) == DRCTL_EXIT_FAILED ? DRCTL_EXIT_FAILED : DRCTL_EXIT_OK;
        /* A reconcile that did not pass fails in --json mode too: scripts trust the exit code. */
        if (cmd->print == drctl_print_reconcile && !json_is_true(json_object_get(res, "ready_to_trade")))
            r = DRCTL_EXIT_FAILED;
    } else {
        const json_t *err = json_object_get(reply, "error");
        if (c.json)
            drctl_print_json(err);
        fprintf(stderr, "drctl: %s: %s\n", drctl_str(err, "code", "error"), drctl_str(err, "message", "failed"));
        r = DRCTL_EXIT_FAILED;
    }
    json_decref(reply);
    return r;
}
