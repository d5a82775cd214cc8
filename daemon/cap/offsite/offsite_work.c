/*
 * offsite_work: the uploader's thread-pool jobs (see offsite_internal.h). Everything here that
 * touches a file or hashes runs on a pool thread and BLOCKS; the loop only sees the result in the
 * job's done callback. Jobs: load the record (a damaged one is set aside), save it (atomicfile),
 * scan the backup catalog's files, the WAL archive and the state files (the catalog written out
 * as state_dir/offsite-catalog.json first), hash a whole file (keeping its bytes when they go up in
 * one PUT), read and hash one part, hash a buffer.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "atomicfile.h"
#include "cap/offsite/offsite_internal.h"
#include "err.h"

#define OFFSITE_READ_CHUNK (1u << 20)
#define OFFSITE_RECORD_MAX (256u << 20)

static void offsite_hex(const unsigned char *md, char out[65])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[md[i] >> 4];
        out[2 * i + 1] = hx[md[i] & 15];
    }
    out[64] = '\0';
}

static int offsite_pread_all(int fd, uint8_t *buf, size_t len, uint64_t off)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            return -EIO; /* shorter than it was: changed under us */
        got += (size_t)n;
    }
    return 0;
}

/* HASH: size and SHA-256 of j->path; its bytes in j->buf when size <= j->limit. READ: bytes
 * [offset, offset+len) into j->buf with their SHA-256. */
static void offsite_work_file(OffsiteJob *j)
{
    struct stat st;
    EVP_MD_CTX *ctx = NULL;
    uint8_t *chunk = NULL;
    unsigned char md[32];
    unsigned mdlen = 0;
    int fd = open(j->path, O_RDONLY | O_CLOEXEC | O_NOCTTY);

    if (fd < 0) {
        j->status = -errno;
        snprintf(j->err, sizeof(j->err), "cannot open '%.300s': %s", j->path, strerror(errno));
        return;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        j->status = -EINVAL;
        snprintf(j->err, sizeof(j->err), "'%.300s' is not a regular file", j->path);
        goto out;
    }
    j->size = (uint64_t)st.st_size;
    uint64_t off = 0, len = j->size;
    bool keep = j->size <= j->limit;
    if (j->kind == OJ_READ) {
        off = j->offset;
        len = j->len;
        keep = true;
        if (off + len > j->size) {
            j->status = -EIO;
            snprintf(j->err, sizeof(j->err), "'%.300s' is shorter than it was", j->path);
            goto out;
        }
    }
    if (keep && !(j->buf = malloc(len ? len : 1))) {
        j->status = -ENOMEM;
        goto out;
    }
    if (!keep && !(chunk = malloc(OFFSITE_READ_CHUNK))) {
        j->status = -ENOMEM;
        goto out;
    }
    if (!(ctx = EVP_MD_CTX_new()) || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        j->status = -ENOMEM;
        goto out;
    }
    for (uint64_t done = 0; done < len;) {
        size_t n = len - done > OFFSITE_READ_CHUNK ? OFFSITE_READ_CHUNK : (size_t)(len - done);
        uint8_t *dst = keep ? j->buf + done : chunk;
        int r = offsite_pread_all(fd, dst, n, off + done);
        if (r < 0) {
            j->status = r;
            snprintf(j->err, sizeof(j->err), "cannot read '%.300s': %s", j->path, strerror(-r));
            goto out;
        }
        EVP_DigestUpdate(ctx, dst, n);
        done += n;
    }
    EVP_DigestFinal_ex(ctx, md, &mdlen);
    offsite_hex(md, j->sha);
    if (keep)
        j->buf_len = (size_t)len;
    j->status = 0;
out:
    if (j->status < 0) {
        free(j->buf);
        j->buf = NULL;
    }
    EVP_MD_CTX_free(ctx);
    free(chunk);
    close(fd);
}

static void offsite_work_load(OffsiteJob *j)
{
    char *text = NULL;
    size_t len = 0;
    json_error_t jerr;
    int r = atomicfile_read_all(j->path, OFFSITE_RECORD_MAX, &text, &len);
    if (r == -ENOENT) {
        j->result = json_pack("{s:i,s:{},s:{}}", "version", 1, "objects", "multipart");
        j->status = j->result ? 0 : -ENOMEM;
        return;
    }
    if (r < 0) {
        j->status = r;
        snprintf(j->err, sizeof(j->err), "cannot read '%.300s': %s", j->path, strerror(-r));
        return;
    }
    j->result = json_loadb(text, len, 0, &jerr);
    free(text);
    j->status = 0;
    if (!json_is_object(j->result) || !json_is_object(json_object_get(j->result, "objects")) ||
        !json_is_object(json_object_get(j->result, "multipart"))) {
        char aside[4200];
        snprintf(aside, sizeof(aside), "%s.damaged", j->path);
        json_decref(j->result);
        j->result = NULL;
        j->status = DR_ECORRUPT;
        r = rename(j->path, aside);
        snprintf(j->err, sizeof(j->err), "'%.200s' is not a record of the uploads (%.60s)%s", j->path, jerr.text,
                 r == 0 ? "; moved aside to .damaged, starting over (uploads are repeated, not trusted)" : "");
    }
}

