/*
 * config_databases: what the configuration says about the databases a recovery acts on.
 *
 * Owns one derivation shared by the scenario runner and the standby restore: the name of the
 * protected database and the admin conninfo (see config.h). Pure: no I/O, callable on the loop.
 */
#include "config/config.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "err.h"

/* Append ` keyword='value'` (value escaped the way libpq reads it) to *buf. 0 or -ENOMEM. */
static int config_conninfo_append(char **buf, size_t *len, size_t *cap, const char *keyword, const char *value)
{
    size_t need = strlen(keyword) + 2 * strlen(value) + 5;
    if (*len + need >= *cap) {
        size_t ncap = (*len + need) * 2;
        char *p = realloc(*buf, ncap);
        if (!p)
            return -ENOMEM;
        *buf = p;
        *cap = ncap;
    }
    char *o = *buf + *len;
    if (*len)
        *o++ = ' ';
    o = stpcpy(o, keyword);
    *o++ = '=';
    *o++ = '\'';
    for (const char *v = value; *v; v++) {
        if (*v == '\'' || *v == '\\')
            *o++ = '\\';
        *o++ = *v;
    }
    *o++ = '\'';
    *o = '\0';
    *len = (size_t)(o - *buf);
    return 0;
}

int config_scenario_databases(const Config *cfg, char *database, size_t dblen, char **ret_admin, char *err,
                              size_t errlen)
{
    char *perr = NULL;
    PQconninfoOption *opts = PQconninfoParse(cfg->database.conninfo, &perr);
    const char *dbname = cfg->scenarios.database;
    char *ci = NULL;
    size_t len = 0, cap = 0;
    int r = 0;

    *ret_admin = NULL;
    if (!opts) {
        snprintf(err, errlen, "cannot parse database.conninfo: %s", perr ? perr : "out of memory");
        PQfreemem(perr);
        return perr ? DR_ECONFIG : -ENOMEM;
    }
    for (PQconninfoOption *o = opts; o->keyword && r == 0; o++) {
        if (!o->val || !o->val[0])
            continue;
        if (strcmp(o->keyword, "dbname") == 0) {
            if (!dbname)
                dbname = o->val;
            continue;
        }
        if (!cfg->scenarios.admin_conninfo)
            r = config_conninfo_append(&ci, &len, &cap, o->keyword, o->val);
    }
    if (r == 0 && (!dbname || strlen(dbname) > 30 || strpbrk(dbname, "\"\\'"))) {
        snprintf(err, errlen, "cannot tell which database to protect: set scenarios.database");
        r = DR_ECONFIG;
    }
    if (r == 0) {
        snprintf(database, dblen, "%s", dbname);
        if (asprintf(ret_admin, "%s%sdbname=postgres", cfg->scenarios.admin_conninfo ? cfg->scenarios.admin_conninfo : ci ? ci : "",
                     (cfg->scenarios.admin_conninfo && cfg->scenarios.admin_conninfo[0]) || len ? " " : "") < 0) {
            *ret_admin = NULL;
            r = -ENOMEM;
        }
    }
    if (r == -ENOMEM)
        snprintf(err, errlen, "out of memory");
    PQconninfoFree(opts);
    free(ci);
    return r;
}
