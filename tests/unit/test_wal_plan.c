/*
 * Unit tests for the WAL archive's recovery plan (daemon/cap/wal/wal_plan.c, wal_plan_decide): the
 * newest verified base backup finished before the target is chosen (an unverified or a later one
 * never), the segments from its start to the one being written at the target, the newest timeline
 * of a segment, a hole refused, a target past the end of the archive refused, the partial's seal
 * time counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "cap/wal/wal_internal.h"

#define SEG (16ull << 20)
#define T0 1700000000000LL /* ms */

static json_t *manifest(const char *file, const char *finished, const char *start_lsn, bool verified)
{
    return json_pack("{s:s,s:s,s:s,s:s,s:{s:s},s:I,s:{s:s,s:b}}", "file", file, "kind", "physical", "started_at",
                     "2023-11-14T22:00:00Z", "finished_at", finished, "wal", "start_lsn", start_lsn,
                     "file_size_bytes", (json_int_t)150000000, "verification", "container", verified ? "ok" : "failed",
                     "sha256_match", verified);
}

/* backups finished at T0-100 s (segment 2) and T0+100 s (segment 6), and an unverified one at T0-10 s */
static json_t *backups(void)
{
    json_t *a = json_array();
    json_array_append_new(a, manifest("b1", "2023-11-14T22:11:40Z", "0/2000028", true));
    json_array_append_new(a, manifest("bad", "2023-11-14T22:13:10Z", "0/4000028", false));
    json_array_append_new(a, manifest("b2", "2023-11-14T22:15:00Z", "0/6000028", true));
    return a;
}

static WalSeg seg(uint32_t tli, uint64_t segno, WalFileKind k, int64_t mtime_ms)
{
    return (WalSeg){.tli = tli, .segno = segno, .kind = k, .mtime_ms = mtime_ms, .size = 1000};
}

static void test_plan_picks_the_newest_verified_before_the_target(void **state)
{
    (void)state;
    json_t *b = backups();
    WalSeg s[] = {seg(1, 1, WALFILE_SEGMENT, T0 - 200000), seg(1, 2, WALFILE_SEGMENT, T0 - 90000),
                  seg(1, 3, WALFILE_SEGMENT, T0 - 30000),  seg(1, 4, WALFILE_SEGMENT, T0 + 5000),
                  seg(1, 5, WALFILE_SEGMENT, T0 + 60000),  seg(1, 6, WALFILE_PARTIAL, T0 + 90000)};
    json_t *p = wal_plan_decide(b, s, 6, SEG, T0, 0);
    assert_true(json_is_true(json_object_get(p, "ok")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(p, "base_backup"), "name")), "b1");
    const json_t *w = json_object_get(p, "wal");
    assert_string_equal(json_string_value(json_object_get(w, "from_segment")), "000000010000000000000002");
    assert_string_equal(json_string_value(json_object_get(w, "to_segment")), "000000010000000000000004");
    assert_int_equal(json_integer_value(json_object_get(w, "segments")), 3);
    assert_true(json_is_true(json_object_get(w, "continuous")));
    assert_int_equal(json_integer_value(json_object_get(p, "archive_end_ms")), T0 + 90000);
    assert_true(json_real_value(json_object_get(p, "estimate_s")) > 1.0);
    json_decref(p);
    json_decref(b);
}

static void test_plan_refuses_what_it_cannot_do(void **state)
{
    (void)state;
    json_t *b = backups();
    WalSeg s[] = {seg(1, 2, WALFILE_SEGMENT, T0 - 90000), seg(1, 4, WALFILE_SEGMENT, T0 + 5000)};
    /* a hole (segment 3) between the base backup and the target */
    json_t *p = wal_plan_decide(b, s, 2, SEG, T0, 0);
    assert_false(json_is_true(json_object_get(p, "ok")));
    assert_non_null(strstr(json_string_value(json_object_get(p, "why")), "000000010000000000000003"));
    json_decref(p);
    /* before every base backup */
    p = wal_plan_decide(b, s, 2, SEG, T0 - 500000, 0);
    assert_false(json_is_true(json_object_get(p, "ok")));
    assert_non_null(strstr(json_string_value(json_object_get(p, "why")), "no verified base backup"));
    json_decref(p);
    /* past the end of the archive */
    WalSeg c[] = {seg(1, 2, WALFILE_SEGMENT, T0 - 90000), seg(1, 3, WALFILE_PARTIAL, T0 - 80000)};
    p = wal_plan_decide(b, c, 2, SEG, T0, 0);
    assert_false(json_is_true(json_object_get(p, "ok")));
    assert_non_null(strstr(json_string_value(json_object_get(p, "why")), "archive ends"));
    json_decref(p);
    /* ... unless the partial was sealed after the target (its file time can be older) */
    p = wal_plan_decide(b, c, 2, SEG, T0, T0 + 500);
    assert_true(json_is_true(json_object_get(p, "ok")));
    json_decref(p);
    /* no WAL at all from the base backup's start */
    WalSeg none[] = {seg(1, 1, WALFILE_SEGMENT, T0 - 200000)};
    p = wal_plan_decide(b, none, 1, SEG, T0, 0);
    assert_false(json_is_true(json_object_get(p, "ok")));
    assert_non_null(strstr(json_string_value(json_object_get(p, "why")), "no WAL"));
    json_decref(p);
    json_decref(b);
}

static void test_plan_follows_the_newest_timeline(void **state)
{
    (void)state;
    json_t *b = backups();
    /* timeline 2 began inside segment 3: its copy of 3 is the one replayed */
    WalSeg s[] = {seg(1, 2, WALFILE_SEGMENT, T0 - 90000), seg(1, 3, WALFILE_PARTIAL_END, T0 - 60000),
                  seg(2, 3, WALFILE_SEGMENT, T0 - 50000), seg(2, 4, WALFILE_SEGMENT, T0 + 1000)};
    json_t *p = wal_plan_decide(b, s, 4, SEG, T0, 0);
    assert_true(json_is_true(json_object_get(p, "ok")));
    const json_t *w = json_object_get(p, "wal");
    assert_int_equal(json_integer_value(json_object_get(w, "segments")), 3);
    assert_string_equal(json_string_value(json_object_get(w, "to_segment")), "000000020000000000000004");
    json_decref(p);
    json_decref(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_picks_the_newest_verified_before_the_target),
        cmocka_unit_test(test_plan_refuses_what_it_cannot_do),
        cmocka_unit_test(test_plan_follows_the_newest_timeline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
