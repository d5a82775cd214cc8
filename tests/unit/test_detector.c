/*
 * Unit tests for daemon/detector_sm: the detector's decisions fed with observations and a fake
 * clock. Halt after N failed probes (once), restart scheduling and exhaustion, "database back"
 * keeps trading halted, corruption signals (checksum_failures rising, XX001/XX002 from probes and
 * checks, damaged files at start) halting at once and triggering only on a second observation
 * with detected_ms = the first, clearing by a clean check, no restore for a merely-down database,
 * and conditions that close whatever the order of outage, answer and the end of a recovery run;
 * the app crash: the platform's health down down_after times with the database answering is the
 * incident (once per platform episode, kept by a re-arm), with the database down it is not.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "detect/detector_sm.h"

static const DetectorSmConfig cfg2 = {.halt_after = 2, .can_restart = true, .restart_attempts = 2, .restart_delay_ms = 500};

static bool has_event(const DetectorDecision *d, DetectorEventKind k)
{
    for (size_t i = 0; i < d->n_events; i++)
        if (d->events[i].kind == k)
            return true;
    return false;
}

static void test_halt_after_n_failures_then_restart(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    detector_sm_init(&sm, &cfg2);

    detector_sm_probe_ok(&sm, 1000, 0, &d);
    assert_int_equal(d.actions, 0);
    detector_sm_probe_failed(&sm, 1250, "", "connection refused", &d);
    assert_int_equal(d.actions, 0);
    assert_int_equal(detector_sm_phase(&sm), DETECTOR_HEALTHY);
    detector_sm_probe_failed(&sm, 1500, "", "connection refused", &d);
    assert_true(d.actions & DETECTOR_ACT_HALT);
    assert_true(d.actions & DETECTOR_ACT_RESTART);
    assert_false(d.actions & DETECTOR_ACT_TRIGGER);
    assert_int_equal(d.restart_delay_ms, 500);
    assert_non_null(strstr(d.halt_reason, "database unreachable: connection refused"));
    assert_true(has_event(&d, DETECTOR_EV_UNREACHABLE));
    assert_int_equal(detector_sm_phase(&sm), DETECTOR_DOWN);
    /* Further failures: no second halt, no second restart while one is pending. */
    detector_sm_probe_failed(&sm, 1750, "", "connection refused", &d);
    assert_int_equal(d.actions, 0);
    assert_int_equal(d.n_events, 0);
}

static void test_database_back_keeps_halt_and_never_triggers(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    detector_sm_init(&sm, &cfg2);
    detector_sm_probe_ok(&sm, 0, 0, &d);
    detector_sm_probe_failed(&sm, 250, "", "refused", &d);
    detector_sm_probe_failed(&sm, 500, "57P03", "the database system is starting up", &d);
    assert_true(d.actions & DETECTOR_ACT_HALT);
    detector_sm_restart_result(&sm, 1200, true, false, "", &d);
    assert_int_equal(d.actions, 0);
    detector_sm_probe_ok(&sm, 1500, 0, &d);
    assert_true(has_event(&d, DETECTOR_EV_BACK));
    assert_non_null(strstr(d.events[0].message, "trading stays halted until a reconcile passes"));
    assert_int_equal(d.actions, 0); /* no resume, no trigger */
    assert_int_equal(detector_sm_phase(&sm), DETECTOR_HEALTHY);
    /* A new outage halts again. */
    detector_sm_probe_failed(&sm, 2000, "", "refused", &d);
    detector_sm_probe_failed(&sm, 2250, "", "refused", &d);
    assert_true(d.actions & DETECTOR_ACT_HALT);
}

static void test_restart_failures_exhaust_without_restore(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    detector_sm_init(&sm, &cfg2);
    detector_sm_probe_failed(&sm, 0, "", "refused", &d);
    detector_sm_probe_failed(&sm, 250, "", "refused", &d);
    assert_true(d.actions & DETECTOR_ACT_RESTART);
    detector_sm_restart_result(&sm, 900, false, false, "pg_ctl: could not start server", &d);
    assert_true(has_event(&d, DETECTOR_EV_RESTART_FAILED));
    assert_true(d.actions & DETECTOR_ACT_RESTART);
    detector_sm_restart_result(&sm, 1600, false, false, "still no", &d);
    assert_false(d.actions & DETECTOR_ACT_RESTART);
    assert_false(d.actions & DETECTOR_ACT_TRIGGER);
    assert_true(has_event(&d, DETECTOR_EV_RESTARTS_EXHAUSTED));
    detector_sm_probe_failed(&sm, 1800, "", "refused", &d);
    detector_sm_probe_failed(&sm, 2000, "", "refused", &d);
    assert_int_equal(d.actions, 0);
    assert_int_equal(d.n_events, 0); /* reported once */
}

