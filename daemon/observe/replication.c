/*
 * replication: probes of the cluster's nodes, the classification of each standby's replication,
 * its debounced conditions and the replication_status command (see replication.h).
 *
 * The lag on an idle primary: `now() - pg_last_xact_replay_timestamp()` grows while nothing is
 * written although nothing is behind, so time lag counts only when WAL is behind: with 0 bytes
 * between the primary's current WAL position and the standby's replay position (the primary's
 * pg_stat_replication) the lag is 0 s; otherwise it is the primary's replay_lag, or, when the
 * primary has none yet, the age of the standby's last replayed transaction. A standby that is not
 * streaming is broken, never "0 lag" (postgres_exporter's mistake).
 */
#include <errno.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "observe/replication.h"
#include "clock.h"
#include "core/control.h"
#include "err.h"
#include "log.h"
#include "child.h"
#include "atomicfile.h"
#include "pgconn.h"

/* One round trip per node: a JSON object of everything the classification needs. Every
 * pg_current_wal_lsn() and pg_walfile_name() is guarded, as both fail during recovery. */
#define REPL_SQL                                                                                                    \
    "SELECT json_build_object("                                                                                     \
    "'in_recovery', pg_is_in_recovery(),"                                                                          \
    "'timeline', CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver LIMIT 1) "      \
    "ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END,"                        \
    "'lsn', (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END)::text,"   \
    "'receive_lsn', pg_last_wal_receive_lsn()::text,"                                                              \
    "'replay_age_s', extract(epoch FROM now() - pg_last_xact_replay_timestamp()),"                                 \
    "'receiver', (SELECT json_build_object('status', status, 'sender', sender_host, 'slot', slot_name) "           \
    "FROM pg_stat_wal_receiver LIMIT 1),"                                                                          \
    "'standbys', (SELECT coalesce(json_agg(json_build_object('name', application_name, 'state', state, "           \
    "'replay_lsn', replay_lsn::text, 'lag_bytes', CASE WHEN pg_is_in_recovery() THEN NULL "                        \
    "ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn) END, 'replay_lag_s', extract(epoch FROM replay_lag))),"\
    " '[]'::json) FROM pg_stat_replication),"                                                                      \
    "'slots', (SELECT coalesce(json_agg(json_build_object('name', slot_name, 'active', active, 'retained_bytes', "  \
    "CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn) END)), "      \
    "'[]'::json) FROM pg_replication_slots))::text"

typedef struct ReplNode {
    struct Replication *owner;
    char *name, *conninfo;
    bool primary;        /* taken as the primary now (the record of a promotion, else the configuration) */
    bool cfg_primary;    /* role: primary in replication.nodes */
    int64_t priority;
    PgConn *pg;
    bool busy;
    json_t *sample;      /* the last answer (or {"reachable": false, "error": ...}) */
    int64_t sampled_ms;
    ReplState state;     /* reported (conditions follow it) */
    ReplState candidate; /* seen, not yet for `debounce` rounds */
    int64_t seen;
    int64_t lag_bytes;
    double lag_s;
    char why[400];
    ReplState good_state;  /* the last judgment while it replicated (ok or lagging), and when */
    int64_t good_lag_bytes;
    int64_t good_ms;
} ReplNode;

/* A failover_status call waiting for the fence check. */
typedef struct ReplAsk {
    CtlCall *call;
    struct ReplAsk *next;
} ReplAsk;

struct Replication {
    Core *core;
    const ConfigReplication *cfg;
    ChildProc *fence_check;  /* running */
    ReplAsk *asks;           /* answered when it ends */
    int64_t fence_checked_ms;
    bool fence_ok;
    char fence_msg[400];
    ReplNode *nodes;
    size_t n_nodes;
    /* the record of the last promotion (state_dir/primary.json), read once at start */
    bool record_loaded;
    char recorded_primary[64]; /* "" when none: the configured roles hold */
    int64_t recorded_timeline;
    int64_t recorded_ms;
    char recorded_run[96];
    ReplPrimaryFn primary_fn;
    void *primary_data;
    json_t *follows;  /* what follows the primary (replication_set_follows), shown in the status */
    ReplSplitFn split_fn;
    void *split_data;
    uv_timer_t timer;
    int outstanding; /* answers still expected in this round */
    int pending;     /* handles and connections still open */
    bool registered, closing;
    void (*closed_cb)(void *);
    void *closed_data;
};

const char *replication_state_name(ReplState s)
{
    static const char *const names[] = {"unknown", "ok", "lag_warning", "lag_critical", "broken"};
    return s <= REPL_BROKEN ? names[s] : "?";
}

/* ---- classification (pure) ---- */

static int64_t repl_int(const json_t *v, int64_t def)
{
    return json_is_number(v) ? (int64_t)llround(json_number_value(v)) : def;
}

ReplState replication_classify(const ConfigReplication *cfg, const char *name, const json_t *primary,
                               const json_t *standby, int64_t *lag_bytes, double *lag_s, char *why, size_t whylen)
{
    const json_t *recv = json_object_get(standby, "receiver");
    const json_t *row = NULL, *s;
    size_t i;

    *lag_bytes = -1;
    *lag_s = -1;
    why[0] = '\0';
    if (!json_is_true(json_object_get(standby, "reachable"))) {
        snprintf(why, whylen, "cannot ask the standby: %s", json_string_value(json_object_get(standby, "error")) ? json_string_value(json_object_get(standby, "error")) : "?");
        return REPL_BROKEN;
    }
    if (!json_is_true(json_object_get(standby, "in_recovery"))) {
        snprintf(why, whylen, "not in recovery: it is not a standby any more (promoted?)");
        return REPL_BROKEN;
    }
    const char *status = json_string_value(json_object_get(recv, "status"));
    if (!status || strcmp(status, "streaming")) {
        snprintf(why, whylen, "no WAL receiver streaming (%s%s)", status ? "status " : "no receiver",
                 status ? status : "");
        return REPL_BROKEN;
    }
    if (!json_is_true(json_object_get(primary, "reachable")) || json_is_true(json_object_get(primary, "in_recovery"))) {
        snprintf(why, whylen, "the primary cannot be asked (%s)",
                 json_string_value(json_object_get(primary, "error")) ? json_string_value(json_object_get(primary, "error"))
                                                                      : "it is in recovery");
        return REPL_UNKNOWN;
    }
    json_array_foreach(json_object_get(primary, "standbys"), i, s) {
        const char *n = json_string_value(json_object_get(s, "name"));
        if (n && !strcmp(n, name))
            row = s;
    }
    if (!row) {
        snprintf(why, whylen, "not connected to the primary (no pg_stat_replication row with application_name '%s')",
                 name);
        return REPL_BROKEN;
    }
    *lag_bytes = repl_int(json_object_get(row, "lag_bytes"), -1);
    if (*lag_bytes < 0) {
        snprintf(why, whylen, "connected, but the primary does not know its replay position yet");
        return REPL_UNKNOWN;
    }
    if (*lag_bytes == 0) {
        *lag_s = 0; /* nothing behind: an idle primary is not a lag */
    } else {
        const json_t *rl = json_object_get(row, "replay_lag_s");
        const json_t *age = json_object_get(standby, "replay_age_s");
        *lag_s = json_is_number(rl) ? json_number_value(rl) : json_is_number(age) ? json_number_value(age) : -1;
    }
    bool crit = (cfg->lag_bytes_critical && *lag_bytes >= (int64_t)cfg->lag_bytes_critical) ||
                (cfg->lag_critical_ms && *lag_s * 1000 >= (double)cfg->lag_critical_ms);
    bool warn = (cfg->lag_bytes_warning && *lag_bytes >= (int64_t)cfg->lag_bytes_warning) ||
                (cfg->lag_warning_ms && *lag_s * 1000 >= (double)cfg->lag_warning_ms);
    if (crit || warn) {
        snprintf(why, whylen, "%lld bytes of WAL not replayed, replay lag %.1f s", (long long)*lag_bytes, *lag_s);
        return crit ? REPL_LAG_CRITICAL : REPL_LAG_WARNING;
    }
    return REPL_OK;
}

