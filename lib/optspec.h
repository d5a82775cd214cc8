/*
 * optspec: declarative command lines.
 *
 * Owns the description of a command-line program as data (a tree of commands, each with a table
 * of options) and everything derived from it: parsing argv into typed values, checking required
 * options and positionals, the usage line, the help text, and a bash completion script. It knows
 * nothing of any particular program: the application hangs its own data off OptCommand.data.
 *
 * Syntax accepted, for the options of the command being parsed and of every command above it
 * (the root's options are the program's global options, so they work before and after the command
 * name): `--name value`, `--name=value`, `-n value`, `-nvalue` (short letters, value kinds),
 * `--flag`, `-f`, flags grouped (`-jt 5s`), a long name abbreviated to any unambiguous prefix
 * (`--sock`, as getopt_long allows); `--` ends the options. The first word that is not an option selects a
 * sub-command while the current command has sub-commands; after that, words fill the
 * positionals in table order.
 *
 * Tables are NULL-terminated: options end with an entry whose name is NULL, sub-command lists end
 * with a NULL pointer. Both may be NULL when empty. Parsed values borrow argv's strings.
 * Library code: it returns negative codes with a message for the caller to print and never exits.
 */
#ifndef DRSUP_OPTSPEC_H
#define DRSUP_OPTSPEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define OPTSPEC_MAX_DEPTH 6   /* root plus nested sub-commands */
#define OPTSPEC_MAX_VALUES 48 /* distinct options and positionals set in one parse */

typedef enum OptKind {
    OPTSPEC_FLAG,       /* --name: present or not */
    OPTSPEC_STRING,     /* --name TEXT */
    OPTSPEC_INT,        /* --name N: a decimal integer within [min, max] when min < max */
    OPTSPEC_DURATION,   /* --name DURATION: 500ms, 30s, 2m, 1h, 26h (cfg_parse_duration_ms), in ms;
                           within [min, max] when min < max */
    OPTSPEC_POSITIONAL, /* a bare word, filled in table order */
} OptKind;

typedef struct OptSpec {
    const char *name;    /* long name without "--"; a positional's key */
    char short_name;     /* single letter after '-', or 0 */
    OptKind kind;
    bool required;
    bool hidden;         /* parsed, but left out of usage, help and completion */
    const char *metavar; /* the value's placeholder (TEXT, N, PATH); a positional's shown name */
    const char *help;    /* one line for the option list */
    int64_t min, max;    /* OPTSPEC_INT (the number) and OPTSPEC_DURATION (ms) bounds */
} OptSpec;

typedef struct OptCommand OptCommand;
struct OptCommand {
    const char *name;
    const char *summary;            /* one line, in the parent's command list */
    const char *description;        /* one paragraph, in this command's help */
    const OptSpec *options;         /* NULL-name terminated, or NULL */
    const OptCommand *const *subs;  /* NULL terminated, or NULL; a command with subs has no positionals */
    const char *epilogue;           /* printed as is at the end of the help, or NULL */
    const void *data;               /* the application's; optspec never reads it */
};

typedef struct OptValue {
    const OptSpec *spec;
    const OptCommand *owner; /* the command whose table has the spec */
    const char *text;        /* as typed (flags: NULL) */
    int64_t num;             /* OPTSPEC_INT: the number; OPTSPEC_DURATION: milliseconds */
} OptValue;

typedef struct OptParse {
    const OptCommand *path[OPTSPEC_MAX_DEPTH]; /* path[0] is the root; path[depth - 1] the command */
    size_t depth;
    OptValue values[OPTSPEC_MAX_VALUES];
    size_t n_values;
    size_t n_positionals; /* positionals filled for path[depth - 1] */
} OptParse;

/*
 * Check a table (a programmer's mistake, not an operator's): unique names, no option of a command
 * that reuses a long name or a short letter of a command above it, positionals only on commands
 * without sub-commands and no required positional after an optional one, metavars on value kinds.
 * 0, or DR_EINTERNAL with what is wrong in err.
 */
int optspec_validate(const OptCommand *root, char *err, size_t errlen);

/*
 * Parse argv[1..argc-1] (argv[0] is ignored; the root's name is used in messages). On success
 * returns 0; does not check required options (so --help can be honoured first: see optspec_check).
 * On failure returns DR_EBADARG (unknown option or command, missing or malformed value, a word
 * with nowhere to go) or DR_ETOOBIG, with a message in err naming the command ("drctl halt:
 * unknown option '--x'"); ret->path holds the commands resolved so far, so the caller can print
 * the usage of the command the error is about.
 */
int optspec_parse(const OptCommand *root, int argc, char *const *argv, OptParse *ret, char *err, size_t errlen);

/* After a successful parse: a command with sub-commands was named without one, or a required
 * option or positional is missing. 0 or DR_EBADARG with a message in err. */
int optspec_check(const OptParse *p, char *err, size_t errlen);

/* The command parsed (the deepest one named). */
const OptCommand *optspec_command(const OptParse *p);
/* The value of an option or positional by its name (any command on the path), or NULL if unset. */
const OptValue *optspec_get(const OptParse *p, const char *name);
bool optspec_flag(const OptParse *p, const char *name);
const char *optspec_string(const OptParse *p, const char *name, const char *def);
int64_t optspec_int(const OptParse *p, const char *name, int64_t def);

/*
 * Follow words (sub-command names) from root; NULL when a word names no sub-command. Fills
 * ret_path (OPTSPEC_MAX_DEPTH entries) and *ret_depth when given.
 */
const OptCommand *optspec_find(const OptCommand *root, const char *const *words, size_t n,
                               const OptCommand **ret_path, size_t *ret_depth);

/* "drctl backup now" for a path; writes at most n bytes. */
void optspec_path_name(const OptCommand *const *path, size_t depth, char *out, size_t n);

/*
 * The usage line, "Usage: drctl halt -r|--reason TEXT" (options in table order, optional ones in
 * brackets; a command with sub-commands ends in COMMAND; the root shows [OPTIONS]).
 */
void optspec_usage(FILE *out, const OptCommand *const *path, size_t depth);
/* The arguments part of the usage line alone ("-r|--reason TEXT"; for sub-commands "COMMAND"). */
void optspec_args_synopsis(const OptCommand *cmd, char *out, size_t n);

/*
 * Full help: usage, the description as a wrapped paragraph, the sub-commands (leaves listed with
 * their full names and synopsis, for example "backup now [--wait]"), the command's options, then
 * the root's options (under "Global options:" when the command is not the root), and the epilogue.
 */
void optspec_help(FILE *out, const OptCommand *const *path, size_t depth);

/*
 * A bash completion script for the tree: a function _<root name> that completes sub-command names,
 * the options of the command typed so far and the global options, and file names after an option
 * that takes a value; registered with `complete -F`.
 */
void optspec_completion_bash(FILE *out, const OptCommand *root);

#endif
