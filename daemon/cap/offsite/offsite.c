/*
 * offsite: the off-site uploader module (see offsite.h, offsite_internal.h and docs/offsite.md).
 *
 * Owns the queue of files to copy (oldest first, at most repository.s3.concurrency at once), the
 * record of what is off-site (loaded at start, saved after every change, coalesced, on the thread
 * pool), the scans that fill the queue, the tick (every 250 ms: start what can start, retries whose
 * time has come, conditions), the conditions offsite.lag:C and offsite.failed:C, the `offsite`
 * status component, the metrics, the readiness check and the offsite_status command.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cap/offsite/offsite_internal.h"
#include "cap/offsite/offsite_retention.h"
#include "clock.h"
#include "err.h"
#include "log.h"

#define OFFSITE_TICK_MS 250
static const char *const offsite_kind_names[] = {"backup", "manifest", "wal", "abort", "delete", "state",
                                                 "state_tar"};
static const char *const offsite_phase_names[] = {"waiting", "hashing", "put", "create", "recording", "reading",
                                                  "part", "hashing", "complete", "head", "recording", "abort",
                                                  "recording", "delete"};

uint32_t offsite__rand(Offsite *o)
{
    uint32_t x = o->rng ? o->rng : 0x9e3779b9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return o->rng = x;
}

/* ---- tasks ---- */

static void offsite_task_free(OffsiteTask *t)
{
    offsite__task_reset(t);
    free(t->upload_id); /* an abort task's (reset keeps it) */
    free(t->name);
    free(t->path);
    free(t->key);
    free(t->after);
    json_decref(t->meta);
    free(t);
}

void offsite__task_reset(OffsiteTask *t)
{
    free(t->body);
    t->body = NULL;
    t->body_len = 0;
    for (size_t i = 0; t->etags && i < t->n_parts; i++)
        free(t->etags[i]);
    free(t->etags);
    t->etags = NULL;
    t->n_parts = t->part = 0;
    if (t->kind != OFS_ABORT) {
        free(t->upload_id);
        t->upload_id = NULL;
    }
    t->attempt = 0;
}

static void offsite_task_unlink(OffsiteTask *t)
{
    Offsite *o = t->o;
    if (t->prev)
        t->prev->next = t->next;
    else
        o->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        o->tail = t->prev;
    t->prev = t->next = NULL;
    o->n_tasks--;
    if (t->active)
        o->n_active--;
}

void offsite__task_done(OffsiteTask *t)
{
    Offsite *o = t->o;
    offsite_task_unlink(t);
    offsite_task_free(t);
    offsite__kick(o);
}

static OffsiteTask *offsite_find(const Offsite *o, const char *key)
{
    for (OffsiteTask *t = o->head; t; t = t->next)
        if (t->kind != OFS_ABORT && t->kind != OFS_DELETE && !strcmp(t->key, key))
            return t;
    return NULL;
}

OffsiteTask *offsite__task_add(Offsite *o, OffsiteKind kind, const char *name, const char *path, const char *key,
                               const char *after, int64_t born_ms)
{
    OffsiteTask *t = calloc(1, sizeof(*t));
    if (!t || !(t->name = strdup(name)) || !(t->path = strdup(path)) || !(t->key = strdup(key)) ||
        (after && !(t->after = strdup(after)))) {
        if (t)
            offsite_task_free(t);
        return NULL;
    }
    t->o = o;
    t->kind = kind;
    t->born_ms = born_ms;
    t->seen = true;
    OffsiteTask *at = o->tail;
    while (at && at->born_ms > born_ms)
        at = at->prev;
    t->prev = at;
    t->next = at ? at->next : o->head;
    if (t->next)
        t->next->prev = t;
    else
        o->tail = t;
    if (at)
        at->next = t;
    else
        o->head = t;
    o->n_tasks++;
    return t;
}

