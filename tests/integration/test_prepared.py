"""Named prepared statements under transaction pooling: a client's statements live in its own
namespace whatever server it lands on (pgtide prepares them where they are missing and hides
the reply to its own Parse), Close / DEALLOCATE / DISCARD ALL act on that namespace, a bounded
per-server cache (max_prepared_statements) evicts the least recently used, and a plan that must
change its result type after a schema change is recovered from when that is safe.

Most tests use default_pool_size 1 or 2 with more clients than servers. elsewhere() keeps a
chosen server inside a helper's transaction so the test's client *must* land on the other one,
which has not seen the statement; pg_backend_pid() read in the same batch says where each batch
ran.

Every message sequence below is PostgreSQL 15's own, checked with PGTIDE_TEST_DIRECT=1 (the
fixture then targets PostgreSQL, and a client keeps one backend). PostgreSQL facts they rest on:
- Parse of a name that exists: 42P05 `prepared statement "s1" already exists`; Bind or Describe
  of an unknown name: 26000 `prepared statement "x" does not exist`; after an error everything
  up to Sync is skipped (a Parse in the skipped part does not happen), then ReadyForQuery.
- Close of an unknown statement or portal answers CloseComplete.
- Prepared statements are not transactional: a Parse in a transaction that rolls back stays,
  and so does a DEALLOCATE in it.
- DEALLOCATE x and DEALLOCATE PREPARE x have the tag DEALLOCATE; DEALLOCATE [PREPARE] ALL has
  DEALLOCATE ALL; DEALLOCATE of an unknown name is 26000; DISCARD ALL in a transaction block is
  25001 `DISCARD ALL cannot run inside a transaction block`.
- In an aborted transaction, Bind of a statement is 25P02 unless the statement is a ROLLBACK
  (or COMMIT), which Parse and Bind accept there.
- After ALTER TABLE ADD COLUMN, Bind (and Describe) of a statement prepared as SELECT * fails
  with 0A000 `cached plan must not change result type`, every time: PostgreSQL never recovers
  (psycopg 3.1 does not either). Through pgtide a client outside a transaction gets the new
  result instead (the issue: "recovered from without the client seeing it when that is safe").
- The unnamed statement lives until the next unnamed Parse or simple Query (across Syncs);
  an unnamed or named portal lives until the end of its transaction.
"""

import contextlib
import os
import random
import struct
import threading

import psycopg
import psycopg2
import pytest

import pgtide_harness as h

DIRECT = os.environ.get("PGTIDE_TEST_DIRECT") == "1"
pgtide_only = pytest.mark.skipif(DIRECT, reason="pgtide's own behaviour")

TX = {"pool_mode": "transaction"}
Z_I, Z_T, Z_E = ("Z", "I"), ("Z", "T"), ("Z", "E")


# ---- messages --------------------------------------------------------------------------------

def parse(sql, name="", oids=()):
    return h.parse_msg(sql, name, oids)


def bind(params=(), stmt="", portal=""):
    return h.bind_msg(list(params), portal=portal, stmt=stmt)


def execute(portal="", max_rows=0):
    return h.execute_msg(portal, max_rows)


def describe(kind, name=""):
    return h.describe_msg(kind, name)


def close(kind, name):
    return h.message(b"C", kind.encode() + name.encode() + b"\0")


SYNC = h.sync_msg()
FLUSH = h.flush_msg()
# (unnamed) select pg_backend_pid(): appended to a batch, it says which server ran the batch
PID = parse("select pg_backend_pid()") + bind() + execute()


def err(code, msg):
    return ("E", code, msg)


def exists_err(name):
    return err("42P05", f'prepared statement "{name}" already exists')


def missing_err(name):
    return err("26000", f'prepared statement "{name}" does not exist')


def row(*values):
    return ("D", tuple(values))


def tag(t):
    return ("C", t)


def _cols(body):
    (n,) = struct.unpack("!H", body[:2])
    off, out = 2, []
    for _ in range(n):
        end = body.index(b"\0", off)
        name = body[off:end].decode()
        typ = struct.unpack("!I", body[end + 7:end + 11])[0]
        out.append((name, typ))
        off = end + 1 + 18
    return out


def _row(body):
    (n,) = struct.unpack("!H", body[:2])
    off, vals = 2, []
    for _ in range(n):
        (ln,) = struct.unpack("!i", body[off:off + 4])
        off += 4
        if ln < 0:
            vals.append(None)
        else:
            vals.append(body[off:off + ln].decode())
            off += ln
    return tuple(vals)


def summarize(msgs):
    """Messages as short comparable items: '1', '2', '3', 'n', 's' alone; ('D', row),
    ('C', tag), ('T', [(column, type oid)]), ('t', [oids]), ('E', SQLSTATE, message),
    ('Z', status). ParameterStatus and notices are left out. Every error must be severity
    ERROR in both S and V, as PostgreSQL sends them."""
    out = []
    for t, body in msgs:
        if t in ("S", "N"):
            continue
        if t == "E":
            e = h.parse_error(body)
            assert e.get("S") == "ERROR" and e.get("V") == "ERROR", e
            out.append(("E", e.get("C"), e.get("M")))
        elif t == "D":
            out.append(("D", _row(body)))
        elif t == "C":
            out.append(("C", body[:-1].decode()))
        elif t == "T":
            out.append(("T", _cols(body)))
        elif t == "t":
            (n,) = struct.unpack("!H", body[:2])
            out.append(("t", list(struct.unpack(f"!{n}I", body[2:2 + 4 * n]))))
        elif t == "Z":
            out.append(("Z", body.decode()))
        else:
            assert body == b"", (t, body)
            out.append(t)
    return out


def run(c, data, syncs=1, timeout=10):
    """Sends data, reads up to the `syncs`-th ReadyForQuery; returns summarize()d replies."""
    c.send(data)
    msgs = []
    while syncs:
        t, body = c.recv_msg(timeout=timeout)
        msgs.append((t, body))
        if t == "Z":
            syncs -= 1
    return summarize(msgs)


def read(c, n, timeout=10):
    """Reads exactly n messages (for a batch ended by Flush, not Sync)."""
    return summarize([c.recv_msg(timeout=timeout) for _ in range(n)])


def quiet(c, timeout=0.3):
    """True if nothing arrives within timeout (nothing is sent before Sync/Flush)."""
    try:
        c.recv_msg(timeout=timeout)
    except TimeoutError:
        return True
    return False


def run_pid(c, data, timeout=10):
    """Runs data + PID + Sync; returns (the replies without those of PID, the server's pid).
    pid is None if the batch failed before PID ran."""
    got = run(c, data + PID + SYNC, timeout=timeout)
    tail = got[-5:]
    if len(tail) == 5 and tail[0] == "1" and tail[1] == "2" and tail[2][0] == "D" \
            and tail[3] == tag("SELECT 1"):
        return got[:-5] + [got[-1]], int(tail[2][1][0])
    return got, None


def q(c, sql, timeout=10):
    """A simple Query; its summarize()d replies."""
    return run(c, h.query_message(sql), timeout=timeout)


def login(target, app=None, timeout=10):
    c = target.raw(timeout=timeout)
    res = c.login("app", "app", "app", params={"application_name": app} if app else None)
    assert res.ok, res
    return c


def connect(p, **kw):
    """psycopg 3 without automatic preparation (tests that want it say prepare=True)."""
    c = p.connect(**kw)
    c.prepare_threshold = None
    return c


