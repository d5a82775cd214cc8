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

struct CfgSection; /* lib/cfgtree.h */

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

/* Alert channels (daemon/alerts/alerts.h); a route's `channels` is a bit mask of 1u << AlertChannel. */
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
typedef enum { VENUE_ACTION_NONE = 0, VENUE_ACTION_HTTP, VENUE_ACTION_COMMAND } VenueActionKind;

/* One way of acting on the trading platform: an HTTP request or a command (argv, no shell).
 * Strings may hold the placeholders of docs/venue.md ({{reason}}, {{since:rfc3339}}, ...), expanded per
 * call; {{credential:NAME}} in headers is replaced by the secret at load. */
typedef struct ConfigVenueAction {
    VenueActionKind kind;
    char *method;   /* HTTP */
    char *url;
    char **headers; /* "Name: value" */
    size_t n_headers;
    char *body;
    char **argv;    /* COMMAND */
    size_t argc;
} ConfigVenueAction;

typedef enum {
    VENUE_HALT = 0,
    VENUE_RESUME,
    VENUE_SHADOW,
    VENUE_STATUS,
    VENUE_POSITIONS,
    VENUE_FILLS,
    VENUE_CLOSE_ALL,
    VENUE_N_ACTIONS
} VenueActionId;

/* How a time is written in an answer (fills' executed_at). */
typedef enum {
    VENUE_TIME_AUTO = 0, /* a number: epoch ms; a string: RFC 3339 */
    VENUE_TIME_RFC3339,  /* RFC 3339 with a zone */
    VENUE_TIME_UTC,      /* RFC 3339, a missing zone read as UTC */
    VENUE_TIME_S,        /* epoch seconds (number or decimal string) */
    VENUE_TIME_MS,
    VENUE_TIME_US,
} VenueTimeFormat;

/* Where the values the daemon needs are in an answer (docs/venue.md). Paths as in lib/jpath.h;
 * "" = not reported (optional fields only); list NULL = the answer when it is a list, else its
 * "positions" / "fills" field. */
typedef struct ConfigVenueMap {
    char *list;
    char *symbol, *quantity, *avg_price, *side;                     /* positions and fills */
    char *fill_id, *client_order_id, *order_id, *price, *fee, *executed_at; /* fills */
    char **plus, **minus;         /* side values: long/buy (positive) and short/sell */
    size_t n_plus, n_minus;
    int time;                     /* VenueTimeFormat */
} ConfigVenueMap;

/* Paging of the fills action. */
typedef enum { VENUE_PAGES_NONE = 0, VENUE_PAGES_CURSOR, VENUE_PAGES_SINCE } VenuePagesKind;
typedef struct ConfigVenuePages {
    int by;                       /* VenuePagesKind */
    char *cursor;                 /* CURSOR: path of the next page's cursor */
    int64_t limit;                /* SINCE: a page with fewer fills is the last */
    int64_t max;                  /* pages at most per read */
} ConfigVenuePages;

/* HMAC-SHA256 request signing for every HTTP action. */
typedef struct ConfigVenueSign {
    bool enabled;
    char *key;                    /* secret */
    size_t key_len;
    char *header, *timestamp_header; /* timestamp_header NULL: not sent */
    char *payload;                /* template of {{timestamp}} {{method}} {{path}} {{body}} */
    bool seconds;                 /* timestamp in s (else ms) */
    bool base64;                  /* signature encoding (else lowercase hex) */
} ConfigVenueSign;

