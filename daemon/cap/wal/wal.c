/*
 * wal: the continuous WAL archive module (see wal.h, wal_internal.h and docs/wal.md).
 *
 * Owns the archive's state on the loop (the segment being received, what is durable, the catalog
 * summary, the gaps), its jobs on the thread pool, run one at a time in order (scan the directory
 * and load the key; seal a piece of the partial segment; write a complete segment and remove its
 * partial; write a timeline history file), the flush tick (every wal.flush_interval: seal what
 * arrived, send the status update, judge the conditions), the conditions wal.stalled:C, wal.lag:C
 * and wal.gap:C, the wal_status control command and the metrics.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "cap/backup/backup.h"
#include "cap/wal/wal_internal.h"
#include "clock.h"
#include "err.h"
#include "log.h"

static const char *const wal_phase_names[] = {"off", "connecting", "scanning", "slot", "streaming", "backoff"};

uint64_t wal__seg_start(const WalArchive *w, uint64_t segno)
{
    return segno * w->seg_size;
}

void wal__set_phase(WalArchive *w, WalPhase p)
{
    uint64_t now = uv_now(w->core->loop);
    if (p == WAL_STREAMING)
        w->down_since = 0;
    else if (w->phase == WAL_STREAMING || !w->down_since)
        w->down_since = now;
    if (w->phase != p)
        w->phase_since = now;
    w->phase = p;
}

static void wal_key_name(const WalArchive *w, char *out, size_t n)
{
    snprintf(out, n, "%s", w->core->cfg && w->core->cfg->cluster ? w->core->cfg->cluster : "main");
}

/* ---- jobs -------------------------------------------------------------------------------------- */

WalJob *wal__job_new(WalArchive *w, WalJobKind kind)
{
    WalJob *j = calloc(1, sizeof(*j));
    if (!j)
        return NULL;
    j->owner = w;
    j->kind = kind;
    j->codec = (CodecKind)w->backup.codec;
    j->seg_size = w->seg_size;
    j->tli = w->tli;
    j->segno = w->segno;
    memcpy(j->key, w->key, sizeof(j->key));
    memcpy(j->next_key, w->next_key_pending ? w->next_key : w->key, sizeof(j->next_key));
    if (!(j->dir = strdup(w->cfg.directory))) {
        free(j);
        return NULL;
    }
    if (kind == WAL_JOB_SCAN || kind == WAL_JOB_STAGE || kind == WAL_JOB_KEY) {
        j->backup = calloc(1, sizeof(*j->backup));
        if (!j->backup || config_backup_copy(&w->backup, j->backup) < 0) {
            free(j->backup);
            free(j->dir);
            free(j);
            return NULL;
        }
    }
    return j;
}

static void wal_scan_free(WalScan *s)
{
    if (!s)
        return;
    free(s->partial_buf);
    json_decref(s->gaps);
    json_decref(s->histories);
    free(s);
}

static void wal_job_free(WalJob *j)
{
    explicit_bzero(j->key, sizeof(j->key));
    explicit_bzero(j->next_key, sizeof(j->next_key));
    free(j->dir);
    free(j->data);
    if (j->backup) {
        config_backup_free(j->backup);
        free(j->backup);
    }
    wal_scan_free(j->scan);
    free(j->segs);
    free(j->stage_dir);
    if (j->call)
        control_reply_error(j->call, DR_ECANCELED, "the daemon is stopping");
    if (j->plan_cb)
        j->plan_cb(DR_ECANCELED, NULL, "the daemon is stopping", j->cb_data);
    if (j->stage_cb)
        j->stage_cb(DR_ECANCELED, 0, 0, "the daemon is stopping", j->cb_data);
    free(j);
}

int wal__file_key(const WalJob *j, const char *path, bool partial, uint8_t out[BCF_KEY_LEN], char *err, size_t n)
{
    uint8_t h[8 + 48], kid[BCF_KEY_ID_LEN];
    char want[2 * BCF_KEY_ID_LEN + 1];
    size_t at = partial ? 8 : 0;
    FILE *f = fopen(path, "rb");
    size_t got = f ? fread(h, 1, at + 48, f) : 0;
    if (f)
        fclose(f);
    memcpy(out, j->key, BCF_KEY_LEN);
    if (got < at + 48 || memcmp(h + at, BCF_MAGIC, 8) != 0)
        return 0;
    bcf_key_id(j->key, kid);
    if (!memcmp(kid, h + at + 32, BCF_KEY_ID_LEN))
        return 0;
    bcf_key_id(j->next_key, kid);
    if (!memcmp(kid, h + at + 32, BCF_KEY_ID_LEN)) {
        memcpy(out, j->next_key, BCF_KEY_LEN);
        return 0;
    }
    bcf_hex(h + at + 32, BCF_KEY_ID_LEN, want);
    if (!j->backup) {
        snprintf(err, n, "'%s' is under key id %s, not the archive's", path, want);
        return DR_EKEY;
    }
    return backups_load_key_for_id(j->backup, want, out, err, n);
}

void wal__key_adopt(WalArchive *w)
{
    uint8_t kid[BCF_KEY_ID_LEN];
    char hex[2 * BCF_KEY_ID_LEN + 1], name[WAL_NAME_LEN + 1];
    if (!w->next_key_pending || w->sealed_off != 0)
        return;
    memcpy(w->key, w->next_key, sizeof(w->key));
    explicit_bzero(w->next_key, sizeof(w->next_key));
    w->next_key_pending = false;
    bcf_key_id(w->key, kid);
    walarchive_seg_name(w->tli, w->segno, w->seg_size, name);
    log_info("wal", "segments are written under key id %s from %s on", bcf_hex(kid, sizeof(kid), hex), name);
}

int wal_key_rotated(WalArchive *w)
{
    if (!w || w->closing)
        return -ESRCH;
    WalJob *j = wal__job_new(w, WAL_JOB_KEY);
    if (!j)
        return -ENOMEM;
    wal__push_job(w, j);
    return 0;
}

