"""
Docs tell the truth: every drctl command is in drctl(1) and the README, every key of the annotated
example configuration (commented examples included) is in drsupervisor.yaml(5), every key the schema
in daemon/config/config*.c reads is named there too, and every command the daemon registers is reachable
from a drctl subcommand or documented as call-only in drctl(1).

The example configuration validating with --check-config is tested in test_packaging.py.
"""
import glob
import json
import os
import re
import subprocess

from drsup import DRCTL, Daemon

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def read(rel):
    with open(os.path.join(REPO, rel)) as f:
        return f.read()


def detroff(text):
    """Man page source to plain words: drop font escapes, unescape hyphens, drop request names."""
    text = re.sub(r"\\f[BIRP]", "", text)
    text = text.replace("\\-", "-").replace("\\(em", "-").replace("\\e", "\\").replace("\\&", "")
    return re.sub(r"^\.(B|I|BR|RB|IR|RI|BI|IB|TP|PP|IP|RS|RE|SS|nf|fi|br)\b ?", "", text, flags=re.M)


def man_sections(path):
    """{first word of each .SH heading (lower case): plain text of the section}."""
    out, cur = {}, None
    for line in read(path).splitlines():
        m = re.match(r'^\.SH\s+"?([^"\s]+)', line)
        if m:
            cur = m.group(1).lower()
            out.setdefault(cur, "")
            continue
        if cur is not None:
            out[cur] += line + "\n"
    return {k: detroff(v) for k, v in out.items()}


# ---- drctl commands ----

def drctl_help_commands():
    """Command names from `drctl --help`: the first word(s) of each line under "Commands:"."""
    text = subprocess.run([DRCTL, "--help"], capture_output=True, text=True, check=True).stdout
    block = text.split("Commands:", 1)[1].split("Options:", 1)[0]
    names = []
    for line in block.splitlines():
        m = re.match(r"^  ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?(?=\s|$)", line)
        if not m:
            continue
        name, sub = m.group(1), m.group(2)
        # "alert test", "backup now", "backup decrypt": a fixed lower-case word after the name.
        names.append(f"{name} {sub}" if sub else name)
    assert len(names) >= 20, f"could not parse drctl --help: {names}"
    return names


def test_every_drctl_command_is_in_the_man_page_and_the_readme():
    man = man_sections("docs/man/drctl.1").get("commands", "")
    readme = read("README.md")
    cmds = drctl_help_commands()
    # each command is the tag of a .TP entry in COMMANDS: a line starting with its name
    missing_man = [c for c in cmds if not re.search(r"(?m)^" + re.escape(c) + r"(?![\w-])", man)]
    missing_readme = [c for c in cmds if not re.search(r"drctl (?:--json )?" + re.escape(c) + r"(?![\w-])", readme)]
    assert not missing_man, f"drctl commands not documented in docs/man/drctl.1: {missing_man}"
    assert not missing_readme, f"drctl commands missing from README.md's tour: {missing_readme}"


def test_every_drctl_option_is_in_the_man_page():
    text = subprocess.run([DRCTL, "--help"], capture_output=True, text=True, check=True).stdout
    man = detroff(read("docs/man/drctl.1"))
    opts = sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])(?=[\s,\]])", text)))
    missing = [o for o in opts if o not in man]
    assert not missing, f"drctl options from --help not in docs/man/drctl.1: {missing}"


# ---- configuration keys ----

KEY_RE = re.compile(r"^(\s*)(- )?([a-z][a-z0-9_]*):(?=\s|$)(.*)$")


def strip_quoted(s):
    return re.sub(r"'[^']*'|\"[^\"]*\"", '""', s)


def conf_keys(text):
    """section.key paths from the annotated example, commented example blocks included.

    A line is `key: ...`, `# key: ...` or `#   # key: ...` (any indentation before and after each
    `#`); prose comments never start with a lower-case word and a colon. Nesting follows indentation. `- key:` starts a list item (path `parent[].key`). Keys of
    a flow mapping on the same line (`halt: {url: ..., body: ...}`) are children.
    """
    paths = set()
    stack = []  # [indent, name]: the keys enclosing the current line
    for raw in text.splitlines():
        line = raw.rstrip()
        # "#alerts:" / "#  source:", "  # group:" (inside control) and "#   # conninfo:" (an optional
        # key inside a commented section) all nest by the column of the '#' plus the spaces after
        # it, less the one that separates a comment from its text.
        while (m := re.match(r"^(\s*)#( *)(.*)$", line)):
            line = m.group(1) + " " * max(0, len(m.group(2)) - 1) + m.group(3)
        km = KEY_RE.match(line)
        if not km:
            continue
        col = len(km.group(1))
        while stack and stack[-1][0] >= col:
            stack.pop()
        if km.group(2):  # "- key:": an item of the list named by the enclosing key
            if stack and not stack[-1][1].endswith("[]"):
                stack[-1][1] += "[]"
            col += 2
        name = km.group(3)
        path = ".".join([n for _, n in stack] + [name])
        paths.add(path)
        rest = km.group(4).split(" #", 1)[0].strip()
        if rest.startswith("{"):
            for fk in re.findall(r"[{,]\s*([a-z][a-z0-9_]*):", strip_quoted(rest)):
                paths.add(path + "." + fk)
        stack.append([col, name])
    return paths


