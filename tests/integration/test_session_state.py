"""Session state under transaction pooling: session advisory locks, LISTEN, temporary tables,
cursors WITH HOLD, SQL-level PREPARE and SET ROLE. A plain SET of a parameter is not pinned: it
is read back and replayed wherever the client runs next. A
client that creates such state keeps its server (is pinned) until the state is gone or the
client leaves; a pinned client that vanishes leaves nothing behind for the next client of that
server; pin_session_state = on (default) | off | error.

Pinning is seen from outside: pg_backend_pid() of the pinned client stays the same across its
transactions while no other client of the pool ever runs on that server (spread()), and after
the state is gone the server is shared again. pg_locks, pg_listening_channels(), pg_cursors and
pg_prepared_statements say what a server still holds.

Everything except the pin_session_state = error test passes against PostgreSQL directly
(PGTIDE_TEST_DIRECT=1), where every client has a backend of its own; the assertions that a
server is shared again after unpinning are pgtide's alone. PostgreSQL facts used:
- session advisory locks outlive a ROLLBACK of the transaction that took them and are reentrant
  within one session (pg_try_advisory_lock of a lock the session holds is true): a client that
  lands on the holder's server would wrongly get the lock;
- pg_locks shows a bigint advisory key k (< 2^32) as locktype 'advisory', objid k, objsubid 1;
- a NOTIFY reaches a listening session that is idle, as NotificationResponse ('A': pid,
  channel, payload); UNLISTEN * stops that;
- FETCH from a cursor or EXECUTE of a statement a session does not have: 34000 `cursor "c" does
  not exist` / 26000 `prepared statement "p" does not exist`.
"""

import os
import struct
import time

import psycopg
import psycopg2
import pytest

import pgtide_harness as h

DIRECT = os.environ.get("PGTIDE_TEST_DIRECT") == "1"
pgtide_only = pytest.mark.skipif(DIRECT, reason="pgtide's own behaviour")

TX = {"pool_mode": "transaction"}
MIGRATE_KEY = 72707369  # the key Prisma Migrate takes with pg_advisory_lock


def connect(p, autocommit=True, **kw):
    """psycopg 3 without automatic server-side prepared statements (another feature)."""
    c = p.connect(autocommit=autocommit, **kw)
    c.prepare_threshold = None
    return c


def pid(c):
    return c.execute("select pg_backend_pid()").fetchone()[0]


def advisory_holders(pg, key):
    """pids holding the session advisory lock on bigint key (granted)."""
    return sorted(r[0] for r in pg.admin_sql(
        "select pid from pg_locks where locktype = 'advisory' and granted "
        "and objid = %s and objsubid = 1", (key,), db="app"))


def spread(p, n=3, sleep=0.3):
    """pids of the servers n concurrent new clients run on (each holds its server `sleep` s)."""
    def one():
        with connect(p) as c:
            return c.execute("select pg_backend_pid(), pg_sleep(%s)", (sleep,)).fetchone()[0]
    jobs = [h.Background(one) for _ in range(n)]
    return {j.result(timeout=15) for j in jobs}


def others_never_on(p, pinned_pid, rounds=2):
    """Other clients, in several rounds of concurrent transactions, never run on the pinned
    server (directly, trivially true)."""
    for _ in range(rounds):
        seen = spread(p)
        assert pinned_pid not in seen, f"another client ran on pinned server {pinned_pid}"


def shared_again(p, old_pid):
    """After unpinning, the old server takes other clients again (pgtide only)."""
    if DIRECT:
        return
    seen = set()
    for _ in range(3):
        seen |= spread(p)
        if old_pid in seen:
            return
    raise AssertionError(f"server {old_pid} was not shared again after the state was gone "
                         f"(others ran on {seen})")


def raw_login(p, timeout=10):
    c = p.raw(timeout=timeout)
    assert c.login("app", "app", "app").ok
    return c


def raw_ok(c, sql):
    qr = c.query(sql)
    assert not qr.errors and qr.status == "I", (sql, qr.errors, qr.status)
    return qr


def notification(body):
    (sender,) = struct.unpack("!I", body[:4])
    channel, payload = h.parse_cstrings(body[4:])[:2]
    return sender, channel, payload


