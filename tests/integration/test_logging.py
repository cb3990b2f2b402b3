"""Logging: connection, disconnection (reason and age) and pooler-error lines, each with
db/user@addr and the connection id; log_connections, log_disconnections, log_pooler_errors
switch them; the log file is reopened on SIGHUP (log rotation); no secret is ever logged
(test_auth.py::test_secrets_never_logged covers every auth type)."""

import os
import re
import time

import psycopg
import pytest

import pgtide_harness as h

pytestmark = pytest.mark.skipif(os.environ.get("PGTIDE_TEST_DIRECT") == "1",
                                reason="pgtide's own log")

ON = {"log_connections": 1, "log_disconnections": 1, "log_pooler_errors": 1}
PREFIX = r"(?P<db>[^/\s]+)/(?P<user>[^@\s]+)@(?P<addr>127\.0\.0\.1:\d+) c(?P<id>\d+)"


def lines(p, pattern, mark=(0, 0)):
    rx = re.compile(pattern)
    text = p.log()[mark[0]:]  # (stderr has the same lines)
    return [m for m in (rx.search(line) for line in text.splitlines()) if m]


def test_connection_and_disconnection_lines(pgtide):
    p = pgtide.start({**ON, "pool_mode": "transaction"})
    mark = p.log_mark()
    with p.connect(application_name="logtest") as c:
        c.execute("select 1")
        time.sleep(1.1)
    h.wait_for(lambda: lines(p, r"closing because: client sent Terminate \(age=1s\)", mark), 5,
               what="the disconnection line in the log file")
    login = lines(p, PREFIX + r" login attempt: db=app user=app", mark)
    done = lines(p, PREFIX + r" login complete", mark)
    close = lines(p, PREFIX + r" closing because: client sent Terminate \(age=(\d+)s\)", mark)
    assert len(login) == len(done) == len(close) == 1, p.log()[mark[0]:]
    ids = {m["id"] for m in login + done + close}
    assert len(ids) == 1, "one connection id on every line of one connection"
    assert {(m["db"], m["user"]) for m in login + done + close} == {("app", "app")}

    # two connections get two ids
    mark = p.log_mark()
    with p.connect(), p.connect():
        pass
    h.wait_for(lambda: len(lines(p, r"closing because", mark)) == 2, 5,
               what="two disconnection lines in the log file")
    ids2 = {m["id"] for m in lines(p, PREFIX + r" closing because", mark)}
    assert len(ids2) == 2 and not ids2 & ids


def test_reasons_for_closing(pgtide):
    p = pgtide.start({**ON, "pool_mode": "transaction", "client_idle_timeout": "1"})
    mark = p.log_mark()
    c = p.raw()
    assert c.login("app", "app", "app").ok
    c.abort()  # vanishes without Terminate
    p.wait_log(PREFIX + r" closing because: client (closed the connection|connection failed: "
               r"Connection reset by peer) \(age=0s\)", mark=mark)
    mark = p.log_mark()
    with p.raw() as c:
        assert c.login("app", "app", "app").ok
        p.wait_log(PREFIX + r" closing because: terminating connection due to idle-session "
                   r"timeout \(age=1s\)", timeout=5, mark=mark)
    mark = p.log_mark()
    with pytest.raises(psycopg.OperationalError):
        p.connect(dbname="nosuchdb")
    p.wait_log(r"nosuchdb/app@127\.0\.0\.1:\d+ c\d+ pooler error: .*nosuchdb.*\(3D000\)",
               mark=mark)


def test_switches_turn_lines_off(pgtide):
    p = pgtide.start({"log_connections": 0, "log_disconnections": 0, "log_pooler_errors": 0,
                      "pool_mode": "transaction"})
    mark = p.log_mark()
    with p.connect() as c:
        c.execute("select 1")
    with pytest.raises(psycopg.OperationalError):
        p.connect(dbname="nosuchdb")
    with pytest.raises(psycopg.OperationalError):
        p.connect(password="wrong-password-xyz")
    # something else reaches the log after them, so they had their chance to be written
    p.reload()
    p.wait_log("configuration reloaded", mark=mark)
    text = p.log()[mark[0]:] + p.stderr()[mark[1]:]
    for what in ("login attempt", "login complete", "closing because", "pooler error"):
        assert what not in text, (what, text)


