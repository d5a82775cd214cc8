/*
 * venue_map: reading the platform's answers through the configured mapping (docs/venue.md).
 *
 * Pure functions, no I/O: from one answer of the positions or fills action to the canonical form
 * the reconcile works with, with a clear error for anything missing or unreadable (never a zero);
 * the value formats (decimal numbers kept as text, RFC 3339 and epoch times, sides) and the
 * template values of a fills window ({{since:rfc3339}}, ...).
 */
#ifndef DRSUP_VENUE_MAP_H
#define DRSUP_VENUE_MAP_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Where an answer came from, for messages: the action's name and its request ("GET http://..."). */
typedef struct VenueMapSource {
    const char *action;
    const char *request;
} VenueMapSource;

/*
 * Positions: *ret is a new array of {"symbol","quantity","avg_price"} (quantity signed, decimal
 * text; avg_price text, or null when the mapping has none). 0, or DR_EPROTO with msg.
 */
int venue_map_positions(const ConfigVenueMap *m, const json_t *answer, const char *text, const VenueMapSource *src,
                        json_t **ret, char *msg, size_t msglen);
/*
 * Fills of one page, appended to `into` (an array; a fill_id already there is skipped) as
 * {"fill_id","client_order_id","order_id","symbol","side","quantity","price","fee","executed_at"}
 * (executed_at RFC 3339 UTC with microseconds; unmapped optional fields null). *n_page is the
 * number of fills in the page, *added the new ones, *newest_us the newest executed_at of the page
 * (0 when empty). 0, or DR_EPROTO with msg.
 */
int venue_map_fills(const ConfigVenueMap *m, const json_t *answer, const char *text, const VenueMapSource *src,
                    json_t *into, size_t *n_page, size_t *added, int64_t *newest_us, char *msg, size_t msglen);
/* The next page's cursor at `path` (a string or an integer), or NULL (missing, null, empty). Caller
 * frees. */
char *venue_map_cursor(const json_t *answer, const char *path);

/* A decimal number (JSON number or a string holding one) as exact text; NULL when not one. Caller
 * frees. */
char *venue_map_decimal(const json_t *v);
/* A time in format `fmt` (VenueTimeFormat) to epoch microseconds. 0, or -EINVAL. */
int venue_map_time(const json_t *v, int fmt, int64_t *ret_us);
/* Epoch microseconds as RFC 3339 UTC: with `micro` 6 fraction digits, else 3 (milliseconds). */
void venue_map_format_time(int64_t us, bool micro, char *out, size_t n);
/* The template values of a fills window: since, since:ms, since:s, since:us, since:rfc3339, the
 * same for until, and cursor. vals gets VENUE_WINDOW_VARS name/value pairs pointing into buf. */
#define VENUE_WINDOW_VARS 11
void venue_map_window_vars(int64_t since_ms, int64_t until_ms, const char *cursor, char buf[VENUE_WINDOW_VARS][40],
                           const char *vars[VENUE_WINDOW_VARS][2]);

#endif
