/*
 * bcf: backup container format writer and reader (see bcf.h and docs/backup-format.md).
 *
 * Header layout (big-endian), BCF_HEADER_LEN = 112 bytes:
 *   0 magic[8] | 8 version u16 | 10 header_len u16 | 12 suite u8 | 13 codec u8 | 14 flags u16 |
 *   16 chunk_size u32 | 20 reserved u32 | 24 created_at i64 | 32 key_id[16] | 48 salt[32] |
 *   80 hmac[32] = HMAC-SHA-256(K_hdr, bytes 0..79)
 * Chunk i: u32 word (bit 31 = final, bits 0..30 = length L) | L bytes AES-256-GCM ciphertext | tag[16],
 *   key K_data, nonce 0x00000000 || u64 i, AAD SHA-256(header) || u64 i || u8 final.
 * K_data and K_hdr come from HKDF-SHA-256(ikm = master key, salt = file salt, info = label).
 */
#include "bcf.h"

#include "clock.h"
#include "err.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#define BCF_SUITE_V1 1 /* HKDF-SHA-256, AES-256-GCM chunks, HMAC-SHA-256 header tag */
#define BCF_HDR_MAC_OFF 80
#define BCF_NONCE_LEN 12
#define BCF_AAD_LEN 41
#define BCF_FINAL_BIT 0x80000000u
#define BCF_MAX_CHUNKS (UINT64_C(1) << 32)

static const char bcf_label_key_id[] = "drsupervisor-bcf-v1 key-id";
static const char bcf_label_data_key[] = "drsupervisor-bcf-v1 data-key";
static const char bcf_label_header_key[] = "drsupervisor-bcf-v1 header-key";

/* ---- byte helpers ---- */

static void bcf_put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void bcf_put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (24 - 8 * i));
}

static void bcf_put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint16_t bcf_get16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static uint32_t bcf_get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static uint64_t bcf_get64(const uint8_t *p)
{
    return ((uint64_t)bcf_get32(p) << 32) | bcf_get32(p + 4);
}

char *bcf_hex(const uint8_t *in, size_t len, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * len] = '\0';
    return out;
}

/* ---- crypto helpers ---- */

void bcf_key_id(const uint8_t key[BCF_KEY_LEN], uint8_t out[BCF_KEY_ID_LEN])
{
    uint8_t buf[sizeof(bcf_label_key_id) - 1 + BCF_KEY_LEN];
    uint8_t md[32];
    memcpy(buf, bcf_label_key_id, sizeof(bcf_label_key_id) - 1);
    memcpy(buf + sizeof(bcf_label_key_id) - 1, key, BCF_KEY_LEN);
    EVP_Digest(buf, sizeof(buf), md, NULL, EVP_sha256(), NULL);
    memcpy(out, md, BCF_KEY_ID_LEN);
    OPENSSL_cleanse(buf, sizeof(buf));
}

/* HKDF-SHA-256(ikm = key, salt, info = label) -> 32 bytes. 0 or DR_EINTERNAL. */
static int bcf_hkdf(const uint8_t key[BCF_KEY_LEN], const uint8_t salt[BCF_SALT_LEN], const char *label,
                    uint8_t out[32])
{
    int rc = DR_EINTERNAL;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "HKDF", NULL);
    EVP_KDF_CTX *kctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    if (kctx) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, (char *)(uintptr_t) "SHA256", 0),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, (void *)(uintptr_t)key, BCF_KEY_LEN),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)(uintptr_t)salt, BCF_SALT_LEN),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, (void *)(uintptr_t)label, strlen(label)),
            OSSL_PARAM_construct_end(),
        };
        if (EVP_KDF_derive(kctx, out, 32, params) == 1)
            rc = 0;
    }
    EVP_KDF_CTX_free(kctx);
    EVP_KDF_free(kdf);
    return rc;
}

/* HMAC-SHA-256 of the first 80 header bytes under the header key. 0 or DR_EINTERNAL. */
static int bcf_header_mac(const uint8_t khdr[32], const uint8_t *hdr, uint8_t out[32])
{
    size_t outlen = 0;
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, khdr, 32, hdr, BCF_HDR_MAC_OFF, out, 32, &outlen) ||
        outlen != 32)
        return DR_EINTERNAL;
    return 0;
}

