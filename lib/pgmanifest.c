/*
 * pgmanifest: a backup_manifest against the files seen (see pgmanifest.h).
 */
#include "pgmanifest.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "bcf.h"
#include "crc32c.h"

#define PGMANIFEST_DIGEST_MAX 64

static const char *const pgmanifest_names[PGMANIFEST_ALGO_N + 1] = {
    [PGMANIFEST_CRC32C] = "CRC32C", [PGMANIFEST_NONE] = "NONE",     [PGMANIFEST_SHA224] = "SHA224",
    [PGMANIFEST_SHA256] = "SHA256", [PGMANIFEST_SHA384] = "SHA384", [PGMANIFEST_SHA512] = "SHA512",
    [PGMANIFEST_ALGO_N] = NULL,
};

const char *const *pgmanifest_algo_names(void)
{
    return pgmanifest_names;
}

/*
 * One record per file in the arena, in the order fed: size (8 bytes, host order), the checksum
 * (digest_len bytes), the path and its NUL. offsets[i] is where record i starts.
 */
struct PgManifestCheck {
    PgManifestAlgo algo;
    size_t digest_len;
    EVP_MD_CTX *md;
    uint32_t crc;
    bool open; /* between begin and end */
    uint64_t expect, got;

    uint8_t *arena;
    size_t arena_len, arena_cap;
    size_t *offsets;
    size_t n, cap;
};

const char *pgmanifest_algo_name(PgManifestAlgo a)
{
    return (unsigned)a < PGMANIFEST_ALGO_N ? pgmanifest_names[a] : "?";
}

bool pgmanifest_algo_parse(const char *name, PgManifestAlgo *ret)
{
    for (size_t i = 0; name && i < PGMANIFEST_ALGO_N; i++)
        if (strcasecmp(name, pgmanifest_names[i]) == 0) {
            *ret = (PgManifestAlgo)i;
            return true;
        }
    return false;
}

static const EVP_MD *pgmanifest_md(PgManifestAlgo a)
{
    switch (a) {
    case PGMANIFEST_SHA224:
        return EVP_sha224();
    case PGMANIFEST_SHA256:
        return EVP_sha256();
    case PGMANIFEST_SHA384:
        return EVP_sha384();
    case PGMANIFEST_SHA512:
        return EVP_sha512();
    default:
        return NULL;
    }
}

PgManifestCheck *pgmanifest_check_new(PgManifestAlgo algo)
{
    PgManifestCheck *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->algo = algo;
    const EVP_MD *md = pgmanifest_md(algo);
    if (md) {
        c->digest_len = (size_t)EVP_MD_get_size(md);
        if (!(c->md = EVP_MD_CTX_new())) {
            free(c);
            return NULL;
        }
    } else {
        c->digest_len = algo == PGMANIFEST_CRC32C ? 4 : 0;
    }
    return c;
}

void pgmanifest_check_free(PgManifestCheck *c)
{
    if (!c)
        return;
    EVP_MD_CTX_free(c->md);
    free(c->arena);
    free(c->offsets);
    free(c);
}

static int pgmanifest_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap ? *cap : 1024;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * elem);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = n;
    return 0;
}

int pgmanifest_check_begin(PgManifestCheck *c, const char *name, uint64_t size)
{
    size_t nlen = strlen(name);
    if (c->open)
        return -EINVAL;
    if (c->n >= PGMANIFEST_MAX_FILES)
        return -E2BIG;
    if (pgmanifest_grow((void **)&c->offsets, &c->cap, c->n + 1, sizeof(size_t)) < 0 ||
        pgmanifest_grow((void **)&c->arena, &c->arena_cap, c->arena_len + 8 + c->digest_len + nlen + 1, 1) < 0)
        return -ENOMEM;
    if (c->md && EVP_DigestInit_ex(c->md, pgmanifest_md(c->algo), NULL) != 1)
        return -ENOMEM;
    uint8_t *r = c->arena + c->arena_len;
    memcpy(r, &size, 8);
    memcpy(r + 8 + c->digest_len, name, nlen + 1);
    c->offsets[c->n] = c->arena_len;
    c->crc = 0;
    c->expect = size;
    c->got = 0;
    c->open = true;
    return 0;
}

