/*
 * err: text and stable names for the error catalogue (see err.h).
 */
#include "err.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    const char *text;
} err_table[] = {
    [DR_ECONFIG - DR_ERR_FIRST] = {"config_invalid", "configuration is invalid"},
    [DR_EPROTO - DR_ERR_FIRST] = {"bad_request", "malformed request"},
    [DR_ETOOBIG - DR_ERR_FIRST] = {"too_big", "input exceeds its size limit"},
    [DR_EUNKNOWNCMD - DR_ERR_FIRST] = {"unknown_command", "unknown command"},
    [DR_EPERM - DR_ERR_FIRST] = {"permission_denied", "permission denied"},
    [DR_EBADARG - DR_ERR_FIRST] = {"bad_argument", "invalid argument"},
    [DR_EDB - DR_ERR_FIRST] = {"database_error", "database error"},
    [DR_EHTTP - DR_ERR_FIRST] = {"http_error", "HTTP request failed"},
    [DR_ECHILD - DR_ERR_FIRST] = {"child_failed", "child process failed"},
    [DR_EBUSY - DR_ERR_FIRST] = {"busy", "already running"},
    [DR_ECORRUPT - DR_ERR_FIRST] = {"corrupt", "integrity check failed"},
    [DR_EKEY - DR_ERR_FIRST] = {"key_error", "key missing, unreadable or too open"},
    [DR_ESTATE - DR_ERR_FIRST] = {"bad_state", "not allowed in the current state"},
    [DR_ECANCELED - DR_ERR_FIRST] = {"canceled", "operation cancelled"},
    [DR_EINTERNAL - DR_ERR_FIRST] = {"internal_error", "internal error"},
    [DR_ENOTLEADER - DR_ERR_FIRST] = {"not_leader", "not the leader"},
};

static int err_in_catalogue(int code)
{
    return code >= DR_ERR_FIRST && code < DR_ERR_LAST;
}

const char *err_str(int code)
{
    if (code == 0)
        return "success";
    if (err_in_catalogue(code))
        return err_table[code - DR_ERR_FIRST].text;
    if (code < 0 && code > -4096)
        return strerror(-code);
    return "unknown error";
}

const char *err_name(int code)
{
    static _Thread_local char buf[32];

    if (code == 0)
        return "ok";
    if (err_in_catalogue(code))
        return err_table[code - DR_ERR_FIRST].name;
    if (code < 0 && code > -4096) {
        const char *n = strerrorname_np(-code);
        if (n) {
            size_t i = 0;
            memcpy(buf, "errno_", 6);
            for (; n[i] && i + 7 < sizeof(buf); i++)
                buf[6 + i] = (char)((n[i] >= 'A' && n[i] <= 'Z') ? n[i] - 'A' + 'a' : n[i]);
            buf[6 + i] = '\0';
            return buf;
        }
    }
    return "unknown_error";
}
