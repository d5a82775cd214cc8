#!/usr/bin/python3
"""
bench/offsite.py: offsite_upload_vs_aws_cli (issue 16; `make bench`).

Owns one run: a backup file of DRSUP_BENCH_OFFSITE_MB MiB (default 1024) of random bytes (they do
not compress, like an encrypted backup) in a real backup container (docs/backup-format.md, written
with the daemon's key by the independent reference writer tests/bcf_reference.py) with a manifest
that the catalog takes as a verified logical backup, then, each in the same run and against the same
strict S3 test server (tests/integration/s3server.py: its own SigV4 check and every body's SHA-256
against x-amz-content-sha256), run in a process of its own:

  ceiling   the server's own limit: a bare client in this process sending the same multipart
            upload (the same part size, one part at a time) with the signatures and hashes
            computed beforehand, so only the transfer and the server's work are timed;
  ours      drsupervisord's uploader (repository.s3, part_size DRSUP_BENCH_OFFSITE_PART_MB, default
            64): from the backup appearing in the daemon's catalog (`drctl backups` polled every
            10 ms) to the object being recorded off-site (its at_ms in state_dir/offsite.json), so the
            whole-file hash, every part's read and hash, the transfers, the complete and the HEAD
            check are in it;
  aws       `aws s3 cp` (Debian's awscli, installed by tools/setup-deps bench when missing) of the
            same file, with the same part size and one request at a time (what ours does for one
            file: its concurrency is across files);
  aws_default  `aws s3 cp` with its own defaults (8 MiB parts, 10 requests at once), for information.

DRSUP_BENCH_OFFSITE_RUNS rounds (default 2), the best of each. Writes build/bench/offsite.json and
prints offsite_upload_vs_aws_cli = ours / aws (target <= 1.0) and each one's share of the server's
ceiling. Standard library, the harness and python3-cryptography (the reference writer) only.
"""
import datetime
import hashlib
import hmac
import http.client
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (paths, the drsup harness on sys.path)

sys.path.insert(0, os.path.join(run.ROOT, "tests"))
from drsup import Daemon, wait_until  # noqa: E402
from pgharness import PgCluster  # noqa: E402
from s3server import sigv4_signature  # noqa: E402

MB = int(os.environ.get("DRSUP_BENCH_OFFSITE_MB", "1024"))
PART_MB = int(os.environ.get("DRSUP_BENCH_OFFSITE_PART_MB", "64"))
RUNS = max(1, int(os.environ.get("DRSUP_BENCH_OFFSITE_RUNS", "2")))
AK, SK, REGION, BUCKET = "AKIDBENCH", "bench-secret", "us-east-1", "drsup"
TARGET = 1.0
AWS = "/usr/bin/aws"
SERVE = """
import sys, time
sys.path.insert(0, %r)
from s3server import S3Server
s = S3Server(access_key=%r, secret_key=%r, region=%r, buckets=(%r,)).start()
print(s.port, flush=True)
sys.stdin.read()
s.stop()
"""


def ensure_awscli():
    if os.path.exists(AWS):
        return
    p = subprocess.run([os.path.join(run.ROOT, "tools", "setup-deps"), "bench"], capture_output=True, text=True)
    if p.returncode != 0 or not os.path.exists(AWS):
        raise RuntimeError("tools/setup-deps bench could not install awscli (exit %d): %s"
                           % (p.returncode, p.stderr[-2000:]))


# ---- the backup file ------------------------------------------------------------------------------

