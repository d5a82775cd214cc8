/*
 * Unit tests for lib/backupstream: both pipelines for every codec, statistics and the file SHA-256,
 * raw (no decompression) reading, errors from each stage with their messages, and file names.
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

#include <openssl/evp.h>

#include "backupstream.h"
#include "err.h"

typedef struct Buf {
    uint8_t *p;
    size_t len, cap;
    int fail_at;
    int calls;
} Buf;

static int buf_sink(void *ctx, const uint8_t *data, size_t len)
{
    Buf *b = ctx;
    if (b->fail_at && ++b->calls >= b->fail_at)
        return -ENOSPC;
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

static const uint8_t key[BCF_KEY_LEN] = {9, 8, 7, 6, 5, 4, 3, 2, 1};

static void fill_dumpish(uint8_t *p, size_t n, uint32_t seed)
{
    static const char words[] = "COPY public.trades (id, sym, px) FROM stdin;\n42\tAAPL\t100.25\n";
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        p[i] = (x & 3) ? (uint8_t)words[i % (sizeof(words) - 1)] : (uint8_t)x;
    }
}

static void encode(CodecKind codec, const uint8_t *data, size_t len, uint32_t chunk, Buf *file,
                   BackupStreamStats *st)
{
    BackupStreamWriter *w = backupstream_writer_new(key, codec, CODEC_LEVEL_DEFAULT, chunk, buf_sink, file);
    assert_non_null(w);
    for (size_t off = 0; off < len; off += 70001)
        assert_int_equal(backupstream_writer_write(w, data + off, len - off < 70001 ? len - off : 70001), 0);
    assert_int_equal(backupstream_writer_finish(w, st), 0);
    backupstream_writer_free(w);
}

static int decode(const Buf *file, bool decompress, size_t step, Buf *out, BackupStreamStats *st, char *msg,
                  size_t msglen)
{
    BackupStreamReader *r = backupstream_reader_new(key, decompress, out ? buf_sink : NULL, out);
    assert_non_null(r);
    int rc = 0;
    for (size_t off = 0; rc == 0 && off < file->len; off += step) {
        size_t n = file->len - off < step ? file->len - off : step;
        rc = backupstream_reader_update(r, file->p + off, n);
    }
    int rc2 = backupstream_reader_finish(r, st);
    if (rc == 0)
        rc = rc2;
    if (msg)
        snprintf(msg, msglen, "%s", backupstream_reader_errmsg(r));
    backupstream_reader_free(r);
    return rc;
}

static void test_round_trip_all_codecs(void **state)
{
    (void)state;
    static const size_t sizes[] = {0, 1, 5000, (3u << 20) + 17};
    for (CodecKind k = CODEC_NONE; k <= CODEC_GZIP; k++) {
        for (size_t s = 0; s < 4; s++) {
            size_t len = sizes[s];
            uint8_t *data = malloc(len + 1);
            fill_dumpish(data, len, (uint32_t)len);
            Buf file = {0}, out = {0}, raw = {0};
            BackupStreamStats ws, rs, raws;
            encode(k, data, len, s == 3 ? 0 : 1024, &file, &ws);
            assert_int_equal(ws.plain_bytes, len);
            assert_int_equal(ws.file_bytes, file.len);
            assert_int_equal(file.len, BCF_HEADER_LEN + ws.chunks * 20 + ws.payload_bytes);
            /* Compression happened: this data is 25 % random bytes; zstd 1 (the default) leaves 56 %,
             * zstd 3 49 %, gzip 6 about 50 %. */
            if (k != CODEC_NONE && len > 5000)
                assert_true(ws.payload_bytes < len * 2 / 3);
            uint8_t md[32];
            EVP_Digest(file.p, file.len, md, NULL, EVP_sha256(), NULL);
            assert_memory_equal(ws.file_sha256, md, 32);
            char hex[65];
            assert_string_equal(ws.file_sha256_hex, bcf_hex(md, 32, hex));

            assert_int_equal(decode(&file, true, 4099, &out, &rs, NULL, 0), 0);
            assert_int_equal(out.len, len);
            if (len)
                assert_memory_equal(out.p, data, len);
            assert_int_equal(rs.plain_bytes, len);
            assert_int_equal(rs.payload_bytes, ws.payload_bytes);
            assert_int_equal(rs.file_bytes, file.len);
            assert_int_equal(rs.chunks, ws.chunks);
            assert_memory_equal(rs.file_sha256, md, 32);

            /* Raw: the compressed payload, which the codec alone turns back into the dump. */
            assert_int_equal(decode(&file, false, 1u << 20, &raw, &raws, NULL, 0), 0);
            assert_int_equal(raw.len, ws.payload_bytes);
            Codec *c = codec_new(k, CODEC_LEVEL_DEFAULT, true);
            Buf again = {0};
            assert_int_equal(codec_update(c, raw.p, raw.len, buf_sink, &again), 0);
            assert_int_equal(codec_finish(c, buf_sink, &again), 0);
            assert_int_equal(again.len, len);
            if (len)
                assert_memory_equal(again.p, data, len);
            codec_free(c);

            /* Verification only. */
            assert_int_equal(decode(&file, true, 1u << 16, NULL, NULL, NULL, 0), 0);
            free(again.p);
            free(raw.p);
            free(out.p);
            free(file.p);
            free(data);
        }
    }
}

