"""The admin console's SHOW and control commands (docs/admin.md), as PgBouncer 1.18+ names and
types them: SHOW SERVERS/DATABASES/USERS/CONFIG/LISTS/MEM/STATE, PAUSE/RESUME, SUSPEND,
DISABLE/ENABLE, RECONNECT + WAIT_CLOSE, KILL, KILL_CLIENT, RELOAD, SET, SHUTDOWN, the refusal of
stats_users and of unknown commands. Most run while other clients keep transactions going in
background threads; nothing they commit may be lost, and what waited must go on afterwards.

Consoles are psycopg 3 (AdminConsole, the simple query protocol), psql, or the raw protocol
client where the order of messages matters.
"""

import os
import subprocess
import threading
import time

import psycopg
import pytest

import pgtide_harness as h

DIRECT = os.environ.get("PGTIDE_TEST_DIRECT") == "1"
pytestmark = pytest.mark.skipif(DIRECT, reason="PostgreSQL has no admin console")

TEXT, INT4, INT8, BOOL, TIMESTAMPTZ = 25, 23, 20, 16, 1184

SERVER_COLUMNS = [
    ("type", TEXT), ("user", TEXT), ("database", TEXT), ("state", TEXT), ("addr", TEXT),
    ("port", INT4), ("local_addr", TEXT), ("local_port", INT4),
    ("connect_time", TIMESTAMPTZ), ("request_time", TIMESTAMPTZ), ("wait", INT4),
    ("wait_us", INT4), ("close_needed", INT4), ("ptr", TEXT), ("link", TEXT),
    ("remote_pid", INT4), ("tls", TEXT), ("application_name", TEXT),
    ("prepared_statements", INT4), ("id", INT8),
]
DATABASE_COLUMNS = [
    ("name", TEXT), ("host", TEXT), ("port", INT4), ("database", TEXT), ("force_user", TEXT),
    ("pool_size", INT4), ("min_pool_size", INT4), ("reserve_pool", INT4),
    ("server_lifetime", INT4), ("pool_mode", TEXT), ("max_connections", INT4),
    ("current_connections", INT4), ("max_client_connections", INT4),
    ("current_client_connections", INT4), ("paused", INT4), ("disabled", INT4),
]
# pool_size and reserve_pool_size are text, as PgBouncer types them (NULL: not overridden)
USER_COLUMNS = [("name", TEXT), ("pool_size", TEXT), ("reserve_pool_size", TEXT),
                ("pool_mode", TEXT), ("max_user_connections", INT4),
                ("current_connections", INT4), ("max_user_client_connections", INT4),
                ("current_client_connections", INT4)]
CONFIG_COLUMNS = [("key", TEXT), ("value", TEXT), ("default", TEXT), ("changeable", TEXT)]
LIST_COLUMNS = [("list", TEXT), ("items", INT4)]
LIST_NAMES = ["databases", "users", "pools", "free_clients", "used_clients", "login_clients",
              "free_servers", "used_servers", "dns_names", "dns_zones", "dns_queries",
              "dns_pending"]
MEM_COLUMNS = [("name", TEXT), ("size", INT4), ("used", INT4), ("free", INT4),
               ("memtotal", INT4)]
MEM_NAMES = ["client_cache", "server_cache", "pool_cache", "pset_cache",
             "prepared_statement_cache", "iobuf_cache"]
STATE_COLUMNS = [("key", TEXT), ("value", TEXT)]

CONTROL_COMMANDS = ["PAUSE", "PAUSE app", "RESUME", "RESUME app", "SUSPEND", "DISABLE app",
                    "ENABLE app", "RECONNECT", "RECONNECT app", "KILL app", "KILL_CLIENT 1",
                    "WAIT_CLOSE", "WAIT_CLOSE app", "RELOAD", "SHUTDOWN",
                    "SET default_pool_size = 1"]


def start(pgtide, **settings):
    base = {"pool_mode": "transaction", "admin_users": "app", "stats_users": "md5user",
            "default_pool_size": 4}
    base.update(settings)
    return pgtide.start(base)


def console(p, user="app", password="app"):
    return h.AdminConsole(p, user=user, password=password)


def columns(adm, sql):
    cur = adm.conn.execute(sql)
    return [(d.name, d.type_code) for d in cur.description]


def state(adm):
    return {r["key"]: r["value"] for r in adm.rows("SHOW STATE")}


def databases(adm):
    return {r["name"]: r for r in adm.rows("SHOW DATABASES")}


def servers(adm, db="app"):
    return [r for r in adm.rows("SHOW SERVERS") if r["database"] == db]


def pool(adm, db="app", user="app"):
    rows = [r for r in adm.rows("SHOW POOLS") if r["database"] == db and r["user"] == user]
    assert len(rows) == 1, rows
    return rows[0]


def config(adm):
    return {r["key"]: (r["value"], r["default"], r["changeable"])
            for r in adm.rows("SHOW CONFIG")}


def client_row(adm, app):
    rows = [r for r in adm.rows("SHOW CLIENTS") if r["application_name"] == app]
    assert len(rows) == 1, f"{len(rows)} clients named {app!r}"
    return rows[0]


