"""Helpers for pgtide's integration tests: ports, a throwaway PostgreSQL, a pgtide process and
raw wire-protocol clients for the tests that must send what no driver would send.

Nothing here needs pgtide itself except PgtideProcess; the PostgreSQL cluster and the raw
protocol client are checked against PostgreSQL directly in test_harness.py.
"""

import base64
import errno
import fcntl
import hashlib
import hmac
import os
import random
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import time

import psycopg
from psycopg import conninfo as _conninfo

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
PORT_LOCK_DIR = "/tmp/pgtide-test-ports"

PROTO_3_0 = 3 << 16
CANCEL_REQUEST_CODE = 80877102
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "ERROR: LeakSanitizer")


def pgtide_bin():
    """PGTIDE_BIN, else an in-tree build (<repo>/pgtide), else scripts/bootstrap's build/."""
    if os.environ.get("PGTIDE_BIN"):
        return os.environ["PGTIDE_BIN"]
    in_tree = os.path.join(REPO_ROOT, "pgtide")
    out_of_tree = os.path.join(REPO_ROOT, "build", "pgtide")
    if not os.path.exists(in_tree) and os.path.exists(out_of_tree):
        return out_of_tree
    return in_tree


def pg_tool(name):
    return os.path.join(PG_BIN, name)


def wait_for(pred, timeout, interval=0.05, what="condition"):
    """Polls pred() until it returns a truthy value or the deadline passes; returns that value,
    raising AssertionError (naming `what`) on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Ports: a lock file per port, held for the owner's life, so parallel runs never collide.


class PortLock:
    """A TCP port on 127.0.0.1 reserved by an flock on /tmp/pgtide-test-ports/<port>.lock."""

    def __init__(self, port, fh):
        self.port = port
        self._fh = fh

    def release(self):
        if self._fh is not None:
            try:
                fcntl.flock(self._fh, fcntl.LOCK_UN)
            finally:
                self._fh.close()
                self._fh = None


def _port_binds(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def allocate_port(lo=20000, hi=29999):
    os.makedirs(PORT_LOCK_DIR, exist_ok=True)
    try:
        os.chmod(PORT_LOCK_DIR, 0o1777)
    except OSError:
        pass
    span = hi - lo + 1
    start = random.randrange(span)
    for i in range(span):
        port = lo + (start + i) % span
        path = os.path.join(PORT_LOCK_DIR, f"{port}.lock")
        try:
            fh = open(path, "a+")
        except OSError:
            continue
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            continue
        if _port_binds(port):
            return PortLock(port, fh)
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
    raise RuntimeError("no free port in 20000-29999")


# ---------------------------------------------------------------------------------------------
# A throwaway PostgreSQL 15 cluster.


PG_PASSWORDS = {
    "app": "app",
    "md5user": "md5pw",
    "secretuser": "tide-Secret-7f3b9q",
}


class PgCluster:
    """initdb + pg_ctl in a temp dir, as the postgres OS user when we are root. With tls (a
    TlsFiles) the cluster runs ssl = on with tls's server certificate and CA, and every role but
    postgres must come over TLS (hostssl); role certuser logs in with a client certificate."""

    def __init__(self, tls=None):
        self.tls = tls
        self.host = "127.0.0.1"
        self.port_lock = None
        self.port = None
        self.dir = None
        self.data = None
        self.logfile = None
        self.started = False

    # -- commands as the cluster owner
    def _as_owner(self, args):
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--"] + args
        return args

    def _run(self, args, timeout=120):
        r = subprocess.run(self._as_owner(args), capture_output=True, text=True, timeout=timeout,
                           cwd=self.dir)
        if r.returncode != 0:
            raise RuntimeError(f"{args[0]} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n"
                               + self.server_log())
        return r

    def server_log(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()[-5000:]
        except (OSError, TypeError):
            return ""

    def start(self):
        self.dir = tempfile.mkdtemp(prefix="pgtide-pg-", dir="/tmp")
        os.chmod(self.dir, 0o755)
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
        self.data = os.path.join(self.dir, "data")
        self.logfile = os.path.join(self.dir, "postgres.log")
        self.port_lock = allocate_port()
        self.port = self.port_lock.port
        self._run([pg_tool("initdb"), "-D", self.data, "-U", "postgres", "--auth=trust",
                   "-E", "UTF8", "--locale=C", "--no-sync"])
        conf = f"""
