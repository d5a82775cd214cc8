/*
 * complete_disaster_bucket: the off-site bucket as a recovery host reads it (see
 * complete_disaster_internal.h, docs/complete-disaster.md): one signed GET of an object or a range
 * of it (lib/s3req with repository.s3's credentials, lib/httpc from the loop), ListObjectsV2 of a
 * prefix page by page, and the plan: the newest verified base backup whose manifest is in the
 * bucket and the WAL after it, continuous, to the newest archived file (cd__plan_decide, pure).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cap/backup/backup.h"
#include "clock.h"
#include "err.h"
#include "s3req.h"
#include "scenario/complete_disaster_internal.h"
#include "walarchive.h"

#define CD_LIST_MAX (8u << 20) /* one ListObjectsV2 page (1000 keys) is far below */

/* ---- one request ---- */

static S3Target cd_target(const ConfigOffsite *o)
{
    S3Target t = {.endpoint = o->endpoint, .region = o->region, .bucket = o->bucket, .virtual_host = o->virtual_host,
                  .access_key = o->access_key, .secret_key = o->secret_key};
    return t;
}

static int cd_send(Core *core, uint64_t timeout_ms, const char *key, const SigV4Pair *query, size_t nq,
                   const char *range, size_t max, HttpDoneCb cb, void *data, uint64_t *http_id, char *msg,
                   size_t msglen)
{
    const ConfigOffsite *o = &core->cfg->offsite;
    char date[17];
    S3Built b;
    SigV4Pair extra[1] = {{"range", range ? range : ""}};
    if (!o->enabled) {
        snprintf(msg, msglen, "no repository.s3 section: there is no bucket to recover from");
        return DR_ECONFIG;
    }
    S3Target t = cd_target(o);
    s3req_amz_date(clock_wall_ms(), date);
    int r = s3req_build(&t, "GET", key, query, nq, S3REQ_EMPTY_SHA256, extra, range ? 1 : 0, date, &b);
    if (r < 0) {
        snprintf(msg, msglen, "cannot build the request for '%s': %s", key, err_str(r));
        return r;
    }
    HttpRequest req = {.method = "GET", .url = b.url, .headers = (const char *const *)b.headers,
                       .n_headers = b.n_headers, .timeout_ms = timeout_ms, .max_response = max};
    r = httpc_request(core->http, &req, cb, data, http_id);
    s3req_free(&b);
    if (r < 0)
        snprintf(msg, msglen, "cannot send the request for '%s': %s", key, err_str(r));
    return r;
}

typedef struct CdGet {
    CdGetFn done;
    void *data;
    char key[1100];
} CdGet;

static void cd_get_answer(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    CdGet *g = data;
    char code[128] = "", message[256] = "", why[1600];
    CdGetFn done = g->done;
    void *d = g->data;
    if (err == 0 && (resp->status < 200 || resp->status >= 300)) {
        s3req_xml_text(resp->body, resp->body_len, "Code", code, sizeof(code));
        s3req_xml_text(resp->body, resp->body_len, "Message", message, sizeof(message));
        snprintf(why, sizeof(why), "GET %s: S3 answered %ld %s%s%s", g->key, resp->status,
                 code[0] ? code : "(no error code)", message[0] ? ": " : "", message);
        free(g);
        done(resp->status == 404 ? -ENOENT : DR_EHTTP, resp, why, d);
        return;
    }
    if (err != 0) {
        snprintf(why, sizeof(why), "GET %s: %s", g->key, errmsg && errmsg[0] ? errmsg : err_str(err));
        free(g);
        done(err, resp, why, d);
        return;
    }
    free(g);
    done(0, resp, "", d);
}

static int cd_get_sub(Core *core, uint64_t timeout_ms, const char *sub, const char *name, uint64_t from,
                      uint64_t len, size_t max, CdGetFn done, void *data, uint64_t *http_id, char *msg, size_t msglen)
{
    const ConfigOffsite *o = &core->cfg->offsite;
    char range[64];
    CdGet *g = calloc(1, sizeof(*g));
    if (!g) {
        snprintf(msg, msglen, "out of memory");
        return -ENOMEM;
    }
    g->done = done;
    g->data = data;
    snprintf(g->key, sizeof(g->key), "%s%s/%s", o->prefix ? o->prefix : "", sub, name);
    snprintf(range, sizeof(range), "bytes=%llu-%llu", (unsigned long long)from, (unsigned long long)(from + len - 1));
    int r = cd_send(core, timeout_ms, g->key, NULL, 0, len ? range : NULL, max, cd_get_answer, g, http_id, msg, msglen);
    if (r < 0)
        free(g);
    return r;
}

