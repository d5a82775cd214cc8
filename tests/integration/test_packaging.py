"""
Packaging: `make install` honours PREFIX and DESTDIR, the unit file passes systemd-analyze verify,
the man pages render without warnings, and the installed example configuration validates.
"""
import os
import shutil
import subprocess

import pytest

from drsup import BUILD

REPO = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def test_make_install_layout_unit_and_man_pages(tmp_path):
    dest = tmp_path / "root"
    prefix = "/opt/drs"
    p = subprocess.run(["make", "-s", "-C", REPO, "install", f"BUILD={BUILD}", f"PREFIX={prefix}",
                        f"DESTDIR={dest}"], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    root = str(dest) + prefix
    for rel in ("sbin/drsupervisord", "bin/drctl"):
        assert os.access(os.path.join(root, rel), os.X_OK), rel
    unit = os.path.join(root, "lib/systemd/system/drsupervisor.service")
    text = open(unit).read()
    assert "@PREFIX@" not in text and f"ExecStart={prefix}/sbin/drsupervisord" in text
    assert "Type=notify" in text and "WatchdogSec=" in text and "ProtectSystem=strict" in text
    conf = os.path.join(dest, "etc/drsupervisor/drsupervisor.yaml")
    assert oct(os.stat(conf).st_mode & 0o777) == "0o640"
    p = subprocess.run([os.path.join(root, "sbin/drsupervisord"), "--check-config", "--config", conf],
                       capture_output=True, text=True)
    assert p.returncode == 0, p.stderr

    # The user and group the unit names come from the installed sysusers.d file.
    sysusers = os.path.join(root, "lib/sysusers.d/drsupervisor.conf")
    assert os.path.exists(sysusers)
    if shutil.which("systemd-sysusers"):
        sysroot = tmp_path / "sysroot"
        os.makedirs(sysroot / "etc")
        p = subprocess.run(["systemd-sysusers", "--root", str(sysroot), sysusers], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        passwd = (sysroot / "etc/passwd").read_text()
        group = (sysroot / "etc/group").read_text()
        assert passwd.startswith("drsupervisor:") or "\ndrsupervisor:" in passwd
        ops = [l for l in group.splitlines() if l.startswith("drsup-ops:")]
        assert ops and ops[0].endswith(":drsupervisor"), group
        assert "User=drsupervisor" in text and "SupplementaryGroups=drsup-ops" in text

    for page in ("man1/drctl.1", "man5/drsupervisor.yaml.5", "man8/drsupervisord.8"):
        path = os.path.join(root, "share/man", page)
        r = subprocess.run(["man", "--warnings", "-l", path], capture_output=True, text=True,
                           env={**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"})
        assert r.returncode == 0 and r.stderr == "", f"{page}: {r.stderr}"
        assert "SYNOPSIS" in r.stdout or "DESCRIPTION" in r.stdout


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_unit_file_passes_systemd_analyze_verify(tmp_path):
    # Point the unit at real binaries so verify can check ExecStart= and ExecReload=.
    for d in ("sbin", "bin"):
        os.makedirs(tmp_path / d)
    os.symlink(os.path.join(BUILD, "drsupervisord"), tmp_path / "sbin/drsupervisord")
    os.symlink(os.path.join(BUILD, "drctl"), tmp_path / "bin/drctl")
    unit = tmp_path / "drsupervisor.service"
    unit.write_text(open(os.path.join(REPO, "systemd/drsupervisor.service")).read()
                    .replace("@PREFIX@", str(tmp_path)))
    p = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stderr.strip() == "", p.stderr
