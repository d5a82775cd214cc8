"""
Integration tests for the continuous WAL archive (docs/wal.md): the real daemon streaming from a
real PostgreSQL 15 over a physical replication slot, the archive read back by an independent
reader (tests/bcf_reference.py for the container, the zstd command for the codec) and compared
byte for byte with the server's own WAL files.

- Complete segments are the server's segments exactly; the partial segment (pieces) holds a
  commit's WAL shortly after it, without a segment switch; the slot is active and its
  restart_lsn follows what is durable; wal-status and --json tell the same.
- kill -9 of the daemon while WAL is written: on restart the partial is read back and streaming
  goes on from its end; every segment is still the server's, none missing.
- A slot dropped while the daemon is down, and the WAL it kept removed: the slot is re-created,
  the hole is paged (wal.gap) and shown, archiving goes on; a segment deleted from the archive is
  found at start as a hole.
"""
import json
import os
import re
import struct
import subprocess
import sys

import pytest

from drsup import DRCTL, wait_until
from pgharness import PgCluster
from test_backup import backup_cfg, daemon_factory  # noqa: F401 (fixture)

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import bcf_reference  # noqa: E402

SEG = 16 << 20


@pytest.fixture
def pgw():
    """A cluster that keeps its WAL (wal_keep_size) so the test can compare the archive with it."""
    c = PgCluster(settings={"wal_keep_size": "1GB"})
    try:
        c.init()
        c.start()
        yield c
    finally:
        c.cleanup()


def lsn(s):
    hi, lo = s.split("/")
    return int(hi, 16) << 32 | int(lo, 16)


def key_of(path):
    with open(path) as f:
        return bytes.fromhex(f.read().strip())


def unzstd(payload):
    if not payload:
        return b""
    return subprocess.run(["zstd", "-dcq"], input=payload, capture_output=True, check=True).stdout


def read_container(key, path):
    with open(path, "rb") as f:
        hdr, payload = bcf_reference.read(key, f.read())
    return unzstd(payload) if hdr["codec"] == 1 else payload


def read_partial(key, path):
    """The pieces of a .partial.drwal: u64 length || container of ("DRWALP1\\0", u64 offset, bytes)."""
    with open(path, "rb") as f:
        raw = f.read()
    pos, out = 0, b""
    while pos < len(raw):
        (n,) = struct.unpack(">Q", raw[pos:pos + 8])
        hdr, payload = bcf_reference.read(key, raw[pos + 8:pos + 8 + n])
        plain = unzstd(payload) if hdr["codec"] == 1 else payload
        assert plain[:8] == b"DRWALP1\0"
        (off,) = struct.unpack(">Q", plain[8:16])
        assert off == len(out), (off, len(out))
        out += plain[16:]
        pos += 8 + n
    return out


def server_segment(pg, name):
    with open(os.path.join(pg.datadir, "pg_wal", name), "rb") as f:
        return f.read()


def wal_cfg(pg, tmp, **extra):
    b = backup_cfg(pg, tmp)
    w = {"conninfo": pg.conninfo("postgres"), "flush_interval": "200ms", "status_interval": "1s"}
    w.update(extra)
    return {"database": {"conninfo": pg.conninfo()}, "backup": b, "wal": w}


def status(d):
    return d.ctl_json("wal-status")


def wait_streaming(d):
    try:
        wait_until(lambda: status(d)["state"] == "streaming", timeout=20, what="streaming")
    except TimeoutError as e:
        raise AssertionError("%s\n%s\n%s" % (e, json.dumps(status(d)), d.log()[-4000:]))


def wait_archived(d, target, timeout=20):
    def ok():
        s = status(d)
        return s.get("archived_lsn") and lsn(s["archived_lsn"]) >= target and s
    return wait_until(ok, timeout=timeout, what="archived up to %X/%X" % (target >> 32, target & 0xffffffff))


