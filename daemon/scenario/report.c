/*
 * scn_report: the incident report of a finished scenario run (see scn_internal.h).
 *
 * Owns what a report says: the run (scenario, mode, status, final state, reason), RTO (detection to
 * the end of the run's "live" step) and RPO (restore point, i.e. the chosen backup's start, to the
 * detection) against the configured targets, the databases involved, the timeline of every step
 * (start, end, outcome, attempts, message), what probes saw of the run's own disturbances
 * (attributed to it, not paged), the validation results, the reconcile report and the
 * post-resume watch (every check and attempt), and the run's audit records (core/audit: every
 * record of the audit log and its kept rotated files from the detection to the report, and any
 * carrying the run's id: the operators' commands and the daemon's actions, read on the thread pool
 * before the report is built); its plain-text rendering for people; writing it
 * (state_dir/incidents/<id>.json and .txt, atomically on the thread pool) and the summary kept in
 * the history of finished runs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "atomicfile.h"
#include "cfgtree.h"
#include "clock.h"
#include "core/audit.h"
#include "core/core.h"
#include "err.h"
#include "log.h"
#include "scenario/scn_internal.h"

static void scn_rfc3339_ms(int64_t ms, char *out, size_t n)
{
    if (ms <= 0)
        snprintf(out, n, "-");
    else
        clock_format_utc_ms(ms, out, n);
}

json_t *scn_report_build(const ScnRun *run, const char *cluster)
{
    json_t *j = fsm_run_to_json(run->fsm);
    json_t *steps, *st;
    int64_t live_ms = 0, finished_ms = 0;
    size_t i;
    char when[40];

    if (!j)
        return NULL;
    steps = json_object_get(j, "steps");
    json_array_foreach(steps, i, st) {
        int64_t end = (int64_t)json_integer_value(json_object_get(st, "end_ms"));
        const char *name = json_string_value(json_object_get(st, "step"));
        const char *outcome = json_string_value(json_object_get(st, "outcome"));
        if (end > finished_ms)
            finished_ms = end;
        if (name && outcome && run->def->live_step && strcmp(name, run->def->live_step) == 0 && strcmp(outcome, "ok") == 0)
            live_ms = end;
    }
    int64_t restore_point = run->def->restore_point_ms ? run->def->restore_point_ms(run) : 0;
    json_t *rep = json_object();
    json_object_set_new(rep, "report_version", json_integer(1));
    json_object_set(rep, "run", json_object_get(j, "run"));
    json_object_set(rep, "scenario", json_object_get(j, "scenario"));
    json_object_set_new(rep, "cluster", json_string(cluster ? cluster : ""));
    json_object_set(rep, "mode", json_object_get(j, "mode"));
    json_object_set(rep, "status", json_object_get(j, "status"));
    json_object_set(rep, "state", json_object_get(j, "state"));
    json_object_set(rep, "message", json_object_get(j, "message"));
    json_object_set_new(rep, "reason", json_string(run->reason ? run->reason : ""));
    json_object_set_new(rep, "detected_ms", json_integer(run->detected_ms));
    scn_rfc3339_ms(run->detected_ms, when, sizeof(when));
    json_object_set_new(rep, "detected_at", json_string(when));
    json_object_set_new(rep, "finished_ms", json_integer(finished_ms));
    json_object_set_new(rep, "live_ms", live_ms ? json_integer(live_ms) : json_null());
    json_object_set_new(rep, "restore_point_ms", restore_point ? json_integer(restore_point) : json_null());
    json_t *rto = live_ms ? json_integer(live_ms - run->detected_ms) : json_null();
    json_t *rpo = restore_point ? json_integer(run->detected_ms - restore_point) : json_null();
    json_object_set_new(rep, "rto_ms", rto);
    json_object_set_new(rep, "rpo_ms", rpo);
    json_object_set_new(rep, "targets", json_pack("{s:I,s:I}", "rto_ms", (json_int_t)run->cfg.rto_ms, "rpo_ms",
                                                  (json_int_t)run->cfg.rpo_ms));
    json_object_set_new(rep, "rto_met", json_boolean(live_ms && live_ms - run->detected_ms <= (int64_t)run->cfg.rto_ms));
    json_object_set_new(rep, "rpo_met",
                        json_boolean(restore_point && run->detected_ms - restore_point <= (int64_t)run->cfg.rpo_ms));
    json_object_set(rep, "timeline", steps ? steps : json_array());
    if (run->def->report_extras)
        run->def->report_extras(run, rep);
    const json_t *rc = json_object_get(run->ctx, "reconcile");
    json_object_set_new(rep, "reconcile", rc ? json_deep_copy(rc) : json_null());
    /* What the run did to its database that probes saw, attributed to it instead of paged. */
    const json_t *at = json_object_get(run->ctx, "attributed");
    json_object_set_new(rep, "attributed", json_is_array(at) ? json_deep_copy(at) : json_array());
    const json_t *ra = json_object_get(run->ctx, "reconcile_attempts");
    json_object_set_new(rep, "reconcile_attempts", ra ? json_deep_copy(ra) : rc ? json_pack("[O]", rc) : json_array());
    const json_t *w = json_object_get(run->ctx, "post_resume_watch");
    json_object_set_new(rep, "post_resume_watch", w ? json_deep_copy(w) : json_null());
    json_decref(j);
    return rep;
}

