"""
Alert conditions around a recovery run (issue 10): the real daemon, a real PostgreSQL 15, the fake
venue and the alert receiver double (PagerDuty, Slack, webhook).

- A corruption the detector confirms by itself starts a run that succeeds: its own rename of the
  database is attributed to it (status, report, an event of the run) and pages nothing (no
  database.down, no detector.unreachable), and every condition that paged is resolved at its end.
- A real outage of another kind during a run (the server stopped: connection refused) still
  pages; when the server answers only after the run ended, the conditions still close.
- A failed (aborted) run's scenario condition closes when trading is live again.
- An outage the daemon was killed in closes on the first answer after its restart.
- An escalated halt (venue.halt) that the daemon died before seeing confirmed closes with the
  confirmation of the halt re-asserted after the restart.
"""
import os

import pytest

from drsup import Daemon, wait_until
from fakevenue import FakeVenue
from test_scenario import backup_now, fill_db, loaded, scenario_config

ROUTING_KEY = "R0123456789abcdef0123456789abcd"

# The corruption the detector finds: a check that fails with XX001 once a marker table exists
# (created after the backup, so the restored database is clean).
DAMAGE_CHECK = """
CREATE FUNCTION drsup_damage_check() RETURNS int LANGUAGE plpgsql AS $$
BEGIN
  IF to_regclass('public.damage_marker') IS NOT NULL THEN
    RAISE EXCEPTION 'invalid page in block 7 of relation base/5/16384' USING ERRCODE = 'XX001';
  END IF;
  RETURN 1;
END $$;
"""


@pytest.fixture
def venue():
    v = FakeVenue()
    yield v
    v.close()


def secret(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text + "\n")
    os.chmod(p, 0o600)
    return str(p)


def make_daemon(pg, tmp_path, venue, rx, detector, database=None, reconcile=None):
    cfg = scenario_config(pg, tmp_path, venue)
    cfg["database"].update(database or {})
    cfg.setdefault("reconcile", {}).update(reconcile or {})
    cfg["detector"] = detector
    cfg["alerts"] = {
        "source": "testhost",
        "pagerduty": {"routing_key_file": secret(tmp_path, "pd.key", ROUTING_KEY), "url": rx.url("/pd")},
        "webhook": {"url": rx.url("/hook")},
        "retry": {"base": "100ms", "cap": "400ms"},
        "repeat_interval": "1h",
        # The default routes: error and worse, everywhere.
    }
    return Daemon(tmp_path, cfg)


def webhook_events(rx):
    return [r.json["event"] for r in rx.got("/hook", 200)]


def triggers(rx, cond=None):
    return [e for e in webhook_events(rx) if e["condition"] and not e["resolved"]
            and (cond is None or e["condition"] == cond)]


def drained(d):
    a = d.ctl_json("alerts")
    return a if not a["outbox"] else None


def assert_every_trigger_resolved(rx):
    """On each channel, every condition that was triggered ends with a resolve, in order."""
    evs = webhook_events(rx)
    for cond in {e["condition"] for e in evs if e["condition"]}:
        seq = [e["resolved"] for e in evs if e["condition"] == cond]
        assert seq[-1] is True, (cond, seq)
    pd = [r.json for r in rx.got("/pd", 202)]
    for key in {p["dedup_key"] for p in pd if ":event:" not in p["dedup_key"]}:
        seq = [p["event_action"] for p in pd if p["dedup_key"] == key]
        assert seq[-1] == "resolve", (key, seq)


def test_detected_corruption_run_pages_no_outage_and_closes_every_condition(pg, tmp_path, venue, rx):
    fill_db(pg)
    pg.psql(DAMAGE_CHECK, db="shop")
    d = make_daemon(pg, tmp_path, venue, rx, {
        "halt_after": 2, "corruption_queries": ["SELECT drsup_damage_check()"], "corruption_interval": "300ms"})
    try:
        loaded(d.start())
        backup_now(d)
        wait_until(lambda: d.ctl_json("status")["detector"].get("last_check_ok") is True, what="a clean check")
        pg.psql("CREATE TABLE damage_marker ()", db="shop")
        runs = wait_until(lambda: d.ctl_json("runs")["runs"], timeout=20, what="a recovery run")
        rid = runs[0]["run"]
        run = wait_until(lambda: (lambda r: r if r["status"] in ("succeeded", "failed", "aborted") else None)(
            d.ctl_json("run", rid)), timeout=120, what="the run to finish")
        assert run["status"] == "succeeded", d.log()[-4000:]
        wait_until(lambda: drained(d), timeout=15, what="every alert delivered")
        # It paged what happened: the corruption and the recovery...
        assert triggers(rx, "detector.corruption:test") and triggers(rx, "scenario:database_corruption:test")
        # ...and not the run's own rename of 'shop'.
        assert triggers(rx, "database.down:test") == [] and triggers(rx, "detector.unreachable:test") == [], \
            [e["summary"] for e in triggers(rx)]
        assert not [r for r in rx.got("/pd") if "does not exist" in r.body.decode()]
        # Every condition that paged is resolved at the end of the successful run.
        assert_every_trigger_resolved(rx)
        assert d.ctl_json("alerts")["conditions"] == []
        assert "open_conditions" not in d.ctl_json("status")["detector"]
        # The rename was seen, attributed to the run, and shown.
        st = d.ctl_json("status")
        exp = st["components"]["database"]["expected"]
        assert exp["failures"] >= 1 and rid in exp["attributed_to"], exp
        assert st["components"]["database"]["health"] == "up"
        rep = wait_until(lambda: (lambda p: os.path.exists(p) and __import__("json").load(open(p)))(
            os.path.join(d.state_dir, "incidents", rid + ".json")), what="the incident report")
        (att,) = rep["attributed"]
        assert att["database"] == "shop" and att["attributed"] >= 1 and att["step"] == "preserve_evidence", att
        assert att["declared_ms"] <= att["first_ms"] <= att["last_ms"] <= att["ended_ms"]
        assert "Attributed to the run" in d.ctl("incident", rid).stdout
        run_text = d.ctl("run", rid).stdout
        assert "attributed to the run (observed, not paged)" in run_text and "of 'shop' from step preserve_evidence" \
            in run_text, run_text
        log = d.log()
        assert "declared on the recovery lease" in log
        assert "database probe failed as the recovery run declared" in log and f"run={rid}" in log
        assert "[detector.corruption] resolved: corruption handled: recovery run " + rid in log
        d.stop()
    finally:
        d.cleanup()