listen_addresses = '127.0.0.1'
port = {self.port}
unix_socket_directories = '{self.dir}'
fsync = off
synchronous_commit = off
full_page_writes = off
max_connections = 300
password_encryption = 'scram-sha-256'
shared_buffers = 64MB
max_wal_size = 1GB
log_statement = 'none'
log_min_messages = warning
log_connections = off
max_parallel_workers_per_gather = 0
"""
        if self.tls:
            for name in ("server.crt", "server.key", "ca.crt"):
                dst = os.path.join(self.data, name)
                shutil.copy(self.tls.path(name), dst)
                os.chmod(dst, 0o600)
                if os.geteuid() == 0:
                    shutil.chown(dst, "postgres", "postgres")
            conf += ("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                     "ssl_ca_file = 'ca.crt'\n")
        with open(os.path.join(self.data, "postgresql.conf"), "a") as f:
            f.write(conf)
        hba = """
local   all all                       trust
host    all postgres  127.0.0.1/32    trust
host    all trustuser 127.0.0.1/32    trust
host    all md5user   127.0.0.1/32    md5
host    all all       127.0.0.1/32    scram-sha-256
"""
        if self.tls:
            hba = """
local   all all                       trust
host    all postgres  127.0.0.1/32    trust
hostssl all certuser  127.0.0.1/32    cert
hostssl all all       127.0.0.1/32    scram-sha-256
"""
        with open(os.path.join(self.data, "pg_hba.conf"), "w") as f:
            f.write(hba)
        self._run([pg_tool("pg_ctl"), "-D", self.data, "-l", self.logfile, "-w", "-t", "60",
                   "start"])
        self.started = True
        self._setup_roles()

    def _setup_roles(self):
        with self.admin_conn() as c:
            c.execute("SET password_encryption = 'scram-sha-256'")
            c.execute("CREATE ROLE app LOGIN PASSWORD 'app'")
            c.execute(f"CREATE ROLE secretuser LOGIN PASSWORD '{PG_PASSWORDS['secretuser']}'")
            c.execute("CREATE ROLE trustuser LOGIN")
            c.execute("SET password_encryption = 'md5'")
            c.execute("CREATE ROLE md5user LOGIN PASSWORD 'md5pw'")
            c.execute("RESET password_encryption")
            c.execute("CREATE DATABASE app OWNER app")
            c.execute("CREATE DATABASE other OWNER app")
            if self.tls:
                c.execute("CREATE ROLE certuser LOGIN")
                c.execute("GRANT CONNECT ON DATABASE app TO certuser")

    def kill_immediate(self):
        """Stops the cluster as a crash would (pg_ctl stop -m immediate: backends get SIGQUIT
        and exit without a clean shutdown; the next start runs crash recovery)."""
        self._run([pg_tool("pg_ctl"), "-D", self.data, "-m", "immediate", "-w", "-t", "60",
                   "stop"])
        self.started = False

    def restart(self):
        """Starts the cluster again on the same data directory and port (after
        kill_immediate)."""
        self._run([pg_tool("pg_ctl"), "-D", self.data, "-l", self.logfile, "-w", "-t", "60",
                   "start"])
        self.started = True

    def stop(self):
        if self.started:
            try:
                subprocess.run(self._as_owner([pg_tool("pg_ctl"), "-D", self.data, "-m",
                                               "immediate", "-w", "stop"]),
                               capture_output=True, timeout=60, cwd=self.dir)
            except Exception:
                pass
            self.started = False
        if self.port_lock:
            self.port_lock.release()
            self.port_lock = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    # -- clients
    def dsn(self, user="app", db="app", password=None, **kw):
        if password is None:
            password = PG_PASSWORDS.get(user)
        params = dict(host=self.host, port=self.port, user=user, dbname=db,
                      connect_timeout=10, **kw)
        if password is not None:
            params["password"] = password
        return _conninfo.make_conninfo(**params)

    def admin_conn(self, db="postgres"):
        return psycopg.connect(host=self.host, port=self.port, user="postgres", dbname=db,
                               autocommit=True, connect_timeout=10)

    def admin_sql(self, sql, params=None, db="postgres"):
        """Runs sql as the superuser (autocommit); returns all rows, or None without a result."""
        with self.admin_conn(db) as c:
            cur = c.execute(sql, params)
            if cur.description is None:
                return None
            return cur.fetchall()

    def admin_value(self, sql, params=None, db="postgres"):
        rows = self.admin_sql(sql, params, db)
        return rows[0][0] if rows else None

    def backends(self, user=None, db=None, application_name=None):
        """Client backends other than the admin query's own, as dicts."""
        sql = ("SELECT pid, usename, datname, application_name, state, query, backend_start, "
               "xact_start FROM pg_stat_activity WHERE backend_type = 'client backend' "
               "AND pid <> pg_backend_pid()")
        args = []
        if user is not None:
            sql += " AND usename = %s"
            args.append(user)
        if db is not None:
            sql += " AND datname = %s"
            args.append(db)
        if application_name is not None:
            sql += " AND application_name = %s"
            args.append(application_name)
        with self.admin_conn() as c:
            cur = c.execute(sql, args)
            names = [d.name for d in cur.description]
            return [dict(zip(names, r)) for r in cur.fetchall()]

    def count_backends(self, user=None, db=None, application_name=None):
        return len(self.backends(user, db, application_name))

    def non_superuser_backends(self):
        return [b for b in self.backends() if b["usename"] != "postgres"]

    def wait_no_client_backends(self, timeout=10):
        """Waits until no backend of a non-superuser role is left (between tests)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.non_superuser_backends():
                return True
            time.sleep(0.05)
        return False

    def scram_secret(self, role="app"):
        return self.admin_value("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (role,))


# ---------------------------------------------------------------------------------------------
# Certificates for the TLS tests: a throwaway CA made with the openssl CLI.


class TlsFiles:
    """PEM files in dir: ca.crt/.key (the test CA), server.crt/.key and server2.crt/.key
    (127.0.0.1 and localhost, signed by the CA), client.crt/.key (CN=app) and
    certuser.crt/.key (CN=certuser) signed by the CA, rogue-ca.crt and rogue-client.crt/.key
    (CN=app, signed by another CA). Keys are mode 0600, as libpq insists."""

    def __init__(self, directory):
        self.dir = directory

    def path(self, name):
        return os.path.join(self.dir, name)

    def __getattr__(self, name):
        # tls.server_crt -> <dir>/server.crt, tls.rogue_client_key -> <dir>/rogue-client.key
        if name.endswith(("_crt", "_key")):
            base, ext = name.rsplit("_", 1)
            return os.path.join(self.dir, base.replace("_", "-") + "." + ext)
        raise AttributeError(name)


def _openssl(args, cwd):
    r = subprocess.run(["openssl"] + args, cwd=cwd, capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}")


def _make_ca(d, name, cn):
    _openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", "3650",
              "-subj", f"/CN={cn}", "-addext", "basicConstraints=critical,CA:TRUE",
              "-addext", "keyUsage=critical,keyCertSign,cRLSign"], d)


def _make_cert(d, name, cn, ca="ca", san=None):
    _openssl(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
              "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={cn}"], d)
    ext = os.path.join(d, f"{name}.ext")
    with open(ext, "w") as f:
        f.write("basicConstraints=CA:FALSE\n")
        if san:
            f.write(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
        else:
            f.write("extendedKeyUsage=clientAuth\n")
    _openssl(["x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
              "-CAcreateserial", "-out", f"{name}.crt", "-days", "3650", "-sha256",
              "-extfile", ext], d)


def make_tls_files(directory):
    """Creates the CA and certificates of TlsFiles in directory (about 0.5 s)."""
    os.makedirs(directory, exist_ok=True)
    _make_ca(directory, "ca", "pgtide test CA")
    _make_ca(directory, "rogue-ca", "not the pgtide test CA")
    san = "DNS:localhost,IP:127.0.0.1"
    _make_cert(directory, "server", "localhost", san=san)
    _make_cert(directory, "server2", "localhost", san=san)
    _make_cert(directory, "client", "app")
    _make_cert(directory, "certuser", "certuser")
    _make_cert(directory, "rogue-client", "app", ca="rogue-ca")
    for f in os.listdir(directory):
        os.chmod(os.path.join(directory, f), 0o600 if f.endswith(".key") else 0o644)
    os.chmod(directory, 0o755)
    return TlsFiles(directory)


def cert_fingerprint(pem_path):
    """SHA-256 of a PEM certificate's DER form (what getpeercert(binary_form=True) hashes)."""
    with open(pem_path) as f:
        return hashlib.sha256(ssl.PEM_cert_to_DER_cert(f.read())).hexdigest()


