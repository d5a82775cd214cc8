/*
 * detector_sm: the detector's decisions, as a pure state machine.
 *
 * Owns the rules that turn observations of the database into decisions: halt trading, restart a
 * database that is merely down, suspect corruption, confirm it and start the database_corruption
 * scenario. No I/O, no clock of its own, no allocation: every input carries the time (`now_ms`,
 * wall clock) and every call fills a DetectorDecision that the caller (daemon/detect/detector.c) carries
 * out. That keeps the rules testable in microseconds (tests/unit/test_detector.c).
 *
 * The rules:
 *   - Liveness: `halt_after` consecutive failed probes (connection refused, timeout, ...) put the
 *     machine DOWN: halt trading at once (cheap, safe) and, when a restart command is configured,
 *     restart the database after `restart_delay_ms`, up to `restart_attempts` times. A successful
 *     probe afterwards is "database back": trading STAYS halted (an operator or a scenario resumes
 *     after a reconcile). A merely-down database never starts a restore.
 *   - Corruption signals: pg_stat_database.checksum_failures rising between two probes, a query
 *     failing with SQLSTATE XX001 (data corrupted) or XX002 (index corrupted), a corruption check
 *     failing that way, a restart failing with damage in its output or the server log. The first
 *     signal halts trading and asks for a confirming check at once (SUSPECT); a second signal
 *     CONFIRMS: trigger database_corruption with detected_ms = the FIRST signal's time. A clean
 *     corruption check while SUSPECT clears the suspicion (trading stays halted).
 *   - Once CONFIRMED the machine only records; detector_sm_run_ended() re-arms it (the scenario ran).
 *   - Conditions close when their cause is gone, whatever the order of events. The machine
 *     remembers which of its conditions it opened (unreachable_open, corruption_open), and a
 *     re-arm keeps that memory: detector.unreachable (and detector.restart) resolve on the first
 *     successful probe after they opened, also when a recovery run ended in between;
 *     detector.corruption resolves on a clean check while only suspected, or when the run that
 *     handled it ends successfully (the damaged database was replaced and trading is live). A run
 *     that fails leaves it open (the corruption is still there): the next run's success or an
 *     operator (drctl alerts resolve) closes it.
 *   - Primary failure (with a failover section): once DOWN and `failover_grace_ms` after the
 *     first failed probe of the episode (a primary that answers within the grace was a blip: the
 *     halt stays, nothing is promoted), the shell asks the replication side for its view
 *     (DetectorStandbyView) on every further failed probe. Both sides must agree: the daemon's
 *     probes fail AND at least one standby lost its WAL stream from the primary (and the
 *     replication probe does not reach the primary either). One side alone (the daemon's own
 *     network) opens detector.failover as an error and does not fail over. Both sides but no
 *     standby within failover.maximum_lag: critical, trading stays halted, no promotion. Both
 *     sides and a candidate: the primary_failure incident, detected_ms = the first failed probe,
 *     once per episode. The next answer of the database resolves detector.failover.
 *   - App crash (with detector.app_crash): the platform's health probe (platform.health_url)
 *     failing `platform_down_after` times in a row while the database is healthy (its last probe
 *     answered, not down, no corruption signal) is the app_crash incident, detected_ms = the
 *     first failed health probe, once per platform episode: only a health probe that answers
 *     again re-arms it (a run that failed with the platform still down does not start another).
 *     A platform down with the database down or suspected is not an app crash (the database's
 *     rules own that): one warning, no incident; should the database answer while the platform
 *     still fails, the next failed health probe reports it. The platform's episode is kept by a
 *     re-arm (detector_sm_reset): it is the platform's, not the database's.
 *   - Split brain (with replication.nodes): a replication round in which two or more nodes answer
 *     pg_is_in_recovery() = false is a split brain at once (two primaries accepting writes cannot
 *     be a blip): halt trading and report the network_partition incident, detected_ms = that
 *     round, once per episode. A round with one primary (or none) ends the episode and resolves
 *     detector.split_brain. The shell feeds no rounds while a recovery run holds the lease (a
 *     failover or switchover has two primaries for a moment by design); the episode is kept by a
 *     re-arm, like the platform's: a run that failed with both still writable does not start
 *     another, the condition stays open.
 */
#ifndef DRSUP_DETECTOR_SM_H
#define DRSUP_DETECTOR_SM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    DETECTOR_HEALTHY = 0, /* database answers, no corruption signal */
    DETECTOR_DOWN,        /* halted: the database does not answer; restarts may run */
    DETECTOR_SUSPECT,     /* halted: one corruption signal, waiting for a second */
    DETECTOR_CONFIRMED,   /* corruption confirmed; the scenario was asked to run */
} DetectorPhase;

typedef struct DetectorSmConfig {
    uint64_t halt_after;       /* consecutive failed probes before the halt (>= 1) */
    bool can_restart;          /* a restart command is configured */
    uint64_t restart_attempts; /* >= 1 */
    uint64_t restart_delay_ms;
    bool failover;             /* a failover section: a lost primary may be a primary_failure */
    uint64_t failover_grace_ms;
    bool app_crash;            /* detector.app_crash: a platform down may be an app_crash */
    uint64_t platform_down_after; /* failed health probes before the platform is down (>= 1) */
} DetectorSmConfig;