static void bcf_nonce_aad(const uint8_t hhash[32], uint64_t idx, bool final, uint8_t nonce[BCF_NONCE_LEN],
                          uint8_t aad[BCF_AAD_LEN])
{
    memset(nonce, 0, 4);
    bcf_put64(nonce + 4, idx);
    memcpy(aad, hhash, 32);
    bcf_put64(aad + 32, idx);
    aad[40] = final ? 1 : 0;
}

static int bcf_sink_code(int r)
{
    return r > 0 ? DR_ECANCELED : r;
}

/* ---- key file ---- */

static int bcf_hexval(int ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

__attribute__((format(printf, 3, 4))) static int bcf_key_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return DR_EKEY;
}

int bcf_load_key_file(const char *path, uint8_t key[BCF_KEY_LEN], char *err, size_t errlen)
{
    /* O_NONBLOCK so a FIFO planted at the path cannot hang us; regular files ignore it. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return bcf_key_err(err, errlen, "key file '%s': cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        close(fd);
        return bcf_key_err(err, errlen, "key file '%s': cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return bcf_key_err(err, errlen, "key file '%s': not a regular file", path);
    }
    if (st.st_uid != geteuid()) {
        close(fd);
        return bcf_key_err(err, errlen, "key file '%s': owned by uid %u, not by the effective uid %u", path,
                           (unsigned)st.st_uid, (unsigned)geteuid());
    }
    if (st.st_mode & 077) {
        close(fd);
        return bcf_key_err(err, errlen, "key file '%s': mode %04o is too open (group/other bits set; use 0600 or 0400)",
                           path, (unsigned)(st.st_mode & 07777));
    }

    uint8_t buf[80];
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, buf + got, sizeof(buf) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            close(fd);
            OPENSSL_cleanse(buf, sizeof(buf));
            return bcf_key_err(err, errlen, "key file '%s': read failed: %s", path, strerror(e));
        }
        if (n == 0 || (got += (size_t)n) == sizeof(buf))
            break;
    }
    close(fd);

    int rc = 0;
    uint8_t k[BCF_KEY_LEN];
    if (got == BCF_KEY_LEN) {
        memcpy(k, buf, BCF_KEY_LEN);
    } else if (got == 2 * BCF_KEY_LEN || (got == 2 * BCF_KEY_LEN + 1 && buf[2 * BCF_KEY_LEN] == '\n')) {
        for (size_t i = 0; i < BCF_KEY_LEN && rc == 0; i++) {
            int hi = bcf_hexval(buf[2 * i]), lo = bcf_hexval(buf[2 * i + 1]);
            if (hi < 0 || lo < 0)
                rc = bcf_key_err(err, errlen, "key file '%s': 64 characters but not all hex digits", path);
            else
                k[i] = (uint8_t)(hi << 4 | lo);
        }
    } else {
        rc = bcf_key_err(err, errlen,
                         "key file '%s': wrong length %s%zu bytes (want 32 raw bytes, or 64 hex digits and an "
                         "optional newline)",
                         path, got == sizeof(buf) ? "at least " : "", got);
    }
    if (rc == 0)
        memcpy(key, k, BCF_KEY_LEN);
    OPENSSL_cleanse(k, sizeof(k));
    OPENSSL_cleanse(buf, sizeof(buf));
    return rc;
}

/* ---- writer ---- */

struct BcfWriter {
    uint8_t master[BCF_KEY_LEN];
    uint8_t dkey[32];
    BcfHeader h;
    uint8_t hhash[32];
    bool started, finished, failed;
    uint8_t *buf;   /* plaintext of the pending chunk, chunk_size bytes */
    size_t fill;
    uint8_t *frame; /* 4 + chunk_size + 16: one framed chunk ready for the sink */
    uint64_t idx;
    EVP_CIPHER_CTX *cctx;
    BcfSinkFn sink;
    void *ctx;
    uint64_t bytes_out;
    char errmsg[200];
};

__attribute__((format(printf, 3, 4))) static int bcf_wfail(BcfWriter *w, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->errmsg, sizeof(w->errmsg), fmt, ap);
    va_end(ap);
    w->failed = true;
    return code;
}

