"""Client-facing timeouts (in transaction pooling): query_timeout cancels, the idle-in-transaction,
transaction and client-idle timeouts close the client (rolling back its transaction and giving
the server back), query_wait_timeout fails a queued query, query_wait_notify tells a queued
client it waits, and the reserve pool steps in after reserve_pool_timeout."""

import select
import time

import psycopg
import pytest

import pgtide_harness as h

TX = {"pool_mode": "transaction"}


def connect(p, **kw):
    c = p.connect(**kw)
    c.prepare_threshold = None
    return c


def _pid(c):
    return c.execute("select pg_backend_pid()").fetchone()[0]


def _login(p):
    r = p.raw(timeout=10)
    res = r.login("app", "app", "app")
    assert res.ok, res
    return r


def _readable(raw):
    if raw.buf:
        return True
    ready, _, _ = select.select([raw.sock], [], [], 0)
    return bool(ready)


def _closed_with(raw, timeout):
    """Reads until EOF (waiting at most timeout); returns (first error or None, closed, time)."""
    err, closed, _ = raw.expect_error_then_close(timeout)
    return err, closed, time.monotonic()


def _one_query(p, sql):
    with connect(p) as c:
        return c.execute(sql).fetchone()


def _no_open_transactions(pg):
    return not [b for b in pg.backends(user="app") if (b["state"] or "").startswith("idle in")]


def test_query_timeout(pgtide):
    p = pgtide.start({**TX, "query_timeout": 1})
    with connect(p) as c:
        t0 = time.monotonic()
        with pytest.raises(psycopg.Error) as ei:
            h.Background(c.execute, "select pg_sleep(5)").result(timeout=8)
        took = time.monotonic() - t0
        assert ei.value.sqlstate == "57014", ei.value
        assert 0.9 <= took <= 2.5, f"query_timeout=1 fired after {took:.2f}s"
        assert c.execute("select 1").fetchone() == (1,)
        assert c.execute("select 2 from pg_sleep(0.3)").fetchone() == (2,)
        # inside a transaction: the cancel aborts it, the client keeps its server
        c.execute("begin")
        t0 = time.monotonic()
        with pytest.raises(psycopg.Error) as ei:
            h.Background(c.execute, "select pg_sleep(5)").result(timeout=8)
        assert ei.value.sqlstate == "57014", ei.value
        assert time.monotonic() - t0 <= 2.5
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        c.execute("rollback")
        assert c.execute("select 3").fetchone() == (3,)


@pytest.mark.parametrize("last, status", [("select 1", "T"), ("select 1/0", "E")])
def test_idle_transaction_timeout(pgtide, pg, table, last, status):
    t = table()
    p = pgtide.start({**TX, "idle_transaction_timeout": 1, "default_pool_size": 1})
    bystander = connect(p)
    a = _login(p)
    try:
        qr = a.query(f"begin; insert into {t} values ('idle'); {last}")
        assert qr.status == status
        t0 = time.monotonic()
        waiter = h.Background(_one_query, p, "select 'waited'")
        err, closed, t1 = _closed_with(a, 4)
        assert closed, "the idle-in-transaction client was not closed within 4s"
        assert 0.9 <= t1 - t0 <= 2.5, f"closed after {t1 - t0:.2f}s"
        if err is not None:
            assert err.sqlstate == "25P03", err
            assert "idle-in-transaction timeout" in err.message, err
        assert waiter.result(timeout=5) == ("waited",)
        assert pg.admin_value(f"select count(*) from {t}", db="app") == 0
        assert bystander.execute("select 'still here'").fetchone() == ("still here",)
        with connect(p) as c:
            assert c.execute("select txid_current_if_assigned()").fetchone() == (None,)
            assert c.execute(f"select count(*) from {t}").fetchone() == (0,)
        h.wait_for(lambda: _no_open_transactions(pg), 5, what="no server left in a transaction")
    finally:
        a.close()
        bystander.close()


def test_idle_transaction_timeout_spares_busy_transactions(pgtide):
    p = pgtide.start({**TX, "idle_transaction_timeout": 1})
    with connect(p) as c:
        c.execute("begin")
        assert c.execute("select 1 from pg_sleep(1.8)").fetchone() == (1,)
        c.execute("commit")


