"""
The five runbook platforms (../shared/seeds) supervised through their example configurations
(conf/examples/*.yaml), each against its test double (tests/integration/platforms/).

This file owns:
- every example passing `drsupervisord --check-config` (paths and credentials pointed at files
  in the test's directory);
- the end-to-end corruption recovery against the ShivX and the Sofia doubles, each trading into
  its own schema on a real PostgreSQL, with the example loaded from conf/examples and rewritten
  only where it names addresses, paths or timings (see `adapt`): detection, halt, restore,
  reconcile with zero lost fills (the replayed fills are exactly the exchange's fills the
  restored backup lacks), shadow, live;
- halt, status, resume, positions and fills of the command-driven platforms (CryptoOrchestrator
  kubectl, GENESIS systemctl, the small bot's docker-compose) through drctl halt, trading,
  reconcile, resume and venue check, and GENESIS's emergency close; `drctl venue check` against
  the ShivX and Sofia doubles too;
- bad answers (a missing field, a string for a number, a wrong time format, a non-JSON answer, a
  command that exits 1 or hangs past venue.timeout): each a clear error naming the action and the
  field and path, and trading stays halted (the reconcile fails closed, the resume is refused).

One PostgreSQL for the module (a database per platform); every wait is on a condition.
"""
import copy
import json
import os
import re
import subprocess
import time

import pytest
import yaml

from drsup import DAEMON, DRCTL, Daemon, wait_until
from pgharness import PgCluster
from platforms import base, cryptoorchestrator, genesis, shivx, smallbot, sofia

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
EXAMPLES = os.path.join(REPO, "conf", "examples")
PG_BIN = "/usr/lib/postgresql/15/bin"
PLATFORMS = ["cryptoorchestrator", "genesis", "shivx", "smallbot", "sofia"]
TOKEN = "shivx-token-9c1e"
API_KEY, HMAC_KEY = "co-api-key-51", b"co-hmac-secret-for-tests"


@pytest.fixture(scope="module")
def pgm():
    """One PostgreSQL for the whole module; each test uses its own database."""
    cluster = PgCluster()
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.cleanup()


def example(name):
    with open(os.path.join(EXAMPLES, name + ".yaml")) as f:
        return yaml.safe_load(f)