def default_setting(pg, name):
    with psycopg.connect(pg.dsn(), autocommit=True) as d:
        return d.execute(f"show {name}").fetchone()[0]


# ---- advisory locks ------------------------------------------------------------------------------

@pytest.mark.deadline(60)
def test_advisory_lock_taken_in_one_transaction_released_in_a_later_one(pgtide, pg):
    p = pgtide.start({**TX, "default_pool_size": 2})
    key = MIGRATE_KEY
    with connect(p, autocommit=False) as a, connect(p) as b:
        a.execute("select pg_advisory_lock(%s)", (key,))  # extended protocol
        pid_a = pid(a)
        a.commit()
        assert advisory_holders(pg, key) == [pid_a]
        others_never_on(p, pid_a)
        for _ in range(5):
            # b never gets a's server: a's lock is not b's (it would be reentrant there)
            got, = b.execute("select pg_try_advisory_lock(%s)", (key,)).fetchone()
            if got:
                b.execute("select pg_advisory_unlock(%s)", (key,))
            assert got is False, "b got the lock a holds"
        assert advisory_holders(pg, key) == [pid_a]
        with a.transaction():
            assert pid(a) == pid_a
            a.execute("select 1")
        a.commit()
        assert pid(a) == pid_a
        assert a.execute("select pg_advisory_unlock(%s)", (key,)).fetchone() == (True,)
        a.commit()
        assert advisory_holders(pg, key) == []
        assert b.execute("select pg_try_advisory_lock(%s)", (key,)).fetchone() == (True,)
        assert b.execute("select pg_advisory_unlock(%s)", (key,)).fetchone() == (True,)
    shared_again(p, pid_a)


def test_advisory_lock_outlives_rollback_until_unlock_all(pgtide, pg):
    p = pgtide.start({**TX, "default_pool_size": 2})
    with p.raw() as a:
        assert a.login("app", "app", "app").ok
        qr = a.query("begin; select pg_advisory_lock(4242), pg_advisory_lock(4343), "
                     "pg_backend_pid(); rollback")
        assert not qr.errors and qr.status == "I", qr.errors
        pid_a = int(qr.results[1][1][0][2])
        assert advisory_holders(pg, 4242) == [pid_a] == advisory_holders(pg, 4343)
        others_never_on(p, pid_a)
        qr = raw_ok(a, "select pg_backend_pid()")
        assert qr.results[0][1] == [(str(pid_a),)]
        qr = raw_ok(a, "select pg_advisory_unlock(4242)")
        assert qr.results[0][1] == [("t",)]
        others_never_on(p, pid_a)  # 4343 is still held
        raw_ok(a, "select pg_advisory_unlock_all()")
        assert advisory_holders(pg, 4343) == []
    shared_again(p, pid_a)


@pytest.mark.parametrize("leave", ["abort", "terminate"])
def test_advisory_lock_of_a_vanished_client_is_released_promptly(pgtide, pg, leave):
    p = pgtide.start({**TX, "default_pool_size": 2})
    a = raw_login(p)
    qr = raw_ok(a, f"select pg_advisory_lock({MIGRATE_KEY}), pg_backend_pid()")
    pid_a = int(qr.results[0][1][0][1])
    with connect(p) as b:
        b.execute("select 1")
        assert advisory_holders(pg, MIGRATE_KEY) == [pid_a]
        t0 = time.monotonic()
        if leave == "abort":
            a.abort()
        else:
            a.send(h.terminate_message())
            a.close()
        # promptly: not at a server timeout (server_idle_timeout, server_lifetime: minutes)
        h.wait_for(lambda: advisory_holders(pg, MIGRATE_KEY) == [], 3.0,
                   what="the vanished client's advisory lock to be released")
        assert time.monotonic() - t0 <= 3.0
        assert b.execute("select pg_try_advisory_lock(%s)", (MIGRATE_KEY,)).fetchone() == \
            (True,)
        assert b.execute("select pg_advisory_unlock(%s)", (MIGRATE_KEY,)).fetchone() == \
            (True,)


