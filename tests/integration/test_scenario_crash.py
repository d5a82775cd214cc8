"""
Crash safety of the database_corruption scenario: the daemon SIGKILLs itself right after journal
record N became durable (DRSUP_CRASH_AFTER_RECORD=N, for EVERY N of a full run), or in the middle of
the restore (DRSUP_CRASH_IN_RESTORE=1); restarted, the run completes or waits for an operator.
Checked each time: the venue saw halt before any shadow/resume, and shadow before live (the resume
guard); a crash after resume_live committed (in the post-resume watch) resumes the watch and never
sends a second resume; the backup was restored exactly once (no second restore over a good one); the protected
database ends with the backup's data and the evidence is kept.

One PostgreSQL cluster and one backup for the whole matrix; each iteration has its own state
directory and starts from the database the previous one left (same content).
"""
import json
import os
import struct

from drsup import Daemon, wait_until
from test_scenario import Env, backup_now, loaded, fill_db, scenario_config, venue  # noqa: F401 (fixture)


def journal_payloads(path):
    out, off = [], 0
    data = open(path, "rb").read()
    while off + 20 <= len(data):
        magic, length = struct.unpack_from("<II", data, off)
        if magic != 0x314A5244:
            break
        out.append(json.loads(data[off + 20:off + 20 + length]))
        off += 20 + length
    return out


def journal_records(path):
    return len(journal_payloads(path))


def record_number(payloads, ev, step):
    """1-based number of the record `ev` (intent, commit) of `step`."""
    return next(i + 1 for i, p in enumerate(payloads) if p.get("ev") == ev and p.get("step") == step)


def reset(env):
    for db in env.databases():
        if db != "shop":
            env.pg.psql('DROP DATABASE "%s" WITH (FORCE)' % db)
    with env.venue.lock:
        env.venue.requests.clear()
        env.venue.mode = "live"


def check_order(calls):
    assert calls and calls[0] == "/halt", calls
    if "/resume" in calls:
        assert "/shadow" in calls and calls.index("/shadow") < calls.index("/resume"), calls


def finish(env, d, rid):
    """After the restart: approve a held run, then wait for the end."""
    def settled():
        r = env.run(rid)
        return r if r["status"] in ("succeeded", "failed", "aborted", "held") else None
    r = wait_until(settled, timeout=60, what="run settles")
    if r["status"] == "held":
        assert [s["step"] for s in r["steps"] if s["outcome"] == "in_doubt"] in (["restore_database"], ["resume_live"])
        assert env.venue.mode != "live" or r["steps"][-1]["step"] == "resume_live"
        p = d.ctl("approve", rid)
        assert p.returncode == 0, p.stderr
        r = env.wait_status(rid, ["succeeded", "failed", "aborted"])
    return r


def restores(d):
    return d.log().count("restoring backup '")


def test_crash_at_every_journal_boundary(pg, tmp_path, venue):  # noqa: F811
    fill_db(pg)
    env = Env(pg, tmp_path, venue)
    first = env.d
    first.start()
    backup_now(first)
    bcfg = first.config["backup"]
    # A clean run first tells how many records a full run writes.
    rid = first.ctl_json("execute", "--scenario", "database_corruption")["run"]
    assert env.wait_status(rid, ["succeeded", "failed"])["status"] == "succeeded"
    payloads = journal_payloads(os.path.join(first.state_dir, "runs", rid + ".journal"))
    total = len(payloads)
    live_intent = record_number(payloads, "intent", "resume_live")
    live_commit = record_number(payloads, "commit", "resume_live")
    assert record_number(payloads, "commit", "post_resume_watch") > live_commit
    first.stop()
    assert total >= 20
    held = 0
    for n in range(1, total + 1):
        reset(env)
        d = Daemon(tmp_path, scenario_config(pg, tmp_path, venue), name="crash%d" % n)
        d.config["backup"] = bcfg  # the same backups and key
        d.write_config()
        env.d = d
        try:
            loaded(d.start(env={"DRSUP_CRASH_AFTER_RECORD": str(n)}))
            p = d.ctl("--json", "execute", "--scenario", "database_corruption")
            assert p.returncode == 0, p.stderr
            rid = __import__("json").loads(p.stdout)["run"]
            wait_until(lambda: d.proc.poll() is not None, timeout=30, what="the crash at record %d" % n)
            assert d.proc.returncode == -9, d.log()[-2000:]
            d.kill9()
            before = env.calls()
            if before:
                check_order(before)
            assert "/resume" not in before or n >= live_intent  # only once resume_live's intent is durable
            d.start()
            r = finish(env, d, rid)
            held += any(s["outcome"] == "in_doubt" for s in r["steps"])
            assert r["status"] == "succeeded", (n, r)
            check_order(env.calls())
            assert env.venue.mode == "live"
            if n >= live_commit:
                # A crash in the post-resume watch resumes the watch; it never resumes trading again.
                assert env.calls().count("/resume") == 1 and env.calls().count("/halt") == 1, (n, env.calls())
                assert r["steps"][-1]["step"] == "post_resume_watch" and r["steps"][-1]["outcome"] == "ok", (n, r)
            assert restores(d) == 1, (n, d.log()[-3000:])
            assert env.count() == 200
            assert len([db for db in env.databases() if "_damaged_" in db]) == 1
            d.stop()
        finally:
            d.cleanup()


def test_crash_in_the_middle_of_the_restore(pg, tmp_path, venue):  # noqa: F811
    fill_db(pg, rows=20000)
    env = Env(pg, tmp_path, venue)
    d = env.d
    try:
        d.start(env={"DRSUP_CRASH_IN_RESTORE": "1"})
        backup_now(d)
        rid = d.ctl_json("execute", "--scenario", "database_corruption")["run"]
        wait_until(lambda: d.proc.poll() is not None, timeout=30, what="the crash in the restore")
        d.kill9()
        assert env.calls() == ["/halt"]
        d.start()
        # The restore database exists but is not marked complete: the run is held, trading halted.
        r = wait_until(lambda: (lambda x: x if x["status"] == "held" else None)(env.run(rid)), timeout=30,
                       what="held run")
        assert r["state"] == "backup_selected"
        p = d.ctl("resume")
        assert p.returncode == 1 and "unfinished" in p.stderr
        assert venue.mode == "halted"
        assert d.ctl("approve", rid).returncode == 0
        r = env.wait_status(rid, ["succeeded", "failed", "aborted"])
        assert r["status"] == "succeeded", r
        assert "dropping the incomplete restore database" in d.log()
        assert env.count() == 20000
        check_order(env.calls())
        d.stop()
    finally:
        d.cleanup()
