/*
 * Unit tests for the off-site bucket's retention rule (daemon/cap/offsite/offsite_retention.c,
 * offsite_retention_decide): the age and monthly rules per kind, the newest base backup always kept
 * (and every WAL file after it), WAL before the oldest base backup kept removed, manifests going
 * with their backups, history files and unknown backups kept, no WAL removed without a base backup
 * or with one whose start is unknown, and a policy with no rule removing nothing; a backup's state
 * tar classified by its name (the stem it shares with its container), removed with its backup and
 * never left as an orphan.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "cap/offsite/offsite_retention.h"

#define DAY 86400
#define SEG (16ull << 20)

static int64_t ts(int y, int mo, int d)
{
    struct tm tm = {.tm_year = y - 1900, .tm_mon = mo - 1, .tm_mday = d, .tm_hour = 2};
    return (int64_t)timegm(&tm);
}

static OffsiteRetItem base(int64_t t, uint64_t start_seg)
{
    return (OffsiteRetItem){.kind = OFSR_BASE, .started_s = t, .lsn_known = true, .lsn = start_seg * SEG + 40,
                            .backup = SIZE_MAX};
}

static OffsiteRetItem logical(int64_t t)
{
    return (OffsiteRetItem){.kind = OFSR_LOGICAL, .started_s = t, .backup = SIZE_MAX};
}

static OffsiteRetItem manifest(size_t of)
{
    return (OffsiteRetItem){.kind = OFSR_MANIFEST, .backup = of};
}

static OffsiteRetItem wal(uint64_t segno) /* its end LSN */
{
    return (OffsiteRetItem){.kind = OFSR_WAL, .lsn_known = true, .lsn = (segno + 1) * SEG, .backup = SIZE_MAX};
}

static void test_no_rule_removes_nothing(void **state)
{
    (void)state;
    OffsiteRetItem it[] = {base(ts(2020, 1, 1), 1), wal(0), logical(ts(2020, 1, 1))};
    bool keep[3];
    uint64_t from = 99;
    RetentionPolicy p = {0};
    assert_int_equal(offsite_retention_decide(it, 3, ts(2026, 1, 1), &p, keep, &from), 0);
    assert_true(keep[0] && keep[1] && keep[2]);
    assert_int_equal(from, 0);
}

static void test_max_age_base_wal_manifests(void **state)
{
    (void)state;
    int64_t now = ts(2026, 12, 1);
    /* 0,1: base backups 200 and 100 days old (start segments 10, 20); 2: one 10 days old (segment 30);
     * 3..5: their manifests; 6..9: WAL 9, 19, 29 (ends where 30 starts), 30; 10: a history file */
    OffsiteRetItem it[] = {base(now - 200 * DAY, 10), base(now - 100 * DAY, 20), base(now - 10 * DAY, 30),
                           manifest(0), manifest(1), manifest(2),
                           wal(9), wal(19), wal(29), wal(30),
                           {.kind = OFSR_OTHER, .backup = SIZE_MAX}};
    size_t n = sizeof(it) / sizeof(it[0]);
    bool keep[11];
    uint64_t from = 0;
    RetentionPolicy p = {.max_age_s = 90 * DAY};
    size_t dropped = offsite_retention_decide(it, n, now, &p, keep, &from);
    assert_false(keep[0]);
    assert_false(keep[1]);
    assert_true(keep[2]);
    assert_false(keep[3]);
    assert_false(keep[4]);
    assert_true(keep[5]);
    assert_false(keep[6]);
    assert_false(keep[7]);
    assert_false(keep[8]); /* ends exactly where the oldest base backup kept starts its segment */
    assert_true(keep[9]);  /* the segment the base backup starts in */
    assert_true(keep[10]);
    assert_int_equal(dropped, 7);
    assert_int_equal(from, 30 * SEG + 40);
}

static void test_newest_base_and_its_wal_always_kept(void **state)
{
    (void)state;
    int64_t now = ts(2026, 12, 1);
    /* everything far older than max_age: the newest base backup and the WAL after it still stay */
    OffsiteRetItem it[] = {base(now - 400 * DAY, 5), base(now - 300 * DAY, 50), wal(4), wal(49), wal(50), wal(80),
                           logical(now - 500 * DAY), logical(now - 450 * DAY)};
    bool keep[8];
    RetentionPolicy p = {.max_age_s = DAY};
    offsite_retention_decide(it, 8, now, &p, keep, NULL);
    assert_false(keep[0]);
    assert_true(keep[1]);
    assert_false(keep[2]);
    assert_false(keep[3]);
    assert_true(keep[4]);
    assert_true(keep[5]);
    assert_false(keep[6]);
    assert_true(keep[7]); /* the newest logical backup too: each kind on its own */
}

static void test_monthly_keeps_newest_of_each_month(void **state)
{
    (void)state;
    int64_t now = ts(2026, 12, 15);
    /* base backups on the 1st and the 10th of each month, Jan..Dec 2026 (24), start segments rising */
    OffsiteRetItem it[24];
    bool keep[24];
    for (int m = 0; m < 12; m++) {
        it[2 * m] = base(ts(2026, m + 1, 1), (uint64_t)(100 + 2 * m));
        it[2 * m + 1] = base(ts(2026, m + 1, 10), (uint64_t)(101 + 2 * m));
    }
    RetentionPolicy p = {.monthly = 3};
    size_t dropped = offsite_retention_decide(it, 24, now, &p, keep, NULL);
    assert_int_equal(dropped, 21);
    for (int i = 0; i < 24; i++)
        assert_int_equal(keep[i], i == 19 || i == 21 || i == 23); /* the 10th of Oct, Nov, Dec */
}