BcfWriter *bcf_writer_new(const uint8_t key[BCF_KEY_LEN], CodecKind codec, uint32_t chunk_size,
                          BcfSinkFn sink, void *ctx)
{
    if (chunk_size == 0)
        chunk_size = BCF_CHUNK_DEFAULT;
    if (chunk_size > BCF_CHUNK_MAX || strcmp(codec_name(codec), "unknown") == 0 || !sink)
        return NULL;
    BcfWriter *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    memcpy(w->master, key, BCF_KEY_LEN);
    w->h.version = BCF_VERSION;
    w->h.codec = codec;
    w->h.chunk_size = chunk_size;
    w->h.created_at = clock_wall_ms() / 1000;
    bcf_key_id(key, w->h.key_id);
    w->sink = sink;
    w->ctx = ctx;
    w->buf = malloc(chunk_size);
    w->frame = malloc((size_t)chunk_size + 4 + BCF_TAG_LEN);
    w->cctx = EVP_CIPHER_CTX_new();
    if (!w->buf || !w->frame || !w->cctx || RAND_bytes(w->h.salt, BCF_SALT_LEN) != 1) {
        bcf_writer_free(w);
        return NULL;
    }
    return w;
}

int bcf_writer_set_created_at(BcfWriter *w, int64_t t)
{
    if (w->started)
        return DR_ESTATE;
    w->h.created_at = t;
    return 0;
}

int bcf_writer_set_salt_for_test(BcfWriter *w, const uint8_t salt[BCF_SALT_LEN])
{
    if (w->started)
        return DR_ESTATE;
    memcpy(w->h.salt, salt, BCF_SALT_LEN);
    return 0;
}

static int bcf_writer_emit(BcfWriter *w, const uint8_t *data, size_t len)
{
    w->bytes_out += len;
    int r = w->sink(w->ctx, data, len);
    if (r != 0) {
        r = bcf_sink_code(r);
        return bcf_wfail(w, r, "output sink failed: %s", err_str(r));
    }
    return 0;
}

/* Derive the keys, build and emit the header. */
static int bcf_writer_start(BcfWriter *w)
{
    uint8_t hdr[BCF_HEADER_LEN] = {0};
    uint8_t khdr[32];
    w->started = true;
    memcpy(hdr, BCF_MAGIC, 8);
    bcf_put16(hdr + 8, BCF_VERSION);
    bcf_put16(hdr + 10, BCF_HEADER_LEN);
    hdr[12] = BCF_SUITE_V1;
    hdr[13] = (uint8_t)w->h.codec;
    bcf_put16(hdr + 14, 0);
    bcf_put32(hdr + 16, w->h.chunk_size);
    bcf_put32(hdr + 20, 0);
    bcf_put64(hdr + 24, (uint64_t)w->h.created_at);
    memcpy(hdr + BCF_KEY_ID_OFFSET, w->h.key_id, BCF_KEY_ID_LEN);
    memcpy(hdr + 48, w->h.salt, BCF_SALT_LEN);
    int rc = bcf_hkdf(w->master, w->h.salt, bcf_label_data_key, w->dkey);
    if (rc == 0)
        rc = bcf_hkdf(w->master, w->h.salt, bcf_label_header_key, khdr);
    if (rc == 0)
        rc = bcf_header_mac(khdr, hdr, hdr + BCF_HDR_MAC_OFF);
    OPENSSL_cleanse(khdr, sizeof(khdr));
    OPENSSL_cleanse(w->master, sizeof(w->master)); /* only the derived keys are needed from here */
    if (rc == 0 && EVP_EncryptInit_ex(w->cctx, EVP_aes_256_gcm(), NULL, w->dkey, NULL) != 1)
        rc = DR_EINTERNAL;
    if (rc != 0)
        return bcf_wfail(w, rc, "key derivation or cipher setup failed (OpenSSL)");
    EVP_Digest(hdr, BCF_HEADER_LEN, w->hhash, NULL, EVP_sha256(), NULL);
    return bcf_writer_emit(w, hdr, BCF_HEADER_LEN);
}

