/*
 * journal: a durable, append-only, checksummed record log (the scenario engine's write-ahead log).
 *
 * Owns one journal file and its records. A record is a 20-byte little-endian header
 *
 *     offset  0  u32  magic   0x314A5244 (the bytes "DRJ1")
 *     offset  4  u32  length  payload length in bytes (at most JOURNAL_MAX_RECORD)
 *     offset  8  u32  crc     zlib crc32 of header bytes 0..7, then 12..19, then the payload
 *     offset 12  u64  seq     1 for the first record of the file, +1 for each next record
 *
 * followed by `length` bytes of payload (opaque to the journal; the engine writes JSON text).
 * Records follow each other with no padding; the file has no other header (docs/engine.md).
 *
 * Durability: journal_append writes the whole record at the end of the file and fsyncs the file
 * before returning 0, so a record the caller was told about survives a crash. Creating the file
 * fsyncs it and its directory.
 *
 * Recovery (journal_open): every record is verified (magic, length, checksum, sequence). A bad
 * record with no valid record anywhere after it is a torn tail (a write interrupted by a crash):
 * it is reported in JournalOpenInfo, truncated away (ftruncate + fsync), and new appends follow the
 * last good record. A bad record FOLLOWED by a valid one is real corruption: journal_open fails with
 * DR_ECORRUPT and the offset of the bad record, and nothing is modified. A corrupt record is never
 * silently skipped.
 *
 * Failures while appending: a failed write is undone by truncating back to the previous end (if
 * that fails too the journal is "broken"); a failed fsync always breaks the journal (after an fsync
 * error the state of the page cache is unknown). A broken journal fails every later append with
 * its first error; the owner must journal_free it and journal_open the file again.
 *
 * The file is locked (flock LOCK_EX|LOCK_NB) while open: a second journal_open of the same file,
 * from this or another process, fails with DR_EBUSY.
 *
 * THREADS: journal_open and journal_append BLOCK (read, write, fsync): call them from the libuv
 * thread pool, never on the loop thread. journal_append is serialised by an internal mutex.
 * journal_append_async is the loop-thread interface: it runs appends on the thread pool one at a
 * time, in submission order, and calls back on the loop.
 */
#ifndef DRSUP_JOURNAL_H
#define DRSUP_JOURNAL_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define JOURNAL_MAGIC 0x314A5244u
#define JOURNAL_HEADER_SIZE 20u
#define JOURNAL_MAX_RECORD (16u * 1024u * 1024u)

/* An open journal; owned by the caller from journal_open to journal_free. */
typedef struct Journal Journal;

/* One record replayed by journal_open; points into memory owned by the Journal. */
typedef struct JournalRecord {
    uint64_t seq;        /* sequence number (1, 2, ...) */
    uint64_t offset;     /* byte offset of the record header in the file */
    const char *payload; /* `len` bytes, followed by a NUL not counted in len */
    size_t len;
} JournalRecord;

/* What journal_open found. */
typedef struct JournalOpenInfo {
    int created;             /* 1 if the file did not exist and was created */
    size_t records;          /* valid records replayed */
    uint64_t torn_offset;    /* offset of the dropped torn tail (valid when torn_bytes > 0) */
    uint64_t torn_bytes;     /* bytes truncated away at the end (0: the file ended cleanly) */
    char torn_reason[128];   /* why the tail was dropped, "" when torn_bytes == 0 */
    uint64_t corrupt_offset; /* on DR_ECORRUPT: offset of the bad record */
} JournalOpenInfo;

/*
 * Opens (creating it with mode 0600 if absent) the journal at path, replays and verifies every
 * record, and truncates a torn tail. Blocking. On success *ret_journal is the journal, with the
 * replayed records available through journal_record_count/journal_record_at. Returns 0, -errno,
 * DR_EBUSY (locked by someone else) or DR_ECORRUPT (a bad record in the middle; info->corrupt_offset
 * says where). On failure err (if non-NULL) holds a one-line message naming the path and offset;
 * info (if non-NULL) is filled in either case.
 */
int journal_open(const char *path, Journal **ret_journal, JournalOpenInfo *info, char *err,
                 size_t errlen);

/* Closes the file and frees everything. No async append may be pending (see journal_pending).
 * journal_free(NULL) is a no-op. */
void journal_free(Journal *j);

/* Number of records replayed at open (records appended since are not kept in memory). */
size_t journal_record_count(const Journal *j);

/* The i-th replayed record (0-based), or NULL if i is out of range. */
const JournalRecord *journal_record_at(const Journal *j, size_t i);

/* Sequence number the next append will get. */
uint64_t journal_next_seq(const Journal *j);

/* Current size of the file in bytes (end of the last good record). */
uint64_t journal_size(const Journal *j);

/*
 * Appends one record and fsyncs it. Blocking: thread pool only. len must be at most
 * JOURNAL_MAX_RECORD (else -EFBIG). Returns 0 with the record's sequence number in *ret_seq (if
 * non-NULL), or -errno; after a failure see "Failures while appending" above.
 */
int journal_append(Journal *j, const void *payload, size_t len, uint64_t *ret_seq);

/* Completion of journal_append_async, on the loop thread: status 0 or -errno, seq of the record. */
typedef void (*JournalAppendCb)(Journal *j, int status, uint64_t seq, void *data);

/*
 * Loop-thread append: copies payload, queues it, and calls cb(j, status, seq, data) on the loop once
 * the record is durable (or failed). Appends run on the thread pool one at a time, in submission
 * order, so callbacks also come in submission order. All async appends of one journal must use the
 * same loop. Returns 0 if queued (cb will be called exactly once), or -errno (cb not called).
 */
int journal_append_async(uv_loop_t *loop, Journal *j, const void *payload, size_t len,
                         JournalAppendCb cb, void *data);

/* Number of async appends queued or running (journal_free requires 0). */
size_t journal_pending(const Journal *j);

#endif
