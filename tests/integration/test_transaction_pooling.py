"""Transaction and statement pooling: a server belongs to a client only while a transaction (or
an unsynced batch) is in flight and goes back to the pool at ReadyForQuery 'I'; parameters
follow the client; a client that vanishes mid-transaction leaves nothing behind; the pool mode
can be set globally, per database and per user."""

import resource
import time

import psycopg
import pytest
from psycopg import pq

import pgtide_harness as h

TX = {"pool_mode": "transaction"}


def connect(p, autocommit=True, **kw):
    """A psycopg 3 connection without automatic server-side prepared statements (they are a
    separate feature: a named statement prepared on one server is unknown to the next)."""
    c = p.connect(autocommit=autocommit, **kw)
    c.prepare_threshold = None
    return c


def _pid(c):
    return c.execute("select pg_backend_pid()").fetchone()[0]


def _bounded(fn, timeout, *args):
    """Runs fn(*args) with a bound: a pooler that wrongly makes it wait fails the test instead
    of hanging it."""
    return h.Background(fn, *args).result(timeout=timeout)


def _lock_waiters(pg):
    return pg.admin_value("select count(*) from pg_stat_activity where datname = 'app' "
                          "and wait_event_type = 'Lock'")


def _server_clean(pg, pid):
    """pid is gone, or idle outside any transaction."""
    rows = [b for b in pg.backends(user="app", db="app") if b["pid"] == pid]
    return not rows or (rows[0]["state"] == "idle" and rows[0]["xact_start"] is None)


# ---- many clients, few servers ---------------------------------------------------------------

@pytest.mark.deadline(60)
def test_200_clients_through_5_servers(pgtide, pg, table):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:  # pgtide inherits it: 200 clients + servers + its own
        resource.setrlimit(resource.RLIMIT_NOFILE,
                           (min(4096, hard) if hard != resource.RLIM_INFINITY else 4096, hard))
    t = table("client int not null, i int not null")
    p = pgtide.start({**TX, "default_pool_size": 5, "max_client_conn": 400})

    def client(n):
        with connect(p, autocommit=False) as c:
            for i in range(5):
                c.execute(f"insert into {t} values (%s, %s)", (n, i))
                seen = c.execute(f"select count(*) from {t} where client = %s",
                                 (n,)).fetchone()[0]
                assert seen == i + 1, f"client {n} saw {seen} of its rows in transaction {i}"
                c.commit()
        return n

    t0 = time.monotonic()
    with h.BackendSampler(pg, user="app", db="app", interval=0.02) as sampler:
        jobs = [h.Background(client, n) for n in range(200)]
        done = sorted(j.result(timeout=45) for j in jobs)
    elapsed = time.monotonic() - t0
    assert done == list(range(200))
    assert pg.admin_value(f"select count(*) from {t}", db="app") == 1000
    assert pg.admin_value(f"select count(distinct (client, i)) from {t}", db="app") == 1000
    assert sampler.samples > 10
    assert 1 <= sampler.max <= 5, f"PostgreSQL saw {sampler.max} backends with pool size 5"
    assert elapsed < 30, f"200 clients x 5 transactions took {elapsed:.1f}s"


# ---- release at ReadyForQuery 'I' --------------------------------------------------------------

def _waits_until_ended(a, b, pid, end_sql, what):
    """b's query waits while a holds the only server in a transaction, and gets that server
    (pid) right after a sends end_sql."""
    job = h.Background(_pid, b)
    time.sleep(1.0)
    assert not job.done(), f"b ran a query on the server of a's {what} transaction"
    t0 = time.monotonic()
    a.execute(end_sql)
    assert job.result(timeout=5) == pid
    assert job.finished_at - t0 < 1.0, f"b was not given the server right after {end_sql}"


