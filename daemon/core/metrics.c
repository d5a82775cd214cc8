/*
 * metrics: the /metrics endpoint and the collector registry (see metrics.h).
 *
 * A client gets METRICS_DEADLINE_MS to send its request line and headers (at most
 * METRICS_MAX_REQUEST bytes); GET or HEAD of /metrics is answered 200 with the text exposition,
 * any other path 404, any other method 405, a malformed or oversized request 400 / 431. After the
 * answer (Connection: close) the daemon shuts its side down and closes when the client does or the
 * deadline passes, so an answer is never destroyed by a reset. Beyond
 * METRICS_MAX_CLIENTS connections a new one is closed at once. A scrape renders every collector
 * into one buffer on the loop (they read in-memory state only) and queues one uv_write.
 *
 * A module may also register a POST route (the signed security webhook): its request, headers and
 * a body of Content-Length bytes, all within METRICS_MAX_REQUEST, is handed to the route's
 * function on the loop, which answers a status and a short text. A POST to another path is 404,
 * one without Content-Length 411, one too large 413.
 */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/metrics.h"
#include "err.h"
#include "listenaddr.h"
#include "log.h"

#define METRICS_MAX_CLIENTS 16
#define METRICS_MAX_REQUEST 8192
#define METRICS_DEADLINE_MS 5000
#define METRICS_MAX_ROUTES 4

typedef struct MetricsCollector {
    MetricsCollectFn fn;
    void *data;
} MetricsCollector;

struct MetricsWriter {
    char *buf;
    size_t len, cap;
    bool failed;
};

typedef struct MetricsClient {
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_handle_t handle;
        uv_stream_t stream;
    } h;
    uv_timer_t timer;
    struct Metrics *m;
    char req[METRICS_MAX_REQUEST];
    size_t len;
    size_t hdr_end;  /* a POST: where its body starts (0 until its headers arrived) */
    size_t body_len; /* its Content-Length */
    uv_write_t wr;
    uv_shutdown_t sd;
    char *resp;
    bool answered;
    int open; /* handles still open (stream, timer) */
    struct MetricsClient *prev, *next;
} MetricsClient;

typedef struct MetricsRoute {
    char path[128];
    MetricsPostFn fn;
    void *data;
} MetricsRoute;

struct Metrics {
    uv_loop_t *loop;
    MetricsCollector *cols;
    size_t n_cols;
    MetricsRoute routes[METRICS_MAX_ROUTES];
    union {
        uv_tcp_t tcp;
        uv_pipe_t pipe;
        uv_handle_t handle;
        uv_stream_t stream;
    } listener;
    uv_timer_t anchor; /* closed last, so metrics_close always finishes from the loop, never inside the call */
    bool listening, is_pipe;
    char unix_path[108];
    MetricsClient *list;
    int clients;
    unsigned long scrapes;
    bool closing;
    int pending;
    void (*closed_cb)(void *);
    void *closed_data;
};

/* ---- the writer ---- */

