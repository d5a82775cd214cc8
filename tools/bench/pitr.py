#!/usr/bin/python3
"""
bench/pitr.py: the time axis benchmark of issue 13 (`make bench`, after control.py; not in `make check`).

Owns one run on a copy of bench/run.py's cached ~1 GB cluster (the cache itself is never written:
the copy runs with wal_level replica, a pgBackRest archive_command and a write load), the real
daemon with a `wal:` section (flush_interval at its default, 1 s) and pgBackRest 2.45 from Debian
(installed by tools/setup-deps bench when missing) on the same cluster. A writer commits one row
every 1/DRSUP_BENCH_PITR_RATE s (default 200 a second) into `pitr_writes` for the whole run and
records each commit's acknowledgement (id, wall time). Three figures, each with its baseline in
the same run:

  physical_backup_vs_pgbackrest  `drctl backup now --physical --wait` (pg_basebackup tar, zstd,
                 AES-256-GCM, verified after the backup) / `pgbackrest backup --type=full`
                 (compress-type=zst, repo1-cipher-type=aes-256-cbc, start-fast, archive check on:
                 it waits for its stop segment in its archive), wall time, DRSUP_BENCH_PITR_ROUNDS
                 rounds (default 2), the order alternating.
  pitr_restore_vs_pgbackrest     a point-in-time recovery to T (a time taken while the writer
                 runs; the WAL switched after it so both archives hold it): ours by hand, as
                 docs/wal.md and test_wal.py do it (`drctl backup decrypt`, tar x, restore_command
                 `drctl wal-fetch`, recovery_target_time, promote), from the decrypt to the server
                 promoted / `pgbackrest restore --type=time --target=T --target-action=promote`,
                 server start, promoted. Both recovered clusters are checked against the writer.
  rpo_ms         DRSUP_BENCH_RPO_TRIALS (default 5) trials: the writer runs, the primary is
                 destroyed (every process of it stopped and killed at once, its data directory
                 removed), the archive is taken as the daemon left it, and the newest base backup
                 + the archive are recovered by hand to the end of the archive; the acknowledged
                 commits missing from the recovered cluster give the lost window (ms between the
                 last recovered and the last acknowledged commit). Median and max; the baseline is
                 wal.flush_interval. Each next trial runs on the cluster the previous one recovered
                 (a new daemon, a new archive and base backup), so no trial copies the 1 GB again.
  data_loss_rto_vs_pitr_restore  the whole data_loss scenario on the primary (after the RPO
                 trials: the cluster the last one recovered; a daemon of its own with a venue double,
                 tests/integration/fakevenue.py, a new archive and base backup): the writer runs
                 for a few seconds, T is taken, `drctl execute --scenario data_loss --before T`
                 (the operator's trigger; approve_resume off, so nothing waits for a person) runs
                 halt, evidence, the PITR to T on a side port, validation, the switch into the
                 primary's place (tools/pitr-switch), reconcile, shadow, live: the report's rto_ms
                 (detected -> live). The baseline, timed first in the same run: the bare by-hand
                 PITR of the same base backup to the same T (as pitr_restore_vs_pgbackrest's
                 "ours": decrypt, tar x, restore_command, promoted). The recovered primary is
                 checked against the writer.

Writes build/bench/pitr.json (ratios, targets, met, raw seconds, every trial) and prints a table.
Environment: DRSUP_BUILD, DRSUP_BENCH_GB (as run.py), DRSUP_BENCH_PITR_ROUNDS, DRSUP_BENCH_PITR_RATE,
DRSUP_BENCH_RPO_TRIALS, DRSUP_BENCH_RPO_SECONDS (writes before each destruction, default 5),
DRSUP_BENCH_PITR_PARTS ("backup,pitr,rpo,dataloss"; pitr needs backup).
Needs python3-psycopg2 (the writer); otherwise the standard library.
"""
import json
import os
import pwd
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import run  # noqa: E402  (the cached cluster; sets DRSUP_BUILD and sys.path for the test helpers)
from scenario import _step_ms, ctl_json  # noqa: E402
from drsup import DRCTL, Daemon, wait_until  # noqa: E402
from fakevenue import FakeVenue  # noqa: E402
from pgharness import PG_BIN, PG_USER, PgCluster, free_port  # noqa: E402
from test_backup import make_key  # noqa: E402
from test_wal import lsn, wait_archived, wait_streaming  # noqa: E402

