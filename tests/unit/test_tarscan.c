/*
 * Unit tests for lib/tarscan: members found and kept across any split of the input (one byte at a
 * time included), a "./" prefix and the ustar prefix field, GNU long-name and pax extension headers
 * passed over, base-256 sizes, content longer than the capture limit marked truncated, and the
 * failures: a bad header checksum, a size that is not a number, a truncated archive (in a member's
 * data, in its padding, before the end block), and data after the end block. The member hooks:
 * every regular member's name (from a GNU long-name or pax "path" header when one precedes it),
 * size and content, in order, whatever the split; directories not reported; a hook's error stops
 * the scan; a malformed pax header or an oversized extension member fails.
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

#include "tarscan.h"

typedef struct Tar {
    uint8_t *data;
    size_t len;
} Tar;

static void tar_put(Tar *t, const void *p, size_t n)
{
    t->data = realloc(t->data, t->len + n);
    assert_non_null(t->data);
    memcpy(t->data + t->len, p, n);
    t->len += n;
}

static void tar_header(uint8_t h[512], const char *name, const char *prefix, char type, uint64_t size)
{
    memset(h, 0, 512);
    snprintf((char *)h, 100, "%s", name);
    char num[32];
    snprintf((char *)h + 100, 8, "%07o", 0600u);
    snprintf(num, sizeof(num), "%011llo", (unsigned long long)(size & 077777777777ull));
    memcpy(h + 124, num, 11);
    h[156] = (uint8_t)type;
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    if (prefix)
        snprintf((char *)h + 345, 155, "%s", prefix);
}

static void tar_checksum(uint8_t h[512])
{
    unsigned sum = 0;
    memset(h + 148, ' ', 8);
    for (size_t i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
}

static void tar_member(Tar *t, const char *name, const char *prefix, char type, const char *content)
{
    uint8_t h[512], pad[512] = {0};
    size_t n = content ? strlen(content) : 0;
    tar_header(h, name, prefix, type, n);
    tar_checksum(h);
    tar_put(t, h, 512);
    if (n) {
        tar_put(t, content, n);
        if (n % 512)
            tar_put(t, pad, 512 - n % 512);
    }
}

static void tar_end(Tar *t)
{
    uint8_t z[1024] = {0};
    tar_put(t, z, sizeof(z));
}

static const char *const watched[] = {"PG_VERSION", "global/pg_control", "backup_label", "backup_manifest", NULL};

static Tar sample(void)
{
    Tar t = {0};
    static char big[1500];
    memset(big, 'm', sizeof(big) - 1);
    tar_member(&t, "backup_label", NULL, '0', "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n");
    tar_member(&t, "./PG_VERSION", NULL, '0', "15\n");
    tar_member(&t, "global", NULL, '5', NULL);
    tar_member(&t, "pg_control", "global", '0', "ctl");
    tar_member(&t, "././@LongLink", NULL, 'L', "base/1/a_very_long_name_that_needs_the_gnu_extension");
    tar_member(&t, "base/1/a_very_long_name_th", NULL, '0', "x");
    tar_member(&t, "PaxHeaders/x", NULL, 'x', "29 path=backup_manifest_fake\n");
    tar_member(&t, "other", NULL, '0', "y");
    tar_member(&t, "backup_manifest", NULL, '0', big);
    tar_end(&t);
    return t;
}

static void check_sample(TarScan *s, size_t limit)
{
    const uint8_t *d;
    size_t n;
    bool trunc;
    assert_int_equal(tarscan_finish(s), 0);
    assert_int_equal(tarscan_members(s), 7); /* extension headers do not count */
    assert_true(tarscan_member(s, "PG_VERSION", &d, &n, &trunc));
    assert_int_equal(n, 3);
    assert_memory_equal(d, "15\n", 3);
    assert_true(tarscan_member(s, "./global/pg_control", &d, &n, &trunc));
    assert_memory_equal(d, "ctl", 3);
    assert_true(tarscan_member(s, "backup_manifest", &d, &n, &trunc));
    assert_int_equal(n, limit < 1499 ? limit : 1499);
    assert_int_equal(trunc, limit < 1499);
    assert_int_equal(d[0], 'm');
    assert_true(tarscan_member(s, "backup_label", &d, &n, NULL));
    assert_memory_equal(d, "START WAL", 9);
    assert_false(tarscan_member(s, "nosuch", &d, &n, &trunc));
    assert_null(d);
}

static void test_members_any_split(void **state)
{
    (void)state;
    Tar t = sample();
    size_t steps[] = {1, 7, 511, 512, 513, 4096, t.len};
    for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
        TarScan *s = tarscan_new(watched, 1 << 20);
        assert_non_null(s);
        for (size_t off = 0; off < t.len; off += steps[k]) {
            size_t n = t.len - off < steps[k] ? t.len - off : steps[k];
            assert_int_equal(tarscan_update(s, t.data + off, n), 0);
        }
        check_sample(s, 1 << 20);
        tarscan_free(s);
    }
    free(t.data);
}

