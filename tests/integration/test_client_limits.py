"""max_db_client_connections and max_user_client_connections: client connections per database
name and per user name, global and per [databases] / [users] entry. A client over a limit gets
53300 right after its startup packet (before it is asked for a password) and is closed; the
clients already in carry on; a client that leaves, however it leaves, frees its slot; a reload
or SET applies to new connections; the admin console is not counted and shows the limits and
the counts (SHOW DATABASES, SHOW USERS).
"""

import os
import struct
import time

import psycopg
import pytest

import pgtide_harness as h

DIRECT = os.environ.get("PGTIDE_TEST_DIRECT") == "1"
pytestmark = pytest.mark.skipif(DIRECT, reason="PostgreSQL has no such limits")

DB_FULL = "no more connections allowed (max_db_client_connections)"
USER_FULL = "no more connections allowed (max_user_client_connections)"


# trustuser gets a password: its clients authenticate with SCRAM like the others.
USERLIST = [("app", "app"), ("md5user", "md5pw"), ("trustuser", "tpw")]


def start(pgtide, settings, **kw):
    return pgtide.start(settings, userlist=USERLIST, **kw)


def login(p, user="app", password="app", db="app", **params):
    """A raw connection and its login result (kept open, logged in or not)."""
    c = p.raw(timeout=10)
    return c, c.login(user, password, db, params=params or None)


def assert_refused(p, message, user="app", password="app", db="app"):
    """A login for (user, db) is refused as over a client limit: FATAL 53300 naming the limit,
    before any authentication request, then the connection closes."""
    c, res = login(p, user, password, db)
    try:
        assert not res.ok, f"{user}@{db} got in; expected: {message}"
        err = res.error
        assert err is not None, f"{user}@{db}: closed without an error ({res})"
        assert (err.get("S"), err.sqlstate, err.message) == ("FATAL", "53300", message), err
        assert res.auth_codes == [], f"{user}@{db} was asked to authenticate first: {res}"
        assert '"kind":"TooManyConnections"' in (err.get("K") or ""), err
        _, closed = c.read_until_closed(timeout=5)
        assert closed, f"{user}@{db}: still connected after the refusal"
    finally:
        c.close()
    return err


def admitted(p, user="app", password="app", db="app", timeout=5):
    """Logs in, retrying while the slot is still taken (the previous client's close may still
    be in flight): every refusal meanwhile must be the client limit's. Returns the raw
    connection, logged in and answering queries."""
    deadline = time.monotonic() + timeout
    while True:
        c, res = login(p, user, password, db)
        if res.ok:
            qr = c.query("select 'in'")
            assert not qr.closed and qr.errors == [] and qr.status == "I", qr.errors
            return c
        c.close()
        assert res.error is not None and res.error.sqlstate == "53300", res
        assert time.monotonic() < deadline, f"{user}@{db}: slot not freed within {timeout}s"
        time.sleep(0.05)


def still_working(conns):
    for i, c in enumerate(conns):
        if isinstance(c, psycopg.Connection):
            assert c.execute("select %s::int", [i]).fetchone() == (i,)
        else:
            qr = c.query(f"select {i}")
            assert not qr.closed and qr.errors == [] and qr.status == "I", qr.errors


def reload_with(p, **rewrite):
    mark = p.log_mark()
    p.rewrite(**rewrite)
    p.reload()
    p.wait_log("configuration reloaded", mark=mark)


# ---- the limits --------------------------------------------------------------------------------


def test_max_db_client_connections_global(pgtide):
    """Two clients per database, whatever the user; other databases have their own count."""
    p = start(pgtide, {"max_db_client_connections": 2})
    a = p.connect()
    b = p.connect(user="md5user", password="md5pw")
    try:
        err = assert_refused(p, DB_FULL)
        assert_refused(p, DB_FULL, user="md5user", password="md5pw")
        assert_refused(p, DB_FULL, user="trustuser", password="tpw")
        with p.connect(dbname="other") as o1, p.connect(dbname="other") as o2:
            still_working([o1, o2])
            assert_refused(p, DB_FULL, db="other")
        still_working([a, b])
        p.wait_log(r"pooler error: no more connections allowed \(max_db_client_connections\)")
        assert err.message == DB_FULL
    finally:
        a.close()
    c = admitted(p)  # a's slot
    try:
        still_working([b, c])
        assert_refused(p, DB_FULL)
    finally:
        c.close()
        b.close()


