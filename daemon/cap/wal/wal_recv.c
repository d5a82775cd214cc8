/*
 * wal_recv: the WAL receiver on the loop (see wal_internal.h and docs/wal.md).
 *
 * Owns the replication conversation with the primary, one command at a time on a nonblocking
 * libpq connection (lib/pgconn, replication=true): IDENTIFY_SYSTEM (system id, timeline, end of
 * WAL), SHOW wal_segment_size, READ_REPLICATION_SLOT (CREATE_REPLICATION_SLOT ... PHYSICAL
 * RESERVE_WAL when it is missing), TIMELINE_HISTORY for a timeline the archive lacks, then
 * START_REPLICATION SLOT s PHYSICAL X/Y TIMELINE t: XLogData ('w') appended to the segment in
 * memory, keepalives ('k') answered, standby status updates ('r') sent with the position that is
 * durable in the archive as "flush", so the slot keeps every byte not yet sealed. When the
 * primary ends the stream at the end of a timeline it names the next one: the segment is closed
 * as that timeline's partial end and streaming goes on on the next timeline from the start of the
 * segment. Any failure drops the connection and reconnects after a backoff (lib/backoff).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "cap/wal/wal_internal.h"
#include "clock.h"
#include "err.h"
#include "log.h"

/* Microseconds between the Unix epoch and PostgreSQL's (2000-01-01). */
#define WAL_PG_EPOCH_US 946684800000000LL

static uint64_t wal_be64(const char *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | (uint8_t)p[i];
    return v;
}

static void wal_put_be64(char *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (char)(v & 0xff);
}

static uint64_t wal_recv_pos(const WalArchive *w)
{
    return wal__seg_start(w, w->segno) + w->recv_off;
}

void wal__recv_status(WalArchive *w, bool reply)
{
    char msg[34];
    if (!pgconn_is_streaming(w->pg))
        return;
    msg[0] = 'r';
    wal_put_be64(msg + 1, wal_recv_pos(w));  /* written */
    wal_put_be64(msg + 9, w->flushed_lsn);   /* flushed: durable in the archive */
    wal_put_be64(msg + 17, 0);               /* applied: nothing is applied here */
    wal_put_be64(msg + 25, (uint64_t)(clock_wall_ms() * 1000 - WAL_PG_EPOCH_US));
    msg[33] = reply ? 1 : 0;
    w->last_status_at = uv_now(w->core->loop);
    (void)pgconn_copy_put(w->pg, msg, sizeof(msg)); /* a failure reaches the done callback */
}

static void wal_on_retry(uv_timer_t *t)
{
    wal__recv_start(t->data);
}

void wal__recv_stop(WalArchive *w)
{
    uv_timer_stop(&w->retry);
    if (w->pg) {
        PgConn *pg = w->pg;
        w->pg = NULL;
        pgconn_close(pg, NULL, NULL);
    }
}

void wal__recv_fail(WalArchive *w, const char *msg)
{
    uint64_t ms;
    if (w->closing)
        return;
    if (strcmp(w->last_error, msg) != 0 || w->failures == 0)
        log_warning("wal", "receiver: %s", msg);
    snprintf(w->last_error, sizeof(w->last_error), "%s", msg);
    wal__recv_stop(w);
    /* what was received is sealed now, not at the next tick: a primary that died took its slot
     * with it, and these bytes may be the only copy of its last commits */
    wal__seal(w);
    w->failures++;
    ms = backoff_ms(200, 5000, w->failures);
    wal__set_phase(w, WAL_BACKOFF);
    uv_timer_start(&w->retry, wal_on_retry, ms, 0);
}

/* ---- streaming --------------------------------------------------------------------------------- */

static void wal_on_xlogdata(WalArchive *w, const char *msg, size_t len)
{
    uint64_t start = wal_be64(msg + 1), end = wal_be64(msg + 9);
    const uint8_t *data = (const uint8_t *)msg + 25;
    size_t n = len - 25;
    char want[24], got[24];

    if (start != wal_recv_pos(w)) {
        char why[160];
        walarchive_lsn_str(wal_recv_pos(w), want);
        walarchive_lsn_str(start, got);
        snprintf(why, sizeof(why), "the primary sent WAL at %s where %s was expected", got, want);
        wal__recv_fail(w, why);
        return;
    }
    if (end > w->server_lsn)
        w->server_lsn = end;
    while (n) {
        size_t room = (size_t)(w->seg_size - w->recv_off);
        size_t k = n < room ? n : room;
        if (w->recv_off == 0)
            w->seg_started_s = clock_wall_ms() / 1000;
        memcpy(w->buf + w->recv_off, data, k);
        w->recv_off += k;
        data += k;
        n -= k;
        if (w->recv_off == w->seg_size)
            wal__segment_full(w);
        if (!w->buf) {
            wal__recv_fail(w, "out of memory for the next segment");
            return;
        }
    }
    if (wal_recv_pos(w) > w->server_lsn)
        w->server_lsn = wal_recv_pos(w);
}

