/*
 * complete_disaster_files: the files of a recovery from the bucket (the workers of
 * complete_disaster.c's steps, see complete_disaster_internal.h): the configured data directory
 * checked empty and handed to the server's user, the base backup's container spooled as it
 * arrives (encrypted: the plaintext never reaches the disk but as the unpacked cluster) and
 * verified range by range, each WAL file verified, decrypted and staged, the platform's state
 * files unpacked from the backup's state tar to their configured paths, and what the run leaves
 * removed. Blocking: thread pool only.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "backupstream.h"
#include "cap/backup/backup.h"
#include "clock.h"
#include "err.h"
#include "synctree.h"
#include "scenario/complete_disaster_internal.h"
#include "walarchive.h"

#define CD_MARKER "drsupervisor-restore-in-progress"

static int cd_errno(CdWork *w, const char *what, const char *path)
{
    int e = errno;
    snprintf(w->err, sizeof(w->err), "%s '%.500s': %s", what, path, strerror(e));
    return -e;
}

static int cd_rm_one(const char *path, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb;
    (void)flag;
    (void)f;
    return remove(path) < 0 && errno != ENOENT ? -1 : 0;
}

/* Everything inside dir removed (dir kept). */
static int cd_empty_dir(CdWork *w, const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char path[4400];
    int r = 0;
    if (!d)
        return cd_errno(w, "cannot read", dir);
    while (r == 0 && (de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (nftw(path, cd_rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
            r = cd_errno(w, "cannot remove", path);
    }
    closedir(d);
    return r;
}

int cd__prepare_work(CdWork *w)
{
    struct stat st;
    char marker[4400];
    DIR *d;
    struct dirent *de;
    bool other = false, marked = false;
    if (stat(w->dir, &st) < 0)
        return cd_errno(w, "the data directory (made empty by the operator, owned by the server's user) is missing:",
                        w->dir);
    if (!S_ISDIR(st.st_mode)) {
        snprintf(w->err, sizeof(w->err), "'%.500s' is not a directory", w->dir);
        return -ENOTDIR;
    }
    if (st.st_uid == 0) { /* PostgreSQL runs as no root */
        snprintf(w->err, sizeof(w->err), "the data directory '%.500s' is owned by root: give it to the server's user",
                 w->dir);
        return -EPERM;
    }
    w->uid = st.st_uid;
    w->gid = st.st_gid;
    if (!(d = opendir(w->dir)))
        return cd_errno(w, "cannot read", w->dir);
    while ((de = readdir(d)) != NULL) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (!strcmp(de->d_name, CD_MARKER))
            marked = true;
        else
            other = true;
    }
    closedir(d);
    if (other && !marked) { /* never over a cluster: the recovery host's data directory starts empty */
        snprintf(w->err, sizeof(w->err), "the data directory '%.500s' is not empty (and holds no unfinished restore "
                 "of this daemon): complete_disaster never overwrites a cluster; empty it or name another", w->dir);
        return -ENOTEMPTY;
    }
    int r = marked ? cd_empty_dir(w, w->dir) : 0;
    if (r < 0)
        return r;
    snprintf(marker, sizeof(marker), "%s/%s", w->dir, CD_MARKER);
    if ((r = atomicfile_write(marker, "", 0, 0600)) < 0) {
        errno = -r;
        return cd_errno(w, "cannot write", marker);
    }
    if (chmod(w->dir, 0700) < 0)
        return cd_errno(w, "cannot make 0700", w->dir);
    if ((mkdir(w->spool, 0700) < 0 && errno != EEXIST))
        return cd_errno(w, "cannot create the spool", w->spool);
    return 0;
}

int cd__marked_work(CdWork *w)
{
    SyncTreeStats stats;
    char marker[4400];
    uint64_t t0 = clock_mono_us();
    int r = synctree_sync(w->dir, &stats, w->err, sizeof(w->err));
    if (r < 0)
        return r;
    w->synced_files = stats.files;
    w->sync_ms = (clock_mono_us() - t0) / 1000u;
    snprintf(marker, sizeof(marker), "%s/%s", w->dir, CD_MARKER);
    if (unlink(marker) < 0 && errno != ENOENT)
        return cd_errno(w, "cannot remove", marker);
    if ((r = atomicfile_fsync_dir(w->dir)) < 0) {
        snprintf(w->err, sizeof(w->err), "fsync '%.500s': %s", w->dir, strerror(-r));
        return r;
    }
    return 0;
}

/* The key of the file whose first bytes are head (its header's key id: a file written before or
 * after a key rotation); head NULL: the key already loaded, else the configured one. */
static int cd_load_key(CdWork *w, const uint8_t *head, size_t len)
{
    uint8_t kid[BCF_KEY_ID_LEN];
    if (w->key_loaded) {
        bcf_key_id(w->key, kid);
        if (!head || (len >= BCF_KEY_ID_OFFSET + BCF_KEY_ID_LEN && !memcmp(kid, head + BCF_KEY_ID_OFFSET, BCF_KEY_ID_LEN)))
            return 0; /* no header (a later range) or the key it names: the one loaded */
    }
    int r = backups_load_key_for_header(&w->backup, head, len, w->key, w->err, sizeof(w->err));
    w->key_loaded = r == 0;
    return r;
}

int cd__range_work(CdWork *w)
{
    char path[4500];
    int r = cd_load_key(w, w->reader ? NULL : w->buf, w->reader ? 0 : w->len);
    if (r < 0)
        return r;
    if (!w->reader && !(w->reader = backupstream_reader_new(w->key, true, NULL, NULL)))
        return -ENOMEM;
    snprintf(path, sizeof(path), "%s/%s", w->spool, w->name);
    if (w->len && (r = backupstream_reader_update(w->reader, w->buf, w->len)) < 0) {
        snprintf(w->err, sizeof(w->err), "the base backup from the bucket, bytes from %llu: %s",
                 (unsigned long long)w->offset, backupstream_reader_errmsg(w->reader));
        return r;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | (w->offset ? O_APPEND : O_TRUNC), 0600);
    if (fd < 0)
        return cd_errno(w, "cannot write the spool", path);
    size_t off = 0;
    while (off < w->len) {
        ssize_t n = write(fd, w->buf + off, w->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            r = cd_errno(w, "cannot write the spool", path);
            close(fd);
            return r;
        }
        off += (size_t)n;
    }
    w->offset += w->len;
    if (w->last && fdatasync(fd) < 0) {
        r = cd_errno(w, "cannot sync the spool", path);
        close(fd);
        return r;
    }
    close(fd);
    free(w->buf);
    w->buf = NULL;
    w->len = 0;
    if (w->last) {
        BackupStreamStats s;
        r = backupstream_reader_finish(w->reader, &s);
        if (r < 0) {
            snprintf(w->err, sizeof(w->err), "the base backup from the bucket: %s", backupstream_reader_errmsg(w->reader));
            return r;
        }
        snprintf(w->sha, sizeof(w->sha), "%s", s.file_sha256_hex);
        w->chunks = s.chunks;
    }
    return 0;
}

typedef struct CdBuf {
    uint8_t *p;
    size_t len, cap, max;
} CdBuf;

static int cd_buf_sink(void *ctx, const uint8_t *data, size_t len)
{
    CdBuf *b = ctx;
    if (b->len + len > b->max)
        return -EFBIG;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 1u << 20;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p)
            return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

/* Thread pool: the whole container in w->buf (a WAL file, a state tar) authenticated and decrypted
 * into out under the key its header names; w->created_at from the header, s (if given) the
 * stream's figures. On failure w->err says what ("WHAT 'NAME' from the bucket: why"). */
static int cd_open_whole(CdWork *w, CdBuf *out, BackupStreamStats *s, const char *what, const char *too_big)
{
    int r = cd_load_key(w, w->buf, w->len);
    if (r < 0)
        return r;
    BackupStreamReader *rd = backupstream_reader_new(w->key, true, cd_buf_sink, out);
    if (!rd)
        return -ENOMEM;
    r = backupstream_reader_update(rd, w->buf, w->len);
    if (r == 0)
        r = backupstream_reader_finish(rd, s);
    if (r < 0)
        snprintf(w->err, sizeof(w->err), "%s '%s' from the bucket: %s", what, w->name,
                 r == -EFBIG ? too_big : backupstream_reader_errmsg(rd));
    const BcfHeader *h = backupstream_reader_header(rd);
    w->created_at = h ? h->created_at : 0;
    backupstream_reader_free(rd);
    return r;
}

int cd__wal_work(CdWork *w)
{
    char path[4500];
    CdBuf out = {.max = (size_t)w->seg_size};
    int r = cd_open_whole(w, &out, NULL, "WAL file", "larger than a segment");
    if (r == 0 && w->pad && out.len < w->seg_size) { /* a .partial: zeros to the segment's size */
        size_t have = out.len;
        uint8_t *p = realloc(out.p, (size_t)w->seg_size);
        if (!p)
            r = -ENOMEM;
        else {
            memset(p + have, 0, (size_t)w->seg_size - have);
            out.p = p;
            out.len = (size_t)w->seg_size;
        }
    }
    if (r == 0 && mkdir(w->wal_dir, 0700) < 0 && errno != EEXIST)
        r = cd_errno(w, "cannot create", w->wal_dir);
    if (r == 0 && chown(w->wal_dir, w->uid, w->gid) < 0)
        r = cd_errno(w, "cannot hand to the server's user", w->wal_dir);
    snprintf(path, sizeof(path), "%s/%s", w->wal_dir, w->name);
    if (r == 0 && (r = atomicfile_write(path, out.p ? (const char *)out.p : "", out.len, 0600)) == 0 &&
        chown(path, w->uid, w->gid) < 0)
        r = -errno;
    if (r < 0 && !w->err[0])
        snprintf(w->err, sizeof(w->err), "cannot write '%.500s': %s", path, strerror(-r));
    w->len = out.len;
    free(out.p);
    free(w->buf);
    w->buf = NULL;
    return r;
}

int cd__unspool_work(CdWork *w)
{
    if (nftw(w->spool, cd_rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        return cd_errno(w, "cannot remove the spool", w->spool);
    return 0;
}

int cd__tidy_work(CdWork *w)
{
    char orig[4400], path[4400];
    int r = 0;
    snprintf(orig, sizeof(orig), "%s/postgresql.auto.conf.before-pitr", w->dir);
    snprintf(path, sizeof(path), "%s/postgresql.auto.conf", w->dir);
    if (rename(orig, path) < 0 && errno != ENOENT) /* gone already: tidied before a restart */
        return cd_errno(w, "cannot put back", orig);
    if (nftw(w->spool, cd_rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT)
        r = cd_errno(w, "cannot remove the spool", w->spool);
    if (nftw(w->wal_dir, cd_rm_one, 16, FTW_DEPTH | FTW_PHYS) < 0 && errno != ENOENT && r == 0)
        r = cd_errno(w, "cannot remove the staged WAL", w->wal_dir);
    return r;
}

/* ---- the platform's state files: the state tar (ustar, backup_state.c) ---- */

#define CD_TAR_MAX (512u << 20) /* the decrypted tar (one state file is at most 64 MiB) */

static uint64_t cd_tar_octal(const char *f, size_t n, bool *ok)
{
    uint64_t v = 0;
    size_t i = 0;
    while (i < n && f[i] == ' ')
        i++;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++)
        v = v * 8 + (uint64_t)(f[i] - '0');
    if (i < n && f[i] != '\0' && f[i] != ' ')
        *ok = false;
    return v;
}

static bool cd_configured(const ConfigBackup *b, const char *path)
{
    for (size_t i = 0; i < b->n_state_files; i++)
        if (!strcmp(b->state_files[i], path))
            return true;
    return false;
}

/* One member: where it goes (refused when not a configured path), its bytes. */
typedef struct CdMember {
    char path[400];
    const uint8_t *data;
    size_t len;
    const char *refused; /* why, or NULL */
} CdMember;

/* The tar's members into m (at most max); their number, or <0 with w->err (a damaged tar). */
static int cd_tar_members(CdWork *w, const uint8_t *tar, size_t len, CdMember *m, size_t max)
{
    size_t off = 0, n = 0;
    while (off + 512 <= len) {
        const char *h = (const char *)tar + off;
        bool zero = true, ok = true;
        for (size_t i = 0; i < 512 && zero; i++)
            zero = h[i] == '\0';
        if (zero)
            return (int)n; /* the end-of-archive blocks */
        unsigned sum = 0;
        for (size_t i = 0; i < 512; i++)
            sum += i >= 148 && i < 156 ? (unsigned)' ' : (unsigned char)h[i];
        uint64_t want = cd_tar_octal(h + 148, 8, &ok), size = cd_tar_octal(h + 124, 12, &ok);
        if (!ok || want != sum || size > len - off - 512) {
            snprintf(w->err, sizeof(w->err), "the state tar '%s' is damaged at byte %zu", w->name, off);
            return DR_ECORRUPT;
        }
        if (n == max) {
            snprintf(w->err, sizeof(w->err), "the state tar '%s' has more than %zu members", w->name, max);
            return DR_ECORRUPT;
        }
        CdMember *e = &m[n++];
        char name[101], prefix[156];
        snprintf(name, sizeof(name), "%.100s", h);
        snprintf(prefix, sizeof(prefix), "%.155s", h + 345);
        snprintf(e->path, sizeof(e->path), "/%s%s%s", prefix, prefix[0] ? "/" : "", name);
        e->data = tar + off + 512;
        e->len = (size_t)size;
        if (h[156] != '0' && h[156] != '\0')
            e->refused = "not a regular file";
        else if (!cd_configured(&w->backup, e->path))
            e->refused = "not one of backup.state_files";
        off += 512 + ((size_t)size + 511) / 512 * 512;
    }
    snprintf(w->err, sizeof(w->err), "the state tar '%s' ends without its end-of-archive blocks", w->name);
    return DR_ECORRUPT;
}

int cd__platform_work(CdWork *w)
{
    CdBuf out = {.max = CD_TAR_MAX};
    BackupStreamStats s;
    CdMember m[64];
    int r = cd_open_whole(w, &out, &s, "the state tar", "larger than it can be");
    if (r == 0 && strcmp(s.file_sha256_hex, w->want_sha) != 0) {
        snprintf(w->err, sizeof(w->err), "the state tar '%s' from the bucket has SHA-256 %s, its manifest says %s: not "
                 "used", w->name, s.file_sha256_hex, w->want_sha);
        r = DR_ECORRUPT;
    }
    int n = r < 0 ? r : cd_tar_members(w, out.p, out.len, m, sizeof(m) / sizeof(m[0]));
    json_t *files = json_array(), *refused = json_array(), *absent = json_array();
    uint64_t bytes = 0;
    r = n < 0 ? n : files && refused && absent ? 0 : -ENOMEM;
    /* every member checked before the first is written: a damaged tar writes nothing */
    for (int i = 0; r == 0 && i < n; i++) {
        if (m[i].refused) {
            json_array_append_new(refused, json_pack("{s:s,s:s}", "path", m[i].path, "why", m[i].refused));
            continue;
        }
        if ((r = atomicfile_write(m[i].path, m[i].data, m[i].len, 0600)) < 0) {
            snprintf(w->err, sizeof(w->err), "cannot write the platform's state file '%.400s': %s", m[i].path,
                     strerror(-r));
            break;
        }
        json_array_append_new(files, json_string(m[i].path));
        bytes += m[i].len;
    }
    for (size_t k = 0; r == 0 && k < w->backup.n_state_files; k++) {
        bool found = false;
        for (int i = 0; i < n && !found; i++)
            found = !m[i].refused && !strcmp(m[i].path, w->backup.state_files[k]);
        if (!found)
            json_array_append_new(absent, json_string(w->backup.state_files[k]));
    }
    if (r == 0 && !(w->out = json_pack("{s:O,s:I,s:O,s:O}", "files", files, "bytes", (json_int_t)bytes, "refused",
                                       refused, "absent", absent)))
        r = -ENOMEM;
    json_decref(files);
    json_decref(refused);
    json_decref(absent);
    if (out.p)
        explicit_bzero(out.p, out.len);
    free(out.p);
    return r;
}

void cd__work_free(CdWork *w)
{
    if (!w)
        return;
    explicit_bzero(w->key, sizeof(w->key));
    backupstream_reader_free(w->reader);
    config_backup_free(&w->backup);
    free(w->buf);
    json_decref(w->out);
    free(w);
}
