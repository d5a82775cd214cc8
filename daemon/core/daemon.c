/*
 * daemon: wiring, built-in commands, reload and shutdown (see daemon.h).
 */
#include "core/daemon.h"
#include "core/audit.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/stat.h>
#include <unistd.h>

#include "alerts/alerts.h"
#include "atomicfile.h"
#include "clock.h"
#include "err.h"
#include "log.h"
#include "detect/detector.h"
#include "cap/reconcile.h"
#include "cap/standby.h"
#include "scenario/scenarios.h"
#include "cap/venue/venue.h"
#include "observe/probes.h"
#include "observe/replication.h"
#include "pgconn.h"
#include "scenario/drill.h"
#include "scenario/validate.h"

struct ReloadWaiter {
    DaemonReloadFn fn;
    void *data;
    ReloadWaiter *next;
};

typedef struct ReloadWork {
    uv_work_t req;
    Daemon *d;
    char *path;
    Config *cfg;
    RolePolicy roles;
    char *errors;
    int result;
} ReloadWork;

/* ---- built-in commands ---- */

static void daemon_cmd_ping(CtlCall *call, const json_t *args, void *data)
{
    (void)args;
    (void)data;
    control_reply_ok(call, json_pack("{s:b,s:I}", "pong", 1, "ts_ms", (json_int_t)clock_wall_ms()));
}

static void daemon_cmd_status(CtlCall *call, const json_t *args, void *data)
{
    Daemon *d = data;
    uint64_t up_ms = uv_now(d->core.loop) - d->started_mono_ms;
    json_t *res;

    (void)args;
    res = json_pack("{s:s,s:i,s:I,s:I,s:s,s:s,s:s,s:{s:s,s:i},s:{s:i,s:i}}", "version", DRSUP_VERSION, "pid",
                    (int)getpid(), "started_ms", (json_int_t)d->core.started_ms, "uptime_s", (json_int_t)(up_ms / 1000),
                    "config_file", d->config_path, "cluster", d->cfg->cluster, "state",
                    d->stopping ? "stopping" : d->reloading ? "reloading" : "running", "control", "socket",
                    control_socket_path(d->core.control), "clients", (int)control_client_count(d->core.control),
                    "reloads", "ok", (int)d->reloads_ok, "failed", (int)d->reloads_failed);
    if (res) {
        json_object_set_new(res, "components", status_components_json(d->core.status));
        if (d->venue)
            json_object_set_new(res, "trading", venue_status_json(d->venue));
        if (d->detector)
            json_object_set_new(res, "detector", detector_status_json(d->detector));
        if (d->standby)
            json_object_set_new(res, "standby", standby_status_json(d->standby));
        json_object_set(res, "follows_primary", d->follows ? d->follows : json_null());
        json_object_set_new(res, "ha", leader_status_json(d->core.leader));
    }
    control_reply_ok(call, res);
}

static void daemon_reply_reload(int result, const char *errors, void *data)
{
    CtlCall *call = data;
    if (result < 0)
        control_reply_error(call, result, "%s", errors ? errors : err_str(result));
    else
        control_reply_ok(call, json_pack("{s:b}", "reloaded", 1));
}

static void daemon_cmd_reload(CtlCall *call, const json_t *args, void *data)
{
    (void)args;
    daemon_reload(data, daemon_reply_reload, call);
}

static void daemon_cmd_watch(CtlCall *call, const json_t *args, void *data)
{
    (void)args;
    (void)data;
    int r = control_call_watch(call);
    if (r < 0)
        control_reply_error(call, r, "cannot watch: %s", err_str(r));
    else
        control_reply_ok(call, json_pack("{s:b}", "watching", 1));
}

/* ---- high availability (core/leader.c, docs/ha.md) ---- */

static void daemon_cmd_leader(CtlCall *call, const json_t *args, void *data)
{
    Daemon *d = data;
    (void)args;
    control_reply_ok(call, leader_status_json(d->core.leader));
}

static void daemon_reply_step_down(int result, const char *message, void *data)
{
    if (result < 0)
        control_reply_error(data, result, "%s", message);
    else
        control_reply_ok(data, json_pack("{s:b,s:s}", "stepped_down", 1, "message", message));
}

static void daemon_cmd_step_down(CtlCall *call, const json_t *args, void *data)
{
    Daemon *d = data;
    (void)args;
    leader_step_down(d->core.leader, daemon_reply_step_down, call);
}

/* A follower refuses every mutating command but reload (its own configuration is its business). */
static bool daemon_gate(const char *command, char *why, size_t whylen, void *data)
{
    Daemon *d = data;
    if (leader_acting(d->core.leader) || strcmp(command, "reload") == 0)
        return true;
    leader_refusal(d->core.leader, why, whylen);
    return false;
}

/* What only the leader does, started the first time this daemon leads: the halt persisted in the
 * shared state_dir re-asserted, the unfinished runs resumed from their journals. */
static void daemon_start_acting(Daemon *d)
{
    if (d->acting_started)
        return;
    d->acting_started = true;
    venue_start_async(d->venue); /* halt.json read on the thread pool, then re-asserted */
    int r = scenarios_start(d->scenarios);
    if (r < 0)
        log_error("scenario", "cannot load scenario runs: %s", err_str(r));
}

static void daemon_on_leader_change(LeaderChange change, void *data)
{
    Daemon *d = data;
    if (change == LEADER_BECAME && !d->stopping)
        daemon_start_acting(d);
    else if (change == LEADER_REJOIN && !d->stopping)
        daemon_stop(d, 75); /* EX_TEMPFAIL: systemd (Restart=on-failure) starts a fresh follower */
    daemon_update_status(d);
}

