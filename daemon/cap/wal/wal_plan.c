/*
 * wal_plan: what the WAL archive keeps and what it can recover (see wal_internal.h, docs/wal.md).
 *
 * Owns the archive's retention (segments older than the oldest base backup of the catalog are
 * removed; with no base backup nothing is; never while a recovery runs; with the off-site copy
 * asked (wal_set_may_go), only those it already has: the listing comes to the loop, is asked
 * about, and a second job removes what may go) and the recovery plan for
 * a point in time (recover_plan: drctl recover --timestamp T --dry-run): the newest verified base
 * backup that finished before T, the segments from its start to the one that holds T, whether
 * they are all there, and a rough estimate of the restore's duration. The directory listings
 * run on the thread pool (WAL_JOB_RETAIN, WAL_JOB_PLAN); the decisions (wal_plan_decide) are pure.
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

/* ---- worker side ------------------------------------------------------------------------------- */

static int wal_plan_cmp(const void *a, const void *b)
{
    const WalSeg *x = a, *y = b;
    if (x->segno != y->segno)
        return x->segno < y->segno ? -1 : 1;
    return x->tli < y->tli ? -1 : x->tli > y->tli;
}

int wal__list(const char *dir, uint64_t seg_size, WalSeg **ret, size_t *ret_n)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    WalSeg *v = NULL;
    size_t n = 0, cap = 0;
    if (!d)
        return -errno;
    while ((de = readdir(d)) != NULL) {
        uint32_t tli;
        uint64_t segno;
        struct stat st;
        char path[4200];
        WalFileKind k = walarchive_classify(de->d_name, seg_size, &tli, &segno);
        if (k != WALFILE_SEGMENT && k != WALFILE_PARTIAL_END && k != WALFILE_PARTIAL)
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
        if (stat(path, &st) < 0)
            continue;
        if (n == cap) {
            size_t nc = cap ? cap * 2 : 256;
            WalSeg *t = realloc(v, nc * sizeof(*v));
            if (!t) {
                closedir(d);
                free(v);
                return -ENOMEM;
            }
            v = t;
            cap = nc;
        }
        v[n++] = (WalSeg){.tli = tli, .segno = segno, .kind = k, .mtime_ms = (int64_t)st.st_mtim.tv_sec * 1000 +
                                                                               st.st_mtim.tv_nsec / 1000000,
                          .size = (uint64_t)st.st_size};
    }
    closedir(d);
    qsort(v, n, sizeof(*v), wal_plan_cmp);
    *ret = v;
    *ret_n = n;
    return 0;
}

void wal__retain_work(WalJob *j)
{
    WalSeg *v = NULL;
    size_t n = 0, removed = 0;
    char name[128], path[4200];
    if (j->listed) {
        v = j->segs;
        n = j->nsegs;
        j->segs = NULL;
        j->nsegs = 0;
    } else if ((j->result = wal__list(j->dir, j->seg_size, &v, &n)) < 0) {
        snprintf(j->err, sizeof(j->err), "read '%s': %s", j->dir, strerror(-j->result));
        return;
    }
    if (j->ask) { /* the candidates go to the loop */
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (v[i].segno < j->segno && v[i].kind != WALFILE_PARTIAL)
                v[k++] = v[i];
        j->segs = v;
        j->nsegs = k;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i].segno >= j->segno || v[i].kind == WALFILE_PARTIAL)
            continue;
        walarchive_file_name(v[i].kind, v[i].tli, v[i].segno, j->seg_size, j->codec, name, sizeof(name));
        snprintf(path, sizeof(path), "%s/%s", j->dir, name);
        if (unlink(path) == 0) {
            removed++;
            j->len += (size_t)v[i].size;
        }
    }
    j->offset = removed;
    if (removed)
        (void)atomicfile_fsync_dir(j->dir);
    free(v);
}

