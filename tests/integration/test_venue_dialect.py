"""
The venue adapter against a platform that speaks nothing like the paper venue: answers nested under
`data`, positions as unsigned `size` with a `dir` side, fills (`trades`) with a signed `qty` as a
string, `px`, a `ts` in RFC 3339 with a +01:00 offset, three pages chained by a cursor, every
request to be signed (HMAC-SHA256 of timestamp, method, path and body) and carrying a bearer token
that only a credential file holds. Against a real PostgreSQL: the reconcile reads every page through
the mapping and replays the lost fills exactly; each kind of bad answer fails the reconcile closed
with an error naming the field, the path and the request; `drctl venue check` shows what the daemon
understood, or why not.
"""
import hashlib
import subprocess
import hmac
import json
import os
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from drsup import Daemon
from test_reconcile import load_db

TOKEN = "tok-3f9a"
HMAC_KEY = b"hmac-key-for-tests"
T0 = 1_750_000_000_000  # epoch ms of the first fill
TZ = timezone(timedelta(hours=1))


def rfc3339(ms):
    return datetime.fromtimestamp(ms / 1000, TZ).isoformat(timespec="milliseconds")


class DialectVenue:
    """The exchange: /api/state, /api/positions, /api/trades?from=RFC3339&cursor=C (2 per page)."""

    PAGE = 2

    def __init__(self, fills):
        self.fills = fills        # canonical dicts, as test_reconcile.fill() makes them
        self.fault = None         # None, or the name of one bad answer (see answer_trades)
        self.requests = []        # (method, path, verified signature, bearer ok)
        self.lock = threading.Lock()
        venue = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _reply(self, code, body, ctype="application/json"):
                data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                ts = self.headers.get("X-Ts", "")
                want = hmac.new(HMAC_KEY, (ts + "GET" + self.path).encode(), hashlib.sha256).hexdigest()
                signed = hmac.compare_digest(want, self.headers.get("X-Sig", ""))
                bearer = self.headers.get("Authorization") == "Bearer " + TOKEN
                with venue.lock:
                    venue.requests.append(("GET", self.path, signed, bearer))
                if not (signed and bearer):
                    return self._reply(401, {"error": "bad signature or token"})
                url = urlsplit(self.path)
                q = parse_qs(url.query)
                if url.path == "/api/state":
                    return self._reply(200, {"state": {"kill_switch": {"active": True}}})
                if url.path == "/api/positions":
                    return self._reply(200, {"data": {"items": venue.positions()}})
                if url.path == "/api/trades":
                    return venue.answer_trades(self, q)
                return self._reply(404, {"error": "no such endpoint"})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def positions(self):
        held = {}
        for f in self.fills:
            held[f["symbol"]] = held.get(f["symbol"], 0) + (f["quantity"] if f["side"] == "buy" else -f["quantity"])
        return [{"instrument": s, "size": str(abs(q)), "dir": "LONG" if q >= 0 else "SHORT"} for s, q in held.items()]

    def trade(self, f):
        qty = f["quantity"] if f["side"] == "buy" else -f["quantity"]
        return {"id": f["fill_id"], "clOrdId": f["client_order_id"], "symbol": f["symbol"], "qty": str(qty),
                "px": str(f["price"]), "ts": rfc3339(f["executed_at"])}

    def answer_trades(self, h, q):
        since = datetime.fromisoformat(q["from"][0].replace("Z", "+00:00")).timestamp() * 1000
        start = int(q.get("cursor", ["0"])[0] or 0)
        rows = [self.trade(f) for f in self.fills if f["executed_at"] >= since]
        page = rows[start:start + self.PAGE]
        nxt = str(start + self.PAGE) if start + self.PAGE < len(rows) else None
        if self.fault == "not_json":
            return h._reply(200, "<html>maintenance</html>", "text/html")
        if page and self.fault == "missing_field":
            del page[-1]["px"]
        if page and self.fault == "string_not_number":
            page[-1]["qty"] = "1,5"
        if page and self.fault == "bad_time":
            page[-1]["ts"] = "03/12/2025 06:00"
        if self.fault == "endless_pages":
            nxt = str(start)  # the same page forever: bounded by pages.max
        return h._reply(200, {"data": {"trades": page}, "meta": {"next": nxt}})

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def fill(i, symbol, side, qty, price):
    return {"fill_id": f"F{i}", "client_order_id": f"O{i}", "symbol": symbol, "side": side,
            "quantity": qty, "price": price, "executed_at": T0 + i * 1000}


