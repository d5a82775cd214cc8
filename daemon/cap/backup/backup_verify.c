/*
 * backup_verify: streaming verification of one backup file (see backup_internal.h).
 *
 * Owns a pipeline that reads the file on a pool worker, verifies and decrypts it (every chunk's
 * tag, the final chunk, nothing after it), decompresses it (the codec's own checksum) and hashes the
 * file bytes, handing the decrypted dump, a few MiB at a time, to a child's stdin on the loop
 * (pg_restore --list, or pg_restore -d for a test restore). The worker reads the next piece only
 * after the child took the previous one, so memory stays bounded. pg_restore --list may stop
 * reading once it has the table of contents: then the rest of the file is still verified, and only
 * its exit status counts for the child.
 *
 * A physical backup has no child: its decrypted tar goes through the base backup check on the same
 * worker (backup_basetar: every file against the server's backup_manifest), memory bounded the same.
 *
 * Spool mode (a parallel restore): the decrypted dump goes to a 0600 file on the pool workers, a
 * slice at a time, and only then the child runs on that file; the file is removed before done().
 */
#include <errno.h>
#include <signal.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cap/backup/backup_internal.h"
#include "child.h"
#include "err.h"

struct BackupVerify {
    uv_loop_t *loop;
    char *path;
    uint8_t key[BCF_KEY_LEN];
    char *expected_sha;
    bool must_read_all;
    BackupVerifyDoneFn done;
    void *data;

    /* worker side (one worker at a time) */
    uv_work_t work;
    int fd;
    BackupStreamReader *reader;
    BackupBuf out;
    bool eof;
    bool work_discards;  /* set by the loop before each work item: the child takes nothing more */
    int read_err;        /* 0, or the reader's / read's error */
    char read_msg[512];
    BackupBaseTar *base; /* options.base_tar: the tar checked as it is decrypted; freed at the end */
    int base_err;        /* 0, or the check's failure (the container may still be fine) */
    char base_msg[1024];
    BackupWalRange base_res;

    /* loop side */
    ChildProc *child;
    bool child_exited;
    bool stdin_closed;
    bool stdin_broken;   /* the child stopped reading */
    bool worker_busy;
    bool write_pending;
    bool canceled;
    bool finished;
    BackupVerifyResult res;

    /* spool mode */
    char *spool_path;      /* NULL: stream into the child's stdin */
    char **spool_argv;     /* the child's argv with spool_path appended */
    int spool_fd;          /* worker side */
    bool spool_created;    /* the file may exist: remove it before finishing */
    bool spool_removing;
    bool spool_started;    /* the child was spawned (or could not be) */
    uint64_t timeout_ms;
    char **child_env;      /* NULL or the child's extra environment (copied from the options) */
    uv_fs_t unlink_req;
    PrioSpec priority;     /* of the child and of the pool work */
};

int backup_buf_append(BackupBuf *b, const void *data, size_t len)
{
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 64 * 1024;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *p = realloc(b->data, cap);
        if (!p)
            return -ENOMEM;
        b->data = p;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

void backup_buf_free(BackupBuf *b)
{
    free(b->data);
    memset(b, 0, sizeof(*b));
}

static int backup_verify_sink(void *ctx, const uint8_t *data, size_t len)
{
    BackupVerify *v = ctx;
    if (v->spool_path) {
        /* Pool thread: straight into the spool file. */
        while (len > 0) {
            ssize_t n = write(v->spool_fd, data, len);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                int e = errno;
                snprintf(v->read_msg, sizeof(v->read_msg), "write '%s': %s", v->spool_path, strerror(e));
                return -e;
            }
            data += n;
            len -= (size_t)n;
        }
        return 0;
    }
    if (v->base) {
        /* Pool thread: the base backup check sees the tar; its failure does not stop reading the
         * container (which may be fine: the file was written from a bad tar, or re-encrypted). */
        if (!v->base_err)
            v->base_err = backup_basetar_update(v->base, data, len, v->base_msg, sizeof(v->base_msg));
        return 0;
    }
    /* Once the child stopped reading there is nobody to give the dump to: just verify. */
    if (v->work_discards)
        return 0;
    return backup_buf_append(&v->out, data, len);
}

