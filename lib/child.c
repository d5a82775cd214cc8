/*
 * child: uv_spawn'ed child processes with bounded output capture, streaming with backpressure,
 * timeouts and a single exit callback (see child.h).
 */
#include "child.h"

#include "prio.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>


#define CHILD_READ_CHUNK (64u << 10)
#define CHILD_KILL_GRACE_DEFAULT_MS 5000u
#define CHILD_DRAIN_DEFAULT_MS 2000u

struct ChildProc {
    uv_loop_t *loop;
    uv_process_t proc;
    uv_pipe_t in;
    uv_pipe_t out;
    uv_pipe_t err;
    uv_timer_t timer; /* timeout, then the kill grace period */
    uv_timer_t drain; /* silence on the pipes after exit */
    uv_shutdown_t shutdown_req;
    int open_handles; /* handles initialised and not yet through their close callback */

    ChildStdout stdout_mode;
    ChildChunkCb on_stdout;
    ChildExitCb on_exit;
    void *data;
    uint64_t kill_grace_ms;
    uint64_t drain_ms;

    int pid;
    bool has_stdin;
    bool stdin_closed;
    bool spawned;
    bool exited;
    bool out_eof;
    bool err_eof;
    bool out_paused;
    bool finished;       /* exit callback delivered (or suppressed) */
    bool free_requested; /* child_free called */
    bool closing;        /* handles being closed */
    bool timed_out;
    bool kill_stage;     /* timer now counts the grace period */
    int64_t exit_status;
    int term_signal;

    char *out_buf;
    size_t out_len, out_cap, out_limit;
    bool out_trunc;
    uint64_t out_total;

    char *err_buf;
    size_t err_len, err_limit;
    bool err_trunc;

    char read_buf[CHILD_READ_CHUNK]; /* shared: libuv reads one stream at a time */
};

typedef struct ChildWrite {
    uv_write_t req;
    ChildProc *c;
    ChildWriteCb cb;
    void *cb_data;
    char buf[];
} ChildWrite;

static void child_on_close(uv_handle_t *h)
{
    ChildProc *c = h->data;
    if (--c->open_handles > 0)
        return;
    free(c->out_buf);
    free(c->err_buf);
    free(c);
}

static void child_close_handle(ChildProc *c, uv_handle_t *h)
{
    (void)c;
    if (h->data && !uv_is_closing(h))
        uv_close(h, child_on_close);
}

/* Closes every handle; the struct is freed by the last close callback. */
static void child_close_all(ChildProc *c)
{
    if (c->closing)
        return;
    c->closing = true;
    child_close_handle(c, (uv_handle_t *)&c->proc);
    if (c->has_stdin)
        child_close_handle(c, (uv_handle_t *)&c->in);
    child_close_handle(c, (uv_handle_t *)&c->out);
    child_close_handle(c, (uv_handle_t *)&c->err);
    child_close_handle(c, (uv_handle_t *)&c->timer);
    child_close_handle(c, (uv_handle_t *)&c->drain);
}

static void child_signal_group(ChildProc *c, int signum)
{
    /* The child is a session and group leader; before its setsid() the group does not exist. */
    if (kill(-(pid_t)c->pid, signum) < 0)
        uv_process_kill(&c->proc, signum);
}

static void child_maybe_finish(ChildProc *c)
{
    if (c->finished || !c->exited || !c->out_eof || !c->err_eof)
        return;
    c->finished = true;
    uv_timer_stop(&c->timer);
    uv_timer_stop(&c->drain);
    if (c->free_requested) {
        child_close_all(c);
        return;
    }
    c->on_exit(c, c->exit_status, c->term_signal, c->data); /* may free c */
}

static void child_on_drain(uv_timer_t *t)
{
    ChildProc *c = t->data;
    /* Exited, but something keeps the pipes open and silent: stop waiting for EOF. */
    if (!c->out_eof) {
        uv_read_stop((uv_stream_t *)&c->out);
        c->out_eof = true;
    }
    if (!c->err_eof) {
        uv_read_stop((uv_stream_t *)&c->err);
        c->err_eof = true;
    }
    child_maybe_finish(c);
}

static void child_restart_drain(ChildProc *c)
{
    if (c->exited && !c->finished && !c->out_paused && !c->free_requested)
        uv_timer_start(&c->drain, child_on_drain, c->drain_ms, 0);
}

static void child_on_exit(uv_process_t *p, int64_t exit_status, int term_signal)
{
    ChildProc *c = p->data;
    c->exited = true;
    c->pid = 0;
    c->exit_status = exit_status;
    c->term_signal = term_signal;
    uv_timer_stop(&c->timer);
    child_restart_drain(c);
    child_maybe_finish(c);
}