def test_log_file_is_reopened_on_sighup(pgtide):
    """logrotate's way: rename the file, SIGHUP, and the next lines go to a new file at the
    configured path; the old file gets nothing more."""
    p = pgtide.start({**ON, "pool_mode": "transaction"})
    with p.connect() as c:
        c.execute("select 1")
    p.wait_log("closing because")
    rotated = p.logfile + ".1"
    os.rename(p.logfile, rotated)
    with p.connect() as c:  # still written to the renamed file (same open file)
        c.execute("select 1")
    h.wait_for(lambda: open(rotated).read().count("closing because") == 2, 5,
               what="second disconnection in the renamed file")
    p.reload()
    h.wait_for(lambda: os.path.exists(p.logfile), 5, what="a new log file after SIGHUP")
    with p.connect() as c:
        c.execute("select 1")
    h.wait_for(lambda: "closing because" in open(p.logfile).read(), 5,
               what="the disconnection in the new file")
    assert open(rotated).read().count("closing because") == 2
    assert "configuration reloaded" in open(p.logfile).read()


def test_verbose_adds_debug_lines(pgtide):
    p = pgtide.start({"pool_mode": "transaction", "verbose": 0})
    with p.connect() as c:
        c.execute("select 1")
    p.stop()
    assert " DEBUG " not in p.all_output()
    p = pgtide.start({"pool_mode": "transaction"}, extra_args=["-v"])
    with p.connect() as c:
        c.execute("select 1")
    p.wait_log(r"DEBUG .*linked to client c\d+")


@pytest.fixture
def dev_log():
    """Stands in for the syslog daemon at /dev/log (as root, on a machine without one) and
    yields the bound datagram socket. The plain and the ASan suite run side by side and /dev/log
    is one path for both: a lock file keeps them from binding or unlinking it in turn."""
    import fcntl
    import socket
    if os.geteuid() != 0:
        pytest.skip("not root: cannot stand in for syslog at /dev/log")
    with open("/tmp/pgtide-test-devlog.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if os.path.exists("/dev/log"):
            pytest.skip("a syslog daemon owns /dev/log: cannot read what it gets")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind("/dev/log")
        except OSError as e:
            sock.close()
            pytest.skip(f"cannot stand in for syslog at /dev/log: {e}")
        try:
            sock.settimeout(5)
            yield sock
        finally:
            sock.close()
            os.unlink("/dev/log")


def test_syslog(pgtide, dev_log):
    """syslog = 1 sends the lines to syslog(3), i.e. /dev/log."""
    import socket
    sock = dev_log
    p = pgtide.start({**ON, "syslog": 1, "syslog_ident": "tidetest",
                      "pool_mode": "transaction"})
    with p.connect() as c:
        c.execute("select 1")
    got = []
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any("closing because" in g for g in got):
        try:
            got.append(sock.recv(65536).decode(errors="replace"))
        except socket.timeout:
            break
    p.stop()
    assert any(re.search(r"tidetest\[\d+\]: LOG app/app@127\.0\.0\.1:\d+ c\d+ login attempt",
                         g) for g in got), got
    assert any("closing because: client sent Terminate" in g for g in got), got


def test_syslog_facility(pgtide, dev_log):
    """syslog_facility sets the facility of the datagrams (PRI = facility * 8 + severity)."""
    import socket
    sock = dev_log
    got = []
    p = pgtide.start({**ON, "syslog": 1, "syslog_ident": "tidefac",
                      "syslog_facility": "local3", "admin_users": "app"})
    with p.connect() as c:
        c.execute("select 1")

    def drain(pri):
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not any(
                g.startswith(pri) and "closing because" in g for g in got):
            try:
                got.append(sock.recv(65536).decode(errors="replace"))
            except socket.timeout:
                break
    drain("<158>")  # local3 (19) * 8 + info (6)
    # SET on the console reopens syslog with the new facility.
    with h.AdminConsole(p) as adm:
        adm.rows("SET syslog_facility = 'user'")
    with p.connect() as c:
        c.execute("select 2")
    drain("<14>")  # user (1) * 8 + info (6)
    p.stop()
    local3 = [g for g in got if "tidefac[" in g and g.startswith("<158>")]  # local3.info
    assert any("login attempt" in g for g in local3), got
    user = [g for g in got if "tidefac[" in g and g.startswith("<14>")]  # user.info
    assert user, got
