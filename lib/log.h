/*
 * log: the one logging facade.
 *
 * Owns where log records go. Under systemd (JOURNAL_STREAM names our stderr) each record is a
 * structured journald entry with PRIORITY=, COMPONENT= and, when set, RUN=, SCENARIO=, STEP=;
 * otherwise a readable line on stderr: "2026-11-23T10:00:00.123Z warning [probe.db] message".
 * Library modules do not log (they return codes); the daemon logs once where an error is handled.
 * Never pass secrets: conninfo strings go through log_redact_conninfo() first.
 * Not thread-safe for configuration changes; log_emit itself may be called from pool threads.
 */
#ifndef DRSUP_LOG_H
#define DRSUP_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <syslog.h>

typedef struct LogFields {
    const char *run;      /* scenario run id, or NULL */
    const char *scenario; /* scenario name, or NULL */
    const char *step;     /* step name, or NULL */
} LogFields;

/* Choose the sink: journald when JOURNAL_STREAM matches stderr (or force_journal), else stderr. */
void log_init(int max_priority, bool force_journal);
void log_set_max_priority(int max_priority);
int log_get_max_priority(void);
bool log_is_journal(void);

/* "debug", "info", "notice", "warning", "error", "critical" -> LOG_*; 0 or -EINVAL. */
int log_level_parse(const char *name, int *ret_priority);
const char *log_level_name(int priority);

void log_emit(int priority, const char *component, const LogFields *fields, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#define log_debug(comp, ...)   log_emit(LOG_DEBUG, comp, NULL, __VA_ARGS__)
#define log_info(comp, ...)    log_emit(LOG_INFO, comp, NULL, __VA_ARGS__)
#define log_notice(comp, ...)  log_emit(LOG_NOTICE, comp, NULL, __VA_ARGS__)
#define log_warning(comp, ...) log_emit(LOG_WARNING, comp, NULL, __VA_ARGS__)
#define log_error(comp, ...)   log_emit(LOG_ERR, comp, NULL, __VA_ARGS__)
#define log_crit(comp, ...)    log_emit(LOG_CRIT, comp, NULL, __VA_ARGS__)

/*
 * Copy a libpq conninfo (key=value or URI form) with every secret replaced by "*****": the values
 * of password and sslpassword (any case; quoted, bare or backslash-escaped, scanned as libpq does),
 * the password of a URI's user info and of its query, and the same inside a dbname that is itself
 * a conninfo. Never fails; the copy is cut to out_size - 1 bytes.
 */
void log_redact_conninfo(const char *conninfo, char *out, size_t out_size);

#endif
