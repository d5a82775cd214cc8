"""
The audit log of a real daemon (state_dir/audit.log and its head): an operator command is recorded
with who, the arguments and the outcome, a refused one too, and so are the daemon's own actions
(the halt's events); `drctl audit --verify` passes on an intact log, a restart continues the chain;
an edited record and a cut-off end are both detected (`--verify` exits 1 naming the record; a cut
at start is a critical audit.tampered event).
"""
import json
import os

import pytest

from drsup import Daemon, wait_until
from fakevenue import FakeVenue


@pytest.fixture
def venue():
    v = FakeVenue(mode="live")
    yield v
    v.close()


def records(d):
    p = d.ctl("--json", "audit")
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout)["records"]


def verify(d):
    p = d.ctl("--json", "audit", "--verify")
    return p.returncode, json.loads(p.stdout)


def test_commands_and_actions_are_recorded_and_the_chain_verifies(tmp_path, venue):
    d = Daemon(tmp_path, {"venue": venue.config(), "detector": {"halt_after": 1000}})
    d.start()
    try:
        assert d.ctl("halt", "--reason", "audit test").returncode == 0
        assert d.ctl("resume").returncode == 1  # refused: no reconcile since the halt
        wait_until(lambda: any(r.get("command") == "resume" for r in records(d)), what="the resume recorded")
        recs = records(d)
        (halt,) = [r for r in recs if r.get("command") == "halt"]
        assert halt["type"] == "command" and halt["outcome"] == "ok" and halt["uid"] == os.getuid(), halt
        assert halt["args"] == {"reason": "audit test"} and halt["pid"] > 0, halt
        (resume,) = [r for r in recs if r.get("command") == "resume"]
        assert resume["outcome"] != "ok" and "reconcile" in resume["error"], resume
        # the daemon's own action: the halt's event, with its summary
        assert [r for r in recs if r["type"] == "event" and r["kind"].startswith("venue.halt")], recs
        # read-only commands are not recorded; probes' observations neither
        assert not [r for r in recs if r.get("command") in ("status", "trading")]
        assert not [r for r in recs if r.get("kind", "").startswith("probe.")]
        seqs = [r["seq"] for r in recs]
        assert seqs == list(range(1, len(seqs) + 1)), seqs
        rc, v = verify(d)
        assert rc == 0 and v["verify"]["ok"] is True and v["verify"]["records"] >= 3, v
        text = d.ctl("audit", "--verify").stdout
        assert "halt (uid" in text and "the chain and the head are intact" in text, text
        d.stop()
        # a restart continues the chain
        n = len(open(os.path.join(d.state_dir, "audit.log")).read().splitlines())
        d.start()
        assert d.ctl("halt", "--reason", "again").returncode == 0
        wait_until(lambda: any(r.get("args") == {"reason": "again"} for r in records(d)), what="the second halt")
        rc, v = verify(d)
        assert rc == 0 and v["verify"]["records"] > n, v
        d.stop()
    finally:
        d.cleanup()


def test_an_edited_record_and_a_cut_off_end_are_detected(tmp_path, venue):
    d = Daemon(tmp_path, {"venue": venue.config(), "detector": {"halt_after": 1000}})
    d.start()
    try:
        for i in range(3):
            assert d.ctl("halt", "--reason", "r%d" % i).returncode == 0
        wait_until(lambda: len([r for r in records(d) if r.get("command") == "halt"]) == 3, what="3 halts recorded")
        d.stop()
        log = os.path.join(d.state_dir, "audit.log")
        lines = open(log).read().splitlines()
        # edit: an operator's reason changed after the fact
        k = next(i for i, l in enumerate(lines) if '"reason":"r1"' in l)
        edited = list(lines)
        edited[k] = edited[k].replace('"reason":"r1"', '"reason":"nothing happened"')
        open(log, "w").write("\n".join(edited) + "\n")
        d.start()
        rc, v = verify(d)
        assert rc == 1 and v["ok"] is False, v
        assert v["verify"]["error"] == "record %d was changed (its hash does not match its content)" % (k + 1), v
        out = d.ctl("audit", "--verify")
        assert out.returncode == 1 and "VERIFY FAILED: record %d was changed" % (k + 1) in out.stdout, out.stdout
        d.stop()
        # cut-off end: the edit undone (the chain intact again), then the last two records removed
        lines = open(log).read().splitlines()
        lines[k] = lines[k].replace('"reason":"nothing happened"', '"reason":"r1"')
        open(log, "w").write("\n".join(lines[:-2]) + "\n")
        d.start()
        assert "audit.tampered" in d.log() and "does not match its head" in d.log()
        rc, v = verify(d)
        assert rc == 1 and "the daemon found the log ending at record %d while its head said %d" % (
            len(lines) - 2, len(lines)) in v["verify"]["error"], v
        # the evidence stays: later records do not make the cut disappear
        assert d.ctl("halt", "--reason", "after the cut").returncode == 0
        assert verify(d)[0] == 1
        d.stop()
    finally:
        d.cleanup()


