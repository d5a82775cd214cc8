"""
base: what the platform doubles share.

- Exchange: the exchange's own record of fills and positions, in memory, independent of any
  database: after a restore from an older backup the database is behind it, as with a real
  exchange (tools/paper_venue.py does the same with a state file).
- Double: an HTTP server on 127.0.0.1 (stdlib http.server, one thread per request) that dispatches
  to a platform's routes, records every request, answers /test/* for the test and for the fake
  tools, and holds the fault switches (`double.fault = "missing_field"`, ...) each platform applies
  to its own answers.
- Trading: for the doubles that trade into PostgreSQL (ShivX, Sofia): a loop that, while the
  platform is live, executes an order on the exchange and writes it into the platform's own schema
  with psycopg2; a fill the database did not take stays pending (and trading pauses) until it is
  written (not while halted: then at resume), so the exchange is never silently ahead of what
  the platform believes it wrote.
- write_tool(): a fake command-line tool (kubectl, systemctl, docker-compose, ...) written into a
  test's directory, an executable Python script that hands its argv to the double (POST
  /test/tool) and prints what the double answers, with its exit status; a double told to hang
  makes the tool sleep until it is killed.

Standard library plus psycopg2.
"""
import datetime
import json
import os
import random
import sys
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import psycopg2

# The position rule (the weighted average while a position grows, unchanged while it shrinks, the
# fill's price when it flips) is the paper venue's, shared rather than copied.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "tools"))
from paper_venue import position_step  # noqa: E402

EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
START_PRICES = {"BTC-USD": Decimal("60000.00"), "ETH-USD": Decimal("3000.00"), "SOL-USD": Decimal("150.00")}


def rfc3339(ms, offset=None, micros=False):
    """Epoch ms -> RFC 3339 text, 'Z' (offset None) or the given timezone's offset."""
    t = EPOCH + datetime.timedelta(milliseconds=ms)
    if offset is not None:
        return t.astimezone(offset).isoformat(timespec="microseconds" if micros else "milliseconds")
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (ms % 1000)


def ms_from_rfc3339(text):
    t = datetime.datetime.fromisoformat(text.replace("Z", "+00:00").replace(" ", "T"))
    if t.tzinfo is None:
        t = t.replace(tzinfo=datetime.timezone.utc)
    return (t - EPOCH) // datetime.timedelta(milliseconds=1)


class Exchange:
    """The exchange's record. Fills are canonical dicts (quantity and price as Decimal, `ms` the
    execution time in epoch ms, strictly increasing so that every fill has its own millisecond)."""

    def __init__(self, prefix, symbols=("BTC-USD", "ETH-USD", "SOL-USD"), seed=7):
        self.prefix = prefix
        self.symbols = list(symbols)
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.seq = 0
        self.fills = []
        self.positions = {}            # symbol -> [quantity, avg_price]
        self.prices = {s: START_PRICES.get(s, Decimal("100.00")) for s in self.symbols}
        self.last_ms = 0

    def book(self, symbol, side, qty, price, ms=None):
        """Adds one execution (the caller may give its time, e.g. a fixed history). Returns it."""
        with self.lock:
            self.seq += 1
            now = ms if ms is not None else time.time_ns() // 1_000_000
            now = max(now, self.last_ms + 1)
            self.last_ms = now
            fill = {"fill_id": "%s-T%06d" % (self.prefix, self.seq),
                    "order_id": "%s-O%06d" % (self.prefix, self.seq),
                    "client_order_id": "%s-C%06d" % (self.prefix, self.seq),
                    "symbol": symbol, "side": side, "quantity": Decimal(qty), "price": Decimal(price),
                    "fee": (Decimal(qty) * Decimal(price) * Decimal("0.0004")).quantize(Decimal("0.000001")),
                    "ms": now}
            pos = self.positions.setdefault(symbol, [Decimal(0), Decimal(0)])
            delta = fill["quantity"] if side == "buy" else -fill["quantity"]
            pos[0], pos[1] = position_step(pos[0], pos[1], delta, fill["price"])
            self.fills.append(fill)
            return fill

    def random_order(self):
        """The strategy: a random symbol, side and size at the next step of a random walk."""
        with self.lock:
            symbol = self.rng.choice(self.symbols)
            p = self.prices[symbol] * Decimal(str(1 + self.rng.gauss(0, 0.001)))
            self.prices[symbol] = max(p.quantize(Decimal("0.01")), Decimal("0.01"))
            qty = Decimal(self.rng.randint(1, 1000)) / 1000
            side = self.rng.choice(("buy", "sell"))
            price = self.prices[symbol]
        return symbol, side, qty, price

    def since(self, ms):
        with self.lock:
            return [f for f in self.fills if f["ms"] >= ms]

    def position_list(self):
        with self.lock:
            return [(s, q, a) for s, (q, a) in sorted(self.positions.items())]

    def fill_ids(self):
        with self.lock:
            return [f["fill_id"] for f in self.fills]


