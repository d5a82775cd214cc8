/*
 * drctl WAL archive commands: wal-status (the continuous archive as the daemon sees it: how far it
 * is, how far behind the primary, the slot, the oldest restorable point, the gaps) and wal-fetch
 * (no daemon: one WAL file out of the archive, verified, for PostgreSQL's restore_command).
 *
 * Owns their table entries, the rendering of the daemon's wal_status reply, and wal-fetch.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atomicfile.h"
#include "bcf.h"
#include "drctl.h"
#include "err.h"
#include "walarchive.h"

/* restore_command: a nonzero exit is "not archived" (the end of the archive, normal); an exit
 * above 125 makes PostgreSQL abort the recovery, which is what a file failing verification must
 * do rather than end the replay early at the damage. */
#define DRCTL_WAL_NOT_FOUND 1
#define DRCTL_WAL_DAMAGED 126

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
    const json_t *sy = json_object_get(r, "synchronous");
    if (json_is_true(json_object_get(sy, "configured")))
        printf("sync       %s\n", json_is_true(json_object_get(sy, "on")) ? "on: commits wait for the archive"
                                   : json_is_true(json_object_get(sy, "fell_back"))
                                       ? "SUSPENDED (the receiver was down): back once caught up"
                                       : "not yet on (waiting to catch up, or synchronous_standby_names is not ours)");
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

/* The archive file holding `want` (a segment or a history file), else "". */
static WalFileKind drctl_wal_find(const char *dir, const char *want, uint64_t seg_size, char *out, size_t n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    WalFileKind found = WALFILE_NONE;
    size_t wl = strlen(want);
    bool history = wl == 16 && !strcmp(want + 8, ".history");

    out[0] = '\0';
    if (!d)
        return WALFILE_NONE;
    while ((de = readdir(d)) != NULL) {
        uint32_t tli;
        uint64_t segno;
        if (strncmp(de->d_name, want, wl) != 0)
            continue;
        WalFileKind k = walarchive_classify(de->d_name, seg_size, &tli, &segno);
        if ((history && k == WALFILE_HISTORY) || (!history && k == WALFILE_SEGMENT)) {
            snprintf(out, n, "%s", de->d_name);
            found = k;
            break;
        }
        if (!history && k == WALFILE_PARTIAL && found == WALFILE_NONE) {
            snprintf(out, n, "%s", de->d_name);
            found = k; /* used only when the complete segment is not there */
        }
    }
    closedir(d);
    return found;
}

/* The key that opens the archive file at path: the one in key_file when its id is the id the
 * file's header names, else ring/<id>.key (the daemon's backup key ring, backup.keyring_dir) when
 * a ring is given. 0, or DR_EKEY / DR_ECORRUPT with err saying which ids did not match. */
static int drctl_wal_key(const char *path, bool partial, const char *key_file, const char *ring,
                         uint8_t key[BCF_KEY_LEN], char *err, size_t errlen)
{
    /* a partial file is pieces, each an 8-byte offset before its container */
    size_t at = partial ? 8 : 0;
    uint8_t head[8 + BCF_KEY_ID_OFFSET + BCF_KEY_ID_LEN], kid[BCF_KEY_ID_LEN];
    char want[2 * BCF_KEY_ID_LEN + 1], have[2 * BCF_KEY_ID_LEN + 1], rpath[4400];
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n = fd < 0 ? -1 : read(fd, head, at + BCF_KEY_ID_OFFSET + BCF_KEY_ID_LEN);
    if (fd >= 0)
        close(fd);
    if (bcf_load_key_file(key_file, key, err, errlen) < 0)
        return DR_EKEY;
    /* no readable header: K, and the verification says what is wrong with the file */
    if (n != (ssize_t)(at + BCF_KEY_ID_OFFSET + BCF_KEY_ID_LEN) || memcmp(head + at, BCF_MAGIC, strlen(BCF_MAGIC)))
        return 0;
    bcf_hex(head + at + BCF_KEY_ID_OFFSET, BCF_KEY_ID_LEN, want);
    bcf_key_id(key, kid);
    if (!strcmp(bcf_hex(kid, sizeof(kid), have), want))
        return 0;
    explicit_bzero(key, BCF_KEY_LEN);
    if (!ring) {
        snprintf(err, errlen, "%.200s was written under key id %s, %.200s is key id %s (after a key rotation, give the key "
                 "ring with --key-ring)", path, want, key_file, have);
        return DR_EKEY;
    }
    snprintf(rpath, sizeof(rpath), "%s/%s.key", ring, want);
    if (bcf_load_key_file(rpath, key, err, errlen) < 0)
        return DR_EKEY;
    bcf_key_id(key, kid);
    if (!strcmp(bcf_hex(kid, sizeof(kid), have), want))
        return 0;
    explicit_bzero(key, BCF_KEY_LEN);
    snprintf(err, errlen, "%.160s was written under key id %s; neither %.160s nor %.160s is that key", path, want, key_file, rpath);
    return DR_EKEY;
}