/* Worker: what the archive directory holds. */
static int wal_scan_dir(WalJob *j, WalScan *s)
{
    DIR *d;
    struct dirent *de;
    uint64_t *segs = NULL;
    size_t nsegs = 0, cap = 0;
    bool partial_found = false;
    char partial_name[256] = "";

    for (char *p = j->dir + 1;; p++) { /* mkdir -p, each missing level 0700 */
        bool last = *p == '\0';
        if (*p == '/' || last) {
            char c = *p;
            *p = '\0';
            int r = mkdir(j->dir, 0700) < 0 && errno != EEXIST ? -errno : 0;
            *p = c;
            if (r < 0) {
                snprintf(j->err, sizeof(j->err), "create '%s': %s", j->dir, strerror(-r));
                return r;
            }
        }
        if (last)
            break;
    }
    s->removed_temporaries = atomicfile_remove_temporaries(j->dir, NULL, NULL);
    if (!(d = opendir(j->dir))) {
        snprintf(j->err, sizeof(j->err), "read '%s': %s", j->dir, strerror(errno));
        return -errno;
    }
    s->gaps = json_array();
    s->histories = json_array();
    while ((de = readdir(d)) != NULL) {
        uint32_t tli;
        uint64_t segno;
        struct stat st;
        char path[4200];
        WalFileKind k = walarchive_classify(de->d_name, j->seg_size, &tli, &segno);
        if (k == WALFILE_NONE)
            continue;
        snprintf(path, sizeof(path), "%s/%s", j->dir, de->d_name);
        if (stat(path, &st) < 0)
            continue;
        if (k == WALFILE_HISTORY) {
            json_array_append_new(s->histories, json_integer(tli));
            continue;
        }
        if (k == WALFILE_PARTIAL) {
            if (!partial_found || tli > s->partial_tli || (tli == s->partial_tli && segno > s->partial_segno)) {
                partial_found = true;
                s->partial_tli = tli;
                s->partial_segno = segno;
                snprintf(partial_name, sizeof(partial_name), "%s", de->d_name);
            }
            continue;
        }
        s->segments++;
        s->bytes += (uint64_t)st.st_size;
        if (!s->have_oldest || segno < s->oldest_segno || (segno == s->oldest_segno && tli < s->oldest_tli)) {
            s->have_oldest = true;
            s->oldest_tli = tli;
            s->oldest_segno = segno;
            s->oldest_mtime = (int64_t)st.st_mtime;
        }
        if (!s->have_newest || tli > s->newest_tli || (tli == s->newest_tli && segno > s->newest_segno)) {
            s->have_newest = true;
            s->newest_tli = tli;
            s->newest_segno = segno;
            s->newest_is_end = k == WALFILE_PARTIAL_END;
            s->newest_mtime = (int64_t)st.st_mtime;
        }
        if (nsegs == cap) {
            size_t nc = cap ? cap * 2 : 256;
            uint64_t *t = realloc(segs, nc * sizeof(*segs));
            if (!t)
                break;
            segs = t;
            cap = nc;
        }
        segs[nsegs++] = segno;
    }
    closedir(d);
    /* holes: segment numbers missing between the oldest and the newest, on any timeline */
    for (size_t a = 1; a < nsegs; a++) { /* insertion sort: the list is mostly in order already */
        uint64_t v = segs[a];
        size_t b = a;
        while (b > 0 && segs[b - 1] > v) {
            segs[b] = segs[b - 1];
            b--;
        }
        segs[b] = v;
    }
    for (size_t a = 1; a < nsegs; a++)
        if (segs[a] > segs[a - 1] + 1)
            json_array_append_new(s->gaps, json_pack("{s:I,s:I}", "from_segno", (json_int_t)(segs[a - 1] + 1),
                                                     "to_segno", (json_int_t)(segs[a] - 1)));
    free(segs);
    /* a partial older than (or the same as) a complete segment is what a crash left between the
     * segment's rename and the partial's removal */
    if (partial_found && s->have_newest &&
        (s->partial_tli < s->newest_tli || (s->partial_tli == s->newest_tli && s->partial_segno <= s->newest_segno))) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", j->dir, partial_name);
        (void)unlink(path);
        partial_found = false;
    }
    if (s->have_newest && s->newest_is_end) {
        char name[128], path[4200], why[512];
        uint8_t *data = NULL;
        size_t len = 0;
        walarchive_file_name(WALFILE_PARTIAL_END, s->newest_tli, s->newest_segno, j->seg_size, j->codec, name,
                             sizeof(name));
        snprintf(path, sizeof(path), "%s/%s", j->dir, name);
        uint8_t key[BCF_KEY_LEN];
        if (wal__file_key(j, path, false, key, why, sizeof(why)) == 0 &&
            walarchive_read_file(path, key, (size_t)j->seg_size, &data, &len, why, sizeof(why)) == 0)
            s->newest_len = len;
        explicit_bzero(key, sizeof(key));
        free(data);
    }
    if (partial_found) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", j->dir, partial_name);
        if (!(s->partial_buf = malloc((size_t)j->seg_size)))
            return -ENOMEM;
        /* the partial goes on under its own key; a rotated one waits for the next segment */
        uint8_t key[BCF_KEY_LEN];
        int r = wal__file_key(j, path, true, key, s->partial_err, sizeof(s->partial_err));
        if (r < 0) {
            snprintf(j->err, sizeof(j->err), "%s", s->partial_err);
            return r;
        }
        memcpy(j->key, key, sizeof(j->key));
        explicit_bzero(key, sizeof(key));
        r = walarchive_read_partial(path, j->key, s->partial_buf, j->seg_size, true, &s->partial_len, &s->partial_torn,
                                        s->partial_err, sizeof(s->partial_err));
        if (r == DR_ECORRUPT) {
            /* keep the damaged file as evidence, out of the way; the good pieces are in the buffer */
            char aside[4300];
            snprintf(aside, sizeof(aside), "%s.damaged", path);
            (void)rename(path, aside);
        } else if (r < 0) {
            snprintf(j->err, sizeof(j->err), "%s", s->partial_err);
            return r;
        }
        s->have_partial = true;
    }
    return 0;
}

