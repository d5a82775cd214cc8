/*
 * Unit tests for lib/bcf: round trips over chunk-boundary sizes, arbitrary reader splits, tamper
 * detection (bit flips at every offset of a small file and across a multi-MiB one, truncation at
 * every header length and inside chunks, appended data, swapped, duplicated, dropped and spliced
 * chunks, wrong key), key files, writer state, and the documented test vector.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bcf.h"
#include "err.h"

typedef struct Buf {
    uint8_t *p;
    size_t len, cap;
    int fail_at; /* return -EIO on this call (1-based); 0 never */
    int calls;
} Buf;

static int buf_sink(void *ctx, const uint8_t *data, size_t len)
{
    Buf *b = ctx;
    if (b->fail_at && ++b->calls >= b->fail_at)
        return -EIO;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + len)
            cap *= 2;
        b->p = realloc(b->p, cap);
        assert_non_null(b->p);
        b->cap = cap;
    }
    if (len)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

static void buf_free(Buf *b)
{
    free(b->p);
    *b = (Buf){0};
}

static const uint8_t key_a[BCF_KEY_LEN] = {
    0x60, 0x3d, 0xeb, 0x10, 0x15, 0xca, 0x71, 0xbe, 0x2b, 0x73, 0xae, 0xf0, 0x85, 0x7d, 0x77, 0x81,
    0x1f, 0x35, 0x2c, 0x07, 0x3b, 0x61, 0x08, 0xd7, 0x2d, 0x98, 0x10, 0xa3, 0x09, 0x14, 0xdf, 0xf4,
};
static const uint8_t key_b[BCF_KEY_LEN] = {1, 2, 3};

static void fill_random(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

/* Encrypt `len` bytes, written in pieces of `step` (0: at once), into `out`. */
static void make_file(const uint8_t *key, const uint8_t *data, size_t len, uint32_t chunk, size_t step, Buf *out)
{
    BcfWriter *w = bcf_writer_new(key, CODEC_ZSTD, chunk, buf_sink, out);
    assert_non_null(w);
    size_t off = 0;
    while (off < len) {
        size_t n = step == 0 || step > len - off ? len - off : step;
        assert_int_equal(bcf_writer_write(w, data + off, n), 0);
        off += n;
    }
    assert_int_equal(bcf_writer_finish(w), 0);
    assert_int_equal(bcf_writer_bytes_out(w), out->len);
    bcf_writer_free(w);
}

/* Decrypt a file pushed in pieces of `step` (0: at once); returns the first error. */
static int read_file(const uint8_t *key, const uint8_t *file, size_t len, size_t step, Buf *out, char *msg,
                     size_t msglen)
{
    BcfReader *r = bcf_reader_new(key, out ? buf_sink : NULL, out);
    assert_non_null(r);
    int rc = 0;
    size_t off = 0;
    while (rc == 0 && off < len) {
        size_t n = step == 0 || step > len - off ? len - off : step;
        rc = bcf_reader_update(r, file + off, n);
        off += n;
    }
    if (rc == 0)
        rc = bcf_reader_finish(r);
    else
        assert_int_equal(bcf_reader_finish(r), rc); /* sticky */
    if (msg)
        snprintf(msg, msglen, "%s", bcf_reader_errmsg(r));
    if (rc == 0)
        assert_string_equal(bcf_reader_errmsg(r), "");
    else
        assert_true(bcf_reader_errmsg(r)[0] != '\0');
    bcf_reader_free(r);
    return rc;
}

static size_t expected_file_len(size_t len, uint32_t chunk)
{
    size_t chunks = len == 0 ? 1 : (len + chunk - 1) / chunk;
    return BCF_HEADER_LEN + chunks * (4 + BCF_TAG_LEN) + len;
}

static void round_trip(uint32_t chunk, size_t len, size_t wstep, size_t rstep)
{
    uint8_t *data = malloc(len ? len : 1);
    assert_non_null(data);
    fill_random(data, len, (uint32_t)(len + chunk));
    Buf f = {0}, back = {0};
    make_file(key_a, data, len, chunk, wstep, &f);
    assert_int_equal(f.len, expected_file_len(len, chunk));
    assert_int_equal(read_file(key_a, f.p, f.len, rstep, &back, NULL, 0), 0);
    assert_int_equal(back.len, len);
    if (len)
        assert_memory_equal(back.p, data, len);
    buf_free(&f);
    buf_free(&back);
    free(data);
}

static void test_round_trip_sizes(void **state)
{
    (void)state;
    static const uint32_t chunks[] = {1, 16, 1000, BCF_CHUNK_DEFAULT};
    for (size_t c = 0; c < 4; c++) {
        uint32_t cs = chunks[c];
        size_t sizes[] = {0, 1, cs - 1, cs, cs + 1, 2 * cs, 3 * cs + 7};
        for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
            round_trip(cs, sizes[s], 0, 0);
            if (sizes[s] < 5000)
                round_trip(cs, sizes[s], 3, 5);
        }
    }
    round_trip(BCF_CHUNK_DEFAULT, (5u << 20) + 12345, 100003, 65536); /* several MiB, random */
    round_trip(BCF_CHUNK_DEFAULT, 4u << 20, 0, 0);
}

