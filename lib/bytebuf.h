/*
 * bytebuf: a growable byte buffer, and a sink (BcfSinkFn/CodecSinkFn shape) that appends to one.
 * Owns nothing but the bytes; the caller frees b->p. No I/O.
 */
#ifndef DRSUP_BYTEBUF_H
#define DRSUP_BYTEBUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct ByteBuf {
    uint8_t *p;
    size_t len, cap;
} ByteBuf;

/* Append len bytes (doubling the capacity from 64 KiB as needed). 0 or -ENOMEM. */
int bytebuf_append(ByteBuf *b, const void *data, size_t len);
/* The same as a sink: ctx is the ByteBuf. */
int bytebuf_sink(void *ctx, const uint8_t *data, size_t len);

#endif