def test_conf_key_extraction_sees_commented_sections():
    keys = conf_keys(read("conf/drsupervisor.yaml"))
    for k in ("cluster", "control.operators_group", "alerts.pagerduty.routing_key_file",
              "alerts.routes[].match.min_severity", "alerts.routes[].channels", "venue.halt.url",
              "venue.modes.halted", "backup.verify.after_backup", "backup.watch.max_age",
              "detector.damage_patterns", "reconcile.replay_fill_query",
              "scenarios.database_corruption.restore_timeout"):
        assert k in keys, f"{k} not extracted; got {sorted(keys)}"
    for prose in ("unit", "alerts.match", "venue.headers"):
        assert prose not in keys, f"prose comment parsed as key {prose}"
    # Prose that looks like a key ("# unit: 250ms, ...") would show up here as a key the schema
    # does not read.
    unknown = sorted(k for k in keys if k.split(".")[-1].rstrip("[]") not in schema_key_names())
    assert not unknown, f"conf/drsupervisor.yaml shows keys daemon/config/config*.c does not read (or prose at the start of a comment line parses as a key): {unknown}"


def test_every_example_key_is_in_the_yaml_man_page():
    keys = conf_keys(read("conf/drsupervisor.yaml"))
    secs = man_sections("docs/man/drsupervisor.yaml.5")
    top = secs.get("top", "")
    missing = []
    for k in sorted(keys):
        parts = k.split(".")
        section = parts[0]
        if len(parts) == 1:
            # a top-level scalar is described under TOP LEVEL; a section has its own .SH
            if section not in secs and not re.search(r"(?m)^" + re.escape(section) + r"\b", top):
                missing.append(k)
            continue
        rel = ".".join(parts[1:])
        if section not in secs or not re.search(r"(?<![\w.\[\]])" + re.escape(rel) + r"(?![\w\[])", secs[section]):
            missing.append(k)
    assert not missing, ("keys shown in conf/drsupervisor.yaml but not documented (as SECTION heading + "
                         f"relative dotted path) in docs/man/drsupervisor.yaml.5: {missing}")


def schema_key_names():
    """Every key name the schema reads: daemon/config/config*.c and the scenarios' own sections
    (daemon/scenario/*_config.c, registered with the config layer)."""
    files = sorted(glob.glob(os.path.join(REPO, "daemon", "config", "config*.c")))
    scenario_files = sorted(glob.glob(os.path.join(REPO, "daemon", "scenario", "*_config.c")))
    assert len(files) >= 2 and scenario_files, f"schema files not found: {files} {scenario_files}"
    files += scenario_files
    src = "\n".join(read(os.path.relpath(f, REPO)) for f in files)
    # A scenario's section is named by its ConfigScenarioSection (scenarios.<name>).
    names_of_sections = set(re.findall(r"\.name = \"([a-z_]+)\"", "\n".join(read(os.path.relpath(f, REPO))
                                                                        for f in scenario_files)))
    assert "database_corruption" in names_of_sections, names_of_sections
    names = set(re.findall(r"\bcfg_(?:string|string_list|int|bool|size|mode|duration_ms|enum|section)"
                           r"\(&?\w+, \"([a-z_][a-z0-9_]*)\"", src))
    names |= set(re.findall(r"\bcfg_get\(\w+(?:\.map)?, \"([a-z_]+)\"", src))  # routes
    names |= names_of_sections
    names |= set(re.findall(r"config_read_number\(&\w+, \"([a-z_]+)\"", src))
    names |= set(re.findall(r"config_(?:map_path|map_values|read_hook)\(&\w+, \"([a-z_]+)\"", src))  # venue mappings, hooks
    for name, plain in re.findall(r"config__?secret\(&\w+, \"([a-z_]+)\", (true|false)", src):
        names |= {name + "_file", name + "_credential"} | ({name} if plain == "true" else set())
    names |= set(re.findall(r"\[VENUE_[A-Z_]+\] = \"([a-z_]+)\"", src))
    m = re.search(r"mode_names\[3\] = \{([^}]*)\}", src)
    names |= set(re.findall(r"\"([a-z]+)\"", m.group(1))) if m else set()
    assert len(names) > 80, f"could not read the schema from daemon/config/config*.c: {sorted(names)}"
    return names


def test_every_schema_key_is_named_in_the_yaml_man_page():
    man = detroff(read("docs/man/drsupervisor.yaml.5"))
    missing = sorted(n for n in schema_key_names() if not re.search(r"(?<![\w])" + re.escape(n) + r"(?!\w)", man))
    assert not missing, f"keys daemon/config/config*.c reads that docs/man/drsupervisor.yaml.5 never names: {missing}"


# ---- daemon commands ----

def drctl_wire_commands():
    """Wire command of each drctl subcommand, read from drctl's command table (tools/drctl/*.c)."""
    files = sorted(glob.glob(os.path.join(REPO, "tools", "drctl", "*.c")))
    assert len(files) >= 5, f"drctl sources not found: {files}"
    src = "\n".join(read(os.path.relpath(f, REPO)) for f in files)
    wire = set(re.findall(r"\.wire = \"([a-z_.]+)\"", src))
    assert {"status", "help", "alert.test", "backup_now"} <= wire, sorted(wire)
    # the same names, as drctl itself reports its table
    table = json.loads(subprocess.run([DRCTL, "--json", "help"], capture_output=True, text=True, check=True).stdout)
    assert wire == {c["wire"] for c in table["commands"] if c["wire"]}, sorted(wire)
    return wire


def test_every_daemon_command_is_reachable_from_drctl(tmp_path):
    d = Daemon(tmp_path)
    d.start()
    try:
        registered = [c["name"] for c in d.ctl_json("commands")["commands"]]
    finally:
        d.stop()
    assert "status" in registered
    wire = drctl_wire_commands()
    call_only = man_sections("docs/man/drctl.1").get("call-only", "")
    unreachable = [c for c in registered if c not in wire and not re.search(r"\b" + re.escape(c) + r"\b", call_only)]
    assert not unreachable, ("daemon commands with no drctl subcommand and not listed under CALL-ONLY COMMANDS "
                             f"in docs/man/drctl.1: {unreachable}")
