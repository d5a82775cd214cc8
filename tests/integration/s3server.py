"""
A strict S3-compatible test server (issue 16): the off-site repository's test double.

Unlike the permissive doubles, it checks every request as S3 does and refuses what S3 refuses:
- the Signature Version 4 Authorization header, recomputed here (an implementation of its own,
  written from AWS's specification, independent of lib/sigv4.c): a wrong one is 403
  SignatureDoesNotMatch, with the canonical request S3 would print;
- x-amz-content-sha256 against the body actually received (400 XAmzContentSHA256Mismatch), which
  neither s3rver nor its fork checks; UNSIGNED-PAYLOAD is accepted, streaming payloads are not (501);
- x-amz-date within 15 minutes of the server's clock (403 RequestTimeTooSkewed);
- an unknown access key (403 InvalidAccessKeyId), a missing bucket (404 NoSuchBucket) or key
  (404 NoSuchKey).

Operations: PUT, GET (with one Range: 206), HEAD and DELETE of an object; ListObjectsV2 (list-type=2, prefix); multipart
upload (CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload), with
S3's ETags (MD5, and for a multipart object the MD5 of the parts' MD5s and "-N"); user metadata
(x-amz-meta-*) kept from the PUT or CreateMultipartUpload and returned by HEAD and GET. Path style and
virtual-host style (BUCKET.HOST). Objects are kept in memory.

Faults for the tests (S3Server.fault): "slowdown" (503 SlowDown), "error" (500 InternalError),
"reset" (the connection closed without an answer), "slow" (the answer delayed), each for the next
N requests (with match=TEXT: only requests whose path contains TEXT); clock_skew_s shifts the server's clock; truncate_puts stores the next N PutObject bodies one
byte short while answering 200 (a store that lost data: what a check after upload must catch).
"""
import datetime
import hashlib
import hmac
import socket
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from xml.sax.saxutils import escape

EMPTY_SHA = hashlib.sha256(b"").hexdigest()


def _uri_encode(s, keep_slash):
    safe = "-_.~" + ("/" if keep_slash else "")
    return urllib.parse.quote(s, safe=safe)