/* ---- conditions ---- */

static void repl_condition_keys(const Replication *r, const ReplNode *n, char *lagkey, char *brokenkey, size_t len)
{
    snprintf(lagkey, len, "replication.lag:%s/%s", r->core->cfg->cluster, n->name);
    snprintf(brokenkey, len, "replication.broken:%s/%s", r->core->cfg->cluster, n->name);
}

static void repl_transition(Replication *r, ReplNode *n, ReplState to)
{
    char lagkey[256], brokenkey[256];
    ReplState from = n->state;
    json_t *det = json_pack("{s:s,s:s,s:I,s:f,s:s}", "node", n->name, "state", replication_state_name(to), "lag_bytes",
                            (json_int_t)n->lag_bytes, "lag_s", n->lag_s, "reason", n->why);

    repl_condition_keys(r, n, lagkey, brokenkey, sizeof(lagkey));
    n->state = to;
    if ((from == REPL_LAG_WARNING || from == REPL_LAG_CRITICAL) && to != REPL_LAG_WARNING && to != REPL_LAG_CRITICAL)
        events_emit(r->core->events, SEV_INFO, "replication.lag", lagkey, true, det,
                    "standby %s: replication lag back within limits", n->name);
    if (from == REPL_BROKEN && to != REPL_BROKEN)
        events_emit(r->core->events, SEV_INFO, "replication.broken", brokenkey, true, det,
                    "standby %s: replicating again", n->name);
    if (to == REPL_LAG_WARNING || to == REPL_LAG_CRITICAL)
        events_emit(r->core->events, to == REPL_LAG_CRITICAL ? SEV_CRITICAL : SEV_WARNING, "replication.lag", lagkey,
                    false, det, "standby %s: replication lag %s: %s", n->name,
                    to == REPL_LAG_CRITICAL ? "critical" : "warning", n->why);
    if (to == REPL_BROKEN)
        events_emit(r->core->events, SEV_ERROR, "replication.broken", brokenkey, false, det,
                    "standby %s: replication is broken: %s", n->name, n->why);
    if (to == REPL_OK && from == REPL_UNKNOWN)
        log_info("replication", "standby %s: replicating (lag %lld bytes, %.1f s)", n->name, (long long)n->lag_bytes,
                 n->lag_s);
    json_decref(det);
}

/* The nodes whose last answer says they are primaries (reachable, not in recovery), comma separated
 * into out; how many. */
static size_t repl_writable(const Replication *r, char *out, size_t n)
{
    size_t count = 0, used = 0;
    if (n)
        out[0] = '\0';
    for (size_t i = 0; i < r->n_nodes; i++) {
        const json_t *smp = r->nodes[i].sample;
        if (!json_is_true(json_object_get(smp, "reachable")) || !json_is_false(json_object_get(smp, "in_recovery")))
            continue;
        if (used < n) {
            int w = snprintf(out + used, n - used, "%s%s", count ? "," : "", r->nodes[i].name);
            used = w > 0 ? used + (size_t)w : used;
        }
        count++;
    }
    return count;
}

size_t replication_writable_nodes(const Replication *r, char *out, size_t n)
{
    return repl_writable(r, out, n);
}

void replication_on_split_brain(Replication *r, ReplSplitFn fn, void *data)
{
    r->split_fn = fn;
    r->split_data = data;
}

static void repl_evaluate(Replication *r)
{
    const ReplNode *primary = NULL;
    char writable[256];
    size_t n_writable = repl_writable(r, writable, sizeof(writable));

    if (n_writable >= 2)
        log_warning("replication", "%zu nodes answer as primaries: %s", n_writable, writable);
    if (r->split_fn)
        r->split_fn(n_writable >= 2, writable, r->split_data);
    for (size_t i = 0; i < r->n_nodes; i++)
        if (r->nodes[i].primary)
            primary = &r->nodes[i];
    for (size_t i = 0; primary && i < r->n_nodes; i++) {
        ReplNode *n = &r->nodes[i];
        if (n->primary)
            continue;
        int64_t bytes;
        double secs;
        char why[sizeof(n->why)];
        ReplState st = replication_classify(r->cfg, n->name, primary->sample, n->sample, &bytes, &secs, why,
                                            sizeof(why));
        if (st == REPL_UNKNOWN)
            continue; /* nothing learnt this round: keep what is reported */
        if (st != REPL_BROKEN) {
            n->good_state = st;
            n->good_lag_bytes = bytes;
            n->good_ms = n->sampled_ms;
        }
        n->lag_bytes = bytes;
        n->lag_s = secs;
        memcpy(n->why, why, sizeof(why));
        if (st == n->state) {
            n->seen = 0;
            continue;
        }
        if (st != n->candidate) {
            n->candidate = st;
            n->seen = 0;
        }
        if (++n->seen >= r->cfg->debounce || (n->state == REPL_UNKNOWN && st == REPL_OK)) {
            n->seen = 0;
            repl_transition(r, n, st);
        }
    }
}

/* ---- probing ---- */

