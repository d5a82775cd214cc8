"""
alert_receiver: a loopback HTTP receiver standing in for PagerDuty, Slack, a generic webhook and a
heartbeat URL in the alert integration tests. Standard library only.

Every request is recorded (path, headers, body, parsed JSON, the status we answered). By default
/pd answers 202 with PagerDuty's success body, /slack answers 200 "ok", anything else 200 "{}".
A test scripts answers per path, consumed in order before the default applies:

    rx = Receiver(); rx.start()
    rx.script("/pd", [500, (429, {"Retry-After": "1"}), 400])
    rx.script("/slack", ["hang"])      # hold the request until rx.release() or stop()
    rx.script("/hook", ["drop"])       # close the connection without answering
    rx.stop(); rx.start()              # down for a while, then back on the same port
"""
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Request:
    def __init__(self, path, headers, body, status):
        self.path = path
        self.headers = headers
        self.body = body
        self.status = status
        self.time = time.monotonic()
        try:
            self.json = json.loads(body.decode("utf-8"))
        except ValueError:
            self.json = None

    def __repr__(self):
        return f"<{self.path} {self.status} {self.body[:120]!r}>"


class Receiver:
    def __init__(self):
        self.port = 0
        self.requests = []
        self._scripts = {}
        self._lock = threading.Lock()
        self._release = threading.Event()
        self._server = None
        self._thread = None

    # ---- control ----

    def script(self, path, answers):
        with self._lock:
            self._scripts.setdefault(path, []).extend(answers)

    def release(self):
        self._release.set()

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_GET(self):
                receiver._handle(self, b"")

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                receiver._handle(self, self.rfile.read(n) if n else b"")

        self._release.clear()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self._server:
            self._release.set()
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    # ---- queries ----

    def got(self, path, status=None):
        with self._lock:
            return [r for r in self.requests if r.path == path and (status is None or r.status == status)]

    # ---- serving ----

    def _default(self, path):
        if path == "/pd":
            return 202, {"Content-Type": "application/json"}, \
                json.dumps({"status": "success", "message": "Event processed"}).encode()
        if path == "/slack":
            return 200, {"Content-Type": "text/plain"}, b"ok"
        return 200, {"Content-Type": "application/json"}, b"{}"

    def _handle(self, h, body):
        with self._lock:
            script = self._scripts.get(h.path)
            answer = script.pop(0) if script else None
        if answer == "hang":
            with self._lock:
                self.requests.append(Request(h.path, dict(h.headers), body, "hang"))
            self._release.wait(60)
            h.close_connection = True
            try:
                h.connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            return
        if answer == "drop":
            with self._lock:
                self.requests.append(Request(h.path, dict(h.headers), body, "drop"))
            h.close_connection = True
            h.connection.shutdown(socket.SHUT_RDWR)
            return
        status, headers, out = self._default(h.path)
        if answer is not None:
            extra = {}
            if isinstance(answer, tuple):
                answer, extra = answer
            status = answer
            if status >= 300:
                out = b"invalid_payload" if h.path == "/slack" else \
                    json.dumps({"status": "invalid event", "message": "Event object is invalid",
                                "errors": ["test"]}).encode()
            headers = dict(headers, **extra)
        with self._lock:
            self.requests.append(Request(h.path, dict(h.headers), body, status))
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(out)))
        h.end_headers()
        h.wfile.write(out)