EXCHANGE = [fill(1, "BTC", "buy", 2, 100.5), fill(2, "ETH", "buy", 10, 20.25), fill(3, "BTC", "buy", 1, 103.0),
            fill(4, "BTC", "sell", 0.5, 104.0), fill(5, "SOL", "buy", 7, 1.75)]


def venue_config(url, halt_dir):
    hdr = ["Authorization: Bearer {{credential:venue_token}}"]
    cmd = [os.path.join(halt_dir, "venue-cmd")]
    return {
        # halting is not what this file tests: a command that always says it worked
        "halt": {"command": cmd + ["halt"]}, "resume": {"command": cmd + ["resume"]},
        "status": {"url": url + "/api/state", "headers": hdr, "answer": {"mode": "state.kill_switch.active"}},
        "modes": {"halted": ["true"], "live": ["false"]},
        "positions": {"url": url + "/api/positions", "headers": hdr,
                      "answer": {"list": "data.items", "symbol": "instrument", "quantity": "size", "side": "dir",
                                 "long": ["LONG"], "short": ["SHORT"], "avg_price": ""}},
        "fills": {"url": url + "/api/trades?from={{since:rfc3339}}&cursor={{cursor}}", "headers": hdr,
                  "answer": {"list": "data.trades", "fill_id": "id", "client_order_id": "clOrdId", "side": "",
                             "quantity": "qty", "price": "px", "executed_at": "ts", "time": "rfc3339"},
                  "pages": {"cursor": "meta.next", "max": 5}},
        "sign": {"key_file": os.path.join(halt_dir, "hmac.key"), "header": "X-Sig", "timestamp_header": "X-Ts",
                 "payload": "{{timestamp}}{{method}}{{path}}{{body}}"},
        "status_interval": "0",
    }


@pytest.fixture
def venue():
    v = DialectVenue(EXCHANGE)
    yield v
    v.close()


@pytest.fixture
def daemon(tmp_path, pg, venue):
    creds = tmp_path / "creds"
    creds.mkdir(mode=0o700)
    (creds / "venue_token").write_text(TOKEN + "\n")
    os.chmod(creds / "venue_token", 0o600)
    (tmp_path / "hmac.key").write_bytes(HMAC_KEY)
    os.chmod(tmp_path / "hmac.key", 0o600)
    cmd = tmp_path / "venue-cmd"
    cmd.write_text("#!/bin/sh\necho ok\n")
    cmd.chmod(0o755)
    d = Daemon(tmp_path, {"database": {"conninfo": pg.conninfo()}, "alerts": {"credentials_dir": str(creds)},
                          "venue": venue_config(venue.url, str(tmp_path)),
                          "detector": {"halt_after": 1000},
                          # the positions query of a schema without average prices
                          "reconcile": {"positions_query": "SELECT symbol, quantity::text, NULL FROM positions"}})
    d.start()
    yield d
    d.cleanup()


def reconcile(d):
    p = d.ctl("--json", "reconcile", "--since", str(T0))
    return p.returncode, json.loads(p.stdout)


def test_reconcile_through_a_dialect_reads_every_page_and_replays_exactly(pg, venue, daemon):
    load_db(pg, EXCHANGE[:2])  # the restored database lost fills 3..5
    rc, rep = reconcile(daemon)
    assert rc == 0 and rep["ready_to_trade"] is True, rep
    replayed = sorted(a["fill_id"] for a in rep["actions_taken"] if a["action"] == "replayed_fill")
    assert replayed == ["F3", "F4", "F5"], rep["actions_taken"]
    # the replayed rows are the exchange's, exactly: side from the sign, time from the offset
    rows = pg.psql("SELECT fill_id, side, quantity, price, extract(epoch FROM executed_at) * 1000 FROM fills "
                   "WHERE fill_id IN ('F3','F4','F5') ORDER BY fill_id", db="postgres").split("\n")
    want = ["F3|buy|1|103.0|%d" % (T0 + 3000), "F4|sell|0.5|104.0|%d" % (T0 + 4000), "F5|buy|7|1.75|%d" % (T0 + 5000)]
    assert [r.rsplit("|", 1)[0] + "|" + str(int(float(r.rsplit("|", 1)[1]))) for r in rows] == want, rows
    # every request was signed and carried the credential's token; the fills came in three pages
    # chained by the cursor, from the window's start in RFC 3339
    assert venue.requests and all(signed and bearer for _, _, signed, bearer in venue.requests), venue.requests
    trades = [p for _, p, _, _ in venue.requests if p.startswith("/api/trades")]
    assert [parse_qs(urlsplit(p).query).get("cursor", [""])[0] for p in trades[:3]] == ["", "2", "4"], trades
    frm = parse_qs(urlsplit(trades[0]).query)["from"][0]
    assert datetime.fromisoformat(frm.replace("Z", "+00:00")).timestamp() * 1000 == T0, frm
    # the token never reaches the log
    assert TOKEN not in daemon.log()


