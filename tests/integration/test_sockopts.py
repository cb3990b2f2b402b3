"""Socket options (PgBouncer's low-level network settings): so_reuseport and tcp_defer_accept on
the listening sockets, tcp_socket_buffer, tcp_user_timeout and the keepalives on client and
server sockets. Each is read back from pgtide's own sockets: the test copies pgtide's
descriptors into itself with pidfd_open + pidfd_getfd (Linux 5.6, root) and calls getsockopt
on them, so what is checked is what the kernel holds, not what pgtide says it set."""

import contextlib
import ctypes
import os
import socket
import time

import pytest

import pgtide_harness as h

SYS_PIDFD_OPEN = 434
SYS_PIDFD_GETFD = 438
TCP_DEFER_ACCEPT = getattr(socket, "TCP_DEFER_ACCEPT", 9)
TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long


@contextlib.contextmanager
def process_sockets(pid):
    """Every TCP socket of process pid, duplicated into this process: a list of
    socket.socket, closed on exit."""
    pidfd = _libc.syscall(SYS_PIDFD_OPEN, pid, 0)
    if pidfd < 0:
        pytest.fail(f"pidfd_open({pid}): {os.strerror(ctypes.get_errno())} (the test needs "
                    f"Linux 5.6 and the right to trace pgtide)")
    socks = []
    try:
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                if not os.readlink(f"/proc/{pid}/fd/{name}").startswith("socket:"):
                    continue
            except OSError:
                continue  # closed meanwhile
            fd = _libc.syscall(SYS_PIDFD_GETFD, pidfd, int(name), 0)
            if fd < 0:
                continue
            s = socket.socket(fileno=fd)
            if s.family in (socket.AF_INET, socket.AF_INET6):
                socks.append(s)
            else:
                s.close()
        yield socks
    finally:
        for s in socks:
            s.close()
        os.close(pidfd)


def _peer(s):
    try:
        return s.getpeername()[:2]
    except OSError:
        return None


def peer_of(socks, addr):
    """The socket of socks connected to addr (host, port), or None."""
    for s in socks:
        if _peer(s) == tuple(addr[:2]):
            return s
    return None


def server_sockets(socks, pg):
    return [s for s in socks if _peer(s) is not None and _peer(s)[1] == pg.port]


def listeners(socks, port):
    return [s for s in socks
            if s.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) and
            s.getsockname()[1] == port]


def client_addr(conn):
    """The local address of a psycopg connection's socket (what pgtide sees as its peer)."""
    s = socket.socket(fileno=os.dup(conn.pgconn.socket))
    try:
        return s.getsockname()[:2]
    finally:
        s.close()


def tcp_opts(s):
    return {
        "sndbuf": s.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF),
        "rcvbuf": s.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF),
        "user_timeout": s.getsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT),
        "keepalive": s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
        "keepidle": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
        "keepintvl": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
        "keepcnt": s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT),
    }


def both_ends(p, pg, conn):
    """The options of pgtide's socket to conn and of its server socket, in session pooling
    the one linked to conn (conn must have run a query)."""
    with process_sockets(p.proc.pid) as socks:
        cs = peer_of(socks, client_addr(conn))
        assert cs is not None, "pgtide holds no socket connected to the client"
        servers = server_sockets(socks, pg)
        assert len(servers) == 1, f"{len(servers)} server sockets"
        return tcp_opts(cs), tcp_opts(servers[0])


# ---- so_reuseport -----------------------------------------------------------------------------

def _second_on_port(pgtide, port, settings):
    """An unstarted pgtide whose ini listens on port (another one's)."""
    q = pgtide.prepare(settings)
    q.rewrite({"listen_port": port})
    q.port = port
    return q


def _which(p):
    """The logfile of the pgtide process that answered a new connection on p's port."""
    with h.AdminConsole(p) as a:
        return {r["key"]: r["value"] for r in a.rows("SHOW CONFIG")}["logfile"]


