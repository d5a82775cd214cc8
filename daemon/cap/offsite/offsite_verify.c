/*
 * offsite_verify: `drctl verify --offsite NAME` (the verify_offsite command): a backup downloaded
 * from the bucket and verified as it arrives, without writing it anywhere. Its manifest comes from
 * the bucket too (what a recovery host would have); then the container is fetched in ranges of
 * part_size (GET with Range), each range pushed on the thread pool into lib/backupstream's reader
 * (every chunk authenticated with the backup key and decompressed, nothing kept), and at the end
 * the whole file's SHA-256 is compared with the manifest's and with x-amz-meta-sha256. One at a
 * time; the reply says what was checked.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backupstream.h"
#include "cap/offsite/offsite_internal.h"
#include "clock.h"
#include "err.h"
#include "log.h"

typedef struct OffsiteVerify {
    Offsite *o;
    CtlCall *call;
    char *name;
    char key[1024];           /* the container's object key */
    char want_sha[65];        /* the manifest's sha256 */
    char meta_sha[65];        /* x-amz-meta-sha256 of the object */
    uint64_t size, offset;
    uint64_t http_id;
    bool busy;                /* a job runs */
    ConfigBackup backup;      /* for the key (loaded on the pool) */
    uint8_t bkey[BCF_KEY_LEN];
    BackupStreamReader *reader;
    uint8_t *buf;             /* the range being verified */
    size_t len;
    int status;
    char err[512];
    BackupStreamStats stats;
    uint64_t started_ms;
} OffsiteVerify;

static void offsite_verify_free(OffsiteVerify *v)
{
    if (v->o->verify == v)
        v->o->verify = NULL;
    explicit_bzero(v->bkey, sizeof(v->bkey));
    backupstream_reader_free(v->reader);
    config_backup_free(&v->backup);
    free(v->buf);
    free(v->name);
    free(v);
}

