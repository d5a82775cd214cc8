/*
 * fsm_table: scenario table validation, Graphviz rendering and names (see fsm.h). No run state.
 */
#include "fsm.h"
#include "fsm_internal.h"

#include "err.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fsm_table_fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fsm_table_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return DR_ECONFIG;
}

const char *fsm_state_name(const FsmTable *t, int s)
{
    if (!t || s < 0 || s >= t->state_count || !t->states[s].name)
        return "?";
    return t->states[s].name;
}

/* Depth-first search for a cycle over success and failure edges; colour 0 white, 1 grey, 2 black. */
static int fsm_table_dfs(const FsmTable *t, const int *row_of, int s, char *colour, int *ret_cycle)
{
    colour[s] = 1;
    int r = row_of[s];
    if (r >= 0) {
        /* The row's success and failure edges, then the branches leaving s. */
        for (int k = -2; k < t->branch_count; k++) {
            int n = k == -2 ? t->rows[r].to : k == -1 ? t->rows[r].on_failure
                  : t->branches[k].from == s ? t->branches[k].to : -1;
            if (n < 0)
                continue;
            if (colour[n] == 1) {
                *ret_cycle = s;
                return -1;
            }
            if (colour[n] == 0 && fsm_table_dfs(t, row_of, n, colour, ret_cycle) < 0)
                return -1;
        }
    }
    colour[s] = 2;
    return 0;
}

