/*
 * scenarios: scenario runs (see scenarios.h, scn_internal.h and docs/scenarios.md).
 *
 * Owns the runs: their ids, one journal per run (state_dir/runs/<id>.journal, appended on the
 * thread pool in order, the engine's write-ahead log), starting a run, the venue's resume guard
 * (trading resumes only through a run's own resume steps after its reconcile committed, and never
 * while a run is unfinished or runs are still being loaded), the events and status of every
 * transition, the end of a run, and the module's life cycle. The start-up scan and resumption of
 * unfinished runs live in scan.c, the control commands in commands.c, incident reports in
 * report.c.
 *
 * Test hook: DRSUP_CRASH_AFTER_RECORD=N makes the daemon SIGKILL itself right after the record
 * with sequence number N of a run's journal became durable (docs/engine.md);
 * DRSUP_CRASH_AFTER_EVENT=EV:NAME after the first record whose "ev" is EV and whose "step" (or,
 * for scn.context records, "key") is NAME: "intent:promote_standby", "scn.context:promotion".
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

#include "err.h"
#include "clock.h"
#include "log.h"
#include "pgconn.h"
#include "scenario/point_in_time_internal.h"
#include "scenario/scn_internal.h"

void scn_path(const Scenarios *s, char *out, size_t n, const char *sub, const char *id, const char *ext)
{
    snprintf(out, n, "%s/%s%s%s%s", s->core->cfg->state_dir, sub, id ? "/" : "", id ? id : "", ext ? ext : "");
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
    pgconn_follow_clear(&s->follow);
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
    if (run->own && run->own_ready && run->def->ctx_done)
        run->def->ctx_done(run);
    free(run->own);
    journal_free(run->journal);
    free(run->reason);
    json_decref(run->params);
    json_decref(run->ctx);
    json_decref(run->plan);
    config_scenario_free(&run->cfg);
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

/* Admin conninfo and the protected database's name, from the running configuration (the run keeps
 * what it derived). */