void offsite__task_failed(OffsiteTask *t, const char *fmt, ...)
{
    Offsite *o = t->o;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->last_error, sizeof(t->last_error), fmt, ap);
    va_end(ap);
    bool first = !t->failed;
    t->failed = true;
    o->failures_total++;
    snprintf(o->last_failure, sizeof(o->last_failure), "'%.200s': %s", t->key, t->last_error);
    o->last_failure_ms = clock_wall_ms();
    if (first)
        log_warning("offsite", "upload of '%s' failed: %s", t->key, t->last_error);
    t->retry_at = uv_now(o->core->loop) + o->cfg.retry_cap_ms;
    if (t->upload_id && t->kind != OFS_ABORT && t->phase != OT_ABORT) {
        offsite__task_abort(t); /* then it starts over at retry_at */
        return;
    }
    /* an abort that failed leaves the upload in the record: the next start tries again */
    offsite__task_reset(t);
    t->phase = OT_WAITING;
    t->next_phase = t->kind == OFS_ABORT ? OT_ABORT : t->kind == OFS_DELETE ? OT_DELETE : OT_HASHING;
    if (t->active) {
        t->active = false;
        o->n_active--;
    }
}

void offsite__task_uploaded(OffsiteTask *t)
{
    Offsite *o = t->o;
    int64_t now = clock_wall_ms();
    o->bytes_total += t->size;
    o->objects_total++;
    snprintf(o->last_key, sizeof(o->last_key), "%s", t->key);
    o->last_ms = now;
    o->last_bytes = t->size;
    if (t->failed)
        log_info("offsite", "'%s' is off-site after all (%" PRIu64 " bytes)", t->key, t->size);
    t->failed = false;
    json_t *e = json_pack("{s:I,s:s,s:I}", "size", (json_int_t)t->size, "sha256", t->sha256, "at_ms",
                          (json_int_t)now);
    if (e && t->meta)
        json_object_update(e, t->meta); /* a backup's kind and start, for retention */
    json_object_set_new(o->objects, t->key, e);
    t->save_gen = offsite__record_changed(o);
}

/* ---- the record ---- */

static void offsite_start_save(Offsite *o);

static void offsite_saved(OffsiteJob *j)
{
    Offsite *o = j->o;
    bool ok = j->status == 0;
    o->saving = false;
    if (ok) {
        o->saved_gen = o->saving_gen;
        o->save_error[0] = '\0';
    } else {
        snprintf(o->save_error, sizeof(o->save_error), "%s", j->err);
        log_error("offsite", "%s", j->err);
    }
    if (o->closing)
        return;
    for (OffsiteTask *t = o->head, *next; t; t = next) {
        next = t->next;
        if ((t->phase == OT_SAVE || t->phase == OT_SAVE_UPLOAD || t->phase == OT_SAVE_DELETE) && !t->busy &&
            t->save_gen <= o->saving_gen)
            offsite__task_saved(t, ok);
    }
    if (o->gen > o->saved_gen && ok)
        offsite_start_save(o);
}

static void offsite_start_save(Offsite *o)
{
    json_t *rec = json_pack("{s:i,s:s,s:O,s:O,s:O}", "version", 1, "bucket", o->cfg.bucket ? o->cfg.bucket : "",
                            "objects", o->objects, "multipart", o->multipart, "removed", o->removed);
    OffsiteJob *j = rec ? offsite__job_new(o, OJ_SAVE, offsite_saved) : NULL;
    if (!j || !(j->path = strdup(o->state_path)) || !(j->text = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS))) {
        json_decref(rec);
        if (j) {
            free(j->path);
            free(j);
        }
        log_error("offsite", "cannot save the record of uploads: out of memory");
        return;
    }
    json_decref(rec);
    o->saving = true;
    o->saving_gen = o->gen;
    if (offsite__job_queue(j) < 0) {
        o->saving = false;
        log_error("offsite", "cannot queue the record's save");
    }
}

uint64_t offsite__record_changed(Offsite *o)
{
    o->gen++;
    if (!o->saving)
        offsite_start_save(o);
    return o->gen;
}

