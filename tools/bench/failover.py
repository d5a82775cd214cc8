#!/usr/bin/python3
"""
bench/failover.py: the second node's benchmark of issue 14 (`make bench`; not in `make check`).

Owns three parts, each on fresh PostgreSQL 15 clusters on loopback ports made by the test
harness (tests/integration/pgharness.py), in one run:

  ours      DRSUP_BENCH_FAILOVER_TRIALS trials (default 10). A primary and a streaming standby
            (pg_basebackup -R), the paper trading platform (tools/paper_venue.py) trading on the
            primary every 200 ms, drsupervisord watching both nodes with the replication and
            failover sections at their defaults (only the nodes and the two hooks configured: a
            fence hook that records its call and a repoint hook that points the platform at the
            new primary through its /repoint endpoint). The primary's postmaster gets SIGKILL
            (the node is gone; the daemon runs elsewhere). Measured from the kill, by the
            harness: `promoted_s` (the standby answers pg_is_in_recovery() = false and takes a
            write), `resumed_s` (the platform's mode is live again, i.e. trading resumed on the
            new primary: the RTO), and from the run's incident report the parts (detect_ms and
            each step's ms). After the run: `lost_committed_trades`, the exchange's fills missing
            from the new primary once the reconcile replayed them (target 0), and how many the
            promotion had lost before the replay (`replayed_fills`, the reconcile's replayed
            fills).
  patroni   Patroni 3.0 with a one-member etcd 3.4 (Debian's packages; tools/setup-deps bench
            installs them), two nodes bootstrapped by Patroni itself on the same machine, at its
            defaults (ttl 30, loop_wait 10, retry_timeout 10) and tuned (ttl 10, loop_wait 2,
            retry_timeout 4), DRSUP_BENCH_PATRONI_TRIALS trials each (default 3: a default trial
            alone waits out a 30 s lease). Patroni restarts a postmaster that dies under it, so its
            node's death is its agent and its postmaster killed at once (SIGKILL to both);
            measured: kill to the replica answering pg_is_in_recovery() = false and taking a
            write (`promoted_s`). Patroni does not halt or resume trading: its figure is compared
            with our `resumed_s`, which includes halting, fencing, repointing and reconciling.
  blips     DRSUP_BENCH_BLIP_ROUNDS rounds (default 2) of three blips on one pair under our
            daemon at its defaults: every process of the primary SIGSTOPped for 1 s; the
            primary's port dropped for 1 s (an nftables rule on loopback; skipped, and said so,
            when nft is missing or not permitted); the primary's processes at nice 19 against
            2 busy loops per core for 5 s. After each blip the harness waits out the grace plus
            two replication rounds (10 s) and counts promotions (`false_failovers`, target 0) and
            halts (allowed: one side is enough to halt).

Ratios: failover_vs_patroni_default = median our resumed_s / median Patroni default promoted_s
(target <= 0.25); failover_vs_patroni_tuned = the same against tuned (target <= 0.75); the
absolute median resumed_s (target <= 5 s). Writes build/bench/failover.json and prints a table.
Environment: DRSUP_BUILD, DRSUP_BENCH_FAILOVER_TRIALS, DRSUP_BENCH_PATRONI_TRIALS,
DRSUP_BENCH_BLIP_ROUNDS, DRSUP_BENCH_FAILOVER_PARTS ("ours,patroni,blips").
Needs python3-psycopg2 (the pollers).
"""
import json
import os
import pwd
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (paths, the drsup harness on sys.path)

from alert_receiver import Receiver  # noqa: E402
from drsup import Daemon, wait_until  # noqa: E402
from papervenue import PaperVenue  # noqa: E402
from pgharness import PG_BIN, PG_USER, PgCluster, free_port  # noqa: E402
from trading_env import TradingEnv  # noqa: E402

TRIALS = int(os.environ.get("DRSUP_BENCH_FAILOVER_TRIALS", "10"))
PATRONI_TRIALS = int(os.environ.get("DRSUP_BENCH_PATRONI_TRIALS", "3"))
BLIP_ROUNDS = int(os.environ.get("DRSUP_BENCH_BLIP_ROUNDS", "2"))
PARTS = os.environ.get("DRSUP_BENCH_FAILOVER_PARTS", "ours,patroni,blips").split(",")
PY = "/usr/bin/python3"
POLL = 0.02


