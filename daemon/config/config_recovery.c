/*
 * config_recovery: the schema of the recovery side's sections (see config.h): backup (with verify,
 * retention and watch), detector (with the default damage patterns), reconcile (with the default
 * RECONCILE_DEFAULT_* queries); and the checks every section's conninfo and the backup key get
 * as the file is read (no password, a passfile libpq will use, no secret a child could get only on
 * its command line; the key file's mode, owner and length). Called from config_from_tree in
 * config.c, which owns the Config's life cycle (load, free, copy) and the other sections.
 */
#include "config/config_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bcf.h"
#include "cfgtree.h"
#include "codec.h"
#include "cron.h"
#include "err.h"
#include "pgconn.h"
#include "pgmanifest.h"
#include "prio.h"

static void config_check_cron(const CfgSection *s, const char *key, const CfgNode *at, const char *expr)
{
    CronExpr e;
    char err[160];
    if (cron_parse(expr, &e, err, sizeof(err)) < 0)
        cfg_error(s->ctx, at, "'%s%s%s': bad cron schedule '%s': %s", s->path, s->path[0] ? "." : "", key, expr, err);
}

static void config_read_backup_verify(const CfgSection *parent, ConfigBackup *b)
{
    CfgSection s = cfg_section(parent, "verify", false);

    cfg_bool(&s, "after_backup", true, &b->verify_after_backup);
    cfg_string(&s, "restore_schedule", false, NULL, &b->restore_schedule);
    cfg_string_list(&s, "validation_queries", &b->validation_queries, &b->n_validation_queries);
    cfg_check_unknown(&s);
    if (b->restore_schedule)
        config_check_cron(&s, "restore_schedule", cfg_get(s.map, "restore_schedule"), b->restore_schedule);
}

static void config_read_backup_retention(const CfgSection *parent, ConfigBackup *b)
{
    CfgSection s = cfg_section(parent, "retention", false);

    cfg_duration_ms(&s, "max_age", false, 0, 0, &b->retention_max_age_ms);
    cfg_int(&s, "daily", 0, 10000, 0, &b->keep_daily);
    cfg_int(&s, "weekly", 0, 10000, 0, &b->keep_weekly);
    cfg_int(&s, "monthly", 0, 10000, 0, &b->keep_monthly);
    cfg_check_unknown(&s);
}

static void config_read_backup_watch(const CfgSection *parent, ConfigBackup *b)
{
    CfgSection s = cfg_section(parent, "watch", false);

    cfg_duration_ms(&s, "max_age", false, 26ull * 3600 * 1000, 1000, &b->watch_max_age_ms);
    cfg_int(&s, "size_change_percent", 0, 100000, 20, &b->watch_size_change_percent);
    cfg_int(&s, "baseline_count", 1, 1000, 7, &b->watch_baseline_count);
    cfg_int(&s, "failures", 1, 1000, 2, &b->watch_failures);
    cfg_check_unknown(&s);
}

/*
 * A conninfo that child programs (pg_dump, pg_restore) get must be one whose secrets can travel in
 * their environment: an sslpassword or a nested conninfo in dbname could only go on the command
 * line, which every local user can read. A conninfo libpq cannot parse is left to the checks that
 * use it.
 */
void config__check_child_conninfo(const CfgSection *s, const char *key, const char *conninfo)
{
    char msg[256], *ci = NULL;
    /* A password is reported where it is written (config__check_conninfo_password). */
    if (!conninfo || pgconn_check_conninfo(conninfo, msg, sizeof(msg)) != 0 || pgconn_conninfo_has_password(conninfo))
        return;
    int r = pgconn_child_conninfo(conninfo, &ci, msg, sizeof(msg));
    if (r == DR_ECONFIG)
        cfg_error(s->ctx, cfg_get(s->map, key) ? cfg_get(s->map, key) : s->map, "'%s%s%s': %s", s->path,
                  s->path[0] ? "." : "", key, msg);
    free(ci);
}

/*
 * No conninfo holds a password: the daemon's own connections would not leak it, but the children
 * given the same conninfo (pg_dump, pg_basebackup, pg_restore) could get it only on their command
 * line or in their environment, and the configuration file is one more place to keep it safe. Only
 * a key written in this section is checked: one inherited from database.conninfo is reported there.
 * The message names the alternatives and never quotes the conninfo.
 */