int pgmanifest_check_data(PgManifestCheck *c, const uint8_t *data, size_t len)
{
    if (!c->open)
        return -EINVAL;
    if (c->algo == PGMANIFEST_CRC32C)
        c->crc = crc32c_extend(c->crc, data, len);
    else if (c->md && EVP_DigestUpdate(c->md, data, len) != 1)
        return -ENOMEM;
    c->got += len;
    return 0;
}

int pgmanifest_check_end(PgManifestCheck *c)
{
    if (!c->open)
        return -EINVAL;
    uint8_t *r = c->arena + c->offsets[c->n];
    if (c->got != c->expect) /* the size recorded is what was seen */
        memcpy(r, &c->got, 8);
    if (c->algo == PGMANIFEST_CRC32C) {
        /* PostgreSQL prints the uint32's bytes in memory order: little-endian (see pgmanifest.h) */
        for (size_t i = 0; i < 4; i++)
            r[8 + i] = (uint8_t)(c->crc >> (8 * i));
    } else if (c->md) {
        unsigned n = 0;
        if (EVP_DigestFinal_ex(c->md, r + 8, &n) != 1 || n != c->digest_len)
            return -ENOMEM;
    }
    c->arena_len += 8 + c->digest_len + strlen((const char *)r + 8 + c->digest_len) + 1;
    c->n++;
    c->open = false;
    return 0;
}

static int pgmanifest_hook_begin(void *ctx, const char *name, uint64_t size)
{
    return pgmanifest_check_begin(ctx, name, size);
}

static int pgmanifest_hook_data(void *ctx, const uint8_t *data, size_t len)
{
    return pgmanifest_check_data(ctx, data, len);
}

static int pgmanifest_hook_end(void *ctx)
{
    return pgmanifest_check_end(ctx);
}

const TarScanHooks pgmanifest_tar_hooks = {pgmanifest_hook_begin, pgmanifest_hook_data, pgmanifest_hook_end};

/* ---- the comparison ---- */

static const char *pgmanifest_path(const PgManifestCheck *c, size_t i)
{
    return (const char *)c->arena + c->offsets[i] + 8 + c->digest_len;
}

/* By path, then the order fed (so the last of equal names is found last). */
static int pgmanifest_cmp(const void *a, const void *b, void *ctx)
{
    const PgManifestCheck *c = ctx;
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    int r = strcmp((const char *)c->arena + x + 8 + c->digest_len, (const char *)c->arena + y + 8 + c->digest_len);
    return r ? r : (x > y) - (x < y);
}