/* ---- the audit log ---- */

static void daemon_audit_command(const PeerCred *peer, const char *command, const json_t *args, int result,
                                 const char *error, void *data)
{
    Daemon *d = data;
    if (d->audit)
        audit_command(d->audit, peer, command, args, result, error);
}

/* ---- metrics ---- */

/* The daemon's own families: up, start time, version, reloads, control clients. */
static void daemon_collect(MetricsWriter *w, void *data)
{
    const Daemon *d = data;
    const char *const version[][2] = {{"version", DRSUP_VERSION}};
    const char *const ok[][2] = {{"result", "ok"}}, *const failed[][2] = {{"result", "failed"}};

    metrics_family(w, "drsupervisor_up", METRIC_GAUGE, "1 while the daemon runs its loop");
    metrics_value(w, "drsupervisor_up", 1);
    metrics_family(w, "drsupervisor_build_info", METRIC_GAUGE, "the daemon's version, as a label");
    metrics_sample(w, "drsupervisor_build_info", version, 1, 1);
    metrics_family(w, "drsupervisor_start_time_seconds", METRIC_GAUGE, "when the daemon started, Unix time");
    metrics_value(w, "drsupervisor_start_time_seconds", (double)d->core.started_ms / 1000.0);
    metrics_family(w, "drsupervisor_reloads_total", METRIC_COUNTER, "configuration reloads since start, by result");
    metrics_sample(w, "drsupervisor_reloads_total", ok, 1, d->reloads_ok);
    metrics_sample(w, "drsupervisor_reloads_total", failed, 1, d->reloads_failed);
    metrics_family(w, "drsupervisor_control_clients", METRIC_GAUGE, "clients connected to the control socket");
    metrics_value(w, "drsupervisor_control_clients", d->core.control ? control_client_count(d->core.control) : 0);
    if (leader_enabled(d->core.leader)) {
        metrics_family(w, "drsupervisor_ha_leader", METRIC_GAUGE, "high availability: 1 while this daemon leads and acts");
        metrics_value(w, "drsupervisor_ha_leader", leader_acting(d->core.leader) ? 1 : 0);
        metrics_family(w, "drsupervisor_ha_fencing_token", METRIC_GAUGE,
                       "high availability: the leader key's revision while this daemon leads, else 0");
        metrics_value(w, "drsupervisor_ha_fencing_token", (double)leader_token(d->core.leader));
    }
}

/* ---- checking a configuration before it is used ---- */

/*
 * Ask every module whether it would accept cfg, before anything is swapped or started. Each
 * refusal is one line "module: reason" in *ret_errors (caller frees). Pure: what needs I/O (secret
 * files, the backup key) was checked as the file was read. Returns 0, or DR_ECONFIG (or -ENOMEM)
 * when a module refuses.
 */
int daemon_check_config(const Daemon *d, const Config *cfg, char **ret_errors)
{
    char err[512];
    char *out = NULL;
    size_t len = 0;
    int result = 0;
    FILE *f = open_memstream(&out, &len);

    *ret_errors = NULL;
    if (!f)
        return -ENOMEM;
#define DAEMON_CHECK(name, call)                                                                                       \
    do {                                                                                                               \
        err[0] = '\0';                                                                                                 \
        int r_ = (call);                                                                                               \
        if (r_ < 0) {                                                                                                  \
            fprintf(f, "%s%s: %s", result ? "\n" : "", name, err[0] ? err : err_str(r_));                             \
            if (result == 0 || r_ == -ENOMEM)                                                                          \
                result = r_;                                                                                           \
        }                                                                                                              \
    } while (0)
    /* The metrics endpoint is opened once, at start. */
    if (d && (cfg->metrics.enabled != d->cfg->metrics.enabled ||
              (cfg->metrics.enabled && strcmp(cfg->metrics.listen, d->cfg->metrics.listen)))) {
        fprintf(f, "metrics: metrics.listen is opened at start: changing it needs a restart");
        result = DR_ECONFIG;
    }
    /* The checks are pure: without a daemon (--check-config) the modules' handles are NULL. */
    DAEMON_CHECK("probes", probes_check_config(d ? d->probes : NULL, cfg, err, sizeof(err)));
    DAEMON_CHECK("detector", detector_check_config(d ? d->detector : NULL, cfg, err, sizeof(err)));
    DAEMON_CHECK("backups", backups_check_config(d ? d->backups : NULL, cfg, err, sizeof(err)));
    DAEMON_CHECK("scenarios", scenarios_check_config(d ? d->scenarios : NULL, cfg, err, sizeof(err)));
    DAEMON_CHECK("drills", drills_check_config(d ? d->drills : NULL, cfg, err, sizeof(err)));
    DAEMON_CHECK("ha", leader_check_config(d ? d->core.leader : NULL, cfg, err, sizeof(err)));
#undef DAEMON_CHECK
    /* alerts and venue: everything they can refuse (secret files, URLs, commands) config_load has
     * checked already; their apply fails only on an allocation. */
    if (fclose(f) != 0 || !out) {
        free(out);
        return -ENOMEM;
    }
    if (result < 0)
        *ret_errors = out;
    else
        free(out);
    return result;
}

/* ---- reload ---- */

static void daemon_reload_work(uv_work_t *req)
{
    ReloadWork *w = req->data;
    char err[512] = "";

    /* Off the loop: file I/O, YAML parsing and NSS group lookups may block. */
    w->result = config_load(w->path, &w->cfg, &w->errors);
    if (w->result == 0) {
        w->result = roles_policy_build(w->cfg->control.operators_group, &w->roles, err, sizeof(err));
        if (w->result < 0) {
            if (asprintf(&w->errors, "%s: %s", w->path, err) < 0)
                w->errors = NULL;
            w->cfg = config_free(w->cfg);
        }
    }
}

