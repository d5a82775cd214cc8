"""
Integration tests for backups: the real daemon, a real PostgreSQL 15, real pg_dump/pg_restore.

- round trip: known data -> `drctl backup now --wait` -> file + manifest (verified) -> `drctl backup
  decrypt` (no daemon) -> pg_restore into a new database -> table CONTENTS equal; state files
  captured; `drctl backups` / `backup-status`; test restore with validation queries (scratch
  database dropped); tampering with the file makes `drctl verify` fail with a clear message.
- failures: bad conninfo, key file too open, unwritable directory (a regular file where the
  directory should be), pg_dump killed mid-stream: each a clear error, an event, a catalog failure,
  nothing under a final name; a later backup still runs; consecutive failures open a condition.

A small local daemon helper is used until tests/integration/drsup.py lands on main.
"""
import json
import os
import subprocess

import pytest

from drsup import DRCTL
from drsup import Daemon as HarnessDaemon
from drsup import wait_until

PGBIN = "/usr/lib/postgresql/15/bin"


class Daemon(HarnessDaemon):
    """The shared harness (tests/integration/drsup.py) with the names these tests use: `cfg` is
    the configuration, ctl() takes drctl's own --timeout."""

    serial = 0

    def __init__(self, tmp, cfg):
        Daemon.serial += 1
        super().__init__(tmp, cfg, name="d%d" % Daemon.serial)

    @property
    def cfg(self):
        return self.config

    def ctl(self, *args, timeout="60s"):
        return super().ctl("--timeout", timeout, *args, timeout=150)

    def ctl_json(self, *args, timeout="60s"):
        p = self.ctl("--json", *args, timeout=timeout)
        assert p.returncode == 0, p.stderr + self.log()
        return json.loads(p.stdout)


@pytest.fixture
def daemon_factory(tmp_path):
    made = []

    def make(cfg):
        d = Daemon(tmp_path, cfg)
        made.append(d)
        return d

    yield make
    for d in made:
        d.stop()