def test_max_db_client_connections_per_database(pgtide, pg):
    """A [databases] entry's value overrides the global one for that database alone (0 lifts
    it), and the "*" entry's value applies to each database it serves, one count per name."""
    base = f"host=127.0.0.1 port={pg.port}"
    p = start(pgtide, {"max_db_client_connections": 2},
                     databases={"app": f"{base} dbname=app max_db_client_connections=1",
                                "other": f"{base} dbname=other max_db_client_connections=0",
                                "third": f"{base} dbname=other",
                                "*": f"{base} dbname=other max_db_client_connections=3"})
    held = []
    try:
        held.append(p.connect())
        assert_refused(p, DB_FULL)
        held += [p.connect(dbname="other") for _ in range(4)]  # 0: no limit, not the global 2
        held += [p.connect(dbname="third") for _ in range(2)]
        assert_refused(p, DB_FULL, db="third")
        held += [p.connect(dbname="wild1") for _ in range(3)]
        assert_refused(p, DB_FULL, db="wild1")
        held.append(p.connect(dbname="wild2"))  # a name of its own
        still_working(held)
    finally:
        for c in held:
            c.close()


def test_max_user_client_connections(pgtide):
    """Per user, whatever the database: the global value, and a [users] entry's over it."""
    p = start(pgtide, {"max_user_client_connections": 2},
                     users={"md5user": "max_user_client_connections=1",
                            "trustuser": "max_user_client_connections=0"})
    a = p.connect()
    b = p.connect(dbname="other")
    m = p.connect(user="md5user", password="md5pw", dbname="other")
    trust = [p.connect(user="trustuser", password="tpw") for _ in range(3)]
    try:
        assert_refused(p, USER_FULL)
        assert_refused(p, USER_FULL, db="other")
        assert_refused(p, USER_FULL, user="md5user", password="md5pw")
        still_working([a, b, m] + trust)
    finally:
        b.close()
        m.close()
        for c in trust:
            c.close()
    c = admitted(p, db="other")
    d = admitted(p, user="md5user", password="md5pw")
    try:
        assert_refused(p, USER_FULL)
        still_working([a, c, d])
    finally:
        for x in (a, c, d):
            x.close()


def test_both_limits_the_database_named_first(pgtide):
    """A login over both limits names the database's; over the user's alone, the user's. A
    refused client is counted nowhere: it takes no slot of the other limit either."""
    p = start(pgtide, {"max_db_client_connections": 1, "max_user_client_connections": 1})
    with p.connect() as a:
        assert_refused(p, DB_FULL)
        assert_refused(p, USER_FULL, db="other")
        for _ in range(3):
            assert_refused(p, DB_FULL, user="md5user", password="md5pw")
        with p.connect(user="md5user", password="md5pw", dbname="other") as m:
            still_working([a, m])


def test_refused_before_authentication(pgtide):
    """The refusal comes before the password exchange: a client that does not even know the
    password learns only that the database is full, and no authentication work is spent. A
    client still authenticating holds its slot."""
    p = start(pgtide, {"max_db_client_connections": 1})
    stalled = p.raw(timeout=10)
    try:
        stalled.send(h.startup_message({"user": "app", "database": "app"}))
        t, _ = stalled.recv_msg()
        assert t == "R"  # asked for a password, not answering yet
        assert_refused(p, DB_FULL, password="wrong")
        assert_refused(p, DB_FULL, user="nosuchuser", password="x")
    finally:
        stalled.close()
    admitted(p).close()


# ---- every way out frees the slot ------------------------------------------------------------

WAYS_OUT = ["terminate", "eof", "reset", "bad_password", "protocol_violation",
            "login_timeout", "idle_timeout", "kill_client", "kill_db", "server_terminated"]


