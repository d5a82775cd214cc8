/*
 * httpc: libcurl multi-socket on libuv (see httpc.h).
 *
 * The pattern is curl's multi-uv example with the fixes REFERENCE.md §6 lists: one uv_poll per
 * socket curl tells us about (CURLMOPT_SOCKETFUNCTION), one uv_timer for curl's timeout
 * (CURLMOPT_TIMERFUNCTION, which only arms the timer and never calls curl back), a poll error is
 * passed on as CURL_CSELECT_ERR, and every curl_multi_socket_action() is followed by draining
 * curl_multi_info_read(). User callbacks run only from that drain, from httpc_cancel() or from
 * httpc_close(), never inside a curl callback, so they may re-enter the client freely. The
 * client struct itself is freed only when its last libuv handle has been closed.
 */
#include "httpc.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>

#include "err.h"

#define HTTPC_ELLIPSIS "/\xe2\x80\xa6" /* "/…" */
#define HTTPC_TARGET_MAX 320
#define HTTPC_ERRMSG_MAX (HTTPC_TARGET_MAX + CURL_ERROR_SIZE + 64)

typedef struct HttpSocket {
    uv_poll_t poll;
    curl_socket_t fd;
    HttpClient *client;
    struct HttpSocket *prev, *next;
} HttpSocket;

typedef struct HttpTransfer {
    struct HttpTransfer *prev, *next;
    HttpClient *client;
    uint64_t id;
    CURL *easy;
    struct curl_slist *req_headers;
    void *req_body;
    char *url; /* kept only to scrub it out of curl's error text */
    HttpDoneCb cb;
    void *data;

    char *body;
    size_t body_len, body_cap, max_response;
    char **hdr;
    size_t n_hdr, hdr_cap, hdr_bytes;

    bool body_too_big, hdr_too_big, oom;
    int poll_err; /* uv error: a socket of this transfer could not be watched */
    char target[HTTPC_TARGET_MAX];  /* "METHOD scheme://host:port/…" */
    char errbuf[CURL_ERROR_SIZE];
} HttpTransfer;

struct HttpClient {
    uv_loop_t *loop;
    CURLM *multi;
    uv_timer_t timer;
    HttpTransfer *transfers;
    HttpSocket *sockets;
    uint64_t next_id;
    unsigned open_handles;
    bool closing;        /* httpc_close called */
    bool dispatching;    /* inside socket_action + drain: the multi must stay */
    bool multi_cleaning; /* inside curl_multi_cleanup */
    bool poll_failed;    /* some transfer has poll_err set */
    void (*closed_cb)(void *data);
    void *closed_data;
};

int httpc_global_init(void)
{
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        return DR_EHTTP;
    const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
    if (!v || !(v->features & CURL_VERSION_ASYNCHDNS)) {
        curl_global_cleanup();
        return -ENOTSUP;
    }
    return 0;
}

void httpc_global_cleanup(void)
{
    curl_global_cleanup();
}

/* ---- URL redaction and error text ------------------------------------------------------- */

static void append_cut(char *out, size_t n, size_t *used, const char *s, size_t len)
{
    size_t room = n - 1 - *used;
    if (len > room)
        len = room;
    memcpy(out + *used, s, len);
    *used += len;
    out[*used] = '\0';
}

/* Splits url into scheme ("http://", possibly empty), userinfo (without '@'), host[:port] and
 * the rest (path, query, fragment). */
static void url_split(const char *url, size_t *scheme_len, const char **user, size_t *user_len,
                      const char **host, size_t *host_len, const char **rest)
{
    const char *sep = strstr(url, "://");
    *scheme_len = 0;
    if (sep && strcspn(url, "/?#@") >= (size_t)(sep - url))
        *scheme_len = (size_t)(sep - url) + 3;
    const char *auth = url + *scheme_len;
    size_t auth_len = strcspn(auth, "/?#");
    *user = auth;
    *user_len = 0;
    *host = auth;
    for (size_t i = auth_len; i > 0; i--) {
        if (auth[i - 1] == '@') {
            *user_len = i - 1;
            *host = auth + i;
            break;
        }
    }
    *host_len = auth_len - (size_t)(*host - auth);
    *rest = auth + auth_len;
}

