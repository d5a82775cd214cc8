/*
 * backup_basetar: a base backup's tar checked as it streams past, on a pool worker (see
 * backup_internal.h). The same check runs while pg_basebackup's output is written (backup_job)
 * and on the decrypted file when it is verified (backup_verify).
 *
 * Owns: the tar's structure (lib/tarscan: header checksums, sizes, the end of the archive); the
 * files a data directory cannot do without (PG_VERSION, global/pg_control, backup_label) and the
 * server's backup_manifest, kept in memory (up to BACKUP_TAR_CAPTURE_BYTES); every regular member's
 * path, size and checksum (lib/pgmanifest, in the algorithm pg_basebackup was told to write) and,
 * once the tar has ended, the comparison with the manifest's Files and its Manifest-Checksum; the
 * WAL range the manifest records.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/backup/backup_internal.h"
#include "err.h"
#include "tarscan.h"

struct BackupBaseTar {
    TarScan *tar;
    PgManifestCheck *files;
};

/* The server's backup_manifest (PostgreSQL 13 and later) lists the WAL a backup needs:
 *   "WAL-Ranges": [{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }]
 * one range per timeline the backup crossed (several only for a backup of a standby that was
 * promoted meanwhile). */
static bool backup_lsn_parse(const char *s, uint64_t *ret)
{
    unsigned hi, lo;
    int used = 0;
    if (!s || sscanf(s, "%X/%X%n", &hi, &lo, &used) != 2 || s[used] != '\0')
        return false;
    *ret = (uint64_t)hi << 32 | lo;
    return true;
}

/* The parsed manifest's WAL range (and Files count, Manifest-Checksum). */
static int backup_basetar_wal_range(const json_t *m, BackupWalRange *ret, char *err, size_t errlen)
{
    const json_t *ranges = json_object_get(m, "WAL-Ranges"), *r;
    BackupWalRange w = {0};
    uint64_t lo = UINT64_MAX, hi = 0;
    size_t i;

    if (!json_is_array(ranges) || json_array_size(ranges) == 0) {
        snprintf(err, errlen, "the server's backup_manifest has no WAL-Ranges");
        return -EBADMSG;
    }
    json_array_foreach(ranges, i, r) {
        uint64_t a, b;
        json_int_t tl = json_integer_value(json_object_get(r, "Timeline"));
        if (!backup_lsn_parse(json_string_value(json_object_get(r, "Start-LSN")), &a) ||
            !backup_lsn_parse(json_string_value(json_object_get(r, "End-LSN")), &b) || tl <= 0 ||
            tl > (json_int_t)UINT32_MAX || b < a) {
            snprintf(err, errlen, "the server's backup_manifest has a malformed WAL range (entry %zu)", i + 1);
            return -EBADMSG;
        }
        if (a < lo) {
            lo = a;
            w.timeline = (uint32_t)tl;
        }
        if (b >= hi) {
            hi = b;
            w.stop_timeline = (uint32_t)tl;
        }
    }
    snprintf(w.start_lsn, sizeof(w.start_lsn), "%X/%X", (unsigned)(lo >> 32), (unsigned)lo);
    snprintf(w.stop_lsn, sizeof(w.stop_lsn), "%X/%X", (unsigned)(hi >> 32), (unsigned)hi);
    w.files = json_array_size(json_object_get(m, "Files"));
    snprintf(w.manifest_checksum, sizeof(w.manifest_checksum), "%.64s",
             json_string_value(json_object_get(m, "Manifest-Checksum")) ? json_string_value(json_object_get(m, "Manifest-Checksum")) : "");
    *ret = w;
    return 0;
}

/* The manifest parsed, or NULL with the reason in err. */
static json_t *backup_basetar_parse(const char *manifest, size_t len, char *err, size_t errlen)
{
    json_error_t je;
    json_t *m = json_loadb(manifest, len, 0, &je);
    if (!json_is_object(m)) {
        snprintf(err, errlen, "the server's backup_manifest is not JSON: %s (line %d)", m ? "not an object" : je.text,
                 je.line);
        json_decref(m);
        return NULL;
    }
    return m;
}

