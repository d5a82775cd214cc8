/*
 * probes: periodic observations of the supervised world (implemented in observe/probes.c).
 *
 * Owns the probe timers and their connections (database liveness, the platform's health URL). Each
 * result is an observation in the status model; database and platform outcomes also go to the sink the wiring
 * gives (the detector), so this module names no layer above or beside it. Failures a running
 * recovery declared on the lease are attributed to it and go neither to the model's failure count
 * nor to the sink.
 */
#ifndef DRSUP_PROBES_H
#define DRSUP_PROBES_H

#include <stdint.h>

#include "config/config.h"
#include "core/core.h"

typedef struct Probes Probes;

/* Where database and platform health probe outcomes go (borrowed callbacks; data is passed back;
 * platform_ok and platform_failed may be NULL). */
typedef struct ProbeSink {
    void (*db_ok)(void *data, int64_t checksum_failures);
    void (*db_failed)(void *data, const char *sqlstate, const char *message);
    void (*platform_ok)(void *data);
    void (*platform_failed)(void *data, const char *message);
    void *data;
} ProbeSink;

Probes *probes_new(Core *core, const ProbeSink *sink);
/* Would probes_apply_config() accept cfg? 0, or <0 with the reason in err. Pure (no I/O). */
int probes_check_config(const Probes *p, const Config *cfg, char *err, size_t errlen);
/* Apply a configuration probes_check_config() accepted: fails only on DR_ECANCELED or -ENOMEM. */
int probes_apply_config(Probes *p, const Config *cfg);
/*
 * Probe the database on another server from now on (a standby was promoted): database.conninfo
 * with host, hostaddr and port taken from `server` (a node's conninfo), also across reloads;
 * NULL goes back to database.conninfo as written. 0, DR_ECONFIG (unusable), -ENOMEM.
 */
int probes_set_server(Probes *p, const char *server);
void probes_close(Probes *p, void (*closed_cb)(void *data), void *data);

#endif
