"""
The Prometheus endpoint of a real daemon: a live scrape passes `promtool check metrics` (Debian's
prometheus package); each metric moves when its cause does (trading halted, a backup taken, a
standby's replay paused, a probe answered, a recovery run finished, and the run counts survive a
restart); wrong paths, methods and oversized requests get their HTTP errors and the
daemon keeps serving; a Unix socket works like TCP; a reload that moves the endpoint is refused.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import time

import pytest

from drsup import Daemon, wait_until
from fakevenue import FakeVenue
from pgharness import PgCluster, free_port
from test_backup import backup_cfg, fill_db
import test_scenario as scn

PROMTOOL = shutil.which("promtool")


def http(address, request):
    """One raw HTTP exchange with the endpoint ("127.0.0.1:PORT" or "unix:PATH")."""
    if address.startswith("unix:"):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(address[5:])
    else:
        host, port = address.rsplit(":", 1)
        s = socket.create_connection((host, int(port)), timeout=10)
    with s:
        s.settimeout(10)
        s.sendall(request)
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), head.decode(), body.decode()


def scrape(address):
    code, head, body = http(address, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert code == 200, (code, head, body)
    assert "Content-Type: text/plain; version=0.0.4" in head, head
    return body


def value(body, name, **labels):
    """The value of one sample, or None."""
    for line in body.splitlines():
        if line.startswith("#"):
            continue
        m = re.match(r"^([a-z_]+)(\{(.*)\})? (\S+)$", line)
        if not m or m.group(1) != name:
            continue
        got = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(m.group(4))
    return None


def promtool_ok(body):
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=body, capture_output=True, text=True)
    # promtool exits 1 on errors and lint problems alike and prints each one
    assert p.returncode == 0, p.stdout + p.stderr


@pytest.fixture
def venue():
    v = FakeVenue(mode="live")
    yield v
    v.close()


def test_a_live_scrape_passes_promtool_and_follows_trading(tmp_path, venue):
    address = "127.0.0.1:%d" % free_port()
    d = Daemon(tmp_path, {"venue": venue.config(), "detector": {"halt_after": 1000}, "metrics": {"listen": address}})
    d.start()
    try:
        body = scrape(address)
        assert PROMTOOL, "promtool is missing: tools/setup-deps check installs Debian's prometheus package"
        promtool_ok(body)
        assert value(body, "drsupervisor_up") == 1
        assert value(body, "drsupervisor_trading_halted") == 0
        wait_until(lambda: value(scrape(address), "drsupervisor_trading_mode", mode="live") == 1, what="mode live")
        assert d.ctl("halt", "--reason", "metrics test").returncode == 0
        body = scrape(address)
        assert value(body, "drsupervisor_trading_halted") == 1
        assert value(body, "drsupervisor_trading_mode", mode="halted") == 1
        assert value(body, "drsupervisor_trading_mode", mode="live") == 0
        assert value(body, "drsupervisor_reloads_total", result="ok") == 0
        assert d.ctl("reload").returncode == 0
        assert value(scrape(address), "drsupervisor_reloads_total", result="ok") == 1
        # the HTTP errors, and the endpoint still serving after each
        assert http(address, b"GET /other HTTP/1.0\r\n\r\n")[0] == 404
        assert http(address, b"POST /metrics HTTP/1.0\r\n\r\n")[0] == 405
        assert http(address, b"GET /metrics HTTP/1.0\r\nX: " + b"a" * 9000 + b"\r\n\r\n")[0] == 431
        code, head, body = http(address, b"HEAD /metrics HTTP/1.0\r\n\r\n")
        assert code == 200 and body == "", (head, body)
        # a client that connects and says nothing is dropped after its deadline; others are served meanwhile
        idle = socket.create_connection(("127.0.0.1", int(address.rsplit(":", 1)[1])))
        assert value(scrape(address), "drsupervisor_up") == 1
        idle.settimeout(10)
        t0 = time.monotonic()
        assert idle.recv(10) == b""
        assert time.monotonic() - t0 < 8
        idle.close()
        # moving the endpoint needs a restart: the reload is refused and the old one keeps serving
        cfg = d.config
        cfg["metrics"] = {"listen": "127.0.0.1:%d" % free_port()}
        d.write_config(cfg)
        p = d.ctl("reload")
        assert p.returncode == 1 and "metrics.listen is opened at start" in p.stdout + p.stderr, p.stdout + p.stderr
        assert value(scrape(address), "drsupervisor_reloads_total", result="failed") == 1
        d.stop()  # exit 0: every client and the listener closed
    finally:
        d.cleanup()


def test_unix_socket_and_backup_metrics(pg, tmp_path):
    fill_db(pg)
    sock = os.path.join(str(tmp_path), "metrics.sock")
    d = Daemon(tmp_path, {"database": {"conninfo": pg.conninfo("shop")}, "detector": {"halt_after": 1000},
                          "backup": backup_cfg(pg, tmp_path), "metrics": {"listen": "unix:" + sock}})
    d.start()
    try:
        address = "unix:" + sock
        wait_until(lambda: value(scrape(address), "drsupervisor_backups", kind="logical") == 0, what="the catalog scanned")
        body = scrape(address)
        assert value(body, "drsupervisor_backup_age_seconds", kind="logical") is None  # no backup yet
        p = d.ctl("backup", "now", "--wait", "-t", "120s")
        assert p.returncode == 0, p.stdout + p.stderr
        body = scrape(address)
        promtool_ok(body)
        assert value(body, "drsupervisor_backups", kind="logical") == 1
        size = value(body, "drsupervisor_backup_size_bytes", kind="logical")
        listing = json.loads(d.ctl("--json", "backups").stdout)
        assert size == listing["backups"][0]["file_size_bytes"], listing
        assert 0 <= value(body, "drsupervisor_backup_age_seconds", kind="logical") < 120
        assert value(body, "drsupervisor_backup_consecutive_failures", kind="logical") == 0
        d.stop()
        assert not os.path.exists(sock), "the socket file is removed at stop"
    finally:
        d.cleanup()


def test_replication_lag_metrics_move_with_the_lag(tmp_path, pg):
    standby = PgCluster()
    try:
        standby.init_standby(pg, "pg2")
        standby.start()
        address = "127.0.0.1:%d" % free_port()
        d = Daemon(tmp_path, {"database": {"conninfo": pg.conninfo()}, "detector": {"halt_after": 1000},
                              "metrics": {"listen": address},
                              "replication": {"interval": "200ms", "debounce": 1,
                                              "nodes": [{"name": "pg1", "conninfo": pg.conninfo(), "role": "primary"},
                                                        {"name": "pg2", "conninfo": standby.conninfo()}]}})
        d.start()
        try:
            wait_until(lambda: value(scrape(address), "drsupervisor_replication_state", node="pg2", state="ok") == 1,
                       timeout=15, what="pg2 ok")
            assert value(scrape(address), "drsupervisor_replication_lag_bytes", node="pg2") == 0
            standby.psql("SELECT pg_wal_replay_pause()")
            pg.psql("CREATE TABLE filler AS SELECT g FROM generate_series(1, 50000) g")
            wait_until(lambda: (value(scrape(address), "drsupervisor_replication_lag_bytes", node="pg2") or 0) > 100000,
                       timeout=15, what="lag bytes")
            promtool_ok(scrape(address))
            standby.psql("SELECT pg_wal_replay_resume()")
            wait_until(lambda: value(scrape(address), "drsupervisor_replication_lag_bytes", node="pg2") == 0,
                       timeout=15, what="lag back to 0")
            assert value(scrape(address), "drsupervisor_replication_node_up", node="pg2") == 1
            d.stop()
        finally:
            d.cleanup()
    finally:
        standby.cleanup()


def hist(body, name, **labels):
    """{le: cumulative count} of one histogram series, with its _sum and _count."""
    buckets = {}
    for line in body.splitlines():
        m = re.match(r"^%s_bucket\{(.*)\} (\S+)$" % name, line)
        if not m:
            continue
        got = dict(re.findall(r'([a-z_]+)="((?:[^"\\]|\\.)*)"', m.group(1)))
        if all(got.get(k) == v for k, v in labels.items()):
            buckets[got["le"]] = float(m.group(2))
    return buckets, value(body, name + "_sum", **labels), value(body, name + "_count", **labels)


def test_probe_duration_histograms_grow_with_each_probe(tmp_path, pg, venue):
    address = "127.0.0.1:%d" % free_port()
    d = Daemon(tmp_path, {"database": {"conninfo": pg.conninfo(), "probe_interval": "100ms"},
                          "platform": {"health_url": venue.url + "/status", "probe_interval": "100ms"},
                          "detector": {"halt_after": 1000}, "metrics": {"listen": address}})
    d.start()
    try:
        for probe, target in (("database", "postgres"), ("platform", venue.url)):
            first = wait_until(lambda: (lambda h: h if (h[2] or 0) >= 1 else None)(
                hist(scrape(address), "drsupervisor_probe_duration_seconds", probe=probe, target=target)),
                what="a %s probe timed" % probe)
            later = wait_until(lambda: (lambda h: h if h[2] >= first[2] + 3 else None)(
                hist(scrape(address), "drsupervisor_probe_duration_seconds", probe=probe, target=target)),
                what="three more %s probes timed" % probe)
            buckets, total, count = later
            assert buckets["+Inf"] == count and total > 0, later
            ordered = [buckets[k] for k in sorted(buckets, key=lambda k: float(k.replace("+Inf", "inf")))]
            assert ordered == sorted(ordered) and len(ordered) == 15, buckets  # cumulative, 14 bounds + Inf
            assert buckets["1"] == count, buckets  # a local answer takes well under a second
        promtool_ok(scrape(address))
        d.stop()
    finally:
        d.cleanup()


def test_runs_by_scenario_and_outcome_and_the_last_rto_rpo(pg, tmp_path, venue):
    """A run finishing moves its counter by one under its outcome, and the last RTO/RPO are the
    report's; the counts come from the incident reports, so a restart keeps them."""
    scn.fill_db(pg)
    address = "127.0.0.1:%d" % free_port()
    cfg = scn.scenario_config(pg, tmp_path, venue)
    cfg["metrics"] = {"listen": address}
    d = Daemon(tmp_path, cfg)
    scn.loaded(d.start())
    try:
        def runs(body, outcome):
            return value(body, "drsupervisor_scenario_runs_total", scenario="database_corruption", outcome=outcome)

        body = scrape(address)
        promtool_ok(body)
        assert [runs(body, o) for o in ("succeeded", "failed", "aborted", "handed_off")] == [0, 0, 0, 0]
        assert value(body, "drsupervisor_scenario_last_rto_seconds", scenario="database_corruption") is None
        assert value(body, "drsupervisor_scenario_rto_target_seconds", scenario="database_corruption") == 300
        assert value(body, "drsupervisor_scenario_rpo_target_seconds", scenario="database_corruption") == 3600
        scn.backup_now(d)
        rid = d.ctl_json("execute", "--scenario", "database_corruption", "--reason", "metrics")["run"]
        rep_path = os.path.join(d.state_dir, "incidents", rid + ".json")
        rep = wait_until(lambda: os.path.exists(rep_path) and json.load(open(rep_path)), timeout=90,
                         what="incident report")
        assert rep["status"] == "succeeded", rep
        body = wait_until(lambda: (lambda b: b if runs(b, "succeeded") == 1 else None)(scrape(address)),
                          what="the run counted")
        promtool_ok(body)
        assert runs(body, "failed") == 0 and runs(body, "aborted") == 0
        assert value(body, "drsupervisor_scenario_last_rto_seconds", scenario="database_corruption") == \
            rep["rto_ms"] / 1000
        assert value(body, "drsupervisor_scenario_last_rpo_seconds", scenario="database_corruption") == \
            rep["rpo_ms"] / 1000
        assert value(body, "drsupervisor_scenario_last_run_timestamp_seconds", scenario="database_corruption") == \
            rep["finished_ms"] / 1000

        # An aborted run: its own outcome, and the last run now has no RTO (NaN).
        rid = d.ctl_json("execute", "--scenario", "database_corruption", "--manual")["run"]
        wait_until(lambda: d.ctl_json("run", rid)["status"] == "waiting_approval", what="the gate")
        assert d.ctl("abort", rid, "--reason", "metrics").returncode == 0
        body = wait_until(lambda: (lambda b: b if runs(b, "aborted") == 1 else None)(scrape(address)),
                          timeout=30, what="the aborted run counted")
        assert runs(body, "succeeded") == 1
        rto = value(body, "drsupervisor_scenario_last_rto_seconds", scenario="database_corruption")
        assert rto != rto, rto  # NaN
        promtool_ok(body)
        d.stop()

        d.start()
        body = scrape(address)
        # until the start-up scan has read the reports the counts are left out (never a false 0)
        assert runs(body, "succeeded") in (None, 1), body
        scn.loaded(d)
        body = scrape(address)
        assert runs(body, "succeeded") == 1 and runs(body, "aborted") == 1, body
        d.stop()
    finally:
        d.cleanup()