static void test_restart_ok_but_still_down_retries(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    detector_sm_init(&sm, &cfg2);
    detector_sm_probe_failed(&sm, 0, "", "refused", &d);
    detector_sm_probe_failed(&sm, 250, "", "refused", &d);
    detector_sm_restart_result(&sm, 900, true, false, "", &d);
    detector_sm_probe_failed(&sm, 1000, "", "refused", &d);
    assert_false(d.actions & DETECTOR_ACT_RESTART);
    detector_sm_probe_failed(&sm, 1250, "", "refused", &d);
    assert_true(d.actions & DETECTOR_ACT_RESTART);
}

static void test_no_restart_command(void **state)
{
    (void)state;
    DetectorSmConfig c = cfg2;
    c.can_restart = false;
    DetectorSm sm;
    DetectorDecision d;
    detector_sm_init(&sm, &c);
    detector_sm_probe_failed(&sm, 0, "", "refused", &d);
    detector_sm_probe_failed(&sm, 250, "", "refused", &d);
    assert_true(d.actions & DETECTOR_ACT_HALT);
    assert_false(d.actions & DETECTOR_ACT_RESTART);
}

static void test_xx001_twice_confirms_with_first_time(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    detector_sm_init(&sm, &cfg2);
    detector_sm_probe_ok(&sm, 0, 0, &d);
    detector_sm_check_result(&sm, 5000, 4900, false, "XX001", "invalid page in block 3 of relation base/5/16384", &d);
    assert_true(d.actions & DETECTOR_ACT_HALT);
    assert_true(d.actions & DETECTOR_ACT_CHECK_NOW);
    assert_false(d.actions & DETECTOR_ACT_TRIGGER);
    assert_true(has_event(&d, DETECTOR_EV_SUSPECTED));
    assert_non_null(strstr(d.halt_reason, "suspected database corruption"));
    assert_int_equal(detector_sm_phase(&sm), DETECTOR_SUSPECT);
    detector_sm_check_result(&sm, 5100, 5001, false, "XX001", "invalid page in block 3", &d);
    assert_true(d.actions & DETECTOR_ACT_TRIGGER);
    assert_int_equal(d.detected_ms, 5000);
    assert_non_null(strstr(d.trigger_reason, "invalid page"));
    assert_true(has_event(&d, DETECTOR_EV_CONFIRMED));
    assert_int_equal(detector_sm_phase(&sm), DETECTOR_CONFIRMED);
    /* More signals after confirmation: nothing new. */
    detector_sm_check_result(&sm, 6000, 5900, false, "XX001", "invalid page", &d);
    assert_int_equal(d.actions, 0);
    detector_sm_reset(&sm);
    assert_int_equal(detector_sm_phase(&sm), DETECTOR_HEALTHY);
}

static void test_checksum_failures_rising(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    detector_sm_init(&sm, &cfg2);
    detector_sm_probe_ok(&sm, 0, 3, &d); /* baseline, old failures are not a signal */
    assert_int_equal(d.actions, 0);
    detector_sm_probe_ok(&sm, 250, 3, &d);
    assert_int_equal(d.actions, 0);
    detector_sm_probe_ok(&sm, 500, 4, &d);
    assert_true(d.actions & DETECTOR_ACT_HALT);
    assert_non_null(strstr(d.events[0].message, "from 3 to 4"));
    detector_sm_probe_ok(&sm, 750, 4, &d);
    assert_int_equal(d.actions, 0);
    detector_sm_probe_failed(&sm, 1000, "XX002", "index \"orders_pkey\" contains unexpected zero page", &d);
    assert_true(d.actions & DETECTOR_ACT_TRIGGER);
    assert_int_equal(d.detected_ms, 500);
}

