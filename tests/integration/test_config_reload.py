"""Signals: SIGHUP reloads the configuration (a bad file keeps the old one), SIGTERM shuts down
at once, SIGINT waits for clients up to shutdown_wait_timeout."""

import signal
import time

import psycopg
import pytest

import pgtide_harness as h


def _pid(c):
    return c.execute("select pg_backend_pid()").fetchone()[0]


def test_reload_changes_pool_size(pgtide):
    p = pgtide.start({"default_pool_size": 1})
    a = p.connect()
    b = p.connect()
    try:
        _pid(a)
        job = h.Background(_pid, b)
        time.sleep(0.8)
        assert not job.done(), "pool size 1 not applied"
        mark = p.log_mark()
        p.rewrite({"default_pool_size": 3})
        p.reload()
        p.wait_log("configuration reloaded", mark=mark)
        with p.connect() as c:  # while a still holds its server
            t0 = time.monotonic()
            assert c.execute("select 1").fetchone() == (1,)
            assert time.monotonic() - t0 < 3
        job.result(timeout=5)
    finally:
        a.close()
        b.close()


def test_reload_adds_database(pgtide, pg):
    p = pgtide.start()
    with p.raw() as c:
        res = c.login("app", "app", "newdb")
        assert res.error is not None and res.error.sqlstate == "3D000", res
    mark = p.log_mark()
    p.rewrite(databases={"newdb": f"host=127.0.0.1 port={pg.port} dbname=other"})
    p.reload()
    p.wait_log("configuration reloaded", mark=mark)
    with p.connect(dbname="newdb") as c:
        assert c.execute("select current_database()").fetchone() == ("other",)


def test_reload_removes_database(pgtide):
    p = pgtide.start()
    with p.connect(dbname="other") as c:
        c.execute("select 1")
    mark = p.log_mark()
    p.rewrite(databases={"other": None})
    p.reload()
    p.wait_log("configuration reloaded", mark=mark)
    with p.raw() as c:
        res = c.login("app", "app", "other")
        assert res.error is not None and res.error.sqlstate == "3D000", res
    with p.connect() as c:
        assert c.execute("select 1").fetchone() == (1,)


def test_reload_user_list(pgtide):
    p = pgtide.start()
    with pytest.raises(psycopg.OperationalError):
        p.connect(password="app2")
    mark = p.log_mark()
    p.rewrite(userlist=[("app", "app2"), ("md5user", "md5pw")],
              databases={"app": f"host=127.0.0.1 port={pgtide.pg.port} dbname=app "
                                f"user=app password=app"})
    p.reload()
    p.wait_log("configuration reloaded", mark=mark)
    with p.connect(password="app2") as c:
        assert c.execute("select current_user").fetchone() == ("app",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        p.connect(password="app")


def test_reload_bad_file_keeps_old_config(pgtide, pg):
    p = pgtide.start({"default_pool_size": 1})
    mark = p.log_mark()
    p.rewrite({"default_pool_size": "bogus"},
              databases={"baddb": f"host=127.0.0.1 port={pg.port} dbname=other"})
    p.reload()
    p.wait_log("reload failed", mark=mark)
    assert p.alive()
    assert "configuration reloaded" not in p.log()[mark[0]:] + p.stderr()[mark[1]:]
    with p.raw() as c:
        res = c.login("app", "app", "baddb")
        assert res.error is not None and res.error.sqlstate == "3D000", \
            f"part of a rejected file was applied: {res}"
    # the old pool size (1) still holds
    a, b = p.connect(), p.connect()
    try:
        _pid(a)
        job = h.Background(_pid, b)
        time.sleep(0.8)
        assert not job.done()
        a.close()
        job.result(timeout=5)
    finally:
        a.close()
        b.close()
    # and a good file afterwards is taken
    mark = p.log_mark()
    p.rewrite({"default_pool_size": 1})
    p.reload()
    p.wait_log("configuration reloaded", mark=mark)
    with p.connect(dbname="baddb") as c:
        assert c.execute("select current_database()").fetchone() == ("other",)


def test_reload_unknown_key_warns(pgtide):
    p = pgtide.start()
    mark = p.log_mark()
    p.rewrite({"frobnicate_level": "11"})
    p.reload()
    p.wait_log("configuration reloaded", mark=mark)
    p.wait_log(r"WARNING .*frobnicate_level", mark=mark)


def test_sigterm_immediate_shutdown(pgtide):
    p = pgtide.start()
    idle = p.raw()
    assert idle.login("app", "app", "app").ok
    linked = p.raw(timeout=10)
    assert linked.login("app", "app", "app").ok
    assert linked.query("select 1").status == "I"
    busy = p.raw(timeout=10)
    assert busy.login("app", "app", "app").ok
    busy.send(h.query_message("select pg_sleep(10)"))
    psy = p.connect()
    psy.execute("select 1")
    time.sleep(0.3)
    t0 = time.monotonic()
    p.signal(signal.SIGTERM)
    for name, c in (("idle", idle), ("linked", linked), ("busy", busy)):
        msgs, closed = c.read_until_closed(5)
        assert closed, f"{name} client not disconnected at SIGTERM"
        errs = c.errors_in(msgs)
        assert errs and errs[-1].sqlstate == "57P01", f"{name}: {msgs}"
        assert errs[-1].severity == "FATAL"
        c.close()
    assert p.wait_exit(5) == 0
    assert time.monotonic() - t0 < 5
    with pytest.raises(psycopg.OperationalError):
        psy.execute("select 1")
    psy.close()


def test_sigint_waits_for_clients(pgtide):
    p = pgtide.start({"shutdown_wait_timeout": 20})
    a = p.connect()
    _pid(a)
    p.signal(signal.SIGINT)

    def refused():
        try:
            with p.connect() as c:
                c.execute("select 1")
            return False
        except psycopg.OperationalError:
            return True
    h.wait_for(refused, 3, interval=0.1, what="new connections to be refused after SIGINT")
    assert p.alive()
    for i in range(5):  # the connected client goes on working
        assert a.execute("select %s::int", (i,)).fetchone() == (i,)
    assert p.alive()
    t0 = time.monotonic()
    a.close()
    assert p.wait_exit(5) == 0
    assert time.monotonic() - t0 < 5


def test_sigint_gives_up_after_shutdown_wait_timeout(pgtide):
    p = pgtide.start({"shutdown_wait_timeout": 2})
    a = p.connect()
    _pid(a)
    t0 = time.monotonic()
    p.signal(signal.SIGINT)
    assert p.wait_exit(8) == 0
    took = time.monotonic() - t0
    assert 1.5 <= took <= 6, took
    with pytest.raises(psycopg.OperationalError):
        a.execute("select 1")
    a.close()


def test_sigterm_with_no_clients(pgtide):
    p = pgtide.start()
    p.signal(signal.SIGTERM)
    assert p.wait_exit(5) == 0