static void test_empty_stream_has_final_chunk(void **state)
{
    (void)state;
    Buf f = {0}, back = {0};
    make_file(key_a, NULL, 0, 64, 0, &f);
    assert_int_equal(f.len, BCF_HEADER_LEN + 4 + BCF_TAG_LEN);
    assert_int_equal(f.p[BCF_HEADER_LEN], 0x80); /* final flag, length 0 */
    assert_int_equal(read_file(key_a, f.p, f.len, 0, &back, NULL, 0), 0);
    assert_int_equal(back.len, 0);
    buf_free(&f);
}

static void test_arbitrary_splits(void **state)
{
    (void)state;
    size_t len = 2600;
    uint8_t data[2600];
    fill_random(data, len, 42);
    Buf f = {0};
    make_file(key_a, data, len, 256, 0, &f);
    static const size_t steps[] = {1, 2, 3, 4, 7, 20, 111, 112, 113, 255, 256, 276, 277, 4096};
    for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
        Buf back = {0};
        assert_int_equal(read_file(key_a, f.p, f.len, steps[i], &back, NULL, 0), 0);
        assert_int_equal(back.len, len);
        assert_memory_equal(back.p, data, len);
        buf_free(&back);
    }
    /* Irregular splits. */
    uint8_t rnd[512];
    fill_random(rnd, sizeof(rnd), 9);
    BcfReader *r = bcf_reader_new(key_a, NULL, NULL);
    size_t off = 0;
    for (size_t i = 0; off < f.len; i++) {
        size_t n = (size_t)rnd[i % sizeof(rnd)] % 300;
        if (n > f.len - off)
            n = f.len - off;
        assert_int_equal(bcf_reader_update(r, f.p + off, n), 0);
        off += n;
    }
    assert_int_equal(bcf_reader_finish(r), 0);
    assert_int_equal(bcf_reader_chunks(r), 11);
    assert_true(bcf_reader_header_verified(r));
    assert_int_equal(bcf_reader_header(r)->codec, CODEC_ZSTD);
    assert_int_equal(bcf_reader_header(r)->chunk_size, 256);
    bcf_reader_free(r);
    buf_free(&f);
}

/* Where an offset of a file with `chunk`-byte chunks falls: -1 for the header, else the chunk index;
 * *part: 0 length word, 1 ciphertext, 2 tag. */
static long locate(size_t off, uint32_t chunk, size_t nchunks, size_t last_len, int *part)
{
    if (off < BCF_HEADER_LEN)
        return -1;
    size_t rel = off - BCF_HEADER_LEN, full = 4 + (size_t)chunk + BCF_TAG_LEN;
    size_t idx = rel / full;
    if (idx >= nchunks)
        idx = nchunks - 1;
    size_t in = rel - idx * full;
    size_t clen = idx == nchunks - 1 ? last_len : chunk;
    *part = in < 4 ? 0 : in < 4 + clen ? 1 : 2;
    return (long)idx;
}

