/*
 * Unit tests for lib/fsm: a toy recovery scenario of five rows whose steps complete on uv timers
 * and act on a toy "world". Happy path (write-ahead order checked inside the steps and the
 * notifications), retries, failure branch, run failure, timeouts with late completions ignored,
 * manual gates with approve/abort, abort mid-step, dry run, record failure, free from a callback,
 * crash at EVERY journal boundary (before and after each record is durable) followed by resume,
 * table validation errors, dot output, a run backed by the real lib/journal; and a second toy
 * whose diagnosis step chooses an outcome (branch, hand-off, unknown outcome, resume, probe).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "err.h"
#include "fsm.h"
#include "journal.h"

enum { S_DETECTED, S_HALTED, S_RESTORED, S_VALIDATED, S_LIVE, S_ROLLED_BACK, S_STAYED_HALTED, NS };
enum { R_HALT, R_RESTORE, R_VALIDATE, R_RESUME, R_PUT_BACK, NR };

#define MAXEV 64

typedef struct World {
    uv_loop_t loop;
    FsmRun *run;
    /* scripted behaviour per row */
    int fail_first[NR];      /* the first N executions fail */
    unsigned delay_ms[NR];   /* completion delay (default 1) */
    unsigned slow_first_ms[NR]; /* delay of the first execution only, when set */
    bool use_cancel;
    /* observations */
    int exec[NR];            /* side effects applied (successful executions) */
    int calls[NR];           /* step invocations */
    int after_commit[NR];    /* side effect applied although the row's commit was durable */
    int not_write_ahead;     /* a step started or a transition was reported too early */
    int cancels;
    int plans;
    int notices[FSM_NOTICE_FINISHED + 1];
    char sentences[256];
    /* in-memory durable journal */
    char *events[MAXEV];
    size_t nevents;
    size_t acked;            /* events whose `then` has been called with success */
    bool committed[NR];
    bool sync_record;
    int fail_record_at;      /* -1, or index of the record that fails */
    int crash_at;            /* -1, or record index at which the process "dies" */
    bool crash_before;       /* crash before that record is durable (else after) */
    bool crashed;
    int records_after_crash;
    bool free_on_transition;
    char outcome[64];        /* what branch_step chooses ("" : none) */
    bool probe_names_outcome;
    int finished;
    bool loop_open;
} World;

static World w;

/* ---- the toy steps ---- */

typedef struct ToyOp {
    uv_timer_t timer;
    FsmCall *call;
    FsmDone done;
    int row;
    bool finished;
} ToyOp;

static void toy_closed(uv_handle_t *h)
{
    free(h->data);
}

static void toy_fire(uv_timer_t *t)
{
    ToyOp *op = t->data;
    int row = op->row;
    int n = ++w.calls[row];
    int result = 0;
    if (n <= w.fail_first[row]) {
        result = -EIO;
    } else {
        w.exec[row]++;
        if (w.committed[row])
            w.after_commit[row]++;
    }
    op->finished = true;
    uv_close((uv_handle_t *)&op->timer, toy_closed);
    op->done(op->call, result, result ? "toy failure" : "toy done");
}

static bool last_event_is(const char *kind, int row)
{
    if (w.nevents == 0 || w.acked != w.nevents)
        return false;
    char want[64];
    snprintf(want, sizeof(want), "\"ev\":\"%s\"", kind);
    char wrow[32];
    snprintf(wrow, sizeof(wrow), "\"row\":%d,", row);
    const char *e = w.events[w.nevents - 1];
    return strstr(e, want) && strstr(e, wrow);
}

static void toy_step(FsmCall *call, void *ctx, FsmDone done)
{
    assert_ptr_equal(ctx, &w);
    const FsmRow *r = fsm_call_row(call);
    int row = (int)(r - fsm_run_table(fsm_call_run(call))->rows);
    /* write ahead: this step's intent is durable before it runs */
    if (fsm_call_attempt(call) == 1 && !last_event_is("intent", row))
        w.not_write_ahead++;
    ToyOp *op = calloc(1, sizeof(*op));
    op->call = call;
    op->done = done;
    op->row = row;
    op->timer.data = op;
    fsm_call_set_data(call, op);
    unsigned delay = w.delay_ms[row] ? w.delay_ms[row] : 1;
    if (w.slow_first_ms[row] && w.calls[row] == 0 && fsm_call_attempt(call) == 1)
        delay = w.slow_first_ms[row];
    uv_timer_init(&w.loop, &op->timer);
    uv_timer_start(&op->timer, toy_fire, delay, 0);
}

static void toy_cancel(FsmCall *call, void *ctx)
{
    (void)ctx;
    assert_true(fsm_call_cancelled(call));
    assert_null(fsm_call_run(call));
    if (!w.use_cancel)
        return;
    ToyOp *op = fsm_call_get_data(call);
    if (!op || op->finished)
        return;
    w.cancels++;
    op->finished = true;
    uv_close((uv_handle_t *)&op->timer, toy_closed);
    op->done(call, DR_ECANCELED, "cancelled");
}

static void toy_probe_restore(FsmCall *call, void *ctx, FsmProbeDone done)
{
    (void)ctx;
    done(call, w.exec[R_RESTORE] > 0 ? FSM_PROBE_YES : FSM_PROBE_NO, "restored database found");
}

static void toy_plan(FsmCall *call, void *ctx, FsmDone done)
{
    (void)ctx;
    w.plans++;
    char msg[64];
    snprintf(msg, sizeof(msg), "would %s", fsm_call_row(call)->step_name);
    done(call, w.fail_first[R_VALIDATE] == 99 ? DR_EBADARG : 0, msg);
}

static const FsmState states[NS] = {
    [S_DETECTED] = {"detected", FSM_STATE_ACTIVE},
    [S_HALTED] = {"halted", FSM_STATE_ACTIVE},
    [S_RESTORED] = {"restored", FSM_STATE_ACTIVE},
    [S_VALIDATED] = {"validated", FSM_STATE_ACTIVE},
    [S_LIVE] = {"live", FSM_STATE_SUCCESS},
    [S_ROLLED_BACK] = {"rolled_back", FSM_STATE_ACTIVE},
    [S_STAYED_HALTED] = {"stayed_halted", FSM_STATE_FAILURE},
};