void httpc_redact_url(const char *url, char *out, size_t n)
{
    if (!out || n == 0)
        return;
    out[0] = '\0';
    if (!url)
        return;
    size_t scheme_len, user_len, host_len, used = 0;
    const char *user, *host, *rest;
    url_split(url, &scheme_len, &user, &user_len, &host, &host_len, &rest);
    append_cut(out, n, &used, url, scheme_len);
    append_cut(out, n, &used, host, host_len);
    if (*rest && used + strlen(HTTPC_ELLIPSIS) < n)
        append_cut(out, n, &used, HTTPC_ELLIPSIS, strlen(HTTPC_ELLIPSIS));
}

/* Replaces every occurrence of needle[0..nlen) in s (size cap) with "…". */
static void scrub(char *s, size_t cap, const char *needle, size_t nlen)
{
    char tmp[HTTPC_ERRMSG_MAX];
    size_t used = 0;
    const char *p = s;

    if (nlen == 0 || cap > sizeof(tmp))
        return;
    tmp[0] = '\0';
    for (;;) {
        const char *hit = memmem(p, strlen(p), needle, nlen);
        if (!hit) {
            append_cut(tmp, cap, &used, p, strlen(p));
            break;
        }
        append_cut(tmp, cap, &used, p, (size_t)(hit - p));
        append_cut(tmp, cap, &used, HTTPC_ELLIPSIS + 1, strlen(HTTPC_ELLIPSIS) - 1);
        p = hit + nlen;
    }
    memcpy(s, tmp, used + 1);
}

/* Removes from msg anything of url that may be secret: userinfo, the whole path and query, and
 * every path/query segment of 6 or more characters (a token quoted alone). */
static void scrub_url_secrets(char *msg, size_t cap, const char *url)
{
    size_t scheme_len, user_len, host_len;
    const char *user, *host, *rest;

    url_split(url, &scheme_len, &user, &user_len, &host, &host_len, &rest);
    if (user_len >= 4)
        scrub(msg, cap, user, user_len);
    for (size_t i = 0; i < user_len;) {
        size_t len = strcspn(user + i, ":@");
        if (len > user_len - i)
            len = user_len - i;
        if (len >= 4)
            scrub(msg, cap, user + i, len);
        i += len + 1;
    }
    if (strlen(rest) > 1)
        scrub(msg, cap, rest, strlen(rest));
    for (const char *p = rest; *p;) {
        size_t len = strcspn(p, "/?&=#;");
        if (len >= 6)
            scrub(msg, cap, p, len);
        p += len;
        if (*p)
            p++;
    }
}

/* ---- transfers ---------------------------------------------------------------------------- */

static void transfer_free(HttpTransfer *t)
{
    if (!t)
        return;
    if (t->easy)
        curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->req_headers);
    free(t->req_body);
    free(t->url);
    free(t->body);
    for (size_t i = 0; i < t->n_hdr; i++)
        free(t->hdr[i]);
    free(t->hdr);
    free(t);
}

static void transfer_unlink(HttpTransfer *t)
{
    HttpClient *c = t->client;
    if (t->prev)
        t->prev->next = t->next;
    else
        c->transfers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    t->prev = t->next = NULL;
}

/* Ends t: takes it out of the client and the multi, runs its callback, frees it. */
static void transfer_finish(HttpTransfer *t, int err, const char *errmsg)
{
    HttpClient *c = t->client;
    HttpResponse resp = {0};
    curl_off_t us = 0;

    transfer_unlink(t);
    if (c->multi)
        curl_multi_remove_handle(c->multi, t->easy);
    if (curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &resp.status) != CURLE_OK)
        resp.status = 0;
    if (curl_easy_getinfo(t->easy, CURLINFO_TOTAL_TIME_T, &us) == CURLE_OK)
        resp.total_seconds = (double)us / 1e6;
    resp.body = t->body ? t->body : "";
    resp.body_len = t->body_len;
    resp.headers = (const char *const *)t->hdr;
    resp.n_headers = t->n_hdr;
    t->cb(err, &resp, err ? errmsg : "", t->data);
    transfer_free(t);
}

static void transfer_fail(HttpTransfer *t, int err, const char *why)
{
    char msg[HTTPC_ERRMSG_MAX];
    snprintf(msg, sizeof(msg), "%s: %s", t->target, why);
    transfer_finish(t, err, msg);
}