static void wal_job_work(uv_work_t *req)
{
    WalJob *j = (WalJob *)req;
    char path[4200];

    switch (j->kind) {
    case WAL_JOB_SCAN:
        if ((j->result = backups_load_writing_key(j->backup, j->next_key, j->err, sizeof(j->err))) < 0)
            return;
        memcpy(j->key, j->next_key, sizeof(j->key));
        if (!(j->scan = calloc(1, sizeof(*j->scan)))) {
            j->result = -ENOMEM;
            return;
        }
        j->result = wal_scan_dir(j, j->scan);
        return;
    case WAL_JOB_PIECE:
        snprintf(path, sizeof(path), "%s/%s", j->dir, j->name);
        j->result = walarchive_append_piece(path, j->key, CODEC_NONE, j->offset, j->data, j->len, j->err, sizeof(j->err));
        return;
    case WAL_JOB_RETAIN:
        wal__retain_work(j);
        return;
    case WAL_JOB_PLAN:
        wal__plan_work(j);
        return;
    case WAL_JOB_STAGE:
        wal__stage_work(j);
        return;
    case WAL_JOB_KEY:
        j->result = backups_load_writing_key(j->backup, j->next_key, j->err, sizeof(j->err));
        return;
    case WAL_JOB_SEGMENT:
    case WAL_JOB_HISTORY:
        j->result = walarchive_write_file(j->dir, j->name, j->key, j->codec, j->created_at, j->data, j->len, j->err,
                                          sizeof(j->err));
        snprintf(path, sizeof(path), "%s/%s", j->dir, j->name);
        struct stat st;
        if (j->result == 0 && stat(path, &st) == 0)
            j->offset = (uint64_t)st.st_size; /* the file's size, for the catalog's bytes */
        if (j->result == 0 && j->partial[0]) {
            snprintf(path, sizeof(path), "%s/%s", j->dir, j->partial);
            if (unlink(path) == 0)
                (void)atomicfile_fsync_dir(j->dir);
        }
        return;
    }
}

static void wal_job_next(WalArchive *w);
static void wal_maybe_closed(WalArchive *w);
static void wal_tick_conditions(WalArchive *w);

static void wal_flushed_to(WalArchive *w, uint64_t lsn)
{
    if (lsn <= w->flushed_lsn)
        return;
    w->flushed_lsn = lsn;
    w->flushed_at_ms = clock_wall_ms();
    w->flushed_moved_at = uv_now(w->core->loop);
}

static void wal_scan_done(WalArchive *w, WalJob *j)
{
    WalScan *s = j->scan;
    char name[WAL_NAME_LEN + 1];

    memcpy(w->key, j->key, sizeof(w->key));
    memcpy(w->next_key, j->next_key, sizeof(w->next_key));
    w->next_key_pending = memcmp(w->key, w->next_key, sizeof(w->key)) != 0;
    w->key_loaded = true;
    w->scanned = true;
    w->segments = s->segments;
    w->bytes = s->bytes;
    w->have_oldest = s->have_oldest;
    w->oldest_tli = s->oldest_tli;
    w->oldest_segno = s->oldest_segno;
    w->oldest_time_s = s->oldest_mtime;
    json_decref(w->histories);
    w->histories = json_incref(s->histories);
    if (s->removed_temporaries > 0)
        log_info("wal", "removed %d temporaries a killed daemon left in %s", s->removed_temporaries, w->cfg.directory);
    if (s->have_partial && (!s->have_newest || s->partial_tli > s->newest_tli ||
                            (s->partial_tli == s->newest_tli && s->partial_segno > s->newest_segno))) {
        free(w->buf);
        w->buf = s->partial_buf;
        s->partial_buf = NULL;
        w->tli = s->partial_tli;
        w->segno = s->partial_segno;
        w->recv_off = w->sealed_off = s->partial_len;
        w->seg_started_s = clock_wall_ms() / 1000;
        wal_flushed_to(w, wal__seg_start(w, w->segno) + w->recv_off);
        walarchive_seg_name(w->tli, w->segno, w->seg_size, name);
        log_info("wal", "resuming segment %s at byte %" PRIu64 "%s", name, w->recv_off,
                 s->partial_torn ? " (a torn last piece was cut off)" : "");
        if (s->partial_err[0]) {
            char why[700];
            snprintf(why, sizeof(why), "the partial segment %s failed verification after byte %" PRIu64 " (kept as "
                     ".damaged): %s", name, s->partial_len, s->partial_err);
            wal__gap(w, wal__seg_start(w, w->segno) + w->recv_off, wal__seg_start(w, w->segno) + w->recv_off, why);
        }
    } else if (s->have_newest) {
        w->tli = s->newest_tli;
        w->segno = s->newest_is_end ? s->newest_segno : s->newest_segno + 1;
        /* a timeline that ended inside its last segment: START_REPLICATION at that end names the next */
        w->recv_off = w->sealed_off = s->newest_is_end ? s->newest_len : 0;
        w->end_written = s->newest_is_end;
        wal_flushed_to(w, wal__seg_start(w, w->segno) + w->recv_off);
    } else {
        w->fresh = true; /* where it starts is decided once the slot is known */
    }
    if (!w->buf && !(w->buf = calloc(1, (size_t)w->seg_size)))
        log_error("wal", "out of memory for a segment buffer");
    size_t i;
    json_t *g;
    json_array_foreach(s->gaps, i, g) {
        char a[WAL_NAME_LEN + 1], b[WAL_NAME_LEN + 1], why[160];
        uint64_t from = (uint64_t)json_integer_value(json_object_get(g, "from_segno"));
        uint64_t to = (uint64_t)json_integer_value(json_object_get(g, "to_segno"));
        walarchive_seg_name(w->tli, from, w->seg_size, a);
        walarchive_seg_name(w->tli, to, w->seg_size, b);
        snprintf(why, sizeof(why), "segments %s to %s are missing from the archive", a, b);
        wal__gap(w, wal__seg_start(w, from), wal__seg_start(w, to + 1), why);
    }
}

