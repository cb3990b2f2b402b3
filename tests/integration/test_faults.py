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
import subprocess
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
            # served once the cancel freed the server (the two threads' clocks are read a
            # scheduling moment apart, hence the slack)
            assert query_timeout - 0.1 <= w_at and s_at - 0.1 <= w_at <= s_at + 1
        else:
            assert [e.sqlstate for e in wq.errors] == ["53300"], wq.messages
            assert wait_timeout - 0.1 <= w_at <= wait_timeout + 1.5
            assert w_at < s_at
    finally:
        stalled.close()
        waiter.close()


# ---- slow and vanishing clients ----------------------------------------------------------------

def sanitized():
    with open(h.pgtide_bin(), "rb") as f:
        return b"__asan_init" in f.read()


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


class StreamCounter:
    """Reads a simple-query reply off a raw socket without keeping it: counts DataRows, stops at
    ReadyForQuery."""

    def __init__(self, raw):
        self.sock = raw.sock
        self.buf = bytearray(raw.buf)
        raw.buf = b""
        self.rows = 0
        self.bytes = 0
        self.kinds = []  # types other than DataRow, in order
        self.done = False

    def feed(self, max_bytes):
        chunk = self.sock.recv(max_bytes)
        if not chunk:
            raise EOFError("closed mid-result")
        self.bytes += len(chunk)
        self.buf += chunk
        off = 0
        while len(self.buf) - off >= 5:
            (ln,) = struct.unpack_from("!I", self.buf, off + 1)
            if len(self.buf) - off < 1 + ln:
                break
            t = chr(self.buf[off])
            if t == "D":
                self.rows += 1
            else:
                self.kinds.append(t)
                if t == "Z":
                    self.done = True
            off += 1 + ln
        del self.buf[:off]


def test_slow_reader_keeps_rss_bounded(pgtide):
    """A 200 MB result to a client that reads nothing for 3 s, then 64 kB every 10 ms for 2 s,
    then the rest: backpressure stops pgtide reading the server, so its RSS grows by a few MB,
    not by the result. Every row arrives."""
    p = pgtide.start(TX)
    raw = login(p, timeout=30)
    raw.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    try:
        assert raw.query("select 1").results
        pid = p.proc.pid
        base = rss_kb(pid)
        peak = [base]
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], rss_kb(pid))
                time.sleep(0.02)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        n = 200000
        raw.send(h.query_message(f"select repeat('x', 1000) from generate_series(1, {n})"))
        time.sleep(3)
        stalled_peak = peak[0]
        sc = StreamCounter(raw)
        raw.sock.settimeout(10)
        t_end = time.monotonic() + 2
        while time.monotonic() < t_end:
            sc.feed(65536)
            time.sleep(0.01)
        slow_bytes = sc.bytes
        t0 = time.monotonic()
        while not sc.done and time.monotonic() - t0 < 30:
            sc.feed(1 << 20)
        stop.set()
        sampler.join(2)
        assert sc.done, "the result did not finish"
        assert sc.rows == n
        assert sc.kinds == ["T", "C", "Z"], sc.kinds
        growth_mb = (peak[0] - base) / 1024
        print(f"\nslow reader: {sc.bytes / 1e6:.0f} MB relayed; pgtide RSS {base / 1024:.1f} MB "
              f"before, +{(stalled_peak - base) / 1024:.1f} MB after 3 s unread, peak "
              f"+{growth_mb:.1f} MB; {slow_bytes / 1e6:.1f} MB read in the slow phase")
        assert sc.bytes > 200e6
        stalled_mb = (stalled_peak - base) / 1024
        assert stalled_mb < 10, f"pgtide grew by {stalled_mb:.1f} MB with the result unread"
        # ASan's quarantine holds freed buffers back (256 MB by default): under it, only the
        # stalled phase says something about pgtide
        if not sanitized():
            assert growth_mb < 20, f"pgtide grew by {growth_mb:.1f} MB under a slow reader"
        assert raw.query("select 'after'").results[0][1] == [("after",)]
    finally:
        raw.close()


