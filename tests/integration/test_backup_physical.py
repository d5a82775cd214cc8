"""
Integration tests for physical base backups: the real daemon, a real PostgreSQL 15, the real
pg_basebackup (tar to stdout, no WAL) through the same container as the logical backups.

- `drctl backup now --physical --wait`: a file named .base.tar.zst.drbk and a manifest of kind
  "physical" with the WAL start/stop point and timeline (checked against the backup_label inside
  the tar, which the server wrote), verified; `drctl backups` shows a KIND column and --json
  "kind" for both kinds; the logical restore path (newest verified backup for restores) still
  picks the logical backup; `drctl verify --restore` of a physical backup is refused clearly.
- `drctl backup decrypt` turns it into a tar holding PG_VERSION, global/pg_control, backup_label
  and the server's backup_manifest.
- Every file of the tar is checked against the server's backup_manifest while it streams (and again
  by the verification after the backup): the manifest records files_verified == the manifest's
  Files count and checksum_algorithm CRC32C; the CRC32C byte order and the Manifest-Checksum are
  checked here against that real manifest, computed independently in Python.
- backup.physical.manifest_checksums: SHA256 is asked for, computed and verified.
- A flipped byte makes `drctl verify` fail and the backup unverified.
- A file changed inside a valid container (decrypted, one byte of a data file changed, re-encrypted
  with tests/bcf_reference.py and the key, the manifest's sha256 updated as whoever had the key
  could): `drctl verify` fails naming that file, the container and the SHA-256 still ok.
- A base backup over a role that cannot connect fails with pg_basebackup's message, leaves
  nothing, and is recorded as a physical failure; a logical backup still runs.
- An old manifest without "kind" is listed as logical (compatibility).
- Retention (max_age 1s) keeps the newest backup of each kind, not the newest of all.

PostgreSQL 15's initdb defaults are what a base backup needs (wal_level=replica, max_wal_senders
10, pg_hba "replication" entries for local and 127.0.0.1 with the harness's trust method): the
harness is unchanged, and the first test says so if that ever stops being true.
"""
import hashlib
import io
import json
import os
import struct
import subprocess
import sys
import tarfile
import time

from drsup import DRCTL, wait_until
from test_backup import PGBIN, backup_cfg, daemon_factory, fill_db, final_files  # noqa: F401 (fixture)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import bcf_reference  # noqa: E402


def crc32c(data):
    """CRC-32C bit by bit, independent of lib/crc32c.c."""
    c = 0xFFFFFFFF
    for b in data:
        c ^= b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
    return c ^ 0xFFFFFFFF


def physical_cfg(pg, tmp):
    cfg = backup_cfg(pg, tmp)
    cfg["physical"] = {"pg_basebackup": os.path.join(PGBIN, "pg_basebackup"),
                       "conninfo": pg.conninfo("postgres")}
    return cfg


def decrypt(key_file, path, out):
    p = subprocess.run([DRCTL, "backup", "decrypt", "--key-file", key_file, path, "-o", out],
                       capture_output=True, text=True)
    return p


