"""
Runs the lib/pgconn and lib/pgsql cmocka binaries against a real throwaway PostgreSQL, so their
real-server tests (round trips, SQLSTATE, query cancel, killed backend, socket switch, restart; a
statement sequence) run instead of reporting SKIPPED.
"""
import os
import re
import subprocess

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.environ.get("DRSUP_BUILD", os.path.join(REPO, "build"))
BIN = os.path.join(BUILD, "tests", "test_pgconn")
MARKERS = ["round trip ok", "sqlstate ok", "cancel ok", "reconnect after kill ok",
           "socket switch ok", "reconnected after restart"]


def test_pgconn_against_real_server(pg):
    if not os.path.exists(BIN):
        subprocess.run(["make", "-C", REPO, os.path.relpath(BIN, REPO)], check=True,
                       env=dict(os.environ, SANITIZE=os.environ.get("SANITIZE", "0")))
    pg_ctl = os.path.join(os.environ.get("DRSUP_PG_BIN", "/usr/lib/postgresql/15/bin"), "pg_ctl")
    restart = "%s -D %s -w -t 60 -m fast restart >/dev/null" % (pg_ctl, pg.datadir)
    if os.geteuid() == 0:
        restart = "runuser -u postgres -- " + restart
    env = dict(os.environ, DRSUP_TEST_PG_CONNINFO=pg.conninfo(), DRSUP_TEST_PG_RESTART_CMD=restart)
    p = subprocess.run([BIN], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=180)
    out = p.stdout
    assert p.returncode == 0, out
    assert "SKIPPED" not in out, out
    m = re.search(r"\[  PASSED  \] (\d+) test\(s\)", out)
    n = re.search(r"\[==========\] (\d+) test\(s\) run", out)
    assert m and n and m.group(1) == n.group(1), out
    for marker in MARKERS:
        assert "pgconn-real-server: " + marker in out, out
    # the server survived the restart test and still answers
    assert pg.psql("select 1") == "1"


def test_pgconn_skips_without_server():
    if not os.path.exists(BIN):
        pytest.skip("test_pgconn not built")
    env = {k: v for k, v in os.environ.items() if not k.startswith("DRSUP_TEST_PG_")}
    p = subprocess.run([BIN], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stdout
    assert "[  SKIPPED ] 6 test(s)" in p.stdout, p.stdout
    assert "pgconn-real-server" not in p.stdout


def test_pgsql_against_real_server(pg):
    """lib/pgsql's statement sequence against a real server (its other tests need none)."""
    binary = os.path.join(BUILD, "tests", "test_pgsql")
    if not os.path.exists(binary):
        subprocess.run(["make", "-C", REPO, os.path.relpath(binary, REPO)], check=True,
                       env=dict(os.environ, SANITIZE=os.environ.get("SANITIZE", "0")))
    env = dict(os.environ, DRSUP_TEST_PG_CONNINFO=pg.conninfo())
    p = subprocess.run([binary], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stdout
    assert "SKIPPED" not in p.stdout, p.stdout
    assert "pgsql-real-server: sequence ok" in p.stdout, p.stdout