def hook(path, body):
    with open(path, "w") as f:
        f.write(body)
    os.chmod(path, 0o755)
    return path


class BenchEnv(TradingEnv):
    """The trading world of tests/integration/test_failover.py, with replication and failover at
    their defaults: only the nodes and the hooks are configured."""

    def __init__(self, workdir, pg, standby, rx):
        super().__init__(workdir, pg, trade_interval="200ms")
        self.standby = standby
        self.rx = rx
        self.calls = os.path.join(self.dir, "hook-calls")
        self.fence = hook(os.path.join(self.dir, "fence"),
                          "#!/bin/sh\necho \"fence $DRSUP_OLD_PRIMARY\" >> %s\n" % self.calls)
        self.repoint = hook(os.path.join(self.dir, "repoint"),
                            "#!%s\nimport json, os, urllib.request\n"
                            "dsn = os.environ['DRSUP_NEW_PRIMARY_CONNINFO'] + ' dbname=trading'\n"
                            "req = urllib.request.Request(os.environ['VENUE_URL'] + '/repoint', "
                            "data=json.dumps({'dsn': dsn}).encode(), headers={'Content-Type': 'application/json'})\n"
                            "urllib.request.urlopen(req, timeout=5).read()\n" % PY)

    def config(self):
        cfg = super().config()
        for k in ("restart_command", "server_log", "corruption_queries"):
            cfg["detector"].pop(k, None)
        cfg["log_level"] = "notice"
        cfg["alerts"] = {"webhook": {"url": self.rx.url("/hook")}, "group_window": "100ms"}
        cfg["scenarios"] = {"primary_failure": {"rto": "1m", "rpo": "1m"}}
        cfg["replication"] = {"nodes": [{"name": "pg1", "conninfo": self.pg.conninfo(), "role": "primary"},
                                        {"name": "pg2", "conninfo": self.standby.conninfo(), "role": "standby"}]}
        cfg["failover"] = {"fence": [self.fence], "repoint": [self.repoint]}
        return cfg

    def begin(self):
        self.pg.psql("CREATE DATABASE %s" % self.db)
        self.venue = PaperVenue(self.dir, self.pg.conninfo(self.db), interval=self.trade_interval).start()
        wait_until(lambda: self.venue.status()["orders_sent"] > 0, timeout=20, what="the venue trading")
        self.daemon = Daemon(self.dir, self.config())
        self.daemon.start(env={"VENUE_URL": self.venue.url("")})
        wait_until(lambda: {n["name"]: n for n in self.daemon.ctl_json("replication-status")["nodes"]}["pg2"]
                   .get("state") == "ok", timeout=60, what="pg2 streaming")
        return self

    def runs(self, scenario):
        return [r for r in self.daemon.ctl_json("runs")["runs"] if r.get("scenario") == scenario]


def writable(port):
    """True when the server on port is out of recovery and commits a write."""
    try:
        c = psycopg2.connect(host="127.0.0.1", port=port, user=PG_USER, dbname="postgres", connect_timeout=1)
    except psycopg2.Error:
        return False
    try:
        c.autocommit = True
        with c.cursor() as cur:
            cur.execute("SET statement_timeout = '1s'")
            cur.execute("SELECT pg_is_in_recovery()")
            if cur.fetchone()[0]:
                return False
            cur.execute("CREATE TABLE IF NOT EXISTS bench_failover_probe (t timestamptz)")
            cur.execute("INSERT INTO bench_failover_probe VALUES (now())")
            return True
    except psycopg2.Error:
        return False
    finally:
        c.close()