static void scn_dur(const json_t *v, char *out, size_t n)
{
    if (!json_is_integer(v))
        snprintf(out, n, "-");
    else
        snprintf(out, n, "%.1f s", (double)json_integer_value(v) / 1000.0);
}

/* Audit records a report carries at most (the newest; the log has them all). */
#define SCN_REPORT_AUDIT_MAX 1000

/* Unresolved discrepancies printed in the text (all of them are in the JSON). */
#define SCN_TEXT_DISCREPANCIES 10

/* One reconcile report, summarised for people: the checks, the replayed fills counted per symbol,
 * the unresolved discrepancies (the first few). The JSON report keeps every detail. */
static void scn_report_text_reconcile(FILE *f, const json_t *rc, const char *title, const char *in)
{
    size_t i, n = 0;
    const json_t *x;
    const char *sym;
    json_t *per = json_object();

    if (!json_is_object(rc))
        return;
    fprintf(f, "\n%s: ready_to_trade %s (result %s)\n", title, json_is_true(json_object_get(rc, "ready_to_trade")) ? "yes" : "NO",
            json_string_value(json_object_get(rc, "result")) ?: "?");
    const json_t *e = json_object_get(rc, "error");
    if (e)
        fprintf(f, "%serror      %s\n", in, json_string_value(json_object_get(e, "message")) ?: "?");
    fprintf(f, "%schecks    ", in);
    json_array_foreach(json_object_get(rc, "checks"), i, x)
        fprintf(f, "%s %s %s", i ? "," : "", json_string_value(json_object_get(x, "name")) ?: "?",
                json_string_value(json_object_get(x, "status")) ?: "?");
    fprintf(f, "\n");
    json_array_foreach(json_object_get(rc, "actions_taken"), i, x) {
        const char *what = json_string_value(json_object_get(x, "action"));
        if (!what || strcmp(what, "replayed_fill") != 0)
            continue;
        const char *s = json_string_value(json_object_get(x, "symbol")) ?: "?";
        json_object_set_new(per, s, json_integer(json_integer_value(json_object_get(per, s)) + 1));
        n++;
    }
    fprintf(f, "%sreplayed   %zu fill%s", in, n, n == 1 ? "" : "s");
    size_t k = 0;
    json_object_foreach(per, sym, x)
        fprintf(f, "%s %s %lld", k++ ? "," : ":", sym, (long long)json_integer_value(x));
    fprintf(f, "\n");
    json_decref(per);
    size_t unresolved = 0;
    json_array_foreach(json_object_get(rc, "discrepancies"), i, x) {
        if (json_is_true(json_object_get(x, "resolved")))
            continue;
        if (unresolved++ < SCN_TEXT_DISCREPANCIES) {
            const json_t *v = json_object_get(x, "violations");
            fprintf(f, "%sunresolved %s %s%s%s", in, json_string_value(json_object_get(x, "check")) ?: "?",
                    json_string_value(json_object_get(x, "symbol")) ?: json_string_value(json_object_get(x, "fill_id"))
                        ?: json_string_value(json_object_get(x, "client_order_id")) ?: "",
                    json_object_get(x, "kind") ? " " : "", json_string_value(json_object_get(x, "kind")) ?: "");
            if (json_is_integer(v))
                fprintf(f, "%lld violation%s: %s", (long long)json_integer_value(v), json_integer_value(v) == 1 ? "" : "s",
                        json_string_value(json_object_get(x, "query")) ?: "");
            fprintf(f, "\n");
        }
    }
    if (unresolved > SCN_TEXT_DISCREPANCIES)
        fprintf(f, "%s... and %zu more unresolved (drctl --json incident RUN has them all)\n", in,
                unresolved - SCN_TEXT_DISCREPANCIES);
}