static void daemon_warn_restart_needed(const Config *old, const Config *new)
{
    if (strcmp(old->control.socket_path, new->control.socket_path) || old->control.mode != new->control.mode ||
        (old->control.group ? 1 : 0) != (new->control.group ? 1 : 0) ||
        (old->control.group && strcmp(old->control.group, new->control.group)))
        log_warning("config", "control socket settings changed; they take effect at the next restart");
    if (strcmp(old->state_dir, new->state_dir))
        log_warning("config", "state_dir changed; it takes effect at the next restart");
}

/*
 * Apply d->cfg to every module, in the order start-up uses. Each module checked it before, so a
 * failure here is an allocation that failed (or a module closing): every one is reported, one line
 * "module: reason" in *ret_errors (caller frees), and the first code returned.
 */
static int daemon_apply_config(Daemon *d, char **ret_errors)
{
    char *out = NULL;
    size_t len = 0;
    int result = 0;
    FILE *f = open_memstream(&out, &len);

#define DAEMON_APPLY(name, call)                                                                                       \
    do {                                                                                                               \
        int r_ = (call);                                                                                               \
        if (r_ < 0) {                                                                                                  \
            if (f)                                                                                                     \
                fprintf(f, "%s%s: %s", result ? "\n" : "", name, err_str(r_));                                        \
            if (result == 0)                                                                                           \
                result = r_;                                                                                           \
        }                                                                                                              \
    } while (0)
    DAEMON_APPLY("probes", probes_apply_config(d->probes, d->cfg));
    DAEMON_APPLY("replication", replication_apply_config(d->replication, d->cfg));
    DAEMON_APPLY("alerts", alerts_apply_config(d->alerts, d->cfg));
    DAEMON_APPLY("venue", venue_apply_config(d->venue, d->cfg));
    DAEMON_APPLY("detector", detector_apply_config(d->detector, d->cfg));
    DAEMON_APPLY("breach", breach_signals_apply_config(d->breach, d->cfg));
    DAEMON_APPLY("backups", backups_apply_config(d->backups, d->cfg));
    DAEMON_APPLY("wal", wal_apply_config(d->wal, d->cfg));
    DAEMON_APPLY("offsite", offsite_apply_config(d->offsite, d->cfg));
    DAEMON_APPLY("scenarios", scenarios_apply_config(d->scenarios, d->cfg));
    DAEMON_APPLY("drills", drills_apply_config(d->drills, d->cfg));
    DAEMON_APPLY("ha", leader_apply_config(d->core.leader, d->cfg));
    if (d->audit)
        audit_set_rotation(d->audit, d->cfg->audit.max_bytes, (int)d->cfg->audit.keep);
#undef DAEMON_APPLY
    *ret_errors = NULL;
    if (f && fclose(f) == 0 && result < 0)
        *ret_errors = out;
    else
        free(out);
    return result;
}

static void daemon_reload_done(uv_work_t *req, int status)
{
    ReloadWork *w = req->data;
    Daemon *d = w->d;
    ReloadWaiter *waiters = d->reload_waiters;
    const char *outcome = "configuration reload refused, the old configuration keeps running";
    char *msg = NULL;

    d->reload_waiters = NULL;
    d->reloading = false;
    if (status < 0 && w->result == 0)
        w->result = status;
    if (w->result == 0 && d->stopping)
        w->result = DR_ECANCELED;
    if (w->result == 0) {
        /* Every module says yes before anything changes; one no and the old configuration stays. */
        w->result = daemon_check_config(d, w->cfg, &w->errors);
    }
    if (w->result == 0) {
        daemon_warn_restart_needed(d->cfg, w->cfg);
        /* Keep the settings that need a restart as they are running. */
        free(w->cfg->control.socket_path);
        w->cfg->control.socket_path = strdup(d->cfg->control.socket_path);
        free(w->cfg->state_dir);
        w->cfg->state_dir = strdup(d->cfg->state_dir);
        free(w->cfg->node_dir);
        w->cfg->node_dir = strdup(d->cfg->node_dir);
        config_free(d->cfg);
        d->cfg = w->cfg;
        d->core.cfg = d->cfg;
        w->cfg = NULL;
        roles_policy_done(&d->roles);
        d->roles = w->roles;
        memset(&w->roles, 0, sizeof(w->roles));
        log_set_max_priority(d->cfg->log_level);
        control_configure(d->core.control, &d->cfg->control, &d->roles);
        /* Checked above, so an apply fails only when memory runs out: reported, never counted as a
         * reload that worked. */
        w->result = daemon_apply_config(d, &w->errors);
        outcome = "configuration reloaded only in part (reload again)";
    }
    if (w->result < 0 && asprintf(&msg, "%s:\n%s", outcome, w->errors ? w->errors : err_str(w->result)) < 0)
        msg = NULL;
    if (w->result == 0) {
        d->reloads_ok++;
        d->config_dirty = false;
        events_emit(d->core.events, SEV_INFO, "config.reload", NULL, false, NULL, "configuration reloaded from '%s'",
                    d->config_path);
    } else {
        d->reloads_failed++;
        /* The event is one log line: the reasons joined with "; ". */
        char *line = msg ? malloc(2 * strlen(msg) + 1) : NULL;
        if (line) {
            char *o = line;
            for (const char *c = msg; *c; c++) {
                if (*c != '\n') {
                    *o++ = *c;
                    continue;
                }
                if (c > msg && c[-1] != ':')
                    *o++ = ';';
                *o++ = ' ';
            }
            while (o > line && (o[-1] == ' ' || o[-1] == ';'))
                o--;
            *o = '\0';
        }
        events_emit(d->core.events, SEV_ERROR, "config.reload", NULL, false, NULL, "%s", line ? line : outcome);
        free(line);
    }
    notify_ready(d->notify, NULL);
    daemon_update_status(d);
    /* Answer in the order the reloads were asked for. */
    ReloadWaiter *rev = NULL;
    while (waiters) {
        ReloadWaiter *n = waiters->next;
        waiters->next = rev;
        rev = waiters;
        waiters = n;
    }
    while (rev) {
        ReloadWaiter *n = rev->next;
        if (rev->fn)
            rev->fn(w->result, msg ? msg : outcome, rev->data);
        free(rev);
        rev = n;
    }
    free(msg);
    config_free(w->cfg); /* a configuration that was not taken (refused, or the daemon is stopping) */
    roles_policy_done(&w->roles);
    free(w->errors);
    free(w->path);
    free(w);
}

