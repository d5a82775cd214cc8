/*
 * detector_sm: the detector's decisions as a pure state machine (see detector_sm.h).
 */
#include "detect/detector_sm.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static void detector_sm_event(DetectorDecision *out, DetectorEventKind kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void detector_sm_event(DetectorDecision *out, DetectorEventKind kind, const char *fmt, ...)
{
    va_list ap;

    if (out->n_events >= DETECTOR_MAX_EVENTS)
        return;
    out->events[out->n_events].kind = kind;
    va_start(ap, fmt);
    vsnprintf(out->events[out->n_events].message, sizeof(out->events[0].message), fmt, ap);
    va_end(ap);
    out->n_events++;
}

static void detector_sm_clear_decision(DetectorDecision *out)
{
    out->actions = 0;
    out->incident = DETECTOR_INCIDENT_CORRUPTION;
    out->n_events = 0;
    out->halt_reason[0] = out->trigger_reason[0] = '\0';
    out->detected_ms = 0;
    out->restart_delay_ms = 0;
}

void detector_sm_configure(DetectorSm *sm, const DetectorSmConfig *cfg)
{
    sm->cfg = *cfg;
    if (sm->cfg.halt_after < 1)
        sm->cfg.halt_after = 1;
    if (sm->cfg.restart_attempts < 1)
        sm->cfg.restart_attempts = 1;
    if (sm->cfg.platform_down_after < 1)
        sm->cfg.platform_down_after = 1;
}

void detector_sm_init(DetectorSm *sm, const DetectorSmConfig *cfg)
{
    memset(sm, 0, sizeof(*sm));
    sm->checksum_failures = -1;
    detector_sm_configure(sm, cfg);
}

void detector_sm_reset(DetectorSm *sm)
{
    DetectorSmConfig cfg = sm->cfg;
    int64_t cf = sm->checksum_failures;
    bool unreachable = sm->unreachable_open, corruption = sm->corruption_open, failover = sm->failover_open;
    bool unreachable_maybe = sm->unreachable_maybe, corruption_maybe = sm->corruption_maybe;
    DetectorPlatform platform = sm->platform;
    DetectorSplit split = sm->split;
    detector_sm_init(sm, &cfg);
    sm->platform = platform;
    sm->split = split;
    sm->checksum_failures = cf;
    sm->unreachable_open = unreachable;
    sm->corruption_open = corruption;
    sm->failover_open = failover;
    sm->unreachable_maybe = unreachable_maybe;
    sm->corruption_maybe = corruption_maybe;
}

void detector_sm_assume_open(DetectorSm *sm)
{
    sm->unreachable_maybe = sm->corruption_maybe = true;
}

void detector_sm_run_ended(DetectorSm *sm, int64_t now_ms, bool recovered, const char *run, DetectorDecision *out)
{
    (void)now_ms;
    detector_sm_clear_decision(out);
    if (recovered && (sm->corruption_open || sm->corruption_maybe)) {
        /* maybe only: open before a restart, for all we know; the run that ended may have been
         * another scenario's (a failover), so say no more than what is known */
        detector_sm_event(out, DETECTOR_EV_RECOVERED,
                          sm->corruption_open
                              ? "corruption handled: recovery run %s replaced the damaged database and trading is live"
                              : "recovery run %s ended with trading live: a corruption condition left open before "
                                "the restart is resolved",
                          run && run[0] ? run : "?");
        sm->corruption_open = sm->corruption_maybe = false;
    }
    detector_sm_reset(sm);
}

DetectorPhase detector_sm_phase(const DetectorSm *sm)
{
    if (sm->corruption >= 2)
        return DETECTOR_CONFIRMED;
    if (sm->corruption == 1)
        return DETECTOR_SUSPECT;
    return sm->down ? DETECTOR_DOWN : DETECTOR_HEALTHY;
}

const char *detector_sm_phase_name(DetectorPhase p)
{
    switch (p) {
    case DETECTOR_HEALTHY:
        return "healthy";
    case DETECTOR_DOWN:
        return "down";
    case DETECTOR_SUSPECT:
        return "corruption_suspected";
    case DETECTOR_CONFIRMED:
        return "corruption_confirmed";
    }
    return "unknown";
}

bool detector_sm_is_corruption_sqlstate(const char *sqlstate)
{
    return sqlstate && (strcmp(sqlstate, "XX001") == 0 || strcmp(sqlstate, "XX002") == 0);
}

