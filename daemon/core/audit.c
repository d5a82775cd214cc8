/*
 * audit: the hash-chained audit log (see audit.h and docs/audit.md).
 *
 * A record is one JSON line with sorted keys; its "hash" is the SHA-256 (hex) of the record
 * without "hash", serialised compact with sorted keys, and its "prev" the hash of the record
 * before ("" for the first). Records are chained on the loop as they happen and queued; one batch
 * at a time is appended with write() and fdatasync() and then the head is replaced atomically, on
 * the thread pool. Reading (`audit`) and verifying run on the thread pool too.
 *
 * Rotation: once audit.log has grown past max_bytes, the next record starts a new file, and the
 * first record of every new file is a "rotated" record (chained like any other, so the first of
 * the new file follows the last of the old): its generation (the file's number since the log
 * began, 1 for the file that starts at seq 1), the keep in force and the oldest generation the
 * rotation keeps. The decision and the record are made on the loop, the files moved on the pool by
 * the batch that carries the split (one batch carries up to AUDIT_MAX_SPLITS): the old file's part
 * appended and fdatasync'ed, audit.log.K and beyond removed, audit.log.N renamed to .N+1 from the
 * highest down, audit.log to audit.log.1, a new audit.log created, the directory fsync'ed, then the
 * new file's part written. A start that
 * finds a rotation cut short (audit.log gone or empty with audit.log.1 there, or audit.log.1
 * missing with older ones there) completes it and records the rotated record again. An `audit`
 * read waits for the batch being written and holds the next back while it runs (records queue in
 * memory meanwhile), so no rotation moves the files under it.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdint.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomicfile.h"
#include "clock.h"
#include "core/audit.h"
#include "err.h"
#include "log.h"

#define AUDIT_READ_MAX 1000 /* records an `audit` answer carries at most (the newest) */
#define AUDIT_MAX_SPLITS 16 /* rotations one batch can carry (records queued while a write is in flight) */

struct Audit {
    uv_loop_t *loop;
    EventBus *events;
    Control *control;
    int sub;
    int fd;     /* the live file; used by the one write in flight (thread pool) or, between writes, here */
    bool opened;
    char *log_path, *head_path;
    uint64_t max_bytes;      /* rotate past this; 0: never */
    int keep;                /* rotated files kept */
    uint64_t file_bytes;     /* the live file's size, with what is queued for it */
    uint64_t generation;     /* the live file's generation (1: the file the chain starts in) */
    uint64_t oldest_generation; /* the oldest generation the last rotation kept */
    size_t splits[AUDIT_MAX_SPLITS]; /* offsets in the queue where a new file begins, ascending */
    size_t n_splits;
    uint64_t seq;
    char last_hash[65];
    char *queue; /* lines not yet written */
    size_t queue_len, queue_cap;
    uint64_t queue_seq; /* seq of the last queued record */
    char queue_hash[65];
    bool writing, closing;
    int reading;                 /* `audit` reads on the pool: no batch is written meanwhile */
    struct AuditRead *waiting;   /* reads asked for while a batch was being written */
    int pending;
    void (*closed_cb)(void *);
    void *closed_data;
};

typedef struct AuditWrite {
    uv_work_t req;
    Audit *a;
    int fd;       /* the file written to; a rotation replaces it (the old one is closed then) */
    char *buf;
    size_t len;
    size_t splits[AUDIT_MAX_SPLITS]; /* buf[splits[i]..] goes to a new file: rotate there */
    size_t n_splits;
    int keep;
    int rotate_err; /* the rotation failed with this (the records went to the file fd writes) */
    uint64_t seq;
    char hash[65];
    int result;
} AuditWrite;

/* ---- the chain ---- */

static void audit_hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* The hash of a record (its "hash" field left out). */
static void audit_hash_of(const json_t *rec, char out[65])
{
    json_t *copy = json_copy((json_t *)(uintptr_t)rec);
    unsigned char md[SHA256_DIGEST_LENGTH];
    out[0] = '\0';
    if (!copy)
        return;
    json_object_del(copy, "hash");
    char *text = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
    if (text) {
        SHA256((const unsigned char *)text, strlen(text), md);
        audit_hex(md, sizeof(md), out);
    }
    free(text);
    json_decref(copy);
}

static void audit_flush(Audit *a);
static void audit_begin_file(Audit *a, bool move);