typedef struct ConfigVenue {
    bool enabled;                 /* a venue section is present */
    ConfigVenueAction actions[VENUE_N_ACTIONS];
    bool secret_headers[VENUE_N_ACTIONS]; /* an action's headers hold a {{credential:}} value */
    ConfigVenueMap positions_map, fills_map;
    ConfigVenuePages pages;
    ConfigVenueSign sign;
    char *mode_field;             /* path of the mode in the status answer ("" = the text) */
    char **mode_values[3];        /* accepted values for halted, shadow, live */
    size_t n_mode_values[3];
    uint64_t timeout_ms;          /* one action's deadline */
    uint64_t retry_base_ms, retry_cap_ms;
    int64_t escalate_after;       /* failed halt attempts before a critical event */
    uint64_t status_interval_ms;  /* trading-mode poll; 0 = only around actions */
} ConfigVenue;
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
    char *key_path;             /* the key's file: key_file, or where the loader found key_credential
                                   ($CREDENTIALS_DIRECTORY, else
                                   alerts.credentials_dir); what every key load reads */
    char **previous_keys;       /* earlier keys' files (previous_keys: paths, or credential:NAME resolved
                                   where key_credential is): a backup is read with the key of its key id */
    size_t n_previous_keys;
    char *keyring_dir;          /* state_dir/backup-keys: keys the daemon generated (a rotation); its
                                   'current' names the key new backups are written with */
    uint64_t chunk_size;        /* BCF chunk size */
    uint64_t dump_timeout_ms;   /* pg_dump deadline */
    int64_t nice;               /* CPU priority of backup work (pg_dump, its pg_restore, workers); 0 = normal */
    int ioprio;                 /* PrioIoClass of the same work */
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
    /* backup.physical: base backups of the whole cluster (pg_basebackup, tar to stdout). */
    char *physical_pg_basebackup;     /* path of pg_basebackup */
    char *physical_conninfo;          /* replication-capable; default backup.conninfo */
    char **physical_schedules;        /* cron strings (UTC) */
    size_t n_physical_schedules;
    bool physical_fast_checkpoint;    /* checkpoint: fast (default) or spread */
    int physical_manifest_checksums;  /* a PgManifestAlgo (lib/pgmanifest.h); 0: CRC32C, the default */
} ConfigBackup;

/* detector.watched_tables[]: a table's row count (or a query's one number) probed on a schedule; a
 * drop beyond a limit between two probes, or the table gone, is a data loss. See docs/detector.md. */
typedef struct ConfigWatchedTable {
    char *name;              /* for people, metrics and reports; default: the table */
    char *table;             /* [schema.]table: its row count ... */
    char *query;             /* ... or a query returning one number (exactly one of the two) */
    double max_drop_percent; /* a drop by more than this % of the last good value is a loss (< 0: unset) */
    int64_t max_drop_rows;   /* a drop by more than this many is a loss (< 0: unset); at least one set */
} ConfigWatchedTable;

/* detector: how observations become decisions (halt, restart, corruption). See docs/detector.md. */
typedef struct ConfigDetector {
    int64_t halt_after;              /* consecutive failed liveness probes before trading is halted */
    char *conninfo;                  /* database the corruption checks read; default database.conninfo */
    char **corruption_queries;       /* run in order on a schedule; an XX001/XX002 error is a signal */
    size_t n_corruption_queries;
    uint64_t corruption_interval_ms; /* period of the corruption check */
    uint64_t corruption_timeout_ms;  /* one check query's deadline */
    char **amcheck_indexes;          /* bt_index_check() on each, when the amcheck extension exists */
    size_t n_amcheck_indexes;
    char **restart_command;          /* argv run when the database is down (not corrupt); none: no restart */
    size_t n_restart_command;
    int64_t restart_attempts;
    uint64_t restart_delay_ms;       /* before each attempt */
    uint64_t restart_timeout_ms;     /* one attempt's deadline */
    char *server_log;                /* server log read after a failed restart, or NULL */
    char *data_directory;            /* the server's data directory, or NULL: before a restart, wait
                                        until the pid in its postmaster.pid is gone (bounded) */
    char **damage_patterns;          /* text in restart output / server log meaning damaged files */
    size_t n_damage_patterns;
    bool app_crash;                  /* the platform's health down (platform.down_after) while the
                                        database answers is the app_crash incident */
    ConfigWatchedTable *watched_tables; /* probed over detector.conninfo; a loss is the data_loss incident */
    size_t n_watched_tables;
    uint64_t watched_interval_ms;    /* between two probes of every watched table */
    uint64_t watched_timeout_ms;     /* one probe query's deadline */
    bool tamper;                     /* the daemon's own tamper signals (a backup or WAL segment failing
                                        verification, the configuration file changed and not reloaded
                                        within tamper_config_grace, the control socket's owner or mode
                                        changed) are the security_breach incident; off: they only page */
    uint64_t tamper_config_grace_ms; /* an edit of the configuration file not reloaded within this */
} ConfigDetector;

