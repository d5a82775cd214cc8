/*
 * Unit tests for daemon/cap/reconcile's position rules: the comparison of the exchange's positions
 * with the database's (a symbol missing on one side is quantity 0; tolerances), and what counts as
 * a mismatch while the platform trades: only a symbol that differs both from the exchange read
 * before the database and from the exchange read again after it (a trade recorded between the
 * reads puts the database ahead of the first read and level with the second).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <string.h>

#include "cap/reconcile.h"

static json_t *db_of(const char *text)
{
    json_t *j = json_loads(text, 0, NULL);
    assert_non_null(j);
    return j;
}

static void test_compare_finds_quantity_and_missing_symbols(void **state)
{
    (void)state;
    json_t *ex = db_of("[{\"symbol\":\"BTC\",\"quantity\":2,\"avg_price\":100},"
                       "{\"symbol\":\"ETH\",\"quantity\":\"0\",\"avg_price\":null}]");
    json_t *db = db_of("{\"BTC\":{\"quantity\":\"2\",\"avg_price\":\"100\"},\"SOL\":{\"quantity\":\"5\"}}");
    json_t *m = reconcile_compare_positions(ex, db, 0, 0);
    assert_int_equal(json_array_size(m), 1); /* SOL: 0 on the exchange, 5 in the database */
    assert_string_equal(json_string_value(json_object_get(json_array_get(m, 0), "symbol")), "SOL");
    json_decref(m);
    json_decref(ex);
    json_decref(db);
}

/* The database read between two exchange reads, a trade recorded in between: level with the late
 * read, so no mismatch; a symbol wrong against both reads stays one. */
static void test_a_trade_between_the_reads_is_not_a_mismatch(void **state)
{
    (void)state;
    json_t *first = db_of("[{\"symbol\":\"BTC\",\"quantity\":2},{\"symbol\":\"ETH\",\"quantity\":1}]");
    json_t *late = db_of("[{\"symbol\":\"BTC\",\"quantity\":3},{\"symbol\":\"ETH\",\"quantity\":1}]");
    json_t *db = db_of("{\"BTC\":{\"quantity\":\"3\"},\"ETH\":{\"quantity\":\"7\"}}");
    json_t *m1 = reconcile_compare_positions(first, db, 0, 0);
    json_t *m2 = reconcile_compare_positions(late, db, 0, 0);
    assert_int_equal(json_array_size(m1), 2); /* BTC moved by the trade, ETH really wrong */
    assert_int_equal(json_array_size(m2), 1);
    json_t *both = reconcile_mismatched_in_both(m1, m2);
    assert_int_equal(json_array_size(both), 1);
    assert_string_equal(json_string_value(json_object_get(json_array_get(both, 0), "symbol")), "ETH");
    json_decref(both);
    /* nothing late (no second read): nothing is excused */
    json_t *none = json_array();
    json_t *b2 = reconcile_mismatched_in_both(m1, none);
    assert_int_equal(json_array_size(b2), 0);
    json_decref(b2);
    json_decref(none);
    json_decref(m1);
    json_decref(m2);
    json_decref(first);
    json_decref(late);
    json_decref(db);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_compare_finds_quantity_and_missing_symbols),
        cmocka_unit_test(test_a_trade_between_the_reads_is_not_a_mismatch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