static void offsite_loaded(OffsiteJob *j)
{
    Offsite *o = j->o;
    o->loading = false;
    if (o->closing)
        return;
    if (j->status < 0 && j->status != DR_ECORRUPT) {
        log_error("offsite", "%s: uploads wait until it can be read", j->err);
        snprintf(o->scan_error, sizeof(o->scan_error), "%s", j->err);
        return;
    }
    if (j->status == DR_ECORRUPT)
        events_emit(o->core->events, SEV_WARNING, "offsite.record", NULL, false, NULL, "%s", j->err);
    json_t *rec = j->result;
    const char *bucket = json_string_value(json_object_get(rec, "bucket"));
    json_decref(o->objects);
    json_decref(o->multipart);
    o->objects = json_object();
    o->multipart = json_object();
    if (rec && (!bucket || !bucket[0] || !strcmp(bucket, o->cfg.bucket))) {
        json_object_update(o->objects, json_object_get(rec, "objects"));
        offsite__retention_load(o, rec);
    }
    const char *id;
    json_t *v;
    json_object_foreach(json_object_get(rec, "multipart"), id, v) {
        const char *key = json_string_value(json_object_get(v, "key"));
        if (!key)
            continue;
        json_object_set(o->multipart, id, v);
        OffsiteTask *t = offsite__task_add(o, OFS_ABORT, key, "", key, NULL, 0);
        if (t && (t->upload_id = strdup(id)) != NULL)
            t->next_phase = OT_ABORT;
        else if (t)
            offsite__task_done(t);
    }
    o->loaded = true;
    o->next_scan = 0;
    log_info("offsite", "%zu object(s) off-site in bucket '%s', %zu interrupted upload(s) to abort",
             json_object_size(o->objects), o->cfg.bucket, json_object_size(o->multipart));
    offsite__kick(o);
}

/* ---- scans ---- */

void offsite__key(const Offsite *o, bool wal, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s%s/%s", o->cfg.prefix ? o->cfg.prefix : "", wal ? "wal" : "backups", name);
}

static void offsite_key(const Offsite *o, OffsiteKind kind, const char *name, char *out, size_t n)
{
    if (kind == OFS_STATE)
        snprintf(out, n, "%sstate/%s", o->cfg.prefix ? o->cfg.prefix : "", name);
    else
        offsite__key(o, kind == OFS_WAL, name, out, n);
}

/* The state files go up once this host has a backup of its own in the bucket: a fresh recovery
 * host pointed at the bucket must not replace the lost host's state (its history) with its own
 * empty one before complete_disaster has restored it. */
static bool offsite_state_may_go(const Offsite *o)
{
    char pfx[600];
    const char *k;
    json_t *v;
    snprintf(pfx, sizeof(pfx), "%sbackups/", o->cfg.prefix ? o->cfg.prefix : "");
    json_object_foreach(o->objects, k, v) {
        if (!strncmp(k, pfx, strlen(pfx)))
            return true;
    }
    return false;
}

static void offsite_scanned(OffsiteJob *j)
{
    Offsite *o = j->o;
    size_t i;
    json_t *f;
    char key[1024], after[1024];
    bool pruned = false;

    o->scanning = false;
    o->next_scan = uv_now(o->core->loop) + o->cfg.scan_interval_ms;
    if (o->closing)
        return;
    snprintf(o->scan_error, sizeof(o->scan_error), "%s", j->err);
    if (j->status < 0)
        return;
    for (OffsiteTask *t = o->head; t; t = t->next)
        t->seen = t->kind == OFS_ABORT || t->kind == OFS_DELETE;
    json_t *local_wal = json_object(), *local = json_object();
    json_array_foreach(j->result, i, f) {
        OffsiteKind kind = (OffsiteKind)json_integer_value(json_object_get(f, "kind"));
        const char *name = json_string_value(json_object_get(f, "name"));
        const char *a = json_string_value(json_object_get(f, "after"));
        json_t *meta = json_object_get(f, "meta"), *rec;
        offsite_key(o, kind, name, key, sizeof(key));
        json_object_set_new(local, key, json_true());
        if (kind == OFS_WAL)
            json_object_set_new(local_wal, key, json_true());
        if (kind == OFS_STATE && (rec = json_object_get(o->objects, key)) != NULL) {
            const char *sha = json_string_value(json_object_get(f, "sha256"));
            const char *was = json_string_value(json_object_get(rec, "sha256"));
            if (sha && was && !strcmp(sha, was))
                continue; /* the bucket has these bytes */
            rec = NULL;   /* changed: replaced (a PUT replaces the object whole) */
        } else if ((rec = json_object_get(o->objects, key)) != NULL) {
            if (meta && !json_object_get(rec, "kind")) { /* recorded before retention knew kinds */
                json_object_update(rec, meta);
                pruned = true;
            }
            continue;
        }
        if (json_object_get(o->removed, key))
            continue; /* retention took it out of the bucket: not uploaded again */
        OffsiteTask *t = offsite_find(o, key);
        if (t) {
            t->seen = true;
            continue;
        }
        if (a)
            offsite_key(o, OFS_BACKUP, a, after, sizeof(after));
        OffsiteTask *t2 = offsite__task_add(o, kind, name, json_string_value(json_object_get(f, "path")), key,
                                            a ? after : NULL, json_integer_value(json_object_get(f, "born_ms")));
        if (!t2)
            break;
        t2->meta = json_incref(meta);
    }
    /* gone from the disk before going off-site: nothing to upload any more */
    for (OffsiteTask *t = o->head, *next; t; t = next) {
        next = t->next;
        if (!t->seen && !t->active && !t->busy)
            offsite__task_done(t);
    }
    /* Without a retention rule the record keeps only the WAL files the disk still has (the bucket
     * keeps them all); with one it keeps them all, since retention decides from the record. */
    const char *k;
    json_t *v;
    void *tmp;
    char walpfx[600];
    snprintf(walpfx, sizeof(walpfx), "%swal/", o->cfg.prefix ? o->cfg.prefix : "");
    json_object_foreach_safe(o->objects, tmp, k, v) {
        if (!offsite__retention_enabled(o) && !strncmp(k, walpfx, strlen(walpfx)) && !json_object_get(local_wal, k)) {
            json_object_del(o->objects, k);
            pruned = true;
        }
    }
    /* a removed object's entry goes once its file is gone from the disk too */
    json_object_foreach_safe(o->removed, tmp, k, v) {
        if (json_is_true(json_object_get(v, "done")) && !json_object_get(local, k)) {
            json_object_del(o->removed, k);
            pruned = true;
        }
    }
    json_decref(local_wal);
    json_decref(local);
    if (pruned)
        offsite__record_changed(o);
    offsite__retention(o);
}

