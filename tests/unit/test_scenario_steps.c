/*
 * Unit tests for daemon/scenario/steps: each shared step (halt_trading, select_backup, reconcile,
 * resume_shadow, resume_live and its probe, post_resume_watch, halt_after_watch, repoint_standbys's
 * hook path, and their dry-run plans) run by the real engine
 * (lib/fsm) over a one-row table, against fake capabilities: the venue, the backup catalog and the
 * reconcile are replaced at link time (-Wl,--wrap) by fakes that record what the step asked and
 * answer as the test scripts them, at once or later on the loop.
 */
// WRAP: venue_halt venue_resume venue_action venue_halted venue_mode venue_note_reconciled venue_parse_mode backups_newest_verified reconcile_start
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
#include <uv.h>
#include <unistd.h>

#include "cap/backup/backup.h"
#include "cap/reconcile.h"
#include "cap/venue/venue.h"
#include "clock.h"
#include "core/events.h"
#include "err.h"
#include "fsm.h"
#include "scenario/database_corruption_internal.h"
#include "scenario/scn_internal.h"
#include "scenario/steps/steps.h"

/* ---- the fakes ---- */

typedef struct Fake {
    /* venue */
    int halt_result;            /* what venue_halt answers */
    int halts;
    char halt_reason[512], halt_run[96];
    int resume_results[4];      /* answers of successive venue_resume calls */
    int resumes;
    bool resume_shadow[4];
    bool resume_allowed_during[4]; /* run->resume_allowed while venue_resume ran */
    bool halted;
    VenueMode mode;
    int reconciled_notes;
    VenueMode parsed_mode;      /* what the status answer says */
    int action_result;
    int actions;
    /* backups */
    json_t *newest;             /* manifest backups_newest_verified returns (a new reference each time) */
    bool scanned;
    /* reconcile */
    int start_result;
    int reconciles;
    int64_t since_ms;
    char conninfo[256];
    int reconcile_result;
    bool ready;
    int ready_script[8];        /* when n_script: the ready_to_trade of successive reconciles */
    int n_script;
    int replay_first;           /* replayed_fill actions in the first reconcile's report */
    ScnRun *run;
    /* events on the bus */
    int critical, warnings;
    char last_event[1024];
} Fake;

static Fake f;

void __wrap_venue_halt(Venue *v, const char *reason, const char *run, VenueDoneFn done, void *data);
void __wrap_venue_halt(Venue *v, const char *reason, const char *run, VenueDoneFn done, void *data)
{
    assert_non_null(v);
    f.halts++;
    snprintf(f.halt_reason, sizeof(f.halt_reason), "%s", reason);
    snprintf(f.halt_run, sizeof(f.halt_run), "%s", run ? run : "");
    done(f.halt_result, f.halt_result ? "the platform refused" : "halted", data);
}

void __wrap_venue_resume(Venue *v, bool shadow, VenueDoneFn done, void *data);
void __wrap_venue_resume(Venue *v, bool shadow, VenueDoneFn done, void *data)
{
    assert_non_null(v);
    assert_true(f.resumes < 4);
    int i = f.resumes++;
    f.resume_shadow[i] = shadow;
    f.resume_allowed_during[i] = f.run->resume_allowed;
    done(f.resume_results[i], f.resume_results[i] ? "refused: no passing reconcile" : shadow ? "shadow" : "live", data);
}

int __wrap_venue_action(Venue *v, VenueActionId id, const VenueWindow *since, VenueResultFn cb, void *data);
int __wrap_venue_action(Venue *v, VenueActionId id, const VenueWindow *since, VenueResultFn cb, void *data)
{
    (void)v;
    (void)since;
    assert_int_equal(id, VENUE_STATUS);
    f.actions++;
    cb(f.action_result, NULL, "{}", f.action_result ? "status failed" : NULL, data);
    return 0;
}

bool __wrap_venue_halted(const Venue *v);
bool __wrap_venue_halted(const Venue *v)
{
    (void)v;
    return f.halted;
}

VenueMode __wrap_venue_mode(const Venue *v);
VenueMode __wrap_venue_mode(const Venue *v)
{
    (void)v;
    return f.mode;
}

void __wrap_venue_note_reconciled(Venue *v, int64_t when_ms);
void __wrap_venue_note_reconciled(Venue *v, int64_t when_ms)
{
    (void)v;
    assert_true(when_ms > 0);
    f.reconciled_notes++;
}

VenueMode __wrap_venue_parse_mode(const ConfigVenue *cfg, const json_t *answer, const char *text);
VenueMode __wrap_venue_parse_mode(const ConfigVenue *cfg, const json_t *answer, const char *text)
{
    (void)cfg;
    (void)answer;
    (void)text;
    return f.parsed_mode;
}