def test_server_released_at_ready_for_query_idle(pgtide, pg):
    p = pgtide.start({**TX, "default_pool_size": 1})
    with connect(p) as a, connect(p) as b:
        pid = _pid(a)
        # a is connected but idle between transactions: b does not wait for it
        for _ in range(3):
            assert _bounded(_pid, 3, b) == pid
        assert _bounded(_pid, 3, a) == pid

        # an open transaction keeps the server
        a.execute("begin")
        a.execute("select 1")
        assert a.info.transaction_status == pq.TransactionStatus.INTRANS
        _waits_until_ended(a, b, pid, "commit", "open")

        # so does a failed one, until ROLLBACK
        a.execute("begin")
        with pytest.raises(psycopg.errors.DivisionByZero):
            a.execute("select 1/0")
        assert a.info.transaction_status == pq.TransactionStatus.INERROR
        _waits_until_ended(a, b, pid, "rollback", "aborted")
        assert b.info.transaction_status == pq.TransactionStatus.IDLE
        assert a.execute("select 2").fetchone() == (2,)
    assert pg.count_backends(user="app", db="app") == 1


# ---- pipelines and unsynced extended-protocol batches ------------------------------------------

def test_server_round_robin(pgtide):
    """Which idle server a query gets: by default the most recently used one (LIFO, as
    PgBouncer), so one server does all the work of a lone client; with server_round_robin
    the one idle longest (FIFO), so every server takes its turn."""
    p = pgtide.start({**TX, "default_pool_size": 3, "admin_users": "app"})
    holders = [p.connect() for _ in range(3)]
    try:
        pids = []
        for c in holders:
            c.execute("begin")
            pids.append(c.execute("select pg_backend_pid()").fetchone()[0])
        assert len(set(pids)) == 3, pids
        for c in holders:
            c.execute("commit")  # released in this order: pids[2] is the most recent
    finally:
        for c in holders:
            c.close()
    with p.connect() as c:
        seen = [c.execute("select pg_backend_pid()").fetchone()[0] for _ in range(6)]
        assert seen == [pids[2]] * 6, (pids, seen)
        with h.AdminConsole(p) as a:
            a.rows("SET server_round_robin = 1")
        # the one idle longest first: pids[0], then pids[1], then pids[2] (just used), ...
        seen = [c.execute("select pg_backend_pid()").fetchone()[0] for _ in range(6)]
        assert seen == pids * 2, (pids, seen)
        with h.AdminConsole(p) as a:
            a.rows("SET server_round_robin = 0")
        seen = [c.execute("select pg_backend_pid()").fetchone()[0] for _ in range(3)]
        assert seen == [pids[2]] * 3, (pids, seen)


def test_pipelines_from_two_clients_share_one_server(pgtide, table):
    if not psycopg.Pipeline.is_supported():
        pytest.skip("libpq without pipeline mode")
    t = table("client int not null, i int not null")
    p = pgtide.start({**TX, "default_pool_size": 1})

    def pipelined(n):
        out = []
        with connect(p) as c:
            for r in range(10):
                with c.pipeline():
                    curs = [c.execute("select %s::int, %s::text", (r * 100 + i, f"c{n}"))
                            for i in range(20)]
                    with c.transaction():
                        for i in range(5):
                            c.execute(f"insert into {t} values (%s, %s)", (n, r * 5 + i))
                out.extend(cur.fetchone() for cur in curs)
        return out

    jobs = [h.Background(pipelined, n) for n in (1, 2)]
    for n, job in zip((1, 2), jobs):
        assert job.result(timeout=30) == [(r * 100 + i, f"c{n}") for r in range(10)
                                          for i in range(20)]
    with connect(p) as c:
        assert c.execute(f"select client, count(*), count(distinct i) from {t} "
                         f"group by client order by client").fetchall() == \
            [(1, 50, 50), (2, 50, 50)]


def test_extended_batch_without_sync_keeps_its_server(pgtide):
    p = pgtide.start({**TX, "default_pool_size": 1})
    with p.raw() as a, connect(p) as b:
        assert a.login("app", "app", "app").ok
        a.send(h.parse_msg("select pg_backend_pid()") + h.bind_msg() + h.execute_msg()
               + h.flush_msg())
        got = [a.recv_msg(timeout=5) for _ in range(4)]
        assert [m[0] for m in got] == ["1", "2", "D", "C"], got
        job = h.Background(_pid, b)
        time.sleep(1.0)
        assert not job.done(), "b was given the server of a's unsynced batch"
        a.send(h.sync_msg())
        assert a.recv_msg(timeout=5) == ("Z", b"I")
        t0 = time.monotonic()
        pid_b = job.result(timeout=5)
        assert job.finished_at - t0 < 1.0
        qr = a.query("select pg_backend_pid()")
        assert qr.status == "I" and int(qr.results[0][1][0][0]) == pid_b


