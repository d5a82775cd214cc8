/*
 * Unit tests for lib/cfgtree and daemon/config: values, defaults, durations, sizes, modes, and
 * every error path with its FILE:LINE:COL.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "cfgtree.h"
#include "config/config.h"
#include "err.h"
#include "prio.h"
#include "scenario/app_crash_internal.h"
#include "scenario/data_loss_internal.h"
#include "scenario/database_corruption_internal.h"
#include "scenario/point_in_time_internal.h"
#include "scenario/scenario.h"

static const char *const base = "database:\n  conninfo: \"host=127.0.0.1 dbname=t\"\n";

/* A valid backup key (0600, 64 hex digits): texts name it "key_file: /k", which the loads below
 * rewrite to its real path (the loader checks the key file). Made by main(). */
static char key_dir[64], key_path[96];

static void write_file(const char *path, const char *content, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fputs(content, f) >= 0, 1);
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
}

/* text with every "key_file: /k\n" naming key_path; malloc'd. */
static char *with_key(const char *text)
{
    static const char token[] = "key_file: /k\n";
    size_t n = 0, tl = strlen(token);
    for (const char *p = strstr(text, token); p; p = strstr(p + tl, token))
        n++;
    char *out = malloc(strlen(text) + n * strlen(key_path) + 1), *o = out;
    assert_non_null(out);
    const char *rest = text;
    for (const char *q; (q = strstr(rest, token)); rest = q + tl) {
        memcpy(o, rest, (size_t)(q - rest));
        o += q - rest;
        o += sprintf(o, "key_file: %s\n", key_path);
    }
    strcpy(o, rest);
    return out;
}

/* Load text and expect failure whose errors contain `want`. */
static void expect_error(const char *text0, const char *want)
{
    Config *cfg = NULL;
    char *errors = NULL, *text = with_key(text0);
    int r = config_load_string("t.yaml", text, &cfg, &errors);
    free(text);
    assert_int_equal(r, DR_ECONFIG);
    assert_null(cfg);
    assert_non_null(errors);
    if (!strstr(errors, want))
        fail_msg("errors:\n%s\nexpected to contain:\n%s", errors, want);
    free(errors);
}

static Config *expect_ok(const char *text0)
{
    Config *cfg = NULL;
    char *errors = NULL, *text = with_key(text0);
    int r = config_load_string("t.yaml", text, &cfg, &errors);
    free(text);
    if (r != 0)
        fail_msg("unexpected errors:\n%s", errors ? errors : "(none)");
    assert_null(errors);
    return cfg;
}

static void test_minimal_uses_defaults(void **state)
{
    (void)state;
    Config *cfg = expect_ok(base);
    assert_string_equal(cfg->cluster, "main");
    assert_string_equal(cfg->state_dir, "/var/lib/drsupervisor");
    assert_int_equal(cfg->log_level, LOG_INFO);
    assert_string_equal(cfg->control.socket_path, "/run/drsupervisor/control.sock");
    assert_int_equal(cfg->control.mode, 0660);
    assert_null(cfg->control.group);
    assert_null(cfg->control.operators_group);
    assert_int_equal(cfg->control.max_request, 65536);
    assert_int_equal(cfg->database.probe_interval_ms, 250);
    assert_int_equal(cfg->database.down_after, 2);
    assert_null(cfg->platform.health_url);
    config_free(cfg);
}

static void test_full_values(void **state)
{
    (void)state;
    Config *cfg = expect_ok("cluster: prod-eu\n"
                            "state_dir: /srv/drs\n"
                            "log_level: debug\n"
                            "control:\n"
                            "  socket: /run/x.sock\n"
                            "  mode: \"0600\"\n"
                            "  group: adm\n"
                            "  operators_group: adm\n"
                            "  max_request: 1MiB\n"
                            "  max_clients: 5\n"
                            "database:\n"
                            "  conninfo: host=db\n"
                            "  probe_interval: 250ms\n"
                            "  probe_timeout: 1m30s\n"
                            "  connect_timeout: 3s\n"
                            "  down_after: 4\n"
                            "platform:\n"
                            "  health_url: https://platform.example/health\n"
                            "  probe_interval: 2s\n");
    assert_string_equal(cfg->cluster, "prod-eu");
    assert_int_equal(cfg->log_level, LOG_DEBUG);
    assert_int_equal(cfg->control.mode, 0600);
    assert_string_equal(cfg->control.group, "adm");
    assert_int_equal(cfg->control.max_request, 1024 * 1024);
    assert_int_equal(cfg->control.max_clients, 5);
    assert_int_equal(cfg->database.probe_interval_ms, 250);
    assert_int_equal(cfg->database.probe_timeout_ms, 90000);
    assert_int_equal(cfg->database.down_after, 4);
    assert_string_equal(cfg->platform.health_url, "https://platform.example/health");
    assert_int_equal(cfg->platform.probe_interval_ms, 2000);
    config_free(cfg);
}

static void test_error_paths_with_positions(void **state)
{
    (void)state;
    expect_error("cluster: x\n", "t.yaml:1:1: missing required section 'database'");
    expect_error("database:\n  probe_interval: 1s\n", "t.yaml:2:3: missing required key 'database.conninfo'");
    expect_error("database: 5\n", "t.yaml:1:11: 'database' must be a mapping of keys, not a value");
    expect_error("database:\n  conninfo: [a, b]\n", "t.yaml:2:13: 'database.conninfo' must be a single value, not a list");
    expect_error("database:\n  conninfo: x\n  colour: blue\n", "t.yaml:3:3: unknown key 'database.colour'");
    expect_error("database:\n  conninfo: x\nextra: 1\n", "t.yaml:3:1: unknown key 'extra'");
    expect_error("database:\n  conninfo: x\n  probe_interval: 10\n",
                 "t.yaml:3:19: 'database.probe_interval' must be a duration with a unit");
    expect_error("database:\n  conninfo: x\n  probe_interval: 5ms\n",
                 "t.yaml:3:19: 'database.probe_interval' is 5ms, below the minimum of 10ms");
    expect_error("database:\n  conninfo: x\n  down_after: 0\n", "t.yaml:3:15: 'database.down_after' is 0, outside 1..1000");
    expect_error("database:\n  conninfo: x\n  down_after: two\n",
                 "t.yaml:3:15: 'database.down_after' must be a whole number, not 'two'");
    expect_error("log_level: loud\ndatabase:\n  conninfo: x\n",
                 "t.yaml:1:12: 'log_level' must be one of critical, error, warning, notice, info, debug, not 'loud'");
    expect_error("control:\n  mode: \"0999\"\ndatabase:\n  conninfo: x\n",
                 "t.yaml:2:9: 'control.mode' must be an octal file mode");
    expect_error("control:\n  max_request: 12 parsecs\ndatabase:\n  conninfo: x\n",
                 "t.yaml:2:16: 'control.max_request' must be a size");
    expect_error("control:\n  max_request: 10\ndatabase:\n  conninfo: x\n",
                 "t.yaml:2:16: 'control.max_request' is 10, outside 256..16777216 bytes");
    expect_error("control:\n  socket: relative.sock\ndatabase:\n  conninfo: x\n",
                 "t.yaml:2:11: 'control.socket' must be an absolute path");
    expect_error("state_dir: var/lib\ndatabase:\n  conninfo: x\n", "t.yaml:1:12: 'state_dir' must be an absolute path");
    expect_error("platform:\n  health_url: ftp://x\ndatabase:\n  conninfo: x\n",
                 "t.yaml:2:15: 'platform.health_url' must start with http:// or https://");
    expect_error("database:\n  conninfo: x\n  conninfo: y\n", "t.yaml:3:3: duplicate key 'conninfo' (first at line 2)");
    expect_error("database:\n  conninfo: x\n   bad: indent\n", "t.yaml:3:");
    expect_error("database: {conninfo: x\n", "YAML syntax error");
    expect_error("", "t.yaml:1:1: the configuration is empty");
    expect_error("- a\n- b\n", "t.yaml:1:1: the configuration must be a mapping of sections");
    expect_error("a: &x 1\nb: *x\ndatabase:\n  conninfo: x\n", "YAML aliases are not supported");
    expect_error("database:\n  conninfo: x\n---\ncluster: y\n", "only one YAML document is allowed");
}