static void repl_on_answer(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    ReplNode *n = data;
    Replication *r = n->owner;
    json_t *sample = NULL;

    (void)c;
    n->busy = false;
    if (status == DR_ECANCELED)
        return;
    if (status == 0 && res && PQntuples(res) == 1)
        sample = json_loads(PQgetvalue(res, 0, 0), 0, NULL);
    if (sample) {
        json_object_set_new(sample, "reachable", json_true());
    } else {
        sample = json_pack("{s:b,s:s}", "reachable", 0, "error",
                           errmsg && errmsg[0] ? errmsg : status == 0 ? "unreadable answer" : err_str(status));
    }
    json_decref(n->sample);
    n->sample = sample;
    n->sampled_ms = clock_wall_ms();
    if (--r->outstanding == 0 && !r->closing)
        repl_evaluate(r);
}

static void repl_on_timer(uv_timer_t *t)
{
    Replication *r = t->data;

    if (r->outstanding > 0 || r->closing)
        return; /* the last round is still being answered */
    for (size_t i = 0; i < r->n_nodes; i++) {
        ReplNode *n = &r->nodes[i];
        if (!n->pg || n->busy)
            continue;
        if (pgconn_query(n->pg, REPL_SQL, 0, NULL, repl_on_answer, n) == 0) {
            n->busy = true;
            r->outstanding++;
        }
    }
}

/* ---- replication_status ---- */

static const ReplNode *repl_primary(const Replication *r)
{
    for (size_t i = 0; i < r->n_nodes; i++)
        if (r->nodes[i].primary)
            return &r->nodes[i];
    return NULL;
}


static void repl_set_copy(json_t *o, const char *key, const json_t *v)
{
    json_object_set_new(o, key, v ? json_deep_copy(v) : json_null());
}

static json_t *repl_status_json(const Replication *r)
{
    json_t *nodes = json_array();
    bool warn = false, crit = false, unknown = false, any_standby = false;

    for (size_t i = 0; nodes && i < r->n_nodes; i++) {
        const ReplNode *n = &r->nodes[i];
        const json_t *s = n->sample;
        const json_t *recv = json_object_get(s, "receiver");
        const char *role = !s ? "unknown"
                           : !json_is_true(json_object_get(s, "reachable")) ? "unreachable"
                           : json_is_true(json_object_get(s, "in_recovery")) ? "standby" : "primary";
        json_t *o = json_pack("{s:s,s:s,s:s,s:O?,s:O?,s:I}", "name", n->name, "expected_role",
                              n->primary ? "primary" : "standby", "role", role, "timeline",
                              json_object_get(s, "timeline"), "lsn", json_object_get(s, "lsn"), "sampled_ms",
                              (json_int_t)n->sampled_ms);
        if (!o)
            continue;
        if (json_object_get(s, "error"))
            repl_set_copy(o, "error", json_object_get(s, "error"));
        if (n->primary) {
            repl_set_copy(o, "slots", json_object_get(s, "slots"));
        } else {
            any_standby = true;
            json_object_set_new(o, "state", json_string(replication_state_name(n->state)));
            json_object_set_new(o, "lag_bytes", n->lag_bytes >= 0 ? json_integer(n->lag_bytes) : json_null());
            json_object_set_new(o, "lag_s", n->lag_s >= 0 ? json_real(n->lag_s) : json_null());
            json_object_set_new(o, "reason", json_string(n->why));
            repl_set_copy(o, "receiver", recv);
            crit = crit || n->state == REPL_LAG_CRITICAL || n->state == REPL_BROKEN;
            warn = warn || n->state == REPL_LAG_WARNING;
            unknown = unknown || n->state == REPL_UNKNOWN;
        }
        json_array_append_new(nodes, o);
    }
    /* Nagios (repmgr node check): 0 ok, 1 warning, 2 critical, 3 unknown */
    int nagios = crit ? 2 : warn ? 1 : (unknown || !any_standby) ? 3 : 0;
    static const char *const words[] = {"OK", "WARNING", "CRITICAL", "UNKNOWN"};
    const ReplNode *primary = repl_primary(r);
    json_t *o = json_pack("{s:b,s:o,s:s,s:i,s:I,s:I,s:I,s:I,s:s?}", "enabled", r->n_nodes > 0, "nodes",
                          nodes ? nodes : json_array(), "check", words[nagios], "nagios", nagios, "lag_bytes_warning",
                          (json_int_t)r->cfg->lag_bytes_warning, "lag_bytes_critical",
                          (json_int_t)r->cfg->lag_bytes_critical, "lag_warning_ms", (json_int_t)r->cfg->lag_warning_ms,
                          "lag_critical_ms", (json_int_t)r->cfg->lag_critical_ms, "primary",
                          primary ? primary->name : NULL);
    /* the last promotion's record, when it decides the roles (state_dir/primary.json) */
    if (o)
        json_object_set_new(o, "promotion", r->recorded_primary[0]
                                                ? json_pack("{s:s,s:I,s:s,s:I}", "primary", r->recorded_primary,
                                                            "timeline", (json_int_t)r->recorded_timeline, "run",
                                                            r->recorded_run, "at_ms", (json_int_t)r->recorded_ms)
                                                : json_null());
    if (o)
        json_object_set(o, "follows", r->follows && r->recorded_primary[0] ? r->follows : json_null());
    return o;
}

static void repl_cmd_status(CtlCall *call, const json_t *args, void *data)
{
    (void)args;
    control_reply_ok(call, repl_status_json(data));
}

static void repl_maybe_closed(Replication *r);

/* ---- the promotion candidate (pure) ---- */

int replication_choose_candidate(ReplCandidate *c, size_t n, int64_t primary_timeline, uint64_t maximum_lag_bytes)
{
    int best = -1;

    for (size_t i = 0; i < n; i++) {
        ReplCandidate *k = &c[i];
        if (k->why_not[0])
            continue; /* the caller's reason */
        if (k->priority == 0)
            snprintf(k->why_not, sizeof(k->why_not), "priority 0: never promoted");
        else if (k->state == REPL_UNKNOWN || k->state == REPL_BROKEN)
            snprintf(k->why_not, sizeof(k->why_not), "%s",
                     k->state == REPL_BROKEN ? "replication is broken" : "its replication is not known yet");
        else if (k->lag_bytes < 0 || (uint64_t)k->lag_bytes > maximum_lag_bytes)
            snprintf(k->why_not, sizeof(k->why_not), "%lld bytes behind, more than failover.maximum_lag (%llu)",
                     (long long)k->lag_bytes, (unsigned long long)maximum_lag_bytes);
        else if (primary_timeline >= 0 && k->timeline >= 0 && primary_timeline != k->timeline)
            snprintf(k->why_not, sizeof(k->why_not), "on another timeline than the primary");
        if (k->why_not[0])
            continue;
        if (best < 0) {
            best = (int)i;
            continue;
        }
        const ReplCandidate *b = &c[best];
        /* the most WAL received first (else the least behind), then priority */
        bool lsns = k->received_lsn && b->received_lsn;
        if ((lsns && k->received_lsn != b->received_lsn) ? k->received_lsn > b->received_lsn
            : (!lsns && k->lag_bytes != b->lag_bytes)   ? k->lag_bytes < b->lag_bytes
                                                         : k->priority > b->priority)
            best = (int)i;
    }
    return best;
}

