/*
 * Unit tests for lib/pgmanifest: the compare logic of a backup_manifest against the files seen.
 * Everything matching (CRC32C printed in PostgreSQL's byte order: "123456789" is "839206e3";
 * SHA256; NONE: sizes only; an Encoded-Path; a name fed twice, the later counting; an ignored extra
 * file), then each failure naming the path: a missing file, a size mismatch, a checksum mismatch,
 * an extra file, several at once (counted), a damaged Manifest-Checksum, an algorithm that was not
 * computed (refused), a malformed manifest, and the file limit.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bcf.h"
#include "pgmanifest.h"

/* A manifest as PostgreSQL writes it: one entry a line, the checksum line last. entries: lines of
 * the Files array without the separating commas. */
static char *manifest_text(const char *const *entries)
{
    static char buf[8192];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": [\n");
    for (size_t i = 0; entries[i]; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s%s\n", entries[i], entries[i + 1] ? "," : "");
    n += (size_t)snprintf(buf + n, sizeof(buf) - n,
                          "],\n\"WAL-Ranges\": [\n{ \"Timeline\": 1, \"Start-LSN\": \"0/2000028\", \"End-LSN\": "
                          "\"0/2000100\" }\n],\n");
    uint8_t md[32];
    char hex[65];
    assert_int_equal(EVP_Digest(buf, n, md, NULL, EVP_sha256(), NULL), 1);
    bcf_hex(md, sizeof(md), hex);
    snprintf(buf + n, sizeof(buf) - n, "\"Manifest-Checksum\": \"%s\"}\n", hex);
    return buf;
}

static void feed(PgManifestCheck *c, const char *name, const char *content)
{
    size_t n = strlen(content);
    assert_int_equal(pgmanifest_check_begin(c, name, n), 0);
    for (size_t i = 0; i < n; i += 2) /* in pieces */
        assert_int_equal(pgmanifest_check_data(c, (const uint8_t *)content + i, n - i < 2 ? n - i : 2), 0);
    assert_int_equal(pgmanifest_check_end(c), 0);
}

static const char *const ignore[] = {"backup_manifest", NULL};

#define E_CRC(path, size, crc)                                                                                   \
    "{ \"Path\": \"" path "\", \"Size\": " #size ", \"Last-Modified\": \"2026-12-03 10:00:00 GMT\", "             \
    "\"Checksum-Algorithm\": \"CRC32C\", \"Checksum\": \"" crc "\" }"

/* The files every CRC32C case starts from, fed in this order. */
static PgManifestCheck *crc_files(void)
{
    PgManifestCheck *c = pgmanifest_check_new(PGMANIFEST_CRC32C);
    assert_non_null(c);
    feed(c, "PG_VERSION", "123456789");
    feed(c, "global/pg_control", "");
    feed(c, "base/1/1259", "stale");
    feed(c, "base/1/1259", "123456789"); /* a later member of the same name wins, as tar -x */
    feed(c, "backup_manifest", "{...}"); /* ignored */
    return c;
}

static const char *const crc_ok[] = {E_CRC("PG_VERSION", 9, "839206e3"), E_CRC("global/pg_control", 0, "00000000"),
                                     E_CRC("base/1/1259", 9, "839206E3"), NULL};

