/*
 * tarscan: a streaming reader of a tar archive's structure (ustar, with GNU long-name and pax
 * extension members passed over), fed in pieces of any size. No I/O, no allocation beyond the
 * captured members.
 *
 * Owns the member walk: each 512-byte header's checksum is checked, member sizes (octal or GNU
 * base-256) are followed, and the end of the archive (a zero block) is recognised; the caller may
 * name members whose content it wants kept in memory (up to a limit each), and asks afterwards
 * whether a member was present; hooks see each regular member's name, size and content as it
 * streams past (nothing kept here). Names come from GNU long-name ('L') and pax "path" extension
 * members when they precede a member, as tar -x reads them. Used by the backup capability to read what the server put into a
 * base backup's tar (backup_label, backup_manifest) as it streams past, and to check that the
 * files a data directory cannot do without are there.
 */
#ifndef DRSUP_TARSCAN_H
#define DRSUP_TARSCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct TarScan TarScan;

#define TARSCAN_MAX_WATCHED 8
/* The longest member name (bytes) read from an extension member; a longer one fails the scan. */
#define TARSCAN_NAME_MAX 4096u

/* A scanner. watched: NULL-terminated member names (at most TARSCAN_MAX_WATCHED, a leading "./"
 * ignored on both sides) whose presence is recorded; capture_limit: bytes of each watched member's
 * content kept (0: none kept, presence only). NULL on OOM or too many names. */
TarScan *tarscan_new(const char *const *watched, size_t capture_limit);
void tarscan_free(TarScan *t);
/* Feed the next bytes. 0, or -EBADMSG (a header whose checksum is wrong, a size that is not a
 * number, data after the end) with a message in tarscan_errmsg(); after an error every call
 * fails the same. */
int tarscan_update(TarScan *t, const uint8_t *data, size_t len);
/* The stream ended: 0 when it ended at the end of the archive (a zero block after a complete
 * member), else -EBADMSG (truncated). */
int tarscan_finish(TarScan *t);
const char *tarscan_errmsg(const TarScan *t);

/* Called for each regular member (types '0', '\0' and '7'), in order: begin with its name (a
 * leading "./" removed; borrowed until end) and size, data with its content in pieces of any size
 * (none for an empty member), end once the content is complete (never for a member the archive
 * cut short). Any may be NULL. A negative return stops the scan with that code: every later call
 * returns it, and tarscan_errmsg() names the member and the code's strerror. */
typedef struct TarScanHooks {
    int (*begin)(void *ctx, const char *name, uint64_t size);
    int (*data)(void *ctx, const uint8_t *data, size_t len);
    int (*end)(void *ctx);
} TarScanHooks;

/* Set (or with NULL remove) the hooks before the first tarscan_update(); hooks and ctx are
 * borrowed for the scanner's life. */
void tarscan_set_hooks(TarScan *t, const TarScanHooks *hooks, void *ctx);
/* Members seen (regular files, directories, links; extension headers not counted). */
uint64_t tarscan_members(const TarScan *t);
/* Whether watched member `name` was seen; its content (borrowed, not NUL-terminated; NULL when not
 * seen) and length; *ret_truncated when it was longer than capture_limit. */
bool tarscan_member(const TarScan *t, const char *name, const uint8_t **ret_data, size_t *ret_len,
                    bool *ret_truncated);

#endif
