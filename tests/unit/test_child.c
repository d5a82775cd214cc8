/*
 * Unit tests for lib/child with real children: capture, exit status, stderr tail, bounded stdout,
 * streaming 10 MB with the loop turning, pause/resume, stdin pipe, timeout with SIGTERM and SIGKILL
 * escalation, abandoned pipes after exit, missing binary, environment, cwd, child_kill,
 * child_free while running, and that every test ends with uv_loop_close() == 0. Every test runs
 * twice: directly and through the exec shim (this binary as /proc/self/exe), which must change
 * nothing visible; then, with the shim, a child dies when the process that spawned it is killed.
 * (`sh -c` is used here only to generate output; the module itself never uses a shell.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "child.h"

typedef struct Result {
    int exits;
    int64_t status;
    int signal;
    uint64_t t_start;
    uint64_t t_exit;
    /* streaming */
    uint64_t streamed;
    bool nonzero_seen;
    bool paused;
    bool chunk_while_paused;
    uint64_t since_pause;
    int pauses;
    uv_timer_t resume_timer;
    ChildProc *c;
    /* stdin writes */
    int writes_done;
    int write_status;
} Result;

static uv_loop_t loop;

static int setup(void **state)
{
    (void)state;
    return uv_loop_init(&loop);
}

static int teardown(void **state)
{
    (void)state;
    uv_run(&loop, UV_RUN_DEFAULT);
    return uv_loop_close(&loop) == 0 ? 0 : -1;
}

static void on_exit_cb(ChildProc *c, int64_t status, int sig, void *data)
{
    (void)c;
    Result *r = data;
    r->exits++;
    r->status = status;
    r->signal = sig;
    r->t_exit = uv_hrtime();
}

static ChildOptions opts(const char *const *argv, Result *r)
{
    ChildOptions o;
    memset(&o, 0, sizeof(o));
    o.argv = argv;
    o.on_exit = on_exit_cb;
    o.data = r;
    return o;
}

/* Spawns, runs the loop until everything is done, and returns the child (not yet freed). */
static ChildProc *run(const ChildOptions *o, Result *r)
{
    int err = 1;
    r->t_start = uv_hrtime();
    ChildProc *c = child_spawn(&loop, o, &err);
    assert_non_null(c);
    r->c = c;
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r->exits, 1);
    return c;
}

static void finish(ChildProc *c)
{
    child_free(c);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(uv_loop_init(&loop), 0); /* for teardown */
}

static uint64_t elapsed_ms(const Result *r)
{
    return (r->t_exit - r->t_start) / 1000000u;
}

static void test_echo_captured(void **state)
{
    (void)state;
    Result r = {0};
    const char *argv[] = {"/bin/echo", "hello", "world", NULL};
    ChildOptions o = opts(argv, &r);
    ChildProc *c = run(&o, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.signal, 0);
    size_t len;
    assert_string_equal(child_stdout(c, &len), "hello world\n");
    assert_int_equal(len, 12);
    assert_false(child_stdout_truncated(c));
    assert_int_equal(child_stdout_total(c), 12);
    assert_string_equal(child_stderr(c, &len), "");
    assert_int_equal(len, 0);
    assert_false(child_timed_out(c));
    assert_int_equal(child_pid(c), 0);
    assert_int_equal(child_kill(c, SIGTERM), -ESRCH);
    finish(c);
}