@pytest.mark.parametrize("way", WAYS_OUT)
def test_slot_freed_on_every_way_out(pgtide, pg, way):
    """A database with one slot: its client leaves by `way`, the next login gets in; a client
    of another database never noticed. Before it left, the slot was taken."""
    settings = {"admin_users": "app", "max_db_client_connections": 1}
    if way == "login_timeout":
        settings["client_login_timeout"] = 1
    if way == "idle_timeout":
        settings["client_idle_timeout"] = 1
    p = start(pgtide, settings)
    bystander = p.connect(dbname="other", user="md5user", password="md5pw")
    occupant = p.raw(timeout=10)
    try:
        if way in ("bad_password", "login_timeout"):
            occupant.send(h.startup_message({"user": "app", "database": "app"}))
            t, _ = occupant.recv_msg()
            assert t == "R"
        else:
            res = occupant.login("app", "app", "app", params={"application_name": "occupant"})
            assert res.ok, res
            assert occupant.query("select 1").errors == []  # linked to a server
        assert_refused(p, DB_FULL)

        if way == "terminate":
            occupant.send(h.terminate_message())
            occupant.close()
        elif way == "eof":
            occupant.close()
        elif way == "reset":
            occupant.abort()
        elif way == "bad_password":
            scram = h.ScramClient("wrong")
            first = scram.client_first()
            occupant.send(h.message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first))
                                    + first))
            t, body = occupant.recv_msg()
            assert t == "R" and struct.unpack("!I", body[:4]) == (11,), (t, body)
            occupant.send(h.message(b"p", scram.client_final(body[4:])))
            err, closed, _ = occupant.expect_error_then_close(timeout=5)
            assert closed and err is not None and err.sqlstate == "28P01", err
        elif way == "protocol_violation":
            occupant.send(h.message(b"\x01", b"junk"))
            err, closed, _ = occupant.expect_error_then_close(timeout=5)
            assert closed and err.sqlstate == "08P01", err
        elif way in ("login_timeout", "idle_timeout"):
            _, closed = occupant.read_until_closed(timeout=10)
            assert closed, f"{way}: the occupant was not closed"
        elif way == "kill_client":
            with h.AdminConsole(p) as adm:
                rows = [r for r in adm.rows("SHOW CLIENTS")
                        if r["application_name"] == "occupant"]
                assert len(rows) == 1, rows
                adm.rows(f"KILL_CLIENT {rows[0]['id']}")
            err, closed, _ = occupant.expect_error_then_close(timeout=5)
            assert closed and err.sqlstate == "57P01", err
        elif way == "kill_db":
            with h.AdminConsole(p) as adm:
                adm.rows("KILL app")
                err, closed, _ = occupant.expect_error_then_close(timeout=5)
                assert closed and err.sqlstate == "57P01", err
                adm.rows("RESUME app")
        elif way == "server_terminated":
            pg.admin_sql("select pg_terminate_backend(pid) from pg_stat_activity "
                         "where application_name = 'occupant'")
            _, closed = occupant.read_until_closed(timeout=5)
            assert closed, "the occupant outlived its server"

        nxt = admitted(p, timeout=10)
        try:
            assert_refused(p, DB_FULL)  # the new one holds the slot now
            if way != "idle_timeout":
                still_working([bystander])
        finally:
            nxt.close()
    finally:
        occupant.close()
        bystander.close()


@pytest.mark.deadline(120)
def test_many_clients_come_and_go(pgtide):
    """Round after round, both databases fill up to their limit with clients of two users, one
    more is refused, and they all leave in one of three manners. A slot that leaked in one
    round would refuse a client in the next; at the end every count is back to 0."""
    p = start(pgtide, {"max_db_client_connections": 3, "max_user_client_connections": 4,
                      "admin_users": "trustuser"})
    fill = [("app", "app", "app"), ("app", "app", "app"), ("md5user", "md5pw", "app"),
            ("app", "app", "other"), ("md5user", "md5pw", "other"),
            ("md5user", "md5pw", "other")]
    for rnd in range(10):
        conns = [admitted(p, user, pw, db) for user, pw, db in fill]
        assert_refused(p, DB_FULL, user="trustuser", password="tpw")
        assert_refused(p, DB_FULL, user="trustuser", password="tpw", db="other")
        for i, c in enumerate(conns):
            if (i + rnd) % 3 == 0:
                c.abort()
            elif (i + rnd) % 3 == 1:
                c.send(h.terminate_message())
                c.close()
            else:
                c.close()
    with h.AdminConsole(p, user="trustuser", password="tpw") as adm:
        h.wait_for(lambda: all(r["current_client_connections"] == 0
                               for r in adm.rows("SHOW DATABASES")) and
                   all(r["current_client_connections"] == 0 for r in adm.rows("SHOW USERS")),
                   10, what="every count back to 0")
    held = [admitted(p, db="app"), admitted(p, db="app"), admitted(p, db="app"),
            admitted(p, db="other")]
    try:
        assert_refused(p, DB_FULL)
        assert_refused(p, USER_FULL, db="other")
    finally:
        for c in held:
            c.close()


# ---- reload and SET -----------------------------------------------------------------------------