json_t *__wrap_backups_newest_verified(const Backups *b, bool *ret_scanned);
json_t *__wrap_backups_newest_verified(const Backups *b, bool *ret_scanned)
{
    (void)b;
    *ret_scanned = f.scanned;
    return f.newest ? json_deep_copy(f.newest) : NULL;
}

int __wrap_reconcile_start(Reconcile *r, const char *conninfo, int64_t since_ms, const char *run_id, ReconcileDoneFn cb,
                           void *data);
int __wrap_reconcile_start(Reconcile *r, const char *conninfo, int64_t since_ms, const char *run_id, ReconcileDoneFn cb,
                           void *data)
{
    (void)r;
    assert_string_equal(run_id, f.run->id);
    if (f.start_result)
        return f.start_result;
    int i = f.reconciles++;
    f.since_ms = since_ms;
    snprintf(f.conninfo, sizeof(f.conninfo), "%s", conninfo);
    bool ready = f.n_script ? (i < f.n_script && f.ready_script[i]) : f.ready;
    json_t *actions = json_array();
    for (int k = 0; i == 0 && k < f.replay_first; k++)
        json_array_append_new(actions, json_pack("{s:s,s:s}", "action", "replayed_fill", "fill_id", "F1"));
    cb(ready ? f.reconcile_result : DR_ESTATE,
       json_pack("{s:b,s:i,s:o}", "ready_to_trade", ready, "replayed", 3, "actions_taken", actions), data);
    return 0;
}

static void on_event(const Event *ev, void *data)
{
    (void)data;
    f.critical += ev->severity == SEV_CRITICAL;
    f.warnings += ev->severity == SEV_WARNING;
    snprintf(f.last_event, sizeof(f.last_event), "[%s] %s", ev->kind, ev->summary);
}

/* ---- a run of one shared step, through the engine ---- */

typedef struct Harness {
    uv_loop_t loop;
    Config cfg;
    Core core;
    Scenarios s;
    ScenarioCaps caps;
    ScnRun *run;
    FsmRun *fsm;
    FsmState states[2];
    FsmRow row;
    FsmTable table;
    ScenarioDef def;
    int records;
    bool finished;
    uint32_t timeout_ms; /* the row's; 0: 1 s */
} Harness;

static Harness h;

static void mem_record(FsmRun *run, const char *ev, FsmRecorded then, void *data)
{
    (void)ev;
    (void)data;
    h.records++;
    then(run, 0);
}

static void on_notice(FsmRun *run, const FsmNotice *n, void *data)
{
    (void)run;
    (void)data;
    if (n->kind == FSM_NOTICE_FINISHED)
        h.finished = true;
}

static int setup(void **state)
{
    (void)state;
    memset(&f, 0, sizeof(f));
    memset(&h, 0, sizeof(h));
    assert_int_equal(uv_loop_init(&h.loop), 0);
    static char cluster[] = "test";
    h.cfg.cluster = cluster;
    h.core.loop = &h.loop;
    h.core.cfg = &h.cfg;
    h.core.events = events_new();
    assert_non_null(h.core.events);
    assert_true(events_subscribe(h.core.events, on_event, NULL) > 0);
    h.caps.venue = (Venue *)&h;     /* fakes: never dereferenced */
    h.caps.backups = (Backups *)&h;
    h.caps.reconcile = (Reconcile *)&h;
    h.s.core = &h.core;
    h.s.caps = h.caps;
    h.run = calloc(1, sizeof(*h.run));
    h.run->s = &h.s;
    h.run->core = &h.core;
    h.run->caps = &h.s.caps;
    h.run->def = &h.def;
    h.run->refs = 1;
    h.run->ctx = json_object();
    h.run->reason = strdup("checksum failures");
    h.run->bcfg.enabled = true;
    h.run->db_conninfo = strdup("host=/tmp dbname=trading");
    snprintf(h.run->id, sizeof(h.run->id), "20261202T120000Z-corruption-ab12");
    snprintf(h.run->database, sizeof(h.run->database), "trading");
    h.s.runs = h.run;
    h.def.name = "database_corruption";
    f.run = h.run;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    fsm_run_free(h.fsm);
    uv_run(&h.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&h.loop), 0);
    json_decref(f.newest);
    events_free(h.core.events);
    json_decref(h.run->ctx);
    free(h.run->reason);
    free(h.run->db_conninfo);
    free(h.run);
    return 0;
}

