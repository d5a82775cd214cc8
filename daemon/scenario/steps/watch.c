/*
 * steps/watch: post_resume_watch, the database checked against the exchange after trading went
 * live again, and halt_after_watch, trading halted again when that check failed. Scenario steps.
 *
 * Why: a fill written in the first moments after the resume can be lost (its session was killed by
 * the recovery's own rename and its first write failed), and nothing else would notice. The watch
 * runs a reconcile (cap/reconcile: missing fills replayed, positions compared) at each offset of
 * reconcile.post_resume_checks after resume_live ended. A check passes when one of its attempts
 * (at most SCN_WATCH_ATTEMPTS, SCN_WATCH_RETRY_MS apart: trading is live, so one comparison can
 * catch a fill the platform is writing at that moment) says ready to trade; a check that never
 * does, or trading halted by anyone during the watch, fails the step, and the table's on_failure
 * row (halt_after_watch) halts trading again.
 *
 * Durable and idempotent: the plan (when trading resumed, the offsets taken from the configuration
 * when the watch first started) and every check and attempt are kept in the run's context
 * "post_resume_watch", persisted before the step moves on. Run again after a restart, the step
 * carries on with the first check not yet decided, on the same schedule (a check already due runs
 * at once); it never resumes trading itself.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cap/reconcile.h"
#include "cap/venue/venue.h"
#include "cfgtree.h"
#include "clock.h"
#include "core/core.h"
#include "err.h"
#include "log.h"
#include "scenario/steps/steps.h"

#define WATCH_KEY "post_resume_watch"

static void watch_next(ScnStep *st);

/* When trading went live again: the end of the run's live step in its timeline, else now. */
static int64_t watch_resumed_ms(const ScnRun *run)
{
    json_t *j = fsm_run_to_json(run->fsm);
    int64_t at = 0;
    size_t i;
    const json_t *e;
    json_array_foreach(json_object_get(j, "steps"), i, e) {
        const char *name = json_string_value(json_object_get(e, "step"));
        const char *outcome = json_string_value(json_object_get(e, "outcome"));
        if (name && outcome && run->def->live_step && strcmp(name, run->def->live_step) == 0 && strcmp(outcome, "ok") == 0)
            at = (int64_t)json_integer_value(json_object_get(e, "end_ms"));
    }
    json_decref(j);
    return at > 0 ? at : clock_wall_ms();
}

/* The exchange's fills since the restore point (the same window as the run's reconcile). */
static int64_t watch_since_ms(const ScnRun *run)
{
    int64_t since = scn_reconcile_since_ms(run);
    if (since > 0)
        return since;
    return run->detected_ms - (int64_t)run->core->cfg->reconcile.default_since_ms;
}

static size_t watch_replayed(const json_t *report)
{
    size_t n = 0, i;
    const json_t *a;
    json_array_foreach(json_object_get(report, "actions_taken"), i, a) {
        const char *what = json_string_value(json_object_get(a, "action"));
        n += what && strcmp(what, "replayed_fill") == 0;
    }
    return n;
}

/* The watch's record in the run's context; a new one from the configuration when there is none. */
static json_t *watch_record(const ScnRun *run)
{
    const json_t *kept = json_object_get(run->ctx, WATCH_KEY);
    if (json_is_object(kept))
        return json_deep_copy(kept);
    const ConfigReconcile *rc = &run->core->cfg->reconcile;
    int64_t resumed = watch_resumed_ms(run);
    json_t *checks = json_array();
    for (size_t i = 0; checks && i < rc->n_post_resume_checks; i++)
        json_array_append_new(checks, json_pack("{s:I,s:I,s:I,s:s,s:[]}", "check", (json_int_t)(i + 1), "after_ms",
                                                (json_int_t)rc->post_resume_checks_ms[i], "due_ms",
                                                (json_int_t)(resumed + (int64_t)rc->post_resume_checks_ms[i]),
                                                "status", "pending", "attempts"));
    return json_pack("{s:I,s:I,s:s,s:o,s:I}", "resumed_ms", (json_int_t)resumed, "since_ms",
                     (json_int_t)watch_since_ms(run), "status", checks && json_array_size(checks) ? "running" : "none",
                     "checks", checks ? checks : json_array(), "replayed", (json_int_t)0);
}

static void watch_persisted(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    (void)run;
    if (status < 0) {
        scn_finish(st, status, "cannot record the post-resume watch: %s", err_str(status));
        return;
    }
    watch_next(st);
}

/* Make the record durable (the run's journal), then decide what comes next. */
static void watch_persist(ScnStep *st)
{
    scn_context_set(st->run, WATCH_KEY, json_deep_copy(st->acc), watch_persisted, st);
}

