/*
 * drill_internal: what drill.c (the job) and drill_book.c (history, schedule, free space,
 * readiness, metrics, the listing commands) share; not for other modules.
 */
#ifndef DRSUP_DRILL_INTERNAL_H
#define DRSUP_DRILL_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "cron.h"
#include "scenario/drill.h"

typedef struct DrillRun DrillRun;

/* The free space measured on the thread pool (drill_book.c). */
typedef struct DrillSpace {
    bool measured;
    int64_t at_ms;
    char backup_dir[4096], data_dir[4096]; /* what was measured ("" none) */
    int backup_err, data_err;              /* -errno of statvfs, 0 ok */
    uint64_t backup_free, data_free;
} DrillSpace;

typedef struct DrillSched {
    CronExpr expr;
    char *cron;                            /* as configured, for drctl drills */
    char *scenario;
    int64_t next_s;                        /* Unix seconds of its next minute */
} DrillSched;

struct Drills {
    Core *core;
    Backups *backups;
    Reconcile *reconcile;
    DrillRun *run;            /* the drill in flight, or NULL */
    json_t *history;          /* summaries of finished drills, oldest first */
    bool loaded;              /* the history was read */
    DrillSched *sched;
    size_t n_sched;
    uv_timer_t *sched_timer;  /* the next scheduled drill (closed at close) */
    uv_timer_t *space_timer;  /* the next free-space measurement */
    bool space_busy;
    DrillSpace space;
    bool closing;
    unsigned pending;         /* thread-pool work, handles closing, a drill in flight */
    void (*closed_cb)(void *data);
    void *closed_data;
};

/* drill.c: start a drill of `scenario` (trigger: "operator", "schedule"); waiter (may be NULL) is
 * answered with the report, or with the id at once when detach. 0, or <0 with err filled. */
int drill__start(Drills *ds, const char *scenario, const char *trigger, CtlCall *waiter, bool detach, char *ret_id,
                 size_t id_len, char *err, size_t errlen);
/* The lease was taken (a recovery run): abort the drill in flight. */
void drill__on_lease(bool held, void *data);
/* Abort the drill in flight (why, for the report). */
void drill__abort(Drills *ds, const char *why);
void drill__maybe_closed(Drills *ds);
/* The id of the drill in flight, NULL when none. */
const char *drill__running_id(const Drills *ds);
/* At close: the waiter answered, the drill in flight aborted (it still drops its scratch database). */
void drill__stop(Drills *ds);

/* drill_book.c */
int drill__book_register(Drills *ds);
/* A drill finished: its summary (stolen) into the history, the condition, metrics follow. */
void drill__book_add(Drills *ds, json_t *summary);
/* The summary of a drill report (new reference). */
json_t *drill__summary(const json_t *report);
/* state_dir/incidents (and /<id>.json) */
void drill__path(const Drills *ds, char *out, size_t n, const char *id);
void drill__book_close(Drills *ds);

#endif
