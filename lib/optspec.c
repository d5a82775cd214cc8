/*
 * optspec: declarative command lines (see optspec.h).
 *
 * Owns the parser (argv to typed values against a command tree), the completeness check, and the
 * texts derived from the same tree: usage line, help, bash completion. Parsing and checking write
 * one message into the caller's buffer and return a code; nothing here exits or logs.
 */
#include "optspec.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "cfgtree.h"
#include "err.h"

#define OPTSPEC_WRAP 78  /* help paragraph width */
#define OPTSPEC_LEFT 36  /* column of the summary in command lists */
#define OPTSPEC_OPTCOL 26 /* column of the help in option lists */

static void optspec_fmt(char *out, size_t n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void optspec_fmt(char *out, size_t n, const char *fmt, ...)
{
    va_list ap;
    if (!out || n == 0)
        return;
    va_start(ap, fmt);
    vsnprintf(out, n, fmt, ap);
    va_end(ap);
}

static size_t optspec_count_options(const OptCommand *cmd)
{
    size_t n = 0;
    while (cmd->options && cmd->options[n].name)
        n++;
    return n;
}

static size_t optspec_count_subs(const OptCommand *cmd)
{
    size_t n = 0;
    while (cmd->subs && cmd->subs[n])
        n++;
    return n;
}

static bool optspec_takes_value(const OptSpec *s)
{
    return s->kind == OPTSPEC_STRING || s->kind == OPTSPEC_INT || s->kind == OPTSPEC_DURATION;
}

static bool optspec_name_ok(const char *name)
{
    if (!name || !name[0] || name[0] == '-')
        return false;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' || *c == '_'))
            return false;
    return true;
}

void optspec_path_name(const OptCommand *const *path, size_t depth, char *out, size_t n)
{
    size_t len = 0;
    if (n == 0)
        return;
    out[0] = '\0';
    for (size_t i = 0; i < depth; i++) {
        int w = snprintf(out + len, n - len, "%s%s", i ? " " : "", path[i]->name);
        if (w < 0 || (size_t)w >= n - len)
            return;
        len += (size_t)w;
    }
}

/* ---- table check ---- */

static int optspec_validate_cmd(const OptCommand *const *path, size_t depth, char *err, size_t errlen)
{
    const OptCommand *cmd = path[depth - 1];
    char where[256];
    size_t n_opts = optspec_count_options(cmd), n_subs = optspec_count_subs(cmd);
    bool optional_positional = false;

    optspec_path_name(path, depth, where, sizeof(where));
    if (!optspec_name_ok(cmd->name)) {
        optspec_fmt(err, errlen, "%s: bad command name", where);
        return DR_EINTERNAL;
    }
    for (size_t i = 0; i < n_opts; i++) {
        const OptSpec *s = &cmd->options[i];
        if (!optspec_name_ok(s->name) || (s->short_name && !((s->short_name >= 'a' && s->short_name <= 'z') ||
                                                             (s->short_name >= 'A' && s->short_name <= 'Z') ||
                                                             (s->short_name >= '0' && s->short_name <= '9')))) {
            optspec_fmt(err, errlen, "%s: bad option name '%s'", where, s->name ? s->name : "(null)");
            return DR_EINTERNAL;
        }
        if ((optspec_takes_value(s) || s->kind == OPTSPEC_POSITIONAL) && !s->metavar) {
            optspec_fmt(err, errlen, "%s: option '%s' needs a metavar", where, s->name);
            return DR_EINTERNAL;
        }
        if (s->kind == OPTSPEC_POSITIONAL) {
            if (n_subs) {
                optspec_fmt(err, errlen, "%s: positional '%s' on a command with sub-commands", where, s->name);
                return DR_EINTERNAL;
            }
            if (s->short_name) {
                optspec_fmt(err, errlen, "%s: positional '%s' has a short letter", where, s->name);
                return DR_EINTERNAL;
            }
            if (s->required && optional_positional) {
                optspec_fmt(err, errlen, "%s: required positional '%s' after an optional one", where, s->name);
                return DR_EINTERNAL;
            }
            optional_positional |= !s->required;
        }
        /* Names are unique along the path: values are looked up by name, short letters by letter. */
        for (size_t d = 0; d < depth; d++) {
            const OptCommand *up = path[d];
            for (size_t j = 0; up->options && up->options[j].name; j++) {
                const OptSpec *o = &up->options[j];
                if (o == s)
                    break;
                if (strcmp(o->name, s->name) == 0 || (s->short_name && o->short_name == s->short_name)) {
                    optspec_fmt(err, errlen, "%s: option '%s' clashes with '%s' of '%s'", where, s->name, o->name,
                                up->name);
                    return DR_EINTERNAL;
                }
            }
        }
    }
    if (n_subs && depth >= OPTSPEC_MAX_DEPTH) {
        optspec_fmt(err, errlen, "%s: nested deeper than %d", where, OPTSPEC_MAX_DEPTH);
        return DR_EINTERNAL;
    }
    for (size_t i = 0; i < n_subs; i++) {
        for (size_t j = 0; j < i; j++)
            if (strcmp(cmd->subs[i]->name, cmd->subs[j]->name) == 0) {
                optspec_fmt(err, errlen, "%s: sub-command '%s' twice", where, cmd->subs[i]->name);
                return DR_EINTERNAL;
            }
        const OptCommand *sub_path[OPTSPEC_MAX_DEPTH];
        memcpy(sub_path, path, depth * sizeof(path[0]));
        sub_path[depth] = cmd->subs[i];
        int r = optspec_validate_cmd(sub_path, depth + 1, err, errlen);
        if (r < 0)
            return r;
    }
    return 0;
}

int optspec_validate(const OptCommand *root, char *err, size_t errlen)
{
    const OptCommand *path[OPTSPEC_MAX_DEPTH] = {root};
    return optspec_validate_cmd(path, 1, err, errlen);
}

/* ---- parsing ---- */

static const OptValue *optspec_find_value(const OptParse *p, const OptSpec *spec)
{
    for (size_t i = 0; i < p->n_values; i++)
        if (p->values[i].spec == spec)
            return &p->values[i];
    return NULL;
}

static int optspec_set(OptParse *p, const OptSpec *spec, const OptCommand *owner, const char *text, int64_t num)
{
    OptValue *v = NULL;
    for (size_t i = 0; i < p->n_values && !v; i++)
        if (p->values[i].spec == spec)
            v = &p->values[i];
    if (!v) {
        if (p->n_values >= OPTSPEC_MAX_VALUES)
            return DR_ETOOBIG;
        v = &p->values[p->n_values++];
    }
    *v = (OptValue){.spec = spec, .owner = owner, .text = text, .num = num};
    return 0;
}

/* The spec for a long name (len bytes of name) or a short letter, searching from the command up. */
static const OptSpec *optspec_lookup(const OptParse *p, const char *name, size_t len, char letter,
                                     const OptCommand **ret_owner)
{
    for (size_t d = p->depth; d-- > 0;) {
        const OptCommand *c = p->path[d];
        for (size_t i = 0; c->options && c->options[i].name; i++) {
            const OptSpec *s = &c->options[i];
            if (s->kind == OPTSPEC_POSITIONAL)
                continue;
            if (letter ? s->short_name == letter : strlen(s->name) == len && strncmp(s->name, name, len) == 0) {
                *ret_owner = c;
                return s;
            }
        }
    }
    return NULL;
}

static void optspec_spelling(const OptSpec *s, bool as_short, char *out, size_t n)
{
    if (as_short)
        snprintf(out, n, "-%c", s->short_name);
    else
        snprintf(out, n, "--%s", s->name);
}

static int optspec_convert(const char *where, const OptSpec *s, const char *spelled, const char *text,
                           int64_t *ret_num, char *err, size_t errlen)
{
    bool bounded = s->min < s->max;
    char lo[40], hi[40];

    *ret_num = 0;
    if (s->kind == OPTSPEC_INT) {
        char *end = NULL;
        errno = 0;
        long long v = strtoll(text, &end, 10);
        if (errno || !end || end == text || *end) {
            optspec_fmt(err, errlen, "%s: %s needs a whole number, not '%s'", where, spelled, text);
            return DR_EBADARG;
        }
        if (bounded && (v < s->min || v > s->max)) {
            optspec_fmt(err, errlen, "%s: %s needs a number from %" PRId64 " to %" PRId64 ", not '%s'", where,
                        spelled, s->min, s->max, text);
            return DR_EBADARG;
        }
        *ret_num = (int64_t)v;
    } else if (s->kind == OPTSPEC_DURATION) {
        uint64_t ms = 0;
        if (cfg_parse_duration_ms(text, &ms) < 0 || ms > INT64_MAX) {
            optspec_fmt(err, errlen, "%s: %s needs a duration such as 500ms, 30s, 2m or 1h, not '%s'", where,
                        spelled, text);
            return DR_EBADARG;
        }
        if (bounded && ((int64_t)ms < s->min || (int64_t)ms > s->max)) {
            cfg_format_duration((uint64_t)s->min, lo, sizeof(lo));
            cfg_format_duration((uint64_t)s->max, hi, sizeof(hi));
            if (s->max == INT64_MAX)
                optspec_fmt(err, errlen, "%s: %s needs a duration of at least %s, not '%s'", where, spelled, lo,
                            text);
            else
                optspec_fmt(err, errlen, "%s: %s needs a duration from %s to %s, not '%s'", where, spelled, lo, hi,
                            text);
            return DR_EBADARG;
        }
        *ret_num = (int64_t)ms;
    }
    return 0;
}

/* A long name typed in full, else the one option it abbreviates (as getopt_long allows). */
static const OptSpec *optspec_lookup_long(const OptParse *p, const char *name, size_t len, const OptCommand **ret_owner,
                                          const char *where, const char *arg, char *err, size_t errlen)
{
    const OptSpec *s = optspec_lookup(p, name, len, 0, ret_owner), *found = NULL;
    char cands[256] = "";
    size_t n = 0, cl = 0;

    if (s)
        return s;
    for (size_t d = p->depth; len > 0 && d-- > 0;) {
        const OptCommand *c = p->path[d];
        for (size_t i = 0; c->options && c->options[i].name; i++) {
            const OptSpec *o = &c->options[i];
            if (o->kind == OPTSPEC_POSITIONAL || o->hidden || strncmp(o->name, name, len) != 0)
                continue;
            if (n++ == 0) {
                found = o;
                *ret_owner = c;
            }
            int w = snprintf(cands + cl, sizeof(cands) - cl, "%s--%s", cl ? ", " : "", o->name);
            if (w > 0 && (size_t)w < sizeof(cands) - cl)
                cl += (size_t)w;
        }
    }
    if (n == 1)
        return found;
    if (n > 1)
        optspec_fmt(err, errlen, "%s: ambiguous option '%s' (%s)", where, arg, cands);
    else
        optspec_fmt(err, errlen, "%s: unknown option '%s'", where, arg);
    return NULL;
}

static int optspec_option(OptParse *p, int argc, char *const *argv, int *i, char *err, size_t errlen)
{
    const char *arg = argv[*i];
    const char *value = NULL;
    const OptCommand *owner = NULL;
    const OptSpec *s;
    char where[256], spelled[80];
    bool as_short = arg[1] != '-';
    int64_t num;

    optspec_path_name(p->path, p->depth, where, sizeof(where));
    if (as_short) {
        /* -j, -ovalue, and flags grouped as in -jt 5s */
        for (const char *q = arg + 1;; q++) {
            s = optspec_lookup(p, NULL, 0, *q, &owner);
            if (!s) {
                if (q == arg + 1 && !q[1])
                    optspec_fmt(err, errlen, "%s: unknown option '%s'", where, arg);
                else
                    optspec_fmt(err, errlen, "%s: unknown option '-%c' (in '%s')", where, *q, arg);
                return DR_EBADARG;
            }
            if (s->kind != OPTSPEC_FLAG) {
                value = q[1] ? q + 1 : NULL;
                break;
            }
            int r = optspec_set(p, s, owner, NULL, 1);
            if (r < 0 || !q[1])
                return r;
        }
    } else {
        const char *name = arg + 2, *eq = strchr(name, '=');
        s = optspec_lookup_long(p, name, eq ? (size_t)(eq - name) : strlen(name), &owner, where, arg, err, errlen);
        if (!s)
            return DR_EBADARG;
        if (eq)
            value = eq + 1;
    }
    optspec_spelling(s, as_short, spelled, sizeof(spelled));
    if (s->kind == OPTSPEC_FLAG) {
        if (value) {
            optspec_fmt(err, errlen, "%s: %s takes no value ('%s')", where, spelled, arg);
            return DR_EBADARG;
        }
        return optspec_set(p, s, owner, NULL, 1);
    }
    if (!value) {
        if (*i + 1 >= argc) {
            optspec_fmt(err, errlen, "%s: %s needs a value (%s)", where, spelled, s->metavar);
            return DR_EBADARG;
        }
        value = argv[++*i];
    }
    int r = optspec_convert(where, s, spelled, value, &num, err, errlen);
    return r < 0 ? r : optspec_set(p, s, owner, value, num);
}

static int optspec_word(OptParse *p, const char *word, char *err, size_t errlen)
{
    const OptCommand *cmd = p->path[p->depth - 1];
    char where[256];

    optspec_path_name(p->path, p->depth, where, sizeof(where));
    if (optspec_count_subs(cmd)) {
        for (size_t i = 0; cmd->subs[i]; i++) {
            if (strcmp(cmd->subs[i]->name, word) == 0) {
                if (p->depth >= OPTSPEC_MAX_DEPTH)
                    return DR_ETOOBIG;
                p->path[p->depth++] = cmd->subs[i];
                p->n_positionals = 0;
                return 0;
            }
        }
        optspec_fmt(err, errlen, "%s: unknown command '%s'", where, word);
        return DR_EBADARG;
    }
    size_t seen = 0;
    for (size_t i = 0; cmd->options && cmd->options[i].name; i++) {
        const OptSpec *s = &cmd->options[i];
        if (s->kind != OPTSPEC_POSITIONAL)
            continue;
        if (seen++ == p->n_positionals) {
            p->n_positionals++;
            return optspec_set(p, s, cmd, word, 0);
        }
    }
    optspec_fmt(err, errlen, "%s: unexpected argument '%s'", where, word);
    return DR_EBADARG;
}

int optspec_parse(const OptCommand *root, int argc, char *const *argv, OptParse *ret, char *err, size_t errlen)
{
    bool options_done = false;

    memset(ret, 0, sizeof(*ret));
    ret->path[0] = root;
    ret->depth = 1;
    if (err && errlen)
        err[0] = '\0';
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int r;
        if (!options_done && strcmp(a, "--") == 0) {
            options_done = true;
            continue;
        }
        if (!options_done && a[0] == '-' && a[1] != '\0')
            r = optspec_option(ret, argc, argv, &i, err, errlen);
        else
            r = optspec_word(ret, a, err, errlen);
        if (r == DR_ETOOBIG)
            optspec_fmt(err, errlen, "%s: too many arguments", root->name);
        if (r < 0)
            return r;
    }
    return 0;
}

