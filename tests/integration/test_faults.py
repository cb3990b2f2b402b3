"""Injected faults: PostgreSQL killed and restarted, backends terminated mid-transaction and
mid-COPY, a server that never answers, a query that stalls mid-result, a client that reads a
large result slowly or vanishes mid-COPY, running out of file descriptors. Each test checks what
the clients see (exact SQLSTATEs, bounded times) and what PostgreSQL holds afterwards.

The kill/restart tests use their own cluster (`crashpg`), so the session's shared one is never
taken down under other tests."""

import os
import resource
import socket
import struct
import threading
import time

import psycopg
import pytest

import pgtide_harness as h

TX = {"pool_mode": "transaction"}


@pytest.fixture(scope="module")
def crashpg():
    """A PostgreSQL of this module's own, to kill and restart. synchronous_commit is on here:
    a commit acknowledged before the crash must survive it (the shared cluster runs with it
    off, which may lose the last commits in an immediate stop)."""
    cluster = h.PgCluster()
    try:
        cluster.start()
        cluster.admin_sql("ALTER SYSTEM SET synchronous_commit = on")
        cluster.admin_sql("SELECT pg_reload_conf()")
    except Exception:
        cluster.stop()
        raise
    yield cluster
    if not cluster.started:
        try:
            cluster.restart()
        except Exception:
            pass
    cluster.stop()


def crash_dbs(cluster):
    return {"app": f"host=127.0.0.1 port={cluster.port} dbname=app", "other": None}


def login(p, timeout=10):
    r = p.raw(timeout=timeout)
    res = r.login("app", "app", "app")
    assert res.ok, res
    return r


def backend_pid(raw):
    qr = raw.query("select pg_backend_pid()")
    assert not qr.errors, qr.errors
    return int(qr.results[0][1][0][0])


def read_to_eof(raw, timeout):
    """Reads until EOF; returns (messages, seconds taken). Fails if the connection stays open."""
    t0 = time.monotonic()
    msgs, closed = raw.read_until_closed(timeout)
    assert closed, f"connection still open after {timeout}s: {msgs}"
    return msgs, time.monotonic() - t0


def errors_of(msgs):
    return [h.parse_error(b) for t, b in msgs if t == "E"]


def notices_of(msgs):
    return [h.parse_error(b) for t, b in msgs if t == "N"]


def kill_and_restart(cluster, down_for=0.3):
    cluster.kill_immediate()
    time.sleep(down_for)
    cluster.restart()


# ---- PostgreSQL killed (pg_ctl stop -m immediate) and restarted --------------------------------

def test_restart_idle_transaction_pooled_clients_do_not_notice(pgtide, crashpg):
    """Transaction pooling: an idle client holds no server, so a PostgreSQL restart between its
    queries must not reach it: its next query runs on a fresh server connection."""
    p = pgtide.start({**TX, "default_pool_size": 2}, databases=crash_dbs(crashpg))
    clients = [p.connect() for _ in range(3)]
    try:
        before = {c.execute("select pg_backend_pid()").fetchone()[0] for c in clients}
        kill_and_restart(crashpg)
        after = set()
        for i, c in enumerate(clients):
            t0 = time.monotonic()
            assert c.execute("select %s::int", (i,)).fetchone() == (i,)
            assert time.monotonic() - t0 < 3
            after.add(c.execute("select pg_backend_pid()").fetchone()[0])
            assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert not (before & after), "a server from before the restart was used again"
        assert len(after) <= 2
    finally:
        for c in clients:
            c.close()
    assert p.alive()


