/*
 * scn_scan: the scenarios' start-up scan (see scn_internal.h).
 *
 * Owns what happens at start: reading state_dir/incidents (the history of finished runs) and every
 * journal in state_dir/runs on the thread pool, rebuilding unfinished runs from their journals
 * (context records and engine events) and resuming them, finishing ended runs whose report is
 * missing, and starting a trigger that arrived while the scan was running.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "core/core.h"
#include "err.h"
#include "log.h"
#include "scenario/scn_internal.h"

typedef struct ScnLoaded {
    char id[96];
    Journal *j;          /* kept open for unfinished runs */
    char **events;       /* every record's payload */
    size_t n;
    bool ended, has_report;
} ScnLoaded;

typedef struct ScnScan {
    uv_work_t req;
    Scenarios *s;
    char runs_dir[4096], inc_dir[4096];
    ScnLoaded *runs;
    size_t n;
    json_t *history;
    char err[1024];
} ScnScan;

static int scn_cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in `dir` ending in `suffix` (not hidden), sorted; -errno when the directory cannot be
 * read. Thread pool only. A name that could not be copied is NULL in the list. */
static int scn_list_dir(const char *dir, const char *suffix, char ***ret_names, size_t *ret_n)
{
    char **names = NULL;
    size_t n = 0, cap = 0, sl = strlen(suffix);
    struct dirent *de;
    DIR *dh = opendir(dir);

    *ret_names = NULL;
    *ret_n = 0;
    if (!dh)
        return -errno;
    while ((de = readdir(dh))) {
        size_t l = strlen(de->d_name);
        if (de->d_name[0] == '.' || l <= sl || strcmp(de->d_name + l - sl, suffix) != 0)
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 16;
            char **p = realloc(names, cap * sizeof(*names));
            if (!p)
                break;
            names = p;
        }
        names[n++] = strdup(de->d_name);
    }
    closedir(dh);
    if (names)
        qsort(names, n, sizeof(*names), scn_cmp_str);
    *ret_names = names;
    *ret_n = n;
    return 0;
}

static void scn_scan_work(uv_work_t *req)
{
    ScnScan *sc = req->data;
    char **names = NULL, **inc = NULL;
    size_t n = 0, ni = 0;

    sc->history = json_array();
    mkdir(sc->runs_dir, 0750);
    mkdir(sc->inc_dir, 0750);
    if (scn_list_dir(sc->inc_dir, ".json", &inc, &ni) == 0) {
        for (size_t i = 0; i < ni; i++) {
            char path[8192], *text = NULL;
            size_t len;
            snprintf(path, sizeof(path), "%s/%s", sc->inc_dir, inc[i] ? inc[i] : "");
            /* drill-<id>.json: a drill's report (drill.c keeps their history), not an incident's. */
            if (inc[i] && strncmp(inc[i], "drill-", 6) != 0 && atomicfile_read_all(path, 64u << 20, &text, &len) == 0) {
                json_t *rep = json_loadb(text, len, 0, NULL);
                if (json_is_object(rep))
                    json_array_append_new(sc->history, scn_summary(rep));
                json_decref(rep);
                free(text);
            }
            free(inc[i]);
        }
        free(inc);
    }
    int r = scn_list_dir(sc->runs_dir, ".journal", &names, &n);
    if (r < 0) {
        snprintf(sc->err, sizeof(sc->err), "cannot read '%.800s': %s", sc->runs_dir, strerror(-r));
        return;
    }
    sc->runs = calloc(n ? n : 1, sizeof(*sc->runs));
    for (size_t i = 0; i < n && sc->runs; i++) {
        char path[8192], err[512] = "";
        JournalOpenInfo info;
        Journal *j = NULL;
        ScnLoaded *L = &sc->runs[sc->n];
        snprintf(path, sizeof(path), "%s/%s", sc->runs_dir, names[i] ? names[i] : "");
        if (!names[i] || journal_open(path, &j, &info, err, sizeof(err)) < 0) {
            size_t o = strlen(sc->err);
            snprintf(sc->err + o, sizeof(sc->err) - o, "%s%s", o ? "; " : "", err);
            free(names[i]);
            continue;
        }
        snprintf(L->id, sizeof(L->id), "%.*s", (int)(strlen(names[i]) - 8), names[i]);
        L->n = journal_record_count(j);
        L->events = calloc(L->n ? L->n : 1, sizeof(char *));
        for (size_t k = 0; k < L->n && L->events; k++) {
            const JournalRecord *rec = journal_record_at(j, k);
            L->events[k] = strndup(rec->payload, rec->len);
            bool end = false;
            char rid[128];
            if (L->events[k] && fsm_event_run_id(L->events[k], rid, sizeof(rid), &end) == 0 && end)
                L->ended = true;
        }
        snprintf(path, sizeof(path), "%s/%s.json", sc->inc_dir, L->id);
        L->has_report = access(path, F_OK) == 0;
        if (L->ended) {
            journal_free(j);
            j = NULL;
        }
        L->j = j;
        sc->n++;
        free(names[i]);
    }
    free(names);
}

