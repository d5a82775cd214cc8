"""
genesis: a double of the GENESIS platform (seeds/002, conf/examples/genesis.yaml).

What the runbook gives: trading stopped with `systemctl stop genesis-trading` (and started with
`start`), an emergency close (`python -m genesis.dr emergency-close --reason ...`), positions that
must match the exchange, `positions` and `events` tables with created_at. Where it is silent: the
service's state is read with `systemctl show -p ActiveState --value genesis-trading` ("active",
"inactive"; `systemctl is-active` would exit 3 when stopped, which the daemon rightly takes for a
failed action), and the exchange's REST API in an FTX-like dialect:
  GET /api/v1/positions            {"success": true, "result": [{"future": "BTC-PERP",
                                    "netSize": -0.5 (a JSON number, signed), "entryPrice": 60000.1}]}
  GET /api/v1/fills?start_time=S&end_time=S   (epoch seconds)
                                   {"success": true, "result": [{"id": "...", "orderId": "...",
                                    "clientId": "...", "future": "BTC-PERP", "side": "buy",
                                    "size": 0.5, "price": 60000.1, "fee": 0.01,
                                    "time": "2026-12-03T07:00:00.123000+01:00" (RFC 3339, offset)}]}
The fake `systemctl` and `python` (the venv's, for `-m genesis.dr emergency-close`) go through
/test/tool. The emergency close flattens every position on the exchange.

Faults: bad_time (a fill time "2026-12-03 25:61"), not_json (fills answered "502 Bad Gateway"
as text/html with 200), plus the tool faults of base.Double.
"""
import datetime
import json
from decimal import Decimal

from .base import HistoryDouble, num, position_functions, rfc3339

SYMBOLS = {"BTC-USD": "BTC-PERP", "ETH-USD": "ETH-PERP", "SOL-USD": "SOL-PERP"}
TZ = datetime.timezone(datetime.timedelta(hours=1))

SCHEMA = """
CREATE TABLE orders (
    client_order_id text PRIMARY KEY,
    exchange_order_id text,
    symbol text NOT NULL, side text NOT NULL, quantity numeric NOT NULL,
    status text NOT NULL, created_at timestamptz NOT NULL
);
CREATE TABLE fills (
    fill_id text PRIMARY KEY,
    client_order_id text NOT NULL REFERENCES orders (client_order_id),
    symbol text NOT NULL, side text NOT NULL, quantity numeric NOT NULL, price numeric NOT NULL,
    fee numeric, executed_at timestamptz NOT NULL
);
CREATE TABLE events (id bigserial PRIMARY KEY, kind text NOT NULL, created_at timestamptz NOT NULL DEFAULT now());
""" + position_functions("genesis") + """
-- positions are a view over the fills: always current, nothing to recompute after a replay
CREATE VIEW positions AS
    SELECT symbol, p[1] AS quantity, p[2] AS avg_price, min_at AS created_at FROM (
        SELECT symbol, genesis_position(CASE side WHEN 'buy' THEN quantity ELSE -quantity END, price
                                        ORDER BY executed_at, fill_id) AS p, min(executed_at) AS min_at
        FROM fills GROUP BY symbol) AS s;
"""


class Genesis(HistoryDouble):
    def __init__(self, t0_ms):
        HistoryDouble.__init__(self, "GEN", t0_ms, SYMBOLS)
        self.closed = []
        self.routes.update({("GET", "/api/v1/positions"): self.positions,
                            ("GET", "/api/v1/fills"): self.fills})

    def tool(self, argv):
        args = argv[1:]
        if argv[0] == "systemctl":
            if args in (["stop", "genesis-trading"], ["start", "genesis-trading"]):
                self.running = args[0] == "start"
                return 0, "", ""
            if args == ["show", "-p", "ActiveState", "--value", "genesis-trading"]:
                return 0, ("active" if self.running else "inactive") + "\n", ""
        if argv[0] == "python" and args[:3] == ["-m", "genesis.dr", "emergency-close"]:
            if self.running:
                return 1, "", "genesis.dr: refusing to close while genesis-trading is active\n"
            for s, q, _ in self.exchange.position_list():
                if q != 0:
                    self.closed.append(self.exchange.book(s, "sell" if q > 0 else "buy", abs(q),
                                                          self.exchange.prices[s]))
            return 0, json.dumps({"closed": len(self.closed), "reason": args[4] if len(args) > 4 else None}) + "\n", ""
        return 1, "", "%s: unknown arguments %r\n" % (argv[0], args)

    def positions(self, req):
        return 200, {"success": True, "result": [
            {"future": self.sym(s), "netSize": float(q), "entryPrice": float(a)}
            for s, q, a in self.exchange.position_list()]}

    def fills(self, req):
        if self.fault == "not_json":
            return 200, "<html><h1>502 Bad Gateway</h1></html>", "text/html"
        start, end = int(req.arg("start_time", "0")), int(req.arg("end_time", str(1 << 40)))
        rows = [{"id": f["fill_id"], "orderId": f["order_id"], "clientId": f["client_order_id"],
                 "future": self.sym(f["symbol"]), "side": f["side"], "size": float(f["quantity"]),
                 "price": float(f["price"]), "fee": float(f["fee"]), "time": rfc3339(f["ms"], TZ, micros=True)}
                for f in self.exchange.since(start * 1000) if f["ms"] < (end + 1) * 1000]
        if rows and self.fault == "bad_time":
            rows[-1]["time"] = "2026-12-03 25:61"
        return 200, {"success": True, "result": rows}


def load(pg, db, double, n):
    sql = [SCHEMA]
    for f in double.exchange.fills[:n]:
        ts = rfc3339(f["ms"])
        sql.append("INSERT INTO orders VALUES ('%s', '%s', '%s', '%s', %s, 'filled', '%s');"
                   % (f["client_order_id"], f["order_id"], SYMBOLS[f["symbol"]], f["side"], f["quantity"], ts))
        sql.append("INSERT INTO fills VALUES ('%s', '%s', '%s', '%s', %s, %s, %s, '%s');"
                   % (f["fill_id"], f["client_order_id"], SYMBOLS[f["symbol"]], f["side"], f["quantity"],
                      f["price"], f["fee"], ts))
    pg.psql("\n".join(sql), db=db)


def exchange_quantities(double):
    return {double.sym(s): Decimal(q) for s, q, _ in double.exchange.position_list()}
