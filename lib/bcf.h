/*
 * bcf: the backup container format, the encryption layer of a backup file.
 *
 * Owns the byte layout described in docs/backup-format.md: a 112-byte authenticated header
 * ("DRSUPBK1", version, codec id, chunk size, key id, 32-byte random salt, creation time,
 * HMAC-SHA-256 tag), then AES-256-GCM chunks under a per-file subkey derived with HKDF-SHA-256 from
 * the master key and the salt. Each chunk is bound to the header, to its index and to whether it is
 * the final chunk, so bit flips, truncation, appended data, reordered or duplicated chunks and a
 * wrong key are all detected. The payload (compressed pg_dump output) is opaque here; the header
 * only records which codec produced it.
 *
 * The writer and the reader are synchronous and push-style, with memory bounded by the chunk size
 * (at most BCF_CHUNK_MAX, checked before anything is allocated from a header). There is no global
 * state: objects may be used from libuv pool workers, one thread per object at a time. Key material
 * is wiped (OPENSSL_cleanse) when an object is freed, and never appears in error messages.
 */
#ifndef DRSUP_BCF_H
#define DRSUP_BCF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "codec.h"

#define BCF_MAGIC "DRSUPBK1"
#define BCF_VERSION 1
#define BCF_KEY_LEN 32
#define BCF_KEY_ID_LEN 16
#define BCF_SALT_LEN 32
#define BCF_HEADER_LEN 112
#define BCF_KEY_ID_OFFSET 32 /* where the header holds the key id */
#define BCF_TAG_LEN 16
#define BCF_CHUNK_DEFAULT (1024u * 1024u)
#define BCF_CHUNK_MAX (64u * 1024u * 1024u)
#define BCF_FILE_EXT ".drbk"

/* Output callback for file bytes (writer) or verified plaintext (reader): return 0 to continue or
 * a negative code to abort; that code is returned by the call that invoked the sink (a positive
 * return becomes DR_ECANCELED). */
typedef int (*BcfSinkFn)(void *ctx, const uint8_t *data, size_t len);

/* The header fields, as parsed (reader) or as written (writer). */
typedef struct BcfHeader {
    uint16_t version;
    CodecKind codec;                 /* codec of the payload */
    uint32_t chunk_size;             /* plaintext bytes in every chunk but the last */
    int64_t created_at;              /* Unix seconds, UTC */
    uint8_t key_id[BCF_KEY_ID_LEN];
    uint8_t salt[BCF_SALT_LEN];
} BcfHeader;

typedef struct BcfWriter BcfWriter;
typedef struct BcfReader BcfReader;

/* Key fingerprint: the first 16 bytes of SHA-256("drsupervisor-bcf-v1 key-id" || key). Safe to log
 * and to print; does not reveal the key. */
void bcf_key_id(const uint8_t key[BCF_KEY_LEN], uint8_t out[BCF_KEY_ID_LEN]);

/* Lower-case hex of `len` bytes into `out`, which must hold 2 * len + 1 bytes. Returns out. */
char *bcf_hex(const uint8_t *in, size_t len, char *out);

/* Load a 32-byte key from a file holding exactly 32 raw bytes, or 64 hex digits optionally followed
 * by one "\n". The file must be a regular file owned by the effective uid with no group or other
 * permission bits (0600, 0400 ...). Returns 0, or DR_EKEY with a message in `err` naming the path and
 * the problem (never key bytes). `key` is untouched on failure. */
int bcf_load_key_file(const char *path, uint8_t key[BCF_KEY_LEN], char *err, size_t errlen);

/* ---- writer ---- */

/* A writer that emits a backup file to `sink`. `codec` is recorded in the header (the caller
 * compresses); `chunk_size` is 1..BCF_CHUNK_MAX, or 0 for BCF_CHUNK_DEFAULT. The key is copied.
 * Returns NULL on invalid arguments, out of memory, or a failure of the system random generator.
 * Nothing is written until the first bcf_writer_write() or bcf_writer_finish(). */