@pytest.mark.parametrize("where", ["between_messages", "mid_message"])
def test_client_vanishes_mid_copy_in_transaction(pgtide, pg, table, where):
    """Transaction pooling, pool size 1: a client inside BEGIN streams COPY data (2 MB) and
    vanishes (RST). Nothing it sent is committed and rows committed earlier stay.
    between_messages (every CopyData whole and read by the server): pgtide sends CopyFail and
    the same server connection goes back to the pool clean: the next client gets it, outside
    any transaction. mid_message (a CopyData half sent): that server cannot be finished
    cleanly, so it is closed and the next client gets a new one; never more than one."""
    t = table("id int, pad text")
    p = pgtide.start({**TX, "default_pool_size": 1})
    with p.connect() as c:
        c.execute(f"insert into {t} select g, 'kept' from generate_series(1, 7) g")
        pid = c.execute("select pg_backend_pid()").fetchone()[0]
    raw = login(p)
    try:
        assert raw.query("begin").status == "T"
        raw.send(h.query_message(f"copy {t} from stdin"))
        assert raw.recv_msg()[0] == "G"
        line = b"%d\t" + b"p" * 200 + b"\n"
        sent = 0
        for k in range(100):  # 100 messages of 20 kB
            chunk = b"".join(line % (k * 100 + i) for i in range(100))
            raw.send(h.copy_data_msg(chunk))
            sent += len(chunk)
        if where == "mid_message":
            raw.send(b"d" + struct.pack("!I", 4 + 100000) + b"1\tpartial\n" * 1000)
        h.wait_for(lambda: (pg.admin_value(
            "select bytes_processed from pg_stat_progress_copy where pid = %s", (pid,))
            or 0) >= sent, 5, what="the server to read the COPY data")
        time.sleep(0.1)
    finally:
        raw.abort()
    t0 = time.monotonic()
    with p.connect() as c:
        now_pid = c.execute("select pg_backend_pid()").fetchone()[0]
        if where == "between_messages":
            assert now_pid == pid, "the server was not given back to the pool"
        else:
            assert now_pid != pid, "a server left mid-message was reused"
        assert c.execute(f"select pad, count(*) from {t} group by pad").fetchall() == \
            [("kept", 7)]
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    took = time.monotonic() - t0
    print(f"\n[{where}] next client served {took:.2f}s after the COPY client vanished")
    assert took < 5
    if where == "between_messages":
        # CopyFail ends the COPY: no cancel, which could only land on pgtide's ROLLBACK,
        # fail it and cost the server
        assert "cancelling it" not in p.log() and "reset query failed" not in p.log()
    h.wait_for(lambda: pg.count_backends(user="app", db="app") == 1, 5,
               what="exactly one server for pool size 1")


# ---- running out of descriptors and client slots -----------------------------------------------

def _crowd_member(p):
    """Connects and logs in; returns (RawConn, None) when admitted, (None, PgError) when
    refused (refused before the startup packet, as pgtide does out of descriptors, or after)."""
    import select
    r = h.RawConn(p.host, p.port, timeout=5)
    ready, _, _ = select.select([r.sock], [], [], 0.05)
    if ready:
        err = h.read_protocol_error(r, timeout=2)
        r.close()
        return None, err
    res = r.login("app", "app", "app")
    if res.ok:
        return r, None
    r.close()
    assert res.error is not None, res
    return None, res.error


@pytest.mark.parametrize("limit", ["nofile", "max_client_conn"])
def test_client_limit_reached(pgtide, limit):
    """pgtide runs out of file descriptors (RLIMIT_NOFILE 64) or of max_client_conn (20): the
    next clients get FATAL 53300; the clients already in carry on; once the crowd leaves, new
    clients are served again."""
    settings = {**TX, "default_pool_size": 2}
    settings["max_client_conn"] = 1000 if limit == "nofile" else 20
    p = pgtide.prepare(settings)
    if limit == "nofile":
        p.preexec_fn = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    p.spawn()
    p.wait_ready()
    first = [p.connect() for _ in range(2)]
    crowd, refused = [], []
    try:
        for c in first:
            c.execute("begin")
            c.execute("select 1")  # both servers open now
        for c in first:
            c.execute("commit")
        for _ in range(100):
            r, err = _crowd_member(p)
            if r:
                crowd.append(r)
            else:
                refused.append(err)
                if len(refused) == 3:
                    break
        print(f"\n[{limit}] {len(crowd)} admitted, then refused: "
              f"{[(e.sqlstate, e.message) for e in refused]}; pgtide fds {p.fd_count()}")
        assert len(refused) == 3, "nobody was refused"
        assert [(e.severity, e.sqlstate) for e in refused] == [("FATAL", "53300")] * 3
        assert all(e.message == "sorry, too many clients already" for e in refused)
        if limit == "max_client_conn":
            assert len(crowd) == 20 - len(first)
        else:
            assert 30 <= len(crowd) <= 62
        for i, c in enumerate(first):  # those in carry on, while the limit holds
            assert c.execute("select %s::int", (i,)).fetchone() == (i,)
        for r in crowd[:5]:
            assert r.query("select 'crowd'").results[0][1] == [("crowd",)]
    finally:
        for r in crowd:
            r.close()
    def admitted():
        r, err = _crowd_member(p)
        if r:
            ok = r.query("select 'again'").results[0][1] == [("again",)]
            r.close()
            return ok
        return False
    h.wait_for(admitted, 5, interval=0.1, what="a new client admitted after the crowd left")
    for c in first:
        assert c.execute("select 'still'").fetchone() == ("still",)
        c.close()
    assert p.alive()


