/*
 * wal_internal: what the WAL archive's files share; not for other modules.
 *
 *   wal.c       the module: configuration, the archive's state and its jobs on the thread pool
 *               (scan, seal a piece, write a segment or a history file), conditions, wal_status,
 *               metrics
 *   wal_recv.c  the receiver on the loop: the replication protocol (IDENTIFY_SYSTEM, the slot,
 *               START_REPLICATION, XLogData and keepalives, standby status updates, the end of a
 *               timeline), reconnects
 *
 * The WalArchive is owned by the wiring (wal_new/wal_close); its jobs by their queue until done.
 */
#ifndef DRSUP_WAL_INTERNAL_H
#define DRSUP_WAL_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "bcf.h"
#include "cap/backup/backup.h"
#include "cap/wal/wal.h"
#include "pgconn.h"
#include "walarchive.h"

typedef enum {
    WAL_OFF = 0,     /* not configured */
    WAL_CONNECTING,  /* connect, IDENTIFY_SYSTEM, SHOW wal_segment_size */
    WAL_SCANNING,    /* the archive directory read (once), the key loaded */
    WAL_SLOT,        /* READ/CREATE_REPLICATION_SLOT, TIMELINE_HISTORY */
    WAL_STREAMING,   /* START_REPLICATION: COPY BOTH */
    WAL_BACKOFF,     /* waiting to reconnect after a failure */
} WalPhase;

typedef enum {
    WAL_JOB_SCAN,
    WAL_JOB_PIECE,
    WAL_JOB_SEGMENT,
    WAL_JOB_HISTORY,
    WAL_JOB_RETAIN,
    WAL_JOB_PLAN,
    WAL_JOB_STAGE,
    WAL_JOB_KEY, /* the writing key loaded again (wal_key_rotated) */
} WalJobKind;

/* One file of the archive as a listing sees it (wal_plan.c). */
typedef struct WalSeg {
    uint32_t tli;
    uint64_t segno;
    WalFileKind kind;   /* SEGMENT, PARTIAL_END or PARTIAL */
    int64_t mtime_ms;   /* when it was last written: a segment's completion, a partial's last seal */
    uint64_t size;
} WalSeg;

typedef struct WalScan WalScan;

typedef struct WalJob {
    uv_work_t work;
    struct WalJob *next;
    WalArchive *owner;
    WalJobKind kind;
    char *dir;
    char name[128];      /* the file written */
    char partial[128];   /* SEGMENT: the partial file removed after the segment is in place */
    uint32_t tli;
    uint64_t segno, offset, seg_size;
    uint8_t *data;       /* owned */
    size_t len;
    CodecKind codec;
    int64_t created_at;
    ConfigBackup *backup; /* SCAN, STAGE, KEY: the key ring's configuration (owned copy) */
    uint8_t key[BCF_KEY_LEN];      /* the key the segment being received is written with */
    uint8_t next_key[BCF_KEY_LEN]; /* SCAN, KEY: the writing key now (the ring's current) */
    WalScan *scan;       /* SCAN: the result */
    WalSeg *segs;        /* PLAN: the listing (owned); RETAIN: the candidates (ask) or the files to remove */
    size_t nsegs;
    CtlCall *call;       /* PLAN: the request answered when it is done */
    WalPlanFn plan_cb;   /* PLAN: or this callback (wal_plan) */
    WalStageFn stage_cb; /* STAGE: the callback (wal_stage) */
    void *cb_data;
    char *stage_dir;     /* STAGE: where the files go (owned) */
    uint64_t stage_to;   /* STAGE: the last segment wanted (j->segno the first) */
    uid_t uid;           /* STAGE: the files' owner */
    gid_t gid;
    uint64_t files, bytes; /* STAGE: written */
    bool ask;            /* RETAIN: list the candidates only; the loop asks may_go which of them go */
    bool listed;         /* RETAIN: remove exactly segs (what may_go allowed) */
    int result;
    char err[512];
} WalJob;