/* Run `step` (or its plan, in dry-run mode) as the only row; returns the run's final status. */
static FsmStatus run_step(FsmStepFn step, FsmProbeFn probe, FsmStepFn plan, FsmMode mode, unsigned attempts)
{
    h.states[0] = (FsmState){"before", FSM_STATE_ACTIVE};
    h.states[1] = (FsmState){"after", FSM_STATE_SUCCESS};
    h.row = (FsmRow){0, 1, "the_step", "the step took effect", step, probe, plan, scn_cancel,
                     h.timeout_ms ? h.timeout_ms : 1000, attempts, true, FSM_GATE_NONE, FSM_NO_STATE};
    h.table = (FsmTable){"one_step", h.states, 2, &h.row, 1, NULL, 0};
    h.run->dry = mode == FSM_MODE_DRY_RUN;
    FsmRunOptions o = {.id = h.run->id, .mode = mode, .ctx = h.run, .record = mem_record, .notify = on_notice,
                       .backoff_initial_ms = 1, .backoff_max_ms = 2};
    int r = 0;
    char err[256];
    h.fsm = fsm_run_new(&h.loop, &h.table, &o, &r, err, sizeof(err));
    assert_non_null(h.fsm);
    h.run->fsm = h.fsm;
    assert_int_equal(fsm_run_start(h.fsm), 0);
    while (!h.finished && uv_run(&h.loop, UV_RUN_ONCE))
        ;
    assert_true(h.finished);
    return fsm_run_status(h.fsm);
}

static const char *last_message(void)
{
    static char buf[1024];
    json_t *j = fsm_run_to_json(h.fsm);
    json_t *steps = json_object_get(j, "steps");
    const char *m = json_string_value(json_object_get(json_array_get(steps, json_array_size(steps) - 1), "message"));
    snprintf(buf, sizeof(buf), "%s", m ? m : "");
    json_decref(j);
    return buf;
}

/* ---- halt_trading ---- */

