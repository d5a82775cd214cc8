#!/usr/bin/python3
"""
bench/control.py: control-socket latency while a backup runs (issue 11; `make bench`).

Owns one run: the cached benchmark cluster of bench/run.py (DRSUP_BENCH_CONTROL_GB GB of trading
data, default 0.3), one daemon, and 200 clients (DRSUP_BENCH_CLIENTS) on its control socket, each
sending `status` every 100 ms (paced, not closed-loop) and timing each reply. Three phases:

  idle                    no backup;
  during_backup           `drctl backup now --wait` running, backup.nice/ioprio at their defaults
                          (10, best-effort);
  during_backup_normal    the same backup with backup.nice 0 and backup.ioprio normal: the
                          baseline, in the same run (the configuration is reloaded in between).

Before them, the footprint (issue 11): the daemon's VmRSS (/proc/PID/status) and PSS
(/proc/PID/smaps_rollup) idle after start-up, then after DRSUP_BENCH_FOOTPRINT_BACKUPS (default 2)
backups, each verified after it (no clients connected in either measurement). The target: back
within 2 MB (2048 kB) of the idle RSS.

Writes build/bench/control.json (status_p99_ms_idle, status_p99_ms_during_backup, the baseline,
their ratios and the target: p99 <= 5 ms during a backup; idle_rss_kb, idle_pss_kb,
post_backup_rss_kb, post_backup_pss_kb and their delta) and prints them. Standard library only.
"""
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
os.environ.setdefault("DRSUP_BENCH_GB", os.environ.get("DRSUP_BENCH_CONTROL_GB", "0.3"))
sys.path.insert(0, HERE)
import run  # noqa: E402  (the cached cluster, and the drsup harness on sys.path)

from drsup import Daemon  # noqa: E402
from drsup import deep_merge as run_deep_merge  # noqa: E402

CLIENTS = int(os.environ.get("DRSUP_BENCH_CLIENTS", "200"))
PERIOD = 0.1
IDLE_SECONDS = float(os.environ.get("DRSUP_BENCH_IDLE_SECONDS", "8"))
TARGET_P99_MS = 5.0
FOOTPRINT_BACKUPS = int(os.environ.get("DRSUP_BENCH_FOOTPRINT_BACKUPS", "2"))
TARGET_RSS_DELTA_KB = 2048


