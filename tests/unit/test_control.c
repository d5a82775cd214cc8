/*
 * Unit tests for daemon/core/control: the server's handling of clients that hang up, over a real
 * socket on a private loop (a watcher that goes away must give its client slot back).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/control.h"
#include "log.h"

typedef struct Fixture {
    uv_loop_t loop;
    EventBus *events;
    Control *ctl;
    ConfigControl cfg;
    char dir[64], path[96];
    bool closed;
} Fixture;

static void watch_cmd(CtlCall *call, const json_t *args, void *data)
{
    (void)args;
    (void)data;
    int r = control_call_watch(call);
    if (r < 0)
        control_reply_error(call, r, "cannot watch");
    else
        control_reply_ok(call, json_pack("{s:b}", "watching", 1));
}

static void status_cmd(CtlCall *call, const json_t *args, void *data)
{
    (void)args;
    (void)data;
    control_reply_ok(call, NULL);
}

static int setup(void **state)
{
    static const CtlCommand cmds[] = {{"watch", false, watch_cmd, NULL, "events"}, {"status", false, status_cmd, NULL, "ok"}};
    Fixture *f = calloc(1, sizeof(*f));
    char err[256] = "";

    assert_non_null(f);
    signal(SIGPIPE, SIG_IGN);
    log_init(LOG_CRIT, false);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_control.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/control.sock", f->dir);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->events = events_new();
    f->ctl = control_new(&f->loop, f->events);
    f->cfg = (ConfigControl){.socket_path = f->path, .mode = 0600, .max_request = 65536, .max_clients = 2};
    assert_int_equal(control_listen(f->ctl, &f->cfg, err, sizeof(err)), 0);
    assert_int_equal(control_register(f->ctl, cmds, 2), 0);
    *state = f;
    return 0;
}

static void on_closed(void *data)
{
    *(bool *)data = true;
}

static int teardown(void **state)
{
    Fixture *f = *state;
    control_close(f->ctl, on_closed, &f->closed);
    while (!f->closed)
        uv_run(&f->loop, UV_RUN_ONCE);
    events_free(f->events);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    rmdir(f->dir);
    free(f);
    return 0;
}

static int client_connect(Fixture *f)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", f->path);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    return fd;
}

/* Run the loop until a whole line arrived on fd (into buf); false on EOF. */
static bool client_read_line(Fixture *f, int fd, char *buf, size_t cap)
{
    size_t len = 0;
    for (int spins = 0; spins < 10000; spins++) {
        uv_run(&f->loop, UV_RUN_NOWAIT);
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n == 0)
            return false;
        if (n > 0) {
            len += (size_t)n;
            buf[len] = '\0';
            if (strchr(buf, '\n'))
                return true;
        }
    }
    fail_msg("no line from the server");
    return false;
}

static void run_until_no_clients(Fixture *f)
{
    for (int spins = 0; spins < 1000 && control_client_count(f->ctl) > 0; spins++)
        uv_run(&f->loop, UV_RUN_NOWAIT);
}

static void send_line(int fd, const char *line)
{
    assert_int_equal(write(fd, line, strlen(line)), (ssize_t)strlen(line));
}

/* drctl watch interrupted: the client closes its socket. Its slot must come back, or after
 * max_clients such sessions nobody (not even `drctl halt`) could connect. */
/* Readers can never take the operators' slots; operators get every slot. */
static void test_admission_keeps_slots_for_operators(void **state)
{
    (void)state;
    assert_int_equal(control_operator_slots(64), 8);
    assert_int_equal(control_operator_slots(16), 4);
    assert_int_equal(control_operator_slots(3), 0);
    assert_int_equal(control_operator_slots(1000), 8);
    assert_true(control_admits(56, 64, 8, false));
    assert_false(control_admits(57, 64, 8, false));
    assert_true(control_admits(57, 64, 8, true));
    assert_true(control_admits(64, 64, 8, true));
    assert_false(control_admits(65, 64, 8, true));
    assert_true(control_admits(1, 1, control_operator_slots(1), false));
}

static void test_watcher_that_hangs_up_is_closed(void **state)
{
    Fixture *f = *state;
    char buf[4096];

    for (int i = 0; i < 5; i++) {
        int fd = client_connect(f);
        send_line(fd, "{\"id\":1,\"cmd\":\"watch\"}\n");
        assert_true(client_read_line(f, fd, buf, sizeof(buf)));
        assert_non_null(strstr(buf, "\"watching\":true"));
        close(fd);
        run_until_no_clients(f);
        assert_int_equal(control_client_count(f->ctl), 0);
    }
    int fd = client_connect(f);
    send_line(fd, "{\"id\":2,\"cmd\":\"status\"}\n");
    assert_true(client_read_line(f, fd, buf, sizeof(buf)));
    assert_non_null(strstr(buf, "\"ok\":true"));
    close(fd);
    run_until_no_clients(f);
}

/* A watcher that ends its sending side gets what it asked for, then the server hangs up. */
static void test_watcher_eof_ends_the_stream(void **state)
{
    Fixture *f = *state;
    char buf[4096];
    int fd = client_connect(f);

    send_line(fd, "{\"id\":1,\"cmd\":\"watch\"}\n");
    assert_true(client_read_line(f, fd, buf, sizeof(buf)));
    shutdown(fd, SHUT_WR);
    run_until_no_clients(f);
    assert_int_equal(control_client_count(f->ctl), 0);
    assert_false(client_read_line(f, fd, buf, sizeof(buf)));
    close(fd);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_admission_keeps_slots_for_operators),
        cmocka_unit_test_setup_teardown(test_watcher_that_hangs_up_is_closed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watcher_eof_ends_the_stream, setup, teardown),
    };
    return cmocka_run_group_tests_name("control", tests, NULL, NULL);
}
