"""
fakevenue: a controllable trading-platform double for the venue adapter's tests.

Owns an HTTP server on 127.0.0.1 with /halt, /resume, /shadow, /status, /positions, /fills and
/close_all. /positions answers `positions` (a list of {"symbol","quantity","avg_price"}) and
/fills?since=MS answers the `fills` (dicts with "executed_at" in epoch ms) at or after MS. Tests set `ignore_halts` (halts answered 200 but not applied), `down` (every request
answered 503), `on_halt` (a hook called when a halt arrives, e.g. to check that the daemon
persisted its state first), or `on_resume` (a hook called, under the lock, when /resume made
trading live: e.g. a fill the platform then loses on its way to the database). Every request is recorded. Standard library only.
"""
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class FakeVenue:
    def __init__(self, mode="live"):
        self.mode = mode
        self.requests = []
        self.tokens = []  # (path, X-Drsup-Fencing-Token or None) of every request, in order
        self.ignore_halts = 0
        self.down = False
        self.on_halt = None
        self.on_resume = None
        self.halt_bodies = []
        self.resume_delay = 0.0   # seconds /resume and /shadow take to answer (recorded first)
        self.refuse_resume = False  # answer /resume and /shadow with 409
        self.positions = []
        self.fills = []
        self.lock = threading.Lock()
        venue = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                path = self.path.split("?")[0]
                if path in ("/resume", "/shadow") and method == "POST" and venue.resume_delay:
                    with venue.lock:
                        venue.requests.append((method, self.path, body))
                    time.sleep(venue.resume_delay)  # a slow platform: other requests go on meanwhile
                    with venue.lock:
                        venue.mode = "live" if path == "/resume" else "shadow"
                        return self._answer(200, {"mode": venue.mode})
                with venue.lock:
                    venue.requests.append((method, self.path, body))
                    venue.tokens.append((path, self.headers.get("X-Drsup-Fencing-Token")))
                    if venue.down:
                        return self._answer(503, {"error": "down"})
                    if path == "/halt" and method == "POST":
                        venue.halt_bodies.append(json.loads(body or b"{}"))
                        if venue.on_halt:
                            venue.on_halt()
                        if venue.ignore_halts > 0:
                            venue.ignore_halts -= 1
                        else:
                            venue.mode = "halted"
                        return self._answer(200, {"mode": venue.mode})
                    if path in ("/resume", "/shadow") and method == "POST" and venue.refuse_resume:
                        return self._answer(409, {"error": "refused"})
                    if path == "/resume" and method == "POST":
                        venue.mode = "live"
                        if venue.on_resume:
                            venue.on_resume()
                        return self._answer(200, {"mode": venue.mode})
                    if path == "/shadow" and method == "POST":
                        venue.mode = "shadow"
                        return self._answer(200, {"mode": venue.mode})
                    if path == "/status":
                        return self._answer(200, {"mode": venue.mode})
                    if path == "/positions" and method == "GET":
                        return self._answer(200, venue.positions)
                    if path == "/fills" and method == "GET":
                        q = parse_qs(urlsplit(self.path).query)
                        since = int((q.get("since") or ["0"])[0] or 0)
                        return self._answer(200, [f for f in venue.fills if f["executed_at"] >= since])
                    return self._answer(404, {"error": "no such endpoint"})

            def do_GET(self):  # noqa: N802
                self._handle("GET")

            def do_POST(self):  # noqa: N802
                self._handle("POST")

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def count(self, method, path):
        with self.lock:
            return sum(1 for m, p, _ in self.requests if m == method and p.split("?")[0] == path)

    def config(self, **extra):
        cfg = {
            "halt": {"url": self.url + "/halt", "body": '{"reason":"{{reason}}","run":"{{run}}"}'},
            "resume": {"url": self.url + "/resume"},
            "shadow": {"url": self.url + "/shadow"},
            "status": {"url": self.url + "/status"},
            "positions": {"url": self.url + "/positions"},
            "fills": {"url": self.url + "/fills?since={{since}}"},
            "close_all": {"url": self.url + "/close_all"},
            "timeout": "1s", "retry_base": "50ms", "retry_cap": "200ms", "escalate_after": 2,
            "status_interval": "100ms",
        }
        cfg.update(extra)
        return cfg

    def close(self):
        self.server.shutdown()
        self.server.server_close()