static const FsmRow rows[NR] = {
    [R_HALT] = {S_DETECTED, S_HALTED, "halt_trading", "trading is halted", toy_step, NULL, toy_plan,
                toy_cancel, 100, 3, true, FSM_GATE_NONE, FSM_NO_STATE},
    [R_RESTORE] = {S_HALTED, S_RESTORED, "restore_database", "the database is restored", toy_step,
                   toy_probe_restore, toy_plan, toy_cancel, 100, 1, false, FSM_GATE_NONE,
                   S_ROLLED_BACK},
    [R_VALIDATE] = {S_RESTORED, S_VALIDATED, "validate", "the restored database is valid",
                    toy_step, NULL, NULL, toy_cancel, 100, 2, true, FSM_GATE_NONE, S_ROLLED_BACK},
    [R_RESUME] = {S_VALIDATED, S_LIVE, "resume_trading", "trading is live again", toy_step, NULL,
                  toy_plan, toy_cancel, 100, 1, false, FSM_GATE_APPROVAL, FSM_NO_STATE},
    [R_PUT_BACK] = {S_ROLLED_BACK, S_STAYED_HALTED, "put_back_original",
                    "the original database is back, trading stays halted", toy_step, NULL, NULL,
                    toy_cancel, 100, 1, true, FSM_GATE_NONE, FSM_NO_STATE},
};

static const FsmTable table = {"toy_corruption", states, NS, rows, NR, NULL, 0};

/* A second toy: a database that is down is diagnosed; the diagnosis chooses where the run goes
 * (back up, hand off to the corruption scenario, or give up). */
enum { B_DETECTED, B_HALTED, B_UP, B_LIVE, B_HANDED_OFF, B_GAVE_UP, NBS };
enum { BR_HALT, BR_DIAGNOSE, BR_RESUME, NBR };

static void branch_step(FsmCall *call, void *ctx, FsmDone done)
{
    if (w.outcome[0])
        fsm_call_set_outcome(call, w.outcome);
    toy_step(call, ctx, done);
}

static void branch_probe(FsmCall *call, void *ctx, FsmProbeDone done)
{
    (void)ctx;
    if (w.probe_names_outcome && w.outcome[0])
        fsm_call_set_outcome(call, w.outcome);
    done(call, w.exec[BR_DIAGNOSE] > 0 ? FSM_PROBE_YES : FSM_PROBE_NO, "diagnosis found");
}

static const FsmState bstates[NBS] = {
    [B_DETECTED] = {"detected", FSM_STATE_ACTIVE},
    [B_HALTED] = {"halted", FSM_STATE_ACTIVE},
    [B_UP] = {"up", FSM_STATE_ACTIVE},
    [B_LIVE] = {"live", FSM_STATE_SUCCESS},
    [B_HANDED_OFF] = {"handed_to_corruption", FSM_STATE_HANDOFF},
    [B_GAVE_UP] = {"gave_up", FSM_STATE_FAILURE},
};

static const FsmRow brows[NBR] = {
    [BR_HALT] = {B_DETECTED, B_HALTED, "halt_trading", "trading is halted", toy_step, NULL, NULL, toy_cancel,
                 100, 1, true, FSM_GATE_NONE, FSM_NO_STATE},
    [BR_DIAGNOSE] = {B_HALTED, B_UP, "diagnose", "the server is up and its data intact", branch_step,
                     branch_probe, NULL, toy_cancel, 100, 2, true, FSM_GATE_NONE, FSM_NO_STATE},
    [BR_RESUME] = {B_UP, B_LIVE, "resume_trading", "trading is live again", toy_step, NULL, NULL, toy_cancel,
                   100, 1, true, FSM_GATE_NONE, FSM_NO_STATE},
};

static const FsmBranch bbranches[] = {
    {B_HALTED, "corrupted", B_HANDED_OFF},
    {B_HALTED, "gone", B_GAVE_UP},
};

static const FsmTable btable = {"toy_down", bstates, NBS, brows, NBR, bbranches, 2};

/* ---- the in-memory journal and notifications ---- */

typedef struct PendingRecord {
    uv_timer_t timer;
    FsmRun *run;
    FsmRecorded then;
    int status;
} PendingRecord;

static void record_fire(uv_timer_t *t)
{
    PendingRecord *p = t->data;
    if (p->status == 0)
        w.acked++;
    p->then(p->run, p->status);
    uv_close((uv_handle_t *)&p->timer, toy_closed);
}

static void mem_record(FsmRun *run, const char *ev, FsmRecorded then, void *data)
{
    assert_ptr_equal(data, &w);
    if (w.crashed)
        w.records_after_crash++;
    int idx = (int)w.nevents;
    int status = 0;
    if (idx == w.fail_record_at)
        status = -EIO;
    bool crash = !w.crashed && idx == w.crash_at;
    if (status == 0 && !(crash && w.crash_before)) {
        assert_true(w.nevents < MAXEV);
        w.events[w.nevents++] = strdup(ev);
        int row = -1;
        const char *p = strstr(ev, "\"row\":");
        if (p)
            row = atoi(p + 6);
        if (strstr(ev, "\"ev\":\"commit\"") && row >= 0)
            w.committed[row] = true;
    }
    if (crash) {
        /* the process dies: the run is dropped; its record callback, if it ever comes, must be
         * harmless */
        w.crashed = true;
        fsm_run_free(run);
        w.run = NULL;
        status = DR_ECANCELED;
    }
    if (w.sync_record && !crash) {
        if (status == 0)
            w.acked++;
        then(run, status);
        return;
    }
    PendingRecord *pr = calloc(1, sizeof(*pr));
    pr->run = run;
    pr->then = then;
    pr->status = status;
    pr->timer.data = pr;
    uv_timer_init(&w.loop, &pr->timer);
    uv_timer_start(&pr->timer, record_fire, 0, 0);
}

static void notify(FsmRun *run, const FsmNotice *n, void *data)
{
    assert_ptr_equal(data, &w);
    w.notices[n->kind]++;
    if (n->kind == FSM_NOTICE_TRANSITION) {
        /* persist first, report second */
        if (!last_event_is("commit", n->row))
            w.not_write_ahead++;
        strncat(w.sentences, n->sentence, sizeof(w.sentences) - strlen(w.sentences) - 2);
        strcat(w.sentences, ";");
        if (w.free_on_transition) {
            fsm_run_free(run);
            w.run = NULL;
        }
    }
    if (n->kind == FSM_NOTICE_FINISHED)
        w.finished++;
}

static void world_close(void);

