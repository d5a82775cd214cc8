"""
Integration tests for drctl drill (docs/drills.md): the real daemon supervising the paper trading
platform on a real PostgreSQL 15. A drill restores the newest verified backup into a scratch
database, validates it, compares it with the exchange read-only, drops it and reports the RTO a
real run would have; the live side is untouched (the live database's row counts, the platform's
mode, the venue's request log: asserted). A drill of a damaged backup fails, says why and pages;
a recovery run starting during a drill aborts it; a daemon killed during a drill drops the scratch
database it left at its next start (nothing else). Readiness's drill and free-space checks follow.
"""
import json
import os
import urllib.request

from alert_receiver import Receiver
from drsup import wait_until
from pgharness import free_port
from trading_env import TradingEnv

SCN = "database_corruption"


def readiness(d):
    r = json.loads(d.ctl("--json", "readiness").stdout)
    return {c["check"]: c for c in r["checks"]}


def live_counts(env):
    return env.pg.psql("SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM fills), "
                       "(SELECT count(*) FROM positions)", db=env.db).strip()


def drill_dbs(env):
    return env.pg.psql("SELECT datname FROM pg_database WHERE datname LIKE '%\\_drill\\_%'").split()


def venue_actions(env):
    """The venue requests that act (anything but reads): halt, resume, shadow, close_all."""
    code, body = env.venue.get("/test/requests")
    assert code == 200, body
    return [r for r in body["requests"] if r["method"] != "GET"]