/* A secret that could reach a child program only on its command line is refused at load. */
static void test_child_conninfo_secrets_refused(void **state)
{
    (void)state;
    expect_error("database:\n  conninfo: x\nbackup:\n  directory: /b\n  key_file: /k\n"
                 "  conninfo: \"host=h sslpassword=k3y\"\n",
                 "t.yaml:6:13: 'backup.conninfo': the conninfo holds an sslpassword");
    expect_error("database:\n  conninfo: \"host=h sslpassword=k3y\"\nbackup:\n  directory: /b\n  key_file: /k\n",
                 "t.yaml:4:3: 'backup.conninfo': the conninfo holds an sslpassword");
    expect_error("database:\n  conninfo: x\nscenarios:\n  admin_conninfo: \"dbname='host=h password=p'\"\n",
                 "t.yaml:4:19: 'scenarios.admin_conninfo': the conninfo's dbname is a conninfo of its own");
    /* backup priority: on by default, configurable, checked */
    Config *pc = expect_ok("database:\n  conninfo: x\nbackup:\n  directory: /b\n  key_file: /k\n");
    assert_int_equal(pc->backup.nice, 10);
    assert_int_equal(pc->backup.ioprio, PRIO_IO_BEST_EFFORT);
    config_free(pc);
    pc = expect_ok("database:\n  conninfo: x\nbackup:\n  directory: /b\n  key_file: /k\n  nice: 0\n  ioprio: idle\n");
    assert_int_equal(pc->backup.nice, 0);
    assert_int_equal(pc->backup.ioprio, PRIO_IO_IDLE);
    config_free(pc);
    expect_error("database:\n  conninfo: x\nbackup:\n  directory: /b\n  key_file: /k\n  ioprio: realtime\n",
                 "t.yaml:6:11: 'backup.ioprio' must be one of normal, best-effort, idle, not 'realtime'");
    expect_error("database:\n  conninfo: x\nbackup:\n  directory: /b\n  key_file: /k\n  nice: 20\n",
                 "t.yaml:6:9: 'backup.nice' is 20, outside 0..19");
}

/* A conninfo holding a password is refused at every conninfo key, key=value or URI, with its
 * position and the way out, never quoting the password. */
static void test_conninfo_passwords_refused(void **state)
{
    (void)state;
    static const struct {
        const char *head, *key, *tail;
    } at[] = {
        {"database:\n  conninfo: ", "database.conninfo", ""},
        {"database:\n  conninfo: x\nbackup:\n  directory: /b\n  key_file: /k\n  conninfo: ", "backup.conninfo", ""},
        {"database:\n  conninfo: x\nbackup:\n  directory: /b\n  key_file: /k\n  physical:\n    conninfo: ",
         "backup.physical.conninfo", ""},
        {"database:\n  conninfo: x\ndetector:\n  conninfo: ", "detector.conninfo", ""},
        {"database:\n  conninfo: x\nreconcile:\n  conninfo: ", "reconcile.conninfo", ""},
        {"database:\n  conninfo: x\nscenarios:\n  admin_conninfo: ", "scenarios.admin_conninfo", ""},
    };
    static const char *const secrets[] = {"\"host=h password='Hunter 2x'\"", "\"postgresql://u:Hunter2x@h/db\"",
                                          "\"host=h password=\""};
    for (size_t i = 0; i < sizeof(at) / sizeof(at[0]); i++)
        for (size_t j = 0; j < sizeof(secrets) / sizeof(secrets[0]); j++) {
            char text[512], want[128], *tk = NULL, *errors = NULL;
            Config *cfg = NULL;
            snprintf(text, sizeof(text), "%s%s\n%s", at[i].head, secrets[j], at[i].tail);
            tk = with_key(text);
            assert_int_equal(config_load_string("t.yaml", tk, &cfg, &errors), DR_ECONFIG);
            free(tk);
            assert_null(cfg);
            unsigned line = 1;
            for (const char *c = text; *c; c++)
                line += *c == '\n';
            const char *last = strrchr(at[i].head, '\n');
            snprintf(want, sizeof(want), "t.yaml:%u:%zu: '%s' holds a password, which is refused", line - 1,
                     strlen(last + 1) + 1, at[i].key);
            if (!strstr(errors, want))
                fail_msg("errors:\n%s\nexpected to contain:\n%s", errors, want);
            assert_non_null(strstr(errors, "passfile="));
            assert_non_null(strstr(errors, "PGPASSFILE"));
            assert_null(strstr(errors, "unter"));
            /* one error: keys inheriting database.conninfo do not repeat it */
            assert_null(strchr(errors, '\n'));
            free(errors);
        }
    /* an inherited password is reported once, at database.conninfo */
    Config *cfg = NULL;
    char *errors = NULL, *tk = with_key("database:\n  conninfo: \"password=Hunter2x\"\nbackup:\n  directory: /b\n"
                                        "  key_file: /k\ndetector:\n  halt_after: 2\nscenarios:\n  database: shop\n");
    assert_int_equal(config_load_string("t.yaml", tk, &cfg, &errors), DR_ECONFIG);
    free(tk);
    assert_non_null(strstr(errors, "t.yaml:2:13: 'database.conninfo' holds a password"));
    assert_null(strchr(errors, '\n'));
    free(errors);
    /* a passfile is the way; one libpq would ignore is refused with the reason */
    char text[512], pf[128];
    snprintf(pf, sizeof(pf), "%s/pgpass", key_dir);
    write_file(pf, "*:*:*:u:Hunter2x\n", 0600);
    snprintf(text, sizeof(text), "database:\n  conninfo: \"host=h passfile=%s\"\nbackup:\n  directory: /b\n  key_file: /k\n"
             "  conninfo: \"postgresql://u@h/db?passfile=%s\"\n", pf, pf);
    cfg = expect_ok(text);
    config_free(cfg);
    assert_int_equal(chmod(pf, 0640), 0);
    expect_error(text, "t.yaml:2:13: 'database.conninfo': passfile '");
    expect_error(text, "t.yaml:6:13: 'backup.conninfo': passfile '");
    expect_error(text, "mode 0640 lets group or others access it (libpq would ignore it");
    unlink(pf);
    expect_error(text, "cannot open: No such file or directory");
    snprintf(text, sizeof(text), "database:\n  conninfo: x\nscenarios:\n  admin_conninfo: \"passfile=%s\"\n", key_dir);
    expect_error(text, "t.yaml:4:19: 'scenarios.admin_conninfo': passfile '");
    expect_error(text, "is not a regular file");
}

/* The backup key is checked as the file is read: missing, too open, not the daemon's user's, or
 * not a 32-byte key is an error at the key's position; a credential is looked for in
 * $CREDENTIALS_DIRECTORY, else alerts.credentials_dir. */
