/*
 * scenarios: scenario runs (see scenarios.h, scn_internal.h and docs/scenarios.md).
 *
 * Owns the runs: their ids, one journal per run (state_dir/runs/<id>.journal, appended on the
 * thread pool in order, the engine's write-ahead log), starting a run, the venue's resume guard
 * (trading resumes only through a run's own resume steps after its reconcile committed, and never
 * while a run is unfinished or runs are still being loaded), the events and status of every
 * transition, the end of a run, and the module's life cycle. The start-up scan and resumption of
 * unfinished runs live in scn_scan.c, the control commands in scn_commands.c, incident reports in
 * scn_report.c.
 *
 * Test hook: DRSUP_CRASH_AFTER_RECORD=N makes the daemon SIGKILL itself right after the record
 * with sequence number N of a run's journal became durable (docs/engine.md).
 */
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

#include "core/daemon.h"
#include "detect/detector.h"
#include "err.h"
#include "log.h"
#include "pgconn.h"
#include "scenario/scn_internal.h"
#include "cap/standby.h"
#include "cap/venue/venue.h"

static const ScnDef *const scn_defs[] = {&scn_corruption_def};

int64_t scn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void scn_path(const Scenarios *s, char *out, size_t n, const char *sub, const char *id, const char *ext)
{
    snprintf(out, n, "%s/%s%s%s%s", s->d->cfg->state_dir, sub, id ? "/" : "", id ? id : "", ext ? ext : "");
}

bool scn_id_valid(const char *id)
{
    if (!id || !id[0] || strlen(id) > 90)
        return false;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || *p == '-'))
            return false;
    return true;
}

void scn_maybe_closed(Scenarios *s)
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
void scn_run_release(ScnRun *run)
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

int scenarios_databases(const Config *cfg, char *database, size_t dblen, char **ret_admin, char *err, size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(cfg->database.conninfo, &perr);
    const char *dbname = cfg->scenarios.database;
    size_t cap = 1024, len = 0;
    char *ci = NULL;

    *ret_admin = NULL;
    if (!opts) {
        snprintf(err, errlen, "cannot parse database.conninfo");
        PQfreemem(perr);
        return DR_ECONFIG;
    }
    if (!cfg->scenarios.admin_conninfo)
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
    snprintf(database, dblen, "%s", dbname);
    PQconninfoFree(opts);
    if (asprintf(ret_admin, "%s dbname=postgres",
                 cfg->scenarios.admin_conninfo ? cfg->scenarios.admin_conninfo : ci ? ci : "") < 0)
        *ret_admin = NULL;
    free(ci);
    return *ret_admin ? 0 : -ENOMEM;
}

/* Admin conninfo and the protected database's name, from the configuration the run copied. */
static int scn_run_databases(ScnRun *run, char *err, size_t errlen)
{
    Config view = *run->d->cfg;
    view.scenarios = run->cfg;
    int r = scenarios_databases(&view, run->database, sizeof(run->database), &run->admin_conninfo, err, errlen);
    if (r < 0)
        return r;
    snprintf(run->db_damaged, sizeof(run->db_damaged), "%s_damaged_%s", run->database, run->tag);
    snprintf(run->db_restored, sizeof(run->db_restored), "%s_restore_%s", run->database, run->tag);
    standby_dbname(run->database, run->db_standby, sizeof(run->db_standby));
    return 0;
}

const ScnDef *scn_def_find(const char *name)
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

ScnRun *scn_run_new(Scenarios *s, const ScnDef *def, const char *id, FsmMode mode, char *err, size_t errlen)
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