def make_backup(bdir, key_file):
    """A verified logical backup of MB MiB of random bytes, as the catalog sees one."""
    import bcf_reference
    with open(key_file) as f:
        key = bytes.fromhex(f.read().strip())
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    name = "bench_backup_%s.dump.drbk" % now.strftime("%Y%m%d_%H%M%S")
    path = os.path.join(bdir, name)
    # the reference writer's container, streamed to the file one 1 MiB chunk at a time (codec none)
    salt, chunk = os.urandom(32), 1 << 20
    k_data, k_hdr = bcf_reference.keys(key, salt)
    hdr = bcf_reference.MAGIC + struct.pack(">HHBBHII", 1, bcf_reference.HEADER_LEN, 1, 0, 0, chunk, 0)
    hdr += struct.pack(">q", int(now.timestamp())) + bcf_reference.key_id(key) + salt
    hdr += hmac.new(k_hdr, hdr, hashlib.sha256).digest()
    h, aead, whole, size = hashlib.sha256(hdr).digest(), AESGCM(k_data), hashlib.sha256(hdr), len(hdr)
    n = MB
    with open(path, "wb") as f:
        f.write(hdr)
        for i in range(n):
            final = i == n - 1
            nonce, aad = bcf_reference._nonce_aad(h, i, final)
            piece = struct.pack(">I", chunk | (bcf_reference.FINAL if final else 0)) + \
                aead.encrypt(nonce, os.urandom(chunk), aad)
            f.write(piece)
            whole.update(piece)
            size += len(piece)
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest = {"file": name, "kind": "logical", "format": "bcf1", "database": "bench", "started_at": stamp,
                "finished_at": stamp, "size_bytes": size, "sha256": whole.hexdigest(),
                "note": "synthetic: random bytes in a real container (tools/bench/offsite.py)",
                "verification": {"container": "ok", "sha256_match": True, "pg_restore_list": "ok"}}
    with open(path + ".manifest.json", "w") as f:
        json.dump(manifest, f, indent=2)
    return name, path, size


# ---- a bare signed client (the ceiling, and cleaning up between rounds) ----------------------------

class Bare:
    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)

    def request(self, method, key, query=(), body=b"", sha=None):
        amz = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        sha = sha or hashlib.sha256(body).hexdigest()
        path = "/%s/%s" % (BUCKET, key)
        host = "127.0.0.1:%d" % self.port
        hdrs = {"host": [host], "x-amz-content-sha256": [sha], "x-amz-date": [amz]}
        signed = sorted(hdrs)
        sig, _ = sigv4_signature(SK, method, path, list(query), hdrs, signed, sha, amz, REGION, "s3")
        auth = "AWS4-HMAC-SHA256 Credential=%s/%s/%s/s3/aws4_request, SignedHeaders=%s, Signature=%s" % (
            AK, amz[:8], REGION, ";".join(signed), sig)
        qs = "&".join("%s=%s" % (k, v) if v else k for k, v in query)
        self.conn.request(method, path + ("?" + qs if qs else ""), body=body,
                          headers={"Host": host, "x-amz-content-sha256": sha, "x-amz-date": amz,
                                   "Authorization": auth, "Content-Length": str(len(body))})
        r = self.conn.getresponse()
        data = r.read()
        if r.status >= 300:
            raise RuntimeError("%s %s: %d %s" % (method, key, r.status, data[:300]))
        return r, data

    def multipart(self, key, parts):
        """parts: [(bytes, sha256)]: create, the parts one at a time, complete."""
        import re
        _, data = self.request("POST", key, [("uploads", "")])
        uid = re.search(rb"<UploadId>([^<]+)</UploadId>", data).group(1).decode()
        etags = []
        for i, (body, sha) in enumerate(parts, 1):
            r, _ = self.request("PUT", key, [("partNumber", str(i)), ("uploadId", uid)], body, sha)
            etags.append(r.getheader("ETag"))
        xml = "<CompleteMultipartUpload>%s</CompleteMultipartUpload>" % "".join(
            "<Part><PartNumber>%d</PartNumber><ETag>%s</ETag></Part>" % (i, e) for i, e in enumerate(etags, 1))
        self.request("POST", key, [("uploadId", uid)], xml.encode())

    def size(self, key):
        r, _ = self.request("HEAD", key)
        return int(r.getheader("Content-Length"))

    def delete(self, key):
        self.request("DELETE", key)


# ---- the measurements -------------------------------------------------------------------------------