/* Ends t with curl's verdict rc. */
static void transfer_done(HttpTransfer *t, CURLcode rc)
{
    char why[CURL_ERROR_SIZE + 64];
    char msg[HTTPC_ERRMSG_MAX];
    int err;

    if (rc == CURLE_OK) {
        transfer_finish(t, 0, "");
        return;
    }
    if (t->body_too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(why, sizeof(why), "response body larger than %zu bytes", t->max_response);
        transfer_fail(t, DR_ETOOBIG, why);
        return;
    }
    if (t->hdr_too_big) {
        snprintf(why, sizeof(why), "response headers larger than %u bytes",
                 HTTPC_MAX_HEADER_BYTES);
        transfer_fail(t, DR_ETOOBIG, why);
        return;
    }
    if (t->oom) {
        transfer_fail(t, -ENOMEM, "out of memory for the response");
        return;
    }
    err = rc == CURLE_OPERATION_TIMEDOUT ? -ETIMEDOUT : DR_EHTTP;
    snprintf(msg, sizeof(msg), "%s: %s", t->target,
             t->errbuf[0] ? t->errbuf : curl_easy_strerror(rc));
    scrub_url_secrets(msg + strlen(t->target), sizeof(msg) - strlen(t->target), t->url);
    transfer_finish(t, err, msg);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    HttpTransfer *t = userdata;
    size_t n = size * nmemb;

    if (n > t->max_response - t->body_len) {
        t->body_too_big = true;
        return 0;
    }
    if (t->body_len + n + 1 > t->body_cap) {
        size_t cap = t->body_cap ? t->body_cap : 4096;
        while (cap < t->body_len + n + 1)
            cap *= 2;
        if (cap > t->max_response + 1)
            cap = t->max_response + 1;
        char *nb = realloc(t->body, cap);
        if (!nb) {
            t->oom = true;
            return 0;
        }
        t->body = nb;
        t->body_cap = cap;
    }
    memcpy(t->body + t->body_len, ptr, n);
    t->body_len += n;
    t->body[t->body_len] = '\0';
    return n;
}

static void headers_clear(HttpTransfer *t)
{
    for (size_t i = 0; i < t->n_hdr; i++)
        free(t->hdr[i]);
    t->n_hdr = 0;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *userdata)
{
    HttpTransfer *t = userdata;
    size_t n = size * nitems, len = n;

    t->hdr_bytes += n;
    if (t->hdr_bytes > HTTPC_MAX_HEADER_BYTES) {
        t->hdr_too_big = true;
        return 0;
    }
    if (n >= 5 && memcmp(buf, "HTTP/", 5) == 0) {
        headers_clear(t); /* a new response (after 1xx): keep only the final one's headers */
        return n;
    }
    while (len > 0 && isspace((unsigned char)buf[len - 1]))
        len--;
    if (len == 0 || buf[0] == ' ' || buf[0] == '\t')
        return n; /* end of headers, or obsolete line folding: ignored */
    if (t->n_hdr == t->hdr_cap) {
        size_t cap = t->hdr_cap ? t->hdr_cap * 2 : 16;
        char **nh = realloc(t->hdr, cap * sizeof(*nh));
        if (!nh) {
            t->oom = true;
            return 0;
        }
        t->hdr = nh;
        t->hdr_cap = cap;
    }
    char *line = strndup(buf, len);
    if (!line) {
        t->oom = true;
        return 0;
    }
    t->hdr[t->n_hdr++] = line;
    return n;
}

const char *httpc_response_header(const HttpResponse *resp, const char *name)
{
    if (!resp || !name)
        return NULL;
    size_t nlen = strlen(name);
    for (size_t i = 0; i < resp->n_headers; i++) {
        const char *line = resp->headers[i];
        if (strncasecmp(line, name, nlen) == 0 && line[nlen] == ':') {
            const char *v = line + nlen + 1;
            while (*v == ' ' || *v == '\t')
                v++;
            return v;
        }
    }
    return NULL;
}

/* ---- libuv <-> curl glue ------------------------------------------------------------------ */

static void client_free_if_closed(HttpClient *c)
{
    if (c->closing && c->open_handles == 0) {
        void (*cb)(void *) = c->closed_cb;
        void *data = c->closed_data;
        free(c);
        if (cb)
            cb(data);
    }
}

