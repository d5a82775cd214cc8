"""
The planned switchover and the rejoin (issue 14) against real streaming replication: pg1 the
primary, pg2 a standby made with pg_basebackup -R, both with wal_log_hints = on and
full_page_writes = on (what pg_rewind needs), the paper platform trading on pg1, the daemon
watching both with a failover section (its repoint hook points the platform at the new primary).
One pair of clusters for the module, in this order:

- refused up front (an unknown node; the standby further behind than failover.maximum_lag while
  its replay is paused): no run, trading untouched, pg2 still a standby;
- a target whose replay stays paused never catches up: the run undoes the read-only setting (pg1
  takes writes again), trading stays halted, nothing promoted;
- drctl switchover --to pg2, with the daemon SIGKILLed once pg1 is read-only and its final position
  journaled, then started again: the run completes; pg2 is the primary, pg1 stopped, a row
  committed on pg1 just before is on pg2, trading live on pg2, state_dir/primary.json says pg2;
- drctl rejoin pg1: pg1 streams from pg2 (pg_stat_replication on pg2 shows it), and a row written
  on pg2 appears on pg1.
"""
import json
import os

import pytest

from drsup import wait_until
from pairharness import rewind_pair
from pgharness import PG_BIN
from test_failover import FailoverEnv, in_recovery, live_then_pause