def measure_ceiling(bare, path):
    with open(path, "rb") as f:
        data = f.read()
    ps = PART_MB << 20
    parts = [(data[i:i + ps], hashlib.sha256(data[i:i + ps]).hexdigest()) for i in range(0, len(data), ps)]
    t = time.monotonic()
    bare.multipart("ceiling/obj", parts)
    dt = time.monotonic() - t
    assert bare.size("ceiling/obj") == len(data)
    bare.delete("ceiling/obj")
    return dt


def measure_ours(work, pg, port, name, bdir, key_file, rnd):
    tmp = os.path.join(work, "daemon-%d" % rnd)
    os.makedirs(tmp)
    os.chmod(tmp, 0o755)
    secrets = []
    for n, v in (("ak", AK), ("sk", SK)):
        p = os.path.join(tmp, n)
        with open(p, "w") as f:
            f.write(v + "\n")
        os.chmod(p, 0o600)
        secrets.append(p)
    prefix = "ours%d/" % rnd
    cfg = {"database": {"conninfo": pg.conninfo()},
           "backup": {"directory": bdir, "prefix": "bench", "conninfo": pg.conninfo("postgres"),
                      "key_file": key_file},
           "repository": {"s3": {"endpoint": "http://127.0.0.1:%d" % port, "bucket": BUCKET, "prefix": prefix,
                                 "region": REGION, "access_key_id_file": secrets[0],
                                 "secret_access_key_file": secrets[1], "part_size": "%dMiB" % PART_MB,
                                 "scan_interval": "100ms", "timeout": "5m"}}}
    d = Daemon(tmp, cfg)
    key = prefix + "backups/" + name
    try:
        d.start()
        t0 = None
        deadline = time.monotonic() + 60
        while t0 is None and time.monotonic() < deadline:
            if any(b.get("file") == name or b.get("name") == name for b in listed(d)):
                t0 = time.time()
            else:
                time.sleep(0.01)
        if t0 is None:
            raise RuntimeError("the backup never appeared in the catalog:\n" + d.log()[-3000:])

        record = os.path.join(d.config["state_dir"], "offsite.json")

        def recorded():  # the record (written atomically) has the object, with when it was recorded
            try:
                with open(record) as f:
                    return json.load(f)["objects"].get(key)
            except (OSError, ValueError, KeyError):
                return None
        entry = wait_until(recorded, timeout=600, interval=0.05, what="the backup recorded off-site")
        dt = entry["at_ms"] / 1000.0 - t0
        d.stop()
        return dt, key
    finally:
        d.cleanup()


def listed(d):
    r = d.ctl_json("backups")
    return r if isinstance(r, list) else r.get("backups", [])


def measure_aws(work, port, path, key, chunk_mb, concurrency):
    conf = os.path.join(work, "aws-config")
    with open(conf, "w") as f:
        f.write("[default]\nregion = %s\n" % REGION)
        if chunk_mb:
            f.write("s3 =\n  multipart_threshold = %dMB\n  multipart_chunksize = %dMB\n"
                    "  max_concurrent_requests = %d\n  addressing_style = path\n" % (chunk_mb, chunk_mb, concurrency))
        else:
            f.write("s3 =\n  addressing_style = path\n")
    env = dict(os.environ, AWS_ACCESS_KEY_ID=AK, AWS_SECRET_ACCESS_KEY=SK, AWS_CONFIG_FILE=conf,
               AWS_SHARED_CREDENTIALS_FILE=os.path.join(work, "no-credentials"), AWS_EC2_METADATA_DISABLED="true",
               AWS_PAGER="")
    t = time.monotonic()
    p = subprocess.run([AWS, "--endpoint-url", "http://127.0.0.1:%d" % port, "--no-progress", "s3", "cp", path,
                        "s3://%s/%s" % (BUCKET, key)], capture_output=True, text=True, env=env)
    dt = time.monotonic() - t
    if p.returncode != 0:
        raise RuntimeError("aws s3 cp failed (%d): %s %s" % (p.returncode, p.stdout[-1000:], p.stderr[-2000:]))
    return dt


