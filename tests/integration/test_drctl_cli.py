"""
drctl's command line, checked against its own command table.

The table is read from `drctl --json help` (every command and sub-command, its usage, wire name and
options), so a command added to the table is covered here without touching this file: each one
answers --help, -h and `drctl help ...` with exit 0, its usage and its description; a wrong option
exits 2 naming the command and printing its usage; global options work before and after the
command against a running daemon; the bash completion script, generated from the same table,
completes in a real bash; drctl(1) names every command and option of the table in that command's
entry and formats without warnings; and every drctl example in README.md, docs/operations.md and
drctl(1) uses only options its command has; and each request goes out under the daemon's name for
the command, with the options as its arguments.
"""
import json
import os
import re
import socket
import subprocess
import tempfile
import threading

from drsup import DRCTL, Daemon
from test_docs import detroff, man_sections, read

def drctl(*args, **kw):
    return subprocess.run([DRCTL, *args], capture_output=True, text=True, timeout=30, **kw)


def table():
    p = drctl("--json", "help")
    assert p.returncode == 0, p.stderr
    t = json.loads(p.stdout)
    assert t["program"] == "drctl"
    assert len(t["commands"]) >= 28, [c["command"] for c in t["commands"]]
    return t


def spellings(opts):
    out = set()
    for o in opts:
        out |= {s for s in (o["long"], o["short"]) if s}
    return out


def words(s):
    return " ".join(s.split())


# ---- help for every command ----

def test_the_table_lists_every_command_of_the_help_text():
    t = table()
    names = {c["command"] for c in t["commands"]}
    assert {"status", "backup", "backup now", "backup decrypt", "alert test", "help", "completion bash",
            "emergency-close", "call"} <= names
    text = drctl("help").stdout
    assert text == drctl("--help").stdout
    listed = re.findall(r"(?m)^  ([a-z][a-z-]*(?: [a-z][a-z-]*)?)(?= |$)", text.split("Commands:", 1)[1])
    leaves = {c["command"] for c in t["commands"] if c["command"] and not c["subcommands"]}
    assert set(listed) == leaves
    assert {o["long"] for o in t["global_options"]} == {"--socket", "--json", "--timeout", "--help", "--version"}


def test_every_command_answers_help():
    t = table()
    for c in t["commands"]:
        path = c["command"].split()
        p = drctl(*path, "--help")
        assert p.returncode == 0, (c["command"], p.stderr)
        out = p.stdout
        assert out.startswith("Usage: " + c["usage"] + "\n"), (c["command"], out[:200])
        assert words(c["description"] or c["summary"]) in words(out), (c["command"], out)
        for o in c["options"]:
            shown = o["metavar"] if o["kind"] == "positional" else o["long"]
            assert shown in out, (c["command"], shown)
            if o["short"]:
                assert f"{o['short']}, {o['long']}" in out, (c["command"], o)
        for s in c["subcommands"]:
            assert re.search(r"(?m)^  " + re.escape((c["command"] + " " + s).strip()) + r"(?![\w-])", out) or \
                re.search(r"(?m)^  " + re.escape((c["command"] + " " + s).strip()) + " ", out), (c["command"], s)
        assert "Exit status:" in out
        # the same text from `drctl help CMD`, `-h`, and with the help option before the command
        assert drctl("help", *path).stdout == out, c["command"]
        assert drctl(*path, "-h").stdout == out, c["command"]
        assert drctl("--help", *path).stdout == out, c["command"]
        # help wins over missing required options and positionals
        assert p.stderr == ""
    p = drctl("help", "frobnicate")
    assert p.returncode == 2 and "unknown command" in p.stderr


