/*
 * breach: the signed inbound webhook and the tamper signals, sources of the security_breach
 * incident (see breach.h). Everything here runs on the loop; the HMAC of one small request is
 * microseconds of work and is done inline.
 */
#include "detect/breach.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "clock.h"
#include "err.h"
#include "log.h"
#include "webhooksig.h"

#define BREACH_HDR_TIMESTAMP "X-Drsup-Timestamp"
#define BREACH_HDR_NONCE "X-Drsup-Nonce"
#define BREACH_HDR_SIGNATURE "X-Drsup-Signature"

struct BreachSignals {
    Core *core;
    Detector *det;
    int sub_id;
    /* inbound webhook (copies of the configuration) */
    bool routed;
    char path[128];
    uint8_t *secret;
    size_t secret_len;
    int64_t window_s;
    WebhookNonces *nonces;
    /* tamper signals */
    bool tamper;
    uint64_t grace_ms;
    char cond[192];
    uv_timer_t defer;        /* reports a tamper signal outside the events callback */
    uv_timer_t grace;        /* the configuration file changed: reloaded before it fires? */
    bool config_changed;
    char pending_signal[32]; /* a tamper signal waiting for the defer timer ("" none) */
    char pending_reason[700];
    int64_t pending_ms;
    int open;                /* timers not closed yet */
    void (*closed_cb)(void *);
    void *closed_data;
    bool closing;
};

static void breach_free_secret(BreachSignals *b)
{
    if (b->secret) {
        explicit_bzero(b->secret, b->secret_len);
        free(b->secret);
    }
    b->secret = NULL;
    b->secret_len = 0;
}

/* Report the incident now (never from inside an events callback): the run, or why none started. */
static void breach_report(BreachSignals *b, const char *signal, const char *reason, int64_t ms, char *ret_run,
                          size_t run_len, int *ret_r)
{
    char run[96] = "";
    int r = detector_report_incident(b->det, INCIDENT_SECURITY_BREACH, reason, ms, run, sizeof(run));
    if (r == 0)
        log_notice("detector", "security_breach run '%s' started (signal %s)", run, signal);
    else if (r == -EINPROGRESS)
        log_notice("detector", "security_breach (signal %s) queued: it starts once unfinished runs are loaded", signal);
    else if (r == -EBUSY)
        log_notice("detector", "a scenario run is already active; the security_breach signal %s is recorded, no "
                   "second run", signal);
    else
        events_emit(b->core->events, SEV_CRITICAL, "detector.security_breach", b->cond, false, NULL,
                    "cannot start the security_breach recovery (signal %s): %s; operator needed", signal, err_str(r));
    if (ret_run)
        snprintf(ret_run, run_len, "%s", run);
    if (ret_r)
        *ret_r = r;
}

static void breach_on_defer(uv_timer_t *t)
{
    BreachSignals *b = t->data;
    char signal[32], reason[700];
    if (!b->pending_signal[0] || b->closing)
        return;
    snprintf(signal, sizeof(signal), "%s", b->pending_signal);
    snprintf(reason, sizeof(reason), "%s", b->pending_reason);
    b->pending_signal[0] = '\0';
    breach_report(b, signal, reason, b->pending_ms, NULL, 0, NULL);
}

/* A tamper signal: it pages; with detector.tamper it is the incident (reported from the loop). */
static void breach_tamper(BreachSignals *b, const char *signal, const char *what)
{
    if (!b->tamper) { /* the module's own event pages at its own severity */
        log_info("detector", "tamper signal %s (detector.tamper is off: no security_breach run): %s", signal, what);
        return;
    }
    json_t *d = json_pack("{s:s}", "signal", signal);
    events_emit(b->core->events, SEV_CRITICAL, "detector.security_breach", b->cond, false, d,
                "tamper signal %s: %s; starting the security_breach recovery", signal, what);
    json_decref(d);
    if (b->pending_signal[0])
        return; /* a second signal before the first was reported: the first one's run covers it */
    snprintf(b->pending_signal, sizeof(b->pending_signal), "%s", signal);
    snprintf(b->pending_reason, sizeof(b->pending_reason), "tamper signal %s: %s", signal, what);
    b->pending_ms = clock_wall_ms();
    uv_timer_start(&b->defer, breach_on_defer, 0, 0);
}

static void breach_on_grace(uv_timer_t *t)
{
    BreachSignals *b = t->data;
    char what[300];
    if (!b->config_changed || b->closing)
        return;
    snprintf(what, sizeof(what), "the configuration file changed and was not reloaded within %llu s",
             (unsigned long long)(b->grace_ms / 1000));
    breach_tamper(b, "config", what);
}

static void breach_on_event(const Event *ev, void *data)
{
    BreachSignals *b = data;
    if (b->closing || ev->resolved)
        return;
    if (!strcmp(ev->kind, "backup.verify") && ev->severity >= SEV_ERROR) {
        breach_tamper(b, "backup", ev->summary);
    } else if (!strcmp(ev->kind, "wal.gap") && strstr(ev->summary, "failed verification")) {
        breach_tamper(b, "wal", ev->summary);
    } else if (!strcmp(ev->kind, "control.socket") && ev->severity >= SEV_ERROR) {
        breach_tamper(b, "control_socket", ev->summary);
    } else if (!strcmp(ev->kind, "config.changed")) {
        if (!b->config_changed)
            uv_timer_start(&b->grace, breach_on_grace, b->grace_ms, 0);
        b->config_changed = true;
    } else if (!strcmp(ev->kind, "config.reload")) {
        b->config_changed = false;
        uv_timer_stop(&b->grace);
    }
}

/* ---- the inbound webhook ---- */

