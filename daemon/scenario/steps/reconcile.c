/*
 * steps/reconcile: reconcile, the database compared with the exchange since the restore point and
 * the missing fills replayed (cap/reconcile); every attempt's report is kept in the run's context
 * ("reconcile_attempts", the last also as "reconcile"). The step passes only when the report says
 * ready to trade. A scenario step. Also owns the window its fills are compared over
 * (scn_reconcile_since_ms), which the post-resume watch shares.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cap/reconcile.h"
#include "clock.h"
#include "core/core.h"
#include "err.h"
#include "scenario/steps/steps.h"

typedef struct ScnReconciled {
    ScnStep *st;
    int result;
    bool ready;
} ScnReconciled;

static void reconcile_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    (void)run;
    if (status < 0)
        scn_finish(st, status, "cannot record the reconcile report: %s", err_str(status));
    else if (st->work_result < 0)
        scn_finish(st, st->work_result, "reconcile did not pass (%s): trading stays halted", err_str(st->work_result));
    else
        scn_finish(st, 0, "the database matches the exchange: ready to trade");
}

static void reconcile_attempt_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    json_t *report = st->acc;
    st->acc = NULL;
    if (status < 0) {
        json_decref(report);
        scn_finish(st, status, "cannot record the reconcile report: %s", err_str(status));
        return;
    }
    scn_context_set(run, "reconcile", report, reconcile_recorded, st);
}

static void reconcile_done(int result, json_t *report, void *data)
{
    ScnStep *st = data;
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        json_decref(report);
        scn_cancelled(st);
        return;
    }
    bool ready = json_is_true(json_object_get(report, "ready_to_trade"));
    st->work_result = result < 0 ? result : ready ? 0 : DR_ESTATE;
    /* Every attempt is kept ("reconcile_attempts": an attempt that replayed fills and then failed
     * did act on the database), the last one also as "reconcile". */
    const json_t *kept = json_object_get(st->run->ctx, "reconcile_attempts");
    json_t *all = json_is_array(kept) ? json_deep_copy(kept) : json_array();
    json_array_append(all, report ? report : json_null());
    st->acc = report ? report : json_null();
    scn_context_set(st->run, "reconcile_attempts", all, reconcile_attempt_recorded, st);
}

int64_t scn_reconcile_since_ms(const ScnRun *run)
{
    int64_t since = json_integer_value(json_object_get(json_object_get(run->ctx, "backup"), "started_ms"));
    if (since > 0)
        return since;
    /* A point-in-time recovery holds every commit up to its point; a fill the exchange executed
     * shortly before it may have been committed after it (the platform's own lag), hence the
     * margin. Before the point is known (a dry run before planning), every fill. */
    int64_t point = run->def->restore_point_ms ? run->def->restore_point_ms(run) : 0;
    if (point <= 0)
        return 0;
    int64_t margin = (int64_t)run->core->cfg->reconcile.restore_point_margin_ms;
    return point > margin ? point - margin : 0;
}

void scn_step_reconcile(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    int r = reconcile_start(st->run->caps->reconcile, st->run->db_conninfo, scn_reconcile_since_ms(st->run), st->run->id,
                            reconcile_done, st);
    if (r < 0)
        scn_finish(st, r, "cannot start the reconcile: %s", err_str(r));
}

void scn_plan_reconcile(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char msg[600], at[40] = "?";
    int64_t since = scn_reconcile_since_ms(run);
    if (since > 0)
        clock_format_utc_ms(since, at, sizeof(at));
    snprintf(msg, sizeof(msg),
             "would compare '%s' with the exchange's positions and replay the fills since %s, then compare again",
             run->database, since > 0 ? at : "the restore point (not known before the run)");
    done(call, 0, msg);
}