struct WalScan {
    uint64_t segments, bytes;     /* complete segments (and timeline-end partials) */
    bool have_oldest;
    uint32_t oldest_tli;
    uint64_t oldest_segno;
    int64_t oldest_mtime;
    bool have_newest;             /* the newest complete segment (or timeline end) */
    uint32_t newest_tli;
    uint64_t newest_segno;
    bool newest_is_end;           /* a timeline's last, partial segment of newest_len bytes */
    uint64_t newest_len;
    int64_t newest_mtime;
    bool have_partial;            /* the segment being received, read back */
    uint32_t partial_tli;
    uint64_t partial_segno, partial_len;
    uint8_t *partial_buf;         /* seg_size bytes, owned */
    bool partial_torn;
    char partial_err[512];        /* a piece failed verification: kept aside */
    json_t *gaps;                 /* [{from_segment, to_segment}] holes between oldest and newest */
    json_t *histories;            /* [tli, ...] */
    int removed_temporaries;
};

struct WalArchive {
    Core *core;
    Backups *backups;    /* the base backups the archive completes (retention, plans) */
    ConfigWal cfg;       /* own copy of what the receiver uses; conninfo as it follows the primary */
    PgConnFollow follow; /* wal_follow_primary */
    ConfigBackup backup; /* own copy: the key's configuration and the codec */
    bool registered;
    int subscription;    /* events bus: backup.done closes a gap */
    bool closing;
    unsigned pending;    /* handles open + a job running */
    void (*closed_cb)(void *data);
    void *closed_data;

    PgConn *pg;
    uv_timer_t tick;     /* every flush_interval: seal, status updates, conditions */
    uv_timer_t retry;    /* reconnect after the backoff */
    WalPhase phase;
    uint64_t phase_since;  /* uv_now when the phase began */
    uint64_t down_since;   /* uv_now since when not streaming (0 while streaming) */
    unsigned failures;
    char last_error[512];

    /* the primary */
    char systemid[32];
    uint32_t server_tli;
    uint64_t server_lsn;   /* the newest end of WAL the primary told us */
    uint64_t seg_size;
    bool slot_existed;
    uint64_t slot_restart_lsn;

    /* the archive */
    bool scanned;
    bool fresh;            /* a new archive: it starts at the slot's (or the primary's) segment */
    bool end_written;      /* the segment being received is a timeline's end, already archived */
    bool key_loaded;
    uint8_t key[BCF_KEY_LEN];      /* the segment being received is written with it */
    bool next_key_pending;         /* a rotated key for the segments from the next one on */
    uint8_t next_key[BCF_KEY_LEN];
    uint32_t tli;          /* the timeline being received */
    uint64_t segno;        /* the segment being received */
    uint8_t *buf;          /* seg_size bytes of it */
    uint64_t recv_off;     /* received into buf */
    uint64_t sealed_off;   /* handed to a piece job */
    int64_t seg_started_s; /* wall time of the segment's first byte */
    uint64_t flushed_lsn;  /* durable in the archive (what the primary is told is flushed) */
    int64_t flushed_at_ms; /* wall time flushed_lsn last advanced */
    uint64_t flushed_moved_at; /* uv_now of the same */
    uint64_t last_recv_at;     /* uv_now of the primary's last message */
    uint64_t last_status_at;   /* uv_now of our last status update */
    bool piece_inflight;
    uint64_t segments, bytes;
    bool have_oldest;
    uint32_t oldest_tli;
    uint64_t oldest_segno;
    int64_t oldest_time_s;
    json_t *gaps;          /* [{from, to, reason, at}] */
    json_t *histories;     /* [tli] */

    uint64_t retain_at;    /* uv_now of the last retention check */
    bool retain_pending;
    bool (*may_go)(const char *file, void *data); /* the off-site copy's say before a removal, or NULL */
    void *may_go_data;
    uint64_t held_offsite; /* segments retention keeps only because they are not off-site yet */

    /* jobs: one at a time, in order */
    WalJob *jobs_head, *jobs_tail;
    bool job_running;

    /* synchronous archiving (wal_sync.c) */
    PgConn *sync_pg;       /* a normal connection to the primary for synchronous_standby_names */
    bool sync_on;          /* the primary's synchronous_standby_names names the receiver */
    bool sync_busy;
    int sync_step;
    bool sync_foreign;     /* someone else's value: left alone */
    bool sync_fell_back;   /* suspended after the receiver was down; back once caught up */
    bool sync_page_open;   /* wal.sync:C */

    /* conditions */
    int lag_level;         /* 0 none, 1 warning, 2 critical */
    bool stalled_open;
    bool gap_open;
    bool branch_checked;   /* this connection compared the primary's history with the archive */
    CtlHandlerFn recover_fn; /* recover without dry_run (wal_set_recover_handler), or NULL */
    void *recover_data;
    uint64_t gap_lsn;      /* WAL before this may be missing: resolved by a base backup after it */
};

