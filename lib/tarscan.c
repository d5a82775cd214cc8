/*
 * tarscan: the structure of a tar stream, fed in pieces (see tarscan.h).
 */
#include "tarscan.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TAR_BLOCK 512u

typedef struct TarWatched {
    char *name;
    bool seen;
    bool truncated;
    uint8_t *data;
    size_t len;
} TarWatched;

struct TarScan {
    TarWatched watched[TARSCAN_MAX_WATCHED];
    size_t n_watched;
    size_t capture_limit;

    uint8_t header[TAR_BLOCK];
    size_t header_len;    /* bytes of the current header collected */
    uint64_t data_left;   /* member content still to come */
    uint64_t pad_left;    /* padding to the next block */
    TarWatched *capture;  /* the member whose content is being kept, or NULL */
    bool ended;           /* a zero block was seen */
    uint64_t members;
    int err;
    char errmsg[160];
};

static const char *tarscan_strip(const char *name)
{
    while (name[0] == '.' && name[1] == '/')
        name += 2;
    return name;
}

TarScan *tarscan_new(const char *const *watched, size_t capture_limit)
{
    TarScan *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->capture_limit = capture_limit;
    for (size_t i = 0; watched && watched[i]; i++) {
        if (i >= TARSCAN_MAX_WATCHED || !(t->watched[i].name = strdup(tarscan_strip(watched[i])))) {
            tarscan_free(t);
            return NULL;
        }
        t->n_watched = i + 1;
    }
    return t;
}

void tarscan_free(TarScan *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_watched; i++) {
        free(t->watched[i].name);
        free(t->watched[i].data);
    }
    free(t);
}

static int tarscan_fail(TarScan *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int tarscan_fail(TarScan *t, const char *fmt, ...)
{
    va_list ap;
    if (!t->err) {
        t->err = -EBADMSG;
        va_start(ap, fmt);
        vsnprintf(t->errmsg, sizeof(t->errmsg), fmt, ap);
        va_end(ap);
    }
    return t->err;
}

/* An octal field (NUL or space terminated), or GNU base-256 (high bit of the first byte). */
static bool tarscan_number(const uint8_t *f, size_t n, uint64_t *ret)
{
    uint64_t v = 0;
    size_t i = 0;

    if (f[0] & 0x80) {
        if (f[0] != 0x80)
            return false; /* negative or too large */
        for (i = 1; i < n; i++) {
            if (v >> 56)
                return false;
            v = v << 8 | f[i];
        }
        *ret = v;
        return true;
    }
    while (i < n && f[i] == ' ')
        i++;
    bool digits = false;
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++) {
        if (v >> 60)
            return false;
        v = v << 3 | (uint64_t)(f[i] - '0');
        digits = true;
    }
    for (; i < n; i++)
        if (f[i] != ' ' && f[i] != '\0')
            return false;
    *ret = v;
    return digits;
}

