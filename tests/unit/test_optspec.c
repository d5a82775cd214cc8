/*
 * Unit tests for lib/optspec: every option kind, the three spellings of a value, global options
 * before and after the command, nested sub-commands, `--`, each parse and check error with the
 * command it names, the table check, and the texts (usage, help, bash completion) naming every
 * option and sub-command of the table.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "optspec.h"

static const OptCommand cmd_run = {
    .name = "run",
    .summary = "run a job",
    .description = "Run a job now, and wait for it when asked to.",
    .options = (const OptSpec[]){
        {.name = "job", .kind = OPTSPEC_POSITIONAL, .required = true, .metavar = "JOB", .help = "the job"},
        {.name = "extra", .kind = OPTSPEC_POSITIONAL, .metavar = "EXTRA", .help = "more"},
        {.name = "reason", .short_name = 'r', .kind = OPTSPEC_STRING, .required = true, .metavar = "TEXT",
         .help = "why"},
        {.name = "dry-run", .kind = OPTSPEC_FLAG, .help = "change nothing"},
        {.name = "count", .short_name = 'n', .kind = OPTSPEC_INT, .metavar = "N", .min = 1, .max = 100,
         .help = "how many"},
        {.name = "offset", .kind = OPTSPEC_INT, .metavar = "K", .help = "any number"},
        {.name = "every", .kind = OPTSPEC_DURATION, .metavar = "DURATION", .help = "how often"},
        {.name = "secret", .kind = OPTSPEC_FLAG, .hidden = true, .help = "not shown"},
        {0},
    },
};

static const OptCommand cmd_now = {
    .name = "now",
    .summary = "take one now",
    .options = (const OptSpec[]){{.name = "wait", .kind = OPTSPEC_FLAG, .help = "until done"}, {0}},
};

static const OptCommand cmd_decrypt = {
    .name = "decrypt",
    .summary = "decrypt a file",
    .options = (const OptSpec[]){
        {.name = "file", .kind = OPTSPEC_POSITIONAL, .required = true, .metavar = "FILE", .help = "input"},
        {.name = "output", .short_name = 'o', .kind = OPTSPEC_STRING, .metavar = "OUT", .help = "output"},
        {0},
    },
};

static const OptCommand cmd_backup = {
    .name = "backup",
    .summary = "backups",
    .description = "Backups: take one or decrypt one.",
    .subs = (const OptCommand *const[]){&cmd_now, &cmd_decrypt, NULL},
};

static const OptCommand cmd_status = {.name = "status", .summary = "health"};

static const OptCommand root = {
    .name = "tool",
    .summary = "a tool",
    .description = "Does things.",
    .options = (const OptSpec[]){
        {.name = "json", .short_name = 'j', .kind = OPTSPEC_FLAG, .help = "JSON output"},
        {.name = "timeout", .short_name = 't', .kind = OPTSPEC_DURATION, .metavar = "DUR", .min = 1,
         .max = INT64_MAX, .help = "wait this long"},
        {.name = "socket", .short_name = 's', .kind = OPTSPEC_STRING, .metavar = "PATH", .help = "where"},
        {0},
    },
    .subs = (const OptCommand *const[]){&cmd_status, &cmd_run, &cmd_backup, NULL},
    .epilogue = "Exit status: 0 ok.\n",
};

static char errbuf[512];

static int parse(OptParse *p, const char *const *words)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)(uintptr_t) "tool";
    while (*words)
        argv[argc++] = (char *)(uintptr_t)*words++;
    argv[argc] = NULL;
    return optspec_parse(&root, argc, argv, p, errbuf, sizeof(errbuf));
}

#define PARSE_OK(p, ...)                                                                                          \
    do {                                                                                                          \
        static const char *const w_[] = {__VA_ARGS__, NULL};                                                      \
        int r_ = parse((p), w_);                                                                                  \
        if (r_ != 0)                                                                                              \
            fail_msg("parse failed: %s", errbuf);                                                                 \
    } while (0)

#define PARSE_FAILS(p, needle, ...)                                                                               \
    do {                                                                                                          \
        static const char *const w_[] = {__VA_ARGS__, NULL};                                                      \
        assert_int_equal(parse((p), w_), DR_EBADARG);                                                             \
        if (!strstr(errbuf, (needle)))                                                                            \
            fail_msg("message '%s' lacks '%s'", errbuf, (needle));                                                \
    } while (0)

static char *capture(void (*fn)(FILE *, const OptCommand *const *, size_t), const OptCommand *const *path,
                     size_t depth)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    assert_non_null(f);
    fn(f, path, depth);
    fclose(f);
    return buf;
}

static void test_table_is_valid(void **state)
{
    (void)state;
    assert_int_equal(optspec_validate(&root, errbuf, sizeof(errbuf)), 0);
}

static void test_kinds_and_spellings(void **state)
{
    OptParse p;
    (void)state;
    PARSE_OK(&p, "run", "nightly", "--reason", "because", "--dry-run", "--count=7", "--offset", "-3", "--every",
             "26h");
    assert_int_equal(optspec_check(&p, errbuf, sizeof(errbuf)), 0);
    assert_ptr_equal(optspec_command(&p), &cmd_run);
    assert_string_equal(optspec_string(&p, "job", NULL), "nightly");
    assert_null(optspec_get(&p, "extra"));
    assert_string_equal(optspec_string(&p, "reason", NULL), "because");
    assert_true(optspec_flag(&p, "dry-run"));
    assert_false(optspec_flag(&p, "secret"));
    assert_int_equal(optspec_int(&p, "count", 0), 7);
    assert_int_equal(optspec_int(&p, "offset", 0), -3);
    assert_int_equal(optspec_int(&p, "every", 0), 26 * 3600 * 1000);
    assert_ptr_equal(optspec_get(&p, "reason")->owner, &cmd_run);

    /* -x value, -xvalue, --x=value, the second positional, and a hidden flag */
    PARSE_OK(&p, "run", "-r", "short form", "a", "b", "-n5", "--every=500ms", "--secret");
    assert_string_equal(optspec_string(&p, "reason", NULL), "short form");
    assert_string_equal(optspec_string(&p, "extra", NULL), "b");
    assert_int_equal(optspec_int(&p, "count", 0), 5);
    assert_int_equal(optspec_int(&p, "every", 0), 500);
    assert_true(optspec_flag(&p, "secret"));
    PARSE_OK(&p, "run", "--reason=a=b", "j");
    assert_string_equal(optspec_string(&p, "reason", NULL), "a=b");
    /* repeated: the last one wins */
    PARSE_OK(&p, "run", "j", "-r", "one", "-r", "two");
    assert_string_equal(optspec_string(&p, "reason", NULL), "two");
}

