/*
 * offsite_upload: one file's way into the bucket (see offsite_internal.h). Hash (thread pool) ->
 * PUT, or CreateMultipartUpload -> the upload id recorded -> each part read and hashed (thread
 * pool) and PUT -> the complete body hashed (thread pool) -> CompleteMultipartUpload; then a HEAD
 * checks the size and x-amz-meta-sha256, and the object is recorded. A request that fails in a way
 * worth retrying (no answer, 5xx, SlowDown) is tried again after backoff, up to max_attempts; then,
 * or at once for a refusal (403 SignatureDoesNotMatch, ...), the file counts as failed and a
 * multipart upload is aborted: nothing partial is ever under the final key, since S3 shows a
 * multipart object only once it is completed. And the retention's DeleteObject of an object the
 * record no longer claims (offsite_retention.c), retried the same way.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "cap/offsite/offsite_internal.h"
#include "clock.h"
#include "err.h"
#include "log.h"

typedef void (*OffsiteAnswerFn)(OffsiteTask *t, const HttpResponse *resp);

typedef struct OffsiteCall {
    OffsiteTask *t;
    OffsiteAnswerFn ok;
    bool accept_404; /* an abort of an upload S3 no longer knows is done */
} OffsiteCall;

static void offsite_step_part(OffsiteTask *t);
static void offsite_step_complete(OffsiteTask *t);
static void offsite_step_delete(OffsiteTask *t);

/* The request failed: retry later, or give up on this file. */
static void offsite_request_failed(OffsiteTask *t, long status, const char *code, const char *msg)
{
    Offsite *o = t->o;
    snprintf(t->last_error, sizeof(t->last_error), "%s", msg);
    if (s3req_retryable(status, code) && t->attempt + 1 < (unsigned)o->cfg.max_attempts) {
        t->attempt++;
        o->retries_total++;
        t->next_phase = t->phase;
        t->phase = OT_WAITING;
        t->retry_at = uv_now(o->core->loop) +
                      backoff_jitter_ms(o->cfg.retry_base_ms, o->cfg.retry_cap_ms, t->attempt, offsite__rand(o));
        log_info("offsite", "'%s': %s; retry %u of %" PRId64 " in %" PRIu64 " ms", t->key, msg, t->attempt,
                 o->cfg.max_attempts - 1, t->retry_at - uv_now(o->core->loop));
        return;
    }
    offsite__task_failed(t, "%s", msg);
}

static void offsite_answer(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    OffsiteCall *c = data;
    OffsiteTask *t = c->t;
    Offsite *o = t->o;
    char code[128] = "", message[256] = "", msg[400];
    OffsiteAnswerFn ok = c->ok;
    bool accept_404 = c->accept_404;
    free(c);

    t->busy = false;
    t->http_id = 0;
    o->requests_total++;
    if (err == DR_ECANCELED || o->closing)
        return;
    if (err == 0 && resp->status >= 200 && resp->status < 300 && !s3req_is_error(resp->body, resp->body_len)) {
        t->attempt = 0;
        ok(t, resp);
        return;
    }
    if (err == 0 && accept_404 && resp->status == 404) {
        ok(t, resp);
        return;
    }
    if (err != 0) {
        snprintf(msg, sizeof(msg), "%s", errmsg);
        offsite_request_failed(t, 0, NULL, msg);
        return;
    }
    s3req_xml_text(resp->body, resp->body_len, "Code", code, sizeof(code));
    s3req_xml_text(resp->body, resp->body_len, "Message", message, sizeof(message));
    snprintf(msg, sizeof(msg), "S3 answered %ld %s%s%s", resp->status, code[0] ? code : "(no error code)",
             message[0] ? ": " : "", message);
    offsite_request_failed(t, resp->status, code, msg);
}

