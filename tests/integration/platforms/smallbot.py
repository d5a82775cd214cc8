"""
smallbot: a double of the small bot (seeds/003, conf/examples/smallbot.yaml).

What the runbook gives: `docker-compose stop` / `restart backend`, the backend's health on
http://localhost:3001/health, a Prisma-style table "Trade" (quoted, mixed-case identifiers).
Where it is silent: the backend's state is read with `docker-compose ps --all --format json
backend` (one JSON object: "State" is "running" or "exited"), and the exchange in the dialect of
ccxt, the library small bots use (JSON numbers, a nested fee):
  GET /positions                   [{"symbol": "BTC/USDT", "contracts": 0.5 (unsigned),
                                     "side": "long"|"short", "entryPrice": 60000.1}]
  GET /trades?since=MS             [{"id": "...", "order": "...", "clientOrderId": "...",
                                     "symbol": "BTC/USDT", "side": "buy", "amount": 0.5,
                                     "price": 60000.1, "fee": {"cost": 0.012, "currency": "USDT"},
                                     "timestamp": 1733205600123, "datetime": "2026-...Z"}]
The fake `docker-compose` goes through /test/tool.

Faults: missing_field (a trade without "fee"), string_not_number (an amount "0.5 BTC"), plus
the tool faults of base.Double.
"""
from .base import HistoryDouble, rfc3339

SYMBOLS = {"BTC-USD": "BTC/USDT", "ETH-USD": "ETH/USDT", "SOL-USD": "SOL/USDT"}

SCHEMA = """
CREATE TABLE "Trade" (
    "id"              serial PRIMARY KEY,
    "exchangeTradeId" text UNIQUE NOT NULL,
    "orderId"         text NOT NULL,
    "clientOrderId"   text NOT NULL,
    "symbol"          text NOT NULL,
    "side"            text NOT NULL,
    "amount"          numeric(30, 10) NOT NULL,
    "price"           numeric(30, 10) NOT NULL,
    "fee"             numeric(30, 10),
    "status"          text NOT NULL DEFAULT 'FILLED',
    "executedAt"      timestamp(3) NOT NULL,
    "createdAt"       timestamp(3) NOT NULL DEFAULT CURRENT_TIMESTAMP
);
"""


class SmallBot(HistoryDouble):
    def __init__(self, t0_ms):
        HistoryDouble.__init__(self, "SB", t0_ms, SYMBOLS)
        self.routes.update({("GET", "/positions"): self.positions, ("GET", "/trades"): self.trades})

    def tool(self, argv):
        args = argv[1:]
        if args[:1] == ["-f"]:
            args = args[2:]
        if args in (["stop", "backend"], ["start", "backend"]):
            self.running = args[0] == "start"
            return 0, "", " Container smallbot-backend-1  %s\n" % ("Started" if self.running else "Stopped")
        if args == ["ps", "--all", "--format", "json", "backend"]:
            return 0, '{"Name":"smallbot-backend-1","Service":"backend","State":"%s","Status":"%s"}\n' % (
                ("running", "Up 2 hours") if self.running else ("exited", "Exited (0) 1 second ago")), ""
        return 1, "", "unknown docker-compose command: %r\n" % args

    def positions(self, req):
        return 200, [{"symbol": self.sym(s), "contracts": float(abs(q)), "side": "long" if q > 0 else "short",
                      "entryPrice": float(a)} for s, q, a in self.exchange.position_list() if q != 0]

    def trades(self, req):
        rows = [{"id": f["fill_id"], "order": f["order_id"], "clientOrderId": f["client_order_id"],
                 "symbol": self.sym(f["symbol"]), "side": f["side"], "amount": float(f["quantity"]),
                 "price": float(f["price"]), "fee": {"cost": float(f["fee"]), "currency": "USDT"},
                 "timestamp": f["ms"], "datetime": rfc3339(f["ms"])}
                for f in self.exchange.since(int(req.arg("since", "0")))]
        if rows and self.fault == "missing_field":
            del rows[0]["fee"]
        if rows and self.fault == "string_not_number":
            rows[0]["amount"] = "0.5 BTC"
        return 200, rows


def load(pg, db, double, n):
    sql = [SCHEMA]
    for f in double.exchange.fills[:n]:
        sql.append('INSERT INTO "Trade" ("exchangeTradeId", "orderId", "clientOrderId", "symbol", "side", "amount", '
                   '"price", "fee", "executedAt") VALUES (\'%s\', \'%s\', \'%s\', \'%s\', \'%s\', %s, %s, %s, '
                   '\'%s\');' % (f["fill_id"], f["order_id"], f["client_order_id"], SYMBOLS[f["symbol"]], f["side"],
                                 f["quantity"], f["price"], f["fee"], rfc3339(f["ms"])[:-1]))
    pg.psql("\n".join(sql), db=db)
