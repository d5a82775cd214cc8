"""make lint: the dependency rule of docs/architecture.md, checked from the #include lines
(tools/lint-includes with tools/include-rules). The real tree passes; a copy of it with one include
that calls up, one that reaches into another folder's internal header, or one the rules forbid
explicitly fails, naming the file, the line and the include."""
import os
import shutil
import subprocess
import sys

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LINT = os.path.join(REPO, "tools", "lint-includes")


def run_lint(root):
    return subprocess.run([sys.executable, LINT, "--root", root], capture_output=True, text=True, timeout=60)


def copy_tree(tmp_path):
    root = str(tmp_path / "tree")
    for d in ("lib", "daemon", "tools", "tests/unit"):
        shutil.copytree(os.path.join(REPO, d), os.path.join(root, d),
                        ignore=shutil.ignore_patterns("*.py", "bench"))
    return root


def add_include(root, rel, include, after="#include <"):
    path = os.path.join(root, rel)
    lines = open(path).read().split("\n")
    i = next(n for n, line in enumerate(lines) if line.startswith(after))
    lines.insert(i, f'#include "{include}"')
    open(path, "w").write("\n".join(lines))
    return i + 1


def test_the_tree_follows_the_dependency_rule():
    p = run_lint(REPO)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "follow the dependency rule" in p.stdout


def test_make_lint_runs_it():
    p = subprocess.run(["make", "--no-print-directory", "-C", REPO, "lint"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "follow the dependency rule" in p.stdout


def test_a_capability_that_includes_the_scenario_layer_fails(tmp_path):
    root = copy_tree(tmp_path)
    line = add_include(root, "daemon/cap/venue/venue.c", "scenario/scenarios.h")
    p = run_lint(root)
    assert p.returncode == 1, p.stdout
    assert f"daemon/cap/venue/venue.c:{line}: includes 'scenario/scenarios.h'" in p.stdout, p.stdout
    assert "may not include it" in p.stdout


def test_a_leaf_that_includes_the_wiring_fails(tmp_path):
    root = copy_tree(tmp_path)
    line = add_include(root, "daemon/detect/detector.c", "core/daemon.h")
    p = run_lint(root)
    assert p.returncode == 1, p.stdout
    assert f"daemon/detect/detector.c:{line}: includes 'core/daemon.h'" in p.stdout, p.stdout


def test_lib_that_includes_daemon_fails(tmp_path):
    root = copy_tree(tmp_path)
    add_include(root, "lib/journal.c", "core/events.h")
    p = run_lint(root)
    assert p.returncode == 1 and "lib/journal.c:" in p.stdout and "'core/events.h'" in p.stdout, p.stdout


def test_another_folders_internal_header_fails(tmp_path):
    root = copy_tree(tmp_path)
    add_include(root, "daemon/scenario/runner.c", "cap/venue/venue_internal.h")
    p = run_lint(root)
    assert p.returncode == 1 and "another folder's internal header" in p.stdout, p.stdout


def test_an_include_that_resolves_nowhere_fails(tmp_path):
    root = copy_tree(tmp_path)
    add_include(root, "daemon/alerts/alerts.c", "no/such.h")
    p = run_lint(root)
    assert p.returncode == 1 and "'no/such.h': no such file" in p.stdout, p.stdout