static void metrics_put(MetricsWriter *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void metrics_put(MetricsWriter *w, const char *fmt, ...)
{
    va_list ap;
    if (w->failed)
        return;
    for (;;) {
        va_start(ap, fmt);
        int n = vsnprintf(w->buf + w->len, w->cap - w->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            w->failed = true;
            return;
        }
        if ((size_t)n < w->cap - w->len) {
            w->len += (size_t)n;
            return;
        }
        size_t cap = (w->cap + (size_t)n + 1) * 2;
        char *b = realloc(w->buf, cap);
        if (!b) {
            w->failed = true;
            return;
        }
        w->buf = b;
        w->cap = cap;
    }
}

void metrics_family(MetricsWriter *w, const char *name, MetricType type, const char *help)
{
    static const char *const types[] = {[METRIC_GAUGE] = "gauge", [METRIC_COUNTER] = "counter",
                                        [METRIC_HISTOGRAM] = "histogram"};
    metrics_put(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, types[type]);
}

static void metrics_put_value(MetricsWriter *w, double v)
{
    if (isnan(v))
        metrics_put(w, " NaN\n");
    else if (isinf(v))
        metrics_put(w, " %sInf\n", v > 0 ? "+" : "-");
    else if (v == floor(v) && fabs(v) < 1e15)
        metrics_put(w, " %.0f\n", v);
    else {
        char t[40];
        for (int prec = 15; prec <= 17; prec++) { /* the shortest text that reads back the same */
            snprintf(t, sizeof(t), "%.*g", prec, v);
            if (strtod(t, NULL) == v)
                break;
        }
        metrics_put(w, " %s\n", t);
    }
}

void metrics_sample(MetricsWriter *w, const char *name, const char *const labels[][2], size_t n_labels, double value)
{
    metrics_put(w, "%s", name);
    for (size_t i = 0; i < n_labels; i++) {
        metrics_put(w, "%s%s=\"", i ? "," : "{", labels[i][0]);
        for (const char *p = labels[i][1] ? labels[i][1] : ""; *p; p++) {
            if (*p == '\\' || *p == '"')
                metrics_put(w, "\\%c", *p);
            else if (*p == '\n')
                metrics_put(w, "\\n");
            else
                metrics_put(w, "%c", *p);
        }
        metrics_put(w, "\"");
    }
    if (n_labels)
        metrics_put(w, "}");
    metrics_put_value(w, value);
}

void metrics_value(MetricsWriter *w, const char *name, double value)
{
    metrics_sample(w, name, NULL, 0, value);
}

void metrics_histogram_init(MetricsHistogram *h, const double *bounds, size_t n_bounds)
{
    memset(h, 0, sizeof(*h));
    h->bounds = bounds;
    h->n_bounds = n_bounds < METRICS_MAX_BUCKETS ? n_bounds : METRICS_MAX_BUCKETS;
}

void metrics_histogram_observe(MetricsHistogram *h, double value)
{
    size_t i = 0;
    while (i < h->n_bounds && value > h->bounds[i])
        i++;
    h->counts[i]++;
    h->count++;
    h->sum += value;
}

void metrics_histogram(MetricsWriter *w, const char *name, const char *const labels[][2], size_t n_labels,
                       const MetricsHistogram *h)
{
    const char *l[METRICS_MAX_LABELS][2];
    char sample[256], le[40];
    uint64_t cum = 0;

    if (n_labels >= METRICS_MAX_LABELS)
        n_labels = METRICS_MAX_LABELS - 1;
    for (size_t i = 0; i < n_labels; i++)
        l[i][0] = labels[i][0], l[i][1] = labels[i][1];
    l[n_labels][0] = "le";
    l[n_labels][1] = le;
    snprintf(sample, sizeof(sample), "%s_bucket", name);
    for (size_t i = 0; i <= h->n_bounds; i++) {
        cum += h->counts[i];
        if (i < h->n_bounds)
            snprintf(le, sizeof(le), "%g", h->bounds[i]);
        else
            snprintf(le, sizeof(le), "+Inf");
        metrics_sample(w, sample, (const char *const(*)[2])l, n_labels + 1, (double)cum);
    }
    snprintf(sample, sizeof(sample), "%s_sum", name);
    metrics_sample(w, sample, labels, n_labels, h->sum);
    snprintf(sample, sizeof(sample), "%s_count", name);
    metrics_sample(w, sample, labels, n_labels, (double)h->count);
}

char *metrics_render(Metrics *m, size_t *ret_len)
{
    MetricsWriter w = {.buf = malloc(4096), .cap = 4096};
    if (!w.buf)
        return NULL;
    w.buf[0] = '\0';
    for (size_t i = 0; i < m->n_cols; i++)
        m->cols[i].fn(&w, m->cols[i].data);
    if (w.failed) {
        free(w.buf);
        return NULL;
    }
    *ret_len = w.len;
    return w.buf;
}

int metrics_route_post(Metrics *m, const char *path, MetricsPostFn fn, void *data)
{
    if (!path || path[0] != '/' || strlen(path) >= sizeof(m->routes[0].path) || !strcmp(path, "/metrics"))
        return -EINVAL;
    MetricsRoute *free_slot = NULL;
    for (size_t i = 0; i < METRICS_MAX_ROUTES; i++) {
        if (m->routes[i].fn && !strcmp(m->routes[i].path, path))
            return -EEXIST;
        if (!m->routes[i].fn && !free_slot)
            free_slot = &m->routes[i];
    }
    if (!free_slot)
        return -ENOSPC;
    snprintf(free_slot->path, sizeof(free_slot->path), "%s", path);
    free_slot->fn = fn;
    free_slot->data = data;
    return 0;
}

void metrics_route_remove(Metrics *m, MetricsPostFn fn, void *data)
{
    for (size_t i = 0; m && i < METRICS_MAX_ROUTES; i++)
        if (m->routes[i].fn == fn && m->routes[i].data == data)
            memset(&m->routes[i], 0, sizeof(m->routes[i]));
}

int metrics_register(Metrics *m, MetricsCollectFn fn, void *data)
{
    MetricsCollector *c = realloc(m->cols, (m->n_cols + 1) * sizeof(*c));
    if (!c)
        return -ENOMEM;
    m->cols = c;
    m->cols[m->n_cols++] = (MetricsCollector){fn, data};
    return 0;
}

unsigned long metrics_scrapes(const Metrics *m)
{
    return m->scrapes;
}

/* ---- clients ---- */

static void metrics_maybe_closed(Metrics *m)
{
    if (!m->closing || m->pending > 0)
        return;
    void (*cb)(void *) = m->closed_cb;
    void *data = m->closed_data;
    free(m->cols);
    free(m);
    if (cb)
        cb(data);
}

static void metrics_client_handle_closed(uv_handle_t *h)
{
    MetricsClient *c = h->data;
    if (--c->open > 0)
        return;
    Metrics *m = c->m;
    if (c->prev)
        c->prev->next = c->next;
    else
        m->list = c->next;
    if (c->next)
        c->next->prev = c->prev;
    m->clients--;
    m->pending--;
    free(c->resp);
    free(c);
    metrics_maybe_closed(m);
}

static void metrics_client_close(MetricsClient *c)
{
    if (!uv_is_closing(&c->h.handle))
        uv_close(&c->h.handle, metrics_client_handle_closed);
    if (!uv_is_closing((uv_handle_t *)&c->timer))
        uv_close((uv_handle_t *)&c->timer, metrics_client_handle_closed);
}

static void metrics_on_shutdown(uv_shutdown_t *req, int status)
{
    if (status < 0)
        metrics_client_close(req->data);
    /* else: wait for the client's EOF (reading on, discarding), so that unread bytes of an
     * oversized request do not turn the close into a reset that destroys the answer */
}

static void metrics_on_written(uv_write_t *req, int status)
{
    MetricsClient *c = req->data;
    c->sd.data = c;
    if (status < 0 || uv_shutdown(&c->sd, &c->h.stream, metrics_on_shutdown) < 0)
        metrics_client_close(c);
}

static void metrics_answer(MetricsClient *c, int code, const char *reason, const char *body, size_t body_len,
                           bool head)
{
    char hdr[256];
    int hl = snprintf(hdr, sizeof(hdr),
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", code,
                      reason, code == 200 ? "text/plain; version=0.0.4; charset=utf-8" : "text/plain; charset=utf-8",
                      body_len);
    size_t n = (size_t)hl + (head ? 0 : body_len);

    c->answered = true;
    if (!(c->resp = malloc(n))) {
        metrics_client_close(c);
        return;
    }
    memcpy(c->resp, hdr, (size_t)hl);
    if (!head && body_len)
        memcpy(c->resp + hl, body, body_len);
    uv_buf_t b = uv_buf_init(c->resp, (unsigned)n);
    c->wr.data = c;
    if (uv_write(&c->wr, &c->h.stream, &b, 1, metrics_on_written) < 0)
        metrics_client_close(c);
}

bool metrics_request_header(const MetricsPostRequest *req, const char *name, char *out, size_t n)
{
    size_t nl = strlen(name);
    const char *p = req->headers, *end = req->headers + req->headers_len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *le = eol ? eol : end;
        if ((size_t)(le - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            while (v < le && (*v == ' ' || *v == '\t'))
                v++;
            const char *ve = le;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t'))
                ve--;
            if ((size_t)(ve - v) >= n)
                return false;
            memcpy(out, v, (size_t)(ve - v));
            out[ve - v] = '\0';
            return true;
        }
        p = le + 1;
    }
    return false;
}

/* The request's headers: from after the request line to the blank line (c->hdr_end). */
static void metrics_handle_post(MetricsClient *c, const char *path)
{
    const MetricsRoute *rt = NULL;
    char resp[512] = "";
    for (size_t i = 0; i < METRICS_MAX_ROUTES; i++)
        if (c->m->routes[i].fn && !strcmp(c->m->routes[i].path, path))
            rt = &c->m->routes[i];
    if (!rt) {
        metrics_answer(c, 404, "Not Found", "not found\n", 10, false);
        return;
    }
    const char *hl = memchr(c->req, '\n', c->len);
    MetricsPostRequest req = {.path = path, .headers = hl ? hl + 1 : c->req,
                              .headers_len = hl ? c->hdr_end - (size_t)(hl + 1 - c->req) : 0,
                              .body = (const uint8_t *)c->req + c->hdr_end, .body_len = c->body_len};
    int code = rt->fn(&req, resp, sizeof(resp), rt->data);
    const char *reason = code == 200 ? "OK" : code == 202 ? "Accepted" : code == 400 ? "Bad Request" :
                         code == 401 ? "Unauthorized" : code == 409 ? "Conflict" : code == 503 ? "Service Unavailable" :
                         "Error";
    metrics_answer(c, code, reason, resp, strlen(resp), false);
}

/* Does the request line POST to a registered route? (Else it is answered 404/405 at once.) */
static bool metrics_post_routed(const MetricsClient *c)
{
    const char *p = c->req + 5, *end = c->req + c->len, *e = p;
    while (e < end && *e != ' ' && *e != '?' && *e != '\r' && *e != '\n')
        e++;
    for (size_t i = 0; i < METRICS_MAX_ROUTES; i++) {
        const MetricsRoute *rt = &c->m->routes[i];
        if (rt->fn && strlen(rt->path) == (size_t)(e - p) && !memcmp(rt->path, p, (size_t)(e - p)))
            return true;
    }
    return false;
}

/* A POST has its body: Content-Length bytes after the headers. 1 ready, 0 wait, <0 answered. */
static int metrics_post_body(MetricsClient *c)
{
    char v[32];
    MetricsPostRequest h = {.headers = c->req, .headers_len = c->hdr_end};
    if (!metrics_request_header(&h, "Content-Length", v, sizeof(v))) {
        metrics_answer(c, 411, "Length Required", "Content-Length required\n", 24, false);
        return -1;
    }
    char *e = NULL;
    unsigned long long n = strtoull(v, &e, 10);
    if (!v[0] || *e || n > sizeof(c->req) - c->hdr_end) {
        metrics_answer(c, 413, "Payload Too Large", "request too large\n", 18, false);
        return -1;
    }
    c->body_len = (size_t)n;
    return c->len >= c->hdr_end + c->body_len;
}

static void metrics_handle_request(MetricsClient *c)
{
    char method[8] = "", path[256] = "";

    if (c->m->closing) { /* the modules are going away: nothing to render */
        metrics_client_close(c);
        return;
    }
    const char *sp = memchr(c->req, ' ', c->len);

    if (!sp || sp - c->req >= (long)sizeof(method)) {
        metrics_answer(c, 400, "Bad Request", "bad request\n", 12, false);
        return;
    }
    memcpy(method, c->req, (size_t)(sp - c->req));
    const char *p = sp + 1, *e = p;
    while (e < c->req + c->len && *e != ' ' && *e != '\r' && *e != '\n')
        e++;
    if (e - p <= 0 || e - p >= (long)sizeof(path)) {
        metrics_answer(c, 400, "Bad Request", "bad request\n", 12, false);
        return;
    }
    memcpy(path, p, (size_t)(e - p));
    char *q = strchr(path, '?');
    if (q)
        *q = '\0';
    bool head = !strcmp(method, "HEAD");
    if (!strcmp(method, "POST") && strcmp(path, "/metrics")) {
        metrics_handle_post(c, path);
        return;
    }
    if (strcmp(method, "GET") && !head) {
        metrics_answer(c, 405, "Method Not Allowed", "only GET /metrics\n", 18, false);
        return;
    }
    if (strcmp(path, "/metrics")) {
        metrics_answer(c, 404, "Not Found", "not found: the metrics are at /metrics\n", 39, head);
        return;
    }
    size_t len = 0;
    char *body = metrics_render(c->m, &len);
    if (!body) {
        metrics_answer(c, 500, "Internal Server Error", "out of memory\n", 14, head);
        return;
    }
    c->m->scrapes++;
    metrics_answer(c, 200, "OK", body, len, head);
    free(body);
}

static void metrics_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    MetricsClient *c = h->data;
    (void)suggested;
    if (c->answered) /* after the answer: read and drop what the client still sends */
        *buf = uv_buf_init(c->req, (unsigned)sizeof(c->req));
    else
        *buf = uv_buf_init(c->req + c->len, (unsigned)(sizeof(c->req) - c->len));
}

