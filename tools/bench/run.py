#!/usr/bin/python3
"""
bench/run.py: the backup benchmark of issue 3 (`make bench`; not part of `make check`).

Owns one benchmark run: a cached PostgreSQL 15 cluster holding ~DRSUP_BENCH_GB GB of synthetic
trading data (orders and fills: random prices, quantities, UUIDs, symbols, timestamps, indexes and a
foreign key; a pg_dump of it compresses about 2.4:1 with gzip), then, interleaved over
DRSUP_BENCH_RUNS rounds, the wall time of:

  ours            `drctl backup now --wait` through the real daemon (pg_dump -Fc -Z0, zstd level 3,
                  AES-256-GCM chunks, SHA-256, fsync + rename), verify-after-backup OFF;
  bare            `pg_dump -Fc -Z0 > /dev/null` (the ceiling: the same dump, nothing else);
  pg_dump_fc      `pg_dump -Fc > FILE` (default compression, zlib level 6);
  runbook         `pg_dump | gzip | openssl enc -aes-256-cbc -pbkdf2 -pass file:K > FILE`;
  restore_ours    `drctl backup decrypt --key-file K OURS -o X.dump` (verify + decrypt + decompress,
                  fsync) then `pg_restore -j2 -d NEWDB X.dump`;
  pg_restore      `pg_restore -j2 -d NEWDB` of the pg_dump -Fc file;
plus once, for information, our backup with verify-after-backup ON.

Writes build/bench/backup.json and prints the ratios (ours / baseline, lower is better) against the
targets. Environment: DRSUP_BUILD (the build directory, set by `make bench`), DRSUP_BENCH_GB
(database size, default 1.0; 0.05 for a quick check of this script), DRSUP_BENCH_RUNS (rounds,
default 3). The generated data directory is kept under build/bench/pgdata-cache/ and reused while
the generator version and size match.

Standard library only.
"""
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))

from pgharness import PG_BIN, PgCluster  # noqa: E402

BUILD = os.environ.get("DRSUP_BUILD") or os.path.join(ROOT, "build")
os.environ["DRSUP_BUILD"] = BUILD
from drsup import DRCTL, Daemon  # noqa: E402

GENERATOR_VERSION = 1
GB = float(os.environ.get("DRSUP_BENCH_GB", "1.0"))
RUNS = max(1, int(os.environ.get("DRSUP_BENCH_RUNS", "3")))
OUT_DIR = os.path.join(ROOT, "build", "bench")
CACHE_ROOT = os.path.join(OUT_DIR, "pgdata-cache")
DB = "trading"
# Bytes of database (tables + indexes) per order row, measured: 1 order + 1.6 fills + index entries.
BYTES_PER_ORDER = 655
BASE_BYTES = 8 * 1024 * 1024

TARGETS = {
    "backup_vs_bare_pg_dump": 1.10,
    "backup_vs_runbook_pipeline": 0.25,
    "backup_vs_pg_dump_fc": 0.30,
    "restore_vs_pg_restore": 1.10,
}

# Server settings for the benchmark cluster (on top of pgharness's fsync=off etc.).
PG_SETTINGS = {
    "shared_buffers": "512MB",
    "maintenance_work_mem": "256MB",
    "work_mem": "64MB",
    "wal_level": "minimal",
    "max_wal_senders": "0",
    "max_wal_size": "8GB",
    "checkpoint_timeout": "30min",
    "autovacuum": "off",
}

SYMBOLS = ("'BTC-USD','ETH-USD','SOL-USD','XRP-USD','ADA-USD','DOGE-USD','AVAX-USD','DOT-USD',"
           "'LINK-USD','MATIC-USD','LTC-USD','BCH-USD','ATOM-USD','UNI-USD','XLM-USD','ETC-USD',"
           "'FIL-USD','APT-USD','ARB-USD','OP-USD','NEAR-USD','AAVE-USD','MKR-USD','SNX-USD',"
           "'BTC-USDT','ETH-USDT','SOL-USDT','ETH-BTC','SOL-BTC','AAPL','MSFT','NVDA','AMZN',"
           "'GOOGL','META','TSLA','JPM','V','XOM','SPY','QQQ','IWM','EURUSD','GBPUSD','USDJPY',"
           "'AUDUSD','USDCAD','USDCHF'")