static void optspec_spec_synopsis(const OptSpec *s, char *out, size_t n)
{
    if (s->kind == OPTSPEC_POSITIONAL)
        snprintf(out, n, "%s", s->metavar);
    else if (s->short_name)
        snprintf(out, n, "-%c|--%s%s%s", s->short_name, s->name, s->metavar && optspec_takes_value(s) ? " " : "",
                 optspec_takes_value(s) ? s->metavar : "");
    else
        snprintf(out, n, "--%s%s%s", s->name, optspec_takes_value(s) ? " " : "",
                 optspec_takes_value(s) ? s->metavar : "");
}

int optspec_check(const OptParse *p, char *err, size_t errlen)
{
    const OptCommand *cmd = optspec_command(p);
    char where[256], what[128];

    optspec_path_name(p->path, p->depth, where, sizeof(where));
    if (optspec_count_subs(cmd)) {
        char list[512] = "";
        size_t len = 0;
        for (size_t i = 0; cmd->subs[i] && len < sizeof(list); i++) {
            int w = snprintf(list + len, sizeof(list) - len, "%s%s", i ? ", " : "", cmd->subs[i]->name);
            if (w < 0)
                break;
            len += (size_t)w;
        }
        optspec_fmt(err, errlen, "%s: a command is required (%s)", where, list);
        return DR_EBADARG;
    }
    for (size_t d = 0; d < p->depth; d++) {
        const OptCommand *c = p->path[d];
        for (size_t i = 0; c->options && c->options[i].name; i++) {
            const OptSpec *s = &c->options[i];
            if (s->required && !optspec_find_value(p, s)) {
                if (s->kind == OPTSPEC_POSITIONAL)
                    snprintf(what, sizeof(what), "%s", s->metavar);
                else
                    snprintf(what, sizeof(what), "--%s%s%s", s->name, optspec_takes_value(s) ? " " : "",
                             optspec_takes_value(s) ? s->metavar : "");
                optspec_fmt(err, errlen, "%s: %s is required%s%s", where, what, s->help ? ": " : "",
                            s->help ? s->help : "");
                return DR_EBADARG;
            }
        }
    }
    return 0;
}