/* Flip one bit at `off` and check the reader rejects the file with a message fitting the place. */
static void check_flip(const Buf *f, const uint8_t *data, size_t off, int bit, uint32_t chunk, size_t nchunks,
                       size_t last_len)
{
    uint8_t *copy = malloc(f->len);
    assert_non_null(copy);
    memcpy(copy, f->p, f->len);
    copy[off] ^= (uint8_t)(1u << bit);
    Buf back = {0};
    char msg[300];
    int rc = read_file(key_a, copy, f->len, 0, &back, msg, sizeof(msg));
    int part = 0;
    long idx = locate(off, chunk, nchunks, last_len, &part);
    char want[128];
    if (off >= 32 && off < 48) {
        /* A damaged key id cannot be told apart from a wrong key. */
        assert_int_equal(rc, DR_EKEY);
        assert_non_null(strstr(msg, "key id mismatch: file needs key "));
    } else {
        if (rc != DR_ECORRUPT)
            fail_msg("offset %zu bit %d: rc %d (%s)", off, bit, rc, msg);
        if (off < 8) {
            assert_string_equal(msg, "bad magic: not a drsupervisor backup");
        } else if (off < 10) {
            assert_non_null(strstr(msg, "unsupported format version"));
        } else if (off < 13) {
            assert_non_null(strstr(msg, "bad header"));
        } else if (idx < 0) {
            assert_string_equal(msg, "header: authentication failed (header modified)");
        } else if (part == 0) {
            /* Length word: framing check, or the final flag is bound by the AAD, or the reader waits
             * for bytes that never come. */
            snprintf(want, sizeof(want), "chunk %ld: ", idx);
            if (!strstr(msg, "truncated: stream ends inside chunk") && !strstr(msg, "data after final chunk") &&
                strncmp(msg, want, strlen(want)) != 0)
                fail_msg("offset %zu: unexpected message '%s'", off, msg);
        } else {
            snprintf(want, sizeof(want), "chunk %ld: authentication failed (data modified or wrong key)", idx);
            assert_string_equal(msg, want);
        }
    }
    /* Whatever was released is a verified prefix: whole chunks before the damage. */
    assert_true(back.len <= (idx < 0 ? 0 : (size_t)idx * chunk));
    if (back.len)
        assert_memory_equal(back.p, data, back.len);
    buf_free(&back);
    free(copy);
}

static void test_tamper_every_offset_small_file(void **state)
{
    (void)state;
    uint32_t chunk = 64;
    size_t len = 5 * 64 + 10;
    uint8_t data[5 * 64 + 10];
    fill_random(data, len, 3);
    Buf f = {0};
    make_file(key_a, data, len, chunk, 0, &f);
    assert_int_equal(f.len, expected_file_len(len, chunk));
    for (size_t off = 0; off < f.len; off++)
        for (int bit = 0; bit < 8; bit += (off < BCF_HEADER_LEN ? 3 : 1))
            check_flip(&f, data, off, bit, chunk, 6, 10);
    buf_free(&f);
}

static void test_tamper_spread_large_file(void **state)
{
    (void)state;
    uint32_t chunk = BCF_CHUNK_DEFAULT;
    size_t len = 3 * (size_t)chunk + 500000;
    uint8_t *data = malloc(len);
    assert_non_null(data);
    fill_random(data, len, 77);
    Buf f = {0};
    make_file(key_a, data, len, chunk, 0, &f);
    size_t full = 4 + chunk + BCF_TAG_LEN;
    size_t offs[64], n = 0;
    for (size_t i = 0; i < BCF_HEADER_LEN; i += 13)
        offs[n++] = i;
    for (size_t c = 0; c < 4; c++) {
        size_t base = BCF_HEADER_LEN + c * full;
        size_t clen = c == 3 ? 500000 : chunk;
        size_t rel[] = {0, 3, 4, 5, 4 + clen / 2, 4 + clen - 1, 4 + clen, 4 + clen + 15};
        for (size_t k = 0; k < sizeof(rel) / sizeof(rel[0]); k++)
            offs[n++] = base + rel[k];
    }
    assert_true(n <= sizeof(offs) / sizeof(offs[0]));
    for (size_t i = 0; i < n; i++)
        check_flip(&f, data, offs[i], (int)(i % 8), chunk, 4, 500000);
    buf_free(&f);
    free(data);
}

