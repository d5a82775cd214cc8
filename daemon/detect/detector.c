/*
 * detector: carrying out the detector's decisions (see detector.h; the rules are in detector_sm.c).
 */
#include "detect/detector.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "child.h"
#include "clock.h"
#include "detect/detector_sm.h"
#include "detect/watched.h"
#include "err.h"
#include "log.h"
#include "pgconn.h"
#include "pidwait.h"

#define DETECTOR_LOG_TAIL (16 * 1024)
#define DETECTOR_AMCHECK_PROBE "SELECT 1 FROM pg_extension WHERE extname = 'amcheck'"
#define DETECTOR_AMCHECK_SQL "SELECT bt_index_check($1::regclass)"

typedef struct LogTailWork {
    uv_work_t req;
    Detector *det;
    char *path;
    int64_t offset;      /* read from here (size of the log when the attempt started) */
    char *text;          /* result, NUL-terminated */
    bool ok;             /* the attempt's own outcome */
    char *output;        /* the attempt's output */
} LogTailWork;

struct Detector {
    Core *core;
    Venue *venue;
    DetectorIncidentFn incident_fn;
    void *incident_data;
    DetectorStandbyViewFn view_fn;
    void *view_data;
    DetectorSm sm;
    char cond_unreachable[192], cond_restart[192], cond_corruption[192], cond_failover[192], cond_app_crash[192];
    char cond_data_loss[192];
    Watched *watched;              /* the watched tables (detect/watched.h) */
    bool data_loss_open;           /* detector.data_loss:<cluster> raised, not yet resolved */
    char cond_split_brain[192];
    char failover_candidate[64]; /* the standby view's candidate at the last primary-failure judgment */
    bool split_ignored; /* the last round during a run saw two primaries (logged once) */
    /* corruption check */
    uv_timer_t check_timer;
    uint64_t check_interval_ms;
    PgConn *check_pg;
    char *check_conninfo;
    PgConnFollow follow;           /* detector.conninfo after a promotion (detector_follow_primary) */
    bool configured;               /* detector_apply_config ran */
    uint64_t check_timeout_ms;
    bool check_running, check_again;
    size_t check_step;             /* index into queries, then amcheck probe, then indexes */
    bool check_clean;
    char check_problem[320];       /* first failure of this check that is not a signal */
    int64_t check_started_ms;
    int64_t last_check_ms;
    bool last_check_ok;
    char last_check_error[320];
    /* restart */
    uv_timer_t restart_timer;
    ChildProc *restart_child;
    uv_fs_t log_stat;
    bool log_stat_busy;
    int64_t log_offset;
    bool log_work_busy;
    PidWait *pid_wait;             /* waiting for the old postmaster's pid to be gone */
    /* outcome */
    int64_t halt_ms;
    char triggered_run[64];
    int trigger_result;
    bool trigger_tried;
    /* life */
    int pending;
    bool closing;
    void (*closed_cb)(void *);
    void *closed_data;
};

static void detector_run_check(Detector *det);
static void detector_restart_spawn(Detector *det);

static const ConfigDetector *detector_cfg(const Detector *det)
{
    return &det->core->cfg->detector;
}

static void detector_maybe_closed(Detector *det)
{
    if (!det->closing || det->pending > 0)
        return;
    void (*cb)(void *) = det->closed_cb;
    void *data = det->closed_data;
    free(det->check_conninfo);
    pgconn_follow_clear(&det->follow);
    free(det);
    if (cb)
        cb(data);
}

/* ---- carrying out a decision ---- */

