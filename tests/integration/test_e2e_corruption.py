"""
End to end (issue 5): a real PostgreSQL, the paper trading platform trading on it, the daemon
supervising both. A backup is taken, trading goes on, a data page of `orders` is damaged on disk.
The daemon detects the corruption by itself, halts trading, preserves the damaged database,
restores the verified backup, replays the exchange's fills the backup missed, checks that the
positions equal the exchange's, resumes in shadow and then live, and writes the incident report.
"""
import os
import time

from drsup import wait_until
from trading_env import TradingEnv


def test_corruption_detected_restored_reconciled_resumed(pg, tmp_path):
    env = TradingEnv(tmp_path, pg)
    try:
        env.start()
        d = env.daemon
        backup = d.ctl_json("backup", "now", "--wait", timeout=120)
        assert backup["manifest"]["verification"]["container"] == "ok"
        # Trading continues after the backup: these fills are not in it.
        n0 = len(env.exchange_fill_ids())
        wait_until(lambda: len(env.exchange_fill_ids()) >= n0 + 30, timeout=30, what="trades after the backup")
        # Enough rows that the table spans pages; then damage one for real.
        env.corrupt_table("orders")
        damaged_at = time.monotonic()

        # Detection halts trading quickly (one confirmed failure is enough to halt).
        wait_until(lambda: env.venue.status()["mode"] == "halted", timeout=15, what="trading halted")
        halt_s = time.monotonic() - damaged_at

        runs = wait_until(lambda: d.ctl_json("runs")["runs"], timeout=30, what="a recovery run")
        rid = runs[0]["run"]
        run = wait_until(lambda: (lambda r: r if r["status"] in ("succeeded", "failed", "aborted") else None)(
            d.ctl_json("run", rid)), timeout=180, what="the run to finish")
        assert run["status"] == "succeeded", d.log()[-6000:]
        assert [s["step"] for s in run["steps"]][-2:] == ["resume_live", "post_resume_watch"]

        # Trading is live again, on the restored database, with every fill the exchange made,
        # and stays live: the evidence database kept beside it does not look like new corruption.
        wait_until(lambda: env.venue.status()["mode"] == "live", timeout=10, what="trading live")
        quiet_until = time.monotonic() + 3.0
        while time.monotonic() < quiet_until:
            assert env.venue.status()["mode"] == "live", d.log()[-4000:]
            time.sleep(0.1)
        env.venue.post("/test/pause")
        wait_until(lambda: env.venue.status()["db_pending"] == 0, timeout=20, what="venue caught up")
        assert env.db_fill_ids() == env.exchange_fill_ids()
        assert env.db_positions() == env.exchange_positions()

        rep = env.run_report(rid)
        assert rep["status"] == "succeeded" and rep["rto_met"] is True and rep["rpo_met"] is True
        assert rep["backup"]["name"] == backup["name"]
        assert rep["reconcile"]["ready_to_trade"] is True
        replayed = [a for a in rep["reconcile"]["actions_taken"] if a.get("action") == "replayed_fill"]
        assert replayed, rep["reconcile"]
        assert all(c["status"] == "PASS" for c in rep["reconcile"]["checks"])
        # Every reconcile attempt is in the report; the text counts the replays per symbol instead
        # of printing each fill (the JSON keeps them all).
        assert rep["reconcile_attempts"][-1] == rep["reconcile"]
        txt = d.ctl("incident", rid).stdout
        n_attempts = len(rep["reconcile_attempts"])
        assert "Reconcile attempt %d of %d: ready_to_trade yes" % (n_attempts, n_attempts) in txt, txt
        assert "replayed   %d fills: " % len(replayed) in txt, txt
        assert len(txt.splitlines()) < 80, txt
        # The post-resume watch reconciled again while the platform traded live, and passed.
        assert rep["post_resume_watch"]["status"] == "passed", rep["post_resume_watch"]
        # The damaged database is kept as evidence.
        dbs = pg.psql("SELECT datname FROM pg_database WHERE datname LIKE 'trading%' ORDER BY 1").split()
        assert "trading" in dbs and any("_damaged_" in x for x in dbs), dbs
        # The parallel restore's decrypted temporary (restore_jobs, default 2) is gone.
        assert "pg_restore -j2" in d.log()
        assert not [f for f in os.listdir(env.config()["backup"]["directory"]) if f.startswith(".restore-")]
        assert halt_s < 15
        env.stop()
    finally:
        env.cleanup()
