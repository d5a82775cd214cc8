"""
The complete_disaster scenario (docs/complete-disaster.md) against a real PostgreSQL 15, the strict
S3 test server (or @20minutes/s3rver: DRSUP_S3_BACKEND=s3rver, `make s3rver-check`) and the paper
trading platform: a primary host's daemon archives the WAL and
copies a base backup and the WAL to the bucket while a table is written; the primary host is
then destroyed (its daemon stopped, the server stopped, its data directory, the daemon's state,
backups and WAL archive removed); a recovery host's daemon (a fresh state directory, no local
backups, the same bucket and backup key) rebuilds the cluster from the bucket.

- the recovery daemon pointed at an empty bucket: refused with the reason, no run, nothing
  started, the data directory untouched;
- pointed at the bucket (drctl reload), with a bit flipped in the bucket's copy of the base
  backup: the run fails at download_base_backup (a chunk fails authentication while downloading),
  trading stays halted, nothing is unpacked;
- with the copy intact: the run halts trading, downloads and verifies the base
  backup, unpacks it into the empty data directory, fetches the WAL, recovers to the end of the
  archive on the platform's port: the rows committed up to the archived point are there, the ones
  after it (only in the lost host's partial segment) are not; reconcile, shadow, then the run
  waits at the approval gate; drctl approve: live. The report has the RPO, the bytes downloaded
  and where the time went.
- the platform's state files (backup.state_files: a kill-switch file saying trading is enabled,
  an order state file): the base backup's state tar went to the bucket before its manifest; the
  primary's copies are destroyed with it; the bucket's tar is replaced by a crafted one (encrypted
  with the backup key, tests/bcf_reference.py) holding the real members plus a ../ climb and an
  absolute path outside state_files: the run writes the two configured files with the lost host's
  content, refuses the other two (nothing written there), and trading stays halted (shadow at the
  gate) although the restored kill-switch file says enabled.
"""
import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import time

import pytest

from drsup import Daemon, wait_until
from pgharness import PgCluster
from s3rver import make_s3
from test_offsite import AK, SK, replace, secret, status as offsite_status
from test_wal import lsn, wait_archived, wait_streaming
from trading_env import PG_BIN, TradingEnv

