/*
 * Unit tests for complete_disaster's restore_platform_state worker (daemon/scenario/
 * complete_disaster_files.c, cd__platform_work): a state tar as backup_state_capture writes it is
 * decrypted and each file written back at its configured path (0600), a configured file the tar
 * lacks listed as absent; a SHA-256 other than the manifest's writes nothing; members outside
 * backup.state_files (a ../ climb, an unconfigured path) and a link at a configured path are
 * refused, never written; a damaged tar (a bad header after a good member) writes nothing at all.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "backupstream.h"
#include "cap/backup/backup_internal.h"
#include "err.h"
#include "scenario/complete_disaster_internal.h"

static char dir[256];
static char key_path[300], a_path[300], b_path[300], c_path[300];
static uint8_t key[BCF_KEY_LEN];

static int setup(void **state)
{
    (void)state;
    char hex[2 * BCF_KEY_LEN + 2];
    snprintf(dir, sizeof(dir), "/tmp/drsup-cdp-XXXXXX");
    assert_non_null(mkdtemp(dir));
    for (size_t i = 0; i < BCF_KEY_LEN; i++) {
        key[i] = (uint8_t)(i * 7 + 1);
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    }
    hex[2 * BCF_KEY_LEN] = '\n';
    snprintf(key_path, sizeof(key_path), "%s/backup.key", dir);
    assert_int_equal(atomicfile_write(key_path, hex, 2 * BCF_KEY_LEN + 1, 0600), 0);
    snprintf(a_path, sizeof(a_path), "%s/kill_switch.json", dir);
    snprintf(b_path, sizeof(b_path), "%s/orders.json", dir);
    snprintf(c_path, sizeof(c_path), "%s/never-there.json", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void config(ConfigBackup *b)
{
    static char *files[3];
    files[0] = a_path;
    files[1] = b_path;
    files[2] = c_path;
    memset(b, 0, sizeof(*b));
    b->key_file = key_path;
    b->key_path = key_path;
    b->codec = CODEC_NONE;
    b->chunk_size = 4096;
    b->state_files = files;
    b->n_state_files = 3;
}

static char *slurp(const char *path)
{
    char *data = NULL;
    size_t len = 0;
    if (atomicfile_read_all(path, 1 << 20, &data, &len) < 0)
        return NULL;
    char *s = realloc(data, len + 1);
    s[len] = '\0';
    return s;
}

/* The worker on a container's bytes; the CdWork freed by the caller. */
static CdWork *work(const uint8_t *file, size_t len, const char *sha)
{
    CdWork *w = calloc(1, sizeof(*w));
    assert_non_null(w);
    config(&w->backup);
    snprintf(w->name, sizeof(w->name), "shop_backup_20261203_120000.state.tar.drbk");
    snprintf(w->want_sha, sizeof(w->want_sha), "%s", sha);
    w->buf = malloc(len);
    memcpy(w->buf, file, len);
    w->len = len;
    w->result = cd__platform_work(w);
    return w;
}

static void work_free(CdWork *w)
{
    free(w->buf);
    json_decref(w->out);
    free(w);
}

static int sink(void *ctx, const uint8_t *data, size_t len)
{
    return backup_buf_append(ctx, data, len);
}

/* A tar's bytes encrypted as a backup: the container and its SHA-256. */
static void seal(const BackupBuf *tar, BackupBuf *out, char sha[65])
{
    BackupStreamStats st;
    BackupStreamWriter *wr = backupstream_writer_new(key, CODEC_NONE, 0, 4096, sink, out);
    assert_non_null(wr);
    assert_int_equal(backupstream_writer_write(wr, tar->data, tar->len), 0);
    assert_int_equal(backupstream_writer_finish(wr, &st), 0);
    memcpy(sha, st.file_sha256_hex, 65);
    backupstream_writer_free(wr);
}

/* One ustar member by hand (name without the leading '/'). */
static void member(BackupBuf *tar, const char *name, char type, const char *body)
{
    char h[512];
    static const char zeros[512];
    size_t len = strlen(body);
    unsigned sum = 0;
    memset(h, 0, sizeof(h));
    snprintf(h, 100, "%s", name);
    snprintf(h + 100, 8, "%07o", 0600u);
    snprintf(h + 108, 8, "%07o", 0u);
    snprintf(h + 116, 8, "%07o", 0u);
    snprintf(h + 124, 12, "%011o", (unsigned)len);
    snprintf(h + 136, 12, "%011o", 0u);
    memset(h + 148, ' ', 8);
    h[156] = type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    for (size_t i = 0; i < sizeof(h); i++)
        sum += (unsigned char)h[i];
    snprintf(h + 148, 8, "%06o", sum);
    assert_int_equal(backup_buf_append(tar, h, sizeof(h)), 0);
    assert_int_equal(backup_buf_append(tar, body, len), 0);
    if (len % 512)
        assert_int_equal(backup_buf_append(tar, zeros, 512 - len % 512), 0);
}