/* Send one signed request for t; the answer goes to ok on success. */
static void offsite_send(OffsiteTask *t, const char *method, const SigV4Pair *query, size_t nq, const uint8_t *body,
                         size_t body_len, const char *body_sha, bool meta, OffsiteAnswerFn ok, bool accept_404)
{
    Offsite *o = t->o;
    char date[17];
    S3Built b;
    SigV4Pair extra[2];
    size_t ne = 0;
    OffsiteCall *c = calloc(1, sizeof(*c));

    if (meta)
        extra[ne++] = (SigV4Pair){"x-amz-meta-sha256", t->sha256};
    if (body)
        extra[ne++] = (SigV4Pair){"content-type", "application/octet-stream"};
    s3req_amz_date(clock_wall_ms(), date);
    int r = c ? s3req_build(&o->target, method, t->key, query, nq, body_sha, extra, ne, date, &b) : -ENOMEM;
    if (r < 0) {
        free(c);
        offsite__task_failed(t, "cannot build the %s request: %s", method, err_str(r));
        return;
    }
    c->t = t;
    c->ok = ok;
    c->accept_404 = accept_404;
    HttpRequest req = {.method = method, .url = b.url, .headers = (const char *const *)b.headers,
                       .n_headers = b.n_headers, .body = body, .body_len = body_len, .body_borrowed = 1,
                       .timeout_ms = o->cfg.timeout_ms, .max_response = 1u << 20};
    t->busy = true;
    r = httpc_request(o->core->http, &req, offsite_answer, c, &t->http_id);
    s3req_free(&b);
    if (r < 0) {
        t->busy = false;
        free(c);
        offsite__task_failed(t, "cannot send the %s request: %s", method, err_str(r));
    }
}

/* ---- check and record ---- */

static void offsite_head_ok(OffsiteTask *t, const HttpResponse *resp)
{
    const char *len = httpc_response_header(resp, "Content-Length");
    const char *sha = httpc_response_header(resp, "x-amz-meta-sha256");
    if (!len || strtoull(len, NULL, 10) != t->size || !sha || strcmp(sha, t->sha256) != 0) {
        offsite__task_failed(t, "the object in the bucket is not the file: %s bytes (want %" PRIu64
                                "), x-amz-meta-sha256 %s (want %s)", len ? len : "?", t->size, sha ? sha : "missing",
                             t->sha256);
        return;
    }
    t->phase = OT_SAVE;
    offsite__task_uploaded(t);
}

static void offsite_step_head(OffsiteTask *t)
{
    t->phase = OT_HEAD;
    offsite_send(t, "HEAD", NULL, 0, NULL, 0, S3REQ_EMPTY_SHA256, false, offsite_head_ok, false);
}

/* ---- one PUT ---- */

static void offsite_put_ok(OffsiteTask *t, const HttpResponse *resp)
{
    (void)resp;
    free(t->body);
    t->body = NULL;
    t->body_len = 0;
    offsite_step_head(t);
}

static void offsite_step_put(OffsiteTask *t)
{
    t->phase = OT_PUT;
    offsite_send(t, "PUT", NULL, 0, t->body, t->body_len, t->body_sha, true, offsite_put_ok, false);
}

/* ---- multipart ---- */

static void offsite_abort_ok(OffsiteTask *t, const HttpResponse *resp)
{
    (void)resp;
    if (t->upload_id) {
        json_object_del(t->o->multipart, t->upload_id);
        offsite__record_changed(t->o);
    }
    if (t->kind == OFS_ABORT || t->gone) {
        log_info("offsite", "aborted the multipart upload of '%s' %s", t->key,
                 t->gone ? "(the file is gone from the disk)" : "a previous run left");
        offsite__task_done(t);
        return;
    }
    offsite__task_reset(t); /* it starts over at retry_at, without holding a slot meanwhile */
    t->phase = OT_WAITING;
    t->next_phase = OT_HASHING;
    if (t->active) {
        t->active = false;
        t->o->n_active--;
    }
    offsite__kick(t->o);
}

void offsite__task_abort(OffsiteTask *t)
{
    SigV4Pair q[] = {{"uploadId", t->upload_id}};
    t->phase = OT_ABORT;
    offsite_send(t, "DELETE", q, 1, NULL, 0, S3REQ_EMPTY_SHA256, false, offsite_abort_ok, true);
}

static void offsite_complete_ok(OffsiteTask *t, const HttpResponse *resp)
{
    (void)resp;
    free(t->body);
    t->body = NULL;
    t->body_len = 0;
    json_object_del(t->o->multipart, t->upload_id);
    offsite__record_changed(t->o); /* saved with the object's record */
    offsite_step_head(t);
}

static void offsite_hash_done(OffsiteJob *j)
{
    OffsiteTask *t = j->task;
    t->busy = false;
    if (t->o->closing)
        return;
    snprintf(t->body_sha, sizeof(t->body_sha), "%s", j->sha);
    offsite_step_complete(t);
}

