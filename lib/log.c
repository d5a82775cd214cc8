/*
 * log: stderr or journald sink for the daemon's records (see log.h).
 */
#include "log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SD_JOURNAL_SUPPRESS_LOCATION
#include <systemd/sd-journal.h>

#include "clock.h"

static int log_max_priority = LOG_INFO;
static bool log_journal;

static const char *const log_level_names[] = {
    [LOG_EMERG] = "emergency", [LOG_ALERT] = "alert",   [LOG_CRIT] = "critical",
    [LOG_ERR] = "error",       [LOG_WARNING] = "warning", [LOG_NOTICE] = "notice",
    [LOG_INFO] = "info",       [LOG_DEBUG] = "debug",
};

static bool log_stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;

    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2)
        return false;
    if (fstat(STDERR_FILENO, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_init(int max_priority, bool force_journal)
{
    log_max_priority = max_priority;
    log_journal = force_journal || log_stderr_is_journal();
}

void log_set_max_priority(int max_priority)
{
    log_max_priority = max_priority;
}

int log_get_max_priority(void)
{
    return log_max_priority;
}

bool log_is_journal(void)
{
    return log_journal;
}

int log_level_parse(const char *name, int *ret_priority)
{
    for (int i = LOG_CRIT; i <= LOG_DEBUG; i++) {
        if (strcasecmp(name, log_level_names[i]) == 0) {
            *ret_priority = i;
            return 0;
        }
    }
    if (strcasecmp(name, "err") == 0 || strcasecmp(name, "crit") == 0 ||
        strcasecmp(name, "warn") == 0) {
        *ret_priority = name[0] == 'e' || name[0] == 'E' ? LOG_ERR
                        : name[0] == 'c' || name[0] == 'C' ? LOG_CRIT
                                                           : LOG_WARNING;
        return 0;
    }
    return -EINVAL;
}

const char *log_level_name(int priority)
{
    if (priority < LOG_EMERG || priority > LOG_DEBUG)
        return "unknown";
    return log_level_names[priority];
}

void log_emit(int priority, const char *component, const LogFields *fields, const char *fmt, ...)
{
    char msg[4096];
    va_list ap;
    int saved_errno = errno;

    if (priority > log_max_priority)
        return;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    if (log_journal) {
        const LogFields none = {0};
        const LogFields *f = fields ? fields : &none;
        sd_journal_send("MESSAGE=%s", msg, "PRIORITY=%i", priority, "SYSLOG_IDENTIFIER=drsupervisord",
                        "COMPONENT=%s", component ? component : "main", "RUN=%s", f->run ? f->run : "",
                        "SCENARIO=%s", f->scenario ? f->scenario : "", "STEP=%s",
                        f->step ? f->step : "", NULL);
    } else {
        int64_t now_ms = clock_wall_ms();
        time_t now_s = (time_t)(now_ms / 1000);
        struct tm tm;
        char when[40];
        char extra[256] = "";

        gmtime_r(&now_s, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        if (fields && (fields->run || fields->scenario || fields->step))
            snprintf(extra, sizeof(extra), " (run=%s scenario=%s step=%s)",
                     fields->run ? fields->run : "-", fields->scenario ? fields->scenario : "-",
                     fields->step ? fields->step : "-");
        fprintf(stderr, "%s.%03dZ %s [%s] %s%s\n", when, (int)(now_ms % 1000),
                log_level_name(priority), component ? component : "main", msg, extra);
    }
    errno = saved_errno;
}

/* ---- conninfo redaction ------------------------------------------------------------------ */

/*
 * The scanner follows libpq's own grammar (conninfo_parse and conninfo_uri_parse in fe-connect.c)
 * so that what libpq takes as one value is what gets masked: in key=value form a value is either
 * single-quoted (a backslash escapes the next character, the value ends at an unescaped quote) or
 * bare (a backslash escapes the next character, the value ends at unescaped white space); in URI
 * form the password is the part of the user info after its first ':' (the user info ends at the
 * first '@' before any '/'), and the query's parameters are split on '&'. Keys that carry a secret
 * are masked whatever their case; a dbname that is itself a conninfo (libpq expands one holding
 * '=' or starting with a URI scheme) is redacted in turn. Output is cut at out_size - 1 bytes.
 */
typedef struct LogOut {
    char *buf;
    size_t size, len;
} LogOut;

static void log_out_putn(LogOut *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n && o->len + 1 < o->size; i++)
        o->buf[o->len++] = s[i];
}

static void log_out_puts(LogOut *o, const char *s)
{
    log_out_putn(o, s, strlen(s));
}

static bool log_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

static bool log_secret_key(const char *k, size_t n)
{
    static const char *const secret[] = {"password", "sslpassword"};
    for (size_t i = 0; i < sizeof(secret) / sizeof(secret[0]); i++)
        if (strlen(secret[i]) == n && strncasecmp(k, secret[i], n) == 0)
            return true;
    return false;
}

static bool log_is_uri(const char *s)
{
    return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

static void log_redact_into(LogOut *o, const char *conninfo, int depth);

/* A dbname value as libpq would expand it: unescaped, then redacted as a conninfo of its own. */
static void log_redact_dbname(LogOut *o, const char *v, size_t n, bool quoted, const char *raw,
                              size_t rawlen, int depth)
{
    char val[1024];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '\\' && i + 1 < n)
            i++;
        if (k + 1 >= sizeof(val))
            break;
        val[k++] = v[i];
    }
    val[k] = '\0';
    if (!(strchr(val, '=') || log_is_uri(val)) || depth > 2 || k + 1 >= sizeof(val)) {
        if (k + 1 >= sizeof(val) && (strchr(val, '=') || log_is_uri(val))) {
            log_out_puts(o, quoted ? "'*****'" : "*****"); /* too long to look inside: hide it */
            return;
        }
        log_out_putn(o, raw, rawlen);
        return;
    }
    char inner[1024];
    LogOut io = {inner, sizeof(inner), 0};
    log_redact_into(&io, val, depth + 1);
    inner[io.len] = '\0';
    log_out_puts(o, "'");
    for (const char *q = inner; *q; q++) {
        if (*q == '\'' || *q == '\\')
            log_out_puts(o, "\\");
        log_out_putn(o, q, 1);
    }
    log_out_puts(o, "'");
}

static void log_redact_uri(LogOut *o, const char *p)
{
    const char *start = strstr(p, "://") + 3;
    log_out_putn(o, p, (size_t)(start - p));
    p = start;
    const char *q = p;
    while (*q && *q != '@' && *q != '/')
        q++;
    if (*q == '@') {
        const char *colon = memchr(p, ':', (size_t)(q - p));
        if (colon) {
            log_out_putn(o, p, (size_t)(colon - p));
            log_out_puts(o, ":*****");
        } else {
            log_out_putn(o, p, (size_t)(q - p));
        }
        p = q;
    }
    const char *query = strchr(p, '?');
    if (!query) {
        log_out_puts(o, p);
        return;
    }
    log_out_putn(o, p, (size_t)(query - p + 1));
    p = query + 1;
    while (*p) {
        const char *end = strchr(p, '&');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        const char *eq = memchr(p, '=', len);
        char key[32];
        size_t kl = 0;
        /* the key as libpq sees it: percent-decoded */
        for (const char *k = p; eq && k < eq && kl + 1 < sizeof(key); k++) {
            unsigned int c;
            if (*k == '%' && k + 2 < eq && sscanf(k + 1, "%2x", &c) == 1) {
                key[kl++] = (char)c;
                k += 2;
            } else {
                key[kl++] = *k;
            }
        }
        if (eq && log_secret_key(key, kl)) {
            log_out_putn(o, p, (size_t)(eq - p + 1));
            log_out_puts(o, "*****");
        } else {
            log_out_putn(o, p, len);
        }
        p += len;
        if (*p == '&')
            log_out_putn(o, p++, 1);
    }
}

static void log_redact_into(LogOut *o, const char *p, int depth)
{
    if (log_is_uri(p)) {
        log_redact_uri(o, p);
        return;
    }
    while (*p) {
        const char *ws = p;
        while (log_is_space(*p))
            p++;
        log_out_putn(o, ws, (size_t)(p - ws));
        if (!*p)
            break;
        const char *key = p;
        while (*p && *p != '=' && !log_is_space(*p))
            p++;
        size_t klen = (size_t)(p - key);
        log_out_putn(o, key, klen);
        ws = p;
        while (log_is_space(*p))
            p++;
        log_out_putn(o, ws, (size_t)(p - ws));
        if (*p != '=') /* libpq refuses this; show the rest as it is (no value follows a key) */
            continue;
        log_out_putn(o, p++, 1);
        ws = p;
        while (log_is_space(*p))
            p++;
        log_out_putn(o, ws, (size_t)(p - ws));
        bool secret = log_secret_key(key, klen);
        bool dbname = klen == 6 && strncmp(key, "dbname", 6) == 0;
        bool quoted = *p == '\'';
        if (quoted)
            p++;
        const char *v = p;
        while (*p && (quoted ? *p != '\'' : !log_is_space(*p))) {
            if (*p == '\\' && p[1])
                p++;
            p++;
        }
        size_t vlen = (size_t)(p - v);
        if (quoted && *p)
            p++;
        const char *raw = v - (quoted ? 1 : 0);
        if (secret)
            log_out_puts(o, quoted ? "'*****'" : "*****");
        else if (dbname)
            log_redact_dbname(o, v, vlen, quoted, raw, (size_t)(p - raw), depth);
        else
            log_out_putn(o, raw, (size_t)(p - raw));
    }
}

void log_redact_conninfo(const char *conninfo, char *out, size_t out_size)
{
    if (out_size == 0)
        return;
    LogOut o = {out, out_size, 0};
    log_redact_into(&o, conninfo ? conninfo : "", 0);
    out[o.len] = '\0';
}