void config__check_conninfo_password(const CfgSection *s, const char *key)
{
    const CfgNode *n = s->map ? cfg_get(s->map, key) : NULL;
    if (!n || n->kind != CFG_NODE_SCALAR || !n->scalar || !pgconn_conninfo_has_password(n->scalar))
        return;
    cfg_error(s->ctx, n,
              "'%s%s%s' holds a password, which is refused: put it in a passfile (0600, owned by the "
              "daemon's user), named by passfile= in the conninfo (e.g. a systemd credential: "
              "LoadCredential=pgpass:/etc/credstore/drsupervisor.pgpass in the unit and "
              "passfile=/run/credentials/drsupervisor.service/pgpass) or by PGPASSFILE in the unit's environment",
              s->path, s->path[0] ? "." : "", key);
}

/*
 * libpq ignores a passfile that is not a regular file or that group or others may access (with a
 * warning on stderr only), and the connection then fails for a reason the error does not name: a
 * passfile= written at s.key is checked as the file is read, the way libpq will judge it. Opened
 * non-blocking and checked with fstat, so a FIFO at the path cannot hang the load; never read.
 */
void config__check_conninfo_passfile(const CfgSection *s, const char *key)
{
    const CfgNode *n = s->map ? cfg_get(s->map, key) : NULL;
    char *path = NULL;
    struct stat st;
    if (!n || n->kind != CFG_NODE_SCALAR || !n->scalar || pgconn_conninfo_passfile(n->scalar, &path) < 0 || !path)
        return;
    const char *where = s->path[0] ? "." : "";
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        cfg_error(s->ctx, n, "'%s%s%s': passfile '%s': cannot open: %s", s->path, where, key, path, strerror(errno));
    else if (fstat(fd, &st) < 0)
        cfg_error(s->ctx, n, "'%s%s%s': passfile '%s': cannot stat: %s", s->path, where, key, path, strerror(errno));
    else if (!S_ISREG(st.st_mode))
        cfg_error(s->ctx, n, "'%s%s%s': passfile '%s' is not a regular file (libpq would ignore it)", s->path, where,
                  key, path);
    else if (st.st_mode & 077)
        cfg_error(s->ctx, n,
                  "'%s%s%s': passfile '%s': mode %04o lets group or others access it (libpq would ignore it; "
                  "use 0600 or 0400)",
                  s->path, where, key, path, (unsigned)(st.st_mode & 07777));
    if (fd >= 0)
        close(fd);
    free(path);
}

static void config_read_backup_physical(const CfgSection *parent, ConfigBackup *b)
{
    static const char *const checkpoints[] = {"spread", "fast", NULL};
    CfgSection s = cfg_section(parent, "physical", false);
    int fast = 1;

    cfg_string(&s, "pg_basebackup", false, "/usr/lib/postgresql/15/bin/pg_basebackup", &b->physical_pg_basebackup);
    cfg_string(&s, "conninfo", false, b->conninfo, &b->physical_conninfo);
    cfg_string_list(&s, "schedules", &b->physical_schedules, &b->n_physical_schedules);
    if (cfg_enum(&s, "checkpoint", checkpoints, 1, &fast))
        b->physical_fast_checkpoint = fast == 1;
    (void)cfg_enum(&s, "manifest_checksums", pgmanifest_algo_names(), PGMANIFEST_CRC32C,
                   &b->physical_manifest_checksums);
    cfg_check_unknown(&s);
    const CfgNode *sched = cfg_get(s.map, "schedules");
    for (size_t i = 0; i < b->n_physical_schedules; i++)
        config_check_cron(&s, "schedules", sched && sched->kind == CFG_NODE_SEQ && i < sched->n ? sched->items[i] : sched,
                          b->physical_schedules[i]);
    config__check_conninfo_password(&s, "conninfo");
    config__check_conninfo_passfile(&s, "conninfo");
    config__check_child_conninfo(&s, "conninfo", b->physical_conninfo);
}

