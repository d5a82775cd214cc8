"""
Control-socket limits (issue 11): a client that pipelines requests and never reads its replies is
no longer read once its replies back up (back-pressure: the daemon's memory stays bounded and
other clients are served); observers cannot take the operators' slots, so root's halt gets in
while readers hold every slot they may have; refusals are logged once per interval with a count.
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

from drsup import DRCTL, Daemon, wait_until


def rss_kib(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def test_a_client_that_does_not_read_is_held_back_and_others_are_served(daemons, tmp_path):
    d = Daemon(tmp_path, {"detector": {"halt_after": 1000}})
    daemons.append(d)
    d.start()
    rss0 = rss_kib(d.proc.pid)
    flood = d.connect()
    flood.settimeout(0.5)
    sent = [0]
    stuck = threading.Event()

    def pipeline():
        line = b'{"id":1,"cmd":"status","args":{}}\n' * 256
        while True:
            try:
                flood.sendall(line)
                sent[0] += len(line)
            except socket.timeout:
                stuck.set()  # the daemon stopped reading: back-pressure
                return
            except OSError:
                return

    t = threading.Thread(target=pipeline, daemon=True)
    t.start()
    assert stuck.wait(30), "the daemon kept reading a client that never reads (%d bytes sent)" % sent[0]
    time.sleep(0.5)
    # Served while the flood is held back; memory bounded (the replies of ~1 MiB queued, not GBs).
    for _ in range(5):
        assert d.request("status")["ok"]
    grown = rss_kib(d.proc.pid) - rss0
    assert grown < 64 * 1024, "RSS grew by %d KiB" % grown
    assert sent[0] < 64 * 2 ** 20, sent[0]
    # Once it reads again, it is served again (the daemon resumes reading it).
    flood.settimeout(10)
    got = 0
    while got < 2 ** 20:
        chunk = flood.recv(1 << 16)
        assert chunk
        got += len(chunk)
    flood.close()
    d.stop()


HOLDER = r'''
import socket, sys, time
path, n = sys.argv[1], int(sys.argv[2])
socks, refused = [], 0
for _ in range(n):
    s = socket.socket(socket.AF_UNIX)
    s.connect(path)
    s.settimeout(0.3)
    try:
        line = s.recv(4096)
    except socket.timeout:
        line = b""
    if b'"busy"' in line:
        refused += 1
        s.close()
    else:
        socks.append(s)
print(len(socks), refused, flush=True)
sys.stdin.read()
'''


def test_readers_cannot_take_the_operators_slots_and_refusals_are_rate_limited(daemons):
    base = tempfile.mkdtemp(prefix="drsup-limits-")
    holders = []
    try:
        os.chmod(base, 0o755)
        d = Daemon(base, {"control": {"mode": "0666", "max_clients": 8, "operators_group": "nogroup"},
                          "detector": {"halt_after": 1000}})
        daemons.append(d)
        os.chmod(d.dir, 0o755)
        d.start()
        # uid daemon: a reader. It may hold max_clients minus the operators' slots (8 - 2).
        p = subprocess.Popen(["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups",
                              "/usr/bin/python3", "-c", HOLDER, d.socket, "10"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        holders.append(p)
        held, refused = map(int, p.stdout.readline().split())
        assert (held, refused) == (6, 4)
        # root (an operator) still gets in, for status and for a halt.
        st = d.ctl_json("status")
        assert st["control"]["clients"] == 7, st["control"]
        h = d.ctl("halt", "--reason", "drill while observers hold the socket")
        assert "busy" not in h.stderr and "too many" not in h.stderr, h.stderr
        # A burst of 50 more refusals: still one log line (with its count) in the interval.
        p2 = subprocess.Popen(["setpriv", "--reuid=daemon", "--regid=daemon", "--clear-groups",
                               "/usr/bin/python3", "-c", HOLDER, d.socket, "50"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        holders.append(p2)
        assert p2.stdout.readline().split() == ["0", "50"]
        lines = [l for l in d.log().splitlines() if "refusing clients" in l]
        assert len(lines) == 1, lines
        assert "1 refused since the last such line" in lines[0] and "2 of them for operators only" in lines[0]
        for hp in holders:
            hp.stdin.close()
            hp.wait(timeout=10)
        holders.clear()
        wait_until(lambda: d.request("status")["result"]["control"]["clients"] == 1, timeout=10,
                   what="the readers gone")
        d.stop()
    finally:
        for hp in holders:
            hp.kill()
        shutil.rmtree(base, ignore_errors=True)
