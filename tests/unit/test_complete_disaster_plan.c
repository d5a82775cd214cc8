/*
 * Unit tests for complete_disaster's plan from the bucket (daemon/scenario/complete_disaster_bucket.c,
 * cd__plan_decide): no manifest refused; the WAL from the segment holding the base backup's start,
 * each segment's newest timeline, history files fetched too; a gap refused; WAL that ends before the
 * backup's stop refused; a timeline's last .partial at the end named as the plan's partial; what
 * precedes the backup left out.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "scenario/complete_disaster_internal.h"
#include "walarchive.h"

#define SEG (16ull << 20)

static json_t *manifest(const char *start, const char *stop)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:I,s:{s:s,s:s}}", "file", "p_backup_20261203_120000.base.tar.zst.drbk", "kind",
                     "physical", "finished_at", "2026-12-03T12:00:05Z", "sha256",
                     "0000000000000000000000000000000000000000000000000000000000000000", "file_size_bytes",
                     (json_int_t)1000, "wal", "start_lsn", start, "stop_lsn", stop);
}

static void add(json_t *names, WalFileKind k, uint32_t tli, uint64_t segno)
{
    char name[128];
    walarchive_file_name(k, tli, segno, SEG, CODEC_ZSTD, name, sizeof(name));
    json_array_append_new(names, json_string(name));
}

static const char *why(const json_t *plan)
{
    return json_string_value(json_object_get(plan, "why"));
}

static void test_no_manifest_is_refused(void **state)
{
    (void)state;
    json_t *p = cd__plan_decide(NULL, NULL, SEG);
    assert_false(json_is_true(json_object_get(p, "ok")));
    assert_non_null(strstr(why(p), "no verified base backup"));
    json_decref(p);
}

static void test_the_wal_after_the_backup_newest_timeline_and_histories(void **state)
{
    (void)state;
    json_t *m = manifest("0/3000028", "0/3000100"), *n = json_array();
    add(n, WALFILE_SEGMENT, 1, 2); /* before the backup: left out */
    add(n, WALFILE_SEGMENT, 1, 3);
    add(n, WALFILE_SEGMENT, 1, 4);
    add(n, WALFILE_PARTIAL_END, 1, 5); /* timeline 1 ended in 5 ... */
    add(n, WALFILE_SEGMENT, 2, 5);     /* ... and timeline 2's copy of 5 wins */
    add(n, WALFILE_SEGMENT, 2, 6);
    add(n, WALFILE_HISTORY, 2, 0);
    json_t *p = cd__plan_decide(m, n, SEG);
    assert_true(json_is_true(json_object_get(p, "ok")));
    const json_t *w = json_object_get(p, "wal"), *f = json_object_get(w, "files");
    assert_int_equal(json_integer_value(json_object_get(w, "segments")), 4);
    assert_int_equal(json_array_size(f), 5);
    assert_non_null(strstr(json_string_value(json_array_get(f, 0)), "000000010000000000000003"));
    assert_non_null(strstr(json_string_value(json_array_get(f, 2)), "000000020000000000000005"));
    assert_non_null(strstr(json_string_value(json_array_get(f, 4)), "00000002.history"));
    assert_string_equal(json_string_value(json_object_get(w, "to_segment")), "000000020000000000000006");
    assert_true(json_is_null(json_object_get(w, "partial")));
    json_decref(p);
    json_decref(m);
    json_decref(n);
}

static void test_a_gap_is_refused(void **state)
{
    (void)state;
    json_t *m = manifest("0/3000028", "0/3000100"), *n = json_array();
    add(n, WALFILE_SEGMENT, 1, 3);
    add(n, WALFILE_SEGMENT, 1, 5);
    json_t *p = cd__plan_decide(m, n, SEG);
    assert_false(json_is_true(json_object_get(p, "ok")));
    assert_non_null(strstr(why(p), "not continuous: 000000010000000000000004 to 000000010000000000000004 missing"));
    json_decref(p);
    json_decref(m);
    json_decref(n);
}

static void test_wal_ending_before_the_backups_end_is_refused(void **state)
{
    (void)state;
    json_t *m = manifest("0/3000028", "0/5000100"), *n = json_array();
    add(n, WALFILE_SEGMENT, 1, 3);
    add(n, WALFILE_SEGMENT, 1, 4);
    json_t *p = cd__plan_decide(m, n, SEG);
    assert_false(json_is_true(json_object_get(p, "ok")));
    assert_non_null(strstr(why(p), "ends before the base backup's end"));
    json_decref(p);
    json_decref(n);
    n = json_array(); /* nothing after the backup at all */
    add(n, WALFILE_SEGMENT, 1, 2);
    p = cd__plan_decide(m, n, SEG);
    assert_false(json_is_true(json_object_get(p, "ok")));
    assert_non_null(strstr(why(p), "no WAL from the base backup's start"));
    json_decref(p);
    json_decref(m);
    json_decref(n);
}

static void test_a_last_partial_is_the_plans_partial(void **state)
{
    (void)state;
    json_t *m = manifest("0/3000028", "0/3000100"), *n = json_array();
    add(n, WALFILE_SEGMENT, 1, 3);
    add(n, WALFILE_PARTIAL_END, 1, 4);
    json_t *p = cd__plan_decide(m, n, SEG);
    assert_true(json_is_true(json_object_get(p, "ok")));
    const char *partial = json_string_value(json_object_get(json_object_get(p, "wal"), "partial"));
    assert_non_null(partial);
    assert_non_null(strstr(partial, "000000010000000000000004.partial"));
    json_decref(p);
    json_decref(m);
    json_decref(n);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_manifest_is_refused),
        cmocka_unit_test(test_the_wal_after_the_backup_newest_timeline_and_histories),
        cmocka_unit_test(test_a_gap_is_refused),
        cmocka_unit_test(test_wal_ending_before_the_backups_end_is_refused),
        cmocka_unit_test(test_a_last_partial_is_the_plans_partial),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