static void child_on_timer(uv_timer_t *t)
{
    ChildProc *c = t->data;
    if (c->exited)
        return;
    if (!c->kill_stage) {
        c->timed_out = true;
        c->kill_stage = true;
        child_signal_group(c, SIGTERM);
        uv_timer_start(&c->timer, child_on_timer, c->kill_grace_ms, 0);
    } else {
        child_signal_group(c, SIGKILL);
    }
}

static void child_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)suggested;
    ChildProc *c = h->data;
    *buf = uv_buf_init(c->read_buf, (unsigned int)sizeof(c->read_buf));
}

static void child_capture(ChildProc *c, const char *p, size_t n)
{
    size_t room = c->out_limit - c->out_len;
    if (n > room) {
        c->out_trunc = true;
        n = room;
    }
    if (n == 0)
        return;
    if (c->out_len + n + 1 > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < c->out_len + n + 1)
            cap *= 2;
        if (cap > c->out_limit + 1)
            cap = c->out_limit + 1;
        char *nb = realloc(c->out_buf, cap);
        if (!nb) {
            c->out_trunc = true;
            return;
        }
        c->out_buf = nb;
        c->out_cap = cap;
    }
    memcpy(c->out_buf + c->out_len, p, n);
    c->out_len += n;
    c->out_buf[c->out_len] = '\0';
}

static void child_on_stdout(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ChildProc *c = s->data;
    if (nread > 0) {
        c->out_total += (uint64_t)nread;
        child_restart_drain(c);
        if (c->stdout_mode == CHILD_STDOUT_STREAM) {
            if (!c->free_requested)
                c->on_stdout(c, buf->base, (size_t)nread, c->data);
        } else {
            child_capture(c, buf->base, (size_t)nread);
        }
        return;
    }
    if (nread < 0) { /* UV_EOF, or an error that ends the stream all the same */
        uv_read_stop(s);
        c->out_eof = true;
        c->out_paused = false;
        child_maybe_finish(c);
    }
}

static void child_tail(ChildProc *c, const char *p, size_t n)
{
    size_t cap = c->err_limit;
    if (!c->err_buf) {
        c->err_buf = malloc(cap + 1);
        if (!c->err_buf) {
            c->err_trunc = true;
            return;
        }
    }
    if (n >= cap) {
        c->err_trunc = c->err_trunc || c->err_len > 0 || n > cap;
        memcpy(c->err_buf, p + (n - cap), cap);
        c->err_len = cap;
    } else {
        if (c->err_len + n > cap) {
            size_t keep = cap - n;
            memmove(c->err_buf, c->err_buf + (c->err_len - keep), keep);
            c->err_len = keep;
            c->err_trunc = true;
        }
        memcpy(c->err_buf + c->err_len, p, n);
        c->err_len += n;
    }
    c->err_buf[c->err_len] = '\0';
}

static void child_on_stderr(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    ChildProc *c = s->data;
    if (nread > 0) {
        child_restart_drain(c);
        child_tail(c, buf->base, (size_t)nread);
        return;
    }
    if (nread < 0) {
        uv_read_stop(s);
        c->err_eof = true;
        child_maybe_finish(c);
    }
}

/* ---- the exec shim: PR_SET_PDEATHSIG between fork and exec ---- */

static const char *child_shim_path; /* NULL: exec programs directly */

void child_use_exec_shim(const char *shim_path)
{
    child_shim_path = shim_path;
}

bool child_exec_shim_main(int argc, char **argv)
{
    if (argc < 4 || strcmp(argv[0], CHILD_SHIM_ARGV0) != 0)
        return false;
    char *end = NULL;
    long parent = strtol(argv[1], &end, 10);
    if (!end || *end || parent <= 1) {
        fprintf(stderr, "%s: bad parent pid '%s'\n", CHILD_SHIM_ARGV0, argv[1]);
        _exit(127);
    }
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0) {
        fprintf(stderr, "%s: prctl(PR_SET_PDEATHSIG): %s\n", CHILD_SHIM_ARGV0, strerror(errno));
        _exit(127);
    }
    /* The daemon died between the fork and the prctl: no signal will come, go now. */
    if (getppid() != (pid_t)parent)
        raise(SIGKILL);
    execvp(argv[2], argv + 3);
    fprintf(stderr, "cannot run '%s': %s\n", argv[2], strerror(errno));
    _exit(127);
}