/* Encrypt the pending w->fill bytes as chunk w->idx and emit it framed. */
static int bcf_writer_chunk(BcfWriter *w, bool final)
{
    if (w->idx >= BCF_MAX_CHUNKS)
        return bcf_wfail(w, DR_ETOOBIG, "too many chunks (limit 2^32 per file)");
    uint8_t nonce[BCF_NONCE_LEN], aad[BCF_AAD_LEN];
    bcf_nonce_aad(w->hhash, w->idx, final, nonce, aad);
    int outl = 0, finl = 0;
    uint8_t *ct = w->frame + 4;
    bcf_put32(w->frame, (uint32_t)w->fill | (final ? BCF_FINAL_BIT : 0));
    if (EVP_EncryptInit_ex(w->cctx, NULL, NULL, NULL, nonce) != 1 ||
        EVP_EncryptUpdate(w->cctx, NULL, &outl, aad, BCF_AAD_LEN) != 1 ||
        (w->fill > 0 && EVP_EncryptUpdate(w->cctx, ct, &outl, w->buf, (int)w->fill) != 1) ||
        EVP_EncryptFinal_ex(w->cctx, ct + (w->fill > 0 ? outl : 0), &finl) != 1 ||
        EVP_CIPHER_CTX_ctrl(w->cctx, EVP_CTRL_GCM_GET_TAG, BCF_TAG_LEN, ct + w->fill) != 1)
        return bcf_wfail(w, DR_EINTERNAL, "chunk %llu: encryption failed (OpenSSL)", (unsigned long long)w->idx);
    int r = bcf_writer_emit(w, w->frame, 4 + w->fill + BCF_TAG_LEN);
    if (r < 0)
        return r;
    w->idx++;
    w->fill = 0;
    return 0;
}

int bcf_writer_write(BcfWriter *w, const void *data, size_t len)
{
    if (w->failed || w->finished)
        return DR_ESTATE;
    if (!w->started) {
        int r = bcf_writer_start(w);
        if (r < 0)
            return r;
    }
    const uint8_t *p = data;
    while (len > 0) {
        if (w->fill == w->h.chunk_size) {
            int r = bcf_writer_chunk(w, false); /* more data follows, so it is not the last */
            if (r < 0)
                return r;
        }
        size_t n = w->h.chunk_size - w->fill;
        if (n > len)
            n = len;
        memcpy(w->buf + w->fill, p, n);
        w->fill += n;
        p += n;
        len -= n;
    }
    return 0;
}

int bcf_writer_finish(BcfWriter *w)
{
    if (w->failed || w->finished)
        return DR_ESTATE;
    if (!w->started) {
        int r = bcf_writer_start(w);
        if (r < 0)
            return r;
    }
    int r = bcf_writer_chunk(w, true);
    if (r == 0)
        w->finished = true;
    return r;
}

const BcfHeader *bcf_writer_header(const BcfWriter *w)
{
    return &w->h;
}

uint64_t bcf_writer_bytes_out(const BcfWriter *w)
{
    return w->bytes_out;
}

const char *bcf_writer_errmsg(const BcfWriter *w)
{
    return w->errmsg;
}

void bcf_writer_free(BcfWriter *w)
{
    if (!w)
        return;
    EVP_CIPHER_CTX_free(w->cctx);
    if (w->buf)
        OPENSSL_cleanse(w->buf, w->h.chunk_size);
    free(w->buf);
    free(w->frame);
    OPENSSL_cleanse(w, sizeof(*w));
    free(w);
}

/* ---- reader ---- */

typedef enum { BCF_RD_HEADER, BCF_RD_LEN, BCF_RD_BODY, BCF_RD_DONE } BcfReadState;

struct BcfReader {
    uint8_t master[BCF_KEY_LEN];
    uint8_t dkey[32];
    BcfSinkFn sink;
    void *ctx;
    BcfReadState st;
    uint8_t hdr[BCF_HEADER_LEN];
    size_t hdr_got;
    BcfHeader h;
    bool header_parsed, header_verified;
    uint8_t hhash[32];
    EVP_CIPHER_CTX *cctx;
    uint8_t word[4];
    size_t word_got;
    uint32_t cur_len;
    bool cur_final;
    uint8_t *body; /* chunk_size + 16: ciphertext and tag of the chunk being read */
    size_t body_got;
    uint8_t *pt;   /* chunk_size: verified plaintext */
    uint64_t idx;  /* index of the chunk being read; chunks verified so far */
    uint64_t bytes_in;
    int err;
    char errmsg[256];
};

