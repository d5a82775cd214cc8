"""
The primary_failure scenario (issue 14) against real streaming replication: a primary (pg1) and a
standby made with pg_basebackup -R (pg2), the paper trading platform trading on the primary, the
daemon watching both nodes with a failover section whose hooks record how they were called (the
repoint hook really points the platform at the new primary through its /repoint endpoint).

- the primary stopped (pg_ctl stop -m immediate): halted, fenced, pg2 promoted on a new timeline,
  the platform repointed to it, the fills it missed replayed, trading live on pg2; the new primary
  is recorded (replication-status shows it, also after a restart of the daemon);
- a primary back within failover.grace is a blip: halted, nothing promoted;
- a standby too far behind (replay paused while the primary writes): halted, paged, not promoted;
- a fence hook that fails: the run waits for an operator, nothing promoted.
The daemon SIGKILLed after every journal record of a run: test_failover_crash.py.
"""
import json
import os
import subprocess

import pytest

from drsup import Daemon, wait_until
from trading_env import TradingEnv

PY = "/usr/bin/python3"


from test_replication import standby  # noqa: E402,F401 (fixture: a streaming standby of pg named pg2)


def hook(tmp_path, name, body):
    path = tmp_path / name
    path.write_text(body)
    path.chmod(0o755)
    return str(path)


class FailoverEnv(TradingEnv):
    """TradingEnv with the replication and failover sections, and no restart of the old primary."""

    def __init__(self, tmp_path, pg, standby, rx, fence_exit=0, grace="1s", maximum_lag="16MiB", self_fence=None):
        super().__init__(tmp_path, pg, trade_interval="200ms")
        self.rx = rx
        self.standby = standby
        self.tmp = tmp_path
        self.calls = str(tmp_path / "hook-calls")
        self.fence = hook(tmp_path, "fence", "#!/bin/sh\necho \"fence $DRSUP_OLD_PRIMARY $DRSUP_RUN\" >> %s\n"
                          "[ %d = 0 ] || echo 'ipmitool: BMC not reachable' >&2\nexit %d\n"
                          % (self.calls, fence_exit, fence_exit))
        self.repoint = hook(tmp_path, "repoint", "#!%s\nimport json, os, urllib.request\n"
                            "open(%r, 'a').write('repoint %%s %%s\\n' %% (os.environ['DRSUP_NEW_PRIMARY'], "
                            "os.environ['DRSUP_TIMELINE']))\n"
                            "dsn = os.environ['DRSUP_NEW_PRIMARY_CONNINFO'] + ' dbname=trading'\n"
                            "req = urllib.request.Request(os.environ['VENUE_URL'] + '/repoint', "
                            "data=json.dumps({'dsn': dsn}).encode(), headers={'Content-Type': 'application/json'})\n"
                            "urllib.request.urlopen(req, timeout=5).read()\n" % (PY, self.calls))
        self.grace = grace
        self.maximum_lag = maximum_lag
        self.self_fence = self_fence

    def config(self):
        cfg = super().config()
        for k in ("restart_command", "server_log", "corruption_queries"):
            cfg["detector"].pop(k, None)
        cfg["alerts"] = {"webhook": {"url": self.rx.url("/hook")}, "group_window": "100ms",
                         "routes": [{"match": {"min_severity": "error"}, "channels": ["webhook"]}]}
        cfg["scenarios"] = {"primary_failure": {"rto": "1m", "rpo": "1m", "promote_timeout": "30s"}}
        cfg["replication"] = {"interval": "200ms", "timeout": "1s", "debounce": 2,
                              "nodes": [{"name": "pg1", "conninfo": self.pg.conninfo(), "role": "primary"},
                                        {"name": "pg2", "conninfo": self.standby.conninfo(), "role": "standby"}]}
        cfg["failover"] = {"fence": [self.fence], "repoint": [self.repoint], "maximum_lag": self.maximum_lag,
                           "grace": self.grace, "hook_timeout": "10s"}
        if self.self_fence:
            cfg["failover"]["self_fence"] = self.self_fence
        return cfg

    def hook_calls(self):
        try:
            with open(self.calls) as f:
                return f.read().split("\n")[:-1]
        except FileNotFoundError:
            return []

    def repl(self):
        return self.daemon.ctl_json("replication-status")

    def pg2_ok(self):
        wait_until(lambda: {n["name"]: n for n in self.repl()["nodes"]}["pg2"].get("state") == "ok", timeout=30,
                   what="pg2 streaming")

    def run_of(self, scenario):
        runs = [r for r in self.daemon.ctl_json("runs")["runs"] if r.get("scenario") == scenario]
        return runs[0]["run"] if runs else None

    def wait_run(self, rid, statuses, timeout=90):
        return wait_until(lambda: (lambda r: r if r["status"] in statuses else None)(self.daemon.ctl_json("run", rid)),
                          timeout=timeout, what="run %s %s" % (rid, statuses))