/* Would execvp find an executable for file? 0 or -errno, as uv_spawn reports a failed exec. */
static int child_check_program(const char *file, const char *const *env)
{
    if (strchr(file, '/'))
        return access(file, X_OK) == 0 ? 0 : -errno;
    const char *path = NULL;
    for (size_t i = 0; env && env[i] && !path; i++)
        if (strncmp(env[i], "PATH=", 5) == 0)
            path = env[i] + 5;
    if (!path)
        path = getenv("PATH");
    if (!path)
        path = "/usr/local/bin:/bin:/usr/bin";
    int best = -ENOENT;
    while (*path) {
        const char *colon = strchr(path, ':');
        size_t n = colon ? (size_t)(colon - path) : strlen(path);
        char full[4096];
        struct stat st;
        if (snprintf(full, sizeof(full), "%.*s/%s", (int)n, n ? path : ".", file) < (int)sizeof(full) &&
            stat(full, &st) == 0 && S_ISREG(st.st_mode)) {
            if (access(full, X_OK) == 0)
                return 0;
            best = -EACCES;
        }
        path += n;
        if (*path == ':')
            path++;
    }
    return best;
}

/* Inherited environment with the additions appended; same-name inherited entries dropped. */
static char **child_build_env(const char *const *add)
{
    size_t n_env = 0, n_add = 0;
    while (environ && environ[n_env])
        n_env++;
    while (add[n_add])
        n_add++;
    char **env = calloc(n_env + n_add + 1, sizeof(char *));
    if (!env)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++) {
        const char *eq = strchr(environ[i], '=');
        size_t nl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
        bool overridden = false;
        for (size_t j = 0; j < n_add && !overridden; j++)
            overridden = strncmp(add[j], environ[i], nl) == 0 && add[j][nl] == '=';
        if (!overridden)
            env[k++] = environ[i];
    }
    for (size_t j = 0; j < n_add; j++)
        env[k++] = (char *)(uintptr_t)add[j];
    env[k] = NULL;
    return env;
}

