/*
 * audit: the hash-chained audit log (see audit.h and docs/audit.md).
 *
 * A record is one JSON line with sorted keys; its "hash" is the SHA-256 (hex) of the record
 * without "hash", serialised compact with sorted keys, and its "prev" the hash of the record
 * before ("" for the first). Records are chained on the loop as they happen and queued; one batch
 * at a time is appended with write() and fdatasync() and then the head is replaced atomically, on
 * the thread pool. Reading (`audit`) and verifying run on the thread pool too.
 */
#include <errno.h>
#include <fcntl.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomicfile.h"
#include "clock.h"
#include "core/audit.h"
#include "err.h"
#include "log.h"

#define AUDIT_READ_MAX 1000 /* records an `audit` answer carries at most (the newest) */

struct Audit {
    uv_loop_t *loop;
    EventBus *events;
    Control *control;
    int sub;
    int fd;
    char *log_path, *head_path;
    uint64_t seq;
    char last_hash[65];
    char *queue; /* lines not yet written */
    size_t queue_len, queue_cap;
    uint64_t queue_seq; /* seq of the last queued record */
    char queue_hash[65];
    bool writing, closing;
    int pending;
    void (*closed_cb)(void *);
    void *closed_data;
};

typedef struct AuditWrite {
    uv_work_t req;
    Audit *a;
    char *buf;
    size_t len;
    uint64_t seq;
    char hash[65];
    int result;
} AuditWrite;

/* ---- the chain ---- */

static void audit_hex(const unsigned char *d, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        snprintf(out + 2 * i, 3, "%02x", d[i]);
}

/* The hash of a record (its "hash" field left out). */
static void audit_hash_of(const json_t *rec, char out[65])
{
    json_t *copy = json_copy((json_t *)(uintptr_t)rec);
    unsigned char md[SHA256_DIGEST_LENGTH];
    out[0] = '\0';
    if (!copy)
        return;
    json_object_del(copy, "hash");
    char *text = json_dumps(copy, JSON_COMPACT | JSON_SORT_KEYS);
    if (text) {
        SHA256((const unsigned char *)text, strlen(text), md);
        audit_hex(md, sizeof(md), out);
    }
    free(text);
    json_decref(copy);
}

static void audit_flush(Audit *a);

/* Chain and queue one record (stolen). */
static void audit_append(Audit *a, json_t *rec)
{
    char ts[64], hash[65];
    int64_t now = clock_wall_ms();
    time_t secs = (time_t)(now / 1000);
    struct tm tm;

    if (!rec || a->fd < 0 || a->closing) {
        json_decref(rec);
        return;
    }
    gmtime_r(&secs, &tm);
    snprintf(ts, sizeof(ts), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
             tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(now % 1000));
    json_object_set_new(rec, "seq", json_integer((json_int_t)(a->queue_seq + 1)));
    json_object_set_new(rec, "ts", json_string(ts));
    json_object_set_new(rec, "prev", json_string(a->queue_hash));
    audit_hash_of(rec, hash);
    json_object_set_new(rec, "hash", json_string(hash));
    char *line = json_dumps(rec, JSON_COMPACT | JSON_SORT_KEYS);
    json_decref(rec);
    if (!line || !hash[0]) {
        free(line);
        log_error("audit", "cannot record to the audit log: out of memory");
        return;
    }
    size_t n = strlen(line);
    if (a->queue_len + n + 1 > a->queue_cap) {
        size_t cap = (a->queue_cap + n + 1) * 2;
        char *q = realloc(a->queue, cap);
        if (!q) {
            free(line);
            log_error("audit", "cannot record to the audit log: out of memory");
            return;
        }
        a->queue = q;
        a->queue_cap = cap;
    }
    memcpy(a->queue + a->queue_len, line, n);
    a->queue[a->queue_len + n] = '\n';
    a->queue_len += n + 1;
    free(line);
    a->queue_seq++;
    memcpy(a->queue_hash, hash, sizeof(hash));
    audit_flush(a);
}

/* ---- writing (thread pool) ---- */

static void audit_write_work(uv_work_t *req)
{
    AuditWrite *w = req->data;
    size_t off = 0;
    char head[160];

    while (off < w->len) {
        ssize_t n = write(w->a->fd, w->buf + off, w->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            w->result = n < 0 ? -errno : -EIO;
            return;
        }
        off += (size_t)n;
    }
    if (fdatasync(w->a->fd) < 0) {
        w->result = -errno;
        return;
    }
    int hl = snprintf(head, sizeof(head), "{\"seq\":%llu,\"hash\":\"%s\"}\n", (unsigned long long)w->seq, w->hash);
    w->result = atomicfile_write(w->a->head_path, head, (size_t)hl, 0600);
}