def test_transaction_timeout(pgtide, pg, table):
    t = table()
    p = pgtide.start({**TX, "transaction_timeout": 1, "default_pool_size": 1})
    a = _login(p)
    try:
        t0 = time.monotonic()
        qr = a.query(f"begin; insert into {t} values ('long')")
        assert qr.status == "T" and not qr.errors
        err, closed, ok_queries = None, False, 0
        while time.monotonic() - t0 < 3.5 and not closed:
            time.sleep(0.3)
            if _readable(a):
                err, closed, _ = _closed_with(a, 2)
                break
            try:
                qr = a.query("select 1")
            except OSError:
                closed = True
                break
            if qr.errors or qr.closed:
                err = qr.errors[0] if qr.errors else None
                closed = qr.closed or a.read_until_closed(2)[1]
                break
            ok_queries += 1
        took = time.monotonic() - t0
        assert closed, f"not closed after {took:.2f}s of a busy transaction"
        assert took <= 2.5, f"transaction_timeout=1 closed the client after {took:.2f}s"
        assert ok_queries >= 1, "queries in the first second of the transaction failed"
        if err is not None:
            assert err.sqlstate == "25P04", err
        assert pg.admin_value(f"select count(*) from {t}", db="app") == 0
        with connect(p) as c:
            assert c.execute("select txid_current_if_assigned()").fetchone() == (None,)
    finally:
        a.close()


def test_client_idle_timeout(pgtide):
    p = pgtide.start({**TX, "client_idle_timeout": 1})
    idle = _login(p)
    assert idle.query("select 1").status == "I"
    t0 = time.monotonic()
    try:
        with connect(p) as busy, connect(p) as sleeper:
            long_query = h.Background(
                lambda: sleeper.execute("select 'slept' from pg_sleep(2.2)").fetchone())
            while time.monotonic() - t0 < 3.0:
                assert busy.execute("select 1").fetchone() == (1,)
                time.sleep(0.3)
            err, closed, t1 = _closed_with(idle, 1)
            assert closed, "an idle client outlived client_idle_timeout=1 by 2s"
            assert long_query.result(timeout=5) == ("slept",)
            if err is not None:
                assert err.sqlstate == "57P05", err
            assert busy.execute("select 2").fetchone() == (2,)
    finally:
        idle.close()


def test_client_idle_timeout_timing(pgtide):
    p = pgtide.start({**TX, "client_idle_timeout": 1})
    idle = _login(p)
    try:
        t0 = time.monotonic()
        err, closed, t1 = _closed_with(idle, 4)
        assert closed and 0.9 <= t1 - t0 <= 3.0, f"closed={closed} after {t1 - t0:.2f}s"
        if err is not None:
            assert err.sqlstate == "57P05", err
    finally:
        idle.close()


def _hold_in_transaction(p):
    holder = connect(p)
    holder.execute("begin")
    pid = _pid(holder)
    return holder, pid


def test_query_wait_timeout(pgtide):
    p = pgtide.start({**TX, "default_pool_size": 1, "query_wait_timeout": 1})
    holder, _ = _hold_in_transaction(p)
    try:
        # a raw client: libpq may report an error that comes just before EOF without its
        # SQLSTATE ("consuming input failed")
        with _login(p) as waiter:
            t0 = time.monotonic()
            qr = waiter.query("select 'never'", timeout=6)
            took = time.monotonic() - t0
            assert qr.errors, f"the queued query did not fail: {qr.messages}"
            assert qr.errors[0].sqlstate == "53300", qr.errors[0]
            assert 0.9 <= took <= 2.5, f"failed after {took:.2f}s"
            assert not [r for r in qr.results if r[1]], "the query ran after all"
        assert holder.execute("select 1").fetchone() == (1,)
        holder.execute("commit")
        assert holder.execute("select 2").fetchone() == (2,)
    finally:
        holder.close()


def test_query_wait_notify(pgtide):
    p = pgtide.start({**TX, "default_pool_size": 1, "query_wait_notify": 0.5})
    holder, pid = _hold_in_transaction(p)
    notices = []
    try:
        with connect(p) as waiter:
            waiter.add_notice_handler(
                lambda d: notices.append((time.monotonic(), d.message_primary or "")))
            job = h.Background(lambda: _pid(waiter))
            time.sleep(1.5)
            assert not job.done()
            holder.execute("commit")
            assert job.result(timeout=5) == pid
            assert notices, "no NOTICE while the query waited for a server"
            at, text = notices[0]
            assert "waiting for a server connection" in text, notices
            assert 0.3 <= at - job.started_at <= 1.3, f"NOTICE after {at - job.started_at:.2f}s"
            assert at < job.finished_at
    finally:
        holder.close()


