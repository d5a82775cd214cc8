/*
 * watched: the watched-table probe (detector.watched_tables), the data-loss half of the detector.
 *
 * Owns one nonblocking connection (lib/pgconn, detector.conninfo) and a timer
 * (detector.watched_interval): each sweep reads every watched table in turn, one statement each
 * that also returns the server's statement_timestamp() (taken before the statement's snapshot, so
 * no commit the count did not see lies before it), judges it with the pure rule of watched_rule.h
 * against the table's last good observation, and keeps that observation (time + value) per table.
 * A sweep that found a loss (a drop beyond the limits, or the relation gone: SQLSTATE 42P01/3F000)
 * calls the owner's loss callback once, with the run's parameters: the recovery target (the
 * earliest last good observation among the tables that lost rows) and every table's statement,
 * last good observation, floor and what the sweep saw. After that it reports nothing until
 * watched_reset() (the run ended). A database that does not answer is no observation at all. While
 * a recovery run holds the lease nothing is probed and the observations are forgotten (the run
 * changes the database; the next sweep after it is a new baseline). Values and last good times are
 * also Prometheus gauges (drsupervisor_watched_table_rows, ..._last_good_timestamp_seconds).
 */
#ifndef DRSUP_WATCHED_H
#define DRSUP_WATCHED_H

#include <jansson.h>
#include <stdint.h>

#include "config/config.h"
#include "core/core.h"

typedef struct Watched Watched;

/* A loss was seen at detected_ms: reason is a sentence for people, params the run's parameters
 * (borrowed; "target_ms" 0 when no table that lost rows had a good observation before). */
typedef void (*WatchedLossFn)(const char *reason, int64_t detected_ms, const json_t *params, void *data);

Watched *watched_new(Core *core, WatchedLossFn fn, void *data);
/* Would watched_apply_config() accept cfg? 0, or <0 with the reason in err. Pure. */
int watched_check_config(const Config *cfg, char *err, size_t errlen);
/* (Re)start from cfg->detector over conninfo (detector.conninfo as it follows the primary): the tables (a table of the same name and statement keeps its last
 * good observation), the connection, the timer. 0, or DR_ECONFIG / -ENOMEM. */
int watched_apply_config(Watched *w, const Config *cfg, const char *conninfo);
/* The statement that gives a watched table's number (a quoted [schema.]table's row count, or its
 * query as a bigint), without the probe's timestamp: for a copy of the database (a drill's
 * scratch cluster). Caller frees; NULL on OOM. */
char *watched_count_sql(const ConfigWatchedTable *c);
/* Forget every observation and report again (a recovery run ended). */
void watched_reset(Watched *w);
/* The tables as `drctl status` shows them and a data_loss run started by an operator takes them
 * (the same shape as the loss's "tables"). New reference. */
json_t *watched_tables_json(const Watched *w);
void watched_close(Watched *w, void (*closed_cb)(void *data), void *data);

#endif
