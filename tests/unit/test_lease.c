/*
 * Unit tests for daemon/core/lease: the recovery lease and the disturbances its holder declares.
 * Which probe failures a declaration matches (the run's own rename: "does not exist", "not
 * currently accepting connections", a terminated session) and which it never matches (the server
 * refusing connections, a timeout, another database, a free lease), what is counted, and that a
 * declaration ends with the lease; a declaration made aside (a drill's scratch database) needs no
 * lease, outlives the holder's release, and never replaces or is replaced by the holder's.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "core/lease.h"

static LeaseDisturbance shop_away(void)
{
    LeaseDisturbance d;
    memset(&d, 0, sizeof(d));
    snprintf(d.database, sizeof(d.database), "shop");
    d.kinds = LEASE_DB_MISSING | LEASE_DB_REFUSING | LEASE_DB_TERMINATED;
    snprintf(d.run, sizeof(d.run), "run-1");
    snprintf(d.scenario, sizeof(d.scenario), "database_corruption");
    snprintf(d.step, sizeof(d.step), "preserve_evidence");
    snprintf(d.what, sizeof(d.what), "run-1 renames 'shop'");
    return d;
}

typedef struct {
    const char *database, *sqlstate, *message;
    unsigned kinds;
    bool matches;
} MatchCase;

static const MatchCase match_cases[] = {
    /* the run's own doing */
    {"shop", "", "connection to server at \"127.0.0.1\", port 5432 failed: FATAL:  database \"shop\" does not exist",
     LEASE_DB_MISSING, true},
    {"shop", "3D000", "database \"shop\" does not exist", LEASE_DB_MISSING, true},
    {"shop", "", "FATAL:  database \"shop\" is not currently accepting connections", LEASE_DB_REFUSING, true},
    {"shop", "57P01", "FATAL:  terminating connection due to administrator command", LEASE_DB_TERMINATED, true},
    {"shop", "", "connection to server at \"127.0.0.1\", port 5432 failed: Connection refused", LEASE_DB_STOPPED, true},
    {"shop", "57P03", "FATAL:  the database system is shutting down", LEASE_DB_STOPPED, true},
    /* declared, but not of that kind */
    {"shop", "", "connection to server at \"127.0.0.1\", port 5432 failed: Connection refused",
     LEASE_DB_TERMINATED, false},
    {"shop", "", "FATAL:  database \"shop\" does not exist", LEASE_DB_REFUSING | LEASE_DB_TERMINATED, false},
    {"shop", "57P01", "terminating connection due to administrator command", LEASE_DB_MISSING, false},
    /* never the run's doing (7: every kind but LEASE_DB_STOPPED) */
    {"shop", "", "connection to server at \"127.0.0.1\", port 5432 failed: Connection refused", 7, false},
    {"shop", "", "query timed out after 1000 ms (cancel sent, connection dropped)", 7, false},
    {"shop", "57P03", "FATAL:  the database system is shutting down", 7, false},
    {"shop", "", "the connection to the database was lost: server closed the connection unexpectedly", 7, false},
    {"orders", "", "FATAL:  database \"orders\" does not exist", 7, false},
    {"shop", "", "FATAL:  database \"shop_damaged_x\" does not exist", 7, false},
    {"", "", "FATAL:  database \"\" does not exist", 7, false},
    {"shop", NULL, NULL, 7, false},
};

static void test_what_a_declaration_matches(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        const MatchCase *c = &match_cases[i];
        LeaseDisturbance d = shop_away();
        d.kinds = c->kinds;
        print_message("case %zu: %s / %s / %s\n", i, c->database, c->sqlstate ? c->sqlstate : "(null)",
                      c->message ? c->message : "(null)");
        assert_int_equal(lease_disturbance_matches(&d, c->database, c->sqlstate, c->message), c->matches);
    }
}

static void test_attribution_counts_and_ends_with_the_lease(void **state)
{
    (void)state;
    Lease *l = lease_new();
    LeaseDisturbance d = shop_away(), ended;
    const char *missing = "FATAL:  database \"shop\" does not exist";

    assert_non_null(l);
    /* Nothing is attributed while the lease is free, and nobody may declare then. */
    assert_int_equal(lease_expect(l, &d), -EINVAL);
    assert_null(lease_attribute(l, "shop", "", missing, 10));
    assert_int_equal(lease_take(l, "run run-1"), 0);
    assert_null(lease_attribute(l, "shop", "", missing, 10)); /* held, nothing declared */
    assert_int_equal(lease_expect(l, &d), 0);
    const LeaseDisturbance *a = lease_attribute(l, "shop", "", missing, 100);
    assert_non_null(a);
    assert_string_equal(a->run, "run-1");
    assert_int_equal(a->count, 1);
    assert_null(lease_attribute(l, "shop", "", "Connection refused", 150));
    a = lease_attribute(l, "shop", "", missing, 200);
    assert_int_equal(a->count, 2);
    assert_int_equal(a->first_ms, 100);
    assert_int_equal(a->last_ms, 200);
    assert_string_equal(a->last_error, missing);
    /* A later step re-declares: the count carries on. */
    snprintf(d.step, sizeof(d.step), "restore_database");
    assert_int_equal(lease_expect(l, &d), 0);
    size_t n = 0;
    const LeaseDisturbance *all = lease_disturbances(l, &n);
    assert_int_equal(n, 1);
    assert_string_equal(all[0].step, "restore_database");
    assert_int_equal(all[0].count, 2);
    /* Ending it hands back the record; afterwards nothing matches. */
    assert_true(lease_expect_end(l, "shop", &ended));
    assert_int_equal(ended.count, 2);
    assert_false(lease_expect_end(l, "shop", NULL));
    assert_null(lease_attribute(l, "shop", "", missing, 300));
    /* The release ends every declaration. */
    assert_int_equal(lease_expect(l, &d), 0);
    lease_release(l);
    assert_int_equal(lease_take(l, "run run-2"), 0);
    assert_null(lease_attribute(l, "shop", "", missing, 400));
    lease_disturbances(l, &n);
    assert_int_equal(n, 0);
    lease_free(l);
}