void wal__plan_work(WalJob *j)
{
    WalSeg *v = NULL;
    size_t n = 0;
    j->result = wal__list(j->dir, j->seg_size, &v, &n);
    if (j->result < 0)
        snprintf(j->err, sizeof(j->err), "read '%s': %s", j->dir, strerror(-j->result));
    j->segs = v;
    j->nsegs = n;
}

/* ---- retention ----------------------------------------------------------------------------------- */

void wal__retain(WalArchive *w)
{
    bool scanned = false;
    uint64_t start = UINT64_MAX;
    size_t i;
    json_t *m;

    if (!w->scanned || !w->seg_size || w->retain_pending || !w->backups)
        return;
    w->retain_at = uv_now(w->core->loop);
    if (lease_held(w->core->lease))
        return; /* a recovery may need any of it */
    json_t *phys = backups_physical(w->backups, &scanned);
    json_array_foreach(phys, i, m) {
        uint64_t lsn;
        const char *s = json_string_value(json_object_get(json_object_get(m, "wal"), "start_lsn"));
        if (s && walarchive_parse_lsn(s, &lsn) == 0 && lsn < start)
            start = lsn;
    }
    json_decref(phys);
    if (!scanned || start == UINT64_MAX)
        return; /* no base backup: every segment may be the only way back */
    uint64_t cutoff = start / w->seg_size;
    if (w->have_oldest && w->oldest_segno >= cutoff)
        return;
    WalJob *j = wal__job_new(w, WAL_JOB_RETAIN);
    if (!j)
        return;
    j->segno = cutoff;
    j->ask = w->may_go != NULL;
    w->retain_pending = true;
    wal__push_job(w, j);
}

/* The candidates of an asking retention: those the off-site copy has go (a second job); the
 * oldest it has not got bounds what is removed, so the archive stays without holes. */
static void wal_retain_asked(WalArchive *w, WalJob *j)
{
    char name[128];
    uint64_t held = 0, keep_from = j->segno;
    size_t k = 0;
    for (size_t i = 0; i < j->nsegs; i++) {
        walarchive_file_name(j->segs[i].kind, j->segs[i].tli, j->segs[i].segno, j->seg_size, j->codec, name,
                             sizeof(name));
        if (w->may_go && !w->may_go(name, w->may_go_data)) {
            held++;
            if (j->segs[i].segno < keep_from)
                keep_from = j->segs[i].segno;
        } else {
            j->segs[k++] = j->segs[i];
        }
    }
    size_t go = 0;
    for (size_t i = 0; i < k; i++) /* only what is older than the oldest held back */
        if (j->segs[i].segno < keep_from)
            j->segs[go++] = j->segs[i];
    if (held && !w->held_offsite)
        log_notice("wal", "retention keeps %" PRIu64 " segment(s) the off-site copy has not got yet", held);
    w->held_offsite = held;
    if (held) /* asked again within seconds, not at the next minute */
        w->retain_at = uv_now(w->core->loop) > 55000 ? uv_now(w->core->loop) - 55000 : 0;
    if (!go) {
        w->retain_pending = false;
        return;
    }
    WalJob *r = wal__job_new(w, WAL_JOB_RETAIN);
    if (!r) {
        w->retain_pending = false;
        return;
    }
    r->segno = keep_from;
    r->listed = true;
    r->segs = j->segs;
    r->nsegs = go;
    j->segs = NULL;
    j->nsegs = 0;
    wal__push_job(w, r);
}

void wal__retain_done(WalArchive *w, WalJob *j)
{
    char name[WAL_NAME_LEN + 1];
    if (j->result >= 0 && j->ask) {
        wal_retain_asked(w, j);
        return;
    }
    w->retain_pending = false;
    if (j->result < 0) {
        log_error("wal", "retention: %s", j->err);
        return;
    }
    if (!j->offset)
        return;
    walarchive_seg_name(w->tli, j->segno, w->seg_size, name);
    w->segments = w->segments > j->offset ? w->segments - j->offset : 0;
    w->bytes = w->bytes > j->len ? w->bytes - j->len : 0;
    w->oldest_segno = j->segno;
    w->oldest_time_s = clock_wall_ms() / 1000;
    events_emit(w->core->events, SEV_INFO, "wal.retention", NULL, false, NULL,
                "removed %" PRIu64 " WAL segments older than the oldest base backup (kept from %s on)", j->offset,
                name);
}

