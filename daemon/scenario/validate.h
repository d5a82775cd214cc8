/*
 * validate: the runbooks' post-recovery checklist as one command (drctl validate).
 *
 * Owns the validate control command and its one run at a time: every component's health (the
 * status model), the database (a connection and the validation queries), a reconcile with the
 * exchange (through the reconcile capability), and what the readiness checks say of the backups,
 * the WAL archive and the alert channels: one PASS/WARN/FAIL table, ok unless a row failed.
 */
#ifndef DRSUP_VALIDATE_H
#define DRSUP_VALIDATE_H

#include "cap/reconcile.h"
#include "core/core.h"

typedef struct Validate Validate;

/* Registers the command. NULL on OOM or when the command cannot be registered. */
Validate *validate_new(Core *core, Reconcile *reconcile);
/* A validation in flight is answered DR_ECANCELED; closed_cb(data) once nothing is pending. */
void validate_close(Validate *v, void (*closed_cb)(void *data), void *data);

#endif