def in_recovery(cluster):
    return cluster.psql("SELECT pg_is_in_recovery()") == "t"


def conditions(d):
    return {c["condition"]: c for c in d.ctl_json("alerts").get("conditions", [])}


def pages(rx, key):
    return [r.json for r in rx.got("/hook") if key in json.dumps(r.json)]


@pytest.fixture
def make_env(tmp_path, pg, standby, rx):
    made = []

    def make(**kw):
        e = FailoverEnv(tmp_path, pg, standby, rx, **kw)
        made.append(e)
        return e
    yield make
    for e in made:
        e.cleanup()


def start_env(env, daemon_env=None):
    # The platform's repoint needs the venue's address, which exists once the venue runs.
    env.pg.psql("CREATE DATABASE %s" % env.db)
    from papervenue import PaperVenue
    env.venue = PaperVenue(env.dir, env.pg.conninfo(env.db), interval=env.trade_interval).start()
    wait_until(lambda: env.venue.status()["orders_sent"] > 0, timeout=20, what="the venue trading")
    env.daemon = Daemon(env.dir, env.config())
    env.daemon.start(env=dict(daemon_env or {}, VENUE_URL=env.venue.url("")))
    env.pg2_ok()
    return env


def live_then_pause(env):
    """Once the run resumed trading, stop the platform's own orders: the post-resume watch (1 s
    later) then reconciles a still platform. The reconcile reads the exchange's positions before
    the database's, so a trade written in between is a mismatch; under ASan that window is wide
    enough to fail all three of a check's attempts while trading at this pace."""
    wait_until(lambda: env.venue.status()["mode"] == "live", timeout=90, what="trading live")
    env.venue.post("/test/pause")


def test_primary_stopped_standby_promoted_platform_repointed_reconciled_live(make_env, pg, standby):
    env = start_env(make_env())
    d = env.daemon
    # the plan names the standby and the hooks, and changes nothing
    plan = {p["step"]: p["action"] for p in d.ctl_json("execute", "--scenario", "primary_failure", "--dry-run")["plan"]}
    assert "would choose 'pg2'" in plan["select_standby"] and env.fence in plan["fence_old_primary"], plan
    assert env.repoint in plan["repoint_platform"] and "pg_promote(true, 30)" in plan["promote_standby"], plan
    assert env.hook_calls() == [] and in_recovery(standby) and env.venue.status()["mode"] == "live"
    n0 = len(env.exchange_fill_ids())
    wait_until(lambda: len(env.exchange_fill_ids()) >= n0 + 5, timeout=30, what="trades")
    pg.stop("immediate")
    wait_until(lambda: env.venue.status()["mode"] == "halted", timeout=15, what="trading halted")
    rid = wait_until(lambda: env.run_of("primary_failure"), timeout=30, what="a primary_failure run")
    live_then_pause(env)
    run = env.wait_run(rid, ("succeeded", "failed", "aborted"))
    assert run["status"] == "succeeded", d.log()[-6000:]
    steps = [s["step"] for s in run["steps"]]
    assert steps[:6] == ["halt_trading", "fence_old_primary", "select_standby", "promote_standby",
                         "repoint_platform", "reconcile"], steps
    assert not in_recovery(standby)
    assert env.hook_calls() == ["fence pg1 %s" % rid, "repoint pg2 2"], env.hook_calls()
    # trading live on the promoted standby, with every fill the exchange made
    assert env.venue.status()["mode"] == "live"
    code, body = env.venue.post("/test/trade", {"count": 3})
    assert code == 200 and len(body["executed"]) == 3, body
    wait_until(lambda: env.venue.status()["db_pending"] == 0, timeout=20, what="venue caught up")
    assert env.exchange_fill_ids() == [l for l in standby.psql(
        "SELECT fill_id FROM fills ORDER BY executed_at, fill_id", db="trading").splitlines() if l]
    rep = env.run_report(rid)
    f = rep["failover"]
    assert f["old_primary"] == "pg1" and f["promoted"] == "pg2" and f["timeline"] == 2, f
    assert f["previous_timeline"] == 1 and f["fence"]["by"] == "hook", f
    assert set(f["step_ms"]) >= {"halt_trading", "fence_old_primary", "promote_standby", "repoint_platform",
                                 "reconcile", "resume_live"}, f
    assert rep["reconcile"]["ready_to_trade"] is True
    # the daemon's idea of the primary followed, durably
    r = env.repl()
    assert r["primary"] == "pg2" and r["promotion"]["run"] == rid and r["promotion"]["timeline"] == 2, r
    with open(os.path.join(d.state_dir, "primary.json")) as fh:
        assert json.load(fh)["primary"] == "pg2"
    # pg2's conditions as a standby closed with its promotion; the old primary is watched as a standby
    wait_until(lambda: "replication.broken:paper/pg1" in conditions(d), timeout=15, what="pg1 broken")
    assert "replication.broken:paper/pg2" not in conditions(d), conditions(d)
    # the liveness probe follows: the detector sees the database again (on pg2)
    wait_until(lambda: d.ctl_json("status")["detector"]["phase"] == "healthy", timeout=15, what="probe on pg2")
    d.stop()
    d.start(env={"VENUE_URL": env.venue.url("")})
    r = env.repl()
    assert r["primary"] == "pg2", r
    assert {n["name"]: n for n in r["nodes"]}["pg2"]["expected_role"] == "primary", r
    # the liveness probe is on pg2: the database is not down after the restart
    assert not any(k.startswith("detector.unreachable") for k in conditions(d)), conditions(d)
    d.stop()


