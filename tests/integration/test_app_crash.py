"""
The app_crash scenario (issue 15, Sofia scenario 1) end to end: a real PostgreSQL, the paper
trading platform trading on it, the daemon with detector.app_crash and scenarios.app_crash. The
restart command is a script that starts the paper platform again on the same port, in the mode
TRADING_MODE says, and records how it was called; the out-of-band halt (the exchange's cancel-all)
is an HTTP endpoint of the alert receiver double, which records the call.

- the platform SIGKILLed with the database fine: detected, halted out of band (the platform cannot
  answer its own halt), restarted in shadow by the command, healthy, halted on it, reconciled (the
  fills the dead platform never wrote are replayed), live; the incident report says how;
- a platform that does not come back: halted out of band, restart_attempts tries, the run fails
  closed (not_restarted), trading halted, paged through the webhook, never resumed;
- the daemon SIGKILLed right after the restart step committed: started again, the run completes
  with one restart;
- in manual mode the run stops before resume_live with trading in shadow, until drctl approve;
- the restart as restart_url (POST restart_body to a loopback HTTP server that brings the platform
  back in the mode the body names) and the kill switch as out_of_band_halt_command (a script,
  exit 0 confirms, DRSUP_RUN and DRSUP_REASON in its environment).
"""
import http.server
import json
import os
import signal
import subprocess
import threading

import pytest

from drsup import wait_until
from trading_env import TradingEnv

PY = "/usr/bin/python3"
VENUE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "paper_venue.py")


class AppCrashEnv(TradingEnv):
    """TradingEnv with the app crash detection, the restart script and the out-of-band halt."""

    def __init__(self, tmp_path, pg, rx, come_back=True, attempts=3, mode="automatic"):
        super().__init__(tmp_path, pg, trade_interval="100ms")
        self.rx = rx
        self.mode = mode
        self.come_back = come_back
        self.attempts = attempts
        self.calls = str(tmp_path / "restart-calls")
        self.pidfile = str(tmp_path / "restarted.pid")

    def write_restart(self):
        """Idempotent: a platform it started that still runs is left alone."""
        v = self.venue
        start = ("setsid %s %s --port %d --dsn '%s' --state-file %s --trade-interval %s --seed 8 "
                 "--mode \"$TRADING_MODE\" >> %s/restarted.log 2>&1 < /dev/null &\necho $! > %s\n"
                 % (PY, VENUE, v.port, self.pg.conninfo(self.db), v.state_file, self.trade_interval, v.dir,
                    self.pidfile)) if self.come_back else "echo 'platform: cannot bind' >&2\n"
        path = os.path.join(self.dir, "restart-platform")
        with open(path, "w") as f:
            f.write("#!/bin/sh\necho \"restart $TRADING_MODE $DRSUP_RUN\" >> %s\n"
                    "if [ -f %s ] && kill -0 \"$(cat %s)\" 2>/dev/null; then exit 0; fi\n%sexit 0\n"
                    % (self.calls, self.pidfile, self.pidfile, start))
        os.chmod(path, 0o755)
        return path

    def config(self):
        cfg = super().config()
        for k in ("restart_command", "server_log", "corruption_queries"):
            cfg["detector"].pop(k, None)
        cfg["detector"]["app_crash"] = True
        cfg["platform"] = {"health_url": self.venue.url("/health"), "probe_interval": "200ms",
                           "probe_timeout": "1s", "down_after": 2}
        cfg["venue"]["timeout"] = "2s"
        cfg["alerts"] = {"webhook": {"url": self.rx.url("/hook")}, "group_window": "100ms",
                         "routes": [{"match": {"min_severity": "error"}, "channels": ["webhook"]}]}
        cfg["scenarios"] = {"app_crash": {
            "rto": "2m", "mode": self.mode, "restart_command": [self.write_restart()],
            "restart_attempts": self.attempts,
            "restart_delay": "200ms", "health_timeout": "5s" if self.come_back else "1500ms",
            "health_interval": "200ms", "halt_wait": "1s",
            "out_of_band_halt_url": self.rx.url("/cancel-all"), "out_of_band_halt_body": '{"all":true}',
            "out_of_band_halt_timeout": "2s"}}
        return cfg

    def restart_calls(self):
        try:
            with open(self.calls) as f:
                return f.read().split("\n")[:-1]
        except FileNotFoundError:
            return []

    def crash_platform(self):
        self.venue.proc.kill()
        self.venue.proc.wait()

    def run_of(self):
        runs = [r for r in self.daemon.ctl_json("runs")["runs"] if r.get("scenario") == "app_crash"]
        return runs[0]["run"] if runs else None

    def wait_run(self, rid, timeout=90):
        return wait_until(lambda: (lambda r: r if r["status"] in ("succeeded", "failed", "aborted") else None)(
            self.daemon.ctl_json("run", rid)), timeout=timeout, what="run %s to end" % rid)

    def stop_restarted(self):
        try:
            with open(self.pidfile) as f:
                pid = int(f.read())
        except (FileNotFoundError, ValueError):
            return
        try:
            os.kill(pid, signal.SIGTERM)
            wait_until(lambda: not os.path.exists("/proc/%d" % pid) or
                       open("/proc/%d/stat" % pid).read().split()[2] == "Z", timeout=10, what="platform stopped")
        except ProcessLookupError:
            pass