/* The post-resume watch: one line per check, one per attempt that did not pass. */
static void scn_report_text_watch(FILE *f, const json_t *w)
{
    size_t i, k;
    const json_t *c, *a;
    char after[32];

    if (!json_is_object(w))
        return;
    fprintf(f, "\nPost-resume watch: %s", json_string_value(json_object_get(w, "status")) ?: "?");
    if (json_string_value(json_object_get(w, "message")))
        fprintf(f, " (%s)", json_string_value(json_object_get(w, "message")));
    fprintf(f, ", %lld fill%s replayed\n", (long long)json_integer_value(json_object_get(w, "replayed")),
            json_integer_value(json_object_get(w, "replayed")) == 1 ? "" : "s");
    json_array_foreach(json_object_get(w, "checks"), i, c) {
        const json_t *att = json_object_get(c, "attempts");
        json_int_t replayed = 0;
        json_array_foreach(att, k, a)
            replayed += json_integer_value(json_object_get(a, "replayed"));
        cfg_format_duration((uint64_t)json_integer_value(json_object_get(c, "after_ms")), after, sizeof(after));
        fprintf(f, "  check %lld at +%-6s %-7s %zu attempt%s, %lld fill%s replayed\n",
                (long long)json_integer_value(json_object_get(c, "check")), after,
                json_string_value(json_object_get(c, "status")) ?: "?", json_array_size(att),
                json_array_size(att) == 1 ? "" : "s", (long long)replayed, replayed == 1 ? "" : "s");
        json_array_foreach(att, k, a) {
            if (json_is_true(json_object_get(a, "ready_to_trade")))
                continue;
            const json_t *rc = json_object_get(a, "reconcile");
            const json_t *e = json_object_get(rc, "error");
            size_t nd = json_array_size(json_object_get(rc, "discrepancies"));
            fprintf(f, "    attempt %lld: %s\n", (long long)json_integer_value(json_object_get(a, "attempt")),
                    e ? json_string_value(json_object_get(e, "message")) ?: "error"
                      : nd ? "unresolved discrepancies" : "not ready to trade");
            size_t m, shown = 0;
            const json_t *d;
            json_array_foreach(json_object_get(rc, "discrepancies"), m, d) {
                if (json_is_true(json_object_get(d, "resolved")) || shown++ >= SCN_TEXT_DISCREPANCIES)
                    continue;
                fprintf(f, "      %s %s %s\n", json_string_value(json_object_get(d, "check")) ?: "?",
                        json_string_value(json_object_get(d, "symbol")) ?: json_string_value(json_object_get(d, "fill_id")) ?: "",
                        json_string_value(json_object_get(d, "kind")) ?: "");
            }
        }
    }
}

