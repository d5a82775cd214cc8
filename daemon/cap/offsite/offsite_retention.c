/*
 * offsite_retention: the bucket's retention (see offsite_retention.h and docs/offsite.md).
 *
 * Owns the rule (offsite_retention_decide, pure) and its loop side: after each scan the record's
 * objects are turned into items, the rule decides, and each object it drops is moved, write ahead,
 * from the record's `objects` to its `removed` map (saved on the thread pool before anything is
 * deleted) and queued as a DeleteObject task, which is retried and paged like an upload
 * (offsite.failed). A removed object is never uploaded again while its file is still on the disk;
 * its entry goes once the file is gone locally too. Nothing is removed while a recovery run holds
 * the lease (it may need any of it), nor while deletes of the previous decision are in flight.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/backup/backup.h"
#include "cap/offsite/offsite_internal.h"
#include "cap/offsite/offsite_retention.h"
#include "clock.h"
#include "log.h"
#include "walarchive.h"

/* ---- the rule (pure) ---- */

size_t offsite_retention_decide(const OffsiteRetItem *items, size_t n, int64_t now_s, const RetentionPolicy *policy,
                                bool *keep, uint64_t *ret_wal_from)
{
    bool any_rule = policy->max_age_s > 0 || policy->daily || policy->weekly || policy->monthly;
    RetentionItem *sub = calloc(n ? n : 1, sizeof(*sub));
    size_t *idx = calloc(n ? n : 1, sizeof(*idx));
    bool *subkeep = calloc(n ? n : 1, sizeof(*subkeep));
    size_t dropped = 0;
    uint64_t wal_from = 0;

    for (size_t i = 0; i < n; i++)
        keep[i] = true;
    if (ret_wal_from)
        *ret_wal_from = 0;
    if (!any_rule || !sub || !idx || !subkeep) { /* no rule, or out of memory: keep everything */
        free(sub);
        free(idx);
        free(subkeep);
        return 0;
    }
    /* backups, each kind on its own; everything in the bucket was verified before it went up */
    for (int kind = OFSR_LOGICAL; kind <= OFSR_BASE; kind++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (items[i].kind == (OffsiteRetKind)kind) {
                sub[k] = (RetentionItem){items[i].started_s, true};
                idx[k++] = i;
            }
        if (k == 0)
            continue;
        retention_decide(sub, k, now_s, policy, subkeep);
        for (size_t j = 0; j < k; j++)
            keep[idx[j]] = subkeep[j];
    }
    free(sub);
    free(idx);
    free(subkeep);
    /* WAL: kept from the start of the oldest base backup kept */
    bool wal_known = true, any_base = false;
    for (size_t i = 0; i < n; i++) {
        if (items[i].kind != OFSR_BASE || !keep[i])
            continue;
        if (!items[i].lsn_known)
            wal_known = false;
        else if (!any_base || items[i].lsn < wal_from)
            wal_from = items[i].lsn;
        any_base = true;
    }
    if (!any_base || !wal_known)
        wal_from = 0;
    for (size_t i = 0; i < n; i++) {
        switch (items[i].kind) {
        case OFSR_MANIFEST:
            if (items[i].backup < n)
                keep[i] = keep[items[i].backup];
            break;
        case OFSR_STATE_TAR: /* with its backup; without one it is an orphan */
            keep[i] = items[i].backup < n && keep[items[i].backup];
            break;
        case OFSR_WAL:
            keep[i] = !wal_from || !items[i].lsn_known || items[i].lsn > wal_from;
            break;
        default: break;
        }
    }
    for (size_t i = 0; i < n; i++)
        dropped += !keep[i];
    if (ret_wal_from)
        *ret_wal_from = wal_from;
    return dropped;
}