RUN_AS = ["/usr/sbin/runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import bcf_reference as bcf  # noqa: E402

KILL_SWITCH = b'{"trading_enabled": true}\n'
ORDERS = b'{"open_orders": [{"id": "o-1", "qty": 3}]}\n'


class PrimaryEnv(TradingEnv):
    def __init__(self, tmp_path, pg, s3):
        super().__init__(tmp_path, pg, trade_interval="100ms")
        self.s3 = s3

    def config(self):
        cfg = super().config()
        for k in ("restart_command", "server_log", "corruption_queries"):
            cfg["detector"].pop(k, None)
        cfg["backup"]["physical"] = {"pg_basebackup": PG_BIN + "/pg_basebackup", "conninfo": self.pg.conninfo("postgres")}
        cfg["backup"]["state_files"] = self.platform_files()
        cfg["wal"] = {"conninfo": self.pg.conninfo("postgres"), "flush_interval": "200ms", "status_interval": "1s"}
        cfg["repository"] = {"s3": {
            "endpoint": self.s3.url(), "bucket": "drsup", "prefix": "prod/",
            "access_key_id_file": secret(self.dir, "s3.ak", AK), "secret_access_key_file": secret(self.dir, "s3.sk", SK),
            "part_size": "8MiB", "concurrency": 2, "scan_interval": "200ms", "retry_base": "50ms", "retry_cap": "400ms",
            "max_attempts": 4, "timeout": "10s"}}
        return cfg

    def platform_files(self):
        d = os.path.join(self.dir, "platform")
        return [os.path.join(d, "kill_switch.json"), os.path.join(d, "orders.json")]

    def write_platform_files(self):
        ks, orders = self.platform_files()
        os.makedirs(os.path.dirname(ks), exist_ok=True)
        for p, body in ((ks, KILL_SWITCH), (orders, ORDERS)):
            with open(p, "wb") as f:
                f.write(body)

    def recovery_config(self, bucket):
        cfg = self.config()
        del cfg["wal"]
        del cfg["backup"]["physical"]
        cfg["backup"]["directory"] = os.path.join(self.dir, "recovery-backups")
        # The recovery host holds the rotated key and the lost host's as a previous one: every file
        # from the bucket is read with the key its header names (complete_disaster after a breach).
        rotated = os.path.join(self.dir, "rotated.key")
        if not os.path.exists(rotated):
            with open(rotated, "w") as f:
                f.write(os.urandom(32).hex() + "\n")
            os.chmod(rotated, 0o600)
        cfg["backup"]["previous_keys"] = [cfg["backup"]["key_file"]]
        cfg["backup"]["key_file"] = rotated
        cfg["repository"]["s3"]["bucket"] = bucket
        cfg["scenarios"]["complete_disaster"] = {
            "rto": "10m", "rpo": "10m",
            "data_directory": self.pg.datadir,
            "port": self.pg.port,
            "pg_ctl": PG_BIN + "/pg_ctl",
            "run_as": RUN_AS,
            "start_timeout": "60s",
            "range_size": "1MiB",
            "halt_wait": "2s",
            "validation_queries": ["SELECT count(*) FROM t", "SELECT count(*) > 0 FROM orders"],
        }
        return cfg

    def write(self, n, tag):
        self.pg.psql("CREATE TABLE IF NOT EXISTS t (id serial, tag text, pad text)", db=self.db)
        self.pg.psql("INSERT INTO t (tag, pad) SELECT '%s', repeat('x', 200) FROM generate_series(1, %d)" % (tag, n),
                     db=self.db)

    def rows(self):
        return self.pg.psql("SELECT tag, count(*) FROM t GROUP BY tag ORDER BY tag", db=self.db).split()


@pytest.fixture
def world(tmp_path):
    pg = PgCluster()
    pg.init()
    pg.start()
    s3 = make_s3(AK, SK, buckets=("drsup", "empty"))  # the strict server, or s3rver (DRSUP_S3_BACKEND)
    env = PrimaryEnv(tmp_path, pg, s3)
    rec = []
    try:
        yield env, rec
    finally:
        for d in rec:
            d.cleanup()
        env.cleanup()
        s3.stop()
        pg.cleanup()


def destroy_primary(env):
    """The primary host is gone: its daemon, its server, its data directory, the daemon's state,
    backups and WAL archive."""
    d = env.daemon
    d.stop()
    subprocess.run(RUN_AS + [PG_BIN + "/pg_ctl", "-D", env.pg.datadir, "-m", "immediate", "stop"],
                   capture_output=True, check=True)
    wal_dir = d.config["wal"].get("directory") or os.path.join(d.config["backup"]["directory"], "wal")
    for p in (env.pg.datadir, d.state_dir, d.config["backup"]["directory"], wal_dir):
        shutil.rmtree(p, ignore_errors=True)
    for p in env.platform_files():  # the platform's state files are lost with the host
        os.unlink(p)
    # the recovery host's empty data directory, made by the operator for the server's user
    subprocess.run(RUN_AS + ["mkdir", "-m", "0700", env.pg.datadir], check=True)


def crafted_state_tar(env, key_file):
    """The real members plus a ../ climb and an absolute path outside backup.state_files, as a
    ustar encrypted with the lost host's key (codec none)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as t:
        for path, body in list(zip(env.platform_files(), (KILL_SWITCH, ORDERS))) + [
                ("../../../../tmp/drsup-traversal-%d" % os.getpid(), b"climbed"),
                (os.path.join(env.dir, "platform", "not-configured.json"), b"{}")]:
            ti = tarfile.TarInfo(path.lstrip("/"))
            ti.size = len(body)
            ti.mode = 0o600
            t.addfile(ti, io.BytesIO(body))
    with open(key_file) as f:
        key = bytes.fromhex(f.read().strip())
    return bcf.write(key, buf.getvalue(), os.urandom(32), int(time.time()), codec=0, chunk_size=4096)


def test_complete_disaster_from_the_bucket(world):
    env, rec = world
    env.write_platform_files()
    env.start()
    d = env.daemon
    wait_streaming(d)
    env.write(1000, "base")
    base = d.ctl_json("backup", "now", "--physical", "--wait", timeout=120)["name"]
    env.write(400, "archived")
    switched, seg = env.pg.psql("SELECT s, pg_walfile_name(s) FROM pg_switch_wal() s").split("|")
    wait_archived(d, lsn(switched))
    env.write(300, "lost")  # only in the partial segment: never off-site

    last = "prod/wal/%s.wal" % seg  # the segment the switch completed: it holds the "archived" rows

    def uploaded():
        objs = env.s3.objects("drsup")
        cat = objs.get("prod/state/catalog.json")
        return (("prod/backups/%s.manifest.json" % base) in objs and any(k.startswith(last) for k in objs) and
                cat is not None and base in [m["file"] for m in json.loads(cat[0])["backups"]] and
                "prod/state/audit.log" in objs and ("prod/backups/%s" % tar_name(objs)) in objs and
                not offsite_status(d)["queued"])

    def tar_name(objs):
        m = objs.get("prod/backups/%s.manifest.json" % base)
        return json.loads(m[0])["state_files"]["file"] if m else None
    try:
        wait_until(uploaded, timeout=30, what="the base backup and the WAL in the bucket")
    except TimeoutError as e:
        raise AssertionError("%s\n%s\n%s" % (e, sorted(env.s3.objects("drsup")), offsite_status(d)))
    lost_audit = env.s3.objects("drsup")["prod/state/audit.log"][0]
    objs = env.s3.objects("drsup")
    tar_key = "prod/backups/" + tar_name(objs)
    assert tar_name(objs).endswith(".drbk") and ".state.tar" in tar_name(objs)
    assert not objs[tar_key][0].count(b"trading_enabled"), "the bucket must not see the state files in plaintext"
    if env.s3.requests is not None:  # the strict server's log: the tar before the manifest that names it
        puts = [p.split("?")[0] for m, p, st in list(env.s3.requests) if m == "PUT" and st == 200]
        first = lambda k: min(i for i, p in enumerate(puts) if p.endswith("/" + k))  # noqa: E731
        assert first(tar_key) < first("prod/backups/%s.manifest.json" % base), puts
    destroy_primary(env)

    r = Daemon(env.dir, env.recovery_config("empty"), name="recovery")
    rec.append(r)
    r.start()
    p = r.ctl("execute", "--scenario", "complete_disaster")
    assert p.returncode != 0 and "no verified base backup" in p.stderr, p.stdout + p.stderr
    assert r.ctl_json("runs")["runs"] == [] and os.listdir(env.pg.datadir) == []

    r.write_config(env.recovery_config("drsup"))
    assert r.ctl("reload").returncode == 0
    # a bit flipped in the bucket's copy, in its second MiB: caught while downloading, nothing unpacked
    key = "prod/backups/" + base
    body, etag = env.s3.objects("drsup")[key]
    at = (1 << 20) + 100
    replace(env.s3, key, body[:at] + bytes([body[at] ^ 1]) + body[at + 1:], etag)
    bad = r.ctl_json("execute", "--scenario", "complete_disaster")["run"]
    run = wait_until(lambda: (lambda x: x["status"] in ("failed", "succeeded", "waiting_approval") and x)(
        r.ctl_json("run", bad)), timeout=30, interval=0.3, what="the tampered run's end")
    assert run["status"] == "failed" and run["state"] == "stayed_halted", run
    log = r.log()
    assert "download_base_backup FAILED" in log and "authentication failed" in log, log[-3000:]
    assert os.listdir(env.pg.datadir) == ["drsupervisor-restore-in-progress"]
    assert env.venue.status()["mode"] == "halted"
    replace(env.s3, key, body, etag)
    # the state tar replaced by a crafted one (and the manifest's SHA-256 and size of it with it)
    evil = crafted_state_tar(env, env.recovery_config("drsup")["backup"]["previous_keys"][0])
    replace(env.s3, tar_key, evil, objs[tar_key][1])
    mkey = "prod/backups/%s.manifest.json" % base
    man = json.loads(objs[mkey][0])
    man["state_files"].update(sha256=hashlib.sha256(evil).hexdigest(), file_size_bytes=len(evil))
    replace(env.s3, mkey, json.dumps(man).encode(), objs[mkey][1])

    res = r.ctl_json("execute", "--scenario", "complete_disaster")
    rid = res["run"]
    assert res["plan"]["ok"] and res["plan"]["base_backup"]["name"] == base, res
    wait_until(lambda: (lambda x: x["status"] in ("waiting_approval", "failed", "held", "aborted") and x)(
        r.ctl_json("run", rid)), timeout=90, interval=0.3, what="the approval gate")
    run = r.ctl_json("run", rid)
    assert run["status"] == "waiting_approval" and run["state"] == "trading_in_shadow", \
        (run, "\n".join(l for l in r.log().splitlines() if "scenario" in l)[-6000:])
    assert env.rows() == ["archived|400", "base|1000"], env.rows()
    assert env.pg.psql("SELECT pg_is_in_recovery()") == "f"
    assert env.venue.status()["mode"] == "shadow"
    # the platform's state files at their configured paths with the lost host's content; the kill
    # switch file says enabled, trading is still not live (shadow, the gate waits)
    ks, orders = env.platform_files()
    with open(ks, "rb") as f:
        assert f.read() == KILL_SWITCH
    with open(orders, "rb") as f:
        assert f.read() == ORDERS
    assert os.stat(ks).st_mode & 0o777 == 0o600
    assert not os.path.exists("/tmp/drsup-traversal-%d" % os.getpid())
    assert not os.path.exists(os.path.join(env.dir, "platform", "not-configured.json"))
    assert r.ctl("approve", rid).returncode == 0
    wait_until(lambda: r.ctl_json("run", rid)["status"] in ("succeeded", "failed"), timeout=60, interval=0.3,
               what="the run's end")
    assert r.ctl_json("run", rid)["status"] == "succeeded", r.log()[-4000:]
    assert env.venue.status()["mode"] == "live"
    with open(os.path.join(r.state_dir, "incidents", rid + ".json")) as f:
        rep = json.load(f)
    cd = rep["complete_disaster"]
    assert cd["bytes_downloaded"] > 0 and cd["download"]["name"] == base and cd["wal"]["files"] >= 2, cd
    # the unpacked tree was fsynced before the restore was recorded
    assert cd["restore"]["files_synced"] > 100 and cd["restore"]["sync_ms"] >= 0, cd["restore"]
    sf = cd["state_files"]
    assert sf["restored"] is True and sf["in_manifest"] is True and sorted(sf["files"]) == sorted(env.platform_files()), sf
    assert sf["bytes"] == len(KILL_SWITCH) + len(ORDERS) and sf["absent"] == [], sf
    assert sorted(e["path"] for e in sf["refused"]) == sorted(
        ["/../../../../tmp/drsup-traversal-%d" % os.getpid(), os.path.join(env.dir, "platform", "not-configured.json")]), sf
    assert cd["recovered_to_ms"] > 0 and rep["rpo_ms"] is not None and rep["rpo_ms"] >= 0, (cd, rep["rpo_ms"])
    assert not [n for n in os.listdir(os.path.dirname(env.pg.datadir)) if n.startswith("disaster-")]
    # the lost host's state files, the catalog first, in state_dir/history; the recovery host's own
    # audit log stays its own, and it did not replace the lost host's copy in the bucket
    assert cd["state"]["files"][0] == "catalog.json" and "audit.log" in cd["state"]["files"], cd["state"]
    assert cd["state"]["catalog_backups"] >= 1, cd["state"]
    hist = os.path.join(r.state_dir, "history")
    with open(os.path.join(hist, "catalog.json")) as f:
        assert base in [m["file"] for m in json.load(f)["backups"]]
    with open(os.path.join(hist, "audit.log"), "rb") as f:
        assert f.read() == lost_audit
    assert not [n for n in os.listdir(hist) if "key" in n or n == "offsite.json"], os.listdir(hist)
    with open(os.path.join(r.state_dir, "audit.log"), "rb") as f:
        assert f.read() != lost_audit
    assert env.s3.objects("drsup")["prod/state/audit.log"][0] == lost_audit
    r.stop()
