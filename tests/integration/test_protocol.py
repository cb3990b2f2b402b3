"""The wire protocol through pgtide: simple and extended queries, pipelines, COPY, large
results, FunctionCall, notices, notifications, ParameterStatus, Terminate, error fields."""

import hashlib
import os
import select
import subprocess
import time

import psycopg
import psycopg2
import pytest
from psycopg import pq

import pgtide_harness as h


def pg2(p, **kw):
    return psycopg2.connect(p.dsn(**kw))


def fetch_one(conn, sql):
    cur = conn.cursor()
    cur.execute(sql)
    return cur.fetchone()


# ---- simple and extended query ---------------------------------------------------------------

def test_multi_statement_psycopg2(pgtide):
    p = pgtide.start()
    conn = pg2(p)
    try:
        cur = conn.cursor()
        cur.execute("select 1; select 2")
        assert cur.fetchall() == [(2,)]
        cur.execute("create temp table m (x int); insert into m values (1), (2); "
                    "select sum(x) from m")
        assert cur.fetchone() == (3,)
        conn.rollback()
    finally:
        conn.close()


def test_multi_statement_raw_results(pgtide):
    p = pgtide.start()
    with p.raw() as c:
        assert c.login("app", "app", "app").ok
        qr = c.query("select 1 as a; select 2 as b, 'two' as c")
        assert qr.results == [(["a"], [("1",)], "SELECT 1"),
                              (["b", "c"], [("2", "two")], "SELECT 1")]
        assert qr.status == "I"
        qr = c.query("select 1; select 1/0; select 3")
        assert len(qr.results) == 1 and [e.sqlstate for e in qr.errors] == ["22012"]
        assert qr.status == "I"
        qr = c.query("")
        assert [t for t, _ in qr.messages] == ["I", "Z"]
        qr = c.query("begin; select 1")
        assert qr.status == "T"
        qr = c.query("select 1/0")
        assert qr.status == "E"
        qr = c.query("rollback")
        assert qr.status == "I"


def test_extended_protocol_params(pgtide):
    p = pgtide.start()
    with p.connect() as c:
        row = c.execute("select %s::int + %s::int, %s::text, %s::bytea, %s::numeric",
                        (1, 2, "x\u00e9y", b"\x00\x01\xff", "1.50")).fetchone()
        assert row[0] == 3 and row[1] == "x\u00e9y" and bytes(row[2]) == b"\x00\x01\xff"
        assert str(row[3]) == "1.50"
        row = c.cursor(binary=True).execute("select %s::int8, %s::text", (2**40, "bin")).fetchone()
        assert row == (2**40, "bin")
        for i in range(10):  # prepared on the server after a few runs
            assert c.execute("select %s::int * 2", (i,), prepare=True).fetchone() == (i * 2,)
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("select 1 / %s::int", (0,))
        assert c.execute("select %s::text", (None,)).fetchone() == (None,)


def test_large_parameter(pgtide):
    p = pgtide.start()
    blob = os.urandom(16 * 1024 * 1024)
    with p.connect() as c:
        row = c.execute("select length(%s::bytea), md5(%s::bytea)", (blob, blob)).fetchone()
        assert row == (len(blob), hashlib.md5(blob).hexdigest())


def test_pipeline(pgtide, table):
    p = pgtide.start()
    t = table("id int primary key, v text")
    with p.connect() as c:
        with c.pipeline():
            curs = []
            for i in range(500):
                c.execute(f"insert into {t} values (%s, %s)", (i, f"v{i}"))
                if i % 100 == 0:
                    curs.append((i, c.execute(f"select count(*) from {t}")))
        assert [cur.fetchone()[0] for _, cur in curs] == [i + 1 for i, _ in curs]
        assert c.execute(f"select count(*), sum(id) from {t}").fetchone() == (500, sum(range(500)))
        # an error inside a pipeline aborts the rest up to the sync, then the connection works
        with pytest.raises(psycopg.errors.UniqueViolation):
            with c.pipeline():
                c.execute(f"insert into {t} values (%s, 'dup')", (1,))
                c.execute(f"insert into {t} values (%s, 'never')", (10001,))
        assert c.execute(f"select count(*) from {t} where id = 10001").fetchone() == (0,)
        assert c.execute("select 1").fetchone() == (1,)