void daemon_reload(Daemon *d, DaemonReloadFn done, void *data)
{
    ReloadWaiter *wt = calloc(1, sizeof(*wt));
    ReloadWork *w;

    if (!wt) {
        if (done)
            done(-ENOMEM, NULL, data);
        return;
    }
    wt->fn = done;
    wt->data = data;
    wt->next = d->reload_waiters;
    d->reload_waiters = wt;
    if (d->reloading)
        return; /* joins the reload under way */
    if (d->stopping) {
        d->reload_waiters = NULL;
        free(wt);
        if (done)
            done(DR_ECANCELED, "the daemon is stopping", data);
        return;
    }
    w = calloc(1, sizeof(*w));
    if (!w || !(w->path = strdup(d->config_path))) {
        free(w);
        d->reload_waiters = NULL;
        free(wt);
        if (done)
            done(-ENOMEM, NULL, data);
        return;
    }
    d->reloading = true;
    log_info("config", "reloading configuration from '%s'", d->config_path);
    notify_reloading(d->notify);
    w->d = d;
    w->req.data = w;
    int r = uv_queue_work(d->core.loop, &w->req, daemon_reload_work, daemon_reload_done);
    if (r < 0) {
        w->result = r;
        daemon_reload_done(&w->req, r);
    }
}

/* ---- signals and status ---- */

static void daemon_on_signal(uv_signal_t *h, int signum)
{
    Daemon *d = h->data;

    if (signum == SIGHUP) {
        daemon_reload(d, NULL, NULL);
        return;
    }
    log_notice("main", "received %s, stopping", signum == SIGTERM ? "SIGTERM" : "SIGINT");
    daemon_stop(d, 0);
}

void daemon_update_status(Daemon *d)
{
    char line[256], scn[200], full[460];
    status_summary(d->core.status, line, sizeof(line));
    scenarios_status_line(d->scenarios, scn, sizeof(scn));
    snprintf(full, sizeof(full), "%s%s%s", scn, scn[0] && line[0] ? "; " : "", line);
    notify_status(d->notify, full[0] ? full : "running");
}

static void daemon_on_status_timer(uv_timer_t *t)
{
    daemon_update_status(t->data);
}

/* ---- life cycle ---- */

/* Database probe outcomes go to the detector. */
static void daemon_probe_ok(void *data, int64_t checksum_failures)
{
    detector_db_probe_ok(data, checksum_failures);
}

static void daemon_probe_failed(void *data, const char *sqlstate, const char *message)
{
    detector_db_probe_failed(data, sqlstate, message);
}

/* Platform health outcomes go to the detector too (an app crash: the platform down, the database fine). */
static void daemon_platform_ok(void *data)
{
    detector_platform_probe_ok(data);
}

static void daemon_platform_failed(void *data, const char *message)
{
    detector_platform_probe_failed(data, message);
}

static void daemon_on_status_changed(void *data)
{
    daemon_update_status(data);
}

/* The detector asks what the standbys say of the primary (a primary failure needs both sides). */
static bool daemon_standby_view(int64_t since_ms, DetectorStandbyView *out, void *data)
{
    Daemon *d = data;
    ReplFailoverView v;

    if (!d->replication)
        return false;
    replication_failover_view(d->replication, since_ms, &v);
    if (!v.configured)
        return false;
    out->primary_answers = v.primary_answered;
    out->standbys_asked = v.standbys_asked;
    out->standbys_lost = v.standbys_lost;
    snprintf(out->lost_by, sizeof(out->lost_by), "%s", v.lost_by);
    snprintf(out->candidate, sizeof(out->candidate), "%s", v.candidate);
    snprintf(out->why, sizeof(out->why), "%s", v.why);
    return true;
}

/* Every replication round tells the detector whether two nodes answered as primaries. */
static void daemon_split_brain(bool split, const char *nodes, void *data)
{
    Daemon *d = data;
    detector_split_brain(d->detector, split, nodes);
}

/* One conninfo of the configuration in the follows report: whether it names the old primary's server. */
static void daemon_follows_add(json_t *list, const char *key, const char *conninfo, const char *from, const char *how)
{
    if (!conninfo)
        return;
    int same = pgconn_conninfo_same_server(conninfo, from);
    json_array_append_new(list, json_pack("{s:s,s:b,s:s}", "key", key, "follows", same == 1, "why",
                                          same == 1 ? how : same < 0 ? "cannot be parsed: used as written"
                                                                     : "names another server: used as written"));
}

/*
 * A standby was promoted (or the record of one was read at start, or the configuration reloaded):
 * the liveness probe follows it, and every conninfo of the configuration that names the server of
 * the primary as configured (replication.nodes, role primary) is retargeted to the new primary's
 * host and port by its module; one that names another server is left alone. Never written to
 * the file.
 */
