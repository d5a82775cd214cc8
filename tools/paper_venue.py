#!/usr/bin/python3
"""
paper_venue: the paper trading platform used by drsupervisor's demo and tests (docs/paper-venue.md).

A test double, not the product. One process plays two roles:
  - the EXCHANGE: it fills every order at once and keeps its own record (fills and positions) in
    --state-file, rewritten atomically after each execution, so it survives venue restarts and stays
    ahead of a database restored from an older backup, exactly as a real exchange would;
  - the PLATFORM: while live it sends an order every --trade-interval and writes the order, its fill
    and the updated position into PostgreSQL (tools/paper_venue_schema.sql) in one transaction.

Modes: live (trades), shadow (decides on paper, sends and writes nothing), halted (refuses orders).
HTTP/JSON on 127.0.0.1; every answer is a JSON object with "mode" at top level.

    tools/paper_venue.py --port 0 --port-file P --dsn "host=... dbname=..." --state-file S

Python standard library plus psycopg2 (Debian python3-psycopg2). Exits cleanly on SIGTERM/SIGINT.
"""
import argparse
import bisect
import datetime
import decimal
import json
import os
import random
import signal
import sys
import threading
import time
import urllib.parse
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2

SCHEMA_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper_venue_schema.sql")
EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
AVG_QUANTUM = Decimal("0.00000001")
START_PRICES = {"BTC-USD": "60000.00", "ETH-USD": "3000.00", "SOL-USD": "150.00"}
MODES = ("live", "shadow", "halted")


def log(msg):
    print("paper_venue: %s" % msg, file=sys.stderr, flush=True)


# ---- the position rule (same as drsup_position_step in tools/paper_venue_schema.sql) ------------

def position_step(qty, avg, delta, price):
    """(quantity, avg_price) after a fill of signed quantity delta at price; see the schema file."""
    new = qty + delta
    if new == 0:
        return new, Decimal(0)
    if qty == 0 or (qty > 0) == (delta > 0):
        with decimal.localcontext() as ctx:
            ctx.prec = 60
            exact = (abs(qty) * avg + abs(delta) * price) / (abs(qty) + abs(delta))
            return new, exact.quantize(AVG_QUANTUM, rounding=decimal.ROUND_HALF_UP)
    if (new > 0) == (qty > 0):
        return new, avg
    return new, price


# ---- time -----------------------------------------------------------------------------------------

