/*
 * bytebuf: a growable byte buffer (see bytebuf.h).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "bytebuf.h"

int bytebuf_append(ByteBuf *b, const void *data, size_t len)
{
    if (len > SIZE_MAX - b->len)
        return -ENOMEM;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 65536;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *p = realloc(b->p, cap);
        if (!p)
            return -ENOMEM;
        b->p = p;
        b->cap = cap;
    }
    if (len)
        memcpy(b->p + b->len, data, len);
    b->len += len;
    return 0;
}

int bytebuf_sink(void *ctx, const uint8_t *data, size_t len)
{
    return bytebuf_append(ctx, data, len);
}