/* The run's audit records: one line each, who and what. */
static void scn_report_text_audit(FILE *f, const json_t *au)
{
    size_t i;
    const json_t *r;

    if (!json_is_object(au))
        return;
    const json_t *recs = json_object_get(au, "records");
    fprintf(f, "\nAudit log (%zu record%s%s)\n", json_array_size(recs), json_array_size(recs) == 1 ? "" : "s",
            json_is_true(json_object_get(au, "truncated")) ? ", the oldest left out: drctl audit has them" : "");
    if (json_is_string(json_object_get(au, "error")))
        fprintf(f, "  cannot read the audit log: %s\n", json_string_value(json_object_get(au, "error")));
    json_array_foreach(recs, i, r) {
        const char *type = json_string_value(json_object_get(r, "type")) ?: "?";
        if (!strcmp(type, "command"))
            fprintf(f, "  %s #%lld  uid %lld ran %s: %s%s%s\n", json_string_value(json_object_get(r, "ts")) ?: "?",
                    (long long)json_integer_value(json_object_get(r, "seq")),
                    (long long)json_integer_value(json_object_get(r, "uid")),
                    json_string_value(json_object_get(r, "command")) ?: "?",
                    json_string_value(json_object_get(r, "outcome")) ?: "?", json_object_get(r, "error") ? ", " : "",
                    json_string_value(json_object_get(r, "error")) ?: "");
        else
            fprintf(f, "  %s #%lld  %s [%s] %s\n", json_string_value(json_object_get(r, "ts")) ?: "?",
                    (long long)json_integer_value(json_object_get(r, "seq")), type,
                    json_string_value(json_object_get(r, "kind")) ?: "-",
                    json_string_value(json_object_get(r, "summary")) ?: "");
    }
}

char *scn_report_text(const json_t *rep)
{
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    char a[64], b[64], c[64];
    size_t i;
    json_t *st;

    if (!f)
        return NULL;
#define S(k) (json_string_value(json_object_get(rep, k)) ? json_string_value(json_object_get(rep, k)) : "-")
    fprintf(f, "Incident %s\n", S("run"));
    fprintf(f, "  scenario   %s (cluster %s, %s mode)\n", S("scenario"), S("cluster"), S("mode"));
    fprintf(f, "  outcome    %s, final state %s\n", S("status"), S("state"));
    if (json_string_value(json_object_get(rep, "message")))
        fprintf(f, "  message    %s\n", S("message"));
    fprintf(f, "  reason     %s\n", S("reason"));
    fprintf(f, "  detected   %s\n", S("detected_at"));
    const json_t *bk = json_object_get(rep, "backup");
    if (json_is_object(bk))
        fprintf(f, "  backup     %s (restore point %s)\n", json_string_value(json_object_get(bk, "name")) ?: "?",
                json_string_value(json_object_get(bk, "started_at")) ?: "?");
    const json_t *tg = json_object_get(rep, "targets");
    scn_dur(json_object_get(rep, "rto_ms"), a, sizeof(a));
    scn_dur(json_object_get(tg, "rto_ms"), b, sizeof(b));
    fprintf(f, "  RTO        %s (target %s): %s\n", a, b, json_is_true(json_object_get(rep, "rto_met")) ? "met" : "NOT met");
    scn_dur(json_object_get(rep, "rpo_ms"), a, sizeof(a));
    scn_dur(json_object_get(tg, "rpo_ms"), b, sizeof(b));
    fprintf(f, "  RPO        %s (target %s): %s\n", a, b, json_is_true(json_object_get(rep, "rpo_met")) ? "met" : "NOT met");
    const json_t *db = json_object_get(rep, "databases");
    fprintf(f, "  databases  original '%s', evidence '%s', restore '%s'\n",
            json_string_value(json_object_get(db, "original")) ?: "?",
            json_string_value(json_object_get(db, "damaged")) ?: "?",
            json_string_value(json_object_get(db, "restored")) ?: "?");
    fprintf(f, "\nTimeline\n");
    int64_t t0 = (int64_t)json_integer_value(json_object_get(rep, "detected_ms"));
    json_array_foreach(json_object_get(rep, "timeline"), i, st) {
        int64_t s0 = (int64_t)json_integer_value(json_object_get(st, "start_ms"));
        int64_t s1 = (int64_t)json_integer_value(json_object_get(st, "end_ms"));
        snprintf(a, sizeof(a), "+%.1fs", (double)(s0 - t0) / 1000.0);
        snprintf(c, sizeof(c), "%.1fs", s1 > s0 ? (double)(s1 - s0) / 1000.0 : 0.0);
        fprintf(f, "  %-8s %-18s %-11s %6s  x%-2lld %s\n", a, json_string_value(json_object_get(st, "step")) ?: "?",
                json_string_value(json_object_get(st, "outcome")) ?: "?", c,
                (long long)json_integer_value(json_object_get(st, "attempts")),
                json_string_value(json_object_get(st, "message")) ?: "");
    }
    const json_t *at = json_object_get(rep, "attributed");
    if (json_array_size(at) > 0) {
        fprintf(f, "\nAttributed to the run (observed, not paged)\n");
        json_array_foreach(at, i, st) {
            int64_t d0 = (int64_t)json_integer_value(json_object_get(st, "declared_ms"));
            int64_t d1 = (int64_t)json_integer_value(json_object_get(st, "ended_ms"));
            fprintf(f, "  +%.1fs..+%.1fs  %lld probe failure(s) of '%s' from step %s: %s\n",
                    (double)(d0 - t0) / 1000.0, (double)(d1 - t0) / 1000.0,
                    (long long)json_integer_value(json_object_get(st, "attributed")),
                    json_string_value(json_object_get(st, "database")) ?: "?",
                    json_string_value(json_object_get(st, "step")) ?: "?",
                    json_string_value(json_object_get(st, "last_error")) ?: "");
        }
    }
    const json_t *v = json_object_get(rep, "validation");
    if (json_is_array(v)) {
        fprintf(f, "\nValidation\n");
        json_array_foreach(v, i, st)
            fprintf(f, "  %s = %s\n", json_string_value(json_object_get(st, "query")) ?: "?",
                    json_string_value(json_object_get(st, "value")) ?: "NULL");
    }
    const json_t *ra = json_object_get(rep, "reconcile_attempts");
    if (!json_array_size(ra) && json_is_object(json_object_get(rep, "reconcile")))
        ra = NULL, scn_report_text_reconcile(f, json_object_get(rep, "reconcile"), "Reconcile", "  ");
    json_array_foreach(ra, i, st) {
        char title[64];
        snprintf(title, sizeof(title), "Reconcile attempt %zu of %zu", i + 1, json_array_size(ra));
        scn_report_text_reconcile(f, st, title, "  ");
    }
    scn_report_text_watch(f, json_object_get(rep, "post_resume_watch"));
    scn_report_text_audit(f, json_object_get(rep, "audit"));
#undef S
    fclose(f);
    return buf;
}