static void detector_emit(Detector *det, DetectorEventKind kind, const char *message)
{
    EventBus *ev = det->core->events;
    switch (kind) {
    case DETECTOR_EV_UNREACHABLE:
        events_emit(ev, SEV_CRITICAL, "detector.unreachable", det->cond_unreachable, false, NULL, "%s", message);
        break;
    case DETECTOR_EV_BACK:
        events_emit(ev, SEV_WARNING, "detector.unreachable", det->cond_unreachable, true, NULL, "%s", message);
        events_emit(ev, SEV_INFO, "detector.restart", det->cond_restart, true, NULL, "database answers again");
        break;
    case DETECTOR_EV_RESTARTING:
        events_emit(ev, SEV_WARNING, "detector.restart", det->cond_restart, false, NULL, "%s", message);
        break;
    case DETECTOR_EV_RESTART_FAILED:
        events_emit(ev, SEV_ERROR, "detector.restart", det->cond_restart, false, NULL, "%s", message);
        break;
    case DETECTOR_EV_RESTARTS_EXHAUSTED:
        events_emit(ev, SEV_CRITICAL, "detector.restart", det->cond_restart, false, NULL, "%s", message);
        break;
    case DETECTOR_EV_SUSPECTED:
    case DETECTOR_EV_CONFIRMED:
        events_emit(ev, SEV_CRITICAL, "detector.corruption", det->cond_corruption, false, NULL, "%s", message);
        break;
    case DETECTOR_EV_CLEARED:
        events_emit(ev, SEV_WARNING, "detector.corruption", det->cond_corruption, true, NULL, "%s", message);
        break;
    case DETECTOR_EV_RECOVERED:
        events_emit(ev, SEV_INFO, "detector.corruption", det->cond_corruption, true, NULL, "%s", message);
        break;
    case DETECTOR_EV_FAILOVER_ONE_SIDE:
        events_emit(ev, SEV_ERROR, "detector.failover", det->cond_failover, false, NULL, "%s", message);
        break;
    case DETECTOR_EV_FAILOVER_NO_STANDBY:
    case DETECTOR_EV_PRIMARY_LOST:
        events_emit(ev, SEV_CRITICAL, "detector.failover", det->cond_failover, false, NULL, "%s", message);
        break;
    case DETECTOR_EV_FAILOVER_CLEARED:
        events_emit(ev, SEV_INFO, "detector.failover", det->cond_failover, true, NULL, "%s", message);
        break;
    case DETECTOR_EV_APP_CRASH:
        events_emit(ev, SEV_CRITICAL, "detector.app_crash", det->cond_app_crash, false, NULL, "%s", message);
        break;
    case DETECTOR_EV_APP_CRASH_NOT:
        events_emit(ev, SEV_WARNING, "detector.app_crash", NULL, false, NULL, "%s", message);
        break;
    case DETECTOR_EV_APP_CRASH_CLEARED:
        events_emit(ev, SEV_INFO, "detector.app_crash", det->cond_app_crash, true, NULL, "%s", message);
        break;
    case DETECTOR_EV_SPLIT_BRAIN:
        events_emit(ev, SEV_CRITICAL, "detector.split_brain", det->cond_split_brain, false, NULL, "%s", message);
        break;
    case DETECTOR_EV_SPLIT_BRAIN_CLEARED:
        events_emit(ev, SEV_INFO, "detector.split_brain", det->cond_split_brain, true, NULL, "%s", message);
        break;
    case DETECTOR_EV_NONE:
    default:
        break;
    }
}

/* Hand an incident of `kind` to whoever starts recoveries (its event and condition: evkind, cond). */
static void detector_start_recovery(Detector *det, const char *kind, const char *cond, const char *evkind,
                                    const char *reason, int64_t detected_ms, const json_t *params)
{
    Core *d = det->core;
    char run[64] = "";
    int r;

    det->trigger_tried = true;
    if (!det->incident_fn) {
        det->trigger_result = -ENOSYS;
        events_emit(d->events, SEV_CRITICAL, evkind, cond, false, NULL,
                    "cannot start a recovery for %s: the scenario engine is not available; trading stays "
                    "halted, operator needed", kind);
        return;
    }
    r = det->incident_fn(kind, reason, detected_ms, params, run, sizeof(run), det->incident_data);
    det->trigger_result = r;
    if (r == 0) {
        snprintf(det->triggered_run, sizeof(det->triggered_run), "%s", run);
        log_notice("detector", "recovery run '%s' started for %s", run, kind);
    } else if (r == -EINPROGRESS) {
        log_notice("detector", "recovery for %s queued: it starts once unfinished runs are loaded", kind);
    } else if (r == -EBUSY) {
        log_notice("detector", "a scenario run is already active; %s recorded, no second run", kind);
    } else {
        events_emit(d->events, SEV_CRITICAL, evkind, cond, false, NULL,
                    "cannot start a recovery for %s: %s; trading stays halted, operator needed", kind, err_str(r));
    }
}

static void detector_trigger(Detector *det, const DetectorDecision *dec)
{
    const char *kind = INCIDENT_CORRUPTION, *cond = det->cond_corruption, *evkind = "detector.corruption";
    if (dec->incident == DETECTOR_INCIDENT_PRIMARY_FAILURE) {
        kind = INCIDENT_PRIMARY_FAILURE;
        cond = det->cond_failover;
        evkind = "detector.failover";
    } else if (dec->incident == DETECTOR_INCIDENT_APP_CRASH) {
        kind = INCIDENT_APP_CRASH;
        cond = det->cond_app_crash;
        evkind = "detector.app_crash";
    } else if (dec->incident == DETECTOR_INCIDENT_NETWORK_PARTITION) {
        kind = INCIDENT_NETWORK_PARTITION;
        cond = det->cond_split_brain;
        evkind = "detector.split_brain";
    }
    /* A primary failure carries the standby the detection would promote: a daemon restarted before
     * the run recorded its own choice has no judgment of the standbys from before the loss. */
    json_t *params = dec->incident == DETECTOR_INCIDENT_PRIMARY_FAILURE && det->failover_candidate[0]
                         ? json_pack("{s:s}", "candidate", det->failover_candidate)
                         : NULL;
    detector_start_recovery(det, kind, cond, evkind, dec->trigger_reason, dec->detected_ms, params);
    json_decref(params);
}

/* A watched table lost rows (or is gone): page, halt (unless a run is in charge), and start the
 * recovery to the last good observation; with no such observation there is no target to go back
 * to, and an operator chooses one (drctl execute --scenario data_loss --before T). */
