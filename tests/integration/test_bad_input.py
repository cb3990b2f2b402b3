"""Bad input: what no driver sends. Every case checks that pgtide answers as PostgreSQL would
(08P01 for protocol violations), closes that connection, and keeps serving everyone else."""

import resource
import socket
import struct
import time

import psycopg
import pytest

import pgtide_harness as h


def healthy(p):
    assert p.alive(), f"pgtide died\n{p.diagnostics()}"
    with p.connect() as c:
        assert c.execute("select 1").fetchone() == (1,)


def logged_in(p, link_server=False, **kw):
    c = p.raw(**kw)
    res = c.login("app", "app", "app")
    assert res.ok, res
    if link_server:
        assert c.query("select 1").status == "I"
    return c


def assert_08p01_then_close(c, strict=True, timeout=5):
    err, closed, msgs = c.expect_error_then_close(timeout)
    assert closed, f"connection left open; got {msgs}"
    if strict:
        assert err is not None, f"no ErrorResponse before the close; got {msgs}"
    if err is not None:
        assert err.sqlstate == "08P01", err
        assert err.severity == "FATAL", err
    return err


# ---- the first packet -------------------------------------------------------------------------

@pytest.mark.parametrize("garbage", [
    b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 32,  # a TLS ClientHello
    b"\xff" * 64,
], ids=["http", "tls-hello", "ff"])
def test_garbage_first_packet(pgtide, garbage):
    p = pgtide.start()
    with p.raw() as c:
        c.send(garbage)
        # the bytes after the bogus length may still be unread when pgtide closes, so the
        # ErrorResponse can be lost to a reset: required only if it arrives
        assert_08p01_then_close(c, strict=False)
    with p.raw() as c:  # just the bogus length word, nothing unread: the error must arrive
        c.send(garbage[:4])
        assert_08p01_then_close(c)
    healthy(p)


def test_startup_packet_too_long(pgtide):
    p = pgtide.start()
    with p.raw() as c:
        c.send(struct.pack("!II", 10001, h.PROTO_3_0) + b"user\0app\0")
        assert_08p01_then_close(c)
    with p.raw() as c:
        pkt = h.startup_message({"user": "app", "database": "app", "options": "x" * 12000})
        c.send(pkt)
        assert_08p01_then_close(c, strict=False)
    healthy(p)


def test_long_startup_packet_under_the_limit(pgtide):
    p = pgtide.start()
    path = ",".join(f"s{i:05d}" for i in range(1400))  # ~9,800 bytes
    pkt = h.startup_message({"user": "app", "database": "app", "search_path": path})
    assert 9000 < len(pkt) <= 10000
    with p.raw() as c:
        res = c.login("app", "app", "app", {"search_path": path})
        assert res.ok, res
        assert c.query("show search_path").results[0][1] == [(path,)]


@pytest.mark.parametrize("length", [0, 4, 7])
def test_startup_length_too_small(pgtide, length):
    p = pgtide.start()
    with p.raw() as c:
        c.send(struct.pack("!I", length))
        assert_08p01_then_close(c)
    healthy(p)


def test_startup_without_terminator(pgtide):
    p = pgtide.start()
    with p.raw() as c:
        body = struct.pack("!I", h.PROTO_3_0) + b"user\0app"  # no NULs at the end
        c.send(struct.pack("!I", len(body) + 4) + body)
        assert_08p01_then_close(c)
    healthy(p)


def test_startup_without_user(pgtide):
    p = pgtide.start()
    with p.raw() as c:
        c.send(h.startup_message({"database": "app"}))
        err, closed, msgs = c.expect_error_then_close()
        assert closed and err is not None, msgs
        assert err.sqlstate in ("28000", "08P01"), err
    healthy(p)


@pytest.mark.parametrize("major,minor", [(4, 0), (7, 1), (9, 0)])
def test_unsupported_protocol_version(pgtide, major, minor):
    p = pgtide.start()
    with p.raw() as c:
        c.send(h.startup_message({"user": "app", "database": "app"}, (major << 16) | minor))
        err, closed, msgs = c.expect_error_then_close()
        assert closed and err is not None, msgs
        assert err.sqlstate == "0A000", err
        assert "unsupported frontend protocol" in err.message, err
    healthy(p)


def test_protocol_2_refused(pgtide):
    p = pgtide.start()
    with p.raw() as c:
        c.send(h.startup_message({"user": "app", "database": "app"}, 2 << 16))
        err = h.read_protocol_error(c)  # 3.0 ErrorResponse 0A000, or PostgreSQL's 2.0 form
        assert err.sqlstate in ("0A000", None), err
        assert "unsupported frontend protocol" in err.message, err
    healthy(p)