def memory_kb(pid):
    """VmRSS, RssAnon, RssFile (/proc/PID/status) and Pss (/proc/PID/smaps_rollup), in kB."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0])
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k == "Pss":
                out[k] = int(v.split()[0])
    return out


def settled_memory_kb(pid, seconds=2.0):
    """memory_kb once the daemon has been quiet for a moment (its loop idle)."""
    time.sleep(seconds)
    return memory_kb(pid)


def footprint(d):
    idle = settled_memory_kb(d.proc.pid, 3.0)
    seconds = []
    for _ in range(FOOTPRINT_BACKUPS):
        t0 = time.monotonic()
        p = d.ctl("--timeout", "600s", "--json", "backup", "now", "--wait", timeout=700)
        if p.returncode != 0:
            raise RuntimeError("backup failed: %s" % p.stderr[-500:])
        seconds.append(round(time.monotonic() - t0, 2))
    post = settled_memory_kb(d.proc.pid)
    out = {"backups": FOOTPRINT_BACKUPS, "verified_after_backup": True, "backup_seconds": seconds,
           "idle": idle, "post_backup": post}
    run.log("%-22s %s" % ("footprint", json.dumps(out)))
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(len(xs) * p))] if xs else None


async def connect(path):
    """One connection; retried while the listen backlog is full (EAGAIN on a Unix socket)."""
    for _ in range(200):
        try:
            return await asyncio.open_unix_connection(path, limit=1 << 20)
        except (BlockingIOError, ConnectionRefusedError):
            await asyncio.sleep(0.01)
    raise RuntimeError("cannot connect to %s" % path)


async def client(conn, stop, lat, errors, offset):
    reader, writer = conn
    await asyncio.sleep(offset)
    n = 0
    next_t = time.perf_counter()
    while not stop.is_set():
        n += 1
        t0 = time.perf_counter()
        try:
            writer.write(b'{"id":%d,"cmd":"status","args":{}}\n' % n)
            line = await reader.readline()
        except OSError as e:
            errors.append(str(e))
            return
        if not line:
            errors.append("closed")
            return
        lat.append((time.perf_counter() - t0) * 1000.0)
        next_t += PERIOD
        delay = next_t - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        else:
            next_t = time.perf_counter()
    writer.close()


async def measure(path, while_fn):
    """Latencies (ms) of all clients while while_fn() is true (polled every 50 ms)."""
    stop = asyncio.Event()
    lat, errors = [], []
    conns = [await connect(path) for _ in range(CLIENTS)]  # one at a time: no backlog overflow
    tasks = [asyncio.create_task(client(c, stop, lat, errors, PERIOD * i / CLIENTS)) for i, c in enumerate(conns)]
    await asyncio.sleep(1.0)  # all connected and pacing
    lat.clear()
    while while_fn():
        await asyncio.sleep(0.05)
    stop.set()
    await asyncio.gather(*tasks)
    return lat, errors


def phase(d, name, backup):
    if backup:
        done = threading.Event()
        result = {}

        def go():
            time.sleep(1.0)  # the clients are connected first
            t0 = time.monotonic()
            p = d.ctl("--timeout", "600s", "--json", "backup", "now", "--wait", timeout=700)
            result.update(rc=p.returncode, seconds=time.monotonic() - t0, err=p.stderr[-500:])
            done.set()

        threading.Thread(target=go, daemon=True).start()
        lat, errors = asyncio.run(measure(d.socket, lambda: not done.is_set()))
        if result.get("rc") != 0:
            raise RuntimeError("backup failed: %s" % result)
    else:
        t_end = time.monotonic() + 1.0 + IDLE_SECONDS
        lat, errors = asyncio.run(measure(d.socket, lambda: time.monotonic() < t_end))
        result = {}
    out = {"samples": len(lat), "p50_ms": round(pct(lat, 0.50), 3), "p99_ms": round(pct(lat, 0.99), 3),
           "max_ms": round(max(lat), 3), "errors": len(errors)}
    if backup:
        out["backup_seconds"] = round(result["seconds"], 2)
    run.log("%-22s %s" % (name, json.dumps(out)))
    return out


def main():
    os.makedirs(run.OUT_DIR, exist_ok=True)
    pg = run.open_cluster()
    work = tempfile.mkdtemp(prefix="control-", dir=run.OUT_DIR)
    key = os.path.join(work, "backup.key")
    with open(key, "w") as f:
        f.write(os.urandom(32).hex() + "\n")
    os.chmod(key, 0o600)
    bdir = os.path.join(work, "backups")

    def cfg(nice, ioprio, verify=False):
        return {"log_level": "info", "database": {"conninfo": pg.conninfo(run.DB)},
                "control": {"max_clients": CLIENTS + 16},
                "backup": {"directory": bdir, "prefix": "bench", "conninfo": pg.conninfo(run.DB),
                           "key_file": key, "nice": nice, "ioprio": ioprio,
                           "verify": {"after_backup": verify}}}

    d = Daemon(work, cfg(10, "best-effort", verify=True), name="control")
    res = {}
    try:
        d.start()
        res["footprint"] = footprint(d)
        d.write_config(cfg(10, "best-effort"))
        p = d.ctl("reload")
        if p.returncode != 0:
            raise RuntimeError("reload failed: %s" % p.stderr)
        res["idle"] = phase(d, "idle", False)
        res["during_backup"] = phase(d, "during_backup", True)
        d.write_config(run_deep_merge(d.config, {"backup": {"nice": 0, "ioprio": "normal"}}))
        p = d.ctl("reload")
        if p.returncode != 0:
            raise RuntimeError("reload failed: %s" % p.stderr)
        res["during_backup_normal"] = phase(d, "during_backup_normal", True)
    finally:
        d.stop()
        pg.stop()
    out = {
        "clients": CLIENTS, "period_ms": PERIOD * 1000, "nproc": os.cpu_count(),
        "status_p99_ms_idle": res["idle"]["p99_ms"],
        "status_p99_ms_during_backup": res["during_backup"]["p99_ms"],
        "status_p99_ms_during_backup_normal_priority": res["during_backup_normal"]["p99_ms"],
        "ratio_during_backup_vs_idle": round(res["during_backup"]["p99_ms"] / res["idle"]["p99_ms"], 3),
        "ratio_low_vs_normal_priority": round(res["during_backup"]["p99_ms"]
                                              / res["during_backup_normal"]["p99_ms"], 3),
        "target_status_p99_ms_during_backup": TARGET_P99_MS,
        "idle_rss_kb": res["footprint"]["idle"]["VmRSS"],
        "idle_pss_kb": res["footprint"]["idle"]["Pss"],
        "post_backup_rss_kb": res["footprint"]["post_backup"]["VmRSS"],
        "post_backup_pss_kb": res["footprint"]["post_backup"]["Pss"],
        "post_backup_rss_delta_kb": res["footprint"]["post_backup"]["VmRSS"] - res["footprint"]["idle"]["VmRSS"],
        "target_post_backup_rss_delta_kb": TARGET_RSS_DELTA_KB,
        "phases": res,
    }
    with open(os.path.join(run.OUT_DIR, "control.json"), "w") as f:
        json.dump(out, f, indent=2)
    print()
    print("status p99 at %d clients (every %.0f ms each): idle %.2f ms, during a backup %.2f ms "
          "(target %.0f ms: %s), during a backup at normal priority %.2f ms"
          % (CLIENTS, PERIOD * 1000, out["status_p99_ms_idle"], out["status_p99_ms_during_backup"],
             TARGET_P99_MS, "ok" if out["status_p99_ms_during_backup"] <= TARGET_P99_MS else "MISSED",
             out["status_p99_ms_during_backup_normal_priority"]))
    print("ratios: during/idle %.2f, low/normal priority %.2f"
          % (out["ratio_during_backup_vs_idle"], out["ratio_low_vs_normal_priority"]))
    print("footprint: RSS %d kB idle (PSS %d kB), %d kB after %d verified backups (PSS %d kB): %+d kB "
          "(target within %d kB: %s)"
          % (out["idle_rss_kb"], out["idle_pss_kb"], out["post_backup_rss_kb"], FOOTPRINT_BACKUPS,
             out["post_backup_pss_kb"], out["post_backup_rss_delta_kb"], TARGET_RSS_DELTA_KB,
             "ok" if out["post_backup_rss_delta_kb"] <= TARGET_RSS_DELTA_KB else "MISSED"))
    print("wrote %s" % os.path.join(run.OUT_DIR, "control.json"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
