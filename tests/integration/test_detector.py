"""
The detector against a real PostgreSQL: a database that is merely stopped halts trading within the
detection budget and is restarted by the configured command, without any restore; a data page of
a table damaged for real (checksums on) is seen as XX001 twice and starts database_corruption.
"""
import os
import time

import pytest

from drsup import Daemon, wait_until
from fakevenue import FakeVenue
from pgharness import PG_BIN


@pytest.fixture
def venue():
    v = FakeVenue(mode="live")
    yield v
    v.close()


@pytest.fixture
def daemons():
    made = []
    yield made
    for d in made:
        d.cleanup()


def as_pg_user(argv):
    return (["/usr/sbin/runuser", "-u", "postgres", "--"] + argv) if os.geteuid() == 0 else argv


def detector(d):
    return d.ctl_json("status")["detector"]


def test_stopped_database_halts_fast_and_is_restarted_not_restored(daemons, tmp_path, pg, venue):
    restart = as_pg_user([os.path.join(PG_BIN, "pg_ctl"), "-D", pg.datadir, "-l", pg.logfile, "-w",
                          "-t", "30", "-o", f"-p {pg.port}", "start"])
    d = Daemon(tmp_path, {
        "database": {"conninfo": pg.conninfo(), "probe_interval": "250ms", "probe_timeout": "1s",
                     "connect_timeout": "1s"},
        "venue": venue.config(),
        "detector": {"halt_after": 2, "restart_command": restart, "restart_attempts": 3,
                     "restart_delay": "300ms", "restart_timeout": "30s", "server_log": pg.logfile,
                     "corruption_queries": ["SELECT count(*) FROM pg_class"],
                     "corruption_interval": "500ms"},
    })
    daemons.append(d)
    d.start()
    wait_until(lambda: detector(d).get("checksum_failures") == 0, timeout=10, what="first probe")
    pg.stop(mode="immediate")
    stopped = time.monotonic()
    wait_until(lambda: venue.mode == "halted", timeout=5, interval=0.01, what="trading halted")
    halt_latency = time.monotonic() - stopped
    # Budget: 2 failed probes at 250 ms, plus the halt round trip; generous for a loaded CI box.
    assert halt_latency < 2.0, halt_latency
    assert "database unreachable" in venue.halt_bodies[0]["reason"]
    # The restart command brings it back; trading stays halted pending reconcile.
    wait_until(lambda: pg.is_running() and detector(d)["phase"] == "healthy", timeout=30,
               what="database restarted and seen healthy")
    log = d.log()
    assert "restarting the database (attempt 1 of 3)" in log
    assert "database back" in log and "trading stays halted until a reconcile passes" in log
    assert "corruption" not in log.split("restarting the database")[1].lower().replace(
        "detector.corruption", "")  # nothing about corruption after the outage
    st = detector(d)
    assert st["corruption_signals"] == 0 and "scenario_run" not in st
    assert venue.mode == "halted" and d.ctl_json("trading")["halted"] is True
    d.stop()


def test_damaged_page_is_confirmed_and_starts_the_corruption_scenario(daemons, tmp_path, pg, venue):
    pg.psql("CREATE TABLE orders (id int PRIMARY KEY, client_order_id text, pad text);"
            "INSERT INTO orders SELECT g, 'c' || g, repeat('x', 200) FROM generate_series(1, 3000) g;"
            "CHECKPOINT;")
    rel = pg.psql("SELECT pg_relation_filepath('orders')")
    d = Daemon(tmp_path, {
        "database": {"conninfo": pg.conninfo(), "probe_interval": "250ms", "probe_timeout": "1s",
                     "connect_timeout": "1s"},
        "venue": venue.config(),
        "detector": {"halt_after": 2, "corruption_queries": ["SELECT count(*) FROM orders"],
                     "corruption_interval": "300ms"},
    })
    daemons.append(d)
    d.start()
    wait_until(lambda: detector(d).get("last_check_ok") is True, timeout=10, what="a clean check")
    # Damage a page in the middle of the table's file, for real.
    pg.stop()
    path = os.path.join(pg.datadir, rel)
    size = os.path.getsize(path)
    assert size >= 16 * 8192
    with open(path, "r+b") as f:
        f.seek((size // 8192 // 2) * 8192 + 3000)
        f.write(os.urandom(200))
    pg.start()
    st = wait_until(lambda: (lambda s: s if s["phase"] == "corruption_confirmed" else None)(detector(d)),
                    timeout=20, what="corruption confirmed")
    assert "XX001" in st["first_signal"] and "invalid page" in st["first_signal"]
    assert st["corruption_signals"] >= 2
    # The confirmation started a database_corruption run (its full course is tested in
    # test_e2e_corruption.py; here there is no backup to restore, so it ends halted).
    assert st.get("trigger_result") == "ok" and st.get("scenario_run"), st
    log = d.log()
    assert "corruption suspected" in log
    assert "corruption confirmed" in log and "starting database_corruption" in log
    assert venue.mode == "halted"
    assert any("suspected database corruption" in b["reason"] or "database unreachable" in b["reason"]
               for b in venue.halt_bodies)
    d.stop()