OffsiteRetKind offsite_retention_classify(const char *name, size_t *ret_stem)
{
    size_t l = strlen(name), sl = strlen(BACKUP_MANIFEST_SUFFIX), stem = 0;
    static const char tag[] = "_backup_", tar[] = ".state.tar";
    const char *b = NULL;
    for (const char *p = strstr(name, tag); p; p = strstr(p + 1, tag))
        b = p;
    if (b) {
        const char *dot = strchr(b + strlen(tag), '.');
        stem = dot ? (size_t)(dot - name) : 0;
    }
    *ret_stem = stem;
    if (l > sl && !strcmp(name + l - sl, BACKUP_MANIFEST_SUFFIX))
        return OFSR_MANIFEST;
    if (stem && !strncmp(name + stem, tar, strlen(tar)))
        return OFSR_STATE_TAR;
    return OFSR_UNKNOWN;
}

/* ---- the loop side ---- */

bool offsite__retention_enabled(const Offsite *o)
{
    return o->cfg.retention_max_age_ms > 0 || o->cfg.keep_daily || o->cfg.keep_weekly || o->cfg.keep_monthly;
}

static void offsite_item_of(const Offsite *o, const char *key, const json_t *v, uint64_t seg_size,
                            OffsiteRetItem *it)
{
    char bpfx[600], wpfx[600];
    *it = (OffsiteRetItem){.kind = OFSR_OTHER, .backup = SIZE_MAX};
    snprintf(bpfx, sizeof(bpfx), "%sbackups/", o->cfg.prefix ? o->cfg.prefix : "");
    snprintf(wpfx, sizeof(wpfx), "%swal/", o->cfg.prefix ? o->cfg.prefix : "");
    if (!strncmp(key, wpfx, strlen(wpfx))) {
        uint32_t tli;
        uint64_t segno;
        WalFileKind k = seg_size ? walarchive_classify(key + strlen(wpfx), seg_size, &tli, &segno) : WALFILE_NONE;
        if (k == WALFILE_SEGMENT || k == WALFILE_PARTIAL_END) {
            it->kind = OFSR_WAL;
            it->lsn_known = true;
            it->lsn = (segno + 1) * seg_size;
        } else if (k == WALFILE_NONE && !seg_size) {
            it->kind = OFSR_WAL; /* the segment size is not known yet: kept */
        }
        return;
    }
    if (strncmp(key, bpfx, strlen(bpfx)) != 0)
        return;
    size_t stem;
    OffsiteRetKind k = offsite_retention_classify(key + strlen(bpfx), &stem);
    if (k != OFSR_UNKNOWN) { /* a manifest or a state tar: its backup is found by the caller */
        it->kind = k;
        return;
    }
    const char *kind = json_string_value(json_object_get(v, "kind"));
    json_int_t started = json_integer_value(json_object_get(v, "started_s"));
    it->kind = OFSR_UNKNOWN;
    if (!kind || started <= 0)
        return;
    it->started_s = (int64_t)started;
    if (!strcmp(kind, "logical")) {
        it->kind = OFSR_LOGICAL;
    } else if (!strcmp(kind, "physical")) {
        it->kind = OFSR_BASE;
        const char *lsn = json_string_value(json_object_get(v, "start_lsn"));
        it->lsn_known = lsn && walarchive_parse_lsn(lsn, &it->lsn) == 0;
    }
}

static void offsite_queue_delete(Offsite *o, const char *key, uint64_t gen)
{
    const char *slash = strrchr(key, '/');
    OffsiteTask *t = offsite__task_add(o, OFS_DELETE, slash ? slash + 1 : key, "", key, NULL, 0);
    if (!t)
        return;
    t->next_phase = OT_DELETE;
    t->save_gen = gen;
}