def halts_until(d, cond, what):
    """Halt with a long reason (about 1 KiB of audit per halt) until cond() holds."""
    i = [0]

    def step():
        i[0] += 1
        assert d.ctl("halt", "--reason", "rotation %d %s" % (i[0], "x" * 600)).returncode == 0
        return cond()
    wait_until(step, timeout=60, interval=0, what=what)


def lines_of(path):
    return [json.loads(l) for l in open(path).read().splitlines()]


def test_rotation_continues_the_chain_and_verify_spans_the_kept_files(tmp_path, venue):
    d = Daemon(tmp_path, {"venue": venue.config(), "detector": {"halt_after": 1000},
                          "audit": {"max_bytes": 4096, "keep": 2}})
    d.start()
    try:
        log = os.path.join(d.state_dir, "audit.log")
        halts_until(d, lambda: os.path.exists(log + ".2") and
                    any(r.get("type") == "rotated" and r["generation"] >= 4 for r in lines_of(log)),
                    what="three rotations")
        wait_until(lambda: verify(d)[0] == 0, what="the last batch written")
        assert not os.path.exists(log + ".3")  # keep: 2
        files = [log + ".2", log + ".1", log]
        recs = [lines_of(f) for f in files]
        for older, newer in zip(recs, recs[1:]):
            first = newer[0]
            assert first["type"] == "rotated" and first["keep"] == 2, first
            assert first["prev"] == older[-1]["hash"] and first["seq"] == older[-1]["seq"] + 1
            assert first["generation"] == (older[0].get("generation") or 1) + 1
        for f in files[:-1]:  # a file ends at its first record past max_bytes
            assert os.path.getsize(f) - len(json.dumps(lines_of(f)[-1])) <= 4096 + 200, f
        rc, v = verify(d)
        assert rc == 0 and v["verify"]["ok"] is True, v
        assert v["verify"]["files"] == files and v["verify"]["first_seq"] == recs[0][0]["seq"] > 1, v
        assert "older records were rotated out" in v["verify"]["start"], v
        out = d.ctl("audit", "--verify").stdout
        assert "in 3 files, the chain and the head are intact" in out and "rotated out" in out, out
        # drctl audit reads across the files
        seqs = [r["seq"] for r in records(d)]
        assert seqs[0] == recs[0][0]["seq"] and seqs == list(range(seqs[0], seqs[0] + len(seqs))), seqs
        d.stop()
        # no more rotations from here on, so the files stay where the checks below put them
        cfg = d.config
        cfg["audit"]["max_bytes"] = "1MiB"
        d.write_config(cfg)

        # an edit in a rotated file: the record and the file are named
        rec = next(r for r in lines_of(log + ".1") if r.get("command") == "halt")
        text = open(log + ".1").read()
        open(log + ".1", "w").write(text.replace("rotation ", "ROTATION ", 1))
        d.start()
        rc, v = verify(d)
        assert rc == 1 and v["verify"]["error"] == "record %d was changed (its hash does not match its content), in '%s'" % (
            rec["seq"], log + ".1"), v
        d.stop()
        open(log + ".1", "w").write(text)

        # the oldest kept file removed: not what rotation did, so it is tampering
        saved = open(log + ".2").read()
        os.unlink(log + ".2")
        d.start()
        rc, v = verify(d)
        assert rc == 1 and "a rotated file was removed, not by rotation" in v["verify"]["error"], v
        d.stop()
        open(log + ".2", "w").write(saved)
        os.chmod(log + ".2", 0o600)
        assert verify(d.start())[0] == 0
        d.stop()

        # a newer rotated file removed (audit.log.1): named, and left as found (not taken for a cut rotation)
        os.unlink(log + ".1")
        d.start()
        rc, v = verify(d)
        assert rc == 1 and v["verify"]["error"].startswith("'%s.1' is missing while older files are kept" % log), v
        assert "finished the rotation" not in d.log()
        d.stop()
    finally:
        d.cleanup()