static void offsite_start_scan(Offsite *o)
{
    bool scanned = false;
    json_t *cat = backups_catalog(o->backups, &scanned);
    if (!scanned || !o->backup_dir) {
        json_decref(cat);
        /* the catalog is not loaded yet */
        o->next_scan = uv_now(o->core->loop) + (o->cfg.scan_interval_ms < 500 ? o->cfg.scan_interval_ms : 500);
        return;
    }
    OffsiteJob *j = offsite__job_new(o, OJ_SCAN, offsite_scanned);
    bool state = o->state_dir && offsite_state_may_go(o);
    if (!j || !(j->path = strdup(o->backup_dir)) || (o->wal_dir && !(j->path2 = strdup(o->wal_dir))) ||
        (state && !(j->state_dir = strdup(o->state_dir))) ||
        (state && o->node_dir && !(j->node_dir = strdup(o->node_dir)))) {
        json_decref(cat);
        if (j) {
            free(j->path2);
            free(j->state_dir);
        }
        if (j) {
            free(j->path);
            free(j);
        }
        return;
    }
    j->catalog = cat;
    o->scanning = true;
    if (offsite__job_queue(j) < 0)
        o->scanning = false;
}

/* ---- conditions, health ---- */

static double offsite_lag_s(const Offsite *o)
{
    int64_t oldest = 0, now = clock_wall_ms();
    for (const OffsiteTask *t = o->head; t; t = t->next)
        if (t->kind != OFS_ABORT && t->born_ms > 0 && (!oldest || t->born_ms < oldest))
            oldest = t->born_ms;
    return oldest && now > oldest ? (double)(now - oldest) / 1000.0 : 0.0;
}

static unsigned offsite_n_failed(const Offsite *o)
{
    unsigned n = 0;
    for (const OffsiteTask *t = o->head; t; t = t->next)
        n += t->failed;
    return n;
}