@pytest.mark.deadline(60)
def test_prisma_migrate_style_lock_serializes_two_migrators(pgtide, pg, table):
    """Two `prisma migrate deploy` processes: each takes pg_advisory_lock(72707369), runs its
    migration in several transactions and unlocks. The second waits for the first. The first
    is idle between its transactions, when an unpinned server would be free for the second."""
    t = table("who text, step int")
    p = pgtide.start({**TX, "default_pool_size": 2})
    log = []

    def migrate(who, steps):
        with connect(p) as c:
            c.execute("select pg_advisory_lock(%s)", (MIGRATE_KEY,))
            log.append((who, "locked"))
            for s in range(steps):
                with c.transaction():
                    c.execute(f"insert into {t} values (%s, %s)", (who, s))
                time.sleep(0.1)
            log.append((who, "unlocking"))
            assert c.execute("select pg_advisory_unlock(%s)", (MIGRATE_KEY,)).fetchone() == \
                (True,)
        return who

    first = h.Background(migrate, "first", 10)
    h.wait_for(lambda: ("first", "locked") in log, 5, what="the first migrator's lock")
    second = h.Background(migrate, "second", 3)
    assert first.result(timeout=20) == "first"
    assert second.result(timeout=20) == "second"
    assert log == [("first", "locked"), ("first", "unlocking"), ("second", "locked"),
                   ("second", "unlocking")], log
    assert advisory_holders(pg, MIGRATE_KEY) == []


# ---- LISTEN / NOTIFY -----------------------------------------------------------------------------

@pytest.mark.deadline(60)
def test_listen_notify_reaches_a_pinned_idle_client(pgtide, pg):
    p = pgtide.start({**TX, "default_pool_size": 2})
    with p.raw() as a, connect(p) as b:
        assert a.login("app", "app", "app").ok
        qr = a.query("LISTEN tide_chan; select pg_backend_pid()")
        assert not qr.errors and qr.results[0][2] == "LISTEN" and qr.status == "I"
        pid_a = int(qr.results[1][1][0][0])
        for i in range(3):
            with b.transaction():
                b.execute("select 1")
                b.execute(f"NOTIFY tide_chan, 'hello {i}'")
            b.execute("select pg_notify('tide_chan', %s)", (f"direct {i}",))
        got = [a.recv_msg(timeout=5) for _ in range(6)]
        assert [t for t, _ in got] == ["A"] * 6, got
        notes = [notification(body) for _, body in got]
        assert [n[1:] for n in notes] == [("tide_chan", f"{w} {i}") for i in range(3)
                                          for w in ("hello", "direct")]
        assert pid_a not in {n[0] for n in notes}, "a NOTIFY of b ran on a's server"
        others_never_on(p, pid_a)
        # b never sees a's LISTEN
        assert b.execute("select count(*) from pg_listening_channels()").fetchone() == (0,)
        qr = raw_ok(a, "select pg_backend_pid(), array_to_string(array("
                       "select pg_listening_channels()), ',')")
        assert qr.results[0][1] == [(str(pid_a), "tide_chan")]
        # UNLISTEN *: nothing more arrives, and the server is shared again
        raw_ok(a, "UNLISTEN *")
        b.execute("NOTIFY tide_chan, 'too late'")
        with pytest.raises(TimeoutError):
            a.recv_msg(timeout=0.5)
        shared_again(p, pid_a)


# ---- temporary tables, cursors WITH HOLD, SQL PREPARE, SET -------------------------------------

@pytest.mark.deadline(60)
def test_temp_table_across_transactions(pgtide):
    p = pgtide.start({**TX, "default_pool_size": 2})
    with connect(p) as a, connect(p) as b:
        a.execute("create temp table tide_tmp (v int)")
        pid_a = pid(a)
        for i in range(4):
            with a.transaction():
                a.execute("insert into tide_tmp values (%s)", (i,))
            others_never_on(p, pid_a, rounds=1)
            assert b.execute("select to_regclass('pg_temp.tide_tmp')").fetchone() == (None,)
        assert a.execute("select count(*), sum(v) from tide_tmp").fetchone() == (4, 6)
        assert pid(a) == pid_a
        a.execute("DISCARD ALL")  # the table is gone: a is no longer pinned
        assert a.execute("select to_regclass('pg_temp.tide_tmp')").fetchone() == (None,)
    shared_again(p, pid_a)


