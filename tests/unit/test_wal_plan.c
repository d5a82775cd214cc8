/*
 * Unit tests for the WAL archive's recovery plan (daemon/cap/wal/wal_plan.c, wal_plan_decide): the
 * newest verified base backup finished before the target is chosen (an unverified or a later one
 * never; finished by the target at the manifest's precision: finished_at_ms, else strictly before
 * the target's second), the segments from its start to the one being written at the target, the newest timeline
 * of a segment, a hole refused, a target past the end of the archive refused, the partial's seal
 * time counted. And the staging of a recovery's WAL (wal__stage_work) on a real archive directory:
 * the plan's segments and the one after, the newest timeline's copy, the partial as its bytes and
 * zeros, every history file; each verified, decrypted and written 0600.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"

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

#define SSEG (1ull << 20) /* 1 MiB segments keep the staging test small */

static void fill(uint8_t *b, size_t n, uint8_t v)
{
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(v + i % 251);
}

static void put_segment(const char *dir, const uint8_t *key, WalFileKind k, uint32_t tli, uint64_t segno, uint8_t v)
{
    char name[128], err[256];
    uint8_t *b = malloc(SSEG);
    assert_non_null(b);
    fill(b, SSEG, v);
    assert_int_equal(walarchive_file_name(k, tli, segno, SSEG, CODEC_ZSTD, name, sizeof(name)), 0);
    assert_int_equal(walarchive_write_file(dir, name, key, CODEC_ZSTD, T0 / 1000, b, SSEG, err, sizeof(err)), 0);
    free(b);
}