@contextlib.contextmanager
def elsewhere(p, pid):
    """While the block runs, server `pid` is inside a helper client's transaction, so the
    test's next batch lands on the other server of a pool of 2 (one that may not have seen its
    statements). Directly against PostgreSQL a client has its one backend: nothing to do.
    The test's own clients must be idle (outside a transaction) when this is entered."""
    if DIRECT:
        yield
        return
    a, b = connect(p, autocommit=False), connect(p, autocommit=False)
    try:
        pa = a.execute("select pg_backend_pid()").fetchone()[0]
        pb = b.execute("select pg_backend_pid()").fetchone()[0]
        assert pa != pb, "two open transactions on one server"
        assert pid in (pa, pb), f"server {pid} is not in the pool any more ({pa}, {pb})"
        keep, let_go = (a, b) if pa == pid else (b, a)
        let_go.rollback()
        yield
        keep.rollback()
    finally:
        a.close()
        b.close()


def other_server(pid_a, pid_b):
    """Through pgtide, the batch ran on another server than the one given."""
    if not DIRECT:
        assert pid_a != pid_b, f"both batches ran on server {pid_a}"


# ---- load from real clients ------------------------------------------------------------------

@pytest.mark.deadline(90)
def test_pgbench_prepared_through_transaction_pooling(pgtide, pg, pgbench_tables):
    """pgbench -M prepared (named statements P0_0... parsed once per client connection) with
    10 clients on 3 servers: zero failed transactions, select-only and TPC-B."""
    r = h.pgbench(pg.host, pg.port, "-i", "-s", "1", "-q")
    assert r.returncode == 0, r.stderr
    p = pgtide.start({**TX, "default_pool_size": 3})
    with h.BackendSampler(pg, user="app", db="app") as sampler:
        for script in (["-S"], []):
            # One thread per client: pgbench prepares with the synchronous PQprepare, so a
            # thread whose client waits for a server (all busy in other clients' transactions)
            # would stop the very clients that could free one, through any pooler.
            r = h.pgbench(p.host, p.port, "-n", "-M", "prepared", "-c", "10", "-j", "10",
                          "-T", "4", *script, timeout=25)
            what = f"pgbench -M prepared {script}:\n{r.stdout}\n{r.stderr}"
            assert r.returncode == 0, what
            assert "ERROR" not in r.stderr, what
            done, _, failed = h.pgbench_summary(r)
            assert done > 100 and failed == 0, what
    if not DIRECT:
        assert sampler.max <= 3, f"PostgreSQL saw {sampler.max} backends with pool size 3"


QUERIES = [
    ("select %s::int + 1000, pg_backend_pid()", lambda i: i + 1000),
    ("select %s::text || '-text', pg_backend_pid()", lambda i: f"{i}-text"),
    ("select count(*)::int + %s, pg_backend_pid() from generate_series(1, 3)", lambda i: i + 3),
    ("select length(repeat('x', %s)), pg_backend_pid()", lambda i: i),
]


@pytest.mark.deadline(60)
def test_psycopg3_prepare_true_across_pooled_transactions(pgtide, pg):
    """12 psycopg 3 clients on 3 servers, execute(..., prepare=True) in 30 transactions each.
    psycopg names its statements _pg3_0, _pg3_1, ... in the order it prepares them; each client
    prepares the queries in another order, so one name means different SQL in different
    clients."""
    p = pgtide.start({**TX, "default_pool_size": 3})
    pids = set()
    lock = threading.Lock()

    def client(n):
        order = QUERIES[n % 4:] + QUERIES[:n % 4]
        seen = set()
        with p.connect(autocommit=n % 2 == 0) as c:
            for i in range(30):
                with c.transaction() if n % 2 else contextlib.nullcontext():
                    for sql, want in order:
                        v = i * 7 + n
                        got, pid = c.execute(sql, (v,), prepare=True).fetchone()
                        assert got == want(v), f"client {n}, round {i}: {sql} gave {got!r}"
                        seen.add(pid)
            names = [r[0] for r in c.execute("select name from pg_prepared_statements",
                                             prepare=False)] if DIRECT else None
        with lock:
            pids.update(seen)
        return names

    jobs = [h.Background(client, n) for n in range(12)]
    for j in jobs:
        names = j.result(timeout=50)
        if DIRECT:
            assert sorted(names) == ["_pg3_0", "_pg3_1", "_pg3_2", "_pg3_3"]
    if not DIRECT:
        assert 2 <= len(pids) <= 3, f"the clients ran on servers {pids} (pool size 3)"


@pytest.mark.deadline(60)
def test_psycopg3_pipeline_mode_with_prepared_statements(pgtide):
    """psycopg 3 pipeline mode: Parse/Bind/Execute of named statements for 20 queries, one
    Sync; 6 clients on 2 servers, 10 rounds each."""
    if not psycopg.Pipeline.is_supported():
        pytest.skip("libpq without pipeline mode")
    p = pgtide.start({**TX, "default_pool_size": 2})

    def client(n):
        with p.connect() as c:
            for r in range(10):
                with c.pipeline():
                    curs = [c.execute(QUERIES[(i + n) % 4][0], (r * 100 + i,), prepare=True)
                            for i in range(20)]
                got = [cur.fetchone()[0] for cur in curs]
                want = [QUERIES[(i + n) % 4][1](r * 100 + i) for i in range(20)]
                assert got == want, (n, r)
        return n

    jobs = [h.Background(client, n) for n in range(6)]
    assert sorted(j.result(timeout=50) for j in jobs) == list(range(6))


# ---- one name, two clients ---------------------------------------------------------------------

def test_same_name_different_sql_in_two_clients(pgtide):
    """a and b both call their statement s1, with different SQL and parameter types; they take
    turns, each landing on the server the other used last."""
    p = pgtide.start({**TX, "default_pool_size": 2})
    with login(p) as a, login(p) as b:
        assert run(a, parse("select 'a:' || $1::text", "s1") + SYNC) == ["1", Z_I]
        assert run(b, parse("select $1::int * 100, 'b'", "s1") + SYNC) == ["1", Z_I]
        got, last = run_pid(a, b"")
        for i in range(12):
            with elsewhere(p, last):
                got, pid = run_pid(b, bind([str(i)], stmt="s1") + execute())
            assert got == ["2", row(str(i * 100), "b"), tag("SELECT 1"), Z_I], i
            other_server(pid, last)
            last = pid
            with elsewhere(p, last):
                got, pid = run_pid(a, bind([f"x{i}"], stmt="s1") + execute())
            assert got == ["2", row(f"a:x{i}"), tag("SELECT 1"), Z_I], i
            other_server(pid, last)
            last = pid
        # a's s1 still takes text, b's still an int
        assert run(b, bind(["oops"], stmt="s1") + execute() + SYNC) == \
            [err("22P02", 'invalid input syntax for type integer: "oops"'), Z_I]
        assert run(a, bind(["oops"], stmt="s1") + execute() + SYNC) == \
            ["2", row("a:oops"), tag("SELECT 1"), Z_I]


def test_two_clients_same_sql(pgtide):
    """Two clients prepare the same SQL under different names (and under the same name): both
    get correct results on either server."""
    p = pgtide.start({**TX, "default_pool_size": 2})
    sql = "select $1::int + 1 as next"
    with login(p) as a, login(p) as b:
        assert run(a, parse(sql, "mine") + SYNC) == ["1", Z_I]
        assert run(b, parse(sql, "yours") + parse(sql, "mine") + SYNC) == ["1", "1", Z_I]
        _, last = run_pid(a, b"")
        for i in range(8):
            c, name = (a, "mine") if i % 2 else (b, "yours" if i % 4 == 0 else "mine")
            with elsewhere(p, last):
                got, pid = run_pid(c, bind([str(i)], stmt=name) + describe("P") + execute())
            assert got == ["2", ("T", [("next", 23)]), row(str(i + 1)), tag("SELECT 1"), Z_I]
            other_server(pid, last)
            last = pid
        assert run(a, bind(["1"], stmt="yours") + execute() + SYNC) == \
            [missing_err("yours"), Z_I]


