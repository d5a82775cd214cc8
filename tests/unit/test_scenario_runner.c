/*
 * Unit tests for the runner's hand-off (daemon/scenario/runner.c): a run that ends in a hand-off
 * state (FSM_STATE_HANDOFF) starts the scenario that handles the incident kind it names, with the
 * same detection time and a reason naming the first run, before the recovery lease is let go, and
 * the first run's condition is resolved (the second carries the incident on); a
 * hand-off to a kind no scenario handles pages and leaves trading halted; and a failed control
 * registration makes scenarios_new fail cleanly.
 *
 * The runner is the real one, with its journals and reports in a temporary state directory, the
 * real events bus, lease and status. The registry is replaced at link time (-Wl,--wrap) by two
 * scenarios of the test's own: "first" (one step, then a hand-off state) and "second" (one step,
 * then success); control_register is wrapped so no socket is needed.
 */
// WRAP: control_register scenario_count scenario_at scenario_find scenario_for_incident scenario_handoff_incident
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

#include "config/config.h"
#include "core/core.h"
#include "err.h"
#include "fsm.h"
#include "scenario/scenario.h"
#include "scenario/scenarios.h"
#include "scenario/scn_internal.h"

/* ---- the test's registry ---- */

typedef struct Seen {
    int first_steps, second_steps;
    char second_reason[600];
    int64_t first_detected, second_detected;
    char first_id[96], second_id[96];
    FsmMode second_mode;
    /* the lease, as its listeners saw it after the trigger */
    bool lease_seq[8];
    int n_lease;
    bool watching_lease;
    /* events */
    char handoff_end[600];  /* scenario.end of the handed-off run */
    char handoff_resolve[600]; /* its condition resolved: the second run carries the incident on */
    char second_end[600];   /* scenario.end of the second run */
    char handoff_page[600]; /* scenario.handoff (critical): the hand-off could not start */
    Severity handoff_page_sev;
    int control_result;
    const char *handoff_kind; /* what "first"'s hand-off state names */
} Seen;

static Seen seen;

static void first_step(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    seen.first_steps++;
    seen.first_detected = run->detected_ms;
    snprintf(seen.first_id, sizeof(seen.first_id), "%s", run->id);
    done(call, 0, "the server is up but a table is damaged: this is a corruption");
}

static void second_step(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    seen.second_steps++;
    seen.second_detected = run->detected_ms;
    seen.second_mode = run->mode;
    snprintf(seen.second_reason, sizeof(seen.second_reason), "%s", run->reason ? run->reason : "");
    snprintf(seen.second_id, sizeof(seen.second_id), "%s", run->id);
    done(call, 0, "recovered");
}

enum { F_START, F_HANDED, F_N };
static const FsmState first_states[F_N] = {
    [F_START] = {"detected", FSM_STATE_ACTIVE},
    [F_HANDED] = {"handed_to_second", FSM_STATE_HANDOFF},
};
static const FsmRow first_rows[] = {
    {F_START, F_HANDED, "look", "the kind of failure is known", first_step, NULL, NULL, NULL, 5000, 1, true,
     FSM_GATE_NONE, FSM_NO_STATE},
};
static const FsmTable first_table = {"first", first_states, F_N, first_rows, 1, NULL, 0};

enum { S_START, S_LIVE, S_N };
static const FsmState second_states[S_N] = {
    [S_START] = {"detected", FSM_STATE_ACTIVE},
    [S_LIVE] = {"live", FSM_STATE_SUCCESS},
};
static const FsmRow second_rows[] = {
    {S_START, S_LIVE, "recover", "the database is recovered", second_step, NULL, NULL, NULL, 5000, 1, true,
     FSM_GATE_NONE, FSM_NO_STATE},
};
static const FsmTable second_table = {"second", second_states, S_N, second_rows, 1, NULL, 0};

static const ConfigScenarioSection first_section = {"first", 0, 60000, 60000, NULL, NULL, NULL};
static const ConfigScenarioSection second_section = {"second", 0, 60000, 60000, NULL, NULL, NULL};
static const char *const first_handles[] = {"k1", NULL};
static const char *const second_handles[] = {"k2", NULL};

static const ScenarioDef first_def = {.name = "first", .short_name = "first", .summary = "looks, then hands off",
                                      .table = &first_table, .handles = first_handles, .live_step = "look",
                                      .config = &first_section};
static const ScenarioDef second_def = {.name = "second", .short_name = "second", .summary = "recovers",
                                       .table = &second_table, .handles = second_handles, .live_step = "recover",
                                       .config = &second_section};
static const ScenarioDef *const defs[] = {&first_def, &second_def};

