"""
Integration tests for the hardening of issue 11 (secrets, key files, orphans, the backup commit).

- secrets: a conninfo holding a password is refused by --check-config (every conninfo key, key=value
  and URI, FILE:LINE:COL, the password never printed); so is a backup key file that is missing, too
  open, or of the wrong length. A passfile= conninfo works end to end against a server that
  requires the password (scram): pg_dump and the test restore's pg_restore read it from the passfile,
  and neither their command line nor their environment (/proc/PID/cmdline, /proc/PID/environ) holds it.
- orphans: kill -9 of the daemon during a backup takes its pg_dump down with it (PR_SET_PDEATHSIG
  through lib/child's exec shim); that pg_dump runs at backup.nice / backup.ioprio (defaults); the next start removes what the killed run left in the backup
  directory (the backup's uncommitted temporary, restore spools), each with a log line, and the
  catalog lists no half backup.
- the backup commit: the manifest is the commit record; a kill after the state set was renamed,
  or after the dump was renamed too, leaves files under final names that the next start removes
  (each logged), so the catalog, `drctl verify` and retention never see half a backup; the next
  backup commits whole.
- systemd: the unit's RuntimeDirectoryMode lets a member of the operators group who is not in the
  daemon's group reach the socket (status and halt), with the socket's 0660 and control.group
  doing the access control.
"""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from drsup import DAEMON, Daemon, wait_until

PGBIN = "/usr/lib/postgresql/15/bin"
SECRET = "Pw s'ecret-7f3a"  # a space and a quote: quoting must survive the split


