"""Session pooling (the default pool_mode): a server belongs to one client for its session, is
reset with server_reset_query when the client leaves, and pools respect their limits and
timeouts."""

import time

import psycopg
import pytest

import pgtide_harness as h


def _pid(c):
    return c.execute("select pg_backend_pid()").fetchone()[0]


def test_server_is_reset_between_sessions(pgtide, pg):
    default_work_mem = pg.admin_value("show work_mem")
    p = pgtide.start({"default_pool_size": 1})
    a = p.connect()
    pid = _pid(a)
    a.execute("create temp table tt (x int)")
    a.execute("set work_mem = '77MB'")
    a.execute("prepare ps as select 1")
    a.execute("listen some_channel")
    a.execute("select set_config('myapp.user', 'alice', false)")
    assert a.execute("show work_mem").fetchone() == ("77MB",)
    a.close()
    with p.connect() as b:
        assert _pid(b) == pid, "the single pooled server was not reused"
        assert b.execute("select count(*) from pg_class where relname = 'tt' "
                         "and relnamespace = pg_my_temp_schema()").fetchone() == (0,)
        assert b.execute("show work_mem").fetchone() == (default_work_mem,)
        assert b.execute("select count(*) from pg_prepared_statements").fetchone() == (0,)
        assert b.execute("select count(*) from pg_listening_channels()").fetchone() == (0,)
        assert b.execute("select current_setting('myapp.user', true)").fetchone() in \
            [(None,), ("",)]


def test_pool_size_bounds_backends(pgtide, pg):
    p = pgtide.start({"default_pool_size": 2})
    with h.BackendSampler(pg, user="app", db="app") as sampler:
        a, b, c = p.connect(), p.connect(), p.connect()
        pids = {_pid(a), _pid(b)}
        assert len(pids) == 2
        job = h.Background(_pid, c)
        time.sleep(1.0)  # a window in which the third session must wait
        assert not job.done(), "a third server was linked with default_pool_size=2"
        assert pg.count_backends(user="app", db="app") == 2
        a.close()
        assert job.result(timeout=10) in pids
        b.close()
        c.close()
    assert sampler.samples > 5
    assert sampler.max <= 2, f"PostgreSQL saw {sampler.max} backends for app/app"


def test_separate_pools_per_database(pgtide):
    p = pgtide.start({"default_pool_size": 1})
    with p.connect() as a, p.connect(dbname="other") as b:
        assert a.execute("select current_database()").fetchone() == ("app",)
        assert b.execute("select current_database()").fetchone() == ("other",)


def test_per_database_pool_size(pgtide, pg):
    p = pgtide.start({"default_pool_size": 5},
                     databases={"app": f"host=127.0.0.1 port={pg.port} dbname=app pool_size=1"})
    a, b = p.connect(), p.connect()
    try:
        _pid(a)
        job = h.Background(_pid, b)
        time.sleep(1.0)
        assert not job.done(), "pool_size=1 on the database entry was not applied"
        a.close()
        job.result(timeout=10)
    finally:
        a.close()
        b.close()


def test_max_client_conn(pgtide):
    p = pgtide.start({"max_client_conn": 3})
    conns = [p.connect() for _ in range(3)]
    try:
        for c in conns:
            _pid(c)
        with p.raw() as extra:
            res = extra.login("app", "app", "app")
            assert res.error is not None, f"a 4th client was admitted: {res}"
            assert res.error.sqlstate == "53300", res.error
            _, closed = extra.read_until_closed(5)
            assert closed
        with pytest.raises(psycopg.OperationalError):
            p.connect()
        for c in conns:
            assert c.execute("select 1").fetchone() == (1,)
        conns.pop().close()

        def can_connect():
            try:
                with p.connect() as c:
                    return c.execute("select 1").fetchone() == (1,)
            except psycopg.OperationalError:
                return False
        h.wait_for(can_connect, 5, interval=0.1, what="a free client slot")
    finally:
        for c in conns:
            c.close()