def test_a_real_outage_during_a_run_pages_and_closes_after_the_run(pg, tmp_path, venue, rx):
    """Manual run: at the first gate 'shop' is renamed away (attributed, no page). At the last gate
    the server itself stops (connection refused: not the run's doing) and pages; the run goes live
    and ends while the server is still down, so the first answer comes after the run ended (the
    detector was re-armed in between): both conditions are resolved all the same."""
    fill_db(pg)
    # halt_after 12 at 250 ms: after the run ends the re-armed detector needs 3 s of failures
    # before it sees a new outage, so the server's return lands in that window.
    # No post-resume watch: the run must end while the server is still down (a watch would find it
    # down and fail the run, which test_post_resume_watch covers).
    d = make_daemon(pg, tmp_path, venue, rx, {"halt_after": 12},
                    database={"probe_interval": "250ms", "connect_timeout": "1s", "probe_timeout": "1s"},
                    reconcile={"post_resume_checks": []})
    try:
        loaded(d.start())
        backup_now(d)
        rid = d.ctl_json("execute", "--scenario", "database_corruption", "--manual")["run"]
        wait_until(lambda: d.ctl_json("run", rid)["status"] == "waiting_approval", timeout=30, what="the first gate")
        assert "shop" not in pg.psql("SELECT datname FROM pg_database").split()
        # Several probes of the missing 'shop' went by: attributed, not down, nothing paged.
        wait_until(lambda: d.ctl_json("status")["components"]["database"].get("expected", {}).get("failures", 0) >= 4,
                   what="probe failures attributed to the run")
        st = d.ctl_json("status")["components"]["database"]
        assert st["health"] == "up" and "does not exist" in st["expected"]["message"], st
        assert triggers(rx, "database.down:test") == [] and triggers(rx, "detector.unreachable:test") == []
        for gate in ("validated", "trading_in_shadow"):
            assert d.ctl("approve", rid).returncode == 0
            wait_until(lambda: (lambda r: r["status"] == "waiting_approval" and r["state"] == gate)(
                d.ctl_json("run", rid)), timeout=60, what="the gate at " + gate)
        # A real failure of another kind during the run: the server goes away.
        pg.stop(mode="immediate")
        wait_until(lambda: triggers(rx, "database.down:test") and triggers(rx, "detector.unreachable:test"),
                   timeout=20, what="the outage paged during the run")
        assert d.ctl("approve", rid).returncode == 0
        wait_until(lambda: d.ctl_json("run", rid)["status"] == "succeeded", timeout=30, what="the run to succeed")
        pg.start()
        wait_until(lambda: d.ctl_json("status")["components"]["database"]["health"] == "up", timeout=20,
                   what="the database answering again")
        wait_until(lambda: drained(d) and not [c for c in d.ctl_json("alerts")["conditions"]
                                               if c["condition"].startswith(("database.", "detector."))],
                   timeout=15, what="the outage conditions resolved")
        assert_every_trigger_resolved(rx)
        assert d.ctl_json("alerts")["conditions"] == []
        assert "open_conditions" not in d.ctl_json("status")["detector"]
        d.stop()
    finally:
        d.cleanup()


