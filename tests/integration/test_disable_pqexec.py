"""disable_pqexec: the simple query protocol is refused, the extended one still served."""

import psycopg

import pgtide_harness as h


def test_simple_query_refused_extended_served(pgtide):
    p = pgtide.start({"disable_pqexec": 1})
    # Extended protocol: Parse/Bind/Execute/Sync is served as usual.
    with p.raw() as c:
        assert c.login("app", "app", "app").ok  # logging in sends no Query
        c.send(h.parse_msg("select $1::int + 1", param_oids=(23,)) + h.bind_msg(("41",))
               + h.execute_msg() + h.sync_msg())
        qr = c.read_results()
        assert not qr.errors and qr.status == "I"
        assert [r for _, r, _ in qr.results] == [[("42",)]]
        # The same session's simple Query: an ErrorResponse, then the connection closes.
        c.send(h.query_message("select 1"))
        err, closed, msgs = c.expect_error_then_close()
        assert err is not None and err.sqlstate == "08P01", msgs
        assert "disable_pqexec" in err.message
        assert not [t for t, _ in msgs if t in ("T", "D", "C")]
        assert closed
    p.wait_log("disable_pqexec")
    # A driver that uses only the extended protocol (psycopg with parameters) works.
    with psycopg.connect(p.dsn(), autocommit=True) as conn:
        assert conn.execute("select %s::text", ("x",)).fetchone() == ("x",)


def test_admin_console_unaffected_and_set_turns_it_off(pgtide):
    p = pgtide.start({"disable_pqexec": 1, "admin_users": "app"})
    with h.AdminConsole(p) as a:  # the console speaks the simple protocol
        rows = {r["key"]: r["value"] for r in a.rows("SHOW CONFIG")}
        assert rows["disable_pqexec"] == "1"
        a.rows("SET disable_pqexec = 0")
    with p.raw() as c:
        assert c.login("app", "app", "app").ok
        qr = c.query("select 1")
        assert not qr.errors and qr.results[0][1] == [("1",)]
