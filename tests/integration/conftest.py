"""Fixtures: a throwaway PostgreSQL 15 per session (`pg`) and pgtide processes per test
(`pgtide`). See pgtide_harness.py for the pieces."""

import os
import shutil
import signal
import subprocess
import sys
import threading

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import pgtide_harness as h  # noqa: E402

DEFAULT_DEADLINE = 60.0

# PGTIDE_TEST_DIRECT=1 points start() at PostgreSQL itself instead of a pgtide: a self-check
# of the tests' own logic (protocol tests must pass; pgtide-specific ones will not).
DIRECT = os.environ.get("PGTIDE_TEST_DIRECT") == "1"


class DirectTarget(h.PgtideProcess):
    def __init__(self, pg):
        self.pg = pg
        self.host, self.port = pg.host, pg.port
        self.proc = None
        self.workdir = "/nonexistent"
        self.logfile = self.stderr_path = self.stdout_path = "/nonexistent"
        self.args, self.ini_lines, self.extra_pids = [], [], []

    def alive(self):
        return True


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "deadline(seconds): kill pgtide (so blocked clients fail) after this long")


@pytest.fixture(scope="session")
def pg():
    cluster = h.PgCluster()
    try:
        cluster.start()
    except Exception:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory):
    """A throwaway CA and certificates (pgtide_harness.TlsFiles), made once per session."""
    return h.make_tls_files(str(tmp_path_factory.mktemp("tls")))


@pytest.fixture(scope="session")
def pg_ssl(tls_files):
    """A second PostgreSQL 15 with ssl = on (opt-in: only tests that ask start it): roles
    other than postgres must use TLS; certuser logs in with a client certificate."""
    cluster = h.PgCluster(tls=tls_files)
    try:
        cluster.start()
    except Exception:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


class PgtideFactory:
    """Starts pgtide processes for one test and guarantees their teardown."""

    def __init__(self, pg, tmp_path, deadline):
        self.pg = pg
        self.tmp_path = tmp_path
        self.procs = []
        self.locks = []
        self.timed_out = False
        self.deadline = deadline
        self._n = 0
        self._watchdog = threading.Timer(deadline, self._expire)
        self._watchdog.daemon = True
        self._watchdog.start()

    def _expire(self):
        self.timed_out = True
        for p in self.procs:
            p.kill_now()

    def _workdir(self):
        self._n += 1
        d = self.tmp_path / f"pgtide{self._n}"
        d.mkdir()
        return str(d)

    def default_databases(self):
        return {
            "app": f"host=127.0.0.1 port={self.pg.port} dbname=app",
            "other": f"host=127.0.0.1 port={self.pg.port} dbname=other",
        }

    def default_userlist(self):
        return [("app", "app"), ("md5user", "md5pw"), ("trustuser", "")]

    def config(self, workdir, port, ini_settings=None, databases=None, users=None,
               userlist=None, section="pgtide"):
        """Builds the settings/databases/users dicts: defaults, updated with the given dicts
        (a value of None removes a default)."""
        settings = {
            "listen_addr": "127.0.0.1",
            "listen_port": str(port),
            "unix_socket_dir": "",
            "auth_type": "scram-sha-256",
            "auth_file": os.path.join(workdir, "userlist.txt"),
            "logfile": os.path.join(workdir, "pgtide.log"),
            "pool_mode": "session",
        }
        for k, v in (ini_settings or {}).items():
            if v is None:
                settings.pop(k, None)
            else:
                settings[k] = str(v)
        dbs = self.default_databases()
        for k, v in (databases or {}).items():
            if v is None:
                dbs.pop(k, None)
            else:
                dbs[k] = v
        usr = {k: v for k, v in (users or {}).items() if v is not None}
        ul = self.default_userlist() if userlist is None else list(userlist)
        return {"settings": settings, "databases": dbs, "users": usr, "userlist": ul,
                "section": section}

    def write(self, proc, spec):
        """(Re)writes proc's ini and user list from spec; returns {key: line}."""
        where, lines = h.write_ini(proc.ini_path, spec["settings"], spec["databases"],
                                   spec["users"], spec["section"])
        h.write_userlist(os.path.join(proc.workdir, "userlist.txt"), spec["userlist"])
        proc.ini_lines = lines
        proc.where = where
        proc.spec = spec
        return where

    def prepare(self, ini_settings=None, databases=None, users=None, userlist=None,
                extra_args=(), section="pgtide"):
        """Writes the files and returns an unstarted PgtideProcess (see start())."""
        workdir = self._workdir()
        lock = h.allocate_port()
        self.locks.append(lock)
        proc = h.PgtideProcess(workdir, lock, [])
        proc.ini_path = os.path.join(workdir, "pgtide.ini")
        spec = self.config(workdir, lock.port, ini_settings, databases, users, userlist,
                           section)
        self.write(proc, spec)
        proc.args = list(extra_args) + [proc.ini_path]
        proc.factory = self
        self.procs.append(proc)
        return proc

    def start(self, ini_settings=None, databases=None, users=None, userlist=None,
              extra_args=(), wait=True, section="pgtide"):
        if DIRECT:
            return DirectTarget(self.pg)
        proc = self.prepare(ini_settings, databases, users, userlist, extra_args, section)
        proc.spawn()
        if wait:
            proc.wait_ready()
        return proc

    def start_cli(self, args, listen=True, wait=True):
        """Runs pgtide with command-line arguments only (no ini), listening on a locked port
        unless listen is False."""
        workdir = self._workdir()
        lock = h.allocate_port()
        self.locks.append(lock)
        proc = h.PgtideProcess(workdir, lock, [])
        proc.args = list(args) + (["--listen", f"127.0.0.1:{lock.port}"] if listen else [])
        proc.factory = self
        self.procs.append(proc)
        proc.spawn()
        if wait:
            proc.wait_ready()
        return proc

    def run(self, args, timeout=15):
        """Runs pgtide to completion (for -V, -h, bad configs). Returns CompletedProcess."""
        r = subprocess.run([h.pgtide_bin()] + list(args), capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, cwd=str(self.tmp_path))
        text = (r.stdout or "") + (r.stderr or "")
        for marker in h.SANITIZER_MARKERS:
            if marker in text:
                pytest.fail(f"sanitizer report from pgtide {args}:\n{text}")
        if r.returncode < 0:
            pytest.fail(f"pgtide {args} died with signal {-r.returncode}:\n{text}")
        return r

    def teardown(self):
        self._watchdog.cancel()
        problems = []
        for p in self.procs:
            status = p.stop()
            for pid in p.extra_pids:
                _stop_pid(pid)
            p.close_files()
            report = p.sanitizer_report()
            if report:
                problems.append(f"sanitizer report from pgtide:\n{report[-6000:]}")
            elif status is not None and status < 0 and not p.sent_sigkill:
                problems.append(f"pgtide died with signal {-status} "
                                f"({signal.Signals(-status).name})\n{p.diagnostics()}")
            elif p.sent_sigkill and not self.timed_out:
                problems.append(f"pgtide did not exit within 10 s of SIGTERM\n"
                                f"{p.diagnostics()}")
        for lock in self.locks:
            lock.release()
        self.pg.wait_no_client_backends(10)
        if self.timed_out:
            problems.insert(0, f"test exceeded its {self.deadline:.0f} s deadline: pgtide was "
                               f"killed to unblock it")
        if problems:
            pytest.fail("\n\n".join(problems), pytrace=False)