void offsite__retention(Offsite *o)
{
    size_t n = json_object_size(o->objects), i = 0;
    uint64_t seg_size = o->seg_size_fn ? o->seg_size_fn(o->seg_size_data) : 0;
    if (!offsite__retention_enabled(o) || !o->loaded || n == 0)
        return;
    for (const OffsiteTask *t = o->head; t; t = t->next)
        if (t->kind == OFS_DELETE)
            return; /* the previous decision is still being carried out */
    if (lease_held(o->core->lease))
        return; /* a recovery run may need any of it: nothing goes until it has ended */
    const char **keys = calloc(n, sizeof(*keys));
    OffsiteRetItem *items = calloc(n, sizeof(*items));
    bool *keep = calloc(n, sizeof(*keep));
    json_t *index = json_object();
    if (!keys || !items || !keep || !index) {
        free(keys);
        free(items);
        free(keep);
        json_decref(index);
        return;
    }
    const char *k;
    json_t *v;
    json_object_foreach(o->objects, k, v) {
        keys[i] = k;
        offsite_item_of(o, k, v, seg_size, &items[i]);
        json_object_set_new(index, k, json_integer((json_int_t)i));
        i++;
    }
    size_t bl = strlen(BACKUP_MANIFEST_SUFFIX);
    json_t *stems = json_object(); /* a backup container's stem -> its index (for the state tars) */
    for (i = 0; i < n && stems; i++) {
        size_t stem;
        if ((items[i].kind == OFSR_LOGICAL || items[i].kind == OFSR_BASE || items[i].kind == OFSR_UNKNOWN) &&
            offsite_retention_classify(keys[i], &stem) == OFSR_UNKNOWN && stem) {
            char s[1024];
            snprintf(s, sizeof(s), "%.*s", (int)stem, keys[i]);
            if (json_object_set_new(stems, s, json_integer((json_int_t)i)) < 0) {
                json_decref(stems); /* out of memory: a tar must not look like an orphan */
                stems = NULL;
            }
        }
    }
    for (i = 0; i < n; i++) {
        char bkey[1024];
        size_t stem;
        json_t *b = NULL;
        if (items[i].kind == OFSR_MANIFEST) {
            snprintf(bkey, sizeof(bkey), "%.*s", (int)(strlen(keys[i]) - bl), keys[i]);
            b = json_object_get(index, bkey);
        } else if (items[i].kind == OFSR_STATE_TAR) {
            if (!stems) { /* out of memory: kept this time */
                items[i].kind = OFSR_OTHER;
                continue;
            }
            offsite_retention_classify(keys[i], &stem);
            snprintf(bkey, sizeof(bkey), "%.*s", (int)stem, keys[i]);
            b = json_object_get(stems, bkey);
        } else {
            continue;
        }
        items[i].backup = b ? (size_t)json_integer_value(b) : SIZE_MAX;
    }
    json_decref(stems);
    RetentionPolicy p = {.max_age_s = (int64_t)(o->cfg.retention_max_age_ms / 1000),
                         .daily = (unsigned)o->cfg.keep_daily,
                         .weekly = (unsigned)o->cfg.keep_weekly,
                         .monthly = (unsigned)o->cfg.keep_monthly};
    uint64_t wal_from = 0;
    size_t drop = offsite_retention_decide(items, n, clock_wall_ms() / 1000, &p, keep, &wal_from);
    /* what drctl offsite-status shows: what the rule keeps */
    size_t kb = 0, kw = 0, kbase = 0;
    int64_t oldest_base = 0;
    for (i = 0; i < n; i++) {
        if (!keep[i])
            continue;
        kb += items[i].kind == OFSR_LOGICAL || items[i].kind == OFSR_BASE || items[i].kind == OFSR_UNKNOWN;
        kw += items[i].kind == OFSR_WAL;
        if (items[i].kind == OFSR_BASE) {
            kbase++;
            if (!oldest_base || items[i].started_s < oldest_base)
                oldest_base = items[i].started_s;
        }
    }
    char lsn[24] = "";
    if (wal_from)
        walarchive_lsn_str(wal_from, lsn);
    o->ret_kept_backups = kb;
    o->ret_kept_base = kbase;
    o->ret_kept_wal = kw;
    o->ret_oldest_base_s = oldest_base;
    snprintf(o->ret_wal_from, sizeof(o->ret_wal_from), "%s", lsn);
    o->ret_last_ms = clock_wall_ms();
    if (drop) {
        int64_t now = clock_wall_ms();
        json_t *gone = json_array();
        for (i = 0; i < n; i++) {
            if (keep[i])
                continue;
            json_t *e = json_object_get(o->objects, keys[i]);
            json_object_set_new(o->removed, keys[i],
                                json_pack("{s:I,s:I,s:b}", "size", json_integer_value(json_object_get(e, "size")),
                                          "at_ms", (json_int_t)now, "done", 0));
            json_array_append_new(gone, json_string(keys[i]));
        }
        /* write ahead: the record stops claiming them before the first DeleteObject */
        size_t m;
        json_t *key;
        json_array_foreach(gone, m, key)
            json_object_del(o->objects, json_string_value(key));
        uint64_t gen = offsite__record_changed(o);
        json_array_foreach(gone, m, key)
            offsite_queue_delete(o, json_string_value(key), gen);
        log_notice("offsite", "retention: %zu object(s) to remove from bucket '%s' (%zu backup(s) kept, WAL kept from "
                   "%s)", drop, o->cfg.bucket, kb, lsn[0] ? lsn : "the start");
        json_decref(gone);
        offsite__kick(o);
    }
    free(keys);
    free(items);
    free(keep);
    json_decref(index);
}