static void world_reset(void)
{
    if (w.loop_open)
        world_close();
    for (size_t i = 0; i < w.nevents; i++)
        free(w.events[i]);
    memset(&w, 0, sizeof(w));
    w.fail_record_at = -1;
    w.crash_at = -1;
    w.use_cancel = true;
    assert_int_equal(uv_loop_init(&w.loop), 0);
    w.loop_open = true;
}

static int setup(void **state)
{
    (void)state;
    memset(&w, 0, sizeof(w));
    world_reset();
    return 0;
}

static void world_close(void)
{
    if (w.run)
        fsm_run_free(w.run);
    w.run = NULL;
    if (!w.loop_open)
        return;
    assert_int_equal(uv_run(&w.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&w.loop), 0);
    w.loop_open = false;
}

static int teardown(void **state)
{
    (void)state;
    for (size_t i = 0; i < w.nevents; i++)
        free(w.events[i]);
    w.nevents = 0;
    if (w.loop_open) { /* a failed test: close what is left */
        uv_run(&w.loop, UV_RUN_DEFAULT);
        uv_loop_close(&w.loop);
        w.loop_open = false;
    }
    return 0;
}

static FsmRunOptions options(FsmMode mode)
{
    FsmRunOptions o = {
        .id = "run-1",
        .mode = mode,
        .ctx = &w,
        .record = mem_record,
        .record_data = &w,
        .notify = notify,
        .notify_data = &w,
        .backoff_initial_ms = 1,
        .backoff_max_ms = 4,
    };
    return o;
}

static FsmRun *new_run_of(const FsmTable *t, FsmMode mode)
{
    FsmRunOptions o = options(mode);
    int r = 0;
    char err[256];
    FsmRun *run = fsm_run_new(&w.loop, t, &o, &r, err, sizeof(err));
    if (!run)
        fail_msg("fsm_run_new: %s", err);
    w.run = run;
    return run;
}

static FsmRun *new_run(FsmMode mode)
{
    return new_run_of(&table, mode);
}

/* Runs the loop until the run settles (finished, gate, held) or nothing is left to do. */
static void run_until_settled(void)
{
    while (uv_run(&w.loop, UV_RUN_ONCE)) {
        if (!w.run)
            continue;
        FsmStatus s = fsm_run_status(w.run);
        if (s == FSM_RUN_WAITING_APPROVAL || s == FSM_RUN_HELD)
            break;
    }
}

static size_t count_events(const char *kind)
{
    char want[64];
    snprintf(want, sizeof(want), "\"ev\":\"%s\"", kind);
    size_t n = 0;
    for (size_t i = 0; i < w.nevents; i++)
        n += strstr(w.events[i], want) != NULL;
    return n;
}

static void assert_json_status(FsmRun *run, const char *status, size_t nsteps)
{
    json_t *j = fsm_run_to_json(run);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "status")), status);
    assert_string_equal(json_string_value(json_object_get(j, "run")), "run-1");
    assert_string_equal(json_string_value(json_object_get(j, "scenario")), "toy_corruption");
    assert_int_equal(json_array_size(json_object_get(j, "steps")), nsteps);
    json_decref(j);
}

/* ---- tests ---- */

static void test_happy_path(void **state)
{
    (void)state;
    for (int sync = 0; sync < 2; sync++) {
        if (sync)
            world_reset();
        w.sync_record = sync;
        FsmRun *run = new_run(FSM_MODE_AUTOMATIC);
        assert_int_equal(fsm_run_status(run), FSM_RUN_NEW);
        assert_int_equal(fsm_run_start(run), 0);
        assert_int_equal(fsm_run_start(run), DR_ESTATE);
        run_until_settled();
        assert_int_equal(fsm_run_status(run), FSM_RUN_SUCCEEDED);
        assert_int_equal(fsm_run_state(run), S_LIVE);
        for (int r = R_HALT; r <= R_RESUME; r++)
            assert_int_equal(w.exec[r], 1);
        assert_int_equal(w.exec[R_PUT_BACK], 0);
        assert_int_equal(w.not_write_ahead, 0);
        assert_int_equal(w.notices[FSM_NOTICE_TRANSITION], 4);
        assert_int_equal(w.notices[FSM_NOTICE_STEP_STARTED], 4);
        assert_int_equal(w.finished, 1);
        assert_string_equal(w.sentences, "trading is halted;the database is restored;the restored "
                                         "database is valid;trading is live again;");
        /* start, 4 x (intent, commit), end */
        assert_int_equal(w.nevents, 10);
        assert_non_null(strstr(w.events[0], "\"ev\":\"start\""));
        assert_non_null(strstr(w.events[0], "\"scenario\":\"toy_corruption\""));
        assert_non_null(strstr(w.events[9], "\"status\":\"succeeded\""));
        assert_int_equal(count_events("intent"), 4);
        assert_int_equal(count_events("commit"), 4);
        json_t *j = fsm_run_to_json(run);
        json_t *s0 = json_array_get(json_object_get(j, "steps"), 0);
        assert_string_equal(json_string_value(json_object_get(s0, "step")), "halt_trading");
        assert_string_equal(json_string_value(json_object_get(s0, "outcome")), "ok");
        assert_string_equal(json_string_value(json_object_get(s0, "message")), "toy done");
        assert_true(json_integer_value(json_object_get(s0, "end_ms")) >=
                    json_integer_value(json_object_get(s0, "start_ms")));
        json_decref(j);
        assert_json_status(run, "succeeded", 4);
        assert_int_equal(fsm_approve(run), DR_ESTATE);
        assert_int_equal(fsm_abort(run, "late"), DR_ESTATE);
        world_close();
    }
}

static void test_retries_then_success(void **state)
{
    (void)state;
    w.fail_first[R_HALT] = 2;
    FsmRun *run = new_run(FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_SUCCEEDED);
    assert_int_equal(w.calls[R_HALT], 3);
    assert_int_equal(w.notices[FSM_NOTICE_STEP_RETRY], 2);
    assert_int_equal(count_events("intent"), 4); /* retries share one intent */
    assert_non_null(strstr(w.events[2], "\"attempts\":3"));
    world_close();
}

static void test_failure_branch(void **state)
{
    (void)state;
    w.fail_first[R_VALIDATE] = 5; /* both attempts fail */
    FsmRun *run = new_run(FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_FAILED);
    assert_int_equal(fsm_run_state(run), S_STAYED_HALTED);
    assert_int_equal(w.calls[R_VALIDATE], 2);
    assert_int_equal(w.exec[R_PUT_BACK], 1);
    assert_int_equal(w.exec[R_RESUME], 0);
    assert_int_equal(w.notices[FSM_NOTICE_STEP_FAILED], 1);
    assert_int_equal(count_events("failed"), 1);
    assert_non_null(strstr(w.events[w.nevents - 1], "\"status\":\"failed\""));
    assert_json_status(run, "failed", 4);
    world_close();
}