def archive_files(d):
    wdir = d.config["wal"].get("directory") or os.path.join(d.config["backup"]["directory"], "wal")
    return wdir, sorted(f for f in os.listdir(wdir) if not f.startswith("."))


def check_segments_match(pg, key, wdir, names):
    segs = [n for n in names if n.endswith(".wal.zst.drbk")]
    for n in segs:
        assert oct(os.stat(os.path.join(wdir, n)).st_mode & 0o777) == "0o600"
        data = read_container(key, os.path.join(wdir, n))
        assert len(data) == SEG, n
        assert data == server_segment(pg, n[:24]), "segment %s differs from the server's" % n
    return [n[:24] for n in segs]


def write_rows(pg, n, tag, switch=False):
    pg.psql("CREATE TABLE IF NOT EXISTS t (id serial, tag text, pad text)")
    pg.psql("INSERT INTO t (tag, pad) SELECT '%s', repeat('x', 200) FROM generate_series(1, %d)" % (tag, n))
    if switch:
        pg.psql("SELECT pg_switch_wal()")


def start_archiving(pg, tmp_path, daemon_factory, cfg=None):
    """A daemon archiving pg's WAL, streaming; with the key its archive is encrypted with."""
    d = daemon_factory(cfg or wal_cfg(pg, tmp_path))
    d.start()
    wait_streaming(d)
    return d, key_of(d.config["backup"]["key_file"])


def test_archive_matches_the_server_and_the_partial_follows_commits(pgw, tmp_path, daemon_factory):
    pg = pgw
    d, key = start_archiving(pg, tmp_path, daemon_factory)

    # Segments: written by the server, switched, archived whole and equal to the server's.
    write_rows(pg, 20000, "a", switch=True)
    write_rows(pg, 1000, "b", switch=True)
    end = lsn(pg.psql("SELECT pg_current_wal_lsn()"))
    wait_archived(d, end)
    wdir, names = archive_files(d)
    segs = check_segments_match(pg, key, wdir, names)
    assert len(segs) >= 2, names
    nums = [int(s[8:], 16) for s in segs]
    assert nums == list(range(nums[0], nums[0] + len(nums))), segs  # contiguous

    # A commit, no switch: its WAL is in the sealed partial soon after, never in plaintext.
    pg.psql("INSERT INTO t (tag) VALUES ('committed')")
    commit = lsn(pg.psql("SELECT pg_current_wal_lsn()"))
    st = wait_archived(d, commit, timeout=10)
    wdir, names = archive_files(d)
    partials = [n for n in names if n.endswith(".partial.drwal")]
    assert len(partials) == 1, names
    pname = partials[0]
    assert oct(os.stat(os.path.join(wdir, pname)).st_mode & 0o777) == "0o600"
    part = read_partial(key, os.path.join(wdir, pname))
    seg_start = lsn(st["archived_lsn"]) - (lsn(st["archived_lsn"]) % SEG)
    assert len(part) >= commit - seg_start
    assert part == server_segment(pg, pname[:24])[:len(part)]
    assert b"committed" in part
    # no plaintext WAL anywhere in the archive directory
    for n in names:
        with open(os.path.join(wdir, n), "rb") as f:
            assert b"committed" not in f.read(), n

    # The slot: active, and restart_lsn at most what is durable (the slot keeps the rest).
    row = pg.psql("SELECT active, restart_lsn FROM pg_replication_slots WHERE slot_name = 'drsupervisor'")
    active, restart = row.split("|")
    assert active == "t" and lsn(restart) <= lsn(status(d)["archived_lsn"])
    app = pg.psql("SELECT application_name FROM pg_stat_replication")
    assert "drsupervisor_wal" in app

    # drctl status shows the archive as a component
    wait_until(lambda: d.ctl_json("status")["components"]["wal"]["health"] == "up", what="wal up in status")

    # wal-status: text and JSON agree.
    st = status(d)
    assert st["lag_bytes"] == 0 or lsn(st["primary_lsn"]) - lsn(st["archived_lsn"]) == st["lag_bytes"]
    assert st["segments"] >= 2 and st["oldest"]["segment"] == segs[0] and st["gaps"] == []
    p = d.ctl("wal-status")
    assert p.returncode == 0, p.stderr
    assert "streaming" in p.stdout and st["archived_lsn"][:3] in p.stdout and "gaps       none" in p.stdout


