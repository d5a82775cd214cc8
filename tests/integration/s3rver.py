"""
The second, independent S3 test server (issue 16): @20minutes/s3rver 5.0.0 from npm, started by
tests/integration/s3rver.js on a free loopback port, and the S3 backend fixture's choice.

s3_backend() names the backend the off-site tests run against: our strict server
(tests/integration/s3server.py) by default, s3rver when DRSUP_S3_BACKEND=s3rver (what
`make s3rver-check` sets; DRSUP_S3RVER_MODULES the node_modules holding the package, default
build/npm/node_modules). make_s3() starts the chosen one.

S3rver has the strict server's inspection surface the tests use, read through S3 itself with
requests signed here (the strict server's own SigV4 code, not lib/sigv4.c): objects(bucket) (a
ListObjectsV2 and a GET of each), meta[(bucket, key)] (a HEAD's x-amz-meta-*), put() (a PutObject,
keeping the metadata); stored_times() reads its file store (what tells that a PUT happened). It has no request log, no view of open multipart uploads and no fault modes
(requests, uploads and faults are None): the tests that need them are skipped for it. s3rver
verifies the SigV4 signature (a wrong one is 403 SignatureDoesNotMatch) but not the body against
x-amz-content-sha256, which is why the strict server must. Two more ways it is not S3, met by the
tests: a multipart object's ETag is the MD5 of the whole object (S3's: the MD5 of the parts' MD5s
and "-N"), and its SigV4 check of a virtual-host request (BUCKET.s3.localhost) takes /BUCKET/KEY as
the canonical URI where S3 signs the path as sent, so against it the daemon runs path style only.
"""
import datetime
import hashlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET

import pytest

from s3server import S3Server, sigv4_signature

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def s3_backend():
    return os.environ.get("DRSUP_S3_BACKEND", "strict")


def strict_only(what):
    """Skips a test that needs the strict server: `what` says which of its parts."""
    return pytest.mark.skipif(s3_backend() == "s3rver",
                              reason="s3rver has no %s: only the strict server (s3server.py) checks this" % what)


def make_s3(access_key, secret_key, buckets=("drsup",)):
    if s3_backend() == "s3rver":
        return S3rver(access_key, secret_key, buckets).start()
    return S3Server(access_key=access_key, secret_key=secret_key, buckets=buckets).start()