__attribute__((format(printf, 3, 4))) static int bcf_rfail(BcfReader *r, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->errmsg, sizeof(r->errmsg), fmt, ap);
    va_end(ap);
    r->err = code;
    return code;
}

BcfReader *bcf_reader_new(const uint8_t key[BCF_KEY_LEN], BcfSinkFn sink, void *ctx)
{
    BcfReader *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    memcpy(r->master, key, BCF_KEY_LEN);
    r->sink = sink;
    r->ctx = ctx;
    r->cctx = EVP_CIPHER_CTX_new();
    if (!r->cctx) {
        bcf_reader_free(r);
        return NULL;
    }
    return r;
}

static bool bcf_magic_ok(const uint8_t *p, size_t n)
{
    return memcmp(p, BCF_MAGIC, n < 8 ? n : 8) == 0;
}

/* The whole header is in r->hdr: check it in the documented order and set up the chunk keys. */
static int bcf_reader_header_done(BcfReader *r)
{
    const uint8_t *h = r->hdr;
    uint16_t version = bcf_get16(h + 8);
    if (version != BCF_VERSION)
        return bcf_rfail(r, DR_ECORRUPT, "unsupported format version %u (this build reads version %u)",
                         (unsigned)version, (unsigned)BCF_VERSION);
    if (bcf_get16(h + 10) != BCF_HEADER_LEN || h[12] != BCF_SUITE_V1)
        return bcf_rfail(r, DR_ECORRUPT, "bad header: header length %u / cipher suite %u (want %u / %u)",
                         (unsigned)bcf_get16(h + 10), (unsigned)h[12], (unsigned)BCF_HEADER_LEN,
                         (unsigned)BCF_SUITE_V1);
    r->h.version = version;
    r->h.codec = (CodecKind)h[13];
    r->h.chunk_size = bcf_get32(h + 16);
    r->h.created_at = (int64_t)bcf_get64(h + 24);
    memcpy(r->h.key_id, h + 32, BCF_KEY_ID_LEN);
    memcpy(r->h.salt, h + 48, BCF_SALT_LEN);
    r->header_parsed = true;

    /* Key id first, so that a wrong key is reported as such and not as damage. */
    uint8_t given[BCF_KEY_ID_LEN];
    bcf_key_id(r->master, given);
    if (memcmp(given, r->h.key_id, BCF_KEY_ID_LEN) != 0) {
        char a[2 * BCF_KEY_ID_LEN + 1], b[2 * BCF_KEY_ID_LEN + 1];
        return bcf_rfail(r, DR_EKEY, "key id mismatch: file needs key %s, given key %s",
                         bcf_hex(r->h.key_id, BCF_KEY_ID_LEN, a), bcf_hex(given, BCF_KEY_ID_LEN, b));
    }

    uint8_t khdr[32], mac[32];
    int rc = bcf_hkdf(r->master, r->h.salt, bcf_label_header_key, khdr);
    if (rc == 0)
        rc = bcf_header_mac(khdr, h, mac);
    OPENSSL_cleanse(khdr, sizeof(khdr));
    if (rc == 0)
        rc = bcf_hkdf(r->master, r->h.salt, bcf_label_data_key, r->dkey);
    OPENSSL_cleanse(r->master, sizeof(r->master));
    if (rc != 0)
        return bcf_rfail(r, rc, "key derivation failed (OpenSSL)");
    if (CRYPTO_memcmp(mac, h + BCF_HDR_MAC_OFF, 32) != 0)
        return bcf_rfail(r, DR_ECORRUPT, "header: authentication failed (header modified)");
    r->header_verified = true;

    /* Authentic, so anything odd below is a newer or buggy writer, not damage. */
    if (bcf_get16(h + 14) != 0 || bcf_get32(h + 20) != 0)
        return bcf_rfail(r, DR_ECORRUPT, "bad header: unknown flags 0x%04x or reserved field set",
                         (unsigned)bcf_get16(h + 14));
    if (strcmp(codec_name(r->h.codec), "unknown") == 0)
        return bcf_rfail(r, DR_ECORRUPT, "bad header: unknown codec id %u", (unsigned)h[13]);
    if (r->h.chunk_size == 0 || r->h.chunk_size > BCF_CHUNK_MAX)
        return bcf_rfail(r, DR_ECORRUPT, "bad header: chunk size %u outside 1..%u", (unsigned)r->h.chunk_size,
                         (unsigned)BCF_CHUNK_MAX);

    EVP_Digest(h, BCF_HEADER_LEN, r->hhash, NULL, EVP_sha256(), NULL);
    r->body = malloc((size_t)r->h.chunk_size + BCF_TAG_LEN);
    r->pt = malloc(r->h.chunk_size);
    if (!r->body || !r->pt)
        return bcf_rfail(r, -ENOMEM, "out of memory for a %u-byte chunk", (unsigned)r->h.chunk_size);
    if (EVP_DecryptInit_ex(r->cctx, EVP_aes_256_gcm(), NULL, r->dkey, NULL) != 1)
        return bcf_rfail(r, DR_EINTERNAL, "cipher setup failed (OpenSSL)");
    r->st = BCF_RD_LEN;
    return 0;
}

