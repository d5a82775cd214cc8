#!/usr/bin/python3
"""
bench/scenario.py: the recovery benchmark of issue 5 (`make bench`, after run.py; not in `make check`).

Owns two measurements on a real PostgreSQL 15 and the real daemon, with tests/integration/fakevenue.py
standing in for the trading platform (HTTP halt/resume/shadow/status, empty positions and fills):

  halt      DRSUP_BENCH_HALT_TRIALS (default 20) trials on a small throwaway cluster: the daemon
            probes the database every 250 ms (detector.halt_after 2); the harness stops the
            postmaster with SIGQUIT (what `pg_ctl stop -m immediate` sends) and measures from that
            signal to the later of (a) the venue receiving POST /halt and (b) the first
            `drctl --json trading` answer with halted true and halting false (the daemon has the
            halt confirmed by the venue's status). The harness then restarts the server, waits for
            the daemon to see it healthy, and `drctl resume --force` makes the next trial start live.
  crash     the same trials with SIGKILL of the postmaster (a crash): the probe's idle connection
            breaks at once and the confirming probe runs at once: halt_crash_p99_ms (target 100).
  blips     DRSUP_BENCH_HALT_TRIALS one-probe blips: the probe's backend is terminated while the
            server stays up; false_halts counts the halts the venue received (target 0).
  rto       DRSUP_BENCH_SCN_ROUNDS (default 2) rounds per mode on the ~1 GB database of run.py
            (copied once into a database `scn`, so the cache stays untouched): the daemon takes a
            verified backup; `drctl execute --scenario database_corruption` runs the whole recovery
            (halt, evidence, select, restore, validate, switch, reconcile, shadow, live); rto_ms and
            the step timeline come from the incident report. In the same round, the same backup is
            decrypted with `drctl backup decrypt` (not timed) and a bare `pg_restore -j2
            --no-owner` of it into a fresh database is timed: the baseline.
            Modes (DRSUP_BENCH_SCN_MODES, default "standby,cold"): `standby` runs with
            scenarios.database_corruption.standby on and waits, after the backup, until the standby
            restore holds it (as it would hours after a scheduled backup), and again after the
            recovery before the baseline is timed (so the re-staging does not load it);
            `cold` runs with the standby off: the restore step restores from the file.

Writes build/bench/scenario.json and prints a table. Environment: DRSUP_BUILD, DRSUP_BENCH_GB (as
run.py), DRSUP_BENCH_HALT_TRIALS, DRSUP_BENCH_SCN_ROUNDS, DRSUP_BENCH_SCN_PARTS ("halt,crash,blips,rto"), DRSUP_BENCH_SCN_MODES
("standby,cold").
Standard library only.
"""
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run as backup_bench  # noqa: E402  (sets DRSUP_BUILD and sys.path for the test helpers)
from drsup import DRCTL, Daemon, wait_until  # noqa: E402
from fakevenue import FakeVenue  # noqa: E402
from pgharness import PG_BIN, PgCluster  # noqa: E402

OUT_DIR = backup_bench.OUT_DIR
HALT_TRIALS = max(1, int(os.environ.get("DRSUP_BENCH_HALT_TRIALS", "20")))
ROUNDS = max(1, int(os.environ.get("DRSUP_BENCH_SCN_ROUNDS", "2")))
PARTS = os.environ.get("DRSUP_BENCH_SCN_PARTS", "halt,crash,blips,rto").split(",")
MODES = os.environ.get("DRSUP_BENCH_SCN_MODES", "standby,cold").split(",")
PROBE_INTERVAL_MS = 250
SCN_DB = "scn"
TARGETS = {"halt_p99_vs_probe_interval": 4.0, "halt_crash_p99_ms": 100.0, "false_halts": 0,
           "rto_vs_pg_restore": 1.25, "rto_cold_vs_pg_restore": 1.0}
# The restore step's sessions run with scenarios.database_corruption.restore_maintenance_work_mem
# (default 256MB); for information, each round also times the bare pg_restore -j2 with the same
# setting (PGOPTIONS), so the gain that is only the setting is visible.
TUNED_MWM = os.environ.get("DRSUP_BENCH_SCN_TUNED_MWM", "256MB")
STANDBY_DBS = (SCN_DB + "_drsup_standby", SCN_DB + "_drsup_staging")
log = backup_bench.log