static void test_exit_status(void **state)
{
    (void)state;
    Result r = {0};
    const char *argv[] = {"/bin/sh", "-c", "echo out; echo err >&2; exit 3", NULL};
    ChildOptions o = opts(argv, &r);
    ChildProc *c = run(&o, &r);
    assert_int_equal(r.status, 3);
    assert_int_equal(r.signal, 0);
    assert_string_equal(child_stdout(c, NULL), "out\n");
    assert_string_equal(child_stderr(c, NULL), "err\n");
    char buf[64];
    assert_string_equal(child_describe_exit(r.status, r.signal, buf, sizeof(buf)), "exited with status 3");
    /* the outcome with the tail of stderr, its newline dropped; a tail of 2 keeps the end */
    assert_string_equal(child_describe_outcome(c, r.status, r.signal, 200, buf, sizeof(buf)), "exited with status 3: err");
    assert_string_equal(child_describe_outcome(c, r.status, r.signal, 2, buf, sizeof(buf)), "exited with status 3: rr");
    finish(c);

    Result r2 = {0};
    const char *argv2[] = {"/bin/false", NULL};
    ChildOptions o2 = opts(argv2, &r2);
    c = run(&o2, &r2);
    assert_int_equal(r2.status, 1);
    finish(c);
}

static void test_stderr_tail(void **state)
{
    (void)state;
    Result r = {0};
    const char *argv[] = {"/bin/sh", "-c",
                          "head -c 300000 /dev/zero | tr '\\0' x >&2; i=0; while [ $i -lt 200 ]; do "
                          "echo \"line $i\" >&2; i=$((i+1)); done; echo FATAL: the end >&2; exit 2",
                          NULL};
    ChildOptions o = opts(argv, &r);
    o.stderr_limit = 1000;
    ChildProc *c = run(&o, &r);
    assert_int_equal(r.status, 2);
    size_t len;
    const char *e = child_stderr(c, &len);
    assert_int_equal(len, 1000);
    assert_int_equal(strlen(e), 1000);
    assert_true(child_stderr_truncated(c));
    const char *want_end = "line 199\nFATAL: the end\n";
    assert_string_equal(e + len - strlen(want_end), want_end);
    assert_null(strchr(e, 'x')); /* the head is gone */
    finish(c);

    /* Default tail is 64 KiB. */
    Result r2 = {0};
    const char *argv2[] = {"/bin/sh", "-c", "head -c 200000 /dev/zero | tr '\\0' y >&2; echo Z >&2", NULL};
    ChildOptions o2 = opts(argv2, &r2);
    c = run(&o2, &r2);
    e = child_stderr(c, &len);
    assert_int_equal(len, 64 << 10);
    assert_string_equal(e + len - 3, "yZ\n");
    finish(c);
}

static void test_stdout_bounded(void **state)
{
    (void)state;
    Result r = {0};
    const char *argv[] = {"/usr/bin/head", "-c", "3000000", "/dev/zero", NULL};
    ChildOptions o = opts(argv, &r);
    ChildProc *c = run(&o, &r);
    assert_int_equal(r.status, 0);
    size_t len;
    child_stdout(c, &len);
    assert_int_equal(len, CHILD_STDOUT_LIMIT_DEFAULT);
    assert_true(child_stdout_truncated(c));
    assert_int_equal(child_stdout_total(c), 3000000); /* all read, the rest discarded */
    finish(c);

    Result r2 = {0};
    const char *argv2[] = {"/bin/echo", "0123456789", NULL};
    ChildOptions o2 = opts(argv2, &r2);
    o2.stdout_limit = 4;
    c = run(&o2, &r2);
    assert_string_equal(child_stdout(c, &len), "0123");
    assert_true(child_stdout_truncated(c));
    finish(c);
}

static void on_chunk_count(ChildProc *c, const char *buf, size_t len, void *data)
{
    (void)c;
    Result *r = data;
    if (r->paused)
        r->chunk_while_paused = true;
    for (size_t i = 0; i < len; i++)
        if (buf[i] != 0)
            r->nonzero_seen = true;
    r->streamed += len;
}

static int loop_turns_during_stream;
static void on_check(uv_check_t *h)
{
    (void)h;
    loop_turns_during_stream++;
}