static void wal_on_copy(PgConn *c, const char *msg, size_t len, void *data)
{
    WalArchive *w = data;
    (void)c;
    w->last_recv_at = uv_now(w->core->loop);
    if (len >= 25 && msg[0] == 'w') {
        wal_on_xlogdata(w, msg, len);
        if (w->cfg.synchronous && w->pg == c)
            wal__seal(w); /* a commit may be waiting: no flush_interval */
    } else if (len >= 18 && msg[0] == 'k') {
        uint64_t end = wal_be64(msg + 1);
        if (end > w->server_lsn)
            w->server_lsn = end;
        if (msg[17])
            wal__recv_status(w, false);
    } else {
        char why[96];
        snprintf(why, sizeof(why), "unexpected message from the primary ('%c', %zu bytes)",
                 len ? (msg[0] >= 32 && msg[0] < 127 ? msg[0] : '?') : '?', len);
        wal__recv_fail(w, why);
    }
}

static void wal_start_streaming(WalArchive *w);

/* The stream ended: the end of a timeline (a tuple naming the next one) or the primary stopping. */
static void wal_on_stream_done(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    WalArchive *w = data;
    char why[640];
    (void)c;
    if (w->closing || c != w->pg)
        return;
    if (status != 0) {
        const char *state = pgconn_last_sqlstate(c);
        if (!strcmp(state, "58P01") && strstr(errmsg ? errmsg : "", "removed")) {
            /* the WAL we need is gone from the primary: a hole; go on from where the slot is */
            uint64_t from = wal_recv_pos(w);
            uint64_t to = w->slot_restart_lsn > from ? w->slot_restart_lsn : w->server_lsn;
            to -= to % w->seg_size;
            if (to <= from)
                to = wal__seg_start(w, w->segno + 1);
            snprintf(why, sizeof(why), "the primary no longer has the WAL the archive needs: %s", errmsg);
            wal__gap(w, from, to, why);
            w->segno = to / w->seg_size;
            w->recv_off = w->sealed_off = 0;
            w->flushed_lsn = to;
        }
        snprintf(why, sizeof(why), "streaming ended: %s", errmsg ? errmsg : "error");
        wal__recv_fail(w, why);
        return;
    }
    if (res && PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 && PQnfields(res) >= 2) {
        uint64_t next_start;
        unsigned long next_tli = strtoul(PQgetvalue(res, 0, 0), NULL, 10);
        if (walarchive_parse_lsn(PQgetvalue(res, 0, 1), &next_start) < 0 || next_tli <= w->tli ||
            next_tli > UINT32_MAX) {
            wal__recv_fail(w, "the end of the timeline named no valid next timeline");
            return;
        }
        log_info("wal", "timeline %" PRIu32 " ended at %s; following timeline %lu", w->tli, PQgetvalue(res, 0, 1),
                 next_tli);
        wal__timeline_end(w, next_start);
        w->tli = (uint32_t)next_tli;
        if (!w->buf) {
            wal__recv_fail(w, "out of memory for the next segment");
            return;
        }
        wal__set_phase(w, WAL_SLOT);
        wal_start_streaming(w);
        return;
    }
    wal__recv_fail(w, "the primary ended the stream (shutting down?)");
}