@pgtide_only
def test_two_clients_same_sql_share_one_server_statement(pgtide):
    """The issue: two clients with the same SQL can share one server statement."""
    p = pgtide.start({**TX, "default_pool_size": 1})
    sql = "select $1::int * 3 /* shared */"
    with login(p) as a, login(p) as b, login(p) as c:
        assert run(a, parse(sql, "x") + bind(["1"], stmt="x") + execute() + SYNC) == \
            ["1", "2", row("3"), tag("SELECT 1"), Z_I]
        assert run(b, parse(sql, "y") + bind(["2"], stmt="y") + execute() + SYNC) == \
            ["1", "2", row("6"), tag("SELECT 1"), Z_I]
        got = q(c, f"select count(*) from pg_prepared_statements where statement = '{sql}'")
        assert got[1] == row("1"), got


# ---- pipelines, Flush, Describe ------------------------------------------------------------

def test_pipelined_parse_bind_execute_with_one_sync(pgtide):
    p = pgtide.start({**TX, "default_pool_size": 2})
    with login(p) as c:
        batch = (parse("select $1::int * 2", "dbl") + parse("select $1::text || '!'", "bang")
                 + bind(["21"], stmt="dbl") + execute() + bind(["hi"], stmt="bang")
                 + execute() + bind(["5"], stmt="dbl", portal="p5") + bind(["x"], stmt="bang")
                 + execute() + execute("p5"))
        got, pid = run_pid(c, batch)
        assert got == ["1", "1", "2", row("42"), tag("SELECT 1"), "2", row("hi!"),
                       tag("SELECT 1"), "2", "2", row("x!"), tag("SELECT 1"), row("10"),
                       tag("SELECT 1"), Z_I]
        # the same names, many times in one batch, on a server that has not seen them
        batch = b"".join(bind([str(i)], stmt="dbl") + execute()
                         + bind([str(i)], stmt="bang") + execute() for i in range(50))
        with elsewhere(p, pid):
            got, pid2 = run_pid(c, batch)
        other_server(pid, pid2)
        want = []
        for i in range(50):
            want += ["2", row(str(2 * i)), tag("SELECT 1"), "2", row(f"{i}!"),
                     tag("SELECT 1")]
        assert got == want + [Z_I]


def test_flush_driven_batches(pgtide):
    """Parse/Bind/Describe/Execute/Flush, read the replies, then Sync; the next batch on a
    server that has not seen the statement shows no reply to pgtide's own Parse."""
    p = pgtide.start({**TX, "default_pool_size": 2})
    with login(p) as c:
        c.send(parse("select $1::int + 1 as n, pg_backend_pid() as pid", "f1")
               + bind(["1"], stmt="f1") + describe("P") + execute() + FLUSH)
        got = read(c, 5)
        assert got[:3] == ["1", "2", ("T", [("n", 23), ("pid", 23)])]
        assert got[3][0] == "D" and got[3][1][0] == "2" and got[4] == tag("SELECT 1"), got
        pid = int(got[3][1][1])
        assert quiet(c), "a reply before Sync beyond what was flushed"
        assert run(c, SYNC) == [Z_I]
        with elsewhere(p, pid):
            c.send(bind(["41"], stmt="f1") + describe("P") + execute() + FLUSH)
            got = read(c, 4)
            assert got[:2] == ["2", ("T", [("n", 23), ("pid", 23)])], got
            assert got[2][1][0] == "42" and got[3] == tag("SELECT 1"), got
            other_server(pid, int(got[2][1][1]))
            assert quiet(c), "pgtide's own Parse of f1 was answered to the client"
            c.send(describe("S", "f1") + FLUSH)
            assert read(c, 2) == [("t", [23]), ("T", [("n", 23), ("pid", 23)])]
            assert run(c, SYNC) == [Z_I]


def test_describe_statement_on_a_server_that_has_not_seen_it(pgtide):
    p = pgtide.start({**TX, "default_pool_size": 2})
    with login(p) as c:
        got, pid = run_pid(c, parse("select $1::int + 1 as x, $2 as y, $3::numeric as z",
                                    "d1", (0, 25, 0))
                           + parse("do $$ begin end $$", "d2"))
        assert got == ["1", "1", Z_I]
        with elsewhere(p, pid):
            got, pid2 = run_pid(c, describe("S", "d1") + describe("S", "d2"))
        other_server(pid, pid2)
        assert got == [("t", [23, 25, 1700]), ("T", [("x", 23), ("y", 25), ("z", 1700)]),
                       ("t", []), "n", Z_I]


# ---- Close, 42P05, 26000 -----------------------------------------------------------------------

def test_close_then_parse_the_same_name_again(pgtide):
    p = pgtide.start({**TX, "default_pool_size": 2})
    with login(p) as c:
        got, pid = run_pid(c, parse("select 'first'", "s1"))
        assert got == ["1", Z_I]
        with elsewhere(p, pid):  # the Close reaches a server that has never seen s1
            assert run(c, close("S", "s1") + SYNC) == ["3", Z_I]
        assert run(c, bind(stmt="s1") + execute() + SYNC) == [missing_err("s1"), Z_I]
        assert run(c, parse("select 'second'", "s1") + bind(stmt="s1") + execute() + SYNC) == \
            ["1", "2", row("second"), tag("SELECT 1"), Z_I]
        got, pid = run_pid(c, bind(stmt="s1") + execute())
        with elsewhere(p, pid):
            assert run(c, bind(stmt="s1") + execute() + SYNC) == \
                ["2", row("second"), tag("SELECT 1"), Z_I]
        # Close and Parse of one name in one batch
        assert run(c, close("S", "s1") + parse("select 'third'", "s1") + bind(stmt="s1")
                   + execute() + SYNC) == ["3", "1", "2", row("third"), tag("SELECT 1"), Z_I]
        # Close of a statement or portal nobody has: CloseComplete, as PostgreSQL answers
        assert run(c, close("S", "never") + close("P", "never") + SYNC) == ["3", "3", Z_I]


def test_parse_of_a_name_the_client_has_is_42P05(pgtide):
    p = pgtide.start({**TX, "default_pool_size": 2})
    with login(p) as c:
        got, pid = run_pid(c, parse("select 1", "s1"))
        assert got == ["1", Z_I]
        # on the same server, in one batch: the rest of the batch is skipped
        assert run(c, parse("select 2", "s2") + parse("select 3", "s2") + bind(stmt="s2")
                   + execute() + SYNC) == ["1", exists_err("s2"), Z_I]
        # on a server that has not seen s1: pgtide answers as PostgreSQL would
        with elsewhere(p, pid):
            got = run(c, parse("select 'other'", "s1") + bind(stmt="s1") + execute()
                      + parse("select 4", "s4") + SYNC)
        assert got == [exists_err("s1"), Z_I]
        # s1 is still the first statement; s4 was skipped
        assert run(c, bind(stmt="s1") + execute() + SYNC) == \
            ["2", row("1"), tag("SELECT 1"), Z_I]
        assert run(c, bind(stmt="s4") + SYNC) == [missing_err("s4"), Z_I]
        # inside a transaction the error aborts it
        assert q(c, "BEGIN") == [tag("BEGIN"), Z_T]
        assert run(c, parse("select 5", "s1") + SYNC) == [exists_err("s1"), Z_E]
        assert q(c, "ROLLBACK") == [tag("ROLLBACK"), Z_I]