ROUNDS = max(1, int(os.environ.get("DRSUP_BENCH_PITR_ROUNDS", "3")))
PGBR_EXTRA = os.environ.get("DRSUP_BENCH_PGBR_PROCESS_MAX2", "1") == "1"
RATE = float(os.environ.get("DRSUP_BENCH_PITR_RATE", "200"))
RPO_TRIALS = max(1, int(os.environ.get("DRSUP_BENCH_RPO_TRIALS", "5")))
RPO_SECONDS = float(os.environ.get("DRSUP_BENCH_RPO_SECONDS", "5"))
PARTS = os.environ.get("DRSUP_BENCH_PITR_PARTS", "backup,pitr,rpo,dataloss").split(",")
FLUSH_INTERVAL_MS = 1000  # wal.flush_interval's default: not configured below
STANZA = "bench"
TARGETS = {"physical_backup_vs_pgbackrest": 0.6, "pitr_restore_vs_pgbackrest": 1.0, "rpo_ms": 1000.0,
           "data_loss_rto_vs_pitr_restore": 1.2}
SWITCH = os.path.join(ROOT, "tools", "pitr-switch")
log = run.log
CLUSTERS = []  # every cluster this run made, discarded at the end whatever happened

# The copy of the cached cluster: what a base backup and a WAL receiver need. archive_mode and
# pgBackRest's archive_command go into postgresql.auto.conf only once its stanza is set up: with
# archive_mode on and no working archive_command, a base backup never ends (pg_basebackup waits
# for its WAL to be archived).
PRIMARY_SETTINGS = dict(run.PG_SETTINGS, wal_level="replica", max_wal_senders="10",
                        max_replication_slots="10")
# A recovered cluster: the same, never archiving (postgresql.auto.conf came with the backup).
RECOVERED_SETTINGS = dict(PRIMARY_SETTINGS, archive_mode="off")


def as_postgres(argv):
    return ["runuser", "-u", PG_USER, "--"] + argv


def chown_tree(path):
    pw = pwd.getpwnam(PG_USER)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    for root, dirs, files in os.walk(path):
        for n in dirs + files:
            os.lchown(os.path.join(root, n), pw.pw_uid, pw.pw_gid)


# ---- the writer -----------------------------------------------------------------------------------

class Writer:
    """One connection, one row a commit, paced at RATE; acks holds (id, wall time of the ack, the
    WAL insert position just after the row, before its commit record)."""

    def __init__(self, pg):
        self.conninfo = pg.conninfo(run.DB)
        self.acks = []
        self.error = None
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        conn = psycopg2.connect(self.conninfo)
        conn.autocommit = True
        with conn.cursor() as c:
            c.execute("CREATE TABLE IF NOT EXISTS pitr_writes (id bigserial PRIMARY KEY, "
                      "at timestamptz NOT NULL DEFAULT clock_timestamp(), pad text)")
        self._thread = threading.Thread(target=self._run, args=(conn,), daemon=True)
        self._thread.start()
        return self

    def _run(self, conn):
        pad = "x" * 120
        period = 1.0 / RATE
        next_t = time.monotonic()
        try:
            with conn.cursor() as c:
                while not self._stop.is_set():
                    c.execute("INSERT INTO pitr_writes (pad) VALUES (%s) RETURNING id, pg_current_wal_insert_lsn()",
                              (pad,))
                    row = c.fetchone()
                    self.acks.append((row[0], time.time(), lsn(row[1])))
                    next_t += period
                    delay = next_t - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    else:
                        next_t = time.monotonic()
        except psycopg2.Error as e:
            self.error = str(e).strip()
        finally:
            try:
                conn.close()
            except psycopg2.Error:
                pass

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=30)


# ---- clusters -------------------------------------------------------------------------------------

def cluster_in(path, settings):
    """A PgCluster in path (its directories made, owned by postgres), the data directory absent."""
    os.makedirs(path)
    pg = PgCluster(workdir=path, settings=settings)
    pg._make_dirs(os.path.abspath(path))
    CLUSTERS.append(pg)
    return pg


def copy_of_cache(work):
    """A running copy of the cached cluster, as the primary: the cache stays as run.py left it."""
    cache = run.open_cluster()
    src = cache.datadir
    cache.stop()
    t0 = time.monotonic()
    pg = cluster_in(os.path.join(work, "primary"), PRIMARY_SETTINGS)
    subprocess.run(["cp", "-a", src, pg.datadir], check=True)
    pg.start()
    log("primary: a copy of %s in %.1f s, port %d" % (src, time.monotonic() - t0, pg.port))
    return pg


def discard(pg):
    if pg is not None:
        path = pg.tmpdir
        pg.cleanup()
        if path:
            shutil.rmtree(path, ignore_errors=True)


def wait_promoted(pg, timeout=600):
    wait_until(lambda: pg.psql("SELECT pg_is_in_recovery()", check=False) == "f", timeout=timeout,
               interval=0.02, what="the recovered server promoted")


def cluster_pids(pg):
    """The postmaster and its children."""
    pm = pg.postmaster_pid()
    pids = [pm]
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pm:
                        pids.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return pids


