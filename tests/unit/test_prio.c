/*
 * Unit tests for lib/prio: a child process lowered from outside, a thread lowered for one piece of
 * work and put back while the other threads keep their priority.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "prio.h"

#define BE_LOWEST (2 << 13 | 7)
#define IDLE (3 << 13)

static int ioprio_of(pid_t id)
{
    return (int)syscall(SYS_ioprio_get, 1, (int)id);
}

static int nice_of(pid_t id)
{
    return getpriority(PRIO_PROCESS, (id_t)id);
}

static void test_child_process_lowered(void **state)
{
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        pause();
        _exit(0);
    }
    PrioSpec spec = {10, PRIO_IO_BEST_EFFORT};
    assert_int_equal(prio_apply(pid, &spec), 0);
    assert_int_equal(nice_of(pid), 10);
    assert_int_equal(ioprio_of(pid), BE_LOWEST);
    spec = (PrioSpec){0, PRIO_IO_IDLE}; /* nice 0: left alone, not raised back */
    assert_int_equal(prio_apply(pid, &spec), 0);
    assert_int_equal(nice_of(pid), 10);
    assert_int_equal(ioprio_of(pid), IDLE);
    assert_int_equal(nice_of(0), 0); /* the caller is untouched */
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
}

typedef struct Seen {
    int nice_during, io_during, nice_after, io_after, lower_r;
} Seen;

static void *worker(void *data)
{
    Seen *s = data;
    PrioSpec spec = {12, PRIO_IO_IDLE};
    PrioSaved saved;
    pid_t tid = (pid_t)syscall(SYS_gettid);
    s->lower_r = prio_thread_lower(&spec, &saved);
    s->nice_during = nice_of(tid);
    s->io_during = ioprio_of(tid);
    prio_thread_restore(&saved);
    s->nice_after = nice_of(tid);
    s->io_after = ioprio_of(tid);
    return NULL;
}

static void test_thread_lowered_and_put_back(void **state)
{
    (void)state;
    Seen s = {0};
    pthread_t t;
    int io_main = ioprio_of(0);
    assert_int_equal(pthread_create(&t, NULL, worker, &s), 0);
    assert_int_equal(pthread_join(t, NULL), 0);
    assert_int_equal(s.io_during, IDLE);
    assert_int_equal(s.io_after, io_main);
    if (prio_can_restore_nice(0)) {
        assert_int_equal(s.lower_r, 0);
        assert_int_equal(s.nice_during, 12);
    } else {
        assert_int_equal(s.lower_r, -EPERM); /* could not be put back: left alone */
        assert_int_equal(s.nice_during, 0);
    }
    assert_int_equal(s.nice_after, 0);
    assert_int_equal(nice_of(0), 0); /* per thread: the main thread never moved */
    assert_int_equal(ioprio_of(0), io_main);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(prio_io_name(PRIO_IO_IDLE), "idle");
    assert_string_equal(prio_io_name(PRIO_IO_BEST_EFFORT), "best-effort");
    assert_string_equal(prio_io_name(PRIO_IO_NORMAL), "normal");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_child_process_lowered),
        cmocka_unit_test(test_thread_lowered_and_put_back),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests_name("prio", tests, NULL, NULL);
}