size_t __wrap_scenario_count(void);
size_t __wrap_scenario_count(void)
{
    return 2;
}

const ScenarioDef *__wrap_scenario_at(size_t i);
const ScenarioDef *__wrap_scenario_at(size_t i)
{
    return i < 2 ? defs[i] : NULL;
}

const ScenarioDef *__wrap_scenario_find(const char *name);
const ScenarioDef *__wrap_scenario_find(const char *name)
{
    for (size_t i = 0; name && i < 2; i++)
        if (strcmp(defs[i]->name, name) == 0)
            return defs[i];
    return NULL;
}

const ScenarioDef *__wrap_scenario_for_incident(const char *kind);
const ScenarioDef *__wrap_scenario_for_incident(const char *kind)
{
    for (size_t i = 0; kind && i < 2; i++)
        for (const char *const *k = defs[i]->handles; *k; k++)
            if (strcmp(*k, kind) == 0)
                return defs[i];
    return NULL;
}

const char *__wrap_scenario_handoff_incident(const ScenarioDef *def, const char *state);
const char *__wrap_scenario_handoff_incident(const ScenarioDef *def, const char *state)
{
    return def == &first_def && state && strcmp(state, "handed_to_second") == 0 ? seen.handoff_kind : NULL;
}

int __wrap_control_register(Control *ctl, const CtlCommand *cmds, size_t n);
int __wrap_control_register(Control *ctl, const CtlCommand *cmds, size_t n)
{
    (void)ctl;
    assert_non_null(cmds);
    assert_true(n > 0);
    return seen.control_result;
}

/* ---- the harness: a Core around the real runner ---- */

typedef struct Harness {
    uv_loop_t loop;
    char dir[64];
    Config cfg;
    ConfigScenario sections[2];
    Core core;
    Scenarios *s;
    int sub;
    bool closed;
} Harness;

static Harness h;

static void on_event(const Event *ev, void *data)
{
    (void)data;
    if (strcmp(ev->kind, "scenario.end") == 0 && ev->run) {
        if (strcmp(ev->run, seen.first_id) == 0 && ev->resolved)
            snprintf(seen.handoff_resolve, sizeof(seen.handoff_resolve), "%s", ev->summary);
        else if (strcmp(ev->run, seen.first_id) == 0)
            snprintf(seen.handoff_end, sizeof(seen.handoff_end), "%s", ev->summary);
        else
            snprintf(seen.second_end, sizeof(seen.second_end), "%s", ev->summary);
    }
    if (strcmp(ev->kind, "scenario.handoff") == 0) {
        snprintf(seen.handoff_page, sizeof(seen.handoff_page), "%s", ev->summary);
        seen.handoff_page_sev = ev->severity;
    }
}

static void on_lease(bool held, void *data)
{
    (void)data;
    if (seen.watching_lease && seen.n_lease < 8)
        seen.lease_seq[seen.n_lease++] = held;
}

static int setup(void **state)
{
    (void)state;
    memset(&h, 0, sizeof(h));
    memset(&seen, 0, sizeof(seen));
    seen.handoff_kind = "k2";
    assert_int_equal(uv_loop_init(&h.loop), 0);
    snprintf(h.dir, sizeof(h.dir), "/tmp/drsup-runner-XXXXXX");
    assert_non_null(mkdtemp(h.dir));
    static char cluster[] = "test", conninfo[] = "host=/tmp dbname=trading";
    h.cfg.cluster = cluster;
    h.cfg.state_dir = h.dir;
    h.cfg.node_dir = h.dir; /* without ha: the same */
    h.cfg.database.conninfo = conninfo;
    h.sections[0] = (ConfigScenario){.def = &first_section, .rto_ms = 60000, .rpo_ms = 60000};
    h.sections[1] = (ConfigScenario){.def = &second_section, .rto_ms = 60000, .rpo_ms = 60000};
    h.cfg.scenarios.list = h.sections;
    h.cfg.scenarios.n = 2;
    h.core.loop = &h.loop;
    h.core.cfg = &h.cfg;
    h.core.events = events_new();
    h.core.status = status_new();
    h.core.lease = lease_new();
    assert_non_null(h.core.events);
    assert_non_null(h.core.lease);
    h.sub = events_subscribe(h.core.events, on_event, NULL);
    assert_true(h.sub >= 0);
    assert_int_equal(lease_listen(h.core.lease, on_lease, NULL), 0);
    return 0;
}

