/*
 * drctl: the operator's command-line client for drsupervisord.
 *
 * Owns the global options, the list of commands (each defined in the file of its area), and the
 * dispatch: parse the command line against the table, honour --help and --version, run a command
 * that needs no daemon here, or build the request (the command's options become its arguments),
 * send it (transport.c), render the reply (the command's printer, or the raw result with --json)
 * and turn it into the exit status the command's policy names: 0 ok, 1 the command failed or was
 * refused, 2 usage error, 3 the daemon could not be reached or did not answer in time.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ctlproto.h"
#include "drctl.h"

/* Display order of `drctl help`, by area. */
static const OptCommand *const drctl_commands[] = {
    &drctl_cmd_status,    &drctl_cmd_ping,      &drctl_cmd_reload,
    &drctl_cmd_watch,     &drctl_cmd_commands,  &drctl_cmd_trading,
    &drctl_cmd_halt,      &drctl_cmd_resume,    &drctl_cmd_emergency_close,
    &drctl_cmd_reconcile, &drctl_cmd_venue,     &drctl_cmd_backups,   &drctl_cmd_backup_status,
    &drctl_cmd_backup,    &drctl_cmd_verify,    &drctl_cmd_wal_status, &drctl_cmd_offsite_status, &drctl_cmd_wal_fetch, &drctl_cmd_recover, &drctl_cmd_readiness,
    &drctl_cmd_validate,  &drctl_cmd_drill,     &drctl_cmd_drills,    &drctl_cmd_drill_report,
    &drctl_cmd_execute,
    &drctl_cmd_runs,      &drctl_cmd_run,       &drctl_cmd_approve,
    &drctl_cmd_abort,     &drctl_cmd_incidents, &drctl_cmd_incident,
    &drctl_cmd_replication_status, &drctl_cmd_failover_status, &drctl_cmd_leader, &drctl_cmd_step_down, &drctl_cmd_check, &drctl_cmd_audit,
    &drctl_cmd_switchover, &drctl_cmd_rejoin,
    &drctl_cmd_alerts,    &drctl_cmd_alert,     &drctl_cmd_call,
    &drctl_cmd_help,      &drctl_cmd_completion, NULL,
};

/* Global options: accepted before and after the command name. */
static const OptSpec drctl_global_options[] = {
    {.name = "socket", .short_name = 's', .kind = OPTSPEC_STRING, .metavar = "PATH",
     .help = "control socket (default $DRCTL_SOCKET or " DRCTL_DEFAULT_SOCKET ")"},
    {.name = "json", .short_name = 'j', .kind = OPTSPEC_FLAG,
     .help = "print the daemon's JSON result instead of a table"},
    {.name = "timeout", .short_name = 't', .kind = OPTSPEC_DURATION, .metavar = "DUR", .min = 1, .max = INT64_MAX,
     .help = "how long to wait for an answer (default 30s; e.g. 500ms, 2m, 1h)"},
    {.name = "help", .short_name = 'h', .kind = OPTSPEC_FLAG, .help = "show this help (or a command's)"},
    {.name = "version", .short_name = 'V', .kind = OPTSPEC_FLAG, .help = "show the version"},
    {0},
};

static const OptCommand drctl_root = {
    .name = "drctl",
    .summary = "query and steer drsupervisord",
    .description = "Query and steer drsupervisord over its control socket. Commands marked [operator] change "
                   "things and need the operator role. 'drctl COMMAND --help' or 'drctl help COMMAND' shows a "
                   "command's options; options may come before or after the command.",
    .options = drctl_global_options,
    .subs = drctl_commands,
    .epilogue = "Exit status: 0 ok, 1 the command failed or was refused, 2 usage error,\n"
                "3 the daemon could not be reached or did not answer in time.\n"
                "See drctl(1).\n",
};

/* The daemon's arguments from the command's own options: "dry-run" becomes "dry_run". */
static json_t *drctl_args_from_options(const OptParse *p)
{
    const OptCommand *cmd = optspec_command(p);
    json_t *args = json_object();
    char key[96];

    for (size_t i = 0; i < p->n_values; i++) {
        const OptValue *v = &p->values[i];
        if (v->owner != cmd)
            continue;
        snprintf(key, sizeof(key), "%s", v->spec->name);
        for (char *k = key; *k; k++)
            if (*k == '-')
                *k = '_';
        switch (v->spec->kind) {
        case OPTSPEC_FLAG:
            json_object_set_new(args, key, json_true());
            break;
        case OPTSPEC_INT:
            json_object_set_new(args, key, json_integer(v->num));
            break;
        case OPTSPEC_DURATION:
            snprintf(key + strlen(key), sizeof(key) - strlen(key), "_ms");
            json_object_set_new(args, key, json_integer(v->num));
            break;
        case OPTSPEC_STRING:
        case OPTSPEC_POSITIONAL:
            json_object_set_new(args, key, json_string(v->text));
            break;
        }
    }
    return args;
}