/* Pool thread: read and decrypt until enough output is ready or the file ends. */
static void backup_verify_work_body(BackupVerify *v);

/* Pool thread: one slice at the verification's priority (a background verification or test
 * restore must not take the CPU and the disk from the database and the loop). */
static void backup_verify_work(uv_work_t *req)
{
    BackupVerify *v = req->data;
    PrioSaved saved;
    bool lower = v->priority.nice > 0 || v->priority.io != PRIO_IO_NORMAL;
    if (lower)
        (void)prio_thread_lower(&v->priority, &saved); /* what cannot be lowered stays, ignoring */
    backup_verify_work_body(v);
    if (lower)
        (void)prio_thread_restore(&saved);
}

static void backup_verify_work_body(BackupVerify *v)
{
    uint8_t *buf;

    if (v->fd < 0) {
        v->fd = open(v->path, O_RDONLY | O_CLOEXEC);
        if (v->fd < 0) {
            v->read_err = -errno;
            snprintf(v->read_msg, sizeof(v->read_msg), "cannot open '%s': %s", v->path, strerror(errno));
            v->eof = true;
            return;
        }
    }
    if (v->spool_path && v->spool_fd < 0) {
        (void)unlink(v->spool_path); /* a leftover of an interrupted attempt */
        v->spool_fd = open(v->spool_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (v->spool_fd < 0) {
            v->read_err = -errno;
            snprintf(v->read_msg, sizeof(v->read_msg), "cannot create '%s': %s", v->spool_path, strerror(errno));
            v->eof = true;
            close(v->fd);
            v->fd = -1;
            return;
        }
    }
    buf = malloc(BACKUP_VERIFY_READ_BYTES);
    if (!buf) {
        v->read_err = -ENOMEM;
        snprintf(v->read_msg, sizeof(v->read_msg), "out of memory");
        v->eof = true;
        return;
    }
    /* Spool mode: a slice of the file per work item, so that a cancel is seen in between. */
    size_t budget = BACKUP_VERIFY_SPOOL_SLICE_BYTES;
    while (!v->eof && v->out.len < BACKUP_VERIFY_OUT_BYTES && (!v->spool_path || budget > 0)) {
        ssize_t n = read(v->fd, buf, BACKUP_VERIFY_READ_BYTES);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            v->read_err = -errno;
            snprintf(v->read_msg, sizeof(v->read_msg), "read '%s': %s", v->path, strerror(errno));
            v->eof = true;
            break;
        }
        if (n == 0) {
            v->eof = true;
            int r = backupstream_reader_finish(v->reader, &v->res.stats);
            if (r < 0) {
                v->read_err = r;
                snprintf(v->read_msg, sizeof(v->read_msg), "%s", backupstream_reader_errmsg(v->reader));
            }
            break;
        }
        budget = budget > (size_t)n ? budget - (size_t)n : 0;
        int r = backupstream_reader_update(v->reader, buf, (size_t)n);
        if (r < 0) {
            v->read_err = r;
            if (!v->read_msg[0])
                snprintf(v->read_msg, sizeof(v->read_msg), "%s", backupstream_reader_errmsg(v->reader));
            backupstream_reader_finish(v->reader, &v->res.stats);
            v->eof = true;
        }
    }
    free(buf);
    if (v->eof && v->base) {
        if (!v->read_err && !v->base_err)
            v->base_err = backup_basetar_finish(v->base, &v->base_res, v->base_msg, sizeof(v->base_msg));
        backup_basetar_free(v->base); /* its records can be large: freed here, not on the loop */
        v->base = NULL;
        v->res.tar_checked = !v->read_err;
    }
    if (v->eof) {
        const BcfHeader *h = backupstream_reader_header(v->reader);
        if (h)
            bcf_hex(h->key_id, BCF_KEY_ID_LEN, v->res.key_id_hex);
        close(v->fd);
        v->fd = -1;
        /* No fsync: a temporary read back at once and removed; a crash leaves it useless anyway. */
        if (v->spool_fd >= 0 && close(v->spool_fd) < 0 && !v->read_err) {
            v->read_err = -errno;
            snprintf(v->read_msg, sizeof(v->read_msg), "write '%s': %s", v->spool_path, strerror(errno));
        }
        v->spool_fd = -1;
    }
}

