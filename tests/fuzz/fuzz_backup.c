/*
 * fuzz_backup: libFuzzer harness for the backup file reader (lib/backupstream over lib/bcf and
 * lib/codec).
 *
 * Owns nothing but the checks. The first byte picks the mode and the split of the input into
 * pieces (the reader must not care how bytes arrive):
 *   bit 0 clear: the rest is a backup file from anywhere, read with a fixed key and decompressed;
 *                it must be refused cleanly (or verify, when the fuzzer found the seed container).
 *   bit 0 set:   tampering. A small valid container is built here with the fixed key (fixed salt
 *                and time, 64-byte chunks, so several chunks; codec none, zstd or gzip from bits
 *                1-2) and the rest of the input is a list of edits applied to it: flip a byte,
 *                cut the file, insert bytes, delete a range, copy a range over another. A file
 *                that differs from the original must be refused: the harness aborts if a
 *                tampered file ever verifies, or if the untouched one does not, or if the
 *                plaintext released before the refusal is not a prefix of the original.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backupstream.h"
#include "bytebuf.h"
#include "err.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_BACKUP_CHUNK 64u
#define FUZZ_BACKUP_MAX (1u << 20)

typedef ByteBuf FuzzBuf;

static const uint8_t fuzz_backup_key[BCF_KEY_LEN] = {
    0x5a, 0x17, 0xc3, 0x08, 0x91, 0x2e, 0x44, 0xbd, 0x70, 0x0f, 0xe2, 0x39, 0x86, 0x6b, 0xd4, 0x21,
    0x9c, 0x53, 0x3a, 0xf7, 0x12, 0xa8, 0x65, 0xce, 0x0b, 0x7e, 0xd9, 0x44, 0xb1, 0x26, 0x8f, 0x60,
};
static const uint8_t fuzz_backup_salt[BCF_SALT_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static int fuzz_backup_sink(void *ctx, const uint8_t *data, size_t len)
{
    FuzzBuf *b = ctx;
    if (b->len + len > FUZZ_BACKUP_MAX)
        return -EFBIG; /* keep a decompression bomb from eating the run's memory */
    return bytebuf_append(b, data, len);
}

/* The plaintext of the built container: text-like, compressible, a few chunks once compressed. */
static void fuzz_backup_plain(FuzzBuf *out)
{
    char line[64];
    for (int i = 0; i < 40; i++) {
        int n = snprintf(line, sizeof(line), "COPY public.t (id, v) FROM stdin; -- row %d\n", i * 7919 % 1000);
        if (fuzz_backup_sink(out, (const uint8_t *)line, (size_t)n) < 0)
            abort();
    }
}

static const FuzzBuf *fuzz_backup_container(CodecKind codec, const FuzzBuf **ret_plain)
{
    static FuzzBuf files[3], plain;
    FuzzBuf *f = &files[codec];

    if (!plain.len)
        fuzz_backup_plain(&plain);
    if (!f->len) {
        BackupStreamWriter *w =
            backupstream_writer_new(fuzz_backup_key, codec, CODEC_LEVEL_DEFAULT, FUZZ_BACKUP_CHUNK, fuzz_backup_sink, f);
        if (!w || bcf_writer_set_salt_for_test(backupstream_writer_bcf(w), fuzz_backup_salt) != 0 ||
            bcf_writer_set_created_at(backupstream_writer_bcf(w), 1767225600) != 0 ||
            backupstream_writer_write(w, plain.p, plain.len) != 0 || backupstream_writer_finish(w, NULL) != 0)
            abort();
        backupstream_writer_free(w);
    }
    *ret_plain = &plain;
    return f;
}