static void scn_loaded_free(ScnLoaded *L)
{
    for (size_t k = 0; k < L->n && L->events; k++)
        free(L->events[k]);
    free(L->events);
    journal_free(L->j);
    L->j = NULL;
}

/* Does the run's journal hold the commit of its live step (trading was live again)? */
static bool scn_journal_resumed(const ScenarioDef *def, const char *const *fev, size_t nf)
{
    bool resumed = false;
    for (size_t k = 0; def->live_step && k < nf && !resumed; k++) {
        json_t *ev = json_loads(fev[k], 0, NULL);
        const char *kind = json_string_value(json_object_get(ev, "ev"));
        const char *step = json_string_value(json_object_get(ev, "step"));
        resumed = kind && step && strcmp(kind, "commit") == 0 && strcmp(step, def->live_step) == 0;
        json_decref(ev);
    }
    return resumed;
}

/* Rebuild a run from its journal: context records into ctx, engine events into fsm_run_resume. */
static int scn_resume_run(Scenarios *s, ScnLoaded *L, char *err, size_t errlen)
{
    const ScenarioDef *def = NULL;
    const char **fev = calloc(L->n ? L->n : 1, sizeof(char *));
    size_t nf = 0;
    json_t *ctx = json_object();
    int r;

    for (size_t k = 0; fev && k < L->n; k++) {
        json_t *ev = L->events[k] ? json_loads(L->events[k], 0, NULL) : NULL;
        const char *kind = json_string_value(json_object_get(ev, "ev"));
        if (kind && strcmp(kind, "scn.context") == 0) {
            const char *key = json_string_value(json_object_get(ev, "key"));
            if (key)
                json_object_set(ctx, key, json_object_get(ev, "value"));
        } else if (kind) {
            if (strcmp(kind, "start") == 0)
                def = scenario_find(json_string_value(json_object_get(ev, "scenario")));
            fev[nf++] = L->events[k];
        }
        json_decref(ev);
    }
    /* Crashed between the durable trigger (detection record) and the engine's start record: the
     * run never started; start it now, as triggered. */
    const json_t *det0 = json_object_get(ctx, "detection");
    bool not_started = !def && nf == 0 && det0;
    FsmMode mode0 = FSM_MODE_AUTOMATIC;
    if (not_started) {
        def = scenario_find(json_string_value(json_object_get(det0, "scenario")));
        const char *m = json_string_value(json_object_get(det0, "mode"));
        if (m && strcmp(m, fsm_mode_name(FSM_MODE_MANUAL)) == 0)
            mode0 = FSM_MODE_MANUAL;
    }
    if (!def) {
        snprintf(err, errlen, "journal of run %s names no known scenario", L->id);
        free(fev);
        json_decref(ctx);
        return DR_ECORRUPT;
    }
    ScnRun *run = scn_run_new(s, def, L->id, mode0, err, errlen);
    if (!run) {
        free(fev);
        json_decref(ctx);
        return DR_ECONFIG;
    }
    json_decref(run->ctx);
    run->ctx = ctx;
    const json_t *det = json_object_get(ctx, "detection");
    run->reason = strdup(json_string_value(json_object_get(det, "reason")) ?: "unspecified");
    run->detected_ms = (int64_t)json_integer_value(json_object_get(det, "detected_ms"));
    run->journal = L->j;
    L->j = NULL;
    if (!run->journal) {
        /* an ended run whose report is missing: replay for the report only */
        r = fsm_run_resume(run->fsm, fev, nf, err, errlen);
        free(fev);
        if (r == 0)
            scn_finished(run);
        else
            scn_run_release(run);
        return r;
    }
    s->active = run;
    run->resumed = scn_journal_resumed(def, fev, nf);
    if (run->resumed)
        events_emit(s->core->events, SEV_WARNING, "scenario.resume", NULL, false, NULL,
                    "resuming unfinished run %s of %s after a restart: trading was live again, its post-resume "
                    "watch carries on",
                    run->id, def->name);
    else
        events_emit(s->core->events, SEV_CRITICAL, "scenario.resume", NULL, false, NULL,
                    "resuming unfinished run %s of %s after a restart; trading stays halted until it has reconciled",
                    run->id, def->name);
    if (not_started) {
        r = fsm_run_start(run->fsm);
        if (r < 0)
            snprintf(err, errlen, "cannot start: %s", err_str(r));
    } else {
        r = fsm_run_resume(run->fsm, fev, nf, err, errlen);
    }
    free(fev);
    if (r < 0) {
        s->active = NULL;
        scn_run_release(run);
    }
    return r;
}

