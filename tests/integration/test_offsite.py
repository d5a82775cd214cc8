"""
Integration tests for the off-site uploader (docs/offsite.md): the real daemon, a real PostgreSQL
15 and the strict S3 test server (tests/integration/s3server.py: its own SigV4 check and the body
against x-amz-content-sha256) on loopback.

- A verified logical backup and a base backup (multipart: part_size 64 KiB), their manifests (one
  PUT each) and the archived WAL segments appear in the bucket with the local files' bytes (sha256 compared), each with
  x-amz-meta-sha256; the record survives a restart (nothing re-uploaded); `drctl backups` shows the
  backup "both"; offsite-status tells the same; `drctl verify --offsite` downloads each backup in
  ranges and verifies it, and catches a bit flipped in the bucket's copy.
- A wrong secret (virtual-host style): 403 SignatureDoesNotMatch, offsite.failed opens and is paged (PagerDuty double);
  the right secret and a reload: uploaded, the condition closes.
- 503 SlowDown, 500 and connection resets are retried, an object stored short (answered 200) is
  caught by the HEAD and uploaded again; everything ends uploaded and correct.
- kill -9 of the daemon in the middle of a multipart upload: nothing under the final key, and after
  a restart the interrupted upload is aborted and the object is complete and correct.
- A backup's state tar (backup.state_files): while its PUT is refused (503), the container is up
  and the manifest is not (a manifest in the bucket never names a missing tar); then the tar goes
  up, checked (bytes, x-amz-meta-sha256, the record), encrypted (no plaintext of the state file),
  then the manifest; with retention.max_age 1s a newer backup makes the older backup, its
  manifest and its tar go from the bucket, the newer one's tar stays.

The S3 backend is the strict server by default; DRSUP_S3_BACKEND=s3rver (`make s3rver-check`) runs
the same upload/download tests against @20minutes/s3rver (tests/integration/s3rver.py), an
independent implementation; the checks that need the strict server's request log, its view of open
uploads or its fault modes are left out there, and the tests made of them are skipped with a reason.
"""
import hashlib
import json
import os
import urllib.request

import pytest

from drsup import Daemon, wait_until
from pgharness import PgCluster
from s3rver import make_s3, strict_only
from test_backup import PGBIN, backup_cfg, fill_db
from test_wal import wait_streaming, write_rows

AK, SK = "AKIDTEST", "test-secret/with+chars"


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
    s = make_s3(AK, SK)
    yield s
    s.stop()


@pytest.fixture
def made():
    ds = []
    yield ds
    for d in ds:
        d.cleanup()


def secret(tmp, name, value):
    p = os.path.join(str(tmp), name)
    with open(p, "w") as f:
        f.write(value + "\n")
    os.chmod(p, 0o600)
    return p


def offsite_cfg(pg, tmp, s3, secret_key=SK, wal=False, **extra):
    s = {"endpoint": s3.url(), "bucket": "drsup", "prefix": "prod/",
         "access_key_id_file": secret(tmp, "s3.ak", AK), "secret_access_key_file": secret(tmp, "s3.sk", secret_key),
         "part_size": "64KiB", "concurrency": 2, "scan_interval": "200ms", "retry_base": "50ms",
         "retry_cap": "400ms", "max_attempts": 4, "timeout": "10s"}
    s.update(extra)
    cfg = {"database": {"conninfo": pg.conninfo()}, "backup": backup_cfg(pg, tmp), "repository": {"s3": s}}
    if wal:
        cfg["backup"]["physical"] = {"pg_basebackup": os.path.join(PGBIN, "pg_basebackup"),
                                     "conninfo": pg.conninfo("postgres")}
        cfg["wal"] = {"conninfo": pg.conninfo("postgres"), "flush_interval": "200ms", "status_interval": "1s",
                      "slot": "offsite_test"}
    return cfg


def replace(s3, key, body, etag):
    """The bucket's copy of key replaced by body (its metadata kept)."""
    if s3.requests is None:  # s3rver: through S3 itself
        s3.put("drsup", key, body)
        return
    with s3.lock:
        s3.buckets["drsup"][key] = (body, etag)


def puts(s3, prefix):
    """What tells a PUT under prefix: the strict server's log of them, s3rver's stored files' times."""
    if s3.requests is None:
        return s3.stored_times("drsup", prefix)
    return [r for r in s3.requests if r[0] == "PUT" and "/" + prefix in r[1]]


