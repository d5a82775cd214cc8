/*
 * Unit tests for lib/httpc against a real HTTP server on loopback: tests/unit/httpd_double.py,
 * started once by the group setup (forked child, port handed over in a file) and killed at the
 * end. uv_poll_init_socket is wrapped so a test can make it fail. Every test runs its own loop with a 10 ms ticking timer that records the longest gap
 * between ticks (the loop must never block), and ends with httpc_close + uv_loop_close() == 0.
 */
// WRAP: uv_poll_init_socket
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "err.h"
#include "httpc.h"

static pid_t server_pid;
static int server_port;
static char tmpdir[64];
static char portfile[128];

typedef struct Env {
    uv_loop_t loop;
    HttpClient *c;
    uv_timer_t tick;
    uint64_t last_tick_ns, max_gap_ns;
    bool close_called, closed;
} Env;

typedef struct Result {
    Env *env;
    bool done;
    int err;
    long status;
    char *body;
    size_t body_len;
    char errmsg[512];
    char retry_after[32];
    char content_length[32];
    bool has_retry_after, has_bogus;
    double total;
    uint64_t done_ns;
    int order;
    /* what the callback does next */
    bool close_client;
    bool chain_ok;
    struct Result *chained;
} Result;

static int finish_counter;

/* uv_poll_init_socket fails with this code while it is non-zero. */
static int poll_init_fail;

int __real_uv_poll_init_socket(uv_loop_t *loop, uv_poll_t *handle, uv_os_sock_t socket);
int __wrap_uv_poll_init_socket(uv_loop_t *loop, uv_poll_t *handle, uv_os_sock_t socket);
int __wrap_uv_poll_init_socket(uv_loop_t *loop, uv_poll_t *handle, uv_os_sock_t socket)
{
    if (poll_init_fail)
        return poll_init_fail;
    return __real_uv_poll_init_socket(loop, handle, socket);
}

/* ---- server ------------------------------------------------------------------------------- */

static bool find_script(char *out, size_t n)
{
    char exe[PATH_MAX];
    ssize_t len;

    snprintf(out, n, "tests/unit/httpd_double.py");
    if (access(out, R_OK) == 0)
        return true;
    len = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (len <= 0)
        return false;
    exe[len] = '\0';
    for (char *slash = strrchr(exe, '/'); slash; slash = strrchr(exe, '/')) {
        *slash = '\0';
        snprintf(out, n, "%s/tests/unit/httpd_double.py", exe);
        if (access(out, R_OK) == 0)
            return true;
    }
    return false;
}

static int group_setup(void **state)
{
    char script[PATH_MAX + 64];
    (void)state;

    if (httpc_global_init() != 0)
        return -1;
    if (!find_script(script, sizeof(script)))
        return -1;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_httpc.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(portfile, sizeof(portfile), "%s/port", tmpdir);
    server_pid = fork();
    if (server_pid < 0)
        return -1;
    if (server_pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        execl("/usr/bin/python3", "python3", script, portfile, (char *)NULL);
        _exit(127);
    }
    for (int i = 0; i < 1000; i++) { /* wait up to 10 s for the port file */
        FILE *f = fopen(portfile, "r");
        if (f) {
            int ok = fscanf(f, "%d", &server_port);
            fclose(f);
            if (ok == 1 && server_port > 0)
                return 0;
        }
        if (waitpid(server_pid, NULL, WNOHANG) == server_pid)
            return -1;
        nanosleep(&(struct timespec){.tv_nsec = 10 * 1000 * 1000}, NULL);
    }
    return -1;
}

static int group_teardown(void **state)
{
    (void)state;
    if (server_pid > 0) {
        kill(server_pid, SIGKILL);
        waitpid(server_pid, NULL, 0);
    }
    unlink(portfile);
    rmdir(tmpdir);
    httpc_global_cleanup();
    return 0;
}

/* ---- per-test loop and client ------------------------------------------------------------- */

