/*
 * venue: actions on the trading platform and the fail-closed halt (see venue.h).
 */
#include "cap/venue/venue.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "atomicfile.h"
#include "child.h"
#include "clock.h"
#include "core/core.h"
#include "err.h"
#include "log.h"

#define VENUE_MAX_ANSWER (4u * 1024u * 1024u)

#include "cap/venue/venue_internal.h"
#include "cap/venue/venue_map.h"


static void venue_halt_attempt(Venue *v);

const ConfigVenue *venue__cfg(const Venue *v)
{
    return &v->core->cfg->venue;
}

const char *venue_mode_name(VenueMode m)
{
    switch (m) {
    case VENUE_MODE_HALTED:
        return "halted";
    case VENUE_MODE_SHADOW:
        return "shadow";
    case VENUE_MODE_LIVE:
        return "live";
    case VENUE_MODE_UNKNOWN:
    default:
        return "unknown";
    }
}

bool venue_enabled(const Venue *v)
{
    return venue__cfg(v)->enabled;
}

bool venue_halted(const Venue *v)
{
    return v->halted;
}

VenueMode venue_mode(const Venue *v)
{
    return v->mode;
}

void venue_set_resume_guard(Venue *v, VenueResumeGuardFn guard, void *data)
{
    v->guard = guard;
    v->guard_data = data;
}

static void venue_maybe_closed(Venue *v)
{
    if (!v->closing || v->pending > 0 || v->calls)
        return;
    void (*cb)(void *) = v->closed_cb;
    void *data = v->closed_data;
    free(v->reason);
    free(v->run);
    free(v->last_error);
    free(v);
    if (cb)
        cb(data);
}

/* ---- running one action ---- */

static void venue_call_finish(VenueCall *call, int result, const char *body, size_t len, const char *message)
{
    Venue *v = call->v;
    json_t *answer = NULL;

    for (VenueCall **pp = &v->calls; *pp; pp = &(*pp)->next) {
        if (*pp == call) {
            *pp = call->next;
            break;
        }
    }
    if (result == 0 && body && len > 0)
        answer = json_loadb(body, len, JSON_DECODE_ANY, NULL);
    if (call->cb)
        call->cb(result, answer, body ? body : "", message ? message : "", call->data);
    json_decref(answer);
    free(call);
    venue_maybe_closed(v);
}

static void venue_on_http(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    VenueCall *call = data;
    char msg[512];

    if (err < 0) {
        venue_call_finish(call, err, NULL, 0, errmsg);
        return;
    }
    if (resp->status < 200 || resp->status > 299) {
        snprintf(msg, sizeof(msg), "the platform answered HTTP %ld: %.200s", resp->status, resp->body);
        venue_call_finish(call, DR_EHTTP, NULL, 0, msg);
        return;
    }
    venue_call_finish(call, 0, resp->body, resp->body_len, NULL);
}

static void venue_on_child_exit(ChildProc *c, int64_t status, int sig, void *data)
{
    VenueCall *call = data;
    size_t len = 0;
    char msg[512], how[64];

    if (status == 0 && sig == 0) {
        const char *out = child_stdout(c, &len);
        char *copy = strndup(out ? out : "", len);
        venue_call_finish(call, 0, copy, len, NULL);
        free(copy);
    } else {
        const char *err = child_stderr(c, &len);
        size_t tail = len > 300 ? 300 : len; /* the end of stderr says what went wrong */
        bool late = child_timed_out(c);
        if (late)
            snprintf(how, sizeof(how), "timed out after %llu ms (its process group was killed)",
                     (unsigned long long)venue__cfg(call->v)->timeout_ms);
        else
            child_describe_exit(status, sig, how, sizeof(how));
        snprintf(msg, sizeof(msg), "the venue command %s: %.*s", how, (int)tail, err ? err + (len - tail) : "");
        venue_call_finish(call, late ? -ETIMEDOUT : DR_ECHILD, NULL, 0, msg);
    }
    child_free(c);
}

/* The signature headers of one HTTP request (venue.sign), appended to hdrs at *nh. */
static int venue_add_signature(const ConfigVenue *cfg, const char *method, const char *url, const char *body,
                               char **hdrs, size_t *nh)
{
    char *sig = NULL, *ts = NULL;
    int r = venue_sign_headers(&cfg->sign, method, url, body, clock_wall_ms(), &sig, &ts);
    if (r < 0)
        return r;
    hdrs[(*nh)++] = sig;
    if (ts)
        hdrs[(*nh)++] = ts;
    return 0;
}

