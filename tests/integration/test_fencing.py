"""
The daemon's own fencing (failover.self_fence, issue 14) and the old primary started again after a
failover, against real streaming replication: pg1 the primary, pg2 a standby made with
pg_basebackup -R (both with what pg_rewind needs), the paper platform trading on pg1, the daemon
watching both with a fence hook that exits 0 and does nothing (it leaves the node writable), and a
stop command for pg1 (pg_ctl stop as the server's user, recorded in the hook calls). One pair of
clusters for the module, in this order:

- drctl execute --scenario primary_failure while pg1 still answers as a writable primary: the
  hook leaves it writable, so the daemon stops it with its stop command (written ahead in the
  journal, in the report; the daemon SIGKILLed once the stop is written ahead, started again: the
  step runs again), a fresh connection finds it down, only then pg2 is promoted; trading live on
  pg2;
- pg1 started again, a second primary on the old timeline: network_partition halts, keeps pg2
  (the recorded primary), dumps pg1, and with failover.self_fence: read_only makes pg1 refuse
  writes (a transaction open on it is ended, nothing it wrote lands); approved, trading resumes on
  pg2 and the platform's new trades land only there; with no data_directory for pg1 the report
  leaves the rejoin to the operator; drctl rejoin pg1 makes it a standby of pg2 that streams;
- pg1 promoted by hand (split brain again), failover.self_fence: stop: the daemon stops pg1, and
  after the approval the run itself rebuilds it with rejoin's steps (pg_rewind) before the
  reconcile: pg1 streams from pg2 and trading is live on pg2.
"""
import os
import subprocess

import pytest

from drsup import wait_until
from pairharness import rewind_pair
from pgharness import PG_BIN
from test_failover import hook, in_recovery, live_then_pause
from test_switchover import SwitchoverEnv


