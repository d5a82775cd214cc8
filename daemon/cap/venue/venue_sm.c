/*
 * venue_sm: the venue's halt and resume state machine (see venue_sm.h).
 */
#include "cap/venue/venue_sm.h"

void venue_sm_init(VenueSm *sm, bool held)
{
    sm->state = held ? VENUE_SM_HALTED : VENUE_SM_LIVE;
    sm->resume_from = sm->state;
}

unsigned venue_sm_apply(VenueSm *sm, VenueSmEvent ev, bool platform_halted)
{
    VenueSmState s = sm->state;

    switch (ev) {
    case VENUE_SM_HALT:
        if (s == VENUE_SM_LIVE || (s == VENUE_SM_HALTED && !platform_halted)) {
            sm->state = VENUE_SM_HALTING;
            return VENUE_SM_DO_HOLD | VENUE_SM_DO_SEND_HALT | VENUE_SM_DO_QUEUE_HALT;
        }
        if (s == VENUE_SM_HALTED)
            return VENUE_SM_DO_ANSWER_HALT; /* held and confirmed: nothing to send */
        if (s == VENUE_SM_HALTING || s == VENUE_SM_RESUMING_THEN_HALT)
            return VENUE_SM_DO_QUEUE_HALT;  /* joins the halt under way */
        /* RESUMING: hold at once, send once the resume's answer is in. */
        sm->state = VENUE_SM_RESUMING_THEN_HALT;
        return VENUE_SM_DO_HOLD | VENUE_SM_DO_QUEUE_HALT;
    case VENUE_SM_HALT_CONFIRMED:
        if (s != VENUE_SM_HALTING)
            return VENUE_SM_DO_IGNORE;
        sm->state = VENUE_SM_HALTED;
        return VENUE_SM_DO_ANSWER_HALT;
    case VENUE_SM_HALT_FAILED:
        return s == VENUE_SM_HALTING ? VENUE_SM_DO_RETRY_HALT : VENUE_SM_DO_IGNORE;
    case VENUE_SM_RESUME:
        if (s != VENUE_SM_LIVE && s != VENUE_SM_HALTED)
            return VENUE_SM_DO_REFUSE_RESUME;
        sm->resume_from = s;
        sm->state = VENUE_SM_RESUMING;
        return VENUE_SM_DO_SEND_RESUME;
    case VENUE_SM_RESUME_CONFIRMED:
    case VENUE_SM_RESUME_FAILED:
        if (s == VENUE_SM_RESUMING_THEN_HALT) {
            /* Whatever the resume did, the halt requested meanwhile goes out now. */
            sm->state = VENUE_SM_HALTING;
            return VENUE_SM_DO_RESUME_OVERRULED | VENUE_SM_DO_SEND_HALT;
        }
        if (s != VENUE_SM_RESUMING)
            return VENUE_SM_DO_IGNORE;
        if (ev == VENUE_SM_RESUME_CONFIRMED) {
            sm->state = VENUE_SM_LIVE;
            return VENUE_SM_DO_RELEASE | VENUE_SM_DO_RESUME_OK;
        }
        sm->state = sm->resume_from;
        return VENUE_SM_DO_RESUME_FAILED;
    case VENUE_SM_N_EVENTS:
    default:
        break;
    }
    return VENUE_SM_DO_IGNORE;
}

bool venue_sm_held(const VenueSm *sm)
{
    switch (sm->state) {
    case VENUE_SM_HALTING:
    case VENUE_SM_HALTED:
    case VENUE_SM_RESUMING_THEN_HALT:
        return true;
    case VENUE_SM_RESUMING:
        return sm->resume_from == VENUE_SM_HALTED;
    case VENUE_SM_LIVE:
    case VENUE_SM_N_STATES:
    default:
        return false;
    }
}

bool venue_sm_halt_pending(const VenueSm *sm)
{
    return sm->state == VENUE_SM_HALTING || sm->state == VENUE_SM_RESUMING_THEN_HALT;
}

bool venue_sm_busy(const VenueSm *sm)
{
    return sm->state == VENUE_SM_HALTING || sm->state == VENUE_SM_RESUMING || sm->state == VENUE_SM_RESUMING_THEN_HALT;
}

const char *venue_sm_state_name(VenueSmState s)
{
    static const char *const names[VENUE_SM_N_STATES] = {"live", "halting", "halted", "resuming",
                                                        "resuming_then_halt"};
    return (unsigned)s < VENUE_SM_N_STATES ? names[s] : "?";
}

const char *venue_sm_event_name(VenueSmEvent e)
{
    static const char *const names[VENUE_SM_N_EVENTS] = {"halt", "halt_confirmed", "halt_failed", "resume",
                                                        "resume_confirmed", "resume_failed"};
    return (unsigned)e < VENUE_SM_N_EVENTS ? names[e] : "?";
}