static void offsite_conditions(Offsite *o)
{
    char key[160];
    double lag = offsite_lag_s(o);
    int level = !o->cfg.enabled ? 0
                : lag * 1000.0 >= (double)o->cfg.lag_critical_ms ? 2
                : lag * 1000.0 >= (double)o->cfg.lag_warning_ms  ? 1
                                                                 : 0;
    snprintf(key, sizeof(key), "offsite.lag:%s", o->cluster);
    if (level != o->lag_level) {
        json_t *d = json_pack("{s:f,s:I}", "lag_s", lag, "queued", (json_int_t)o->n_tasks);
        if (level)
            events_emit(o->core->events, level == 2 ? SEV_CRITICAL : SEV_WARNING, "offsite.lag", key, false, d,
                        "the oldest file not yet off-site is %.0f s old (%zu queued)", lag, o->n_tasks);
        else
            events_emit(o->core->events, SEV_INFO, "offsite.lag", key, true, d, "the off-site copy caught up");
        json_decref(d);
        o->lag_level = level;
    }
    unsigned nf = o->cfg.enabled ? offsite_n_failed(o) : 0;
    snprintf(key, sizeof(key), "offsite.failed:%s", o->cluster);
    if ((nf > 0) != o->failed_open) {
        o->failed_open = nf > 0;
        json_t *d = json_pack("{s:I,s:s}", "failed_files", (json_int_t)nf, "error", o->last_failure);
        if (nf)
            events_emit(o->core->events, SEV_ERROR, "offsite.failed", key, false, d, "off-site upload failing: %s",
                        o->last_failure);
        else
            events_emit(o->core->events, SEV_INFO, "offsite.failed", key, true, d, "off-site uploads succeed again");
        json_decref(d);
    }
    Component *c = o->cfg.enabled ? status_component(o->core->status, "offsite") : NULL;
    if (c) {
        Health h = o->failed_open || o->lag_level == 2 ? HEALTH_DOWN : o->loaded ? HEALTH_UP : HEALTH_UNKNOWN;
        if (h != c->health) {
            status_set_health(c, h);
            status_changed(o->core->status);
        }
    }
}

/* ---- the tick ---- */

static void offsite_maybe_closed(Offsite *o);

void offsite__kick(Offsite *o)
{
    uint64_t now = uv_now(o->core->loop);
    if (o->closing) {
        offsite_maybe_closed(o);
        return;
    }
    if (!o->cfg.enabled || !o->loaded || !leader_acting(o->core->leader))
        return; /* high availability: only the leader uploads (a follower's queue waits) */
    if (!o->scanning && now >= o->next_scan)
        offsite_start_scan(o);
    for (OffsiteTask *t = o->head, *next; t; t = next) {
        next = t->next;
        if (t->busy || t->retry_at > now)
            continue;
        if (t->active) {
            if (t->phase == OT_WAITING) /* a retry whose time has come */
                offsite__task_step(t);
            continue;
        }
        if (o->n_active >= (unsigned)o->cfg.concurrency)
            continue;
        if (t->after && !json_object_get(o->objects, t->after))
            continue;
        t->active = true;
        o->n_active++;
        offsite__task_step(t);
    }
}

static void offsite_on_tick(uv_timer_t *h)
{
    Offsite *o = h->data;
    offsite__kick(o);
    if (!o->closing)
        offsite_conditions(o);
}

static void offsite_on_event(const Event *ev, void *data)
{
    Offsite *o = data;
    if (!strcmp(ev->kind, "backup.done") || !strcmp(ev->kind, "backup.verify"))
        o->next_scan = 0;
}

/* ---- commands, metrics, readiness ---- */

bool offsite_has_backup(const char *file, void *data)
{
    Offsite *o = data;
    char key[1024];
    if (!o || !o->cfg.enabled)
        return false;
    offsite_key(o, OFS_BACKUP, file, key, sizeof(key));
    if (!json_object_get(o->objects, key))
        return false;
    snprintf(key + strlen(key), sizeof(key) - strlen(key), "%s", BACKUP_MANIFEST_SUFFIX);
    return json_object_get(o->objects, key) != NULL;
}

static int offsite_started_cmp(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "started_at"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "started_at"));
    int c = strcmp(x ? x : "", y ? y : "");
    return c ? c : strcmp(json_string_value(json_object_get(*(json_t *const *)a, "name")),
                          json_string_value(json_object_get(*(json_t *const *)b, "name")));
}