def metric_names_in_code():
    src = ""
    for root, _, files in os.walk(os.path.join(os.path.dirname(__file__), "..", "..", "daemon")):
        for f in files:
            if f.endswith(".c"):
                src += open(os.path.join(root, f)).read()
    # strings of that shape that are not metrics: wal.application_name's default
    not_metrics = {"drsupervisor_wal"}
    return set(re.findall(r'"(drsupervisor_[a-z_]+)"', src)) - not_metrics


def test_every_metric_is_documented_and_the_rules_and_dashboard_use_real_ones():
    repo = os.path.join(os.path.dirname(__file__), "..", "..")
    names = metric_names_in_code()
    assert len(names) >= 20, sorted(names)
    doc = open(os.path.join(repo, "docs", "metrics.md")).read()
    missing = sorted(n for n in names if "`%s`" % n not in doc)
    assert not missing, f"metrics the daemon writes that docs/metrics.md does not list: {missing}"
    rules = os.path.join(repo, "conf", "prometheus", "drsupervisor-rules.yml")
    p = subprocess.run([PROMTOOL, "check", "rules", rules], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    dash = json.load(open(os.path.join(repo, "docs", "grafana-dashboard.json")))
    used = set()
    for panel in dash["panels"]:
        for t in panel["targets"]:
            used |= set(re.findall(r"drsupervisor_[a-z_]+", t["expr"]))
    used |= set(re.findall(r"drsupervisor_[a-z_]+", open(rules).read()))
    unknown = sorted(n for n in used if n not in names and re.sub(r"_(bucket|sum|count)$", "", n) not in names)
    assert not unknown, f"the rules or the dashboard use metrics the daemon does not write: {unknown}"