/* reconcile: database against the exchange after a recovery. See docs/reconcile.md. */
#define RECONCILE_MAX_REPLAY_PARAMS 16
typedef struct ConfigReconcile {
    char *conninfo;              /* database `drctl reconcile` checks; default database.conninfo */
    double quantity_tolerance;   /* absolute; 0 = exact */
    double price_tolerance;      /* relative, on avg_price (0.0001 = 0.01 %) */
    uint64_t stale_after_ms;     /* an open order older than this is stale */
    uint64_t default_since_ms;   /* drctl reconcile without --since: fills of the last ... */
    uint64_t restore_point_margin_ms; /* a run restored to a point in time (point_in_time, data_loss,
                                         complete_disaster) compares the fills since that point
                                         minus this (a fill executed before it may be recorded
                                         after it); default 5 min */
    uint64_t query_timeout_ms;
    char *positions_query;       /* -> symbol, quantity, avg_price */
    char *duplicates_query;      /* -> client_order_id, count */
    char *stale_orders_query;    /* $1 = stale_after in ms -> client_order_id, symbol, created_at */
    char *missing_fills_query;   /* $1 = text[] of fill ids -> the ids not in the database */
    char *replay_fill_query;     /* $1..$n = the canonical fill fields of replay_fill_params */
    char **replay_fill_params;   /* default fill_id, client_order_id, symbol, side, quantity, price, executed_at */
    size_t n_replay_fill_params; /* 1..RECONCILE_MAX_REPLAY_PARAMS */
    char *recompute_query;       /* after replays; "" = none */
    uint64_t *post_resume_checks_ms; /* the post-resume watch: a reconcile this long after resume_live,
                                        ascending; none (n = 0): no watch. Default 10 s, 60 s */
    size_t n_post_resume_checks;
    char **referential_queries;  /* each returns one row per violation (default: fills without their
                                    order); none (n = 0): no referential check */
    size_t n_referential_queries;
} ConfigReconcile;
/*
 * scenarios: (optional) recovery scenario settings. See conf/drsupervisor.yaml and docs/scenarios.md.
 *
 * The keys every scenario shares (admin_conninfo, database) are read here; each scenario's own
 * section, scenarios.<name>, is read by the reader that scenario registered before the first load
 * (config_register_scenario_section; the scenario layer's scenario_register_config does it for the
 * registry). Every registered section is present in a loaded Config, with its defaults when the
 * YAML has none; a section nobody registered is an unknown key.
 */
typedef struct ConfigScenarioSection {
    const char *name;            /* key under scenarios: ("database_corruption") */
    size_t size;                 /* bytes of the scenario's own settings (zeroed before read) */
    uint64_t default_rto_ms, default_rpo_ms;
    /* Read the scenario's own keys from s (mode, rto and rpo are read for it) into data, reporting
     * problems with cfg_error(s->ctx, ...); what it allocates stays in data, for done, even on
     * errors. NULL: the section has only the shared keys. */
    void (*read)(const struct CfgSection *s, void *data);
    int (*copy)(const void *src, void *dst); /* deep copy into zeroed dst: 0 or -ENOMEM */
    void (*done)(void *data);                /* free what data owns, not data itself */
} ConfigScenarioSection;

/* One scenario's section as read: the keys every scenario section has, and its own settings. */
typedef struct ConfigScenario {
    const ConfigScenarioSection *def;
    bool manual;                  /* mode: manual (stop before the changing steps until approved) */
    uint64_t rto_ms, rpo_ms;      /* targets for the incident report */
    void *data;                   /* def->size bytes, or NULL when size is 0 */
} ConfigScenario;