int backup_basebackup_wal_range(const char *manifest, size_t len, BackupWalRange *ret, char *err, size_t errlen)
{
    json_t *m = backup_basetar_parse(manifest, len, err, errlen);
    int r = m ? backup_basetar_wal_range(m, ret, err, errlen) : -EBADMSG;
    json_decref(m);
    return r;
}

BackupBaseTar *backup_basetar_new(PgManifestAlgo algo)
{
    static const char *const watched[] = {"PG_VERSION", "global/pg_control", BACKUP_TAR_LABEL, BACKUP_TAR_MANIFEST,
                                          NULL};
    BackupBaseTar *bt = calloc(1, sizeof(*bt));
    if (!bt || !(bt->tar = tarscan_new(watched, BACKUP_TAR_CAPTURE_BYTES)) || !(bt->files = pgmanifest_check_new(algo))) {
        backup_basetar_free(bt);
        return NULL;
    }
    tarscan_set_hooks(bt->tar, &pgmanifest_tar_hooks, bt->files);
    return bt;
}

void backup_basetar_free(BackupBaseTar *bt)
{
    if (!bt)
        return;
    tarscan_free(bt->tar);
    pgmanifest_check_free(bt->files);
    free(bt);
}

int backup_basetar_update(BackupBaseTar *bt, const uint8_t *data, size_t len, char *err, size_t errlen)
{
    int r = tarscan_update(bt->tar, data, len);
    if (r == -E2BIG) /* from pgmanifest: the records it keeps per file are bounded */
        snprintf(err, errlen, "the base backup has more than %u files, the most its check keeps", PGMANIFEST_MAX_FILES);
    else if (r < 0)
        snprintf(err, errlen, "the base backup is not a valid tar: %s", tarscan_errmsg(bt->tar));
    return r < 0 ? -EBADMSG : 0;
}

int backup_basetar_finish(BackupBaseTar *bt, BackupWalRange *ret, char *err, size_t errlen)
{
    static const char *const needed[] = {"PG_VERSION", "global/pg_control", BACKUP_TAR_LABEL, BACKUP_TAR_MANIFEST};
    static const char *const not_listed[] = {BACKUP_TAR_MANIFEST, NULL}; /* the manifest does not list itself */
    const uint8_t *data;
    size_t len;
    bool truncated;
    BackupWalRange w;
    PgManifestResult res;

    if (tarscan_finish(bt->tar) < 0) {
        snprintf(err, errlen, "the base backup is not a valid tar: %s", tarscan_errmsg(bt->tar));
        return -EBADMSG;
    }
    for (size_t i = 0; i < sizeof(needed) / sizeof(needed[0]); i++)
        if (!tarscan_member(bt->tar, needed[i], NULL, NULL, NULL)) {
            snprintf(err, errlen, "the base backup's tar has no '%s' (%llu members)", needed[i],
                     (unsigned long long)tarscan_members(bt->tar));
            return -EBADMSG;
        }
    tarscan_member(bt->tar, BACKUP_TAR_MANIFEST, &data, &len, &truncated);
    if (truncated) {
        snprintf(err, errlen, "the server's backup_manifest is larger than %u MiB: it cannot be read",
                 BACKUP_TAR_CAPTURE_BYTES >> 20);
        return -EBADMSG;
    }
    /* Parsed once for both (a tree of the whole manifest: several hundred bytes per file). */
    json_t *m = backup_basetar_parse((const char *)data, len, err, errlen);
    if (!m || backup_basetar_wal_range(m, &w, err, errlen) < 0) {
        json_decref(m);
        return -EBADMSG;
    }
    w.tar_members = tarscan_members(bt->tar);
    int r = pgmanifest_check_finish(bt->files, (const char *)data, len, m, not_listed, &res, err, errlen);
    json_decref(m);
    if (r == -EBADMSG || r == -ENOMEM || r == -EINVAL)
        return r == -EBADMSG ? r : -ENOMEM;
    if (r < 0) {
        size_t n = strlen(err);
        if (r == -EILSEQ)
            snprintf(err + n, errlen > n ? errlen - n : 0, "; %zu of %zu files match", res.checksummed + res.sized,
                     res.files);
        return r;
    }
    w.files_verified = res.checksummed + res.sized;
    snprintf(w.checksum_algorithm, sizeof(w.checksum_algorithm), "%s", pgmanifest_algo_name(res.algo));
    *ret = w;
    return 0;
}