static void watch_fail(ScnStep *st, json_t *check, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* The watch failed: the check (may be NULL) and the record say why; persisted, then the step fails. */
static void watch_fail(ScnStep *st, json_t *check, const char *fmt, ...)
{
    char msg[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (check)
        json_object_set_new(check, "status", json_string("FAIL"));
    json_object_set_new(st->acc, "status", json_string("failed"));
    json_object_set_new(st->acc, "message", json_string(msg));
    watch_persist(st);
}

static json_t *watch_pending_check(const json_t *rec)
{
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(rec, "checks"), i, c) {
        if (strcmp(json_string_value(json_object_get(c, "status")) ?: "", "pending") == 0)
            return c;
    }
    return NULL;
}

static void watch_reconciled(int result, json_t *report, void *data)
{
    ScnStep *st = data;
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        json_decref(report);
        scn_cancelled(st);
        return;
    }
    json_t *check = watch_pending_check(st->acc);
    if (!check) {
        json_decref(report);
        scn_finish(st, DR_EINTERNAL, "the post-resume watch lost track of its check");
        return;
    }
    json_t *attempts = json_object_get(check, "attempts");
    bool ready = result == 0 && json_is_true(json_object_get(report, "ready_to_trade"));
    size_t replayed = watch_replayed(report);
    json_array_append_new(attempts, json_pack("{s:I,s:I,s:s,s:b,s:I,s:o}", "attempt",
                                              (json_int_t)(json_array_size(attempts) + 1), "at_ms",
                                              (json_int_t)clock_wall_ms(), "result", result ? err_name(result) : "ok",
                                              "ready_to_trade", ready, "replayed", (json_int_t)replayed, "reconcile",
                                              report ? report : json_null()));
    json_object_set_new(st->acc, "replayed",
                        json_integer(json_integer_value(json_object_get(st->acc, "replayed")) + (json_int_t)replayed));
    int64_t n = json_integer_value(json_object_get(check, "check"));
    if (replayed) {
        LogFields lf = {st->run->id, st->run->def->name, "post_resume_watch"};
        events_emit_run(st->run->core->events, SEV_WARNING, "scenario.watch", NULL, false, NULL, &lf,
                        "run %s: post-resume check %" PRId64 " replayed %zu fill%s the database lost after the resume",
                        st->run->id, n, replayed, replayed == 1 ? "" : "s");
    }
    if (ready) {
        json_object_set_new(check, "status", json_string("PASS"));
        watch_persist(st);
        return;
    }
    if (json_array_size(attempts) < SCN_WATCH_ATTEMPTS) {
        watch_persist(st); /* the next attempt waits SCN_WATCH_RETRY_MS (watch_next) */
        return;
    }
    char after[32];
    cfg_format_duration((uint64_t)json_integer_value(json_object_get(check, "after_ms")), after, sizeof(after));
    const json_t *e = json_object_get(report, "error");
    watch_fail(st, check, "post-resume check %" PRId64 " (+%s) did not pass in %u attempts: %s", n, after,
               SCN_WATCH_ATTEMPTS,
               e ? json_string_value(json_object_get(e, "message")) ?: "the reconcile failed"
                 : "a mismatch with the exchange that replaying cannot resolve");
}

static void watch_check(ScnStep *st)
{
    json_t *check = watch_pending_check(st->acc);
    Venue *v = st->run->caps->venue;
    if (!v || !st->run->caps->reconcile) {
        scn_finish(st, DR_ECANCELED, "the daemon is stopping");
        return;
    }
    if (venue_halted(v)) {
        watch_fail(st, check, "trading was halted during the post-resume watch");
        return;
    }
    int64_t since = json_integer_value(json_object_get(st->acc, "since_ms"));
    int r = reconcile_start(st->run->caps->reconcile, st->run->db_conninfo, since, st->run->id, watch_reconciled, st);
    if (r < 0) {
        /* e.g. an operator's `drctl reconcile` is running: an attempt that could not run */
        json_t *rep = json_pack("{s:b,s:{s:s,s:s}}", "ready_to_trade", 0, "error", "code", err_name(r), "message",
                                r == DR_EBUSY ? "another reconcile is running" : err_str(r));
        watch_reconciled(r, rep, st);
    }
}

static void watch_on_timer(uv_timer_t *t)
{
    watch_check(t->data);
}

