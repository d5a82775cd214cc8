/*
 * scn_commands: the scenario control commands (see scn_internal.h).
 *
 * Owns execute, runs, run, approve, abort, incidents and incident: their arguments, their replies,
 * and the reads of finished runs' reports (state_dir/incidents/<id>.json and .txt) on the thread
 * pool for run and incident, which the daemon's stop answers with "the daemon is stopping".
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "atomicfile.h"
#include "clock.h"
#include "core/core.h"
#include "err.h"
#include "scenario/scn_internal.h"
#include "scenario/rejoin_internal.h"
#include "scenario/switchover_internal.h"

static ScnRun *scn_find_live(Scenarios *s, const char *id)
{
    for (ScnRun *r = s->runs; r; r = r->next)
        if (!r->dry && !r->released && id && strcmp(r->id, id) == 0)
            return r;
    return NULL;
}

static json_t *scn_run_json(const ScnRun *run)
{
    json_t *j = fsm_run_to_json(run->fsm);
    if (j) {
        json_object_set_new(j, "reason", json_string(run->reason ? run->reason : ""));
        json_object_set_new(j, "detected_ms", json_integer(run->detected_ms));
        json_object_set(j, "context", run->ctx);
        json_object_set_new(j, "active", json_boolean(run->s->active == run));
    }
    return j;
}

static void scn_cmd_execute(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    const char *name = json_string_value(json_object_get(args, "scenario"));
    const char *reason = json_string_value(json_object_get(args, "reason"));
    bool dry = json_is_true(json_object_get(args, "dry_run"));
    bool manual = json_is_true(json_object_get(args, "manual"));
    char id[96], err[512] = "", rbuf[600];

    if (!name) {
        control_reply_error(call, DR_EBADARG, "execute needs a scenario (drctl execute --scenario NAME)");
        return;
    }
    const PeerCred *pc = control_call_peer(call);
    snprintf(rbuf, sizeof(rbuf), "operator request (uid %ld)%s%s", pc ? (long)pc->uid : -1L, reason ? ": " : "",
             reason ? reason : "");
    const ScenarioDef *def = scenario_find(name);
    if (def && def->execute && !dry) {
        def->execute(call, args, s);
        return;
    }
    const ConfigScenario *sc = config_scenario(s->core->cfg, name);
    FsmMode mode = dry ? FSM_MODE_DRY_RUN : manual || (sc && sc->manual) ? FSM_MODE_MANUAL : FSM_MODE_AUTOMATIC;
    int r = scn_trigger(s, name, rbuf, clock_wall_ms(), mode, dry ? call : NULL, id, sizeof(id), err, sizeof(err));
    if (r < 0) {
        control_reply_error(call, r == -EBUSY ? DR_EBUSY : r == -ENOENT ? DR_EBADARG : r, "%s", err);
        return;
    }
    if (!dry)
        control_reply_ok(call, json_pack("{s:s,s:s,s:s}", "run", id, "scenario", name, "mode", fsm_mode_name(mode)));
}

static void scn_cmd_runs(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    json_t *list = json_array();
    (void)args;
    for (size_t i = json_array_size(s->history); i-- > 0;)
        json_array_append(list, json_array_get(s->history, i));
    if (s->active) {
        json_t *a = scn_run_json(s->active);
        json_object_del(a, "steps");
        json_object_del(a, "context");
        json_array_insert_new(list, 0, a);
    }
    control_reply_ok(call, json_pack("{s:o,s:b}", "runs", list, "loading", s->loading));
}

typedef enum { SCN_READ_RUN, SCN_READ_INCIDENT } ScnReadKind;

struct ScnCmd {
    uv_work_t req;
    Scenarios *s;
    CtlCall *call;
    ScnReadKind kind;
    char id[96];
    char json_path[4096], text_path[4096];
    char *json_text, *text;
    int result;
    ScnCmd *next;
};

static void scn_read_work(uv_work_t *req)
{
    ScnCmd *c = req->data;
    size_t len;
    c->result = atomicfile_read_all(c->json_path, 64u << 20, &c->json_text, &len);
    if (c->result == 0 && c->kind == SCN_READ_INCIDENT)
        c->result = atomicfile_read_all(c->text_path, 64u << 20, &c->text, &len);
}

static void scn_read_done(uv_work_t *req, int status)
{
    ScnCmd *c = req->data;
    Scenarios *s = c->s;
    for (ScnCmd **pp = &s->cmds; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    if (status < 0 && c->result == 0)
        c->result = status;
    if (c->call) {
        json_t *rep = c->json_text ? json_loads(c->json_text, 0, NULL) : NULL;
        if (c->result == -ENOENT)
            control_reply_error(c->call, DR_EBADARG, "no run or incident named '%s' (see drctl runs)", c->id);
        else if (c->result < 0 || !rep)
            control_reply_error(c->call, c->result < 0 ? c->result : DR_ECORRUPT, "cannot read the report of '%s': %s",
                                c->id, c->result < 0 ? err_str(c->result) : "not JSON");
        else if (c->kind == SCN_READ_INCIDENT)
            control_reply_ok(c->call, json_pack("{s:O,s:s}", "report", rep, "text", c->text ? c->text : ""));
        else {
            json_t *r = json_pack("{s:O,s:O,s:O,s:O,s:O,s:O,s:b}", "run", json_object_get(rep, "run"), "scenario",
                                  json_object_get(rep, "scenario"), "status", json_object_get(rep, "status"), "state",
                                  json_object_get(rep, "state"), "mode", json_object_get(rep, "mode"), "steps",
                                  json_object_get(rep, "timeline"), "active", 0);
            if (r && json_is_array(json_object_get(rep, "attributed")))
                json_object_set(r, "attributed", json_object_get(rep, "attributed"));
            control_reply_ok(c->call, r);
        }
        json_decref(rep);
    }
    free(c->json_text);
    free(c->text);
    free(c);
    s->pending--;
    scn_maybe_closed(s);
}

static void scn_read_report(Scenarios *s, CtlCall *call, const char *id, ScnReadKind kind)
{
    ScnCmd *c = calloc(1, sizeof(*c));
    if (!c) {
        control_reply_error(call, -ENOMEM, "out of memory");
        return;
    }
    c->s = s;
    c->call = call;
    c->kind = kind;
    snprintf(c->id, sizeof(c->id), "%s", id);
    scn_path(s, c->json_path, sizeof(c->json_path), "incidents", id, ".json");
    scn_path(s, c->text_path, sizeof(c->text_path), "incidents", id, ".txt");
    c->req.data = c;
    int r = uv_queue_work(s->core->loop, &c->req, scn_read_work, scn_read_done);
    if (r < 0) {
        free(c);
        control_reply_error(call, r, "cannot read the report: %s", err_str(r));
        return;
    }
    c->next = s->cmds;
    s->cmds = c;
    s->pending++;
}

static const char *scn_arg_id(CtlCall *call, const json_t *args)
{
    const char *id = json_string_value(json_object_get(args, "run"));
    if (!scn_id_valid(id)) {
        control_reply_error(call, DR_EBADARG, "a run id is required (see drctl runs)");
        return NULL;
    }
    return id;
}

static void scn_cmd_run(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    const char *id = scn_arg_id(call, args);
    if (!id)
        return;
    ScnRun *run = scn_find_live(s, id);
    if (run) {
        control_reply_ok(call, scn_run_json(run));
        return;
    }
    scn_read_report(s, call, id, SCN_READ_RUN);
}

static void scn_cmd_approve(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    const char *id = scn_arg_id(call, args);
    if (!id)
        return;
    ScnRun *run = s->active && strcmp(s->active->id, id) == 0 ? s->active : NULL;
    if (!run) {
        control_reply_error(call, DR_EBADARG, "run '%s' is not the active run", id);
        return;
    }
    FsmStatus st = fsm_run_status(run->fsm);
    int step_state = fsm_run_state(run->fsm);
    if (fsm_approve(run->fsm) < 0) {
        control_reply_error(call, DR_ESTATE, "run %s is %s: nothing to approve", id, fsm_status_name(st));
        return;
    }
    const PeerCred *pc = control_call_peer(call);
    events_emit(s->core->events, SEV_WARNING, "scenario.approve", NULL, false, NULL, "run %s approved by uid %ld (was %s in '%s')",
                id, pc ? (long)pc->uid : -1L, fsm_status_name(st), fsm_state_name(run->def->table, step_state));
    control_reply_ok(call, json_pack("{s:s,s:s}", "run", id, "status", fsm_status_name(fsm_run_status(run->fsm))));
}

static void scn_cmd_abort(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    const char *id = scn_arg_id(call, args);
    const char *reason = json_string_value(json_object_get(args, "reason"));
    char why[600];
    if (!id)
        return;
    ScnRun *run = s->active && strcmp(s->active->id, id) == 0 ? s->active : NULL;
    if (!run) {
        control_reply_error(call, DR_EBADARG, "run '%s' is not the active run", id);
        return;
    }
    const PeerCred *pc = control_call_peer(call);
    snprintf(why, sizeof(why), "aborted by uid %ld%s%s", pc ? (long)pc->uid : -1L, reason ? ": " : "", reason ? reason : "");
    scn_run_ref(run);
    int r = fsm_abort(run->fsm, why);
    if (r < 0)
        control_reply_error(call, DR_ESTATE, "run %s has already ended", id);
    else
        control_reply_ok(call, json_pack("{s:s,s:s}", "run", id, "status", "aborted"));
    scn_run_unref(run);
}

static void scn_cmd_incidents(CtlCall *call, const json_t *args, void *data)
{
    Scenarios *s = data;
    json_t *list = json_array();
    (void)args;
    for (size_t i = json_array_size(s->history); i-- > 0;)
        json_array_append(list, json_array_get(s->history, i));
    control_reply_ok(call, json_pack("{s:o}", "incidents", list));
}

static void scn_cmd_incident(CtlCall *call, const json_t *args, void *data)
{
    const char *id = scn_arg_id(call, args);
    if (id)
        scn_read_report(data, call, id, SCN_READ_INCIDENT);
}

/* ---- registration, shutdown ---- */

