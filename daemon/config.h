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

/* Alert channels (daemon/alerts.h); a route's `channels` is a bit mask of 1u << AlertChannel. */
typedef enum { ALERT_CH_PAGERDUTY = 0, ALERT_CH_SLACK, ALERT_CH_WEBHOOK, ALERT_CH_COUNT } AlertChannel;

typedef struct ConfigAlertRoute {
    int min_severity; /* Severity (events.h) */
    char *kind;       /* fnmatch pattern on the event kind, NULL = any */
    char *condition;  /* fnmatch pattern on the condition key, NULL = any */
    unsigned channels;
} ConfigAlertRoute;

/*
 * alerts: section. Secrets (routing key, Slack URL, webhook URL when given as a file, HMAC secret,
 * heartbeat URL when given as a file) are read while loading, from files or systemd credentials,
 * refused when group/other may read them; never logged. NULL when a channel is not configured.
 */
typedef struct ConfigAlerts {
    bool enabled;              /* the section is present */
    char *source;              /* PagerDuty payload.source; default: hostname */
    char *credentials_dir;     /* used when $CREDENTIALS_DIRECTORY is unset */
    char *pd_routing_key;      /* secret */
    char *pd_url;              /* Events API v2 enqueue URL */
    char *slack_url;           /* secret (token in the path) */
    char *webhook_url;         /* secret when read from a file */
    char *webhook_secret;      /* HMAC-SHA256 key, NULL = unsigned */
    size_t webhook_secret_len;
    uint64_t timeout_ms;       /* one delivery request */
    ConfigAlertRoute *routes;
    size_t n_routes;
    uint64_t retry_base_ms, retry_cap_ms;
    int64_t max_attempts;      /* then dead-lettered */
    uint64_t slack_retry_after_ms; /* pause after a Slack 429 without Retry-After */
    uint64_t repeat_interval_ms;   /* repeats of an open condition are not re-sent more often */
    uint64_t group_window_ms;      /* Slack waits this long to group a burst into one message */
    char *heartbeat_url;           /* secret when read from a file; NULL = no heartbeat */
    uint64_t heartbeat_interval_ms;
} ConfigAlerts;

typedef struct Config {
    char *path;        /* file it was read from */
    char *cluster;     /* name used in alerts and condition keys */
    char *state_dir;   /* durable state: journal, outbox, catalog cache */
    int log_level;     /* LOG_* priority */
    ConfigControl control;
    ConfigDatabase database;
    ConfigPlatform platform;
    ConfigAlerts alerts;
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