static void test_capture_limit(void **state)
{
    (void)state;
    Tar t = sample();
    TarScan *s = tarscan_new(watched, 100);
    assert_int_equal(tarscan_update(s, t.data, t.len), 0);
    check_sample(s, 100);
    tarscan_free(s);
    /* limit 0: presence only */
    s = tarscan_new(watched, 0);
    assert_int_equal(tarscan_update(s, t.data, t.len), 0);
    assert_int_equal(tarscan_finish(s), 0);
    const uint8_t *d;
    size_t n = 99;
    assert_true(tarscan_member(s, "backup_manifest", &d, &n, NULL));
    assert_int_equal(n, 0);
    tarscan_free(s);
    free(t.data);
}

static void test_base256_size(void **state)
{
    (void)state;
    Tar t = {0};
    uint8_t h[512], pad[512] = {0};
    tar_header(h, "PG_VERSION", NULL, '0', 0);
    memset(h + 124, 0, 12);
    h[124] = 0x80;
    h[135] = 3; /* size 3, base-256 */
    tar_checksum(h);
    tar_put(&t, h, 512);
    tar_put(&t, "15\n", 3);
    tar_put(&t, pad, 509);
    tar_end(&t);
    TarScan *s = tarscan_new(watched, 16);
    assert_int_equal(tarscan_update(s, t.data, t.len), 0);
    assert_int_equal(tarscan_finish(s), 0);
    const uint8_t *d;
    size_t n;
    assert_true(tarscan_member(s, "PG_VERSION", &d, &n, NULL));
    assert_int_equal(n, 3);
    tarscan_free(s);
    free(t.data);
}

static void test_bad_checksum_and_size(void **state)
{
    (void)state;
    Tar t = sample();
    t.data[512 * 2 + 10] ^= 0x20; /* a byte of the second header (PG_VERSION's name) */
    TarScan *s = tarscan_new(watched, 16);
    assert_int_equal(tarscan_update(s, t.data, t.len), -EBADMSG);
    assert_non_null(strstr(tarscan_errmsg(s), "checksum"));
    assert_int_equal(tarscan_update(s, t.data, 1), -EBADMSG); /* stays failed */
    assert_int_equal(tarscan_finish(s), -EBADMSG);
    tarscan_free(s);
    free(t.data);

    Tar u = {0};
    uint8_t h[512];
    tar_header(h, "x", NULL, '0', 0);
    memcpy(h + 124, "12345678x01", 11);
    tar_checksum(h);
    tar_put(&u, h, 512);
    s = tarscan_new(watched, 16);
    assert_int_equal(tarscan_update(s, u.data, u.len), -EBADMSG);
    assert_non_null(strstr(tarscan_errmsg(s), "size"));
    tarscan_free(s);
    free(u.data);
}

static void test_truncated_and_trailing(void **state)
{
    (void)state;
    Tar t = sample();
    /* Cut inside the manifest's data, inside its padding, and just before the end blocks. */
    size_t end = t.len - 1024;
    size_t cuts[] = {end - 512 - 100, end - 5, end, 700};
    for (size_t k = 0; k < sizeof(cuts) / sizeof(cuts[0]); k++) {
        TarScan *s = tarscan_new(watched, 16);
        assert_int_equal(tarscan_update(s, t.data, cuts[k]), 0);
        assert_int_equal(tarscan_finish(s), -EBADMSG);
        assert_non_null(strstr(tarscan_errmsg(s), "truncated"));
        tarscan_free(s);
    }
    /* One end block is enough to call it ended; anything but zeros after it is refused. */
    TarScan *s = tarscan_new(watched, 16);
    assert_int_equal(tarscan_update(s, t.data, end + 512), 0);
    assert_int_equal(tarscan_finish(s), 0);
    tarscan_free(s);
    s = tarscan_new(watched, 16);
    assert_int_equal(tarscan_update(s, t.data, t.len), 0);
    assert_int_equal(tarscan_update(s, (const uint8_t *)"junk", 4), -EBADMSG);
    tarscan_free(s);
    free(t.data);
}


/* What the hooks saw: "name:size:content|" per member. */
typedef struct Seen {
    char log[4096];
    size_t len;
    int fail_at_begin; /* 0, or fail the n-th begin with -ENOMEM */
    int begins, ends;
} Seen;

static int seen_begin(void *ctx, const char *name, uint64_t size)
{
    Seen *s = ctx;
    if (++s->begins == s->fail_at_begin)
        return -ENOMEM;
    s->len += (size_t)snprintf(s->log + s->len, sizeof(s->log) - s->len, "%s:%llu:", name, (unsigned long long)size);
    return 0;
}

static int seen_data(void *ctx, const uint8_t *data, size_t len)
{
    Seen *s = ctx;
    assert_true(len > 0);
    size_t n = len > 8 ? 8 : len; /* the first bytes of each piece are enough to see the order */
    if (s->len + n < sizeof(s->log)) {
        memcpy(s->log + s->len, data, n);
        s->len += n;
        s->log[s->len] = '\0';
    }
    return 0;
}