@pytest.fixture
def make_env(tmp_path, pg, rx):
    made = []

    def make(**kw):
        e = AppCrashEnv(tmp_path, pg, rx, **kw)
        made.append(e)
        return e
    yield make
    for e in made:
        e.stop_restarted()
        e.cleanup()


def webhook_events(rx):
    return [r.json["event"] for r in rx.got("/hook", 200)]


def test_platform_killed_halted_out_of_band_restarted_in_shadow_reconciled_live(make_env, rx):
    env = make_env().start()
    d = env.daemon
    wait_until(lambda: d.component("platform")["health"] == "up", timeout=20, what="platform up")
    # The plan names the out-of-band halt and the restart, and changes nothing.
    plan = {p["step"]: p["action"] for p in d.ctl_json("execute", "--scenario", "app_crash", "--dry-run")["plan"]}
    assert "/cancel-all" in plan["halt_trading"] and "restart-platform" in plan["restart_platform"], plan
    assert env.restart_calls() == [] and not rx.got("/cancel-all") and env.venue.status()["mode"] == "live"
    env.crash_platform()
    rid = wait_until(env.run_of, timeout=30, what="an app_crash run")
    run = env.wait_run(rid)
    assert run["status"] == "succeeded", d.log()[-6000:]
    assert [s["step"] for s in run["steps"]] == ["halt_trading", "restart_platform", "reconcile", "resume_shadow",
                                                  "resume_live", "post_resume_watch"], run["steps"]
    # The dead platform could not confirm its halt: the exchange's cancel-all was called, once.
    oob = rx.got("/cancel-all")
    assert len(oob) == 1 and oob[0].json == {"all": True}, oob
    assert "out-of-band halt answered HTTP 200" in run["steps"][0]["message"], run["steps"][0]
    # Restarted once, in shadow mode, by the configured command.
    assert env.restart_calls() == ["restart shadow %s" % rid], env.restart_calls()
    wait_until(lambda: env.venue.status()["mode"] == "live", timeout=10, what="trading live")
    env.venue.post("/test/pause")
    wait_until(lambda: env.venue.status()["db_pending"] == 0, timeout=20, what="platform caught up")
    assert env.db_positions() == env.exchange_positions()
    rep = env.run_report(rid)
    assert rep["status"] == "succeeded" and rep["rto_met"] is True, rep
    assert rep["app_crash"]["kill_switch"]["by"] == "out_of_band", rep["app_crash"]
    assert rep["app_crash"]["restart"]["attempts"] == 1 and rep["app_crash"]["restart"]["healthy_ms"] > 0
    assert rep["reconcile"]["ready_to_trade"] is True
    # Detected as an app crash (the database fine), resolved once the platform answered again.
    conds = [e for e in webhook_events(rx) if e["condition"] == "detector.app_crash:paper"]
    assert conds and conds[0]["resolved"] is False and conds[-1]["resolved"] is True, conds
    env.stop()