static void test_halt_confirmed(void **state)
{
    (void)state;
    assert_int_equal(run_step(scn_step_halt_trading, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_SUCCEEDED);
    assert_int_equal(f.halts, 1);
    /* The halt names the scenario, the run and the detection, and is tied to the run. */
    assert_non_null(strstr(f.halt_reason, "database_corruption"));
    assert_non_null(strstr(f.halt_reason, h.run->id));
    assert_non_null(strstr(f.halt_reason, "checksum failures"));
    assert_string_equal(f.halt_run, h.run->id);
    assert_string_equal(last_message(), "the venue confirms trading is halted");
}

static void test_halt_not_confirmed_fails_after_its_attempts(void **state)
{
    (void)state;
    f.halt_result = -ETIMEDOUT;
    assert_int_equal(run_step(scn_step_halt_trading, NULL, NULL, FSM_MODE_AUTOMATIC, 3), FSM_RUN_FAILED);
    assert_int_equal(f.halts, 3);
    assert_non_null(strstr(last_message(), "the halt is not confirmed: the platform refused"));
}

static void test_halt_without_a_venue(void **state)
{
    (void)state;
    h.s.caps.venue = NULL;
    assert_int_equal(run_step(scn_step_halt_trading, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_FAILED);
    assert_int_equal(f.halts, 0);
}

static void test_halt_plan(void **state)
{
    (void)state;
    assert_int_equal(run_step(scn_step_halt_trading, NULL, scn_plan_halt_trading, FSM_MODE_DRY_RUN, 1),
                     FSM_RUN_FAILED);
    assert_non_null(strstr(last_message(), "no venue is configured"));
    teardown(NULL);
    setup(NULL);
    h.cfg.venue.enabled = true;
    static char url[] = "http://venue/halt";
    h.cfg.venue.actions[VENUE_HALT] = (ConfigVenueAction){.kind = VENUE_ACTION_HTTP, .url = url};
    assert_int_equal(run_step(scn_step_halt_trading, NULL, scn_plan_halt_trading, FSM_MODE_DRY_RUN, 1),
                     FSM_RUN_SUCCEEDED);
    assert_non_null(strstr(last_message(), "would send the halt: POST http://venue/halt"));
    assert_int_equal(f.halts, 0); /* a plan acts on nothing */
}

/* ---- select_backup ---- */

static json_t *manifest(const char *file)
{
    return json_pack("{s:s,s:s,s:s,s:s}", "file", file, "started_at", "2026-12-02T11:00:00Z", "sha256", "ab12",
                     "database", "trading");
}

static void test_select_backup_records_the_restore_point(void **state)
{
    (void)state;
    f.scanned = true;
    f.newest = manifest("trading-20261202T110000Z.drbk");
    assert_int_equal(run_step(scn_step_select_backup, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_SUCCEEDED);
    json_t *b = json_object_get(h.run->ctx, "backup");
    assert_string_equal(json_string_value(json_object_get(b, "name")), "trading-20261202T110000Z.drbk");
    assert_string_equal(json_string_value(json_object_get(b, "sha256")), "ab12");
    int64_t started_ms = (int64_t)json_integer_value(json_object_get(b, "started_ms"));
    assert_int_equal(started_ms, 1796209200000); /* 2026-12-02T11:00:00Z */
    /* the RPO is measured from it */
    assert_int_equal(scn_backup_restore_point_ms(h.run), started_ms);
    assert_non_null(strstr(last_message(), "is the restore point"));
}

static void test_select_backup_without_one(void **state)
{
    (void)state;
    assert_int_equal(scn_backup_restore_point_ms(h.run), 0);
    f.scanned = true;
    assert_int_equal(run_step(scn_step_select_backup, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_FAILED);
    assert_string_equal(last_message(), "no verified backup in the catalog");
    assert_null(json_object_get(h.run->ctx, "backup"));
    teardown(NULL);
    setup(NULL);
    f.scanned = false;
    assert_int_equal(run_step(scn_step_select_backup, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_FAILED);
    assert_string_equal(last_message(), "the backup catalog is not loaded yet");
    teardown(NULL);
    setup(NULL);
    h.run->bcfg.enabled = false;
    f.scanned = true;
    f.newest = manifest("x.drbk");
    assert_int_equal(run_step(scn_step_select_backup, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_FAILED);
    assert_non_null(strstr(last_message(), "backups are not configured"));
}

/* ---- reconcile ---- */

static void test_reconcile_passes_since_the_restore_point(void **state)
{
    (void)state;
    json_object_set_new(h.run->ctx, "backup", json_pack("{s:I}", "started_ms", (json_int_t)1796209200000));
    f.ready = true;
    assert_int_equal(run_step(scn_step_reconcile, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_SUCCEEDED);
    assert_int_equal(f.reconciles, 1);
    assert_int_equal(f.since_ms, 1796209200000);
    assert_string_equal(f.conninfo, "host=/tmp dbname=trading");
    /* the report is kept for the incident report */
    json_t *rep = json_object_get(h.run->ctx, "reconcile");
    assert_true(json_is_true(json_object_get(rep, "ready_to_trade")));
    assert_int_equal(json_integer_value(json_object_get(rep, "replayed")), 3);
    assert_string_equal(last_message(), "the database matches the exchange: ready to trade");
}

static void test_reconcile_not_ready_fails_and_keeps_the_report(void **state)
{
    (void)state;
    f.ready = false;
    assert_int_equal(run_step(scn_step_reconcile, NULL, NULL, FSM_MODE_AUTOMATIC, 2), FSM_RUN_FAILED);
    assert_int_equal(f.reconciles, 2);
    assert_non_null(strstr(last_message(), "reconcile did not pass"));
    assert_false(json_is_true(json_object_get(json_object_get(h.run->ctx, "reconcile"), "ready_to_trade")));
    /* every attempt is kept, not only the last */
    assert_int_equal(json_array_size(json_object_get(h.run->ctx, "reconcile_attempts")), 2);
    teardown(NULL);
    setup(NULL);
    f.start_result = DR_EBUSY;
    assert_int_equal(run_step(scn_step_reconcile, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_FAILED);
    assert_non_null(strstr(last_message(), "cannot start the reconcile"));
}

/* ---- resume_shadow, resume_live ---- */

static void test_resume_shadow_goes_through_the_guard(void **state)
{
    (void)state;
    assert_int_equal(run_step(scn_step_resume_shadow, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_SUCCEEDED);
    assert_int_equal(f.resumes, 1);
    assert_true(f.resume_shadow[0]);
    /* the guard lets exactly this call through: allowed during it, not after */
    assert_true(f.resume_allowed_during[0]);
    assert_false(h.run->resume_allowed);
    /* the run's committed reconcile is told to the venue */
    assert_int_equal(f.reconciled_notes, 1);
}

static void test_resume_live_from_a_halt_passes_through_shadow(void **state)
{
    (void)state;
    f.halted = true;            /* the venue re-asserted a persisted halt at a restart */
    f.mode = VENUE_MODE_HALTED;
    assert_int_equal(run_step(scn_step_resume_live, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_SUCCEEDED);
    assert_int_equal(f.resumes, 2);
    assert_true(f.resume_shadow[0]);
    assert_false(f.resume_shadow[1]);
    assert_true(f.resume_allowed_during[1]);
    assert_false(h.run->resume_allowed);
    teardown(NULL);
    setup(NULL);
    f.halted = true;
    f.mode = VENUE_MODE_SHADOW; /* already shadow: straight to live */
    assert_int_equal(run_step(scn_step_resume_live, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_SUCCEEDED);
    assert_int_equal(f.resumes, 1);
    assert_false(f.resume_shadow[0]);
}

static void test_resume_refused_fails(void **state)
{
    (void)state;
    f.resume_results[0] = DR_ESTATE;
    assert_int_equal(run_step(scn_step_resume_live, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_FAILED);
    assert_non_null(strstr(last_message(), "resume refused or not confirmed"));
    assert_false(h.run->resume_allowed);
}

/* The probe of resume_live after a crash: asked through the status action. */
static void test_probe_resume_live(void **state)
{
    (void)state;
    static const struct {
        VenueMode mode;
        int result;
        FsmProbeAnswer want;
    } cases[] = {
        {VENUE_MODE_LIVE, 0, FSM_PROBE_YES},
        {VENUE_MODE_SHADOW, 0, FSM_PROBE_NO},
        {VENUE_MODE_HALTED, 0, FSM_PROBE_NO},
        {VENUE_MODE_UNKNOWN, 0, FSM_PROBE_UNKNOWN},
        {VENUE_MODE_LIVE, -ETIMEDOUT, FSM_PROBE_UNKNOWN},
    };
    /* A probe call needs a call handle: the engine's, from a resumed run with the step in doubt. */
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (i) {
            teardown(NULL);
            setup(NULL);
        }
        f.parsed_mode = cases[i].mode;
        f.action_result = cases[i].result;
        h.states[0] = (FsmState){"before", FSM_STATE_ACTIVE};
        h.states[1] = (FsmState){"after", FSM_STATE_SUCCESS};
        h.row = (FsmRow){0, 1, "the_step", "live", scn_step_resume_live, scn_probe_resume_live, NULL, scn_cancel, 1000,
                         1, false, FSM_GATE_NONE, FSM_NO_STATE};
        h.table = (FsmTable){"one_step", h.states, 2, &h.row, 1, NULL, 0};
        FsmRunOptions o = {.id = h.run->id, .mode = FSM_MODE_AUTOMATIC, .ctx = h.run, .record = mem_record,
                           .notify = on_notice};
        int r = 0;
        h.fsm = fsm_run_new(&h.loop, &h.table, &o, &r, NULL, 0);
        assert_non_null(h.fsm);
        h.run->fsm = h.fsm;
        char start[300], intent[300];
        snprintf(start, sizeof(start), "{\"ev\":\"start\",\"run\":\"%s\",\"ts\":1,\"scenario\":\"one_step\",\"mode\":\"automatic\"}",
                 h.run->id);
        snprintf(intent, sizeof(intent), "{\"ev\":\"intent\",\"run\":\"%s\",\"ts\":2,\"row\":0,\"step\":\"the_step\",\"from\":\"before\",\"to\":\"after\"}",
                 h.run->id);
        const char *evs[] = {start, intent};
        char err[256] = "";
        assert_int_equal(fsm_run_resume(h.fsm, evs, 2, err, sizeof(err)), 0);
        while (!h.finished && uv_run(&h.loop, UV_RUN_ONCE))
            if (fsm_run_status(h.fsm) == FSM_RUN_HELD)
                break;
        assert_int_equal(f.actions, 1);
        FsmStatus st = fsm_run_status(h.fsm);
        if (cases[i].want == FSM_PROBE_YES) { /* committed without running the step again */
            assert_int_equal(st, FSM_RUN_SUCCEEDED);
            assert_int_equal(f.resumes, 0);
        } else if (cases[i].want == FSM_PROBE_NO) { /* certainly not live: runs again */
            assert_int_equal(f.resumes, 1);
        } else { /* unknown, not idempotent: held for an operator */
            assert_int_equal(st, FSM_RUN_HELD);
            assert_int_equal(f.resumes, 0);
        }
    }
}

/* ---- post_resume_watch, halt_after_watch ---- */

static uint64_t watch_offsets[2] = {1, 2};

static void watch_config(size_t n)
{
    h.timeout_ms = 30000; /* a check's attempts are SCN_WATCH_RETRY_MS apart */
    h.cfg.reconcile.post_resume_checks_ms = watch_offsets;
    h.cfg.reconcile.n_post_resume_checks = n;
}

static json_t *watch_ctx(void)
{
    return json_object_get(h.run->ctx, "post_resume_watch");
}

static const char *watch_check_status(size_t i)
{
    return json_string_value(json_object_get(json_array_get(json_object_get(watch_ctx(), "checks"), i), "status"));
}

static void test_watch_passes_after_every_check(void **state)
{
    (void)state;
    watch_config(2);
    json_object_set_new(h.run->ctx, "backup", json_pack("{s:I}", "started_ms", (json_int_t)1796209200000));
    f.ready = true;
    f.replay_first = 1; /* the first check replays a fill lost after the resume */
    assert_int_equal(run_step(scn_step_post_resume_watch, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_SUCCEEDED);
    assert_int_equal(f.reconciles, 2);
    assert_int_equal(f.since_ms, 1796209200000); /* the same window as the run's reconcile */
    assert_string_equal(f.conninfo, "host=/tmp dbname=trading");
    assert_string_equal(json_string_value(json_object_get(watch_ctx(), "status")), "passed");
    assert_string_equal(watch_check_status(0), "PASS");
    assert_string_equal(watch_check_status(1), "PASS");
    assert_int_equal(json_integer_value(json_object_get(watch_ctx(), "replayed")), 1);
    assert_string_equal(last_message(), "the post-resume watch passed: 2 checks, 1 fill replayed");
    /* the replay is told (a warning), nothing critical */
    assert_int_equal(f.warnings, 1);
    assert_int_equal(f.critical, 0);
    assert_non_null(strstr(f.last_event, "[scenario.watch]"));
    /* the plan, then one record per attempt, then the verdict: all durable in the run's context */
    assert_true(h.records >= 2);
}

static void test_watch_retries_a_check_then_fails(void **state)
{
    (void)state;
    watch_config(1);
    f.n_script = 3; /* never ready */
    assert_int_equal(run_step(scn_step_post_resume_watch, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_FAILED);
    assert_int_equal(f.reconciles, (int)SCN_WATCH_ATTEMPTS);
    assert_string_equal(json_string_value(json_object_get(watch_ctx(), "status")), "failed");
    assert_string_equal(watch_check_status(0), "FAIL");
    assert_int_equal(json_array_size(json_object_get(json_array_get(json_object_get(watch_ctx(), "checks"), 0), "attempts")),
                     SCN_WATCH_ATTEMPTS);
    assert_non_null(strstr(last_message(), "post-resume check 1 (+1ms) did not pass in 3 attempts"));
    assert_non_null(strstr(last_message(), "trading must be halted again"));
    teardown(NULL);
    setup(NULL);
    /* one attempt that does not pass, then one that does: the check passes */
    watch_config(1);
    f.n_script = 2;
    f.ready_script[1] = 1;
    assert_int_equal(run_step(scn_step_post_resume_watch, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_SUCCEEDED);
    assert_int_equal(f.reconciles, 2);
    assert_string_equal(watch_check_status(0), "PASS");
}

static void test_watch_fails_when_trading_was_halted(void **state)
{
    (void)state;
    watch_config(2);
    f.halted = true; /* someone halted trading during the watch */
    f.ready = true;
    assert_int_equal(run_step(scn_step_post_resume_watch, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_FAILED);
    assert_int_equal(f.reconciles, 0);
    assert_non_null(strstr(last_message(), "trading was halted during the post-resume watch"));
}

static void test_watch_not_configured_passes_at_once(void **state)
{
    (void)state;
    watch_config(0);
    assert_int_equal(run_step(scn_step_post_resume_watch, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_SUCCEEDED);
    assert_int_equal(f.reconciles, 0);
    assert_string_equal(json_string_value(json_object_get(watch_ctx(), "status")), "none");
    assert_non_null(strstr(last_message(), "no post-resume watch is configured"));
}

/* Run again after a restart: the checks already decided are not run again, the plan is the one
 * recorded (not the configuration's, which changed meanwhile). */
static void test_watch_carries_on_where_it_was(void **state)
{
    (void)state;
    watch_config(0);
    int64_t now = clock_wall_ms();
    json_object_set_new(h.run->ctx, "post_resume_watch",
                        json_pack("{s:I,s:I,s:s,s:I,s:[{s:i,s:i,s:I,s:s,s:[{s:i,s:b}]},{s:i,s:i,s:I,s:s,s:[]}]}",
                                  "resumed_ms", (json_int_t)now, "since_ms", (json_int_t)42, "status", "running",
                                  "replayed", (json_int_t)0, "checks", "check", 1, "after_ms", 1, "due_ms",
                                  (json_int_t)now, "status", "PASS", "attempts", "attempt", 1, "ready_to_trade", 1,
                                  "check", 2, "after_ms", 2, "due_ms", (json_int_t)now, "status", "pending",
                                  "attempts"));
    f.ready = true;
    assert_int_equal(run_step(scn_step_post_resume_watch, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_SUCCEEDED);
    assert_int_equal(f.reconciles, 1);
    assert_int_equal(f.since_ms, 42);
    assert_string_equal(watch_check_status(1), "PASS");
    assert_int_equal(f.resumes, 0); /* it never resumes trading itself */
}

static void test_watch_plan(void **state)
{
    (void)state;
    static uint64_t offsets[2] = {10000, 60000};
    h.cfg.reconcile.post_resume_checks_ms = offsets;
    h.cfg.reconcile.n_post_resume_checks = 2;
    assert_int_equal(run_step(scn_step_post_resume_watch, NULL, scn_plan_post_resume_watch, FSM_MODE_DRY_RUN, 1),
                     FSM_RUN_SUCCEEDED);
    assert_non_null(strstr(last_message(), "would reconcile 'trading' with the exchange at +10s, +1m after resume_live"));
    assert_int_equal(f.reconciles, 0);
}

static void test_halt_after_watch_halts_then_pages(void **state)
{
    (void)state;
    json_object_set_new(h.run->ctx, "post_resume_watch",
                        json_pack("{s:s,s:s}", "status", "failed", "message", "post-resume check 1 (+10s) did not pass"));
    assert_int_equal(run_step(scn_step_halt_after_watch, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_SUCCEEDED);
    assert_int_equal(f.halts, 1);
    assert_string_equal(f.halt_run, h.run->id);
    assert_non_null(strstr(f.halt_reason, "the post-resume watch failed: post-resume check 1 (+10s) did not pass"));
    assert_int_equal(f.critical, 1);
    assert_non_null(strstr(f.last_event, "[scenario.watch] run 20261202T120000Z-corruption-ab12: trading is halted again"));
    teardown(NULL);
    setup(NULL);
    /* not confirmed: no page that says it is halted; the step fails (the engine retries it) */
    f.halt_result = -ETIMEDOUT;
    assert_int_equal(run_step(scn_step_halt_after_watch, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_FAILED);
    assert_int_equal(f.critical, 0);
    assert_non_null(strstr(last_message(), "the halt is not confirmed"));
}

/* ---- the incident report's text ---- */

/* 79 replayed fills print as counts per symbol, not one block each; every attempt is there. */
static void test_report_text_summarises_every_reconcile_attempt(void **state)
{
    (void)state;
    static const char *const syms[3] = {"BTC-USD", "ETH-USD", "SOL-USD"};
    json_t *actions = json_array();
    for (int i = 0; i < 79; i++)
        json_array_append_new(actions, json_pack("{s:s,s:s,s:s}", "action", "replayed_fill", "fill_id", "F",
                                                 "symbol", syms[i < 30 ? 0 : i < 55 ? 1 : 2]));
    json_t *disc = json_array();
    for (int i = 0; i < 25; i++)
        json_array_append_new(disc, json_pack("{s:s,s:s,s:s,s:b}", "check", "positions_match", "symbol", "X", "kind",
                                              "quantity", "resolved", 0));
    json_t *first = json_pack("{s:b,s:s,s:[{s:s,s:s}],s:o,s:o}", "ready_to_trade", 0, "result", "bad_state", "checks",
                              "name", "positions_match", "status", "FAIL", "actions_taken", actions, "discrepancies", disc);
    json_t *second = json_pack("{s:b,s:s,s:[{s:s,s:s}],s:[],s:[]}", "ready_to_trade", 1, "result", "ok", "checks",
                               "name", "positions_match", "status", "PASS", "actions_taken", "discrepancies");
    json_t *rep = json_pack("{s:s,s:O,s:[OO]}", "run", "R1", "reconcile", second, "reconcile_attempts", first, second);
    char *text = scn_report_text(rep);
    assert_non_null(text);
    assert_non_null(strstr(text, "Reconcile attempt 1 of 2: ready_to_trade NO (result bad_state)"));
    assert_non_null(strstr(text, "replayed   79 fills: BTC-USD 30, ETH-USD 25, SOL-USD 24"));
    assert_non_null(strstr(text, "... and 15 more unresolved"));
    assert_non_null(strstr(text, "Reconcile attempt 2 of 2: ready_to_trade yes (result ok)"));
    size_t lines = 0;
    for (const char *p = text; *p; p++)
        lines += *p == '\n';
    assert_true(lines < 60);
    free(text);
    json_decref(rep);
    json_decref(first);
    json_decref(second);
}

/* ---- repoint_standbys ---- */

static ConfigReplicationNode sb_nodes[3];

/* pg1 (the old primary), pg2 (promoted, at new_primary), and n_others more standbys. */
static void sb_cluster(size_t n_others, const char *new_primary)
{
    static char n1[] = "pg1", n2[] = "pg2", n3[] = "pg3";
    static char c1[] = "host=127.0.0.1 port=1", c3[] = "host=127.0.0.1 port=3";
    static char c2[128];
    snprintf(c2, sizeof(c2), "%s", new_primary);
    sb_nodes[0] = (ConfigReplicationNode){.name = n1, .conninfo = c1, .primary = true};
    sb_nodes[1] = (ConfigReplicationNode){.name = n2, .conninfo = c2};
    sb_nodes[2] = (ConfigReplicationNode){.name = n3, .conninfo = c3};
    h.cfg.replication.nodes = sb_nodes;
    h.cfg.replication.n_nodes = 2 + n_others;
    h.cfg.replication.failover.standby_timeout_ms = 1000;
    h.cfg.replication.failover.hook_timeout_ms = 5000;
    json_object_set_new(h.run->ctx, "standby", json_pack("{s:s,s:s}", "name", "pg2", "conninfo", c2));
    json_object_set_new(h.run->ctx, "old_primary", json_pack("{s:s}", "name", "pg1"));
    h.timeout_ms = 20000;
}

static void test_repoint_standbys_with_no_other_standby(void **state)
{
    (void)state;
    sb_cluster(0, "host=127.0.0.1 port=2");
    assert_int_equal(run_step(scn_step_repoint_standbys, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_SUCCEEDED);
    assert_string_equal(last_message(), "no other standby to point at the new primary");
    assert_int_equal(json_array_size(json_object_get(h.run->ctx, "standbys")), 0);
}

/* The hook gets the standby and the new primary; a standby that never streams from it (the new
 * primary does not answer here) is reported, and the step still succeeds: trading does not need it. */
static void test_repoint_standbys_hook_then_not_following_does_not_fail(void **state)
{
    (void)state;
    char out[] = "/tmp/drsup-test-repoint-standby-XXXXXX";
    int fd = mkstemp(out);
    assert_true(fd >= 0);
    close(fd);
    char script[300];
    snprintf(script, sizeof(script), "echo \"$DRSUP_STANDBY $DRSUP_NEW_PRIMARY $DRSUP_RUN\" > %s", out);
    char sh[] = "/bin/sh", c[] = "-c";
    char *argv[] = {sh, c, script, NULL};
    sb_cluster(1, "host=127.0.0.1 port=1 connect_timeout=1");
    h.cfg.replication.failover.repoint_standby = argv;
    h.cfg.replication.failover.n_repoint_standby = 3;
    assert_int_equal(run_step(scn_step_repoint_standbys, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_SUCCEEDED);
    assert_non_null(strstr(last_message(), "0 of 1 other standby(s) stream from 'pg2'; not following: pg3"));
    json_t *sb = json_array_get(json_object_get(h.run->ctx, "standbys"), 0);
    assert_string_equal(json_string_value(json_object_get(sb, "node")), "pg3");
    assert_string_equal(json_string_value(json_object_get(sb, "how")), "the repoint_standby hook");
    assert_false(json_is_true(json_object_get(sb, "following")));
    assert_non_null(strstr(json_string_value(json_object_get(sb, "why")), "not streaming from the new primary"));
    char got[256] = "";
    FILE *fp = fopen(out, "r");
    assert_non_null(fp);
    assert_non_null(fgets(got, sizeof(got), fp));
    fclose(fp);
    unlink(out);
    char want[256];
    snprintf(want, sizeof(want), "pg3 pg2 %s\n", h.run->id);
    assert_string_equal(got, want);
}

/* A hook that fails: that standby is reported with the hook's outcome, the step succeeds. */
static void test_repoint_standbys_hook_fails(void **state)
{
    (void)state;
    char sh[] = "/bin/sh", c[] = "-c", script[] = "echo 'no route to pg3' >&2; exit 3";
    char *argv[] = {sh, c, script, NULL};
    sb_cluster(1, "host=127.0.0.1 port=1");
    h.cfg.replication.failover.repoint_standby = argv;
    h.cfg.replication.failover.n_repoint_standby = 3;
    assert_int_equal(run_step(scn_step_repoint_standbys, NULL, NULL, FSM_MODE_AUTOMATIC, 1), FSM_RUN_SUCCEEDED);
    json_t *sb = json_array_get(json_object_get(h.run->ctx, "standbys"), 0);
    assert_false(json_is_true(json_object_get(sb, "following")));
    const char *why = json_string_value(json_object_get(sb, "why"));
    assert_non_null(strstr(why, "the repoint_standby hook"));
    assert_non_null(strstr(why, "exited with status 3: no route to pg3"));
}

static void test_repoint_standbys_plan(void **state)
{
    (void)state;
    sb_cluster(1, "host=127.0.0.1 port=2");
    assert_int_equal(run_step(scn_step_repoint_standbys, NULL, scn_plan_repoint_standbys, FSM_MODE_DRY_RUN, 1),
                     FSM_RUN_SUCCEEDED);
    assert_non_null(strstr(last_message(), "ALTER SYSTEM SET primary_conninfo"));
    assert_non_null(strstr(last_message(), "each of 1 other standby(s)"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_halt_confirmed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_halt_not_confirmed_fails_after_its_attempts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_halt_without_a_venue, setup, teardown),
        cmocka_unit_test_setup_teardown(test_halt_plan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_select_backup_records_the_restore_point, setup, teardown),
        cmocka_unit_test_setup_teardown(test_select_backup_without_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconcile_passes_since_the_restore_point, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reconcile_not_ready_fails_and_keeps_the_report, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_shadow_goes_through_the_guard, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_live_from_a_halt_passes_through_shadow, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume_refused_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_probe_resume_live, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_passes_after_every_check, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_retries_a_check_then_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_fails_when_trading_was_halted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_not_configured_passes_at_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_carries_on_where_it_was, setup, teardown),
        cmocka_unit_test_setup_teardown(test_watch_plan, setup, teardown),
        cmocka_unit_test_setup_teardown(test_halt_after_watch_halts_then_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repoint_standbys_with_no_other_standby, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repoint_standbys_hook_then_not_following_does_not_fail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repoint_standbys_hook_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_repoint_standbys_plan, setup, teardown),
        cmocka_unit_test(test_report_text_summarises_every_reconcile_attempt),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