static void daemon_follow_primary(const char *node, const char *conninfo, void *data)
{
    Daemon *d = data;
    const Config *cfg = d->cfg;
    const char *from = d->replication ? replication_configured_primary_conninfo(d->replication) : NULL;
    int r = d->probes ? probes_set_server(d->probes, conninfo) : 0;
    if (r < 0)
        log_error("probe", "cannot point the liveness probe at the primary '%s': %s", node, err_str(r));
    if (!from)
        return;
    struct {
        const char *what;
        int r;
    } set[] = {
        {"backups", d->backups ? backups_follow_primary(d->backups, from, conninfo) : 0},
        {"the WAL archive", d->wal ? wal_follow_primary(d->wal, from, conninfo) : 0},
        {"reconcile", d->reconcile ? reconcile_follow_primary(d->reconcile, from, conninfo) : 0},
        {"the detector", d->detector ? detector_follow_primary(d->detector, from, conninfo) : 0},
        {"the scenarios", d->scenarios ? scenarios_follow_primary(d->scenarios, from, conninfo) : 0},
    };
    for (size_t i = 0; i < sizeof(set) / sizeof(set[0]); i++)
        if (set[i].r < 0)
            log_error("main", "cannot point %s at the primary '%s': %s", set[i].what, node, err_str(set[i].r));
    json_t *list = json_array();
    if (!list)
        return;
    const char *with = "names the old primary's server: retargeted to the new primary's host and port";
    json_array_append_new(list, json_pack("{s:s,s:b,s:s}", "key", "database.conninfo", "follows", 1, "why",
                                          "the liveness probe always uses the primary"));
    if (cfg->backup.enabled) {
        daemon_follows_add(list, "backup.conninfo", cfg->backup.conninfo, from, with);
        daemon_follows_add(list, "backup.physical.conninfo", cfg->backup.physical_conninfo, from, with);
    }
    if (cfg->wal.enabled)
        daemon_follows_add(list, "wal.conninfo", cfg->wal.conninfo, from,
                           "names the old primary's server: the receiver streams from the new primary");
    daemon_follows_add(list, "reconcile.conninfo", cfg->reconcile.conninfo, from, with);
    daemon_follows_add(list, "detector.conninfo", cfg->detector.conninfo, from, with);
    if (cfg->scenarios.admin_conninfo)
        daemon_follows_add(list, "scenarios.admin_conninfo", cfg->scenarios.admin_conninfo, from, with);
    json_decref(d->follows);
    d->follows = json_pack("{s:s,s:o}", "primary", node, "conninfos", list);
    if (d->replication && d->follows)
        replication_set_follows(d->replication, d->follows);
    size_t n = 0, i;
    json_t *e;
    json_array_foreach(list, i, e) n += json_is_true(json_object_get(e, "follows"));
    log_notice("main", "'%s' is the primary: %zu of %zu conninfos follow it (drctl replication-status)", node, n,
               json_array_size(list));
}

/* The configuration file changed (uv_fs_poll: stat on the thread pool): not running until reloaded. */
static void daemon_on_config_changed(uv_fs_poll_t *h, int status, const uv_stat_t *prev, const uv_stat_t *curr)
{
    Daemon *d = h->data;
    (void)prev;
    (void)curr;
    if (status < 0 && status != UV_ENOENT)
        return;
    if (!d->config_dirty) {
        d->config_changed_ms = clock_wall_ms();
        /* a fact for the tamper signals (detect/breach.c): not reloaded within the grace, it pages */
        events_emit(d->core.events, SEV_INFO, "config.changed", NULL, false, NULL,
                    "the configuration file '%s' changed on disk and is not reloaded yet", d->config_path);
    }
    d->config_dirty = true;
}

/* Readiness: the configuration running is the file's. */
static void daemon_readiness(ReadyWriter *w, void *data)
{
    const Daemon *d = data;
    if (d->config_dirty)
        readiness_add(w, "config.reloaded", READY_WARN, "'%s' changed %lld s ago and was not reloaded since "
                      "(drctl reload; a failed reload leaves it so)", d->config_path,
                      (long long)((clock_wall_ms() - d->config_changed_ms) / 1000));
    else
        readiness_add(w, "config.reloaded", READY_PASS, "the running configuration is '%s' as it is on disk",
                      d->config_path);
}

static int daemon_init_failed(const char *what)
{
    log_error("main", "cannot initialise %s: out of memory", what);
    return -ENOMEM;
}