def poll_until(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return time.monotonic()
        time.sleep(POLL)
    raise RuntimeError("timed out after %.0f s waiting for %s" % (timeout, what))


class Watch(threading.Thread):
    """Polls pred from the moment it starts; .at is the monotonic time it first held."""

    def __init__(self, pred):
        super().__init__(daemon=True)
        self.pred = pred
        self.at = None
        self.stop = False

    def run(self):
        while not self.stop and self.at is None:
            try:
                if self.pred():
                    self.at = time.monotonic()
                    return
            except Exception:  # noqa: BLE001 (a poll that fails is a "not yet")
                pass
            time.sleep(POLL)


# ---- ours ---------------------------------------------------------------------------------------

def our_trial(i, rx):
    pg, sb, work, env = PgCluster(), PgCluster(), tempfile.mkdtemp(prefix="drsup-bench-failover-"), None
    os.chmod(work, 0o755)
    try:
        pg.init()
        pg.start()
        sb.init_standby(pg, "pg2")
        sb.start()
        env = BenchEnv(work, pg, sb, rx).begin()
        n0 = len(env.exchange_fill_ids())
        wait_until(lambda: len(env.exchange_fill_ids()) >= n0 + 3, timeout=30, what="trades")
        mode = {"halted": False}

        def live_again():
            m = env.venue.status()["mode"]
            if m == "halted":
                mode["halted"] = True
            return mode["halted"] and m == "live"
        promoted, resumed = Watch(lambda: writable(sb.port)), Watch(live_again)
        t0 = time.monotonic()
        os.kill(pg.postmaster_pid(), signal.SIGKILL)
        promoted.start()
        resumed.start()
        poll_until(lambda: resumed.at is not None, 120, "trading live again")
        promoted.join(30)
        env.venue.post("/test/pause")
        rid = env.runs("primary_failure")[0]["run"]
        run_ = wait_until(lambda: (lambda r: r if r["status"] in ("succeeded", "failed", "aborted") else None)(
            env.daemon.ctl_json("run", rid)), timeout=60, what="the run finished")
        rep = env.run_report(rid)
        wait_until(lambda: env.venue.status()["db_pending"] == 0, timeout=20, what="venue caught up")
        exch = set(env.exchange_fill_ids())
        db = set(l for l in sb.psql("SELECT fill_id FROM fills", db="trading").splitlines() if l)
        replayed = sum(c["detail"].get("replayed", 0) for c in (rep.get("reconcile") or {}).get("checks", [])
                       if c.get("name") == "fills_complete")
        f = rep.get("failover") or {}
        out = {"trial": i, "status": run_["status"],
               "promoted_s": round(promoted.at - t0, 3) if promoted.at else None,
               "resumed_s": round(resumed.at - t0, 3),
               "detect_ms": f.get("detect_ms"), "step_ms": f.get("step_ms"), "rto_ms": rep.get("rto_ms"),
               "lost_committed_trades": len(exch - db), "replayed_fills": replayed}
        run.log("ours %d: promoted %.2f s, trading live %.2f s (detect %s ms), lost %d, replayed %d" % (
            i, out["promoted_s"] or -1, out["resumed_s"], out["detect_ms"], out["lost_committed_trades"], replayed))
        return out
    finally:
        if env:
            env.cleanup()
        sb.cleanup()
        pg.cleanup()
        shutil.rmtree(work, ignore_errors=True)


# ---- Patroni ------------------------------------------------------------------------------------

PATRONI_DEFAULT = {}
PATRONI_TUNED = {"ttl": 10, "loop_wait": 2, "retry_timeout": 4}


def chown_pg(path):
    pw = pwd.getpwnam(PG_USER)
    os.chown(path, pw.pw_uid, pw.pw_gid)


def as_pg(argv):
    return (["runuser", "-u", PG_USER, "--"] + argv) if os.geteuid() == 0 else argv


def http_ok(url):
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except Exception:  # noqa: BLE001
        return False


def patroni_yaml(work, name, etcd_port, rest_port, pg_port, dcs):
    lines = [
        "scope: drsupbench", "name: %s" % name,
        "restapi: {listen: '127.0.0.1:%d', connect_address: '127.0.0.1:%d'}" % (rest_port, rest_port),
        "etcd3: {hosts: '127.0.0.1:%d'}" % etcd_port,
        "bootstrap:",
        "  dcs: {%s}" % ", ".join(["%s: %s" % kv for kv in sorted(dcs.items())] +
                                  ["postgresql: {use_pg_rewind: false, parameters: {max_connections: 50, "
                                   "fsync: 'off', full_page_writes: 'off'}}"]),
        "  initdb: [{encoding: UTF8}, {locale: C.UTF-8}, data-checksums]",
        "  pg_hba: ['local all all trust', 'host replication all 127.0.0.1/32 trust', "
        "'host all all 127.0.0.1/32 trust']",
        "postgresql:",
        "  listen: '127.0.0.1:%d'" % pg_port,
        "  connect_address: '127.0.0.1:%d'" % pg_port,
        "  data_dir: '%s'" % os.path.join(work, name),
        "  bin_dir: '%s'" % PG_BIN,
        "  pgpass: '%s'" % os.path.join(work, name + ".pgpass"),
        "  authentication: {replication: {username: %s}, superuser: {username: %s}}" % (PG_USER, PG_USER),
        "  parameters: {unix_socket_directories: '%s'}" % work,
    ]
    path = os.path.join(work, name + ".yml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def patroni_trial(label, dcs, i):
    work = tempfile.mkdtemp(prefix="drsup-bench-patroni-")
    os.chmod(work, 0o700)
    chown_pg(work)
    procs, logs = [], []
    etcd_port, etcd_peer = free_port(), free_port()
    nodes = [{"name": n, "rest": free_port(), "pg": free_port()} for n in ("n1", "n2")]

    def spawn(argv, logname, pg_user):
        log = open(os.path.join(work, logname), "w")
        logs.append(log)
        p = subprocess.Popen(as_pg(argv) if pg_user else argv, stdout=log, stderr=subprocess.STDOUT,
                             cwd="/", start_new_session=True)
        procs.append(p)
        return p

    def postmaster(n):
        try:
            with open(os.path.join(work, n["name"], "postmaster.pid")) as f:
                return int(f.readline())
        except (OSError, ValueError):
            return None
    try:
        edir = os.path.join(work, "etcd")
        spawn(["etcd", "--name", "e1", "--data-dir", edir,
               "--listen-client-urls", "http://127.0.0.1:%d" % etcd_port,
               "--advertise-client-urls", "http://127.0.0.1:%d" % etcd_port,
               "--listen-peer-urls", "http://127.0.0.1:%d" % etcd_peer,
               "--initial-advertise-peer-urls", "http://127.0.0.1:%d" % etcd_peer,
               "--initial-cluster", "e1=http://127.0.0.1:%d" % etcd_peer], "etcd.log", False)
        poll_until(lambda: http_ok("http://127.0.0.1:%d/health" % etcd_port), 30, "etcd healthy")
        for n in nodes:
            n["yml"] = patroni_yaml(work, n["name"], etcd_port, n["rest"], n["pg"], dcs)
            chown_pg(n["yml"])
        nodes[0]["proc"] = spawn(["patroni", nodes[0]["yml"]], "n1.log", True)
        poll_until(lambda: http_ok("http://127.0.0.1:%d/primary" % nodes[0]["rest"]), 120, "n1 the leader")
        nodes[1]["proc"] = spawn(["patroni", nodes[1]["yml"]], "n2.log", True)
        poll_until(lambda: http_ok("http://127.0.0.1:%d/replica" % nodes[1]["rest"]), 120, "n2 a replica")
        poll_until(lambda: subprocess.run(as_pg([os.path.join(PG_BIN, "psql"), "-X", "-At", "-h", "127.0.0.1", "-p",
                                                 str(nodes[0]["pg"]), "-c", "SELECT count(*) FROM pg_stat_replication "
                                                 "WHERE state = 'streaming'", "postgres"]),
                                          capture_output=True, text=True, cwd="/").stdout.strip() == "1",
                   60, "n2 streaming")
        pm = postmaster(nodes[0])
        promoted = Watch(lambda: writable(nodes[1]["pg"]))
        t0 = time.monotonic()
        os.killpg(nodes[0]["proc"].pid, signal.SIGKILL)
        os.kill(pm, signal.SIGKILL)
        promoted.start()
        poll_until(lambda: promoted.at is not None, 180, "Patroni promoting n2")
        s = round(promoted.at - t0, 3)
        run.log("patroni %s %d: promoted %.2f s" % (label, i, s))
        return {"trial": i, "promoted_s": s}
    finally:
        for p in procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=10)
        for n in nodes:
            pid = postmaster(n)
            if pid:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        for log in logs:
            log.close()
        time.sleep(0.5)  # the orphaned backends of a killed postmaster exit on their own
        shutil.rmtree(work, ignore_errors=True)


# ---- blips --------------------------------------------------------------------------------------

def cluster_pids(pg):
    """The postmaster and every process it started."""
    pm = pg.postmaster_pid()
    pids = [pm]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pm:
                        pids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return pids


def blip_stop(pg):
    pids = cluster_pids(pg)
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    time.sleep(1)
    for p in pids:
        os.kill(p, signal.SIGCONT)


def nft(*args):
    return subprocess.run(["nft"] + list(args), capture_output=True, text=True)


def nft_usable():
    if not shutil.which("nft"):
        return "nft is not installed (Debian's nftables)"
    p = nft("add", "table", "inet", "drsupbench")
    if p.returncode != 0:
        return "nft refused: " + p.stderr.strip()
    nft("delete", "table", "inet", "drsupbench")
    return None


def blip_drop(pg):
    nft("add", "table", "inet", "drsupbench")
    nft("add", "chain", "inet", "drsupbench", "input", "{ type filter hook input priority 0 ; }")
    nft("add", "rule", "inet", "drsupbench", "input", "tcp", "dport", str(pg.port), "drop")
    nft("add", "rule", "inet", "drsupbench", "input", "tcp", "sport", str(pg.port), "drop")
    try:
        time.sleep(1)
    finally:
        nft("delete", "table", "inet", "drsupbench")


def blip_starve(pg):
    for p in cluster_pids(pg):
        os.setpriority(os.PRIO_PROCESS, p, 19)
    hogs = [subprocess.Popen(["sh", "-c", "while :; do :; done"]) for _ in range(2 * (os.cpu_count() or 1))]
    try:
        time.sleep(5)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        for p in cluster_pids(pg):
            os.setpriority(os.PRIO_PROCESS, p, 0)


def blips(rx):
    kinds = [("sigstop_1s", blip_stop), ("port_dropped_1s", blip_drop), ("cpu_starved_5s", blip_starve)]
    skipped = {}
    why = nft_usable()
    if why:
        kinds = [k for k in kinds if k[0] != "port_dropped_1s"]
        skipped["port_dropped_1s"] = why
    pg, sb, work, env = PgCluster(), PgCluster(), tempfile.mkdtemp(prefix="drsup-bench-blips-"), None
    os.chmod(work, 0o755)
    trials = []
    try:
        pg.init()
        pg.start()
        sb.init_standby(pg, "pg2")
        sb.start()
        env = BenchEnv(work, pg, sb, rx).begin()
        for r in range(BLIP_ROUNDS):
            for name, fn in kinds:
                fn(pg)
                time.sleep(10)  # the grace (3 s) and two replication rounds (2 s each), and margin
                st = env.venue.status()
                promoted = sb.psql("SELECT pg_is_in_recovery()") == "f"
                runs = len(env.runs("primary_failure"))
                halted = st["mode"] == "halted"
                trials.append({"round": r, "blip": name, "promoted": promoted, "failover_runs": runs,
                               "halted": halted})
                run.log("blip %s round %d: %s, %s" % (name, r, "PROMOTED" if promoted else "not promoted",
                                                     "halted" if halted else "trading"))
                if promoted:
                    raise RuntimeError("a blip caused a failover: %s" % name)
                if halted:
                    wait_until(lambda: env.daemon.ctl_json("status")["detector"]["phase"] == "healthy",
                               timeout=30, what="the detector healthy again")
                    env.daemon.ctl("resume", "--force", "--reason", "bench: after a blip")
                    wait_until(lambda: env.venue.status()["mode"] == "live", timeout=30, what="live again")
    finally:
        if env:
            env.cleanup()
        sb.cleanup()
        pg.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    return trials, skipped


def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 3) if xs else None