/* ---- the recovery plan --------------------------------------------------------------------------- */

json_t *wal_plan_decide(const json_t *backups, const WalSeg *segs, size_t n, uint64_t seg_size, int64_t target_ms,
                        int64_t partial_sealed_ms)
{
    json_t *plan = json_object();
    const json_t *base = NULL, *m;
    char why[600] = "", a[WAL_NAME_LEN + 1], b[WAL_NAME_LEN + 1];
    size_t i;
    uint64_t start = 0;

    json_array_foreach(backups, i, m) {
        /* finished by T at the precision the manifest has: a backup whose consistency point is
         * after T cannot reach T (PostgreSQL stops "before consistent recovery point") */
        int64_t fin = backup_manifest_finished_by_ms(m);
        const char *s = json_string_value(json_object_get(json_object_get(m, "wal"), "start_lsn"));
        if (backup_manifest_is_verified(m) && fin >= 0 && fin <= target_ms && s &&
            walarchive_parse_lsn(s, &start) == 0)
            base = m; /* oldest first: the last one that fits is the newest */
    }
    if (!base) {
        snprintf(why, sizeof(why), "no verified base backup finished before the target");
        goto out;
    }
    walarchive_parse_lsn(json_string_value(json_object_get(json_object_get(base, "wal"), "start_lsn")), &start);
    const char *fin = json_string_value(json_object_get(base, "finished_at"));
    const char *slsn = json_string_value(json_object_get(json_object_get(base, "wal"), "start_lsn"));
    const char *file = json_string_value(json_object_get(base, "file"));
    json_object_set_new(plan, "base_backup",
                        json_pack("{s:s,s:s,s:s,s:I}", "name", file ? file : "?", "finished_at", fin ? fin : "?",
                                  "start_lsn", slsn, "file_size_bytes",
                                  json_integer_value(json_object_get(base, "file_size_bytes"))));
    /* the segments from the backup's start to the first one that was still being written at T */
    uint64_t first = start / seg_size, last = first, expect = first;
    bool reached = false;
    json_t *missing = json_array();
    size_t count = 0;
    for (i = 0; i < n; i++) {
        if (segs[i].segno < first || (i + 1 < n && segs[i + 1].segno == segs[i].segno))
            continue; /* before the backup, or an older timeline's copy of the same segment */
        if (segs[i].segno > expect) {
            walarchive_seg_name(segs[i].tli, expect, seg_size, a);
            walarchive_seg_name(segs[i].tli, segs[i].segno - 1, seg_size, b);
            json_array_append_new(missing, json_pack("{s:s,s:s}", "from", a, "to", b));
        }
        expect = segs[i].segno + 1;
        last = segs[i].segno;
        count++;
        int64_t t = segs[i].kind == WALFILE_PARTIAL && partial_sealed_ms ? partial_sealed_ms : segs[i].mtime_ms;
        if (t >= target_ms) {
            reached = true;
            break;
        }
    }
    walarchive_seg_name(n ? segs[0].tli : 1, first, seg_size, a);
    walarchive_seg_name(n && count ? segs[i < n ? i : n - 1].tli : 1, last, seg_size, b);
    json_object_set_new(plan, "wal", json_pack("{s:s,s:s,s:I,s:b,s:o}", "from_segment", a, "to_segment", b,
                                               "segments", (json_int_t)count, "continuous",
                                               json_array_size(missing) == 0, "missing", missing));
    int64_t end_ms = 0;
    for (i = 0; i < n; i++) {
        int64_t t = segs[i].kind == WALFILE_PARTIAL && partial_sealed_ms ? partial_sealed_ms : segs[i].mtime_ms;
        if (t > end_ms)
            end_ms = t;
    }
    json_object_set_new(plan, "archive_end_ms", json_integer(end_ms));
    if (!count) {
        snprintf(why, sizeof(why), "the archive holds no WAL from the base backup's start (%s) on", a);
    } else if (json_array_size(missing)) {
        snprintf(why, sizeof(why), "the WAL from the base backup to the target is not continuous: %s to %s missing",
                 json_string_value(json_object_get(json_array_get(missing, 0), "from")),
                 json_string_value(json_object_get(json_array_get(missing, 0), "to")));
    } else if (!reached && target_ms != WAL_PLAN_TO_END) {
        char when[40];
        clock_format_utc_ms(end_ms, when, sizeof(when));
        snprintf(why, sizeof(why), "the archive ends at %s, before the target: PostgreSQL would fail only after the "
                 "whole restore", when);
    }
    /* rough: decrypting and unpacking the base backup at ~150 MB/s, replaying 16 MiB segments at ~4 a second */
    json_int_t size = json_integer_value(json_object_get(base, "file_size_bytes"));
    json_object_set_new(plan, "estimate_s",
                        json_real((double)size / 150e6 + (double)count * ((double)seg_size / (16 << 20)) * 0.25));
out:
    if (target_ms == WAL_PLAN_TO_END) {
        json_object_set_new(plan, "to_end", json_true());
        target_ms = json_integer_value(json_object_get(plan, "archive_end_ms"));
    }
    json_object_set_new(plan, "target_ms", json_integer(target_ms));
    json_object_set_new(plan, "ok", json_boolean(!why[0]));
    if (why[0])
        json_object_set_new(plan, "why", json_string(why));
    return plan;
}

