/*
 * backup_cmd: the backup module's watch conditions and control commands (see backup_internal.h).
 *
 * Owns the conditions backup.age, backup.size (against the median of the previous backups),
 * backup.failures, backup.verify and backup.restore_test (opened and closed as events, and the
 * "backup" status component), the commands backups, backup_now, backup_status and verify, and the
 * backup metrics per kind (newest backup's time, age, size, duration; failures; catalog size).
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/backup/backup.h"
#include "cap/backup/backup_internal.h"
#include "cfgtree.h"
#include "core/core.h"
#include "err.h"

static const char *const backups_cond_names[COND_N] = {"backup.age", "backup.size", "backup.failures",
                                                       "backup.verify", "backup.restore_test"};

/* ---- watching ---- */

void backups__condition(Backups *b, CondId id, bool open, Severity sev, const json_t *details, const char *fmt,
                        ...)
{
    char key[256], msg[1024];
    va_list ap;

    if (b->cond_known[id] && b->cond_open[id] == open)
        return;
    b->cond_known[id] = true;
    b->cond_open[id] = open;
    snprintf(key, sizeof(key), "%s:%s", backups_cond_names[id], b->cluster);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    events_emit(b->core->events, open ? sev : SEV_INFO, backups_cond_names[id], key, !open, details, "%s", msg);
}

static int backups_cmp_i64(const void *a, const void *c)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)c;
    return x < y ? -1 : x > y;
}

void backups__watch(Backups *b)
{
    Component *c = status_component(b->core->status, "backup");
    int64_t now = backups__now();
    /* Age and size watch the logical backups (a base backup's size is the cluster's, not
     * comparable); failures count per kind, and either kind reaching the limit opens the condition. */
    json_t *newest = backups__newest_of(b, BACKUP_KIND_LOGICAL);
    unsigned lfails = backups__consecutive_failures(b, BACKUP_KIND_LOGICAL);
    unsigned pfails = backups__consecutive_failures(b, BACKUP_KIND_PHYSICAL);
    unsigned fails = lfails > pfails ? lfails : pfails;
    const char *fkind = pfails > lfails ? "physical " : "";
    char d1[48], d2[48];
    bool too_old = false;

    b->last_watch_ms = uv_now(b->core->loop);
    if (!c)
        return;
    if (!b->enabled) {
        status_set_health(c, HEALTH_DISABLED);
        return;
    }
    if (!b->scanned)
        return;

    /* Age: of the newest backup, or, with none, of the daemon's watch since start. */
    int64_t ref = newest ? backup_manifest_started(newest) : b->core->started_ms / 1000;
    uint64_t age_ms = now > ref ? (uint64_t)(now - ref) * 1000 : 0;
    too_old = age_ms > b->cfg.watch_max_age_ms;
    cfg_format_duration(age_ms / 1000 * 1000, d1, sizeof(d1));
    cfg_format_duration(b->cfg.watch_max_age_ms, d2, sizeof(d2));
    if (newest)
        backups__condition(b, COND_AGE, too_old, SEV_ERROR, NULL, "newest backup '%s' is %s old (limit %s)%s",
                          json_string_value(json_object_get(newest, "file")), d1, d2,
                          too_old ? "" : ": back within the limit");
    else
        backups__condition(b, COND_AGE, too_old, SEV_ERROR, NULL, "no backup at all for %s (limit %s)", d1, d2);

    /* Size against the median of the previous baseline_count backups: only once there are that
     * many (a median of one or two is the last backup, not a baseline). */
    size_t n = 0, all = json_array_size(b->catalog);
    size_t k = (size_t)b->cfg.watch_baseline_count;
    for (size_t i = 0; i < all; i++)
        n += backup_manifest_kind(json_array_get(b->catalog, i)) == BACKUP_KIND_LOGICAL;
    if (k >= 1 && n > k && b->cfg.watch_size_change_percent > 0) {
        int64_t *v = calloc(k, sizeof(*v));
        if (v) {
            /* the k logical backups before the newest one, newest first */
            size_t got = 0;
            bool skipped_newest = false;
            for (size_t i = all; i-- > 0 && got < k;) {
                json_t *m = json_array_get(b->catalog, i);
                if (backup_manifest_kind(m) != BACKUP_KIND_LOGICAL)
                    continue;
                if (!skipped_newest) {
                    skipped_newest = true;
                    continue;
                }
                v[got++] = (int64_t)json_integer_value(json_object_get(m, "file_size_bytes"));
            }
            qsort(v, k, sizeof(*v), backups_cmp_i64);
            int64_t median = k % 2 ? v[k / 2] : (v[k / 2 - 1] + v[k / 2]) / 2;
            int64_t size = (int64_t)json_integer_value(json_object_get(newest, "file_size_bytes"));
            double pct = median > 0 ? 100.0 * (double)(size - median) / (double)median : 0;
            bool open = median > 0 && (pct > (double)b->cfg.watch_size_change_percent ||
                                       -pct > (double)b->cfg.watch_size_change_percent);
            json_t *det = json_pack("{s:I,s:I,s:f,s:i}", "size_bytes", (json_int_t)size, "baseline_bytes",
                                    (json_int_t)median, "change_percent", pct, "baseline_count", (int)k);
            backups__condition(b, COND_SIZE, open, SEV_WARNING, det,
                              "backup size %lld bytes is %+.1f%% from the baseline %lld (median of %zu; limit %lld%%)",
                              (long long)size, pct, (long long)median, k, (long long)b->cfg.watch_size_change_percent);
            json_decref(det);
            free(v);
        }
    }

    backups__condition(b, COND_FAILURES, fails >= (unsigned)b->cfg.watch_failures, SEV_ERROR, NULL,
                      "%u consecutive %sbackup failures%s", fails, fkind,
                      fails >= (unsigned)b->cfg.watch_failures ? "" : ": a backup succeeded");

    if (fails >= (unsigned)b->cfg.watch_failures || too_old)
        status_set_health(c, HEALTH_DOWN);
    else if (newest)
        status_set_health(c, HEALTH_UP);
    else
        status_set_health(c, HEALTH_UNKNOWN);
}

