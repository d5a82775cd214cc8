/*
 * Unit tests for daemon/observe/replication's classification of a standby from one round's
 * samples (no server): zero lag on an idle primary whatever the replay timestamp says, byte and
 * time thresholds, every way replication is broken, the primary's failure left unjudged; and the
 * replication section's refusals in the configuration.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "err.h"
#include "observe/replication.h"

static const ConfigReplication cfg = {.lag_warning_ms = 300000, .lag_critical_ms = 600000,
                                      .lag_bytes_warning = 64u << 20, .lag_bytes_critical = 1u << 30, .debounce = 2};

static ReplState classify(const char *primary, const char *standby, int64_t *bytes, double *secs, char *why)
{
    json_t *p = json_loads(primary, 0, NULL), *s = json_loads(standby, 0, NULL);
    assert_non_null(p);
    assert_non_null(s);
    ReplState st = replication_classify(&cfg, "pg2", p, s, bytes, secs, why, 400);
    json_decref(p);
    json_decref(s);
    return st;
}

#define STANDBY_OK "{\"reachable\":true,\"in_recovery\":true,\"receiver\":{\"status\":\"streaming\"},\"replay_age_s\":%s}"
#define PRIMARY(row) "{\"reachable\":true,\"in_recovery\":false,\"standbys\":[" row "]}"

static void test_idle_primary_is_no_lag(void **state)
{
    (void)state;
    int64_t b;
    double s;
    char why[400];
    char standby[256];
    /* the last replayed transaction is an hour old: the primary has written nothing since */
    snprintf(standby, sizeof(standby), STANDBY_OK, "3600");
    assert_int_equal(classify(PRIMARY("{\"name\":\"pg2\",\"lag_bytes\":0,\"replay_lag_s\":null}"), standby, &b, &s, why),
                     REPL_OK);
    assert_int_equal(b, 0);
    assert_true(s == 0);
}

static void test_thresholds(void **state)
{
    (void)state;
    int64_t b;
    double s;
    char why[400], standby[256];
    snprintf(standby, sizeof(standby), STANDBY_OK, "1");
    assert_int_equal(classify(PRIMARY("{\"name\":\"pg2\",\"lag_bytes\":1024,\"replay_lag_s\":0.2}"), standby, &b, &s, why),
                     REPL_OK);
    assert_int_equal(classify(PRIMARY("{\"name\":\"pg2\",\"lag_bytes\":70000000,\"replay_lag_s\":0.2}"), standby, &b, &s,
                              why),
                     REPL_LAG_WARNING);
    assert_non_null(strstr(why, "70000000 bytes of WAL not replayed"));
    assert_int_equal(classify(PRIMARY("{\"name\":\"pg2\",\"lag_bytes\":2000000000,\"replay_lag_s\":1}"), standby, &b, &s,
                              why),
                     REPL_LAG_CRITICAL);
    /* time: the primary's replay_lag, else the standby's replay age */
    assert_int_equal(classify(PRIMARY("{\"name\":\"pg2\",\"lag_bytes\":10,\"replay_lag_s\":301}"), standby, &b, &s, why),
                     REPL_LAG_WARNING);
    snprintf(standby, sizeof(standby), STANDBY_OK, "700");
    assert_int_equal(classify(PRIMARY("{\"name\":\"pg2\",\"lag_bytes\":10,\"replay_lag_s\":null}"), standby, &b, &s, why),
                     REPL_LAG_CRITICAL);
    assert_true(s == 700);
}