int wal_history_switch_point(const char *content, size_t len, uint32_t history_tli, uint32_t tli, uint64_t *ret_lsn,
                             uint32_t *ret_next)
{
    const char *p = content, *end = content + len;
    bool found = false;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *eol = nl ? nl : end;
        char line[160];
        unsigned long parent;
        char lsn[40];
        size_t n = (size_t)(eol - p) < sizeof(line) - 1 ? (size_t)(eol - p) : sizeof(line) - 1;
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl ? nl + 1 : end;
        if (sscanf(line, "%lu %39s", &parent, lsn) != 2)
            continue; /* a comment or an empty line */
        if (found) { /* the timeline after tli is the next line's parent */
            *ret_next = (uint32_t)parent;
            return 0;
        }
        if (parent == tli && walarchive_parse_lsn(lsn, ret_lsn) == 0)
            found = true;
    }
    if (!found)
        return -ENOENT;
    *ret_next = history_tli;
    return 0;
}

/* The primary is on a later timeline that branched off the archive's before where the archive
 * ends (a point-in-time recovery went back, or a promoted standby had not received everything):
 * what the archive holds after the branch point is a history nobody follows. The segment being
 * received ends there as the timeline's last, partial segment, and archiving goes on on the
 * primary's timeline from the branch point, as at a timeline's end. */
static void wal_follow_branch(WalArchive *w, const char *content, size_t len)
{
    uint64_t at;
    uint32_t next;
    char a[24], b[24];
    if (w->fresh || w->server_tli <= w->tli ||
        wal_history_switch_point(content, len, w->server_tli, w->tli, &at, &next) < 0 || wal_recv_pos(w) <= at ||
        next <= w->tli)
        return;
    walarchive_lsn_str(at, a);
    walarchive_lsn_str(wal_recv_pos(w), b);
    events_emit(w->core->events, SEV_WARNING, "wal.branch", NULL, false, NULL,
                "timeline %" PRIu32 " branched off timeline %" PRIu32 " at %s, before the archive's end %s (a "
                "point-in-time recovery or a promotion that lost WAL): the archive goes on on timeline %" PRIu32
                " from %s; its WAL after %s on timeline %" PRIu32 " is kept but followed by nothing",
                next, w->tli, a, b, next, a, a, w->tli);
    if (w->flushed_lsn > at)
        w->flushed_lsn = at; /* what the new timeline has of it is durable here up to the branch point */
    wal__timeline_end(w, at);
    w->tli = next;
}

