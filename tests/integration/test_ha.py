"""
Supervisor high availability on etcd (docs/ha.md): a real three-member etcd cluster on loopback,
two daemons with the same configuration but their own node names and sockets, sharing state_dir.
One leads, the other follows; kill -9 of the leader hands over within TTL + one poll; the venue
double records the fencing token of every action (never a follower's, tokens only increase); a
planned step-down hands over; a leader cut off from etcd stops acting within the TTL; a follower
does not page, a command venue action gets the token in DRSUP_FENCING_TOKEN, and a new leader
finding halted=true in etcd stays halted whatever the shared halt.json says.
"""
import base64
import json
import os
import socket
import threading
import time
import urllib.request

import pytest

from drsup import Daemon, wait_until
from etcdcluster import EtcdCluster
from fakevenue import FakeVenue
from pairharness import webhook_alerts
from pgharness import free_port
from test_metrics import scrape, value

TTL = 3
POLL = 0.3


@pytest.fixture(scope="module")
def etcd():
    c = EtcdCluster().start()
    yield c
    c.close()


@pytest.fixture
def venue():
    v = FakeVenue()
    yield v
    v.close()


def pair(tmp_path, daemons, etcd, venue, prefix, halt_after=1000):
    shared = os.path.join(str(tmp_path), "shared-state")
    out = []
    for node in ("n1", "n2"):
        d = Daemon(tmp_path, {
            "state_dir": shared,
            "venue": venue.config(),
            "detector": {"halt_after": halt_after},
            "ha": {"endpoints": etcd.endpoints, "prefix": prefix, "node": node, "ttl": f"{TTL}s",
                   "poll_interval": f"{int(POLL * 1000)}ms", "step_down_hold": "60s"},
        }, name=node)
        daemons.append(d)
        out.append(d)
    return out


def etcd_get(etcd, key):
    req = urllib.request.Request(etcd.endpoints[0] + "/v3/kv/range", method="POST",
                                 data=json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode())
    with urllib.request.urlopen(req, timeout=2) as r:
        kvs = json.load(r).get("kvs")
    return json.loads(base64.b64decode(kvs[0]["value"])) if kvs else None


def etcd_delete(etcd, key):
    req = urllib.request.Request(etcd.endpoints[1] + "/v3/kv/deleterange", method="POST",
                                 data=json.dumps({"key": base64.b64encode(key.encode()).decode()}).encode())
    with urllib.request.urlopen(req, timeout=2) as r:
        return json.load(r).get("deleted")


def leader(d):
    return d.ctl_json("leader")


def acting_one(ds):
    acting = [d for d in ds if leader(d)["acting"]]
    return acting[0] if len(acting) == 1 else None


def test_one_leads_the_other_follows_and_refuses(tmp_path, daemons, etcd, venue):
    a, b = pair(tmp_path, daemons, etcd, venue, "/t1/")
    a.start()
    wait_until(lambda: leader(a)["role"] == "leader", timeout=10, what="n1 leads")
    b.start()
    wait_until(lambda: leader(b).get("leader") == "n1", timeout=10, what="n2 sees n1")
    la, lb = leader(a), leader(b)
    assert la["acting"] and not lb["acting"] and lb["role"] == "follower"
    assert la["revision"] == lb["revision"] == la["token"] > 0
    # a follower serves read-only commands and refuses mutating ones
    assert b.ctl("status").returncode == 0
    p = b.ctl("halt", "--reason", "from the follower")
    assert p.returncode == 1 and "not the leader (leader: n1)" in p.stderr, p.stderr
    assert "ha       node n2: follower" in b.ctl("status").stdout
    # the leader's halt carries its token; nothing ever came from the follower; the halt state was
    # in etcd (under the prefix) when the halt reached the platform
    seen = []
    venue.on_halt = lambda: seen.append(etcd_get(etcd, "/t1/halt"))
    p = a.ctl("halt", "--reason", "operator")
    assert p.returncode == 0, p.stderr
    halts = [t for path, t in venue.tokens if path == "/halt"]
    assert halts == [str(la["token"])]
    assert seen and seen[0]["halted"] is True and seen[0]["reason"].endswith(": operator") and seen[0]["token"] == la["token"]
    venue.on_halt = None
    # step-down: a planned hand-over (the platform drifted back to live: the new leader must halt it)
    n_halts = len([1 for path, _ in venue.tokens if path == "/halt"])
    p = a.ctl("step-down")
    assert p.returncode == 0, p.stderr
    assert not leader(a)["acting"] and leader(a)["role"] == "stepped_down"
    # how fast is the benchmark's (tools/bench/takeover.py); here only that it happens, boundedly
    wait_until(lambda: leader(b)["role"] == "leader", timeout=TTL + 5, what="n2 takes over after step-down")
    venue.mode = "live"
    wait_until(lambda: leader(a).get("leader") == "n2", timeout=8, what="the former leader sees n2")
    assert leader(a)["hold_remaining_ms"] > 50000
    p = a.ctl("halt", "--reason", "old leader")
    assert p.returncode == 1 and "not the leader" in p.stderr
    # the new leader re-reads the shared halt state and re-asserts it with its own, larger token
    wait_until(lambda: len([1 for path, _ in venue.tokens if path == "/halt"]) > n_halts, timeout=8,
               what="the new leader re-asserts the halt")
    tokens = [int(t) for path, t in venue.tokens if path in ("/halt", "/resume", "/shadow", "/close_all")]
    assert all(t is not None for t in tokens) and tokens == sorted(tokens) and tokens[-1] == leader(b)["token"]
    a.stop()
    b.stop()