/* Chain and queue one record (stolen). */
static void audit_append(Audit *a, json_t *rec)
{
    char ts[64], hash[65];
    int64_t now = clock_wall_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;

    if (!rec || !a->opened || a->closing) {
        json_decref(rec);
        return;
    }
    gmtime_r(&secs, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(now % 1000));
    json_object_set_new(rec, "seq", json_integer((json_int_t)(a->queue_seq + 1)));
    json_object_set_new(rec, "ts", json_string(ts));
    json_object_set_new(rec, "prev", json_string(a->queue_hash));
    audit_hash_of(rec, hash);
    json_object_set_new(rec, "hash", json_string(hash));
    char *line = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(rec);
    if (!line || !hash[0]) {
        free(line);
        log_error("audit", "cannot record to the audit log: out of memory");
        return;
    }
    size_t n = strlen(line);
    if (a->queue_len + n + 1 > a->queue_cap) {
        size_t cap = (a->queue_cap + n + 1) * 2;
        char *q = realloc(a->queue, cap);
        if (!q) {
            free(line);
            log_error("audit", "cannot record to the audit log: out of memory");
            return;
        }
        a->queue = q;
        a->queue_cap = cap;
    }
    memcpy(a->queue + a->queue_len, line, n);
    a->queue[a->queue_len + n] = '\n';
    a->queue_len += n + 1;
    free(line);
    a->queue_seq++;
    memcpy(a->queue_hash, hash, sizeof(hash));
    a->file_bytes += n + 1;
    if (a->max_bytes && a->file_bytes > a->max_bytes && a->n_splits < AUDIT_MAX_SPLITS)
        audit_begin_file(a, true);
    audit_flush(a);
}

/* The records queued from now on go to a new file, which starts with the rotated record; move:
 * the batch that carries them moves the files first (false: the live file is new already). */
static void audit_begin_file(Audit *a, bool move)
{
    uint64_t gen = a->generation + 1;
    uint64_t keep = (uint64_t)a->keep;

    if (move)
        a->splits[a->n_splits++] = a->queue_len;
    a->file_bytes = 0;
    a->generation = gen;
    if (gen > keep && gen - keep > a->oldest_generation)
        a->oldest_generation = gen - keep;
    audit_append(a, json_pack("{s:s,s:I,s:I,s:I}", "type", "rotated", "generation", (json_int_t)gen, "keep",
                              (json_int_t)a->keep, "oldest_generation", (json_int_t)a->oldest_generation));
}

/* ---- writing (thread pool) ---- */

