"""
Integration tests for synchronous archiving (wal.synchronous, docs/wal.md): a real PostgreSQL 15
primary whose commits wait for the daemon's receiver.

- Once caught up the daemon sets synchronous_standby_names; a commit then waits (SyncRep) while
  the daemon is stopped (SIGSTOP) and completes when it runs again.
- The receiver kept down (its role loses REPLICATION): after wal.synchronous_fallback the daemon
  resets synchronous_standby_names, the blocked commit completes, wal.sync is paged; back on and
  resolved once the receiver streams and catches up.
- The daemon killed (-9) while commits wait: `drsupervisord --release-sync` (the unit's
  ExecStopPost) resets it and the commit completes.
"""
import json
import os
import signal
import subprocess

import pytest

from drsup import DAEMON, wait_until
from test_backup import daemon_factory  # noqa: F401 (fixture)
from test_wal import wal_cfg, wait_streaming

APP = '"drsupervisor_wal"'


@pytest.fixture
def primary(pg):
    pg.psql("CREATE ROLE drsup LOGIN REPLICATION")
    pg.psql("GRANT ALTER SYSTEM ON PARAMETER synchronous_standby_names TO drsup")
    pg.psql("GRANT EXECUTE ON FUNCTION pg_reload_conf() TO drsup")
    pg.psql("CREATE TABLE t (id serial, v text)")
    yield pg
    pg.psql("ALTER SYSTEM RESET synchronous_standby_names", check=False)
    pg.psql("SELECT pg_reload_conf()", check=False)


def names(pg):
    return pg.psql("SHOW synchronous_standby_names")


def commit_in_background(pg, tag):
    return subprocess.Popen(pg._cmd([pg._bin("psql"), "-X", "-q", "-h", "127.0.0.1", "-p", str(pg.port), "-U",
                                     "postgres", "-c", "INSERT INTO t (v) VALUES ('%s')" % tag]), cwd="/")


def waiting_for_sync(pg):
    return pg.psql("SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep'") != "0"


def sync_daemon(pg, tmp_path, daemon_factory, **extra):
    ci = "host=127.0.0.1 port=%d user=drsup" % pg.port
    d = daemon_factory(wal_cfg(pg, tmp_path, conninfo=ci, synchronous=True, **extra))
    d.start()
    wait_streaming(d)
    wait_until(lambda: names(pg) == APP, timeout=20, what="synchronous_standby_names set")
    return d


def test_commits_wait_for_the_archive_and_fall_back_when_it_is_down(primary, tmp_path, daemon_factory):
    pg = primary
    d = sync_daemon(pg, tmp_path, daemon_factory, synchronous_fallback="1s")
    pg.psql("INSERT INTO t (v) VALUES ('quick')")  # the archive answers: no wait to speak of
    assert "synchronous archiving on" in d.log()
    assert "sync       on: commits wait" in d.ctl("wal-status").stdout
    assert d.ctl_json("wal-status")["synchronous"] == {"configured": True, "on": True, "fell_back": False}

    # the daemon stopped: a commit waits for it, and goes through when it runs again
    os.kill(d.proc.pid, signal.SIGSTOP)
    try:
        w = commit_in_background(pg, "waits")
        wait_until(lambda: waiting_for_sync(pg), timeout=10, what="a commit waiting for the archive")
        assert w.poll() is None
    finally:
        os.kill(d.proc.pid, signal.SIGCONT)
    assert w.wait(timeout=20) == 0
    st = d.ctl_json("wal-status")
    commit = pg.psql("SELECT pg_current_wal_lsn()")
    assert st["state"] == "streaming", st

    # the receiver kept out: the daemon falls back so commits go on, and pages
    pg.psql("ALTER ROLE drsup NOREPLICATION")
    pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_replication WHERE application_name = 'drsupervisor_wal'")
    w = commit_in_background(pg, "fallback")
    assert w.wait(timeout=30) == 0
    wait_until(lambda: names(pg) == "", timeout=20, what="synchronous_standby_names reset")
    wait_until(lambda: "wal.sync" in d.log() and "suspended" in d.log(), what="the wal.sync page")
    # ... and back once the receiver streams and has caught up
    pg.psql("ALTER ROLE drsup REPLICATION")
    wait_until(lambda: names(pg) == APP, timeout=30, what="synchronous again")
    wait_until(lambda: "synchronous archiving is back" in d.log(), what="wal.sync resolved")
    assert commit


def test_release_sync_frees_commits_when_the_daemon_died(primary, tmp_path, daemon_factory):
    pg = primary
    d = sync_daemon(pg, tmp_path, daemon_factory, synchronous_fallback="60s")
    d.kill9()
    w = commit_in_background(pg, "blocked")
    wait_until(lambda: waiting_for_sync(pg), timeout=10, what="a commit waiting for a dead receiver")
    p = subprocess.run([DAEMON, "--release-sync", "--config", d.config_path], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0 and "reset" in p.stdout, p.stdout + p.stderr
    assert w.wait(timeout=20) == 0
    assert names(pg) == ""
    # a second run changes nothing and says so
    p = subprocess.run([DAEMON, "--release-sync", "--config", d.config_path], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0 and "left alone" in p.stdout, p.stdout


def test_someone_elses_synchronous_standbys_are_left_alone(primary, tmp_path, daemon_factory):
    pg = primary
    pg.psql("ALTER SYSTEM SET synchronous_standby_names = 'pg2'")
    pg.psql("SELECT pg_reload_conf()")
    ci = "host=127.0.0.1 port=%d user=drsup" % pg.port
    d = daemon_factory(wal_cfg(pg, tmp_path, conninfo=ci, synchronous=True))
    d.start()
    wait_streaming(d)
    wait_until(lambda: "set by someone else" in d.log(), timeout=20, what="the refusal")
    assert names(pg) == "pg2"
    cfg = json.loads(open(d.config_path).read())
    assert cfg["wal"]["synchronous"] is True
