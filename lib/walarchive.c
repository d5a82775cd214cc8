/*
 * walarchive: the encrypted WAL archive's files (see walarchive.h and docs/wal.md).
 *
 * Owns the names of archive files, the piece format of the partial segment, and the blocking
 * reads and writes of segments through backupstream (compression + BCF). Nothing here runs on the
 * daemon's loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "backupstream.h"
#include "bytebuf.h"
#include "err.h"
#include "walarchive.h"

static const char walarchive_piece_magic[8] = {'D', 'R', 'W', 'A', 'L', 'P', '1', '\0'};

/* ---- names --------------------------------------------------------------------------------- */

static uint64_t walarchive_segs_per_id(uint64_t seg_size)
{
    return seg_size ? 0x100000000ull / seg_size : 1;
}

void walarchive_seg_name(uint32_t tli, uint64_t segno, uint64_t seg_size, char out[WAL_NAME_LEN + 1])
{
    uint64_t per = walarchive_segs_per_id(seg_size);
    snprintf(out, WAL_NAME_LEN + 1, "%08" PRIX32 "%08" PRIX32 "%08" PRIX32, tli, (uint32_t)(segno / per),
             (uint32_t)(segno % per));
}

static int walarchive_hex32(const char *s, uint32_t *ret)
{
    uint32_t v = 0;
    for (int i = 0; i < 8; i++) {
        char ch = s[i];
        unsigned d;
        if (ch >= '0' && ch <= '9')
            d = (unsigned)(ch - '0');
        else if (ch >= 'A' && ch <= 'F')
            d = (unsigned)(ch - 'A' + 10);
        else
            return -EINVAL;
        v = v << 4 | d;
    }
    *ret = v;
    return 0;
}

int walarchive_parse_seg(const char *name, uint64_t seg_size, uint32_t *tli, uint64_t *segno)
{
    uint32_t t, hi, lo;
    if (strlen(name) < WAL_NAME_LEN || walarchive_hex32(name, &t) < 0 || walarchive_hex32(name + 8, &hi) < 0 ||
        walarchive_hex32(name + 16, &lo) < 0 || lo >= walarchive_segs_per_id(seg_size) || t == 0)
        return -EINVAL;
    *tli = t;
    *segno = (uint64_t)hi * walarchive_segs_per_id(seg_size) + lo;
    return 0;
}

/* The suffix after the codec part: ".wal" CODEC ".drbk" ends a container name. */
static bool walarchive_has_container_suffix(const char *rest, const char *stem)
{
    size_t n = strlen(stem);
    if (strncmp(rest, stem, n) != 0)
        return false;
    rest += n;
    for (int k = 0; k < 3; k++) {
        const char *ext = codec_file_ext((CodecKind)k);
        size_t e = strlen(ext);
        if (!strncmp(rest, ext, e) && !strcmp(rest + e, BCF_FILE_EXT))
            return true;
    }
    return false;
}

WalFileKind walarchive_classify(const char *name, uint64_t seg_size, uint32_t *tli, uint64_t *segno)
{
    uint32_t t;
    *tli = 0;
    *segno = 0;
    if (strlen(name) > 8 && !strcmp(name + 8, ".history" BCF_FILE_EXT)) {
        if (walarchive_hex32(name, &t) < 0 || t == 0)
            return WALFILE_NONE;
        *tli = t;
        return WALFILE_HISTORY;
    }
    if (walarchive_parse_seg(name, seg_size, tli, segno) < 0)
        return WALFILE_NONE;
    const char *rest = name + WAL_NAME_LEN;
    if (!strcmp(rest, ".partial.drwal"))
        return WALFILE_PARTIAL;
    if (walarchive_has_container_suffix(rest, ".partial.wal"))
        return WALFILE_PARTIAL_END;
    if (walarchive_has_container_suffix(rest, ".wal"))
        return WALFILE_SEGMENT;
    return WALFILE_NONE;
}

int walarchive_file_name(WalFileKind kind, uint32_t tli, uint64_t segno, uint64_t seg_size, CodecKind codec,
                         char *out, size_t outlen)
{
    char seg[WAL_NAME_LEN + 1];
    int n;
    walarchive_seg_name(tli, segno, seg_size, seg);
    switch (kind) {
    case WALFILE_SEGMENT:
        n = snprintf(out, outlen, "%s.wal%s%s", seg, codec_file_ext(codec), BCF_FILE_EXT);
        break;
    case WALFILE_PARTIAL_END:
        n = snprintf(out, outlen, "%s.partial.wal%s%s", seg, codec_file_ext(codec), BCF_FILE_EXT);
        break;
    case WALFILE_PARTIAL:
        n = snprintf(out, outlen, "%s.partial.drwal", seg);
        break;
    case WALFILE_HISTORY:
        n = snprintf(out, outlen, "%08" PRIX32 ".history%s", tli, BCF_FILE_EXT);
        break;
    default:
        return -EINVAL;
    }
    return n < 0 || (size_t)n >= outlen ? -ENAMETOOLONG : 0;
}