typedef struct ConfigScenarios {
    char *admin_conninfo;         /* key=value conninfo for CREATE/ALTER DATABASE (no dbname), or NULL:
                                     derived from database.conninfo with dbname=postgres */
    char *database;               /* database to protect, or NULL: the dbname of database.conninfo */
    ConfigScenario *list;         /* one per registered section, in registration order */
    size_t n;
} ConfigScenarios;

/* metrics: (optional) the Prometheus endpoint. See docs/metrics.md. */
typedef struct ConfigMetrics {
    bool enabled;                /* the section is present */
    char *listen;                /* "HOST:PORT", "[V6]:PORT" or "unix:PATH"; default 127.0.0.1:9187 */
} ConfigMetrics;

/* inbound_webhook: (optional) the signed security webhook, a POST route on the metrics listener
 * (docs/security-breach.md). Absent: off. */
typedef struct ConfigInboundWebhook {
    bool enabled;                /* the section is present */
    char *path;                  /* the route; default /security-breach */
    char *secret;                /* the shared HMAC secret (secret_file or secret_credential) */
    size_t secret_len;
    uint64_t window_ms;          /* the timestamp's window either way, and how long a nonce is kept */
} ConfigInboundWebhook;

/* audit: (optional) the audit log's rotation. See docs/audit.md. */
#define CONFIG_AUDIT_MAX_BYTES_DEFAULT (64ull << 20)
#define CONFIG_AUDIT_KEEP_DEFAULT 8
typedef struct ConfigAudit {
    uint64_t max_bytes;          /* audit.log is rotated before it would grow past this */
    int64_t keep;                /* rotated files kept (audit.log.1 .. audit.log.<keep>) */
} ConfigAudit;

/* replication: (optional) the cluster's nodes and their replication lag. See docs/replication.md. */
typedef struct ConfigReplicationNode {
    char *name;                  /* the standby's application_name on the primary */
    char *conninfo;
    bool primary;                /* the role it is expected to have */
    int64_t priority;            /* promotion preference among equals; 0 = never promote */
    /* What a switchover and a rejoin need to stop and start the node's server (docs/replication.md):
     * its data directory (on this host), and optionally commands (argv, absolute path) that stop and
     * start it instead of pg_ctl -D data_directory; all NULL when not configured. */
    char *data_directory;
    char **stop, **start;
    size_t n_stop, n_start;
} ConfigReplicationNode;
/* failover.self_fence: the daemon's own fencing of a node the fence hook left writable (or when no
 * hook is configured): stop it with its stop command, then make it refuse writes; only refuse
 * writes; or nothing (an operator fences it). */
enum { CONFIG_SELF_FENCE_OFF, CONFIG_SELF_FENCE_READ_ONLY, CONFIG_SELF_FENCE_STOP };
/* failover: (optional) what a promotion needs. See docs/replication.md. */
typedef struct ConfigFailover {
    bool enabled;                /* the section is present */
    uint64_t maximum_lag_bytes;  /* a standby further behind is not promoted */
    char **fence, **fence_check, **repoint; /* commands (argv, absolute path); NULL = not configured */
    size_t n_fence, n_fence_check, n_repoint;
    char **repoint_standby;      /* points one other standby at the new primary (argv); NULL: the daemon's
                                    ALTER SYSTEM SET primary_conninfo + pg_reload_conf() */
    size_t n_repoint_standby;
    uint64_t standby_timeout_ms; /* how long a repointed standby gets to stream from the new primary */
    uint64_t hook_timeout_ms;
    int self_fence;              /* CONFIG_SELF_FENCE_* */
    uint64_t grace_ms;           /* a primary that answers again within this (from its first failed
                                    probe) was a blip: no failover */
} ConfigFailover;
typedef struct ConfigReplication {
    bool enabled;                /* nodes are configured */
    ConfigReplicationNode *nodes;
    size_t n_nodes;
    uint64_t interval_ms;        /* one probe of every node */
    uint64_t timeout_ms;         /* connect and query deadline */
    uint64_t lag_warning_ms, lag_critical_ms;     /* replay lag in time */
    uint64_t lag_bytes_warning, lag_bytes_critical; /* WAL not yet replayed */
    int64_t debounce;            /* consecutive probes before a condition opens or closes */
    ConfigFailover failover;     /* the top-level failover: section */
} ConfigReplication;