def test_kill9_resumes_from_the_partial_without_loss(pgw, tmp_path, daemon_factory):
    pg = pgw
    d, key = start_archiving(pg, tmp_path, daemon_factory)
    write_rows(pg, 5000, "before")
    mid = lsn(pg.psql("SELECT pg_current_wal_lsn()"))
    wait_archived(d, mid)
    first_seg = status(d)["partial"]["segment"]

    # killed while WAL keeps coming, with a sealed partial on disk; the slot keeps what was not durable
    writer = subprocess.Popen(pg._cmd([pg._bin("psql"), "-h", pg.sockdir, "-p", str(pg.port), "-U", "postgres", "-q",
                                       "-c", "INSERT INTO t (tag, pad) SELECT 'during', repeat('y', 300) "
                                       "FROM generate_series(1, 60000)"]), cwd="/")
    wait_until(lambda: status(d)["partial"]["sealed"] > 0 and status(d)["lag_bytes"] > 0, timeout=30,
               interval=0.01, what="a sealed partial while WAL is coming")
    d.kill9()
    assert writer.wait(timeout=120) == 0
    write_rows(pg, 1000, "after", switch=True)
    end = lsn(pg.psql("SELECT pg_current_wal_lsn()"))

    d.start()
    wait_archived(d, end, timeout=60)
    assert "resuming segment" in d.log(), d.log()[-3000:]
    wdir, names = archive_files(d)
    segs = check_segments_match(pg, key, wdir, names)
    nums = [int(s[8:], 16) for s in segs]
    assert first_seg in segs, (first_seg, segs)
    assert nums == list(range(nums[0], nums[0] + len(nums))), segs
    assert status(d)["gaps"] == []


def test_dropped_slot_and_missing_segment_are_gaps(pg, tmp_path, daemon_factory):
    d, _ = start_archiving(pg, tmp_path, daemon_factory)
    write_rows(pg, 2000, "a", switch=True)
    write_rows(pg, 2000, "b", switch=True)
    wait_archived(d, lsn(pg.psql("SELECT pg_current_wal_lsn()")))
    d.stop()

    # the slot dropped and the WAL it kept recycled away by checkpoints
    pg.psql("SELECT pg_drop_replication_slot('drsupervisor')")
    for i in range(4):
        write_rows(pg, 2000, "c%d" % i, switch=True)
        pg.psql("CHECKPOINT")
    d.start()
    wait_until(lambda: status(d)["gaps"], timeout=30, what="a gap")
    st = status(d)
    assert "no longer has the WAL" in st["gaps"][0]["reason"], st
    wait_until(lambda: "wal.gap" in d.log(), what="the wal.gap event")
    wait_until(lambda: d.ctl_json("status")["components"]["wal"]["health"] == "down", what="wal down in status")
    assert pg.psql("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'drsupervisor'") == "1"
    # archiving goes on after the hole
    write_rows(pg, 100, "d", switch=True)
    wait_archived(d, lsn(pg.psql("SELECT pg_current_wal_lsn()")), timeout=30)
    p = d.ctl("wal-status")
    assert "gap " in p.stdout, p.stdout
    d.stop()

    # a segment deleted from the archive: found as a hole when the daemon starts
    wdir, names = archive_files(d)
    segs = [n for n in names if n.endswith(".wal.zst.drbk")]
    assert len(segs) >= 3, names
    os.unlink(os.path.join(wdir, segs[1]))
    d.start()
    wait_until(lambda: any("missing from the archive" in g["reason"] for g in status(d)["gaps"]), timeout=20,
               what="the hole found at start")
    g = next(g for g in status(d)["gaps"] if "missing from the archive" in g["reason"])
    assert segs[1][:24] in g["reason"], g