static void test_stream_all_bytes(void **state)
{
    (void)state;
    Result r = {0};
    const char *argv[] = {"/usr/bin/head", "-c", "10000000", "/dev/zero", NULL};
    ChildOptions o = opts(argv, &r);
    o.stdout_mode = CHILD_STDOUT_STREAM;
    o.on_stdout = on_chunk_count;
    uv_check_t check;
    uv_check_init(&loop, &check);
    uv_check_start(&check, on_check);
    uv_unref((uv_handle_t *)&check);
    loop_turns_during_stream = 0;
    ChildProc *c = run(&o, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.streamed, 10000000);
    assert_int_equal(child_stdout_total(c), 10000000);
    assert_false(r.nonzero_seen);
    size_t len;
    child_stdout(c, &len);
    assert_int_equal(len, 0); /* nothing captured in streaming mode */
    /* The loop kept turning while 10 MB went through (libuv reads a bounded amount per turn). */
    assert_true(loop_turns_during_stream >= 5);
    uv_close((uv_handle_t *)&check, NULL);
    finish(c);
}

static void on_resume_timer(uv_timer_t *t)
{
    Result *r = t->data;
    r->paused = false;
    child_stdout_resume(r->c);
}

static void on_chunk_pausing(ChildProc *c, const char *buf, size_t len, void *data)
{
    Result *r = data;
    on_chunk_count(c, buf, len, data);
    r->since_pause += len;
    if (r->since_pause >= (1u << 20)) {
        r->since_pause = 0;
        r->pauses++;
        r->paused = true;
        child_stdout_pause(c);
        uv_timer_start(&r->resume_timer, on_resume_timer, 2, 0);
    }
}

static void test_stream_pause_resume(void **state)
{
    (void)state;
    Result r = {0};
    uv_timer_init(&loop, &r.resume_timer);
    r.resume_timer.data = &r;
    const char *argv[] = {"/usr/bin/head", "-c", "10000000", "/dev/zero", NULL};
    ChildOptions o = opts(argv, &r);
    o.stdout_mode = CHILD_STDOUT_STREAM;
    o.on_stdout = on_chunk_pausing;
    o.drain_timeout_ms = 100; /* must not cut a paused-and-resumed stream short */
    ChildProc *c = run(&o, &r);
    assert_int_equal(r.status, 0);
    assert_int_equal(r.streamed, 10000000);
    assert_true(r.pauses >= 9);
    assert_false(r.chunk_while_paused);
    uv_close((uv_handle_t *)&r.resume_timer, NULL);
    finish(c);
}

static void on_written(ChildProc *c, int status, void *data)
{
    (void)c;
    Result *r = data;
    r->writes_done++;
    if (status != 0)
        r->write_status = status;
}

static void test_stdin_pipe(void **state)
{
    (void)state;
    Result r = {0};
    const char *argv[] = {"/bin/cat", NULL};
    ChildOptions o = opts(argv, &r);
    o.stdin_mode = CHILD_STDIN_PIPE;
    int err;
    r.t_start = uv_hrtime();
    ChildProc *c = child_spawn(&loop, &o, &err);
    assert_non_null(c);
    assert_int_equal(child_stdin_write(c, "abc", 3, on_written, &r), 0);
    assert_int_equal(child_stdin_write(c, "def\n", 4, on_written, &r), 0);
    child_stdin_close(c);
    assert_int_equal(child_stdin_write(c, "late", 4, NULL, NULL), -EPIPE);
    assert_int_equal(child_stdin_pending(c), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r.exits, 1);
    assert_int_equal(r.writes_done, 2);
    assert_int_equal(r.write_status, 0);
    assert_string_equal(child_stdout(c, NULL), "abcdef\n");
    finish(c);

    /* Without a stdin pipe, stdin is /dev/null and writing is refused. */
    Result r2 = {0};
    ChildOptions o2 = opts(argv, &r2);
    c = run(&o2, &r2);
    assert_string_equal(child_stdout(c, NULL), "");
    assert_int_equal(child_stdin_write(c, "x", 1, NULL, NULL), -EINVAL);
    finish(c);
}