/* The chunk length word is complete: validate the framing. */
static int bcf_reader_word_done(BcfReader *r)
{
    uint32_t w = bcf_get32(r->word);
    r->cur_final = (w & BCF_FINAL_BIT) != 0;
    r->cur_len = w & ~BCF_FINAL_BIT;
    unsigned long long i = (unsigned long long)r->idx;
    if (r->idx >= BCF_MAX_CHUNKS)
        return bcf_rfail(r, DR_ECORRUPT, "chunk %llu: too many chunks (limit 2^32)", i);
    if (r->cur_len > r->h.chunk_size)
        return bcf_rfail(r, DR_ECORRUPT, "chunk %llu: length %u exceeds the chunk size %u (framing damaged)", i,
                         (unsigned)r->cur_len, (unsigned)r->h.chunk_size);
    if (!r->cur_final && r->cur_len != r->h.chunk_size)
        return bcf_rfail(r, DR_ECORRUPT,
                         "chunk %llu: non-final chunk has length %u, expected %u (framing damaged)", i,
                         (unsigned)r->cur_len, (unsigned)r->h.chunk_size);
    r->body_got = 0;
    r->st = BCF_RD_BODY;
    return 0;
}

/* Ciphertext and tag of the current chunk are complete: authenticate, decrypt, release. */
static int bcf_reader_body_done(BcfReader *r)
{
    uint8_t nonce[BCF_NONCE_LEN], aad[BCF_AAD_LEN];
    bcf_nonce_aad(r->hhash, r->idx, r->cur_final, nonce, aad);
    int outl = 0, finl = 0;
    unsigned long long i = (unsigned long long)r->idx;
    if (EVP_DecryptInit_ex(r->cctx, NULL, NULL, NULL, nonce) != 1 ||
        EVP_DecryptUpdate(r->cctx, NULL, &outl, aad, BCF_AAD_LEN) != 1 ||
        (r->cur_len > 0 && EVP_DecryptUpdate(r->cctx, r->pt, &outl, r->body, (int)r->cur_len) != 1) ||
        EVP_CIPHER_CTX_ctrl(r->cctx, EVP_CTRL_GCM_SET_TAG, BCF_TAG_LEN, r->body + r->cur_len) != 1)
        return bcf_rfail(r, DR_EINTERNAL, "chunk %llu: decryption failed (OpenSSL)", i);
    if (EVP_DecryptFinal_ex(r->cctx, r->pt + (r->cur_len > 0 ? outl : 0), &finl) != 1) {
        OPENSSL_cleanse(r->pt, r->cur_len);
        return bcf_rfail(r, DR_ECORRUPT, "chunk %llu: authentication failed (data modified or wrong key)", i);
    }
    r->idx++;
    r->st = r->cur_final ? BCF_RD_DONE : BCF_RD_LEN;
    r->word_got = 0;
    if (r->sink && r->cur_len > 0) {
        int s = r->sink(r->ctx, r->pt, r->cur_len);
        if (s != 0) {
            s = bcf_sink_code(s);
            return bcf_rfail(r, s, "plaintext sink failed: %s", err_str(s));
        }
    }
    return 0;
}

