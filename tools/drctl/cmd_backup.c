/*
 * drctl backup commands: backups, backup-status, backup now, backup decrypt, verify.
 *
 * Owns their table entries and the rendering of their replies, and `backup decrypt`, which runs
 * here without a daemon: it verifies every chunk of a backup file with the key and writes the
 * pg_restore input under a temporary name, renamed only when the whole file verified.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomicfile.h"
#include "backupstream.h"
#include "bcf.h"
#include "drctl.h"
#include "err.h"

static void drctl_print_backups(const json_t *r)
{
    size_t i;
    json_t *b;
    char size[32], dur[32];

    printf("%-52s %-8s %-20s %10s %9s %-8s %-13s %s\n", "NAME", "KIND", "STARTED", "SIZE", "DURATION", "VERIFIED",
           "TEST-RESTORED", "LOCATION");
    json_array_foreach(json_object_get(r, "backups"), i, b) {
        drctl_size(drctl_int(b, "file_size_bytes"), size, sizeof(size));
        if (json_object_get(b, "duration_ms"))
            snprintf(dur, sizeof(dur), "%.1fs", (double)drctl_int(b, "duration_ms") / 1000.0);
        else
            snprintf(dur, sizeof(dur), "-"); /* only off-site: the record has no duration */
        printf("%-52s %-8s %-20s %10s %9s %-8s %-13s %s\n", drctl_str(b, "name", "?"), drctl_str(b, "kind", "logical"),
               drctl_str(b, "started_at", "?"), size, dur, json_is_true(json_object_get(b, "verified")) ? "yes" : "NO",
               drctl_str(b, "restore_test", "skipped"), drctl_str(b, "location", "local"));
    }
    if (json_array_size(json_object_get(r, "backups")) == 0)
        printf("(no backups in %s)\n", drctl_str(r, "directory", "?"));
    const json_t *f = json_object_get(r, "failures");
    if (json_array_size(f)) {
        printf("\nrecent failures:\n");
        json_array_foreach(f, i, b)
            printf("  %-20s %-48s %-8s %s\n", drctl_str(b, "started_at", "?"), drctl_str(b, "file", "?"),
                   drctl_str(b, "stage", "?"), drctl_str(b, "error", ""));
    }
    const json_t *run = json_object_get(r, "running");
    if (json_is_object(run))
        printf("\nrunning: %s of %s\n", drctl_str(run, "kind", "?"), drctl_str(run, "name", "?"));
}

static void drctl_print_backup_status(const json_t *r)
{
    printf("%s\n", drctl_str(r, "line", "?"));
}

static void drctl_print_backup_now(const json_t *r)
{
    if (json_object_get(r, "manifest")) {
        const json_t *m = json_object_get(r, "manifest");
        char size[32];
        drctl_size(drctl_int(m, "file_size_bytes"), size, sizeof(size));
        printf("backup %s done: %s, sha256 %s\n", drctl_str(r, "name", "?"), size, drctl_str(m, "sha256", "?"));
        const json_t *wal = json_object_get(m, "wal");
        if (json_is_object(wal))
            printf("needs WAL %s to %s on timeline %" PRId64 " (from the WAL archive)\n", drctl_str(wal, "start_lsn", "?"),
                   drctl_str(wal, "stop_lsn", "?"), drctl_int(wal, "timeline"));
    } else {
        printf("backup %s started\n", drctl_str(r, "name", "?"));
    }
}

/* --offsite: the daemon's verify_offsite, which needs a name. */
static int drctl_verify_args(const OptParse *p, DrctlRequest *req)
{
    if (!optspec_flag(p, "offsite"))
        return 0;
    if (optspec_flag(p, "restore") || !optspec_string(p, "name", NULL)) {
        fprintf(stderr, "drctl: verify --offsite needs NAME (and no --restore)\n");
        return DRCTL_EXIT_USAGE;
    }
    req->wire = "verify_offsite";
    json_object_del(req->args, "offsite");
    return 0;
}