def make_key(path, mode=0o600):
    with open(path, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    os.chmod(path, mode)
    return path


def fill_db(pg, db="shop"):
    pg.psql("CREATE DATABASE %s" % db)
    pg.psql("""
        CREATE TABLE orders (id int PRIMARY KEY, sym text NOT NULL, qty numeric(12,2), created_at timestamptz);
        INSERT INTO orders SELECT i, 'SYM' || (i % 17), i * 1.25, '2024-01-01'::timestamptz + i * interval '1 minute'
          FROM generate_series(1, 3000) i;
        CREATE TABLE trades (id bigserial PRIMARY KEY, order_id int REFERENCES orders(id), note text);
        INSERT INTO trades (order_id, note) SELECT i, md5(i::text) FROM generate_series(1, 2000) i;
    """, db=db)


def table_dump(pg, db, table):
    return pg.psql("SELECT * FROM %s ORDER BY 1" % table, db=db)


def backup_cfg(pg, tmp, **extra):
    cfg = {
        "directory": os.path.join(str(tmp), "backups"),
        "prefix": "shop",
        "conninfo": pg.conninfo("shop"),
        "pg_dump": os.path.join(PGBIN, "pg_dump"),
        "pg_restore": os.path.join(PGBIN, "pg_restore"),
        "key_file": make_key(os.path.join(str(tmp), "backup.key")),
    }
    cfg.update(extra)
    return cfg


def final_files(d):
    return sorted(f for f in os.listdir(d) if not f.startswith(".")) if os.path.isdir(d) else []


def test_round_trip_decrypt_restore_and_tamper(pg, tmp_path, daemon_factory):
    fill_db(pg)
    state = tmp_path / "killswitch.json"
    state.write_text('{"halted": false}\n')
    bcfg = backup_cfg(pg, tmp_path, state_files=[str(state)],
                      verify={"validation_queries": ["SELECT count(*) FROM orders",
                                                     "SELECT max(created_at) FROM orders"]})
    d = daemon_factory({"database": {"conninfo": pg.conninfo()}, "backup": bcfg})
    d.start()

    res = d.ctl_json("backup", "now", "--wait")
    m = res["manifest"]
    name = res["name"]
    assert name.startswith("shop_backup_") and name.endswith(".dump.zst.drbk")
    assert m["database"] == "shop" and m["codec"] == "zstd" and m["server_version"].startswith("15")
    assert m["codec_level"] == 1  # the effective level, not 0 for "default"
    # pg_dump_version: what `pg_dump --version` prints, without "pg_dump (PostgreSQL) ".
    real = subprocess.run([bcfg["pg_dump"], "--version"], capture_output=True, text=True,
                          check=True).stdout.splitlines()[0]
    assert m["pg_dump_version"] and real == "pg_dump (PostgreSQL) " + m["pg_dump_version"], (real, m)
    assert m["pg_dump_version"].startswith("15.")
    assert m["verification"]["container"] == "ok" and m["verification"]["pg_restore_list"] == "ok"
    assert m["verification"]["sha256_match"] is True
    bdir = bcfg["directory"]
    files = final_files(bdir)
    assert name in files and name + ".manifest.json" in files
    assert m["state_files"]["file"] in files and m["state_files"]["entries"][0]["path"] == str(state)
    with open(os.path.join(bdir, name + ".manifest.json")) as f:
        assert json.load(f)["sha256"] == m["sha256"]
    assert oct(os.stat(os.path.join(bdir, name)).st_mode & 0o777) == "0o600"

    # Listing and the one-line status.
    lst = d.ctl_json("backups")
    assert [b["name"] for b in lst["backups"]] == [name] and lst["backups"][0]["verified"] is True
    p = d.ctl("backup-status")
    assert p.returncode == 0 and len(p.stdout.strip().splitlines()) == 1
    assert name in p.stdout and "verified" in p.stdout

    # The key never appears in the log.
    with open(bcfg["key_file"]) as f:
        assert f.read().strip() not in d.log()

    # Decrypt with no daemon involved, restore into a new database, compare contents.
    out = str(tmp_path / "restored.dump")
    p = subprocess.run([DRCTL, "backup", "decrypt", "--key-file", bcfg["key_file"], os.path.join(bdir, name),
                        "-o", out], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    pg.psql("CREATE DATABASE shop_copy")
    subprocess.run([os.path.join(PGBIN, "pg_restore"), "--no-owner", "-d", pg.conninfo("shop_copy"), out],
                   check=True, capture_output=True)
    for t in ("orders", "trades"):
        assert table_dump(pg, "shop_copy", t) == table_dump(pg, "shop", t)
    assert len(table_dump(pg, "shop_copy", "orders").splitlines()) == 3000

    # The state files come back as a tar.
    tar_out = str(tmp_path / "state.tar")
    p = subprocess.run([DRCTL, "backup", "decrypt", "--key-file", bcfg["key_file"],
                        os.path.join(bdir, m["state_files"]["file"]), "-o", tar_out], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    ex = tmp_path / "ex"
    ex.mkdir()
    subprocess.run(["tar", "-xf", tar_out, "-C", str(ex)], check=True)
    assert (ex / str(state).lstrip("/")).read_text() == '{"halted": false}\n'

    # Test restore with validation queries; the scratch database is dropped.
    r = d.ctl_json("verify", "--restore", timeout="120s")
    rt = r["restore_test"]
    assert rt["status"] == "ok" and rt["dropped"] is True, rt
    assert rt["queries"][0]["rows"] == [["3000"]]
    assert "drsup_verify" not in pg.psql("SELECT string_agg(datname, ',') FROM pg_database")
    assert d.ctl_json("backups")["backups"][0]["restore_test"] == "ok"

    # Tamper: flip one byte in the middle of the file; verify must fail clearly.
    path = os.path.join(bdir, name)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x01]))
    p = d.ctl("verify", name)
    assert p.returncode == 1
    assert "authentication failed" in p.stderr and name in p.stderr, p.stderr
    assert d.ctl_json("backups")["backups"][0]["verified"] is False
    # decrypt refuses too and leaves nothing under the output name.
    out2 = str(tmp_path / "tampered.dump")
    p = subprocess.run([DRCTL, "backup", "decrypt", "--key-file", bcfg["key_file"], path, "-o", out2],
                       capture_output=True, text=True)
    assert p.returncode == 1 and "authentication failed" in p.stderr and not os.path.exists(out2)
    assert not [f for f in os.listdir(str(tmp_path)) if f.startswith(".tampered")]