/* wal: the continuous, encrypted WAL archive (docs/wal.md); needs backup: for its key and codec. */
typedef struct ConfigWal {
    bool enabled;                 /* the section is present */
    char *conninfo;               /* replication connection to the primary; default backup.physical.conninfo */
    char *slot;                   /* physical replication slot */
    bool create_slot;             /* create the slot when it does not exist */
    char *directory;              /* the archive; default <backup.directory>/wal */
    char *application_name;       /* as the primary sees the receiver (pg_stat_replication) */
    uint64_t flush_interval_ms;   /* the partial segment is sealed and synced at least this often */
    uint64_t status_interval_ms;  /* standby status updates to the primary */
    uint64_t timeout_ms;          /* connect deadline; also: nothing heard from the primary this long */
    uint64_t lag_bytes_warning, lag_bytes_critical; /* WAL written on the primary, not yet archived */
    uint64_t stalled_after_ms;    /* not streaming (or not advancing while the primary writes) this long */
    bool synchronous;             /* the receiver in the primary's synchronous_standby_names: RPO 0 */
    uint64_t synchronous_fallback_ms; /* the receiver down this long: asynchronous again (commits go on) */
} ConfigWal;

/* repository.s3: (optional) the off-site copy of every verified backup and archived WAL file in an
 * S3-compatible bucket (docs/offsite.md); needs backup:. The keys are read from files or systemd
 * credentials only, never logged. */
typedef struct ConfigOffsite {
    bool enabled;                 /* the section is present */
    char *endpoint;               /* "scheme://host[:port]" */
    char *region;
    char *bucket;
    char *prefix;                 /* object key prefix ("" or ending in '/') */
    bool virtual_host;            /* url_style: virtual */
    char *access_key;             /* secret (access_key_id_file / _credential) */
    char *secret_key;             /* secret (secret_access_key_file / _credential) */
    uint64_t part_size;           /* files above it go up in parts of this size (multipart) */
    int64_t concurrency;          /* files uploaded at once */
    uint64_t timeout_ms;          /* one request's deadline */
    uint64_t retry_base_ms, retry_cap_ms;
    int64_t max_attempts;         /* tries of one request before the file counts as failed */
    uint64_t scan_interval_ms;    /* how often the backup catalog and the WAL archive are looked at */
    uint64_t lag_warning_ms, lag_critical_ms; /* age of the oldest file not yet off-site */
    bool wal;                     /* upload the WAL archive too (wal.directory) */
    bool state;                   /* upload the non-secret state files under PREFIXstate/ */
    /* repository.s3.retention: what the bucket keeps (separate from backup.retention; the keys and
     * rules of lib/retention; no rule: nothing is ever deleted from the bucket) */
    uint64_t retention_max_age_ms; /* 0 = no age rule */
    int64_t keep_daily, keep_weekly, keep_monthly;
} ConfigOffsite;

/* drills: (optional) scheduled drills and the drill/restore readiness rules. See docs/drills.md. */
typedef struct ConfigDrillEntry {
    char *cron;                   /* five-field cron expression, UTC */
    char *scenario;               /* the scenario to rehearse (one with a drill) */
} ConfigDrillEntry;

typedef struct ConfigDrills {
    bool enabled;                 /* the section is present */
    ConfigDrillEntry *schedule;
    size_t n_schedule;
    uint64_t max_age_ms;          /* readiness warns when a scenario's last drill is older */
    double free_space_factor;     /* a restore needs the newest backup's database size times this, free */
    int64_t pitr_port;            /* point_in_time drills: the scratch cluster's port (0: side_port + 1) */
    char *pitr_scratch_directory; /* ... where it is built (NULL: the scenario's scratch place) */
} ConfigDrills;