static int scn_run_databases(ScnRun *run, char *err, size_t errlen)
{
    int r = config_scenario_databases(run->core->cfg, run->database, sizeof(run->database), &run->admin_conninfo, err, errlen);
    if (r < 0)
        return r;
    /* after a promotion both follow the new primary when they name the old one (the run keeps them) */
    char *admin = pgconn_follow_apply(&run->s->follow, run->admin_conninfo, NULL);
    char *db = pgconn_follow_apply(&run->s->follow, run->db_conninfo, NULL);
    if (!admin || !db) {
        free(admin);
        free(db);
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    free(run->admin_conninfo);
    free(run->db_conninfo);
    run->admin_conninfo = admin;
    run->db_conninfo = db;
    return 0;
}

int scenarios_follow_primary(Scenarios *s, const char *from, const char *to)
{
    int r = pgconn_follow_set(&s->follow, from, to);
    return r < 0 ? r : 0;
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

ScnRun *scn_run_new(Scenarios *s, const ScenarioDef *def, const char *id, FsmMode mode, char *err, size_t errlen)
{
    ScnRun *run = calloc(1, sizeof(*run));
    int r;

    if (!run) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    run->s = s;
    run->core = s->core;
    run->caps = &s->caps;
    run->def = def;
    run->mode = mode;
    run->dry = mode == FSM_MODE_DRY_RUN;
    run->refs = 1;
    snprintf(run->id, sizeof(run->id), "%s", id);
    scn_tag_from_id(id, run->tag, sizeof(run->tag));
    run->ctx = json_object();
    run->next = s->runs;
    s->runs = run;
    const ConfigScenario *sc = config_scenario(s->core->cfg, def->name);
    if (!run->ctx || !sc || config_scenario_copy(sc, &run->cfg) < 0 ||
        config_backup_copy(&s->core->cfg->backup, &run->bcfg) < 0 || !(run->db_conninfo = strdup(s->core->cfg->database.conninfo))) {
        snprintf(err, errlen, "out of memory");
        scn_run_release(run);
        return NULL;
    }
    if (scn_run_databases(run, err, errlen) < 0) {
        scn_run_release(run);
        return NULL;
    }
    /* The scenario's own context: allocated here, filled by its ctx_init, released with the run. */
    if (def->ctx_size && !(run->own = calloc(1, def->ctx_size))) {
        snprintf(err, errlen, "out of memory");
        scn_run_release(run);
        return NULL;
    }
    if (def->ctx_init && def->ctx_init(run, err, errlen) < 0) {
        scn_run_release(run);
        return NULL;
    }
    run->own_ready = true;
    FsmRunOptions o = {.id = run->id,
                       .mode = mode,
                       .ctx = run,
                       .record = scn_record,
                       .record_data = run,
                       .notify = scn_notify,
                       .notify_data = run};
    run->fsm = fsm_run_new(s->core->loop, def->table, &o, &r, err, errlen);
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
    bool crash; /* DRSUP_CRASH_AFTER_EVENT names this record */
} ScnAppend;

/* Does the record `text` match DRSUP_CRASH_AFTER_EVENT (EV:NAME)? Only when the test hook is set. */
static bool scn_crash_matches(const char *spec, const char *text)
{
    const char *colon = spec ? strchr(spec, ':') : NULL;
    json_t *j = colon ? json_loads(text, 0, NULL) : NULL;
    const char *ev = json_string_value(json_object_get(j, "ev"));
    const char *name = json_string_value(json_object_get(j, ev && !strcmp(ev, "scn.context") ? "key" : "step"));
    bool m = ev && name && strlen(ev) == (size_t)(colon - spec) && !strncmp(spec, ev, strlen(ev)) &&
             !strcmp(colon + 1, name);
    json_decref(j);
    return m;
}

static void scn_appended(Journal *j, int status, uint64_t seq, void *data)
{
    ScnAppend *a = data;
    ScnRun *run = a->run;
    (void)j;
    if (status == 0 && ((run->s->crash_after_record && seq == run->s->crash_after_record) || a->crash)) {
        LogFields lf = {run->id, run->def->name, NULL};
        log_emit(LOG_CRIT, "scenario", &lf, "DRSUP_CRASH_AFTER_%s reached (record %llu): killing the daemon (test hook)",
                 a->crash ? "EVENT" : "RECORD", (unsigned long long)seq);
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
    const char *spec = getenv("DRSUP_CRASH_AFTER_EVENT");
    a->crash = spec && spec[0] && scn_crash_matches(spec, text);
    /* High availability: no record (so no step) without a valid lease; the new leader resumes. */
    if (!leader_acting(run->core->leader))
        return DR_ENOTLEADER;
    scn_run_ref(run);
    int r = journal_append_async(run->core->loop, run->journal, text, strlen(text), scn_appended, a);
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
    json_t *ev = json_pack("{s:s,s:s,s:I,s:s,s:o}", "ev", "scn.context", "run", run->id, "ts", (json_int_t)clock_wall_ms(),
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
    snprintf(out, n, "scenario:%s:%s", run->def->name, run->core->cfg->cluster);
}

static json_t *scn_details(const ScnRun *run, const FsmNotice *n)
{
    return json_pack("{s:s,s:s,s:s?,s:s,s:s?,s:i,s:s?}", "run", run->id, "scenario", run->def->name, "step",
                     n ? n->step_name : NULL, "state", fsm_state_name(run->def->table, fsm_run_state(run->fsm)),
                     "sentence", n ? n->sentence : NULL, "attempt", n ? (int)n->attempt : 0, "message",
                     n ? n->message : NULL);
}

/* ---- what a run does to its database, declared on the lease ---- */

static void scn_context_noted(ScnRun *run, int status, void *data)
{
    (void)data;
    if (status < 0) {
        LogFields lf = {run->id, run->def->name, NULL};
        log_emit(LOG_ERR, "scenario", &lf, "cannot journal the observations attributed to the run: %s", err_str(status));
    }
}

/* A declaration ended: say what was attributed to the run (an event of the run, so it is in its
 * log lines and `drctl watch`) and keep it in the run's context (the incident report shows it). */
static void scn_disturbance_ended(ScnRun *run, const LeaseDisturbance *d)
{
    LogFields lf = {run->id, run->def->name, d->step};
    int64_t now = clock_wall_ms();
    json_t *rec = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:s}", "database", d->database, "step", d->step, "what",
                            d->what, "declared_ms", (json_int_t)d->declared_ms, "ended_ms", (json_int_t)now,
                            "attributed", (json_int_t)d->count, "first_ms", (json_int_t)d->first_ms, "last_ms",
                            (json_int_t)d->last_ms, "last_error", d->last_error);
    events_emit_run(run->core->events, SEV_INFO, "scenario.disturbance", NULL, false, rec, &lf,
                    "run %s: '%s' is back in place; %llu probe failure%s during the run's own disturbance were "
                    "attributed to it, not paged%s%s",
                    run->id, d->database, (unsigned long long)d->count, d->count == 1 ? "" : "s",
                    d->count ? "; last: " : "", d->count ? d->last_error : "");
    if (!rec)
        return;
    const json_t *old = json_object_get(run->ctx, "attributed");
    json_t *arr = json_is_array(old) ? json_deep_copy(old) : json_array();
    json_array_append_new(arr, rec);
    scn_context_set(run, "attributed", arr, scn_context_noted, NULL);
}

/* Bring the lease's declaration for run's database in line with ScenarioDef.disturbs (ending: the
 * run finishes, whatever it declared ends). */
static void scn_disturbance_sync(ScnRun *run, bool ending)
{
    Lease *l = run->core->lease;
    char what[256] = "";
    unsigned kinds = 0;
    size_t n = 0;
    const LeaseDisturbance *cur = NULL, *have = NULL;

    if (run->dry)
        return;
    if (!ending && run->def->disturbs && lease_held(l))
        kinds = run->def->disturbs(run, run->running_step[0] ? run->running_step : NULL, what, sizeof(what));
    cur = lease_disturbances(l, &n);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(cur[i].database, run->database))
            have = &cur[i];
    if (kinds) {
        if (have && have->kinds == kinds && !strcmp(have->run, run->id) && !strcmp(have->what, what))
            return;
        LeaseDisturbance d;
        memset(&d, 0, sizeof(d));
        snprintf(d.database, sizeof(d.database), "%s", run->database);
        d.kinds = kinds;
        snprintf(d.run, sizeof(d.run), "%s", run->id);
        snprintf(d.scenario, sizeof(d.scenario), "%s", run->def->name);
        snprintf(d.step, sizeof(d.step), "%s",
                 run->running_step[0] ? run->running_step : fsm_state_name(run->def->table, fsm_run_state(run->fsm)));
        snprintf(d.what, sizeof(d.what), "%s", what);
        d.declared_ms = clock_wall_ms();
        bool was = have != NULL;
        LogFields lf = {run->id, run->def->name, d.step};
        int r = lease_expect(l, &d);
        if (r < 0)
            log_emit(LOG_ERR, "scenario", &lf, "cannot declare on the recovery lease what the run does (%s): %s; "
                     "probe failures it causes will page", what, err_str(r));
        else if (!was)
            log_emit(LOG_NOTICE, "scenario", &lf, "declared on the recovery lease: %s; probe failures of that kind "
                     "are attributed to the run, any other failure pages as usual", what);
        return;
    }
    LeaseDisturbance ended;
    if (lease_expect_end(l, run->database, &ended))
        scn_disturbance_ended(run, &ended);
}

bool scn_run_resumed(const ScnRun *run)
{
    return run->resumed;
}

void scn_update_status(Scenarios *s)
{
    Component *c = status_component(s->core->status, "recovery");
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
    /* The lease tells the standby restore (it stops while a run holds it, and inspects again after:
     * the run may have taken the standby), retention and the detector. Once the active run's live
     * step committed, trading is live and the run only watches (post_resume_watch): the run
     * changes no database any more, so the lease is let go and the detector halts on what it
     * sees again, as it must while trading is live. */
    if (s->active && !s->loading && scn_run_resumed(s->active)) {
        lease_release(s->core->lease);
    } else if (s->active || s->loading) {
        char holder[128];
        snprintf(holder, sizeof(holder), s->active ? "run %s" : "%s", s->active ? s->active->id : "start-up scan");
        if (lease_take(s->core->lease, holder) < 0)
            log_error("scenario", "cannot record the recovery lease's holder: out of memory");
        if (s->active)
            scn_disturbance_sync(s->active, false);
    } else {
        lease_release(s->core->lease);
    }
    status_changed(s->core->status);
}


/* The incident kind a handed-off run names, NULL if none. */
static const char *scn_handoff_kind(const ScnRun *run)
{
    return scenario_handoff_incident(run->def, fsm_state_name(run->def->table, fsm_run_state(run->fsm)));
}

/*
 * The scenario condition (scenario:<name>:<cluster>) opens when a run starts and resolves when its
 * cause, trading halted by an unrecovered incident, is gone: the run succeeds; a later run of the
 * same scenario succeeds (same key); trading goes live again by an operator's resume after the
 * run failed or was aborted (scn_on_event); an operator resolves it (drctl alerts resolve); or a
 * run hands off to another scenario, whose own condition carries the incident on.
 */
static size_t scn_registry_index(const ScenarioDef *def)
{
    for (size_t i = 0; i < scenario_count(); i++)
        if (scenario_at(i) == def)
            return i;
    return SIZE_MAX;
}

static void scn_note_outcome(Scenarios *s, const ScnRun *run, FsmStatus st)
{
    size_t i = scn_registry_index(run->def);
    if (i >= sizeof(s->failed_open) / sizeof(s->failed_open[0]))
        return;
    s->failed_open[i] = st == FSM_RUN_FAILED || st == FSM_RUN_ABORTED;
}

/* Trading resumed live with no run active: the conditions failed runs left open are over. */
static void scn_on_event(const Event *ev, void *data)
{
    Scenarios *s = data;
    const char *mode = json_string_value(json_object_get(ev->details, "mode"));

    if (s->closing || s->active || s->loading || strcmp(ev->kind, "venue.resume") || !mode || strcmp(mode, "live"))
        return;
    for (size_t i = 0; i < scenario_count() && i < sizeof(s->failed_open) / sizeof(s->failed_open[0]); i++) {
        if (!s->failed_open[i])
            continue;
        s->failed_open[i] = false;
        char cond[256];
        snprintf(cond, sizeof(cond), "scenario:%s:%s", scenario_at(i)->name, s->core->cfg->cluster);
        events_emit(s->core->events, SEV_INFO, "scenario.end", cond, true, NULL,
                    "trading is live again after the last %s run failed (%s): the incident is over",
                    scenario_at(i)->name, ev->summary);
    }
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
    if (n->kind == FSM_NOTICE_STEP_STARTED)
        snprintf(run->running_step, sizeof(run->running_step), "%s", n->step_name ? n->step_name : "");
    else if (n->kind != FSM_NOTICE_STEP_RETRY)
        run->running_step[0] = '\0';
    det = scn_details(run, n);
    scn_condition(run, cond, sizeof(cond));
    switch (n->kind) {
    /* One event per notice; the event's own log line carries RUN=, SCENARIO=, STEP=. */
    case FSM_NOTICE_STEP_STARTED:
        events_emit_run(s->core->events, SEV_INFO, "scenario.step", NULL, false, det, &lf,
                        "run %s: step '%s' started (attempt %u): %s", run->id, n->step_name, n->attempt, n->sentence);
        break;
    case FSM_NOTICE_STEP_RETRY:
        events_emit_run(s->core->events, SEV_WARNING, "scenario.step", NULL, false, det, &lf,
                        "run %s: %s attempt %u failed, retrying: %s", run->id, n->step_name, n->attempt,
                        n->message ? n->message : err_str(n->result));
        break;
    case FSM_NOTICE_TRANSITION:
        events_emit_run(s->core->events, SEV_INFO, "scenario.transition", NULL, false, det, &lf, "run %s: %s: %s",
                        run->id, n->sentence, n->message ? n->message : "done");
        if (run->def->live_step && n->step_name && strcmp(n->step_name, run->def->live_step) == 0 && !run->resumed &&
            n->to >= 0 && n->to < run->def->table->state_count &&
            run->def->table->states[n->to].kind == FSM_STATE_ACTIVE) {
            /* Trading is live again and the run goes on (its post-resume watch): the detector
             * watches afresh (what it saw during the recovery was the run's own doing), and halts
             * on its own from now on. A live step that ends the run changes nothing here: the end
             * of the run does the same (and a hand-off keeps the lease for the next run). */
            run->resumed = true;
            if (s->caps.detector)
                detector_run_ended(s->caps.detector, run->id, true);
        }
        break;
    case FSM_NOTICE_STEP_FAILED:
        events_emit_run(s->core->events, SEV_CRITICAL, "scenario.step", NULL, false, det, &lf,
                        "run %s: step %s FAILED, %s: %s", run->id, n->step_name,
                        run->resumed ? "trading is being halted again" : "trading stays halted",
                        n->message ? n->message : err_str(n->result));
        break;
    case FSM_NOTICE_WAITING_APPROVAL:
        events_emit_run(s->core->events, SEV_WARNING, "scenario.gate", NULL, false, det, &lf,
                        "run %s waits for approval before %s (drctl approve %s / drctl abort %s)", run->id,
                        n->step_name, run->id, run->id);
        break;
    case FSM_NOTICE_HELD:
        events_emit_run(s->core->events, SEV_CRITICAL, "scenario.held", NULL, false, det, &lf,
                        "run %s held: step %s was in doubt after a restart (%s); trading stays halted; drctl approve "
                        "%s runs it again, drctl abort %s ends the run",
                        run->id, n->step_name, n->message ? n->message : "no probe answer", run->id, run->id);
        break;
    case FSM_NOTICE_FINISHED: {
        FsmStatus st = fsm_run_status(run->fsm);
        /* What the run declared ends before its end is told (the summary belongs to the run). */
        scn_disturbance_sync(run, true);
        scn_note_outcome(s, run, st);
        if (st == FSM_RUN_SUCCEEDED)
            events_emit_run(s->core->events, SEV_INFO, "scenario.end", cond, true, det, &lf,
                            "run %s of %s succeeded%s", run->id, run->def->name,
                            run->def->live_step ? ": trading is live" : " (trading was not touched)");
        else if (st == FSM_RUN_HANDED_OFF)
            events_emit_run(s->core->events, SEV_WARNING, "scenario.end", NULL, false, det, &lf,
                            "run %s of %s hands off in state '%s' (incident %s); trading stays halted: %s", run->id,
                            run->def->name, fsm_state_name(run->def->table, fsm_run_state(run->fsm)),
                            scn_handoff_kind(run) ? scn_handoff_kind(run) : "?", n->message ? n->message : "-");
        else
            events_emit_run(s->core->events, st == FSM_RUN_ABORTED ? SEV_ERROR : SEV_CRITICAL, "scenario.end", NULL,
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

static void scn_hand_off(ScnRun *run)
{
    Scenarios *s = run->s;
    const char *kind = scn_handoff_kind(run);
    const ScenarioDef *to = kind ? scenario_for_incident(kind) : NULL;
    char reason[512], err[512], id[96];
    json_t *j = fsm_run_to_json(run->fsm);
    const char *msg = j ? json_string_value(json_object_get(j, "message")) : NULL;

    snprintf(reason, sizeof(reason), "handed off by run %s: %s", run->id, msg ? msg : run->reason ? run->reason : "");
    json_decref(j);
    json_t *params = json_pack("{s:s,s:s}", "incident", kind ? kind : "", "handed_off_by", run->id);
    int r = to ? scn_trigger_params(s, to->name, reason, run->detected_ms, run->mode, params, NULL, id, sizeof(id), err,
                                    sizeof(err))
               : -ENOENT;
    json_decref(params);
    if (r < 0)
        events_emit(s->core->events, SEV_CRITICAL, "scenario.handoff", NULL, false, NULL,
                    "run %s handed off to incident '%s' but %s; trading stays halted, operator needed", run->id,
                    kind ? kind : "?", to ? err : "no scenario handles it");
    else
        log_notice("scenario", "run %s handed off to %s: run %s", run->id, to->name, id);
    if (r >= 0 && to != run->def) {
        /* The new run's own condition carries the incident on. */
        char cond[256];
        LogFields lf = {run->id, run->def->name, NULL};
        scn_condition(run, cond, sizeof(cond));
        events_emit_run(s->core->events, SEV_INFO, "scenario.end", cond, true, NULL, &lf,
                        "run %s handed off to run %s (%s), which carries the incident on", run->id, id, to->name);
    }
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
        if (!run->dry && !s->closing && fsm_run_status(run->fsm) == FSM_RUN_HANDED_OFF) {
            /* The run found it is the wrong scenario: the right one starts now, before the lease
             * is let go, with the same detection time (its RTO counts from the first sight). */
            scn_hand_off(run);
        } else if (!run->dry && s->caps.detector) {
            /* The detector watches afresh: a new corruption after this run starts a new one; the
             * corruption this run replaced is resolved when it succeeded. */
            detector_run_ended(s->caps.detector, run->id, fsm_run_status(run->fsm) == FSM_RUN_SUCCEEDED);
        }
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
        events_emit(run->core->events, SEV_CRITICAL, "scenario.start", NULL, false, NULL,
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
            events_emit(run->core->events, SEV_CRITICAL, "scenario.start", NULL, false, NULL,
                        "run %s cannot start: %s; trading is NOT being recovered", run->id, o->err[0] ? o->err : err_str(o->result));
        journal_free(o->j);
        scn_run_release(run);
    } else {
        run->journal = o->j;
        json_t *det = json_pack("{s:s,s:I,s:s,s:s}", "reason", run->reason ? run->reason : "", "detected_ms",
                                (json_int_t)run->detected_ms, "scenario", run->def->name, "mode",
                                fsm_mode_name(run->mode));
        if (run->params)
            json_object_set(det, "params", run->params);
        scn_context_set(run, "detection", det, scn_started_recorded, NULL);
    }
    free(o);
    scn_run_unref(run);
}

static void scn_make_id(const ScenarioDef *def, int64_t now_ms, char *out, size_t n)
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
    return scn_trigger_params(s, scenario, reason, detected_ms, mode, NULL, waiter, ret_id, id_len, err, errlen);
}

const char *scn_ctx_str(const ScnRun *run, const char *obj, const char *key)
{
    return json_string_value(json_object_get(json_object_get(run->ctx, obj), key));
}

int64_t scn_ctx_int(const ScnRun *run, const char *obj, const char *key)
{
    const json_t *v = json_object_get(json_object_get(run->ctx, obj), key);
    return json_is_integer(v) ? json_integer_value(v) : -1;
}

bool scn_may_resume_in(const ScnRun *run, int reconciled, int shadow)
{
    int s = fsm_run_state(run->fsm);
    return run->resume_allowed && (s == reconciled || s == shadow);
}

const json_t *scn_run_param(const ScnRun *run, const char *key)
{
    const json_t *p = run->params ? run->params : json_object_get(json_object_get(run->ctx, "detection"), "params");
    return json_object_get(p, key);
}

int scn_trigger_params(Scenarios *s, const char *scenario, const char *reason, int64_t detected_ms, FsmMode mode,
                       const json_t *params, CtlCall *waiter, char *ret_id, size_t id_len, char *err, size_t errlen)
{
    const ScenarioDef *def = scenario_find(scenario);
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
    scn_make_id(def, clock_wall_ms(), id, sizeof(id));
    ScnRun *run = scn_run_new(s, def, id, mode, err, errlen);
    if (!run)
        return DR_ECONFIG;
    run->reason = strdup(reason && reason[0] ? reason : "unspecified");
    run->params = params ? json_deep_copy(params) : NULL;
    run->detected_ms = detected_ms > 0 ? detected_ms : clock_wall_ms();
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
    events_emit(s->core->events, SEV_CRITICAL, "scenario.start", cond, false, det, "scenario %s started (run %s, %s): %s",
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
    int r = uv_queue_work(s->core->loop, &o->req, scn_open_work, scn_open_done);
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
    return scenarios_trigger_params(s, scenario, reason, detected_ms, NULL, ret_run_id, run_id_len);
}

int scenarios_trigger_params(Scenarios *s, const char *scenario, const char *reason, int64_t detected_ms,
                             const json_t *params, char *ret_run_id, size_t run_id_len)
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
        json_decref(s->queued_params);
        s->queued_params = params ? json_deep_copy(params) : NULL;
        if (ret_run_id && run_id_len)
            ret_run_id[0] = '\0';
        return -EINPROGRESS;
    }
    const ConfigScenario *sc = scenario ? config_scenario(s->core->cfg, scenario) : NULL;
    int r = scn_trigger_params(s, scenario, reason, detected_ms, sc && sc->manual ? FSM_MODE_MANUAL : FSM_MODE_AUTOMATIC,
                               params, NULL, ret_run_id, run_id_len, err, sizeof(err));
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

/* ---- incidents ---- */

/* The detector confirmed an incident: start the scenario that handles its kind. */
static int scn_on_incident(const char *kind, const char *reason, int64_t detected_ms, const json_t *params,
                           char *ret_run, size_t run_len, void *data)
{
    const ScenarioDef *def = scenario_for_incident(kind);
    if (!def) {
        log_error("scenario", "no scenario handles incidents of kind '%s'", kind);
        return -ENOENT;
    }
    return scenarios_trigger_params(data, def->name, reason, detected_ms, params, ret_run, run_len);
}

/* ---- life cycle ---- */

Scenarios *scenarios_new(Core *d, const ScenarioCaps *caps)
{
    Scenarios *s = calloc(1, sizeof(*s));
    char err[256];
    if (!s)
        return NULL;
    s->core = d;
    s->caps = *caps;
    s->history = json_array();
    s->loading = true; /* fail closed until scenarios_start has looked for unfinished runs */
    const char *crash = getenv("DRSUP_CRASH_AFTER_RECORD");
    if (crash && crash[0])
        s->crash_after_record = strtoull(crash, NULL, 10);
    if (scenario_registry_validate(err, sizeof(err)) < 0) {
            log_crit("scenario", "the scenario registry is invalid: %s", err);
            json_decref(s->history);
            free(s);
            return NULL;
        }
    if (s->caps.wal) /* recover --timestamp T: a point_in_time run */
        wal_set_recover_handler(s->caps.wal, pitr__cmd_recover, s);
    if (scn_commands_register(s) < 0) {
        json_decref(s->history);
        free(s);
        return NULL;
    }
    if (lease_take(d->lease, "start-up scan") < 0) {
        json_decref(s->history);
        free(s);
        return NULL;
    }
    if (scn_metrics_register(s) < 0)
        log_error("scenario", "cannot add the runs' metrics: out of memory; /metrics goes on without them");
    if (s->caps.venue)
        venue_set_resume_guard(s->caps.venue, scn_resume_guard, s);
    if (s->caps.detector)
        detector_on_incident(s->caps.detector, scn_on_incident, s);
    s->sub_id = events_subscribe(d->events, scn_on_event, s);
    if (s->sub_id < 0)
        log_error("scenario", "cannot listen to trading resumes: out of memory; a failed run's condition is "
                  "resolved only by a later run or by hand (drctl alerts resolve)");
    return s;
}

/* Each scenario's configure hook on its section of cfg (caps NULL: nothing to check against). */
static int scn_configure(const ScenarioCaps *caps, const Config *cfg, bool apply, char *err, size_t errlen)
{
    static const ScenarioCaps none;
    for (size_t i = 0; i < scenario_count(); i++) {
        const ScenarioDef *def = scenario_at(i);
        const ConfigScenario *sc = config_scenario(cfg, def->name);
        if (!def->configure)
            continue;
        if (!sc) {
            snprintf(err, errlen, "%s: its configuration section is not registered", def->name);
            return DR_ECONFIG;
        }
        int r = def->configure(caps ? caps : &none, cfg, sc, apply, err, errlen);
        if (r < 0)
            return r;
    }
    return 0;
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
    int r = config_scenario_databases(cfg, database, sizeof(database), &admin, msg, sizeof(msg));
    free(admin);
    if (r < 0) {
        snprintf(err, errlen, "%s", r == -ENOMEM ? err_str(r) : msg);
        return r;
    }
    return scn_configure(s ? &s->caps : NULL, cfg, false, err, errlen);
}

int scenarios_apply_config(Scenarios *s, const Config *cfg)
{
    char err[512];
    /* Runs copy their section when they are created; what lives between runs is configured here. */
    int r = scn_configure(&s->caps, cfg, true, err, sizeof(err));
    if (r < 0)
        log_error("scenario", "%s", err);
    return r;
}

void scenarios_close(Scenarios *s, void (*closed_cb)(void *data), void *data)
{
    s->closing = true;
    s->closed_cb = closed_cb;
    s->closed_data = data;
    s->pending++; /* releasing runs below must not free `s` under this loop */
    if (s->sub_id > 0)
        events_unsubscribe(s->core->events, s->sub_id);
    s->sub_id = 0;
    if (s->caps.venue)
        venue_set_resume_guard(s->caps.venue, NULL, NULL);
    if (s->caps.detector)
        detector_on_incident(s->caps.detector, NULL, NULL);
    if (s->caps.wal)
        wal_set_recover_handler(s->caps.wal, NULL, NULL);
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
    json_decref(s->queued_params);
    s->queued_params = NULL;
    s->pending--;
    scn_maybe_closed(s);
}