def test_pg_dump_version_is_read_once_per_program_file(pg, tmp_path, daemon_factory):
    """`pg_dump --version` runs for the first backup only, and again when the program file changes
    (a package upgrade replaces it): a wrapper script stands in for pg_dump and says which version
    it is."""
    fill_db(pg)
    wrapper = tmp_path / "pg_dump"
    calls = tmp_path / "version-calls"

    def install(version):
        tmp = tmp_path / "pg_dump.new"
        tmp.write_text('#!/bin/sh\nif [ "$1" = --version ]; then echo x >> %s; '
                       'echo "pg_dump (PostgreSQL) %s"; exit 0; fi\nexec %s "$@"\n'
                       % (calls, version, os.path.join(PGBIN, "pg_dump")))
        tmp.chmod(0o755)
        os.rename(tmp, wrapper)  # a new file, as a package upgrade would install it

    def version_calls():
        return len(calls.read_text().splitlines()) if calls.exists() else 0

    def backup():
        """The manifest of a new backup (retried while the last one took this second's name)."""
        def once():
            p = d.ctl("--json", "backup", "now", "--wait")
            return json.loads(p.stdout)["manifest"] if p.returncode == 0 else None
        return wait_until(once, timeout=15, what="a backup")

    install("15.99 (test build)")
    d = daemon_factory({"database": {"conninfo": pg.conninfo()},
                        "backup": backup_cfg(pg, tmp_path, pg_dump=str(wrapper))})
    d.start()
    first = backup()
    assert first["pg_dump_version"] == "15.99 (test build)" and version_calls() == 1
    second = backup()
    assert second["file"] != first["file"] and second["pg_dump_version"] == "15.99 (test build)", second
    assert version_calls() == 1  # remembered
    install("15.100 (upgraded)")
    third = backup()
    assert third["pg_dump_version"] == "15.100 (upgraded)" and version_calls() == 2, third
    with open(os.path.join(d.cfg["backup"]["directory"], third["file"] + ".manifest.json")) as f:
        assert json.load(f)["pg_dump_version"] == "15.100 (upgraded)"
    assert d.log().count("pg_dump '%s' is version" % wrapper) == 2


