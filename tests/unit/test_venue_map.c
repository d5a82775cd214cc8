/*
 * Unit tests for the venue adapter's dialect work: lib/jpath paths, daemon/cap/venue/venue_map
 * (positions and fills answers through a mapping, numbers kept as text, RFC 3339 and epoch times,
 * sides, the exact error for a missing or unreadable field, pages and duplicates), the window
 * placeholders, the request signature (HMAC-SHA256 against a published vector), the mode read
 * through a path, and the venue section's new keys in the configuration (accepted and refused).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cap/venue/venue.h"
#include "cap/venue/venue_internal.h"
#include "cap/venue/venue_map.h"
#include "config/config.h"
#include "err.h"
#include "jpath.h"

static json_t *J(const char *text)
{
    json_error_t e;
    json_t *j = json_loads(text, JSON_DECODE_ANY, &e);
    if (!j)
        fail_msg("bad test JSON %s: %s", text, e.text);
    return j;
}

/* A literal where the configuration's types hold char * (nothing here writes through it). */
static char *S(const char *s)
{
    union {
        const char *c;
        char *m;
    } u = {.c = s};
    return u.m;
}

static char *plus_fills[2], *minus_fills[2], *plus_pos[1], *minus_pos[1]; /* set in main */

/* The paper venue's names: what a configuration without answer: gets. */
static ConfigVenueMap default_fills(void)
{
    return (ConfigVenueMap){.symbol = S("symbol"), .quantity = S("quantity"), .side = S("side"), .fill_id = S("fill_id"),
                            .client_order_id = S("client_order_id"), .order_id = S(""), .price = S("price"),
                            .fee = S(""), .executed_at = S("executed_at"), .plus = plus_fills, .minus = minus_fills,
                            .n_plus = 2, .n_minus = 2, .time = VENUE_TIME_AUTO};
}

static const VenueMapSource src = {.action = "positions", .request = "GET http://x/p"};

/* ---- paths ---- */

