/*
 * drill_book: what is kept about drills and what they feed (see drill.h): the history of drill
 * reports (state_dir/incidents/drill-*.json, read at start on the thread pool), the listing and
 * report commands, the schedule (drills.schedule, cron in UTC, one timer to the next entry), the
 * free space a restore would need (statvfs of the backup directory and of the database's data
 * directory on the thread pool every minute and after each reload, cached for the readiness
 * check on the loop), the readiness checks and the metrics; and the module's life.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>

#include "atomicfile.h"
#include "clock.h"
#include "core/schedclock.h"
#include "err.h"
#include "log.h"
#include "scenario/drill_internal.h"
#include "scenario/drill_rules.h"
#include "scenario/scenario.h"

#define DRILL_SPACE_EVERY_MS 60000u
#define DRILL_SPACE_FRESH_MS 5000
#define DRILL_HISTORY_MAX 200

void drill__path(const Drills *ds, char *out, size_t n, const char *id)
{
    const char *sd = ds->core->cfg->state_dir ? ds->core->cfg->state_dir : "";
    if (id)
        snprintf(out, n, "%s/incidents/%s.json", sd, id);
    else
        snprintf(out, n, "%s/incidents", sd);
}

static bool drill_id_valid(const char *id)
{
    if (!id || strncmp(id, "drill-", 6) != 0 || strlen(id) > 90)
        return false;
    return strspn(id, "abcdefghijklmnopqrstuvwxyz0123456789_-") == strlen(id);
}

json_t *drill__summary(const json_t *rep)
{
    const json_t *rto = json_object_get(rep, "rto");
    return json_pack("{s:O*,s:O*,s:O*,s:O*,s:O*,s:O*,s:O*,s:O*,s:O*,s:O*,s:O*,s:O*}", "id", json_object_get(rep, "id"),
                     "scenario", json_object_get(rep, "scenario"), "outcome", json_object_get(rep, "outcome"), "ok",
                     json_object_get(rep, "ok"), "trigger", json_object_get(rep, "trigger"), "started_at",
                     json_object_get(rep, "started_at"), "finished_ms", json_object_get(rep, "finished_ms"),
                     "duration_ms", json_object_get(rep, "duration_ms"), "rto_estimate_ms",
                     json_object_get(rto, "estimate_ms"), "rto_target_ms", json_object_get(rto, "target_ms"),
                     "rto_met", json_object_get(rto, "met"), "failure", json_object_get(rep, "failure"));
}

/* The scenario's last drill that ran to its end (aborted ones do not count), or NULL (borrowed). */
static const json_t *drill_last(const Drills *ds, const char *scenario)
{
    for (size_t i = json_array_size(ds->history); i-- > 0;) {
        const json_t *s = json_array_get(ds->history, i);
        if (!strcmp(json_string_value(json_object_get(s, "scenario")) ? json_string_value(json_object_get(s, "scenario")) : "",
                    scenario) &&
            strcmp(json_string_value(json_object_get(s, "outcome")) ? json_string_value(json_object_get(s, "outcome")) : "",
                   "aborted") != 0)
            return s;
    }
    return NULL;
}

void drill__book_add(Drills *ds, json_t *summary)
{
    if (!summary)
        return;
    json_array_append_new(ds->history, summary);
    while (json_array_size(ds->history) > DRILL_HISTORY_MAX)
        json_array_remove(ds->history, 0);
}

/* ---- the history at start ---- */

typedef struct DrillScan {
    Drills *ds;
    uv_work_t req;
    char dir[4096];
    json_t *found; /* summaries, by file name order (ids sort by time) */
} DrillScan;