/* "16/B374D848" as a number, 0 when it is not a WAL position. */
static uint64_t repl_lsn(const json_t *v)
{
    unsigned hi, lo;
    const char *s = json_string_value(v);
    return s && sscanf(s, "%X/%X", &hi, &lo) == 2 ? ((uint64_t)hi << 32) | lo : 0;
}

/* The standbys as candidates (c has room for every node; returns how many): with since_ms > 0
 * (the primary is lost since then) each as it was last judged while replicating, see
 * replication_failover_view. */
static size_t repl_candidates(const Replication *r, int64_t since_ms, ReplCandidate *c, const ReplNode **nodes)
{
    size_t k = 0;
    int64_t horizon = (int64_t)(2 * r->cfg->interval_ms + 2 * r->cfg->timeout_ms);

    for (size_t i = 0; i < r->n_nodes; i++) {
        const ReplNode *n = &r->nodes[i];
        const json_t *tl = json_object_get(n->sample, "timeline");
        if (n->primary)
            continue;
        ReplCandidate *x = &c[k];
        *x = (ReplCandidate){.name = n->name, .priority = n->priority, .state = n->state, .lag_bytes = n->lag_bytes,
                             .timeline = json_is_integer(tl) ? json_integer_value(tl) : -1,
                             .received_lsn = repl_lsn(json_object_get(n->sample, "receive_lsn"))};
        if (since_ms > 0) {
            if (n->good_ms && n->good_ms + horizon >= since_ms) {
                x->state = n->good_state;
                x->lag_bytes = n->good_lag_bytes;
            } else {
                x->state = n->state == REPL_BROKEN ? REPL_BROKEN : REPL_UNKNOWN;
            }
            if (!json_is_true(json_object_get(n->sample, "reachable")))
                snprintf(x->why_not, sizeof(x->why_not), "cannot be asked now");
            else if (!json_is_true(json_object_get(n->sample, "in_recovery")))
                snprintf(x->why_not, sizeof(x->why_not), "not in recovery (promoted already?)");
        }
        nodes[k++] = n;
    }
    return k;
}

static int64_t repl_primary_timeline(const Replication *r)
{
    const ReplNode *p = repl_primary(r);
    const json_t *tl = p ? json_object_get(p->sample, "timeline") : NULL;
    return json_is_integer(tl) ? json_integer_value(tl) : -1;
}

void replication_failover_view(const Replication *r, int64_t since_ms, ReplFailoverView *v)
{
    const ReplNode *primary = repl_primary(r);
    ReplCandidate *c = calloc(r->n_nodes ? r->n_nodes : 1, sizeof(*c));
    const ReplNode **nodes = calloc(r->n_nodes ? r->n_nodes : 1, sizeof(*nodes));
    size_t o = 0;

    memset(v, 0, sizeof(*v));
    v->candidate_lag_bytes = -1;
    if (primary)
        snprintf(v->primary, sizeof(v->primary), "%s", primary->name);
    if (!c || !nodes || !r->cfg) {
        snprintf(v->why, sizeof(v->why), "out of memory");
        free(c);
        free(nodes);
        return;
    }
    v->primary_answered = primary && primary->sampled_ms > since_ms &&
                          json_is_true(json_object_get(primary->sample, "reachable"));
    size_t k = repl_candidates(r, since_ms, c, nodes);
    v->configured = r->cfg->failover.enabled && k > 0;
    for (size_t i = 0; i < k; i++) {
        const ReplNode *n = nodes[i];
        const char *st = json_string_value(json_object_get(json_object_get(n->sample, "receiver"), "status"));
        if (n->sampled_ms <= since_ms || !json_is_true(json_object_get(n->sample, "reachable")))
            continue;
        v->standbys_asked++;
        if (json_is_true(json_object_get(n->sample, "in_recovery")) && (!st || strcmp(st, "streaming"))) {
            size_t l = strlen(v->lost_by);
            snprintf(v->lost_by + l, sizeof(v->lost_by) - l, "%s%s", l ? "," : "", n->name);
            v->standbys_lost++;
        }
    }
    int best = replication_choose_candidate(c, k, since_ms > 0 ? -1 : repl_primary_timeline(r),
                                            r->cfg->failover.maximum_lag_bytes);
    if (best >= 0) {
        snprintf(v->candidate, sizeof(v->candidate), "%s", c[best].name);
        snprintf(v->candidate_conninfo, sizeof(v->candidate_conninfo), "%s", nodes[best]->conninfo);
        v->candidate_lsn = c[best].received_lsn;
        v->candidate_lag_bytes = c[best].lag_bytes;
        v->candidate_priority = c[best].priority;
    }
    for (size_t i = 0; best < 0 && i < k && o < sizeof(v->why); i++)
        o += (size_t)snprintf(v->why + o, sizeof(v->why) - o, "%s%s: %s", i ? "; " : "", c[i].name, c[i].why_not);
    if (best < 0 && k == 0)
        snprintf(v->why, sizeof(v->why), "no standby is configured");
    free(c);
    free(nodes);
}

void replication_node_view(const Replication *r, const char *name, ReplNodeView *v)
{
    memset(v, 0, sizeof(*v));
    v->lag_bytes = -1;
    for (size_t i = 0; name && i < r->n_nodes; i++) {
        const ReplNode *n = &r->nodes[i];
        if (strcmp(n->name, name))
            continue;
        const char *st = json_string_value(json_object_get(json_object_get(n->sample, "receiver"), "status"));
        v->known = true;
        v->primary = n->primary;
        v->answered = json_is_true(json_object_get(n->sample, "reachable"));
        v->in_recovery = json_is_true(json_object_get(n->sample, "in_recovery"));
        v->streaming = st && !strcmp(st, "streaming");
        v->state = n->primary ? REPL_UNKNOWN : n->state;
        v->lag_bytes = n->primary ? -1 : n->lag_bytes;
        v->sampled_ms = n->sampled_ms;
        snprintf(v->why, sizeof(v->why), "%s", n->primary ? "" : n->why);
        return;
    }
}

const char *replication_node_conninfo(const Replication *r, const char *name)
{
    for (size_t i = 0; name && i < r->n_nodes; i++)
        if (!strcmp(r->nodes[i].name, name))
            return r->nodes[i].conninfo;
    return NULL;
}