static void test_unknown_start_or_no_base_keeps_wal(void **state)
{
    (void)state;
    int64_t now = ts(2026, 12, 1);
    RetentionPolicy p = {.max_age_s = DAY};
    OffsiteRetItem a[] = {base(now, 30), wal(1), wal(2)};
    a[0].lsn_known = false; /* a base backup whose start is not recorded */
    bool keep[3];
    uint64_t from = 7;
    assert_int_equal(offsite_retention_decide(a, 3, now, &p, keep, &from), 0);
    assert_int_equal(from, 0);
    OffsiteRetItem b[] = {logical(now - 10 * DAY), logical(now), wal(1)};
    offsite_retention_decide(b, 3, now, &p, keep, NULL);
    assert_false(keep[0]);
    assert_true(keep[1]);
    assert_true(keep[2]); /* no base backup: the WAL may be someone's only way back */
    OffsiteRetItem c[] = {base(now, 30), {.kind = OFSR_WAL, .backup = SIZE_MAX}}; /* segment size unknown */
    offsite_retention_decide(c, 2, now, &p, keep, NULL);
    assert_true(keep[1]);
}

static void test_unknown_backups_and_orphan_manifests_kept(void **state)
{
    (void)state;
    int64_t now = ts(2026, 12, 1);
    RetentionPolicy p = {.max_age_s = DAY};
    OffsiteRetItem it[] = {{.kind = OFSR_UNKNOWN, .backup = SIZE_MAX}, manifest(0), manifest(SIZE_MAX),
                           logical(now - 30 * DAY), logical(now)};
    bool keep[5];
    assert_int_equal(offsite_retention_decide(it, 5, now, &p, keep, NULL), 1);
    assert_true(keep[0] && keep[1] && keep[2] && keep[4]);
    assert_false(keep[3]);
}

static void test_classify_names(void **state)
{
    (void)state;
    size_t stem;
    const char *base_name = "prod/backups/shop_backup_20261203_120000.base.tar.zst.drbk";
    assert_int_equal(offsite_retention_classify(base_name, &stem), OFSR_UNKNOWN);
    assert_int_equal(stem, strlen("prod/backups/shop_backup_20261203_120000"));
    assert_int_equal(offsite_retention_classify("shop_backup_20261203_120000.dump.zst.drbk", &stem), OFSR_UNKNOWN);
    assert_int_equal(stem, strlen("shop_backup_20261203_120000"));
    assert_int_equal(offsite_retention_classify("shop_backup_20261203_120000.state.tar.zst.drbk", &stem),
                     OFSR_STATE_TAR);
    assert_int_equal(stem, strlen("shop_backup_20261203_120000"));
    assert_int_equal(offsite_retention_classify("shop_backup_20261203_120000.state.tar.drbk", &stem), OFSR_STATE_TAR);
    assert_int_equal(offsite_retention_classify("shop_backup_20261203_120000.base.tar.zst.drbk.manifest.json", &stem),
                     OFSR_MANIFEST);
    /* a prefix with "_backup_" in it: the file's own counts */
    assert_int_equal(offsite_retention_classify("my_backup_x/a_backup_20260101_000000.state.tar.drbk", &stem),
                     OFSR_STATE_TAR);
    assert_int_equal(stem, strlen("my_backup_x/a_backup_20260101_000000"));
    /* not a backup's name: no stem, never a state tar */
    assert_int_equal(offsite_retention_classify("notes.state.tar.drbk", &stem), OFSR_UNKNOWN);
    assert_int_equal(stem, 0);
}

static void test_state_tar_goes_with_its_backup(void **state)
{
    (void)state;
    int64_t now = ts(2026, 12, 1);
    RetentionPolicy p = {.max_age_s = DAY};
    OffsiteRetItem tar0 = {.kind = OFSR_STATE_TAR, .backup = 0}, tar1 = {.kind = OFSR_STATE_TAR, .backup = 1};
    OffsiteRetItem orphan = {.kind = OFSR_STATE_TAR, .backup = SIZE_MAX};
    OffsiteRetItem it[] = {logical(now - 30 * DAY), logical(now), tar0, tar1, orphan, manifest(0)};
    bool keep[6];
    assert_int_equal(offsite_retention_decide(it, 6, now, &p, keep, NULL), 4);
    assert_false(keep[0]); /* the old backup */
    assert_true(keep[1]);
    assert_false(keep[2]); /* its tar with it */
    assert_true(keep[3]);  /* the newest backup's tar kept */
    assert_false(keep[4]); /* an orphan tar goes */
    assert_false(keep[5]); /* the old backup's manifest */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_rule_removes_nothing),
        cmocka_unit_test(test_max_age_base_wal_manifests),
        cmocka_unit_test(test_newest_base_and_its_wal_always_kept),
        cmocka_unit_test(test_monthly_keeps_newest_of_each_month),
        cmocka_unit_test(test_unknown_start_or_no_base_keeps_wal),
        cmocka_unit_test(test_unknown_backups_and_orphan_manifests_kept),
        cmocka_unit_test(test_classify_names),
        cmocka_unit_test(test_state_tar_goes_with_its_backup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