void walarchive_lsn_str(uint64_t lsn, char out[24])
{
    snprintf(out, 24, "%" PRIX32 "/%" PRIX32, (uint32_t)(lsn >> 32), (uint32_t)lsn);
}

int walarchive_parse_lsn(const char *s, uint64_t *lsn)
{
    char *end;
    errno = 0;
    unsigned long long hi = strtoull(s, &end, 16);
    if (end == s || *end != '/' || errno || hi > UINT32_MAX)
        return -EINVAL;
    const char *lo_s = end + 1;
    unsigned long long lo = strtoull(lo_s, &end, 16);
    if (end == lo_s || *end || errno || lo > UINT32_MAX)
        return -EINVAL;
    *lsn = (uint64_t)hi << 32 | lo;
    return 0;
}

/* ---- writing ------------------------------------------------------------------------------- */

/* Encrypt head||data (head may be NULL) into a container in out. */
static int walarchive_seal(const uint8_t key[BCF_KEY_LEN], CodecKind codec, int64_t created_at, const uint8_t *head,
                           size_t head_len, const uint8_t *data, size_t len, ByteBuf *out, char *err, size_t errlen)
{
    BackupStreamWriter *w = backupstream_writer_new(key, codec, CODEC_LEVEL_DEFAULT, 0, bytebuf_sink, out);
    int r;
    if (!w) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r = bcf_writer_set_created_at(backupstream_writer_bcf(w), created_at);
    if (r == 0 && head_len)
        r = backupstream_writer_write(w, head, head_len);
    if (r == 0 && len)
        r = backupstream_writer_write(w, data, len);
    if (r == 0)
        r = backupstream_writer_finish(w, NULL);
    if (r < 0)
        snprintf(err, errlen, "%s", backupstream_writer_errmsg(w));
    backupstream_writer_free(w);
    return r;
}

/* Decrypt and verify a container held in memory into out. */
static int walarchive_open_sealed(const uint8_t key[BCF_KEY_LEN], const uint8_t *data, size_t len, ByteBuf *out,
                                  char *err, size_t errlen)
{
    BackupStreamReader *rd = backupstream_reader_new(key, true, bytebuf_sink, out);
    int r;
    if (!rd) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r = backupstream_reader_update(rd, data, len);
    if (r == 0)
        r = backupstream_reader_finish(rd, NULL);
    if (r < 0)
        snprintf(err, errlen, "%s", backupstream_reader_errmsg(rd));
    backupstream_reader_free(rd);
    return r;
}

int walarchive_write_file(const char *dir, const char *name, const uint8_t key[BCF_KEY_LEN], CodecKind codec,
                          int64_t created_at, const uint8_t *data, size_t len, char *err, size_t errlen)
{
    ByteBuf sealed = {0}, check = {0};
    char path[4096];
    int r;

    if (snprintf(path, sizeof(path), "%s/%s", dir, name) >= (int)sizeof(path)) {
        snprintf(err, errlen, "path too long");
        return -ENAMETOOLONG;
    }
    r = walarchive_seal(key, codec, created_at, NULL, 0, data, len, &sealed, err, errlen);
    /* verified before it takes its name: decrypt what will be written and compare */
    if (r == 0 && (r = walarchive_open_sealed(key, sealed.p, sealed.len, &check, err, errlen)) == 0 &&
        (check.len != len || (len && memcmp(check.p, data, len) != 0))) {
        snprintf(err, errlen, "verification: the sealed segment does not decrypt to its bytes");
        r = DR_EINTERNAL;
    }
    if (r == 0 && (r = atomicfile_write(path, sealed.p, sealed.len, 0600)) < 0)
        snprintf(err, errlen, "write '%s': %s", path, strerror(-r));
    free(sealed.p);
    free(check.p);
    return r;
}

int walarchive_read_file(const char *path, const uint8_t key[BCF_KEY_LEN], size_t max, uint8_t **ret,
                         size_t *ret_len, char *err, size_t errlen)
{
    char *raw = NULL;
    size_t raw_len = 0;
    ByteBuf out = {0};
    int r = atomicfile_read_all(path, max + (max / 8) + 65536, &raw, &raw_len);
    if (r < 0) {
        snprintf(err, errlen, "read '%s': %s", path, strerror(-r));
        return r;
    }
    r = walarchive_open_sealed(key, (const uint8_t *)raw, raw_len, &out, err, errlen);
    free(raw);
    if (r == 0 && out.len > max) {
        snprintf(err, errlen, "'%s' holds %zu bytes, more than %zu", path, out.len, max);
        r = -EFBIG;
    }
    if (r < 0) {
        free(out.p);
        return r;
    }
    *ret = out.p;
    *ret_len = out.len;
    return 0;
}

