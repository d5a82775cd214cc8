"""
The data_loss scenario (docs/scenarios.md, docs/data-loss.md) against a real PostgreSQL 15, the
daemon's own WAL archive and a physical base backup, with the paper trading platform trading on
the cluster (test_pitr.py's set-up, one cluster for the module).

- drctl execute --scenario data_loss --before T with a T past the end of the archive, and without
  --before, is refused with the reason: no run starts, trading is not halted;
- a watched table t (limit: 20 % or 1000 rows between two probes) shrinks by 100 of 2500 rows: a
  legitimate shrink, no run, the detector's last good observation follows it;
- then a DELETE of 90 % of it: detected, trading halted, the evidence recorded, the cluster
  recovered to the last good observation and switched in: the rows are back on the primary's
  port (the old data directory kept), the run waits at the approval gate with trading in shadow;
  drctl approve: live, the run succeeds; its report has the rows lost and recovered, the target
  and the RPO, and the detector's condition is resolved; its reconcile compared the exchange's
  fills since the target minus reconcile.restore_point_margin, not every fill of the module;
- then DROP TABLE t (the cluster on its new timeline): a loss of every row, recovered the same way,
  with the daemon SIGKILLed right after record_evidence committed (the run resumes).
"""
import datetime
import os
import time

import pytest

from drsup import wait_until
from pgharness import PgCluster
from test_pitr import PitrEnv
from test_wal import wait_streaming


def epoch_ms(iso):
    """The paper venue's executed_at (RFC 3339, UTC, "Z") as epoch ms."""
    t = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return int(t.timestamp() * 1000)


class LossEnv(PitrEnv):
    def config(self):
        cfg = super().config()
        cfg["detector"]["watched_tables"] = [
            {"name": "t", "table": "public.t", "max_drop_percent": 20, "max_drop_rows": 1000}]
        cfg["detector"]["watched_interval"] = "200ms"
        # the reconcile compares the fills since the target minus this (default 5m: longer than the module)
        cfg["reconcile"]["restore_point_margin"] = "2s"
        section = dict(cfg["scenarios"]["point_in_time"])
        section["validation_queries"] = ["SELECT count(*) > 0 FROM orders"]
        cfg["scenarios"]["data_loss"] = section
        return cfg

    def watched(self):
        return self.daemon.ctl_json("status")["detector"]["watched_tables"][0]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    pg = PgCluster()
    pg.init()
    pg.start()
    e = LossEnv(tmp_path_factory.mktemp("data_loss"), pg)
    try:
        e.start()
        wait_streaming(e.daemon)
        e.write(2000, "base")
        e.daemon.ctl_json("backup", "now", "--physical", "--wait", timeout=120)
        e.write(500, "before")
        yield e
    finally:
        e.cleanup()
        pg.cleanup()


def test_operator_trigger_refused_when_the_target_cannot_be_reached(env):
    d = env.daemon
    p = d.ctl("execute", "--scenario", "data_loss", "--before", "2099-01-01T00:00:00Z")
    assert p.returncode == 1 and "not possible" in p.stderr and "archive ends" in p.stderr, p.stdout + p.stderr
    p = d.ctl("execute", "--scenario", "data_loss")
    assert p.returncode == 1 and "needs --before" in p.stderr, p.stdout + p.stderr
    # the dry run plans the whole table and changes nothing
    p = d.ctl("execute", "--scenario", "data_loss", "--dry-run")
    assert p.returncode == 0 and "approve_resume" in p.stdout and "record_evidence" in p.stdout, p.stdout + p.stderr
    assert d.ctl_json("runs")["runs"] == []
    assert env.venue.status()["mode"] == "live" and not env.side_servers()