/*
 * The backup key, checked as the file is read (at start-up before the loop runs, at a reload on the
 * pool): a key file that is not a regular file owned by the daemon's user, is readable by group or
 * others, or is not a 32-byte key (raw, or 64 hex digits) is refused here with its position, not
 * first at the first scheduled backup. A key_credential is found where every other secret is
 * (config__credential_path: $CREDENTIALS_DIRECTORY, else alerts.credentials_dir), once: the path
 * found is b->key_path, which the backups read at run time, so load and run read the same file.
 * The key itself is wiped at once and never appears in a message.
 */
static void config_check_backup_key(const CfgSection *s, const char *cred_dir, ConfigBackup *b)
{
    uint8_t key[BCF_KEY_LEN];
    char err[512], path[4096];
    const char *file = b->key_file, *name = b->key_file ? "key_file" : "key_credential";
    const CfgNode *at = cfg_get(s->map, name);

    if (!b->key_file == !b->key_credential || (b->key_credential && strchr(b->key_credential, '/')))
        return; /* refused already */
    if (b->key_credential) {
        if (config__credential_path(b->key_credential, cred_dir, path, sizeof(path), err, sizeof(err)) < 0) {
            cfg_error(s->ctx, at, "'backup.key_credential': %s", err);
            return;
        }
        file = path;
    }
    if (bcf_load_key_file(file, key, err, sizeof(err)) < 0)
        cfg_error(s->ctx, at, "'backup.%s': %s%s%s%s", name, b->key_credential ? "credential '" : "",
                  b->key_credential ? b->key_credential : "", b->key_credential ? "': " : "", err);
    else if (!(b->key_path = strdup(file)))
        cfg_error(s->ctx, at, "'backup.%s': out of memory", name);
    explicit_bzero(key, sizeof(key));
}

/* backup.previous_keys: each a key file's path or credential:NAME, checked as the key is; the paths
 * found replace the entries (the backups read them at run time). */
static void config_check_previous_keys(const CfgSection *s, const char *cred_dir, ConfigBackup *b)
{
    const CfgNode *at = cfg_get(s->map, "previous_keys");
    uint8_t key[BCF_KEY_LEN];
    char err[512], path[4096];

    for (size_t i = 0; i < b->n_previous_keys; i++) {
        const char *e = b->previous_keys[i];
        if (!strncmp(e, "credential:", 11)) {
            if (config__credential_path(e + 11, cred_dir, path, sizeof(path), err, sizeof(err)) < 0) {
                cfg_error(s->ctx, at, "'backup.previous_keys' '%s': %s", e, err);
                continue;
            }
        } else if (e[0] == '/') {
            snprintf(path, sizeof(path), "%s", e);
        } else {
            cfg_error(s->ctx, at, "'backup.previous_keys' entries are absolute paths or credential:NAME ('%s')", e);
            continue;
        }
        if (bcf_load_key_file(path, key, err, sizeof(err)) < 0) {
            cfg_error(s->ctx, at, "'backup.previous_keys' '%s': %s", e, err);
            continue;
        }
        explicit_bzero(key, sizeof(key));
        char *p = strdup(path);
        if (!p) {
            cfg_error(s->ctx, at, "'backup.previous_keys': out of memory");
            continue;
        }
        free(b->previous_keys[i]);
        b->previous_keys[i] = p;
    }
}

