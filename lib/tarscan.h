/*
 * tarscan: a streaming reader of a tar archive's structure (ustar, with GNU long-name and pax
 * extension members passed over), fed in pieces of any size. No I/O, no allocation beyond the
 * captured members.
 *
 * Owns the member walk: each 512-byte header's checksum is checked, member sizes (octal or GNU
 * base-256) are followed, and the end of the archive (a zero block) is recognised; the caller may
 * name members whose content it wants kept in memory (up to a limit each), and asks afterwards
 * whether a member was present. Used by the backup capability to read what the server put into a
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
/* Members seen (regular files, directories, links; extension headers not counted). */
uint64_t tarscan_members(const TarScan *t);
/* Whether watched member `name` was seen; its content (borrowed, not NUL-terminated; NULL when not
 * seen) and length; *ret_truncated when it was longer than capture_limit. */
bool tarscan_member(const TarScan *t, const char *name, const uint8_t **ret_data, size_t *ret_len,
                    bool *ret_truncated);

#endif