def test_a_primary_back_within_the_grace_is_a_blip_not_a_failover(make_env, pg, standby):
    env = start_env(make_env(grace="20s"))
    d = env.daemon
    pg.stop("immediate")
    wait_until(lambda: env.venue.status()["mode"] == "halted", timeout=15, what="halted (one side is enough)")
    pg.start()
    wait_until(lambda: d.ctl_json("status")["detector"]["phase"] == "healthy", timeout=30, what="the database back")
    assert env.run_of("primary_failure") is None
    assert in_recovery(standby)
    assert env.hook_calls() == []
    assert "primary failure" not in d.log()
    d.stop()


def test_a_standby_too_far_behind_is_not_promoted_halted_and_paged(make_env, pg, standby):
    env = start_env(make_env(maximum_lag="1MiB"))
    d = env.daemon
    standby.psql("SELECT pg_wal_replay_pause()")
    pg.psql("CREATE TABLE behind AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 40000) g",
            db="trading")
    wait_until(lambda: json.loads(d.ctl("--json", "failover-status").stdout)["candidate"] is None, timeout=20,
               what="pg2 too far behind")
    pg.stop("immediate")
    wait_until(lambda: env.venue.status()["mode"] == "halted", timeout=15, what="halted")
    c = wait_until(lambda: conditions(d).get("detector.failover:paper"), timeout=30, what="detector.failover")
    assert c["severity"] == "critical", c
    page = wait_until(lambda: pages(env.rx, "detector.failover:paper"), timeout=15, what="the page")
    assert "no standby can be promoted" in json.dumps(page) and "more than failover.maximum_lag" in json.dumps(page)
    assert env.run_of("primary_failure") is None
    assert in_recovery(standby) and env.hook_calls() == []
    # run by hand all the same: the run's own choice fails closed too
    rid = d.ctl_json("execute", "--scenario", "primary_failure")["run"]
    run = env.wait_run(rid, ("succeeded", "failed", "aborted"))
    assert run["status"] == "failed" and run["state"] == "stayed_halted", run
    sel = [x for x in run["steps"] if x["step"] == "select_standby"][-1]
    assert "no standby can be promoted" in sel["message"] and "maximum_lag" in sel["message"], sel
    assert in_recovery(standby) and env.venue.status()["mode"] == "halted"
    assert [c for c in env.hook_calls() if c.startswith("repoint")] == []
    wait_until(lambda: pages(env.rx, "scenario:primary_failure"), timeout=15, what="the run's page")
    d.stop()


def test_a_failing_fence_hook_waits_for_an_operator_and_promotes_nothing(make_env, pg, standby):
    env = start_env(make_env(fence_exit=1))
    d = env.daemon
    pg.stop("immediate")
    rid = wait_until(lambda: env.run_of("primary_failure"), timeout=30, what="a primary_failure run")
    run = env.wait_run(rid, ("waiting_approval", "succeeded", "failed", "aborted"))
    assert run["status"] == "waiting_approval" and run["state"] == "fence_unconfirmed", run
    fence = [s for s in run["steps"] if s["step"] == "fence_old_primary"][-1]
    assert "BMC not reachable" in fence["message"] and "not known to be fenced" in fence["message"], fence
    assert env.hook_calls() == ["fence pg1 %s" % rid] * 2, env.hook_calls()  # two attempts, no repoint
    assert in_recovery(standby) and env.venue.status()["mode"] == "halted"
    assert d.ctl("abort", rid).returncode == 0
    assert env.wait_run(rid, ("aborted", "failed"))["status"] == "aborted"
    assert in_recovery(standby) and env.venue.status()["mode"] == "halted"
    d.stop()


