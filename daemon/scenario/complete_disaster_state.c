/*
 * complete_disaster_state: complete_disaster's restore_state_files step (see
 * complete_disaster_internal.h, docs/complete-disaster.md): the lost host's non-secret state files
 * that its uploader kept under <prefix>state/ (docs/offsite.md) listed from the loop
 * (ListObjectsV2, page by page), fetched one at a time (GET, lib/httpc), the catalog first, and
 * each written atomically into state_dir/history/ on the thread pool, so the recovered host knows
 * its history: the backups the lost host had (catalog.json: their manifests), the primary it
 * recorded, its audit log and head, its incident reports. Nothing of the recovery host's own
 * state is replaced (its own runs, audit log and recorded primary stay its own); the files are
 * rewritten whole on a second attempt.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "atomicfile.h"
#include "err.h"
#include "scenario/complete_disaster_internal.h"
#include "scenario/scn_internal.h"
#include "scenario/steps/steps.h"

#define CD_STATE_MAX (256u << 20) /* one state file (the audit log rotates at 64 MiB by default) */
#define CD_STATE_CATALOG "catalog.json"

/* The step's own state (st->node_op, freed with the step). */
typedef struct CdState {
    uv_work_t req;
    ScnStep *st;
    json_t *names;       /* what to fetch, the catalog first */
    json_t *restored;    /* what was written */
    char token[1100];    /* the listing's next page, "" on the first */
    char dir[4200];      /* state_dir/history */
    char name[300];      /* the file being written */
    uint8_t *buf;        /* its bytes (owned) */
    size_t len;
    uint64_t bytes;
    json_int_t catalog_backups; /* -1: no catalog, or not one */
    int result;
    char err[700];
} CdState;

static void cd_state_free(void *p)
{
    CdState *c = p;
    if (!c)
        return;
    json_decref(c->names);
    json_decref(c->restored);
    free(c->buf);
    free(c);
}

static uint64_t cd_state_timeout(const ScnStep *st)
{
    return ((const CdConfig *)st->run->cfg.data)->fetch_timeout_ms;
}

/* A name the uploader writes (no path, no hidden file). */
static bool cd_state_name_ok(const char *n)
{
    return n && n[0] && n[0] != '.' && strlen(n) < 256 && !strchr(n, '/');
}

static void cd_state_next(ScnStep *st);

static void cd_state_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    CdState *c = st->node_op;
    (void)run;
    if (status < 0)
        scn_finish(st, status, "cannot record the state files restored: %s", err_str(status));
    else if (!json_array_size(c->restored))
        scn_finish(st, 0, "the bucket holds no state files of the lost host (nothing under state/): the recovered "
                   "host starts without its history");
    else
        scn_finish(st, 0, "%zu state file(s) of the lost host restored into '%s' (%llu bytes; the catalog names %lld "
                   "backup(s))", json_array_size(c->restored), c->dir, (unsigned long long)c->bytes,
                   (long long)c->catalog_backups);
}

static void cd_state_end(ScnStep *st)
{
    CdState *c = st->node_op;
    json_t *v = json_pack("{s:s,s:O,s:I,s:I}", "directory", c->dir, "files", c->restored, "bytes",
                          (json_int_t)c->bytes, "catalog_backups", c->catalog_backups);
    if (!v) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    scn_context_set(st->run, "state", v, cd_state_recorded, st);
}

/* ---- the thread pool: one file written ---- */

static void cd_state_write_work(uv_work_t *req)
{
    CdState *c = req->data;
    char path[4600];
    c->result = 0;
    if (mkdir(c->dir, 0700) < 0 && errno != EEXIST) {
        c->result = -errno;
        snprintf(c->err, sizeof(c->err), "cannot make '%.500s': %s", c->dir, strerror(errno));
        return;
    }
    snprintf(path, sizeof(path), "%s/%s", c->dir, c->name);
    int r = atomicfile_write(path, c->buf, c->len, 0600);
    if (r < 0) {
        c->result = r;
        snprintf(c->err, sizeof(c->err), "cannot write '%.500s': %s", path, strerror(-r));
    }
}

