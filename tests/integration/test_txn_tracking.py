"""The transaction tracker, seen through the admin console: SHOW CLIENTS has each client's
txn_status, txn_depth (0 outside a transaction, 1 inside, +1 per savepoint), savepoints (oldest
first), isolation and read_only; SHOW TRANSACTIONS has per-pool counters (include/pgtide/txn.h,
docs/admin.md). pgtide runs in transaction pooling mode; clients are found by application_name.

Every statement's command tags, errors and ReadyForQuery status are asserted as PostgreSQL
gives them. PostgreSQL 15 facts the sequences rest on (checked on 15.18):
- RELEASE a drops a and every savepoint made after it; ROLLBACK TO a keeps a and drops the
  later ones; with two savepoints of one name, RELEASE/ROLLBACK TO take the newest.
- In a failed transaction (status E) everything but ROLLBACK, ROLLBACK TO and COMMIT fails with
  25P02; ROLLBACK TO brings it back to T; COMMIT of it answers with the tag ROLLBACK.
- BEGIN inside a transaction is a WARNING and changes nothing; COMMIT and ROLLBACK outside one
  are WARNINGs (tags COMMIT/ROLLBACK, status I); SET TRANSACTION outside one is a WARNING too.
- A simple Query with several statements stops at the first error (status E if a BEGIN in it
  opened a block, else I); a SAVEPOINT after a COMMIT in the same string fails with 25P01.
- COMMIT AND CHAIN / ROLLBACK AND CHAIN start a new transaction with the same isolation level
  and access mode. After a *failed* transaction PostgreSQL 15 starts the chained one with stale
  characteristics (those saved by the last successful AND CHAIN, or the defaults), so the
  isolation after that is not asserted.
- 1/0 of constants fails at Bind in the extended protocol (the planner folds it), so a failing
  statement in a batch is written so that it fails at Execute.

With PGTIDE_TEST_DIRECT=1 the sequences run against PostgreSQL itself: SHOW CLIENTS and SHOW
TRANSACTIONS are not there, and instead each expected isolation level and access mode inside a
transaction is checked with SHOW transaction_isolation / transaction_read_only.
"""

import os
import threading

import psycopg
import psycopg2
import pytest

import pgtide_harness as h

DIRECT = os.environ.get("PGTIDE_TEST_DIRECT") == "1"
pgtide_only = pytest.mark.skipif(DIRECT, reason="pgtide's own behaviour")

COUNTERS = ("transactions", "commits", "rollbacks", "prepared", "savepoints", "releases",
            "rollbacks_to_savepoint", "max_depth", "in_transaction")


def start(pgtide, **settings):
    return pgtide.start({"pool_mode": "transaction", "admin_users": "app", **settings})


def _bool(v):
    if isinstance(v, bool):
        return v
    return {"t": True, "true": True, "on": True, "f": False, "false": False,
            "off": False}[str(v).lower()]


class Tracker:
    """What pgtide's admin console says about clients and the app/app pool."""

    def __init__(self, p):
        self.adm = None if DIRECT else h.AdminConsole(p)

    def close(self):
        if self.adm:
            self.adm.close()

    def client(self, app):
        rows = [r for r in self.adm.rows("SHOW CLIENTS") if r.get("application_name") == app]
        assert len(rows) == 1, f"{len(rows)} clients with application_name {app!r}"
        r = rows[0]
        return {"status": r["txn_status"], "depth": int(r["txn_depth"]),
                "savepoints": r["savepoints"].split(",") if r["savepoints"] else [],
                "isolation": r["isolation"], "read_only": _bool(r["read_only"])}

    def has_client(self, app):
        return any(r.get("application_name") == app for r in self.adm.rows("SHOW CLIENTS"))

    def expect(self, app, status, depth, savepoints=(), isolation="default", read_only=False,
               show=None):
        """The client's tracker state (isolation or read_only None: not checked). Under
        DIRECT, show(name) (SHOW name on the client's own connection) checks the isolation level
        and access mode PostgreSQL applies instead."""
        if DIRECT:
            if show is not None and status == "T":
                if isolation is not None:
                    want = "read committed" if isolation == "default" else isolation
                    assert show("transaction_isolation") == want
                if read_only is not None:
                    assert show("transaction_read_only") == ("on" if read_only else "off")
            return
        got = self.client(app)
        want = {"status": status, "depth": depth, "savepoints": list(savepoints),
                "isolation": isolation, "read_only": read_only}
        for key in ("isolation", "read_only"):
            if want[key] is None:
                got.pop(key)
                want.pop(key)
        assert got == want, f"tracker state of {app}"

    def counts(self, database="app", user="app"):
        rows = [r for r in self.adm.rows("SHOW TRANSACTIONS")
                if r["database"] == database and r["user"] == user]
        assert len(rows) <= 1, rows
        return {k: int(rows[0][k]) if rows else 0 for k in COUNTERS}

    def expect_counts(self, **want):
        """SHOW TRANSACTIONS for app/app equals want (counters not named: 0)."""
        if DIRECT:
            return
        assert set(want) <= set(COUNTERS), want
        assert self.counts() == {k: want.get(k, 0) for k in COUNTERS}