static int drill_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void drill_scan_work(uv_work_t *req)
{
    DrillScan *sc = req->data;
    DIR *dh = opendir(sc->dir);
    struct dirent *de;
    char **names = NULL;
    size_t n = 0, cap = 0;
    sc->found = json_array();
    if (!dh)
        return;
    while ((de = readdir(dh))) {
        size_t l = strlen(de->d_name);
        if (strncmp(de->d_name, "drill-", 6) != 0 || l < 6 || strcmp(de->d_name + l - 5, ".json") != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **t = realloc(names, cap * sizeof(*t));
            if (!t)
                break;
            names = t;
        }
        names[n] = strdup(de->d_name);
        if (names[n])
            n++;
    }
    closedir(dh);
    if (n)
        qsort(names, n, sizeof(*names), drill_cmp_str);
    for (size_t i = 0; i < n; i++) {
        char path[8192], *text = NULL;
        size_t len;
        snprintf(path, sizeof(path), "%s/%s", sc->dir, names[i]);
        if (atomicfile_read_all(path, 16u << 20, &text, &len) == 0) {
            json_t *rep = json_loadb(text, len, 0, NULL);
            if (json_is_object(rep))
                json_array_append_new(sc->found, drill__summary(rep));
            json_decref(rep);
            free(text);
        }
        free(names[i]);
    }
    free(names);
}

static void drill_scan_done(uv_work_t *req, int status)
{
    DrillScan *sc = req->data;
    Drills *ds = sc->ds;
    (void)status;
    /* Drills that finished while the scan ran are newer than anything on disk. */
    json_t *now = ds->history;
    ds->history = sc->found ? sc->found : json_array();
    json_array_extend(ds->history, now);
    json_decref(now);
    while (json_array_size(ds->history) > DRILL_HISTORY_MAX)
        json_array_remove(ds->history, 0);
    ds->loaded = true;
    free(sc);
    ds->pending--;
    drill__maybe_closed(ds);
}

int drills_start(Drills *ds)
{
    drill__pitr_sweep(ds); /* scratch clusters of drills a killed daemon left */
    drill__db_sweep(ds);   /* and scratch databases */
    DrillScan *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return -ENOMEM;
    sc->ds = ds;
    drill__path(ds, sc->dir, sizeof(sc->dir), NULL);
    sc->req.data = sc;
    int r = uv_queue_work(ds->core->loop, &sc->req, drill_scan_work, drill_scan_done);
    if (r < 0)
        free(sc);
    else
        ds->pending++;
    return r;
}

/* ---- the commands ---- */

static void drill_cmd_drill(CtlCall *call, const json_t *args, void *data)
{
    Drills *ds = data;
    char err[400] = "";
    const char *scenario = json_string_value(json_object_get(args, "scenario"));
    if (!scenario) {
        control_reply_error(call, DR_EBADARG, "scenario is required (e.g. database_corruption)");
        return;
    }
    /* The recovery's target: one of the three options, the scenario's own (drill__start checks which). */
    static const char *const opts[][2] = {{"timestamp_ms", "timestamp"}, {"before_ms", "before"}, {"since_ms", "since"}};
    const json_t *t = NULL;
    const char *opt = NULL;
    for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
        const json_t *v = json_object_get(args, opts[i][0]);
        if (!v)
            continue;
        if (!json_is_integer(v)) {
            control_reply_error(call, DR_EBADARG, "%s must be epoch milliseconds", opts[i][0]);
            return;
        }
        if (t) {
            control_reply_error(call, DR_EBADARG, "one target only: --%s or --%s", opt, opts[i][1]);
            return;
        }
        t = v;
        opt = opts[i][1];
    }
    int r = drill__start(ds, scenario, t ? json_integer_value(t) : 0, opt, "operator", call,
                         json_is_true(json_object_get(args, "detach")), NULL, 0, err, sizeof(err));
    if (r < 0)
        control_reply_error(call, r, "no drill: %s", err);
}