@pytest.mark.parametrize("fault, want", [
    ("missing_field", 'fills[1].price (path "px"): missing in the answer of fills (GET http://127.0.0.1:'),
    ("string_not_number", 'fills[1].quantity (path "qty"): not a number in the answer of fills'),
    ("bad_time", 'fills[1].executed_at (path "ts"): not an RFC 3339 time (answer.time) in the answer of fills'),
    ("not_json", "fills: the answer of fills (GET http://127.0.0.1:"),
    ("endless_pages", "fills: more than 5 pages (venue.fills.pages.max) and the platform has more"),
])
def test_a_bad_answer_fails_the_reconcile_closed_and_says_where(pg, venue, daemon, fault, want):
    load_db(pg, EXCHANGE[:2])
    venue.fault = fault
    rc, rep = reconcile(daemon)
    assert rc == 1 and rep["ready_to_trade"] is False, rep
    assert want in rep["error"]["message"], rep["error"]
    # nothing was replayed from a half-read exchange
    assert not [a for a in rep.get("actions_taken", []) if a["action"] == "replayed_fill"], rep
    assert pg.psql("SELECT count(*) FROM fills", db="postgres").strip() == "2"


def test_venue_check_shows_what_the_daemon_understood(pg, venue, daemon):
    p = daemon.ctl("--json", "venue", "check")
    assert p.returncode == 0, p.stdout + p.stderr
    r = json.loads(p.stdout)
    assert r["ok"] is True
    assert r["status"]["mode"] == "halted" and r["status"]["request"].startswith("GET " + venue.url), r["status"]
    assert {(x["symbol"], x["quantity"]) for x in r["positions"]["positions"]} == \
        {("BTC", "2.5"), ("ETH", "10"), ("SOL", "7")}, r["positions"]
    assert r["positions"]["positions"][0]["avg_price"] is None
    # fills since reconcile.default_since (24h): the test's fills are from 2025, so none
    assert r["fills"]["ok"] is True and r["fills"]["count"] == 0, r["fills"]
    text = daemon.ctl("venue", "check")
    assert text.returncode == 0 and "mode halted" in text.stdout and "BTC" in text.stdout, text.stdout
    # a bad positions answer: exit 1, the readable error names the field
    venue.fills = EXCHANGE + [dict(fill(6, "ADA", "buy", 1, 1.0), symbol="")]
    bad = daemon.ctl("venue", "check")
    assert bad.returncode == 1, bad.stdout
    assert "FAIL" in bad.stdout and 'positions[3].symbol (path "instrument"): not a non-empty string' in bad.stdout, bad.stdout


@pytest.mark.parametrize("script, want", [
    ("echo 'exchange API key expired' >&2; exit 1",
     "cannot read the exchange's fills (command "),
    ("sleep 30", "timed out after 2000 ms (its process group was killed)"),
    ("echo 'not json at all'", "fills: the answer of fills (command "),
])
def test_a_fills_command_that_fails_hangs_or_prints_garbage_fails_the_reconcile_closed(tmp_path, pg, script, want):
    """Fills read through a command action (its stdout is the answer): a non-zero exit, a hang past
    venue.timeout and an answer that is not JSON each fail the reconcile closed, with the reason."""
    fills = tmp_path / "fills-cmd"
    fills.write_text("#!/bin/sh\n" + script + "\n")
    fills.chmod(0o755)
    ok = tmp_path / "ok-cmd"
    ok.write_text("#!/bin/sh\necho '{\"mode\": \"halted\", \"positions\": []}'\n")
    ok.chmod(0o755)
    d = Daemon(tmp_path, {"database": {"conninfo": pg.conninfo()}, "detector": {"halt_after": 1000},
                          "venue": {"halt": {"command": [str(ok)]}, "status": {"command": [str(ok)]},
                                    "positions": {"command": [str(ok)]},
                                    "fills": {"command": [str(fills), "{{since:rfc3339}}"]},
                                    "timeout": "2s", "status_interval": "0"}})
    d.start()
    try:
        load_db(pg, [])
        rc, rep = reconcile(d)
        assert rc == 1 and rep["ready_to_trade"] is False, rep
        assert want in rep["error"]["message"], rep["error"]
        if "exit 1" in script:
            assert "exited with status 1: exchange API key expired" in rep["error"]["message"], rep["error"]
        # no process of the command is left behind
        assert subprocess.run(["pgrep", "-f", str(fills)], capture_output=True).returncode == 1
    finally:
        d.cleanup()
