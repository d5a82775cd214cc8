/*
 * outbox: the durable alert outbox on disk, state_dir/outbox/.
 *
 * Owns the file layout: one file per pending delivery, "<seq, 16 digits>-<channel>.json" holding
 * the AlertMsg as JSON (alertfmt_msg_to_json), written with lib/atomicfile (temp, fsync, rename,
 * fsync dir) before any attempt to send, unlinked (and the directory fsynced) only once the
 * channel accepted it. Dead letters (refused by the channel, or out of attempts) move to
 * outbox/dead/ under the same name. Sequence numbers survive restarts: the next one is derived
 * from the highest present in either directory. No secrets are ever written here.
 *
 * EVERY FUNCTION HERE BLOCKS (file I/O and fsync): the daemon calls them on the thread pool.
 */
#ifndef DRSUP_OUTBOX_H
#define DRSUP_OUTBOX_H

#include <stddef.h>
#include <stdint.h>

#include "alerts/alertfmt.h"

/* "<dir>/<seq>-<channel>.json" into out. */
void outbox_path(const char *dir, uint64_t seq, AlertChannel ch, char *out, size_t n);

/* Create dir and dir/dead (0700) if missing. 0 or -errno. */
int outbox_prepare(const char *dir);

/* Durably write the message `json_text` as its file (mode 0600). 0 or -errno. */
int outbox_write(const char *dir, uint64_t seq, AlertChannel ch, const char *json_text);

/* Durably remove a delivered message (absent counts as removed). 0 or -errno. */
int outbox_remove(const char *dir, uint64_t seq, AlertChannel ch);

/* Durably move a message to dir/dead/. 0 or -errno. */
int outbox_bury(const char *dir, uint64_t seq, AlertChannel ch);

typedef struct OutboxLoad {
    AlertMsg *msgs;      /* pending messages, by increasing seq */
    size_t n_msgs;
    AlertMsg *dead;      /* dead letters (at most the newest `max_dead`), by increasing seq */
    size_t n_dead;
    uint64_t max_seq;    /* highest seq seen anywhere (0 if none) */
    size_t n_bad;        /* unreadable files, moved to dead/ as "<name>.bad" */
    size_t n_temps;      /* leftover atomicfile temporaries removed */
} OutboxLoad;

/* Read every message in dir (and dead/). Files that do not parse are set aside. 0 or -errno. */
int outbox_load(const char *dir, size_t max_dead, OutboxLoad *ret);
void outbox_load_done(OutboxLoad *l);

#endif