/* ---- the record of the primary (state_dir/primary.json) ---- */

/* Which node is the primary: the recorded one when it is configured, else the configured role. */
static void repl_apply_roles(Replication *r)
{
    bool known = r->recorded_primary[0] && replication_node_conninfo(r, r->recorded_primary);
    for (size_t i = 0; i < r->n_nodes; i++) {
        ReplNode *n = &r->nodes[i];
        bool was = n->primary;
        n->primary = known ? !strcmp(n->name, r->recorded_primary) : n->cfg_primary;
        if (was != n->primary) {
            char lagkey[256], brokenkey[256];
            repl_condition_keys(r, n, lagkey, brokenkey, sizeof(lagkey));
            /* a standby's conditions do not outlive its promotion */
            if (n->primary && (n->state == REPL_LAG_WARNING || n->state == REPL_LAG_CRITICAL))
                events_emit(r->core->events, SEV_INFO, "replication.lag", lagkey, true, NULL,
                            "%s is the primary now: no replication lag to watch", n->name);
            if (n->primary && n->state == REPL_BROKEN)
                events_emit(r->core->events, SEV_INFO, "replication.broken", brokenkey, true, NULL,
                            "%s is the primary now: its replication as a standby is over", n->name);
            n->state = n->candidate = REPL_UNKNOWN; /* judged afresh in its new role */
            n->seen = n->good_ms = 0;
            n->lag_bytes = -1;
        }
    }
}

static void repl_record_path(const Replication *r, char *out, size_t n)
{
    snprintf(out, n, "%s/primary.json", r->core->cfg->state_dir);
}

/* At start (before the loop runs, like the configuration itself): a small file read in place. */
static void repl_load_record(Replication *r)
{
    char path[1024], *data = NULL;
    size_t len = 0;

    r->record_loaded = true;
    repl_record_path(r, path, sizeof(path));
    int rc = atomicfile_read_all(path, 65536, &data, &len);
    if (rc == -ENOENT)
        return;
    json_t *j = rc == 0 ? json_loadb(data, len, 0, NULL) : NULL;
    free(data);
    const char *node = json_string_value(json_object_get(j, "primary"));
    if (!node || strlen(node) >= sizeof(r->recorded_primary)) {
        events_emit(r->core->events, SEV_CRITICAL, "replication.primary", NULL, false, NULL,
                    "cannot read the record of the last promotion '%s' (%s): the configured roles are used",
                    path, rc < 0 ? err_str(rc) : "not a record");
        json_decref(j);
        return;
    }
    snprintf(r->recorded_primary, sizeof(r->recorded_primary), "%s", node);
    snprintf(r->recorded_run, sizeof(r->recorded_run), "%s", json_string_value(json_object_get(j, "run")) ?: "");
    r->recorded_timeline = json_integer_value(json_object_get(j, "timeline"));
    r->recorded_ms = json_integer_value(json_object_get(j, "at_ms"));
    json_decref(j);
}

/* Tell the listener which node is the primary when a record says so. */
static void repl_tell_primary(Replication *r)
{
    const char *ci = replication_node_conninfo(r, r->recorded_primary);
    if (r->primary_fn && r->recorded_primary[0] && ci)
        r->primary_fn(r->recorded_primary, ci, r->primary_data);
}

const char *replication_configured_primary_conninfo(const Replication *r)
{
    for (size_t i = 0; i < r->n_nodes; i++)
        if (r->nodes[i].cfg_primary)
            return r->nodes[i].conninfo;
    return NULL;
}

void replication_set_follows(Replication *r, const json_t *follows)
{
    json_decref(r->follows);
    r->follows = follows ? json_deep_copy(follows) : NULL;
}

void replication_on_primary(Replication *r, ReplPrimaryFn fn, void *data)
{
    r->primary_fn = fn;
    r->primary_data = data;
    repl_tell_primary(r);
}

typedef struct ReplRecord {
    uv_work_t req;
    Replication *r;
    char path[1024];
    char *text;
    int status;
    char node[64], run[96];
    int64_t timeline, at_ms;
    ReplRecordDone done;
    void *data;
} ReplRecord;

static void repl_record_work(uv_work_t *req)
{
    ReplRecord *w = req->data;
    w->status = atomicfile_write(w->path, w->text, strlen(w->text), 0640);
}

static void repl_record_done(uv_work_t *req, int status)
{
    ReplRecord *w = req->data;
    Replication *r = w->r;

    r->pending--;
    if (status < 0 && w->status == 0)
        w->status = status;
    if (w->status == 0 && !r->closing) {
        const ReplNode *was = repl_primary(r);
        const char *old = was ? was->name : "?";
        json_t *det = json_pack("{s:s,s:s,s:I,s:s}", "node", w->node, "previous", old, "timeline",
                                (json_int_t)w->timeline, "run", w->run);
        snprintf(r->recorded_primary, sizeof(r->recorded_primary), "%s", w->node);
        snprintf(r->recorded_run, sizeof(r->recorded_run), "%s", w->run);
        r->recorded_timeline = w->timeline;
        r->recorded_ms = w->at_ms;
        events_emit(r->core->events, SEV_WARNING, "replication.primary", NULL, false, det,
                    "%s is the primary now (timeline %lld, run %s; was %s): recorded in '%s'", w->node,
                    (long long)w->timeline, w->run, old, w->path);
        json_decref(det);
        repl_apply_roles(r);
        repl_tell_primary(r);
    }
    if (w->done)
        w->done(w->status, w->data);
    free(w->text);
    free(w);
    repl_maybe_closed(r);
}

void replication_record_primary(Replication *r, const char *node, int64_t timeline, const char *run,
                                ReplRecordDone done, void *data)
{
    ReplRecord *w = calloc(1, sizeof(*w));
    int rc = -ENOMEM;

    if (w) {
        w->req.data = w;
        w->r = r;
        w->done = done;
        w->data = data;
        w->timeline = timeline;
        w->at_ms = clock_wall_ms();
        snprintf(w->node, sizeof(w->node), "%s", node);
        snprintf(w->run, sizeof(w->run), "%s", run ? run : "");
        repl_record_path(r, w->path, sizeof(w->path));
        json_t *j = json_pack("{s:s,s:I,s:s,s:I}", "primary", node, "timeline", (json_int_t)timeline, "run", w->run,
                              "at_ms", (json_int_t)w->at_ms);
        w->text = j ? json_dumps(j, JSON_COMPACT) : NULL;
        json_decref(j);
        rc = r->closing ? DR_ECANCELED : !w->text ? -ENOMEM : uv_queue_work(r->core->loop, &w->req, repl_record_work,
                                                                           repl_record_done);
        if (rc == 0) {
            r->pending++;
            return;
        }
        free(w->text);
        free(w);
    }
    done(rc, data);
}

