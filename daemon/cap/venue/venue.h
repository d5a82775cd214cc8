/*
 * venue: the trading platform, as the daemon sees it.
 *
 * Owns the venue actions (halt, resume, shadow, status, positions, fills, close_all: each an HTTP
 * request or a command from the configuration), the reading of the platform's mode from its
 * status answer, and the fail-closed halt: the halted state is written durably to
 * state_dir/halt.json BEFORE the halt is sent; a halt counts as done only when the status action
 * confirms "halted"; until then it is retried with backoff and escalated with a critical event.
 * At start a persisted halt is re-asserted before anything else. Trading resumes only through
 * venue_resume(), which asks a guard (the scenario engine: no unfinished run) and requires a
 * reconcile that passed after the newest halt request (persisted in halt.json as well).
 */
#ifndef DRSUP_VENUE_H
#define DRSUP_VENUE_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "core/core.h"

typedef struct Venue Venue;

typedef enum { VENUE_MODE_UNKNOWN = 0, VENUE_MODE_HALTED, VENUE_MODE_SHADOW, VENUE_MODE_LIVE } VenueMode;

/* Completion of an action: result 0 with the parsed JSON answer (borrowed; may be NULL when the
 * answer was not JSON, then `text` has it), or a negative code with `message`. */
typedef void (*VenueResultFn)(int result, const json_t *answer, const char *text, const char *message, void *data);
/* Completion of halt/resume: 0 when confirmed, else a code and why. */
typedef void (*VenueDoneFn)(int result, const char *message, void *data);
/* May trading resume? Return false and fill `why` to refuse. */
typedef bool (*VenueResumeGuardFn)(void *data, char *why, size_t whylen);

Venue *venue_new(Core *core);
int venue_apply_config(Venue *v, const Config *cfg);
/* Load the persisted halt state (blocking read of a small file: call before the loop runs) and,
 * when halted, re-assert the halt. */
int venue_start(Venue *v);
/* The same on the thread pool, once the loop runs (high availability: a follower taking over). */
void venue_start_async(Venue *v);
void venue_close(Venue *v, void (*closed_cb)(void *data), void *data);

/* Halt trading (fail closed). `done` runs once the platform confirms "halted". */
void venue_halt(Venue *v, const char *reason, const char *run, VenueDoneFn done, void *data);
/* Resume live (or shadow) trading; refused while halting or when the guard says no. */
void venue_resume(Venue *v, bool shadow, VenueDoneFn done, void *data);
void venue_set_resume_guard(Venue *v, VenueResumeGuardFn guard, void *data);
/* Resume with an operator override: with force, a missing passing reconcile is allowed (and paged
 * as a critical event with force_reason); the guard (unfinished runs) still applies. */
void venue_resume_opts(Venue *v, bool shadow, bool force, const char *force_reason, VenueDoneFn done, void *data);
/* A reconcile passed at when_ms: trading may resume after a halt requested before it (persisted). */
void venue_note_reconciled(Venue *v, int64_t when_ms);
/* The window of a fills request: {{since}}, {{until}} (epoch ms) and {{cursor}} (may be NULL). */
typedef struct VenueWindow {
    int64_t since_ms, until_ms;
    const char *cursor;
} VenueWindow;
/* Run one action once, its answer unmapped. `w` fills the window's placeholders (may be NULL). */
int venue_action(Venue *v, VenueActionId id, const VenueWindow *w, VenueResultFn cb, void *data);
/* Completion of a read: 0 with the canonical list (borrowed; docs/venue.md), or a negative code and
 * a message naming the action, the element, the field, the path and an excerpt of the answer;
 * `request` is the (last) request as people read it ("GET http://..."). */
typedef void (*VenueReadFn)(int result, const json_t *list, const char *request, const char *message, void *data);
/* Read VENUE_POSITIONS, or VENUE_FILLS from since_ms to now (every page), through the answer
 * mapping. */
int venue_read(Venue *v, VenueActionId id, int64_t since_ms, VenueReadFn cb, void *data);

bool venue_enabled(const Venue *v);
bool venue_halted(const Venue *v);      /* persisted intent: halted */
VenueMode venue_mode(const Venue *v);   /* last mode the platform reported */
const char *venue_mode_name(VenueMode m);
json_t *venue_status_json(const Venue *v);

/* Expand the {{name}} placeholders of vars in `tmpl` (others stay as written); `how` is 'j' (JSON string escape),
 * 'u' (URL percent-encoding) or 'r' (raw). Caller frees. Exposed for tests. */
char *venue_expand(const char *tmpl, char how, const char *const vars[][2], size_t n_vars);
/* Mode from an answer: the value at the mode path (a string, or a boolean read as "true"/"false"),
 * or with the path "" or a non-JSON answer the first line of the text, trimmed. Exposed for tests. */
VenueMode venue_parse_mode(const ConfigVenue *cfg, const json_t *answer, const char *text);

#endif
