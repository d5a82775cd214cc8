/*
 * drctl off-site command: offsite-status (the copy of the backups and the WAL archive in the
 * repository.s3 bucket: what is queued, the last upload, the lag, the failures, the retention).
 *
 * Owns its table entry and the rendering of the daemon's offsite_status reply.
 */
#include <stdio.h>
#include <string.h>

#include "drctl.h"

static void drctl_print_offsite(const json_t *r)
{
    char ago[64], size[32];
    const json_t *q = json_object_get(r, "queue"), *t, *last = json_object_get(r, "last_upload");
    const json_t *fail = json_object_get(r, "last_failure");
    size_t i;

    if (!json_is_true(json_object_get(r, "enabled"))) {
        printf("no repository.s3 section is configured: backups and WAL stay on this host only\n");
        return;
    }
    printf("bucket     %s/%s%s (%s style), prefix '%s'\n", drctl_str(r, "endpoint", "?"), drctl_str(r, "bucket", "?"),
           "", drctl_str(r, "url_style", "?"), drctl_str(r, "prefix", ""));
    if (!json_is_true(json_object_get(r, "loaded")))
        printf("record     %s not read yet%s%s\n", drctl_str(r, "state_file", "?"),
               drctl_str(r, "scan_error", "")[0] ? ": " : "", drctl_str(r, "scan_error", ""));
    printf("state      %s; lag %.0f s (oldest file not yet off-site)%s\n",
           json_is_true(json_object_get(r, "failing")) ? "FAILING" : "ok",
           json_number_value(json_object_get(r, "lag_s")),
           drctl_int(r, "lag_level") == 2 ? " CRITICAL" : drctl_int(r, "lag_level") == 1 ? " warning" : "");
    if (last) {
        drctl_ago(drctl_int(last, "at_ms"), ago, sizeof(ago));
        drctl_size(drctl_int(last, "bytes"), size, sizeof(size));
        printf("last       %s (%s) %s\n", drctl_str(last, "key", "?"), size, ago);
    } else {
        printf("last       no upload since the daemon started\n");
    }
    drctl_size(drctl_int(r, "bytes_uploaded"), size, sizeof(size));
    printf("uploaded   %lld object(s), %s since start; %lld recorded off-site\n",
           (long long)drctl_int(r, "objects_uploaded"), size, (long long)drctl_int(r, "objects_recorded"));
    printf("failures   %lld (retries %lld)\n", (long long)drctl_int(r, "failures_total"),
           (long long)drctl_int(r, "retries_total"));
    if (fail) {
        drctl_ago(drctl_int(fail, "at_ms"), ago, sizeof(ago));
        printf("last error %s: %s\n", ago, drctl_str(fail, "error", ""));
    }
    if (drctl_str(r, "save_error", "")[0])
        printf("record     cannot be saved: %s\n", drctl_str(r, "save_error", ""));
    const json_t *ret = json_object_get(r, "retention"), *kept = json_object_get(ret, "kept");
    const json_t *gone = json_object_get(ret, "last_removed"), *pol = json_object_get(ret, "policy");
    if (!json_is_true(json_object_get(ret, "enabled"))) {
        printf("retention  none (repository.s3.retention): nothing is removed from the bucket\n");
    } else {
        printf("retention  max_age %llds, daily %lld, weekly %lld, monthly %lld\n",
               (long long)drctl_int(pol, "max_age_s"), (long long)drctl_int(pol, "daily"),
               (long long)drctl_int(pol, "weekly"), (long long)drctl_int(pol, "monthly"));
        if (kept)
            printf("  keeps    %lld backup(s) (%lld base), %lld WAL file(s), WAL from %s\n",
                   (long long)drctl_int(kept, "backups"), (long long)drctl_int(kept, "base_backups"),
                   (long long)drctl_int(kept, "wal_files"), drctl_str(kept, "wal_from_lsn", "the start (all kept)"));
        drctl_size(drctl_int(ret, "removed_bytes"), size, sizeof(size));
        printf("  removed  %lld object(s), %s since start; %lld pending\n", (long long)drctl_int(ret, "removed_total"),
               size, (long long)drctl_int(ret, "pending"));
        if (gone) {
            drctl_ago(drctl_int(gone, "at_ms"), ago, sizeof(ago));
            printf("  last     %s %s\n", drctl_str(gone, "key", "?"), ago);
        }
    }
    printf("queue      %lld file(s), %lld uploading\n", (long long)drctl_int(r, "queued"),
           (long long)drctl_int(r, "active"));
    json_array_foreach(q, i, t) {
        drctl_size(drctl_int(t, "size"), size, sizeof(size));
        printf("  %-8s %-10s %8s %6.0fs  %s", drctl_str(t, "kind", "?"), drctl_str(t, "phase", "?"),
               drctl_int(t, "size") ? size : "-", json_number_value(json_object_get(t, "age_s")),
               drctl_str(t, "key", "?"));
        if (drctl_int(t, "parts"))
            printf(" (part %lld of %lld)", (long long)drctl_int(t, "part") + 1, (long long)drctl_int(t, "parts"));
        if (drctl_str(t, "error", "")[0])
            printf("\n           %s%s", json_is_true(json_object_get(t, "failed")) ? "FAILED: " : "retrying: ",
                   drctl_str(t, "error", ""));
        printf("\n");
    }
}

const OptCommand drctl_cmd_offsite_status = {
    .name = "offsite-status",
    .summary = "the off-site copy in the S3 bucket: queue, last upload, lag, failures, retention",
    .description = "The copy of every verified backup (and its manifest) and every archived WAL file in the "
                   "repository.s3 bucket: the bucket, whether uploads are failing and the lag (the age of the "
                   "oldest file not yet off-site, which offsite.lag pages on), the last upload, what was "
                   "uploaded since the daemon started and how many objects the record holds, the failures and "
                   "retries, the bucket's retention (repository.s3.retention: its rules, what it keeps, the WAL "
                   "position kept from, what it removed and what removals are pending), and the queue (each "
                   "file's phase, size, age, part and last error; removals show as kind delete).",
    .data = &(const DrctlAction){.wire = "offsite_status", .print = drctl_print_offsite},
};