static void on_closed(void *data)
{
    (void)data;
    h.closed = true;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    if (h.s) {
        scenarios_close(h.s, on_closed, NULL);
        while (!h.closed && uv_run(&h.loop, UV_RUN_ONCE))
            ;
        assert_true(h.closed);
    }
    uv_run(&h.loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&h.loop), 0);
    lease_unlisten(h.core.lease, on_lease, NULL);
    events_unsubscribe(h.core.events, h.sub);
    events_free(h.core.events);
    status_free(h.core.status);
    lease_free(h.core.lease);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", h.dir);
    assert_int_equal(system(cmd), 0);
    return 0;
}

static void start_runner(void)
{
    static const ScenarioCaps caps; /* no venue, backups, reconcile, standby or detector */
    h.s = scenarios_new(&h.core, &caps);
    assert_non_null(h.s);
    assert_int_equal(scenarios_start(h.s), 0);
    while (scenarios_active(h.s) && uv_run(&h.loop, UV_RUN_ONCE)) /* the start-up scan */
        ;
    assert_false(scenarios_active(h.s));
}

/* Run the loop until `done` or nothing is left to do. */
static void run_until(const bool *done)
{
    while (!*done && uv_run(&h.loop, UV_RUN_ONCE))
        ;
}

static bool second_ended(void)
{
    return seen.second_end[0] != '\0';
}

static void test_handoff_starts_the_scenario_of_the_kind(void **state)
{
    (void)state;
    char id[96];
    start_runner();
    seen.watching_lease = true;
    int64_t detected = 1764000000000;
    assert_int_equal(scenarios_trigger(h.s, "first", "database unreachable", detected, id, sizeof(id)), 0);
    while (!second_ended() && uv_run(&h.loop, UV_RUN_ONCE))
        ;
    /* The first run looked once and handed off; the second ran once, for the same incident. */
    assert_int_equal(seen.first_steps, 1);
    assert_int_equal(seen.second_steps, 1);
    assert_string_equal(seen.first_id, id);
    assert_true(strstr(seen.second_id, "-second-") != NULL);
    assert_int_equal(seen.first_detected, detected);
    assert_int_equal(seen.second_detected, detected); /* its RTO counts from the first sight */
    assert_int_equal(seen.second_mode, FSM_MODE_AUTOMATIC);
    char want[200];
    snprintf(want, sizeof(want), "handed off by run %s: ", id);
    if (strncmp(seen.second_reason, want, strlen(want)) != 0)
        fail_msg("second run's reason: '%s'", seen.second_reason);
    assert_non_null(strstr(seen.handoff_end, "hands off in state 'handed_to_second' (incident k2)"));
    assert_non_null(strstr(seen.second_end, "succeeded"));
    /* The first run's condition is closed: the second one carries the incident on. */
    snprintf(want, sizeof(want), "handed off to run %s (second)", seen.second_id);
    assert_non_null(strstr(seen.handoff_resolve, want));
    assert_string_equal(seen.handoff_page, ""); /* nothing to page: the hand-off started */
    /* The lease was taken once and let go once: never free between the two runs. */
    while (scenarios_active(h.s) && uv_run(&h.loop, UV_RUN_ONCE))
        ;
    assert_int_equal(seen.n_lease, 2);
    assert_true(seen.lease_seq[0]);
    assert_false(seen.lease_seq[1]);
}

static void test_handoff_to_a_kind_nobody_handles_pages(void **state)
{
    (void)state;
    char id[96];
    seen.handoff_kind = "k9";
    start_runner();
    assert_int_equal(scenarios_trigger(h.s, "first", "database unreachable", 1764000000000, id, sizeof(id)), 0);
    bool paged = false;
    while (!paged && uv_run(&h.loop, UV_RUN_ONCE))
        paged = seen.handoff_page[0] != '\0';
    assert_true(paged);
    assert_int_equal(seen.handoff_page_sev, SEV_CRITICAL);
    assert_non_null(strstr(seen.handoff_page, "handed off to incident 'k9' but no scenario handles it"));
    assert_non_null(strstr(seen.handoff_page, "trading stays halted"));
    assert_int_equal(seen.second_steps, 0);
}

static void test_a_failed_control_registration_fails_scenarios_new(void **state)
{
    (void)state;
    static const ScenarioCaps caps;
    seen.control_result = -ENOMEM;
    assert_null(scenarios_new(&h.core, &caps));
    assert_false(lease_held(h.core.lease)); /* nothing taken, nothing leaked (ASan) */
    bool never = false;
    run_until(&never);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_handoff_starts_the_scenario_of_the_kind, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handoff_to_a_kind_nobody_handles_pages, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_failed_control_registration_fails_scenarios_new, setup, teardown),
    };
    return cmocka_run_group_tests_name("scenario_runner", tests, NULL, NULL);
}