static void detector_on_data_loss(const char *reason, int64_t detected_ms, const json_t *params, void *data)
{
    Detector *det = data;
    EventBus *ev = det->core->events;
    if (det->closing)
        return;
    det->data_loss_open = true;
    events_emit(ev, SEV_CRITICAL, "detector.data_loss", det->cond_data_loss, false, NULL, "data loss: %s", reason);
    if (lease_held(det->core->lease)) {
        log_notice("detector", "not halting (data loss): a recovery run is in charge");
    } else {
        det->halt_ms = clock_wall_ms();
        if (det->venue && venue_enabled(det->venue))
            venue_halt(det->venue, "data loss in a watched table", NULL, NULL, NULL);
        else
            events_emit(ev, SEV_CRITICAL, "detector.halt", NULL, false, NULL,
                        "cannot halt trading (data loss): no venue is configured");
    }
    if (json_integer_value(json_object_get(params, "target_ms")) <= 0) {
        events_emit(ev, SEV_CRITICAL, "detector.data_loss", det->cond_data_loss, false, NULL,
                    "no good observation before the loss to recover to: trading stays halted; choose a target "
                    "(drctl execute --scenario data_loss --before T)");
        return;
    }
    detector_start_recovery(det, INCIDENT_DATA_LOSS, det->cond_data_loss, "detector.data_loss", reason, detected_ms,
                            params);
}

int detector_report_incident(Detector *det, const char *kind, const char *reason, int64_t detected_ms, char *ret_run,
                             size_t run_len)
{
    if (!det || det->closing || !det->incident_fn)
        return -ENOSYS;
    return det->incident_fn(kind, reason, detected_ms, NULL, ret_run, run_len, det->incident_data);
}

void detector_on_incident(Detector *det, DetectorIncidentFn fn, void *data)
{
    det->incident_fn = fn;
    det->incident_data = data;
}

static void detector_on_restart_timer(uv_timer_t *t)
{
    detector_restart_spawn(t->data);
}

static void detector_apply(Detector *det, const DetectorDecision *dec)
{
    Core *d = det->core;

    if (det->closing)
        return;
    for (size_t i = 0; i < dec->n_events; i++)
        detector_emit(det, dec->events[i].kind, dec->events[i].message);
    /* A recovery run owns trading and the database until it ends (it renames and restores
     * databases, and resumes trading itself after a passing reconcile): what the probes see in
     * the meantime must not halt what the run just resumed. The detector is reset when it ends. */
    if ((dec->actions & DETECTOR_ACT_HALT) && lease_held(d->lease)) {
        log_notice("detector", "not halting (%s): a recovery run is in charge", dec->halt_reason);
    } else if (dec->actions & DETECTOR_ACT_HALT) {
        det->halt_ms = clock_wall_ms();
        if (det->venue && venue_enabled(det->venue))
            venue_halt(det->venue, dec->halt_reason, NULL, NULL, NULL);
        else
            events_emit(d->events, SEV_CRITICAL, "detector.halt", NULL, false, NULL,
                        "cannot halt trading (%s): no venue is configured", dec->halt_reason);
    }
    if (dec->actions & DETECTOR_ACT_TRIGGER)
        detector_trigger(det, dec);
    /* A recovery run renames and restores databases: never restart the server under it. */
    if ((dec->actions & DETECTOR_ACT_RESTART) && lease_held(d->lease))
        log_notice("detector", "database restart skipped: a recovery run is active");
    else if (dec->actions & DETECTOR_ACT_RESTART)
        uv_timer_start(&det->restart_timer, detector_on_restart_timer, dec->restart_delay_ms, 0);
    if (dec->actions & DETECTOR_ACT_CHECK_NOW) {
        if (det->check_running)
            det->check_again = true;
        else
            detector_run_check(det);
    }
}

/* ---- liveness probe input ---- */

void detector_db_probe_ok(Detector *det, int64_t checksum_failures)
{
    DetectorDecision dec;
    if (!det || det->closing)
        return;
    detector_sm_probe_ok(&det->sm, clock_wall_ms(), checksum_failures, &dec);
    detector_apply(det, &dec);
}

void detector_on_standby_view(Detector *det, DetectorStandbyViewFn fn, void *data)
{
    det->view_fn = fn;
    det->view_data = data;
}

void detector_db_probe_failed(Detector *det, const char *sqlstate, const char *message)
{
    DetectorDecision dec;
    DetectorStandbyView view;
    if (!det || det->closing)
        return;
    int64_t now = clock_wall_ms();
    detector_sm_probe_failed(&det->sm, now, sqlstate ? sqlstate : "", message, &dec);
    detector_apply(det, &dec);
    /* Down past the grace: does the replication side agree that the primary is gone? */
    if (det->closing || !det->view_fn || !detector_sm_wants_standby_view(&det->sm, now))
        return;
    memset(&view, 0, sizeof(view));
    if (!det->view_fn(det->sm.first_failure_ms, &view, det->view_data))
        return;
    snprintf(det->failover_candidate, sizeof(det->failover_candidate), "%s", view.candidate);
    detector_sm_standby_view(&det->sm, now, &view, &dec);
    detector_apply(det, &dec);
}

/* ---- platform health probe input ---- */

void detector_platform_probe_ok(Detector *det)
{
    DetectorDecision dec;
    if (!det || det->closing)
        return;
    detector_sm_platform_ok(&det->sm, clock_wall_ms(), &dec);
    detector_apply(det, &dec);
}

void detector_platform_probe_failed(Detector *det, const char *message)
{
    DetectorDecision dec;
    if (!det || det->closing)
        return;
    detector_sm_platform_failed(&det->sm, clock_wall_ms(), message, &dec);
    detector_apply(det, &dec);
}

