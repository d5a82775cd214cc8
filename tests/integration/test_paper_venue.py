"""
The paper trading platform (tools/paper_venue.py, docs/paper-venue.md) against a real PostgreSQL:
the database and the exchange agree while the database is healthy; halt refuses orders; a database
outage pauses trading and the database catches up afterwards; shadow writes nothing; close_all
flattens; the exchange's record survives a restart; after a restore from an older backup, replaying
the exchange's fills with drsup_record_fill and drsup_recompute_positions() gives the exchange's
positions again.
"""
import datetime
import time
from decimal import Decimal

import pytest

from drsup import wait_until
from papervenue import PaperVenue

FILL_COLS = ("fill_id", "client_order_id", "symbol", "side", "quantity", "price", "executed_at")


@pytest.fixture
def venues():
    made = []
    yield made
    for v in made:
        v.cleanup()


def start_venue(venues, tmp_path, pg, **kw):
    v = PaperVenue(tmp_path, pg.conninfo(), **kw)
    venues.append(v)
    return v.start()


def db_fills(pg):
    out = pg.psql("SELECT fill_id, client_order_id, symbol, side, quantity, price, "
                  "to_char(executed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') "
                  "FROM fills ORDER BY executed_at, fill_id")
    return [dict(zip(FILL_COLS, line.split("|"))) for line in out.splitlines() if line]


def db_positions(pg):
    out = pg.psql("SELECT symbol, quantity, avg_price FROM positions ORDER BY symbol")
    return [(s, Decimal(q), Decimal(a)) for s, q, a in (l.split("|") for l in out.splitlines() if l)]


