"""
cryptoorchestrator: a double of the CryptoOrchestrator platform (seeds/001,
conf/examples/cryptoorchestrator.yaml).

What the runbook gives: the application is stopped by `kubectl scale deployment backend
--replicas=0` and started again with `--replicas=3`; the database has `users`, `bots` and
`trades`. Where it is silent: the exchange the bots trade on is read directly (the backend is
scaled to zero while trading is halted, so it cannot answer), in the dialect of a futures
exchange, every request signed (HMAC-SHA256 over timestamp, method, path and body, hex, in
X-Signature with X-Timestamp) and carrying an API key header:
  GET /fapi/v2/positionRisk        [{"symbol": "BTCUSDT", "positionAmt": "-0.500" (signed string),
                                     "entryPrice": "60000.1"}]    (a top-level list; flat ones too)
  GET /fapi/v1/userTrades?startTime=MS&endTime=MS
                                   [{"id": 1001 (a number), "orderId": 2001, "symbol", "side": "BUY",
                                     "qty": "0.010", "price": "...", "commission": "...",
                                     "time": 1733205600123 (epoch ms)}]
The fake `kubectl` (see base.write_tool) answers `scale deployment backend --replicas=N` and
`get deployment backend -o jsonpath={.spec.replicas}` (the example's status: the text "0" or "3").

Faults: missing_field (a trade without "price"), string_not_number (a positionAmt "1.2.3"), plus
the tool faults of base.Double.
"""
import hashlib
import hmac

from .base import HistoryDouble, num, rfc3339

SYMBOLS = {"BTC-USD": "BTCUSDT", "ETH-USD": "ETHUSDT", "SOL-USD": "SOLUSDT"}

SCHEMA = """
CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);
CREATE TABLE bots (id serial PRIMARY KEY, user_id int NOT NULL REFERENCES users (id), name text NOT NULL);
CREATE TABLE trades (
    id                 bigserial PRIMARY KEY,
    exchange_trade_id  text UNIQUE NOT NULL,
    exchange_order_id  text NOT NULL,
    bot_id             int,
    symbol             text NOT NULL,
    side               text NOT NULL CHECK (side IN ('buy', 'sell')),
    amount             numeric NOT NULL,
    price              numeric NOT NULL,
    fee                numeric,
    status             text NOT NULL DEFAULT 'filled',
    executed_at        timestamptz NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
INSERT INTO users (email) VALUES ('ops@example.com');
INSERT INTO bots (user_id, name) VALUES (1, 'grid-btc');
"""


class CryptoOrchestrator(HistoryDouble):
    def __init__(self, api_key, hmac_key, t0_ms):
        HistoryDouble.__init__(self, "CO", t0_ms, SYMBOLS)
        self.api_key = api_key
        self.hmac_key = hmac_key
        self.replicas = 3
        self.routes.update({("GET", "/fapi/v2/positionRisk"): self.positions,
                            ("GET", "/fapi/v1/userTrades"): self.trades})

    def dispatch(self, req):
        if req.path.startswith("/fapi/"):
            ts = req.headers.get("X-Timestamp", "")
            path = req.path + ("?" + "&".join("%s=%s" % (k, v[0]) for k, v in req.query.items()) if req.query else "")
            want = hmac.new(self.hmac_key, (ts + req.method + path).encode() + req.body, hashlib.sha256).hexdigest()
            if req.headers.get("X-MBX-APIKEY") != self.api_key or \
                    not hmac.compare_digest(want, req.headers.get("X-Signature", "")):
                return 401, {"code": -1022, "msg": "Signature for this request is not valid."}
        return HistoryDouble.dispatch(self, req)

    def tool(self, argv):
        args = [a for a in argv[1:]]
        if args[:2] == ["-n", "cryptoorchestrator"]:
            args = args[2:]
        if args[:3] == ["scale", "deployment", "backend"] and len(args) == 4 and args[3].startswith("--replicas="):
            self.replicas = int(args[3].split("=", 1)[1])
            self.running = self.replicas > 0
            return 0, "deployment.apps/backend scaled\n", ""
        if args == ["get", "deployment", "backend", "-o", "jsonpath={.spec.replicas}"]:
            return 0, str(self.replicas), ""
        return 1, "", "error: unknown command %r for \"kubectl\"\n" % " ".join(args)

    def positions(self, req):
        out = [{"symbol": self.sym(s), "positionAmt": num(q), "entryPrice": num(a)}
               for s, q, a in self.exchange.position_list()]
        if self.fault == "string_not_number":
            out[0]["positionAmt"] = "1.2.3"
        return 200, out

    def trades(self, req):
        start, end = int(req.arg("startTime", "0")), int(req.arg("endTime", str(1 << 62)))
        rows = [{"id": 1000 + int(f["fill_id"][-6:]), "orderId": 2000 + int(f["order_id"][-6:]),
                 "symbol": self.sym(f["symbol"]), "side": f["side"].upper(), "qty": num(f["quantity"]),
                 "price": num(f["price"]), "commission": num(f["fee"]), "time": f["ms"]}
                for f in self.exchange.since(start) if f["ms"] <= end]
        if rows and self.fault == "missing_field":
            del rows[-1]["price"]
        return 200, rows


def load(pg, db, double, n):
    """A database holding the exchange's first n fills (as the platform wrote them)."""
    sql = [SCHEMA]
    for f in double.exchange.fills[:n]:
        sql.append("INSERT INTO trades (exchange_trade_id, exchange_order_id, bot_id, symbol, side, amount, price, "
                   "fee, executed_at) VALUES ('%d', '%d', 1, '%s', '%s', %s, %s, %s, '%s');"
                   % (1000 + int(f["fill_id"][-6:]), 2000 + int(f["order_id"][-6:]), SYMBOLS[f["symbol"]],
                      f["side"], f["quantity"], f["price"], f["fee"], rfc3339(f["ms"])))
    pg.psql("\n".join(sql), db=db)
