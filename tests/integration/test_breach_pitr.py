"""
security_breach's restore point (docs/security-breach.md) against a real PostgreSQL 15, the
daemon's own WAL archive, a logical and a physical base backup, with the paper trading platform
trading on the cluster (test_pitr.py's set-up, one cluster for the module).

A writer commits rows into t: before the logical backup, between it and the base backup, between
the base backup and T, and after T (the attacker's); T is read from the server's clock between two
commits, and no WAL switch follows the last rows (some are only in the archive's partial segment).

- scenarios.security_breach.pitr configured and the archive reaching T: the run recovers the
  cluster to just before T with point_in_time's steps (the old data directory kept as evidence):
  every row committed before T is back, none after it; the report says point_in_time and the RPO
  (the restore point is T); the run waits for a person, then resumes;
- the run rotated the backup key: the WAL archive writes its next segments under the new key id,
  the old ones keep theirs, and drctl recover --timestamp T2 from the base backup before the
  rotation to a T2 after it replays both;
- a T before the base backup (the archive cannot reach it): the run falls back to the logical
  backup verified before T, and says why.
"""
import os

import pytest

from drsup import wait_until
from pgharness import PgCluster
from test_pitr import PitrEnv
from test_wal import lsn, wait_archived, wait_streaming


class BreachPitrEnv(PitrEnv):
    def config(self):
        cfg = super().config()
        pitr = {k: v for k, v in cfg["scenarios"]["point_in_time"].items() if k not in ("rto", "rpo")}
        pitr["validation_queries"] = ["SELECT count(*) > 0 FROM t"]
        cfg["scenarios"]["security_breach"] = {
            "rto": "5m", "emergency_close": False, "pitr": pitr,
            "validation_queries": ["SELECT count(*) FROM orders"]}
        return cfg

    def scenario_log(self):
        return "\n".join(l for l in self.daemon.log().splitlines() if "scenario" in l)[-8000:]

    def breach(self, since_ms):
        """Starts a breach run at T, waits for the person's gate, approves it; returns (run, report)."""
        d = self.daemon
        rid = d.ctl_json("execute", "--scenario", "security_breach", "--since", str(since_ms),
                         "--reason", "test")["run"]
        run = self.wait_run(rid, ("waiting_approval", "succeeded", "failed", "aborted", "held"))
        assert run["status"] == "waiting_approval" and run["state"] == "reconciled", (run, self.scenario_log())
        assert self.venue.status()["mode"] == "halted"
        rows = self.rows()
        assert d.ctl("approve", rid).returncode == 0
        run = self.wait_run(rid, ("succeeded", "failed", "aborted", "held"))
        assert run["status"] == "succeeded", (run, self.scenario_log())
        wait_until(lambda: self.venue.status()["mode"] == "live", timeout=30, what="trading live again")
        return rid, rows, self.run_report(rid)


def server_ms(env):
    return int(float(env.pg.psql("SELECT ceil(extract(epoch from clock_timestamp()) * 1000)", db=env.db)))


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    pg = PgCluster()
    pg.init()
    pg.start()
    e = BreachPitrEnv(tmp_path_factory.mktemp("breach_pitr"), pg)
    try:
        e.start()
        d = e.daemon
        wait_streaming(d)
        e.write(1000, "logical")
        d.ctl_json("backup", "now", "--wait", timeout=120)
        e.before_base = server_ms(e)
        e.write(1000, "base")
        d.ctl_json("backup", "now", "--physical", "--wait", timeout=120)  # maybe in the logical one's second
        e.write(300, "before")
        e.write(200, "before")
        e.since = server_ms(e)
        e.write(700, "after")
        wait_archived(d, lsn(e.pg.psql("SELECT pg_current_wal_lsn()")))
        yield e
    finally:
        e.cleanup()
        pg.cleanup()