static void on_tick(uv_timer_t *t)
{
    Env *env = t->data;
    uint64_t now = uv_hrtime();
    if (env->last_tick_ns && now - env->last_tick_ns > env->max_gap_ns)
        env->max_gap_ns = now - env->last_tick_ns;
    env->last_tick_ns = now;
}

static int setup(void **state)
{
    Env *env = calloc(1, sizeof(*env));
    if (!env || uv_loop_init(&env->loop) != 0)
        return -1;
    env->c = httpc_new(&env->loop);
    if (!env->c)
        return -1;
    uv_timer_init(&env->loop, &env->tick);
    env->tick.data = env;
    uv_timer_start(&env->tick, on_tick, 10, 10);
    *state = env;
    return 0;
}

static void on_closed(void *data)
{
    ((Env *)data)->closed = true;
}

static void close_client(Env *env)
{
    env->close_called = true;
    httpc_close(env->c, on_closed, env);
}

static int teardown(void **state)
{
    Env *env = *state;
    if (!env->close_called)
        close_client(env);
    uv_close((uv_handle_t *)&env->tick, NULL);
    uv_run(&env->loop, UV_RUN_DEFAULT);
    assert_true(env->closed);
    assert_int_equal(uv_loop_close(&env->loop), 0);
    free(env);
    return 0;
}

static void url(char *out, size_t n, const char *path)
{
    snprintf(out, n, "http://127.0.0.1:%d%s", server_port, path);
}

static void start(Env *env, HttpRequest *req, Result *r, uint64_t *ret_id);

static void on_done(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    Result *r = data;
    const char *v;

    assert_false(r->done);
    assert_non_null(resp);
    assert_non_null(errmsg);
    assert_non_null(resp->body);
    assert_int_equal(resp->body[resp->body_len], '\0');
    r->done = true;
    r->err = err;
    r->status = resp->status;
    r->body = malloc(resp->body_len + 1);
    assert_non_null(r->body);
    memcpy(r->body, resp->body, resp->body_len + 1);
    r->body_len = resp->body_len;
    r->total = resp->total_seconds;
    snprintf(r->errmsg, sizeof(r->errmsg), "%s", errmsg);
    v = httpc_response_header(resp, "retry-after");
    r->has_retry_after = v != NULL;
    if (v)
        snprintf(r->retry_after, sizeof(r->retry_after), "%s", v);
    v = httpc_response_header(resp, "CONTENT-LENGTH");
    if (v)
        snprintf(r->content_length, sizeof(r->content_length), "%s", v);
    r->has_bogus = httpc_response_header(resp, "Retry") || httpc_response_header(resp, "X-None");
    r->done_ns = uv_hrtime();
    r->order = ++finish_counter;
    if (r->close_client)
        close_client(r->env);
    if (r->chain_ok) {
        HttpRequest next = {0};
        char u[128];
        url(u, sizeof(u), "/ok");
        next.url = u;
        start(r->env, &next, r->chained, NULL);
    }
}

static void start(Env *env, HttpRequest *req, Result *r, uint64_t *ret_id)
{
    r->env = env;
    assert_int_equal(httpc_request(env->c, req, on_done, r, ret_id), 0);
    assert_false(r->done); /* never from inside httpc_request */
}

static void result_free(Result *r)
{
    free(r->body);
    r->body = NULL;
}

static void run_until(Env *env, bool *flag, uint64_t timeout_ms)
{
    uint64_t deadline = uv_hrtime() + timeout_ms * 1000000u;
    while (!*flag && uv_hrtime() < deadline)
        uv_run(&env->loop, UV_RUN_ONCE);
    assert_true(*flag);
}

static void get(Env *env, const char *path, Result *r)
{
    char u[256];
    HttpRequest req = {0};
    url(u, sizeof(u), path);
    req.url = u;
    start(env, &req, r, NULL);
    run_until(env, &r->done, 10000);
}

