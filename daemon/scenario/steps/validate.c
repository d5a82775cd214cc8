/*
 * steps/validate: the validation of a restored database (steps.h: scn_validate): the configured
 * queries one at a time on its connection, each answer recorded (ctx "validation"); a query that
 * fails or answers false fails the step. database_corruption runs it on the restored database,
 * point_in_time on the recovered cluster before it is switched in.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "scenario/steps/steps.h"

static char scn_select1[] = "SELECT 1";
static char *const scn_validate_default[] = {scn_select1};

static const char *scn_validate_query(const ScnStep *st, size_t i)
{
    return i < st->n_queries ? st->queries[i] : NULL;
}

static void validate_recorded(ScnRun *run, int status, void *data)
{
    ScnStep *st = data;
    (void)run;
    if (status < 0)
        scn_finish(st, status, "cannot record the validation: %s", err_str(status));
    else
        scn_finish(st, 0, "%zu validation quer%s passed in %s", st->idx, st->idx == 1 ? "y" : "ies", st->where);
}

static void validate_next(ScnStep *st);

static void validate_on_query(ScnStep *st, int status, const PGresult *res, const char *errmsg)
{
    const char *q = scn_validate_query(st, st->idx);
    if (status < 0) {
        scn_finish(st, DR_EDB, "validation query '%s' failed: %s", q, errmsg ? errmsg : err_str(status));
        return;
    }
    const char *v = res && PQntuples(res) > 0 && PQnfields(res) > 0 && !PQgetisnull(res, 0, 0) ? PQgetvalue(res, 0, 0) : NULL;
    json_array_append_new(st->acc, json_pack("{s:s,s:s?}", "query", q, "value", v));
    if (v && (strcmp(v, "f") == 0 || strcmp(v, "false") == 0)) {
        scn_finish(st, DR_ECORRUPT, "validation query '%s' answered false", q);
        return;
    }
    st->idx++;
    validate_next(st);
}

static void validate_next(ScnStep *st)
{
    const char *q = scn_validate_query(st, st->idx);
    if (!q) {
        json_t *acc = st->acc;
        st->acc = NULL;
        scn_context_set(st->run, "validation", acc, validate_recorded, st);
        return;
    }
    scn_sql(st, st->conninfo, q, 0, NULL, validate_on_query);
}

void scn_validate(ScnStep *st, char *const *queries, size_t n, const char *conninfo, const char *where)
{
    st->queries = n ? queries : scn_validate_default;
    st->n_queries = n ? n : 1;
    snprintf(st->where, sizeof(st->where), "%s", where);
    st->conninfo = strdup(conninfo);
    st->acc = json_array();
    if (!st->conninfo || !st->acc) {
        scn_finish(st, -ENOMEM, "out of memory");
        return;
    }
    validate_next(st);
}

void scn_plan_validation(FsmCall *call, char *const *queries, size_t n, const char *where, FsmDone done)
{
    char msg[1024];
    size_t o = (size_t)snprintf(msg, sizeof(msg), "would run in %s:", where);
    if (!n) {
        queries = scn_validate_default;
        n = 1;
    }
    for (size_t i = 0; i < n && o < sizeof(msg); i++)
        o += (size_t)snprintf(msg + o, sizeof(msg) - o, "%s '%s'", i ? "," : "", queries[i]);
    done(call, 0, msg);
}