static void test_truncation(void **state)
{
    (void)state;
    uint32_t chunk = 100;
    uint8_t data[350];
    fill_random(data, sizeof(data), 5);
    Buf f = {0};
    make_file(key_a, data, sizeof(data), chunk, 0, &f);
    char msg[300];
    for (size_t cut = 0; cut < f.len; cut++) {
        Buf back = {0};
        int rc = read_file(key_a, f.p, cut, cut % 3 == 0 ? 0 : 7, &back, msg, sizeof(msg));
        assert_int_equal(rc, DR_ECORRUPT);
        assert_non_null(strstr(msg, "truncated: "));
        assert_true(back.len < sizeof(data));
        buf_free(&back);
    }
    assert_int_equal(read_file(key_a, f.p, 0, 0, NULL, msg, sizeof(msg)), DR_ECORRUPT);
    assert_string_equal(msg, "truncated: the file is empty");
    assert_int_equal(read_file(key_a, f.p, 50, 0, NULL, msg, sizeof(msg)), DR_ECORRUPT);
    assert_string_equal(msg, "truncated: stream ends inside the header (50 of 112 bytes)");
    assert_int_equal(read_file(key_a, f.p, BCF_HEADER_LEN, 0, NULL, msg, sizeof(msg)), DR_ECORRUPT);
    assert_string_equal(msg, "truncated: stream ends after the header without the final chunk");
    size_t full = 4 + chunk + BCF_TAG_LEN;
    assert_int_equal(read_file(key_a, f.p, BCF_HEADER_LEN + 3 * full, 0, NULL, msg, sizeof(msg)), DR_ECORRUPT);
    assert_string_equal(msg, "truncated: stream ends after chunk 2 without the final chunk");
    assert_int_equal(read_file(key_a, f.p, BCF_HEADER_LEN + full + 2, 0, NULL, msg, sizeof(msg)), DR_ECORRUPT);
    assert_string_equal(msg, "truncated: stream ends inside the length of chunk 1");
    assert_int_equal(read_file(key_a, f.p, BCF_HEADER_LEN + full + 50, 0, NULL, msg, sizeof(msg)), DR_ECORRUPT);
    assert_string_equal(msg, "truncated: stream ends inside chunk 1 (46 of 116 bytes)");
    buf_free(&f);
}

static void test_appended_data(void **state)
{
    (void)state;
    uint8_t data[300];
    fill_random(data, sizeof(data), 6);
    Buf f = {0};
    make_file(key_a, data, sizeof(data), 128, 0, &f);
    size_t orig = f.len;
    char msg[300];
    static const size_t extra[] = {1, 4, 20, 64};
    for (size_t i = 0; i < 4; i++) {
        f.len = orig;
        uint8_t junk[64] = {0};
        buf_sink(&f, junk, extra[i]);
        Buf back = {0};
        assert_int_equal(read_file(key_a, f.p, f.len, i == 0 ? 0 : 5, &back, msg, sizeof(msg)), DR_ECORRUPT);
        assert_non_null(strstr(msg, "data after final chunk"));
        buf_free(&back);
    }
    /* A second copy of the final chunk appended. */
    f.len = orig;
    size_t last = BCF_HEADER_LEN + 2 * (4 + 128 + BCF_TAG_LEN);
    uint8_t copy[4 + 44 + BCF_TAG_LEN];
    assert_int_equal(orig - last, sizeof(copy));
    memcpy(copy, f.p + last, sizeof(copy));
    buf_sink(&f, copy, sizeof(copy));
    assert_int_equal(read_file(key_a, f.p, f.len, 0, NULL, msg, sizeof(msg)), DR_ECORRUPT);
    assert_string_equal(msg, "data after final chunk: 64 unexpected byte(s) at offset 472, after chunk 2");
    buf_free(&f);
}

