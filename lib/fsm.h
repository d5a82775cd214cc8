/*
 * fsm: the generic, table-driven, asynchronous scenario engine.
 *
 * Owns the execution of one scenario run over a static table of rows (in the spirit of
 * pg_auto_failover's KeeperFSM): which step runs next, the write-ahead protocol around each step,
 * timeouts, retries with backoff, failure branches, approval gates, dry runs, resuming after a
 * crash from the run's journal events, transition notifications and the run's timeline. It knows
 * nothing about any scenario: the daemon supplies the tables, the step functions, the durable
 * record function (backed by lib/journal) and the notification sink. docs/engine.md has the full
 * contract; the short version:
 *
 * TABLE. States are small ints 0..state_count-1, each with a name and a kind (active, final
 * success, final failure, final hand-off). State 0 is the initial state. Each active state has
 * EXACTLY ONE row. A row's success edge goes to `to`, unless the step chose an OUTCOME
 * (fsm_call_set_outcome before done): the table's branches map (state, outcome) to another
 * state, so a step can decide where the run goes next; an outcome the table does not list fails
 * the attempt loudly, never guesses. Failure goes to on_failure. A HAND-OFF state ends the run
 * with FSM_RUN_HANDED_OFF: the run found it is the wrong scenario, and its owner starts the right
 * one. Final states have no row. The graph (success, branch and on_failure edges) must be
 * acyclic and every state reachable from state 0: loops are expressed with `attempts`, never with
 * edges. fsm_table_validate checks all of it.
 *
 * WRITE AHEAD. For each step the engine records an "intent" event and waits for the record to be
 * durable before calling the step; after the step succeeds it records a "commit" event and only
 * when that is durable does it move to the next state and notify. A step that failed all its
 * attempts records a "failed" event before moving to its on_failure state (or failing the run).
 * The end of a run is recorded too. Dry runs record nothing.
 *
 * RESUME. fsm_run_resume replays a run's events: committed steps are never re-run (a commit
 * records the state it led to, so a branch taken is followed again). A step with an
 * intent and no commit was in flight at the crash: if the row has a probe it is asked; "yes" is
 * recorded as a commit; "no" (the step certainly has not taken effect) runs it again. Without a
 * probe, or when the probe answers "unknown" (or times out), an idempotent step is run again and
 * a non-idempotent one puts the run in FSM_RUN_HELD until fsm_approve (run it again) or fsm_abort.
 * A probe must answer "no" only when sure: a half-done step is "unknown". On a row with branches
 * a "yes" must also name the outcome (fsm_call_set_outcome on the probe's call), else it counts
 * as "unknown".
 *
 * STEPS are asynchronous. The engine calls step(call, ctx, done) and the step must call
 * done(call, result, message) exactly once, later or right away, result 0 or a negative code.
 * `call` is a per-invocation handle (not the run) so that a late completion of a timed-out or
 * cancelled attempt is recognised and ignored: after a timeout, an abort or fsm_run_free the call
 * is detached (fsm_call_run returns NULL, fsm_call_cancelled returns true), the row's optional
 * cancel hook is called, and the step's eventual done() only frees the call. A step must still
 * call done() once even when cancelled. Probes work the same way with a yes/no/unknown answer.
 *
 * THREADS: everything runs on the loop thread and never blocks. Callbacks (record, notify, steps)
 * may call any function here, including fsm_run_free (the run is then torn down once the engine
 * has unwound, and once a record in flight has been acknowledged).
 */
#ifndef DRSUP_FSM_H
#define DRSUP_FSM_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define FSM_NO_STATE (-1)

typedef enum FsmStateKind {
    FSM_STATE_ACTIVE = 0, /* has exactly one row */
    FSM_STATE_SUCCESS,    /* final: the run succeeded */
    FSM_STATE_FAILURE,    /* final: the run ended in a failure state (e.g. stayed halted) */
    FSM_STATE_HANDOFF,    /* final: another scenario must take over (the owner starts it) */
} FsmStateKind;

typedef struct FsmState {
    const char *name; /* snake_case, unique in the table */
    FsmStateKind kind;
} FsmState;

typedef enum FsmGate {
    FSM_GATE_NONE = 0,
    FSM_GATE_APPROVAL, /* in manual mode, the run stops before this row until fsm_approve */
    FSM_GATE_OPERATOR, /* in every mode (not dry runs): the run stops before this row until fsm_approve
                          (an operator did by hand what the run could not confirm) or fsm_abort */
} FsmGate;

typedef enum FsmProbeAnswer {
    FSM_PROBE_UNKNOWN = 0,
    FSM_PROBE_YES, /* the step has already taken effect */
    FSM_PROBE_NO,  /* it has not */
} FsmProbeAnswer;

typedef enum FsmMode {
    FSM_MODE_AUTOMATIC = 0,
    FSM_MODE_MANUAL, /* stop at gated rows (or every row with gate_every_row) */
    FSM_MODE_DRY_RUN /* call each row's plan along the success path; no steps, no records */
} FsmMode;

