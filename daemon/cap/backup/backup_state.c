/*
 * backup_state: the state files of a backup (backup.state_files: the kill-switch state, the
 * platform's position snapshot, ...), captured beside the dump.
 *
 * Owns the archive: a plain ustar of the configured files (absolute paths stored without the
 * leading '/'), compressed and encrypted exactly like a backup (lib/backupstream) into the
 * temporary of `<prefix>_backup_<stamp>.state.tar<codec>.drbk`, and the manifest's "state_files"
 * object describing it. Files that cannot be read are listed as missing; the backup still
 * succeeds. Runs on a worker thread (blocking file I/O); the job commits or aborts the temporary.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "atomicfile.h"
#include "cap/backup/backup_internal.h"
#include "err.h"

#define BACKUP_STATE_FILE_MAX (64u * 1024 * 1024)

static int backup_state_sink(void *ctx, const uint8_t *data, size_t len)
{
    return atomicfile_append(ctx, data, len);
}

/* ---- the archive ---- */

static void backup_state_tar_octal(char *field, size_t width, uint64_t v)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof(tmp), "%0*llo", (int)(width - 1), (unsigned long long)v);
    if (n > 0 && (size_t)n < width)
        memcpy(field, tmp, (size_t)n + 1);
}

static int backup_state_tar_add(BackupBuf *tar, const char *path, const char *data, size_t len, mode_t mode, int64_t mtime)
{
    char h[512];
    const char *name = path[0] == '/' ? path + 1 : path;
    size_t nlen = strlen(name);
    unsigned sum = 0;
    static const char zeros[512];

    memset(h, 0, sizeof(h));
    if (nlen > 100) {
        /* Split into prefix (155) and name (100) at a '/'. */
        const char *cut = name + nlen - 100;
        while (*cut && *cut != '/')
            cut++;
        if (!*cut || (size_t)(cut - name) > 155)
            return -ENAMETOOLONG;
        memcpy(h, cut + 1, strlen(cut + 1));
        memcpy(h + 345, name, (size_t)(cut - name));
    } else {
        memcpy(h, name, nlen);
    }
    backup_state_tar_octal(h + 100, 8, mode & 07777);
    backup_state_tar_octal(h + 108, 8, 0);
    backup_state_tar_octal(h + 116, 8, 0);
    backup_state_tar_octal(h + 124, 12, len);
    backup_state_tar_octal(h + 136, 12, (uint64_t)(mtime > 0 ? mtime : 0));
    memset(h + 148, ' ', 8);
    h[156] = '0';
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    for (size_t i = 0; i < sizeof(h); i++)
        sum += (unsigned char)h[i];
    snprintf(h + 148, 8, "%06o", sum);
    int r = backup_buf_append(tar, h, sizeof(h));
    if (r == 0 && len)
        r = backup_buf_append(tar, data, len);
    if (r == 0 && len % 512)
        r = backup_buf_append(tar, zeros, 512 - len % 512);
    return r;
}

/* ---- capture (worker) ---- */

int backup_state_capture(const ConfigBackup *cfg, const uint8_t key[BCF_KEY_LEN], int64_t created_at,
                         const char *path, const char *name, AtomicFile **ret_af, json_t **ret_info, char *err,
                         size_t errlen)
{
    BackupBuf tar = {0};
    static const char zeros[1024];
    json_t *entries = json_array(), *missing = json_array();
    AtomicFile *af = NULL;
    int r = entries && missing ? 0 : -ENOMEM;

    for (size_t i = 0; r == 0 && i < cfg->n_state_files; i++) {
        const char *p = cfg->state_files[i];
        char *data = NULL;
        size_t len = 0;
        struct stat st;
        int e = stat(p, &st) < 0 ? -errno : atomicfile_read_all(p, BACKUP_STATE_FILE_MAX, &data, &len);
        if (e < 0) {
            json_array_append_new(missing, json_pack("{s:s,s:s}", "path", p, "error", err_str(e)));
            continue;
        }
        r = backup_state_tar_add(&tar, p, data, len, st.st_mode, (int64_t)st.st_mtime);
        free(data);
        if (r < 0)
            snprintf(err, errlen, "state files: cannot archive '%s': %s", p, err_str(r));
        else
            json_array_append_new(entries, json_pack("{s:s,s:I}", "path", p, "size", (json_int_t)len));
    }
    if (r == 0 && (r = backup_buf_append(&tar, zeros, sizeof(zeros))) < 0)
        snprintf(err, errlen, "state files: %s", err_str(r));
    if (r == 0) {
        BackupStreamStats st;
        BackupStreamWriter *w = NULL;
        af = atomicfile_open(path, 0600, &r);
        if (af) {
            w = backupstream_writer_new(key, (CodecKind)cfg->codec, (int)cfg->level, (uint32_t)cfg->chunk_size,
                                        backup_state_sink, af);
            r = w ? 0 : -ENOMEM;
        }
        if (r == 0)
            r = bcf_writer_set_created_at(backupstream_writer_bcf(w), created_at);
        if (r == 0)
            r = backupstream_writer_write(w, tar.data, tar.len);
        if (r == 0)
            r = backupstream_writer_finish(w, &st);
        if (r < 0)
            snprintf(err, errlen, "state files: %s",
                     w && backupstream_writer_errmsg(w)[0] ? backupstream_writer_errmsg(w) : err_str(r));
        else if (!(*ret_info = json_pack("{s:s,s:I,s:s,s:O,s:O}", "file", name, "file_size_bytes",
                                         (json_int_t)st.file_bytes, "sha256", st.file_sha256_hex, "entries",
                                         entries, "missing", missing))) {
            r = -ENOMEM;
            snprintf(err, errlen, "state files: out of memory");
        }
        backupstream_writer_free(w);
    }
    if (r < 0) {
        atomicfile_abort(af);
        af = NULL;
    }
    *ret_af = af;
    backup_buf_free(&tar);
    json_decref(entries);
    json_decref(missing);
    return r;
}