def test_unknown_name_is_26000(pgtide):
    p = pgtide.start({**TX, "default_pool_size": 2})
    with login(p) as a, login(p) as b:
        assert run(a, parse("select 'a'", "only_a") + SYNC) == ["1", Z_I]
        assert run(b, bind(stmt="nope") + execute() + parse("select 3", "s3") + SYNC) == \
            [missing_err("nope"), Z_I]
        assert run(b, describe("S", "nope") + SYNC) == [missing_err("nope"), Z_I]
        assert run(b, bind(stmt="s3") + SYNC) == [missing_err("s3"), Z_I]
        # another client's name is unknown to b, on every server
        for _ in range(4):
            assert run(b, bind(stmt="only_a") + execute() + SYNC) == \
                [missing_err("only_a"), Z_I]
            assert run(b, describe("S", "only_a") + SYNC) == [missing_err("only_a"), Z_I]
            assert run(a, bind(stmt="only_a") + execute() + SYNC) == \
                ["2", row("a"), tag("SELECT 1"), Z_I]
        # portals: PostgreSQL's own errors
        assert run(b, execute("nope") + SYNC) == [err("34000", 'portal "nope" does not exist'),
                                                   Z_I]
        assert run(b, describe("P", "nope") + SYNC) == \
            [err("34000", 'portal "nope" does not exist'), Z_I]


def test_error_inside_a_pipelined_batch_of_named_statements(pgtide):
    p = pgtide.start({**TX, "default_pool_size": 2})
    with login(p) as c:
        batch = (parse("select 'ok'", "e1") + bind(stmt="e1") + execute()
                 + parse("select 10 / (n - 3) from generate_series(1, 5) n", "e2")
                 + bind(stmt="e2") + execute()
                 + parse("select 'never'", "e3") + bind(stmt="e3") + execute())
        got, pid = run_pid(c, batch)
        assert pid is None
        assert got == ["1", "2", row("ok"), tag("SELECT 1"), "1", "2", row("-5"), row("-10"),
                       err("22012", "division by zero"), Z_I]
        # e1 and e2 were parsed before the error, e3 never was; on either server
        for _ in range(2):
            got, pid = run_pid(c, bind(stmt="e1") + execute())
            assert got == ["2", row("ok"), tag("SELECT 1"), Z_I]
            with elsewhere(p, pid):
                assert run(c, bind(stmt="e3") + execute() + SYNC) == [missing_err("e3"), Z_I]
                assert run(c, bind(stmt="e2") + execute() + SYNC) == \
                    ["2", row("-5"), row("-10"), err("22012", "division by zero"), Z_I]
                assert run(c, bind(stmt="e1") + execute() + SYNC) == \
                    ["2", row("ok"), tag("SELECT 1"), Z_I]


def test_messages_after_an_error_are_skipped_up_to_sync(pgtide):
    """After an error the server skips every message up to Sync: a Close or Parse there does
    not happen, whether it reached pgtide before the error came back or after it (the client
    read the error after a Flush, then sent more of the batch)."""
    p = pgtide.start({**TX, "default_pool_size": 1})
    with login(p) as c:
        assert run(c, parse("select 's1'", "s1") + SYNC) == ["1", Z_I]
        assert run(c, bind(stmt="nope") + close("S", "s1") + parse("select 9", "s9") + SYNC) \
            == [missing_err("nope"), Z_I]
        c.send(bind(stmt="nope") + FLUSH)
        assert read(c, 1) == [missing_err("nope")]
        assert quiet(c)
        assert run(c, close("S", "s1") + parse("select 9", "s9") + bind(stmt="s1") + execute()
                   + FLUSH + SYNC) == [Z_I]
        for _ in range(2):
            assert run(c, bind(stmt="s1") + execute() + SYNC) == \
                ["2", row("s1"), tag("SELECT 1"), Z_I]
            assert run(c, bind(stmt="s9") + SYNC) == [missing_err("s9"), Z_I]
        assert run(c, close("S", "s1") + parse("select 9", "s9") + bind(stmt="s9") + execute()
                   + SYNC) == ["3", "1", "2", row("9"), tag("SELECT 1"), Z_I]


def test_named_statements_in_an_aborted_transaction(pgtide):
    """In a failed transaction on a server that has not seen the statements: a SELECT is
    refused with 25P02 as PostgreSQL refuses it, a prepared ROLLBACK (Prisma names its
    transaction statements too) ends the transaction."""
    p = pgtide.start({**TX, "default_pool_size": 2})
    with login(p) as c:
        got, pid = run_pid(c, parse("select 9", "nine") + parse("ROLLBACK", "rb")
                           + parse("BEGIN", "bg"))
        assert got == ["1", "1", "1", Z_I]
        with elsewhere(p, pid):
            assert run(c, bind(stmt="bg") + execute() + SYNC) == ["2", tag("BEGIN"), Z_T]
            assert q(c, "select 1/0") == [err("22012", "division by zero"), Z_E]
            assert run(c, bind(stmt="nine") + execute() + SYNC) == \
                [err("25P02", "current transaction is aborted, commands ignored until end of "
                              "transaction block"), Z_E]
            assert run(c, bind(stmt="rb") + execute() + SYNC) == ["2", tag("ROLLBACK"), Z_I]
        assert run(c, bind(stmt="nine") + execute() + SYNC) == \
            ["2", row("9"), tag("SELECT 1"), Z_I]


def test_statements_outlive_a_rolled_back_transaction(pgtide):
    p = pgtide.start({**TX, "default_pool_size": 2})
    with login(p) as c:
        assert q(c, "BEGIN") == [tag("BEGIN"), Z_T]
        assert run(c, parse("select 5", "in_tx") + SYNC) == ["1", Z_T]
        got, pid = run_pid(c, bind(stmt="in_tx") + execute())
        assert got == ["2", row("5"), tag("SELECT 1"), Z_T]
        assert q(c, "ROLLBACK") == [tag("ROLLBACK"), Z_I]
        with elsewhere(p, pid):
            assert run(c, bind(stmt="in_tx") + execute() + SYNC) == \
                ["2", row("5"), tag("SELECT 1"), Z_I]
        # DEALLOCATE in a transaction that rolls back is not undone either
        assert q(c, "BEGIN; DEALLOCATE in_tx; ROLLBACK") == \
            [tag("BEGIN"), tag("DEALLOCATE"), tag("ROLLBACK"), Z_I]
        for _ in range(2):
            assert run(c, bind(stmt="in_tx") + SYNC) == [missing_err("in_tx"), Z_I]


# ---- DEALLOCATE, DISCARD ALL -------------------------------------------------------------------

