/*
 * Unit tests for lib/walarchive: segment names as PostgreSQL's XLogFileName writes them (and other
 * segment sizes), the archive's file kinds, LSN text, a segment written and read back, and the
 * partial segment's pieces: appended and read back contiguous, a torn last piece cut off (only
 * when asked), a tampered piece refused with the good pieces kept, a wrong key refused.
 */
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

#include "err.h"
#include "walarchive.h"

#define SEG (16u << 20)

static char dir[64];
static uint8_t key[BCF_KEY_LEN];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/drsup-walarchive-XXXXXX");
    assert_non_null(mkdtemp(dir));
    for (size_t i = 0; i < sizeof(key); i++)
        key[i] = (uint8_t)(i * 7 + 1);
    return 0;
}

static int teardown(void **state)
{
    char cmd[128];
    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_names(void **state)
{
    char n[WAL_NAME_LEN + 1], f[128];
    uint32_t tli;
    uint64_t segno;
    (void)state;
    walarchive_seg_name(1, 3, SEG, n);
    assert_string_equal(n, "000000010000000000000003");
    walarchive_seg_name(2, 256 + 5, SEG, n); /* 256 segments of 16 MiB per 4 GiB "log" */
    assert_string_equal(n, "000000020000000100000005");
    walarchive_seg_name(0x1A, 0x300 + 0x10, 1u << 20, n); /* 1 MiB segments: 4096 per log */
    assert_string_equal(n, "0000001A0000000000000310");
    assert_int_equal(walarchive_parse_seg("000000020000000100000005", SEG, &tli, &segno), 0);
    assert_int_equal(tli, 2);
    assert_int_equal(segno, 261);
    assert_int_equal(walarchive_parse_seg("0000000200000001000001FF", SEG, &tli, &segno), -EINVAL); /* > 255 */
    assert_int_equal(walarchive_parse_seg("00000000000000010000000F", SEG, &tli, &segno), -EINVAL); /* tli 0 */
    assert_int_equal(walarchive_parse_seg("0000000100000001000000fg", SEG, &tli, &segno), -EINVAL);

    assert_int_equal(walarchive_file_name(WALFILE_SEGMENT, 1, 3, SEG, CODEC_ZSTD, f, sizeof(f)), 0);
    assert_string_equal(f, "000000010000000000000003.wal.zst.drbk");
    assert_int_equal(walarchive_classify(f, SEG, &tli, &segno), WALFILE_SEGMENT);
    assert_int_equal(walarchive_file_name(WALFILE_PARTIAL_END, 1, 3, SEG, CODEC_NONE, f, sizeof(f)), 0);
    assert_string_equal(f, "000000010000000000000003.partial.wal.drbk");
    assert_int_equal(walarchive_classify(f, SEG, &tli, &segno), WALFILE_PARTIAL_END);
    assert_int_equal(walarchive_file_name(WALFILE_PARTIAL, 1, 3, SEG, CODEC_GZIP, f, sizeof(f)), 0);
    assert_string_equal(f, "000000010000000000000003.partial.drwal");
    assert_int_equal(walarchive_classify(f, SEG, &tli, &segno), WALFILE_PARTIAL);
    assert_int_equal(walarchive_file_name(WALFILE_HISTORY, 10, 0, SEG, CODEC_ZSTD, f, sizeof(f)), 0);
    assert_string_equal(f, "0000000A.history.drbk");
    assert_int_equal(walarchive_classify(f, SEG, &tli, &segno), WALFILE_HISTORY);
    assert_int_equal(tli, 10);
    assert_int_equal(walarchive_classify("000000010000000000000003.wal.zst", SEG, &tli, &segno), WALFILE_NONE);
    assert_int_equal(walarchive_classify("000000010000000000000003.wal.lz4.drbk", SEG, &tli, &segno), WALFILE_NONE);
    assert_int_equal(walarchive_classify(".000000010000000000000003.wal.zst.drbk.tmp.1.ab", SEG, &tli, &segno),
                     WALFILE_NONE);
}

static void test_lsn(void **state)
{
    char s[24];
    uint64_t v;
    (void)state;
    walarchive_lsn_str(0x1000000ABull << 4, s);
    assert_string_equal(s, "10/AB0");
    assert_int_equal(walarchive_parse_lsn("10/AB0", &v), 0);
    assert_true(v == 0x1000000ABull << 4);
    assert_int_equal(walarchive_parse_lsn("0/0", &v), 0);
    assert_true(v == 0);
    assert_int_equal(walarchive_parse_lsn("10AB0", &v), -EINVAL);
    assert_int_equal(walarchive_parse_lsn("1/", &v), -EINVAL);
    assert_int_equal(walarchive_parse_lsn("100000000/0", &v), -EINVAL);
}

static void test_segment_round_trip(void **state)
{
    char err[512], path[256];
    uint8_t *data = malloc(SEG), *back = NULL;
    size_t len = 0;
    (void)state;
    for (size_t i = 0; i < SEG; i++)
        data[i] = (uint8_t)((i / 8192) ^ (i % 251));
    assert_int_equal(walarchive_write_file(dir, "000000010000000000000001.wal.zst.drbk", key, CODEC_ZSTD, 1700000000,
                                           data, SEG, err, sizeof(err)),
                     0);
    snprintf(path, sizeof(path), "%s/000000010000000000000001.wal.zst.drbk", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(walarchive_read_file(path, key, SEG, &back, &len, err, sizeof(err)), 0);
    assert_int_equal(len, SEG);
    assert_memory_equal(back, data, SEG);
    free(back);
    /* a bound smaller than the content is refused, not truncated */
    back = NULL;
    assert_int_equal(walarchive_read_file(path, key, SEG / 2, &back, &len, err, sizeof(err)), -EFBIG);
    assert_null(back);
    /* a flipped byte */
    int fd = open(path, O_RDWR);
    uint8_t b;
    assert_true(pread(fd, &b, 1, 5000) == 1);
    b ^= 0x40;
    assert_true(pwrite(fd, &b, 1, 5000) == 1);
    close(fd);
    assert_int_equal(walarchive_read_file(path, key, SEG, &back, &len, err, sizeof(err)), DR_ECORRUPT);
    assert_non_null(strstr(err, "authentication failed"));
    free(data);
}

static void test_partial_pieces(void **state)
{
    char err[512], path[256];
    uint8_t *buf = calloc(1, SEG), piece[3000];
    uint64_t have = 0;
    bool torn = false;
    struct stat st;
    (void)state;
    snprintf(path, sizeof(path), "%s/000000010000000000000002.partial.drwal", dir);
    for (int k = 0; k < 3; k++) {
        memset(piece, 'a' + k, sizeof(piece));
        assert_int_equal(walarchive_append_piece(path, key, CODEC_ZSTD, (uint64_t)k * sizeof(piece), piece,
                                                 sizeof(piece), err, sizeof(err)),
                         0);
    }
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(walarchive_read_partial(path, key, buf, SEG, true, &have, &torn, err, sizeof(err)), 0);
    assert_int_equal(have, 3 * sizeof(piece));
    assert_false(torn);
    assert_int_equal(buf[0], 'a');
    assert_int_equal(buf[sizeof(piece)], 'b');
    assert_int_equal(buf[3 * sizeof(piece) - 1], 'c');

    /* a crash inside an append: a few bytes of a fourth piece. Read-only: kept; else cut off. */
    off_t size = st.st_size;
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(write(fd, "\0\0\0\0\0\0\1\0xyz", 11) == 11);
    close(fd);
    assert_int_equal(walarchive_read_partial(path, key, buf, SEG, false, &have, &torn, err, sizeof(err)), 0);
    assert_true(torn);
    assert_int_equal(have, 3 * sizeof(piece));
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, size + 11);
    assert_int_equal(walarchive_read_partial(path, key, buf, SEG, true, &have, &torn, err, sizeof(err)), 0);
    assert_true(torn);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, size);

    /* a piece out of place (offset not where the last one ended) */
    char other[256];
    snprintf(other, sizeof(other), "%s/000000010000000000000004.partial.drwal", dir);
    assert_int_equal(walarchive_append_piece(other, key, CODEC_NONE, 0, piece, 100, err, sizeof(err)), 0);
    assert_int_equal(walarchive_append_piece(other, key, CODEC_NONE, 200, piece, 100, err, sizeof(err)), 0);
    assert_int_equal(walarchive_read_partial(other, key, buf, SEG, true, &have, &torn, err, sizeof(err)), DR_ECORRUPT);
    assert_int_equal(have, 100);
    assert_non_null(strstr(err, "where 100 was expected"));

    /* tampered second piece: the first is kept and counted */
    fd = open(path, O_RDWR);
    uint8_t b;
    off_t at = size / 3 + 200;
    assert_true(pread(fd, &b, 1, at) == 1);
    b ^= 1;
    assert_true(pwrite(fd, &b, 1, at) == 1);
    close(fd);
    assert_int_equal(walarchive_read_partial(path, key, buf, SEG, true, &have, &torn, err, sizeof(err)), DR_ECORRUPT);
    assert_true(have == sizeof(piece) || have == 2 * sizeof(piece));

    /* another key */
    uint8_t k2[BCF_KEY_LEN];
    memset(k2, 9, sizeof(k2));
    assert_int_equal(walarchive_read_partial(other, k2, buf, SEG, false, &have, &torn, err, sizeof(err)), DR_ECORRUPT);
    assert_int_equal(have, 0);
    assert_non_null(strstr(err, "key id mismatch"));
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_lsn),
        cmocka_unit_test_setup_teardown(test_segment_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_partial_pieces, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