/* ---- failover_status ---- */

const char *replication_fence_by_name(ReplFenceBy by)
{
    static const char *const names[] = {"none", "hook", "stop", "read_only"};
    return by <= REPL_FENCE_READ_ONLY ? names[by] : "?";
}

static const char *repl_self_fence_name(int mode)
{
    return mode == CONFIG_SELF_FENCE_STOP ? "stop" : mode == CONFIG_SELF_FENCE_READ_ONLY ? "read_only" : "off";
}

/* The old primary is fenced by the hook when one is configured; without one by the daemon's own
 * measures (steps/fence.c: the stop command when self_fence is stop and the node has one, else
 * read-only), which is as good a fence as a failover needs; with neither, nothing stops it
 * taking writes. */
const char *replication_failover_rule(const ConfigFailover *f, const ReplFailoverFacts *facts, ReplFenceBy *ret_fence_by)
{
    ReplFenceBy by = f->n_fence                                                             ? REPL_FENCE_HOOK
                     : f->self_fence == CONFIG_SELF_FENCE_STOP && facts->primary_has_stop ? REPL_FENCE_STOP
                     : f->self_fence != CONFIG_SELF_FENCE_OFF                             ? REPL_FENCE_READ_ONLY
                                                                                          : REPL_FENCE_NONE;
    if (ret_fence_by)
        *ret_fence_by = by;
    if (!f->enabled)
        return "no failover section is configured";
    if (!facts->candidate)
        return "no standby is eligible (see candidates)";
    if (by == REPL_FENCE_NONE)
        return "no fence hook is configured and failover.self_fence is off: the old primary could keep accepting "
               "writes";
    if (!facts->fence_check_ok)
        return "the fence check failed";
    if (!f->n_repoint)
        return "no repoint hook is configured: the platform would keep writing to the old primary";
    return NULL;
}

/* How fencing_by reads in a sentence ("by the fence hook"). */
static const char *repl_fence_by_words(const char *by)
{
    return !by                         ? "?"
           : !strcmp(by, "hook")      ? "by the fence hook"
           : !strcmp(by, "stop")      ? "by the daemon: its stop command (failover.self_fence: stop)"
           : !strcmp(by, "read_only") ? "by the daemon: made read-only (failover.self_fence)"
                                      : "by nobody";
}

static const ConfigReplicationNode *repl_node_config(const Replication *r, const char *name)
{
    for (size_t i = 0; r->cfg && i < r->cfg->n_nodes; i++)
        if (!strcmp(r->cfg->nodes[i].name, name))
            return &r->cfg->nodes[i];
    return NULL;
}


/* Would a failover succeed now? Which standby, and why not the others. */
static json_t *repl_failover_json(const Replication *r)
{
    const ConfigFailover *f = &r->cfg->failover;
    const ReplNode *primary = repl_primary(r);
    ReplCandidate *c = calloc(r->n_nodes ? r->n_nodes : 1, sizeof(*c));
    const ReplNode **nodes = calloc(r->n_nodes ? r->n_nodes : 1, sizeof(*nodes));
    json_t *cands = json_array();
    const char *why = NULL;

    if (!c || !nodes) {
        free(c);
        free(nodes);
        json_decref(cands);
        return NULL;
    }
    size_t k = repl_candidates(r, 0, c, nodes);
    int best = replication_choose_candidate(c, k, repl_primary_timeline(r), f->maximum_lag_bytes);
    for (size_t i = 0; cands && i < k; i++) {
        const json_t *tl = json_object_get(nodes[i]->sample, "timeline");
        json_array_append_new(cands, json_pack("{s:s,s:I,s:s,s:I,s:O?,s:b,s:s?}", "name", c[i].name, "priority",
                                               (json_int_t)c[i].priority, "state", replication_state_name(c[i].state),
                                               "lag_bytes", (json_int_t)c[i].lag_bytes, "timeline", tl, "eligible",
                                               c[i].why_not[0] == '\0', "reason",
                                               c[i].why_not[0] ? c[i].why_not : NULL));
    }
    const ConfigReplicationNode *pn = primary ? repl_node_config(r, primary->name) : NULL;
    ReplFailoverFacts facts = {.candidate = best >= 0,
                               .fence_check_ok = f->n_fence_check == 0 || (r->fence_checked_ms && r->fence_ok),
                               .primary_has_stop = pn && pn->n_stop > 0};
    ReplFenceBy by;
    why = replication_failover_rule(f, &facts, &by);
    json_t *o = json_pack("{s:b,s:b,s:s?,s:s?,s:o,s:I}", "configured", f->enabled, "would_succeed", why == NULL, "why",
                          why, "candidate", best >= 0 ? c[best].name : NULL, "candidates", cands ? cands : json_array(),
                          "maximum_lag_bytes", (json_int_t)f->maximum_lag_bytes);
    free(c);
    free(nodes);
    if (o) {
        json_object_set_new(o, "ok", json_boolean(why == NULL));
        json_object_set_new(o, "primary", json_pack("{s:s?,s:b}", "name", primary ? primary->name : NULL, "reachable",
                                                    primary && json_is_true(json_object_get(primary->sample, "reachable"))));
        json_object_set_new(o, "fencing", json_pack("{s:b,s:s,s:s,s:b,s:I,s:b,s:s}", "configured", f->n_fence > 0,
                                                    "by", replication_fence_by_name(by), "self_fence",
                                                    repl_self_fence_name(f->self_fence), "check_configured",
                                                    f->n_fence_check > 0, "last_check_ms",
                                                    (json_int_t)r->fence_checked_ms, "last_check_ok", r->fence_ok,
                                                    "last_check_message", r->fence_msg));
        json_object_set_new(o, "repoint", json_pack("{s:b}", "configured", f->n_repoint > 0));
        /* the other standbys after a promotion (steps/standbys.c): the hook, else primary_conninfo */
        json_object_set_new(o, "repoint_standby", json_pack("{s:s,s:I}", "by", f->n_repoint_standby ? "hook"
                                                            : "primary_conninfo", "standby_timeout_ms",
                                                            (json_int_t)f->standby_timeout_ms));
    }
    return o;
}

/* Readiness (core/readiness.h): the standbys replicate within their thresholds; a failover would
 * succeed now; the fence hook's dry run passed in the last day. */