def strings(node):
    """Every string in a parsed configuration."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from strings(v)


def replace_strings(node, fn):
    if isinstance(node, str):
        return fn(node)
    if isinstance(node, dict):
        return {k: replace_strings(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [replace_strings(v, fn) for v in node]
    return node


def secret_file(path, content):
    with open(path, "wb") as f:
        f.write(content if isinstance(content, bytes) else content.encode())
    os.chmod(path, 0o600)


def adapt(cfg, tmp, urls=None, tools=None, secrets=None):
    """The example as this machine needs it, and nothing else changed: its URLs' origins replaced
    (urls: {origin: new origin}), its commands' programs replaced by the fakes (tools: {program:
    path}), state, socket, backups, keys, credentials and state files moved into tmp, alerts sent
    nowhere (127.0.0.1:1), schedules off (a backup starting mid-test would be a flake). Returns
    (configuration, environment for the daemon). Timings are the caller's to shorten."""
    cfg = copy.deepcopy(cfg)
    urls, tools, secrets = urls or {}, tools or {}, dict(secrets or {})
    creds = os.path.join(tmp, "creds")
    os.makedirs(creds, mode=0o700, exist_ok=True)

    def fix(s):
        for old, new in urls.items():
            if s.startswith(old):
                s = new + s[len(old):]
        return tools.get(s, s)
    cfg = replace_strings(cfg, fix)
    # every credential the file names exists, as a 0600 file (an alert URL points nowhere)
    names = set()
    for s in strings(cfg):
        names.update(re.findall(r"\{\{credential:([A-Za-z0-9_.-]+)\}\}", s))
    for sect in (cfg.get("alerts") or {}).values():
        if isinstance(sect, dict):
            names.update(v for k, v in sect.items() if k.endswith("_credential"))
    for sect in (cfg.get("venue", {}).get("sign"), cfg.get("backup")):
        if sect and sect.get("key_credential"):
            names.add(sect["key_credential"])
    for n in names:
        default = "http://127.0.0.1:1/alert" if re.search(r"webhook|slack|url", n) else "secret-" + n
        if cfg.get("backup", {}).get("key_credential") == n:
            default = os.urandom(32).hex() + "\n"
        secret_file(os.path.join(creds, n), secrets.pop(n, default))
    assert not secrets, "secrets the example does not name: %s" % sorted(secrets)
    cfg.pop("state_dir", None)                     # drsup.Daemon puts them in its directory
    cfg.get("control", {}).pop("socket", None)
    cfg.get("control", {}).pop("operators_group", None)
    if "alerts" in cfg:
        cfg["alerts"]["credentials_dir"] = creds
        if "pagerduty" in cfg["alerts"]:                # never the real Events API
            cfg["alerts"]["pagerduty"]["url"] = "http://127.0.0.1:1/pagerduty"
    b = cfg.get("backup")
    if b:
        b["directory"] = os.path.join(tmp, "backups")
        b["schedules"] = []
        b.get("verify", {}).pop("restore_schedule", None)
        if "physical" in b:
            b["physical"]["schedules"] = []
        if "key_file" in b:
            b["key_file"] = os.path.join(tmp, "backup.key")
            secret_file(b["key_file"], os.urandom(32).hex() + "\n")
        if b.get("state_files"):
            b["state_files"] = [os.path.join(tmp, "state", os.path.basename(p)) for p in b["state_files"]]
    if cfg.get("venue", {}).get("sign", {}).get("key_file"):
        cfg["venue"]["sign"]["key_file"] = os.path.join(tmp, "sign.key")
    d = cfg.get("detector", {})
    for k in ("data_directory", "server_log"):
        d.pop(k, None)
    return cfg, {"CREDENTIALS_DIRECTORY": creds}


