/*
 * codec: streaming compression and decompression (zstd, gzip, none), push style.
 *
 * Owns one compression or decompression stream. The caller pushes bytes in with codec_update()
 * and ends the stream with codec_finish(); output goes to a sink callback in pieces of at most
 * CODEC_OUT_PIECE bytes, so memory use is bounded whatever the input size (zstd's decoder window
 * is capped at 128 MiB by libzstd's default limit; our own encoder uses far less).
 * Decompression is strict: garbage input, a damaged checksum (zstd frame checksum, gzip CRC-32 and
 * length) and a stream that stops mid-frame are errors (DR_ECORRUPT), never a silent short output.
 * Concatenated frames/members are accepted, as their formats allow.
 *
 * Thread safety: no global state; one Codec must be used by one thread at a time, different
 * Codecs may be used concurrently (libuv pool workers).
 */
#ifndef DRSUP_CODEC_H
#define DRSUP_CODEC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The numeric values are stored in backup headers (docs/backup-format.md): never renumber. */
typedef enum {
    CODEC_NONE = 0,
    CODEC_ZSTD = 1,
    CODEC_GZIP = 2,
} CodecKind;

/* Pass as level for the codec's default (zstd 1, gzip 6): zstd 1 keeps compression behind pg_dump
 * on two cores (docs/benchmarks.md). */
#define CODEC_LEVEL_DEFAULT 0
/* Largest output piece handed to a sink in one call. */
#define CODEC_OUT_PIECE (128u * 1024u)

/* Output callback: return 0 to continue, or a negative code to abort; the code is returned by the
 * codec call that invoked the sink. A positive return is reported as DR_ECANCELED. */
typedef int (*CodecSinkFn)(void *ctx, const uint8_t *data, size_t len);

typedef struct Codec Codec;

/* "zstd" | "gzip" | "none" -> kind; 0 or -EINVAL. */
int codec_from_name(const char *name, CodecKind *ret_kind);

/* Kind -> "zstd" | "gzip" | "none"; "unknown" for values outside the enum. Never NULL. */
const char *codec_name(CodecKind kind);

/* File name extension for the kind: ".zst", ".gz", or "" for none. Never NULL. */
const char *codec_file_ext(CodecKind kind);

/* True when `level` is acceptable for `kind` for compression: CODEC_LEVEL_DEFAULT always;
 * zstd 1..ZSTD_maxCLevel(); gzip 1..9; none only CODEC_LEVEL_DEFAULT. */
bool codec_level_valid(CodecKind kind, int level);

/* The level a stream created with `level` really uses: the codec's default for
 * CODEC_LEVEL_DEFAULT (zstd 1, gzip 6), `level` otherwise; 0 for none. */
int codec_effective_level(CodecKind kind, int level);

/* A new stream. `level` is ignored when decompressing. Returns NULL for an unknown kind, an
 * invalid level, or out of memory. Owned by the caller; free with codec_free(). */
Codec *codec_new(CodecKind kind, int level, bool decompress);

/* Push `in_len` bytes (in may be NULL when in_len is 0). Returns 0, DR_ECORRUPT (bad compressed
 * data; see codec_errmsg), DR_ESTATE (already finished or failed), -ENOMEM, DR_EINTERNAL, or the
 * sink's code. After any error the codec is failed and every later call returns DR_ESTATE. */
int codec_update(Codec *c, const void *in, size_t in_len, CodecSinkFn sink, void *sink_ctx);

/* End the stream: flush the encoder, or check the decoder ended exactly at the end of a complete
 * frame (DR_ECORRUPT "truncated ..." otherwise). Same codes as codec_update(). */
int codec_finish(Codec *c, CodecSinkFn sink, void *sink_ctx);

/* The last error as a sentence ("zstd: truncated input: stream ends inside a frame"); "" if none.
 * Valid until the next call on `c`. */
const char *codec_errmsg(const Codec *c);

/* Bytes pushed in and handed to sinks so far. */
uint64_t codec_bytes_in(const Codec *c);
uint64_t codec_bytes_out(const Codec *c);

/* Frees the stream; NULL is a no-op. */
void codec_free(Codec *c);

#endif
