"""
Integration tests for drills.schedule (docs/drills.md), end to end: the real daemon supervising the
paper trading platform on a real PostgreSQL 15, one prepared platform and verified backup shared by
the file. A drill fires by itself at its cron minute: the schedule's clock is skewed with the
DRSUP_TEST_SCHEDULE_SKEW_S test hook (docs/engine.md) so that the next minute boundary is a few
seconds after the daemon starts instead of up to a minute. A scheduled drill runs, writes its report
(trigger "schedule") and leaves the live side alone; a failing scheduled drill pages
drill.failed:<scenario>.
"""
import copy
import json
import math
import os
import time

import pytest

from alert_receiver import Receiver
from drsup import wait_until
from pgharness import PgCluster
from trading_env import TradingEnv

SCN = "database_corruption"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    pg = PgCluster()
    pg.init()
    pg.start()
    rx = Receiver().start()
    e = TradingEnv(tmp_path_factory.mktemp("drill_schedule"), pg, extra={
        "alerts": {"webhook": {"url": rx.url("/hook")}, "group_window": "100ms"},
    })
    e.rx = rx
    try:
        e.start()
        e.daemon.ctl_json("backup", "now", "--wait", timeout=120)
        e.base_config = copy.deepcopy(e.daemon.config)
        e.daemon.stop()
        yield e
    finally:
        e.stop()
        e.cleanup()
        rx.stop()
        pg.stop()
        pg.cleanup()


def start_scheduled(env, validation_queries=None):
    """The daemon started again with a drill every minute, its schedule's clock skewed so that the
    next minute boundary (as the schedule reads it) is 6 s (else 21 s) away and at least 8 s from a
    wall-clock minute boundary (a schedule that ignored the skew would fire at another moment).
    Returns the wall-clock second at which the schedule's boundary falls."""
    cfg = copy.deepcopy(env.base_config)
    cfg["drills"] = {"schedule": [{"cron": "* * * * *", "scenario": SCN}]}
    if validation_queries is not None:
        cfg["scenarios"][SCN]["validation_queries"] = validation_queries
    d = env.daemon
    d.write_config(cfg)
    now = time.time()
    for ahead in (6, 21):
        skew = int(round(60 - ahead - now % 60)) % 60
        if 8 <= skew <= 52:
            break
    d.start(env={"DRSUP_TEST_SCHEDULE_SKEW_S": str(skew)})
    return (math.floor((now + skew) / 60) + 1) * 60 - skew


def scheduled_drill(d, seen):
    """The first finished drill triggered by the schedule that is not in seen."""
    done = [x for x in d.ctl_json("drills")["drills"] if x["trigger"] == "schedule" and x["id"] not in seen]
    return done[0] if done else None


def test_a_scheduled_drill_runs_at_its_minute_and_writes_its_report(env):
    d = env.daemon
    due = start_scheduled(env)
    try:
        seen = {x["id"] for x in d.ctl_json("drills")["drills"]}
        sched = d.ctl_json("drills")["schedule"]
        assert [(x["cron"], x["scenario"]) for x in sched] == [("* * * * *", SCN)], sched
        mode = env.venue.status()["mode"]
        # Nothing asked for it: the minute boundary starts the drill.
        s = wait_until(lambda: scheduled_drill(d, seen), timeout=45, interval=0.3, what="a scheduled drill")
        assert s["outcome"] == "passed" and s["ok"] is True, s
        path = os.path.join(d.state_dir, "incidents", s["id"] + ".json")
        rep = json.load(open(path))
        assert rep["trigger"] == "schedule" and rep["scenario"] == SCN and rep["ok"] is True, rep
        assert [(x["step"], x["status"]) for x in rep["steps"]] == [
            ("select_backup", "PASS"), ("restore", "PASS"), ("validate", "PASS"), ("reconcile", "PASS"),
            ("drop_scratch", "PASS")], rep["steps"]
        assert rep["scratch_dropped"] is True and rep["reconcile"]["actions_taken"] == []
        assert env.venue.status()["mode"] == mode == "live"
        assert d.ctl_json("incidents")["incidents"] == []
        # It started at the schedule's minute, and its times are on the wall clock (not skewed).
        assert abs(rep["started_ms"] / 1000.0 - due) < 3, (rep["started_ms"], due)
    finally:
        d.stop()


def test_a_failing_scheduled_drill_pages(env):
    d = env.daemon
    due = start_scheduled(env, validation_queries=["SELECT false"])
    try:
        seen = {x["id"] for x in d.ctl_json("drills")["drills"]}
        s = wait_until(lambda: scheduled_drill(d, seen), timeout=45, interval=0.3, what="a scheduled drill")
        assert s["outcome"] == "failed" and s["ok"] is False and s["failure"].startswith("validate:"), s
        rep = json.load(open(os.path.join(d.state_dir, "incidents", s["id"] + ".json")))
        assert rep["trigger"] == "schedule" and rep["scratch_dropped"] is True, rep
        assert abs(rep["started_ms"] / 1000.0 - due) < 3, (rep["started_ms"], due)
        wait_until(lambda: any(r.json and "drill.failed:%s" % SCN in json.dumps(r.json) and s["id"] in json.dumps(r.json)
                               for r in env.rx.got("/hook")), timeout=20, what="the failed scheduled drill paged")
        assert env.venue.status()["mode"] == "live"
    finally:
        d.stop()