/* ---- replication rounds: split brain ---- */

void detector_split_brain(Detector *det, bool seen, const char *nodes)
{
    DetectorDecision dec;
    if (!det || det->closing)
        return;
    if (lease_held(det->core->lease)) {
        if (seen && !det->split_ignored)
            log_notice("detector", "%s answer as primaries while a recovery run is in charge: not a split brain "
                       "of its own", nodes ? nodes : "?");
        det->split_ignored = seen;
        return;
    }
    det->split_ignored = false;
    detector_sm_split_brain(&det->sm, clock_wall_ms(), seen, nodes, &dec);
    detector_apply(det, &dec);
}

/* ---- corruption check ---- */

static void detector_check_finish(Detector *det, bool ok, const char *sqlstate, const char *message)
{
    DetectorDecision dec;

    det->check_running = false;
    det->last_check_ms = clock_wall_ms();
    det->last_check_ok = ok;
    snprintf(det->last_check_error, sizeof(det->last_check_error), "%s%s%s", sqlstate && sqlstate[0] ? sqlstate : "",
             sqlstate && sqlstate[0] ? ": " : "", ok ? "" : message ? message : "failed");
    detector_sm_check_result(&det->sm, det->last_check_ms, det->check_started_ms, ok, sqlstate, message, &dec);
    detector_apply(det, &dec);
    if (det->check_again && !det->closing) {
        det->check_again = false;
        detector_run_check(det);
    }
}

static void detector_check_issue(Detector *det);

static void detector_on_check_result(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    Detector *det = data;
    const ConfigDetector *cfg = detector_cfg(det);
    size_t nq = cfg->n_corruption_queries, ni = cfg->n_amcheck_indexes;

    if (status == DR_ECANCELED) {
        det->check_running = false;
        return;
    }
    if (status != 0) {
        const char *sqlstate = pgconn_last_sqlstate(c);
        if (detector_sm_is_corruption_sqlstate(sqlstate)) {
            detector_check_finish(det, false, sqlstate, errmsg);
            return;
        }
        if (!sqlstate[0] || strncmp(sqlstate, "08", 2) == 0 || strncmp(sqlstate, "57P", 3) == 0) {
            /* Unreachable: the liveness probe reports that; this check says nothing. */
            det->check_running = false;
            log_debug("detector", "corruption check skipped: %s", errmsg ? errmsg : err_str(status));
            return;
        }
        log_warning("detector", "corruption check query failed (not a corruption signal): %s: %s", sqlstate,
                    errmsg ? errmsg : "");
        if (det->check_clean)
            snprintf(det->check_problem, sizeof(det->check_problem), "%s: %s", sqlstate, errmsg ? errmsg : "");
        det->check_clean = false;
    } else if (det->check_step == nq && (!res || PQntuples(res) == 0)) {
        log_debug("detector", "amcheck is not installed; bt_index_check skipped");
        det->check_step = nq + ni; /* past the indexes after the increment below */
    }
    det->check_step++;
    detector_check_issue(det);
}

/* Run step check_step: the configured queries, then amcheck's presence, then each index. */
static void detector_check_issue(Detector *det)
{
    const ConfigDetector *cfg = detector_cfg(det);
    size_t nq = cfg->n_corruption_queries, ni = cfg->n_amcheck_indexes, s = det->check_step;
    int r;

    if (s < nq) {
        r = pgconn_query(det->check_pg, cfg->corruption_queries[s], 0, NULL, detector_on_check_result, det);
    } else if (s == nq && ni > 0) {
        r = pgconn_query(det->check_pg, DETECTOR_AMCHECK_PROBE, 0, NULL, detector_on_check_result, det);
    } else if (s > nq && s - nq - 1 < ni) {
        const char *p[1] = {cfg->amcheck_indexes[s - nq - 1]};
        r = pgconn_query(det->check_pg, DETECTOR_AMCHECK_SQL, 1, p, detector_on_check_result, det);
    } else {
        /* A failure that is not a signal shows in `drctl status` (last_check_error) but is not
         * passed on as a SQLSTATE: it neither signals nor clears a suspicion. */
        detector_check_finish(det, det->check_clean, "", det->check_problem);
        return;
    }
    if (r < 0) {
        det->check_running = false;
        log_warning("detector", "cannot run the corruption check: %s", err_str(r));
    }
}

static void detector_run_check(Detector *det)
{
    const ConfigDetector *cfg = detector_cfg(det);

    if (det->check_running || det->closing || !det->check_pg)
        return;
    if (cfg->n_corruption_queries == 0 && cfg->n_amcheck_indexes == 0)
        return;
    if (det->sm.down)
        return; /* nothing to read; the liveness probe watches the outage */
    det->check_started_ms = clock_wall_ms();
    det->check_clean = true;
    det->check_problem[0] = '\0';
    det->check_step = 0;
    det->check_running = true;
    detector_check_issue(det);
}

static void detector_on_check_timer(uv_timer_t *t)
{
    detector_run_check(t->data);
}

/* ---- restart of a database that is down ---- */