static void audit_maybe_closed(Audit *a);

static void audit_write_done(uv_work_t *req, int status)
{
    AuditWrite *w = req->data;
    Audit *a = w->a;

    a->writing = false;
    a->pending--;
    if (status < 0 || w->result < 0) {
        /* nothing silent: a lost audit record is an error people see (and the chain goes on) */
        log_error("audit", "cannot write %zu bytes to the audit log '%s': %s", w->len, a->log_path,
                  err_str(status < 0 ? status : w->result));
    } else {
        a->seq = w->seq;
        memcpy(a->last_hash, w->hash, sizeof(w->hash));
    }
    free(w->buf);
    free(w);
    audit_flush(a);
    audit_maybe_closed(a);
}

static void audit_flush(Audit *a)
{
    AuditWrite *w;

    if (a->writing || a->queue_len == 0)
        return;
    if (!(w = calloc(1, sizeof(*w))))
        return; /* stays queued: the next record tries again */
    *w = (AuditWrite){.a = a, .buf = a->queue, .len = a->queue_len, .seq = a->queue_seq};
    memcpy(w->hash, a->queue_hash, sizeof(w->hash));
    w->req.data = w;
    a->queue = NULL;
    a->queue_len = a->queue_cap = 0;
    if (uv_queue_work(a->loop, &w->req, audit_write_work, audit_write_done) < 0) {
        a->queue = w->buf; /* keep it queued */
        a->queue_len = a->queue_cap = w->len;
        free(w);
        return;
    }
    a->writing = true;
    a->pending++;
}

/* ---- what is recorded ---- */

void audit_command(Audit *a, const PeerCred *peer, const char *command, const json_t *args, int result,
                   const char *error)
{
    json_t *rec = json_pack("{s:s,s:s,s:I,s:I,s:O?,s:s,s:s?}", "type", "command", "command", command, "uid",
                            (json_int_t)peer->uid, "pid", (json_int_t)peer->pid, "args", args, "outcome",
                            result == 0 ? "ok" : err_name(result), "error", result == 0 ? NULL : error);
    audit_append(a, rec);
}

static void audit_on_event(const Event *ev, void *data)
{
    Audit *a = data;
    if (!strncmp(ev->kind, "probe.", 6) || !strncmp(ev->kind, "audit.", 6))
        return; /* the probes' own observations are not actions; the audit's own are logged */
    json_t *rec = json_pack("{s:s,s:s,s:s,s:s?,s:b,s:s,s:s?,s:s?,s:s?}", "type", "event", "kind", ev->kind,
                            "severity", events_severity_name(ev->severity), "condition", ev->condition, "resolved",
                            ev->resolved, "summary", ev->summary, "run", ev->run, "scenario", ev->scenario, "step",
                            ev->step);
    audit_append(a, rec);
}

/* ---- verifying and reading (blocking; the thread pool) ---- */

int audit_verify_file(const char *log_path, const char *head_path, json_t **ret)
{
    FILE *f = fopen(log_path, "re");
    char *line = NULL, prev[65] = "", why[512] = "";
    size_t cap = 0;
    uint64_t n = 0;
    json_int_t head_seq = -1;
    const char *head_hash = NULL;
    json_t *head = NULL;

    *ret = NULL;
    if (!f)
        return -errno;
    head = json_load_file(head_path, 0, NULL);
    if (head) {
        head_seq = json_integer_value(json_object_get(head, "seq"));
        head_hash = json_string_value(json_object_get(head, "hash"));
    }
    while (!why[0] && getline(&line, &cap, f) > 0) {
        char hash[65];
        json_t *rec = json_loads(line, 0, NULL);
        n++;
        if (!rec) {
            snprintf(why, sizeof(why), "line %llu is not a JSON record", (unsigned long long)n);
            break;
        }
        json_int_t seq = json_integer_value(json_object_get(rec, "seq"));
        const char *p = json_string_value(json_object_get(rec, "prev"));
        const char *h = json_string_value(json_object_get(rec, "hash"));
        audit_hash_of(rec, hash);
        if (seq != (json_int_t)n)
            snprintf(why, sizeof(why), "line %llu has seq %lld: a record is missing or inserted before it",
                     (unsigned long long)n, (long long)seq);
        else if (!p || strcmp(p, prev))
            snprintf(why, sizeof(why), "record %llu does not follow the one before it (prev hash differs)",
                     (unsigned long long)n);
        else if (!h || strcmp(h, hash))
            snprintf(why, sizeof(why), "record %llu was changed (its hash does not match its content)",
                     (unsigned long long)n);
        else if (!strcmp(json_string_value(json_object_get(rec, "type")) ? json_string_value(json_object_get(rec, "type")) : "",
                         "tampered"))
            snprintf(why, sizeof(why), "record %llu: at %s the daemon found the log ending at record %lld while its "
                                       "head said %lld: records were cut off or the log rewritten before it",
                     (unsigned long long)n, json_string_value(json_object_get(rec, "ts")) ? json_string_value(json_object_get(rec, "ts")) : "?",
                     (long long)json_integer_value(json_object_get(rec, "found_seq")),
                     (long long)json_integer_value(json_object_get(rec, "head_seq")));
        else
            memcpy(prev, hash, sizeof(prev));
        json_decref(rec);
    }
    fclose(f);
    free(line);
    if (!why[0] && head_seq > (json_int_t)n)
        snprintf(why, sizeof(why), "the log ends at record %llu but its head says %lld: records were cut off",
                 (unsigned long long)n, (long long)head_seq);
    else if (!why[0] && head_seq > 0 && head_seq == (json_int_t)n && head_hash && strcmp(head_hash, prev))
        snprintf(why, sizeof(why), "the last record does not match the head: the end of the log was rewritten");
    else if (!why[0] && !head && n > 0)
        snprintf(why, sizeof(why), "the head file '%s' is missing or unreadable", head_path);
    json_decref(head);
    *ret = json_pack("{s:b,s:I,s:s?}", "ok", !why[0], "records", (json_int_t)n, "error", why[0] ? why : NULL);
    return *ret ? 0 : -ENOMEM;
}

