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
 * offsite.repository, and the offsite_status control command.
 */
#ifndef DRSUP_OFFSITE_H
#define DRSUP_OFFSITE_H

#include <stdbool.h>

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
/* Cancel the transfers, wait for the thread-pool jobs, close; closed_cb(data) when done. */
void offsite_close(Offsite *o, void (*closed_cb)(void *data), void *data);

#endif
