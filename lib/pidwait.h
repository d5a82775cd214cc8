/*
 * pidwait: waiting, on the loop, until the process a pid file names is gone.
 *
 * Owns one wait: the pid file's first line is read on the thread pool, then the process is polled
 * with kill(pid, 0) on a uv timer until it is gone (ESRCH) or the bound passed. A process that was
 * killed but not yet reaped by its parent (a zombie) still counts as there: that is exactly what
 * a program checking the same pid file (PostgreSQL's postmaster.pid) would see. A process of
 * another user (EPERM) counts as there too. Never blocks the loop.
 */
#ifndef DRSUP_PIDWAIT_H
#define DRSUP_PIDWAIT_H

#include <stdint.h>
#include <uv.h>

typedef struct PidWait PidWait;

/*
 * The wait ended: result 0 when the process is gone (or the file holds no pid, or does not exist:
 * then pid is 0), -ETIMEDOUT when it was still there at the bound, another -errno when the file
 * cannot be read, DR_ECANCELED after pidwait_cancel. pid: the pid read (0 if none); waited_ms: how
 * long the wait took. Called exactly once, never from inside pidwait_start; the wait is freed
 * after it returns.
 */
typedef void (*PidWaitFn)(int result, int64_t pid, uint64_t waited_ms, void *data);

/* Start a wait on `pidfile` (copied) polling every poll_ms for at most bound_ms. 0 or -errno
 * (then cb is never called). */
int pidwait_start(uv_loop_t *loop, const char *pidfile, uint64_t bound_ms, uint64_t poll_ms, PidWaitFn cb, void *data,
                  PidWait **ret);
/* Stop the wait: its callback runs soon with DR_ECANCELED. NULL is a no-op. */
void pidwait_cancel(PidWait *w);

#endif
