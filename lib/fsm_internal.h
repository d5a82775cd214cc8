/*
 * fsm_internal: the run structure shared by fsm.c (run loop) and fsm_resume.c (resume, reports).
 * Not part of the public API.
 */
#ifndef DRSUP_FSM_INTERNAL_H
#define DRSUP_FSM_INTERNAL_H

#include "fsm.h"

typedef enum FsmPhase {
    FSM_PH_IDLE = 0, /* settled between steps, or not started */
    FSM_PH_RECORD,   /* waiting for a record to be durable (see next) */
    FSM_PH_STEP,     /* a step attempt in flight (call) */
    FSM_PH_PROBE,    /* a probe in flight (call), after resume */
    FSM_PH_PLAN,     /* a dry-run plan in flight (call) */
    FSM_PH_BACKOFF,  /* waiting before the next attempt */
    FSM_PH_GATE,     /* waiting for approval before row */
    FSM_PH_HELD,     /* waiting for an operator: row in doubt */
    FSM_PH_DONE,
} FsmPhase;

typedef enum FsmNext {
    FSM_NEXT_START,
    FSM_NEXT_INTENT,
    FSM_NEXT_COMMIT,
    FSM_NEXT_FAILED,
    FSM_NEXT_END,
} FsmNext;

typedef enum FsmCallKind { FSM_CALL_STEP, FSM_CALL_PROBE, FSM_CALL_PLAN } FsmCallKind;

struct FsmCall {
    FsmRun *run; /* NULL once detached */
    const FsmRow *row;
    int row_index;
    FsmCallKind kind;
    unsigned attempt;
    bool cancelled;
    void *data;
    char outcome[48]; /* fsm_call_set_outcome, "" when none */
};

/* One execution of a row in the timeline. outcome NULL while running. */
typedef struct FsmEntry {
    int row;
    int64_t start_ms;
    int64_t end_ms;
    const char *outcome; /* static string */
    unsigned attempts;
    char *message;
} FsmEntry;

struct FsmRun {
    uv_loop_t *loop;
    const FsmTable *t;
    FsmRunOptions opt; /* id points to the copy below */
    char *id;
    int *row_of;       /* row leaving each state, -1 for final states */
    int state;
    int row;           /* current row, -1 before the first */
    unsigned attempt;
    FsmStatus status;
    FsmStatus end_status;
    FsmPhase phase;
    FsmNext next;
    FsmCall *call;     /* call in flight, or NULL */
    uv_timer_t timer;  /* timeouts and backoff */
    bool record_pending;
    bool gate_passed;  /* the gate of the current row was approved */
    bool abort_requested;
    bool freeing;
    bool closing;
    int depth;         /* engine frames on the stack (teardown deferred until 0) */
    int last_result;
    char *abort_reason;
    char *pending_msg; /* message of the step being committed/failed */
    int commit_to;     /* state the commit being recorded leads to */
    char *final_msg;
    FsmEntry *entries;
    size_t nentries, centries;
};

void fsm__enter(FsmRun *run);
void fsm__leave(FsmRun *run);
void fsm__notify(FsmRun *run, FsmNoticeKind kind, int row, int from, int to, int result,
                 const char *message);
FsmEntry *fsm__entry_open(FsmRun *run, int row, int64_t start_ms);
FsmEntry *fsm__entry_last(FsmRun *run, int row);
void fsm__entry_close(FsmEntry *e, int64_t end_ms, const char *outcome, unsigned attempts,
                      const char *message);
FsmCall *fsm__call_begin(FsmRun *run, int row, FsmCallKind kind);
void fsm__record(FsmRun *run, json_t *ev, FsmNext next);
void fsm__recorded(FsmRun *run, int status);
void fsm__finish(FsmRun *run, FsmStatus status, const char *message);
void fsm__intent(FsmRun *run, int row);
/* Record the commit of the current row towards `outcome`'s state (NULL or "": the row's `to`).
 * An outcome the table does not list fails the attempt instead. */
void fsm__commit(FsmRun *run, const char *message, const char *outcome);
/* State reached from `from` by `outcome`, or FSM_NO_STATE. (fsm_table.c) */
int fsm__branch_target(const FsmTable *t, int from, const char *outcome);
/* True if the row leaving `from` has branches. */
bool fsm__has_branches(const FsmTable *t, int from);
void fsm__attempt_failed(FsmRun *run, int result, const char *message);
void fsm__advance(FsmRun *run);
void fsm__step_done(FsmCall *call, int result, const char *message);
void fsm__plan_done(FsmRun *run, int result, const char *message);
void fsm__probe_answer(FsmRun *run, FsmProbeAnswer answer, const char *message, const char *outcome);

#endif