/* ---- commands ---- */

static bool backups_check_enabled(Backups *b, CtlCall *call)
{
    if (b->enabled)
        return true;
    control_reply_error(call, DR_ESTATE, "backups are not configured: add a 'backup:' section to '%s'",
                        b->core->config_path);
    return false;
}

static json_t *backups_summary(const json_t *m)
{
    const json_t *v = json_object_get(m, "verification");
    return json_pack("{s:s,s:O?,s:O?,s:O?,s:O?,s:O?,s:b,s:s,s:O?,s:O?,s:O?}", "kind",
                     backup_kind_name(backup_manifest_kind(m)), "name", json_object_get(m, "file"), "started_at",
                     json_object_get(m, "started_at"), "finished_at", json_object_get(m, "finished_at"),
                     "file_size_bytes", json_object_get(m, "file_size_bytes"), "duration_ms",
                     json_object_get(m, "duration_ms"), "verified", backup_manifest_verified(m), "restore_test",
                     backups__restore_status(m), "key_id", json_object_get(m, "key_id"), "verify_error",
                     json_object_get(v, "error"), "wal", json_object_get(m, "wal"));
}

static json_t *backups_running_json(const Backups *b)
{
    if (b->job_kind == JOB_NONE)
        return json_null();
    return json_pack("{s:s,s:s,s:I}", "kind",
                     b->job_kind == JOB_BACKUP ? (b->job_backup_kind == BACKUP_KIND_PHYSICAL ? "physical_backup" : "backup") : b->job_kind == JOB_VERIFY ? "verify" : "restore_test",
                     "name", b->job_name, "started_unix", (json_int_t)b->job_started);
}

static void backups_cmd_list(CtlCall *call, const json_t *args, void *data)
{
    Backups *b = data;
    json_t *list = json_array(), *fails = json_array();
    size_t i, n;
    json_t *m;

    (void)args;
    if (!backups_check_enabled(b, call)) {
        json_decref(list);
        json_decref(fails);
        return;
    }
    /* the bucket's backups the local catalog no longer has (removed by backup.retention) */
    json_t *remote = b->offsite_list_fn ? b->offsite_list_fn(b->offsite_list_data) : NULL;
    json_array_foreach(remote, i, m) {
        const char *name = json_string_value(json_object_get(m, "name"));
        bool here = false;
        size_t k;
        json_t *lm;
        json_array_foreach(b->catalog, k, lm) {
            const char *file = json_string_value(json_object_get(lm, "file"));
            if (name && file && !strcmp(name, file)) {
                here = true;
                break;
            }
        }
        if (!here)
            json_array_append(list, m);
    }
    json_decref(remote);
    json_array_foreach(b->catalog, i, m) {
        json_t *sum = backups_summary(m);
        const char *file = json_string_value(json_object_get(m, "file"));
        bool offsite = b->offsite_fn && file && b->offsite_fn(file, b->offsite_data);
        json_object_set_new(sum, "location", json_string(offsite ? "both" : "local"));
        json_array_append_new(list, sum);
    }
    n = json_array_size(b->failures);
    for (i = n > 20 ? n - 20 : 0; i < n; i++)
        json_array_append(fails, json_array_get(b->failures, i));
    control_reply_ok(call, json_pack("{s:s,s:o,s:o,s:o,s:b,s:s?}", "directory", b->cfg.directory, "backups", list,
                                     "failures", fails, "running", backups_running_json(b), "scanned", b->scanned,
                                     "scan_error", b->scan_error[0] ? b->scan_error : NULL));
}