def test_the_cluster_is_recovered_to_just_before_the_breach(env):
    d = env.daemon
    plan = {p["step"]: p["action"] for p in
            d.ctl_json("execute", "--scenario", "security_breach", "--since", str(env.since), "--dry-run")["plan"]}
    assert "recover the cluster to just before T" in plan["plan_restore"], plan
    rid, rows, rep = env.breach(env.since)
    env.breach_run = rid
    # the rows from before T are back, the attacker's are not; the cluster is the recovered one
    assert rows == ["base|1000", "before|500", "logical|1000"], rows
    assert env.rows() == rows
    assert os.path.isdir(env.pg.datadir + ".before-" + rid)  # the breached cluster, kept as evidence
    assert not env.side_servers()
    with open(os.path.join(env.pg.datadir, "postgresql.auto.conf")) as f:
        assert "recovery_target" not in f.read()
    sb = rep["security_breach"]
    assert sb["restore_method"]["method"] == "point_in_time", sb["restore_method"]
    assert sb["plan"]["ok"] and sb["wal"]["files"] >= 1 and sb["backup"] is None, sb
    assert sb["wal"]["recovery_target_time"], sb["wal"]
    assert sb["restore_point_ms"] == env.since == rep["restore_point_ms"], (sb, rep["restore_point_ms"])
    assert rep["rpo_ms"] == rep["detected_ms"] - env.since, rep
    steps = [s["step"] for s in rep["timeline"]]
    assert steps.index("preserve_evidence") < steps.index("plan_restore") < steps.index("restore_base_backup") \
        < steps.index("switch_cluster") < steps.index("reconcile") < steps.index("resume_shadow"), steps
    assert "select_backup" not in steps and "restore_database" not in steps, steps


def archive_key_ids(env):
    """The key ids of the WAL archive's files (a container's header at 32; a partial's first piece
    after its 8-byte length)."""
    wdir = os.path.join(env.daemon.config["backup"]["directory"], "wal")
    ids = set()
    for n in os.listdir(wdir):
        with open(os.path.join(wdir, n), "rb") as f:
            h = f.read(8 + 48)
        at = 8 if n.endswith(".partial.drwal") else 0
        if h[at:at + 8] == b"DRSUPBK1":
            ids.add(h[at + 32:at + 48].hex())
    return ids


def test_the_wal_archive_follows_the_key_rotation_and_a_recovery_crosses_it(env):
    """After the first breach rotated the backup key: new segments are under the new key id, the
    old ones keep theirs; a point-in-time recovery from the base backup before the rotation to a T
    after it replays both (each segment read with its key id's key)."""
    d = env.daemon
    keys = env.run_report(env.breach_run)["security_breach"]["backup_key"]
    old, new = keys["previous_key_id"], keys["key_id"]
    assert old != new, keys
    env.pg.psql("SELECT pg_switch_wal()")
    env.write(100, "rotated")
    t2 = server_ms(env)
    env.write(50, "late")
    wait_archived(d, lsn(env.pg.psql("SELECT pg_current_wal_lsn()")))
    wait_until(lambda: {old, new} <= archive_key_ids(env), timeout=20, what="segments under both key ids")
    assert "segments are written under key id %s" % new in d.log()
    rid = d.ctl_json("recover", "--timestamp", str(t2))["run"]
    run = env.wait_run(rid, ("succeeded", "failed", "aborted", "held"))
    assert run["status"] == "succeeded", (run, env.scenario_log())
    assert env.rows() == ["base|1000", "before|500", "logical|1000", "rotated|100"], env.rows()
    wait_until(lambda: env.venue.status()["mode"] == "live", timeout=30, what="trading live again")


def test_a_breach_before_the_base_backup_falls_back_to_the_logical_backup(env):
    rid, rows, rep = env.breach(env.before_base)
    assert rows == ["logical|1000"], rows
    sb = rep["security_breach"]
    assert sb["restore_method"]["method"] == "logical", sb
    assert "no verified base backup finished before the target" in sb["restore_method"]["why"], sb
    assert sb["backup"]["name"] and sb["restore_point_ms"] <= env.before_base, sb
    steps = [s["step"] for s in rep["timeline"]]
    assert "select_backup" in steps and "restore_base_backup" not in steps, steps
    env.daemon.stop()
