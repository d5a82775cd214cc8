"""
Crash safety of the primary_failure scenario (issue 14): one run, started by drctl execute while the
old primary (pg1) still runs and the paper platform trades on it, in which the daemon SIGKILLs itself
right after journal record N (DRSUP_CRASH_AFTER_RECORD=N) for N = 1, 2, 3, ... in turn: after each
kill the daemon is restarted with the next record number, until the run completes without a kill.
A boundary the resumed run writes again first (the intent of the step it runs again) is passed by
one more record the next time, so every restart makes progress: about 60 kills, ~30 s, plain and
under SANITIZE alike (every boundary in both).

The fence hook really fences: it stops pg1 (pg_ctl stop -m immediate; a second call finds it
stopped and exits 0, the hook contract's idempotence). Checked at every kill, and throughout by a
sampler thread:
- never two nodes answering pg_is_in_recovery() = false and accepting a write (txid_current());
- pg2 is never promoted before the fence's commit is durable;
- the platform is never live before the reconcile's commit record (the journal against the
  platform's request log, where every answer carries the mode);
and at the end: the run ends succeeded, exactly one promotion (pg2 on timeline 1 + 1; every record
of the promotion, one per confirmation after a kill, says 1 to 2), the platform repointed and live
on pg2 with every fill the exchange made (the reconcile replayed what replication lost).
"""
import json
import os
import struct
import threading
import time

from drsup import wait_until
from test_failover import FailoverEnv, start_env, hook, in_recovery
from test_replication import standby  # noqa: F401 (fixture: a streaming standby of pg named pg2)

PG_BIN = "/usr/lib/postgresql/15/bin"


def journal_payloads(path):
    out, off = [], 0
    try:
        data = open(path, "rb").read()
    except FileNotFoundError:
        return out
    while off + 20 <= len(data):
        magic, length = struct.unpack_from("<II", data, off)
        if magic != 0x314A5244 or off + 20 + length > len(data):
            break
        out.append(json.loads(data[off + 20:off + 20 + length]))
        off += 20 + length
    return out


def signature(p):
    """What a record is, without its times: a step's intent or commit, a context key, the start."""
    return (p.get("ev"), p.get("step"), p.get("key"), p.get("row"), p.get("outcome"))


def commits(payloads, step):
    return [p for p in payloads if p.get("ev") == "commit" and p.get("step") == step]


