/*
 * Unit tests for daemon/cap/venue/venue_sm: the venue's halt/resume state machine. Every state
 * with every event (a table that reads like the specification), then every sequence of up to
 * seven events (requests, confirmations, failures, late answers) from both starting states,
 * checked against the contract: a halt is answered only when the platform confirmed it, a halt
 * requested during a resume is always sent and never released by that resume, and trading is held
 * whenever a halt is pending.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "cap/venue/venue_sm.h"

enum { LIVE = VENUE_SM_LIVE, HALTING = VENUE_SM_HALTING, HALTED = VENUE_SM_HALTED, RESUMING = VENUE_SM_RESUMING,
       THEN_HALT = VENUE_SM_RESUMING_THEN_HALT };
enum { HOLD = VENUE_SM_DO_HOLD, SEND = VENUE_SM_DO_SEND_HALT, QUEUE = VENUE_SM_DO_QUEUE_HALT,
       ANSWER = VENUE_SM_DO_ANSWER_HALT, RETRY = VENUE_SM_DO_RETRY_HALT, RESUME = VENUE_SM_DO_SEND_RESUME,
       REFUSE = VENUE_SM_DO_REFUSE_RESUME, RELEASE = VENUE_SM_DO_RELEASE, OK = VENUE_SM_DO_RESUME_OK,
       FAILED = VENUE_SM_DO_RESUME_FAILED, OVERRULED = VENUE_SM_DO_RESUME_OVERRULED, IGNORE = VENUE_SM_DO_IGNORE };

static void test_every_state_and_event(void **state)
{
    (void)state;
    static const struct {
        int from, resume_from;
        VenueSmEvent ev;
        bool platform_halted;
        int to;
        unsigned does;
    } rows[] = {
        /* from       resume_from  event                      halted  to         does */
        {LIVE, LIVE, VENUE_SM_HALT, false, HALTING, HOLD | SEND | QUEUE},
        {LIVE, LIVE, VENUE_SM_HALT, true, HALTING, HOLD | SEND | QUEUE},
        {HALTING, LIVE, VENUE_SM_HALT, false, HALTING, QUEUE},
        {HALTED, LIVE, VENUE_SM_HALT, true, HALTED, ANSWER},
        {HALTED, LIVE, VENUE_SM_HALT, false, HALTING, HOLD | SEND | QUEUE}, /* drift or unknown: send again */
        {RESUMING, HALTED, VENUE_SM_HALT, true, THEN_HALT, HOLD | QUEUE},   /* the bug of issue 10 */
        {RESUMING, LIVE, VENUE_SM_HALT, false, THEN_HALT, HOLD | QUEUE},
        {THEN_HALT, HALTED, VENUE_SM_HALT, true, THEN_HALT, QUEUE},
        {HALTING, LIVE, VENUE_SM_HALT_CONFIRMED, true, HALTED, ANSWER},
        {LIVE, LIVE, VENUE_SM_HALT_CONFIRMED, true, LIVE, IGNORE},
        {HALTED, LIVE, VENUE_SM_HALT_CONFIRMED, true, HALTED, IGNORE},
        {RESUMING, HALTED, VENUE_SM_HALT_CONFIRMED, true, RESUMING, IGNORE},
        {THEN_HALT, HALTED, VENUE_SM_HALT_CONFIRMED, true, THEN_HALT, IGNORE}, /* not the halt we will send */
        {HALTING, LIVE, VENUE_SM_HALT_FAILED, false, HALTING, RETRY},
        {HALTED, LIVE, VENUE_SM_HALT_FAILED, false, HALTED, IGNORE},
        {LIVE, LIVE, VENUE_SM_RESUME, false, RESUMING, RESUME},
        {HALTED, LIVE, VENUE_SM_RESUME, true, RESUMING, RESUME},
        {HALTING, LIVE, VENUE_SM_RESUME, false, HALTING, REFUSE},
        {RESUMING, HALTED, VENUE_SM_RESUME, false, RESUMING, REFUSE},
        {THEN_HALT, HALTED, VENUE_SM_RESUME, false, THEN_HALT, REFUSE},
        {RESUMING, HALTED, VENUE_SM_RESUME_CONFIRMED, false, LIVE, RELEASE | OK},
        {RESUMING, HALTED, VENUE_SM_RESUME_FAILED, false, HALTED, FAILED},
        {RESUMING, LIVE, VENUE_SM_RESUME_FAILED, false, LIVE, FAILED},
        {THEN_HALT, HALTED, VENUE_SM_RESUME_CONFIRMED, false, HALTING, OVERRULED | SEND},
        {THEN_HALT, HALTED, VENUE_SM_RESUME_FAILED, false, HALTING, OVERRULED | SEND},
        {LIVE, LIVE, VENUE_SM_RESUME_CONFIRMED, false, LIVE, IGNORE},
        {HALTING, LIVE, VENUE_SM_RESUME_FAILED, false, HALTING, IGNORE},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        VenueSm sm = {(VenueSmState)rows[i].from, (VenueSmState)rows[i].resume_from};
        unsigned does = venue_sm_apply(&sm, rows[i].ev, rows[i].platform_halted);
        if ((int)sm.state != rows[i].to || does != rows[i].does)
            fail_msg("row %zu: %s + %s (platform %s): got %s 0x%x, want %s 0x%x", i,
                     venue_sm_state_name((VenueSmState)rows[i].from), venue_sm_event_name(rows[i].ev),
                     rows[i].platform_halted ? "halted" : "not halted", venue_sm_state_name(sm.state), does,
                     venue_sm_state_name((VenueSmState)rows[i].to), rows[i].does);
    }
}

