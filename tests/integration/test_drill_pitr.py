"""
drctl drill --scenario point_in_time [--timestamp T] (docs/drills.md) against a real PostgreSQL 15,
the daemon's own WAL archive and a physical base backup, with the paper trading platform trading
on the cluster (test_pitr.py's set-up, one cluster for the module).

Rows are committed into t before the base backup, between it and T, and after T. A drill to T
restores the base backup and the WAL into a scratch cluster on the drill's own port, waits for its
promotion, validates it (it holds exactly the rows before T), compares it with the exchange
read-only, stops it and removes its directory; the report has the RTO and the RPO; the live side
is untouched (the live database's counts, the platform's mode, the venue's request log). A T
before the base backup fails with the plan's reason and readiness says so. data_loss (to --before T,
the watched table counted there) and security_breach (to just before --since T) drill on the same
stages with their own sections and RTO/RPO targets; the scenarios without a drill say what to run
instead. A scratch server that exits before its promotion fails the wait at once with its own error
line. A daemon killed with a drill's scratch server running stops and removes it when it starts
again.
"""
import glob
import json
import os
import socket
import subprocess

import pytest

from drsup import wait_until
from pgharness import PgCluster, free_port
from test_pitr import RUN_AS, PitrEnv
from test_wal import lsn, wait_archived, wait_streaming
from trading_env import PG_BIN

SCN = "point_in_time"


class DrillPitrEnv(PitrEnv):
    def __init__(self, tmp_path, pg):
        super().__init__(tmp_path, pg)
        self.drill_port = free_port()
        self.loss_port, self.breach_port = free_port(), free_port()

    def config(self):
        cfg = super().config()
        cfg["drills"] = {"point_in_time": {"port": self.drill_port}}
        pitr = cfg["scenarios"][SCN]
        pitr["validation_queries"] = ["SELECT count(*) FROM t", "SELECT count(*) > 0 FROM orders"]
        # data_loss and security_breach restore through point_in_time's steps, with their own
        # sections and targets; t is watched (it only grows here: no loss is ever seen)
        cfg["scenarios"]["data_loss"] = dict(pitr, rto="10m", rpo="2m", side_port=self.loss_port,
                                             validation_queries=["SELECT count(*) > 0 FROM orders"])
        cfg["scenarios"]["security_breach"] = {"rto": "20m", "rpo": "3m",
                                               "pitr": dict(pitr, side_port=self.breach_port,
                                                            validation_queries=["SELECT count(*) FROM t"])}
        cfg["detector"]["watched_tables"] = [{"table": "t", "max_drop_percent": 50}]
        return cfg

    def scratch(self):
        return glob.glob(os.path.join(os.path.dirname(self.pg.datadir), "drill-*"))

    def cleanup(self):
        for d in glob.glob(os.path.join(os.path.dirname(self.pg.datadir), "drill-*.data")):  # a failed test's
            subprocess.run(RUN_AS + [PG_BIN + "/pg_ctl", "-D", d, "-m", "immediate", "stop"], capture_output=True)
        super().cleanup()


def server_ms(env):
    return int(float(env.pg.psql("SELECT ceil(extract(epoch from clock_timestamp()) * 1000)", db=env.db)))