/* Answer `backup now` once backups__start_backup returned r (-EAGAIN is handled by the caller). */
static void backups_now_started(Backups *b, CtlCall *call, bool physical, bool wait, int r)
{
    char msg[512];

    if (r == DR_EBUSY) {
        control_reply_error(call, r, "not started: %s", backups__busy_message(b, msg, sizeof(msg)));
        return;
    }
    if (r < 0) {
        control_reply_error(call, r, "cannot start a backup: %s", err_str(r));
        return;
    }
    if (wait) {
        BackupWaiter *w = calloc(1, sizeof(*w));
        if (w) {
            w->call = call;
            w->next = b->waiters;
            b->waiters = w;
            return;
        }
    }
    control_reply_ok(call, json_pack("{s:b,s:s,s:s}", "started", 1, "name", b->job_name, "kind",
                                     backup_kind_name(physical ? BACKUP_KIND_PHYSICAL : BACKUP_KIND_LOGICAL)));
}

static void backups_cmd_now(CtlCall *call, const json_t *args, void *data)
{
    Backups *b = data;

    if (!backups_check_enabled(b, call))
        return;
    bool physical = json_is_true(json_object_get(args, "physical"));
    bool wait = json_is_true(json_object_get(args, "wait"));
    int r = backups__start_backup(b, false, physical ? BACKUP_KIND_PHYSICAL : BACKUP_KIND_LOGICAL);
    if (r == -EAGAIN) {
        /* A backup took its name in this very second (names have one-second resolution): start
         * this one at the next tick, in the next second, instead of refusing it. */
        BackupWaiter *w = calloc(1, sizeof(*w));
        if (!w) {
            control_reply_error(call, -ENOMEM, "cannot start a backup: out of memory");
            return;
        }
        w->call = call;
        w->physical = physical;
        w->wait = wait;
        BackupWaiter **tail = &b->deferred;
        while (*tail)
            tail = &(*tail)->next;
        *tail = w;
        log_info("backup", "backup now: a backup took its name in this second; this one starts in the next");
        return;
    }
    backups_now_started(b, call, physical, wait, r);
}

void backups__start_deferred(Backups *b)
{
    while (b->deferred) {
        BackupWaiter *w = b->deferred;
        if (!b->enabled) { /* turned off by a reload in the meantime */
            b->deferred = w->next;
            (void)backups_check_enabled(b, w->call);
            free(w);
            continue;
        }
        int r = backups__start_backup(b, false, w->physical ? BACKUP_KIND_PHYSICAL : BACKUP_KIND_LOGICAL);
        if (r == -EAGAIN)
            return; /* still the same second: the next tick */
        b->deferred = w->next;
        backups_now_started(b, w->call, w->physical, w->wait, r);
        free(w);
    }
}

static void backups_cmd_status(CtlCall *call, const json_t *args, void *data)
{
    Backups *b = data;
    json_t *m, *res;
    char line[600], age[48], size[48];

    (void)args;
    if (!backups_check_enabled(b, call))
        return;
    m = backups__newest_of(b, BACKUP_KIND_LOGICAL);
    unsigned fails = backups__consecutive_failures(b, BACKUP_KIND_LOGICAL);
    if (!m) {
        snprintf(line, sizeof(line), "no backup yet%s", fails ? "" : "");
        res = json_pack("{s:n,s:s,s:i,s:o}", "latest", "line", line, "consecutive_failures", (int)fails, "running",
                        backups_running_json(b));
    } else {
        int64_t started = backup_manifest_started(m);
        int64_t agesec = backups__now() - started;
        int64_t bytes = (int64_t)json_integer_value(json_object_get(m, "file_size_bytes"));
        bool verified = backup_manifest_verified(m);
        cfg_format_duration((uint64_t)(agesec > 0 ? agesec : 0) * 1000, age, sizeof(age));
        if (bytes >= 1 << 20)
            snprintf(size, sizeof(size), "%.1f MiB", (double)bytes / 1048576.0);
        else if (bytes >= 1 << 10)
            snprintf(size, sizeof(size), "%.1f KiB", (double)bytes / 1024.0);
        else
            snprintf(size, sizeof(size), "%lld B", (long long)bytes);
        snprintf(line, sizeof(line), "latest %s, %s, %s old, %s%s%s", json_string_value(json_object_get(m, "file")),
                 size, age, verified ? "verified" : "NOT verified",
                 strcmp(backups__restore_status(m), "ok") == 0 ? ", test-restored" : "",
                 fails ? (fails == 1 ? ", 1 failure since" : ", failures since") : "");
        res = json_pack("{s:O,s:I,s:I,s:b,s:s,s:s,s:i,s:o}", "latest", json_object_get(m, "file"), "size_bytes",
                        (json_int_t)bytes, "age_s", (json_int_t)agesec, "verified", verified, "restore_test",
                        backups__restore_status(m), "line", line, "consecutive_failures", (int)fails, "running",
                        backups_running_json(b));
    }
    /* The line and "latest" stay about logical backups (what they always meant); the newest base
     * backup is named beside them. */
    json_t *p = backups__newest_of(b, BACKUP_KIND_PHYSICAL);
    json_object_set_new(res, "latest_physical", p ? json_incref(json_object_get(p, "file")) : json_null());
    json_object_set_new(res, "latest_physical_verified", json_boolean(p && backup_manifest_verified(p)));
    control_reply_ok(call, res);
}