static void offsite_work_save(OffsiteJob *j)
{
    j->status = atomicfile_write(j->path, j->text, strlen(j->text), 0600);
    if (j->status < 0)
        snprintf(j->err, sizeof(j->err), "cannot write '%.300s': %s", j->path, strerror(-j->status));
}

static bool offsite_is_wal_file(const char *n)
{
    size_t l = strlen(n);
    if (n[0] == '.' || l < 16 || l < 5 || strcmp(n + l - 5, ".drbk") != 0)
        return false;
    return strspn(n, "0123456789ABCDEF") >= 8; /* segments, a timeline's .partial, history files */
}

/* SHA-256 and size of a (small) state file; 0 or <0. */
static int offsite_sha_file(const char *path, char sha[65], uint64_t *ret_size)
{
    unsigned char md[32];
    unsigned mdlen = 0;
    char *text = NULL;
    size_t len = 0;
    int r = atomicfile_read_all(path, OFFSITE_RECORD_MAX, &text, &len);
    if (r < 0)
        return r;
    r = EVP_Digest(text, len, md, &mdlen, EVP_sha256(), NULL) == 1 ? 0 : -ENOMEM;
    free(text);
    if (r == 0) {
        offsite_hex(md, sha);
        *ret_size = len;
    }
    return r;
}

static void offsite_scan_state_file(json_t *out, const char *name, const char *path)
{
    struct stat st;
    char sha[65];
    uint64_t size = 0;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode) || offsite_sha_file(path, sha, &size) < 0)
        return; /* not there (yet), or changing under us: the next scan */
    json_array_append_new(out, json_pack("{s:i,s:s,s:s,s:I,s:s}", "kind", OFS_STATE, "name", name, "path", path,
                                         "born_ms",
                                         (json_int_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000,
                                         "sha256", sha));
}

/* The catalog (the verified backups' manifests) written out for the bucket when it changed. */
static void offsite_write_catalog(const json_t *catalog, const char *path)
{
    json_t *doc = json_pack("{s:i,s:O}", "version", 1, "backups", catalog);
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS) : NULL, *old = NULL;
    size_t len = 0;
    json_decref(doc);
    if (!text)
        return;
    if (atomicfile_read_all(path, OFFSITE_RECORD_MAX, &old, &len) < 0 || len != strlen(text) ||
        memcmp(old, text, len) != 0)
        (void)atomicfile_write(path, text, strlen(text), 0600); /* failing: the next scan tries again, ignoring */
    free(old);
    free(text);
}

/* The state files: the catalog first, the recorded primary, the audit log and its head, the
 * incident reports. Never the key ring, credentials or the upload record. */
static void offsite_scan_state(OffsiteJob *j, json_t *out)
{
    char path[4400], name[600];
    snprintf(path, sizeof(path), "%s/offsite-catalog.json", j->state_dir);
    offsite_write_catalog(j->catalog, path);
    offsite_scan_state_file(out, "catalog.json", path);
    snprintf(path, sizeof(path), "%s/primary.json", j->state_dir);
    offsite_scan_state_file(out, "primary.json", path);
    if (j->node_dir) {
        snprintf(path, sizeof(path), "%s/audit.log", j->node_dir);
        offsite_scan_state_file(out, "audit.log", path);
        snprintf(path, sizeof(path), "%s/audit.head", j->node_dir);
        offsite_scan_state_file(out, "audit.head", path);
    }
    snprintf(path, sizeof(path), "%s/incidents", j->state_dir);
    DIR *d = opendir(path);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l > 400 ||
            !((l > 5 && !strcmp(de->d_name + l - 5, ".json")) || (l > 4 && !strcmp(de->d_name + l - 4, ".txt"))))
            continue;
        snprintf(path, sizeof(path), "%s/incidents/%s", j->state_dir, de->d_name);
        snprintf(name, sizeof(name), "incident-%s", de->d_name);
        offsite_scan_state_file(out, name, path);
    }
    if (d)
        closedir(d);
}

