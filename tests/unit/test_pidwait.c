/*
 * Unit tests for lib/pidwait: a process that ends while waited for, a missing pid file, a process
 * still there at the bound, and a cancelled wait; the loop closes cleanly every time.
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
#include <sys/wait.h>
#include <unistd.h>
#include <uv.h>

#include "err.h"
#include "pidwait.h"

typedef struct Got {
    int calls, result;
    int64_t pid;
    uint64_t waited;
} Got;

static void on_done(int result, int64_t pid, uint64_t waited_ms, void *data)
{
    Got *g = data;
    g->calls++;
    g->result = result;
    g->pid = pid;
    g->waited = waited_ms;
}

static void write_pidfile(const char *path, long pid)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "%ld\n/var/lib/postgresql/data\n", pid);
    fclose(f);
}

static pid_t child;

static void kill_child(uv_timer_t *t)
{
    (void)t;
    kill(child, SIGKILL);
    waitpid(child, NULL, 0); /* reaped: gone */
}

static void test_waits_until_the_process_is_gone(void **state)
{
    (void)state;
    char path[] = "/tmp/pidwait-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    child = fork();
    if (child == 0) {
        pause();
        _exit(0);
    }
    write_pidfile(path, (long)child);
    uv_loop_t loop;
    uv_timer_t t;
    Got g = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &t);
    uv_timer_start(&t, kill_child, 150, 0);
    assert_int_equal(pidwait_start(&loop, path, 10000, 10, on_done, &g, NULL), 0);
    assert_int_equal(g.calls, 0); /* never from inside the start */
    while (g.calls == 0 && uv_run(&loop, UV_RUN_ONCE))
        ;
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.result, 0);
    assert_int_equal(g.pid, child);
    assert_true(g.waited >= 100); /* it did wait for the process, not only read the file */
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    unlink(path);
}

static void test_no_pid_file_ends_at_once(void **state)
{
    (void)state;
    uv_loop_t loop;
    Got g = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(pidwait_start(&loop, "/nonexistent/postmaster.pid", 10000, 10, on_done, &g, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.result, 0);
    assert_int_equal(g.pid, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

static void test_a_live_process_times_out_at_the_bound(void **state)
{
    (void)state;
    char path[] = "/tmp/pidwait-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_pidfile(path, (long)getpid()); /* this process: alive throughout */
    uv_loop_t loop;
    Got g = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(pidwait_start(&loop, path, 80, 10, on_done, &g, NULL), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.result, -ETIMEDOUT);
    assert_int_equal(g.pid, getpid());
    assert_true(g.waited >= 80);
    assert_int_equal(uv_loop_close(&loop), 0);
    unlink(path);
}

static PidWait *to_cancel;

static void cancel_it(uv_timer_t *t)
{
    (void)t;
    pidwait_cancel(to_cancel);
}

static void test_cancel_ends_the_wait(void **state)
{
    (void)state;
    char path[] = "/tmp/pidwait-test-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    write_pidfile(path, (long)getpid());
    uv_loop_t loop;
    uv_timer_t t;
    Got g = {0};
    assert_int_equal(uv_loop_init(&loop), 0);
    uv_timer_init(&loop, &t);
    assert_int_equal(pidwait_start(&loop, path, 60000, 10, on_done, &g, &to_cancel), 0);
    uv_timer_start(&t, cancel_it, 50, 0);
    while (g.calls == 0 && uv_run(&loop, UV_RUN_ONCE))
        ;
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.result, DR_ECANCELED);
    uv_close((uv_handle_t *)&t, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_waits_until_the_process_is_gone),
        cmocka_unit_test(test_no_pid_file_ends_at_once),
        cmocka_unit_test(test_a_live_process_times_out_at_the_bound),
        cmocka_unit_test(test_cancel_ends_the_wait),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
