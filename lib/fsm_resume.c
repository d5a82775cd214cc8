/*
 * fsm_resume: rebuilding a run from its recorded events after a crash (probe, re-run or hold the
 * step in doubt), and the run's JSON report (see fsm.h).
 */
#include "fsm_internal.h"

#include "clock.h"
#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fsm_resume_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fsm_resume_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return DR_ECORRUPT;
}

int fsm_event_run_id(const char *event_json, char *buf, size_t buflen, bool *ret_end)
{
    json_t *ev = json_loads(event_json, 0, NULL);
    const char *id = ev ? json_string_value(json_object_get(ev, "run")) : NULL;
    const char *kind = ev ? json_string_value(json_object_get(ev, "ev")) : NULL;
    int r = DR_ECORRUPT;
    if (id && kind && strlen(id) < buflen) {
        memcpy(buf, id, strlen(id) + 1);
        if (ret_end)
            *ret_end = strcmp(kind, "end") == 0;
        r = 0;
    }
    json_decref(ev);
    return r;
}

static FsmStatus fsm_status_parse(const char *s, bool *ok)
{
    static const FsmStatus ends[] = {FSM_RUN_SUCCEEDED, FSM_RUN_FAILED, FSM_RUN_ABORTED, FSM_RUN_HANDED_OFF};
    for (size_t i = 0; i < sizeof(ends) / sizeof(ends[0]); i++)
        if (s && strcmp(s, fsm_status_name(ends[i])) == 0) {
            *ok = true;
            return ends[i];
        }
    *ok = false;
    return FSM_RUN_FAILED;
}

/* Applies one recorded event to the run being rebuilt. *inflight: row with an intent and no
 * commit yet, or -1. */