json_t *offsite_backups(void *data)
{
    Offsite *o = data;
    json_t *out = json_array(), *v;
    char pfx[600], mkey[1200], at[64];
    const char *k;
    if (!out || !o || !o->cfg.enabled || !o->loaded)
        return out;
    snprintf(pfx, sizeof(pfx), "%sbackups/", o->cfg.prefix ? o->cfg.prefix : "");
    json_object_foreach(o->objects, k, v) {
        size_t stem;
        if (strncmp(k, pfx, strlen(pfx)) != 0 || offsite_retention_classify(k + strlen(pfx), &stem) != OFSR_UNKNOWN)
            continue; /* a manifest or a state tar: not a backup of its own */
        snprintf(mkey, sizeof(mkey), "%s%s", k, BACKUP_MANIFEST_SUFFIX);
        if (!json_object_get(o->objects, mkey))
            continue; /* its manifest is not up (yet): not restorable from the bucket */
        const char *kind = json_string_value(json_object_get(v, "kind"));
        time_t started = (time_t)json_integer_value(json_object_get(v, "started_s"));
        struct tm tm;
        at[0] = '\0';
        if (started > 0 && gmtime_r(&started, &tm))
            strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
        json_array_append_new(out, json_pack("{s:s,s:s,s:s?,s:O?,s:b,s:s}", "name", k + strlen(pfx), "kind",
                                             kind ? kind : "logical", "started_at", at[0] ? at : NULL,
                                             "file_size_bytes", json_object_get(v, "size"), "verified", 1,
                                             "location", "offsite"));
    }
    size_t n = json_array_size(out), i;
    json_t **items = calloc(n + 1, sizeof(*items));
    if (!items)
        return out;
    for (i = 0; i < n; i++)
        items[i] = json_incref(json_array_get(out, i));
    qsort(items, n, sizeof(*items), offsite_started_cmp);
    json_array_clear(out);
    for (i = 0; i < n; i++)
        json_array_append_new(out, items[i]);
    free(items);
    return out;
}

bool offsite_wal_may_go(const char *file, void *data)
{
    Offsite *o = data;
    char key[1024];
    if (!o || !o->cfg.enabled || !o->wal_dir)
        return true; /* the WAL archive is not copied off-site: nothing to wait for */
    if (!o->loaded)
        return false; /* what is off-site is not known yet */
    offsite_key(o, OFS_WAL, file, key, sizeof(key));
    return json_object_get(o->objects, key) != NULL || json_object_get(o->removed, key) != NULL;
}

void offsite_set_wal_segment_size(Offsite *o, uint64_t (*seg_size)(void *data), void *data)
{
    o->seg_size_fn = seg_size;
    o->seg_size_data = data;
}

static void offsite_cmd_status(CtlCall *call, const json_t *args, void *data)
{
    Offsite *o = data;
    json_t *queue = json_array();
    int64_t now = clock_wall_ms();
    (void)args;
    if (!o->cfg.enabled) {
        json_decref(queue);
        control_reply_ok(call, json_pack("{s:b}", "enabled", 0));
        return;
    }
    for (const OffsiteTask *t = o->head; t && json_array_size(queue) < 100; t = t->next)
        json_array_append_new(
            queue, json_pack("{s:s,s:s,s:I,s:f,s:s,s:b,s:I,s:I,s:I,s:b,s:s?}", "key", t->key, "kind",
                             offsite_kind_names[t->kind], "size", (json_int_t)t->size, "age_s",
                             t->born_ms ? (double)(now - t->born_ms) / 1000.0 : 0.0, "phase",
                             offsite_phase_names[t->phase == OT_WAITING && t->active ? OT_WAITING : t->phase], "active",
                             t->active, "attempt", (json_int_t)t->attempt, "part", (json_int_t)t->part, "parts",
                             (json_int_t)t->n_parts, "failed", t->failed, "error",
                             t->last_error[0] ? t->last_error : NULL));
    json_t *r = json_pack("{s:b,s:s,s:s,s:s,s:s,s:s,s:b,s:I,s:I,s:o,s:f,s:i,s:b,s:I,s:I,s:I,s:I,s:I,s:s?,s:s?,s:o*}",
                          "enabled", 1, "endpoint", o->cfg.endpoint, "bucket", o->cfg.bucket, "prefix", o->cfg.prefix,
                          "url_style", o->cfg.virtual_host ? "virtual" : "path", "state_file", o->state_path,
                          "loaded", o->loaded, "queued", (json_int_t)o->n_tasks, "active", (json_int_t)o->n_active,
                          "queue", queue, "lag_s", offsite_lag_s(o), "lag_level", o->lag_level, "failing",
                          o->failed_open, "objects_uploaded", (json_int_t)o->objects_total, "bytes_uploaded",
                          (json_int_t)o->bytes_total, "failures_total", (json_int_t)o->failures_total, "retries_total",
                          (json_int_t)o->retries_total, "objects_recorded", (json_int_t)json_object_size(o->objects),
                          "scan_error", o->scan_error[0] ? o->scan_error : NULL, "save_error",
                          o->save_error[0] ? o->save_error : NULL, "retention", offsite__retention_status(o));
    if (o->last_ms)
        json_object_set_new(r, "last_upload", json_pack("{s:s,s:I,s:I}", "key", o->last_key, "at_ms",
                                                        (json_int_t)o->last_ms, "bytes", (json_int_t)o->last_bytes));
    if (o->last_failure_ms)
        json_object_set_new(r, "last_failure", json_pack("{s:s,s:I}", "error", o->last_failure, "at_ms",
                                                         (json_int_t)o->last_failure_ms));
    control_reply_ok(call, r);
}

