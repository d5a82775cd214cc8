"""
drsup: run the real drsupervisord and drctl from integration tests.

Owns a temporary directory per daemon (configuration, control socket, state directory, log, and a
NOTIFY_SOCKET that records every sd_notify message), starting and stopping the daemon, running
drctl, talking raw protocol to the socket, and waiting on conditions (never fixed sleeps).

    d = Daemon(tmp_path, {"database": {"conninfo": pg.conninfo()}})
    d.start()
    st = d.ctl_json("status")
    d.stop()                       # asserts a clean exit (and, under SANITIZE=1, no leaks)

The configuration is written as JSON, which is valid YAML. Standard library only.
"""
import json
import os
import signal
import socket
import subprocess
import threading
import time

BUILD = os.environ.get("DRSUP_BUILD") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build")
DAEMON = os.path.join(BUILD, "drsupervisord")
DRCTL = os.path.join(BUILD, "drctl")

SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=99",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=98",
    "LSAN_OPTIONS": "exitcode=97",
}


def wait_until(fn, timeout=10.0, interval=0.02, what="condition"):
    """Poll fn() until it returns a truthy value; return it, or raise after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - keep polling, report the last error
            last = e
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def deep_merge(base, extra):
    out = dict(base)
    for k, v in (extra or {}).items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


class NotifySocket:
    """An AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path):
        self.path = path
        self.messages = []
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(path)
        self._sock.settimeout(0.2)
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop:
            try:
                data = self._sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                return
            with self._lock:
                self.messages.append((time.monotonic(), data.decode("utf-8", "replace")))

    def all(self):
        with self._lock:
            return list(self.messages)

    def has(self, text):
        return any(text in m for _, m in self.all())

    def count(self, text):
        return sum(1 for _, m in self.all() if text in m)

    def close(self):
        self._stop = True
        self._thread.join(timeout=2)
        self._sock.close()


class Daemon:
    def __init__(self, tmpdir, config=None, name="d"):
        self.dir = os.path.join(str(tmpdir), name)
        os.makedirs(self.dir, exist_ok=True)
        self.socket = os.path.join(self.dir, "control.sock")
        self.state_dir = os.path.join(self.dir, "state")
        self.config_path = os.path.join(self.dir, "drsupervisor.yaml")
        self.log_path = os.path.join(self.dir, "daemon.log")
        self.config = deep_merge({
            "cluster": "test",
            "state_dir": self.state_dir,
            "log_level": "debug",
            "control": {"socket": self.socket},
            "database": {"conninfo": "host=127.0.0.1 port=1 dbname=postgres user=postgres",
                         "probe_interval": "200ms", "probe_timeout": "1s",
                         "connect_timeout": "1s"},
        }, config)
        # A configuration handed over from another daemon keeps its socket and state directory.
        self.socket = self.config["control"]["socket"]
        self.state_dir = self.config["state_dir"]
        self.proc = None
        self.notify = None
        self.write_config()

    # ---- configuration ----

    def write_config(self, config=None, raw=None):
        if config is not None:
            self.config = config
        with open(self.config_path, "w") as f:
            f.write(raw if raw is not None else json.dumps(self.config, indent=2) + "\n")

    # ---- process ----

    def start(self, watchdog_usec=None, env=None, wait_ready=True, args=()):
        e = dict(os.environ)
        e.update(SAN_ENV)
        e.pop("JOURNAL_STREAM", None)
        npath = os.path.join(self.dir, "notify.sock")
        if os.path.exists(npath):
            os.unlink(npath)
        self.notify = NotifySocket(npath)
        e["NOTIFY_SOCKET"] = npath
        if watchdog_usec:
            e["WATCHDOG_USEC"] = str(watchdog_usec)
        e.update(env or {})
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([DAEMON, "--config", self.config_path, *args], env=e,
                                     stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        if watchdog_usec:
            # sd_watchdog_enabled() only honours WATCHDOG_PID when it names the process.
            pass
        if wait_ready:
            wait_until(lambda: self.notify.has("READY=1") or self.proc.poll() is not None,
                       timeout=15, what="READY=1")
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        return self

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, sig=signal.SIGTERM, timeout=20, expect=0):
        """Stop the daemon and assert its exit status (0: clean, every handle closed, no leaks)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon did not stop within {timeout}s:\n{self.log()[-4000:]}")
        self._log.close()
        if self.notify:
            self.notify.close()
        self.proc = None
        if expect is not None:
            assert rc == expect, f"daemon exited with {rc}, expected {expect}:\n{self.log()[-6000:]}"
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self._log.close()
        if self.notify:
            self.notify.close()
        self.proc = None

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is not None and self.proc.returncode != 0:
            # Died during the test: leave its last words in the test output.
            print(f"daemon {self.dir} exited with {self.proc.returncode}; log tail:\n{self.log()[-6000:]}")
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self._log.close()
        if self.notify:
            self.notify.close()
            self.notify = None

    # ---- drctl and raw protocol ----

    def ctl(self, *args, timeout=30, env=None, user=None, group=None):
        """Run drctl (as user:group when given); returns CompletedProcess (stdout/stderr text)."""
        argv = [DRCTL, "--socket", self.socket, *args]
        if user:
            argv = ["setpriv", f"--reuid={user}", f"--regid={group or user}", "--clear-groups", *argv]
        e = dict(os.environ)
        e.update(SAN_ENV)
        e.update(env or {})
        return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=timeout, env=e)

    def ctl_json(self, *args, **kw):
        p = self.ctl("--json", *args, **kw)
        if p.returncode == 3 and self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"drctl {' '.join(args)}: the daemon is gone (exit {self.proc.returncode}):\n"
                                 f"{self.log()[-6000:]}")
        assert p.returncode == 0, f"drctl {' '.join(args)} failed ({p.returncode}): {p.stderr}"
        return json.loads(p.stdout)

    def connect(self, timeout=5.0):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect(self.socket)
        return s

    @staticmethod
    def read_line(sock, buf=b""):
        while b"\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                raise EOFError("connection closed")
            buf += chunk
        line, rest = buf.split(b"\n", 1)
        return json.loads(line), rest

    def request(self, cmd, args=None, rid=1, sock=None):
        own = sock is None
        s = sock or self.connect()
        try:
            s.sendall(json.dumps({"id": rid, "cmd": cmd, "args": args or {}}).encode() + b"\n")
            reply, _ = self.read_line(s)
            return reply
        finally:
            if own:
                s.close()

    def component(self, name):
        return self.request("status")["result"]["components"].get(name, {})