/* Build a file of 5 full chunks + a final one and rearrange chunks by index list. */
static void rearranged(const int *order, size_t n, const char *want)
{
    uint32_t chunk = 32;
    uint8_t data[5 * 32 + 9];
    fill_random(data, sizeof(data), 8);
    Buf f = {0}, g = {0};
    make_file(key_a, data, sizeof(data), chunk, 0, &f);
    size_t full = 4 + chunk + BCF_TAG_LEN;
    buf_sink(&g, f.p, BCF_HEADER_LEN);
    for (size_t i = 0; i < n; i++) {
        size_t start = BCF_HEADER_LEN + (size_t)order[i] * full;
        size_t len = order[i] == 5 ? f.len - start : full;
        buf_sink(&g, f.p + start, len);
    }
    char msg[300];
    Buf back = {0};
    assert_int_equal(read_file(key_a, g.p, g.len, 0, &back, msg, sizeof(msg)), DR_ECORRUPT);
    assert_string_equal(msg, want);
    buf_free(&back);
    buf_free(&f);
    buf_free(&g);
}

static void test_reordered_duplicated_dropped_chunks(void **state)
{
    (void)state;
    const int swap[] = {0, 2, 1, 3, 4, 5};
    rearranged(swap, 6, "chunk 1: authentication failed (data modified or wrong key)");
    const int dup[] = {0, 1, 1, 2, 3, 4, 5};
    rearranged(dup, 7, "chunk 2: authentication failed (data modified or wrong key)");
    const int drop[] = {0, 1, 3, 4, 5};
    rearranged(drop, 5, "chunk 2: authentication failed (data modified or wrong key)");
    const int final_early[] = {0, 5};
    rearranged(final_early, 2, "chunk 1: authentication failed (data modified or wrong key)");
    const int no_final[] = {0, 1, 2, 3, 4};
    rearranged(no_final, 5, "truncated: stream ends after chunk 4 without the final chunk");
}

static void test_chunk_spliced_from_other_file(void **state)
{
    (void)state;
    uint8_t data[200];
    fill_random(data, sizeof(data), 10);
    Buf f = {0}, g = {0};
    make_file(key_a, data, sizeof(data), 64, 0, &f);
    make_file(key_a, data, sizeof(data), 64, 0, &g); /* same key and data, other salt */
    assert_int_equal(f.len, g.len);
    assert_memory_not_equal(f.p + 48, g.p + 48, BCF_SALT_LEN);
    size_t c1 = BCF_HEADER_LEN + 4 + 64 + BCF_TAG_LEN;
    memcpy(f.p + c1, g.p + c1, 4 + 64 + BCF_TAG_LEN);
    char msg[300];
    assert_int_equal(read_file(key_a, f.p, f.len, 0, NULL, msg, sizeof(msg)), DR_ECORRUPT);
    assert_string_equal(msg, "chunk 1: authentication failed (data modified or wrong key)");
    buf_free(&f);
    buf_free(&g);
}

static void test_wrong_key(void **state)
{
    (void)state;
    uint8_t data[100] = {0};
    Buf f = {0}, back = {0};
    make_file(key_a, data, sizeof(data), 0, 0, &f);
    uint8_t ida[BCF_KEY_ID_LEN], idb[BCF_KEY_ID_LEN];
    char ha[33], hb[33], want[200];
    bcf_key_id(key_a, ida);
    bcf_key_id(key_b, idb);
    snprintf(want, sizeof(want), "key id mismatch: file needs key %s, given key %s", bcf_hex(ida, 16, ha),
             bcf_hex(idb, 16, hb));
    BcfReader *r = bcf_reader_new(key_b, buf_sink, &back);
    assert_int_equal(bcf_reader_update(r, f.p, f.len), DR_EKEY);
    assert_string_equal(bcf_reader_errmsg(r), want);
    assert_non_null(bcf_reader_header(r));
    assert_false(bcf_reader_header_verified(r));
    assert_memory_equal(bcf_reader_header(r)->key_id, ida, 16);
    assert_int_equal(bcf_reader_finish(r), DR_EKEY);
    assert_int_equal(back.len, 0);
    bcf_reader_free(r);
    buf_free(&f);
}