static void on_timer_closed(uv_handle_t *h)
{
    HttpClient *c = h->data;
    c->open_handles--;
    client_free_if_closed(c);
}

static void on_poll_closed(uv_handle_t *h)
{
    HttpSocket *s = h->data;
    HttpClient *c = s->client;
    free(s);
    c->open_handles--;
    client_free_if_closed(c);
}

static void socket_close(HttpSocket *s)
{
    HttpClient *c = s->client;
    if (s->prev)
        s->prev->next = s->next;
    else
        c->sockets = s->next;
    if (s->next)
        s->next->prev = s->prev;
    uv_close((uv_handle_t *)&s->poll, on_poll_closed);
}

/* After httpc_close, once no dispatch is running: stop watching sockets before curl closes
 * them, let curl close its connections, then close every handle we own. */
static void client_finish_close(HttpClient *c)
{
    if (!c->multi)
        return;
    for (HttpSocket *s = c->sockets; s; s = s->next)
        uv_poll_stop(&s->poll);
    c->multi_cleaning = true;
    curl_multi_cleanup(c->multi);
    c->multi = NULL;
    c->multi_cleaning = false;
    while (c->sockets)
        socket_close(c->sockets);
    uv_close((uv_handle_t *)&c->timer, on_timer_closed);
}

/* Completes every finished transfer, and every transfer whose socket could not be watched. */
static void client_drain(HttpClient *c)
{
    CURLMsg *msg;
    int left;

    while (!c->closing && (msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        CURLcode rc = msg->data.result;
        HttpTransfer *t = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        if (t)
            transfer_done(t, rc);
    }
    while (!c->closing && c->poll_failed) {
        HttpTransfer *t = c->transfers;
        while (t && t->poll_err == 0)
            t = t->next;
        if (!t) {
            c->poll_failed = false;
            break;
        }
        char why[128];
        snprintf(why, sizeof(why), "cannot watch socket: %s", uv_strerror(t->poll_err));
        transfer_fail(t, DR_EHTTP, why);
    }
}

static void client_socket_action(HttpClient *c, curl_socket_t fd, int flags)
{
    int running = 0;

    c->dispatching = true;
    (void)curl_multi_socket_action(c->multi, fd, flags, &running);
    client_drain(c);
    c->dispatching = false;
    if (c->closing)
        client_finish_close(c);
}

static void on_poll(uv_poll_t *h, int status, int events)
{
    HttpSocket *s = h->data;
    int flags = 0;

    if (status < 0)
        flags |= CURL_CSELECT_ERR;
    if (events & UV_READABLE)
        flags |= CURL_CSELECT_IN;
    if (events & UV_WRITABLE)
        flags |= CURL_CSELECT_OUT;
    client_socket_action(s->client, s->fd, flags);
}

static void on_timer(uv_timer_t *h)
{
    client_socket_action(h->data, CURL_SOCKET_TIMEOUT, 0);
}

static void mark_poll_failure(HttpClient *c, CURL *easy, int uverr)
{
    HttpTransfer *t = NULL;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&t);
    if (t && t->poll_err == 0) {
        t->poll_err = uverr;
        c->poll_failed = true;
    }
}

/* CURLMOPT_SOCKETFUNCTION: watch fd for what curl asks, or stop watching it. */
static int on_curl_socket(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp)
{
    HttpClient *c = userp;
    HttpSocket *s = socketp;
    int events = 0, rc;

    if (what == CURL_POLL_REMOVE) {
        if (s) {
            socket_close(s);
            if (!c->multi_cleaning)
                curl_multi_assign(c->multi, fd, NULL);
        }
        return 0;
    }
    if (c->multi_cleaning)
        return 0;
    if (what & CURL_POLL_IN)
        events |= UV_READABLE;
    if (what & CURL_POLL_OUT)
        events |= UV_WRITABLE;
    if (!s) {
        s = calloc(1, sizeof(*s));
        if (!s) {
            mark_poll_failure(c, easy, UV_ENOMEM);
            return 0;
        }
        rc = uv_poll_init_socket(c->loop, &s->poll, fd);
        if (rc < 0) { /* e.g. EEXIST: fd already watched by another handle of this loop */
            free(s);
            mark_poll_failure(c, easy, rc);
            return 0;
        }
        s->fd = fd;
        s->client = c;
        s->poll.data = s;
        s->next = c->sockets;
        if (c->sockets)
            c->sockets->prev = s;
        c->sockets = s;
        c->open_handles++;
        curl_multi_assign(c->multi, fd, s);
    }
    rc = uv_poll_start(&s->poll, events, on_poll);
    if (rc < 0)
        mark_poll_failure(c, easy, rc);
    return 0;
}