@pytest.mark.deadline(60)
def test_cursor_with_hold_across_transactions(pgtide):
    p = pgtide.start({**TX, "default_pool_size": 2})
    with connect(p) as a, connect(p) as b:
        a.execute("declare tide_cur cursor with hold for select generate_series(1, 10)")
        pid_a = pid(a)
        assert a.execute("fetch 3 from tide_cur").fetchall() == [(1,), (2,), (3,)]
        others_never_on(p, pid_a, rounds=1)
        with pytest.raises(psycopg.errors.InvalidCursorName,
                           match='cursor "tide_cur" does not exist'):
            b.execute("fetch 1 from tide_cur")
        with a.transaction():
            assert a.execute("fetch 3 from tide_cur").fetchall() == [(4,), (5,), (6,)]
        assert a.execute("fetch all from tide_cur").fetchall() == [(7,), (8,), (9,), (10,)]
        a.execute("close tide_cur")
        with pytest.raises(psycopg.errors.InvalidCursorName):
            a.execute("fetch 1 from tide_cur")
    shared_again(p, pid_a)


@pytest.mark.deadline(60)
def test_sql_prepare_execute_across_transactions(pgtide):
    """SQL-level PREPARE/EXECUTE/DEALLOCATE from psycopg2 (simple query protocol)."""
    p = pgtide.start({**TX, "default_pool_size": 2})
    a = psycopg2.connect(p.dsn())
    b = psycopg2.connect(p.dsn())
    try:
        a.autocommit = b.autocommit = True
        ca, cb = a.cursor(), b.cursor()
        ca.execute("PREPARE tide_double(int) AS SELECT $1 * 2, pg_backend_pid()")
        ca.execute("EXECUTE tide_double(1)")
        pid_a = ca.fetchone()[1]
        for i in range(5):
            ca.execute("EXECUTE tide_double(%s)", (i,))
            assert ca.fetchone() == (2 * i, pid_a)
            with pytest.raises(psycopg2.errors.InvalidSqlStatementName,
                               match='prepared statement "tide_double" does not exist'):
                cb.execute("EXECUTE tide_double(1)")
        others_never_on(p, pid_a, rounds=1)
        a.autocommit = False
        ca.execute("EXECUTE tide_double(21)")
        assert ca.fetchone() == (42, pid_a)
        a.commit()
        a.autocommit = True
        ca.execute("DEALLOCATE tide_double")
        with pytest.raises(psycopg2.errors.InvalidSqlStatementName):
            ca.execute("EXECUTE tide_double(1)")
    finally:
        a.close()
        b.close()
    shared_again(p, pid_a)