static double ms_since(uint64_t t0_ns, uint64_t t1_ns)
{
    return (double)(t1_ns - t0_ns) / 1e6;
}

/* ---- tests ---------------------------------------------------------------------------------- */

static void test_get_ok(void **state)
{
    Env *env = *state;
    Result r = {0};

    get(env, "/ok", &r);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 2);
    assert_string_equal(r.body, "ok");
    assert_string_equal(r.errmsg, "");
    assert_string_equal(r.content_length, "2");
    assert_true(r.total > 0.0 && r.total < 5.0);
    result_free(&r);
}

static json_t *echo(Env *env, const char *method, const char *const *headers, size_t n,
                    const void *body, size_t body_len)
{
    char u[128];
    HttpRequest req = {.method = method, .headers = headers, .n_headers = n,
                       .body = body, .body_len = body_len};
    Result r = {0};
    json_error_t jerr;

    url(u, sizeof(u), "/echo");
    req.url = u;
    start(env, &req, &r, NULL);
    run_until(env, &r.done, 10000);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    json_t *doc = json_loadb(r.body, r.body_len, JSON_ALLOW_NUL, &jerr);
    assert_non_null(doc);
    result_free(&r);
    return doc;
}

static const char *jstr(json_t *doc, const char *k1, const char *k2)
{
    json_t *v = json_object_get(doc, k1);
    if (v && k2)
        v = json_object_get(v, k2);
    return v ? json_string_value(v) : NULL;
}

static void test_post_echo(void **state)
{
    Env *env = *state;
    static const char body[] = "{\"incident\": \"db down\"}\n\x01 and a NUL:\0 end";
    const char *headers[] = {"Content-Type: application/json", "X-Test: hello  world",
                             "Authorization: Token secret-value"};
    json_t *doc = echo(env, "POST", headers, 3, body, sizeof(body) - 1);

    assert_string_equal(jstr(doc, "method", NULL), "POST");
    assert_string_equal(jstr(doc, "path", NULL), "/echo");
    assert_string_equal(jstr(doc, "headers", "Content-Type"), "application/json");
    assert_string_equal(jstr(doc, "headers", "X-Test"), "hello  world");
    assert_string_equal(jstr(doc, "headers", "Authorization"), "Token secret-value");
    assert_null(jstr(doc, "headers", "Expect"));
    json_t *b = json_object_get(doc, "body");
    assert_int_equal(json_string_length(b), sizeof(body) - 1);
    assert_memory_equal(json_string_value(b), body, sizeof(body) - 1);
    json_decref(doc);

    /* PUT with a body, DELETE and PATCH without, POST with an empty body. */
    doc = echo(env, "PUT", NULL, 0, "resume", 6);
    assert_string_equal(jstr(doc, "method", NULL), "PUT");
    assert_string_equal(jstr(doc, "body", NULL), "resume");
    json_decref(doc);
    doc = echo(env, "DELETE", NULL, 0, NULL, 0);
    assert_string_equal(jstr(doc, "method", NULL), "DELETE");
    assert_string_equal(jstr(doc, "body", NULL), "");
    json_decref(doc);
    doc = echo(env, "POST", NULL, 0, NULL, 0);
    assert_string_equal(jstr(doc, "method", NULL), "POST");
    assert_string_equal(jstr(doc, "headers", "Content-Length"), "0");
    json_decref(doc);
}

static void test_status_passthrough(void **state)
{
    Env *env = *state;
    static const struct { const char *path; long status; } cases[] = {
        {"/status/404", 404}, {"/status/503", 503}, {"/status/204", 204}, {"/status/201", 201},
        {"/status/500", 500}, {"/nowhere", 404},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        Result r = {0};
        get(env, cases[i].path, &r);
        assert_int_equal(r.err, 0);
        assert_int_equal(r.status, cases[i].status);
        result_free(&r);
    }

    char u[128];
    Result r = {0};
    HttpRequest head = {.method = "HEAD"};
    url(u, sizeof(u), "/ok");
    head.url = u;
    start(env, &head, &r, NULL);
    run_until(env, &r.done, 10000);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    result_free(&r);
}

