/*
 * jpath: a small path language over jansson values, for reading other programs' JSON answers.
 *
 * A path is field names separated by dots, each optionally followed by list indexes:
 * `data.positions`, `result[0].mode`, `[2]`, `a.b[1][0].c`. The empty path is the value itself.
 * Field names hold any character but `.`, `[` and `]`. Nothing here allocates.
 */
#ifndef DRSUP_JPATH_H
#define DRSUP_JPATH_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

/* The value at `path` under `root` (borrowed), or NULL when any step is missing or of the wrong
 * kind (a field of a non-object, an index of a non-list or past its end). */
const json_t *jpath_get(const json_t *root, const char *path);
/* Is `path` well formed? On false, `why` (may be NULL) says what is wrong and where. */
bool jpath_valid(const char *path, char *why, size_t whylen);

#endif