static void offsite_step_complete(OffsiteTask *t)
{
    if (!t->body) { /* build the body, hash it on the pool, then send it */
        char *xml = s3req_complete_body((const char *const *)t->etags, t->n_parts);
        OffsiteJob *j = xml ? offsite__job_new(t->o, OJ_HASH_BUF, offsite_hash_done) : NULL;
        if (!j) {
            free(xml);
            offsite__task_failed(t, "out of memory");
            return;
        }
        t->body = (uint8_t *)xml;
        t->body_len = strlen(xml);
        j->task = t;
        j->in = t->body;
        j->in_len = t->body_len;
        t->phase = OT_HASH_DONE;
        t->busy = true;
        if (offsite__job_queue(j) < 0) {
            t->busy = false;
            offsite__task_failed(t, "cannot queue work");
        }
        return;
    }
    SigV4Pair q[] = {{"uploadId", t->upload_id}};
    t->phase = OT_COMPLETE;
    offsite_send(t, "POST", q, 1, t->body, t->body_len, t->body_sha, false, offsite_complete_ok, false);
}

static void offsite_part_ok(OffsiteTask *t, const HttpResponse *resp)
{
    const char *etag = httpc_response_header(resp, "ETag");
    if (!etag || !etag[0] || !(t->etags[t->part] = strdup(etag))) {
        offsite__task_failed(t, "S3 answered part %zu without an ETag", t->part + 1);
        return;
    }
    free(t->body);
    t->body = NULL;
    t->body_len = 0;
    t->part++;
    if (t->part < t->n_parts)
        offsite_step_part(t);
    else
        offsite_step_complete(t);
}

static void offsite_read_done(OffsiteJob *j)
{
    OffsiteTask *t = j->task;
    t->busy = false;
    if (t->o->closing)
        return;
    if (j->status == -ENOENT) { /* removed locally (WAL or backup retention) while going up */
        t->gone = true;
        offsite__task_abort(t);
        return;
    }
    if (j->status < 0) {
        offsite__task_failed(t, "%s", j->err[0] ? j->err : err_str(j->status));
        return;
    }
    t->body = j->buf;
    t->body_len = j->buf_len;
    j->buf = NULL;
    snprintf(t->body_sha, sizeof(t->body_sha), "%s", j->sha);
    char pn[24];
    snprintf(pn, sizeof(pn), "%zu", t->part + 1);
    SigV4Pair q[] = {{"partNumber", pn}, {"uploadId", t->upload_id}};
    t->phase = OT_PART;
    offsite_send(t, "PUT", q, 2, t->body, t->body_len, t->body_sha, false, offsite_part_ok, false);
}

static void offsite_step_part(OffsiteTask *t)
{
    if (t->body) { /* a retry: the part is still in memory */
        char pn[24];
        snprintf(pn, sizeof(pn), "%zu", t->part + 1);
        SigV4Pair q[] = {{"partNumber", pn}, {"uploadId", t->upload_id}};
        t->phase = OT_PART;
        offsite_send(t, "PUT", q, 2, t->body, t->body_len, t->body_sha, false, offsite_part_ok, false);
        return;
    }
    OffsiteJob *j = offsite__job_new(t->o, OJ_READ, offsite_read_done);
    uint64_t ps = t->o->cfg.part_size;
    if (!j || !(j->path = strdup(t->path))) {
        free(j);
        offsite__task_failed(t, "out of memory");
        return;
    }
    j->task = t;
    j->offset = (uint64_t)t->part * ps;
    j->len = t->size - j->offset < ps ? t->size - j->offset : ps;
    t->phase = OT_READ_PART;
    t->busy = true;
    if (offsite__job_queue(j) < 0) {
        t->busy = false;
        offsite__task_failed(t, "cannot queue work");
    }
}

void offsite__task_saved(OffsiteTask *t, bool ok)
{
    if (!ok) {
        offsite__task_failed(t, "cannot record the upload in '%s': %s", t->o->state_path, t->o->save_error);
        return;
    }
    if (t->phase == OT_SAVE_UPLOAD)
        offsite_step_part(t);
    else if (t->phase == OT_SAVE_DELETE)
        offsite_step_delete(t);
    else if (t->phase == OT_SAVE)
        offsite__task_done(t);
}

