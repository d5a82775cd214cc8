"""
sofia: a double of the Sofia platform (seeds/004, conf/examples/sofia.yaml).

What the runbook gives: the kill switch on :8023 (POST /kill-switch/activate with a JSON reason,
POST /kill-switch/deactivate), GET /health, GET /exchange/positions, the state files
kill_switch_state.json ({"state": "ON"}) and shadow_orders.jsonl, shadow mode as TRADING_MODE at
the trading service's restart, `orders` with status 'OPEN', client_order_id. Where it is silent:
  GET  /health                     "OK" (text/plain)
  GET  /kill-switch/status         {"state": "ON"|"OFF", "reason": ..., "trading_mode": "SHADOW"|"LIVE",
                                    "effective_mode": "HALTED"|"SHADOW"|"LIVE"}
  GET  /exchange/positions         {"positions": [{"symbol","size": "0.5" (unsigned string),
                                    "side": "LONG"|"SHORT","entry_price": "60000.12345678"}]}
                                   (flat positions are left out)
  GET  /exchange/fills?since_ms=MS&limit=N
                                   {"fills": [{"id","client_order_id","symbol","side": "buy"|"sell",
                                    "size","price","fee","timestamp": 1733205600123 (epoch ms)}]}
                                   oldest first, at most N: the client pages by time
The tool `sofia-trading-mode shadow|live` (the site script the example's shadow and resume run:
TRADING_MODE set, sofia-trading restarted, kill switch deactivated) is faked through /test/tool.

It trades into PostgreSQL: `orders` (sides 'BUY'/'SELL', statuses 'OPEN'/'FILLED'), `fills`, and
`positions` with average prices, all written by sofia_record_fill() (also the example's replay).

Faults (`fault`): missing_field (a position without "size"), string_not_number (a size "n/a"),
bad_time (a fill timestamp "yesterday"), not_json (positions answered "Internal Server Error"
as text with 200), plus the tool faults of base.Double.
"""
import json
import os
import time

from .base import Double, Exchange, Trading, num, position_functions, rfc3339

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    client_order_id text PRIMARY KEY,
    symbol          text NOT NULL,
    side            text NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity        numeric NOT NULL,
    status          text NOT NULL,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS fills (
    fill_id         text PRIMARY KEY,
    client_order_id text NOT NULL REFERENCES orders (client_order_id),
    symbol          text NOT NULL,
    side            text NOT NULL CHECK (side IN ('BUY', 'SELL')),
    quantity        numeric NOT NULL,
    price           numeric NOT NULL,
    fee             numeric,
    executed_at     timestamptz NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    symbol    text PRIMARY KEY,
    quantity  numeric NOT NULL,
    avg_price numeric NOT NULL
);
-- one fill applied to a (quantity, avg_price) state: the weighted average while the position grows,
-- unchanged while it shrinks, the fill's price when it flips (platforms/base.py)
""" + position_functions("sofia") + """CREATE OR REPLACE FUNCTION sofia_rebuild_positions() RETURNS void LANGUAGE sql AS $$
    DELETE FROM positions;
    INSERT INTO positions
    SELECT symbol, p[1], p[2] FROM (
        SELECT symbol, sofia_position(CASE side WHEN 'BUY' THEN quantity ELSE -quantity END, price
                                      ORDER BY executed_at, fill_id) AS p
        FROM fills GROUP BY symbol) AS s;