def test_a_wrong_option_exits_2_and_names_the_usage():
    t = table()
    for c in t["commands"]:
        path = c["command"].split()
        p = drctl("--socket", "/nonexistent/x.sock", *path, "--no-such-option")
        assert p.returncode == 2, (c["command"], p.returncode, p.stderr)
        name = ("drctl " + c["command"]).strip()
        assert f"{name}: unknown option '--no-such-option'" in p.stderr, p.stderr
        assert "Usage: " + c["usage"] + "\n" in p.stderr, (c["command"], p.stderr)
    # a missing required option or sub-command, a bad value, a stray word: exit 2 with the usage
    for argv, msg, usage in (
            (["halt"], "drctl halt: --reason TEXT is required", "Usage: drctl halt -r|--reason TEXT"),
            (["execute", "--dry-run"], "drctl execute: --scenario NAME is required", "Usage: drctl execute "),
            (["run"], "drctl run: RUN is required", "Usage: drctl run RUN"),
            (["backup"], "drctl backup: a command is required (now, decrypt)", "Usage: drctl backup COMMAND"),
            (["alert", "test", "--count", "x"], "drctl alert test: --count needs a whole number", "Usage: drctl alert test"),
            (["halt", "--reason"], "drctl halt: --reason needs a value (TEXT)", "Usage: drctl halt"),
            (["status", "now"], "drctl status: unexpected argument 'now'", "Usage: drctl status"),
            (["status", "--timeout", "soon"], "drctl status: --timeout needs a duration", "Usage: drctl status"),
            (["--json=yes", "status"], "drctl: --json takes no value", "Usage: drctl [OPTIONS] COMMAND"),
            (["completion", "zsh"], "drctl completion: unknown command 'zsh'", "Usage: drctl completion COMMAND")):
        p = drctl("--socket", "/nonexistent/x.sock", *argv)
        assert p.returncode == 2, (argv, p.returncode, p.stderr)
        assert msg in p.stderr and usage in p.stderr, (argv, p.stderr)
    # no command at all: the whole help, on stderr
    p = drctl()
    assert p.returncode == 2 and "Commands:" in p.stderr


def test_options_parse_in_every_position_without_a_daemon():
    # parsed fine, then the daemon is not there: exit 3, never 2
    gone = "/nonexistent/x.sock"
    for argv in (["backup", "now", "--wait", "-t", "1h"], ["--timeout", "1h", "backup", "now", "--wait"],
                 ["backup", "now", "--wait", "--timeout=1h"], ["halt", "-r", "x"], ["halt", "--reason=x"],
                 ["resume", "-r", "x", "--force"], ["resume", "--reason=x", "--force"],
                 ["abort", "RUN", "-r", "x"], ["execute", "--scenario=database_corruption", "--dry-run", "-r", "x"],
                 ["status", "-j"], ["-j", "status"], ["reconcile", "--since", "2h"], ["verify", "NAME", "--restore"],
                 ["alert", "test", "--count=5", "--condition", "x.y:test"], ["call", "status", '{"a":1}']):
        p = drctl("--socket", gone, *argv)
        assert p.returncode == 3, (argv, p.returncode, p.stderr)
        p = drctl(*argv, "--socket", gone)
        assert p.returncode == 3, (argv, p.returncode, p.stderr)
        assert "cannot reach" in p.stderr
    for argv in (["reconcile", "--since", "yesterday"], ["call", "status", "[1]"]):
        assert drctl("--socket", gone, *argv).returncode == 2, argv


# ---- against a running daemon ----

def test_global_options_before_and_after_the_command(tmp_path):
    d = Daemon(tmp_path)
    d.start()
    try:
        before = subprocess.run([DRCTL, "--json", "--socket", d.socket, "status"], capture_output=True, text=True)
        after = subprocess.run([DRCTL, "status", "--json", "--socket", d.socket], capture_output=True, text=True)
        assert before.returncode == 0 and after.returncode == 0, (before.stderr, after.stderr)
        a, b = json.loads(before.stdout), json.loads(after.stdout)
        assert a.keys() == b.keys() and a["pid"] == b["pid"] and a["cluster"] == b["cluster"] == "test"
        p1 = subprocess.run([DRCTL, "-j", "-s", d.socket, "-t", "5s", "commands"], capture_output=True, text=True)
        p2 = subprocess.run([DRCTL, "commands", "-t", "5s", "-s", d.socket, "-j"], capture_output=True, text=True)
        p3 = subprocess.run([DRCTL, "commands", "--timeout=5s", f"--socket={d.socket}", "--json"],
                            capture_output=True, text=True)
        assert p1.returncode == 0 and p1.stdout == p2.stdout == p3.stdout, (p1.stderr, p2.stderr, p3.stderr)
        assert "backup_now" in [c["name"] for c in json.loads(p1.stdout)["commands"]]
        # the text output, with --socket after the command
        p = subprocess.run([DRCTL, "ping", "--socket", d.socket], capture_output=True, text=True)
        assert p.returncode == 0 and p.stdout == "pong\n"
        # a sub-command goes out under its wire name: alert.test reaches the daemon's alert module
        p = d.ctl("alert", "test", "--channel", "fax")
        assert p.returncode == 1 and "drctl: " in p.stderr, p.stderr
        # call: the daemon's answer to an unknown wire name, and a refused argument, exit 1
        p = d.ctl("call", "nope", "{}")
        assert p.returncode == 1 and "unknown_command" in p.stderr
    finally:
        d.stop()


# ---- bash completion ----