void config__read_backup(const CfgSection *top, const ConfigDatabase *db, const char *cred_dir, ConfigBackup *b)
{
    static const char *const codecs[] = {"none", "zstd", "gzip", NULL};
    CfgSection s = cfg_section(top, "backup", false);
    int codec = CODEC_ZSTD;

    b->enabled = s.map != NULL;
    b->verify_after_backup = true;
    if (!b->enabled)
        return;
    cfg_string(&s, "directory", true, NULL, &b->directory);
    cfg_string(&s, "prefix", false, "backup", &b->prefix);
    cfg_string(&s, "conninfo", false, db->conninfo, &b->conninfo);
    cfg_string(&s, "pg_dump", false, "/usr/lib/postgresql/15/bin/pg_dump", &b->pg_dump);
    cfg_string(&s, "pg_restore", false, "/usr/lib/postgresql/15/bin/pg_restore", &b->pg_restore);
    cfg_string_list(&s, "schedules", &b->schedules, &b->n_schedules);
    if (cfg_enum(&s, "codec", codecs, CODEC_ZSTD, &codec))
        b->codec = codec;
    cfg_int(&s, "level", 0, 22, 0, &b->level);
    cfg_string(&s, "key_file", false, NULL, &b->key_file);
    cfg_string(&s, "key_credential", false, NULL, &b->key_credential);
    cfg_string_list(&s, "previous_keys", &b->previous_keys, &b->n_previous_keys);
    cfg_size(&s, "chunk_size", 1024 * 1024, 4096, 64 * 1024 * 1024, &b->chunk_size);
    cfg_duration_ms(&s, "dump_timeout", false, 6ull * 3600 * 1000, 1000, &b->dump_timeout_ms);
    static const char *const ioprios[] = {"normal", "best-effort", "idle", NULL};
    int ioprio = PRIO_IO_BEST_EFFORT;
    cfg_int(&s, "nice", 0, 19, 10, &b->nice);
    if (cfg_enum(&s, "ioprio", ioprios, PRIO_IO_BEST_EFFORT, &ioprio))
        b->ioprio = ioprio;
    cfg_string_list(&s, "state_files", &b->state_files, &b->n_state_files);
    config_read_backup_verify(&s, b);
    config_read_backup_retention(&s, b);
    config_read_backup_watch(&s, b);
    config_read_backup_physical(&s, b);
    cfg_check_unknown(&s);

    const CfgNode *sched = cfg_get(s.map, "schedules");
    for (size_t i = 0; i < b->n_schedules; i++)
        config_check_cron(&s, "schedules", sched && sched->kind == CFG_NODE_SEQ && i < sched->n ? sched->items[i] : sched,
                          b->schedules[i]);
    if (b->directory && b->directory[0] != '/')
        cfg_error(s.ctx, cfg_get(s.map, "directory"), "'backup.directory' must be an absolute path");
    if (b->prefix && (!b->prefix[0] || strchr(b->prefix, '/')))
        cfg_error(s.ctx, cfg_get(s.map, "prefix"), "'backup.prefix' must be non-empty and hold no '/'");
    if (!b->key_file == !b->key_credential)
        cfg_error(s.ctx, b->key_file ? cfg_get(s.map, "key_file") : s.map,
                  "'backup' needs exactly one of 'key_file' or 'key_credential'");
    if (b->key_credential && strchr(b->key_credential, '/'))
        cfg_error(s.ctx, cfg_get(s.map, "key_credential"), "'backup.key_credential' is a credential name, no '/'");
    config_check_backup_key(&s, cred_dir, b);
    config_check_previous_keys(&s, cred_dir, b);
    if (b->level && !codec_level_valid((CodecKind)b->codec, (int)b->level))
        cfg_error(s.ctx, cfg_get(s.map, "level"), "'backup.level' %lld is not valid for codec '%s'",
                  (long long)b->level, codec_name((CodecKind)b->codec));
    config__check_conninfo_password(&s, "conninfo");
    config__check_conninfo_passfile(&s, "conninfo");
    config__check_child_conninfo(&s, "conninfo", b->conninfo);
    for (size_t i = 0; i < b->n_state_files; i++)
        if (b->state_files[i][0] != '/')
            cfg_error(s.ctx, cfg_get(s.map, "state_files"), "'backup.state_files': '%s' is not an absolute path",
                      b->state_files[i]);
}

/* Text in a failed restart's output or the server log that means damaged files, not a mere stop. */
static const char *const config_default_damage_patterns[] = {
    "invalid page",           "could not read block",       "checksum",
    "PANIC",                  "invalid checkpoint record",  "could not locate a valid checkpoint record",
    "invalid resource manager", "corrupt",                  "invalid primary checkpoint record",
};

static void config_read_number(const CfgSection *s, const char *key, double def, double *ret);

