"""
etcdcluster: a three-member etcd cluster on loopback for the high-availability tests.

Owns the members' processes (Debian's etcd 3.4), their data directories under a temporary
directory and free ports; start(), stop_all() (a partition of every daemon from etcd), close().
Standard library only.
"""
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

from pgharness import free_port

ETCD = shutil.which("etcd") or "/usr/bin/etcd"


class EtcdCluster:
    def __init__(self, n=3):
        self.dir = tempfile.mkdtemp(prefix="drsup-etcd-")
        self.members = []
        for i in range(n):
            self.members.append({"name": f"e{i}", "client": free_port(), "peer": free_port(), "proc": None})
        self.endpoints = [f"http://127.0.0.1:{m['client']}" for m in self.members]

    def start(self):
        initial = ",".join(f"{m['name']}=http://127.0.0.1:{m['peer']}" for m in self.members)
        for m in self.members:
            log = open(os.path.join(self.dir, m["name"] + ".log"), "ab")
            m["proc"] = subprocess.Popen([
                ETCD, "--name", m["name"], "--data-dir", os.path.join(self.dir, m["name"]),
                "--listen-client-urls", f"http://127.0.0.1:{m['client']}",
                "--advertise-client-urls", f"http://127.0.0.1:{m['client']}",
                "--listen-peer-urls", f"http://127.0.0.1:{m['peer']}",
                "--initial-advertise-peer-urls", f"http://127.0.0.1:{m['peer']}",
                "--initial-cluster", initial, "--initial-cluster-state", "new",
                "--heartbeat-interval", "50", "--election-timeout", "500"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(self.healthy(e) for e in self.endpoints):
                return self
            time.sleep(0.1)
        raise RuntimeError("etcd cluster did not become healthy")

    @staticmethod
    def healthy(endpoint):
        try:
            with urllib.request.urlopen(endpoint + "/health", timeout=1) as r:
                return b'"true"' in r.read()
        except OSError:
            return False

    def stop_all(self):
        for m in self.members:
            if m["proc"] and m["proc"].poll() is None:
                m["proc"].kill()
                m["proc"].wait()

    def close(self):
        self.stop_all()
        shutil.rmtree(self.dir, ignore_errors=True)
