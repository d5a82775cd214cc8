/*
 * Unit tests for the kind of a backup (daemon/cap/backup/backup_catalog.c) and the WAL range of a
 * base backup (backup_job.c): manifests without "kind" are logical (written before physical
 * backups existed), "physical" is physical, anything else is unknown; what "verified" means per
 * kind (logical needs pg_restore --list, physical the container and the SHA-256, unknown never);
 * the WAL-Ranges of a server backup_manifest, one range and several (a promoted standby), and its
 * refusals (not JSON, no ranges, a malformed LSN, an end before the start).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "cap/backup/backup_internal.h"

static json_t *manifest(const char *json)
{
    json_error_t e;
    json_t *m = json_loads(json, 0, &e);
    assert_non_null(m);
    return m;
}

static void test_kind(void **state)
{
    (void)state;
    json_t *old = manifest("{\"file\":\"a.dump.zst.drbk\",\"started_at\":\"2026-01-01T00:00:00Z\"}");
    json_t *l = manifest("{\"kind\":\"logical\"}");
    json_t *p = manifest("{\"kind\":\"physical\"}");
    json_t *w = manifest("{\"kind\":\"wal\"}");
    json_t *n = manifest("{\"kind\":7}");
    assert_int_equal(backup_manifest_kind(old), BACKUP_KIND_LOGICAL);
    assert_int_equal(backup_manifest_kind(l), BACKUP_KIND_LOGICAL);
    assert_int_equal(backup_manifest_kind(p), BACKUP_KIND_PHYSICAL);
    assert_int_equal(backup_manifest_kind(w), BACKUP_KIND_UNKNOWN);
    assert_int_equal(backup_manifest_kind(n), BACKUP_KIND_UNKNOWN);
    assert_string_equal(backup_kind_name(BACKUP_KIND_LOGICAL), "logical");
    assert_string_equal(backup_kind_name(BACKUP_KIND_PHYSICAL), "physical");
    assert_string_equal(backup_kind_name(BACKUP_KIND_UNKNOWN), "unknown");
    json_decref(old);
    json_decref(l);
    json_decref(p);
    json_decref(w);
    json_decref(n);
}

static void test_verified_per_kind(void **state)
{
    (void)state;
    static const char *const ok_v = "\"verification\":{\"container\":\"ok\",\"sha256_match\":true%s}";
    char buf[512];
    struct {
        const char *kind; /* NULL: no kind field */
        const char *extra;
        bool verified;
    } cases[] = {
        {NULL, ",\"pg_restore_list\":\"ok\"", true},
        {NULL, "", false}, /* an old manifest needs pg_restore --list, as before */
        {NULL, ",\"pg_restore_list\":\"failed\"", false},
        {"logical", ",\"pg_restore_list\":\"ok\"", true},
        {"logical", "", false},
        {"physical", "", true},
        {"physical", ",\"pg_restore_list\":\"failed\"", true}, /* not its check */
        {"wal", ",\"pg_restore_list\":\"ok\"", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char v[256];
        snprintf(v, sizeof(v), ok_v, cases[i].extra);
        if (cases[i].kind)
            snprintf(buf, sizeof(buf), "{\"kind\":\"%s\",%s}", cases[i].kind, v);
        else
            snprintf(buf, sizeof(buf), "{%s}", v);
        json_t *m = manifest(buf);
        assert_int_equal(backup_manifest_verified(m), cases[i].verified);
        json_decref(m);
    }
    /* The container and the SHA-256 count for every kind. */
    json_t *m = manifest("{\"kind\":\"physical\",\"verification\":{\"container\":\"failed\",\"sha256_match\":true}}");
    assert_false(backup_manifest_verified(m));
    json_decref(m);
    m = manifest("{\"kind\":\"physical\",\"verification\":{\"container\":\"ok\",\"sha256_match\":false}}");
    assert_false(backup_manifest_verified(m));
    json_decref(m);
    m = manifest("{\"kind\":\"physical\"}");
    assert_false(backup_manifest_verified(m));
    json_decref(m);
}

static void test_wal_range(void **state)
{
    (void)state;
    const char *one = "{\"PostgreSQL-Backup-Manifest-Version\":1,\"Files\":[{\"Path\":\"PG_VERSION\"},"
                      "{\"Path\":\"global/pg_control\"}],\"WAL-Ranges\":[{\"Timeline\":1,\"Start-LSN\":\"0/2000028\","
                      "\"End-LSN\":\"0/2000100\"}],\"Manifest-Checksum\":"
                      "\"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\"}";
    BackupWalRange w;
    char err[256] = "";
    assert_int_equal(backup_basebackup_wal_range(one, strlen(one), &w, err, sizeof(err)), 0);
    assert_string_equal(w.start_lsn, "0/2000028");
    assert_string_equal(w.stop_lsn, "0/2000100");
    assert_int_equal(w.timeline, 1);
    assert_int_equal(w.stop_timeline, 1);
    assert_int_equal(w.files, 2);
    assert_string_equal(w.manifest_checksum, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");

    /* A standby promoted during the backup: newest timeline first in the manifest. */
    const char *two = "{\"WAL-Ranges\":[{\"Timeline\":3,\"Start-LSN\":\"1/A0000000\",\"End-LSN\":\"1/B0000100\"},"
                      "{\"Timeline\":2,\"Start-LSN\":\"1/9F000028\",\"End-LSN\":\"1/A0000000\"}]}";
    assert_int_equal(backup_basebackup_wal_range(two, strlen(two), &w, err, sizeof(err)), 0);
    assert_string_equal(w.start_lsn, "1/9F000028");
    assert_string_equal(w.stop_lsn, "1/B0000100");
    assert_int_equal(w.timeline, 2);
    assert_int_equal(w.stop_timeline, 3);
    assert_string_equal(w.manifest_checksum, "");

    const char *bad[] = {
        "not json",
        "{\"Files\":[]}",
        "{\"WAL-Ranges\":[]}",
        "{\"WAL-Ranges\":[{\"Timeline\":1,\"Start-LSN\":\"0/20x\",\"End-LSN\":\"0/30\"}]}",
        "{\"WAL-Ranges\":[{\"Timeline\":1,\"Start-LSN\":\"0/30\",\"End-LSN\":\"0/20\"}]}",
        "{\"WAL-Ranges\":[{\"Timeline\":0,\"Start-LSN\":\"0/20\",\"End-LSN\":\"0/30\"}]}",
        "{\"WAL-Ranges\":[{\"Start-LSN\":\"0/20\",\"End-LSN\":\"0/30\"}]}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        BackupWalRange keep = {.timeline = 42};
        err[0] = '\0';
        assert_int_equal(backup_basebackup_wal_range(bad[i], strlen(bad[i]), &keep, err, sizeof(err)), -EBADMSG);
        assert_int_equal(keep.timeline, 42); /* untouched */
        assert_non_null(strstr(err, "backup_manifest"));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kind),
        cmocka_unit_test(test_verified_per_kind),
        cmocka_unit_test(test_wal_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