static void walarchive_put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t walarchive_get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

static int walarchive_write_all(int fd, const uint8_t *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

int walarchive_append_piece(const char *path, const uint8_t key[BCF_KEY_LEN], CodecKind codec, uint64_t offset,
                            const uint8_t *data, size_t len, char *err, size_t errlen)
{
    uint8_t head[WAL_PIECE_HDR];
    ByteBuf piece = {0};
    struct stat st;
    bool created = stat(path, &st) < 0;
    int r;

    memcpy(head, walarchive_piece_magic, 8);
    walarchive_put_u64(head + 8, offset);
    if (bytebuf_sink(&piece, (const uint8_t *)"\0\0\0\0\0\0\0\0", 8) < 0) {
        snprintf(err, errlen, "out of memory");
        return -ENOMEM;
    }
    r = walarchive_seal(key, codec, 0, head, sizeof(head), data, len, &piece, err, errlen);
    if (r < 0) {
        free(piece.p);
        return r;
    }
    walarchive_put_u64(piece.p, piece.len - 8);
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) {
        r = -errno;
        snprintf(err, errlen, "open '%s': %s", path, strerror(errno));
        free(piece.p);
        return r;
    }
    off_t before = lseek(fd, 0, SEEK_END);
    if (before < 0 || (created && fchmod(fd, 0600) < 0))
        r = -errno;
    if (r == 0)
        r = walarchive_write_all(fd, piece.p, piece.len);
    if (r == 0 && fdatasync(fd) < 0)
        r = -errno;
    if (r < 0) {
        snprintf(err, errlen, "append to '%s': %s", path, strerror(-r));
        if (before >= 0 && ftruncate(fd, before) == 0) /* no torn piece before the next append */
            (void)fdatasync(fd);
    }
    close(fd);
    free(piece.p);
    if (r == 0 && created) {
        char dir[4096];
        snprintf(dir, sizeof(dir), "%s", path);
        char *slash = strrchr(dir, '/');
        if (slash) {
            *slash = '\0';
            if ((r = atomicfile_fsync_dir(dir)) < 0)
                snprintf(err, errlen, "fsync '%s': %s", dir, strerror(-r));
        }
    }
    return r;
}

int walarchive_read_partial(const char *path, const uint8_t key[BCF_KEY_LEN], uint8_t *buf, uint64_t seg_size,
                            bool cut_torn, uint64_t *ret_len, bool *ret_torn, char *err, size_t errlen)
{
    char *raw = NULL;
    size_t raw_len = 0, pos = 0;
    uint64_t have = 0;
    int r = atomicfile_read_all(path, (size_t)seg_size * 2 + (64u << 20), &raw, &raw_len);

    *ret_len = 0;
    *ret_torn = false;
    if (r < 0) {
        snprintf(err, errlen, "read '%s': %s", path, strerror(-r));
        return r;
    }
    while (pos < raw_len) {
        uint64_t n;
        ByteBuf plain = {0};
        if (raw_len - pos < 8 || (n = walarchive_get_u64((const uint8_t *)raw + pos)) > raw_len - pos - 8) {
            *ret_torn = true; /* a crash inside the last append: cut it off */
            if (cut_torn && truncate(path, (off_t)pos) < 0) {
                r = -errno;
                snprintf(err, errlen, "truncate '%s' at %zu: %s", path, pos, strerror(errno));
            }
            break;
        }
        r = walarchive_open_sealed(key, (const uint8_t *)raw + pos + 8, (size_t)n, &plain, err, errlen);
        if (r == 0 && (plain.len < WAL_PIECE_HDR || memcmp(plain.p, walarchive_piece_magic, 8) != 0)) {
            snprintf(err, errlen, "not a WAL piece");
            r = DR_ECORRUPT;
        }
        if (r == 0 && walarchive_get_u64(plain.p + 8) != have) {
            snprintf(err, errlen, "piece at offset %" PRIu64 " where %" PRIu64 " was expected",
                     walarchive_get_u64(plain.p + 8), have);
            r = DR_ECORRUPT;
        }
        if (r == 0 && plain.len - WAL_PIECE_HDR > seg_size - have) {
            snprintf(err, errlen, "pieces run past the end of the segment");
            r = DR_ECORRUPT;
        }
        if (r < 0) {
            char why[400];
            snprintf(why, sizeof(why), "%s", err);
            snprintf(err, errlen, "'%s', piece at byte %zu: %s", path, pos, why);
            free(plain.p);
            r = r == -ENOMEM ? r : DR_ECORRUPT;
            break;
        }
        memcpy(buf + have, plain.p + WAL_PIECE_HDR, plain.len - WAL_PIECE_HDR);
        have += plain.len - WAL_PIECE_HDR;
        free(plain.p);
        pos += 8 + (size_t)n;
    }
    free(raw);
    *ret_len = have;
    return r;
}