def test_physical_backup_catalog_decrypt_and_tamper(pg, tmp_path, daemon_factory):
    assert pg.psql("SHOW wal_level") == "replica" and int(pg.psql("SHOW max_wal_senders")) > 0
    fill_db(pg)
    bcfg = physical_cfg(pg, tmp_path)
    d = daemon_factory({"database": {"conninfo": pg.conninfo()}, "backup": bcfg})
    d.start()

    logical = d.ctl_json("backup", "now", "--wait")
    assert logical["manifest"]["kind"] == "logical"

    # at once, likely in the second the logical one was named: it starts in the next second
    p = d.ctl("--json", "backup", "now", "--physical", "--wait")
    assert p.returncode == 0, p.stderr + d.log()
    res = json.loads(p.stdout)
    name, m = res["name"], res["manifest"]
    assert name.startswith("shop_backup_") and name.endswith(".base.tar.zst.drbk"), name
    assert m["kind"] == "physical" and m["payload"] == "tar" and m["codec"] == "zstd"
    assert m["server_version"].startswith("15") and m["pg_basebackup_version"].startswith("15.")
    assert m["verification"]["container"] == "ok" and m["verification"]["sha256_match"] is True
    assert "pg_restore_list" not in m["verification"] and "database" not in m
    assert m["tar_size_bytes"] > m["cluster_size_bytes"] // 2 > 0
    wal = m["wal"]
    assert wal["timeline"] == 1 and wal["stop_timeline"] == 1 and wal["start_lsn"] and wal["stop_lsn"]
    smf = m["backup_manifest"]
    assert smf["where"] == "in the tar" and smf["member"] == "backup_manifest" and smf["files"] > 100
    assert len(smf["manifest_checksum"]) == 64 and smf["tar_members"] > smf["files"] // 2
    # Every file of the server's manifest checked while the tar streamed, and after the backup.
    assert smf["files_verified"] == smf["files"] and smf["checksum_algorithm"] == "CRC32C", smf
    assert m["verification"]["files"] == "ok" and m["verification"]["files_verified"] == smf["files"]
    assert m["verification"]["checksum_algorithm"] == "CRC32C"
    hi, lo = (int(x, 16) for x in wal["start_lsn"].split("/"))
    shi, slo = (int(x, 16) for x in wal["stop_lsn"].split("/"))
    assert (shi << 32 | slo) >= (hi << 32 | lo)
    assert m["started_at"] <= m["finished_at"]
    bdir = bcfg["directory"]
    assert name in final_files(bdir) and name + ".manifest.json" in final_files(bdir)
    assert oct(os.stat(os.path.join(bdir, name)).st_mode & 0o777) == "0o600"
    with open(os.path.join(bdir, name + ".manifest.json")) as f:
        on_disk = json.load(f)
    assert on_disk["kind"] == "physical" and on_disk["sha256"] == m["sha256"] and on_disk["wal"] == wal

    # The catalog: both kinds, KIND column, --json "kind".
    lst = d.ctl_json("backups")["backups"]
    assert [(b["name"], b["kind"], b["verified"]) for b in lst] == \
        [(logical["name"], "logical", True), (name, "physical", True)]
    p = d.ctl("backups")
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert "KIND" in lines[0].split()
    row = next(line for line in lines if line.startswith(name))
    assert row.split()[1] == "physical"
    assert next(line for line in lines if line.startswith(logical["name"])).split()[1] == "logical"
    st = d.ctl_json("backup-status")
    assert st["latest"] == logical["name"] and st["latest_physical"] == name

    # pg_restore cannot read a base backup: a test restore of it is refused, the daemon goes on.
    p = d.ctl("verify", "--restore", name)
    assert p.returncode != 0 and "physical" in p.stderr, p.stderr
    # verify on its own works (the container and the SHA-256).
    v = d.ctl_json("verify", name)
    assert v["verification"]["container"] == "ok" and v["verification"]["sha256_match"] is True
    assert v["verification"]["files"] == "ok" and v["verification"]["files_verified"] == smf["files"]

    # Decrypt without the daemon: a tar of the data directory with the server's files.
    out = str(tmp_path / "base.tar")
    p = decrypt(bcfg["key_file"], os.path.join(bdir, name), out)
    assert p.returncode == 0, p.stderr
    with tarfile.open(out) as t:
        names = set(t.getnames())
        for need in ("PG_VERSION", "global/pg_control", "backup_label", "backup_manifest"):
            assert need in names, (need, sorted(names)[:20])
        assert t.extractfile("PG_VERSION").read().strip() == b"15"
        label = t.extractfile("backup_label").read().decode()
        bm_text = t.extractfile("backup_manifest").read()
        bm = json.loads(bm_text.decode())
        members = {mi.name: mi for mi in t.getmembers() if mi.isfile()}
        control = t.extractfile("global/pg_control").read()
        version = t.extractfile("PG_VERSION").read()
    assert "START WAL LOCATION: %s " % wal["start_lsn"] in label, label
    assert "START TIMELINE: 1" in label
    ranges = bm["WAL-Ranges"]
    assert ranges == [{"Timeline": 1, "Start-LSN": wal["start_lsn"], "End-LSN": wal["stop_lsn"]}], ranges
    assert any(f["Path"] == "global/pg_control" for f in bm["Files"])
    assert bm["Manifest-Checksum"] == smf["manifest_checksum"] and len(bm["Files"]) == smf["files"]
    # How PostgreSQL prints a CRC32C: the uint32's bytes in the server's memory order (x86-64:
    # little-endian), not the number in hex. And its Manifest-Checksum: SHA-256 of the text up to
    # and including the newline before the checksum line.
    by_path = {f["Path"]: f for f in bm["Files"]}
    for path, content in (("global/pg_control", control), ("PG_VERSION", version)):
        f = by_path[path]
        assert f["Checksum-Algorithm"] == "CRC32C" and f["Size"] == len(content)
        assert f["Checksum"] == struct.pack("<I", crc32c(content)).hex(), (path, f["Checksum"], hex(crc32c(content)))
    before = bm_text.rstrip(b"\n").rfind(b"\n") + 1
    assert hashlib.sha256(bm_text[:before]).hexdigest() == bm["Manifest-Checksum"]
    # The tar's regular members are the manifest's files and the manifest itself, no more.
    assert sorted(members) == sorted(list(by_path) + ["backup_manifest"])
    # No WAL inside (-X none): the WAL archive will supply it.
    assert not [n for n in names if n.startswith("pg_wal/") and len(os.path.basename(n)) == 24]

    # Tamper: one flipped byte; verify fails, the backup is no longer verified, decrypt refuses.
    path = os.path.join(bdir, name)
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x01]))
    p = d.ctl("verify", name)
    assert p.returncode == 1 and name in p.stderr and "authentication failed" in p.stderr, p.stderr
    lst = {b["name"]: b for b in d.ctl_json("backups")["backups"]}
    assert lst[name]["verified"] is False and lst[logical["name"]]["verified"] is True
    out2 = str(tmp_path / "tampered.tar")
    p = decrypt(bcfg["key_file"], path, out2)
    assert p.returncode == 1 and not os.path.exists(out2)