static int drctl_wal_fetch(const Drctl *c, const OptParse *p)
{
    const char *key_file = optspec_string(p, "key-file", NULL), *dir = optspec_string(p, "archive", NULL);
    const char *ring = optspec_string(p, "key-ring", NULL);
    const char *want = optspec_string(p, "name", NULL), *dest = optspec_string(p, "destination", NULL);
    const char *ssz = optspec_string(p, "segment-size", "16");
    char err[640] = "", name[256], path[4400];
    uint8_t key[BCF_KEY_LEN];
    uint8_t *data = NULL;
    size_t len = 0;
    uint32_t tli;
    uint64_t segno;
    char *end;
    unsigned long mib = strtoul(ssz, &end, 10);
    uint64_t seg_size = (uint64_t)mib << 20;

    (void)c;
    if (*end || mib < 1 || mib > 1024 || (mib & (mib - 1))) {
        fprintf(stderr, "drctl wal-fetch: --segment-size must be a power of two in MiB (1..1024), not '%s'\n", ssz);
        return DRCTL_EXIT_USAGE;
    }
    bool history = strlen(want) == 16 && !strcmp(want + 8, ".history");
    if (!history && (strlen(want) != WAL_NAME_LEN || walarchive_parse_seg(want, seg_size, &tli, &segno) < 0)) {
        fprintf(stderr, "drctl wal-fetch: '%s' is not a WAL segment or timeline history file name\n", want);
        return DRCTL_WAL_NOT_FOUND; /* PostgreSQL asks for other files too (.backup): not archived here */
    }
    WalFileKind k = drctl_wal_find(dir, want, seg_size, name, sizeof(name));
    if (k == WALFILE_NONE) {
        fprintf(stderr, "drctl wal-fetch: %s is not in the archive %s\n", want, dir);
        return DRCTL_WAL_NOT_FOUND;
    }
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    if (drctl_wal_key(path, k == WALFILE_PARTIAL, key_file, ring, key, err, sizeof(err)) < 0) {
        fprintf(stderr, "drctl wal-fetch: %s\n", err);
        return DRCTL_WAL_DAMAGED;
    }
    int r;
    if (k == WALFILE_PARTIAL) {
        /* the segment being received: its bytes, then zeros (the end of WAL for the replay) */
        bool torn = false;
        uint64_t have = 0;
        if (!(data = calloc(1, (size_t)seg_size))) {
            explicit_bzero(key, sizeof(key));
            return DRCTL_WAL_DAMAGED;
        }
        len = (size_t)seg_size;
        r = walarchive_read_partial(path, key, data, seg_size, false, &have, &torn, err, sizeof(err));
    } else {
        r = walarchive_read_file(path, key, history ? (1u << 24) : (size_t)seg_size, &data, &len, err, sizeof(err));
        if (r == 0 && !history && len != seg_size) {
            snprintf(err, sizeof(err), "%s holds %zu bytes, not a segment of %" PRIu64 " (--segment-size?)", name, len,
                     seg_size);
            r = DR_ECORRUPT;
        }
    }
    explicit_bzero(key, sizeof(key));
    if (r < 0) {
        fprintf(stderr, "drctl wal-fetch: %s failed verification, nothing written: %s\n", path, err);
        free(data);
        return DRCTL_WAL_DAMAGED;
    }
    r = atomicfile_write(dest, data, len, 0600);
    free(data);
    if (r < 0) {
        fprintf(stderr, "drctl wal-fetch: cannot write '%s': %s\n", dest, err_str(r));
        return DRCTL_WAL_DAMAGED;
    }
    return 0;
}

const OptCommand drctl_cmd_wal_fetch = {
    .name = "wal-fetch",
    .summary = "one WAL file out of the archive, verified: PostgreSQL's restore_command; no daemon needed",
    .description = "No daemon needed. Find NAME (a segment, or a timeline history file such as 00000002.history) in "
                   "the WAL archive DIR, verify and decrypt it with the key in K (or, when the file was written under "
                   "another key, the key of that id in the key ring R), and write it to DEST (a "
                   "temporary renamed into place). A segment still being received is given as its bytes followed "
                   "by zeros, which PostgreSQL replays as the end of WAL. For restore_command: "
                   "'drctl wal-fetch --key-file K --archive DIR %f %p'. Exits 0 when written, 1 when NAME is not "
                   "archived (the normal end of an archive recovery), 126 when the file failed verification or "
                   "could not be written (PostgreSQL then stops the recovery instead of ending it early at the "
                   "damage).",
    .options = (const OptSpec[]){
        {.name = "key-file", .kind = OPTSPEC_STRING, .required = true, .metavar = "K",
         .help = "the backup key (32 raw bytes or 64 hex digits; owned by the user running drctl, 0600)"},
        {.name = "key-ring", .kind = OPTSPEC_STRING, .metavar = "R",
         .help = "the daemon's backup key ring (STATE_DIR/backup-keys: ID.key files) for files written under a "
                 "rotated key"},
        {.name = "archive", .kind = OPTSPEC_STRING, .required = true, .metavar = "DIR",
         .help = "the WAL archive directory (wal.directory)"},
        {.name = "segment-size", .kind = OPTSPEC_STRING, .metavar = "MIB",
         .help = "the cluster's wal_segment_size in MiB (default 16)"},
        {.name = "name", .kind = OPTSPEC_POSITIONAL, .required = true, .metavar = "NAME",
         .help = "the WAL file PostgreSQL asks for (%f)"},
        {.name = "destination", .kind = OPTSPEC_POSITIONAL, .required = true, .metavar = "DEST",
         .help = "where to write it (%p)"},
        {0},
    },
    .data = &(const DrctlAction){.where = DRCTL_NO_DAEMON, .run = drctl_wal_fetch},
};