static void offsite_work_scan(OffsiteJob *j)
{
    json_t *out = json_array();
    size_t i;
    json_t *m;
    char path[4400];
    struct stat st;

    if (!out) {
        j->status = -ENOMEM;
        return;
    }
    json_array_foreach(j->catalog, i, m) {
        const char *file = json_string_value(json_object_get(m, "file"));
        if (!file || !backup_manifest_is_verified(m) || strchr(file, '/'))
            continue;
        int64_t fin = backup_manifest_finished(m);
        snprintf(path, sizeof(path), "%s/%s", j->path, file);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        /* what off-site retention needs once the local catalog no longer has it (offsite_retention.c) */
        const char *bkind = json_string_value(json_object_get(m, "kind"));
        const char *lsn = json_string_value(json_object_get(json_object_get(m, "wal"), "start_lsn"));
        json_t *meta = json_pack("{s:s,s:I,s:s?}", "kind", bkind ? bkind : "logical", "started_s",
                                 (json_int_t)backup_manifest_started(m), "start_lsn", lsn);
        json_array_append_new(out, json_pack("{s:i,s:s,s:s,s:I,s:o?}", "kind", OFS_BACKUP, "name", file, "path", path,
                                             "born_ms", (json_int_t)(fin > 0 ? fin * 1000 : 0), "meta", meta));
        /* the state tar the manifest names goes after the container, the manifest after the tar (it
         * waits while the tar is not on the disk: the bucket never has a manifest naming a missing tar) */
        const char *tar = json_string_value(json_object_get(json_object_get(m, "state_files"), "file"));
        if (tar && (strchr(tar, '/') || !tar[0]))
            tar = NULL;
        if (tar) {
            snprintf(path, sizeof(path), "%s/%s", j->path, tar);
            if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
                json_array_append_new(out, json_pack("{s:i,s:s,s:s,s:I,s:s}", "kind", OFS_STATE_TAR, "name", tar,
                                                     "path", path, "born_ms", (json_int_t)(fin > 0 ? fin * 1000 : 0),
                                                     "after", file));
        }
        snprintf(path, sizeof(path), "%s/%s%s", j->path, file, BACKUP_MANIFEST_SUFFIX);
        char mname[300];
        snprintf(mname, sizeof(mname), "%s%s", file, BACKUP_MANIFEST_SUFFIX);
        json_array_append_new(out, json_pack("{s:i,s:s,s:s,s:I,s:s}", "kind", OFS_MANIFEST, "name", mname, "path",
                                             path, "born_ms", (json_int_t)(fin > 0 ? fin * 1000 : 0), "after",
                                             tar ? tar : file));
    }
    if (j->path2) {
        DIR *d = opendir(j->path2);
        struct dirent *de;
        if (!d && errno != ENOENT)
            snprintf(j->err, sizeof(j->err), "cannot read the WAL archive '%.300s': %s", j->path2, strerror(errno));
        while (d && (de = readdir(d)) != NULL) {
            if (!offsite_is_wal_file(de->d_name))
                continue;
            snprintf(path, sizeof(path), "%s/%s", j->path2, de->d_name);
            if (stat(path, &st) != 0 || !S_ISREG(st.st_mode))
                continue;
            json_array_append_new(out, json_pack("{s:i,s:s,s:s,s:I}", "kind", OFS_WAL, "name", de->d_name, "path",
                                                 path, "born_ms",
                                                 (json_int_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000));
        }
        if (d)
            closedir(d);
    }
    if (j->state_dir)
        offsite_scan_state(j, out);
    j->result = out;
    j->status = 0;
}

static void offsite_work_hash_buf(OffsiteJob *j)
{
    unsigned char md[32];
    unsigned mdlen = 0;
    if (EVP_Digest(j->in, j->in_len, md, &mdlen, EVP_sha256(), NULL) != 1) {
        j->status = -ENOMEM;
        return;
    }
    offsite_hex(md, j->sha);
    j->status = 0;
}

static void offsite_job_work(uv_work_t *w)
{
    OffsiteJob *j = w->data;
    switch (j->kind) {
    case OJ_LOAD: offsite_work_load(j); break;
    case OJ_SAVE: offsite_work_save(j); break;
    case OJ_SCAN: offsite_work_scan(j); break;
    case OJ_HASH:
    case OJ_READ: offsite_work_file(j); break;
    case OJ_HASH_BUF: offsite_work_hash_buf(j); break;
    case OJ_CALL: j->fn(j); break;
    }
}

static void offsite_job_free(OffsiteJob *j)
{
    free(j->path);
    free(j->path2);
    free(j->state_dir);
    free(j->node_dir);
    free(j->text);
    json_decref(j->catalog);
    json_decref(j->result);
    free(j->buf);
    free(j);
}

static void offsite_job_after(uv_work_t *w, int status)
{
    OffsiteJob *j = w->data;
    Offsite *o = j->o;
    if (status == UV_ECANCELED && j->status == 0)
        j->status = DR_ECANCELED;
    o->jobs--;
    j->done(j);
    offsite_job_free(j);
    if (o->closing)
        offsite__kick(o); /* the close may be waiting for the last job */
}

OffsiteJob *offsite__job_new(Offsite *o, OffsiteJobKind kind, void (*done)(OffsiteJob *j))
{
    OffsiteJob *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->o = o;
    j->kind = kind;
    j->done = done;
    j->work.data = j;
    j->status = -EINPROGRESS;
    return j;
}

int offsite__job_queue(OffsiteJob *j)
{
    int r = uv_queue_work(j->o->core->loop, &j->work, offsite_job_work, offsite_job_after);
    if (r < 0) {
        offsite_job_free(j);
        return r;
    }
    j->o->jobs++;
    return 0;
}
