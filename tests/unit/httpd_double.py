#!/usr/bin/python3
"""HTTP test double for tests/unit/test_httpc.c: a threaded stdlib server on 127.0.0.1.

Usage: httpd_double.py PORTFILE. Listens on a free loopback port and, once ready, writes the port
to PORTFILE atomically (tmp + rename). Paths (any method):
  /ok             200 "ok"
  /status/NNN     status NNN, body "status NNN" (no body for 1xx/204/304)
  /retry-after    429 with "Retry-After: 7"
  /echo           200 JSON {"method", "path", "headers": {name: value}, "body"} of the request
  /slow?ms=N      sleeps N ms, then 200 "slow"
  /hang           reads the request and never answers
  /bigheaders     200 with 100 headers of 1000 bytes each (about 100 KB of headers)
  /big            200 with a 2 MiB body (Content-Length); /big?chunked=1 sends it chunked
Runs until killed.
"""
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

BIG = 2 * 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format, *args):  # quiet
        pass

    def reply(self, status, body=b"", headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        if status >= 200 and status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if body and self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        length = int(self.headers.get("Content-Length", "0") or "0")
        body = self.rfile.read(length) if length else b""
        path = url.path
        if path == "/ok":
            self.reply(200, b"ok", [("Content-Type", "text/plain")])
        elif path.startswith("/status/"):
            code = int(path[len("/status/"):])
            self.reply(code, b"" if code in (204, 304) else b"status %d" % code)
        elif path == "/retry-after":
            self.reply(429, b"slow down", [("Retry-After", "7")])
        elif path == "/bigheaders":
            self.reply(200, b"ok", [("X-Filler-%d" % i, "y" * 1000) for i in range(100)])
        elif path == "/echo":
            doc = {
                "method": self.command,
                "path": self.path,
                "headers": {k: v for k, v in self.headers.items()},
                "body": body.decode("utf-8", "replace"),
            }
            self.reply(200, json.dumps(doc).encode(), [("Content-Type", "application/json")])
        elif path == "/slow":
            time.sleep(int(query.get("ms", ["1000"])[0]) / 1000.0)
            self.reply(200, b"slow")
        elif path == "/hang":
            threading.Event().wait()
        elif path == "/big":
            if query.get("chunked"):
                self.send_response(200)
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                chunk = b"x" * 65536
                for _ in range(BIG // len(chunk)):
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.reply(200, b"x" * BIG)
        else:
            self.reply(404, b"no such path")

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = handle_any


class Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # Clients hang up on purpose (timeouts, cancels, size limits): not worth a traceback.
        if not isinstance(sys.exc_info()[1], (ConnectionError, BrokenPipeError)):
            super().handle_error(request, client_address)


def main():
    portfile = sys.argv[1]
    server = Server(("127.0.0.1", 0), Handler)
    tmp = portfile + ".tmp"
    with open(tmp, "w") as f:
        f.write("%d\n" % server.server_address[1])
    os.rename(tmp, portfile)
    try:
        server.serve_forever()
    except (BrokenPipeError, ConnectionResetError):
        pass


if __name__ == "__main__":
    main()
