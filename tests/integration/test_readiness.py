"""
Integration tests for drctl readiness (docs/readiness.md): the real daemon, a real PostgreSQL 15,
the WAL archive, a webhook receiver. Each check flips to FAIL (or WARN) when its condition is
broken and back when it is repaired, the exit status follows the worst check, and the same checks
are metrics.
"""
import json
import os
import urllib.request

from alert_receiver import Receiver
from drsup import wait_until
from pgharness import free_port
from test_backup import backup_cfg, daemon_factory, fill_db  # noqa: F401 (fixture)
from test_backup_physical import physical_cfg


def checks(d):
    p = d.ctl("--json", "readiness")
    r = json.loads(p.stdout)
    assert p.returncode == r["nagios"], (p.returncode, r)
    return {c["check"]: c for c in r["checks"]}, r


def status_of(d, name):
    return checks(d)[0][name]["status"]


def test_each_check_flips_with_its_cause(pg, tmp_path, daemon_factory):
    fill_db(pg)
    rx = Receiver().start()
    try:
        port = free_port()
        cfg = {"database": {"conninfo": pg.conninfo()},
               "backup": physical_cfg(pg, tmp_path),
               "wal": {"conninfo": pg.conninfo("postgres"), "flush_interval": "200ms"},
               "alerts": {"webhook": {"url": rx.url("/hook")}, "group_window": "100ms"},
               "metrics": {"listen": "127.0.0.1:%d" % port}}
        d = daemon_factory(cfg)
        d.start()
        wait_until(lambda: status_of(d, "wal.archive") == "PASS", timeout=30, what="the archive streaming")
        c, r = checks(d)
        assert c["backup.logical"]["status"] == "FAIL" and "no logical backup" in c["backup.logical"]["evidence"]
        assert c["wal.base_backup"]["status"] == "FAIL" and "no verified base backup" in c["wal.base_backup"]["evidence"]
        assert c["alerts.webhook"]["status"] == "WARN" and "nothing delivered" in c["alerts.webhook"]["evidence"]
        assert c["config.reloaded"]["status"] == "PASS"
        assert c["replication.standbys"]["status"] == "WARN"
        assert r["nagios"] == 2 and 0 < r["score"] < 100
        p = d.ctl("readiness")
        assert p.returncode == 2 and "backup.logical" in p.stdout and "FAIL" in p.stdout and "readiness " in p.stdout

        # a verified logical backup, test-restored; a base backup whose WAL is archived; an alert delivered
        d.ctl_json("backup", "now", "--wait")
        c, _ = checks(d)
        assert c["backup.logical"]["status"] == "PASS" and c["backup.restore_test"]["status"] == "WARN"
        d.ctl_json("verify", "--restore")
        assert status_of(d, "backup.restore_test") == "PASS"
        wait_until(lambda: d.ctl("backup", "now", "--physical", "--wait").returncode == 0, timeout=60, interval=0.3,
                   what="a base backup")
        wait_until(lambda: status_of(d, "wal.base_backup") == "PASS", timeout=20, what="its WAL archived")
        assert d.ctl("alert", "test", "--channel", "webhook").returncode == 0
        wait_until(lambda: status_of(d, "alerts.webhook") == "PASS", timeout=20, what="a delivery")

        # the metrics say the same
        body = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5).read().decode()
        assert 'drsupervisor_readiness_check{check="wal.base_backup"} 0' in body, body[-2000:]
        assert "drsupervisor_readiness_score " in body

        # the configuration file edited without a reload: a warning until it is reloaded
        cfg["backup"]["watch"] = {"max_age": "1s"}
        d.write_config(d.config | {"backup": cfg["backup"]})
        wait_until(lambda: status_of(d, "config.reloaded") == "WARN", timeout=20, what="the edit noticed")
        assert d.ctl("reload").returncode == 0
        assert status_of(d, "config.reloaded") == "PASS"
        # ... and that edit makes the newest backup stale
        wait_until(lambda: status_of(d, "backup.logical") == "FAIL", timeout=10, what="the backup stale")
        assert "more than backup.watch.max_age" in checks(d)[0]["backup.logical"]["evidence"]

        # the archive's primary gone (another port): not streaming
        cfg["wal"]["conninfo"] = "host=127.0.0.1 port=1 user=postgres"
        cfg["wal"]["stalled_after"] = "1s"
        d.write_config(d.config | {"wal": cfg["wal"]})
        assert d.ctl("reload").returncode == 0
        wait_until(lambda: status_of(d, "wal.archive") == "FAIL", timeout=20, what="the archive not streaming")
        assert "not streaming" in checks(d)[0]["wal.archive"]["evidence"]

        # the alert channel dead: deliveries failing
        d.write_config(d.config | {"alerts": {"webhook": {"url": "http://127.0.0.1:1/hook"}, "group_window": "100ms"}})
        assert d.ctl("reload").returncode == 0
        assert d.ctl("alert", "test", "--channel", "webhook").returncode == 0
        wait_until(lambda: status_of(d, "alerts.webhook") in ("WARN", "FAIL") and
                   "failed" in checks(d)[0]["alerts.webhook"]["evidence"], timeout=30, what="deliveries failing")
    finally:
        rx.stop()


def test_validate_is_the_post_recovery_checklist(pg, tmp_path):
    from trading_env import TradingEnv
    env = TradingEnv(tmp_path, pg, extra={"backup": {"verify": {
        "after_backup": True,
        "validation_queries": ["SELECT count(*) FROM orders", "SELECT count(*) = 0 FROM orders"]}}})
    try:
        env.start()
        d = env.daemon
        assert d.ctl("halt", "--reason", "validate test").returncode == 0
        wait_until(lambda: env.venue.status()["mode"] == "halted", timeout=20, what="halted")
        d.ctl_json("backup", "now", "--wait", timeout=120)
        p = d.ctl("--json", "validate")
        r = json.loads(p.stdout)
        rows = {c["name"]: c for c in r["checks"]}
        assert rows["database"]["status"] == "PASS", rows
        assert rows["database.query_1"]["status"] == "PASS" and "first value" in rows["database.query_1"]["detail"]
        assert rows["database.query_2"]["status"] == "FAIL" and "first value is false" in rows["database.query_2"]["detail"]
        assert rows["reconcile"]["status"] == "PASS", rows["reconcile"]
        assert rows["backup.logical"]["status"] == "PASS" and rows["database"]["status"] == "PASS"
        assert rows["alerts.channels"]["status"] == "FAIL"
        assert r["ok"] is False and p.returncode == 1
        p = d.ctl("validate")
        assert "VALIDATION FAILED" in p.stdout and "reconcile" in p.stdout

        # the database gone: its row fails, and the reconcile cannot run
        pg.stop("fast")
        p = d.ctl("--json", "validate", timeout=60)
        rows = {c["name"]: c for c in json.loads(p.stdout)["checks"]}
        assert p.returncode == 1 and rows["database"]["status"] == "FAIL" and rows["reconcile"]["status"] == "FAIL"
    finally:
        env.cleanup()
