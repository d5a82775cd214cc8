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
