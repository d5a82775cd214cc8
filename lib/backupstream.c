/*
 * backupstream: pg_dump -> codec -> bcf -> file, and back (see backupstream.h).
 *
 * Each pipeline owns its Codec, its bcf writer or reader, and a SHA-256 context over the file bytes.
 */
#include "backupstream.h"

#include "err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

struct BackupStreamWriter {
    Codec *codec;
    BcfWriter *bcf;
    EVP_MD_CTX *md;
    BcfSinkFn sink;
    void *ctx;
    uint64_t file_bytes;
    bool sink_failed;
    char errmsg[300];
};

struct BackupStreamReader {
    Codec *codec; /* created when the header is known, if decompressing */
    bool decompress;
    BcfReader *bcf;
    EVP_MD_CTX *md;
    BcfSinkFn sink;
    void *ctx;
    uint64_t payload_bytes;
    bool codec_failed; /* the error came from the decompressor, not bcf */
    char errmsg[300];
};

__attribute__((format(printf, 3, 4))) static void backupstream_msg(char *buf, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, len, fmt, ap);
    va_end(ap);
}

static void backupstream_digest(EVP_MD_CTX *md, BackupStreamStats *st)
{
    unsigned int n = 0;
    EVP_DigestFinal_ex(md, st->file_sha256, &n);
    bcf_hex(st->file_sha256, sizeof(st->file_sha256), st->file_sha256_hex);
}

/* ---- writer ---- */

/* bcf output: hash and count the file bytes, then pass them on. */
static int backupstream_on_file_bytes(void *ctx, const uint8_t *data, size_t len)
{
    BackupStreamWriter *w = ctx;
    if (EVP_DigestUpdate(w->md, data, len) != 1)
        return DR_EINTERNAL;
    w->file_bytes += len;
    int r = w->sink(w->ctx, data, len);
    if (r != 0)
        w->sink_failed = true;
    return r;
}

/* codec output: encrypt it. */
static int backupstream_on_compressed(void *ctx, const uint8_t *data, size_t len)
{
    BackupStreamWriter *w = ctx;
    return bcf_writer_write(w->bcf, data, len);
}

BackupStreamWriter *backupstream_writer_new(const uint8_t key[BCF_KEY_LEN], CodecKind codec, int level,
                                            uint32_t chunk_size, BcfSinkFn file_sink, void *ctx)
{
    if (!file_sink)
        return NULL;
    BackupStreamWriter *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->sink = file_sink;
    w->ctx = ctx;
    w->codec = codec_new(codec, level, false);
    w->bcf = bcf_writer_new(key, codec, chunk_size, backupstream_on_file_bytes, w);
    w->md = EVP_MD_CTX_new();
    if (!w->codec || !w->bcf || !w->md || EVP_DigestInit_ex(w->md, EVP_sha256(), NULL) != 1) {
        backupstream_writer_free(w);
        return NULL;
    }
    return w;
}

BcfWriter *backupstream_writer_bcf(BackupStreamWriter *w)
{
    return w->bcf;
}

/* Name the stage that failed: the file sink, the encryption layer, or the compressor. */
static int backupstream_writer_fail(BackupStreamWriter *w, int r)
{
    if (w->sink_failed)
        backupstream_msg(w->errmsg, sizeof(w->errmsg), "write: %s", err_str(r));
    else if (bcf_writer_errmsg(w->bcf)[0])
        backupstream_msg(w->errmsg, sizeof(w->errmsg), "encrypt: %s", bcf_writer_errmsg(w->bcf));
    else
        backupstream_msg(w->errmsg, sizeof(w->errmsg), "compress: %s",
                         codec_errmsg(w->codec)[0] ? codec_errmsg(w->codec) : err_str(r));
    return r;
}

int backupstream_writer_write(BackupStreamWriter *w, const void *data, size_t len)
{
    int r = codec_update(w->codec, data, len, backupstream_on_compressed, w);
    return r ? backupstream_writer_fail(w, r) : 0;
}

int backupstream_writer_finish(BackupStreamWriter *w, BackupStreamStats *ret_stats)
{
    int r = codec_finish(w->codec, backupstream_on_compressed, w);
    if (r == 0)
        r = bcf_writer_finish(w->bcf);
    if (r != 0)
        return backupstream_writer_fail(w, r);
    if (ret_stats) {
        memset(ret_stats, 0, sizeof(*ret_stats));
        ret_stats->plain_bytes = codec_bytes_in(w->codec);
        ret_stats->payload_bytes = codec_bytes_out(w->codec);
        ret_stats->file_bytes = w->file_bytes;
        uint32_t cs = bcf_writer_header(w->bcf)->chunk_size;
        ret_stats->chunks = ret_stats->payload_bytes / cs + (ret_stats->payload_bytes % cs ? 1 : 0);
        if (ret_stats->chunks == 0)
            ret_stats->chunks = 1;
        backupstream_digest(w->md, ret_stats);
    }
    return 0;
}

const char *backupstream_writer_errmsg(const BackupStreamWriter *w)
{
    return w->errmsg;
}