static bool detector_find_damage(const ConfigDetector *cfg, const char *text, char *evidence, size_t n)
{
    if (!text)
        return false;
    for (size_t i = 0; i < cfg->n_damage_patterns; i++) {
        const char *hit = strcasestr(text, cfg->damage_patterns[i]);
        if (!hit)
            continue;
        /* Quote the line that matched. */
        const char *b = hit, *e = hit;
        while (b > text && b[-1] != '\n')
            b--;
        while (*e && *e != '\n')
            e++;
        snprintf(evidence, n, "%.*s", (int)(e - b > 300 ? 300 : e - b), b);
        return true;
    }
    return false;
}

static void detector_restart_judge(Detector *det, bool ok, const char *output, const char *log_tail)
{
    const ConfigDetector *cfg = detector_cfg(det);
    DetectorDecision dec;
    char evidence[320] = "";
    bool damage = false;

    if (!ok) {
        damage = detector_find_damage(cfg, output, evidence, sizeof(evidence)) ||
                 detector_find_damage(cfg, log_tail, evidence, sizeof(evidence));
        if (!damage) {
            /* The last non-empty line explains the failure best. */
            const char *txt = output && output[0] ? output : "";
            size_t len = strlen(txt);
            while (len > 0 && (txt[len - 1] == '\n' || txt[len - 1] == ' '))
                len--;
            size_t b = len;
            while (b > 0 && txt[b - 1] != '\n')
                b--;
            snprintf(evidence, sizeof(evidence), "%.*s", (int)(len - b > 300 ? 300 : len - b), txt + b);
        }
    }
    detector_sm_restart_result(&det->sm, clock_wall_ms(), ok, damage, evidence, &dec);
    detector_apply(det, &dec);
}

static void detector_log_tail_work(uv_work_t *req)
{
    LogTailWork *w = req->data;
    int fd = open(w->path, O_RDONLY | O_CLOEXEC);
    struct stat st;

    if (fd < 0)
        return;
    if (fstat(fd, &st) == 0) {
        off_t from = (off_t)w->offset;
        if (from > st.st_size || from < 0)
            from = 0;
        if (st.st_size - from > DETECTOR_LOG_TAIL)
            from = st.st_size - DETECTOR_LOG_TAIL;
        size_t len = (size_t)(st.st_size - from);
        w->text = malloc(len + 1);
        if (w->text) {
            ssize_t got = pread(fd, w->text, len, from);
            w->text[got > 0 ? got : 0] = '\0';
        }
    }
    close(fd);
}

static void detector_log_tail_done(uv_work_t *req, int status)
{
    LogTailWork *w = req->data;
    Detector *det = w->det;

    (void)status;
    det->pending--;
    det->log_work_busy = false;
    if (!det->closing)
        detector_restart_judge(det, w->ok, w->output, w->text);
    free(w->text);
    free(w->output);
    free(w->path);
    free(w);
    detector_maybe_closed(det);
}

static void detector_on_restart_exit(ChildProc *c, int64_t exit_status, int term_signal, void *data)
{
    Detector *det = data;
    const ConfigDetector *cfg = detector_cfg(det);
    size_t olen = 0, elen = 0;
    const char *out = child_stdout(c, &olen);
    const char *err = child_stderr(c, &elen);
    bool ok = exit_status == 0 && term_signal == 0;
    char how[64], *output = NULL;

    child_describe_exit(exit_status, term_signal, how, sizeof(how));
    if (asprintf(&output, "%s%s%s%s", out ? out : "", olen && elen ? "\n" : "", err ? err : "",
                 child_timed_out(c) ? "\n(timed out)" : "") < 0)
        output = NULL;
    det->restart_child = NULL;
    child_free(c);
    det->pending--;
    if (det->closing) {
        free(output);
        detector_maybe_closed(det);
        return;
    }
    log_info("detector", "restart command %s", how);
    if (!ok && cfg->server_log) {
        LogTailWork *w = calloc(1, sizeof(*w));
        if (w && (w->path = strdup(cfg->server_log))) {
            w->det = det;
            w->offset = det->log_offset;
            w->ok = ok;
            w->output = output;
            w->req.data = w;
            if (uv_queue_work(det->core->loop, &w->req, detector_log_tail_work, detector_log_tail_done) == 0) {
                det->pending++;
                det->log_work_busy = true;
                return;
            }
            free(w->path);
        }
        free(w);
    }
    detector_restart_judge(det, ok, output, NULL);
    free(output);
}

static void detector_restart_run(Detector *det)
{
    const ConfigDetector *cfg = detector_cfg(det);
    int r = 0;

    if (det->closing || !det->sm.down || cfg->n_restart_command == 0) {
        det->sm.restart_pending = false;
        return;
    }
    char msg[512];
    snprintf(msg, sizeof(msg), "restarting the database (attempt %llu of %lld): '%s'",
             (unsigned long long)det->sm.restarts_done + 1, (long long)cfg->restart_attempts, cfg->restart_command[0]);
    detector_emit(det, DETECTOR_EV_RESTARTING, msg);
    char **argv = calloc(cfg->n_restart_command + 1, sizeof(char *));
    if (!argv) {
        r = -ENOMEM;
    } else {
        for (size_t i = 0; i < cfg->n_restart_command; i++)
            argv[i] = cfg->restart_command[i];
        ChildOptions opt = {.argv = (const char *const *)argv,
                            .stdin_mode = CHILD_STDIN_NULL,
                            .stdout_mode = CHILD_STDOUT_CAPTURE,
                            .stdout_limit = 64 * 1024,
                            .stderr_limit = 64 * 1024,
                            .timeout_ms = cfg->restart_timeout_ms,
                            .kill_grace_ms = 2000,
                            .on_exit = detector_on_restart_exit,
                            .data = det};
        det->restart_child = child_spawn(det->core->loop, &opt, &r);
        free(argv);
    }
    if (!det->restart_child) {
        char why[256];
        snprintf(why, sizeof(why), "cannot run '%s': %s", cfg->restart_command[0], err_str(r));
        detector_restart_judge(det, false, why, NULL);
        return;
    }
    det->pending++;
}