static int tarscan_header(TarScan *t)
{
    const uint8_t *h = t->header;
    uint64_t size, sum;
    uint64_t want = 0;
    bool zero = true;

    for (size_t i = 0; i < TAR_BLOCK; i++)
        if (h[i]) {
            zero = false;
            break;
        }
    if (zero) {
        t->ended = true;
        return 0;
    }
    for (size_t i = 0; i < TAR_BLOCK; i++)
        want += i >= 148 && i < 156 ? (uint64_t)' ' : h[i];
    if (!tarscan_number(h + 148, 8, &sum) || sum != want)
        return tarscan_fail(t, "tar header %llu: bad checksum", (unsigned long long)t->members + 1);
    if (!tarscan_number(h + 124, 12, &size))
        return tarscan_fail(t, "tar header %llu: bad size field", (unsigned long long)t->members + 1);
    char type = (char)h[156];
    t->data_left = size;
    t->pad_left = (TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK;
    t->capture = NULL;
    if (type == 'L' || type == 'K' || type == 'x' || type == 'g')
        return 0; /* extension data for the next member */
    t->members++;
    char name[256];
    size_t plen = strnlen((const char *)h + 345, 155), nlen = strnlen((const char *)h, 100);
    if (memcmp(h + 257, "ustar", 5) == 0 && plen)
        snprintf(name, sizeof(name), "%.*s/%.*s", (int)plen, (const char *)h + 345, (int)nlen, (const char *)h);
    else
        snprintf(name, sizeof(name), "%.*s", (int)nlen, (const char *)h);
    const char *n = tarscan_strip(name);
    for (size_t i = 0; i < t->n_watched; i++) {
        TarWatched *w = &t->watched[i];
        if (strcmp(w->name, n) != 0)
            continue;
        w->seen = true;
        w->truncated = false;
        w->len = 0; /* a later member of the same name replaces an earlier one, as tar -x does */
        if (t->capture_limit && size && (type == '0' || type == '\0')) {
            size_t cap = size < t->capture_limit ? (size_t)size : t->capture_limit;
            uint8_t *p = realloc(w->data, cap);
            if (!p)
                return tarscan_fail(t, "out of memory keeping tar member '%s'", w->name);
            w->data = p;
            w->truncated = size > t->capture_limit;
            t->capture = w;
        }
        break;
    }
    return 0;
}

int tarscan_update(TarScan *t, const uint8_t *data, size_t len)
{
    if (t->err)
        return t->err;
    while (len > 0) {
        if (t->data_left) {
            size_t n = t->data_left < len ? (size_t)t->data_left : len;
            TarWatched *w = t->capture;
            if (w && w->len < t->capture_limit) {
                size_t room = t->capture_limit - w->len, c = n < room ? n : room;
                memcpy(w->data + w->len, data, c);
                w->len += c;
            }
            t->data_left -= n;
            data += n;
            len -= n;
            continue;
        }
        if (t->pad_left) {
            size_t n = t->pad_left < len ? (size_t)t->pad_left : len;
            t->pad_left -= n;
            data += n;
            len -= n;
            continue;
        }
        if (t->ended) {
            /* After the end only zero blocks (the second end block, the record padding). */
            for (size_t i = 0; i < len; i++)
                if (data[i])
                    return tarscan_fail(t, "data after the end of the tar archive");
            return 0;
        }
        size_t n = TAR_BLOCK - t->header_len < len ? TAR_BLOCK - t->header_len : len;
        memcpy(t->header + t->header_len, data, n);
        t->header_len += n;
        data += n;
        len -= n;
        if (t->header_len == TAR_BLOCK) {
            t->header_len = 0;
            int r = tarscan_header(t);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

int tarscan_finish(TarScan *t)
{
    if (t->err)
        return t->err;
    if (!t->ended)
        return tarscan_fail(t, "the tar archive is truncated (no end-of-archive block after %llu member(s))",
                            (unsigned long long)t->members);
    return 0;
}

const char *tarscan_errmsg(const TarScan *t)
{
    return t->errmsg;
}

uint64_t tarscan_members(const TarScan *t)
{
    return t->members;
}

bool tarscan_member(const TarScan *t, const char *name, const uint8_t **ret_data, size_t *ret_len,
                    bool *ret_truncated)
{
    const char *n = tarscan_strip(name);
    for (size_t i = 0; i < t->n_watched; i++) {
        const TarWatched *w = &t->watched[i];
        if (strcmp(w->name, n) != 0)
            continue;
        if (ret_data)
            *ret_data = w->seen ? w->data : NULL;
        if (ret_len)
            *ret_len = w->seen ? w->len : 0;
        if (ret_truncated)
            *ret_truncated = w->truncated;
        return w->seen;
    }
    if (ret_data)
        *ret_data = NULL;
    if (ret_len)
        *ret_len = 0;
    if (ret_truncated)
        *ret_truncated = false;
    return false;
}
