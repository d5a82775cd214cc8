/*
 * point_in_time_server: is a recovered server still there while its promotion is awaited?
 * (point_in_time's wait_for_promotion and the point_in_time drill's; point_in_time_internal.h.)
 *
 * Owns one check: `pg_ctl -D <data_dir> status` (as the section's run_as; lib/child, bounded) and,
 * when it says no server runs there (exit status 3), the last PITR_LOG_TAIL_LINES lines of the
 * server's log read on the thread pool, with its last FATAL or PANIC line picked out: the error a
 * recovery that cannot start (a target before the consistency point, a broken setting, WAL that
 * ends before the target) exits with. Nothing here blocks the loop; a cancelled check calls no one
 * and frees itself when its child or its read ends.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "child.h"
#include "err.h"
#include "scenario/point_in_time_internal.h"

#define PITR_STATUS_TIMEOUT_MS 10000u
#define PITR_LOG_TAIL_BYTES 8192

struct PitrServerCheck {
    uv_loop_t *loop;
    ChildProc *child;
    uv_work_t req;
    PitrServerFn done;
    void *data;
    bool cancelled;
    char log[4200];
    char tail[PITR_LOG_TAIL_BYTES + 1];
    char error[512];
    int read_err;
};

/* Worker: the last lines of the log into tail ("" when unreadable: read_err) and its last FATAL or
 * PANIC line into error. */
static void pitr_server_read_tail(uv_work_t *req)
{
    PitrServerCheck *k = req->data;
    int fd = open(k->log, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        k->read_err = -errno;
        if (fd >= 0)
            close(fd);
        return;
    }
    off_t from = st.st_size > PITR_LOG_TAIL_BYTES ? st.st_size - PITR_LOG_TAIL_BYTES : 0;
    ssize_t n = pread(fd, k->tail, PITR_LOG_TAIL_BYTES, from);
    close(fd);
    if (n < 0) {
        k->read_err = -errno;
        return;
    }
    size_t len = (size_t)n;
    while (len && (k->tail[len - 1] == '\n' || k->tail[len - 1] == '\r'))
        len--;
    k->tail[len] = '\0';
    for (size_t i = 0; i < len; i++) /* a binary byte would break the JSON of the report */
        if ((unsigned char)k->tail[i] < 0x20 && k->tail[i] != '\n' && k->tail[i] != '\t')
            k->tail[i] = ' ';
    /* the last PITR_LOG_TAIL_LINES lines (a first line the read began in the middle of dropped) */
    char *start = k->tail, *first_nl = strchr(k->tail, '\n');
    if (from > 0 && first_nl)
        start = first_nl + 1;
    size_t lines = 0;
    for (char *p = k->tail + len; p > start; p--)
        if (p[-1] == '\n' && ++lines == PITR_LOG_TAIL_LINES) {
            start = p;
            break;
        }
    memmove(k->tail, start, strlen(start) + 1);
    /* the server's own error: its last FATAL or PANIC line */
    for (char *line = k->tail; line && *line;) {
        char *nl = strchr(line, '\n');
        size_t ll = nl ? (size_t)(nl - line) : strlen(line);
        if ((memmem(line, ll, "FATAL:", 6) || memmem(line, ll, "PANIC:", 6)))
            snprintf(k->error, sizeof(k->error), "%.*s", (int)(ll > 500 ? 500 : ll), line);
        line = nl ? nl + 1 : NULL;
    }
}

static void pitr_server_tail_read(uv_work_t *req, int status)
{
    PitrServerCheck *k = req->data;
    char tail[PITR_LOG_TAIL_BYTES + 200];
    if (!k->cancelled) {
        if (status < 0 && !k->read_err)
            k->read_err = status;
        if (k->read_err)
            snprintf(tail, sizeof(tail), "(its log '%.300s' could not be read: %s)", k->log, err_str(k->read_err));
        else
            snprintf(tail, sizeof(tail), "%s", k->tail);
        k->done(0, k->error, tail, k->data);
    }
    free(k);
}

static void pitr_server_status_exited(ChildProc *c, int64_t status, int sig, void *data)
{
    PitrServerCheck *k = data;
    bool gone = !sig && !child_timed_out(c) && status == 3; /* pg_ctl status: "no server running" */
    bool running = !sig && !child_timed_out(c) && status == 0;
    child_free(c);
    k->child = NULL;
    if (k->cancelled) {
        free(k);
        return;
    }
    if (!gone) { /* running, or pg_ctl could not tell (4: no data directory it can read): the wait goes on */
        k->done(running ? 1 : -1, "", "", k->data);
        free(k);
        return;
    }
    k->req.data = k;
    int r = uv_queue_work(k->loop, &k->req, pitr_server_read_tail, pitr_server_tail_read);
    if (r < 0) {
        k->read_err = r;
        pitr_server_tail_read(&k->req, r);
    }
}

int pitr__server_check(uv_loop_t *loop, const PitrConfig *c, const char *data_dir, const char *log, PitrServerFn done,
                       void *data, PitrServerCheck **ret)
{
    static const char *const verb[] = {"status", NULL};
    const char *v[64];
    int rc = -ENOMEM;
    PitrServerCheck *k = calloc(1, sizeof(*k));
    if (!k)
        return rc;
    k->loop = loop;
    k->done = done;
    k->data = data;
    snprintf(k->log, sizeof(k->log), "%s", log);
    ChildOptions opt = {.argv = pitr__pg_ctl_argv(c, data_dir, verb, v, 64), .stdin_mode = CHILD_STDIN_NULL,
                        .stdout_mode = CHILD_STDOUT_CAPTURE, .stdout_limit = 4096, .stderr_limit = 4096,
                        .timeout_ms = PITR_STATUS_TIMEOUT_MS, .kill_grace_ms = 1000,
                        .on_exit = pitr_server_status_exited, .data = k};
    k->child = child_spawn(loop, &opt, &rc);
    if (!k->child) {
        free(k);
        return rc;
    }
    *ret = k;
    return 0;
}

void pitr__server_check_cancel(PitrServerCheck *k)
{
    if (!k)
        return;
    k->cancelled = true;
    if (k->child)
        child_kill(k->child, SIGKILL);
}

void pitr__server_gone_text(const char *error, const char *tail, char *out, size_t n)
{
    /* the error first, then as much of the end of the log as fits (whole lines, newest last) */
    int w = snprintf(out, n, "%s; the end of its log: ", error[0] ? error : "no FATAL or PANIC line in its log");
    if (w < 0 || (size_t)w + 4 >= n)
        return;
    size_t left = n - (size_t)w - 1, len = 0;
    for (const char *p = tail; *p; p++)
        len += *p == '\n' ? 3 : 1; /* a line break becomes " | " */
    const char *from = tail;
    while (len > left && *from) { /* drop the oldest lines until the rest fits */
        const char *nl = strchr(from, '\n');
        if (!nl)
            break;
        len -= (size_t)(nl - from) + 3;
        from = nl + 1;
    }
    char *o = out + w;
    for (; *from && left; from++) {
        if (*from != '\n') {
            *o++ = *from;
            left--;
        } else if (left >= 3) {
            memcpy(o, " | ", 3);
            o += 3;
            left -= 3;
        } else {
            break;
        }
    }
    *o = '\0';
}