static void test_retry_after_header(void **state)
{
    Env *env = *state;
    Result r = {0};

    get(env, "/retry-after", &r);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 429);
    assert_true(r.has_retry_after);
    assert_string_equal(r.retry_after, "7");
    assert_false(r.has_bogus);
    result_free(&r);

    memset(&r, 0, sizeof(r));
    get(env, "/ok", &r);
    assert_false(r.has_retry_after);
    result_free(&r);
}

static void test_timeout_does_not_block_loop(void **state)
{
    Env *env = *state;
    char u[128];
    HttpRequest req = {.timeout_ms = 300};
    Result r = {0};

    url(u, sizeof(u), "/hang");
    req.url = u;
    uint64_t t0 = uv_hrtime();
    env->max_gap_ns = 0;
    start(env, &req, &r, NULL);
    run_until(env, &r.done, 10000);
    double ms = ms_since(t0, r.done_ns);
    assert_int_equal(r.err, -ETIMEDOUT);
    assert_true(ms >= 250.0);
    assert_true(ms < 2000.0);
    assert_non_null(strstr(r.errmsg, "GET http://127.0.0.1:"));
    assert_null(strstr(r.errmsg, "hang"));
    assert_true(env->max_gap_ns > 0);
    assert_true(env->max_gap_ns < 50u * 1000000u);
    result_free(&r);
}

static void test_slow_does_not_delay_other(void **state)
{
    Env *env = *state;
    Result slow = {0}, ok = {0};
    char u1[128], u2[128];
    HttpRequest r1 = {0}, r2 = {0};

    url(u1, sizeof(u1), "/slow?ms=1000");
    url(u2, sizeof(u2), "/ok");
    r1.url = u1;
    r2.url = u2;
    uint64_t t0 = uv_hrtime();
    start(env, &r1, &slow, NULL);
    start(env, &r2, &ok, NULL);
    run_until(env, &slow.done, 10000);
    assert_true(ok.done);
    assert_int_equal(ok.err, 0);
    assert_int_equal(slow.err, 0);
    assert_string_equal(slow.body, "slow");
    assert_true(ok.order < slow.order);
    assert_true(ms_since(t0, ok.done_ns) < 700.0);
    assert_true(ms_since(t0, slow.done_ns) >= 950.0);
    result_free(&slow);
    result_free(&ok);
}

static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd); /* bound, never listened: connecting is refused */
    return ntohs(a.sin_port);
}

static void test_connection_refused_names_host_only(void **state)
{
    Env *env = *state;
    char u[256], hostport[64];
    HttpRequest req = {.method = "POST", .body = "{}", .body_len = 2};
    Result r = {0};
    int port = closed_port();

    snprintf(u, sizeof(u),
             "http://hookuser:hookpass99@127.0.0.1:%d/services/T0SECRET/B0SECRET/"
             "tokentokentoken?key=hunter2hunter2",
             port);
    snprintf(hostport, sizeof(hostport), "127.0.0.1:%d", port);
    req.url = u;
    uint64_t t0 = uv_hrtime();
    start(env, &req, &r, NULL);
    run_until(env, &r.done, 10000);
    assert_int_equal(r.err, DR_EHTTP);
    assert_true(ms_since(t0, r.done_ns) < 2000.0);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.errmsg, hostport));
    assert_non_null(strstr(r.errmsg, "POST "));
    assert_null(strstr(r.errmsg, "SECRET"));
    assert_null(strstr(r.errmsg, "services"));
    assert_null(strstr(r.errmsg, "tokentoken"));
    assert_null(strstr(r.errmsg, "hunter2"));
    assert_null(strstr(r.errmsg, "hookpass"));
    assert_null(strstr(r.errmsg, "hookuser"));
    result_free(&r);
}