NSYM = 48


def log(msg):
    print("[bench %s] %s" % (time.strftime("%H:%M:%S"), msg), flush=True)


# ---- data ---------------------------------------------------------------------------------------

def sql_orders(n):
    return f"""
BEGIN;
CREATE TABLE orders (
  id bigint PRIMARY KEY, order_uuid uuid NOT NULL, client_order_id text NOT NULL,
  account_id integer NOT NULL, symbol text NOT NULL, side text NOT NULL, order_type text NOT NULL,
  time_in_force text NOT NULL, price numeric(20,8), quantity numeric(20,8) NOT NULL,
  filled_quantity numeric(20,8) NOT NULL, status text NOT NULL, strategy text,
  created_at timestamptz NOT NULL, updated_at timestamptz NOT NULL);
INSERT INTO orders
SELECT i, gen_random_uuid(), 'cl-' || substr(md5(random()::text), 1, 20),
  1 + floor(random() * 5000)::int, s.sym, CASE WHEN random() < 0.5 THEN 'buy' ELSE 'sell' END,
  CASE WHEN r1 < 0.8 THEN 'limit' WHEN r1 < 0.95 THEN 'market' ELSE 'stop_limit' END,
  (ARRAY['GTC','IOC','FOK','DAY'])[1 + floor(random() * 4)::int],
  CASE WHEN r1 < 0.8 THEN round((exp(random() * 10) * (0.9 + random() * 0.2))::numeric, 8) END,
  round((random() * 250)::numeric, 6), round((random() * 250 * random())::numeric, 6),
  (ARRAY['filled','filled','filled','cancelled','partially_filled','new','rejected'])[1 + floor(random() * 7)::int],
  (ARRAY['mm_v3','twap','vwap','arb_spot','momentum','manual'])[1 + floor(random() * 6)::int],
  ts, ts + random() * interval '90 seconds'
FROM (SELECT i, random() AS r1, (ARRAY[{SYMBOLS}])[1 + floor(random() * {NSYM})::int] AS sym,
        timestamptz '2024-01-01 00:00:00+00' + i * interval '23 milliseconds'
          + random() * interval '20 milliseconds' AS ts
      FROM generate_series(1, {n}) i) s;
COMMIT;
"""


def sql_fills(n):
    f = int(n * 1.6)
    return f"""
BEGIN;
CREATE TABLE fills (
  id bigint PRIMARY KEY, fill_uuid uuid NOT NULL, order_id bigint NOT NULL, symbol text NOT NULL,
  side text NOT NULL, price numeric(20,8) NOT NULL, quantity numeric(20,8) NOT NULL,
  fee numeric(20,8) NOT NULL, fee_currency text NOT NULL, liquidity text NOT NULL,
  venue text NOT NULL, venue_trade_id text NOT NULL, executed_at timestamptz NOT NULL);
INSERT INTO fills
SELECT j, gen_random_uuid(), 1 + (j * 0.625)::bigint % {n}, s.sym,
  CASE WHEN random() < 0.5 THEN 'buy' ELSE 'sell' END,
  round(p::numeric, 8), round(q::numeric, 6), round((p * q * 0.0004)::numeric, 8),
  (ARRAY['USD','USD','USDT','USDC'])[1 + floor(random() * 4)::int],
  CASE WHEN random() < 0.6 THEN 'maker' ELSE 'taker' END,
  (ARRAY['binance','coinbase','kraken','okx','bybit','nasdaq','nyse','lmax'])[1 + floor(random() * 8)::int],
  md5(j::text || random()::text), ts
FROM (SELECT j, exp(random() * 10) AS p, random() * 50 AS q,
        (ARRAY[{SYMBOLS}])[1 + floor(random() * {NSYM})::int] AS sym,
        timestamptz '2024-01-01 00:00:00+00' + j * interval '14 milliseconds'
          + random() * interval '50 milliseconds' AS ts
      FROM generate_series(1, {f}) j) s;
COMMIT;
"""