/* [schema.]table: letters, digits and underscores, at most one dot (the probe quotes each part). */
static bool config_table_name_ok(const char *t)
{
    size_t dots = 0, len = strlen(t);
    if (!len || len > 127 || t[0] == '.' || t[len - 1] == '.')
        return false;
    for (const char *p = t; *p; p++) {
        if (*p == '.')
            dots++;
        else if (!(*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
            return false;
    }
    return dots <= 1;
}

/* detector.watched_tables[i]: {name, table | query, max_drop_percent, max_drop_rows}. */
static void config_read_watched(CfgCtx *ctx, const CfgNode *map, size_t i, ConfigWatchedTable *w)
{
    CfgSection s = {.ctx = ctx, .map = map, .where = map};
    snprintf(s.path, sizeof(s.path), "detector.watched_tables[%zu]", i);
    cfg_string(&s, "table", false, NULL, &w->table);
    cfg_string(&s, "query", false, NULL, &w->query);
    cfg_string(&s, "name", false, w->table, &w->name);
    config_read_number(&s, "max_drop_percent", -1, &w->max_drop_percent);
    cfg_int(&s, "max_drop_rows", 0, INT64_MAX, -1, &w->max_drop_rows);
    cfg_check_unknown(&s);
    if (!w->table == !w->query)
        cfg_error(ctx, map, "'%s' needs exactly one of 'table' (its row count) or 'query' (one number)", s.path);
    else if (w->table && !config_table_name_ok(w->table))
        cfg_error(ctx, cfg_get(map, "table"), "'%s.table' must be [schema.]table (letters, digits, underscores)",
                  s.path);
    else if (w->query && strchr(w->query, ';'))
        cfg_error(ctx, cfg_get(map, "query"), "'%s.query' must be one statement without ';'", s.path);
    else if (!w->name || !w->name[0])
        cfg_error(ctx, map, "'%s' with a query needs a 'name'", s.path);
    if (w->max_drop_percent > 100)
        cfg_error(ctx, cfg_get(map, "max_drop_percent"), "'%s.max_drop_percent' is at most 100", s.path);
    if (w->max_drop_percent < 0 && w->max_drop_rows < 0)
        cfg_error(ctx, map, "'%s' needs a limit: max_drop_percent, max_drop_rows or both", s.path);
}

static void config_read_watched_tables(CfgSection *s, const CfgNode *list, ConfigDetector *d)
{
    cfg_duration_ms(s, "watched_interval", false, 5000, 100, &d->watched_interval_ms);
    cfg_duration_ms(s, "watched_timeout", false, 10000, 10, &d->watched_timeout_ms);
    if (!list || (list->kind == CFG_NODE_SCALAR && !list->scalar[0]))
        return;
    if (list->kind != CFG_NODE_SEQ) {
        cfg_error(s->ctx, list, "'detector.watched_tables' must be a list of {name, table | query, max_drop_percent, "
                  "max_drop_rows}");
        return;
    }
    if (!list->n || !(d->watched_tables = calloc(list->n, sizeof(*d->watched_tables))))
        return;
    for (size_t i = 0; i < list->n; i++) {
        if (list->items[i]->kind != CFG_NODE_MAP) {
            cfg_error(s->ctx, list->items[i], "'detector.watched_tables' items must be mappings {name, table | query, "
                      "max_drop_percent, max_drop_rows}");
            continue;
        }
        ConfigWatchedTable *w = &d->watched_tables[d->n_watched_tables++];
        config_read_watched(s->ctx, list->items[i], i, w);
        for (size_t k = 0; k + 1 < d->n_watched_tables; k++)
            if (w->name && d->watched_tables[k].name && !strcmp(w->name, d->watched_tables[k].name))
                cfg_error(s->ctx, list->items[i], "'detector.watched_tables[%zu]': the name '%s' is used twice", i,
                          w->name);
    }
}

void config__read_detector(const CfgSection *top, const ConfigDatabase *db, ConfigDetector *d)
{
    CfgSection s = cfg_section(top, "detector", false);

    cfg_int(&s, "halt_after", 1, 1000, 2, &d->halt_after);
    cfg_string(&s, "conninfo", false, db->conninfo, &d->conninfo);
    config__check_conninfo_password(&s, "conninfo");
    config__check_conninfo_passfile(&s, "conninfo");
    cfg_string_list(&s, "corruption_queries", &d->corruption_queries, &d->n_corruption_queries);
    cfg_duration_ms(&s, "corruption_interval", false, 60000, 10, &d->corruption_interval_ms);
    cfg_duration_ms(&s, "corruption_timeout", false, 30000, 10, &d->corruption_timeout_ms);
    cfg_string_list(&s, "amcheck_indexes", &d->amcheck_indexes, &d->n_amcheck_indexes);
    cfg_string_list(&s, "restart_command", &d->restart_command, &d->n_restart_command);
    cfg_int(&s, "restart_attempts", 1, 100, 3, &d->restart_attempts);
    cfg_duration_ms(&s, "restart_delay", false, 2000, 0, &d->restart_delay_ms);
    cfg_duration_ms(&s, "restart_timeout", false, 60000, 100, &d->restart_timeout_ms);
    cfg_string(&s, "server_log", false, NULL, &d->server_log);
    cfg_string(&s, "data_directory", false, NULL, &d->data_directory);
    cfg_string_list(&s, "damage_patterns", &d->damage_patterns, &d->n_damage_patterns);
    cfg_bool(&s, "app_crash", false, &d->app_crash);
    config_read_watched_tables(&s, cfg_get(s.map, "watched_tables"), d);
    cfg_bool(&s, "tamper", false, &d->tamper);
    cfg_duration_ms(&s, "tamper_config_grace", false, 300000, 1000, &d->tamper_config_grace_ms);
    cfg_check_unknown(&s);
    if (d->n_damage_patterns == 0) {
        size_t n = sizeof(config_default_damage_patterns) / sizeof(config_default_damage_patterns[0]);
        if ((d->damage_patterns = calloc(n, sizeof(char *)))) {
            d->n_damage_patterns = n;
            for (size_t i = 0; i < n; i++)
                d->damage_patterns[i] = strdup(config_default_damage_patterns[i]);
        }
    }
    if (d->n_restart_command && d->restart_command[0][0] != '/')
        cfg_error(s.ctx, cfg_get(s.map, "restart_command"), "'detector.restart_command' must start with an absolute path");
    if (d->data_directory && d->data_directory[0] != '/')
        cfg_error(s.ctx, cfg_get(s.map, "data_directory"), "'detector.data_directory' must be an absolute path");
    if (d->server_log && d->server_log[0] != '/')
        cfg_error(s.ctx, cfg_get(s.map, "server_log"), "'detector.server_log' must be an absolute path");
}

/* A non-negative decimal number written as a string or a plain scalar ("0.0001", 0). */
static void config_read_number(const CfgSection *s, const char *key, double def, double *ret)
{
    char *text = NULL;
    *ret = def;
    if (!cfg_string(s, key, false, NULL, &text) || !text)
        return;
    char *end = NULL;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end || !(v >= 0) || v > 1e15)
        cfg_error(s->ctx, cfg_get(s->map, key), "'%s.%s' must be a non-negative number, not '%s'", s->path, key, text);
    else
        *ret = v;
    free(text);
}

#define RECONCILE_DEFAULT_POSITIONS "SELECT symbol, quantity::text, avg_price::text FROM positions"
/* The scan is skipped (a one-time filter) when a valid unique index on client_order_id alone, NOT
 * NULL, already guarantees there is no duplicate: a GROUP BY over every order costs seconds on a
 * large, freshly restored table, in the middle of the RTO. */
#define RECONCILE_DEFAULT_DUPLICATES                                                                 \
    "SELECT client_order_id, count(*)::text FROM orders WHERE NOT EXISTS (SELECT 1 FROM pg_index i "    \
    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] WHERE i.indrelid = "     \
    "'orders'::regclass AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1 AND i.indpred IS NULL " \
    "AND a.attname = 'client_order_id' AND a.attnotnull) GROUP BY client_order_id HAVING count(*) > 1"