@pytest.mark.deadline(60)
def test_a_plain_set_follows_its_client_instead_of_pinning(pgtide, pg):
    """A session-level SET of a parameter PostgreSQL does not report (work_mem, a dotted custom
    setting, SET SESSION ...) is read back by pgtide at the end of the transaction and replayed
    wherever the client runs next: nothing is pinned, no other client sees it."""
    default = default_setting(pg, "work_mem")
    assert default != "7MB"
    p = pgtide.start({**TX, "default_pool_size": 2})
    with connect(p) as a, connect(p) as b:
        a.execute("SET work_mem = '7MB'")
        a.execute("SET SESSION lock_timeout = '4s'")
        a.execute("SET tide.tenant = 'acme'")
        pid_a = pid(a)
        seen_a = set()
        for _ in range(4):
            assert b.execute("show work_mem").fetchone() == (default,)
            assert b.execute("show lock_timeout").fetchone() == ("0",)
            assert b.execute("select current_setting('tide.tenant', true)").fetchone()[0] \
                in (None, "")
            with a.transaction():
                assert a.execute("show work_mem").fetchone() == ("7MB",)
                seen_a.add(pid(a))
            assert a.execute("select current_setting('work_mem'), "
                             "current_setting('lock_timeout'), "
                             "current_setting('tide.tenant')").fetchone() == \
                ("7MB", "4s", "acme")
            spread(p)
        if not DIRECT:
            assert len(seen_a) >= 1
            shared_again(p, pid_a)  # never pinned
        # a SET inside a transaction that rolls back is undone; one that commits stays
        with pytest.raises(psycopg.errors.DivisionByZero):
            with a.transaction():
                a.execute("SET work_mem = '9MB'")
                a.execute("select 1/0")
        assert a.execute("show work_mem").fetchone() == ("7MB",)
        with a.transaction():
            a.execute("SET work_mem = '8MB'")
            a.execute("SAVEPOINT s1")
            a.execute("SET work_mem = '10MB'")
            a.execute("ROLLBACK TO SAVEPOINT s1")
        spread(p)
        assert a.execute("show work_mem").fetchone() == ("8MB",)
        # SET LOCAL ends with its transaction
        with b.transaction():
            b.execute("SET LOCAL work_mem = '9MB'")
            assert b.execute("show work_mem").fetchone() == ("9MB",)
        assert b.execute("show work_mem").fetchone() == (default,)
        # RESET gives the server's default back, wherever a runs next
        a.execute("RESET work_mem")
        a.execute("RESET tide.tenant")
        for _ in range(3):
            spread(p)
            assert a.execute("show work_mem").fetchone() == (default,)
            assert a.execute("select current_setting('tide.tenant', true)").fetchone()[0] \
                in (None, "")
            assert a.execute("show lock_timeout").fetchone() == ("4s",)


@pytest.mark.deadline(60)
def test_set_role_pins_until_reset(pgtide, pg):
    """SET ROLE is not replayed: the client keeps its server until RESET ROLE."""
    pg.admin_sql("do $$ begin if not exists (select from pg_roles where rolname = 'tide_r') "
                 "then create role tide_r; end if; end $$; grant tide_r to app", db="app")
    p = pgtide.start({**TX, "default_pool_size": 2})
    with connect(p) as a, connect(p) as b:
        a.execute("SET ROLE tide_r")
        pid_a = pid(a)
        others_never_on(p, pid_a, rounds=1)
        for _ in range(3):
            assert b.execute("select current_user").fetchone() == ("app",)
            assert a.execute("select current_user, pg_backend_pid()").fetchone() == \
                ("tide_r", pid_a)
        a.execute("RESET ROLE")
        assert a.execute("select current_user").fetchone() == ("app",)
    shared_again(p, pid_a)


# ---- a pinned client that vanishes ---------------------------------------------------------------

STATE = {
    "advisory": ("select pg_advisory_lock(777)",
                 "select count(*) from pg_locks where locktype = 'advisory' "
                 "and pid = pg_backend_pid()", "0"),
    "listen": ("LISTEN tide_gone", "select count(*) from pg_listening_channels()", "0"),
    "temp": ("create temp table tide_gone (a int)",
             "select coalesce(to_regclass('pg_temp.tide_gone')::text, 'none')", "none"),
    "cursor": ("declare tide_gone cursor with hold for select 1",
               "select count(*) from pg_cursors where name = 'tide_gone'", "0"),
    "prepare": ("prepare tide_gone as select 1",
                "select count(*) from pg_prepared_statements where name = 'tide_gone'", "0"),
    "set": ("set work_mem = '7MB'", "select (current_setting('work_mem') <> '7MB')::text",
            "true"),
    "role": ("set role app", "select current_setting('role')", "none"),
    # tables made by SELECT: their tag is SELECT n, anywhere in a multi-statement text
    "select into temp": ("select 1; select 2 as a into temp tide_gone",
                         "select coalesce(to_regclass('pg_temp.tide_gone')::text, 'none')",
                         "none"),
    "create temp as": ("select 1; create temp table tide_gone as select 2 as a",
                       "select coalesce(to_regclass('pg_temp.tide_gone')::text, 'none')", "none"),
    # set_config(..., false) is a SET by another name
    "set_config": ("select set_config('work_mem', '7MB', false)",
                   "select (current_setting('work_mem') <> '7MB')::text", "true"),
    "set_config custom": ("select set_config('tide.who', 'alice', false)",
                          "select coalesce(nullif(current_setting('tide.who', true), ''), 'none')",
                          "none"),
}


