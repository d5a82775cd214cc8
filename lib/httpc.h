/*
 * httpc: an HTTP client on libcurl's multi-socket API, driven by a libuv loop.
 *
 * Owns the curl multi handle, one uv_timer (curl's timeout) and one uv_poll per socket curl asks
 * us to watch, plus every in-flight transfer. Used for the trading-platform health probe, alert
 * delivery (PagerDuty, Slack, webhooks) and the venue adapter's halt/resume calls. Many transfers
 * run at once; nothing ever blocks the loop (Debian's libcurl resolves names on a thread).
 *
 * Process setup: the daemon calls httpc_global_init() once at start, before any thread exists,
 * and httpc_global_cleanup() once at exit after every client is closed (curl_global_init and
 * curl_global_cleanup are not thread-safe).
 *
 * Fixed policy for every transfer: CURLOPT_NOSIGNAL, no proxy (proxy environment variables such
 * as https_proxy are ignored: CURLOPT_PROXY is ""), no redirects followed, only http:// and
 * https://, TLS peer and host verification on (curl's defaults), no "Expect: 100-continue"
 * (unless the caller sends an Expect header itself). A transfer never outlives its total timeout.
 *
 * Secrets: webhook URLs carry tokens in their path (Slack) and headers carry keys. Nothing here
 * logs, and error messages name only "METHOD scheme://host:port/…" plus curl's reason, with any
 * path, query or userinfo text scrubbed from curl's text. Use httpc_redact_url() to log a URL.
 *
 * Not thread-safe: one client belongs to one loop and is used on that loop's thread only.
 */
#ifndef DRSUP_HTTPC_H
#define DRSUP_HTTPC_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#define HTTPC_DEFAULT_TIMEOUT_MS 30000u          /* total, when HttpRequest.timeout_ms is 0 */
#define HTTPC_DEFAULT_CONNECT_TIMEOUT_MS 10000u  /* when connect_timeout_ms is 0 */
#define HTTPC_DEFAULT_MAX_RESPONSE (1024u * 1024u) /* body bytes, when max_response is 0 */
#define HTTPC_MAX_HEADER_BYTES (64u * 1024u)      /* response header bytes; beyond: DR_ETOOBIG */

typedef struct HttpClient HttpClient;

/* A request. Everything is borrowed only for the duration of httpc_request(), which copies what
 * it keeps (method, URL, headers, body), except a body marked body_borrowed. */
typedef struct HttpRequest {
    const char *method;          /* "GET", "POST", "PUT", "DELETE", "HEAD", ...; NULL means GET */
    const char *url;             /* http:// or https:// only */
    const char *const *headers;  /* n_headers lines "Name: value" (no CR/LF); "Name:" removes
                                  * a header curl would add (e.g. "Content-Type:") */
    size_t n_headers;
    const void *body;            /* body_len bytes sent as the request body (may contain NULs);
                                  * with body == NULL, POST/PUT/PATCH send an empty body */
    size_t body_len;
    int body_borrowed;           /* nonzero: body is NOT copied; the caller keeps those body_len
                                  * bytes valid and unchanged until the done callback (a large
                                  * upload read on the thread pool, sent without a second copy) */
    uint64_t timeout_ms;         /* total time limit; 0 = HTTPC_DEFAULT_TIMEOUT_MS */
    uint64_t connect_timeout_ms; /* 0 = HTTPC_DEFAULT_CONNECT_TIMEOUT_MS (capped at timeout) */
    size_t max_response;         /* response body limit; 0 = HTTPC_DEFAULT_MAX_RESPONSE (not
                                  * applied to HEAD, whose Content-Length announces no body) */
} HttpRequest;

/* A response, valid only during the done callback (copy what you keep). */
typedef struct HttpResponse {
    long status;                 /* HTTP status of the final response; 0 if none arrived */
    const char *body;            /* never NULL; NUL-terminated after body_len bytes */
    size_t body_len;
    const char *const *headers;  /* the final response's header lines "Name: value", no CRLF */
    size_t n_headers;
    double total_seconds;        /* total time of the transfer, as curl measured it */
} HttpResponse;

/*
 * Called exactly once per accepted request, on the loop thread, never from inside
 * httpc_request(). err: 0 when an HTTP response arrived, whatever its status (check
 * resp->status); -ETIMEDOUT when the total or connect timeout expired; DR_ETOOBIG when the body
 * exceeded max_response (or the headers HTTPC_MAX_HEADER_BYTES); DR_ECANCELED after
 * httpc_cancel() or httpc_close(); DR_EHTTP for anything else (refused, DNS, TLS, protocol).
 * resp is never NULL: on failure it holds whatever arrived (status 0 when nothing did; do not
 * trust a partial body). errmsg is never NULL: "" on success, otherwise one line naming the
 * method, scheme://host:port and curl's reason, safe to log. The callback may call
 * httpc_request(), httpc_cancel() and httpc_close() on the same client.
 */
typedef void (*HttpDoneCb)(int err, const HttpResponse *resp, const char *errmsg, void *data);

/* Once per process, before threads: curl_global_init. 0, DR_EHTTP if curl failed to initialise,
 * or -ENOTSUP if this libcurl resolves names synchronously (that would block the loop). */
int httpc_global_init(void);

/* Once per process at exit, after every client is closed: curl_global_cleanup. */
void httpc_global_cleanup(void);

/* A client on loop. NULL on allocation or curl failure. Free with httpc_close(). */
HttpClient *httpc_new(uv_loop_t *loop);

/*
 * Start a transfer; cb(err, resp, errmsg, data) runs once when it ends. On success returns 0
 * and, if ret_id is not NULL, stores the transfer id (never 0) for httpc_cancel(). Fails without
 * calling cb: -EINVAL (missing or non-http(s) URL, method not a token, header containing CR/LF,
 * timeout too large), -ENOMEM, DR_ECANCELED (client is closing), DR_EHTTP (curl refused it).
 */
int httpc_request(HttpClient *c, const HttpRequest *req, HttpDoneCb cb, void *data,
                  uint64_t *ret_id);

/* Abort transfer id. Its callback runs with DR_ECANCELED before this returns 0. -ENOENT if no
 * such transfer is in flight (it already finished, or never existed). */
int httpc_cancel(HttpClient *c, uint64_t id);

/* Value of the first response header called name (case-insensitive), leading and trailing
 * blanks removed; NULL if absent. Points into resp: valid during the callback only. */
const char *httpc_response_header(const HttpResponse *resp, const char *name);

/*
 * Close the client: every transfer in flight gets its callback with DR_ECANCELED before this
 * returns, then every libuv handle is closed; once the last one is closed the client is freed
 * and closed_cb(data) runs (always later, from the loop; closed_cb may be NULL). May be called
 * from a done callback. httpc_close(NULL, ...) is a no-op; calling it twice is a programmer
 * error (the second call is ignored).
 */
void httpc_close(HttpClient *c, void (*closed_cb)(void *data), void *data);

/*
 * Write a loggable form of url into out (n bytes, always NUL-terminated if n > 0): the scheme,
 * host and port are kept, userinfo is dropped, and any path, query or fragment becomes "/…".
 * "https://u:p@hooks.slack.com/services/T/B/x" -> "https://hooks.slack.com/…". If out is too
 * small the text is cut short, never with path characters.
 */
void httpc_redact_url(const char *url, char *out, size_t n);

#endif
