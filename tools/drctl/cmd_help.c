/*
 * drctl help and completion: texts generated from the command table.
 *
 * Owns `drctl help [COMMAND [SUB-COMMAND]]` (the same text as --help; with --json the table
 * itself as data: every command, its usage, wire name, whether it needs the daemon, and its
 * options) and `drctl completion bash`. Both run without a daemon.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drctl.h"

static const char *drctl_kind_name(OptKind k)
{
    switch (k) {
    case OPTSPEC_FLAG:
        return "flag";
    case OPTSPEC_STRING:
        return "string";
    case OPTSPEC_INT:
        return "int";
    case OPTSPEC_DURATION:
        return "duration";
    case OPTSPEC_POSITIONAL:
        return "positional";
    }
    return "?";
}

static json_t *drctl_options_json(const OptCommand *cmd)
{
    json_t *a = json_array();
    for (size_t i = 0; cmd->options && cmd->options[i].name; i++) {
        const OptSpec *s = &cmd->options[i];
        char lng[96], shrt[4] = "";
        if (s->hidden)
            continue;
        snprintf(lng, sizeof(lng), "--%s", s->name);
        if (s->short_name)
            snprintf(shrt, sizeof(shrt), "-%c", s->short_name);
        json_array_append_new(
            a, json_pack("{s:s, s:o, s:o, s:s, s:b, s:o, s:s}", "name", s->name, "long",
                         s->kind == OPTSPEC_POSITIONAL ? json_null() : json_string(lng), "short",
                         shrt[0] ? json_string(shrt) : json_null(), "kind", drctl_kind_name(s->kind), "required",
                         s->required, "metavar", s->metavar ? json_string(s->metavar) : json_null(), "help",
                         s->help ? s->help : ""));
    }
    return a;
}

/* Every command at and below path[depth - 1], depth first, into out. */
static void drctl_table_json(const OptCommand **path, size_t depth, json_t *out)
{
    const OptCommand *cmd = path[depth - 1];
    const DrctlAction *act = cmd->data;
    char name[256], *usage = NULL;
    size_t usage_len = 0;
    json_t *subs = json_array();
    FILE *f = open_memstream(&usage, &usage_len);

    optspec_path_name(path + 1, depth - 1, name, sizeof(name));
    if (f) {
        optspec_usage(f, path, depth);
        fclose(f);
    }
    /* "Usage: drctl halt -r|--reason TEXT\n" -> "drctl halt -r|--reason TEXT" */
    const char *u = usage && strncmp(usage, "Usage: ", 7) == 0 ? usage + 7 : "";
    for (size_t i = 0; cmd->subs && cmd->subs[i]; i++)
        json_array_append_new(subs, json_string(cmd->subs[i]->name));
    json_array_append_new(
        out, json_pack("{s:s, s:s%, s:s, s:s, s:o, s:o, s:o, s:o}", "command", name, "usage", u,
                       strcspn(u, "\n"), "summary",
                       cmd->summary ? cmd->summary : "", "description", cmd->description ? cmd->description : "",
                       "daemon", json_boolean(act && act->where == DRCTL_NEEDS_DAEMON), "wire",
                       act && act->wire ? json_string(act->wire) : json_null(), "subcommands", subs, "options",
                       drctl_options_json(cmd)));
    free(usage);
    for (size_t i = 0; cmd->subs && cmd->subs[i] && depth < OPTSPEC_MAX_DEPTH; i++) {
        path[depth] = cmd->subs[i];
        drctl_table_json(path, depth + 1, out);
    }
}

static int drctl_help_run(const Drctl *c, const OptParse *p)
{
    const char *words[2];
    size_t n = 0, depth = 0;
    const OptCommand *path[OPTSPEC_MAX_DEPTH];

    if (optspec_get(p, "command"))
        words[n++] = optspec_string(p, "command", "");
    if (optspec_get(p, "sub-command"))
        words[n++] = optspec_string(p, "sub-command", "");
    if (!optspec_find(c->root, words, n, path, &depth)) {
        fprintf(stderr, "drctl help: unknown command '%s%s%s'; see drctl help\n", n ? words[0] : "", n > 1 ? " " : "",
                n > 1 ? words[1] : "");
        return DRCTL_EXIT_USAGE;
    }
    if (c->json) {
        json_t *cmds = json_array();
        drctl_table_json(path, depth, cmds);
        json_t *all = json_pack("{s:s, s:o, s:o}", "program", c->root->name, "global_options",
                                drctl_options_json(c->root), "commands", cmds);
        drctl_print_json(all);
        json_decref(all);
        return DRCTL_EXIT_OK;
    }
    optspec_help(stdout, path, depth);
    return DRCTL_EXIT_OK;
}

static int drctl_completion_bash_run(const Drctl *c, const OptParse *p)
{
    (void)p;
    optspec_completion_bash(stdout, c->root);
    return DRCTL_EXIT_OK;
}

const OptCommand drctl_cmd_help = {
    .name = "help",
    .summary = "show the help of drctl or of one command",
    .description = "Show the help of drctl, or of one command or sub-command (the same as drctl COMMAND "
                   "--help). With --json, the command table itself: every command and sub-command with its "
                   "usage, wire name, whether it needs the daemon, and its options.",
    .options = (const OptSpec[]){
        {.name = "command", .kind = OPTSPEC_POSITIONAL, .metavar = "COMMAND", .help = "a command"},
        {.name = "sub-command", .kind = OPTSPEC_POSITIONAL, .metavar = "SUB-COMMAND",
         .help = "one of its sub-commands"},
        {0},
    },
    .data = &(const DrctlAction){.where = DRCTL_NO_DAEMON, .run = drctl_help_run},
};

static const OptCommand drctl_cmd_completion_bash = {
    .name = "bash",
    .summary = "print a bash completion script",
    .description = "Print a bash completion script for drctl's commands, sub-commands and options, generated from "
                   "the same table as this help. Load it with: source <(drctl completion bash).",
    .data = &(const DrctlAction){.where = DRCTL_NO_DAEMON, .run = drctl_completion_bash_run},
};

const OptCommand drctl_cmd_completion = {
    .name = "completion",
    .summary = "print a shell completion script",
    .description = "Print a shell completion script generated from the command table (completion bash).",
    .subs = (const OptCommand *const[]){&drctl_cmd_completion_bash, NULL},
};