static int drctl_usage_error(const OptParse *p, const char *err)
{
    char name[256];

    fprintf(stderr, "%s\n", err);
    optspec_usage(stderr, p->path, p->depth);
    optspec_path_name(p->path + 1, p->depth - 1, name, sizeof(name));
    fprintf(stderr, "See 'drctl help%s%s'.\n", name[0] ? " " : "", name);
    return DRCTL_EXIT_USAGE;
}

static int drctl_run_daemon_command(const Drctl *c, const OptParse *p, const DrctlAction *act)
{
    DrctlRequest req = {.wire = act->wire, .args = drctl_args_from_options(p)};
    json_t *reply = NULL;
    int r = act->args ? act->args(p, &req) : 0;

    if (r != 0 || !req.wire) {
        json_decref(req.args);
        return r ? r : DRCTL_EXIT_USAGE;
    }
    char *line = ctl_request_line(1, req.wire, req.args);
    json_decref(req.args);
    if (!line) {
        fprintf(stderr, "drctl: out of memory\n");
        return DRCTL_EXIT_FAILED;
    }
    r = drctl_transport_call(c, line, act->streams, &reply);
    free(line);
    if (r != 0)
        return r;

    if (json_is_true(json_object_get(reply, "ok"))) {
        const json_t *res = json_object_get(reply, "result");
        r = DRCTL_EXIT_OK;
        if (c->json)
            drctl_print_json(res);
        else if (act->print)
            act->print(res);
        if (act->exit == DRCTL_EXIT_UNLESS_READY_TO_TRADE && !json_is_true(json_object_get(res, "ready_to_trade")))
            r = DRCTL_EXIT_FAILED;
        if (act->exit == DRCTL_EXIT_UNLESS_OK && !json_is_true(json_object_get(res, "ok")))
            r = DRCTL_EXIT_FAILED;
        if (act->exit == DRCTL_EXIT_NAGIOS)
            r = (int)drctl_int(res, "nagios");
    } else {
        const json_t *err = json_object_get(reply, "error");
        if (c->json)
            drctl_print_json(err);
        fprintf(stderr, "drctl: %s: %s\n", drctl_str(err, "code", "error"), drctl_str(err, "message", "failed"));
        r = act->exit == DRCTL_EXIT_NAGIOS ? 3 : DRCTL_EXIT_FAILED;
    }
    json_decref(reply);
    return r;
}

int main(int argc, char **argv)
{
    Drctl c = {.socket_path = getenv("DRCTL_SOCKET"), .timeout_ms = 30000, .root = &drctl_root};
    OptParse p;
    char err[1024], why[512];

    /* The table is code: a mistake in it is a bug, caught by any run (and the tests). */
    if (optspec_validate(&drctl_root, why, sizeof(why)) < 0) {
        fprintf(stderr, "drctl: bad command table: %s\n", why);
        assert(!"bad command table");
        return DRCTL_EXIT_USAGE;
    }
    if (optspec_parse(&drctl_root, argc, argv, &p, err, sizeof(err)) < 0)
        return drctl_usage_error(&p, err);
    if (optspec_flag(&p, "version")) {
        printf("drctl %s\n", DRSUP_VERSION);
        return DRCTL_EXIT_OK;
    }
    if (optspec_flag(&p, "help")) {
        optspec_help(stdout, p.path, p.depth);
        return DRCTL_EXIT_OK;
    }
    if (p.depth == 1) {
        optspec_help(stderr, p.path, p.depth);
        return DRCTL_EXIT_USAGE;
    }
    if (optspec_check(&p, err, sizeof(err)) < 0)
        return drctl_usage_error(&p, err);

    if (optspec_get(&p, "socket"))
        c.socket_path = optspec_string(&p, "socket", NULL);
    if (!c.socket_path || !c.socket_path[0])
        c.socket_path = DRCTL_DEFAULT_SOCKET;
    c.json = optspec_flag(&p, "json");
    c.timeout_ms = (uint64_t)optspec_int(&p, "timeout", 30000);

    const DrctlAction *act = optspec_command(&p)->data;
    assert(act);
    if (act->where == DRCTL_NO_DAEMON)
        return act->run(&c, &p);
    return drctl_run_daemon_command(&c, &p, act);
}
