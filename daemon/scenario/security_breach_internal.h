/*
 * security_breach_internal: what security_breach.c and security_breach_config.c share; not for
 * other modules. The scenario's own settings, scenarios.security_breach, and its part of a run.
 *
 * The breach restores the way database_corruption does, with that scenario's database steps
 * (preserve evidence, restore, switch, put back: database_corruption_db.c). Those read the run's
 * CorruptionRun (run->own) and CorruptionConfig (run->cfg.data), so the breach's own structures
 * begin with one of each: the same names for the evidence and the restore, the same restore and
 * switch settings. (Moving those steps to steps/ with their own context is a follow-up.) When the
 * WAL archive reaches T it recovers the cluster instead, with point_in_time's steps: their
 * PitrConfig and PitrRun follow (ScenarioDef.pitr_config_offset, pitr_run_offset).
 */
#ifndef DRSUP_SCN_SECURITY_BREACH_INTERNAL_H
#define DRSUP_SCN_SECURITY_BREACH_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"
#include "scenario/database_corruption_internal.h"
#include "scenario/point_in_time_internal.h"

typedef struct BreachConfig {
    CorruptionConfig restore;  /* first: validation_queries, switch_command, restore_timeout, restore_jobs */
    bool emergency_close;      /* close every position (venue.close_all) before the halt; default true */
    char **lockdown_commands;  /* programs (absolute paths, no shell), run one after the other */
    size_t n_lockdown_commands;
    char **rotate_commands;    /* the same for credential rotation */
    size_t n_rotate_commands;
    uint64_t hook_timeout_ms;  /* one lockdown or rotate command */
    bool rotate_backup_key;    /* a new backup key for new backups (cap/backup key ring); default true */
    bool pitr_configured;      /* a pitr: subsection with data_directory, side_port and switch_command */
    PitrConfig pitr;           /* scenarios.security_breach.pitr: the recovery to just before T
                                * (point_in_time's keys; ScenarioDef.pitr_config_offset) */
} BreachConfig;

/* The breach's part of a run (ScnRun.own). */
typedef struct BreachRun {
    CorruptionRun dbs; /* first: X_breach_T (the evidence) and X_restore_T */
    PitrRun pitr;      /* the recovered cluster's directories, T (ScenarioDef.pitr_run_offset) */
} BreachRun;

extern const ConfigScenarioSection breach_config_section;

static inline const BreachConfig *breach_cfg(const ScnRun *run)
{
    return run->cfg.data;
}

#endif