def test_failures_leave_nothing_and_next_backup_runs(pg, tmp_path, daemon_factory):
    fill_db(pg)
    bcfg = backup_cfg(pg, tmp_path, watch={"failures": 2})
    bdir = bcfg["directory"]
    # A pg_dump that writes part of a dump and is then killed.
    fake = tmp_path / "pg_dump_killed"
    fake.write_text("#!/bin/sh\n%s \"$@\" | head -c 20000\nkill -9 $$\n" % os.path.join(PGBIN, "pg_dump"))
    fake.chmod(0o755)
    d = daemon_factory({"database": {"conninfo": pg.conninfo()}, "backup": bcfg})
    d.start()

    def fails_with(*needles):
        p = d.ctl("backup", "now", "--wait")
        assert p.returncode == 1, p.stdout
        for n in needles:
            assert n in p.stderr, p.stderr
        assert final_files(bdir) == [], final_files(bdir)
        return p.stderr

    # Bad conninfo (nothing listens on port 1).
    d.cfg["backup"]["conninfo"] = "host=127.0.0.1 port=1 dbname=shop user=postgres"
    d.write_config()
    assert d.ctl("reload").returncode == 0
    fails_with("(connect)")
    assert d.ctl_json("status")["components"]["backup"]["health"] != "down"
    fails_with("(connect)")

    # Two failures: the consecutive-failures condition is open; status shows the backup down.
    st = d.ctl_json("status")
    assert st["components"]["backup"]["health"] == "down"

    # Key file too open: a reload refuses it (checked as the file is read); one that breaks while
    # the daemon runs is each backup's recorded failure.
    d.cfg["backup"]["conninfo"] = pg.conninfo("shop")
    d.write_config()
    assert d.ctl("reload").returncode == 0
    os.chmod(bcfg["key_file"], 0o644)
    p = d.ctl("reload")
    assert p.returncode == 1 and "'backup.key_file'" in p.stderr and "too open" in p.stderr, p.stderr
    err = fails_with("(key)", "too open")
    with open(bcfg["key_file"]) as f:
        assert f.read().strip() not in err
    os.chmod(bcfg["key_file"], 0o600)

    # pg_dump killed mid-stream.
    d.cfg["backup"]["pg_dump"] = str(fake)
    d.write_config()
    assert d.ctl("reload").returncode == 0
    fails_with("(dump)", "killed by signal 9")

    # Unwritable directory: a regular file where the directory should be.
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    d.cfg["backup"]["pg_dump"] = os.path.join(PGBIN, "pg_dump")
    d.cfg["backup"]["directory"] = str(blocker / "backups")
    d.write_config()
    assert d.ctl("reload").returncode == 0
    fails_with("(open)", "backup directory")

    lst = d.ctl_json("backups")
    stages = [f["stage"] for f in lst["failures"]]
    assert stages == ["connect", "connect", "key", "dump", "open"], lst["failures"]

    # Everything fixed: the next backup runs and the failure condition resolves.
    d.cfg["backup"]["directory"] = bdir
    d.write_config()
    assert d.ctl("reload").returncode == 0
    res = d.ctl_json("backup", "now", "--wait")
    assert final_files(bdir) == sorted([res["name"], res["name"] + ".manifest.json"])
    wait_until(lambda: d.ctl_json("status")["components"]["backup"]["health"] == "up", what="backup up")
    log = d.log()
    assert "backup.failures" in log and "2 consecutive backup failures" in log

    # Failures survive a restart (state_dir), and the catalog is rebuilt from the directory.
    d.stop()
    d2 = Daemon(tmp_path, d.cfg)
    d2.start()
    try:
        lst = wait_until(lambda: (lambda r: r if r["scanned"] else None)(d2.ctl_json("backups")), what="scan")
        assert [b["name"] for b in lst["backups"]] == [res["name"]]
        assert len(lst["failures"]) == 5
    finally:
        d2.stop()


def test_key_credential_found_in_alerts_credentials_dir(pg, tmp_path, daemon_factory):
    """backup.key_credential is looked up like every other secret ($CREDENTIALS_DIRECTORY, else
    alerts.credentials_dir), at load and by the backup itself: a key only in credentials_dir takes
    and verifies a backup; a credential that is not there stops the load naming the key."""
    fill_db(pg)
    creds = tmp_path / "creds"
    creds.mkdir()
    make_key(str(creds / "backup_key"))
    bcfg = backup_cfg(pg, tmp_path, key_credential="backup_key")
    del bcfg["key_file"]
    d = daemon_factory({"database": {"conninfo": pg.conninfo()}, "alerts": {"credentials_dir": str(creds)},
                        "backup": bcfg})
    d.start(env={"CREDENTIALS_DIRECTORY": ""})
    res = d.ctl_json("backup", "now", "--wait")
    assert res["manifest"]["verification"]["container"] == "ok", res
    p = d.ctl("verify", res["name"])
    assert p.returncode == 0, p.stderr + d.log()
    d.stop()

    bcfg["key_credential"] = "no_such_key"
    d2 = daemon_factory({"database": {"conninfo": pg.conninfo()}, "alerts": {"credentials_dir": str(creds)},
                         "backup": bcfg})
    from drsup import DAEMON
    env = dict(os.environ)
    env.pop("CREDENTIALS_DIRECTORY", None)
    p = subprocess.run([DAEMON, "--check-config", "--config", d2.config_path], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True, env=env)
    assert p.returncode == 2, p.stdout
    assert "'backup.key_credential': credential 'no_such_key'" in p.stdout, p.stdout
    assert str(creds / "no_such_key") in p.stdout, p.stdout