BcfWriter *bcf_writer_new(const uint8_t key[BCF_KEY_LEN], CodecKind codec, uint32_t chunk_size,
                          BcfSinkFn sink, void *ctx);

/* Record `t` (Unix seconds) as the creation time instead of the time of bcf_writer_new(). Only
 * before the first write; DR_ESTATE after. */
int bcf_writer_set_created_at(BcfWriter *w, int64_t t);

/* TESTS ONLY: use `salt` instead of a random one, to produce reproducible test vectors. A fixed
 * salt reused with one key reuses the per-file key and GCM nonces: never call this in production.
 * Only before the first write; DR_ESTATE after. */
int bcf_writer_set_salt_for_test(BcfWriter *w, const uint8_t salt[BCF_SALT_LEN]);

/* Append payload bytes. Full chunks are encrypted and emitted as they fill (a full chunk is held
 * back until more data or finish shows whether it is the last one). Returns 0, DR_ESTATE after
 * finish or a failure, DR_EINTERNAL (OpenSSL), DR_ETOOBIG (over 2^32 chunks), or the sink's code. */
int bcf_writer_write(BcfWriter *w, const void *data, size_t len);

/* Emit the final chunk (possibly empty). The file is complete only after this returns 0. */
int bcf_writer_finish(BcfWriter *w);

/* Header as it is (or will be) written. */
const BcfHeader *bcf_writer_header(const BcfWriter *w);

/* Bytes handed to the sink so far, header and framing included. */
uint64_t bcf_writer_bytes_out(const BcfWriter *w);

/* The last error as a sentence; "" if none. */
const char *bcf_writer_errmsg(const BcfWriter *w);

/* Frees and wipes; NULL is a no-op. */
void bcf_writer_free(BcfWriter *w);

/* ---- reader ---- */

/* A reader that verifies and decrypts a backup file pushed in with bcf_reader_update(), giving
 * verified plaintext to `sink` (NULL discards it, for verification only). Plaintext is released one
 * chunk at a time and only after that chunk's tag checked; the stream as a whole is proven complete
 * only when bcf_reader_finish() returns 0, so consumers must treat output as provisional until then.
 * Returns NULL when out of memory. */
BcfReader *bcf_reader_new(const uint8_t key[BCF_KEY_LEN], BcfSinkFn sink, void *ctx);

/* Push file bytes, split anywhere. Returns 0; DR_ECORRUPT (bad magic, bad header, authentication
 * failure, bad chunk framing, data after the final chunk); DR_EKEY (the file was written with another
 * key: checked before anything else is authenticated); -ENOMEM; DR_EINTERNAL; or the sink's code.
 * Errors are sticky: later calls return the same code. See bcf_reader_errmsg(). */
int bcf_reader_update(BcfReader *r, const void *data, size_t len);

/* End of input: 0 if the final chunk was seen and verified, else DR_ECORRUPT ("truncated: ..."). */
int bcf_reader_finish(BcfReader *r);

/* The parsed header once all of it has arrived and its version is supported (also after a key id
 * mismatch, so a caller can show which key the file needs); NULL before. The fields are trustworthy
 * only once bcf_reader_header_verified() is true (its HMAC checked under the given key). */
const BcfHeader *bcf_reader_header(const BcfReader *r);
bool bcf_reader_header_verified(const BcfReader *r);

/* Number of chunks verified so far, and file bytes consumed. */
uint64_t bcf_reader_chunks(const BcfReader *r);
uint64_t bcf_reader_bytes_in(const BcfReader *r);

/* The last error as a sentence, e.g. "chunk 17: authentication failed (data modified or wrong key)";
 * "" if none. */
const char *bcf_reader_errmsg(const BcfReader *r);

/* Frees and wipes; NULL is a no-op. */
void bcf_reader_free(BcfReader *r);

#endif
