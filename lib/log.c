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

/* Redacts "password=..." (key/value form, quoted or not) and "user:pass@" (URI form). */
void log_redact_conninfo(const char *conninfo, char *out, size_t out_size)
{
    size_t o = 0;
    const char *p = conninfo;

    if (out_size == 0)
        return;
#define PUT(c)                                                                                   \
    do {                                                                                         \
        if (o + 1 < out_size)                                                                    \
            out[o++] = (c);                                                                      \
    } while (0)
#define PUTS(s)                                                                                  \
    do {                                                                                         \
        for (const char *q_ = (s); *q_; q_++)                                                    \
            PUT(*q_);                                                                            \
    } while (0)

    if (strncmp(p, "postgresql://", 13) == 0 || strncmp(p, "postgres://", 11) == 0) {
        const char *scheme_end = strstr(p, "://") + 3;
        const char *at = strchr(scheme_end, '@');
        const char *slash = strchr(scheme_end, '/');
        const char *colon = strchr(scheme_end, ':');
        for (; p < scheme_end; p++)
            PUT(*p);
        if (at && (!slash || at < slash) && colon && colon < at) {
            for (; p < colon; p++)
                PUT(*p);
            PUTS(":*****");
            p = at;
        }
        for (; *p; p++) {
            if (strncasecmp(p, "password=", 9) == 0 && (p[-1] == '?' || p[-1] == '&')) {
                PUTS("password=*****");
                while (*p && *p != '&')
                    p++;
                if (!*p)
                    break;
            }
            PUT(*p);
        }
        out[o] = '\0';
        return;
    }

    while (*p) {
        const char *ws = p;
        while (*p == ' ' || *p == '\t' || *p == '\n')
            p++;
        for (; ws < p; ws++)
            PUT(*ws);
        if (!*p)
            break;
        const char *key = p;
        while (*p && *p != '=' && *p != ' ')
            p++;
        size_t klen = (size_t)(p - key);
        for (const char *k = key; k < p; k++)
            PUT(*k);
        while (*p == ' ')
            PUT(*p++);
        if (*p != '=')
            continue;
        PUT(*p++);
        while (*p == ' ')
            PUT(*p++);
        bool secret = klen == 8 && strncasecmp(key, "password", 8) == 0;
        if (*p == '\'') {
            const char *v = p++;
            while (*p && *p != '\'') {
                if (*p == '\\' && p[1])
                    p++;
                p++;
            }
            if (*p)
                p++;
            if (secret)
                PUTS("'*****'");
            else
                for (; v < p; v++)
                    PUT(*v);
        } else {
            const char *v = p;
            while (*p && *p != ' ' && *p != '\t' && *p != '\n')
                p++;
            if (secret)
                PUTS("*****");
            else
                for (; v < p; v++)
                    PUT(*v);
        }
    }
    out[o] = '\0';
#undef PUT
#undef PUTS
}
