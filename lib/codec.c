/*
 * codec: streaming zstd / gzip / none compression and decompression (see codec.h).
 *
 * Each Codec owns its library stream (ZSTD_CCtx, ZSTD_DCtx or a z_stream) and one output buffer of
 * CODEC_OUT_PIECE bytes that is handed to the sink whenever it has data.
 */
#include "codec.h"

#include "err.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <zlib.h>
#include <zstd.h>

#define CODEC_ZSTD_DEFAULT_LEVEL 1
#define CODEC_GZIP_DEFAULT_LEVEL 6
/* zlib counts in uInt: feed big inputs in slices no larger than this. */
#define CODEC_ZLIB_SLICE (1u << 30)

struct Codec {
    CodecKind kind;
    bool decompress;
    bool finished;     /* finish ran (successfully or not) */
    bool failed;       /* an error happened; the stream is unusable */
    bool any_input;    /* decoder: at least one byte was pushed */
    bool frame_done;   /* decoder: input so far ends exactly at the end of a frame/member */
    ZSTD_CCtx *zc;
    ZSTD_DCtx *zd;
    z_stream z;
    bool z_init;
    uint8_t *out;      /* CODEC_OUT_PIECE bytes */
    uint64_t bytes_in;
    uint64_t bytes_out;
    char errmsg[200];
};

static const char *const codec_names[] = {
    [CODEC_NONE] = "none",
    [CODEC_ZSTD] = "zstd",
    [CODEC_GZIP] = "gzip",
};

int codec_from_name(const char *name, CodecKind *ret_kind)
{
    if (!name)
        return -EINVAL;
    for (size_t i = 0; i < sizeof(codec_names) / sizeof(codec_names[0]); i++) {
        if (strcasecmp(name, codec_names[i]) == 0) {
            *ret_kind = (CodecKind)i;
            return 0;
        }
    }
    return -EINVAL;
}

const char *codec_name(CodecKind kind)
{
    if ((unsigned)kind < sizeof(codec_names) / sizeof(codec_names[0]))
        return codec_names[kind];
    return "unknown";
}

const char *codec_file_ext(CodecKind kind)
{
    switch (kind) {
    case CODEC_ZSTD:
        return ".zst";
    case CODEC_GZIP:
        return ".gz";
    case CODEC_NONE:
    default:
        return "";
    }
}

int codec_effective_level(CodecKind kind, int level)
{
    switch (kind) {
    case CODEC_ZSTD:
        return level == CODEC_LEVEL_DEFAULT ? CODEC_ZSTD_DEFAULT_LEVEL : level;
    case CODEC_GZIP:
        return level == CODEC_LEVEL_DEFAULT ? CODEC_GZIP_DEFAULT_LEVEL : level;
    default:
        return 0;
    }
}

bool codec_level_valid(CodecKind kind, int level)
{
    switch (kind) {
    case CODEC_NONE:
        return level == CODEC_LEVEL_DEFAULT;
    case CODEC_ZSTD:
        return level == CODEC_LEVEL_DEFAULT || (level >= 1 && level <= ZSTD_maxCLevel());
    case CODEC_GZIP:
        return level == CODEC_LEVEL_DEFAULT || (level >= 1 && level <= 9);
    default:
        return false;
    }
}

__attribute__((format(printf, 3, 4))) static int codec_fail(Codec *c, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->errmsg, sizeof(c->errmsg), fmt, ap);
    va_end(ap);
    c->failed = true;
    return code;
}

/* Hand `len` bytes of c->out to the sink; map its verdict. */
static int codec_emit(Codec *c, size_t len, CodecSinkFn sink, void *ctx)
{
    if (len == 0)
        return 0;
    c->bytes_out += len;
    int r = sink ? sink(ctx, c->out, len) : 0;
    if (r == 0)
        return 0;
    if (r > 0)
        r = DR_ECANCELED;
    return codec_fail(c, r, "%s: output sink failed: %s", codec_name(c->kind), err_str(r));
}

