"""
The standby restore (scenarios.database_corruption.standby): the newest verified backup kept
restored in advance, so that the corruption recovery renames instead of restoring.

Real PostgreSQL 15, real backups and pg_restore, the fake venue.
- after a verified backup the standby appears: sealed (connections refused), marked with the backup's
  name and SHA-256, with the backup's data; status says ready;
- a recovery run takes it (the restore step says so), the platform database gets the backup's data,
  and afterwards a new standby is staged again;
- a newer backup replaces the standby; a restart finds it in place (no second restore);
- a standby that does not hold the selected backup is not used (restore from the file);
- a failing staging (no CREATEDB right) is reported (status, standby.failed event) and leaves
  nothing behind;
- a recovery run stops a staging in progress.
"""
import json
import os
import time

from drsup import Daemon, wait_until
from test_scenario import Env, backup_now, fill_db, loaded, venue  # noqa: F401 (fixture)


def standby(d):
    return d.ctl_json("status")["standby"]


def wait_ready(d, name, timeout=90):
    try:
        return wait_until(lambda: (lambda s: s if s["state"] == "ready" and s.get("backup") == name else None)(
            standby(d)), timeout=timeout, what="standby ready with %s" % name)
    except TimeoutError as e:
        raise AssertionError("%s\nstandby: %r\n%s" % (e, standby(d), d.log()[-4000:])) from None


def backup_after(d, prev):
    """A new backup (names have one-second resolution: retried while refused as busy)."""
    def attempt():
        p = d.ctl("--json", "backup", "now", "--wait", timeout=120)
        return p.returncode == 0 and json.loads(p.stdout)
    b = wait_until(attempt, timeout=10, interval=0.3, what="a second backup")
    assert b["name"] != prev["name"]
    return b


def comment(pg, db):
    return pg.psql("SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database "
                   "WHERE datname = '%s'" % db).strip()


def allow(pg, db):
    return pg.psql("SELECT datallowconn FROM pg_database WHERE datname = '%s'" % db).strip()


def standby_count(pg):
    """Rows of the standby, read through a temporary connection grant (it refuses connections)."""
    pg.psql("ALTER DATABASE shop_drsup_standby ALLOW_CONNECTIONS true")
    try:
        return int(pg.psql("SELECT count(*) FROM ledger", db="shop_drsup_standby").strip())
    finally:
        pg.psql("ALTER DATABASE shop_drsup_standby ALLOW_CONNECTIONS false")


def run_recovery(env, d):
    rid = d.ctl_json("execute", "--scenario", "database_corruption", "--reason", "test")["run"]
    run = env.wait_status(rid, ["succeeded", "failed", "aborted"], timeout=120)
    assert run["status"] == "succeeded", d.log()[-3000:]
    return rid, {s["step"]: s for s in run["steps"]}


def test_standby_staged_taken_and_restaged(pg, tmp_path, venue):  # noqa: F811
    fill_db(pg)
    env = Env(pg, tmp_path, venue, standby=True)
    d = loaded(env.d.start())
    try:
        # Nothing to stage before the first verified backup.
        s0 = wait_until(lambda: (lambda s: s if s.get("waiting_for") == "no verified backup yet" else None)(
            standby(d)), what="waiting for a backup")
        assert s0["enabled"] is True and s0["state"] == "waiting" and "backup" not in s0
        assert "standby restore: waiting (no verified backup yet)" in d.ctl("status").stdout
        b1 = backup_now(d)
        s = wait_ready(d, b1["name"])
        assert s["database"] == "shop_drsup_standby" and s["sha256"] == b1["manifest"]["sha256"]
        assert abs(s["staged_ms"] / 1000 - time.time()) < 120 and s["last_duration_ms"] > 0
        assert comment(pg, "shop_drsup_standby") == "drsupervisor standby: backup %s sha256 %s" % (
            b1["name"], b1["manifest"]["sha256"])
        assert allow(pg, "shop_drsup_standby") == "f"
        assert standby_count(pg) == 200
        assert "shop_drsup_staging" not in env.databases()
        # The spool is gone.
        assert not [f for f in os.listdir(os.path.join(str(tmp_path), "backups")) if f.startswith(".standby")]
        assert "[standby.ready] standby 'shop_drsup_standby' holds backup '%s' (restored" % b1["name"] in d.log()

        # Rows written after the backup, then a newer backup replaces the standby.
        pg.psql("INSERT INTO ledger SELECT i, 'LATE', 1 FROM generate_series(1001, 1005) i", db="shop")
        b2 = backup_after(d, b1)
        assert b2["name"] != b1["name"]
        wait_ready(d, b2["name"])
        assert standby_count(pg) == 205
        assert comment(pg, "shop_drsup_standby").endswith(b2["manifest"]["sha256"])

        # A restart finds it in place: no second restore.
        d.stop()
        d = loaded(env.d.start())
        s = wait_ready(d, b2["name"])
        assert "holds backup '%s' (found in place" % b2["name"] in d.log()
        assert "staged_ms" not in s  # when it was staged is not known after a restart

        # Recovery: the standby is taken, not restored again.
        pg.psql("INSERT INTO ledger SELECT i, 'LATER', 1 FROM generate_series(2001, 2003) i", db="shop")
        rid, steps = run_recovery(env, d)
        assert "taken from the standby restore 'shop_drsup_standby'" in steps["restore_database"]["message"]
        assert env.count("shop") == 205  # b2's data
        assert allow(pg, "shop") == "t"
        assert env.calls() == ["/halt", "/shadow", "/resume"]
        # ... and the standby is staged again from the same backup afterwards.
        wait_ready(d, b2["name"])
        assert standby_count(pg) == 205
        assert "standby restore: ready, backup %s" % b2["name"] in d.ctl("status").stdout
        d.stop()
    finally:
        env.d.cleanup()