int venue__action(Venue *v, VenueActionId id, const VenueWindow *w, VenueResultFn cb, void *data, char *request,
                  size_t request_len)
{
    const ConfigVenue *cfg = venue__cfg(v);
    const ConfigVenueAction *a = &cfg->actions[id];
    char wbuf[VENUE_WINDOW_VARS][40];
    char limit[24];
    const char *vars[5 + VENUE_WINDOW_VARS][2] = {
        {"reason", v->reason}, {"run", v->run}, {"cluster", v->core->cfg->cluster}, {"limit", limit}};
    size_t nv = 4;
    VenueCall *call;
    int r;

    if (v->closing)
        return DR_ECANCELED;
    if (!cfg->enabled || a->kind == VENUE_ACTION_NONE)
        return -ENOTSUP;
    /* High availability: only the leader changes the platform, each change carrying its token. */
    bool acts = id == VENUE_HALT || id == VENUE_RESUME || id == VENUE_SHADOW || id == VENUE_CLOSE_ALL;
    if (acts && !leader_acting(v->core->leader))
        return DR_ENOTLEADER;
    snprintf(limit, sizeof(limit), "%lld", (long long)cfg->pages.limit); /* the page size of by: since */
    if (w) {
        venue_map_window_vars(w->since_ms, w->until_ms, w->cursor, wbuf, vars + 4);
        nv += VENUE_WINDOW_VARS;
    }
    call = calloc(1, sizeof(*call));
    if (!call)
        return -ENOMEM;
    *call = (VenueCall){.v = v, .id = id, .cb = cb, .data = data};
    if (a->kind == VENUE_ACTION_HTTP) {
        char *url = venue_expand(a->url, 'u', vars, nv);
        char *body = a->body ? venue_expand(a->body, 'j', vars, nv) : NULL;
        char **hdrs = calloc(a->n_headers + 5, sizeof(*hdrs));
        bool has_ct = false;
        size_t nh = 0;
        r = url && hdrs && (body || !a->body) ? 0 : -ENOMEM;
        for (size_t i = 0; r == 0 && i < a->n_headers; i++) {
            if (!(hdrs[nh++] = venue_expand(a->headers[i], 'r', vars, nv)))
                r = -ENOMEM;
            has_ct = has_ct || strncasecmp(a->headers[i], "content-type:", 13) == 0;
        }
        if (r == 0 && body && !has_ct && !(hdrs[nh++] = strdup("Content-Type: application/json")))
            r = -ENOMEM;
        if (r == 0 && acts && leader_enabled(v->core->leader) &&
            asprintf(&hdrs[nh++], "X-Drsup-Fencing-Token: %lld", (long long)leader_token(v->core->leader)) < 0) {
            hdrs[nh - 1] = NULL;
            r = -ENOMEM;
        }
        if (r == 0 && cfg->sign.enabled)
            r = venue_add_signature(cfg, a->method, url, body, hdrs, &nh);
        if (request)
            snprintf(request, request_len, "%s %.280s", a->method, url ? url : a->url);
        HttpRequest req = {.method = a->method,
                           .url = url,
                           .headers = (const char *const *)hdrs,
                           .n_headers = nh,
                           .body = body,
                           .body_len = body ? strlen(body) : 0,
                           .timeout_ms = cfg->timeout_ms,
                           .connect_timeout_ms = cfg->timeout_ms,
                           .max_response = VENUE_MAX_ANSWER};
        if (r == 0)
            r = httpc_request(v->core->http, &req, venue_on_http, call, &call->http_id);
        for (size_t i = 0; hdrs && i < nh; i++) {
            if (hdrs[i] && (cfg->secret_headers[id] || cfg->sign.enabled))
                explicit_bzero(hdrs[i], strlen(hdrs[i]));
            free(hdrs[i]);
        }
        free(hdrs);
        free(url);
        free(body);
    } else {
        char **argv = calloc(a->argc + 1, sizeof(*argv));
        r = argv ? 0 : -ENOMEM;
        for (size_t i = 0; argv && i < a->argc; i++)
            if (!(argv[i] = venue_expand(a->argv[i], 'r', vars, nv)))
                r = -ENOMEM;
        if (request)
            snprintf(request, request_len, "command %.280s", a->argv[0]);
        /* high availability: the command carries the fencing token as the HTTP actions do */
        char token_env[64];
        const char *env[2] = {NULL, NULL};
        if (acts && leader_enabled(v->core->leader)) {
            snprintf(token_env, sizeof(token_env), "DRSUP_FENCING_TOKEN=%lld",
                     (long long)leader_token(v->core->leader));
            env[0] = token_env;
        }
        if (r == 0) {
            ChildOptions opt = {.argv = (const char *const *)argv,
                                .env = env[0] ? env : NULL,
                                .stdin_mode = CHILD_STDIN_NULL,
                                .stdout_mode = CHILD_STDOUT_CAPTURE,
                                .stdout_limit = VENUE_MAX_ANSWER,
                                .timeout_ms = cfg->timeout_ms,
                                .kill_grace_ms = 1000,
                                .on_exit = venue_on_child_exit,
                                .data = call};
            call->child = child_spawn(v->core->loop, &opt, &r);
        }
        for (size_t i = 0; argv && i < a->argc; i++)
            free(argv[i]);
        free(argv);
    }
    if (r < 0) {
        free(call);
        return r;
    }
    call->next = v->calls;
    v->calls = call;
    return 0;
}

int venue_action(Venue *v, VenueActionId id, const VenueWindow *w, VenueResultFn cb, void *data)
{
    return venue__action(v, id, w, cb, data, NULL, 0);
}