Codec *codec_new(CodecKind kind, int level, bool decompress)
{
    if (!decompress && !codec_level_valid(kind, level))
        return NULL;
    if ((unsigned)kind >= sizeof(codec_names) / sizeof(codec_names[0]))
        return NULL;
    Codec *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->kind = kind;
    c->decompress = decompress;
    c->out = malloc(CODEC_OUT_PIECE);
    if (!c->out)
        goto fail;

    switch (kind) {
    case CODEC_NONE:
        c->frame_done = true;
        break;
    case CODEC_ZSTD:
        if (decompress) {
            c->zd = ZSTD_createDCtx();
            if (!c->zd)
                goto fail;
        } else {
            c->zc = ZSTD_createCCtx();
            if (!c->zc)
                goto fail;
            int lvl = codec_effective_level(kind, level);
            if (ZSTD_isError(ZSTD_CCtx_setParameter(c->zc, ZSTD_c_compressionLevel, lvl)) ||
                ZSTD_isError(ZSTD_CCtx_setParameter(c->zc, ZSTD_c_checksumFlag, 1)) ||
                ZSTD_isError(ZSTD_CCtx_setParameter(c->zc, ZSTD_c_nbWorkers, 0)))
                goto fail;
        }
        break;
    case CODEC_GZIP: {
        int zr;
        if (decompress) {
            zr = inflateInit2(&c->z, 15 + 16); /* gzip wrapper only */
        } else {
            int lvl = codec_effective_level(kind, level);
            zr = deflateInit2(&c->z, lvl, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
        }
        if (zr != Z_OK)
            goto fail;
        c->z_init = true;
        break;
    }
    }
    return c;
fail:
    codec_free(c);
    return NULL;
}

static int codec_zstd_compress(Codec *c, const void *in, size_t in_len, ZSTD_EndDirective mode,
                               CodecSinkFn sink, void *ctx)
{
    ZSTD_inBuffer ib = {in, in_len, 0};
    for (;;) {
        ZSTD_outBuffer ob = {c->out, CODEC_OUT_PIECE, 0};
        size_t rem = ZSTD_compressStream2(c->zc, &ob, &ib, mode);
        if (ZSTD_isError(rem))
            return codec_fail(c, DR_EINTERNAL, "zstd: compression failed: %s", ZSTD_getErrorName(rem));
        int r = codec_emit(c, ob.pos, sink, ctx);
        if (r < 0)
            return r;
        if (mode == ZSTD_e_end ? rem == 0 : ib.pos == ib.size)
            return 0;
    }
}

static int codec_zstd_decompress(Codec *c, const void *in, size_t in_len, CodecSinkFn sink, void *ctx)
{
    ZSTD_inBuffer ib = {in, in_len, 0};
    /* zstd does not consume a frame's last byte before it has flushed all of the frame's output,
     * so looping until the input is consumed drains everything. */
    while (ib.pos < ib.size) {
        ZSTD_outBuffer ob = {c->out, CODEC_OUT_PIECE, 0};
        size_t rem = ZSTD_decompressStream(c->zd, &ob, &ib);
        if (ZSTD_isError(rem))
            return codec_fail(c, DR_ECORRUPT, "zstd: corrupt input: %s", ZSTD_getErrorName(rem));
        c->frame_done = rem == 0;
        int r = codec_emit(c, ob.pos, sink, ctx);
        if (r < 0)
            return r;
    }
    return 0;
}

static int codec_zlib_error(Codec *c, int zr)
{
    if (zr == Z_MEM_ERROR)
        return codec_fail(c, -ENOMEM, "gzip: out of memory");
    return codec_fail(c, DR_ECORRUPT, "gzip: corrupt input: %s",
                      c->z.msg ? c->z.msg : zr == Z_NEED_DICT ? "needs a preset dictionary" : "data error");
}

static int codec_gzip_compress(Codec *c, const void *in, size_t in_len, int flush, CodecSinkFn sink,
                               void *ctx)
{
    const uint8_t *p = in;
    do {
        size_t slice = in_len > CODEC_ZLIB_SLICE ? CODEC_ZLIB_SLICE : in_len;
        c->z.next_in = (Bytef *)(uintptr_t)p;
        c->z.avail_in = (uInt)slice;
        int mode = (flush == Z_FINISH && slice == in_len) ? Z_FINISH : Z_NO_FLUSH;
        int zr;
        do {
            c->z.next_out = c->out;
            c->z.avail_out = CODEC_OUT_PIECE;
            zr = deflate(&c->z, mode);
            if (zr == Z_STREAM_ERROR)
                return codec_fail(c, DR_EINTERNAL, "gzip: compression failed");
            int r = codec_emit(c, CODEC_OUT_PIECE - c->z.avail_out, sink, ctx);
            if (r < 0)
                return r;
        } while (mode == Z_FINISH ? zr != Z_STREAM_END : (c->z.avail_in > 0 || c->z.avail_out == 0));
        if (slice == 0)
            break; /* finish: `in` is NULL, and NULL + 0 is undefined behaviour */
        p += slice;
        in_len -= slice;
    } while (in_len > 0);
    return 0;
}

static int codec_gzip_decompress(Codec *c, const void *in, size_t in_len, CodecSinkFn sink, void *ctx)
{
    const uint8_t *p = in;
    while (in_len > 0) {
        size_t slice = in_len > CODEC_ZLIB_SLICE ? CODEC_ZLIB_SLICE : in_len;
        c->z.next_in = (Bytef *)(uintptr_t)p;
        c->z.avail_in = (uInt)slice;
        do {
            if (c->frame_done) {
                /* Another gzip member follows the one that ended (or garbage, which fails). */
                if (inflateReset(&c->z) != Z_OK)
                    return codec_fail(c, DR_EINTERNAL, "gzip: inflateReset failed");
                c->frame_done = false;
            }
            c->z.next_out = c->out;
            c->z.avail_out = CODEC_OUT_PIECE;
            int zr = inflate(&c->z, Z_NO_FLUSH);
            if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
                return codec_zlib_error(c, zr);
            int r = codec_emit(c, CODEC_OUT_PIECE - c->z.avail_out, sink, ctx);
            if (r < 0)
                return r;
            if (zr == Z_STREAM_END) {
                /* inflate reports the end only once all of the member's output is delivered. */
                c->frame_done = true;
                if (c->z.avail_in == 0)
                    break;
            } else if (zr == Z_BUF_ERROR && c->z.avail_in == 0)
                break; /* no progress possible: all input consumed and output drained */
        } while (c->z.avail_in > 0 || c->z.avail_out == 0);
        p += slice;
        in_len -= slice;
    }
    return 0;
}

int codec_update(Codec *c, const void *in, size_t in_len, CodecSinkFn sink, void *sink_ctx)
{
    if (c->failed || c->finished)
        return DR_ESTATE;
    if (in_len == 0)
        return 0;
    c->bytes_in += in_len;
    c->any_input = true;
    switch (c->kind) {
    case CODEC_NONE: {
        const uint8_t *p = in;
        while (in_len > 0) {
            size_t n = in_len > CODEC_OUT_PIECE ? CODEC_OUT_PIECE : in_len;
            memcpy(c->out, p, n);
            int r = codec_emit(c, n, sink, sink_ctx);
            if (r < 0)
                return r;
            p += n;
            in_len -= n;
        }
        return 0;
    }
    case CODEC_ZSTD:
        return c->decompress ? codec_zstd_decompress(c, in, in_len, sink, sink_ctx)
                             : codec_zstd_compress(c, in, in_len, ZSTD_e_continue, sink, sink_ctx);
    case CODEC_GZIP:
        return c->decompress ? codec_gzip_decompress(c, in, in_len, sink, sink_ctx)
                             : codec_gzip_compress(c, in, in_len, Z_NO_FLUSH, sink, sink_ctx);
    }
    return codec_fail(c, DR_EINTERNAL, "codec: unknown kind %d", (int)c->kind);
}

int codec_finish(Codec *c, CodecSinkFn sink, void *sink_ctx)
{
    if (c->failed || c->finished)
        return DR_ESTATE;
    c->finished = true;
    if (c->kind == CODEC_NONE)
        return 0;
    if (!c->decompress) {
        if (c->kind == CODEC_ZSTD)
            return codec_zstd_compress(c, NULL, 0, ZSTD_e_end, sink, sink_ctx);
        return codec_gzip_compress(c, NULL, 0, Z_FINISH, sink, sink_ctx);
    }
    if (!c->any_input)
        return codec_fail(c, DR_ECORRUPT, "%s: truncated input: the stream is empty", codec_name(c->kind));
    if (!c->frame_done)
        return codec_fail(c, DR_ECORRUPT, "%s: truncated input: the stream ends inside a %s",
                          codec_name(c->kind), c->kind == CODEC_ZSTD ? "frame" : "member");
    return 0;
}

const char *codec_errmsg(const Codec *c)
{
    return c->errmsg;
}

uint64_t codec_bytes_in(const Codec *c)
{
    return c->bytes_in;
}

uint64_t codec_bytes_out(const Codec *c)
{
    return c->bytes_out;
}

void codec_free(Codec *c)
{
    if (!c)
        return;
    ZSTD_freeCCtx(c->zc);
    ZSTD_freeDCtx(c->zd);
    if (c->z_init) {
        if (c->decompress)
            inflateEnd(&c->z);
        else
            deflateEnd(&c->z);
    }
    free(c->out);
    free(c);
}