static void wal_on_history(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    WalArchive *w = data;
    char why[600];
    if (w->closing || c != w->pg)
        return;
    if (status != 0 || !res || PQntuples(res) != 1 || PQnfields(res) < 2) {
        snprintf(why, sizeof(why), "TIMELINE_HISTORY: %s", errmsg ? errmsg : "no answer");
        wal__recv_fail(w, why);
        return;
    }
    if (!wal__history_known(w, w->server_tli))
        wal__history(w, w->server_tli, PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
    w->branch_checked = true;
    wal_follow_branch(w, PQgetvalue(res, 0, 1), (size_t)PQgetlength(res, 0, 1));
    wal_start_streaming(w);
}

static void wal_start_streaming(WalArchive *w)
{
    char sql[256], lsn[24];
    int r;
    /* the primary's history: to archive it, and to see whether its timeline branched off ours */
    if (w->server_tli > 1 && (!wal__history_known(w, w->server_tli) ||
                              (w->server_tli > w->tli && !w->fresh && !w->branch_checked))) {
        snprintf(sql, sizeof(sql), "TIMELINE_HISTORY %" PRIu32, w->server_tli);
        r = pgconn_simple_query(w->pg, sql, wal_on_history, w);
        if (r < 0)
            wal__recv_fail(w, err_str(r));
        return;
    }
    if (w->fresh) {
        /* a new archive: from the start of the segment the slot (else the primary) is at */
        uint64_t from = w->slot_restart_lsn ? w->slot_restart_lsn : w->server_lsn;
        char name[WAL_NAME_LEN + 1];
        w->fresh = false;
        w->tli = w->server_tli;
        w->segno = from / w->seg_size;
        w->recv_off = w->sealed_off = 0;
        walarchive_seg_name(w->tli, w->segno, w->seg_size, name);
        log_info("wal", "new archive in %s, starting with segment %s", w->cfg.directory, name);
    }
    walarchive_lsn_str(wal_recv_pos(w), lsn);
    snprintf(sql, sizeof(sql), "START_REPLICATION SLOT %s PHYSICAL %s TIMELINE %" PRIu32, w->cfg.slot, lsn, w->tli);
    r = pgconn_copy_both(w->pg, sql, wal_on_copy, wal_on_stream_done, w);
    if (r < 0) {
        wal__recv_fail(w, err_str(r));
        return;
    }
    log_info("wal", "streaming from %s on timeline %" PRIu32 " over slot %s", lsn, w->tli, w->cfg.slot);
    w->failures = 0;
    w->last_error[0] = '\0';
    w->last_recv_at = uv_now(w->core->loop);
    wal__set_phase(w, WAL_STREAMING);
}

/* ---- the slot ------------------------------------------------------------------------------- */

static void wal_on_slot_created(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    WalArchive *w = data;
    char why[600];
    (void)res;
    if (w->closing || c != w->pg)
        return;
    if (status != 0) {
        snprintf(why, sizeof(why), "CREATE_REPLICATION_SLOT %s: %s", w->cfg.slot, errmsg ? errmsg : "failed");
        wal__recv_fail(w, why);
        return;
    }
    events_emit(w->core->events, SEV_INFO, "wal.slot", NULL, false, NULL, "created the physical replication slot %s",
                w->cfg.slot);
    wal_start_streaming(w);
}

static void wal_on_slot(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    WalArchive *w = data;
    char why[600];
    if (w->closing || c != w->pg)
        return;
    if (status != 0 || !res || PQntuples(res) != 1 || PQnfields(res) < 3) {
        snprintf(why, sizeof(why), "READ_REPLICATION_SLOT %s: %s", w->cfg.slot, errmsg ? errmsg : "no answer");
        wal__recv_fail(w, why);
        return;
    }
    w->slot_existed = !PQgetisnull(res, 0, 0);
    w->slot_restart_lsn = 0;
    if (w->slot_existed && !PQgetisnull(res, 0, 1))
        (void)walarchive_parse_lsn(PQgetvalue(res, 0, 1), &w->slot_restart_lsn);
    if (w->slot_existed) {
        wal_start_streaming(w);
        return;
    }
    if (w->flushed_lsn) {
        /* the archive has WAL the slot was keeping for it: the slot was dropped */
        char end[24];
        walarchive_lsn_str(w->flushed_lsn, end);
        snprintf(why, sizeof(why), "the replication slot %s is gone (dropped?): WAL after %s is missing unless the "
                                   "primary still has it", w->cfg.slot, end);
        events_emit(w->core->events, SEV_WARNING, "wal.slot", NULL, false, NULL, "%s", why);
    }
    if (!w->cfg.create_slot) {
        snprintf(why, sizeof(why), "the replication slot %s does not exist (wal.create_slot is false)", w->cfg.slot);
        wal__recv_fail(w, why);
        return;
    }
    char sql[160];
    snprintf(sql, sizeof(sql), "CREATE_REPLICATION_SLOT %s PHYSICAL RESERVE_WAL", w->cfg.slot);
    int r = pgconn_simple_query(w->pg, sql, wal_on_slot_created, w);
    if (r < 0)
        wal__recv_fail(w, err_str(r));
}

void wal__recv_scanned(WalArchive *w)
{
    char sql[160];
    if (!w->pg) {
        wal__recv_start(w);
        return;
    }
    wal__set_phase(w, WAL_SLOT);
    snprintf(sql, sizeof(sql), "READ_REPLICATION_SLOT %s", w->cfg.slot);
    int r = pgconn_simple_query(w->pg, sql, wal_on_slot, w);
    if (r < 0)
        wal__recv_fail(w, err_str(r));
}

/* ---- connect --------------------------------------------------------------------------------- */

static int wal_parse_size(const char *s, uint64_t *ret)
{
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    uint64_t mult = 1;
    if (end == s)
        return -EINVAL;
    if (!strcmp(end, "kB"))
        mult = 1024;
    else if (!strcmp(end, "MB"))
        mult = 1024 * 1024;
    else if (!strcmp(end, "GB"))
        mult = 1024ull * 1024 * 1024;
    else if (*end)
        return -EINVAL;
    *ret = v * mult;
    return 0;
}

static void wal_on_segsize(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    WalArchive *w = data;
    uint64_t size = 0;
    char why[600];
    if (w->closing || c != w->pg)
        return;
    if (status != 0 || !res || PQntuples(res) != 1 || wal_parse_size(PQgetvalue(res, 0, 0), &size) < 0 ||
        size < (1u << 20) || size > (1u << 30) || (size & (size - 1))) {
        snprintf(why, sizeof(why), "SHOW wal_segment_size: %s", errmsg ? errmsg : "not a segment size");
        wal__recv_fail(w, why);
        return;
    }
    if (w->scanned && size != w->seg_size) {
        snprintf(why, sizeof(why), "the primary's wal_segment_size changed (%" PRIu64 " -> %" PRIu64 ")", w->seg_size,
                 size);
        wal__recv_fail(w, why);
        return;
    }
    w->seg_size = size;
    if (w->scanned) {
        wal__recv_scanned(w);
        return;
    }
    wal__set_phase(w, WAL_SCANNING);
    WalJob *j = wal__job_new(w, WAL_JOB_SCAN);
    if (!j) {
        wal__recv_fail(w, "out of memory");
        return;
    }
    wal__push_job(w, j); /* its completion calls wal__recv_scanned */
}

static void wal_on_identify(PgConn *c, int status, const PGresult *res, const char *errmsg, void *data)
{
    WalArchive *w = data;
    char why[600];
    uint64_t lsn = 0;
    if (w->closing || c != w->pg)
        return;
    if (status != 0 || !res || PQntuples(res) != 1 || PQnfields(res) < 3 ||
        walarchive_parse_lsn(PQgetvalue(res, 0, 2), &lsn) < 0) {
        snprintf(why, sizeof(why), "IDENTIFY_SYSTEM: %s", errmsg ? errmsg : "unexpected answer");
        wal__recv_fail(w, why);
        return;
    }
    if (w->systemid[0] && strcmp(w->systemid, PQgetvalue(res, 0, 0)) != 0) {
        snprintf(why, sizeof(why), "the primary is another cluster (system id %s, the archive's is %s): not archived",
                 PQgetvalue(res, 0, 0), w->systemid);
        wal__recv_fail(w, why);
        return;
    }
    snprintf(w->systemid, sizeof(w->systemid), "%s", PQgetvalue(res, 0, 0));
    unsigned long tli = strtoul(PQgetvalue(res, 0, 1), NULL, 10);
    w->server_tli = tli > 0 && tli <= UINT32_MAX ? (uint32_t)tli : 1;
    if (lsn > w->server_lsn)
        w->server_lsn = lsn;
    int r = pgconn_simple_query(w->pg, "SHOW wal_segment_size", wal_on_segsize, w);
    if (r < 0)
        wal__recv_fail(w, err_str(r));
}

/* conninfo + replication=true and our application_name (a later keyword wins in libpq). */
static char *wal_conninfo(const ConfigWal *cfg)
{
    const char *ci = cfg->conninfo;
    bool uri = pgconn_conninfo_is_uri(ci);
    size_t n = strlen(ci) + strlen(cfg->application_name) + 64;
    char *s = malloc(n);
    if (!s)
        return NULL;
    if (uri)
        snprintf(s, n, "%s%sreplication=true&application_name=%s", ci, strchr(ci, '?') ? "&" : "?",
                 cfg->application_name);
    else
        snprintf(s, n, "%s replication=true application_name=%s", ci, cfg->application_name);
    return s;
}

void wal__recv_start(WalArchive *w)
{
    char *msg = NULL;
    if (w->closing || !w->cfg.enabled)
        return;
    if (!leader_acting(w->core->leader)) {
        /* high availability: one receiver, the leader's (its slot, its archive); retried */
        char why[256];
        leader_refusal(w->core->leader, why, sizeof(why));
        wal__recv_fail(w, why);
        return;
    }
    wal__recv_stop(w);
    w->branch_checked = false;
    char *ci = wal_conninfo(&w->cfg);
    PgConnOptions opts = {.connect_timeout_ms = w->cfg.timeout_ms, .query_timeout_ms = w->cfg.timeout_ms,
                          .reconnect_min_ms = 100, .reconnect_max_ms = 100};
    if (ci)
        w->pg = pgconn_new_msg(w->core->loop, ci, &opts, &msg);
    free(ci);
    if (!w->pg) {
        char why[600];
        snprintf(why, sizeof(why), "wal.conninfo: %s", msg ? msg : "out of memory");
        free(msg);
        wal__recv_fail(w, why);
        return;
    }
    wal__set_phase(w, WAL_CONNECTING);
    int r = pgconn_simple_query(w->pg, "IDENTIFY_SYSTEM", wal_on_identify, w);
    if (r < 0)
        wal__recv_fail(w, err_str(r));
}