def test_busy_and_disabled(pg, tmp_path, daemon_factory):
    fill_db(pg)
    slow = tmp_path / "pg_dump_slow"
    slow.write_text("#!/bin/sh\nsleep 3\nexec %s \"$@\"\n" % os.path.join(PGBIN, "pg_dump"))
    slow.chmod(0o755)
    d = daemon_factory({"database": {"conninfo": pg.conninfo()},
                        "backup": backup_cfg(pg, tmp_path, pg_dump=str(slow), codec="gzip")})
    d.start()
    p = d.ctl("backup", "now")
    assert p.returncode == 0 and "started" in p.stdout
    p = d.ctl("backup", "now")
    assert p.returncode == 1 and "is running" in p.stderr and "one at a time" in p.stderr
    # The control socket stays responsive during the backup.
    assert d.ctl("ping").returncode == 0
    lst = wait_until(lambda: (lambda r: r if r["backups"] and not r["running"] else None)(d.ctl_json("backups")),
                     what="backup done")
    assert lst["backups"][0]["name"].endswith(".dump.gz.drbk") and lst["backups"][0]["verified"]
    d.stop()

    d2 = daemon_factory({"database": {"conninfo": pg.conninfo()}})
    d2.tmp = str(tmp_path)
    d2.start()
    p = d2.ctl("backups")
    assert p.returncode == 1 and "backups are not configured" in p.stderr
    assert d2.ctl_json("status")["components"]["backup"]["health"] == "disabled"


def test_write_failing_mid_dump_loses_nothing_and_the_daemon_keeps_running(pg, tmp_path, daemon_factory):
    """A write that fails in the middle of a dump (here a file size limit set on the running daemon
    with prlimit: EFBIG, the same path as a full disk's ENOSPC): the backup fails at stage "write"
    with the reason, leaves no file, the daemon keeps running, and once the limit is lifted the next
    backup succeeds."""
    fill_db(pg)
    # Incompressible rows, so the encrypted file outgrows the limit while pg_dump is still writing.
    pg.psql("CREATE TABLE blobs (id int PRIMARY KEY, data bytea);"
            "INSERT INTO blobs SELECT i, decode(string_agg(md5(i::text || j::text), ''), 'hex') "
            "FROM generate_series(1, 400) i, generate_series(1, 400) j GROUP BY i;", db="shop")
    bcfg = backup_cfg(pg, tmp_path)
    bdir = bcfg["directory"]
    d = daemon_factory({"database": {"conninfo": pg.conninfo()}, "backup": bcfg})
    d.start()
    subprocess.run(["prlimit", "--pid", str(d.proc.pid), "--fsize=1000000:unlimited"], check=True)
    p = d.ctl("backup", "now", "--wait")
    assert p.returncode == 1, p.stdout
    assert "(write)" in p.stderr and "File too large" in p.stderr, p.stderr
    assert final_files(bdir) == [] and os.listdir(bdir) == [], os.listdir(bdir)
    assert d.proc.poll() is None
    assert d.ctl_json("backups")["failures"][-1]["stage"] == "write"
    subprocess.run(["prlimit", "--pid", str(d.proc.pid), "--fsize=unlimited:unlimited"], check=True)
    res = wait_until(lambda: (lambda r: r.returncode == 0 and json.loads(r.stdout))(
        d.ctl("--json", "backup", "now", "--wait")), timeout=30, interval=0.5, what="a backup after the limit")
    assert res["manifest"]["file_size_bytes"] > 1000000
    assert final_files(bdir) == sorted([res["name"], res["name"] + ".manifest.json"])