ChildProc *child_spawn(uv_loop_t *loop, const ChildOptions *opt, int *ret_err)
{
    int r = -EINVAL;
    ChildProc *c = NULL;
    char **args = NULL;
    char **env = NULL;
    if (!loop || !opt || !opt->argv || !opt->argv[0] || !opt->on_exit ||
        (opt->stdout_mode == CHILD_STDOUT_STREAM && !opt->on_stdout))
        goto fail;
    if (opt->env)
        for (size_t j = 0; opt->env[j]; j++)
            if (!strchr(opt->env[j], '=') || opt->env[j][0] == '=')
                goto fail;

    const char *file = opt->file ? opt->file : opt->argv[0];
    char parent[24];
    size_t lead = 0;
    if (child_shim_path) {
        /* The exec of the real program happens in the shim, where a failure is only an exit
         * status: find out here what uv_spawn would have said. */
        r = child_check_program(file, opt->env);
        if (r < 0)
            goto fail;
        snprintf(parent, sizeof(parent), "%ld", (long)getpid());
        lead = 3;
    }
    r = -ENOMEM;
    size_t argc = 0;
    while (opt->argv[argc])
        argc++;
    args = calloc(lead + argc + 1, sizeof(char *));
    if (!args)
        goto fail;
    if (lead) {
        args[0] = (char *)(uintptr_t)CHILD_SHIM_ARGV0;
        args[1] = parent;
        args[2] = (char *)(uintptr_t)file;
    }
    for (size_t i = 0; i < argc; i++)
        args[lead + i] = (char *)(uintptr_t)opt->argv[i];
    if (opt->env && opt->env[0]) {
        env = child_build_env(opt->env);
        if (!env)
            goto fail;
    }
    c = calloc(1, sizeof(*c));
    if (!c)
        goto fail;
    c->loop = loop;
    c->stdout_mode = opt->stdout_mode;
    c->on_stdout = opt->on_stdout;
    c->on_exit = opt->on_exit;
    c->data = opt->data;
    c->out_limit = opt->stdout_limit ? opt->stdout_limit : CHILD_STDOUT_LIMIT_DEFAULT;
    c->err_limit = opt->stderr_limit ? opt->stderr_limit : CHILD_STDERR_LIMIT_DEFAULT;
    c->kill_grace_ms = opt->kill_grace_ms ? opt->kill_grace_ms : CHILD_KILL_GRACE_DEFAULT_MS;
    c->drain_ms = opt->drain_timeout_ms ? opt->drain_timeout_ms : CHILD_DRAIN_DEFAULT_MS;
    c->has_stdin = opt->stdin_mode == CHILD_STDIN_PIPE;

    /* From here on handles exist: failures release c through the close callbacks. */
    uv_timer_init(loop, &c->timer);
    c->timer.data = c;
    uv_timer_init(loop, &c->drain);
    c->drain.data = c;
    uv_pipe_init(loop, &c->out, 0);
    c->out.data = c;
    uv_pipe_init(loop, &c->err, 0);
    c->err.data = c;
    c->open_handles = 4;
    if (c->has_stdin) {
        uv_pipe_init(loop, &c->in, 0);
        c->in.data = c;
        c->open_handles++;
    }

    uv_stdio_container_t stdio[3];
    memset(stdio, 0, sizeof(stdio));
    if (c->has_stdin) {
        stdio[0].flags = (uv_stdio_flags)(UV_CREATE_PIPE | UV_READABLE_PIPE);
        stdio[0].data.stream = (uv_stream_t *)&c->in;
    } else {
        stdio[0].flags = UV_IGNORE; /* /dev/null */
    }
    stdio[1].flags = (uv_stdio_flags)(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
    stdio[1].data.stream = (uv_stream_t *)&c->out;
    stdio[2].flags = (uv_stdio_flags)(UV_CREATE_PIPE | UV_WRITABLE_PIPE);
    stdio[2].data.stream = (uv_stream_t *)&c->err;

    uv_process_options_t po;
    memset(&po, 0, sizeof(po));
    po.exit_cb = child_on_exit;
    po.file = lead ? child_shim_path : file;
    po.args = args;
    po.env = env; /* NULL: inherit */
    po.cwd = opt->cwd;
    po.flags = UV_PROCESS_DETACHED; /* own session and process group */
    if (opt->set_uid) {
        po.flags |= UV_PROCESS_SETUID;
        po.uid = opt->uid;
    }
    if (opt->set_gid) {
        po.flags |= UV_PROCESS_SETGID;
        po.gid = opt->gid;
    }
    po.stdio_count = 3;
    po.stdio = stdio;

    c->proc.data = c;
    c->open_handles++; /* uv_spawn initialises the process handle even when it fails */
    r = uv_spawn(loop, &c->proc, &po);
    free(args);
    args = NULL;
    free(env);
    env = NULL;
    if (r < 0) {
        c->finished = true;
        c->free_requested = true;
        child_close_all(c);
        c = NULL;
        goto fail;
    }
    c->spawned = true;
    c->pid = c->proc.pid;
    /* Lowering the priority of our own child is always allowed; a failure costs only the
     * priority, ignoring. Threads and processes it starts later inherit it. */
    if (opt->priority)
        (void)prio_apply((pid_t)c->pid, opt->priority);

    r = uv_read_start((uv_stream_t *)&c->out, child_alloc, child_on_stdout);
    if (r == 0)
        r = uv_read_start((uv_stream_t *)&c->err, child_alloc, child_on_stderr);
    if (r < 0) {
        /* Cannot watch it: do not leave it running unobserved. */
        child_signal_group(c, SIGKILL);
        child_free(c);
        c = NULL;
        goto fail;
    }
    if (opt->timeout_ms)
        uv_timer_start(&c->timer, child_on_timer, opt->timeout_ms, 0);
    return c;

fail:
    if (c) { /* no handle initialised yet */
        free(c);
    }
    free(args);
    free(env);
    if (ret_err)
        *ret_err = r;
    return NULL;
}

int child_kill(ChildProc *c, int signum)
{
    if (!c)
        return -EINVAL;
    if (c->exited || !c->spawned)
        return -ESRCH;
    if (kill(-(pid_t)c->pid, signum) == 0)
        return 0;
    return uv_process_kill(&c->proc, signum);
}

int child_pid(const ChildProc *c)
{
    return c ? c->pid : 0;
}

void child_stdout_pause(ChildProc *c)
{
    if (!c || c->out_eof || c->out_paused)
        return;
    uv_read_stop((uv_stream_t *)&c->out);
    c->out_paused = true;
    uv_timer_stop(&c->drain);
}

void child_stdout_resume(ChildProc *c)
{
    if (!c || c->out_eof || !c->out_paused || c->free_requested)
        return;
    c->out_paused = false;
    if (uv_read_start((uv_stream_t *)&c->out, child_alloc, child_on_stdout) < 0) {
        c->out_eof = true;
        child_maybe_finish(c);
        return;
    }
    child_restart_drain(c);
}

static void child_on_write(uv_write_t *req, int status)
{
    ChildWrite *w = req->data;
    ChildProc *c = w->c;
    if (w->cb && !c->free_requested)
        w->cb(c, status, w->cb_data);
    free(w);
}

int child_stdin_write(ChildProc *c, const void *buf, size_t len, ChildWriteCb cb, void *cb_data)
{
    if (!c || !c->has_stdin || len > UINT32_MAX)
        return -EINVAL;
    if (c->stdin_closed || c->closing)
        return -EPIPE;
    ChildWrite *w = malloc(sizeof(*w) + len);
    if (!w)
        return -ENOMEM;
    w->c = c;
    w->cb = cb;
    w->cb_data = cb_data;
    w->req.data = w;
    memcpy(w->buf, buf, len);
    uv_buf_t b = uv_buf_init(w->buf, (unsigned int)len);
    int r = uv_write(&w->req, (uv_stream_t *)&c->in, &b, 1, child_on_write);
    if (r < 0) {
        free(w);
        return r;
    }
    return 0;
}

size_t child_stdin_pending(const ChildProc *c)
{
    if (!c || !c->has_stdin || c->stdin_closed)
        return 0;
    return uv_stream_get_write_queue_size((const uv_stream_t *)&c->in);
}

static void child_on_shutdown(uv_shutdown_t *req, int status)
{
    (void)status;
    ChildProc *c = req->data;
    child_close_handle(c, (uv_handle_t *)&c->in);
}

void child_stdin_close(ChildProc *c)
{
    if (!c || !c->has_stdin || c->stdin_closed || c->closing)
        return;
    c->stdin_closed = true;
    c->shutdown_req.data = c;
    if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->in, child_on_shutdown) < 0)
        child_close_handle(c, (uv_handle_t *)&c->in);
}