static void watch_next(ScnStep *st)
{
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    const char *status = json_string_value(json_object_get(st->acc, "status")) ?: "?";
    size_t nchecks = json_array_size(json_object_get(st->acc, "checks"));
    json_int_t replayed = json_integer_value(json_object_get(st->acc, "replayed"));
    if (strcmp(status, "none") == 0) {
        scn_finish(st, 0, "no post-resume watch is configured (reconcile.post_resume_checks is empty)");
        return;
    }
    if (strcmp(status, "failed") == 0) {
        scn_finish(st, DR_ESTATE, "%s: trading must be halted again",
                   json_string_value(json_object_get(st->acc, "message")) ?: "the post-resume watch failed");
        return;
    }
    if (strcmp(status, "passed") == 0) {
        scn_finish(st, 0, "the post-resume watch passed: %zu check%s, %lld fill%s replayed", nchecks,
                   nchecks == 1 ? "" : "s", (long long)replayed, replayed == 1 ? "" : "s");
        return;
    }
    json_t *check = watch_pending_check(st->acc);
    if (!check) {
        /* Every check passed; trading must still be live for the watch to pass. */
        if (st->run->caps->venue && venue_halted(st->run->caps->venue)) {
            watch_fail(st, NULL, "trading was halted during the post-resume watch");
            return;
        }
        json_object_set_new(st->acc, "status", json_string("passed"));
        watch_persist(st);
        return;
    }
    /* The check's time after the resume, or a retry after the previous attempt. */
    const json_t *attempts = json_object_get(check, "attempts");
    int64_t due = json_integer_value(json_object_get(check, "due_ms"));
    if (json_array_size(attempts)) {
        int64_t last = json_integer_value(json_object_get(json_array_get(attempts, json_array_size(attempts) - 1), "at_ms"));
        if (last + (int64_t)SCN_WATCH_RETRY_MS > due)
            due = last + (int64_t)SCN_WATCH_RETRY_MS;
    }
    int64_t wait = due - clock_wall_ms();
    if (scn_step_wait(st, wait > 0 ? (uint64_t)wait : 0, watch_on_timer) < 0)
        scn_finish(st, -ENOMEM, "cannot wait for the next post-resume check: out of memory");
}

void scn_step_post_resume_watch(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    bool resumed = json_is_object(json_object_get(st->run->ctx, WATCH_KEY));
    st->acc = watch_record(st->run);
    if (!st->acc) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    if (resumed) {
        LogFields lf = {st->run->id, st->run->def->name, "post_resume_watch"};
        log_emit(LOG_NOTICE, "scenario", &lf, "the post-resume watch carries on where it was (status '%s')",
                 json_string_value(json_object_get(st->acc, "status")) ?: "?");
    }
    watch_persist(st); /* the plan is durable before the first check */
}

void scn_plan_post_resume_watch(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    const ConfigReconcile *rc = &run->core->cfg->reconcile;
    char msg[768], d[32];
    if (!rc->n_post_resume_checks) {
        done(call, 0, "no post-resume watch is configured (reconcile.post_resume_checks is empty)");
        return;
    }
    size_t o = (size_t)snprintf(msg, sizeof(msg), "would reconcile '%s' with the exchange at", run->database);
    for (size_t i = 0; i < rc->n_post_resume_checks && o < sizeof(msg); i++) {
        cfg_format_duration(rc->post_resume_checks_ms[i], d, sizeof(d));
        o += (size_t)snprintf(msg + o, sizeof(msg) - o, "%s +%s", i ? "," : "", d);
    }
    if (o < sizeof(msg))
        snprintf(msg + o, sizeof(msg) - o,
                 " after resume_live, replaying missing fills; a mismatch it cannot replay halts trading again");
    done(call, 0, msg);
}

/* ---- halt_after_watch ---- */

static void watch_on_halted(int result, const char *message, void *data)
{
    ScnStep *st = data;
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    if (result < 0) {
        scn_finish(st, result, "the halt is not confirmed: %s", message ? message : err_str(result));
        return;
    }
    const char *why = json_string_value(json_object_get(json_object_get(st->run->ctx, WATCH_KEY), "message"));
    LogFields lf = {st->run->id, st->run->def->name, "halt_after_watch"};
    events_emit_run(st->run->core->events, SEV_CRITICAL, "scenario.watch", NULL, false, NULL, &lf,
                    "run %s: trading is halted again: the post-resume watch failed (%s); the recovery did not succeed",
                    st->run->id, why ? why : "?");
    scn_finish(st, 0, "the venue confirms trading is halted again");
}

void scn_step_halt_after_watch(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char reason[768];
    if (!st)
        return;
    if (!st->run->caps->venue) {
        scn_finish(st, DR_ECANCELED, "the daemon is stopping");
        return;
    }
    const char *why = json_string_value(json_object_get(json_object_get(st->run->ctx, WATCH_KEY), "message"));
    snprintf(reason, sizeof(reason), "scenario %s run %s: the post-resume watch failed: %s", st->run->def->name,
             st->run->id, why ? why : "?");
    venue_halt(st->run->caps->venue, reason, st->run->id, watch_on_halted, st);
}