def client_tls_context(cafile=None, alpn=None, cert=None, key=None, minimum=None,
                       maximum=None):
    """An ssl.SSLContext for raw TLS tests: verifies against cafile when given."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if cafile:
        ctx.load_verify_locations(cafile)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if cert:
        ctx.load_cert_chain(cert, key)
    if minimum:
        ctx.minimum_version = minimum
    if maximum:
        ctx.maximum_version = maximum
    return ctx


# ---------------------------------------------------------------------------------------------
# The pgtide process.


def md5_secret(user, password):
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


def _quote_userlist(s):
    return '"' + s.replace('"', '""') + '"'


class PgtideProcess:
    """One pgtide under test. Created by the `pgtide` fixture; never leaves a process behind."""

    def __init__(self, workdir, port_lock, args, ini_path=None, ini_lines=None):
        self.workdir = workdir
        self.port_lock = port_lock
        self.host = "127.0.0.1"
        self.port = port_lock.port if port_lock else None
        self.args = args
        self.ini_path = ini_path
        self.ini_lines = ini_lines or []
        self.logfile = os.path.join(workdir, "pgtide.log")
        self.stdout_path = os.path.join(workdir, "stdout.txt")
        self.stderr_path = os.path.join(workdir, "stderr.txt")
        self.proc = None
        self.extra_pids = []  # a daemonized pgtide's pid, to kill at teardown
        self.preexec_fn = None  # run in the child before exec (e.g. setrlimit)
        self.sent_sigkill = False
        self._out = None
        self._err = None

    # -- life cycle
    def spawn(self):
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        env = dict(os.environ)
        env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        self.proc = subprocess.Popen([pgtide_bin()] + self.args, stdout=self._out,
                                     stderr=self._err, stdin=subprocess.DEVNULL,
                                     cwd=self.workdir, env=env, preexec_fn=self.preexec_fn)
        return self

    def wait_ready(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"pgtide exited with status {self.proc.returncode} before accepting "
                    f"connections\n{self.diagnostics()}")
            try:
                s = socket.create_connection((self.host, self.port), timeout=0.5)
                s.close()
                return self
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"pgtide did not accept connections on {self.port} within "
                             f"{timeout}s\n{self.diagnostics()}")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig):
        self.proc.send_signal(sig)

    def reload(self):
        self.signal(signal.SIGHUP)

    def wait_exit(self, timeout=10):
        """Waits for the process to exit; returns its status (raises on timeout)."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"pgtide still running after {timeout}s\n{self.diagnostics()}")

    def stop(self, timeout=10):
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.sent_sigkill = True
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode

    def kill_now(self):
        """SIGKILL (the per-test deadline watchdog)."""
        for pid in self.extra_pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if self.proc is not None and self.proc.poll() is None:
            self.sent_sigkill = True
            self.proc.kill()

    def close_files(self):
        for f in (self._out, self._err):
            if f is not None:
                f.close()
        self._out = self._err = None

    def rewrite(self, ini_settings=None, databases=None, users=None, userlist=None,
                raw_append=None):
        """Rewrites the ini (and user list) from the current spec updated with the given dicts
        (a None value removes the key). raw_append adds literal lines at the end. Returns
        {key: line}. Follow with reload()."""
        spec = {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.spec.items()}
        for part, upd in (("settings", ini_settings), ("databases", databases),
                          ("users", users)):
            for k, v in (upd or {}).items():
                if v is None:
                    spec[part].pop(k, None)
                else:
                    spec[part][k] = str(v)
        if userlist is not None:
            spec["userlist"] = list(userlist)
        where = self.factory.write(self, spec)
        if raw_append:
            with open(self.ini_path, "a") as f:
                f.write("\n".join(raw_append) + "\n")
        return where

    # -- output
    def _read(self, path):
        try:
            with open(path, "rb") as f:
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def log(self):
        """The logfile's text (the ini's logfile)."""
        return self._read(self.logfile)

    def stderr(self):
        return self._read(self.stderr_path)

    def stdout(self):
        return self._read(self.stdout_path)

    def all_output(self):
        return self.log() + "\n" + self.stderr() + "\n" + self.stdout()

    def log_mark(self):
        """A position in the output; wait_log(..., mark) looks only at what comes after it."""
        return (len(self.log()), len(self.stderr()))

    def wait_log(self, pattern, timeout=5, mark=(0, 0)):
        """Waits until the logfile or stderr, after mark, has a match for regex pattern."""
        rx = re.compile(pattern)

        def found():
            return rx.search(self.log()[mark[0]:]) or rx.search(self.stderr()[mark[1]:])
        try:
            return wait_for(found, timeout, what=f"log line matching {pattern!r}")
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.diagnostics()}") from None

    def log_size(self):
        return len(self.log())

    def sanitizer_report(self):
        text = self.stderr() + self.log()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                return text
        return None

    def diagnostics(self):
        out = [f"--- pgtide args: {self.args}"]
        for line in self.ini_lines:
            out.append("ini| " + line)
        out.append("--- stderr (tail):\n" + self.stderr()[-4000:])
        out.append("--- logfile (tail):\n" + self.log()[-4000:])
        return "\n".join(out)

    def fd_count(self):
        try:
            return len(os.listdir(f"/proc/{self.proc.pid}/fd"))
        except OSError:
            return -1

    # -- clients
    def dsn(self, user="app", password="app", dbname="app", **kw):
        params = dict(host=self.host, port=self.port, user=user, dbname=dbname,
                      connect_timeout=10, **kw)
        if password is not None:
            params["password"] = password
        return _conninfo.make_conninfo(**params)

    def url(self, user="app", password="app", dbname="app"):
        return f"postgresql://{user}:{password}@{self.host}:{self.port}/{dbname}"

    def connect(self, user="app", password="app", dbname="app", autocommit=True, **kw):
        """A psycopg 3 connection through pgtide."""
        return psycopg.connect(self.dsn(user, password, dbname, **kw), autocommit=autocommit)

    def raw(self, timeout=5):
        return RawConn(self.host, self.port, timeout=timeout)