@pytest.mark.parametrize("state", list(STATE))
def test_state_of_a_vanished_client_is_cleaned_before_reuse(pgtide, pg, state):
    """Pool size 1: the next client gets the vanished client's server (or a new one), never
    its state."""
    create, check, clean = STATE[state]
    p = pgtide.start({**TX, "default_pool_size": 1})
    a = raw_login(p)
    qr = raw_ok(a, create)
    qr = a.query(check)
    assert qr.results[0][1] != [(clean,)], f"{check} in a's own session"
    a.abort()
    t0 = time.monotonic()

    def next_client():
        with connect(p) as b:
            return b.execute(check).fetchone()[0]
    got = h.Background(next_client).result(timeout=5)
    assert str(got) == clean, f"{state}: the next client found {got!r} ({check})"
    assert time.monotonic() - t0 < 2.0


@pytest.mark.deadline(60)
@pytest.mark.parametrize("sql", [
    "select 1; select 2 as v into temp tide_si",
    "select 1; create temp table tide_si as select 2 as v",
    "select 2 as v into temporary tide_si",
])
def test_a_temp_table_made_by_select_pins_wherever_it_stands(pgtide, sql):
    """SELECT INTO TEMP and CREATE TEMP TABLE AS answer SELECT n, like any SELECT, but with no
    RowDescription: pgtide asks the server, and the client keeps its server until it drops
    the table."""
    p = pgtide.start({**TX, "default_pool_size": 2})
    a = raw_login(p)
    try:
        raw_ok(a, sql)
        pid_a = int(raw_ok(a, "select pg_backend_pid()").results[0][1][0][0])
        others_never_on(p, pid_a, rounds=1)
        assert raw_ok(a, "select v from tide_si").results[0][1] == [("2",)]
        raw_ok(a, "drop table tide_si")
        shared_again(p, pid_a)
    finally:
        a.close()


@pytest.mark.deadline(60)
def test_set_config_at_session_level_follows_its_client(pgtide, pg):
    """set_config(name, value, false) sets a session value as SET does: it is read back and
    replayed wherever the client runs next, and never reaches another client of its server.
    set_config(..., true) ends with its transaction."""
    default = default_setting(pg, "work_mem")
    assert default != "3MB"
    p = pgtide.start({**TX, "default_pool_size": 1})
    with connect(p) as a, connect(p) as b:
        a.execute("select set_config('work_mem', '3MB', false), "
                  "set_config('tide.who', 'alice', false)")
        a.execute("select set_config('tide.tx', 'local', true)")
        for _ in range(3):
            assert b.execute("show work_mem").fetchone() == (default,)
            assert b.execute("select coalesce(current_setting('tide.who', true), ''), "
                             "coalesce(current_setting('tide.tx', true), '')").fetchone() == \
                ("", "")
            assert a.execute("select current_setting('work_mem'), current_setting('tide.who'), "
                             "coalesce(current_setting('tide.tx', true), '')").fetchone() == \
                ("3MB", "alice", "")
        # The name a parameter (extended protocol, $1): pgtide cannot know it, so the server
        # is reset (RESET ALL) before another client gets it.
        a.execute("select set_config(%s, 'p', false)", ("tide.param",))
        assert b.execute("select coalesce(current_setting('tide.param', true), '')")\
            .fetchone() == ("",)
        assert a.execute("select current_setting('work_mem'), current_setting('tide.who')")\
            .fetchone() == ("3MB", "alice")


# ---- pin_session_state ---------------------------------------------------------------------------

REFUSED = {
    "advisory lock": "select pg_advisory_lock(31)",
    "try advisory lock": "select pg_try_advisory_lock_shared(31)",
    "listen": "LISTEN tide_refused",
    "temp table": "create temp table tide_refused (a int)",
    "cursor with hold": "declare tide_refused cursor with hold for select 1",
    "sql prepare": "prepare tide_refused as select 1",
    "set role": "set role app",
}