void wal__plan_done(WalArchive *w, WalJob *j)
{
    CtlCall *call = j->call;
    WalPlanFn cb = j->plan_cb;
    j->call = NULL;
    j->plan_cb = NULL;
    json_t *plan = NULL;
    if (j->result >= 0) {
        json_t *phys = backups_physical(w->backups, NULL);
        plan = wal_plan_decide(phys, j->segs, j->nsegs, w->seg_size, j->created_at, w->flushed_at_ms);
        json_decref(phys);
        if (!plan) {
            j->result = -ENOMEM;
            snprintf(j->err, sizeof(j->err), "out of memory");
        }
    }
    if (cb) {
        cb(j->result, plan, j->err, j->cb_data);
        return;
    }
    if (j->result < 0) {
        control_reply_error(call, j->result, "%s", j->err);
        return;
    }
    json_object_set_new(plan, "dry_run", json_true());
    control_reply_ok(call, plan);
}

/* Why the archive cannot plan now ("" when it can). */
static const char *wal_plan_unready(const WalArchive *w)
{
    if (w->closing)
        return "the daemon is stopping";
    if (!w->cfg.enabled)
        return "no wal: section: there is no WAL archive to recover from";
    return w->scanned ? "" : "the WAL archive has not been read yet";
}

int wal_plan(WalArchive *w, int64_t target_ms, WalPlanFn done, void *data, char *msg, size_t msglen)
{
    if (wal_plan_unready(w)[0]) {
        snprintf(msg, msglen, "%s", wal_plan_unready(w));
        return DR_ESTATE;
    }
    WalJob *j = wal__job_new(w, WAL_JOB_PLAN);
    if (!j) {
        snprintf(msg, msglen, "out of memory");
        return -ENOMEM;
    }
    j->plan_cb = done;
    j->cb_data = data;
    j->created_at = target_ms;
    wal__push_job(w, j);
    return 0;
}

void wal_set_recover_handler(WalArchive *w, CtlHandlerFn fn, void *data)
{
    w->recover_fn = fn;
    w->recover_data = data;
}