SQL_INDEXES_ORDERS = """
CREATE UNIQUE INDEX orders_uuid ON orders (order_uuid);
CREATE INDEX orders_account_created ON orders (account_id, created_at);
CREATE INDEX orders_symbol_created ON orders (symbol, created_at);
"""
SQL_INDEXES_FILLS = """
CREATE INDEX fills_order ON fills (order_id);
CREATE INDEX fills_executed ON fills (executed_at);
"""
SQL_FINISH = """
ALTER TABLE fills ADD CONSTRAINT fills_order_fk FOREIGN KEY (order_id) REFERENCES orders (id);
VACUUM ANALYZE;
CHECKPOINT;
"""


def psql_async(pg, sql, db):
    """Start psql on SQL in the background (the tables load in parallel on two cores)."""
    argv = pg._cmd([os.path.join(PG_BIN, "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-h",
                    "127.0.0.1", "-p", str(pg.port), "-U", "postgres", "-d", db, "-f", "-"])
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, cwd="/")
    return p, sql


def psql_parallel(pg, sqls, db):
    procs = [psql_async(pg, s, db) for s in sqls]
    errs = []
    for p, s in procs:
        out, err = p.communicate(s)
        if p.returncode != 0:
            errs.append(err)
    if errs:
        raise RuntimeError("data generation failed:\n" + "\n".join(errs) + pg.log_tail())


def stamp_for(orders):
    return {"generator_version": GENERATOR_VERSION, "gb": GB, "orders": orders,
            "pg_settings": PG_SETTINGS}


def open_cluster():
    """The cached cluster for this size, generated first when missing or stale."""
    orders = max(1000, int((GB * 1024 ** 3 - BASE_BYTES) / BYTES_PER_ORDER))
    workdir = os.path.join(CACHE_ROOT, "gb-%g" % GB)
    stamp_path = os.path.join(CACHE_ROOT, "gb-%g.json" % GB)
    want = stamp_for(orders)
    try:
        with open(stamp_path) as f:
            have = json.load(f)
    except (OSError, ValueError):
        have = None
    if have != want and os.path.exists(workdir):
        log("cached cluster %s is stale or incomplete: regenerating" % workdir)
        shutil.rmtree(workdir)
    fresh = have != want
    if fresh and os.path.exists(stamp_path):
        os.unlink(stamp_path)
    os.makedirs(CACHE_ROOT, exist_ok=True)
    pg = PgCluster(workdir=workdir, settings=PG_SETTINGS)
    pg.init()
    pg.start()
    if fresh:
        t0 = time.monotonic()
        log("generating %d orders and %d fills (~%g GB); cached for later runs"
            % (orders, int(orders * 1.6), GB))
        pg.psql("CREATE DATABASE %s" % DB)
        psql_parallel(pg, [sql_orders(orders), sql_fills(orders)], DB)
        psql_parallel(pg, [SQL_INDEXES_ORDERS, SQL_INDEXES_FILLS], DB)
        pg.psql(SQL_FINISH, db=DB)
        with open(stamp_path, "w") as f:
            json.dump(want, f)
        log("generated in %.1f s" % (time.monotonic() - t0))
    # Leftovers of an interrupted run.
    for name in pg.psql("SELECT datname FROM pg_database WHERE datname LIKE 'bench_restore%'").split():
        pg.psql("DROP DATABASE %s WITH (FORCE)" % name)
    return pg


# ---- measurements -------------------------------------------------------------------------------

def timed(argv_or_shell, shell=False, stdout=subprocess.DEVNULL, env=None):
    t0 = time.monotonic()
    p = subprocess.run(argv_or_shell, shell=shell, stdout=stdout, stderr=subprocess.PIPE,
                       executable="/bin/bash" if shell else None, env=env)
    dt = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError("%s failed (%d): %s" % (argv_or_shell, p.returncode,
                                                    p.stderr.decode(errors="replace")[-2000:]))
    return dt