static void test_clean_check_clears_only_if_started_after(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    detector_sm_init(&sm, &cfg2);
    detector_sm_probe_failed(&sm, 1000, "XX001", "invalid page", &d);
    assert_int_equal(detector_sm_phase(&sm), DETECTOR_SUSPECT);
    detector_sm_check_result(&sm, 1100, 900, true, "", "", &d); /* started before the signal */
    assert_int_equal(detector_sm_phase(&sm), DETECTOR_SUSPECT);
    detector_sm_check_result(&sm, 1200, 1001, true, "", "", &d);
    assert_true(has_event(&d, DETECTOR_EV_CLEARED));
    assert_int_equal(detector_sm_phase(&sm), DETECTOR_HEALTHY);
    assert_int_equal(d.actions, 0);
    /* A non-corruption error of a check is not a signal. */
    detector_sm_check_result(&sm, 1300, 1250, false, "42P01", "relation \"orders\" does not exist", &d);
    assert_int_equal(d.actions, 0);
    detector_sm_check_result(&sm, 1300, 1250, false, "", "connection refused", &d);
    assert_int_equal(detector_sm_phase(&sm), DETECTOR_HEALTHY);
}

static void test_damaged_start_confirmed_by_second_attempt(void **state)
{
    (void)state;
    DetectorSmConfig c = cfg2;
    c.restart_attempts = 3;
    DetectorSm sm;
    DetectorDecision d;
    detector_sm_init(&sm, &c);
    detector_sm_probe_failed(&sm, 0, "", "refused", &d);
    detector_sm_probe_failed(&sm, 250, "", "refused", &d);
    assert_true(d.actions & DETECTOR_ACT_RESTART);
    detector_sm_restart_result(&sm, 1000, false, true, "PANIC: could not locate a valid checkpoint record", &d);
    assert_true(has_event(&d, DETECTOR_EV_SUSPECTED));
    assert_true(d.actions & DETECTOR_ACT_RESTART);
    assert_false(d.actions & DETECTOR_ACT_TRIGGER);
    detector_sm_restart_result(&sm, 2000, false, true, "PANIC: could not locate a valid checkpoint record", &d);
    assert_true(d.actions & DETECTOR_ACT_TRIGGER);
    assert_false(d.actions & DETECTOR_ACT_RESTART);
    assert_int_equal(d.detected_ms, 1000);
    assert_non_null(strstr(d.trigger_reason, "damaged files"));
}

static void test_single_damaged_start_without_attempts_left_is_not_a_restore(void **state)
{
    (void)state;
    DetectorSmConfig c = cfg2;
    c.restart_attempts = 1;
    DetectorSm sm;
    DetectorDecision d;
    detector_sm_init(&sm, &c);
    detector_sm_probe_failed(&sm, 0, "", "refused", &d);
    detector_sm_probe_failed(&sm, 250, "", "refused", &d);
    detector_sm_restart_result(&sm, 1000, false, true, "invalid page", &d);
    assert_false(d.actions & DETECTOR_ACT_TRIGGER);
    assert_true(has_event(&d, DETECTOR_EV_RESTARTS_EXHAUSTED));
    assert_non_null(strstr(d.events[d.n_events - 1].message, "not confirmed"));
}

static void test_sqlstate_class(void **state)
{
    (void)state;
    assert_true(detector_sm_is_corruption_sqlstate("XX001"));
    assert_true(detector_sm_is_corruption_sqlstate("XX002"));
    assert_false(detector_sm_is_corruption_sqlstate("XX000"));
    assert_false(detector_sm_is_corruption_sqlstate(""));
    assert_false(detector_sm_is_corruption_sqlstate(NULL));
    assert_string_equal(detector_sm_phase_name(DETECTOR_SUSPECT), "corruption_suspected");
}

/*
 * Conditions close when their cause is gone, whatever the order of events: the rules of
 * detector_sm.h ("Conditions close ..."), one interleaving per row.
 */
typedef enum { OP_FAIL, OP_OK, OP_RUN_OK, OP_RUN_FAILED, OP_SIGNAL, OP_CLEAN_CHECK } CondOp;

typedef struct {
    const char *name;
    CondOp ops[8];
    size_t n_ops;
    /* how many opening and resolving events of each condition the sequence must produce */
    int unreachable_opened, unreachable_resolved, corruption_opened, corruption_resolved;
    bool unreachable_open_after, corruption_open_after;
} CondCase;