static void backups_cmd_verify(CtlCall *call, const json_t *args, void *data)
{
    Backups *b = data;
    const char *name = json_string_value(json_object_get(args, "name"));
    bool restore = json_is_true(json_object_get(args, "restore"));
    char msg[512];
    json_t *m;

    if (!backups_check_enabled(b, call))
        return;
    m = name ? backups__find(b, name) : restore ? backups__newest_of(b, BACKUP_KIND_LOGICAL) : backups__newest(b);
    if (!m) {
        if (name)
            control_reply_error(call, DR_EBADARG, "no backup named '%s' in the catalog (see drctl backups)", name);
        else
            control_reply_error(call, DR_ESTATE, "there is no backup to verify yet");
        return;
    }
    int r = backups__start_verify(b, m, restore, call);
    if (r == DR_EBUSY)
        control_reply_error(call, r, "not started: %s", backups__busy_message(b, msg, sizeof(msg)));
    else if (r == -EOPNOTSUPP)
        control_reply_error(call, DR_EBADARG,
                            "'%s' is a %s backup: %s", json_string_value(json_object_get(m, "file")),
                            backup_kind_name(backup_manifest_kind(m)),
                            backup_manifest_kind(m) == BACKUP_KIND_PHYSICAL
                                ? "a test restore needs pg_restore (logical backups only); verify it without --restore"
                                : "this version cannot verify that kind");
    else if (r < 0)
        control_reply_error(call, r, "cannot start: %s", err_str(r));
}

/* ---- registration ---- */

/* ---- metrics ---- */

/* Readiness (core/readiness.h): the newest logical backup (age against watch.max_age, verified),
 * its test restore, and the newest base backup when base backups are scheduled. */
static void backups_readiness(ReadyWriter *w, void *data)
{
    Backups *b = data;
    int64_t now = backups__now(), max_age = (int64_t)(b->cfg.watch_max_age_ms / 1000);
    char age[32];

    if (!b->enabled) {
        readiness_add(w, "backup.logical", READY_FAIL, "no backup: section: nothing to restore from");
        return;
    }
    if (!b->scanned) {
        readiness_add(w, "backup.logical", READY_WARN, "the backup catalog is still being read");
        return;
    }
    json_t *m = backups__newest_of(b, BACKUP_KIND_LOGICAL);
    if (!m) {
        readiness_add(w, "backup.logical", READY_FAIL, "no logical backup in %s", b->cfg.directory);
    } else {
        int64_t a = now - backup_manifest_started(m);
        const char *file = json_string_value(json_object_get(m, "file"));
        snprintf(age, sizeof(age), "%lldh%02lldm", (long long)(a / 3600), (long long)(a / 60 % 60));
        if (!backup_manifest_verified(m))
            readiness_add(w, "backup.logical", READY_FAIL, "the newest backup %s (%s old) is not verified", file, age);
        else if (max_age && a > max_age)
            readiness_add(w, "backup.logical", READY_FAIL, "the newest backup %s is %s old, more than "
                          "backup.watch.max_age", file, age);
        else
            readiness_add(w, "backup.logical", READY_PASS, "the newest backup %s is %s old and verified", file, age);
        const char *rt = backups__restore_status(m);
        if (!strcmp(rt, "ok"))
            readiness_add(w, "backup.restore_test", READY_PASS, "%s was restored into a scratch database and its "
                          "validation queries passed", file);
        else if (!strcmp(rt, "failed"))
            readiness_add(w, "backup.restore_test", READY_FAIL, "the test restore of %s failed (drctl backups)", file);
        else
            readiness_add(w, "backup.restore_test", READY_WARN, "%s has not been test-restored (drctl verify "
                          "--restore, or verify.restore_schedule)", file);
    }
    if (!b->cfg.n_physical_schedules)
        return;
    m = backups__newest_of(b, BACKUP_KIND_PHYSICAL);
    if (!m) {
        readiness_add(w, "backup.physical", READY_FAIL, "base backups are scheduled but there is none yet");
        return;
    }
    int64_t a = now - backup_manifest_started(m);
    snprintf(age, sizeof(age), "%lldh%02lldm", (long long)(a / 3600), (long long)(a / 60 % 60));
    readiness_add(w, "backup.physical", backup_manifest_verified(m) ? READY_PASS : READY_FAIL,
                  "the newest base backup %s is %s old%s", json_string_value(json_object_get(m, "file")), age,
                  backup_manifest_verified(m) ? " and verified" : " and NOT verified");
}