static void test_timeout_sigterm(void **state)
{
    (void)state;
    Result r = {0};
    const char *argv[] = {"/bin/sleep", "30", NULL};
    ChildOptions o = opts(argv, &r);
    o.timeout_ms = 200;
    o.kill_grace_ms = 3000;
    ChildProc *c = run(&o, &r);
    assert_int_equal(r.signal, SIGTERM);
    assert_true(child_timed_out(c));
    assert_true(elapsed_ms(&r) >= 190);
    assert_true(elapsed_ms(&r) < 1500); /* SIGTERM sufficed: no wait for the grace period */
    char buf[64];
    assert_string_equal(child_describe_exit(r.status, r.signal, buf, sizeof(buf)),
                        "killed by signal 15 (SIGTERM)");
    assert_string_equal(child_describe_outcome(c, r.status, r.signal, 200, buf, sizeof(buf)), "timed out");
    finish(c);
}

static void test_timeout_escalates_to_sigkill(void **state)
{
    (void)state;
    Result r = {0};
    /* The shell and its sleep ignore SIGTERM; the group gets SIGKILL after the grace period. */
    const char *argv[] = {"/bin/sh", "-c", "trap '' TERM; sleep 30; echo survived", NULL};
    ChildOptions o = opts(argv, &r);
    o.timeout_ms = 100;
    o.kill_grace_ms = 300;
    ChildProc *c = run(&o, &r);
    assert_int_equal(r.signal, SIGKILL);
    assert_true(child_timed_out(c));
    assert_true(elapsed_ms(&r) >= 390);
    assert_true(elapsed_ms(&r) < 2000);
    assert_string_equal(child_stdout(c, NULL), ""); /* sleep was killed too: EOF came promptly */
    char buf[64];
    assert_string_equal(child_describe_exit(r.status, r.signal, buf, sizeof(buf)),
                        "killed by signal 9 (SIGKILL)");
    finish(c);
}

static void test_abandoned_pipes_after_exit(void **state)
{
    (void)state;
    Result r = {0};
    /* The shell exits at once but a background sleep keeps stdout open. */
    const char *argv[] = {"/bin/sh", "-c", "sleep 30 & echo started", NULL};
    ChildOptions o = opts(argv, &r);
    o.drain_timeout_ms = 200;
    int err;
    r.t_start = uv_hrtime();
    ChildProc *c = child_spawn(&loop, &o, &err);
    assert_non_null(c);
    int pgid = child_pid(c);
    assert_true(pgid > 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r.exits, 1);
    assert_int_equal(r.status, 0);
    assert_string_equal(child_stdout(c, NULL), "started\n");
    assert_true(elapsed_ms(&r) >= 190 && elapsed_ms(&r) < 2000);
    kill(-pgid, SIGKILL); /* the test's own cleanup of the leftover sleep */
    finish(c);
}

