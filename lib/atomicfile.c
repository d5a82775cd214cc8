/*
 * atomicfile: temporary + fsync + rename + directory fsync writes, and bounded reads (see
 * atomicfile.h). Blocking: thread pool only.
 */
#include "atomicfile.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct AtomicFile {
    int fd;
    int error;       /* first append error, reported again by commit */
    char *path;      /* final name */
    char *dir;       /* directory of path, for the directory fsync */
    char *tmp_path;  /* temporary in the same directory */
};

static uint64_t atomicfile_random(void)
{
    uint64_t r;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) == (ssize_t)sizeof(r))
        return r;
    /* Fallback: uniqueness only matters within this directory and O_EXCL catches collisions. */
    static uint64_t counter;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
}

/* Splits path into a freshly allocated directory and a pointer to the base name inside path. */
static int atomicfile_split(const char *path, char **ret_dir, const char **ret_base)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    if (!*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return -EISDIR;
    char *dir;
    if (!slash)
        dir = strdup(".");
    else if (slash == path)
        dir = strdup("/");
    else
        dir = strndup(path, (size_t)(slash - path));
    if (!dir)
        return -ENOMEM;
    *ret_dir = dir;
    *ret_base = base;
    return 0;
}

static int atomicfile_write_fd(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int atomicfile_fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = 0;
    if (fsync(fd) < 0 && errno != EINVAL)
        r = -errno;
    close(fd);
    return r;
}

static void atomicfile_destroy(AtomicFile *af)
{
    free(af->path);
    free(af->dir);
    free(af->tmp_path);
    free(af);
}

AtomicFile *atomicfile_open(const char *path, mode_t mode, int *ret_err)
{
    int r = -EINVAL;
    AtomicFile *af = NULL;
    if (!path || !*path)
        goto fail;
    r = -ENOMEM;
    af = calloc(1, sizeof(*af));
    if (!af)
        goto fail;
    af->fd = -1;
    const char *base;
    r = atomicfile_split(path, &af->dir, &base);
    if (r < 0)
        goto fail;
    r = -ENOMEM;
    af->path = strdup(path);
    if (!af->path)
        goto fail;
    size_t dirlen = (size_t)(base - path);
    for (int attempt = 0; attempt < 16; attempt++) {
        free(af->tmp_path);
        af->tmp_path = NULL;
        if (asprintf(&af->tmp_path, "%.*s.%s.tmp.%ld.%016llx", (int)dirlen, path, base, (long)getpid(),
                     (unsigned long long)atomicfile_random()) < 0) {
            af->tmp_path = NULL;
            r = -ENOMEM;
            goto fail;
        }
        af->fd = open(af->tmp_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, mode & 07777);
        if (af->fd >= 0 || errno != EEXIST)
            break;
    }
    if (af->fd < 0) {
        r = -errno;
        goto fail;
    }
    /* The mode asked for, not the umask's version of it. */
    if (fchmod(af->fd, mode & 07777) < 0) {
        r = -errno;
        close(af->fd);
        unlink(af->tmp_path);
        af->fd = -1;
        goto fail;
    }
    return af;
fail:
    if (af)
        atomicfile_destroy(af);
    if (ret_err)
        *ret_err = r;
    return NULL;
}

const char *atomicfile_temp_path(const AtomicFile *af)
{
    return af ? af->tmp_path : NULL;
}

int atomicfile_append(AtomicFile *af, const void *data, size_t len)
{
    if (!af)
        return -EINVAL;
    if (af->error)
        return af->error;
    int r = atomicfile_write_fd(af->fd, data, len);
    if (r < 0)
        af->error = r;
    return r;
}

void atomicfile_abort(AtomicFile *af)
{
    if (!af)
        return;
    if (af->fd >= 0)
        close(af->fd);
    unlink(af->tmp_path);
    atomicfile_destroy(af);
}

