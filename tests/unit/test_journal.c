/*
 * Unit tests for lib/journal: append/reopen/replay; a torn last record at EVERY truncation length
 * is detected, dropped and truncated away with earlier records intact and appends working after;
 * a flipped bit anywhere in the last record is dropped as torn; a flipped bit anywhere in a middle
 * record is DR_ECORRUPT with its offset and the file untouched; fsync really called on append and
 * on creation (file and directory); a failed write is undone; a failed fsync breaks the journal;
 * the file lock; async appends keep submission order under many concurrent submissions.
 */
// WRAP: fsync pwrite
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include "err.h"
#include "journal.h"

int __real_fsync(int fd);
int __wrap_fsync(int fd);
ssize_t __real_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off);

static int fsync_file_calls;
static int fsync_dir_calls;
static int fail_fsync_errno;
static int fail_pwrite_errno;     /* fail after writing half of the buffer */

int __wrap_fsync(int fd)
{
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
        __atomic_add_fetch(&fsync_dir_calls, 1, __ATOMIC_SEQ_CST);
    else
        __atomic_add_fetch(&fsync_file_calls, 1, __ATOMIC_SEQ_CST);
    if (fail_fsync_errno) {
        errno = fail_fsync_errno;
        return -1;
    }
    return __real_fsync(fd);
}

ssize_t __wrap_pwrite(int fd, const void *buf, size_t n, off_t off)
{
    if (fail_pwrite_errno) {
        if (n > 1) {
            (void)__real_pwrite(fd, buf, n / 2, off); /* leave a partial record behind */
        }
        errno = fail_pwrite_errno;
        return -1;
    }
    return __real_pwrite(fd, buf, n, off);
}

static char tmpdir[64];
static char jpath[128];