static int breach_refuse(BreachSignals *b, WebhookSigResult res, const char *why, char *resp, size_t n)
{
    int code = webhooksig_http_status(res);
    log_warning("webhook", "refused a security webhook request on '%s' (HTTP %d): %s", b->path, code, why);
    events_emit(b->core->events, SEV_WARNING, "webhook.refused", NULL, false, NULL,
                "refused a security webhook request (HTTP %d): %s", code, why);
    snprintf(resp, n, "refused: %s\n", why);
    return code;
}

static int breach_on_webhook(const MetricsPostRequest *req, char *resp, size_t n, void *data)
{
    BreachSignals *b = data;
    char ts[32] = "", nonce[WEBHOOKSIG_NONCE_MAX + 2] = "", sig[96] = "", why[256], reason[600], run[96];
    bool have_ts = metrics_request_header(req, BREACH_HDR_TIMESTAMP, ts, sizeof(ts));
    bool have_nonce = metrics_request_header(req, BREACH_HDR_NONCE, nonce, sizeof(nonce));
    bool have_sig = metrics_request_header(req, BREACH_HDR_SIGNATURE, sig, sizeof(sig));

    WebhookSigResult res = webhooksig_verify(b->secret, b->secret_len, have_ts ? ts : NULL, have_nonce ? nonce : NULL,
                                             req->body, req->body_len, have_sig ? sig : NULL,
                                             clock_wall_ms() / 1000, b->window_s, b->nonces, why, sizeof(why));
    if (res != WEBHOOKSIG_OK)
        return breach_refuse(b, res, why, resp, n);

    json_error_t jerr;
    json_t *body = req->body_len ? json_loadb((const char *)req->body, req->body_len, 0, &jerr) : json_object();
    if (!json_is_object(body)) {
        json_decref(body);
        return breach_refuse(b, WEBHOOKSIG_MALFORMED, "the body is not a JSON object", resp, n);
    }
    const char *r = json_string_value(json_object_get(body, "reason"));
    snprintf(reason, sizeof(reason), "signed webhook (nonce '%.64s'): %.400s", nonce, r && r[0] ? r : "-");
    json_decref(body);
    events_emit(b->core->events, SEV_CRITICAL, "detector.security_breach", b->cond, false, NULL,
                "security breach reported by the signed webhook: %s", reason);
    int rc = 0;
    breach_report(b, "webhook", reason, clock_wall_ms(), run, sizeof(run), &rc);
    if (rc == 0) {
        snprintf(resp, n, "accepted: security_breach run %s\n", run);
        return 202;
    }
    if (rc == -EINPROGRESS) {
        snprintf(resp, n, "accepted: the security_breach run starts once unfinished runs are loaded\n");
        return 202;
    }
    snprintf(resp, n, "%s\n", rc == -EBUSY ? "recorded: a recovery run is already active" : err_str(rc));
    return rc == -EBUSY ? 409 : 503;
}

/* ---- life cycle ---- */

BreachSignals *breach_signals_new(Core *core, Detector *det)
{
    BreachSignals *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->core = core;
    b->det = det;
    uv_timer_init(core->loop, &b->defer);
    uv_timer_init(core->loop, &b->grace);
    b->defer.data = b->grace.data = b;
    b->open = 2;
    b->sub_id = events_subscribe(core->events, breach_on_event, b);
    if (b->sub_id < 0)
        log_error("detector", "cannot listen for tamper signals: out of memory");
    return b;
}

int breach_signals_apply_config(BreachSignals *b, const Config *cfg)
{
    const ConfigInboundWebhook *w = &cfg->inbound_webhook;
    b->tamper = cfg->detector.tamper;
    b->grace_ms = cfg->detector.tamper_config_grace_ms;
    snprintf(b->cond, sizeof(b->cond), "detector.security_breach:%s", cfg->cluster ? cfg->cluster : "");
    if (b->routed) {
        metrics_route_remove(b->core->metrics, breach_on_webhook, b);
        b->routed = false;
    }
    breach_free_secret(b);
    if (!w->enabled || !b->core->metrics)
        return 0;
    if (!b->nonces && !(b->nonces = calloc(1, sizeof(*b->nonces))))
        return -ENOMEM;
    if (!(b->secret = malloc(w->secret_len)))
        return -ENOMEM;
    memcpy(b->secret, w->secret, w->secret_len);
    b->secret_len = w->secret_len;
    b->window_s = (int64_t)(w->window_ms / 1000);
    snprintf(b->path, sizeof(b->path), "%s", w->path);
    int r = metrics_route_post(b->core->metrics, b->path, breach_on_webhook, b);
    if (r < 0) {
        log_error("webhook", "cannot serve the security webhook at '%s': %s", b->path, err_str(r));
        return r;
    }
    b->routed = true;
    log_info("webhook", "the signed security webhook is served at POST %s on the metrics listener (window %lld s)",
             b->path, (long long)b->window_s);
    return 0;
}

static void breach_on_closed(uv_handle_t *h)
{
    BreachSignals *b = h->data;
    if (--b->open > 0)
        return;
    void (*cb)(void *) = b->closed_cb;
    void *data = b->closed_data;
    breach_free_secret(b);
    free(b->nonces);
    free(b);
    if (cb)
        cb(data);
}

void breach_signals_close(BreachSignals *b, void (*closed_cb)(void *data), void *data)
{
    b->closing = true;
    b->closed_cb = closed_cb;
    b->closed_data = data;
    if (b->routed)
        metrics_route_remove(b->core->metrics, breach_on_webhook, b);
    b->routed = false;
    if (b->sub_id > 0)
        events_unsubscribe(b->core->events, b->sub_id);
    b->sub_id = 0;
    uv_close((uv_handle_t *)&b->defer, breach_on_closed);
    uv_close((uv_handle_t *)&b->grace, breach_on_closed);
}