static void test_captured_tar_restored(void **state)
{
    (void)state;
    ConfigBackup b;
    AtomicFile *af = NULL;
    json_t *info = NULL;
    char err[400] = "", tar_path[400];
    config(&b);
    assert_int_equal(atomicfile_write(a_path, "{\"trading_enabled\": true}\n", 26, 0644), 0);
    assert_int_equal(atomicfile_write(b_path, "orders\n", 7, 0644), 0);
    snprintf(tar_path, sizeof(tar_path), "%s/state.tar.drbk", dir);
    assert_int_equal(backup_state_capture(&b, key, 1764763200, tar_path, "state.tar.drbk", &af, &info, err, sizeof(err)),
                     0);
    assert_int_equal(atomicfile_commit(af), 0);
    char *file = NULL;
    size_t len = 0;
    assert_int_equal(atomicfile_read_all(tar_path, 1 << 20, &file, &len), 0);
    const char *sha = json_string_value(json_object_get(info, "sha256"));
    unlink(a_path);
    unlink(b_path);

    /* a SHA-256 other than the manifest's: nothing written */
    CdWork *w = work((const uint8_t *)file, len, "0000000000000000000000000000000000000000000000000000000000000000");
    assert_int_equal(w->result, DR_ECORRUPT);
    assert_non_null(strstr(w->err, "its manifest says"));
    assert_int_equal(access(a_path, F_OK), -1);
    work_free(w);

    w = work((const uint8_t *)file, len, sha);
    assert_int_equal(w->result, 0);
    char *a = slurp(a_path), *bb = slurp(b_path);
    assert_string_equal(a, "{\"trading_enabled\": true}\n");
    assert_string_equal(bb, "orders\n");
    struct stat st;
    assert_int_equal(stat(a_path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(json_array_size(json_object_get(w->out, "files")), 2);
    assert_int_equal(json_integer_value(json_object_get(w->out, "bytes")), 33);
    assert_int_equal(json_array_size(json_object_get(w->out, "refused")), 0);
    assert_string_equal(json_string_value(json_array_get(json_object_get(w->out, "absent"), 0)), c_path);
    free(a);
    free(bb);
    work_free(w);
    free(file);
    json_decref(info);
}

static void test_members_outside_refused(void **state)
{
    (void)state;
    BackupBuf tar = {0}, sealed = {0};
    static const char zeros[1024];
    char sha[65], climb[400], other[400];
    unlink(a_path);
    unlink(b_path);
    snprintf(climb, sizeof(climb), "%s/../../../../tmp/drsup-cdp-climbed", dir + 1);
    snprintf(other, sizeof(other), "%s/not-configured.json", dir + 1);
    member(&tar, a_path + 1, '0', "enabled\n");
    member(&tar, climb, '0', "climbed\n");
    member(&tar, other, '0', "{}\n");
    member(&tar, b_path + 1, '2', ""); /* a link at a configured path */
    assert_int_equal(backup_buf_append(&tar, zeros, sizeof(zeros)), 0);
    seal(&tar, &sealed, sha);
    CdWork *w = work(sealed.data, sealed.len, sha);
    assert_int_equal(w->result, 0);
    char *a = slurp(a_path);
    assert_string_equal(a, "enabled\n");
    free(a);
    assert_int_equal(access("/tmp/drsup-cdp-climbed", F_OK), -1);
    snprintf(other, sizeof(other), "%s/not-configured.json", dir);
    assert_int_equal(access(other, F_OK), -1);
    assert_int_equal(access(b_path, F_OK), -1);
    const json_t *refused = json_object_get(w->out, "refused");
    assert_int_equal(json_array_size(refused), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(refused, 1), "why")),
                        "not one of backup.state_files");
    assert_string_equal(json_string_value(json_object_get(json_array_get(refused, 2), "why")), "not a regular file");
    work_free(w);
    backup_buf_free(&tar);
    backup_buf_free(&sealed);
}

static void test_damaged_tar_writes_nothing(void **state)
{
    (void)state;
    BackupBuf tar = {0}, sealed = {0};
    static const char zeros[1024];
    char sha[65];
    unlink(a_path);
    member(&tar, a_path + 1, '0', "enabled\n");
    member(&tar, b_path + 1, '0', "orders\n");
    tar.data[512 + 512 + 148] ^= 1; /* the second header's checksum */
    assert_int_equal(backup_buf_append(&tar, zeros, sizeof(zeros)), 0);
    seal(&tar, &sealed, sha);
    CdWork *w = work(sealed.data, sealed.len, sha);
    assert_int_equal(w->result, DR_ECORRUPT);
    assert_non_null(strstr(w->err, "damaged"));
    assert_int_equal(access(a_path, F_OK), -1); /* the good first member was not written either */
    work_free(w);
    /* no end-of-archive blocks */
    backup_buf_free(&sealed);
    tar.len = 1024;
    tar.data[512 + 512 + 148] ^= 1;
    sealed = (BackupBuf){0};
    seal(&tar, &sealed, sha);
    w = work(sealed.data, sealed.len, sha);
    assert_int_equal(w->result, DR_ECORRUPT);
    assert_int_equal(access(a_path, F_OK), -1);
    work_free(w);
    backup_buf_free(&tar);
    backup_buf_free(&sealed);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_captured_tar_restored),
        cmocka_unit_test(test_members_outside_refused),
        cmocka_unit_test(test_damaged_tar_writes_nothing),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