static void test_jpath(void **state)
{
    (void)state;
    json_t *j = J("{\"data\":{\"positions\":[{\"a\":1},{\"a\":2,\"b\":[10,[20,30]]}]},\"m\":\"live\"}");
    assert_int_equal(json_integer_value(jpath_get(j, "data.positions[1].a")), 2);
    assert_int_equal(json_integer_value(jpath_get(j, "data.positions[1].b[1][0]")), 20);
    assert_string_equal(json_string_value(jpath_get(j, "m")), "live");
    assert_ptr_equal(jpath_get(j, ""), j);
    assert_null(jpath_get(j, "data.positions[2]"));
    assert_null(jpath_get(j, "m.x"));        /* a field of a string */
    assert_null(jpath_get(j, "data[0]"));    /* an index of an object */
    assert_null(jpath_get(j, "nothing"));
    char why[200];
    assert_true(jpath_valid("a.b[0].c", why, sizeof(why)));
    assert_true(jpath_valid("[0].mode", why, sizeof(why)));
    const char *bad[] = {"a..b", "a.", ".a", "a[x]", "a[-1]", "a[1", "a]b", "a.[0]", "a[0]b"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (jpath_valid(bad[i], why, sizeof(why)))
            fail_msg("'%s' should be malformed", bad[i]);
    assert_non_null(strstr(why, "malformed path"));
    json_decref(j);
}

/* ---- values ---- */

static void expect_decimal(const char *json, const char *want)
{
    json_t *j = J(json);
    char *d = venue_map_decimal(j);
    if (want == NULL && d)
        fail_msg("%s read as %s", json, d);
    if (want && (!d || strcmp(d, want)))
        fail_msg("%s read as %s, not %s", json, d ? d : "(null)", want);
    free(d);
    json_decref(j);
}

static void test_decimals(void **state)
{
    (void)state;
    expect_decimal("\"0.716\"", "0.716");      /* the text is kept exactly */
    expect_decimal("\"2999.960000\"", "2999.960000");
    expect_decimal("\"-2\"", "-2");
    expect_decimal("\"1e-3\"", "1e-3");
    expect_decimal("\"-.5\"", "-.5");
    expect_decimal("42", "42");
    expect_decimal("0.1", "0.1");              /* the shortest text of the double */
    expect_decimal("-1.5e300", "-1.5e+300");
    expect_decimal("\"n/a\"", NULL);
    expect_decimal("\"\"", NULL);
    expect_decimal("\" 1\"", NULL);
    expect_decimal("\"1.2.3\"", NULL);
    expect_decimal("\"1e\"", NULL);
    expect_decimal("\"nan\"", NULL);
    expect_decimal("\"inf\"", NULL);
    expect_decimal("true", NULL);
    expect_decimal("null", NULL);
    expect_decimal("{}", NULL);
}

static int64_t T(const char *json, int fmt, int want_rc)
{
    json_t *j = J(json);
    int64_t us = -1;
    int r = venue_map_time(j, fmt, &us);
    json_decref(j);
    if ((r == 0) != (want_rc == 0))
        fail_msg("time %s (format %d): rc %d", json, fmt, r);
    return us;
}

static void test_times(void **state)
{
    (void)state;
    const int64_t base = 1764741600LL * 1000000; /* 2025-12-03T06:00:00Z */
    assert_int_equal(T("\"2025-12-03T06:00:00Z\"", VENUE_TIME_RFC3339, 0), base);
    assert_int_equal(T("\"2025-12-03t06:00:00.5z\"", VENUE_TIME_RFC3339, 0), base + 500000);
    assert_int_equal(T("\"2025-12-03 06:00:00.123456Z\"", VENUE_TIME_AUTO, 0), base + 123456);
    assert_int_equal(T("\"2025-12-03T08:00:00+02:00\"", VENUE_TIME_RFC3339, 0), base);
    assert_int_equal(T("\"2025-12-03T05:30:00-00:30\"", VENUE_TIME_RFC3339, 0), base);
    assert_int_equal(T("\"2025-12-03T06:00:00.1234567Z\"", VENUE_TIME_RFC3339, 0), base + 123456); /* beyond µs: cut */
    T("\"2025-12-03T06:00:00\"", VENUE_TIME_RFC3339, -1); /* no zone: refused ... */
    assert_int_equal(T("\"2025-12-03T06:00:00\"", VENUE_TIME_UTC, 0), base); /* ... unless time: utc */
    T("\"2025-13-03T06:00:00Z\"", VENUE_TIME_RFC3339, -1);
    T("\"2025-12-03\"", VENUE_TIME_RFC3339, -1);
    T("\"yesterday\"", VENUE_TIME_AUTO, -1);
    T("1764741600000", VENUE_TIME_RFC3339, -1); /* a number is not RFC 3339 */
    assert_int_equal(T("1764741600000", VENUE_TIME_AUTO, 0), base); /* auto: a number is ms */
    assert_int_equal(T("1764741600", VENUE_TIME_S, 0), base);
    assert_int_equal(T("\"1764741600.25\"", VENUE_TIME_S, 0), base + 250000);
    assert_int_equal(T("1764741600000", VENUE_TIME_MS, 0), base);
    assert_int_equal(T("\"1764741600000123\"", VENUE_TIME_US, 0), base + 123);
    T("-5", VENUE_TIME_MS, -1);
    T("\"12:00\"", VENUE_TIME_MS, -1);
    T("null", VENUE_TIME_AUTO, -1);

    char out[40];
    venue_map_format_time(base + 123456, true, out, sizeof(out));
    assert_string_equal(out, "2025-12-03T06:00:00.123456Z");
    venue_map_format_time(base + 123456, false, out, sizeof(out));
    assert_string_equal(out, "2025-12-03T06:00:00.123Z");
}

static void test_window_placeholders(void **state)
{
    (void)state;
    char buf[VENUE_WINDOW_VARS][40];
    const char *vars[VENUE_WINDOW_VARS][2];
    venue_map_window_vars(1764741600123, 1764745200000, "c/2", buf, vars);
    char *u = venue_expand("/t?from={{since:rfc3339}}&to={{until:s}}&ms={{since}}&us={{since:us}}&c={{cursor}}&x={{nope}}",
                           'u', vars, VENUE_WINDOW_VARS);
    assert_string_equal(u, "/t?from=2025-12-03T06%3A00%3A00.123Z&to=1764745200&ms=1764741600123&us=1764741600123000"
                           "&c=c%2F2&x={{nope}}");
    free(u);
    char *r = venue_expand("{{since:ms}} {{until:rfc3339}}", 'r', vars, VENUE_WINDOW_VARS);
    assert_string_equal(r, "1764741600123 2025-12-03T07:00:00.000Z");
    free(r);
}

/* ---- positions ---- */

static void test_positions_default_names(void **state)
{
    (void)state;
    ConfigVenueMap m = {.symbol = S("symbol"), .quantity = S("quantity"), .avg_price = S("avg_price"), .side = S(""),
                        .plus = plus_pos, .minus = minus_pos, .n_plus = 1, .n_minus = 1};
    json_t *a = J("{\"mode\":\"live\",\"positions\":[{\"symbol\":\"BTC\",\"quantity\":\"-0.5\",\"avg_price\":\"64000.10\"},"
                  "{\"symbol\":\"ETH\",\"quantity\":2,\"avg_price\":3000.5}]}");
    json_t *out = NULL;
    char msg[512];
    assert_int_equal(venue_map_positions(&m, a, NULL, &src, &out, msg, sizeof(msg)), 0);
    char *dump = json_dumps(out, JSON_COMPACT);
    assert_string_equal(dump, "[{\"symbol\":\"BTC\",\"quantity\":\"-0.5\",\"avg_price\":\"64000.10\"},"
                              "{\"symbol\":\"ETH\",\"quantity\":\"2\",\"avg_price\":\"3000.5\"}]");
    free(dump);
    json_decref(out);
    json_decref(a);
    /* a top-level list works too */
    a = J("[{\"symbol\":\"BTC\",\"quantity\":1,\"avg_price\":1}]");
    assert_int_equal(venue_map_positions(&m, a, NULL, &src, &out, msg, sizeof(msg)), 0);
    assert_int_equal(json_array_size(out), 1);
    json_decref(out);
    json_decref(a);
}

static void test_positions_dialect_with_side(void **state)
{
    (void)state;
    ConfigVenueMap m = {.list = S("data.items"), .symbol = S("instrument.code"), .quantity = S("size"), .avg_price = S(""),
                        .side = S("dir"), .plus = plus_pos, .minus = minus_pos, .n_plus = 1, .n_minus = 1};
    json_t *a = J("{\"data\":{\"items\":[{\"instrument\":{\"code\":\"SOL\"},\"size\":\"3\",\"dir\":\"SHORT\"},"
                  "{\"instrument\":{\"code\":\"BTC\"},\"size\":\"+1.5\",\"dir\":\"long\"}]}}");
    json_t *out = NULL;
    char msg[512];
    assert_int_equal(venue_map_positions(&m, a, NULL, &src, &out, msg, sizeof(msg)), 0);
    char *dump = json_dumps(out, JSON_COMPACT);
    /* the side gives the sign (case-insensitive); no average price: null, so prices are not compared */
    assert_string_equal(dump, "[{\"symbol\":\"SOL\",\"quantity\":\"-3\",\"avg_price\":null},"
                              "{\"symbol\":\"BTC\",\"quantity\":\"1.5\",\"avg_price\":null}]");
    free(dump);
    json_decref(out);
    json_decref(a);

    /* a signed quantity with a side, and a side value in neither list, are errors */
    a = J("{\"data\":{\"items\":[{\"instrument\":{\"code\":\"SOL\"},\"size\":\"-3\",\"dir\":\"short\"}]}}");
    assert_int_equal(venue_map_positions(&m, a, NULL, &src, &out, msg, sizeof(msg)), DR_EPROTO);
    assert_null(out);
    assert_non_null(strstr(msg, "positions[0].quantity (path \"size\"): negative although a side field is mapped"));
    json_decref(a);
    a = J("{\"data\":{\"items\":[{\"instrument\":{\"code\":\"SOL\"},\"size\":\"3\",\"dir\":\"flat\"}]}}");
    assert_int_equal(venue_map_positions(&m, a, NULL, &src, &out, msg, sizeof(msg)), DR_EPROTO);
    assert_non_null(strstr(msg, "positions[0].side (path \"dir\"): the value \"flat\" is neither long (long) nor short"));
    json_decref(a);
}

/* The message the issue asks for: element, field, path, action, request and an excerpt. */
static void test_positions_missing_field_is_an_error_never_a_zero(void **state)
{
    (void)state;
    ConfigVenueMap m = {.symbol = S("symbol"), .quantity = S("qty"), .avg_price = S("avg_px"), .side = S(""),
                        .plus = plus_pos, .minus = minus_pos, .n_plus = 1, .n_minus = 1};
    json_t *out = NULL;
    char msg[512];
    json_t *a = J("[{\"symbol\":\"A\",\"qty\":1,\"avg_px\":1},{\"symbol\":\"B\",\"qty\":1,\"avg_px\":1},"
                  "{\"symbol\":\"C\",\"qty\":1,\"avg_px\":1},{\"symbol\":\"ETH-USD\",\"size\":\"1.5\"}]");
    assert_int_equal(venue_map_positions(&m, a, NULL, &src, &out, msg, sizeof(msg)), DR_EPROTO);
    assert_null(out);
    assert_string_equal(msg, "positions[3].quantity (path \"qty\"): missing in the answer of positions (GET http://x/p): "
                             "{\"symbol\":\"ETH-USD\",\"size\":\"1.5\"}");
    json_decref(a);

    const struct { const char *answer, *want; } bad[] = {
        {"[{\"symbol\":\"A\",\"qty\":\"n/a\",\"avg_px\":1}]", "positions[0].quantity (path \"qty\"): not a number"},
        {"[{\"symbol\":\"A\",\"qty\":null,\"avg_px\":1}]", "positions[0].quantity (path \"qty\"): null"},
        {"[{\"symbol\":\"A\",\"qty\":1}]", "positions[0].avg_price (path \"avg_px\"): missing"},
        {"[{\"symbol\":\"\",\"qty\":1,\"avg_px\":1}]", "positions[0].symbol (path \"symbol\"): not a non-empty string"},
        {"[{\"qty\":1,\"avg_px\":1}]", "positions[0].symbol (path \"symbol\"): missing"},
        {"{\"items\":[]}", "positions: the answer of positions (GET http://x/p) is neither a list nor an object with a "
                           "\"positions\" list (set answer.list)"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        a = J(bad[i].answer);
        assert_int_equal(venue_map_positions(&m, a, NULL, &src, &out, msg, sizeof(msg)), DR_EPROTO);
        if (!strstr(msg, bad[i].want))
            fail_msg("answer %s gave\n  %s\nexpected\n  %s", bad[i].answer, msg, bad[i].want);
        json_decref(a);
    }
    /* not JSON at all */
    assert_int_equal(venue_map_positions(&m, NULL, "<html>502 Bad Gateway</html>", &src, &out, msg, sizeof(msg)),
                     DR_EPROTO);
    assert_string_equal(msg, "positions: the answer of positions (GET http://x/p) is not JSON: <html>502 Bad Gateway</html>");
    /* a configured list path that is not there */
    m.list = S("data.positions");
    a = J("{\"data\":{}}");
    assert_int_equal(venue_map_positions(&m, a, NULL, &src, &out, msg, sizeof(msg)), DR_EPROTO);
    assert_non_null(strstr(msg, "positions: no list at path \"data.positions\" in the answer of positions"));
    json_decref(a);
}

/* ---- fills ---- */

static void test_fills_default_names(void **state)
{
    (void)state;
    ConfigVenueMap m = default_fills();
    VenueMapSource fs = {.action = "fills", .request = "GET http://x/f"};
    json_t *into = json_array();
    json_t *a = J("{\"fills\":[{\"fill_id\":\"F1\",\"client_order_id\":\"O1\",\"symbol\":\"BTC\",\"side\":\"buy\","
                  "\"quantity\":\"0.716\",\"price\":\"2999.96\",\"executed_at\":\"2025-12-03T06:00:00.123456Z\"},"
                  "{\"fill_id\":7,\"client_order_id\":\"O2\",\"symbol\":\"BTC\",\"side\":\"SELL\","
                  "\"quantity\":1,\"price\":2.5,\"executed_at\":1764741601000}]}");
    size_t n, added;
    int64_t newest;
    char msg[512];
    assert_int_equal(venue_map_fills(&m, a, NULL, &fs, into, &n, &added, &newest, msg, sizeof(msg)), 0);
    assert_int_equal(n, 2);
    assert_int_equal(added, 2);
    assert_int_equal(newest, 1764741601000LL * 1000);
    char *dump = json_dumps(into, JSON_COMPACT);
    assert_string_equal(dump,
                        "[{\"fill_id\":\"F1\",\"client_order_id\":\"O1\",\"order_id\":null,\"symbol\":\"BTC\",\"side\":\"buy\","
                        "\"quantity\":\"0.716\",\"price\":\"2999.96\",\"fee\":null,\"executed_at\":\"2025-12-03T06:00:00.123456Z\"},"
                        "{\"fill_id\":\"7\",\"client_order_id\":\"O2\",\"order_id\":null,\"symbol\":\"BTC\",\"side\":\"sell\","
                        "\"quantity\":\"1\",\"price\":\"2.5\",\"fee\":null,\"executed_at\":\"2025-12-03T06:00:01.000000Z\"}]");
    free(dump);
    /* the same page again (paging by since overlaps): nothing added */
    assert_int_equal(venue_map_fills(&m, a, NULL, &fs, into, &n, &added, &newest, msg, sizeof(msg)), 0);
    assert_int_equal(n, 2);
    assert_int_equal(added, 0);
    assert_int_equal(json_array_size(into), 2);
    json_decref(a);
    json_decref(into);
}

static void test_fills_dialect(void **state)
{
    (void)state;
    /* ShivX-style: trades under data.trades, qty signed (no side field), ts RFC 3339 with offset,
     * optional fee and order id mapped, a null client order id */
    ConfigVenueMap m = default_fills();
    m.list = S("data.trades");
    m.fill_id = S("trade_id");
    m.client_order_id = S("clOrdId");
    m.order_id = S("order.id");
    m.side = S("");
    m.quantity = S("qty");
    m.price = S("px");
    m.fee = S("fee");
    m.executed_at = S("ts");
    m.time = VENUE_TIME_RFC3339;
    VenueMapSource fs = {.action = "fills", .request = "GET http://x/f"};
    json_t *into = json_array();
    json_t *a = J("{\"data\":{\"trades\":[{\"trade_id\":\"T1\",\"clOrdId\":null,\"order\":{\"id\":99},\"symbol\":\"ETH\","
                  "\"qty\":\"-2\",\"px\":\"3000\",\"fee\":\"0.3\",\"ts\":\"2025-12-03T07:00:00+01:00\"}]}}");
    size_t n, added;
    int64_t newest;
    char msg[512];
    assert_int_equal(venue_map_fills(&m, a, NULL, &fs, into, &n, &added, &newest, msg, sizeof(msg)), 0);
    char *dump = json_dumps(into, JSON_COMPACT);
    assert_string_equal(dump, "[{\"fill_id\":\"T1\",\"client_order_id\":null,\"order_id\":\"99\",\"symbol\":\"ETH\","
                              "\"side\":\"sell\",\"quantity\":\"2\",\"price\":\"3000\",\"fee\":\"0.3\","
                              "\"executed_at\":\"2025-12-03T06:00:00.000000Z\"}]");
    free(dump);
    json_decref(a);

    const struct { const char *trade, *want; } bad[] = {
        {"{\"clOrdId\":\"O\",\"order\":{\"id\":1},\"symbol\":\"E\",\"qty\":1,\"px\":1,\"fee\":0,\"ts\":\"2025-12-03T06:00:00Z\"}",
         "fills[0].fill_id (path \"trade_id\"): missing in the answer of fills (GET http://x/f): {\"clOrdId\""},
        {"{\"trade_id\":\"T\",\"clOrdId\":\"O\",\"order\":{\"id\":1},\"symbol\":\"E\",\"qty\":1,\"px\":\"1,5\",\"fee\":0,"
         "\"ts\":\"2025-12-03T06:00:00Z\"}",
         "fills[0].price (path \"px\"): not a number"},
        {"{\"trade_id\":\"T\",\"clOrdId\":\"O\",\"order\":{\"id\":1},\"symbol\":\"E\",\"qty\":1,\"px\":1,\"fee\":0,"
         "\"ts\":1764741600000}",
         "fills[0].executed_at (path \"ts\"): not an RFC 3339 time (answer.time)"},
        {"{\"trade_id\":\"T\",\"clOrdId\":\"O\",\"order\":{\"id\":1},\"symbol\":\"E\",\"qty\":1,\"px\":1,\"fee\":0,"
         "\"ts\":\"03/12/2025 06:00\"}",
         "fills[0].executed_at (path \"ts\"): not an RFC 3339 time"},
        {"{\"trade_id\":{},\"clOrdId\":\"O\",\"order\":{\"id\":1},\"symbol\":\"E\",\"qty\":1,\"px\":1,\"fee\":0,"
         "\"ts\":\"2025-12-03T06:00:00Z\"}",
         "fills[0].fill_id (path \"trade_id\"): not a string or an integer"},
        {"{\"trade_id\":\"T\",\"clOrdId\":\"O\",\"order\":{\"id\":1},\"symbol\":\"E\",\"qty\":1,\"fee\":0,"
         "\"ts\":\"2025-12-03T06:00:00Z\"}",
         "fills[0].price (path \"px\"): missing"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char text[600];
        snprintf(text, sizeof(text), "{\"data\":{\"trades\":[%s]}}", bad[i].trade);
        a = J(text);
        assert_int_equal(venue_map_fills(&m, a, NULL, &fs, into, &n, &added, &newest, msg, sizeof(msg)), DR_EPROTO);
        if (!strstr(msg, bad[i].want))
            fail_msg("trade %s gave\n  %s\nexpected\n  %s", bad[i].trade, msg, bad[i].want);
        json_decref(a);
    }
    /* an optional field left out (order.id) or null (fee): NULL, not an error */
    json_t *opt = json_array();
    a = J("{\"data\":{\"trades\":[{\"trade_id\":\"T9\",\"clOrdId\":\"O\",\"symbol\":\"E\",\"qty\":1,\"px\":1,"
          "\"fee\":null,\"ts\":\"2025-12-03T06:00:00Z\"}]}}");
    assert_int_equal(venue_map_fills(&m, a, NULL, &fs, opt, &n, &added, &newest, msg, sizeof(msg)), 0);
    assert_true(json_is_null(json_object_get(json_array_get(opt, 0), "order_id")));
    assert_true(json_is_null(json_object_get(json_array_get(opt, 0), "fee")));
    json_decref(opt);
    json_decref(a);
    /* a mapped side that is missing is an error, not "the sign of the quantity" */
    m.side = S("side");
    a = J("{\"data\":{\"trades\":[{\"trade_id\":\"T\",\"clOrdId\":\"O\",\"symbol\":\"E\",\"qty\":1,\"px\":1,"
          "\"ts\":\"2025-12-03T06:00:00Z\"}]}}");
    assert_int_equal(venue_map_fills(&m, a, NULL, &fs, into, &n, &added, &newest, msg, sizeof(msg)), DR_EPROTO);
    assert_non_null(strstr(msg, "fills[0].side (path \"side\"): missing"));
    json_decref(a);
    /* a side field with a side value nobody configured */
    m.side = S("side");
    a = J("{\"data\":{\"trades\":[{\"trade_id\":\"T\",\"clOrdId\":\"O\",\"order\":{\"id\":1},\"symbol\":\"E\",\"side\":\"X\","
          "\"qty\":1,\"px\":1,\"fee\":0,\"ts\":\"2025-12-03T06:00:00Z\"}]}}");
    assert_int_equal(venue_map_fills(&m, a, NULL, &fs, into, &n, &added, &newest, msg, sizeof(msg)), DR_EPROTO);
    assert_non_null(strstr(msg, "fills[0].side (path \"side\"): the value \"X\" is neither buy (buy, ...) nor sell (sell, ...)"));
    json_decref(a);
    assert_int_equal(json_array_size(into), 1); /* a failed page adds nothing after its bad element */
    json_decref(into);
}

static void test_cursor(void **state)
{
    (void)state;
    json_t *a = J("{\"next\":\"abc\",\"n\":{\"page\":3},\"empty\":\"\",\"nul\":null}");
    char *c = venue_map_cursor(a, "next");
    assert_string_equal(c, "abc");
    free(c);
    c = venue_map_cursor(a, "n.page");
    assert_string_equal(c, "3");
    free(c);
    assert_null(venue_map_cursor(a, "empty"));
    assert_null(venue_map_cursor(a, "nul"));
    assert_null(venue_map_cursor(a, "missing"));
    json_decref(a);
}

/* ---- the mode ---- */

static void test_mode_through_a_path(void **state)
{
    (void)state;
    char *halted[] = {S("true"), S("HALTED")}, *shadow[] = {S("shadow")}, *live[] = {S("false"), S("LIVE")};
    ConfigVenue cfg = {.mode_field = S("state.kill_switch.active"), .mode_values = {halted, shadow, live},
                       .n_mode_values = {2, 1, 2}};
    json_t *a = J("{\"state\":{\"kill_switch\":{\"active\":true}}}");
    assert_int_equal(venue_parse_mode(&cfg, a, "{}"), VENUE_MODE_HALTED); /* a boolean reads as "true" */
    json_decref(a);
    a = J("{\"state\":{\"kill_switch\":{\"active\":false}}}");
    assert_int_equal(venue_parse_mode(&cfg, a, "{}"), VENUE_MODE_LIVE);
    json_decref(a);
    a = J("{\"state\":{}}");
    assert_int_equal(venue_parse_mode(&cfg, a, "{}"), VENUE_MODE_UNKNOWN);
    json_decref(a);
    /* the empty path: the text's first line */
    cfg.mode_field = S("");
    a = J("{\"x\":1}");
    assert_int_equal(venue_parse_mode(&cfg, NULL, "  LIVE \nsince 10:00"), VENUE_MODE_LIVE);
    json_decref(a);
}

/* ---- signing ---- */

static void test_signature(void **state)
{
    (void)state;
    /* RFC 4231-style published vector: HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog") */
    ConfigVenueSign g = {.enabled = true, .key = S("key"), .key_len = 3, .header = S("X-Signature"),
                         .payload = S("{{body}}")};
    char *sig = NULL, *ts = NULL;
    assert_int_equal(venue_sign_headers(&g, "POST", "http://h:1/a", "The quick brown fox jumps over the lazy dog", 1,
                                        &sig, &ts),
                     0);
    assert_string_equal(sig, "X-Signature: f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
    assert_null(ts);
    free(sig);
    g.base64 = true;
    assert_int_equal(venue_sign_headers(&g, "POST", "http://h:1/a", "The quick brown fox jumps over the lazy dog", 1,
                                        &sig, &ts),
                     0);
    assert_string_equal(sig, "X-Signature: 97yD9DBThCSxMpjmqm+xQ+9NWaFJRhdZl0edvC0aPNg=");
    free(sig);
    /* the default canonical string: timestamp, method, path with query, body; timestamp header */
    g.base64 = false;
    g.payload = S("{{timestamp}}{{method}}{{path}}{{body}}");
    g.timestamp_header = S("X-Timestamp");
    g.seconds = true;
    assert_int_equal(venue_sign_headers(&g, "GET", "https://ex.example:8443/api/v1/fills?since=5", NULL, 1700000000999,
                                        &sig, &ts),
                     0);
    assert_string_equal(ts, "X-Timestamp: 1700000000");
    /* same as signing "1700000000GET/api/v1/fills?since=5" directly */
    ConfigVenueSign direct = g;
    direct.payload = S("1700000000GET/api/v1/fills?since=5");
    direct.timestamp_header = NULL;
    char *sig2 = NULL, *ts2 = NULL;
    assert_int_equal(venue_sign_headers(&direct, "X", "http://other/", "ignored", 0, &sig2, &ts2), 0);
    assert_string_equal(sig, sig2);
    free(sig);
    free(ts);
    free(sig2);
}

/* ---- configuration ---- */

/* A configuration with a venue: `extra` follows the venue's halt and status actions, unless it
 * gives its own (then that one is left out). */
static void venue_text(const char *extra, char *text, size_t n)
{
    snprintf(text, n, "database:\n  conninfo: \"host=127.0.0.1 dbname=t\"\nvenue:\n%s%s%s",
             strstr(extra, "  halt:") ? "" : "  halt: {url: \"http://h/halt\"}\n",
             strstr(extra, "  status:") ? "" : "  status: {url: \"http://h/status\"}\n", extra);
}

static void expect_config_error(const char *extra, const char *want)
{
    char text[4096];
    Config *cfg = NULL;
    char *errors = NULL;
    venue_text(extra, text, sizeof(text));
    assert_int_equal(config_load_string("t.yaml", text, &cfg, &errors), DR_ECONFIG);
    if (!errors || !strstr(errors, want))
        fail_msg("errors:\n%s\nexpected to contain:\n%s", errors ? errors : "(none)", want);
    free(errors);
}

static Config *expect_config_ok(const char *extra)
{
    char text[4096];
    Config *cfg = NULL;
    char *errors = NULL;
    venue_text(extra, text, sizeof(text));
    if (config_load_string("t.yaml", text, &cfg, &errors) != 0)
        fail_msg("unexpected errors:\n%s", errors ? errors : "(none)");
    return cfg;
}

static void test_config_defaults_keep_todays_names(void **state)
{
    (void)state;
    Config *cfg = expect_config_ok("");
    const ConfigVenue *v = &cfg->venue;
    assert_null(v->positions_map.list);
    assert_string_equal(v->positions_map.quantity, "quantity");
    assert_string_equal(v->positions_map.avg_price, "avg_price");
    assert_string_equal(v->positions_map.side, "");
    assert_string_equal(v->fills_map.fill_id, "fill_id");
    assert_string_equal(v->fills_map.side, "side");
    assert_string_equal(v->fills_map.order_id, "");
    assert_int_equal(v->fills_map.time, VENUE_TIME_AUTO);
    assert_int_equal(v->pages.by, VENUE_PAGES_NONE);
    assert_string_equal(v->mode_field, "mode");
    assert_false(v->sign.enabled);
    assert_int_equal(cfg->reconcile.n_replay_fill_params, 7);
    assert_string_equal(cfg->reconcile.replay_fill_params[6], "executed_at");
    config_free(cfg);
}

static void test_config_mapping_keys(void **state)
{
    (void)state;
    Config *cfg = expect_config_ok(
        "  positions:\n    url: http://h/p\n    answer: {list: data.positions, quantity: qty, avg_price: \"\", side: dir,"
        " long: [L], short: [S]}\n"
        "  fills:\n    url: \"http://h/f?from={{since:rfc3339}}&to={{until:ms}}&c={{cursor}}\"\n"
        "    answer: {list: data.trades, fill_id: id, side: \"\", executed_at: ts, time: s, fee: fee}\n"
        "    pages: {cursor: meta.next, max: 7}\n"
        "reconcile:\n  replay_fill_params: [fill_id, symbol, fee]\n");
    const ConfigVenue *v = &cfg->venue;
    assert_string_equal(v->positions_map.list, "data.positions");
    assert_string_equal(v->positions_map.quantity, "qty");
    assert_string_equal(v->positions_map.side, "dir");
    assert_string_equal(v->positions_map.plus[0], "L");
    assert_int_equal(v->positions_map.n_plus, 1);
    assert_string_equal(v->fills_map.executed_at, "ts");
    assert_int_equal(v->fills_map.time, VENUE_TIME_S);
    assert_int_equal(v->pages.by, VENUE_PAGES_CURSOR);
    assert_string_equal(v->pages.cursor, "meta.next");
    assert_int_equal(v->pages.max, 7);
    assert_int_equal(cfg->reconcile.n_replay_fill_params, 3);
    config_free(cfg);
    /* a command's own braces are not placeholders */
    cfg = expect_config_ok("  status: {command: [/usr/bin/docker, inspect, --format, \"{{.State.Status}}\", bot]}\n"
                           "  fills: {url: \"http://h/f?from={{since:ms}}&n={{limit}}\", pages: {by: since, limit: 50}}\n");
    assert_int_equal(cfg->venue.pages.by, VENUE_PAGES_SINCE);
    config_free(cfg);
    cfg = expect_config_ok("  status:\n    url: http://h/s\n    answer: {mode: \"state.mode\"}\n");
    assert_string_equal(cfg->venue.mode_field, "state.mode");
    config_free(cfg);
}

static void test_config_refusals(void **state)
{
    (void)state;
    expect_config_error("  fills: {url: \"http://h/f?since={{sinc}}\"}\n", "'venue.fills.url': unknown placeholder '{{sinc}}'");
    expect_config_error("  halt: {url: \"http://h/f?since={{since}}\"}\n", "unknown placeholder '{{since}}'");
    expect_config_error("  positions: {url: \"http://h/p?k={{credential:tok}}\"}\n",
                        "a credential may only be used in headers");
    expect_config_error("  fills: {url: \"http://h/f\", answer: {quantity: \"a..b\"}}\n",
                        "'venue.fills.answer.quantity': malformed path 'a..b'");
    expect_config_error("  fills: {url: \"http://h/f\", answer: {fill_id: \"\"}}\n",
                        "'venue.fills.answer.fill_id' is required and cannot be empty");
    expect_config_error("  fills: {url: \"http://h/f\", answer: {time: iso}}\n", "time");
    expect_config_error("  fills: {url: \"http://h/f\", answer: {colour: blue}}\n", "colour");
    expect_config_error("  fills: {url: \"http://h/f\", pages: {cursor: next}}\n",
                        "'venue.fills': pages.cursor needs {{cursor}} in the url, body or command");
    expect_config_error("  fills: {url: \"http://h/f\", pages: {by: since}}\n", "by: since needs 'limit'");
    expect_config_error("  fills: {url: \"http://h/f?n=100\", pages: {by: since, limit: 100}}\n",
                        "'venue.fills': pages.by: since needs {{limit}} in the url, body or command");
    expect_config_error("  fills: {url: \"http://h/f?c={{cursor}}\", pages: {by: since, limit: 5, cursor: x}}\n",
                        "exclude each other");
    expect_config_error("  status: {url: \"http://h/s\", answer: {mode: m}}\n  mode_field: m\n", "are the same setting");
    expect_config_error("  sign: {header: X-Sig}\n", "'venue.sign' needs key_file or key_credential");
    expect_config_error("  sign: {key_file: /nonexistent/k, payload: \"{{ts}}\"}\n", "unknown placeholder at '{{ts}}'");
    expect_config_error("  positions: {url: \"http://h/p\", headers: [\"Authorization: Bearer {{credential:../x}}\"]}\n",
                        "must be a credential name, not a path");
    expect_config_error("reconcile:\n  replay_fill_params: [fill_id, colour]\n", "'colour' is not a fill field");
}

/* A {{credential:NAME}} in a header is replaced by the secret at load; a readable one is refused. */
static void test_config_header_credential(void **state)
{
    (void)state;
    char dir[] = "/tmp/drsup-venue-cred-XXXXXX";
    char path[256];
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/venue_token", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("s3cr3t\n", f);
    fclose(f);
    chmod(path, 0600);
    setenv("CREDENTIALS_DIRECTORY", dir, 1);
    Config *cfg = expect_config_ok(
        "  positions: {url: \"http://h/p\", headers: [\"Authorization: Bearer {{credential:venue_token}}\"]}\n");
    assert_string_equal(cfg->venue.actions[VENUE_POSITIONS].headers[0], "Authorization: Bearer s3cr3t");
    assert_true(cfg->venue.secret_headers[VENUE_POSITIONS]);
    assert_false(cfg->venue.secret_headers[VENUE_HALT]);
    config_free(cfg);
    chmod(path, 0644);
    expect_config_error("  positions: {url: \"http://h/p\", headers: [\"Authorization: Bearer {{credential:venue_token}}\"]}\n",
                        "accessible by group or others");
    expect_config_error("  positions: {url: \"http://h/p\", headers: [\"X: {{credential:absent}}\"]}\n",
                        "{{credential:absent}}: cannot open");
    unsetenv("CREDENTIALS_DIRECTORY");
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    plus_fills[0] = S("buy");
    plus_fills[1] = S("B");
    minus_fills[0] = S("sell");
    minus_fills[1] = S("S");
    plus_pos[0] = S("long");
    minus_pos[0] = S("short");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_jpath),
        cmocka_unit_test(test_decimals),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_window_placeholders),
        cmocka_unit_test(test_positions_default_names),
        cmocka_unit_test(test_positions_dialect_with_side),
        cmocka_unit_test(test_positions_missing_field_is_an_error_never_a_zero),
        cmocka_unit_test(test_fills_default_names),
        cmocka_unit_test(test_fills_dialect),
        cmocka_unit_test(test_cursor),
        cmocka_unit_test(test_mode_through_a_path),
        cmocka_unit_test(test_signature),
        cmocka_unit_test(test_config_defaults_keep_todays_names),
        cmocka_unit_test(test_config_mapping_keys),
        cmocka_unit_test(test_config_refusals),
        cmocka_unit_test(test_config_header_credential),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