def destroy(pg):
    """Every process of the server frozen at once (SIGSTOP), then killed; the data directory removed.
    Returns the wall time of the freeze: nothing the server does after it reaches anyone."""
    pids = cluster_pids(pg)
    for p in pids:
        os.kill(p, signal.SIGSTOP)
    t = time.time()
    for p in pids:
        os.kill(p, signal.SIGKILL)
    for p in pids:
        wait_until(lambda: not os.path.exists("/proc/%d" % p) or _zombie(p), timeout=10, what="pid %d gone" % p)
    shutil.rmtree(pg.datadir)
    pg._started = False
    return t


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


# ---- pgBackRest -----------------------------------------------------------------------------------

class PgBackRest:
    """A stanza in a temporary directory, its repository beside it, driven as the postgres user."""

    def __init__(self, work, pg):
        self.dir = os.path.join(work, "pgbackrest")
        for sub in ("repo", "log", "lock", "spool"):
            os.makedirs(os.path.join(self.dir, sub), mode=0o700)
        self.conf = os.path.join(self.dir, "pgbackrest.conf")
        with open(self.conf, "w") as f:
            f.write("[global]\nrepo1-path=%s/repo\nrepo1-cipher-type=aes-256-cbc\nrepo1-cipher-pass=%s\n"
                    "compress-type=zst\nstart-fast=y\nlog-path=%s/log\nlock-path=%s/lock\n"
                    "spool-path=%s/spool\nlog-level-console=warn\nlog-level-file=info\n\n"
                    "[%s]\npg1-path=%s\npg1-port=%d\npg1-user=%s\npg1-socket-path=%s\n"
                    % (self.dir, os.urandom(24).hex(), self.dir, self.dir, self.dir, STANZA, pg.datadir,
                       pg.port, PG_USER, pg.sockdir))
        os.chmod(self.conf, 0o600)
        chown_tree(self.dir)
        self.archive_command = "pgbackrest --config=%s --stanza=%s archive-push %%p" % (self.conf, STANZA)

    def argv(self, *args):
        return as_postgres(["pgbackrest", "--config=" + self.conf, "--stanza=" + STANZA, *args])

    def run(self, *args, timeout=3600):
        t0 = time.monotonic()
        p = subprocess.run(self.argv(*args), capture_output=True, text=True, timeout=timeout, cwd="/")
        if p.returncode != 0:
            raise RuntimeError("pgbackrest %s failed (%d): %s%s" % (" ".join(args), p.returncode, p.stdout,
                                                                   p.stderr))
        return time.monotonic() - t0

    def info(self):
        p = subprocess.run(self.argv("--output=json", "info"), capture_output=True, text=True, check=True,
                           cwd="/")
        return json.loads(p.stdout)[0]


def ensure_pgbackrest():
    """pgBackRest's version, installed first when missing; raises with the reason when it cannot be."""
    if shutil.which("pgbackrest") is None:
        p = subprocess.run([os.path.join(ROOT, "tools", "setup-deps"), "bench"], capture_output=True, text=True)
        if p.returncode != 0 or shutil.which("pgbackrest") is None:
            raise RuntimeError("tools/setup-deps bench could not install pgbackrest (exit %d): %s"
                               % (p.returncode, p.stderr.strip()[-1000:]))
    p = subprocess.run(["pgbackrest", "version"], capture_output=True, text=True, check=True)
    return p.stdout.strip()


def setup_pgbackrest(work, pg):
    """The stanza and its archive_command on the primary; None (and why) when that fails: the
    rest of the run (our figures, rpo_ms) goes on without the baselines."""
    try:
        version = ensure_pgbackrest()
        br = PgBackRest(work, pg)
        pg.psql("ALTER SYSTEM SET archive_command = '%s'" % br.archive_command)
        pg.psql("ALTER SYSTEM SET archive_mode = on")
        pg.restart()
        br.run("stanza-create")
        br.run("check")
        return br, version
    except (RuntimeError, OSError, subprocess.CalledProcessError) as e:
        log("pgBackRest unavailable, measuring without its baselines: %s" % e)
        return None, "unavailable: %s" % e


# ---- our side -------------------------------------------------------------------------------------

def daemon_for(work, name, pg, key):
    bdir = os.path.join(work, name, "backups")
    return Daemon(os.path.join(work, name), {
        "log_level": "info",
        "database": {"conninfo": pg.conninfo(), "probe_interval": "5s", "probe_timeout": "2s"},
        "backup": {"directory": bdir, "prefix": "bench", "conninfo": pg.conninfo(run.DB), "key_file": key,
                   "pg_dump": os.path.join(PG_BIN, "pg_dump"), "dump_timeout": "2h",
                   "physical": {"pg_basebackup": os.path.join(PG_BIN, "pg_basebackup"),
                                "conninfo": pg.conninfo("postgres")}},
        "wal": {"conninfo": pg.conninfo("postgres")},
    }, name="daemon")