@pytest.fixture
def tracker():
    made = []

    def make(p):
        t = Tracker(p)
        made.append(t)
        return t
    yield make
    for t in made:
        t.close()


def raw_client(p, app):
    c = p.raw(timeout=10)
    res = c.login("app", "app", "app", params={"application_name": app})
    assert res.ok, res
    return c


def raw_show(c):
    def show(name):
        qr = c.query(f"SHOW {name}")
        assert not qr.errors and qr.status == "T", qr.errors
        return qr.results[0][1][0][0]
    return show


def step(c, sql, tags, status, errors=(), notices=()):
    """Sends sql as one simple Query; asserts PostgreSQL's command tags, error SQLSTATEs,
    notice messages and ReadyForQuery status."""
    qr = c.query(sql)
    assert [r[2] for r in qr.results] == list(tags), (sql, qr.results, qr.errors)
    assert [e.sqlstate for e in qr.errors] == list(errors), (sql, qr.errors)
    assert [n.message for n in qr.notices] == list(notices), (sql, qr.notices)
    assert qr.status == status, (sql, qr.status)
    return qr


def batch(c, msgs, tags, status, errors=()):
    """Sends extended-protocol messages (ending in Sync); asserts as step() does."""
    c.send(b"".join(msgs))
    qr = c.read_results()
    assert [r[2] for r in qr.results] == list(tags), (qr.results, qr.errors)
    assert [e.sqlstate for e in qr.errors] == list(errors), qr.errors
    assert qr.status == status
    return qr


def ext(sql, name=""):
    """Parse (statement name), Bind, Execute of sql."""
    return h.parse_msg(sql, name) + h.bind_msg(stmt=name) + h.execute_msg()


# ---- savepoints ---------------------------------------------------------------------------------

def test_savepoints_release_and_rollback_to(pgtide, tracker):
    p = start(pgtide)
    t = tracker(p)
    app = "txn_sp"
    with raw_client(p, app) as c:
        t.expect(app, "I", 0)
        t.expect_counts()
        step(c, "BEGIN", ["BEGIN"], "T")
        t.expect(app, "T", 1)
        step(c, "SAVEPOINT a", ["SAVEPOINT"], "T")
        t.expect(app, "T", 2, ["a"])
        step(c, 'SAVEPOINT "Quoted Name"', ["SAVEPOINT"], "T")
        t.expect(app, "T", 3, ["a", "Quoted Name"])
        t.expect_counts(transactions=1, savepoints=2, max_depth=3, in_transaction=1)
        step(c, "RELEASE a", ["RELEASE"], "T")  # drops "Quoted Name" too
        t.expect(app, "T", 1)
        step(c, "ROLLBACK TO a", [], "E", ["3B001"])  # a is gone
        t.expect(app, "E", 1)
        step(c, "ROLLBACK", ["ROLLBACK"], "I")
        t.expect(app, "I", 0)
        t.expect_counts(transactions=1, rollbacks=1, savepoints=2, releases=1, max_depth=3)

        step(c, "BEGIN", ["BEGIN"], "T")
        step(c, "SAVEPOINT b", ["SAVEPOINT"], "T")
        step(c, "SAVEPOINT Foo", ["SAVEPOINT"], "T")  # folded to foo
        step(c, 'SAVEPOINT "Quoted Name"', ["SAVEPOINT"], "T")
        t.expect(app, "T", 4, ["b", "foo", "Quoted Name"])
        step(c, "ROLLBACK TO SAVEPOINT FOO", ["ROLLBACK"], "T")  # keeps foo
        t.expect(app, "T", 3, ["b", "foo"])
        step(c, "ROLLBACK TO b", ["ROLLBACK"], "T")
        t.expect(app, "T", 2, ["b"])
        step(c, "SAVEPOINT b", ["SAVEPOINT"], "T")  # a second b
        t.expect(app, "T", 3, ["b", "b"])
        step(c, "RELEASE SAVEPOINT b", ["RELEASE"], "T")  # the newer one
        t.expect(app, "T", 2, ["b"])
        step(c, "ROLLBACK TO SAVEPOINT b", ["ROLLBACK"], "T")
        t.expect(app, "T", 2, ["b"])
        step(c, "COMMIT", ["COMMIT"], "I")
        t.expect(app, "I", 0)
        t.expect_counts(transactions=2, commits=1, rollbacks=1, savepoints=6, releases=2,
                        rollbacks_to_savepoint=3, max_depth=4)


