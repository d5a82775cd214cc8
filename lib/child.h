/*
 * child: child processes on the libuv loop (uv_spawn, never a shell).
 *
 * Owns one spawned program and its pipes: stdin from /dev/null or a pipe the caller writes,
 * stdout captured into a bounded buffer or streamed to a callback (with pause/resume for
 * backpressure), stderr captured as a bounded TAIL (the end is what explains a failure), an
 * optional timeout (SIGTERM, then SIGKILL after a grace period), and exactly one exit callback,
 * called after the process exited AND stdout and stderr reached end of file.
 *
 * The child runs in its own session and process group (setsid), so child_kill and the timeout
 * signal the whole group (e.g. a tool and the helpers it forks). If the process has exited but
 * something it left behind keeps the pipes open and silent for drain_timeout_ms, the pipes are
 * closed and the exit callback runs anyway (nothing is killed for that).
 *
 * Children die with the daemon once child_use_exec_shim() is on: libuv has no hook between fork
 * and exec, so the child first execs a small shim (the daemon's own binary, recognised by
 * child_exec_shim_main) that sets PR_SET_PDEATHSIG to SIGKILL, checks that the daemon is still
 * its parent, and execs the real program; the death signal survives that exec. It fires when
 * the THREAD that forked dies, not the process: children must be spawned from the loop thread,
 * which lives as long as the daemon (never from a thread-pool worker). Helpers that a child
 * forks in turn are not covered (each program is expected to take its own helpers down).
 *
 * Everything runs on the loop thread and never blocks. The daemon must ignore SIGPIPE (writes to
 * the stdin of a dead child then fail with -EPIPE instead of killing the daemon). Errors are
 * negative errno values (libuv's UV_E* are the same on Unix).
 */
#ifndef DRSUP_CHILD_H
#define DRSUP_CHILD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

typedef struct ChildProc ChildProc;

typedef enum ChildStdin {
    CHILD_STDIN_NULL = 0, /* /dev/null */
    CHILD_STDIN_PIPE,     /* a pipe written with child_stdin_write, closed with child_stdin_close */
} ChildStdin;

typedef enum ChildStdout {
    CHILD_STDOUT_CAPTURE = 0, /* kept in a buffer of at most stdout_limit bytes (the head) */
    CHILD_STDOUT_STREAM,      /* each chunk handed to on_stdout */
} ChildStdout;

/* Called once, after exit and EOF on stdout and stderr. exit_status is meaningful when
 * term_signal == 0. c stays valid until child_free, which may be called from here. */
typedef void (*ChildExitCb)(ChildProc *c, int64_t exit_status, int term_signal, void *data);

/* A stdout chunk in CHILD_STDOUT_STREAM mode; buf is borrowed for the call only. The callback may
 * call child_stdout_pause (and child_kill); it must not call child_free. */
typedef void (*ChildChunkCb)(ChildProc *c, const char *buf, size_t len, void *data);

/* Completion of one child_stdin_write: status 0 or -errno (-EPIPE if the child closed its stdin,
 * -ECANCELED if the write was pending when stdin was closed). Not called after child_free. */
typedef void (*ChildWriteCb)(ChildProc *c, int status, void *data);

typedef struct ChildOptions {
    const char *file;             /* program to run; NULL means argv[0]. No PATH search for '/' names */
    const char *const *argv;      /* NULL-terminated, argv[0] required */
    const char *const *env;       /* NULL or NULL-terminated "NAME=value" list added to (overriding)
                                     the inherited environment */
    const char *cwd;              /* NULL: inherit */
    bool set_uid;                 /* run as uid (needs privilege) */
    uid_t uid;
    bool set_gid;                 /* run as gid */
    gid_t gid;
    ChildStdin stdin_mode;
    ChildStdout stdout_mode;
    size_t stdout_limit;          /* capture cap; 0 = 1 MiB. Excess is discarded (child_stdout_truncated) */
    ChildChunkCb on_stdout;       /* required with CHILD_STDOUT_STREAM */
    size_t stderr_limit;          /* tail kept; 0 = 64 KiB */
    uint64_t timeout_ms;          /* 0 = none; then SIGTERM to the group */
    uint64_t kill_grace_ms;       /* after the SIGTERM of a timeout, SIGKILL; 0 = 5000 */
    uint64_t drain_timeout_ms;    /* after exit, silent open pipes are abandoned; 0 = 2000 */
    const struct PrioSpec *priority; /* NULL, or lowered CPU/I/O priority, set right after the spawn */
    ChildExitCb on_exit;          /* required */
    void *data;                   /* passed to every callback */
} ChildOptions;