static void cd_state_written(uv_work_t *req, int status)
{
    CdState *c = req->data;
    ScnStep *st = c->st;
    free(c->buf);
    c->buf = NULL;
    if (status < 0 && c->result == 0)
        c->result = status;
    if (st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    if (c->result < 0) {
        scn_finish(st, c->result, "%s", c->err);
        return;
    }
    c->bytes += c->len;
    json_array_append_new(c->restored, json_string(c->name));
    st->idx++;
    cd_state_next(st);
}

/* ---- the loop: the listing, then one GET at a time ---- */

static void cd_state_got(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    ScnStep *st = data;
    CdState *c = st->node_op;
    st->http_id = 0;
    if (err == DR_ECANCELED || st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    if (err == -ENOENT) { /* gone since the listing (the lost host's retention cannot remove state files) */
        st->idx++;
        cd_state_next(st);
        return;
    }
    if (err != 0) {
        scn_finish(st, err, "%s", errmsg);
        return;
    }
    if (!strcmp(c->name, CD_STATE_CATALOG)) {
        json_t *cat = json_loadb(resp->body, resp->body_len, 0, NULL);
        json_t *b = json_object_get(cat, "backups");
        c->catalog_backups = json_is_array(b) ? (json_int_t)json_array_size(b) : -1;
        json_decref(cat);
    }
    if (!(c->buf = malloc(resp->body_len ? resp->body_len : 1))) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    memcpy(c->buf, resp->body, resp->body_len);
    c->len = resp->body_len;
    c->req.data = c;
    int r = uv_queue_work(st->run->core->loop, &c->req, cd_state_write_work, cd_state_written);
    if (r < 0)
        scn_finish(st, r, "cannot queue work on the thread pool: %s", err_str(r));
}

static void cd_state_next(ScnStep *st)
{
    CdState *c = st->node_op;
    char msg[600];
    const char *name = json_string_value(json_array_get(c->names, st->idx));
    if (!name) {
        cd_state_end(st);
        return;
    }
    snprintf(c->name, sizeof(c->name), "%s", name);
    int r = cd__get_state(st->run->core, cd_state_timeout(st), name, CD_STATE_MAX, cd_state_got, st, &st->http_id,
                          msg, sizeof(msg));
    if (r < 0)
        scn_finish(st, r, "%s", msg);
}

static int cd_state_name_cmp(const void *a, const void *b)
{
    const char *x = json_string_value(*(json_t *const *)a), *y = json_string_value(*(json_t *const *)b);
    bool cx = !strcmp(x, CD_STATE_CATALOG), cy = !strcmp(y, CD_STATE_CATALOG);
    return cx != cy ? (cx ? -1 : 1) : strcmp(x, y);
}

static void cd_state_listed(int err, const HttpResponse *resp, const char *errmsg, void *data);

static void cd_state_list(ScnStep *st)
{
    CdState *c = st->node_op;
    char msg[600];
    int r = cd__list_page(st->run->core, cd_state_timeout(st), "state", c->token, cd_state_listed, st, &st->http_id,
                          msg, sizeof(msg));
    if (r < 0)
        scn_finish(st, r, "%s", msg);
}

static void cd_state_listed(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    ScnStep *st = data;
    CdState *c = st->node_op;
    json_t *all = NULL;
    st->http_id = 0;
    if (err == DR_ECANCELED || st->cancelled || fsm_call_cancelled(st->call)) {
        scn_cancelled(st);
        return;
    }
    if (err != 0) {
        scn_finish(st, err, "cannot list the bucket's state files: %s", errmsg && errmsg[0] ? errmsg : err_str(err));
        return;
    }
    if (!(all = json_array()) || !cd__list_names(st->run->core, resp, "state", all, c->token, sizeof(c->token))) {
        json_decref(all);
        scn_finish(st, DR_EHTTP, "cannot list the bucket's state files: S3 answered %ld", resp->status);
        return;
    }
    size_t i;
    json_t *n;
    json_array_foreach(all, i, n) {
        if (cd_state_name_ok(json_string_value(n)))
            json_array_append(c->names, n);
    }
    json_decref(all);
    if (c->token[0]) {
        cd_state_list(st); /* the next page */
        return;
    }
    size_t k = json_array_size(c->names);
    json_t **v = calloc(k + 1, sizeof(*v));
    if (!v) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    for (i = 0; i < k; i++)
        v[i] = json_incref(json_array_get(c->names, i));
    qsort(v, k, sizeof(*v), cd_state_name_cmp);
    json_array_clear(c->names);
    for (i = 0; i < k; i++)
        json_array_append_new(c->names, v[i]);
    free(v);
    st->idx = 0;
    cd_state_next(st);
}

void cd__step_restore_state(FsmCall *call, void *ctx, FsmDone done)
{
    ScnStep *st = scn_step_new(call, ctx, done, NULL);
    if (!st)
        return;
    CdState *c = calloc(1, sizeof(*c));
    if (!c || !(c->names = json_array()) || !(c->restored = json_array())) {
        cd_state_free(c);
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    c->st = st;
    c->catalog_backups = -1;
    snprintf(c->dir, sizeof(c->dir), "%s/history", st->run->core->cfg->state_dir);
    st->node_op = c;
    st->node_op_free = cd_state_free;
    cd_state_list(st);
}

void cd__plan_restore_state(FsmCall *call, void *ctx, FsmDone done)
{
    ScnRun *run = ctx;
    char msg[4400];
    snprintf(msg, sizeof(msg), "would fetch the lost host's state files from the bucket (state/: the catalog first, "
             "primary.json, the audit log, the incident reports) into '%s/history'", run->core->cfg->state_dir);
    done(call, 0, msg);
}
