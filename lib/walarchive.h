/*
 * walarchive: the encrypted WAL archive on disk (docs/wal.md): file names, the encrypted partial
 * segment, and reading and writing segments. Mechanism only, no loop: every function that touches
 * a file BLOCKS and runs on the thread pool in the daemon (or in drctl).
 *
 * Files in the archive directory (mode 0600, the directory 0700):
 *   <TLI><LOG><SEG>.wal<codec>.drbk       a complete segment: one BCF container (docs/backup-format.md)
 *                                         of the segment's bytes, compressed with the codec
 *   <TLI><LOG><SEG>.partial.wal<codec>.drbk  the last segment of a timeline that ended inside it
 *                                         (the bytes up to the switch point), as PostgreSQL's .partial
 *   <TLI><LOG><SEG>.partial.drwal         the segment being received: a sequence of pieces, each
 *                                         u64 length (big-endian) || one BCF container whose
 *                                         plaintext is the 16-byte piece header ("DRWALP1\0",
 *                                         u64 offset in the segment) || the bytes; pieces are
 *                                         contiguous from offset 0. Appended and fdatasync'd at
 *                                         every flush; the plaintext is never on disk.
 *   <TLI>.history.drbk                    a timeline history file, one BCF container
 */
#ifndef DRSUP_WALARCHIVE_H
#define DRSUP_WALARCHIVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bcf.h"
#include "codec.h"

enum { WAL_NAME_LEN = 24, WAL_PIECE_HDR = 16 };

typedef enum {
    WALFILE_NONE = 0,
    WALFILE_SEGMENT,      /* complete segment */
    WALFILE_PARTIAL_END,  /* a timeline's last, partial segment (complete container) */
    WALFILE_PARTIAL,      /* the segment being received (pieces) */
    WALFILE_HISTORY,      /* timeline history */
} WalFileKind;

/* PostgreSQL's XLogFileName: 24 upper-case hex digits for timeline tli, segment segno. */
void walarchive_seg_name(uint32_t tli, uint64_t segno, uint64_t seg_size, char out[WAL_NAME_LEN + 1]);
/* Parse 24 hex digits (the start of `name`). 0, or -EINVAL. */
int walarchive_parse_seg(const char *name, uint64_t seg_size, uint32_t *tli, uint64_t *segno);
/* What kind of archive file `name` is, with its timeline and segment (history: segno 0). */
WalFileKind walarchive_classify(const char *name, uint64_t seg_size, uint32_t *tli, uint64_t *segno);
/* The archive file name for a kind ("…wal.zst.drbk" etc.). 0 or -ENAMETOOLONG. */
int walarchive_file_name(WalFileKind kind, uint32_t tli, uint64_t segno, uint64_t seg_size, CodecKind codec,
                         char *out, size_t outlen);
/* "X/Y" of an LSN. */
void walarchive_lsn_str(uint64_t lsn, char out[24]);
/* Parse "X/Y". 0 or -EINVAL. */
int walarchive_parse_lsn(const char *s, uint64_t *lsn);

/* Write `len` bytes as one complete container at dir/name (temporary, verified, fsynced, renamed,
 * directory fsynced). created_at: the header's time. 0, or <0 with err filled. Blocking. */
int walarchive_write_file(const char *dir, const char *name, const uint8_t key[BCF_KEY_LEN], CodecKind codec,
                          int64_t created_at, const uint8_t *data, size_t len, char *err, size_t errlen);

/* Read and verify a complete container into *ret (malloc'd, at most max bytes). 0, DR_ECORRUPT,
 * DR_EKEY, -EFBIG, -errno; err says which. Blocking. */
int walarchive_read_file(const char *path, const uint8_t key[BCF_KEY_LEN], size_t max, uint8_t **ret,
                         size_t *ret_len, char *err, size_t errlen);

/* Append one piece (bytes at `offset` of the segment) to the partial file at path, created 0600
 * when missing (its directory then fsynced), and fdatasync it. 0 or <0 with err. Blocking. */
int walarchive_append_piece(const char *path, const uint8_t key[BCF_KEY_LEN], CodecKind codec, uint64_t offset,
                            const uint8_t *data, size_t len, char *err, size_t errlen);

/* Read a partial file into buf (seg_size bytes): *ret_len is how many contiguous bytes from
 * offset 0 its pieces hold. A torn last piece (a crash inside an append) is ignored (*ret_torn
 * true) and, with cut_torn, cut off the file; a piece that fails verification or breaks the
 * contiguity is DR_ECORRUPT (the good pieces before it are in buf and counted). Blocking. */
int walarchive_read_partial(const char *path, const uint8_t key[BCF_KEY_LEN], uint8_t *buf, uint64_t seg_size,
                            bool cut_torn, uint64_t *ret_len, bool *ret_torn, char *err, size_t errlen);

#endif