/* ---- persisted intent ---- */

static void venue_persist_work(uv_work_t *req)
{
    VenuePersist *p = req->data;
    p->result = atomicfile_write(p->path, p->json, strlen(p->json), 0640);
}

static void venue_on_state_in_etcd(int result, const char *message, void *data)
{
    Venue *v = data;
    v->pending--;
    if (result < 0 && result != DR_ECANCELED && result != DR_ENOTLEADER && !v->closing)
        log_warning("venue", "cannot write the trading halt state to etcd, ignoring (a new leader stays halted on "
                    "the older state there): %s", message);
    venue_maybe_closed(v);
}

/* The halt state as etcd keeps it (PREFIX/halt): a new leader reads it back at takeover. */
static void venue_state_to_etcd(Venue *v, LeaderDoneFn done)
{
    char *json = NULL;
    json_t *j = json_pack("{s:b,s:s?,s:s?,s:I,s:I}", "halted", v->halted, "reason", v->reason, "run", v->run,
                          "since_ms", (json_int_t)v->since_ms, "token", (json_int_t)leader_token(v->core->leader));
    json = j ? json_dumps(j, JSON_COMPACT) : NULL;
    json_decref(j);
    v->pending++;
    leader_put_state(v->core->leader, "halt", json ? json : "{\"halted\":true}", done, v);
    free(json);
}

static void venue_persist_done(uv_work_t *req, int status)
{
    VenuePersist *p = req->data;
    Venue *v = p->v;

    if (status < 0 && p->result == 0)
        p->result = status;
    v->pending--;
    if (p->result < 0)
        events_emit(v->core->events, SEV_CRITICAL, "venue.state", NULL, false, NULL,
                    "cannot persist the trading halt state to '%s': %s", p->path, err_str(p->result));
    if (p->then && !v->closing)
        p->then(v, p->result);
    else if (!p->then && !v->closing && leader_enabled(v->core->leader) && leader_acting(v->core->leader))
        venue_state_to_etcd(v, venue_on_state_in_etcd); /* a resume (halted false) or an update */
    free(p->path);
    free(p->json);
    free(p);
    venue_maybe_closed(v);
}

static void venue_persist(Venue *v, void (*then)(Venue *v, int result))
{
    VenuePersist *p = calloc(1, sizeof(*p));
    json_t *j = json_pack("{s:b,s:s?,s:s?,s:I,s:I,s:I}", "halted", v->halted, "reason", v->reason, "run", v->run,
                          "since_ms", (json_int_t)v->since_ms, "requested_ms", (json_int_t)v->requested_ms,
                          "reconciled_ms", (json_int_t)v->reconciled_ms);

    if (!p || !j || asprintf(&p->path, "%s/halt.json", v->core->cfg->state_dir) < 0 ||
        !(p->json = json_dumps(j, JSON_COMPACT))) {
        json_decref(j);
        if (p) {
            free(p->path);
            free(p);
        }
        if (then)
            then(v, -ENOMEM);
        return;
    }
    json_decref(j);
    p->v = v;
    p->then = then;
    p->req.data = p;
    v->pending++;
    int r = uv_queue_work(v->core->loop, &p->req, venue_persist_work, venue_persist_done);
    if (r < 0) {
        p->result = r;
        venue_persist_done(&p->req, 0);
    }
}

/* ---- halt ---- */

static void venue_set_mode(Venue *v, VenueMode m)
{
    v->mode = m;
    v->mode_ms = clock_wall_ms();
}

static void venue_set_error(Venue *v, const char *msg)
{
    free(v->last_error);
    v->last_error = msg ? strdup(msg) : NULL;
}

static void venue_halt_answer(Venue *v, int result, const char *msg)
{
    VenueWaiter *w = v->halt_waiters;
    v->halt_waiters = NULL;
    while (w) {
        VenueWaiter *n = w->next;
        if (w->fn)
            w->fn(result, msg, w->data);
        free(w);
        w = n;
    }
}

static void venue_on_retry_timer(uv_timer_t *t)
{
    venue_halt_attempt(t->data);
}

static void venue_halt_failed(Venue *v, const char *why)
{
    char cond[192];
    const ConfigVenue *cfg = venue__cfg(v);

    if (!(venue_sm_apply(&v->sm, VENUE_SM_HALT_FAILED, false) & VENUE_SM_DO_RETRY_HALT))
        return;

    v->attempts++;
    venue_set_error(v, why);
    snprintf(cond, sizeof(cond), "venue.halt:%s", v->core->cfg->cluster);
    if (v->attempts == (unsigned)cfg->escalate_after) {
        v->escalated = true;
        events_emit(v->core->events, SEV_CRITICAL, "venue.halt", cond, false, NULL,
                    "trading halt NOT confirmed after %u attempts (still retrying): %s", v->attempts, why);
    } else {
        events_emit(v->core->events, SEV_WARNING, "venue.halt", NULL, false, NULL,
                    "trading halt attempt %u not confirmed, retrying: %s", v->attempts, why);
    }
    uint64_t delay = cfg->retry_base_ms;
    for (unsigned i = 1; i < v->attempts && delay < cfg->retry_cap_ms; i++)
        delay *= 2;
    if (delay > cfg->retry_cap_ms)
        delay = cfg->retry_cap_ms;
    uv_timer_start(&v->retry_timer, venue_on_retry_timer, delay, 0);
}

