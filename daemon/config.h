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

typedef struct Config {
    char *path;        /* file it was read from */
    char *cluster;     /* name used in alerts and condition keys */
    char *state_dir;   /* durable state: journal, outbox, catalog cache */
    int log_level;     /* LOG_* priority */
    ConfigControl control;
    ConfigDatabase database;
    ConfigPlatform platform;
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

#endif
