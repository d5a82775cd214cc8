/*
 * fuzz_basetar: libFuzzer harness for the base backup check (daemon/cap/backup/backup_basetar.c
 * over lib/tarscan, lib/pgmanifest and lib/crc32c): a tar that claims to be pg_basebackup's output,
 * with the server's backup_manifest inside, compared file by file.
 *
 * Owns nothing but the checks. The first byte picks how the rest is cut into pieces; the rest is
 * the tar. It is checked twice, in one piece and in pieces: both runs must give the same answer
 * and message (the check must not care how bytes arrive), and an accepted tar must have had every
 * file of its manifest verified.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cap/backup/backup_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int fuzz_basetar_run(const uint8_t *data, size_t size, size_t piece, BackupWalRange *w, char *err, size_t errlen)
{
    BackupBaseTar *bt = backup_basetar_new(PGMANIFEST_CRC32C);
    int r = 0;
    if (!bt)
        abort();
    for (size_t at = 0; at < size && r == 0; at += piece)
        r = backup_basetar_update(bt, data + at, size - at < piece ? size - at : piece, err, errlen);
    if (r == 0)
        r = backup_basetar_finish(bt, w, err, errlen);
    backup_basetar_free(bt);
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    BackupWalRange a = {0}, b = {0};
    char ea[1024] = "", eb[1024] = "";

    if (size < 1)
        return -1;
    size_t piece = (size_t)(data[0] % 64) * 37 + 1;
    int ra = fuzz_basetar_run(data + 1, size - 1, size, &a, ea, sizeof(ea));
    int rb = fuzz_basetar_run(data + 1, size - 1, piece, &b, eb, sizeof(eb));
    if (ra != rb || strcmp(ea, eb) != 0)
        abort(); /* the answer depends on how the bytes arrived */
    if (ra == 0 && (a.files_verified != a.files || memcmp(&a, &b, sizeof(a)) != 0))
        abort(); /* accepted without every file checked */
    return 0;
}