def percentile(xs, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(xs)
    k = max(0, min(len(s) - 1, int(-(-p * len(s) // 100)) - 1))
    return s[k]


def ctl_json(d, *args, timeout=60):
    p = d.ctl("--json", *args, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError("drctl %s failed (%d): %s %s\n%s" % (" ".join(args), p.returncode, p.stdout,
                                                                p.stderr, d.log()[-3000:]))
    return json.loads(p.stdout)


# ---- detection to confirmed halt ----------------------------------------------------------------

def quiet_venue():
    """The fake venue, without a traceback when the daemon drops a status request at shutdown."""
    v = FakeVenue()
    v.server.handle_error = lambda request, client_address: None
    return v


def halt_trials(work, n, sig=signal.SIGQUIT):
    pg = PgCluster()
    pg.init()
    pg.start()
    venue = quiet_venue()
    halt_at = []
    venue.on_halt = lambda: halt_at.append(time.monotonic())
    d = Daemon(os.path.join(work, "halt-%d" % sig), {
        "log_level": "notice",
        "database": {"conninfo": pg.conninfo(), "probe_interval": "%dms" % PROBE_INTERVAL_MS,
                     "probe_timeout": "2s", "connect_timeout": "2s"},
        "venue": venue.config(timeout="2s"),
        "detector": {"halt_after": 2},
    })
    samples, venue_ms, confirm_ms = [], [], []
    try:
        d.start()
        for i in range(n):
            # Start live, the database healthy in the daemon's eyes, no halt held.
            wait_until(lambda: ctl_json(d, "status")["detector"]["phase"] == "healthy",
                       timeout=30, interval=0.05, what="detector healthy")
            tr = ctl_json(d, "trading")
            assert tr["halted"] is False and venue.mode == "live", tr
            n_halts = len(halt_at)
            pid = pg.postmaster_pid()
            t0 = time.monotonic()
            os.kill(pid, sig)
            while True:
                tr = ctl_json(d, "trading")
                if tr["halted"] and not tr["halting"]:
                    t_conf = time.monotonic()
                    break
                if time.monotonic() - t0 > 30:
                    raise RuntimeError("no confirmed halt within 30 s: %s\n%s" % (tr, d.log()[-3000:]))
            wait_until(lambda: len(halt_at) > n_halts, timeout=5, what="the venue's halt")
            t_venue = halt_at[n_halts]
            ms = (max(t_conf, t_venue) - t0) * 1000
            samples.append(round(ms, 1))
            venue_ms.append(round((t_venue - t0) * 1000, 1))
            confirm_ms.append(round((t_conf - t0) * 1000, 1))
            log("  halt trial %2d/%d: %6.0f ms (venue got the halt at %4.0f ms, confirmed at %4.0f ms)"
                % (i + 1, n, ms, venue_ms[-1], confirm_ms[-1]))
            # Restart the server (the harness: the detector has no restart_command here), then resume.
            wait_until(lambda: pg.postmaster_pid() is None or not _alive(pid), timeout=30,
                       what="the postmaster gone")
            pg.start()
            wait_until(lambda: ctl_json(d, "status")["detector"]["phase"] == "healthy",
                       timeout=30, interval=0.05, what="detector healthy again")
            ctl_json(d, "resume", "--force", "--reason", "bench: next halt trial")
            wait_until(lambda: venue.mode == "live" and not ctl_json(d, "trading")["halted"],
                       timeout=30, what="trading live again")
        d.stop()
    finally:
        d.cleanup()
        venue.close()
        pg.cleanup()
    return {
        "samples_ms": samples, "venue_received_ms": venue_ms, "confirmed_seen_ms": confirm_ms,
        "p50_ms": percentile(samples, 50), "p90_ms": percentile(samples, 90),
        "p99_ms": percentile(samples, 99), "max_ms": max(samples), "min_ms": min(samples),
        "trials": len(samples), "probe_interval_ms": PROBE_INTERVAL_MS, "halt_after": 2,
    }


def blip_trials(work, n):
    """One-probe blips: the probe's idle backend is terminated while the server stays up."""
    pg = PgCluster()
    pg.init()
    pg.start()
    venue = quiet_venue()
    d = Daemon(os.path.join(work, "blips"), {
        "log_level": "notice",
        "database": {"conninfo": pg.conninfo(), "probe_interval": "%dms" % PROBE_INTERVAL_MS,
                     "probe_timeout": "2s", "connect_timeout": "2s"},
        "venue": venue.config(timeout="2s"),
        "detector": {"halt_after": 2},
    })
    try:
        d.start()
        wait_until(lambda: ctl_json(d, "status")["detector"]["phase"] == "healthy", timeout=30,
                   interval=0.05, what="detector healthy")
        for i in range(n):
            before = ctl_json(d, "status")["components"]["database"]["failures"]
            pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()")
            wait_until(lambda: ctl_json(d, "status")["components"]["database"]["failures"] > before,
                       timeout=10, interval=0.01, what="the blip seen")
            wait_until(lambda: ctl_json(d, "status")["detector"]["consecutive_failures"] == 0,
                       timeout=10, interval=0.01, what="the confirming probe")
        halts = venue.count("POST", "/halt")
        d.stop()
    finally:
        d.cleanup()
        venue.close()
        pg.cleanup()
    log("  %d blips: %d halt(s)" % (n, halts))
    return {"blips": n, "false_halts": halts, "probe_interval_ms": PROBE_INTERVAL_MS, "halt_after": 2}


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


# ---- the full recovery against a bare pg_restore -j2 --------------------------------------------

def scn_databases(pg):
    return [x for x in pg.psql("SELECT datname FROM pg_database WHERE datname = '%s' OR datname LIKE '%s\\_%%' "
                               "OR datname LIKE 'bench_scn_base%%'" % (SCN_DB, SCN_DB)).split() if x]


def drop_scn_databases(pg, keep=()):
    for name in scn_databases(pg):
        if name not in keep:
            pg.psql("DROP DATABASE \"%s\" WITH (FORCE)" % name)


class Recovery:
    def __init__(self, pg, work, mode):
        self.pg = pg
        self.work = work = os.path.join(work, mode)
        self.mode = mode
        os.makedirs(work, exist_ok=True)
        self.venue = quiet_venue()
        self.key = os.path.join(work, "backup.key")
        with open(self.key, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(self.key, 0o600)
        self.backup_dir = os.path.join(work, "backups")
        self.restore_jobs = os.environ.get("DRSUP_BENCH_RESTORE_JOBS")
        scn = {"rto": "10m", "rpo": "24h",
               "validation_queries": ["SELECT count(*) > 0 FROM orders", "SELECT count(*) > 0 FROM fills"]}
        if self.restore_jobs:
            scn["restore_jobs"] = int(self.restore_jobs)
        scn["standby"] = mode == "standby"
        self.daemon = Daemon(work, {
            "log_level": "notice",
            "database": {"conninfo": pg.conninfo(SCN_DB), "probe_interval": "%dms" % PROBE_INTERVAL_MS,
                         "probe_timeout": "2s", "connect_timeout": "2s"},
            "venue": self.venue.config(timeout="5s"),
            "backup": {
                "directory": self.backup_dir, "prefix": SCN_DB, "conninfo": pg.conninfo(SCN_DB),
                "pg_dump": os.path.join(PG_BIN, "pg_dump"), "pg_restore": os.path.join(PG_BIN, "pg_restore"),
                "key_file": self.key, "dump_timeout": "2h", "verify": {"after_backup": True},
            },
            "detector": {"halt_after": 2},
            # The benchmark schema (run.py) has no positions table and the fake exchange reports no
            # positions or fills: positions and stale orders are empty by construction, the duplicate
            # check is the default one (a GROUP BY over every order: a real cost, kept).
            "reconcile": {
                "positions_query": "SELECT symbol, '0', '0' FROM orders WHERE false",
                "stale_orders_query": "SELECT client_order_id, symbol, created_at::text FROM orders "
                                      "WHERE $1::bigint < 0",
                "missing_fills_query": "SELECT f FROM unnest($1::text[]) AS f WHERE NOT EXISTS "
                                       "(SELECT 1 FROM fills WHERE venue_trade_id = f)",
                "replay_fill_query": "SELECT $1, $2, $3, $4, $5, $6, $7",
                # The post-resume watch comes after the RTO's end (resume_live); a round waits for
                # the run's end, so the watch is kept short rather than the default 60 s.
                "post_resume_checks": ["200ms"],
                # The default referential check, for this schema (fills point at orders by id).
                "referential_queries": ["SELECT f.id FROM fills f WHERE NOT EXISTS "
                                        "(SELECT 1 FROM orders o WHERE o.id = f.order_id)"],
            },
            "scenarios": {"database_corruption": scn},
        })
        self.seq = 0
        self.samples = {"rto_ms": [], "pg_restore_j2_s": [], "decrypt_s": [], "backup_s": [], "steps": [],
                        "standby_stage_s": [], "pg_restore_j2_tuned_s": []}

    def backup(self):
        t0 = time.monotonic()
        res = ctl_json(self.daemon, "--timeout", "2h", "backup", "now", "--wait", timeout=7200)
        self.samples["backup_s"].append(round(time.monotonic() - t0, 3))
        assert res["manifest"]["verification"]["container"] == "ok", res
        self.wait_standby(res["name"])
        return os.path.join(self.backup_dir, res["name"])

    def wait_standby(self, name):
        """In standby mode: wait until the standby restore holds backup `name` (not timed in the RTO)."""
        if self.mode != "standby":
            return
        t0 = time.monotonic()
        wait_until(lambda: (lambda s: s["state"] == "ready" and s.get("backup") == name)(
            ctl_json(self.daemon, "status")["standby"]), timeout=3600, interval=0.5, what="standby ready")
        self.samples["standby_stage_s"].append(round(time.monotonic() - t0, 3))
        log("  standby restore ready after %.1f s" % (time.monotonic() - t0))

    def baseline(self, path):
        plain = os.path.join(self.work, "decrypted.dump")
        self.samples["decrypt_s"].append(round(backup_bench.timed(
            [DRCTL, "backup", "decrypt", "--key-file", self.key, path, "-o", plain]), 3))
        self.seq += 1
        db = "bench_scn_base_%d" % self.seq
        self.pg.psql("CREATE DATABASE %s" % db)
        t = backup_bench.timed([os.path.join(PG_BIN, "pg_restore"), "-j2", "--no-owner", "-d",
                                self.pg.conninfo(db), plain])
        self.samples["pg_restore_j2_s"].append(round(t, 3))
        log("  bare pg_restore -j2: %.2f s" % t)
        self.pg.psql("DROP DATABASE %s WITH (FORCE)" % db)
        if self.mode == "cold" and TUNED_MWM:
            db += "_tuned"
            self.pg.psql("CREATE DATABASE %s" % db)
            env = dict(os.environ, PGOPTIONS="-c maintenance_work_mem=%s" % TUNED_MWM)
            t0 = time.monotonic()
            subprocess.run([os.path.join(PG_BIN, "pg_restore"), "-j2", "--no-owner", "-d", self.pg.conninfo(db), plain],
                           check=True, env=env, stdout=subprocess.DEVNULL)
            t = time.monotonic() - t0
            self.samples["pg_restore_j2_tuned_s"].append(round(t, 3))
            log("  bare pg_restore -j2, maintenance_work_mem %s (for information): %.2f s" % (TUNED_MWM, t))
            self.pg.psql("DROP DATABASE %s WITH (FORCE)" % db)
        os.unlink(plain)

    def recover(self):
        d = self.daemon
        res = ctl_json(d, "execute", "--scenario", "database_corruption", "--reason", "bench: RTO round")
        rid = res.get("run") or res.get("id")
        run = wait_until(lambda: (lambda r: r if r["status"] in ("succeeded", "failed", "aborted", "held",
                                                                  "stayed_halted", "not_reconciled") else None)(
            ctl_json(d, "run", rid)), timeout=1800, interval=0.2, what="the run to finish")
        if run["status"] != "succeeded":
            raise RuntimeError("run %s ended %s:\n%s" % (rid, run["status"], d.log()[-6000:]))
        with open(os.path.join(d.state_dir, "incidents", rid + ".json")) as f:
            rep = json.load(f)
        steps = []
        for s in rep["timeline"]["steps"] if isinstance(rep["timeline"], dict) else rep["timeline"]:
            steps.append({"step": s.get("step"), "ms": _step_ms(s), "outcome": s.get("outcome") or s.get("status")})
        self.samples["rto_ms"].append(rep["rto_ms"])
        self.samples["steps"].append(steps)
        log("  recovery %s: rto %.2f s (%s)" % (rid, rep["rto_ms"] / 1000, ", ".join(
            "%s %.1f" % (s["step"], (s["ms"] or 0) / 1000) for s in steps)))
        # The evidence database of this round, and nothing else, goes (the restored copy is now scn).
        drop_scn_databases(self.pg, keep=(SCN_DB,) + STANDBY_DBS)
        wait_until(lambda: self.venue.mode == "live", timeout=10, what="venue live")
        # The run consumed the standby: let it be restaged before anything else is timed.
        self.wait_standby(rep["backup"]["name"])
        return rep


def _step_ms(s):
    for a, b in (("started_ms", "ended_ms"), ("start_ms", "end_ms"), ("started", "ended")):
        if isinstance(s.get(a), (int, float)) and isinstance(s.get(b), (int, float)):
            return s[b] - s[a]
    return s.get("duration_ms")


def rto_rounds(work, rounds, mode):
    pg = backup_bench.open_cluster()
    rec = None
    try:
        drop_scn_databases(pg)
        t0 = time.monotonic()
        pg.psql("CREATE DATABASE %s TEMPLATE %s STRATEGY FILE_COPY" % (SCN_DB, backup_bench.DB))
        log("copied %s into %s in %.1f s" % (backup_bench.DB, SCN_DB, time.monotonic() - t0))
        rec = Recovery(pg, work, mode)
        rec.daemon.start()
        for r in range(rounds):
            log("recovery round %d/%d (%s)" % (r + 1, rounds, mode))
            path = rec.backup()
            if r % 2 == 0:
                rec.baseline(path)
                rec.recover()
            else:
                rec.recover()
                rec.baseline(path)
        rec.daemon.stop()
    finally:
        if rec is not None:
            rec.daemon.cleanup()
            rec.venue.close()
        try:
            drop_scn_databases(pg)
        finally:
            pg.stop()
            pg.cleanup()
    s = rec.samples
    paired = [round(a / 1000 / b, 3) for a, b in zip(s["rto_ms"], s["pg_restore_j2_s"])]
    tuned = [round(a / 1000 / b, 3) for a, b in zip(s["rto_ms"], s["pg_restore_j2_tuned_s"])]
    return dict(s, mode=mode, paired_ratios=paired, paired_ratios_vs_tuned=tuned, rto_min_ms=min(s["rto_ms"]),
                pg_restore_j2_min_s=min(s["pg_restore_j2_s"]),
                restore_jobs=rec.restore_jobs or "default")


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    t_start = time.monotonic()
    machine = backup_bench.machine_info()
    work = tempfile.mkdtemp(prefix="scn-", dir=OUT_DIR)
    result = {"targets": TARGETS, "ratios": {}, "machine": machine, "gb": backup_bench.GB}
    try:
        if "halt" in PARTS:
            log("detection to confirmed halt: %d trials" % HALT_TRIALS)
            h = halt_trials(work, HALT_TRIALS)
            result["halt"] = h
            result["ratios"]["halt_p99_vs_probe_interval"] = round(h["p99_ms"] / PROBE_INTERVAL_MS, 3)
        if "crash" in PARTS:
            log("crash (SIGKILL of the postmaster) to confirmed halt: %d trials" % HALT_TRIALS)
            h = halt_trials(work, HALT_TRIALS, signal.SIGKILL)
            result["halt_crash"] = h
            result["ratios"]["halt_crash_p99_ms"] = h["p99_ms"]
        if "blips" in PARTS:
            log("one-probe blips: %d" % HALT_TRIALS)
            b = blip_trials(work, HALT_TRIALS)
            result["blips"] = b
            result["ratios"]["false_halts"] = b["false_halts"]
        if "rto" in PARTS:
            for mode in MODES:
                log("full recovery vs bare pg_restore -j2: %d rounds, %s" % (ROUNDS, mode))
                r = rto_rounds(work, ROUNDS, mode)
                key = "rto" if mode == "standby" else "rto_" + mode
                result[key] = r
                result["ratios"][key + "_vs_pg_restore"] = round(r["rto_min_ms"] / 1000 / r["pg_restore_j2_min_s"], 3)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    machine["loadavg_end"] = os.getloadavg()
    result["met"] = {k: v <= TARGETS[k] for k, v in result["ratios"].items()}
    result["notes"] = ("halt: ms from SIGQUIT (halt_crash: SIGKILL) of the postmaster to the later of the venue's POST /halt and the "
                       "first drctl trading answer halted=true halting=false; rto: rto_ms of the incident report "
                       "of `drctl execute --scenario database_corruption` (detection = the execute), ratio from the "
                       "minimum of each series; baseline = pg_restore -j2 --no-owner of the same backup, decrypted "
                       "beforehand with drctl backup decrypt (decrypt not timed); rto = with "
                       "scenarios.database_corruption.standby on (the standby restore holds the backup), "
                       "rto_cold = standby off (restore from the file)")
    with open(os.path.join(OUT_DIR, "scenario.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    print()
    print("Recovery benchmark (issue 5), nproc %s" % machine["nproc"])
    if "halt" in result:
        h = result["halt"]
        print("detection -> confirmed halt, %d trials, probe %d ms, halt_after 2: p50 %.0f  p90 %.0f  p99 %.0f  "
              "max %.0f ms" % (h["trials"], PROBE_INTERVAL_MS, h["p50_ms"], h["p90_ms"], h["p99_ms"], h["max_ms"]))
    if "halt_crash" in result:
        h = result["halt_crash"]
        print("crash (SIGKILL) -> confirmed halt, %d trials: p50 %.0f  p90 %.0f  p99 %.0f  max %.0f ms"
              % (h["trials"], h["p50_ms"], h["p90_ms"], h["p99_ms"], h["max_ms"]))
    if "blips" in result:
        print("one-probe blips: %d, false halts: %d" % (result["blips"]["blips"], result["blips"]["false_halts"]))
    for key in ("rto", "rto_cold"):
        if key not in result:
            continue
        r = result[key]
        print("%s mode:" % r["mode"])
        print("  RTO (s):              %s" % " ".join("%.2f" % (x / 1000) for x in r["rto_ms"]))
        print("  bare pg_restore -j2:  %s" % " ".join("%.2f" % x for x in r["pg_restore_j2_s"]))
        print("  paired ratios:        %s" % " ".join("%.3f" % x for x in r["paired_ratios"]))
        if r.get("pg_restore_j2_tuned_s"):
            print("  bare -j2, mwm %-7s %s (for information)" % (TUNED_MWM + ":", " ".join(
                "%.2f" % x for x in r["pg_restore_j2_tuned_s"])))
        if r["standby_stage_s"]:
            print("  standby staged in (s): %s" % " ".join("%.1f" % x for x in r["standby_stage_s"]))
        for i, steps in enumerate(r["steps"]):
            print("  round %d steps (s):    %s" % (i + 1, "  ".join(
                "%s %.2f" % (s["step"], (s["ms"] or 0) / 1000) for s in steps)))
    print()
    print("%-28s %7s %7s" % ("ratio", "value", "target"))
    for k, v in result["ratios"].items():
        print("%-28s %7.3f %7.2f  %s" % (k, v, TARGETS[k], "ok" if v <= TARGETS[k] else "MISSED"))
    print("wrote %s (total %.0f s)" % (os.path.join(OUT_DIR, "scenario.json"), time.monotonic() - t_start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