static void wal_job_done(uv_work_t *req, int status)
{
    WalJob *j = (WalJob *)req;
    WalArchive *w = j->owner;
    char name[WAL_NAME_LEN + 1];
    (void)status;

    w->job_running = false;
    w->pending--;
    if (w->closing) {
        bool piece = j->kind == WAL_JOB_PIECE && j->result == 0;
        if (j->kind == WAL_JOB_PIECE)
            w->piece_inflight = false;
        wal_job_free(j);
        if (piece)
            wal__seal(w); /* what arrived while it was written */
        wal_job_next(w);
        wal_maybe_closed(w);
        return;
    }
    switch (j->kind) {
    case WAL_JOB_SCAN:
        if (j->result < 0) {
            char why[700];
            snprintf(why, sizeof(why), "archive %s: %s", w->cfg.directory, j->err[0] ? j->err : err_str(j->result));
            wal__recv_fail(w, why);
            break;
        }
        wal_scan_done(w, j);
        wal__recv_scanned(w);
        break;
    case WAL_JOB_KEY:
        if (j->result < 0) {
            log_error("wal", "cannot load the rotated backup key: %s (segments stay under the previous key)", j->err);
            snprintf(w->last_error, sizeof(w->last_error), "the rotated key: %.400s", j->err);
        } else if (memcmp(j->next_key, w->key, sizeof(w->key)) != 0) {
            memcpy(w->next_key, j->next_key, sizeof(w->next_key));
            w->next_key_pending = true;
            log_info("wal", "the backup key was rotated: the next segment is written under the new key");
            wal__key_adopt(w);
        }
        break;
    case WAL_JOB_PIECE:
        w->piece_inflight = false;
        if (j->result < 0) {
            log_error("wal", "sealing %s: %s", j->name, j->err);
            snprintf(w->last_error, sizeof(w->last_error), "sealing %.60s: %.400s", j->name, j->err);
            if (j->tli == w->tli && j->segno == w->segno && j->offset < w->sealed_off)
                w->sealed_off = j->offset; /* sealed again at the next tick */
            break;
        }
        wal_flushed_to(w, j->segno * j->seg_size + j->offset + j->len);
        wal__recv_status(w, false);
        if (w->cfg.synchronous)
            wal__seal(w); /* what arrived meanwhile: commits are waiting for it */
        break;
    case WAL_JOB_SEGMENT:
        walarchive_seg_name(j->tli, j->segno, j->seg_size, name);
        if (j->result < 0) {
            /* the bytes are still in the slot (never reported flushed): go back and fetch them again */
            char why[700];
            snprintf(why, sizeof(why), "writing segment %s: %s", name, j->err);
            log_error("wal", "%s", why);
            if (j->tli == w->tli && w->segno > j->segno) {
                w->segno = j->segno;
                w->recv_off = w->sealed_off = 0;
            }
            wal__recv_fail(w, why);
            break;
        }
        w->segments++;
        w->bytes += j->offset;
        if (!w->have_oldest) {
            w->have_oldest = true;
            w->oldest_tli = j->tli;
            w->oldest_segno = j->segno;
            w->oldest_time_s = clock_wall_ms() / 1000;
        }
        wal_flushed_to(w, j->segno * j->seg_size + j->len);
        log_info("wal", "archived segment %s", j->name);
        wal__recv_status(w, false);
        break;
    case WAL_JOB_HISTORY:
        if (j->result < 0)
            log_error("wal", "writing %s: %s", j->name, j->err);
        break;
    case WAL_JOB_RETAIN:
        wal__retain_done(w, j);
        break;
    case WAL_JOB_PLAN:
        wal__plan_done(w, j);
        break;
    case WAL_JOB_STAGE:
        wal__stage_done(j);
        break;
    }
    wal_job_free(j);
    wal_job_next(w);
}

/* A job that makes received WAL durable: still run while closing (a dead primary's slot is gone
 * with it: what was received may be the only copy). */
static bool wal_job_durable(const WalJob *j)
{
    return j->kind == WAL_JOB_PIECE || j->kind == WAL_JOB_SEGMENT || j->kind == WAL_JOB_HISTORY;
}

static void wal_job_next(WalArchive *w)
{
    if (w->closing) /* drop what does not make WAL durable; the rest still runs */
        for (WalJob **pp = &w->jobs_head; *pp;) {
            WalJob *j = *pp;
            if (wal_job_durable(j)) {
                pp = &j->next;
                continue;
            }
            *pp = j->next;
            wal_job_free(j);
        }
    w->jobs_tail = NULL;
    for (WalJob *t = w->jobs_head; t; t = t->next)
        w->jobs_tail = t;
    WalJob *j = w->jobs_head;
    if (w->job_running || !j)
        return;
    w->jobs_head = j->next;
    if (!w->jobs_head)
        w->jobs_tail = NULL;
    /* the key now (loaded since the job was made); a piece keeps the key its segment is under */
    if (j->kind != WAL_JOB_SCAN && j->kind != WAL_JOB_PIECE && j->kind != WAL_JOB_KEY) {
        memcpy(j->key, w->key, sizeof(j->key));
        memcpy(j->next_key, w->next_key_pending ? w->next_key : w->key, sizeof(j->next_key));
    }
    if (uv_queue_work(w->core->loop, &j->work, wal_job_work, wal_job_done) < 0) {
        log_error("wal", "cannot queue work on the thread pool");
        wal_job_free(j);
        return;
    }
    w->job_running = true;
    w->pending++;
}

void wal__push_job(WalArchive *w, WalJob *j)
{
    j->next = NULL;
    if (w->jobs_tail)
        w->jobs_tail->next = j;
    else
        w->jobs_head = j;
    w->jobs_tail = j;
    wal_job_next(w);
}

/* ---- the segment being received ------------------------------------------------------------------ */

void wal__segment_full(WalArchive *w)
{
    WalJob *j = wal__job_new(w, WAL_JOB_SEGMENT);
    uint8_t *next = malloc((size_t)w->seg_size);
    if (!j || !next) {
        free(next);
        if (j)
            wal_job_free(j);
        free(w->buf);
        w->buf = NULL; /* the receiver fails and fetches the segment again */
        return;
    }
    walarchive_file_name(WALFILE_SEGMENT, w->tli, w->segno, w->seg_size, j->codec, j->name, sizeof(j->name));
    walarchive_file_name(WALFILE_PARTIAL, w->tli, w->segno, w->seg_size, j->codec, j->partial, sizeof(j->partial));
    j->data = w->buf;
    j->len = (size_t)w->seg_size;
    j->created_at = w->seg_started_s;
    w->buf = next;
    w->segno++;
    w->recv_off = w->sealed_off = 0;
    wal__key_adopt(w);
    wal__push_job(w, j);
}