def sigv4_signature(secret, method, path, query_pairs, headers, signed, payload_hash, amz_date, region, service):
    """The signature S3 computes: headers {lowercase name: [values]}, signed: the names, in order."""
    canon_query = "&".join("%s=%s" % (_uri_encode(k, False), _uri_encode(v, False))
                           for k, v in sorted(query_pairs))
    lines = []
    for name in signed:
        vals = [" ".join(v.split()) for v in headers.get(name, [])]
        lines.append("%s:%s\n" % (name, ",".join(vals)))
    canonical = "\n".join([method, _uri_encode(path, True), canon_query, "".join(lines), ";".join(signed),
                           payload_hash])
    scope = "%s/%s/%s/aws4_request" % (amz_date[:8], region, service)
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    k = ("AWS4" + secret).encode()
    for part in (amz_date[:8], region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest(), canonical


class S3Server:
    def __init__(self, access_key="AKIDTEST", secret_key="test-secret/with+chars", region="us-east-1",
                 buckets=("drsup",)):
        self.keys = {access_key: secret_key}
        self.region = region
        self.buckets = {b: {} for b in buckets}
        self.uploads = {}
        self.meta = {}  # (bucket, key) -> {x-amz-meta-*: value}
        self.truncate_puts = 0  # the next N PutObject bodies are stored one byte short
        self.lock = threading.Lock()
        self.faults = []  # [mode, remaining, arg, match]
        self.clock_skew_s = 0
        self.requests = []  # (method, path, status)
        self._httpd = None
        self.port = 0

    # ---- control ----

    def fault(self, mode, count=1, arg=None, match=None):
        with self.lock:
            self.faults.append([mode, count, arg, match])

    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                server._handle(self)

            do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def stop(self):
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()

    def objects(self, bucket):
        with self.lock:
            return dict(self.buckets[bucket])

    # ---- requests ----

    def _reply(self, h, status, body=b"", headers=None):
        with self.lock:
            self.requests.append((h.command, h.path, status))
        h.send_response(status)
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(body)))
        h.end_headers()
        if h.command != "HEAD":
            h.wfile.write(body)

    def _error(self, h, status, code, message, extra=""):
        body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>%s</Code><Message>%s</Message>%s"
                "<RequestId>drsup-test</RequestId></Error>" % (code, escape(message), extra)).encode()
        self._reply(h, status, body, {"Content-Type": "application/xml"})

    def _take_fault(self, path):
        with self.lock:
            for f in self.faults:
                if f[1] > 0 and (f[3] is None or f[3] in path):
                    f[1] -= 1
                    return f[0], f[2]
        return None, None

    def _handle(self, h):
        length = int(h.headers.get("Content-Length") or 0)
        body = h.rfile.read(length) if length else b""
        mode, arg = self._take_fault(h.path)
        if mode == "reset":
            h.connection.shutdown(socket.SHUT_RDWR)
            h.close_connection = True
            return
        if mode == "slow":
            time.sleep(arg or 2.0)
        if mode == "slowdown":
            return self._error(h, 503, "SlowDown", "Please reduce your request rate.")
        if mode == "error":
            return self._error(h, 500, "InternalError", "We encountered an internal error. Please try again.")
        parsed = urllib.parse.urlsplit(h.path)
        path = urllib.parse.unquote(parsed.path)
        query = urllib.parse.parse_qsl(parsed.query, keep_blank_values=True)
        if not self._authorized(h, path, query, body):
            return
        host = (h.headers.get("Host") or "").split(":")[0]
        if host.endswith(".localhost") or (host.count(".") and not host.replace(".", "").isdigit()):
            bucket, key = host.split(".")[0], path.lstrip("/")
        else:
            bucket, _, key = path.lstrip("/").partition("/")
        if bucket not in self.buckets:
            return self._error(h, 404, "NoSuchBucket", "The specified bucket does not exist")
        q = dict(query)
        if not key and h.command == "GET":
            return self._list(h, bucket, q)
        if h.command == "POST" and "uploads" in q:
            return self._create_upload(h, bucket, key)
        if "uploadId" in q:
            return self._upload(h, bucket, key, q, body)
        if h.command == "PUT":
            etag = '"%s"' % hashlib.md5(body).hexdigest()
            with self.lock:
                if self.truncate_puts > 0:  # a store that loses the end of an object, answering 200
                    self.truncate_puts -= 1
                    body = body[:-1]
                self.buckets[bucket][key] = (body, etag)
                self.meta[(bucket, key)] = self._meta_of(h)
            return self._reply(h, 200, b"", {"ETag": etag})
        with self.lock:
            obj = self.buckets[bucket].get(key)
        if h.command == "DELETE":
            with self.lock:
                self.buckets[bucket].pop(key, None)
            return self._reply(h, 204)
        if obj is None:
            return self._error(h, 404, "NoSuchKey", "The specified key does not exist.")
        with self.lock:
            meta = dict(self.meta.get((bucket, key), {}))
        meta.update({"ETag": obj[1], "Content-Type": "application/octet-stream"})
        rng = h.headers.get("Range")
        if rng and h.command == "GET":  # "bytes=A-B" (one range, as S3 answers it: 206)
            a, _, b = rng[len("bytes="):].partition("-")
            a, b = int(a), min(int(b) if b else len(obj[0]) - 1, len(obj[0]) - 1)
            if a >= len(obj[0]):
                return self._error(h, 416, "InvalidRange", "The requested range is not satisfiable")
            meta["Content-Range"] = "bytes %d-%d/%d" % (a, b, len(obj[0]))
            return self._reply(h, 206, obj[0][a:b + 1], meta)
        return self._reply(h, 200, obj[0], meta)

    @staticmethod
    def _meta_of(h):
        """The user metadata (x-amz-meta-*) of a PUT or CreateMultipartUpload, as S3 keeps it."""
        return {k.lower(): v for k, v in h.headers.items() if k.lower().startswith("x-amz-meta-")}

    def _authorized(self, h, path, query, body):
        auth = h.headers.get("Authorization") or ""
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            self._error(h, 403, "AccessDenied", "Access Denied")
            return False
        fields = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        ak, date, region, service, _ = fields["Credential"].split("/")
        if ak not in self.keys:
            self._error(h, 403, "InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist in our records.")
            return False
        amz_date = h.headers.get("x-amz-date") or ""
        try:
            t = datetime.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.timezone.utc)
        except ValueError:
            self._error(h, 403, "AccessDenied", "AWS authentication requires a valid Date or x-amz-date header")
            return False
        now = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=self.clock_skew_s)
        if abs((now - t).total_seconds()) > 900:
            self._error(h, 403, "RequestTimeTooSkewed",
                        "The difference between the request time and the current time is too large.")
            return False
        claimed = h.headers.get("x-amz-content-sha256")
        if claimed is None:
            self._error(h, 400, "InvalidRequest", "Missing required header for this request: x-amz-content-sha256")
            return False
        if claimed.startswith("STREAMING-"):
            self._error(h, 501, "NotImplemented", "A header you provided implies functionality that is not implemented")
            return False
        if claimed != "UNSIGNED-PAYLOAD" and claimed != hashlib.sha256(body).hexdigest():
            self._error(h, 400, "XAmzContentSHA256Mismatch",
                        "The provided 'x-amz-content-sha256' header does not match what was computed.")
            return False
        headers = {}
        for k, v in h.headers.items():
            headers.setdefault(k.lower(), []).append(v)
        signed = fields["SignedHeaders"].split(";")
        if "host" not in signed or "x-amz-date" not in signed:
            self._error(h, 403, "AccessDenied", "host and x-amz-date must be signed")
            return False
        want, canonical = sigv4_signature(self.keys[ak], h.command, path, query, headers, signed, claimed, amz_date,
                                          region, service)
        if region != self.region or not hmac.compare_digest(want, fields["Signature"]):
            self._error(h, 403, "SignatureDoesNotMatch",
                        "The request signature we calculated does not match the signature you provided. "
                        "Check your key and signing method.",
                        "<CanonicalRequest>%s</CanonicalRequest>" % escape(canonical))
            return False
        return True

    def _list(self, h, bucket, q):
        prefix = q.get("prefix", "")
        with self.lock:
            items = sorted((k, v) for k, v in self.buckets[bucket].items() if k.startswith(prefix))
        contents = "".join("<Contents><Key>%s</Key><Size>%d</Size><ETag>%s</ETag></Contents>"
                           % (escape(k), len(v[0]), escape(v[1])) for k, v in items)
        body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult><Name>%s</Name><Prefix>%s</Prefix>"
                "<KeyCount>%d</KeyCount><IsTruncated>false</IsTruncated>%s</ListBucketResult>"
                % (bucket, escape(prefix), len(items), contents)).encode()
        self._reply(h, 200, body, {"Content-Type": "application/xml"})

    def _create_upload(self, h, bucket, key):
        uid = hashlib.sha256(("%s/%s/%f" % (bucket, key, time.time())).encode()).hexdigest()[:32]
        with self.lock:
            self.uploads[uid] = {"bucket": bucket, "key": key, "parts": {}, "meta": self._meta_of(h)}
        body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<InitiateMultipartUploadResult><Bucket>%s</Bucket>"
                "<Key>%s</Key><UploadId>%s</UploadId></InitiateMultipartUploadResult>"
                % (bucket, escape(key), uid)).encode()
        self._reply(h, 200, body, {"Content-Type": "application/xml"})

    def _upload(self, h, bucket, key, q, body):
        with self.lock:
            up = self.uploads.get(q["uploadId"])
        if not up or up["bucket"] != bucket or up["key"] != key:
            return self._error(h, 404, "NoSuchUpload", "The specified upload does not exist.")
        if h.command == "PUT":
            n = int(q.get("partNumber", "0"))
            md5 = hashlib.md5(body).hexdigest()
            with self.lock:
                up["parts"][n] = (body, md5)
            return self._reply(h, 200, b"", {"ETag": '"%s"' % md5})
        if h.command == "DELETE":
            with self.lock:
                self.uploads.pop(q["uploadId"], None)
            return self._reply(h, 204)
        # CompleteMultipartUpload: the parts named, in order, with their ETags
        import re
        # each <Part> holds a PartNumber and an ETag, in either order (the AWS CLI sends the ETag first)
        named = []
        for part in re.findall(r"<Part>(.*?)</Part>", body.decode(), re.S):
            n = re.search(r"<PartNumber>(\d+)</PartNumber>", part)
            e = re.search(r"<ETag>([^<]+)</ETag>", part)
            if n and e:
                named.append((int(n.group(1)), e.group(1).replace("&quot;", "").strip('"')))
        with self.lock:
            parts = up["parts"]
            bad = not named or any(n not in parts or parts[n][1] != e for n, e in named)
        if bad:  # answered outside the lock: _reply takes it
            return self._error(h, 400, "InvalidPart", "One or more of the specified parts could not be found.")
        with self.lock:
            data = b"".join(parts[n][0] for n, _ in named)
            etag = '"%s-%d"' % (hashlib.md5(b"".join(bytes.fromhex(parts[n][1]) for n, _ in named)).hexdigest(),
                                len(named))
            self.buckets[bucket][key] = (data, etag)
            self.meta[(bucket, key)] = up.get("meta", {})
            self.uploads.pop(q["uploadId"], None)
        out = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<CompleteMultipartUploadResult><Bucket>%s</Bucket>"
               "<Key>%s</Key><ETag>%s</ETag></CompleteMultipartUploadResult>" % (bucket, escape(key), escape(etag)))
        self._reply(h, 200, out.encode(), {"Content-Type": "application/xml"})