static int fsm_resume_apply(FsmRun *run, size_t i, json_t *ev, int *inflight, bool *ended,
                            char *err, size_t errlen)
{
    const FsmTable *t = run->t;
    const char *kind = json_string_value(json_object_get(ev, "ev"));
    const char *id = json_string_value(json_object_get(ev, "run"));
    json_int_t ts = json_integer_value(json_object_get(ev, "ts"));
    const char *msg = json_string_value(json_object_get(ev, "message"));
    if (!kind || !id || strcmp(id, run->id) != 0)
        return fsm_resume_fail(err, errlen, "event %zu is not an event of run '%s'", i, run->id);
    if (*ended)
        return fsm_resume_fail(err, errlen, "event %zu ('%s') follows the end of the run", i, kind);
    if (i == 0 || strcmp(kind, "start") == 0) {
        const char *scenario = json_string_value(json_object_get(ev, "scenario"));
        const char *mode = json_string_value(json_object_get(ev, "mode"));
        if (i != 0 || strcmp(kind, "start") != 0)
            return fsm_resume_fail(err, errlen, "event %zu: a run starts with one 'start' event",
                                   i);
        if (!scenario || strcmp(scenario, t->name) != 0)
            return fsm_resume_fail(err, errlen, "run '%s' is of scenario '%s', not '%s'", run->id,
                                   scenario ? scenario : "?", t->name);
        if (mode && strcmp(mode, fsm_mode_name(FSM_MODE_MANUAL)) == 0)
            run->opt.mode = FSM_MODE_MANUAL;
        else if (mode && strcmp(mode, fsm_mode_name(FSM_MODE_AUTOMATIC)) == 0)
            run->opt.mode = FSM_MODE_AUTOMATIC;
        else
            return fsm_resume_fail(err, errlen, "run '%s': unknown mode '%s'", run->id,
                                   mode ? mode : "?");
        return 0;
    }
    if (strcmp(kind, "end") == 0) {
        bool ok;
        run->end_status = fsm_status_parse(json_string_value(json_object_get(ev, "status")), &ok);
        if (!ok)
            return fsm_resume_fail(err, errlen, "event %zu: bad end status", i);
        free(run->final_msg);
        run->final_msg = msg ? strdup(msg) : NULL;
        *ended = true;
        return 0;
    }
    json_t *jrow = json_object_get(ev, "row");
    const char *step = json_string_value(json_object_get(ev, "step"));
    json_int_t r = json_integer_value(jrow);
    if (!json_is_integer(jrow) || r < 0 || r >= t->row_count || !step ||
        strcmp(step, t->rows[r].step_name) != 0)
        return fsm_resume_fail(err, errlen, "event %zu ('%s'): row %lld '%s' is not in table '%s'",
                               i, kind, (long long)r, step ? step : "?", t->name);
    const FsmRow *row = &t->rows[r];
    if (strcmp(kind, "intent") == 0) {
        if (row->from != run->state || (*inflight >= 0 && *inflight != (int)r))
            return fsm_resume_fail(err, errlen, "event %zu: intent of '%s' in state '%s'", i,
                                   step, fsm_state_name(t, run->state));
        *inflight = (int)r;
        run->row = (int)r;
        fsm__entry_open(run, (int)r, (int64_t)ts);
        return 0;
    }
    bool commit = strcmp(kind, "commit") == 0;
    if (!commit && strcmp(kind, "failed") != 0)
        return fsm_resume_fail(err, errlen, "event %zu: unknown event '%s'", i, kind);
    if (*inflight != (int)r)
        return fsm_resume_fail(err, errlen, "event %zu: %s of '%s' without its intent", i, kind,
                               step);
    unsigned attempts = (unsigned)json_integer_value(json_object_get(ev, "attempts"));
    fsm__entry_close(fsm__entry_last(run, (int)r), (int64_t)ts, commit ? "ok" : "failed",
                     attempts, msg);
    int to = row->to;
    if (commit) {
        /* The commit names the state it led to: the row's own, or one of its branches. */
        const char *state = json_string_value(json_object_get(ev, "state"));
        const char *outcome = json_string_value(json_object_get(ev, "outcome"));
        if (outcome)
            to = fsm__branch_target(t, row->from, outcome);
        if (to == FSM_NO_STATE || !state || strcmp(state, fsm_state_name(t, to)) != 0)
            return fsm_resume_fail(err, errlen, "event %zu: commit of '%s' to state '%s' (outcome '%s') "
                                   "does not match table '%s'", i, step, state ? state : "?",
                                   outcome ? outcome : "", t->name);
    }
    *inflight = -1;
    free(run->pending_msg);
    run->pending_msg = msg ? strdup(msg) : NULL;
    if (commit)
        run->state = to;
    else if (row->on_failure != FSM_NO_STATE)
        run->state = row->on_failure;
    else
        run->row = -2; /* the run failed; its end may not be recorded yet */
    return 0;
}

static void fsm_hold(FsmRun *run, const char *why)
{
    const FsmRow *r = &run->t->rows[run->row];
    fsm__entry_close(fsm__entry_last(run, run->row), clock_wall_ms(), "in_doubt", 0, why);
    run->phase = FSM_PH_HELD;
    run->status = FSM_RUN_HELD;
    fsm__notify(run, FSM_NOTICE_HELD, run->row, r->from, r->to, 0, why);
}

/* After a probe (or without one): decide what to do with the step in doubt. */
void fsm__probe_answer(FsmRun *run, FsmProbeAnswer answer, const char *message, const char *outcome)
{
    const FsmRow *r = &run->t->rows[run->row];
    char buf[256];
    /* A branching step's "yes" must say which way it went; without that it is not known. */
    if (answer == FSM_PROBE_YES && fsm__has_branches(run->t, r->from) && (!outcome || !*outcome))
        answer = FSM_PROBE_UNKNOWN;
    if (answer == FSM_PROBE_YES) {
        snprintf(buf, sizeof(buf), "already done before the restart%s%s", message ? ": " : "",
                 message ? message : "");
        fsm__commit(run, buf, outcome);
    } else if (answer == FSM_PROBE_NO || r->idempotent) {
        fsm__intent(run, run->row); /* certainly not done, or safe to repeat: run it again */
    } else {
        snprintf(buf, sizeof(buf),
                 "step '%s' was in progress at a restart, is not idempotent and %s: an operator "
                 "must approve running it again, or abort",
                 r->step_name, r->probe ? "its probe could not tell whether it took effect"
                                        : "has no probe");
        fsm_hold(run, buf);
    }
}

