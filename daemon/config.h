/*
 * config: the daemon's configuration schema.
 *
 * Owns the Config structure (immutable once loaded; a reload builds a new one and swaps it in)
 * and the schema walk over the YAML tree: which keys exist, their types, defaults and limits.
 * Every key is documented in conf/drsupervisor.yaml and docs/man/drsupervisor.yaml.5.
 */
#ifndef DRSUP_CONFIG_H
#define DRSUP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct ConfigControl {
    char *socket_path;     /* control socket; ignored when systemd passes a socket */
    mode_t mode;           /* socket file mode, default 0660 */
    char *group;           /* group owning the socket file, or NULL to keep the daemon's */
    char *operators_group; /* members may run mutating commands, or NULL (root and daemon user only) */
    uint64_t max_request;  /* longest request line, bytes */
    int64_t max_clients;   /* simultaneous connections */
} ConfigControl;

typedef struct ConfigDatabase {
    char *conninfo;              /* libpq conninfo of the supervised database (no password here) */
    uint64_t probe_interval_ms;  /* liveness probe period */
    uint64_t probe_timeout_ms;   /* one probe's query deadline */
    uint64_t connect_timeout_ms; /* one connection attempt's deadline */
    int64_t down_after;          /* consecutive failed probes before "down" */
} ConfigDatabase;

typedef struct ConfigPlatform {
    char *health_url;           /* trading platform health URL, or NULL for no probe */
    uint64_t probe_interval_ms;
    uint64_t probe_timeout_ms;
    int64_t down_after;
} ConfigPlatform;

/* backup: (optional; absent = backups disabled). See conf/drsupervisor.yaml and docs/backups.md. */
typedef struct ConfigBackup {
    bool enabled;               /* the section is present */
    char *directory;            /* where backup files and manifests live */
    char *prefix;               /* file name prefix */
    char *conninfo;             /* database to dump; default database.conninfo */
    char *pg_dump;              /* path of pg_dump */
    char *pg_restore;           /* path of pg_restore */
    char **schedules;           /* cron strings (UTC) */
    size_t n_schedules;
    int codec;                  /* CodecKind */
    int64_t level;              /* 0 = codec default */
    char *key_file;             /* key file path, or NULL */
    char *key_credential;       /* systemd credential name, or NULL */
    uint64_t chunk_size;        /* BCF chunk size */
    uint64_t dump_timeout_ms;   /* pg_dump deadline */
    char **state_files;         /* files captured into each backup set */
    size_t n_state_files;
    bool verify_after_backup;
    char *restore_schedule;     /* cron string for the test restore, or NULL */
    char **validation_queries;  /* run in the scratch database after a test restore */
    size_t n_validation_queries;
    uint64_t retention_max_age_ms; /* 0 = no age rule */
    int64_t keep_daily, keep_weekly, keep_monthly;
    uint64_t watch_max_age_ms;
    int64_t watch_size_change_percent;
    int64_t watch_baseline_count;
    int64_t watch_failures;
} ConfigBackup;

typedef struct Config {
    char *path;        /* file it was read from */
    char *cluster;     /* name used in alerts and condition keys */
    char *state_dir;   /* durable state: journal, outbox, catalog cache */
    int log_level;     /* LOG_* priority */
    ConfigControl control;
    ConfigDatabase database;
    ConfigPlatform platform;
    ConfigBackup backup;
} Config;

/*
 * Read and validate a configuration file. On success *ret owns a new Config. On failure returns
 * DR_ECONFIG (or -errno) and *ret_errors holds every problem, one "FILE:LINE:COL: message" a line
 * (caller frees). Blocking: reads the file.
 */
int config_load(const char *path, Config **ret, char **ret_errors);
/* Same, from text (tests). `name` is used in messages. */
int config_load_string(const char *name, const char *text, Config **ret, char **ret_errors);
Config *config_free(Config *cfg);
/* Deep copy of a backup section (modules keep their own across reloads). 0 or -ENOMEM. */
int config_backup_copy(const ConfigBackup *src, ConfigBackup *dst);
/* Free what a ConfigBackup owns (not the struct itself); leaves it zeroed. */
void config_backup_free(ConfigBackup *b);

#endif