def test_kill9_of_the_leader_hands_over_and_the_new_leader_acts(tmp_path, daemons, etcd, venue):
    a, b = pair(tmp_path, daemons, etcd, venue, "/t2/", halt_after=3)
    a.start()
    wait_until(lambda: leader(a)["role"] == "leader", timeout=10, what="n1 leads")
    b.start()
    wait_until(lambda: leader(b).get("leader") == "n1", timeout=10, what="n2 follows")
    # the database is dead (port 1): only the leader's detector halts
    wait_until(lambda: venue.mode == "halted", timeout=10, what="the leader halts on the dead database")
    first = leader(a)["token"]
    a.kill9()
    venue.mode = "live"  # drifted: the new leader must halt it again
    # within the TTL, one poll and etcd's expiry sweep (every 500 ms), with slack for a loaded
    # machine: how fast is the benchmark's (tools/bench/takeover.py)
    wait_until(lambda: leader(b)["acting"], timeout=TTL + POLL + 5, what="n2 leads")
    second = leader(b)["token"]
    assert second > first
    wait_until(lambda: any(t == str(second) for path, t in venue.tokens if path == "/halt"), timeout=10,
               what="the new leader acts (re-asserts the halt)")
    acts = [(path, t) for path, t in venue.tokens if path in ("/halt", "/resume", "/shadow", "/close_all")]
    tokens = [int(t) for _, t in acts]
    assert set(tokens) <= {first, second} and tokens == sorted(tokens), acts
    # a clean stop revokes the lease: the follower takes over at its next poll, well inside the TTL
    a.start()
    wait_until(lambda: leader(a).get("leader") == "n2", timeout=5, what="n1 follows n2")
    b.stop()
    t0 = time.monotonic()
    wait_until(lambda: leader(a)["acting"], timeout=TTL + POLL + 3, what="n1 leads again")
    assert time.monotonic() - t0 < TTL - 0.4, time.monotonic() - t0
    a.stop()


def test_a_leader_cut_off_from_etcd_stops_acting_within_the_ttl(tmp_path, daemons, etcd, venue):
    a, b = pair(tmp_path, daemons, etcd, venue, "/t3/")
    address = "127.0.0.1:%d" % free_port()
    a.config["metrics"] = {"listen": address}
    a.write_config()
    a.start()
    wait_until(lambda: leader(a)["role"] == "leader", timeout=10, what="n1 leads")
    body = scrape(address)
    assert value(body, "drsupervisor_ha_leader") == 1
    assert value(body, "drsupervisor_ha_fencing_token") == leader(a)["token"]
    # point it at a dead endpoint by reload
    cfg = dict(a.config)
    cfg["ha"] = dict(cfg["ha"], endpoints=["http://127.0.0.1:1"])
    a.write_config(cfg)
    assert a.ctl("reload").returncode == 0
    t0 = time.monotonic()
    wait_until(lambda: not leader(a)["acting"], timeout=TTL + 2, what="n1 stops acting")
    assert time.monotonic() - t0 <= TTL + 1.5  # its own clock: within the TTL, with a loaded machine's slack
    assert value(scrape(address), "drsupervisor_ha_leader") == 0
    assert "not renewed within its TTL" in a.log()
    n = len(venue.tokens)
    p = a.ctl("halt", "--reason", "cut off")
    assert p.returncode == 1 and "not the leader" in p.stderr
    assert len([1 for path, _ in venue.tokens[n:] if path == "/halt"]) == 0
    # the other daemon takes over
    b.start()
    wait_until(lambda: leader(b)["acting"], timeout=TTL + 5, what="n2 leads")
    a.stop()
    # its key deleted by hand (the lease still alive): the leader sees it after its next renewal
    assert etcd_delete(etcd, "/t3/leader") == "1"
    wait_until(lambda: not leader(b)["acting"], timeout=TTL + 2, what="n2 deposed")
    assert "the leader key was deleted in etcd" in b.log()
    b.stop()