static void test_too_big(void **state)
{
    Env *env = *state;
    char u[128];
    Result r = {0};
    HttpRequest req = {0};

    get(env, "/big", &r); /* Content-Length over the default 1 MiB */
    assert_int_equal(r.err, DR_ETOOBIG);
    assert_non_null(strstr(r.errmsg, "1048576"));
    result_free(&r);

    memset(&r, 0, sizeof(r));
    get(env, "/big?chunked=1", &r); /* no length: caught while streaming */
    assert_int_equal(r.err, DR_ETOOBIG);
    assert_null(strstr(r.errmsg, "chunked"));
    result_free(&r);

    memset(&r, 0, sizeof(r));
    url(u, sizeof(u), "/big?chunked=1");
    req.url = u;
    req.max_response = 3u * 1024u * 1024u;
    start(env, &req, &r, NULL);
    run_until(env, &r.done, 10000);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.body_len, 2u * 1024u * 1024u);
    assert_int_equal(r.body[12345], 'x');
    result_free(&r);

    memset(&r, 0, sizeof(r));
    url(u, sizeof(u), "/big");
    req.max_response = 2u * 1024u * 1024u; /* exactly the size: allowed */
    start(env, &req, &r, NULL);
    run_until(env, &r.done, 10000);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.body_len, 2u * 1024u * 1024u);
    result_free(&r);

    memset(&r, 0, sizeof(r));
    get(env, "/bigheaders", &r); /* ~100 KB of headers, over HTTPC_MAX_HEADER_BYTES */
    assert_int_equal(r.err, DR_ETOOBIG);
    assert_non_null(strstr(r.errmsg, "headers"));
    result_free(&r);
}

/* A borrowed body (body_borrowed: sent from the caller's buffer, not copied) arrives whole; HEAD of
 * an object larger than max_response is answered (no body comes, so the limit does not apply). */
static void test_borrowed_body_and_head(void **state)
{
    Env *env = *state;
    char u[128];
    size_t n = 300000;
    char *buf = malloc(n);
    assert_non_null(buf);
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)('a' + i % 26);
    HttpRequest req = {.method = "PUT", .body = buf, .body_len = n, .body_borrowed = 1, .max_response = 4u << 20};
    Result r = {0};
    json_error_t jerr;
    url(u, sizeof(u), "/echo");
    req.url = u;
    start(env, &req, &r, NULL);
    run_until(env, &r.done, 10000);
    assert_int_equal(r.err, 0);
    json_t *doc = json_loadb(r.body, r.body_len, 0, &jerr);
    assert_non_null(doc);
    assert_int_equal(json_string_length(json_object_get(doc, "body")), n);
    assert_memory_equal(json_string_value(json_object_get(doc, "body")), buf, n);
    json_decref(doc);
    result_free(&r);
    free(buf); /* only after the callback */

    memset(&r, 0, sizeof(r));
    HttpRequest head = {.method = "HEAD"};
    url(u, sizeof(u), "/big"); /* Content-Length 2 MiB, over the default 1 MiB */
    head.url = u;
    start(env, &head, &r, NULL);
    run_until(env, &r.done, 10000);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_length, "2097152");
    assert_int_equal(r.body_len, 0);
    result_free(&r);
}

static void test_socket_watch_failure(void **state)
{
    Env *env = *state;
    char u[128];
    HttpRequest req = {.timeout_ms = 5000};
    Result r = {0};

    url(u, sizeof(u), "/ok");
    req.url = u;
    poll_init_fail = UV_EEXIST;
    uint64_t t0 = uv_hrtime();
    start(env, &req, &r, NULL);
    run_until(env, &r.done, 10000);
    poll_init_fail = 0;
    assert_int_equal(r.err, DR_EHTTP);
    assert_true(ms_since(t0, r.done_ns) < 2000.0); /* failed at once, not at the timeout */
    assert_non_null(strstr(r.errmsg, "cannot watch socket"));
    result_free(&r);

    memset(&r, 0, sizeof(r));
    get(env, "/ok", &r);
    assert_int_equal(r.err, 0);
    assert_int_equal(r.status, 200);
    result_free(&r);
}