static void drill_cmd_drills(CtlCall *call, const json_t *args, void *data)
{
    Drills *ds = data;
    (void)args;
    json_t *last = json_object();
    for (size_t i = 0; i < scenario_count(); i++) {
        const ScenarioDef *def = scenario_at(i);
        const json_t *l = def->drill_settings ? drill_last(ds, def->name) : NULL;
        if (def->drill_settings)
            json_object_set_new(last, def->name, l ? json_deep_copy(l) : json_null());
    }
    json_t *sched = json_array();
    for (size_t i = 0; i < ds->n_sched; i++) {
        char at[40] = "";
        if (ds->sched[i].next_s > 0)
            clock_format_utc_ms(ds->sched[i].next_s * 1000, at, sizeof(at));
        json_array_append_new(sched, json_pack("{s:s,s:s,s:s?}", "cron", ds->sched[i].cron, "scenario",
                                               ds->sched[i].scenario, "next_at", at[0] ? at : NULL));
    }
    control_reply_ok(call, json_pack("{s:O,s:o,s:o,s:s?,s:b}", "drills", ds->history, "last", last, "schedule", sched,
                                     "running", drill__running_id(ds), "loaded", ds->loaded));
}

typedef struct DrillRead {
    Drills *ds;
    CtlCall *call;
    uv_work_t req;
    char path[4200];
    char *text;
    size_t len;
    int result;
} DrillRead;

static void drill_read_work(uv_work_t *req)
{
    DrillRead *rd = req->data;
    rd->result = atomicfile_read_all(rd->path, 64u << 20, &rd->text, &rd->len);
}

static void drill_read_done(uv_work_t *req, int status)
{
    DrillRead *rd = req->data;
    Drills *ds = rd->ds;
    json_t *rep = rd->result == 0 && status == 0 ? json_loadb(rd->text, rd->len, 0, NULL) : NULL;
    if (ds->closing)
        control_reply_error(rd->call, DR_ECANCELED, "the daemon is stopping");
    else if (json_is_object(rep))
        control_reply_ok(rd->call, json_incref(rep));
    else if (rd->result == -ENOENT)
        control_reply_error(rd->call, -ENOENT, "no drill report '%s' (drctl drills lists them)", rd->path);
    else
        control_reply_error(rd->call, rd->result < 0 ? rd->result : DR_ECORRUPT, "cannot read '%s': %s", rd->path,
                            rd->result < 0 ? err_str(rd->result) : "not a JSON object");
    json_decref(rep);
    free(rd->text);
    free(rd);
    ds->pending--;
    drill__maybe_closed(ds);
}

static void drill_cmd_report(CtlCall *call, const json_t *args, void *data)
{
    Drills *ds = data;
    const char *id = json_string_value(json_object_get(args, "id"));
    if (!drill_id_valid(id)) {
        control_reply_error(call, DR_EBADARG, "id must be a drill id (drill-...: drctl drills lists them)");
        return;
    }
    DrillRead *rd = calloc(1, sizeof(*rd));
    if (!rd) {
        control_reply_error(call, -ENOMEM, "out of memory");
        return;
    }
    rd->ds = ds;
    rd->call = call;
    drill__path(ds, rd->path, sizeof(rd->path), id);
    rd->req.data = rd;
    int r = uv_queue_work(ds->core->loop, &rd->req, drill_read_work, drill_read_done);
    if (r < 0) {
        free(rd);
        control_reply_error(call, r, "cannot read the report: %s", err_str(r));
        return;
    }
    ds->pending++;
}

/* ---- the schedule ---- */

static void drill_sched_arm(Drills *ds);

static void drill_on_sched(uv_timer_t *t)
{
    Drills *ds = t->data;
    int64_t now_s = schedclock_now_s();
    for (size_t i = 0; i < ds->n_sched; i++) {
        DrillSched *e = &ds->sched[i];
        if (e->next_s <= 0 || e->next_s > now_s)
            continue;
        char err[400] = "", id[96] = "";
        if (!leader_acting(ds->core->leader)) {
            /* high availability: the leader drills; a follower lets this one pass */
            if (cron_next(&e->expr, now_s, &e->next_s) < 0)
                e->next_s = 0;
            continue;
        }
        int r = drill__start(ds, e->scenario, 0, NULL, "schedule", NULL, false, id, sizeof(id), err, sizeof(err));
        if (r < 0)
            events_emit(ds->core->events, SEV_WARNING, "drill.skipped", NULL, false, NULL,
                        "scheduled drill of %s skipped: %s", e->scenario, err);
        if (cron_next(&e->expr, now_s, &e->next_s) < 0)
            e->next_s = 0;
    }
    drill_sched_arm(ds);
}