static void detector_on_log_stat(uv_fs_t *req)
{
    Detector *det = req->data;
    det->log_offset = req->result == 0 ? (int64_t)req->statbuf.st_size : 0;
    uv_fs_req_cleanup(req);
    det->log_stat_busy = false;
    det->pending--;
    if (det->closing) {
        detector_maybe_closed(det);
        return;
    }
    detector_restart_run(det);
}

/* Note where the server log ends (so only this attempt's lines are searched), then run. */
static void detector_restart_prepare(Detector *det)
{
    const ConfigDetector *cfg = detector_cfg(det);

    det->log_offset = 0;
    if (cfg->server_log) {
        det->log_stat.data = det;
        if (uv_fs_stat(det->core->loop, &det->log_stat, cfg->server_log, detector_on_log_stat) == 0) {
            det->log_stat_busy = true;
            det->pending++;
            return;
        }
    }
    detector_restart_run(det);
}

/* The old postmaster is gone (or the wait ended otherwise): now the attempt runs. */
static void detector_on_pid_gone(int result, int64_t pid, uint64_t waited_ms, void *data)
{
    Detector *det = data;
    const ConfigDetector *cfg = detector_cfg(det);

    det->pid_wait = NULL;
    det->pending--;
    if (det->closing || result == DR_ECANCELED) {
        detector_maybe_closed(det);
        return;
    }
    if (result == 0 && pid > 0)
        log_info("detector", "the old postmaster (pid %lld) is gone after %llu ms: restarting", (long long)pid,
                 (unsigned long long)waited_ms);
    else if (result == -ETIMEDOUT)
        log_warning("detector", "the old postmaster (pid %lld in '%s/postmaster.pid') is still there after %llu ms; "
                    "restarting anyway", (long long)pid, cfg->data_directory ? cfg->data_directory : "?",
                    (unsigned long long)waited_ms);
    else if (result < 0)
        log_warning("detector", "cannot read '%s/postmaster.pid' (%s): restarting without waiting for the old "
                    "postmaster", cfg->data_directory ? cfg->data_directory : "?", err_str(result));
    detector_restart_prepare(det);
}

/* A restart attempt: after a crash (kill -9) the killed postmaster may not be reaped yet, and a
 * server started meanwhile refuses ('lock file "postmaster.pid" already exists'). With
 * detector.data_directory the attempt first waits, polling on the loop, until the pid in its
 * postmaster.pid is gone, at most restart_timeout. */
static void detector_restart_spawn(Detector *det)
{
    const ConfigDetector *cfg = detector_cfg(det);
    char path[4096];

    if (det->restart_child || det->log_stat_busy || det->log_work_busy || det->pid_wait || det->closing)
        return;
    /* A run that started after the restart was scheduled owns the server now (a failover may have
     * promoted a standby: restarting the old primary would make two). */
    if (lease_held(det->core->lease)) {
        log_notice("detector", "database restart skipped: a recovery run is active");
        return;
    }
    if (cfg->data_directory) {
        snprintf(path, sizeof(path), "%s/postmaster.pid", cfg->data_directory);
        int r = pidwait_start(det->core->loop, path, cfg->restart_timeout_ms, 20, detector_on_pid_gone, det, &det->pid_wait);
        if (r == 0) {
            det->pending++;
            return;
        }
        log_warning("detector", "cannot wait for the old postmaster (%s): restarting at once", err_str(r));
    }
    detector_restart_prepare(det);
}

/* ---- life cycle ---- */

static DetectorSmConfig detector_sm_config(const Config *cfg)
{
    return (DetectorSmConfig){.halt_after = (uint64_t)cfg->detector.halt_after,
                              .can_restart = cfg->detector.n_restart_command > 0,
                              .restart_attempts = (uint64_t)cfg->detector.restart_attempts,
                              .restart_delay_ms = cfg->detector.restart_delay_ms,
                              .failover = cfg->replication.failover.enabled,
                              .failover_grace_ms = cfg->replication.failover.grace_ms,
                              .app_crash = cfg->detector.app_crash && cfg->platform.health_url != NULL,
                              .platform_down_after = (uint64_t)cfg->platform.down_after};
}

Detector *detector_new(Core *d, Venue *venue)
{
    Detector *det = calloc(1, sizeof(*det));
    if (!det)
        return NULL;
    det->core = d;
    det->venue = venue;
    DetectorSmConfig smc = detector_sm_config(d->cfg);
    detector_sm_init(&det->sm, &smc);
    detector_sm_assume_open(&det->sm); /* conditions an earlier run of the daemon left open close too */
    if (!(det->watched = watched_new(d, detector_on_data_loss, det))) {
        free(det);
        return NULL;
    }
    uv_timer_init(d->loop, &det->check_timer);
    uv_timer_init(d->loop, &det->restart_timer);
    det->check_timer.data = det->restart_timer.data = det;
    return det;
}