static int drctl_args_recover(const OptParse *p, DrctlRequest *req)
{
    const char *t = optspec_string(p, "timestamp", NULL);
    int64_t ms;
    json_object_del(req->args, "timestamp");
    if (drctl_parse_time(t, &ms) < 0) {
        fprintf(stderr, "drctl recover: --timestamp needs epoch milliseconds, an ISO-8601 UTC time "
                        "(2025-08-29T10:00:00Z) or a duration ago (10m), not '%s'\n", t);
        return DRCTL_EXIT_USAGE;
    }
    json_object_set_new(req->args, "timestamp_ms", json_integer(ms));
    return 0;
}

static void drctl_print_recover(const json_t *r)
{
    if (json_object_get(r, "run")) { /* the recovery run started: its plan, then where to follow it */
        drctl_print_recover(json_object_get(r, "plan"));
        printf("recovery run %s started (%s mode): drctl run %s\n", drctl_str(r, "run", "?"), drctl_str(r, "mode", "?"),
               drctl_str(r, "run", "?"));
        return;
    }
    const json_t *b = json_object_get(r, "base_backup"), *w = json_object_get(r, "wal");
    char ago[64], size[32];

    drctl_ago(drctl_int(r, "target_ms"), ago, sizeof(ago));
    printf("target        %s\n", ago);
    if (b) {
        drctl_size(drctl_int(b, "file_size_bytes"), size, sizeof(size));
        printf("base backup   %s (finished %s, WAL from %s, %s)\n", drctl_str(b, "name", "?"),
               drctl_str(b, "finished_at", "?"), drctl_str(b, "start_lsn", "?"), size);
    }
    if (w)
        printf("WAL           %s .. %s: %lld segments, %s\n", drctl_str(w, "from_segment", "?"),
               drctl_str(w, "to_segment", "?"), (long long)drctl_int(w, "segments"),
               json_is_true(json_object_get(w, "continuous")) ? "continuous" : "NOT continuous");
    if (drctl_int(r, "archive_end_ms") > 0) {
        drctl_ago(drctl_int(r, "archive_end_ms"), ago, sizeof(ago));
        printf("archive ends  %s\n", ago);
    }
    if (json_is_true(json_object_get(r, "ok")))
        printf("a recovery to the target is possible; estimated %.0f s to restore and replay%s\n",
               json_number_value(json_object_get(r, "estimate_s")),
               json_is_true(json_object_get(r, "dry_run")) ? " (dry run: nothing changed)" : "");
    else
        printf("a recovery to the target is NOT possible: %s\n", drctl_str(r, "why", "?"));
}

const OptCommand drctl_cmd_recover = {
    .name = "recover",
    .summary = "recover the cluster to a point in time (a point_in_time run); --dry-run: only its plan [operator]",
    .description = "Recover the cluster to a point in time from a base backup and the WAL archive. --dry-run "
                   "changes nothing and prints the plan: the newest verified base backup that finished before the "
                   "target, the archived segments from its start to the one being written at the target, whether "
                   "they are all there, where the archive ends, and a rough estimate of the restore's duration. It "
                   "refuses a target past the end of the archive or across a gap and says why (PostgreSQL itself "
                   "fails only after the whole restore). Without --dry-run the same plan is made first and, when a "
                   "recovery is possible, the daemon starts the point_in_time scenario (docs/scenarios.md): halt, "
                   "restore the base backup into a new data directory, replay to the target on a side port, "
                   "validate, switch it in, reconcile, resume; prints the run id (follow it with drctl run ID). A "
                   "target it cannot reach is refused before anything is touched. --manual stops before the "
                   "restore, the switch and the live resume until drctl approve. Exits 1 unless a recovery is "
                   "possible (or started).",
    .options = (const OptSpec[]){
        {.name = "timestamp", .kind = OPTSPEC_STRING, .required = true, .metavar = "T",
         .help = "the target: epoch ms, an ISO-8601 UTC time, or a duration ago (10m)"},
        {.name = "dry-run", .kind = OPTSPEC_FLAG, .help = "print the plan, change nothing"},
        {.name = "manual", .kind = OPTSPEC_FLAG, .help = "the run stops at its gates until drctl approve"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "recover", .exit = DRCTL_EXIT_UNLESS_OK, .args = drctl_args_recover,
                                 .print = drctl_print_recover},
};