class FencingEnv(SwitchoverEnv):
    def config(self):
        cfg = super().config()
        run_as = ["/usr/sbin/runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        ctl = " ".join(run_as + [PG_BIN + "/pg_ctl", "-D", self.pg.datadir])
        stop = hook(self.tmp, "stop-pg1", "#!/bin/sh\necho \"stop $DRSUP_NODE\" >> %s\n"
                    "%s status >/dev/null || exit 0\nexec %s -m fast -w -t 30 stop\n" % (self.calls, ctl, ctl))
        cfg["replication"]["nodes"][0]["stop"] = [stop]
        return cfg


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    yield from rewind_pair(tmp_path_factory, "fencing", FencingEnv)


def psql(cluster, sql):
    return [PG_BIN + "/psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(cluster.port), "-U",
            "postgres", "-d", "trading", "-c", sql]


def fence_step(run, name):
    return [s for s in run["steps"] if s["step"] == name][-1]


def test_an_old_primary_the_hook_leaves_writable_is_stopped_by_the_daemon_before_the_promotion(world):
    env, d = world, world.daemon
    plan = {p["step"]: p["action"] for p in d.ctl_json("execute", "--scenario", "primary_failure", "--dry-run")["plan"]}
    assert "stops it with its stop command" in plan["fence_old_primary"], plan
    # killed once the stop is written ahead, before the command runs; the run resumes after a start
    venue_env = {"VENUE_URL": env.venue.url("")}
    d.stop()
    d.start(env=dict(venue_env, DRSUP_CRASH_AFTER_EVENT="scn.context:self_fence"))
    env.pg2_ok()
    rid = d.ctl_json("execute", "--scenario", "primary_failure")["run"]
    wait_until(lambda: d.proc.poll() is not None, timeout=30, what="the crash after the stop was written ahead")
    assert d.proc.returncode == -9, d.log()[-3000:]
    d.kill9()
    assert env.pg.is_running() and in_recovery(env.standby)  # nothing done yet, nothing promoted
    d.start(env=venue_env)
    live_then_pause(env)
    run = env.wait_run(rid, ("succeeded", "failed", "aborted"))
    assert run["status"] == "succeeded", d.log()[-6000:]
    steps = [s["step"] for s in run["steps"]]
    # fence_old_primary twice: its intent was journaled without its commit, so it ran again
    assert steps[:5] == ["halt_trading", "fence_old_primary", "fence_old_primary", "select_standby",
                         "promote_standby"], steps
    msg = fence_step(run, "fence_old_primary")["message"]
    assert "left it writable" in msg and "the daemon's own fencing" in msg and "does not answer" in msg, msg
    assert not env.pg.is_running() and not in_recovery(env.standby)
    # the hook (again after the restart), then the stop command, then the promotion's repoint
    assert env.hook_calls() == ["fence pg1 %s" % rid] * 2 + ["stop pg1", "repoint pg2 2"], env.hook_calls()
    f = env.run_report(rid)["failover"]
    assert f["fence"]["by"] == "stop", f
    sf = f["self_fence"]
    assert sf["node"] == "pg1" and sf["mode"] == "stop" and len(sf["measures"]) == 2, sf
    cut, m = sf["measures"]
    assert cut["measure"] == "stop" and "outcome" not in cut, cut  # the one the crash interrupted
    assert m["measure"] == "stop" and m["outcome"] == "ok" and m["started_ms"] <= m["ended_ms"], m
    # written ahead: each start is in the journal before the outcome
    with open(os.path.join(d.state_dir, "runs", rid + ".journal"), "rb") as fh:
        recs = [r for r in fh.read().split(b"DRJ1") if b'"self_fence"' in r]  # one record a frame
    assert len(recs) == 3 and [b'"outcome"' in r for r in recs] == [False, False, True], recs
    assert env.venue.status()["mode"] == "live"
    env.venue.post("/test/unpause")


def test_the_old_primary_started_again_is_fenced_read_only_trades_land_on_the_new_primary_and_it_rejoins(world):
    env, d = world, world.daemon
    cfg = d.config
    cfg["failover"]["self_fence"] = "read_only"
    data_directory = cfg["replication"]["nodes"][0].pop("data_directory")  # the run cannot rebuild pg1
    d.write_config(cfg)
    assert d.ctl("reload").returncode == 0
    env.pg.start()
    # a transaction that began writing on pg1 before the fence: it must not commit
    writer = subprocess.Popen(env.pg._cmd(psql(env.pg, "BEGIN; CREATE TABLE open_session (n int); "
                                                        "SELECT pg_sleep(20); COMMIT")),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: env.venue.status()["mode"] == "halted", timeout=15, what="trading halted")
        rid = wait_until(lambda: env.run_of("network_partition"), timeout=15, what="a network_partition run")
        env.last_partition = rid
        run = env.wait_run(rid, ("waiting_approval", "succeeded", "failed", "aborted"), timeout=60)
        assert run["status"] == "waiting_approval" and run["state"] == "fenced", (run, d.log()[-4000:])
        _, err = writer.communicate(timeout=15)
    finally:
        writer.kill()
    assert writer.returncode != 0 and any(w in err for w in ("terminating connection", "server closed the connection",
                                                             "read-only transaction")), err
    msg = fence_step(run, "fence_other")["message"]
    assert "left it writable" in msg and "a new session is read-only" in msg, msg
    assert env.pg.psql("SHOW default_transaction_read_only") == "on" and not in_recovery(env.pg)
    p = env.pg._run(psql(env.pg, "INSERT INTO fills (fill_id) VALUES ('written on the fenced node')"), check=False)
    assert p.returncode != 0 and "read-only transaction" in p.stderr, (p.stdout, p.stderr)
    assert env.pg.psql("SELECT to_regclass('open_session') IS NULL", db="trading") == "t"
    pg1_fills = env.pg.psql("SELECT count(*) FROM fills", db="trading")
    assert d.ctl("approve", rid).returncode == 0
    live_then_pause(env)
    run = env.wait_run(rid, ("succeeded", "failed", "aborted"))
    assert run["status"] == "succeeded", d.log()[-6000:]
    rep = env.run_report(rid)["partition"]
    assert rep["authoritative"]["name"] == "pg2" and rep["other"]["name"] == "pg1", rep
    assert rep["fence"]["by"] == "read_only" and rep["self_fence"]["mode"] == "read_only", rep
    assert [m["measure"] for m in rep["self_fence"]["measures"]][-1:] == ["read_only"], rep
    assert "session(s) terminated" in rep["self_fence"]["measures"][-1]["how"], rep
    assert rep["rejoin"]["by"] == "operator" and "left to the operator: drctl rejoin pg1" in rep["rejoin"]["note"], rep
    assert "plan_rejoin" in [s["step"] for s in run["steps"]] and "rewind" not in [s["step"] for s in run["steps"]]
    # the platform's new trades land on pg2 only
    code, body = env.venue.post("/test/trade", {"count": 3})
    assert code == 200 and len(body["executed"]) == 3, body
    wait_until(lambda: env.venue.status()["db_pending"] == 0, timeout=20, what="venue caught up")
    assert env.exchange_fill_ids() == [l for l in env.standby.psql(
        "SELECT fill_id FROM fills ORDER BY executed_at, fill_id", db="trading").splitlines() if l]
    assert env.pg.psql("SELECT count(*) FROM fills", db="trading") == pg1_fills
    env.venue.post("/test/unpause")
    # drctl rejoin: pg1 a standby of pg2 that streams
    cfg["replication"]["nodes"][0]["data_directory"] = data_directory
    d.write_config(cfg)
    assert d.ctl("reload").returncode == 0
    out = d.ctl_json("rejoin", "pg1")
    run = env.wait_run(out["run"], ("succeeded", "failed", "aborted"), timeout=60)
    assert run["status"] == "succeeded", d.log()[-6000:]
    assert env.pg.is_running() and in_recovery(env.pg)
    st = env.standby.psql("SELECT application_name, state FROM pg_stat_replication WHERE application_name = 'pg1'")
    assert st == "pg1|streaming", st
    env.standby.psql("CREATE TABLE after_rejoin AS SELECT 1 AS one", db="trading")
    wait_until(lambda: env.pg.psql("SELECT to_regclass('after_rejoin') IS NOT NULL", db="trading") == "t",
               timeout=15, what="pg2's write on pg1")


def test_a_split_brain_run_stops_the_other_node_and_rejoins_it_itself_after_the_approval(world):
    """pg1 (a standby of pg2 again) promoted by hand: network_partition keeps pg2, the hook leaves pg1
    writable, the daemon stops it (self_fence: stop), and after the approval the run itself rebuilds
    it with rejoin's steps (its data_directory is configured) before the reconcile and the resume."""
    env, d = world, world.daemon
    cfg = d.config
    cfg["failover"]["self_fence"] = "stop"
    d.write_config(cfg)
    assert d.ctl("reload").returncode == 0
    wait_until(lambda: env.node("pg1").get("state") == "ok", timeout=20, what="pg1 a streaming standby")
    calls = len(env.hook_calls())
    env.pg.psql("SELECT pg_promote(true, 30)")
    rid = wait_until(lambda: (lambda r: r if r and r != env.last_partition else None)(env.run_of("network_partition")),
                     timeout=15, what="a second network_partition run")
    run = env.wait_run(rid, ("waiting_approval", "succeeded", "failed", "aborted"), timeout=60)
    assert run["status"] == "waiting_approval" and run["state"] == "fenced", (run, d.log()[-4000:])
    assert not env.pg.is_running()
    assert env.hook_calls()[calls:] == ["fence pg1 %s" % rid, "stop pg1"], env.hook_calls()
    plan = fence_step(run, "fence_other")["message"]
    assert "left it writable" in plan and "stop command" in plan, plan
    assert d.ctl("approve", rid).returncode == 0
    live_then_pause(env)
    run = env.wait_run(rid, ("succeeded", "failed", "aborted"))
    assert run["status"] == "succeeded", d.log()[-6000:]
    steps = [s["step"] for s in run["steps"]]
    i = steps.index("approve_authoritative")
    assert steps[i + 1:i + 11] == ["plan_rejoin", "check_settings", "stop_node", "checkpoint", "rewind", "configure",
                                   "create_slot", "start_node", "wait_streaming", "reconcile"], steps
    rep = env.run_report(rid)["partition"]
    assert rep["fence"]["by"] == "stop" and rep["rejoin"]["by"] == "run" and rep["copy"]["by"] == "pg_rewind", rep
    assert env.pg.is_running() and in_recovery(env.pg)
    st = env.standby.psql("SELECT application_name, state FROM pg_stat_replication WHERE application_name = 'pg1'")
    assert st == "pg1|streaming", st
    env.venue.post("/test/unpause")
    d.stop()  # a clean exit: every handle closed (no leaks under SANITIZE=1)