typedef enum FsmStatus {
    FSM_RUN_NEW = 0,           /* created, not started */
    FSM_RUN_RUNNING,
    FSM_RUN_WAITING_APPROVAL,  /* stopped at a gate: fsm_approve or fsm_abort */
    FSM_RUN_HELD,              /* resumed with a non-idempotent step in doubt: fsm_approve/fsm_abort */
    FSM_RUN_SUCCEEDED,         /* reached a FSM_STATE_SUCCESS state (dry run: plan complete) */
    FSM_RUN_FAILED,            /* reached a FSM_STATE_FAILURE state, a step failed with no
                                  on_failure, or a record could not be written */
    FSM_RUN_ABORTED,
    FSM_RUN_HANDED_OFF,        /* reached a FSM_STATE_HANDOFF state */
} FsmStatus;

typedef struct FsmRun FsmRun;
typedef struct FsmCall FsmCall;

/* Step completion: result 0 (success) or a negative code; message (may be NULL) is copied. */
typedef void (*FsmDone)(FsmCall *call, int result, const char *message);
/* A step (or a dry-run plan, whose message describes what the step would do). */
typedef void (*FsmStepFn)(FsmCall *call, void *ctx, FsmDone done);
/* Probe completion: answer and an optional message (copied). */
typedef void (*FsmProbeDone)(FsmCall *call, FsmProbeAnswer answer, const char *message);
/* "Has this step already taken effect?", asked after a crash. */
typedef void (*FsmProbeFn)(FsmCall *call, void *ctx, FsmProbeDone done);
/* Optional: the call timed out or the run was aborted/freed; stop the work soon (done() is still
 * expected once, and ignored). */
typedef void (*FsmCancelFn)(FsmCall *call, void *ctx);

typedef struct FsmRow {
    int from;               /* active state this row leaves */
    int to;                 /* state reached when the step succeeds */
    const char *step_name;  /* snake_case, e.g. "halt_trading": STEP= in logs, journal events */
    const char *sentence;   /* logged on every transition, e.g. "trading is halted and confirmed" */
    FsmStepFn step;         /* required */
    FsmProbeFn probe;       /* optional */
    FsmStepFn plan;         /* optional: dry run description (default: the sentence) */
    FsmCancelFn cancel;     /* optional */
    uint32_t timeout_ms;    /* per attempt, > 0 */
    uint32_t attempts;      /* >= 1 */
    bool idempotent;        /* safe to run again after a crash left it in doubt */
    FsmGate gate;
    int on_failure;         /* state after all attempts failed, or FSM_NO_STATE: the run fails.
                               ALWAYS write it: an omitted 0 (the initial state) is a cycle and
                               is rejected by validation. */
} FsmRow;

/* A step leaving state `from` that chose `outcome` leads to state `to` instead of its row's `to`. */
typedef struct FsmBranch {
    int from;
    const char *outcome; /* snake_case, unique per from */
    int to;
} FsmBranch;

typedef struct FsmTable {
    const char *name; /* scenario name, e.g. "database_corruption" */
    const FsmState *states;
    int state_count;
    const FsmRow *rows;
    int row_count;
    const FsmBranch *branches; /* may be NULL */
    int branch_count;
} FsmTable;

/* 0 if the table is well formed, else DR_ECONFIG with a one-line reason in err. */
int fsm_table_validate(const FsmTable *t, char *err, size_t errlen);

/* Graphviz dot text of the table (malloc'd, caller frees), or NULL on allocation failure. */
char *fsm_table_to_dot(const FsmTable *t);

/* Name of state s, or "?" if out of range. */
const char *fsm_state_name(const FsmTable *t, int s);

/* What happened, for events, logs and status. Strings are borrowed for the call only. */
typedef enum FsmNoticeKind {
    FSM_NOTICE_STEP_STARTED,     /* an attempt begins (intent durable) */
    FSM_NOTICE_STEP_RETRY,       /* an attempt failed or timed out; the next one follows a backoff */
    FSM_NOTICE_TRANSITION,       /* step committed: from -> to, with the row's sentence */
    FSM_NOTICE_STEP_FAILED,      /* all attempts failed (recorded); to = on_failure or NO_STATE */
    FSM_NOTICE_WAITING_APPROVAL, /* stopped at a gate before row */
    FSM_NOTICE_HELD,             /* resumed with row in doubt; operator needed */
    FSM_NOTICE_PLANNED,          /* dry run: message describes what row would do */
    FSM_NOTICE_FINISHED,         /* the run ended; see status */
} FsmNoticeKind;

typedef struct FsmNotice {
    FsmNoticeKind kind;
    int row;               /* row index, or -1 */
    const char *step_name; /* NULL when row == -1 */
    const char *sentence;  /* the row's sentence, NULL when row == -1 */
    int from, to;          /* states (to may be FSM_NO_STATE) */
    unsigned attempt;      /* attempt number (1-based) where it applies */
    int result;            /* 0 or the failing code */
    const char *message;   /* step/probe/plan message or reason, may be NULL */
    FsmStatus status;      /* run status after this notice */
} FsmNotice;