/* The staged file `name` holds `len` bytes of pattern v (then zeros up to the segment's size). */
static void expect_staged(const char *dir, const char *name, uint8_t v, size_t len)
{
    char path[512];
    char *got = NULL;
    size_t n = 0;
    struct stat st;
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(atomicfile_read_all(path, 4 * SSEG, &got, &n), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    uint8_t *want = calloc(1, SSEG);
    fill(want, len, v);
    assert_int_equal(n, SSEG);
    assert_memory_equal(got, want, SSEG);
    free(want);
    free(got);
}

static void test_stage_writes_what_the_replay_needs(void **state)
{
    (void)state;
    char arch[] = "/tmp/drsup-stage-XXXXXX", out[128], path[600], err[256];
    uint8_t key[BCF_KEY_LEN];
    assert_non_null(mkdtemp(arch));
    memset(key, 7, sizeof(key));
    /* segments 1..3 on timeline 1, 3 again on timeline 2 (the promotion), 4 and 5 on 2, the
     * partial 6 (its first 1000 bytes sealed), and the history of timeline 2 */
    put_segment(arch, key, WALFILE_SEGMENT, 1, 1, 1);
    put_segment(arch, key, WALFILE_SEGMENT, 1, 2, 2);
    put_segment(arch, key, WALFILE_PARTIAL_END, 1, 3, 30);
    put_segment(arch, key, WALFILE_SEGMENT, 2, 3, 3);
    put_segment(arch, key, WALFILE_SEGMENT, 2, 4, 4);
    put_segment(arch, key, WALFILE_SEGMENT, 2, 5, 5);
    uint8_t piece[1000];
    fill(piece, sizeof(piece), 6);
    snprintf(path, sizeof(path), "%s/000000020000000000000006.partial.drwal", arch);
    assert_int_equal(walarchive_append_piece(path, key, CODEC_ZSTD, 0, piece, sizeof(piece), err, sizeof(err)), 0);
    assert_int_equal(walarchive_write_file(arch, "00000002.history.drbk", key, CODEC_ZSTD, T0 / 1000,
                                           (const uint8_t *)"1\t0/3000000\tno reason\n", 22, err, sizeof(err)), 0);

    /* the plan's range 2..3: 2, timeline 2's 3 and the one after (4); not 1, 5 or the partial */
    WalJob j = {.codec = CODEC_ZSTD, .seg_size = SSEG, .segno = 2, .stage_to = 3, .uid = getuid(), .gid = getgid()};
    memcpy(j.key, key, sizeof(key));
    snprintf(out, sizeof(out), "%s/staged", arch);
    j.dir = arch;
    j.stage_dir = out;
    wal__stage_work(&j);
    assert_int_equal(j.result, 0);
    assert_int_equal(j.files, 4);
    expect_staged(out, "000000010000000000000002", 2, SSEG);
    expect_staged(out, "000000020000000000000003", 3, SSEG);
    expect_staged(out, "000000020000000000000004", 4, SSEG);
    snprintf(path, sizeof(path), "%s/00000002.history", out);
    assert_int_equal(access(path, F_OK), 0);
    snprintf(path, sizeof(path), "%s/000000010000000000000003", out);
    assert_int_not_equal(access(path, F_OK), 0); /* the older timeline's copy is not replayed */
    snprintf(path, sizeof(path), "%s/000000020000000000000005", out);
    assert_int_not_equal(access(path, F_OK), 0);

    /* to the end: the partial as its sealed bytes and zeros; again into the same directory */
    j.segno = 5;
    j.stage_to = 6;
    j.files = 0;
    wal__stage_work(&j);
    assert_int_equal(j.result, 0);
    expect_staged(out, "000000020000000000000005", 5, SSEG);
    expect_staged(out, "000000020000000000000006", 6, sizeof(piece));

    /* a file that fails verification fails the staging */
    memset(j.key, 8, sizeof(j.key));
    wal__stage_work(&j);
    assert_int_not_equal(j.result, 0);
    assert_non_null(strstr(j.err, "000000020000000000000005"));
    char cmd[700];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", arch);
    assert_int_equal(system(cmd), 0);
}

static void test_history_switch_points(void **state)
{
    (void)state;
    /* the history file of timeline 3: 1 ended at 0/3052C60, 2 at 0/5000000 */
    const char *h = "1\t0/3052C60\tbefore 2026-12-03 10:27:54.59+00\n\n2\t0/5000000\tno recovery target specified\n";
    uint64_t at = 0;
    uint32_t next = 0;
    assert_int_equal(wal_history_switch_point(h, strlen(h), 3, 1, &at, &next), 0);
    assert_int_equal(at, 0x3052C60);
    assert_int_equal(next, 2);
    assert_int_equal(wal_history_switch_point(h, strlen(h), 3, 2, &at, &next), 0);
    assert_int_equal(at, 0x5000000);
    assert_int_equal(next, 3); /* the last line: the file's own timeline follows */
    assert_int_equal(wal_history_switch_point(h, strlen(h), 3, 3, &at, &next), -ENOENT);
    assert_int_equal(wal_history_switch_point("", 0, 2, 1, &at, &next), -ENOENT);
    /* not NUL-terminated: only len bytes are read */
    assert_int_equal(wal_history_switch_point(h, 12, 3, 1, &at, &next), 0);
    assert_int_equal(next, 3);
}

/* The base backup a plan to target_ms chooses between an old one (b0, long before) and one that
 * finished in T0's second (22:13:20Z): "b0", "b1" or "" (none). finished_ms < 0: no finished_at_ms
 * (a manifest written before it was recorded). */
static const char *chosen(int64_t finished_ms, int64_t target_ms)
{
    static char name[16];
    json_t *a = json_array();
    json_array_append_new(a, manifest("b0", "2023-11-14T22:00:00Z", "0/1000028", true));
    json_t *m = manifest("b1", "2023-11-14T22:13:20Z", "0/2000028", true);
    if (finished_ms >= 0)
        json_object_set_new(m, "finished_at_ms", json_integer(finished_ms));
    json_array_append_new(a, m);
    WalSeg s[] = {seg(1, 1, WALFILE_SEGMENT, T0 - 60000), seg(1, 2, WALFILE_SEGMENT, T0 + 5000)};
    json_t *p = wal_plan_decide(a, s, 2, SEG, target_ms, 0);
    const char *n = json_string_value(json_object_get(json_object_get(p, "base_backup"), "name"));
    snprintf(name, sizeof(name), "%s", n ? n : "");
    json_decref(p);
    json_decref(a);
    return name;
}

/* A base backup serves a target only if it had certainly finished by then: at the precision its
 * manifest records (finished_at_ms), else strictly before the target's second. */
static void test_plan_base_backup_finished_by_the_target(void **state)
{
    (void)state;
    /* an old manifest: finished_at's second only */
    assert_string_equal(chosen(-1, T0 + 500), "b0");  /* the same second: maybe after T */
    assert_string_equal(chosen(-1, T0 + 999), "b0");
    assert_string_equal(chosen(-1, T0 + 1000), "b1"); /* the next second */
    /* finished_at_ms recorded */
    assert_string_equal(chosen(T0 + 200, T0 + 500), "b1"); /* ms before T in the same second */
    assert_string_equal(chosen(T0 + 800, T0 + 500), "b0"); /* ms after T in the same second */
    assert_string_equal(chosen(T0 + 500, T0 + 500), "b0"); /* the same ms: not certainly before */
    assert_string_equal(chosen(T0 + 500, T0 + 501), "b1");
    assert_string_equal(chosen(T0, T0 + 1), "b1");
    /* a finished_at_ms outside finished_at's second is not believed: the strict second again */
    assert_string_equal(chosen(T0 - 5000, T0 + 500), "b0");
    assert_string_equal(chosen(T0 + 7000, T0 + 1000), "b1");
    /* to the end of the archive: the newest */
    assert_string_equal(chosen(T0 + 800, INT64_MAX), "b1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_picks_the_newest_verified_before_the_target),
        cmocka_unit_test(test_plan_refuses_what_it_cannot_do),
        cmocka_unit_test(test_plan_base_backup_finished_by_the_target),
        cmocka_unit_test(test_plan_follows_the_newest_timeline),
        cmocka_unit_test(test_stage_writes_what_the_replay_needs),
        cmocka_unit_test(test_history_switch_points),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