def test_restart_idle_session_client_gets_08006_then_reconnects(pgtide, crashpg):
    """Session pooling: the client owns its server session, which the crash destroyed (its SETs,
    temp tables, prepared statements): pgtide tells it at once with FATAL 08006 and closes it,
    without waiting for its next query. A new connection works after the restart."""
    p = pgtide.start({"pool_mode": "session"}, databases=crash_dbs(crashpg))
    raw = login(p)
    try:
        backend_pid(raw)
        t0 = time.monotonic()
        crashpg.kill_immediate()
        msgs, _ = read_to_eof(raw, 5)
        took = time.monotonic() - t0
        errs = errors_of(msgs)
        assert [(e.severity, e.sqlstate) for e in errs] == [("FATAL", "08006")], msgs
        assert took < 3, f"the client learned of the crash after {took:.2f}s"
    finally:
        raw.close()
        crashpg.restart()
    with p.connect() as c:
        assert c.execute("select 'back'").fetchone() == ("back",)


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_kill_during_query(pgtide, crashpg, mode):
    """A client inside a running query when PostgreSQL dies gets FATAL 08006 and EOF within a
    bounded time, never a hang; pgtide serves new clients once PostgreSQL is back."""
    p = pgtide.start({"pool_mode": mode}, databases=crash_dbs(crashpg))
    raw = login(p)
    try:
        backend_pid(raw)
        raw.send(h.query_message("select pg_sleep(30)"))
        h.wait_for(lambda: [b for b in crashpg.backends(user="app")
                            if (b["query"] or "").startswith("select pg_sleep")], 5,
                   what="the query running")
        t0 = time.monotonic()
        crashpg.kill_immediate()
        msgs, _ = read_to_eof(raw, 5)
        took = time.monotonic() - t0
        errs = errors_of(msgs)
        assert [(e.severity, e.sqlstate) for e in errs] == [("FATAL", "08006")], msgs
        assert not [m for m in msgs if m[0] in ("C", "Z")], msgs
        print(f"\n[{mode}] error {took:.2f}s after the kill")
        assert took < 3
    finally:
        raw.close()
        crashpg.restart()
    t0 = time.monotonic()
    with p.connect() as c:
        assert c.execute("select 'served again'").fetchone() == ("served again",)
    assert time.monotonic() - t0 < 5
    assert p.alive()


def test_kill_inside_transaction(pgtide, crashpg):
    """Rows committed before the crash are all there after it; the rows of the transaction open
    at the crash are not; its client got FATAL 08006."""
    crashpg.admin_sql("DROP TABLE IF EXISTS crash_rows", db="app")
    crashpg.admin_sql("CREATE TABLE crash_rows (id int, tag text)", db="app")
    crashpg.admin_sql("ALTER TABLE crash_rows OWNER TO app", db="app")
    p = pgtide.start(TX, databases=crash_dbs(crashpg))
    with p.connect() as c:
        for i in range(10):  # ten committed transactions of 10 rows each
            c.execute("insert into crash_rows select g, 'committed' from "
                      "generate_series(%s::int, %s::int) g", (i * 10, i * 10 + 9))
    raw = login(p)
    try:
        assert raw.query("begin").status == "T"
        qr = raw.query("insert into crash_rows select g, 'open' from generate_series(1, 50) g")
        assert qr.status == "T" and not qr.errors, qr.errors
        crashpg.kill_immediate()
        msgs, took = read_to_eof(raw, 5)
        assert [(e.severity, e.sqlstate) for e in errors_of(msgs)] == [("FATAL", "08006")]
        assert took < 3
    finally:
        raw.close()
        crashpg.restart()
    with p.connect() as c:  # the same pgtide, no restart
        rows = dict(c.execute("select tag, count(*) from crash_rows group by tag").fetchall())
        assert rows == {"committed": 100}, rows
        assert c.execute("select count(distinct id) from crash_rows").fetchone() == (100,)


# ---- a backend terminated (pg_terminate_backend) -----------------------------------------------

def _terminate(pg, pid):
    assert pg.admin_value("select pg_terminate_backend(%s)", (pid,)) is True