def complete(*line):
    """COMPREPLY for the last word of `drctl LINE...` from the generated script, in a real bash."""
    script = subprocess.run([DRCTL, "completion", "bash"], capture_output=True, text=True, check=True).stdout
    words = " ".join("'" + w.replace("'", "'\\''") + "'" for w in ("drctl", *line))
    prog = (f"{script}\n"
            f"COMP_WORDS=({words}); COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1)); COMP_LINE=\"${{COMP_WORDS[*]}}\"\n"
            "_drctl; printf '%s\\n' \"${COMPREPLY[@]}\"\n"
            "complete -p drctl >&2\n")
    p = subprocess.run(["bash", "--norc", "--noprofile", "-c", prog], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr
    assert "complete -F _drctl drctl" in p.stderr
    return sorted(w for w in p.stdout.split("\n") if w)


def test_bash_completion_from_the_table(tmp_path):
    t = table()
    assert complete("ba") == ["backup", "backup-status", "backups"]
    assert complete("backup", "") == ["decrypt", "now"]
    assert complete("--json", "alert", "") == ["test"]
    assert complete("al") == ["alert", "alerts"]
    assert complete("halt", "--r") == ["--reason"]
    assert complete("-s", "/x.sock", "alert", "test", "--co") == ["--condition", "--count"]
    assert complete("backup", "decrypt", "--") == sorted(["--key-file", "--output", "--raw", "--socket", "--json",
                                                          "--timeout", "--help", "--version"])
    # every command, sub-command and option of the table is offered where it belongs
    top = [c["command"] for c in t["commands"] if c["command"] and " " not in c["command"]]
    assert complete("") == sorted(top)
    for c in t["commands"]:
        path = c["command"].split()
        if c["subcommands"]:
            assert complete(*path, "") == sorted(c["subcommands"]), c["command"]
        assert spellings(c["options"] + t["global_options"]) <= set(complete(*path, "-")), c["command"]
    # after an option that takes a value: file names
    (tmp_path / "key.bin").write_text("x")
    assert complete("backup", "decrypt", "--key-file", str(tmp_path / "ke")) == [str(tmp_path / "key.bin")]
    # a value is not mistaken for a command: `--socket backup` then `st` still completes commands
    assert complete("--socket", "backup", "sta") == ["status"]


# ---- drctl(1) ----

def man_entries():
    """{tag line of each .TP entry in COMMANDS (plain text): the plain text of the whole entry}."""
    lines = read("docs/man/drctl.1").split("\n")
    sec, entries, cur = None, {}, None
    for i, line in enumerate(lines):
        if line.startswith(".SH"):
            sec = line.split(None, 1)[1].strip('"').split()[0]
            cur = None
            continue
        if sec != "COMMANDS":
            continue
        if line.startswith(".SS"):
            cur = None
        elif line.startswith(".TP") and i + 1 < len(lines):
            cur = detroff(lines[i + 1]).strip()
            entries[cur] = ""
        elif cur is not None:
            entries[cur] += detroff(line) + "\n"
    return entries


def test_man_page_names_every_command_and_option_of_the_table():
    t = table()
    entries = man_entries()
    for c in t["commands"]:
        if not c["command"] or c["subcommands"]:
            continue
        tags = [tag for tag in entries if re.match(re.escape(c["command"]) + r"(?![\w-])", tag)]
        assert tags, f"drctl(1) has no COMMANDS entry for '{c['command']}'"
        text = " ".join(tags) + " " + " ".join(entries[tag] for tag in tags)
        for o in c["options"]:
            for s in (o["long"], o["short"], o["metavar"] if o["kind"] == "positional" else None):
                if s:
                    assert re.search(r"(?<![\w-])" + re.escape(s) + r"(?![\w-])", text), \
                        f"drctl(1) entry '{c['command']}' does not name {s}"
    options = man_sections("docs/man/drctl.1")["options"]
    for s in spellings(t["global_options"]):
        assert re.search(r"(?<![\w-])" + re.escape(s) + r"(?![\w-])", options), f"drctl(1) OPTIONS lacks {s}"


def test_man_page_formats_without_warnings():
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "man", "drctl.1")
    raw = open(src, "rb").read()
    bad = [(n + 1, line) for n, line in enumerate(raw.split(b"\n")) if re.search(rb"[\x00-\x08\x0b-\x1f\x7f]", line)]
    assert not bad, f"control characters in drctl(1): {bad}"
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    p = subprocess.run(["man", "-l", "--warnings", "-E", "UTF-8", src], capture_output=True, text=True, env=env)
    assert p.returncode == 0 and p.stderr == "", p.stderr
    p = subprocess.run(["groff", "-man", "-ww", "-z", "-Tutf8", src], capture_output=True, text=True)
    assert p.returncode == 0 and p.stderr == "", p.stderr