typedef struct AuditRead {
    uv_work_t req;
    Audit *a;
    CtlCall *call;
    int64_t since_ms;
    bool verify;
    json_t *records, *verified;
    int result;
} AuditRead;

static void audit_read_work(uv_work_t *req)
{
    AuditRead *r = req->data;
    FILE *f = fopen(r->a->log_path, "re");
    char *line = NULL;
    size_t cap = 0;

    if (!f) {
        r->result = -errno;
        return;
    }
    r->records = json_array();
    while (r->records && getline(&line, &cap, f) > 0) {
        json_t *rec = json_loads(line, 0, NULL);
        struct tm tm = {0};
        const char *ts = json_string_value(json_object_get(rec, "ts"));
        if (!rec || !ts || !strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm) ||
            (int64_t)timegm(&tm) * 1000 + 999 < r->since_ms) {
            json_decref(rec);
            continue;
        }
        json_array_append_new(r->records, rec);
        if (json_array_size(r->records) > AUDIT_READ_MAX)
            json_array_remove(r->records, 0);
    }
    free(line);
    fclose(f);
    if (r->verify)
        r->result = audit_verify_file(r->a->log_path, r->a->head_path, &r->verified);
}

static void audit_read_done(uv_work_t *req, int status)
{
    AuditRead *r = req->data;
    Audit *a = r->a;

    a->pending--;
    if (status < 0 || r->result < 0)
        control_reply_error(r->call, status < 0 ? status : r->result, "cannot read the audit log '%s': %s",
                            a->log_path, err_str(status < 0 ? status : r->result));
    else
        control_reply_ok(r->call, json_pack("{s:o,s:o?,s:s,s:b}", "records", r->records ? r->records : json_array(),
                                            "verify", r->verified, "file", a->log_path, "ok",
                                            !r->verified || json_is_true(json_object_get(r->verified, "ok"))));
    free(r);
    audit_maybe_closed(a);
}

static void audit_cmd(CtlCall *call, const json_t *args, void *data)
{
    Audit *a = data;
    const json_t *since = json_object_get(args, "since_ms");
    AuditRead *r;

    if (since && !json_is_integer(since)) {
        control_reply_error(call, DR_EBADARG, "since_ms must be an integer (epoch milliseconds)");
        return;
    }
    if (!(r = calloc(1, sizeof(*r)))) {
        control_reply_error(call, -ENOMEM, "out of memory");
        return;
    }
    *r = (AuditRead){.a = a, .call = call, .since_ms = since ? (int64_t)json_integer_value(since) : 0,
                     .verify = json_is_true(json_object_get(args, "verify"))};
    r->req.data = r;
    int rc = uv_queue_work(a->loop, &r->req, audit_read_work, audit_read_done);
    if (rc < 0) {
        free(r);
        control_reply_error(call, rc, "cannot read the audit log: %s", uv_strerror(rc));
        return;
    }
    a->pending++;
}

/* ---- life cycle ---- */

Audit *audit_new(uv_loop_t *loop, EventBus *events, Control *control)
{
    Audit *a = calloc(1, sizeof(*a));
    if (!a)
        return NULL;
    *a = (Audit){.loop = loop, .events = events, .control = control, .fd = -1, .sub = -1};
    return a;
}

