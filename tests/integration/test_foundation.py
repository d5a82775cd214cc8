"""
Foundation (issue 2): the daemon under a real PostgreSQL, the control socket, drctl, sd_notify,
reload, roles, and a loop that never blocks.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


from drsup import DAEMON, DRCTL, SAN_ENV, Daemon, wait_until

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


def new_daemon(daemons, tmp_path, config=None, name="d"):
    d = Daemon(tmp_path, config, name=name)
    daemons.append(d)
    return d


# ---- configuration ----

def test_example_configuration_passes_check_config():
    p = subprocess.run([DAEMON, "--check-config", "--config", os.path.join(REPO, "conf/drsupervisor.yaml")],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "configuration ok" in p.stdout


def test_check_config_reports_every_problem_with_position(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("cluster: x\n"
                   "database:\n"
                   "  conninfo: host=127.0.0.1\n"
                   "  probe_intervall: 1s\n"
                   "  probe_timeout: 5\n"
                   "control:\n"
                   "  max_clients: lots\n")
    p = subprocess.run([DAEMON, "--check-config", "--config", str(cfg)], capture_output=True, text=True)
    assert p.returncode == 2
    assert f"{cfg}:4:3: unknown key 'database.probe_intervall'" in p.stderr
    assert f"{cfg}:5:18: 'database.probe_timeout' must be a duration" in p.stderr
    assert f"{cfg}:7:16: 'control.max_clients' must be a whole number" in p.stderr


def test_daemon_refuses_to_start_on_bad_configuration(tmp_path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("control: {socket: /tmp/x.sock}\n")  # database section missing
    p = subprocess.run([DAEMON, "--config", str(cfg)], capture_output=True, text=True, timeout=10)
    assert p.returncode == 2
    assert "missing required section 'database'" in p.stderr
    assert "not starting" in p.stderr


def test_a_start_that_fails_midway_exits_cleanly(tmp_path):
    """The state directory is a file: the audit log cannot be opened while the modules are being
    built; the daemon says why and exits 1 (no crash closing what was never started, no leak)."""
    state = tmp_path / "state"
    state.write_text("")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(json.dumps({"state_dir": str(state), "control": {"socket": str(tmp_path / "s.sock")},
                               "database": {"conninfo": "host=127.0.0.1 port=1 dbname=x user=postgres"}}))
    p = subprocess.run([DAEMON, "--config", str(cfg)], capture_output=True, text=True, timeout=30,
                       env=dict(os.environ, **SAN_ENV))
    assert p.returncode == 1, p.stderr
    assert "cannot open the audit log" in p.stderr and "Not a directory" in p.stderr
    assert "Assertion" not in p.stderr and "ERROR: AddressSanitizer" not in p.stderr and "runtime error" not in p.stderr


def test_help_and_version():
    for binary in (DAEMON, DRCTL):
        p = subprocess.run([binary, "--help"], capture_output=True, text=True)
        assert p.returncode == 0 and "Usage:" in p.stdout
        p = subprocess.run([binary, "--version"], capture_output=True, text=True)
        assert p.returncode == 0 and p.stdout.strip().split()[-1][0].isdigit()
    p = subprocess.run([DRCTL, "frobnicate"], capture_output=True, text=True)
    assert p.returncode == 2 and "unknown command" in p.stderr


# ---- the database probe against a real PostgreSQL ----

def test_status_follows_the_real_database_down_and_up(pg, daemons, tmp_path):
    interval = 0.3
    d = new_daemon(daemons, tmp_path, {"database": {"conninfo": pg.conninfo(), "probe_interval": "300ms",
                                                    "down_after": 2}})
    d.start()
    wait_until(lambda: d.component("database").get("health") == "up", timeout=10, what="database up")

    out = d.ctl("status")
    assert out.returncode == 0
    assert "database" in out.stdout and " up " in out.stdout
    st = d.ctl_json("status")
    db = st["components"]["database"]
    assert db["last_observation"]["ok"] is True
    assert db["last_observation"]["detail"]["server_version"].startswith("15")
    assert st["config_file"] == d.config_path and st["version"]

    pg.stop()
    stopped = time.monotonic()
    wait_until(lambda: d.component("database").get("health") == "down", timeout=5, what="database down")
    # Two probe intervals, plus scheduling slack: detection must not wait for long timeouts.
    assert time.monotonic() - stopped <= 2 * interval + 0.5
    db = d.component("database")
    assert db["last_error"]["message"]
    assert db["consecutive_failures"] >= 2

    pg.start()
    wait_until(lambda: d.component("database").get("health") == "up", timeout=10, what="database up again")
    d.stop()


def test_events_stream_to_watchers(pg, daemons, tmp_path):
    d = new_daemon(daemons, tmp_path, {"database": {"conninfo": pg.conninfo()}})
    d.start()
    s = d.connect(timeout=10)
    s.sendall(b'{"id":"w","cmd":"watch"}\n')
    reply, buf = d.read_line(s)
    assert reply == {"id": "w", "ok": True, "result": {"watching": True}}
    pg.stop()
    seen = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        msg, buf = d.read_line(s, buf)
        seen.append(msg["event"])
        if msg["event"].get("condition") == "database.down:test" and not msg["event"]["resolved"]:
            break
    ev = seen[-1]
    assert ev["condition"] == "database.down:test" and ev["severity"] == "error" and not ev["resolved"]
    s.close()
    d.stop()


# ---- the loop never blocks ----

class Blackhole:
    """A TCP listener that accepts connections and never says a word."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.2)
        while not self._stop:
            try:
                c, _ = self.sock.accept()
                self.conns.append(c)
            except socket.timeout:
                continue
            except OSError:
                return

    def close(self):
        self._stop = True
        self.thread.join()
        for c in self.conns:
            c.close()
        self.sock.close()