int atomicfile_commit(AtomicFile *af)
{
    if (!af)
        return -EINVAL;
    int r = af->error;
    if (r == 0 && fsync(af->fd) < 0)
        r = -errno;
    if (r < 0) {
        atomicfile_abort(af);
        return r;
    }
    int fd = af->fd;
    af->fd = -1;
    if (close(fd) < 0 && errno != EINTR) {
        r = -errno;
        atomicfile_abort(af);
        return r;
    }
    if (rename(af->tmp_path, af->path) < 0) {
        r = -errno;
        atomicfile_abort(af);
        return r;
    }
    r = atomicfile_fsync_dir(af->dir);
    atomicfile_destroy(af);
    return r;
}

int atomicfile_write(const char *path, const void *data, size_t len, mode_t mode)
{
    int r = 0;
    AtomicFile *af = atomicfile_open(path, mode, &r);
    if (!af)
        return r;
    r = atomicfile_append(af, data, len);
    if (r < 0) {
        atomicfile_abort(af);
        return r;
    }
    return atomicfile_commit(af);
}

int atomicfile_read_all(const char *path, size_t max, char **ret_data, size_t *ret_len)
{
    if (!path || !ret_data || !ret_len)
        return -EINVAL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int r = 0;
    size_t cap = 0, len = 0;
    char *buf = NULL;
    if (max > SIZE_MAX / 4)
        max = SIZE_MAX / 4;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        r = -errno;
        goto out;
    }
    if (S_ISDIR(st.st_mode)) {
        r = -EISDIR;
        goto out;
    }
    if (S_ISREG(st.st_mode) && st.st_size > 0) {
        if ((uint64_t)st.st_size > max) {
            r = -EFBIG;
            goto out;
        }
        cap = (size_t)st.st_size + 1;
    }
    if (cap < 4096)
        cap = max < 4095 ? max + 1 : 4096;
    buf = malloc(cap);
    if (!buf) {
        r = -ENOMEM;
        goto out;
    }
    for (;;) {
        if (len + 1 == cap) {
            if (len >= max) {
                /* Full to max: one more byte would exceed the limit. */
                char probe;
                ssize_t n;
                do
                    n = read(fd, &probe, 1);
                while (n < 0 && errno == EINTR);
                if (n < 0)
                    r = -errno;
                else if (n > 0)
                    r = -EFBIG;
                break;
            }
            size_t ncap = cap * 2 > max + 1 ? max + 1 : cap * 2;
            char *nb = realloc(buf, ncap);
            if (!nb) {
                r = -ENOMEM;
                break;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t n = read(fd, buf + len, cap - 1 - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            r = -errno;
            break;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
out:
    close(fd);
    if (r < 0) {
        free(buf);
        return r;
    }
    buf[len] = '\0';
    *ret_data = buf;
    *ret_len = len;
    return 0;
}

bool atomicfile_is_temporary(const char *name)
{
    size_t n = strlen(name);
    /* ".<base>.tmp.<pid>.<16 hex>": read from the end */
    if (n < 1 + 1 + 5 + 1 + 1 + 16 || name[0] != '.' || strchr(name, '/'))
        return false;
    const char *hex = name + n - 16;
    for (size_t i = 0; i < 16; i++)
        if (!((hex[i] >= '0' && hex[i] <= '9') || (hex[i] >= 'a' && hex[i] <= 'f')))
            return false;
    if (hex[-1] != '.')
        return false;
    const char *p = hex - 2;
    const char *digits_end = p;
    while (p > name && *p >= '0' && *p <= '9')
        p--;
    if (p == digits_end || p - name < 6 || strncmp(p - 4, ".tmp.", 5) != 0)
        return false;
    return p - 4 > name + 1; /* a non-empty <base> */
}

int atomicfile_remove_temporaries(const char *dir, void (*removed)(const char *path, long long size, void *data),
                                  void *data)
{
    DIR *dh = opendir(dir);
    struct dirent *de;
    int count = 0;

    if (!dh)
        return -errno;
    while ((de = readdir(dh))) {
        char path[4096];
        struct stat st;
        if (!atomicfile_is_temporary(de->d_name))
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path))
            continue;
        if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode) || unlink(path) < 0)
            continue;
        count++;
        if (removed)
            removed(path, (long long)st.st_size, data);
    }
    closedir(dh);
    if (count > 0)
        atomicfile_fsync_dir(dir);
    return count;
}