# ---- the docs' examples ----

def doc_invocations():
    """(file, words after `drctl`) of each drctl command line in README.md, operations.md and drctl(1)."""
    out = []
    for rel in ("README.md", "docs/operations.md"):
        text = read(rel)
        snippets = re.findall(r"`(drctl [^`]+)`", text)
        snippets += [m.strip() for m in re.findall(r"(?m)^\s*(drctl .*)$", text)]
        out += [(rel, s) for s in snippets]
    examples = man_sections("docs/man/drctl.1")["examples"]
    out += [("docs/man/drctl.1", line.strip()) for line in examples.splitlines() if line.startswith("drctl ")]
    return [(rel, s.split("#", 1)[0].split()[1:]) for rel, s in out]


def test_doc_examples_use_only_options_their_command_has():
    t = table()
    cmds = {c["command"]: c for c in t["commands"]}
    glob_opts = spellings(t["global_options"])
    checked = 0
    for rel, argv in doc_invocations():
        path, rest = [], []
        for w in argv:
            if not rest and not w.startswith("-") and " ".join(path + [w]) in cmds:
                path.append(w)
            else:
                rest.append(w)
        # a global option first, then the command
        while not path and rest and rest[0] in glob_opts:
            rest.pop(0)
            if rest and not rest[0].startswith("-") and rest[0] not in cmds:
                rest.pop(0)  # the global option's value
            for w in list(rest):
                if " ".join(path + [w]) in cmds:
                    path.append(rest.pop(0))
                else:
                    break
        if not path:
            continue
        c = cmds[" ".join(path)]
        allowed = spellings(c["options"]) | glob_opts
        for w in rest:
            w = w.strip("[]()'\",;.").split("=", 1)[0]
            if re.fullmatch(r"--?[a-zA-Z][\w-]*", w):
                assert w in allowed, f"{rel}: 'drctl {' '.join(argv)}': {w} is not an option of {c['command']}"
        checked += 1
    assert checked > 60, checked


# ---- what goes on the wire ----

def sent(*args):
    """The request line drctl sends for ARGS, read by a stand-in daemon that answers ok."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ctl.sock")
        srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        srv.bind(path)
        srv.listen(1)
        got = []

        def serve():
            c, _ = srv.accept()
            buf = b""
            while b"\n" not in buf:
                d = c.recv(65536)
                if not d:
                    break
                buf += d
            got.append(json.loads(buf))
            c.sendall(b'{"id":1,"ok":true,"result":{"ready_to_trade":true}}\n')
            c.close()
        t = threading.Thread(target=serve)
        t.start()
        p = drctl(*args, "--socket", path)
        t.join(10)
        srv.close()
    assert p.returncode == 0, (args, p.stderr)
    return got[0]["cmd"], got[0]["args"]


def test_requests_carry_the_wire_name_and_the_options_as_arguments():
    assert sent("backup", "now", "--wait", "-t", "1h") == ("backup_now", {"wait": True})
    assert sent("alert", "test", "--count=5", "--condition", "x.y:test", "--resolve") == \
        ("alert.test", {"count": 5, "condition": "x.y:test", "resolve": True})
    assert sent("emergency-close", "-r", "why") == ("emergency_close", {"reason": "why"})
    assert sent("commands") == ("help", {})
    assert sent("backup-status") == ("backup_status", {})
    assert sent("execute", "--scenario=database_corruption", "--dry-run", "--manual") == \
        ("execute", {"scenario": "database_corruption", "dry_run": True, "manual": True})
    assert sent("abort", "R1", "--reason", "x") == ("abort", {"run": "R1", "reason": "x"})
    assert sent("verify", "N", "--restore") == ("verify", {"name": "N", "restore": True})
    assert sent("resume", "--reason=x", "--force") == ("resume", {"reason": "x", "force": True})
    assert sent("reconcile", "--since", "1700000000000") == ("reconcile", {"since_ms": 1700000000000})
    # digits are epoch milliseconds whatever their value: 0 is the epoch (every fill), not "0 ago"
    assert sent("reconcile", "--since", "0") == ("reconcile", {"since_ms": 0})
    assert sent("reconcile", "--since", "1000") == ("reconcile", {"since_ms": 1000})
    assert sent("call", "backup_now", '{"wait":true}') == ("backup_now", {"wait": True})
    assert sent("--json", "status") == ("status", {})