def writable_primary(cluster):
    """Does the node answer as a primary and accept a write (an xid is assigned)?"""
    if not cluster.is_running():
        return False
    p = cluster._run([cluster._bin("psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p",
                      str(cluster.port), "-U", "postgres", "-d", "postgres", "-c",
                      "SELECT pg_is_in_recovery(), txid_current() > 0"], check=False, timeout=10)
    return p.returncode == 0 and p.stdout.strip() == "f|t"


class Sampler(threading.Thread):
    """Samples both nodes until stopped: the times at which both accepted writes, and when pg2 first did."""

    def __init__(self, pg, pg2):
        super().__init__(daemon=True)
        self.nodes = (pg, pg2)
        self.halt = threading.Event()
        self.both = []
        self.samples = 0

    def run(self):
        while not self.halt.is_set():
            w = [writable_primary(c) for c in self.nodes]
            self.samples += 1
            if all(w):
                self.both.append(time.time())
            self.halt.wait(0.05)

    def stop(self):
        self.halt.set()
        self.join(timeout=30)


def fencing_env(tmp_path, pg, pg2, rx):
    env = FailoverEnv(tmp_path, pg, pg2, rx)
    pgctl = " ".join(pg._cmd([os.path.join(PG_BIN, "pg_ctl"), "-D", pg.datadir]))
    env.fence = hook(tmp_path, "fence", "#!/bin/sh\necho \"fence $DRSUP_OLD_PRIMARY $DRSUP_RUN\" >> %s\n"
                     "%s status >/dev/null 2>&1 || exit 0\n"
                     "exec %s -w -t 30 -m immediate stop >/dev/null\n" % (env.calls, pgctl, pgctl))
    return env


def check_journal_order(payloads, venue_requests, where):
    """The fence committed before the promotion's intent; the platform answered in live mode (after
    the run's halt) only after the reconcile's commit record was written."""
    steps = [(p.get("ev"), p.get("step")) for p in payloads]
    if ("intent", "promote_standby") in steps:
        assert ("commit", "fence_old_primary") in steps[:steps.index(("intent", "promote_standby"))], (where, steps)
    halt = next((r for r in venue_requests if r["path"] == "/halt"), None)
    live = [r for r in venue_requests if halt and r.get("mode") == "live" and r["in"] > halt["out"]]
    if not live:
        return
    done = commits(payloads, "reconcile")
    assert done, (where, "live before the reconcile committed", live[0], steps)
    assert live[0]["t_in"] * 1000 > done[0]["ts"], (where, live[0], done[0])
    assert steps.index(("commit", "reconcile")) < steps.index(("intent", "resume_live")), (where, steps)


def test_daemon_killed_after_every_journal_record_of_a_failover(tmp_path, pg, standby, rx):  # noqa: F811
    env = start_env(fencing_env(tmp_path, pg, standby, rx))
    d = env.daemon
    venue_env = {"VENUE_URL": env.venue.url("")}
    sampler = Sampler(pg, standby)
    sampler.start()
    try:
        n0 = len(env.exchange_fill_ids())
        wait_until(lambda: len(env.exchange_fill_ids()) >= n0 + 5, timeout=30, what="trades on pg1")
        d.stop()
        n = 1
        d.start(env=dict(venue_env, DRSUP_CRASH_AFTER_RECORD=str(n)))
        rid = d.ctl_json("execute", "--scenario", "primary_failure")["run"]
        jpath = os.path.join(d.state_dir, "runs", rid + ".journal")
        kills, paused = 0, False
        seen, skip = set(), 0
        while True:
            def settled():
                if d.proc.poll() is not None:
                    return "killed"
                r = d.ctl_json("run", rid)
                return r["status"] if r["status"] in ("succeeded", "failed", "aborted", "held",
                                                       "waiting_approval") else None
            how = wait_until(settled, timeout=90, what="the crash at record %d or the run's end" % n)
            if not paused and env.venue.status()["mode"] == "halted":
                env.venue.post("/test/pause")  # no orders of its own once trading resumes: a still reconcile
                paused = True
            if how != "killed":
                break
            assert d.proc.returncode == -9, d.log()[-3000:]
            d.kill9()
            kills += 1
            payloads = journal_payloads(jpath)
            assert len(payloads) == n, (n, len(payloads), d.log()[-3000:])
            reqs = env.venue.get("/test/requests")[1]["requests"]
            check_journal_order(payloads, reqs, "record %d" % n)
            assert not (writable_primary(pg) and writable_primary(standby)), "two primaries at record %d" % n
            if any(r["path"] == "/halt" for r in reqs) and not commits(payloads, "reconcile"):
                assert env.venue.status()["mode"] != "live", "live before the reconcile (record %d)" % n
            if not commits(payloads, "fence_old_primary"):
                assert in_recovery(standby), "promoted before the fence committed (record %d)" % n
            # A record the resumed run writes again first (the intent of the step it runs again) was
            # a boundary already: the next kill goes one record further, so every restart makes progress.
            sig = signature(payloads[-1])
            skip = skip + 1 if sig in seen else 0
            seen.add(sig)
            last = n
            n = len(payloads) + 1 + skip
            d.start(env=dict(venue_env, DRSUP_CRASH_AFTER_RECORD=str(n)), wait_ready=False)
        assert how == "succeeded", (how, d.ctl_json("run", rid), d.log()[-6000:])
        payloads = journal_payloads(jpath)
        # every kind of record the run wrote before its last kill was a kill's boundary
        missed = {signature(p) for p in payloads[:last]} - seen
        assert kills >= 20 and not missed, (kills, missed)
        sampler.stop()
        assert sampler.samples > 20 and sampler.both == [], sampler.both
        reqs = env.venue.get("/test/requests")[1]["requests"]
        check_journal_order(payloads, reqs, "the end")
        assert not pg.is_running()  # fenced by the hook, and never started again
        # exactly one promotion: pg2 on the next timeline, promoted once, repointed (the hook may run twice)
        assert not in_recovery(standby)
        tl = standby.psql("SELECT ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int")
        assert tl == "2", tl
        # pg_promote may be asked again (its intent came before a kill), it never took twice: every record
        # of the promotion (one per confirmation after a restart) says timeline 1 to 2
        promos = [p["value"] for p in payloads if p.get("ev") == "scn.context" and p.get("key") == "promotion"]
        assert promos and all((p["node"], p["previous_timeline"], p["timeline"]) == ("pg2", 1, 2) for p in promos), promos
        calls = env.hook_calls()
        assert set(calls) == {"fence pg1 %s" % rid, "repoint pg2 2"}, calls
        run = d.ctl_json("run", rid)
        rep = env.run_report(rid)
        assert rep["failover"]["promoted"] == "pg2" and rep["failover"]["timeline"] == 2, rep["failover"]
        assert rep["failover"]["previous_timeline"] == 1, rep["failover"]
        assert env.repl()["primary"] == "pg2"
        # trading live on pg2 with every fill the exchange made (the reconcile replayed what was missing)
        assert env.venue.status()["mode"] == "live", run
        code, body = env.venue.post("/test/trade", {"count": 3})
        assert code == 200 and len(body["executed"]) == 3, body
        wait_until(lambda: env.venue.status()["db_pending"] == 0, timeout=20, what="venue caught up")
        assert env.exchange_fill_ids() == [l for l in standby.psql(
            "SELECT fill_id FROM fills ORDER BY executed_at, fill_id", db="trading").splitlines() if l]
        d.stop()
    finally:
        sampler.stop()
        env.cleanup()


def test_a_detected_failover_killed_before_the_fence_recorded_anything_promotes_the_detections_choice(
        tmp_path, pg, standby, rx):  # noqa: F811
    """The detector started the run (pg1 stopped), and the daemon died right after the fence's
    intent: the restarted daemon never saw pg2 replicate from pg1 (the monitor's judgment is the
    process's), so it promotes the candidate the detection recorded with the run's start, which
    still answers in recovery; without it the run would fail closed, trading halted."""
    from test_failover import live_then_pause
    env = start_env(fencing_env(tmp_path, pg, standby, rx), daemon_env={"DRSUP_CRASH_AFTER_EVENT": "intent:fence_old_primary"})
    d = env.daemon
    n0 = len(env.exchange_fill_ids())
    wait_until(lambda: len(env.exchange_fill_ids()) >= n0 + 5, timeout=30, what="trades on pg1")
    pg.stop("immediate")
    wait_until(lambda: d.proc.poll() is not None, timeout=60, what="the crash after the fence's intent")
    assert d.proc.returncode == -9, d.log()[-3000:]
    d.kill9()
    rid = [f[:-len(".journal")] for f in os.listdir(os.path.join(d.state_dir, "runs")) if f.endswith(".journal")][0]
    payloads = journal_payloads(os.path.join(d.state_dir, "runs", rid + ".journal"))
    det = [p for p in payloads if p.get("key") == "detection"][0]
    assert det["value"]["params"]["candidate"] == "pg2", det
    assert not [p for p in payloads if p.get("key") == "old_primary"], payloads  # nothing recorded yet
    d.start(env={"VENUE_URL": env.venue.url("")})
    live_then_pause(env)
    run = env.wait_run(rid, ("succeeded", "failed", "aborted"))
    assert run["status"] == "succeeded", d.log()[-6000:]
    assert not in_recovery(standby) and env.repl()["primary"] == "pg2"
    old = [p for p in journal_payloads(os.path.join(d.state_dir, "runs", rid + ".journal"))
           if p.get("key") == "old_primary"][-1]
    assert old["value"]["candidate"]["from_detection"] is True, old
    assert "the candidate recorded before the fence" in d.log()
    d.stop()