def test_physical_backup_failure_is_recorded_per_kind(pg, tmp_path, daemon_factory):
    """A base backup over a conninfo that cannot replicate fails with pg_basebackup's own message,
    leaves nothing behind, and is recorded as a physical failure; a logical backup still runs."""
    fill_db(pg)
    bcfg = physical_cfg(pg, tmp_path)
    bcfg["physical"]["conninfo"] = pg.conninfo("postgres").replace("user=postgres", "user=nosuchrole")
    d = daemon_factory({"database": {"conninfo": pg.conninfo()}, "backup": bcfg})
    d.start()
    p = d.ctl("backup", "now", "--physical", "--wait")
    assert p.returncode != 0 and "nosuchrole" in p.stderr, p.stderr
    assert final_files(bcfg["directory"]) == []
    lst = d.ctl_json("backups")
    assert lst["backups"] == []
    assert [f["kind"] for f in lst["failures"]] == ["physical"]
    assert d.ctl_json("backup", "now", "--wait")["manifest"]["kind"] == "logical"


def test_old_manifest_without_kind_is_logical(pg, tmp_path, daemon_factory):
    """Manifests written before kinds existed are logical backups: listed as such, verified by the
    old rule (pg_restore --list), and still what a restore picks."""
    fill_db(pg)
    bcfg = backup_cfg(pg, tmp_path)
    d = daemon_factory({"database": {"conninfo": pg.conninfo()}, "backup": bcfg})
    d.start()
    name = d.ctl_json("backup", "now", "--wait")["name"]
    d.stop()
    mpath = os.path.join(bcfg["directory"], name + ".manifest.json")
    with open(mpath) as f:
        m = json.load(f)
    del m["kind"]
    with open(mpath, "w") as f:
        json.dump(m, f)
    d2 = daemon_factory({"database": {"conninfo": pg.conninfo()}, "backup": bcfg})
    d2.start()
    lst = wait_until(lambda: d2.ctl_json("backups")["backups"], timeout=10, what="the catalog scan")
    assert [(b["name"], b["kind"], b["verified"]) for b in lst] == [(name, "logical", True)]


def test_retention_treats_kinds_separately(pg, tmp_path, daemon_factory):
    """retention.max_age 1s: each pass keeps the newest (verified) backup of EACH kind. Mixed
    together, the physical backup would go at the second logical backup's pass and the logical one
    at the next physical backup's pass; per kind, each stays until a newer one of its kind exists."""
    fill_db(pg)
    bcfg = physical_cfg(pg, tmp_path)
    bcfg["retention"] = {"max_age": "1s"}
    d = daemon_factory({"database": {"conninfo": pg.conninfo()}, "backup": bcfg})
    d.start()

    def take(*args):
        p = d.ctl("--json", "backup", "now", "--wait", *args)
        assert p.returncode == 0, p.stderr + d.log()
        return json.loads(p.stdout)["name"]

    def catalog():
        return sorted((b["kind"], b["name"]) for b in d.ctl_json("backups")["backups"])

    def past_max_age():
        time.sleep(2.1)  # max_age is 1 s on the daemon's one-second clock

    p1 = take("--physical")
    l1 = take()
    past_max_age()
    l2 = take()
    assert catalog() == [("logical", l2), ("physical", p1)]
    past_max_age()
    p2 = take("--physical")
    assert catalog() == [("logical", l2), ("physical", p2)]
    # The catalog changes at once; the files go on the thread pool just after.
    wait_until(lambda: sorted(f for f in final_files(bcfg["directory"]) if not f.endswith(".manifest.json"))
               == sorted([l2, p2]), timeout=10, what="the old files deleted")
    files = final_files(bcfg["directory"])
    assert l1 not in files and p1 not in files and l2 + ".manifest.json" in files and p2 + ".manifest.json" in files


