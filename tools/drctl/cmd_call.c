/*
 * drctl call: any daemon command by its wire name, with raw JSON arguments.
 *
 * Owns the one command whose wire name is typed by the operator: the request is built from the
 * COMMAND and JSON positionals instead of from options, and the result is printed as JSON.
 */
#include <stdio.h>

#include "drctl.h"

static int drctl_args_call(const OptParse *p, DrctlRequest *req)
{
    const char *text = optspec_string(p, "arguments", NULL);
    json_error_t jerr;

    req->wire = optspec_string(p, "command", NULL);
    json_object_clear(req->args);
    if (!text)
        return 0;
    json_t *a = json_loads(text, 0, &jerr);
    if (!json_is_object(a)) {
        fprintf(stderr, "drctl call: arguments must be a JSON object: %s\n", a ? "not an object" : jerr.text);
        json_decref(a);
        return DRCTL_EXIT_USAGE;
    }
    json_object_update(req->args, a);
    json_decref(a);
    return 0;
}

const OptCommand drctl_cmd_call = {
    .name = "call",
    .summary = "send any command with raw JSON arguments",
    .description = "Send any command by its wire name (see drctl commands) with its arguments as a JSON object, "
                   "and print the JSON result.",
    .options = (const OptSpec[]){
        {.name = "command", .kind = OPTSPEC_POSITIONAL, .required = true, .metavar = "COMMAND",
         .help = "the daemon's name for the command (status, backup_now, alert.test ...)"},
        {.name = "arguments", .kind = OPTSPEC_POSITIONAL, .metavar = "JSON",
         .help = "the arguments as a JSON object ('{\"name\":\"...\"}')"},
        {0},
    },
    .data = &(const DrctlAction){.args = drctl_args_call, .print = drctl_print_json},
};
