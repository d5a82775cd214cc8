"""
trading_env: the whole supervised world in one object, for the end-to-end tests and `make demo`.

Owns a trading database on a real PostgreSQL (pgharness), the paper trading platform trading on it
(tools/paper_venue.py), a backup key, and a drsupervisord configured to supervise both: liveness
and corruption probes, the venue adapter, encrypted backups, the detector, reconcile and the
database_corruption scenario. Also the one act of sabotage the demo needs: damaging a data page of
a table on disk for real.

    env = TradingEnv(workdir, pg).start()
    env.daemon.ctl_json("backup", "now", "--wait")
    env.corrupt_table("orders")
    ...
    env.stop()
"""
import json
import os

from drsup import Daemon, wait_until
from papervenue import PaperVenue

PG_BIN = "/usr/lib/postgresql/15/bin"


class TradingEnv:
    def __init__(self, workdir, pg, db="trading", trade_interval="50ms", probe_interval="250ms",
                 extra=None):
        self.dir = str(workdir)
        self.pg = pg
        self.db = db
        self.trade_interval = trade_interval
        self.probe_interval = probe_interval
        self.extra = extra or {}
        self.venue = None
        self.daemon = None

    # ---- set-up ----

    def _key(self):
        path = os.path.join(self.dir, "backup.key")
        if not os.path.exists(path):
            with open(path, "w") as f:
                f.write(os.urandom(32).hex() + "\n")
            os.chmod(path, 0o600)
        return path

    def config(self):
        v = self.venue.url("")
        restart = ([PG_BIN + "/pg_ctl", "-D", self.pg.datadir, "-l", self.pg.logfile, "-w", "-t", "30",
                    "-o", "-p %d" % self.pg.port, "start"])
        if os.geteuid() == 0:
            restart = ["/usr/sbin/runuser", "-u", "postgres", "--"] + restart
        cfg = {
            "cluster": "paper",
            "log_level": "info",
            "database": {"conninfo": self.pg.conninfo(self.db), "probe_interval": self.probe_interval,
                         "probe_timeout": "2s", "connect_timeout": "2s", "down_after": 2},
            "platform": {"health_url": v + "/health", "probe_interval": "500ms"},
            "venue": {
                "halt": {"url": v + "/halt", "body": '{"reason":"{{reason}}","run":"{{run}}"}'},
                "resume": {"url": v + "/resume"},
                "shadow": {"url": v + "/shadow"},
                "status": {"url": v + "/status"},
                "positions": {"url": v + "/positions"},
                "fills": {"url": v + "/fills?since={{since}}"},
                "close_all": {"url": v + "/close_all"},
                "timeout": "5s", "retry_base": "100ms", "retry_cap": "1s", "status_interval": "1s",
            },
            "backup": {
                "directory": os.path.join(self.dir, "backups"),
                "prefix": self.db,
                "pg_dump": PG_BIN + "/pg_dump",
                "pg_restore": PG_BIN + "/pg_restore",
                "key_file": self._key(),
                "verify": {"after_backup": True},
            },
            "detector": {
                "halt_after": 2,
                "corruption_queries": ["SELECT count(*) FROM orders", "SELECT count(*) FROM fills"],
                "corruption_interval": "500ms",
                "restart_command": restart,
                "restart_attempts": 3, "restart_delay": "500ms",
                "server_log": self.pg.logfile,
            },
            "reconcile": {
                "post_resume_checks": ["1s"],
                "replay_fill_query": "SELECT drsup_record_fill($2, $1, $3, $4, $5::numeric, $6::numeric, "
                                     "$7::timestamptz)",
            },
            "scenarios": {"database_corruption": {
                "rto": "2m", "rpo": "1h",
                "validation_queries": ["SELECT count(*) FROM orders", "SELECT count(*) FROM fills",
                                       "SELECT count(*) = count(DISTINCT client_order_id) FROM orders"],
            }},
        }
        for k, val in self.extra.items():
            if isinstance(val, dict) and isinstance(cfg.get(k), dict):
                cfg[k].update(val)
            else:
                cfg[k] = val
        return cfg

    def start(self, daemon_env=None):
        self.pg.psql("CREATE DATABASE %s" % self.db)
        self.venue = PaperVenue(self.dir, self.pg.conninfo(self.db), interval=self.trade_interval).start()
        wait_until(lambda: self.venue.status()["orders_sent"] > 0, timeout=20, what="the venue trading")
        self.daemon = Daemon(self.dir, self.config())
        self.daemon.start(env=daemon_env)
        return self

    def stop(self):
        if self.daemon:
            self.daemon.stop()
        if self.venue:
            self.venue.stop()

    def cleanup(self):
        if self.daemon:
            self.daemon.cleanup()
        if self.venue:
            self.venue.cleanup()

    # ---- the world ----

    def exchange_positions(self):
        code, body = self.venue.get("/positions")
        assert code == 200, body
        return {p["symbol"]: (p["quantity"], p["avg_price"]) for p in body["positions"]}

    def db_positions(self, db=None):
        out = self.pg.psql("SELECT symbol, quantity::text, avg_price::text FROM positions ORDER BY 1",
                           db=db or self.db)
        res = {}
        for line in out.splitlines():
            if line.strip():
                sym, qty, avg = line.split("|")
                res[sym] = (qty, avg)
        return res

    def exchange_fill_ids(self):
        code, body = self.venue.get("/fills?since=0")
        assert code == 200, body
        return [f["fill_id"] for f in body["fills"]]

    def db_fill_ids(self, db=None):
        out = self.pg.psql("SELECT fill_id FROM fills ORDER BY executed_at, fill_id", db=db or self.db)
        return [l for l in out.splitlines() if l.strip()]

    def corrupt_table(self, table="orders", nbytes=256):
        """Stop the server, overwrite bytes in the middle of a data page of `table`, start it again.
        With data checksums on, reading that page fails with XX001 "invalid page in block"."""
        rel = self.pg.psql("SELECT pg_relation_filepath('%s')" % table, db=self.db).strip()
        self.pg.stop()
        path = os.path.join(self.pg.datadir, rel)
        size = os.path.getsize(path)
        pages = size // 8192
        assert pages >= 1, "table %s has no page on disk" % table
        with open(path, "r+b") as f:
            f.seek((pages // 2) * 8192 + 2048)
            f.write(os.urandom(nbytes))
        self.pg.start()
        return rel

    def run_report(self, rid):
        path = os.path.join(self.daemon.state_dir, "incidents", rid + ".json")
        with open(path) as f:
            return json.load(f)
