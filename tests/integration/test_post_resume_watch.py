"""
The post-resume watch of the database_corruption scenario (reconcile.post_resume_checks), against a
real PostgreSQL and the fake venue, whose on_resume hook plays what happens to a platform right
after the resume:

- a fill the exchange made just after the resume never reaches the database (its write failed):
  the watch's first check replays it, the second finds nothing to do, the run succeeds, and the
  report and `drctl incident` show the watch and the replay;
- the exchange shows a position no fill explains: every attempt of the check fails, trading is
  halted again through the venue, a critical event says so, and the run fails.
"""
import json
import os
import time

from drsup import wait_until
from test_scenario import Env, backup_now, fill_db, loaded, venue  # noqa: F401 (fixture)


def run_to_end(env, rid):
    return env.wait_status(rid, ["succeeded", "failed", "aborted"], timeout=120)


def report(d, rid):
    path = os.path.join(d.state_dir, "incidents", rid + ".json")
    wait_until(lambda: os.path.exists(path), what="the incident report")
    return d.ctl_json("incident", rid)["report"]


def test_watch_replays_a_fill_lost_just_after_the_resume(pg, tmp_path, venue):  # noqa: F811
    fill_db(pg)
    env = Env(pg, tmp_path, venue, reconcile={"post_resume_checks": ["500ms", "1500ms"]})
    lost = {"fill_id": "LOST-1", "client_order_id": "LOST-O1", "symbol": "BTC-USD", "side": "buy",
            "quantity": 2, "price": 100}

    def trade_after_resume():
        # The exchange fills an order right after the resume; the platform's write of it fails.
        venue.fills.append(dict(lost, executed_at=int(time.time() * 1000)))
        venue.positions = [{"symbol": "BTC-USD", "quantity": 2, "avg_price": 100}]
    venue.on_resume = trade_after_resume
    d = loaded(env.d.start())
    try:
        backup_now(d)
        rid = d.ctl_json("execute", "--scenario", "database_corruption")["run"]
        r = run_to_end(env, rid)
        assert r["status"] == "succeeded" and r["state"] == "watch_passed", json.dumps(r, indent=1)
        assert [s["step"] for s in r["steps"]][-2:] == ["resume_live", "post_resume_watch"]
        assert "1 fill replayed" in r["steps"][-1]["message"]
        # The fill is in the database now, and trading stayed live (one halt, at the start).
        assert env.pg.psql("SELECT fill_id FROM fills", db="shop").split() == ["LOST-1"]
        assert env.calls() == ["/halt", "/shadow", "/resume"] and venue.mode == "live"
        rep = report(d, rid)
        w = rep["post_resume_watch"]
        assert w["status"] == "passed" and w["replayed"] == 1
        assert [c["status"] for c in w["checks"]] == ["PASS", "PASS"]
        assert [c["after_ms"] for c in w["checks"]] == [500, 1500]
        first = w["checks"][0]["attempts"][0]
        assert first["replayed"] == 1 and first["reconcile"]["ready_to_trade"] is True
        assert [a["fill_id"] for a in first["reconcile"]["actions_taken"] if a["action"] == "replayed_fill"] == ["LOST-1"]
        assert w["checks"][1]["attempts"][0]["replayed"] == 0
        txt = d.ctl("incident", rid).stdout
        assert "Post-resume watch: passed, 1 fill replayed" in txt, txt
        assert "replayed 1 fill the database lost after the resume" in d.log()
        d.stop()
    finally:
        d.cleanup()


def test_watch_halts_again_on_a_mismatch_it_cannot_replay(pg, tmp_path, venue):  # noqa: F811
    fill_db(pg)
    env = Env(pg, tmp_path, venue, reconcile={"post_resume_checks": ["300ms"]})

    def ghost_position():
        # A position on the exchange that no fill explains: nothing to replay.
        venue.positions = [{"symbol": "GHOST", "quantity": 5, "avg_price": 10}]
    venue.on_resume = ghost_position
    d = loaded(env.d.start())
    try:
        backup_now(d)
        rid = d.ctl_json("execute", "--scenario", "database_corruption")["run"]
        r = run_to_end(env, rid)
        assert r["status"] == "failed" and r["state"] == "halted_after_watch", json.dumps(r, indent=1)
        outcomes = [(s["step"], s["outcome"]) for s in r["steps"]][-3:]
        assert outcomes == [("resume_live", "ok"), ("post_resume_watch", "failed"), ("halt_after_watch", "ok")]
        # Halted again through the venue, and it takes a new passing reconcile to resume.
        assert env.calls() == ["/halt", "/shadow", "/resume", "/halt"] and venue.mode == "halted"
        assert "post-resume watch failed" in venue.halt_bodies[-1]["reason"]
        t = d.ctl_json("trading")
        assert t["halted"] is True and t["reconcile_needed"] is True
        log = d.log()
        assert "critical [scenario.watch] run %s: trading is halted again" % rid in log, log[-3000:]
        rep = report(d, rid)
        w = rep["post_resume_watch"]
        assert w["status"] == "failed" and "cannot resolve" in w["message"]
        assert [c["status"] for c in w["checks"]] == ["FAIL"]
        attempts = w["checks"][0]["attempts"]
        assert len(attempts) == 3 and not any(a["ready_to_trade"] for a in attempts)
        disc = attempts[0]["reconcile"]["discrepancies"]
        assert [(x["symbol"], x["kind"], x["resolved"]) for x in disc] == [("GHOST", "missing_in_database", False)]
        assert rep["status"] == "failed"
        d.stop()
    finally:
        d.cleanup()


def test_an_outage_during_the_watch_halts_and_fails_the_watch(pg, tmp_path, venue):  # noqa: F811
    """Once trading is live again the run only watches: the detector halts on a real outage as it
    would outside a run (the run no longer holds the recovery lease), and the watch then fails."""
    fill_db(pg)
    env = Env(pg, tmp_path, venue, reconcile={"post_resume_checks": ["4s"]})
    d = loaded(env.d.start())
    try:
        backup_now(d)
        rid = d.ctl_json("execute", "--scenario", "database_corruption")["run"]
        wait_until(lambda: env.run(rid)["state"] == "live", timeout=60, what="trading live, the watch running")
        seen = len(d.log())
        pg.stop(mode="immediate")
        try:
            wait_until(lambda: venue.mode == "halted", timeout=3, what="the detector's halt during the watch")
            assert "a recovery run is in charge" not in d.log()[seen:]
        finally:
            pg.start()
        r = run_to_end(env, rid)
        assert r["status"] == "failed" and r["state"] == "halted_after_watch", json.dumps(r, indent=1)
        assert "trading was halted during the post-resume watch" in r["steps"][-2]["message"]
        assert venue.mode == "halted"
        d.stop()
    finally:
        d.cleanup()