static void fsm_probe_done(FsmCall *call, FsmProbeAnswer answer, const char *message)
{
    FsmRun *run = call->run;
    char outcome[sizeof(call->outcome)];
    if (!run) {
        free(call);
        return;
    }
    memcpy(outcome, call->outcome, sizeof(outcome));
    run->call = NULL;
    free(call);
    fsm__enter(run);
    uv_timer_stop(&run->timer);
    fsm__probe_answer(run, answer, message, outcome);
    fsm__leave(run);
}

int fsm_run_resume(FsmRun *run, const char *const *events, size_t n, char *err, size_t errlen)
{
    if (run->status != FSM_RUN_NEW || run->freeing || run->opt.mode == FSM_MODE_DRY_RUN)
        return DR_ESTATE;
    if (n == 0)
        return fsm_resume_fail(err, errlen, "run '%s' has no events", run->id);
    int inflight = -1;
    bool ended = false;
    for (size_t i = 0; i < n; i++) {
        json_t *ev = json_loads(events[i], 0, NULL);
        if (!ev)
            return fsm_resume_fail(err, errlen, "event %zu of run '%s' is not JSON", i, run->id);
        int r = fsm_resume_apply(run, i, ev, &inflight, &ended, err, errlen);
        json_decref(ev);
        if (r < 0)
            return r;
    }
    if (ended) {
        run->status = run->end_status;
        run->phase = FSM_PH_DONE;
        return 0;
    }
    run->status = FSM_RUN_RUNNING;
    fsm__enter(run);
    if (run->row == -2) { /* a final failure was recorded, its end was not */
        run->row = -1;
        fsm__finish(run, FSM_RUN_FAILED, run->pending_msg);
    } else if (inflight >= 0) {
        const FsmRow *r = &run->t->rows[inflight];
        run->row = inflight;
        run->attempt = 0;
        if (r->probe) {
            run->phase = FSM_PH_PROBE;
            FsmCall *c = fsm__call_begin(run, inflight, FSM_CALL_PROBE);
            if (!c)
                fsm__probe_answer(run, FSM_PROBE_UNKNOWN, "out of memory", NULL);
            else
                r->probe(c, run->opt.ctx, fsm_probe_done);
        } else {
            fsm__probe_answer(run, FSM_PROBE_UNKNOWN, NULL, NULL);
        }
    } else {
        fsm__advance(run);
    }
    fsm__leave(run);
    return 0;
}

json_t *fsm_run_to_json(const FsmRun *run)
{
    const FsmTable *t = run->t;
    json_t *steps = json_array();
    for (size_t i = 0; steps && i < run->nentries; i++) {
        const FsmEntry *e = &run->entries[i];
        const FsmRow *r = &t->rows[e->row];
        json_array_append_new(
            steps, json_pack("{s:i, s:s, s:s, s:s, s:s, s:I, s:o, s:s, s:i, s:s?}", "row", e->row,
                             "step", r->step_name, "from", fsm_state_name(t, r->from), "to",
                             fsm_state_name(t, r->to), "sentence", r->sentence, "start_ms",
                             (json_int_t)e->start_ms, "end_ms",
                             e->outcome ? json_integer(e->end_ms) : json_null(), "outcome",
                             e->outcome ? e->outcome : "running", "attempts", (int)e->attempts,
                             "message", e->message));
    }
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s?, s:o}", "run", run->id, "scenario", t->name,
                     "mode", fsm_mode_name(run->opt.mode), "status", fsm_status_name(run->status),
                     "state", fsm_state_name(t, run->state), "message", run->final_msg, "steps",
                     steps);
}