def test_deallocate_among_the_statements_of_a_query(pgtide):
    """DEALLOCATE [PREPARE] name anywhere in a multi-statement Query acts on the client's
    names, on a server that may never have seen them: PostgreSQL's own tags and errors, in
    order; a DEALLOCATE that an earlier error stops does not happen."""
    p = pgtide.start({**TX, "default_pool_size": 2})
    sqls = {n: f"select '{n}'" for n in ("s1", "s2", "s3", "Up", "same_a", "same_b")}
    sqls["same_b"] = sqls["same_a"]  # two names, one text: one server-side statement
    with login(p) as c:
        assert run(c, b"".join(parse(v, k) for k, v in sqls.items()) + SYNC) == \
            ["1"] * len(sqls) + [Z_I]
        _, pid = run_pid(c, b"")
        with elsewhere(p, pid):
            got, pid2 = run_pid(c, b"")
            assert q(c, "select 1; DEALLOCATE s1") == \
                [("T", [("?column?", 23)]), row("1"), tag("SELECT 1"), tag("DEALLOCATE"), Z_I]
        assert run(c, bind(stmt="s1") + SYNC) == [missing_err("s1"), Z_I]
        # an error before it: it does not run
        assert q(c, "select 1/0; deallocate prepare s2") == \
            [err("22012", "division by zero"), Z_I]
        assert run(c, bind(stmt="s2") + execute() + SYNC) == \
            ["2", row("s2"), tag("SELECT 1"), Z_I]
        # an error after it: it stays done (prepared statements are not transactional)
        assert q(c, "DEALLOCATE s2; select 1/0") == \
            [tag("DEALLOCATE"), err("22012", "division by zero"), Z_I]
        assert run(c, bind(stmt="s2") + SYNC) == [missing_err("s2"), Z_I]
        # the same name twice: gone by the second time
        assert q(c, "DEALLOCATE s3; DEALLOCATE s3") == [tag("DEALLOCATE"), missing_err("s3"),
                                                        Z_I]
        # two names of one text, a quoted name, comments
        assert q(c, 'DEALLOCATE same_a; /* ; */ DEALLOCATE PREPARE "Up" -- x\n;'
                    'DEALLOCATE same_b') == \
            [tag("DEALLOCATE"), tag("DEALLOCATE"), tag("DEALLOCATE"), Z_I]
        for n in ("same_a", "same_b", "Up", "s3"):
            assert run(c, bind(stmt=n) + SYNC) == [missing_err(n), Z_I], n
        # in a failed transaction: refused (25P02) and kept, unless ROLLBACK comes first
        assert run(c, parse("select 'k1'", "k1") + parse("select 'k2'", "k2") + SYNC) == \
            ["1", "1", Z_I]
        assert q(c, "BEGIN") == [tag("BEGIN"), Z_T]
        assert q(c, "select 1/0") == [err("22012", "division by zero"), Z_E]
        assert q(c, "DEALLOCATE k1") == \
            [err("25P02", "current transaction is aborted, commands ignored until end of "
                          "transaction block"), Z_E]
        assert q(c, "ROLLBACK; DEALLOCATE k2") == [tag("ROLLBACK"), tag("DEALLOCATE"), Z_I]
        assert run(c, bind(stmt="k1") + execute() + SYNC) == \
            ["2", row("k1"), tag("SELECT 1"), Z_I]
        assert run(c, bind(stmt="k2") + SYNC) == [missing_err("k2"), Z_I]
        # after DEALLOCATE ALL in the same Query, a name is unknown
        assert q(c, "DEALLOCATE ALL; DEALLOCATE k1") == \
            [tag("DEALLOCATE ALL"), missing_err("k1"), Z_I]
        # a name the client never had
        assert q(c, "select 2; DEALLOCATE nope") == \
            [("T", [("?column?", 23)]), row("2"), tag("SELECT 1"),
             missing_err("nope"), Z_I]



def _parse_all(c, sqls):
    names = sorted(sqls)
    assert run(c, b"".join(parse(sqls[n], n) for n in names) + SYNC) == \
        ["1"] * len(names) + [Z_I]


def _check(c, sqls, gone=()):
    """Every name in sqls answers its own value (select 'value'); every name in gone is 26000."""
    for n in sorted(sqls):
        assert run(c, bind(stmt=n) + execute() + SYNC) == \
            ["2", row(sqls[n].split("'")[1]), tag("SELECT 1"), Z_I], n
    for n in gone:
        assert run(c, bind(stmt=n) + execute() + SYNC) == [missing_err(n), Z_I], n


def test_deallocate_and_discard_all_act_on_the_clients_own_names(pgtide):
    """a and b share one server and the names s1..s3 (different SQL); every form of DEALLOCATE
    and DISCARD ALL a sends removes a's names only."""
    p = pgtide.start({**TX, "default_pool_size": 1})
    a_sql = {f"s{i}": f"select 'a{i}'" for i in (1, 2, 3)}
    b_sql = {f"s{i}": f"select 'b{i}'" for i in (1, 2, 3)}
    with login(p) as a, login(p) as b:
        _parse_all(a, a_sql)
        _parse_all(b, b_sql)
        _check(a, a_sql)
        _check(b, b_sql)

        assert q(a, "DEALLOCATE s1") == [tag("DEALLOCATE"), Z_I]
        _check(a, {k: v for k, v in a_sql.items() if k != "s1"}, gone=["s1"])
        _check(b, b_sql)
        assert q(a, "DEALLOCATE PREPARE s2") == [tag("DEALLOCATE"), Z_I]
        _check(a, {"s3": a_sql["s3"]}, gone=["s1", "s2"])
        assert q(a, "deallocate s2") == [missing_err("s2"), Z_I]
        _check(b, b_sql)

        a_sql["s1"] = "select 'a1 again'"
        assert run(a, parse(a_sql["s1"], "s1") + SYNC) == ["1", Z_I]
        _check(a, {k: a_sql[k] for k in ("s1", "s3")}, gone=["s2"])
        assert q(a, "DEALLOCATE ALL") == [tag("DEALLOCATE ALL"), Z_I]
        _check(a, {}, gone=["s1", "s2", "s3"])
        _check(b, b_sql)

        _parse_all(a, a_sql)
        assert q(a, "deallocate prepare all") == [tag("DEALLOCATE ALL"), Z_I]
        _check(a, {}, gone=["s1", "s2", "s3"])
        _check(b, b_sql)

        _parse_all(a, a_sql)
        assert q(a, "DISCARD ALL") == [tag("DISCARD ALL"), Z_I]
        _check(a, {}, gone=["s1", "s2", "s3"])
        _check(b, b_sql)

        # DISCARD ALL inside a transaction block fails and removes nothing
        _parse_all(a, a_sql)
        assert q(a, "BEGIN") == [tag("BEGIN"), Z_T]
        assert q(a, "DISCARD ALL") == \
            [err("25001", "DISCARD ALL cannot run inside a transaction block"), Z_E]
        assert q(a, "ROLLBACK") == [tag("ROLLBACK"), Z_I]
        _check(a, a_sql)

        # several statements in one Query
        assert q(a, "select 1; deallocate all; select 2") == \
            [("T", [("?column?", 23)]), row("1"), tag("SELECT 1"), tag("DEALLOCATE ALL"),
             ("T", [("?column?", 23)]), row("2"), tag("SELECT 1"), Z_I]
        _check(a, {}, gone=["s1", "s2", "s3"])

        # DEALLOCATE ALL through the extended protocol
        _parse_all(a, a_sql)
        assert run(a, parse("DEALLOCATE ALL") + bind() + describe("P") + execute() + SYNC) == \
            ["1", "2", "n", tag("DEALLOCATE ALL"), Z_I]
        _check(a, {}, gone=["s1", "s2", "s3"])
        _check(b, b_sql)