static void drill_sched_arm(Drills *ds)
{
    int64_t soonest = 0, now_ms = schedclock_now_ms();
    for (size_t i = 0; i < ds->n_sched; i++)
        if (ds->sched[i].next_s > 0 && (!soonest || ds->sched[i].next_s < soonest))
            soonest = ds->sched[i].next_s;
    if (!ds->sched_timer || ds->closing)
        return;
    uv_timer_stop(ds->sched_timer);
    if (!soonest)
        return;
    int64_t wait = soonest * 1000 - now_ms;
    uv_timer_start(ds->sched_timer, drill_on_sched, wait > 0 ? (uint64_t)wait : 0, 0);
}

/* ---- free space ---- */

typedef struct DrillSpaceWork {
    Drills *ds;
    uv_work_t req;
    DrillSpace sp;
} DrillSpaceWork;

/* The free bytes of the filesystem path is on (or will be on: a directory not made yet is measured
 * at its nearest existing parent). Thread pool. */
static void drill_statvfs(const char *path, uint64_t *ret_free, int *ret_err)
{
    struct statvfs v;
    char p[4096];
    snprintf(p, sizeof(p), "%s", path);
    for (;;) {
        if (statvfs(p, &v) == 0)
            break;
        char *slash = strrchr(p, '/');
        if (errno != ENOENT || !slash || slash == p) {
            *ret_err = -errno;
            return;
        }
        *slash = '\0';
    }
    *ret_err = 0;
    *ret_free = (uint64_t)v.f_bavail * (uint64_t)v.f_frsize;
}

static void drill_space_work(uv_work_t *req)
{
    DrillSpaceWork *w = req->data;
    if (w->sp.backup_dir[0])
        drill_statvfs(w->sp.backup_dir, &w->sp.backup_free, &w->sp.backup_err);
    if (w->sp.data_dir[0])
        drill_statvfs(w->sp.data_dir, &w->sp.data_free, &w->sp.data_err);
}

static void drill_space_done(uv_work_t *req, int status)
{
    DrillSpaceWork *w = req->data;
    Drills *ds = w->ds;
    if (status == 0) {
        ds->space = w->sp;
        ds->space.measured = true;
        ds->space.at_ms = clock_wall_ms();
    }
    ds->space_busy = false;
    free(w);
    ds->pending--;
    drill__maybe_closed(ds);
}

/* Measure now, unless a measurement is under way (its paths are the configuration's then). */
static void drill_space_measure(Drills *ds)
{
    const Config *cfg = ds->core->cfg;
    if (ds->closing || ds->space_busy || !cfg->backup.enabled)
        return;
    DrillSpaceWork *w = calloc(1, sizeof(*w));
    if (!w)
        return;
    w->ds = ds;
    snprintf(w->sp.backup_dir, sizeof(w->sp.backup_dir), "%s", cfg->backup.directory ? cfg->backup.directory : "");
    snprintf(w->sp.data_dir, sizeof(w->sp.data_dir), "%s", cfg->detector.data_directory ? cfg->detector.data_directory : "");
    w->req.data = w;
    if (uv_queue_work(ds->core->loop, &w->req, drill_space_work, drill_space_done) < 0) {
        free(w);
        return;
    }
    ds->space_busy = true;
    ds->pending++;
}

static void drill_on_space_timer(uv_timer_t *t)
{
    drill_space_measure(t->data);
}

/* ---- readiness and metrics ---- */

static void drill_last_view(const json_t *s, DrillLast *ret)
{
    memset(ret, 0, sizeof(*ret));
    if (!s)
        return;
    ret->exists = true;
    ret->ok = json_is_true(json_object_get(s, "ok"));
    ret->finished_ms = json_integer_value(json_object_get(s, "finished_ms"));
    ret->rto_ms = json_is_integer(json_object_get(s, "rto_estimate_ms")) ? json_integer_value(json_object_get(s, "rto_estimate_ms")) : -1;
    ret->rto_target_ms = (uint64_t)json_integer_value(json_object_get(s, "rto_target_ms"));
    ret->id = json_string_value(json_object_get(s, "id"));
    ret->failure = json_string_value(json_object_get(s, "failure"));
}