static void venue_halt_confirmed(Venue *v)
{
    char cond[192];

    if (!(venue_sm_apply(&v->sm, VENUE_SM_HALT_CONFIRMED, true) & VENUE_SM_DO_ANSWER_HALT))
        return; /* a late answer to a halt no longer in flight */
    venue_set_error(v, NULL);
    snprintf(cond, sizeof(cond), "venue.halt:%s", v->core->cfg->cluster);
    /* Every confirmation resolves venue.halt, not only one this process escalated: the condition
     * outlives a restart (alerts keeps it), `escalated` does not. Alerts sends nothing for a
     * condition that is not open. */
    events_emit(v->core->events, v->escalated ? SEV_WARNING : SEV_INFO, "venue.halt", cond, true, NULL,
                "trading halted and confirmed by the platform after %u attempt%s (reason: %s)",
                v->attempts + 1, v->attempts ? "s" : "", v->reason ? v->reason : "-");
    v->escalated = false;
    status_changed(v->core->status);
    venue_halt_answer(v, 0, "halted");
}

static void venue_on_halt_status(int result, const json_t *answer, const char *text, const char *message, void *data)
{
    Venue *v = data;
    char why[512];

    if (result == DR_ECANCELED || v->closing)
        return;
    if (result < 0) {
        venue_set_mode(v, VENUE_MODE_UNKNOWN);
        snprintf(why, sizeof(why), "status check failed: %s", message);
        venue_halt_failed(v, why);
        return;
    }
    VenueMode m = venue_parse_mode(venue__cfg(v), answer, text);
    venue_set_mode(v, m);
    if (m == VENUE_MODE_HALTED) {
        venue_halt_confirmed(v);
        return;
    }
    snprintf(why, sizeof(why), "the platform reports mode '%s' after the halt", venue_mode_name(m));
    venue_halt_failed(v, why);
}

static void venue_on_halt_sent(int result, const json_t *answer, const char *text, const char *message, void *data)
{
    Venue *v = data;
    char why[512];

    (void)answer;
    (void)text;
    if (result == DR_ECANCELED || v->closing)
        return;
    if (result < 0) {
        snprintf(why, sizeof(why), "halt action failed: %s", message);
        venue_halt_failed(v, why);
        return;
    }
    int r = venue_action(v, VENUE_STATUS, NULL, venue_on_halt_status, v);
    if (r < 0) {
        snprintf(why, sizeof(why), "cannot run the status action: %s", err_str(r));
        venue_halt_failed(v, why);
    }
}

static void venue_halt_attempt(Venue *v)
{
    char why[256];

    if (v->closing || v->sm.state != VENUE_SM_HALTING)
        return;
    int r = venue_action(v, VENUE_HALT, NULL, venue_on_halt_sent, v);
    if (r < 0) {
        snprintf(why, sizeof(why), "cannot run the halt action: %s", err_str(r));
        venue_halt_failed(v, why);
    }
}

static void venue_on_halt_in_etcd(int result, const char *message, void *data)
{
    Venue *v = data;
    v->pending--;
    if (result < 0 && !v->closing)
        events_emit(v->core->events, SEV_CRITICAL, "venue.state", NULL, false, NULL,
                    "cannot write the trading halt state to etcd: %s", message);
    if (!v->closing)
        venue_halt_attempt(v); /* refused there too when this daemon no longer leads */
    venue_maybe_closed(v);
}

static void venue_after_halt_persisted(Venue *v, int result)
{
    (void)result; /* a failed write is a critical event already; halting is still the safe move */
    if (!leader_enabled(v->core->leader)) {
        venue_halt_attempt(v);
        return;
    }
    /* High availability: the halt state is in etcd (guarded by the leader key) before it goes out. */
    venue_state_to_etcd(v, venue_on_halt_in_etcd);
}

static void venue_halt_internal(Venue *v, const char *reason, const char *run, VenueDoneFn done, void *data,
                                bool new_request);

void venue_halt(Venue *v, const char *reason, const char *run, VenueDoneFn done, void *data)
{
    venue_halt_internal(v, reason, run, done, data, true);
}

/* Hold durably, then send the halt (write ahead: the halted state is on disk before it goes out). */
static void venue_send_halt(Venue *v, const char *why)
{
    v->attempts = 0;
    v->escalated = false;
    events_emit(v->core->events, SEV_CRITICAL, "venue.halt", NULL, false, NULL, "halting trading%s: %s", why,
                v->reason ? v->reason : "-");
    venue_persist(v, venue_after_halt_persisted);
}

/* new_request: a fresh reason to stop (detector, operator, scenario), after which trading may
 * resume only once a reconcile has passed; false for re-assertions of a halt already held. */