static void test_failure_without_branch_fails_run(void **state)
{
    (void)state;
    w.fail_first[R_HALT] = 3;
    FsmRun *run = new_run(FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_FAILED);
    assert_int_equal(fsm_run_state(run), S_DETECTED);
    assert_int_equal(w.exec[R_RESTORE], 0);
    json_t *j = fsm_run_to_json(run);
    assert_string_equal(json_string_value(json_object_get(j, "message")), "toy failure");
    json_decref(j);
    world_close();
}

static void test_timeout(void **state)
{
    (void)state;
    /* restore never finishes in time: cancelled, then the failure branch */
    w.delay_ms[R_RESTORE] = 300;
    FsmRun *run = new_run(FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_FAILED);
    assert_int_equal(fsm_run_state(run), S_STAYED_HALTED);
    assert_int_equal(w.cancels, 1);
    assert_int_equal(w.exec[R_RESTORE], 0);
    assert_non_null(strstr(w.events[4], "timed out after 100 ms"));
    world_close();

    /* without a cancel hook: the first attempt of validate is late; its completion, arriving
     * after the second attempt committed, is ignored */
    world_reset();
    w.use_cancel = false;
    w.slow_first_ms[R_VALIDATE] = 250;
    run = new_run(FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_SUCCEEDED);
    assert_int_equal(w.notices[FSM_NOTICE_STEP_RETRY], 1);
    assert_int_equal(w.notices[FSM_NOTICE_TRANSITION], 4);
    world_close(); /* the late timer still fires and is ignored */
    assert_int_equal(w.calls[R_VALIDATE], 2);
    assert_int_equal(w.finished, 1);
}

static void test_manual_gates(void **state)
{
    (void)state;
    FsmRun *run = new_run(FSM_MODE_MANUAL);
    fsm_run_start(run);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_WAITING_APPROVAL);
    assert_int_equal(fsm_run_state(run), S_VALIDATED);
    assert_int_equal(w.exec[R_RESUME], 0);
    assert_int_equal(w.notices[FSM_NOTICE_WAITING_APPROVAL], 1);
    assert_int_equal(fsm_approve(run), 0);
    assert_int_equal(fsm_approve(run), DR_ESTATE);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_SUCCEEDED);
    assert_int_equal(w.exec[R_RESUME], 1);
    world_close();

    /* gate_every_row stops before each of the 4 rows; abort at the third */
    world_reset();
    FsmRunOptions o = options(FSM_MODE_MANUAL);
    o.gate_every_row = true;
    run = w.run = fsm_run_new(&w.loop, &table, &o, NULL, NULL, 0);
    assert_non_null(run);
    fsm_run_start(run);
    for (int i = 0; i < 2; i++) {
        run_until_settled();
        assert_int_equal(fsm_run_status(run), FSM_RUN_WAITING_APPROVAL);
        assert_int_equal(fsm_run_state(run), i == 0 ? S_DETECTED : S_HALTED);
        assert_int_equal(fsm_approve(run), 0);
    }
    run_until_settled();
    assert_int_equal(fsm_run_state(run), S_RESTORED);
    assert_int_equal(fsm_abort(run, "operator said no"), 0);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_ABORTED);
    assert_int_equal(w.exec[R_VALIDATE], 0);
    assert_non_null(strstr(w.events[w.nevents - 1], "\"status\":\"aborted\""));
    assert_non_null(strstr(w.events[w.nevents - 1], "operator said no"));
    assert_int_equal(w.notices[FSM_NOTICE_WAITING_APPROVAL], 3);
    world_close();
}

/* An operator gate stops the run in automatic mode too (not a dry run) until approved. */
static void test_operator_gate_stops_every_mode(void **state)
{
    (void)state;
    static FsmRow op_rows[NR];
    memcpy(op_rows, rows, sizeof(rows));
    op_rows[R_VALIDATE].gate = FSM_GATE_OPERATOR;
    const FsmTable op_table = {"toy_operator", states, NS, op_rows, NR, NULL, 0};
    char err[200];
    assert_int_equal(fsm_table_validate(&op_table, err, sizeof(err)), 0);

    FsmRun *run = new_run_of(&op_table, FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_WAITING_APPROVAL);
    assert_int_equal(fsm_run_state(run), S_RESTORED);
    assert_int_equal(w.exec[R_VALIDATE], 0);
    assert_int_equal(fsm_approve(run), 0);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_SUCCEEDED); /* the approval gate is not one */
    assert_int_equal(w.exec[R_VALIDATE], 1);
    world_close();

    world_reset();
    run = new_run_of(&op_table, FSM_MODE_DRY_RUN);
    fsm_run_start(run);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_SUCCEEDED);
    world_close();
}

static void test_abort_mid_step(void **state)
{
    (void)state;
    w.delay_ms[R_HALT] = 50;
    FsmRun *run = new_run(FSM_MODE_AUTOMATIC);
    assert_int_equal(fsm_abort(run, "x"), DR_ESTATE); /* not started */
    fsm_run_start(run);
    while (w.nevents < 2) /* start, intent */
        uv_run(&w.loop, UV_RUN_ONCE);
    while (w.acked < 2)
        uv_run(&w.loop, UV_RUN_ONCE);
    assert_int_equal(fsm_abort(run, "stop"), 0);
    assert_int_equal(fsm_abort(run, "stop"), DR_ESTATE);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_ABORTED);
    assert_int_equal(w.cancels, 1);
    assert_int_equal(w.exec[R_HALT], 0);
    json_t *j = fsm_run_to_json(run);
    json_t *s0 = json_array_get(json_object_get(j, "steps"), 0);
    assert_string_equal(json_string_value(json_object_get(s0, "outcome")), "aborted");
    json_decref(j);
    world_close();
}