static void drill_space_row(Drills *ds, ReadyWriter *w)
{
    const Config *cfg = ds->core->cfg;
    char need_s[32], a[32], b[32];
    if (!cfg->backup.enabled)
        return;
    json_t *m = backups_newest_verified(ds->backups, NULL);
    uint64_t size = m ? (uint64_t)json_integer_value(json_object_get(m, "db_size_bytes")) : 0;
    json_decref(m);
    if (!m) {
        readiness_add(w, "restore.free_space", READY_WARN, "no verified backup: nothing to measure a restore against");
        return;
    }
    /* Readiness is asked when someone looks: measure again for the next answer when this one is
     * more than a few seconds old (queued on the thread pool; this answer is the cached one). */
    if (!ds->space.measured || clock_wall_ms() - ds->space.at_ms > DRILL_SPACE_FRESH_MS)
        drill_space_measure(ds);
    if (!ds->space.measured) {
        readiness_add(w, "restore.free_space", READY_WARN, "not measured yet (every %us)", DRILL_SPACE_EVERY_MS / 1000);
        return;
    }
    uint64_t need = drill_space_needed(size, cfg->drills.free_space_factor);
    snprintf(need_s, sizeof(need_s), "%.1f MiB", (double)need / 1048576.0);
    if (ds->space.backup_err) {
        readiness_add(w, "restore.free_space", READY_FAIL, "cannot measure '%s': %s", ds->space.backup_dir,
                      err_str(ds->space.backup_err));
        return;
    }
    if (ds->space.data_dir[0] && ds->space.data_err) {
        readiness_add(w, "restore.free_space", READY_FAIL, "cannot measure '%s': %s", ds->space.data_dir,
                      err_str(ds->space.data_err));
        return;
    }
    ReadyLevel lb = drill_judge_space(ds->space.backup_free, need);
    ReadyLevel ld = ds->space.data_dir[0] ? drill_judge_space(ds->space.data_free, need) : READY_PASS;
    snprintf(a, sizeof(a), "%.1f MiB", (double)ds->space.backup_free / 1048576.0);
    snprintf(b, sizeof(b), "%.1f MiB", (double)ds->space.data_free / 1048576.0);
    if (lb == READY_FAIL || ld == READY_FAIL)
        readiness_add(w, "restore.free_space", READY_FAIL, "a restore needs %s free (the newest backup's database size "
                      "%.1f MiB x drills.free_space_factor %g): %s%s%s%s%s", need_s, (double)size / 1048576.0,
                      cfg->drills.free_space_factor, lb == READY_FAIL ? "the backup directory has " : "",
                      lb == READY_FAIL ? a : "", lb == READY_FAIL && ld == READY_FAIL ? ", " : "",
                      ld == READY_FAIL ? "the data directory has " : "", ld == READY_FAIL ? b : "");
    else if (!ds->space.data_dir[0])
        readiness_add(w, "restore.free_space", READY_WARN, "the backup directory has %s free of the %s a restore needs; "
                      "the database's filesystem is not measured (no detector.data_directory)", a, need_s);
    else
        readiness_add(w, "restore.free_space", READY_PASS, "%s needed; free: backup directory %s, data directory %s",
                      need_s, a, b);
}