def multipart_etag(s3, etag, path):
    """A multipart object's ETag: S3's (and the strict server's) ends in -PARTS; s3rver's, unlike S3,
    is the quoted MD5 of the whole object."""
    if s3.requests is None:
        return etag == '"%s"' % hashlib.md5(local(path)).hexdigest()
    return etag.endswith('-%d"' % -(-os.path.getsize(path) // (64 << 10)))


def sha(data):
    return hashlib.sha256(data).hexdigest()


def local(path):
    with open(path, "rb") as f:
        return f.read()


def status(d):
    return d.ctl_json("offsite-status")


def wait_offsite(d, s3, keys, timeout=20):
    def ok():
        objs = s3.objects("drsup")
        return all(k in objs for k in keys) and not status(d)["queued"]
    try:
        return wait_until(ok, timeout=timeout, what="uploaded: %s" % keys)
    except TimeoutError as e:
        raise AssertionError("%s\n%s\n%s" % (e, json.dumps(status(d), indent=1), d.log()[-3000:]))


def check_same(s3, key, path):
    body, etag = s3.objects("drsup")[key]
    assert sha(body) == sha(local(path)), key
    assert s3.meta[("drsup", key)].get("x-amz-meta-sha256") == sha(body), key
    return etag


def test_backup_and_wal_go_offsite(pgm, tmp_path, s3, made):
    d = Daemon(tmp_path, offsite_cfg(pgm, tmp_path, s3, wal=True))
    made.append(d)
    d.start()
    wait_streaming(d)
    name = d.ctl_json("backup", "now", "--wait")["name"]
    base = wait_until(lambda: d.ctl_json("backup", "now", "--physical", "--wait")["name"], timeout=5,
                      what="a base backup (names have a one-second resolution)")
    assert base.endswith(".base.tar.zst.drbk"), base
    write_rows(pgm, 20000, "offsite", switch=True)
    bdir = d.config["backup"]["directory"]
    wdir = os.path.join(bdir, "wal")
    wait_until(lambda: any(n.endswith(".wal.zst.drbk") and os.path.getsize(os.path.join(wdir, n)) > 64 << 10
                           for n in os.listdir(wdir)), timeout=20, what="a segment above part_size")
    keys = ["prod/backups/" + name, "prod/backups/" + name + ".manifest.json", "prod/backups/" + base,
            "prod/backups/" + base + ".manifest.json"]

    def local_segs():  # WAL retention may remove what the base backup no longer needs, meanwhile
        return sorted(n for n in os.listdir(wdir) if n.endswith(".wal.zst.drbk"))

    def all_up():
        objs = s3.objects("drsup")
        return all(k in objs for k in keys + ["prod/wal/" + n for n in local_segs()]) and not status(d)["queued"]
    try:
        wait_until(all_up, timeout=40, what="the backups and every local segment off-site")
    except TimeoutError as e:
        raise AssertionError("%s\n%s\n%s" % (e, json.dumps(status(d), indent=1), d.log()[-3000:]))
    segs = local_segs()
    etag = check_same(s3, "prod/backups/" + base, os.path.join(bdir, base))
    assert multipart_etag(s3, etag, os.path.join(bdir, base)), etag
    check_same(s3, "prod/backups/" + base + ".manifest.json", os.path.join(bdir, base + ".manifest.json"))

    check_same(s3, keys[0], os.path.join(bdir, name))
    check_same(s3, keys[1], os.path.join(bdir, name + ".manifest.json"))
    multipart = 0
    for n in segs:
        etag = check_same(s3, "prod/wal/" + n, os.path.join(wdir, n))
        size = os.path.getsize(os.path.join(wdir, n))
        if size > 64 << 10:
            assert multipart_etag(s3, etag, os.path.join(wdir, n)), (n, size, etag)
            multipart += 1
    assert multipart, "no WAL segment was above part_size: the test did not exercise multipart"
    if s3.requests is not None:  # the strict server's request log (s3rver has none)
        assert any(m == "POST" and "uploads" in p for m, p, st in s3.requests), "no CreateMultipartUpload"
        assert not s3.uploads, "a multipart upload was left open: %s" % s3.uploads
        # the manifest goes up only after its backup
        paths = [p.split("?")[0] for m, p, st in s3.requests]
        assert paths.index("/drsup/prod/backups/" + name + ".manifest.json") > \
            max(i for i, p in enumerate(paths) if p == "/drsup/prod/backups/" + name)

    st = status(d)
    assert st["failures_total"] == 0 and not st["failing"] and st["lag_s"] == 0 and st["last_upload"], st
    assert st["objects_uploaded"] >= len(keys)
    # drctl verify --offsite: downloaded in ranges and verified (every chunk, the SHA-256)
    for n in (name, base):
        v = d.ctl_json("verify", "--offsite", n)
        assert v["offsite"] and v["sha256"] == sha(local(os.path.join(bdir, n))) and v["chunks"] > 0, v
    assert s3.requests is None or any(m == "GET" for m, p, st in s3.requests if st == 206)
    body, etag = s3.objects("drsup")["prod/backups/" + name]
    replace(s3, "prod/backups/" + name, body[:200] + bytes([body[200] ^ 1]) + body[201:], etag)  # a bit flipped
    p = d.ctl("verify", "--offsite", name)
    assert p.returncode != 0 and "chunk" in p.stderr, (p.returncode, p.stderr)
    replace(s3, "prod/backups/" + name, body, etag)
    assert d.ctl("verify", "--offsite").returncode != 0  # NAME is needed

    listed = d.ctl_json("backups")["backups"]
    assert [b["location"] for b in listed if b["name"] in (name, base)] == ["both", "both"]

    # the state files: the catalog (the manifests), the audit log and its head, never a key
    sdir = d.config["state_dir"]
    check_state(s3, sdir, [name, base])

    # a restart trusts the record: nothing is uploaded again
    d.stop()
    d.start()
    wait_until(lambda: status(d)["loaded"], timeout=10, what="record loaded")
    before = puts(s3, "prod/backups/")
    wait_until(lambda: status(d)["queued"] == 0, timeout=10, what="queue empty after restart")
    after = puts(s3, "prod/backups/")
    assert after == before, "the backup was uploaded again after a restart"
    # a new backup changes the catalog: the bucket's copy is replaced (a PUT over the same key)
    third = wait_until(lambda: d.ctl_json("backup", "now", "--wait")["name"], timeout=5,
                       what="a third backup (names have a one-second resolution)")
    check_state(s3, sdir, [name, base, third])
    d.stop()  # a clean exit: every handle closed, no leak (SANITIZE=1)


def check_state(s3, sdir, names):
    """The bucket's state/ copy: the catalog names `names` and equals the local export, the audit
    log and head equal the local ones (replaced as they change); no key ring, credential or record."""
    def same():
        objs = s3.objects("drsup")
        for k, f in (("catalog.json", "offsite-catalog.json"), ("audit.log", "audit.log"), ("audit.head", "audit.head")):
            if "prod/state/" + k not in objs or objs["prod/state/" + k][0] != local(os.path.join(sdir, f)):
                return False
        cat = json.loads(objs["prod/state/catalog.json"][0])
        return set(names) <= {m["file"] for m in cat["backups"]}
    try:
        wait_until(same, timeout=20, what="the state files off-site, as they are locally")
    except TimeoutError as e:
        raise AssertionError("%s\n%s" % (e, sorted(s3.objects("drsup"))))
    state = [k for k in s3.objects("drsup") if k.startswith("prod/state/")]
    assert not [k for k in state if "key" in k or "offsite.json" in k or k.endswith((".ak", ".sk"))], state
    assert s3.meta[("drsup", "prod/state/catalog.json")].get("x-amz-meta-sha256") == \
        sha(local(os.path.join(sdir, "offsite-catalog.json")))


def test_wrong_secret_pages_then_recovers(pgm, tmp_path, s3, made):
    from alert_receiver import Receiver
    rx = Receiver().start()
    try:
        # virtual-host style here (drsup.localhost: curl takes *.localhost as loopback, no DNS); path
        # style against s3rver, whose SigV4 check of a virtual-host request signs /BUCKET/KEY where
        # S3 (and botocore, and the strict server) sign the path as sent, /KEY
        vhost = s3.requests is not None
        cfg = offsite_cfg(pgm, tmp_path, s3, secret_key="wrong-secret", url_style="virtual" if vhost else "path",
                          endpoint="http://localhost:%d" % s3.port)
        cfg["alerts"] = {"pagerduty": {"routing_key_file": secret(tmp_path, "pd.key", "R" * 32),
                                       "url": rx.url("/pd")}}
        d = Daemon(tmp_path, cfg)
        made.append(d)
        d.start()
        name = d.ctl_json("backup", "now", "--wait")["name"]
        wait_until(lambda: status(d)["failing"], timeout=15, what="offsite.failed")
        st = status(d)
        assert "SignatureDoesNotMatch" in st["last_failure"]["error"], st
        assert s3.requests is None or all(r[2] == 403 for r in s3.requests), s3.requests
        assert not s3.objects("drsup")
        wait_until(lambda: any("offsite.failed" in (r.body or b"").decode() for r in rx.got("/pd")), timeout=15,
                   what="offsite.failed paged")
        assert "wrong-secret" not in d.log()
        with open(cfg["repository"]["s3"]["secret_access_key_file"], "w") as f:
            f.write(SK + "\n")
        d.ctl("reload")
        wait_offsite(d, s3, ["prod/backups/" + name, "prod/backups/" + name + ".manifest.json"])
        wait_until(lambda: not status(d)["failing"], timeout=10, what="offsite.failed resolved")
        if vhost:
            assert status(d)["url_style"] == "virtual"
            assert any(p == "/prod/backups/" + name for m, p, st in s3.requests if st == 200), "not virtual-host style"
        assert "off-site uploads succeed again" in d.log()
        d.stop()
    finally:
        rx.stop()


@strict_only("fault modes, stored-short PUTs or request log")
def test_faults_are_retried(pgm, tmp_path, s3, made):
    d = Daemon(tmp_path, offsite_cfg(pgm, tmp_path, s3, concurrency=1, max_attempts=8))
    made.append(d)
    s3.fault("slowdown", 2)
    s3.fault("error", 2)
    s3.fault("reset", 2)
    s3.truncate_puts = 1  # the HEAD after upload must catch it
    d.start()
    name = d.ctl_json("backup", "now", "--wait")["name"]
    bdir = d.config["backup"]["directory"]
    keys = ["prod/backups/" + name, "prod/backups/" + name + ".manifest.json"]
    wait_offsite(d, s3, keys)
    check_same(s3, keys[0], os.path.join(bdir, name))
    check_same(s3, keys[1], os.path.join(bdir, name + ".manifest.json"))
    st = status(d)
    # every fault was met; curl itself retries a request whose reused connection was reset before
    # any answer, so a reset is not always one of ours
    assert all(f[1] == 0 for f in s3.faults), s3.faults
    assert st["retries_total"] >= 4, st
    assert st["failures_total"] == 1 and "the object in the bucket is not the file" in d.log(), st
    codes = [r[2] for r in s3.requests]
    assert codes.count(503) == 2 and codes.count(500) == 2, codes
    d.stop()


@strict_only("slow-response fault mode or view of open multipart uploads")
def test_kill9_mid_multipart_then_restart(pgm, tmp_path, s3, made):
    pgm.psql("CREATE TABLE IF NOT EXISTS big AS SELECT i, md5(random()::text) || md5(random()::text) AS pad "
             "FROM generate_series(1, 40000) i", db="shop")
    d = Daemon(tmp_path, offsite_cfg(pgm, tmp_path, s3, concurrency=1))
    made.append(d)
    s3.fault("slow", 10000, 0.15)  # every request slow: the daemon is killed between parts
    d.start()
    name = d.ctl_json("backup", "now", "--wait")["name"]
    bdir = d.config["backup"]["directory"]
    path = os.path.join(bdir, name)
    size = os.path.getsize(path)
    assert size > 4 * (64 << 10), size
    key = "prod/backups/" + name
    wait_until(lambda: any(len(u["parts"]) >= 2 for u in s3.uploads.values()), timeout=20, what="parts uploaded")
    old = list(s3.uploads)
    d.kill9()
    assert key not in s3.objects("drsup"), "a partial object under the final key"
    with open(os.path.join(d.state_dir, "offsite.json")) as f:
        assert set(json.load(f)["multipart"]) == set(old), "the upload id was not recorded before its parts"
    s3.faults.clear()
    d.start()
    wait_offsite(d, s3, [key, key + ".manifest.json"])
    check_same(s3, key, path)
    assert not s3.uploads, "the interrupted upload was not aborted: %s" % s3.uploads
    assert any(m == "DELETE" and old[0] in p for m, p, st in s3.requests), "no AbortMultipartUpload"
    with open(os.path.join(d.state_dir, "offsite.json")) as f:
        rec = json.load(f)
    assert not rec["multipart"] and rec["objects"][key]["sha256"] == sha(local(path))
    d.stop()


@strict_only("slow-response fault mode or view of open multipart uploads")
def test_stop_in_the_middle_of_uploads_is_clean(pgm, tmp_path, s3, made):
    """SIGTERM while parts are in flight and retries are waiting: every transfer cancelled, every
    job awaited, a clean exit (no leak under SANITIZE=1); nothing under the final key."""
    d = Daemon(tmp_path, offsite_cfg(pgm, tmp_path, s3, concurrency=2))
    made.append(d)
    s3.fault("slow", 10000, 0.3)
    d.start()
    name = d.ctl_json("backup", "now", "--wait")["name"]
    wait_until(lambda: s3.uploads, timeout=20, what="a multipart upload begun")
    d.stop()
    assert "prod/backups/" + name not in s3.objects("drsup")


@strict_only("per-key fault mode or request log")
def test_state_tar_goes_with_its_backup(pgm, tmp_path, s3, made):
    platform = tmp_path / "kill_switch.json"
    platform.write_bytes(b'{"trading_enabled": false, "marker": "plaintext-marker"}\n')
    cfg = offsite_cfg(pgm, tmp_path, s3, retention={"max_age": "1s"})
    cfg["backup"]["state_files"] = [str(platform)]
    d = Daemon(tmp_path, cfg)
    made.append(d)
    s3.fault("slowdown", 10000, match=".state.tar")  # every PUT of a state tar refused, for now
    d.start()
    first = d.ctl_json("backup", "now", "--wait")["name"]
    bdir = d.config["backup"]["directory"]
    with open(os.path.join(bdir, first + ".manifest.json")) as f:
        tar = json.load(f)["state_files"]["file"]
    assert ".state.tar" in tar and os.path.exists(os.path.join(bdir, tar)), tar
    key, tkey, mkey = "prod/backups/" + first, "prod/backups/" + tar, "prod/backups/" + first + ".manifest.json"
    refused = lambda: sum(1 for m, p, st in list(s3.requests) if m == "PUT" and tar in p and st == 503)  # noqa: E731
    wait_until(lambda: key in s3.objects("drsup") and refused() >= 6, timeout=20,
               what="the container up, the tar refused again and again")
    assert mkey not in s3.objects("drsup") and tkey not in s3.objects("drsup"), sorted(s3.objects("drsup"))
    assert [t for t in status(d)["queue"] if t["kind"] == "state_tar"], status(d)
    s3.faults.clear()
    wait_offsite(d, s3, [key, tkey, mkey])
    check_same(s3, tkey, os.path.join(bdir, tar))
    assert b"plaintext-marker" not in s3.objects("drsup")[tkey][0]
    with open(os.path.join(d.state_dir, "offsite.json")) as f:
        assert json.load(f)["objects"][tkey]["sha256"] == sha(local(os.path.join(bdir, tar)))
    paths = [p.split("?")[0] for m, p, st in list(s3.requests) if m == "PUT" and st == 200]
    assert paths.index("/drsup/" + tkey) < paths.index("/drsup/" + mkey), paths
    assert first in [b["name"] for b in d.ctl_json("backups")["backups"]]
    assert not [b for b in d.ctl_json("backups")["backups"] if ".state.tar" in b["name"]]

    # a newer backup: retention removes the older one with its manifest and its tar
    second = wait_until(lambda: d.ctl_json("backup", "now", "--wait")["name"], timeout=5,
                        what="a second backup (names have a one-second resolution)")
    with open(os.path.join(bdir, second + ".manifest.json")) as f:
        tar2 = json.load(f)["state_files"]["file"]
    keep = ["prod/backups/" + second, "prod/backups/" + tar2, "prod/backups/" + second + ".manifest.json"]
    try:
        wait_until(lambda: all(k in s3.objects("drsup") for k in keep) and
                   not [k for k in (key, tkey, mkey) if k in s3.objects("drsup")], timeout=20,
                   what="the older backup, its manifest and its tar gone from the bucket, the newer kept")
    except TimeoutError as e:
        raise AssertionError("%s\n%s\n%s" % (e, sorted(s3.objects("drsup")), json.dumps(status(d), indent=1)))
    d.stop()