@pytest.mark.deadline(60)
def test_deallocate_all_in_every_transaction_prisma_pgbouncer_mode(pgtide):
    """Prisma's old ?pgbouncer=true traffic: BEGIN; DEALLOCATE ALL; named Parse/Bind/Execute
    s0, s1; COMMIT, in every transaction, from 6 clients, while 4 other clients execute their
    own s0 and s1 (different SQL), parsed once, across 40 transactions each. Pool size 2."""
    p = pgtide.start({**TX, "default_pool_size": 2})

    def bouncer_mode(n):
        with login(p, timeout=20) as c:
            for i in range(40):
                assert q(c, "BEGIN") == [tag("BEGIN"), Z_T]
                assert q(c, "DEALLOCATE ALL") == [tag("DEALLOCATE ALL"), Z_T]
                got = run(c, parse("select $1::int * 2", "s0") + bind([str(i)], stmt="s0")
                          + execute() + parse(f"select $1::text || '-{n}'", "s1")
                          + bind([str(i)], stmt="s1") + execute() + SYNC)
                assert got == ["1", "2", row(str(2 * i)), tag("SELECT 1"), "1", "2",
                               row(f"{i}-{n}"), tag("SELECT 1"), Z_T], (n, i)
                assert q(c, "COMMIT") == [tag("COMMIT"), Z_I]
        return n

    def steady(n):
        with login(p, timeout=20) as c:
            assert run(c, parse(f"select $1::int + {n * 1000}", "s0")
                       + parse(f"select 'steady {n}'", "s1") + SYNC) == ["1", "1", Z_I]
            for i in range(40):
                got = run(c, bind([str(i)], stmt="s0") + execute() + bind(stmt="s1")
                          + execute() + SYNC)
                assert got == ["2", row(str(n * 1000 + i)), tag("SELECT 1"), "2",
                               row(f"steady {n}"), tag("SELECT 1"), Z_I], (n, i)
        return n

    jobs = [h.Background(bouncer_mode, n) for n in range(6)]
    jobs += [h.Background(steady, n) for n in range(6, 10)]
    assert sorted(j.result(timeout=50) for j in jobs) == list(range(10))


# ---- the bounded cache ---------------------------------------------------------------------------

def test_max_prepared_statements_evicts_least_recently_used(pgtide):
    """max_prepared_statements = 2 on one server; one client has 10 statements and uses them
    in many orders, one at a time and all in one batch; a second client has the same names
    with other SQL. Every result is right; the server holds at most 2 statements at rest."""
    p = pgtide.start({**TX, "default_pool_size": 1, "max_prepared_statements": 2})
    with login(p) as c, login(p) as d, login(p) as probe:
        assert run(c, b"".join(parse(f"select $1::int * 10 + {k}", f"q{k}")
                               for k in range(10)) + SYNC) == ["1"] * 10 + [Z_I]
        assert run(d, b"".join(parse(f"select $1::int - {k}", f"q{k}")
                               for k in range(10)) + SYNC) == ["1"] * 10 + [Z_I]
        rnd = random.Random(7)
        orders = [list(range(10)), list(range(9, -1, -1)), [0, 1, 0, 1, 2, 0, 3, 0, 1, 9],
                  rnd.sample(range(10), 10), [rnd.randrange(10) for _ in range(20)]]
        for i, order in enumerate(orders):
            for k in order:
                assert run(c, bind([str(i)], stmt=f"q{k}") + execute() + SYNC) == \
                    ["2", row(str(i * 10 + k)), tag("SELECT 1"), Z_I], (order, k)
                assert run(d, bind([str(i)], stmt=f"q{k}") + execute() + SYNC) == \
                    ["2", row(str(i - k)), tag("SELECT 1"), Z_I], (order, k)
        batch = b"".join(bind([str(k)], stmt=f"q{k}") + execute() for k in (3, 1, 4, 1, 5, 9,
                                                                            2, 6, 5, 3, 5, 8))
        want = []
        for k in (3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8):
            want += ["2", row(str(k * 10 + k)), tag("SELECT 1")]
        assert run(c, batch + SYNC) == want + [Z_I]
        got = q(probe, "select count(*) from pg_prepared_statements")
        n = int(got[1][1][0])
        if not DIRECT:
            assert n <= 2, f"the server holds {n} prepared statements (max 2)"


# ---- schema change under a cached plan -----------------------------------------------------------

CACHED_PLAN = err("0A000", "cached plan must not change result type")


def test_schema_change_under_a_cached_plan(pgtide, pg, table):
    t = table("a int", "values (1)")
    p = pgtide.start({**TX, "default_pool_size": 1})
    run_it = bind(stmt="q") + describe("P") + execute() + SYNC
    with login(p) as c:
        assert run(c, parse(f"select * from {t}", "q") + run_it) == \
            ["1", "2", ("T", [("a", 23)]), row("1"), tag("SELECT 1"), Z_I]
        pg.admin_sql(f"alter table {t} add column b int default 7", db="app")
        new = ["2", ("T", [("a", 23), ("b", 23)]), row("1", "7"), tag("SELECT 1"), Z_I]
        for _ in range(2):
            got = run(c, run_it)
            if DIRECT:
                assert got == [CACHED_PLAN, Z_I]  # PostgreSQL never recovers
            else:
                assert got == new, "outside a transaction pgtide re-prepares and retries"

        # inside a transaction a retry is not safe: PostgreSQL's error is allowed there
        pg.admin_sql(f"alter table {t} add column c text default 'c'", db="app")
        assert q(c, "BEGIN") == [tag("BEGIN"), Z_T]
        got = run(c, run_it)
        newer = [("T", [("a", 23), ("b", 23), ("c", 25)]), row("1", "7", "c"),
                 tag("SELECT 1")]
        if DIRECT:
            assert got == [CACHED_PLAN, Z_E]
        else:
            assert got in ([CACHED_PLAN, Z_E], ["2"] + newer + [Z_T]), got
        assert q(c, "ROLLBACK") == [tag("ROLLBACK"), Z_I]
        got = run(c, run_it)
        assert got == ([CACHED_PLAN, Z_I] if DIRECT else ["2"] + newer + [Z_I])

        # Describe of the statement, then Bind/Execute without Describe
        pg.admin_sql(f"alter table {t} drop column c", db="app")
        got = run(c, describe("S", "q") + SYNC)
        if DIRECT:
            assert got == [("t", []), CACHED_PLAN, Z_I]
        else:
            assert got in ([("t", []), CACHED_PLAN, Z_I],
                           [("t", []), ("T", [("a", 23), ("b", 23)]), Z_I]), got
        got = run(c, bind(stmt="q") + execute() + SYNC)
        assert got in ([CACHED_PLAN, Z_I], ["2", row("1", "7"), tag("SELECT 1"), Z_I]), got
        if not DIRECT:
            assert run(c, run_it) == new
        # a change that keeps the result type is no error anywhere
        pg.admin_sql(f"create index on {t} (a)", db="app")
        if not DIRECT:
            assert run(c, run_it) == new


def test_schema_change_psycopg3_prepared(pgtide, pg, table):
    t = table("a int", "values (1)")
    p = pgtide.start({**TX, "default_pool_size": 1})
    with p.connect() as c:
        assert c.execute(f"select * from {t}", prepare=True).fetchall() == [(1,)]
        pg.admin_sql(f"alter table {t} add column b int default 7", db="app")
        if DIRECT:
            with pytest.raises(psycopg.errors.FeatureNotSupported,
                               match="cached plan must not change result type"):
                c.execute(f"select * from {t}", prepare=True)
        else:
            for _ in range(3):
                cur = c.execute(f"select * from {t}", prepare=True)
                assert [d.name for d in cur.description] == ["a", "b"]
                assert cur.fetchall() == [(1, 7)]