/* Ask for one restart attempt (after the delay) when one is allowed. */
static void detector_sm_maybe_restart(DetectorSm *sm, DetectorDecision *out)
{
    if (!sm->down || sm->corruption >= 2 || !sm->cfg.can_restart || sm->restart_pending)
        return;
    if (sm->restarts_done >= sm->cfg.restart_attempts) {
        if (!sm->exhausted_reported) {
            sm->exhausted_reported = true;
            detector_sm_event(out, DETECTOR_EV_RESTARTS_EXHAUSTED,
                              "database still down after %llu restart attempt%s%s; trading stays halted, operator needed",
                              (unsigned long long)sm->restarts_done, sm->restarts_done == 1 ? "" : "s",
                              sm->corruption == 1 ? " (corruption suspected, not confirmed)" : "");
        }
        return;
    }
    sm->restart_pending = true;
    sm->failures_since_restart = 0;
    out->actions |= DETECTOR_ACT_RESTART;
    out->restart_delay_ms = sm->cfg.restart_delay_ms;
}

/* One corruption signal: the first halts and asks for a confirmation, the second confirms. */
static void detector_sm_signal(DetectorSm *sm, int64_t now_ms, const char *what, DetectorDecision *out)
{
    sm->signals++;
    if (sm->corruption >= 2)
        return; /* already confirmed: the scenario owns the incident */
    if (sm->corruption == 0) {
        sm->corruption = 1;
        sm->first_signal_ms = now_ms;
        snprintf(sm->first_signal, sizeof(sm->first_signal), "%s", what);
        sm->halt_requested = true;
        sm->corruption_open = true;
        out->actions |= DETECTOR_ACT_HALT | DETECTOR_ACT_CHECK_NOW;
        snprintf(out->halt_reason, sizeof(out->halt_reason), "suspected database corruption: %s", what);
        detector_sm_event(out, DETECTOR_EV_SUSPECTED,
                          "corruption suspected: %s; trading halted, waiting for a second observation", what);
        return;
    }
    sm->corruption = 2;
    sm->corruption_open = true;
    sm->restart_pending = false;
    out->actions |= DETECTOR_ACT_TRIGGER;
    out->detected_ms = sm->first_signal_ms;
    snprintf(out->trigger_reason, sizeof(out->trigger_reason), "database corruption: %s; confirmed by: %s",
             sm->first_signal, what);
    detector_sm_event(out, DETECTOR_EV_CONFIRMED, "corruption confirmed (%s; then %s); starting database_corruption",
                      sm->first_signal, what);
}

void detector_sm_probe_ok(DetectorSm *sm, int64_t now_ms, int64_t checksum_failures, DetectorDecision *out)
{
    detector_sm_clear_decision(out);
    sm->consecutive_failures = 0;
    sm->failures_since_restart = 0;
    sm->failover = 0;
    sm->db_answered = true;
    if (sm->failover_open) {
        sm->failover_open = false;
        detector_sm_event(out, DETECTOR_EV_FAILOVER_CLEARED, "the database answers (the primary again, or the promoted standby the probe follows)");
    }
    if (sm->down) {
        sm->down = false;
        sm->restarts_done = 0;
        sm->restart_pending = false;
        sm->exhausted_reported = false;
        sm->unreachable_open = false;
        detector_sm_event(out, DETECTOR_EV_BACK,
                          "database back after %.1fs; trading stays halted until a reconcile passes: drctl reconcile, then drctl resume",
                          (double)(now_ms - sm->down_since_ms) / 1000.0);
        if (sm->corruption == 0)
            sm->halt_requested = false; /* a new outage halts again */
    } else if (sm->unreachable_open) {
        /* The outage opened before a re-arm (a recovery run ended while the database was still
         * away): this is the first answer since, and it closes the condition all the same. */
        sm->unreachable_open = false;
        detector_sm_event(out, DETECTOR_EV_BACK, "database answers again (the outage began before the last recovery "
                                                 "run ended)");
    } else if (sm->unreachable_maybe) {
        detector_sm_event(out, DETECTOR_EV_BACK, "database answers: the first answer since the daemon started (an "
                                                 "outage an earlier run of the daemon left open is over)");
    }
    sm->unreachable_maybe = false;
    if (checksum_failures >= 0) {
        if (sm->checksum_failures >= 0 && checksum_failures > sm->checksum_failures) {
            char what[160];
            snprintf(what, sizeof(what), "pg_stat_database.checksum_failures rose from %lld to %lld",
                     (long long)sm->checksum_failures, (long long)checksum_failures);
            sm->checksum_failures = checksum_failures;
            detector_sm_signal(sm, now_ms, what, out);
        }
        sm->checksum_failures = checksum_failures;
    }
}

