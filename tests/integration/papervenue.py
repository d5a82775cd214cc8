"""
papervenue: run tools/paper_venue.py (the paper trading platform) from integration tests.

Owns one venue process, its port file and its state file (in the test's temporary directory), and
the small HTTP/JSON client the tests use on it. stop() sends SIGTERM and asserts a clean exit.

    v = PaperVenue(tmp_path, pg.conninfo(), paused=True).start()
    v.post("/test/trade", {"count": 5})      # -> (200, {...})
    v.get("/positions")                      # -> (200, {"mode": ..., "positions": [...]})
    v.stop()

Standard library only.
"""
import json
import os
import signal
import subprocess
import urllib.error
import urllib.request

from drsup import wait_until

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
VENUE = os.path.join(REPO, "tools", "paper_venue.py")
PYTHON = "/usr/bin/python3"


class PaperVenue:
    def __init__(self, tmp_path, dsn, mode="live", paused=False, interval="20ms", seed=7,
                 name="venue"):
        self.dir = os.path.join(str(tmp_path), name)
        os.makedirs(self.dir, exist_ok=True)
        self.port_file = os.path.join(self.dir, "port")
        self.state_file = os.path.join(self.dir, "exchange.json")
        self.log_file = os.path.join(self.dir, "venue.log")
        self.argv = [PYTHON, VENUE, "--port", "0", "--port-file", self.port_file, "--dsn", dsn,
                     "--state-file", self.state_file, "--trade-interval", interval,
                     "--seed", str(seed), "--mode", mode] + (["--paused"] if paused else [])
        self.proc = None
        self.port = None

    def start(self):
        if os.path.exists(self.port_file):
            os.unlink(self.port_file)
        self._log = open(self.log_file, "a")
        self.proc = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT)
        wait_until(lambda: os.path.exists(self.port_file) or self.proc.poll() is not None,
                   timeout=15, what="venue port file")
        if self.proc.poll() is not None:
            raise RuntimeError("venue exited with %d:\n%s" % (self.proc.returncode, self.log()))
        with open(self.port_file) as f:
            self.port = int(f.read())
        return self

    def log(self):
        with open(self.log_file) as f:
            return f.read()

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else (b"" if method == "POST" else None)
        req = urllib.request.Request(self.url(path), method=method, data=data,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=20) as r:
                return r.status, json.load(r)
        except urllib.error.HTTPError as e:
            return e.code, json.load(e)

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body=None):
        return self.request("POST", path, body)

    def status(self):
        code, st = self.get("/status")
        assert code == 200
        return st

    def stop(self):
        """SIGTERM; asserts the venue exits 0 within 10 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(timeout=10)
        self._log.close()
        assert rc == 0, "venue exited with %d:\n%s" % (rc, self.log())

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