def test_error_in_unsynced_batch_keeps_its_server(pgtide):
    """After an error PostgreSQL skips messages until Sync: the server is not free before."""
    p = pgtide.start({**TX, "default_pool_size": 1})
    with p.raw() as a, connect(p) as b:
        assert a.login("app", "app", "app").ok
        a.send(h.parse_msg("select 1/0") + h.bind_msg() + h.execute_msg() + h.flush_msg())
        got = [a.recv_msg(timeout=5)]
        while got[-1][0] != "E":
            got.append(a.recv_msg(timeout=5))
        assert h.parse_error(got[-1][1]).sqlstate == "22012", got
        job = h.Background(_pid, b)
        time.sleep(1.0)
        assert not job.done(), "b was given a server that still skips messages until Sync"
        a.send(h.parse_msg("select 2") + h.bind_msg() + h.execute_msg() + h.sync_msg())
        assert a.recv_msg(timeout=5) == ("Z", b"I")  # everything before Sync was skipped
        pid_b = job.result(timeout=5)
        qr = a.query("select 3, pg_backend_pid()")
        assert qr.results[0][1] == [("3", str(pid_b))] and qr.status == "I"


# ---- parameters follow the client --------------------------------------------------------------

SHOWN = ("search_path", "TimeZone", "application_name", "lock_timeout", "statement_timeout")


def _settings(c):
    return {k: c.execute("select current_setting(%s)", (k,)).fetchone()[0] for k in SHOWN}


def test_parameters_follow_the_client(pgtide, pg):
    a_params = dict(application_name="appA",
                    options="-c search_path=a_schema -c TimeZone=Asia/Tokyo")
    with psycopg.connect(pg.dsn(**a_params), autocommit=True) as d:
        want_a = _settings(d)
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        want_b = _settings(d)
    assert want_a["TimeZone"] == "Asia/Tokyo" and want_b["TimeZone"] != "Asia/Tokyo"
    assert want_a["search_path"] != want_b["search_path"]
    assert want_b["lock_timeout"] == "0" and want_b["statement_timeout"] == "0"

    p = pgtide.start({**TX, "default_pool_size": 1})
    with connect(p, **a_params) as a, connect(p) as b:
        assert _pid(a) == _pid(b), "pool size 1: a and b must share the server"
        for i in range(6):
            assert _settings(a) == want_a, f"round {i}"
            assert _settings(b) == want_b, f"round {i}"
            with a.transaction():
                assert _settings(a) == want_a
            with b.transaction():
                assert _settings(b) == want_b
        assert a.info.parameter_status("TimeZone") == "Asia/Tokyo"
        assert a.info.parameter_status("application_name") == "appA"
        assert b.info.parameter_status("TimeZone") == want_b["TimeZone"]

        # a session-level SET of a parameter the server does not report stays with that
        # server session: the next client must not inherit it
        a.execute("set lock_timeout = '7s'")
        assert b.execute("show lock_timeout").fetchone() == ("0",)
        a.execute("set statement_timeout = '3s'")
        assert b.execute("show statement_timeout").fetchone() == ("0",)
        startup = ("search_path", "TimeZone", "application_name")
        assert {k: _settings(a)[k] for k in startup} == {k: want_a[k] for k in startup}
        with a.transaction():  # a plain SET inside a transaction outlives its COMMIT
            a.execute("set lock_timeout = '8s'")
            assert a.execute("show lock_timeout").fetchone() == ("8s",)
        assert b.execute("show lock_timeout").fetchone() == ("0",)
        with a.transaction():  # SET LOCAL does not
            a.execute("set local statement_timeout = '9s'")
            assert a.execute("show statement_timeout").fetchone() == ("9s",)
        assert b.execute("show statement_timeout").fetchone() == ("0",)

        # a SET of a reported parameter follows its client
        a.execute("set TimeZone = 'America/New_York'")
        assert a.info.parameter_status("TimeZone") == "America/New_York"
        for i in range(3):
            assert b.execute("show TimeZone").fetchone() == (want_b["TimeZone"],), f"round {i}"
            assert a.execute("show TimeZone").fetchone() == ("America/New_York",), \
                f"round {i}"
        assert b.info.parameter_status("TimeZone") == want_b["TimeZone"]
        assert a.info.parameter_status("TimeZone") == "America/New_York"
        assert _pid(a) == _pid(b)