def machine_info():
    info = {"nproc": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["mem_total_kb"] = int(f.readline().split()[1])
    except OSError:
        pass
    info["loadavg_start"] = os.getloadavg()
    for name, argv in (("pg_dump", [os.path.join(PG_BIN, "pg_dump"), "--version"]),
                       ("zstd", ["zstd", "--version"]), ("openssl", ["openssl", "version"]),
                       ("gzip", ["gzip", "--version"])):
        try:
            info[name] = subprocess.run(argv, capture_output=True, text=True).stdout.splitlines()[0]
        except (OSError, IndexError):
            info[name] = None
    return info


class Bench:
    def __init__(self, pg, work):
        self.pg = pg
        self.work = work
        self.samples = {}
        self.extra = {}
        self.pg_dump = os.path.join(PG_BIN, "pg_dump")
        self.pg_restore = os.path.join(PG_BIN, "pg_restore")
        self.conninfo = pg.conninfo(DB)
        self.key = os.path.join(work, "backup.key")
        with open(self.key, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(self.key, 0o600)
        self.pass_file = os.path.join(work, "runbook.pass")
        with open(self.pass_file, "w") as f:
            f.write(os.urandom(24).hex() + "\n")
        os.chmod(self.pass_file, 0o600)
        self.backup_dir = os.path.join(work, "backups")
        self.fc_file = os.path.join(work, "baseline.dump")
        self.our_file = None
        self.restore_seq = 0
        self.daemon = Daemon(work, self._config(self.backup_dir, 0))
        # The same daemon configured with the other zstd level, for information (the default is 1).
        self.alt_level = 3
        self.alt_daemon = Daemon(work, self._config(os.path.join(work, "backups-alt"), self.alt_level),
                                 name="alt")

    def _config(self, directory, level):
        return {
            "database": {"conninfo": self.pg.conninfo(), "probe_interval": "5s", "probe_timeout": "2s"},
            "log_level": "info",
            "backup": {
                "directory": directory, "prefix": "bench", "conninfo": self.conninfo,
                "pg_dump": self.pg_dump, "pg_restore": self.pg_restore, "codec": "zstd",
                "level": level, "key_file": self.key, "dump_timeout": "2h",
                "verify": {"after_backup": False},
            }}

    def add(self, name, seconds):
        self.samples.setdefault(name, []).append(round(seconds, 3))
        log("  %-22s %8.2f s" % (name, seconds))

    # ---- backups ----

    def bare(self):
        self.add("bare_pg_dump", timed([self.pg_dump, "-Fc", "-Z0", "-d", self.conninfo]))

    def ours(self, verify=False, alt=False):
        d = self.alt_daemon if alt else self.daemon
        t0 = time.monotonic()
        p = d.ctl("--json", "--timeout", "2h", "backup", "now", "--wait", timeout=7200)
        wall = time.monotonic() - t0
        if p.returncode != 0:
            raise RuntimeError("drctl backup now failed: %s\n%s" % (p.stderr, d.log()[-3000:]))
        res = json.loads(p.stdout)
        m = res["manifest"]
        name = "ours_backup"
        if alt:
            name = "ours_backup_zstd%d" % self.alt_level
        elif verify:
            name = "ours_backup_verify_on"
        self.add(name, wall)
        self.samples.setdefault(name + "_daemon", []).append(m["duration_ms"] / 1000)
        self.extra[name + "_file_bytes"] = m["file_size_bytes"]
        if not alt:
            self.our_file = os.path.join(self.backup_dir, res["name"])
        return m

    def pg_dump_fc(self):
        with open(self.fc_file, "wb") as out:
            self.add("pg_dump_fc", timed([self.pg_dump, "-Fc", "-d", self.conninfo], stdout=out))

    def runbook(self):
        out = os.path.join(self.work, "runbook.sql.gz.enc")
        cmd = ("set -o pipefail; '%s' -d '%s' | gzip | openssl enc -aes-256-cbc -pbkdf2 -pass file:'%s'"
               " > '%s'" % (self.pg_dump, self.conninfo, self.pass_file, out))
        self.add("runbook_pipeline", timed(cmd, shell=True))
        self.extra["runbook_bytes"] = os.path.getsize(out)

    # ---- restores ----

    def _fresh_db(self):
        self.restore_seq += 1
        name = "bench_restore_%d" % self.restore_seq
        self.pg.psql("CREATE DATABASE %s" % name)
        return name

    def _drop(self, name):
        self.pg.psql("DROP DATABASE %s WITH (FORCE)" % name)

    def _pg_restore_j2(self, db, path):
        return timed([self.pg_restore, "-j2", "--no-owner", "-d", self.pg.conninfo(db), path])

    def restore_ours(self):
        db = self._fresh_db()
        plain = os.path.join(self.work, "ours-decrypted.dump")
        t_dec = timed([DRCTL, "backup", "decrypt", "--key-file", self.key, self.our_file, "-o", plain])
        t_res = self._pg_restore_j2(db, plain)
        self.samples.setdefault("restore_ours_decrypt", []).append(round(t_dec, 3))
        self.samples.setdefault("restore_ours_pg_restore", []).append(round(t_res, 3))
        self.add("restore_ours", t_dec + t_res)
        if "restored_rows" not in self.extra:
            self.extra["restored_rows"] = self.pg.psql(
                "SELECT (SELECT count(*) FROM orders) || ',' || (SELECT count(*) FROM fills)", db=db)
        os.unlink(plain)
        self._drop(db)

    def restore_baseline(self):
        db = self._fresh_db()
        self.add("pg_restore_j2", self._pg_restore_j2(db, self.fc_file))
        self._drop(db)


def ratio(a, b):
    return round(a / b, 3) if b > 0 else None


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    for tool in (DRCTL, os.path.join(BUILD, "drsupervisord")):
        if not os.access(tool, os.X_OK):
            sys.exit("bench: %s is missing; run `make bench` (it builds first)" % tool)
    t_start = time.monotonic()
    machine = machine_info()
    pg = open_cluster()
    work = tempfile.mkdtemp(prefix="work-", dir=OUT_DIR)
    b = None
    try:
        db_bytes = int(pg.psql("SELECT pg_database_size('%s')" % DB))
        log("database %s: %.1f MiB (pg_database_size)" % (DB, db_bytes / 2 ** 20))
        b = Bench(pg, work)
        b.daemon.start()
        b.alt_daemon.start()
        # Warm the page cache and measure the dump's size and gzip ratio on a sample.
        dump = subprocess.run([b.pg_dump, "-Fc", "-Z0", "-d", b.conninfo], stdout=subprocess.PIPE,
                              check=True).stdout
        dump_bytes = len(dump)
        sample = dump[len(dump) // 3: len(dump) // 3 + 64 * 2 ** 20]
        gz = subprocess.run(["gzip", "-6"], input=sample, stdout=subprocess.PIPE, check=True).stdout
        gzip_ratio = round(len(sample) / len(gz), 3)
        del dump, sample, gz
        log("dump %.1f MiB; gzip -6 ratio of a %.0f MiB sample: %.2f:1"
            % (dump_bytes / 2 ** 20, min(dump_bytes, 64 * 2 ** 20) / 2 ** 20, gzip_ratio))

        for r in range(RUNS):
            log("round %d/%d" % (r + 1, RUNS))
            # Alternate the order of ours and the ceiling so neither always runs first.
            if r % 2 == 0:
                b.bare()
                b.ours()
            else:
                b.ours()
                b.bare()
            b.ours(alt=True)
            b.pg_dump_fc()
            b.runbook()
            if r % 2 == 0:
                b.restore_ours()
                b.restore_baseline()
            else:
                b.restore_baseline()
                b.restore_ours()
        # Once, for information: verify-after-backup ON (the default configuration).
        b.daemon.config["backup"]["verify"]["after_backup"] = True
        b.daemon.write_config()
        if b.daemon.ctl("reload").returncode != 0:
            raise RuntimeError("reload failed")
        log("extra: our backup with verify-after-backup on")
        m = b.ours(verify=True)
        b.daemon.stop()
        b.alt_daemon.stop()
    finally:
        if b is not None:
            b.daemon.cleanup()
            b.alt_daemon.cleanup()
        pg.stop()
        pg.cleanup()

    s = b.samples
    best = {k: min(v) for k, v in s.items()}
    # Per round (same round, adjacent in time): less exposed to drift than min/min.
    paired = {
        "backup_vs_bare_pg_dump": [ratio(a, c) for a, c in zip(s["ours_backup"], s["bare_pg_dump"])],
        "restore_vs_pg_restore": [ratio(a, c) for a, c in zip(s["restore_ours"], s["pg_restore_j2"])],
        "backup_zstd%d_vs_bare_pg_dump" % b.alt_level:
            [ratio(a, c) for a, c in zip(s["ours_backup_zstd%d" % b.alt_level], s["bare_pg_dump"])],
    }
    ratios = {
        "backup_vs_bare_pg_dump": ratio(best["ours_backup"], best["bare_pg_dump"]),
        "backup_vs_runbook_pipeline": ratio(best["ours_backup"], best["runbook_pipeline"]),
        "backup_vs_pg_dump_fc": ratio(best["ours_backup"], best["pg_dump_fc"]),
        "restore_vs_pg_restore": ratio(best["restore_ours"], best["pg_restore_j2"]),
    }
    result = {
        "ratios": ratios,
        "targets": TARGETS,
        "met": {k: (ratios[k] is not None and ratios[k] <= TARGETS[k]) for k in TARGETS},
        "seconds": {"min": best, "samples": s},
        "db_bytes": db_bytes,
        "dump_bytes": dump_bytes,
        "gzip_ratio": gzip_ratio,
        "backup_file_bytes": m["file_size_bytes"],
        "backup_file_bytes_zstd%d" % b.alt_level: b.extra.get("ours_backup_zstd%d_file_bytes" % b.alt_level),
        "paired_ratios": paired,
        "runbook_file_bytes": b.extra.get("runbook_bytes"),
        "pg_dump_fc_bytes": os.path.getsize(b.fc_file) if os.path.exists(b.fc_file) else None,
        "restored_rows_orders_fills": b.extra.get("restored_rows"),
        "runs": RUNS,
        "gb": GB,
        "machine": machine,
        "notes": ("wall seconds; ratios = ours / baseline from the minimum of each series; "
                  "ours_backup with verify-after-backup off; restore_ours = drctl backup decrypt "
                  "to a file + pg_restore -j2 from it"),
    }
    machine["loadavg_end"] = os.getloadavg()
    shutil.rmtree(work, ignore_errors=True)
    with open(os.path.join(OUT_DIR, "backup.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    print()
    print("Backup benchmark: %.2f GiB database, dump %.2f GiB, gzip %.2f:1, %d rounds, nproc %s"
          % (db_bytes / 2 ** 30, dump_bytes / 2 ** 30, gzip_ratio, RUNS, machine["nproc"]))
    print()
    print("%-24s %9s  %s" % ("measurement", "min s", "samples"))
    for k in ("ours_backup", "ours_backup_daemon", "ours_backup_zstd%d" % b.alt_level,
              "ours_backup_zstd%d_daemon" % b.alt_level, "bare_pg_dump", "pg_dump_fc", "runbook_pipeline",
              "restore_ours", "restore_ours_decrypt", "restore_ours_pg_restore", "pg_restore_j2",
              "ours_backup_verify_on", "ours_backup_verify_on_daemon"):
        if k in s:
            print("%-24s %9.2f  %s" % (k, best[k], " ".join("%.2f" % x for x in s[k])))
    print()
    print("%-28s %7s %7s  %s" % ("ratio (ours/baseline)", "value", "target", ""))
    for k, t in TARGETS.items():
        v = ratios[k]
        print("%-28s %7.3f %7.2f  %s" % (k, v, t, "ok" if v <= t else "MISSED"))
    print("paired per round: %s" % json.dumps(paired))
    print()
    print("wrote %s (total %.0f s)" % (os.path.join(OUT_DIR, "backup.json"), time.monotonic() - t_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
