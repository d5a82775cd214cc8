/*
 * synctree: one directory tree made durable at once (every regular file's data and every directory's
 * entries on disk), for a tree written without per-file fsync (an unpacked base backup).
 *
 * Owns the two passes over the tree that PostgreSQL's own data-directory sync makes: first every
 * regular file's writeback is started (sync_file_range SYNC_FILE_RANGE_WRITE, which does not wait),
 * so the disk sees the whole tree at once instead of one file per fsync; then every regular file and
 * every directory, children before their parent, is fsynced. Symbolic links are not followed (an
 * entry is synced as what it is, the tree's own files only). Blocking: call it on a pool worker.
 * Unlike syncfs(2) it waits only for this tree, not for whatever else the file system holds dirty.
 */
#ifndef DRSUP_SYNCTREE_H
#define DRSUP_SYNCTREE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct SyncTreeStats {
    uint64_t files;       /* regular files fsynced */
    uint64_t directories; /* directories fsynced, the root included */
} SyncTreeStats;

/* Makes the tree under `dir` durable, and its own entry in its parent directory. 0, or -errno of the first failure with the path and the call
 * in `err` (e.g. "fsync 'DIR/base/1/1259': Input/output error"); the tree is then not known to be
 * on disk. The first pass's failures are ignored (it only starts the writeback); every failure of
 * the second pass counts. `ret_stats` may be NULL. */
int synctree_sync(const char *dir, SyncTreeStats *ret_stats, char *err, size_t errlen);

/* The first pass alone: every regular file's writeback started, nothing waited for. Failures are
 * ignored (it is only a head start for synctree_sync). Blocking: a pool worker. */
void synctree_start_writeback(const char *dir);

/*
 * A tree being written (an unpack in progress): every period_ms a pool worker starts the writeback
 * of what is already there (synctree_start_writeback), so that the disk writes while the tree is
 * still being produced and the final synctree_sync waits only for the tail. One pass at a time; a
 * tick that finds one running is skipped. Owned by the caller until synctree_ticker_stop(), which
 * takes it: it is freed once its timer is closed and the pass in flight, if any, has ended (the
 * pass only reads the tree's names). NULL when out of memory or the loop refuses the timer.
 */
typedef struct SyncTreeTicker SyncTreeTicker;
SyncTreeTicker *synctree_ticker_start(uv_loop_t *loop, const char *dir, uint64_t period_ms);
/* NULL is a no-op. */
void synctree_ticker_stop(SyncTreeTicker *t);
/* Passes run so far (for tests). */
uint64_t synctree_ticker_passes(const SyncTreeTicker *t);

#endif
