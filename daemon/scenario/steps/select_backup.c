/*
 * steps/select_backup: select_backup, the newest verified backup of the catalog chosen as the
 * restore point and recorded in the run's context ("backup"), and the RPO it gives; or, bounded,
 * the newest one verified before a time T (security_breach: nothing taken or checked after the
 * breach began). A scenario step.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cap/backup/backup.h"
#include "err.h"
#include "scenario/steps/steps.h"

/* before_ms 0: no bound. */
static json_t *scn_pick_backup(ScnRun *run, int64_t before_ms, char *why, size_t n)
{
    bool scanned = false;
    json_t *m = before_ms > 0 ? backups_newest_verified_before(run->caps->backups, before_ms, &scanned)
                              : backups_newest_verified(run->caps->backups, &scanned);
    if (!run->bcfg.enabled) {
        snprintf(why, n, "backups are not configured (no 'backup' section)");
        json_decref(m);
        return NULL;
    }
    if (!m) {
        if (!scanned)
            snprintf(why, n, "the backup catalog is not loaded yet");
        else if (before_ms > 0)
            snprintf(why, n, "no backup in the catalog finished and verified before the bound (%lld ms)",
                     (long long)before_ms);
        else
            snprintf(why, n, "no verified backup in the catalog");
        return NULL;
    }
    const char *file = json_string_value(json_object_get(m, "file"));
    int64_t started = backup_manifest_started(m);
    json_t *b = json_pack("{s:s,s:s?,s:I,s:s?,s:s?}", "name", file ? file : "?", "started_at",
                          json_string_value(json_object_get(m, "started_at")), "started_ms", (json_int_t)started * 1000,
                          "sha256", json_string_value(json_object_get(m, "sha256")), "database",
                          json_string_value(json_object_get(m, "database")));
    json_decref(m);
    return b;
}

static void select_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    json_t *b = json_object_get(run->ctx, "backup");
    if (status < 0)
        scn_finish(st, status, "cannot record the chosen backup: %s", err_str(status));
    else
        scn_finish(st, 0, "backup '%s' taken at %s is the restore point", json_string_value(json_object_get(b, "name")),
                   json_string_value(json_object_get(b, "started_at")));
}

void scn_step_select_backup(FsmCall *call, void *ctx, FsmDone done)
{
    scn_step_select_backup_before(call, ctx, 0, done);
}

void scn_step_select_backup_before(FsmCall *call, void *ctx, int64_t before_ms, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char why[256];
    if (!st)
        return;
    json_t *b = scn_pick_backup(st->run, before_ms, why, sizeof(why));
    if (!b) {
        scn_finish(st, -ENOENT, "%s", why);
        return;
    }
    scn_context_set(st->run, "backup", b, select_recorded, st);
}

void scn_plan_select_backup(FsmCall *call, void *ctx, FsmDone done)
{
    scn_plan_select_backup_before(call, ctx, 0, done);
}

void scn_plan_select_backup_before(FsmCall *call, void *ctx, int64_t before_ms, FsmDone done)
{
    ScnRun *run = ctx;
    char why[256], msg[600];
    json_t *b = scn_pick_backup(run, before_ms, why, sizeof(why));
    if (!b) {
        done(call, -ENOENT, why);
        return;
    }
    snprintf(msg, sizeof(msg), "would restore backup '%s' (taken at %s, verified%s)",
             json_string_value(json_object_get(b, "name")), json_string_value(json_object_get(b, "started_at")),
             before_ms > 0 ? " before the bound" : "");
    json_object_set_new(run->ctx, "backup", b);
    done(call, 0, msg);
}

int64_t scn_backup_restore_point_ms(const ScnRun *run)
{
    const json_t *backup = json_object_get(run->ctx, "backup");
    return (int64_t)json_integer_value(json_object_get(backup, "started_ms"));
}
