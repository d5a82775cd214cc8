"""
Replication monitoring against real streaming replication between two PostgreSQL clusters (a
primary and a standby made with pg_basebackup -R, application_name pg2): the daemon reports the
standby streaming with zero lag on an idle primary (not the hundreds of seconds the replay
timestamp would say); WAL that the standby does not replay (replay paused, the primary writing)
opens replication.lag (warning, then critical past the byte thresholds) and closes it once replay
resumes; a stopped standby opens replication.broken and closes it when it is back.
`drctl replication-status` shows it as a table and `--json`; `drctl check replication` exits like a
Nagios plugin (0/1/2/3).
"""
import json

import pytest

from drsup import Daemon, wait_until
from pgharness import PgCluster


@pytest.fixture
def standby(pg):
    s = PgCluster()
    try:
        s.init_standby(pg, "pg2")
        s.start()
        yield s
    finally:
        s.cleanup()


@pytest.fixture
def daemon(tmp_path, pg, standby, rx):
    d = Daemon(tmp_path, {
        "database": {"conninfo": pg.conninfo()},
        "alerts": {"webhook": {"url": rx.url("/hook")}, "group_window": "100ms",
                   "routes": [{"match": {"min_severity": "info", "kind": "replication.*"}, "channels": ["webhook"]}]},
        "detector": {"halt_after": 1000},
        "replication": {"interval": "200ms", "debounce": 2,
                        "lag_bytes_warning": "1MiB", "lag_bytes_critical": "8MiB",
                        "nodes": [{"name": "pg1", "conninfo": pg.conninfo(), "role": "primary"},
                                  {"name": "pg2", "conninfo": standby.conninfo(), "role": "standby"}]}})
    d.start()
    yield d
    d.cleanup()


def status(d):
    p = d.ctl("--json", "replication-status")
    assert p.returncode == 0, p.stderr
    return {n["name"]: n for n in json.loads(p.stdout)["nodes"]}


def check(d):
    p = d.ctl("check", "replication")
    return p.returncode, p.stdout.strip()


def conditions(d):
    p = d.ctl("--json", "alerts")
    assert p.returncode == 0, p.stderr
    body = json.loads(p.stdout)
    return {c["condition"]: c for c in body.get("conditions", [])}


def test_streaming_standby_reports_zero_lag_on_an_idle_primary(pg, standby, daemon):
    wait_until(lambda: status(daemon)["pg2"]["state"] == "ok", timeout=15, what="pg2 ok")
    nodes = status(daemon)
    assert nodes["pg1"]["role"] == "primary" and nodes["pg1"]["timeline"] == 1, nodes["pg1"]
    pg2 = nodes["pg2"]
    assert pg2["role"] == "standby" and pg2["receiver"]["status"] == "streaming", pg2
    assert pg2["lag_bytes"] == 0 and pg2["lag_s"] == 0, pg2
    rc, line = check(daemon)
    assert rc == 0 and line.startswith("REPLICATION OK:") and "pg2 ok" in line, (rc, line)
    table = daemon.ctl("replication-status")
    assert table.returncode == 0 and "pg2" in table.stdout and "streaming" not in table.stdout.split("\n")[0]
    assert "standby" in table.stdout and "ok" in table.stdout, table.stdout


def hooks_about(rx, key):
    return [r.json for r in rx.got("/hook") if key in json.dumps(r.json)]


def test_unreplayed_wal_opens_the_lag_condition_and_replay_closes_it(pg, standby, daemon, rx):
    wait_until(lambda: status(daemon)["pg2"]["state"] == "ok", timeout=15, what="pg2 ok")
    standby.psql("SELECT pg_wal_replay_pause()")
    pg.psql("CREATE TABLE filler AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 40000) g")
    # about 6 MB of WAL: above the warning threshold, below the critical one
    wait_until(lambda: status(daemon)["pg2"]["state"] == "lag_warning", timeout=15, what="lag_warning")
    pg2 = status(daemon)["pg2"]
    assert pg2["lag_bytes"] >= 1 << 20, pg2
    rc, line = check(daemon)
    assert rc == 1 and line.startswith("REPLICATION WARNING:"), (rc, line)
    wait_until(lambda: "replication.lag:test/pg2" in conditions(daemon), timeout=10, what="the lag condition")
    assert conditions(daemon)["replication.lag:test/pg2"]["severity"] == "warning", conditions(daemon)
    wait_until(lambda: hooks_about(rx, "replication.lag:test/pg2"), timeout=10, what="the lag alert")
    pg.psql("INSERT INTO filler SELECT g, repeat('y', 100) FROM generate_series(1, 60000) g")
    wait_until(lambda: status(daemon)["pg2"]["state"] == "lag_critical", timeout=15, what="lag_critical")
    assert check(daemon)[0] == 2
    standby.psql("SELECT pg_wal_replay_resume()")
    wait_until(lambda: status(daemon)["pg2"]["state"] == "ok", timeout=15, what="ok after resume")
    wait_until(lambda: "replication.lag:test/pg2" not in conditions(daemon), timeout=10, what="the lag resolved")
    assert check(daemon)[0] == 0