static void repl_readiness(ReadyWriter *w, void *data)
{
    Replication *r = data;
    char list[400] = "";
    size_t len = 0;
    ReadyLevel lvl = READY_PASS;
    size_t standbys = 0;

    if (!r->cfg || !r->n_nodes) {
        readiness_add(w, "replication.standbys", READY_WARN, "no replication.nodes: losing the primary means a "
                                                             "restore from backup");
        return;
    }
    for (size_t i = 0; i < r->n_nodes; i++) {
        const ReplNode *n = &r->nodes[i];
        if (n->primary)
            continue;
        standbys++;
        ReadyLevel l = n->state == REPL_OK                                        ? READY_PASS
                       : n->state == REPL_LAG_WARNING || n->state == REPL_UNKNOWN ? READY_WARN
                                                                                  : READY_FAIL;
        if (l > lvl)
            lvl = l;
        if (len < sizeof(list))
            len += (size_t)snprintf(list + len, sizeof(list) - len, "%s%s %s", len ? ", " : "", n->name,
                                    replication_state_name(n->state));
    }
    readiness_add(w, "replication.standbys", standbys ? lvl : READY_WARN, "%s", standbys ? list : "no standby node");
    const ConfigFailover *f = &r->cfg->failover;
    if (!f->enabled) {
        readiness_add(w, "failover.ready", READY_WARN, "no failover: section: a lost primary is not replaced");
        return;
    }
    json_t *o = repl_failover_json(r);
    const char *by = json_string_value(json_object_get(json_object_get(o, "fencing"), "by"));
    if (o && json_is_true(json_object_get(o, "would_succeed")))
        readiness_add(w, "failover.ready", READY_PASS, "a failover would promote %s (the old primary fenced %s)",
                      json_string_value(json_object_get(o, "candidate")), repl_fence_by_words(by));
    else
        readiness_add(w, "failover.ready", READY_FAIL, "a failover would not succeed: %s",
                      o ? json_string_value(json_object_get(o, "why")) : "out of memory");
    json_decref(o);
    if (!f->n_fence && !f->n_fence_check && f->self_fence != CONFIG_SELF_FENCE_OFF)
        readiness_add(w, "failover.fence_tested", READY_PASS, "no fence hook to try: the daemon fences the old primary "
                                                              "itself (failover.self_fence: %s)",
                      repl_self_fence_name(f->self_fence));
    else if (!f->n_fence_check)
        readiness_add(w, "failover.fence_tested", READY_WARN, "no failover.fence_check: the fence hook is never tried "
                                                              "before it is needed");
    else if (!r->fence_checked_ms)
        readiness_add(w, "failover.fence_tested", READY_WARN, "the fence check has not run since the daemon started "
                                                              "(drctl failover-status runs it)");
    else if (!r->fence_ok)
        readiness_add(w, "failover.fence_tested", READY_FAIL, "the last fence check failed: %s", r->fence_msg);
    else if (clock_wall_ms() - r->fence_checked_ms > 24 * 3600 * 1000LL)
        readiness_add(w, "failover.fence_tested", READY_WARN, "the fence check last passed more than a day ago");
    else
        readiness_add(w, "failover.fence_tested", READY_PASS, "the fence check passed (%s)", r->fence_msg);
}

static void repl_answer_asks(Replication *r)
{
    while (r->asks) {
        ReplAsk *a = r->asks;
        r->asks = a->next;
        control_reply_ok(a->call, repl_failover_json(r));
        free(a);
    }
}

static void repl_on_fence_checked(ChildProc *c, int64_t status, int sig, void *data)
{
    Replication *r = data;
    char how[300];

    r->fence_check = NULL;
    r->pending--;
    r->fence_checked_ms = clock_wall_ms();
    r->fence_ok = status == 0 && sig == 0 && !child_timed_out(c);
    snprintf(r->fence_msg, sizeof(r->fence_msg), "the fence check %s",
             child_describe_outcome(c, status, sig, 200, how, sizeof(how)));
    child_free(c);
    if (!r->closing)
        repl_answer_asks(r);
    repl_maybe_closed(r);
}

static void repl_cmd_failover_status(CtlCall *call, const json_t *args, void *data)
{
    Replication *r = data;
    const ConfigFailover *f = &r->cfg->failover;
    ReplAsk *a;
    int rc = 0;

    (void)args;
    if (!f->n_fence_check) {
        control_reply_ok(call, repl_failover_json(r));
        return;
    }
    if (!(a = calloc(1, sizeof(*a)))) {
        control_reply_error(call, -ENOMEM, "out of memory");
        return;
    }
    a->call = call;
    a->next = r->asks;
    r->asks = a;
    if (r->fence_check)
        return; /* answered when the running check ends */
    ChildOptions opt = {.argv = (const char *const *)f->fence_check, .stdin_mode = CHILD_STDIN_NULL,
                        .stdout_mode = CHILD_STDOUT_CAPTURE, .stdout_limit = 4096, .timeout_ms = f->hook_timeout_ms, .kill_grace_ms = 1000,
                        .on_exit = repl_on_fence_checked, .data = r};
    r->fence_check = child_spawn(r->core->loop, &opt, &rc);
    if (!r->fence_check) {
        r->fence_checked_ms = clock_wall_ms();
        r->fence_ok = false;
        snprintf(r->fence_msg, sizeof(r->fence_msg), "the fence check cannot run: %s (%s)", err_str(rc), f->fence_check[0]);
        repl_answer_asks(r);
        return;
    }
    r->pending++;
}

/* ---- metrics ---- */

