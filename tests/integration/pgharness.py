"""
pgharness: a real, throwaway PostgreSQL 15 cluster for integration tests.

Owns one temporary directory holding the data directory, the unix-socket directory and the server
log. The server listens on a free TCP port on 127.0.0.1 with trust authentication. PostgreSQL
refuses to run as root, so when the tests run as root every PostgreSQL binary is run as the
unprivileged 'postgres' user through runuser, and the temporary directory belongs to that user.

    with PgCluster() as pg:          # init() + start(); cleanup() on exit
        pg.psql("select 1")          # -> "1"
        pg.conninfo()                # -> "host=127.0.0.1 port=N dbname=postgres user=postgres"

Standard library only.
"""
import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PG_BIN = os.environ.get("DRSUP_PG_BIN", "/usr/lib/postgresql/15/bin")
PG_USER = "postgres"


class PgHarnessError(RuntimeError):
    """A cluster operation failed; the message carries the command output and the log tail."""


# One initdb per test process: every cluster after the first is a copy of this pristine data
# directory (never started), which takes a tenth of an initdb. The copies share a system
# identifier, as clusters from one base backup do; nothing the tests check depends on it.
_TEMPLATE = {}


def _template(cluster):
    """The template data directory, made on first use and removed when the process exits."""
    if "datadir" not in _TEMPLATE:
        top = tempfile.mkdtemp(prefix="drsup-pg-template-", dir=cluster._basedir or "/tmp")
        os.chmod(top, 0o700)
        if cluster._as_root:
            pw = pwd.getpwnam(PG_USER)
            os.chown(top, pw.pw_uid, pw.pw_gid)
        datadir = os.path.join(top, "data")
        cluster._initdb(datadir)
        atexit.register(shutil.rmtree, top, True)
        _TEMPLATE["datadir"] = datadir
    return _TEMPLATE["datadir"]