def test_kill9_of_the_leader_mid_run_the_follower_completes_it_once(tmp_path, pg, rx, etcd, daemons):
    """The app_crash run (a real PostgreSQL, the paper platform): the leader SIGKILLs itself right
    after the restart step committed; the follower takes over, re-reads the shared journal and
    completes the run: one restart, one out-of-band halt, one run."""
    from test_app_crash import AppCrashEnv
    env = AppCrashEnv(tmp_path, pg, rx)
    env.pg.psql("CREATE DATABASE %s" % env.db)
    from papervenue import PaperVenue
    env.venue = PaperVenue(env.dir, env.pg.conninfo(env.db), interval=env.trade_interval).start()
    try:
        wait_until(lambda: env.venue.status()["orders_sent"] > 0, timeout=20, what="the venue trading")
        shared = os.path.join(str(tmp_path), "shared-state")
        ds = []
        for node in ("n1", "n2"):
            cfg = env.config()
            cfg["state_dir"] = shared
            cfg["ha"] = {"endpoints": etcd.endpoints, "prefix": "/t4/", "node": node, "ttl": f"{TTL}s",
                         "poll_interval": f"{int(POLL * 1000)}ms"}
            d = Daemon(env.dir, cfg, name=node)
            daemons.append(d)
            ds.append(d)
        a, b = ds
        a.start(env={"DRSUP_CRASH_AFTER_EVENT": "commit:restart_platform"})
        wait_until(lambda: leader(a)["role"] == "leader", timeout=10, what="n1 leads")
        b.start()
        wait_until(lambda: leader(b).get("leader") == "n1", timeout=10, what="n2 follows")
        env.daemon = a
        wait_until(lambda: a.component("platform")["health"] == "up", timeout=20, what="platform up")
        env.crash_platform()
        wait_until(lambda: a.proc.poll() is not None, timeout=30, what="n1's crash after restart_platform")
        assert a.proc.returncode == -9, a.log()[-3000:]
        a.kill9()
        assert len(env.restart_calls()) == 1
        wait_until(lambda: leader(b)["acting"], timeout=TTL + POLL + 3, what="n2 leads")
        env.daemon = b
        rid = wait_until(env.run_of, timeout=20, what="the run, resumed by n2")
        run = env.wait_run(rid, timeout=60)
        assert run["status"] == "succeeded", b.log()[-6000:]
        assert env.restart_calls() == ["restart shadow %s" % rid], env.restart_calls()  # not restarted again
        assert len(rx.got("/cancel-all")) == 1  # n2 did not halt out of band again
        assert [r["run"] for r in b.ctl_json("runs")["runs"] if r.get("scenario") == "app_crash"] == [rid]
        assert "resuming unfinished run %s" % rid in b.log()
        b.stop()
    finally:
        env.stop_restarted()
        env.venue.stop()
        env.venue.cleanup()


def test_a_former_leader_restarts_after_its_hold(tmp_path, daemons, etcd, venue):
    a, _ = pair(tmp_path, daemons, etcd, venue, "/t5/")
    a.config["ha"]["step_down_hold"] = "1s"
    a.write_config()
    a.start()
    wait_until(lambda: leader(a)["acting"], timeout=10, what="n1 leads")
    assert a.ctl("step-down").returncode == 0
    # the hold over, it stops in order with 75 (EX_TEMPFAIL) for systemd to start it afresh
    wait_until(lambda: a.proc.poll() is not None, timeout=5, what="n1 exits after its hold")
    assert a.stop(expect=75) == 75
    assert "restarting to campaign again" in a.log()