def test_standby_of_another_backup_is_not_used(pg, tmp_path, venue):  # noqa: F811
    fill_db(pg)
    env = Env(pg, tmp_path, venue, standby=True)
    d = loaded(env.d.start())
    try:
        b1 = backup_now(d)
        wait_ready(d, b1["name"])
        # Someone (or a bug) changes the mark: the standby no longer proves it holds b1.
        pg.psql("COMMENT ON DATABASE shop_drsup_standby IS 'drsupervisor standby: backup other sha256 00'")
        rid, steps = run_recovery(env, d)
        msg = steps["restore_database"]["message"]
        assert "restored into" in msg and "standby" not in msg
        assert env.count("shop") == 200
        d.stop()
    finally:
        env.d.cleanup()


def test_standby_failure_is_reported(pg, tmp_path, venue):  # noqa: F811
    fill_db(pg)
    # A role that may connect and dump but not create databases: staging fails at CREATE DATABASE.
    pg.psql("DROP ROLE IF EXISTS nocreate; CREATE ROLE nocreate LOGIN")
    env = Env(pg, tmp_path, venue, standby=True)
    cfg = env.d.config
    cfg["scenarios"]["admin_conninfo"] = "host=127.0.0.1 port=%d user=nocreate" % pg.port
    env.d.write_config(cfg)
    d = loaded(env.d.start())
    try:
        backup_now(d)
        s = wait_until(lambda: (lambda s: s if s["state"] == "failed" else None)(standby(d)), timeout=60,
                       what="standby failed")
        assert "permission denied to create database" in s["last_error"], s
        assert s["failures"] == 1
        assert "warning [standby.failed] standby restore of backup" in d.log()
        assert "shop_drsup_staging" not in env.databases()
        assert "shop_drsup_standby" not in env.databases()
    finally:
        d.stop()
        env.d.cleanup()


def staging_started(pg, tmp_path, venue):
    """A daemon whose first standby staging (300000 rows: a few seconds) has just created its
    database. Returns (env, daemon, backup)."""
    fill_db(pg, rows=300000)
    env = Env(pg, tmp_path, venue, standby=True)
    try:
        d = loaded(env.d.start())
        b = backup_now(d)
        wait_until(lambda: "shop_drsup_staging" in env.databases() or None, timeout=30, interval=0.005,
                   what="staging database created")
    except BaseException:
        env.d.cleanup()
        raise
    return env, d, b


def test_recovery_stops_a_staging_in_progress(pg, tmp_path, venue):  # noqa: F811
    env, d, b = staging_started(pg, tmp_path, venue)
    try:
        rid, steps = run_recovery(env, d)
        assert "restored into" in steps["restore_database"]["message"]
        assert "staging of backup '%s' stopped" % b["name"] in d.log()
        assert env.count("shop") == 300000
        # After the run the standby is staged (again, from the start).
        wait_ready(d, b["name"], timeout=120)
        d.stop()
    finally:
        env.d.cleanup()


def test_kill9_during_staging_restages(pg, tmp_path, venue):  # noqa: F811
    env, d, b = staging_started(pg, tmp_path, venue)
    try:
        d.kill9()
        d = loaded(env.d.start())
        wait_ready(d, b["name"], timeout=120)
        assert "dropping the leftover 'shop_drsup_staging' of an interrupted staging" in d.log()
        assert "shop_drsup_staging" not in env.databases()
        assert standby_count(pg) == 300000
        d.stop()
    finally:
        env.d.cleanup()


def test_reload_turning_it_off_stops_a_staging(pg, tmp_path, venue):  # noqa: F811
    env, d, b = staging_started(pg, tmp_path, venue)
    try:
        cfg = env.d.config
        cfg["scenarios"]["database_corruption"]["standby"] = False
        env.d.write_config(cfg)
        assert d.ctl("reload").returncode == 0
        wait_until(lambda: standby(d)["state"] == "off" or None, timeout=30, what="standby off")
        wait_until(lambda: "shop_drsup_staging" not in env.databases() or None, timeout=30,
                   what="partial copy dropped")
        assert "staging of backup '%s' stopped" % b["name"] in d.log()
        assert "standby restore off" in d.log()
        assert "shop_drsup_standby" not in env.databases()
        assert not [f for f in os.listdir(os.path.join(str(tmp_path), "backups")) if f.startswith(".standby")]
        assert "standby restore:" not in d.ctl("status").stdout
        d.stop()
    finally:
        env.d.cleanup()