static void backup_verify_pump(BackupVerify *v);

static void backup_verify_finish(BackupVerify *v)
{
    BackupVerifyResult *res = &v->res;

    if (v->finished)
        return;
    v->finished = true;
    res->container_ok = v->read_err == 0 && !v->canceled;
    /* A damaged file explains everything after it (the child was killed because of it). */
    if (v->read_err)
        snprintf(res->error, sizeof(res->error), "%s", v->read_msg[0] ? v->read_msg : err_str(v->read_err));
    if (v->expected_sha) {
        res->sha_checked = true;
        res->sha_match = v->read_err == 0 && strcmp(v->expected_sha, res->stats.file_sha256_hex) == 0;
        if (v->read_err == 0 && !res->sha_match && !res->error[0])
            snprintf(res->error, sizeof(res->error),
                     "SHA-256 mismatch: the file is %s, the manifest records %s (file replaced?)",
                     res->stats.file_sha256_hex, v->expected_sha);
    }
    if (res->tar_checked && !v->canceled) {
        res->tar_ok = v->base_err == 0;
        if (res->tar_ok) {
            res->files_verified = v->base_res.files_verified;
            snprintf(res->checksum_algorithm, sizeof(res->checksum_algorithm), "%s", v->base_res.checksum_algorithm);
        } else if (!res->error[0]) {
            snprintf(res->error, sizeof(res->error), "%s", v->base_msg);
        }
    }
    if (v->canceled && !res->error[0])
        snprintf(res->error, sizeof(res->error), "canceled");
    child_free(v->child);
    v->child = NULL;
    backup_basetar_free(v->base);
    v->base = NULL;
    backupstream_reader_free(v->reader);
    backup_buf_free(&v->out);
    v->done(res, v->data);
    free(v->spool_path);
    for (size_t i = 0; v->spool_argv && v->spool_argv[i]; i++)
        free(v->spool_argv[i]);
    free(v->spool_argv);
    for (size_t i = 0; v->child_env && v->child_env[i]; i++)
        free(v->child_env[i]);
    free(v->child_env);
    free(v->path);
    free(v->expected_sha);
    memset(v->key, 0, sizeof(v->key));
    free(v);
}

static void backup_verify_after_work(uv_work_t *req, int status)
{
    BackupVerify *v = req->data;
    v->worker_busy = false;
    if (status < 0 && !v->read_err) {
        v->read_err = status;
        v->eof = true;
    }
    backup_verify_pump(v);
}

static void backup_verify_on_write(ChildProc *c, int status, void *data)
{
    BackupVerify *v = data;
    (void)c;
    v->write_pending = false;
    if (status < 0)
        v->stdin_broken = true;
    backup_verify_pump(v);
}

static void backup_verify_on_exit(ChildProc *c, int64_t exit_status, int term_signal, void *data)
{
    BackupVerify *v = data;
    (void)c;
    v->child_exited = true;
    v->stdin_broken = true;
    v->res.child_ok = term_signal == 0 && exit_status == 0;
    child_describe_exit(exit_status, term_signal, v->res.child_status, sizeof(v->res.child_status));
    if (!v->res.child_ok) {
        size_t n = 0;
        const char *tail = child_stderr(c, &n);
        char line[400] = "";
        /* Last non-empty line of stderr explains it. */
        if (tail && n) {
            const char *end = tail + n;
            while (end > tail && (end[-1] == '\n' || end[-1] == '\r'))
                end--;
            const char *start = end;
            while (start > tail && start[-1] != '\n')
                start--;
            snprintf(line, sizeof(line), ": %.*s", (int)(end - start), start);
        }
        if (!v->res.error[0] || v->read_err == 0)
            snprintf(v->res.error, sizeof(v->res.error), "pg_restore %s%s", v->res.child_status, line);
    } else if (v->must_read_all && !v->eof && !v->canceled) {
        v->res.child_ok = false;
        snprintf(v->res.error, sizeof(v->res.error), "pg_restore exited before reading the whole dump");
    }
    backup_verify_pump(v);
}