/* All of buf to fd, then fdatasync. 0 or -errno. */
static int audit_write_all(int fd, const char *buf, size_t len)
{
    size_t off = 0;

    while (off < len) {
        ssize_t n = write(fd, buf + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return n < 0 ? -errno : -EIO;
        off += (size_t)n;
    }
    return fdatasync(fd) < 0 ? -errno : 0;
}

/* audit.log.<n> */
static void audit_rotated_path(const char *log_path, unsigned n, char *out, size_t len)
{
    snprintf(out, len, "%s.%u", log_path, n);
}

/*
 * The positions of the rotated files beside log_path (audit.log.N, N >= 1), ascending; 0 or
 * -errno. Thread pool or before the loop.
 */
static int audit_rotated_files(const char *log_path, unsigned **ret, size_t *ret_n)
{
    char dir[PATH_MAX], base[PATH_MAX];
    unsigned *list = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;

    *ret = NULL;
    *ret_n = 0;
    snprintf(dir, sizeof(dir), "%s", log_path);
    snprintf(base, sizeof(base), "%s", log_path);
    char *d = dirname(dir), *b = basename(base);
    size_t bl = strlen(b);
    DIR *dh = opendir(d);
    if (!dh)
        return -errno;
    while ((de = readdir(dh))) {
        char *end;
        if (strncmp(de->d_name, b, bl) || de->d_name[bl] != '.' || de->d_name[bl + 1] < '1' || de->d_name[bl + 1] > '9')
            continue;
        unsigned long v = strtoul(de->d_name + bl + 1, &end, 10);
        if (*end || v > 100000)
            continue;
        if (n == cap) {
            unsigned *l = realloc(list, (cap = cap ? cap * 2 : 16) * sizeof(*l));
            if (!l)
                break;
            list = l;
        }
        list[n++] = (unsigned)v;
    }
    closedir(dh);
    for (size_t i = 1; i < n; i++) /* few files: insertion sort */
        for (size_t k = i; k > 0 && list[k - 1] > list[k]; k--) {
            unsigned t = list[k];
            list[k] = list[k - 1];
            list[k - 1] = t;
        }
    *ret = list;
    *ret_n = n;
    return 0;
}

/*
 * Move the files one place up (keeping `keep` rotated ones), the live file to audit.log.1, and open
 * a new live file: its fd in *ret_fd. 0 or -errno; on an error the live file may have moved to
 * audit.log.1 (then *ret_fd still writes there).
 */
static int audit_rotate_files(const char *log_path, int keep, int *ret_fd)
{
    char from[PATH_MAX + 16], to[PATH_MAX + 16], dir[PATH_MAX];
    unsigned *pos = NULL;
    size_t n = 0;
    int r = audit_rotated_files(log_path, &pos, &n);

    for (size_t i = n; r == 0 && i-- > 0;) {
        audit_rotated_path(log_path, pos[i], from, sizeof(from));
        if (pos[i] >= (unsigned)keep) {
            if (unlink(from) < 0 && errno != ENOENT)
                r = -errno;
            continue;
        }
        audit_rotated_path(log_path, pos[i] + 1, to, sizeof(to));
        if (rename(from, to) < 0)
            r = -errno;
    }
    free(pos);
    audit_rotated_path(log_path, 1, to, sizeof(to));
    if (r == 0 && rename(log_path, to) < 0)
        r = -errno;
    if (r < 0)
        return r;
    int fd = open(log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0)
        return -errno;
    close(*ret_fd);
    *ret_fd = fd;
    snprintf(dir, sizeof(dir), "%s", log_path);
    return atomicfile_fsync_dir(dirname(dir));
}

static void audit_write_work(uv_work_t *req)
{
    AuditWrite *w = req->data;
    char head[160];
    size_t from = 0;

    for (size_t i = 0; i <= w->n_splits && w->result == 0; i++) {
        size_t to = i < w->n_splits ? w->splits[i] : w->len;
        w->result = audit_write_all(w->fd, w->buf + from, to - from);
        if (w->result == 0 && i < w->n_splits && !w->rotate_err)
            w->rotate_err = audit_rotate_files(w->a->log_path, w->keep, &w->fd);
        from = to;
    }
    if (w->result < 0)
        return;
    int hl = snprintf(head, sizeof(head), "{\"seq\":%llu,\"hash\":\"%s\"}\n", (unsigned long long)w->seq, w->hash);
    w->result = atomicfile_write(w->a->head_path, head, (size_t)hl, 0600);
}

static void audit_maybe_closed(Audit *a);

static void audit_write_done(uv_work_t *req, int status)
{
    AuditWrite *w = req->data;
    Audit *a = w->a;

    a->writing = false;
    a->pending--;
    a->fd = w->fd;
    if (w->rotate_err < 0)
        log_error("audit", "cannot rotate the audit log '%s': %s; its records went on into the file it was writing",
                  a->log_path, err_str(w->rotate_err));
    if (status < 0 || w->result < 0) {
        /* nothing silent: a lost audit record is an error people see (and the chain goes on) */
        log_error("audit", "cannot write %zu bytes to the audit log '%s': %s", w->len, a->log_path,
                  err_str(status < 0 ? status : w->result));
    } else {
        a->seq = w->seq;
        memcpy(a->last_hash, w->hash, sizeof(w->hash));
    }
    free(w->buf);
    free(w);
    audit_flush(a);
    audit_maybe_closed(a);
}

static void audit_start_reads(Audit *a);

static void audit_flush(Audit *a)
{
    AuditWrite *w;

    if (a->waiting && !a->writing)
        audit_start_reads(a); /* reads asked for during the last write go first */
    if (a->writing || a->reading || a->queue_len == 0)
        return; /* reads see the files as they stand: no rotation under them */
    if (!(w = calloc(1, sizeof(*w))))
        return; /* stays queued: the next record tries again */
    *w = (AuditWrite){.a = a, .fd = a->fd, .buf = a->queue, .len = a->queue_len, .n_splits = a->n_splits,
                      .keep = a->keep, .seq = a->queue_seq};
    memcpy(w->splits, a->splits, sizeof(w->splits));
    memcpy(w->hash, a->queue_hash, sizeof(w->hash));
    w->req.data = w;
    a->queue = NULL;
    a->queue_len = a->queue_cap = 0;
    a->n_splits = 0;
    if (uv_queue_work(a->loop, &w->req, audit_write_work, audit_write_done) < 0) {
        a->queue = w->buf; /* keep it queued */
        a->queue_len = a->queue_cap = w->len;
        a->n_splits = w->n_splits;
        free(w);
        return;
    }
    a->writing = true;
    a->pending++;
}

/* ---- what is recorded ---- */

void audit_command(Audit *a, const PeerCred *peer, const char *command, const json_t *args, int result,
                   const char *error)
{
    json_t *rec = json_pack("{s:s,s:s,s:I,s:I,s:O?,s:s,s:s?}", "type", "command", "command", command, "uid",
                            (json_int_t)peer->uid, "pid", (json_int_t)peer->pid, "args", args, "outcome",
                            result == 0 ? "ok" : err_name(result), "error", result == 0 ? NULL : error);
    audit_append(a, rec);
}

static void audit_on_event(const Event *ev, void *data)
{
    Audit *a = data;
    if (!strncmp(ev->kind, "probe.", 6) || !strncmp(ev->kind, "audit.", 6))
        return; /* the probes' own observations are not actions; the audit's own are logged */
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s?,s:b,s:s,s:s?,s:s?,s:s?}", "type", "event", "kind", ev->kind,
                            "severity", events_severity_name(ev->severity), "condition", ev->condition, "resolved",
                            ev->resolved, "summary", ev->summary, "run", ev->run, "scenario", ev->scenario, "step",
                            ev->step);
    audit_append(a, rec);
}