const OptCommand *optspec_command(const OptParse *p)
{
    return p->path[p->depth - 1];
}

const OptValue *optspec_get(const OptParse *p, const char *name)
{
    for (size_t i = 0; i < p->n_values; i++)
        if (strcmp(p->values[i].spec->name, name) == 0)
            return &p->values[i];
    return NULL;
}

bool optspec_flag(const OptParse *p, const char *name)
{
    return optspec_get(p, name) != NULL;
}

const char *optspec_string(const OptParse *p, const char *name, const char *def)
{
    const OptValue *v = optspec_get(p, name);
    return v && v->text ? v->text : def;
}

int64_t optspec_int(const OptParse *p, const char *name, int64_t def)
{
    const OptValue *v = optspec_get(p, name);
    return v ? v->num : def;
}

const OptCommand *optspec_find(const OptCommand *root, const char *const *words, size_t n,
                               const OptCommand **ret_path, size_t *ret_depth)
{
    const OptCommand *cmd = root;
    size_t depth = 1;

    if (ret_path)
        ret_path[0] = root;
    for (size_t w = 0; w < n; w++) {
        const OptCommand *next = NULL;
        for (size_t i = 0; cmd->subs && cmd->subs[i]; i++)
            if (strcmp(cmd->subs[i]->name, words[w]) == 0)
                next = cmd->subs[i];
        if (!next || depth >= OPTSPEC_MAX_DEPTH)
            return NULL;
        cmd = next;
        if (ret_path)
            ret_path[depth] = cmd;
        depth++;
    }
    if (ret_depth)
        *ret_depth = depth;
    return cmd;
}