/* ---- writing reports ---- */

typedef struct ScnReportWrite {
    uv_work_t req;
    ScnRun *run;
    char json_path[4096], text_path[4096], dir[4096], audit_path[4096];
    int64_t audit_from_ms, audit_to_ms;
    json_t *rep;      /* the report, built when the run ended; the loop's only (the pool never touches it) */
    json_t *audit;    /* the run's audit records (read on the pool, handed to the loop) */
    int audit_result;
    char *json_text, *text;
    json_t *summary;
    int result;
} ScnReportWrite;

static void scn_report_free(ScnReportWrite *w)
{
    json_decref(w->rep);
    json_decref(w->audit);
    json_decref(w->summary);
    free(w->json_text);
    free(w->text);
    free(w);
}

static void scn_report_work(uv_work_t *req)
{
    ScnReportWrite *w = req->data;
    if (mkdir(w->dir, 0750) < 0 && errno != EEXIST) {
        w->result = -errno;
        return;
    }
    w->result = atomicfile_write(w->json_path, w->json_text, strlen(w->json_text), 0640);
    if (w->result == 0)
        w->result = atomicfile_write(w->text_path, w->text, strlen(w->text), 0640);
}

static void scn_report_done(uv_work_t *req, int status)
{
    ScnReportWrite *w = req->data;
    ScnRun *run = w->run;
    LogFields lf = {run->id, run->def->name, NULL};
    if (status < 0 && w->result == 0)
        w->result = status;
    if (w->result < 0) {
        events_emit(run->core->events, SEV_ERROR, "scenario.report", NULL, false, NULL,
                    "cannot write the incident report '%s': %s", w->json_path, err_str(w->result));
    } else {
        log_emit(LOG_NOTICE, "scenario", &lf, "incident report written to '%s'", w->json_path);
    }
    if (w->summary)
        json_array_append_new(run->s->history, w->summary);
    w->summary = NULL;
    scn_report_free(w);
    scn_run_unref(run);
}