def check_config(cfg, tmp, env):
    path = os.path.join(tmp, "checked.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    e = dict(os.environ)
    e.update(env)
    return subprocess.run([DAEMON, "--check-config", "-c", path], capture_output=True, text=True, env=e)


# ---- every example passes --check-config --------------------------------------------------------

def test_every_example_is_one_of_the_runbook_platforms():
    assert sorted(f[:-5] for f in os.listdir(EXAMPLES) if f.endswith(".yaml")) == PLATFORMS


@pytest.mark.parametrize("name", PLATFORMS)
def test_example_passes_check_config(tmp_path, name):
    cfg, env = adapt(example(name), str(tmp_path))
    cfg["state_dir"] = str(tmp_path / "state_dir")
    cfg.setdefault("control", {})["socket"] = str(tmp_path / "control.sock")
    p = check_config(cfg, str(tmp_path), env)
    assert p.returncode == 0 and "configuration ok" in p.stdout, p.stdout + p.stderr
    assert "warning" not in p.stderr, p.stderr
    # no secret in the file itself: only credential names, key files and pgpass
    raw = open(os.path.join(EXAMPLES, name + ".yaml")).read()
    assert not re.search(r"(?i)(password=|bearer [a-z0-9]{8}|api[_-]?key: [a-z0-9])", raw), name


# ---- the end-to-end corruption recovery (ShivX, Sofia) -----------------------------------------

def fast(cfg):
    """Timings of a test, not of production: probes, checks and retries in milliseconds."""
    cfg["database"].update({"probe_interval": "250ms", "probe_timeout": "2s", "connect_timeout": "2s"})
    cfg["platform"].update({"probe_interval": "500ms"})
    cfg["venue"].update({"timeout": "5s", "retry_base": "100ms", "retry_cap": "1s", "status_interval": "500ms"})
    cfg["detector"].update({"corruption_interval": "500ms", "restart_delay": "500ms"})
    cfg["reconcile"]["post_resume_checks"] = ["1s"]
    return cfg


def pg_restart_command(pg):
    cmd = [PG_BIN + "/pg_ctl", "-D", pg.datadir, "-l", pg.logfile, "-w", "-t", "30", "-o", "-p %d" % pg.port, "start"]
    return ["/usr/sbin/runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


def corrupt_table(pg, db, table, nbytes=256):
    """Stop the server, overwrite bytes in the middle of a data page of `table`, start it again
    (checksums are on: reading that page fails with XX001), as trading_env.py does."""
    rel = pg.psql("SELECT pg_relation_filepath('%s')" % table, db=db).strip()
    pg.stop()
    path = os.path.join(pg.datadir, rel)
    pages = os.path.getsize(path) // 8192
    assert pages >= 2, "table %s has %d pages" % (table, pages)
    with open(path, "r+b") as f:
        f.seek((pages // 2) * 8192 + 2048)
        f.write(os.urandom(nbytes))
    pg.start()


def backup_fill_ids(pg, tmp, cfg, backup, db, query):
    """The fill ids inside a backup: decrypted with drctl (no daemon) and restored into a scratch
    database."""
    out = os.path.join(tmp, "backup.dump")
    p = subprocess.run([DRCTL, "backup", "decrypt", "--key-file", cfg["backup"]["key_file"],
                        os.path.join(cfg["backup"]["directory"], backup["name"]), "-o", out],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    scratch = db + "_in_backup"
    pg.psql("CREATE DATABASE %s" % scratch)
    subprocess.run([PG_BIN + "/pg_restore", "--no-owner", "-d", pg.conninfo(scratch), out],
                   check=True, capture_output=True)
    ids = set(pg.psql(query, db=scratch).split())
    pg.psql("DROP DATABASE %s" % scratch)
    return ids


def recover(pg, tmp, d, double, cfg, db, table, fill_query):
    """Backup, trade on, damage `table`, and follow the run the daemon starts by itself to its end.
    Returns (report, backup, the fill ids in the backup, how many fills the exchange had when
    trading was halted)."""
    bk = d.ctl_json("backup", "now", "--wait", timeout=120)
    assert bk["manifest"]["verification"]["container"] == "ok"
    # trading goes on (the loop), and a burst: more fills than one page of either platform, so the
    # reconcile has to read several pages of what the backup missed
    n0 = len(double.exchange.fills)
    wait_until(lambda: double.trade(10, forced=True) is not None and len(double.exchange.fills) >= n0 + 130,
               timeout=30, what="trades after the backup")
    corrupt_table(pg, db, table)
    wait_until(lambda: double.mode == "halted", timeout=15, what="trading halted by the daemon")
    at_halt = len(double.exchange.fills)      # a halted platform trades no more until resumed
    runs = wait_until(lambda: d.ctl_json("runs")["runs"], timeout=30, what="a recovery run")
    rid = runs[0]["run"]
    run = wait_until(lambda: (lambda r: r if r["status"] in ("succeeded", "failed", "aborted") else None)(
        d.ctl_json("run", rid)), timeout=180, what="the run to finish")
    assert run["status"] == "succeeded", json.dumps(run, indent=1)[-3000:] + d.log()[-5000:]
    wait_until(lambda: double.mode == "live", timeout=10, what="trading live again")
    with open(os.path.join(d.state_dir, "incidents", rid + ".json")) as f:
        rep = json.load(f)
    return rep, bk, backup_fill_ids(pg, tmp, cfg, bk, db, fill_query), at_halt


def zero_lost_fills(rep, double, in_backup, at_halt, db_ids):
    """The fills the recovery's reconcile replayed are exactly the exchange's fills (all made before
    the halt) that the restored backup lacked; after the run the database has every fill the
    exchange made, including those traded live since."""
    replayed = [a["fill_id"] for a in rep["reconcile"]["actions_taken"] if a.get("action") == "replayed_fill"]
    lacked = [f["fill_id"] for f in double.exchange.fills[:at_halt] if f["fill_id"] not in in_backup]
    assert lacked, "the backup has every fill: nothing was lost to recover"
    assert sorted(replayed) == sorted(lacked), (replayed, lacked)
    assert rep["reconcile"]["ready_to_trade"] is True
    assert db_ids == double.exchange.fill_ids()


def test_shivx_corruption_recovered_with_zero_lost_fills(pgm, tmp_path, daemons):
    pgm.psql("CREATE DATABASE shivx")
    dbl = shivx.ShivX(pgm.conninfo("shivx"), TOKEN, interval=0.05)
    try:
        dbl.trade(200, forced=True)              # enough rows that each table spans pages
        dbl.start_trading()
        dbl.pause_on_live = True
        cfg, env = adapt(example("shivx"), str(tmp_path), urls={"http://127.0.0.1:8000": dbl.url},
                         secrets={"shivx_api_token": TOKEN + "\n"})
        cfg = fast(cfg)
        cfg["database"]["conninfo"] = pgm.conninfo("shivx")
        cfg["detector"]["restart_command"] = pg_restart_command(pgm)
        d = Daemon(tmp_path, cfg)
        daemons.append(d)
        d.start(env=env)
        rep, bk, in_backup, at_halt = recover(pgm, str(tmp_path), d, dbl, cfg, "shivx", "trades",
                                              "SELECT trade_id FROM trades")
        # the replays went through ShivX's paging (25 trades a page) and its RFC 3339 window
        pages = [p for m, p, _ in dbl.requests if p.startswith("/api/trades")]
        assert any("cursor=25" in p for p in pages), pages[-5:]
        assert TOKEN not in d.log()
        # live again on the restored database: new trades are written into it
        assert len(dbl.trade(5, forced=True)) == 5
        assert dbl.idle(), dbl.last_db_error
        zero_lost_fills(rep, dbl, in_backup, at_halt, shivx.db_fill_ids(pgm, "shivx"))
        assert shivx.db_positions(pgm, "shivx") == shivx.exchange_positions(dbl)
        assert rep["status"] == "succeeded" and rep["rto_met"] is True
        assert all(c["status"] == "PASS" for c in rep["reconcile"]["checks"]), rep["reconcile"]["checks"]
        # every replayed trade carries ShivX's own fields: the fee and the order id from the exchange
        fid = next(a["fill_id"] for a in rep["reconcile"]["actions_taken"] if a.get("action") == "replayed_fill")
        f = next(x for x in dbl.exchange.fills if x["fill_id"] == fid)
        row = pgm.psql("SELECT order_id, fee FROM trades WHERE trade_id = '%s'" % fid, db="shivx")
        assert row == "%s|%s" % (f["order_id"], f["fee"]), row
        d.stop()
    finally:
        dbl.stop_trading()
        dbl.close()


def test_sofia_corruption_recovered_with_zero_lost_fills(pgm, tmp_path, daemons):
    pgm.psql("CREATE DATABASE sofia")
    dbl = sofia.Sofia(pgm.conninfo("sofia"), str(tmp_path / "state"), interval=0.05)
    try:
        tool = base.write_tool(str(tmp_path / "bin"), "sofia-trading-mode", dbl)
        dbl.trade(200, forced=True)
        dbl.start_trading()
        dbl.pause_on_live = True
        cfg, env = adapt(example("sofia"), str(tmp_path), urls={"http://127.0.0.1:8023": dbl.url},
                         tools={"/usr/local/sbin/sofia-trading-mode": tool})
        cfg = fast(cfg)
        cfg["database"]["conninfo"] = pgm.conninfo("sofia")
        cfg["detector"]["restart_command"] = pg_restart_command(pgm)
        d = Daemon(tmp_path, cfg)
        daemons.append(d)
        d.start(env=env)
        rep, bk, in_backup, at_halt = recover(pgm, str(tmp_path), d, dbl, cfg, "sofia", "fills",
                                              "SELECT fill_id FROM fills")
        # the kill switch was the halt; shadow, then live, through TRADING_MODE
        assert dbl.count("POST", "/kill-switch/activate") >= 1
        modes = [c[1] for c in dbl.tool_calls]
        assert modes[0] == "shadow" and modes[-1] == "live" and modes.count("live") == 1, modes
        # the fills were read in pages of 100 by time (since_ms advanced to the newest fill)
        since = [int(re.search(r"since_ms=(\d+)", p).group(1)) for m, p, _ in dbl.requests if "/exchange/fills" in p]
        assert len(set(since)) >= 2, since
        assert len(dbl.trade(5, forced=True)) == 5
        assert dbl.idle(), dbl.last_db_error
        zero_lost_fills(rep, dbl, in_backup, at_halt, sofia.db_fill_ids(pgm, "sofia"))
        # Sofia keeps average prices: quantity and price both match the exchange's
        assert sofia.db_positions(pgm, "sofia") == sofia.exchange_positions(dbl)
        pm = next(c for c in rep["reconcile"]["checks"] if c["name"] == "positions_match")
        assert pm["status"] == "PASS", pm
        # both state files are in every backup set
        ents = sorted(os.path.basename(e["path"]) for e in bk["manifest"]["state_files"]["entries"])
        assert ents == ["kill_switch_state.json", "shadow_orders.jsonl"], bk["manifest"]["state_files"]
        with open(dbl.kill_switch_file) as f:
            assert json.load(f)["state"] == "OFF"
        d.stop()
    finally:
        dbl.stop_trading()
        dbl.close()


# ---- the command-driven platforms: halt, status, resume, positions and fills -------------------

T0 = (int(time.time()) - 3 * 3600) * 1000      # the doubles' history: 3 hours ago, a fill a minute


def command_platform(name, tmp, pgm, prefix="cmd"):
    """(double, configuration, environment, database) for one command-driven platform, its
    database holding the first 4 of the exchange's 6 fills."""
    tmp = str(tmp)
    bindir = os.path.join(tmp, "bin")
    db = prefix + "_" + name
    pgm.psql("DROP DATABASE IF EXISTS %s" % db)
    pgm.psql("CREATE DATABASE %s" % db)
    if name == "cryptoorchestrator":
        dbl = cryptoorchestrator.CryptoOrchestrator(API_KEY, HMAC_KEY, T0)
        tools = {"/usr/local/bin/kubectl": base.write_tool(bindir, "kubectl", dbl)}
        urls = {"https://fapi.exchange.example": dbl.url}
        secrets = {"exchange_api_key": API_KEY, "exchange_api_secret": HMAC_KEY}
        cryptoorchestrator.load(pgm, db, dbl, 4)
    elif name == "genesis":
        dbl = genesis.Genesis(T0)
        tools = {"/usr/bin/systemctl": base.write_tool(bindir, "systemctl", dbl),
                 "/opt/genesis/venv/bin/python": base.write_tool(bindir, "python", dbl)}
        urls = {"https://api.genesis.exchange.example": dbl.url}
        secrets = {}
        genesis.load(pgm, db, dbl, 4)
    else:
        dbl = smallbot.SmallBot(T0)
        tools = {"/usr/local/bin/docker-compose": base.write_tool(bindir, "docker-compose", dbl)}
        urls = {"https://exchange.example": dbl.url}
        secrets = {}
        smallbot.load(pgm, db, dbl, 4)
    cfg, env = adapt(example(name), tmp, urls=urls, tools=tools, secrets=secrets)
    cfg["database"]["conninfo"] = pgm.conninfo(db)
    if "conninfo" in cfg.get("backup", {}):
        cfg["backup"]["conninfo"] = pgm.conninfo(db)
    cfg.pop("platform", None)                 # no health endpoint in these doubles
    cfg.pop("detector", None)                 # nor a server to restart
    cfg["venue"].update({"timeout": "2s", "retry_base": "100ms", "retry_cap": "500ms", "status_interval": "300ms"})
    return dbl, cfg, env, db


def venue_check(d):
    p = d.ctl("--json", "venue", "check")
    return p.returncode, json.loads(p.stdout)


def trading(d):
    return d.ctl_json("trading")


@pytest.mark.parametrize("name", ["cryptoorchestrator", "genesis", "smallbot"])
def test_command_platform_halt_status_reconcile_resume(pgm, tmp_path, daemons, name):
    dbl, cfg, env, db = command_platform(name, tmp_path, pgm)
    try:
        d = Daemon(tmp_path, cfg)
        daemons.append(d)
        d.start(env=env)
        # venue check: the mode from the command's answer, the exchange's positions and its fills
        rc, vc = venue_check(d)
        assert rc == 0 and vc["ok"] is True, vc
        assert vc["status"]["mode"] == "live", vc["status"]
        held = {dbl.sym(s): base.num(q) for s, q, _ in dbl.exchange.position_list() if q != 0}
        got = {p["symbol"]: p["quantity"] for p in vc["positions"]["positions"] if float(p["quantity"]) != 0}
        assert {k: float(v) for k, v in got.items()} == {k: float(v) for k, v in held.items()}, vc["positions"]
        assert vc["fills"]["count"] == 6, vc["fills"]
        # halt: the command runs, the status command confirms
        assert wait_until(lambda: trading(d)["mode"] == "live", timeout=10, what="mode live")
        p = d.ctl("halt", "-r", "platform test")
        assert p.returncode == 0, p.stdout + p.stderr
        assert dbl.running is False
        t = trading(d)
        assert t["mode"] == "halted" and t["halted"] is True, t
        # resume is refused until a reconcile passed; the reconcile replays the 2 fills the
        # database lacks, exactly, in the platform's schema
        assert d.ctl("resume").returncode != 0
        p = d.ctl("--json", "reconcile", "--since", str(T0))
        rep = json.loads(p.stdout)
        assert p.returncode == 0 and rep["ready_to_trade"] is True, json.dumps(rep, indent=1)
        replayed = sorted(a["fill_id"] for a in rep["actions_taken"] if a["action"] == "replayed_fill")
        want = [f["fill_id"] for f in dbl.exchange.fills[4:]]
        if name == "cryptoorchestrator":          # the exchange's ids are numbers
            want = [str(1000 + int(x[-6:])) for x in want]
        assert replayed == sorted(want), rep["actions_taken"]
        assert all(c["status"] == "PASS" for c in rep["checks"]), rep["checks"]
        # a second reconcile replays nothing (the replay is idempotent)
        again = d.ctl_json("reconcile", "--since", str(T0))
        assert not [a for a in again["actions_taken"] if a["action"] == "replayed_fill"], again
        p = d.ctl("resume")
        assert p.returncode == 0, p.stdout + p.stderr
        assert dbl.running is True
        wait_until(lambda: trading(d)["mode"] == "live", timeout=10, what="mode live after resume")
        # no paper mode, no shadow action: the example's comment says a recovery run would stop
        # halted before resume_shadow, and the dry run says the same
        assert "shadow" not in cfg["venue"]
        assert d.ctl("backup", "now", "--wait", timeout=60).returncode == 0
        p = d.ctl("execute", "--scenario", "database_corruption", "--dry-run")
        assert p.returncode == 0 and "resume_shadow      no 'shadow' action is configured: this step would fail" \
            in p.stdout, p.stdout + p.stderr
        d.stop()
    finally:
        dbl.close()


def test_genesis_emergency_close_flattens_after_a_confirmed_halt(pgm, tmp_path, daemons):
    dbl, cfg, env, db = command_platform("genesis", tmp_path, pgm)
    try:
        d = Daemon(tmp_path, cfg)
        daemons.append(d)
        d.start(env=env)
        wait_until(lambda: trading(d)["mode"] == "live", timeout=10, what="mode live")
        p = d.ctl("emergency-close", "-r", "security breach drill")
        assert p.returncode == 0, p.stdout + p.stderr
        assert dbl.running is False
        assert dbl.closed and all(q == 0 for _, q, _ in dbl.exchange.position_list())
        # the close ran after the stop, never while genesis-trading was active
        calls = [c[1:] for c in dbl.tool_calls if c[1:2] != ["show"]]
        assert calls[0] == ["stop", "genesis-trading"] and calls[1][:3] == ["-m", "genesis.dr", "emergency-close"], calls
        # the operator's reason reaches the platform's own record (--reason "{{reason}}")
        assert "security breach drill" in calls[1][4], calls[1]
        d.stop()
    finally:
        dbl.close()


# ---- bad answers: a clear error, and trading stays halted ---------------------------------------

@pytest.fixture(scope="module")
def faulty(pgm, tmp_path_factory):
    """One daemon per platform for the fault tests, each halted, its double reset between tests."""
    made = {}

    def get(name):
        if name in made:
            return made[name]
        tmp = str(tmp_path_factory.mktemp(name))
        if name == "shivx":
            pgm.psql("CREATE DATABASE faults_shivx")
            dbl = shivx.ShivX(pgm.conninfo("faults_shivx"), TOKEN)
            dbl.trade(8, forced=True)
            cfg, env = adapt(example("shivx"), tmp, urls={"http://127.0.0.1:8000": dbl.url},
                             secrets={"shivx_api_token": TOKEN})
            cfg["database"]["conninfo"] = pgm.conninfo("faults_shivx")
        elif name == "sofia":
            pgm.psql("CREATE DATABASE faults_sofia")
            dbl = sofia.Sofia(pgm.conninfo("faults_sofia"), os.path.join(tmp, "state"))
            dbl.trade(8, forced=True)
            tool = base.write_tool(os.path.join(tmp, "bin"), "sofia-trading-mode", dbl)
            cfg, env = adapt(example("sofia"), tmp, urls={"http://127.0.0.1:8023": dbl.url},
                             tools={"/usr/local/sbin/sofia-trading-mode": tool})
            cfg["database"]["conninfo"] = pgm.conninfo("faults_sofia")
        else:
            dbl, cfg, env, _ = command_platform(name, tmp, pgm, prefix="faults")
        cfg.pop("platform", None)
        cfg.pop("detector", None)
        cfg["venue"].update({"timeout": "2s", "retry_base": "100ms", "retry_cap": "500ms",
                             "status_interval": "300ms"})
        d = Daemon(tmp, cfg)
        d.start(env=env)
        p = d.ctl("halt", "-r", "fault tests")
        assert p.returncode == 0, p.stdout + p.stderr + d.log()[-3000:]
        made[name] = (d, dbl)
        return made[name]
    yield get
    for d, dbl in made.values():
        try:
            d.stop()
        finally:
            d.cleanup()
            if isinstance(dbl, base.Trading):
                dbl.stop_trading()
            dbl.close()


def running_tools(dbl):
    """Processes running one of the double's fake tools (read from /proc)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open("/proc/%s/cmdline" % pid, "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(a in dbl.tool_paths for a in argv):
            found.append(int(pid))
    return found


def stays_halted(d, dbl):
    """Fail closed: the platform is still halted and a resume is refused (no passing reconcile)."""
    p = d.ctl("resume")
    assert p.returncode != 0, p.stdout
    assert trading(d)["halted"] is True
    return True


@pytest.mark.parametrize("name", ["shivx", "sofia"])
def test_venue_check_shows_the_trading_platforms_positions_and_fills(faulty, name):
    d, dbl = faulty(name)
    rc, vc = venue_check(d)
    assert rc == 0 and vc["ok"] is True, vc
    assert vc["status"]["mode"] == "halted", vc["status"]
    # the mapped positions are the exchange's, exact (quantities as decimal text; ShivX's avg_px is
    # a JSON number, Sofia's entry_price a string)
    want = {s: (base.num(q), a) for s, q, a in dbl.exchange.position_list() if q != 0}
    got = {p["symbol"]: (p["quantity"], p["avg_price"]) for p in vc["positions"]["positions"]}
    assert {k: v[0] for k, v in got.items() if float(v[0]) != 0} == {k: v[0] for k, v in want.items()}, got
    assert all(float(got[k][1]) == float(v[1]) for k, v in want.items()), (got, want)
    # fills of the last reconcile.default_since (24h): the 8 the double made, canonical
    assert vc["fills"]["count"] == 8, vc["fills"]
    f = vc["fills"]["fills"][0]
    assert f["side"] in ("buy", "sell") and f["executed_at"].endswith("Z"), f


@pytest.mark.parametrize("name, fault, action, want", [
    ("shivx", "missing_field", "fills",
     'fills[0].price (path "price"): missing in the answer of fills (GET http://127.0.0.1:'),
    ("sofia", "string_not_number", "positions",
     'positions[0].quantity (path "size"): not a number in the answer of positions (GET http://127.0.0.1:'),
    ("genesis", "bad_time", "fills",
     'fills[5].executed_at (path "time"): not an RFC 3339 time'),
    ("shivx", "not_json", "fills", "fills: the answer of fills (GET http://127.0.0.1:"),
    ("sofia", "not_json", "positions", "positions: the answer of positions (GET http://127.0.0.1:"),
    ("smallbot", "string_not_number", "fills", 'fills[0].quantity (path "amount"): not a number'),
])
def test_a_bad_answer_fails_the_reconcile_closed_naming_field_and_path(faulty, name, fault, action, want):
    d, dbl = faulty(name)
    dbl.fault = fault
    try:
        p = d.ctl("--json", "reconcile", "--since", str(T0))
        rep = json.loads(p.stdout)
        assert p.returncode == 1 and rep["ready_to_trade"] is False, rep
        assert want in rep["error"]["message"], rep["error"]
        assert not [a for a in rep.get("actions_taken", []) if a["action"] == "replayed_fill"], rep
        stays_halted(d, dbl)
        # venue check shows the same error for the same action, and exits 1
        rc, vc = venue_check(d)
        assert rc == 1 and vc[action]["ok"] is False and want in vc[action]["error"], vc[action]
    finally:
        dbl.fault = None


@pytest.mark.parametrize("fault, want", [
    ("tool_exit1", "the venue command exited with status 1: kubectl: error: the server is currently unable"),
    ("tool_hang", "the venue command timed out after 2000 ms (its process group was killed)"),
])
def test_a_failing_or_hanging_command_is_a_failed_action_and_trading_stays_halted(faulty, fault, want):
    d, dbl = faulty("cryptoorchestrator")
    dbl.fault = fault
    try:
        started = time.monotonic()
        rc, vc = venue_check(d)
        took = time.monotonic() - started
        assert rc == 1 and vc["status"]["ok"] is False, vc["status"]
        assert vc["status"]["request"] == "command " + dbl.tool_paths[0], vc["status"]
        if fault == "tool_hang":
            assert took < 2 + 4, took           # venue.timeout 2s, SIGTERM then SIGKILL a second later
            # the whole process group is gone: no fake kubectl left sleeping
            wait_until(lambda: not running_tools(dbl), timeout=5, what="the hanging kubectl killed")
        # a resume is a command too: it fails, and trading stays halted
        p = d.ctl("resume", "--force", "-r", "fault test")
        assert p.returncode != 0, p.stdout
        assert trading(d)["halted"] is True
        # the error says what happened (last, so that the checks above run in either case)
        assert want in vc["status"]["error"], vc["status"]
        assert want in (p.stdout + p.stderr), p.stdout + p.stderr
    finally:
        dbl.fault = None