int scn_commands_register(Scenarios *s)
{
    CtlCommand cmds[] = {
        {"execute", true, scn_cmd_execute, s, "start a scenario run (scenario, dry_run, manual, reason)"},
        {"runs", false, scn_cmd_runs, s, "scenario runs: the active one and the finished ones"},
        {"run", false, scn_cmd_run, s, "one run's timeline (run)"},
        {"approve", true, scn_cmd_approve, s, "continue a run waiting at a gate or held after a restart (run)"},
        {"abort", true, scn_cmd_abort, s, "end a run; trading stays halted (run, reason)"},
        {"incidents", false, scn_cmd_incidents, s, "incident reports of finished runs"},
        {"incident", false, scn_cmd_incident, s, "one incident report, JSON and text (run)"},
        {"switchover", true, switchover__cmd, s, "a planned switchover to a standby: a switchover run (to, manual)"},
        {"rejoin", true, rejoin__cmd, s, "rebuild a node as a standby of the primary: a rejoin run (node, manual)"},
    };
    return control_register(s->core->control, cmds, sizeof(cmds) / sizeof(cmds[0]));
}

void scn_commands_cancel(Scenarios *s)
{
    for (ScnCmd *c = s->cmds; c; c = c->next)
        if (c->call) {
            control_reply_error(c->call, DR_ECANCELED, "the daemon is stopping");
            c->call = NULL;
        }
}