def test_schema_change_seen_by_every_server(pgtide, pg, table):
    """The statement is on both servers of the pool (and another client has the same text
    under another name); once one server reports the change, the other prepares it again
    before its next use: no client sees the error."""
    t = table("a int", "values (1)")
    p = pgtide.start({**TX, "default_pool_size": 2})
    run_it = bind(stmt="q") + execute()
    old, new = row("1"), row("1", "7")
    with login(p) as c, login(p) as d:
        got, pid = run_pid(c, parse(f"select * from {t}", "q") + run_it)
        assert got == ["1", "2", old, tag("SELECT 1"), Z_I]
        with elsewhere(p, pid):
            got, other = run_pid(c, run_it)
            assert got == ["2", old, tag("SELECT 1"), Z_I]
            assert run(d, parse(f"select * from {t}", "mine") + bind(stmt="mine") + execute()
                       + SYNC) == ["1", "2", old, tag("SELECT 1"), Z_I]
        other_server(pid, other)
        pg.admin_sql(f"alter table {t} add column b int default 7", db="app")
        got, pid3 = run_pid(c, run_it)
        assert got == ([CACHED_PLAN, Z_I] if DIRECT else ["2", new, tag("SELECT 1"), Z_I])
        with elsewhere(p, pid3):
            got, pid4 = run_pid(c, run_it)
            assert got == ([CACHED_PLAN, Z_I] if DIRECT else ["2", new, tag("SELECT 1"), Z_I])
            other_server(pid3, pid4)
            got = run(d, bind(stmt="mine") + execute() + SYNC)
            assert got == ([CACHED_PLAN, Z_I] if DIRECT else ["2", new, tag("SELECT 1"), Z_I])
        if not DIRECT:
            for _ in range(3):
                assert run(c, run_it + SYNC) == ["2", new, tag("SELECT 1"), Z_I]
                assert run(d, bind(stmt="mine") + execute() + SYNC) == \
                    ["2", new, tag("SELECT 1"), Z_I]


def test_schema_change_when_a_replay_is_not_safe(pgtide, pg, table):
    """The error reaches the client once when pgtide cannot hide it: a reply of the batch went
    out before it, the batch is waiting for a Flush'ed answer (no Sync yet), or its copy would
    be over 64 KiB. The statement is prepared again for the next batch all the same."""
    t = table("a int", "values (1)")
    p = pgtide.start({**TX, "default_pool_size": 1})
    new = ["2", row("1", "7", "8", "9"), tag("SELECT 1"), Z_I]
    with login(p) as c:
        assert run(c, parse(f"select * from {t}", "q") + parse("select 'x'", "x")
                   + parse("select length($1::text)", "len") + SYNC) == ["1", "1", "1", Z_I]
        assert run(c, bind(stmt="q") + execute() + SYNC) == ["2", row("1"), tag("SELECT 1"), Z_I]
        # a reply before it
        pg.admin_sql(f"alter table {t} add column b int default 7", db="app")
        assert run(c, bind(stmt="x") + execute() + bind(stmt="q") + execute() + SYNC) == \
            ["2", row("x"), tag("SELECT 1"), CACHED_PLAN, Z_I]
        got = run(c, bind(stmt="q") + execute() + SYNC)
        assert got == ([CACHED_PLAN, Z_I] if DIRECT else
                       ["2", row("1", "7"), tag("SELECT 1"), Z_I])
        # Flush, no Sync: the client waits for the answer
        pg.admin_sql(f"alter table {t} add column c int default 8", db="app")
        c.send(bind(stmt="q") + execute() + FLUSH)
        assert read(c, 1) == [CACHED_PLAN]
        assert run(c, SYNC) == [Z_I]
        got = run(c, bind(stmt="q") + execute() + SYNC)
        assert got == ([CACHED_PLAN, Z_I] if DIRECT else
                       ["2", row("1", "7", "8"), tag("SELECT 1"), Z_I])
        # a batch too large to keep
        pg.admin_sql(f"alter table {t} add column d int default 9", db="app")
        big = bind(stmt="q") + execute() + bind(["y" * 70000], stmt="len") + execute() + SYNC
        assert run(c, big) == [CACHED_PLAN, Z_I]
        got = run(c, bind(stmt="q") + execute() + SYNC)
        assert got == ([CACHED_PLAN, Z_I] if DIRECT else new)
        # a large batch within the bound is replayed
        pg.admin_sql(f"alter table {t} drop column d", db="app")
        got = run(c, bind(stmt="q") + execute() + bind(["y" * 60000], stmt="len") + execute()
                  + SYNC)
        assert got == ([CACHED_PLAN, Z_I] if DIRECT else
                       ["2", row("1", "7", "8"), tag("SELECT 1"), "2", row("60000"),
                        tag("SELECT 1"), Z_I])


@pgtide_only
def test_schema_change_replays_a_batch_exactly_once(pgtide, pg, table):
    """What pgtide hides: a Describe of the statement (its ParameterDescription held back), a
    batch that Parses and Closes other names after the failing Bind, a batch on a server whose
    cache must evict to make room. Each comes back as if the first try had not happened."""
    t = table("a int", "values (1)")
    p = pgtide.start({**TX, "default_pool_size": 1, "max_prepared_statements": 2})
    with login(p) as c, login(p) as probe:
        assert run(c, parse(f"select * from {t} where a = $1", "q", (23,))
                   + parse("select 'x'", "x") + SYNC) == ["1", "1", Z_I]
        pg.admin_sql(f"alter table {t} add column b int default 7", db="app")
        assert run(c, describe("S", "q") + SYNC) == \
            [("t", [23]), ("T", [("a", 23), ("b", 23)]), Z_I]
        pg.admin_sql(f"alter table {t} add column c int default 8", db="app")
        # after the failing Bind: Parse of a new name (the cache evicts for it), Close of x
        got = run(c, bind(["1"], stmt="q") + describe("P") + execute()
                  + parse("select 'y'", "y") + bind(stmt="y") + execute() + close("S", "x")
                  + SYNC)
        assert got == ["2", ("T", [("a", 23), ("b", 23), ("c", 23)]), row("1", "7", "8"),
                       tag("SELECT 1"), "1", "2", row("y"), tag("SELECT 1"), "3", Z_I]
        assert run(c, bind(stmt="x") + SYNC) == [missing_err("x"), Z_I]
        assert run(c, bind(stmt="y") + execute() + bind(["1"], stmt="q") + execute() + SYNC) \
            == ["2", row("y"), tag("SELECT 1"), "2", row("1", "7", "8"), tag("SELECT 1"), Z_I]
        got = q(probe, "select count(*) from pg_prepared_statements")
        assert int(got[1][1][0]) <= 2, got
        # the error comes back before the batch's Sync: held until the Sync, then replayed
        pg.admin_sql(f"alter table {t} add column d int default 9", db="app")
        c.send(bind(["1"], stmt="q") + execute())
        assert quiet(c, 0.5), "the error was not held back"
        assert run(c, bind(stmt="y") + execute() + SYNC) == \
            ["2", row("1", "7", "8", "9"), tag("SELECT 1"), "2", row("y"), tag("SELECT 1"), Z_I]
        # ... unless the client asks for the answers with a Flush: PostgreSQL's error then
        pg.admin_sql(f"alter table {t} drop column d", db="app")
        c.send(bind(["1"], stmt="q") + execute())
        assert quiet(c, 0.5), "the error was not held back"
        c.send(FLUSH)
        assert read(c, 1) == [CACHED_PLAN]
        assert run(c, execute() + SYNC) == [Z_I]
        assert run(c, bind(["1"], stmt="q") + execute() + SYNC) == \
            ["2", row("1", "7", "8"), tag("SELECT 1"), Z_I]