int fsm_table_validate(const FsmTable *t, char *err, size_t errlen)
{
    if (!t || !t->name || !t->states || t->state_count <= 0 || !t->rows || t->row_count <= 0)
        return fsm_table_fail(err, errlen, "table has no name, states or rows");
    const char *tn = t->name;
    int ns = t->state_count;
    for (int s = 0; s < ns; s++) {
        if (!t->states[s].name || !*t->states[s].name)
            return fsm_table_fail(err, errlen, "%s: state %d has no name", tn, s);
        for (int u = 0; u < s; u++)
            if (strcmp(t->states[u].name, t->states[s].name) == 0)
                return fsm_table_fail(err, errlen, "%s: state name '%s' used twice", tn,
                                      t->states[s].name);
    }
    if (t->states[0].kind != FSM_STATE_ACTIVE)
        return fsm_table_fail(err, errlen, "%s: initial state '%s' is final", tn,
                              t->states[0].name);

    int *row_of = malloc((size_t)ns * sizeof(int));
    char *colour = calloc((size_t)ns, 1);
    if (!row_of || !colour) {
        free(row_of);
        free(colour);
        return fsm_table_fail(err, errlen, "out of memory");
    }
    int rc = 0;
    for (int s = 0; s < ns; s++)
        row_of[s] = -1;
    for (int i = 0; i < t->row_count && rc == 0; i++) {
        const FsmRow *row = &t->rows[i];
        const char *sn = row->step_name ? row->step_name : "?";
        if (!row->step_name || !*row->step_name)
            rc = fsm_table_fail(err, errlen, "%s: row %d has no step name", tn, i);
        else if (row->from < 0 || row->from >= ns || row->to < 0 || row->to >= ns)
            rc = fsm_table_fail(err, errlen, "%s: row %d '%s': from/to state out of range", tn, i,
                                sn);
        else if (row->on_failure != FSM_NO_STATE && (row->on_failure < 0 || row->on_failure >= ns))
            rc = fsm_table_fail(err, errlen,
                                "%s: row %d '%s': on_failure state %d does not exist", tn, i, sn,
                                row->on_failure);
        else if (!row->sentence || !*row->sentence)
            rc = fsm_table_fail(err, errlen, "%s: row %d '%s' has no sentence", tn, i, sn);
        else if (!row->step)
            rc = fsm_table_fail(err, errlen, "%s: row %d '%s' has no step function", tn, i, sn);
        else if (row->attempts < 1)
            rc = fsm_table_fail(err, errlen, "%s: row %d '%s': attempts must be at least 1", tn,
                                i, sn);
        else if (row->timeout_ms == 0)
            rc = fsm_table_fail(err, errlen, "%s: row %d '%s': timeout must be positive", tn, i,
                                sn);
        else if (row->gate != FSM_GATE_NONE && row->gate != FSM_GATE_APPROVAL && row->gate != FSM_GATE_OPERATOR)
            rc = fsm_table_fail(err, errlen, "%s: row %d '%s': unknown gate", tn, i, sn);
        else if (t->states[row->from].kind != FSM_STATE_ACTIVE)
            rc = fsm_table_fail(err, errlen, "%s: row %d '%s' leaves final state '%s'", tn, i, sn,
                                t->states[row->from].name);
        else if (row_of[row->from] >= 0)
            rc = fsm_table_fail(err, errlen,
                                "%s: rows %d and %d both leave state '%s' (one row per state; "
                                "branch with on_failure)",
                                tn, row_of[row->from], i, t->states[row->from].name);
        else {
            for (int k = 0; k < i && rc == 0; k++)
                if (strcmp(t->rows[k].step_name, row->step_name) == 0)
                    rc = fsm_table_fail(err, errlen, "%s: step name '%s' used by rows %d and %d",
                                        tn, sn, k, i);
            row_of[row->from] = i;
        }
    }
    if (rc == 0 && (t->branch_count < 0 || (t->branch_count > 0 && !t->branches)))
        rc = fsm_table_fail(err, errlen, "%s: branch_count %d without branches", tn, t->branch_count);
    for (int b = 0; b < t->branch_count && rc == 0; b++) {
        const FsmBranch *br = &t->branches[b];
        if (!br->outcome || !*br->outcome)
            rc = fsm_table_fail(err, errlen, "%s: branch %d has no outcome name", tn, b);
        else if (br->from < 0 || br->from >= ns || row_of[br->from] < 0)
            rc = fsm_table_fail(err, errlen, "%s: branch '%s' leaves a state with no row", tn, br->outcome);
        else if (br->to < 0 || br->to >= ns)
            rc = fsm_table_fail(err, errlen, "%s: branch '%s' leads to state %d, which does not exist", tn,
                                br->outcome, br->to);
        else
            for (int k = 0; k < b && rc == 0; k++)
                if (t->branches[k].from == br->from && strcmp(t->branches[k].outcome, br->outcome) == 0)
                    rc = fsm_table_fail(err, errlen, "%s: outcome '%s' listed twice for state '%s'", tn,
                                        br->outcome, t->states[br->from].name);
    }
    for (int s = 0; s < ns && rc == 0; s++)
        if (t->states[s].kind == FSM_STATE_ACTIVE && row_of[s] < 0)
            rc = fsm_table_fail(err, errlen, "%s: state '%s' is a dead end (not final, no row)", tn,
                                t->states[s].name);
    int cycle = -1;
    if (rc == 0 && fsm_table_dfs(t, row_of, 0, colour, &cycle) < 0)
        rc = fsm_table_fail(err, errlen,
                            "%s: cycle through state '%s' (use attempts to repeat; an omitted "
                            "on_failure is 0: write FSM_NO_STATE)",
                            tn, t->states[cycle].name);
    for (int s = 0; s < ns && rc == 0; s++)
        if (colour[s] == 0)
            rc = fsm_table_fail(err, errlen, "%s: state '%s' is unreachable from '%s'", tn,
                                t->states[s].name, t->states[0].name);
    free(row_of);
    free(colour);
    return rc;
}