#define RECONCILE_DEFAULT_STALE                                                                      \
    "SELECT client_order_id, symbol, created_at::text FROM orders WHERE lower(status) IN ('open', 'new', "  \
    "'pending', 'partially_filled') AND created_at < now() - $1::bigint * interval '1 millisecond' "       \
    "ORDER BY created_at"
#define RECONCILE_DEFAULT_MISSING                                                                    \
    "SELECT f FROM unnest($1::text[]) AS f WHERE NOT EXISTS (SELECT 1 FROM fills WHERE fill_id = f)"
#define RECONCILE_DEFAULT_REPLAY                                                                     \
    "WITH o AS (INSERT INTO orders (client_order_id, symbol, side, quantity, price, status, created_at) "  \
    "VALUES ($2, $3, $4, $5::numeric, $6::numeric, 'filled', $7::timestamptz) "                       \
    "ON CONFLICT (client_order_id) DO NOTHING) "                                                       \
    "INSERT INTO fills (fill_id, client_order_id, symbol, side, quantity, price, executed_at) "       \
    "VALUES ($1, $2, $3, $4, $5::numeric, $6::numeric, $7::timestamptz) ON CONFLICT (fill_id) DO NOTHING"
#define RECONCILE_DEFAULT_RECOMPUTE                                                                  \
    "DO $$BEGIN IF to_regprocedure('drsup_recompute_positions()') IS NOT NULL THEN "                  \
    "PERFORM drsup_recompute_positions(); END IF; END$$"