def test_an_aborted_runs_condition_closes_when_trading_is_live_again(pg, tmp_path, venue, rx):
    fill_db(pg)
    d = make_daemon(pg, tmp_path, venue, rx, {"halt_after": 1000})
    try:
        loaded(d.start())
        rid = d.ctl_json("execute", "--scenario", "database_corruption", "--manual")["run"]
        wait_until(lambda: triggers(rx, "scenario:database_corruption:test"), what="the recovery paged")
        assert d.ctl("abort", rid, "--reason", "the operator takes over").returncode == 0
        wait_until(lambda: d.ctl_json("run", rid)["status"] == "aborted", what="the run aborted")
        wait_until(lambda: drained(d), what="deliveries")
        assert "scenario:database_corruption:test" in [c["condition"] for c in d.ctl_json("alerts")["conditions"]]
        # The operator recovers by hand and resumes: trading is live, the incident is over.
        p = d.ctl("resume", "--force", "--reason", "recovered by hand")
        assert p.returncode == 0, p.stderr
        wait_until(lambda: [e for e in webhook_events(rx)
                            if e["condition"] == "scenario:database_corruption:test" and e["resolved"]],
                   timeout=15, what="the scenario condition resolved")
        assert "scenario:database_corruption:test" not in [c["condition"] for c in d.ctl_json("alerts")["conditions"]]
        assert "trading is live again after the last database_corruption run failed" in d.log()
        d.stop()
    finally:
        d.cleanup()


def test_an_escalated_halt_resolves_when_confirmed_after_a_restart(tmp_path, venue, rx):
    """venue.halt:C opens when the platform does not confirm a halt; the daemon dies before it does;
    after the restart the halt is re-asserted and confirmed: that confirmation resolves it."""
    venue.down = True                      # every request answered 503: the halt is never confirmed
    d = Daemon(tmp_path, {"venue": venue.config(), "detector": {"halt_after": 1000},
                          "alerts": {"pagerduty": {"routing_key_file": secret(tmp_path, "pd.key", ROUTING_KEY),
                                                   "url": rx.url("/pd")},
                                     "webhook": {"url": rx.url("/hook")},
                                     "retry": {"base": "100ms", "cap": "400ms"}}})
    try:
        d.start()
        p = d.ctl("halt", "--reason", "operator drill", "-t", "1s")
        assert p.returncode != 0  # not confirmed within the answer's time
        wait_until(lambda: triggers(rx, "venue.halt:test"), timeout=15, what="the escalated halt paged")
        wait_until(lambda: drained(d), what="the page delivered")
        d.kill9()
        venue.down = False
        d.start()
        wait_until(lambda: [e for e in webhook_events(rx) if e["condition"] == "venue.halt:test" and e["resolved"]],
                   timeout=15, what="venue.halt resolved by the confirmation after the restart")
        assert venue.mode == "halted"
        assert "venue.halt:test" not in [c["condition"] for c in d.ctl_json("alerts")["conditions"]]
        d.stop()
    finally:
        d.cleanup()


def test_an_outage_left_open_by_a_killed_daemon_closes_on_the_first_answer_after_the_restart(pg, tmp_path, venue,
                                                                                               rx):
    d = Daemon(tmp_path, {"database": {"conninfo": pg.conninfo(), "probe_interval": "250ms", "connect_timeout": "1s"},
                          "venue": venue.config(), "detector": {"halt_after": 2},
                          "alerts": {"pagerduty": {"routing_key_file": secret(tmp_path, "pd.key", ROUTING_KEY),
                                                   "url": rx.url("/pd")},
                                     "webhook": {"url": rx.url("/hook")},
                                     "retry": {"base": "100ms", "cap": "400ms"}}})
    try:
        d.start()
        wait_until(lambda: d.ctl_json("status")["components"]["database"]["health"] == "up", what="first probe")
        pg.stop(mode="immediate")
        wait_until(lambda: triggers(rx, "detector.unreachable:test"), timeout=15, what="the outage paged")
        wait_until(lambda: drained(d), what="the page delivered")
        d.kill9()
        pg.start()
        d.start()
        wait_until(lambda: [e for e in webhook_events(rx) if e["condition"] == "detector.unreachable:test"
                            and e["resolved"]], timeout=15, what="detector.unreachable resolved after the restart")
        assert_every_trigger_resolved(rx)
        assert d.ctl_json("alerts")["conditions"] == []
        assert "the first answer since the daemon started" in d.log()
        d.stop()
    finally:
        d.cleanup()


def test_a_backup_condition_left_open_by_a_killed_daemon_closes_after_the_restart(pg, tmp_path, venue, rx):
    fill_db(pg)
    d = make_daemon(pg, tmp_path, venue, rx, {"halt_after": 1000})
    d.config["backup"]["watch"] = {"max_age": "1s"}   # no backup yet: too old after a second
    d.write_config()
    try:
        d.start()
        wait_until(lambda: triggers(rx, "backup.age:test"), timeout=20, what="backup.age paged")
        wait_until(lambda: drained(d), what="the page delivered")
        d.kill9()
        d.config["backup"]["watch"] = {"max_age": "1h"}  # the cause is gone
        d.write_config()
        d.start()
        wait_until(lambda: [e for e in webhook_events(rx) if e["condition"] == "backup.age:test" and e["resolved"]],
                   timeout=20, what="backup.age resolved after the restart")
        assert "backup.age:test" not in [c["condition"] for c in d.ctl_json("alerts")["conditions"]]
        d.stop()
    finally:
        d.cleanup()
