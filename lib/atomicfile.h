/*
 * atomicfile: durable atomic file writes and bounded whole-file reads.
 *
 * Owns the project's file durability contract: a file appears under its final name only when it is
 * complete and on disk. Every write goes to a temporary in the SAME directory, named
 * ".<name>.tmp.<pid>.<random>", created O_EXCL with the requested mode (set exactly with fchmod,
 * regardless of the umask); the data is written (short writes and EINTR are retried), the
 * temporary fsynced and closed, renamed over the final name, and the directory fsynced.
 *
 * On any failure before the rename no temporary is left behind and the final path is untouched.
 * If only the final directory fsync fails, the new content is already in place under the final
 * name but its durability is not guaranteed; the error is still returned.
 *
 * EVERY FUNCTION HERE BLOCKS (write, fsync, rename): the daemon calls them from the libuv thread
 * pool (uv_queue_work), never on the loop thread. They are thread-safe as long as different
 * threads use different AtomicFile objects. Errors are negative errno values.
 */
#ifndef DRSUP_ATOMICFILE_H
#define DRSUP_ATOMICFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* A file being written; owned by the caller from atomicfile_open until commit or abort. */
typedef struct AtomicFile AtomicFile;

/* Atomically replaces (or creates) path with len bytes of data and file mode `mode`. 0 or -errno. */
int atomicfile_write(const char *path, const void *data, size_t len, mode_t mode);

/* True when name (a directory entry, no '/') is one of our temporaries: ".<name>.tmp.<pid>.<16 hex>". */
bool atomicfile_is_temporary(const char *name);

/*
 * Removes every temporary (atomicfile_is_temporary) in dir: what a crash left of writes that never
 * committed. Meant for start-up, before anything writes into dir. removed (may be NULL) is called
 * for each file removed, with its path and size, so the caller can log it. Returns the count, or
 * -errno when dir cannot be read (-ENOENT when it does not exist).
 */
int atomicfile_remove_temporaries(const char *dir, void (*removed)(const char *path, long long size, void *data),
                                  void *data);

/* fsyncs the directory dir (so a rename or create in it is durable). 0 or -errno. Filesystems
 * that cannot fsync directories (EINVAL) count as success. */
int atomicfile_fsync_dir(const char *dir);

/*
 * Streaming variant: creates the temporary for path. Returns the handle, or NULL with -errno in
 * *ret_err (if ret_err != NULL); nothing is left on disk on failure.
 */
AtomicFile *atomicfile_open(const char *path, mode_t mode, int *ret_err);

/* Appends len bytes. 0 or -errno; after a failure the only valid call is atomicfile_abort. */
int atomicfile_append(AtomicFile *af, const void *data, size_t len);

/*
 * fsyncs, closes and renames the temporary over the final name, then fsyncs the directory. Always
 * consumes af (freed, temporary removed on failure). 0 or -errno. A commit after a failed append
 * fails with that append's error.
 */
int atomicfile_commit(AtomicFile *af);

/* Discards the temporary (closed and unlinked) and frees af; the final path is untouched.
 * atomicfile_abort(NULL) is a no-op. */
void atomicfile_abort(AtomicFile *af);

/* Path of the temporary being written (for messages and tests); valid until commit/abort. */
const char *atomicfile_temp_path(const AtomicFile *af);

/*
 * Reads the whole file at path into a fresh buffer (NUL-terminated for convenience, the NUL not
 * counted in *ret_len; the caller frees it). Files longer than max bytes fail with -EFBIG. Works
 * for files whose size stat does not report (/proc). 0 or -errno; outputs untouched on failure.
 */
int atomicfile_read_all(const char *path, size_t max, char **ret_data, size_t *ret_len);

#endif