static void on_flag_timer(uv_timer_t *t)
{
    *(bool *)t->data = true;
}

static void run_for(Env *env, uint64_t ms)
{
    uv_timer_t t;
    bool fired = false;
    uv_timer_init(&env->loop, &t);
    t.data = &fired;
    uv_timer_start(&t, on_flag_timer, ms, 0);
    run_until(env, &fired, ms + 5000);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&env->loop, UV_RUN_NOWAIT);
}

static void test_cancel(void **state)
{
    Env *env = *state;
    char u[128];
    HttpRequest req = {0};
    Result r = {0}, other = {0};
    uint64_t id = 0;

    url(u, sizeof(u), "/hang");
    req.url = u;
    start(env, &req, &r, &id);
    assert_true(id != 0);
    run_for(env, 100);
    assert_false(r.done);
    assert_int_equal(httpc_cancel(env->c, id), 0);
    assert_true(r.done); /* the callback ran before httpc_cancel returned */
    assert_int_equal(r.err, DR_ECANCELED);
    assert_null(strstr(r.errmsg, "hang"));
    assert_int_equal(httpc_cancel(env->c, id), -ENOENT);
    assert_int_equal(httpc_cancel(env->c, 987654), -ENOENT);
    result_free(&r);

    /* A request cancelled before it even started, and the client still works afterwards. */
    memset(&r, 0, sizeof(r));
    start(env, &req, &r, &id);
    assert_int_equal(httpc_cancel(env->c, id), 0);
    assert_int_equal(r.err, DR_ECANCELED);
    result_free(&r);
    get(env, "/ok", &other);
    assert_int_equal(other.err, 0);
    assert_int_equal(other.status, 200);
    result_free(&other);
}

static void test_close_with_transfers_in_flight(void **state)
{
    Env *env = *state;
    char u1[128], u2[128];
    HttpRequest hang = {0}, slow = {0};
    Result r[3] = {{0}};

    url(u1, sizeof(u1), "/hang");
    url(u2, sizeof(u2), "/slow?ms=3000");
    hang.url = u1;
    slow.url = u2;
    start(env, &hang, &r[0], NULL);
    start(env, &slow, &r[1], NULL);
    start(env, &hang, &r[2], NULL);
    run_for(env, 100);
    close_client(env);
    for (int i = 0; i < 3; i++) {
        assert_true(r[i].done);
        assert_int_equal(r[i].err, DR_ECANCELED);
        result_free(&r[i]);
    }
    assert_false(env->closed); /* closed_cb comes later, from the loop */
    Result late = {0};
    assert_int_equal(httpc_request(env->c, &hang, on_done, &late, NULL), DR_ECANCELED);
    assert_false(late.done);
    /* teardown runs the loop: closed_cb, then uv_loop_close() == 0 */
}

static void test_callbacks_may_reenter(void **state)
{
    Env *env = *state;
    char u1[128], u2[128];
    HttpRequest ok = {0}, hang = {0};
    Result first = {0}, chained = {0}, closer = {0}, victim = {0};

    url(u1, sizeof(u1), "/ok");
    url(u2, sizeof(u2), "/hang");
    ok.url = u1;
    hang.url = u2;

    /* A callback that starts the next request. */
    first.chain_ok = true;
    first.chained = &chained;
    start(env, &ok, &first, NULL);
    run_until(env, &chained.done, 10000);
    assert_int_equal(first.err, 0);
    assert_int_equal(chained.err, 0);
    assert_string_equal(chained.body, "ok");

    /* A callback that closes the client while another transfer is in flight. */
    closer.close_client = true;
    start(env, &hang, &victim, NULL);
    start(env, &ok, &closer, NULL);
    run_until(env, &env->closed, 10000);
    assert_int_equal(closer.err, 0);
    assert_true(victim.done);
    assert_int_equal(victim.err, DR_ECANCELED);
    result_free(&first);
    result_free(&chained);
    result_free(&closer);
    result_free(&victim);
}