def refused(adm, sql, sqlstate, text=None):
    """Runs sql on the console, which must fail with sqlstate (and a message holding text)."""
    with pytest.raises(psycopg.Error) as ei:
        adm.rows(sql)
    assert ei.value.sqlstate == sqlstate, f"{sql}: {ei.value.sqlstate} {ei.value}"
    if text is not None:
        assert text in str(ei.value), f"{sql}: {ei.value}"
    return ei.value


def one_query(p, sql="select 1", dbname="app", **kw):
    with p.connect(dbname=dbname, **kw) as c:
        return c.execute(sql).fetchone()


def backend_pids(pg, db="app"):
    return {b["pid"] for b in pg.backends(user="app", db=db)}


def psql(p, sql, user="app", password="app", db="pgbouncer", timeout=30):
    env = dict(os.environ, PGPASSWORD=password)
    cmd = [h.pg_tool("psql"), "-X", "-A", "-F", "|", "-v", "ON_ERROR_STOP=1", "-h", p.host,
           "-p", str(p.port), "-U", user, "-d", db, "-c", sql]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


class Load:
    """Threads that each run short transactions (BEGIN; INSERT (thread, n); [pg_sleep]; COMMIT)
    through pgtide on their own connection, counting those whose COMMIT succeeded."""

    def __init__(self, p, table, threads=6, app="load", sleep=0.0, dbname="app"):
        self.stop_ev = threading.Event()
        self.committed = [0] * threads
        self.errors = []
        self.threads = []
        for i in range(threads):
            t = threading.Thread(target=self._run, args=(p, table, i, app, sleep, dbname),
                                 daemon=True)
            t.start()
            self.threads.append(t)

    def _run(self, p, table, i, app, sleep, dbname):
        try:
            conn = p.connect(dbname=dbname, application_name=f"{app}{i}")
        except Exception as e:  # noqa: BLE001 - reported by the test
            self.errors.append(e)
            return
        with conn:
            n = 0
            while not self.stop_ev.is_set():
                try:
                    with conn.transaction():
                        conn.execute(f"INSERT INTO {table} VALUES ({i}, {n})")
                        if sleep:
                            conn.execute(f"SELECT pg_sleep({sleep})")
                except Exception as e:  # noqa: BLE001 - reported by the test
                    self.errors.append(e)
                    return
                self.committed[i] += 1
                n += 1

    def total(self):
        return sum(self.committed)

    def wait_more(self, than, what="transactions to commit", timeout=20):
        h.wait_for(lambda: self.total() > than or self.errors, timeout, what=what)
        assert not self.errors, self.errors

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(30)
            assert not t.is_alive(), "a load thread did not stop"
        assert not self.errors, self.errors


def rows_in(pg, table):
    return pg.admin_value(f"SELECT count(*) FROM {table}", db="app")


# ---- SHOW --------------------------------------------------------------------------------------


def test_show_column_names_and_types(pgtide):
    p = start(pgtide)
    with console(p) as adm:
        assert columns(adm, "SHOW SERVERS") == SERVER_COLUMNS
        assert columns(adm, "SHOW DATABASES") == DATABASE_COLUMNS
        assert columns(adm, "SHOW USERS") == USER_COLUMNS
        assert columns(adm, "SHOW CONFIG") == CONFIG_COLUMNS
        assert columns(adm, "SHOW LISTS") == LIST_COLUMNS
        assert columns(adm, "SHOW MEM") == MEM_COLUMNS
        assert columns(adm, "SHOW STATE") == STATE_COLUMNS
        # the ones that were there keep their columns; SHOW CLIENTS shares SHOW SERVERS' first
        clients = columns(adm, "SHOW CLIENTS")
        assert clients[:len(SERVER_COLUMNS)] == SERVER_COLUMNS
        assert [c for c, _ in clients[len(SERVER_COLUMNS):]] == [
            "txn_status", "txn_depth", "savepoints", "isolation", "read_only", "pinned"]
        assert [c for c, _ in columns(adm, "SHOW POOLS")][-2:] == [
            "cl_pinned", "sv_prepared_statements"]


def test_show_servers_under_load(pgtide, pg, table):
    t = table("who int, n int")
    p = start(pgtide, default_pool_size=3)
    load = Load(p, t, threads=6, sleep=0.005)
    load.wait_more(30)
    holder = p.connect(application_name="holder")
    try:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        with console(p) as adm:
            rows = servers(adm)
            assert 1 <= len(rows) <= 3
            for r in rows:
                assert (r["type"], r["user"], r["database"]) == ("S", "app", "app")
                assert r["state"] in ("active", "idle", "used", "new")
                assert (r["addr"], r["port"], r["local_addr"]) == ("127.0.0.1", pg.port,
                                                                   "127.0.0.1")
                assert 0 < r["local_port"] < 65536
                assert (r["wait"], r["wait_us"], r["close_needed"], r["tls"]) == (0, 0, 0, "")
                assert r["ptr"] == f"0x{r['id']:x}"
                assert r["connect_time"] <= r["request_time"]
            # the holder's server: linked both ways, named after the client
            me = client_row(adm, "holder")
            mine = [r for r in rows if r["link"] == me["ptr"]]
            assert len(mine) == 1, (me, rows)
            assert mine[0]["ptr"] == me["link"]
            assert mine[0]["state"] == "active"
            assert mine[0]["application_name"] == "holder"
            pid = holder.execute("SELECT pg_backend_pid()").fetchone()[0]
            assert mine[0]["remote_pid"] == pid
            holder.execute("COMMIT")
            load.stop()
            # settled: every server idle, one per PostgreSQL backend of app/app
            rows = h.wait_for(lambda: (lambda rs: rs if all(r["state"] == "idle" for r in rs)
                                       else None)(servers(adm)), 5, what="idle servers")
            assert {r["remote_pid"] for r in rows} == backend_pids(pg)
            assert all(r["link"] == "" and r["application_name"] == "" for r in rows)
            assert len(rows) == pool(adm)["sv_idle"]
    finally:
        holder.close()
        load.stop()
    assert rows_in(pg, t) == load.total()