static void metrics_on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    MetricsClient *c = s->data;
    (void)buf;
    if (n < 0) { /* EOF or an error: done either way */
        metrics_client_close(c);
        return;
    }
    if (c->answered)
        return;
    c->len += (size_t)n;
    if (c->hdr_end) { /* a POST's body arriving */
        if (c->len >= c->hdr_end + c->body_len)
            metrics_handle_request(c);
        return;
    }
    /* the end of the headers: the request line is all that matters (and a POST's body after it) */
    for (size_t i = 0; i + 1 < c->len; i++) {
        bool lf = c->req[i] == '\n' && c->req[i + 1] == '\n';
        if (lf || (i + 3 < c->len && !memcmp(c->req + i, "\r\n\r\n", 4))) {
            if (c->len >= 5 && !memcmp(c->req, "POST ", 5) && metrics_post_routed(c)) {
                c->hdr_end = i + (lf ? 2 : 4);
                int r = metrics_post_body(c);
                if (r > 0)
                    metrics_handle_request(c);
                if (r == 0 && c->len >= sizeof(c->req))
                    metrics_answer(c, 413, "Payload Too Large", "request too large\n", 18, false);
                return;
            }
            metrics_handle_request(c);
            return;
        }
    }
    if (c->len >= sizeof(c->req))
        metrics_answer(c, 431, "Request Header Fields Too Large", "request too large\n", 18, false);
}