static const CondCase cond_cases[] = {
    {"outage, back before the run ends", {OP_FAIL, OP_FAIL, OP_OK, OP_RUN_OK}, 4, 1, 1, 0, 0, false, false},
    /* the 45 ms race: the first answer comes after the run ended and re-armed the machine */
    {"outage, back only after the run ended", {OP_FAIL, OP_FAIL, OP_RUN_OK, OP_OK}, 4, 1, 1, 0, 0, false, false},
    {"outage, run fails, back later", {OP_FAIL, OP_FAIL, OP_RUN_FAILED, OP_FAIL, OP_OK}, 5, 1, 1, 0, 0, false, false},
    {"outage still there after the run: stays open", {OP_FAIL, OP_FAIL, OP_RUN_OK, OP_FAIL}, 4, 1, 0, 0, 0, true, false},
    {"corruption handled by a successful run", {OP_SIGNAL, OP_SIGNAL, OP_RUN_OK}, 3, 0, 0, 2, 1, false, false},
    {"corruption, the run fails: stays open", {OP_SIGNAL, OP_SIGNAL, OP_RUN_FAILED}, 3, 0, 0, 2, 0, false, true},
    {"corruption, failed run, a later run succeeds", {OP_SIGNAL, OP_SIGNAL, OP_RUN_FAILED, OP_RUN_OK}, 4, 0, 0, 2, 1,
     false, false},
    {"suspicion cleared by a clean check", {OP_SIGNAL, OP_CLEAN_CHECK, OP_RUN_OK}, 3, 0, 0, 1, 1, false, false},
    {"a run with nothing open resolves nothing", {OP_OK, OP_RUN_OK, OP_OK}, 3, 0, 0, 0, 0, false, false},
    {"corruption and an outage in one run, back after it", {OP_SIGNAL, OP_SIGNAL, OP_FAIL, OP_FAIL, OP_RUN_OK, OP_OK},
     6, 1, 1, 2, 1, false, false},
};

static void test_conditions_close_whatever_the_order(void **state)
{
    (void)state;
    for (size_t k = 0; k < sizeof(cond_cases) / sizeof(cond_cases[0]); k++) {
        const CondCase *c = &cond_cases[k];
        DetectorSm sm;
        DetectorDecision d;
        int uo = 0, ur = 0, co = 0, cr = 0;
        int64_t t = 1000;
        detector_sm_init(&sm, &cfg2);
        detector_sm_probe_ok(&sm, t, 0, &d);
        for (size_t i = 0; i < c->n_ops; i++) {
            t += 250;
            switch (c->ops[i]) {
            case OP_FAIL:
                detector_sm_probe_failed(&sm, t, "", "connection refused", &d);
                break;
            case OP_OK:
                detector_sm_probe_ok(&sm, t, 0, &d);
                break;
            case OP_RUN_OK:
                detector_sm_run_ended(&sm, t, true, "run-1", &d);
                break;
            case OP_RUN_FAILED:
                detector_sm_run_ended(&sm, t, false, "run-1", &d);
                break;
            case OP_SIGNAL:
                detector_sm_check_result(&sm, t, t - 10, false, "XX001", "invalid page", &d);
                break;
            case OP_CLEAN_CHECK:
                detector_sm_check_result(&sm, t, t - 10, true, "", "", &d);
                break;
            }
            uo += has_event(&d, DETECTOR_EV_UNREACHABLE);
            ur += has_event(&d, DETECTOR_EV_BACK);
            co += has_event(&d, DETECTOR_EV_SUSPECTED) + has_event(&d, DETECTOR_EV_CONFIRMED);
            cr += has_event(&d, DETECTOR_EV_CLEARED) + has_event(&d, DETECTOR_EV_RECOVERED);
        }
        print_message("case: %s\n", c->name);
        assert_int_equal(uo, c->unreachable_opened);
        assert_int_equal(ur, c->unreachable_resolved);
        assert_int_equal(co, c->corruption_opened);
        assert_int_equal(cr, c->corruption_resolved);
        assert_int_equal(sm.unreachable_open, c->unreachable_open_after);
        assert_int_equal(sm.corruption_open, c->corruption_open_after);
        /* Never a resolution without an opening. */
        assert_true(ur <= uo && cr <= co);
    }
}