def make_key(path, mode=0o600):
    with open(path, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    os.chmod(path, mode)
    return str(path)


def recording_wrapper(path, real, record):
    """A stand-in for a PostgreSQL program that appends one line per run to record: a JSON object
    with its /proc/self/cmdline and /proc/self/environ as any reader would see them, then execs the
    real program (same process: what it was given is what the program gets)."""
    path.write_text('#!/usr/bin/python3\nimport json, os, sys\n'
                    'cmd = open("/proc/self/cmdline", "rb").read().decode("utf-8", "replace")\n'
                    'env = open("/proc/self/environ", "rb").read().decode("utf-8", "replace")\n'
                    'with open(%r, "a") as f:\n'
                    '    f.write(json.dumps({"argv": sys.argv[1:], "cmdline": cmd, "environ": env}) + "\\n")\n'
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


def write_passfile(path, port, user, password):
    """A libpq passfile (0600) with one line for 127.0.0.1:port."""
    esc = password.replace("\\", "\\\\").replace(":", "\\:")
    path.write_text("127.0.0.1:%d:*:%s:%s\n" % (port, user, esc))
    path.chmod(0o600)
    return str(path)


def test_a_passfile_conninfo_backs_up_and_no_child_sees_the_password(pg, tmp_path, made):
    pg.psql("CREATE DATABASE shop")
    pg.psql("CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 100)", db="shop")
    require_password(pg, "dumper", SECRET)
    dump_rec, restore_rec = tmp_path / "pg_dump.argv", tmp_path / "pg_restore.argv"
    passfile = write_passfile(tmp_path / "pgpass", pg.port, "dumper", SECRET)
    conninfo = "host=127.0.0.1 port=%d dbname=shop user=dumper passfile=%s" % (pg.port, passfile)
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
            for where in ("cmdline", "environ"):
                assert "ecret-7f3a" not in run[where] and "password=" not in run[where], (rec, where)
            assert "PGPASSWORD=" not in run["environ"], rec
            conn = run["argv"][run["argv"].index("-d") + 1]
            assert "user='dumper'" in conn and "passfile='%s'" % passfile in conn, run
    assert "ecret-7f3a" not in d.log()


def check_config(tmp_path, text):
    path = tmp_path / "check.yaml"
    path.write_text(text)
    p = subprocess.run([DAEMON, "--check-config", "--config", str(path)], capture_output=True, text=True)
    return str(path), p


# Every conninfo key, as (the lines before the value, its key): the value is the last line's.
CONNINFO_KEYS = [
    ("database:\n  conninfo: ", "database.conninfo"),
    ("BASE" "backup:\n  directory: /tmp/drsup-none\n  key_file: KEY\n  conninfo: ", "backup.conninfo"),
    ("BASE" "backup:\n  directory: /tmp/drsup-none\n  key_file: KEY\n  physical:\n    conninfo: ",
     "backup.physical.conninfo"),
    ("BASE" "detector:\n  conninfo: ", "detector.conninfo"),
    ("BASE" "reconcile:\n  conninfo: ", "reconcile.conninfo"),
    ("BASE" "scenarios:\n  admin_conninfo: ", "scenarios.admin_conninfo"),
]


def test_check_config_refuses_a_password_in_every_conninfo(tmp_path):
    key = make_key(tmp_path / "backup.key")
    base = "database:\n  conninfo: \"host=127.0.0.1 port=1 dbname=postgres\"\n"
    for head, name in CONNINFO_KEYS:
        head = head.replace("BASE", base).replace("KEY", key)
        line = head.count("\n") + 1
        col = len(head.rsplit("\n", 1)[1]) + 1
        for value in ("\"host=127.0.0.1 dbname=shop password='Zq9 s3cr'\"",
                      "\"postgresql://dumper:Zq9s3cr@127.0.0.1/shop\""):
            path, p = check_config(tmp_path, head + value + "\n")
            out = p.stdout + p.stderr
            assert p.returncode != 0, (name, value, out)
            assert "%s:%d:%d: '%s' holds a password" % (path, line, col, name) in p.stderr, (name, out)
            assert "passfile=" in p.stderr and "PGPASSFILE" in p.stderr, out
            assert "Zq9" not in out and "s3cr" not in out, out
    # a passfile is the way; one libpq would ignore (group-readable) is refused, naming why
    pf = write_passfile(tmp_path / "pgpass", 5432, "dumper", "Zq9s3cr")
    text = base + ("backup:\n  directory: /tmp/drsup-none\n  key_file: %s\n"
                   "  conninfo: \"host=127.0.0.1 dbname=shop passfile=%s\"\n" % (key, pf))
    path, p = check_config(tmp_path, text)
    assert p.returncode == 0, p.stdout + p.stderr
    os.chmod(pf, 0o640)
    path, p = check_config(tmp_path, text)
    assert p.returncode == 2 and "%s:6:13: 'backup.conninfo': passfile '%s': mode 0640" % (path, pf) in p.stderr, p.stderr
    assert "Zq9" not in p.stdout + p.stderr


def test_check_config_refuses_a_bad_backup_key_file(tmp_path):
    base = "database:\n  conninfo: \"host=127.0.0.1 port=1 dbname=postgres\"\nbackup:\n  directory: /tmp/drsup-none\n"
    good = make_key(tmp_path / "good.key")
    path, p = check_config(tmp_path, base + "  key_file: %s\n" % good)
    assert p.returncode == 0, p.stdout + p.stderr
    open_key = make_key(tmp_path / "open.key", mode=0o644)
    short = tmp_path / "short.key"
    short.write_bytes(os.urandom(31))
    short.chmod(0o600)
    for key, reason in ((open_key, "mode 0644 is too open"), (str(short), "wrong length 31 bytes"),
                        (str(tmp_path / "missing.key"), "cannot open")):
        path, p = check_config(tmp_path, base + "  key_file: %s\n" % key)
        assert p.returncode == 2, (key, p.stdout, p.stderr)
        assert "%s:5:13: 'backup.key_file': key file '%s'" % (path, key) in p.stderr and reason in p.stderr, p.stderr
    with open(open_key) as f:
        assert f.read().strip() not in p.stdout + p.stderr


def proc_gone(pid):
    """Dead, or a zombie nobody reaped (a container's PID 1 may never reap)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_kill9_during_a_backup_leaves_no_child_and_the_next_start_cleans_up(pg, tmp_path, made):
    pg.psql("CREATE DATABASE shop")
    pidfile = tmp_path / "dump.pid"
    hang = tmp_path / "pg_dump"
    # pg_dump that hangs mid-backup (after --version, which the job reads first)
    hang.write_text('#!/bin/sh\nif [ "$1" = --version ]; then exec %s --version; fi\n'
                    'echo $$ > %s.tmp && mv %s.tmp %s\nexec sleep 120\n'
                    % (os.path.join(PGBIN, "pg_dump"), pidfile, pidfile, pidfile))
    hang.chmod(0o755)
    bdir = tmp_path / "backups"
    cfg = {"database": {"conninfo": pg.conninfo()},
           "backup": {"directory": str(bdir), "prefix": "shop", "conninfo": pg.conninfo("shop"),
                      "pg_dump": str(hang), "key_file": make_key(tmp_path / "backup.key")}}
    d = Daemon(tmp_path, cfg)
    made.append(d)
    d.start()
    p = d.ctl("backup", "now")
    assert p.returncode == 0, p.stdout + p.stderr
    pid = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip(), timeout=20,
                         what="pg_dump started"))
    with open("/proc/%d/status" % pid) as f:
        assert "PPid:\t%d\n" % d.proc.pid in f.read()  # the daemon's own child, via the shim's exec
    # low priority by default (backup.nice 10, backup.ioprio best-effort)
    with open("/proc/%d/stat" % pid) as f:
        assert int(f.read().rsplit(")", 1)[1].split()[16]) == 10
    io = subprocess.run(["ionice", "-p", str(pid)], capture_output=True, text=True)
    assert io.stdout.strip() == "best-effort: prio 7", io
    temps = [f for f in os.listdir(bdir) if f.startswith(".shop_backup_") and ".tmp." in f]
    assert temps, os.listdir(bdir)  # the backup's temporary is open

    d.kill9()
    try:
        wait_until(lambda: proc_gone(pid), timeout=5, what="pg_dump to die with the daemon")
    finally:
        if not proc_gone(pid):
            os.kill(pid, signal.SIGKILL)

    # What a restore killed the same way leaves: its plaintext spool.
    (bdir / ".restore-run42.dump").write_bytes(b"PGDMP plaintext")
    (bdir / ".standby-staging.dump").write_bytes(b"PGDMP plaintext")
    (bdir / "notes.txt").write_text("an operator's file stays\n")
    hang.write_text('#!/bin/sh\nexec %s "$@"\n' % os.path.join(PGBIN, "pg_dump"))
    d.start()
    assert sorted(os.listdir(bdir)) == ["notes.txt"], os.listdir(bdir)
    log = d.log()
    for name in temps + [".restore-run42.dump", ".standby-staging.dump"]:
        assert "removed '%s/%s'" % (bdir, name) in log, log[-3000:]
    assert d.ctl_json("backups")["backups"] == []


@pytest.mark.parametrize("step", [1, 2])
def test_kill_at_each_commit_step_leaves_no_half_backup(pg, tmp_path, made, step):
    pg.psql("CREATE DATABASE shop")
    pg.psql("CREATE TABLE t (id int); INSERT INTO t VALUES (1)", db="shop")
    state = tmp_path / "halt.json"
    state.write_text('{"halted": false}\n')
    bdir = tmp_path / "backups"
    cfg = {"database": {"conninfo": pg.conninfo()},
           "backup": {"directory": str(bdir), "prefix": "shop", "conninfo": pg.conninfo("shop"),
                      "pg_dump": os.path.join(PGBIN, "pg_dump"), "pg_restore": os.path.join(PGBIN, "pg_restore"),
                      "key_file": make_key(tmp_path / "backup.key"), "state_files": [str(state)]}}
    d = Daemon(tmp_path, cfg)
    made.append(d)
    d.start(env={"DRSUP_CRASH_IN_BACKUP_COMMIT": str(step)})
    d.ctl("backup", "now", "--wait", timeout=60)
    wait_until(lambda: d.proc.poll() is not None, timeout=60, what="the daemon killed in the commit")
    assert d.proc.returncode == -signal.SIGKILL
    d.kill9()  # reap and close the harness's handles
    final = sorted(f for f in os.listdir(bdir) if not f.startswith("."))
    # step 1: the state set is under its final name; step 2: the dump too; never a manifest
    assert len(final) == step and not [f for f in final if f.endswith(".manifest.json")], final
    assert [f for f in final if ".state." in f], final

    d.start()
    assert sorted(f for f in os.listdir(bdir) if not f.startswith(".")) == [], os.listdir(bdir)
    log = d.log()
    for f in final:
        assert "removed '%s/%s': a backup file no manifest names" % (bdir, f) in log, log[-3000:]
    assert d.ctl_json("backups")["backups"] == []
    # and the next backup commits whole: dump, state set, manifest, listed
    res = wait_until(lambda: (lambda p: p.returncode == 0 and json.loads(p.stdout))(
        d.ctl("--json", "backup", "now", "--wait", timeout=60)), timeout=30, what="a backup")
    names = sorted(f for f in os.listdir(bdir) if not f.startswith("."))
    assert len(names) == 3 and res["name"] + ".manifest.json" in names, names
    assert [b["name"] for b in d.ctl_json("backups")["backups"]] == [res["name"]]


REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def unit_settings():
    out = {}
    with open(os.path.join(REPO, "systemd/drsupervisor.service")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")) and "=" in line:
                k, v = line.split("=", 1)
                out.setdefault(k, []).append(v)
    return out


def test_unit_runtime_directory_lets_the_operators_group_reach_the_socket(made):
    u = unit_settings()
    assert u["User"] == ["drsupervisor"] and u["Group"] == ["drsupervisor"]
    assert "drsup-ops" in u["SupplementaryGroups"][0].split()
    mode = int(u["RuntimeDirectoryMode"][0], 8)
    # /run/drsupervisor as systemd makes it: the unit's mode, owned by the daemon's user and group
    # (here root:root); the on-call engineer is nobody:nogroup, in neither, with nogroup standing
    # in for drsup-ops as control.group and control.operators_group.
    base = tempfile.mkdtemp(prefix="drsup-run-")
    try:
        os.chmod(base, 0o755)
        run_dir = os.path.join(base, "drsupervisor")
        os.mkdir(run_dir)
        os.chmod(run_dir, mode)
        d = Daemon(base, {"control": {"socket": os.path.join(run_dir, "control.sock"), "group": "nogroup",
                                      "operators_group": "nogroup"},
                          "detector": {"halt_after": 1000}}, name="daemon-home")
        made.append(d)
        d.start()
        st = os.stat(d.socket)
        assert oct(st.st_mode & 0o777) == "0o660"
        p = d.ctl("--json", "status", user="nobody", group="nogroup")
        assert p.returncode == 0, p.stderr
        assert json.loads(p.stdout)["cluster"] == "test"
        p = d.ctl("halt", "--reason", "on-call drill", user="nobody", group="nogroup")
        assert "cannot reach" not in p.stderr and "permission" not in p.stderr.lower(), p.stderr
        # a user in neither group is kept out by the socket, not by the directory
        p = d.ctl("status", user="daemon", group="daemon")
        assert p.returncode == 3 and "ermission denied" in p.stderr, p.stderr
        d.stop()
        made.remove(d)
    finally:
        shutil.rmtree(base, ignore_errors=True)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        return int(next(line for line in f if line.startswith("VmRSS:")).split()[1])


@pytest.mark.skipif(os.environ.get("SANITIZE") == "1",
                    reason="ASan's allocator ignores mallopt and keeps freed memory in quarantine")
def test_rss_returns_near_idle_after_backups(pg, tmp_path, made):
    """Footprint: after three verified backups of a ~50 MB database the daemon's RSS is back within
    4 MB of its idle RSS. Measured here: +1.46 MB in three runs (13.4 MB idle), most of it library
    pages the backup touched first; without the fixed malloc mmap threshold (daemon/main.c) it is
    +14.3 MB, so the bound catches the regression with room for noise. Not under SANITIZE."""
    pg.psql("CREATE DATABASE shop")
    pg.psql("CREATE TABLE t AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS pad "
            "FROM generate_series(1, 500000) g", db="shop")
    d = Daemon(tmp_path, {"log_level": "info", "database": {"conninfo": pg.conninfo()},
                          "detector": {"halt_after": 1000},
                          "backup": {"directory": str(tmp_path / "backups"), "prefix": "shop",
                                     "conninfo": pg.conninfo("shop"), "key_file": make_key(tmp_path / "backup.key")}})
    made.append(d)
    d.start()
    # idle: started, and the database probe connected (libpq and its libraries loaded)
    wait_until(lambda: d.component("database").get("health") == "up", timeout=20, what="database probe up")
    idle = rss_kb(d.proc.pid)
    for _ in range(3):
        # names have one-second resolution: a backup right after the last one is "busy", retried
        p = wait_until(lambda: (lambda r: r if "busy" not in r.stderr else None)(
            d.ctl("--timeout", "300s", "backup", "now", "--wait", timeout=320)), timeout=60, interval=0.2,
            what="a backup that is not refused as busy")
        assert p.returncode == 0, p.stdout + p.stderr
    post = rss_kb(d.proc.pid)
    assert post - idle <= 4096, (idle, post)