void detector_sm_probe_failed(DetectorSm *sm, int64_t now_ms, const char *sqlstate, const char *message,
                              DetectorDecision *out)
{
    detector_sm_clear_decision(out);
    sm->db_answered = false;
    snprintf(sm->last_error, sizeof(sm->last_error), "%s", message && message[0] ? message : "probe failed");
    if (detector_sm_is_corruption_sqlstate(sqlstate)) {
        char what[320];
        snprintf(what, sizeof(what), "liveness probe failed with %s: %s", sqlstate, sm->last_error);
        detector_sm_signal(sm, now_ms, what, out);
        return;
    }
    if (sm->consecutive_failures++ == 0)
        sm->first_failure_ms = now_ms;
    sm->failures_since_restart++;
    if (!sm->down && sm->consecutive_failures >= sm->cfg.halt_after) {
        sm->down = true;
        sm->unreachable_open = true;
        sm->unreachable_maybe = false;
        sm->down_since_ms = now_ms;
        sm->restarts_done = 0;
        sm->restart_pending = false;
        sm->exhausted_reported = false;
        if (sm->corruption < 2) {
            sm->halt_requested = true;
            out->actions |= DETECTOR_ACT_HALT;
            snprintf(out->halt_reason, sizeof(out->halt_reason), "database unreachable: %s", sm->last_error);
        }
        detector_sm_event(out, DETECTOR_EV_UNREACHABLE, "database unreachable after %llu failed probes: %s%s",
                          (unsigned long long)sm->consecutive_failures, sm->last_error,
                          sm->corruption >= 2 ? "" : "; trading halted");
        detector_sm_maybe_restart(sm, out);
        return;
    }
    /* Still down after a restart that "worked": try again once the probes say so. */
    if (sm->down && sm->failures_since_restart >= sm->cfg.halt_after)
        detector_sm_maybe_restart(sm, out);
}

void detector_sm_check_result(DetectorSm *sm, int64_t now_ms, int64_t started_ms, bool ok, const char *sqlstate,
                              const char *message, DetectorDecision *out)
{
    detector_sm_clear_decision(out);
    if (ok) {
        if (sm->corruption == 1 && started_ms >= sm->first_signal_ms) {
            sm->corruption = 0;
            sm->corruption_open = sm->corruption_maybe = false;
            detector_sm_event(out, DETECTOR_EV_CLEARED,
                              "corruption not confirmed: a clean check followed '%s'; trading stays halted until resumed",
                              sm->first_signal);
        }
        return;
    }
    if (!detector_sm_is_corruption_sqlstate(sqlstate))
        return;
    char what[320];
    snprintf(what, sizeof(what), "corruption check failed with %s: %s", sqlstate,
             message && message[0] ? message : "no message");
    detector_sm_signal(sm, now_ms, what, out);
}

void detector_sm_restart_result(DetectorSm *sm, int64_t now_ms, bool ok, bool damage, const char *evidence,
                                DetectorDecision *out)
{
    detector_sm_clear_decision(out);
    sm->restart_pending = false;
    sm->restarts_done++;
    if (damage) {
        char what[320];
        snprintf(what, sizeof(what), "the database failed to start because of damaged files: %s",
                 evidence && evidence[0] ? evidence : "(damage reported)");
        detector_sm_signal(sm, now_ms, what, out);
        detector_sm_maybe_restart(sm, out); /* the next attempt is the confirmation */
        return;
    }
    if (!ok) {
        detector_sm_event(out, DETECTOR_EV_RESTART_FAILED, "restart attempt %llu of %llu failed: %s",
                          (unsigned long long)sm->restarts_done, (unsigned long long)sm->cfg.restart_attempts,
                          evidence && evidence[0] ? evidence : "no output");
        detector_sm_maybe_restart(sm, out);
        return;
    }
    /* It said it started: the next probes decide; failures_since_restart drives a retry. */
    sm->failures_since_restart = 0;
}

/* ---- primary failure: both sides must agree ---- */

bool detector_sm_wants_standby_view(const DetectorSm *sm, int64_t now_ms)
{
    return sm->cfg.failover && sm->down && sm->corruption == 0 && sm->failover != 3 &&
           now_ms - sm->first_failure_ms >= (int64_t)sm->cfg.failover_grace_ms;
}