/* reconcile.post_resume_checks: durations after resume_live, ascending, each 100ms..1h. Absent:
 * 10 s and 60 s; an empty list (or null): no post-resume watch. */
static void config_read_post_resume_checks(const CfgSection *s, ConfigReconcile *r)
{
    static const uint64_t defaults[] = {10000, 60000};
    const CfgNode *at = s->map ? cfg_get(s->map, "post_resume_checks") : NULL;
    char **list = NULL;
    size_t n = 0;

    if (!at) {
        r->post_resume_checks_ms = malloc(sizeof(defaults));
        if (r->post_resume_checks_ms) {
            memcpy(r->post_resume_checks_ms, defaults, sizeof(defaults));
            r->n_post_resume_checks = sizeof(defaults) / sizeof(defaults[0]);
        }
        return;
    }
    if (!cfg_string_list(s, "post_resume_checks", &list, &n) || n == 0)
        return;
    r->post_resume_checks_ms = calloc(n, sizeof(uint64_t));
    for (size_t i = 0; i < n; i++) {
        uint64_t ms = 0;
        const CfgNode *item = at->kind == CFG_NODE_SEQ && i < at->n ? at->items[i] : at;
        if (cfg_parse_duration_ms(list[i], &ms) < 0 || ms < 100 || ms > 3600u * 1000u)
            cfg_error(s->ctx, item, "'reconcile.post_resume_checks' item %zu: '%s' is not a duration between 100ms and 1h",
                      i + 1, list[i]);
        else if (i > 0 && r->post_resume_checks_ms && ms <= r->post_resume_checks_ms[i - 1])
            cfg_error(s->ctx, item, "'reconcile.post_resume_checks' must be in ascending order ('%s' follows a later one)",
                      list[i]);
        if (r->post_resume_checks_ms)
            r->post_resume_checks_ms[i] = ms;
        free(list[i]);
    }
    free(list);
    if (r->post_resume_checks_ms)
        r->n_post_resume_checks = n;
}

/* Fills whose order is missing (e.g. order rows deleted under their trades): one row each. */
#define RECONCILE_DEFAULT_REFERENTIAL                                                                \
    "SELECT f.fill_id, f.client_order_id FROM fills f WHERE NOT EXISTS (SELECT 1 FROM orders o "        \
    "WHERE o.client_order_id = f.client_order_id) ORDER BY f.fill_id"

/* reconcile.referential_queries: absent = the default one; [] (or null) = none. */
static void config_read_referential(const CfgSection *s, ConfigReconcile *r)
{
    const CfgNode *at = s->map ? cfg_get(s->map, "referential_queries") : NULL;
    if (at) {
        cfg_string_list(s, "referential_queries", &r->referential_queries, &r->n_referential_queries);
        return;
    }
    if ((r->referential_queries = calloc(1, sizeof(char *))) && (r->referential_queries[0] = strdup(RECONCILE_DEFAULT_REFERENTIAL)))
        r->n_referential_queries = 1;
}

