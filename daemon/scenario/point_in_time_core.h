/*
 * point_in_time_core: the run-independent cores of point_in_time's steps, for the modules that
 * build a point-in-time recovery of their own without a run or a journal (the drills of
 * point_in_time, data_loss and security_breach, drill_pitr.c) as well as point_in_time's own steps.
 *
 * Owns the shape of a recovery's settings (PitrConfig: scenarios.point_in_time's keys, which
 * data_loss's section and security_breach's pitr: subsection reuse) with their reader's copy and
 * release, the recovered cluster's directories (PitrRun), and the cores: where a recovered cluster
 * is built and how its directories are named, the recovery target's text, the base backup's
 * unpack, pg_ctl's argv, the promotion check, and the file work of a recovery on the thread pool
 * (PitrWork and its workers). Nothing here knows a run, a step or the journal; the steps
 * themselves and the section's reader are point_in_time_internal.h's.
 */
#ifndef DRSUP_SCN_POINT_IN_TIME_CORE_H
#define DRSUP_SCN_POINT_IN_TIME_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <libpq-fe.h>
#include <uv.h>

#include "cap/backup/backup.h"

typedef struct PitrConfig {
    char *data_directory;    /* the live cluster's data directory (its owner is the server's user) */
    char *scratch_directory; /* where the recovered cluster is built; default: data_directory's parent */
    char *pg_ctl;            /* pg_ctl of the server's version */
    char *tar;               /* tar that unpacks the base backup (reads it on stdin) */
    char **run_as;           /* prefix argv for pg_ctl and tar (runuser -u postgres --); may be empty */
    size_t n_run_as;
    int64_t side_port;       /* the recovered server listens here until it is switched in (0: unset) */
    uint64_t start_timeout_ms; /* from pg_ctl start to promotion */
    uint64_t switch_timeout_ms;
    char **validation_queries; /* on the recovered server, before the switch; none: SELECT 1 */
    size_t n_validation_queries;
    char **switch_command;   /* argv: puts the recovered cluster in the live one's place (idempotent) */
    size_t n_switch_command;
} PitrConfig;

struct ScnRun;
/* The run's own context: where the recovered cluster is built (named from the run's tag). A run
 * of another scenario without a "target_ms" parameter names how its target is found here in its
 * ctx_init, after pitr__ctx_init (security_breach: T, exclusive; the run's parameters are set only
 * after ctx_init, hence a function). */
typedef struct PitrRun {
    char data_dir[4096];
    char wal_dir[4096];
    char log[4200];
    int64_t (*target_ms)(const struct ScnRun *run); /* the target without a "target_ms" parameter; may be NULL */
    bool exclusive;    /* recovery_target_inclusive = off: stop just before the target */
    struct SyncTreeTicker *writeback; /* restore_base_backup: the unpacked tree's writeback started
                                       * every PITR_WRITEBACK_MS while tar writes it; NULL otherwise */
} PitrRun;

/* A PitrConfig copied and released (point_in_time_config.c; its reader is point_in_time_internal.h's). */
int pitr__config_copy(const void *src, void *dst);
void pitr__config_done(void *data);

/* Run-independent cores of the steps (inputs: the section's settings, paths, port, target; no run,
 * no journal): the steps above call them, and so does the point_in_time drill (drill_pitr.c). */
/* Where recovered clusters are built: scratch_directory, else data_directory's parent ("" neither). */
void pitr__scratch_parent(const PitrConfig *c, char *out, size_t n);
/* p's data_dir, wal_dir and log named "<parent>/<prefix>-<tag>.data" / ".wal" (target_ms untouched). */
void pitr__name_dirs(const char *parent, const char *prefix, const char *tag, PitrRun *p);
/* T as recovery_target_time ("2026-12-03T10:16:05.123+00"). */
void pitr__target_text(int64_t ms, char *out, size_t n);
/* Base backup `name` verified, decrypted and unpacked by c's tar (as c's run_as) into data_dir,
 * bounded by c's start_timeout (backup_unpack_base's contract). */
int pitr__unpack_base(Backups *b, const PitrConfig *c, const char *name, const char *data_dir, BackupUnpackDoneFn done,
                      void *data, BackupUnpack **ret);