def _other_client_works(p):
    with p.connect() as c:
        return c.execute("select 'others'").fetchone() == ("others",)


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_terminate_backend_mid_transaction(pgtide, pg, table, mode):
    """The client gets PostgreSQL's own FATAL 57P01 (nothing more from pgtide) and EOF; the
    open transaction is not committed; other clients are served throughout."""
    t = table("id int")
    p = pgtide.start({"pool_mode": mode})
    bystander = p.connect()
    raw = login(p)
    try:
        assert raw.query("begin").status == "T"
        assert not raw.query(f"insert into {t} select generate_series(1, 25)").errors
        pid = backend_pid(raw)
        assert bystander.execute("select 1").fetchone() == (1,)
        _terminate(pg, pid)
        msgs, took = read_to_eof(raw, 5)
        errs = errors_of(msgs)
        assert [(e.severity, e.sqlstate) for e in errs] == [("FATAL", "57P01")], msgs
        assert took < 2
        assert bystander.execute("select 2").fetchone() == (2,)
        assert _other_client_works(p)
        assert pg.admin_value(f"select count(*) from {t}", db="app") == 0
    finally:
        raw.close()
        bystander.close()
    assert p.alive()


@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_terminate_backend_mid_copy_in(pgtide, pg, table, mode):
    """COPY FROM STDIN with part of the data sent: the client gets FATAL 57P01 and EOF, no row
    lands, and pgtide keeps serving."""
    t = table("id int")
    p = pgtide.start({"pool_mode": mode, "default_pool_size": 1})
    raw = login(p)
    try:
        pid = backend_pid(raw)
        raw.send(h.query_message(f"copy {t} from stdin"))
        assert raw.recv_msg()[0] == "G"
        raw.send(h.copy_data_msg(b"".join(b"%d\n" % i for i in range(1000))))
        time.sleep(0.2)
        _terminate(pg, pid)
        msgs, took = read_to_eof(raw, 5)
        errs = errors_of(msgs)
        assert [(e.severity, e.sqlstate) for e in errs] == [("FATAL", "57P01")], msgs
        assert took < 2
        # a client that knows nothing yet keeps sending: pgtide must not choke on it
        try:
            raw.send(h.copy_data_msg(b"5\n") + h.copy_done_msg())
        except OSError:
            pass
    finally:
        raw.close()
    assert pg.admin_value(f"select count(*) from {t}", db="app") == 0
    t0 = time.monotonic()
    assert _other_client_works(p)  # pool size 1: the dead server's slot is free again
    assert time.monotonic() - t0 < 3
    assert p.alive()


# ---- a server that never answers, a query that stalls ------------------------------------------