static void backup_verify_spool_removed(uv_fs_t *req)
{
    BackupVerify *v = req->data;
    uv_fs_req_cleanup(req);
    v->spool_removing = false;
    v->spool_created = false;
    backup_verify_pump(v);
}

static void backup_verify_spawn(BackupVerify *v, const char *const *argv, ChildStdin in)
{
    ChildOptions co = {.argv = argv,
                       .env = (const char *const *)v->child_env,
                       .priority = v->priority.nice > 0 || v->priority.io != PRIO_IO_NORMAL ? &v->priority : NULL,
                       .stdin_mode = in,
                       .stdout_mode = CHILD_STDOUT_CAPTURE,
                       .stdout_limit = 64 * 1024,
                       .timeout_ms = v->timeout_ms,
                       .on_exit = backup_verify_on_exit,
                       .data = v};
    int err = 0;
    v->res.child_ran = true;
    v->child = child_spawn(v->loop, &co, &err);
    if (!v->child) {
        v->stdin_broken = true;
        v->child_exited = true;
        snprintf(v->res.error, sizeof(v->res.error), "cannot run '%s': %s", argv[0], err_str(err));
        snprintf(v->res.child_status, sizeof(v->res.child_status), "could not be started");
    }
}

/* Spool mode: decrypt the whole file, then run the child on it, then remove the file. */
static void backup_verify_pump_spool(BackupVerify *v)
{
    if (!v->eof && !v->canceled && !v->read_err) {
        v->worker_busy = true;
        v->spool_created = true;
        int r = uv_queue_work(v->loop, &v->work, backup_verify_work, backup_verify_after_work);
        if (r == 0)
            return;
        v->worker_busy = false;
        v->read_err = r;
        v->eof = true;
    }
    if (!v->spool_started && v->spool_argv && !v->read_err && !v->canceled) {
        v->spool_started = true;
        backup_verify_spawn(v, (const char *const *)v->spool_argv, CHILD_STDIN_NULL);
        if (v->child)
            return;
    }
    if (v->child && !v->child_exited)
        return;
    if (v->spool_created) {
        v->spool_removing = true;
        v->unlink_req.data = v;
        if (uv_fs_unlink(v->loop, &v->unlink_req, v->spool_path, backup_verify_spool_removed) == 0)
            return;
        v->spool_removing = false;
        v->spool_created = false;
    }
    backup_verify_finish(v);
}

/* Decide the next step; called after every event.
 *
 * Streaming into a child is a pipeline of two stages with one piece in each: while the child's
 * stdin takes one piece (child_stdin_write copied it, so `out` is free again), the worker verifies
 * and decrypts the next into `out`; a full `out` waits until the write in flight is done. Memory
 * stays bounded by two pieces, and on two cores the decryption and the child's work overlap
 * instead of taking turns. */