static void offsite_verify_fail(OffsiteVerify *v, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void offsite_verify_fail(OffsiteVerify *v, int code, const char *fmt, ...)
{
    char msg[700];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    events_emit(v->o->core->events, SEV_ERROR, "offsite.verify", NULL, false, NULL,
                "off-site verification of '%s' failed: %s", v->name, msg);
    control_reply_error(v->call, code, "%s", msg);
    offsite_verify_free(v);
}

typedef void (*OffsiteVerifyFn)(OffsiteVerify *v, const HttpResponse *resp);
typedef struct OffsiteVerifyCall {
    OffsiteVerify *v;
    OffsiteVerifyFn fn;
} OffsiteVerifyCall;

static void offsite_verify_answer(int err, const HttpResponse *resp, const char *errmsg, void *data)
{
    OffsiteVerifyCall *c = data;
    OffsiteVerify *v = c->v;
    OffsiteVerifyFn fn = c->fn;
    char code[128] = "", message[256] = "";
    free(c);
    v->http_id = 0;
    if (err == DR_ECANCELED || v->o->closing)
        return; /* offsite__verify_cancel answers */
    if (err != 0) {
        offsite_verify_fail(v, DR_EHTTP, "%s", errmsg);
        return;
    }
    if (resp->status < 200 || resp->status >= 300) {
        s3req_xml_text(resp->body, resp->body_len, "Code", code, sizeof(code));
        s3req_xml_text(resp->body, resp->body_len, "Message", message, sizeof(message));
        offsite_verify_fail(v, resp->status == 404 ? -ENOENT : DR_EHTTP, "S3 answered %ld %s%s%s", resp->status,
                            code[0] ? code : "(no error code)", message[0] ? ": " : "", message);
        return;
    }
    fn(v, resp);
}

static void offsite_verify_get(OffsiteVerify *v, const char *key, const char *range, size_t max, OffsiteVerifyFn fn)
{
    Offsite *o = v->o;
    char date[17];
    S3Built b;
    SigV4Pair extra[1] = {{"range", range ? range : ""}};
    OffsiteVerifyCall *c = calloc(1, sizeof(*c));
    s3req_amz_date(clock_wall_ms(), date);
    int r = c ? s3req_build(&o->target, "GET", key, NULL, 0, S3REQ_EMPTY_SHA256, extra, range ? 1 : 0, date, &b)
              : -ENOMEM;
    if (r < 0) {
        free(c);
        offsite_verify_fail(v, r, "cannot build the request: %s", err_str(r));
        return;
    }
    c->v = v;
    c->fn = fn;
    HttpRequest req = {.method = "GET", .url = b.url, .headers = (const char *const *)b.headers,
                       .n_headers = b.n_headers, .timeout_ms = o->cfg.timeout_ms, .max_response = max};
    r = httpc_request(o->core->http, &req, offsite_verify_answer, c, &v->http_id);
    s3req_free(&b);
    if (r < 0) {
        free(c);
        offsite_verify_fail(v, r, "cannot send the request: %s", err_str(r));
    }
}

/* ---- the pool's part ---- */

static void offsite_verify_work(OffsiteJob *j)
{
    OffsiteVerify *v = j->arg;
    char err[512];
    if (!v->reader) { /* first: the key and the reader */
        int r = backups_load_key_for_header(&v->backup, v->buf, v->buf ? v->len : 0, v->bkey, err, sizeof(err));
        if (r < 0) {
            v->status = r;
            snprintf(v->err, sizeof(v->err), "%s", err);
            return;
        }
        if (!(v->reader = backupstream_reader_new(v->bkey, true, NULL, NULL))) {
            v->status = -ENOMEM;
            return;
        }
    }
    if (v->buf) {
        int r = backupstream_reader_update(v->reader, v->buf, v->len);
        free(v->buf);
        v->buf = NULL;
        if (r < 0) {
            v->status = r;
            snprintf(v->err, sizeof(v->err), "reading the bytes from %" PRIu64 ": %s", v->offset, backupstream_reader_errmsg(v->reader));
            return;
        }
        v->offset += v->len;
    }
    if (v->offset >= v->size) {
        int r = backupstream_reader_finish(v->reader, &v->stats);
        if (r < 0) {
            v->status = r;
            snprintf(v->err, sizeof(v->err), "%s", backupstream_reader_errmsg(v->reader));
        }
    }
}

static void offsite_verify_next(OffsiteVerify *v);

static void offsite_verify_worked(OffsiteJob *j)
{
    OffsiteVerify *v = j->arg;
    v->busy = false;
    if (v->o->closing) {
        offsite_verify_free(v);
        return;
    }
    if (v->status < 0) {
        offsite_verify_fail(v, v->status == DR_EKEY ? DR_EKEY : DR_ECORRUPT, "%s",
                            v->err[0] ? v->err : err_str(v->status));
        return;
    }
    offsite_verify_next(v);
}

static void offsite_verify_queue(OffsiteVerify *v)
{
    OffsiteJob *j = offsite__job_new(v->o, OJ_CALL, offsite_verify_worked);
    if (!j) {
        offsite_verify_fail(v, -ENOMEM, "out of memory");
        return;
    }
    j->fn = offsite_verify_work;
    j->arg = v;
    v->busy = true;
    if (offsite__job_queue(j) < 0) {
        v->busy = false;
        offsite_verify_fail(v, -ENOMEM, "cannot queue work");
    }
}

/* ---- the loop's part ---- */

static void offsite_verify_range(OffsiteVerify *v, const HttpResponse *resp)
{
    if (v->offset == 0) {
        const char *m = httpc_response_header(resp, "x-amz-meta-sha256");
        snprintf(v->meta_sha, sizeof(v->meta_sha), "%s", m ? m : "");
    }
    uint64_t want = v->size - v->offset < v->o->cfg.part_size ? v->size - v->offset : v->o->cfg.part_size;
    if (resp->body_len != want) {
        offsite_verify_fail(v, DR_ECORRUPT, "the bucket answered %zu bytes at %" PRIu64 ", %" PRIu64 " expected "
                            "(the object is not the size its manifest says)", resp->body_len, v->offset, want);
        return;
    }
    if (!(v->buf = malloc(resp->body_len ? resp->body_len : 1))) {
        offsite_verify_fail(v, -ENOMEM, "out of memory");
        return;
    }
    memcpy(v->buf, resp->body, resp->body_len);
    v->len = resp->body_len;
    offsite_verify_queue(v);
}

static void offsite_verify_next(OffsiteVerify *v)
{
    char range[64];
    if (v->offset < v->size) {
        uint64_t end = v->offset + v->o->cfg.part_size - 1;
        if (end >= v->size)
            end = v->size - 1;
        snprintf(range, sizeof(range), "bytes=%" PRIu64 "-%" PRIu64, v->offset, end);
        offsite_verify_get(v, v->key, range, (size_t)(end - v->offset + 1), offsite_verify_range);
        return;
    }
    /* the whole file verified: it must be the file the manifest names */
    if (strcmp(v->stats.file_sha256_hex, v->want_sha) != 0) {
        offsite_verify_fail(v, DR_ECORRUPT, "SHA-256 %s, the manifest in the bucket says %s", v->stats.file_sha256_hex,
                            v->want_sha);
        return;
    }
    if (v->meta_sha[0] && strcmp(v->meta_sha, v->want_sha) != 0) {
        offsite_verify_fail(v, DR_ECORRUPT, "x-amz-meta-sha256 %s differs from the manifest's %s", v->meta_sha,
                            v->want_sha);
        return;
    }
    uint64_t ms = uv_now(v->o->core->loop) - v->started_ms;
    json_t *res = json_pack("{s:s,s:b,s:s,s:s,s:I,s:I,s:I,s:I}", "name", v->name, "offsite", 1, "key", v->key,
                            "sha256", v->stats.file_sha256_hex, "bytes", (json_int_t)v->stats.file_bytes, "chunks",
                            (json_int_t)v->stats.chunks, "plain_bytes", (json_int_t)v->stats.plain_bytes,
                            "duration_ms", (json_int_t)ms);
    events_emit(v->o->core->events, SEV_INFO, "offsite.verify", NULL, false, res,
                "off-site copy of '%s' verified (%" PRIu64 " bytes, %" PRIu64 " chunks)", v->name,
                v->stats.file_bytes, v->stats.chunks);
    control_reply_ok(v->call, res);
    offsite_verify_free(v);
}

static void offsite_verify_manifest(OffsiteVerify *v, const HttpResponse *resp)
{
    json_error_t jerr;
    json_t *m = json_loadb(resp->body, resp->body_len, 0, &jerr);
    const char *sha = json_string_value(json_object_get(m, "sha256"));
    json_int_t size = json_integer_value(json_object_get(m, "file_size_bytes"));
    if (!json_is_object(m) || !sha || strlen(sha) != 64 || size <= 0) {
        json_decref(m);
        offsite_verify_fail(v, DR_ECORRUPT, "the manifest in the bucket is not a backup manifest");
        return;
    }
    snprintf(v->want_sha, sizeof(v->want_sha), "%s", sha);
    v->size = (uint64_t)size;
    json_decref(m);
    offsite_verify_queue(v); /* the key and the reader, then the first range */
}

void offsite__cmd_verify(CtlCall *call, const json_t *args, void *data)
{
    Offsite *o = data;
    const char *name = json_string_value(json_object_get(args, "name"));
    char mkey[1100];
    if (!o->cfg.enabled) {
        control_reply_error(call, DR_ESTATE, "no repository.s3 section is configured");
        return;
    }
    if (!name || !name[0] || strchr(name, '/')) {
        control_reply_error(call, -EINVAL, "name the backup to verify (a file name as drctl backups shows it)");
        return;
    }
    if (o->verify) {
        control_reply_error(call, DR_ESTATE, "busy: the off-site copy of '%s' is being verified", o->verify->name);
        return;
    }
    OffsiteVerify *v = calloc(1, sizeof(*v));
    if (!v || !(v->name = strdup(name)) || config_backup_copy(&o->core->cfg->backup, &v->backup) < 0) {
        if (v) {
            free(v->name);
            free(v);
        }
        control_reply_error(call, -ENOMEM, "out of memory");
        return;
    }
    v->o = o;
    v->call = call;
    v->started_ms = uv_now(o->core->loop);
    o->verify = v;
    offsite__key(o, false, name, v->key, sizeof(v->key));
    snprintf(mkey, sizeof(mkey), "%s%s", v->key, BACKUP_MANIFEST_SUFFIX);
    log_info("offsite", "verifying the off-site copy of '%s'", name);
    offsite_verify_get(v, mkey, NULL, 64u << 20, offsite_verify_manifest);
}

void offsite__verify_cancel(Offsite *o)
{
    OffsiteVerify *v = o->verify;
    if (!v)
        return;
    if (v->http_id)
        httpc_cancel(o->core->http, v->http_id);
    control_reply_error(v->call, DR_ECANCELED, "the daemon is stopping");
    v->call = NULL;
    o->verify = NULL;
    if (!v->busy) /* else its job frees it */
        offsite_verify_free(v);
}
