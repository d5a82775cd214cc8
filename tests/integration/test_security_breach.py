"""
The security_breach scenario (issue 15, ShivX procedure 4) end to end: a real PostgreSQL, the paper
trading platform trading on it, the daemon with scenarios.security_breach and the signed inbound
webhook on its metrics listener. The lockdown and rotate hooks are one script that records each
call to a file together with what the platform says at that moment (its mode, its open positions).

- drctl execute --scenario security_breach --since T, with two verified backups and T between
  them (the daemon killed after the key rotation committed and started again: nothing done twice): every position closed and trading halted (confirmed) before the first lockdown hook; the
  hooks in their order, each confirmed; the daemon's backup key rotated; the current database kept
  as evidence; the backup taken before T restored (never the newer one) with its old key;
  validated, switched, reconciled; then the run waits for a person in automatic mode too, trading
  still halted; approved, it resumes in shadow, then live; a new backup has the new key id, and the
  old and the new one both verify and test-restore;
- the webhook: a forged signature and a stale timestamp are refused (401) and start nothing, a bad
  header is 400; a good request starts a security_breach run (202); the same request again is a
  replay, refused (401).
"""
import hashlib
import hmac
import http.client
import json
import os
import socket
import time

from drsup import wait_until
from trading_env import TradingEnv