/* Read `file` in pieces whose sizes come from `seed`; the reader's verdict, plaintext in `out`. */
static int fuzz_backup_read(const uint8_t *file, size_t len, uint32_t seed, FuzzBuf *out)
{
    BackupStreamReader *r = backupstream_reader_new(fuzz_backup_key, true, fuzz_backup_sink, out);
    BackupStreamStats st;
    int rc = 0;

    if (!r)
        abort();
    for (size_t off = 0; off < len && rc == 0;) {
        size_t step = len - off;
        if (seed) {
            seed = seed * 1103515245u + 12345u;
            step = 1 + (seed >> 16) % 97;
            if (step > len - off)
                step = len - off;
        }
        rc = backupstream_reader_update(r, file + off, step);
        off += step;
    }
    int fin = backupstream_reader_finish(r, &st);
    if (rc == 0)
        rc = fin;
    if (rc == 0 && (fin != 0 || st.file_bytes != len))
        abort();
    if (rc != 0 && !backupstream_reader_errmsg(r)[0])
        abort(); /* a refusal always says why */
    backupstream_reader_free(r);
    return rc;
}

/* Apply edits from `ops` (3 to 4 bytes each) to a copy of the original. */
static void fuzz_backup_tamper(const uint8_t *ops, size_t n_ops, FuzzBuf *f)
{
    for (size_t i = 0; i + 3 <= n_ops; i += 3) {
        size_t at = f->len ? ((size_t)ops[i + 1] << 8 | ops[i + 2]) % (f->len + 1) : 0;
        switch (ops[i] % 5) {
        case 0: /* flip bits of one byte */
            if (at < f->len)
                f->p[at] ^= (uint8_t)(ops[i] | 1);
            break;
        case 1: /* cut the file */
            f->len = at;
            break;
        case 2: /* insert a byte */
            if (fuzz_backup_sink(f, (const uint8_t *)"", 1) < 0)
                abort();
            memmove(f->p + at + 1, f->p + at, f->len - 1 - at);
            f->p[at] = ops[i];
            break;
        case 3: { /* delete up to 255 bytes */
            size_t n = i + 3 < n_ops ? ops[i + 3] : 1;
            if (n > f->len - at)
                n = f->len - at;
            memmove(f->p + at, f->p + at + n, f->len - at - n);
            f->len -= n;
            i++;
            break;
        }
        default: { /* copy a range over another (duplicated or swapped chunks) */
            size_t from = i + 3 < n_ops ? (size_t)ops[i + 3] * FUZZ_BACKUP_CHUNK / 4 % (f->len + 1) : 0;
            size_t n = FUZZ_BACKUP_CHUNK + BCF_TAG_LEN + 8;
            if (n > f->len - at)
                n = f->len - at;
            if (n > f->len - from)
                n = f->len - from;
            memmove(f->p + at, f->p + from, n);
            i++;
            break;
        }
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    FuzzBuf out = {0};

    if (size < 1)
        return -1;
    uint32_t seed = data[0] >> 3; /* 0: one piece */
    if (!(data[0] & 1)) {
        fuzz_backup_read(data + 1, size - 1, seed, &out);
        free(out.p);
        return 0;
    }

    const FuzzBuf *plain;
    const FuzzBuf *orig = fuzz_backup_container((CodecKind)(data[0] >> 1 & 3) % 3, &plain);
    FuzzBuf f = {0};
    if (fuzz_backup_sink(&f, orig->p, orig->len) < 0)
        abort();
    fuzz_backup_tamper(data + 1, size - 1, &f);
    bool same = f.len == orig->len && memcmp(f.p, orig->p, f.len) == 0;
    int rc = fuzz_backup_read(f.p, f.len, seed, &out);
    if (same ? rc != 0 : rc == 0)
        abort(); /* a tampered file verified, or the original did not */
    /* What was released before the refusal is a prefix of the original plaintext. */
    if (out.len > plain->len || (out.len && memcmp(out.p, plain->p, out.len) != 0))
        abort();
    if (same && out.len != plain->len)
        abort();
    free(f.p);
    free(out.p);
    return 0;
}