def write_ini(path, settings, databases, users, section="pgtide"):
    """Writes a pgbouncer.ini-style file. Returns {key: line number} for every key written, and
    the lines."""
    lines = []
    where = {}
    lines.append("; written by tests/integration")
    lines.append("[databases]")
    for name, value in databases.items():
        lines.append(f"{name} = {value}")
        where[f"db:{name}"] = len(lines)
    if users:
        lines.append("")
        lines.append("[users]")
        for name, value in users.items():
            lines.append(f"{name} = {value}")
            where[f"user:{name}"] = len(lines)
    lines.append("")
    lines.append(f"[{section}]")
    for key, value in settings.items():
        lines.append(f"{key} = {value}" if value != "" else f"{key} =")
        where[key] = len(lines)
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return where, lines


def write_userlist(path, entries):
    with open(path, "w") as f:
        for user, secret in entries:
            f.write(f"{_quote_userlist(user)} {_quote_userlist(secret)}\n")


# ---------------------------------------------------------------------------------------------
# Raw protocol.


def startup_message(params, version=PROTO_3_0):
    body = struct.pack("!I", version)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def ssl_request():
    return struct.pack("!II", 8, SSL_REQUEST_CODE)


def gssenc_request():
    return struct.pack("!II", 8, GSSENC_REQUEST_CODE)