void offsite__retention_load(Offsite *o, const json_t *rec)
{
    const char *k;
    json_t *v;
    json_object_clear(o->removed);
    json_object_foreach(json_object_get(rec, "removed"), k, v) {
        if (!json_is_object(v))
            continue;
        json_object_set(o->removed, k, v);
        if (!json_is_true(json_object_get(v, "done")))
            offsite_queue_delete(o, k, 0); /* decided before a restart: carried out now */
    }
}

void offsite__delete_done(OffsiteTask *t)
{
    Offsite *o = t->o;
    json_t *e = json_object_get(o->removed, t->key);
    if (e)
        json_object_set_new(e, "done", json_true());
    uint64_t size = e ? (uint64_t)json_integer_value(json_object_get(e, "size")) : 0;
    o->deleted_total++;
    o->deleted_bytes += size;
    snprintf(o->last_deleted, sizeof(o->last_deleted), "%s", t->key);
    o->last_deleted_ms = clock_wall_ms();
    if (t->failed)
        log_info("offsite", "'%s' removed from the bucket after all", t->key);
    else
        log_info("offsite", "retention removed '%s' from the bucket", t->key);
    t->failed = false;
    offsite__record_changed(o);
}

json_t *offsite__retention_status(const Offsite *o)
{
    size_t pending = 0;
    for (const OffsiteTask *t = o->head; t; t = t->next)
        pending += t->kind == OFS_DELETE;
    json_t *r = json_pack("{s:b,s:{s:I,s:I,s:I,s:I},s:I,s:I,s:I,s:I}", "enabled", offsite__retention_enabled(o),
                          "policy", "max_age_s", (json_int_t)(o->cfg.retention_max_age_ms / 1000), "daily",
                          (json_int_t)o->cfg.keep_daily, "weekly", (json_int_t)o->cfg.keep_weekly, "monthly",
                          (json_int_t)o->cfg.keep_monthly, "removed_total", (json_int_t)o->deleted_total,
                          "removed_bytes", (json_int_t)o->deleted_bytes, "pending", (json_int_t)pending,
                          "removed_recorded", (json_int_t)json_object_size(o->removed));
    if (!r)
        return NULL;
    if (o->ret_last_ms)
        json_object_set_new(r, "kept", json_pack("{s:I,s:I,s:I,s:I,s:s?,s:I}", "backups",
                                                 (json_int_t)o->ret_kept_backups, "base_backups",
                                                 (json_int_t)o->ret_kept_base, "wal_files", (json_int_t)o->ret_kept_wal,
                                                 "oldest_base_started_s", (json_int_t)o->ret_oldest_base_s,
                                                 "wal_from_lsn", o->ret_wal_from[0] ? o->ret_wal_from : NULL,
                                                 "decided_at_ms", (json_int_t)o->ret_last_ms));
    if (o->last_deleted_ms)
        json_object_set_new(r, "last_removed", json_pack("{s:s,s:I}", "key", o->last_deleted, "at_ms",
                                                         (json_int_t)o->last_deleted_ms));
    return r;
}