def test_reload_applies_to_new_connections(pgtide, pg):
    """A raised limit lets more in at once; a lowered one keeps the clients in and refuses new
    ones; per-database and per-user values change with the file too; SET on the console as
    well."""
    p = start(pgtide, {"max_db_client_connections": 1, "admin_users": "trustuser"})
    held = [p.connect()]
    try:
        assert_refused(p, DB_FULL)
        reload_with(p, ini_settings={"max_db_client_connections": 3})
        held += [p.connect(), p.connect()]
        assert_refused(p, DB_FULL)

        reload_with(p, ini_settings={"max_db_client_connections": 1})
        still_working(held)  # three clients over the new limit stay
        assert_refused(p, DB_FULL)
        held.pop().close()
        held.pop().close()
        assert_refused(p, DB_FULL)  # 1 left, limit 1

        base = f"host=127.0.0.1 port={pg.port}"
        reload_with(p, ini_settings={"max_db_client_connections": 0},
                    databases={"app": f"{base} dbname=app max_db_client_connections=2"},
                    users={"app": "max_user_client_connections=2"})
        held.append(p.connect())
        assert_refused(p, DB_FULL)
        assert_refused(p, USER_FULL, db="other")

        with h.AdminConsole(p, user="trustuser", password="tpw") as adm:
            adm.rows("RELOAD")  # the same file: nothing changes
            assert_refused(p, DB_FULL)
            p.rewrite(users={"app": None})
            adm.rows("RELOAD")
            held.append(p.connect(dbname="other"))  # the user has no limit now
            adm.rows("SET max_user_client_connections = 3")
            assert_refused(p, USER_FULL, db="other")
            adm.rows("SET max_user_client_connections = 0")
            held.append(p.connect(dbname="other"))
        still_working(held)
    finally:
        for c in held:
            c.close()


# ---- the admin console ---------------------------------------------------------------------------


def test_admin_console_not_counted(pgtide):
    """Console connections neither count nor are refused: an operator can always look at a
    full database or user; the console's own names are no database for the limit."""
    p = start(pgtide, {"max_db_client_connections": 1, "max_user_client_connections": 1,
                      "admin_users": "app", "stats_users": "md5user"})
    with p.connect() as a:
        assert_refused(p, DB_FULL)
        with h.AdminConsole(p) as adm1, h.AdminConsole(p, dbname="pgbouncer") as adm2, \
                h.AdminConsole(p, user="md5user", password="md5pw") as st1, \
                h.AdminConsole(p, user="md5user", password="md5pw") as st2:
            for adm in (adm1, adm2, st1, st2):
                dbs = {r["name"]: r for r in adm.rows("SHOW DATABASES")}
                assert dbs["app"]["current_client_connections"] == 1
                users = {r["name"]: r for r in adm.rows("SHOW USERS")}
                assert users["app"]["current_client_connections"] == 1
                assert users["md5user"]["current_client_connections"] == 0
            with p.connect(user="md5user", password="md5pw", dbname="other") as m:
                still_working([a, m])
        assert_refused(p, USER_FULL, db="other")


def test_show_databases_and_users(pgtide, pg):
    """The limit in force and the current count, per database and per user, clients still
    logging in included, the console not."""
    base = f"host=127.0.0.1 port={pg.port}"
    p = start(pgtide, {"max_db_client_connections": 3, "max_user_client_connections": 4,
                      "admin_users": "app"},
                     databases={"limited": f"{base} dbname=other max_db_client_connections=1",
                                "*": f"{base} dbname=other max_db_client_connections=2"},
                     users={"md5user": "max_user_client_connections=1 pool_mode=transaction"})
    held = [p.connect(), p.connect(), p.connect(dbname="anyname"),
            p.connect(user="md5user", password="md5pw", dbname="other")]
    stalled = p.raw(timeout=10)
    try:
        stalled.send(h.startup_message({"user": "app", "database": "other"}))
        assert stalled.recv_msg()[0] == "R"
        with h.AdminConsole(p) as adm:
            dbs = {r["name"]: (r["max_client_connections"], r["current_client_connections"])
                   for r in adm.rows("SHOW DATABASES")}
            assert dbs == {"app": (3, 2), "other": (3, 2), "limited": (1, 0),
                           "anyname": (2, 1)}
            users = {r["name"]: r for r in adm.rows("SHOW USERS")}
            assert {n: (r["pool_mode"], r["max_user_client_connections"],
                        r["current_client_connections"]) for n, r in users.items()} == {
                "app": (None, 4, 4), "md5user": ("transaction", 1, 1),
                "trustuser": (None, 4, 0)}
            stalled.close()
            held.pop().close()
            held.pop().close()
            h.wait_for(lambda: {r["name"]: r["current_client_connections"]
                                for r in adm.rows("SHOW DATABASES")} ==
                       {"app": 2, "other": 0, "limited": 0, "anyname": 0}, 5,
                       what="the counts to follow the departures")
            assert {r["name"]: r["current_client_connections"]
                    for r in adm.rows("SHOW USERS")} == {"app": 2, "md5user": 0,
                                                         "trustuser": 0}
    finally:
        stalled.close()
        for c in held:
            c.close()