def iso_from_us(us):
    return (EPOCH + datetime.timedelta(microseconds=us)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def us_from_since(text):
    """?since= as epoch milliseconds (digits only) or ISO 8601 (no zone means UTC) -> epoch µs."""
    text = text.strip()
    if text.lstrip("-").isdigit():
        return int(text) * 1000
    t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return (t - EPOCH) // datetime.timedelta(microseconds=1)


def parse_interval(text):
    """'100ms', '2s', '0.5s' or plain seconds -> seconds (float)."""
    text = text.strip()
    if text.endswith("ms"):
        return float(text[:-2]) / 1000.0
    if text.endswith("s"):
        return float(text[:-1])
    return float(text)


class Refused(Exception):
    """An action refused in the current state; becomes HTTP 409."""


# ---- the venue --------------------------------------------------------------------------------------

class Venue:
    def __init__(self, args):
        self.dsn = args.dsn
        self.state_file = args.state_file
        self.interval = args.trade_interval
        self.symbols = args.symbols
        self.rng = random.Random(args.seed)
        self.lock = threading.Lock()        # guards everything below except the DB connection
        self.db_lock = threading.Lock()     # guards self.conn; taken before self.lock, never after
        self.wake = threading.Condition(self.lock)
        self.stopping = False
        self.mode = args.mode
        self.halted_reason = "started halted" if args.mode == "halted" else None
        self.halt_run = None
        self.paused = args.paused           # /test/pause: the automatic loop only
        self.health_status = 200
        self.orders_sent = 0                # orders sent to the exchange since this process started
        self.shadow_decisions = 0
        self.last_decision = None
        self.db_ok = None                   # None until the first database operation
        self.last_db_error = None
        self.conn = None
        # the exchange's record (persisted)
        self.seq = 0
        self.fills = []                     # in execution order, executed_at strictly increasing
        self.fill_us = []                   # executed_at in epoch µs, parallel to self.fills
        self.positions = {}                 # symbol -> [quantity, avg_price] (Decimals)
        self.prices = {s: Decimal(START_PRICES.get(s, "100.00")) for s in self.symbols}
        self.db_pending = []                # fill_ids executed but not yet written to PostgreSQL
        self._load()

    # ---- the exchange's record --------------------------------------------------------------------

    def _load(self):
        if not self.state_file or not os.path.exists(self.state_file):
            return
        with open(self.state_file) as f:
            st = json.load(f)
        self.seq = st["seq"]
        self.prices.update({k: Decimal(v) for k, v in st["prices"].items()})
        self.db_pending = list(st["db_pending"])
        for fill in st["fills"]:
            self._book(fill)
        log("loaded %d fills from '%s' (%d not yet in the database)"
            % (len(self.fills), self.state_file, len(self.db_pending)))

    def _save(self):
        """Atomic rewrite (tmp + rename): survives the venue's own crash, not a power loss."""
        if not self.state_file:
            return
        st = {"seq": self.seq, "prices": {k: str(v) for k, v in self.prices.items()},
              "db_pending": self.db_pending, "fills": self.fills}
        tmp = self.state_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump(st, f, separators=(",", ":"))
        os.replace(tmp, self.state_file)

    def _book(self, fill):
        """Adds one execution to the exchange's fills and positions."""
        qty, price = Decimal(fill["quantity"]), Decimal(fill["price"])
        delta = qty if fill["side"] == "buy" else -qty
        pos = self.positions.setdefault(fill["symbol"], [Decimal(0), Decimal(0)])
        pos[0], pos[1] = position_step(pos[0], pos[1], delta, price)
        self.fills.append(fill)
        self.fill_us.append(us_from_since(fill["executed_at"]))

    def _execute(self, symbol, side, qty, price):
        """The exchange fills an order at once. Caller holds self.lock. Returns the fill."""
        self.seq += 1
        now = time.time_ns() // 1000
        if self.fill_us and now <= self.fill_us[-1]:
            now = self.fill_us[-1] + 1
        fill = {"fill_id": "fx-%08d" % self.seq, "client_order_id": "pv-%08d" % self.seq,
                "symbol": symbol, "side": side, "quantity": str(qty), "price": str(price),
                "executed_at": iso_from_us(now)}
        self._book(fill)
        self.db_pending.append(fill["fill_id"])
        self._save()
        return fill

    def _decide(self):
        """The strategy: a random symbol, side and size at the next step of a random walk."""
        symbol = self.rng.choice(self.symbols)
        p = self.prices[symbol] * Decimal(str(1 + self.rng.gauss(0, 0.001)))
        self.prices[symbol] = max(p.quantize(Decimal("0.01")), Decimal("0.01"))
        qty = Decimal(self.rng.randint(1, 1000)) / 1000
        return symbol, self.rng.choice(("buy", "sell")), qty, self.prices[symbol]

    def _can_trade(self):
        if self.mode != "live":
            return "mode is %s" % self.mode
        if self.db_pending:
            return "paused: %d fills not yet written to the database" % len(self.db_pending)
        return None

    # ---- the platform's database -----------------------------------------------------------------

    def _connect(self):
        if self.conn is not None and not self.conn.closed:
            return self.conn
        kw = {} if "connect_timeout" in self.dsn else {"connect_timeout": 3}
        conn = psycopg2.connect(self.dsn, options="-c statement_timeout=10000", **kw)
        try:
            with conn, conn.cursor() as cur, open(SCHEMA_FILE) as f:
                cur.execute(f.read())
        except Exception:
            conn.close()
            raise
        self.conn = conn
        return conn

    def _drop_conn(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except psycopg2.Error:
                pass
        self.conn = None

    def _db_failed(self, err):
        msg = (str(err).strip().splitlines() or [type(err).__name__])[0]
        self._drop_conn()
        with self.lock:
            if self.db_ok is not False or self.last_db_error != msg:
                log("database write failed: %s" % msg)
            self.db_ok, self.last_db_error = False, msg

    def repoint(self, dsn):
        """The platform's database is another server now (a failover's repoint): later writes,
        pending fills included, go there."""
        with self.db_lock:
            self._drop_conn()
            self.dsn = dsn
        log("repointed to another database server")
        return self.status()

    def flush(self):
        """Writes pending fills to PostgreSQL in execution order, one transaction each. True when
        nothing is left pending."""
        with self.db_lock:
            written = 0
            while True:
                with self.lock:
                    if not self.db_pending:
                        break
                    fid = self.db_pending[0]
                    f = next(x for x in reversed(self.fills) if x["fill_id"] == fid)
                try:
                    conn = self._connect()
                    with conn, conn.cursor() as cur:
                        cur.execute("SELECT drsup_record_fill(%s, %s, %s, %s, %s::numeric, "
                                    "%s::numeric, %s::timestamptz)",
                                    (f["client_order_id"], f["fill_id"], f["symbol"], f["side"],
                                     f["quantity"], f["price"], f["executed_at"]))
                except (psycopg2.Error, OSError) as e:
                    self._db_failed(e)
                    return False
                with self.lock:
                    self.db_pending.remove(fid)
                    written += 1
                    if self.db_ok is False:
                        log("database write succeeded again")
                    self.db_ok, self.last_db_error = True, None
            if written:
                with self.lock:
                    self._save()
            return True

    def db_check(self):
        """Flushes pending fills and runs SELECT 1; True when the database takes writes."""
        if not self.flush():
            return False
        with self.db_lock:
            try:
                with self._connect() as conn, conn.cursor() as cur:
                    cur.execute("SELECT 1")
            except (psycopg2.Error, OSError) as e:
                self._db_failed(e)
                return False
        with self.lock:
            self.db_ok, self.last_db_error = True, None
        return True

    # ---- trading ------------------------------------------------------------------------------------

    def trade_once(self, forced):
        """One tick: live -> an order filled by the exchange then written to the database; shadow ->
        a paper decision. Returns (fill or None, written to the database). When trading is not
        allowed, forced (/test/trade) raises Refused, the loop just skips."""
        with self.lock:
            if self.mode == "shadow" and not forced:
                symbol, side, qty, price = self._decide()
                self.shadow_decisions += 1
                self.last_decision = {"symbol": symbol, "side": side, "quantity": str(qty),
                                      "price": str(price)}
                return None, True
            why = self._can_trade()
            if why:
                if forced:
                    raise Refused(why)
                return None, True
            fill = self._execute(*self._decide())
            self.orders_sent += 1
        return fill, self.flush()

    def loop(self):
        """The automatic trading loop (its own thread)."""
        while True:
            with self.lock:
                self.wake.wait(self.interval)
                if self.stopping:
                    return
                paused, pending = self.paused, bool(self.db_pending)
            if pending:
                self.flush()
            elif not paused:
                self.trade_once(forced=False)

    # ---- actions (HTTP handlers call these) -------------------------------------------------------

    def status(self):
        with self.lock:
            return {"mode": self.mode, "halted_reason": self.halted_reason, "halt_run": self.halt_run,
                    "orders_sent": self.orders_sent, "fills": len(self.fills),
                    "db_ok": self.db_ok, "last_db_error": self.last_db_error,
                    "db_pending": len(self.db_pending), "paused": self.paused,
                    "shadow_decisions": self.shadow_decisions, "last_decision": self.last_decision,
                    "health_status": self.health_status}

    def halt(self, reason, run):
        with self.lock:
            if self.mode != "halted":
                self.mode, self.halted_reason, self.halt_run = "halted", reason or "halt", run
                log("halted: %s%s" % (self.halted_reason, " (run %s)" % run if run else ""))
        return self.status()

    def resume(self):
        if not self.db_check():
            raise Refused("database unreachable: %s" % self.last_db_error)
        with self.lock:
            if self.mode != "live":
                log("live (was %s)" % self.mode)
            self.mode, self.halted_reason, self.halt_run = "live", None, None
            self.wake.notify_all()
        return self.status()

    def shadow(self):
        with self.lock:
            if self.mode != "shadow":
                log("shadow (was %s)" % self.mode)
            self.mode, self.halted_reason, self.halt_run = "shadow", None, None
        return self.status()

    def positions_view(self):
        with self.lock:
            return [{"symbol": s, "quantity": str(q), "avg_price": str(a)}
                    for s, (q, a) in sorted(self.positions.items())]

    def fills_since(self, since_us):
        with self.lock:
            return self.fills[bisect.bisect_left(self.fill_us, since_us):]

    def close_all(self):
        """The exchange flattens every position with an offsetting fill at the last price, in any
        mode (an emergency close is what one does while halted). Written to the database too."""
        closed = []
        with self.lock:
            for symbol, (qty, _) in sorted(self.positions.items()):
                if qty != 0:
                    price = self.prices[symbol]
                    closed.append(self._execute(symbol, "sell" if qty > 0 else "buy", abs(qty), price))
        self.flush()
        return closed


# ---- HTTP ---------------------------------------------------------------------------------------------

class Handler(BaseHTTPRequestHandler):
    venue = None                            # set in main()
    server_version = "paper_venue/1"
    requests = []                           # the request log (GET /test/requests)
    requests_lock = threading.Lock()
    clock = 0                               # numbers arrivals and answers in one sequence

    def _arrived(self):
        """Log the request as it arrives; _reply() adds when it was answered. `in` and `out` number
        both moments in one sequence, so a request that arrived after another was answered (a client
        that waited for that answer) has a larger `in` than the other's `out`."""
        self._entry = None
        path = urllib.parse.urlsplit(self.path).path
        if path == "/test/requests":
            return
        with Handler.requests_lock:
            Handler.clock += 1
            self._entry = {"method": self.command, "path": path, "in": Handler.clock, "t_in": time.time()}
            Handler.requests.append(self._entry)

    def log_message(self, fmt, *args):      # quiet: the daemon polls often
        pass

    def _reply(self, code, obj):
        if getattr(self, "_entry", None) is not None:
            with Handler.requests_lock:  # before the answer is sent
                Handler.clock += 1
                self._entry.update({"out": Handler.clock, "t_out": time.time(), "code": code,
                                    "mode": obj.get("mode")})
        body = (json.dumps(obj) + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n == 0:
            return {}
        obj = json.loads(self.rfile.read(n) or b"{}")
        if not isinstance(obj, dict):
            raise ValueError("body must be a JSON object")
        return obj

    def do_GET(self):
        self._arrived()
        v = self.venue
        url = urllib.parse.urlsplit(self.path)
        q = urllib.parse.parse_qs(url.query)
        if url.path == "/health":
            code = v.health_status
            return self._reply(code, {"ok": code == 200, "mode": v.status()["mode"]})
        if url.path == "/status":
            return self._reply(200, v.status())
        if url.path == "/test/requests":
            with Handler.requests_lock:
                log_copy = [dict(e) for e in Handler.requests]
            return self._reply(200, {"mode": v.status()["mode"], "requests": log_copy})
        if url.path == "/positions":
            return self._reply(200, {"mode": v.status()["mode"], "positions": v.positions_view()})
        if url.path == "/fills":
            try:
                since = us_from_since(q["since"][0]) if "since" in q else 0
            except ValueError as e:
                return self._reply(400, {"mode": v.status()["mode"], "error": "bad since: %s" % e})
            return self._reply(200, {"mode": v.status()["mode"], "fills": v.fills_since(since)})
        self._reply(404, {"mode": v.status()["mode"], "error": "no such endpoint"})

    def do_POST(self):
        self._arrived()
        v = self.venue
        path = urllib.parse.urlsplit(self.path).path
        try:
            body = self._body()
            if path == "/halt":
                return self._reply(200, v.halt(str(body.get("reason") or "halt"), body.get("run")))
            if path == "/resume":
                return self._reply(200, v.resume())
            if path == "/shadow":
                return self._reply(200, v.shadow())
            if path == "/repoint":
                if not isinstance(body.get("dsn"), str) or not body["dsn"]:
                    raise ValueError("repoint needs a dsn")
                return self._reply(200, v.repoint(body["dsn"]))
            if path == "/close_all":
                return self._reply(200, dict(v.status(), closed=v.close_all()))
            if path == "/test/trade":
                done = []
                for _ in range(int(body.get("count", 1))):
                    fill, written = v.trade_once(forced=True)
                    done.append(fill)
                    if not written:
                        break               # the database write failed: the platform stops
                return self._reply(200, dict(v.status(), executed=done))
            if path in ("/test/pause", "/test/unpause"):
                with v.lock:
                    v.paused = path == "/test/pause"
                    v.wake.notify_all()
                return self._reply(200, v.status())
            if path == "/test/health":
                v.health_status = int(body.get("status", 200))
                return self._reply(200, v.status())
        except Refused as e:
            return self._reply(409, dict(v.status(), error=str(e)))
        except (ValueError, TypeError) as e:
            return self._reply(400, {"mode": v.status()["mode"], "error": str(e)})
        self._reply(404, {"mode": v.status()["mode"], "error": "no such endpoint"})


# ---- main -------------------------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(description="paper trading platform (test double)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--port-file", help="write the port chosen here (atomically) once listening")
    p.add_argument("--dsn", required=True, help="libpq connection string of the platform database")
    p.add_argument("--state-file", help="the exchange's record (JSON); none: in memory only")
    p.add_argument("--trade-interval", type=parse_interval, default=0.1, help="e.g. 100ms, 1s")
    p.add_argument("--symbols", type=lambda s: [x for x in s.split(",") if x],
                   default=["BTC-USD", "ETH-USD", "SOL-USD"])
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--mode", choices=MODES, default="live")
    p.add_argument("--paused", action="store_true", help="start with the automatic loop paused")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.trade_interval <= 0:
        log("--trade-interval must be positive")
        return 2
    venue = Venue(args)
    Handler.venue = venue
    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    httpd.daemon_threads = True
    port = httpd.server_address[1]
    if args.port_file:
        with open(args.port_file + ".tmp", "w") as f:
            f.write("%d\n" % port)
        os.replace(args.port_file + ".tmp", args.port_file)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    threading.Thread(target=httpd.serve_forever, name="http", daemon=True).start()
    venue.db_check()
    trader = threading.Thread(target=venue.loop, name="trader")
    trader.start()
    log("listening on %s:%d, mode %s" % (args.host, port, venue.mode))
    while not stop.wait(0.5):
        pass
    log("stopping")
    httpd.shutdown()
    with venue.lock:
        venue.stopping = True
        venue.wake.notify_all()
    trader.join()
    with venue.lock:
        venue._save()
    if venue.conn is not None:
        venue.conn.close()
    httpd.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
