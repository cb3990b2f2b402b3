"""SHOW STATS, SHOW STATS_TOTALS, SHOW STATS_AVERAGES and the Prometheus endpoint
(docs/admin.md, docs/metrics.md).

The counts are checked exactly against what a raw protocol client did: a query is a request
ended by ReadyForQuery (a simple Query, an extended-protocol batch up to its Sync), a
transaction ends at each ReadyForQuery 'I' of a client request, and the bytes are every byte
the client's socket carried after its login. The client counts its own socket bytes
(RawConn.bytes_sent / bytes_received), so received and sent must match to the byte.

/metrics is fetched with urllib and parsed strictly (every line a # HELP, a # TYPE or
`name{labels} value`, every sample after its family's HELP and TYPE, counters ending _total),
then cross-checked against SHOW STATS_TOTALS, SHOW POOLS, SHOW TRANSACTIONS and SHOW ERRORS.
"""

import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request

import psycopg
import pytest

import pgtide_harness as h

pytestmark = pytest.mark.skipif(os.environ.get("PGTIDE_TEST_DIRECT") == "1",
                                reason="pgtide's own statistics")

STAT_FIELDS = ("xact_count", "query_count", "bytes_received", "bytes_sent", "xact_time",
               "query_time", "wait_time")
SHOW_STATS_COLUMNS = ["database", "total_xact_count", "total_query_count", "total_received",
                      "total_sent", "total_xact_time", "total_query_time", "total_wait_time",
                      "avg_xact_count", "avg_query_count", "avg_recv", "avg_sent",
                      "avg_xact_time", "avg_query_time", "avg_wait_time"]
NUMERIC_OID = 1700
TEXT_OID = 25


# ---- helpers ------------------------------------------------------------------------------------

def start(pgtide, metrics=True, **settings):
    """A pgtide in transaction pooling with the admin console for app; with metrics, its
    metrics_listen on a port of its own. Returns (proc, metrics port or None)."""
    port = None
    if metrics:
        lock = h.allocate_port()  # a lock file only: pgtide binds the port itself
        pgtide.locks.append(lock)  # released at teardown
        port = lock.port
        settings.setdefault("metrics_listen", f"127.0.0.1:{port}")
    s = {"pool_mode": "transaction", "admin_users": "app", **settings}
    return pgtide.start(s), port


def stats_rows(adm, sql):
    """{database: {column: int or str}} of a SHOW STATS* command."""
    out = {}
    for r in adm.rows(sql):
        out[r["database"]] = {k: (v if k == "database" else int(v)) for k, v in r.items()}
    return out


def totals(adm, db="app"):
    row = stats_rows(adm, "SHOW STATS_TOTALS").get(db)
    return row or {f: 0 for f in STAT_FIELDS}


def read_until_ready(conn):
    """Reads messages of a request up to its ReadyForQuery; returns them."""
    msgs = []
    while True:
        t, body = conn.recv_msg()
        msgs.append((t, body))
        if t == "Z":
            return msgs


def raw_login(p):
    c = p.raw()
    res = c.login("app", "app", "app")
    assert res.ok, res
    assert c.buf == b"", "nothing may follow the login's ReadyForQuery"
    return c


def http(port, path="/metrics", method="GET", timeout=5):
    """(status, headers, body text)."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def raw_http(port, data, timeout=5):
    """Sends raw bytes, returns everything the endpoint answers until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(data)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk


NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
LABELS = rf"\{{(?:[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE})(?:,[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE})*\}}"
SAMPLE_RX = re.compile(rf"^({NAME})({LABELS})? (-?[0-9]+(?:\.[0-9]+)?)$")
HELP_RX = re.compile(rf"^# HELP ({NAME}) (.+)$")
TYPE_RX = re.compile(rf"^# TYPE ({NAME}) (counter|gauge)$")
LABEL_RX = re.compile(rf'([a-zA-Z_][a-zA-Z0-9_]*)=({LABEL_VALUE})')