/* ---- verifying and reading (blocking; the thread pool) ---- */

/* The log's files, oldest first: audit.log.M .. audit.log.1 (those that exist), then audit.log.
 * *ret_gap: the highest position below M that is missing, 0 if none. Caller frees (each, and the
 * list). 0 or -errno. */
static int audit_files(const char *log_path, char ***ret, size_t *ret_n, unsigned *ret_gap)
{
    unsigned *pos = NULL;
    size_t n = 0, k = 0;
    int r = audit_rotated_files(log_path, &pos, &n);
    char **list = r == 0 ? calloc(n + 1, sizeof(*list)) : NULL;

    *ret = NULL;
    *ret_n = 0;
    *ret_gap = 0;
    if (r < 0 || !list) {
        free(pos);
        return r < 0 ? r : -ENOMEM;
    }
    for (size_t i = n; i-- > 0;) {
        char path[PATH_MAX + 16];
        audit_rotated_path(log_path, pos[i], path, sizeof(path));
        if (!*ret_gap && pos[i] != (i ? pos[i - 1] + 1 : 1))
            *ret_gap = pos[i] - 1;
        list[k++] = strdup(path);
    }
    list[k++] = strdup(log_path);
    free(pos);
    for (size_t i = 0; i < k; i++)
        if (!list[i]) {
            for (size_t j = 0; j < k; j++)
                free(list[j]);
            free(list);
            return -ENOMEM;
        }
    *ret = list;
    *ret_n = k;
    return 0;
}

static void audit_files_free(char **list, size_t n)
{
    for (size_t i = 0; list && i < n; i++)
        free(list[i]);
    free(list);
}

static const char *audit_str(const json_t *rec, const char *key)
{
    const char *v = json_string_value(json_object_get(rec, key));
    return v ? v : "";
}

/* The chain as verify walks it across the files. */
typedef struct AuditWalk {
    uint64_t records;     /* records checked */
    json_int_t expect;    /* the next seq (0: before the first record) */
    json_int_t first_seq;
    char prev[65];        /* the hash of the record before */
    uint64_t gen;         /* the generation of the last rotated record (1 from a chain's real start) */
    uint64_t first_gen;   /* the generation the oldest kept record is in */
    uint64_t kept_from;   /* oldest_generation of the last rotated record, 0 if none */
    char why[640];
} AuditWalk;