static void test_invalid_requests(void **state)
{
    Env *env = *state;
    char u[128];
    Result r = {0};
    const char *crlf[] = {"X-A: 1\r\nX-Injected: 2"};
    const char *nocolon[] = {"X-A 1"};
    HttpRequest req = {0};

    url(u, sizeof(u), "/ok");
    assert_int_equal(httpc_request(env->c, &req, on_done, &r, NULL), -EINVAL); /* no URL */
    req.url = "ftp://127.0.0.1/x";
    assert_int_equal(httpc_request(env->c, &req, on_done, &r, NULL), -EINVAL);
    req.url = "file:///etc/passwd";
    assert_int_equal(httpc_request(env->c, &req, on_done, &r, NULL), -EINVAL);
    req.url = u;
    req.method = "GE T";
    assert_int_equal(httpc_request(env->c, &req, on_done, &r, NULL), -EINVAL);
    req.method = "";
    assert_int_equal(httpc_request(env->c, &req, on_done, &r, NULL), -EINVAL);
    req.method = "GET";
    req.headers = crlf;
    req.n_headers = 1;
    assert_int_equal(httpc_request(env->c, &req, on_done, &r, NULL), -EINVAL);
    req.headers = nocolon;
    assert_int_equal(httpc_request(env->c, &req, on_done, &r, NULL), -EINVAL);
    req.headers = NULL;
    assert_int_equal(httpc_request(env->c, &req, on_done, &r, NULL), -EINVAL);
    req.n_headers = 0;
    assert_int_equal(httpc_request(env->c, &req, NULL, &r, NULL), -EINVAL);
    assert_int_equal(httpc_request(NULL, &req, on_done, &r, NULL), -EINVAL);
    run_for(env, 20);
    assert_false(r.done);
}

static void redact(const char *in, const char *want)
{
    char out[256];
    httpc_redact_url(in, out, sizeof(out));
    assert_string_equal(out, want);
}

static void test_redact_url(void **state)
{
    (void)state;
    redact("https://hooks.slack.com/services/T000/B000/XXXXXXXX",
           "https://hooks.slack.com/\xe2\x80\xa6");
    redact("http://user:pw@127.0.0.1:8080/x?y=1", "http://127.0.0.1:8080/\xe2\x80\xa6");
    redact("http://h:1", "http://h:1");
    redact("HTTPS://[::1]:443/p", "HTTPS://[::1]:443/\xe2\x80\xa6");
    redact("http://h?token=x", "http://h/\xe2\x80\xa6");
    redact("http://h#frag", "http://h/\xe2\x80\xa6");
    redact("events.pagerduty.com/v2/enqueue", "events.pagerduty.com/\xe2\x80\xa6");
    redact("", "");
    redact(NULL, "");

    char small[12];
    httpc_redact_url("https://averylonghost/secret", small, sizeof(small));
    assert_string_equal(small, "https://ave");
    char tiny[25]; /* host fits, "/…" does not: left off rather than cut */
    httpc_redact_url("https://hooks.slack.com/services/x", tiny, sizeof(tiny));
    assert_string_equal(tiny, "https://hooks.slack.com");
    char one[1] = {'z'};
    httpc_redact_url("http://h/x", one, sizeof(one));
    assert_int_equal(one[0], '\0');
    httpc_redact_url("http://h/x", NULL, 0); /* no crash */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_get_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_post_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_borrowed_body_and_head, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_passthrough, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_header, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_does_not_block_loop, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slow_does_not_delay_other, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_refused_names_host_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_big, setup, teardown),
        cmocka_unit_test_setup_teardown(test_socket_watch_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_with_transfers_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callbacks_may_reenter, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_requests, setup, teardown),
        cmocka_unit_test(test_redact_url),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