def test_transaction_status(pgtide):
    p = pgtide.start()
    with p.connect(autocommit=False) as c:
        c.execute("select 1")
        assert c.info.transaction_status == pq.TransactionStatus.INTRANS
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("select 1/0")
        assert c.info.transaction_status == pq.TransactionStatus.INERROR
        c.rollback()
        assert c.info.transaction_status == pq.TransactionStatus.IDLE


def test_concurrent_clients_get_their_own_results(pgtide):
    p = pgtide.start({"default_pool_size": 10})

    def worker(n):
        with p.connect(application_name=f"w{n}") as c:
            for i in range(50):
                row = c.execute("select %s::int, current_setting('application_name')",
                                (n * 1000 + i,)).fetchone()
                assert row == (n * 1000 + i, f"w{n}"), row
        return n
    jobs = [h.Background(worker, n) for n in range(8)]
    assert sorted(j.result(timeout=30) for j in jobs) == list(range(8))


# ---- COPY and big data ------------------------------------------------------------------------

def _copy_rows(n):
    return [(i, hashlib.sha256(str(i).encode()).hexdigest() * 2 + "\u00e9") for i in range(n)]


def test_copy_in_and_out_10mb(pgtide, table):
    p = pgtide.start()
    t = table("id int, payload text")
    rows = _copy_rows(75000)  # ~10 MB of COPY text
    with p.connect() as c:
        with c.cursor() as cur:
            with cur.copy(f"COPY {t} (id, payload) FROM STDIN") as cp:
                for r in rows:
                    cp.write_row(r)
            assert cur.rowcount == len(rows)
        assert c.execute(f"select count(*), sum(id) from {t}").fetchone() == \
            (len(rows), sum(r[0] for r in rows))
        out = bytearray()
        with c.cursor() as cur:
            with cur.copy(f"COPY (select id, payload from {t} order by id) TO STDOUT") as cp:
                for chunk in cp:
                    out += chunk
        expected = "".join(f"{i}\t{s}\n" for i, s in rows).encode()
        assert len(out) > 10_000_000
        assert hashlib.md5(out).hexdigest() == hashlib.md5(expected).hexdigest()
        # a failing COPY FROM leaves the connection usable
        with pytest.raises(psycopg.errors.InvalidTextRepresentation):
            with c.cursor().copy(f"COPY {t} (id, payload) FROM STDIN") as cp:
                cp.write(b"notanumber\tx\n")
        assert c.execute("select 1").fetchone() == (1,)