@pytest.mark.parametrize("cut", ["before_the_live_file_moved", "after_the_live_file_moved"])
def test_a_rotation_cut_short_is_finished_at_start(tmp_path, venue, cut):
    """Killed between the renames of a rotation (the older files moved up, audit.log not yet
    audit.log.1), or after them and before the new file was written: the next start finishes the
    rotation, begins the new file with the rotated record again, and the chain verifies."""
    d = Daemon(tmp_path, {"venue": venue.config(), "detector": {"halt_after": 1000},
                          "audit": {"max_bytes": 4096, "keep": 3}})
    d.start()
    try:
        log = os.path.join(d.state_dir, "audit.log")
        halts_until(d, lambda: os.path.exists(log + ".1"), what="a rotation")
        wait_until(lambda: verify(d)[0] == 0, what="the last batch written")
        d.stop()
        last = lines_of(log)[-1]
        # what the rotation does before it writes the new file: the live file moves up
        if os.path.exists(log + ".2"):
            os.rename(log + ".2", log + ".3")
        os.rename(log + ".1", log + ".2")
        if cut == "after_the_live_file_moved":
            os.rename(log, log + ".1")
        d.start()
        assert ("finished the rotation" in d.log()) == (cut == "before_the_live_file_moved")
        assert "audit.tampered" not in d.log()
        assert d.ctl("halt", "--reason", "after the cut").returncode == 0
        wait_until(lambda: any(r.get("args") == {"reason": "after the cut"} for r in records(d)), what="recorded")
        first = lines_of(log)[0]
        assert first["type"] == "rotated" and first["prev"] == last["hash"] and first["seq"] == last["seq"] + 1, first
        rc, v = verify(d)
        assert rc == 0, v
        d.stop()
    finally:
        d.cleanup()


def test_the_incident_report_carries_the_runs_audit_records(pg, tmp_path, venue):
    """The operators' commands and the daemon's actions of a run, from its detection to its
    report (and any record with its run id), are in its incident report, JSON and text."""
    import test_scenario as scn
    scn.fill_db(pg)
    d = Daemon(tmp_path, scn.scenario_config(pg, tmp_path, venue))
    scn.loaded(d.start())
    try:
        scn.backup_now(d)
        assert d.ctl("halt", "--reason", "before the run").returncode == 0  # not the run's
        wait_until(lambda: any(r.get("args") == {"reason": "before the run"} for r in records(d)), what="recorded")
        rid = d.ctl_json("execute", "--scenario", "database_corruption", "--manual", "--reason", "audit in report")["run"]
        wait_until(lambda: d.ctl_json("run", rid)["status"] == "waiting_approval", what="the gate")
        assert d.ctl("abort", rid, "--reason", "look first").returncode == 0
        rep_path = os.path.join(d.state_dir, "incidents", rid + ".json")
        rep = wait_until(lambda: os.path.exists(rep_path) and json.load(open(rep_path)), timeout=30, what="the report")
        au = rep["audit"]
        recs = au["records"]
        assert au["truncated"] is False and "error" not in au, au
        cmds = [(r["command"], r["outcome"], r["uid"]) for r in recs if r["type"] == "command"]
        assert ("execute", "ok", os.getuid()) in cmds and ("abort", "ok", os.getuid()) in cmds, cmds
        (abort,) = [r for r in recs if r.get("command") == "abort"]
        assert abort["args"]["reason"] == "look first", abort
        assert not [r for r in recs if r.get("args") == {"reason": "before the run"}], recs  # before the detection
        assert [r for r in recs if r["type"] == "event" and r["kind"] == "scenario.start"], recs
        assert [r for r in recs if r["type"] == "event" and r.get("run") == rid and r["kind"] == "scenario.gate"], recs
        assert au["from_ms"] == rep["detected_ms"] and au["to_ms"] >= rep["detected_ms"], au
        assert [r["seq"] for r in recs] == sorted(r["seq"] for r in recs)
        # the .txt is written just after the .json
        text = wait_until(lambda: (lambda p: p.stdout if p.returncode == 0 and p.stdout else None)(d.ctl("incident", rid)),
                          what="the text report")
        assert "Audit log (%d records)" % len(recs) in text and "ran abort: ok" in text, text
        d.stop()
    finally:
        d.cleanup()