void wal__timeline_end(WalArchive *w, uint64_t lsn)
{
    uint64_t start = wal__seg_start(w, w->segno);
    bool written = w->end_written;
    w->end_written = false;
    if (!written && lsn > start && lsn < start + w->seg_size && w->recv_off > 0) {
        WalJob *j = wal__job_new(w, WAL_JOB_SEGMENT);
        uint8_t *data = j ? malloc((size_t)(lsn - start)) : NULL;
        if (j && data) {
            memcpy(data, w->buf, (size_t)(lsn - start));
            walarchive_file_name(WALFILE_PARTIAL_END, w->tli, w->segno, w->seg_size, j->codec, j->name,
                                 sizeof(j->name));
            walarchive_file_name(WALFILE_PARTIAL, w->tli, w->segno, w->seg_size, j->codec, j->partial,
                                 sizeof(j->partial));
            j->data = data;
            j->len = (size_t)(lsn - start);
            j->created_at = w->seg_started_s;
            wal__push_job(w, j);
        } else {
            free(data);
            if (j)
                wal_job_free(j);
        }
    }
    /* the next timeline's copy of this segment starts at its beginning */
    w->segno = lsn / w->seg_size;
    w->recv_off = w->sealed_off = 0;
}

bool wal__history_known(const WalArchive *w, uint32_t tli)
{
    size_t i;
    json_t *v;
    json_array_foreach(w->histories, i, v) if ((uint32_t)json_integer_value(v) == tli) return true;
    return false;
}

void wal__history(WalArchive *w, uint32_t tli, const char *content, size_t len)
{
    WalJob *j = wal__job_new(w, WAL_JOB_HISTORY);
    if (!j || !(j->data = malloc(len ? len : 1))) {
        if (j)
            wal_job_free(j);
        return;
    }
    memcpy(j->data, content, len);
    j->len = len;
    j->created_at = clock_wall_ms() / 1000;
    walarchive_file_name(WALFILE_HISTORY, tli, 0, w->seg_size, j->codec, j->name, sizeof(j->name));
    json_array_append_new(w->histories, json_integer(tli));
    wal__push_job(w, j);
}

void wal__gap(WalArchive *w, uint64_t from, uint64_t to, const char *reason)
{
    char key[160], a[24], b[24], cl[64];
    json_t *g;
    walarchive_lsn_str(from, a);
    walarchive_lsn_str(to, b);
    g = json_pack("{s:s,s:s,s:s,s:I}", "from", a, "to", b, "reason", reason, "at_ms", (json_int_t)clock_wall_ms());
    if (g)
        json_array_append_new(w->gaps, g);
    if (to > w->gap_lsn)
        w->gap_lsn = to;
    wal_key_name(w, cl, sizeof(cl));
    snprintf(key, sizeof(key), "wal.gap:%s", cl);
    w->gap_open = true;
    events_emit(w->core->events, SEV_ERROR, "wal.gap", key, false, g,
                "WAL archive gap: %s (no point-in-time recovery across it until a base backup is taken after %s)",
                reason, b);
}

/* ---- the tick -------------------------------------------------------------------------------------- */

void wal__seal(WalArchive *w)
{
    if (w->piece_inflight || w->recv_off <= w->sealed_off || !w->buf || !w->key_loaded)
        return;
    wal__key_adopt(w); /* a new segment's first piece: under a rotated key if there is one */
    WalJob *j = wal__job_new(w, WAL_JOB_PIECE);
    if (!j || !(j->data = malloc((size_t)(w->recv_off - w->sealed_off)))) {
        if (j)
            wal_job_free(j);
        return;
    }
    j->offset = w->sealed_off;
    j->len = (size_t)(w->recv_off - w->sealed_off);
    memcpy(j->data, w->buf + w->sealed_off, j->len);
    walarchive_file_name(WALFILE_PARTIAL, w->tli, w->segno, w->seg_size, j->codec, j->name, sizeof(j->name));
    w->sealed_off = w->recv_off;
    w->piece_inflight = true;
    wal__push_job(w, j);
}

static uint64_t wal_lag_bytes(const WalArchive *w)
{
    return w->server_lsn > w->flushed_lsn && w->flushed_lsn ? w->server_lsn - w->flushed_lsn : 0;
}

static double wal_lag_seconds(const WalArchive *w)
{
    if (!wal_lag_bytes(w))
        return 0.0;
    return (double)(uv_now(w->core->loop) - w->flushed_moved_at) / 1000.0;
}

static void wal_tick_conditions(WalArchive *w)
{
    uint64_t now = uv_now(w->core->loop);
    char key[160], cl[64];
    wal_key_name(w, cl, sizeof(cl));

    /* stalled: not streaming, or the archive not advancing while the primary is ahead */
    bool stalled = false;
    char why[700] = "";
    if (w->phase != WAL_STREAMING && w->down_since && now - w->down_since >= w->cfg.stalled_after_ms) {
        stalled = true;
        snprintf(why, sizeof(why), "the WAL receiver has not streamed for %.0f s (%s): %s",
                 (double)(now - w->down_since) / 1000.0, wal_phase_names[w->phase],
                 w->last_error[0] ? w->last_error : "connecting");
    } else if (w->phase == WAL_STREAMING && wal_lag_bytes(w) && now - w->flushed_moved_at >= w->cfg.stalled_after_ms) {
        stalled = true;
        snprintf(why, sizeof(why), "the archive has not advanced for %.0f s while the primary is %" PRIu64
                 " bytes ahead%s%s", (double)(now - w->flushed_moved_at) / 1000.0, wal_lag_bytes(w),
                 w->last_error[0] ? ": " : "", w->last_error);
    }
    snprintf(key, sizeof(key), "wal.stalled:%s", cl);
    if (stalled != w->stalled_open) {
        w->stalled_open = stalled;
        if (stalled)
            events_emit(w->core->events, SEV_ERROR, "wal.stalled", key, false, NULL, "%s", why);
        else
            events_emit(w->core->events, SEV_INFO, "wal.stalled", key, true, NULL, "the WAL archive is streaming again");
    }

    /* lag: bytes the primary wrote that are not durable in the archive */
    int level = 0;
    uint64_t lag = wal_lag_bytes(w);
    if (w->phase == WAL_STREAMING || w->lag_level)
        level = lag >= w->cfg.lag_bytes_critical && w->cfg.lag_bytes_critical ? 2
                : lag >= w->cfg.lag_bytes_warning && w->cfg.lag_bytes_warning  ? 1
                                                                               : 0;
    snprintf(key, sizeof(key), "wal.lag:%s", cl);
    if (level != w->lag_level) {
        w->lag_level = level;
        json_t *d = json_pack("{s:I,s:f}", "lag_bytes", (json_int_t)lag, "lag_s", wal_lag_seconds(w));
        if (level)
            events_emit(w->core->events, level == 2 ? SEV_CRITICAL : SEV_WARNING, "wal.lag", key, false, d,
                        "the WAL archive is %" PRIu64 " bytes (%.1f s) behind the primary", lag, wal_lag_seconds(w));
        else
            events_emit(w->core->events, SEV_INFO, "wal.lag", key, true, d, "the WAL archive caught up");
        json_decref(d);
    }
}

