/*
 * Unit tests for daemon/core/metrics (the writer and the registry, no socket): families and
 * samples in the text exposition format 0.0.4 (HELP and TYPE lines, labels with their values
 * escaped, integers without a fraction, NaN and infinities), histograms (cumulative buckets, +Inf,
 * _sum, _count), collectors in registration order; and
 * lib/listenaddr's parsing of the listen address.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "listenaddr.h"

static void collect_a(MetricsWriter *w, void *data)
{
    (void)data;
    const char *const l[][2] = {{"node", "pg\"2\\x\ny"}, {"state", "ok"}};
    metrics_family(w, "drs_a", METRIC_GAUGE, "first");
    metrics_sample(w, "drs_a", l, 2, 1);
    metrics_value(w, "drs_b", 0.25);
}

static void collect_b(MetricsWriter *w, void *data)
{
    metrics_family(w, "drs_c_total", METRIC_COUNTER, "second");
    metrics_value(w, "drs_c_total", *(double *)data);
    metrics_value(w, "drs_nan", NAN);
    metrics_value(w, "drs_inf", -INFINITY);
    metrics_value(w, "drs_big", 1e300);
}

static void test_exposition(void **state)
{
    (void)state;
    uv_loop_t loop;
    uv_loop_init(&loop);
    Metrics *m = metrics_new(&loop);
    double v = 1234567;
    assert_int_equal(metrics_register(m, collect_a, NULL), 0);
    assert_int_equal(metrics_register(m, collect_b, &v), 0);
    size_t len = 0;
    char *text = metrics_render(m, &len);
    assert_non_null(text);
    assert_int_equal(len, strlen(text));
    assert_string_equal(text, "# HELP drs_a first\n# TYPE drs_a gauge\n"
                              "drs_a{node=\"pg\\\"2\\\\x\\ny\",state=\"ok\"} 1\n"
                              "drs_b 0.25\n"
                              "# HELP drs_c_total second\n# TYPE drs_c_total counter\n"
                              "drs_c_total 1234567\n"
                              "drs_nan NaN\n"
                              "drs_inf -Inf\n"
                              "drs_big 1e+300\n");
    free(text);
    metrics_close(m, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

/* A histogram: cumulative buckets with le labels after the caller's, +Inf last, _sum and _count;
 * a value on a bound falls in that bucket; init starts it over. */
static void collect_hist(MetricsWriter *w, void *data)
{
    const char *const l[][2] = {{"probe", "database"}};
    metrics_family(w, "drs_d_seconds", METRIC_HISTOGRAM, "third");
    metrics_histogram(w, "drs_d_seconds", l, 1, data);
}