def test_max_db_connections_across_users(pgtide, pg):
    p = pgtide.start({"default_pool_size": 5, "max_db_connections": 2})
    with h.BackendSampler(pg, db="app") as sampler:
        a = p.connect()
        b = p.connect(user="md5user", password="md5pw")
        c = p.connect()
        try:
            _pid(a)
            _pid(b)
            job = h.Background(_pid, c)
            time.sleep(1.0)
            assert not job.done(), "a third server was opened despite max_db_connections=2"
            b.close()
            job.result(timeout=10)
        finally:
            a.close()
            b.close()
            c.close()
    assert sampler.max <= 2, f"PostgreSQL saw {sampler.max} backends for database app"


def test_server_idle_timeout(pgtide, pg):
    p = pgtide.start({"server_idle_timeout": 1})
    with p.connect() as c:
        _pid(c)
        assert pg.count_backends(user="app", db="app") == 1
    h.wait_for(lambda: pg.count_backends(user="app", db="app") == 0, 8,
               what="idle servers to be closed after server_idle_timeout=1")
    with p.connect() as c:  # and a new one is opened on demand
        assert c.execute("select 1").fetchone() == (1,)


def test_server_kept_without_idle_timeout(pgtide, pg):
    p = pgtide.start()
    with p.connect() as c:
        pid = _pid(c)
    h.wait_for(lambda: any(b["pid"] == pid and b["state"] == "idle"
                           for b in pg.backends(user="app", db="app")), 5)
    time.sleep(1.5)
    assert pid in [b["pid"] for b in pg.backends(user="app", db="app")]


def test_server_lifetime(pgtide, pg):
    p = pgtide.start({"default_pool_size": 1, "server_lifetime": 1})
    with p.connect() as c:
        pid1 = _pid(c)
        time.sleep(1.6)  # a session outliving server_lifetime keeps its server
        assert _pid(c) == pid1

    def new_pid():
        with p.connect() as c:
            return _pid(c) != pid1
    h.wait_for(new_pid, 8, interval=0.3, what="a new server after server_lifetime")
    h.wait_for(lambda: pid1 not in [b["pid"] for b in pg.backends()], 8,
               what="the expired server to be closed")


def test_database_server_lifetime(pgtide, pg):
    """A [databases] server_lifetime overrides the global one for that database only (0: no
    lifetime there); a reload changes it, and SHOW DATABASES follows."""
    p = pgtide.start({"default_pool_size": 1, "server_lifetime": 1, "admin_users": "app"},
                     databases={"app": f"host=127.0.0.1 port={pg.port} dbname=app "
                                       f"server_lifetime=0"})
    with p.connect() as a, p.connect(dbname="other") as o:
        app_pid, other_pid = _pid(a), _pid(o)
    h.wait_for(lambda: other_pid not in [b["pid"] for b in pg.backends()], 8,
               what="other's server closed by the global server_lifetime=1")
    time.sleep(1.0)  # app's server, idle for 2 s and more now, must still be there
    assert app_pid in [b["pid"] for b in pg.backends(db="app")], "app's lifetime 0 ignored"
    with p.connect() as a:
        assert _pid(a) == app_pid
    with h.AdminConsole(p) as adm:
        lifetimes = {r["name"]: r["server_lifetime"] for r in adm.rows("SHOW DATABASES")}
        assert lifetimes == {"app": 0, "other": 1}

    mark = p.log_mark()
    p.rewrite({"server_lifetime": 3600},
              databases={"app": f"host=127.0.0.1 port={pg.port} dbname=app server_lifetime=1"})
    p.reload()
    p.wait_log("configuration reloaded", mark=mark)
    h.wait_for(lambda: app_pid not in [b["pid"] for b in pg.backends()], 8,
               what="app's server closed by its server_lifetime=1 after the reload")
    with p.connect(dbname="other") as o:
        other_pid = _pid(o)
    time.sleep(2.0)
    assert other_pid in [b["pid"] for b in pg.backends(db="other")], "global 3600 ignored"
    with h.AdminConsole(p) as adm:
        lifetimes = {r["name"]: r["server_lifetime"] for r in adm.rows("SHOW DATABASES")}
        assert lifetimes == {"app": 1, "other": 3600}