#define CHILD_STDOUT_LIMIT_DEFAULT ((size_t)1 << 20)
#define CHILD_STDERR_LIMIT_DEFAULT ((size_t)64 << 10)

/*
 * Spawns the program. Returns the child (owned by the caller, release with child_free), or NULL
 * with a negative errno in *ret_err: -ENOENT when the program does not exist, -EACCES when it is
 * not executable, -EINVAL for bad options. The caller names the program in its message. On
 * failure the loop must still run once to release the handles that were set up.
 */
ChildProc *child_spawn(uv_loop_t *loop, const ChildOptions *opt, int *ret_err);

/*
 * Route every later spawn through the exec shim at shim_path ("/proc/self/exe" for the daemon,
 * whose main calls child_exec_shim_main first). NULL turns it off (the default: children are
 * exec'd directly and outlive a killed daemon). Not thread-safe: call before the loop runs.
 */
void child_use_exec_shim(const char *shim_path);

/*
 * For main(), before anything else: when argv is a shim invocation (argv[0] is CHILD_SHIM_ARGV0),
 * set the death signal and exec the real program; returns only when argv is not one (false).
 * Never returns after a shim invocation (exit status 127 with a message on stderr when the
 * program cannot be exec'd, SIGKILL when the daemon is already gone).
 */
#define CHILD_SHIM_ARGV0 "drsupervisord-child-exec"
bool child_exec_shim_main(int argc, char **argv);

/* Sends signum to the child's process group. 0, -ESRCH once the child has exited, or -errno. */
int child_kill(ChildProc *c, int signum);

/* Process id (for messages), or 0 once exited. */
int child_pid(const ChildProc *c);

/* Stops / restarts reading stdout (uv_read_stop/uv_read_start): backpressure for a slow
 * consumer. Both are no-ops after EOF. While paused, the exit callback waits. */
void child_stdout_pause(ChildProc *c);
void child_stdout_resume(ChildProc *c);

/* Queues len bytes (copied) for the child's stdin (CHILD_STDIN_PIPE only, else -EINVAL; -EPIPE
 * after child_stdin_close). cb (may be NULL) reports completion. */
int child_stdin_write(ChildProc *c, const void *buf, size_t len, ChildWriteCb cb, void *cb_data);

/* Bytes queued for stdin and not yet written (for backpressure). */
size_t child_stdin_pending(const ChildProc *c);

/* Closes the child's stdin (EOF for the child) after the queued writes. No-op if not a pipe. */
void child_stdin_close(ChildProc *c);

/* Captured stdout (CAPTURE mode; NUL-terminated, len excludes the NUL) and whether some was
 * discarded over the limit. Borrowed, valid until child_free. */
const char *child_stdout(const ChildProc *c, size_t *ret_len);
bool child_stdout_truncated(const ChildProc *c);

/* Total stdout bytes read from the child (both modes). */
uint64_t child_stdout_total(const ChildProc *c);

/* Last stderr_limit bytes of stderr (NUL-terminated, len excludes the NUL), and whether earlier
 * output was dropped. Borrowed, valid until child_free. */
const char *child_stderr(const ChildProc *c, size_t *ret_len);
bool child_stderr_truncated(const ChildProc *c);

/* Whether the timeout fired (the child was signalled because of it). */
bool child_timed_out(const ChildProc *c);

/*
 * Releases the child: closes its handles (memory freed in their close callbacks; run the loop
 * afterwards so uv_loop_close() can return 0). Meant for after the exit callback (and may be
 * called from it). If the child is still running it is sent SIGKILL, the exit callback is not
 * called, and the handles are closed once it has been reaped. child_free(NULL) is a no-op.
 */
void child_free(ChildProc *c);

/* "exited with status 1" or "killed by signal 9 (SIGKILL)" into buf; returns buf. */
const char *child_describe_exit(int64_t exit_status, int term_signal, char *buf, size_t n);
/* How a finished child ended, for people: "timed out", or child_describe_exit's words, then ": " and
 * the last `tail` bytes of its stderr (trailing newlines dropped) when it wrote any; returns buf. */
const char *child_describe_outcome(const ChildProc *c, int64_t exit_status, int term_signal, size_t tail, char *buf,
                                   size_t n);

#endif