def test_psql_copy(pgtide, table, tmp_path):
    p = pgtide.start()
    src = table("id int, payload text")
    dst = table("id int, payload text")
    with p.connect() as c:
        c.execute(f"insert into {src} select i, repeat(md5(i::text), 3) from "
                  f"generate_series(1, 100000) i")
    dump = tmp_path / "dump.txt"
    env = dict(os.environ, PGPASSWORD="app")
    for cmd in (f"\\copy {src} to '{dump}'", f"\\copy {dst} from '{dump}'"):
        r = subprocess.run([h.pg_tool("psql"), "-X", "-v", "ON_ERROR_STOP=1", "-h", p.host,
                            "-p", str(p.port), "-U", "app", "-d", "app", "-c", cmd],
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        assert "COPY 100000" in r.stdout, r.stdout
    assert dump.stat().st_size > 9_000_000
    with p.connect() as c:
        q = "select md5(string_agg(id || payload, ',' order by id)) from {}"
        assert c.execute(q.format(src)).fetchone() == c.execute(q.format(dst)).fetchone()


def test_large_result_50mb(pgtide):
    p = pgtide.start()
    n = 50000
    sql = "select i, repeat(md5(i::text), 32) from generate_series(1, %s) i order by i"
    with p.connect() as c:
        t0 = time.monotonic()
        rows = c.execute(sql, (n,)).fetchall()
        assert len(rows) == n
        total = sum(len(r[1]) for r in rows)
        assert total == n * 1024
        digest = hashlib.md5("".join(r[1] for r in rows).encode()).hexdigest()
        server = c.execute("select md5(string_agg(repeat(md5(i::text), 32), '' order by i)) "
                           "from generate_series(1, %s) i", (n,)).fetchone()[0]
        assert digest == server
        assert time.monotonic() - t0 < 30
    conn = pg2(p)  # and through the simple protocol
    try:
        cur = conn.cursor()
        cur.execute(sql % n)
        assert sum(len(r[1]) for r in cur.fetchall()) == n * 1024
    finally:
        conn.close()


@pytest.mark.deadline(60)
def test_rows_pass_straight_through_and_what_follows_them_is_seen(pgtide):
    """DataRow and CopyData go to the client without a look (io pass_rows): a row far larger
    than a read buffer, an error after rows, and COPY out, in transaction pooling with one
    server that must come back to the pool after each."""
    p = pgtide.start({"pool_mode": "transaction", "default_pool_size": 1})
    with p.connect(autocommit=True) as c, p.connect(autocommit=True) as d:
        q = "select repeat('ab', 2500000), 7"
        simple = pg2(p)  # psycopg2: the simple protocol; psycopg 3: extended
        simple.autocommit = True
        try:
            for run in (lambda: c.execute(q).fetchone(), lambda: fetch_one(simple, q)):
                row = run()
                assert len(row[0]) == 5_000_000 and row[0][:4] == "abab" and row[1] == 7
                assert d.execute("select 1").fetchone() == (1,)  # the one server came back
        finally:
            simple.close()
        cur = c.cursor()
        with pytest.raises(psycopg.errors.DivisionByZero):
            cur.execute("select 10 / (3 - g) from generate_series(1, 5) g")
            cur.fetchall()
        assert d.execute("select 2").fetchone() == (2,)
        with pytest.raises(psycopg.errors.DivisionByZero):
            with c.transaction():
                c.execute("select g, repeat('r', 30000), 1 / (40 - g) "
                          "from generate_series(1, 60) g").fetchall()
        assert c.execute("select 3").fetchone() == (3,)
        lines = []
        with c.cursor().copy("copy (select g, repeat('q', 70000) from generate_series(1, 50) g) "
                             "to stdout") as cp:
            for data in cp:
                lines.append(bytes(data))
        text = b"".join(lines).decode()
        got = [ln.split("\t") for ln in text.splitlines()]
        assert [int(g) for g, _ in got] == list(range(1, 51))
        assert all(v == "q" * 70000 for _, v in got)
        assert d.execute("select 4").fetchone() == (4,)


# ---- FunctionCall, notices, notifications, ParameterStatus -----------------------------------

def test_function_call_large_object(pgtide):
    p = pgtide.start()
    data = os.urandom(1024 * 1024 + 17)
    conn = pg2(p)
    try:
        lo = conn.lobject(0, "wb")
        oid = lo.oid
        assert lo.write(data) == len(data)
        lo.close()
        conn.commit()
        lo = conn.lobject(oid, "rb")
        assert lo.read() == data
        lo.seek(1000)
        assert lo.read(10) == data[1000:1010]
        lo.close()
        lo = conn.lobject(oid, "wb")
        lo.unlink()
        conn.commit()
        cur = conn.cursor()
        cur.execute("select count(*) from pg_largeobject_metadata where oid = %s", (oid,))
        assert cur.fetchone() == (0,)
    finally:
        conn.close()


def test_notice_response(pgtide):
    p = pgtide.start()
    conn = pg2(p)
    try:
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("DO $$ BEGIN RAISE NOTICE 'hello %', 42; RAISE WARNING 'careful'; END $$")
        assert any("NOTICE:  hello 42" in n for n in conn.notices), conn.notices
        assert any("WARNING:  careful" in n for n in conn.notices), conn.notices
    finally:
        conn.close()
    got = []
    with p.connect() as c:
        c.add_notice_handler(lambda d: got.append((d.severity, d.sqlstate, d.message_primary)))
        c.execute("DO $$ BEGIN RAISE NOTICE USING MESSAGE = 'custom', ERRCODE = '01XYZ'; END $$")
    assert got == [("NOTICE", "01XYZ", "custom")]


def test_listen_notify(pgtide):
    p = pgtide.start()
    listener = pg2(p)
    sender = pg2(p)
    try:
        listener.autocommit = True
        sender.autocommit = True
        listener.cursor().execute("LISTEN tide_ch")
        sender.cursor().execute("NOTIFY tide_ch, 'payload-1'")
        sender.cursor().execute("select pg_notify('tide_ch', 'payload-2')")
        got = []
        deadline = time.monotonic() + 5
        while len(got) < 2 and time.monotonic() < deadline:
            # the listener is idle: pgtide must forward the asynchronous messages as they come
            if select.select([listener], [], [], 0.2)[0]:
                listener.poll()
                while listener.notifies:
                    n = listener.notifies.pop(0)
                    got.append((n.channel, n.payload))
        assert got == [("tide_ch", "payload-1"), ("tide_ch", "payload-2")]
    finally:
        listener.close()
        sender.close()


def test_parameter_status_changes(pgtide):
    p = pgtide.start()
    with p.connect(application_name="before") as c:
        assert c.info.parameter_status("application_name") == "before"
        c.execute("SET application_name = 'after'")
        assert c.info.parameter_status("application_name") == "after"
        c.execute("SET TimeZone = 'Europe/Paris'")
        assert c.info.parameter_status("TimeZone") == "Europe/Paris"
        c.execute("SET DateStyle = 'German'")
        assert c.info.parameter_status("DateStyle") == "German, DMY"


def test_reset_returns_to_startup_value(pgtide):
    p = pgtide.start()
    with p.connect(application_name="before") as c:
        c.execute("SET application_name = 'after'")
        c.execute("RESET application_name")
        assert c.info.parameter_status("application_name") == "before"


# ---- Terminate, errors ------------------------------------------------------------------------

def test_terminate_returns_server_to_pool(pgtide, pg):
    p = pgtide.start({"default_pool_size": 1})
    c = p.connect(application_name="term-test")
    pid = c.execute("select pg_backend_pid()").fetchone()[0]
    c.close()  # sends Terminate

    def reset_and_idle():
        rows = [b for b in pg.backends(user="app", db="app") if b["pid"] == pid]
        return rows and rows[0]["state"] == "idle" and \
            rows[0]["query"].strip().upper().startswith("DISCARD ALL")
    h.wait_for(reset_and_idle, 5, what="the server to be reset (DISCARD ALL) and idle")
    time.sleep(0.5)
    assert [b["pid"] for b in pg.backends(user="app", db="app")] == [pid]
    with p.connect() as c2:
        assert c2.execute("select pg_backend_pid()").fetchone()[0] == pid


def _diag(e):
    d = e.diag
    return {k: getattr(d, k) for k in (
        "severity", "severity_nonlocalized", "sqlstate", "message_primary", "message_detail",
        "message_hint", "statement_position", "schema_name", "table_name", "column_name",
        "datatype_name", "constraint_name", "source_function")}


def test_errors_pass_through_with_all_fields(pgtide, pg, table):
    p = pgtide.start()
    t = table("id int primary key, email text unique not null")
    pg.admin_sql(f"INSERT INTO {t} (id, email) VALUES (1, 'a@x')", db="app")
    cases = [
        (f"insert into {t} (id, email) values (2, 'a@x')", psycopg.errors.UniqueViolation),
        (f"insert into {t} (id, email) values (3, null)", psycopg.errors.NotNullViolation),
        ("select * from no_such_table_xyz", psycopg.errors.UndefinedTable),
        ("selec 1", psycopg.errors.SyntaxError),
        ("select 'abc'::int", psycopg.errors.InvalidTextRepresentation),
    ]
    with psycopg.connect(pg.dsn(), autocommit=True) as direct, p.connect() as via:
        for sql, exc in cases:
            with pytest.raises(exc) as e_direct:
                direct.execute(sql)
            with pytest.raises(exc) as e_via:
                via.execute(sql)
            assert _diag(e_via.value) == _diag(e_direct.value), sql
        with pytest.raises(psycopg.errors.UniqueViolation) as ei:
            via.execute(f"insert into {t} (id, email) values (2, 'a@x')")
        d = ei.value.diag
        assert d.sqlstate == "23505"
        assert d.constraint_name == f"{t}_email_key"
        assert d.table_name == t and d.schema_name == "public"
        assert d.message_detail == "Key (email)=(a@x) already exists."


# ---- raw extended protocol --------------------------------------------------------------------

def _types_until(c, stop, timeout=5):
    got = []
    while True:
        t, body = c.recv_msg(timeout)
        got.append((t, body))
        if t in stop:
            return got


def test_flush_without_sync_is_answered(pgtide):
    p = pgtide.start()
    with p.raw() as c:
        assert c.login("app", "app", "app").ok
        c.send(h.parse_msg("select $1::int * 2", param_oids=(23,)) + h.flush_msg())
        t, _ = c.recv_msg(5)  # no Sync yet: pgtide must forward on Flush
        assert t == "1", t
        c.send(h.bind_msg(["21"]) + h.describe_msg("P") + h.execute_msg() + h.flush_msg())
        got = _types_until(c, {"C"})
        assert [t for t, _ in got] == ["2", "T", "D", "C"]
        assert got[2][1][6:] == b"42"
        c.send(h.sync_msg())
        t, body = c.recv_msg(5)
        assert (t, body) == ("Z", b"I")


def test_portal_suspended_and_resumed(pgtide):
    p = pgtide.start()
    with p.raw() as c:
        assert c.login("app", "app", "app").ok
        c.send(h.query_message("begin"))
        assert c.read_results().status == "T"
        c.send(h.parse_msg("select generate_series(1, 5)", name="s1") +
               h.bind_msg(portal="p1", stmt="s1") + h.execute_msg("p1", 2) + h.sync_msg())
        got = _types_until(c, {"Z"})
        assert [t for t, _ in got] == ["1", "2", "D", "D", "s", "Z"]
        c.send(h.execute_msg("p1", 0) + h.sync_msg())
        got = _types_until(c, {"Z"})
        assert [t for t, _ in got] == ["D", "D", "D", "C", "Z"]
        assert got[-1][1] == b"T"
        # an error in the middle of an extended batch: the rest is skipped up to Sync
        c.send(h.parse_msg("select 1/0") + h.bind_msg() + h.execute_msg() +
               h.parse_msg("select 'skipped'") + h.bind_msg() + h.execute_msg() + h.sync_msg())
        got = _types_until(c, {"Z"})
        types = [t for t, _ in got]
        # 1/0 is folded at Bind, so BindComplete may or may not come first
        assert types in (["1", "2", "E", "Z"], ["1", "E", "Z"]), types
        err = h.parse_error(dict(got)["E"])
        assert err.sqlstate == "22012" and got[-1][1] == b"E"
        assert c.query("rollback").status == "I"


def test_copy_fail_from_client(pgtide, table):
    p = pgtide.start()
    t = table("id int")
    with p.connect() as c:
        with pytest.raises(psycopg.errors.QueryCanceled):
            with c.cursor().copy(f"COPY {t} FROM STDIN") as cp:
                cp.write_row((1,))
                raise RuntimeError("client gave up")
        assert c.execute(f"select count(*) from {t}").fetchone() == (0,)
    with p.raw() as c:
        assert c.login("app", "app", "app").ok
        c.send(h.query_message(f"COPY {t} FROM STDIN"))
        t_, _ = c.recv_msg()
        assert t_ == "G"
        c.send(h.copy_data_msg(b"1\n2\n") + h.copy_fail_msg("raw gave up"))
        qr = c.read_results()
        assert [e.sqlstate for e in qr.errors] == ["57014"], qr.errors
        assert "raw gave up" in qr.errors[0].message
        assert qr.status == "I"
        c.send(h.query_message(f"COPY {t} FROM STDIN"))
        assert c.recv_msg()[0] == "G"
        c.send(h.copy_data_msg(b"7\n8\n") + h.copy_done_msg())
        qr = c.read_results()
        assert not qr.errors and qr.results[-1][2] == "COPY 2"
