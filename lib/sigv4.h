/*
 * sigv4: AWS Signature Version 4 for S3-compatible requests (the off-site repository, issue 16).
 *
 * Owns the canonical request (method, URI-encoded path, sorted canonical query string, lowercase
 * trimmed sorted headers, the signed header list, the payload's SHA-256), the string to sign, the
 * signing key derivation (HMAC-SHA-256 chain over date, region, service, "aws4_request") and the
 * Authorization header. Pure: no I/O, no clock (the caller gives the time), no global state.
 * Written from AWS's published specification; unit-tested against its documented examples and
 * against an independent signer (botocore) in the tests.
 */
#ifndef DRSUP_SIGV4_H
#define DRSUP_SIGV4_H

#include <stddef.h>

typedef struct SigV4Pair {
    const char *name;
    const char *value;
} SigV4Pair;

typedef struct SigV4Request {
    const char *method;          /* "GET", "PUT", ... */
    const char *path;            /* the object's path, NOT encoded ("/bucket/a b.txt"); "/" at least */
    const SigV4Pair *query;      /* query parameters, NOT encoded (value "" for "?uploads") */
    size_t n_query;
    const SigV4Pair *headers;    /* every header to sign; must include host and x-amz-date */
    size_t n_headers;
    const char *payload_sha256;  /* 64 hex digits, or "UNSIGNED-PAYLOAD" */
} SigV4Request;

typedef struct SigV4Key {
    const char *access_key;
    const char *secret_key;
    const char *region;          /* "us-east-1" */
    const char *service;         /* "s3" */
} SigV4Key;

/* The hex SHA-256 of len bytes (65 bytes out). */
void sigv4_sha256_hex(const void *data, size_t len, char out[65]);

/*
 * Sign req at amz_date ("YYYYMMDDTHHMMSSZ", the x-amz-date header's value). Writes the
 * Authorization header's value to auth (e.g. "AWS4-HMAC-SHA256 Credential=AK/20130524/us-east-1/
 * s3/aws4_request, SignedHeaders=host;x-amz-date, Signature=...") and, when canonical is not NULL,
 * the canonical request (for diagnostics: what S3 answers with SignatureDoesNotMatch). 0, or
 * -EINVAL (a missing field, a bad date), -ENOSPC (an output too small), -ENOMEM.
 */
int sigv4_sign(const SigV4Request *req, const SigV4Key *key, const char *amz_date, char *auth, size_t auth_len,
               char *canonical, size_t canonical_len);

/* RFC 3986 percent-encoding as SigV4 wants it: unreserved characters kept, '/' kept when
 * keep_slash. A new string (the caller frees), NULL on OOM. */
char *sigv4_uri_encode(const char *s, int keep_slash);

#endif