static void offsite_collect(MetricsWriter *mw, void *data)
{
    Offsite *o = data;
    if (!o->cfg.enabled)
        return;
    metrics_family(mw, "drsupervisor_offsite_uploaded_bytes_total", METRIC_COUNTER,
                   "bytes copied to the off-site bucket (checked after upload) since the daemon started");
    metrics_value(mw, "drsupervisor_offsite_uploaded_bytes_total", (double)o->bytes_total);
    metrics_family(mw, "drsupervisor_offsite_uploaded_objects_total", METRIC_COUNTER,
                   "files copied to the off-site bucket (checked after upload) since the daemon started");
    metrics_value(mw, "drsupervisor_offsite_uploaded_objects_total", (double)o->objects_total);
    metrics_family(mw, "drsupervisor_offsite_failures_total", METRIC_COUNTER,
                   "off-site uploads that failed beyond their retries");
    metrics_value(mw, "drsupervisor_offsite_failures_total", (double)o->failures_total);
    metrics_family(mw, "drsupervisor_offsite_lag_seconds", METRIC_GAUGE,
                   "age of the oldest file not yet off-site (0 when everything is)");
    metrics_value(mw, "drsupervisor_offsite_lag_seconds", offsite_lag_s(o));
    metrics_family(mw, "drsupervisor_offsite_queue_files", METRIC_GAUGE, "files waiting to go off-site");
    metrics_value(mw, "drsupervisor_offsite_queue_files", (double)o->n_tasks);
}

static void offsite_readiness(ReadyWriter *rw, void *data)
{
    Offsite *o = data;
    if (!o->cfg.enabled)
        return;
    double lag = offsite_lag_s(o);
    if (!o->loaded)
        readiness_add(rw, "offsite.repository", READY_WARN, "the record of uploads is not read yet%s%s",
                      o->scan_error[0] ? ": " : "", o->scan_error);
    else if (o->failed_open)
        readiness_add(rw, "offsite.repository", READY_FAIL, "off-site uploads are failing: %s", o->last_failure);
    else if (o->lag_level)
        readiness_add(rw, "offsite.repository", o->lag_level == 2 ? READY_FAIL : READY_WARN,
                      "the oldest file not yet off-site is %.0f s old", lag);
    else
        readiness_add(rw, "offsite.repository", READY_PASS, "bucket '%s': %zu object(s) recorded, %zu queued",
                      o->cfg.bucket, json_object_size(o->objects), o->n_tasks);
}

/* ---- life cycle ---- */

Offsite *offsite_new(Core *core, Backups *backups)
{
    Offsite *o = calloc(1, sizeof(*o));
    if (!o)
        return NULL;
    o->core = core;
    o->backups = backups;
    if (getrandom(&o->rng, sizeof(o->rng), GRND_NONBLOCK) != (ssize_t)sizeof(o->rng))
        o->rng = (uint32_t)clock_wall_ms();
    o->objects = json_object();
    o->multipart = json_object();
    o->removed = json_object();
    CtlCommand c[] = {
        {"offsite_status", false, offsite_cmd_status, o, "the off-site copy: queue, last upload, lag, failures"},
        {"verify_offsite", true, offsite__cmd_verify, o,
         "download a backup from the bucket and verify it (args: name); answers when done"},
    };
    if (!o->objects || !o->multipart || !o->removed || uv_timer_init(core->loop, &o->tick) < 0) {
        json_decref(o->objects);
        json_decref(o->multipart);
        json_decref(o->removed);
        free(o);
        return NULL;
    }
    o->tick.data = o;
    o->tick_open = true;
    if ((o->sub = events_subscribe(core->events, offsite_on_event, o)) < 0 ||
        (core->metrics && metrics_register(core->metrics, offsite_collect, o) < 0) ||
        (core->readiness && readiness_register(core->readiness, offsite_readiness, o) < 0) ||
        (core->control && control_register(core->control, c, 2) < 0)) {
        offsite_close(o, NULL, NULL);
        return NULL;
    }
    return o;
}