def test_waiting_client_that_leaves(pgtide):
    p = pgtide.start({"default_pool_size": 1})
    a = p.connect()
    pid = _pid(a)
    waiter = p.raw()
    assert waiter.login("app", "app", "app").ok
    waiter.send(h.query_message("select 'waiter'"))
    time.sleep(0.3)
    waiter.abort()  # gone while queued for a server
    a.close()
    with p.connect() as c:
        assert _pid(c) == pid
        assert c.execute("select 1").fetchone() == (1,)


def test_client_gone_mid_transaction_does_not_leak(pgtide, pg):
    p = pgtide.start({"default_pool_size": 1})
    raw = p.raw()
    assert raw.login("app", "app", "app").ok
    qr = raw.query("begin; create temp table leak (x int); set local work_mem = '99MB'; "
                   "select 1")
    assert qr.status == "T"
    raw.abort()
    with p.connect() as c:
        assert c.execute("select count(*) from pg_class where relname = 'leak' "
                         "and relnamespace = pg_my_temp_schema()").fetchone() \
            == (0,)
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert c.execute("show work_mem").fetchone() == (pg.admin_value("show work_mem"),)
        row = c.execute("select xact_start = query_start from pg_stat_activity "
                        "where pid = pg_backend_pid()").fetchone()
        assert row == (True,), "the server was still inside the old transaction"


def _show_all(c):
    keys = ("application_name", "search_path", "TimeZone", "DateStyle", "client_encoding",
            "statement_timeout", "work_mem", "IntervalStyle")
    return {k: c.execute(f'show "{k}"').fetchone()[0] for k in keys}, \
        {k: c.info.parameter_status(k) for k in ("application_name", "TimeZone", "DateStyle",
                                                  "client_encoding", "IntervalStyle")}


def test_startup_parameters_do_not_leak_to_next_session(pgtide, pg):
    p = pgtide.start({"default_pool_size": 1})
    first = dict(application_name="first", client_encoding="LATIN1",
                 options="-c search_path=s1 -c TimeZone=Asia/Tokyo -c DateStyle=German "
                         "-c statement_timeout=5s -c work_mem=5MB -c IntervalStyle=iso_8601")
    with p.connect(**first) as a:
        pid = _pid(a)
        a.execute("set work_mem = '6MB'")
    with psycopg.connect(pg.dsn(), autocommit=True) as direct:
        expected = _show_all(direct)
    with p.connect() as b:
        assert _pid(b) == pid
        assert _show_all(b) == expected
    with psycopg.connect(pg.dsn(application_name="second", options="-c TimeZone=UTC"),
                         autocommit=True) as direct:
        expected = _show_all(direct)
    with p.connect(application_name="second", options="-c TimeZone=UTC") as b:
        assert _pid(b) == pid
        assert _show_all(b) == expected


@pytest.mark.deadline(60)
def test_many_clients_queue_for_few_servers(pgtide, pg):
    p = pgtide.start({"default_pool_size": 4, "max_client_conn": 200})

    def session(n):
        with p.connect(application_name=f"q{n}") as c:
            for i in range(3):
                assert c.execute("select %s::int, pg_sleep(0.02)", (n * 10 + i,)).fetchone()[0] \
                    == n * 10 + i
        return n
    with h.BackendSampler(pg, user="app", db="app") as sampler:
        jobs = [h.Background(session, n) for n in range(40)]
        assert sorted(j.result(timeout=40) for j in jobs) == list(range(40))
    assert sampler.max <= 4, f"PostgreSQL saw {sampler.max} backends with default_pool_size=4"
