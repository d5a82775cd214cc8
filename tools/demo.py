#!/usr/bin/python3
"""
make demo: drsupervisor's main job on a throwaway sandbox, with nothing to configure.

A real PostgreSQL 15 in a temporary directory, the paper trading platform (tools/paper_venue.py)
trading on it, and drsupervisord supervising both. The demo takes an encrypted backup, lets
trading run, then damages a data page of the orders table on disk for real, and shows, live, what
the daemon does by itself: detection, halt, evidence, restore, reconcile (replaying the fills the
backup missed), shadow, live; then the incident report with the RTO and RPO achieved. It removes
everything it made when it ends (Ctrl-C too).
"""
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))

from drsup import DRCTL, wait_until  # noqa: E402
from pgharness import PgCluster  # noqa: E402
from trading_env import TradingEnv  # noqa: E402

BOLD = "\033[1m" if sys.stdout.isatty() else ""
DIM = "\033[2m" if sys.stdout.isatty() else ""
OFF = "\033[0m" if sys.stdout.isatty() else ""


def say(text):
    print("\n%s==> %s%s" % (BOLD, text, OFF), flush=True)


def show(env, *args):
    """Run a drctl command as an operator would, and show it."""
    argv = [DRCTL, "--socket", env.daemon.socket, *args]
    print("%s$ drctl %s%s" % (DIM, " ".join(args), OFF), flush=True)
    p = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    out = (p.stdout + p.stderr).rstrip()
    if out:
        print(out, flush=True)
    return p


def watch(env, stop):
    """Print the daemon's events as they happen (drctl watch)."""
    p = subprocess.Popen([DRCTL, "--socket", env.daemon.socket, "watch"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True)
    try:
        for line in p.stdout:
            if stop.is_set():
                break
            print("   %s" % line.rstrip(), flush=True)
    finally:
        p.kill()
        p.wait()


def main():
    work = tempfile.mkdtemp(prefix="drsup-demo-")
    os.chmod(work, 0o755)
    pg = PgCluster()
    env = None
    stop = threading.Event()
    try:
        say("Sandbox in %s: a throwaway PostgreSQL 15 with data checksums" % work)
        pg.init()
        pg.start()
        print("PostgreSQL listening on 127.0.0.1:%d" % pg.port)

        say("The paper trading platform starts trading; drsupervisord supervises database and platform")
        env = TradingEnv(work, pg, trade_interval="40ms").start()
        time.sleep(1.0)
        show(env, "status")
        show(env, "trading")

        say("An encrypted backup (pg_dump -> zstd -> AES-256-GCM), verified before it gets its name")
        show(env, "backup", "now", "--wait")
        show(env, "backup-status")

        say("Trading goes on after the backup: these fills exist only on the exchange and in the database")
        n0 = len(env.exchange_fill_ids())
        wait_until(lambda: len(env.exchange_fill_ids()) >= n0 + 40, timeout=60, what="more trades")
        print("exchange fills: %d (%d since the backup)" % (len(env.exchange_fill_ids()),
                                                           len(env.exchange_fill_ids()) - n0))

        say("Live events from the daemon (drctl watch):")
        t = threading.Thread(target=watch, args=(env, stop), daemon=True)
        t.start()
        time.sleep(0.5)

        say("Damaging a data page of table 'orders' on disk (database stopped for a moment, bytes overwritten)")
        t0 = time.monotonic()
        rel = env.corrupt_table("orders")
        print("overwrote 256 bytes in %s; the platform keeps trading into a corrupt database" % rel)

        wait_until(lambda: env.venue.status()["mode"] == "halted", timeout=30, what="the halt")
        print("%s   [demo] trading halted %.2f s after the damage%s" % (BOLD, time.monotonic() - t0, OFF))
        runs = wait_until(lambda: env.daemon.ctl_json("runs")["runs"], timeout=60, what="a recovery run")
        rid = runs[0]["run"]
        run = wait_until(lambda: (lambda r: r if r["status"] in ("succeeded", "failed", "aborted") else None)(
            env.daemon.ctl_json("run", rid)), timeout=600, what="the recovery to finish")
        time.sleep(0.5)
        stop.set()

        say("The run, step by step")
        show(env, "run", rid)
        say("The incident report")
        show(env, "incident", rid)
        say("Trading now")
        show(env, "trading")
        env.venue.post("/test/pause")
        wait_until(lambda: env.venue.status()["db_pending"] == 0, timeout=30, what="the platform to catch up")
        same_fills = env.db_fill_ids() == env.exchange_fill_ids()
        same_pos = env.db_positions() == env.exchange_positions()
        print("database fills == exchange fills: %s (%d fills)" % (same_fills, len(env.exchange_fill_ids())))
        print("database positions == exchange positions: %s" % same_pos)
        ok = run["status"] == "succeeded" and same_fills and same_pos
        say("Demo %s" % ("complete: recovered with zero lost fills" if ok else "FAILED (see above)"))
        if not ok:
            print(env.daemon.log()[-4000:])
        env.stop()
        return 0 if ok else 1
    except KeyboardInterrupt:
        print("\ninterrupted")
        return 130
    finally:
        stop.set()
        if env:
            env.cleanup()
        pg.cleanup()
        shutil.rmtree(work, ignore_errors=True)
        print("sandbox removed", flush=True)


if __name__ == "__main__":
    sys.exit(main())