static void drill_readiness(ReadyWriter *w, void *data)
{
    Drills *ds = data;
    const Config *cfg = ds->core->cfg;
    char name[96], why[600];
    for (size_t i = 0; i < scenario_count(); i++) {
        const ScenarioDef *def = scenario_at(i);
        DrillLast last;
        if (!def->drill_settings || !drill__pitr_configured(cfg, def)) /* a drill it could not run */
            continue;
        snprintf(name, sizeof(name), "drill.%s", def->name);
        if (!ds->loaded) {
            readiness_add(w, name, READY_WARN, "the drill reports are still being read");
            continue;
        }
        drill_last_view(drill_last(ds, def->name), &last);
        ReadyLevel l = drill_judge_last(&last, clock_wall_ms(), cfg->drills.max_age_ms, why, sizeof(why));
        readiness_add(w, name, l, "%s", why);
    }
    drill_space_row(ds, w);
}

static void drill_collect(MetricsWriter *mw, void *data)
{
    Drills *ds = data;
    static const struct {
        const char *name, *help, *key;
        double scale;
    } fam[] = {
        {"drsupervisor_drill_last_timestamp_seconds", "when the scenario's last drill ended (Unix time)", "finished_ms", 1e-3},
        {"drsupervisor_drill_last_duration_seconds", "how long the scenario's last drill took", "duration_ms", 1e-3},
        {"drsupervisor_drill_last_rto_seconds", "the RTO a real run would have, measured by the last drill (passed ones)",
         "rto_estimate_ms", 1e-3},
        {"drsupervisor_drill_last_success", "1 when the scenario's last drill passed, 0 when it failed", "ok", 1},
    };
    for (size_t f = 0; f < sizeof(fam) / sizeof(fam[0]); f++) {
        metrics_family(mw, fam[f].name, METRIC_GAUGE, fam[f].help);
        for (size_t i = 0; i < scenario_count(); i++) {
            const ScenarioDef *def = scenario_at(i);
            const json_t *s = def->drill_settings ? drill_last(ds, def->name) : NULL;
            const json_t *v = s ? json_object_get(s, fam[f].key) : NULL;
            const char *const l[][2] = {{"scenario", def->name}};
            if (json_is_boolean(v))
                metrics_sample(mw, fam[f].name, l, 1, json_is_true(v) ? 1 : 0);
            else if (json_is_integer(v))
                metrics_sample(mw, fam[f].name, l, 1, (double)json_integer_value(v) * fam[f].scale);
        }
    }
    metrics_family(mw, "drsupervisor_drill_running", METRIC_GAUGE, "1 while a drill runs");
    metrics_value(mw, "drsupervisor_drill_running", ds->run ? 1 : 0);
}

/* ---- the module ---- */

int drill__book_register(Drills *ds)
{
    const CtlCommand cmds[] = {
        {"drill", true, drill_cmd_drill, ds,
         "rehearse a scenario against a scratch database, never the live one; answers with the report (args: "
         "scenario, detach)"},
        {"drills", false, drill_cmd_drills, ds, "drill reports: every drill, the last per scenario"},
        {"drill_report", false, drill_cmd_report, ds, "one drill report (args: id)"},
    };
    if (control_register(ds->core->control, cmds, sizeof(cmds) / sizeof(cmds[0])) < 0 ||
        readiness_register(ds->core->readiness, drill_readiness, ds) < 0 ||
        (ds->core->metrics && metrics_register(ds->core->metrics, drill_collect, ds) < 0))
        return -ENOMEM;
    return 0;
}

static void drill_timer_closed(uv_handle_t *h)
{
    Drills *ds = h->data;
    free(h);
    ds->pending--;
    drill__maybe_closed(ds);
}

static uv_timer_t *drill_timer_new(Drills *ds)
{
    uv_timer_t *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    uv_timer_init(ds->core->loop, t);
    t->data = ds;
    ds->pending++;
    return t;
}

Drills *drills_new(Core *core, Backups *backups, Reconcile *reconcile, WalArchive *wal)
{
    Drills *ds = calloc(1, sizeof(*ds));
    if (!ds)
        return NULL;
    ds->core = core;
    ds->backups = backups;
    ds->reconcile = reconcile;
    ds->wal = wal;
    ds->history = json_array();
    ds->sched_timer = drill_timer_new(ds);
    ds->space_timer = drill_timer_new(ds);
    if (!ds->history || !ds->sched_timer || !ds->space_timer || drill__book_register(ds) < 0 ||
        lease_listen(core->lease, drill__on_lease, ds) < 0) {
        /* the handles were never started: closed at once, freed in their callbacks by a loop
         * that is not running yet; the daemon gives up anyway */
        log_error("drill", "cannot set up drills: out of memory");
        return NULL;
    }
    return ds;
}