def test_show_servers_prepared_statements(pgtide):
    p = start(pgtide, default_pool_size=1)
    with p.connect() as c, console(p) as adm:
        c.execute("SELECT %s::int", [1], prepare=True)
        c.execute("SELECT %s::text", ["x"], prepare=True)
        (row,) = servers(adm)
        assert row["prepared_statements"] == 2
        assert pool(adm)["sv_prepared_statements"] == 2
        mem = {r["name"]: r for r in adm.rows("SHOW MEM")}
        assert mem["prepared_statement_cache"]["used"] == 2


def test_show_databases_users_lists(pgtide, pg):
    p = pgtide.start({"pool_mode": "transaction", "admin_users": "app", "default_pool_size": 4,
                      "min_pool_size": 1, "max_db_connections": 9},
                     databases={"forced": f"host=127.0.0.1 port={pg.port} dbname=other "
                                          f"user=app password=app pool_size=2 pool_mode=session "
                                          f"reserve_pool=1 server_lifetime=120.9"},
                     users={"md5user": "pool_mode=statement pool_size=3 reserve_pool_size=0 "
                                       "max_user_connections=7 query_timeout=5"})
    with p.connect() as a, p.connect() as b:
        a.execute("BEGIN")
        a.execute("SELECT 1")
        b.execute("BEGIN")
        b.execute("SELECT 1")  # two servers for app
        with console(p) as adm:
            assert databases(adm) == {
                "app": {"name": "app", "host": "127.0.0.1", "port": pg.port,
                        "database": "app", "force_user": None, "pool_size": 4,
                        "min_pool_size": 1, "reserve_pool": 0, "server_lifetime": 3600,
                        "pool_mode": None,
                        "max_connections": 9, "current_connections": 2,
                        "max_client_connections": 0, "current_client_connections": 2,
                        "paused": 0, "disabled": 0},
                "other": {"name": "other", "host": "127.0.0.1", "port": pg.port,
                          "database": "other", "force_user": None, "pool_size": 4,
                          "min_pool_size": 1, "reserve_pool": 0, "server_lifetime": 3600,
                          "pool_mode": None,
                          "max_connections": 9, "current_connections": 0,
                          "max_client_connections": 0, "current_client_connections": 0,
                          "paused": 0, "disabled": 0},
                "forced": {"name": "forced", "host": "127.0.0.1", "port": pg.port,
                           "database": "other", "force_user": "app", "pool_size": 2,
                           "min_pool_size": 1, "reserve_pool": 1, "server_lifetime": 120,
                           "pool_mode": "session",
                           "max_connections": 9, "current_connections": 0,
                           "max_client_connections": 0, "current_client_connections": 0,
                           "paused": 0, "disabled": 0},
            }
            assert [r["name"] for r in adm.rows("SHOW DATABASES")] == ["app", "other", "forced"]
            assert adm.rows("SHOW USERS") == [
                {"name": "app", "pool_size": None, "reserve_pool_size": None,
                 "pool_mode": None, "max_user_connections": 0, "current_connections": 2,
                 "max_user_client_connections": 0, "current_client_connections": 2},
                {"name": "md5user", "pool_size": "3", "reserve_pool_size": "0",
                 "pool_mode": "statement", "max_user_connections": 7,
                 "current_connections": 0, "max_user_client_connections": 0,
                 "current_client_connections": 0},
                {"name": "trustuser", "pool_size": None, "reserve_pool_size": None,
                 "pool_mode": None, "max_user_connections": 0, "current_connections": 0,
                 "max_user_client_connections": 0, "current_client_connections": 0},
            ]
            clients = adm.rows("SHOW CLIENTS")
            lists = adm.rows("SHOW LISTS")
            assert [r["list"] for r in lists] == LIST_NAMES
            assert {r["list"]: r["items"] for r in lists} == {
                "databases": 3, "users": 3, "pools": 1, "free_clients": 0,
                "used_clients": len(clients), "login_clients": 0, "free_servers": 0,
                "used_servers": 2, "dns_names": 0, "dns_zones": 0, "dns_queries": 0,
                "dns_pending": 0}
            assert len(clients) == 3  # a, b and this console
            a.execute("COMMIT")
            b.execute("COMMIT")


