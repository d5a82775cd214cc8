/*
 * backupstream: the backup file pipelines built from codec and bcf.
 *
 * Owns the two directions a backup file is processed in:
 *   writer: pg_dump bytes -> compress (codec) -> encrypt (bcf) -> file sink, with byte counters and
 *           the SHA-256 of the file bytes (for the manifest);
 *   reader: file bytes -> verify/decrypt (bcf) -> decompress (codec, from the header) -> sink, with
 *           the SHA-256 of the file bytes read. The reader with sink NULL is a full verification;
 *           with decompress false it yields the compressed payload (drctl backup decrypt --raw).
 * Synchronous and push-style, memory bounded by the chunk size plus codec buffers; no global state,
 * so a pipeline can run in a libuv pool worker (one thread per object at a time). The reader's output
 * is provisional until backupstream_reader_finish() returns 0 (truncation shows only at the end):
 * write it to a temporary file and rename on success.
 */
#ifndef DRSUP_BACKUPSTREAM_H
#define DRSUP_BACKUPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bcf.h"
#include "codec.h"

typedef struct BackupStreamStats {
    uint64_t plain_bytes;   /* pg_dump bytes: in (writer) or out after decompression (reader) */
    uint64_t payload_bytes; /* compressed bytes: the bcf payload */
    uint64_t file_bytes;    /* bytes of the backup file */
    uint64_t chunks;        /* bcf chunks (reader: verified chunks; writer: chunks written) */
    uint8_t file_sha256[32];
    char file_sha256_hex[65];
} BackupStreamStats;

typedef struct BackupStreamWriter BackupStreamWriter;
typedef struct BackupStreamReader BackupStreamReader;

/* A writer: compress with `codec` at `level` (CODEC_LEVEL_DEFAULT for the default) and encrypt with
 * `key` in chunks of `chunk_size` (0: BCF_CHUNK_DEFAULT), giving file bytes to `file_sink`. NULL on
 * invalid arguments or out of memory. */
BackupStreamWriter *backupstream_writer_new(const uint8_t key[BCF_KEY_LEN], CodecKind codec, int level,
                                            uint32_t chunk_size, BcfSinkFn file_sink, void *ctx);

/* The encryption layer, for bcf_writer_set_created_at() (and, in tests, the fixed salt) before the
 * first write. Borrowed. */
BcfWriter *backupstream_writer_bcf(BackupStreamWriter *w);

/* Push pg_dump output. 0, or a code from codec/bcf/the sink; see backupstream_writer_errmsg(). */
int backupstream_writer_write(BackupStreamWriter *w, const void *data, size_t len);

/* Flush the compressor, write the final chunk, and fill `ret_stats` (may be NULL). */
int backupstream_writer_finish(BackupStreamWriter *w, BackupStreamStats *ret_stats);

/* The last error as a sentence ("compress: ...", "encrypt: ...", "write: ..."); "" if none. */
const char *backupstream_writer_errmsg(const BackupStreamWriter *w);

void backupstream_writer_free(BackupStreamWriter *w);

/* A reader: verify and decrypt with `key`; if `decompress`, decompress with the codec named in the
 * (authenticated) header. Output to `sink` (NULL: verify only). NULL when out of memory. */
BackupStreamReader *backupstream_reader_new(const uint8_t key[BCF_KEY_LEN], bool decompress, BcfSinkFn sink,
                                            void *ctx);

/* Push file bytes, split anywhere. 0, DR_ECORRUPT, DR_EKEY, -ENOMEM, or the sink's code. */
int backupstream_reader_update(BackupStreamReader *r, const void *data, size_t len);

/* End of file: 0 only if the whole file verified and decompressed; fills `ret_stats` (may be NULL)
 * in any case, so the SHA-256 of what was read is available even for a damaged file. */
int backupstream_reader_finish(BackupStreamReader *r, BackupStreamStats *ret_stats);

/* The file's header once read (see bcf_reader_header), else NULL. */
const BcfHeader *backupstream_reader_header(const BackupStreamReader *r);

/* The last error as a sentence (bcf's message, or "decompress: zstd: ..."); "" if none. */
const char *backupstream_reader_errmsg(const BackupStreamReader *r);

void backupstream_reader_free(BackupStreamReader *r);

/* The backup file name "<prefix>_backup_YYYYMMDD_HHMMSS.dump<.zst|.gz|>.drbk" for Unix time `t`,
 * in UTC. `prefix` must be non-empty and hold no '/'. 0, -EINVAL, or -ENAMETOOLONG. */
int backupstream_file_name(const char *prefix, int64_t t, CodecKind codec, char *out, size_t outlen);

#endif