static void test_reader_errors_name_the_stage(void **state)
{
    (void)state;
    uint8_t data[20000];
    fill_dumpish(data, sizeof(data), 1);
    Buf file = {0};
    encode(CODEC_ZSTD, data, sizeof(data), 4096, &file, NULL);
    char msg[300];
    BackupStreamStats st;

    file.p[file.len - 3] ^= 1; /* last tag */
    Buf out = {0};
    assert_int_equal(decode(&file, true, 1000, &out, &st, msg, sizeof(msg)), DR_ECORRUPT);
    assert_non_null(strstr(msg, ": authentication failed (data modified or wrong key)"));
    assert_int_equal(st.file_bytes, file.len);
    free(out.p);
    file.p[file.len - 3] ^= 1;

    size_t full = file.len;
    file.len -= 30;
    assert_int_equal(decode(&file, true, 1000, NULL, NULL, msg, sizeof(msg)), DR_ECORRUPT);
    assert_non_null(strstr(msg, "truncated: "));
    file.len = full;

    BackupStreamReader *r = backupstream_reader_new((const uint8_t[32]){0}, true, NULL, NULL);
    assert_int_equal(backupstream_reader_update(r, file.p, file.len), DR_EKEY);
    assert_non_null(strstr(backupstream_reader_errmsg(r), "key id mismatch"));
    assert_int_equal(backupstream_reader_header(r)->codec, CODEC_ZSTD);
    backupstream_reader_free(r);

    Buf fail = {.fail_at = 1};
    assert_int_equal(decode(&file, true, 1000, &fail, NULL, msg, sizeof(msg)), -ENOSPC);
    assert_non_null(strstr(msg, "decompress: zstd: output sink failed"));
    free(file.p);
}

/* A file whose encryption is fine but whose payload is not valid for its codec. */
static void test_bad_payload(void **state)
{
    (void)state;
    char msg[300];
    for (CodecKind k = CODEC_ZSTD; k <= CODEC_GZIP; k++) {
        for (int empty = 0; empty < 2; empty++) {
            Buf file = {0};
            BcfWriter *w = bcf_writer_new(key, k, 0, buf_sink, &file);
            if (!empty)
                assert_int_equal(bcf_writer_write(w, "definitely not compressed data", 30), 0);
            assert_int_equal(bcf_writer_finish(w), 0);
            bcf_writer_free(w);
            assert_int_equal(decode(&file, true, 7, NULL, NULL, msg, sizeof(msg)), DR_ECORRUPT);
            if (empty)
                assert_non_null(strstr(msg, "truncated input: the stream is empty"));
            else
                assert_non_null(strstr(msg, "corrupt input"));
            assert_non_null(strstr(msg, "decompress: "));
            assert_non_null(strstr(msg, codec_name(k)));
            /* Raw mode does not look inside. */
            assert_int_equal(decode(&file, false, 7, NULL, NULL, msg, sizeof(msg)), 0);
            free(file.p);
        }
    }
}