def test_show_mem_and_state(pgtide):
    p = start(pgtide)
    with p.connect() as a, p.connect(dbname="other") as b, console(p) as adm:
        a.execute("SELECT 1")
        b.execute("SELECT 1")
        mem = adm.rows("SHOW MEM")
        assert [r["name"] for r in mem] == MEM_NAMES
        by = {r["name"]: r for r in mem}
        n_clients = len(adm.rows("SHOW CLIENTS"))
        n_servers = len(adm.rows("SHOW SERVERS"))
        assert (by["client_cache"]["used"], by["server_cache"]["used"],
                by["pool_cache"]["used"]) == (n_clients, n_servers, 2)
        for name in ("client_cache", "server_cache", "pool_cache"):
            r = by[name]
            assert r["size"] > 0 and r["free"] == 0, r
            assert r["memtotal"] == r["size"] * r["used"], r
        io = by["iobuf_cache"]
        assert io["size"] > 32768
        assert io["memtotal"] == io["size"] * (io["used"] + io["free"])
        assert by["pset_cache"]["used"] >= 1
        assert by["pset_cache"]["memtotal"] >= by["pset_cache"]["size"]
        assert adm.rows("SHOW STATE") == [{"key": "active", "value": "yes"},
                                          {"key": "paused", "value": "no"},
                                          {"key": "suspended", "value": "no"}]


def test_show_config(pgtide):
    p = start(pgtide, default_pool_size=7)
    with console(p) as adm:
        cfg = config(adm)
        assert cfg["default_pool_size"] == ("7", "20", "yes")
        assert cfg["pool_mode"] == ("transaction", "session", "yes")
        assert cfg["listen_port"] == (str(p.port), "6432", "no")
        assert cfg["unix_socket_dir"] == ("", "", "no")
        assert cfg["query_wait_timeout"] == ("120", "120", "yes")
        assert cfg["admin_users"] == ("app", "", "yes")
        fixed = sorted(k for k, (_, _, ch) in cfg.items() if ch == "no")
        assert fixed == sorted(["listen_addr", "listen_port", "listen_backlog",
                                "unix_socket_dir", "unix_socket_mode", "unix_socket_group",
                                "pidfile", "pkt_buf", "metrics_listen", "so_reuseport"])
        assert cfg["server_round_robin"] == ("0", "0", "yes")
        assert cfg["tcp_defer_accept"] == ("1", "1", "yes")
        assert cfg["client_tls_dheparams"] == ("auto", "auto", "yes")


def test_show_help_lists_every_command(pgtide):
    p = start(pgtide)
    with p.raw() as r:
        assert r.login("app", "app", "pgbouncer").ok
        qr = r.query("SHOW HELP")
        text = "\n".join(n.message for n in qr.notices)
        for word in ("CONFIG", "DATABASES", "SERVERS", "USERS", "LISTS", "MEM", "STATE",
                     "SET key = arg", "RELOAD", "PAUSE [<db>]", "RESUME [<db>]",
                     "DISABLE <db>", "ENABLE <db>", "RECONNECT [<db>]", "KILL [<db>]",
                     "KILL_CLIENT <client_id>", "SUSPEND", "SHUTDOWN", "WAIT_CLOSE [<db>]"):
            assert word in text, word
        assert qr.results == [(None, [], "SHOW")]


def test_psql(pgtide):
    p = start(pgtide)
    with p.connect() as c:
        c.execute("SELECT 1")
        r = psql(p, "SHOW SERVERS")
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[0] == "|".join(c for c, _ in SERVER_COLUMNS)
        assert lines[1].startswith("S|app|app|idle|127.0.0.1|")
        assert lines[-1] == "(1 row)"
        r = psql(p, "SHOW DATABASES")
        assert r.stdout.splitlines()[0] == "|".join(c for c, _ in DATABASE_COLUMNS)
        r = psql(p, "PAUSE")
        assert (r.returncode, r.stdout.strip()) == (0, "PAUSE"), r.stderr
        r = psql(p, "SHOW STATE")
        assert r.stdout.splitlines()[1:4] == ["active|no", "paused|yes", "suspended|no"]
        r = psql(p, "RESUME")
        assert (r.returncode, r.stdout.strip()) == (0, "RESUME"), r.stderr
        r = psql(p, "PAUSE", user="md5user", password="md5pw")
        assert r.returncode != 0
        assert "ERROR:  permission denied for PAUSE: admin access needed" in r.stderr
        assert c.execute("SELECT 2").fetchone() == (2,)


# ---- PAUSE / RESUME ----------------------------------------------------------------------------


@pytest.mark.deadline(90)
def test_pause_resume_under_load(pgtide, pg, table):
    t = table("who int, n int")
    p = start(pgtide, default_pool_size=3)
    load = Load(p, t, threads=8)
    try:
        load.wait_more(100)
        with console(p) as adm:
            adm.rows("PAUSE")  # answers once no server is left
            assert state(adm) == {"active": "no", "paused": "yes", "suspended": "no"}
            assert adm.rows("SHOW SERVERS") == []
            h.wait_for(lambda: not backend_pids(pg), 5, what="no backend left")
            # new work waits: every load thread, and a client that logs in now
            h.wait_for(lambda: pool(adm)["cl_waiting"] == 8, 5, what="8 waiting clients")
            late = h.Background(one_query, p, "SELECT 42")
            before, rows_before = load.total(), rows_in(pg, t)
            time.sleep(1.0)
            assert (load.total(), rows_in(pg, t)) == (before, rows_before)
            assert not late.done()
            assert pool(adm)["cl_waiting"] == 9
            assert not backend_pids(pg)
            refused(adm, "PAUSE", "55000", "already suspended/paused")
            adm.rows("RESUME")
            assert state(adm) == {"active": "yes", "paused": "no", "suspended": "no"}
            assert late.result(timeout=10) == (42,)
            load.wait_more(before + 100, "the load to go on after RESUME")
            refused(adm, "RESUME", "55000", "pooler is not paused/suspended")
    finally:
        load.stop()
    assert rows_in(pg, t) == load.total()