def main():
    ensure_awscli()
    os.makedirs(run.OUT_DIR, exist_ok=True)
    work = tempfile.mkdtemp(prefix="drsup-bench-offsite-")
    os.chmod(work, 0o755)
    bdir = os.path.join(work, "backups")
    os.makedirs(bdir, mode=0o700)
    key_file = os.path.join(work, "backup.key")
    with open(key_file, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    os.chmod(key_file, 0o600)
    server = subprocess.Popen([sys.executable, "-c", SERVE % (os.path.join(run.ROOT, "tests", "integration"), AK,
                                                              SK, REGION, BUCKET)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    pg = PgCluster()
    res = {"ceiling": [], "ours": [], "aws": [], "aws_default": []}
    try:
        port = int(server.stdout.readline())
        bare = Bare(port)
        run.log("making a %d MiB backup of random bytes" % MB)
        name, path, size = make_backup(bdir, key_file)
        pg.init()
        pg.start()
        for rnd in range(RUNS):
            res["ceiling"].append(measure_ceiling(bare, path))
            run.log("round %d: ceiling      %.2f s" % (rnd + 1, res["ceiling"][-1]))
            dt, key = measure_ours(work, pg, port, name, bdir, key_file, rnd)
            assert bare.size(key) == size
            bare.delete(key)
            bare.delete(key + ".manifest.json")
            res["ours"].append(dt)
            run.log("round %d: ours         %.2f s" % (rnd + 1, dt))
            key = "aws%d/%s" % (rnd, name)
            res["aws"].append(measure_aws(work, port, path, key, PART_MB, 1))
            assert bare.size(key) == size
            bare.delete(key)
            run.log("round %d: aws          %.2f s" % (rnd + 1, res["aws"][-1]))
            key = "awsd%d/%s" % (rnd, name)
            res["aws_default"].append(measure_aws(work, port, path, key, 0, 10))
            assert bare.size(key) == size
            bare.delete(key)
            run.log("round %d: aws_default  %.2f s" % (rnd + 1, res["aws_default"][-1]))
    finally:
        pg.cleanup()
        if server.poll() is None:
            server.stdin.close()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        shutil.rmtree(work, ignore_errors=True)
    best = {k: min(v) for k, v in res.items()}
    mibps = {k: (size / 1048576.0) / v for k, v in best.items()}
    aws_version = subprocess.run([AWS, "--version"], capture_output=True, text=True).stdout.strip()
    out = {
        "size_bytes": size, "part_size_mib": PART_MB, "runs": RUNS, "nproc": os.cpu_count(),
        "aws_cli": aws_version, "seconds": res, "best_s": best, "mib_per_s": mibps,
        "offsite_upload_vs_aws_cli": run.ratio(best["ours"], best["aws"]),
        "offsite_upload_vs_aws_cli_default": run.ratio(best["ours"], best["aws_default"]),
        "ours_vs_server_ceiling": run.ratio(best["ours"], best["ceiling"]),
        "aws_vs_server_ceiling": run.ratio(best["aws"], best["ceiling"]),
        "target": TARGET,
    }
    out["met"] = out["offsite_upload_vs_aws_cli"] <= TARGET
    with open(os.path.join(run.OUT_DIR, "offsite.json"), "w") as f:
        json.dump(out, f, indent=2)
    print()
    print("off-site upload of %d MiB (parts of %d MiB): ours %.2f s (%.0f MiB/s), aws s3 cp %.2f s (%.0f MiB/s), "
          "aws s3 cp defaults %.2f s, server ceiling %.2f s (%.0f MiB/s)"
          % (size >> 20, PART_MB, best["ours"], mibps["ours"], best["aws"], mibps["aws"], best["aws_default"],
             best["ceiling"], mibps["ceiling"]))
    print("offsite_upload_vs_aws_cli = %.2f (target <= %.1f: %s)" % (out["offsite_upload_vs_aws_cli"], TARGET,
                                                                     "met" if out["met"] else "NOT met"))


if __name__ == "__main__":
    main()
