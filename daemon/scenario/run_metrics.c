/*
 * scn_metrics: the scenarios' Prometheus families (see scn_internal.h and docs/metrics.md).
 *
 * Owns what /metrics says about recovery runs, all derived at scrape time from the history of
 * finished runs (s->history: one summary per incident report in state_dir/incidents, read at start
 * by the scan, and one more as each run's report is written), so the counts survive a restart and
 * say exactly what the reports on disk say: runs by scenario and outcome, and the newest run's RTO,
 * RPO and end per scenario; beside them each scenario's configured targets. Dry runs write no
 * report and are not counted. The run families are left out until the start-up scan has read the
 * reports. Reads memory only: a scrape never does I/O.
 */
#include <math.h>
#include <string.h>

#include "scenario/scn_internal.h"

/* How a run can end (lib/fsm's status names). */
static const char *const scn_outcomes[] = {"succeeded", "failed", "aborted", "handed_off"};
#define SCN_N_OUTCOMES (sizeof(scn_outcomes) / sizeof(scn_outcomes[0]))

/* The newest finished run of `scenario` in the history (by end, then by position), or NULL. */
static const json_t *scn_metrics_last(const json_t *history, const char *scenario)
{
    const json_t *best = NULL, *h;
    json_int_t best_end = 0;
    size_t i;

    json_array_foreach(history, i, h) {
        const char *name = json_string_value(json_object_get(h, "scenario"));
        json_int_t end = json_integer_value(json_object_get(h, "finished_ms"));
        if (name && !strcmp(name, scenario) && (!best || end >= best_end)) {
            best = h;
            best_end = end;
        }
    }
    return best;
}

/* A summary's duration in ms as seconds; NaN when the run did not reach it (null). */
static double scn_metrics_seconds(const json_t *summary, const char *key)
{
    const json_t *v = json_object_get(summary, key);
    return json_is_integer(v) ? (double)json_integer_value(v) / 1000.0 : NAN;
}

/* One target of every configured scenario (the running configuration's). */
static void scn_metrics_targets(MetricsWriter *w, const Scenarios *s, const char *family, const char *help, bool rpo)
{
    metrics_family(w, family, METRIC_GAUGE, help);
    for (size_t k = 0; k < scenario_count(); k++) {
        const ConfigScenario *sc = config_scenario(s->core->cfg, scenario_at(k)->name);
        const char *const l[][2] = {{"scenario", scenario_at(k)->name}};
        if (sc)
            metrics_sample(w, family, l, 1, (double)(rpo ? sc->rpo_ms : sc->rto_ms) / 1000.0);
    }
}

static void scn_metrics_collect(MetricsWriter *w, void *data)
{
    const Scenarios *s = data;
    size_t n = scenario_count(), i;
    const json_t *h;

    scn_metrics_targets(w, s, "drsupervisor_scenario_rto_target_seconds", "the scenario's configured RTO target", false);
    scn_metrics_targets(w, s, "drsupervisor_scenario_rpo_target_seconds", "the scenario's configured RPO target", true);
    /* Until the start-up scan has read the reports, the counts would read 0 and then jump: a
     * false reset and as many false runs for rate(). The families wait for the scan instead. */
    if (s->loading)
        return;
    metrics_family(w, "drsupervisor_scenario_runs_total", METRIC_COUNTER,
                   "finished recovery runs by scenario and outcome, counted from the incident reports in "
                   "state_dir/incidents (dry runs are not counted)");
    for (size_t k = 0; k < n; k++) {
        const char *name = scenario_at(k)->name;
        unsigned long count[SCN_N_OUTCOMES] = {0};
        json_array_foreach(s->history, i, h) {
            const char *sc = json_string_value(json_object_get(h, "scenario"));
            const char *st = json_string_value(json_object_get(h, "status"));
            for (size_t o = 0; sc && st && !strcmp(sc, name) && o < SCN_N_OUTCOMES; o++)
                count[o] += !strcmp(st, scn_outcomes[o]);
        }
        for (size_t o = 0; o < SCN_N_OUTCOMES; o++) {
            const char *const l[][2] = {{"scenario", name}, {"outcome", scn_outcomes[o]}};
            metrics_sample(w, "drsupervisor_scenario_runs_total", l, 2, (double)count[o]);
        }
    }
    static const struct {
        const char *name, *key, *help;
    } last[] = {
        {"drsupervisor_scenario_last_rto_seconds", "rto_ms",
         "RTO of the scenario's newest finished run: detection to trading live (NaN: it did not get there)"},
        {"drsupervisor_scenario_last_rpo_seconds", "rpo_ms",
         "RPO of the scenario's newest finished run: restore point to detection (NaN: it restored nothing)"},
        {"drsupervisor_scenario_last_run_timestamp_seconds", "finished_ms",
         "when the scenario's newest finished run ended, Unix time"},
    };
    for (size_t m = 0; m < sizeof(last) / sizeof(last[0]); m++) {
        metrics_family(w, last[m].name, METRIC_GAUGE, last[m].help);
        for (size_t k = 0; k < n; k++) {
            const json_t *run = scn_metrics_last(s->history, scenario_at(k)->name);
            const char *const l[][2] = {{"scenario", scenario_at(k)->name}};
            if (run)
                metrics_sample(w, last[m].name, l, 1, scn_metrics_seconds(run, last[m].key));
        }
    }
}

int scn_metrics_register(Scenarios *s)
{
    return s->core->metrics ? metrics_register(s->core->metrics, scn_metrics_collect, s) : 0;
}