void backupstream_writer_free(BackupStreamWriter *w)
{
    if (!w)
        return;
    codec_free(w->codec);
    bcf_writer_free(w->bcf);
    EVP_MD_CTX_free(w->md);
    free(w);
}

/* ---- reader ---- */

static int backupstream_ensure_codec(BackupStreamReader *r)
{
    if (r->codec || !r->decompress)
        return 0;
    const BcfHeader *h = bcf_reader_header(r->bcf);
    if (!h)
        return DR_EINTERNAL;
    r->codec = codec_new(h->codec, CODEC_LEVEL_DEFAULT, true);
    if (!r->codec) {
        r->codec_failed = true;
        backupstream_msg(r->errmsg, sizeof(r->errmsg), "decompress: cannot set up codec %s", codec_name(h->codec));
        return -ENOMEM;
    }
    return 0;
}

/* Verified plaintext from bcf: decompress it, or pass it through. */
static int backupstream_on_plain(void *ctx, const uint8_t *data, size_t len)
{
    BackupStreamReader *r = ctx;
    r->payload_bytes += len;
    int rc = backupstream_ensure_codec(r);
    if (rc)
        return rc;
    if (!r->decompress)
        return r->sink ? r->sink(r->ctx, data, len) : 0;
    rc = codec_update(r->codec, data, len, r->sink, r->ctx);
    if (rc) {
        r->codec_failed = true;
        backupstream_msg(r->errmsg, sizeof(r->errmsg), "decompress: %s", codec_errmsg(r->codec));
    }
    return rc;
}

BackupStreamReader *backupstream_reader_new(const uint8_t key[BCF_KEY_LEN], bool decompress, BcfSinkFn sink,
                                            void *ctx)
{
    BackupStreamReader *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->decompress = decompress;
    r->sink = sink;
    r->ctx = ctx;
    r->bcf = bcf_reader_new(key, backupstream_on_plain, r);
    r->md = EVP_MD_CTX_new();
    if (!r->bcf || !r->md || EVP_DigestInit_ex(r->md, EVP_sha256(), NULL) != 1) {
        backupstream_reader_free(r);
        return NULL;
    }
    return r;
}

static int backupstream_reader_fail(BackupStreamReader *r, int rc)
{
    if (!r->codec_failed)
        backupstream_msg(r->errmsg, sizeof(r->errmsg), "%s", bcf_reader_errmsg(r->bcf));
    return rc;
}

int backupstream_reader_update(BackupStreamReader *r, const void *data, size_t len)
{
    if (len > 0 && EVP_DigestUpdate(r->md, data, len) != 1)
        return DR_EINTERNAL;
    int rc = bcf_reader_update(r->bcf, data, len);
    return rc ? backupstream_reader_fail(r, rc) : 0;
}

int backupstream_reader_finish(BackupStreamReader *r, BackupStreamStats *ret_stats)
{
    int rc = bcf_reader_finish(r->bcf);
    if (rc)
        backupstream_reader_fail(r, rc);
    if (rc == 0 && r->decompress) {
        rc = backupstream_ensure_codec(r); /* an empty payload still has to be a valid (empty) stream */
        if (rc == 0) {
            rc = codec_finish(r->codec, r->sink, r->ctx);
            if (rc) {
                r->codec_failed = true;
                backupstream_msg(r->errmsg, sizeof(r->errmsg), "decompress: %s", codec_errmsg(r->codec));
            }
        }
    }
    if (ret_stats) {
        memset(ret_stats, 0, sizeof(*ret_stats));
        ret_stats->plain_bytes = r->codec ? codec_bytes_out(r->codec) : r->payload_bytes;
        ret_stats->payload_bytes = r->payload_bytes;
        ret_stats->file_bytes = bcf_reader_bytes_in(r->bcf);
        ret_stats->chunks = bcf_reader_chunks(r->bcf);
        backupstream_digest(r->md, ret_stats);
    }
    return rc;
}

const BcfHeader *backupstream_reader_header(const BackupStreamReader *r)
{
    return bcf_reader_header(r->bcf);
}

const char *backupstream_reader_errmsg(const BackupStreamReader *r)
{
    return r->errmsg;
}

void backupstream_reader_free(BackupStreamReader *r)
{
    if (!r)
        return;
    codec_free(r->codec);
    bcf_reader_free(r->bcf);
    EVP_MD_CTX_free(r->md);
    free(r);
}

int backupstream_file_name(const char *prefix, int64_t t, CodecKind codec, char *out, size_t outlen)
{
    if (!prefix || !prefix[0] || strchr(prefix, '/') || strcmp(codec_name(codec), "unknown") == 0)
        return -EINVAL;
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm))
        return -EINVAL;
    char stamp[32];
    strftime(stamp, sizeof(stamp), "%Y%m%d_%H%M%S", &tm);
    int n = snprintf(out, outlen, "%s_backup_%s.dump%s%s", prefix, stamp, codec_file_ext(codec), BCF_FILE_EXT);
    if (n < 0 || (size_t)n >= outlen)
        return -ENAMETOOLONG;
    return 0;
}
