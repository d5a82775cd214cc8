/*
 * steps/hook: one operator hook or configured command run by a step (steps.h: scn_hook_run):
 * argv with the step's environment additions, stdout captured (bounded), a timeout, and the
 * outcome in words for the step's message. primary_failure's fence and repoint hooks and
 * point_in_time's pg_ctl and switch command run through it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "err.h"
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
                            .stdout_mode = CHILD_STDOUT_CAPTURE, .stdout_limit = 4096,
                            .timeout_ms = timeout_ms, .kill_grace_ms = 1000,
                            .on_exit = scn_hook_exited, .data = h};
        st->child = child_spawn(st->run->core->loop, &opt, &rc);
        if (st->child) {
            LogFields lf = {st->run->id, st->run->def->name, NULL};
            log_emit(LOG_INFO, "scenario", &lf, "running the %s '%s'", what, argv[0]);
            return;
        }
        free(h);
    }
    scn_finish(st, rc, "cannot run the %s '%s': %s", what, argv[0], err_str(rc));
}