def test_control_socket_answers_fast_while_probes_hang(daemons, tmp_path):
    hole = Blackhole()
    try:
        d = new_daemon(daemons, tmp_path, {
            "database": {"conninfo": f"host=127.0.0.1 port={hole.port} dbname=x user=x",
                         "probe_interval": "100ms", "probe_timeout": "5s", "connect_timeout": "5s"},
            "platform": {"health_url": f"http://127.0.0.1:{hole.port}/health",
                         "probe_interval": "100ms", "probe_timeout": "5s"},
        })
        d.start()
        s = d.connect()
        worst = 0.0
        n = 0
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline:
            t0 = time.monotonic()
            reply = d.request("status", rid=n, sock=s)
            worst = max(worst, time.monotonic() - t0)
            assert reply["ok"] and reply["id"] == n
            n += 1
            time.sleep(0.01)
        s.close()
        assert n > 50
        assert worst < 0.1, f"slowest status reply took {worst * 1000:.1f} ms"
        # Both probes really were stuck on the black hole the whole time.
        assert len(hole.conns) >= 2
        d.stop()
    finally:
        hole.close()


# ---- the platform health probe ----

class Health(BaseHTTPRequestHandler):
    code = 200

    def do_GET(self):  # noqa: N802
        self.send_response(Health.code)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *a):
        pass


def test_platform_health_probe(daemons, tmp_path):
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Health)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        Health.code = 200
        d = new_daemon(daemons, tmp_path, {"platform": {
            "health_url": f"http://127.0.0.1:{srv.server_address[1]}/health",
            "probe_interval": "100ms", "down_after": 2}})
        d.start()
        wait_until(lambda: d.component("platform").get("health") == "up", what="platform up")
        Health.code = 503
        wait_until(lambda: d.component("platform").get("health") == "down", what="platform down")
        assert "HTTP 503" in d.component("platform")["last_error"]["message"]
        Health.code = 200
        wait_until(lambda: d.component("platform").get("health") == "up", what="platform up again")
        d.stop()
    finally:
        srv.shutdown()


# ---- sd_notify ----

