"""
drctl emergency-close (GENESIS "emergency-close", ShivX/Sofia "close all positions"): trading is
halted first (fail closed, confirmed), then the platform closes every position; the exchange is
flat afterwards and trading stays halted.
"""

from drsup import Daemon
from papervenue import PaperVenue


def test_emergency_close_halts_then_flattens(pg, daemons, tmp_path):
    pg.psql("CREATE DATABASE trading")
    venue = PaperVenue(tmp_path, pg.conninfo("trading"), paused=True).start()
    try:
        code, _ = venue.post("/test/trade", {"count": 12})
        assert code == 200
        code, body = venue.get("/positions")
        assert any(float(p["quantity"]) != 0 for p in body["positions"])
        v = venue.url("")
        d = Daemon(tmp_path, {"database": {"conninfo": pg.conninfo("trading")}, "venue": {
            "halt": {"url": v + "/halt", "body": '{"reason":"{{reason}}"}'},
            "resume": {"url": v + "/resume"},
            "status": {"url": v + "/status"},
            "close_all": {"url": v + "/close_all"}}})
        daemons.append(d)
        d.start()
        p = d.ctl("emergency-close")
        assert p.returncode == 2 and "drctl emergency-close: --reason" in p.stderr
        p = d.ctl("emergency-close", "--reason", "security incident: API keys leaked")
        assert p.returncode == 0, p.stderr
        assert "closed all positions" in p.stdout
        assert venue.status()["mode"] == "halted"
        code, body = venue.get("/positions")
        assert all(float(p["quantity"]) == 0 for p in body["positions"]), body
        assert "security incident: API keys leaked" in venue.status()["halted_reason"]
        assert d.ctl_json("trading")["halted"] is True
        assert "emergency close: the platform closed all positions" in d.log()
        # The order the platform saw: the halt, then a status answered "halted" (the confirmation),
        # and close_all sent only after that answer.
        code, body = venue.get("/test/requests")
        assert code == 200
        reqs = body["requests"]
        closes = [r for r in reqs if (r["method"], r["path"]) == ("POST", "/close_all")]
        halts = [r for r in reqs if (r["method"], r["path"]) == ("POST", "/halt")]
        assert len(closes) == 1 and halts, reqs
        close = closes[0]
        assert halts[0]["out"] < close["in"], reqs
        confirmed = [r for r in reqs if (r["method"], r["path"], r["mode"]) == ("GET", "/status", "halted")
                     and halts[0]["out"] < r["in"] and r["out"] < close["in"]]
        assert confirmed, reqs
        d.stop()
    finally:
        venue.stop()


def test_emergency_close_without_a_close_action_says_so(daemons, tmp_path):
    d = Daemon(tmp_path, {"detector": {"halt_after": 1000}})
    daemons.append(d)
    d.start()
    p = d.ctl("emergency-close", "--reason", "x")
    assert p.returncode == 1 and "close_all" in p.stderr
    d.stop()