def wal_dir(d):
    return os.path.join(d.config["backup"]["directory"], "wal")


def our_backup(d):
    """drctl backup now --physical --wait: (wall seconds, the daemon's duration_ms / 1000, reply)."""
    t0 = time.monotonic()
    p = d.ctl("--json", "--timeout", "2h", "backup", "now", "--physical", "--wait", timeout=7200)
    wall = time.monotonic() - t0
    if p.returncode != 0:
        raise RuntimeError("drctl backup now --physical failed: %s\n%s" % (p.stderr, d.log()[-3000:]))
    res = json.loads(p.stdout)
    return wall, res["manifest"]["duration_ms"] / 1000.0, res


def restore_ours(d, backup_name, rec_path, target=None):
    """The by-hand recovery of docs/wal.md into rec_path; returns (recovered cluster, timings).
    The archive and a key copy are given to the server's user first (not timed: here the daemon
    runs as root and its archive is root's 0600 files; a recovery host would hold its own copy)."""
    rec = cluster_in(rec_path, RECOVERED_SETTINGS)
    t_copy = time.monotonic()
    arch = os.path.join(rec.tmpdir, "archive")
    shutil.copytree(wal_dir(d), arch)
    rkey = os.path.join(rec.tmpdir, "key")
    shutil.copy(d.config["backup"]["key_file"], rkey)
    chown_tree(arch)
    os.chown(rkey, pwd.getpwnam(PG_USER).pw_uid, pwd.getpwnam(PG_USER).pw_gid)
    t = {"archive_copy_s": round(time.monotonic() - t_copy, 3)}

    t0 = time.monotonic()
    tar = os.path.join(rec.tmpdir, "base.tar")
    run.timed([DRCTL, "backup", "decrypt", "--key-file", d.config["backup"]["key_file"],
               os.path.join(d.config["backup"]["directory"], backup_name), "-o", tar])
    t1 = time.monotonic()
    os.makedirs(rec.datadir, mode=0o700)
    run.timed(["tar", "-xf", tar, "-C", rec.datadir])  # as root: the members keep postgres as owner
    os.unlink(tar)
    os.makedirs(os.path.join(rec.datadir, "pg_wal"), mode=0o700, exist_ok=True)
    with open(os.path.join(rec.datadir, "postgresql.auto.conf"), "a") as f:
        f.write("restore_command = '%s wal-fetch --key-file %s --archive %s %%f %%p'\n" % (DRCTL, rkey, arch))
        if target:
            f.write("recovery_target_time = '%s'\nrecovery_target_action = 'promote'\n" % target)
    open(os.path.join(rec.datadir, "recovery.signal"), "w").close()
    chown_tree(rec.datadir)
    t2 = time.monotonic()
    rec.start()
    wait_promoted(rec)
    t3 = time.monotonic()
    t.update(decrypt_s=round(t1 - t0, 3), extract_s=round(t2 - t1, 3), start_to_promoted_s=round(t3 - t2, 3),
             total_s=round(t3 - t0, 3))
    return rec, t


def restore_pgbackrest(br, rec_path, target, *opts):
    rec = cluster_in(rec_path, RECOVERED_SETTINGS)
    os.makedirs(rec.datadir, mode=0o700)
    chown_tree(rec.datadir)
    t0 = time.monotonic()
    br.run("--pg1-path=" + rec.datadir, "--type=time", "--target=" + target, "--target-action=promote",
           *opts, "restore")
    t1 = time.monotonic()
    rec.start()
    wait_promoted(rec)
    t2 = time.monotonic()
    return rec, {"restore_s": round(t1 - t0, 3), "start_to_promoted_s": round(t2 - t1, 3),
                 "total_s": round(t2 - t0, 3)}


def check_target(rec, acks, target_wall, target):
    """The recovered rows against the writer's record: every commit acknowledged before T is there,
    no row inserted after T is."""
    got = rec.psql("SELECT count(*), coalesce(max(id), 0), coalesce(max(at) <= '%s'::timestamptz, true) "
                   "FROM pitr_writes" % target, db=run.DB).split("|")
    n, top, none_after = int(got[0]), int(got[1]), got[2] == "t"
    before = [i for i, at, _ in acks if at < target_wall]
    missing = int(rec.psql("SELECT %d - count(*) FROM pitr_writes WHERE id = ANY('{%s}'::bigint[])"
                           % (len(before), ",".join(map(str, before))), db=run.DB)) if before else 0
    out = {"rows": n, "max_id": top, "acked_before_target": len(before), "acked_before_target_missing": missing,
           "none_after_target": none_after}
    if missing or not none_after:
        raise RuntimeError("the recovery to %s is wrong: %s" % (target, out))
    return out


# ---- the parts ------------------------------------------------------------------------------------