def test_fd_exhaustion_while_a_client_needs_a_new_server(pgtide):
    """Out of descriptors (RLIMIT_NOFILE 64) when a queued client needs a new server: the
    failed socket() is pgtide's shortage, not the server's, so it must not start
    server_login_retry (15 s here) for the pool. The client waits (no error), and is served
    within a janitor tick or two of the crowd leaving; later clients are served at once."""
    p = pgtide.prepare({**TX, "default_pool_size": 2, "max_client_conn": 1000,
                        "server_login_retry": 15, "query_wait_timeout": 20})
    p.preexec_fn = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
    p.spawn()
    p.wait_ready()
    holder, needy = p.connect(), p.connect()
    crowd = []
    try:
        holder.execute("begin")
        holder.execute("select 1")  # the only server, held
        for _ in range(100):
            r, err = _crowd_member(p)
            if not r:
                assert err.sqlstate == "53300", err
                break
            crowd.append(r)
        job = h.Background(needy.execute, "select 'needy'")
        time.sleep(1)
        assert not job.done(), f"the queued client did not wait: {job.exception(0)!r}"
        for r in crowd:
            r.close()
        crowd = []
        left = time.monotonic()
        assert job.result(timeout=10).fetchone() == ("needy",)
        took = time.monotonic() - left
        print(f"\nqueued client served {took:.2f}s after the crowd left")
        assert took < 2, f"served {took:.2f}s after descriptors were free again"
        holder.execute("commit")
        t0 = time.monotonic()
        with p.connect() as c:
            assert c.execute("select 'next'").fetchone() == ("next",)
        assert time.monotonic() - t0 < 1
        assert "out of file descriptors" in p.log()
    finally:
        for r in crowd:
            r.close()
        holder.close()
        needy.close()


# ---- a network partition between pgtide and PostgreSQL -----------------------------------------

FORWARDER = r"""
import os, socket, sys, threading
listen_addr, port, unix_path = sys.argv[1], int(sys.argv[2]), sys.argv[3]
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind((listen_addr, port)); srv.listen(64)
print("ready", flush=True)
def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    for s in (a, b):
        try: s.shutdown(socket.SHUT_RDWR)
        except OSError: pass
while True:
    c, _ = srv.accept()
    u = socket.socket(socket.AF_UNIX); u.connect(unix_path)
    for a, b in ((c, u), (u, c)):
        threading.Thread(target=pipe, args=(a, b), daemon=True).start()
"""


def _ip(*args, check=True):
    return __import__("subprocess").run(["ip", *args], capture_output=True, text=True,
                                        check=check, timeout=10)