static void test_run_ended_rearms_and_says_which_run(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    detector_sm_init(&sm, &cfg2);
    detector_sm_probe_ok(&sm, 0, 0, &d);
    detector_sm_check_result(&sm, 100, 90, false, "XX001", "invalid page", &d);
    detector_sm_check_result(&sm, 200, 190, false, "XX001", "invalid page", &d);
    assert_int_equal(detector_sm_phase(&sm), DETECTOR_CONFIRMED);
    detector_sm_run_ended(&sm, 300, true, "20261202T100000Z-corruption-ab12", &d);
    assert_int_equal(d.n_events, 1);
    assert_int_equal(d.events[0].kind, DETECTOR_EV_RECOVERED);
    assert_non_null(strstr(d.events[0].message, "20261202T100000Z-corruption-ab12"));
    assert_non_null(strstr(d.events[0].message, "replaced the damaged database"));
    assert_int_equal(d.actions, 0);
    assert_int_equal(detector_sm_phase(&sm), DETECTOR_HEALTHY);
    /* Re-armed: a new corruption is a new episode (opens again, halts again). */
    detector_sm_check_result(&sm, 400, 390, false, "XX001", "invalid page", &d);
    assert_true(has_event(&d, DETECTOR_EV_SUSPECTED));
    assert_true(d.actions & DETECTOR_ACT_HALT);
}

/* After a restart the machine cannot know what an earlier run of the daemon left open: the first
 * answer resolves detector.unreachable once, a successful run detector.corruption once. */
static void test_conditions_left_open_by_an_earlier_daemon_close(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    detector_sm_init(&sm, &cfg2);
    detector_sm_assume_open(&sm);
    assert_false(sm.unreachable_open); /* not shown as open: only possibly */
    detector_sm_probe_ok(&sm, 100, 0, &d);
    assert_true(has_event(&d, DETECTOR_EV_BACK));
    assert_int_equal(d.actions, 0);
    detector_sm_probe_ok(&sm, 200, 0, &d);
    assert_int_equal(d.n_events, 0);
    detector_sm_run_ended(&sm, 300, false, "run-1", &d); /* failed: the damage may still be there */
    assert_int_equal(d.n_events, 0);
    detector_sm_run_ended(&sm, 400, true, "run-2", &d);
    assert_true(has_event(&d, DETECTOR_EV_RECOVERED));
    /* it may have been a failover: no claim that a damaged database was replaced */
    assert_null(strstr(d.events[0].message, "replaced the damaged database"));
    assert_non_null(strstr(d.events[0].message, "run-2"));
    detector_sm_run_ended(&sm, 500, true, "run-3", &d);
    assert_int_equal(d.n_events, 0);
}

/* ---- primary failure: both sides must agree ---- */

static const DetectorSmConfig cfg_fo = {.halt_after = 2, .failover = true, .failover_grace_ms = 3000};

static DetectorStandbyView view(bool primary_answers, unsigned lost, const char *candidate)
{
    DetectorStandbyView v = {.primary_answers = primary_answers, .standbys_asked = 1, .standbys_lost = lost};
    snprintf(v.lost_by, sizeof(v.lost_by), "%s", lost ? "pg2" : "");
    snprintf(v.candidate, sizeof(v.candidate), "%s", candidate);
    if (!candidate[0])
        snprintf(v.why, sizeof(v.why), "pg2: 6430688 bytes behind, more than failover.maximum_lag (1048576)");
    return v;
}

/* Two failed probes from t=1000: down (halted) at 1250. */
static void down_at_1250(DetectorSm *sm, DetectorDecision *d)
{
    detector_sm_init(sm, &cfg_fo);
    detector_sm_probe_failed(sm, 1000, "", "connection refused", d);
    detector_sm_probe_failed(sm, 1250, "", "connection refused", d);
    assert_true(d->actions & DETECTOR_ACT_HALT);
}

static void test_failover_needs_the_grace_and_both_sides(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    DetectorStandbyView v = view(false, 1, "pg2");
    down_at_1250(&sm, &d);
    /* within the grace (measured from the first failure): not even asked */
    assert_false(detector_sm_wants_standby_view(&sm, 3999));
    detector_sm_standby_view(&sm, 3999, &v, &d);
    assert_int_equal(d.actions, 0);
    assert_int_equal(d.n_events, 0);
    assert_true(detector_sm_wants_standby_view(&sm, 4000));
    /* both sides agree and pg2 can be promoted: the incident, detected at the first failure */
    detector_sm_standby_view(&sm, 4000, &v, &d);
    assert_true(d.actions & DETECTOR_ACT_TRIGGER);
    assert_int_equal(d.incident, DETECTOR_INCIDENT_PRIMARY_FAILURE);
    assert_int_equal(d.detected_ms, 1000);
    assert_non_null(strstr(d.trigger_reason, "pg2 lost its WAL stream; candidate pg2"));
    assert_true(has_event(&d, DETECTOR_EV_PRIMARY_LOST));
    /* once per episode */
    assert_false(detector_sm_wants_standby_view(&sm, 4250));
    detector_sm_standby_view(&sm, 4250, &v, &d);
    assert_int_equal(d.actions, 0);
}

