/*
 * Unit tests for daemon/outbox (durable alert files) and the alerts section of daemon/config:
 * write, load in sequence order, sequence numbers derived from the files present (also dead
 * ones), remove, bury, unreadable files set aside, leftover temporaries cleaned; secrets refused
 * when group-readable and never quoted in errors, credentials, route validation.
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
#include <unistd.h>

#include "config/config.h"
#include "err.h"
#include "core/events.h"
#include "alerts/outbox.h"

static char tmpdir[64];
static char obdir[128];

static int setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/test_outbox.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(obdir, sizeof(obdir), "%s/outbox", tmpdir);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static char *msg_text(uint64_t seq, AlertChannel ch, const char *cond)
{
    AlertMsg m = {.seq = seq, .channel = ch, .severity = SEV_CRITICAL, .kind = (char *)(uintptr_t)"alert.test",
                  .condition = (char *)(uintptr_t)cond, .summary = (char *)(uintptr_t)"s",
                  .dedup_key = (char *)(uintptr_t)"drsup:t:x", .ts_ms = 1, .occurrences = 1};
    json_t *j = alertfmt_msg_to_json(&m);
    char *t = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    return t;
}

static void put(uint64_t seq, AlertChannel ch, const char *cond)
{
    char *t = msg_text(seq, ch, cond);
    assert_int_equal(outbox_write(obdir, seq, ch, t), 0);
    free(t);
}

static void test_write_load_remove_bury(void **state)
{
    (void)state;
    OutboxLoad l;
    char path[256];

    assert_int_equal(outbox_prepare(obdir), 0);
    put(12, ALERT_CH_SLACK, "c:1");
    put(3, ALERT_CH_PAGERDUTY, NULL);
    put(40, ALERT_CH_WEBHOOK, "c:2");
    outbox_path(obdir, 12, ALERT_CH_SLACK, path, sizeof(path));
    assert_string_equal(strrchr(path, '/') + 1, "0000000000000012-slack.json");
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);

    assert_int_equal(outbox_load(obdir, 10, &l), 0);
    assert_int_equal(l.n_msgs, 3);
    assert_int_equal(l.msgs[0].seq, 3);
    assert_null(l.msgs[0].condition);
    assert_int_equal(l.msgs[1].seq, 12);
    assert_int_equal(l.msgs[1].channel, ALERT_CH_SLACK);
    assert_int_equal(l.msgs[2].seq, 40);
    assert_int_equal(l.max_seq, 40);
    outbox_load_done(&l);

    /* Delivered: gone. Dead: moved, still counted for the sequence. */
    assert_int_equal(outbox_remove(obdir, 12, ALERT_CH_SLACK), 0);
    assert_int_equal(outbox_remove(obdir, 12, ALERT_CH_SLACK), 0); /* absent counts as removed */
    assert_int_equal(outbox_bury(obdir, 40, ALERT_CH_WEBHOOK), 0);
    assert_int_equal(outbox_load(obdir, 10, &l), 0);
    assert_int_equal(l.n_msgs, 1);
    assert_int_equal(l.n_dead, 1);
    assert_int_equal(l.dead[0].seq, 40);
    assert_int_equal(l.max_seq, 40);
    outbox_load_done(&l);
}

static void test_bad_files_and_temporaries(void **state)
{
    (void)state;
    OutboxLoad l;
    char path[256];
    FILE *f;

    assert_int_equal(outbox_prepare(obdir), 0);
    put(5, ALERT_CH_PAGERDUTY, "c");
    snprintf(path, sizeof(path), "%s/0000000000000007-slack.json", obdir);
    f = fopen(path, "w");
    fputs("{not json", f);
    fclose(f);
    snprintf(path, sizeof(path), "%s/0000000000000009-pagerduty.json", obdir);
    char *t = msg_text(8, ALERT_CH_PAGERDUTY, "c"); /* name and content disagree */
    f = fopen(path, "w");
    fputs(t, f);
    fclose(f);
    free(t);
    snprintf(path, sizeof(path), "%s/.0000000000000010-slack.json.tmp.1.abc", obdir);
    f = fopen(path, "w");
    fclose(f);
    snprintf(path, sizeof(path), "%s/README", obdir);
    f = fopen(path, "w");
    fclose(f);

    assert_int_equal(outbox_load(obdir, 10, &l), 0);
    assert_int_equal(l.n_msgs, 1);
    assert_int_equal(l.n_bad, 2);
    assert_int_equal(l.n_temps, 1);
    assert_int_equal(l.max_seq, 9);
    outbox_load_done(&l);
    snprintf(path, sizeof(path), "%s/dead/0000000000000007-slack.json.bad", obdir);
    assert_int_equal(access(path, F_OK), 0);
    snprintf(path, sizeof(path), "%s/.0000000000000010-slack.json.tmp.1.abc", obdir);
    assert_int_equal(access(path, F_OK), -1);
}

