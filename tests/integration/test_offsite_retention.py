"""
Integration tests for the off-site bucket's retention and the WAL archive waiting for the off-site
copy (docs/offsite.md), with the real daemon, PostgreSQL 15 and the strict S3 test server.

- repository.s3.retention with max_age 1s: once the second base backup is off-site, the first one
  and its manifest, and the WAL segments that end before the second one starts, are deleted from
  the bucket (DeleteObject), the record stops claiming them, they are not uploaded again although
  the first base backup is still on the disk; the newest base backup, its manifest, every WAL file
  after its start and the only logical backup stay; offsite-status says what was removed and kept.
- A WAL segment that local retention no longer needs (its base backup deleted by backup.retention)
  but that is not off-site yet (every S3 request failing) stays on the disk, wal-status counts it
  held for the off-site copy; once uploads succeed it goes up and then is removed locally. The
  first base backup, removed locally by backup.retention, is listed by `drctl backups` with location
  offsite (and in --json), and `drctl verify --offsite` verifies it.
"""
import json
import os
import time

import pytest

from drsup import Daemon, wait_until
from pgharness import PgCluster
from s3server import S3Server
from test_backup import fill_db
from test_offsite import offsite_cfg
from test_offsite import status as ostatus
from test_wal import wait_streaming, write_rows

SEG = 16 << 20


@pytest.fixture(scope="module")
def pgm():
    c = PgCluster()
    try:
        c.init()
        c.start()
        fill_db(c)
        yield c
    finally:
        c.cleanup()


@pytest.fixture
def s3():
    s = S3Server().start()
    yield s
    s.stop()