int cd__get(Core *core, uint64_t timeout_ms, bool wal, const char *name, uint64_t from, uint64_t len, size_t max,
            CdGetFn done, void *data, uint64_t *http_id, char *msg, size_t msglen)
{
    return cd_get_sub(core, timeout_ms, wal ? "wal" : "backups", name, from, len, max, done, data, http_id, msg,
                      msglen);
}

int cd__get_state(Core *core, uint64_t timeout_ms, const char *name, size_t max, CdGetFn done, void *data,
                  uint64_t *http_id, char *msg, size_t msglen)
{
    return cd_get_sub(core, timeout_ms, "state", name, 0, 0, max, done, data, http_id, msg, msglen);
}

/* ---- listings ---- */

static void cd_list_keys(const HttpResponse *resp, const char *strip, json_t *out);

int cd__list_page(Core *core, uint64_t timeout_ms, const char *sub, const char *token, CdGetFn done, void *data,
                  uint64_t *http_id, char *msg, size_t msglen)
{
    const ConfigOffsite *o = &core->cfg->offsite;
    char prefix[1100];
    snprintf(prefix, sizeof(prefix), "%s%s/", o->prefix ? o->prefix : "", sub);
    SigV4Pair q[3] = {{"list-type", "2"}, {"prefix", prefix}, {"continuation-token", token}};
    return cd_send(core, timeout_ms, "", q, token[0] ? 3 : 2, NULL, CD_LIST_MAX, done, data, http_id, msg, msglen);
}

bool cd__list_names(const Core *core, const HttpResponse *resp, const char *sub, json_t *out, char *token, size_t n)
{
    const ConfigOffsite *o = &core->cfg->offsite;
    char strip[1100], trunc[16] = "";
    if (resp->status < 200 || resp->status >= 300 || s3req_is_error(resp->body, resp->body_len))
        return false;
    snprintf(strip, sizeof(strip), "%s%s/", o->prefix ? o->prefix : "", sub);
    cd_list_keys(resp, strip, out);
    s3req_xml_text(resp->body, resp->body_len, "IsTruncated", trunc, sizeof(trunc));
    token[0] = '\0';
    if (strcmp(trunc, "true") != 0 || s3req_xml_text(resp->body, resp->body_len, "NextContinuationToken", token, n) != 0)
        token[0] = '\0';
    return true;
}

/* ---- the plan ---- */

typedef enum { CDP_LIST_BACKUPS, CDP_MANIFEST, CDP_LIST_WAL } CdPlanPhase;

typedef struct CdPlan {
    Core *core;
    uint64_t seg_size, timeout_ms;
    CdPlanFn done;
    void *data;
    uint64_t *http_id;
    CdPlanPhase phase;
    char token[1100];        /* NextContinuationToken of the listing, "" on the first page */
    json_t *backups;         /* names under backups/ */
    json_t *wal;             /* names under wal/ */
    json_t *candidates;      /* base backups' manifest names, newest first */
    size_t next;             /* the candidate being read */
    json_t *manifest;        /* the chosen one */
} CdPlan;

static void cd_plan_free(CdPlan *p)
{
    json_decref(p->backups);
    json_decref(p->wal);
    json_decref(p->candidates);
    json_decref(p->manifest);
    free(p);
}

static void cd_plan_end(CdPlan *p, int status, json_t *plan, const char *err)
{
    *p->http_id = 0;
    p->done(status, plan, err, p->data);
    cd_plan_free(p);
}

static void cd_plan_list(CdPlan *p);
static void cd_plan_manifest(CdPlan *p);

/* The keys of one ListObjectsV2 page (their names after `strip`) appended to out. */
static void cd_list_keys(const HttpResponse *resp, const char *strip, json_t *out)
{
    const char *b = resp->body, *end = resp->body + resp->body_len;
    size_t sl = strlen(strip);
    char key[1100];
    while (b < end) {
        const char *at = strstr(b, "<Key>");
        if (!at || at >= end)
            break;
        if (s3req_xml_text(at, (size_t)(end - at), "Key", key, sizeof(key)) == 0 && !strncmp(key, strip, sl) &&
            key[sl] && !strchr(key + sl, '/'))
            json_array_append_new(out, json_string(key + sl));
        b = at + 5;
    }
}