/* ---- texts ---- */

void optspec_args_synopsis(const OptCommand *cmd, char *out, size_t n)
{
    size_t len = 0;
    char one[128];

    if (n == 0)
        return;
    out[0] = '\0';
    if (optspec_count_subs(cmd)) {
        snprintf(out, n, "COMMAND");
        return;
    }
    for (size_t i = 0; cmd->options && cmd->options[i].name; i++) {
        const OptSpec *s = &cmd->options[i];
        if (s->hidden)
            continue;
        optspec_spec_synopsis(s, one, sizeof(one));
        int w = snprintf(out + len, n - len, "%s%s%s%s", len ? " " : "", s->required ? "" : "[", one,
                         s->required ? "" : "]");
        if (w < 0 || (size_t)w >= n - len)
            return;
        len += (size_t)w;
    }
}

void optspec_usage(FILE *out, const OptCommand *const *path, size_t depth)
{
    char name[256], args[512];
    const OptCommand *cmd = path[depth - 1];

    optspec_path_name(path, depth, name, sizeof(name));
    if (depth == 1 && optspec_count_subs(cmd)) {
        fprintf(out, "Usage: %s%s COMMAND [ARGS]\n", name, optspec_count_options(cmd) ? " [OPTIONS]" : "");
        return;
    }
    optspec_args_synopsis(cmd, args, sizeof(args));
    fprintf(out, "Usage: %s%s%s\n", name, args[0] ? " " : "", args);
}