const char *child_stdout(const ChildProc *c, size_t *ret_len)
{
    if (ret_len)
        *ret_len = c && c->out_buf ? c->out_len : 0;
    return c && c->out_buf ? c->out_buf : "";
}

bool child_stdout_truncated(const ChildProc *c)
{
    return c && c->out_trunc;
}

uint64_t child_stdout_total(const ChildProc *c)
{
    return c ? c->out_total : 0;
}

const char *child_stderr(const ChildProc *c, size_t *ret_len)
{
    if (ret_len)
        *ret_len = c && c->err_buf ? c->err_len : 0;
    return c && c->err_buf ? c->err_buf : "";
}

bool child_stderr_truncated(const ChildProc *c)
{
    return c && c->err_trunc;
}

bool child_timed_out(const ChildProc *c)
{
    return c && c->timed_out;
}

void child_free(ChildProc *c)
{
    if (!c || c->free_requested)
        return;
    c->free_requested = true;
    if (c->finished) {
        child_close_all(c);
        return;
    }
    /* Still running or still draining: stop reading, make sure it dies, close once reaped. */
    if (!c->out_eof) {
        uv_read_stop((uv_stream_t *)&c->out);
        c->out_eof = true;
    }
    if (!c->err_eof) {
        uv_read_stop((uv_stream_t *)&c->err);
        c->err_eof = true;
    }
    if (!c->exited)
        child_signal_group(c, SIGKILL);
    child_maybe_finish(c);
}

const char *child_describe_exit(int64_t exit_status, int term_signal, char *buf, size_t n)
{
    if (!buf || n == 0)
        return buf;
    if (term_signal > 0) {
        const char *abbrev = sigabbrev_np(term_signal);
        if (abbrev)
            snprintf(buf, n, "killed by signal %d (SIG%s)", term_signal, abbrev);
        else
            snprintf(buf, n, "killed by signal %d", term_signal);
    } else {
        snprintf(buf, n, "exited with status %lld", (long long)exit_status);
    }
    return buf;
}

const char *child_describe_outcome(const ChildProc *c, int64_t exit_status, int term_signal, size_t tail, char *buf,
                                   size_t n)
{
    char how[64];
    size_t len = 0;
    const char *err = child_stderr(c, &len);

    if (!buf || n == 0)
        return buf;
    if (child_timed_out(c))
        snprintf(how, sizeof(how), "timed out");
    else
        child_describe_exit(exit_status, term_signal, how, sizeof(how));
    while (err && len && (err[len - 1] == '\n' || err[len - 1] == '\r'))
        len--;
    size_t t = err && len > tail ? tail : err ? len : 0;
    snprintf(buf, n, "%s%s%.*s", how, t ? ": " : "", (int)t, t ? err + (len - t) : "");
    return buf;
}