def test_platform_that_stays_down_stays_halted_and_pages(make_env, rx):
    env = make_env(come_back=False, attempts=2).start()
    d = env.daemon
    wait_until(lambda: d.component("platform")["health"] == "up", timeout=20, what="platform up")
    env.crash_platform()
    rid = wait_until(env.run_of, timeout=30, what="an app_crash run")
    run = env.wait_run(rid)
    assert run["status"] == "failed" and run["state"] == "not_restarted", run
    assert "not back after 2 restart attempts" in run["steps"][-1]["message"], run["steps"][-1]
    assert [s["step"] for s in run["steps"]] == ["halt_trading", "restart_platform"], run["steps"]
    assert len(rx.got("/cancel-all")) == 1
    assert env.restart_calls() == ["restart shadow %s" % rid] * 2, env.restart_calls()
    # Trading stays halted (the halt is persisted) and the run paged.
    assert d.ctl_json("trading")["halted"] is True
    wait_until(lambda: [e for e in webhook_events(rx) if e["condition"] == "scenario:app_crash:paper"
                        and e["severity"] == "critical" and not e["resolved"]], timeout=15, what="the page")
    # A failed run does not start another while the platform stays down.
    wait_until(lambda: d.component("platform")["health"] == "down", timeout=10, what="platform down")
    assert [r["run"] for r in d.ctl_json("runs")["runs"]] == [rid]
    env.stop()


def test_daemon_killed_after_the_restart_step_completes_the_run(make_env, rx):
    env = make_env()
    env.start(daemon_env={"DRSUP_CRASH_AFTER_EVENT": "commit:restart_platform"})
    d = env.daemon
    wait_until(lambda: d.component("platform")["health"] == "up", timeout=20, what="platform up")
    env.crash_platform()
    wait_until(lambda: d.proc.poll() is not None, timeout=60, what="the crash after restart_platform")
    assert d.proc.returncode == -9, d.log()[-3000:]
    d.kill9()
    assert len(env.restart_calls()) == 1
    d.start()
    rid = wait_until(env.run_of, timeout=30, what="the app_crash run")
    run = env.wait_run(rid)
    assert run["status"] == "succeeded", d.log()[-6000:]
    assert env.restart_calls() == ["restart shadow %s" % rid], env.restart_calls()  # not restarted again
    wait_until(lambda: env.venue.status()["mode"] == "live", timeout=10, what="trading live")
    env.venue.post("/test/pause")
    wait_until(lambda: env.venue.status()["db_pending"] == 0, timeout=20, what="platform caught up")
    assert env.db_positions() == env.exchange_positions()
    env.stop()


def test_manual_mode_waits_in_shadow_for_approval(make_env, rx):
    env = make_env(mode="manual").start()
    d = env.daemon
    wait_until(lambda: d.component("platform")["health"] == "up", timeout=20, what="platform up")
    env.crash_platform()
    rid = wait_until(env.run_of, timeout=30, what="an app_crash run")
    run = wait_until(lambda: (lambda r: r if r["status"] == "waiting_approval" else None)(d.ctl_json("run", rid)),
                     timeout=60, what="the resume_live gate")
    assert run["state"] == "trading_in_shadow", run
    assert env.venue.status()["mode"] == "shadow" and len(env.restart_calls()) == 1
    assert d.ctl("approve", rid).returncode == 0
    assert env.wait_run(rid)["status"] == "succeeded", d.log()[-6000:]
    wait_until(lambda: env.venue.status()["mode"] == "live", timeout=10, what="trading live")
    env.venue.post("/test/pause")
    env.stop()