def test_physical_file_changed_inside_a_valid_container(pg, tmp_path, daemon_factory):
    """The container proves the file is the one the daemon wrote; only the server's backup_manifest
    proves the data directory inside is the one the server sent. Here a data file is changed by one
    byte and the tar re-encrypted with the key (and the manifest's sha256 updated, as whoever holds
    the key could): the container and the SHA-256 verify, the file check names the file."""
    fill_db(pg)
    bcfg = physical_cfg(pg, tmp_path)
    d = daemon_factory({"database": {"conninfo": pg.conninfo()}, "backup": bcfg})
    d.start()
    res = d.ctl_json("backup", "now", "--physical", "--wait")
    name = res["name"]
    assert res["manifest"]["verification"]["files"] == "ok"
    bdir = bcfg["directory"]
    path = os.path.join(bdir, name)
    d.stop()

    # Decrypt, change one byte of the biggest data file (its header stays valid: content only).
    out = str(tmp_path / "base.tar")
    p = decrypt(bcfg["key_file"], path, out)
    assert p.returncode == 0, p.stderr
    with tarfile.open(out) as t:
        victim = max((mi for mi in t.getmembers() if mi.isfile() and mi.name.startswith("base/")),
                     key=lambda mi: mi.size)
        offset = victim.offset_data + victim.size // 2
    with open(out, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x40]))
    with tarfile.open(out) as t:  # still a valid tar, same member sizes
        assert t.getmember(victim.name).size == victim.size

    # Re-encrypt with the key, the original header's time, zstd like the daemon.
    with open(bcfg["key_file"]) as f:
        key = bytes.fromhex(f.read().strip())
    with open(path, "rb") as f:
        hdr, _ = bcf_reference.read(key, f.read())
    with open(out, "rb") as f:
        plain = f.read()
    payload = subprocess.run(["zstd", "-q", "-c"], input=plain, capture_output=True, check=True).stdout
    data = bcf_reference.write(key, payload, os.urandom(32), hdr["created_at"], codec=1)
    with open(path, "wb") as f:
        f.write(data)
    mpath = path + ".manifest.json"
    with open(mpath) as f:
        m = json.load(f)
    m["sha256"] = hashlib.sha256(data).hexdigest()
    with open(mpath, "w") as f:
        json.dump(m, f)

    d2 = daemon_factory({"database": {"conninfo": pg.conninfo()}, "backup": bcfg})
    d2.start()
    wait_until(lambda: d2.ctl_json("backups")["backups"], timeout=10, what="the catalog scan")
    p = d2.ctl("verify", name)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "'%s' has CRC32C " % victim.name in p.stderr and "backup_manifest says" in p.stderr, p.stderr

    def on_disk():
        with open(mpath) as f:
            v = json.load(f)["verification"]
        return v if v.get("files") == "failed" else None
    v = wait_until(on_disk, timeout=10, what="the manifest rewritten after the verification")
    assert v["container"] == "ok" and v["sha256_match"] is True, v
    assert "files_verified" not in v and "checksum_algorithm" not in v
    assert victim.name in v["error"]
    lst = {b["name"]: b for b in d2.ctl_json("backups")["backups"]}
    assert lst[name]["verified"] is False


# A pg_basebackup that changes what the server sent: runs the real one into a file, then, by
# TAMPER: "byte" flips one byte in the middle of the largest data file (the tar stays valid),
# "sha256" asks the server for SHA256 checksums instead of the CRC32C the daemon asked for.
WRAPPER = r'''#!/usr/bin/python3
import os, subprocess, sys, tarfile, tempfile
real, mode, args = sys.argv[1], sys.argv[2], sys.argv[3:]
if "--version" in args:
    os.execv(real, [real] + args)
if mode == "sha256":
    args = ["--manifest-checksums=SHA256" if a.startswith("--manifest-checksums=") else a for a in args]
with tempfile.TemporaryFile() as f:
    p = subprocess.run([real] + args, stdout=f)
    if p.returncode:
        sys.exit(p.returncode)
    if mode == "byte":
        f.seek(0)
        with tarfile.open(fileobj=f) as t:
            victim = max((m for m in t.getmembers() if m.isfile() and m.name.startswith("base/")),
                         key=lambda m: m.size)
        sys.stderr.write("changed %s\n" % victim.name)
        f.seek(victim.offset_data + victim.size // 2)
        b = f.read(1)
        f.seek(-1, 1)
        f.write(bytes([b[0] ^ 0x40]))
    f.seek(0)
    while True:
        chunk = f.read(1 << 20)
        if not chunk:
            break
        sys.stdout.buffer.write(chunk)
'''