static int setup(void **state)
{
    (void)state;
    strcpy(tmpdir, "/tmp/test_journal.XXXXXX");
    if (!mkdtemp(tmpdir))
        return -1;
    snprintf(jpath, sizeof(jpath), "%s/runs.journal", tmpdir);
    fsync_file_calls = fsync_dir_calls = 0;
    fail_fsync_errno = fail_pwrite_errno = 0;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

static Journal *open_ok(JournalOpenInfo *info)
{
    Journal *j = NULL;
    char err[256];
    int r = journal_open(jpath, &j, info, err, sizeof(err));
    if (r != 0)
        fail_msg("journal_open: %s (%s)", err, err_name(r));
    return j;
}

static void append_str(Journal *j, const char *s)
{
    assert_int_equal(journal_append(j, s, strlen(s), NULL), 0);
}

static char *read_file(size_t *ret_len)
{
    FILE *f = fopen(jpath, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 16);
    size_t n = fread(buf, 1, 1 << 16, f);
    fclose(f);
    *ret_len = n;
    return buf;
}

static void write_file(const char *buf, size_t len)
{
    FILE *f = fopen(jpath, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(buf, 1, len, f), len);
    fclose(f);
}

static off_t file_size(void)
{
    struct stat st;
    assert_int_equal(stat(jpath, &st), 0);
    return st.st_size;
}

static const char *const payloads[] = {
    "{\"ev\":\"start\",\"run\":\"r1\"}",
    "{\"ev\":\"intent\",\"row\":0}",
    "{\"ev\":\"commit\",\"row\":0,\"message\":\"halted and confirmed\"}",
};

/* Writes the three payloads and returns the pristine file content and the last record offset. */
static char *make_three(size_t *ret_len, uint64_t *ret_last_off, uint64_t *ret_mid_off)
{
    JournalOpenInfo info;
    Journal *j = open_ok(&info);
    for (size_t i = 0; i < 3; i++)
        append_str(j, payloads[i]);
    journal_free(j);
    j = open_ok(&info);
    *ret_last_off = journal_record_at(j, 2)->offset;
    *ret_mid_off = journal_record_at(j, 1)->offset;
    journal_free(j);
    return read_file(ret_len);
}

static void test_append_reopen_replay(void **state)
{
    (void)state;
    JournalOpenInfo info;
    Journal *j = open_ok(&info);
    assert_int_equal(info.created, 1);
    assert_int_equal(info.records, 0);
    assert_int_equal(journal_next_seq(j), 1);
    for (size_t i = 0; i < 3; i++) {
        uint64_t seq = 0;
        assert_int_equal(journal_append(j, payloads[i], strlen(payloads[i]), &seq), 0);
        assert_int_equal(seq, i + 1);
    }
    assert_int_equal(journal_append(j, "", 0, NULL), 0); /* empty payloads are records too */
    uint64_t size = journal_size(j);
    journal_free(j);
    assert_int_equal((uint64_t)file_size(), size);

    j = open_ok(&info);
    assert_int_equal(info.created, 0);
    assert_int_equal(info.records, 4);
    assert_int_equal(info.torn_bytes, 0);
    assert_string_equal(info.torn_reason, "");
    assert_int_equal(journal_record_count(j), 4);
    uint64_t off = 0;
    for (size_t i = 0; i < 3; i++) {
        const JournalRecord *r = journal_record_at(j, i);
        assert_non_null(r);
        assert_int_equal(r->seq, i + 1);
        assert_int_equal(r->offset, off);
        assert_int_equal(r->len, strlen(payloads[i]));
        assert_string_equal(r->payload, payloads[i]); /* NUL-terminated */
        off += JOURNAL_HEADER_SIZE + r->len;
    }
    assert_int_equal(journal_record_at(j, 3)->len, 0);
    assert_null(journal_record_at(j, 4));
    assert_int_equal(journal_next_seq(j), 5);
    append_str(j, "after reopen");
    journal_free(j);
    j = open_ok(&info);
    assert_int_equal(info.records, 5);
    assert_string_equal(journal_record_at(j, 4)->payload, "after reopen");
    assert_int_equal(journal_record_at(j, 4)->seq, 5);
    journal_free(j);
    journal_free(NULL);
}

static void test_header_layout(void **state)
{
    (void)state;
    Journal *j = open_ok(NULL);
    append_str(j, "abc");
    journal_free(j);
    size_t len;
    unsigned char *b = (unsigned char *)read_file(&len);
    assert_int_equal(len, JOURNAL_HEADER_SIZE + 3);
    assert_memory_equal(b, "DRJ1", 4);          /* magic, little-endian */
    assert_int_equal(b[4], 3);                   /* length */
    assert_int_equal(b[5] | b[6] | b[7], 0);
    assert_int_equal(b[12], 1);                  /* seq 1 */
    assert_memory_equal(b + 20, "abc", 3);
    free(b);
}

static void test_every_truncation_of_last_record(void **state)
{
    (void)state;
    size_t full;
    uint64_t last, mid;
    char *pristine = make_three(&full, &last, &mid);
    for (size_t cut = (size_t)last; cut < full; cut++) {
        write_file(pristine, cut);
        JournalOpenInfo info;
        Journal *j = open_ok(&info);
        assert_int_equal(info.records, 2);
        assert_int_equal(info.torn_bytes, cut - last);
        if (cut > last) {
            assert_int_equal(info.torn_offset, last);
            assert_true(info.torn_reason[0] != '\0');
        }
        assert_int_equal((uint64_t)file_size(), last); /* truncated away on disk */
        assert_string_equal(journal_record_at(j, 0)->payload, payloads[0]);
        assert_string_equal(journal_record_at(j, 1)->payload, payloads[1]);
        append_str(j, "new third");
        journal_free(j);
        j = open_ok(&info);
        assert_int_equal(info.records, 3);
        assert_int_equal(info.torn_bytes, 0);
        assert_string_equal(journal_record_at(j, 2)->payload, "new third");
        assert_int_equal(journal_record_at(j, 2)->seq, 3);
        journal_free(j);
    }
    free(pristine);
}

static void test_bit_flip_in_last_record_is_torn(void **state)
{
    (void)state;
    size_t full;
    uint64_t last, mid;
    char *pristine = make_three(&full, &last, &mid);
    char *copy = malloc(full);
    for (size_t pos = (size_t)last; pos < full; pos++) {
        for (int bit = 0; bit < 8; bit += 3) {
            memcpy(copy, pristine, full);
            copy[pos] = (char)(copy[pos] ^ (1 << bit));
            write_file(copy, full);
            JournalOpenInfo info;
            Journal *j = open_ok(&info);
            assert_int_equal(info.records, 2);
            assert_int_equal(info.torn_offset, last);
            assert_int_equal(info.torn_bytes, full - last);
            append_str(j, "x");
            journal_free(j);
            j = open_ok(&info);
            assert_int_equal(info.records, 3);
            journal_free(j);
        }
    }
    free(copy);
    free(pristine);
}

static void test_bit_flip_in_middle_record_is_corrupt(void **state)
{
    (void)state;
    size_t full;
    uint64_t last, mid;
    char *pristine = make_three(&full, &last, &mid);
    char *copy = malloc(full);
    for (size_t pos = (size_t)mid; pos < last; pos++) {
        for (int bit = 0; bit < 8; bit += 2) {
            memcpy(copy, pristine, full);
            copy[pos] = (char)(copy[pos] ^ (1 << bit));
            write_file(copy, full);
            Journal *j = NULL;
            JournalOpenInfo info;
            char err[256];
            int r = journal_open(jpath, &j, &info, err, sizeof(err));
            assert_int_equal(r, DR_ECORRUPT);
            assert_null(j);
            assert_int_equal(info.corrupt_offset, mid);
            char want[64];
            snprintf(want, sizeof(want), "offset %llu", (unsigned long long)mid);
            assert_non_null(strstr(err, want));
            assert_int_equal((size_t)file_size(), full); /* never "repaired" */
        }
    }
    free(copy);
    free(pristine);
}

static void test_garbage_tail_after_records(void **state)
{
    (void)state;
    Journal *j = open_ok(NULL);
    append_str(j, "one");
    journal_free(j);
    /* zeros appended (e.g. size extended but data never written before a crash) */
    int fd = open(jpath, O_WRONLY | O_APPEND);
    char zeros[100] = {0};
    assert_int_equal(write(fd, zeros, sizeof(zeros)), (ssize_t)sizeof(zeros));
    close(fd);
    JournalOpenInfo info;
    j = open_ok(&info);
    assert_int_equal(info.records, 1);
    assert_int_equal(info.torn_bytes, 100);
    assert_non_null(strstr(info.torn_reason, "magic"));
    journal_free(j);
}

static void test_fsync_called(void **state)
{
    (void)state;
    Journal *j = open_ok(NULL);
    assert_int_equal(fsync_file_calls, 1); /* creation: the file ... */
    assert_int_equal(fsync_dir_calls, 1);  /* ... and its directory */
    append_str(j, "a");
    assert_int_equal(fsync_file_calls, 2);
    append_str(j, "b");
    assert_int_equal(fsync_file_calls, 3);
    journal_free(j);
    /* reopening an existing clean journal neither creates nor truncates */
    j = open_ok(NULL);
    assert_int_equal(fsync_file_calls, 3);
    assert_int_equal(fsync_dir_calls, 1);
    journal_free(j);
    /* truncating a torn tail is made durable */
    int fd = open(jpath, O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, "DRJ", 3), 3);
    close(fd);
    j = open_ok(NULL);
    assert_int_equal(fsync_file_calls, 4);
    journal_free(j);
}

