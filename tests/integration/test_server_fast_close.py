"""server_fast_close: in session pooling a server marked for closing (RECONNECT, a reload that
changed connection settings, server_lifetime) closes at the end of its client's transaction,
and the client is disconnected; without it the session keeps its server to the end."""

import pgtide_harness as h

def start(pgtide, **kw):
    return pgtide.start({"pool_mode": "session", "admin_users": "app", **kw})


def reconnect(p):
    with h.AdminConsole(p) as adm:
        adm.rows("RECONNECT app")
        rows = [r for r in adm.rows("SHOW SERVERS") if r["database"] == "app"]
        assert rows and all(r["close_needed"] == 1 for r in rows), rows


def backend_pid(c):
    qr = c.query("select pg_backend_pid()")
    assert not qr.errors, qr.errors
    return int(qr.results[-1][1][0][0])


def test_reconnect_without_fast_close_keeps_the_session(pgtide):
    p = start(pgtide)
    with p.raw() as c:
        assert c.login("app", "app", "app").ok
        pid = backend_pid(c)
        assert c.query("begin").status == "T"
        reconnect(p)
        assert c.query("select 1").status == "T"
        qr = c.query("commit")
        assert not qr.errors and qr.status == "I"
        # The session goes on, on the same backend, until the client leaves.
        msgs, closed = c.read_until_closed(timeout=1.5)
        assert msgs == [] and not closed
        assert backend_pid(c) == pid


def test_reconnect_with_fast_close_ends_the_session_after_the_transaction(pgtide, pg):
    p = start(pgtide, server_fast_close=1)
    with p.raw() as c:
        assert c.login("app", "app", "app").ok
        pid = backend_pid(c)
        assert c.query("begin").status == "T"
        reconnect(p)
        # The open transaction is not interrupted ...
        qr = c.query("select 2")
        assert not qr.errors and qr.status == "T" and qr.results[0][1] == [("2",)]
        # ... its end is delivered, then the client is told and disconnected.
        qr = c.query("commit")
        assert not qr.errors and qr.status == "I"
        err, closed, msgs = c.expect_error_then_close(timeout=5)
        assert err is not None and err.sqlstate == "57P01", msgs
        assert "server_fast_close" in err.message
        assert closed
    h.wait_for(lambda: pid not in {b["pid"] for b in pg.backends()}, 10,
               what="the marked backend to exit")
    # A new session gets a new server.
    with p.raw() as c:
        assert c.login("app", "app", "app").ok
        assert backend_pid(c) != pid


def test_fast_close_of_an_idle_session(pgtide):
    p = start(pgtide, server_fast_close=1)
    with p.raw() as c:
        assert c.login("app", "app", "app").ok
        backend_pid(c)
        reconnect(p)  # the client is between transactions already: closed without waiting
        err, closed, msgs = c.expect_error_then_close(timeout=10)
        assert err is not None and err.sqlstate == "57P01", msgs
        assert closed


def test_fast_close_after_server_lifetime(pgtide):
    p = start(pgtide, server_fast_close=1, server_lifetime=1)
    with p.raw() as c:
        assert c.login("app", "app", "app").ok
        assert c.query("begin").status == "T"
        msgs, closed = c.read_until_closed(timeout=2.5)  # the transaction holds it
        assert msgs == [] and not closed
        assert c.query("commit").status == "I"
        err, closed, msgs = c.expect_error_then_close(timeout=10)
        assert err is not None and err.sqlstate == "57P01", msgs
        assert closed