/* Where the chain stands: the last record of the log (seq, hash) read from its end. */
static int audit_read_tail(Audit *a, uint64_t *seq, char hash[65])
{
    FILE *f = fopen(a->log_path, "re");
    char *line = NULL, *last = NULL;
    size_t cap = 0;

    *seq = 0;
    hash[0] = '\0';
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    while (getline(&line, &cap, f) > 0) {
        free(last);
        last = strdup(line);
    }
    fclose(f);
    free(line);
    json_t *rec = last ? json_loads(last, 0, NULL) : NULL;
    free(last);
    if (rec) {
        *seq = (uint64_t)json_integer_value(json_object_get(rec, "seq"));
        snprintf(hash, 65, "%s", json_string_value(json_object_get(rec, "hash")) ? json_string_value(json_object_get(rec, "hash")) : "");
        json_decref(rec);
    }
    return 0;
}

int audit_open(Audit *a, const char *state_dir, char *err, size_t errlen)
{
    uint64_t seq;
    char hash[65];
    int r;

    err[0] = '\0';
    if (asprintf(&a->log_path, "%s/audit.log", state_dir) < 0 || asprintf(&a->head_path, "%s/audit.head", state_dir) < 0)
        return -ENOMEM;
    if ((r = audit_read_tail(a, &seq, hash)) < 0) {
        snprintf(err, errlen, "cannot read '%s': %s", a->log_path, err_str(r));
        return r;
    }
    a->fd = open(a->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0600);
    if (a->fd < 0) {
        r = -errno;
        snprintf(err, errlen, "cannot open '%s': %s", a->log_path, strerror(errno));
        return r;
    }
    a->seq = a->queue_seq = seq;
    memcpy(a->last_hash, hash, sizeof(hash));
    memcpy(a->queue_hash, hash, sizeof(hash));
    json_t *head = json_load_file(a->head_path, 0, NULL);
    json_int_t hseq = head ? json_integer_value(json_object_get(head, "seq")) : 0;
    const char *hhash = json_string_value(json_object_get(head, "hash"));
    bool match = head ? (hseq == (json_int_t)seq && hhash && !strcmp(hhash, hash)) : seq == 0;
    if (!match) {
        /* the evidence goes into the chain itself, so that --verify keeps reporting it */
        audit_append(a, json_pack("{s:s,s:I,s:I}", "type", "tampered", "found_seq", (json_int_t)seq, "head_seq",
                                  (json_int_t)hseq));
        events_emit(a->events, SEV_CRITICAL, "audit.tampered", NULL, false, NULL,
                    "the audit log '%s' does not match its head (log ends at record %llu, head says %lld): records "
                    "were removed or the log rewritten; drctl audit --verify tells where",
                    a->log_path, (unsigned long long)seq, (long long)hseq);
    }
    json_decref(head);
    CtlCommand cmd = {"audit", true, audit_cmd, a,
                      "the audit log: records since since_ms (the newest 1000), verify: check the chain"};
    if ((r = control_register(a->control, &cmd, 1)) < 0)
        return r;
    if ((a->sub = events_subscribe(a->events, audit_on_event, a)) < 0)
        return a->sub;
    return 0;
}

static void audit_maybe_closed(Audit *a)
{
    if (!a->closing || a->pending > 0 || a->writing)
        return;
    if (a->queue_len > 0) {
        audit_flush(a); /* the last records go out before the file closes */
        if (a->writing)
            return;
    }
    void (*cb)(void *) = a->closed_cb;
    void *data = a->closed_data;
    if (a->fd >= 0)
        close(a->fd);
    free(a->queue);
    free(a->log_path);
    free(a->head_path);
    free(a);
    if (cb)
        cb(data);
}

static void audit_close_later(uv_handle_t *h)
{
    Audit *a = h->data;
    free(h);
    a->pending--;
    audit_maybe_closed(a);
}

void audit_close(Audit *a, void (*closed_cb)(void *data), void *data)
{
    a->closed_cb = closed_cb;
    a->closed_data = data;
    if (a->sub > 0)
        events_unsubscribe(a->events, a->sub);
    a->sub = -1;
    /* closed from the loop, never inside this call (a handle closed at once) */
    uv_timer_t *t = malloc(sizeof(*t));
    if (t && uv_timer_init(a->loop, t) == 0) {
        t->data = a;
        a->pending++;
        a->closing = true;
        uv_close((uv_handle_t *)t, audit_close_later);
        return;
    }
    free(t);
    a->closing = true;
    audit_maybe_closed(a);
}