typedef enum {
    DETECTOR_ACT_HALT = 1u << 0,       /* venue_halt(reason) */
    DETECTOR_ACT_RESTART = 1u << 1,    /* run the restart command after restart_delay_ms */
    DETECTOR_ACT_CHECK_NOW = 1u << 2,  /* run a corruption check now (confirmation) */
    DETECTOR_ACT_TRIGGER = 1u << 3,    /* report the incident `incident` (reason, detected_ms) */
} DetectorAction;

/* The incident kinds the machine reports (the shell names them, detector.h INCIDENT_*). */
typedef enum {
    DETECTOR_INCIDENT_CORRUPTION = 0,
    DETECTOR_INCIDENT_PRIMARY_FAILURE,
    DETECTOR_INCIDENT_APP_CRASH,
    DETECTOR_INCIDENT_NETWORK_PARTITION,
} DetectorIncident;

/* What the replication side says of the primary since the first failed probe (the shell fills it
 * from the replication monitor, observe/replication.h). */
typedef struct DetectorStandbyView {
    bool primary_answers;     /* the replication probe still reaches the primary */
    unsigned standbys_asked;  /* standbys that answered since */
    unsigned standbys_lost;   /* ... and lost their WAL stream from the primary */
    char lost_by[128];        /* their names */
    char candidate[64];       /* the standby that would be promoted, "" none */
    char why[600];            /* no candidate: why each standby is not */
} DetectorStandbyView;

typedef enum {
    DETECTOR_EV_NONE = 0,
    DETECTOR_EV_UNREACHABLE,        /* opens detector.unreachable */
    DETECTOR_EV_BACK,               /* resolves detector.unreachable: back, trading stays halted */
    DETECTOR_EV_RESTARTING,         /* one restart attempt starts */
    DETECTOR_EV_RESTART_FAILED,     /* one attempt failed (no damage seen) */
    DETECTOR_EV_RESTARTS_EXHAUSTED, /* still down after every attempt: operator needed */
    DETECTOR_EV_SUSPECTED,          /* opens detector.corruption */
    DETECTOR_EV_CONFIRMED,          /* detector.corruption confirmed, scenario triggered */
    DETECTOR_EV_CLEARED,            /* resolves detector.corruption: not confirmed */
    DETECTOR_EV_RECOVERED,          /* resolves detector.corruption: the run that handled it succeeded */
    DETECTOR_EV_FAILOVER_ONE_SIDE,  /* opens detector.failover: only the daemon's probes fail */
    DETECTOR_EV_FAILOVER_NO_STANDBY,/* opens detector.failover (critical): primary lost, nothing to promote */
    DETECTOR_EV_PRIMARY_LOST,       /* opens detector.failover (critical): both sides agree, incident reported */
    DETECTOR_EV_FAILOVER_CLEARED,   /* resolves detector.failover: the database answers */
    DETECTOR_EV_APP_CRASH,          /* opens detector.app_crash (critical): incident reported */
    DETECTOR_EV_APP_CRASH_NOT,      /* the platform is down with the database: not an app crash */
    DETECTOR_EV_APP_CRASH_CLEARED,  /* resolves detector.app_crash: the platform's health answers */
    DETECTOR_EV_SPLIT_BRAIN,        /* opens detector.split_brain (critical): incident reported */
    DETECTOR_EV_SPLIT_BRAIN_CLEARED,/* resolves detector.split_brain: one primary again */
} DetectorEventKind;

#define DETECTOR_MAX_EVENTS 3

typedef struct DetectorDecision {
    unsigned actions;             /* DetectorAction bits */
    DetectorIncident incident;    /* with DETECTOR_ACT_TRIGGER */
    char halt_reason[320];        /* with DETECTOR_ACT_HALT */
    char trigger_reason[640];     /* with DETECTOR_ACT_TRIGGER */
    int64_t detected_ms;          /* with DETECTOR_ACT_TRIGGER: the first signal's time */
    uint64_t restart_delay_ms;    /* with DETECTOR_ACT_RESTART */
    size_t n_events;
    struct {
        DetectorEventKind kind;
        char message[640];
    } events[DETECTOR_MAX_EVENTS];
} DetectorDecision;

/* The platform's episode (its health probe), kept across a re-arm. */
typedef struct DetectorPlatform {
    uint64_t consecutive_failures;
    int64_t first_failure_ms;     /* the first failed health probe of this run of failures */
    int judged;                   /* 0 not yet, 1 not an app crash (database not healthy), 2 incident reported */
    bool open;                    /* detector.app_crash */
} DetectorPlatform;

/* The split-brain episode (the replication rounds), kept across a re-arm. */
typedef struct DetectorSplit {
    bool open;                    /* detector.split_brain; the incident was reported */
    int64_t since_ms;             /* the round that saw it */
    char nodes[160];              /* the nodes out of recovery then */
} DetectorSplit;