static void venue_halt_internal(Venue *v, const char *reason, const char *run, VenueDoneFn done, void *data,
                                bool new_request)
{
    if (!venue_enabled(v)) {
        if (done)
            done(-ENOTSUP, "no venue is configured: the daemon cannot halt trading", data);
        return;
    }
    if (!leader_acting(v->core->leader)) {
        /* a follower neither halts nor writes the shared halt state: the leader does */
        char why[256];
        leader_refusal(v->core->leader, why, sizeof(why));
        log_notice("venue", "halt not sent (%s): %s", why, reason ? reason : "-");
        if (done)
            done(DR_ENOTLEADER, why, data);
        return;
    }
    if (new_request)
        v->requested_ms = clock_wall_ms();
    unsigned does = venue_sm_apply(&v->sm, VENUE_SM_HALT, v->mode == VENUE_MODE_HALTED);
    if (does & VENUE_SM_DO_ANSWER_HALT) {
        /* Held, idle and confirmed: nothing to send (the status poll catches drift); the newer
         * request still needs its reconcile, so its time is made durable. */
        if (new_request)
            venue_persist(v, NULL);
        if (done)
            done(0, "halted", data);
        return;
    }
    if (does & VENUE_SM_DO_QUEUE_HALT) {
        VenueWaiter *w = calloc(1, sizeof(*w));
        if (w) {
            w->fn = done;
            w->data = data;
            w->next = v->halt_waiters;
            v->halt_waiters = w;
        } else if (done) {
            done(-ENOMEM, "out of memory; the halt goes on", data);
        }
    }
    if (!(does & VENUE_SM_DO_HOLD))
        return; /* joins the halt under way */
    if (!v->halted) {
        v->since_ms = clock_wall_ms();
        free(v->reason);
        free(v->run);
        v->reason = strdup(reason && reason[0] ? reason : "unspecified");
        v->run = run ? strdup(run) : NULL;
    }
    v->halted = true;
    if (does & VENUE_SM_DO_SEND_HALT) {
        venue_send_halt(v, "");
        return;
    }
    /* A resume is in flight: the halt is held on disk now and goes out as soon as the resume's
     * answer is in, whatever it is (venue_resume_finish). */
    events_emit(v->core->events, SEV_CRITICAL, "venue.halt", NULL, false, NULL,
                "halt requested while a resume is in flight: held now, sent once the resume is answered: %s",
                v->reason ? v->reason : "-");
    venue_persist(v, NULL);
}

/* ---- resume ---- */

typedef struct VenueResume {
    Venue *v;
    bool shadow;
    char *force_reason; /* a forced resume (no passing reconcile): paged once it happened */
    VenueDoneFn done;
    void *data;
} VenueResume;

/* The resume's answer is in (confirmed: the platform shows the mode asked for). The state machine
 * says what follows; a halt requested meanwhile goes out first, then the resume is answered. */
static void venue_resume_finish(VenueResume *rs, bool confirmed, int result, const char *msg)
{
    Venue *v = rs->v;
    unsigned does = venue_sm_apply(&v->sm, confirmed ? VENUE_SM_RESUME_CONFIRMED : VENUE_SM_RESUME_FAILED, false);
    const char *mode = venue_mode_name(v->mode);

    if (does & VENUE_SM_DO_SEND_HALT)
        venue_send_halt(v, " (requested while a resume was in flight)");
    if (does & VENUE_SM_DO_RELEASE) {
        v->halted = false;
        venue_persist(v, NULL);
        /* details.mode: the scenario runner closes a failed run's condition when trading is live again */
        json_t *det = json_pack("{s:s,s:b}", "mode", mode, "forced", rs->force_reason != NULL);
        if (rs->force_reason)
            events_emit(v->core->events, SEV_CRITICAL, "venue.resume", NULL, false, det,
                        "trading resumed WITHOUT a passing reconcile (%s mode), forced by an operator: %s", mode,
                        rs->force_reason);
        else
            events_emit(v->core->events, SEV_INFO, "venue.resume", NULL, false, det, "trading resumed in %s mode", mode);
        json_decref(det);
        status_changed(v->core->status);
    }
    if (does & VENUE_SM_DO_RESUME_OK) {
        if (rs->done)
            rs->done(0, mode, rs->data);
    } else if (does & VENUE_SM_DO_RESUME_OVERRULED) {
        if (rs->done)
            rs->done(DR_ECANCELED, "a halt was requested while resuming; trading stays halted", rs->data);
    } else {
        events_emit(v->core->events, rs->force_reason ? SEV_ERROR : SEV_WARNING, "venue.resume", NULL, false, NULL,
                    "%sresume to %s failed, trading stays %s: %s", rs->force_reason ? "forced " : "",
                    rs->shadow ? "shadow" : "live", v->halted ? "halted" : venue_mode_name(v->mode), msg);
        if (rs->done)
            rs->done(result < 0 ? result : DR_ESTATE, msg, rs->data);
    }
    free(rs->force_reason);
    free(rs);
}