HALT_COMMAND = r'''
import os, sys, urllib.request
token = os.environ.get("DRSUP_FENCING_TOKEN")
req = urllib.request.Request(sys.argv[1], data=b"{}", method="POST",
                             headers={"X-Drsup-Fencing-Token": token} if token else {})
print(urllib.request.urlopen(req, timeout=2).read().decode())
'''


def test_follower_duties(tmp_path, daemons, etcd, venue, rx):
    """A follower does not page (the leader does); a command venue action carries the fencing token
    in DRSUP_FENCING_TOKEN; a new leader that finds halted=true in etcd stays halted although the
    shared halt.json says otherwise."""
    script = os.path.join(str(tmp_path), "halt-command.py")
    with open(script, "w") as f:
        f.write(HALT_COMMAND)
    a, b = pair(tmp_path, daemons, etcd, venue, "/t6/")
    for d, node in ((a, "n1"), (b, "n2")):
        d.config["venue"]["halt"] = {"command": ["/usr/bin/python3", script, venue.url + "/halt"]}
        d.config["alerts"] = webhook_alerts(rx, node)
        d.write_config()
    a.start()
    wait_until(lambda: leader(a)["acting"], timeout=10, what="n1 leads")
    b.start()
    wait_until(lambda: leader(b).get("leader") == "n1", timeout=10, what="n2 follows")
    token = leader(a)["token"]
    assert a.ctl("halt", "--reason", "operator").returncode == 0
    # the command's halt reached the platform with the token from its environment
    assert [t for path, t in venue.tokens if path == "/halt"] == [str(token)], venue.tokens
    assert etcd_get(etcd, "/t6/halt")["halted"] is True

    def sources():
        return {(r.json or {}).get("source") for r in rx.requests if r.path == "/hook"}
    wait_until(lambda: "n1" in sources(), timeout=10, what="the leader pages")
    # both probe the same dead database: the follower's events are not routed (counted), never sent
    wait_until(lambda: b.ctl_json("alerts")["follower_skipped"] > 0, timeout=10, what="the follower skips events")
    assert "n2" not in sources(), sources()

    # the shared halt.json goes stale (says live); etcd still says halted: the new leader stays halted
    a.kill9()
    with open(os.path.join(a.config["state_dir"], "halt.json"), "w") as f:
        json.dump({"halted": False}, f)
    venue.mode = "live"
    wait_until(lambda: leader(b)["acting"], timeout=TTL + POLL + 5, what="n2 leads")
    second = leader(b)["token"]
    wait_until(lambda: str(second) in [t for path, t in venue.tokens if path == "/halt"], timeout=10,
               what="the new leader re-asserts the halt found in etcd")
    assert b.ctl_json("status")["trading"]["halted"] is True
    assert "the halt state in etcd says halted" in b.log()
    # the new leader pages now
    wait_until(lambda: "n2" in sources(), timeout=10, what="the new leader pages")
    b.stop()


def failed_reload(d):
    """An error event on d (its configuration is kept)."""
    good = dict(d.config)
    d.write_config(raw="ha: [not valid\n")
    assert d.ctl("reload").returncode != 0
    d.write_config(good)


