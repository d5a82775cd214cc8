"""
The point_in_time scenario (drctl recover --timestamp T; docs/scenarios.md) against a real
PostgreSQL 15, the daemon's own WAL archive and a physical base backup, with the paper trading
platform trading on the cluster.

A writer commits rows into t in three batches: before the base backup, between the backup and T,
and after T; T is read from the server's clock between two commits (no sleeps), and the rows
after the backup are never followed by a WAL switch, so the last ones before T are only in the
archive's partial segment.

- a T past the end of the archive is refused before anything is touched (trading not halted);
- recover --timestamp T: the run restores the base backup into a new data directory, replays on
  the side port to T, validates, switches it in with tools/pitr-switch (the old data directory
  kept as evidence), reconciles and resumes: the live cluster holds exactly the rows committed
  before T, trading is live again;
- --manual stops at the restore, the switch and the live resume until drctl approve;
- the daemon SIGKILLed right after restore_base_backup committed and right after
  switch_cluster committed: the run completes.
"""
import glob
import math
import os
import subprocess

import pytest

from drsup import wait_until
from pgharness import PgCluster, free_port
from test_backup_physical import physical_cfg
from test_wal import lsn, wait_archived, wait_streaming
from trading_env import PG_BIN, TradingEnv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SWITCH = os.path.join(ROOT, "tools", "pitr-switch")
RUN_AS = ["/usr/sbin/runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class PitrEnv(TradingEnv):
    def __init__(self, tmp_path, pg):
        super().__init__(tmp_path, pg, trade_interval="100ms")
        self.side_port = free_port()

    def config(self):
        cfg = super().config()
        for k in ("restart_command", "server_log", "corruption_queries"):
            cfg["detector"].pop(k, None)
        cfg["backup"]["physical"] = physical_cfg(self.pg, self.dir)["physical"]
        cfg["wal"] = {"conninfo": self.pg.conninfo("postgres"), "flush_interval": "200ms", "status_interval": "1s"}
        cfg["scenarios"]["point_in_time"] = {
            "rto": "5m", "rpo": "1m",
            "data_directory": self.pg.datadir,
            "pg_ctl": PG_BIN + "/pg_ctl",
            "run_as": RUN_AS,
            "side_port": self.side_port,
            "start_timeout": "60s",
            "validation_queries": ["SELECT count(*) FROM t", "SELECT count(*) > 0 FROM orders"],
            "switch_command": [SWITCH, "-o", "-p %d -k %s" % (self.pg.port, self.pg.sockdir), "-l", self.pg.logfile]
                              + RUN_AS,
        }
        return cfg

    def rows(self):
        return self.pg.psql("SELECT tag, count(*) FROM t GROUP BY tag ORDER BY tag", db=self.db).split()

    def write(self, n, tag):
        self.pg.psql("CREATE TABLE IF NOT EXISTS t (id serial, tag text, pad text)", db=self.db)
        self.pg.psql("INSERT INTO t (tag, pad) SELECT '%s', repeat('x', 200) FROM generate_series(1, %d)" % (tag, n),
                     db=self.db)

    def run(self, rid):
        return self.daemon.ctl_json("run", rid)

    def wait_run(self, rid, statuses, timeout=120):
        return wait_until(lambda: (lambda r: r if r["status"] in statuses else None)(self.run(rid)),
                          timeout=timeout, interval=0.3, what="run %s %s" % (rid, statuses))

    def side_servers(self):
        return glob.glob(os.path.join(os.path.dirname(self.pg.datadir), "pitr-*.data"))

    def cleanup(self):
        for d in self.side_servers():  # a recovered server a failed test left running
            subprocess.run(RUN_AS + [PG_BIN + "/pg_ctl", "-D", d, "-m", "immediate", "stop"], capture_output=True)
        super().cleanup()


@pytest.fixture
def env(tmp_path, pg):
    e = PitrEnv(tmp_path, pg)
    yield e
    e.cleanup()


def prepare(env, daemon_env=None):
    """Trading, the archive streaming, a base backup; rows before it, between it and T, after T.
    Returns T (epoch ms, from the server's clock, rounded up: the last commit before it is before it)."""
    env.start(daemon_env=daemon_env)
    d = env.daemon
    wait_streaming(d)
    env.write(2000, "base")
    d.ctl_json("backup", "now", "--physical", "--wait", timeout=120)
    env.write(300, "before")
    env.write(200, "before")
    t = env.pg.psql("SELECT extract(epoch from clock_timestamp()) * 1000", db=env.db)
    env.write(700, "after")
    wait_archived(d, lsn(env.pg.psql("SELECT pg_current_wal_lsn()")))
    assert d.ctl_json("wal-status")["partial"]["sealed"] > 0  # no switch after the rows: some only in the partial
    return int(math.ceil(float(t)))


def check_recovered(env, rid):
    assert env.rows() == ["base|2000", "before|500"], env.rows()
    evidence = env.pg.datadir + ".before-" + rid
    assert os.path.isdir(evidence) and os.path.exists(os.path.join(evidence, "PG_VERSION"))
    assert not env.side_servers()  # moved into the live one's place
    assert not glob.glob(os.path.join(os.path.dirname(env.pg.datadir), "pitr-*.wal"))  # staged WAL removed
    with open(os.path.join(env.pg.datadir, "postgresql.auto.conf")) as f:
        assert "recovery_target_time" not in f.read()  # the base backup's own settings again
    assert env.pg.psql("SELECT pg_is_in_recovery()") == "f"
    wait_until(lambda: env.venue.status()["mode"] == "live", timeout=30, what="trading live again")
    # the WAL archive follows the recovered cluster onto its new timeline, from the branch point on
    env.write(10, "later")
    wal_lsn = lsn(env.pg.psql("SELECT pg_current_wal_lsn()"))
    wait_until(lambda: (lambda s: s["state"] == "streaming" and s["timeline"] == 2 and
                        lsn(s["archived_lsn"]) >= wal_lsn)(env.daemon.ctl_json("wal-status")),
               timeout=30, what="archiving on timeline 2")
    env.pg.psql("DELETE FROM t WHERE tag = 'later'", db=env.db)
    rep = env.run_report(rid)
    p = rep["point_in_time"]
    assert p["plan"]["ok"] and p["wal"]["files"] >= 1 and p["promotion"]["wait_ms"] >= 0, p
    assert [v["value"] for v in p["validation"]][:1] == ["2500"], p["validation"]
    steps = [s["step"] for s in rep["timeline"]]
    assert steps.index("reconcile") < steps.index("resume_shadow") < steps.index("resume_live"), steps


def test_recover_to_a_point_in_time_end_to_end(env):
    target = prepare(env)
    d = env.daemon
    # past the end of the archive: refused, nothing touched
    p = d.ctl("recover", "--timestamp", str(target + 3600 * 1000))
    assert p.returncode == 1 and "archive ends" in p.stderr, p.stdout + p.stderr
    assert env.venue.status()["mode"] == "live" and not env.side_servers()
    assert d.ctl_json("runs")["runs"] == []
    # the dry run is as it was
    p = d.ctl("recover", "--timestamp", str(target), "--dry-run")
    assert p.returncode == 0 and "dry run: nothing changed" in p.stdout, p.stdout

    res = d.ctl_json("recover", "--timestamp", str(target))
    rid = res["run"]
    assert res["scenario"] == "point_in_time" and res["mode"] == "automatic" and res["plan"]["ok"], res
    run = env.wait_run(rid, ("succeeded", "failed", "aborted", "held"))
    assert run["status"] == "succeeded", (run, "\n".join(l for l in d.log().splitlines() if "scenario" in l)[-8000:])
    check_recovered(env, rid)
    d.stop()


def test_manual_mode_stops_at_the_gates(env):
    target = prepare(env)
    d = env.daemon
    rid = d.ctl_json("recover", "--timestamp", str(target), "--manual")["run"]
    # the gates: before restore_base_backup, switch_cluster and resume_live
    for state in ("halted", "validated", "trading_in_shadow"):
        wait_until(lambda: (lambda r: r["status"] == "waiting_approval" and r["state"] == state)(env.run(rid)),
                   timeout=90, interval=0.3, what="the gate at %s" % state)
        if state == "halted":
            assert env.venue.status()["mode"] == "halted" and not env.side_servers()
        if state == "validated":  # recovered and validated on the side port, the live cluster untouched
            assert len(env.side_servers()) == 1 and env.rows() == ["after|700", "base|2000", "before|500"]
        if state == "trading_in_shadow":
            assert env.venue.status()["mode"] == "shadow" and env.rows() == ["base|2000", "before|500"]
        assert d.ctl("approve", rid).returncode == 0
    run = env.wait_run(rid, ("succeeded", "failed", "aborted"))
    assert run["status"] == "succeeded", (run, "\n".join(l for l in d.log().splitlines() if "scenario" in l)[-8000:])
    check_recovered(env, rid)
    d.stop()


def test_daemon_killed_after_the_restore_and_after_the_switch_completes(env):
    target = prepare(env, daemon_env={"DRSUP_CRASH_AFTER_EVENT": "commit:restore_base_backup"})
    d = env.daemon
    rid = d.ctl_json("recover", "--timestamp", str(target))["run"]
    wait_until(lambda: d.proc.poll() is not None, timeout=120, what="the crash after the restore")
    assert d.proc.returncode == -9, d.log()[-3000:]
    d.kill9()
    assert env.venue.status()["mode"] == "halted" and len(env.side_servers()) == 1
    d.start(env={"DRSUP_CRASH_AFTER_EVENT": "commit:switch_cluster"})
    wait_until(lambda: d.proc.poll() is not None, timeout=120, what="the crash after the switch")
    assert d.proc.returncode == -9, d.log()[-3000:]
    d.kill9()
    assert env.venue.status()["mode"] == "halted"  # fail closed: no resume before the reconcile
    assert env.rows() == ["base|2000", "before|500"]
    d.start()
    run = env.wait_run(rid, ("succeeded", "failed", "aborted", "held"))
    assert run["status"] == "succeeded", (run, "\n".join(l for l in d.log().splitlines() if "scenario" in l)[-8000:])
    check_recovered(env, rid)
    d.stop()


def test_a_cluster_that_does_not_start_is_recovered_whole_to_the_end_of_the_archive(env):
    """database_corruption on a cluster whose pg_control is destroyed: it cannot restore inside a
    server that does not start, so after preserve_evidence found no server on every attempt it
    hands the run to point_in_time, which recovers the whole cluster to the end of the archive
    (every committed row, those only in the partial segment too), switches it in and resumes."""
    prepare(env)
    d = env.daemon
    env.pg.stop("immediate")
    with open(os.path.join(env.pg.datadir, "global", "pg_control"), "r+b") as f:
        f.write(b"\0" * 512)
    p = subprocess.run(RUN_AS + [PG_BIN + "/pg_ctl", "-D", env.pg.datadir, "-l", env.pg.logfile, "-w", "-t", "10",
                                 "-o", "-p %d -k %s" % (env.pg.port, env.pg.sockdir), "start"], capture_output=True)
    assert p.returncode != 0  # it really does not start
    wait_until(lambda: env.venue.status()["mode"] == "halted", timeout=15, what="trading halted (database down)")
    first = d.ctl_json("execute", "--scenario", "database_corruption")["run"]
    done = env.wait_run(first, ("handed_off", "succeeded", "failed", "aborted", "held"))
    assert done["status"] == "handed_off" and done["state"] == "handed_to_point_in_time", done
    rid = wait_until(lambda: [r["run"] for r in d.ctl_json("runs")["runs"] if r.get("scenario") == "point_in_time"],
                     timeout=15, what="the point_in_time run")[0]
    run = env.wait_run(rid, ("succeeded", "failed", "aborted", "held"))
    assert run["status"] == "succeeded", (run, "\n".join(l for l in d.log().splitlines() if "scenario" in l)[-8000:])
    assert env.rows() == ["after|700", "base|2000", "before|500"], env.rows()
    assert os.path.exists(os.path.join(env.pg.datadir + ".before-" + rid, "global", "pg_control"))  # the evidence
    p = env.run_report(rid)["point_in_time"]
    assert p["to_end"] is True and p["plan"]["ok"] and p["plan"]["to_end"] is True, p
    wait_until(lambda: env.venue.status()["mode"] == "live", timeout=30, what="trading live again")
    d.stop()