static void venue_on_resume_status(int result, const json_t *answer, const char *text, const char *message, void *data)
{
    VenueResume *rs = data;
    Venue *v = rs->v;
    char msg[512];

    if (result < 0) {
        snprintf(msg, sizeof(msg), "resume sent but the status check failed: %s", message);
        venue_resume_finish(rs, false, result, msg);
        return;
    }
    VenueMode m = venue_parse_mode(venue__cfg(v), answer, text);
    venue_set_mode(v, m);
    VenueMode want = rs->shadow ? VENUE_MODE_SHADOW : VENUE_MODE_LIVE;
    if (m != want) {
        snprintf(msg, sizeof(msg), "the platform reports mode '%s', not '%s'", venue_mode_name(m), venue_mode_name(want));
        venue_resume_finish(rs, false, DR_ESTATE, msg);
        return;
    }
    venue_resume_finish(rs, true, 0, NULL);
}

static void venue_on_resume_sent(int result, const json_t *answer, const char *text, const char *message, void *data)
{
    VenueResume *rs = data;
    char msg[512];

    (void)answer;
    (void)text;
    if (result < 0) {
        snprintf(msg, sizeof(msg), "resume action failed: %s", message);
        venue_resume_finish(rs, false, result, msg);
        return;
    }
    int r = venue_action(rs->v, VENUE_STATUS, NULL, venue_on_resume_status, rs);
    if (r < 0)
        venue_resume_finish(rs, false, r, "cannot run the status action");
}

void venue_note_reconciled(Venue *v, int64_t when_ms)
{
    v->reconciled_ms = when_ms;
    if (v->halted)
        venue_persist(v, NULL);
}

void venue_resume(Venue *v, bool shadow, VenueDoneFn done, void *data)
{
    venue_resume_opts(v, shadow, false, NULL, done, data);
}

void venue_resume_opts(Venue *v, bool shadow, bool force, const char *force_reason, VenueDoneFn done, void *data)
{
    char why[512] = "";
    VenueResume *rs;

    if (!venue_enabled(v)) {
        done(-ENOTSUP, "no venue is configured", data);
        return;
    }
    if (venue_sm_halt_pending(&v->sm)) {
        done(DR_EBUSY, "a halt is in progress; trading stays halted until it is confirmed", data);
        return;
    }
    if (venue_sm_busy(&v->sm)) {
        done(DR_EBUSY, "a resume is already in progress", data);
        return;
    }
    if (v->guard && !v->guard(v->guard_data, why, sizeof(why))) {
        done(DR_ESTATE, why, data);
        return;
    }
    /* Fail closed: after a halt, trading resumes only once a reconcile has passed. A forced resume
     * is paged once the platform confirms it (venue_resume_finish), not before. */
    bool forced = false;
    if (v->halted && v->reconciled_ms <= v->requested_ms) {
        if (!force) {
            done(DR_ESTATE,
                 "trading stays halted until a reconcile passes: run 'drctl reconcile' (or, as a last resort, "
                 "'drctl resume --force --reason TEXT', which is paged)",
                 data);
            return;
        }
        forced = true;
    }
    VenueActionId id = shadow ? VENUE_SHADOW : VENUE_RESUME;
    if (venue__cfg(v)->actions[id].kind == VENUE_ACTION_NONE) {
        done(-ENOTSUP, shadow ? "no 'shadow' action is configured" : "no 'resume' action is configured", data);
        return;
    }
    rs = calloc(1, sizeof(*rs));
    if (!rs) {
        done(-ENOMEM, "out of memory", data);
        return;
    }
    *rs = (VenueResume){.v = v, .shadow = shadow, .done = done, .data = data};
    if (forced && !(rs->force_reason = strdup(force_reason ? force_reason : "no reason given"))) {
        free(rs);
        done(-ENOMEM, "out of memory", data);
        return;
    }
    venue_sm_apply(&v->sm, VENUE_SM_RESUME, v->mode == VENUE_MODE_HALTED); /* checked idle above: sends */
    int r = venue_action(v, id, NULL, venue_on_resume_sent, rs);
    if (r < 0)
        venue_resume_finish(rs, false, r, "cannot run the resume action");
}

/* ---- status poll ---- */

static void venue_on_poll(int result, const json_t *answer, const char *text, const char *message, void *data)
{
    Venue *v = data;
    Component *c = status_component(v->core->status, "venue");
    json_t *detail;

    v->status_busy = false;
    if (result == DR_ECANCELED || v->closing)
        return;
    if (result < 0) {
        venue_set_mode(v, VENUE_MODE_UNKNOWN);
        if (c)
            status_observe(c, false, 0, message, NULL, 2);
        return;
    }
    VenueMode m = venue_parse_mode(venue__cfg(v), answer, text);
    venue_set_mode(v, m);
    detail = json_pack("{s:s,s:b}", "mode", venue_mode_name(m), "halted", v->halted);
    if (c)
        status_observe(c, m != VENUE_MODE_UNKNOWN, 0, m == VENUE_MODE_UNKNOWN ? "the platform's mode is not recognised" : NULL,
                       detail, 2);
    json_decref(detail);
    /* Fail closed: a platform that trades while we hold it halted is halted again. */
    if (v->sm.state == VENUE_SM_HALTED && (m == VENUE_MODE_LIVE || m == VENUE_MODE_SHADOW)) {
        events_emit(v->core->events, SEV_ERROR, "venue.halt", NULL, false, NULL,
                    "the platform reports '%s' while trading is held halted; re-asserting the halt",
                    venue_mode_name(m));
        venue_halt_internal(v, v->reason, v->run, NULL, NULL, false);
    }
}