/* Check one record against the chain so far; first: the first record of its file. */
static void audit_walk_record(AuditWalk *w, const json_t *rec, bool first, const char *file)
{
    char hash[65];
    json_int_t seq = json_integer_value(json_object_get(rec, "seq"));
    const char *type = audit_str(rec, "type");
    bool rotated = !strcmp(type, "rotated");
    uint64_t gen = (uint64_t)json_integer_value(json_object_get(rec, "generation"));

    w->records++;
    audit_hash_of(rec, hash);
    if (w->expect == 0) {
        /* the oldest record kept: the chain's real start, or a rotation's first record */
        if (seq == 1 && !audit_str(rec, "prev")[0])
            w->gen = w->first_gen = 1;
        else if (rotated && gen > 1)
            w->gen = w->first_gen = gen;
        else {
            snprintf(w->why, sizeof(w->why), "the oldest record kept (%lld, in '%s') neither starts the chain nor "
                     "records a rotation: the records before it were removed", (long long)seq, file);
            return;
        }
        w->expect = w->first_seq = seq;
        snprintf(w->prev, sizeof(w->prev), "%s", audit_str(rec, "prev"));
    } else if (first && (!rotated || gen != w->gen + 1)) {
        snprintf(w->why, sizeof(w->why), "'%s' does not begin with the rotation that follows generation %llu: a "
                 "file is missing or was replaced", file, (unsigned long long)w->gen);
        return;
    }
    if (seq != w->expect)
        snprintf(w->why, sizeof(w->why), "record %lld is followed by seq %lld: a record is missing or inserted before it",
                 (long long)w->expect - 1, (long long)seq);
    else if (strcmp(audit_str(rec, "prev"), w->prev))
        snprintf(w->why, sizeof(w->why), "record %lld does not follow the one before it (prev hash differs)", (long long)seq);
    else if (strcmp(audit_str(rec, "hash"), hash))
        snprintf(w->why, sizeof(w->why), "record %lld was changed (its hash does not match its content)", (long long)seq);
    else if (!strcmp(type, "tampered"))
        snprintf(w->why, sizeof(w->why), "record %lld: at %s the daemon found the log ending at record %lld while its "
                 "head said %lld: records were cut off or the log rewritten before it", (long long)seq,
                 json_string_value(json_object_get(rec, "ts")) ? audit_str(rec, "ts") : "?",
                 (long long)json_integer_value(json_object_get(rec, "found_seq")),
                 (long long)json_integer_value(json_object_get(rec, "head_seq")));
    if (w->why[0])
        return;
    if (rotated) {
        w->gen = gen;
        w->kept_from = (uint64_t)json_integer_value(json_object_get(rec, "oldest_generation"));
    }
    memcpy(w->prev, hash, sizeof(w->prev));
    w->expect++;
}

int audit_verify_file(const char *log_path, const char *head_path, json_t **ret)
{
    char **files = NULL, *line = NULL;
    size_t n_files = 0, cap = 0, fi;
    unsigned gap = 0;
    AuditWalk w = {0};
    json_int_t head_seq = -1;
    const char *head_hash = NULL;
    json_t *head = NULL;
    int r;

    *ret = NULL;
    if (access(log_path, F_OK) < 0)
        return -errno;
    if ((r = audit_files(log_path, &files, &n_files, &gap)) < 0)
        return r;
    if (gap)
        snprintf(w.why, sizeof(w.why), "'%s.%u' is missing while older files are kept: rotation never removes a file "
                 "newer than one it keeps", log_path, gap);
    for (fi = 0; fi < n_files && !w.why[0]; fi++) {
        FILE *f = fopen(files[fi], "re");
        bool first = true;
        if (!f) {
            if (errno == ENOENT && fi + 1 < n_files)
                continue; /* rotated away meanwhile */
            snprintf(w.why, sizeof(w.why), "cannot read '%s': %s", files[fi], strerror(errno));
            break;
        }
        while (!w.why[0] && getline(&line, &cap, f) > 0) {
            json_t *rec = json_loads(line, 0, NULL);
            if (!rec)
                snprintf(w.why, sizeof(w.why), "the line after record %lld is not a JSON record", (long long)w.expect - 1);
            else
                audit_walk_record(&w, rec, first, files[fi]);
            json_decref(rec);
            first = false;
        }
        fclose(f);
        if (w.why[0] && fi + 1 < n_files) { /* say which rotated file */
            size_t o = strlen(w.why);
            snprintf(w.why + o, sizeof(w.why) - o, ", in '%s'", files[fi]);
        }
    }
    free(line);
    json_int_t last = w.expect ? w.expect - 1 : 0;
    if (!w.why[0] && w.first_gen > 1 && w.kept_from && w.first_gen > w.kept_from)
        snprintf(w.why, sizeof(w.why), "the oldest file kept begins at rotation %llu but the last rotation kept files "
                 "from rotation %llu on: a rotated file was removed, not by rotation",
                 (unsigned long long)w.first_gen, (unsigned long long)w.kept_from);
    head = json_load_file(head_path, 0, NULL);
    if (head) {
        head_seq = json_integer_value(json_object_get(head, "seq"));
        head_hash = json_string_value(json_object_get(head, "hash"));
    }
    if (!w.why[0] && head_seq > last)
        snprintf(w.why, sizeof(w.why), "the log ends at record %lld but its head says %lld: records were cut off",
                 (long long)last, (long long)head_seq);
    else if (!w.why[0] && head_seq > 0 && head_seq == last && head_hash && strcmp(head_hash, w.prev))
        snprintf(w.why, sizeof(w.why), "the last record does not match the head: the end of the log was rewritten");
    else if (!w.why[0] && !head && w.records > 0)
        snprintf(w.why, sizeof(w.why), "the head file '%s' is missing or unreadable", head_path);
    json_decref(head);
    json_t *names = json_array();
    for (size_t i = 0; i < n_files; i++)
        json_array_append_new(names, json_string(files[i]));
    audit_files_free(files, n_files);
    char start[200] = "";
    if (w.first_gen > 1)
        snprintf(start, sizeof(start), "the chain kept starts at record %lld: older records were rotated out (audit.keep)",
                 (long long)w.first_seq);
    *ret = json_pack("{s:b,s:I,s:I,s:o,s:s?,s:s?}", "ok", !w.why[0], "records", (json_int_t)w.records, "first_seq",
                     (json_int_t)w.first_seq, "files", names, "start", start[0] ? start : NULL, "error",
                     w.why[0] ? w.why : NULL);
    return *ret ? 0 : -ENOMEM;
}