static void backups_collect(MetricsWriter *w, void *data)
{
    Backups *b = data;
    static const BackupKind kinds[] = {BACKUP_KIND_LOGICAL, BACKUP_KIND_PHYSICAL};
    static const char *const names[] = {"logical", "physical"};
    static const char *const fam[][2] = {
        {"drsupervisor_backup_last_success_timestamp_seconds", "start of the newest catalogued (verified) backup, Unix time"},
        {"drsupervisor_backup_age_seconds", "age of the newest catalogued backup"},
        {"drsupervisor_backup_size_bytes", "file size of the newest catalogued backup"},
        {"drsupervisor_backup_duration_seconds", "how long the newest catalogued backup took"},
    };
    int64_t now = backups__now();

    if (!b->enabled || !b->scanned)
        return;
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        metrics_family(w, fam[f][0], METRIC_GAUGE, fam[f][1]);
        for (size_t k = 0; k < 2; k++) {
            json_t *m = backups__newest_of(b, kinds[k]);
            const char *const l[][2] = {{"kind", names[k]}};
            if (!m)
                continue;
            int64_t started = backup_manifest_started(m);
            double v = f == 0 ? (double)started
                       : f == 1 ? (double)(now > started ? now - started : 0)
                       : f == 2 ? (double)json_integer_value(json_object_get(m, "file_size_bytes"))
                                : (double)json_integer_value(json_object_get(m, "duration_ms")) / 1000.0;
            metrics_sample(w, fam[f][0], l, 1, v);
        }
    }
    metrics_family(w, "drsupervisor_backup_consecutive_failures", METRIC_GAUGE,
                   "backups of this kind that failed since the last one that succeeded");
    for (size_t k = 0; k < 2; k++) {
        const char *const l[][2] = {{"kind", names[k]}};
        metrics_sample(w, "drsupervisor_backup_consecutive_failures", l, 1, backups__consecutive_failures(b, kinds[k]));
    }
    metrics_family(w, "drsupervisor_backups", METRIC_GAUGE, "backups in the catalog");
    for (size_t k = 0; k < 2; k++) {
        size_t n = 0;
        for (size_t i = 0; i < json_array_size(b->catalog); i++)
            n += backup_manifest_kind(json_array_get(b->catalog, i)) == kinds[k];
        const char *const l[][2] = {{"kind", names[k]}};
        metrics_sample(w, "drsupervisor_backups", l, 1, (double)n);
    }
}

int backups__commands_register(Backups *b)
{
    static const CtlCommand cmds[] = {
        {"backups", false, backups_cmd_list, NULL, "list the backup catalog and recent failures"},
        {"backup_now", true, backups_cmd_now, NULL, "start a backup now (args: wait, physical)"},
        {"backup_status", false, backups_cmd_status, NULL, "latest backup, its size, age and verification"},
        {"verify", true, backups_cmd_verify, NULL, "verify a backup (args: name, restore); answers when done"},
    };
    CtlCommand c[sizeof(cmds) / sizeof(cmds[0])];
    memcpy(c, cmds, sizeof(cmds));
    for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++)
        c[i].data = b;
    int r = control_register(b->core->control, c, sizeof(c) / sizeof(c[0]));
    if (r == 0 && b->core->metrics)
        r = metrics_register(b->core->metrics, backups_collect, b);
    if (r == 0 && b->core->readiness)
        r = readiness_register(b->core->readiness, backups_readiness, b);
    return r;
}