class Request:
    def __init__(self, method, path, query, body, headers):
        self.method, self.path, self.query, self.body, self.headers = method, path, query, body, headers

    def json(self):
        return json.loads(self.body or b"{}")

    def arg(self, name, default=None):
        return (self.query.get(name) or [default])[0]


class Double:
    """An HTTP double. Subclasses fill `routes` with (METHOD, path) -> fn(req) returning
    (status, body) where body is a str (sent as text/plain) or anything JSON-serialisable, or
    (status, body, content_type). `tool(argv)` (for platforms driven by commands) returns
    (exit status, stdout, stderr); `fault` names one bad answer the platform then gives."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests = []             # (method, path with query, headers dict)
        self.tool_calls = []           # argv lists of the fake tools
        self.tool_paths = []           # where write_tool() put them
        self.fault = None
        self.routes = {}
        double = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def _handle(self, method):
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
                url = urlsplit(self.path)
                req = Request(method, url.path, parse_qs(url.query), body, dict(self.headers))
                if not url.path.startswith("/test/"):
                    with double.lock:
                        double.requests.append((method, self.path, dict(self.headers)))
                try:
                    out = double.dispatch(req)
                except Exception as e:  # noqa: BLE001 - a double's bug shows as a 500 with its text
                    out = (500, {"error": "%s: %s" % (type(e).__name__, e)})
                code, payload = out[0], out[1]
                ctype = out[2] if len(out) > 2 else None
                if isinstance(payload, (bytes, str)):
                    data = payload.encode() if isinstance(payload, str) else payload
                    ctype = ctype or "text/plain"
                else:
                    data = json.dumps(payload).encode()
                    ctype = ctype or "application/json"
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                self._handle("GET")

            def do_POST(self):  # noqa: N802
                self._handle("POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.http_thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.http_thread.start()

    def dispatch(self, req):
        if req.method == "POST" and req.path == "/test/tool":
            argv = req.json()["argv"]
            with self.lock:
                self.tool_calls.append(argv)
            if self.fault == "tool_exit1":
                return 200, {"exit": 1, "stdout": "", "stderr": "%s: error: the server is currently unable to "
                             "handle the request\n" % os.path.basename(argv[0])}
            if self.fault == "tool_hang":
                return 200, {"hang": True}
            code, out, err = self.tool(argv)
            return 200, {"exit": code, "stdout": out, "stderr": err}
        fn = self.routes.get((req.method, req.path))
        if fn is None:
            return 404, {"error": "no such endpoint: %s %s" % (req.method, req.path)}
        return fn(req)

    def tool(self, argv):
        return 127, "", "%s: not a tool of this platform\n" % argv[0]

    def count(self, method, path):
        with self.lock:
            return sum(1 for m, p, _ in self.requests if m == method and p.split("?")[0] == path)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


TOOL_SCRIPT = r'''#!/usr/bin/python3
# A fake %(name)s for drsupervisor's platform tests: hands its argv to the test double at
# %(url)s and prints its answer (stdout, stderr, exit status). Not the real tool.
import json, sys, time, urllib.request
req = urllib.request.Request(%(url)r + "/test/tool", method="POST",
                             data=json.dumps({"argv": [%(name)r] + sys.argv[1:]}).encode(),
                             headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req, timeout=20) as r:
    ans = json.load(r)
if ans.get("hang"):
    while True:
        time.sleep(3600)
sys.stdout.write(ans.get("stdout", ""))
sys.stderr.write(ans.get("stderr", ""))
sys.exit(ans.get("exit", 0))
'''


def write_tool(directory, name, double):
    """Writes the fake tool `name` into directory (mode 0755) and returns its absolute path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    double.tool_paths.append(path)
    with open(path, "w") as f:
        f.write(TOOL_SCRIPT % {"name": name, "url": double.url})
    os.chmod(path, 0o755)
    return path


