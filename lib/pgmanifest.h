/*
 * pgmanifest: a PostgreSQL backup_manifest (PostgreSQL 13 and later) checked against the files of
 * the backup as they stream past, the way pg_verifybackup checks a plain-format backup.
 *
 * Owns the per-file record of what was seen (path, size, checksum: nothing else is kept), the file
 * checksums a manifest can name (CRC32C, SHA224, SHA256, SHA384, SHA512, or NONE: sizes only),
 * the manifest's own Manifest-Checksum, and the comparison. Knows nothing of tar: the caller feeds
 * each file's name, size and content (pgmanifest_tar_hooks fits lib/tarscan), then the manifest.
 *
 * How PostgreSQL prints a checksum (src/common/checksum_helper.c, pg_checksum_final): the bytes of
 * the result, in hex. For SHA-2 that is the digest as usual. For CRC32C it is the four bytes of
 * the finished uint32 as they lie in the server's memory: little-endian on x86-64 and ARM64, so a
 * CRC-32C of 0xE3069283 ("123456789") is printed "839206e3". This module compares that byte order
 * (a big-endian server would print them reversed: not supported, it fails as a mismatch).
 *
 * Memory: per file seen, its path, its size and its checksum (8 + 4 bytes for CRC32C, up to 64
 * for SHA512) plus 8 bytes of index, in one growing arena; at most PGMANIFEST_MAX_FILES files.
 */
#ifndef DRSUP_PGMANIFEST_H
#define DRSUP_PGMANIFEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "tarscan.h"

/* 0 is PostgreSQL's default, so that a zeroed setting means what pg_basebackup does without one. */
typedef enum {
    PGMANIFEST_CRC32C = 0,
    PGMANIFEST_NONE,
    PGMANIFEST_SHA224,
    PGMANIFEST_SHA256,
    PGMANIFEST_SHA384,
    PGMANIFEST_SHA512,
    PGMANIFEST_ALGO_N
} PgManifestAlgo;

/* More files than this fail the check (a backup_manifest of 256 MiB lists about 1.5 million). */
#define PGMANIFEST_MAX_FILES (4u << 20)

/* "CRC32C", "SHA256", ... "NONE": as the manifest's Checksum-Algorithm and pg_basebackup's
 * --manifest-checksums write them. Parse is case-insensitive; false when unknown. */
const char *pgmanifest_algo_name(PgManifestAlgo a);
bool pgmanifest_algo_parse(const char *name, PgManifestAlgo *ret);
/* The names by value, NULL-terminated (for a configuration enum). */
const char *const *pgmanifest_algo_names(void);

typedef struct PgManifestCheck PgManifestCheck;

/* A check computing `algo` for every file fed. NULL on OOM. */
PgManifestCheck *pgmanifest_check_new(PgManifestAlgo algo);
void pgmanifest_check_free(PgManifestCheck *c);

/* Feed one file: begin (name borrowed for the call), its content in pieces, end. 0 or -ENOMEM,
 * -E2BIG (more than PGMANIFEST_MAX_FILES), -EINVAL (out of order). */
int pgmanifest_check_begin(PgManifestCheck *c, const char *name, uint64_t size);
int pgmanifest_check_data(PgManifestCheck *c, const uint8_t *data, size_t len);
int pgmanifest_check_end(PgManifestCheck *c);
/* The three above as lib/tarscan hooks (ctx: the PgManifestCheck). */
extern const TarScanHooks pgmanifest_tar_hooks;

typedef struct PgManifestResult {
    size_t files;           /* entries in the manifest's Files */
    size_t checksummed;     /* of them, size and checksum matched */
    size_t sized;           /* of them, only the size was compared (the manifest has no checksum) */
    size_t mismatched;      /* missing, or a size or checksum that differs */
    size_t extra;           /* files seen that the manifest does not list (outside `ignore`) */
    PgManifestAlgo algo;    /* what was compared: the computed one, or NONE when no entry had one */
    char manifest_checksum[65]; /* its Manifest-Checksum, checked */
} PgManifestResult;

/*
 * Compare the files fed so far with `manifest` (the text of backup_manifest, len bytes; `parsed`
 * is that text already parsed by the caller, borrowed, or NULL to parse it here): its
 * Manifest-Checksum (SHA-256 of the text up to and including the newline before that line) must
 * match; every entry of Files ("Path", or hex "Encoded-Path") must have been fed with the listed
 * Size and, when the entry has a Checksum-Algorithm, the same checksum (an algorithm other than the
 * computed one is refused, -ENOTSUP); files fed that the manifest does not list are mismatches too,
 * except the names in `ignore` (NULL-terminated, or NULL). When a name was fed twice, the later one
 * counts (as tar -x). 0 when everything matched; -EBADMSG (not a manifest, or a bad
 * Manifest-Checksum), -ENOTSUP or -EILSEQ (files differ) with the reason in err: the
 * first difference by path and how many there are. *ret filled when the comparison ran (0 or
 * -EILSEQ; also -ENOTSUP after some entries).
 */
int pgmanifest_check_finish(PgManifestCheck *c, const char *manifest, size_t len, const json_t *parsed,
                            const char *const *ignore, PgManifestResult *ret, char *err, size_t errlen);

#endif