def segno(name):
    return int(name[8:16], 16) * (0x100000000 // SEG) + int(name[16:24], 16)


def start_lsn(bdir, base):
    with open(os.path.join(bdir, base + ".manifest.json")) as f:
        hi, lo = json.load(f)["wal"]["start_lsn"].split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def segments(wdir):
    return sorted(n for n in os.listdir(wdir) if n.endswith(".wal.zst.drbk"))


def base_backup(d):
    return wait_until(lambda: d.ctl_json("backup", "now", "--physical", "--wait")["name"], timeout=10,
                      what="a base backup (names have a one-second resolution)")


def explain(d, e, *more):
    log = "\n".join(line for line in d.log().splitlines() if "S3 answered" not in line)
    return AssertionError("%s\n%s\n%s" % (e, json.dumps([ostatus(d)] + list(more), indent=1), log[-6000:]))


def test_bucket_retention_keeps_newest_base_and_wal_after_it(pgm, tmp_path, s3):
    cfg = offsite_cfg(pgm, tmp_path, s3, wal=True, retention={"max_age": "1s"})
    cfg["wal"]["slot"] = "offsite_ret1"
    d = Daemon(tmp_path, cfg)
    try:
        d.start()
        wait_streaming(d)
        bdir = d.config["backup"]["directory"]
        wdir = os.path.join(bdir, "wal")
        logical = d.ctl_json("backup", "now", "--wait")["name"]
        b1 = base_backup(d)
        write_rows(pgm, 2000, "ret1", switch=True)
        write_rows(pgm, 2000, "ret2", switch=True)
        b2 = base_backup(d)
        write_rows(pgm, 2000, "ret3", switch=True)
        b2_start = start_lsn(bdir, b2)
        objs = lambda: s3.objects("drsup")  # noqa: E731
        b1k, b2k, lk = "prod/backups/" + b1, "prod/backups/" + b2, "prod/backups/" + logical

        def settled():
            o = objs()
            old = [k for k in o if k.startswith("prod/wal/") and k.endswith(".wal.zst.drbk")
                   and (segno(k[len("prod/wal/"):]) + 1) * SEG <= b2_start]
            after = [n for n in segments(wdir) if (segno(n) + 1) * SEG > b2_start]
            st = ostatus(d)
            return (b1k not in o and b1k + ".manifest.json" not in o and not old and b2k in o and
                    all("prod/wal/" + n in o for n in after) and not st["queued"] and
                    st["retention"]["removed_total"] >= 3) and st
        try:
            st = wait_until(settled, timeout=40, what="the bucket's retention done")
        except TimeoutError as e:
            raise explain(d, e, sorted(objs()))
        o = objs()
        assert b2k + ".manifest.json" in o and lk in o and lk + ".manifest.json" in o, sorted(o)
        assert any(k.endswith(".wal.zst.drbk") and (segno(k[9:]) + 1) * SEG > b2_start and
                   segno(k[9:]) * SEG <= b2_start for k in o), "the segment the newest base backup starts in"
        ret = st["retention"]
        assert ret["enabled"] and ret["policy"]["max_age_s"] == 1, ret
        assert ret["kept"]["base_backups"] == 1 and ret["kept"]["backups"] == 2, ret
        assert ret["kept"]["wal_from_lsn"] == "%X/%X" % (b2_start >> 32, b2_start & 0xffffffff), ret
        deletes = [r for r in s3.requests if r[0] == "DELETE" and "uploadId" not in r[1]]
        assert any(r[1].endswith("/" + b1) for r in deletes), deletes
        # the first base backup is still on the disk: it is not uploaded again
        assert os.path.exists(os.path.join(bdir, b1))
        with open(os.path.join(d.config["state_dir"], "offsite.json")) as f:
            rec = json.load(f)
        assert b1k not in rec["objects"] and rec["removed"][b1k]["done"], rec["removed"]
        puts = lambda: [r for r in s3.requests if r[0] == "PUT" and r[1].endswith("/" + b1)]  # noqa: E731
        n = len(puts())
        d.ctl("backup", "now", "--wait")  # a backup.done: a scan at once, which must skip b1
        wait_until(lambda: not ostatus(d)["queued"], timeout=10, what="the queue empty again")
        assert len(puts()) == n and b1k not in objs()
        text = d.ctl("offsite-status").stdout
        assert "retention  max_age 1s" in text and "  removed  " in text and "WAL from " in text, text
        d.stop()
        # a restart trusts the record: nothing removed is uploaded again, nothing kept is deleted
        d.start()
        wait_until(lambda: ostatus(d)["loaded"], timeout=10, what="the record loaded")
        d.ctl("backup", "now", "--wait")
        wait_until(lambda: not ostatus(d)["queued"], timeout=15, what="the queue empty after the restart")
        assert b1k not in objs() and b2k in objs()
        d.stop()
    finally:
        d.cleanup()


def test_local_wal_waits_for_the_offsite_copy(pgm, tmp_path, s3):
    cfg = offsite_cfg(pgm, tmp_path, s3, wal=True)
    cfg["wal"]["slot"] = "offsite_ret2"
    cfg["backup"]["retention"] = {"max_age": "1s"}
    d = Daemon(tmp_path, cfg)
    try:
        d.start()
        wait_streaming(d)
        bdir = d.config["backup"]["directory"]
        wdir = os.path.join(bdir, "wal")
        b1 = base_backup(d)
        t_b1 = time.time()
        write_rows(pgm, 2000, "hold1", switch=True)
        up = lambda n: "prod/wal/" + n in s3.objects("drsup")  # noqa: E731
        try:
            # in the bucket and recorded (the record follows the HEAD check): nothing queued
            wait_until(lambda: segments(wdir) and all(up(n) for n in segments(wdir)) and not ostatus(d)["queued"],
                       timeout=20, what="the first segments off-site")
        except TimeoutError as e:
            raise explain(d, e)
        offsite_already = set(segments(wdir))
        s3.fault("error", 10 ** 6)  # from here every S3 request fails
        write_rows(pgm, 2000, "hold2", switch=True)
        write_rows(pgm, 2000, "hold3", switch=True)
        wait_until(lambda: set(segments(wdir)) - offsite_already, timeout=20, what="new segments")
        # backup.retention (max_age 1s, applied after each backup) must find the first one older
        wait_until(lambda: time.time() - t_b1 > 1.5, timeout=3, what="the first base backup 1.5 s old")
        b2 = base_backup(d)  # backup.retention deletes the first one: its WAL is no longer needed
        cut = start_lsn(bdir, b2)
        held = sorted(n for n in set(segments(wdir)) - offsite_already if (segno(n) + 1) * SEG <= cut)
        assert held, (segments(wdir), cut)

        def old_gone_new_held():
            w = d.ctl_json("wal-status")
            segs = set(segments(wdir))
            return (not (offsite_already & segs) or all((segno(n) + 1) * SEG > cut for n in offsite_already & segs)) \
                and w.get("held_for_offsite", 0) >= len(held) and w
        try:
            wait_until(old_gone_new_held, timeout=20, what="retention ran: off-site segments gone, others held")
        except TimeoutError as e:
            raise explain(d, e, d.ctl_json("wal-status"), segments(wdir), held)
        assert all(n in segments(wdir) for n in held), (segments(wdir), held)
        assert not any(up(n) for n in held)
        assert "not got yet" in d.log()
        s3.faults.clear()  # uploads succeed again: each held segment goes up, then goes locally
        try:
            wait_until(lambda: all(up(n) for n in held) and not any(n in segments(wdir) for n in held), timeout=25,
                       what="held segments off-site, then removed locally")
        except TimeoutError as e:
            raise explain(d, e, d.ctl_json("wal-status"), segments(wdir), held)
        wait_until(lambda: d.ctl_json("wal-status").get("held_for_offsite") == 0, timeout=10,
                   what="nothing held any more")
        # the first base backup, gone from this host but in the bucket: listed as offsite, verifiable
        assert not os.path.exists(os.path.join(bdir, b1))
        listed = {b["name"]: b for b in d.ctl_json("backups")["backups"]}
        assert listed[b1]["location"] == "offsite" and listed[b1]["kind"] == "physical", listed.get(b1)
        assert listed[b1]["verified"] and listed[b1]["file_size_bytes"] > 0 and listed[b1]["started_at"], listed[b1]
        assert listed[b2]["location"] == "both", listed[b2]
        assert [n for n in listed].index(b1) < [n for n in listed].index(b2)
        assert b1 in d.ctl("backups").stdout and " offsite" in d.ctl("backups").stdout
        v = d.ctl_json("verify", "--offsite", b1)
        assert v["offsite"] and v["chunks"] > 0, v
        d.stop()
    finally:
        d.cleanup()
