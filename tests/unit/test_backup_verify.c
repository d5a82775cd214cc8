/*
 * Unit tests for daemon/cap/backup/backup_verify.c streaming into a child (the unpack of a base
 * backup is this with `tar -x`): the decrypting worker and the child's stdin run as a pipeline, so
 * these check what the pipeline must keep. A container of many pieces reaches a real child (`cat`
 * into a file) whole and in order; a chunk corrupted in the middle fails closed: the result says
 * the container is bad, the child is killed instead of seeing a clean end of input, and everything
 * it did receive is an exact prefix of the plaintext that ends before the corrupted chunk (no byte
 * of it or after it was handed over); a cancel in the middle ends once with an error; and the loop
 * closes cleanly after each.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cap/backup/backup_internal.h"
#include "err.h"

#define PLAIN_BYTES (13u * 1024u * 1024u + 12345u) /* several of the pipeline's 4 MiB pieces */
#define CHUNK_BYTES (64u * 1024u)

static const uint8_t key[BCF_KEY_LEN] = {3, 1, 4, 1, 5, 9, 2, 6};

typedef struct Fixture {
    char dir[64];
    char file[128], out[128];
    char cmd[256];
    uint8_t *plain;
    size_t plain_len;
    size_t file_len;
    char sha[65];
} Fixture;

typedef struct Seen {
    int calls;
    BackupVerifyResult res;
} Seen;

static void on_done(const BackupVerifyResult *res, void *data)
{
    Seen *s = data;
    s->calls++;
    s->res = *res;
}

static int file_sink(void *ctx, const uint8_t *data, size_t len)
{
    return fwrite(data, 1, len, (FILE *)ctx) == len ? 0 : -EIO;
}

/* Incompressible enough that the container has a chunk for every CHUNK_BYTES of plaintext. */
static void fill(uint8_t *p, size_t n)
{
    uint32_t x = 2463534242u;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

static int setup(void **state)
{
    Fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_backup_verify.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->file, sizeof(f->file), "%s/backup.bcf", f->dir);
    snprintf(f->out, sizeof(f->out), "%s/out", f->dir);
    snprintf(f->cmd, sizeof(f->cmd), "exec cat > '%s'", f->out);
    f->plain_len = PLAIN_BYTES;
    f->plain = malloc(f->plain_len);
    assert_non_null(f->plain);
    fill(f->plain, f->plain_len);

    FILE *fp = fopen(f->file, "wb");
    assert_non_null(fp);
    BackupStreamWriter *w = backupstream_writer_new(key, CODEC_NONE, CODEC_LEVEL_DEFAULT, CHUNK_BYTES, file_sink, fp);
    assert_non_null(w);
    for (size_t off = 0; off < f->plain_len; off += 100000)
        assert_int_equal(backupstream_writer_write(w, f->plain + off,
                                                   f->plain_len - off < 100000 ? f->plain_len - off : 100000), 0);
    BackupStreamStats st;
    assert_int_equal(backupstream_writer_finish(w, &st), 0);
    backupstream_writer_free(w);
    assert_int_equal(fclose(fp), 0);
    f->file_len = (size_t)st.file_bytes;
    snprintf(f->sha, sizeof(f->sha), "%s", st.file_sha256_hex);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    Fixture *f = *state;
    unlink(f->file);
    unlink(f->out);
    rmdir(f->dir);
    free(f->plain);
    free(f);
    return 0;
}

/* The file as the child wrote it; *len its size. */
static uint8_t *read_out(const Fixture *f, size_t *len)
{
    FILE *fp = fopen(f->out, "rb");
    *len = 0;
    if (!fp)
        return NULL;
    uint8_t *p = malloc(f->plain_len + 1);
    assert_non_null(p);
    *len = fread(p, 1, f->plain_len + 1, fp);
    fclose(fp);
    return p;
}

