"""
alerts_harness: run drsupervisord and drctl for the alert tests.

A small local stand-in until tests/integration/drsup.py lands on main (same shape: Daemon(tmp,
config), start(), ctl_json(), stop() asserting a clean exit, kill9()). The configuration is
written as JSON, which is valid YAML. Standard library only.
"""
import json
import os
import signal
import socket
import subprocess
import threading
import time

BUILD = os.environ.get("DRSUP_BUILD") or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                                      "build")
DAEMON = os.path.join(BUILD, "drsupervisord")
DRCTL = os.path.join(BUILD, "drctl")
SAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=99",
           "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=98", "LSAN_OPTIONS": "exitcode=97"}


def wait_until(fn, timeout=10.0, interval=0.02, what="condition"):
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


def merge(base, extra):
    out = dict(base)
    for k, v in (extra or {}).items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


class Daemon:
    def __init__(self, tmpdir, config=None, name="d"):
        self.dir = os.path.join(str(tmpdir), name)
        os.makedirs(self.dir, exist_ok=True)
        self.socket = os.path.join(self.dir, "control.sock")
        self.state_dir = os.path.join(self.dir, "state")
        self.config_path = os.path.join(self.dir, "drsupervisor.yaml")
        self.log_path = os.path.join(self.dir, "daemon.log")
        self.config = merge({
            "cluster": "test", "state_dir": self.state_dir, "log_level": "debug",
            "control": {"socket": self.socket},
            "database": {"conninfo": "host=127.0.0.1 port=1 dbname=postgres user=postgres",
                         "probe_interval": "200ms", "probe_timeout": "1s", "connect_timeout": "1s"},
        }, config)
        self.proc = None
        self._log = None
        self.write_config()

    def write_config(self):
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)

    def start(self, env=None):
        e = dict(os.environ)
        e.update(SAN_ENV)
        e.pop("JOURNAL_STREAM", None)
        e.pop("NOTIFY_SOCKET", None)
        e.update(env or {})
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([DAEMON, "--config", self.config_path], env=e, stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(lambda: self.proc.poll() is not None or self.ctl("ping").returncode == 0, timeout=15,
                   what="the daemon to answer")
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {self.proc.returncode}:\n{self.log()}")
        return self

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stop(self, timeout=20, expect=0):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"daemon did not stop within {timeout}s:\n{self.log()[-4000:]}")
        self._log.close()
        self.proc = None
        assert expect is None or rc == expect, f"daemon exited with {rc}:\n{self.log()[-6000:]}"
        return rc

    def kill9(self):
        self.proc.kill()
        self.proc.wait()
        self._log.close()
        self.proc = None

    def cleanup(self):
        if self.proc is not None:
            self.kill9()

    def ctl(self, *args, timeout=30):
        e = dict(os.environ)
        e.update(SAN_ENV)
        return subprocess.run([DRCTL, "--socket", self.socket, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout, env=e)

    def ctl_json(self, *args):
        p = self.ctl("--json", *args)
        assert p.returncode == 0, f"drctl {' '.join(args)} failed ({p.returncode}): {p.stderr}"
        return json.loads(p.stdout)