static void test_an_aside_declaration_outlives_the_holder(void **state)
{
    (void)state;
    Lease *l = lease_new();
    LeaseDisturbance scratch = shop_away(), run = shop_away(), ended;
    snprintf(scratch.database, sizeof(scratch.database), "shop_drill_t");
    snprintf(scratch.run, sizeof(scratch.run), "drill-1");
    const char *gone = "FATAL:  database \"shop_drill_t\" does not exist";

    /* declared with the lease free: attributed, the lease still free (the detector halts as usual) */
    assert_int_equal(lease_expect_aside(l, &scratch), 0);
    assert_false(lease_held(l));
    const LeaseDisturbance *a = lease_attribute(l, "shop_drill_t", "3D000", gone, 1000);
    assert_non_null(a);
    assert_string_equal(a->run, "drill-1");
    assert_true(a->aside);
    /* a free lease still attributes nothing else */
    assert_null(lease_attribute(l, "shop", "3D000", "FATAL:  database \"shop\" does not exist", 1000));

    /* a run takes the lease and declares its own: both hold; the release ends only the run's */
    assert_int_equal(lease_take(l, "run run-1"), 0);
    assert_int_equal(lease_expect(l, &run), 0);
    assert_int_equal(lease_expect(l, &scratch), -EINVAL); /* the holder cannot take over the drill's */
    assert_int_equal(lease_expect_aside(l, &run), -EINVAL); /* nor the drill the holder's */
    size_t n = 0;
    lease_disturbances(l, &n);
    assert_int_equal(n, 2);
    lease_release(l);
    lease_disturbances(l, &n);
    assert_int_equal(n, 1);
    assert_non_null(lease_attribute(l, "shop_drill_t", "", gone, 2000));
    assert_null(lease_attribute(l, "shop", "3D000", "FATAL:  database \"shop\" does not exist", 2000));

    /* ended by its declarer, with what was attributed to it */
    assert_true(lease_expect_end(l, "shop_drill_t", &ended));
    assert_int_equal(ended.count, 2); /* before the run and after its release */
    assert_int_equal(ended.first_ms, 1000);
    assert_int_equal(ended.last_ms, 2000);
    assert_null(lease_attribute(l, "shop_drill_t", "", gone, 3000));
    assert_int_equal(lease_expect_aside(l, &(LeaseDisturbance){.kinds = 1}), -EINVAL);
    lease_free(l);
}

static void test_a_port_claim_keeps_others_off_until_released(void **state)
{
    (void)state;
    Lease *l = lease_new();
    assert_null(lease_port_claimant(l, 5434));
    assert_int_equal(lease_port_claim(l, 5434, "drill drill-pitr-1"), 0);
    assert_int_equal(lease_port_claim(l, 5434, "drill drill-pitr-1"), 0); /* again: a no-op */
    assert_int_equal(lease_port_claim(l, 5434, "drill drill-pitr-2"), -EADDRINUSE);
    assert_string_equal(lease_port_claimant(l, 5434), "drill drill-pitr-1");
    /* held across a run taking and releasing the lease */
    assert_int_equal(lease_take(l, "run run-1"), 0);
    lease_release(l);
    assert_non_null(lease_port_claimant(l, 5434));
    assert_null(lease_port_claimant(l, 5435));
    lease_port_release(l, 5434);
    assert_null(lease_port_claimant(l, 5434));
    assert_int_equal(lease_port_claim(l, 5434, "drill drill-pitr-2"), 0);
    assert_int_equal(lease_port_claim(l, 0, "x"), -EINVAL);
    assert_int_equal(lease_port_claim(l, 1, ""), -EINVAL);
    lease_free(l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_what_a_declaration_matches),
        cmocka_unit_test(test_attribution_counts_and_ends_with_the_lease),
        cmocka_unit_test(test_an_aside_declaration_outlives_the_holder),
        cmocka_unit_test(test_a_port_claim_keeps_others_off_until_released),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