/* ha: (optional) high availability: several daemons, one leader elected in etcd. See docs/ha.md. */
typedef struct ConfigHa {
    bool enabled;                 /* the section is present */
    char **endpoints;             /* etcd client URLs, http:// or https:// (tried in turn) */
    size_t n_endpoints;
    char *prefix;                 /* key prefix, ends with '/': PREFIX/leader, PREFIX/halt */
    char *node;                   /* this daemon's name in the election (default: the host name) */
    uint64_t ttl_ms;              /* the lease's TTL (whole seconds, >= 2 s) */
    uint64_t poll_interval_ms;    /* how often a follower reads the leader key */
    uint64_t request_timeout_ms;  /* one request to etcd */
    uint64_t step_down_hold_ms;   /* after drctl step-down: no campaign for this long */
} ConfigHa;

typedef struct Config {
    char *path;        /* file it was read from */
    char *cluster;     /* name used in alerts and condition keys */
    char *state_dir;   /* durable state: journal, outbox, catalog cache */
    char *node_dir;    /* this daemon's own state (audit log, alert outbox): state_dir, or with ha
                        * state_dir/nodes/NODE (state_dir is shared then; docs/ha.md) */
    int log_level;     /* LOG_* priority */
    ConfigControl control;
    ConfigDatabase database;
    ConfigPlatform platform;
    ConfigAlerts alerts;
    ConfigVenue venue;
    ConfigBackup backup;
    ConfigDetector detector;
    ConfigReconcile reconcile;
    ConfigScenarios scenarios;
    ConfigReplication replication;
    ConfigMetrics metrics;
    ConfigInboundWebhook inbound_webhook;
    ConfigWal wal;
    ConfigAudit audit;
    ConfigOffsite offsite;
    ConfigDrills drills;
    ConfigHa ha;
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
/* Deep copy / free of a repository.s3 section (same contract as the backup ones; the copy holds
 * the keys too: free it with config_offsite_free, which wipes them). (config/config_offsite.c) */
int config_offsite_copy(const ConfigOffsite *src, ConfigOffsite *dst);
void config_offsite_free(ConfigOffsite *o);
/* Deep copy / free of a scenarios section (same contract as the backup ones). */
int config_scenarios_copy(const ConfigScenarios *src, ConfigScenarios *dst);
void config_scenarios_free(ConfigScenarios *s);
/* Helpers for sections' copy functions: *dst = a copy of src (NULL stays NULL); a list of n strings
 * with a NULL after the last, as cfg_string_list (a partial copy on failure, still freeable with n).
 * 0 or -ENOMEM. */
int config_str_copy(const char *src, char **dst);
int config_list_copy(char *const *src, size_t n, char ***dst);
void config_list_free(char **list, size_t n);
/* The same for one scenario's section. */
int config_scenario_copy(const ConfigScenario *src, ConfigScenario *dst);
void config_scenario_free(ConfigScenario *sc);

/*
 * Register a scenario's section (before the first load; loop thread or main, not thread-safe).
 * Registering the same section again is a no-op. 0, -EEXIST for another section of that name,
 * -ENOSPC past CONFIG_MAX_SCENARIO_SECTIONS.
 */
#define CONFIG_MAX_SCENARIO_SECTIONS 16
int config_register_scenario_section(const ConfigScenarioSection *sec);
/* The section `name` of cfg, or NULL when no scenario registered it. */
const ConfigScenario *config_scenario(const Config *cfg, const char *name);

/*
 * The database the scenarios protect (scenarios.database, else the dbname of
 * database.conninfo) into `database`, and the admin conninfo (scenarios.admin_conninfo, else
 * database.conninfo without its dbname; key=value, ending in dbname=postgres) into *ret_admin
 * (caller frees). 0, DR_ECONFIG or -ENOMEM with err filled; *ret_admin is NULL on failure.
 * (config/config_databases.c)
 */
int config_scenario_databases(const Config *cfg, char *database, size_t dblen, char **ret_admin, char *err,
                              size_t errlen);

#endif
