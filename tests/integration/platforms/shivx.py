"""
shivx: a double of the ShivX platform (seeds/000, conf/examples/shivx.yaml).

What the runbook gives: the circuit breaker over HTTP (POST /api/trading/circuit-breaker/enable
and /disable), the health check /api/health/ready, a `trades` table. Where it is silent this
double chooses a dialect unlike the paper venue's:
  GET  /api/trading/status         {"status": "halted"|"paper"|"live", "circuit_breaker": {...}}
  POST /api/trading/circuit-breaker/enable   {"reason": ...}           -> 200 JSON
  POST /api/trading/circuit-breaker/disable  {"mode": "paper"|"live"}  -> 200, 409 if its DB is down
  GET  /api/portfolio/positions    {"positions": [{"symbol","qty": "-0.5" (string, signed),
                                                   "avg_px": 60000.12 (a JSON number)}]}
  GET  /api/trades?from=RFC3339&to=RFC3339&cursor=N
                                   {"trades": [{"trade_id","order_id","client_order_id","symbol",
                                    "side": "BUY"|"SELL","qty": "0.5","price": "60000.1",
                                    "fee": "0.01","ts": "2026-12-03T06:00:00.123Z"}],
                                    "next_cursor": "25" | null}   (PAGE trades a page)
Every /api request needs "Authorization: Bearer TOKEN" (401 otherwise).

It trades into PostgreSQL: `orders` and `trades`, and no positions table: positions are sums over
`trades`, with no average price kept (the example's positions_query says how that is written).

Faults (`fault`): missing_field (a trade without "price"), string_not_number (a qty "0,5"),
bad_time (a ts "03.12.2026 06:00"), not_json (an HTML maintenance page with 200).
"""
from decimal import Decimal

from .base import Double, Exchange, Trading, ms_from_rfc3339, num, rfc3339

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id        text PRIMARY KEY,
    client_order_id text UNIQUE NOT NULL,
    symbol          text NOT NULL,
    side            text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty             numeric NOT NULL,
    status          text NOT NULL,
    created_at      timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS trades (
    id          bigserial PRIMARY KEY,
    trade_id    text UNIQUE NOT NULL,
    order_id    text NOT NULL REFERENCES orders (order_id),
    symbol      text NOT NULL,
    side        text NOT NULL CHECK (side IN ('buy', 'sell')),
    qty         numeric NOT NULL,
    price       numeric NOT NULL,
    fee         numeric,
    created_at  timestamptz NOT NULL
);
"""


class ShivX(Double, Trading):
    schema = SCHEMA
    PAGE = 25

    def __init__(self, dsn, token, interval=0.05):
        Double.__init__(self)
        Trading.__init__(self, Exchange("SHX"), dsn, interval=interval)
        self.token = token
        self.breaker_reason = None
        self.routes.update({
            ("GET", "/api/health/ready"): lambda r: (200, {"status": "ready"}),
            ("GET", "/api/trading/status"): self.status,
            ("POST", "/api/trading/circuit-breaker/enable"): self.enable,
            ("POST", "/api/trading/circuit-breaker/disable"): self.disable,
            ("GET", "/api/portfolio/positions"): self.positions,
            ("GET", "/api/trades"): self.trades,
            ("POST", "/test/trade"): lambda r: (200, {"executed": len(self.trade(r.json().get("count", 1), True))}),
        })

    def dispatch(self, req):
        if req.path.startswith("/api/") and req.path != "/api/health/ready" and \
                req.headers.get("Authorization") != "Bearer " + self.token:
            return 401, {"detail": "Not authenticated"}
        return Double.dispatch(self, req)

    # ---- the platform ----

    def status_text(self):
        return {"halted": "halted", "shadow": "paper", "live": "live"}[self.mode]

    def status(self, req):
        return 200, {"status": self.status_text(),
                     "circuit_breaker": {"enabled": self.mode == "halted", "reason": self.breaker_reason}}

    def enable(self, req):
        self.breaker_reason = req.json().get("reason") or "manual"
        self.set_mode("halted")
        return 200, {"circuit_breaker": {"enabled": True, "reason": self.breaker_reason}}

    def disable(self, req):
        mode = (req.json().get("mode") or "live").lower()
        if mode not in ("paper", "live"):
            return 422, {"detail": "mode must be paper or live"}
        if not self.db_check():
            return 409, {"detail": "database unavailable: %s" % self.last_db_error}
        self.breaker_reason = None
        self.set_mode("shadow" if mode == "paper" else "live")
        return 200, {"circuit_breaker": {"enabled": False}, "status": self.status_text()}

    def record(self, cur, f):
        ts = rfc3339(f["ms"])
        cur.execute("INSERT INTO orders VALUES (%s, %s, %s, %s, %s, 'filled', %s) ON CONFLICT DO NOTHING",
                    (f["order_id"], f["client_order_id"], f["symbol"], f["side"], f["quantity"], ts))
        cur.execute("INSERT INTO trades (trade_id, order_id, symbol, side, qty, price, fee, created_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (trade_id) DO NOTHING",
                    (f["fill_id"], f["order_id"], f["symbol"], f["side"], f["quantity"], f["price"], f["fee"], ts))

    # ---- the exchange's side, in ShivX's dialect ----

    def positions(self, req):
        return 200, {"positions": [{"symbol": s, "qty": num(q), "avg_px": float(a)}
                                   for s, q, a in self.exchange.position_list()]}

    def trade_json(self, f):
        return {"trade_id": f["fill_id"], "order_id": f["order_id"], "client_order_id": f["client_order_id"],
                "symbol": f["symbol"], "side": f["side"].upper(), "qty": num(f["quantity"]),
                "price": num(f["price"]), "fee": num(f["fee"]), "ts": rfc3339(f["ms"])}

    def trades(self, req):
        if self.fault == "not_json":
            return 200, "<html><body>ShivX is under maintenance</body></html>", "text/html"
        since = ms_from_rfc3339(req.arg("from"))
        until = ms_from_rfc3339(req.arg("to")) if req.arg("to") else None
        rows = [self.trade_json(f) for f in self.exchange.since(since) if until is None or f["ms"] <= until]
        start = int(req.arg("cursor") or 0)
        page = rows[start:start + self.PAGE]
        nxt = str(start + self.PAGE) if start + self.PAGE < len(rows) else None
        if page and self.fault == "missing_field":
            del page[0]["price"]
        if page and self.fault == "string_not_number":
            page[0]["qty"] = "0,5"
        if page and self.fault == "bad_time":
            page[0]["ts"] = "03.12.2026 06:00"
        return 200, {"trades": page, "next_cursor": nxt}


def exchange_positions(double):
    """{symbol: quantity text} of the exchange (ShivX's database keeps no average prices)."""
    return {s: num(q) for s, q, _ in double.exchange.position_list() if q != 0}


def db_positions(pg, db):
    out = pg.psql("SELECT symbol, sum(CASE side WHEN 'buy' THEN qty ELSE -qty END) FROM trades GROUP BY 1 "
                  "ORDER BY 1", db=db)
    res = {}
    for line in out.splitlines():
        if line.strip():
            sym, qty = line.split("|")
            if Decimal(qty) != 0:
                res[sym] = num(Decimal(qty))
    return res


def db_fill_ids(pg, db):
    return [x for x in pg.psql("SELECT trade_id FROM trades ORDER BY created_at, trade_id", db=db).split() if x]
