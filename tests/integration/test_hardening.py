"""
Integration tests for the hardening of issue 11 (secrets, key files, orphans, the backup commit).

- secrets: pg_dump and the test restore's pg_restore get the password in their environment
  (PGPASSWORD), never on their command line (/proc/PID/cmdline is readable by every local user);
  the server requires the password (scram), so a backup that succeeds proves it arrived.
"""
import json
import os
import subprocess

import pytest

from drsup import Daemon, wait_until

PGBIN = "/usr/lib/postgresql/15/bin"
SECRET = "Pw s'ecret-7f3a"  # a space and a quote: quoting must survive the split


def make_key(path, mode=0o600):
    with open(path, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    os.chmod(path, mode)
    return str(path)


def recording_wrapper(path, real, record):
    """A stand-in for a PostgreSQL program that appends one line per run to record: a JSON object
    with its argv and whether PGPASSWORD was set, then runs the real program."""
    path.write_text('#!/usr/bin/python3\nimport json, os, sys\n'
                    'with open(%r, "a") as f:\n'
                    '    f.write(json.dumps({"argv": sys.argv[1:], "pgpassword": "PGPASSWORD" in os.environ}) + "\\n")\n'
                    'os.execv(%r, [%r] + sys.argv[1:])\n' % (str(record), real, real))
    path.chmod(0o755)
    return str(path)


@pytest.fixture
def made(tmp_path):
    ds = []
    yield ds
    for d in ds:
        d.stop()


def require_password(pg, user, password):
    """A login role that may only connect over TCP with its password (scram-sha-256)."""
    pg.psql("CREATE ROLE %s LOGIN SUPERUSER PASSWORD '%s'" % (user, password.replace("'", "''")))
    hba = os.path.join(pg.datadir, "pg_hba.conf")
    with open(hba) as f:
        old = f.read()
    with open(hba, "w") as f:
        f.write("host all %s 127.0.0.1/32 scram-sha-256\n" % user + old)
    pg.psql("SELECT pg_reload_conf()")
    check = subprocess.run([os.path.join(PGBIN, "psql"), "-X", "-w", "-h", "127.0.0.1", "-p", str(pg.port),
                            "-U", user, "-d", "postgres", "-c", "SELECT 1"], capture_output=True, text=True,
                           env={k: v for k, v in os.environ.items() if k != "PGPASSWORD"})
    assert check.returncode != 0 and "password" in check.stderr, check  # the password is really needed


def test_children_get_the_password_in_their_environment_not_argv(pg, tmp_path, made):
    pg.psql("CREATE DATABASE shop")
    pg.psql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)", db="shop")
    require_password(pg, "dumper", SECRET)
    dump_rec, restore_rec = tmp_path / "pg_dump.argv", tmp_path / "pg_restore.argv"
    quoted = SECRET.replace("\\", "\\\\").replace("'", "\\'")
    conninfo = "host=127.0.0.1 port=%d dbname=shop user=dumper password='%s'" % (pg.port, quoted)
    bcfg = {
        "directory": str(tmp_path / "backups"),
        "prefix": "shop",
        "conninfo": conninfo,
        "pg_dump": recording_wrapper(tmp_path / "pg_dump", os.path.join(PGBIN, "pg_dump"), dump_rec),
        "pg_restore": recording_wrapper(tmp_path / "pg_restore", os.path.join(PGBIN, "pg_restore"), restore_rec),
        "key_file": make_key(tmp_path / "backup.key"),
        "verify": {"validation_queries": ["SELECT count(*) FROM t"]},
    }
    d = Daemon(tmp_path, {"database": {"conninfo": pg.conninfo()}, "backup": bcfg})
    made.append(d)
    d.start()
    p = d.ctl("--json", "backup", "now", "--wait", timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr + d.log()
    r = d.ctl_json("verify", "--restore", timeout=120)
    assert r["restore_test"]["status"] == "ok", r

    for rec in (dump_rec, restore_rec):
        runs = [json.loads(line) for line in rec.read_text().splitlines()]
        connecting = [r for r in runs if "-d" in r["argv"]]
        assert connecting, (rec, runs)
        for run in connecting:
            assert run["pgpassword"], (rec, run)
            assert not [a for a in run["argv"] if "ecret-7f3a" in a or "password=" in a], (rec, run)
            conn = run["argv"][run["argv"].index("-d") + 1]
            assert "user='dumper'" in conn, run  # the rest of the conninfo is there
    assert "ecret-7f3a" not in d.log()