def test_error_before_an_eviction_keeps_the_cache_right(pgtide):
    """max_prepared_statements = 1: a batch fails before the Close that would evict a
    statement; the server still has it, and pgtide must not Parse it again blindly."""
    p = pgtide.start({**TX, "default_pool_size": 1, "max_prepared_statements": 1})
    with login(p) as c:
        assert run(c, parse("select 'a'", "a") + parse("select 'b'", "b") + SYNC) == \
            ["1", "1", Z_I]
        assert run(c, bind(stmt="b") + execute() + SYNC) == ["2", row("b"), tag("SELECT 1"), Z_I]
        assert run(c, bind(stmt="nope") + bind(stmt="a") + execute() + SYNC) == \
            [missing_err("nope"), Z_I]
        for n in ("b", "a", "b"):
            assert run(c, bind(stmt=n) + execute() + SYNC) == \
                ["2", row(n), tag("SELECT 1"), Z_I], n


# ---- unnamed statements and portals ----------------------------------------------------------

def test_unnamed_statement_and_portals_within_a_transaction(pgtide):
    p = pgtide.start({**TX, "default_pool_size": 2})
    with login(p) as c, login(p) as other:
        assert q(c, "BEGIN") == [tag("BEGIN"), Z_T]
        assert run(c, parse("select generate_series(1, 5) as n") + SYNC) == ["1", Z_T]
        q(other, "select 1")
        assert run(c, bind() + execute(max_rows=2) + SYNC) == \
            ["2", row("1"), row("2"), "s", Z_T]
        q(other, "select 1")
        assert run(c, execute(max_rows=2) + SYNC) == [row("3"), row("4"), "s", Z_T]
        # the unnamed statement is still there after those Syncs
        assert run(c, bind() + execute() + SYNC) == \
            ["2"] + [row(str(i)) for i in range(1, 6)] + [tag("SELECT 5"), Z_T]
        # a named portal of a named statement, across Syncs
        assert run(c, parse("select generate_series(1, 3)", "g")
                   + bind(stmt="g", portal="p1") + execute("p1", 1) + SYNC) == \
            ["1", "2", row("1"), "s", Z_T]
        assert run(c, execute("p1") + SYNC) == [row("2"), row("3"), tag("SELECT 2"), Z_T]
        # a simple Query drops the unnamed statement
        assert q(c, "select 'simple'") == [("T", [("?column?", 25)]), row("simple"),
                                           tag("SELECT 1"), Z_T]
        assert run(c, bind() + execute() + SYNC) == \
            [err("26000", "unnamed prepared statement does not exist"), Z_E]
        assert q(c, "ROLLBACK") == [tag("ROLLBACK"), Z_I]
        # portals end with their transaction; the named statement does not
        assert run(c, execute("p1") + SYNC) == [err("34000", 'portal "p1" does not exist'), Z_I]
        assert run(c, bind(stmt="g") + execute() + SYNC) == \
            ["2", row("1"), row("2"), row("3"), tag("SELECT 3"), Z_I]
        # the unnamed statement within one Sync
        assert run(c, parse("select $1::int") + bind(["7"]) + execute() + bind(["8"])
                   + execute() + SYNC) == \
            ["1", "2", row("7"), tag("SELECT 1"), "2", row("8"), tag("SELECT 1"), Z_I]


# ---- session mode, SQL-level PREPARE, max_prepared_statements = 0 ------------------------------

def test_sql_prepare_and_protocol_prepare_in_session_mode(pgtide):
    p = pgtide.start({"pool_mode": "session", "default_pool_size": 2})
    conn = psycopg2.connect(p.dsn())
    try:
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("PREPARE two(int) AS SELECT $1 * 2")
        for i in range(5):
            cur.execute("EXECUTE two(%s)", (i,))
            assert cur.fetchone() == (2 * i,)
        cur.execute("DEALLOCATE two")
        with pytest.raises(psycopg2.errors.InvalidSqlStatementName):
            cur.execute("EXECUTE two(1)")
    finally:
        conn.close()
    with p.connect() as c:
        c.execute("PREPARE three(int) AS SELECT $1 * 3")
        assert c.execute("EXECUTE three(5)").fetchone() == (15,)
        for i in range(10):
            assert c.execute("select %s::int + 1", (i,), prepare=True).fetchone() == (i + 1,)
        names = {r[0] for r in c.execute("select name from pg_prepared_statements")}
        assert "three" in names
        c.execute("DEALLOCATE three")
        with pytest.raises(psycopg.errors.InvalidSqlStatementName):
            c.execute("EXECUTE three(5)")
        assert c.execute("select %s::int + 1", (1,), prepare=True).fetchone() == (2,)


def test_max_prepared_statements_0_passes_names_through_in_session_mode(pgtide):
    p = pgtide.start({"pool_mode": "session", "max_prepared_statements": 0})
    with login(p) as c:
        assert run(c, parse("select 1", "tide_passthrough") + SYNC) == ["1", Z_I]
        assert q(c, "select name, statement from pg_prepared_statements") == \
            [("T", [("name", 25), ("statement", 25)]), row("tide_passthrough", "select 1"),
             tag("SELECT 1"), Z_I]
        assert run(c, parse("select 2", "tide_passthrough") + SYNC) == \
            [exists_err("tide_passthrough"), Z_I]


# ---- what the admin console says -----------------------------------------------------------------

def _client_row(adm, app):
    rows = [r for r in adm.rows("SHOW CLIENTS") if r.get("application_name") == app]
    assert len(rows) == 1, f"{len(rows)} clients with application_name {app!r}"
    return rows[0]


@pgtide_only
def test_show_clients_prepared_statements(pgtide):
    p = pgtide.start({**TX, "default_pool_size": 1, "admin_users": "app"})
    with h.AdminConsole(p) as adm, login(p, app="prep-a") as a, login(p, app="prep-b") as b:
        assert _client_row(adm, "prep-a")["prepared_statements"] == 0
        assert run(a, parse("select 1", "s1") + parse("select 2", "s2") + parse("select 3", "s3")
                   + SYNC) == ["1", "1", "1", Z_I]
        assert run(b, parse("select 1", "s1") + SYNC) == ["1", Z_I]
        assert _client_row(adm, "prep-a")["prepared_statements"] == 3
        assert _client_row(adm, "prep-b")["prepared_statements"] == 1
        assert run(a, parse("select 4") + bind() + execute() + SYNC) == \
            ["1", "2", row("4"), tag("SELECT 1"), Z_I]
        assert _client_row(adm, "prep-a")["prepared_statements"] == 3, "unnamed counted"
        assert run(a, close("S", "s2") + SYNC) == ["3", Z_I]
        assert _client_row(adm, "prep-a")["prepared_statements"] == 2
        assert run(a, parse("select 1", "s1") + SYNC) == [exists_err("s1"), Z_I]
        assert _client_row(adm, "prep-a")["prepared_statements"] == 2
        assert q(a, "DEALLOCATE s1") == [tag("DEALLOCATE"), Z_I]
        assert _client_row(adm, "prep-a")["prepared_statements"] == 1
        assert q(a, "DISCARD ALL") == [tag("DISCARD ALL"), Z_I]
        assert _client_row(adm, "prep-a")["prepared_statements"] == 0
        assert _client_row(adm, "prep-b")["prepared_statements"] == 1