int daemon_init(Daemon *d, uv_loop_t *loop, const char *config_path, Config *cfg, RolePolicy *roles)
{
    Core *core = &d->core;

    memset(d, 0, sizeof(*d));
    core->loop = loop;
    d->cfg = cfg;
    core->cfg = cfg;
    d->roles = *roles;
    memset(roles, 0, sizeof(*roles));
    d->config_path = strdup(config_path);
    core->config_path = d->config_path;
    core->started_ms = clock_wall_ms();
    d->started_mono_ms = uv_now(loop);
    core->events = events_new();
    core->status = status_new();
    core->lease = lease_new();
    d->notify = notify_new(loop);
    core->http = httpc_new(loop);
    core->leader = core->http ? leader_new(loop, core->http, core->events) : NULL;
    core->control = core->events ? control_new(loop, core->events) : NULL;
    core->metrics = metrics_new(loop);
    core->readiness = readiness_new();
    if (!d->config_path || !core->events || !core->status || !core->lease || !d->notify || !core->http || !core->leader ||
        !core->control || !core->metrics || !core->readiness || metrics_register(core->metrics, daemon_collect, d) < 0 ||
        readiness_publish(core->readiness, core->control, core->metrics) < 0 ||
        readiness_register(core->readiness, daemon_readiness, d) < 0)
        return daemon_init_failed("the core (events, status, lease, sd_notify, HTTP, control socket, metrics, "
                                  "readiness)");
    d->audit = audit_new(loop, core->events, core->control);
    if (!d->audit)
        return daemon_init_failed("the audit log");
    control_set_audit(core->control, daemon_audit_command, d);
    control_set_gate(core->control, daemon_gate, d);
    leader_on_change(core->leader, daemon_on_leader_change, d);
    status_on_change(core->status, daemon_on_status_changed, d);
    /* Bottom up: each module gets the core handle and the capabilities it acts through. A module
     * that cannot register its control commands is not created (NULL) either. */
    d->venue = venue_new(core);
    if (!d->venue)
        return daemon_init_failed("the venue");
    d->reconcile = reconcile_new(core, d->venue);
    if (!d->reconcile)
        return daemon_init_failed("reconcile");
    d->validate = validate_new(core, d->reconcile);
    if (!d->validate)
        return daemon_init_failed("validate");
    d->detector = detector_new(core, d->venue);
    if (!d->detector)
        return daemon_init_failed("the detector");
    d->breach = breach_signals_new(core, d->detector);
    if (!d->breach)
        return daemon_init_failed("the breach signals");
    ProbeSink sink = {daemon_probe_ok, daemon_probe_failed, daemon_platform_ok, daemon_platform_failed, d->detector};
    d->probes = probes_new(core, &sink);
    if (!d->probes)
        return daemon_init_failed("probes");
    d->replication = replication_new(core);
    if (!d->replication)
        return daemon_init_failed("the replication monitor");
    detector_on_standby_view(d->detector, daemon_standby_view, d);
    replication_on_primary(d->replication, daemon_follow_primary, d);
    replication_on_split_brain(d->replication, daemon_split_brain, d);
    d->backups = backups_new(core);
    if (!d->backups)
        return daemon_init_failed("backups");
    d->wal = wal_new(core, d->backups);
    if (!d->wal)
        return daemon_init_failed("the WAL archive");
    d->offsite = offsite_new(core, d->backups);
    if (!d->offsite)
        return daemon_init_failed("the off-site uploader");
    backups_set_offsite(d->backups, offsite_has_backup, d->offsite);
    backups_set_offsite_list(d->backups, offsite_backups, d->offsite);
    /* the WAL archive removes a segment only once it is off-site; the bucket's retention needs the
     * segment size the archive learns from the server */
    wal_set_may_go(d->wal, offsite_wal_may_go, d->offsite);
    offsite_set_wal_segment_size(d->offsite, wal_segment_size, d->wal);
    d->standby = standby_new(core, d->backups);
    if (!d->standby)
        return daemon_init_failed("the standby restore");
    ScenarioCaps caps = {.venue = d->venue, .backups = d->backups, .reconcile = d->reconcile,
                         .standby = d->standby, .detector = d->detector,
                         .replication = d->replication, .wal = d->wal};
    d->scenarios = scenarios_new(core, &caps);
    if (!d->scenarios)
        return daemon_init_failed("scenarios");
    d->drills = drills_new(core, d->backups, d->reconcile, d->wal);
    if (!d->drills)
        return daemon_init_failed("drills");
    d->alerts = alerts_new(core);
    if (!d->alerts)
        return daemon_init_failed("alerts");

    static const CtlCommand builtin[] = {
        {"ping", false, daemon_cmd_ping, NULL, "check that the daemon answers"},
        {"status", false, daemon_cmd_status, NULL, "version, uptime and the health of every component"},
        {"reload", true, daemon_cmd_reload, NULL, "re-read the configuration file; answers when done"},
        {"watch", false, daemon_cmd_watch, NULL, "stream events as they happen"},
        {"leader", false, daemon_cmd_leader, NULL, "high availability: who leads, since when, the lease, the revision"},
        {"step_down", true, daemon_cmd_step_down, NULL, "high availability: the leader hands over and holds off"},
    };
    CtlCommand cmds[sizeof(builtin) / sizeof(builtin[0])];
    memcpy(cmds, builtin, sizeof(builtin));
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        cmds[i].data = d;
    if (control_register(d->core.control, cmds, sizeof(cmds) / sizeof(cmds[0])) < 0)
        return daemon_init_failed("the built-in commands");
    return 0;
}

static void daemon_log_removed(const char *path, long long size, void *data)
{
    (void)data;
    log_warning("main", "removed '%s' (%lld bytes): a state file write that a crash interrupted", path, size);
}

