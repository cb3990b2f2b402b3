"""Cancel requests: pgtide issues its own BackendKeyData and forwards a CancelRequest carrying a
valid key to the server linked to that client, and only to that one."""

import random
import time

import psycopg
import psycopg2
import psycopg2.extensions
import pytest

import pgtide_harness as h


def _wait_active(pg, sql, n=1):
    h.wait_for(lambda: sum(1 for b in pg.backends(user="app")
                           if b["state"] == "active" and b["query"] == sql) >= n,
               5, what=f"{n} backend(s) running {sql!r}")


def test_backend_keys_are_distinct(pgtide):
    p = pgtide.start()
    keys = set()
    for _ in range(5):
        with p.raw() as c:
            res = c.login("app", "app", "app")
            assert res.ok and res.backend_key is not None, res
            keys.add(res.backend_key)
    assert len(keys) == 5


def test_cancel_psycopg3(pgtide, pg):
    p = pgtide.start()
    with p.connect() as c:
        sql = "select pg_sleep(10)"
        job = h.Background(c.execute, sql)
        _wait_active(pg, sql)
        t0 = time.monotonic()
        c.cancel()
        exc = job.exception(timeout=5)
        assert isinstance(exc, psycopg.errors.QueryCanceled), exc
        assert exc.sqlstate == "57014"
        assert time.monotonic() - t0 < 2
        assert c.execute("select 1").fetchone() == (1,)


def test_cancel_psycopg2(pgtide, pg):
    p = pgtide.start()
    conn = psycopg2.connect(p.dsn())
    try:
        conn.autocommit = True
        sql = "select pg_sleep(10)"
        job = h.Background(lambda: conn.cursor().execute(sql))
        _wait_active(pg, sql)
        t0 = time.monotonic()
        conn.cancel()
        exc = job.exception(timeout=5)
        assert isinstance(exc, psycopg2.extensions.QueryCanceledError), exc
        assert exc.pgcode == "57014"
        assert time.monotonic() - t0 < 2
        cur = conn.cursor()
        cur.execute("select 1")
        assert cur.fetchone() == (1,)
    finally:
        conn.close()


def _send_cancel(p, pid, key):
    with p.raw() as c:
        c.send(h.cancel_request(pid, key))
        msgs, closed = c.read_until_closed(5)
        assert closed, "pgtide kept a CancelRequest connection open"
        assert msgs == [], f"a CancelRequest got a reply: {msgs}"


def test_cancel_with_wrong_key_cancels_nothing(pgtide, pg):
    p = pgtide.start()
    with p.connect() as c:
        sql = "select pg_sleep(2)"
        job = h.Background(c.execute, sql)
        _wait_active(pg, sql)
        _send_cancel(p, c.info.backend_pid, random.getrandbits(32))  # right pid, wrong key
        _send_cancel(p, random.getrandbits(31), random.getrandbits(32))
        assert job.exception(timeout=10) is None, "a cancel with a wrong key cancelled a query"
        assert job.elapsed() >= 1.9
        assert c.execute("select 1").fetchone() == (1,)


def test_cancel_hits_only_its_target(pgtide, pg):
    p = pgtide.start()
    with p.connect() as a, p.connect() as b:
        sql = "select pg_sleep(3)"
        ja = h.Background(a.execute, sql)
        jb = h.Background(b.execute, sql)
        _wait_active(pg, sql, 2)
        t0 = time.monotonic()
        a.cancel()
        assert isinstance(ja.exception(timeout=5), psycopg.errors.QueryCanceled)
        assert time.monotonic() - t0 < 2
        assert jb.exception(timeout=10) is None, "the other client's query was cancelled"
        assert jb.elapsed() >= 2.9
        assert a.execute("select 1").fetchone() == (1,)
        assert b.execute("select 2").fetchone() == (2,)


def test_cancel_of_idle_session_is_harmless(pgtide):
    p = pgtide.start()
    with p.connect() as c:
        c.execute("select 1")
        c.cancel()
        time.sleep(0.5)  # let a (pointless) forwarded cancel arrive before the next query
        assert c.execute("select pg_sleep(0.3), 7").fetchone()[1] == 7