/* ---- staging the WAL of a recovery ------------------------------------------------------------------ */

/* Worker: write data as dir/name, owned by the job's uid:gid, 0600. */
static int wal_stage_write(WalJob *j, const char *name, const uint8_t *data, size_t len)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s", j->stage_dir, name);
    int r = atomicfile_write(path, data, len, 0600);
    if (r == 0 && chown(path, j->uid, j->gid) < 0)
        r = -errno;
    if (r < 0) {
        snprintf(j->err, sizeof(j->err), "cannot write '%.300s': %s", path, strerror(-r));
        return r;
    }
    j->files++;
    j->bytes += len;
    return 0;
}

/* Worker: one archive file (v) decrypted and verified into the stage directory. */
static int wal_stage_one(WalJob *j, const WalSeg *v)
{
    char name[128], path[4400], out[WAL_NAME_LEN + 16];
    uint8_t *data = NULL;
    size_t len = 0;
    int r;
    walarchive_file_name(v->kind, v->tli, v->segno, j->seg_size, j->codec, name, sizeof(name));
    snprintf(path, sizeof(path), "%s/%s", j->dir, name);
    walarchive_seg_name(v->tli, v->segno, j->seg_size, out);
    uint8_t key[BCF_KEY_LEN];
    if ((r = wal__file_key(j, path, v->kind == WALFILE_PARTIAL, key, j->err, sizeof(j->err))) < 0) {
        snprintf(j->err + strlen(j->err), sizeof(j->err) - strlen(j->err), " (%s)", name);
        return r;
    }
    if (v->kind == WALFILE_PARTIAL) {
        uint64_t have = 0;
        bool torn = false;
        if (!(data = calloc(1, (size_t)j->seg_size))) {
            explicit_bzero(key, sizeof(key));
            return -ENOMEM;
        }
        len = (size_t)j->seg_size;
        r = walarchive_read_partial(path, key, data, j->seg_size, false, &have, &torn, j->err, sizeof(j->err));
    } else {
        r = walarchive_read_file(path, key, (size_t)j->seg_size, &data, &len, j->err, sizeof(j->err));
        if (v->kind == WALFILE_PARTIAL_END)
            strcat(out, ".partial");
    }
    if (r == 0)
        r = wal_stage_write(j, out, data, len);
    else
        snprintf(j->err + strlen(j->err), sizeof(j->err) - strlen(j->err), " (%s)", name);
    explicit_bzero(key, sizeof(key));
    free(data);
    return r;
}

/* Worker: every history file of the archive into the stage directory. */
static int wal_stage_histories(WalJob *j)
{
    DIR *d = opendir(j->dir);
    struct dirent *de;
    int r = 0;
    if (!d)
        return -errno;
    while (r == 0 && (de = readdir(d)) != NULL) {
        uint32_t tli;
        uint64_t segno;
        char path[4400], out[32];
        uint8_t *data = NULL;
        size_t len = 0;
        if (walarchive_classify(de->d_name, j->seg_size, &tli, &segno) != WALFILE_HISTORY)
            continue;
        snprintf(path, sizeof(path), "%s/%s", j->dir, de->d_name);
        snprintf(out, sizeof(out), "%08X.history", tli);
        uint8_t key[BCF_KEY_LEN];
        r = wal__file_key(j, path, false, key, j->err, sizeof(j->err));
        if (r == 0)
            r = walarchive_read_file(path, key, 1u << 24, &data, &len, j->err, sizeof(j->err));
        explicit_bzero(key, sizeof(key));
        if (r == 0)
            r = wal_stage_write(j, out, data, len);
        free(data);
    }
    closedir(d);
    return r;
}