static void drctl_print_verify(const json_t *r)
{
    if (json_is_true(json_object_get(r, "offsite"))) {
        char size[32];
        drctl_size(drctl_int(r, "bytes"), size, sizeof(size));
        printf("%s: the off-site copy %s verified (%s, %lld chunks, sha256 %s) in %.1fs\n", drctl_str(r, "name", "?"),
               drctl_str(r, "key", "?"), size, (long long)drctl_int(r, "chunks"), drctl_str(r, "sha256", "?"),
               (double)drctl_int(r, "duration_ms") / 1000.0);
        return;
    }
    const json_t *rt = json_object_get(r, "restore_test");
    if (json_is_object(rt)) {
        printf("test restore of %s: %s in %.1fs (scratch database %s, dropped: %s)\n", drctl_str(r, "name", "?"),
               drctl_str(rt, "status", "?"), (double)drctl_int(rt, "duration_ms") / 1000.0, drctl_str(rt, "database", "?"),
               json_is_true(json_object_get(rt, "dropped")) ? "yes" : "NO");
        size_t i;
        json_t *q;
        json_array_foreach(json_object_get(rt, "queries"), i, q) {
            char *rows = json_dumps(json_object_get(q, "rows"), JSON_COMPACT);
            printf("  %s -> %s (%" PRId64 " ms)\n", drctl_str(q, "query", "?"), rows ? rows : drctl_str(q, "error", "?"),
                   drctl_int(q, "duration_ms"));
            free(rows);
        }
        return;
    }
    const json_t *v = json_object_get(r, "verification");
    if (!json_object_get(v, "pg_restore_list")) { /* a physical backup: the container is the check */
        printf("%s: verified (container %s, sha256 %s)\n", drctl_str(r, "name", "?"), drctl_str(v, "container", "?"),
               json_is_true(json_object_get(v, "sha256_match")) ? "matches" : "MISMATCH");
        return;
    }
    printf("%s: verified (container %s, sha256 %s, pg_restore --list %s)\n", drctl_str(r, "name", "?"),
           drctl_str(v, "container", "?"), json_is_true(json_object_get(v, "sha256_match")) ? "matches" : "MISMATCH",
           drctl_str(v, "pg_restore_list", "?"));
}

typedef struct DrctlDecrypt {
    AtomicFile *out;
} DrctlDecrypt;

static int drctl_decrypt_sink(void *ctx, const uint8_t *data, size_t len)
{
    return atomicfile_append(((DrctlDecrypt *)ctx)->out, data, len);
}

/* `drctl backup decrypt`: no daemon. Output under a temporary name, renamed only when the whole file
 * verified. */
static int drctl_backup_decrypt(const Drctl *c, const OptParse *p)
{
    const char *key_file = optspec_string(p, "key-file", NULL), *in = optspec_string(p, "file", NULL);
    const char *outp = optspec_string(p, "output", NULL);
    bool raw = optspec_flag(p, "raw");
    char outbuf[4096], err[512] = "";
    uint8_t key[BCF_KEY_LEN];

    (void)c;
    if (!outp) {
        /* x.dump.zst.drbk -> x.dump (or x.dump.zst with --raw) */
        snprintf(outbuf, sizeof(outbuf), "%s", in);
        size_t n = strlen(outbuf);
        if (n > 5 && strcmp(outbuf + n - 5, BCF_FILE_EXT) == 0)
            outbuf[n -= 5] = '\0';
        else {
            fprintf(stderr, "drctl backup decrypt: '%s' does not end in %s; name the output with -o\n", in, BCF_FILE_EXT);
            return DRCTL_EXIT_USAGE;
        }
        if (!raw) {
            char *dot = strrchr(outbuf, '.');
            if (dot && (strcmp(dot, ".zst") == 0 || strcmp(dot, ".gz") == 0))
                *dot = '\0';
        }
        outp = outbuf;
    }
    if (bcf_load_key_file(key_file, key, err, sizeof(err)) < 0) {
        fprintf(stderr, "drctl backup decrypt: %s\n", err);
        return DRCTL_EXIT_FAILED;
    }
    FILE *f = fopen(in, "rb");
    if (!f) {
        fprintf(stderr, "drctl backup decrypt: cannot open '%s': %s\n", in, strerror(errno));
        return DRCTL_EXIT_FAILED;
    }
    int r = 0;
    DrctlDecrypt ctx = {.out = atomicfile_open(outp, 0600, &r)};
    if (!ctx.out) {
        fprintf(stderr, "drctl backup decrypt: cannot create '%s': %s\n", outp, err_str(r));
        fclose(f);
        return DRCTL_EXIT_FAILED;
    }
    BackupStreamReader *rd = backupstream_reader_new(key, !raw, drctl_decrypt_sink, &ctx);
    memset(key, 0, sizeof(key));
    static uint8_t buf[1 << 20];
    size_t n;
    while (rd && r == 0 && (n = fread(buf, 1, sizeof(buf), f)) > 0)
        r = backupstream_reader_update(rd, buf, n);
    if (rd && r == 0 && ferror(f))
        r = -EIO;
    BackupStreamStats st;
    int fr = rd ? backupstream_reader_finish(rd, &st) : -ENOMEM;
    if (r == 0)
        r = fr;
    fclose(f);
    if (r < 0) {
        fprintf(stderr, "drctl backup decrypt: '%s' failed verification, nothing written: %s\n", in,
                rd && backupstream_reader_errmsg(rd)[0] ? backupstream_reader_errmsg(rd) : err_str(r));
        atomicfile_abort(ctx.out);
        backupstream_reader_free(rd);
        return DRCTL_EXIT_FAILED;
    }
    backupstream_reader_free(rd);
    r = atomicfile_commit(ctx.out);
    if (r < 0) {
        fprintf(stderr, "drctl backup decrypt: cannot write '%s': %s\n", outp, err_str(r));
        return DRCTL_EXIT_FAILED;
    }
    printf("%s: verified (%" PRIu64 " chunks, sha256 %s); wrote %s (%" PRIu64 " bytes)\n", in, st.chunks,
           st.file_sha256_hex, outp, raw ? st.payload_bytes : st.plain_bytes);
    return DRCTL_EXIT_OK;
}