static void optspec_wrap(FILE *out, const char *text, size_t indent, size_t width)
{
    size_t col = 0;
    const char *p = text;

    while (*p) {
        while (*p == ' ' || *p == '\n')
            p++;
        if (!*p)
            break;
        size_t wl = strcspn(p, " \n");
        if (col > 0 && col + 1 + wl > width) {
            fputc('\n', out);
            col = 0;
        }
        if (col == 0) {
            fprintf(out, "%*s", (int)indent, "");
            col = indent;
        } else {
            fputc(' ', out);
            col++;
        }
        fwrite(p, 1, wl, out);
        col += wl;
        p += wl;
    }
    if (col)
        fputc('\n', out);
}

/* Leaves below cmd, named relative to it ("backup now"), with synopsis and summary. */
static void optspec_list_commands(FILE *out, const OptCommand *cmd, const char *prefix)
{
    char left[800], name[256], args[512];

    for (size_t i = 0; cmd->subs && cmd->subs[i]; i++) {
        const OptCommand *s = cmd->subs[i];
        snprintf(name, sizeof(name), "%s%s%s", prefix, prefix[0] ? " " : "", s->name);
        if (optspec_count_subs(s)) {
            optspec_list_commands(out, s, name);
            continue;
        }
        optspec_args_synopsis(s, args, sizeof(args));
        snprintf(left, sizeof(left), "%s%s%s", name, args[0] ? " " : "", args);
        if (strlen(left) > OPTSPEC_LEFT)
            fprintf(out, "  %s\n  %-*s %s\n", left, OPTSPEC_LEFT, "", s->summary ? s->summary : "");
        else
            fprintf(out, "  %-*s %s\n", OPTSPEC_LEFT, left, s->summary ? s->summary : "");
    }
}

