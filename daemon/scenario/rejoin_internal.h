/*
 * rejoin_internal: what rejoin.c, rejoin_config.c and rejoin_files.c share; not for other
 * modules. The scenario's own settings (scenarios.rejoin), its file work, and its command.
 */
#ifndef DRSUP_SCN_REJOIN_INTERNAL_H
#define DRSUP_SCN_REJOIN_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "config/config.h"
#include "core/control.h"

typedef struct RejoinConfig {
    char *pg_ctl, *pg_rewind, *pg_basebackup; /* of the servers' version */
    char **run_as;             /* prefix argv (runuser -u postgres --); may be empty */
    size_t n_run_as;
    char *restore_command;     /* written for pg_rewind -c and the standby (drctl wal-fetch ...); NULL: none */
    uint64_t stop_timeout_ms;  /* pg_ctl stop/start -t */
    uint64_t copy_timeout_ms;  /* pg_rewind, pg_basebackup */
    uint64_t stream_timeout_ms; /* from the start until the new primary sees the node streaming */
} RejoinConfig;

#define RJ_COPY_MAX_MS (6u * 3600u * 1000u)

extern const ConfigScenarioSection rejoin_config_section;
extern const struct ScenarioDef scenario_rejoin;

/* The file work of a step on the thread pool (rejoin_files.c: blocking, never on the loop). */
typedef struct RejoinWork RejoinWork;
struct ScnStep;
typedef void (*RejoinWorkDone)(struct ScnStep *st, RejoinWork *w);
struct RejoinWork {
    uv_work_t req;
    struct ScnStep *st;
    int (*fn)(RejoinWork *w);
    RejoinWorkDone then;
    char dir[4096], evidence[4200];
    /* postgresql.auto.conf: these keys removed, then set[i] = val[i] appended (val NULL: removed only) */
    const char *keys[8];
    char vals[8][2048];
    size_t n_keys;
    bool standby_signal; /* and standby.signal written, recovery.signal removed */
    int result;
    char err[700];
};

/* postgresql.auto.conf rewritten (a temporary, fsync, rename, directory fsync), owned like the
 * data directory; standby.signal. Running it again writes the same files. */
int rejoin__conf_work(RejoinWork *w);
/* The data directory set aside as evidence (renamed, once) and made again empty, 0700, owned
 * like it was (a half-made copy of an earlier attempt removed). */
int rejoin__aside_work(RejoinWork *w);

/* rejoin NODE (drctl rejoin NODE); data: the Scenarios. */
void rejoin__cmd(CtlCall *call, const json_t *args, void *data);

#endif