/* run_as + pg_ctl start of data_dir on port (log at log; -W) into v of cap entries (strings
 * borrowed; the port's option text written to portbuf). */
const char *const *pitr__pg_ctl_start_argv(const PitrConfig *c, const char *data_dir, const char *log, int64_t port,
                                           char *portbuf, size_t portlen, const char **v, size_t cap);
/* run_as + pg_ctl -D data_dir verb... (NULL-terminated, e.g. {"status"}) into v. */
const char *const *pitr__pg_ctl_argv(const PitrConfig *c, const char *data_dir, const char *const *verb, const char **v,
                                     size_t cap);
/* Does an answer to SELECT pg_is_in_recovery() say the server was promoted? */
bool pitr__promoted(const PGresult *res);
/* Is the recovered server still there? (point_in_time_server.c) pg_ctl status of data_dir (as c's
 * run_as); done(state, error, tail, data) once on the loop: state 1 it runs, -1 pg_ctl could not
 * tell, 0 no server runs there: tail is the end of its log at `log` (the last PITR_LOG_TAIL_LINES
 * lines, or why it could not be read), error its last FATAL or PANIC line ("" none). A server
 * that was just started may not have written its pid file yet: callers believe 0 only when a
 * second check, a poll later, says it again. 0, or a negative code (done is then never called). */
#define PITR_LOG_TAIL_LINES 20
#define PITR_ALIVE_EVERY_MS 1000u /* how often a wait whose polls fail asks */
typedef struct PitrServerCheck PitrServerCheck;
typedef void (*PitrServerFn)(int state, const char *error, const char *tail, void *data);
int pitr__server_check(uv_loop_t *loop, const PitrConfig *c, const char *data_dir, const char *log, PitrServerFn done,
                       void *data, PitrServerCheck **ret);
/* done is not called; the check frees itself when its child or its read ends. NULL: nothing. */
void pitr__server_check_cancel(PitrServerCheck *k);
/* error and tail as one line for a step's message (into out, n bytes): the error, then the end of
 * the log's lines, " | " between them, as many of the newest as fit. */
void pitr__server_gone_text(const char *error, const char *tail, char *out, size_t n);

/* One piece of a step's file work on the thread pool (point_in_time.c queues it; the workers in
 * point_in_time_files.c fill result and err). */
struct ScnStep;
typedef struct PitrWork PitrWork;
typedef void (*PitrWorkDone)(struct ScnStep *st, PitrWork *w);
struct PitrWork {
    uv_work_t req;
    struct ScnStep *st;
    int (*fn)(PitrWork *w);
    PitrWorkDone then;
    char live[4096], dir[4096], wal_dir[4096]; /* live data directory, recovered one, staged WAL */
    char target[64];                           /* recovery_target_time ("": to the end of the WAL) */
    bool exclusive;                            /* recovery_target_inclusive = off */
    char extra[512];                           /* more settings after the recovery ones ("" none; a drill's) */
    uid_t uid;                                 /* the server's user */
    gid_t gid;
    uint64_t synced_files, sync_ms;            /* pitr__sync_work's count and time */
    int result;
    char err[700];
};

/* Workers (blocking, thread pool only), 0 or -errno with err filled. The owner of the live data
 * directory into uid/gid, and the recovered one made empty, 0700 and theirs. */
int pitr__prepare_work(PitrWork *w);
/* The unpacked directory durable: every file and directory fsynced (synctree), then its entry in
 * its parent. */
int pitr__sync_work(PitrWork *w);
/* The recovery settings after the base backup's postgresql.auto.conf (kept aside as
 * postgresql.auto.conf.before-pitr, so running it again writes the same file), recovery.signal,
 * pg_wal/; all owned by uid:gid. */
int pitr__settings_work(PitrWork *w);
/* The base backup's postgresql.auto.conf back (nothing when the directory is gone: switched). */
int pitr__tidy_work(PitrWork *w);
/* The staged WAL removed. */
int pitr__unstage_work(PitrWork *w);
/* The recovered cluster's directory and its staged WAL removed (a drill's scratch cluster, stopped). */
int pitr__remove_work(PitrWork *w);

#endif
