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
/* The longest extension member (GNU long name, pax header) that is read; longer ones fail. */
#define TAR_EXT_MAX 8192u

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
    char cur_type;        /* type of the member whose data is being read */
    bool hooked;          /* the hooks see this member's data */
    const TarScanHooks *hooks;
    void *hooks_ctx;
    uint8_t ext[TAR_EXT_MAX]; /* content of the current 'L' or 'x' member */
    size_t ext_len;
    char longname[TARSCAN_NAME_MAX + 1]; /* the next member's name from an extension, or "" */
    char name[TARSCAN_NAME_MAX + 1];     /* the current member's name */
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

static int tarscan_fail_code(TarScan *t, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int tarscan_fail_code(TarScan *t, int code, const char *fmt, ...)
{
    va_list ap;
    if (!t->err) {
        t->err = code;
        va_start(ap, fmt);
        vsnprintf(t->errmsg, sizeof(t->errmsg), fmt, ap);
        va_end(ap);
    }
    return t->err;
}

#define tarscan_fail(t, ...) tarscan_fail_code((t), -EBADMSG, __VA_ARGS__)

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

/* A pax extended header: records "LEN key=value\n"; the "path" record names the next member. */
static int tarscan_pax(TarScan *t)
{
    size_t at = 0;
    while (at < t->ext_len) {
        size_t len = 0, i = at;
        while (i < t->ext_len && t->ext[i] >= '0' && t->ext[i] <= '9' && len < TAR_EXT_MAX)
            len = len * 10 + (size_t)(t->ext[i++] - '0');
        if (i >= t->ext_len || t->ext[i] != ' ' || len <= i - at + 1 || at + len > t->ext_len ||
            t->ext[at + len - 1] != '\n')
            return tarscan_fail(t, "tar member %llu: malformed pax header", (unsigned long long)t->members + 1);
        const char *kv = (const char *)t->ext + i + 1;
        size_t kvlen = at + len - 1 - (i + 1);
        if (kvlen >= 5 && memcmp(kv, "path=", 5) == 0) {
            if (kvlen - 5 > TARSCAN_NAME_MAX)
                return tarscan_fail(t, "tar member %llu: a name longer than %u bytes", (unsigned long long)t->members + 1,
                                    TARSCAN_NAME_MAX);
            memcpy(t->longname, kv + 5, kvlen - 5);
            t->longname[kvlen - 5] = '\0';
        }
        at += len;
    }
    return 0;
}

/* The current member's data has all been read. */
static int tarscan_member_end(TarScan *t)
{
    int r = 0;
    if (t->cur_type == 'L') {
        size_t n = strnlen((const char *)t->ext, t->ext_len);
        if (n > TARSCAN_NAME_MAX)
            return tarscan_fail(t, "tar member %llu: a name longer than %u bytes", (unsigned long long)t->members + 1,
                                TARSCAN_NAME_MAX);
        memcpy(t->longname, t->ext, n);
        t->longname[n] = '\0';
    } else if (t->cur_type == 'x') {
        r = tarscan_pax(t);
    } else if (t->hooked && t->hooks->end && (r = t->hooks->end(t->hooks_ctx)) < 0) {
        r = tarscan_fail_code(t, r, "tar member '%s': %s", t->name, strerror(-r));
    }
    t->hooked = false;
    t->cur_type = 0;
    t->ext_len = 0;
    return r;
}

static bool tarscan_regular(char type)
{
    return type == '0' || type == '\0' || type == '7';
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
    t->cur_type = type;
    t->ext_len = 0;
    if (type == 'L' || type == 'x') {
        if (size > TAR_EXT_MAX)
            return tarscan_fail(t, "tar member %llu: an extension header of %llu bytes (at most %u are read)",
                                (unsigned long long)t->members + 1, (unsigned long long)size, TAR_EXT_MAX);
        return size ? 0 : tarscan_member_end(t); /* extension data for the next member */
    }
    if (type == 'K' || type == 'g')
        return 0; /* a long link target, global pax records: nothing this scanner needs */
    t->members++;
    size_t plen = strnlen((const char *)h + 345, 155), nlen = strnlen((const char *)h, 100);
    if (t->longname[0])
        memcpy(t->name, t->longname, strlen(t->longname) + 1);
    else if (memcmp(h + 257, "ustar", 5) == 0 && plen)
        snprintf(t->name, sizeof(t->name), "%.*s/%.*s", (int)plen, (const char *)h + 345, (int)nlen, (const char *)h);
    else
        snprintf(t->name, sizeof(t->name), "%.*s", (int)nlen, (const char *)h);
    t->longname[0] = '\0';
    const char *n = tarscan_strip(t->name);
    memmove(t->name, n, strlen(n) + 1);
    for (size_t i = 0; i < t->n_watched; i++) {
        TarWatched *w = &t->watched[i];
        if (strcmp(w->name, t->name) != 0)
            continue;
        w->seen = true;
        w->truncated = false;
        w->len = 0; /* a later member of the same name replaces an earlier one, as tar -x does */
        if (t->capture_limit && size && tarscan_regular(type)) {
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
    if (t->hooks && tarscan_regular(type)) {
        int r = t->hooks->begin ? t->hooks->begin(t->hooks_ctx, t->name, size) : 0;
        if (r < 0)
            return tarscan_fail_code(t, r, "tar member '%s': %s", t->name, strerror(-r));
        t->hooked = true;
    }
    return size ? 0 : tarscan_member_end(t);
}

/* Content of the current member. */
static int tarscan_data(TarScan *t, const uint8_t *data, size_t n)
{
    TarWatched *w = t->capture;
    if (w && w->len < t->capture_limit) {
        size_t room = t->capture_limit - w->len, c = n < room ? n : room;
        memcpy(w->data + w->len, data, c);
        w->len += c;
    }
    if (t->cur_type == 'L' || t->cur_type == 'x') {
        memcpy(t->ext + t->ext_len, data, n); /* fits: the size was checked against TAR_EXT_MAX */
        t->ext_len += n;
    }
    if (t->hooked && t->hooks->data) {
        int r = t->hooks->data(t->hooks_ctx, data, n);
        if (r < 0)
            return tarscan_fail_code(t, r, "tar member '%s': %s", t->name, strerror(-r));
    }
    t->data_left -= n;
    return t->data_left ? 0 : tarscan_member_end(t);
}

int tarscan_update(TarScan *t, const uint8_t *data, size_t len)
{
    if (t->err)
        return t->err;
    while (len > 0) {
        if (t->data_left) {
            size_t n = t->data_left < len ? (size_t)t->data_left : len;
            int r = tarscan_data(t, data, n);
            if (r < 0)
                return r;
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

void tarscan_set_hooks(TarScan *t, const TarScanHooks *hooks, void *ctx)
{
    t->hooks = hooks;
    t->hooks_ctx = ctx;
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
