/*
 * err: the project's error catalogue.
 *
 * Owns the error codes every fallible function returns: 0 for success, a negative errno
 * (-ENOENT, -ETIMEDOUT, ...) for system errors, or a negative DR_E* code from the catalogue below
 * for errors that have no good errno. Codes are stable: their names travel in control-socket
 * replies ("code":"config_invalid") and scripts may match on them. Library code returns codes and
 * does not log; the caller that handles the error logs it once.
 */
#ifndef DRSUP_ERR_H
#define DRSUP_ERR_H

enum {
    DR_ERR_FIRST = -100000,
    DR_ECONFIG = DR_ERR_FIRST, /* configuration is invalid */
    DR_EPROTO,                 /* malformed control request or reply */
    DR_ETOOBIG,                /* request or input over its size limit */
    DR_EUNKNOWNCMD,            /* control command not known */
    DR_EPERM,                  /* caller lacks the role for a command */
    DR_EBADARG,                /* a command argument is missing or wrong */
    DR_EDB,                    /* database error (message carries libpq's text) */
    DR_EHTTP,                  /* HTTP transfer failed (network, TLS, unexpected status) */
    DR_ECHILD,                 /* a child process failed */
    DR_EBUSY,                  /* something of this kind is already running */
    DR_ECORRUPT,               /* data failed an integrity check */
    DR_EKEY,                   /* key missing, unreadable, or too open */
    DR_ESTATE,                 /* operation not allowed in the current state */
    DR_ECANCELED,              /* operation cancelled (shutdown, abort) */
    DR_EINTERNAL,              /* a bug: should not happen */
    DR_ENOTLEADER,             /* high availability: this daemon is not the leader (docs/ha.md) */
    DR_ERR_LAST
};

/* Human-readable text for any code (negative errno or DR_E*). Never NULL. */
const char *err_str(int code);

/* Stable snake_case name for any code, e.g. "config_invalid", "errno_enoent". Never NULL. */
const char *err_name(int code);

#endif
