"""
The venue adapter: fail-closed halts (persisted before sent, confirmed by status, retried and
escalated, re-asserted at start and when the platform trades behind our back), and resume.
"""
import json
import os
import subprocess
import threading

import pytest

from drsup import Daemon, wait_until
from fakevenue import FakeVenue


@pytest.fixture
def venue():
    v = FakeVenue()
    yield v
    v.close()


def start(daemons, tmp_path, venue, **extra):
    # No database here (the harness points at a dead port): keep the detector from halting on its
    # own in the middle of a test's halt/resume sequence.
    d = Daemon(tmp_path, {"venue": venue.config(**extra), "detector": {"halt_after": 1000}})
    daemons.append(d)
    return d.start()


def halt_state(d):
    with open(os.path.join(d.state_dir, "halt.json")) as f:
        return json.load(f)


def test_halt_is_persisted_before_it_is_sent_and_confirmed(daemons, tmp_path, venue):
    d = start(daemons, tmp_path, venue)
    seen = []
    venue.on_halt = lambda: seen.append(halt_state(d))
    p = d.ctl("halt", "--reason", "checksum failures on orders")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "trading is halted"
    assert venue.mode == "halted"
    # Write ahead: when the platform received the halt, the daemon had already persisted it.
    assert seen and seen[0]["halted"] is True and "checksum failures on orders" in seen[0]["reason"]
    assert "checksum failures on orders" in venue.halt_bodies[0]["reason"]
    t = d.ctl_json("trading")
    assert t["halted"] and t["mode"] == "halted" and not t["halting"]
    d.stop()


def test_halt_needs_a_reason_and_the_operator_role(daemons, tmp_path, venue):
    d = start(daemons, tmp_path, venue)
    p = d.ctl("halt")
    assert p.returncode == 2 and "--reason" in p.stderr
    p = d.ctl("call", "halt")
    assert p.returncode == 1 and "bad_argument" in p.stderr
    d.stop()


def test_unconfirmed_halt_is_retried_and_escalated(daemons, tmp_path, venue):
    d = start(daemons, tmp_path, venue)
    s = d.connect(timeout=10)
    s.sendall(b'{"id":1,"cmd":"watch"}\n')
    _, buf = d.read_line(s)
    venue.ignore_halts = 3  # the platform says OK but keeps trading
    p = d.ctl("halt", "--reason", "test")
    assert p.returncode == 0, p.stderr
    assert venue.count("POST", "/halt") == 4
    events = []
    while not any(e.get("resolved") and e["kind"] == "venue.halt" for e in events):
        msg, buf = d.read_line(s, buf)
        events.append(msg["event"])
    crit = [e for e in events if e["severity"] == "critical" and e.get("condition") == "venue.halt:test"]
    assert crit and "NOT confirmed after 2 attempts" in crit[0]["summary"]
    s.close()
    d.stop()


def test_platform_unreachable_halt_keeps_retrying_fail_closed(daemons, tmp_path, venue):
    d = start(daemons, tmp_path, venue)
    venue.down = True
    p = d.ctl("--timeout", "700ms", "halt", "--reason", "db corrupt")
    assert p.returncode == 3  # no confirmation yet
    t = d.ctl_json("trading")
    assert t["halted"] and t["halting"] and t["halt_attempts"] >= 2
    assert "503" in t["last_error"]
    assert halt_state(d)["halted"] is True
    # Resume is refused while the halt is unconfirmed.
    p = d.ctl("resume")
    assert p.returncode == 1 and "halt is in progress" in p.stderr
    venue.down = False
    wait_until(lambda: not d.ctl_json("trading")["halting"], timeout=5, what="halt confirmed")
    assert venue.mode == "halted"
    d.stop()


def test_halt_is_reasserted_at_start_and_when_the_platform_trades_anyway(daemons, tmp_path, venue):
    d = start(daemons, tmp_path, venue)
    assert d.ctl("halt", "--reason", "before restart").returncode == 0
    d.kill9()
    venue.mode = "live"  # someone flipped it while we were down
    before = venue.count("POST", "/halt")
    d.start()
    wait_until(lambda: venue.count("POST", "/halt") > before and venue.mode == "halted", timeout=5,
               what="halt re-asserted at start")
    assert "before restart" in d.ctl_json("trading")["reason"]
    # The platform resumes behind our back: the status poll notices and halts again.
    before = venue.count("POST", "/halt")
    venue.mode = "live"
    wait_until(lambda: venue.count("POST", "/halt") > before and venue.mode == "halted", timeout=5,
               what="halt re-asserted after the platform went live")
    d.stop()


def test_resume_needs_a_passing_reconcile_or_a_paged_override(daemons, tmp_path, venue):
    d = start(daemons, tmp_path, venue)
    assert d.ctl("halt", "--reason", "drill").returncode == 0
    # Fail closed: no reconcile has passed since the halt.
    p = d.ctl("resume")
    assert p.returncode == 1 and "until a reconcile passes" in p.stderr
    assert venue.mode == "halted" and venue.count("POST", "/resume") == 0
    assert d.ctl_json("trading")["reconcile_needed"] is True
    p = d.ctl("resume", "--force")
    assert p.returncode == 1 and "--reason" in p.stderr
    # The override works, and is paged.
    p = d.ctl("resume", "--shadow", "--force", "--reason", "exchange API down, positions checked by hand")
    assert p.returncode == 0 and "shadow" in p.stdout
    assert venue.mode == "shadow"
    assert "trading resumed WITHOUT a passing reconcile" in d.log()
    wait_until(lambda: halt_state(d)["halted"] is False, what="halt state cleared")
    # No longer halted: going from shadow to live needs no new reconcile.
    p = d.ctl("resume")
    assert p.returncode == 0 and venue.mode == "live"
    d.stop()