void wal__stage_work(WalJob *j)
{
    WalSeg *v = NULL;
    size_t n = 0;
    if (mkdir(j->stage_dir, 0700) < 0 && errno != EEXIST) {
        j->result = -errno;
        snprintf(j->err, sizeof(j->err), "cannot create '%.400s': %s", j->stage_dir, strerror(errno));
        return;
    }
    if (chown(j->stage_dir, j->uid, j->gid) < 0) {
        j->result = -errno;
        snprintf(j->err, sizeof(j->err), "cannot hand '%.400s' to the server's user: %s", j->stage_dir,
                 strerror(errno));
        return;
    }
    j->result = wal__list(j->dir, j->seg_size, &v, &n);
    if (j->result < 0) {
        snprintf(j->err, sizeof(j->err), "read '%s': %s", j->dir, strerror(-j->result));
        return;
    }
    /* the one after the last too, when it is there: the replay stops at the first commit after the
     * target, which may be in it */
    for (size_t i = 0; i < n && j->result == 0; i++) {
        if (v[i].segno < j->segno || v[i].segno > j->stage_to + 1 || (i + 1 < n && v[i + 1].segno == v[i].segno))
            continue; /* out of the range, or an older timeline's copy of the same segment */
        j->result = wal_stage_one(j, &v[i]);
    }
    free(v);
    if (j->result == 0)
        j->result = wal_stage_histories(j);
    if (j->result == 0)
        (void)atomicfile_fsync_dir(j->stage_dir);
}

void wal__stage_done(WalJob *j)
{
    WalStageFn cb = j->stage_cb;
    j->stage_cb = NULL;
    cb(j->result, j->files, j->bytes, j->err, j->cb_data);
}

int wal_stage(WalArchive *w, const json_t *plan, const char *dir, uid_t uid, gid_t gid, WalStageFn done, void *data,
              char *msg, size_t msglen)
{
    const json_t *wal = json_object_get(plan, "wal");
    uint32_t tli;
    uint64_t from, to;
    if (wal_plan_unready(w)[0] || !w->key_loaded) {
        snprintf(msg, msglen, "%s", wal_plan_unready(w)[0] ? wal_plan_unready(w) : "the archive's key is not loaded yet");
        return DR_ESTATE;
    }
    if (walarchive_parse_seg(json_string_value(json_object_get(wal, "from_segment")) ?: "", w->seg_size, &tli,
                             &from) < 0 ||
        walarchive_parse_seg(json_string_value(json_object_get(wal, "to_segment")) ?: "", w->seg_size, &tli, &to) < 0 ||
        to < from) {
        snprintf(msg, msglen, "the plan names no WAL range");
        return -EINVAL;
    }
    WalJob *j = wal__job_new(w, WAL_JOB_STAGE);
    if (!j || !(j->stage_dir = strdup(dir))) {
        free(j ? j->dir : NULL);
        free(j);
        snprintf(msg, msglen, "out of memory");
        return -ENOMEM;
    }
    j->segno = from;
    j->stage_to = to;
    j->uid = uid;
    j->gid = gid;
    j->stage_cb = done;
    j->cb_data = data;
    wal__push_job(w, j);
    return 0;
}

void wal__cmd_recover(CtlCall *call, const json_t *args, void *data)
{
    WalArchive *w = data;
    const json_t *t = json_object_get(args, "timestamp_ms");
    if (!json_is_true(json_object_get(args, "dry_run"))) {
        if (w->recover_fn)
            w->recover_fn(call, args, w->recover_data);
        else
            control_reply_error(call, DR_ESTATE, "the daemon runs no recovery scenarios: only --dry-run");
        return;
    }
    if (!json_is_integer(t)) {
        control_reply_error(call, DR_EBADARG, "--timestamp is required");
        return;
    }
    if (wal_plan_unready(w)[0]) {
        control_reply_error(call, DR_ESTATE, "%s", wal_plan_unready(w));
        return;
    }
    WalJob *j = wal__job_new(w, WAL_JOB_PLAN);
    if (!j) {
        control_reply_error(call, -ENOMEM, "out of memory");
        return;
    }
    j->call = call;
    j->created_at = json_integer_value(t);
    wal__push_job(w, j);
}