def test_split_brain_halts_keeps_the_other_sides_writes_fences_it_and_waits_for_a_person(make_env, pg, standby):
    """A standby promoted by hand while the primary runs: two primaries. Halted at once, pg1 (the
    daemon's primary) is authoritative, pg2 is dumped (its own writes are in the evidence), fenced
    by the hook (which stops it here), and the run waits for a person before reconciling and
    resuming on pg1."""
    env = make_env()
    stop_pg2 = pg._cmd([os.path.join("/usr/lib/postgresql/15/bin", "pg_ctl"), "-D", standby.datadir, "-w", "-m",
                        "fast", "stop"])
    with open(env.fence, "w") as f:
        f.write("#!/bin/sh\necho \"fence $DRSUP_OLD_PRIMARY $DRSUP_REASON\" >> %s\n"
                "[ \"$DRSUP_OLD_PRIMARY\" = pg2 ] && %s >/dev/null\nexit 0\n" % (env.calls, " ".join(stop_pg2)))
    start_env(env)
    d = env.daemon
    standby.psql("SELECT pg_promote(true, 30)")
    standby.psql("CREATE TABLE written_on_pg2 AS SELECT 42 AS answer", db="trading")
    wait_until(lambda: env.venue.status()["mode"] == "halted", timeout=15, what="trading halted")
    rid = wait_until(lambda: env.run_of("network_partition"), timeout=15, what="a network_partition run")
    run = env.wait_run(rid, ("waiting_approval", "succeeded", "failed", "aborted"), timeout=60)
    assert run["status"] == "waiting_approval" and run["state"] == "fenced", run
    steps = [s["step"] for s in run["steps"]]
    assert steps[:4] == ["halt_trading", "decide_authoritative", "preserve_evidence", "fence_other"], steps
    assert env.hook_calls() == ["fence pg2 split_brain"], env.hook_calls()
    assert not standby.is_running()
    assert in_recovery(pg) is False and env.venue.status()["mode"] == "halted"
    conds = conditions(d)
    assert "detector.split_brain:paper" in conds, conds
    # what pg2 wrote on its own is in the evidence, before it was fenced
    dump = os.path.join(d.state_dir, "runs", "%s.pg2.dump" % rid)
    assert os.stat(dump).st_mode & 0o077 == 0, oct(os.stat(dump).st_mode)
    listing = subprocess.run([os.path.join("/usr/lib/postgresql/15/bin", "pg_restore"), "-l", dump],
                             capture_output=True, text=True, check=True).stdout
    assert "written_on_pg2" in listing, listing
    assert d.ctl("approve", rid).returncode == 0
    live_then_pause(env)
    run = env.wait_run(rid, ("succeeded", "failed", "aborted"))
    assert run["status"] == "succeeded", d.log()[-4000:]
    rep = env.run_report(rid)["partition"]
    assert rep["authoritative"]["name"] == "pg1" and rep["other"]["name"] == "pg2", rep
    assert rep["evidence"]["path"] == dump and rep["evidence"]["timeline"] == 2, rep
    assert rep["fence"]["by"] == "hook" and "no longer answers as a primary" in rep["fence"]["hook"], rep
    assert env.repl()["primary"] == "pg1"
    wait_until(lambda: "detector.split_brain:paper" not in conditions(d), timeout=15, what="split brain resolved")
    d.stop()


def test_split_brain_with_a_fence_that_leaves_the_node_writable_waits_for_an_operator(make_env, pg, standby):
    """The fence hook exits 0 but pg2 still answers as a primary, and the daemon's own fencing is off
    (failover.self_fence: off; test_fencing has it on): not fenced, the run waits for an operator;
    trading stays halted."""
    env = start_env(make_env(self_fence="off"))
    d = env.daemon
    standby.psql("SELECT pg_promote(true, 30)")
    rid = wait_until(lambda: env.run_of("network_partition"), timeout=15, what="a network_partition run")
    run = env.wait_run(rid, ("waiting_approval", "succeeded", "failed", "aborted"), timeout=60)
    assert run["status"] == "waiting_approval" and run["state"] == "fence_unconfirmed", run
    fence = [s for s in run["steps"] if s["step"] == "fence_other"][-1]
    assert "still answers as a primary" in fence["message"], fence
    assert env.venue.status()["mode"] == "halted"
    assert d.ctl("abort", rid).returncode == 0
    assert env.wait_run(rid, ("aborted", "failed"))["status"] == "aborted"
    assert env.venue.status()["mode"] == "halted"
    d.stop()