/* Appends formatted text to a growing buffer; on failure frees it and sets it to NULL. */
static void fsm_dot_add(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void fsm_dot_add(char **buf, size_t *len, size_t *cap, const char *fmt, ...)
{
    if (!*buf)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(*buf + *len, *cap - *len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            free(*buf);
            *buf = NULL;
            return;
        }
        if ((size_t)n < *cap - *len) {
            *len += (size_t)n;
            return;
        }
        size_t ncap = *cap * 2 + (size_t)n;
        char *nb = realloc(*buf, ncap);
        if (!nb) {
            free(*buf);
            *buf = NULL;
            return;
        }
        *buf = nb;
        *cap = ncap;
    }
}

char *fsm_table_to_dot(const FsmTable *t)
{
    size_t len = 0, cap = 1024;
    char *buf = malloc(cap);
    fsm_dot_add(&buf, &len, &cap, "digraph \"%s\" {\n  rankdir=TB;\n  node [shape=box];\n",
                t->name);
    for (int s = 0; s < t->state_count; s++) {
        const char *attr = t->states[s].kind == FSM_STATE_SUCCESS ? "shape=doublecircle"
                         : t->states[s].kind == FSM_STATE_FAILURE ? "shape=doubleoctagon"
                         : t->states[s].kind == FSM_STATE_HANDOFF ? "shape=house"
                         : s == 0                                  ? "style=bold"
                                                                   : "";
        fsm_dot_add(&buf, &len, &cap, "  \"%s\" [%s];\n", t->states[s].name, attr);
    }
    for (int i = 0; i < t->row_count; i++) {
        const FsmRow *r = &t->rows[i];
        fsm_dot_add(&buf, &len, &cap, "  \"%s\" -> \"%s\" [label=\"%s%s%s\"];\n",
                    fsm_state_name(t, r->from), fsm_state_name(t, r->to), r->step_name,
                    r->gate == FSM_GATE_APPROVAL ? "\\n(approval)" : r->gate == FSM_GATE_OPERATOR ? "\\n(operator)" : "",
                    r->idempotent ? "" : "\\n(not idempotent)");
        if (r->on_failure != FSM_NO_STATE)
            fsm_dot_add(&buf, &len, &cap,
                        "  \"%s\" -> \"%s\" [label=\"%s failed\" style=dashed color=red];\n",
                        fsm_state_name(t, r->from), fsm_state_name(t, r->on_failure),
                        r->step_name);
    }
    for (int b = 0; b < t->branch_count; b++)
        fsm_dot_add(&buf, &len, &cap, "  \"%s\" -> \"%s\" [label=\"%s\" style=bold];\n",
                    fsm_state_name(t, t->branches[b].from), fsm_state_name(t, t->branches[b].to),
                    t->branches[b].outcome);
    fsm_dot_add(&buf, &len, &cap, "}\n");
    return buf;
}

const char *fsm_status_name(FsmStatus s)
{
    switch (s) {
    case FSM_RUN_NEW: return "new";
    case FSM_RUN_RUNNING: return "running";
    case FSM_RUN_WAITING_APPROVAL: return "waiting_approval";
    case FSM_RUN_HELD: return "held";
    case FSM_RUN_SUCCEEDED: return "succeeded";
    case FSM_RUN_FAILED: return "failed";
    case FSM_RUN_ABORTED: return "aborted";
    case FSM_RUN_HANDED_OFF: return "handed_off";
    }
    return "?";
}

const char *fsm_mode_name(FsmMode m)
{
    switch (m) {
    case FSM_MODE_AUTOMATIC: return "automatic";
    case FSM_MODE_MANUAL: return "manual";
    case FSM_MODE_DRY_RUN: return "dry_run";
    }
    return "?";
}

int fsm__branch_target(const FsmTable *t, int from, const char *outcome)
{
    for (int b = 0; outcome && b < t->branch_count; b++)
        if (t->branches[b].from == from && strcmp(t->branches[b].outcome, outcome) == 0)
            return t->branches[b].to;
    return FSM_NO_STATE;
}

bool fsm__has_branches(const FsmTable *t, int from)
{
    for (int b = 0; b < t->branch_count; b++)
        if (t->branches[b].from == from)
            return true;
    return false;
}