def test_drill_rehearses_without_touching_the_live_side(pg, tmp_path):
    rx = Receiver().start()
    port = free_port()
    env = TradingEnv(tmp_path, pg, extra={
        "alerts": {"webhook": {"url": rx.url("/hook")}, "group_window": "100ms"},
        "metrics": {"listen": "127.0.0.1:%d" % port},
        "detector": {"data_directory": pg.datadir},
    })
    try:
        env.start()
        d = env.daemon
        c = readiness(d)
        assert c["drill.database_corruption"]["status"] == "WARN", c["drill.database_corruption"]
        assert "no drill yet" in c["drill.database_corruption"]["evidence"]
        backup = d.ctl_json("backup", "now", "--wait", timeout=120)
        # trades after the backup: fills a real run would have to replay
        n0 = len(env.exchange_fill_ids())
        wait_until(lambda: len(env.exchange_fill_ids()) >= n0 + 10, timeout=20, what="trades after the backup")
        wait_until(lambda: readiness(d)["restore.free_space"]["status"] == "PASS", timeout=70,
                   what="the free space measured")

        # The platform stops placing orders (mode stays live) so the live database's counts hold still.
        env.venue.post("/test/pause")
        wait_until(lambda: env.venue.status()["db_pending"] == 0, timeout=20, what="venue caught up")
        before = live_counts(env)
        actions = venue_actions(env)

        p = d.ctl("--json", "drill", "--scenario", SCN, timeout=120)
        assert p.returncode == 0, (p.stdout, p.stderr, d.log()[-4000:])
        rep = json.loads(p.stdout)
        assert rep["ok"] is True and rep["outcome"] == "passed", rep
        assert [(s["step"], s["status"]) for s in rep["steps"]] == [
            ("select_backup", "PASS"), ("restore", "PASS"), ("validate", "PASS"), ("reconcile", "PASS"),
            ("drop_scratch", "PASS")], rep["steps"]
        assert rep["backup"]["name"] == backup["name"]
        assert rep["rto"]["estimate_ms"] > 0 and rep["rto"]["target_ms"] == 120000 and rep["rto"]["met"] is True
        assert rep["rto"]["estimate_ms"] >= rep["rto"]["restore_ms"] > 0
        # no incident yet: the halt's time is not known, and the report says so
        assert rep["rto"]["halt_ms"] is None and "halt_trading" in rep["rto"]["not_measured"]
        # read-only: the reconcile compared, counted what a real run would replay, replayed nothing
        assert rep["reconcile"]["mode"] == "compare" and rep["reconcile"]["actions_taken"] == []
        fills = {c["name"]: c for c in rep["reconcile"]["checks"]}["fills_complete"]["detail"]
        assert fills["missing_before"] >= 10 and fills["replayed"] == 0, fills
        assert "would replay" in rep["steps"][3]["detail"]
        assert [v["ok"] for v in rep["validation"]] == [True, True, True]
        # the live side: untouched
        assert live_counts(env) == before
        assert venue_actions(env) == actions
        assert env.venue.status()["mode"] == "live"
        assert drill_dbs(env) == [] and rep["scratch_dropped"] is True
        assert rep["scratch_database"].startswith("trading_drill_")
        # the report beside the incident reports, listed and shown; not an incident
        path = os.path.join(d.state_dir, "incidents", rep["id"] + ".json")
        assert json.load(open(path))["id"] == rep["id"]
        listed = d.ctl_json("drills")
        assert [x["id"] for x in listed["drills"]] == [rep["id"]] and listed["last"][SCN]["ok"] is True
        assert d.ctl_json("incidents")["incidents"] == []
        txt = d.ctl("drill-report", rep["id"]).stdout
        assert "DRILL PASSED" in txt and "drop_scratch" in txt and "RTO estimate" in txt, txt
        c = readiness(d)
        assert c["drill.database_corruption"]["status"] == "PASS", c["drill.database_corruption"]
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
        assert 'drsupervisor_drill_last_success{scenario="database_corruption"} 1' in body
        assert 'drsupervisor_drill_last_rto_seconds{scenario="database_corruption"}' in body

        # The free-space rule with an impossible factor: FAIL.
        d.write_config(d.config | {"drills": {"free_space_factor": "1e15",
                                              "schedule": [{"cron": "0 4 1 * *", "scenario": SCN}]}})
        assert d.ctl("reload").returncode == 0
        # ... and a monthly drill scheduled: its next minute is 04:00 UTC on the 1st
        sched = d.ctl_json("drills")["schedule"]
        assert [(x["cron"], x["scenario"]) for x in sched] == [("0 4 1 * *", SCN)], sched
        assert sched[0]["next_at"][8:16] == "01T04:00", sched
        assert "scheduled: database_corruption at " in d.ctl("drills").stdout
        wait_until(lambda: readiness(d)["restore.free_space"]["status"] == "FAIL", timeout=20,
                   what="the free space judged against the factor")
        assert "drills.free_space_factor" in readiness(d)["restore.free_space"]["evidence"]

        # The newest backup's file damaged: the drill fails, says so, pages; readiness fails.
        f = os.path.join(env.config()["backup"]["directory"], backup["name"])
        with open(f, "r+b") as fh:
            fh.seek(os.path.getsize(f) // 2)
            b = fh.read(16)
            fh.seek(os.path.getsize(f) // 2)
            fh.write(bytes(x ^ 0xFF for x in b))
        p = d.ctl("--json", "drill", "--scenario", SCN, timeout=120)
        rep2 = json.loads(p.stdout)
        assert p.returncode == 1 and rep2["ok"] is False and rep2["outcome"] == "failed", rep2
        steps = {s["step"]: s for s in rep2["steps"]}
        assert steps["restore"]["status"] == "FAIL" and "corrupt" in steps["restore"]["detail"], steps["restore"]
        assert "validate" not in steps and steps["drop_scratch"]["status"] == "PASS"
        assert rep2["failure"].startswith("restore:") and rep2["rto"]["estimate_ms"] is None
        assert drill_dbs(env) == []
        wait_until(lambda: any(r.json and "drill.failed:database_corruption" in json.dumps(r.json)
                               for r in rx.got("/hook")), timeout=20, what="the failed drill paged")
        c = readiness(d)["drill.database_corruption"]
        assert c["status"] == "FAIL" and "failed" in c["evidence"], c
        assert live_counts(env) == before and venue_actions(env) == actions

        # A recovery run starting during a drill aborts the drill and runs itself. The drill's
        # validation made slow so that the run arrives while it is in flight.
        d.ctl_json("backup", "now", "--wait", timeout=120)
        cfg = d.config
        cfg["scenarios"][SCN]["validation_queries"] = ["SELECT pg_sleep(5) IS NOT NULL"]
        d.write_config(cfg)
        assert d.ctl("reload").returncode == 0
        started = d.ctl_json("drill", "--scenario", SCN, "--detach")
        did = started["id"]
        wait_until(lambda: "drill step restore PASS" in d.log() and did in d.log().split("drill step restore PASS")[-1]
                   .split("\n")[0], timeout=20, what="the drill validating")
        rid = d.ctl_json("execute", "--scenario", SCN, "--manual", "--reason", "real incident during a drill")["run"]
        rep3 = wait_until(lambda: (lambda r: r if r.get("outcome") else None)(
            json.loads(d.ctl("--json", "drill-report", did).stdout or "{}")), timeout=20, what="the drill aborted")
        assert rep3["outcome"] == "aborted" and "recovery" in rep3["failure"], rep3
        steps = {s["step"]: s for s in rep3["steps"]}
        assert steps["validate"]["status"] == "ABORTED" and steps["drop_scratch"]["status"] == "PASS", steps
        assert "reconcile" not in steps and drill_dbs(env) == []
        assert d.ctl_json("run", rid)["status"] not in ("succeeded", "failed", "aborted")
        wait_until(lambda: env.venue.status()["mode"] == "halted", timeout=20, what="the real run halting")
        assert d.ctl("abort", rid, "--reason", "test over").returncode == 0

        # The daemon stopped during a drill: the drill is aborted, its scratch database dropped,
        # and the daemon exits cleanly (exit 0; nothing leaked under SANITIZE). That drill takes
        # the halt's time from the run's incident report.
        wait_until(lambda: os.path.exists(os.path.join(d.state_dir, "incidents", rid + ".json")), timeout=20,
                   what="the run's incident report")
        # The daemon SIGKILLed during a drill leaves its scratch database: the next start drops it,
        # and only it (a database merely named like one, not of the drill's form, stays).
        kid = wait_until(lambda: (lambda p: json.loads(p.stdout)["id"] if p.returncode == 0 else None)(
            d.ctl("--json", "drill", "--scenario", SCN, "--detach")), timeout=20, what="a drill to kill")
        wait_until(lambda: kid in d.log() and "drill step restore PASS" in d.log().split(kid, 1)[1], timeout=20,
                   what="the drill to kill validating")
        d.kill9()
        left = drill_dbs(env)
        assert len(left) == 1 and left[0].startswith(env.db + "_drill_"), left
        decoy = env.db + "_drill_keep_me"
        pg.psql('CREATE DATABASE "%s"' % decoy)
        d.start()
        wait_until(lambda: "dropped the leftover scratch database '%s'" % left[0] in d.log(), timeout=30,
                   what="the leftover scratch database dropped")
        assert drill_dbs(env) == [decoy], drill_dbs(env)
        pg.psql('DROP DATABASE "%s"' % decoy)

        did = wait_until(lambda: (lambda p: json.loads(p.stdout)["id"] if p.returncode == 0 else None)(
            d.ctl("--json", "drill", "--scenario", SCN, "--detach")), timeout=20, what="a drill after the run")
        wait_until(lambda: did in d.log() and "drill step restore PASS" in d.log().split(did, 1)[1], timeout=20,
                   what="the last drill validating")
        env.stop()
        assert drill_dbs(env) == []
        last = json.load(open(os.path.join(d.state_dir, "incidents", did + ".json")))
        assert last["outcome"] == "aborted" and last["rto"]["halt_from"] == rid and last["rto"]["halt_ms"] > 0, last["rto"]
    finally:
        env.cleanup()
        rx.stop()
