"""Checks the test harness itself against PostgreSQL directly (no pgtide needed): the cluster
fixture, port locks and the raw protocol client that the other tests rely on."""

import fcntl
import os

import psycopg
import pytest

import pgtide_harness as h


def test_cluster_roles_and_databases(pg):
    with psycopg.connect(pg.dsn("app", "app")) as c:
        assert c.execute("select current_user, current_database()").fetchone() == ("app", "app")
    with psycopg.connect(pg.dsn("md5user", "other")) as c:
        assert c.execute("select current_user").fetchone() == ("md5user",)
    with psycopg.connect(pg.dsn("trustuser", "app", password="")) as c:
        assert c.execute("select current_user").fetchone() == ("trustuser",)
    assert pg.scram_secret("app").startswith("SCRAM-SHA-256$")
    assert pg.scram_secret("md5user") == h.md5_secret("md5user", "md5pw")
    assert pg.admin_value("show max_connections") == "300"
    assert pg.admin_value("show fsync") == "off"


def test_cluster_refuses_wrong_password(pg):
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(pg.dsn("app", "app", password="wrong"))


def test_backend_counting(pg):
    before = pg.count_backends(user="app", db="other")
    with psycopg.connect(pg.dsn("app", "other")):
        assert pg.count_backends(user="app", db="other") == before + 1
    assert h.wait_for(lambda: pg.count_backends(user="app", db="other") == before, 5)


def test_port_lock_is_exclusive():
    lock = h.allocate_port()
    try:
        path = os.path.join(h.PORT_LOCK_DIR, f"{lock.port}.lock")
        with open(path, "a+") as fh:
            with pytest.raises(OSError):
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        other = h.allocate_port()
        assert other.port != lock.port
        other.release()
    finally:
        lock.release()


@pytest.mark.parametrize("user,password,method", [
    ("app", "app", 10),          # SCRAM
    ("md5user", "md5pw", 5),     # md5
    ("trustuser", None, None),   # trust
])
def test_raw_login_against_postgres(pg, user, password, method):
    with h.RawConn(pg.host, pg.port) as c:
        res = c.login(user, password, "app", {"application_name": "rawtest"})
        assert res.ok, res
        if method:
            assert method in res.auth_codes
        assert res.backend_key is not None
        assert res.params["application_name"] == "rawtest"
        qr = c.query("select 1 as a; select 'x' as b")
        assert [r[1] for r in qr.results] == [[("1",)], [("x",)]]
        assert qr.status == "I"


def test_raw_login_wrong_password_against_postgres(pg):
    with h.RawConn(pg.host, pg.port) as c:
        res = c.login("app", "nope", "app")
        assert not res.ok
        assert res.error.sqlstate == "28P01"
        assert res.error.message == 'password authentication failed for user "app"'


def test_raw_unknown_parameter_against_postgres(pg):
    with h.RawConn(pg.host, pg.port) as c:
        res = c.login("app", "app", "app", {"no_such_param": "1"})
        assert res.error is not None and res.error.sqlstate == "42704", res
        assert 'unrecognized configuration parameter "no_such_param"' in res.error.message


def test_raw_bad_protocol_against_postgres(pg):
    with h.RawConn(pg.host, pg.port) as c:
        c.send(h.startup_message({"user": "app"}, version=4 << 16))
        err, closed, _ = c.expect_error_then_close()
        assert err.sqlstate == "0A000" and closed
    # a 2.0 client gets PostgreSQL's reply in the 2.0 format (no SQLSTATE)
    with h.RawConn(pg.host, pg.port) as c:
        c.send(h.startup_message({"user": "app"}, version=2 << 16))
        err = h.read_protocol_error(c)
        assert "unsupported frontend protocol 2.0" in err.message


def test_raw_ssl_request_against_postgres(pg):
    with h.RawConn(pg.host, pg.port) as c:
        c.send(h.ssl_request())
        assert c.recv_exact(1) == b"N"
        assert c.login("app", "app", "app").ok