def test_sd_notify_ready_watchdog_reload_stopping(daemons, tmp_path):
    d = new_daemon(daemons, tmp_path)
    d.start(watchdog_usec=200000)
    n = d.notify
    assert n.has("READY=1")
    assert any("STATUS=" in m for _, m in n.all())
    wait_until(lambda: n.count("WATCHDOG=1") >= 5, timeout=3, what="watchdog pings")
    pings = [t for t, m in n.all() if m == "WATCHDOG=1"]
    gaps = [b - a for a, b in zip(pings, pings[1:])]
    assert max(gaps) < 0.2, f"watchdog gaps {gaps}"  # half of 200 ms, with slack

    ready_before = n.count("READY=1")
    d.send_signal(signal.SIGHUP)
    wait_until(lambda: n.count("READY=1") > ready_before, what="READY=1 after reload")
    msgs = [m for _, m in n.all()]
    reloading = next(i for i, m in enumerate(msgs) if "RELOADING=1" in m)
    assert any("READY=1" in m for m in msgs[reloading + 1:])

    # STOPPING=1 comes first, before the handles close. A reload whose file is a FIFO holds the
    # loop open (its work waits on the thread pool for a writer), so the process cannot exit until
    # the test writes the file: STOPPING=1 must arrive while it is held, by the time the control
    # socket has closed a connected client.
    with open(d.config_path) as f:
        good = f.read()
    os.unlink(d.config_path)
    os.mkfifo(d.config_path)
    client = d.connect(timeout=15)
    assert d.request("ping", sock=client)["ok"] is True
    reloads = d.log().count("reloading configuration from")
    d.send_signal(signal.SIGHUP)
    wait_until(lambda: d.log().count("reloading configuration from") > reloads, what="reload under way")
    d.send_signal(signal.SIGTERM)
    assert client.recv(65536) == b"", "the control socket closes the client at shutdown"
    wait_until(lambda: d.notify.has("STOPPING=1"), timeout=5, what="STOPPING=1 while the loop is held")
    assert d.proc.poll() is None, "the pending reload holds the process"
    with open(d.config_path, "w") as f:  # lets the reload's work finish; the loop then ends
        f.write(good)
    d.proc.wait(timeout=20)
    d.stop()
    assert "STOPPING=1" in [m for _, m in d.notify.all()][-1] or d.notify.has("STOPPING=1")


# ---- reload ----

def test_reload_applies_good_and_refuses_bad_configuration(daemons, tmp_path):
    d = new_daemon(daemons, tmp_path)
    d.start()
    d.config["cluster"] = "renamed"
    d.write_config()
    p = d.ctl("reload")
    assert p.returncode == 0, p.stderr
    assert d.ctl_json("status")["cluster"] == "renamed"

    d.write_config(raw="cluster: broken\ndatabase:\n  conninfo: x\n  probe_interval: soon\n")
    p = d.ctl("reload")
    assert p.returncode == 1
    assert "config_invalid" in p.stderr
    assert f"{d.config_path}:4:19: 'database.probe_interval' must be a duration" in p.stderr
    st = d.ctl_json("status")
    assert st["cluster"] == "renamed" and st["reloads"] == {"ok": 1, "failed": 1}

    d.send_signal(signal.SIGHUP)  # a bad file on SIGHUP is logged, the daemon keeps running
    wait_until(lambda: d.ctl_json("status")["reloads"]["failed"] == 2, what="second refused reload")
    assert "reload refused" in d.log()
    d.stop()


# ---- protocol robustness ----

def test_garbage_oversized_and_half_written_lines(daemons, tmp_path):
    d = new_daemon(daemons, tmp_path, {"control": {"max_request": "1KiB"}})
    d.start()
    s = d.connect()
    buf = b""
    s.sendall(b"this is not json\n")
    r, buf = d.read_line(s, buf)
    assert r["ok"] is False and r["error"]["code"] == "bad_request" and r["id"] is None
    s.sendall(b'[1,2]\n{"id":7}\n{"id":8,"cmd":"nope"}\n{"id":9,"cmd":"ping","args":[]}\n')
    codes = []
    for _ in range(4):
        r, buf = d.read_line(s, buf)
        codes.append((r["id"], r["error"]["code"]))
    assert codes == [(None, "bad_request"), (7, "bad_request"), (8, "unknown_command"), (9, "bad_request")]
    s.sendall(b'{"id":10,"cmd":"ping","pad":"' + b"x" * 5000 + b'"}\n')
    r, buf = d.read_line(s, buf)
    assert r["error"]["code"] == "too_big"
    # Half a line, a pause, then the rest: one request.
    s.sendall(b'{"id":11,"cm')
    time.sleep(0.2)
    s.sendall(b'd":"ping"}\n')
    r, buf = d.read_line(s, buf)
    assert r["id"] == 11 and r["ok"] is True and r["result"]["pong"] is True
    # A client that sends half a line and hangs up does not disturb anyone.
    s2 = d.connect()
    s2.sendall(b'{"id":1,"cmd":"sta')
    s2.close()
    assert d.request("ping")["ok"]
    # A request followed by a half-close still gets its answer.
    s3 = d.connect()
    s3.sendall(b'{"id":"h","cmd":"ping"}\n')
    s3.shutdown(socket.SHUT_WR)
    r, _ = d.read_line(s3)
    assert r["id"] == "h" and r["ok"]
    s3.close()
    s.close()
    d.stop()


