-- tools/paper_venue_schema.sql: the reference schema of the paper trading platform's database
-- (docs/paper-venue.md). Owns the tables orders, fills and positions and the position rule in SQL:
-- drsup_position_step (one fill applied to a position), the aggregate drsup_position (a symbol's
-- fills folded in execution order), drsup_record_fill (what the platform writes for one execution,
-- idempotent) and drsup_recompute_positions (positions rebuilt from the fills table).
-- Idempotent: the venue runs it on every new connection; safe to run by hand (psql -f).

CREATE TABLE IF NOT EXISTS orders (
    id              bigserial PRIMARY KEY,
    client_order_id text UNIQUE NOT NULL,
    symbol          text NOT NULL,
    side            text NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity        numeric NOT NULL,
    price           numeric NOT NULL,
    status          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS fills (
    id              bigserial PRIMARY KEY,
    fill_id         text UNIQUE NOT NULL,
    client_order_id text NOT NULL REFERENCES orders (client_order_id),
    symbol          text NOT NULL,
    side            text NOT NULL CHECK (side IN ('buy', 'sell')),
    quantity        numeric NOT NULL,
    price           numeric NOT NULL,
    executed_at     timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS fills_executed_at ON fills (executed_at, fill_id);

CREATE TABLE IF NOT EXISTS positions (
    symbol     text PRIMARY KEY,
    quantity   numeric NOT NULL,
    avg_price  numeric NOT NULL,
    updated_at timestamptz NOT NULL
);

-- The position rule. state is {quantity, avg_price}; delta is the signed fill quantity (+buy, -sell).
--   flat after the fill       -> avg 0
--   opening or increasing     -> weighted average of the old position and the fill, rounded to 8
--                                decimals (half away from zero), computed at 30 decimals first
--   reducing, same side after -> avg unchanged
--   flipping to the other side-> avg = fill price
-- tools/paper_venue.py (the exchange) implements exactly the same rule in Python.
CREATE OR REPLACE FUNCTION drsup_position_step(state numeric[], delta numeric, price numeric)
RETURNS numeric[] LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT ARRAY[q + delta,
                 CASE WHEN q + delta = 0 THEN 0
                      WHEN q = 0 OR sign(q) = sign(delta)
                          THEN round((abs(q) * a + abs(delta) * price)::numeric(60, 30)
                                     / (abs(q) + abs(delta)), 8)
                      WHEN sign(q + delta) = sign(q) THEN a
                      ELSE price END]
    FROM (SELECT coalesce(state[1], 0) AS q, coalesce(state[2], 0) AS a) AS s
$$;

CREATE OR REPLACE AGGREGATE drsup_position(numeric, numeric) (
    SFUNC = drsup_position_step, STYPE = numeric[], INITCOND = '{0,0}'
);

-- One execution as the platform records it: its order (status 'filled'), the fill, and the
-- position updated incrementally, in the caller's transaction. Idempotent: a fill_id already
-- present changes nothing and returns false. The order is created if missing.
CREATE OR REPLACE FUNCTION drsup_record_fill(p_client_order_id text, p_fill_id text, p_symbol text,
                                             p_side text, p_quantity numeric, p_price numeric,
                                             p_executed_at timestamptz)
RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    cur numeric[];
BEGIN
    INSERT INTO orders (client_order_id, symbol, side, quantity, price, status, created_at)
    VALUES (p_client_order_id, p_symbol, p_side, p_quantity, p_price, 'filled', p_executed_at)
    ON CONFLICT (client_order_id) DO NOTHING;
    INSERT INTO fills (fill_id, client_order_id, symbol, side, quantity, price, executed_at)
    VALUES (p_fill_id, p_client_order_id, p_symbol, p_side, p_quantity, p_price, p_executed_at)
    ON CONFLICT (fill_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN false;
    END IF;
    SELECT ARRAY[quantity, avg_price] INTO cur FROM positions WHERE symbol = p_symbol FOR UPDATE;
    cur := drsup_position_step(coalesce(cur, ARRAY[0, 0]::numeric[]),
                               CASE p_side WHEN 'buy' THEN p_quantity ELSE -p_quantity END, p_price);
    INSERT INTO positions (symbol, quantity, avg_price, updated_at)
    VALUES (p_symbol, cur[1], cur[2], p_executed_at)
    ON CONFLICT (symbol) DO UPDATE
        SET quantity = EXCLUDED.quantity, avg_price = EXCLUDED.avg_price,
            updated_at = EXCLUDED.updated_at;
    RETURN true;
END
$$;

-- Rebuilds positions from the fills table (every symbol that has fills, flat ones included), folding
-- each symbol's fills in execution order (executed_at, fill_id). Call it after replaying fills that
-- arrived out of order. Returns the number of position rows. The table lock makes a concurrent
-- drsup_record_fill either land before the rebuild (and be counted) or wait and apply on top of it.
CREATE OR REPLACE FUNCTION drsup_recompute_positions()
RETURNS integer LANGUAGE sql AS $$
    LOCK TABLE positions IN SHARE ROW EXCLUSIVE MODE;
    DELETE FROM positions;
    INSERT INTO positions (symbol, quantity, avg_price, updated_at)
    SELECT symbol, p[1], p[2], last_at
    FROM (SELECT symbol,
                 drsup_position(CASE side WHEN 'buy' THEN quantity ELSE -quantity END, price
                                ORDER BY executed_at, fill_id) AS p,
                 max(executed_at) AS last_at
          FROM fills GROUP BY symbol) AS f;
    SELECT count(*)::integer FROM positions;
$$;