def test_rows_deleted_from_a_watched_table_are_recovered(env):
    d = env.daemon
    wait_until(lambda: env.watched().get("last_good") == 2500, timeout=20, what="t observed with 2500 rows")
    # a legitimate shrink within the limit: no loss, the baseline follows it
    env.pg.psql("DELETE FROM t WHERE id IN (SELECT id FROM t WHERE tag = 'before' ORDER BY id LIMIT 100)", db=env.db)
    wait_until(lambda: env.watched().get("last_good") == 2400, timeout=20, what="the shrink observed")
    assert d.ctl_json("runs")["runs"] == [] and env.venue.status()["mode"] == "live"
    good_ms = env.watched()["last_good_ms"]
    assert "watched t" in d.ctl("status").stdout and "floor 1920" in d.ctl("status").stdout

    # fills from before the reconcile's window (target minus the 2 s margin) exist on the exchange
    wait_until(lambda: (lambda f: f and epoch_ms(f[0]["executed_at"]) < time.time() * 1000 - 3000)(
        env.venue.get("/fills?since=0")[1]["fills"]), timeout=30, interval=0.2, what="a fill older than 3 s")
    env.pg.psql("DELETE FROM t WHERE id % 10 <> 0", db=env.db)
    runs = wait_until(lambda: d.ctl_json("runs")["runs"] or None, timeout=20, what="a data_loss run")
    rid = runs[0]["run"]
    assert runs[0]["scenario"] == "data_loss", runs
    run = wait_until(lambda: (lambda r: r if r["status"] in ("waiting_approval", "succeeded", "failed", "aborted",
                                                             "held") else None)(env.run(rid)),
                     timeout=120, interval=0.3, what="the approval gate")
    assert run["status"] == "waiting_approval" and run["state"] == "trading_in_shadow", \
        (run, "\n".join(l for l in d.log().splitlines() if "scenario" in l)[-6000:])
    # the rows are back on the primary's port, the old cluster kept, trading only in shadow
    assert env.rows() == ["base|2000", "before|400"], env.rows()
    assert os.path.isdir(env.pg.datadir + ".before-" + rid)
    assert env.venue.status()["mode"] == "shadow"
    assert d.ctl("approve", rid).returncode == 0
    run = env.wait_run(rid, ("succeeded", "failed", "aborted", "held"))
    assert run["status"] == "succeeded", (run, "\n".join(l for l in d.log().splitlines() if "scenario" in l)[-6000:])
    wait_until(lambda: env.venue.status()["mode"] == "live", timeout=30, what="trading live again")

    rep = env.run_report(rid)
    loss = rep["data_loss"]
    assert loss["source"] == "detector" and loss["target_ms"] >= good_ms, loss
    assert rep["restore_point_ms"] == loss["target_ms"] and rep["rpo_ms"] == rep["detected_ms"] - loss["target_ms"]
    [t] = loss["tables"]
    assert (t["name"], t["last_good"], t["floor"], t["after_loss"]) == ("t", 2400, 1920, 240), t
    assert t["rows_lost"] == 2160 and t["recovered_value"] == 2400 and t["rows_recovered"] == 2160, t
    # the reconcile's window: the fills since the target minus the margin, not every fill ever
    since = rep["reconcile"]["since_ms"]
    assert since == loss["target_ms"] - 2000, (since, loss["target_ms"])
    fills = env.venue.get("/fills?since=0")[1]["fills"]
    older = [f for f in fills if epoch_ms(f["executed_at"]) < since]
    assert older and len(older) < len(fills), (len(older), len(fills))
    [compared] = [c for c in rep["reconcile"]["checks"] if c["name"] == "fills_complete"]
    assert 0 < compared["detail"]["exchange_fills"] <= len(fills) - len(older), (compared, len(fills), len(older))
    steps = [s["step"] for s in rep["timeline"]]
    assert steps.index("halt_trading") < steps.index("record_evidence") < steps.index("restore_base_backup") \
        < steps.index("switch_cluster") < steps.index("reconcile") < steps.index("approve_resume") \
        < steps.index("resume_live"), steps
    wait_until(lambda: "detector.data_loss:paper" not in d.ctl_json("status")["detector"].get("open_conditions", []),
               timeout=10, what="the data-loss condition resolved")


def test_a_dropped_watched_table_is_recovered_across_a_crash(env):
    """After the first run (the cluster now on timeline 2): DROP TABLE t is a loss of every row; the
    daemon killed right after record_evidence committed resumes the run with its journaled target."""
    d = env.daemon
    d.stop()
    d.start(env={"DRSUP_CRASH_AFTER_EVENT": "commit:record_evidence"})
    wait_until(lambda: env.watched().get("last_good") == 2400, timeout=20, what="a baseline after the start")
    env.pg.psql("DROP TABLE t", db=env.db)
    wait_until(lambda: d.proc.poll() is not None, timeout=60, what="the crash after record_evidence")
    assert d.proc.returncode == -9, d.log()[-3000:]
    d.kill9()
    assert env.venue.status()["mode"] == "halted"
    d.start()
    run = wait_until(lambda: (lambda r: r[0] if r and r[0]["scenario"] == "data_loss" and r[0].get("active") and
                              r[0]["status"] == "waiting_approval" else None)(d.ctl_json("runs")["runs"]),
                     timeout=120, interval=0.3, what="the second run at its approval gate")
    rid = run["run"]
    assert env.rows() == ["base|2000", "before|400"], env.rows()
    assert d.ctl("approve", rid).returncode == 0
    run = env.wait_run(rid, ("succeeded", "failed", "aborted", "held"))
    assert run["status"] == "succeeded", (run, "\n".join(l for l in d.log().splitlines() if "scenario" in l)[-6000:])
    [t] = env.run_report(rid)["data_loss"]["tables"]
    assert (t["after_loss"], t["rows_lost"], t["recovered_value"]) == ("gone", 2400, 2400), t
    d.stop()