/* The status model's "wal" component (drctl status): up while streaming without a gap or a
 * stall, down with one of them open, unknown until then. Only with a wal: section. */
static void wal_health(WalArchive *w)
{
    Component *c = w->cfg.enabled ? status_component(w->core->status, "wal") : NULL;
    if (!c)
        return;
    Health h = w->stalled_open || w->gap_open ? HEALTH_DOWN : w->phase == WAL_STREAMING ? HEALTH_UP : c->health;
    if (h != c->health) {
        status_set_health(c, h);
        status_changed(w->core->status);
    }
}

static void wal_on_tick(uv_timer_t *t)
{
    WalArchive *w = t->data;
    uint64_t now = uv_now(w->core->loop);
    if (!leader_acting(w->core->leader)) {
        /* high availability: a leader that lost its lease stops receiving (what it has is sealed);
         * a follower neither receives, nor prunes, nor pages on the archive's lag */
        if (w->pg) {
            char why[256];
            leader_refusal(w->core->leader, why, sizeof(why));
            wal__recv_fail(w, why);
        }
        wal_health(w);
        return;
    }
    if (w->phase == WAL_STREAMING) {
        wal__seal(w);
        if (now - w->last_status_at >= w->cfg.status_interval_ms)
            wal__recv_status(w, true); /* the answer (a keepalive) shows the connection lives */
        if (now - w->last_recv_at >= w->cfg.timeout_ms + w->cfg.status_interval_ms) {
            char why[120];
            snprintf(why, sizeof(why), "nothing heard from the primary for %.0f s", (double)(now - w->last_recv_at) / 1000.0);
            wal__recv_fail(w, why);
        }
    }
    wal_tick_conditions(w);
    wal_health(w);
    wal__sync_tick(w);
    if (now - w->retain_at >= 60000)
        wal__retain(w);
}

void wal_set_may_go(WalArchive *w, bool (*may_go)(const char *file, void *data), void *data)
{
    w->may_go = may_go;
    w->may_go_data = data;
}

uint64_t wal_segment_size(void *wal)
{
    const WalArchive *w = wal;
    return w ? w->seg_size : 0;
}

/* ---- events: a base backup after a gap closes it ---------------------------------------------------- */

static void wal_on_event(const Event *ev, void *data)
{
    WalArchive *w = data;
    uint64_t start;
    if (!strcmp(ev->kind, "backup.retention") && ev->details)
        w->retain_at = 0; /* backups deleted: the next tick looks at what the oldest one left needs */
    if (strcmp(ev->kind, "backup.done") != 0 || !ev->details)
        return;
    w->retain_at = 0;
    if (!w->gap_open)
        return;
    const char *kind = json_string_value(json_object_get(ev->details, "kind"));
    const char *lsn = json_string_value(json_object_get(json_object_get(ev->details, "wal"), "start_lsn"));
    if (!kind || strcmp(kind, "physical") || !lsn || walarchive_parse_lsn(lsn, &start) < 0 || start < w->gap_lsn)
        return;
    char key[160], cl[64];
    wal_key_name(w, cl, sizeof(cl));
    snprintf(key, sizeof(key), "wal.gap:%s", cl);
    w->gap_open = false;
    events_emit(w->core->events, SEV_INFO, "wal.gap", key, true, NULL,
                "the base backup starting at %s is after the WAL archive's gap: recovery is possible again", lsn);
}

/* ---- wal_status -------------------------------------------------------------------------------------- */

static json_t *wal_status_json(const WalArchive *w)
{
    char lsn[24], srv[24], name[WAL_NAME_LEN + 1];
    json_t *o = json_pack("{s:b,s:s}", "enabled", w->cfg.enabled, "state", wal_phase_names[w->phase]);
    if (!o || !w->cfg.enabled)
        return o;
    walarchive_lsn_str(w->flushed_lsn, lsn);
    walarchive_lsn_str(w->server_lsn, srv);
    json_object_set_new(o, "directory", json_string(w->cfg.directory));
    json_object_set_new(o, "since_ms", json_integer((json_int_t)(clock_wall_ms() -
                                                                 (int64_t)(uv_now(w->core->loop) - w->phase_since))));
    json_object_set_new(o, "error", json_string(w->last_error));
    json_object_set_new(o, "slot", json_pack("{s:s,s:b,s:b}", "name", w->cfg.slot, "existed", w->slot_existed,
                                             "active", w->phase == WAL_STREAMING));
    if (w->systemid[0])
        json_object_set_new(o, "system_identifier", json_string(w->systemid));
    if (w->scanned) {
        json_object_set_new(o, "timeline", json_integer(w->tli));
        json_object_set_new(o, "archived_lsn", json_string(lsn));
        json_object_set_new(o, "archived_at_ms", json_integer(w->flushed_at_ms));
        json_object_set_new(o, "primary_lsn", json_string(srv));
        json_object_set_new(o, "lag_bytes", json_integer((json_int_t)wal_lag_bytes(w)));
        json_object_set_new(o, "lag_s", json_real(wal_lag_seconds(w)));
        walarchive_seg_name(w->tli, w->segno, w->seg_size, name);
        json_object_set_new(o, "partial", json_pack("{s:s,s:I,s:I}", "segment", name, "received",
                                                    (json_int_t)w->recv_off, "sealed", (json_int_t)w->sealed_off));
        json_object_set_new(o, "segments", json_integer((json_int_t)w->segments));
        json_object_set_new(o, "held_for_offsite", json_integer((json_int_t)w->held_offsite));
        json_object_set_new(o, "segment_size", json_integer((json_int_t)w->seg_size));
        if (w->have_oldest) {
            walarchive_seg_name(w->oldest_tli, w->oldest_segno, w->seg_size, name);
            walarchive_lsn_str(wal__seg_start(w, w->oldest_segno), lsn);
            json_object_set_new(o, "oldest", json_pack("{s:s,s:s,s:I}", "segment", name, "lsn", lsn, "at_ms",
                                                       (json_int_t)w->oldest_time_s * 1000));
        }
    }
    json_object_set_new(o, "synchronous", json_pack("{s:b,s:b,s:b}", "configured", w->cfg.synchronous, "on",
                                                    w->sync_on, "fell_back", w->sync_fell_back));
    json_object_set_new(o, "gaps", json_deep_copy(w->gaps));
    json_object_set_new(o, "timelines", json_deep_copy(w->histories));
    return o;
}