static void optspec_list_options(FILE *out, const OptCommand *cmd, bool positionals)
{
    char left[160];

    for (size_t i = 0; cmd->options && cmd->options[i].name; i++) {
        const OptSpec *s = &cmd->options[i];
        if (s->hidden || (s->kind == OPTSPEC_POSITIONAL) != positionals)
            continue;
        if (positionals)
            snprintf(left, sizeof(left), "%s", s->metavar);
        else if (s->short_name)
            snprintf(left, sizeof(left), "-%c, --%s%s%s", s->short_name, s->name, optspec_takes_value(s) ? " " : "",
                     optspec_takes_value(s) ? s->metavar : "");
        else
            snprintf(left, sizeof(left), "    --%s%s%s", s->name, optspec_takes_value(s) ? " " : "",
                     optspec_takes_value(s) ? s->metavar : "");
        const char *req = s->required ? " (required)" : "";
        if (strlen(left) + 2 > OPTSPEC_OPTCOL)
            fprintf(out, "  %s\n  %-*s %s%s\n", left, OPTSPEC_OPTCOL - 2, "", s->help ? s->help : "", req);
        else
            fprintf(out, "  %-*s %s%s\n", OPTSPEC_OPTCOL - 2, left, s->help ? s->help : "", req);
    }
}

static bool optspec_has_visible(const OptCommand *cmd, bool positionals)
{
    for (size_t i = 0; cmd->options && cmd->options[i].name; i++)
        if (!cmd->options[i].hidden && (cmd->options[i].kind == OPTSPEC_POSITIONAL) == positionals)
            return true;
    return false;
}

void optspec_help(FILE *out, const OptCommand *const *path, size_t depth)
{
    const OptCommand *cmd = path[depth - 1];

    optspec_usage(out, path, depth);
    if (cmd->description && cmd->description[0]) {
        fputc('\n', out);
        optspec_wrap(out, cmd->description, 0, OPTSPEC_WRAP);
    } else if (cmd->summary) {
        fprintf(out, "\n%s\n", cmd->summary);
    }
    if (optspec_count_subs(cmd)) {
        fprintf(out, "\nCommands:\n");
        optspec_list_commands(out, cmd, depth == 1 ? "" : cmd->name);
    }
    if (optspec_has_visible(cmd, true)) {
        fprintf(out, "\nArguments:\n");
        optspec_list_options(out, cmd, true);
    }
    for (size_t d = depth - 1; d > 0; d--) {
        if (!optspec_has_visible(path[d], false))
            continue;
        fprintf(out, d == depth - 1 ? "\nOptions:\n" : "\nOptions of '%s':\n", path[d]->name);
        optspec_list_options(out, path[d], false);
    }
    if (optspec_has_visible(path[0], false)) {
        fprintf(out, depth == 1 ? "\nOptions:\n" : "\nGlobal options (before or after the command):\n");
        optspec_list_options(out, path[0], false);
    }
    if (cmd->epilogue)
        fprintf(out, "\n%s", cmd->epilogue);
    else if (depth > 1 && path[0]->epilogue)
        fprintf(out, "\n%s", path[0]->epilogue);
}

/* ---- bash completion ---- */

typedef enum OptspecCompList { OPTSPEC_COMP_SUBS, OPTSPEC_COMP_OPTS, OPTSPEC_COMP_VALUED } OptspecCompList;