static void test_all_match_crc32c(void **state)
{
    (void)state;
    PgManifestCheck *c = crc_files();
    const char *m = manifest_text(crc_ok);
    PgManifestResult res;
    char err[512] = "";
    assert_int_equal(pgmanifest_check_finish(c, m, strlen(m), NULL, ignore, &res, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(res.files, 3);
    assert_int_equal(res.checksummed, 3);
    assert_int_equal(res.sized, 0);
    assert_int_equal(res.mismatched, 0);
    assert_int_equal(res.algo, PGMANIFEST_CRC32C);
    assert_int_equal(strlen(res.manifest_checksum), 64);
    pgmanifest_check_free(c);
}

/* One failing case: the expected code and a phrase of the message. */
static void expect_fail(PgManifestCheck *c, const char *const *entries, int code, const char *phrase)
{
    const char *m = manifest_text(entries);
    PgManifestResult res;
    char err[512] = "";
    assert_int_equal(pgmanifest_check_finish(c, m, strlen(m), NULL, ignore, &res, err, sizeof(err)), code);
    if (!strstr(err, phrase))
        fail_msg("'%s' does not say '%s'", err, phrase);
    pgmanifest_check_free(c);
}

static void test_missing_file(void **state)
{
    (void)state;
    const char *const e[] = {crc_ok[0], crc_ok[1], crc_ok[2], E_CRC("base/1/2619", 9, "839206e3"), NULL};
    expect_fail(crc_files(), e, -EILSEQ, "'base/1/2619' is in the server's backup_manifest but not in the backup");
}

static void test_size_mismatch(void **state)
{
    (void)state;
    const char *const e[] = {crc_ok[0], crc_ok[1], E_CRC("base/1/1259", 8192, "839206e3"), NULL};
    expect_fail(crc_files(), e, -EILSEQ, "'base/1/1259' is 9 bytes in the backup, the server's backup_manifest says 8192");
}

static void test_checksum_mismatch(void **state)
{
    (void)state;
    /* the value's bytes the other way round: what a big-endian reading would print */
    const char *const e[] = {crc_ok[0], crc_ok[1], E_CRC("base/1/1259", 9, "e3069283"), NULL};
    expect_fail(crc_files(), e, -EILSEQ,
                "'base/1/1259' has CRC32C 839206e3 in the backup, the server's backup_manifest says e3069283");
}

static void test_extra_and_several(void **state)
{
    (void)state;
    const char *const e[] = {crc_ok[0], crc_ok[1], NULL};
    expect_fail(crc_files(), e, -EILSEQ, "'base/1/1259' is in the backup but not in the server's backup_manifest");
    const char *const several[] = {E_CRC("PG_VERSION", 9, "00000000"), E_CRC("global/pg_control", 1, "00000000"),
                                   E_CRC("base/1/1259", 9, "839206e3"), E_CRC("nosuch", 1, "00000000"), NULL};
    expect_fail(crc_files(), several, -EILSEQ, "'PG_VERSION' has CRC32C 839206e3 in the backup, the server's "
                                              "backup_manifest says 00000000 (3 files differ)");
}

static void test_damaged_manifest_checksum(void **state)
{
    (void)state;
    PgManifestCheck *c = crc_files();
    char *m = manifest_text(crc_ok);
    char *at = strstr(m, "\"Size\": 9");
    at[8] = '8'; /* a size changed in the text, the checksum line left alone */
    PgManifestResult res;
    char err[512] = "";
    assert_int_equal(pgmanifest_check_finish(c, m, strlen(m), NULL, ignore, &res, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "Manifest-Checksum"));
    /* not JSON, no Files, no checksum line */
    assert_int_equal(pgmanifest_check_finish(c, "{", 1, NULL, ignore, &res, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "not JSON"));
    const char *nofiles = "{ \"PostgreSQL-Backup-Manifest-Version\": 1 }\n";
    assert_int_equal(pgmanifest_check_finish(c, nofiles, strlen(nofiles), NULL, ignore, &res, err, sizeof(err)), -EBADMSG);
    const char *nosum = "{ \"PostgreSQL-Backup-Manifest-Version\": 1,\n\"Files\": []\n}\n";
    assert_int_equal(pgmanifest_check_finish(c, nosum, strlen(nosum), NULL, ignore, &res, err, sizeof(err)), -EBADMSG);
    assert_non_null(strstr(err, "no Manifest-Checksum"));
    pgmanifest_check_free(c);
}

static void test_other_algorithms(void **state)
{
    (void)state;
    /* A manifest in SHA256 against a CRC32C computation: refused, saying what to do. */
    const char *const sha[] = {
        "{ \"Path\": \"PG_VERSION\", \"Size\": 9, \"Checksum-Algorithm\": \"SHA256\", \"Checksum\": "
        "\"15e2b0d3c33891ebb0f1ef609ec419420c20e320ce94c65fbc8c3312448eb225\" }",
        NULL};
    PgManifestCheck *c = pgmanifest_check_new(PGMANIFEST_CRC32C);
    feed(c, "PG_VERSION", "123456789");
    expect_fail(c, sha, -ENOTSUP, "checksums its files with SHA256 ('PG_VERSION'), this check computed CRC32C");

    /* Computed in SHA256: compared. */
    c = pgmanifest_check_new(PGMANIFEST_SHA256);
    feed(c, "PG_VERSION", "123456789");
    const char *m = manifest_text(sha);
    PgManifestResult res;
    char err[512] = "";
    assert_int_equal(pgmanifest_check_finish(c, m, strlen(m), NULL, NULL, &res, err, sizeof(err)), 0);
    assert_int_equal(res.checksummed, 1);
    assert_int_equal(res.algo, PGMANIFEST_SHA256);
    pgmanifest_check_free(c);

    /* NONE (no Checksum-Algorithm): sizes only, and an Encoded-Path ("base/1/\xff" in hex). */
    const char *const none[] = {"{ \"Path\": \"PG_VERSION\", \"Size\": 9, \"Last-Modified\": \"x\" }",
                                "{ \"Encoded-Path\": \"626173652f312fff\", \"Size\": 2, \"Last-Modified\": \"x\" }",
                                NULL};
    c = pgmanifest_check_new(PGMANIFEST_CRC32C);
    feed(c, "PG_VERSION", "123456789");
    feed(c, "base/1/\xff", "ab");
    m = manifest_text(none);
    assert_int_equal(pgmanifest_check_finish(c, m, strlen(m), NULL, NULL, &res, err, sizeof(err)), 0);
    assert_int_equal(res.sized, 2);
    assert_int_equal(res.checksummed, 0);
    assert_int_equal(res.algo, PGMANIFEST_NONE);
    pgmanifest_check_free(c);

    /* An algorithm nobody knows. */
    const char *const odd[] = {"{ \"Path\": \"PG_VERSION\", \"Size\": 9, \"Checksum-Algorithm\": \"MD5\", \"Checksum\": \"00\" }",
                               NULL};
    c = pgmanifest_check_new(PGMANIFEST_CRC32C);
    feed(c, "PG_VERSION", "123456789");
    expect_fail(c, odd, -ENOTSUP, "unknown Checksum-Algorithm 'MD5'");

    PgManifestAlgo a;
    assert_true(pgmanifest_algo_parse("sha512", &a) && a == PGMANIFEST_SHA512);
    assert_true(pgmanifest_algo_parse("NONE", &a) && a == PGMANIFEST_NONE);
    assert_false(pgmanifest_algo_parse("crc32", &a));
    assert_string_equal(pgmanifest_algo_name(PGMANIFEST_SHA224), "SHA224");
}

static void test_order_and_limits(void **state)
{
    (void)state;
    PgManifestCheck *c = pgmanifest_check_new(PGMANIFEST_CRC32C);
    assert_int_equal(pgmanifest_check_data(c, (const uint8_t *)"x", 1), -EINVAL);
    assert_int_equal(pgmanifest_check_end(c), -EINVAL);
    assert_int_equal(pgmanifest_check_begin(c, "a", 1), 0);
    assert_int_equal(pgmanifest_check_begin(c, "b", 1), -EINVAL);
    PgManifestResult res;
    char err[256];
    const char *m = manifest_text(crc_ok);
    assert_int_equal(pgmanifest_check_finish(c, m, strlen(m), NULL, NULL, &res, err, sizeof(err)), -EINVAL);
    pgmanifest_check_free(c);
    pgmanifest_check_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_match_crc32c),   cmocka_unit_test(test_missing_file),
        cmocka_unit_test(test_size_mismatch),      cmocka_unit_test(test_checksum_mismatch),
        cmocka_unit_test(test_extra_and_several),  cmocka_unit_test(test_damaged_manifest_checksum),
        cmocka_unit_test(test_other_algorithms),   cmocka_unit_test(test_order_and_limits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
