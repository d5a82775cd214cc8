/*
 * drctl WAL archive commands: wal-status (the continuous archive as the daemon sees it: how far it
 * is, how far behind the primary, the slot, the oldest restorable point, the gaps).
 *
 * Owns its table entry and the rendering of the daemon's wal_status reply.
 */
#include <stdio.h>
#include <string.h>

#include "drctl.h"

static void drctl_print_wal(const json_t *r)
{
    char ago[64], size[32];
    const json_t *o = json_object_get(r, "oldest"), *p = json_object_get(r, "partial");
    const json_t *gaps = json_object_get(r, "gaps"), *g;
    size_t i;

    if (!json_is_true(json_object_get(r, "enabled"))) {
        printf("no wal: section is configured: WAL is not archived (recovery goes back only to a backup)\n");
        return;
    }
    drctl_ago(drctl_int(r, "since_ms"), ago, sizeof(ago));
    printf("receiver   %s since %s, slot %s (%s)\n", drctl_str(r, "state", "?"), ago,
           drctl_str(json_object_get(r, "slot"), "name", "?"),
           json_is_true(json_object_get(json_object_get(r, "slot"), "active")) ? "active" : "not active");
    if (drctl_str(r, "error", "")[0])
        printf("error      %s\n", drctl_str(r, "error", ""));
    printf("directory  %s\n", drctl_str(r, "directory", "?"));
    if (!json_object_get(r, "archived_lsn")) {
        printf("archive    not read yet (the receiver has not connected)\n");
        return;
    }
    if (drctl_int(r, "archived_at_ms") > 0)
        drctl_ago(drctl_int(r, "archived_at_ms"), ago, sizeof(ago));
    else
        snprintf(ago, sizeof(ago), "not yet");
    printf("archived   up to %s (%s), timeline %lld\n", drctl_str(r, "archived_lsn", "?"), ago,
           (long long)drctl_int(r, "timeline"));
    drctl_size(drctl_int(r, "lag_bytes"), size, sizeof(size));
    printf("primary    at %s, the archive is %s (%.1f s) behind\n", drctl_str(r, "primary_lsn", "?"), size,
           json_number_value(json_object_get(r, "lag_s")));
    printf("partial    %s: %lld bytes received, %lld sealed\n", drctl_str(p, "segment", "?"),
           (long long)drctl_int(p, "received"), (long long)drctl_int(p, "sealed"));
    if (o) {
        drctl_ago(drctl_int(o, "at_ms"), ago, sizeof(ago));
        printf("segments   %lld complete; oldest %s (from %s, archived %s)\n", (long long)drctl_int(r, "segments"),
               drctl_str(o, "segment", "?"), drctl_str(o, "lsn", "?"), ago);
    } else {
        printf("segments   none complete yet\n");
    }
    if (!json_array_size(gaps))
        printf("gaps       none\n");
    json_array_foreach(gaps, i, g) printf("gap        %s .. %s: %s\n", drctl_str(g, "from", "?"), drctl_str(g, "to", "?"),
                                          drctl_str(g, "reason", ""));
}

const OptCommand drctl_cmd_wal_status = {
    .name = "wal-status",
    .summary = "the WAL archive: newest archived position and time, lag, slot, oldest restorable point, gaps",
    .description = "The continuous WAL archive (the wal: section): the receiver's state and its replication slot, "
                   "the newest position durable in the archive and when it advanced, how far the primary is "
                   "ahead in bytes and seconds, the segment being received, the complete segments and the "
                   "oldest one (the oldest point WAL replay can start from), and the gaps found (WAL missing "
                   "from the archive: no point-in-time recovery across one).",
    .data = &(const DrctlAction){.wire = "wal_status", .print = drctl_print_wal},
};