static void scn_scan_done(uv_work_t *req, int status)
{
    ScnScan *sc = req->data;
    Scenarios *s = sc->s;
    char err[512];
    (void)status;

    s->pending--;
    s->loading = false;
    if (sc->history) {
        json_decref(s->history);
        s->history = sc->history;
    }
    if (sc->err[0])
        events_emit(s->core->events, SEV_CRITICAL, "scenario.load", NULL, false, NULL,
                    "some recovery run journals cannot be read (trading stays as it is): %s", sc->err);
    for (size_t i = 0; i < sc->n; i++) {
        ScnLoaded *L = &sc->runs[i];
        if (!s->closing && ((L->ended && !L->has_report) || (!L->ended && !s->active))) {
            if (scn_resume_run(s, L, err, sizeof(err)) < 0)
                events_emit(s->core->events, SEV_CRITICAL, "scenario.load", NULL, false, NULL,
                            "cannot resume run %s: %s; trading stays halted", L->id, err);
        } else if (!L->ended && !s->closing) {
            events_emit(s->core->events, SEV_CRITICAL, "scenario.load", NULL, false, NULL,
                        "run %s is unfinished but run %s is active: it waits for a later restart", L->id,
                        s->active ? s->active->id : "?");
        }
        scn_loaded_free(L);
    }
    free(sc->runs);
    free(sc);
    if (s->queued_scenario) {
        char *scn = s->queued_scenario, *why = s->queued_reason;
        json_t *params = s->queued_params;
        s->queued_scenario = s->queued_reason = NULL;
        s->queued_params = NULL;
        if (s->active)
            log_notice("scenario", "run %s resumed; the %s trigger seen during start-up is covered by it",
                       s->active->id, scn);
        else if (!s->closing)
            scenarios_trigger_params(s, scn, why, s->queued_detected_ms, params, NULL, 0);
        free(scn);
        free(why);
        json_decref(params);
    }
    scn_update_status(s);
    scn_maybe_closed(s);
}

int scenarios_start(Scenarios *s)
{
    ScnScan *sc = calloc(1, sizeof(*sc));
    if (!sc)
        return -ENOMEM;
    sc->s = s;
    scn_path(s, sc->runs_dir, sizeof(sc->runs_dir), "runs", NULL, NULL);
    scn_path(s, sc->inc_dir, sizeof(sc->inc_dir), "incidents", NULL, NULL);
    sc->req.data = sc;
    s->loading = true;
    s->pending++;
    int r = uv_queue_work(s->core->loop, &sc->req, scn_scan_work, scn_scan_done);
    if (r < 0) {
        s->pending--;
        s->loading = false;
        free(sc);
    }
    return r;
}