class Trading:
    """The platform's trading into PostgreSQL. Subclasses give `schema` (SQL run on every new
    connection, idempotent) and `record(cur, fill)` (one execution written, idempotent on the fill
    id). `mode` is 'halted', 'shadow' or 'live'; only live trades."""

    schema = ""

    def __init__(self, exchange, dsn, interval=0.05, mode="live"):
        self.exchange = exchange
        self.dsn = dsn
        self.interval = interval
        self.mode = mode
        self.paused = False
        self.pause_on_live = False     # see set_mode()
        self.cond = threading.Condition()
        self.db_lock = threading.Lock()
        self.conn = None
        self.pending = []              # fills executed but not yet in the database
        self.last_db_error = None
        self.shadow_decisions = []
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start_trading(self):
        self.flush()
        self.thread.start()

    def _connect(self):
        if self.conn is not None and not self.conn.closed:
            return self.conn
        conn = psycopg2.connect(self.dsn, connect_timeout=3, options="-c statement_timeout=10000")
        try:
            with conn, conn.cursor() as cur:
                cur.execute(self.schema)
        except Exception:
            conn.close()
            raise
        self.conn = conn
        return conn

    def record(self, cur, fill):
        raise NotImplementedError

    def flush(self):
        """Writes the pending fills in execution order; True when none is left."""
        with self.db_lock:
            while True:
                with self.cond:
                    if not self.pending:
                        return True
                    fill = self.pending[0]
                try:
                    conn = self._connect()
                    with conn, conn.cursor() as cur:
                        self.record(cur, fill)
                except (psycopg2.Error, OSError) as e:
                    self.last_db_error = (str(e).strip().splitlines() or [type(e).__name__])[0]
                    if self.conn is not None:
                        try:
                            self.conn.close()
                        except psycopg2.Error:
                            pass
                    self.conn = None
                    return False
                with self.cond:
                    self.pending.pop(0)
                    self.last_db_error = None

    def db_check(self):
        """True when every pending fill is written and the database answers. A connection the
        server closed (a recovery's rename terminates the old sessions) is replaced once, as a
        connection pool's pre-ping would."""
        for _ in range(2):
            if not self.flush():
                continue
            with self.db_lock:
                try:
                    with self._connect() as conn, conn.cursor() as cur:
                        cur.execute("SELECT 1")
                    return True
                except (psycopg2.Error, OSError) as e:
                    self.last_db_error = (str(e).strip().splitlines() or [type(e).__name__])[0]
                    if self.conn is not None:
                        self.conn.close()
                    self.conn = None
        return False

    def trade(self, count=1, forced=False):
        """Executes `count` orders now (forced: whatever the loop's pause). Refuses unless live."""
        done = []
        for _ in range(count):
            with self.cond:
                if self.mode != "live":
                    if forced:
                        raise RuntimeError("trading is %s" % self.mode)
                    return done
                if self.pending:
                    return done
                fill = self.exchange.book(*self.exchange.random_order())
                self.pending.append(fill)
            done.append(fill)
            if not self.flush():
                break
        return done

    def _loop(self):
        while True:
            with self.cond:
                self.cond.wait(self.interval)
                if self.stopping:
                    return
                mode, paused, pending = self.mode, self.paused, bool(self.pending)
            if pending and mode != "halted":
                # a halted platform writes nothing: what it still owes the database is written
                # when it resumes (db_check), after drsupervisor's reconcile replayed it, both
                # idempotent; so the fills a reconcile replays are exactly those the exchange has
                # and the restored database lacks
                self.flush()
            elif paused:
                continue
            elif mode == "live":
                self.trade()
            elif mode == "shadow":
                self.shadow_decision(self.exchange.random_order())

    def shadow_decision(self, order):
        with self.cond:
            self.shadow_decisions.append(order)

    def set_mode(self, mode):
        with self.cond:
            if mode == "live" and self.mode != "live" and self.pause_on_live:
                # the loop stays paused once resumed: a test's post-resume reconcile then compares
                # a platform at rest (one trading under every comparison fails it, as
                # docs/reconcile.md says); the test trades on demand with trade(forced=True)
                self.paused = True
            self.mode = mode
            self.cond.notify_all()

    def idle(self):
        """Pauses the loop; True once nothing is pending (the database has every fill)."""
        with self.cond:
            self.paused = True
        return self.flush()

    def stop_trading(self):
        with self.cond:
            self.stopping = True
            self.cond.notify_all()
        if self.thread.is_alive():
            self.thread.join(timeout=10)
        with self.db_lock:
            if self.conn is not None:
                self.conn.close()
                self.conn = None