static void test_fsync_failure_breaks_journal(void **state)
{
    (void)state;
    Journal *j = open_ok(NULL);
    append_str(j, "a");
    fail_fsync_errno = EIO;
    assert_int_equal(journal_append(j, "b", 1, NULL), -EIO);
    fail_fsync_errno = 0;
    assert_int_equal(journal_append(j, "c", 1, NULL), -EIO); /* sticky */
    journal_free(j);
}

static void test_write_failure_is_undone(void **state)
{
    (void)state;
    Journal *j = open_ok(NULL);
    append_str(j, "first");
    uint64_t size = journal_size(j);
    fail_pwrite_errno = ENOSPC;
    assert_int_equal(journal_append(j, "second, never written whole", 27, NULL), -ENOSPC);
    fail_pwrite_errno = 0;
    assert_int_equal((uint64_t)file_size(), size); /* partial record removed */
    uint64_t seq = 0;
    assert_int_equal(journal_append(j, "second", 6, &seq), 0);
    assert_int_equal(seq, 2);
    journal_free(j);
    JournalOpenInfo info;
    j = open_ok(&info);
    assert_int_equal(info.records, 2);
    assert_int_equal(info.torn_bytes, 0);
    assert_string_equal(journal_record_at(j, 1)->payload, "second");
    journal_free(j);
}