static void test_writer_errors(void **state)
{
    (void)state;
    uint8_t data[300000];
    fill_dumpish(data, sizeof(data), 2);
    Buf file = {.fail_at = 2};
    BackupStreamWriter *w = backupstream_writer_new(key, CODEC_NONE, CODEC_LEVEL_DEFAULT, 4096, buf_sink, &file);
    int rc = backupstream_writer_write(w, data, sizeof(data));
    assert_int_equal(rc, -ENOSPC);
    assert_string_equal(backupstream_writer_errmsg(w), "write: No space left on device");
    backupstream_writer_free(w);
    free(file.p);

    assert_null(backupstream_writer_new(key, CODEC_GZIP, 42, 0, buf_sink, &file));
    assert_null(backupstream_writer_new(key, CODEC_GZIP, 0, BCF_CHUNK_MAX + 1, buf_sink, &file));
    assert_null(backupstream_writer_new(key, CODEC_GZIP, 0, 0, NULL, NULL));
    backupstream_writer_free(NULL);
    backupstream_reader_free(NULL);
}

static void test_created_at_through_pipeline(void **state)
{
    (void)state;
    Buf file = {0};
    BackupStreamWriter *w = backupstream_writer_new(key, CODEC_GZIP, 9, 0, buf_sink, &file);
    assert_int_equal(bcf_writer_set_created_at(backupstream_writer_bcf(w), 1700000000), 0);
    assert_int_equal(backupstream_writer_write(w, "abc", 3), 0);
    assert_int_equal(backupstream_writer_finish(w, NULL), 0);
    backupstream_writer_free(w);
    BackupStreamReader *r = backupstream_reader_new(key, true, NULL, NULL);
    assert_int_equal(backupstream_reader_update(r, file.p, file.len), 0);
    assert_int_equal(backupstream_reader_finish(r, NULL), 0);
    assert_int_equal(backupstream_reader_header(r)->created_at, 1700000000);
    assert_int_equal(backupstream_reader_header(r)->codec, CODEC_GZIP);
    backupstream_reader_free(r);
    free(file.p);
}

static void test_file_names(void **state)
{
    (void)state;
    char name[128];
    assert_int_equal(backupstream_file_name("trading", 1700000000, CODEC_ZSTD, name, sizeof(name)), 0);
    assert_string_equal(name, "trading_backup_20231114_221320.dump.zst.drbk");
    assert_int_equal(backupstream_file_name("trading", 1700000000, CODEC_GZIP, name, sizeof(name)), 0);
    assert_string_equal(name, "trading_backup_20231114_221320.dump.gz.drbk");
    assert_int_equal(backupstream_file_name("t", 0, CODEC_NONE, name, sizeof(name)), 0);
    assert_string_equal(name, "t_backup_19700101_000000.dump.drbk");
    assert_int_equal(backupstream_file_name("a/b", 0, CODEC_NONE, name, sizeof(name)), -EINVAL);
    assert_int_equal(backupstream_file_name("", 0, CODEC_NONE, name, sizeof(name)), -EINVAL);
    assert_int_equal(backupstream_file_name("trading", 0, CODEC_ZSTD, name, 20), -ENAMETOOLONG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_all_codecs),
        cmocka_unit_test(test_reader_errors_name_the_stage),
        cmocka_unit_test(test_bad_payload),
        cmocka_unit_test(test_writer_errors),
        cmocka_unit_test(test_created_at_through_pipeline),
        cmocka_unit_test(test_file_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