static int cd_name_desc(const void *a, const void *b)
{
    return -strcmp(json_string_value(*(json_t *const *)a), json_string_value(*(json_t *const *)b));
}

static void cd_plan_listed(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    CdPlan *p = data;
    const ConfigOffsite *o = &p->core->cfg->offsite;
    char strip[1100], trunc[16] = "", why[900];
    *p->http_id = 0;
    if (err == 0 && (resp->status < 200 || resp->status >= 300 || s3req_is_error(resp->body, resp->body_len))) {
        char code[128] = "";
        s3req_xml_text(resp->body, resp->body_len, "Code", code, sizeof(code));
        snprintf(why, sizeof(why), "cannot list the bucket '%s': S3 answered %ld %s", o->bucket, resp->status,
                 code[0] ? code : "(no error code)");
        cd_plan_end(p, DR_EHTTP, NULL, why);
        return;
    }
    if (err != 0) {
        snprintf(why, sizeof(why), "cannot list the bucket '%s': %s", o->bucket, errmsg && errmsg[0] ? errmsg
                                                                                                     : err_str(err));
        cd_plan_end(p, err, NULL, why);
        return;
    }
    bool wal = p->phase == CDP_LIST_WAL;
    snprintf(strip, sizeof(strip), "%s%s/", o->prefix ? o->prefix : "", wal ? "wal" : "backups");
    cd_list_keys(resp, strip, wal ? p->wal : p->backups);
    s3req_xml_text(resp->body, resp->body_len, "IsTruncated", trunc, sizeof(trunc));
    p->token[0] = '\0';
    if (!strcmp(trunc, "true") &&
        s3req_xml_text(resp->body, resp->body_len, "NextContinuationToken", p->token, sizeof(p->token)) == 0) {
        cd_plan_list(p); /* the next page */
        return;
    }
    if (wal) {
        json_t *plan = cd__plan_decide(p->manifest, p->wal, p->seg_size);
        if (!plan) {
            cd_plan_end(p, -ENOMEM, NULL, "out of memory");
            return;
        }
        json_object_set_new(plan, "bucket", json_pack("{s:s,s:s,s:I,s:I}", "name", o->bucket, "prefix",
                                                      o->prefix ? o->prefix : "", "backups",
                                                      (json_int_t)json_array_size(p->backups), "wal",
                                                      (json_int_t)json_array_size(p->wal)));
        cd_plan_end(p, 0, plan, "");
        return;
    }
    /* the base backups' manifests, newest first (the names carry the time: <prefix>_backup_YYYYMMDD_HHMMSS) */
    size_t i;
    json_t *n;
    json_array_foreach(p->backups, i, n) {
        const char *s = json_string_value(n);
        size_t l = strlen(s), ml = strlen(BACKUP_MANIFEST_SUFFIX);
        if (l > ml && !strcmp(s + l - ml, BACKUP_MANIFEST_SUFFIX) && strstr(s, ".base.tar"))
            json_array_append(p->candidates, n);
    }
    json_t **v = calloc(json_array_size(p->candidates) + 1, sizeof(*v));
    if (!v) {
        cd_plan_end(p, -ENOMEM, NULL, "out of memory");
        return;
    }
    size_t k = 0;
    json_array_foreach(p->candidates, i, n)
        v[k++] = json_incref(n);
    qsort(v, k, sizeof(*v), cd_name_desc);
    json_array_clear(p->candidates);
    for (i = 0; i < k; i++)
        json_array_append_new(p->candidates, v[i]);
    free(v);
    p->phase = CDP_MANIFEST;
    p->next = 0;
    cd_plan_manifest(p);
}

static void cd_plan_got_manifest(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    CdPlan *p = data;
    *p->http_id = 0;
    if (err != 0) {
        cd_plan_end(p, err, NULL, errmsg);
        return;
    }
    json_error_t jerr;
    json_t *m = json_loadb(resp->body, resp->body_len, 0, &jerr);
    const char *kind = json_string_value(json_object_get(m, "kind"));
    const char *sha = json_string_value(json_object_get(m, "sha256"));
    const char *start = json_string_value(json_object_get(json_object_get(m, "wal"), "start_lsn"));
    if (json_is_object(m) && kind && !strcmp(kind, "physical") && backup_manifest_is_verified(m) && sha &&
        strlen(sha) == 64 && start && json_integer_value(json_object_get(m, "file_size_bytes")) > 0) {
        p->manifest = m;
        p->phase = CDP_LIST_WAL;
        p->token[0] = '\0';
        cd_plan_list(p);
        return;
    }
    json_decref(m); /* not a verified base backup's manifest: the next older one */
    p->next++;
    cd_plan_manifest(p);
}