static void backup_verify_pump(BackupVerify *v)
{
    if (v->finished || v->spool_removing)
        return;
    if (v->spool_path) {
        if (!v->worker_busy)
            backup_verify_pump_spool(v);
        return;
    }
    if (v->worker_busy)
        return; /* it owns `out` */
    if (v->out.len > 0 && v->child && !v->stdin_broken && !v->canceled) {
        if (v->write_pending)
            return; /* `out` is full: wait for the child to take the piece before it */
        int r = child_stdin_write(v->child, v->out.data, v->out.len, backup_verify_on_write, v);
        if (r == 0)
            v->write_pending = true;
        else
            v->stdin_broken = true;
    }
    v->out.len = 0;
    if (!v->eof && !v->canceled && !v->read_err) {
        v->worker_busy = true;
        v->work_discards = v->stdin_broken || !v->child;
        int r = uv_queue_work(v->loop, &v->work, backup_verify_work, backup_verify_after_work);
        if (r < 0) {
            v->worker_busy = false;
            v->read_err = r;
            v->eof = true;
        } else {
            return;
        }
    }
    if (v->write_pending)
        return;
    /* Input done (or failed): let the child finish. A broken stream must not look complete to a
     * restoring child: kill it instead of closing its stdin cleanly. */
    if (v->child && !v->child_exited) {
        if (!v->stdin_closed) {
            v->stdin_closed = true;
            if (v->read_err || v->canceled)
                child_kill(v->child, SIGKILL);
            else
                child_stdin_close(v->child);
        }
        return;
    }
    backup_verify_finish(v);
}

BackupVerify *backup_verify_start(uv_loop_t *loop, const BackupVerifyOptions *opt, BackupVerifyDoneFn done,
                                  void *data)
{
    BackupVerify *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->loop = loop;
    v->fd = -1;
    v->done = done;
    v->data = data;
    v->must_read_all = opt->child_must_read_all;
    memcpy(v->key, opt->key, BCF_KEY_LEN);
    v->path = strdup(opt->path);
    v->expected_sha = opt->expected_sha256_hex ? strdup(opt->expected_sha256_hex) : NULL;
    v->reader = backupstream_reader_new(v->key, true, backup_verify_sink, v);
    v->work.data = v;
    v->spool_fd = -1;
    v->timeout_ms = opt->timeout_ms;
    v->priority = opt->priority;
    if (opt->base_tar && !opt->argv)
        v->base = backup_basetar_new(opt->base_algo);
    bool ok = v->path && v->reader && (!opt->expected_sha256_hex || v->expected_sha) && (!opt->base_tar || v->base);
    if (ok && opt->spool_path) {
        size_t n = 0;
        while (opt->argv && opt->argv[n])
            n++;
        ok = (v->spool_path = strdup(opt->spool_path)) != NULL;
        if (ok && opt->argv && (ok = (v->spool_argv = calloc(n + 2, sizeof(char *))) != NULL)) {
            for (size_t i = 0; ok && i < n; i++)
                ok = (v->spool_argv[i] = strdup(opt->argv[i])) != NULL;
            ok = ok && (v->spool_argv[n] = strdup(opt->spool_path)) != NULL;
        }
    }
    if (ok && opt->child_env) {
        size_t n = 0;
        while (opt->child_env[n])
            n++;
        ok = (v->child_env = calloc(n + 1, sizeof(char *))) != NULL;
        for (size_t i = 0; ok && i < n; i++)
            ok = (v->child_env[i] = strdup(opt->child_env[i])) != NULL;
    }
    if (!ok) {
        for (size_t i = 0; v->child_env && v->child_env[i]; i++)
            free(v->child_env[i]);
        free(v->child_env);
        backup_basetar_free(v->base);
        backupstream_reader_free(v->reader);
        for (size_t i = 0; v->spool_argv && v->spool_argv[i]; i++)
            free(v->spool_argv[i]);
        free(v->spool_argv);
        free(v->spool_path);
        free(v->path);
        free(v->expected_sha);
        free(v);
        return NULL;
    }
    if (opt->argv && !opt->spool_path)
        backup_verify_spawn(v, opt->argv, CHILD_STDIN_PIPE);
    backup_verify_pump(v);
    return v;
}

void backup_verify_cancel(BackupVerify *v)
{
    if (!v || v->finished)
        return;
    v->canceled = true;
    if (v->child && !v->child_exited)
        child_kill(v->child, SIGKILL);
    backup_verify_pump(v);
}