RESETS = {
    "reset_all": ["reset all"],
    "discard_all": ["discard all"],
    "reset_timezone": ["set TimeZone = 'UTC'", "reset TimeZone"],
    "set_timezone_default": ["set TimeZone = 'UTC'", "set TimeZone to default"],
    "rollback_set": ["begin", "set TimeZone = 'UTC'", "rollback"],
    "set_local": ["begin", "set local TimeZone = 'UTC'", "commit"],
    "rollback_to_savepoint": ["begin", "savepoint s", "set TimeZone = 'UTC'",
                              "rollback to savepoint s", "commit"],
}
RESET_KEYS = ("search_path", "TimeZone", "application_name", "DateStyle", "lock_timeout",
              "client_encoding")
REPORTED = ("TimeZone", "application_name", "DateStyle", "client_encoding")


# RESET and DISCARD ALL go back to a setting's reset value, which PostgreSQL takes from the
# server connection's startup packet: pgtide puts the client's own login values back after them.
_RESET_CASES = list(RESETS)


@pytest.mark.parametrize("case", _RESET_CASES)
def test_reset_returns_to_the_clients_startup_values(pgtide, pg, case):
    """RESET, DISCARD ALL and a rolled-back SET bring a session back to its startup values, as
    PostgreSQL does: not to those of whichever client opened the server."""
    a_params = dict(application_name="appA", client_encoding="LATIN1",
                    options="-c search_path=a_schema -c TimeZone=Asia/Tokyo "
                            "-c DateStyle=German -c lock_timeout=4s")

    def run(a, b):
        for sql in RESETS[case]:
            a.execute(sql)
        b.execute("select 1")
        shown = {k: a.execute("select current_setting(%s)", (k,)).fetchone()[0]
                 for k in RESET_KEYS}
        reported = {k: a.info.parameter_status(k) for k in REPORTED}
        return shown, reported

    with psycopg.connect(pg.dsn(**a_params), autocommit=True) as a, \
            psycopg.connect(pg.dsn(), autocommit=True) as b:
        want_shown, want_reported = run(a, b)
    assert want_shown["TimeZone"] == "Asia/Tokyo"
    p = pgtide.start({**TX, "default_pool_size": 1})
    with connect(p, **a_params) as a, connect(p) as b:
        assert _pid(a) == _pid(b)
        shown, reported = run(a, b)
        assert shown == want_shown, "the session's settings after the reset"
        assert reported == want_reported, "the ParameterStatus values the client was sent"


def test_timezone_of_previous_client_does_not_shift_timestamps(pgtide, pg, table):
    t = table("who text, ts timestamptz")
    sql_utc = "select (%s::timestamptz at time zone 'UTC')::text"
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        want = d.execute(sql_utc, ("2024-01-01 12:00:00",)).fetchone()[0]
        want_offset = d.execute("select extract(timezone from now())::int").fetchone()[0]
    with psycopg.connect(pg.dsn(options="-c TimeZone=Asia/Tokyo"), autocommit=True) as d:
        tokyo = d.execute(sql_utc, ("2024-01-01 12:00:00",)).fetchone()[0]
    assert want != tokyo, "the cluster's time zone must differ from Asia/Tokyo"

    p = pgtide.start({**TX, "default_pool_size": 1})
    with connect(p, options="-c TimeZone=Asia/Tokyo") as a, connect(p) as b:
        assert _pid(a) == _pid(b)
        for i in range(3):
            a.execute(f"insert into {t} values ('a', '2024-01-01 12:00:00')")
            b.execute(f"insert into {t} values ('b', '2024-01-01 12:00:00')")
            assert b.execute(sql_utc, ("2024-01-01 12:00:00",)).fetchone() == (want,)
            a.execute("select 1")
            assert b.execute("select extract(timezone from now())::int").fetchone() == \
                (want_offset,)
    rows = pg.admin_sql(f"select who, (ts at time zone 'UTC')::text from {t} "
                        f"group by 1, 2 order by 1", db="app")
    assert rows == [("a", tokyo), ("b", want)]