void scn_update_status(Scenarios *s)
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
    /* A run started (the standby restore stops) or ended (it may have taken the standby). */
    standby_kick(s->d->standby);
}


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
    /* One event per notice; the event's own log line carries RUN=, SCENARIO=, STEP=. */
    case FSM_NOTICE_STEP_STARTED:
        events_emit_run(s->d->events, SEV_INFO, "scenario.step", NULL, false, det, &lf,
                        "run %s: step '%s' started (attempt %u): %s", run->id, n->step_name, n->attempt, n->sentence);
        break;
    case FSM_NOTICE_STEP_RETRY:
        events_emit_run(s->d->events, SEV_WARNING, "scenario.step", NULL, false, det, &lf,
                        "run %s: %s attempt %u failed, retrying: %s", run->id, n->step_name, n->attempt,
                        n->message ? n->message : err_str(n->result));
        break;
    case FSM_NOTICE_TRANSITION:
        events_emit_run(s->d->events, SEV_INFO, "scenario.transition", NULL, false, det, &lf, "run %s: %s: %s",
                        run->id, n->sentence, n->message ? n->message : "done");
        break;
    case FSM_NOTICE_STEP_FAILED:
        events_emit_run(s->d->events, SEV_CRITICAL, "scenario.step", NULL, false, det, &lf,
                        "run %s: step %s FAILED, trading stays halted: %s", run->id, n->step_name,
                        n->message ? n->message : err_str(n->result));
        break;
    case FSM_NOTICE_WAITING_APPROVAL:
        events_emit_run(s->d->events, SEV_WARNING, "scenario.gate", NULL, false, det, &lf,
                        "run %s waits for approval before %s (drctl approve %s / drctl abort %s)", run->id,
                        n->step_name, run->id, run->id);
        break;
    case FSM_NOTICE_HELD:
        events_emit_run(s->d->events, SEV_CRITICAL, "scenario.held", NULL, false, det, &lf,
                        "run %s held: step %s was in doubt after a restart (%s); trading stays halted; drctl approve "
                        "%s runs it again, drctl abort %s ends the run",
                        run->id, n->step_name, n->message ? n->message : "no probe answer", run->id, run->id);
        break;
    case FSM_NOTICE_FINISHED: {
        FsmStatus st = fsm_run_status(run->fsm);
        if (st == FSM_RUN_SUCCEEDED)
            events_emit_run(s->d->events, SEV_INFO, "scenario.end", cond, true, det, &lf,
                            "run %s of %s succeeded: trading is live", run->id, run->def->name);
        else
            events_emit_run(s->d->events, st == FSM_RUN_ABORTED ? SEV_ERROR : SEV_CRITICAL, "scenario.end", NULL,
                            false, det, &lf, "run %s of %s %s in state '%s'; trading stays halted: %s", run->id,
                            run->def->name, fsm_status_name(st),
                            fsm_state_name(run->def->table, fsm_run_state(run->fsm)), n->message ? n->message : "-");
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

void scn_finished(ScnRun *run)
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

int scn_trigger(Scenarios *s, const char *scenario, const char *reason, int64_t detected_ms, FsmMode mode,
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
    if (scn_commands_register(s) < 0) {
        json_decref(s->history);
        free(s);
        return NULL;
    }
    if (d->venue)
        venue_set_resume_guard(d->venue, scn_resume_guard, s);
    return s;
}

int scenarios_check_config(const Scenarios *s, const Config *cfg, char *err, size_t errlen)
{
    char database[64], msg[512], red[512], *admin = NULL;

    (void)s;
    if (cfg->scenarios.admin_conninfo) {
        int r = pgconn_check_conninfo(cfg->scenarios.admin_conninfo, msg, sizeof(msg));
        if (r < 0) {
            log_redact_conninfo(cfg->scenarios.admin_conninfo, red, sizeof(red));
            snprintf(err, errlen, "cannot use scenarios.admin_conninfo '%s': %s", red, msg[0] ? msg : err_str(r));
            return r;
        }
    }
    /* A run started later would fail on this; refuse it now, while the operator is looking. */
    int r = scenarios_databases(cfg, database, sizeof(database), &admin, msg, sizeof(msg));
    free(admin);
    if (r < 0)
        snprintf(err, errlen, "%s", r == -ENOMEM ? err_str(r) : msg);
    return r;
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
    scn_commands_cancel(s);
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