static void test_global_options_before_and_after(void **state)
{
    OptParse p;
    (void)state;
    PARSE_OK(&p, "--json", "-t", "2m", "status");
    assert_true(optspec_flag(&p, "json"));
    assert_int_equal(optspec_int(&p, "timeout", 0), 120000);
    assert_ptr_equal(optspec_get(&p, "json")->owner, &root);
    PARSE_OK(&p, "status", "--json", "--timeout=1h", "-s", "/x.sock");
    assert_true(optspec_flag(&p, "json"));
    assert_int_equal(optspec_int(&p, "timeout", 0), 3600000);
    assert_string_equal(optspec_string(&p, "socket", NULL), "/x.sock");
    PARSE_OK(&p, "backup", "now", "--wait", "-t", "1h");
    assert_ptr_equal(optspec_command(&p), &cmd_now);
    assert_true(optspec_flag(&p, "wait"));
    assert_int_equal(optspec_int(&p, "timeout", 0), 3600000);
    assert_int_equal(optspec_check(&p, errbuf, sizeof(errbuf)), 0);
}

static void test_sub_commands(void **state)
{
    OptParse p;
    (void)state;
    PARSE_OK(&p, "backup", "decrypt", "in.drbk", "-o", "out");
    assert_int_equal(p.depth, 3);
    assert_ptr_equal(p.path[1], &cmd_backup);
    assert_ptr_equal(optspec_command(&p), &cmd_decrypt);
    assert_string_equal(optspec_string(&p, "file", NULL), "in.drbk");
    assert_string_equal(optspec_string(&p, "output", NULL), "out");
    assert_int_equal(optspec_check(&p, errbuf, sizeof(errbuf)), 0);

    PARSE_OK(&p, "backup");
    assert_int_equal(optspec_check(&p, errbuf, sizeof(errbuf)), DR_EBADARG);
    assert_non_null(strstr(errbuf, "tool backup: a command is required (now, decrypt)"));

    PARSE_FAILS(&p, "tool backup: unknown command 'nope'", "backup", "nope");
    assert_int_equal(p.depth, 2); /* the caller prints the usage of the command resolved so far */
    PARSE_FAILS(&p, "tool: unknown command 'frobnicate'", "frobnicate");

    const char *const words[] = {"backup", "now"};
    const OptCommand *path[OPTSPEC_MAX_DEPTH];
    size_t depth = 0;
    assert_ptr_equal(optspec_find(&root, words, 2, path, &depth), &cmd_now);
    assert_int_equal(depth, 3);
    assert_ptr_equal(path[1], &cmd_backup);
    const char *const bad[] = {"backup", "later"};
    assert_null(optspec_find(&root, bad, 2, NULL, NULL));
    char name[64];
    optspec_path_name(path, depth, name, sizeof(name));
    assert_string_equal(name, "tool backup now");
}

