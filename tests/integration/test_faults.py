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