static void metrics_on_deadline(uv_timer_t *t)
{
    metrics_client_close(t->data); /* silent, slow, or not closing after its answer */
}

static void metrics_on_connection(uv_stream_t *server, int status)
{
    Metrics *m = server->data;
    MetricsClient *c;

    if (status < 0 || m->closing)
        return;
    if (!(c = calloc(1, sizeof(*c))))
        return;
    c->m = m;
    int r = m->is_pipe ? uv_pipe_init(m->loop, &c->h.pipe, 0) : uv_tcp_init(m->loop, &c->h.tcp);
    if (r < 0) {
        free(c);
        return;
    }
    c->h.handle.data = c;
    c->open = 1;
    c->next = m->list;
    if (m->list)
        m->list->prev = c;
    m->list = c;
    m->clients++;
    m->pending++;
    uv_timer_init(m->loop, &c->timer);
    c->timer.data = c;
    c->open = 2;
    if (uv_accept(server, &c->h.stream) < 0 || m->clients > METRICS_MAX_CLIENTS) {
        metrics_client_close(c);
        return;
    }
    uv_timer_start(&c->timer, metrics_on_deadline, METRICS_DEADLINE_MS, 0);
    if (uv_read_start(&c->h.stream, metrics_alloc, metrics_on_read) < 0)
        metrics_client_close(c);
}

