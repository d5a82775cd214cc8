"""
Honest reloads: every module checks a new configuration before anything is swapped. One refusal
and nothing changes: `drctl reload` exits 1 with one line per refusing module, the old
configuration keeps running, and a config.reload error event says so. Start-up runs the same
checks and refuses to start.
"""
import copy
import os
import subprocess

from drsup import DAEMON, Daemon, wait_until


def make_key(path):
    with open(path, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    os.chmod(path, 0o600)
    return path


def started(daemons, tmp_path, pg, extra=None):
    """A daemon probing the real database, its database probe up."""
    d = Daemon(tmp_path, dict({"database": {"conninfo": pg.conninfo()}}, **(extra or {})))
    daemons.append(d)
    d.start()
    wait_until(lambda: d.component("database").get("health") == "up", what="database probe up")
    return d


def refused_reload(d, change):
    """Write the running configuration with change(cfg) applied, reload, expect a refusal; the file
    is put back afterwards so the running configuration and the file agree again."""
    good = copy.deepcopy(d.config)
    bad = copy.deepcopy(good)
    bad["cluster"] = "must-not-appear"  # would show in status if anything had been swapped
    change(bad)
    d.write_config(bad)
    p = d.ctl("reload")
    d.write_config(good)
    assert p.returncode == 1, (p.returncode, p.stdout, p.stderr)
    assert "reload refused, the old configuration keeps running" in p.stderr, p.stderr
    st = d.ctl_json("status")
    assert st["cluster"] == "test", st
    assert st["components"]["database"]["health"] == "up", st["components"]["database"]
    return p.stderr


def module_lines(stderr):
    return [ln.strip() for ln in stderr.splitlines()
            if ln.strip().split(":", 1)[0] in ("probes", "detector", "backups", "scenarios", "standby")]


def test_unparsable_conninfo_is_refused_and_the_old_one_keeps_probing(pg, daemons, tmp_path):
    d = started(daemons, tmp_path, pg)

    def colour(cfg):
        cfg["database"]["conninfo"] = "colour=blue"
    err = refused_reload(d, colour)
    lines = module_lines(err)
    probes = [ln for ln in lines if ln.startswith("probes:")]
    assert len(probes) == 1, err
    assert "database.conninfo 'colour=blue'" in probes[0] and 'invalid connection option "colour"' in probes[0], err
    assert d.ctl_json("status")["reloads"] == {"ok": 0, "failed": 1}
    # The event that says so, once, with the reason.
    wait_until(lambda: "reload refused" in d.log(), what="config.reload error event in the log")
    log = d.log()
    assert "cannot use conninfo" not in log  # the probe never saw the new configuration
    assert 'invalid connection option "colour"' in log
    # The old probe keeps running: a successful observation newer than the refusal.
    after = d.component("database")["last_observation"]["ts_ms"]
    wait_until(lambda: (d.component("database")["last_observation"]["ts_ms"] > after
                        and d.component("database")["last_observation"]["ok"]),
               what="a newer successful database probe")
    d.stop()


def test_each_refusing_module_names_itself(pg, daemons, tmp_path):
    bdir = tmp_path / "backups"
    bdir.mkdir()
    d = started(daemons, tmp_path, pg)

    def detector(cfg):
        cfg["detector"] = {"conninfo": "colour=blue", "corruption_queries": ["SELECT 1"]}

    def scenarios(cfg):
        cfg["scenarios"] = {"admin_conninfo": "colour=blue"}

    def standby(cfg):
        cfg["scenarios"] = {"database_corruption": {"standby": True}}

    for module, change, reason in [
            ("detector", detector, "cannot use detector.conninfo 'colour=blue' for the corruption checks"),
            ("scenarios", scenarios, "cannot use scenarios.admin_conninfo 'colour=blue'"),
            # The standby restore is configured by the scenario whose section turns it on.
            ("scenarios", standby, "needs a 'backup' section")]:
        lines = module_lines(refused_reload(d, change))
        assert len(lines) == 1 and lines[0].startswith(module + ":") and reason in lines[0], (module, lines)

    # Two modules refusing at once: one line each.
    def both(cfg):
        detector(cfg)
        standby(cfg)
    lines = module_lines(refused_reload(d, both))
    assert [ln.split(":", 1)[0] for ln in lines] == ["detector", "scenarios"], lines

    # Alerts: a secret file that cannot be read is refused while the file is parsed, with its position.
    def alerts(cfg):
        cfg["alerts"] = {"pagerduty": {"routing_key_file": str(tmp_path / "no-such-key")}}
    err = refused_reload(d, alerts)
    assert "'alerts.pagerduty.routing_key_file'" in err and "no-such-key" in err, err

    # Backups: a schedule that does not parse is refused with the file, the same way.
    def backups(cfg):
        cfg["backup"] = {"directory": str(bdir), "key_file": make_key(str(tmp_path / "b.key")),
                         "schedules": ["every day at noon"]}
    err = refused_reload(d, backups)
    assert "'backup.schedules': bad cron schedule 'every day at noon'" in err, err

    assert d.ctl_json("status")["reloads"] == {"ok": 0, "failed": 6}
    d.stop()


def test_a_password_or_a_bad_backup_key_is_refused_at_reload(pg, daemons, tmp_path):
    d = started(daemons, tmp_path, pg)
    bdir = tmp_path / "backups"

    # A password in a conninfo, key=value or URI: refused with the key's position, never echoed.
    for ci in (pg.conninfo() + " password='Zq9 s3cr'", "postgresql://postgres:Zq9s3cr@127.0.0.1:%d/postgres" % pg.port):
        def password(cfg):
            cfg["database"]["conninfo"] = ci
        err = refused_reload(d, password)
        assert "'database.conninfo' holds a password" in err and d.config_path + ":" in err, err
        assert "Zq9" not in err and "s3cr" not in err, err

    def scenario_password(cfg):
        cfg["scenarios"] = {"admin_conninfo": "host=127.0.0.1 user=postgres password=Zq9s3cr"}
    err = refused_reload(d, scenario_password)
    assert "'scenarios.admin_conninfo' holds a password" in err and "Zq9" not in err, err

    # The backup key: too open, the wrong length, missing.
    open_key = make_key(str(tmp_path / "open.key"))
    os.chmod(open_key, 0o644)
    short = tmp_path / "short.key"
    short.write_text("00" * 16 + "\n")
    short.chmod(0o600)
    for key, reason in ((open_key, "mode 0644 is too open"), (str(short), "wrong length 33 bytes"),
                        (str(tmp_path / "missing.key"), "cannot open")):
        def backups(cfg):
            cfg["backup"] = {"directory": str(bdir), "key_file": key}
        err = refused_reload(d, backups)
        assert "'backup.key_file': key file '%s'" % key in err and reason in err, err
    assert d.ctl_json("status")["reloads"] == {"ok": 0, "failed": 6}
    # and the old configuration keeps running: a good key reloads
    d.config["backup"] = {"directory": str(bdir), "key_file": make_key(str(tmp_path / "good.key"))}
    d.write_config()
    p = d.ctl("reload")
    assert p.returncode == 0, p.stderr
    d.stop()


def test_valid_reload_still_applies(pg, daemons, tmp_path):
    d = Daemon(tmp_path)  # the harness default: a dead port
    daemons.append(d)
    d.start()
    wait_until(lambda: d.component("database").get("health") == "down", what="database probe down")
    d.config["database"]["conninfo"] = pg.conninfo()
    d.config["cluster"] = "renamed"
    d.config["detector"] = {"halt_after": 1000}
    d.write_config()
    p = d.ctl("reload")
    assert p.returncode == 0, p.stderr
    st = d.ctl_json("status")
    assert st["cluster"] == "renamed" and st["reloads"] == {"ok": 1, "failed": 0}
    wait_until(lambda: d.component("database").get("health") == "up", what="database probe up after reload")
    d.stop()


def test_start_up_refuses_what_a_reload_refuses(tmp_path):
    d = Daemon(tmp_path, {"database": {"conninfo": "colour=blue"}})
    p = subprocess.run([DAEMON, "--config", d.config_path], capture_output=True, text=True, timeout=20)
    assert p.returncode != 0
    assert "not starting: probes: cannot use database.conninfo 'colour=blue'" in p.stderr, p.stderr
    assert not os.path.exists(d.socket)


def test_check_config_refuses_what_start_up_refuses(tmp_path):
    """--check-config runs the modules' checks too: it never says ok for a file start-up refuses."""
    d = Daemon(tmp_path, {"database": {"conninfo": "colour=blue"}})
    p = subprocess.run([DAEMON, "--check-config", "--config", d.config_path], capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "configuration ok" not in p.stdout
    assert "would be refused" in p.stderr and "probes: cannot use database.conninfo 'colour=blue'" in p.stderr, p.stderr
    ok = Daemon(tmp_path / "ok", {})
    p = subprocess.run([DAEMON, "--check-config", "--config", ok.config_path], capture_output=True, text=True,
                       timeout=20)
    assert p.returncode == 0 and "configuration ok" in p.stdout, (p.stdout, p.stderr)