static void wal_cmd_status(CtlCall *call, const json_t *args, void *data)
{
    (void)args;
    json_t *o = wal_status_json(data);
    if (!o) {
        control_reply_error(call, -ENOMEM, "out of memory");
        return;
    }
    control_reply_ok(call, o);
}

static void wal_collect(MetricsWriter *mw, void *data)
{
    WalArchive *w = data;
    if (!w->cfg.enabled)
        return;
    metrics_family(mw, "drsupervisor_wal_receiver_up", METRIC_GAUGE, "1 while the WAL receiver streams from the primary");
    metrics_value(mw, "drsupervisor_wal_receiver_up", w->phase == WAL_STREAMING);
    metrics_family(mw, "drsupervisor_wal_archive_lag_bytes", METRIC_GAUGE,
                   "bytes of WAL the primary has written that are not durable in the archive");
    metrics_value(mw, "drsupervisor_wal_archive_lag_bytes", (double)wal_lag_bytes(w));
    metrics_family(mw, "drsupervisor_wal_archive_lag_seconds", METRIC_GAUGE,
                   "seconds since the archive last caught up, while it is behind (0 when caught up)");
    metrics_value(mw, "drsupervisor_wal_archive_lag_seconds", wal_lag_seconds(w));
    metrics_family(mw, "drsupervisor_wal_last_archived_timestamp_seconds", METRIC_GAUGE,
                   "when the archive last advanced (Unix time)");
    metrics_value(mw, "drsupervisor_wal_last_archived_timestamp_seconds", (double)w->flushed_at_ms / 1000.0);
    metrics_family(mw, "drsupervisor_wal_archive_segments", METRIC_GAUGE, "complete segments in the archive");
    metrics_value(mw, "drsupervisor_wal_archive_segments", (double)w->segments);
    metrics_family(mw, "drsupervisor_wal_synchronous", METRIC_GAUGE,
                   "1 while the primary's commits wait for the archive (wal.synchronous in effect)");
    metrics_value(mw, "drsupervisor_wal_synchronous", w->sync_on);
    metrics_family(mw, "drsupervisor_wal_archive_gaps", METRIC_GAUGE, "holes found in the archive since the daemon started");
    metrics_value(mw, "drsupervisor_wal_archive_gaps", (double)json_array_size(w->gaps));
}

/* Readiness (core/readiness.h): the archive streams, is not behind, has no gap; and a base
 * backup exists whose WAL the archive holds from its start. */
static void wal_readiness(ReadyWriter *rw, void *data)
{
    WalArchive *w = data;
    if (!w->cfg.enabled) {
        readiness_add(rw, "wal.archive", READY_WARN, "no wal: section: no point-in-time recovery, the RPO is the "
                                                     "newest backup's age");
        return;
    }
    uint64_t lag = wal_lag_bytes(w);
    if (w->phase != WAL_STREAMING)
        readiness_add(rw, "wal.archive", READY_FAIL, "the WAL receiver is not streaming (%s): %s",
                      wal_phase_names[w->phase], w->last_error[0] ? w->last_error : "connecting");
    else if (w->gap_open)
        readiness_add(rw, "wal.archive", READY_FAIL, "the archive has a gap (drctl wal-status): no recovery across "
                                                     "it until a base backup is taken after it");
    else if (w->lag_level)
        readiness_add(rw, "wal.archive", w->lag_level == 2 ? READY_FAIL : READY_WARN,
                      "streaming, but %llu bytes behind the primary", (unsigned long long)lag);
    else
        readiness_add(rw, "wal.archive", READY_PASS, "streaming, %llu bytes behind the primary, %llu segments",
                      (unsigned long long)lag, (unsigned long long)w->segments);
    if (!w->scanned || !w->backups)
        return;
    bool scanned = false;
    json_t *phys = backups_physical(w->backups, &scanned);
    const json_t *newest = NULL, *m;
    size_t i;
    json_array_foreach(phys, i, m) if (backup_manifest_is_verified(m)) newest = m;
    uint64_t start = 0;
    const char *s = newest ? json_string_value(json_object_get(json_object_get(newest, "wal"), "start_lsn")) : NULL;
    if (!newest)
        readiness_add(rw, "wal.base_backup", READY_FAIL, "no verified base backup: the archive has nothing to "
                                                         "replay onto (drctl backup now --physical)");
    else if (!s || walarchive_parse_lsn(s, &start) < 0 || !w->have_oldest || w->oldest_segno > start / w->seg_size)
        readiness_add(rw, "wal.base_backup", READY_FAIL, "the newest base backup %s starts at %s, before the "
                      "archive's oldest segment: its WAL is not archived",
                      json_string_value(json_object_get(newest, "file")), s ? s : "?");
    else if (w->gap_open && w->gap_lsn > start)
        readiness_add(rw, "wal.base_backup", READY_FAIL, "a gap in the archive lies after the newest base backup %s",
                      json_string_value(json_object_get(newest, "file")));
    else
        readiness_add(rw, "wal.base_backup", READY_PASS, "the newest base backup %s and the WAL after it are in the "
                      "archive", json_string_value(json_object_get(newest, "file")));
    json_decref(phys);
}

/* ---- life cycle ------------------------------------------------------------------------------------ */