def test_raw_cancel_with_key_from_login(pgtide, pg):
    p = pgtide.start()
    with p.raw(timeout=10) as c:
        res = c.login("app", "app", "app")
        assert res.ok
        pid, key = res.backend_key
        c.send(h.query_message("select pg_sleep(10)"))
        _wait_active(pg, "select pg_sleep(10)")
        t0 = time.monotonic()
        _send_cancel(p, pid, key)
        qr = c.read_results(timeout=5)
        assert [e.sqlstate for e in qr.errors] == ["57014"], qr.errors
        assert time.monotonic() - t0 < 2
        assert qr.status == "I"
        assert c.query("select 1").results[0][1] == [("1",)]


@pytest.mark.parametrize("pool_size", [1])
def test_cancel_after_session_ends_cannot_hit_next_owner(pgtide, pg, pool_size):
    """A key belongs to a client, not to the server: once that client has gone, its key must not
    cancel the next client's query on the same server."""
    p = pgtide.start({"default_pool_size": pool_size})
    with p.raw() as c:
        res = c.login("app", "app", "app")
        assert res.ok
        old_key = res.backend_key
        c.query("select 1")
    with p.connect() as c:
        sql = "select pg_sleep(2)"
        job = h.Background(c.execute, sql)
        _wait_active(pg, sql)
        _send_cancel(p, *old_key)
        assert job.exception(timeout=10) is None, "a departed client's key cancelled a query"


@pytest.mark.deadline(60)
def test_late_cancel_of_a_vanished_client_never_hits_the_rollback(pgtide, pg):
    """As below, inside a transaction: after the statement's reply pgtide rolls back. A cancel
    still on its way would cancel that ROLLBACK, the reset would fail and the server be closed:
    the ROLLBACK waits for the cancel to land. The one server serves every round."""
    p = pgtide.start({"pool_mode": "transaction", "default_pool_size": 1})
    with p.connect(autocommit=True) as b:
        pid = b.execute("select pg_backend_pid()").fetchone()[0]
        for _ in range(20):
            a = p.raw()
            assert a.login("app", "app", "app").ok
            # a ROLLBACK with work to do (files to remove), so a cancel has time to land on it
            assert a.query("begin; do $$ begin for i in 1..300 loop "
                           "execute format('create temp table t%s ()', i); end loop; end $$"
                           ).status == "T"
            a.send(h.query_message("select 1"))
            a.abort()  # gone inside its transaction, with a query in flight
            assert b.execute("select pg_backend_pid(), 1").fetchone() == (pid, 1)
            assert b.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert "reset query failed" not in p.log()
    assert "cancelling it" in p.log()


def test_late_cancel_of_a_vanished_client_never_hits_the_next_one(pgtide):
    """A client vanishes while its quick statement runs: pgtide cancels it (the backend would
    otherwise work on for nobody) and drains. The statement finishes before the cancel lands;
    the server must not go to the next client until the cancel has reached PostgreSQL, or that
    client's statement is cancelled instead (scripts/soak found this)."""
    p = pgtide.start({"pool_mode": "transaction", "default_pool_size": 1, "admin_users": "app"})
    hits = []
    with p.connect(autocommit=True) as b:
        b.prepare_threshold = None
        for _ in range(20):
            a = p.raw()
            assert a.login("app", "app", "app").ok
            a.send(h.query_message("select 1"))
            a.abort()  # gone with its query in flight
            try:
                b.execute("select pg_sleep(0.03)")
            except psycopg.errors.QueryCanceled as e:
                hits.append(str(e))
    assert hits == [], f"{len(hits)} of 20 statements of the next client were cancelled"
    # every cancel has arrived: no server is held back any more (SHOW POOLS)
    with h.AdminConsole(p) as adm:
        def settled():
            row = [r for r in adm.rows("SHOW POOLS") if r["database"] == "app"][0]
            return (row["sv_active_cancel"], row["sv_being_canceled"]) == (0, 0)
        h.wait_for(settled, 5, what="no cancel left on its way")