void detector_sm_standby_view(DetectorSm *sm, int64_t now_ms, const DetectorStandbyView *v, DetectorDecision *out)
{
    double s = (double)(now_ms - sm->first_failure_ms) / 1000.0;

    detector_sm_clear_decision(out);
    if (!detector_sm_wants_standby_view(sm, now_ms))
        return;
    if (v->primary_answers || v->standbys_lost == 0) {
        if (sm->failover != 1)
            detector_sm_event(out, DETECTOR_EV_FAILOVER_ONE_SIDE,
                              "the primary fails the daemon's probes for %.1fs but %s: trading stays halted, no "
                              "failover (a network problem between the daemon and the primary?)",
                              s, v->primary_answers ? "the replication probe still reaches it"
                                 : v->standbys_asked ? "every standby still streams from it"
                                                     : "no standby could be asked");
        sm->failover = 1;
        sm->failover_open = true;
        return;
    }
    if (!v->candidate[0]) {
        if (sm->failover != 2)
            detector_sm_event(out, DETECTOR_EV_FAILOVER_NO_STANDBY,
                              "primary lost for %.1fs (%s lost its WAL stream too) but no standby can be promoted "
                              "(%s): trading stays halted, no promotion, operator needed",
                              s, v->lost_by, v->why[0] ? v->why : "none eligible");
        sm->failover = 2;
        sm->failover_open = true;
        return;
    }
    sm->failover = 3;
    sm->failover_open = true;
    out->actions |= DETECTOR_ACT_TRIGGER;
    out->incident = DETECTOR_INCIDENT_PRIMARY_FAILURE;
    out->detected_ms = sm->first_failure_ms;
    snprintf(out->trigger_reason, sizeof(out->trigger_reason),
             "primary failure: the database does not answer for %.1fs (%llu failed probes: %s) and %s lost its WAL "
             "stream; candidate %s",
             s, (unsigned long long)sm->consecutive_failures, sm->last_error, v->lost_by, v->candidate);
    detector_sm_event(out, DETECTOR_EV_PRIMARY_LOST, "%s", out->trigger_reason);
}

/* ---- app crash: the platform down, the database fine ---- */

void detector_sm_platform_ok(DetectorSm *sm, int64_t now_ms, DetectorDecision *out)
{
    DetectorPlatform *p = &sm->platform;

    detector_sm_clear_decision(out);
    if (p->open)
        detector_sm_event(out, DETECTOR_EV_APP_CRASH_CLEARED, "the platform's health answers again after %.1fs",
                          (double)(now_ms - p->first_failure_ms) / 1000.0);
    memset(p, 0, sizeof(*p));
}

void detector_sm_platform_failed(DetectorSm *sm, int64_t now_ms, const char *message, DetectorDecision *out)
{
    DetectorPlatform *p = &sm->platform;
    const char *why = message && message[0] ? message : "health probe failed";

    detector_sm_clear_decision(out);
    if (p->consecutive_failures++ == 0)
        p->first_failure_ms = now_ms;
    if (!sm->cfg.app_crash || p->consecutive_failures < sm->cfg.platform_down_after || p->judged == 2)
        return;
    if (!sm->db_answered || sm->down || sm->corruption > 0) {
        if (p->judged != 1)
            detector_sm_event(out, DETECTOR_EV_APP_CRASH_NOT,
                              "the platform's health fails (%s) but the database is %s too: not an app crash, "
                              "the database's recovery owns it", why,
                              sm->corruption > 0 ? "suspected of corruption" : sm->down ? "down" : "not answering");
        p->judged = 1;
        return;
    }
    p->judged = 2;
    p->open = true;
    out->actions |= DETECTOR_ACT_TRIGGER;
    out->incident = DETECTOR_INCIDENT_APP_CRASH;
    out->detected_ms = p->first_failure_ms;
    snprintf(out->trigger_reason, sizeof(out->trigger_reason),
             "app crash: the platform's health fails for %.1fs (%llu failed probes: %s) while the database answers",
             (double)(now_ms - p->first_failure_ms) / 1000.0, (unsigned long long)p->consecutive_failures, why);
    detector_sm_event(out, DETECTOR_EV_APP_CRASH, "%s", out->trigger_reason);
}

/* ---- split brain: two primaries ---- */

void detector_sm_split_brain(DetectorSm *sm, int64_t now_ms, bool seen, const char *nodes, DetectorDecision *out)
{
    DetectorSplit *sp = &sm->split;

    detector_sm_clear_decision(out);
    if (!seen) {
        if (sp->open)
            detector_sm_event(out, DETECTOR_EV_SPLIT_BRAIN_CLEARED, "one primary again after %.1fs (was: %s)",
                              (double)(now_ms - sp->since_ms) / 1000.0, sp->nodes);
        memset(sp, 0, sizeof(*sp));
        return;
    }
    if (sp->open)
        return;
    sp->open = true;
    sp->since_ms = now_ms;
    snprintf(sp->nodes, sizeof(sp->nodes), "%s", nodes && nodes[0] ? nodes : "?");
    out->actions |= DETECTOR_ACT_HALT | DETECTOR_ACT_TRIGGER;
    out->incident = DETECTOR_INCIDENT_NETWORK_PARTITION;
    out->detected_ms = now_ms;
    snprintf(out->halt_reason, sizeof(out->halt_reason), "split brain: %s all accept writes", sp->nodes);
    snprintf(out->trigger_reason, sizeof(out->trigger_reason),
             "split brain: %s all answer as primaries (pg_is_in_recovery() false)", sp->nodes);
    detector_sm_event(out, DETECTOR_EV_SPLIT_BRAIN, "%s; trading halted", out->trigger_reason);
}