def cancel_request(pid, key):
    return struct.pack("!IIII", 16, CANCEL_REQUEST_CODE, pid & 0xFFFFFFFF, key & 0xFFFFFFFF)


def message(mtype, body=b""):
    if isinstance(mtype, str):
        mtype = mtype.encode()
    return mtype + struct.pack("!I", len(body) + 4) + body


def query_message(sql):
    return message(b"Q", sql.encode() + b"\0")


def password_message(pw):
    return message(b"p", pw.encode() + b"\0")


def terminate_message():
    return message(b"X")


class PgError(dict):
    """ErrorResponse/NoticeResponse fields keyed by their one-letter code."""

    @property
    def sqlstate(self):
        return self.get("C")

    @property
    def message(self):
        return self.get("M")

    @property
    def severity(self):
        return self.get("V") or self.get("S")

    def __repr__(self):
        return f"PgError({dict(self)!r})"


def parse_error(body):
    fields = PgError()
    i = 0
    while i < len(body) and body[i] != 0:
        code = chr(body[i])
        end = body.index(b"\0", i + 1)
        fields[code] = body[i + 1:end].decode("utf-8", errors="replace")
        i = end + 1
    return fields


def parse_cstrings(body):
    return [p.decode() for p in body.split(b"\0")[:-1]]


class LoginResult:
    def __init__(self):
        self.ok = False
        self.error = None          # PgError if the login failed with an ErrorResponse
        self.closed = False        # EOF without an ErrorResponse
        self.auth_codes = []       # every Authentication request code seen
        self.params = {}           # ParameterStatus
        self.backend_key = None    # (pid, key)
        self.notices = []
        self.status = None         # ReadyForQuery status

    def __repr__(self):
        return (f"LoginResult(ok={self.ok}, error={self.error!r}, closed={self.closed}, "
                f"auth={self.auth_codes})")


class QueryResult:
    def __init__(self):
        self.results = []   # [(columns, rows, tag)]
        self.errors = []    # [PgError]
        self.notices = []
        self.messages = []  # every (type, body)
        self.status = None  # ReadyForQuery status
        self.closed = False