int offsite_apply_config(Offsite *o, const Config *cfg)
{
    ConfigOffsite n;
    char path[4096];
    if (config_offsite_copy(&cfg->offsite, &n) < 0)
        return -ENOMEM;
    bool bucket_changed = o->cfg.bucket && n.bucket && strcmp(o->cfg.bucket, n.bucket) != 0;
    config_offsite_free(&o->cfg);
    o->cfg = n;
    free(o->cluster);
    free(o->backup_dir);
    free(o->wal_dir);
    free(o->state_dir);
    free(o->node_dir);
    free(o->state_path);
    o->state_dir = cfg->state_dir && o->cfg.state ? strdup(cfg->state_dir) : NULL;
    o->node_dir = cfg->node_dir && o->cfg.state ? strdup(cfg->node_dir) : NULL;
    snprintf(path, sizeof(path), "%s/offsite.json", cfg->state_dir);
    o->cluster = strdup(cfg->cluster ? cfg->cluster : "main");
    o->backup_dir = cfg->backup.directory ? strdup(cfg->backup.directory) : NULL;
    o->wal_dir = cfg->wal.enabled && o->cfg.wal && cfg->wal.directory ? strdup(cfg->wal.directory) : NULL;
    o->state_path = strdup(path);
    if (!o->cluster || !o->state_path)
        return -ENOMEM;
    o->target = (S3Target){.endpoint = o->cfg.endpoint, .region = o->cfg.region, .bucket = o->cfg.bucket,
                           .virtual_host = o->cfg.virtual_host, .access_key = o->cfg.access_key,
                           .secret_key = o->cfg.secret_key};
    if (bucket_changed && o->loaded) { /* what is in the old bucket is not in the new one */
        json_object_clear(o->objects);
        json_object_clear(o->removed);
        for (OffsiteTask *t = o->head, *next; t; t = next) { /* removals were meant for the old bucket */
            next = t->next;
            if (t->kind == OFS_DELETE && !t->busy)
                offsite__task_done(t);
        }
        offsite__record_changed(o);
    }
    if (!o->cfg.enabled) {
        uv_timer_stop(&o->tick);
        return 0;
    }
    o->next_scan = 0;
    if (!o->loaded && !o->loading) {
        OffsiteJob *j = offsite__job_new(o, OJ_LOAD, offsite_loaded);
        if (!j || !(j->path = strdup(o->state_path))) {
            free(j);
            return -ENOMEM;
        }
        o->loading = true;
        if (offsite__job_queue(j) < 0) {
            o->loading = false;
            return -ENOMEM;
        }
    }
    uv_timer_start(&o->tick, offsite_on_tick, OFFSITE_TICK_MS, OFFSITE_TICK_MS);
    return 0;
}

static void offsite_free(Offsite *o)
{
    while (o->head) {
        OffsiteTask *t = o->head;
        offsite_task_unlink(t);
        offsite_task_free(t);
    }
    json_decref(o->objects);
    json_decref(o->multipart);
    json_decref(o->removed);
    config_offsite_free(&o->cfg);
    free(o->cluster);
    free(o->backup_dir);
    free(o->wal_dir);
    free(o->state_dir);
    free(o->node_dir);
    free(o->state_path);
    void (*cb)(void *) = o->closed_cb;
    void *data = o->closed_data;
    free(o);
    if (cb)
        cb(data);
}

static void offsite_tick_closed(uv_handle_t *h)
{
    Offsite *o = h->data;
    o->tick_open = false;
    offsite_maybe_closed(o);
}

static void offsite_maybe_closed(Offsite *o)
{
    if (o->jobs == 0 && !o->tick_open)
        offsite_free(o);
}

void offsite_close(Offsite *o, void (*closed_cb)(void *data), void *data)
{
    if (!o || o->closing)
        return;
    o->closing = true;
    o->closed_cb = closed_cb;
    o->closed_data = data;
    if (o->sub > 0)
        events_unsubscribe(o->core->events, o->sub);
    for (OffsiteTask *t = o->head; t; t = t->next)
        if (t->http_id)
            httpc_cancel(o->core->http, t->http_id);
    offsite__verify_cancel(o);
    uv_close((uv_handle_t *)&o->tick, offsite_tick_closed);
}