int daemon_start(Daemon *d)
{
    char err[512] = "";
    int r;

    signal(SIGPIPE, SIG_IGN);
    /* A file size limit (LimitFSIZE=) must fail the write (EFBIG, reported), not kill the daemon. */
    signal(SIGXFSZ, SIG_IGN);
    uv_signal_init(d->core.loop, &d->sig_term);
    uv_signal_init(d->core.loop, &d->sig_int);
    uv_signal_init(d->core.loop, &d->sig_hup);
    d->sig_term.data = d->sig_int.data = d->sig_hup.data = d;
    uv_signal_start(&d->sig_term, daemon_on_signal, SIGTERM);
    uv_signal_start(&d->sig_int, daemon_on_signal, SIGINT);
    uv_signal_start(&d->sig_hup, daemon_on_signal, SIGHUP);
    uv_timer_init(d->core.loop, &d->status_timer);
    d->status_timer.data = d;
    uv_fs_poll_init(d->core.loop, &d->config_poll);
    d->config_poll.data = d;
    if (uv_fs_poll_start(&d->config_poll, daemon_on_config_changed, d->config_path, 5000) < 0)
        log_warning("main", "cannot watch '%s' for changes: readiness will not tell an unreloaded edit", d->config_path);
    d->handles_started = true;

    /* The same checks as a reload, before anything starts (the backup key was checked as the file
     * was read, like every secret file). */
    char *errors = NULL;
    /* What a killed daemon left behind (nothing writes yet): uncommitted temporaries of state
     * files, backups and manifests, and plaintext restore spools. Each removal is logged. */
    int tr = atomicfile_remove_temporaries(d->cfg->state_dir, daemon_log_removed, NULL);
    if (tr < 0 && tr != -ENOENT)
        log_warning("main", "cannot look for leftovers in '%s': %s", d->cfg->state_dir, err_str(tr));
    backups_clean_leftovers(d->cfg);
    r = daemon_check_config(d, d->cfg, &errors);
    if (r < 0) {
        char *save = NULL;
        for (char *line = errors ? strtok_r(errors, "\n", &save) : NULL; line; line = strtok_r(NULL, "\n", &save))
            log_error("config", "not starting: %s", line);
        if (!errors)
            log_error("config", "not starting: cannot check the configuration: %s", err_str(r));
        free(errors);
        return r;
    }
    if (mkdir(d->cfg->state_dir, 0750) < 0 && errno != EEXIST) {
        r = -errno;
        log_error("main", "cannot create state directory '%s': %s", d->cfg->state_dir, strerror(errno));
        return r;
    }
    if (strcmp(d->cfg->node_dir, d->cfg->state_dir)) {
        /* high availability: this daemon's own files beside the shared ones */
        char nodes[4200];
        snprintf(nodes, sizeof(nodes), "%s/nodes", d->cfg->state_dir);
        if ((mkdir(nodes, 0750) < 0 && errno != EEXIST) || (mkdir(d->cfg->node_dir, 0750) < 0 && errno != EEXIST)) {
            r = -errno;
            log_error("main", "cannot create '%s': %s", d->cfg->node_dir, strerror(errno));
            return r;
        }
    }
    audit_set_rotation(d->audit, d->cfg->audit.max_bytes, (int)d->cfg->audit.keep);
    r = audit_open(d->audit, d->cfg->node_dir, err, sizeof(err));
    if (r < 0) {
        log_error("audit", "cannot open the audit log: %s", err[0] ? err : err_str(r));
        return r;
    }
    r = control_listen(d->core.control, &d->cfg->control, err, sizeof(err));
    if (r < 0) {
        log_error("control", "cannot open the control socket: %s", err[0] ? err : err_str(r));
        return r;
    }
    control_configure(d->core.control, &d->cfg->control, &d->roles);
    if (d->cfg->metrics.enabled) {
        r = metrics_listen(d->core.metrics, d->cfg->metrics.listen, err, sizeof(err));
        if (r < 0) {
            log_error("metrics", "cannot open the metrics endpoint: %s", err);
            return r;
        }
        log_info("metrics", "Prometheus metrics at http://%s/metrics", d->cfg->metrics.listen);
    }
    /* Alerts first (it only copies configuration and queues the outbox load), so that what the
     * modules below report at start is routed. */
    r = alerts_apply_config(d->alerts, d->cfg);
    if (r == 0)
        r = alerts_start(d->alerts);
    if (r < 0) {
        log_error("alerts", "cannot start alerts: %s", err_str(r));
        return r;
    }
    /* High availability: the election starts first; what only the leader does waits for it. */
    r = leader_apply_config(d->core.leader, d->cfg);
    if (r < 0) {
        log_error("ha", "cannot start the leader election: %s", err_str(r));
        return r;
    }
    /* Fail closed: a halt persisted before this start is re-asserted before anything else. */
    if (!leader_enabled(d->core.leader))
        venue_start(d->venue);
    r = venue_apply_config(d->venue, d->cfg);
    if (r < 0) {
        log_error("venue", "cannot start the venue: %s", err_str(r));
        return r;
    }
    r = detector_apply_config(d->detector, d->cfg);
    if (r < 0) {
        log_error("detector", "cannot start the detector: %s", err_str(r));
        return r;
    }
    r = breach_signals_apply_config(d->breach, d->cfg);
    if (r < 0)
        return r; /* logged: the security webhook's route */
    r = probes_apply_config(d->probes, d->cfg);
    if (r < 0) {
        log_error("probe", "cannot start probes: %s", err_str(r));
        return r;
    }
    r = replication_apply_config(d->replication, d->cfg);
    if (r < 0) {
        log_error("replication", "cannot start the replication monitor: %s", err_str(r));
        return r;
    }
    r = backups_apply_config(d->backups, d->cfg);
    if (r < 0) {
        log_error("backup", "cannot start backups: %s", err_str(r));
        return r;
    }
    r = wal_apply_config(d->wal, d->cfg);
    if (r < 0) {
        log_error("wal", "cannot start the WAL archive: %s", err_str(r));
        return r;
    }
    r = offsite_apply_config(d->offsite, d->cfg);
    if (r < 0) {
        log_error("offsite", "cannot start the off-site uploader: %s", err_str(r));
        return r;
    }
    r = scenarios_apply_config(d->scenarios, d->cfg);
    if (r < 0) {
        log_error("scenario", "cannot start scenarios: %s", err_str(r));
        return r;
    }
    if (!leader_enabled(d->core.leader)) {
        d->acting_started = true;
        r = scenarios_start(d->scenarios);
        if (r < 0) {
            log_error("scenario", "cannot load scenario runs: %s", err_str(r));
            return r;
        }
    }
    r = drills_apply_config(d->drills, d->cfg);
    if (r == 0)
        r = drills_start(d->drills);
    if (r < 0) {
        log_error("drill", "cannot start drills: %s", err_str(r));
        return r;
    }
    uint64_t wd = notify_watchdog_start(d->notify);
    uv_timer_start(&d->status_timer, daemon_on_status_timer, 1000, 1000);
    log_notice("main", "drsupervisord %s started: cluster '%s', control socket '%s'%s", DRSUP_VERSION,
               d->cfg->cluster, control_socket_path(d->core.control), wd ? ", watchdog on" : "");
    notify_ready(d->notify, "started, probing");
    return 0;
}