class RawConn:
    """A hand-driven protocol 3.0 client over TCP."""

    def __init__(self, host, port, timeout=5):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        self.bytes_sent = 0      # every byte written to and read from the socket, for tests
        self.bytes_received = 0  # that check pgtide's byte counters exactly

    def send(self, data):
        self.sock.sendall(data)
        self.bytes_sent += len(data)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Closes with RST (SO_LINGER 0): the peer sees ECONNRESET, not a clean FIN."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def _fill(self, deadline):
        if self.eof:
            raise EOFError("connection closed by peer")
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("no data within deadline")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise TimeoutError("no data within deadline")
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError):
            self.eof = True
            raise EOFError("connection reset by peer")
        if not chunk:
            self.eof = True
            raise EOFError("connection closed by peer")
        self.bytes_received += len(chunk)
        self.buf += chunk

    def start_tls(self, context, server_hostname=None):
        """SSLRequest; on 'S' the socket becomes a TLS socket (the handshake runs here) and
        'S' is returned, else the answer byte ('N', or b'' at EOF)."""
        self.send(ssl_request())
        try:
            answer = self.recv_exact(1)
        except EOFError:
            return b""
        if answer == b"S":
            self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)
        return answer

    @classmethod
    def direct_tls(cls, host, port, context, server_hostname=None, timeout=5):
        """PostgreSQL 17's direct TLS: a TLS handshake as the very first bytes."""
        c = cls(host, port, timeout=timeout)
        try:
            c.sock = context.wrap_socket(c.sock, server_hostname=server_hostname)
        except BaseException:
            c.close()
            raise
        return c

    def recv_exact(self, n, timeout=None):
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_msg(self, timeout=None):
        """Returns (type as a 1-char str, body). Raises EOFError or TimeoutError."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while len(self.buf) < 5:
            self._fill(deadline)
        mtype = self.buf[0:1]
        (length,) = struct.unpack("!I", self.buf[1:5])
        if length < 4:
            raise ValueError(f"bad length {length} in message {mtype!r} from server")
        while len(self.buf) < 1 + length:
            self._fill(deadline)
        body = self.buf[5:1 + length]
        self.buf = self.buf[1 + length:]
        return mtype.decode("latin-1"), body

    def read_until_closed(self, timeout=None):
        """Reads messages until EOF. Returns (messages, closed): closed False on timeout."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        msgs = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return msgs, False
            try:
                msgs.append(self.recv_msg(timeout=left))
            except EOFError:
                return msgs, True
            except TimeoutError:
                return msgs, False

    def errors_in(self, msgs):
        return [parse_error(b) for t, b in msgs if t == "E"]

    def expect_error_then_close(self, timeout=None):
        """Reads until EOF; returns the first ErrorResponse (or None) and whether EOF came."""
        msgs, closed = self.read_until_closed(timeout)
        errs = self.errors_in(msgs)
        return (errs[0] if errs else None), closed, msgs

    # -- login
    def login(self, user, password=None, database=None, params=None, version=PROTO_3_0,
              timeout=None):
        """Sends a StartupMessage and answers trust, cleartext, md5 and SCRAM-SHA-256. Never
        raises for a refused login: the result carries the ErrorResponse."""
        p = {"user": user}
        if database is not None:
            p["database"] = database
        if params:
            p.update(params)
        self.send(startup_message(p, version))
        return self.finish_login(user, password, timeout)

    def finish_login(self, user, password, timeout=None):
        res = LoginResult()
        scram = None
        while True:
            try:
                t, body = self.recv_msg(timeout)
            except EOFError:
                res.closed = True
                return res
            if t == "E":
                res.error = parse_error(body)
                return res
            if t == "N":
                res.notices.append(parse_error(body))
            elif t == "S":
                k, v = parse_cstrings(body)[:2]
                res.params[k] = v
            elif t == "K":
                res.backend_key = struct.unpack("!II", body[:8])
            elif t == "Z":
                res.status = body[:1].decode()
                res.ok = True
                return res
            elif t == "R":
                (code,) = struct.unpack("!I", body[:4])
                res.auth_codes.append(code)
                if code == 0:
                    continue
                if code == 3:
                    self.send(password_message(password or ""))
                elif code == 5:
                    salt = body[4:8]
                    inner = hashlib.md5(((password or "") + user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + salt).hexdigest()
                    self.send(password_message("md5" + outer))
                elif code == 10:
                    mechs = parse_cstrings(body[4:])
                    if "SCRAM-SHA-256" not in mechs:
                        raise AssertionError(f"no SCRAM-SHA-256 among {mechs}")
                    scram = ScramClient(password or "")
                    first = scram.client_first()
                    mbody = (b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first)
                    self.send(message(b"p", mbody))
                elif code == 11:
                    self.send(message(b"p", scram.client_final(body[4:])))
                elif code == 12:
                    scram.verify_server_final(body[4:])
                else:
                    raise AssertionError(f"unsupported authentication request {code}")
            else:
                raise AssertionError(f"unexpected message {t!r} during login")

    # -- queries
    def query(self, sql, timeout=None):
        self.send(query_message(sql))
        return self.read_results(timeout)

    def read_results(self, timeout=None):
        """Reads one simple-query cycle up to ReadyForQuery (or EOF)."""
        qr = QueryResult()
        cols, rows = None, []
        while True:
            try:
                t, body = self.recv_msg(timeout)
            except EOFError:
                qr.closed = True
                return qr
            qr.messages.append((t, body))
            if t == "T":
                (n,) = struct.unpack("!H", body[:2])
                cols, rows, off = [], [], 2
                for _ in range(n):
                    end = body.index(b"\0", off)
                    cols.append(body[off:end].decode())
                    off = end + 1 + 18
            elif t == "D":
                (n,) = struct.unpack("!H", body[:2])
                off, row = 2, []
                for _ in range(n):
                    (ln,) = struct.unpack("!i", body[off:off + 4])
                    off += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(body[off:off + ln].decode())
                        off += ln
                rows.append(tuple(row))
            elif t == "C":
                qr.results.append((cols, rows, body[:-1].decode()))
                cols, rows = None, []
            elif t == "I":
                qr.results.append((None, [], ""))
            elif t == "E":
                qr.errors.append(parse_error(body))
            elif t == "N":
                qr.notices.append(parse_error(body))
            elif t == "Z":
                qr.status = body[:1].decode()
                return qr


class ScramClient:
    """The client side of SCRAM-SHA-256 (RFC 5802/7677) as libpq does it (no channel
    binding; the user name in the message is empty, PostgreSQL uses the startup user)."""

    def __init__(self, password):
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = f"n=,r={self.nonce}"
        self.server_signature = None

    def client_first(self):
        return ("n,," + self.first_bare).encode()

    def client_final(self, server_first):
        server_first = server_first.decode()
        attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
        if not attrs["r"].startswith(self.nonce):
            raise AssertionError("server nonce does not extend ours")
        salt = base64.b64decode(attrs["s"])
        iters = int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password, salt, iters)
        client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
        stored_key = hashlib.sha256(client_key).digest()
        server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
        without_proof = f"c=biws,r={attrs['r']}"
        auth_msg = f"{self.first_bare},{server_first},{without_proof}".encode()
        client_sig = hmac.new(stored_key, auth_msg, hashlib.sha256).digest()
        proof = bytes(a ^ b for a, b in zip(client_key, client_sig))
        self.server_signature = hmac.new(server_key, auth_msg, hashlib.sha256).digest()
        return (without_proof + ",p=" + base64.b64encode(proof).decode()).encode()

    def verify_server_final(self, server_final):
        attrs = dict(kv.split("=", 1) for kv in server_final.decode().split(","))
        if base64.b64decode(attrs.get("v", "")) != self.server_signature:
            raise AssertionError("bad SCRAM server signature")