class SilentServer:
    """Accepts TCP connections and never sends a byte (holds them open until closed)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.accepted = 0
        self._stop = False
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.sock.settimeout(0.1)
        while not self._stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.accepted += 1
            self.conns.append(c)

    def close(self):
        self._stop = True
        self.thread.join(2)
        for c in self.conns:
            c.close()
        self.sock.close()


def test_server_connect_timeout_against_a_silent_server(pgtide, pg):
    """A [databases] entry whose server accepts TCP but never answers: the client gets FATAL
    08006 "timeout expired" after server_connect_timeout (1 s), not before, not much later;
    clients of the real database are served without delay meanwhile; while
    server_login_retry runs the next client fails at once with the same error."""
    silent = SilentServer()
    try:
        p = pgtide.start({**TX, "server_connect_timeout": 1, "server_login_retry": 30},
                         databases={"stuck": f"host=127.0.0.1 port={silent.port} dbname=x"})
        with p.connect() as good:
            good.execute("select 1")
            job = h.Background(h.login_or_query_error, p.host, p.port, "app", "app", "stuck",
                               timeout=10)
            worst = 0.0
            while not job.done():
                t0 = time.monotonic()
                assert good.execute("select 'real'").fetchone() == ("real",)
                worst = max(worst, time.monotonic() - t0)
                time.sleep(0.02)
            err, took = job.result(timeout=10)
        print(f"\nconnect timeout error after {took:.2f}s; worst real-pool query "
              f"{worst * 1000:.1f} ms meanwhile")
        assert err is not None, "the client of the silent server got no error"
        assert (err.severity, err.sqlstate) == ("FATAL", "08006"), err
        assert "timeout expired" in err.message, err
        assert 0.9 <= took <= 2.5, f"server_connect_timeout=1 fired after {took:.2f}s"
        assert worst < 0.5, f"a query on the real pool took {worst:.2f}s"
        assert silent.accepted == 1
        # server_login_retry: no new attempt, the next client fails at once
        err2, took2 = h.login_or_query_error(p.host, p.port, "app", "app", "stuck", timeout=5)
        assert err2 is not None and err2.sqlstate == "08006", err2
        assert took2 < 0.5
        assert silent.accepted == 1
        assert _other_client_works(p)
    finally:
        silent.close()


def _stalling_query(n_before=4):
    """Rows of 20 kB each: the first n_before reach the client (more than PostgreSQL's 8 kB
    output buffer), then the query sleeps 10 s before the last row."""
    return (f"select g, repeat('x', 20000), case when g = {n_before + 1} then pg_sleep(10) end "
            f"from generate_series(1, {n_before + 1}) g")


def test_query_timeout_cancels_a_query_stalled_mid_result(pgtide):
    """The query has sent rows, then stalls: query_timeout (1 s) cancels it; the client gets the
    rows already sent, then ERROR 57014 and ReadyForQuery, and its connection works after."""
    p = pgtide.start({**TX, "query_timeout": 1})
    raw = login(p)
    try:
        t0 = time.monotonic()
        qr = raw.query(_stalling_query(), timeout=8)
        took = time.monotonic() - t0
        kinds = [m[0] for m in qr.messages]
        assert kinds.count("D") == 4, kinds
        assert [(e.severity, e.sqlstate) for e in qr.errors] == [("ERROR", "57014")], qr.errors
        assert kinds[-1] == "Z" and qr.status == "I"
        print(f"\nquery_timeout=1: 57014 after {took:.2f}s")
        assert 0.9 <= took <= 2.5
        assert raw.query("select 'alive'").results[0][1] == [("alive",)]
    finally:
        raw.close()


@pytest.mark.parametrize("query_timeout, wait_timeout", [(1, 4), (4, 1)])
def test_query_timeout_and_the_waiting_queue(pgtide, query_timeout, wait_timeout):
    """Pool size 1, a query stalled mid-result holds the server, a second client queues.
    query_timeout < query_wait_timeout: the cancel frees the server and the waiter runs.
    query_wait_timeout < query_timeout: the waiter gets 53300 at its deadline, while the
    stalled query is still running, and gets 57014 at its own."""
    p = pgtide.start({**TX, "default_pool_size": 1, "query_timeout": query_timeout,
                      "query_wait_timeout": wait_timeout})
    stalled, waiter = login(p), login(p)
    try:
        t0 = time.monotonic()
        stalled.send(h.query_message(_stalling_query()))
        assert stalled.recv_msg()[0] == "T"
        job = h.Background(waiter.query, "select 'waited'", timeout=10)
        first = h.Background(stalled.read_results, timeout=10)
        wq, sq = job.result(timeout=10), first.result(timeout=10)
        w_at, s_at = job.finished_at - t0, first.finished_at - t0
        print(f"\nquery_timeout={query_timeout} query_wait_timeout={wait_timeout}: stalled "
              f"done at {s_at:.2f}s, waiter at {w_at:.2f}s")
        assert [e.sqlstate for e in sq.errors] == ["57014"], sq.errors
        assert query_timeout - 0.1 <= s_at <= query_timeout + 1.5
        if query_timeout < wait_timeout:
            assert not wq.errors and wq.results[0][1] == [("waited",)], wq.messages
            assert s_at <= w_at <= s_at + 1
        else:
            assert [e.sqlstate for e in wq.errors] == ["53300"], wq.messages
            assert wait_timeout - 0.1 <= w_at <= wait_timeout + 1.5
            assert w_at < s_at
    finally:
        stalled.close()
        waiter.close()
