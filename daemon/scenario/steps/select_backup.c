/*
 * steps/select_backup: select_backup, the newest verified backup of the catalog chosen as the
 * restore point and recorded in the run's context ("backup"), and the RPO it gives. A scenario step.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "cap/backup/backup.h"
#include "err.h"
#include "scenario/steps/steps.h"

static json_t *scn_pick_backup(ScnRun *run, char *why, size_t n)
{
    bool scanned = false;
    json_t *m = backups_newest_verified(run->caps->backups, &scanned);
    if (!run->bcfg.enabled) {
        snprintf(why, n, "backups are not configured (no 'backup' section)");
        json_decref(m);
        return NULL;
    }
    if (!m) {
        snprintf(why, n, scanned ? "no verified backup in the catalog" : "the backup catalog is not loaded yet");
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
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    char why[256];
    if (!st)
        return;
    json_t *b = scn_pick_backup(st->run, why, sizeof(why));
    if (!b) {
        scn_finish(st, -ENOENT, "%s", why);
        return;
    }
    scn_context_set(st->run, "backup", b, select_recorded, st);
}

void scn_plan_select_backup(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char why[256], msg[600];
    json_t *b = scn_pick_backup(run, why, sizeof(why));
    if (!b) {
        done(call, -ENOENT, why);
        return;
    }
    snprintf(msg, sizeof(msg), "would restore backup '%s' (taken at %s, verified)",
             json_string_value(json_object_get(b, "name")), json_string_value(json_object_get(b, "started_at")));
    json_object_set_new(run->ctx, "backup", b);
    done(call, 0, msg);
}

int64_t scn_backup_restore_point_ms(const ScnRun *run)
{
    const json_t *backup = json_object_get(run->ctx, "backup");
    return (int64_t)json_integer_value(json_object_get(backup, "started_ms"));
}