def num(d):
    """A Decimal as the plain decimal text an API sends ("0.5", "60000.12", never "5E-1")."""
    s = format(d, "f")
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s or "0"


def position_functions(prefix, buy="buy"):
    """SQL of the position rule for a schema: PREFIX_position_step and the aggregate
    PREFIX_position(signed quantity, price), folded in execution order by the caller."""
    return """
CREATE OR REPLACE FUNCTION %(p)s_position_step(state numeric[], delta numeric, price numeric)
RETURNS numeric[] LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY[q + delta,
                 CASE WHEN q + delta = 0 THEN 0
                      WHEN q = 0 OR sign(q) = sign(delta)
                          THEN round((abs(q) * a + abs(delta) * price)::numeric(60, 30) / (abs(q) + abs(delta)), 8)
                      WHEN sign(q + delta) = sign(q) THEN a
                      ELSE price END]
    FROM (SELECT coalesce(state[1], 0) AS q, coalesce(state[2], 0) AS a) AS s
$$;
CREATE OR REPLACE AGGREGATE %(p)s_position(numeric, numeric) (
    SFUNC = %(p)s_position_step, STYPE = numeric[], INITCOND = '{0,0}'
);
""" % {"p": prefix}


class HistoryDouble(Double):
    """A platform whose exchange has a fixed history (no trading loop): the doubles of the
    command-driven platforms, whose tests read positions and fills and replay into a database the
    test loads itself. `running` is the trading service's state that the fake tools change."""

    HISTORY = [("BTC-USD", "buy", "0.5", "60000.10"), ("ETH-USD", "buy", "4", "3000.25"),
               ("BTC-USD", "buy", "0.25", "60100.00"), ("SOL-USD", "sell", "10", "150.50"),
               ("BTC-USD", "sell", "0.125", "60200.00"), ("ETH-USD", "sell", "1.5", "3010.00")]

    def __init__(self, prefix, t0_ms, symbols=None):
        Double.__init__(self)
        self.exchange = Exchange(prefix)
        self.symbols = symbols or {}
        for i, (sym, side, qty, price) in enumerate(self.HISTORY):
            self.exchange.book(sym, side, qty, price, ms=t0_ms + i * 60_000)
        self.running = True

    def sym(self, canonical):
        return self.symbols.get(canonical, canonical)