def test_pause_db_waits_for_its_transactions(pgtide, pg):
    p = start(pgtide)
    holder = p.connect(application_name="holder")
    other = p.connect(dbname="other")
    try:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        other.execute("SELECT 1")
        with console(p) as adm, console(p) as adm2:
            job = h.Background(adm.rows, "PAUSE app")
            time.sleep(0.5)
            assert not job.done(), "PAUSE app answered while a transaction held a server"
            dbs = databases(adm2)
            assert (dbs["app"]["paused"], dbs["other"]["paused"]) == (1, 0)
            assert state(adm2)["paused"] == "no"  # only the database is paused
            assert other.execute("SELECT 2").fetchone() == (2,)
            (srv,) = servers(adm2)
            assert srv["link"] == client_row(adm2, "holder")["ptr"]
            holder.execute("COMMIT")
            job.result(timeout=5)
            assert servers(adm2) == []
            assert servers(adm2, "other") != []
            h.wait_for(lambda: not backend_pids(pg), 5, what="app's backends to go")
            late = h.Background(one_query, p, "SELECT 7")
            time.sleep(0.5)
            assert not late.done()
            refused(adm2, "RESUME", "55000", "pooler is not paused/suspended")
            adm2.rows("RESUME app")
            assert late.result(timeout=10) == (7,)
            assert databases(adm2)["app"]["paused"] == 0
            refused(adm2, "RESUME app", "55000", "database app is not paused")
            refused(adm2, "PAUSE nosuch", "3D000", "no such database: nosuch")
            refused(adm2, "PAUSE pgbouncer", "0A000", "cannot pause admin db")
    finally:
        holder.close()
        other.close()


def test_pause_cancelled(pgtide):
    """A PAUSE that waits is called off by a cancel request (psql's Ctrl-C): 57014, and the
    database is not left paused."""
    p = start(pgtide)
    with p.connect() as holder, console(p) as adm:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        job = h.Background(adm.rows, "PAUSE app")
        time.sleep(0.3)
        assert not job.done()
        adm.conn.cancel()
        e = job.exception(timeout=5)
        assert isinstance(e, psycopg.Error) and e.sqlstate == "57014", e
        assert databases(adm)["app"]["paused"] == 0
        assert one_query(p, "SELECT 3") == (3,)
        holder.execute("COMMIT")
        adm.rows("PAUSE")  # nothing holds a server now: answers at once
        job = h.Background(one_query, p)
        time.sleep(0.3)
        assert not job.done()
        adm.rows("RESUME")
        assert job.result(timeout=5) == (1,)


def test_waiting_command_holds_later_queries(pgtide):
    """Statements after a waiting command in the same Query, and Queries sent meanwhile, are
    answered after it, in order."""
    p = start(pgtide)
    with p.connect() as holder, p.raw() as r:
        holder.execute("BEGIN")
        holder.execute("SELECT 1")
        assert r.login("app", "app", "pgtide").ok
        r.send(h.query_message("PAUSE app; SHOW STATE"))
        r.send(h.query_message("SHOW DATABASES"))
        with pytest.raises(TimeoutError):
            r.recv_msg(timeout=0.5)
        holder.execute("COMMIT")
        first = r.read_results(timeout=5)
        assert first.results[0] == (None, [], "PAUSE")
        assert first.results[1][1] == [("active", "yes"), ("paused", "no"),
                                       ("suspended", "no")]
        assert (len(first.results), first.errors, first.status) == (2, [], "I")
        second = r.read_results(timeout=5)
        cols, rows, tag = second.results[0]
        app = dict(zip(cols, [x for x in rows if x[0] == "app"][0]))
        assert (app["paused"], tag) == ("1", "SHOW")
        qr = r.query("RESUME app; FOO; SHOW STATE")
        assert [x[2] for x in qr.results] == ["RESUME"]
        assert [e.sqlstate for e in qr.errors] == ["42601"]


# ---- SUSPEND -----------------------------------------------------------------------------------


def test_suspend_resume(pgtide):
    p = start(pgtide)
    with p.connect() as c, console(p) as adm:
        c.execute("SELECT 1")
        adm.rows("SUSPEND")
        assert state(adm) == {"active": "no", "paused": "no", "suspended": "yes"}
        job = h.Background(lambda: c.execute("SELECT 2").fetchone())
        time.sleep(0.5)
        assert not job.done(), "a query went through while suspended"
        refused(adm, "SUSPEND", "55000", "already suspended/paused")
        refused(adm, "PAUSE", "55000", "already suspended/paused")
        refused(adm, "KILL app", "55000", "already suspended/paused")
        adm.rows("RESUME")
        assert job.result(timeout=5) == (2,)
        assert state(adm)["active"] == "yes"
        adm.rows("PAUSE other")
        refused(adm, "SUSPEND", "55000", "cannot suspend with paused databases")
        adm.rows("RESUME other")
        assert c.execute("SELECT 3").fetchone() == (3,)