static void test_double_dash_ends_options(void **state)
{
    OptParse p;
    (void)state;
    PARSE_OK(&p, "run", "-r", "x", "--", "--not-an-option");
    assert_string_equal(optspec_string(&p, "job", NULL), "--not-an-option");
    PARSE_OK(&p, "run", "-r", "x", "-");
    assert_string_equal(optspec_string(&p, "job", NULL), "-");
}

static void test_parse_errors_name_the_command(void **state)
{
    OptParse p;
    (void)state;
    PARSE_FAILS(&p, "tool status: unknown option '--bogus'", "status", "--bogus");
    PARSE_FAILS(&p, "tool status: unknown option '-x'", "status", "-x");
    /* an option of another command is unknown here */
    PARSE_FAILS(&p, "tool status: unknown option '--reason'", "status", "--reason", "x");
    /* a command's option before the command is not known yet */
    PARSE_FAILS(&p, "tool: unknown option '--wait'", "--wait", "backup", "now");
    PARSE_FAILS(&p, "tool run: --reason needs a value (TEXT)", "run", "j", "--reason");
    PARSE_FAILS(&p, "tool run: -r needs a value (TEXT)", "run", "j", "-r");
    PARSE_FAILS(&p, "tool run: --count needs a number from 1 to 100, not '0'", "run", "--count", "0");
    PARSE_FAILS(&p, "tool run: -n needs a number from 1 to 100, not '101'", "run", "-n", "101");
    PARSE_FAILS(&p, "tool run: --count needs a whole number, not '3x'", "run", "--count=3x");
    PARSE_FAILS(&p, "tool run: --offset needs a whole number, not ''", "run", "--offset=");
    PARSE_FAILS(&p, "tool run: --every needs a duration such as 500ms", "run", "--every", "soon");
    PARSE_FAILS(&p, "tool run: --every needs a duration", "run", "--every", "10");
    PARSE_FAILS(&p, "tool: --timeout needs a duration such as 500ms, 30s, 2m or 1h, not 'soon'", "--timeout", "soon",
                "status");
    PARSE_FAILS(&p, "tool: -t needs a duration of at least 1ms, not '0'", "-t", "0", "status");
    PARSE_FAILS(&p, "tool run: --dry-run takes no value", "run", "--dry-run=yes");
    PARSE_FAILS(&p, "tool status: unknown option '-x' (in '-jx')", "status", "-jx");
    PARSE_FAILS(&p, "tool status: unexpected argument 'extra'", "status", "extra");
    PARSE_FAILS(&p, "tool run: unexpected argument 'three'", "run", "one", "two", "three");
}

static const OptCommand cmd_alert = {
    .name = "alert",
    .options = (const OptSpec[]){
        {.name = "summary", .kind = OPTSPEC_STRING, .metavar = "TEXT"},
        {.name = "severity", .kind = OPTSPEC_STRING, .metavar = "S"},
        {0},
    },
};

static const OptCommand small_root = {
    .name = "small",
    .options = (const OptSpec[]){{.name = "socket", .short_name = 's', .kind = OPTSPEC_STRING, .metavar = "P"}, {0}},
    .subs = (const OptCommand *const[]){&cmd_alert, NULL},
};