def epoch_us(iso):
    t = datetime.datetime.strptime(iso, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    return (t - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) \
        // datetime.timedelta(microseconds=1)


def exchange_fills(v, since=None):
    code, r = v.get("/fills" + ("?since=%s" % since if since is not None else ""))
    assert code == 200
    return r["fills"]


def exchange_positions(v):
    code, r = v.get("/positions")
    assert code == 200
    return [(p["symbol"], Decimal(p["quantity"]), Decimal(p["avg_price"])) for p in r["positions"]]


def normalise(fills):
    return [dict(f, quantity=Decimal(f["quantity"]), price=Decimal(f["price"])) for f in fills]


def assert_db_matches_exchange(pg, v):
    ex = exchange_fills(v)
    assert normalise(db_fills(pg)) == normalise(ex)
    assert db_positions(pg) == exchange_positions(v)
    assert pg.psql("SELECT count(*) FROM orders WHERE status = 'filled'") == str(len(ex))
    return ex


def test_forced_trades_land_in_the_database_exactly_as_on_the_exchange(pg, venues, tmp_path):
    v = start_venue(venues, tmp_path, pg, paused=True)
    code, r = v.post("/test/trade", {"count": 40})
    assert code == 200 and len(r["executed"]) == 40 and r["db_ok"] is True and r["db_pending"] == 0
    ex = assert_db_matches_exchange(pg, v)
    assert len({f["client_order_id"] for f in ex}) == 40
    assert [f["executed_at"] for f in ex] == sorted(f["executed_at"] for f in ex)
    assert {p[0] for p in exchange_positions(v)} <= {"BTC-USD", "ETH-USD", "SOL-USD"}
    # the SQL rebuild from fills gives the same positions as the incremental writes
    before = db_positions(pg)
    assert pg.psql("SELECT drsup_recompute_positions()") == str(len(before))
    assert db_positions(pg) == before
    # since: inclusive, as epoch milliseconds or ISO 8601
    assert exchange_fills(v, ex[25]["executed_at"]) == ex[25:]
    ms = epoch_us(ex[25]["executed_at"]) // 1000
    assert exchange_fills(v, ms) == [f for f in ex if epoch_us(f["executed_at"]) >= ms * 1000]
    assert ex[25] in exchange_fills(v, ms)
    assert v.get("/fills?since=yesterday")[0] == 400
    v.stop()


def test_live_loop_trades_and_halt_refuses_orders(pg, venues, tmp_path):
    v = start_venue(venues, tmp_path, pg, interval="20ms")
    wait_until(lambda: v.status()["fills"] >= 5, what="automatic trades")
    code, r = v.post("/halt", {"reason": "db probe failed", "run": "r-1"})
    assert code == 200 and r["mode"] == "halted"
    assert r["halted_reason"] == "db probe failed" and r["halt_run"] == "r-1"
    n = r["fills"]
    code, r = v.post("/halt", {"reason": "again"})       # idempotent, the first reason stays
    assert code == 200 and r["mode"] == "halted" and r["halted_reason"] == "db probe failed"
    code, r = v.post("/test/trade", {"count": 1})
    assert code == 409 and r["mode"] == "halted"
    time.sleep(0.2)                                       # ten intervals: nothing may trade
    assert v.status()["fills"] == n and len(exchange_fills(v)) == n
    assert_db_matches_exchange(pg, v)
    code, r = v.post("/resume")
    assert code == 200 and r["mode"] == "live" and r["halted_reason"] is None
    wait_until(lambda: v.status()["fills"] >= n + 3, what="trading again after resume")
    v.stop()


def test_database_down_pauses_trading_and_the_database_catches_up(pg, venues, tmp_path):
    v = start_venue(venues, tmp_path, pg, paused=True)
    assert v.post("/test/trade", {"count": 5})[0] == 200
    pg.stop()
    code, r = v.post("/test/trade", {"count": 3})
    # the exchange executed the order; its database write failed, so the platform stopped there
    assert code == 200 and len(r["executed"]) == 1
    assert r["db_ok"] is False and r["db_pending"] == 1 and r["last_db_error"]
    assert r["mode"] == "live" and len(exchange_fills(v)) == 6
    code, r = v.post("/test/trade", {"count": 1})
    assert code == 409 and "not yet written" in r["error"]
    assert v.post("/halt", {"reason": "db down"})[0] == 200
    code, r = v.post("/resume")
    assert code == 409 and r["mode"] == "halted" and "unreachable" in r["error"]
    v.stop()                                # the pending fill is part of the exchange's record
    v.argv[v.argv.index("--mode") + 1] = "halted"
    v.start()
    assert v.status()["db_pending"] == 1
    pg.start()
    wait_until(lambda: v.status()["db_pending"] == 0, what="pending fills written")
    st = v.status()
    assert st["db_ok"] is True and st["last_db_error"] is None and st["mode"] == "halted"
    assert len(assert_db_matches_exchange(pg, v)) == 6
    assert v.post("/resume")[0] == 200
    assert v.post("/test/trade", {"count": 2})[0] == 200
    assert len(assert_db_matches_exchange(pg, v)) == 8
    v.stop()


def test_shadow_decides_but_writes_nothing(pg, venues, tmp_path):
    v = start_venue(venues, tmp_path, pg, mode="shadow", interval="10ms")
    wait_until(lambda: v.status()["shadow_decisions"] >= 10, what="shadow decisions")
    st = v.status()
    assert st["mode"] == "shadow" and st["last_decision"]["symbol"]
    assert st["orders_sent"] == 0 and st["fills"] == 0 and exchange_fills(v) == []
    assert v.post("/test/trade", {"count": 1})[0] == 409
    assert pg.psql("SELECT (SELECT count(*) FROM orders) + (SELECT count(*) FROM fills) "
                   "+ (SELECT count(*) FROM positions)") == "0"
    code, r = v.post("/halt", {"reason": "x"})
    assert code == 200 and r["mode"] == "halted"
    assert v.post("/shadow")[1]["mode"] == "shadow"
    v.stop()


def test_close_all_flattens_on_the_exchange_and_in_the_database(pg, venues, tmp_path):
    v = start_venue(venues, tmp_path, pg, paused=True)
    v.post("/test/trade", {"count": 30})
    open_before = [p for p in exchange_positions(v) if p[1] != 0]
    assert open_before
    v.post("/halt", {"reason": "emergency"})
    code, r = v.post("/close_all")
    assert code == 200 and r["mode"] == "halted" and len(r["closed"]) == len(open_before)
    for (sym, qty, _), f in zip(open_before, r["closed"]):
        assert f["symbol"] == sym and Decimal(f["quantity"]) == abs(qty)
        assert f["side"] == ("sell" if qty > 0 else "buy")
    assert all(q == 0 and a == 0 for _, q, a in exchange_positions(v))
    assert_db_matches_exchange(pg, v)
    assert v.post("/close_all")[1]["closed"] == []       # nothing left to close
    v.stop()


def test_exchange_record_survives_a_venue_restart(pg, venues, tmp_path):
    v = start_venue(venues, tmp_path, pg, paused=True)
    v.post("/test/trade", {"count": 10})
    fills, positions = exchange_fills(v), exchange_positions(v)
    v.stop()
    v.start()
    assert exchange_fills(v) == fills and exchange_positions(v) == positions
    code, r = v.post("/test/trade", {"count": 3})          # ids continue, the DB accepts them
    assert code == 200 and r["db_ok"] is True and r["db_pending"] == 0
    assert len(assert_db_matches_exchange(pg, v)) == 13
    v.stop()


def test_replay_after_a_restore_from_an_older_backup(pg, venues, tmp_path):
    """The daemon's reconcile recipe: the database is behind the exchange after the restore; replay
    the exchange's fills since the restore point and rebuild positions from fills."""
    v = start_venue(venues, tmp_path, pg, paused=True)
    v.post("/test/trade", {"count": 15})
    pg.psql("CREATE TABLE bk_orders AS TABLE orders; CREATE TABLE bk_fills AS TABLE fills; "
            "CREATE TABLE bk_positions AS TABLE positions")   # the backup
    restore_point = exchange_fills(v)[-1]["executed_at"]
    v.post("/test/trade", {"count": 20})
    v.post("/halt", {"reason": "corruption"})
    pg.psql("BEGIN; TRUNCATE positions, fills, orders; INSERT INTO orders SELECT * FROM bk_orders; "
            "INSERT INTO fills SELECT * FROM bk_fills; INSERT INTO positions SELECT * FROM bk_positions; "
            "COMMIT")                                          # the restore
    assert db_positions(pg) != exchange_positions(v)
    missing = exchange_fills(v, restore_point)
    assert len(missing) == 21                                  # since is inclusive
    sql = "".join("SELECT drsup_record_fill('%(client_order_id)s', '%(fill_id)s', '%(symbol)s', "
                  "'%(side)s', %(quantity)s, %(price)s, '%(executed_at)s');\n" % f for f in missing)
    assert pg.psql(sql).split("\n") == ["f"] + ["t"] * 20
    pg.psql("SELECT drsup_recompute_positions()")
    assert_db_matches_exchange(pg, v)
    code, r = v.post("/resume")
    assert code == 200 and r["mode"] == "live"
    v.stop()


def test_health_can_be_made_to_fail(pg, venues, tmp_path):
    v = start_venue(venues, tmp_path, pg, paused=True)
    assert v.get("/health") == (200, {"ok": True, "mode": "live"})
    v.post("/test/health", {"status": 503})
    assert v.get("/health") == (503, {"ok": False, "mode": "live"})
    v.post("/test/health", {"status": 200})
    assert v.get("/health")[0] == 200
    assert v.get("/nope")[0] == 404
    v.stop()