static void test_bad_magic(void **state)
{
    (void)state;
    char msg[300];
    const char *pgdump = "PGDMP\x01\x0e\x00 this is a plain custom-format dump, not encrypted";
    assert_int_equal(read_file(key_a, (const uint8_t *)pgdump, strlen(pgdump), 1, NULL, msg, sizeof(msg)),
                     DR_ECORRUPT);
    assert_string_equal(msg, "bad magic: not a drsupervisor backup");
    assert_int_equal(read_file(key_a, (const uint8_t *)"DRS", 3, 0, NULL, msg, sizeof(msg)), DR_ECORRUPT);
    assert_non_null(strstr(msg, "truncated: stream ends inside the header"));
}

static void test_key_id_and_hex(void **state)
{
    (void)state;
    uint8_t id1[16], id2[16];
    bcf_key_id(key_a, id1);
    bcf_key_id(key_a, id2);
    assert_memory_equal(id1, id2, 16);
    bcf_key_id(key_b, id2);
    assert_memory_not_equal(id1, id2, 16);
    char hex[9];
    const uint8_t b[4] = {0x00, 0xab, 0x10, 0xff};
    assert_string_equal(bcf_hex(b, 4, hex), "00ab10ff");
}

static void test_writer_state_and_args(void **state)
{
    (void)state;
    Buf f = {0};
    assert_null(bcf_writer_new(key_a, CODEC_ZSTD, BCF_CHUNK_MAX + 1, buf_sink, &f));
    assert_null(bcf_writer_new(key_a, (CodecKind)9, 0, buf_sink, &f));
    assert_null(bcf_writer_new(key_a, CODEC_ZSTD, 0, NULL, NULL));
    BcfWriter *w = bcf_writer_new(key_a, CODEC_GZIP, 0, buf_sink, &f);
    assert_non_null(w);
    assert_int_equal(bcf_writer_header(w)->chunk_size, BCF_CHUNK_DEFAULT);
    assert_int_equal(bcf_writer_header(w)->codec, CODEC_GZIP);
    assert_int_equal(bcf_writer_set_created_at(w, 1234), 0);
    assert_int_equal(f.len, 0); /* nothing before the first write */
    assert_int_equal(bcf_writer_write(w, "x", 1), 0);
    assert_int_equal(f.len, BCF_HEADER_LEN);
    uint8_t salt[BCF_SALT_LEN] = {0};
    assert_int_equal(bcf_writer_set_salt_for_test(w, salt), DR_ESTATE);
    assert_int_equal(bcf_writer_set_created_at(w, 1), DR_ESTATE);
    assert_int_equal(bcf_writer_finish(w), 0);
    assert_int_equal(bcf_writer_write(w, "x", 1), DR_ESTATE);
    assert_int_equal(bcf_writer_finish(w), DR_ESTATE);
    bcf_writer_free(w);
    bcf_writer_free(NULL);
    bcf_reader_free(NULL);

    BcfReader *r = bcf_reader_new(key_a, NULL, NULL);
    assert_int_equal(bcf_reader_update(r, f.p, f.len), 0);
    assert_int_equal(bcf_reader_finish(r), 0);
    assert_int_equal(bcf_reader_header(r)->created_at, 1234);
    assert_int_equal(bcf_reader_header(r)->codec, CODEC_GZIP);
    bcf_reader_free(r);
    buf_free(&f);
}

static void test_sink_errors(void **state)
{
    (void)state;
    uint8_t data[1000] = {0};
    Buf f = {.fail_at = 3};
    BcfWriter *w = bcf_writer_new(key_a, CODEC_NONE, 100, buf_sink, &f);
    assert_int_equal(bcf_writer_write(w, data, sizeof(data)), -EIO);
    assert_non_null(strstr(bcf_writer_errmsg(w), "sink"));
    assert_int_equal(bcf_writer_finish(w), DR_ESTATE);
    bcf_writer_free(w);
    buf_free(&f);

    make_file(key_a, data, sizeof(data), 100, 0, &f);
    Buf out = {.fail_at = 2};
    char msg[300];
    assert_int_equal(read_file(key_a, f.p, f.len, 0, &out, msg, sizeof(msg)), -EIO);
    assert_non_null(strstr(msg, "plaintext sink failed"));
    buf_free(&out);
    buf_free(&f);
}