def test_wal_config_errors_say_where(tmp_path):
    cfgp = tmp_path / "c.yaml"
    cfgp.write_text(json.dumps({"database": {"conninfo": "host=/tmp dbname=x"},
                                "wal": {"slot": "Bad-Name", "flush_interval": "1s"}}))
    p = subprocess.run([os.path.join(os.path.dirname(DRCTL), "drsupervisord"), "--check-config", "-c", str(cfgp)],
                       capture_output=True, text=True)
    assert p.returncode != 0
    assert "'wal' needs the 'backup' section" in p.stderr, p.stderr
    assert "'wal.slot' must be" in p.stderr and "c.yaml:" in p.stderr


def test_point_in_time_recovery_by_hand_with_wal_fetch(pgw, tmp_path, daemon_factory):
    """A base backup plus the archive recover to a time: the rows committed before T and none after,
    the last ones only in the partial segment (no switch). restore_command is drctl wal-fetch."""
    import pwd
    import shutil
    import tarfile
    import tempfile
    from test_backup_physical import decrypt, physical_cfg

    pg = pgw
    cfg = wal_cfg(pg, tmp_path)
    cfg["backup"] = physical_cfg(pg, tmp_path)
    d, _ = start_archiving(pg, tmp_path, daemon_factory, cfg)
    write_rows(pg, 3000, "base")
    res = d.ctl_json("backup", "now", "--physical", "--wait", timeout="120s")
    write_rows(pg, 500, "before")
    target, target_ms = pg.psql("SELECT clock_timestamp(), (extract(epoch from clock_timestamp()) * 1000)::bigint"
                                ).split("|")
    write_rows(pg, 700, "after")
    wait_archived(d, lsn(pg.psql("SELECT pg_current_wal_lsn()")))
    assert status(d)["partial"]["sealed"] > 0

    # the plan first: this base backup, continuous WAL from its start; nothing is changed
    p = d.ctl("--json", "recover", "--timestamp", target_ms, "--dry-run")
    assert p.returncode == 0, p.stdout + p.stderr
    plan = json.loads(p.stdout)
    assert plan["ok"] and plan["base_backup"]["name"] == res["name"] and plan["wal"]["continuous"], plan
    assert plan["wal"]["from_segment"] == "%08X%08X%08X" % (1, 0, lsn(res["manifest"]["wal"]["start_lsn"]) // SEG)
    assert plan["wal"]["segments"] >= 1 and plan["estimate_s"] > 0
    p = d.ctl("recover", "--timestamp", target_ms, "--dry-run")
    assert p.returncode == 0 and "is possible" in p.stdout and res["name"] in p.stdout, p.stdout
    # a target before any base backup, or past the end of the archive: refused, and why
    p = d.ctl("--json", "recover", "--timestamp", "1000", "--dry-run")
    assert p.returncode == 1 and "no verified base backup" in json.loads(p.stdout)["why"], p.stdout
    p = d.ctl("recover", "--timestamp", str(int(target_ms) + 3600 * 1000), "--dry-run")
    assert p.returncode == 1 and "NOT possible" in p.stdout and "archive ends" in p.stdout, p.stdout
    # without --dry-run and with no scenarios.point_in_time section: no recovery run, nothing touched
    p = d.ctl("recover", "--timestamp", target_ms)
    assert p.returncode == 1 and "data_directory is not set" in p.stderr, p.stderr
    assert d.ctl_json("runs")["runs"] == []

    # what PostgreSQL asks for that is not archived: exit 1; a damaged file: 126, nothing written
    wdir, names = archive_files(d)
    key_file = d.config["backup"]["key_file"]
    p = subprocess.run([DRCTL, "wal-fetch", "--key-file", key_file, "--archive", wdir, "00000009.history",
                        str(tmp_path / "x")], capture_output=True, text=True)
    assert p.returncode == 1 and "not in the archive" in p.stderr and not os.path.exists(tmp_path / "x")
    # after a key rotation: a file under another key than K fails with both ids named, nothing written;
    # with the key ring (ID.key files) it is opened with the key of its own id
    seg = sorted(n for n in names if n.endswith(".wal.zst.drbk"))[0][:24]
    other = str(tmp_path / "other.key")
    with open(os.open(other, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    fetch = lambda *a: subprocess.run([DRCTL, "wal-fetch", *a, "--archive", wdir, seg, str(tmp_path / "x")],
                                      capture_output=True, text=True)
    p = fetch("--key-file", other)
    assert p.returncode == 126 and "was written under key id" in p.stderr, p.stderr
    assert not os.path.exists(tmp_path / "x")
    ring = tmp_path / "ring"
    ring.mkdir(mode=0o700)
    want = re.search(r"key id ([0-9a-f]{32}), ", p.stderr).group(1)
    shutil.copy(key_file, ring / (want + ".key"))
    os.chmod(ring / (want + ".key"), 0o600)
    p = fetch("--key-file", other, "--key-ring", str(ring))
    assert p.returncode == 0, p.stderr
    via_ring = open(tmp_path / "x", "rb").read()
    os.unlink(tmp_path / "x")
    assert fetch("--key-file", key_file).returncode == 0 and open(tmp_path / "x", "rb").read() == via_ring
    assert len(via_ring) == SEG
    os.unlink(tmp_path / "x")
    os.unlink(ring / (want + ".key"))
    p = fetch("--key-file", other, "--key-ring", str(ring))
    assert p.returncode == 126 and not os.path.exists(tmp_path / "x"), p.stderr

    # the recovery host: the base backup extracted, the archive and a key the server's user owns
    pw = pwd.getpwnam("postgres")
    rec = PgCluster()
    rec._make_dirs(tempfile.mkdtemp(prefix="drsup-pitr-"))
    tar = str(tmp_path / "base.tar")
    assert decrypt(key_file, os.path.join(cfg["backup"]["directory"], res["name"]), tar).returncode == 0
    os.makedirs(rec.datadir, mode=0o700)
    with tarfile.open(tar) as t:
        t.extractall(rec.datadir)
    arch = os.path.join(rec.tmpdir, "archive")
    shutil.copytree(wdir, arch)
    rkey = os.path.join(rec.tmpdir, "key")
    shutil.copy(key_file, rkey)
    for root, dirs, files in os.walk(rec.tmpdir):
        for n in dirs + files:
            os.chown(os.path.join(root, n), pw.pw_uid, pw.pw_gid)
    os.chmod(rkey, 0o600)
    os.makedirs(os.path.join(rec.datadir, "pg_wal"), exist_ok=True)
    os.chown(os.path.join(rec.datadir, "pg_wal"), pw.pw_uid, pw.pw_gid)
    with open(os.path.join(rec.datadir, "postgresql.auto.conf"), "a") as f:
        f.write("restore_command = '%s wal-fetch --key-file %s --archive %s %%f %%p'\n" % (DRCTL, rkey, arch))
        f.write("recovery_target_time = '%s'\nrecovery_target_action = 'promote'\n" % target)
    open(os.path.join(rec.datadir, "recovery.signal"), "w").close()
    os.chown(os.path.join(rec.datadir, "recovery.signal"), pw.pw_uid, pw.pw_gid)
    try:
        rec.start()
        wait_until(lambda: rec.psql("SELECT pg_is_in_recovery()", check=False) == "f", timeout=60,
                   what="the recovered server promoted")
        got = rec.psql("SELECT tag, count(*) FROM t GROUP BY tag ORDER BY tag")
        assert got.split() == ["base|3000", "before|500"], got
        assert "restored log file" in open(rec.logfile).read()
    finally:
        rec.cleanup()


def test_retention_keeps_what_the_oldest_base_backup_needs(pgw, tmp_path, daemon_factory):
    """No base backup: nothing is removed. Base backup B1: the segments before its start go. Then B2,
    and B1 deleted by the backups' retention: the segments before B2's start go, B2's and everything
    after stay."""
    from test_backup_physical import physical_cfg

    pg = pgw
    cfg = wal_cfg(pg, tmp_path)
    cfg["backup"] = physical_cfg(pg, tmp_path)
    d, _ = start_archiving(pg, tmp_path, daemon_factory, cfg)
    for i in range(3):
        write_rows(pg, 500, "x%d" % i, switch=True)
    wait_archived(d, lsn(pg.psql("SELECT pg_current_wal_lsn()")))
    before = [n for n in archive_files(d)[1] if n.endswith(".wal.zst.drbk")]
    assert len(before) >= 3
    # no base backup yet: all of it is still there
    assert [n for n in archive_files(d)[1] if n.endswith(".wal.zst.drbk")] == before

    b1 = d.ctl_json("backup", "now", "--physical", "--wait", timeout="120s")
    for i in range(2):
        write_rows(pg, 500, "y%d" % i, switch=True)
    # (backup names have one-second resolution)
    wait_until(lambda: d.ctl("backup", "now", "--physical", "--wait").returncode == 0, timeout=30, interval=0.3,
               what="the second base backup")
    b2 = [b for b in d.ctl_json("backups")["backups"] if b["kind"] == "physical" and b["name"] != b1["name"]][0]
    m2 = json.load(open(os.path.join(cfg["backup"]["directory"], b2["name"] + ".manifest.json")))
    keep_from = lsn(m2["wal"]["start_lsn"]) // SEG
    wait_archived(d, lsn(pg.psql("SELECT pg_current_wal_lsn()")))
    # with B1 and B2: what is before B1's start goes, B1's segments stay
    b1_from = lsn(b1["manifest"]["wal"]["start_lsn"]) // SEG
    assert int(before[0][8:24], 16) < b1_from < keep_from
    wait_until(lambda: min(int(n[8:24], 16) for n in archive_files(d)[1] if n.endswith(".wal.zst.drbk")) == b1_from,
               timeout=20, what="the segments before B1's start removed")

    # B1 removed by the backups' own retention (max_age 1s keeps the newest of each kind)
    pg.psql("CREATE DATABASE shop")
    cfg["backup"]["retention"] = {"max_age": "1s"}
    d.write_config(d.config | {"backup": cfg["backup"]})
    assert d.ctl("reload").returncode == 0
    wait_until(lambda: d.ctl("backup", "now", "--wait").returncode == 0, timeout=30, interval=0.3,
               what="a logical backup (runs the retention)")
    wait_until(lambda: b1["name"] not in [b["name"] for b in d.ctl_json("backups")["backups"]], timeout=20,
               what="B1 deleted")
    wait_until(lambda: min(int(n[8:24], 16) for n in archive_files(d)[1] if n.endswith(".wal.zst.drbk")) == keep_from,
               timeout=20, what="the segments before B2's start removed")
    nums = sorted(int(n[8:24], 16) for n in archive_files(d)[1] if n.endswith(".wal.zst.drbk"))
    assert nums == list(range(keep_from, keep_from + len(nums))), nums
    assert "removed" in d.log() and "wal.retention" in d.log()
    assert status(d)["oldest"]["segment"][8:] == "%08X%08X" % (0, keep_from)


def test_a_promotion_is_followed_onto_the_new_timeline(pgw, tmp_path, daemon_factory):
    """The receiver's conninfo names both nodes (target_session_attrs=read-write). The primary is
    stopped and the standby promoted: the receiver finds the new primary, archives its history
    file, closes timeline 1's last segment as .partial and goes on on timeline 2."""
    pg = pgw
    sb = PgCluster(settings={"wal_keep_size": "1GB"})
    try:
        sb.init_standby(pg, "pg2")
        sb.start()
        both = "host=127.0.0.1,127.0.0.1 port=%d,%d user=postgres dbname=postgres target_session_attrs=read-write" % (
            pg.port, sb.port)
        d, key = start_archiving(pg, tmp_path, daemon_factory, wal_cfg(pg, tmp_path, conninfo=both))
        write_rows(pg, 3000, "tl1", switch=True)
        write_rows(pg, 200, "tl1b")
        end1 = lsn(pg.psql("SELECT pg_current_wal_lsn()"))
        wait_archived(d, end1)
        wait_until(lambda: lsn(sb.psql("SELECT pg_last_wal_replay_lsn()")) >= end1, timeout=30,
                   what="the standby caught up")

        pg.stop("fast")
        sb.psql("SELECT pg_promote(true, 60)")
        assert sb.psql("SELECT pg_is_in_recovery()") == "f"
        write_rows(sb, 2000, "tl2", switch=True)
        end2 = lsn(sb.psql("SELECT pg_current_wal_lsn()"))
        try:
            wait_until(lambda: status(d).get("timeline") == 2, timeout=60, what="timeline 2 followed")
        except TimeoutError as e:
            raise AssertionError("%s\n%s\n%s" % (e, json.dumps(status(d)), d.log()[-5000:]))
        wait_archived(d, end2, timeout=60)

        wdir, names = archive_files(d)
        assert "00000002.history.drbk" in names, names
        hist = read_container(key, os.path.join(wdir, "00000002.history.drbk"))
        assert hist.startswith(b"1\t"), hist
        ends = [n for n in names if n.endswith(".partial.wal.zst.drbk")]
        assert len(ends) == 1 and ends[0].startswith("00000001"), names
        switch = lsn(hist.split(b"\t")[1].decode())
        tail = read_container(key, os.path.join(wdir, ends[0]))
        assert len(tail) == switch % SEG, (len(tail), switch)
        tl2 = [n for n in names if n.startswith("00000002") and n.endswith(".wal.zst.drbk")]
        assert tl2, names
        for n in tl2:
            assert read_container(key, os.path.join(wdir, n)) == server_segment(sb, n[:24]), n
        # timeline 1 up to the switch is what timeline 2's copy of that segment begins with
        assert server_segment(sb, "00000002" + ends[0][8:24])[:len(tail)] == tail
        assert "timeline 1 ended" in d.log()
        assert status(d)["gaps"] == []
    finally:
        sb.cleanup()


def test_what_was_received_is_sealed_when_the_primary_dies_or_the_daemon_stops(pgw, tmp_path, daemon_factory):
    """flush_interval far away, so only the failure and the stop can seal: the primary killed
    with its slot, the bytes received are the only copy of its last commits."""
    pg = pgw
    d, key = start_archiving(pg, tmp_path, daemon_factory, wal_cfg(pg, tmp_path, flush_interval="1h"))
    write_rows(pg, 300, "last")
    commit = lsn(pg.psql("SELECT pg_current_wal_lsn()"))
    seg_start = commit - commit % SEG

    def received():
        s = status(d)
        return seg_start + s["partial"]["received"] >= commit and s
    st = wait_until(received, what="the commit received")
    assert st["partial"]["sealed"] < st["partial"]["received"]  # not sealed yet
    pg.kill9()
    st = wait_archived(d, commit, timeout=15)
    assert st["partial"]["sealed"] == st["partial"]["received"]

    # the daemon stopping seals too
    pg.start()
    wait_streaming(d)
    write_rows(pg, 300, "at stop")
    commit = lsn(pg.psql("SELECT pg_current_wal_lsn()"))
    seg_start = commit - commit % SEG
    wait_until(received, what="the second commit received")
    d.stop()
    wdir, names = archive_files(d)
    part = [n for n in names if n.endswith(".partial.drwal") and int(n[8:24], 16) == commit // SEG]
    assert part, names
    assert seg_start + len(read_partial(key, os.path.join(wdir, part[0]))) >= commit