def test_so_reuseport_two_processes_share_a_port(pgtide):
    settings = {"so_reuseport": 1, "admin_users": "app"}
    a = pgtide.start(settings)
    b = _second_on_port(pgtide, a.port, settings)
    b.spawn()
    b.wait_log(rf"listening on 127\.0\.0\.1:{a.port}\b")
    b.wait_log(r"started \(pid")
    with process_sockets(b.proc.pid) as socks:
        ls = listeners(socks, a.port)
        assert len(ls) == 1
        assert ls[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
    # the kernel spreads new connections over both processes
    seen = set()
    for _ in range(60):
        seen.add(_which(a))
        if len(seen) == 2:
            break
    assert seen == {a.logfile, b.logfile}, seen
    for p in (a, b):
        with p.connect() as c:
            assert c.execute("select 1").fetchone() == (1,)

    # a third process without so_reuseport cannot bind the port
    c = _second_on_port(pgtide, a.port, {"so_reuseport": 0})
    r = pgtide.run([c.ini_path])
    out = r.stdout + r.stderr + c.log()
    assert r.returncode != 0, out
    assert f"could not listen on 127.0.0.1:{a.port}: Address already in use" in out, out


def test_so_reuseport_off_by_default_and_needed_by_both(pgtide):
    a = pgtide.start()
    with process_sockets(a.proc.pid) as socks:
        ls = listeners(socks, a.port)
        assert len(ls) == 1
        assert ls[0].getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0
    b = _second_on_port(pgtide, a.port, {"so_reuseport": 1})
    r = pgtide.run([b.ini_path])
    out = r.stdout + r.stderr + b.log()
    assert r.returncode != 0, out
    assert "Address already in use" in out, out


# ---- tcp_defer_accept -------------------------------------------------------------------------

def _defer_accept(p):
    with process_sockets(p.proc.pid) as socks:
        ls = listeners(socks, p.port)
        assert len(ls) == 1
        return ls[0].getsockopt(socket.IPPROTO_TCP, TCP_DEFER_ACCEPT)


def _accepted(p, sock):
    """True once pgtide holds a socket connected to sock."""
    with process_sockets(p.proc.pid) as socks:
        return peer_of(socks, sock.getsockname()) is not None


def test_tcp_defer_accept(pgtide):
    # PgBouncer's default on Linux: 1 second
    p = pgtide.start({"admin_users": "app"})
    assert _defer_accept(p) == 1
    p.stop()

    # Linux keeps the value as a number of SYN-ACK retransmissions: 7 s reads back as 7
    p = pgtide.start({"tcp_defer_accept": 7, "admin_users": "app"})
    assert _defer_accept(p) == 7
    with socket.create_connection((p.host, p.port), timeout=5) as silent:
        time.sleep(0.5)
        # connected for the client, but not handed to pgtide while it sends nothing
        assert not _accepted(p, silent)
        with p.raw() as c:
            assert c.login("app", "app", "app").ok  # a client that speaks is served
        silent.sendall(h.ssl_request())
        h.wait_for(lambda: _accepted(p, silent), 5, what="accept after the first bytes")
        assert silent.recv(1) == b"N"

    # SET applies it to the listening socket at once: 0 turns it off
    with h.AdminConsole(p) as a:
        a.rows("SET tcp_defer_accept = 0")
    assert _defer_accept(p) == 0
    with socket.create_connection((p.host, p.port), timeout=5) as silent:
        h.wait_for(lambda: _accepted(p, silent), 5, what="accept without any bytes")

    # and so does a reload
    p.rewrite({"tcp_defer_accept": 3})
    mark = p.log_mark()
    p.reload()
    p.wait_log("configuration reloaded", mark=mark)
    assert _defer_accept(p) == 3


# ---- tcp_socket_buffer, tcp_user_timeout, keepalives ------------------------------------------

def test_socket_options_on_client_and_server_sockets(pgtide, pg):
    p = pgtide.start({"tcp_socket_buffer": 40000, "tcp_user_timeout": 12345,
                      "tcp_keepidle": 77, "tcp_keepintvl": 11, "tcp_keepcnt": 5,
                      "admin_users": "app"})
    with p.connect() as conn:
        first_pid = conn.execute("select pg_backend_pid()").fetchone()[0]
        client, server = both_ends(p, pg, conn)
        for side, o in (("client", client), ("server", server)):
            # Linux doubles SO_SNDBUF/SO_RCVBUF for its bookkeeping
            assert (o["sndbuf"], o["rcvbuf"]) == (80000, 80000), (side, o)
            assert o["user_timeout"] == 12345, (side, o)
            assert (o["keepalive"], o["keepidle"], o["keepintvl"], o["keepcnt"]) == \
                (1, 77, 11, 5), (side, o)

        # SET: new connections get the new value; established ones and the pool's servers
        # are left alone (the server is not replaced)
        with h.AdminConsole(p) as a:
            a.rows("SET tcp_user_timeout = 2222")
        with p.connect() as second:
            assert second.execute("select 1").fetchone() == (1,)
            with process_sockets(p.proc.pid) as socks:
                assert peer_of(socks, client_addr(conn)).getsockopt(
                    socket.IPPROTO_TCP, TCP_USER_TIMEOUT) == 12345
                assert peer_of(socks, client_addr(second)).getsockopt(
                    socket.IPPROTO_TCP, TCP_USER_TIMEOUT) == 2222
                timeouts = sorted(s.getsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT)
                                  for s in server_sockets(socks, pg))
                assert timeouts == [2222, 12345], timeouts
        assert conn.execute("select pg_backend_pid()").fetchone()[0] == first_pid


def os_keepidle():
    with open("/proc/sys/net/ipv4/tcp_keepalive_time") as f:
        return int(f.read())


def test_socket_options_defaults(pgtide, pg):
    p = pgtide.start()
    with p.connect() as conn:
        conn.execute("select 1")
        client, server = both_ends(p, pg, conn)
    for side, o in (("client", client), ("server", server)):
        assert o["user_timeout"] == 0, (side, o)
        assert o["keepalive"] == 1, (side, o)  # tcp_keepalive = 1 with the OS's intervals
        assert o["keepidle"] == os_keepidle(), (side, o)
        assert o["sndbuf"] != 80000 and o["rcvbuf"] != 80000, (side, o)


def test_tcp_keepalive_off_reaches_server_sockets(pgtide, pg):
    p = pgtide.start({"tcp_keepalive": 0, "tcp_keepidle": 77})
    with p.connect() as conn:
        conn.execute("select 1")
        client, server = both_ends(p, pg, conn)
    assert client["keepalive"] == 0, client
    assert server["keepalive"] == 0, server


def test_database_entry_keywords_win(pgtide, pg):
    """libpq's own keywords in a [databases] entry win over the tcp_* settings."""
    p = pgtide.start({"tcp_user_timeout": 12345, "tcp_keepidle": 77},
                     databases={"app": f"host=127.0.0.1 port={pg.port} dbname=app "
                                       f"tcp_user_timeout=999 keepalives_idle=55"})
    with p.connect() as conn:
        conn.execute("select 1")
        client, server = both_ends(p, pg, conn)
    assert (client["user_timeout"], client["keepidle"]) == (12345, 77), client
    assert (server["user_timeout"], server["keepidle"]) == (999, 55), server
