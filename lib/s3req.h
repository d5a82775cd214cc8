/*
 * s3req: S3 requests as data (the off-site repository, issue 16): the URL and the signed headers of
 * one request to an S3-compatible endpoint (path or virtual-host style, Signature Version 4 through
 * lib/sigv4), the CompleteMultipartUpload body, and the few fields the uploader reads out of S3's
 * XML answers (UploadId, an error's Code and Message), plus which failures are worth a retry.
 *
 * Owns nothing but what it returns. Pure: no I/O, no clock (the caller gives the time), no
 * global state; safe on any thread. The secret key is used to sign and never copied into output.
 */
#ifndef DRSUP_S3REQ_H
#define DRSUP_S3REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sigv4.h"

#define S3REQ_MAX_HEADERS 8
#define S3REQ_EMPTY_SHA256 "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

/* Where the bucket is and who signs. Borrowed. */
typedef struct S3Target {
    const char *endpoint;   /* "scheme://host[:port]" (http or https), no path */
    const char *region;     /* "us-east-1" */
    const char *bucket;
    bool virtual_host;      /* https://BUCKET.host/key instead of https://host/BUCKET/key */
    const char *access_key;
    const char *secret_key;
} S3Target;

/* A request ready for lib/httpc: the URL and its header lines ("Name: value"). Owned; free with
 * s3req_free(). */
typedef struct S3Built {
    char *url;
    char *headers[S3REQ_MAX_HEADERS];
    size_t n_headers;
} S3Built;

/* Does endpoint have the form s3req_build needs ("http(s)://host[:port]", no path, no userinfo)?
 * 0, or -EINVAL with the reason in why. */
int s3req_check_endpoint(const char *endpoint, char *why, size_t whylen);

/* "YYYYMMDDTHHMMSSZ" of wall_ms (x-amz-date). */
void s3req_amz_date(int64_t wall_ms, char out[17]);

/*
 * Build method on object `key` (not encoded, without a leading '/'; "" for the bucket itself) with
 * the query parameters (not encoded; value "" for "?uploads"), the body's SHA-256 (hex, or
 * S3REQ_EMPTY_SHA256 for none) and up to 4 extra headers to sign (e.g. x-amz-meta-sha256), at
 * amz_date: the URL, Host, x-amz-date, x-amz-content-sha256, the extra headers and Authorization.
 * 0, or -EINVAL (bad endpoint, key or date), -ENOSPC (too many headers), -ENOMEM; *ret untouched on
 * failure.
 */
int s3req_build(const S3Target *t, const char *method, const char *key, const SigV4Pair *query, size_t n_query,
                const char *payload_sha256, const SigV4Pair *extra, size_t n_extra, const char *amz_date,
                S3Built *ret);
void s3req_free(S3Built *b);

/* The CompleteMultipartUpload body for parts 1..n with their ETags (as S3 returned them, quotes
 * included; XML-escaped here). A new string, NULL on OOM or n == 0. */
char *s3req_complete_body(const char *const *etags, size_t n);

/*
 * The text of the first <tag>...</tag> of an XML answer (entities &quot; &amp; &lt; &gt; &apos;
 * decoded) into out. 0, -ENOENT (no such element), -ENOSPC (longer than n - 1).
 */
int s3req_xml_text(const char *body, size_t len, const char *tag, char *out, size_t n);

/* Whether an S3 answer is an error document (<Error> at its top: S3 may answer 200 to a
 * CompleteMultipartUpload and still fail it). */
bool s3req_is_error(const char *body, size_t len);

/* Whether a failed request is worth retrying as it is: no answer (status 0), 408, 429, 5xx, or
 * S3's RequestTimeout, SlowDown, InternalError, OperationAborted. A 403 (signature, credentials)
 * or 404 is not. code may be NULL or "". */
bool s3req_retryable(long status, const char *code);

#endif