def test_reserve_pool(pgtide, pg):
    p = pgtide.start({**TX, "default_pool_size": 1, "reserve_pool_size": 1,
                      "reserve_pool_timeout": 0.5})
    holder, pid = _hold_in_transaction(p)
    try:
        with connect(p) as second:
            job = h.Background(_pid, second)
            reserve_pid = job.result(timeout=2.5)
            assert reserve_pid != pid
            assert 0.4 <= job.elapsed() <= 2.0, f"reserve server after {job.elapsed():.2f}s"
            assert pg.count_backends(user="app", db="app") == 2
        holder.execute("commit")
    finally:
        holder.close()


# ---- per-user and per-database overrides ([users], [databases]) -------------------------------
# A [users] value wins over the [databases] one, which wins over the global setting; 0 in an
# override turns the timeout off for that user or database. Each test shows an override taking
# effect for its user and not for another, and where it makes sense the other direction too.

MD5 = {"user": "md5user", "password": "md5pw"}


def _login_as(p, user, password, db="app"):
    r = p.raw(timeout=10)
    res = r.login(user, password, db)
    assert res.ok, res
    return r


def _sleep_outcome(p, seconds, **who):
    """Runs pg_sleep(seconds) as who: ('ok', took) or (sqlstate, took)."""
    with connect(p, **who) as c:
        t0 = time.monotonic()
        try:
            c.execute(f"select pg_sleep({seconds})")
            return "ok", time.monotonic() - t0
        except psycopg.Error as e:
            return e.sqlstate, time.monotonic() - t0


def test_user_query_timeout(pgtide):
    """[users] query_timeout cancels that user's queries only; after a reload the global one
    applies to the others while the user's 0 turns it off for that user."""
    p = pgtide.start({**TX}, users={"md5user": "query_timeout=1"})
    state, took = _sleep_outcome(p, 5, **MD5)
    assert state == "57014", (state, took)
    assert 0.9 <= took <= 2.5, f"the user's query_timeout=1 fired after {took:.2f}s"
    assert _sleep_outcome(p, 1.8)[0] == "ok", "app has no query_timeout"

    mark = p.log_mark()
    p.rewrite({"query_timeout": 1}, users={"md5user": "query_timeout=0"})
    p.reload()
    p.wait_log("configuration reloaded", mark=mark)
    state, took = _sleep_outcome(p, 5)
    assert state == "57014" and 0.9 <= took <= 2.5, (state, took)
    assert _sleep_outcome(p, 1.8, **MD5)[0] == "ok", "md5user's query_timeout=0 ignored"


def test_user_idle_transaction_timeout(pgtide, pg):
    """[users] idle_transaction_timeout closes that user's idle transaction, not another's."""
    p = pgtide.start({**TX}, users={"app": "idle_transaction_timeout=1"})
    other = connect(p, **MD5)
    a = _login(p)
    try:
        other.execute("begin")
        assert other.execute("select 'open'").fetchone() == ("open",)
        assert a.query("begin; select 1").status == "T"
        t0 = time.monotonic()
        err, closed, t1 = _closed_with(a, 4)
        assert closed, "app's idle transaction outlived its idle_transaction_timeout=1"
        assert 0.9 <= t1 - t0 <= 2.5, f"closed after {t1 - t0:.2f}s"
        if err is not None:
            assert err.sqlstate == "25P03", err
        time.sleep(max(0.0, t0 + 2.0 - time.monotonic()))  # md5user idle in it 2s by now
        assert other.execute("select 'still open'").fetchone() == ("still open",)
        other.execute("commit")
        h.wait_for(lambda: _no_open_transactions(pg), 5, what="app's transaction rolled back")
    finally:
        a.close()
        other.close()


def test_user_transaction_timeout(pgtide, table):
    """A [users] transaction_timeout of 0 spares that user from the global one."""
    t = table()
    p = pgtide.start({**TX, "transaction_timeout": 1}, users={"app": "transaction_timeout=0"})
    m = _login_as(p, "md5user", "md5pw")
    try:
        with connect(p) as c:
            c.execute("begin")
            assert m.query("begin; select 1").status == "T"
            t0 = time.monotonic()
            closer = h.Background(_closed_with, m, 4)
            c.execute(f"insert into {t} values ('kept')")
            while time.monotonic() - t0 < 2.2:  # busy for twice the global timeout
                assert c.execute("select 1 from pg_sleep(0.2)").fetchone() == (1,)
            c.execute("commit")
            assert c.execute(f"select count(*) from {t}").fetchone() == (1,)
        err, closed, t1 = closer.result(timeout=5)
        assert closed, "md5user outlived the global transaction_timeout=1"
        assert 0.9 <= t1 - t0 <= 2.5, f"closed after {t1 - t0:.2f}s"
        if err is not None:
            assert err.sqlstate == "25P04", err
    finally:
        m.close()