/* A record's time in epoch ms (its "ts", RFC 3339 with milliseconds), -1 if it has none. */
static int64_t audit_ts_ms(const json_t *rec)
{
    const char *ts = json_string_value(json_object_get(rec, "ts"));
    struct tm tm = {0};
    const char *rest = ts ? strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    int ms = 0;

    if (!rest)
        return -1;
    if (rest[0] == '.')
        ms = atoi(rest + 1);
    return (int64_t)timegm(&tm) * 1000 + ms;
}

int audit_read_records(const char *log_path, int64_t from_ms, int64_t to_ms, const char *run, size_t max,
                       json_t **ret)
{
    char **files = NULL, *line = NULL;
    size_t n_files = 0, cap = 0;
    unsigned gap;
    int r = audit_files(log_path, &files, &n_files, &gap);
    json_t *out = r == 0 ? json_array() : NULL;

    *ret = NULL;
    if (r == 0 && !out)
        r = -ENOMEM;
    for (size_t fi = 0; r == 0 && fi < n_files; fi++) {
        FILE *f = fopen(files[fi], "re");
        if (!f) {
            if (fi + 1 == n_files)
                r = -errno; /* the live file; a rotated one may have moved meanwhile */
            continue;
        }
        while (getline(&line, &cap, f) > 0) {
            json_t *rec = json_loads(line, 0, NULL);
            int64_t t = audit_ts_ms(rec);
            bool in_span = t >= from_ms && t <= to_ms;
            if (!rec || !(in_span || (run && !strcmp(audit_str(rec, "run"), run)))) {
                json_decref(rec);
                continue;
            }
            json_array_append_new(out, rec);
            if (json_array_size(out) > max)
                json_array_remove(out, 0);
        }
        fclose(f);
    }
    free(line);
    audit_files_free(files, n_files);
    if (r < 0) {
        json_decref(out);
        return r;
    }
    *ret = out;
    return 0;
}

typedef struct AuditRead {
    uv_work_t req;
    Audit *a;
    CtlCall *call;
    int64_t since_ms;
    bool verify;
    json_t *records, *verified;
    int result;
    struct AuditRead *next;
} AuditRead;

static void audit_read_work(uv_work_t *req)
{
    AuditRead *r = req->data;

    /* seconds-precision --since: a record in the same second counts */
    r->result = audit_read_records(r->a->log_path, r->since_ms - r->since_ms % 1000, INT64_MAX, NULL, AUDIT_READ_MAX,
                                   &r->records);
    if (r->result == 0 && r->verify)
        r->result = audit_verify_file(r->a->log_path, r->a->head_path, &r->verified);
}

static void audit_read_done(uv_work_t *req, int status)
{
    AuditRead *r = req->data;
    Audit *a = r->a;

    a->pending--;
    a->reading--;
    if (status < 0 || r->result < 0)
        control_reply_error(r->call, status < 0 ? status : r->result, "cannot read the audit log '%s': %s",
                            a->log_path, err_str(status < 0 ? status : r->result));
    else
        control_reply_ok(r->call, json_pack("{s:o,s:o?,s:s,s:b}", "records", r->records ? r->records : json_array(),
                                            "verify", r->verified, "file", a->log_path, "ok",
                                            !r->verified || json_is_true(json_object_get(r->verified, "ok"))));
    free(r);
    audit_flush(a);
    audit_maybe_closed(a);
}