def test_cancel_request_with_bad_length(pgtide):
    p = pgtide.start()
    with p.raw() as c:
        c.send(struct.pack("!III", 12, h.CANCEL_REQUEST_CODE, 1234))
        err, closed, msgs = c.expect_error_then_close()
        assert closed, msgs
        assert err is None or err.sqlstate == "08P01", err
    healthy(p)


def test_wrong_message_during_authentication(pgtide):
    p = pgtide.start()
    with p.raw() as c:
        c.send(h.startup_message({"user": "app", "database": "app"}))
        t, body = c.recv_msg()
        assert t == "R" and struct.unpack("!I", body[:4])[0] == 10  # AuthenticationSASL
        c.send(h.query_message("select 1"))
        assert_08p01_then_close(c)
    healthy(p)


# ---- after login ------------------------------------------------------------------------------

@pytest.mark.parametrize("linked", [False, True], ids=["no-server", "server-linked"])
def test_message_over_max_packet_size(pgtide, linked):
    p = pgtide.start({"max_packet_size": 16384, "default_pool_size": 1})
    c = logged_in(p, linked)
    with c:
        ok = c.query("select length('" + "x" * 8000 + "')")  # under the limit: fine
        assert ok.results[0][1] == [("8000",)]
        c.send(b"Q" + struct.pack("!I", 1 << 20))
        assert_08p01_then_close(c)
    healthy(p)


@pytest.mark.parametrize("linked", [False, True], ids=["no-server", "server-linked"])
@pytest.mark.parametrize("length", [0, 3])
def test_message_length_below_4(pgtide, linked, length):
    p = pgtide.start({"default_pool_size": 1})
    with logged_in(p, linked) as c:
        c.send(b"Q" + struct.pack("!I", length))
        assert_08p01_then_close(c)
    healthy(p)


@pytest.mark.parametrize("linked", [False, True], ids=["no-server", "server-linked"])
def test_unknown_message_type(pgtide, linked):
    p = pgtide.start({"default_pool_size": 1})
    with logged_in(p, linked) as c:
        c.send(b"\x01" + struct.pack("!I", 4))
        assert_08p01_then_close(c)
    healthy(p)


@pytest.mark.parametrize("linked", [False, True], ids=["no-server", "server-linked"])
def test_truncated_message_then_disconnect(pgtide, pg, linked):
    p = pgtide.start({"default_pool_size": 1})
    c = logged_in(p, linked)
    c.send(b"Q" + struct.pack("!I", 100) + b"select 'trunc")
    time.sleep(0.2)
    c.close()
    healthy(p)
    with p.connect() as c2:  # the single server, if reused, is not stuck mid-message
        assert c2.execute("select 'after'").fetchone() == ("after",)
        assert c2.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_client_leaves_before_reading_big_result(pgtide, pg):
    default_work_mem = pg.admin_value("show work_mem")
    p = pgtide.start({"default_pool_size": 1})
    c = logged_in(p, True)
    c.query("set work_mem = '77MB'; create temp table dirty (x int)")
    c.send(h.query_message("select repeat('x', 1000) from generate_series(1, 200000)"))
    c.abort()
    t0 = time.monotonic()
    with p.connect() as c2:
        c2.execute("select 1")
        assert time.monotonic() - t0 < 10
        assert c2.execute("show work_mem").fetchone() == (default_work_mem,)
        assert c2.execute("select count(*) from pg_class where relname = 'dirty' "
                         "and relnamespace = pg_my_temp_schema()").fetchone() \
            == (0,)
        assert c2.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert p.alive()
    # the server is either reused (after the reset) or replaced, never leaked
    h.wait_for(lambda: pg.count_backends(user="app", db="app") <= 1, 5,
               what="at most one server for pool size 1")


def test_client_leaves_during_slow_query(pgtide, pg):
    p = pgtide.start({"default_pool_size": 1})
    c = logged_in(p, True)
    c.send(h.query_message("select pg_sleep(1)"))
    time.sleep(0.1)
    c.close()
    t0 = time.monotonic()
    with p.connect() as c2:
        assert c2.execute("select 'next'").fetchone() == ("next",)
        assert time.monotonic() - t0 < 5
        assert c2.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


# ---- silence and floods -----------------------------------------------------------------------

def test_client_login_timeout(pgtide):
    p = pgtide.start({"client_login_timeout": 1})
    good = p.connect()  # logged in before: login timeout does not apply
    silent = p.raw(timeout=10)
    half = p.raw(timeout=10)
    half.send(h.startup_message({"user": "app", "database": "app"})[:9])
    stalled = p.raw(timeout=10)
    stalled.send(h.startup_message({"user": "app", "database": "app"}))
    t, body = stalled.recv_msg()
    assert t == "R"  # asked for a password, never answered
    t0 = time.monotonic()
    for name, c in (("silent", silent), ("half startup", half), ("stalled auth", stalled)):
        msgs, closed = c.read_until_closed(max(0.1, t0 + 6 - time.monotonic()))
        assert closed, f"{name} client still connected after client_login_timeout=1"
        for err in c.errors_in(msgs):
            assert err.sqlstate in ("08P01", "57P05", "08006"), err
        c.close()
    assert time.monotonic() - t0 < 6
    assert good.execute("select 1").fetchone() == (1,)
    good.close()
    healthy(p)