@pgtide_only
def test_pin_session_state_error_refuses_with_a_clear_message(pgtide, pg):
    p = pgtide.start({**TX, "default_pool_size": 2, "pin_session_state": "error"})
    with connect(p) as c:
        for what, sql in REFUSED.items():
            with pytest.raises(psycopg.Error) as ei:
                c.execute(sql)
            e = ei.value
            assert e.sqlstate == "0A000", (what, e.sqlstate, str(e))
            assert "session" in str(e).lower(), (what, str(e))
            assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE, what
            # nothing was left behind
            assert c.execute("select count(*) from pg_locks where locktype = 'advisory'"
                             ).fetchone() == (0,), what
            assert c.execute("select count(*) from pg_listening_channels()").fetchone() == \
                (0,), what
            assert c.execute("select to_regclass('pg_temp.tide_refused')").fetchone() == \
                (None,), what
            assert c.execute("select count(*) from pg_cursors").fetchone() == (0,), what
            assert c.execute("select count(*) from pg_prepared_statements "
                             "where name = 'tide_refused'").fetchone() == (0,), what
            assert c.execute("select current_setting('role')").fetchone() == ("none",), what
        # the extended protocol is refused too
        with pytest.raises(psycopg.Error) as ei:
            c.execute("select pg_advisory_lock(%s)", (32,))
        assert ei.value.sqlstate == "0A000"
        assert pg.admin_value("select count(*) from pg_locks where locktype = 'advisory'",
                              db="app") == 0
        # state that ends with its transaction is not refused
        with c.transaction():
            assert c.execute("select pg_advisory_xact_lock(33), 1").fetchone() == ("", 1)
            c.execute("set local work_mem = '9MB'")
            c.execute("declare tide_plain cursor for select 1")
            assert c.execute("fetch 1 from tide_plain").fetchone() == (1,)
        c.execute("set work_mem = '7MB'")  # a plain SET is replayed, not refused
        assert c.execute("show work_mem").fetchone() == ("7MB",)
        c.execute("reset work_mem")
        c.execute("set TimeZone = 'Asia/Tokyo'")  # a reported parameter follows its client
        assert c.execute("show TimeZone").fetchone() == ("Asia/Tokyo",)
        assert c.execute("select 42").fetchone() == (42,)


def test_pin_session_state_off_runs_the_statements(pgtide):
    """off: nothing is pinned (the documented hazard); the statements themselves run."""
    p = pgtide.start({**TX, "default_pool_size": 2, "pin_session_state": "off"})
    with p.raw() as c:
        assert c.login("app", "app", "app").ok
        qr = raw_ok(c, "select pg_advisory_lock(41), pg_advisory_unlock(41)")
        assert qr.results[0][1] == [("", "t")]
        assert raw_ok(c, "LISTEN tide_off").results[0][2] == "LISTEN"
        assert raw_ok(c, "UNLISTEN *").results[0][2] == "UNLISTEN"
        assert raw_ok(c, "begin; set work_mem = '7MB'; show work_mem; commit") \
            .results[2][1] == [("7MB",)]
        raw_ok(c, "reset work_mem")


@pgtide_only
@pytest.mark.deadline(60)
def test_pinned_clients_are_counted_per_pool(pgtide):
    """SHOW POOLS cl_pinned counts pinned clients; SHOW CLIENTS says what pins each one."""
    p = pgtide.start({**TX, "default_pool_size": 3, "admin_users": "app"})

    def pool_row(adm):
        rows = [r for r in adm.rows("SHOW POOLS") if r["database"] == "app"]
        assert len(rows) == 1, rows
        return rows[0]

    def pinned_of(adm):
        return sorted(r["pinned"] for r in adm.rows("SHOW CLIENTS")
                      if r["database"] == "app" and r["pinned"])

    with h.AdminConsole(p) as adm, connect(p) as a, connect(p) as b, connect(p) as c:
        for x in (a, b, c):
            x.execute("select 1")
        assert pool_row(adm)["cl_pinned"] == 0
        a.execute("LISTEN tide_count")
        b.execute("select pg_advisory_lock(5150)")
        b.execute("create temp table tide_count (v int)")
        assert pool_row(adm)["cl_pinned"] == 2
        assert pinned_of(adm) == ["LISTEN", "session advisory lock, temporary table"]
        c.execute("select pg_advisory_lock(5151), pg_advisory_unlock(5151)")
        assert pool_row(adm)["cl_pinned"] == 2
        b.execute("select pg_advisory_unlock_all()")
        assert pinned_of(adm) == ["LISTEN", "temporary table"]
        b.execute("drop table tide_count")
        assert pool_row(adm)["cl_pinned"] == 1
        a.close()
        h.wait_for(lambda: pool_row(adm)["cl_pinned"] == 0, 5, what="cl_pinned back to 0")
        assert pinned_of(adm) == []


