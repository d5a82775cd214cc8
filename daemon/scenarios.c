/*
 * scenarios: scenario runs (see scenarios.h and docs/scenarios.md).
 *
 * Owns the runs: their ids, one journal per run (state_dir/runs/<id>.journal, appended on the
 * thread pool in order, the engine's write-ahead log), the resumption of unfinished runs at start,
 * the venue's resume guard (trading resumes only through a run's own resume steps after its
 * reconcile committed, and never while a run is unfinished or runs are still being loaded), the
 * events and status of every transition, incident reports (state_dir/incidents/<id>.json and .txt,
 * written atomically on the thread pool), and the control commands execute, runs, run, approve,
 * abort, incidents and incident.
 *
 * Test hook: DRSUP_CRASH_AFTER_RECORD=N makes the daemon SIGKILL itself right after the record
 * with sequence number N of a run's journal became durable (docs/engine.md).
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "atomicfile.h"
#include "daemon.h"
#include "detector.h"
#include "err.h"
#include "log.h"
#include "scn_internal.h"
#include "venue.h"

static const ScnDef *const scn_defs[] = {&scn_corruption_def};

typedef struct ScnCmd ScnCmd;

struct Scenarios {
    Daemon *d;
    ScnRun *runs;       /* every live run object (active, dry runs, finishing) */
    ScnRun *active;     /* the unfinished run, or NULL */
    json_t *history;    /* summaries of finished runs, oldest first */
    bool loading;       /* start-up scan of state_dir/runs in progress */
    char *queued_scenario; /* a trigger that arrived while loading: started after the scan */
    char *queued_reason;
    int64_t queued_detected_ms;
    bool closing;
    unsigned pending;   /* thread-pool work not tied to a run */
    ScnCmd *cmds;       /* command reads in flight */
    uint64_t crash_after_record;
    void (*closed_cb)(void *data);
    void *closed_data;
};

static int64_t scn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void scn_path(const Scenarios *s, char *out, size_t n, const char *sub, const char *id, const char *ext)
{
    snprintf(out, n, "%s/%s%s%s%s", s->d->cfg->state_dir, sub, id ? "/" : "", id ? id : "", ext ? ext : "");
}

static bool scn_id_valid(const char *id)
{
    if (!id || !id[0] || strlen(id) > 90)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '-'))
            return false;
    return true;
}

static void scn_maybe_closed(Scenarios *s)
{
    if (!s->closing || s->runs || s->pending || s->cmds)
        return;
    void (*cb)(void *) = s->closed_cb;
    void *data = s->closed_data;
    json_decref(s->history);
    free(s);
    if (cb)
        cb(data);
}

/* ---- run objects ---- */

void scn_run_ref(ScnRun *run)
{
    run->refs++;
}

void scn_run_unref(ScnRun *run)
{
    if (--run->refs > 0)
        return;
    Scenarios *s = run->s;
    for (ScnRun **pp = &s->runs; *pp; pp = &(*pp)->next)
        if (*pp == run) {
            *pp = run->next;
            break;
        }
    journal_free(run->journal);
    free(run->reason);
    json_decref(run->ctx);
    json_decref(run->plan);
    config_scenarios_free(&run->cfg);
    config_backup_free(&run->bcfg);
    free(run->db_conninfo);
    free(run->admin_conninfo);
    free(run);
    scn_maybe_closed(s);
}

/* Drop the owner's reference: the engine run is stopped and freed, the rest when unused. */
static void scn_run_release(ScnRun *run)
{
    if (run->released)
        return;
    run->released = true;
    if (run->s->active == run)
        run->s->active = NULL;
    fsm_run_free(run->fsm);
    scn_run_unref(run);
}

char *scn_conninfo_for(const ScnRun *run, const char *dbname)
{
    char *out = NULL;
    if (asprintf(&out, "%s dbname='%s'", run->admin_conninfo, dbname) < 0)
        return NULL;
    return out;
}

/* Admin conninfo (key=value, ending in dbname=postgres) and the protected database's name. */
static int scn_run_databases(ScnRun *run, char *err, size_t errlen)
{
    const Config *cfg = run->d->cfg;
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(cfg->database.conninfo, &perr);
    const char *dbname = run->cfg.database;
    size_t cap = 1024, len = 0;
    char *ci = NULL;

    if (!opts) {
        snprintf(err, errlen, "cannot parse database.conninfo");
        PQfreemem(perr);
        return DR_ECONFIG;
    }
    if (!run->cfg.admin_conninfo)
        ci = calloc(1, cap);
    for (PQconninfoOption *o = opts; o->keyword; o++) {
        if (!o->val || !o->val[0])
            continue;
        if (strcmp(o->keyword, "dbname") == 0) {
            if (!dbname)
                dbname = o->val;
            continue;
        }
        if (!ci)
            continue;
        size_t need = strlen(o->keyword) + 2 * strlen(o->val) + 6;
        if (len + need >= cap) {
            cap = (len + need) * 2;
            char *p = realloc(ci, cap);
            if (!p)
                break;
            ci = p;
        }
        len += (size_t)sprintf(ci + len, "%s%s='", len ? " " : "", o->keyword);
        for (const char *v = o->val; *v; v++) {
            if (*v == '\'' || *v == '\\')
                ci[len++] = '\\';
            ci[len++] = *v;
        }
        ci[len++] = '\'';
        ci[len] = '\0';
    }
    if (!dbname || strlen(dbname) > 30 || strpbrk(dbname, "\"\\'")) {
        snprintf(err, errlen, "cannot tell which database to protect: set scenarios.database_corruption.database");
        PQconninfoFree(opts);
        free(ci);
        return DR_ECONFIG;
    }
    snprintf(run->database, sizeof(run->database), "%s", dbname);
    PQconninfoFree(opts);
    if (asprintf(&run->admin_conninfo, "%s dbname=postgres", run->cfg.admin_conninfo ? run->cfg.admin_conninfo : ci ? ci : "") < 0)
        run->admin_conninfo = NULL;
    free(ci);
    snprintf(run->db_damaged, sizeof(run->db_damaged), "%s_damaged_%s", run->database, run->tag);
    snprintf(run->db_restored, sizeof(run->db_restored), "%s_restore_%s", run->database, run->tag);
    return run->admin_conninfo ? 0 : -ENOMEM;
}