def port_free(port):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def servers_in(path):
    """Processes whose command line names path (a postmaster -D path)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                if path.encode() in f.read():
                    found.append(int(pid))
        except OSError:
            pass
    return found


def live_counts(env):
    return env.pg.psql("SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM orders), (SELECT count(*) FROM fills), "
                       "(SELECT count(*) FROM positions)", db=env.db).strip()


def venue_actions(env):
    code, body = env.venue.get("/test/requests")
    assert code == 200, body
    return [r for r in body["requests"] if r["method"] != "GET"]


def readiness(d):
    return {c["check"]: c for c in json.loads(d.ctl("--json", "readiness").stdout)["checks"]}


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    pg = PgCluster()
    pg.init()
    pg.start()
    e = DrillPitrEnv(tmp_path_factory.mktemp("drill_pitr"), pg)
    try:
        e.start()
        d = e.daemon
        wait_streaming(d)
        e.before_base = server_ms(e)
        # base backups are chosen by their finish's second: the backup must finish in a later one
        wait_until(lambda: server_ms(e) // 1000 > e.before_base // 1000, timeout=5, interval=0.05,
                   what="the next second")
        e.write(1000, "base")
        d.ctl_json("backup", "now", "--physical", "--wait", timeout=120)
        e.write(300, "before")
        e.target = server_ms(e)
        e.write(200, "after")
        wait_archived(d, lsn(e.pg.psql("SELECT pg_current_wal_lsn()")))
        yield e
    finally:
        e.cleanup()
        pg.cleanup()


def test_a_drill_to_t_recovers_a_scratch_cluster_and_touches_nothing_live(env):
    d = env.daemon
    env.venue.post("/test/pause")  # the platform stops placing orders: the live counts hold still
    wait_until(lambda: env.venue.status()["db_pending"] == 0, timeout=20, what="venue caught up")
    before, actions = live_counts(env), venue_actions(env)
    p = d.ctl("--json", "drill", "--scenario", SCN, "--timestamp", str(env.target), timeout=120)
    rep = json.loads(p.stdout or "{}")
    assert p.returncode == 0 and rep.get("outcome") == "passed", (p.stdout, p.stderr, d.log()[-4000:])
    assert [(s["step"], s["status"]) for s in rep["steps"]] == [
        ("plan_recovery", "PASS"), ("restore_base_backup", "PASS"), ("stage_wal", "PASS"), ("start_recovery", "PASS"),
        ("wait_for_promotion", "PASS"), ("validate", "PASS"), ("reconcile", "PASS"), ("stop_scratch", "PASS"),
        ("remove_scratch", "PASS")], rep["steps"]
    # the scratch cluster held exactly the rows committed before T
    assert [v["first_value"] for v in rep["validation"]] == ["1300", "t"], rep["validation"]
    assert rep["reconcile"]["mode"] == "compare" and rep["reconcile"]["actions_taken"] == [], rep["reconcile"]
    # RTO: every measured step plus nothing for the halt (no incident yet); RPO against the archive's end
    rto = rep["rto"]
    parts = ("plan_ms", "restore_ms", "stage_wal_ms", "start_ms", "replay_ms", "validate_ms", "reconcile_ms")
    assert rto["estimate_ms"] == sum(rto[k] for k in parts) and rto["restore_ms"] > 0, rto
    assert rto["target_ms"] == 300000 and rto["met"] is True and "switch_cluster" in rto["not_measured"], rto
    rpo = rep["rpo"]
    assert rpo["to_end"] is False and rpo["timestamp_ms"] == env.target and rpo["point_ms"] == env.target, rpo
    assert rpo["timestamp_reached"] is True and rpo["archive_end_ms"] >= env.target and rpo["estimate_ms"] >= 0, rpo
    assert rpo["target_ms"] == 60000 and rpo["met"] is True, rpo
    cl = rep["scratch_cluster"]
    assert cl["port"] == env.drill_port and cl["removed"] and cl["stopped"], cl
    assert os.path.basename(cl["data_directory"]).startswith("drill-"), cl
    # afterwards: the scratch directories are gone, the port is free, nothing live was touched
    assert env.scratch() == [] and not os.path.exists(cl["data_directory"])
    assert port_free(env.drill_port) and servers_in(cl["data_directory"]) == []
    assert not env.side_servers()
    assert live_counts(env) == before and venue_actions(env) == actions
    assert env.venue.status()["mode"] == "live"
    assert d.ctl_json("runs")["runs"] == []
    txt = d.ctl("drill-report", rep["id"]).stdout
    assert "scratch cluster" in txt and "RPO estimate" in txt and "DRILL PASSED" in txt, txt
    assert readiness(d)["drill.point_in_time"]["status"] == "PASS"


def test_a_drill_before_the_oldest_base_backup_fails_with_the_reason(env):
    d = env.daemon
    p = d.ctl("--json", "drill", "--scenario", SCN, "--timestamp", str(env.before_base), timeout=60)
    rep = json.loads(p.stdout or "{}")
    assert p.returncode == 1 and rep.get("outcome") == "failed", (p.stdout, p.stderr, d.log()[-5000:])
    assert [(s["step"], s["status"]) for s in rep["steps"]] == [("plan_recovery", "FAIL")], rep["steps"]
    assert "no verified base backup finished before the target" in rep["failure"], rep["failure"]
    assert rep["rto"]["estimate_ms"] is None and env.scratch() == []
    c = readiness(d)["drill.point_in_time"]
    assert c["status"] == "FAIL" and "failed" in c["evidence"], c
    assert "drill.failed" in d.log() and "drill of point_in_time FAILED" in d.log()
    # the drill's port on the scenario's side_port: a reload is refused, the old configuration kept
    good = d.config
    bad = json.loads(json.dumps(good))
    bad["drills"]["point_in_time"]["port"] = env.side_port
    d.write_config(bad)
    p = d.ctl("reload")
    assert p.returncode != 0 and "drills.point_in_time.port" in p.stdout + p.stderr, (p.stdout, p.stderr)
    d.write_config(good)
    assert d.ctl("reload").returncode == 0
    # each drill takes its own scenario's target option only
    p = d.ctl("drill", "--scenario", "database_corruption", "--timestamp", str(env.target))
    assert p.returncode != 0 and "takes no --timestamp" in p.stderr, p.stderr
    p = d.ctl("drill", "--scenario", SCN, "--before", str(env.target))
    assert p.returncode != 0 and "takes --timestamp T, not --before" in p.stderr, p.stderr
    # the scenarios without a drill say why and what to run instead
    for scn, instead in (("primary_failure", "drctl failover-status"), ("complete_disaster", "drctl verify --offsite"),
                         ("app_crash", "drctl readiness"), ("network_partition", "drctl failover-status")):
        p = d.ctl("drill", "--scenario", scn)
        assert p.returncode != 0 and "has no drill" in p.stderr and instead in p.stderr, (scn, p.stderr)


def pitr_drill(env, scn, *args):
    """A scratch-cluster drill of scn that passes and changes nothing live; its report."""
    d = env.daemon
    before, actions = live_counts(env), venue_actions(env)
    p = d.ctl("--json", "drill", "--scenario", scn, *args, timeout=120)
    rep = json.loads(p.stdout or "{}")
    assert p.returncode == 0 and rep.get("outcome") == "passed", (p.stdout, p.stderr, d.log()[-4000:])
    assert [s["step"] for s in rep["steps"]] == [
        "plan_recovery", "restore_base_backup", "stage_wal", "start_recovery", "wait_for_promotion", "validate",
        "reconcile", "stop_scratch", "remove_scratch"], rep["steps"]
    assert rep["scratch_cluster"]["port"] == env.drill_port and rep["scratch_cluster"]["removed"], rep
    assert env.scratch() == [] and port_free(env.drill_port) and not env.side_servers()
    assert live_counts(env) == before and venue_actions(env) == actions and env.venue.status()["mode"] == "live"
    assert d.ctl_json("runs")["runs"] == []
    assert readiness(d)["drill." + scn]["status"] == "PASS"
    return rep


def test_data_loss_and_security_breach_drill_with_their_own_targets(env):
    env.venue.post("/test/pause")
    wait_until(lambda: env.venue.status()["db_pending"] == 0, timeout=20, what="venue caught up")
    # data_loss: to --before T with its own section; the watched table counted on the scratch cluster
    rep = pitr_drill(env, "data_loss", "--before", str(env.target))
    assert [(v["query"], v["first_value"]) for v in rep["validation"]] == [
        ("SELECT count(*) > 0 FROM orders", "t"), ('SELECT count(*) FROM "t"', "1300")], rep["validation"]
    assert rep["rto"]["target_ms"] == 600000 and rep["rpo"]["target_ms"] == 120000, (rep["rto"], rep["rpo"])
    assert rep["rpo"]["point_ms"] == env.target and rep["rpo"]["exclusive"] is False, rep["rpo"]
    assert "record_evidence" in rep["never_run"], rep["never_run"]
    # security_breach: to just before --since T with scenarios.security_breach.pitr; no hook, no halt
    rep = pitr_drill(env, "security_breach", "--since", str(env.target))
    assert [v["first_value"] for v in rep["validation"]] == ["1300"], rep["validation"]
    assert rep["rto"]["target_ms"] == 1200000 and rep["rpo"]["target_ms"] == 180000, (rep["rto"], rep["rpo"])
    assert rep["rpo"]["exclusive"] is True and rep["rpo"]["timestamp_ms"] == env.target, rep["rpo"]
    assert "lockdown and rotate hooks" in rep["never_run"], rep["never_run"]
    p = env.daemon.ctl("drill", "--scenario", "security_breach", "--timestamp", str(env.target))
    assert p.returncode != 0 and "takes --since T, not --timestamp" in p.stderr, p.stderr


def test_a_scratch_server_that_exits_fails_the_wait_at_once_with_its_error(env):
    """A server that cannot start (here: something else listens on the drill's port, so the
    postmaster finds no TCP socket and exits) fails wait_for_promotion within seconds, not after
    start_timeout (60 s here), with the server's own FATAL line and the end of its log."""
    d = env.daemon
    squatter = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        squatter.bind(("127.0.0.1", env.drill_port))
        squatter.listen(1)
        p = d.ctl("--json", "drill", "--scenario", SCN, "--timestamp", str(env.target), timeout=120)
    finally:
        squatter.close()
    rep = json.loads(p.stdout or "{}")
    assert p.returncode == 1 and rep.get("outcome") == "failed", (p.stdout, p.stderr, d.log()[-4000:])
    steps = {s["step"]: s for s in rep["steps"]}
    assert [(s["step"], s["status"]) for s in rep["steps"]] == [
        ("plan_recovery", "PASS"), ("restore_base_backup", "PASS"), ("stage_wal", "PASS"), ("start_recovery", "PASS"),
        ("wait_for_promotion", "FAIL"), ("stop_scratch", "PASS"), ("remove_scratch", "PASS")], rep["steps"]
    wait = steps["wait_for_promotion"]
    assert wait["duration_ms"] < 15000, wait  # start_timeout is 60 s
    assert "stopped before its promotion" in wait["detail"], wait
    assert "FATAL:" in wait["detail"] and "could not create any TCP/IP sockets" in wait["detail"], wait
    assert "stopped before its promotion" in rep["failure"], rep["failure"]
    x = rep["scratch_cluster"]["server_exit"]
    assert "could not create any TCP/IP sockets" in x["error"], x
    assert x["log"].endswith("pitr-server.log") and 1 <= len(x["log_tail"].splitlines()) <= 20, x
    assert "Address already in use" in x["log_tail"], x
    assert env.scratch() == [] and port_free(env.drill_port)


def test_a_scratch_cluster_left_by_a_killed_daemon_is_removed_at_start(env):
    d = env.daemon
    did = d.ctl_json("drill", "--scenario", SCN, "--detach")["id"]
    wait_until(lambda: "drill step start_recovery PASS" in d.log().split(did, 1)[-1], timeout=60,
               what="the scratch server started")
    d.kill9()
    left = [x for x in env.scratch() if x.endswith(".data")]
    assert len(left) == 1, env.scratch()
    assert servers_in(left[0]), "the scratch server runs on after the daemon's death"
    d.start()
    wait_until(lambda: "removed the leftover scratch cluster" in d.log(), timeout=30,
               what="the leftover scratch cluster removed")
    assert env.scratch() == [] and port_free(env.drill_port) and servers_in(left[0]) == []
    assert env.venue.status()["mode"] == "live"
    d.stop()