static void test_one_side_alone_only_halts(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    down_at_1250(&sm, &d);
    /* the standby still streams from the primary: the daemon's own network */
    DetectorStandbyView v = view(false, 0, "pg2");
    detector_sm_standby_view(&sm, 5000, &v, &d);
    assert_false(d.actions & DETECTOR_ACT_TRIGGER);
    assert_true(has_event(&d, DETECTOR_EV_FAILOVER_ONE_SIDE));
    assert_non_null(strstr(d.events[0].message, "every standby still streams from it"));
    detector_sm_standby_view(&sm, 5250, &v, &d); /* said once */
    assert_int_equal(d.n_events, 0);
    /* the replication probe still reaches the primary although a standby lost it: still one side */
    v = view(true, 1, "pg2");
    detector_sm_standby_view(&sm, 5500, &v, &d);
    assert_false(d.actions & DETECTOR_ACT_TRIGGER);
    /* then the standby side agrees too: now it is a primary failure */
    v = view(false, 1, "pg2");
    detector_sm_standby_view(&sm, 5750, &v, &d);
    assert_true(d.actions & DETECTOR_ACT_TRIGGER);
}

static void test_no_eligible_standby_pages_and_promotes_nothing(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    down_at_1250(&sm, &d);
    DetectorStandbyView v = view(false, 1, "");
    detector_sm_standby_view(&sm, 4000, &v, &d);
    assert_false(d.actions & DETECTOR_ACT_TRIGGER);
    assert_true(has_event(&d, DETECTOR_EV_FAILOVER_NO_STANDBY));
    assert_non_null(strstr(d.events[0].message, "more than failover.maximum_lag"));
    assert_true(sm.failover_open);
    /* the primary answers again: the condition resolves, trading stays halted */
    detector_sm_probe_ok(&sm, 4250, -1, &d);
    assert_true(has_event(&d, DETECTOR_EV_FAILOVER_CLEARED));
    assert_true(has_event(&d, DETECTOR_EV_BACK));
    assert_false(d.actions & DETECTOR_ACT_TRIGGER);
    assert_false(sm.failover_open);
}

static void test_a_blip_within_the_grace_and_no_failover_section(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    DetectorStandbyView v = view(false, 1, "pg2");
    down_at_1250(&sm, &d);
    /* answers at 3500 (inside the 3 s grace): back, and the next outage measures afresh */
    detector_sm_probe_ok(&sm, 3500, -1, &d);
    assert_false(d.actions & DETECTOR_ACT_TRIGGER);
    detector_sm_probe_failed(&sm, 10000, "", "connection refused", &d);
    detector_sm_probe_failed(&sm, 10250, "", "connection refused", &d);
    assert_false(detector_sm_wants_standby_view(&sm, 12999));
    assert_true(detector_sm_wants_standby_view(&sm, 13000));
    /* without a failover section a lost primary only halts */
    DetectorSmConfig off = cfg_fo;
    off.failover = false;
    detector_sm_configure(&sm, &off);
    assert_false(detector_sm_wants_standby_view(&sm, 20000));
    detector_sm_standby_view(&sm, 20000, &v, &d);
    assert_int_equal(d.actions, 0);
}


/* ---- app crash ---- */

static const DetectorSmConfig cfg_ac = {.halt_after = 2, .app_crash = true, .platform_down_after = 3};