static void audit_cmd(CtlCall *call, const json_t *args, void *data)
{
    Audit *a = data;
    const json_t *since = json_object_get(args, "since_ms");
    AuditRead *r;

    if (since && !json_is_integer(since)) {
        control_reply_error(call, DR_EBADARG, "since_ms must be an integer (epoch milliseconds)");
        return;
    }
    if (!(r = calloc(1, sizeof(*r)))) {
        control_reply_error(call, -ENOMEM, "out of memory");
        return;
    }
    *r = (AuditRead){.a = a, .call = call, .since_ms = since ? (int64_t)json_integer_value(since) : 0,
                     .verify = json_is_true(json_object_get(args, "verify")), .next = a->waiting};
    r->req.data = r;
    a->waiting = r; /* started once no batch is being written (at once when none is) */
    a->pending++;
    audit_flush(a);
}

/* Start the reads that waited for a write to finish. */
static void audit_start_reads(Audit *a)
{
    AuditRead *r = a->waiting;

    a->waiting = NULL;
    while (r) {
        AuditRead *next = r->next;
        int rc = uv_queue_work(a->loop, &r->req, audit_read_work, audit_read_done);
        if (rc < 0) {
            a->pending--;
            control_reply_error(r->call, rc, "cannot read the audit log: %s", uv_strerror(rc));
            free(r);
        } else {
            a->reading++;
        }
        r = next;
    }
}

/* ---- life cycle ---- */

Audit *audit_new(uv_loop_t *loop, EventBus *events, Control *control)
{
    Audit *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    *a = (Audit){.loop = loop, .events = events, .control = control, .fd = -1, .sub = -1, .keep = 1};
    return a;
}

/* What a file says of the chain: its last record (seq, hash), its last rotated record, its size. */
typedef struct AuditTail {
    uint64_t seq;
    char hash[65];
    uint64_t records;
    uint64_t generation, oldest_generation; /* of its last rotated record, 0 if none */
    uint64_t first_seq;
    uint64_t bytes;
} AuditTail;

/* Read a whole file (before the loop runs). 0 (a missing file is empty), or -errno. */
static int audit_read_tail(const char *path, AuditTail *t)
{
    FILE *f = fopen(path, "re");
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;

    memset(t, 0, sizeof(*t));
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    while ((len = getline(&line, &cap, f)) > 0) {
        json_t *rec = json_loads(line, 0, NULL);
        t->bytes += (uint64_t)len;
        if (!rec)
            continue;
        t->seq = (uint64_t)json_integer_value(json_object_get(rec, "seq"));
        snprintf(t->hash, sizeof(t->hash), "%s", audit_str(rec, "hash"));
        if (!t->records++)
            t->first_seq = t->seq;
        if (!strcmp(audit_str(rec, "type"), "rotated")) {
            t->generation = (uint64_t)json_integer_value(json_object_get(rec, "generation"));
            t->oldest_generation = (uint64_t)json_integer_value(json_object_get(rec, "oldest_generation"));
        }
        json_decref(rec);
    }
    fclose(f);
    free(line);
    return 0;
}

/*
 * A rotation the daemon did not finish (killed between its renames): audit.log.1 missing while
 * older files are there (audit.log is moved to it), or audit.log empty while audit.log.1 has the
 * chain. *ret_begin: the live file has to begin with a rotated record. Before the loop runs.
 */
static int audit_finish_rotation(Audit *a, AuditTail *live, AuditTail *prev, bool *ret_begin)
{
    char one[PATH_MAX + 16], dir[PATH_MAX];
    unsigned *pos = NULL;
    size_t n = 0;
    int r = audit_rotated_files(a->log_path, &pos, &n);

    *ret_begin = false;
    if (r < 0)
        return r;
    bool has_one = n > 0 && pos[0] == 1, cut = false;
    if (!has_one && n > 0 && live->records > 0) {
        /* only when the file below follows the live one on the chain: a removed audit.log.1 is
         * left for verify to report, never papered over */
        AuditTail below;
        audit_rotated_path(a->log_path, pos[0], one, sizeof(one));
        cut = pos[0] == 2 && audit_read_tail(one, &below) == 0 && below.records > 0 && below.seq + 1 == live->first_seq;
    }
    free(pos);
    audit_rotated_path(a->log_path, 1, one, sizeof(one));
    if (cut) {
        if (rename(a->log_path, one) < 0)
            return -errno;
        snprintf(dir, sizeof(dir), "%s", a->log_path);
        if ((r = atomicfile_fsync_dir(dirname(dir))) < 0)
            return r;
        log_warning("audit", "finished the rotation of the audit log a stop cut short: '%s' is now '%s'", a->log_path, one);
        has_one = true;
        memset(live, 0, sizeof(*live));
    }
    if (!has_one || live->records > 0)
        return 0;
    if ((r = audit_read_tail(one, prev)) < 0)
        return r;
    *ret_begin = prev->records > 0;
    return 0;
}