const OptCommand drctl_cmd_backups = {
    .name = "backups",
    .summary = "list backups (name, kind, time, size, duration, verified, test-restored, location)",
    .description = "The backup catalog (name, kind: logical or physical, start time, size, duration, verified, "
                   "test-restored, and location: local, both when the backup and its manifest are also in "
                   "the repository.s3 bucket, or offsite when only the bucket still has it, removed here by "
                   "backup.retention), recent failures, and what is running.",
    .data = &(const DrctlAction){.wire = "backups", .print = drctl_print_backups},
};

const OptCommand drctl_cmd_backup_status = {
    .name = "backup-status",
    .summary = "one line: latest backup, size, age, verified",
    .description = "One line: the latest backup, its size, age and whether it was verified.",
    .data = &(const DrctlAction){.wire = "backup_status", .print = drctl_print_backup_status},
};

static const OptCommand drctl_cmd_backup_now = {
    .name = "now",
    .summary = "start a backup now (--physical: a base backup) [operator]",
    .description = "Start a backup: logical (pg_dump of backup.conninfo's database), or with --physical a base "
                   "backup of the whole cluster (pg_basebackup, backup.physical). Without --wait it answers when "
                   "the job started; with it, when the backup is done: raise the timeout for big databases (drctl "
                   "backup now --wait -t 1h). Refused while another backup, verification or test restore runs. "
                   "[operator]",
    .options = (const OptSpec[]){
        {.name = "wait", .kind = OPTSPEC_FLAG, .help = "answer when the backup is done, not when it started"},
        {.name = "physical", .kind = OPTSPEC_FLAG, .help = "a physical base backup (pg_basebackup), not pg_dump"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "backup_now", .print = drctl_print_backup_now},
};

static const OptCommand drctl_cmd_backup_decrypt = {
    .name = "decrypt",
    .summary = "turn a backup into a pg_restore input (or a base backup's tar); no daemon needed",
    .description = "No daemon needed. Verify every chunk of backup FILE with the key in K (32 raw bytes or 64 "
                   "hex digits; a regular file owned by the user running drctl, mode 0600 or 0400) and write the "
                   "decompressed pg_dump archive to OUT (default: FILE without .drbk and the codec extension), a "
                   "pg_restore input; for a physical backup (.base.tar...) the tar of the data directory. The output is written to a temporary and renamed only when the whole file "
                   "verified; otherwise nothing is written and drctl exits 1.",
    .options = (const OptSpec[]){
        {.name = "key-file", .kind = OPTSPEC_STRING, .required = true, .metavar = "K",
         .help = "the backup key (32 raw bytes or 64 hex digits)"},
        {.name = "file", .kind = OPTSPEC_POSITIONAL, .required = true, .metavar = "FILE",
         .help = "the backup file (.drbk)"},
        {.name = "output", .short_name = 'o', .kind = OPTSPEC_STRING, .metavar = "OUT",
         .help = "where to write (default: FILE without .drbk and the codec extension)"},
        {.name = "raw", .kind = OPTSPEC_FLAG, .help = "keep the compressed payload"},
        {0},
    },
    .data = &(const DrctlAction){.where = DRCTL_NO_DAEMON, .run = drctl_backup_decrypt},
};

const OptCommand drctl_cmd_backup = {
    .name = "backup",
    .summary = "take a backup now, or decrypt a backup file",
    .description = "Take a backup now (backup now), or turn a backup file into a pg_restore input without the "
                   "daemon (backup decrypt).",
    .subs = (const OptCommand *const[]){&drctl_cmd_backup_now, &drctl_cmd_backup_decrypt, NULL},
};

const OptCommand drctl_cmd_verify = {
    .name = "verify",
    .summary = "verify a backup (newest by default); --restore: test restore; --offsite: the bucket's copy [operator]",
    .description = "Verify a backup (the newest by default): decrypt, check every chunk, the SHA-256 against the "
                   "manifest, and pg_restore --list on the stream (logical backups). With --restore, restore it "
                   "into a scratch database, run the validation queries, and drop it (logical backups only: the "
                   "newest logical one by default; a physical backup is refused). With --offsite NAME, the copy in "
                   "the repository.s3 bucket instead: its manifest and the file downloaded from the bucket and "
                   "verified as they arrive (every chunk, the SHA-256 against the bucket's manifest and "
                   "x-amz-meta-sha256), nothing written to disk. Answers when done. [operator]",
    .options = (const OptSpec[]){
        {.name = "name", .kind = OPTSPEC_POSITIONAL, .metavar = "NAME", .help = "the backup (default: the newest)"},
        {.name = "restore", .kind = OPTSPEC_FLAG, .help = "also test-restore it into a scratch database"},
        {.name = "offsite", .kind = OPTSPEC_FLAG, .help = "verify the copy in the repository.s3 bucket (NAME needed)"},
        {0},
    },
    .data = &(const DrctlAction){.wire = "verify", .args = drctl_verify_args, .print = drctl_print_verify},
};
