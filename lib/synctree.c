/*
 * synctree: a directory tree made durable in two passes (see synctree.h).
 *
 * Owns nothing beyond one call: the descriptors it opens are closed before it returns. The walk is
 * by descriptor (openat, fdopendir) with O_NOFOLLOW, so a symbolic link inside the tree is never
 * followed out of it, and it is bounded in depth (a data directory is a few levels deep). And the
 * ticker: one timer on the loop, one pass at a time on the pool, freed when both are done.
 */
#include "synctree.h"

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SYNCTREE_MAX_DEPTH 32

typedef struct SyncTreeWalk {
    bool flush;          /* false: start writeback only; true: fsync */
    SyncTreeStats stats;
    char *err;
    size_t errlen;
} SyncTreeWalk;

static int synctree_fail(SyncTreeWalk *w, int e, const char *what, const char *path, const char *name)
{
    if (w->errlen)
        snprintf(w->err, w->errlen, "%s '%s%s%s': %s", what, path, name ? "/" : "", name ? name : "", strerror(e));
    return -e;
}

/* One regular file: its writeback started, or fsynced. */
static int synctree_file(SyncTreeWalk *w, int dirfd, const char *path, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return w->flush ? synctree_fail(w, errno, "open", path, name) : 0;
    int r = 0;
    if (!w->flush) {
        (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE); /* only a head start, ignoring */
    } else if (fsync(fd) < 0) {
        r = synctree_fail(w, errno, "fsync", path, name);
    } else {
        w->stats.files++;
    }
    close(fd);
    return r;
}

/* The directory open as `fd` (taken: closed here), its entries first, then itself. */
static int synctree_dir(SyncTreeWalk *w, int fd, const char *path, int depth)
{
    if (depth > SYNCTREE_MAX_DEPTH) {
        close(fd);
        return synctree_fail(w, ELOOP, "walk", path, NULL);
    }
    int self = dup(fd);
    if (self < 0) {
        int e = errno;
        close(fd);
        return synctree_fail(w, e, "dup", path, NULL);
    }
    DIR *d = fdopendir(fd);
    if (!d) {
        int e = errno;
        close(fd);
        close(self);
        return synctree_fail(w, e, "opendir", path, NULL);
    }
    int r = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                r = synctree_fail(w, errno, "readdir", path, NULL);
            break;
        }
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        unsigned char type = de->d_type;
        if (type == DT_UNKNOWN) {
            struct stat sb;
            if (fstatat(self, de->d_name, &sb, AT_SYMLINK_NOFOLLOW) < 0) {
                r = synctree_fail(w, errno, "stat", path, de->d_name);
                break;
            }
            type = S_ISDIR(sb.st_mode) ? DT_DIR : S_ISREG(sb.st_mode) ? DT_REG : DT_LNK;
        }
        if (type == DT_REG) {
            r = synctree_file(w, self, path, de->d_name);
        } else if (type == DT_DIR) {
            char sub[4096];
            if ((size_t)snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name) >= sizeof(sub)) {
                r = synctree_fail(w, ENAMETOOLONG, "walk", path, de->d_name);
                break;
            }
            int cfd = openat(self, de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            r = cfd < 0 ? synctree_fail(w, errno, "open", path, de->d_name) : synctree_dir(w, cfd, sub, depth + 1);
        }
        if (r < 0)
            break;
    }
    closedir(d);
    if (r == 0 && w->flush) {
        if (fsync(self) < 0)
            r = synctree_fail(w, errno, "fsync", path, NULL);
        else
            w->stats.directories++;
    }
    close(self);
    return r;
}

int synctree_sync(const char *dir, SyncTreeStats *ret_stats, char *err, size_t errlen)
{
    SyncTreeWalk w = {.err = err, .errlen = errlen};
    if (errlen)
        err[0] = '\0';
    for (int pass = 0; pass < 2; pass++) {
        w.flush = pass == 1;
        int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
            return synctree_fail(&w, errno, "open", dir, NULL);
        int r = synctree_dir(&w, fd, dir, 0);
        if (r < 0 && w.flush)
            return r;
        if (r < 0 && errlen)
            err[0] = '\0'; /* the head start failed somewhere: the second pass says what counts */
    }
    /* the tree's own name: its entry in the parent directory */
    char parent[4096];
    snprintf(parent, sizeof(parent), "%s", dir);
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent)
        *slash = '\0';
    else if (slash)
        parent[1] = '\0';
    else
        snprintf(parent, sizeof(parent), ".");
    int pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0)
        return synctree_fail(&w, errno, "open", parent, NULL);
    int r = fsync(pfd) < 0 ? -errno : 0;
    close(pfd);
    if (r < 0)
        return synctree_fail(&w, -r, "fsync", parent, NULL);
    if (ret_stats)
        *ret_stats = w.stats;
    return 0;
}

void synctree_start_writeback(const char *dir)
{
    SyncTreeWalk w = {.flush = false};
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0)
        (void)synctree_dir(&w, fd, dir, 0); /* a head start only, ignoring */
}

/* ---- the ticker ---- */

struct SyncTreeTicker {
    uv_timer_t timer;
    uv_work_t work;
    char *dir;
    bool busy;          /* a pass is queued or running */
    bool stopping;
    bool timer_closed;
    uint64_t passes;
};

static void synctree_ticker_free_if_done(SyncTreeTicker *t)
{
    if (t->stopping && t->timer_closed && !t->busy) {
        free(t->dir);
        free(t);
    }
}

static void synctree_ticker_work(uv_work_t *req)
{
    SyncTreeTicker *t = req->data;
    synctree_start_writeback(t->dir);
}

static void synctree_ticker_after(uv_work_t *req, int status)
{
    SyncTreeTicker *t = req->data;
    (void)status; /* a cancelled pass is only a head start lost */
    t->busy = false;
    t->passes++;
    synctree_ticker_free_if_done(t);
}

static void synctree_ticker_tick(uv_timer_t *timer)
{
    SyncTreeTicker *t = timer->data;
    if (t->busy || t->stopping)
        return;
    t->busy = uv_queue_work(timer->loop, &t->work, synctree_ticker_work, synctree_ticker_after) == 0;
}

static void synctree_ticker_closed(uv_handle_t *h)
{
    SyncTreeTicker *t = h->data;
    t->timer_closed = true;
    synctree_ticker_free_if_done(t);
}

SyncTreeTicker *synctree_ticker_start(uv_loop_t *loop, const char *dir, uint64_t period_ms)
{
    SyncTreeTicker *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    if (!(t->dir = strdup(dir)) || uv_timer_init(loop, &t->timer) < 0) {
        free(t->dir);
        free(t);
        return NULL;
    }
    t->timer.data = t;
    t->work.data = t;
    if (uv_timer_start(&t->timer, synctree_ticker_tick, period_ms, period_ms) < 0) {
        t->stopping = true;
        uv_close((uv_handle_t *)&t->timer, synctree_ticker_closed); /* frees it */
        return NULL;
    }
    return t;
}

void synctree_ticker_stop(SyncTreeTicker *t)
{
    if (!t || t->stopping)
        return;
    t->stopping = true;
    uv_timer_stop(&t->timer);
    uv_close((uv_handle_t *)&t->timer, synctree_ticker_closed);
}

uint64_t synctree_ticker_passes(const SyncTreeTicker *t)
{
    return t ? t->passes : 0;
}