class S3rver:
    region = "us-east-1"
    requests = uploads = faults = None  # not seen: see the module's comment

    def __init__(self, access_key, secret_key, buckets=("drsup",)):
        self.access_key, self.secret_key = access_key, secret_key
        self.bucket_names = list(buckets)
        self.modules = os.environ.get("DRSUP_S3RVER_MODULES", os.path.join(ROOT, "build", "npm", "node_modules"))
        self.port = 0
        self.proc = None
        self.dir = None
        self.meta = _Meta(self)

    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        if not os.path.exists(os.path.join(self.modules, "@20minutes", "s3rver", "package.json")):
            raise RuntimeError("@20minutes/s3rver is not installed in %s: run `make s3rver-check`" % self.modules)
        self.dir = tempfile.mkdtemp(prefix="drsup-s3rver-")
        env = dict(os.environ, S3RVER_MODULES=self.modules, S3RVER_DIR=self.dir, S3RVER_ACCESS_KEY=self.access_key,
                   S3RVER_SECRET_KEY=self.secret_key, S3RVER_BUCKETS=",".join(self.bucket_names))
        self.proc = subprocess.Popen(["node", os.path.join(HERE, "s3rver.js")], env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        ready, _, _ = select.select([self.proc.stdout], [], [], 20)  # a bounded wait for its line
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.proc.kill()
            err = self.proc.stderr.read().decode(errors="replace")
            self.proc.wait(timeout=10)
            raise RuntimeError("s3rver did not start: %s" % err[-2000:])
        self.port = json.loads(line)["port"]
        return self

    def stop(self):
        if self.proc:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            for f in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
                f.close()
            self.proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # ---- a signed client of its own ----

    def request(self, method, path, query=(), body=b"", headers=None, secret=None, signed_body=None):
        """One SigV4-signed request (path-style); returns (status, headers, body), never raises on 4xx/5xx.
        signed_body: the body whose hash is signed and sent as x-amz-content-sha256, if not body."""
        amz_date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        payload = hashlib.sha256(body if signed_body is None else signed_body).hexdigest()
        hdrs = {"host": "127.0.0.1:%d" % self.port, "x-amz-date": amz_date, "x-amz-content-sha256": payload}
        hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
        signed = sorted(hdrs)
        sig, _ = sigv4_signature(secret or self.secret_key, method, path, list(query),
                                 {k: [v] for k, v in hdrs.items()}, signed, payload, amz_date, self.region, "s3")
        hdrs["authorization"] = ("AWS4-HMAC-SHA256 Credential=%s/%s/%s/s3/aws4_request, SignedHeaders=%s, Signature=%s"
                                 % (self.access_key, amz_date[:8], self.region, ";".join(signed), sig))
        q = "&".join("%s=%s" % (urllib.parse.quote(k, safe="-_.~"), urllib.parse.quote(v, safe="-_.~"))
                     for k, v in query)
        url = self.url() + urllib.parse.quote(path, safe="/-_.~") + ("?" + q if q else "")
        req = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None, method=method,
                                     headers={k: v for k, v in hdrs.items() if k != "host"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, dict(r.headers.items()), r.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers.items()), e.read()

    def _ok(self, got, what):
        if got[0] // 100 != 2:
            raise AssertionError("s3rver: %s: %d %s" % (what, got[0], got[2][:500]))
        return got

    def keys(self, bucket):
        keys, token = [], None
        while True:
            q = [("list-type", "2")] + ([("continuation-token", token)] if token else [])
            root = ET.fromstring(self._ok(self.request("GET", "/" + bucket, q), "list")[2])
            ns = root.tag[:root.tag.index("}") + 1] if root.tag.startswith("{") else ""  # not S3's own
            keys += [c.find(ns + "Key").text for c in root.findall(ns + "Contents")]
            if (root.findtext(ns + "IsTruncated") or "false") != "true":
                return keys
            token = root.findtext(ns + "NextContinuationToken")

    def objects(self, bucket):
        """{key: (body, etag)}, as the strict server's objects() (read through S3: a snapshot)."""
        out = {}
        for k in self.keys(bucket):
            st, h, body = self._ok(self.request("GET", "/%s/%s" % (bucket, k)), "get " + k)
            out[k] = (body, {n.lower(): v for n, v in h.items()}.get("etag"))
        return out

    def stored_times(self, bucket, prefix=""):
        """{stored file: mtime_ns} of the objects under prefix in s3rver's file store: any PUT,
        UploadPart or CompleteMultipartUpload of one of them changes its time."""
        top = os.path.join(self.dir, bucket)
        out = {}
        for d, _, files in os.walk(top):
            for f in files:
                p = os.path.join(d, f)
                if os.path.relpath(p, top).startswith(prefix):
                    out[p] = os.stat(p).st_mtime_ns
        return out

    def put(self, bucket, key, body):
        """Replaces an object's body, keeping its user metadata (a bucket that flipped a bit)."""
        self._ok(self.request("PUT", "/%s/%s" % (bucket, key), body=body, headers=self.meta[(bucket, key)]),
                 "put " + key)


class _Meta:
    """meta[(bucket, key)]: the object's x-amz-meta-* headers, from a HEAD."""

    def __init__(self, s3):
        self.s3 = s3

    def __getitem__(self, bk):
        st, h, _ = self.s3._ok(self.s3.request("HEAD", "/%s/%s" % bk), "head %s/%s" % bk)
        return {n.lower(): v for n, v in h.items() if n.lower().startswith("x-amz-meta-")}