/* wal.c */
uint64_t wal__seg_start(const WalArchive *w, uint64_t segno);
void wal__push_job(WalArchive *w, WalJob *j);
WalJob *wal__job_new(WalArchive *w, WalJobKind kind);
/* The received segment is full: hand it to a SEGMENT job and start the next one. */
void wal__segment_full(WalArchive *w);
/* A timeline ended at lsn inside the segment being received: write what it holds as the
 * timeline's last, partial segment. */
void wal__timeline_end(WalArchive *w, uint64_t lsn);
/* Record a hole in the archive: WAL from `from` to `to` is not in it (reason for people). */
void wal__gap(WalArchive *w, uint64_t from, uint64_t to, const char *reason);
void wal__set_phase(WalArchive *w, WalPhase p);
void wal__history(WalArchive *w, uint32_t tli, const char *content, size_t len);
bool wal__history_known(const WalArchive *w, uint32_t tli);

/* wal_plan.c */
/* Worker: the archive's segment files (complete, timeline ends, partials), sorted by segment then
 * timeline. 0 or -errno. */
int wal__list(const char *dir, uint64_t seg_size, WalSeg **ret, size_t *ret_n);
void wal__retain_work(WalJob *j);
void wal__plan_work(WalJob *j);
/* Worker: the key archive file path is read with (partial: a .partial.drwal, whose first piece's
 * container starts after its length) into out, by the key id in its header: the job's key, else
 * the key ring's (j->backup). A file that is not a container gets the job's key (its reader says
 * what is wrong). 0, or DR_EKEY with err. */
int wal__file_key(const WalJob *j, const char *path, bool partial, uint8_t out[BCF_KEY_LEN], char *err, size_t n);
/* A rotated key, if one is pending and the segment being received has no piece yet, becomes the
 * writing key (a segment's pieces are all under one key). */
void wal__key_adopt(WalArchive *w);
/* Remove what no base backup needs (a job), unless a recovery runs or there is no base backup. */
void wal__retain(WalArchive *w);
void wal__retain_done(WalArchive *w, WalJob *j);
void wal__plan_done(WalArchive *w, WalJob *j);
void wal__stage_work(WalJob *j);
void wal__stage_done(WalJob *j);
/* recover (drctl recover --timestamp T --dry-run): the plan, answered when the listing is done. */
void wal__cmd_recover(CtlCall *call, const json_t *args, void *data);
/* The plan for recovering to target_ms from the physical backups' manifests (oldest first) and the
 * listing; partial_sealed_ms: when the partial was last sealed. A new object: ok, why, base_backup,
 * wal {from_segment, to_segment, segments, continuous, missing}, archive_end_ms, estimate_s.
 * Pure: exposed for tests. */
json_t *wal_plan_decide(const json_t *backups, const WalSeg *segs, size_t n, uint64_t seg_size, int64_t target_ms,
                        int64_t partial_sealed_ms);

/* wal_sync.c */
/* Turn synchronous archiving on (caught up), off (fallen back or configured off), every tick. */
void wal__sync_tick(WalArchive *w);
void wal__sync_stop(WalArchive *w);

/* wal.c */
/* Seal what was received and not yet sealed, now (one piece job at a time). */
void wal__seal(WalArchive *w);

/* wal_recv.c */
/* The switch point of timeline tli in the history file of timeline history_tli (content, len): where
 * the next timeline (*ret_next) begins. 0, or -ENOENT when tli is not in it. Pure: exposed for tests. */
int wal_history_switch_point(const char *content, size_t len, uint32_t history_tli, uint32_t tli, uint64_t *ret_lsn,
                             uint32_t *ret_next);
/* Connect (again) now. */
void wal__recv_start(WalArchive *w);
/* The scan finished: continue with the slot. */
void wal__recv_scanned(WalArchive *w);
/* Drop the connection; reconnect after the backoff (msg: why, for the log and wal_status). */
void wal__recv_fail(WalArchive *w, const char *msg);
/* Send a standby status update (write, flush positions); reply: ask the primary to answer. */
void wal__recv_status(WalArchive *w, bool reply);
/* Close the connection without reconnecting (shutdown, reconfiguration). */
void wal__recv_stop(WalArchive *w);

#endif