static const ScnDef *scn_def_find(const char *name)
{
    for (size_t i = 0; i < sizeof(scn_defs) / sizeof(scn_defs[0]); i++)
        if (name && strcmp(scn_defs[i]->name, name) == 0)
            return scn_defs[i];
    return NULL;
}

/* "20261123T101500Z-corruption-ab12" -> tag "20261123t101500z_ab12" */
static void scn_tag_from_id(const char *id, char *tag, size_t n)
{
    const char *dash = strchr(id, '-');
    const char *last = strrchr(id, '-');
    size_t o = 0;
    for (const char *p = id; *p && p != dash && o + 1 < n; p++)
        tag[o++] = (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
    if (last && last != dash && o + 1 < n)
        tag[o++] = '_';
    for (const char *p = last && last != dash ? last + 1 : ""; *p && o + 1 < n; p++)
        tag[o++] = (char)((*p >= 'A' && *p <= 'Z') ? *p - 'A' + 'a' : *p);
    tag[o] = '\0';
}

static void scn_record(FsmRun *fsm, const char *event_json, FsmRecorded then, void *data);
static void scn_notify(FsmRun *fsm, const FsmNotice *n, void *data);

static ScnRun *scn_run_new(Scenarios *s, const ScnDef *def, const char *id, FsmMode mode, char *err, size_t errlen)
{
    ScnRun *run = calloc(1, sizeof(*run));
    int r;

    if (!run) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    run->s = s;
    run->d = s->d;
    run->def = def;
    run->mode = mode;
    run->dry = mode == FSM_MODE_DRY_RUN;
    run->refs = 1;
    snprintf(run->id, sizeof(run->id), "%s", id);
    scn_tag_from_id(id, run->tag, sizeof(run->tag));
    run->ctx = json_object();
    run->next = s->runs;
    s->runs = run;
    if (!run->ctx || config_scenarios_copy(&s->d->cfg->scenarios, &run->cfg) < 0 ||
        config_backup_copy(&s->d->cfg->backup, &run->bcfg) < 0 || !(run->db_conninfo = strdup(s->d->cfg->database.conninfo))) {
        snprintf(err, errlen, "out of memory");
        scn_run_release(run);
        return NULL;
    }
    if (scn_run_databases(run, err, errlen) < 0) {
        scn_run_release(run);
        return NULL;
    }
    FsmRunOptions o = {.id = run->id,
                       .mode = mode,
                       .ctx = run,
                       .record = scn_record,
                       .record_data = run,
                       .notify = scn_notify,
                       .notify_data = run};
    run->fsm = fsm_run_new(s->d->loop, def->table, &o, &r, err, errlen);
    if (!run->fsm) {
        scn_run_release(run);
        return NULL;
    }
    return run;
}

/* ---- journal ---- */

typedef struct ScnAppend {
    ScnRun *run;
    FsmRun *fsm;
    FsmRecorded then;
    ScnThenFn then_ctx;
    void *data;
} ScnAppend;

static void scn_appended(Journal *j, int status, uint64_t seq, void *data)
{
    ScnAppend *a = data;
    ScnRun *run = a->run;
    (void)j;
    if (status == 0 && run->s->crash_after_record && seq == run->s->crash_after_record) {
        LogFields lf = {run->id, run->def->name, NULL};
        log_emit(LOG_CRIT, "scenario", &lf, "DRSUP_CRASH_AFTER_RECORD=%llu reached: killing the daemon (test hook)",
                 (unsigned long long)seq);
        raise(SIGKILL);
    }
    if (status < 0) {
        LogFields lf = {run->id, run->def->name, NULL};
        log_emit(LOG_CRIT, "scenario", &lf, "cannot write the run's journal: %s", err_str(status));
    }
    if (a->then)
        a->then(a->fsm, status);
    if (a->then_ctx)
        a->then_ctx(run, status, a->data);
    free(a);
    scn_run_unref(run);
}

static int scn_append(ScnRun *run, const char *text, ScnAppend *a)
{
    if (!run->journal)
        return DR_ESTATE;
    scn_run_ref(run);
    int r = journal_append_async(run->d->loop, run->journal, text, strlen(text), scn_appended, a);
    if (r < 0)
        run->refs--; /* cannot reach zero: the caller holds a reference */
    return r;
}

static void scn_record(FsmRun *fsm, const char *event_json, FsmRecorded then, void *data)
{
    ScnRun *run = data;
    ScnAppend *a = calloc(1, sizeof(*a));
    int r = a ? 0 : -ENOMEM;
    if (a) {
        *a = (ScnAppend){.run = run, .fsm = fsm, .then = then};
        r = scn_append(run, event_json, a);
    }
    if (r < 0) {
        free(a);
        then(fsm, r);
    }
}

void scn_context_set(ScnRun *run, const char *key, json_t *value, ScnThenFn then, void *data)
{
    if (!value)
        value = json_null();
    json_object_set(run->ctx, key, value);
    if (run->dry || !run->journal) {
        json_decref(value);
        then(run, 0, data);
        return;
    }
    json_t *ev = json_pack("{s:s,s:s,s:I,s:s,s:o}", "ev", "scn.context", "run", run->id, "ts", (json_int_t)scn_now_ms(),
                           "key", key, "value", value);
    char *text = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
    ScnAppend *a = text ? calloc(1, sizeof(*a)) : NULL;
    int r = a ? 0 : -ENOMEM;
    if (a) {
        *a = (ScnAppend){.run = run, .then_ctx = then, .data = data};
        r = scn_append(run, text, a);
    }
    free(text);
    if (r < 0) {
        free(a);
        then(run, r, data);
    }
}

/* ---- events, status ---- */

static void scn_condition(const ScnRun *run, char *out, size_t n)
{
    snprintf(out, n, "scenario:%s:%s", run->def->name, run->d->cfg->cluster);
}

static json_t *scn_details(const ScnRun *run, const FsmNotice *n)
{
    return json_pack("{s:s,s:s,s:s?,s:s,s:s?,s:i,s:s?}", "run", run->id, "scenario", run->def->name, "step",
                     n ? n->step_name : NULL, "state", fsm_state_name(run->def->table, fsm_run_state(run->fsm)),
                     "sentence", n ? n->sentence : NULL, "attempt", n ? (int)n->attempt : 0, "message",
                     n ? n->message : NULL);
}

static void scn_update_status(Scenarios *s)
{
    Component *c = status_component(s->d->status, "recovery");
    char line[256];
    if (s->closing)
        return;
    if (c) {
        if (s->active) {
            json_t *det = scn_details(s->active, NULL);
            scenarios_status_line(s, line, sizeof(line));
            status_observe(c, false, 0, line, det, 1);
            json_decref(det);
        } else if (c->health != HEALTH_UP) {
            status_observe(c, true, 0, NULL, NULL, 1);
        }
    }
    daemon_update_status(s->d);
}

static void scn_finished(ScnRun *run);

static void scn_notify(FsmRun *fsm, const FsmNotice *n, void *data)
{
    ScnRun *run = data;
    Scenarios *s = run->s;
    LogFields lf = {run->id, run->def->name, n->step_name};
    json_t *det;
    char cond[256];

    (void)fsm;
    if (run->dry) {
        if (n->kind == FSM_NOTICE_PLANNED)
            json_array_append_new(run->plan, json_pack("{s:s,s:s,s:s?}", "step", n->step_name, "sentence", n->sentence,
                                                       "action", n->message));
        if (n->kind == FSM_NOTICE_FINISHED)
            scn_finished(run);
        return;
    }
    det = scn_details(run, n);
    scn_condition(run, cond, sizeof(cond));
    switch (n->kind) {
    case FSM_NOTICE_STEP_STARTED:
        log_emit(LOG_INFO, "scenario", &lf, "step '%s' started (attempt %u): %s", n->step_name, n->attempt, n->sentence);
        events_emit(s->d->events, SEV_INFO, "scenario.step", NULL, false, det, "run %s: %s (attempt %u)", run->id,
                    n->step_name, n->attempt);
        break;
    case FSM_NOTICE_STEP_RETRY:
        log_emit(LOG_WARNING, "scenario", &lf, "step '%s' attempt %u failed, retrying: %s", n->step_name, n->attempt,
                 n->message ? n->message : err_str(n->result));
        events_emit(s->d->events, SEV_WARNING, "scenario.step", NULL, false, det, "run %s: %s attempt %u failed: %s",
                    run->id, n->step_name, n->attempt, n->message ? n->message : err_str(n->result));
        break;
    case FSM_NOTICE_TRANSITION:
        log_emit(LOG_NOTICE, "scenario", &lf, "%s (%s)", n->sentence, n->message ? n->message : "done");
        events_emit(s->d->events, SEV_INFO, "scenario.transition", NULL, false, det, "run %s: %s: %s", run->id,
                    n->sentence, n->message ? n->message : "done");
        break;
    case FSM_NOTICE_STEP_FAILED:
        log_emit(LOG_CRIT, "scenario", &lf, "step '%s' failed: %s", n->step_name, n->message ? n->message : err_str(n->result));
        events_emit(s->d->events, SEV_CRITICAL, "scenario.step", NULL, false, det,
                    "run %s: step %s FAILED, trading stays halted: %s", run->id, n->step_name,
                    n->message ? n->message : err_str(n->result));
        break;
    case FSM_NOTICE_WAITING_APPROVAL:
        log_emit(LOG_WARNING, "scenario", &lf, "waiting for approval before '%s': drctl approve %s", n->step_name, run->id);
        events_emit(s->d->events, SEV_WARNING, "scenario.gate", NULL, false, det,
                    "run %s waits for approval before %s (drctl approve %s / drctl abort %s)", run->id, n->step_name,
                    run->id, run->id);
        break;
    case FSM_NOTICE_HELD:
        log_emit(LOG_CRIT, "scenario", &lf, "step '%s' was in doubt at a restart: held for an operator", n->step_name);
        events_emit(s->d->events, SEV_CRITICAL, "scenario.held", NULL, false, det,
                    "run %s held: step %s was in doubt after a restart (%s); trading stays halted; drctl approve %s "
                    "runs it again, drctl abort %s ends the run",
                    run->id, n->step_name, n->message ? n->message : "no probe answer", run->id, run->id);
        break;
    case FSM_NOTICE_FINISHED: {
        FsmStatus st = fsm_run_status(run->fsm);
        if (st == FSM_RUN_SUCCEEDED)
            events_emit(s->d->events, SEV_INFO, "scenario.end", cond, true, det, "run %s of %s succeeded: trading is live",
                        run->id, run->def->name);
        else
            events_emit(s->d->events, st == FSM_RUN_ABORTED ? SEV_ERROR : SEV_CRITICAL, "scenario.end", NULL, false, det,
                        "run %s of %s %s in state '%s'; trading stays halted: %s", run->id, run->def->name,
                        fsm_status_name(st), fsm_state_name(run->def->table, fsm_run_state(run->fsm)),
                        n->message ? n->message : "-");
        json_decref(det);
        scn_finished(run);
        return;
    }
    default:
        break;
    }
    json_decref(det);
    scn_update_status(s);
}

/* ---- reports ---- */

typedef struct ScnReportWrite {
    uv_work_t req;
    ScnRun *run;
    char json_path[4096], text_path[4096], dir[4096];
    char *json_text, *text;
    json_t *summary;
    int result;
} ScnReportWrite;

static void scn_report_work(uv_work_t *req)
{
    ScnReportWrite *w = req->data;
    if (mkdir(w->dir, 0750) < 0 && errno != EEXIST) {
        w->result = -errno;
        return;
    }
    w->result = atomicfile_write(w->json_path, w->json_text, strlen(w->json_text), 0640);
    if (w->result == 0)
        w->result = atomicfile_write(w->text_path, w->text, strlen(w->text), 0640);
}

static void scn_report_done(uv_work_t *req, int status)
{
    ScnReportWrite *w = req->data;
    ScnRun *run = w->run;
    LogFields lf = {run->id, run->def->name, NULL};
    if (status < 0 && w->result == 0)
        w->result = status;
    if (w->result < 0) {
        events_emit(run->d->events, SEV_ERROR, "scenario.report", NULL, false, NULL,
                    "cannot write the incident report '%s': %s", w->json_path, err_str(w->result));
    } else {
        log_emit(LOG_NOTICE, "scenario", &lf, "incident report written to '%s'", w->json_path);
    }
    if (w->summary)
        json_array_append_new(run->s->history, w->summary);
    free(w->json_text);
    free(w->text);
    free(w);
    scn_run_unref(run);
}

static json_t *scn_summary(const json_t *rep)
{
    static const char *const keys[] = {"run", "scenario", "mode", "status", "state", "reason", "detected_ms",
                                       "finished_ms", "rto_ms", "rpo_ms", "rto_met", "rpo_met", NULL};
    json_t *o = json_object();
    for (size_t i = 0; keys[i]; i++) {
        json_t *v = json_object_get(rep, keys[i]);
        if (v)
            json_object_set(o, keys[i], v);
    }
    return o;
}

static void scn_write_report(ScnRun *run)
{
    ScnReportWrite *w = calloc(1, sizeof(*w));
    json_t *rep = scn_report_build(run, run->d->cfg->cluster);
    if (!w || !rep) {
        free(w);
        json_decref(rep);
        return;
    }
    w->run = run;
    w->json_text = json_dumps(rep, JSON_INDENT(2) | JSON_SORT_KEYS);
    w->text = scn_report_text(rep);
    w->summary = scn_summary(rep);
    json_decref(rep);
    scn_path(run->s, w->dir, sizeof(w->dir), "incidents", NULL, NULL);
    scn_path(run->s, w->json_path, sizeof(w->json_path), "incidents", run->id, ".json");
    scn_path(run->s, w->text_path, sizeof(w->text_path), "incidents", run->id, ".txt");
    w->req.data = w;
    if (!w->json_text || !w->text) {
        free(w->json_text);
        free(w->text);
        json_decref(w->summary);
        free(w);
        return;
    }
    scn_run_ref(run);
    if (uv_queue_work(run->d->loop, &w->req, scn_report_work, scn_report_done) < 0) {
        w->result = -ENOMEM;
        scn_report_done(&w->req, 0);
    }
}

static void scn_finished(ScnRun *run)
{
    Scenarios *s = run->s;
    if (run->finished)
        return;
    run->finished = true;
    if (run->dry) {
        CtlCall *call = run->waiter;
        run->waiter = NULL;
        if (call) {
            FsmStatus st = fsm_run_status(run->fsm);
            if (st == FSM_RUN_SUCCEEDED) {
                control_reply_ok(call, json_pack("{s:s,s:s,s:b,s:O,s:s,s:s}", "run", run->id, "scenario", run->def->name,
                                                 "dry_run", 1, "plan", run->plan, "database", run->database, "status",
                                                 "planned"));
            } else {
                json_t *last = json_array_get(run->plan, json_array_size(run->plan) - 1);
                json_t *j = fsm_run_to_json(run->fsm);
                control_reply_error(call, DR_ESTATE, "the dry run cannot complete: %s",
                                    json_string_value(json_object_get(j, "message")) ?: (last ? "a step cannot be planned" : "?"));
                json_decref(j);
            }
        }
    } else if (!s->closing) {
        scn_write_report(run);
    }
    if (s->active == run) {
        s->active = NULL;
        /* The detector watches afresh: a new corruption after this run starts a new one. */
        if (!run->dry && s->d->detector)
            detector_reset(s->d->detector);
    }
    scn_update_status(s);
    scn_run_release(run);
}

/* ---- starting a run ---- */

typedef struct ScnOpen {
    uv_work_t req;
    ScnRun *run;
    char path[4096], dir[4096];
    Journal *j;
    int result;
    char err[512];
} ScnOpen;

static void scn_open_work(uv_work_t *req)
{
    ScnOpen *o = req->data;
    JournalOpenInfo info;
    if (mkdir(o->dir, 0750) < 0 && errno != EEXIST) {
        o->result = -errno;
        snprintf(o->err, sizeof(o->err), "cannot create '%.400s': %s", o->dir, strerror(errno));
        return;
    }
    o->result = journal_open(o->path, &o->j, &info, o->err, sizeof(o->err));
}

static void scn_started_recorded(ScnRun *run, int status, void *data)
{
    (void)data;
    if (run->released)
        return;
    if (status < 0 || fsm_run_start(run->fsm) < 0) {
        events_emit(run->d->events, SEV_CRITICAL, "scenario.start", NULL, false, NULL,
                    "run %s cannot start: its journal cannot be written", run->id);
        scn_run_release(run);
    }
}

static void scn_open_done(uv_work_t *req, int status)
{
    ScnOpen *o = req->data;
    ScnRun *run = o->run;
    if (status < 0 && o->result == 0)
        o->result = status;
    if (o->result < 0 || run->released) {
        if (o->result < 0)
            events_emit(run->d->events, SEV_CRITICAL, "scenario.start", NULL, false, NULL,
                        "run %s cannot start: %s; trading is NOT being recovered", run->id, o->err[0] ? o->err : err_str(o->result));
        journal_free(o->j);
        scn_run_release(run);
    } else {
        run->journal = o->j;
        json_t *det = json_pack("{s:s,s:I,s:s,s:s}", "reason", run->reason ? run->reason : "", "detected_ms",
                                (json_int_t)run->detected_ms, "scenario", run->def->name, "mode",
                                fsm_mode_name(run->mode));
        scn_context_set(run, "detection", det, scn_started_recorded, NULL);
    }
    free(o);
    scn_run_unref(run);
}

static void scn_make_id(const ScnDef *def, int64_t now_ms, char *out, size_t n)
{
    time_t t = (time_t)(now_ms / 1000);
    struct tm tm;
    char ts[32];
    uint16_t rnd = 0;
    gmtime_r(&t, &tm);
    strftime(ts, sizeof(ts), "%Y%m%dT%H%M%SZ", &tm);
    if (getrandom(&rnd, sizeof(rnd), GRND_NONBLOCK) != (ssize_t)sizeof(rnd))
        rnd = (uint16_t)(now_ms ^ getpid());
    snprintf(out, n, "%s-%s-%04x", ts, def->short_name, rnd);
}

static int scn_trigger(Scenarios *s, const char *scenario, const char *reason, int64_t detected_ms, FsmMode mode,
                       CtlCall *waiter, char *ret_id, size_t id_len, char *err, size_t errlen)
{
    const ScnDef *def = scn_def_find(scenario);
    char id[96];

    if (!def) {
        snprintf(err, errlen, "no scenario named '%s' (known: database_corruption)", scenario ? scenario : "");
        return -ENOENT;
    }
    if (s->closing) {
        snprintf(err, errlen, "the daemon is stopping");
        return DR_ECANCELED;
    }
    if (mode != FSM_MODE_DRY_RUN && (s->active || s->loading)) {
        snprintf(err, errlen, s->active ? "run %s is already active" : "unfinished runs are still being loaded",
                 s->active ? s->active->id : "");
        return -EBUSY;
    }
    scn_make_id(def, scn_now_ms(), id, sizeof(id));
    ScnRun *run = scn_run_new(s, def, id, mode, err, errlen);
    if (!run)
        return DR_ECONFIG;
    run->reason = strdup(reason && reason[0] ? reason : "unspecified");
    run->detected_ms = detected_ms > 0 ? detected_ms : scn_now_ms();
    if (ret_id)
        snprintf(ret_id, id_len, "%s", id);
    if (mode == FSM_MODE_DRY_RUN) {
        run->plan = json_array();
        run->waiter = waiter;
        scn_run_ref(run);
        int r = fsm_run_start(run->fsm);
        if (r < 0 && !run->finished) {
            run->waiter = NULL;
            scn_run_release(run);
            scn_run_unref(run);
            snprintf(err, errlen, "cannot start the dry run: %s", err_str(r));
            return r;
        }
        scn_run_unref(run);
        return 0;
    }
    s->active = run;
    char cond[256];
    scn_condition(run, cond, sizeof(cond));
    json_t *det = scn_details(run, NULL);
    json_object_set_new(det, "reason", json_string(run->reason));
    json_object_set_new(det, "mode", json_string(fsm_mode_name(mode)));
    events_emit(s->d->events, SEV_CRITICAL, "scenario.start", cond, false, det, "scenario %s started (run %s, %s): %s",
                def->name, run->id, fsm_mode_name(mode), run->reason);
    json_decref(det);
    LogFields lf = {run->id, def->name, NULL};
    log_emit(LOG_NOTICE, "scenario", &lf, "run started (%s mode), reason: %s", fsm_mode_name(mode), run->reason);

    ScnOpen *o = calloc(1, sizeof(*o));
    if (!o) {
        scn_run_release(run);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    o->run = run;
    scn_path(s, o->dir, sizeof(o->dir), "runs", NULL, NULL);
    scn_path(s, o->path, sizeof(o->path), "runs", run->id, ".journal");
    o->req.data = o;
    scn_run_ref(run);
    int r = uv_queue_work(s->d->loop, &o->req, scn_open_work, scn_open_done);
    if (r < 0) {
        o->result = r;
        scn_open_done(&o->req, 0);
    }
    scn_update_status(s);
    return 0;
}

int scenarios_trigger(Scenarios *s, const char *scenario, const char *reason, int64_t detected_ms, char *ret_run_id,
                      size_t run_id_len)
{
    char err[512];
    if (s->loading && !s->closing && scenario) {
        /* Unfinished runs are still being read: this one starts once they are (if none of them
         * resumes as the active run). Trading is already halted by whoever triggered. */
        free(s->queued_scenario);
        free(s->queued_reason);
        s->queued_scenario = strdup(scenario);
        s->queued_reason = strdup(reason ? reason : "");
        s->queued_detected_ms = detected_ms;
        if (ret_run_id && run_id_len)
            ret_run_id[0] = '\0';
        return -EINPROGRESS;
    }
    int r = scn_trigger(s, scenario, reason, detected_ms, s->d->cfg->scenarios.manual ? FSM_MODE_MANUAL : FSM_MODE_AUTOMATIC,
                        NULL, ret_run_id, run_id_len, err, sizeof(err));
    if (r < 0 && r != -EBUSY)
        log_error("scenario", "cannot start scenario '%s': %s", scenario ? scenario : "", err);
    return r;
}

bool scenarios_active(const Scenarios *s)
{
    return s && (s->active || s->loading);
}

void scenarios_status_line(const Scenarios *s, char *out, size_t n)
{
    out[0] = '\0';
    if (!s)
        return;
    if (s->loading) {
        snprintf(out, n, "loading recovery runs");
        return;
    }
    if (!s->active)
        return;
    const ScnRun *run = s->active;
    snprintf(out, n, "recovery %s: %s, %s", run->id, run->fsm ? fsm_status_name(fsm_run_status(run->fsm)) : "?",
             run->fsm ? fsm_state_name(run->def->table, fsm_run_state(run->fsm)) : "?");
}

/* ---- the resume guard ---- */

static bool scn_resume_guard(void *data, char *why, size_t whylen)
{
    Scenarios *s = data;
    if (s->loading) {
        snprintf(why, whylen, "unfinished recovery runs are still being loaded: trading stays halted");
        return false;
    }
    ScnRun *run = s->active;
    if (!run)
        return true;
    if (run->def->may_resume && run->def->may_resume(run))
        return true;
    snprintf(why, whylen,
             "recovery run %s is unfinished (state '%s'): trading resumes only through the run, after its reconcile "
             "passed (drctl run %s)",
             run->id, fsm_state_name(run->def->table, fsm_run_state(run->fsm)), run->id);
    return false;
}

/* ---- start: replay state_dir/runs ---- */

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
            if (inc[i] && atomicfile_read_all(path, 64u << 20, &text, &len) == 0) {
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

/* Rebuild a run from its journal: context records into ctx, engine events into fsm_run_resume. */
static int scn_resume_run(Scenarios *s, ScnLoaded *L, char *err, size_t errlen)
{
    const ScnDef *def = NULL;
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
                def = scn_def_find(json_string_value(json_object_get(ev, "scenario")));
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
        def = scn_def_find(json_string_value(json_object_get(det0, "scenario")));
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
    events_emit(s->d->events, SEV_CRITICAL, "scenario.resume", NULL, false, NULL,
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
        events_emit(s->d->events, SEV_CRITICAL, "scenario.load", NULL, false, NULL,
                    "some recovery run journals cannot be read (trading stays as it is): %s", sc->err);
    for (size_t i = 0; i < sc->n; i++) {
        ScnLoaded *L = &sc->runs[i];
        if (!s->closing && ((L->ended && !L->has_report) || (!L->ended && !s->active))) {
            if (scn_resume_run(s, L, err, sizeof(err)) < 0)
                events_emit(s->d->events, SEV_CRITICAL, "scenario.load", NULL, false, NULL,
                            "cannot resume run %s: %s; trading stays halted", L->id, err);
        } else if (!L->ended && !s->closing) {
            events_emit(s->d->events, SEV_CRITICAL, "scenario.load", NULL, false, NULL,
                        "run %s is unfinished but run %s is active: it waits for a later restart", L->id,
                        s->active ? s->active->id : "?");
        }
        scn_loaded_free(L);
    }
    free(sc->runs);
    free(sc);
    if (s->queued_scenario) {
        char *scn = s->queued_scenario, *why = s->queued_reason;
        s->queued_scenario = s->queued_reason = NULL;
        if (s->active)
            log_notice("scenario", "run %s resumed; the %s trigger seen during start-up is covered by it",
                       s->active->id, scn);
        else if (!s->closing)
            scenarios_trigger(s, scn, why, s->queued_detected_ms, NULL, 0);
        free(scn);
        free(why);
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
    int r = uv_queue_work(s->d->loop, &sc->req, scn_scan_work, scn_scan_done);
    if (r < 0) {
        s->pending--;
        s->loading = false;
        free(sc);
    }
    return r;
}

/* ---- commands ---- */

static ScnRun *scn_find_live(Scenarios *s, const char *id)
{
    for (ScnRun *r = s->runs; r; r = r->next)
        if (!r->dry && !r->released && id && strcmp(r->id, id) == 0)
            return r;
    return NULL;
}

static json_t *scn_run_json(const ScnRun *run)
{
    json_t *j = fsm_run_to_json(run->fsm);
    if (j) {
        json_object_set_new(j, "reason", json_string(run->reason ? run->reason : ""));
        json_object_set_new(j, "detected_ms", json_integer(run->detected_ms));
        json_object_set(j, "context", run->ctx);
        json_object_set_new(j, "active", json_boolean(run->s->active == run));
    }
    return j;
}

static void scn_cmd_execute(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    const char *name = json_string_value(json_object_get(args, "scenario"));
    const char *reason = json_string_value(json_object_get(args, "reason"));
    bool dry = json_is_true(json_object_get(args, "dry_run"));
    bool manual = json_is_true(json_object_get(args, "manual"));
    char id[96], err[512] = "", rbuf[600];

    if (!name) {
        control_reply_error(call, DR_EBADARG, "execute needs a scenario (drctl execute --scenario NAME)");
        return;
    }
    const PeerCred *pc = control_call_peer(call);
    snprintf(rbuf, sizeof(rbuf), "operator request (uid %ld)%s%s", pc ? (long)pc->uid : -1L, reason ? ": " : "",
             reason ? reason : "");
    FsmMode mode = dry ? FSM_MODE_DRY_RUN
                       : manual || s->d->cfg->scenarios.manual ? FSM_MODE_MANUAL : FSM_MODE_AUTOMATIC;
    int r = scn_trigger(s, name, rbuf, scn_now_ms(), mode, dry ? call : NULL, id, sizeof(id), err, sizeof(err));
    if (r < 0) {
        control_reply_error(call, r == -EBUSY ? DR_EBUSY : r == -ENOENT ? DR_EBADARG : r, "%s", err);
        return;
    }
    if (!dry)
        control_reply_ok(call, json_pack("{s:s,s:s,s:s}", "run", id, "scenario", name, "mode", fsm_mode_name(mode)));
}

static void scn_cmd_runs(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    json_t *list = json_array();
    (void)args;
    for (size_t i = json_array_size(s->history); i-- > 0;)
        json_array_append(list, json_array_get(s->history, i));
    if (s->active) {
        json_t *a = scn_run_json(s->active);
        json_object_del(a, "steps");
        json_object_del(a, "context");
        json_array_insert_new(list, 0, a);
    }
    control_reply_ok(call, json_pack("{s:o,s:b}", "runs", list, "loading", s->loading));
}

typedef enum { SCN_READ_RUN, SCN_READ_INCIDENT } ScnReadKind;

struct ScnCmd {
    uv_work_t req;
    Scenarios *s;
    CtlCall *call;
    ScnReadKind kind;
    char id[96];
    char json_path[4096], text_path[4096];
    char *json_text, *text;
    int result;
    ScnCmd *next;
};

static void scn_read_work(uv_work_t *req)
{
    ScnCmd *c = req->data;
    size_t len;
    c->result = atomicfile_read_all(c->json_path, 64u << 20, &c->json_text, &len);
    if (c->result == 0 && c->kind == SCN_READ_INCIDENT)
        c->result = atomicfile_read_all(c->text_path, 64u << 20, &c->text, &len);
}

static void scn_read_done(uv_work_t *req, int status)
{
    ScnCmd *c = req->data;
    Scenarios *s = c->s;
    for (ScnCmd **pp = &s->cmds; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    if (status < 0 && c->result == 0)
        c->result = status;
    if (c->call) {
        json_t *rep = c->json_text ? json_loads(c->json_text, 0, NULL) : NULL;
        if (c->result == -ENOENT)
            control_reply_error(c->call, DR_EBADARG, "no run or incident named '%s' (see drctl runs)", c->id);
        else if (c->result < 0 || !rep)
            control_reply_error(c->call, c->result < 0 ? c->result : DR_ECORRUPT, "cannot read the report of '%s': %s",
                                c->id, c->result < 0 ? err_str(c->result) : "not JSON");
        else if (c->kind == SCN_READ_INCIDENT)
            control_reply_ok(c->call, json_pack("{s:O,s:s}", "report", rep, "text", c->text ? c->text : ""));
        else {
            json_t *r = json_pack("{s:O,s:O,s:O,s:O,s:O,s:O,s:b}", "run", json_object_get(rep, "run"), "scenario",
                                  json_object_get(rep, "scenario"), "status", json_object_get(rep, "status"), "state",
                                  json_object_get(rep, "state"), "mode", json_object_get(rep, "mode"), "steps",
                                  json_object_get(rep, "timeline"), "active", 0);
            control_reply_ok(c->call, r);
        }
        json_decref(rep);
    }
    free(c->json_text);
    free(c->text);
    free(c);
    s->pending--;
    scn_maybe_closed(s);
}

static void scn_read_report(Scenarios *s, CtlCall *call, const char *id, ScnReadKind kind)
{
    ScnCmd *c = calloc(1, sizeof(*c));
    if (!c) {
        control_reply_error(call, -ENOMEM, "out of memory");
        return;
    }
    c->s = s;
    c->call = call;
    c->kind = kind;
    snprintf(c->id, sizeof(c->id), "%s", id);
    scn_path(s, c->json_path, sizeof(c->json_path), "incidents", id, ".json");
    scn_path(s, c->text_path, sizeof(c->text_path), "incidents", id, ".txt");
    c->req.data = c;
    int r = uv_queue_work(s->d->loop, &c->req, scn_read_work, scn_read_done);
    if (r < 0) {
        free(c);
        control_reply_error(call, r, "cannot read the report: %s", err_str(r));
        return;
    }
    c->next = s->cmds;
    s->cmds = c;
    s->pending++;
}

static const char *scn_arg_id(CtlCall *call, const json_t *args)
{
    const char *id = json_string_value(json_object_get(args, "run"));
    if (!scn_id_valid(id)) {
        control_reply_error(call, DR_EBADARG, "a run id is required (see drctl runs)");
        return NULL;
    }
    return id;
}

static void scn_cmd_run(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    const char *id = scn_arg_id(call, args);
    if (!id)
        return;
    ScnRun *run = scn_find_live(s, id);
    if (run) {
        control_reply_ok(call, scn_run_json(run));
        return;
    }
    scn_read_report(s, call, id, SCN_READ_RUN);
}

static void scn_cmd_approve(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    const char *id = scn_arg_id(call, args);
    if (!id)
        return;
    ScnRun *run = s->active && strcmp(s->active->id, id) == 0 ? s->active : NULL;
    if (!run) {
        control_reply_error(call, DR_EBADARG, "run '%s' is not the active run", id);
        return;
    }
    FsmStatus st = fsm_run_status(run->fsm);
    int step_state = fsm_run_state(run->fsm);
    if (fsm_approve(run->fsm) < 0) {
        control_reply_error(call, DR_ESTATE, "run %s is %s: nothing to approve", id, fsm_status_name(st));
        return;
    }
    const PeerCred *pc = control_call_peer(call);
    events_emit(s->d->events, SEV_WARNING, "scenario.approve", NULL, false, NULL, "run %s approved by uid %ld (was %s in '%s')",
                id, pc ? (long)pc->uid : -1L, fsm_status_name(st), fsm_state_name(run->def->table, step_state));
    control_reply_ok(call, json_pack("{s:s,s:s}", "run", id, "status", fsm_status_name(fsm_run_status(run->fsm))));
}

static void scn_cmd_abort(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    const char *id = scn_arg_id(call, args);
    const char *reason = json_string_value(json_object_get(args, "reason"));
    char why[600];
    if (!id)
        return;
    ScnRun *run = s->active && strcmp(s->active->id, id) == 0 ? s->active : NULL;
    if (!run) {
        control_reply_error(call, DR_EBADARG, "run '%s' is not the active run", id);
        return;
    }
    const PeerCred *pc = control_call_peer(call);
    snprintf(why, sizeof(why), "aborted by uid %ld%s%s", pc ? (long)pc->uid : -1L, reason ? ": " : "", reason ? reason : "");
    scn_run_ref(run);
    int r = fsm_abort(run->fsm, why);
    if (r < 0)
        control_reply_error(call, DR_ESTATE, "run %s has already ended", id);
    else
        control_reply_ok(call, json_pack("{s:s,s:s}", "run", id, "status", "aborted"));
    scn_run_unref(run);
}

static void scn_cmd_incidents(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    json_t *list = json_array();
    (void)args;
    for (size_t i = json_array_size(s->history); i-- > 0;)
        json_array_append(list, json_array_get(s->history, i));
    control_reply_ok(call, json_pack("{s:o}", "incidents", list));
}

static void scn_cmd_incident(CtlCall *call, const json_t *args, void *data)
{
    const char *id = scn_arg_id(call, args);
    if (id)
        scn_read_report(data, call, id, SCN_READ_INCIDENT);
}

/* ---- life cycle ---- */

Scenarios *scenarios_new(Daemon *d)
{
    Scenarios *s = calloc(1, sizeof(*s));
    char err[256];
    if (!s)
        return NULL;
    s->d = d;
    s->history = json_array();
    s->loading = true; /* fail closed until scenarios_start has looked for unfinished runs */
    const char *crash = getenv("DRSUP_CRASH_AFTER_RECORD");
    if (crash && crash[0])
        s->crash_after_record = strtoull(crash, NULL, 10);
    for (size_t i = 0; i < sizeof(scn_defs) / sizeof(scn_defs[0]); i++)
        if (fsm_table_validate(scn_defs[i]->table, err, sizeof(err)) < 0) {
            log_crit("scenario", "scenario table '%s' is invalid: %s", scn_defs[i]->name, err);
            json_decref(s->history);
            free(s);
            return NULL;
        }
    CtlCommand cmds[] = {
        {"execute", true, scn_cmd_execute, s, "start a scenario run (scenario, dry_run, manual, reason)"},
        {"runs", false, scn_cmd_runs, s, "scenario runs: the active one and the finished ones"},
        {"run", false, scn_cmd_run, s, "one run's timeline (run)"},
        {"approve", true, scn_cmd_approve, s, "continue a run waiting at a gate or held after a restart (run)"},
        {"abort", true, scn_cmd_abort, s, "end a run; trading stays halted (run, reason)"},
        {"incidents", false, scn_cmd_incidents, s, "incident reports of finished runs"},
        {"incident", false, scn_cmd_incident, s, "one incident report, JSON and text (run)"},
    };
    if (control_register(d->control, cmds, sizeof(cmds) / sizeof(cmds[0])) < 0) {
        json_decref(s->history);
        free(s);
        return NULL;
    }
    if (d->venue)
        venue_set_resume_guard(d->venue, scn_resume_guard, s);
    return s;
}

int scenarios_apply_config(Scenarios *s, const Config *cfg)
{
    (void)s;
    (void)cfg; /* runs copy the configuration when they are created */
    return 0;
}

void scenarios_close(Scenarios *s, void (*closed_cb)(void *data), void *data)
{
    s->closing = true;
    s->closed_cb = closed_cb;
    s->closed_data = data;
    s->pending++; /* releasing runs below must not free `s` under this loop */
    if (s->d->venue)
        venue_set_resume_guard(s->d->venue, NULL, NULL);
    for (ScnCmd *c = s->cmds; c; c = c->next)
        if (c->call) {
            control_reply_error(c->call, DR_ECANCELED, "the daemon is stopping");
            c->call = NULL;
        }
    for (ScnRun *run = s->runs, *next; run; run = next) {
        next = run->next;
        if (run->waiter) {
            control_reply_error(run->waiter, DR_ECANCELED, "the daemon is stopping");
            run->waiter = NULL;
        }
        scn_run_ref(run);
        scn_run_release(run);
        next = run->next;
        scn_run_unref(run);
    }
    s->active = NULL;
    free(s->queued_scenario);
    free(s->queued_reason);
    s->queued_scenario = s->queued_reason = NULL;
    s->pending--;
    scn_maybe_closed(s);
}
