/*
 * offsite: the off-site repository uploader (docs/offsite.md, issue 16).
 *
 * Owns the copy of every verified backup (its container, then its manifest) and every archived WAL
 * segment and timeline history file to the S3-compatible bucket of repository.s3: found by a scan
 * of the backup catalog and the WAL archive every scan_interval (and after each backup or
 * verification), uploaded asynchronously from the loop through lib/httpc, in one PUT up to
 * part_size and in parts above it (multipart: create, parts, complete; aborted on failure), each
 * body's SHA-256 computed on the thread pool and sent as x-amz-content-sha256 (the whole file's as
 * x-amz-meta-sha256), checked after upload with a HEAD (size and that checksum), retried with
 * backoff. The durable record of what is off-site (state_dir/offsite.json, atomic) lets a restart
 * skip what is there and abort a multipart upload a killed daemon left. Conditions offsite.lag:C
 * and offsite.failed:C, the `offsite` status component, metrics, the readiness check
 * offsite.repository, the offsite_status control command, and the bucket's own retention
 * (repository.s3.retention: DeleteObject of what it no longer keeps; offsite_retention.h).
 */
#ifndef DRSUP_OFFSITE_H
#define DRSUP_OFFSITE_H

#include <stdbool.h>
#include <stdint.h>

#include "cap/backup/backup.h"
#include "config/config.h"
#include "core/core.h"

typedef struct Offsite Offsite;

/* The uploader of backups' verified files. NULL on OOM. */
Offsite *offsite_new(Core *core, Backups *backups);
/* Apply repository.s3 (absent: uploads stop; what is queued stays for later). 0, -ENOMEM. */
int offsite_apply_config(Offsite *o, const Config *cfg);
/* Whether the backup file `file` is off-site (uploaded and checked, with its manifest). Loop. */
bool offsite_has_backup(const char *file, void *offsite);
/* The backups in the bucket (uploaded and checked, with their manifests), from the record, oldest
 * first: a new array of {name, kind, started_at, file_size_bytes, verified, location "offsite"}
 * (see BackupsOffsiteListFn); empty while the record is not read. Loop. */
json_t *offsite_backups(void *offsite);
/* The WAL archive's question before its retention removes `file` (a file name of the archive): may
 * it go? True when it is off-site (recorded, or already taken out by the bucket's retention) or
 * when the WAL archive is not copied off-site; false while it is not, or the record is not read. */
bool offsite_wal_may_go(const char *file, void *offsite);
/* Where the bucket's retention learns the WAL segment size (0 while it is not known: then no WAL is
 * removed from the bucket). */
void offsite_set_wal_segment_size(Offsite *o, uint64_t (*seg_size)(void *data), void *data);
/* Cancel the transfers, wait for the thread-pool jobs, close; closed_cb(data) when done. */
void offsite_close(Offsite *o, void (*closed_cb)(void *data), void *data);

#endif
