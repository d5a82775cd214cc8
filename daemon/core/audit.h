/*
 * audit: the append-only, hash-chained audit log (state_dir/audit.log; docs/audit.md).
 *
 * Owns the log file and its head (state_dir/audit.head: the last record's seq and hash, written
 * atomically after every batch), the chain (each record carries the SHA-256 of the one before
 * and its own, so an edited, inserted or removed record breaks it, and a cut-off end no longer
 * matches the head), the writer (batches appended and fdatasync'ed on the thread pool, never on
 * the loop), and the `audit` control command (records since T, and a verification of the whole
 * file and the rotated files kept, both read on the thread pool), and rotation (audit.log.1 ..
 * audit.log.<keep>, the chain going on across the files). Records: every command that needs the operator role
 * (who: uid and pid; the arguments; the outcome, when it is answered, refusals included) and every
 * event the daemon emits except the probes' own (halts, resumes, runs and their steps, backups,
 * conditions opened and closed, reloads).
 */
#ifndef DRSUP_AUDIT_H
#define DRSUP_AUDIT_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/control.h"
#include "core/events.h"
#include "core/roles.h"

typedef struct Audit Audit;

/* Not opened yet. NULL on -ENOMEM. */
Audit *audit_new(uv_loop_t *loop, EventBus *events, Control *control);
/*
 * Open (or create, 0600) state_dir/audit.log and read where the chain stands (blocking: call
 * before the loop runs), subscribe to the events bus and register `audit`. A log whose last
 * record does not match the head is reported (a critical audit.tampered event) and continued. 0,
 * or a negative code with the reason in err.
 */
int audit_open(Audit *a, const char *state_dir, char *err, size_t errlen);
/* Rotate audit.log once it has grown past max_bytes (0: never), keeping `keep` rotated files
 * (audit.log.1 the newest). Before audit_open, and at each reload. */
void audit_set_rotation(Audit *a, uint64_t max_bytes, int keep);
/* One operator command and its outcome (result 0, or the error code and message). */
void audit_command(Audit *a, const PeerCred *peer, const char *command, const json_t *args, int result,
                   const char *error);
/* Flush what is queued, then close. */
void audit_close(Audit *a, void (*closed_cb)(void *data), void *data);

/*
 * Check a log, its kept rotated files and its head (pure file work, blocking: the thread pool or a
 * test). Fills *ret with {"ok": bool, "records": N, "first_seq": S, "files": [...], "start": "..."
 * (when older records were rotated out), "error": "..." (the first break)}; 0, or a negative code
 * when the log cannot be read.
 */
int audit_verify_file(const char *log_path, const char *head_path, json_t **ret);
/*
 * The records of the log and its kept rotated files (oldest first) whose time is in [from_ms,
 * to_ms] or whose "run" is `run` (may be NULL), at most `max` (the newest). Blocking: the thread
 * pool. 0 with *ret a new array, or a negative code.
 */
int audit_read_records(const char *log_path, int64_t from_ms, int64_t to_ms, const char *run, size_t max,
                       json_t **ret);

#endif