static void run_verify(Fixture *f, const char *sha, Seen *s, bool cancel_midway)
{
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    const char *argv[] = {"/bin/sh", "-c", f->cmd, NULL};
    BackupVerifyOptions o = {.path = f->file, .key = key, .expected_sha256_hex = sha, .argv = argv,
                             .child_must_read_all = true, .timeout_ms = 60000, .priority = {0, PRIO_IO_NORMAL}};
    unlink(f->out);
    BackupVerify *v = backup_verify_start(&loop, &o, on_done, s);
    assert_non_null(v);
    if (cancel_midway) {
        /* Until the child has received something, then cancel. */
        struct stat sb;
        while (s->calls == 0 && (stat(f->out, &sb) < 0 || sb.st_size == 0))
            uv_run(&loop, UV_RUN_ONCE);
        assert_int_equal(s->calls, 0);
        backup_verify_cancel(v);
        backup_verify_cancel(v); /* twice is harmless */
    }
    while (s->calls == 0)
        uv_run(&loop, UV_RUN_ONCE);
    uv_run(&loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(s->calls, 1);
}

static void test_whole_stream_in_order(void **state)
{
    Fixture *f = *state;
    Seen s = {0};
    run_verify(f, f->sha, &s, false);
    assert_true(s.res.container_ok);
    assert_true(s.res.sha_checked);
    assert_true(s.res.sha_match);
    assert_true(s.res.child_ran);
    assert_true(s.res.child_ok);
    assert_string_equal(s.res.error, "");
    assert_int_equal(s.res.stats.plain_bytes, f->plain_len);
    size_t len;
    uint8_t *out = read_out(f, &len);
    assert_non_null(out);
    assert_int_equal(len, f->plain_len);
    assert_memory_equal(out, f->plain, f->plain_len);
    free(out);
}

static void test_corrupt_chunk_in_the_middle_fails_closed(void **state)
{
    Fixture *f = *state;
    /* One bit of a chunk in the middle of the file. */
    FILE *fp = fopen(f->file, "r+b");
    assert_non_null(fp);
    long at = (long)(f->file_len / 2);
    assert_int_equal(fseek(fp, at, SEEK_SET), 0);
    int c = fgetc(fp);
    assert_true(c != EOF);
    assert_int_equal(fseek(fp, at, SEEK_SET), 0);
    assert_true(fputc(c ^ 0x10, fp) != EOF);
    assert_int_equal(fclose(fp), 0);

    Seen s = {0};
    run_verify(f, f->sha, &s, false);
    assert_false(s.res.container_ok);
    assert_false(s.res.sha_match);
    assert_false(s.res.child_ok); /* killed: it never saw a clean end of input */
    assert_non_null(strstr(s.res.child_status, "signal"));
    assert_true(s.res.error[0] != '\0');
    size_t len;
    uint8_t *out = read_out(f, &len);
    /* Only authenticated bytes were handed over: an exact prefix, ending before the bad chunk (the
     * plaintext before the flipped byte is at most its file offset, the container's framing being
     * larger than nothing). */
    assert_true(len < (size_t)at);
    if (len)
        assert_memory_equal(out, f->plain, len);
    free(out);

    /* Restored for the next test. */
    fp = fopen(f->file, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, at, SEEK_SET), 0);
    assert_true(fputc(c, fp) != EOF);
    assert_int_equal(fclose(fp), 0);
}

static void test_wrong_sha_is_reported_after_the_stream(void **state)
{
    Fixture *f = *state;
    Seen s = {0};
    run_verify(f, "0000000000000000000000000000000000000000000000000000000000000000", &s, false);
    assert_true(s.res.container_ok);
    assert_true(s.res.sha_checked);
    assert_false(s.res.sha_match);
    assert_non_null(strstr(s.res.error, "SHA-256 mismatch"));
}

static void test_cancel_midway_ends_once(void **state)
{
    Fixture *f = *state;
    Seen s = {0};
    run_verify(f, f->sha, &s, true);
    assert_false(s.res.container_ok);
    assert_false(s.res.child_ok);
    assert_true(s.res.error[0] != '\0');
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN); /* as the daemon: a killed child's pipe is an error, not a signal */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_stream_in_order),
        cmocka_unit_test(test_corrupt_chunk_in_the_middle_fails_closed),
        cmocka_unit_test(test_wrong_sha_is_reported_after_the_stream),
        cmocka_unit_test(test_cancel_midway_ends_once),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