# ---- transaction-scoped settings ---------------------------------------------------------------

def test_set_transaction_isolation_inside_begin(pgtide):
    p = pgtide.start({**TX, "default_pool_size": 1})
    with p.raw() as a, p.raw() as other:
        assert a.login("app", "app", "app").ok
        assert other.login("app", "app", "app").ok
        for setup in (["BEGIN", "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"],
                      ["BEGIN; SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"],
                      ["BEGIN ISOLATION LEVEL SERIALIZABLE"]):
            for sql in setup:
                qr = a.query(sql)
                assert not qr.errors and qr.status == "T", (sql, qr.errors)
            qr = a.query("SHOW transaction_isolation")
            assert qr.results[0][1] == [("serializable",)] and qr.status == "T", setup
            assert a.query("COMMIT").status == "I"
            qr = other.query("SHOW transaction_isolation")
            assert qr.results[0][1] == [("read committed",)], setup
            qr = a.query("BEGIN; SHOW transaction_isolation")
            assert qr.results[1][1] == [("read committed",)], setup
            assert a.query("COMMIT").status == "I"


# ---- clients that vanish mid-transaction -------------------------------------------------------

def _increment_with_lock_timeout(p, t):
    with connect(p, autocommit=False) as c:
        c.execute("set local lock_timeout = '5s'")
        c.execute(f"update {t} set v = v + 1 where id = 1")
        c.commit()
        return time.monotonic()


def test_client_killed_holding_a_row_lock(pgtide, pg, table):
    t = table("id int primary key, v int not null", "values (1, 0)")
    p = pgtide.start({**TX, "default_pool_size": 2})
    a = p.raw()
    assert a.login("app", "app", "app").ok
    qr = a.query(f"begin; update {t} set v = v + 100 where id = 1")
    assert qr.status == "T" and not qr.errors
    job = h.Background(_increment_with_lock_timeout, p, t)
    h.wait_for(lambda: _lock_waiters(pg) == 1, 5, what="b blocked on a's row lock")
    t0 = time.monotonic()
    a.abort()
    done_at = job.result(timeout=6)
    assert done_at - t0 < 1.5, f"the lock was released {done_at - t0:.2f}s after a vanished"
    assert pg.admin_value(f"select v from {t} where id = 1", db="app") == 1
    with connect(p) as c:
        assert c.execute(f"select v from {t} where id = 1").fetchone() == (1,)


def test_client_killed_during_a_long_query_in_a_transaction(pgtide, pg, table):
    t = table("id int primary key, v int not null", "values (1, 0)")
    p = pgtide.start({**TX, "default_pool_size": 2})
    a = p.raw()
    assert a.login("app", "app", "app").ok
    qr = a.query(f"begin; update {t} set v = v + 100 where id = 1; select pg_backend_pid()")
    assert qr.status == "T" and not qr.errors
    pid_a = int(qr.results[-1][1][0][0])
    a.send(h.query_message("select pg_sleep(30)"))
    h.wait_for(lambda: any(b["pid"] == pid_a and b["state"] == "active"
                           and "pg_sleep" in b["query"] for b in pg.backends()),
               5, what="a's server running pg_sleep")
    job = h.Background(_increment_with_lock_timeout, p, t)
    h.wait_for(lambda: _lock_waiters(pg) == 1, 5, what="b blocked on a's row lock")
    t0 = time.monotonic()
    a.abort()
    done_at = job.result(timeout=6)
    assert done_at - t0 < 2.0, f"the lock was released {done_at - t0:.2f}s after a vanished"
    assert pg.admin_value(f"select v from {t} where id = 1", db="app") == 1
    h.wait_for(lambda: _server_clean(pg, pid_a), 5,
               what="a's server closed or idle outside a transaction")
    def read_v():
        with connect(p) as c:
            return c.execute(f"select v from {t} where id = 1").fetchone()
    jobs = [h.Background(read_v) for _ in range(3)]
    assert [j.result(timeout=5) for j in jobs] == [(1,)] * 3
    assert pg.count_backends(user="app", db="app") <= 2