def _stop_pid(pid):
    import time
    if not h.pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except OSError:
        return
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not h.pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except OSError:
        pass


@pytest.fixture
def pgtide(pg, tmp_path, request):
    if not DIRECT and not os.path.exists(h.pgtide_bin()):
        pytest.fail(f"pgtide binary not found at {h.pgtide_bin()} (build it, or set "
                    f"PGTIDE_BIN)", pytrace=False)
    marker = request.node.get_closest_marker("deadline")
    deadline = float(marker.args[0]) if marker else DEFAULT_DEADLINE
    factory = PgtideFactory(pg, tmp_path, deadline)
    yield factory
    factory.teardown()


@pytest.fixture
def node_bin():
    path = shutil.which("node")
    if not path:
        pytest.skip("node is not installed")
    return path


@pytest.fixture
def table(pg):
    """make(columns="who text", rows_sql=None) creates a fresh table in database app, owned by
    app, optionally filled with `INSERT INTO t <rows_sql>`; dropped afterwards."""
    import uuid
    names = []

    def make(ddl_cols="who text", rows_sql=None):
        name = "t_" + uuid.uuid4().hex[:10]
        pg.admin_sql(f"CREATE TABLE {name} ({ddl_cols})", db="app")
        pg.admin_sql(f"ALTER TABLE {name} OWNER TO app", db="app")
        if rows_sql:
            pg.admin_sql(f"INSERT INTO {name} {rows_sql}", db="app")
        names.append(name)
        return name
    yield make
    for n in names:
        pg.admin_sql(f"DROP TABLE IF EXISTS {n}", db="app")


@pytest.fixture
def pgbench_tables(pg):
    """Drops pgbench's tables after the test."""
    yield
    pg.admin_sql("DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_history, "
                 "pgbench_tellers", db="app")