int bcf_reader_update(BcfReader *r, const void *data, size_t len)
{
    const uint8_t *p = data;
    if (r->err)
        return r->err;
    while (len > 0) {
        size_t n;
        int rc = 0;
        switch (r->st) {
        case BCF_RD_HEADER:
            n = BCF_HEADER_LEN - r->hdr_got;
            n = n < len ? n : len;
            memcpy(r->hdr + r->hdr_got, p, n);
            r->hdr_got += n;
            if (!bcf_magic_ok(r->hdr, r->hdr_got))
                rc = bcf_rfail(r, DR_ECORRUPT, "bad magic: not a drsupervisor backup");
            else if (r->hdr_got == BCF_HEADER_LEN)
                rc = bcf_reader_header_done(r);
            break;
        case BCF_RD_LEN:
            n = 4 - r->word_got;
            n = n < len ? n : len;
            memcpy(r->word + r->word_got, p, n);
            r->word_got += n;
            if (r->word_got == 4)
                rc = bcf_reader_word_done(r);
            break;
        case BCF_RD_BODY:
            n = r->cur_len + BCF_TAG_LEN - r->body_got;
            n = n < len ? n : len;
            memcpy(r->body + r->body_got, p, n);
            r->body_got += n;
            if (r->body_got == r->cur_len + BCF_TAG_LEN)
                rc = bcf_reader_body_done(r);
            break;
        case BCF_RD_DONE:
        default:
            return bcf_rfail(r, DR_ECORRUPT, "data after final chunk: %zu unexpected byte(s) at offset %llu, after "
                             "chunk %llu", len, (unsigned long long)r->bytes_in,
                             (unsigned long long)(r->idx - 1));
        }
        r->bytes_in += n;
        p += n;
        len -= n;
        if (rc != 0)
            return rc;
    }
    return 0;
}

int bcf_reader_finish(BcfReader *r)
{
    if (r->err)
        return r->err;
    unsigned long long i = (unsigned long long)r->idx;
    switch (r->st) {
    case BCF_RD_DONE:
        return 0;
    case BCF_RD_HEADER:
        if (r->hdr_got == 0)
            return bcf_rfail(r, DR_ECORRUPT, "truncated: the file is empty");
        return bcf_rfail(r, DR_ECORRUPT, "truncated: stream ends inside the header (%zu of %u bytes)", r->hdr_got,
                         (unsigned)BCF_HEADER_LEN);
    case BCF_RD_LEN:
        if (r->word_got > 0)
            return bcf_rfail(r, DR_ECORRUPT, "truncated: stream ends inside the length of chunk %llu", i);
        if (r->idx == 0)
            return bcf_rfail(r, DR_ECORRUPT, "truncated: stream ends after the header without the final chunk");
        return bcf_rfail(r, DR_ECORRUPT, "truncated: stream ends after chunk %llu without the final chunk", i - 1);
    case BCF_RD_BODY:
    default:
        return bcf_rfail(r, DR_ECORRUPT, "truncated: stream ends inside chunk %llu (%zu of %u bytes)", i,
                         r->body_got, (unsigned)(r->cur_len + BCF_TAG_LEN));
    }
}

const BcfHeader *bcf_reader_header(const BcfReader *r)
{
    return r->header_parsed ? &r->h : NULL;
}

bool bcf_reader_header_verified(const BcfReader *r)
{
    return r->header_verified;
}

uint64_t bcf_reader_chunks(const BcfReader *r)
{
    return r->idx;
}

uint64_t bcf_reader_bytes_in(const BcfReader *r)
{
    return r->bytes_in;
}

const char *bcf_reader_errmsg(const BcfReader *r)
{
    return r->errmsg;
}

void bcf_reader_free(BcfReader *r)
{
    if (!r)
        return;
    EVP_CIPHER_CTX_free(r->cctx);
    if (r->pt)
        OPENSSL_cleanse(r->pt, r->h.chunk_size);
    free(r->pt);
    free(r->body);
    OPENSSL_cleanse(r, sizeof(*r));
    free(r);
}