def part_backup(pg, d, br, samples):
    for r in range(ROUNDS):
        log("backup round %d/%d" % (r + 1, ROUNDS))
        order = ("ours", "pgbackrest") if r % 2 == 0 else ("pgbackrest", "ours")
        for who in order:
            if who == "ours":
                wall, daemon_s, res = our_backup(d)
                samples.setdefault("ours_backup", []).append(round(wall, 3))
                samples.setdefault("ours_backup_daemon", []).append(round(daemon_s, 3))
                samples.setdefault("ours_backup_bytes", []).append(res["manifest"]["file_size_bytes"])
                log("  %-22s %8.2f s (daemon %.2f s, %.1f MiB)" % ("ours_backup", wall, daemon_s,
                                                                 res["manifest"]["file_size_bytes"] / 2 ** 20))
            elif br is not None:
                s = br.run("--type=full", "backup")
                b = br.info()["backup"][-1]
                samples.setdefault("pgbackrest_backup", []).append(round(s, 3))
                samples.setdefault("pgbackrest_backup_bytes", []).append(b["info"]["repository"]["delta"])
                log("  %-22s %8.2f s (%.1f MiB in the repository)" % ("pgbackrest_backup", s,
                                                                    b["info"]["repository"]["delta"] / 2 ** 20))
    if PGBR_EXTRA and br is not None:  # for information: pgBackRest with both cores (its default is one process)
        s = br.run("--type=full", "--process-max=2", "backup")
        samples.setdefault("pgbackrest_process_max2_backup", []).append(round(s, 3))
        log("  %-30s %8.2f s" % ("pgbackrest_process_max2_backup", s))
    return res["name"]


def part_pitr(pg, d, br, writer, backup_name, work, samples):
    time.sleep(2.0)  # some commits after both base backups
    target_wall = time.time()  # before T: a commit acknowledged before this one is before T
    target = pg.psql("SELECT clock_timestamp()")
    time.sleep(2.0)  # and after the target
    end, seg = pg.psql("SELECT s, pg_walfile_name(s) FROM pg_switch_wal() s").split("|")
    end = lsn(end)
    wait_archived(d, end)
    if br is not None:
        try:
            wait_until(lambda: (pg.psql("SELECT last_archived_wal FROM pg_stat_archiver") or "") >= seg,
                       timeout=60, interval=0.05, what="pgbackrest archived %s" % seg)
        except TimeoutError as e:
            raise RuntimeError("%s: %s\n%s" % (e, pg.psql("SELECT * FROM pg_stat_archiver"), pg.log_tail()))
    acks = list(writer.acks)
    log("PITR target %s (WAL switched and archived up to %s)" % (target, seg))
    out = {"target": target, "rounds": []}
    runs = []
    for r in range(ROUNDS):
        runs += [("ours",), ("pgbackrest",)] if r % 2 == 0 else [("pgbackrest",), ("ours",)]
    if br is None:
        runs = [r for r in runs if r[0] == "ours"]
    elif PGBR_EXTRA:
        runs.append(("pgbackrest_process_max2", "--process-max=2"))
    for n, (who, *opts) in enumerate(runs):
        path = os.path.join(work, "pitr-%d-%s" % (n, who))
        if who == "ours":
            rec, t = restore_ours(d, backup_name, path, target)
        else:
            rec, t = restore_pgbackrest(br, path, target, *opts)
        try:
            t["check"] = check_target(rec, acks, target_wall, target)
        finally:
            discard(rec)
        samples.setdefault("%s_pitr" % who, []).append(t["total_s"])
        out["rounds"].append(dict(t, who=who))
        log("  %-30s %8.2f s %s" % ("%s_pitr" % who, t["total_s"], json.dumps(t)))
    return out


