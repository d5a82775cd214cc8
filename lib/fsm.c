/*
 * fsm: the scenario engine's run loop: write-ahead protocol, attempts, timeouts, backoff, gates,
 * dry runs, abort and teardown (see fsm.h; resume and reports are in fsm_resume.c, tables in
 * fsm_table.c).
 */
#include "fsm_internal.h"

#include "backoff.h"
#include "clock.h"
#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- entering and leaving the engine (deferred teardown) ---- */

static void fsm_closed(uv_handle_t *h)
{
    FsmRun *run = h->data;
    for (size_t i = 0; i < run->nentries; i++)
        free(run->entries[i].message);
    free(run->entries);
    free(run->row_of);
    free(run->id);
    free(run->abort_reason);
    free(run->pending_msg);
    free(run->final_msg);
    free(run);
}

/* Detaches the call in flight: its completion will be ignored; the cancel hook is told. */
static void fsm_detach_call(FsmRun *run)
{
    FsmCall *c = run->call;
    if (!c)
        return;
    run->call = NULL;
    c->run = NULL;
    c->cancelled = true;
    if (c->row->cancel)
        c->row->cancel(c, run->opt.ctx); /* may call done(), which frees c */
}

static void fsm_teardown(FsmRun *run)
{
    if (run->closing || run->depth > 0)
        return;
    if (run->call) {
        run->depth++;
        fsm_detach_call(run);
        run->depth--;
    }
    uv_timer_stop(&run->timer);
    if (run->record_pending)
        return; /* fsm__recorded finishes the teardown */
    run->closing = true;
    uv_close((uv_handle_t *)&run->timer, fsm_closed);
}

void fsm__enter(FsmRun *run)
{
    run->depth++;
}

void fsm__leave(FsmRun *run)
{
    if (--run->depth == 0 && run->freeing)
        fsm_teardown(run);
}

void fsm_run_free(FsmRun *run)
{
    if (!run || run->freeing)
        return;
    run->freeing = true;
    fsm_teardown(run);
}

/* ---- notices, timeline ---- */

void fsm__notify(FsmRun *run, FsmNoticeKind kind, int row, int from, int to, int result,
                 const char *message)
{
    if (!run->opt.notify || run->freeing)
        return;
    const FsmRow *r = row >= 0 ? &run->t->rows[row] : NULL;
    FsmNotice n = {
        .kind = kind,
        .row = row,
        .step_name = r ? r->step_name : NULL,
        .sentence = r ? r->sentence : NULL,
        .from = from,
        .to = to,
        .attempt = run->attempt,
        .result = result,
        .message = message,
        .status = run->status,
    };
    run->opt.notify(run, &n, run->opt.notify_data);
}

FsmEntry *fsm__entry_open(FsmRun *run, int row, int64_t start_ms)
{
    FsmEntry *prev = fsm__entry_last(run, row);
    if (prev && !prev->outcome)
        fsm__entry_close(prev, start_ms, "interrupted", prev->attempts, NULL);
    if (run->nentries == run->centries) {
        size_t nc = run->centries ? run->centries * 2 : 8;
        FsmEntry *ne = realloc(run->entries, nc * sizeof(*ne));
        if (!ne)
            return NULL;
        run->entries = ne;
        run->centries = nc;
    }
    FsmEntry *e = &run->entries[run->nentries++];
    memset(e, 0, sizeof(*e));
    e->row = row;
    e->start_ms = start_ms;
    return e;
}

FsmEntry *fsm__entry_last(FsmRun *run, int row)
{
    for (size_t i = run->nentries; i > 0; i--)
        if (run->entries[i - 1].row == row)
            return &run->entries[i - 1];
    return NULL;
}

void fsm__entry_close(FsmEntry *e, int64_t end_ms, const char *outcome, unsigned attempts,
                      const char *message)
{
    if (!e)
        return;
    e->end_ms = end_ms;
    e->outcome = outcome;
    e->attempts = attempts;
    if (message) {
        free(e->message);
        e->message = strdup(message);
    }
}

static void fsm_set_str(char **slot, const char *s)
{
    free(*slot);
    *slot = s ? strdup(s) : NULL;
}

/* ---- durable records ---- */