def _stalled_reader(p):
    """A client whose query answers far more than the socket buffers hold, and that never
    reads: pgtide's buffer for it cannot flush."""
    r = p.raw(timeout=30)
    assert r.login("app", "app", "app").ok
    r.send(h.query_message("select repeat('x', 1048576) from generate_series(1, 96)"))
    time.sleep(1.5)  # the rows fill the socket buffers and pgtide's queue
    return r


@pytest.mark.deadline(90)
def test_suspend_timeout_closes_a_client_that_does_not_read(pgtide):
    p = start(pgtide, suspend_timeout=1)
    with _stalled_reader(p) as r, console(p) as adm:
        t0 = time.monotonic()
        job = h.Background(adm.rows, "SUSPEND")
        job.result(timeout=30)  # answered once suspend_timeout closed the stalled client
        assert time.monotonic() - t0 >= 0.9  # it did wait for the flush first
        assert state(adm)["suspended"] == "yes"
        p.wait_log("SUSPEND could not flush it within suspend_timeout")
        adm.rows("RESUME")
        _, closed = r.read_until_closed(timeout=30)
        assert closed, "the stalled client is still connected"
    assert one_query(p, "SELECT 5") == (5,)


@pytest.mark.deadline(90)
def test_suspend_waits_for_a_reader_within_suspend_timeout(pgtide):
    p = start(pgtide, suspend_timeout=60)
    with _stalled_reader(p) as r, console(p) as adm, console(p) as adm2:
        job = h.Background(adm.rows, "SUSPEND")
        time.sleep(3)
        assert not job.done(), "SUSPEND answered with a buffer not flushed"
        adm2.rows("RESUME")  # calls the waiting SUSPEND off
        with pytest.raises(psycopg.errors.QueryCanceled):
            job.result(timeout=10)
        assert "suspend_timeout" not in p.log()
        r.abort()
    assert one_query(p, "SELECT 6") == (6,)


# ---- DISABLE / ENABLE --------------------------------------------------------------------------


def test_disable_enable(pgtide):
    p = start(pgtide)
    with p.connect() as before, console(p) as adm:
        before.execute("SELECT 1")
        adm.rows("DISABLE app")
        assert (databases(adm)["app"]["disabled"], databases(adm)["other"]["disabled"]) == (1, 0)
        with p.raw() as r:
            res = r.login("app", "app", "app")
            assert res.error is not None, res
            assert (res.error.sqlstate, res.error.message) == (
                "55000", 'database "app" is not currently accepting connections')
        with pytest.raises(psycopg.OperationalError, match="not currently accepting"):
            p.connect()
        assert before.execute("SELECT 2").fetchone() == (2,)  # those logged in go on
        assert one_query(p, "SELECT 3", dbname="other") == (3,)
        adm.rows("ENABLE app")
        assert databases(adm)["app"]["disabled"] == 0
        assert one_query(p, "SELECT 4") == (4,)
        refused(adm, "DISABLE", "42601", "a database is required")
        refused(adm, "ENABLE", "42601", "a database is required")
        refused(adm, "DISABLE nosuch", "3D000", "no such database: nosuch")
        refused(adm, "DISABLE pgtide", "0A000", "cannot disable admin db")


# ---- RECONNECT / WAIT_CLOSE --------------------------------------------------------------------


@pytest.mark.deadline(90)
def test_reconnect_wait_close_under_load(pgtide, pg, table):
    t = table("who int, n int")
    p = start(pgtide, default_pool_size=2)
    load = Load(p, t, threads=4, sleep=0.005)
    try:
        load.wait_more(30)
        with console(p) as adm:
            old = {r["remote_pid"] for r in servers(adm)} - {0}
            assert 1 <= len(old) <= 2
            adm.rows("RECONNECT app")
            adm.rows("WAIT_CLOSE app")  # answers once every old server is closed
            rows = servers(adm)
            assert all(r["close_needed"] == 0 for r in rows), rows
            assert old.isdisjoint({r["remote_pid"] for r in rows})
            h.wait_for(lambda: old.isdisjoint(backend_pids(pg)), 5,
                       what="the old backends to exit")
            before = load.total()
            load.wait_more(before + 30, "the load to go on with new servers")
            assert old.isdisjoint({r["remote_pid"] for r in servers(adm)})
    finally:
        load.stop()
    assert rows_in(pg, t) == load.total()


