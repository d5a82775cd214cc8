"""
After a promotion everything follows the new primary (issue 14), against real streaming replication
between three clusters: a primary (pg1) and two standbys made with pg_basebackup -R (pg2, which the
failover promotes, and pg3, priority 0: never promoted), the paper platform trading on pg1, the
daemon with backups and the WAL archive configured on pg1's host and port.

pg1 stopped (immediate) -> primary_failure promotes pg2, and then:
- its repoint_standbys step points pg3 at pg2 (ALTER SYSTEM SET primary_conninfo + reload): pg3's
  WAL receiver streams from pg2's port, pg2's pg_stat_replication lists pg3, a row written on pg2
  reaches pg3; the run's report says pg3 follows;
- `drctl backup now --wait` succeeds with pg1 down (backup.conninfo follows pg2; its manifest's
  server is pg2's address and port), the WAL archive
  streams from pg2 on the new timeline over a slot the daemon created there, and
  `drctl replication-status` / `drctl status` say which conninfos follow (reconcile.conninfo, which
  names pg3, is used as written).
"""
import pytest

from drsup import wait_until
from pgharness import PgCluster
from test_failover import FailoverEnv, start_env, in_recovery  # noqa: F401
from test_replication import standby  # noqa: F401 (fixture: a streaming standby of pg named pg2)


@pytest.fixture
def pg3(pg):
    s = PgCluster(settings={"wal_retrieve_retry_interval": "200ms"})
    try:
        s.init_standby(pg, "pg3")
        s.start()
        yield s
    finally:
        s.cleanup()


class FollowEnv(FailoverEnv):
    def __init__(self, tmp_path, pg, standby, pg3, rx):
        super().__init__(tmp_path, pg, standby, rx)
        self.pg3 = pg3

    def config(self):
        cfg = super().config()
        cfg["replication"]["nodes"].append({"name": "pg3", "conninfo": self.pg3.conninfo(), "role": "standby",
                                            "priority": 0})
        cfg["failover"]["standby_timeout"] = "20s"
        # names another server (pg3): used as written after the failover
        cfg["reconcile"]["conninfo"] = self.pg3.conninfo(self.db)
        cfg["wal"] = {"conninfo": self.pg.conninfo("postgres"), "flush_interval": "200ms", "status_interval": "1s"}
        return cfg


def test_after_a_failover_the_other_standby_backups_and_wal_follow_the_new_primary(tmp_path, pg, standby, pg3, rx):
    env = FollowEnv(tmp_path, pg, standby, pg3, rx)
    try:
        start_env(env)
        d = env.daemon
        wait_until(lambda: {n["name"]: n for n in env.repl()["nodes"]}["pg3"].get("state") == "ok", timeout=20,
                   what="pg3 streaming from pg1")
        wait_until(lambda: d.ctl_json("wal-status")["state"] == "streaming", timeout=20, what="wal streaming")
        plan = {p["step"]: p["action"] for p in d.ctl_json("execute", "--scenario", "primary_failure",
                                                           "--dry-run")["plan"]}
        assert "1 other standby" in plan["repoint_standbys"], plan
        assert d.ctl_json("status").get("follows_primary") is None  # nothing to follow before a promotion
        rs = d.ctl_json("failover-status")["repoint_standby"]
        assert rs == {"by": "primary_conninfo", "standby_timeout_ms": 20000}, rs
        assert "ALTER SYSTEM SET primary_conninfo" in d.ctl("failover-status").stdout

        pg.stop("immediate")
        rid = wait_until(lambda: env.run_of("primary_failure"), timeout=30, what="a primary_failure run")
        run = env.wait_run(rid, ("succeeded", "failed", "aborted"))
        assert run["status"] == "succeeded", d.log()[-6000:]
        steps = [s["step"] for s in run["steps"]]
        assert steps.index("resume_live") < steps.index("repoint_standbys") < steps.index("post_resume_watch"), steps
        assert not in_recovery(standby) and in_recovery(pg3)
        sb = env.run_report(rid)["failover"]["standbys"]
        assert [(s["node"], s["how"], s["following"]) for s in sb] == [("pg3", "primary_conninfo", True)], sb

        # pg3 streams from pg2, on pg2's new timeline
        assert pg3.psql("SELECT status, sender_port FROM pg_stat_wal_receiver") == "streaming|%d" % standby.port
        assert "application_name=pg3" in pg3.psql("SHOW primary_conninfo")
        assert standby.psql("SELECT state FROM pg_stat_replication WHERE application_name = 'pg3'") == "streaming"
        standby.psql("CREATE TABLE after_failover (v int); INSERT INTO after_failover VALUES (42)", db="trading")
        wait_until(lambda: pg3.psql("SELECT to_regclass('after_failover') IS NOT NULL AND "
                                    "(SELECT count(*) FROM after_failover WHERE v = 42) = 1", db="trading") == "t",
                   timeout=15, what="the row written on pg2 on pg3")

        # a backup with pg1 down: backup.conninfo follows pg2
        res = d.ctl_json("backup", "now", "--wait")
        assert res["manifest"]["database"] == env.db and res["manifest"]["verification"]["sha256_match"], res
        assert res["manifest"]["server"] == "127.0.0.1:%d" % standby.port, res["manifest"]
        # the WAL archive streams from pg2 on its timeline, over the slot the daemon made there
        wait_until(lambda: (lambda w: w["state"] == "streaming" and w["timeline"] == 2)(d.ctl_json("wal-status")),
                   timeout=20, what="wal streaming from pg2 on timeline 2")
        assert standby.psql("SELECT active FROM pg_replication_slots WHERE slot_name = 'drsupervisor'") == "t"

        # what follows, said in replication-status and status
        fol = {c["key"]: c["follows"] for c in env.repl()["follows"]["conninfos"]}
        assert fol == {"database.conninfo": True, "backup.conninfo": True, "backup.physical.conninfo": True,
                       "wal.conninfo": True,
                       "reconcile.conninfo": False, "detector.conninfo": True}, fol
        assert d.ctl_json("status")["follows_primary"]["primary"] == "pg2"
        table = d.ctl("replication-status").stdout
        assert "following the primary pg2" in table and "wal.conninfo" in table, table
        d.stop()  # a clean exit (and, under SANITIZE=1, no leaks)
    finally:
        env.cleanup()