static void test_lock_and_limits(void **state)
{
    (void)state;
    Journal *j = open_ok(NULL);
    Journal *j2 = NULL;
    char err[256];
    assert_int_equal(journal_open(jpath, &j2, NULL, err, sizeof(err)), DR_EBUSY);
    assert_null(j2);
    assert_int_equal(journal_append(j, "x", (size_t)JOURNAL_MAX_RECORD + 1, NULL), -EFBIG);
    journal_free(j);
    char bad[160];
    snprintf(bad, sizeof(bad), "%s/missing/dir/j", tmpdir);
    assert_int_equal(journal_open(bad, &j2, NULL, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "missing/dir"));
}

/* ---- async ---- */

#define NASYNC 300

typedef struct AsyncState {
    int done;
    uint64_t expect_seq;
    int out_of_order;
    int failures;
} AsyncState;

static void async_cb(Journal *j, int status, uint64_t seq, void *data)
{
    (void)j;
    AsyncState *st = data;
    if (status != 0)
        st->failures++;
    if (seq != st->expect_seq)
        st->out_of_order++;
    st->expect_seq++;
    st->done++;
}

static void test_async_order(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    Journal *j = open_ok(NULL);
    AsyncState st = {.expect_seq = 1};
    char buf[32];
    for (int i = 0; i < NASYNC; i++) {
        int n = snprintf(buf, sizeof(buf), "record %d", i);
        assert_int_equal(journal_append_async(&loop, j, buf, (size_t)n, async_cb, &st), 0);
    }
    assert_int_equal(journal_pending(j), NASYNC);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(st.done, NASYNC);
    assert_int_equal(st.out_of_order, 0);
    assert_int_equal(st.failures, 0);
    assert_int_equal(journal_pending(j), 0);
    assert_true(fsync_file_calls >= NASYNC);
    journal_free(j);
    assert_int_equal(uv_loop_close(&loop), 0);

    JournalOpenInfo info;
    j = open_ok(&info);
    assert_int_equal(info.records, NASYNC);
    for (int i = 0; i < NASYNC; i++) {
        snprintf(buf, sizeof(buf), "record %d", i);
        assert_string_equal(journal_record_at(j, (size_t)i)->payload, buf);
    }
    journal_free(j);
}

/* Appends submitted from inside callbacks still come out in order. */
typedef struct Chain {
    uv_loop_t *loop;
    int submitted;
    int done;
    uint64_t last_seq;
    int bad;
} Chain;

static void chain_cb(Journal *j, int status, uint64_t seq, void *data)
{
    Chain *c = data;
    if (status != 0 || seq != c->last_seq + 1)
        c->bad++;
    c->last_seq = seq;
    c->done++;
    if (c->submitted < 40) {
        for (int k = 0; k < 2; k++) {
            c->submitted++;
            assert_int_equal(journal_append_async(c->loop, j, "more", 4, chain_cb, c), 0);
        }
    }
}

static void test_async_from_callbacks(void **state)
{
    (void)state;
    uv_loop_t loop;
    assert_int_equal(uv_loop_init(&loop), 0);
    Journal *j = open_ok(NULL);
    Chain c = {.loop = &loop, .submitted = 1};
    assert_int_equal(journal_append_async(&loop, j, "first", 5, chain_cb, &c), 0);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(c.bad, 0);
    assert_int_equal(c.done, c.submitted);
    assert_int_equal(c.last_seq, (uint64_t)c.submitted);
    journal_free(j);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_append_reopen_replay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_header_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_every_truncation_of_last_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bit_flip_in_last_record_is_torn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bit_flip_in_middle_record_is_corrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_tail_after_records, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fsync_called, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fsync_failure_breaks_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_failure_is_undone, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lock_and_limits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_from_callbacks, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