/* ---- key files ---- */

static char tmpdir[64];

static void write_key_file(const char *name, const void *content, size_t len, mode_t mode, char *path)
{
    snprintf(path, 128, "%s/%s", tmpdir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, content, len), (ssize_t)len);
    close(fd);
    assert_int_equal(chmod(path, mode), 0);
}

static void expect_key_error(const char *path, const char *fragment)
{
    uint8_t key[32];
    memset(key, 0xee, sizeof(key));
    char err[300] = "";
    assert_int_equal(bcf_load_key_file(path, key, err, sizeof(err)), DR_EKEY);
    if (!strstr(err, fragment) || !strstr(err, path))
        fail_msg("key error '%s' lacks '%s' or the path", err, fragment);
    for (size_t i = 0; i < 32; i++)
        assert_int_equal(key[i], 0xee); /* untouched */
    char hex[65];
    assert_null(strstr(err, bcf_hex(key_a, 32, hex)));
    assert_null(strstr(err, "603deb"));
}

static void test_key_files(void **state)
{
    (void)state;
    snprintf(tmpdir, sizeof(tmpdir), "/tmp/test_bcf.XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    char path[128], hex[65], content[80];
    uint8_t key[32];
    char err[300];

    write_key_file("raw", key_a, 32, 0600, path);
    assert_int_equal(bcf_load_key_file(path, key, err, sizeof(err)), 0);
    assert_memory_equal(key, key_a, 32);
    unlink(path);

    write_key_file("ro", key_a, 32, 0400, path);
    memset(key, 0, 32);
    assert_int_equal(bcf_load_key_file(path, key, err, sizeof(err)), 0);
    assert_memory_equal(key, key_a, 32);
    unlink(path);

    bcf_hex(key_a, 32, hex);
    snprintf(content, sizeof(content), "%s\n", hex);
    write_key_file("hexnl", content, 65, 0600, path);
    memset(key, 0, 32);
    assert_int_equal(bcf_load_key_file(path, key, err, sizeof(err)), 0);
    assert_memory_equal(key, key_a, 32);
    unlink(path);

    for (size_t i = 0; i < 64; i++)
        content[i] = (char)(content[i] >= 'a' ? content[i] - 32 : content[i]); /* upper case */
    write_key_file("hexup", content, 64, 0600, path);
    memset(key, 0, 32);
    assert_int_equal(bcf_load_key_file(path, key, err, sizeof(err)), 0);
    assert_memory_equal(key, key_a, 32);
    unlink(path);

    write_key_file("open", key_a, 32, 0644, path);
    expect_key_error(path, "mode 0644 is too open");
    unlink(path);
    write_key_file("group", key_a, 32, 0640, path);
    expect_key_error(path, "too open");
    unlink(path);

    write_key_file("short", key_a, 31, 0600, path);
    expect_key_error(path, "wrong length 31 bytes");
    unlink(path);
    write_key_file("rawnl", "0123456789abcdef0123456789abcdef\n", 33, 0600, path);
    expect_key_error(path, "wrong length 33 bytes");
    unlink(path);
    memcpy(content, hex, 64);
    content[10] = 'g';
    write_key_file("badhex", content, 64, 0600, path);
    expect_key_error(path, "not all hex digits");
    unlink(path);
    uint8_t big[100] = {0};
    write_key_file("long", big, sizeof(big), 0600, path);
    expect_key_error(path, "wrong length at least 80 bytes");
    unlink(path);

    snprintf(path, sizeof(path), "%s/missing", tmpdir);
    expect_key_error(path, "cannot open");
    expect_key_error(tmpdir, "not a regular file");
    /* a FIFO (no writer) or a device is refused at once, never read or waited on */
    snprintf(path, sizeof(path), "%s/fifo", tmpdir);
    assert_int_equal(mkfifo(path, 0600), 0);
    expect_key_error(path, "not a regular file");
    unlink(path);
    expect_key_error("/dev/zero", "not a regular file");

    /* Ownership: only root can make a file owned by someone else. As non-root this case is skipped;
     * the check is a plain st_uid != geteuid() comparison. */
    if (geteuid() == 0) {
        write_key_file("notmine", key_a, 32, 0600, path);
        assert_int_equal(chown(path, 65534, 65534), 0);
        expect_key_error(path, "owned by uid 65534");
        unlink(path);
    }
    assert_int_equal(rmdir(tmpdir), 0);
}

/* ---- test vector (docs/backup-format.md, "Test vector") ---- */

static const char vector_hex[] =
    "4452535550424b3100010070010000000000001000000000000000006553f100"
    "e6f89a6762df671a85ccc5e679fbeb91a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
    "b0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
    "4b56bf8d6f5f02d15f7a3fe8d373cd4f35c8afd6faaceef57946b12728144ecf"
    "0000001063601f7481db38b3b662c5eb4f192729ca1493839fe64ef5b6affe1cde74a958"
    "0000001074fe34109015412db3e428c9e3077d41b1853c1d542eb94bed87e557176db1e4"
    "8000000b6970cae932f90a4aac3565a10640c4d07ae815b7ec0d15a6c36511";

static void make_vector(Buf *f)
{
    uint8_t key[32], salt[32];
    for (int i = 0; i < 32; i++) {
        key[i] = (uint8_t)i;
        salt[i] = (uint8_t)(0xa0 + i);
    }
    BcfWriter *w = bcf_writer_new(key, CODEC_NONE, 16, buf_sink, f);
    assert_int_equal(bcf_writer_set_salt_for_test(w, salt), 0);
    assert_int_equal(bcf_writer_set_created_at(w, 1700000000), 0);
    const char *pt = "The quick brown fox jumps over the lazy dog";
    assert_int_equal(bcf_writer_write(w, pt, strlen(pt)), 0);
    assert_int_equal(bcf_writer_finish(w), 0);
    bcf_writer_free(w);
}

static void test_vector(void **state)
{
    (void)state;
    Buf f = {0};
    make_vector(&f);
    char *hex = malloc(2 * f.len + 1);
    bcf_hex(f.p, f.len, hex);
    if (getenv("BCF_PRINT_VECTOR"))
        printf("%s\n", hex);
    assert_string_equal(hex, vector_hex);
    free(hex);
    uint8_t key[32], id[16];
    for (int i = 0; i < 32; i++)
        key[i] = (uint8_t)i;
    bcf_key_id(key, id);
    char idhex[33];
    if (getenv("BCF_PRINT_VECTOR"))
        printf("%s\n", bcf_hex(id, 16, idhex));
    assert_string_equal(bcf_hex(id, 16, idhex), "e6f89a6762df671a85ccc5e679fbeb91");
    Buf back = {0};
    assert_int_equal(read_file(key, f.p, f.len, 1, &back, NULL, 0), 0);
    assert_int_equal(back.len, 43);
    assert_memory_equal(back.p, "The quick brown fox jumps over the lazy dog", 43);
    buf_free(&back);
    buf_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_sizes),
        cmocka_unit_test(test_empty_stream_has_final_chunk),
        cmocka_unit_test(test_arbitrary_splits),
        cmocka_unit_test(test_tamper_every_offset_small_file),
        cmocka_unit_test(test_tamper_spread_large_file),
        cmocka_unit_test(test_truncation),
        cmocka_unit_test(test_appended_data),
        cmocka_unit_test(test_reordered_duplicated_dropped_chunks),
        cmocka_unit_test(test_chunk_spliced_from_other_file),
        cmocka_unit_test(test_wrong_key),
        cmocka_unit_test(test_bad_magic),
        cmocka_unit_test(test_key_id_and_hex),
        cmocka_unit_test(test_writer_state_and_args),
        cmocka_unit_test(test_sink_errors),
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_vector),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