static void test_broken_and_unknown(void **state)
{
    (void)state;
    int64_t b;
    double s;
    char why[400], standby[256];
    snprintf(standby, sizeof(standby), STANDBY_OK, "1");
    const char *row = PRIMARY("{\"name\":\"pg2\",\"lag_bytes\":0}");
    assert_int_equal(classify(row, "{\"reachable\":false,\"error\":\"connection refused\"}", &b, &s, why), REPL_BROKEN);
    assert_string_equal(why, "cannot ask the standby: connection refused");
    assert_int_equal(classify(row, "{\"reachable\":true,\"in_recovery\":false}", &b, &s, why), REPL_BROKEN);
    assert_non_null(strstr(why, "not in recovery"));
    assert_int_equal(classify(row, "{\"reachable\":true,\"in_recovery\":true,\"receiver\":null}", &b, &s, why), REPL_BROKEN);
    assert_string_equal(why, "no WAL receiver streaming (no receiver)");
    assert_int_equal(classify(row, "{\"reachable\":true,\"in_recovery\":true,\"receiver\":{\"status\":\"waiting\"}}", &b, &s,
                              why),
                     REPL_BROKEN);
    assert_string_equal(why, "no WAL receiver streaming (status waiting)");
    /* connected to something, but not to the primary under its name */
    assert_int_equal(classify(PRIMARY("{\"name\":\"other\",\"lag_bytes\":0}"), standby, &b, &s, why), REPL_BROKEN);
    assert_non_null(strstr(why, "no pg_stat_replication row with application_name 'pg2'"));
    /* connected, but no replay position reported yet: not judged */
    assert_int_equal(classify(PRIMARY("{\"name\":\"pg2\",\"lag_bytes\":null}"), standby, &b, &s, why), REPL_UNKNOWN);
    /* the primary cannot be asked: not the standby's fault, nothing judged */
    assert_int_equal(classify("{\"reachable\":false,\"error\":\"timeout\"}", standby, &b, &s, why), REPL_UNKNOWN);
    assert_int_equal(classify("{\"reachable\":true,\"in_recovery\":true}", standby, &b, &s, why), REPL_UNKNOWN);
}

static void expect_error(const char *text, const char *want)
{
    Config *c = NULL;
    char *errors = NULL;
    assert_int_equal(config_load_string("t.yaml", text, &c, &errors), DR_ECONFIG);
    if (!errors || !strstr(errors, want))
        fail_msg("errors:\n%s\nexpected to contain:\n%s", errors ? errors : "(none)", want);
    free(errors);
}

static void test_config(void **state)
{
    (void)state;
    const char *db = "database:\n  conninfo: \"host=h dbname=t\"\n";
    char text[1024];
    snprintf(text, sizeof(text), "%sreplication:\n  nodes:\n    - {name: a, conninfo: \"host=a\", role: primary}\n"
                                 "    - {name: b, conninfo: \"host=b\"}\n", db);
    Config *c = NULL;
    char *errors = NULL;
    assert_int_equal(config_load_string("t.yaml", text, &c, &errors), 0);
    assert_true(c->replication.enabled);
    assert_int_equal(c->replication.n_nodes, 2);
    assert_true(c->replication.nodes[0].primary);
    assert_false(c->replication.nodes[1].primary);
    assert_int_equal(c->replication.lag_warning_ms, 300000);
    assert_int_equal(c->replication.lag_bytes_critical, 1u << 30);
    config_free(c);
    snprintf(text, sizeof(text), "%sreplication:\n  nodes:\n    - {name: a, conninfo: \"host=a\"}\n", db);
    expect_error(text, "exactly one node with role: primary (it has 0)");
    snprintf(text, sizeof(text), "%sreplication:\n  nodes:\n    - {name: a, conninfo: \"host=a\", role: primary}\n"
                                 "    - {name: a, conninfo: \"host=b\"}\n", db);
    expect_error(text, "the name 'a' is used twice");
    snprintf(text, sizeof(text), "%sreplication:\n  nodes:\n    - {name: \"a b\", conninfo: \"host=a\", role: primary}\n", db);
    expect_error(text, "must be a non-empty word");
    snprintf(text, sizeof(text), "%sreplication:\n  nodes:\n    - {name: a, conninfo: \"colour=blue\", role: primary}\n", db);
    expect_error(text, "'replication.nodes[0].conninfo'");
    snprintf(text, sizeof(text), "%sreplication:\n  interval: 1s\n", db);
    expect_error(text, "'replication' needs 'nodes'");
    snprintf(text, sizeof(text), "%sreplication:\n  lag_warning: 1h\n  lag_critical: 1m\n  nodes:\n"
                                 "    - {name: a, conninfo: \"host=a\", role: primary}\n", db);
    expect_error(text, "'replication.lag_warning' is above 'lag_critical'");
    snprintf(text, sizeof(text), "%sfailover:\n  fence: [/bin/true]\n", db);
    expect_error(text, "'failover' needs 'replication.nodes'");
    snprintf(text, sizeof(text), "%sreplication:\n  nodes:\n    - {name: a, conninfo: \"host=a\", role: primary}\n"
                                 "failover:\n  fence: [fence-it]\n", db);
    expect_error(text, "'failover.fence' must start with an absolute path");
    snprintf(text, sizeof(text), "%sreplication:\n  nodes:\n    - {name: a, conninfo: \"host=a\", role: primary}\n"
                                 "failover:\n  fence_check: [/bin/true]\n", db);
    expect_error(text, "'failover.fence_check' checks a 'fence' hook, which is not configured");
    snprintf(text, sizeof(text), "%sreplication:\n  nodes:\n    - {name: a, conninfo: \"host=a\", role: primary}\n"
                                 "    - {name: b, conninfo: \"host=b\", priority: 0}\nfailover:\n  fence: [/bin/true]\n"
                                 "  repoint: [/bin/true]\n", db);
    assert_int_equal(config_load_string("t.yaml", text, &c, &errors), 0);
    assert_int_equal(c->replication.nodes[1].priority, 0);
    assert_int_equal(c->replication.nodes[0].priority, 100);
    assert_true(c->replication.failover.enabled);
    assert_int_equal(c->replication.failover.maximum_lag_bytes, 1u << 20);
    assert_int_equal(c->replication.failover.n_repoint, 1);
    assert_int_equal(c->replication.failover.grace_ms, 3000); /* the default */
    config_free(c);
}