static void test_dry_run(void **state)
{
    (void)state;
    FsmRunOptions o = options(FSM_MODE_DRY_RUN);
    o.record = NULL; /* dry runs record nothing */
    FsmRun *run = w.run = fsm_run_new(&w.loop, &table, &o, NULL, NULL, 0);
    assert_non_null(run);
    fsm_run_start(run);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_SUCCEEDED);
    assert_int_equal(w.plans, 3); /* validate has no plan: its sentence is used */
    assert_int_equal(w.notices[FSM_NOTICE_PLANNED], 4);
    for (int r = 0; r < NR; r++)
        assert_int_equal(w.calls[r], 0);
    assert_int_equal(w.nevents, 0);
    json_t *j = fsm_run_to_json(run);
    json_t *steps = json_object_get(j, "steps");
    assert_int_equal(json_array_size(steps), 4);
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(steps, 1), "message")),
        "would restore_database");
    assert_string_equal(json_string_value(json_object_get(json_array_get(steps, 2), "message")),
                        "the restored database is valid");
    assert_string_equal(json_string_value(json_object_get(json_array_get(steps, 1), "outcome")),
                        "planned");
    json_decref(j);
    world_close();

    world_reset();
    w.fail_first[R_VALIDATE] = 99; /* the toy plan fails */
    run = w.run = fsm_run_new(&w.loop, &table, &o, NULL, NULL, 0);
    fsm_run_start(run);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_FAILED);
    assert_int_equal(w.plans, 1);
    world_close();
}

static void test_record_failure(void **state)
{
    (void)state;
    w.fail_record_at = 3; /* the intent of restore */
    FsmRun *run = new_run(FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_FAILED);
    assert_int_equal(w.exec[R_HALT], 1);
    assert_int_equal(w.calls[R_RESTORE], 0); /* never runs without its intent on disk */
    json_t *j = fsm_run_to_json(run);
    assert_non_null(strstr(json_string_value(json_object_get(j, "message")), "cannot record"));
    json_decref(j);
    world_close();
}

