/*
 * readiness: is this installation ready for a disaster, now (drctl readiness, docs/readiness.md)?
 *
 * Owns the registry of readiness checks (each module registers a function that judges what it
 * owns: the newest backup's age and verification, the last test restore, the WAL archive's
 * continuity and lag, the standbys' lag, whether a failover would succeed, whether alerts are
 * delivered, whether the configuration file changed without a reload), the readiness control
 * command (a score, every check PASS/WARN/FAIL with its evidence, a Nagios-style status), and the
 * same checks as metrics. This file names no module. Checks run on the loop and must not block:
 * they read what their module already knows.
 */
#ifndef DRSUP_READINESS_H
#define DRSUP_READINESS_H

#include <jansson.h>

#include "core/control.h"
#include "core/metrics.h"

typedef enum { READY_PASS = 0, READY_WARN = 1, READY_FAIL = 2 } ReadyLevel;

typedef struct Readiness Readiness;
typedef struct ReadyWriter ReadyWriter;

/* Judge and add this module's checks to w with readiness_add. */
typedef void (*ReadinessFn)(ReadyWriter *w, void *data);

Readiness *readiness_new(void);
Readiness *readiness_free(Readiness *r);
/* 0 or -ENOMEM. Checks are listed in the order registered. */
int readiness_register(Readiness *r, ReadinessFn fn, void *data);
/* The readiness command on ctl and the drsupervisor_readiness* metrics on m (either may be NULL). */
int readiness_publish(Readiness *r, Control *ctl, Metrics *m);
/* One check: a dotted name ("backup.logical"), its level and the evidence, a sentence. */
void readiness_add(ReadyWriter *w, const char *check, ReadyLevel level, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/* Every check now: {"score": 0..100, "nagios": 0|1|2, "checks": [{check, status, evidence}]}. */
json_t *readiness_run(Readiness *r);
const char *readiness_level_name(ReadyLevel l);

#endif