/* Which canonical fill fields the replay query gets as $1..$n (docs/venue.md). */
static void config_read_replay_params(const CfgSection *s, ConfigReconcile *r)
{
    static const char *const known[] = {"fill_id", "client_order_id", "order_id", "symbol", "side",
                                        "quantity", "price", "fee", "executed_at"};
    static const char *const def[] = {"fill_id", "client_order_id", "symbol", "side", "quantity", "price",
                                      "executed_at"};
    const CfgNode *at = cfg_get(s->map, "replay_fill_params");

    cfg_string_list(s, "replay_fill_params", &r->replay_fill_params, &r->n_replay_fill_params);
    if (at && r->n_replay_fill_params == 0)
        cfg_error(s->ctx, at, "'%s.replay_fill_params' cannot be empty (the replay needs at least the fill id)", s->path);
    if (r->n_replay_fill_params > RECONCILE_MAX_REPLAY_PARAMS)
        cfg_error(s->ctx, at, "'%s.replay_fill_params' has %zu items; at most %d", s->path, r->n_replay_fill_params,
                  RECONCILE_MAX_REPLAY_PARAMS);
    for (size_t i = 0; i < r->n_replay_fill_params; i++) {
        bool ok = false;
        for (size_t k = 0; k < sizeof(known) / sizeof(known[0]); k++)
            ok = ok || !strcmp(r->replay_fill_params[i], known[k]);
        if (!ok)
            cfg_error(s->ctx, at, "'%s.replay_fill_params' item %zu: '%s' is not a fill field (fill_id, "
                                  "client_order_id, order_id, symbol, side, quantity, price, fee, executed_at)",
                      s->path, i + 1, r->replay_fill_params[i]);
    }
    if (r->n_replay_fill_params == 0) {
        config_list_free(r->replay_fill_params, 0);
        r->replay_fill_params = calloc(7, sizeof(char *));
        for (size_t i = 0; r->replay_fill_params && i < 7; i++)
            if ((r->replay_fill_params[i] = strdup(def[i])))
                r->n_replay_fill_params = i + 1;
    }
}

void config__read_reconcile(const CfgSection *top, const ConfigDatabase *db, ConfigReconcile *r)
{
    CfgSection s = cfg_section(top, "reconcile", false);

    cfg_string(&s, "conninfo", false, db->conninfo, &r->conninfo);
    config__check_conninfo_password(&s, "conninfo");
    config__check_conninfo_passfile(&s, "conninfo");
    config_read_number(&s, "quantity_tolerance", 0, &r->quantity_tolerance);
    config_read_number(&s, "price_tolerance", 0.0001, &r->price_tolerance);
    cfg_duration_ms(&s, "stale_after", false, 3600ull * 1000, 0, &r->stale_after_ms);
    cfg_duration_ms(&s, "default_since", false, 24ull * 3600 * 1000, 1000, &r->default_since_ms);
    cfg_duration_ms(&s, "restore_point_margin", false, 5ull * 60 * 1000, 0, &r->restore_point_margin_ms);
    cfg_duration_ms(&s, "query_timeout", false, 30000, 10, &r->query_timeout_ms);
    cfg_string(&s, "positions_query", false, RECONCILE_DEFAULT_POSITIONS, &r->positions_query);
    cfg_string(&s, "duplicates_query", false, RECONCILE_DEFAULT_DUPLICATES, &r->duplicates_query);
    cfg_string(&s, "stale_orders_query", false, RECONCILE_DEFAULT_STALE, &r->stale_orders_query);
    cfg_string(&s, "missing_fills_query", false, RECONCILE_DEFAULT_MISSING, &r->missing_fills_query);
    cfg_string(&s, "replay_fill_query", false, RECONCILE_DEFAULT_REPLAY, &r->replay_fill_query);
    cfg_string(&s, "recompute_query", false, RECONCILE_DEFAULT_RECOMPUTE, &r->recompute_query);
    config_read_replay_params(&s, r);
    config_read_post_resume_checks(&s, r);
    config_read_referential(&s, r);
    cfg_check_unknown(&s);
}