static void test_grouped_flags_and_abbreviations(void **state)
{
    OptParse p;
    (void)state;
    PARSE_OK(&p, "-jt", "2m", "status");
    assert_true(optspec_flag(&p, "json"));
    assert_int_equal(optspec_int(&p, "timeout", 0), 120000);
    PARSE_OK(&p, "status", "-jt2m");
    assert_true(optspec_flag(&p, "json"));
    assert_int_equal(optspec_int(&p, "timeout", 0), 120000);
    PARSE_OK(&p, "status", "--js", "--time=1s", "--sock", "x");
    assert_true(optspec_flag(&p, "json"));
    assert_int_equal(optspec_int(&p, "timeout", 0), 1000);
    assert_string_equal(optspec_string(&p, "socket", NULL), "x");
    PARSE_OK(&p, "run", "j", "--rea", "why", "--dry");
    assert_string_equal(optspec_string(&p, "reason", NULL), "why");
    assert_true(optspec_flag(&p, "dry-run"));
    /* hidden options are matched only in full */
    PARSE_FAILS(&p, "tool run: unknown option '--secr'", "run", "j", "--secr");

    char *argv[] = {(char *)(uintptr_t) "small", (char *)(uintptr_t) "alert", (char *)(uintptr_t) "--s",
                    (char *)(uintptr_t) "x", NULL};
    assert_int_equal(optspec_validate(&small_root, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(optspec_parse(&small_root, 4, argv, &p, errbuf, sizeof(errbuf)), DR_EBADARG);
    assert_non_null(strstr(errbuf, "small alert: ambiguous option '--s' (--summary, --severity, --socket)"));
    argv[2] = (char *)(uintptr_t) "--so";
    assert_int_equal(optspec_parse(&small_root, 4, argv, &p, errbuf, sizeof(errbuf)), 0);
    assert_string_equal(optspec_string(&p, "socket", NULL), "x");
    argv[2] = (char *)(uintptr_t) "--su";
    assert_int_equal(optspec_parse(&small_root, 4, argv, &p, errbuf, sizeof(errbuf)), 0);
    assert_string_equal(optspec_string(&p, "summary", NULL), "x");
}

static void test_check_required(void **state)
{
    OptParse p;
    (void)state;
    PARSE_OK(&p, "run", "j");
    assert_int_equal(optspec_check(&p, errbuf, sizeof(errbuf)), DR_EBADARG);
    assert_non_null(strstr(errbuf, "tool run: --reason TEXT is required"));
    PARSE_OK(&p, "run", "--reason", "x");
    assert_int_equal(optspec_check(&p, errbuf, sizeof(errbuf)), DR_EBADARG);
    assert_non_null(strstr(errbuf, "tool run: JOB is required"));
    PARSE_OK(&p, "backup", "decrypt", "-o", "x");
    assert_int_equal(optspec_check(&p, errbuf, sizeof(errbuf)), DR_EBADARG);
    assert_non_null(strstr(errbuf, "tool backup decrypt: FILE is required"));
    /* --help is for the caller to honour: parse does not insist on required options */
    PARSE_OK(&p, "run");
    assert_ptr_equal(optspec_command(&p), &cmd_run);
}

static void test_usage_names_every_option(void **state)
{
    const OptCommand *path[] = {&root, &cmd_run};
    (void)state;
    char *u = capture(optspec_usage, path, 2);
    assert_string_equal(u, "Usage: tool run JOB [EXTRA] -r|--reason TEXT [--dry-run] [-n|--count N] [--offset K] "
                           "[--every DURATION]\n");
    free(u);
    const OptCommand *bpath[] = {&root, &cmd_backup};
    u = capture(optspec_usage, bpath, 2);
    assert_string_equal(u, "Usage: tool backup COMMAND\n");
    free(u);
    u = capture(optspec_usage, path, 1);
    assert_string_equal(u, "Usage: tool [OPTIONS] COMMAND [ARGS]\n");
    free(u);
}

static void test_help_names_every_option_and_command(void **state)
{
    const OptCommand *path[] = {&root, &cmd_run};
    (void)state;
    char *h = capture(optspec_help, path, 2);
    static const char *const want[] = {"Usage: tool run", "Run a job now, and wait for it when asked to.",
                                       "Arguments:", "JOB", "the job (required)", "EXTRA", "Options:",
                                       "-r, --reason TEXT", "why (required)", "--dry-run", "-n, --count N",
                                       "--offset K", "--every DURATION", "Global options", "-j, --json",
                                       "-t, --timeout DUR", "-s, --socket PATH", "Exit status: 0 ok."};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(h, want[i]))
            fail_msg("help lacks '%s':\n%s", want[i], h);
    assert_null(strstr(h, "secret"));
    free(h);

    h = capture(optspec_help, path, 1);
    static const char *const top[] = {"Commands:", "  status", "  run JOB [EXTRA] -r|--reason TEXT",
                                      "  backup now [--wait]", "  backup decrypt FILE [-o|--output OUT]",
                                      "decrypt a file", "Options:", "--timeout DUR"};
    for (size_t i = 0; i < sizeof(top) / sizeof(top[0]); i++)
        if (!strstr(h, top[i]))
            fail_msg("top help lacks '%s':\n%s", top[i], h);
    free(h);
}

static void test_completion_script(void **state)
{
    char *buf = NULL;
    size_t len = 0;
    (void)state;
    FILE *f = open_memstream(&buf, &len);
    optspec_completion_bash(f, &root);
    fclose(f);
    static const char *const want[] = {"_tool()", "complete -F _tool tool", "\"\") _r=\"status run backup\"",
                                       "\"backup\") _r=\"now decrypt\"", "\"backup now\") _r=\"--wait --json -j",
                                       "\"run\") _r=\"--reason -r --count -n --offset --every "
                                       "--timeout -t --socket -s\""};
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(buf, want[i]))
            fail_msg("completion lacks '%s':\n%s", want[i], buf);
    assert_null(strstr(buf, "--secret"));
    free(buf);
}