static void test_histogram(void **state)
{
    (void)state;
    static const double bounds[] = {0.001, 0.01, 0.1};
    MetricsHistogram h;
    uv_loop_t loop;
    uv_loop_init(&loop);
    Metrics *m = metrics_new(&loop);
    metrics_histogram_init(&h, bounds, 3);
    metrics_histogram_observe(&h, 0.0005);
    metrics_histogram_observe(&h, 0.01);
    metrics_histogram_observe(&h, 0.05);
    metrics_histogram_observe(&h, 2);
    assert_int_equal(metrics_register(m, collect_hist, &h), 0);
    size_t len = 0;
    char *text = metrics_render(m, &len);
    assert_non_null(text);
    assert_string_equal(text, "# HELP drs_d_seconds third\n# TYPE drs_d_seconds histogram\n"
                              "drs_d_seconds_bucket{probe=\"database\",le=\"0.001\"} 1\n"
                              "drs_d_seconds_bucket{probe=\"database\",le=\"0.01\"} 2\n"
                              "drs_d_seconds_bucket{probe=\"database\",le=\"0.1\"} 3\n"
                              "drs_d_seconds_bucket{probe=\"database\",le=\"+Inf\"} 4\n"
                              "drs_d_seconds_sum{probe=\"database\"} 2.0605\n"
                              "drs_d_seconds_count{probe=\"database\"} 4\n");
    free(text);
    metrics_histogram_init(&h, bounds, 3);
    assert_int_equal(h.count, 0);
    assert_int_equal(h.counts[0], 0);
    metrics_close(m, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

static int route_fn(const MetricsPostRequest *req, char *resp, size_t n, void *data)
{
    (void)req;
    (void)data;
    snprintf(resp, n, "ok\n");
    return 200;
}

/* A POST route's headers (case-insensitive, trimmed, bounded) and the route table's rules. */
static void test_post_routes(void **state)
{
    (void)state;
    static const char hdr[] = "Host: x\r\nX-Drsup-Nonce:  abc \r\nx-drsup-timestamp:17\r\n"
                              "Content-Length: 2\r\n\r\n";
    MetricsPostRequest req = {.path = "/p", .headers = hdr, .headers_len = sizeof(hdr) - 1};
    char v[8];
    assert_true(metrics_request_header(&req, "X-Drsup-Nonce", v, sizeof(v)));
    assert_string_equal(v, "abc");
    assert_true(metrics_request_header(&req, "X-DRSUP-TIMESTAMP", v, sizeof(v)));
    assert_string_equal(v, "17");
    assert_false(metrics_request_header(&req, "X-Drsup", v, sizeof(v))); /* a prefix is not the header */
    assert_false(metrics_request_header(&req, "Missing", v, sizeof(v)));
    assert_false(metrics_request_header(&req, "Host", v, 1)); /* too long for out */

    uv_loop_t loop;
    uv_loop_init(&loop);
    Metrics *m = metrics_new(&loop);
    int data = 0;
    assert_int_equal(metrics_route_post(m, "/metrics", route_fn, &data), -EINVAL);
    assert_int_equal(metrics_route_post(m, "relative", route_fn, &data), -EINVAL);
    assert_int_equal(metrics_route_post(m, "/a", route_fn, &data), 0);
    assert_int_equal(metrics_route_post(m, "/a", route_fn, &data), -EEXIST);
    assert_int_equal(metrics_route_post(m, "/b", route_fn, &data), 0);
    assert_int_equal(metrics_route_post(m, "/c", route_fn, &data), 0);
    assert_int_equal(metrics_route_post(m, "/d", route_fn, &data), 0);
    assert_int_equal(metrics_route_post(m, "/e", route_fn, &data), -ENOSPC);
    metrics_route_remove(m, route_fn, &data);
    assert_int_equal(metrics_route_post(m, "/a", route_fn, &data), 0);
    metrics_close(m, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
}

static void test_listen_addresses(void **state)
{
    (void)state;
    ListenAddr a;
    char why[200];
    assert_int_equal(listenaddr_parse("127.0.0.1:9187", &a, why, sizeof(why)), 0);
    assert_int_equal(a.kind, LISTENADDR_TCP4);
    assert_string_equal(a.host, "127.0.0.1");
    assert_int_equal(a.port, 9187);
    assert_int_equal(listenaddr_parse("[::1]:9187", &a, why, sizeof(why)), 0);
    assert_int_equal(a.kind, LISTENADDR_TCP6);
    assert_string_equal(a.host, "::1");
    assert_int_equal(listenaddr_parse("unix:/run/drsupervisor/metrics.sock", &a, why, sizeof(why)), 0);
    assert_int_equal(a.kind, LISTENADDR_UNIX);
    assert_string_equal(a.path, "/run/drsupervisor/metrics.sock");
    const char *bad[] = {"", "9187", ":9187", "127.0.0.1:", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:9x",
                         "localhost:9187", "::1:9187", "[::1:9187", "unix:relative", "300.1.1.1:80"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (listenaddr_parse(bad[i], &a, why, sizeof(why)) == 0)
            fail_msg("'%s' should be refused", bad[i]);
    assert_int_equal(listenaddr_parse("localhost:9187", &a, why, sizeof(why)), -22);
    assert_non_null(strstr(why, "not a numeric IPv4 address"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exposition),
        cmocka_unit_test(test_histogram),
        cmocka_unit_test(test_listen_addresses),
        cmocka_unit_test(test_post_routes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
