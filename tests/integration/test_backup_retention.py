"""
Retention in the running daemon: after each successful backup, backups older than
`retention.max_age` are deleted (the newest and the newest verified always kept); while a recovery
run is active (here a manual database_corruption run held at its first gate, having selected a
backup) the pass is skipped with a notice, so the backup the run may restore stays; once the run
has ended, the next backup's pass deletes what is due.
"""
import os
import time
from datetime import datetime

import pytest

from drsup import Daemon, wait_until
from fakevenue import FakeVenue

PGBIN = "/usr/lib/postgresql/15/bin"
SKIPPED = "retention skipped: a recovery run is active"


@pytest.fixture
def venue():
    v = FakeVenue(mode="live")
    yield v
    v.close()


def make_key(path):
    with open(path, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    os.chmod(path, 0o600)
    return path


def names(d):
    return [b["name"] for b in d.ctl_json("backups")["backups"]]


def on_disk(directory):
    return sorted(f for f in os.listdir(directory) if f.endswith(".manifest.json"))


def backup_now(d):
    """A verified backup; returns (name, its start in Unix seconds)."""
    res = d.ctl_json("--timeout", "120s", "backup", "now", "--wait", timeout=150)
    assert res["manifest"]["verification"]["container"] == "ok", res
    started = datetime.fromisoformat(res["manifest"]["started_at"].replace("Z", "+00:00"))
    return res["name"], int(started.timestamp())


def past_max_age(started):
    """Wait until a backup that started at `started` is older than max_age (1 s) on the daemon's
    one-second clock."""
    wait_until(lambda: int(time.time()) - started > 1, timeout=5, interval=0.05, what="max_age to pass")


def test_retention_waits_for_an_active_recovery_run(daemons, tmp_path, pg, venue):
    # The run protects (renames as evidence) 'trading'; the backups are of 'shop', so that they keep
    # working while the run holds at its gate.
    pg.psql("CREATE DATABASE shop")
    pg.psql("CREATE DATABASE trading")
    pg.psql("CREATE TABLE ledger (id int PRIMARY KEY); INSERT INTO ledger SELECT generate_series(1, 100);",
            db="shop")
    directory = os.path.join(str(tmp_path), "backups")
    d = Daemon(tmp_path, {
        "database": {"conninfo": pg.conninfo("shop")},
        "venue": venue.config(),
        "backup": {"directory": directory, "prefix": "shop", "conninfo": pg.conninfo("shop"),
                   "pg_dump": os.path.join(PGBIN, "pg_dump"),
                   "pg_restore": os.path.join(PGBIN, "pg_restore"),
                   "key_file": make_key(os.path.join(str(tmp_path), "backup.key")),
                   "retention": {"max_age": "1s"}},
        "scenarios": {"database": "trading",
                      "database_corruption": {"validation_queries": ["SELECT count(*) FROM ledger"]}},
    })
    daemons.append(d)
    d.start()
    wait_until(lambda: not d.ctl_json("runs")["loading"], what="runs loaded")

    # Without a run, retention deletes the backup that has aged past max_age.
    a, a_started = backup_now(d)
    past_max_age(a_started)
    b, b_started = backup_now(d)
    wait_until(lambda: names(d) == [b] and len(on_disk(directory)) == 1, what="'%s' deleted" % a)
    assert SKIPPED not in d.log()

    # A manual run stops at its first gate, having selected b (the newest verified backup).
    rid = d.ctl_json("execute", "--scenario", "database_corruption", "--manual")["run"]
    wait_until(lambda: d.ctl_json("run", rid)["status"] == "waiting_approval", timeout=30,
               what="run at its first gate")
    past_max_age(b_started)
    c, c_started = backup_now(d)
    # b is past max_age and neither the newest nor the newest verified: only the run keeps it.
    # (The pass runs before `backup now --wait` answers, so the catalog already shows its outcome.)
    assert names(d) == [b, c] and len(on_disk(directory)) == 2
    assert os.path.exists(os.path.join(directory, b))
    wait_until(lambda: SKIPPED in d.log(), what="retention skipped notice")
    assert d.log().count(SKIPPED) == 1

    # Once the run has ended, the next backup's retention pass deletes what is due.
    assert d.ctl("abort", rid, "--reason", "test over").returncode == 0
    wait_until(lambda: d.ctl_json("run", rid)["status"] == "aborted", what="run aborted")
    past_max_age(c_started)
    e, _ = backup_now(d)
    wait_until(lambda: names(d) == [e] and len(on_disk(directory)) == 1, what="'%s' and '%s' deleted" % (b, c))
    assert not os.path.exists(os.path.join(directory, b))
    assert d.log().count(SKIPPED) == 1
    d.stop()