def _unescape(v):
    return re.sub(r"\\(.)", lambda m: "\n" if m[1] == "n" else m[1], v[1:-1])


def parse_metrics(text):
    """Strict text format 0.0.4: returns ({family: type}, {(name, labels): value text}),
    where labels is a tuple of sorted (name, value) pairs. Fails on any stray line."""
    assert text.endswith("\n"), "the exposition ends with a newline"
    types, helps, samples = {}, {}, {}
    current = None
    for i, line in enumerate(text[:-1].split("\n"), 1):
        m = HELP_RX.match(line)
        if m:
            assert m[1] not in helps, f"line {i}: second HELP for {m[1]}"
            helps[m[1]] = m[2]
            current = m[1]
            continue
        m = TYPE_RX.match(line)
        if m:
            assert m[1] == current, f"line {i}: TYPE of {m[1]} not right after its HELP"
            assert m[1] not in types, f"line {i}: second TYPE for {m[1]}"
            types[m[1]] = m[2]
            continue
        m = SAMPLE_RX.match(line)
        assert m, f"line {i} is neither a comment nor a sample: {line!r}"
        name = m[1]
        assert name == current and name in types, \
            f"line {i}: sample of {name} outside its family ({current})"
        labels = ()
        if m[2]:
            pairs = LABEL_RX.findall(m[2])
            labels = tuple(sorted((k, _unescape(v)) for k, v in pairs))
            assert len({k for k, _ in labels}) == len(labels), f"line {i}: repeated label"
        key = (name, labels)
        assert key not in samples, f"line {i}: duplicate sample {key}"
        samples[key] = m[3]
    for name, t in types.items():
        assert name.startswith("pgtide_"), f"{name}: every metric is pgtide_*"
        assert (t == "counter") == name.endswith("_total"), \
            f"{name} ({t}): counters and only counters end in _total"
        assert "_seconds" not in name or "usec" not in helps[name], name
    return types, samples


def pool_labels(db="app", user="app"):
    return (("database", db), ("user", user))


def seconds_text(usec):
    return f"{usec // 1000000}.{usec % 1000000:06d}"