static void repl_collect(MetricsWriter *w, void *data)
{
    const Replication *r = data;
    static const ReplState states[] = {REPL_UNKNOWN, REPL_OK, REPL_LAG_WARNING, REPL_LAG_CRITICAL, REPL_BROKEN};

    if (!r->n_nodes)
        return;
    metrics_family(w, "drsupervisor_replication_node_up", METRIC_GAUGE, "1 when the node answered the last round");
    for (size_t i = 0; i < r->n_nodes; i++) {
        const char *const l[][2] = {{"node", r->nodes[i].name}};
        metrics_sample(w, "drsupervisor_replication_node_up", l, 1,
                       json_is_true(json_object_get(r->nodes[i].sample, "reachable")));
    }
    metrics_family(w, "drsupervisor_replication_node_in_recovery", METRIC_GAUGE,
                   "1 when the node is a standby (in recovery), 0 a primary");
    for (size_t i = 0; i < r->n_nodes; i++) {
        const char *const l[][2] = {{"node", r->nodes[i].name}};
        if (json_is_boolean(json_object_get(r->nodes[i].sample, "in_recovery")))
            metrics_sample(w, "drsupervisor_replication_node_in_recovery", l, 1,
                           json_is_true(json_object_get(r->nodes[i].sample, "in_recovery")));
    }
    metrics_family(w, "drsupervisor_replication_lag_bytes", METRIC_GAUGE,
                   "bytes of WAL written on the primary and not yet replayed by the standby");
    for (size_t i = 0; i < r->n_nodes; i++) {
        const char *const l[][2] = {{"node", r->nodes[i].name}};
        if (!r->nodes[i].primary && r->nodes[i].lag_bytes >= 0)
            metrics_sample(w, "drsupervisor_replication_lag_bytes", l, 1, (double)r->nodes[i].lag_bytes);
    }
    metrics_family(w, "drsupervisor_replication_lag_seconds", METRIC_GAUGE,
                   "replay lag of the standby in seconds (0 when no WAL is behind)");
    for (size_t i = 0; i < r->n_nodes; i++) {
        const char *const l[][2] = {{"node", r->nodes[i].name}};
        if (!r->nodes[i].primary && r->nodes[i].lag_s >= 0)
            metrics_sample(w, "drsupervisor_replication_lag_seconds", l, 1, r->nodes[i].lag_s);
    }
    metrics_family(w, "drsupervisor_replication_state", METRIC_GAUGE, "the standby's state (1 for the current one)");
    for (size_t i = 0; i < r->n_nodes; i++) {
        for (size_t k = 0; !r->nodes[i].primary && k < sizeof(states) / sizeof(states[0]); k++) {
            const char *const l[][2] = {{"node", r->nodes[i].name}, {"state", replication_state_name(states[k])}};
            metrics_sample(w, "drsupervisor_replication_state", l, 2, r->nodes[i].state == states[k]);
        }
    }
}

/* ---- lifecycle ---- */

static void repl_maybe_closed(Replication *r)
{
    if (!r->closing || r->pending > 0)
        return;
    void (*cb)(void *) = r->closed_cb;
    void *data = r->closed_data;
    json_decref(r->follows);
    free(r);
    if (cb)
        cb(data);
}

static void repl_conn_closed(void *data)
{
    Replication *r = data;
    r->pending--;
    repl_maybe_closed(r);
}

static void repl_drop_nodes(Replication *r)
{
    for (size_t i = 0; i < r->n_nodes; i++) {
        ReplNode *n = &r->nodes[i];
        if (n->pg) {
            r->pending++;
            pgconn_close(n->pg, repl_conn_closed, r);
        }
        free(n->name);
        free(n->conninfo);
        json_decref(n->sample);
    }
    free(r->nodes);
    r->nodes = NULL;
    r->n_nodes = 0;
    r->outstanding = 0;
}

static void repl_free_on_close(uv_handle_t *h)
{
    free(h->data);
}

Replication *replication_new(Core *core)
{
    Replication *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->core = core;
    if (uv_timer_init(core->loop, &r->timer) < 0) {
        free(r);
        return NULL;
    }
    r->timer.data = r;
    r->pending = 1; /* the timer */
    if ((core->metrics && metrics_register(core->metrics, repl_collect, r) < 0) ||
        (core->readiness && readiness_register(core->readiness, repl_readiness, r) < 0)) {
        uv_close((uv_handle_t *)&r->timer, repl_free_on_close);
        return NULL;
    }
    return r;
}

static bool repl_same_nodes(const Replication *r, const ConfigReplication *c)
{
    if (r->n_nodes != c->n_nodes)
        return false;
    for (size_t i = 0; i < c->n_nodes; i++)
        if (strcmp(r->nodes[i].name, c->nodes[i].name) || strcmp(r->nodes[i].conninfo, c->nodes[i].conninfo) ||
            r->nodes[i].cfg_primary != c->nodes[i].primary)
            return false;
    return true;
}

int replication_apply_config(Replication *r, const Config *cfg)
{
    const ConfigReplication *c = &cfg->replication;

    if (r->closing)
        return DR_ECANCELED;
    r->cfg = c;
    if (!r->registered) {
        CtlCommand cmds[] = {
            {"replication_status", false, repl_cmd_status, r,
             "each node's role, timeline and WAL position; each standby's lag and state"},
            {"failover_status", false, repl_cmd_failover_status, r,
             "would a failover succeed now: the standby it would promote and why, fencing, repoint"},
        };
        int rc = control_register(r->core->control, cmds, 2);
        if (rc < 0)
            return rc;
        r->registered = true;
    }
    if (!repl_same_nodes(r, c)) {
        repl_drop_nodes(r);
        if (c->n_nodes && !(r->nodes = calloc(c->n_nodes, sizeof(*r->nodes))))
            return -ENOMEM;
        PgConnOptions opts = {.connect_timeout_ms = c->timeout_ms, .query_timeout_ms = c->timeout_ms,
                              .reconnect_min_ms = 100, .reconnect_max_ms = c->interval_ms};
        for (size_t i = 0; i < c->n_nodes; i++) {
            ReplNode *n = &r->nodes[i];
            *n = (ReplNode){.owner = r, .cfg_primary = c->nodes[i].primary, .priority = c->nodes[i].priority,
                            .lag_bytes = -1, .lag_s = -1};
            n->name = strdup(c->nodes[i].name);
            n->conninfo = strdup(c->nodes[i].conninfo);
            r->n_nodes++;
            if (!n->name || !n->conninfo || !(n->pg = pgconn_new(r->core->loop, n->conninfo, &opts)))
                return -ENOMEM;
        }
    }
    for (size_t i = 0; i < r->n_nodes && i < c->n_nodes; i++)
        r->nodes[i].priority = c->nodes[i].priority; /* a reload may change only these */
    if (!r->record_loaded)
        repl_load_record(r);
    repl_apply_roles(r);
    repl_tell_primary(r); /* also after a reload: what follows the primary is judged again */
    uv_timer_stop(&r->timer);
    if (r->n_nodes) {
        uv_timer_start(&r->timer, repl_on_timer, 0, c->interval_ms);
        log_info("replication", "watching %zu nodes every %llu ms", r->n_nodes, (unsigned long long)c->interval_ms);
    }
    return 0;
}

static void repl_timer_closed(uv_handle_t *h)
{
    Replication *r = h->data;
    r->pending--;
    repl_maybe_closed(r);
}

void replication_close(Replication *r, void (*closed_cb)(void *data), void *data)
{
    while (r->asks) {
        ReplAsk *a = r->asks;
        r->asks = a->next;
        control_reply_error(a->call, DR_ECANCELED, "the daemon is stopping");
        free(a);
    }
    if (r->fence_check)
        child_kill(r->fence_check, SIGKILL);
    r->closing = true;
    r->closed_cb = closed_cb;
    r->closed_data = data;
    repl_drop_nodes(r);
    uv_close((uv_handle_t *)&r->timer, repl_timer_closed);
}