def test_wait_close_waits_for_session_clients(pgtide):
    p = start(pgtide, pool_mode="session")
    s1 = p.connect()
    try:
        pid = s1.execute("SELECT pg_backend_pid()").fetchone()[0]
        with console(p) as adm:
            adm.rows("WAIT_CLOSE")  # nothing marked: at once
            adm.rows("RECONNECT")
            (row,) = servers(adm)
            assert (row["remote_pid"], row["close_needed"], row["state"]) == (pid, 1, "active")
            job = h.Background(adm.rows, "WAIT_CLOSE")
            time.sleep(0.5)
            assert not job.done(), "WAIT_CLOSE answered while a marked server was in use"
            s1.close()
            job.result(timeout=10)
            assert servers(adm) == []
            with p.connect() as s2:
                assert s2.execute("SELECT pg_backend_pid()").fetchone()[0] != pid
            refused(adm, "WAIT_CLOSE nosuch", "3D000")
            refused(adm, "RECONNECT nosuch", "3D000")
    finally:
        s1.close()


# ---- KILL / KILL_CLIENT ------------------------------------------------------------------------


def test_kill_database(pgtide, pg):
    p = start(pgtide)
    idle_c = p.raw()
    txn_c = p.connect()
    oth = p.connect(dbname="other")
    try:
        assert idle_c.login("app", "app", "app").ok
        txn_c.execute("BEGIN")
        txn_c.execute("SELECT 1")
        oth.execute("SELECT 1")
        with console(p) as adm:
            adm.rows("KILL app")
            err, closed, _ = idle_c.expect_error_then_close(timeout=5)
            assert (err.sqlstate, err.message, closed) == (
                "57P01", "terminating connection due to administrator command", True)
            with pytest.raises(psycopg.OperationalError,
                               match="terminating connection due to administrator command"):
                txn_c.execute("SELECT 1")
            assert oth.execute("SELECT 2").fetchone() == (2,)
            assert servers(adm) == []
            h.wait_for(lambda: not backend_pids(pg), 5, what="app's backends to go")
            assert databases(adm)["app"]["paused"] == 1  # as PgBouncer: until RESUME
            late = h.Background(one_query, p, "SELECT 5")
            time.sleep(0.5)
            assert not late.done()
            adm.rows("RESUME app")
            assert late.result(timeout=10) == (5,)
            refused(adm, "KILL nosuch", "3D000")
    finally:
        idle_c.close()
        txn_c.close()
        oth.close()


def test_kill_client(pgtide):
    p = start(pgtide)
    victim = p.raw()
    second = p.raw()
    try:
        assert victim.login("app", "app", "app", params={"application_name": "victim"}).ok
        assert second.login("app", "app", "app", params={"application_name": "second"}).ok
        with p.connect(application_name="bystander") as by, console(p) as adm:
            by.execute("SELECT 1")
            v = client_row(adm, "victim")
            adm.rows(f"KILL_CLIENT {v['id']}")
            err, closed, _ = victim.expect_error_then_close(timeout=5)
            assert (err.sqlstate, closed) == ("57P01", True)
            assert not [r for r in adm.rows("SHOW CLIENTS") if r["application_name"] == "victim"]
            s = client_row(adm, "second")
            assert s["ptr"] == f"0x{s['id']:x}"
            adm.rows(f"KILL_CLIENT {s['ptr']}")  # the ptr form works too
            err, closed, _ = second.expect_error_then_close(timeout=5)
            assert (err.sqlstate, closed) == ("57P01", True)
            assert by.execute("SELECT 2").fetchone() == (2,)
            refused(adm, "KILL_CLIENT 999999", "42704", "client not found")
            refused(adm, "KILL_CLIENT abc", "22023", "invalid client pointer supplied")
            refused(adm, "KILL_CLIENT", "22023", "invalid client pointer supplied")
    finally:
        victim.close()
        second.close()


# ---- RELOAD / SET ------------------------------------------------------------------------------


@pytest.mark.deadline(120)
def test_reload_changes_pool_size_under_load(pgtide, pg, table):
    t = table("who int, n int")
    p = start(pgtide, default_pool_size=2)
    load = Load(p, t, threads=8, sleep=0.02)
    try:
        load.wait_more(20)
        with console(p) as adm, h.BackendSampler(pg, user="app", db="app") as smp:
            time.sleep(0.5)
            assert smp.max <= 2
            p.rewrite({"default_pool_size": 5})
            adm.rows("RELOAD")
            assert databases(adm)["app"]["pool_size"] == 5
            assert config(adm)["default_pool_size"][0] == "5"
            h.wait_for(lambda: len(servers(adm)) == 5, 10, what="5 servers")
            h.wait_for(lambda: len(backend_pids(pg)) == 5, 5, what="5 backends")
            p.rewrite({"default_pool_size": 1})
            adm.rows("RELOAD")
            assert databases(adm)["app"]["pool_size"] == 1
            h.wait_for(lambda: len(servers(adm)) == 1 and len(backend_pids(pg)) == 1, 10,
                       what="the pool to shrink to 1")
            before = load.total()
        with h.BackendSampler(pg, user="app", db="app") as smp:
            load.wait_more(before + 20, "the load to go on with one server")
            assert smp.max == 1
        assert smp.samples > 3
        with console(p) as adm:
            pl = pool(adm)
            assert pl["sv_active"] + pl["sv_idle"] + pl["sv_used"] + pl["sv_login"] == 1
            # a file the reload refuses keeps the old configuration
            p.rewrite({"default_pool_size": "bogus"})
            refused(adm, "RELOAD", "F0000", "RELOAD failed")
            assert databases(adm)["app"]["pool_size"] == 1
    finally:
        load.stop()
    assert rows_in(pg, t) == load.total()