static void venue_on_status_timer(uv_timer_t *t)
{
    Venue *v = t->data;
    if (v->status_busy || venue_sm_busy(&v->sm))
        return;
    if (venue_action(v, VENUE_STATUS, NULL, venue_on_poll, v) == 0)
        v->status_busy = true;
}

json_t *venue_status_json(const Venue *v)
{
    json_t *j = json_pack("{s:b,s:b,s:s,s:I,s:s?,s:s?,s:I,s:b,s:i,s:s?}", "enabled", venue_enabled(v), "halted",
                          v->halted, "mode", venue_mode_name(v->mode), "mode_ms", (json_int_t)v->mode_ms, "reason",
                          v->reason, "run", v->run, "halted_since_ms", (json_int_t)(v->halted ? v->since_ms : 0),
                          "halting", venue_sm_halt_pending(&v->sm), "halt_attempts", (int)v->attempts, "last_error",
                          v->last_error);
    if (j) {
        json_object_set_new(j, "state", json_string(venue_sm_state_name(v->sm.state)));
        json_object_set_new(j, "reconciled_ms", json_integer(v->reconciled_ms));
        json_object_set_new(j, "reconcile_needed", json_boolean(v->halted && v->reconciled_ms <= v->requested_ms));
    }
    return j;
}

/* ---- life cycle ---- */

Venue *venue_new(Core *d)
{
    Venue *v = calloc(1, sizeof(*v));
    if (!v)
        return NULL;
    v->core = d;
    if (venue__register_commands(v) < 0) {
        free(v);
        return NULL;
    }
    uv_timer_init(d->loop, &v->retry_timer);
    uv_timer_init(d->loop, &v->status_timer);
    v->retry_timer.data = v->status_timer.data = v;
    v->pending = 2;
    return v;
}

int venue_apply_config(Venue *v, const Config *cfg)
{
    const ConfigVenue *vc = &cfg->venue;
    if (!vc->enabled || vc->status_interval_ms == 0) {
        uv_timer_stop(&v->status_timer);
        return 0;
    }
    uv_timer_start(&v->status_timer, venue_on_status_timer, vc->status_interval_ms, vc->status_interval_ms);
    return 0;
}

/* etcd's halt state (high availability, read at takeover) taken in: halted there means halted here,
 * whatever the shared halt.json says (it may be stale, or lost). etcd_r < 0: not readable (fail
 * closed: halted). */
static void venue_take_etcd_state(Venue *v, int etcd_r, const char *etcd)
{
    json_t *j = etcd ? json_loads(etcd, 0, NULL) : NULL;
    bool halted = etcd_r < 0 || (etcd && (!json_is_object(j) || !json_is_false(json_object_get(j, "halted"))));
    if (halted && !v->halted) {
        const char *reason = json_string_value(json_object_get(j, "reason"));
        const char *run = json_string_value(json_object_get(j, "run"));
        char why[600];
        snprintf(why, sizeof(why), "%s%s", etcd_r < 0 ? "the halt state in etcd could not be read at takeover"
                                                      : "halted in etcd",
                 reason ? "" : " (no reason recorded)");
        log_notice("venue", "the halt state in etcd says halted, the shared halt.json does not: staying halted (%s)",
                   reason ? reason : why);
        free(v->reason);
        free(v->run);
        v->reason = strdup(reason ? reason : why);
        v->run = run ? strdup(run) : NULL;
        v->since_ms = (int64_t)json_integer_value(json_object_get(j, "since_ms"));
        v->requested_ms = v->since_ms ? v->since_ms : clock_wall_ms();
        v->reconciled_ms = 0;
        v->halted = true;
    }
    json_decref(j);
}

/* The halt state read (r: atomicfile_read_all's result, data owned), taken in; with etcd's (a new
 * leader: etcd_r its read's result, etcd its value or NULL) when from_etcd. */