static void detector_on_pg_closed(void *data)
{
    Detector *det = data;
    det->pending--;
    detector_maybe_closed(det);
}

int detector_check_config(const Detector *det, const Config *cfg, char *err, size_t errlen)
{
    const ConfigDetector *dc = &cfg->detector;
    char msg[512], red[512];

    (void)det;
    int r = watched_check_config(cfg, err, errlen);
    if (r < 0)
        return r;
    if (dc->n_corruption_queries == 0 && dc->n_amcheck_indexes == 0)
        return 0; /* no check connection is made */
    r = pgconn_check_conninfo(dc->conninfo, msg, sizeof(msg));
    if (r < 0) {
        log_redact_conninfo(dc->conninfo ? dc->conninfo : "", red, sizeof(red));
        snprintf(err, errlen, "cannot use detector.conninfo '%s' for the corruption checks: %s", red,
                 msg[0] ? msg : err_str(r));
    }
    return r;
}

int detector_follow_primary(Detector *det, const char *from, const char *to)
{
    int r = pgconn_follow_set(&det->follow, from, to);
    if (r <= 0 || !det->configured)
        return r < 0 ? r : 0;
    return detector_apply_config(det, det->core->cfg); /* the connections are remade when they moved */
}

int detector_apply_config(Detector *det, const Config *cfg)
{
    const ConfigDetector *dc = &cfg->detector;
    DetectorSmConfig smc = detector_sm_config(cfg);

    if (det->closing)
        return DR_ECANCELED;
    det->configured = true;
    detector_sm_configure(&det->sm, &smc);
    snprintf(det->cond_unreachable, sizeof(det->cond_unreachable), "detector.unreachable:%s", cfg->cluster);
    snprintf(det->cond_restart, sizeof(det->cond_restart), "detector.restart:%s", cfg->cluster);
    snprintf(det->cond_corruption, sizeof(det->cond_corruption), "detector.corruption:%s", cfg->cluster);
    snprintf(det->cond_failover, sizeof(det->cond_failover), "detector.failover:%s", cfg->cluster);
    snprintf(det->cond_app_crash, sizeof(det->cond_app_crash), "detector.app_crash:%s", cfg->cluster);
    snprintf(det->cond_split_brain, sizeof(det->cond_split_brain), "detector.split_brain:%s", cfg->cluster);
    snprintf(det->cond_data_loss, sizeof(det->cond_data_loss), "detector.data_loss:%s", cfg->cluster);
    char *conninfo = pgconn_follow_apply(&det->follow, dc->conninfo, NULL);
    if (dc->conninfo && !conninfo)
        return -ENOMEM;
    int wr = watched_apply_config(det->watched, cfg, conninfo);
    if (wr < 0) {
        free(conninfo);
        return wr;
    }

    bool checks = dc->n_corruption_queries > 0 || dc->n_amcheck_indexes > 0;
    bool same = det->check_pg && det->check_conninfo && strcmp(det->check_conninfo, conninfo) == 0 &&
                det->check_timeout_ms == dc->corruption_timeout_ms;
    if (det->check_pg && (!checks || !same)) {
        det->pending++;
        pgconn_close(det->check_pg, detector_on_pg_closed, det); /* a running check ends CANCELED */
        det->check_pg = NULL;
        det->check_running = false;
    }
    if (checks && !det->check_pg) {
        PgConnOptions opts = {.connect_timeout_ms = cfg->database.connect_timeout_ms,
                              .query_timeout_ms = dc->corruption_timeout_ms,
                              .reconnect_min_ms = 100,
                              .reconnect_max_ms = dc->corruption_interval_ms};
        char *msg = NULL;
        det->check_pg = pgconn_new_msg(det->core->loop, conninfo, &opts, &msg);
        if (!det->check_pg) {
            char red[512];
            log_redact_conninfo(conninfo, red, sizeof(red));
            log_error("detector", "cannot use conninfo '%s': %s", red, msg ? msg : "out of memory");
            free(msg);
            free(conninfo);
            return DR_ECONFIG;
        }
        free(det->check_conninfo);
        det->check_conninfo = strdup(conninfo);
        det->check_timeout_ms = dc->corruption_timeout_ms;
    }
    free(conninfo);
    if (!checks) {
        uv_timer_stop(&det->check_timer);
        det->check_interval_ms = 0;
    } else if (det->check_interval_ms != dc->corruption_interval_ms ||
               !uv_is_active((uv_handle_t *)&det->check_timer)) {
        det->check_interval_ms = dc->corruption_interval_ms;
        uv_timer_start(&det->check_timer, detector_on_check_timer, dc->corruption_interval_ms,
                       dc->corruption_interval_ms);
    }
    return 0;
}

