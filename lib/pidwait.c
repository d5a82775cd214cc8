/*
 * pidwait: wait until the process a pid file names is gone (see pidwait.h).
 */
#include "pidwait.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "err.h"

struct PidWait {
    uv_loop_t *loop;
    uv_work_t req;
    uv_timer_t timer;
    char *path;
    uint64_t bound_ms, poll_ms, t0;
    PidWaitFn cb;
    void *data;
    int read_result; /* thread pool: 0 or -errno */
    int64_t pid;
    int result;
    bool reading, timer_open, cancelled, done;
};

static void pidwait_free(PidWait *w)
{
    free(w->path);
    free(w);
}

static void pidwait_timer_closed(uv_handle_t *h)
{
    PidWait *w = h->data;
    uint64_t waited = uv_now(w->loop) - w->t0;
    w->cb(w->result, w->pid, waited, w->data);
    pidwait_free(w);
}

static void pidwait_closed_silently(uv_handle_t *h)
{
    pidwait_free(h->data);
}

/* End the wait with result: the callback runs once the timer is closed. */
static void pidwait_end(PidWait *w, int result)
{
    if (w->done)
        return;
    w->done = true;
    w->result = result;
    uv_timer_stop(&w->timer);
    uv_close((uv_handle_t *)&w->timer, pidwait_timer_closed);
}

static void pidwait_read(uv_work_t *req)
{
    PidWait *w = req->data;
    char buf[32];
    int fd = open(w->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        w->read_result = errno == ENOENT ? 0 : -errno;
        return;
    }
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    w->read_result = n < 0 ? -errno : 0;
    close(fd);
    if (n <= 0)
        return;
    buf[n] = '\0';
    char *end = NULL;
    long long pid = strtoll(buf, &end, 10);
    if (end != buf && (*end == '\n' || *end == '\0') && pid > 0 && pid <= INT32_MAX)
        w->pid = pid;
}

static bool pidwait_alive(int64_t pid)
{
    return kill((pid_t)pid, 0) == 0 || errno != ESRCH;
}

static void pidwait_poll(uv_timer_t *t)
{
    PidWait *w = t->data;
    if (!pidwait_alive(w->pid))
        pidwait_end(w, 0);
    else if (uv_now(w->loop) - w->t0 >= w->bound_ms)
        pidwait_end(w, -ETIMEDOUT);
}

static void pidwait_read_done(uv_work_t *req, int status)
{
    PidWait *w = req->data;
    w->reading = false;
    if (w->cancelled || status == UV_ECANCELED) {
        pidwait_end(w, DR_ECANCELED);
        return;
    }
    if (w->read_result < 0) {
        pidwait_end(w, w->read_result);
        return;
    }
    if (w->pid <= 0 || !pidwait_alive(w->pid)) {
        pidwait_end(w, 0);
        return;
    }
    uv_timer_start(&w->timer, pidwait_poll, w->poll_ms, w->poll_ms);
}

int pidwait_start(uv_loop_t *loop, const char *pidfile, uint64_t bound_ms, uint64_t poll_ms, PidWaitFn cb, void *data,
                  PidWait **ret)
{
    PidWait *w = calloc(1, sizeof(*w));
    if (!w || !(w->path = strdup(pidfile))) {
        free(w);
        return -ENOMEM;
    }
    w->loop = loop;
    w->bound_ms = bound_ms;
    w->poll_ms = poll_ms ? poll_ms : 20;
    w->cb = cb;
    w->data = data;
    w->t0 = uv_now(loop);
    w->req.data = w->timer.data = w;
    int r = uv_timer_init(loop, &w->timer);
    if (r < 0) {
        pidwait_free(w);
        return r;
    }
    r = uv_queue_work(loop, &w->req, pidwait_read, pidwait_read_done);
    if (r < 0) {
        w->done = true;
        uv_close((uv_handle_t *)&w->timer, pidwait_closed_silently); /* no callback: the caller has r */
        return r;
    }
    w->reading = true;
    if (ret)
        *ret = w;
    return 0;
}

void pidwait_cancel(PidWait *w)
{
    if (!w || w->done)
        return;
    w->cancelled = true;
    if (w->reading)
        uv_cancel((uv_req_t *)&w->req); /* or it finishes; the done callback ends the wait */
    else
        pidwait_end(w, DR_ECANCELED);
}
