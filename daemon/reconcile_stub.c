/*
 * reconcile_stub: TEMPORARY stand-in for daemon/reconcile.c (built by another engineer), only so
 * that the scenario branch links. THE LEAD DROPS THIS FILE ON MERGE.
 *
 * Answers asynchronously (through the thread pool) with a report whose ready_to_trade is true,
 * unless the environment variable DRSUP_STUB_RECONCILE_FAIL is set (then DR_ESTATE and false).
 */
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "daemon.h"
#include "err.h"
#include "reconcile.h"

typedef struct StubReconcile {
    uv_work_t req;
    ReconcileDoneFn cb;
    void *data;
    int64_t since_ms;
    char run[128];
} StubReconcile;

static void reconcile_stub_work(uv_work_t *req)
{
    (void)req;
}

static void reconcile_stub_done(uv_work_t *req, int status)
{
    StubReconcile *r = req->data;
    bool fail = getenv("DRSUP_STUB_RECONCILE_FAIL") != NULL;
    (void)status;
    json_t *rep = json_pack("{s:b,s:b,s:I,s:s,s:[{s:s,s:s}]}", "stub", 1, "ready_to_trade", !fail, "since_ms",
                            (json_int_t)r->since_ms, "run", r->run, "checks", "name", "stub", "result",
                            fail ? "FAIL" : "PASS");
    r->cb(fail ? DR_ESTATE : 0, rep, r->data);
    free(r);
}

int reconcile_start(Daemon *d, const char *conninfo, int64_t since_ms, const char *run_id, ReconcileDoneFn cb, void *data)
{
    StubReconcile *r = calloc(1, sizeof(*r));
    (void)conninfo;
    if (!r)
        return -ENOMEM;
    r->cb = cb;
    r->data = data;
    r->since_ms = since_ms;
    snprintf(r->run, sizeof(r->run), "%s", run_id ? run_id : "");
    r->req.data = r;
    int rc = uv_queue_work(d->loop, &r->req, reconcile_stub_work, reconcile_stub_done);
    if (rc < 0)
        free(r);
    return rc;
}