void detector_run_ended(Detector *det, const char *run, bool recovered)
{
    DetectorDecision dec;
    if (!det || det->closing)
        return;
    detector_sm_run_ended(&det->sm, clock_wall_ms(), recovered, run, &dec);
    for (size_t i = 0; i < dec.n_events; i++)
        detector_emit(det, dec.events[i].kind, dec.events[i].message);
    det->triggered_run[0] = '\0';
    det->trigger_tried = false;
    uv_timer_stop(&det->restart_timer);
    watched_reset(det->watched); /* the next sweep is a new baseline */
    if (det->data_loss_open && recovered) {
        det->data_loss_open = false;
        events_emit(det->core->events, SEV_INFO, "detector.data_loss", det->cond_data_loss, true, NULL,
                    "run %s recovered the watched tables", run ? run : "?");
    }
}

static void detector_on_timer_closed(uv_handle_t *h)
{
    Detector *det = h->data;
    det->pending--;
    detector_maybe_closed(det);
}

void detector_close(Detector *det, void (*closed_cb)(void *data), void *data)
{
    det->closing = true;
    det->closed_cb = closed_cb;
    det->closed_data = data;
    if (det->check_pg) {
        det->pending++;
        pgconn_close(det->check_pg, detector_on_pg_closed, det);
        det->check_pg = NULL;
    }
    if (det->restart_child)
        child_kill(det->restart_child, SIGKILL); /* its exit callback releases it */
    pidwait_cancel(det->pid_wait);                /* its callback releases it */
    det->pending++;
    watched_close(det->watched, detector_on_pg_closed, det);
    det->watched = NULL;
    det->pending += 2;
    uv_close((uv_handle_t *)&det->check_timer, detector_on_timer_closed);
    uv_close((uv_handle_t *)&det->restart_timer, detector_on_timer_closed);
}

json_t *detector_watched_tables_json(const Detector *det)
{
    return watched_tables_json(det ? det->watched : NULL);
}

json_t *detector_status_json(const Detector *det)
{
    const DetectorSm *sm = &det->sm;
    json_t *j = json_pack("{s:s,s:I,s:b,s:I,s:I,s:b,s:I}", "phase", detector_sm_phase_name(detector_sm_phase(sm)),
                          "consecutive_failures", (json_int_t)sm->consecutive_failures, "halt_requested",
                          sm->halt_requested, "halt_ms", (json_int_t)det->halt_ms, "restarts_done",
                          (json_int_t)sm->restarts_done, "restart_running", det->restart_child != NULL,
                          "corruption_signals", (json_int_t)sm->signals);
    if (j && (sm->unreachable_open || sm->corruption_open || sm->failover_open || sm->platform.open ||
              sm->split.open || det->data_loss_open)) {
        json_t *open = json_array();
        if (sm->unreachable_open)
            json_array_append_new(open, json_string(det->cond_unreachable));
        if (sm->corruption_open)
            json_array_append_new(open, json_string(det->cond_corruption));
        if (sm->failover_open)
            json_array_append_new(open, json_string(det->cond_failover));
        if (sm->platform.open)
            json_array_append_new(open, json_string(det->cond_app_crash));
        if (sm->split.open)
            json_array_append_new(open, json_string(det->cond_split_brain));
        if (det->data_loss_open)
            json_array_append_new(open, json_string(det->cond_data_loss));
        json_object_set_new(j, "open_conditions", open);
    }
    if (!j)
        return NULL;
    if (sm->checksum_failures >= 0)
        json_object_set_new(j, "checksum_failures", json_integer(sm->checksum_failures));
    if (sm->down)
        json_object_set_new(j, "down_since_ms", json_integer(sm->down_since_ms));
    if (sm->failover) {
        static const char *const judged[] = {"", "one_side_only", "no_standby", "primary_failure"};
        json_object_set_new(j, "failover", json_string(judged[sm->failover]));
    }
    if (sm->corruption > 0) {
        json_object_set_new(j, "first_signal", json_string(sm->first_signal));
        json_object_set_new(j, "first_signal_ms", json_integer(sm->first_signal_ms));
    }
    if (sm->last_error[0])
        json_object_set_new(j, "last_probe_error", json_string(sm->last_error));
    if (sm->platform.consecutive_failures || sm->platform.judged) {
        static const char *const pjudged[] = {"down", "not_app_crash", "app_crash"};
        json_object_set_new(j, "platform", json_pack("{s:I,s:I,s:s}", "consecutive_failures",
                                                     (json_int_t)sm->platform.consecutive_failures, "since_ms",
                                                     (json_int_t)sm->platform.first_failure_ms, "judged",
                                                     pjudged[sm->platform.judged]));
    }
    if (det->last_check_ms) {
        json_object_set_new(j, "last_check_ms", json_integer(det->last_check_ms));
        json_object_set_new(j, "last_check_ok", json_boolean(det->last_check_ok));
        if (!det->last_check_ok)
            json_object_set_new(j, "last_check_error", json_string(det->last_check_error));
    }
    if (det->watched && det->core->cfg->detector.n_watched_tables)
        json_object_set_new(j, "watched_tables", watched_tables_json(det->watched));
    if (det->trigger_tried) {
        json_object_set_new(j, "scenario_run", det->triggered_run[0] ? json_string(det->triggered_run) : json_null());
        json_object_set_new(j, "trigger_result", json_string(det->trigger_result ? err_name(det->trigger_result) : "ok"));
    }
    return j;
}