@pytest.fixture
def partitionable(pg):
    """PostgreSQL reachable at 10.213.<n>.2:5432 through a veth pair into a network namespace
    of its own, where a forwarder passes TCP on to the cluster's Unix socket. Bringing the
    namespace's end of the link down partitions pgtide from PostgreSQL (packets vanish, no RST,
    no FIN). (tc netem, the other way to do this, needs the sch_netem module, which this kind
    of machine may lack; a link down needs only a namespace.) Skips where namespaces cannot be
    made (not root, no CAP_NET_ADMIN, no ip)."""
    import subprocess
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    n = os.getpid() % 250 + 1
    ns, va, vb = f"pgtide-f{os.getpid()}", f"ptf{os.getpid() % 100000}a", f"ptf{os.getpid() % 100000}b"
    try:
        r = _ip("netns", "add", ns, check=False)
    except FileNotFoundError:
        pytest.skip("the ip command is not installed")
    if r.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {r.stderr.strip()}")
    fwd = None
    try:
        _ip("link", "add", va, "type", "veth", "peer", "name", vb)
        _ip("link", "set", vb, "netns", ns)
        _ip("addr", "add", f"10.213.{n}.1/24", "dev", va)
        _ip("link", "set", va, "up")
        _ip("netns", "exec", ns, "ip", "addr", "add", f"10.213.{n}.2/24", "dev", vb)
        _ip("netns", "exec", ns, "ip", "link", "set", vb, "up")
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        unix_path = os.path.join(pg.dir, f".s.PGSQL.{pg.port}")
        fwd = subprocess.Popen(["ip", "netns", "exec", ns, "/usr/bin/python3", "-c", FORWARDER,
                                f"10.213.{n}.2", "5432", unix_path],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert fwd.stdout.readline().strip() == "ready"

        class Net:
            host = f"10.213.{n}.2"

            @staticmethod
            def partition():
                _ip("netns", "exec", ns, "ip", "link", "set", vb, "down")

            @staticmethod
            def heal():
                _ip("netns", "exec", ns, "ip", "link", "set", vb, "up")
        yield Net
    finally:
        if fwd:
            fwd.kill()
            fwd.wait(5)
        _ip("link", "del", va, check=False)
        _ip("netns", "del", ns, check=False)


def test_partition_during_query_is_bounded(pgtide, partitionable):
    """The network to PostgreSQL goes silent while a query runs (no RST, no FIN: TCP alone
    would take many minutes to notice). query_timeout (1 s) sends a cancel that cannot arrive
    either; after cancel_wait_timeout (1 s) more of silence the client gets FATAL 08006 and is
    closed, within bounds. After the network heals, new clients are served."""
    p = pgtide.start({**TX, "query_timeout": 1, "cancel_wait_timeout": 1},
                     databases={"app": f"host={partitionable.host} port=5432 dbname=app"})
    raw = login(p)
    try:
        assert raw.query("select 'through the namespace'").results[0][1] == \
            [("through the namespace",)]
        raw.send(h.query_message("select pg_sleep(30)"))
        time.sleep(0.2)
        t0 = time.monotonic()
        partitionable.partition()
        msgs, _ = read_to_eof(raw, 10)
        took = time.monotonic() - t0
        errs = errors_of(msgs)
        print(f"\npartition: client closed {took:.2f}s after the link went down: "
              f"{[(e.sqlstate, e.message) for e in errs]}")
        assert [(e.severity, e.sqlstate) for e in errs] == [("FATAL", "08006")], msgs
        assert "cancel" in errs[0].message
        assert 1.5 <= took <= 4.5
    finally:
        raw.close()
        partitionable.heal()
    with p.connect() as c:
        assert c.execute("select 'healed'").fetchone() == ("healed",)
    assert p.alive()



def _queued(port):
    """Bytes in flight on the loopback connection with this client port: the kernel's send
    queue on pgtide's side and the receive queue on the client's (ss from iproute2)."""
    out = subprocess.run(["ss", "-tn", f"( sport = :{port} or dport = :{port} )"],
                         capture_output=True, text=True, check=True).stdout
    return sum(int(f[1]) + int(f[2]) for f in (ln.split() for ln in out.splitlines()[1:]) if f)


@pytest.mark.deadline(120)
def test_a_server_paused_for_a_slow_reader_reads_again_for_the_next_client(pgtide):
    """Backpressure stops pgtide reading a server while its client's out-queue is over 256 kB.
    When the pump that crosses that mark also reads the result's end (CommandComplete,
    ReadyForQuery), the server goes back to the pool still paused; it must read again for the
    next client. The test measures what the kernel holds for an unread result (the socket
    buffers, autotuned), then tries results whose end lands around that much + 256 kB, each
    left unread until pgtide has done what it can; after each, another client's query on the
    one server must be answered. Before the fix one of them hung in two runs of three."""
    p = pgtide.start({**TX, "default_pool_size": 1})
    raw = login(p, timeout=30)
    other = login(p, timeout=30)
    port = raw.sock.getsockname()[1]
    row = 1017  # a DataRow of one 1000-character text column
    sql = "select repeat('x', 1000) from generate_series(1, {})"
    try:
        held = 0
        for _ in range(2):  # the second time with the buffers grown
            raw.send(h.query_message(sql.format(16000)))
            time.sleep(0.4)
            held = _queued(port)
            assert raw.read_results(timeout=30).status == "I"
        assert 0 < held < 16000 * row, f"pgtide did not stop at {held} bytes"
        base = (held + 256 * 1024) // row
        for n in range(base - 320, base + 320, 6):
            raw.send(h.query_message(sql.format(n)))
            time.sleep(0.15)  # unread: pgtide fills the sockets, then its out-queue
            qr = raw.read_results(timeout=30)
            assert qr.status == "I" and len(qr.results[0][1]) == n, n
            qr = other.query("select 1", timeout=5)  # the same server, for another client
            assert qr.status == "I" and qr.results[0][1] == [("1",)], n
    finally:
        raw.close()
        other.close()