static void test_app_crash_platform_down_database_fine(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    detector_sm_init(&sm, &cfg_ac);

    detector_sm_probe_ok(&sm, 1000, 0, &d);
    detector_sm_platform_failed(&sm, 1100, "connection refused", &d);
    assert_int_equal(d.actions, 0);
    detector_sm_platform_failed(&sm, 1600, "connection refused", &d);
    assert_int_equal(d.actions, 0);
    detector_sm_probe_ok(&sm, 1700, 0, &d); /* the database answers in between */
    detector_sm_platform_failed(&sm, 2100, "connection refused", &d);
    assert_true(d.actions & DETECTOR_ACT_TRIGGER);
    assert_false(d.actions & DETECTOR_ACT_HALT); /* the scenario's kill switch halts */
    assert_int_equal(d.incident, DETECTOR_INCIDENT_APP_CRASH);
    assert_int_equal(d.detected_ms, 1100); /* the first failed health probe */
    assert_true(has_event(&d, DETECTOR_EV_APP_CRASH));
    assert_non_null(strstr(d.trigger_reason, "3 failed probes: connection refused"));
    /* Once per episode: more failures, a run that ended (re-arm) and failures again start nothing. */
    detector_sm_platform_failed(&sm, 2600, "connection refused", &d);
    assert_int_equal(d.actions, 0);
    assert_int_equal(d.n_events, 0);
    detector_sm_run_ended(&sm, 2700, false, "run-1", &d);
    detector_sm_probe_ok(&sm, 2800, 0, &d);
    detector_sm_platform_failed(&sm, 3100, "connection refused", &d);
    assert_int_equal(d.actions, 0);
    /* The platform answers: resolved, and re-armed. */
    detector_sm_platform_ok(&sm, 3600, &d);
    assert_true(has_event(&d, DETECTOR_EV_APP_CRASH_CLEARED));
    detector_sm_platform_ok(&sm, 4100, &d);
    assert_int_equal(d.n_events, 0);
    for (int i = 0; i < 2; i++) {
        detector_sm_platform_failed(&sm, 4600 + 500 * i, "HTTP 503", &d);
        assert_int_equal(d.actions, 0);
    }
    detector_sm_platform_failed(&sm, 5600, "HTTP 503", &d);
    assert_true(d.actions & DETECTOR_ACT_TRIGGER);
    assert_int_equal(d.detected_ms, 4600);
}

static void test_app_crash_not_with_the_database_down(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    detector_sm_init(&sm, &cfg_ac);

    /* Never a database answer yet: the database is not known to be fine. */
    for (int i = 0; i < 3; i++)
        detector_sm_platform_failed(&sm, 1000 + 100 * i, "refused", &d);
    assert_int_equal(d.actions, 0);
    assert_true(has_event(&d, DETECTOR_EV_APP_CRASH_NOT));
    /* The database down (halted by its own rule): still not an app crash, and said once. */
    detector_sm_probe_failed(&sm, 1400, "", "connection refused", &d);
    detector_sm_probe_failed(&sm, 1500, "", "connection refused", &d);
    assert_int_equal(detector_sm_phase(&sm), DETECTOR_DOWN);
    detector_sm_platform_failed(&sm, 1600, "refused", &d);
    assert_int_equal(d.actions, 0);
    assert_int_equal(d.n_events, 0);
    /* One failed database probe is enough to doubt it. */
    detector_sm_probe_ok(&sm, 1700, 0, &d);
    detector_sm_probe_failed(&sm, 1800, "", "timeout", &d);
    detector_sm_platform_failed(&sm, 1900, "refused", &d);
    assert_int_equal(d.actions, 0);
    /* The database answers while the platform still fails: the next failure is the app crash. */
    detector_sm_probe_ok(&sm, 2000, 0, &d);
    detector_sm_platform_failed(&sm, 2100, "refused", &d);
    assert_true(d.actions & DETECTOR_ACT_TRIGGER);
    assert_int_equal(d.incident, DETECTOR_INCIDENT_APP_CRASH);
    assert_int_equal(d.detected_ms, 1000);
}

static void test_app_crash_off_or_corruption(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    DetectorSmConfig off = cfg_ac;
    off.app_crash = false;
    detector_sm_init(&sm, &off);
    detector_sm_probe_ok(&sm, 1000, 0, &d);
    for (int i = 0; i < 10; i++) {
        detector_sm_platform_failed(&sm, 1100 + 100 * i, "refused", &d);
        assert_int_equal(d.actions, 0);
        assert_int_equal(d.n_events, 0);
    }
    /* Suspected corruption: the database's scenario owns trading, not an app crash. */
    detector_sm_init(&sm, &cfg_ac);
    detector_sm_probe_ok(&sm, 1000, 0, &d);
    detector_sm_probe_ok(&sm, 1100, 1, &d);
    assert_int_equal(detector_sm_phase(&sm), DETECTOR_SUSPECT);
    for (int i = 0; i < 3; i++)
        detector_sm_platform_failed(&sm, 1200 + 100 * i, "refused", &d);
    assert_int_equal(d.actions, 0);
    assert_true(has_event(&d, DETECTOR_EV_APP_CRASH_NOT));
}