static void test_missing_binary(void **state)
{
    (void)state;
    Result r = {0};
    const char *argv[] = {"/nonexistent/pg_dump", "--version", NULL};
    ChildOptions o = opts(argv, &r);
    int err = 0;
    assert_null(child_spawn(&loop, &o, &err));
    assert_int_equal(err, -ENOENT);
    char noexec[] = "/tmp/test_child_noexec.XXXXXX"; /* a file without execute permission */
    int fd = mkstemp(noexec);
    assert_true(fd >= 0);
    close(fd);
    assert_int_equal(chmod(noexec, 0644), 0);
    const char *argv2[] = {noexec, NULL};
    ChildOptions o2 = opts(argv2, &r);
    assert_null(child_spawn(&loop, &o2, &err));
    unlink(noexec);
    assert_int_equal(err, -EACCES);
    /* Bad options */
    ChildOptions o3 = opts(argv, &r);
    o3.stdout_mode = CHILD_STDOUT_STREAM; /* without on_stdout */
    assert_null(child_spawn(&loop, &o3, &err));
    assert_int_equal(err, -EINVAL);
    const char *bad_env[] = {"NOEQUALS", NULL};
    ChildOptions o4 = opts(argv, &r);
    o4.env = bad_env;
    assert_null(child_spawn(&loop, &o4, &err));
    assert_int_equal(err, -EINVAL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r.exits, 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(uv_loop_init(&loop), 0);
}

static void test_env_passed(void **state)
{
    (void)state;
    setenv("DRSUP_INHERITED", "yes", 1);
    setenv("DRSUP_OVERRIDE", "old", 1);
    Result r = {0};
    const char *argv[] = {"/usr/bin/env", NULL};
    const char *env[] = {"DRSUP_TEST=hello world", "DRSUP_OVERRIDE=new", NULL};
    ChildOptions o = opts(argv, &r);
    o.env = env;
    ChildProc *c = run(&o, &r);
    const char *out = child_stdout(c, NULL);
    assert_non_null(strstr(out, "\nDRSUP_TEST=hello world\n"));
    assert_non_null(strstr(out, "DRSUP_INHERITED=yes\n"));
    assert_non_null(strstr(out, "DRSUP_OVERRIDE=new\n"));
    assert_null(strstr(out, "DRSUP_OVERRIDE=old"));
    finish(c);
    unsetenv("DRSUP_INHERITED");
    unsetenv("DRSUP_OVERRIDE");
}

static void test_cwd_honoured(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_child.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char real[PATH_MAX];
    assert_non_null(realpath(dir, real));
    Result r = {0};
    const char *argv[] = {"/bin/pwd", NULL};
    ChildOptions o = opts(argv, &r);
    o.cwd = dir;
    ChildProc *c = run(&o, &r);
    char want[PATH_MAX + 2];
    snprintf(want, sizeof(want), "%s\n", real);
    assert_string_equal(child_stdout(c, NULL), want);
    finish(c);
    assert_int_equal(rmdir(dir), 0);

    /* A missing cwd is a spawn error. */
    Result r2 = {0};
    ChildOptions o2 = opts(argv, &r2);
    o2.cwd = "/nonexistent-dir";
    int err = 0;
    assert_null(child_spawn(&loop, &o2, &err));
    assert_int_equal(err, -ENOENT);
}

static void on_exit_free(ChildProc *c, int64_t status, int sig, void *data)
{
    on_exit_cb(c, status, sig, data);
    child_free(c); /* allowed from the exit callback */
}

static void test_kill_and_free_from_callback(void **state)
{
    (void)state;
    Result r = {0};
    const char *argv[] = {"/bin/sleep", "30", NULL};
    ChildOptions o = opts(argv, &r);
    o.on_exit = on_exit_free;
    int err;
    r.t_start = uv_hrtime();
    ChildProc *c = child_spawn(&loop, &o, &err);
    assert_non_null(c);
    assert_int_equal(child_kill(c, SIGINT), 0);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r.exits, 1);
    assert_int_equal(r.signal, SIGINT);
    assert_true(elapsed_ms(&r) < 2000);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(uv_loop_init(&loop), 0);
}