def listening_ports(pid):
    """TCP ports the process listens on (from /proc: its socket inodes in LISTEN state)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        m = re.match(r"socket:\[(\d+)\]", target)
        if m:
            inodes.add(m[1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:
                ports.add(int(cols[1].rsplit(":", 1)[1], 16))
    return ports


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except ConnectionRefusedError:
        return True


# ---- SHOW STATS: exact counts ---------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["transaction", "session"])
def test_show_stats_counts_what_the_client_did(pgtide, mode):
    p, _ = start(pgtide, metrics=False, pool_mode=mode)
    with h.AdminConsole(p) as adm:
        before = totals(adm)
        c = raw_login(p)
        sent0, received0 = c.bytes_sent, c.bytes_received
        xacts = queries = 0

        # N transactions of M queries each, one simple Query per statement.
        n_txn, m_queries = 4, 5
        for _ in range(n_txn):
            for sql in ["BEGIN"] + [f"SELECT {j}" for j in range(m_queries - 2)] + ["COMMIT"]:
                qr = c.query(sql)
                assert not qr.errors and qr.status in ("T", "I"), (sql, qr.errors)
        xacts += n_txn
        queries += n_txn * m_queries

        # Autocommit: one statement, one that sleeps, two statements in one Query (one
        # implicit transaction), one that fails.
        assert c.query("SELECT 1").status == "I"
        assert c.query("SELECT pg_sleep(0.2)").status == "I"
        qr = c.query("SELECT 1; SELECT 2")
        assert len(qr.results) == 2 and qr.status == "I"
        qr = c.query("SELECT 1/0")
        assert qr.errors and qr.errors[0].sqlstate == "22012" and qr.status == "I"
        xacts += 4
        queries += 4

        # Extended protocol: a batch with one Execute, then one with two Executes before its
        # Sync (one implicit transaction, one ReadyForQuery).
        c.send(h.parse_msg("SELECT 1") + h.bind_msg() + h.execute_msg() + h.sync_msg())
        assert read_until_ready(c)[-1] == ("Z", b"I")
        c.send(h.parse_msg("SELECT 2") + h.bind_msg() + h.execute_msg() + h.bind_msg() +
               h.execute_msg() + h.sync_msg())
        msgs = read_until_ready(c)
        assert [t for t, _ in msgs].count("C") == 2 and msgs[-1] == ("Z", b"I")
        xacts += 2
        queries += 2

        # A transaction idle on the client for 0.3 s between its two queries.
        assert c.query("BEGIN").status == "T"
        time.sleep(0.3)
        assert c.query("COMMIT").status == "I"
        xacts += 1
        queries += 2

        after = totals(adm)
        d = {f: after[f] - before[f] for f in STAT_FIELDS}
        assert d["xact_count"] == xacts, d
        assert d["query_count"] == queries, d
        assert d["bytes_received"] == c.bytes_sent - sent0, d
        assert d["bytes_sent"] == c.bytes_received - received0, d
        # pg_sleep(0.2) ran as a query; the 0.3 s inside BEGIN ... COMMIT is transaction time
        # but no query's.
        assert 200000 <= d["query_time"] < 5000000, d
        assert d["xact_time"] - d["query_time"] >= 290000, d
        assert d["xact_time"] < 10000000, d

        # SHOW STATS carries the same totals, in PgBouncer 1.18's columns and types; read in one
        # Query so that both answers describe the same moment.
        cur = adm.conn.execute("SHOW STATS; SHOW STATS_TOTALS")
        assert [col.name for col in cur.description] == SHOW_STATS_COLUMNS
        assert [col.type_code for col in cur.description] == \
            [TEXT_OID] + [NUMERIC_OID] * (len(SHOW_STATS_COLUMNS) - 1)
        stats = {r[0]: r for r in cur.fetchall()}
        assert cur.nextset()
        assert [col.name for col in cur.description] == ["database"] + list(STAT_FIELDS)
        assert [col.type_code for col in cur.description] == [TEXT_OID] + [NUMERIC_OID] * 7
        tot = {r[0]: r for r in cur.fetchall()}
        assert set(stats) == set(tot) and "app" in stats
        for db in stats:
            assert [int(v) for v in stats[db][1:8]] == [int(v) for v in tot[db][1:]], db

        # The Terminate is 5 more bytes received; nothing more sent, no query.
        c.send(h.terminate_message())
        _, closed = c.read_until_closed()
        assert closed
        h.wait_for(lambda: totals(adm)["bytes_received"] == after["bytes_received"] + 5, 5,
                   what="the Terminate counted")
        final = totals(adm)
        assert final["bytes_sent"] == after["bytes_sent"]
        assert final["xact_count"] == after["xact_count"]
        assert final["query_count"] == after["query_count"]


def test_show_stats_sums_pools_by_database(pgtide):
    p, _ = start(pgtide, metrics=False)
    conns = [p.connect("app", "app", "app"), p.connect("md5user", "md5pw", "app"),
             p.connect("app", "app", "other")]
    try:
        for i, conn in enumerate(conns):
            for _ in range(i + 1):
                conn.execute("SELECT 1")
        with h.AdminConsole(p) as adm:
            pools = {(r["database"], r["user"]) for r in adm.rows("SHOW POOLS")}
            assert {("app", "app"), ("app", "md5user"), ("other", "app")} <= pools
            rows = adm.rows("SHOW STATS_TOTALS")
            assert [r["database"] for r in rows] == sorted(r["database"] for r in rows)
            by_db = {r["database"]: r for r in rows}
            # each psycopg connection ran its SELECTs (its own login queries run nowhere:
            # psycopg sends none on connect)
            assert int(by_db["app"]["xact_count"]) == 1 + 2
            assert int(by_db["other"]["xact_count"]) == 3
    finally:
        for conn in conns:
            conn.close()


def test_wait_time_counts_clients_queued_for_a_server(pgtide):
    p, port = start(pgtide, default_pool_size=1)
    holder = raw_login(p)
    waiter = raw_login(p)
    with h.AdminConsole(p) as adm:
        before = totals(adm)
        assert holder.query("BEGIN").status == "T"  # the pool's only server is taken
        waiter.send(h.query_message("SELECT 1"))
        h.wait_for(lambda: any(int(r["cl_waiting"]) == 1 for r in adm.rows("SHOW POOLS")
                               if r["database"] == "app"), 5, what="the waiter queued")
        time.sleep(0.5)
        assert holder.query("COMMIT").status == "I"
        qr = waiter.read_results()
        assert qr.status == "I" and not qr.errors
        after = totals(adm)
        waited = after["wait_time"] - before["wait_time"]
        assert 450000 <= waited < 5000000, waited
        # the same figure, in seconds, on /metrics
        _, samples = parse_metrics(http(port)[2])
        assert samples[("pgtide_client_wait_seconds_total", pool_labels())] == \
            seconds_text(totals(adm)["wait_time"])
    holder.close()
    waiter.close()


def test_stats_averages_cover_the_last_stats_period(pgtide):
    p, _ = start(pgtide, metrics=False, stats_period=1)
    p.wait_log(r"stats: \d+ xacts/s, \d+ queries/s, in \d+ B/s, out \d+ B/s, xact \d+ us, "
               r"query \d+ us, wait \d+ us", timeout=5)
    conn = p.connect()
    done = 0
    end = time.monotonic() + 2.5
    while time.monotonic() < end:
        conn.execute("BEGIN")
        conn.execute("SELECT 1")
        conn.execute("COMMIT")
        done += 1
    with h.AdminConsole(p) as adm:
        cur = adm.conn.execute("SHOW STATS; SHOW STATS_AVERAGES")
        stats = {r[0]: r for r in cur.fetchall()}
        assert cur.nextset()
        assert [col.name for col in cur.description] == ["database"] + list(STAT_FIELDS)
        assert [col.type_code for col in cur.description] == [TEXT_OID] + [NUMERIC_OID] * 7
        avg = {r[0]: dict(zip(STAT_FIELDS, (int(v) for v in r[1:]))) for r in cur.fetchall()}
        a = avg["app"]
        assert [int(v) for v in stats["app"][8:]] == [a[f] for f in STAT_FIELDS]
        # a whole period of the loop: transactions of three queries each. The period's edges
        # cut up to two queries of a transaction off either side (|q - 3x| <= 2 in the raw
        # counts). Both are scaled by s = 1 s / period (within 2/3..1.5 here: the timer can
        # fire late, and the next one then early) and rounded down each on its own, which
        # moves 3x by up to 3 more: 2s + 3 above, 2s + 1 below.
        assert 0 < a["xact_count"] <= done, (a, done)
        assert -3 <= a["query_count"] - 3 * a["xact_count"] <= 5, a
        assert a["bytes_received"] > 0 and a["bytes_sent"] > 0, a
        assert a["query_time"] > 0 and a["xact_time"] >= a["query_time"], a
        assert a["wait_time"] == 0, a
        # idle: a later period replaces them with zeros
        h.wait_for(lambda: totals_avg(adm)["xact_count"] == 0, 5, what="averages back to 0")
        assert totals_avg(adm)["bytes_received"] == 0
    conn.close()


def totals_avg(adm, db="app"):
    return stats_rows(adm, "SHOW STATS_AVERAGES")[db]


# ---- /metrics ---------------------------------------------------------------------------------------

def test_metrics_agree_with_the_admin_console(pgtide, table):
    p, port = start(pgtide)
    t = table("id int primary key", rows_sql="VALUES (1)")
    conn = p.connect()
    other = p.connect("md5user", "md5pw", "app")
    conn.execute("SELECT 1")
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(f"INSERT INTO {t} VALUES (1)")
    with pytest.raises(psycopg.errors.UndefinedTable):
        conn.execute("SELECT * FROM no_such_table")
    with pytest.raises(psycopg.errors.DivisionByZero):
        other.execute("SELECT 1/0")
    conn.execute("BEGIN")
    conn.execute("SAVEPOINT a")
    conn.execute("RELEASE a")
    conn.execute("COMMIT")
    conn.execute("BEGIN")  # stays open: a client in a transaction
    with h.AdminConsole(p) as adm:
        status, headers, body = http(port)
        assert status == 200
        assert headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        types, samples = parse_metrics(body)
        tot = stats_rows(adm, "SHOW STATS_TOTALS")
        pools = {(r["database"], r["user"]): r for r in adm.rows("SHOW POOLS")}
        txns = {(r["database"], r["user"]): r for r in adm.rows("SHOW TRANSACTIONS")}
        errors = {(r["database"], r["user"], r["kind"]): int(r["count"])
                  for r in adm.rows("SHOW ERRORS")}

    assert samples[("pgtide_info", (("version", "0.1.0"),))] == "1"
    for name in ("pgtide_client_connections", "pgtide_server_connections",
                 "pgtide_admin_client_connections", "pgtide_client_connections_limit"):
        assert types[name] == "gauge"
    assert int(samples[("pgtide_client_connections", ())]) >= 3
    assert samples[("pgtide_admin_client_connections", ())] == "1"
    assert int(samples[("pgtide_server_connections", ())]) == \
        sum(int(r[k]) for r in pools.values()
            for k in ("sv_active", "sv_idle", "sv_used", "sv_login"))

    # SHOW STATS_TOTALS, summed over the pools of each database
    for db, row in tot.items():
        def total(name):
            return sum(int(v) for (n, labels), v in samples.items()
                       if n == name and dict(labels)["database"] == db)

        def total_usec(name):
            vals = [v for (n, labels), v in samples.items()
                    if n == name and dict(labels)["database"] == db]
            return sum(int(v.replace(".", "")) for v in vals)
        assert total("pgtide_transactions_total") == row["xact_count"], db
        assert total("pgtide_queries_total") == row["query_count"], db
        assert total("pgtide_client_received_bytes_total") == row["bytes_received"], db
        assert total("pgtide_client_sent_bytes_total") == row["bytes_sent"], db
        assert total_usec("pgtide_transaction_seconds_total") == row["xact_time"], db
        assert total_usec("pgtide_query_seconds_total") == row["query_time"], db
        assert total_usec("pgtide_client_wait_seconds_total") == row["wait_time"], db
    # app/app: SELECT 1, the two failures, BEGIN ... COMMIT (the open block is not done);
    # app/md5user: the failure
    assert tot["app"]["xact_count"] == 5 and tot["app"]["query_count"] == 4 + 4 + 1
    assert tot["app"]["bytes_received"] > 0

    # SHOW POOLS and SHOW TRANSACTIONS, per pool
    pool_map = {"pgtide_pool_clients_active": "cl_active",
                "pgtide_pool_clients_waiting": "cl_waiting",
                "pgtide_pool_clients_pinned": "cl_pinned",
                "pgtide_pool_servers_active": "sv_active",
                "pgtide_pool_servers_idle": "sv_idle",
                "pgtide_pool_servers_used": "sv_used",
                "pgtide_pool_servers_login": "sv_login",
                "pgtide_pool_server_prepared_statements": "sv_prepared_statements"}
    txn_map = {"pgtide_txn_blocks_total": "transactions", "pgtide_txn_commits_total": "commits",
               "pgtide_txn_rollbacks_total": "rollbacks", "pgtide_txn_prepared_total": "prepared",
               "pgtide_txn_savepoints_total": "savepoints",
               "pgtide_txn_releases_total": "releases",
               "pgtide_txn_rollbacks_to_savepoint_total": "rollbacks_to_savepoint",
               "pgtide_txn_max_depth": "max_depth",
               "pgtide_pool_clients_in_transaction": "in_transaction"}
    for (db, user), row in pools.items():
        labels = pool_labels(db, user)
        for metric, col in pool_map.items():
            assert samples[(metric, labels)] == str(int(row[col])), (metric, db, user)
        for metric, col in txn_map.items():
            assert samples[(metric, labels)] == str(int(txns[(db, user)][col])), (metric, db)
    app = pool_labels()
    assert samples[("pgtide_txn_commits_total", app)] == "1"
    assert samples[("pgtide_txn_releases_total", app)] == "1"
    assert samples[("pgtide_pool_clients_in_transaction", app)] == "1"
    assert samples[("pgtide_pool_size", app)] == "20"

    # SHOW ERRORS, row for row
    got = {(dict(labels)["database"], dict(labels)["user"], dict(labels)["kind"]): int(v)
           for (n, labels), v in samples.items() if n == "pgtide_errors_total"}
    assert got == errors
    assert got[("app", "app", "UniqueConstraintViolation")] == 1
    assert got[("app", "app", "TableDoesNotExist")] == 1
    assert got[("app", "md5user", "postgres")] == 1
    conn.close()
    other.close()


def test_metrics_http_edges(pgtide):
    p, port = start(pgtide)
    assert http(port, "/metrics?name[]=pgtide_info")[0] == 200
    status, _, body = http(port, "/")
    assert status == 404 and "/metrics" in body
    assert http(port, "/metrics/")[0] == 404
    status, headers, _ = http(port, "/metrics", method="POST")
    assert status == 405 and headers["Allow"] == "GET, HEAD"
    status, headers, body = http(port, "/metrics", method="HEAD")
    assert status == 200 and body == "" and int(headers["Content-Length"]) > 1000
    for bad in (b"GARBAGE\r\n\r\n", b"GET /metrics HTTP/2.0\r\n\r\n", b"GET  /metrics HTTP/1.1\r\n\r\n",
                b"GET /metrics\r\n\r\n"):
        assert raw_http(port, bad).startswith(b"HTTP/1.1 400 "), bad
    # HTTP/1.0 and bare \n line ends are fine
    ans = raw_http(port, b"GET /metrics HTTP/1.0\n\n")
    assert ans.startswith(b"HTTP/1.1 200 OK\r\n") and b"\r\nConnection: close\r\n" in ans
    head, _, body = ans.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head)[1])
    assert len(body) == length and body.endswith(b"\n")
    # a scraper that half-closes after its request still gets the whole answer
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        s.shutdown(socket.SHUT_WR)
        ans = b""
        while chunk := s.recv(65536):
            ans += chunk
    head, _, body = ans.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert len(body) == int(re.search(rb"Content-Length: (\d+)", head)[1])
    # a request head larger than 8 KiB
    big = b"GET /metrics HTTP/1.1\r\nX-Filler: " + b"x" * 9000
    assert raw_http(port, big).startswith(b"HTTP/1.1 431 ")
    # pgtide is still fine
    assert http(port)[0] == 200
    with p.connect() as conn:
        conn.execute("SELECT 1")


@pytest.mark.deadline(60)
def test_metrics_connections_are_bounded_in_number_and_time(pgtide):
    p, port = start(pgtide)
    idle = [socket.create_connection(("127.0.0.1", port), timeout=20) for _ in range(15)]
    slow = socket.create_connection(("127.0.0.1", port), timeout=20)
    t0 = time.monotonic()
    # the 17th waits in the backlog: no answer while 16 are open
    queued = socket.create_connection(("127.0.0.1", port), timeout=1.5)
    queued.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
    with pytest.raises(socket.timeout):
        queued.recv(100)

    # a scraper trickling its request one byte a second, and idle ones, are all cut off by the
    # 10 s deadline, counted from accept
    stop = threading.Event()

    def trickle():
        for ch in b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"y" * 100:
            if stop.wait(1.0):
                return
            try:
                slow.send(bytes([ch]))
            except OSError:
                return
    th = threading.Thread(target=trickle, daemon=True)
    th.start()
    for s in idle + [slow]:
        s.settimeout(20)
        try:
            assert s.recv(100) == b""
        except ConnectionResetError:
            pass
    elapsed = time.monotonic() - t0
    stop.set()
    th.join(5)
    assert 8 <= elapsed < 14, elapsed
    for s in idle + [slow]:
        s.close()
    # a slot is free: the queued scrape is served
    queued.settimeout(10)
    answer = b""
    while True:
        chunk = queued.recv(65536)
        if not chunk:
            break
        answer += chunk
    queued.close()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and b"pgtide_info" in answer
    assert http(port)[0] == 200
    assert p.alive()


def test_metrics_off_when_metrics_listen_is_empty(pgtide):
    p, _ = start(pgtide, metrics=False)
    assert listening_ports(p.proc.pid) == {p.port}
    assert "metrics" not in p.log()


def test_metrics_listen_follows_reload(pgtide):
    p, port = start(pgtide)
    assert listening_ports(p.proc.pid) == {p.port, port}
    lock2 = h.allocate_port()
    pgtide.locks.append(lock2)
    mark = p.log_mark()
    p.rewrite({"metrics_listen": f"127.0.0.1:{lock2.port}"})
    p.reload()
    p.wait_log("configuration reloaded", mark=mark)
    assert http(lock2.port)[0] == 200
    assert refused(port)
    assert listening_ports(p.proc.pid) == {p.port, lock2.port}
    # a bad value: the reload fails and the endpoint stays where it is
    mark = p.log_mark()
    p.rewrite({"metrics_listen": "9127"})
    p.reload()
    p.wait_log("reload failed", mark=mark)
    assert http(lock2.port)[0] == 200
    # empty: off
    mark = p.log_mark()
    p.rewrite({"metrics_listen": ""})
    p.reload()
    p.wait_log("configuration reloaded", mark=mark)
    assert refused(lock2.port)
    assert listening_ports(p.proc.pid) == {p.port}
    # and back on
    mark = p.log_mark()
    p.rewrite({"metrics_listen": f"127.0.0.1:{port}"})
    p.reload()
    p.wait_log("configuration reloaded", mark=mark)
    assert http(port)[0] == 200


def test_metrics_listen_that_cannot_be_bound_stops_start_up(pgtide):
    blocker = socket.socket()
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    busy = blocker.getsockname()[1]
    try:
        p = pgtide.start({"metrics_listen": f"127.0.0.1:{busy}"}, wait=False)
        assert p.wait_exit(10) != 0
        assert "metrics_listen: could not listen on 127.0.0.1:%d" % busy in p.all_output()
    finally:
        blocker.close()


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_metrics_out_of_descriptors_does_not_spin(pgtide):
    import resource
    p, port = start(pgtide)
    pid = p.proc.pid
    old = resource.prlimit(pid, resource.RLIMIT_NOFILE)
    # room for one scrape connection and nothing more
    resource.prlimit(pid, resource.RLIMIT_NOFILE, (p.fd_count() + 1, old[1]))
    try:
        socks = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
        p.wait_log("metrics: accept: Too many open files", timeout=5)
        cpu0, t0 = _cpu_seconds(pid), time.monotonic()
        time.sleep(1.5)
        busy = (_cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        assert busy < 0.3, f"pgtide used {busy:.0%} of a CPU while out of descriptors"
        for s in socks:
            s.close()
    finally:
        resource.prlimit(pid, resource.RLIMIT_NOFILE, old)
    # descriptors back: the waiting connections were dropped by their clients, new ones work
    h.wait_for(lambda: http(port)[0] == 200, 15, what="the endpoint serving again")
    with p.connect() as conn:
        conn.execute("SELECT 1")
