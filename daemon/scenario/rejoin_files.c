/*
 * rejoin_files: the files of the node a rejoin rebuilds (the workers of rejoin.c's steps, see
 * rejoin_internal.h): its postgresql.auto.conf rewritten after what pg_rewind or pg_basebackup
 * copied from the new primary (port, primary_conninfo, primary_slot_name, restore_command; the
 * switchover's default_transaction_read_only dropped), standby.signal, and the data directory set
 * aside as evidence before a fresh base backup. Blocking: thread pool only.
 */
#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "scenario/rejoin_internal.h"

static int rj_work_errno(RejoinWork *w, const char *what, const char *path)
{
    int e = errno;
    snprintf(w->err, sizeof(w->err), "%s '%.500s': %s", what, path, strerror(e));
    return -e;
}

static int rj_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

static int rj_write_owned(RejoinWork *w, const char *name, const char *text, size_t len, const struct stat *owner)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s", w->dir, name);
    int r = atomicfile_write(path, text, len, 0600);
    if (r == 0 && chown(path, owner->st_uid, owner->st_gid) < 0)
        r = -errno;
    if (r < 0)
        snprintf(w->err, sizeof(w->err), "cannot write '%.500s': %s", path, strerror(-r));
    return r;
}

/* A line of postgresql.auto.conf sets `key` (optional blanks, the name, blanks, '='). */
static bool rj_line_sets(const char *line, size_t len, const char *key)
{
    size_t k = strlen(key), i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    if (len - i < k || strncmp(line + i, key, k) != 0)
        return false;
    i += k;
    while (i < len && (line[i] == ' ' || line[i] == '\t'))
        i++;
    return i < len && line[i] == '=';
}

int rejoin__conf_work(RejoinWork *w)
{
    char path[4400];
    char *text = NULL;
    size_t len = 0;
    struct stat owner;

    if (stat(w->dir, &owner) < 0)
        return rj_work_errno(w, "cannot read the data directory", w->dir);
    snprintf(path, sizeof(path), "%s/postgresql.auto.conf", w->dir);
    int r = atomicfile_read_all(path, 1u << 20, &text, &len);
    if (r == -ENOENT) {
        text = strdup("");
        r = text ? 0 : -ENOMEM;
    }
    if (r < 0) {
        snprintf(w->err, sizeof(w->err), "cannot read '%.500s': %s", path, strerror(-r));
        return r;
    }
    size_t cap = strlen(text) + 4096 + w->n_keys * 2200, o = 0;
    char *out = malloc(cap);
    if (!out) {
        free(text);
        return -ENOMEM;
    }
    for (const char *p = text; *p;) { /* every line but those setting one of the keys */
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        bool drop = strncmp(p, "# rejoined by drsupervisor", 26) == 0;
        for (size_t i = 0; i < w->n_keys && !drop; i++)
            drop = rj_line_sets(p, l, w->keys[i]);
        if (!drop) {
            memcpy(out + o, p, l);
            o += l;
            out[o++] = '\n';
        }
        p += l + (nl ? 1 : 0);
    }
    o += (size_t)snprintf(out + o, cap - o, "# rejoined by drsupervisor\n");
    for (size_t i = 0; i < w->n_keys; i++)
        if (w->vals[i][0])
            o += (size_t)snprintf(out + o, cap - o, "%s = %s\n", w->keys[i], w->vals[i]);
    free(text);
    r = rj_write_owned(w, "postgresql.auto.conf", out, o, &owner);
    free(out);
    if (r == 0 && w->standby_signal) {
        r = rj_write_owned(w, "standby.signal", "", 0, &owner);
        snprintf(path, sizeof(path), "%s/recovery.signal", w->dir);
        if (r == 0 && unlink(path) < 0 && errno != ENOENT)
            r = rj_work_errno(w, "cannot remove", path);
    }
    return r;
}

int rejoin__aside_work(RejoinWork *w)
{
    struct stat st, ev;
    bool have_dir = stat(w->dir, &st) == 0;
    bool have_ev = stat(w->evidence, &ev) == 0;

    if (!have_dir && !have_ev) {
        errno = ENOENT;
        return rj_work_errno(w, "there is no data directory to rebuild", w->dir);
    }
    if (have_dir && !have_ev) { /* the first attempt: the node's own directory becomes the evidence */
        if (rename(w->dir, w->evidence) < 0)
            return rj_work_errno(w, "cannot set the data directory aside as", w->evidence);
        ev = st;
        char parent[4096];
        snprintf(parent, sizeof(parent), "%s", w->dir);
        char *slash = strrchr(parent, '/');
        if (slash && slash != parent)
            *slash = '\0';
        (void)atomicfile_fsync_dir(parent); /* the rename is done either way: a failure here, ignoring */
    } else if (have_dir && nftw(w->dir, rj_rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT) {
        return rj_work_errno(w, "cannot remove the half-made copy", w->dir); /* an earlier attempt's */
    }
    if (mkdir(w->dir, 0700) < 0 || chown(w->dir, ev.st_uid, ev.st_gid) < 0)
        return rj_work_errno(w, "cannot create for the server's user", w->dir);
    return 0;
}
