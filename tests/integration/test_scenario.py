"""
The database_corruption scenario end to end: a real PostgreSQL 15, a real verified backup made by the
daemon, the fake venue recording every halt/shadow/resume, and the daemon run through drctl.

- end to end: trading halted, damaged database kept under a new name, restored database in place
  with the backup's data, reconcile called (the temporary stub until reconcile.c lands), shadow then
  live, incident report (RTO/RPO, every step ok);
- dry run changes nothing; manual mode stops at every gate (approve continues, abort leaves trading
  halted); restore failure puts the original back, stays halted, critical event;
- crash safety (test_scenario_crash.py): kill -9 at every journal boundary.
"""
import json
import os

import pytest

from drsup import Daemon, wait_until
from fakevenue import FakeVenue

PGBIN = "/usr/lib/postgresql/15/bin"


def make_key(path):
    if os.path.exists(path):
        return path
    with open(path, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    os.chmod(path, 0o600)
    return path


SCHEMA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tools", "paper_venue_schema.sql")


def fill_db(pg, db="shop", rows=200):
    """A 'ledger' of known rows, plus the platform's reference schema (orders, fills, positions),
    empty like the fake venue's exchange, so the real reconcile finds both sides in agreement.
    The replay of missing fills is tested with the paper venue in test_e2e_corruption.py."""
    pg.psql("CREATE DATABASE %s" % db)
    pg.psql("CREATE TABLE ledger (id int PRIMARY KEY, sym text NOT NULL, qty numeric(12,2));"
            "INSERT INTO ledger SELECT i, 'SYM' || (i %% 7), i * 1.25 FROM generate_series(1, %d) i;" % rows, db=db)
    with open(SCHEMA) as f:
        pg.psql(f.read(), db=db)


# One short post-resume check (the watch is tested in test_post_resume_watch.py): every run here
# goes through it, and the crash matrix (test_scenario_crash.py) kills the daemon inside it too.
SHORT_WATCH = {"post_resume_checks": ["200ms"]}


def scenario_config(pg, tmp_path, venue, reconcile=None, **scn):
    return {
        "reconcile": dict(reconcile if reconcile is not None else SHORT_WATCH),
        "database": {"conninfo": pg.conninfo("shop"), "probe_interval": "200ms"},
        "venue": venue.config(),
        "backup": {
            "directory": os.path.join(str(tmp_path), "backups"),
            "prefix": "shop",
            "conninfo": pg.conninfo("shop"),
            "pg_dump": os.path.join(PGBIN, "pg_dump"),
            "pg_restore": os.path.join(PGBIN, "pg_restore"),
            "key_file": make_key(os.path.join(str(tmp_path), "backup.key")),
        },
        "scenarios": {"database_corruption": dict({
            "rto": "5m", "rpo": "1h",
            "validation_queries": ["SELECT count(*) FROM ledger", "SELECT count(*) > 0 FROM ledger"],
        }, **scn)},
    }


class Env:
    def __init__(self, pg, tmp_path, venue, reconcile=None, **scn):
        self.pg = pg
        self.venue = venue
        self.d = Daemon(tmp_path, scenario_config(pg, tmp_path, venue, reconcile, **scn))

    def databases(self):
        out = self.pg.psql("SELECT datname FROM pg_database WHERE datname LIKE 'shop%' ORDER BY 1")
        return [l.strip() for l in out.splitlines() if l.strip()]

    def count(self, db="shop"):
        return int(self.pg.psql("SELECT count(*) FROM ledger", db=db).strip())

    def calls(self):
        """The venue's state-changing calls, in order."""
        with self.venue.lock:
            return [p.split("?")[0] for m, p, _ in self.venue.requests if m == "POST"]

    def run(self, rid):
        return self.d.ctl_json("run", rid)

    def wait_status(self, rid, statuses, timeout=60):
        return wait_until(lambda: (lambda r: r if r["status"] in statuses else None)(self.run(rid)),
                          timeout=timeout, what="run %s in %s" % (rid, statuses))


@pytest.fixture
def venue():
    v = FakeVenue()
    yield v
    v.close()


@pytest.fixture
def env(pg, tmp_path, venue):
    fill_db(pg)
    e = Env(pg, tmp_path, venue)
    yield e
    e.d.cleanup()


def loaded(d):
    """Unfinished runs are looked for at start; triggers are refused (busy) until then."""
    wait_until(lambda: not d.ctl_json("runs")["loading"], what="runs loaded")
    return d


def backup_now(d):
    res = d.ctl_json("backup", "now", "--wait", timeout=120)
    assert res["manifest"]["verification"]["container"] == "ok"
    return res


def test_end_to_end(env):
    d = env.d.start()
    b = backup_now(d)
    # Trading continues after the backup: these rows are NOT in the backup (the RPO window).
    env.pg.psql("INSERT INTO ledger SELECT i, 'LATE', 1 FROM generate_series(1001, 1010) i", db="shop")
    assert env.count() == 210
    r = d.ctl_json("execute", "--scenario", "database_corruption", "--reason", "checksum failures on orders")
    rid = r["run"]
    assert r["mode"] == "automatic"
    run = env.wait_status(rid, ["succeeded", "failed", "aborted"])
    assert run["status"] == "succeeded", json.dumps(run, indent=1) + d.log()[-3000:]
    steps = [s["step"] for s in run["steps"]]
    assert steps == ["halt_trading", "preserve_evidence", "select_backup", "restore_database", "validate_restore",
                     "switch_database", "reconcile", "resume_shadow", "resume_live", "post_resume_watch"]
    assert all(s["outcome"] == "ok" for s in run["steps"])
    # Halt first, then shadow, then live: never a resume before the reconcile.
    assert env.calls() == ["/halt", "/shadow", "/resume"]
    assert env.venue.mode == "live"
    tag = rid.split("-")[0].lower() + "_" + rid.split("-")[-1]
    assert env.databases() == ["shop", "shop_damaged_" + tag]
    assert env.count("shop") == 200  # the backup's data
    # The damaged database is kept, with the rows written after the backup, and refuses connections.
    allow = env.pg.psql("SELECT datallowconn FROM pg_database WHERE datname = 'shop_damaged_%s'" % tag).strip()
    assert allow == "f"
    # Incident report.
    rep_path = os.path.join(d.state_dir, "incidents", rid + ".json")
    rep = wait_until(lambda: os.path.exists(rep_path) and json.load(open(rep_path)), what="incident report")
    assert rep["status"] == "succeeded" and rep["state"] == "watch_passed"
    assert rep["backup"]["name"] == b["name"]
    assert rep["rto_ms"] > 0 and rep["rto_met"] is True
    assert rep["rpo_ms"] >= 0 and rep["rpo_met"] is True
    assert rep["restore_point_ms"] == rep["backup"]["started_ms"]
    assert rep["reconcile"]["ready_to_trade"] is True
    assert [v["value"] for v in rep["validation"]] == ["200", "t"]
    assert len(rep["timeline"]) == 10 and all(s["outcome"] == "ok" for s in rep["timeline"])
    assert rep["post_resume_watch"]["status"] == "passed"
    assert [c["status"] for c in rep["post_resume_watch"]["checks"]] == ["PASS"]
    txt = d.ctl("incident", rid)
    assert txt.returncode == 0 and "RTO" in txt.stdout and "met" in txt.stdout and "resume_live" in txt.stdout
    lst = d.ctl_json("incidents")["incidents"]
    assert lst[0]["run"] == rid and lst[0]["rto_met"] is True
    # Events: the start is critical with the scenario condition; success resolves it.
    log = d.log()
    assert "critical [scenario.start] scenario database_corruption started (run %s" % rid in log
    assert "[scenario.end] resolved: run %s of database_corruption succeeded" % rid in log
    assert d.notify.has("STATUS=recovery " + rid)
    d.stop()


def test_dry_run_changes_nothing(env):
    d = loaded(env.d.start())
    b = backup_now(d)
    before = env.databases()
    p = d.ctl("execute", "--scenario", "database_corruption", "--dry-run")
    assert p.returncode == 0, p.stderr
    assert b["name"] in p.stdout and "/halt" in p.stdout and "pg_restore" in p.stdout
    plan = d.ctl_json("execute", "--scenario", "database_corruption", "--dry-run")["plan"]
    assert [s["step"] for s in plan][-1] == "post_resume_watch" and len(plan) == 10
    assert "+200ms after resume_live" in plan[-1]["action"]
    assert env.calls() == [] and env.venue.mode == "live"
    assert env.databases() == before
    assert d.ctl_json("runs")["runs"] == []
    assert not os.listdir(os.path.join(d.state_dir, "runs"))
    d.stop()


def test_manual_mode_stops_at_every_gate(env):
    d = loaded(env.d.start())
    backup_now(d)
    rid = d.ctl_json("execute", "--scenario", "database_corruption", "--manual")["run"]
    gates = []
    for _ in range(3):
        r = env.wait_status(rid, ["waiting_approval"])
        nxt = [s["step"] for s in r["steps"]][-1] if r["steps"] else None
        gates.append(r["state"])
        # trading is still halted while waiting; an operator resume is refused
        assert env.venue.mode in ("halted", "shadow")
        assert d.ctl("resume").returncode == 1
        assert d.ctl("approve", rid).returncode == 0
        wait_until(lambda: env.run(rid)["state"] != gates[-1], what="past the gate after %s" % nxt)
    assert gates == ["backup_selected", "validated", "trading_in_shadow"]
    assert env.wait_status(rid, ["succeeded", "failed"])["status"] == "succeeded"
    assert env.calls() == ["/halt", "/shadow", "/resume"]
    d.stop()


def test_manual_abort_leaves_trading_halted(env):
    d = loaded(env.d.start())
    backup_now(d)
    rid = d.ctl_json("execute", "--scenario", "database_corruption", "--manual")["run"]
    env.wait_status(rid, ["waiting_approval"])
    assert d.ctl("abort", rid, "--reason", "operator wants a look").returncode == 0
    r = env.wait_status(rid, ["aborted"])
    assert r["status"] == "aborted"
    assert env.venue.mode == "halted" and env.calls() == ["/halt"]
    assert d.ctl_json("trading")["halted"] is True
    d.stop()


def test_restore_failure_puts_the_original_back(env):
    d = loaded(env.d.start())
    b = backup_now(d)
    # Corrupt the backup file (the manifest still says verified): the restore must fail.
    path = os.path.join(d.config["backup"]["directory"], b["name"])
    with open(path, "r+b") as f:
        f.seek(200)
        f.write(b"\xff" * 64)
    s = d.connect(timeout=30)
    s.sendall(b'{"id":1,"cmd":"watch"}\n')
    _, buf = d.read_line(s)
    rid = d.ctl_json("execute", "--scenario", "database_corruption")["run"]
    r = env.wait_status(rid, ["succeeded", "failed", "aborted"])
    assert r["status"] == "failed" and r["state"] == "stayed_halted"
    outcomes = {st["step"]: st["outcome"] for st in r["steps"]}
    assert outcomes["restore_database"] == "failed" and outcomes["put_back_original"] == "ok"
    assert env.databases()[0] == "shop" and not any("_damaged_" in x for x in env.databases())
    # the failed restore dropped its partial database
    assert not any("_restore_" in x for x in env.databases()), env.databases()
    assert env.count() == 200 and env.pg.psql("SELECT datallowconn FROM pg_database WHERE datname='shop'") == "t"
    assert env.venue.mode == "halted" and env.calls() == ["/halt"]
    events = []
    while not any(e["kind"] == "scenario.end" for e in events):
        msg, buf = d.read_line(s, buf)
        events.append(msg["event"])
    assert any(e["severity"] == "critical" and e["kind"] == "scenario.step" and "restore_database" in e["summary"]
               for e in events)
    s.close()
    d.stop()


def test_each_transition_is_logged_once_with_the_run_fields(env):
    d = loaded(env.d.start())
    backup_now(d)
    rid = d.ctl_json("execute", "--scenario", "database_corruption", "--manual")["run"]
    env.wait_status(rid, ["waiting_approval"])
    sentence = "trading is halted and the venue confirms it"
    wait_until(lambda: sentence in d.log(), what="the halt transition in the log")
    # The step's start quotes the sentence too; the transition itself is one line.
    lines = [ln for ln in d.log().splitlines() if sentence in ln and "started (attempt" not in ln]
    assert len(lines) == 1, lines
    assert "[scenario.transition]" in lines[0], lines
    assert lines[0].endswith(f"(run={rid} scenario=database_corruption step=halt_trading)"), lines
    started = [ln for ln in d.log().splitlines() if "step 'preserve_evidence' started" in ln]
    assert len(started) == 1 and f"run={rid} scenario=database_corruption step=preserve_evidence" in started[0], started
    assert d.ctl("abort", rid, "--reason", "done looking").returncode == 0
    env.wait_status(rid, ["aborted"])
    d.stop()