def test_set_and_show_config(pgtide, pg):
    p = start(pgtide, default_pool_size=4)
    with console(p) as adm, p.connect() as a, p.connect() as b:
        assert adm.conn.execute("SET default_pool_size = 1").statusmessage == "SET"
        assert config(adm)["default_pool_size"] == ("1", "20", "yes")
        assert databases(adm)["app"]["pool_size"] == 1
        # in force at once: one server, so b waits while a holds it
        a.execute("BEGIN")
        a.execute("SELECT 1")
        job = h.Background(lambda: b.execute("SELECT 2").fetchone())
        time.sleep(0.5)
        assert not job.done()
        assert len(backend_pids(pg)) == 1
        a.execute("COMMIT")
        assert job.result(timeout=5) == (2,)
        adm.rows("SET log_connections TO off")
        adm.rows("SET query_wait_timeout = '0.5'")
        adm.rows("SET Server_Reset_Query = 'DISCARD ALL; SELECT ''x'''")
        cfg = config(adm)
        assert cfg["log_connections"] == ("0", "1", "yes")
        assert cfg["query_wait_timeout"] == ("0.5", "120", "yes")
        assert cfg["server_reset_query"] == ("DISCARD ALL; SELECT 'x'", "DISCARD ALL", "yes")
        refused(adm, "SET listen_port = 7000", "55P02",
                'parameter "listen_port" cannot be changed without restarting')
        refused(adm, "SET nosuch = 1", "42704", 'unrecognized configuration parameter "nosuch"')
        refused(adm, "SET default_pool_size = 'x'", "22023",
                'invalid value for parameter "default_pool_size"')
        refused(adm, "SET default_pool_size = 0", "22023", "out of range")
        refused(adm, "SET dns_max_ttl = 1", "0A000", "not implemented by pgtide")
        refused(adm, "SET so_reuseport = 1", "55P02",
                'parameter "so_reuseport" cannot be changed without restarting')
        refused(adm, "SET = 1", "42601")
        refused(adm, "SET default_pool_size 3", "42601")
        assert config(adm)["default_pool_size"][0] == "1"
        # what drivers SET on any connection is ignored with a NOTICE, as PgBouncer does
        notices = []
        adm.conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        adm.rows("SET client_encoding = 'UTF8'")
        assert notices == ["SET ignored"]
        assert adm.rows("SHOW client_encoding") == [{"client_encoding": "UTF8"}]
        # RELOAD goes back to the file
        adm.rows("RELOAD")
        assert config(adm)["default_pool_size"][0] == "4"
        assert config(adm)["query_wait_timeout"][0] == "120"


# ---- permissions, errors, SHUTDOWN -------------------------------------------------------------


def test_stats_users_may_only_look(pgtide):
    p = start(pgtide)
    with p.connect() as c, console(p, "md5user", "md5pw") as st:
        c.execute("SELECT 1")
        for sql in ("SHOW POOLS", "SHOW SERVERS", "SHOW CLIENTS", "SHOW DATABASES",
                    "SHOW USERS", "SHOW CONFIG", "SHOW LISTS", "SHOW MEM", "SHOW STATE",
                    "SHOW ERRORS", "SHOW TRANSACTIONS", "SHOW VERSION"):
            st.rows(sql)
        for sql in CONTROL_COMMANDS:
            word = sql.split()[0]
            refused(st, sql, "42501", f"permission denied for {word}: admin access needed")
        assert state(st) == {"active": "yes", "paused": "no", "suspended": "no"}
        assert databases(st)["app"]["disabled"] == 0
        assert config(st)["default_pool_size"][0] == "4"
        assert c.execute("SELECT 2").fetchone() == (2,)
        assert p.alive()


def test_unknown_and_malformed_commands(pgtide):
    p = start(pgtide)
    with console(p) as adm:
        refused(adm, "FOO", "42601", "invalid command 'FOO', use SHOW HELP;")
        refused(adm, "PAUSE app other", "42601", "invalid command 'PAUSE app other'")
        refused(adm, "RELOAD now", "42601", "invalid command 'RELOAD now'")
        refused(adm, "SHOW NOSUCH", "42601", "unknown SHOW subject 'nosuch'")
        assert state(adm)["active"] == "yes"
        # commands are case-insensitive, a trailing ';' is allowed, database names keep case
        adm.rows("pause other;")
        assert databases(adm)["other"]["paused"] == 1
        adm.rows('Resume "other"')
        assert databases(adm)["other"]["paused"] == 0
        refused(adm, "PAUSE OTHER", "3D000", "no such database: OTHER")


def test_shutdown(pgtide):
    p = start(pgtide)
    c = p.raw()
    a = p.raw()
    try:
        assert c.login("app", "app", "app").ok
        assert a.login("app", "app", "pgbouncer").ok
        qr = a.query("SHUTDOWN")
        assert [e.sqlstate for e in qr.errors] == ["57P01"]
        assert qr.closed
        err, closed, _ = c.expect_error_then_close(timeout=5)
        assert (err.sqlstate, closed) == ("57P01", True)
        assert p.wait_exit(10) == 0
        assert "SHUTDOWN" in p.log()
    finally:
        c.close()
        a.close()
