/*
 * steps/hook: one configured action of a step, run to its confirming outcome: a hook command
 * (argv, no shell; lib/child, exit status 0 confirms) or an HTTP request (lib/httpc, a 2xx answer
 * confirms). primary_failure's fence and repoint hooks, app_crash's out-of-band halt and
 * platform restart, and point_in_time's pg_ctl and switch command go through it. Never blocks the loop; a cancelled step (timeout, abort,
 * shutdown) kills the child or cancels the request, and the step ends cancelled.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "child.h"
#include "err.h"
#include "httpc.h"
#include "log.h"
#include "scenario/steps/steps.h"

typedef struct ScnHook {
    ScnStep *st;
    ScnHookDone then;
} ScnHook;

static void scn_hook_exited(ChildProc *c, int64_t status, int sig, void *data)
{
    ScnHook *h = data;
    ScnStep *st = h->st;
    ScnHookDone then = h->then;
    char how[320];

    free(h);
    bool ok = status == 0 && sig == 0 && !child_timed_out(c);
    child_describe_outcome(c, status, sig, 200, how, sizeof(how));
    size_t n = 0;
    const char *out = child_stdout(c, &n);
    free(st->hook_stdout);
    st->hook_stdout = out ? strndup(out, n) : NULL; /* for a step that keeps it (security_breach's evidence) */
    st->child = NULL;
    child_free(c);
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    then(st, ok, status, how);
}

void scn_hook_run(ScnStep *st, const char *what, const char *const *argv, const char *const *env, uint64_t timeout_ms,
                  ScnHookDone then)
{
    ScnHook *h = calloc(1, sizeof(*h));
    int rc = -ENOMEM;

    if (h) {
        h->st = st;
        h->then = then;
        ChildOptions opt = {.argv = argv, .env = env, .stdin_mode = CHILD_STDIN_NULL,
                            .stdout_mode = CHILD_STDOUT_CAPTURE, .stdout_limit = 4096, .timeout_ms = timeout_ms,
                            .kill_grace_ms = 1000, .on_exit = scn_hook_exited, .data = h};
        st->child = child_spawn(st->run->core->loop, &opt, &rc);
        if (st->child) {
            LogFields lf = {st->run->id, st->run->def->name, NULL};
            log_emit(LOG_INFO, "scenario", &lf, "running the %s hook '%s'", what, argv[0]);
            return;
        }
        free(h);
    }
    scn_finish(st, rc, "cannot run the %s hook '%s': %s", what, argv[0], err_str(rc));
}

static void scn_hook_http_done(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    ScnHook *h = data;
    ScnStep *st = h->st;
    ScnHookDone then = h->then;
    char how[320];

    free(h);
    st->http_id = 0;
    if (err == DR_ECANCELED || st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    bool ok = err == 0 && resp->status >= 200 && resp->status < 300;
    if (err == 0)
        snprintf(how, sizeof(how), "answered HTTP %ld", resp->status);
    else
        snprintf(how, sizeof(how), "failed: %s", errmsg && errmsg[0] ? errmsg : err_str(err));
    then(st, ok, err == 0 ? (int64_t)resp->status : -1, how);
}

void scn_hook_http(ScnStep *st, const char *what, const char *method, const char *url, const char *body,
                   uint64_t timeout_ms, ScnHookDone then)
{
    ScnHook *h = calloc(1, sizeof(*h));
    const char *ct[1] = {"Content-Type: application/json"};
    int rc = -ENOMEM;

    if (h && st->run->core->http) {
        h->st = st;
        h->then = then;
        HttpRequest req = {.method = method ? method : "POST", .url = url, .headers = body ? ct : NULL,
                           .n_headers = body ? 1 : 0, .body = body, .body_len = body ? strlen(body) : 0,
                           .timeout_ms = timeout_ms, .connect_timeout_ms = timeout_ms, .max_response = 64 * 1024};
        rc = httpc_request(st->run->core->http, &req, scn_hook_http_done, h, &st->http_id);
        if (rc == 0) {
            LogFields lf = {st->run->id, st->run->def->name, NULL};
            char red[300];
            httpc_redact_url(url, red, sizeof(red));
            /* a GET is a poll (app_crash's health wait, every health_interval): debug only */
            log_emit(strcmp(req.method, "GET") ? LOG_INFO : LOG_DEBUG, "scenario", &lf, "sending the %s request %s %s",
                     what, req.method, red);
            return;
        }
    } else if (h) {
        rc = DR_ECANCELED;
    }
    free(h);
    scn_finish(st, rc, "cannot send the %s request: %s", what, err_str(rc));
}