static int venue_take_state(Venue *v, const char *path, int r, char *data, size_t len, bool from_etcd, int etcd_r,
                            const char *etcd)
{
    json_error_t jerr;

    if (r == -ENOENT && !from_etcd)
        return 0;
    if (r == -ENOENT) {
        ;
    } else if (r < 0) {
        log_error("venue", "cannot read the halt state '%s': %s; assuming HALTED (fail closed)", path, err_str(r));
        v->halted = true;
    } else {
        json_t *j = json_loadb(data, len, 0, &jerr);
        if (!json_is_object(j)) {
            log_error("venue", "halt state '%s' is unreadable (%s); assuming HALTED (fail closed)", path, jerr.text);
            v->halted = true;
        } else {
            v->halted = json_is_true(json_object_get(j, "halted"));
            const char *reason = json_string_value(json_object_get(j, "reason"));
            const char *run = json_string_value(json_object_get(j, "run"));
            free(v->reason);
            free(v->run);
            v->reason = reason ? strdup(reason) : NULL;
            v->run = run ? strdup(run) : NULL;
            v->since_ms = (int64_t)json_integer_value(json_object_get(j, "since_ms"));
            v->requested_ms = (int64_t)json_integer_value(json_object_get(j, "requested_ms"));
            v->reconciled_ms = (int64_t)json_integer_value(json_object_get(j, "reconciled_ms"));
            if (v->halted && !json_object_get(j, "requested_ms"))
                v->requested_ms = v->since_ms ? v->since_ms : clock_wall_ms();
        }
        json_decref(j);
    }
    free(data);
    if (from_etcd)
        venue_take_etcd_state(v, etcd_r, etcd);
    if (!v->halted && r == -ENOENT)
        return 0;
    venue_sm_init(&v->sm, v->halted);
    if (v->halted) {
        log_notice("venue", "trading was halted before this start (%s); re-asserting the halt",
                   v->reason ? v->reason : "no reason recorded");
        if (!v->reason)
            v->reason = strdup("re-asserted at start");
        if (!v->since_ms)
            v->since_ms = clock_wall_ms();
        venue_halt_internal(v, v->reason, v->run, NULL, NULL, false); /* keeps reason and since */
    }
    return 0;
}

int venue_start(Venue *v)
{
    char path[4096];
    char *data = NULL;
    size_t len = 0;

    snprintf(path, sizeof(path), "%s/halt.json", v->core->cfg->state_dir);
    int r = atomicfile_read_all(path, 64 * 1024, &data, &len);
    return venue_take_state(v, path, r, data, len, false, 0, NULL);
}

typedef struct VenueLoad {
    uv_work_t req;
    Venue *v;
    char path[4096];
    char *data;
    size_t len;
    int result;
} VenueLoad;

static void venue_load_work(uv_work_t *req)
{
    VenueLoad *L = req->data;
    L->result = atomicfile_read_all(L->path, 64 * 1024, &L->data, &L->len);
}

static void venue_load_etcd_done(int result, const char *value, const char *message, void *data)
{
    VenueLoad *L = data;
    Venue *v = L->v;
    v->pending--;
    if (result < 0 && result != DR_ECANCELED)
        log_error("venue", "cannot read the halt state from etcd at takeover: %s; assuming HALTED (fail closed)",
                  message);
    if (!v->closing)
        venue_take_state(v, L->path, L->result, L->data, L->len, true, result, value); /* frees data */
    else
        free(L->data);
    free(L);
    venue_maybe_closed(v);
}

static void venue_load_done(uv_work_t *req, int status)
{
    VenueLoad *L = req->data;
    Venue *v = L->v;
    v->pending--;
    if (status < 0 && L->result == 0)
        L->result = status;
    if (!v->closing && leader_enabled(v->core->leader)) {
        /* a new leader: the halt state in etcd too (written before every halt went out) */
        v->pending++;
        leader_get_state(v->core->leader, "halt", venue_load_etcd_done, L);
        return;
    }
    if (!v->closing)
        venue_take_state(v, L->path, L->result, L->data, L->len, false, 0, NULL); /* frees data */
    else
        free(L->data);
    free(L);
    venue_maybe_closed(v);
}

void venue_start_async(Venue *v)
{
    VenueLoad *L = calloc(1, sizeof(*L));
    if (!L) {
        /* fail closed: without the state, assume halted */
        venue_take_state(v, "halt.json", -ENOMEM, NULL, 0, false, 0, NULL);
        return;
    }
    L->v = v;
    L->req.data = L;
    snprintf(L->path, sizeof(L->path), "%s/halt.json", v->core->cfg->state_dir);
    v->pending++;
    if (uv_queue_work(v->core->loop, &L->req, venue_load_work, venue_load_done) < 0) {
        L->result = -ENOMEM;
        venue_load_done(&L->req, 0);
    }
}

static void venue_on_timer_closed(uv_handle_t *h)
{
    Venue *v = h->data;
    v->pending--;
    venue_maybe_closed(v);
}

void venue_close(Venue *v, void (*closed_cb)(void *data), void *data)
{
    v->closing = true;
    v->closed_cb = closed_cb;
    v->closed_data = data;
    venue_halt_answer(v, DR_ECANCELED, "the daemon is stopping");
    /* httpc_cancel finishes a call synchronously (and unlinks it): restart the scan each time. */
    for (bool again = true; again;) {
        again = false;
        for (VenueCall *c = v->calls; c; c = c->next) {
            if (c->http_id) {
                uint64_t id = c->http_id;
                c->http_id = 0;
                httpc_cancel(v->core->http, id);
                again = true;
                break;
            }
        }
    }
    for (VenueCall *c = v->calls; c; c = c->next)
        if (c->child)
            child_kill(c->child, SIGKILL);
    uv_close((uv_handle_t *)&v->retry_timer, venue_on_timer_closed);
    uv_close((uv_handle_t *)&v->status_timer, venue_on_timer_closed);
}