/* CURLMOPT_TIMERFUNCTION: only (re)arms or stops our one timer; never calls into curl. */
static int on_curl_timer(CURLM *multi, long timeout_ms, void *userp)
{
    HttpClient *c = userp;
    (void)multi;
    if (timeout_ms < 0)
        uv_timer_stop(&c->timer);
    else
        uv_timer_start(&c->timer, on_timer, timeout_ms ? (uint64_t)timeout_ms : 1, 0);
    return 0;
}

HttpClient *httpc_new(uv_loop_t *loop)
{
    HttpClient *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->loop = loop;
    c->next_id = 1;
    c->multi = curl_multi_init();
    if (!c->multi || uv_timer_init(loop, &c->timer) < 0) {
        if (c->multi)
            curl_multi_cleanup(c->multi);
        free(c);
        return NULL;
    }
    c->timer.data = c;
    c->open_handles = 1;
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_curl_socket);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_curl_timer);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    return c;
}

/* ---- requests ------------------------------------------------------------------------------ */

static bool method_is_token(const char *m)
{
    size_t n = strlen(m);
    if (n == 0 || n > 32)
        return false;
    for (; *m; m++)
        if (!isalnum((unsigned char)*m) && !strchr("!#$%&'*+-.^_`|~", *m))
            return false;
    return true;
}

static bool url_is_http(const char *url)
{
    return strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0;
}

static int request_validate(const HttpRequest *req, const char *method)
{
    if (!req->url || !url_is_http(req->url) || strpbrk(req->url, "\r\n \t"))
        return -EINVAL;
    if (!method_is_token(method))
        return -EINVAL;
    if (req->n_headers && !req->headers)
        return -EINVAL;
    for (size_t i = 0; i < req->n_headers; i++)
        if (!req->headers[i] || strpbrk(req->headers[i], "\r\n") || !strchr(req->headers[i], ':'))
            return -EINVAL;
    if (req->timeout_ms > LONG_MAX || req->connect_timeout_ms > LONG_MAX)
        return -EINVAL;
    if (req->max_response > SIZE_MAX / 2 || req->body_len > (size_t)INT64_MAX)
        return -EINVAL;
    return 0;
}

/* Builds the header list (caller's lines plus "Expect:" unless they set one). */
static int request_headers(HttpTransfer *t, const HttpRequest *req)
{
    bool have_expect = false;
    for (size_t i = 0; i < req->n_headers; i++) {
        struct curl_slist *l = curl_slist_append(t->req_headers, req->headers[i]);
        if (!l)
            return -ENOMEM;
        t->req_headers = l;
        if (strncasecmp(req->headers[i], "Expect:", 7) == 0)
            have_expect = true;
    }
    if (!have_expect) {
        struct curl_slist *l = curl_slist_append(t->req_headers, "Expect:");
        if (!l)
            return -ENOMEM;
        t->req_headers = l;
    }
    return 0;
}