static void wal_reset_archive(WalArchive *w)
{
    free(w->buf);
    w->buf = NULL;
    w->scanned = false;
    w->key_loaded = false;
    explicit_bzero(w->key, sizeof(w->key));
    w->next_key_pending = false;
    explicit_bzero(w->next_key, sizeof(w->next_key));
    w->recv_off = w->sealed_off = 0;
    w->flushed_lsn = 0;
    w->systemid[0] = '\0';
    w->piece_inflight = false;
    w->fresh = w->end_written = false;
    w->seg_size = 0;
    json_array_clear(w->gaps);
    json_array_clear(w->histories);
}

static void wal_on_handle_closed(uv_handle_t *h)
{
    WalArchive *w = h->data;
    w->pending--;
    wal_maybe_closed(w);
}

static void wal_maybe_closed(WalArchive *w)
{
    if (!w->closing || w->pending || w->jobs_head)
        return;
    void (*cb)(void *) = w->closed_cb;
    void *cd = w->closed_data;
    wal_reset_archive(w);
    json_decref(w->gaps);
    json_decref(w->histories);
    free(w->cfg.conninfo);
    free(w->cfg.slot);
    free(w->cfg.directory);
    free(w->cfg.application_name);
    pgconn_follow_clear(&w->follow);
    config_backup_free(&w->backup);
    free(w);
    if (cb)
        cb(cd);
}

WalArchive *wal_new(Core *core, Backups *backups)
{
    WalArchive *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    w->core = core;
    w->backups = backups;
    w->gaps = json_array();
    w->histories = json_array();
    uv_timer_init(core->loop, &w->tick);
    uv_timer_init(core->loop, &w->retry);
    w->tick.data = w->retry.data = w;
    w->pending = 2;
    if (!w->gaps || !w->histories || (core->metrics && metrics_register(core->metrics, wal_collect, w) < 0) ||
        (core->readiness && readiness_register(core->readiness, wal_readiness, w) < 0) ||
        (w->subscription = events_subscribe(core->events, wal_on_event, w)) < 0) {
        wal_close(w, NULL, NULL);
        return NULL;
    }
    return w;
}

static bool wal_same(const char *a, const char *b)
{
    return (!a && !b) || (a && b && !strcmp(a, b));
}

int wal_follow_primary(WalArchive *w, const char *from, const char *to)
{
    int r = pgconn_follow_set(&w->follow, from, to);
    if (r <= 0 || !w->registered)
        return r < 0 ? r : 0;
    return wal_apply_config(w, w->core->cfg); /* the receiver reconnects when wal.conninfo moved */
}

int wal_apply_config(WalArchive *w, const Config *cfg)
{
    const ConfigWal *c = &cfg->wal;
    bool restart;

    if (w->closing)
        return DR_ECANCELED;
    if (!w->registered) {
        CtlCommand cmds[] = {{"wal_status", false, wal_cmd_status, w,
                              "the WAL archive: newest archived position and time, lag, slot, oldest restorable point"},
                             {"recover", true, wal__cmd_recover, w,
                              "a point-in-time recovery: its plan (dry_run: base backup, WAL range and continuity), or the "
                              "recovery run"}};
        int rc = control_register(w->core->control, cmds, 2);
        if (rc < 0)
            return rc;
        w->registered = true;
    }
    char *conninfo = pgconn_follow_apply(&w->follow, c->conninfo, NULL);
    if (c->conninfo && !conninfo)
        return -ENOMEM;
    restart = c->enabled != w->cfg.enabled || !wal_same(conninfo, w->cfg.conninfo) ||
              !wal_same(c->slot, w->cfg.slot) || !wal_same(c->directory, w->cfg.directory) ||
              !wal_same(c->application_name, w->cfg.application_name) ||
              !wal_same(cfg->backup.key_file, w->backup.key_file) ||
              !wal_same(cfg->backup.key_credential, w->backup.key_credential) || cfg->backup.codec != w->backup.codec;
    free(w->cfg.conninfo);
    free(w->cfg.slot);
    free(w->cfg.directory);
    free(w->cfg.application_name);
    w->cfg = *c;
    w->cfg.conninfo = conninfo;
    w->cfg.slot = c->slot ? strdup(c->slot) : NULL;
    w->cfg.directory = c->directory ? strdup(c->directory) : NULL;
    w->cfg.application_name = c->application_name ? strdup(c->application_name) : NULL;
    config_backup_free(&w->backup);
    if (config_backup_copy(&cfg->backup, &w->backup) < 0)
        return -ENOMEM;
    if (c->enabled && (!w->cfg.conninfo || !w->cfg.slot || !w->cfg.directory || !w->cfg.application_name))
        return -ENOMEM;
    uv_timer_stop(&w->tick);
    if (!restart) {
        if (c->enabled)
            uv_timer_start(&w->tick, wal_on_tick, c->flush_interval_ms, c->flush_interval_ms);
        return 0;
    }
    wal__recv_stop(w);
    wal__sync_stop(w);
    wal_reset_archive(w);
    w->failures = 0;
    w->last_error[0] = '\0';
    if (!c->enabled) {
        wal__set_phase(w, WAL_OFF);
        return 0;
    }
    w->down_since = 0;
    wal__set_phase(w, WAL_CONNECTING);
    log_info("wal", "archiving WAL into %s over slot %s", w->cfg.directory, w->cfg.slot);
    uv_timer_start(&w->tick, wal_on_tick, c->flush_interval_ms, c->flush_interval_ms);
    wal__recv_start(w);
    return 0;
}

void wal_close(WalArchive *w, void (*closed_cb)(void *data), void *data)
{
    if (!w || w->closing)
        return;
    w->closing = true;
    w->closed_cb = closed_cb;
    w->closed_data = data;
    if (w->subscription > 0)
        events_unsubscribe(w->core->events, w->subscription);
    w->subscription = 0;
    wal__recv_stop(w);
    wal__sync_stop(w);
    /* What was received is sealed before the daemon goes: the primary (and its slot) may be gone.
     * The queued jobs that make WAL durable run to their end; the others are dropped. */
    w->piece_inflight = false; /* pieces queue in order: one more is fine */
    wal__seal(w);
    wal_job_next(w);
    uv_close((uv_handle_t *)&w->tick, wal_on_handle_closed);
    uv_close((uv_handle_t *)&w->retry, wal_on_handle_closed);
}