/* One `case` arm per command in the tree: its path relative to the root, then the words. */
static void optspec_comp_arms(FILE *out, const OptCommand *const *path, size_t depth, OptspecCompList what)
{
    const OptCommand *cmd = path[depth - 1];
    char name[256];

    optspec_path_name(path + 1, depth - 1, name, sizeof(name));
    fprintf(out, "    \"%s\") _r=\"", name);
    bool first = true;
    if (what == OPTSPEC_COMP_SUBS) {
        for (size_t i = 0; cmd->subs && cmd->subs[i]; i++) {
            fprintf(out, "%s%s", first ? "" : " ", cmd->subs[i]->name);
            first = false;
        }
    } else {
        for (size_t d = depth; d-- > 0;) {
            for (size_t i = 0; path[d]->options && path[d]->options[i].name; i++) {
                const OptSpec *s = &path[d]->options[i];
                if (s->hidden || s->kind == OPTSPEC_POSITIONAL ||
                    (what == OPTSPEC_COMP_VALUED && !optspec_takes_value(s)))
                    continue;
                fprintf(out, "%s--%s", first ? "" : " ", s->name);
                if (s->short_name)
                    fprintf(out, " -%c", s->short_name);
                first = false;
            }
        }
    }
    fprintf(out, "\" ;;\n");
    for (size_t i = 0; cmd->subs && cmd->subs[i] && depth < OPTSPEC_MAX_DEPTH; i++) {
        const OptCommand *sub_path[OPTSPEC_MAX_DEPTH];
        memcpy(sub_path, path, depth * sizeof(path[0]));
        sub_path[depth] = cmd->subs[i];
        optspec_comp_arms(out, sub_path, depth + 1, what);
    }
}

void optspec_completion_bash(FILE *out, const OptCommand *root)
{
    static const char *const lists[] = {"subs", "opts", "valued"};
    static const OptspecCompList kinds[] = {OPTSPEC_COMP_SUBS, OPTSPEC_COMP_OPTS, OPTSPEC_COMP_VALUED};
    const OptCommand *path[OPTSPEC_MAX_DEPTH] = {root};
    char fn[128];
    size_t i;

    snprintf(fn, sizeof(fn), "_%s", root->name);
    for (i = 0; fn[i]; i++)
        if (fn[i] == '-')
            fn[i] = '_';
    fprintf(out,
            "# bash completion for %s, generated from its command table by '%s completion bash'.\n"
            "# Load it with: source <(%s completion bash)\n",
            root->name, root->name, root->name);
    for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        fprintf(out, "%s_%s() {\n    case \"$1\" in\n", fn, lists[i]);
        optspec_comp_arms(out, path, 1, kinds[i]);
        fprintf(out, "    *) _r=\"\" ;;\n    esac\n}\n");
    }
    fprintf(out,
            "%s() {\n"
            "    local cur=\"${COMP_WORDS[COMP_CWORD]}\" path=\"\" word i skip=0 _r\n"
            "    COMPREPLY=()\n"
            "    for ((i = 1; i < COMP_CWORD; i++)); do\n"
            "        word=\"${COMP_WORDS[i]}\"\n"
            "        if ((skip)); then skip=0; continue; fi\n"
            "        case \"$word\" in\n"
            "        --) ;;\n"
            "        --*=*) ;;\n"
            "        -*) %s_valued \"$path\"\n"
            "            case \" $_r \" in *\" $word \"*) skip=1 ;; esac ;;\n"
            "        *) %s_subs \"$path\"\n"
            "            case \" $_r \" in *\" $word \"*) path=\"${path:+$path }$word\" ;; esac ;;\n"
            "        esac\n"
            "    done\n"
            "    if ((skip)); then\n"
            "        COMPREPLY=($(compgen -f -- \"$cur\"))\n"
            "    elif [[ \"$cur\" == -* ]]; then\n"
            "        %s_opts \"$path\"\n"
            "        COMPREPLY=($(compgen -W \"$_r\" -- \"$cur\"))\n"
            "    else\n"
            "        %s_subs \"$path\"\n"
            "        COMPREPLY=($(compgen -W \"$_r\" -- \"$cur\"))\n"
            "    fi\n"
            "    return 0\n"
            "}\n"
            "complete -F %s %s\n",
            fn, fn, fn, fn, fn, fn, root->name);
}