/* Index of the last record named `path`, or SIZE_MAX (offsets sorted). */
static size_t pgmanifest_find(const PgManifestCheck *c, const char *path)
{
    size_t lo = 0, hi = c->n, found = SIZE_MAX;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = strcmp(pgmanifest_path(c, mid), path);
        if (r <= 0) {
            if (r == 0)
                found = mid;
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return found;
}

static int pgmanifest_nibble(char x)
{
    return x >= '0' && x <= '9' ? x - '0' : x >= 'a' && x <= 'f' ? x - 'a' + 10 : x >= 'A' && x <= 'F' ? x - 'A' + 10 : -1;
}

static int pgmanifest_unhex(const char *hex, uint8_t *out, size_t outcap, size_t *ret_len)
{
    size_t n = hex ? strlen(hex) : 0;
    if (!hex || n % 2 || n / 2 > outcap)
        return -EINVAL;
    for (size_t i = 0; i < n / 2; i++) {
        int hi = pgmanifest_nibble(hex[2 * i]), lo = pgmanifest_nibble(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -EINVAL;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    *ret_len = n / 2;
    return 0;
}

/* The Manifest-Checksum: SHA-256 of everything up to and including the second-to-last newline
 * (the last line holds the checksum itself), as PostgreSQL's parse_manifest.c checks it. */
static int pgmanifest_own_checksum(const char *text, size_t len, const char *want, char *err, size_t errlen)
{
    size_t last = SIZE_MAX, before = SIZE_MAX;
    uint8_t md[32];
    char hex[65];

    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n') {
            before = last;
            last = i;
        }
    if (before == SIZE_MAX) {
        snprintf(err, errlen, "the server's backup_manifest has fewer than two lines");
        return -EBADMSG;
    }
    if (!want) {
        snprintf(err, errlen, "the server's backup_manifest has no Manifest-Checksum");
        return -EBADMSG;
    }
    if (EVP_Digest(text, before + 1, md, NULL, EVP_sha256(), NULL) != 1) {
        snprintf(err, errlen, "cannot compute SHA-256");
        return -ENOMEM;
    }
    bcf_hex(md, sizeof(md), hex);
    if (strcasecmp(hex, want) != 0) {
        snprintf(err, errlen, "the server's backup_manifest is damaged: its Manifest-Checksum is %.64s, its text's SHA-256 is %s",
                 want, hex);
        return -EBADMSG;
    }
    return 0;
}

static bool pgmanifest_ignored(const char *const *ignore, const char *path)
{
    for (size_t i = 0; ignore && ignore[i]; i++)
        if (strcmp(ignore[i], path) == 0)
            return true;
    return false;
}

/* The first difference is reported in err; the rest only counted. */
static void pgmanifest_differs(PgManifestResult *res, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void pgmanifest_differs(PgManifestResult *res, char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    if (res->mismatched++ == 0) {
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
}

/* One entry of Files. 0 or -ENOTSUP / -EBADMSG (then err says why). used[i] marks what it matched. */
static int pgmanifest_entry(const PgManifestCheck *c, const json_t *e, size_t index, bool *used, PgManifestResult *res,
                            char *err, size_t errlen)
{
    char path[TARSCAN_NAME_MAX + 1];
    uint8_t want[PGMANIFEST_DIGEST_MAX];
    size_t want_len = 0;
    const char *p = json_string_value(json_object_get(e, "Path"));
    const json_t *size = json_object_get(e, "Size");
    const char *algo = json_string_value(json_object_get(e, "Checksum-Algorithm"));
    PgManifestAlgo a = PGMANIFEST_NONE;

    if (p) {
        snprintf(path, sizeof(path), "%s", p);
    } else {
        uint8_t raw[TARSCAN_NAME_MAX];
        size_t n;
        if (pgmanifest_unhex(json_string_value(json_object_get(e, "Encoded-Path")), raw, sizeof(raw), &n) < 0 ||
            memchr(raw, 0, n)) {
            snprintf(err, errlen, "the server's backup_manifest: file entry %zu has no usable Path", index + 1);
            return -EBADMSG;
        }
        memcpy(path, raw, n);
        path[n] = '\0';
    }
    if (!json_is_integer(size) || json_integer_value(size) < 0 || (algo && !pgmanifest_algo_parse(algo, &a))) {
        snprintf(err, errlen, "the server's backup_manifest: entry '%s' has a bad Size or an unknown Checksum-Algorithm '%s'",
                 path, algo ? algo : "");
        return algo ? -ENOTSUP : -EBADMSG;
    }
    if (a != PGMANIFEST_NONE && a != c->algo) {
        snprintf(err, errlen,
                 "the server's backup_manifest checksums its files with %s ('%s'), this check computed %s: "
                 "they cannot be compared (pg_basebackup --manifest-checksums=%s)",
                 algo, path, pgmanifest_algo_name(c->algo), pgmanifest_algo_name(c->algo));
        return -ENOTSUP;
    }
    if (a != PGMANIFEST_NONE &&
        (pgmanifest_unhex(json_string_value(json_object_get(e, "Checksum")), want, sizeof(want), &want_len) < 0 ||
         want_len != c->digest_len)) {
        snprintf(err, errlen, "the server's backup_manifest: entry '%s' has a malformed %s Checksum", path, algo);
        return -EBADMSG;
    }
    size_t i = pgmanifest_find(c, path);
    if (i == SIZE_MAX) {
        pgmanifest_differs(res, err, errlen, "'%s' is in the server's backup_manifest but not in the backup", path);
        return 0;
    }
    used[i] = true;
    const uint8_t *r = c->arena + c->offsets[i];
    uint64_t got;
    memcpy(&got, r, 8);
    if (got != (uint64_t)json_integer_value(size)) {
        pgmanifest_differs(res, err, errlen, "'%s' is %llu bytes in the backup, the server's backup_manifest says %lld",
                           path, (unsigned long long)got, (long long)json_integer_value(size));
        return 0;
    }
    if (a == PGMANIFEST_NONE) {
        res->sized++;
        return 0;
    }
    if (memcmp(r + 8, want, want_len) != 0) {
        char have_hex[2 * PGMANIFEST_DIGEST_MAX + 1];
        bcf_hex(r + 8, want_len, have_hex);
        pgmanifest_differs(res, err, errlen, "'%s' has %s %s in the backup, the server's backup_manifest says %s", path,
                           algo, have_hex, json_string_value(json_object_get(e, "Checksum")));
        return 0;
    }
    res->checksummed++;
    return 0;
}

int pgmanifest_check_finish(PgManifestCheck *c, const char *manifest, size_t len, const json_t *parsed,
                            const char *const *ignore, PgManifestResult *ret, char *err, size_t errlen)
{
    json_error_t je = {.text = "", .line = 0};
    PgManifestResult res = {0};
    json_t *own_tree = parsed ? NULL : json_loadb(manifest, len, 0, &je);
    const json_t *m = parsed ? parsed : own_tree;
    const json_t *files = json_object_get(m, "Files"), *e;
    json_int_t version = json_integer_value(json_object_get(m, "PostgreSQL-Backup-Manifest-Version"));
    const char *own = json_string_value(json_object_get(m, "Manifest-Checksum"));
    bool *used = NULL;
    int r = 0;
    size_t i;

    if (c->open) {
        snprintf(err, errlen, "a file's content is incomplete");
        json_decref(own_tree);
        return -EINVAL;
    }
    if (!json_is_object(m) || !json_is_array(files) || (version != 1 && version != 2)) {
        if (!m)
            snprintf(err, errlen, "the server's backup_manifest is not JSON: %s (line %d)", je.text, je.line);
        else
            snprintf(err, errlen, "the server's backup_manifest is not a version 1 or 2 manifest with Files");
        json_decref(own_tree);
        return -EBADMSG;
    }
    if ((r = pgmanifest_own_checksum(manifest, len, own, err, errlen)) < 0) {
        json_decref(own_tree);
        return r;
    }
    snprintf(res.manifest_checksum, sizeof(res.manifest_checksum), "%.64s", own);
    qsort_r(c->offsets, c->n, sizeof(size_t), pgmanifest_cmp, c);
    used = calloc(c->n ? c->n : 1, sizeof(bool));
    if (!used) {
        json_decref(own_tree);
        return -ENOMEM;
    }
    res.files = json_array_size(files);
    res.algo = PGMANIFEST_NONE;
    json_array_foreach(files, i, e) {
        if ((r = pgmanifest_entry(c, e, i, used, &res, err, errlen)) < 0)
            break;
    }
    if (r == 0 && res.checksummed)
        res.algo = c->algo;
    /* Files seen that the manifest does not list: of a name fed twice, only the last counts. */
    for (i = 0; r == 0 && i < c->n; i++) {
        const char *p = pgmanifest_path(c, i);
        bool superseded = i + 1 < c->n && strcmp(p, pgmanifest_path(c, i + 1)) == 0;
        if (!used[i] && !superseded && !pgmanifest_ignored(ignore, p)) {
            res.extra++;
            pgmanifest_differs(&res, err, errlen, "'%s' is in the backup but not in the server's backup_manifest", p);
        }
    }
    free(used);
    json_decref(own_tree);
    *ret = res;
    if (r < 0)
        return r;
    if (res.mismatched > 1) {
        size_t n = strlen(err);
        snprintf(err + n, errlen > n ? errlen - n : 0, " (%zu files differ)", res.mismatched);
    }
    return res.mismatched ? -EILSEQ : 0;
}