/* ---- the promotion candidate ---- */

static ReplCandidate cand(const char *name, int64_t prio, ReplState st, int64_t lag, int64_t tl, uint64_t lsn)
{
    return (ReplCandidate){.name = name, .priority = prio, .state = st, .lag_bytes = lag, .timeline = tl,
                           .received_lsn = lsn};
}

static void test_candidate_most_wal_received_then_priority(void **state)
{
    (void)state;
    /* b received more WAL than a though a has the higher priority: b */
    ReplCandidate c[] = {cand("a", 200, REPL_OK, 100, 1, 0x5000), cand("b", 100, REPL_LAG_WARNING, 900, 1, 0x6000)};
    assert_int_equal(replication_choose_candidate(c, 2, 1, 1 << 20), 1);
    assert_string_equal(c[0].why_not, "");
    /* the same position: the higher priority */
    c[1] = cand("b", 100, REPL_OK, 100, 1, 0x5000);
    c[0].why_not[0] = '\0';
    assert_int_equal(replication_choose_candidate(c, 2, 1, 1 << 20), 0);
    /* positions unknown: the least behind, then priority */
    ReplCandidate d[] = {cand("a", 300, REPL_OK, 5000, -1, 0), cand("b", 100, REPL_OK, 10, -1, 0),
                         cand("c", 200, REPL_OK, 10, -1, 0)};
    assert_int_equal(replication_choose_candidate(d, 3, -1, 1 << 20), 2);
}

