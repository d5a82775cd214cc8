/*
 * config_offsite: the repository section (docs/offsite.md): repository.s3, the S3-compatible bucket
 * every verified backup and archived WAL file is copied to (endpoint, region, bucket, prefix, path
 * or virtual-host style, the access key id and secret from files or systemd credentials), how
 * uploads go (part size, concurrency, deadline, retries), the thresholds of offsite.lag and the
 * bucket's own retention (repository.s3.retention).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_internal.h"
#include "s3req.h"

static void config_secret_wipe(char **s)
{
    if (*s) {
        explicit_bzero(*s, strlen(*s));
        free(*s);
        *s = NULL;
    }
}

void config_offsite_free(ConfigOffsite *o)
{
    free(o->endpoint);
    free(o->region);
    free(o->bucket);
    free(o->prefix);
    config_secret_wipe(&o->access_key);
    config_secret_wipe(&o->secret_key);
    memset(o, 0, sizeof(*o));
}

int config_offsite_copy(const ConfigOffsite *src, ConfigOffsite *dst)
{
    *dst = *src;
    dst->endpoint = dst->region = dst->bucket = dst->prefix = dst->access_key = dst->secret_key = NULL;
    if (config_str_copy(src->endpoint, &dst->endpoint) < 0 || config_str_copy(src->region, &dst->region) < 0 ||
        config_str_copy(src->bucket, &dst->bucket) < 0 || config_str_copy(src->prefix, &dst->prefix) < 0 ||
        config_str_copy(src->access_key, &dst->access_key) < 0 ||
        config_str_copy(src->secret_key, &dst->secret_key) < 0) {
        config_offsite_free(dst);
        return -ENOMEM;
    }
    return 0;
}

void config__read_repository(const CfgSection *top, const ConfigBackup *b, const char *cred_dir, ConfigOffsite *o)
{
    CfgSection r = cfg_section(top, "repository", false);
    CfgSection s = cfg_section(&r, "s3", false);
    static const char *const styles[] = {"path", "virtual", NULL};
    int style = 0;
    char why[128];

    cfg_check_unknown(&r);
    o->enabled = s.map != NULL;
    cfg_string(&s, "endpoint", o->enabled, NULL, &o->endpoint);
    cfg_string(&s, "region", false, "us-east-1", &o->region);
    cfg_string(&s, "bucket", o->enabled, NULL, &o->bucket);
    cfg_string(&s, "prefix", false, "", &o->prefix);
    if (cfg_enum(&s, "url_style", styles, 0, &style))
        o->virtual_host = style == 1;
    config__secret(&s, "access_key_id", false, cred_dir, &o->access_key, NULL);
    config__secret(&s, "secret_access_key", false, cred_dir, &o->secret_key, NULL);
    cfg_size(&s, "part_size", 64ull << 20, 64ull << 10, 5ull << 30, &o->part_size);
    cfg_int(&s, "concurrency", 1, 64, 4, &o->concurrency);
    cfg_duration_ms(&s, "timeout", false, 300000, 1000, &o->timeout_ms);
    cfg_duration_ms(&s, "retry_base", false, 1000, 10, &o->retry_base_ms);
    cfg_duration_ms(&s, "retry_cap", false, 60000, 10, &o->retry_cap_ms);
    cfg_int(&s, "max_attempts", 1, 100, 5, &o->max_attempts);
    cfg_duration_ms(&s, "scan_interval", false, 30000, 100, &o->scan_interval_ms);
    cfg_duration_ms(&s, "lag_warning", false, 15 * 60000, 1000, &o->lag_warning_ms);
    cfg_duration_ms(&s, "lag_critical", false, 60 * 60000, 1000, &o->lag_critical_ms);
    cfg_bool(&s, "wal", true, &o->wal);
    cfg_bool(&s, "state", true, &o->state);
    CfgSection ret = cfg_section(&s, "retention", false);
    cfg_duration_ms(&ret, "max_age", false, 0, 0, &o->retention_max_age_ms);
    cfg_int(&ret, "daily", 0, 10000, 0, &o->keep_daily);
    cfg_int(&ret, "weekly", 0, 10000, 0, &o->keep_weekly);
    cfg_int(&ret, "monthly", 0, 10000, 0, &o->keep_monthly);
    cfg_check_unknown(&ret);
    cfg_check_unknown(&s);
    if (!o->enabled)
        return;
    if (!b->enabled)
        cfg_error(s.ctx, s.map, "'repository.s3' needs the 'backup' section (it copies the backups and the WAL "
                                "archive off-site)");
    if (o->endpoint && s3req_check_endpoint(o->endpoint, why, sizeof(why)) < 0)
        cfg_error(s.ctx, cfg_get(s.map, "endpoint"), "'repository.s3.endpoint' %s", why);
    if (o->bucket && (!o->bucket[0] || strlen(o->bucket) > 63 ||
                      strspn(o->bucket, "abcdefghijklmnopqrstuvwxyz0123456789.-") != strlen(o->bucket)))
        cfg_error(s.ctx, cfg_get(s.map, "bucket"), "'repository.s3.bucket' must be 1-63 characters of a-z, 0-9, "
                                                   "'.' and '-' (an S3 bucket name)");
    if (o->prefix && (o->prefix[0] == '/' || (o->prefix[0] && o->prefix[strlen(o->prefix) - 1] != '/') ||
                      strstr(o->prefix, "//") || strpbrk(o->prefix, "\\\r\n")))
        cfg_error(s.ctx, cfg_get(s.map, "prefix"), "'repository.s3.prefix' must be empty or end with '/' (e.g. "
                                                   "'prod/'), without a leading '/'");
    if (!o->access_key)
        cfg_error(s.ctx, s.map, "'repository.s3' needs access_key_id_file or access_key_id_credential");
    if (!o->secret_key)
        cfg_error(s.ctx, s.map, "'repository.s3' needs secret_access_key_file or secret_access_key_credential");
    if (o->retry_base_ms > o->retry_cap_ms)
        cfg_error(s.ctx, s.map, "'repository.s3.retry_base' is above 'retry_cap'");
    if (o->lag_warning_ms > o->lag_critical_ms)
        cfg_error(s.ctx, s.map, "'repository.s3.lag_warning' is above 'lag_critical'");
}