PY = "/usr/bin/python3"
HOOK = r'''#!/usr/bin/python3
import json, os, sys, urllib.request
def get(p):
    with urllib.request.urlopen("%(venue)s" + p, timeout=5) as r:
        return json.load(r)
pos = [p for p in get("/positions")["positions"] if float(p["quantity"]) != 0]
with open("%(calls)s", "a") as f:
    f.write(json.dumps({"hook": os.path.basename(sys.argv[0]), "step": os.environ.get("DRSUP_STEP"),
                        "run": os.environ.get("DRSUP_RUN"), "since": os.environ.get("DRSUP_SINCE_MS"),
                        "mode": get("/status")["mode"], "open_positions": len(pos)}) + "\n")
print("done")
'''
SECRET = b"0123456789abcdef-shared-webhook-secret"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BreachEnv(TradingEnv):
    def __init__(self, tmp_path, pg):
        super().__init__(tmp_path, pg, trade_interval="50ms")
        self.calls = str(tmp_path / "hook-calls")
        self.port = free_port()

    def hook(self, name):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(HOOK % {"venue": self.venue.url(""), "calls": self.calls})
        os.chmod(path, 0o755)
        return path

    def config(self):
        cfg = super().config()
        secret = os.path.join(self.dir, "webhook.secret")
        with open(secret, "wb") as f:
            f.write(SECRET)
        os.chmod(secret, 0o600)
        cfg["metrics"] = {"listen": "127.0.0.1:%d" % self.port}
        cfg["inbound_webhook"] = {"secret_file": secret, "window": "300s"}
        cfg["scenarios"]["security_breach"] = {
            "rto": "2m", "lockdown_commands": [self.hook("firewall"), self.hook("revoke-api-keys")],
            "rotate_commands": [self.hook("rotate-db-password")], "hook_timeout": "10s",
            "validation_queries": ["SELECT count(*) FROM orders", "SELECT count(*) FROM fills"]}
        return cfg

    def hook_calls(self):
        try:
            with open(self.calls) as f:
                return [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def post(self, body, ts=None, nonce="n-1", secret=SECRET, headers=None):
        ts = str(int(time.time()) if ts is None else ts)
        sig = hmac.new(secret, ("%s.%s." % (ts, nonce)).encode() + body, hashlib.sha256).hexdigest()
        h = {"X-Drsup-Timestamp": ts, "X-Drsup-Nonce": nonce, "X-Drsup-Signature": "sha256=" + sig,
             "Content-Type": "application/json"}
        h.update(headers or {})
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request("POST", "/security-breach", body=body, headers=h)
        r = c.getresponse()
        out = (r.status, r.read().decode())
        c.close()
        return out

    def breach_runs(self):
        return [r for r in self.daemon.ctl_json("runs")["runs"] if r.get("scenario") == "security_breach"]

    def wait_status(self, rid, statuses, timeout=90):
        return wait_until(lambda: (lambda r: r if r["status"] in statuses else None)(self.daemon.ctl_json("run", rid)),
                          timeout=timeout, what="run %s in %s" % (rid, statuses))


def test_operator_breach_then_signed_webhook(pg, tmp_path):
    env = BreachEnv(tmp_path, pg)
    try:
        # The daemon is killed right after the backup key's rotation is journaled, and started again.
        env.start(daemon_env={"DRSUP_CRASH_AFTER_EVENT": "commit:rotate_backup_key"})
        d = env.daemon
        # Two verified backups, T between them (the catalog's times are whole seconds).
        b1 = d.ctl_json("backup", "now", "--wait", timeout=120)
        assert b1["manifest"]["verification"]["container"] == "ok"
        t0 = time.time()
        wait_until(lambda: time.time() > t0 + 1.1, timeout=3, what="a second after the first backup")
        since_ms = int(time.time() * 1000)
        wait_until(lambda: time.time() * 1000 > since_ms + 1100, timeout=3, what="a second after T")
        b2 = d.ctl_json("backup", "now", "--wait", timeout=120)
        assert b2["name"] != b1["name"]
        wait_until(lambda: env.exchange_positions(), timeout=10, what="open positions")

        plan = {p["step"]: p["action"] for p in
                d.ctl_json("execute", "--scenario", "security_breach", "--since", str(since_ms), "--dry-run")["plan"]}
        assert "firewall" in plan["lockdown"] and "revoke-api-keys" in plan["lockdown"], plan
        assert b1["name"] in plan["select_backup"], plan
        assert env.hook_calls() == [] and env.venue.status()["mode"] == "live"

        started = d.ctl_json("execute", "--scenario", "security_breach", "--since", str(since_ms),
                             "--reason", "ids alert 4711")
        rid = started["run"]
        wait_until(lambda: d.proc.poll() is not None, timeout=60, what="the crash after rotate_backup_key")
        assert d.proc.returncode == -9, d.log()[-3000:]
        d.kill9()
        d.start()
        # Automatic mode, but resuming after a breach needs a person: the run waits, trading halted.
        run = env.wait_status(rid, ("waiting_approval", "failed", "aborted"))
        assert run["status"] == "waiting_approval", d.log()[-6000:]
        assert [s["step"] for s in run["steps"]] == [
            "emergency_close", "halt_trading", "lockdown", "rotate_credentials", "rotate_backup_key",
            "preserve_evidence", "collect_evidence", "plan_restore", "select_backup", "restore_database", "validate_restore", "switch_database",
            "reconcile"], run["steps"]
        assert env.venue.status()["mode"] == "halted"
        calls = env.hook_calls()
        assert [(c["hook"], c["step"]) for c in calls] == [
            ("firewall", "lockdown"), ("revoke-api-keys", "lockdown"), ("rotate-db-password", "rotate")], calls
        # Closed and halted, confirmed, before the first lockdown hook ran.
        assert all(c["mode"] == "halted" and c["open_positions"] == 0 for c in calls), calls
        assert all(c["run"] == rid and c["since"] == str(since_ms) for c in calls), calls
        # The backup from before T, never the newer one.
        ctx = d.ctl_json("run", rid)["context"]
        assert ctx["backup"]["name"] == b1["name"], ctx["backup"]
        assert [c["command"].rsplit("/", 1)[1] for c in ctx["lockdown"]] == ["firewall", "revoke-api-keys"]
        assert all(c["ok"] for c in ctx["lockdown"] + ctx["rotate"])
        dbs = pg.psql("SELECT datname FROM pg_database WHERE datname LIKE 'trading%' ORDER BY 1").split()
        assert "trading" in dbs and any("_breach_" in x for x in dbs), dbs
        # The evidence: the database kept, the audit trail and the hooks' outcomes (with their output)
        # in the run's directory.
        ev = ctx["evidence"]
        assert ev["dir"] == os.path.join(d.state_dir, "runs", rid + ".evidence") and ev["database"] in dbs, ev
        assert {"audit.log", "audit.head", "hooks.json"} <= set(ev["files"]), ev
        with open(os.path.join(ev["dir"], "hooks.json")) as f:
            hooks = json.load(f)
        assert [h["stdout"] for h in hooks["lockdown"]] == ["done\n", "done\n"], hooks
        with open(os.path.join(ev["dir"], "audit.log")) as f:
            assert "security_breach" in f.read()

        # The daemon's own backup key was rotated before the restore, and the old backup still
        # restored: it is read with the key of its key id.
        old_kid = b1["manifest"]["key_id"]
        assert ctx["backup_key"]["previous_key_id"] == old_kid and ctx["backup_key"]["key_id"] != old_kid, ctx
        ring = os.path.join(d.state_dir, "backup-keys")
        assert oct(os.stat(os.path.join(ring, ctx["backup_key"]["key_id"] + ".key")).st_mode & 0o777) == "0o600"
        assert sorted(os.listdir(ring)) == sorted(["current", ctx["backup_key"]["key_id"] + ".key"])  # rotated once

        assert d.ctl("approve", rid).returncode == 0
        run = env.wait_status(rid, ("succeeded", "failed", "aborted"))
        assert run["status"] == "succeeded", d.log()[-6000:]
        assert [s["step"] for s in run["steps"]][-2:] == ["resume_shadow", "resume_live"]
        wait_until(lambda: env.venue.status()["mode"] == "live", timeout=10, what="trading live")
        rep = env.run_report(rid)
        sb = rep["security_breach"]
        assert sb["since_ms"] == since_ms and sb["backup"]["name"] == b1["name"], sb
        assert sb["emergency_close"]["closed"] is True and sb["databases"]["evidence"].startswith("trading_breach_")
        assert rep["reconcile"]["ready_to_trade"] is True

        # After the rotation a new backup carries the new key id; the catalog lists both, and both
        # verify and test-restore.
        b3 = d.ctl_json("backup", "now", "--wait", timeout=120)
        assert b3["manifest"]["key_id"] == ctx["backup_key"]["key_id"], b3["manifest"]
        kids = {b["name"]: b["key_id"] for b in d.ctl_json("backups")["backups"]}
        assert kids[b1["name"]] == old_kid and kids[b3["name"]] == ctx["backup_key"]["key_id"], kids
        for b in (b1, b3):
            v = d.ctl_json("verify", b["name"], "--restore", timeout=120)
            assert v["restore_test"]["status"] == "ok" and v["name"] == b["name"], v

        # The signed webhook: forged, stale and malformed requests start nothing.
        body = json.dumps({"reason": "exchange reports API key use from an unknown IP"}).encode()
        code, text = env.post(body, secret=b"not-the-shared-secret-at-all", nonce="forged")
        assert code == 401 and "signature does not match" in text, (code, text)
        code, text = env.post(body, ts=int(time.time()) - 301, nonce="stale")
        assert code == 401 and "outside the 300 s window" in text, (code, text)
        code, text = env.post(body, nonce="bad nonce")
        assert code == 400, (code, text)
        assert [r["run"] for r in env.breach_runs()] == [rid]
        assert "refused a security webhook request on '/security-breach' (HTTP 401)" in d.log()
        # A good one starts a run; the same request again is a replay.
        ts = int(time.time())
        code, text = env.post(body, ts=ts, nonce="n-good")
        assert code == 202 and "accepted: security_breach run" in text, (code, text)
        wid = text.split()[-1]
        code, text = env.post(body, ts=ts, nonce="n-good")
        assert code == 401 and "replay" in text, (code, text)
        wrun = d.ctl_json("run", wid)
        assert wrun["scenario"] == "security_breach" and "signed webhook" in wrun["reason"], wrun
        wait_until(lambda: env.venue.status()["mode"] == "halted", timeout=15, what="halted by the webhook's run")
        assert d.ctl("abort", wid).returncode == 0
        env.wait_status(wid, ("failed", "aborted"))
        env.stop()
    finally:
        env.cleanup()


def test_tamper_signals_start_the_breach_run(pg, tmp_path):
    """detector.tamper: the control socket's mode changed, then a backup failing verification, each
    start a security_breach run (paged as detector.security_breach); no lockdown hooks here, the
    runs are aborted once trading is halted."""
    env = BreachEnv(tmp_path, pg)
    env.extra = {"detector": {"tamper": True}}
    try:
        env.start()
        d = env.daemon
        b1 = d.ctl_json("backup", "now", "--wait", timeout=120)
        assert env.breach_runs() == []
        os.chmod(d.socket, 0o666)
        run = wait_until(env.breach_runs, timeout=15, what="a security_breach run after the socket's chmod")[0]
        full = d.ctl_json("run", run["run"])
        assert "tamper signal control_socket" in full["reason"] and "mode 0666" in full["reason"], full["reason"]
        wait_until(lambda: env.venue.status()["mode"] == "halted", timeout=15, what="halted")
        assert d.ctl("abort", run["run"]).returncode == 0
        env.wait_status(run["run"], ("failed", "aborted"))
        os.chmod(d.socket, 0o660)

        path = os.path.join(env.config()["backup"]["directory"], b1["name"])
        with open(path, "r+b") as f:
            f.seek(os.path.getsize(path) // 2)
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0x01]))
        assert d.ctl("verify", b1["name"], timeout=60).returncode == 1
        runs = wait_until(lambda: [r for r in env.breach_runs() if r["run"] != run["run"]], timeout=15,
                          what="a second run after the failed verification")
        full = d.ctl_json("run", runs[0]["run"])
        assert "tamper signal backup" in full["reason"], full["reason"]
        assert "tamper signal backup" in d.log() and "starting the security_breach recovery" in d.log()
        assert d.ctl("abort", runs[0]["run"]).returncode == 0
        env.wait_status(runs[0]["run"], ("failed", "aborted"))
        env.stop()
    finally:
        env.cleanup()


