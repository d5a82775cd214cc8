#!/usr/bin/python3
"""
bench/walsync.py: what synchronous archiving costs commits (issue 13; `make bench`).

Owns one run on a small fresh cluster with fsync on (the harness's default is off: a commit
without its own fsync would make any synchronous receiver look expensive), committing one-row
INSERTs with pgbench (DRSUP_BENCH_WALSYNC_CLIENTS clients, default 4, for
DRSUP_BENCH_WALSYNC_SECONDS each, default 8) in four phases, each in the same run:

  none                no receiver: the primary alone;
  pg_receivewal_sync  the anchor: `pg_receivewal --synchronous` over a slot, named in
                      synchronous_standby_names (what the issue measured at ~25 % of throughput);
  daemon_async        drsupervisord's archive, wal.synchronous false (commits do not wait);
  daemon_sync         drsupervisord's archive, wal.synchronous true (every commit waits until its
                      WAL is sealed, encrypted and fdatasync'd in the archive).

Writes build/bench/walsync.json (tps of each phase, sync_vs_none, sync_vs_pg_receivewal) and
prints them. Standard library only.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run  # noqa: E402  (paths, the drsup harness on sys.path)

from drsup import Daemon, wait_until  # noqa: E402
from pgharness import PG_BIN, PgCluster  # noqa: E402

CLIENTS = int(os.environ.get("DRSUP_BENCH_WALSYNC_CLIENTS", "4"))
SECONDS = int(os.environ.get("DRSUP_BENCH_WALSYNC_SECONDS", "8"))


def pgbench(pg, script):
    argv = pg._cmd([os.path.join(PG_BIN, "pgbench"), "-n", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
                    "-c", str(CLIENTS), "-j", str(min(CLIENTS, 2)), "-T", str(SECONDS), "-f", script, "postgres"])
    out = subprocess.run(argv, capture_output=True, text=True, cwd="/", check=True).stdout
    m = re.search(r"tps = ([0-9.]+)", out)
    if not m:
        raise RuntimeError("pgbench printed no tps:\n" + out)
    return float(m.group(1))


def set_sync(pg, value):
    pg.psql("ALTER SYSTEM SET synchronous_standby_names = '%s'" % value if value
            else "ALTER SYSTEM RESET synchronous_standby_names")
    pg.psql("SELECT pg_reload_conf()")


def main():
    os.makedirs(run.OUT_DIR, exist_ok=True)
    work = tempfile.mkdtemp(prefix="drsup-bench-walsync-")
    os.chmod(work, 0o755)
    pg = PgCluster(settings={"fsync": "on", "synchronous_commit": "on", "wal_keep_size": "256MB"})
    res = {}
    try:
        pg.init()
        pg.start()
        pg.psql("CREATE TABLE t (id bigserial PRIMARY KEY, v text)")
        script = os.path.join(work, "insert.sql")
        with open(script, "w") as f:
            f.write("INSERT INTO t (v) VALUES ('x');\n")
        os.chmod(script, 0o644)

        res["none"] = pgbench(pg, script)
        run.log("none                %.0f tps" % res["none"])

        # the anchor: pg_receivewal --synchronous, named in synchronous_standby_names
        rw_dir = os.path.join(work, "pg_receivewal")
        os.makedirs(rw_dir, mode=0o700)
        if os.geteuid() == 0:
            import pwd
            pw = pwd.getpwnam("postgres")
            os.chown(rw_dir, pw.pw_uid, pw.pw_gid)
        pg._run([os.path.join(PG_BIN, "pg_receivewal"), "-h", "127.0.0.1", "-p", str(pg.port), "-U", "postgres",
                 "--slot", "bench_rw", "--create-slot", "--if-not-exists", "-D", rw_dir])
        rw = subprocess.Popen(pg._cmd([os.path.join(PG_BIN, "pg_receivewal"), "-d",
                                       "host=127.0.0.1 port=%d user=postgres application_name=pg_receivewal"
                                       % pg.port, "--slot", "bench_rw", "--synchronous", "-D", rw_dir, "-n"]),
                              cwd="/", stderr=subprocess.DEVNULL)
        try:
            wait_until(lambda: pg.psql("SELECT count(*) FROM pg_stat_replication WHERE application_name = "
                                       "'pg_receivewal'") == "1", timeout=20, what="pg_receivewal streaming")
            set_sync(pg, "pg_receivewal")
            res["pg_receivewal_sync"] = pgbench(pg, script)
        finally:
            set_sync(pg, None)
            rw.terminate()
            rw.wait(timeout=20)
        pg.psql("SELECT pg_drop_replication_slot('bench_rw')")
        run.log("pg_receivewal_sync  %.0f tps" % res["pg_receivewal_sync"])

        key = os.path.join(work, "backup.key")
        with open(key, "w") as f:
            f.write(os.urandom(32).hex() + "\n")
        os.chmod(key, 0o600)
        for name, sync in (("daemon_async", False), ("daemon_sync", True)):
            d = Daemon(work, {"database": {"conninfo": pg.conninfo()},
                              "backup": {"directory": os.path.join(work, "backups-" + name), "prefix": "b",
                                         "conninfo": pg.conninfo(), "key_file": key},
                              "wal": {"conninfo": pg.conninfo(), "synchronous": sync}}, name=name)
            d.start()
            try:
                wait_until(lambda: d.ctl_json("wal-status")["state"] == "streaming", timeout=30, what="streaming")
                if sync:
                    wait_until(lambda: pg.psql("SHOW synchronous_standby_names") == '"drsupervisor_wal"',
                               timeout=30, what="synchronous on")
                res[name] = pgbench(pg, script)
            finally:
                d.stop()
                subprocess.run([os.path.join(run.BUILD, "drsupervisord"), "--release-sync", "--config",
                                d.config_path], capture_output=True)
                pg.psql("SELECT pg_drop_replication_slot('drsupervisor')", check=False)
            run.log("%-19s %.0f tps" % (name, res[name]))
    finally:
        pg.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    out = {
        "clients": CLIENTS, "seconds": SECONDS, "nproc": os.cpu_count(), "tps": res,
        "sync_vs_none": run.ratio(res["daemon_sync"], res["none"]),
        "async_vs_none": run.ratio(res["daemon_async"], res["none"]),
        "pg_receivewal_sync_vs_none": run.ratio(res["pg_receivewal_sync"], res["none"]),
        "sync_vs_pg_receivewal": run.ratio(res["daemon_sync"], res["pg_receivewal_sync"]),
    }
    with open(os.path.join(run.OUT_DIR, "walsync.json"), "w") as f:
        json.dump(out, f, indent=2)
    print()
    print("commit throughput (%d clients, fsync on): none %.0f tps, pg_receivewal --synchronous %.0f (%.2f), "
          "drsupervisord async %.0f (%.2f), synchronous %.0f (%.2f; %.2f of pg_receivewal's)"
          % (CLIENTS, res["none"], res["pg_receivewal_sync"], out["pg_receivewal_sync_vs_none"], res["daemon_async"],
             out["async_vs_none"], res["daemon_sync"], out["sync_vs_none"], out["sync_vs_pg_receivewal"]))


if __name__ == "__main__":
    main()