/*
 * Shutdown: modules close in parallel; each calls daemon_module_closed() once when all its handles
 * are closed. The HTTP client goes last, because modules may still cancel transfers while closing.
 */
static void daemon_module_closed(void *data)
{
    Daemon *d = data;
    if (--d->closing_modules > 0)
        return;
    if (d->audit) {
        /* Last of the modules: what the others reported while closing is in the log. */
        Audit *a = d->audit;
        d->audit = NULL;
        d->closing_modules++;
        audit_close(a, daemon_module_closed, d);
        return;
    }
    if (d->core.http) {
        httpc_close(d->core.http, NULL, NULL);
        d->core.http = NULL;
    }
}

void daemon_stop(Daemon *d, int exit_code)
{
    if (d->stopping)
        return;
    d->stopping = true;
    d->exit_code = exit_code;
    notify_stopping(d->notify);
    if (d->handles_started) { /* not when daemon_init failed: daemon_start never made them */
        uv_close((uv_handle_t *)&d->sig_term, NULL);
        uv_close((uv_handle_t *)&d->sig_int, NULL);
        uv_close((uv_handle_t *)&d->sig_hup, NULL);
        uv_close((uv_handle_t *)&d->status_timer, NULL);
        uv_close((uv_handle_t *)&d->config_poll, NULL);
    }
    notify_close(d->notify);
    d->notify = NULL;
    d->closing_modules = 1; /* held until every close below has been started */
    if (d->scenarios) {
        /* First: it answers its own pending control calls before the control socket closes. */
        d->closing_modules++;
        scenarios_close(d->scenarios, daemon_module_closed, d);
        d->scenarios = NULL;
    }
    if (d->core.leader) {
        d->closing_modules++;
        leader_close(d->core.leader, daemon_module_closed, d);
        d->core.leader = NULL;
    }
    if (d->core.control) {
        d->closing_modules++;
        control_close(d->core.control, daemon_module_closed, d);
        d->core.control = NULL;
    }
    /* The metrics endpoint first: its collectors read the modules that are closing now. */
    if (d->core.metrics) {
        d->closing_modules++;
        metrics_close(d->core.metrics, daemon_module_closed, d);
        d->core.metrics = NULL;
    }
    if (d->probes) {
        d->closing_modules++;
        probes_close(d->probes, daemon_module_closed, d);
        d->probes = NULL;
    }
    if (d->replication) {
        d->closing_modules++;
        replication_close(d->replication, daemon_module_closed, d);
        d->replication = NULL;
    }
    if (d->offsite) { /* before backups: `backups` asks it where a backup is */
        backups_set_offsite(d->backups, NULL, NULL);
        backups_set_offsite_list(d->backups, NULL, NULL);
        if (d->wal)
            wal_set_may_go(d->wal, NULL, NULL);
        offsite_set_wal_segment_size(d->offsite, NULL, NULL);
        d->closing_modules++;
        offsite_close(d->offsite, daemon_module_closed, d);
        d->offsite = NULL;
    }
    if (d->wal) {
        d->closing_modules++;
        wal_close(d->wal, daemon_module_closed, d);
        d->wal = NULL;
    }
    if (d->alerts) {
        d->closing_modules++;
        alerts_close(d->alerts, daemon_module_closed, d);
        d->alerts = NULL;
    }
    if (d->breach) { /* before the detector it reports through */
        d->closing_modules++;
        breach_signals_close(d->breach, daemon_module_closed, d);
        d->breach = NULL;
    }
    if (d->detector) {
        d->closing_modules++;
        detector_close(d->detector, daemon_module_closed, d);
        d->detector = NULL;
    }
    if (d->drills) { /* before the reconcile and the backups its drill may be using */
        d->closing_modules++;
        drills_close(d->drills, daemon_module_closed, d);
        d->drills = NULL;
    }
    if (d->validate) { /* before the reconcile it may be waiting for */
        d->closing_modules++;
        validate_close(d->validate, daemon_module_closed, d);
        d->validate = NULL;
    }
    if (d->reconcile) {
        d->closing_modules++;
        reconcile_close(d->reconcile, daemon_module_closed, d);
        d->reconcile = NULL;
    }
    if (d->venue) {
        d->closing_modules++;
        venue_close(d->venue, daemon_module_closed, d);
        d->venue = NULL;
    }
    if (d->standby) {
        d->closing_modules++;
        standby_close(d->standby, daemon_module_closed, d);
        d->standby = NULL;
    }
    if (d->backups) {
        d->closing_modules++;
        backups_close(d->backups, daemon_module_closed, d);
        d->backups = NULL;
    }
    daemon_module_closed(d);
}

void daemon_done(Daemon *d)
{
    config_free(d->cfg);
    roles_policy_done(&d->roles);
    status_free(d->core.status);
    lease_free(d->core.lease);
    readiness_free(d->core.readiness);
    events_free(d->core.events);
    free(d->config_path);
    json_decref(d->follows);
    d->follows = NULL;
    memset(d, 0, sizeof(*d));
}