def test_terminate_inside_a_transaction(pgtide, pg, table):
    t = table("who text")
    p = pgtide.start({**TX, "default_pool_size": 1})
    a = connect(p, autocommit=False)
    a.execute(f"insert into {t} values ('terminated')")
    assert a.info.transaction_status == pq.TransactionStatus.INTRANS
    a.close()  # Terminate with the transaction open
    with connect(p) as b:
        assert _bounded(lambda: b.execute("select txid_current_if_assigned()").fetchone(),
                        5) == (None,)
        assert b.info.transaction_status == pq.TransactionStatus.IDLE
        assert b.execute("select xact_start = query_start from pg_stat_activity "
                         "where pid = pg_backend_pid()").fetchone() == (True,)
        assert b.execute(f"select count(*) from {t}").fetchone() == (0,)
        b.execute(f"insert into {t} values ('b')")  # autocommit: commits only its own row
    assert pg.admin_sql(f"select who from {t}", db="app") == [("b",)]
    assert not [x for x in pg.backends(user="app") if x["state"].startswith("idle in")]


@pytest.mark.parametrize("leave", ["abort", "terminate"])
def test_client_gone_with_an_unsynced_batch_commits_nothing(pgtide, pg, table, leave):
    """Execute without Sync runs in an implicit transaction that only Sync commits: a client
    that leaves before its Sync gets a rollback, as PostgreSQL gives it."""
    t = table("who text")
    p = pgtide.start({**TX, "default_pool_size": 1})
    a = p.raw()
    assert a.login("app", "app", "app").ok
    a.send(h.parse_msg(f"insert into {t} values ('unsynced')") + h.bind_msg()
           + h.execute_msg() + h.flush_msg())
    assert [a.recv_msg(timeout=5)[0] for _ in range(3)] == ["1", "2", "C"]
    if leave == "abort":
        a.abort()
    else:
        a.send(h.terminate_message())
        a.close()
    with connect(p) as b:
        assert _bounded(lambda: b.execute("select txid_current_if_assigned()").fetchone(),
                        5) == (None,)
        assert b.execute(f"select count(*) from {t}").fetchone() == (0,), \
            "the insert of a client that never sent Sync was committed"
    assert pg.admin_sql(f"select who from {t}", db="app") == []


# ---- statement pooling -------------------------------------------------------------------------

def test_statement_mode(pgtide, pg, table):
    t = table("who text")
    p = pgtide.start({"pool_mode": "statement", "default_pool_size": 1})
    with connect(p) as c, p.raw() as r:
        assert c.execute("select %s::int + 1", (41,)).fetchone() == (42,)
        assert r.login("app", "app", "app").ok
        qr = r.query(f"select 1; insert into {t} values ('multi'); select 2")
        assert not qr.errors and qr.status == "I"
        assert [res[1] for res in qr.results] == [[("1",)], [], [("2",)]]

    with p.raw() as r:
        assert r.login("app", "app", "app").ok
        qr = r.query(f"begin; insert into {t} values ('in-block')")
        errs = qr.errors
        if not qr.closed:
            msgs, closed = r.read_until_closed(5)
            errs += r.errors_in(msgs)
        assert errs, f"no error for a transaction block in statement mode: {qr.messages}"
        assert errs[0].sqlstate == "0A000", errs[0]
        assert "transaction blocks not allowed in statement pooling mode" in errs[0].message

    with connect(p) as c:
        assert _bounded(lambda: c.execute("select txid_current_if_assigned()").fetchone(),
                        5) == (None,)
        assert c.execute(f"select who from {t} order by who").fetchall() == [("multi",)]
    h.wait_for(lambda: not [x for x in pg.backends(user="app") if x["state"] != "idle"],
               5, what="no server left in a transaction")
    assert pg.admin_sql(f"select who from {t}", db="app") == [("multi",)]