def raw_connect_retry(host, port, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        try:
            return RawConn(host, port)
        except OSError as e:
            if e.errno not in (errno.ECONNREFUSED, errno.EAGAIN) or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# ---------------------------------------------------------------------------------------------
# Threads that run a blocking client call, with a bounded join.


class Background:
    """Runs fn(*args) in a daemon thread; result()/exception() once done."""

    def __init__(self, fn, *args, **kw):
        self._result = None
        self._exc = None
        self.started_at = time.monotonic()
        self.finished_at = None
        self._done = threading.Event()

        def run():
            try:
                self._result = fn(*args, **kw)
            except BaseException as e:  # noqa: B902 - reported to the test
                self._exc = e
            finally:
                self.finished_at = time.monotonic()
                self._done.set()
        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def done(self):
        return self._done.is_set()

    def wait(self, timeout):
        if not self._done.wait(timeout):
            raise AssertionError(f"background call still running after {timeout}s")
        return self

    def result(self, timeout=30):
        self.wait(timeout)
        if self._exc is not None:
            raise self._exc
        return self._result

    def exception(self, timeout=30):
        self.wait(timeout)
        return self._exc

    def elapsed(self):
        end = self.finished_at if self.finished_at is not None else time.monotonic()
        return end - self.started_at


def read_protocol_error(conn, timeout=5):
    """Reads the reply to a bad StartupMessage until EOF and returns it as a PgError: a 3.0
    ErrorResponse, or the 2.0 form ('E' + text + NUL, as PostgreSQL answers a 2.0 client),
    whose message is the text and whose sqlstate is None. Raises AssertionError if the
    connection stays open or nothing arrives."""
    deadline = time.monotonic() + timeout
    data = conn.buf
    conn.buf = b""
    closed = False
    while time.monotonic() < deadline:
        try:
            conn.sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = conn.sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    if not closed:
        raise AssertionError(f"connection still open after {timeout}s; got {data!r}")
    if not data.startswith(b"E"):
        raise AssertionError(f"expected an error reply, got {data!r}")
    if len(data) >= 5:
        (length,) = struct.unpack("!I", data[1:5])
        if 4 <= length <= len(data) - 1 and data[length] == 0 and length < 0x01000000:
            err = parse_error(data[5:1 + length])
            if err.sqlstate:
                return err
    text = data[1:].split(b"\0")[0].decode("utf-8", errors="replace")
    err = PgError()
    err["M"] = text.strip()
    return err


def pid_alive(pid):
    """True if pid runs (a zombie, which a non-reaping init may leave, counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def login_or_query_error(host, port, user, password, database, params=None, sql="select 1",
                         timeout=10):
    """Logs in with a raw client and, if the login succeeds, runs sql: pgtide may report a
    server-side failure at login or at the first query (when it links a server). Returns
    (PgError or None, seconds taken)."""
    t0 = time.monotonic()
    with RawConn(host, port, timeout=timeout) as c:
        res = c.login(user, password, database, params, timeout=timeout)
        if res.error is not None:
            return res.error, time.monotonic() - t0
        if not res.ok:
            raise AssertionError(f"connection closed during login without an error: {res}")
        qr = c.query(sql, timeout=timeout)
        if qr.errors:
            return qr.errors[0], time.monotonic() - t0
        if qr.closed:
            raise AssertionError("connection closed after the query without an error")
        return None, time.monotonic() - t0


class BackendSampler:
    """Samples the number of PostgreSQL backends for (user, db) in a thread; .max is the most
    seen. Use as a context manager."""

    def __init__(self, pg, user=None, db=None, interval=0.05):
        self.pg, self.user, self.db, self.interval = pg, user, db, interval
        self.max = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = None

    def _run(self):
        with self.pg.admin_conn() as c:
            sql = ("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
                   " AND pid <> pg_backend_pid()")
            args = []
            if self.user is not None:
                sql += " AND usename = %s"
                args.append(self.user)
            if self.db is not None:
                sql += " AND datname = %s"
                args.append(self.db)
            while not self._stop.is_set():
                n = c.execute(sql, args).fetchone()[0]
                self.max = max(self.max, n)
                self.samples += 1
                self._stop.wait(self.interval)

    def __enter__(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *a):
        self._stop.set()
        self._thread.join(10)


# ---- extended-protocol message builders (raw) ---------------------------------------------------

def _cstr(s):
    return s.encode() + b"\0"


def parse_msg(sql, name="", param_oids=()):
    body = _cstr(name) + _cstr(sql) + struct.pack("!H", len(param_oids))
    body += b"".join(struct.pack("!I", o) for o in param_oids)
    return message(b"P", body)


def bind_msg(params=(), portal="", stmt=""):
    body = _cstr(portal) + _cstr(stmt) + struct.pack("!H", 0) + struct.pack("!H", len(params))
    for v in params:
        if v is None:
            body += struct.pack("!i", -1)
        else:
            b = v.encode() if isinstance(v, str) else v
            body += struct.pack("!i", len(b)) + b
    return message(b"B", body + struct.pack("!H", 0))


def describe_msg(kind="P", name=""):
    return message(b"D", kind.encode() + _cstr(name))


def execute_msg(portal="", max_rows=0):
    return message(b"E", _cstr(portal) + struct.pack("!I", max_rows))


def sync_msg():
    return message(b"S")


def flush_msg():
    return message(b"H")


def copy_data_msg(data):
    return message(b"d", data)


def copy_done_msg():
    return message(b"c")


def copy_fail_msg(reason):
    return message(b"f", _cstr(reason))


# ---- pgbench ------------------------------------------------------------------------------------

def pgbench(host, port, *args, timeout=120):
    """Runs pgbench as user app against database app; fails the test if it overruns."""
    import pytest
    env = dict(os.environ, PGPASSWORD="app")
    cmd = [pg_tool("pgbench"), "-h", host, "-p", str(port), "-U", "app"] + list(args) + ["app"]
    try:
        return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"pgbench {args} did not finish in {timeout}s: {e.stdout} {e.stderr}")


def pgbench_summary(r):
    """(processed, requested, failed) from pgbench's summary; asserts there is one."""
    m = re.search(r"number of transactions actually processed: (\d+)/?(\d+)?", r.stdout)
    assert m, f"no summary in pgbench output:\n{r.stdout}\n{r.stderr}"
    failed = re.search(r"number of failed transactions: (\d+)", r.stdout)
    return int(m[1]), int(m[2]) if m[2] else None, int(failed[1]) if failed else 0


# ---- the admin console --------------------------------------------------------------------------

class AdminConsole:
    """A psycopg 3 connection to the admin console (database pgtide) of a pgtide, as a user
    listed in admin_users. Commands go out as simple Query messages (execute() without
    parameters), the only protocol the console speaks. Use as a context manager."""

    def __init__(self, proc, user="app", password="app", dbname="pgtide"):
        self.conn = psycopg.connect(proc.dsn(user, password, dbname), autocommit=True)
        self.conn.prepare_threshold = None  # else a command run 5 times is prepared

    def rows(self, sql):
        """The command's rows as dicts keyed by column name ([] for a command without rows)."""
        cur = self.conn.execute(sql)
        if cur.description is None:
            return []
        names = [d.name for d in cur.description]
        return [dict(zip(names, r)) for r in cur.fetchall()]

    def close(self):
        self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()