static void test_free_from_callback(void **state)
{
    (void)state;
    w.free_on_transition = true;
    FsmRun *run = new_run(FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    assert_null(w.run);
    world_close();
    assert_int_equal(w.exec[R_HALT], 1);
    assert_int_equal(w.calls[R_RESTORE], 0);
    assert_int_equal(w.finished, 0);
    fsm_run_free(NULL);
}

/* Row in flight (intent recorded, no commit/failed after it) in the stored events, or -1. */
static int inflight_row(void)
{
    int row = -1;
    for (size_t i = 0; i < w.nevents; i++) {
        const char *p = strstr(w.events[i], "\"row\":");
        if (strstr(w.events[i], "\"ev\":\"intent\""))
            row = atoi(p + 6);
        else if (p)
            row = -1;
    }
    return row;
}

static void crash_and_resume(bool before, int k, int script, int *ret_crashes, int *ret_held)
{
    world_reset();
    w.crash_at = k;
    w.crash_before = before;
    if (script == 1)
        w.fail_first[R_VALIDATE] = 5;
    FsmRun *run = new_run(FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    if (!w.crashed) {
        world_close();
        return;
    }
    (*ret_crashes)++;
    assert_null(w.run);
    while (uv_run(&w.loop, UV_RUN_NOWAIT)) /* let the dead run's leftovers drain */
        ;
    assert_int_equal(w.records_after_crash, 0);
    if (w.nevents == 0) { /* died before the start was durable: the run never existed */
        for (int i = 0; i < NR; i++)
            assert_int_equal(w.calls[i], 0);
        world_close();
        return;
    }
    int row = inflight_row();
    bool expect_held = row >= 0 && !rows[row].idempotent && !rows[row].probe;
    int exec_before[NR];
    memcpy(exec_before, w.exec, sizeof(exec_before));

    /* restart: what is in the journal is what was acknowledged */
    w.crash_at = -1;
    w.acked = w.nevents;
    run = new_run(FSM_MODE_AUTOMATIC);
    char err[256];
    int r = fsm_run_resume(run, (const char *const *)w.events, w.nevents, err, sizeof(err));
    if (r != 0)
        fail_msg("resume after crash at %d (%s): %s", k, before ? "before" : "after", err);
    run_until_settled();
    FsmStatus st = fsm_run_status(run);
    if (expect_held) {
        (*ret_held)++;
        assert_int_equal(st, FSM_RUN_HELD);
        assert_int_equal(w.notices[FSM_NOTICE_HELD], 1);
        assert_int_equal(fsm_run_state(run), rows[row].from);
        assert_int_equal(fsm_abort(run, "operator aborts"), 0);
        run_until_settled();
        assert_int_equal(fsm_run_status(run), FSM_RUN_ABORTED);
        assert_int_equal(w.exec[row], exec_before[row]); /* not run again */
    } else {
        if (st != (script == 0 ? FSM_RUN_SUCCEEDED : FSM_RUN_FAILED))
            fail_msg("crash at %d (%s): status %s", k, before ? "before" : "after",
                     fsm_status_name(st));
        assert_int_equal(fsm_run_state(run), script == 0 ? S_LIVE : S_STAYED_HALTED);
        assert_int_equal(w.notices[FSM_NOTICE_HELD], 0);
    }
    for (int i = 0; i < NR; i++) {
        assert_int_equal(w.after_commit[i], 0);
        if (!rows[i].idempotent && w.exec[i] > 1)
            fail_msg("crash at %d (%s): non-idempotent '%s' executed %d times", k,
                     before ? "before" : "after", rows[i].step_name, w.exec[i]);
    }
    if (!expect_held)
        assert_int_equal(w.exec[R_RESUME], script == 0 ? 1 : 0);
    world_close();
}

static void test_crash_at_every_boundary(void **state)
{
    (void)state;
    int crashes = 0, held = 0;
    for (int script = 0; script < 2; script++)
        for (int before = 0; before < 2; before++)
            for (int k = 0; k < 14; k++)
                crash_and_resume(before, k, script, &crashes, &held);
    /* 10 records on each path; crashes before and after each */
    assert_int_equal(crashes, 2 * 2 * 10);
    /* resume_trading (no probe, not idempotent) in doubt: crash after its intent is durable, or
     * before its commit is */
    assert_int_equal(held, 2);
}

static void test_held_then_approve(void **state)
{
    (void)state;
    w.crash_at = 8; /* the commit of resume_trading, lost */
    w.crash_before = true;
    FsmRun *run = new_run(FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    assert_true(w.crashed);
    assert_int_equal(w.exec[R_RESUME], 1);
    w.crash_at = -1;
    run = new_run(FSM_MODE_AUTOMATIC);
    assert_int_equal(fsm_run_resume(run, (const char *const *)w.events, w.nevents, NULL, 0), 0);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_HELD);
    json_t *j = fsm_run_to_json(run);
    json_t *steps = json_object_get(j, "steps");
    json_t *last = json_array_get(steps, json_array_size(steps) - 1);
    assert_string_equal(json_string_value(json_object_get(last, "outcome")), "in_doubt");
    json_decref(j);
    assert_int_equal(fsm_approve(run), 0); /* the operator checked: run it again */
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_SUCCEEDED);
    assert_int_equal(w.exec[R_RESUME], 2);
    world_close();
}

static void test_resume_probe_yes_skips_rerun(void **state)
{
    (void)state;
    w.crash_at = 4; /* the commit of restore_database, lost: restore did happen */
    w.crash_before = true;
    FsmRun *run = new_run(FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    assert_int_equal(w.exec[R_RESTORE], 1);
    w.crash_at = -1;
    run = new_run(FSM_MODE_AUTOMATIC);
    assert_int_equal(fsm_run_resume(run, (const char *const *)w.events, w.nevents, NULL, 0), 0);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_SUCCEEDED);
    assert_int_equal(w.calls[R_RESTORE], 1);
    bool found = false;
    for (size_t i = 0; i < w.nevents; i++)
        found |= strstr(w.events[i], "already done before the restart") != NULL;
    assert_true(found);
    world_close();
}

static void test_resume_ended_and_bad_events(void **state)
{
    (void)state;
    FsmRun *run = new_run(FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_SUCCEEDED);
    fsm_run_free(run);
    char id[32];
    bool end = false;
    assert_int_equal(fsm_event_run_id(w.events[w.nevents - 1], id, sizeof(id), &end), 0);
    assert_string_equal(id, "run-1");
    assert_true(end);
    assert_int_equal(fsm_event_run_id("{\"x\":1}", id, sizeof(id), NULL), DR_ECORRUPT);

    int before = w.notices[FSM_NOTICE_STEP_STARTED];
    run = new_run(FSM_MODE_AUTOMATIC);
    assert_int_equal(fsm_run_resume(run, (const char *const *)w.events, w.nevents, NULL, 0), 0);
    assert_int_equal(fsm_run_status(run), FSM_RUN_SUCCEEDED);
    assert_int_equal(fsm_run_state(run), S_LIVE);
    uv_run(&w.loop, UV_RUN_DEFAULT);
    assert_int_equal(w.notices[FSM_NOTICE_STEP_STARTED], before);
    assert_json_status(run, "succeeded", 4);
    fsm_run_free(run);

    /* a commit without its intent, another scenario, garbage, another run */
    const char *bad[][2] = {
        {"{\"ev\":\"start\",\"run\":\"run-1\",\"scenario\":\"toy_corruption\",\"mode\":\"automatic\"}",
         "{\"ev\":\"commit\",\"run\":\"run-1\",\"row\":0,\"step\":\"halt_trading\"}"},
        {"{\"ev\":\"start\",\"run\":\"run-1\",\"scenario\":\"other\",\"mode\":\"automatic\"}", NULL},
        {"not json", NULL},
        {"{\"ev\":\"start\",\"run\":\"run-2\",\"scenario\":\"toy_corruption\",\"mode\":\"automatic\"}",
         NULL},
        {"{\"ev\":\"start\",\"run\":\"run-1\",\"scenario\":\"toy_corruption\",\"mode\":\"automatic\"}",
         "{\"ev\":\"intent\",\"run\":\"run-1\",\"row\":1,\"step\":\"restore_database\"}"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        run = new_run(FSM_MODE_AUTOMATIC);
        char err[256] = "";
        assert_int_equal(fsm_run_resume(run, bad[i], bad[i][1] ? 2 : 1, err, sizeof(err)),
                         DR_ECORRUPT);
        assert_true(err[0] != '\0');
        fsm_run_free(run);
    }
    w.run = NULL;
    world_close();
}

/* ---- validation ---- */

static void expect_invalid(const FsmTable *t, const char *needle)
{
    char err[256] = "";
    assert_int_equal(fsm_table_validate(t, err, sizeof(err)), DR_ECONFIG);
    if (!strstr(err, needle))
        fail_msg("expected '%s' in '%s'", needle, err);
    int r = 0;
    FsmRunOptions o = options(FSM_MODE_AUTOMATIC);
    assert_null(fsm_run_new(&w.loop, t, &o, &r, NULL, 0));
    assert_int_equal(r, DR_ECONFIG);
}

static void test_validation(void **state)
{
    (void)state;
    char err[256];
    assert_int_equal(fsm_table_validate(&table, err, sizeof(err)), 0);

    FsmRow r2[NR];
    FsmTable t2 = table;
    t2.rows = r2;

    memcpy(r2, rows, sizeof(rows));
    r2[R_RESTORE].on_failure = FSM_NO_STATE;
    r2[R_VALIDATE].on_failure = FSM_NO_STATE; /* rolled_back, stayed_halted unreachable */
    expect_invalid(&t2, "'rolled_back' is unreachable");

    memcpy(r2, rows, sizeof(rows));
    t2.row_count = NR - 1; /* rolled_back has no row */
    expect_invalid(&t2, "'rolled_back' is a dead end");
    t2.row_count = NR;

    memcpy(r2, rows, sizeof(rows));
    r2[R_RESTORE].on_failure = 42;
    expect_invalid(&t2, "on_failure state 42 does not exist");

    memcpy(r2, rows, sizeof(rows));
    r2[R_VALIDATE].on_failure = 0; /* omitted on_failure: back to the initial state */
    expect_invalid(&t2, "cycle");

    memcpy(r2, rows, sizeof(rows));
    r2[R_PUT_BACK].from = S_HALTED; /* two rows leave halted */
    expect_invalid(&t2, "both leave state 'halted'");

    memcpy(r2, rows, sizeof(rows));
    r2[R_PUT_BACK].step_name = "validate";
    expect_invalid(&t2, "step name 'validate' used by rows 2 and 4");

    memcpy(r2, rows, sizeof(rows));
    r2[R_HALT].attempts = 0;
    expect_invalid(&t2, "attempts");

    memcpy(r2, rows, sizeof(rows));
    r2[R_HALT].timeout_ms = 0;
    expect_invalid(&t2, "timeout");

    memcpy(r2, rows, sizeof(rows));
    r2[R_PUT_BACK].from = S_LIVE;
    expect_invalid(&t2, "leaves final state 'live'");

    FsmState s2[NS];
    memcpy(s2, states, sizeof(states));
    s2[S_LIVE].kind = FSM_STATE_ACTIVE; /* not final, no row */
    FsmTable t3 = table;
    t3.states = s2;
    expect_invalid(&t3, "'live' is a dead end");
    s2[S_LIVE].kind = FSM_STATE_SUCCESS;
    s2[S_LIVE].name = "halted";
    expect_invalid(&t3, "used twice");
    world_close();
}

static void test_dot(void **state)
{
    (void)state;
    char *dot = fsm_table_to_dot(&table);
    assert_non_null(dot);
    assert_non_null(strstr(dot, "digraph \"toy_corruption\""));
    assert_non_null(strstr(dot, "\"halted\" -> \"restored\" [label=\"restore_database"));
    assert_non_null(strstr(dot, "\"halted\" -> \"rolled_back\" [label=\"restore_database failed\""));
    assert_non_null(strstr(dot, "(approval)"));
    assert_non_null(strstr(dot, "\"live\" [shape=doublecircle]"));
    free(dot);
    assert_string_equal(fsm_state_name(&table, 99), "?");
    world_close();
}

/* ---- backed by lib/journal ---- */

static Journal *journal;

static void journal_done(Journal *j, int status, uint64_t seq, void *data)
{
    (void)j;
    (void)seq;
    PendingRecord *p = data;
    p->then(p->run, status);
    free(p);
}

static void journal_record(FsmRun *run, const char *ev, FsmRecorded then, void *data)
{
    (void)data;
    PendingRecord *p = calloc(1, sizeof(*p));
    p->run = run;
    p->then = then;
    if (w.crash_at >= 0 && (int)journal_next_seq(journal) + (int)journal_pending(journal) - 1 ==
                               w.crash_at) {
        w.crashed = true;
        fsm_run_free(run);
        w.run = NULL;
    }
    assert_int_equal(journal_append_async(&w.loop, journal, ev, strlen(ev), journal_done, p), 0);
}

/* ---- outcome branches and hand-off ---- */

static void test_branch_default_path(void **state)
{
    (void)state;
    FsmRun *run = new_run_of(&btable, FSM_MODE_AUTOMATIC);
    assert_int_equal(fsm_run_start(run), 0);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_SUCCEEDED);
    assert_int_equal(fsm_run_state(run), B_LIVE);
    assert_int_equal(w.exec[BR_RESUME], 1);
    assert_int_equal(w.not_write_ahead, 0);
    world_close();
}

static void test_branch_hands_off(void **state)
{
    (void)state;
    snprintf(w.outcome, sizeof(w.outcome), "corrupted");
    FsmRun *run = new_run_of(&btable, FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_HANDED_OFF);
    assert_int_equal(fsm_run_state(run), B_HANDED_OFF);
    assert_string_equal(fsm_status_name(FSM_RUN_HANDED_OFF), "handed_off");
    assert_int_equal(w.exec[BR_RESUME], 0); /* the branch was taken, not the row's own `to` */
    assert_int_equal(w.not_write_ahead, 0);
    /* The commit names the outcome and the state it led to; the end says handed_off. */
    bool commit = false;
    for (size_t i = 0; i < w.nevents; i++)
        commit |= strstr(w.events[i], "\"ev\":\"commit\"") && strstr(w.events[i], "\"outcome\":\"corrupted\"") &&
                  strstr(w.events[i], "\"state\":\"handed_to_corruption\"");
    assert_true(commit);
    assert_non_null(strstr(w.events[w.nevents - 1], "\"status\":\"handed_off\""));
    world_close();

    world_reset();
    snprintf(w.outcome, sizeof(w.outcome), "gone");
    run = new_run_of(&btable, FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_FAILED);
    assert_int_equal(fsm_run_state(run), B_GAVE_UP);
    world_close();
}

static void test_branch_unknown_outcome_fails_loudly(void **state)
{
    (void)state;
    snprintf(w.outcome, sizeof(w.outcome), "bogus");
    FsmRun *run = new_run_of(&btable, FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    /* Never a guess: both attempts fail, the row has no on_failure, the run fails naming it. */
    assert_int_equal(fsm_run_status(run), FSM_RUN_FAILED);
    assert_int_equal(fsm_run_state(run), B_HALTED);
    assert_int_equal(w.calls[BR_DIAGNOSE], 2);
    assert_int_equal(w.exec[BR_RESUME], 0);
    json_t *j = fsm_run_to_json(run);
    assert_non_null(strstr(json_string_value(json_object_get(j, "message")), "outcome 'bogus'"));
    json_decref(j);
    world_close();
}

static void test_branch_resume_follows_the_recorded_branch(void **state)
{
    (void)state;
    snprintf(w.outcome, sizeof(w.outcome), "corrupted");
    w.crash_at = 5; /* start, intent, commit, intent, commit(diagnose) -> crash before the end */
    w.crash_before = true;
    FsmRun *run = new_run_of(&btable, FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    assert_true(w.crashed);
    w.crash_at = -1;
    w.outcome[0] = '\0'; /* a re-run would now take the default path: it must not re-run */
    run = new_run_of(&btable, FSM_MODE_AUTOMATIC);
    assert_int_equal(fsm_run_resume(run, (const char *const *)w.events, w.nevents, NULL, 0), 0);
    run_until_settled();
    assert_int_equal(fsm_run_status(run), FSM_RUN_HANDED_OFF);
    assert_int_equal(w.calls[BR_DIAGNOSE], 1);
    world_close();

    /* A commit whose state is not the branch's is refused as corrupt. */
    world_reset();
    snprintf(w.outcome, sizeof(w.outcome), "corrupted");
    run = new_run_of(&btable, FSM_MODE_AUTOMATIC);
    fsm_run_start(run);
    run_until_settled();
    fsm_run_free(run);
    w.run = NULL;
    for (size_t i = 0; i < w.nevents; i++) {
        /* The outcome says "gone" while the state still says handed_to_corruption. */
        char *p = strstr(w.events[i], "\"outcome\":\"corrupted\"");
        if (p) {
            char *fixed = NULL;
            *p = '\0';
            assert_true(asprintf(&fixed, "%s\"outcome\":\"gone\"%s", w.events[i], p + strlen("\"outcome\":\"corrupted\"")) > 0);
            free(w.events[i]);
            w.events[i] = fixed;
        }
    }
    run = new_run_of(&btable, FSM_MODE_AUTOMATIC);
    char err[256] = "";
    assert_int_equal(fsm_run_resume(run, (const char *const *)w.events, w.nevents, err, sizeof(err)), DR_ECORRUPT);
    assert_non_null(strstr(err, "does not match table"));
    world_close();
}

static void test_branch_probe_yes_must_name_the_outcome(void **state)
{
    (void)state;
    for (int named = 0; named < 2; named++) {
        if (named)
            world_reset();
        snprintf(w.outcome, sizeof(w.outcome), "corrupted");
        w.probe_names_outcome = named;
        w.crash_at = 4; /* the commit of diagnose, lost: the diagnosis did happen */
        w.crash_before = true;
        FsmRun *run = new_run_of(&btable, FSM_MODE_AUTOMATIC);
        fsm_run_start(run);
        run_until_settled();
        assert_int_equal(w.exec[BR_DIAGNOSE], 1);
        w.crash_at = -1;
        run = new_run_of(&btable, FSM_MODE_AUTOMATIC);
        assert_int_equal(fsm_run_resume(run, (const char *const *)w.events, w.nevents, NULL, 0), 0);
        run_until_settled();
        assert_int_equal(fsm_run_status(run), FSM_RUN_HANDED_OFF);
        /* Named: the probe's "yes" commits the branch, no re-run. Not named: "unknown", and the
         * idempotent step runs again (and chooses again). */
        assert_int_equal(w.calls[BR_DIAGNOSE], named ? 1 : 2);
        world_close();
    }
}

static void test_branch_validation_and_dot(void **state)
{
    (void)state;
    char err[256];
    FsmBranch bad_to[] = {{B_HALTED, "corrupted", 99}};
    FsmTable t = btable;
    t.branches = bad_to;
    t.branch_count = 1;
    assert_int_equal(fsm_table_validate(&t, err, sizeof(err)), DR_ECONFIG);
    assert_non_null(strstr(err, "does not exist"));
    FsmBranch twice[] = {{B_HALTED, "corrupted", B_HANDED_OFF}, {B_HALTED, "corrupted", B_GAVE_UP}};
    t.branches = twice;
    t.branch_count = 2;
    assert_int_equal(fsm_table_validate(&t, err, sizeof(err)), DR_ECONFIG);
    assert_non_null(strstr(err, "listed twice"));
    FsmBranch from_final[] = {{B_LIVE, "again", B_HALTED}};
    t.branches = from_final;
    t.branch_count = 1;
    assert_int_equal(fsm_table_validate(&t, err, sizeof(err)), DR_ECONFIG);
    assert_non_null(strstr(err, "no row"));
    FsmBranch loop[] = {{B_UP, "down_again", B_HALTED}};
    t.branches = loop;
    assert_int_equal(fsm_table_validate(&t, err, sizeof(err)), DR_ECONFIG);
    assert_non_null(strstr(err, "cycle"));
    /* Without its branches the hand-off and gave-up states are unreachable. */
    t.branches = NULL;
    t.branch_count = 0;
    assert_int_equal(fsm_table_validate(&t, err, sizeof(err)), DR_ECONFIG);
    assert_non_null(strstr(err, "unreachable"));
    assert_int_equal(fsm_table_validate(&btable, err, sizeof(err)), 0);
    char *dot = fsm_table_to_dot(&btable);
    assert_non_null(dot);
    assert_non_null(strstr(dot, "\"halted\" -> \"handed_to_corruption\" [label=\"corrupted\""));
    assert_non_null(strstr(dot, "\"handed_to_corruption\" [shape=house]"));
    free(dot);
}

static void test_with_real_journal(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_fsm.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/runs.journal", dir);
    assert_int_equal(journal_open(path, &journal, NULL, NULL, 0), 0);
    w.crash_at = 5; /* dies right after the intent of validate is durable */
    FsmRunOptions o = options(FSM_MODE_AUTOMATIC);
    o.record = journal_record;
    w.run = fsm_run_new(&w.loop, &table, &o, NULL, NULL, 0);
    fsm_run_start(w.run);
    assert_int_equal(uv_run(&w.loop, UV_RUN_DEFAULT), 0);
    assert_true(w.crashed);
    journal_free(journal);

    /* restart: replay the journal, group by run, resume */
    JournalOpenInfo info;
    assert_int_equal(journal_open(path, &journal, &info, NULL, 0), 0);
    assert_int_equal(info.records, 6);
    const char *evs[16];
    size_t n = 0;
    for (size_t i = 0; i < journal_record_count(journal); i++) {
        char id[32];
        const char *p = journal_record_at(journal, i)->payload;
        assert_int_equal(fsm_event_run_id(p, id, sizeof(id), NULL), 0);
        if (strcmp(id, "run-1") == 0)
            evs[n++] = p;
    }
    w.crash_at = -1;
    w.run = fsm_run_new(&w.loop, &table, &o, NULL, NULL, 0);
    assert_int_equal(fsm_run_resume(w.run, evs, n, NULL, 0), 0);
    assert_int_equal(uv_run(&w.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(fsm_run_status(w.run), FSM_RUN_SUCCEEDED);
    assert_int_equal(w.exec[R_VALIDATE], 1); /* idempotent, re-run once after the crash */
    assert_int_equal(w.exec[R_RESTORE], 1);
    json_t *j = fsm_run_to_json(w.run);
    /* halt, restore, validate (interrupted), validate (re-run), resume */
    json_t *steps = json_object_get(j, "steps");
    assert_int_equal(json_array_size(steps), 5);
    assert_string_equal(json_string_value(json_object_get(json_array_get(steps, 2), "outcome")),
                        "interrupted");
    json_decref(j);
    world_close();
    journal_free(journal);
    assert_int_equal(journal_open(path, &journal, &info, NULL, 0), 0);
    assert_int_equal(info.records, 6 + 5); /* intent, commit validate; intent, commit resume; end */
    journal_free(journal);
    char cmd[64];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_happy_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retries_then_success, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_branch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failure_without_branch_fails_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manual_gates, setup, teardown),
        cmocka_unit_test_setup_teardown(test_operator_gate_stops_every_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abort_mid_step, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dry_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_failure, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_from_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crash_at_every_boundary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_then_approve, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_probe_yes_skips_rerun, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_ended_and_bad_events, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_with_real_journal, setup, teardown),
        cmocka_unit_test_setup_teardown(test_branch_default_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_branch_hands_off, setup, teardown),
        cmocka_unit_test_setup_teardown(test_branch_unknown_outcome_fails_loudly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_branch_resume_follows_the_recorded_branch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_branch_probe_yes_must_name_the_outcome, setup, teardown),
        cmocka_unit_test_setup_teardown(test_branch_validation_and_dot, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