typedef void (*FsmNotifyFn)(FsmRun *run, const FsmNotice *n, void *data);

/* Durable record completion: status 0 or a negative code (the run then fails). */
typedef void (*FsmRecorded)(FsmRun *run, int status);
/* Makes event_json (borrowed for the call) durable, then calls then(run, status) exactly once,
 * later (e.g. from a journal_append_async callback) or right away. */
typedef void (*FsmRecordFn)(FsmRun *run, const char *event_json, FsmRecorded then, void *data);

typedef struct FsmRunOptions {
    const char *id;              /* run id (copied); appears in every event */
    FsmMode mode;
    bool gate_every_row;         /* manual mode: stop before every row, gated or not */
    void *ctx;                   /* passed to steps, probes, plans and cancel hooks */
    FsmRecordFn record;          /* required except in dry run */
    void *record_data;
    FsmNotifyFn notify;          /* optional */
    void *notify_data;
    uint32_t backoff_initial_ms; /* delay before the 2nd attempt, doubling; 0: 500 ms */
    uint32_t backoff_max_ms;     /* 0: 30 s */
} FsmRunOptions;

/*
 * Creates a run of table t (validated here: invalid tables fail with DR_ECONFIG). The table and
 * opt->ctx are borrowed and must outlive the run. Returns NULL with the code in *ret_err (and a
 * message in err if non-NULL) on failure.
 */
FsmRun *fsm_run_new(uv_loop_t *loop, const FsmTable *t, const FsmRunOptions *opt, int *ret_err,
                    char *err, size_t errlen);

/* Starts a new run: records the start event and runs the table from state 0. 0 or DR_ESTATE. */
int fsm_run_start(FsmRun *run);

/*
 * Resumes a run from its recorded events (NUL-terminated JSON texts, in order, all of this run),
 * after a crash. The mode is the one recorded at start. Continues asynchronously (probe, re-run,
 * hold, or the next step). A run whose end is recorded just takes its final status (nothing runs,
 * no notice). 0, DR_ESTATE (run already started), or DR_ECORRUPT when the events are malformed or
 * do not match the table (message in err).
 */
int fsm_run_resume(FsmRun *run, const char *const *events, size_t n, char *err, size_t errlen);

/* The run id recorded in an event (copied into buf), for grouping journal records by run.
 * 0, or DR_ECORRUPT if the text is not an engine event. *ret_end (if non-NULL) tells whether this
 * event ends its run. */
int fsm_event_run_id(const char *event_json, char *buf, size_t buflen, bool *ret_end);

/* Continues a run stopped at a gate, or re-runs the step in doubt of a held run. 0 or DR_ESTATE. */
int fsm_approve(FsmRun *run);

/* Aborts a run that has not ended: cancels the step in flight (its completion is ignored), records
 * the end with status aborted, notifies FINISHED. 0 or DR_ESTATE (already ended). */
int fsm_abort(FsmRun *run, const char *reason);

/* Stops everything (the step in flight is cancelled, nothing more is recorded) and frees the run
 * once nothing refers to it: its timer closed and any record in flight acknowledged, so the loop
 * must keep running until then. Safe from inside any callback. fsm_run_free(NULL) is a no-op. */
void fsm_run_free(FsmRun *run);

FsmStatus fsm_run_status(const FsmRun *run);
int fsm_run_state(const FsmRun *run);
const char *fsm_run_id(const FsmRun *run);
const FsmTable *fsm_run_table(const FsmRun *run);
const char *fsm_status_name(FsmStatus s);
const char *fsm_mode_name(FsmMode m);

/* Report of the run (new reference): id, scenario, mode, status, state, message, and "steps": the
 * timeline, one entry per execution of a row (start_ms/end_ms wall clock, outcome, attempts,
 * message). NULL on allocation failure. */
json_t *fsm_run_to_json(const FsmRun *run);

/* The run a call belongs to, or NULL once the call was detached (timed out, aborted, freed). */
FsmRun *fsm_call_run(const FsmCall *call);
/* The row being executed (never NULL, valid as long as the table). */
const FsmRow *fsm_call_row(const FsmCall *call);
/* Attempt number (1-based). */
unsigned fsm_call_attempt(const FsmCall *call);
/* True once the engine no longer waits for this call. */
bool fsm_call_cancelled(const FsmCall *call);
/* The step (or, after a restart, its probe) chose `outcome` (copied; at most 47 bytes): on success
 * the run goes to the branch's state. Call before done(). */
void fsm_call_set_outcome(FsmCall *call, const char *outcome);
/* Free slot for the step's own state (e.g. its timer or child), NULL initially. */
void *fsm_call_get_data(const FsmCall *call);
void fsm_call_set_data(FsmCall *call, void *data);

#endif