def test_prisma_interactive_transaction(pgtide, tracker):
    """Prisma 7's exact statements (each its own simple Query) for an interactive transaction
    with an isolation level, a nested transaction that commits and one that fails."""
    p = start(pgtide)
    t = tracker(p)
    app = "txn_prisma"
    ser = "serializable"
    with raw_client(p, app) as c:
        show = raw_show(c) if DIRECT else None
        step(c, "BEGIN", ["BEGIN"], "T")
        t.expect(app, "T", 1, show=show)
        step(c, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", ["SET"], "T")
        t.expect(app, "T", 1, isolation=ser, show=show)
        step(c, "SAVEPOINT prisma_sp_1", ["SAVEPOINT"], "T")
        t.expect(app, "T", 2, ["prisma_sp_1"], isolation=ser, show=show)
        step(c, "ROLLBACK TO SAVEPOINT prisma_sp_1", ["ROLLBACK"], "T")
        t.expect(app, "T", 2, ["prisma_sp_1"], isolation=ser)
        step(c, "RELEASE SAVEPOINT prisma_sp_1", ["RELEASE"], "T")
        t.expect(app, "T", 1, isolation=ser)
        step(c, "SAVEPOINT prisma_sp_2", ["SAVEPOINT"], "T")
        step(c, "SELECT 1/0", [], "E", ["22012"])
        t.expect(app, "E", 2, ["prisma_sp_2"], isolation=ser)
        step(c, "ROLLBACK TO SAVEPOINT prisma_sp_2", ["ROLLBACK"], "T")
        t.expect(app, "T", 2, ["prisma_sp_2"], isolation=ser, show=show)
        step(c, "RELEASE SAVEPOINT prisma_sp_2", ["RELEASE"], "T")
        t.expect(app, "T", 1, isolation=ser, show=show)
        step(c, "COMMIT", ["COMMIT"], "I")
        t.expect(app, "I", 0)
        t.expect_counts(transactions=1, commits=1, savepoints=2, releases=2,
                        rollbacks_to_savepoint=2, max_depth=2)
        # a failing interactive transaction: Prisma sends ROLLBACK
        step(c, "BEGIN", ["BEGIN"], "T")
        step(c, "SELECT 1/0", [], "E", ["22012"])
        t.expect(app, "E", 1)
        step(c, "ROLLBACK", ["ROLLBACK"], "I")
        t.expect(app, "I", 0)
        t.expect_counts(transactions=2, commits=1, rollbacks=1, savepoints=2, releases=2,
                        rollbacks_to_savepoint=2, max_depth=2)


# ---- isolation and access mode ----------------------------------------------------------------

def test_isolation_and_read_only(pgtide, tracker):
    p = start(pgtide)
    t = tracker(p)
    app = "txn_iso"
    with raw_client(p, app) as c:
        show = raw_show(c) if DIRECT else None
        step(c, "BEGIN ISOLATION LEVEL REPEATABLE READ", ["BEGIN"], "T")
        t.expect(app, "T", 1, isolation="repeatable read", show=show)
        step(c, "COMMIT", ["COMMIT"], "I")
        t.expect(app, "I", 0)
        step(c, "START TRANSACTION READ ONLY", ["START TRANSACTION"], "T")
        t.expect(app, "T", 1, read_only=True, show=show)
        step(c, "COMMIT", ["COMMIT"], "I")
        t.expect(app, "I", 0)
        step(c, "start transaction isolation level read uncommitted, read write",
             ["START TRANSACTION"], "T")
        t.expect(app, "T", 1, isolation="read uncommitted", show=show)
        step(c, "ROLLBACK", ["ROLLBACK"], "I")
        step(c, "BEGIN ISOLATION LEVEL REPEATABLE READ", ["BEGIN"], "T")
        step(c, "SET TRANSACTION READ ONLY", ["SET"], "T")
        t.expect(app, "T", 1, isolation="repeatable read", read_only=True, show=show)
        step(c, "COMMIT", ["COMMIT"], "I")
        step(c, "BEGIN READ ONLY", ["BEGIN"], "T")
        step(c, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED, READ WRITE", ["SET"], "T")
        t.expect(app, "T", 1, isolation="read committed", show=show)
        step(c, "COMMIT", ["COMMIT"], "I")
        t.expect(app, "I", 0)
        # outside a transaction block SET TRANSACTION only warns
        step(c, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", ["SET"], "I",
             notices=["SET TRANSACTION can only be used in transaction blocks"])
        t.expect(app, "I", 0)
        step(c, "BEGIN", ["BEGIN"], "T")
        t.expect(app, "T", 1, show=show)
        step(c, "COMMIT", ["COMMIT"], "I")
        t.expect_counts(transactions=6, commits=5, rollbacks=1, max_depth=1)


def test_commit_and_chain(pgtide, tracker):
    p = start(pgtide)
    t = tracker(p)
    app = "txn_chain"
    ser = "serializable"
    with raw_client(p, app) as c:
        show = raw_show(c) if DIRECT else None
        step(c, "BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY", ["BEGIN"], "T")
        step(c, "COMMIT AND CHAIN", ["COMMIT"], "T")
        t.expect(app, "T", 1, isolation=ser, read_only=True, show=show)
        t.expect_counts(transactions=2, commits=1, max_depth=1, in_transaction=1)
        step(c, "SAVEPOINT a", ["SAVEPOINT"], "T")
        step(c, "ROLLBACK AND CHAIN", ["ROLLBACK"], "T")
        t.expect(app, "T", 1, isolation=ser, read_only=True, show=show)
        t.expect_counts(transactions=3, commits=1, rollbacks=1, savepoints=1, max_depth=2,
                        in_transaction=1)
        step(c, "SELECT 1/0", [], "E", ["22012"])
        step(c, "COMMIT AND CHAIN", ["ROLLBACK"], "T")  # a failed transaction rolls back
        t.expect(app, "T", 1, isolation=None, read_only=None)
        step(c, "END", ["COMMIT"], "I")
        t.expect(app, "I", 0)
        t.expect_counts(transactions=4, commits=2, rollbacks=2, savepoints=1, max_depth=2)
        step(c, "COMMIT AND CHAIN", [], "I", ["25P01"])  # outside a block: an error
        t.expect(app, "I", 0)
        t.expect_counts(transactions=4, commits=2, rollbacks=2, savepoints=1, max_depth=2)


# ---- failures -----------------------------------------------------------------------------------

def test_failed_statements(pgtide, tracker):
    p = start(pgtide)
    t = tracker(p)
    app = "txn_fail"
    with raw_client(p, app) as c:
        step(c, "BEGIN ISOLATION LEVEL bogus", [], "I", ["42601"])  # BEGIN that fails
        t.expect(app, "I", 0)
        step(c, "ROLLBACK TO a", [], "I", ["25P01"])
        step(c, "COMMIT", ["COMMIT"], "I", notices=["there is no transaction in progress"])
        step(c, "ROLLBACK", ["ROLLBACK"], "I", notices=["there is no transaction in progress"])
        t.expect(app, "I", 0)
        t.expect_counts()

        step(c, "BEGIN", ["BEGIN"], "T")
        step(c, "BEGIN", ["BEGIN"], "T", notices=["there is already a transaction in progress"])
        t.expect(app, "T", 1)
        step(c, "SAVEPOINT a", ["SAVEPOINT"], "T")
        step(c, "SELECT 1/0", [], "E", ["22012"])
        t.expect(app, "E", 2, ["a"])
        t.expect_counts(transactions=1, savepoints=1, max_depth=2, in_transaction=1)
        step(c, "SELECT 1", [], "E", ["25P02"])
        step(c, "SAVEPOINT b", [], "E", ["25P02"])
        step(c, "RELEASE a", [], "E", ["25P02"])
        t.expect(app, "E", 2, ["a"])
        step(c, "ROLLBACK TO a", ["ROLLBACK"], "T")
        t.expect(app, "T", 2, ["a"])
        step(c, "SELECT 1/0", [], "E", ["22012"])
        step(c, "ROLLBACK TO nope", [], "E", ["3B001"])
        t.expect(app, "E", 2, ["a"])
        step(c, "COMMIT", ["ROLLBACK"], "I")  # COMMIT of a failed transaction
        t.expect(app, "I", 0)
        t.expect_counts(transactions=1, rollbacks=1, savepoints=1, rollbacks_to_savepoint=1,
                        max_depth=2)


# ---- several statements in one Query ----------------------------------------------------------

def test_multi_statement_queries(pgtide, tracker):
    p = start(pgtide)
    t = tracker(p)
    app = "txn_multi"
    with raw_client(p, app) as c:
        step(c, "BEGIN; SAVEPOINT a; SELECT 1", ["BEGIN", "SAVEPOINT", "SELECT 1"], "T")
        t.expect(app, "T", 2, ["a"])
        step(c, "SAVEPOINT b; SELECT 1/0; SAVEPOINT c", ["SAVEPOINT"], "E", ["22012"])
        t.expect(app, "E", 3, ["a", "b"])
        step(c, "ROLLBACK TO a", ["ROLLBACK"], "T")
        t.expect(app, "T", 2, ["a"])
        step(c, "RELEASE a; COMMIT; SELECT 2", ["RELEASE", "COMMIT", "SELECT 1"], "I")
        t.expect(app, "I", 0)
        t.expect_counts(transactions=1, commits=1, savepoints=2, releases=1,
                        rollbacks_to_savepoint=1, max_depth=3)

        step(c, "BEGIN; SELECT 1/0; COMMIT", ["BEGIN"], "E", ["22012"])  # COMMIT skipped
        t.expect(app, "E", 1)
        step(c, "COMMIT", ["ROLLBACK"], "I")
        t.expect_counts(transactions=2, commits=1, rollbacks=1, savepoints=2, releases=1,
                        rollbacks_to_savepoint=1, max_depth=3)

        # comments, odd case, quoted identifiers, and ';' inside strings, dollar quotes,
        # an E'' string and a nested comment
        sql = ("/* a; /* nested; */ b; */ bEgIn -- not; here\n; SaVePoInT Foo;"
               ' sAvEpOiNt "A;b"; select \';savepoint x;\', $$;rollback;$$,'
               " $t$ ; commit; $t$, E'\\';release foo;'")
        step(c, sql, ["BEGIN", "SAVEPOINT", "SAVEPOINT", "SELECT 1"], "T")
        t.expect(app, "T", 3, ["foo", "A;b"])
        step(c, 'RELEASE "A;b"; release FOO', ["RELEASE", "RELEASE"], "T")
        t.expect(app, "T", 1)
        step(c, "", [""], "T")  # EmptyQueryResponse
        step(c, " ; -- nothing", [""], "T")
        t.expect(app, "T", 1)
        step(c, "commit;;", ["COMMIT"], "I")
        t.expect_counts(transactions=3, commits=2, rollbacks=1, savepoints=4, releases=3,
                        rollbacks_to_savepoint=1, max_depth=3)

        step(c, "SELECT 1; BEGIN; SAVEPOINT a", ["SELECT 1", "BEGIN", "SAVEPOINT"], "T")
        t.expect(app, "T", 2, ["a"])
        step(c, "ROLLBACK", ["ROLLBACK"], "I")
        # the SAVEPOINT after COMMIT runs outside any block and fails
        step(c, "BEGIN; SAVEPOINT a; COMMIT; SAVEPOINT b", ["BEGIN", "SAVEPOINT", "COMMIT"],
             "I", ["25P01"])
        t.expect(app, "I", 0)
        step(c, "SAVEPOINT a; SELECT 1", [], "I", ["25P01"])
        t.expect(app, "I", 0)
        step(c, "BEGIN; COMMIT; BEGIN", ["BEGIN", "COMMIT", "BEGIN"], "T")
        t.expect(app, "T", 1)
        step(c, "ROLLBACK", ["ROLLBACK"], "I")
        t.expect_counts(transactions=7, commits=4, rollbacks=3, savepoints=6, releases=3,
                        rollbacks_to_savepoint=1, max_depth=3)


# ---- the extended protocol ---------------------------------------------------------------------

def test_extended_protocol(pgtide, tracker):
    p = start(pgtide, default_pool_size=1)
    t = tracker(p)
    app = "txn_ext"
    with raw_client(p, app) as c:
        sync = h.sync_msg()
        batch(c, [ext("BEGIN"), h.describe_msg("P"), ext("SAVEPOINT x"), sync],
              ["BEGIN", "SAVEPOINT"], "T")
        t.expect(app, "T", 2, ["x"])
        # Parse alone does nothing
        batch(c, [h.parse_msg("SAVEPOINT y", "sp_y"), sync], [], "T")
        t.expect(app, "T", 2, ["x"])
        # a named statement run twice: two savepoints y
        batch(c, [h.bind_msg(stmt="sp_y"), h.execute_msg(),
                  h.bind_msg(stmt="sp_y"), h.describe_msg("P"), h.execute_msg(), sync],
              ["SAVEPOINT", "SAVEPOINT"], "T")
        t.expect(app, "T", 4, ["x", "y", "y"])
        batch(c, [ext("RELEASE SAVEPOINT y", "rel_y"), sync], ["RELEASE"], "T")
        t.expect(app, "T", 3, ["x", "y"])
        # a named portal, executed after a Flush
        c.send(h.parse_msg("ROLLBACK TO x") + h.bind_msg(portal="p1") + h.flush_msg())
        assert [c.recv_msg()[0] for _ in range(2)] == ["1", "2"]
        batch(c, [h.execute_msg("p1"), sync], ["ROLLBACK"], "T")
        t.expect(app, "T", 2, ["x"])
        # an error in the middle of a batch: what follows up to Sync is skipped
        failing = "select 1 / (2 - g) from generate_series(1, 3) g"
        batch(c, [ext("SAVEPOINT s"), ext(failing), ext("SAVEPOINT t"), sync],
              ["SAVEPOINT"], "E", ["22012"])
        t.expect(app, "E", 3, ["x", "s"])
        batch(c, [h.bind_msg(stmt="sp_y"), h.execute_msg(), sync], [], "E", ["25P02"])
        t.expect(app, "E", 3, ["x", "s"])
        batch(c, [ext("ROLLBACK TO SAVEPOINT s"), sync], ["ROLLBACK"], "T")
        t.expect(app, "T", 3, ["x", "s"])
        batch(c, [ext("COMMIT"), sync], ["COMMIT"], "I")
        t.expect(app, "I", 0)
        t.expect_counts(transactions=1, commits=1, savepoints=4, releases=1,
                        rollbacks_to_savepoint=2, max_depth=4)
        # BEGIN and COMMIT in one batch: an explicit block inside one Sync
        batch(c, [ext("BEGIN"), ext("SAVEPOINT z"), ext("RELEASE z"), ext("COMMIT"), sync],
              ["BEGIN", "SAVEPOINT", "RELEASE", "COMMIT"], "I")
        t.expect(app, "I", 0)
        t.expect_counts(transactions=2, commits=2, savepoints=5, releases=2,
                        rollbacks_to_savepoint=2, max_depth=4)


# ---- drivers ------------------------------------------------------------------------------------

def test_psycopg3_nested_transactions(pgtide, tracker):
    """psycopg 3's Connection.transaction(): BEGIN, SAVEPOINT "_pg3_n", RELEASE, ROLLBACK TO,
    sent through the extended protocol (unnamed statements)."""
    p = start(pgtide)
    t = tracker(p)
    app = "txn_pg3"
    with p.connect(application_name=app) as c:
        c.prepare_threshold = None
        show = (lambda n: c.execute(f"show {n}").fetchone()[0]) if DIRECT else None
        c.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        with c.transaction():
            t.expect(app, "T", 1, isolation="repeatable read", show=show)
            with c.transaction() as tx2:
                t.expect(app, "T", 2, [tx2.savepoint_name], isolation="repeatable read",
                         show=show)
                with pytest.raises(psycopg.errors.DivisionByZero):
                    with c.transaction() as tx3:
                        t.expect(app, "T", 3, [tx2.savepoint_name, tx3.savepoint_name],
                                 isolation="repeatable read", show=show)
                        try:
                            c.execute("select 1/0")
                        finally:
                            t.expect(app, "E", 3, [tx2.savepoint_name, tx3.savepoint_name],
                                     isolation="repeatable read")
                t.expect(app, "T", 2, [tx2.savepoint_name], isolation="repeatable read",
                         show=show)
            t.expect(app, "T", 1, isolation="repeatable read", show=show)
        t.expect(app, "I", 0)
        t.expect_counts(transactions=1, commits=1, savepoints=2, releases=2,
                        rollbacks_to_savepoint=1, max_depth=3)
        c.isolation_level = None
        c.read_only = True
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            with c.transaction():
                t.expect(app, "T", 1, read_only=True, show=show)
                c.execute("create temp table txn_never (x int)")
        t.expect(app, "I", 0)
        t.expect_counts(transactions=2, commits=1, rollbacks=1, savepoints=2, releases=2,
                        rollbacks_to_savepoint=1, max_depth=3)


def test_psycopg2_transactions(pgtide, tracker, table):
    """psycopg2 outside autocommit: its own BEGIN (with the session's characteristics) before
    the first statement, then commit()/rollback()."""
    tbl = table("who text")
    p = start(pgtide)
    t = tracker(p)
    app = "txn_pg2"
    conn = psycopg2.connect(p.dsn(application_name=app))
    try:
        cur = conn.cursor()

        def show(name):
            cur.execute(f"show {name}")
            return cur.fetchone()[0]
        show = show if DIRECT else None
        conn.set_session(isolation_level="REPEATABLE READ", readonly=True)
        cur.execute("select 1")
        t.expect(app, "T", 1, isolation="repeatable read", read_only=True, show=show)
        conn.rollback()
        t.expect(app, "I", 0)
        conn.set_session(isolation_level="SERIALIZABLE", readonly=False)
        cur.execute(f"insert into {tbl} values ('kept')")
        cur.execute("savepoint a")
        cur.execute(f"insert into {tbl} values ('undone')")
        t.expect(app, "T", 2, ["a"], isolation="serializable", show=show)
        with pytest.raises(psycopg2.errors.DivisionByZero):
            cur.execute("select 1/0")
        t.expect(app, "E", 2, ["a"], isolation="serializable")
        cur.execute("rollback to savepoint a")
        t.expect(app, "T", 2, ["a"], isolation="serializable", show=show)
        conn.commit()
        t.expect(app, "I", 0)
        t.expect_counts(transactions=2, commits=1, rollbacks=1, savepoints=1,
                        rollbacks_to_savepoint=1, max_depth=2)
    finally:
        conn.close()
    with p.connect() as c:
        assert c.execute(f"select who from {tbl}").fetchall() == [("kept",)]


# ---- clients that leave -------------------------------------------------------------------------

@pytest.mark.parametrize("leave", ["abort", "terminate", "close"])
def test_client_gone_inside_a_transaction(pgtide, pg, tracker, table, leave):
    """A client that leaves with savepoints open: its work is rolled back, the server goes to
    the next client outside any transaction, and the pool counts a rollback."""
    tbl = table("who text")
    p = start(pgtide, default_pool_size=1)
    t = tracker(p)
    a = raw_client(p, "txn_gone")
    step(a, "BEGIN", ["BEGIN"], "T")
    step(a, "SAVEPOINT s1", ["SAVEPOINT"], "T")
    step(a, f"INSERT INTO {tbl} VALUES ('gone')", ["INSERT 0 1"], "T")
    step(a, "SAVEPOINT s2", ["SAVEPOINT"], "T")
    pid = int(step(a, "SELECT pg_backend_pid()", ["SELECT 1"], "T").results[0][1][0][0])
    t.expect("txn_gone", "T", 3, ["s1", "s2"])
    t.expect_counts(transactions=1, savepoints=2, max_depth=3, in_transaction=1)
    if leave == "abort":
        a.abort()  # RST
    elif leave == "terminate":
        a.send(h.terminate_message())
        a.close()
    else:
        a.close()  # FIN without Terminate
    with raw_client(p, "txn_next") as b:
        qr = step(b, f"SELECT pg_backend_pid(), txid_current_if_assigned(), "
                     f"(SELECT count(*) FROM {tbl})", ["SELECT 1"], "I")
        got_pid, xid, rows = qr.results[0][1][0]
        assert (xid, rows) == (None, "0"), "the next client saw the vanished client's work"
        if not DIRECT:
            assert int(got_pid) == pid, "the server was not reused"
        t.expect("txn_next", "I", 0)
        assert pg.admin_value(f"SELECT count(*) FROM {tbl}", db="app") == 0
        if not DIRECT:
            h.wait_for(lambda: not t.has_client("txn_gone"), 5, what="txn_gone gone")
        t.expect_counts(transactions=1, rollbacks=1, savepoints=2, max_depth=3)


# ---- counters -----------------------------------------------------------------------------------

@pgtide_only
def test_in_transaction_counts_clients_in_a_block(pgtide, tracker):
    p = start(pgtide, default_pool_size=3)
    t = tracker(p)
    with raw_client(p, "txn_c1") as c1, raw_client(p, "txn_c2") as c2, \
            raw_client(p, "txn_c3") as c3:
        step(c1, "BEGIN", ["BEGIN"], "T")
        step(c2, "BEGIN; SELECT 1/0", ["BEGIN"], "E", ["22012"])
        step(c3, "SELECT 1", ["SELECT 1"], "I")
        t.expect("txn_c1", "T", 1)
        t.expect("txn_c2", "E", 1)
        t.expect("txn_c3", "I", 0)
        t.expect_counts(transactions=2, max_depth=1, in_transaction=2)
        step(c2, "ROLLBACK", ["ROLLBACK"], "I")
        t.expect_counts(transactions=2, rollbacks=1, max_depth=1, in_transaction=1)
        step(c1, "COMMIT", ["COMMIT"], "I")
        t.expect_counts(transactions=2, commits=1, rollbacks=1, max_depth=1)


@pytest.mark.deadline(60)
def test_many_clients_exact_counters(pgtide, pg, tracker, table):
    """24 psycopg2 clients through 3 servers, 5 transactions each: every counter exact."""
    tbl = table("client int, i int")
    p = start(pgtide, default_pool_size=3)
    t = tracker(p)
    n_clients, n_tx = 24, 5
    barrier = threading.Barrier(n_clients)

    def client(n):
        conn = psycopg2.connect(p.dsn(application_name=f"txn_many_{n}"))
        try:
            barrier.wait(timeout=20)
            cur = conn.cursor()
            for i in range(n_tx):
                cur.execute("savepoint s")  # psycopg2 sends BEGIN first
                cur.execute(f"insert into {tbl} values (%s, %s)", (n, i))
                if i % 2:
                    cur.execute("rollback to savepoint s")
                cur.execute("release savepoint s")
                if i % 3 == 2:
                    conn.rollback()
                else:
                    conn.commit()
        finally:
            conn.close()
        return n

    jobs = [h.Background(client, n) for n in range(n_clients)]
    assert sorted(j.result(timeout=45) for j in jobs) == list(range(n_clients))
    kept = [i for i in range(n_tx) if i % 2 == 0 and i % 3 != 2]
    assert pg.admin_value(f"select count(*) from {tbl}", db="app") == n_clients * len(kept)
    commits = n_clients * sum(1 for i in range(n_tx) if i % 3 != 2)
    t.expect_counts(transactions=n_clients * n_tx, commits=commits,
                    rollbacks=n_clients * n_tx - commits, savepoints=n_clients * n_tx,
                    releases=n_clients * n_tx,
                    rollbacks_to_savepoint=n_clients * sum(1 for i in range(n_tx) if i % 2),
                    max_depth=2)