/* Tables with one mistake each. */
static const OptCommand clash = {
    .name = "clash",
    .options = (const OptSpec[]){{.name = "tail", .short_name = 't', .kind = OPTSPEC_FLAG}, {0}},
};
static const OptCommand same_name = {
    .name = "same",
    .options = (const OptSpec[]){{.name = "json", .kind = OPTSPEC_FLAG}, {0}},
};
static const OptCommand order = {
    .name = "order",
    .options = (const OptSpec[]){
        {.name = "a", .kind = OPTSPEC_POSITIONAL, .metavar = "A"},
        {.name = "b", .kind = OPTSPEC_POSITIONAL, .required = true, .metavar = "B"},
        {0},
    },
};
static const OptCommand no_metavar = {
    .name = "nometa",
    .options = (const OptSpec[]){{.name = "x", .kind = OPTSPEC_STRING}, {0}},
};
static void test_validate_catches_table_mistakes(void **state)
{
    (void)state;
    const OptCommand *bad[] = {&clash, &same_name, &order, &no_metavar};
    const char *why[] = {"clashes with 'timeout'", "clashes with 'json'", "after an optional one", "metavar"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const OptCommand *subs[] = {bad[i], NULL};
        OptCommand r = root;
        r.subs = subs;
        assert_int_equal(optspec_validate(&r, errbuf, sizeof(errbuf)), DR_EINTERNAL);
        if (!strstr(errbuf, why[i]))
            fail_msg("'%s' lacks '%s'", errbuf, why[i]);
    }
    const OptCommand *twice[] = {&cmd_status, &cmd_status, NULL};
    OptCommand r = root;
    r.subs = twice;
    assert_int_equal(optspec_validate(&r, errbuf, sizeof(errbuf)), DR_EINTERNAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_is_valid),
        cmocka_unit_test(test_kinds_and_spellings),
        cmocka_unit_test(test_global_options_before_and_after),
        cmocka_unit_test(test_sub_commands),
        cmocka_unit_test(test_double_dash_ends_options),
        cmocka_unit_test(test_parse_errors_name_the_command),
        cmocka_unit_test(test_grouped_flags_and_abbreviations),
        cmocka_unit_test(test_check_required),
        cmocka_unit_test(test_usage_names_every_option),
        cmocka_unit_test(test_help_names_every_option_and_command),
        cmocka_unit_test(test_completion_script),
        cmocka_unit_test(test_validate_catches_table_mistakes),
    };
    return cmocka_run_group_tests_name("optspec", tests, NULL, NULL);
}