def free_port():
    """A TCP port on 127.0.0.1 that nobody was listening on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgCluster:
    def __init__(self, basedir=None, workdir=None, settings=None):
        """basedir: parent of the temporary directory (default /tmp).
        workdir: a persistent directory used instead of a temporary one (the benchmark's cached
        cluster): initdb only when it holds no cluster yet, and cleanup() stops the server but
        keeps the directory.
        settings: {name: value} passed to the server as -c options at every start."""
        self._as_root = os.geteuid() == 0
        self._basedir = basedir
        self._workdir = workdir
        self._settings = dict(settings or {})
        self.tmpdir = None
        self.datadir = None
        self.sockdir = None
        self.logfile = None
        self.port = None
        self._started = False

    # ---- plumbing -------------------------------------------------------------------------------

    def _cmd(self, argv):
        if self._as_root:
            return ["runuser", "-u", PG_USER, "--"] + argv
        return argv

    def _run(self, argv, check=True, timeout=120, input_text=None):
        p = subprocess.run(self._cmd(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=timeout, input=input_text, cwd=self.tmpdir or "/")
        if check and p.returncode != 0:
            raise PgHarnessError("%s failed (exit %d):\n%s%s\n--- server log tail ---\n%s" % (
                " ".join(argv), p.returncode, p.stdout, p.stderr, self.log_tail()))
        return p

    def _bin(self, name):
        return os.path.join(PG_BIN, name)

    def log_tail(self, lines=30):
        """The last lines of the server log ('' when there is none yet)."""
        if not self.logfile or not os.path.exists(self.logfile):
            return ""
        with open(self.logfile, "r", errors="replace") as f:
            return "".join(f.readlines()[-lines:])

    # ---- lifecycle ------------------------------------------------------------------------------

    def _make_dirs(self, tmpdir):
        """The cluster's directory (0700, owned by the server's user), its socket directory and log."""
        self.tmpdir = tmpdir
        os.chmod(self.tmpdir, 0o700)
        if self._as_root:
            pw = pwd.getpwnam(PG_USER)
            os.chown(self.tmpdir, pw.pw_uid, pw.pw_gid)
        self.datadir = os.path.join(self.tmpdir, "data")
        self.sockdir = os.path.join(self.tmpdir, "sock")
        self.logfile = os.path.join(self.tmpdir, "server.log")
        self._run(["mkdir", "-p", "-m", "0700", self.sockdir])

    def init_standby(self, primary, name):
        """A streaming standby of the running `primary`: pg_basebackup -R into a new temporary
        directory, connecting back with application_name `name` (what pg_stat_replication shows).
        start() starts it."""
        if self.tmpdir is not None:
            raise PgHarnessError("cluster already initialised in %s" % self.tmpdir)
        self._make_dirs(tempfile.mkdtemp(prefix="drsup-pg-", dir=self._basedir or "/tmp"))
        self._run([self._bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(primary.port), "-U", PG_USER,
                   "-D", self.datadir, "-X", "stream", "-R", "--no-sync", "-c", "fast"])
        with open(os.path.join(self.datadir, "postgresql.auto.conf"), "a") as f:
            f.write("primary_conninfo = 'host=127.0.0.1 port=%d user=%s application_name=%s'\n"
                    % (primary.port, PG_USER, name))
        return self

    def init(self):
        """initdb a fresh cluster (trust auth, data checksums, UTF8) in a new temporary directory."""
        if self.tmpdir is not None:
            raise PgHarnessError("cluster already initialised in %s" % self.tmpdir)
        if self._workdir:
            os.makedirs(os.path.abspath(self._workdir), exist_ok=True)
            self._make_dirs(os.path.abspath(self._workdir))
        else:
            self._make_dirs(tempfile.mkdtemp(prefix="drsup-pg-", dir=self._basedir or "/tmp"))
        if self._workdir and os.path.exists(os.path.join(self.datadir, "PG_VERSION")):
            return self
        if self._workdir:  # the benchmark's cached cluster: its own initdb, kept across runs
            self._initdb(self.datadir)
        else:  # a copy of this process's template: initdb once, cp -a for every cluster
            self._run(["cp", "-a", _template(self), self.datadir])
        self._write_conf()
        return self

    def _initdb(self, datadir):
        self._run([self._bin("initdb"), "-D", datadir, "-A", "trust", "-U", PG_USER,
                   "--data-checksums", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync"])

    def _write_conf(self):
        with open(os.path.join(self.datadir, "postgresql.conf"), "a") as f:
            f.write("\n# pgharness\nlisten_addresses = '127.0.0.1'\n"
                    "unix_socket_directories = '%s'\nfsync = off\n"
                    "full_page_writes = off\nlogging_collector = off\nmax_connections = 50\n"
                    % self.sockdir)

    def start(self, attempts=5):
        """pg_ctl -w start on a free port; retries with another port when the port was taken."""
        if self.tmpdir is None:
            self.init()
        port = self.port or free_port()
        collisions = 0
        shm_deadline = time.monotonic() + 15
        while True:
            p = self._run([self._bin("pg_ctl"), "-D", self.datadir, "-l", self.logfile, "-w",
                           "-t", "60", "-o", self._server_options(port), "start"], check=False)
            if p.returncode == 0:
                self.port = port
                self._started = True
                return self
            out = "%s%s" % (p.stdout, p.stderr)
            tail = self.log_tail(10)
            if "pre-existing shared memory block" in tail and time.monotonic() < shm_deadline:
                # after kill9 the orphaned backends take a moment to notice and exit
                time.sleep(0.1)
                continue
            if ("could not bind" in tail or "Address already in use" in tail) \
                    and collisions < attempts:
                collisions += 1
                port = free_port()
                continue
            raise PgHarnessError("PostgreSQL failed to start on port %d: %s\n"
                                 "--- server log tail ---\n%s" % (port, out, self.log_tail()))

    def _server_options(self, port):
        # The socket directory on the command line too: a cached cluster copied from another
        # checkout keeps working (its postgresql.conf names the old path).
        opts = ["-p %d" % port, "-k %s" % self.sockdir]
        for k, v in sorted(self._settings.items()):
            opts.append("-c %s=%s" % (k, v))
        return " ".join(opts)

    def stop(self, mode="fast"):
        """pg_ctl -w stop -m mode (smart, fast, immediate)."""
        self._run([self._bin("pg_ctl"), "-D", self.datadir, "-w", "-t", "60", "-m", mode, "stop"])
        self._started = False

    def postmaster_pid(self):
        """The postmaster's pid from postmaster.pid, or None."""
        try:
            with open(os.path.join(self.datadir, "postmaster.pid")) as f:
                return int(f.readline().strip())
        except (OSError, ValueError, TypeError):
            return None

    def kill9(self):
        """SIGKILL the postmaster (a crash); waits until it is gone. Backends die soon after."""
        pid = self.postmaster_pid()
        if pid is None:
            raise PgHarnessError("no postmaster.pid in %s" % self.datadir)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.02)
        self._started = False

    def restart(self):
        """Stop (fast) if running, then start again on the same port."""
        if self.is_running():
            self.stop()
        return self.start()

    def is_running(self):
        if self.datadir is None:
            return False
        p = self._run([self._bin("pg_ctl"), "-D", self.datadir, "status"], check=False)
        return p.returncode == 0

    # ---- clients --------------------------------------------------------------------------------

    def conninfo(self, db="postgres"):
        return "host=127.0.0.1 port=%d dbname=%s user=%s" % (self.port, db, PG_USER)

    def psql(self, sql, db="postgres", check=True):
        """Run SQL with psql -X -At -v ON_ERROR_STOP=1; returns stdout without the final newline."""
        p = self._run([self._bin("psql"), "-X", "-At", "-v", "ON_ERROR_STOP=1",
                       "-h", "127.0.0.1", "-p", str(self.port), "-U", PG_USER, "-d", db,
                       "-f", "-"], check=check, input_text=sql)
        return p.stdout.rstrip("\n")

    # ---- teardown -------------------------------------------------------------------------------

    def cleanup(self):
        """Stop the server however possible and remove the temporary directory."""
        if self.tmpdir is None:
            return
        try:
            if self.datadir and os.path.exists(os.path.join(self.datadir, "postmaster.pid")):
                p = self._run([self._bin("pg_ctl"), "-D", self.datadir, "-w", "-t", "30",
                               "-m", "immediate", "stop"], check=False)
                if p.returncode != 0 and self.postmaster_pid():
                    try:
                        os.kill(self.postmaster_pid(), signal.SIGKILL)
                    except (ProcessLookupError, TypeError):
                        pass
        finally:
            if not self._workdir:
                shutil.rmtree(self.tmpdir, ignore_errors=True)
            self.tmpdir = None
            self._started = False

    def __enter__(self):
        if self.tmpdir is None:
            self.init()
        if not self._started:
            self.start()
        return self

    def __exit__(self, *exc):
        self.cleanup()
        return False
