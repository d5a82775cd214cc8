/*
 * listenaddr: the text form of an address to listen on: "HOST:PORT" (a numeric IPv4 address),
 * "[V6]:PORT" (a numeric IPv6 address) or "unix:/PATH". Pure parsing, no names resolved.
 */
#ifndef DRSUP_LISTENADDR_H
#define DRSUP_LISTENADDR_H

#include <stddef.h>

typedef enum { LISTENADDR_TCP4, LISTENADDR_TCP6, LISTENADDR_UNIX } ListenAddrKind;

typedef struct ListenAddr {
    ListenAddrKind kind;
    char host[64];  /* TCP: the numeric address, without brackets */
    int port;       /* TCP */
    char path[108]; /* UNIX */
} ListenAddr;

/* 0, or -EINVAL with `why` saying what is wrong. */
int listenaddr_parse(const char *text, ListenAddr *ret, char *why, size_t whylen);

#endif
