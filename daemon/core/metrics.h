/*
 * metrics: the Prometheus endpoint (docs/metrics.md).
 *
 * Owns the `/metrics` HTTP listener (a TCP address, loopback by default, or a Unix socket; from
 * the loop, never blocking: each scrape is built in memory and written asynchronously), its
 * limits (clients, request size, a deadline per client), and the registry of collectors: each
 * module registers a function that writes its metric families when scraped, so this file names no
 * module. Text exposition format 0.0.4; names with the drsupervisor_ prefix and base units.
 */
#ifndef DRSUP_METRICS_H
#define DRSUP_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct Metrics Metrics;
typedef struct MetricsWriter MetricsWriter;

typedef enum { METRIC_GAUGE, METRIC_COUNTER, METRIC_HISTOGRAM } MetricType;

#define METRICS_MAX_BUCKETS 24
#define METRICS_MAX_LABELS 8

/* A histogram with fixed upper bounds, owned by the module that observes into it (on the loop).
 * bounds: ascending, finite, at most METRICS_MAX_BUCKETS, static storage; +Inf is implied. */
typedef struct MetricsHistogram {
    const double *bounds;
    size_t n_bounds;
    uint64_t counts[METRICS_MAX_BUCKETS + 1]; /* per bucket, not cumulative; [n_bounds] is +Inf */
    uint64_t count;
    double sum;
} MetricsHistogram;

/* Write this module's families into w (called on the loop, once per scrape). */
typedef void (*MetricsCollectFn)(MetricsWriter *w, void *data);

Metrics *metrics_new(uv_loop_t *loop);
/* 0, or -ENOMEM. Collectors run in the order registered. */
int metrics_register(Metrics *m, MetricsCollectFn fn, void *data);
/* Listen on "HOST:PORT", "[V6]:PORT" or "unix:PATH" (a stale socket file is replaced). 0, or a
 * negative code with the reason in err. */
int metrics_listen(Metrics *m, const char *address, char *err, size_t errlen);
void metrics_close(Metrics *m, void (*closed_cb)(void *data), void *data);
/* A POST request to a registered route: its path, its header lines (after the request line, up to
 * the blank line) and its body, all borrowed for the call. */
typedef struct MetricsPostRequest {
    const char *path;
    const char *headers;
    size_t headers_len;
    const uint8_t *body;
    size_t body_len;
} MetricsPostRequest;
/* Answer it on the loop: the HTTP status, with a short text in resp (NUL-terminated). */
typedef int (*MetricsPostFn)(const MetricsPostRequest *req, char *resp, size_t resp_len, void *data);
/* Serve POST `path` (not /metrics) on the metrics listener with fn. 0, -EEXIST, -ENOSPC or -EINVAL. */
int metrics_route_post(Metrics *m, const char *path, MetricsPostFn fn, void *data);
/* Stop serving the route(s) of fn with data (a POST there is then 404). */
void metrics_route_remove(Metrics *m, MetricsPostFn fn, void *data);
/* Header `name` (case-insensitive) of req, trimmed, into out: false when absent or too long. */
bool metrics_request_header(const MetricsPostRequest *req, const char *name, char *out, size_t n);

/* Scrapes answered since start. */
unsigned long metrics_scrapes(const Metrics *m);

/* One family: its # HELP and # TYPE lines. Call before its samples. */
void metrics_family(MetricsWriter *w, const char *name, MetricType type, const char *help);
/* One sample of the current family: `labels` holds n_labels name/value pairs (values escaped
 * here). A NaN value is written as NaN. */
void metrics_sample(MetricsWriter *w, const char *name, const char *const labels[][2], size_t n_labels, double value);
/* The same with no labels. */
void metrics_value(MetricsWriter *w, const char *name, double value);

/* Start (or restart: counts back to zero) a histogram on these bounds. */
void metrics_histogram_init(MetricsHistogram *h, const double *bounds, size_t n_bounds);
void metrics_histogram_observe(MetricsHistogram *h, double value);
/* Its samples under the current family (METRIC_HISTOGRAM): NAME_bucket{labels,le=...} (cumulative,
 * +Inf last), NAME_sum, NAME_count; at most METRICS_MAX_LABELS - 1 labels. */
void metrics_histogram(MetricsWriter *w, const char *name, const char *const labels[][2], size_t n_labels,
                       const MetricsHistogram *h);

/* The exposition of every collector, as a scrape would get it (caller frees). Exposed for tests. */
char *metrics_render(Metrics *m, size_t *ret_len);

#endif