static int request_setup(HttpTransfer *t, const HttpRequest *req, const char *method)
{
    CURL *e = t->easy;
    long timeout = (long)(req->timeout_ms ? req->timeout_ms : HTTPC_DEFAULT_TIMEOUT_MS);
    long connect = (long)(req->connect_timeout_ms ? req->connect_timeout_ms
                                                  : HTTPC_DEFAULT_CONNECT_TIMEOUT_MS);
    bool sends_body = req->body || strcasecmp(method, "POST") == 0 ||
                      strcasecmp(method, "PUT") == 0 || strcasecmp(method, "PATCH") == 0;
    int bad = 0;

    if (connect > timeout)
        connect = timeout;
#define SET(opt, val) bad |= curl_easy_setopt(e, opt, val) != CURLE_OK
    SET(CURLOPT_URL, req->url);
    SET(CURLOPT_PRIVATE, (void *)t);
    SET(CURLOPT_ERRORBUFFER, t->errbuf);
    SET(CURLOPT_NOSIGNAL, 1L);
    SET(CURLOPT_PROXY, "");
    SET(CURLOPT_FOLLOWLOCATION, 0L);
    SET(CURLOPT_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
    SET(CURLOPT_TIMEOUT_MS, timeout);
    SET(CURLOPT_CONNECTTIMEOUT_MS, connect);
    /* Not for HEAD: curl would refuse the Content-Length of a large object that never comes. */
    if (strcasecmp(method, "HEAD") != 0)
        SET(CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)t->max_response);
    SET(CURLOPT_WRITEFUNCTION, on_body);
    SET(CURLOPT_WRITEDATA, (void *)t);
    SET(CURLOPT_HEADERFUNCTION, on_header);
    SET(CURLOPT_HEADERDATA, (void *)t);
    /* Without this, abandoning a transfer (cancel, timeout) during a DNS lookup makes curl
     * join the resolver thread on the loop (Curl_resolver_kill); with it the thread is
     * detached and frees its own state when getaddrinfo returns. */
    SET(CURLOPT_QUICK_EXIT, 1L);
    SET(CURLOPT_HTTPHEADER, t->req_headers);
    if (strcasecmp(method, "HEAD") == 0) {
        SET(CURLOPT_NOBODY, 1L);
    } else if (sends_body) {
        const void *body = req->body;
        if (!req->body_borrowed || !req->body || !req->body_len) {
            t->req_body = malloc(req->body_len ? req->body_len : 1);
            if (!t->req_body)
                return -ENOMEM;
            if (req->body_len)
                memcpy(t->req_body, req->body, req->body_len);
            body = t->req_body;
        }
        SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
        SET(CURLOPT_POSTFIELDS, body);
        if (strcmp(method, "POST") != 0)
            SET(CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") == 0) {
        SET(CURLOPT_HTTPGET, 1L);
    } else {
        SET(CURLOPT_CUSTOMREQUEST, method);
    }
#undef SET
    return bad ? DR_EHTTP : 0;
}

int httpc_request(HttpClient *c, const HttpRequest *req, HttpDoneCb cb, void *data,
                  uint64_t *ret_id)
{
    char redacted[HTTPC_TARGET_MAX - 40];
    const char *method;
    HttpTransfer *t;
    int r;

    if (!c || !req || !cb)
        return -EINVAL;
    if (c->closing)
        return DR_ECANCELED;
    method = req->method ? req->method : "GET";
    r = request_validate(req, method);
    if (r < 0)
        return r;

    t = calloc(1, sizeof(*t));
    if (!t)
        return -ENOMEM;
    t->client = c;
    t->cb = cb;
    t->data = data;
    t->max_response = req->max_response ? req->max_response : HTTPC_DEFAULT_MAX_RESPONSE;
    httpc_redact_url(req->url, redacted, sizeof(redacted));
    snprintf(t->target, sizeof(t->target), "%s %s", method, redacted);
    t->url = strdup(req->url);
    t->easy = curl_easy_init();
    if (!t->url || !t->easy) {
        transfer_free(t);
        return -ENOMEM;
    }
    r = request_headers(t, req);
    if (r == 0)
        r = request_setup(t, req, method);
    if (r == 0 && curl_multi_add_handle(c->multi, t->easy) != CURLM_OK)
        r = DR_EHTTP;
    if (r < 0) {
        transfer_free(t);
        return r;
    }
    /* curl_multi_add_handle armed the timer; the transfer starts from there, so callbacks
     * never run inside this function. */
    t->id = c->next_id++;
    t->next = c->transfers;
    if (c->transfers)
        c->transfers->prev = t;
    c->transfers = t;
    if (ret_id)
        *ret_id = t->id;
    return 0;
}

int httpc_cancel(HttpClient *c, uint64_t id)
{
    if (!c)
        return -EINVAL;
    for (HttpTransfer *t = c->transfers; t; t = t->next) {
        if (t->id == id) {
            transfer_fail(t, DR_ECANCELED, "cancelled");
            return 0;
        }
    }
    return -ENOENT;
}

void httpc_close(HttpClient *c, void (*closed_cb)(void *data), void *data)
{
    if (!c || c->closing)
        return;
    c->closing = true;
    c->closed_cb = closed_cb;
    c->closed_data = data;
    while (c->transfers)
        transfer_fail(c->transfers, DR_ECANCELED, "cancelled: client closing");
    if (!c->dispatching)
        client_finish_close(c);
}