class SwitchoverEnv(FailoverEnv):
    def config(self):
        cfg = super().config()
        run_as = ["/usr/sbin/runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        nodes = cfg["replication"]["nodes"]
        for n, c in zip(nodes, (self.pg, self.standby)):
            n["data_directory"] = c.datadir
            opts = c._server_options(c.port)
            n["start"] = run_as + [PG_BIN + "/pg_ctl", "-D", c.datadir, "-l", c.logfile, "-o", opts, "-w", "-t", "30",
                                   "start"]
        cfg["scenarios"]["switchover"] = {"rto": "1m", "rpo": "1m", "run_as": run_as, "drain_timeout": "2s",
                                          "catchup_timeout": "3s", "stop_timeout": "30s",
                                          "promote_timeout": "30s"}
        cfg["scenarios"]["rejoin"] = {"run_as": run_as, "stream_timeout": "30s"}
        return cfg

    def node(self, name):
        return {n["name"]: n for n in self.repl()["nodes"]}[name]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    yield from rewind_pair(tmp_path_factory, "switchover",
                           lambda tmp, pg1, pg2, rx: SwitchoverEnv(tmp, pg1, pg2, rx, maximum_lag="1MiB"))


def runs(d):
    return [r for r in d.ctl_json("runs")["runs"] if r.get("scenario") in ("switchover", "rejoin")]


def test_a_switchover_to_an_unknown_or_lagging_node_is_refused_and_changes_nothing(world):
    env, d = world, world.daemon
    p = d.ctl("switchover", "--to", "pg9")
    assert p.returncode == 1 and "'pg9' is not a node of replication.nodes" in p.stderr, (p.stdout, p.stderr)
    p = d.ctl("switchover", "--to", "pg1")
    assert p.returncode == 1 and "'pg1' is the primary already" in p.stderr, p.stderr
    env.standby.psql("SELECT pg_wal_replay_pause()")
    env.pg.psql("CREATE TABLE behind AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 40000) g",
                db="trading")
    wait_until(lambda: (env.node("pg2").get("lag_bytes") or 0) > 1 << 20, timeout=20, what="pg2 behind")
    p = d.ctl("switchover", "--to", "pg2")
    assert p.returncode == 1 and "more than failover.maximum_lag" in p.stderr and "nothing was touched" in p.stderr, \
        p.stderr
    env.standby.psql("SELECT pg_wal_replay_resume()")
    assert runs(d) == [] and env.venue.status()["mode"] == "live" and in_recovery(env.standby)
    assert env.hook_calls() == []
    env.pg.psql("DROP TABLE behind", db="trading")
    wait_until(lambda: env.node("pg2").get("lag_bytes") == 0 and env.node("pg2").get("state") == "ok", timeout=30,
               what="pg2 caught up")


def read_only(cluster):
    return cluster.psql("SHOW default_transaction_read_only")


def test_a_target_that_never_catches_up_leaves_the_old_primary_writable_and_trading_halted(world):
    env, d = world, world.daemon
    env.standby.psql("SELECT pg_wal_replay_pause()")
    env.pg.psql("CREATE TABLE marks (note text); INSERT INTO marks VALUES ('not replayed')", db="trading")
    rid = d.ctl_json("switchover", "--to", "pg2")["run"]
    run = env.wait_run(rid, ("succeeded", "failed", "aborted"), timeout=60)
    assert run["status"] == "failed" and run["state"] == "stayed_halted", run
    steps = [s["step"] for s in run["steps"]]
    assert steps == ["check_request", "halt_trading", "drain", "check_target", "refuse_writes", "catch_up",
                     "undo_read_only"], steps
    catch = [s for s in run["steps"] if s["step"] == "catch_up"][-1]
    assert "within catchup_timeout" in catch["message"], catch
    assert read_only(env.pg) == "off" and in_recovery(env.standby) and env.pg.is_running()
    env.pg.psql("INSERT INTO marks VALUES ('written after the undo')", db="trading")  # pg1 takes writes again
    assert env.venue.status()["mode"] == "halted"
    assert env.hook_calls() == []
    env.standby.psql("SELECT pg_wal_replay_resume()")


def test_switchover_promotes_the_standby_with_no_committed_row_lost(world):
    env, d = world, world.daemon
    venue_env = {"VENUE_URL": env.venue.url("")}
    env.pg.psql("INSERT INTO marks VALUES ('just before')", db="trading")
    # killed once the old primary is read-only and its final position journaled, before catch_up
    d.stop()
    d.start(env=dict(venue_env, DRSUP_CRASH_AFTER_EVENT="scn.context:final"))
    env.pg2_ok()
    out = d.ctl_json("switchover", "--to", "pg2")
    rid = out["run"]
    assert out["scenario"] == "switchover" and out["to"] == "pg2", out
    wait_until(lambda: d.proc.poll() is not None, timeout=30, what="the crash after refuse_writes")
    assert d.proc.returncode == -9, d.log()[-3000:]
    d.kill9()
    assert read_only(env.pg) == "on" and env.pg.is_running() and in_recovery(env.standby)
    d.start(env=venue_env)
    live_then_pause(env)
    run = env.wait_run(rid, ("succeeded", "failed", "aborted"))
    assert run["status"] == "succeeded", d.log()[-6000:]
    steps = [s["step"] for s in run["steps"]]
    # refuse_writes twice: its intent was journaled without its commit, so it ran again after the restart
    assert steps[:11] == ["check_request", "halt_trading", "drain", "check_target", "refuse_writes", "refuse_writes",
                          "catch_up", "stop_old_primary", "promote_standby", "repoint_platform", "reconcile"], steps
    assert not in_recovery(env.standby) and not env.pg.is_running()
    notes = env.standby.psql("SELECT note FROM marks", db="trading").splitlines()
    assert "just before" in notes and "written after the undo" in notes, notes
    assert env.venue.status()["mode"] == "live"
    assert env.hook_calls() == ["repoint pg2 2"], env.hook_calls()  # a planned switchover fences nothing
    with open(os.path.join(d.state_dir, "primary.json")) as fh:
        assert json.load(fh)["primary"] == "pg2"
    assert env.repl()["primary"] == "pg2"
    rep = env.run_report(rid)["switchover"]
    assert rep["old_primary"] == "pg1" and rep["promoted"] == "pg2" and rep["timeline"] == 2, rep
    env.venue.post("/test/unpause")


def test_rejoin_makes_the_old_primary_a_standby_of_the_new_one(world):
    env, d = world, world.daemon
    out = d.ctl_json("rejoin", "pg1")
    rid = out["run"]
    run = env.wait_run(rid, ("succeeded", "failed", "aborted"), timeout=60)
    assert run["status"] == "succeeded", d.log()[-6000:]
    steps = [s["step"] for s in run["steps"]]
    assert steps == ["check_node", "check_settings", "stop_node", "checkpoint", "rewind", "configure", "create_slot",
                     "start_node", "wait_streaming"], steps
    rep = env.run_report(rid)["rejoin"]
    assert rep["copy"]["by"] == "pg_rewind" and rep["settings"]["wal_log_hints"] == "on", rep
    assert env.pg.is_running() and in_recovery(env.pg)
    st = env.standby.psql("SELECT application_name, state FROM pg_stat_replication WHERE application_name = 'pg1'")
    assert st == "pg1|streaming", st
    env.standby.psql("INSERT INTO marks VALUES ('after the rejoin')", db="trading")
    wait_until(lambda: "after the rejoin" in env.pg.psql("SELECT note FROM marks", db="trading"), timeout=15,
               what="the row on pg1")
    wait_until(lambda: env.node("pg1").get("state") == "ok", timeout=20, what="pg1 ok as a standby")


def test_a_rejoin_whose_rewind_fails_takes_a_fresh_base_backup_and_keeps_the_old_directory(world):
    env, d = world, world.daemon
    cfg = d.config
    cfg["scenarios"]["rejoin"]["pg_rewind"] = "/bin/false"  # pg_rewind refusing, as on a half-rewound directory
    d.write_config(cfg)
    assert d.ctl("reload").returncode == 0
    rid = d.ctl_json("rejoin", "pg1")["run"]
    run = env.wait_run(rid, ("succeeded", "failed", "aborted"), timeout=60)
    assert run["status"] == "succeeded", d.log()[-6000:]
    steps = [s["step"] for s in run["steps"]]
    assert steps[4:6] == ["rewind", "base_backup"], steps
    rewind = [s for s in run["steps"] if s["step"] == "rewind"][-1]
    assert rewind["outcome"] != "ok" and "a fresh base backup instead" in rewind["message"], rewind
    assert env.run_report(rid)["rejoin"]["copy"]["by"] == "pg_basebackup"
    kept = [n for n in os.listdir(env.pg.tmpdir) if n.startswith("data.before-rejoin-")]
    assert len(kept) == 1 and os.path.exists(os.path.join(env.pg.tmpdir, kept[0], "PG_VERSION")), kept
    assert in_recovery(env.pg)
    env.standby.psql("INSERT INTO marks VALUES ('after the base backup')", db="trading")
    wait_until(lambda: "after the base backup" in env.pg.psql("SELECT note FROM marks", db="trading"), timeout=15,
               what="the row on pg1")
