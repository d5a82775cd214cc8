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

typedef struct SyncTreeStats {
    uint64_t files;       /* regular files fsynced */
    uint64_t directories; /* directories fsynced, the root included */
} SyncTreeStats;

/* Makes the tree under `dir` durable. 0, or -errno of the first failure with the path and the call
 * in `err` (e.g. "fsync 'DIR/base/1/1259': Input/output error"); the tree is then not known to be
 * on disk. The first pass's failures are ignored (it only starts the writeback); every failure of
 * the second pass counts. `ret_stats` may be NULL. */
int synctree_sync(const char *dir, SyncTreeStats *ret_stats, char *err, size_t errlen);

#endif