static void cd_plan_manifest(CdPlan *p)
{
    char msg[600];
    const char *name = json_string_value(json_array_get(p->candidates, p->next));
    if (!name) { /* none: the plan says why (no WAL listing needed) */
        json_t *plan = cd__plan_decide(NULL, NULL, p->seg_size);
        if (plan)
            json_object_set_new(plan, "bucket", json_pack("{s:s,s:I}", "name", p->core->cfg->offsite.bucket,
                                                          "backups", (json_int_t)json_array_size(p->backups)));
        cd_plan_end(p, plan ? 0 : -ENOMEM, plan, plan ? "" : "out of memory");
        return;
    }
    int r = cd__get(p->core, p->timeout_ms, false, name, 0, 0, 64u << 20, cd_plan_got_manifest, p,
                    p->http_id, msg, sizeof(msg));
    if (r < 0)
        cd_plan_end(p, r, NULL, msg);
}

static int cd_plan_send_list(CdPlan *p, char *msg, size_t msglen)
{
    const ConfigOffsite *o = &p->core->cfg->offsite;
    char prefix[1100];
    snprintf(prefix, sizeof(prefix), "%s%s/", o->prefix ? o->prefix : "", p->phase == CDP_LIST_WAL ? "wal" : "backups");
    SigV4Pair q[3] = {{"list-type", "2"}, {"prefix", prefix}, {"continuation-token", p->token}};
    return cd_send(p->core, p->timeout_ms, "", q, p->token[0] ? 3 : 2, NULL, CD_LIST_MAX, cd_plan_listed, p,
                   p->http_id, msg, msglen);
}

static void cd_plan_list(CdPlan *p)
{
    char msg[600];
    int r = cd_plan_send_list(p, msg, sizeof(msg));
    if (r < 0)
        cd_plan_end(p, r, NULL, msg);
}

int cd__plan(Core *core, uint64_t seg_size, uint64_t timeout_ms, CdPlanFn done, void *data, uint64_t *http_id,
             char *msg, size_t msglen)
{
    if (!core->cfg->offsite.enabled) {
        snprintf(msg, msglen, "no repository.s3 section: there is no bucket to recover from");
        return DR_ECONFIG;
    }
    CdPlan *p = calloc(1, sizeof(*p));
    if (!p || !(p->backups = json_array()) || !(p->wal = json_array()) || !(p->candidates = json_array())) {
        if (p)
            cd_plan_free(p);
        snprintf(msg, msglen, "out of memory");
        return -ENOMEM;
    }
    p->core = core;
    p->seg_size = seg_size;
    p->timeout_ms = timeout_ms;
    p->done = done;
    p->data = data;
    p->http_id = http_id;
    p->phase = CDP_LIST_BACKUPS;
    int r = cd_plan_send_list(p, msg, msglen);
    if (r < 0)
        cd_plan_free(p);
    return r;
}

/* ---- the decision ---- */

typedef struct CdSeg {
    uint32_t tli;
    uint64_t segno;
    WalFileKind kind;
    const char *name;
} CdSeg;

static int cd_seg_cmp(const void *a, const void *b)
{
    const CdSeg *x = a, *y = b;
    if (x->segno != y->segno)
        return x->segno < y->segno ? -1 : 1;
    return x->tli < y->tli ? -1 : x->tli > y->tli;
}

