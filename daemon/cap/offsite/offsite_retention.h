/*
 * offsite_retention: what the off-site bucket keeps (repository.s3.retention, docs/offsite.md).
 *
 * Owns the rule, as a pure function over the record's objects (no I/O, no clock):
 *   - backups: lib/retention's rules (max_age, daily, weekly, monthly), each kind on its own
 *     (logical, base), as backup.retention does locally; the newest base backup and the newest
 *     logical backup are always kept (every backup in the bucket is verified: only verified ones
 *     go up). A backup of a kind the record does not know is never removed;
 *   - a manifest goes with its backup (kept while its backup is kept, or when it has none);
 *   - a state tar (`<stem>.state.tar<codec>.drbk`, backup.state_files) goes with the backup of its
 *     stem: kept while that backup is kept, removed with it, and removed when the record has no
 *     such backup (never an orphan tar);
 *   - WAL: a segment (or a timeline's last partial segment) that ends at or before the start of
 *     the oldest base backup kept is removed; everything after it stays, so the newest base backup
 *     and every WAL file after it are never removed. With no base backup kept, a base backup whose
 *     start is unknown, or the segment size unknown, no WAL is removed. History files stay.
 *   - a policy with no rule removes nothing.
 * The loop side (offsite_retention.c, offsite__retention) builds the items from the record, carries
 * out the decision with DeleteObject tasks and keeps what drctl offsite-status shows.
 */
#ifndef DRSUP_OFFSITE_RETENTION_H
#define DRSUP_OFFSITE_RETENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "retention.h"

typedef enum {
    OFSR_LOGICAL = 0, /* a logical backup's container */
    OFSR_BASE,        /* a base backup's container */
    OFSR_UNKNOWN,     /* a backup the record knows no kind or time of: kept */
    OFSR_MANIFEST,    /* a backup's manifest: `backup` is the index of its container, or SIZE_MAX */
    OFSR_WAL,         /* a segment or a timeline's last partial segment */
    OFSR_OTHER,       /* history files, anything else: kept */
    OFSR_STATE_TAR,   /* a backup's state tar: `backup` is the index of its container, or SIZE_MAX */
} OffsiteRetKind;

typedef struct OffsiteRetItem {
    OffsiteRetKind kind;
    int64_t started_s;  /* backups: when it started (Unix seconds) */
    bool lsn_known;
    uint64_t lsn;       /* OFSR_BASE: its start LSN; OFSR_WAL: the LSN where the segment ends */
    size_t backup;      /* OFSR_MANIFEST, OFSR_STATE_TAR */
} OffsiteRetItem;

/* Fills keep[i] for each of the n items. *ret_wal_from (may be NULL): the LSN from which WAL is
 * kept (0 when no WAL is removed). Returns how many are NOT kept; on OOM keeps everything. */
size_t offsite_retention_decide(const OffsiteRetItem *items, size_t n, int64_t now_s, const RetentionPolicy *policy,
                                bool *keep, uint64_t *ret_wal_from);

/* What a file under PREFIXbackups/ is, by its name alone: OFSR_MANIFEST (`*.manifest.json`),
 * OFSR_STATE_TAR (`<stem>.state.tar*`), or OFSR_UNKNOWN (a backup's container: its kind comes from
 * the record). *ret_stem: the length of the stem a backup's files share
 * (`<prefix>_backup_<YYYYMMDD_HHMMSS>`: up to the first '.' after the last "_backup_"), 0 when the
 * name has none. */
OffsiteRetKind offsite_retention_classify(const char *name, size_t *ret_stem);

#endif