def test_many_clients_at_once(daemons, tmp_path):
    d = new_daemon(daemons, tmp_path, {"control": {"max_clients": 40}})
    d.start()
    socks = [d.connect() for _ in range(30)]
    for i, s in enumerate(socks):
        s.sendall(json.dumps({"id": i, "cmd": "ping"}).encode() + b"\n")
    for i, s in enumerate(socks):
        r, _ = d.read_line(s)
        assert r["id"] == i and r["ok"]
    extra = [d.connect() for _ in range(15)]
    refused = served = 0
    for s in extra:
        try:
            s.sendall(b'{"id":"x","cmd":"ping"}\n')
        except OSError:
            pass
        r, _ = d.read_line(s)
        refused += (not r["ok"]) and r["error"]["code"] == "busy"
        served += r["ok"]
        s.close()
    assert (refused, served) == (5, 10)
    for s in socks:
        s.close()
    assert d.request("status")["result"]["control"]["clients"] == 1
    d.stop()


# ---- roles ----

def test_socket_mode_and_roles(daemons):
    # Other users must be able to reach the socket: a world-traversable directory of our own.
    base = tempfile.mkdtemp(prefix="drsup-roles-")
    os.chmod(base, 0o755)
    d = new_daemon(daemons, base, {"control": {"mode": "0666", "operators_group": "nogroup"}})
    os.chmod(d.dir, 0o755)
    d.start()
    assert oct(os.stat(d.socket).st_mode & 0o777) == "0o666"
    # nobody with primary group nogroup: an operator.
    p = d.ctl("reload", user="nobody", group="nogroup")
    assert p.returncode == 0, p.stderr
    # daemon (uid 1) with its own group: a reader, refused mutating commands, allowed to read.
    p = subprocess.run(["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups", DRCTL,
                        "--socket", d.socket, "reload"], capture_output=True, text=True)
    assert p.returncode == 1
    assert "permission_denied" in p.stderr and "operator" in p.stderr and "nogroup" in p.stderr
    p = subprocess.run(["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups", DRCTL,
                        "--socket", d.socket, "--json", "status"], capture_output=True, text=True)
    assert p.returncode == 0 and json.loads(p.stdout)["cluster"] == "test"
    d.stop()
    shutil.rmtree(base)


def test_default_socket_mode_is_0660(daemons, tmp_path):
    d = new_daemon(daemons, tmp_path)
    d.start()
    assert oct(os.stat(d.socket).st_mode & 0o777) == "0o660"
    d.stop()
    assert not os.path.exists(d.socket)


def test_drctl_exit_codes(daemons, tmp_path):
    p = subprocess.run([DRCTL, "--socket", str(tmp_path / "none.sock"), "status"], capture_output=True, text=True)
    assert p.returncode == 3 and "cannot reach" in p.stderr
    p = subprocess.run([DRCTL, "--timeout", "soon", "status"], capture_output=True, text=True)
    assert p.returncode == 2
    d = new_daemon(daemons, tmp_path)
    d.start()
    assert d.ctl("ping").returncode == 0
    p = d.ctl("call", "nope")
    assert p.returncode == 1 and "unknown_command" in p.stderr
    d.stop()


def test_second_daemon_on_same_socket_refuses(daemons, tmp_path):
    d1 = new_daemon(daemons, tmp_path, name="one")
    d1.start()
    d2 = new_daemon(daemons, tmp_path, {"control": {"socket": d1.socket}}, name="two")
    d2.start(wait_ready=False)
    rc = d2.proc.wait(timeout=10)
    d2.proc = None
    assert rc == 1
    assert "already listening" in d2.log()
    assert d1.request("ping")["ok"]
    d1.stop()