def test_a_halt_during_a_resume_is_sent_and_wins(daemons, tmp_path, venue):
    """A halt that arrives while a resume is in flight is held at once, sent as soon as the resume
    is answered, and answered only when the platform confirms it; the resume never releases it."""
    d = Daemon(tmp_path, {"venue": venue.config(timeout="5s"), "detector": {"halt_after": 1000}})
    daemons.append(d)
    d.start()
    assert d.ctl("halt", "--reason", "first").returncode == 0
    assert venue.count("POST", "/halt") == 1
    venue.resume_delay = 1.5
    resumed = {}
    t = threading.Thread(target=lambda: resumed.update(p=d.ctl("resume", "--force", "--reason", "drill")))
    t.start()
    wait_until(lambda: venue.count("POST", "/resume") == 1, what="the resume at the platform")
    h = d.ctl("halt", "--reason", "second")
    t.join(30)
    # The halt was sent after the resume's answer, and confirmed before drctl halt answered.
    assert h.returncode == 0 and h.stdout.strip() == "trading is halted", h.stderr
    assert venue.count("POST", "/halt") == 2
    assert venue.mode == "halted"
    p = resumed["p"]
    assert p.returncode == 1 and "a halt was requested while resuming" in p.stderr, p.stderr
    tr = d.ctl_json("trading")
    assert tr["halted"] and tr["mode"] == "halted" and tr["state"] == "halted" and not tr["halting"]
    assert halt_state(d)["halted"] is True
    # The forced resume never took effect for the daemon: no "resumed" page.
    assert "trading resumed WITHOUT a passing reconcile" not in d.log()
    d.stop()


def test_a_refused_forced_resume_pages_nothing_and_is_logged(daemons, tmp_path, venue):
    d = Daemon(tmp_path, {"venue": venue.config(), "detector": {"halt_after": 1000}})
    daemons.append(d)
    d.start()
    assert d.ctl("halt", "--reason", "drill").returncode == 0
    venue.refuse_resume = True
    p = d.ctl("resume", "--force", "--reason", "checked by hand")
    assert p.returncode == 1 and "409" in p.stderr, p.stderr
    assert venue.mode == "halted" and d.ctl_json("trading")["halted"]
    log = d.log()
    assert "trading resumed WITHOUT a passing reconcile" not in log
    assert "forced resume to live failed, trading stays halted" in log
    d.stop()


def test_venue_config_errors(tmp_path):
    from drsup import DAEMON
    cfg = tmp_path / "c.yaml"
    cfg.write_text("database: {conninfo: x}\n"
                   "venue:\n"
                   "  halt: {url: ftp://x}\n"
                   "  resume: {command: [relative/bin]}\n"
                   "  shadow: {url: 'http://x', command: [/bin/true]}\n")
    p = subprocess.run([DAEMON, "-t", "-c", str(cfg)], capture_output=True, text=True)
    assert p.returncode == 2
    assert "'venue.halt.url' must start with http:// or https://" in p.stderr
    assert "'venue.resume.command' must start with an absolute path" in p.stderr
    assert "'venue.shadow' has both 'url' and 'command'" in p.stderr
    assert "needs at least a 'halt' and a 'status' action" in p.stderr


KILLSWITCH = """import sys, json
state, action = sys.argv[1], sys.argv[2]
if action == "status":
    print(open(state).read().strip())
elif action == "halt":
    open(state, "w").write("stopped\\n")
    open(state + ".log", "a").write(json.dumps(sys.argv[3:]) + "\\n")
elif action == "resume":
    open(state, "w").write("running\\n")
else:
    sys.exit("unknown action " + action)
"""


def test_command_actions_and_plain_text_modes(daemons, tmp_path):
    """Sofia's kill switch / GENESIS's systemctl: the venue as commands (argv, no shell), its mode
    read from plain text and mapped through `modes`."""
    script = tmp_path / "killswitch.py"
    script.write_text(KILLSWITCH)
    state = tmp_path / "switch.state"
    state.write_text("running\n")
    cmd = ["/usr/bin/python3", str(script), str(state)]
    d = Daemon(tmp_path, {"venue": {
        "halt": {"command": cmd + ["halt", "{{reason}}"]},
        "resume": {"command": cmd + ["resume"]},
        "status": {"command": cmd + ["status"]},
        "modes": {"halted": ["stopped"], "live": ["running"]},
        "timeout": "5s", "retry_base": "50ms", "status_interval": "200ms"},
        # No database here: keep the detector from halting on its own.
        "detector": {"halt_after": 1000}})
    daemons.append(d)
    d.start()
    wait_until(lambda: d.ctl_json("trading")["mode"] == "live", what="mode read from the command")
    p = d.ctl("halt", "--reason", "kill switch: it's \"priority zero\"; rm -rf /")
    assert p.returncode == 0, p.stderr
    assert state.read_text().strip() == "stopped"
    # The reason arrives as one argument, untouched: no shell ever sees it.
    args = json.loads((tmp_path / "switch.state.log").read_text().splitlines()[0])
    assert args == ["operator (uid 0): kill switch: it's \"priority zero\"; rm -rf /"]
    p = d.ctl("resume", "--force", "--reason", "test")
    assert p.returncode == 0, p.stderr
    assert state.read_text().strip() == "running"
    # A failing command is a clear error, and the halt keeps being retried.
    state.write_text("garbage\n")
    script.write_text("import sys\nsys.exit('switch unreachable')\n")
    p = d.ctl("--timeout", "1s", "halt", "--reason", "again")
    assert p.returncode == 3
    t = d.ctl_json("trading")
    assert t["halting"] and "switch unreachable" in t["last_error"]
    d.stop()