def test_wal_and_config_tamper_signals_start_the_breach_run(pg, tmp_path):
    """detector.tamper with the WAL archive: the configuration file changed and not reloaded within
    tamper_config_grace (1 s here), then the archive's partial segment failing verification when the
    daemon reads it back at start (a byte flipped while it was stopped), each start a security_breach
    run naming its signal; the runs are aborted once trading is halted."""
    from test_wal import wait_streaming

    env = BreachEnv(tmp_path, pg)
    env.extra = {"detector": {"tamper": True, "tamper_config_grace": "1s"},
                 "wal": {"conninfo": pg.conninfo("postgres"), "flush_interval": "200ms", "status_interval": "1s"}}
    try:
        env.start()
        d = env.daemon
        wait_streaming(d)
        assert env.breach_runs() == []
        with open(d.config_path, "a") as f:
            f.write("# edited behind the daemon's back\n")
        run = wait_until(env.breach_runs, timeout=20, what="a security_breach run after the config edit")[0]
        full = d.ctl_json("run", run["run"])
        assert "tamper signal config" in full["reason"] and "not reloaded within 1 s" in full["reason"], full["reason"]
        wait_until(lambda: env.venue.status()["mode"] == "halted", timeout=15, what="halted")
        assert d.ctl("abort", run["run"]).returncode == 0
        env.wait_status(run["run"], ("failed", "aborted"))
        assert d.ctl("reload").returncode == 0  # the edit accepted: no second config signal

        env.pg.psql("CREATE TABLE IF NOT EXISTS tw (v text); INSERT INTO tw SELECT repeat('w', 100) "
                    "FROM generate_series(1, 100)", db=env.db)
        wait_until(lambda: d.ctl_json("wal-status")["partial"]["sealed"] > 0, timeout=20, what="a sealed partial")
        d.stop()
        wdir = os.path.join(d.config["backup"]["directory"], "wal")
        [part] = [os.path.join(wdir, n) for n in os.listdir(wdir) if n.endswith(".partial.drwal")]
        with open(part, "r+b") as f:
            f.seek(os.path.getsize(part) - 40)  # inside the last piece's container
            byte = f.read(1)
            f.seek(-1, 1)
            f.write(bytes([byte[0] ^ 0x01]))
        d.start()
        runs = wait_until(lambda: [r for r in env.breach_runs() if r["run"] != run["run"]], timeout=30,
                          what="a run after the partial segment failed verification")
        full = d.ctl_json("run", runs[0]["run"])
        assert "tamper signal wal" in full["reason"] and "failed verification" in full["reason"], full["reason"]
        assert "detector.security_breach" in d.log()
        assert d.ctl("abort", runs[0]["run"]).returncode == 0
        env.wait_status(runs[0]["run"], ("failed", "aborted"))
        env.stop()
    finally:
        env.cleanup()
