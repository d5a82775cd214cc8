/*
 * backup_unpack: a physical (base) backup unpacked by a program that reads its tar on stdin, for a
 * point-in-time recovery (backup.h: backup_unpack_base).
 *
 * Owns one unpack: the key loaded on the thread pool, then the file verified and decrypted on the
 * thread pool (backup_verify, streamed: nothing plaintext is spooled) into the child's stdin
 * (`tar -x -C DIR`, run as the server's user by the caller's argv), and one callback. The file's
 * SHA-256 is checked against its manifest's; a child that stops reading early fails. The same for
 * a container outside the catalog (backup_unpack_file: complete_disaster's, downloaded from the
 * bucket).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/backup/backup.h"
#include "cap/backup/backup_internal.h"
#include "err.h"

struct BackupUnpack {
    uv_loop_t *loop;
    uv_work_t work;
    ConfigBackup cfg;
    char *path, *sha;
    char **argv; /* NULL-terminated, argc entries */
    size_t argc;
    uint64_t timeout_ms;
    uint8_t key[BCF_KEY_LEN];
    int key_result;
    char err[1024];
    BackupVerify *verify;
    bool canceled;
    BackupUnpackDoneFn done;
    void *data;
};

static void unpack_free(BackupUnpack *u)
{
    explicit_bzero(u->key, sizeof(u->key));
    config_backup_free(&u->cfg);
    config_list_free(u->argv, u->argc);
    free(u->path);
    free(u->sha);
    free(u);
}

static void unpack_end(BackupUnpack *u, int status, uint64_t bytes)
{
    u->done(status, status < 0 ? u->err : "", bytes, u->data);
    unpack_free(u);
}

static void unpack_on_verified(const BackupVerifyResult *vr, void *data)
{
    BackupUnpack *u = data;
    int status = 0;
    u->verify = NULL;
    if (u->canceled)
        status = DR_ECANCELED;
    else if (!vr->container_ok || (vr->sha_checked && !vr->sha_match))
        status = DR_ECORRUPT;
    else if (!vr->child_ok)
        status = DR_ECHILD;
    snprintf(u->err, sizeof(u->err), "%s", status == DR_ECANCELED ? "canceled" : vr->error[0] ? vr->error
                                           : status ? "the base backup failed verification" : "");
    unpack_end(u, status, vr->stats.plain_bytes);
}

static void unpack_key_work(uv_work_t *req)
{
    BackupUnpack *u = req->data;
    u->key_result = backup_load_key_of_file(&u->cfg, u->path, u->key, u->err, sizeof(u->err));
}

static void unpack_key_done(uv_work_t *req, int status)
{
    BackupUnpack *u = req->data;
    if (status < 0 && u->key_result == 0)
        u->key_result = status;
    if (u->canceled || u->key_result < 0) {
        if (u->canceled)
            snprintf(u->err, sizeof(u->err), "canceled");
        unpack_end(u, u->canceled ? DR_ECANCELED : u->key_result, 0);
        return;
    }
    BackupVerifyOptions o = {.path = u->path, .key = u->key, .expected_sha256_hex = u->sha,
                             .argv = (const char *const *)u->argv, .child_must_read_all = true,
                             .timeout_ms = u->timeout_ms, .priority = {0, PRIO_IO_NORMAL}};
    u->verify = backup_verify_start(u->loop, &o, unpack_on_verified, u);
    explicit_bzero(u->key, sizeof(u->key)); /* the verification has its own copy */
    if (!u->verify) {
        snprintf(u->err, sizeof(u->err), "cannot start the unpack: out of memory");
        unpack_end(u, -ENOMEM, 0);
    }
}

int backup_unpack_file(Backups *b, const char *path, const char *sha256_hex, const char *const *argv,
                       uint64_t timeout_ms, BackupUnpackDoneFn done, void *data, BackupUnpack **ret)
{
    size_t n = 0;
    if (!b || !b->enabled)
        return DR_ECONFIG;
    if (!path || !sha256_hex || strlen(sha256_hex) != 64 || !argv || !argv[0])
        return -EINVAL;
    while (argv[n])
        n++;
    BackupUnpack *u = calloc(1, sizeof(*u));
    if (!u)
        return -ENOMEM;
    u->loop = b->core->loop;
    u->timeout_ms = timeout_ms;
    u->done = done;
    u->data = data;
    u->work.data = u;
    u->argc = n;
    bool ok = (u->argv = calloc(n + 1, sizeof(char *))) != NULL;
    for (size_t i = 0; ok && i < n; i++)
        ok = (u->argv[i] = strdup(argv[i])) != NULL;
    int r = !ok || config_backup_copy(&b->cfg, &u->cfg) < 0 || !(u->path = strdup(path)) ||
                    !(u->sha = strdup(sha256_hex))
                ? -ENOMEM
                : uv_queue_work(u->loop, &u->work, unpack_key_work, unpack_key_done);
    if (r < 0) {
        unpack_free(u);
        return r;
    }
    if (ret)
        *ret = u;
    return 0;
}

int backup_unpack_base(Backups *b, const char *name, const char *const *argv, uint64_t timeout_ms,
                       BackupUnpackDoneFn done, void *data, BackupUnpack **ret)
{
    if (!b || !b->enabled)
        return DR_ECONFIG;
    const json_t *m = name ? backups__find(b, name) : NULL;
    const char *sha = json_string_value(json_object_get(m, "sha256"));
    char *path = NULL;
    if (!m || backup_manifest_kind(m) != BACKUP_KIND_PHYSICAL || !sha || !argv || !argv[0])
        return -EINVAL;
    if (asprintf(&path, "%s/%s", b->cfg.directory, name) < 0)
        return -ENOMEM;
    int r = backup_unpack_file(b, path, sha, argv, timeout_ms, done, data, ret);
    free(path);
    return r;
}

void backup_unpack_cancel(BackupUnpack *u)
{
    if (!u || u->canceled)
        return;
    u->canceled = true;
    if (u->verify)
        backup_verify_cancel(u->verify);
}