/* ---- every interleaving ---- */

typedef struct Model {
    VenueSm sm;
    bool held_durably;        /* the last HOLD/RELEASE written */
    int waiting;              /* halt requests not yet answered */
    bool halt_out;            /* a halt was sent and not yet confirmed or failed */
    bool confirmed_since_send;
    bool resume_out;
} Model;

typedef struct Step {
    VenueSmEvent ev;
    bool platform_halted;
} Step;

static const Step steps[] = {
    {VENUE_SM_HALT, false}, {VENUE_SM_HALT, true}, {VENUE_SM_HALT_CONFIRMED, true}, {VENUE_SM_HALT_FAILED, false},
    {VENUE_SM_RESUME, false}, {VENUE_SM_RESUME_CONFIRMED, false}, {VENUE_SM_RESUME_FAILED, false},
};
#define NSTEPS (sizeof(steps) / sizeof(steps[0]))
#define DEPTH 7

static unsigned long checked;

/* The events so far, for a failure's message (built only then). */
static void trail_text(char *out, size_t n, const int *trail, int depth)
{
    int o = snprintf(out, n, "after");
    for (int i = 0; i <= depth && o < (int)n - 24; i++)
        o += snprintf(out + o, n - (size_t)o, " %s", venue_sm_event_name(steps[trail[i]].ev));
}