def rpo_trial(i, pg, d, work):
    """One destruction; returns (the trial's figures, the recovered cluster: the next primary)."""
    writer = Writer(pg).start()
    try:
        if i > 0:  # a new primary, a new archive: its base backup first
            wait_streaming(d)
            our_backup(d)
        backup_name = ctl_json(d, "backup-status")["latest_physical"]
        time.sleep(RPO_SECONDS + random.random())  # the steady load, destroyed at a random moment
        t_destroy = destroy(pg)
        writer._thread.join(timeout=30)
    finally:
        writer.stop()
    # The daemon notices the primary gone; what it had sealed is the archive.
    wait_until(lambda: ctl_json(d, "wal-status")["state"] != "streaming", timeout=60, interval=0.05,
               what="the receiver noticed")
    wst = ctl_json(d, "wal-status")
    rec, t = restore_ours(d, backup_name, os.path.join(work, "rpo-%d" % i))
    d.stop()
    acks = writer.acks
    got = set(int(x) for x in rec.psql("SELECT id FROM pitr_writes WHERE id >= %d" % acks[0][0],
                                       db=run.DB).split())
    recovered = [a for a in acks if a[0] in got]
    last_rec = recovered[-1] if recovered else None
    lost = [a for a, _, _ in acks if a not in got]
    holes = [a for a in lost if last_rec and a < last_rec[0]]
    lost_ms = (acks[-1][1] - last_rec[1]) * 1000.0 if last_rec else None
    # What the receiver held in memory, received but not yet sealed, when the primary went: the
    # commits whose WAL (the row, then its commit record: < 128 bytes more) lies before that point.
    part = wst.get("partial") or {}
    received_lsn = None
    if part.get("segment"):
        received_lsn = (int(part["segment"][8:16], 16) * (0x100000000 // wst["segment_size"])
                        + int(part["segment"][16:24], 16)) * wst["segment_size"] + part["received"]
    held = [a for a in acks if received_lsn is not None and a[2] + 128 <= received_lsn]
    held_ms = (acks[-1][1] - held[-1][1]) * 1000.0 if held else None
    out = {"acked": len(acks), "lost": len(lost), "holes_below_last_recovered": len(holes),
           "lost_window_ms": round(lost_ms, 1) if lost_ms is not None else None,
           "last_ack_before_destroy_ms": round((t_destroy - acks[-1][1]) * 1000.0, 1),
           "writer_error": writer.error, "receiver_state": wst.get("state"),
           "partial_received": (wst.get("partial") or {}).get("received"),
           "partial_sealed": (wst.get("partial") or {}).get("sealed"),
           "lost_window_ms_had_the_received_wal_been_sealed": round(held_ms, 1) if held_ms is not None else None,
           "recovery": t, "base_backup": backup_name}
    log("  rpo trial %d/%d: %d acknowledged, %d lost, window %s ms (received %s, sealed %s: %s ms had the "
        "received WAL been sealed); recovery %.1f s"
        % (i + 1, RPO_TRIALS, len(acks), len(lost), out["lost_window_ms"], out["partial_received"],
           out["partial_sealed"], out["lost_window_ms_had_the_received_wal_been_sealed"], t["total_s"]))
    return out, rec


def part_rpo(pg, d, work, key):
    """The trials; returns them and the cluster the last one recovered (the caller discards it)."""
    trials = []
    try:
        for i in range(RPO_TRIALS):
            if i > 0:
                d = daemon_for(work, "rpo-daemon-%d" % i, pg, key)
                d.start()
            out, rec = rpo_trial(i, pg, d, work)
            trials.append(out)
            discard(pg)
            pg = rec  # the recovered cluster is the next trial's primary
    finally:
        d.cleanup()
    return trials, pg


def dataloss_daemon(work, pg, key, venue):
    """A daemon for the data_loss run: the primary's archive and base backups, a venue double, the
    scenario's section (its PITR on a side port, the switch into the primary's place)."""
    d = daemon_for(work, "dataloss-daemon", pg, key)
    as_pg = ["/usr/sbin/runuser", "-u", PG_USER, "--"]
    d.config.update({
        "log_level": "notice",
        "database": {"conninfo": pg.conninfo(run.DB), "probe_interval": "250ms", "probe_timeout": "2s",
                     "connect_timeout": "2s"},
        "venue": venue.config(timeout="5s"),
        "detector": {"halt_after": 2},
        # As bench/scenario.py: the benchmark schema has no positions table, the venue double no
        # positions or fills; the duplicate and referential checks are the real ones.
        "reconcile": {
            "positions_query": "SELECT symbol, '0', '0' FROM orders WHERE false",
            "stale_orders_query": "SELECT client_order_id, symbol, created_at::text FROM orders WHERE $1::bigint < 0",
            "missing_fills_query": "SELECT f FROM unnest($1::text[]) AS f WHERE NOT EXISTS "
                                   "(SELECT 1 FROM fills WHERE venue_trade_id = f)",
            "replay_fill_query": "SELECT $1, $2, $3, $4, $5, $6, $7",
            "post_resume_checks": ["200ms"],
            "referential_queries": ["SELECT f.id FROM fills f WHERE NOT EXISTS "
                                    "(SELECT 1 FROM orders o WHERE o.id = f.order_id)"],
        },
        "scenarios": {"data_loss": {
            "rto": "30m", "rpo": "1m", "approve_resume": False,
            "data_directory": pg.datadir, "pg_ctl": os.path.join(PG_BIN, "pg_ctl"), "run_as": as_pg,
            "side_port": free_port(), "start_timeout": "30m",
            "validation_queries": ["SELECT count(*) > 0 FROM orders", "SELECT count(*) > 0 FROM pitr_writes"],
            "switch_command": [SWITCH, "-o", "-p %d -k %s" % (pg.port, pg.sockdir), "-l", pg.logfile] + as_pg,
        }},
    })
    d.write_config()
    return d


def part_dataloss(pg, work, key, samples):
    """The bare PITR to T, then the whole data_loss run to T; returns its figures."""
    venue = FakeVenue()
    venue.server.handle_error = lambda request, client_address: None
    d = dataloss_daemon(work, pg, key, venue)
    try:
        d.start()
        wait_streaming(d)
        _, _, res = our_backup(d)
        backup_name = res["name"]
        writer = Writer(pg).start()
        time.sleep(2.0)  # commits after the base backup, before T
        target_wall = time.time()
        target = pg.psql("SELECT clock_timestamp()")
        time.sleep(1.0)  # and after it: the rows a data loss would be recovered without
        writer.stop()
        if writer.error:
            raise RuntimeError("the writer failed: %s" % writer.error)
        end = lsn(pg.psql("SELECT pg_switch_wal()"))
        wait_archived(d, end)
        acks = list(writer.acks)
        log("data_loss: target %s, base backup %s" % (target, backup_name))
        rec, t = restore_ours(d, backup_name, os.path.join(work, "dataloss-bare"), target)
        try:
            t["check"] = check_target(rec, acks, target_wall, target)
        finally:
            discard(rec)
        samples.setdefault("bare_pitr_for_data_loss", []).append(t["total_s"])
        log("  %-30s %8.2f s %s" % ("bare PITR to T", t["total_s"], json.dumps(t)))
        # T in epoch ms (drctl's resolution): the bare target, cut to the millisecond.
        t_ms = int(pg.psql("SELECT floor(extract(epoch FROM '%s'::timestamptz) * 1000)::bigint" % target))
        out = ctl_json(d, "execute", "--scenario", "data_loss", "--before", str(t_ms), "--reason", "bench: data_loss RTO")
        rid = out.get("run") or out.get("id")
        final = ("succeeded", "failed", "aborted", "held", "stayed_halted", "not_reconciled")
        r = wait_until(lambda: (lambda x: x if x["status"] in final else None)(ctl_json(d, "run", rid)),
                       timeout=3600, interval=0.3, what="the data_loss run to finish")
        if r["status"] != "succeeded":
            raise RuntimeError("data_loss run %s ended %s:\n%s" % (rid, r["status"], d.log()[-6000:]))
        with open(os.path.join(d.state_dir, "incidents", rid + ".json")) as f:
            rep = json.load(f)
        tl = rep["timeline"]["steps"] if isinstance(rep["timeline"], dict) else rep["timeline"]
        steps = [{"step": x.get("step"), "ms": _step_ms(x)} for x in tl]
        check = check_target(pg, acks, target_wall, target)  # the recovered cluster, in the primary's place
        samples.setdefault("data_loss_rto", []).append(round(rep["rto_ms"] / 1000.0, 3))
        log("  %-30s %8.2f s (%s)" % ("data_loss run (detected->live)", rep["rto_ms"] / 1000.0, ", ".join(
            "%s %.1f" % (x["step"], (x["ms"] or 0) / 1000.0) for x in steps)))
        d.stop()
        return {"target": target, "run": rid, "rto_ms": rep["rto_ms"], "rpo_ms": rep.get("rpo_ms"), "steps": steps,
                "bare": t, "check": check, "base_backup": backup_name}
    finally:
        d.cleanup()
        venue.close()


def ratio(a, b):
    return round(a / b, 3) if a is not None and b else None


def main():
    os.makedirs(run.OUT_DIR, exist_ok=True)
    t_start = time.monotonic()
    machine = run.machine_info()
    work = tempfile.mkdtemp(prefix="pitr-", dir=run.OUT_DIR)
    os.chmod(work, 0o755)  # the server's user walks into its clusters below
    key = make_key(os.path.join(work, "backup.key"))
    pg = copy_of_cache(work)
    d = writer = None
    samples, pitr, trials, dataloss = {}, None, [], None
    try:
        br, machine["pgbackrest"] = (setup_pgbackrest(work, pg) if "backup" in PARTS or "pitr" in PARTS
                                     else (None, "not used (parts %s)" % ",".join(PARTS)))
        d = daemon_for(work, "daemon", pg, key)
        d.start()
        wait_streaming(d)
        writer = Writer(pg).start()
        log("writer: one commit every %.1f ms" % (1000.0 / RATE))
        backup_name = None
        if "backup" in PARTS:
            backup_name = part_backup(pg, d, br, samples)
        if "pitr" in PARTS and backup_name:
            pitr = part_pitr(pg, d, br, writer, backup_name, work, samples)
        writer.stop()
        if writer.error:
            raise RuntimeError("the writer failed: %s" % writer.error)
        log("writer: %d commits" % len(writer.acks))
        if "rpo" in PARTS:
            if not backup_name:
                our_backup(d)
            trials, pg = part_rpo(pg, d, work, key)
            d = None
        if "dataloss" in PARTS:
            if d is not None:  # one receiver on the primary's slot at a time
                d.cleanup()
                d = None
            dataloss = part_dataloss(pg, work, key, samples)
    finally:
        if writer is not None:
            writer.stop()
        if d is not None:
            d.cleanup()
        for c in CLUSTERS:
            discard(c)
        shutil.rmtree(work, ignore_errors=True)
    machine["loadavg_end"] = os.getloadavg()

    best = {k: min(v) for k, v in samples.items()}
    windows = [t["lost_window_ms"] for t in trials if t["lost_window_ms"] is not None]
    held = [t["lost_window_ms_had_the_received_wal_been_sealed"] for t in trials
            if t["lost_window_ms_had_the_received_wal_been_sealed"] is not None]
    rpo = {"median_ms": round(statistics.median(windows), 1) if windows else None,
           "max_ms": max(windows) if windows else None, "trials": len(trials),
           "had_the_received_wal_been_sealed_median_ms": round(statistics.median(held), 1) if held else None,
           "had_the_received_wal_been_sealed_max_ms": max(held) if held else None}
    ratios = {
        "physical_backup_vs_pgbackrest": ratio(best.get("ours_backup"), best.get("pgbackrest_backup")),
        "pitr_restore_vs_pgbackrest": ratio(best.get("ours_pitr"), best.get("pgbackrest_pitr")),
        "rpo_ms": rpo["max_ms"],
        "rpo_max_vs_flush_interval": ratio(rpo["max_ms"], FLUSH_INTERVAL_MS),
        # for information: against pgBackRest with --process-max=2 (both cores)
        "physical_backup_vs_pgbackrest_process_max2": ratio(best.get("ours_backup"),
                                                            best.get("pgbackrest_process_max2_backup")),
        "pitr_restore_vs_pgbackrest_process_max2": ratio(best.get("ours_pitr"),
                                                         best.get("pgbackrest_process_max2_pitr")),
        "data_loss_rto_vs_pitr_restore": ratio(best.get("data_loss_rto"), best.get("bare_pitr_for_data_loss")),
    }
    paired = {"physical_backup_vs_pgbackrest": [ratio(a, b) for a, b in zip(samples.get("ours_backup", []),
                                                                            samples.get("pgbackrest_backup", []))]}
    result = {
        "ratios": ratios, "targets": TARGETS,
        "met": {k: (ratios[k] is not None and ratios[k] <= TARGETS[k]) for k in TARGETS},
        "seconds": {"min": best, "samples": samples}, "paired_ratios": paired,
        "pitr": pitr, "rpo": rpo, "rpo_trials": trials, "data_loss": dataloss,
        "flush_interval_ms": FLUSH_INTERVAL_MS, "writer_rate_per_s": RATE, "rounds": ROUNDS, "gb": run.GB,
        "machine": machine, "total_s": round(time.monotonic() - t_start, 1),
        "notes": ("wall seconds; ratios = ours / pgBackRest from the minimum of each series; our PITR is the "
                  "by-hand path of docs/wal.md (drctl recover is not built yet); rpo_ms is the max lost "
                  "window over the trials (median in rpo)"),
    }
    out_path = os.path.join(run.OUT_DIR, "pitr.json")
    with open(out_path, "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")

    print()
    print("PITR benchmark: %g GB cluster, writer %.0f commits/s, %d backup round(s), %d RPO trial(s), nproc %s"
          % (run.GB, RATE, ROUNDS, len(trials), machine["nproc"]))
    for k in ("ours_backup", "ours_backup_daemon", "pgbackrest_backup", "pgbackrest_process_max2_backup",
              "ours_pitr", "pgbackrest_pitr", "pgbackrest_process_max2_pitr", "bare_pitr_for_data_loss",
              "data_loss_rto"):
        if k in samples:
            print("%-30s %9.2f  %s" % (k, best[k], " ".join("%.2f" % x for x in samples[k])))
    if trials:
        print("%-24s median %.1f ms, max %.1f ms over %d trials: %s" % (
            "rpo lost window", rpo["median_ms"], rpo["max_ms"], len(trials), " ".join(str(w) for w in windows)))
        print("%-24s median %s ms, max %s ms (the WAL the receiver held unsealed when the primary went)" % (
            "... had it been sealed", rpo["had_the_received_wal_been_sealed_median_ms"],
            rpo["had_the_received_wal_been_sealed_max_ms"]))
    print()
    for k, v in ratios.items():
        t = TARGETS.get(k)
        print("%-44s %9s %7s  %s" % (k, "-" if v is None else "%.3f" % v, "" if t is None else "%g" % t,
                                    "" if v is None or t is None else ("ok" if v <= t else "MISSED")))
    if not machine["pgbackrest"].startswith("pgBackRest"):
        print("no pgBackRest baselines: %s" % machine["pgbackrest"])
    print("wrote %s (total %.0f s)" % (out_path, result["total_s"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