void audit_set_rotation(Audit *a, uint64_t max_bytes, int keep)
{
    a->max_bytes = max_bytes;
    a->keep = keep > 0 ? keep : 1;
}

int audit_open(Audit *a, const char *state_dir, char *err, size_t errlen)
{
    AuditTail live, prev = {0}, *at = &live;
    bool begin = false;
    int r;

    err[0] = '\0';
    if (asprintf(&a->log_path, "%s/audit.log", state_dir) < 0 || asprintf(&a->head_path, "%s/audit.head", state_dir) < 0)
        return -ENOMEM;
    if ((r = audit_read_tail(a->log_path, &live)) < 0 || (r = audit_finish_rotation(a, &live, &prev, &begin)) < 0) {
        snprintf(err, errlen, "cannot read '%s': %s", a->log_path, err_str(r));
        return r;
    }
    if (begin)
        at = &prev; /* the chain stands at the end of audit.log.1 */
    a->fd = open(a->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (a->fd < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot open '%s': %s", a->log_path, strerror(errno));
        return r;
    }
    a->opened = true;
    a->file_bytes = live.bytes;
    a->generation = at->generation ? at->generation : 1;
    a->oldest_generation = at->oldest_generation ? at->oldest_generation : 1;
    a->seq = a->queue_seq = at->seq;
    memcpy(a->last_hash, at->hash, sizeof(at->hash));
    memcpy(a->queue_hash, at->hash, sizeof(at->hash));
    if (begin) {
        /* the rotated record was lost with the stop: the new file begins with it again */
        a->file_bytes = 0;
        audit_begin_file(a, false); /* the files are where they belong already */
    }
    uint64_t seq = at->seq;
    const char *hash = at->hash;
    json_t *head = json_load_file(a->head_path, 0, NULL);
    json_int_t hseq = head ? json_integer_value(json_object_get(head, "seq")) : 0;
    const char *hhash = json_string_value(json_object_get(head, "hash"));
    bool match = head ? (hseq == (json_int_t)seq && hhash && !strcmp(hhash, hash)) : seq == 0;
    if (!match) {
        /* the evidence goes into the chain itself, so that --verify keeps reporting it */
        audit_append(a, json_pack("{s:s,s:I,s:I}", "type", "tampered", "found_seq", (json_int_t)seq, "head_seq",
                                  (json_int_t)hseq));
        events_emit(a->events, SEV_CRITICAL, "audit.tampered", NULL, false, NULL,
                    "the audit log '%s' does not match its head (log ends at record %llu, head says %lld): records "
                    "were removed or the log rewritten; drctl audit --verify tells where",
                    a->log_path, (unsigned long long)seq, (long long)hseq);
    }
    json_decref(head);
    CtlCommand cmd = {"audit", true, audit_cmd, a,
                      "the audit log: records since since_ms (the newest 1000), verify: check the chain"};
    if ((r = control_register(a->control, &cmd, 1)) < 0)
        return r;
    if ((a->sub = events_subscribe(a->events, audit_on_event, a)) < 0)
        return a->sub;
    return 0;
}

static void audit_maybe_closed(Audit *a)
{
    if (!a->closing || a->pending > 0 || a->writing)
        return;
    if (a->queue_len > 0) {
        audit_flush(a); /* the last records go out before the file closes */
        if (a->writing)
            return;
    }
    void (*cb)(void *) = a->closed_cb;
    void *data = a->closed_data;
    if (a->fd >= 0)
        close(a->fd);
    free(a->queue);
    free(a->log_path);
    free(a->head_path);
    free(a);
    if (cb)
        cb(data);
}

static void audit_close_later(uv_handle_t *h)
{
    Audit *a = h->data;
    free(h);
    a->pending--;
    audit_maybe_closed(a);
}

void audit_close(Audit *a, void (*closed_cb)(void *data), void *data)
{
    a->closed_cb = closed_cb;
    a->closed_data = data;
    if (a->sub > 0)
        events_unsubscribe(a->events, a->sub);
    a->sub = -1;
    /* closed from the loop, never inside this call (a handle closed at once) */
    uv_timer_t *t = malloc(sizeof(*t));
    if (t && uv_timer_init(a->loop, t) == 0) {
        t->data = a;
        a->pending++;
        a->closing = true;
        uv_close((uv_handle_t *)t, audit_close_later);
        return;
    }
    free(t);
    a->closing = true;
    audit_maybe_closed(a);
}