def main():
    os.makedirs(run.OUT_DIR, exist_ok=True)
    out = {"nproc": os.cpu_count(), "parts": PARTS}
    rx = Receiver().start()
    try:
        if "ours" in PARTS:
            ours = [our_trial(i, rx) for i in range(TRIALS)]
            out["ours"] = {"trials": ours,
                           "resumed_s_median": med([t["resumed_s"] for t in ours]),
                           "resumed_s_max": max(t["resumed_s"] for t in ours),
                           "promoted_s_median": med([t["promoted_s"] for t in ours]),
                           "detect_ms_median": med([t["detect_ms"] for t in ours]),
                           "lost_committed_trades": sum(t["lost_committed_trades"] for t in ours),
                           "replayed_fills": sum(t["replayed_fills"] for t in ours),
                           "failed_runs": sum(1 for t in ours if t["status"] != "succeeded")}
            parts = {}
            for t in ours:
                for k, v in (t["step_ms"] or {}).items():
                    parts.setdefault(k, []).append(v)
            out["ours"]["step_ms_median"] = {k: med(v) for k, v in parts.items()}
            out["failover_resumed_s"] = out["ours"]["resumed_s_median"]
            out["lost_committed_trades"] = out["ours"]["lost_committed_trades"]
        if "patroni" in PARTS:
            if not shutil.which("patroni") or not shutil.which("etcd"):
                sys.exit("bench: patroni and etcd are missing; run tools/setup-deps bench")
            for label, dcs in (("default", PATRONI_DEFAULT), ("tuned", PATRONI_TUNED)):
                ts = [patroni_trial(label, dcs, i) for i in range(PATRONI_TRIALS)]
                out["patroni_" + label] = {"dcs": dcs or "defaults (ttl 30, loop_wait 10, retry_timeout 10)",
                                           "trials": ts, "promoted_s_median": med([t["promoted_s"] for t in ts])}
            if "ours" in out:
                out["failover_vs_patroni_default"] = run.ratio(out["ours"]["resumed_s_median"],
                                                               out["patroni_default"]["promoted_s_median"])
                out["failover_vs_patroni_tuned"] = run.ratio(out["ours"]["resumed_s_median"],
                                                             out["patroni_tuned"]["promoted_s_median"])
        if "blips" in PARTS:
            trials, skipped = blips(rx)
            out["blips"] = {"trials": trials, "skipped": skipped}
            out["false_failovers"] = sum(1 for t in trials if t["promoted"])
    finally:
        rx.stop()
    out["targets"] = {"failover_vs_patroni_default": 0.25, "failover_vs_patroni_tuned": 0.75,
                      "failover_resumed_s": 5.0, "lost_committed_trades": 0, "false_failovers": 0}
    out["met"] = {k: (out[k] <= v) for k, v in out["targets"].items() if out.get(k) is not None}
    with open(os.path.join(run.OUT_DIR, "failover.json"), "w") as f:
        json.dump(out, f, indent=2)
    print()
    if "ours" in out:
        o = out["ours"]
        print("ours: trading live again after %.2f s (median of %d; max %.2f), promoted after %s s, detect %s ms; "
              "lost committed trades %d (replayed %d); steps %s" % (
                  o["resumed_s_median"], TRIALS, o["resumed_s_max"], o["promoted_s_median"], o["detect_ms_median"],
                  o["lost_committed_trades"], o["replayed_fills"], o["step_ms_median"]))
    for label in ("default", "tuned"):
        if "patroni_" + label in out:
            print("patroni %s: promoted after %.2f s (median of %d); ratio %s" % (
                label, out["patroni_" + label]["promoted_s_median"], PATRONI_TRIALS,
                out.get("failover_vs_patroni_" + label)))
    if "blips" in out:
        print("blips: %d, false failovers %d, halts %d; skipped %s" % (
            len(out["blips"]["trials"]), out["false_failovers"],
            sum(1 for t in out["blips"]["trials"] if t["halted"]), out["blips"]["skipped"] or "none"))
    print("met: %s" % out["met"])


if __name__ == "__main__":
    main()