typedef struct DetectorSm {
    DetectorSmConfig cfg;
    DetectorPlatform platform;
    DetectorSplit split;
    bool db_answered;             /* the last database probe answered (cleared by a failure) */
    bool down;                    /* halt_after probes failed; not answered since */
    int corruption;               /* 0 none, 1 suspected, 2 confirmed */
    uint64_t consecutive_failures;
    uint64_t failures_since_restart;
    bool exhausted_reported;
    bool halt_requested;          /* we asked for a halt in this episode */
    int64_t checksum_failures;    /* last value seen, -1 before the first */
    int64_t first_signal_ms;      /* SUSPECT/CONFIRMED: time of the first signal */
    char first_signal[320];
    uint64_t signals;             /* corruption signals seen in this episode */
    uint64_t restarts_done;       /* attempts made while DOWN */
    bool restart_pending;         /* an attempt is scheduled or running */
    int64_t down_since_ms;
    int64_t first_failure_ms;     /* the first failed probe of this run of failures */
    int failover;                 /* 0 not judged, 1 one side only, 2 no standby, 3 incident reported */
    bool failover_open;           /* detector.failover */
    char last_error[256];
    /* conditions opened and not resolved yet; kept by a re-arm (see the rules above) */
    bool unreachable_open;        /* detector.unreachable, detector.restart */
    bool corruption_open;         /* detector.corruption */
    /* at start, each may have been left open by an earlier run of the daemon (alerts keeps them
     * across restarts, this memory does not): the first answer, or a successful run, closes those
     * too (detector_sm_assume_open); not shown as open */
    bool unreachable_maybe, corruption_maybe;
} DetectorSm;

void detector_sm_init(DetectorSm *sm, const DetectorSmConfig *cfg);
/* New thresholds (reload); the phase and counters are kept. */
void detector_sm_configure(DetectorSm *sm, const DetectorSmConfig *cfg);
/* At start: treat the conditions as possibly left open by an earlier run of the daemon, so the
 * first answer resolves detector.unreachable and a successful run detector.corruption. */
void detector_sm_assume_open(DetectorSm *sm);
/* Back to HEALTHY with no memory of the episode (checksum baseline and open conditions kept). */
void detector_sm_reset(DetectorSm *sm);
/* A recovery run ended (run: its id, for the message): re-arm (detector_sm_reset). recovered: it
 * succeeded, so an open corruption condition resolves (DETECTOR_EV_RECOVERED). */
void detector_sm_run_ended(DetectorSm *sm, int64_t now_ms, bool recovered, const char *run, DetectorDecision *out);

/* The liveness probe answered. checksum_failures < 0 when unknown. */
void detector_sm_probe_ok(DetectorSm *sm, int64_t now_ms, int64_t checksum_failures, DetectorDecision *out);
/* The liveness probe failed: sqlstate ("" when libpq made the error) and message. */
void detector_sm_probe_failed(DetectorSm *sm, int64_t now_ms, const char *sqlstate, const char *message,
                              DetectorDecision *out);
/* A corruption check that started at started_ms finished: ok, or the failing query's SQLSTATE and
 * message. A failure with a SQLSTATE that is not data corruption (or a connection error) is not a
 * signal. A clean check clears a suspicion only if it started after the first signal. */
void detector_sm_check_result(DetectorSm *sm, int64_t now_ms, int64_t started_ms, bool ok, const char *sqlstate,
                              const char *message, DetectorDecision *out);
/* A restart attempt finished. damage: its output or the server log matched a damage pattern
 * (`evidence` quotes it). */
void detector_sm_restart_result(DetectorSm *sm, int64_t now_ms, bool ok, bool damage, const char *evidence,
                                DetectorDecision *out);

/* The platform's health probe answered (2xx), or failed with message. */
void detector_sm_platform_ok(DetectorSm *sm, int64_t now_ms, DetectorDecision *out);
void detector_sm_platform_failed(DetectorSm *sm, int64_t now_ms, const char *message, DetectorDecision *out);

/* A replication round ended: seen when two or more nodes answered as primaries (`nodes` names
 * them, comma separated), else not seen. */
void detector_sm_split_brain(DetectorSm *sm, int64_t now_ms, bool seen, const char *nodes, DetectorDecision *out);

/* Should the shell ask for the replication side's view now (down, past the grace, not decided)? */
bool detector_sm_wants_standby_view(const DetectorSm *sm, int64_t now_ms);
/* The replication side's view, asked for because detector_sm_wants_standby_view() said so. */
void detector_sm_standby_view(DetectorSm *sm, int64_t now_ms, const DetectorStandbyView *v, DetectorDecision *out);

/* The current phase (CONFIRMED > SUSPECT > DOWN > HEALTHY). */
DetectorPhase detector_sm_phase(const DetectorSm *sm);
/* SQLSTATE of the data-corruption kind (XX001, XX002). */
bool detector_sm_is_corruption_sqlstate(const char *sqlstate);
const char *detector_sm_phase_name(DetectorPhase p);

#endif