static int seen_end(void *ctx)
{
    Seen *s = ctx;
    s->ends++;
    s->len += (size_t)snprintf(s->log + s->len, sizeof(s->log) - s->len, "|");
    return 0;
}

static const TarScanHooks seen_hooks = {seen_begin, seen_data, seen_end};

static void test_hooks_see_members(void **state)
{
    (void)state;
    Tar t = sample();
    const char *want = "backup_label:62:START WA|PG_VERSION:3:15\n|global/pg_control:3:ctl|"
                       "base/1/a_very_long_name_that_needs_the_gnu_extension:1:x|backup_manifest_fake:1:y|"
                       "backup_manifest:1499:mmmmmmmm|";
    size_t steps[] = {1, 3, 512, 4096, t.len};
    for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
        Seen seen = {0};
        TarScan *s = tarscan_new(NULL, 0);
        tarscan_set_hooks(s, &seen_hooks, &seen);
        for (size_t off = 0; off < t.len; off += steps[k]) {
            size_t n = t.len - off < steps[k] ? t.len - off : steps[k];
            assert_int_equal(tarscan_update(s, t.data + off, n), 0);
        }
        assert_int_equal(tarscan_finish(s), 0);
        assert_int_equal(seen.begins, 6);
        assert_int_equal(seen.ends, 6);
        if (steps[k] >= 4096) /* larger pieces: one data call per member */
            assert_string_equal(seen.log, want);
        else /* the names and sizes in order, whatever the pieces */
            assert_non_null(strstr(seen.log, "base/1/a_very_long_name_that_needs_the_gnu_extension:1:x|"));
        tarscan_free(s);
    }
    /* An empty member: begin and end, no data. */
    Tar e = {0};
    tar_member(&e, "base/1/empty", NULL, '0', "");
    tar_end(&e);
    Seen seen = {0};
    TarScan *s = tarscan_new(NULL, 0);
    tarscan_set_hooks(s, &seen_hooks, &seen);
    assert_int_equal(tarscan_update(s, e.data, e.len), 0);
    assert_int_equal(tarscan_finish(s), 0);
    assert_string_equal(seen.log, "base/1/empty:0:|");
    tarscan_free(s);
    free(e.data);

    /* A hook's error stops the scan, naming the member. */
    seen = (Seen){.fail_at_begin = 2};
    s = tarscan_new(NULL, 0);
    tarscan_set_hooks(s, &seen_hooks, &seen);
    assert_int_equal(tarscan_update(s, t.data, t.len), -ENOMEM);
    assert_non_null(strstr(tarscan_errmsg(s), "'PG_VERSION'"));
    assert_int_equal(tarscan_finish(s), -ENOMEM);
    tarscan_free(s);
    free(t.data);
}

static void test_bad_extensions(void **state)
{
    (void)state;
    static char big[9000];
    memset(big, 'a', sizeof(big) - 1);
    const char *bad[] = {"31 path=backup_manifest_fake\n", "x path=y\n", "11 path=y\n"};
    for (size_t k = 0; k < sizeof(bad) / sizeof(bad[0]) + 1; k++) {
        Tar t = {0};
        if (k < sizeof(bad) / sizeof(bad[0]))
            tar_member(&t, "PaxHeaders/x", NULL, 'x', bad[k]);
        else
            tar_member(&t, "././@LongLink", NULL, 'L', big);
        tar_member(&t, "other", NULL, '0', "y");
        tar_end(&t);
        TarScan *s = tarscan_new(NULL, 0);
        assert_int_equal(tarscan_update(s, t.data, t.len), -EBADMSG);
        assert_non_null(strstr(tarscan_errmsg(s), k < 3 ? "pax" : "extension"));
        tarscan_free(s);
        free(t.data);
    }
}

static void test_new_limits(void **state)
{
    (void)state;
    const char *many[TARSCAN_MAX_WATCHED + 2];
    for (size_t i = 0; i < TARSCAN_MAX_WATCHED + 1; i++)
        many[i] = "x";
    many[TARSCAN_MAX_WATCHED + 1] = NULL;
    assert_null(tarscan_new(many, 0));
    TarScan *s = tarscan_new(NULL, 0);
    assert_non_null(s);
    assert_int_equal(tarscan_finish(s), -EBADMSG); /* nothing at all is not a tar */
    tarscan_free(s);
    tarscan_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_members_any_split),     cmocka_unit_test(test_capture_limit),
        cmocka_unit_test(test_base256_size),          cmocka_unit_test(test_bad_checksum_and_size),
        cmocka_unit_test(test_truncated_and_trailing), cmocka_unit_test(test_new_limits),
        cmocka_unit_test(test_hooks_see_members),     cmocka_unit_test(test_bad_extensions),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
