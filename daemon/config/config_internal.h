/*
 * config_internal: what the configuration schema's files share; not for other modules.
 *
 *   config.c           the entry points (load, free, copy), the top-level keys and the sections
 *                      control, database, platform and alerts, and secrets
 *   config_venue.c     the venue section: actions, templates, answer mappings, paging, signing
 *   config_replication.c the replication section (the cluster's nodes and the lag thresholds) and
 *                      the metrics section (the Prometheus endpoint's address)
 *   config_recovery.c  the recovery side's sections: backup, detector, reconcile
 *   config_scenarios.c the scenarios section: its shared keys, and the registry of the sections
 *                      the scenarios register (scenarios.<name>)
 *   config_databases.c the database the scenarios protect and the admin conninfo
 *   config_wal.c       the wal section: the continuous WAL archive's receiver
 *   config_drills.c    the drills section: scheduled drills, the drill and free-space rules
 *   config_ha.c        the ha section: the etcd endpoints, the lease TTL, the node name
 *
 * Each reader fills its section of a zeroed Config from the YAML tree, reporting every problem
 * with cfg_error() on top's context (the caller checks ctx->n_errors at the end) and leaving what
 * it allocated in the section, for config_free(), even on errors.
 */
#ifndef DRSUP_CONFIG_INTERNAL_H
#define DRSUP_CONFIG_INTERNAL_H

#include "cfgtree.h"
#include "config/config.h"

/* A secret file: a regular file of the daemon's user (or root), mode 0600/0400, not empty, at most
 * 64 KiB, trailing blanks dropped; opened O_NONBLOCK. 0, or a negative code with `why`. */
int config__read_secret_file(const char *path, char **ret, size_t *ret_len, char *why, size_t why_len);
/* Where credential `name` is: $CREDENTIALS_DIRECTORY/name, else cred_dir/name. 0, or -EINVAL with
 * `why` (a path given as a name, or no directory to look in). */
int config__credential_path(const char *name, const char *cred_dir, char *path, size_t n, char *why, size_t whylen);
/* A secret given as `<name>_file: PATH` or `<name>_credential: ID` ($CREDENTIALS_DIRECTORY/ID, else
 * cred_dir/ID), or with plain_ok as `<name>: VALUE`. Nothing set: *ret stays NULL. */
void config__secret(const CfgSection *s, const char *name, bool plain_ok, const char *cred_dir, char **ret,
                    size_t *ret_len);
/* The venue section (absent: no venue); cred_dir is alerts.credentials_dir (may be NULL). */
void config__read_venue(const CfgSection *top, const char *cred_dir, ConfigVenue *v);
void config__free_venue(ConfigVenue *v);
/* The metrics section (config_replication.c, with the other observation settings). */
void config__read_metrics(const CfgSection *top, ConfigMetrics *m);
/* inbound_webhook: served by the metrics listener, so it needs the metrics section. */
void config__read_inbound_webhook(const CfgSection *top, const ConfigMetrics *m, const char *cred_dir,
                                  ConfigInboundWebhook *w);
/* The audit section (absent: the defaults). */
void config__read_audit(const CfgSection *top, ConfigAudit *a);
/* The replication section (config_replication.c). */
void config__read_replication(const CfgSection *top, ConfigReplication *r);
void config__free_replication(ConfigReplication *r);
/* The backup section (absent: backup disabled); db->conninfo is the default conninfo, cred_dir is
 * alerts.credentials_dir (may be NULL), where key_credential is looked for after $CREDENTIALS_DIRECTORY. */
void config__read_backup(const CfgSection *top, const ConfigDatabase *db, const char *cred_dir, ConfigBackup *b);
/* The detector section; db->conninfo is the default conninfo, built-in damage patterns if none. */
void config__read_detector(const CfgSection *top, const ConfigDatabase *db, ConfigDetector *d);
/* The reconcile section; db->conninfo is the default conninfo, RECONCILE_DEFAULT_* the queries. */
void config__read_reconcile(const CfgSection *top, const ConfigDatabase *db, ConfigReconcile *r);
/* Refuse (cfg_error at s.key) a conninfo whose secrets could reach a child only on its command line
 * (sslpassword, a conninfo nested in dbname). (config_recovery.c) */
void config__check_child_conninfo(const CfgSection *s, const char *key, const char *conninfo);
/* Refuse (cfg_error at s.key) a conninfo written at s.key that holds a password, pointing to a
 * passfile instead; the password is never quoted. (config_recovery.c) */
void config__check_conninfo_password(const CfgSection *s, const char *key);
/* Refuse (cfg_error at s.key) a passfile= written at s.key that libpq would ignore: missing, not a
 * regular file, or open to group or others. Opens it non-blocking, never reads it. (config_recovery.c) */
void config__check_conninfo_passfile(const CfgSection *s, const char *key);
/* The repository section (config_offsite.c): repository.s3, the off-site bucket. */
void config__read_repository(const CfgSection *top, const ConfigBackup *b, const char *cred_dir, ConfigOffsite *o);
/* The wal section (config_wal.c); b is the backup section read before it (key, codec, directory). */
/* The drills section (config_drills.c; absent: no schedule, the default rules). */
void config__read_drills(const CfgSection *top, ConfigDrills *d);
void config__free_drills(ConfigDrills *d);
/* The ha section (config_ha.c; absent: one daemon acts alone). */
void config__read_ha(const CfgSection *top, const char *cluster, ConfigHa *h);
void config__free_ha(ConfigHa *h);
void config__read_wal(const CfgSection *top, const ConfigBackup *b, ConfigWal *w);
void config__free_wal(ConfigWal *w);
/* The scenarios section: admin_conninfo, database, and every registered scenario's section. */
void config__read_scenarios(const CfgSection *top, ConfigScenarios *sc);

#endif