int drills_check_config(const Drills *ds, const Config *cfg, char *err, size_t errlen)
{
    (void)ds;
    int r = drill__pitr_check_config(cfg, err, errlen);
    if (r < 0)
        return r;
    for (size_t i = 0; i < cfg->drills.n_schedule; i++) {
        const char *name = cfg->drills.schedule[i].scenario;
        const ScenarioDef *def = name ? scenario_find(name) : NULL;
        if (!def) {
            snprintf(err, errlen, "drills.schedule[%zu].scenario: no scenario '%s'", i, name ? name : "");
            return DR_ECONFIG;
        }
        if (!def->drill_settings) {
            snprintf(err, errlen, "drills.schedule[%zu].scenario: '%s' has no drill (drills exist for: "
                     "database_corruption, point_in_time, data_loss, security_breach)", i, name);
            return DR_ECONFIG;
        }
    }
    return 0;
}

int drills_apply_config(Drills *ds, const Config *cfg)
{
    int64_t now_s = schedclock_now_s();
    for (size_t i = 0; i < ds->n_sched; i++) {
        free(ds->sched[i].scenario);
        free(ds->sched[i].cron);
    }
    free(ds->sched);
    ds->sched = NULL;
    ds->n_sched = 0;
    if (cfg->drills.n_schedule) {
        ds->sched = calloc(cfg->drills.n_schedule, sizeof(*ds->sched));
        if (!ds->sched)
            return -ENOMEM;
    }
    for (size_t i = 0; i < cfg->drills.n_schedule; i++) {
        DrillSched *e = &ds->sched[ds->n_sched];
        char cerr[160];
        if (cron_parse(cfg->drills.schedule[i].cron, &e->expr, cerr, sizeof(cerr)) < 0)
            continue; /* the config layer refused it already */
        e->scenario = strdup(cfg->drills.schedule[i].scenario);
        e->cron = strdup(cfg->drills.schedule[i].cron);
        if (!e->scenario || !e->cron) {
            free(e->scenario);
            free(e->cron);
            return -ENOMEM;
        }
        if (cron_next(&e->expr, now_s, &e->next_s) < 0)
            e->next_s = 0;
        ds->n_sched++;
    }
    drill_sched_arm(ds);
    if (ds->space_timer && !ds->closing)
        uv_timer_start(ds->space_timer, drill_on_space_timer, 0, DRILL_SPACE_EVERY_MS);
    if (!ds->space_busy)
        memset(&ds->space, 0, sizeof(ds->space)); /* measured again for the new paths and factor */
    return 0;
}

void drill__maybe_closed(Drills *ds)
{
    if (!ds->closing || ds->pending)
        return;
    void (*cb)(void *) = ds->closed_cb;
    void *cd = ds->closed_data;
    for (size_t i = 0; i < ds->n_sched; i++) {
        free(ds->sched[i].scenario);
        free(ds->sched[i].cron);
    }
    free(ds->sched);
    json_decref(ds->history);
    free(ds);
    if (cb)
        cb(cd);
}

void drills_close(Drills *ds, void (*closed_cb)(void *data), void *data)
{
    if (!ds)
        return;
    ds->closing = true;
    ds->closed_cb = closed_cb;
    ds->closed_data = data;
    lease_unlisten(ds->core->lease, drill__on_lease, ds);
    drill__stop(ds);
    if (ds->sched_timer)
        uv_close((uv_handle_t *)ds->sched_timer, drill_timer_closed);
    if (ds->space_timer)
        uv_close((uv_handle_t *)ds->space_timer, drill_timer_closed);
    ds->sched_timer = ds->space_timer = NULL;
    drill__maybe_closed(ds);
}