def test_user_client_idle_timeout(pgtide, pg):
    """[users] client_idle_timeout closes that user's idle clients, by the name the client
    logged in with, also where the database logs in to PostgreSQL as another user."""
    forced = f"host=127.0.0.1 port={pg.port} dbname=other user=app password=app"
    p = pgtide.start({**TX}, databases={"forced": forced},
                     users={"md5user": "client_idle_timeout=1"})
    mine = _login_as(p, "md5user", "md5pw")
    mine_forced = _login_as(p, "md5user", "md5pw", db="forced")
    theirs = _login_as(p, "app", "app", db="forced")
    try:
        t0 = time.monotonic()
        for r in (mine, mine_forced):
            err, closed, t1 = _closed_with(r, 4)
            assert closed, "an idle md5user client outlived its client_idle_timeout=1"
            assert t1 - t0 <= 3.0, f"closed after {t1 - t0:.2f}s"
            if err is not None:
                assert err.sqlstate == "57P05", err
        time.sleep(max(0.0, t0 + 2.0 - time.monotonic()))
        assert theirs.query("select 1").status == "I", "app (no client_idle_timeout) closed"
    finally:
        for r in (mine, mine_forced, theirs):
            r.close()


def test_user_client_idle_timeout_follows_reload(pgtide):
    """A reload gives clients already logged in their user's new client_idle_timeout."""
    p = pgtide.start({**TX, "client_idle_timeout": 1}, users={"md5user": "client_idle_timeout=0"})
    mine = _login_as(p, "md5user", "md5pw")
    app = _login(p)
    try:
        err, closed, _ = _closed_with(app, 4)
        assert closed, "the global client_idle_timeout=1 did not close app"
        assert mine.query("select 1").status == "I", "md5user's client_idle_timeout=0 ignored"
        mark = p.log_mark()
        p.rewrite({"client_idle_timeout": 0}, users={"md5user": "client_idle_timeout=1"})
        p.reload()
        p.wait_log("configuration reloaded", mark=mark)
        err, closed, _ = _closed_with(mine, 4)
        assert closed, "md5user's client_idle_timeout=1 from the reload did not apply"
        if err is not None:
            assert err.sqlstate == "57P05", err
        with _login(p) as again:
            time.sleep(1.6)
            assert again.query("select 1").status == "I", "client_idle_timeout=0 ignored"
    finally:
        mine.close()
        app.close()


def _gets_reserve_server(p, user, password, db):
    """With the pool's one server held in a transaction, does a second client of the pool get
    a server (the reserve) within 2 s, four times reserve_pool_timeout?"""
    holder = connect(p, user=user, password=password, dbname=db)
    second = connect(p, user=user, password=password, dbname=db)
    try:
        holder.execute("begin")
        pid = _pid(holder)
        job = h.Background(_pid, second)
        try:
            h.wait_for(job.done, 2.0, what="a reserve server")
            served = True
        except AssertionError:
            served = False
        holder.execute("commit")
        other_pid = job.result(timeout=5)
        assert not served or other_pid != pid, "served by the held server"
        return served
    finally:
        holder.close()
        second.close()


def test_user_reserve_pool_size(pgtide, pg):
    """reserve_pool_size: [users] over [databases] (reserve_pool) over the global setting."""
    userlist = [("app", "app"), ("md5user", "md5pw"),
                ("secretuser", h.PG_PASSWORDS["secretuser"])]
    p = pgtide.start({**TX, "default_pool_size": 1, "reserve_pool_timeout": 0.5},
                     databases={"other": f"host=127.0.0.1 port={pg.port} dbname=other "
                                         f"reserve_pool=1"},
                     users={"md5user": "reserve_pool_size=1", "app": "reserve_pool_size=0"},
                     userlist=userlist)
    secret = h.PG_PASSWORDS["secretuser"]
    assert _gets_reserve_server(p, "md5user", "md5pw", "app"), "user's 1 over the global 0"
    assert not _gets_reserve_server(p, "app", "app", "other"), "user's 0 over the database's 1"
    assert _gets_reserve_server(p, "secretuser", secret, "other"), "database's 1 over global 0"
    assert not _gets_reserve_server(p, "secretuser", secret, "app"), "the global 0"