@pgtide_only
def test_pin_session_state_off_still_cleans_before_the_next_client(pgtide, pg):
    """off pins nothing, but state never reaches another client: the server gets DISCARD ALL
    when the client that made it lets it go (pool size 1: the next client gets that server)."""
    p = pgtide.start({**TX, "default_pool_size": 1, "pin_session_state": "off"})
    with p.raw() as a, connect(p) as b:
        assert a.login("app", "app", "app").ok
        pid_a = int(raw_ok(a, "LISTEN tide_off2; select pg_advisory_lock(4711); "
                              "select pg_backend_pid()").results[2][1][0][0])
        got = b.execute("select pg_backend_pid(), "
                        "(select count(*) from pg_listening_channels()), "
                        "(select count(*) from pg_locks where locktype = 'advisory')").fetchone()
        assert got == (pid_a, 0, 0), got
        assert advisory_holders(pg, 4711) == []


@pgtide_only
@pytest.mark.parametrize("named", [False, True])
def test_pin_session_state_error_in_a_pipeline(pgtide, named):
    """A refused statement behind one that already failed in the same batch: the server skips
    both, the client sees the first error only, and the connection goes on."""
    p = pgtide.start({**TX, "default_pool_size": 1, "pin_session_state": "error"})
    name = "lst" if named else ""
    with p.raw() as c:
        assert c.login("app", "app", "app").ok

        def batch(*sqls):
            data = b""
            for sql in sqls:
                data += h.parse_msg(sql, name if "listen" in sql else "") + h.bind_msg(
                    stmt=name if "listen" in sql else "") + h.execute_msg()
            c.send(data + h.sync_msg())
            got = []
            while True:
                t, body = c.recv_msg(timeout=5)
                got.append(t)
                if t == "Z":
                    return got, body

        got, st = batch("select 1/0", "listen tide_pipe")
        assert got == ["1", "E", "Z"] and st == b"I", got  # 1/0 fails at Bind (planning)
        got, st = batch("select 1", "listen tide_pipe")
        assert got == ["1", "2", "D", "C", "E", "Z"] and st == b"I", got
        # the refused statement read only after the error came back (Flush asks for it)
        c.send(h.parse_msg("select 1/0") + h.bind_msg() + h.execute_msg() + h.flush_msg())
        assert [c.recv_msg(timeout=5)[0] for _ in range(2)] == ["1", "E"]
        got, st = batch("listen tide_pipe")
        assert got == ["Z"] and st == b"I", got
        got, st = batch("select 2")
        assert got == ["1", "2", "D", "C", "Z"] and st == b"I", got
        qr = raw_ok(c, "select count(*) from pg_listening_channels()")
        assert qr.results[0][1] == [("0",)]


def test_many_custom_settings_never_reach_the_next_client(pgtide):
    """pgtide reads back at most 8 dotted settings per link; a ninth still never leaks."""
    p = pgtide.start({**TX, "default_pool_size": 1})
    with connect(p) as a, connect(p) as b:
        with a.transaction():  # one link: ten SETs before the probe
            for i in range(10):
                a.execute(f"SET tide.k{i} = 'v{i}'")
        assert a.execute("select current_setting('tide.k7')").fetchone() == ("v7",)
        got = b.execute("select " + ", ".join(
            f"coalesce(current_setting('tide.k{i}', true), '')" for i in range(10))).fetchone()
        assert got == ("",) * 10, got
        assert a.execute("select current_setting('tide.k0')").fetchone() == ("v0",)
        assert b.execute("select current_setting('tide.k9', true)").fetchone()[0] in (None, "")
