/*
 * complete_disaster_platform: complete_disaster's restore_platform_state step (see
 * complete_disaster_internal.h, docs/complete-disaster.md, "The platform's state files").
 *
 * Owns putting the platform's own state files (backup.state_files: its kill-switch state, its
 * order state) back on the recovery host: the chosen base backup's state tar, which its manifest
 * names (`state_files`) and the lost host's uploader put in the bucket before that manifest
 * (docs/offsite.md), fetched with one GET from the loop (lib/httpc), then on the thread pool
 * checked against the manifest's SHA-256, decrypted and authenticated with the key its header
 * names, and each member written atomically (lib/atomicfile, 0600) at its path when that path is
 * one of the recovery host's backup.state_files; any other member (a path outside them, a ../
 * climb, a link) is refused, never written, and named in the outcome and the event. A manifest
 * naming no tar: the step says so and the run goes on. A tar the bucket does not have: the step
 * fails (fail closed: trading halted, paged). The engine journals the step's start before it runs
 * (write ahead); a restart re-runs it whole and writes the same bytes again (idempotent).
 *
 * Trading stays halted whatever the restored kill-switch file says: the halt is the daemon's (the
 * venue's, persisted before it was sent), and only the operator's approval after the reconcile
 * resumes live trading.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "scenario/complete_disaster_internal.h"
#include "scenario/scn_internal.h"
#include "scenario/steps/steps.h"

#define CD_PLATFORM_TAR_MAX (1024u << 20) /* the encrypted tar: a bound on what one GET may bring */

static const json_t *cd_platform_named(const ScnRun *run)
{
    return json_object_get(json_object_get(json_object_get(run->ctx, "plan"), "base_backup"), "state_files");
}

static void cd_platform_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    const json_t *ps = json_object_get(run->ctx, "platform_state");
    if (status < 0) {
        scn_finish(st, status, "cannot record the platform's state files: %s", err_str(status));
        return;
    }
    if (!json_is_true(json_object_get(ps, "restored"))) {
        scn_finish(st, 0, "the base backup's manifest names no state tar (backup.state_files was empty on the lost "
                   "host): the platform's state files are not restored; trading stays halted");
        return;
    }
    size_t refused = json_array_size(json_object_get(ps, "refused"));
    if (refused) {
        char names[600] = "";
        size_t i, at = 0;
        json_t *e;
        json_array_foreach(json_object_get(ps, "refused"), i, e) {
            int n = snprintf(names + at, sizeof(names) - at, "%s'%s' (%s)", i ? ", " : "",
                             json_string_value(json_object_get(e, "path")), json_string_value(json_object_get(e, "why")));
            if (n < 0 || (size_t)n >= sizeof(names) - at)
                break;
            at += (size_t)n;
        }
        events_emit(run->core->events, SEV_WARNING, "scenario.step", NULL, false, NULL,
                    "run %s: %zu member(s) of state tar '%s' refused, not written: %s", run->id, refused,
                    json_string_value(json_object_get(ps, "file")), names);
    }
    scn_finish(st, 0, "%zu platform state file(s) from '%s' written at their configured paths (%lld bytes; %zu "
               "refused, %zu configured but not in the tar); trading stays halted whatever they say until the "
               "approval", json_array_size(json_object_get(ps, "files")), json_string_value(json_object_get(ps, "file")),
               (long long)json_integer_value(json_object_get(ps, "bytes")), refused,
               json_array_size(json_object_get(ps, "absent")));
}

static void cd_platform_written(ScnStep *st, CdWork *w)
{
    if (w->result < 0) {
        scn_finish(st, w->result, "%s", w->err[0] ? w->err : err_str(w->result));
        return;
    }
    json_t *v = json_pack("{s:b,s:b,s:s,s:O,s:O,s:O,s:O}", "in_manifest", 1, "restored", 1, "file", w->name, "files",
                          json_object_get(w->out, "files"), "bytes", json_object_get(w->out, "bytes"), "refused",
                          json_object_get(w->out, "refused"), "absent", json_object_get(w->out, "absent"));
    if (!v) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    scn_context_set(st->run, "platform_state", v, cd_platform_recorded, st);
}

static void cd_platform_got(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    ScnStep *st = data;
    st->http_id = 0;
    if (err == DR_ECANCELED || st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    CdWork *w = st->node_op;
    if (err == -ENOENT) {
        scn_finish(st, DR_ECORRUPT, "the base backup's manifest names state tar '%s' but the bucket has none: the "
                   "platform's state cannot be restored (trading stays halted)", w->name);
        return;
    }
    if (err != 0) {
        scn_finish(st, err, "%s", errmsg);
        return;
    }
    uint64_t want = (uint64_t)json_integer_value(json_object_get(cd_platform_named(st->run), "file_size_bytes"));
    if (resp->body_len != want) {
        scn_finish(st, DR_ECORRUPT, "the bucket answered %zu bytes for state tar '%s', its manifest says %llu",
                   resp->body_len, w->name, (unsigned long long)want);
        return;
    }
    free(w->buf);
    if (!(w->buf = malloc(resp->body_len ? resp->body_len : 1))) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    memcpy(w->buf, resp->body, resp->body_len);
    w->len = resp->body_len;
    json_decref(w->out);
    w->out = NULL;
    cd__queue(st, w, cd__platform_work, cd_platform_written);
}

void cd__step_restore_platform(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char msg[600];
    if (!st)
        return;
    const json_t *sf = cd_platform_named(st->run);
    if (!sf) {
        json_t *v = json_pack("{s:b,s:b,s:s}", "in_manifest", 0, "restored", 0, "why",
                              "the base backup's manifest names no state files");
        if (!v)
            scn_finish(st, -ENOMEM, "out of memory");
        else
            scn_context_set(st->run, "platform_state", v, cd_platform_recorded, st);
        return;
    }
    const char *name = json_string_value(json_object_get(sf, "file"));
    const char *sha = json_string_value(json_object_get(sf, "sha256"));
    json_int_t size = json_integer_value(json_object_get(sf, "file_size_bytes"));
    if (!name || !name[0] || name[0] == '.' || strchr(name, '/') || strlen(name) >= 256 || !sha || strlen(sha) != 64 ||
        size <= 0 || (uint64_t)size > CD_PLATFORM_TAR_MAX) {
        scn_finish(st, DR_ECORRUPT, "the base backup's manifest names its state tar without a plain name, a SHA-256 "
                   "or a size: not fetched (trading stays halted)");
        return;
    }
    CdWork *w = cd__work_of(st);
    if (!w)
        return;
    snprintf(w->name, sizeof(w->name), "%s", name);
    snprintf(w->want_sha, sizeof(w->want_sha), "%s", sha);
    int r = cd__get(st->run->core, ((const CdConfig *)st->run->cfg.data)->fetch_timeout_ms, false, name, 0, 0,
                    (size_t)size + 4096, cd_platform_got, st, &st->http_id, msg, sizeof(msg));
    if (r < 0)
        scn_finish(st, r, "%s", msg);
}

void cd__plan_restore_platform(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char msg[800];
    const char *name = json_string_value(json_object_get(cd_platform_named(run), "file"));
    if (name)
        snprintf(msg, sizeof(msg), "would fetch state tar '%s' from the bucket, verify and decrypt it, and write each "
                 "member at its path when it is one of backup.state_files (%zu configured; others refused); trading "
                 "stays halted", name, run->bcfg.n_state_files);
    else
        snprintf(msg, sizeof(msg), "the base backup's manifest names no state tar: nothing to restore");
    done(call, 0, msg);
}
