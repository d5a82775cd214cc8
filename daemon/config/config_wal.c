/*
 * config_wal: the wal section (docs/wal.md): the continuous WAL archive's receiver (the
 * replication connection to the primary, its physical slot, where the archive is, how often the
 * partial segment is sealed) and the thresholds of its conditions. The key and the codec are the
 * backup section's: the archive is written like the backups it completes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"
#include "pgconn.h"

void config__free_wal(ConfigWal *w)
{
    free(w->conninfo);
    free(w->slot);
    free(w->directory);
    free(w->application_name);
    memset(w, 0, sizeof(*w));
}

void config__read_wal(const CfgSection *top, const ConfigBackup *b, ConfigWal *w)
{
    CfgSection s = cfg_section(top, "wal", false);
    char def_dir[4096] = "";
    char msg[256];

    w->enabled = s.map != NULL;
    if (b->directory)
        snprintf(def_dir, sizeof(def_dir), "%s/wal", b->directory);
    cfg_string(&s, "conninfo", false, b->physical_conninfo ? b->physical_conninfo : b->conninfo, &w->conninfo);
    cfg_string(&s, "slot", false, "drsupervisor", &w->slot);
    cfg_bool(&s, "create_slot", true, &w->create_slot);
    cfg_string(&s, "directory", false, def_dir[0] ? def_dir : NULL, &w->directory);
    cfg_string(&s, "application_name", false, "drsupervisor_wal", &w->application_name);
    cfg_duration_ms(&s, "flush_interval", false, 1000, 10, &w->flush_interval_ms);
    cfg_duration_ms(&s, "status_interval", false, 10000, 100, &w->status_interval_ms);
    cfg_duration_ms(&s, "timeout", false, 30000, 100, &w->timeout_ms);
    cfg_size(&s, "lag_bytes_warning", 16ull << 20, 0, UINT64_MAX, &w->lag_bytes_warning);
    cfg_size(&s, "lag_bytes_critical", 256ull << 20, 0, UINT64_MAX, &w->lag_bytes_critical);
    cfg_duration_ms(&s, "stalled_after", false, 30000, 100, &w->stalled_after_ms);
    cfg_bool(&s, "synchronous", false, &w->synchronous);
    cfg_duration_ms(&s, "synchronous_fallback", false, 2000, 100, &w->synchronous_fallback_ms);
    cfg_check_unknown(&s);
    if (!w->enabled)
        return;
    if (!b->enabled)
        cfg_error(s.ctx, s.map, "'wal' needs the 'backup' section (its key_file or key_credential encrypts the "
                                "archive, its codec compresses it)");
    if (!w->conninfo)
        cfg_error(s.ctx, s.map, "'wal.conninfo' is required (a replication connection to the primary)");
    else if (pgconn_check_conninfo(w->conninfo, msg, sizeof(msg)) != 0)
        cfg_error(s.ctx, cfg_get(s.map, "conninfo"), "'wal.conninfo': %s", msg);
    config__check_conninfo_password(&s, "conninfo");
    config__check_conninfo_passfile(&s, "conninfo");
    if (w->slot && (!w->slot[0] || strspn(w->slot, "abcdefghijklmnopqrstuvwxyz0123456789_") != strlen(w->slot) ||
                    strlen(w->slot) > 63))
        cfg_error(s.ctx, cfg_get(s.map, "slot"), "'wal.slot' must be 1-63 characters of a-z, 0-9 and _ (a "
                                                 "replication slot name)");
    if (w->application_name && strpbrk(w->application_name, " '\\\t\r\n"))
        cfg_error(s.ctx, cfg_get(s.map, "application_name"), "'wal.application_name' must be one word without "
                                                             "quotes or backslashes");
    if (!w->directory)
        cfg_error(s.ctx, s.map, "'wal.directory' is required (or a backup.directory to put it under)");
    else if (w->directory[0] != '/')
        cfg_error(s.ctx, cfg_get(s.map, "directory"), "'wal.directory' must be an absolute path");
    if (w->lag_bytes_warning > w->lag_bytes_critical)
        cfg_error(s.ctx, s.map, "'wal.lag_bytes_warning' is above 'lag_bytes_critical'");
}