static void offsite_create_ok(OffsiteTask *t, const HttpResponse *resp)
{
    char id[1024];
    if (s3req_xml_text(resp->body, resp->body_len, "UploadId", id, sizeof(id)) < 0 || !id[0] ||
        !(t->upload_id = strdup(id))) {
        offsite__task_failed(t, "S3 answered CreateMultipartUpload without an UploadId");
        return;
    }
    t->n_parts = (size_t)((t->size + t->o->cfg.part_size - 1) / t->o->cfg.part_size);
    if (!(t->etags = calloc(t->n_parts, sizeof(*t->etags)))) {
        offsite__task_failed(t, "out of memory");
        return;
    }
    t->part = 0;
    /* write ahead: a daemon killed from here on finds the upload in the record and aborts it */
    json_object_set_new(t->o->multipart, t->upload_id,
                        json_pack("{s:s,s:I}", "key", t->key, "at_ms", (json_int_t)clock_wall_ms()));
    t->phase = OT_SAVE_UPLOAD;
    t->save_gen = offsite__record_changed(t->o);
}

static void offsite_step_create(OffsiteTask *t)
{
    SigV4Pair q[] = {{"uploads", ""}};
    t->phase = OT_CREATE;
    offsite_send(t, "POST", q, 1, NULL, 0, S3REQ_EMPTY_SHA256, true, offsite_create_ok, false);
}

/* ---- retention: DeleteObject ---- */

static void offsite_delete_ok(OffsiteTask *t, const HttpResponse *resp)
{
    (void)resp;
    offsite__delete_done(t);
    offsite__task_done(t);
}

/* The record that no longer claims the object must be on disk first (write ahead): a daemon
 * killed after the delete never believes the object is still there. */
static void offsite_step_delete(OffsiteTask *t)
{
    if (t->o->saved_gen < t->save_gen) {
        t->phase = OT_SAVE_DELETE;
        if (!t->o->saving)
            offsite__record_changed(t->o);
        return;
    }
    t->phase = OT_DELETE;
    offsite_send(t, "DELETE", NULL, 0, NULL, 0, S3REQ_EMPTY_SHA256, false, offsite_delete_ok, true);
}

/* ---- start ---- */

static void offsite_hashed(OffsiteJob *j)
{
    OffsiteTask *t = j->task;
    t->busy = false;
    if (t->o->closing)
        return;
    if (j->status == -ENOENT) { /* removed locally (retention) before it went off-site */
        log_info("offsite", "'%s' is gone from the disk before its upload: skipped", t->path);
        offsite__task_done(t);
        return;
    }
    if (j->status < 0) {
        offsite__task_failed(t, "%s", j->err[0] ? j->err : err_str(j->status));
        return;
    }
    t->size = j->size;
    snprintf(t->sha256, sizeof(t->sha256), "%s", j->sha);
    if (j->buf) { /* small enough for one PUT: its bytes came with the hash */
        t->body = j->buf;
        t->body_len = j->buf_len;
        j->buf = NULL;
        snprintf(t->body_sha, sizeof(t->body_sha), "%s", j->sha);
        offsite_step_put(t);
    } else {
        offsite_step_create(t);
    }
}

static void offsite_step_hash(OffsiteTask *t)
{
    OffsiteJob *j = offsite__job_new(t->o, OJ_HASH, offsite_hashed);
    if (!j || !(j->path = strdup(t->path))) {
        free(j);
        offsite__task_failed(t, "out of memory");
        return;
    }
    j->task = t;
    j->limit = t->o->cfg.part_size;
    t->phase = OT_HASHING;
    t->busy = true;
    if (offsite__job_queue(j) < 0) {
        t->busy = false;
        offsite__task_failed(t, "cannot queue work");
    }
}

void offsite__task_step(OffsiteTask *t)
{
    OffsiteTaskPhase p = t->next_phase;
    t->next_phase = OT_WAITING;
    switch (p) {
    case OT_PUT: offsite_step_put(t); break;
    case OT_CREATE: offsite_step_create(t); break;
    case OT_PART:
    case OT_READ_PART: offsite_step_part(t); break;
    case OT_COMPLETE:
    case OT_HASH_DONE: offsite_step_complete(t); break;
    case OT_HEAD: offsite_step_head(t); break;
    case OT_ABORT: offsite__task_abort(t); break;
    case OT_SAVE_DELETE:
    case OT_DELETE: offsite_step_delete(t); break;
    default: offsite_step_hash(t); break;
    }
}