@pytest.mark.deadline(120)
def test_thousand_abrupt_connections(pgtide, pg):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(soft, 8192), hard) if hard != resource.RLIM_INFINITY else max(soft, 8192)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    p = pgtide.start({"max_client_conn": 3000, "default_pool_size": 10, "auth_type": "md5",
                      "client_login_timeout": 30})
    healthy(p)
    baseline = p.fd_count()
    t_end = time.monotonic() + 60
    kinds = ["connect", "partial-startup", "login", "login-query"]
    done = {k: 0 for k in kinds}
    for batch in range(10):
        socks = []
        for i in range(100):
            kind = kinds[(batch * 100 + i) % 4]
            try:
                c = h.RawConn(p.host, p.port, timeout=10)
            except OSError as e:
                pytest.fail(f"connect #{batch * 100 + i} failed: {e}\n{p.diagnostics()}")
            socks.append((kind, c))
        for kind, c in socks:
            if kind == "partial-startup":
                c.send(h.startup_message({"user": "app", "database": "app"})[:11])
            elif kind in ("login", "login-query"):
                res = c.login("md5user" if done[kind] % 2 else "app",
                              "md5pw" if done[kind] % 2 else "app", "app")
                assert res.ok, res
                if kind == "login-query":
                    c.send(h.query_message("select repeat('z', 100000), pg_sleep(0.01)"))
        for kind, c in socks:
            c.abort()
            done[kind] += 1
        assert time.monotonic() < t_end, f"too slow: {done}"
    assert sum(done.values()) == 1000
    healthy(p)
    h.wait_for(lambda: p.fd_count() <= baseline + 25, 15,
               what=f"pgtide's open files to return near {baseline}")
    assert pg.count_backends(db="app") <= 20
    # and it still takes many concurrent clients
    conns = [p.connect() for _ in range(20)]
    for c in conns:
        assert c.execute("select 1").fetchone() == (1,)
        c.close()


def test_half_closed_client(pgtide):
    p = pgtide.start()
    c = logged_in(p, True)
    c.send(h.query_message("select 'bye'"))
    c.sock.shutdown(socket.SHUT_WR)
    msgs, closed = c.read_until_closed(5)
    assert closed, "a client that shut down its side was never closed"
    c.close()
    healthy(p)


@pytest.mark.parametrize("sql", ["select pg_sleep(0.5)", "begin; select pg_sleep(0.5)",
                                 "begin; select 1"], ids=["query", "txn-query", "open-txn"])
def test_terminate_while_busy(pgtide, sql):
    p = pgtide.start({"default_pool_size": 1})
    c = logged_in(p, True)
    c.send(h.query_message(sql) + h.terminate_message())
    time.sleep(0.05)
    c.close()
    t0 = time.monotonic()
    with p.connect() as c2:
        assert c2.execute("select 'next'").fetchone() == ("next",)
        assert c2.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        row = c2.execute("select xact_start = query_start from pg_stat_activity "
                         "where pid = pg_backend_pid()").fetchone()
        assert row == (True,), "the next client landed inside the old transaction"
    assert time.monotonic() - t0 < 5


def test_client_gone_during_copy_in(pgtide, pg):
    p = pgtide.start({"default_pool_size": 1})
    pg.admin_sql("CREATE TABLE IF NOT EXISTS copy_gone (x int)", db="app")
    pg.admin_sql("ALTER TABLE copy_gone OWNER TO app", db="app")
    pg.admin_sql("TRUNCATE copy_gone", db="app")
    try:
        c = logged_in(p, True)
        c.send(h.query_message("COPY copy_gone FROM STDIN"))
        assert c.recv_msg()[0] == "G"
        c.send(h.copy_data_msg(b"1\n2\n3\n"))
        c.abort()
        with p.connect() as c2:
            assert c2.execute("select count(*) from copy_gone").fetchone() == (0,)
            assert c2.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
            assert c2.execute("select 1").fetchone() == (1,)
    finally:
        pg.admin_sql("DROP TABLE IF EXISTS copy_gone", db="app")


def test_client_gone_during_copy_out(pgtide):
    p = pgtide.start({"default_pool_size": 1})
    c = logged_in(p, True)
    c.send(h.query_message("COPY (select repeat('y', 1000) from generate_series(1, 100000)) "
                           "TO STDOUT"))
    assert c.recv_msg()[0] == "H"
    c.abort()
    t0 = time.monotonic()
    with p.connect() as c2:
        assert c2.execute("select 'after copy out'").fetchone() == ("after copy out",)
    assert time.monotonic() - t0 < 10