static void test_backup_key_checked_at_load(void **state)
{
    (void)state;
    char path[128], text[512];
    static const char *const head = "database:\n  conninfo: x\nbackup:\n  directory: /b\n  key_file: ";

    snprintf(path, sizeof(path), "%s/missing", key_dir);
    snprintf(text, sizeof(text), "%s%s\n", head, path);
    expect_error(text, "t.yaml:5:13: 'backup.key_file': key file '");
    expect_error(text, "cannot open");

    snprintf(path, sizeof(path), "%s/open", key_dir);
    write_file(path, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 0644);
    snprintf(text, sizeof(text), "%s%s\n", head, path);
    expect_error(text, "t.yaml:5:13: 'backup.key_file': key file '");
    expect_error(text, "mode 0644 is too open");

    snprintf(path, sizeof(path), "%s/short", key_dir);
    write_file(path, "0011223344556677\n", 0600);
    snprintf(text, sizeof(text), "%s%s\n", head, path);
    expect_error(text, "wrong length 17 bytes");

    if (geteuid() == 0) {
        snprintf(path, sizeof(path), "%s/theirs", key_dir);
        write_file(path, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", 0600);
        assert_int_equal(chown(path, 65534, 65534), 0);
        snprintf(text, sizeof(text), "%s%s\n", head, path);
        expect_error(text, "owned by uid 65534");
    }

    /* key_credential: found where every secret is (config__credential_path), and that path is the
     * one the backups read at run time (key_path) */
    static const char *const cred = "database:\n  conninfo: x\nbackup:\n  directory: /b\n  key_credential: bk\n";
    unsetenv("CREDENTIALS_DIRECTORY");
    expect_error(cred, "t.yaml:5:19: 'backup.key_credential': credential 'bk': $CREDENTIALS_DIRECTORY is not set");
    assert_int_equal(setenv("CREDENTIALS_DIRECTORY", key_dir, 1), 0);
    expect_error(cred, "t.yaml:5:19: 'backup.key_credential': credential 'bk': key file '");
    snprintf(path, sizeof(path), "%s/bk", key_dir);
    write_file(path, "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 0400);
    Config *cfg = expect_ok(cred);
    assert_string_equal(cfg->backup.key_path, path);
    config_free(cfg);
    /* no $CREDENTIALS_DIRECTORY: alerts.credentials_dir */
    unsetenv("CREDENTIALS_DIRECTORY");
    snprintf(text, sizeof(text), "database:\n  conninfo: x\nalerts:\n  credentials_dir: %s\nbackup:\n  directory: /b\n"
                                 "  key_credential: bk\n", key_dir);
    cfg = expect_ok(text);
    assert_string_equal(cfg->backup.key_path, path);
    config_free(cfg);
    snprintf(text, sizeof(text), "database:\n  conninfo: x\nalerts:\n  credentials_dir: %s\nbackup:\n  directory: /b\n"
                                 "  key_credential: gone\n", key_dir);
    expect_error(text, "t.yaml:7:19: 'backup.key_credential': credential 'gone': key file '");
    unsetenv("CREDENTIALS_DIRECTORY");
}

/* audit: rotation defaults, the values read, the bounds refused at their position. */
static void test_audit_rotation(void **state)
{
    (void)state;
    Config *cfg = expect_ok("database:\n  conninfo: x\n");
    assert_int_equal(cfg->audit.max_bytes, 64u << 20);
    assert_int_equal(cfg->audit.keep, 8);
    config_free(cfg);
    cfg = expect_ok("database:\n  conninfo: x\naudit:\n  max_bytes: 1MiB\n  keep: 3\n");
    assert_int_equal(cfg->audit.max_bytes, 1u << 20);
    assert_int_equal(cfg->audit.keep, 3);
    config_free(cfg);
    expect_error("database:\n  conninfo: x\naudit:\n  max_bytes: 1KiB\n", "t.yaml:4:14: 'audit.max_bytes'");
    expect_error("database:\n  conninfo: x\naudit:\n  keep: 0\n", "t.yaml:4:9: 'audit.keep'");
    expect_error("database:\n  conninfo: x\naudit:\n  kept: 3\n", "'audit.kept'");
}

static void test_every_error_is_reported(void **state)
{
    (void)state;
    Config *cfg = NULL;
    char *errors = NULL;
    assert_int_equal(config_load_string("t.yaml", "a: 1\nb: 2\ndatabase:\n  conninfo: x\n  down_after: -1\n",
                                        &cfg, &errors),
                     DR_ECONFIG);
    assert_non_null(strstr(errors, "t.yaml:1:1: unknown key 'a'"));
    assert_non_null(strstr(errors, "t.yaml:2:1: unknown key 'b'"));
    assert_non_null(strstr(errors, "t.yaml:5:15:"));
    free(errors);
}

static void test_missing_file(void **state)
{
    (void)state;
    Config *cfg = NULL;
    char *errors = NULL;
    assert_int_equal(config_load("/nonexistent/drs.yaml", &cfg, &errors), DR_ECONFIG);
    assert_string_equal(errors, "/nonexistent/drs.yaml: cannot open: No such file or directory");
    free(errors);
}

/* alerts.pagerduty.routing_key_file = path: the load's error text (NULL when it loads). */
static char *load_with_secret_file(const char *path)
{
    char text[600];
    Config *cfg = NULL;
    char *errors = NULL;
    snprintf(text, sizeof(text), "%salerts:\n  pagerduty:\n    routing_key_file: %s\n", base, path);
    if (config_load_string("t.yaml", text, &cfg, &errors) == 0)
        config_free(cfg);
    return errors;
}

/* A secret file is a regular file owned by the daemon's user, 0600: a FIFO or a device is refused
 * at once (a FIFO without a writer would block a plain open() for ever), so is a too-open file. */
static void test_secret_files_checked_without_blocking(void **state)
{
    (void)state;
    char dir[] = "/tmp/drsup-cfgsecret-XXXXXX", path[128], *e;
    assert_non_null(mkdtemp(dir));

    snprintf(path, sizeof(path), "%s/key", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("R0UTING\n", f);
    fclose(f);
    assert_int_equal(chmod(path, 0600), 0);
    assert_null(load_with_secret_file(path));
    assert_int_equal(chmod(path, 0644), 0);
    assert_non_null(e = load_with_secret_file(path));
    assert_non_null(strstr(e, "is accessible by group or others (mode 0644)"));
    assert_null(strstr(e, "R0UTING"));
    free(e);
    if (geteuid() == 0) {
        assert_int_equal(chmod(path, 0600), 0);
        assert_int_equal(chown(path, 65534, 65534), 0);
        assert_non_null(e = load_with_secret_file(path));
        assert_non_null(strstr(e, "is owned by uid 65534"));
        free(e);
    }
    unlink(path);

    snprintf(path, sizeof(path), "%s/fifo", dir);
    assert_int_equal(mkfifo(path, 0600), 0);
    assert_non_null(e = load_with_secret_file(path)); /* returns: nothing waits for a writer */
    assert_non_null(strstr(e, "is not a regular file"));
    free(e);
    assert_non_null(e = load_with_secret_file("/dev/null"));
    assert_non_null(strstr(e, "'/dev/null' is not a regular file"));
    free(e);

    unlink(path);
    rmdir(dir);
}

static void test_durations(void **state)
{
    (void)state;
    uint64_t ms;
    char buf[32];
    assert_int_equal(cfg_parse_duration_ms("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(cfg_parse_duration_ms("26h", &ms), 0);
    assert_int_equal(ms, 26ull * 3600 * 1000);
    assert_int_equal(cfg_parse_duration_ms("1m30s", &ms), 0);
    assert_int_equal(ms, 90000);
    assert_int_equal(cfg_parse_duration_ms("7d", &ms), 0);
    assert_int_equal(ms, 7ull * 86400 * 1000);
    assert_int_equal(cfg_parse_duration_ms("2w", &ms), 0);
    assert_int_equal(ms, 14ull * 86400 * 1000);
    assert_int_equal(cfg_parse_duration_ms("0", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(cfg_parse_duration_ms("10", &ms), -EINVAL);
    assert_int_equal(cfg_parse_duration_ms("", &ms), -EINVAL);
    assert_int_equal(cfg_parse_duration_ms("5 s", &ms), -EINVAL);
    assert_int_equal(cfg_parse_duration_ms("-5s", &ms), -EINVAL);
    assert_int_equal(cfg_parse_duration_ms("5parsecs", &ms), -EINVAL);
    assert_int_equal(cfg_parse_duration_ms("99999999999999999999d", &ms), -EINVAL);
    assert_int_equal(cfg_parse_duration_ms("999999999999999d", &ms), -ERANGE);
    cfg_format_duration(90000, buf, sizeof(buf));
    assert_string_equal(buf, "1m30s");
    cfg_format_duration(250, buf, sizeof(buf));
    assert_string_equal(buf, "250ms");
    cfg_format_duration(26ull * 3600 * 1000, buf, sizeof(buf));
    assert_string_equal(buf, "1d2h");
    cfg_format_duration(0, buf, sizeof(buf));
    assert_string_equal(buf, "0s");
}

static void test_sizes(void **state)
{
    (void)state;
    uint64_t b;
    assert_int_equal(cfg_parse_size("4096", &b), 0);
    assert_int_equal(b, 4096);
    assert_int_equal(cfg_parse_size("64KiB", &b), 0);
    assert_int_equal(b, 65536);
    assert_int_equal(cfg_parse_size("10MB", &b), 0);
    assert_int_equal(b, 10000000);
    assert_int_equal(cfg_parse_size("2GiB", &b), 0);
    assert_int_equal(b, 2ull << 30);
    assert_int_equal(cfg_parse_size("1 MiB", &b), 0);
    assert_int_equal(b, 1 << 20);
    assert_int_equal(cfg_parse_size("lots", &b), -EINVAL);
    assert_int_equal(cfg_parse_size("5XB", &b), -EINVAL);
    assert_int_equal(cfg_parse_size("99999999999TiB", &b), -ERANGE);
}

/* An empty list reads as "no values", so the section's defaults apply, and nothing is allocated for
 * it: a one-slot array that the caller overwrote with the defaults leaked on every load and reload
 * (LeakSanitizer in `make check SANITIZE=1` sees it). */
/* reconcile.post_resume_checks: absent = 10 s and 60 s; [] = no watch; ascending durations 100ms..1h. */
static void test_post_resume_checks(void **state)
{
    (void)state;
    Config *cfg = expect_ok(base);
    assert_int_equal(cfg->reconcile.n_post_resume_checks, 2);
    assert_int_equal(cfg->reconcile.post_resume_checks_ms[0], 10000);
    assert_int_equal(cfg->reconcile.post_resume_checks_ms[1], 60000);
    config_free(cfg);
    cfg = expect_ok("database:\n  conninfo: x\nreconcile:\n  post_resume_checks: []\n");
    assert_int_equal(cfg->reconcile.n_post_resume_checks, 0);
    assert_null(cfg->reconcile.post_resume_checks_ms);
    config_free(cfg);
    cfg = expect_ok("database:\n  conninfo: x\nreconcile:\n  post_resume_checks: [500ms, 2s, 1m30s]\n");
    assert_int_equal(cfg->reconcile.n_post_resume_checks, 3);
    assert_int_equal(cfg->reconcile.post_resume_checks_ms[0], 500);
    assert_int_equal(cfg->reconcile.post_resume_checks_ms[2], 90000);
    config_free(cfg);
    cfg = expect_ok("database:\n  conninfo: x\nreconcile:\n  post_resume_checks: 5s\n");
    assert_int_equal(cfg->reconcile.n_post_resume_checks, 1);
    assert_int_equal(cfg->reconcile.post_resume_checks_ms[0], 5000);
    config_free(cfg);
    /* referential_queries: absent = the default (fills without their order), [] = none */
    cfg = expect_ok(base);
    assert_int_equal(cfg->reconcile.n_referential_queries, 1);
    assert_non_null(strstr(cfg->reconcile.referential_queries[0], "FROM fills f WHERE NOT EXISTS"));
    config_free(cfg);
    cfg = expect_ok("database:\n  conninfo: x\nreconcile:\n  referential_queries: []\n");
    assert_int_equal(cfg->reconcile.n_referential_queries, 0);
    config_free(cfg);
    cfg = expect_ok("database:\n  conninfo: x\nreconcile:\n  referential_queries: [\"SELECT 1 WHERE false\", \"SELECT 2\"]\n");
    assert_int_equal(cfg->reconcile.n_referential_queries, 2);
    assert_string_equal(cfg->reconcile.referential_queries[1], "SELECT 2");
    config_free(cfg);
    expect_error("database:\n  conninfo: x\nreconcile:\n  post_resume_checks: [10s, 5s]\n",
                 "t.yaml:4:29: 'reconcile.post_resume_checks' must be in ascending order ('5s' follows a later one)");
    expect_error("database:\n  conninfo: x\nreconcile:\n  post_resume_checks: [10s, soon]\n",
                 "t.yaml:4:29: 'reconcile.post_resume_checks' item 2: 'soon' is not a duration between 100ms and 1h");
    expect_error("database:\n  conninfo: x\nreconcile:\n  post_resume_checks: [50ms]\n",
                 "item 1: '50ms' is not a duration between 100ms and 1h");
    expect_error("database:\n  conninfo: x\nreconcile:\n  post_resume_checks: [2h]\n",
                 "item 1: '2h' is not a duration between 100ms and 1h");
}

static void test_watched_tables(void **state)
{
    (void)state;
    Config *cfg = expect_ok("database:\n  conninfo: x\ndetector:\n  watched_interval: 1s\n  watched_tables:\n"
                            "    - table: public.trades\n      max_drop_percent: 5\n      max_drop_rows: 1000\n"
                            "    - name: fills\n      query: SELECT max(id) FROM fills\n      max_drop_rows: 0\n");
    assert_int_equal(cfg->detector.n_watched_tables, 2);
    assert_string_equal(cfg->detector.watched_tables[0].name, "public.trades"); /* default: the table */
    assert_true(cfg->detector.watched_tables[0].max_drop_percent == 5.0);
    assert_int_equal(cfg->detector.watched_tables[0].max_drop_rows, 1000);
    assert_null(cfg->detector.watched_tables[0].query);
    assert_true(cfg->detector.watched_tables[1].max_drop_percent < 0); /* unset */
    assert_int_equal(cfg->detector.watched_tables[1].max_drop_rows, 0);
    assert_int_equal(cfg->detector.watched_interval_ms, 1000);
    assert_int_equal(cfg->detector.watched_timeout_ms, 10000);
    config_free(cfg);
    cfg = expect_ok(base);
    assert_int_equal(cfg->detector.n_watched_tables, 0);
    assert_int_equal(cfg->detector.watched_interval_ms, 5000);
    config_free(cfg);
    const char *pre = "database:\n  conninfo: x\ndetector:\n  watched_tables:\n";
    char text[600];
    snprintf(text, sizeof(text), "%s    - table: t\n      query: SELECT 1\n      max_drop_rows: 1\n", pre);
    expect_error(text, "'detector.watched_tables[0]' needs exactly one of 'table' (its row count) or 'query'");
    snprintf(text, sizeof(text), "%s    - table: t\n", pre);
    expect_error(text, "'detector.watched_tables[0]' needs a limit: max_drop_percent, max_drop_rows or both");
    snprintf(text, sizeof(text), "%s    - table: \"t; DROP TABLE x\"\n      max_drop_rows: 1\n", pre);
    expect_error(text, "'detector.watched_tables[0].table' must be [schema.]table");
    snprintf(text, sizeof(text), "%s    - name: q\n      query: SELECT 1; SELECT 2\n      max_drop_rows: 1\n", pre);
    expect_error(text, "'detector.watched_tables[0].query' must be one statement without ';'");
    snprintf(text, sizeof(text), "%s    - query: SELECT 1\n      max_drop_rows: 1\n", pre);
    expect_error(text, "'detector.watched_tables[0]' with a query needs a 'name'");
    snprintf(text, sizeof(text), "%s    - table: t\n      max_drop_percent: 150\n", pre);
    expect_error(text, "'detector.watched_tables[0].max_drop_percent' is at most 100");
    snprintf(text, sizeof(text), "%s    - table: t\n      max_drop_rows: 1\n    - table: t\n      max_drop_rows: 2\n",
             pre);
    expect_error(text, "'detector.watched_tables[1]': the name 't' is used twice");
    snprintf(text, sizeof(text), "%s    - table: t\n      max_drop_rows: 1\n      limit: 3\n", pre);
    expect_error(text, "limit");
}

static void test_empty_lists_take_the_defaults_without_leaking(void **state)
{
    (void)state;
    Config *cfg = expect_ok("database:\n  conninfo: host=db\n"
                            "venue:\n"
                            "  halt: {url: \"http://127.0.0.1:1/halt\"}\n"
                            "  status: {url: \"http://127.0.0.1:1/status\"}\n"
                            "  modes: {halted: [], shadow: [], live: [up, running]}\n"
                            "detector:\n  damage_patterns: []\n  amcheck_indexes: []\n");
    assert_int_equal(cfg->venue.n_mode_values[0], 1);
    assert_string_equal(cfg->venue.mode_values[0][0], "halted");
    assert_int_equal(cfg->venue.n_mode_values[1], 1);
    assert_string_equal(cfg->venue.mode_values[1][0], "shadow");
    assert_int_equal(cfg->venue.n_mode_values[2], 2);
    assert_string_equal(cfg->venue.mode_values[2][1], "running");
    assert_true(cfg->detector.n_damage_patterns > 0);
    assert_int_equal(cfg->detector.n_amcheck_indexes, 0);
    assert_null(cfg->detector.amcheck_indexes);
    config_free(cfg);

    /* The getter itself: an empty sequence gives NULL and 0. */
    CfgCtx ctx;
    CfgNode *root = NULL;
    const char *text = "s:\n  empty: []\n  one: x\n";
    cfg_ctx_init(&ctx, "t.yaml");
    assert_int_equal(cfg_parse_string(&ctx, text, strlen(text), &root), 0);
    CfgSection top = {.ctx = &ctx, .map = root, .where = root, .path = ""};
    CfgSection s = cfg_section(&top, "s", true);
    char **list = (char **)1;
    size_t n = 99;
    assert_true(cfg_string_list(&s, "empty", &list, &n));
    assert_null(list);
    assert_int_equal(n, 0);
    assert_true(cfg_string_list(&s, "one", &list, &n));
    assert_int_equal(n, 1);
    assert_string_equal(list[0], "x");
    free(list[0]);
    free(list);
    cfg_node_free(root);
    cfg_ctx_done(&ctx);
}

/* ---- scenarios: the shared keys and the sections scenarios register ---- */

typedef struct FakeSettings {
    int64_t level;
    char *label;
} FakeSettings;

static void fake_read(const CfgSection *s, void *data)
{
    FakeSettings *f = data;
    cfg_int(s, "level", 0, 9, 1, &f->level);
    cfg_string(s, "label", false, "none", &f->label);
}

static int fake_copy(const void *src, void *dst)
{
    const FakeSettings *a = src;
    FakeSettings *b = dst;
    *b = *a;
    return config_str_copy(a->label, &b->label);
}

static void fake_done(void *data)
{
    free(((FakeSettings *)data)->label);
}

static const ConfigScenarioSection fake_section = {"fake_scenario", sizeof(FakeSettings), 60000, 7200000,
                                                   fake_read, fake_copy, fake_done};

static void test_scenario_sections(void **state)
{
    (void)state;
    static const ConfigScenarioSection same_name = {"fake_scenario", 0, 1000, 1000, NULL, NULL, NULL};
    assert_int_equal(config_register_scenario_section(&fake_section), 0); /* again: a no-op */
    assert_int_equal(config_register_scenario_section(&same_name), -EEXIST);

    char text[1024];
    snprintf(text, sizeof(text), "%sscenarios:\n  database: trading\n  admin_conninfo: \"host=/tmp user=postgres\"\n"
             "  fake_scenario:\n    mode: manual\n    rto: 5m\n    level: 3\n    label: x\n"
             "  database_corruption:\n    restore_jobs: 4\n    standby: true\n"
             "    switch_command: [/bin/true, a]\n", base);
    Config *cfg = expect_ok(text);
    assert_string_equal(cfg->scenarios.database, "trading");
    assert_string_equal(cfg->scenarios.admin_conninfo, "host=/tmp user=postgres");
    const ConfigScenario *fk = config_scenario(cfg, "fake_scenario");
    assert_non_null(fk);
    assert_true(fk->manual);
    assert_int_equal(fk->rto_ms, 300000);
    assert_int_equal(fk->rpo_ms, 7200000); /* the section's own default */
    assert_int_equal(((FakeSettings *)fk->data)->level, 3);
    assert_string_equal(((FakeSettings *)fk->data)->label, "x");
    const ConfigScenario *dc = config_scenario(cfg, "database_corruption");
    assert_non_null(dc);
    assert_false(dc->manual);
    assert_int_equal(dc->rto_ms, 15 * 60 * 1000);
    const CorruptionConfig *cc = dc->data;
    assert_int_equal(cc->restore_jobs, 4);
    assert_true(cc->standby);
    assert_int_equal(cc->standby_jobs, 1);
    assert_int_equal(cc->n_switch_command, 2);
    assert_string_equal(cc->switch_command[1], "a");
    assert_null(config_scenario(cfg, "no_such_scenario"));

    /* A copy is deep: it outlives the Config it came from (ASan sees a shallow one). */
    ConfigScenarios copy;
    assert_int_equal(config_scenarios_copy(&cfg->scenarios, &copy), 0);
    ConfigScenario one;
    assert_int_equal(config_scenario_copy(dc, &one), 0);
    config_free(cfg);
    assert_int_equal(copy.n, scenario_count() + 1); /* the registry's sections, then the fake one */
    assert_string_equal(copy.database, "trading");
    assert_string_equal(copy.list[0].def->name, "database_corruption"); /* registration order */
    assert_string_equal(copy.list[1].def->name, "primary_failure");
    assert_string_equal(copy.list[2].def->name, "point_in_time");
    assert_string_equal(copy.list[3].def->name, "app_crash");
    assert_string_equal(((AppCrashConfig *)copy.list[3].data)->restart_env[0], "TRADING_MODE=shadow");
    size_t dl = 0;
    while (dl < copy.n && strcmp(copy.list[dl].def->name, "data_loss"))
        dl++;
    assert_true(dl < copy.n);
    assert_true(((const DataLossConfig *)copy.list[dl].data)->approve_resume); /* the default */
    assert_string_equal(((FakeSettings *)copy.list[copy.n - 1].data)->label, "x");
    assert_string_equal(((CorruptionConfig *)one.data)->switch_command[0], "/bin/true");
    config_scenarios_free(&copy);
    config_scenario_free(&one);

    /* Absent: every registered section with its defaults. */
    cfg = expect_ok(base);
    fk = config_scenario(cfg, "fake_scenario");
    assert_non_null(fk);
    assert_int_equal(fk->rto_ms, 60000);
    assert_int_equal(((FakeSettings *)fk->data)->level, 1);
    assert_string_equal(((FakeSettings *)fk->data)->label, "none");
    assert_int_equal(((CorruptionConfig *)config_scenario(cfg, "database_corruption")->data)->restore_jobs, 2);
    config_free(cfg);

    /* Errors name the scenario's section. */
    snprintf(text, sizeof(text), "%sscenarios:\n  fake_scenario:\n    colour: blue\n", base);
    expect_error(text, "t.yaml:5:5: unknown key 'scenarios.fake_scenario.colour'");
    snprintf(text, sizeof(text), "%sscenarios:\n  fake_scenario:\n    level: 12\n", base);
    expect_error(text, "scenarios.fake_scenario.level");
    snprintf(text, sizeof(text), "%sscenarios:\n  database_gone:\n    mode: manual\n", base);
    expect_error(text, "unknown key 'scenarios.database_gone'");
    snprintf(text, sizeof(text), "%sscenarios:\n  database_corruption:\n    database: trading\n", base);
    expect_error(text, "unknown key 'scenarios.database_corruption.database'");
    snprintf(text, sizeof(text), "%sscenarios:\n  database_corruption:\n    switch_command: [repoint]\n", base);
    expect_error(text, "'scenarios.database_corruption.switch_command' must start with an absolute program path");
    snprintf(text, sizeof(text), "%sscenarios:\n  database_corruption:\n    mode: sometimes\n", base);
    expect_error(text, "scenarios.database_corruption.mode");
    snprintf(text, sizeof(text), "%sscenarios:\n  app_crash:\n    restart_command: [/bin/true]\n"
             "    restart_url: http://127.0.0.1:1/restart\n", base);
    expect_error(text, "'scenarios.app_crash.restart_url' and 'scenarios.app_crash.restart_command' exclude each other");
    snprintf(text, sizeof(text), "%sscenarios:\n  app_crash:\n    restart_env: [shadow]\n", base);
    expect_error(text, "'scenarios.app_crash.restart_env' entries are NAME=value ('shadow')");
    snprintf(text, sizeof(text), "%sscenarios:\n  app_crash:\n    out_of_band_halt_url: ftp://x/\n", base);
    expect_error(text, "'scenarios.app_crash.out_of_band_halt_url' must be an http:// or https:// URL");
    snprintf(text, sizeof(text), "%sscenarios:\n  app_crash:\n    restart_attempts: 10\n    health_timeout: 10m\n",
             base);
    expect_error(text, "restart_attempts x (restart_timeout + health_timeout + restart_delay) is at most 1h");
    snprintf(text, sizeof(text), "%sscenarios:\n  database: \"a\\\"b\"\n", base);
    expect_error(text, "'scenarios.database' must be 1..30 characters");
}

static void test_point_in_time_section(void **state)
{
    (void)state;
    char text[1024];
    /* absent: defaults, and nothing a run needs (the run refuses, naming the key) */
    Config *cfg = expect_ok(base);
    const PitrConfig *pc = config_scenario(cfg, "point_in_time")->data;
    assert_null(pc->data_directory);
    assert_int_equal(pc->side_port, 0);
    assert_int_equal(pc->n_switch_command, 0);
    assert_int_equal(pc->n_run_as, 0);
    assert_string_equal(pc->pg_ctl, "/usr/lib/postgresql/15/bin/pg_ctl");
    assert_string_equal(pc->tar, "/bin/tar");
    assert_int_equal(pc->start_timeout_ms, 600000);
    assert_int_equal(config_scenario(cfg, "point_in_time")->rto_ms, 30 * 60 * 1000);
    config_free(cfg);

    snprintf(text, sizeof(text), "%sscenarios:\n  point_in_time:\n    mode: manual\n    data_directory: /pg/main\n"
             "    side_port: 5499\n    run_as: [/usr/sbin/runuser, -u, postgres, --]\n    start_timeout: 90s\n"
             "    validation_queries: [\"SELECT 1\", \"SELECT 2\"]\n    switch_command: [/sw, -o, \"-p 5432\"]\n", base);
    cfg = expect_ok(text);
    const ConfigScenario *sc = config_scenario(cfg, "point_in_time");
    ConfigScenario one;
    assert_int_equal(config_scenario_copy(sc, &one), 0);
    config_free(cfg);
    pc = one.data; /* a deep copy: it outlives the Config */
    assert_true(one.manual);
    assert_string_equal(pc->data_directory, "/pg/main");
    assert_int_equal(pc->side_port, 5499);
    assert_int_equal(pc->n_run_as, 4);
    assert_string_equal(pc->run_as[3], "--");
    assert_int_equal(pc->start_timeout_ms, 90000);
    assert_int_equal(pc->n_validation_queries, 2);
    assert_int_equal(pc->n_switch_command, 3);
    assert_string_equal(pc->switch_command[2], "-p 5432");
    config_scenario_free(&one);

    /* paths go into restore_command and pg_ctl's arguments: absolute, no quotes */
    snprintf(text, sizeof(text), "%sscenarios:\n  point_in_time:\n    data_directory: pg/main\n", base);
    expect_error(text, "'scenarios.point_in_time.data_directory' must be an absolute path without quotes");
    snprintf(text, sizeof(text), "%sscenarios:\n  point_in_time:\n    scratch_directory: \"/x'y\"\n", base);
    expect_error(text, "'scenarios.point_in_time.scratch_directory' must be an absolute path without quotes");
    snprintf(text, sizeof(text), "%sscenarios:\n  point_in_time:\n    side_port: 70000\n", base);
    expect_error(text, "scenarios.point_in_time.side_port");
    snprintf(text, sizeof(text), "%sscenarios:\n  point_in_time:\n    switch_command: [pitr-switch]\n", base);
    expect_error(text, "'scenarios.point_in_time.switch_command' must start with an absolute program path");
    snprintf(text, sizeof(text), "%sscenarios:\n  point_in_time:\n    run_as: [runuser]\n", base);
    expect_error(text, "'scenarios.point_in_time.run_as' must start with an absolute program path");
    snprintf(text, sizeof(text), "%sscenarios:\n  point_in_time:\n    start_timeout: 7h\n", base);
    expect_error(text, "'scenarios.point_in_time.start_timeout' is at most 6h");
}

static void test_backup_physical(void **state)
{
    (void)state;
    char text[1024];
    /* Defaults: the section may be absent; conninfo falls back to backup.conninfo. */
    snprintf(text, sizeof(text), "%sbackup:\n  directory: /b\n  key_file: /k\n  conninfo: \"dbname=shop\"\n", base);
    Config *cfg = expect_ok(text);
    assert_string_equal(cfg->backup.physical_pg_basebackup, "/usr/lib/postgresql/15/bin/pg_basebackup");
    assert_string_equal(cfg->backup.physical_conninfo, "dbname=shop");
    assert_int_equal(cfg->backup.n_physical_schedules, 0);
    assert_true(cfg->backup.physical_fast_checkpoint);
    ConfigBackup copy;
    assert_int_equal(config_backup_copy(&cfg->backup, &copy), 0);
    assert_string_equal(copy.physical_conninfo, "dbname=shop");
    config_backup_free(&copy);
    config_free(cfg);

    snprintf(text, sizeof(text),
             "%sbackup:\n  directory: /b\n  key_file: /k\n  physical:\n    schedules: [\"0 */6 * * *\", \"30 1 * * *\"]\n"
             "    pg_basebackup: /opt/pgbb\n    conninfo: \"user=repl\"\n    checkpoint: spread\n",
             base);
    cfg = expect_ok(text);
    assert_int_equal(cfg->backup.n_physical_schedules, 2);
    assert_string_equal(cfg->backup.physical_schedules[1], "30 1 * * *");
    assert_string_equal(cfg->backup.physical_pg_basebackup, "/opt/pgbb");
    assert_string_equal(cfg->backup.physical_conninfo, "user=repl");
    assert_false(cfg->backup.physical_fast_checkpoint);
    assert_int_equal(config_backup_copy(&cfg->backup, &copy), 0);
    assert_int_equal(copy.n_physical_schedules, 2);
    assert_string_equal(copy.physical_schedules[0], "0 */6 * * *");
    config_backup_free(&copy);
    config_free(cfg);

    snprintf(text, sizeof(text), "%sbackup:\n  directory: /b\n  key_file: /k\n  physical:\n    schedules: [\"61 * * * *\"]\n",
             base);
    expect_error(text, "'backup.physical.schedules': bad cron schedule '61 * * * *'");
    snprintf(text, sizeof(text), "%sbackup:\n  directory: /b\n  key_file: /k\n  physical:\n    checkpoint: slow\n", base);
    expect_error(text, "checkpoint");
    snprintf(text, sizeof(text), "%sbackup:\n  directory: /b\n  key_file: /k\n  physical:\n    wal: true\n", base);
    expect_error(text, "wal");
}

/* repository.s3: the keys from files only, defaults, and every refusal. */
static void test_repository_s3(void **state)
{
    (void)state;
    char ak[300], sk[300], text[2048];
    snprintf(ak, sizeof(ak), "%s/ak", key_dir);
    snprintf(sk, sizeof(sk), "%s/sk", key_dir);
    FILE *f = fopen(ak, "w");
    assert_non_null(f);
    fputs("AKIDTEST\n", f);
    fclose(f);
    f = fopen(sk, "w");
    assert_non_null(f);
    fputs("s3cr3t/with+chars\n", f);
    fclose(f);
    assert_int_equal(chmod(ak, 0600), 0);
    assert_int_equal(chmod(sk, 0600), 0);
    static const char head[] = "database:\n  conninfo: x\nbackup:\n  directory: /b\n  key_file: /k\n";
    snprintf(text, sizeof(text), "%srepository:\n  s3:\n    endpoint: http://127.0.0.1:9000\n    bucket: drsup\n"
             "    access_key_id_file: %s\n    secret_access_key_file: %s\n", head, ak, sk);
    Config *cfg = expect_ok(text);
    const ConfigOffsite *o = &cfg->offsite;
    assert_true(o->enabled);
    assert_string_equal(o->region, "us-east-1");
    assert_string_equal(o->prefix, "");
    assert_false(o->virtual_host);
    assert_string_equal(o->access_key, "AKIDTEST");
    assert_string_equal(o->secret_key, "s3cr3t/with+chars");
    assert_int_equal(o->part_size, 64ull << 20);
    assert_int_equal(o->concurrency, 4);
    assert_int_equal(o->timeout_ms, 300000);
    assert_int_equal(o->max_attempts, 5);
    assert_int_equal(o->lag_warning_ms, 15 * 60000);
    assert_int_equal(o->lag_critical_ms, 60 * 60000);
    assert_true(o->wal);
    assert_int_equal(o->retention_max_age_ms, 0); /* no rule: nothing is removed from the bucket */
    assert_int_equal(o->keep_monthly, 0);
    ConfigOffsite copy;
    assert_int_equal(config_offsite_copy(o, &copy), 0);
    assert_string_equal(copy.secret_key, o->secret_key);
    assert_ptr_not_equal(copy.secret_key, o->secret_key);
    config_offsite_free(&copy);
    assert_null(copy.secret_key);
    config_free(cfg);
    /* absent: disabled */
    cfg = expect_ok(head);
    assert_false(cfg->offsite.enabled);
    config_free(cfg);
    /* retention: the keys of backup.retention */
    snprintf(text, sizeof(text), "%srepository:\n  s3:\n    endpoint: http://127.0.0.1:9000\n    bucket: drsup\n"
             "    access_key_id_file: %s\n    secret_access_key_file: %s\n    retention:\n      max_age: 90d\n"
             "      monthly: 12\n      weekly: 4\n", head, ak, sk);
    cfg = expect_ok(text);
    assert_int_equal(cfg->offsite.retention_max_age_ms, 90ull * 86400 * 1000);
    assert_int_equal(cfg->offsite.keep_monthly, 12);
    assert_int_equal(cfg->offsite.keep_weekly, 4);
    assert_int_equal(cfg->offsite.keep_daily, 0);
    config_free(cfg);
    snprintf(text, sizeof(text), "%srepository:\n  s3:\n    endpoint: http://127.0.0.1:9000\n    bucket: drsup\n"
             "    access_key_id_file: %s\n    secret_access_key_file: %s\n    retention:\n      yearly: 3\n",
             head, ak, sk);
    expect_error(text, "yearly");

    /* the secret in the YAML itself is an unknown key, never read */
    snprintf(text, sizeof(text), "%srepository:\n  s3:\n    endpoint: http://h\n    bucket: b\n"
             "    access_key_id_file: %s\n    secret_access_key: plain\n", head, ak);
    expect_error(text, "secret_access_key");
    snprintf(text, sizeof(text), "%srepository:\n  s3:\n    endpoint: http://h\n    bucket: b\n"
             "    access_key_id_file: %s\n", head, ak);
    expect_error(text, "needs secret_access_key_file or secret_access_key_credential");
    snprintf(text, sizeof(text), "%srepository:\n  s3:\n    endpoint: http://h/path\n    bucket: Bad_Name\n"
             "    prefix: /x\n    url_style: dns\n    access_key_id_file: %s\n    secret_access_key_file: %s\n"
             "    lag_warning: 2h\n    lag_critical: 1h\n", head, ak, sk);
    expect_error(text, "'repository.s3.endpoint' must be scheme://host[:port] only");
    expect_error(text, "'repository.s3.bucket' must be 1-63 characters");
    expect_error(text, "'repository.s3.prefix' must be empty or end with '/'");
    expect_error(text, "'repository.s3.lag_warning' is above 'lag_critical'");
    expect_error(text, "url_style");
    /* needs backup: */
    snprintf(text, sizeof(text), "database:\n  conninfo: x\nrepository:\n  s3:\n    endpoint: http://h\n"
             "    bucket: b\n    access_key_id_file: %s\n    secret_access_key_file: %s\n", ak, sk);
    expect_error(text, "'repository.s3' needs the 'backup' section");
    /* a secret file others can read is refused */
    assert_int_equal(chmod(sk, 0644), 0);
    snprintf(text, sizeof(text), "%srepository:\n  s3:\n    endpoint: http://h\n    bucket: b\n"
             "    access_key_id_file: %s\n    secret_access_key_file: %s\n", head, ak, sk);
    expect_error(text, "is accessible by group or others");
}

/* drills: the schedule's entries, the rules' defaults, what is refused (the scenario names are
 * checked by drills_check_config, which knows the scenarios). */
static void test_drills_section(void **state)
{
    (void)state;
    char text[2048];
    Config *cfg = expect_ok(base);
    assert_false(cfg->drills.enabled);
    assert_int_equal(cfg->drills.n_schedule, 0);
    assert_int_equal(cfg->drills.max_age_ms, 35ull * 24 * 3600 * 1000);
    assert_true(cfg->drills.free_space_factor == 1.5);
    config_free(cfg);
    snprintf(text, sizeof(text), "%sdrills:\n  schedule:\n    - cron: \"0 4 1 * *\"\n      scenario: database_corruption\n"
             "    - {cron: \"@weekly\", scenario: x}\n  max_age: 8d\n  free_space_factor: \"2.25\"\n", base);
    cfg = expect_ok(text);
    assert_true(cfg->drills.enabled);
    assert_int_equal(cfg->drills.n_schedule, 2);
    assert_string_equal(cfg->drills.schedule[0].cron, "0 4 1 * *");
    assert_string_equal(cfg->drills.schedule[1].scenario, "x");
    assert_int_equal(cfg->drills.max_age_ms, 8ull * 24 * 3600 * 1000);
    assert_true(cfg->drills.free_space_factor == 2.25);
    config_free(cfg);
    snprintf(text, sizeof(text), "%sdrills:\n  schedule:\n    - cron: \"61 * * * *\"\n      scenario: s\n", base);
    expect_error(text, "'drills.schedule[0].cron': bad cron schedule '61 * * * *'");
    snprintf(text, sizeof(text), "%sdrills:\n  schedule:\n    - cron: \"@daily\"\n", base);
    expect_error(text, "missing required key 'drills.schedule[0].scenario'");
    snprintf(text, sizeof(text), "%sdrills:\n  free_space_factor: \"-1\"\n", base);
    expect_error(text, "'drills.free_space_factor' must be a number above 0");
    snprintf(text, sizeof(text), "%sdrills:\n  free_space_factor: lots\n", base);
    expect_error(text, "'drills.free_space_factor' must be a number above 0");
    snprintf(text, sizeof(text), "%sdrills:\n  schedule: \"@daily\"\n", base);
    expect_error(text, "'drills.schedule' must be a list of {cron, scenario}");
}

/* ha: off without the section (node_dir is state_dir); the defaults; what is refused. */
static void test_ha_section(void **state)
{
    (void)state;
    char text[2048];
    Config *cfg = expect_ok(base);
    assert_false(cfg->ha.enabled);
    assert_string_equal(cfg->node_dir, cfg->state_dir);
    config_free(cfg);
    snprintf(text, sizeof(text), "%sstate_dir: /srv/drsup\ncluster: c1\nha:\n  endpoints: [http://127.0.0.1:2379, "
             "https://e2:2379]\n  node: host-a\n", base);
    cfg = expect_ok(text);
    assert_true(cfg->ha.enabled);
    assert_int_equal(cfg->ha.n_endpoints, 2);
    assert_string_equal(cfg->ha.prefix, "/drsupervisor/c1/");
    assert_string_equal(cfg->ha.node, "host-a");
    assert_int_equal(cfg->ha.ttl_ms, 5000);
    assert_int_equal(cfg->ha.poll_interval_ms, 1000);
    assert_int_equal(cfg->ha.request_timeout_ms, 5000 / 3);
    assert_int_equal(cfg->ha.step_down_hold_ms, 30000);
    assert_string_equal(cfg->node_dir, "/srv/drsup/nodes/host-a");
    config_free(cfg);
    snprintf(text, sizeof(text), "%sha:\n  node: a\n", base);
    expect_error(text, "'ha.endpoints' is required");
    snprintf(text, sizeof(text), "%sha:\n  endpoints: [e:2379]\n", base);
    expect_error(text, "'ha.endpoints' must be http:// or https:// URLs, not 'e:2379'");
    snprintf(text, sizeof(text), "%sha:\n  endpoints: [http://e]\n  ttl: 1s\n", base);
    expect_error(text, "ha.ttl");
    snprintf(text, sizeof(text), "%sha:\n  endpoints: [http://e]\n  ttl: 2500ms\n", base);
    expect_error(text, "'ha.ttl' must be whole seconds");
    snprintf(text, sizeof(text), "%sha:\n  endpoints: [http://e]\n  node: a/b\n", base);
    expect_error(text, "'ha.node' must be 1 to 200 characters, no '/'");
    snprintf(text, sizeof(text), "%sha:\n  endpoints: [http://e]\n  prefix: x/\n", base);
    expect_error(text, "'ha.prefix' must start and end with '/'");
    snprintf(text, sizeof(text), "%sha:\n  endpoints: [http://e]\n  ttl: 2s\n  poll_interval: 3s\n", base);
    expect_error(text, "'ha.poll_interval' must be shorter than 'ha.ttl'");
    snprintf(text, sizeof(text), "%sha:\n  endpoints: [http://e]\n  leader: x\n", base);
    expect_error(text, "ha.leader");
}

int main(void)
{
    /* As drsupervisord does before its first load, plus a section of the test's own. */
    if (scenario_register_config() < 0 || config_register_scenario_section(&fake_section) < 0)
        return 1;
    snprintf(key_dir, sizeof(key_dir), "/tmp/drsup-test-config.XXXXXX");
    if (!mkdtemp(key_dir))
        return 1;
    snprintf(key_path, sizeof(key_path), "%s/k", key_dir);
    FILE *kf = fopen(key_path, "w");
    if (!kf || fputs("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", kf) < 0 || fclose(kf) != 0 ||
        chmod(key_path, 0600) != 0)
        return 1;
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_uses_defaults), cmocka_unit_test(test_full_values),
        cmocka_unit_test(test_error_paths_with_positions),
        cmocka_unit_test(test_child_conninfo_secrets_refused), cmocka_unit_test(test_conninfo_passwords_refused),
        cmocka_unit_test(test_backup_key_checked_at_load), cmocka_unit_test(test_audit_rotation),
        cmocka_unit_test(test_every_error_is_reported),
        cmocka_unit_test(test_missing_file), cmocka_unit_test(test_secret_files_checked_without_blocking), cmocka_unit_test(test_durations), cmocka_unit_test(test_sizes),
        cmocka_unit_test(test_post_resume_checks),
        cmocka_unit_test(test_watched_tables), cmocka_unit_test(test_ha_section),
        cmocka_unit_test(test_empty_lists_take_the_defaults_without_leaking),
        cmocka_unit_test(test_scenario_sections),
        cmocka_unit_test(test_point_in_time_section),
        cmocka_unit_test(test_backup_physical),
        cmocka_unit_test(test_repository_s3),
        cmocka_unit_test(test_drills_section),
    };
    int failed = cmocka_run_group_tests_name("config", tests, NULL, NULL);
    static const char *const made[] = {"k", "open", "short", "theirs", "bk", "ak", "sk"};
    for (size_t i = 0; i < sizeof(made) / sizeof(made[0]); i++) {
        char p[128];
        snprintf(p, sizeof(p), "%s/%s", key_dir, made[i]);
        unlink(p);
    }
    rmdir(key_dir);
    return failed;
}