json_t *scn_summary(const json_t *rep)
{
    static const char *const keys[] = {"run", "scenario", "mode", "status", "state", "reason", "detected_ms",
                                       "finished_ms", "rto_ms", "rpo_ms", "rto_met", "rpo_met", NULL};
    json_t *o = json_object();
    for (size_t i = 0; keys[i]; i++) {
        json_t *v = json_object_get(rep, keys[i]);
        if (v)
            json_object_set(o, keys[i], v);
    }
    return o;
}

static void scn_report_audit_work(uv_work_t *req)
{
    ScnReportWrite *w = req->data;
    w->audit_result = audit_read_records(w->audit_path, w->audit_from_ms, w->audit_to_ms, w->run->id,
                                         SCN_REPORT_AUDIT_MAX + 1, &w->audit);
}

/* The audit records are read: build the report with them and write it. */
static void scn_report_audit_done(uv_work_t *req, int status)
{
    ScnReportWrite *w = req->data;
    ScnRun *run = w->run;
    json_t *rep = w->rep;

    if (status < 0 && w->audit_result == 0)
        w->audit_result = status;
    json_t *au = json_pack("{s:I,s:I}", "from_ms", (json_int_t)w->audit_from_ms, "to_ms", (json_int_t)w->audit_to_ms);
    bool truncated = json_array_size(w->audit) > SCN_REPORT_AUDIT_MAX;
    if (truncated)
        json_array_remove(w->audit, 0);
    json_object_set_new(au, "records", w->audit ? w->audit : json_array());
    w->audit = NULL;
    json_object_set_new(au, "truncated", json_boolean(truncated));
    if (w->audit_result < 0)
        json_object_set_new(au, "error", json_string(err_str(w->audit_result)));
    json_object_set_new(rep, "audit", au);
    w->json_text = json_dumps(rep, JSON_INDENT(2) | JSON_SORT_KEYS);
    w->text = scn_report_text(rep);
    w->summary = scn_summary(rep);
    if (!w->json_text || !w->text) {
        events_emit(run->core->events, SEV_ERROR, "scenario.report", NULL, false, NULL,
                    "cannot write the incident report '%s': out of memory", w->json_path);
        scn_report_free(w);
        scn_run_unref(run);
        return;
    }
    if (uv_queue_work(run->core->loop, &w->req, scn_report_work, scn_report_done) < 0) {
        w->result = -ENOMEM;
        scn_report_done(&w->req, 0);
    }
}

void scn_write_report(ScnRun *run)
{
    ScnReportWrite *w = calloc(1, sizeof(*w));
    json_t *rep = scn_report_build(run, run->core->cfg->cluster); /* now: the engine run goes with the run's end */
    if (!w || !rep) {
        events_emit(run->core->events, SEV_ERROR, "scenario.report", NULL, false, NULL,
                    "cannot write the incident report of run %s: out of memory", run->id);
        free(w);
        json_decref(rep);
        return;
    }
    w->rep = rep;
    w->run = run;
    w->req.data = w;
    w->audit_from_ms = run->detected_ms;
    w->audit_to_ms = clock_wall_ms();
    scn_path(run->s, w->dir, sizeof(w->dir), "incidents", NULL, NULL);
    scn_path(run->s, w->json_path, sizeof(w->json_path), "incidents", run->id, ".json");
    scn_path(run->s, w->text_path, sizeof(w->text_path), "incidents", run->id, ".txt");
    /* this daemon's audit log (with ha: state_dir/nodes/NODE, docs/ha.md) */
    snprintf(w->audit_path, sizeof(w->audit_path), "%s/audit.log", run->core->cfg->node_dir);
    scn_run_ref(run);
    if (uv_queue_work(run->core->loop, &w->req, scn_report_audit_work, scn_report_audit_done) < 0) {
        w->audit_result = -ENOMEM;
        scn_report_audit_done(&w->req, 0);
    }
}