# ---- the wait queue ----------------------------------------------------------------------------

def test_waiting_clients_are_served_in_arrival_order(pgtide, pg):
    pg.admin_sql("DROP SEQUENCE IF EXISTS tp_fair_seq; CREATE SEQUENCE tp_fair_seq; "
                 "ALTER SEQUENCE tp_fair_seq OWNER TO app", db="app")
    try:
        p = pgtide.start({**TX, "default_pool_size": 1})
        holder = connect(p)
        waiters = [connect(p) for _ in range(5)]
        try:
            holder.execute("begin")
            holder.execute("select nextval('tp_fair_seq')")
            jobs = []
            for w in waiters:
                jobs.append(h.Background(
                    lambda w=w: w.execute("select nextval('tp_fair_seq')").fetchone()[0]))
                time.sleep(0.15)
            time.sleep(0.2)
            assert not any(j.done() for j in jobs), "a waiter ran during the transaction"
            holder.execute("commit")
            order = [j.result(timeout=5) for j in jobs]
            assert order == [2, 3, 4, 5, 6], f"served out of arrival order: {order}"
        finally:
            holder.close()
            for w in waiters:
                w.close()
    finally:
        pg.admin_sql("DROP SEQUENCE IF EXISTS tp_fair_seq", db="app")


# ---- pgbench -----------------------------------------------------------------------------------

@pytest.mark.deadline(90)
def test_pgbench_in_transaction_mode(pgtide, pg, pgbench_tables):
    r = h.pgbench(pg.host, pg.port, "-i", "-s", "1", "-q")
    assert r.returncode == 0, r.stderr
    p = pgtide.start({**TX, "default_pool_size": 5})
    with h.BackendSampler(pg, user="app", db="app") as sampler:
        for script in (["-S"], []):
            for mode in ("simple", "extended"):
                r = h.pgbench(p.host, p.port, "-n", "-c", "20", "-j", "2", "-T", "2",
                             "-M", mode, *script)
                what = f"pgbench {script} -M {mode}:\n{r.stdout}\n{r.stderr}"
                assert r.returncode == 0, what
                done, _, failed = h.pgbench_summary(r)
                assert done > 0 and failed == 0, what
    assert sampler.max <= 5, f"PostgreSQL saw {sampler.max} backends with pool size 5"


# ---- pool_mode per database and per user -------------------------------------------------------

def _shares_server(p, **kw):
    """True if a second client gets the server of a connected, idle first client (transaction
    or statement pooling), False if it gets another one (session pooling)."""
    with connect(p, **kw) as a, connect(p, **kw) as b:
        pid_a = _pid(a)
        return _bounded(_pid, 5, b) == pid_a


def test_pool_mode_per_database_and_user(pgtide, pg):
    def db(name, extra=""):
        return f"host=127.0.0.1 port={pg.port} dbname={name} {extra}".strip()
    md5 = dict(user="md5user", password="md5pw")

    p = pgtide.start({"pool_mode": "session"},
                     databases={"app": db("app", "pool_mode=transaction")})
    assert _shares_server(p) is True
    assert _shares_server(p, dbname="other") is False
    assert _shares_server(p, **md5) is True

    p = pgtide.start({"pool_mode": "transaction"},
                     databases={"other": db("other", "pool_mode=session")})
    assert _shares_server(p) is True
    assert _shares_server(p, dbname="other") is False

    p = pgtide.start({"pool_mode": "session"},
                     databases={"app": db("app", "pool_mode=transaction")},
                     users={"md5user": "pool_mode=session", "app": "pool_mode=transaction"})
    assert _shares_server(p) is True
    assert _shares_server(p, dbname="other") is True
    assert _shares_server(p, **md5) is False
    assert _shares_server(p, dbname="other", **md5) is False