json_t *cd__plan_decide(const json_t *manifest, const json_t *wal_names, uint64_t seg_size)
{
    json_t *plan = json_object();
    char why[700] = "", a[WAL_NAME_LEN + 1] = "", b[WAL_NAME_LEN + 1] = "";
    uint64_t start = 0, stop = 0;
    size_t i, n = 0, count = 0;
    json_t *v;
    if (!plan)
        return NULL;
    json_object_set_new(plan, "to_end", json_true());
    if (!manifest) {
        snprintf(why, sizeof(why), "the bucket holds no verified base backup (no manifest of a verified physical "
                 "backup under backups/): there is nothing to recover from");
        goto out;
    }
    const json_t *w = json_object_get(manifest, "wal");
    const char *slsn = json_string_value(json_object_get(w, "start_lsn"));
    const char *elsn = json_string_value(json_object_get(w, "stop_lsn"));
    if (!slsn || walarchive_parse_lsn(slsn, &start) < 0 || !elsn || walarchive_parse_lsn(elsn, &stop) < 0) {
        snprintf(why, sizeof(why), "the base backup's manifest has no WAL range (wal.start_lsn, wal.stop_lsn)");
        goto out;
    }
    const char *file = json_string_value(json_object_get(manifest, "file"));
    const char *fin = json_string_value(json_object_get(manifest, "finished_at"));
    const char *kid = json_string_value(json_object_get(manifest, "key_id"));
    json_object_set_new(plan, "base_backup",
                        json_pack("{s:s,s:s,s:s,s:s,s:I,s:s,s:s?}", "name", file ? file : "?", "finished_at",
                                  fin ? fin : "?", "start_lsn", slsn, "stop_lsn", elsn, "file_size_bytes",
                                  json_integer_value(json_object_get(manifest, "file_size_bytes")), "sha256",
                                  json_string_value(json_object_get(manifest, "sha256")), "key_id", kid));
    if (json_object_get(manifest, "state_files")) /* its state tar: restore_platform_state fetches it */
        json_object_set(json_object_get(plan, "base_backup"), "state_files", json_object_get(manifest, "state_files"));
    CdSeg *segs = calloc(json_array_size(wal_names) + 1, sizeof(*segs));
    json_t *histories = json_array(), *files = json_array(), *missing = json_array();
    if (!segs || !histories || !files || !missing) {
        free(segs);
        json_decref(histories);
        json_decref(files);
        json_decref(missing);
        json_decref(plan);
        return NULL;
    }
    json_array_foreach(wal_names, i, v) {
        CdSeg s = {.name = json_string_value(v)};
        s.kind = walarchive_classify(s.name, seg_size, &s.tli, &s.segno);
        if (s.kind == WALFILE_HISTORY)
            json_array_append(histories, v);
        else if (s.kind == WALFILE_SEGMENT || s.kind == WALFILE_PARTIAL_END)
            segs[n++] = s;
    }
    qsort(segs, n, sizeof(*segs), cd_seg_cmp);
    /* from the segment holding the backup's start, each segment's newest timeline copy, no gap */
    uint64_t first = start / seg_size, expect = first, last = first, need = (stop ? stop - 1 : 0) / seg_size;
    const CdSeg *tail = NULL;
    for (i = 0; i < n; i++) {
        if (segs[i].segno < first || (i + 1 < n && segs[i + 1].segno == segs[i].segno))
            continue;
        if (segs[i].segno > expect) {
            walarchive_seg_name(segs[i].tli, expect, seg_size, a);
            walarchive_seg_name(segs[i].tli, segs[i].segno - 1, seg_size, b);
            json_array_append_new(missing, json_pack("{s:s,s:s}", "from", a, "to", b));
            break; /* replay would stop at the gap */
        }
        json_array_append_new(files, json_string(segs[i].name));
        expect = segs[i].segno + 1;
        last = segs[i].segno;
        tail = &segs[i];
        count++;
    }
    json_array_extend(files, histories);
    walarchive_seg_name(n ? segs[0].tli : 1, first, seg_size, a);
    walarchive_seg_name(tail ? tail->tli : 1, last, seg_size, b);
    json_object_set_new(plan, "wal", json_pack("{s:s,s:s,s:I,s:b,s:O,s:O,s:s?}", "from_segment", a, "to_segment", b,
                                               "segments", (json_int_t)count, "continuous",
                                               json_array_size(missing) == 0, "missing", missing, "files", files,
                                               "partial", tail && tail->kind == WALFILE_PARTIAL_END ? tail->name
                                                                                                    : NULL));
    if (json_array_size(missing))
        snprintf(why, sizeof(why), "the WAL in the bucket after the base backup is not continuous: %s to %s missing "
                 "(a recovery past it is not possible; nothing was touched)",
                 json_string_value(json_object_get(json_array_get(missing, 0), "from")),
                 json_string_value(json_object_get(json_array_get(missing, 0), "to")));
    else if (!count)
        snprintf(why, sizeof(why), "the bucket holds no WAL from the base backup's start (%s) on", a);
    else if (last < need) {
        walarchive_seg_name(tail->tli, need, seg_size, b);
        snprintf(why, sizeof(why), "the WAL in the bucket ends before the base backup's end (%s is missing): the "
                 "backup cannot be made consistent", b);
    }
    json_decref(missing);
    json_decref(files);
    json_decref(histories);
    free(segs);
out:
    json_object_set_new(plan, "ok", json_boolean(!why[0]));
    if (why[0])
        json_object_set_new(plan, "why", json_string(why));
    return plan;
}