static void test_candidate_refusals(void **state)
{
    (void)state;
    ReplCandidate c[] = {
        cand("never", 0, REPL_OK, 0, 1, 0x9000),            /* priority 0 */
        cand("broken", 100, REPL_BROKEN, 0, 1, 0x9000),     /* not replicating */
        cand("unknown", 100, REPL_UNKNOWN, 0, 1, 0x9000),   /* not judged */
        cand("behind", 100, REPL_OK, (1 << 20) + 1, 1, 0x9000), /* beyond maximum_lag */
        cand("fork", 100, REPL_OK, 0, 2, 0x9000),           /* another timeline */
        cand("gone", 100, REPL_OK, 0, 1, 0x9000),           /* the caller's reason */
    };
    strcpy(c[5].why_not, "cannot be asked now");
    assert_int_equal(replication_choose_candidate(c, 6, 1, 1 << 20), -1);
    assert_string_equal(c[0].why_not, "priority 0: never promoted");
    assert_string_equal(c[1].why_not, "replication is broken");
    assert_string_equal(c[2].why_not, "its replication is not known yet");
    assert_non_null(strstr(c[3].why_not, "1048577 bytes behind, more than failover.maximum_lag (1048576)"));
    assert_string_equal(c[4].why_not, "on another timeline than the primary");
    assert_string_equal(c[5].why_not, "cannot be asked now");
    /* exactly at the limit is within it; an unknown timeline is not compared */
    ReplCandidate e[] = {cand("edge", 100, REPL_LAG_CRITICAL, 1 << 20, -1, 0)};
    assert_int_equal(replication_choose_candidate(e, 1, 1, 1 << 20), 0);
}

/* The rule of failover-status and readiness' failover.ready: a missing fence hook is no blocker
 * while the daemon fences by itself (failover.self_fence stop or read_only), and says which
 * measure it would take; with self_fence off it is. */
static void test_failover_rule_knows_self_fence(void **state)
{
    (void)state;
    char bin_true[] = "/bin/true";
    char *hook[] = {bin_true, NULL};
    ConfigFailover f = {.enabled = true, .repoint = hook, .n_repoint = 1, .self_fence = CONFIG_SELF_FENCE_STOP};
    ReplFailoverFacts x = {.candidate = true, .fence_check_ok = true, .primary_has_stop = true};
    ReplFenceBy by = REPL_FENCE_HOOK;

    /* no hook, self_fence stop (the default), the primary has a stop command: stopped */
    assert_null(replication_failover_rule(&f, &x, &by));
    assert_int_equal(by, REPL_FENCE_STOP);
    assert_string_equal(replication_fence_by_name(by), "stop");
    /* stop, but no stop command for the primary: read-only (steps/fence.c goes on to it) */
    x.primary_has_stop = false;
    assert_null(replication_failover_rule(&f, &x, &by));
    assert_int_equal(by, REPL_FENCE_READ_ONLY);
    f.self_fence = CONFIG_SELF_FENCE_READ_ONLY;
    x.primary_has_stop = true;
    assert_null(replication_failover_rule(&f, &x, &by));
    assert_int_equal(by, REPL_FENCE_READ_ONLY);
    /* off and no hook: the old primary could keep accepting writes */
    f.self_fence = CONFIG_SELF_FENCE_OFF;
    const char *why = replication_failover_rule(&f, &x, &by);
    assert_non_null(why);
    assert_int_equal(by, REPL_FENCE_NONE);
    assert_string_equal(replication_fence_by_name(by), "none");
    assert_non_null(strstr(why, "failover.self_fence is off"));
    /* a hook fences whatever self_fence says */
    f.fence = hook;
    f.n_fence = 1;
    assert_null(replication_failover_rule(&f, &x, &by));
    assert_int_equal(by, REPL_FENCE_HOOK);
    /* the other blockers, in order: the section, the candidate, the fence check, the repoint hook */
    x.fence_check_ok = false;
    assert_string_equal(replication_failover_rule(&f, &x, NULL), "the fence check failed");
    x.candidate = false;
    assert_string_equal(replication_failover_rule(&f, &x, NULL), "no standby is eligible (see candidates)");
    f.enabled = false;
    assert_string_equal(replication_failover_rule(&f, &x, NULL), "no failover section is configured");
    f.enabled = x.candidate = x.fence_check_ok = true;
    f.n_repoint = 0;
    assert_non_null(strstr(replication_failover_rule(&f, &x, NULL), "no repoint hook"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_primary_is_no_lag),
        cmocka_unit_test(test_thresholds),
        cmocka_unit_test(test_broken_and_unknown),
        cmocka_unit_test(test_config),
        cmocka_unit_test(test_candidate_most_wal_received_then_priority),
        cmocka_unit_test(test_candidate_refusals),
        cmocka_unit_test(test_failover_rule_knows_self_fence),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