void fsm__record(FsmRun *run, json_t *ev, FsmNext next)
{
    json_object_set_new(ev, "run", json_string(run->id));
    json_object_set_new(ev, "ts", json_integer(clock_wall_ms()));
    char *text = ev ? json_dumps(ev, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    json_decref(ev);
    run->record_pending = true;
    run->next = next;
    run->phase = FSM_PH_RECORD;
    if (!text) {
        fsm__recorded(run, -ENOMEM);
        return;
    }
    run->opt.record(run, text, fsm__recorded, run->opt.record_data);
    free(text); /* borrowed for the call only; run may be gone now: do not touch it */
}

static void fsm_finish_now(FsmRun *run, FsmStatus status)
{
    run->status = status;
    run->phase = FSM_PH_DONE;
    fsm__notify(run, FSM_NOTICE_FINISHED, -1, run->state, FSM_NO_STATE,
                status == FSM_RUN_SUCCEEDED ? 0 : DR_ECANCELED, run->final_msg);
}

/* Ends the run with status: records the end (unless dry run), then notifies FINISHED. */
void fsm__finish(FsmRun *run, FsmStatus status, const char *message)
{
    fsm_set_str(&run->final_msg, message);
    if (run->opt.mode == FSM_MODE_DRY_RUN) {
        fsm_finish_now(run, status);
        return;
    }
    run->end_status = status;
    json_t *ev = json_pack("{s:s, s:s, s:s, s:s?}", "ev", "end", "status", fsm_status_name(status),
                           "state", fsm_state_name(run->t, run->state), "message", message);
    fsm__record(run, ev, FSM_NEXT_END);
}

/* ---- stepping ---- */

static void fsm_timer_cb(uv_timer_t *timer);

static void fsm_start_timer(FsmRun *run, uint64_t ms)
{
    uv_timer_start(&run->timer, fsm_timer_cb, ms, 0);
}

/* Creates the call in flight for row and starts its timeout. NULL when out of memory. */
FsmCall *fsm__call_begin(FsmRun *run, int row, FsmCallKind kind)
{
    FsmCall *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->run = run;
    c->row = &run->t->rows[row];
    c->row_index = row;
    c->kind = kind;
    c->attempt = run->attempt;
    run->call = c;
    fsm_start_timer(run, run->t->rows[row].timeout_ms);
    return c;
}

void fsm__intent(FsmRun *run, int row)
{
    const FsmRow *r = &run->t->rows[row];
    run->row = row;
    run->attempt = 0;
    run->status = FSM_RUN_RUNNING;
    json_t *ev = json_pack("{s:s, s:i, s:s, s:s, s:s}", "ev", "intent", "row", row, "step",
                           r->step_name, "from", fsm_state_name(run->t, r->from), "to",
                           fsm_state_name(run->t, r->to));
    fsm__record(run, ev, FSM_NEXT_INTENT);
}

static void fsm_attempt(FsmRun *run)
{
    const FsmRow *r = &run->t->rows[run->row];
    run->attempt++;
    run->phase = FSM_PH_STEP;
    fsm__notify(run, FSM_NOTICE_STEP_STARTED, run->row, r->from, r->to, 0, NULL);
    if (run->freeing)
        return;
    FsmCall *c = fsm__call_begin(run, run->row, FSM_CALL_STEP);
    if (!c) {
        fsm__attempt_failed(run, -ENOMEM, "out of memory");
        return;
    }
    r->step(c, run->opt.ctx, fsm__step_done);
}

void fsm__attempt_failed(FsmRun *run, int result, const char *message)
{
    const FsmRow *r = &run->t->rows[run->row];
    if (run->attempt < r->attempts) {
        fsm__notify(run, FSM_NOTICE_STEP_RETRY, run->row, r->from, r->to, result, message);
        if (run->freeing)
            return;
        if (run->abort_requested) {
            fsm__entry_close(fsm__entry_last(run, run->row), clock_wall_ms(), "aborted",
                             run->attempt, message);
            fsm__finish(run, FSM_RUN_ABORTED, run->abort_reason);
            return;
        }
        run->phase = FSM_PH_BACKOFF;
        fsm_start_timer(run, backoff_ms(run->opt.backoff_initial_ms, run->opt.backoff_max_ms, run->attempt));
        return;
    }
    run->last_result = result;
    fsm_set_str(&run->pending_msg, message);
    json_t *ev = json_pack("{s:s, s:i, s:s, s:s?, s:i, s:s, s:s?}", "ev", "failed", "row",
                           run->row, "step", r->step_name, "state",
                           r->on_failure == FSM_NO_STATE ? NULL
                                                         : fsm_state_name(run->t, r->on_failure),
                           "attempts", (int)run->attempt, "code", err_name(result), "message",
                           message);
    fsm__record(run, ev, FSM_NEXT_FAILED);
}

void fsm__commit(FsmRun *run, const char *message, const char *outcome)
{
    const FsmRow *r = &run->t->rows[run->row];
    int to = r->to;
    if (outcome && *outcome) {
        to = fsm__branch_target(run->t, r->from, outcome);
        if (to == FSM_NO_STATE) {
            char msg[160];
            snprintf(msg, sizeof(msg), "step '%s' chose outcome '%s', which table '%s' does not list",
                     r->step_name, outcome, run->t->name);
            fsm__attempt_failed(run, DR_ESTATE, msg);
            return;
        }
    }
    run->commit_to = to;
    fsm_set_str(&run->pending_msg, message);
    json_t *ev = json_pack("{s:s, s:i, s:s, s:s, s:i, s:s?, s:s?}", "ev", "commit", "row", run->row,
                           "step", r->step_name, "state", fsm_state_name(run->t, to),
                           "attempts", (int)run->attempt, "message", message, "outcome",
                           outcome && *outcome ? outcome : NULL);
    fsm__record(run, ev, FSM_NEXT_COMMIT);
}

static void fsm_plan(FsmRun *run, int row)
{
    const FsmRow *r = &run->t->rows[row];
    run->row = row;
    run->attempt = 1;
    run->phase = FSM_PH_PLAN;
    if (!r->plan) {
        fsm__plan_done(run, 0, r->sentence);
        return;
    }
    FsmCall *c = fsm__call_begin(run, row, FSM_CALL_PLAN);
    if (!c) {
        fsm__finish(run, FSM_RUN_FAILED, "out of memory");
        return;
    }
    r->plan(c, run->opt.ctx, fsm__step_done);
}

void fsm__plan_done(FsmRun *run, int result, const char *message)
{
    const FsmRow *r = &run->t->rows[run->row];
    int64_t now = clock_wall_ms();
    FsmEntry *e = fsm__entry_open(run, run->row, now);
    if (result < 0) {
        fsm__entry_close(e, now, "failed", 1, message);
        fsm__finish(run, FSM_RUN_FAILED, message);
        return;
    }
    fsm__entry_close(e, now, "planned", 1, message ? message : r->sentence);
    fsm__notify(run, FSM_NOTICE_PLANNED, run->row, r->from, r->to, 0,
                message ? message : r->sentence);
    if (run->freeing)
        return;
    run->state = r->to;
    fsm__advance(run);
}

/* Moves the run forward from a settled state (no call, no record in flight). */
void fsm__advance(FsmRun *run)
{
    if (run->freeing)
        return;
    if (run->abort_requested) {
        fsm__finish(run, FSM_RUN_ABORTED, run->abort_reason);
        return;
    }
    FsmStateKind kind = run->t->states[run->state].kind;
    if (kind == FSM_STATE_SUCCESS) {
        fsm__finish(run, FSM_RUN_SUCCEEDED, NULL);
        return;
    }
    if (kind == FSM_STATE_FAILURE) {
        fsm__finish(run, FSM_RUN_FAILED, run->pending_msg);
        return;
    }
    if (kind == FSM_STATE_HANDOFF) {
        fsm__finish(run, FSM_RUN_HANDED_OFF, run->pending_msg);
        return;
    }
    int row = run->row_of[run->state];
    if (run->opt.mode == FSM_MODE_DRY_RUN) {
        fsm_plan(run, row);
        return;
    }
    const FsmRow *r = &run->t->rows[row];
    if (!run->gate_passed && (r->gate == FSM_GATE_OPERATOR ||
                              (run->opt.mode == FSM_MODE_MANUAL && (r->gate == FSM_GATE_APPROVAL || run->opt.gate_every_row)))) {
        run->row = row;
        run->phase = FSM_PH_GATE;
        run->status = FSM_RUN_WAITING_APPROVAL;
        fsm__notify(run, FSM_NOTICE_WAITING_APPROVAL, row, r->from, r->to, 0, r->sentence);
        return;
    }
    run->gate_passed = false;
    fsm__intent(run, row);
}

/* Completion of a step or a plan (the FsmDone given to them). */
void fsm__step_done(FsmCall *call, int result, const char *message)
{
    FsmRun *run = call->run;
    FsmCallKind kind = call->kind;
    char outcome[sizeof(call->outcome)];
    if (!run) { /* detached: timed out, aborted or freed; ignore */
        free(call);
        return;
    }
    memcpy(outcome, call->outcome, sizeof(outcome));
    run->call = NULL;
    free(call);
    fsm__enter(run);
    uv_timer_stop(&run->timer);
    if (kind == FSM_CALL_PLAN)
        fsm__plan_done(run, result, message);
    else if (result == 0)
        fsm__commit(run, message, outcome);
    else
        fsm__attempt_failed(run, result, message ? message : err_str(result));
    fsm__leave(run);
}

static void fsm_timer_cb(uv_timer_t *timer)
{
    FsmRun *run = timer->data;
    fsm__enter(run);
    char msg[64];
    switch (run->phase) {
    case FSM_PH_STEP:
        snprintf(msg, sizeof(msg), "timed out after %u ms", run->t->rows[run->row].timeout_ms);
        fsm_detach_call(run);
        if (!run->freeing)
            fsm__attempt_failed(run, -ETIMEDOUT, msg);
        break;
    case FSM_PH_PROBE:
        fsm_detach_call(run);
        if (!run->freeing)
            fsm__probe_answer(run, FSM_PROBE_UNKNOWN, "probe timed out", NULL);
        break;
    case FSM_PH_PLAN:
        fsm_detach_call(run);
        if (!run->freeing)
            fsm__plan_done(run, -ETIMEDOUT, "plan timed out");
        break;
    case FSM_PH_BACKOFF:
        fsm_attempt(run);
        break;
    default:
        break;
    }
    fsm__leave(run);
}

/* The engine's FsmRecorded: a record is durable (or failed). */
void fsm__recorded(FsmRun *run, int status)
{
    run->record_pending = false;
    fsm__enter(run);
    if (run->freeing)
        goto out;
    if (status < 0) {
        char msg[160];
        snprintf(msg, sizeof(msg), "cannot record the run's progress: %s", err_str(status));
        fsm__entry_close(run->row >= 0 ? fsm__entry_last(run, run->row) : NULL, clock_wall_ms(),
                         "failed", run->attempt, msg);
        fsm_set_str(&run->final_msg, msg);
        fsm_finish_now(run, FSM_RUN_FAILED);
        goto out;
    }
    const FsmRow *r = run->row >= 0 ? &run->t->rows[run->row] : NULL;
    int64_t now = clock_wall_ms();
    switch (run->next) {
    case FSM_NEXT_START:
        fsm__advance(run);
        break;
    case FSM_NEXT_INTENT:
        fsm__entry_open(run, run->row, now);
        if (run->abort_requested) {
            fsm__entry_close(fsm__entry_last(run, run->row), now, "aborted", 0, NULL);
            fsm__finish(run, FSM_RUN_ABORTED, run->abort_reason);
        } else {
            fsm_attempt(run);
        }
        break;
    case FSM_NEXT_COMMIT:
        fsm__entry_close(fsm__entry_last(run, run->row), now, "ok", run->attempt, run->pending_msg);
        run->state = run->commit_to;
        run->phase = FSM_PH_IDLE;
        fsm__notify(run, FSM_NOTICE_TRANSITION, run->row, r->from, run->commit_to, 0, run->pending_msg);
        fsm__advance(run);
        break;
    case FSM_NEXT_FAILED:
        fsm__entry_close(fsm__entry_last(run, run->row), now, "failed", run->attempt,
                         run->pending_msg);
        run->phase = FSM_PH_IDLE;
        if (r->on_failure != FSM_NO_STATE)
            run->state = r->on_failure;
        fsm__notify(run, FSM_NOTICE_STEP_FAILED, run->row, r->from, r->on_failure,
                    run->last_result, run->pending_msg);
        if (r->on_failure != FSM_NO_STATE)
            fsm__advance(run);
        else if (!run->freeing)
            fsm__finish(run, FSM_RUN_FAILED, run->pending_msg);
        break;
    case FSM_NEXT_END:
        fsm_finish_now(run, run->end_status);
        break;
    }
out:
    fsm__leave(run);
}

/* ---- public API ---- */

FsmRun *fsm_run_new(uv_loop_t *loop, const FsmTable *t, const FsmRunOptions *opt, int *ret_err,
                    char *err, size_t errlen)
{
    int r = fsm_table_validate(t, err, errlen);
    if (r == 0 && (!opt->id || !*opt->id || (opt->mode != FSM_MODE_DRY_RUN && !opt->record))) {
        if (err && errlen)
            snprintf(err, errlen, "run needs an id and a record function");
        r = DR_EBADARG;
    }
    if (r < 0) {
        if (ret_err)
            *ret_err = r;
        return NULL;
    }
    FsmRun *run = calloc(1, sizeof(*run));
    char *id = strdup(opt->id);
    int *row_of = malloc((size_t)t->state_count * sizeof(int));
    if (!run || !id || !row_of) {
        free(run);
        free(id);
        free(row_of);
        if (ret_err)
            *ret_err = -ENOMEM;
        return NULL;
    }
    run->loop = loop;
    run->t = t;
    run->opt = *opt;
    run->id = id;
    run->opt.id = id;
    run->row_of = row_of;
    if (!run->opt.backoff_initial_ms)
        run->opt.backoff_initial_ms = 500;
    if (!run->opt.backoff_max_ms)
        run->opt.backoff_max_ms = 30000;
    for (int s = 0; s < t->state_count; s++)
        run->row_of[s] = -1;
    for (int i = 0; i < t->row_count; i++)
        run->row_of[t->rows[i].from] = i;
    run->row = -1;
    run->state = 0;
    run->status = FSM_RUN_NEW;
    uv_timer_init(loop, &run->timer);
    run->timer.data = run;
    return run;
}

int fsm_run_start(FsmRun *run)
{
    if (run->status != FSM_RUN_NEW || run->freeing)
        return DR_ESTATE;
    run->status = FSM_RUN_RUNNING;
    fsm__enter(run);
    if (run->opt.mode == FSM_MODE_DRY_RUN) {
        fsm__advance(run);
    } else {
        json_t *ev = json_pack("{s:s, s:s, s:s}", "ev", "start", "scenario", run->t->name, "mode",
                               fsm_mode_name(run->opt.mode));
        fsm__record(run, ev, FSM_NEXT_START);
    }
    fsm__leave(run);
    return 0;
}

int fsm_approve(FsmRun *run)
{
    if (run->freeing || (run->phase != FSM_PH_GATE && run->phase != FSM_PH_HELD))
        return DR_ESTATE;
    fsm__enter(run);
    run->status = FSM_RUN_RUNNING;
    if (run->phase == FSM_PH_GATE) {
        run->gate_passed = true;
        fsm__advance(run);
    } else {
        fsm__intent(run, run->row);
    }
    fsm__leave(run);
    return 0;
}

int fsm_abort(FsmRun *run, const char *reason)
{
    if (run->freeing || run->status == FSM_RUN_NEW || run->phase == FSM_PH_DONE ||
        run->abort_requested || (run->phase == FSM_PH_RECORD && run->next == FSM_NEXT_END))
        return DR_ESTATE;
    fsm_set_str(&run->abort_reason, reason ? reason : "aborted by the operator");
    run->abort_requested = true;
    if (run->phase == FSM_PH_RECORD)
        return 0; /* acted on when the record is durable */
    fsm__enter(run);
    uv_timer_stop(&run->timer);
    if (run->phase == FSM_PH_STEP || run->phase == FSM_PH_BACKOFF || run->phase == FSM_PH_PROBE ||
        run->phase == FSM_PH_HELD)
        fsm__entry_close(fsm__entry_last(run, run->row), clock_wall_ms(), "aborted", run->attempt,
                         run->abort_reason);
    fsm_detach_call(run);
    if (!run->freeing)
        fsm__finish(run, FSM_RUN_ABORTED, run->abort_reason);
    fsm__leave(run);
    return 0;
}

FsmStatus fsm_run_status(const FsmRun *run)
{
    return run->status;
}

int fsm_run_state(const FsmRun *run)
{
    return run->state;
}

const char *fsm_run_id(const FsmRun *run)
{
    return run->id;
}

const FsmTable *fsm_run_table(const FsmRun *run)
{
    return run->t;
}

FsmRun *fsm_call_run(const FsmCall *call)
{
    return call->run;
}

const FsmRow *fsm_call_row(const FsmCall *call)
{
    return call->row;
}

unsigned fsm_call_attempt(const FsmCall *call)
{
    return call->attempt;
}

bool fsm_call_cancelled(const FsmCall *call)
{
    return call->cancelled;
}

void *fsm_call_get_data(const FsmCall *call)
{
    return call->data;
}

void fsm_call_set_data(FsmCall *call, void *data)
{
    call->data = data;
}

void fsm_call_set_outcome(FsmCall *call, const char *outcome)
{
    snprintf(call->outcome, sizeof(call->outcome), "%s", outcome ? outcome : "");
}