class SilentEndpoint:
    """An etcd endpoint that accepts connections and answers nothing until released (then it
    closes them and refuses more): a daemon that has it first gets no answer from etcd until then,
    and its next request goes to the next endpoint."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = "http://127.0.0.1:%d" % self.sock.getsockname()[1]
        self.conns = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.done.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def release(self):
        self.done.set()
        self.sock.close()
        for c in self.conns:
            c.close()


def test_a_follower_holds_its_start_grace_alerts_until_etcd_answers(tmp_path, daemons, etcd, venue, rx):
    """What a daemon would page before etcd's first answer is held (drctl alerts: held), then paged
    when etcd names no other leader, or dropped (follower_skipped) when another node leads."""
    a, b = pair(tmp_path, daemons, etcd, venue, "/t8/")
    a.config["alerts"] = webhook_alerts(rx, "n1")
    a.write_config()

    def n2_start_held(prefix):
        # a long TTL (the grace) and request timeout: etcd's first answer is the test's to give
        hole = SilentEndpoint()
        b.config["alerts"] = webhook_alerts(rx, "n2")
        b.config["ha"] = dict(b.config["ha"], prefix=prefix, endpoints=[hole.url, etcd.endpoints[0]], ttl="30s",
                              request_timeout="20s")
        b.write_config()
        b.start()
        failed_reload(b)
        wait_until(lambda: b.ctl_json("alerts")["held"] >= 1, timeout=10, what="n2 holds its alert")
        return hole

    def n2_reload_pages():
        return [r for r in rx.requests if r.path == "/hook" and (r.json or {}).get("source") == "n2"
                and "reload" in json.dumps(r.json)]

    # nobody leads /t8/: at etcd's first answer the held alert is paged (and n2 campaigns)
    hole = n2_start_held("/t8/")
    assert n2_reload_pages() == [] and leader(b)["role"] == "follower"
    hole.release()
    wait_until(n2_reload_pages, timeout=15, what="n2 pages its held alert")
    assert b.ctl_json("alerts")["held"] == 0
    assert "alert(s) held until etcd's first answer: no other node is known to lead" in b.log(), \
        [ln for ln in b.log().splitlines() if "[alerts]" in ln or "[ha]" in ln]
    b.stop()
    # n1 leads /t9/: n2's held alert is dropped, counted, never sent
    a.config["ha"] = dict(a.config["ha"], prefix="/t9/")
    a.write_config()
    a.start()
    wait_until(lambda: leader(a)["acting"], timeout=10, what="n1 leads")
    rx.requests.clear()
    hole = n2_start_held("/t9/")
    hole.release()
    wait_until(lambda: b.ctl_json("alerts")["held"] == 0, timeout=15, what="the hold ends")
    assert leader(b).get("leader") == "n1"
    assert b.ctl_json("alerts")["follower_skipped"] >= 1
    assert "held until etcd's first answer not paged: another node leads" in b.log()
    assert n2_reload_pages() == []
    b.stop()
    a.stop()


def test_a_follower_that_cannot_reach_etcd_pages_itself(tmp_path, daemons, etcd, venue, rx):
    """Quiet only while another node is known to lead: a follower cut off from etcd pages its own
    events after two TTLs (duplicates rather than silence when nobody is known to page), and opens
    ha.etcd:NODE (it can neither lead nor take over), resolved when etcd answers again."""
    a, b = pair(tmp_path, daemons, etcd, venue, "/t7/")
    for d, node in ((a, "n1"), (b, "n2")):
        d.config["alerts"] = webhook_alerts(rx, node)
        d.write_config()
    a.start()
    wait_until(lambda: leader(a)["acting"], timeout=10, what="n1 leads")
    b.start()
    wait_until(lambda: leader(b).get("leader") == "n1", timeout=10, what="n2 follows")

    def n2_pages():
        return [r for r in rx.requests if r.path == "/hook" and (r.json or {}).get("source") == "n2"]

    skipped = b.ctl_json("alerts")["follower_skipped"]
    failed_reload(b)
    wait_until(lambda: b.ctl_json("alerts")["follower_skipped"] > skipped, timeout=10, what="the event skipped")
    assert n2_pages() == []
    # cut off from etcd: once the last leader it saw is two TTLs old, its events page
    cfg = dict(b.config)
    cfg["ha"] = dict(cfg["ha"], endpoints=["http://127.0.0.1:1"])
    b.write_config(cfg)
    assert b.ctl("reload").returncode == 0

    def paged():
        failed_reload(b)
        return n2_pages()
    wait_until(paged, timeout=2 * TTL + 10, interval=1.0, what="the cut-off follower pages")
    # and it says so itself: ha.etcd:n2 is open (it can neither lead nor take over), paged
    wait_until(lambda: [r for r in n2_pages() if (r.json.get("event") or {}).get("condition") == "ha.etcd:n2"],
               timeout=10, what="the ha.etcd page")
    assert "ha.etcd:n2" in [c["condition"] for c in b.ctl_json("alerts")["conditions"]]
    b.write_config(dict(b.config, ha=dict(b.config["ha"], endpoints=etcd.endpoints)))
    assert b.ctl("reload").returncode == 0
    wait_until(lambda: "ha.etcd:n2" not in [c["condition"] for c in b.ctl_json("alerts")["conditions"]],
               timeout=10, what="ha.etcd resolved once etcd answers")
    b.stop()
    a.stop()