static void test_free_while_running(void **state)
{
    (void)state;
    Result r = {0};
    const char *argv[] = {"/bin/sleep", "30", NULL};
    ChildOptions o = opts(argv, &r);
    int err;
    uint64_t t0 = uv_hrtime();
    ChildProc *c = child_spawn(&loop, &o, &err);
    assert_non_null(c);
    int pid = child_pid(c);
    child_free(c);
    child_free(NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(r.exits, 0); /* no exit callback after child_free */
    assert_true((uv_hrtime() - t0) / 1000000u < 2000);
    assert_int_equal(kill(pid, 0), -1); /* killed and reaped */
    assert_int_equal(errno, ESRCH);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(uv_loop_init(&loop), 0);
}

static void test_describe_exit(void **state)
{
    (void)state;
    char buf[64];
    assert_string_equal(child_describe_exit(0, 0, buf, sizeof(buf)), "exited with status 0");
    assert_string_equal(child_describe_exit(1, 0, buf, sizeof(buf)), "exited with status 1");
    assert_string_equal(child_describe_exit(0, 9, buf, sizeof(buf)), "killed by signal 9 (SIGKILL)");
    assert_string_equal(child_describe_exit(0, 6, buf, sizeof(buf)), "killed by signal 6 (SIGABRT)");
    char small[8];
    assert_string_equal(child_describe_exit(1, 0, small, sizeof(small)), "exited ");
}

/* Dead, or a zombie nobody reaped yet (a container's PID 1 may never reap). */
static bool pid_gone(pid_t pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return true;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *rp = strrchr(buf, ')');
    return rp && rp[1] == ' ' && (rp[2] == 'Z' || rp[2] == 'X');
}

/* A middle process spawns `sleep 60` with lib/child and is killed with SIGKILL: the sleep dies. */
static void test_child_dies_with_the_spawning_process(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    pid_t middle = fork();
    assert_true(middle >= 0);
    if (middle == 0) {
        uv_loop_t l;
        Result r = {0};
        const char *argv[] = {"sleep", "60", NULL};
        ChildOptions o = opts(argv, &r);
        int err = 0;
        close(fds[0]);
        uv_loop_init(&l);
        ChildProc *c = child_spawn(&l, &o, &err);
        long pid = c ? (long)child_pid(c) : -1;
        if (write(fds[1], &pid, sizeof(pid)) != (ssize_t)sizeof(pid))
            _exit(1);
        for (;;)
            pause();
    }
    close(fds[1]);
    long pid = 0;
    assert_int_equal(read(fds[0], &pid, sizeof(pid)), (ssize_t)sizeof(pid));
    close(fds[0]);
    assert_true(pid > 0);
    /* wait until the shim has exec'd sleep (its death signal is set by then) */
    char path[64], cmd[64] = "";
    snprintf(path, sizeof(path), "/proc/%ld/cmdline", pid);
    for (int i = 0; i < 500 && strcmp(cmd, "sleep") != 0; i++) {
        FILE *f = fopen(path, "r");
        size_t n = f ? fread(cmd, 1, sizeof(cmd) - 1, f) : 0;
        if (f)
            fclose(f);
        cmd[n] = '\0';
        if (strcmp(cmd, "sleep") != 0)
            usleep(10000);
    }
    assert_string_equal(cmd, "sleep");
    assert_false(pid_gone((pid_t)pid));
    assert_int_equal(kill(middle, SIGKILL), 0);
    assert_int_equal(waitpid(middle, NULL, 0), middle);
    bool gone = false;
    for (int i = 0; i < 500 && !(gone = pid_gone((pid_t)pid)); i++)
        usleep(10000);
    if (!gone)
        kill(-(pid_t)pid, SIGKILL); /* do not leave it behind */
    assert_true(gone);
}

static int use_shim(void **state)
{
    (void)state;
    child_use_exec_shim("/proc/self/exe");
    return 0;
}

static int no_shim(void **state)
{
    (void)state;
    child_use_exec_shim(NULL);
    return 0;
}

int main(int argc, char **argv)
{
    if (child_exec_shim_main(argc, argv))
        return 127;
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo_captured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_exit_status, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stderr_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdout_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_all_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stream_pause_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stdin_pipe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_sigterm, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_escalates_to_sigkill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abandoned_pipes_after_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_env_passed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cwd_honoured, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kill_and_free_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_while_running, setup, teardown),
        cmocka_unit_test(test_describe_exit),
    };
    const struct CMUnitTest shim_only[] = {
        cmocka_unit_test(test_child_dies_with_the_spawning_process),
    };
    int failed = cmocka_run_group_tests_name("child", tests, NULL, NULL);
    failed += cmocka_run_group_tests_name("child through the exec shim", tests, use_shim, no_shim);
    failed += cmocka_run_group_tests_name("child: death with the parent", shim_only, use_shim, no_shim);
    return failed;
}