$$;
-- one execution (side 'buy'/'sell' as the exchange and drsupervisor write it), idempotent
CREATE OR REPLACE FUNCTION sofia_record_fill(p_fill_id text, p_client_order_id text, p_symbol text,
                                             p_side text, p_quantity numeric, p_price numeric,
                                             p_fee numeric, p_executed_at timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO orders VALUES (p_client_order_id, p_symbol, upper(p_side), p_quantity, 'FILLED',
                               p_executed_at, p_executed_at)
    ON CONFLICT (client_order_id) DO NOTHING;
    INSERT INTO fills VALUES (p_fill_id, p_client_order_id, p_symbol, upper(p_side), p_quantity, p_price,
                              p_fee, p_executed_at)
    ON CONFLICT (fill_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    PERFORM sofia_rebuild_positions();
    RETURN true;
END$$;
"""


class Sofia(Double, Trading):
    schema = SCHEMA

    def __init__(self, dsn, state_dir, interval=0.05):
        Double.__init__(self)
        Trading.__init__(self, Exchange("SOF", seed=11), dsn, interval=interval)
        self.state_dir = state_dir
        os.makedirs(state_dir, exist_ok=True)
        self.kill_switch = False
        self.reason = None
        self.trading_mode = "LIVE"
        self.kill_switch_file = os.path.join(state_dir, "kill_switch_state.json")
        self.shadow_orders_file = os.path.join(state_dir, "shadow_orders.jsonl")
        open(self.shadow_orders_file, "a").close()
        self._save_kill_switch()
        self.routes.update({
            ("GET", "/health"): lambda r: (200, "OK"),
            ("GET", "/kill-switch/status"): self.status,
            ("POST", "/kill-switch/activate"): self.activate,
            ("POST", "/kill-switch/deactivate"): self.deactivate,
            ("GET", "/exchange/positions"): self.positions,
            ("GET", "/exchange/fills"): self.fills,
            ("POST", "/test/trade"): lambda r: (200, {"executed": len(self.trade(r.json().get("count", 1), True))}),
        })

    def _save_kill_switch(self):
        tmp = self.kill_switch_file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"state": "ON" if self.kill_switch else "OFF", "reason": self.reason,
                       "updated_at": rfc3339(time.time_ns() // 1_000_000)}, f)
        os.replace(tmp, self.kill_switch_file)

    def _apply(self):
        self.set_mode("halted" if self.kill_switch else self.trading_mode.lower())

    # ---- the platform ----

    def status(self, req):
        eff = "HALTED" if self.kill_switch else self.trading_mode
        return 200, {"state": "ON" if self.kill_switch else "OFF", "reason": self.reason,
                     "trading_mode": self.trading_mode, "effective_mode": eff}

    def activate(self, req):
        self.kill_switch, self.reason = True, req.json().get("reason") or "manual"
        self._save_kill_switch()
        self._apply()
        return 200, {"state": "ON", "reason": self.reason}

    def deactivate(self, req=None):
        if not self.db_check():
            return 409, {"error": "database unavailable: %s" % self.last_db_error}
        self.kill_switch, self.reason = False, None
        self._save_kill_switch()
        self._apply()
        return 200, {"state": "OFF"}

    def tool(self, argv):
        """sofia-trading-mode shadow|live: TRADING_MODE set, the service restarted, the kill switch
        deactivated (refused while the database is down, like /kill-switch/deactivate)."""
        if os.path.basename(argv[0]) != "sofia-trading-mode" or len(argv) != 2 or argv[1] not in ("shadow", "live"):
            return 2, "", "usage: sofia-trading-mode shadow|live\n"
        self.trading_mode = argv[1].upper()
        code, body = self.deactivate()
        if code != 200:
            self._apply()
            return 1, "", "sofia-trading-mode: kill switch stays ON: %s\n" % body["error"]
        return 0, "sofia-trading restarted with TRADING_MODE=%s, kill switch OFF\n" % argv[1], ""

    def shadow_decision(self, order):
        symbol, side, qty, price = order
        with open(self.shadow_orders_file, "a") as f:
            f.write(json.dumps({"symbol": symbol, "side": side.upper(), "quantity": num(qty),
                                "price": num(price), "at": rfc3339(time.time_ns() // 1_000_000)}) + "\n")

    def record(self, cur, f):
        cur.execute("SELECT sofia_record_fill(%s, %s, %s, %s, %s, %s, %s, %s)",
                    (f["fill_id"], f["client_order_id"], f["symbol"], f["side"], f["quantity"], f["price"],
                     f["fee"], rfc3339(f["ms"])))

    # ---- the exchange's side, in Sofia's dialect ----

    def positions(self, req):
        if self.fault == "not_json":
            return 200, "Internal Server Error"
        out = [{"symbol": s, "size": num(abs(q)), "side": "LONG" if q > 0 else "SHORT", "entry_price": num(a)}
               for s, q, a in self.exchange.position_list() if q != 0]
        if out and self.fault == "missing_field":
            del out[0]["size"]
        if out and self.fault == "string_not_number":
            out[0]["size"] = "n/a"
        return 200, {"positions": out}

    def fills(self, req):
        since = int(req.arg("since_ms", "0"))
        limit = int(req.arg("limit", "50"))
        rows = [{"id": f["fill_id"], "client_order_id": f["client_order_id"], "symbol": f["symbol"],
                 "side": f["side"], "size": num(f["quantity"]), "price": num(f["price"]), "fee": num(f["fee"]),
                 "timestamp": f["ms"]} for f in self.exchange.since(since)][:limit]
        if rows and self.fault == "bad_time":
            rows[0]["timestamp"] = "yesterday"
        return 200, {"fills": rows}


def exchange_positions(double):
    return {s: (num(q), num(a)) for s, q, a in double.exchange.position_list() if q != 0}


def db_positions(pg, db):
    from decimal import Decimal
    res = {}
    for line in pg.psql("SELECT symbol, quantity, avg_price FROM positions ORDER BY 1", db=db).splitlines():
        if line.strip():
            sym, q, a = line.split("|")
            if Decimal(q) != 0:
                res[sym] = (num(Decimal(q)), num(Decimal(a)))
    return res


def db_fill_ids(pg, db):
    return [x for x in pg.psql("SELECT fill_id FROM fills ORDER BY executed_at, fill_id", db=db).split() if x]