static void check_step(Model *m, const Step *st, const int *trail, int depth)
{
    VenueSmState before = m->sm.state;
    /* The platform only answers what was sent: a confirmation without a halt out is a late
     * answer, which the machine must ignore. */
    unsigned does = venue_sm_apply(&m->sm, st->ev, st->platform_halted);
    char where[256] = "";
#define FAIL(...)                                          \
    do {                                                   \
        trail_text(where, sizeof(where), trail, depth);   \
        fail_msg(__VA_ARGS__);                             \
    } while (0)

    if (does & VENUE_SM_DO_IGNORE && m->sm.state != before)
        FAIL("%s: an ignored event changed the state", where);
    if (does & VENUE_SM_DO_HOLD)
        m->held_durably = true;
    if (does & VENUE_SM_DO_RELEASE) {
        if (m->waiting)
            FAIL("%s: released trading with %d halt request(s) waiting", where, m->waiting);
        m->held_durably = false;
    }
    if (does & VENUE_SM_DO_SEND_HALT) {
        if (!m->held_durably)
            FAIL("%s: a halt sent before it was held durably", where);
        m->halt_out = true;
        m->confirmed_since_send = false;
    }
    if (st->ev == VENUE_SM_HALT_CONFIRMED && before == VENUE_SM_HALTING) {
        m->confirmed_since_send = true;
        m->halt_out = false;
    }
    if (does & VENUE_SM_DO_QUEUE_HALT)
        m->waiting++;
    if (does & VENUE_SM_DO_ANSWER_HALT) {
        /* Answered only once the platform confirmed, or at once when held, idle and confirmed. */
        if (m->waiting && !m->confirmed_since_send)
            FAIL("%s: halt waiters answered without a confirmation", where);
        if (!m->held_durably)
            FAIL("%s: a halt answered while not held", where);
        m->waiting = 0;
    }
    if (does & VENUE_SM_DO_SEND_RESUME) {
        if (m->waiting)
            FAIL("%s: a resume sent with halt requests waiting", where);
        m->resume_out = true;
    }
    if (does & (VENUE_SM_DO_RESUME_OK | VENUE_SM_DO_RESUME_FAILED | VENUE_SM_DO_RESUME_OVERRULED))
        m->resume_out = false;
    if ((does & VENUE_SM_DO_RESUME_OK) && m->held_durably)
        FAIL("%s: a resume answered ok while trading is held", where);
    /* Invariants in every state. */
    if (venue_sm_halt_pending(&m->sm) && !venue_sm_held(&m->sm))
        FAIL("%s: a halt pending while not held", where);
    if (m->waiting && !venue_sm_halt_pending(&m->sm))
        FAIL("%s: %d halt request(s) waiting in state %s, where nothing will answer them", where, m->waiting,
                 venue_sm_state_name(m->sm.state));
    if (venue_sm_held(&m->sm) != m->held_durably && m->sm.state != VENUE_SM_RESUMING)
        FAIL("%s: state %s says held=%d, the durable record %d", where, venue_sm_state_name(m->sm.state),
                 venue_sm_held(&m->sm), m->held_durably);
    if (m->sm.state == VENUE_SM_HALTING && !m->halt_out)
        FAIL("%s: halting with no halt sent", where);
    if (m->sm.state == VENUE_SM_RESUMING_THEN_HALT && !m->resume_out)
        FAIL("%s: waiting for a resume that is not out", where);
    checked++;
#undef FAIL
}

static void explore(Model m, int depth, int *trail)
{
    if (depth == DEPTH)
        return;
    for (size_t i = 0; i < NSTEPS; i++) {
        Model next = m;
        trail[depth] = (int)i;
        check_step(&next, &steps[i], trail, depth);
        explore(next, depth + 1, trail);
    }
}

static void test_every_interleaving(void **state)
{
    (void)state;
    int trail[DEPTH];
    for (int held = 0; held < 2; held++) {
        Model m = {0};
        venue_sm_init(&m.sm, held);
        m.held_durably = held;
        explore(m, 0, trail);
    }
    /* 2 * (7 + 7^2 + ... + 7^7) steps were checked */
    assert_int_equal(checked, 2ul * (7ul + 49ul + 343ul + 2401ul + 16807ul + 117649ul + 823543ul));
}

/* The reproduction of issue 10, step by step: held, a resume goes out, a halt arrives, the resume
 * is confirmed live: the halt must go out, and must be answered only after its confirmation. */
static void test_halt_during_resume(void **state)
{
    (void)state;
    VenueSm sm;
    venue_sm_init(&sm, true);
    assert_int_equal(venue_sm_apply(&sm, VENUE_SM_HALT, false), HOLD | SEND | QUEUE); /* re-asserted at start */
    assert_int_equal(venue_sm_apply(&sm, VENUE_SM_HALT_CONFIRMED, true), ANSWER);
    assert_int_equal(venue_sm_apply(&sm, VENUE_SM_RESUME, true), RESUME);
    assert_true(venue_sm_held(&sm)); /* until the platform says it runs */
    assert_int_equal(venue_sm_apply(&sm, VENUE_SM_HALT, true), HOLD | QUEUE); /* not "already halted" */
    assert_int_equal(venue_sm_apply(&sm, VENUE_SM_RESUME_CONFIRMED, false), OVERRULED | SEND);
    assert_int_equal(sm.state, VENUE_SM_HALTING);
    assert_int_equal(venue_sm_apply(&sm, VENUE_SM_RESUME, false), REFUSE);
    assert_int_equal(venue_sm_apply(&sm, VENUE_SM_HALT_CONFIRMED, true), ANSWER);
    assert_string_equal(venue_sm_state_name(sm.state), "halted");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_state_and_event),
        cmocka_unit_test(test_every_interleaving),
        cmocka_unit_test(test_halt_during_resume),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