/* Two primaries in one round: halt and the network_partition incident at once, once per episode,
 * kept by a re-arm; one primary again resolves it and re-arms. */
static void test_split_brain_halts_at_once_once_per_episode(void **state)
{
    (void)state;
    DetectorSm sm;
    DetectorDecision d;
    detector_sm_init(&sm, &cfg_ac);

    detector_sm_split_brain(&sm, 1000, false, "pg1", &d);
    assert_int_equal(d.actions, 0);
    assert_int_equal(d.n_events, 0);
    detector_sm_split_brain(&sm, 2000, true, "pg1,pg2", &d);
    assert_int_equal(d.actions, DETECTOR_ACT_HALT | DETECTOR_ACT_TRIGGER);
    assert_int_equal(d.incident, DETECTOR_INCIDENT_NETWORK_PARTITION);
    assert_int_equal(d.detected_ms, 2000);
    assert_true(has_event(&d, DETECTOR_EV_SPLIT_BRAIN));
    assert_non_null(strstr(d.trigger_reason, "pg1,pg2"));
    assert_non_null(strstr(d.halt_reason, "pg1,pg2"));
    /* The next rounds, and a run that ended with both still writable: nothing more. */
    detector_sm_split_brain(&sm, 3000, true, "pg1,pg2", &d);
    assert_int_equal(d.actions, 0);
    assert_int_equal(d.n_events, 0);
    detector_sm_run_ended(&sm, 3500, false, "run-1", &d);
    detector_sm_split_brain(&sm, 4000, true, "pg1,pg2", &d);
    assert_int_equal(d.actions, 0);
    /* One primary: resolved; a new split brain later is a new episode. */
    detector_sm_split_brain(&sm, 5000, false, "pg1", &d);
    assert_int_equal(d.actions, 0);
    assert_true(has_event(&d, DETECTOR_EV_SPLIT_BRAIN_CLEARED));
    detector_sm_split_brain(&sm, 6000, false, "pg1", &d);
    assert_int_equal(d.n_events, 0);
    detector_sm_split_brain(&sm, 7000, true, "pg1,pg3", &d);
    assert_true(d.actions & DETECTOR_ACT_TRIGGER);
    assert_int_equal(d.detected_ms, 7000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_halt_after_n_failures_then_restart),
        cmocka_unit_test(test_database_back_keeps_halt_and_never_triggers),
        cmocka_unit_test(test_restart_failures_exhaust_without_restore),
        cmocka_unit_test(test_restart_ok_but_still_down_retries),
        cmocka_unit_test(test_no_restart_command),
        cmocka_unit_test(test_xx001_twice_confirms_with_first_time),
        cmocka_unit_test(test_checksum_failures_rising),
        cmocka_unit_test(test_clean_check_clears_only_if_started_after),
        cmocka_unit_test(test_damaged_start_confirmed_by_second_attempt),
        cmocka_unit_test(test_single_damaged_start_without_attempts_left_is_not_a_restore),
        cmocka_unit_test(test_sqlstate_class),
        cmocka_unit_test(test_conditions_close_whatever_the_order),
        cmocka_unit_test(test_run_ended_rearms_and_says_which_run),
        cmocka_unit_test(test_conditions_left_open_by_an_earlier_daemon_close),
        cmocka_unit_test(test_failover_needs_the_grace_and_both_sides),
        cmocka_unit_test(test_one_side_alone_only_halts),
        cmocka_unit_test(test_no_eligible_standby_pages_and_promotes_nothing),
        cmocka_unit_test(test_a_blip_within_the_grace_and_no_failover_section),
        cmocka_unit_test(test_app_crash_platform_down_database_fine),
        cmocka_unit_test(test_app_crash_not_with_the_database_down),
        cmocka_unit_test(test_app_crash_off_or_corruption),
        cmocka_unit_test(test_split_brain_halts_at_once_once_per_episode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