/* ---- listening ---- */

int metrics_listen(Metrics *m, const char *address, char *err, size_t errlen)
{
    ListenAddr la;
    struct sockaddr_storage sa;
    int r;

    err[0] = '\0';
    if (listenaddr_parse(address, &la, err, errlen) < 0)
        return DR_ECONFIG;
    if (la.kind == LISTENADDR_UNIX) {
        struct stat st;
        m->is_pipe = true;
        if ((r = uv_pipe_init(m->loop, &m->listener.pipe, 0)) < 0)
            return r;
        if (lstat(la.path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(la.path); /* a stale socket of an earlier run */
        r = uv_pipe_bind(&m->listener.pipe, la.path);
        if (r == 0)
            snprintf(m->unix_path, sizeof(m->unix_path), "%s", la.path);
    } else {
        if ((r = uv_tcp_init(m->loop, &m->listener.tcp)) < 0)
            return r;
        r = la.kind == LISTENADDR_TCP6 ? uv_ip6_addr(la.host, la.port, (struct sockaddr_in6 *)&sa)
                                       : uv_ip4_addr(la.host, la.port, (struct sockaddr_in *)&sa);
        if (r == 0)
            r = uv_tcp_bind(&m->listener.tcp, (const struct sockaddr *)&sa, 0);
    }
    m->listener.handle.data = m;
    m->pending++; /* the listener handle, closed in metrics_close */
    m->listening = true;
    if (r == 0)
        r = uv_listen(&m->listener.stream, 64, metrics_on_connection);
    if (r < 0)
        snprintf(err, errlen, "cannot listen on '%s': %s", address, uv_strerror(r));
    return r;
}

Metrics *metrics_new(uv_loop_t *loop)
{
    Metrics *m = calloc(1, sizeof(*m));
    if (!m)
        return NULL;
    m->loop = loop;
    if (uv_timer_init(loop, &m->anchor) < 0) {
        free(m);
        return NULL;
    }
    m->anchor.data = m;
    m->pending = 1;
    return m;
}

static void metrics_listener_closed(uv_handle_t *h) /* the listener or the anchor */
{
    Metrics *m = h->data;
    m->pending--;
    metrics_maybe_closed(m);
}

void metrics_close(Metrics *m, void (*closed_cb)(void *data), void *data)
{
    m->closing = true;
    m->closed_cb = closed_cb;
    m->closed_data = data;
    uv_close((uv_handle_t *)&m->anchor, metrics_listener_closed);
    if (m->listening)
        uv_close(&m->listener.handle, metrics_listener_closed);
    if (m->unix_path[0])
        unlink(m->unix_path);
    for (MetricsClient *c = m->list; c; c = c->next)
        metrics_client_close(c);
}