def test_physical_backup_whose_files_differ_fails_before_its_name(pg, tmp_path, daemon_factory):
    """The check while the tar streams: a data file that differs from the server's backup_manifest,
    or a manifest in an algorithm the daemon did not compute, fails the backup at stage verify,
    naming the file (or the algorithm); nothing takes a final name; it is a physical failure.
    verify.after_backup is off, so what fails is the check of the stream itself, not the
    verification of the written file that would otherwise follow."""
    fill_db(pg)
    bcfg = physical_cfg(pg, tmp_path)
    bcfg["verify"] = {"after_backup": False}
    wrapper = tmp_path / "pg_basebackup_wrapper"
    wrapper.write_text(WRAPPER)
    wrapper.chmod(0o755)
    real = bcfg["physical"]["pg_basebackup"]
    stub = tmp_path / "pg_basebackup"
    mode_file = tmp_path / "mode"
    stub.write_text('#!/bin/sh\nexec %s %s "$(cat %s)" "$@"\n' % (wrapper, real, mode_file))
    stub.chmod(0o755)
    bcfg["physical"]["pg_basebackup"] = str(stub)
    d = daemon_factory({"database": {"conninfo": pg.conninfo()}, "backup": bcfg})
    d.start()

    mode_file.write_text("byte")
    p = d.ctl("backup", "now", "--physical", "--wait")
    assert p.returncode != 0, p.stdout
    assert "has CRC32C " in p.stderr and "the server's backup_manifest says" in p.stderr, p.stderr
    assert "'base/" in p.stderr and "files match" in p.stderr, p.stderr
    assert final_files(bcfg["directory"]) == []
    fails = d.ctl_json("backups")["failures"]
    assert [(f["kind"], f["stage"]) for f in fails] == [("physical", "verify")], fails

    mode_file.write_text("sha256")
    p = d.ctl("backup", "now", "--physical", "--wait")
    assert p.returncode != 0
    assert "checksums its files with SHA256" in p.stderr and "this check computed CRC32C" in p.stderr, p.stderr
    assert final_files(bcfg["directory"]) == []

    mode_file.write_text("none")  # the wrapper passing everything through: the backup works
    for _ in range(20):
        p = d.ctl("--json", "backup", "now", "--physical", "--wait")
        if "less than a second ago" not in p.stderr:
            break
        time.sleep(0.2)
    assert p.returncode == 0, p.stderr
    m = json.loads(p.stdout)["manifest"]
    assert m["backup_manifest"]["checksum_algorithm"] == "CRC32C"
    assert m["backup_manifest"]["files_verified"] == m["backup_manifest"]["files"] > 100
    assert m["verification"]["files"] == "skipped" and m["verification"]["container"] == "skipped"


def test_physical_backup_with_sha256_manifest_checksums(pg, tmp_path, daemon_factory):
    """backup.physical.manifest_checksums: SHA256: pg_basebackup is asked for it, the daemon
    computes SHA-256 for every file (OpenSSL EVP), and drctl verify uses what the manifest records."""
    fill_db(pg)
    bcfg = physical_cfg(pg, tmp_path)
    bcfg["physical"]["manifest_checksums"] = "SHA256"
    d = daemon_factory({"database": {"conninfo": pg.conninfo()}, "backup": bcfg})
    d.start()
    res = d.ctl_json("backup", "now", "--physical", "--wait")
    smf, v = res["manifest"]["backup_manifest"], res["manifest"]["verification"]
    assert smf["checksum_algorithm"] == "SHA256" and smf["files_verified"] == smf["files"] > 100, smf
    assert v["files"] == "ok" and v["checksum_algorithm"] == "SHA256"
    out = str(tmp_path / "base.tar")
    assert decrypt(bcfg["key_file"], os.path.join(bcfg["directory"], res["name"]), out).returncode == 0
    with tarfile.open(out) as t:
        bm = json.loads(t.extractfile("backup_manifest").read())
        version = t.extractfile("PG_VERSION").read()
    f = next(f for f in bm["Files"] if f["Path"] == "PG_VERSION")
    assert f["Checksum-Algorithm"] == "SHA256" and f["Checksum"] == hashlib.sha256(version).hexdigest()
    v = d.ctl_json("verify", res["name"])["verification"]
    assert v["files"] == "ok" and v["checksum_algorithm"] == "SHA256" and v["files_verified"] == smf["files"]