static void test_dead_letters_bounded(void **state)
{
    (void)state;
    OutboxLoad l;
    assert_int_equal(outbox_prepare(obdir), 0);
    for (uint64_t s = 1; s <= 6; s++) {
        put(s, ALERT_CH_WEBHOOK, NULL);
        assert_int_equal(outbox_bury(obdir, s, ALERT_CH_WEBHOOK), 0);
    }
    assert_int_equal(outbox_load(obdir, 4, &l), 0);
    assert_int_equal(l.n_dead, 4);
    assert_int_equal(l.dead[0].seq, 3); /* the newest four */
    assert_int_equal(l.max_seq, 6);
    outbox_load_done(&l);
}

/* ---- configuration: alerts section ---- */

static char *write_secret(const char *name, const char *text, mode_t mode)
{
    static char path[256];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    fputs(text, f);
    fclose(f);
    chmod(path, mode);
    return path;
}

static int load(const char *alerts_yaml, Config **cfg, char **errors)
{
    char text[4096];
    snprintf(text, sizeof(text), "state_dir: /tmp\ndatabase:\n  conninfo: host=x\nalerts:\n%s", alerts_yaml);
    return config_load_string("t.yaml", text, cfg, errors);
}

static void test_config_alerts(void **state)
{
    (void)state;
    Config *cfg = NULL;
    char *errors = NULL;
    char yaml[2048];

    char *key = write_secret("pd.key", "ROUTINGKEY123\n", 0600);
    snprintf(yaml, sizeof(yaml), "  pagerduty:\n    routing_key_file: %s\n  retry: {base: 50ms, cap: 1s}\n", key);
    assert_int_equal(load(yaml, &cfg, &errors), 0);
    assert_true(cfg->alerts.enabled);
    assert_string_equal(cfg->alerts.pd_routing_key, "ROUTINGKEY123");
    assert_string_equal(cfg->alerts.pd_url, "https://events.pagerduty.com/v2/enqueue");
    assert_int_equal(cfg->alerts.retry_base_ms, 50);
    assert_int_equal(cfg->alerts.n_routes, 1); /* default: error and worse to every channel */
    assert_int_equal(cfg->alerts.routes[0].channels, 1u << ALERT_CH_PAGERDUTY);
    assert_int_equal(cfg->alerts.routes[0].min_severity, SEV_ERROR);
    config_free(cfg);

    /* Group-readable: refused, and the secret is not quoted. */
    chmod(key, 0640);
    assert_int_equal(load(yaml, &cfg, &errors), DR_ECONFIG);
    assert_non_null(strstr(errors, "group or others"));
    if (!strstr(errors, "t.yaml:6:"))
        print_error("%s\n", errors);
    assert_non_null(strstr(errors, "t.yaml:6:"));
    assert_null(strstr(errors, "ROUTINGKEY"));
    free(errors);

    /* Credentials: $CREDENTIALS_DIRECTORY, and names only. */
    write_secret("slackurl", "http://127.0.0.1:9/hook", 0400);
    setenv("CREDENTIALS_DIRECTORY", tmpdir, 1);
    assert_int_equal(load("  slack:\n    webhook_url_credential: slackurl\n", &cfg, &errors), 0);
    assert_string_equal(cfg->alerts.slack_url, "http://127.0.0.1:9/hook");
    config_free(cfg);
    assert_int_equal(load("  slack:\n    webhook_url_credential: ../slackurl\n", &cfg, &errors), DR_ECONFIG);
    assert_non_null(strstr(errors, "must be a credential name"));
    free(errors);
    unsetenv("CREDENTIALS_DIRECTORY");

    /* Routes must name configured channels. */
    assert_int_equal(load("  webhook: {url: 'http://127.0.0.1:1/x'}\n  routes:\n"
                          "    - {match: {min_severity: warning, kind: 'probe.*'}, channels: [webhook, slack]}\n"
                          "    - {match: {min_severity: loud}, channels: [fax]}\n",
                          &cfg, &errors),
                     DR_ECONFIG);
    assert_non_null(strstr(errors, "sends to slack, which is not configured"));
    assert_non_null(strstr(errors, "unknown channel 'fax'"));
    assert_non_null(strstr(errors, "min_severity"));
    free(errors);

    /* No section: disabled. */
    assert_int_equal(config_load_string("t.yaml", "state_dir: /tmp\ndatabase:\n  conninfo: host=x\n", &cfg, &errors),
                     0);
    assert_false(cfg->alerts.enabled);
    config_free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_load_remove_bury, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_files_and_temporaries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dead_letters_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_config_alerts, setup, teardown),
    };
    return cmocka_run_group_tests_name("outbox", tests, NULL, NULL);
}