class HttpRestartEnv(AppCrashEnv):
    """The restart as restart_url: a loopback HTTP server that starts the platform in the mode its
    JSON body names (the restart script, run by the server); the out-of-band halt as
    out_of_band_halt_command: a script that records its environment."""

    def __init__(self, tmp_path, pg, rx):
        super().__init__(tmp_path, pg, rx)
        self.posts = []
        self.oob_calls = str(tmp_path / "oob-calls")
        env = self

        class Restart(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                env.posts.append((self.path, body))
                mode = json.loads(body or b"{}").get("mode", "")
                p = subprocess.run([os.path.join(env.dir, "restart-platform")], capture_output=True,
                                   env=dict(os.environ, TRADING_MODE=mode), timeout=10)
                self.send_response(200 if p.returncode == 0 else 500)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Restart)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def config(self):
        cfg = super().config()
        oob = os.path.join(self.dir, "cancel-all")
        with open(oob, "w") as f:
            f.write("#!/bin/sh\necho \"$DRSUP_RUN|$DRSUP_REASON\" >> %s\necho cancelled\n" % self.oob_calls)
        os.chmod(oob, 0o755)
        sc = cfg["scenarios"]["app_crash"]
        self.write_restart()
        del sc["restart_command"], sc["out_of_band_halt_url"], sc["out_of_band_halt_body"]
        sc["restart_url"] = "http://127.0.0.1:%d/restart" % self.server.server_address[1]
        sc["restart_body"] = '{"mode":"shadow"}'
        sc["out_of_band_halt_command"] = [oob]
        return cfg

    def oob(self):
        try:
            with open(self.oob_calls) as f:
                return f.read().split("\n")[:-1]
        except FileNotFoundError:
            return []

    def cleanup(self):
        self.server.shutdown()
        self.server.server_close()
        super().cleanup()


def test_restart_over_http_and_the_out_of_band_halt_command(tmp_path, pg, rx):
    """The platform killed: it cannot answer its halt, so out_of_band_halt_command runs (once, with
    DRSUP_RUN and DRSUP_REASON; exit 0 confirms); restart_url is POSTed with restart_body once and the
    server brings the platform back in shadow; reconciled, live."""
    env = HttpRestartEnv(tmp_path, pg, rx)
    try:
        env.start()
        d = env.daemon
        wait_until(lambda: d.component("platform")["health"] == "up", timeout=20, what="platform up")
        plan = {p["step"]: p["action"] for p in d.ctl_json("execute", "--scenario", "app_crash", "--dry-run")["plan"]}
        assert "cancel-all" in plan["halt_trading"] and "/restart" in plan["restart_platform"], plan
        assert env.posts == [] and env.oob() == []
        env.crash_platform()
        rid = wait_until(env.run_of, timeout=30, what="an app_crash run")
        run = env.wait_run(rid)
        assert run["status"] == "succeeded", d.log()[-6000:]
        [call] = env.oob()
        assert call.startswith(rid + "|") and len(call) > len(rid) + 1, call
        assert "out-of-band" in run["steps"][0]["message"], run["steps"][0]
        assert env.posts == [("/restart", b'{"mode":"shadow"}')], env.posts
        assert env.restart_calls() == ["restart shadow "], env.restart_calls()  # shadow, from the body
        assert not rx.got("/cancel-all")
        rep = env.run_report(rid)
        assert rep["app_crash"]["kill_switch"]["by"] == "out_of_band", rep["app_crash"]
        assert rep["app_crash"]["restart"]["attempts"] == 1, rep["app_crash"]
        wait_until(lambda: env.venue.status()["mode"] == "live", timeout=10, what="trading live")
        env.stop()
    finally:
        env.stop_restarted()
        env.cleanup()