def test_a_stopped_standby_is_broken_until_it_is_back(pg, standby, daemon):
    wait_until(lambda: status(daemon)["pg2"]["state"] == "ok", timeout=15, what="pg2 ok")
    standby.stop()
    wait_until(lambda: status(daemon)["pg2"]["state"] == "broken", timeout=15, what="broken")
    pg2 = status(daemon)["pg2"]
    assert pg2["reason"].startswith("cannot ask the standby"), pg2
    wait_until(lambda: "replication.broken:test/pg2" in conditions(daemon), timeout=10, what="the broken condition")
    rc, line = check(daemon)
    assert rc == 2 and "pg2 broken" in line, (rc, line)
    standby.start()
    wait_until(lambda: status(daemon)["pg2"]["state"] == "ok", timeout=30, what="ok again")
    wait_until(lambda: "replication.broken:test/pg2" not in conditions(daemon), timeout=10, what="broken resolved")


def test_check_without_nodes_is_unknown(tmp_path, pg):
    d = Daemon(tmp_path, {"database": {"conninfo": pg.conninfo()}, "detector": {"halt_after": 1000}})
    d.start()
    try:
        rc, line = check(d)
        assert rc == 3 and "no replication.nodes configured" in line, (rc, line)
    finally:
        d.cleanup()


def failover(d):
    p = d.ctl("--json", "failover-status")
    return p.returncode, json.loads(p.stdout)


def test_failover_status_says_whether_a_promotion_would_succeed_and_why(tmp_path, pg, standby, daemon):
    wait_until(lambda: status(daemon)["pg2"]["state"] == "ok", timeout=15, what="pg2 ok")
    rc, f = failover(daemon)
    assert rc == 1 and f["would_succeed"] is False and f["why"] == "no failover section is configured", f
    # hooks that record their calls
    marker = tmp_path / "fence-checked"
    check = tmp_path / "fence-check"
    check.write_text("#!/bin/sh\necho checked >> %s\n" % marker)
    check.chmod(0o755)
    bad = tmp_path / "fence-check-bad"
    bad.write_text("#!/bin/sh\necho 'ipmitool: BMC not reachable' >&2\nexit 2\n")
    bad.chmod(0o755)
    hook = tmp_path / "hook"
    hook.write_text("#!/bin/sh\nexit 0\n")
    hook.chmod(0o755)

    def reload_with(**failover_cfg):
        cfg = daemon.config
        cfg["failover"] = failover_cfg
        daemon.write_config(cfg)
        p = daemon.ctl("reload")
        assert p.returncode == 0, p.stdout + p.stderr

    reload_with(fence=[str(hook)], fence_check=[str(check)], repoint=[str(hook)], maximum_lag="1MiB")
    rc, f = failover(daemon)
    assert rc == 0 and f["would_succeed"] is True and f["candidate"] == "pg2", f
    assert f["fencing"]["last_check_ok"] is True and marker.read_text().count("checked") == 1, f
    text = daemon.ctl("failover-status")
    assert text.returncode == 0 and "pg2 would be promoted" in text.stdout and "check passed" in text.stdout, text.stdout
    # the fence check fails: no failover, and the check's own words say why
    reload_with(fence=[str(hook)], fence_check=[str(bad)], repoint=[str(hook)], maximum_lag="1MiB")
    rc, f = failover(daemon)
    assert rc == 1 and f["why"] == "the fence check failed", f
    assert "exited with status 2: ipmitool: BMC not reachable" in f["fencing"]["last_check_message"], f
    # no repoint hook: the platform would keep writing to the old primary
    reload_with(fence=[str(hook)], maximum_lag="1MiB")
    rc, f = failover(daemon)
    assert rc == 1 and "no repoint hook" in f["why"], f
    # no fence hook: the daemon fences by itself (failover.self_fence, default stop; pg1 has no stop
    # command, so read-only); with self_fence off nothing would stop the old primary's writes
    reload_with(repoint=[str(hook)], maximum_lag="1MiB")
    rc, f = failover(daemon)
    assert rc == 0 and f["fencing"]["by"] == "read_only" and f["fencing"]["self_fence"] == "stop", f
    assert "the daemon makes the old primary read-only" in daemon.ctl("failover-status").stdout
    reload_with(repoint=[str(hook)], maximum_lag="1MiB", self_fence="off")
    rc, f = failover(daemon)
    assert rc == 1 and "failover.self_fence is off" in f["why"] and f["fencing"]["by"] == "none", f
    # a standby too far behind is not eligible
    reload_with(fence=[str(hook)], repoint=[str(hook)], maximum_lag="1MiB")
    standby.psql("SELECT pg_wal_replay_pause()")
    pg.psql("CREATE TABLE behind AS SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 40000) g")
    wait_until(lambda: failover(daemon)[1]["would_succeed"] is False, timeout=15, what="pg2 too far behind")
    rc, f = failover(daemon)
    (c,) = f["candidates"]
    assert rc == 1 and c["eligible"] is False and "more than failover.maximum_lag (1048576)" in c["reason"], f
    assert f["why"] == "no standby is eligible (see candidates)", f
    standby.psql("SELECT pg_wal_replay_resume()")
    wait_until(lambda: failover(daemon)[1]["would_succeed"] is True, timeout=15, what="pg2 eligible again")
    # priority 0: never promoted
    cfg = daemon.config
    cfg["replication"]["nodes"][1]["priority"] = 0
    daemon.write_config(cfg)
    assert daemon.ctl("reload").returncode == 0
    rc, f = failover(daemon)
    assert rc == 1 and f["candidates"][0]["reason"] == "priority 0: never promoted", f
