"""Client authentication: every auth_type against every kind of secret in the user file, with
the right and the wrong password, plus the server side (pgtide logging in to PostgreSQL as the
client's own user) and secrets never reaching the log."""

import hashlib
import struct

import psycopg
import pytest

import pgtide_harness as h

WRONG = 'password authentication failed for user "app"'


def _secret(pg, kind):
    if kind == "plain":
        return "app"
    if kind == "md5":
        return h.md5_secret("app", "app")
    return pg.scram_secret("app")


def _expected_ok(auth_type, kind, right):
    if auth_type == "trust":
        return True
    if auth_type == "scram-sha-256" and kind == "md5":
        return False  # an md5 hash cannot answer a SCRAM exchange
    return right


AUTH_CODE = {"plain": 3, "md5": 5, "scram-sha-256": 10}


@pytest.mark.parametrize("kind", ["plain", "md5", "scram"])
@pytest.mark.parametrize("auth_type", ["trust", "plain", "md5", "scram-sha-256"])
def test_auth_matrix(pgtide, pg, auth_type, kind):
    secret = _secret(pg, kind)
    # the server side logs in with a fixed user/password so only client auth varies
    p = pgtide.start({"auth_type": auth_type},
                     databases={"app": f"host=127.0.0.1 port={pg.port} dbname=app "
                                       f"user=app password=app"},
                     userlist=[("app", secret)])
    for right in (True, False):
        password = "app" if right else "not-the-password"
        ok = _expected_ok(auth_type, kind, right)
        if ok:
            with p.connect(password=password) as c:
                assert c.execute("select current_user").fetchone() == ("app",)
        else:
            with pytest.raises(psycopg.OperationalError) as ei:
                p.connect(password=password)
            assert WRONG in str(ei.value)
        # the same with the raw client, which sees the SQLSTATE and the method asked for
        with p.raw() as c:
            res = c.login("app", password, "app")
            if ok:
                assert res.ok, res
                if auth_type == "trust":
                    assert res.auth_codes == [0], res
                elif auth_type == "md5" and kind == "scram":
                    assert 10 in res.auth_codes, res  # SCRAM for a SCRAM secret
                else:
                    assert AUTH_CODE[auth_type] in res.auth_codes, res
                qr = c.query("select current_user")
                assert qr.results[0][1] == [("app",)]
            else:
                assert res.error is not None, res
                assert res.error.sqlstate == "28P01", res.error
                assert res.error.message == WRONG
                assert res.error.severity == "FATAL"
                _, closed = c.read_until_closed(5)
                assert closed


def test_trust_requires_user_in_file(pgtide):
    p = pgtide.start({"auth_type": "trust"}, userlist=[("app", "app")])
    with p.raw() as c:
        res = c.login("ghost", None, "app")
        assert res.error is not None, res
        assert res.error.sqlstate == "28000", res.error
    with pytest.raises(psycopg.OperationalError):
        p.connect(user="ghost", password=None)
    with p.connect() as c:
        assert c.execute("select 1").fetchone() == (1,)


@pytest.mark.parametrize("auth_type", ["plain", "md5", "scram-sha-256"])
def test_unknown_user_looks_like_wrong_password(pgtide, auth_type):
    p = pgtide.start({"auth_type": auth_type})
    with p.raw() as c:
        res = c.login("ghost", "whatever", "app")
        assert res.error is not None, res
        assert res.error.sqlstate == "28P01", res.error
        assert res.error.message == 'password authentication failed for user "ghost"'


def test_wrong_password_message(pgtide):
    p = pgtide.start()
    with pytest.raises(psycopg.OperationalError) as ei:
        p.connect(password="nope")
    assert WRONG in str(ei.value)
    with p.raw() as c:
        res = c.login("app", "nope", "app")
        assert (res.error.sqlstate, res.error.message) == ("28P01", WRONG)


def test_server_login_as_client_user_scram(pgtide, pg):
    # no user= in the entry: pgtide logs in to PostgreSQL (SCRAM) as app with app's password
    p = pgtide.start()
    with p.connect() as c:
        assert c.execute("select current_user, session_user").fetchone() == ("app", "app")


def test_server_login_as_client_user_md5(pgtide):
    p = pgtide.start()
    with p.connect(user="md5user", password="md5pw") as c:
        assert c.execute("select current_user").fetchone() == ("md5user",)


def test_server_login_as_client_user_trust(pgtide):
    p = pgtide.start({"auth_type": "trust"})
    with p.connect(user="trustuser", password=None) as c:
        assert c.execute("select current_user").fetchone() == ("trustuser",)


def test_users_do_not_share_servers(pgtide):
    p = pgtide.start({"default_pool_size": 1})
    with p.connect() as a, p.connect(user="md5user", password="md5pw") as b:
        assert a.execute("select current_user").fetchone() == ("app",)
        assert b.execute("select current_user").fetchone() == ("md5user",)


@pytest.mark.deadline(90)
@pytest.mark.parametrize("auth_type", ["plain", "md5", "scram-sha-256"])
def test_secrets_never_logged(pgtide, pg, auth_type):
    pw = h.PG_PASSWORDS["secretuser"]
    wrong = "tide-Wrong-2c8d1x"
    md5 = h.md5_secret("secretuser", pw)
    scram = pg.scram_secret("secretuser")
    p = pgtide.start({"auth_type": auth_type, "verbose": 2},
                     databases={"secretdb": f"host=127.0.0.1 port={pg.port} dbname=app "
                                            f"user=secretuser password={pw}"},
                     userlist=[("secretuser", pw), ("app", "app")],
                     extra_args=["-v", "-v"])
    for db in ("app", "secretdb"):
        with p.connect(user="secretuser", password=pw, dbname=db) as c:
            assert c.execute("select current_user").fetchone() == ("secretuser",)
        with pytest.raises(psycopg.OperationalError):
            p.connect(user="secretuser", password=wrong, dbname=db)
        with p.raw() as c:
            assert c.login("secretuser", wrong, db).error.sqlstate == "28P01"
    p.reload()
    p.wait_log("configuration reloaded")
    p.stop()
    text = p.all_output()
    assert "secretuser" in text, "nothing about the logins was logged"
    for s in (pw, wrong, md5, md5[3:], scram, scram.split("$")[-1].split(":")[0],
              hashlib.md5(pw.encode()).hexdigest()):
        assert s not in text, f"a secret ({s[:6]}...) appears in the log"


def test_userlist_quoting(pgtide, pg):
    secret = 'p"a ss\\w;#rd'  # a quote (written "" in the file), a space, a backslash
    p = pgtide.start(databases={"app": f"host=127.0.0.1 port={pg.port} dbname=app "
                                       f"user=app password=app"},
                     userlist=[("app", secret), ('we"ird user', "x")])
    with p.connect(password=secret) as c:
        assert c.execute("select current_user").fetchone() == ("app",)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        p.connect(password='p"a ss')


def test_scram_with_a_plain_secret_follows_a_password_change(pgtide, pg):
    """A plain secret's SCRAM verifier is made once per user file load and kept (PBKDF2 once,
    not per login): many logins work, and after the file changes and is reloaded the new
    password works and the old one no longer does."""
    p = pgtide.start({"auth_type": "scram-sha-256"},
                     databases={"app": f"host=127.0.0.1 port={pg.port} dbname=app "
                                       f"user=app password=app"},
                     userlist=[("app", "first-pw"), ("other", "other-pw")])
    for _ in range(5):
        with p.connect(password="first-pw") as c:
            assert c.execute("select 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        p.connect(password="second-pw")
    p.rewrite(userlist=[("app", "second-pw"), ("other", "other-pw")])
    p.reload()
    p.wait_log("configuration reloaded")
    with p.connect(password="second-pw") as c:
        assert c.execute("select 2").fetchone() == (2,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        p.connect(password="first-pw")
    with p.raw() as c:
        res = c.login("app", "first-pw", "app")
        assert res.error is not None and res.error.sqlstate == "28P01", res


def _scram_login(p, user, password):
    """A raw SCRAM-SHA-256 login: (the "i=" of pgtide's server-first-message, whether the login
    succeeded). The client derives its proof with the count pgtide sent, so a success also
    shows the verifier pgtide checks against has that count."""
    with p.raw() as c:
        c.send(h.startup_message({"user": user, "database": "app"}))
        t, body = c.recv_msg()
        assert (t, struct.unpack("!I", body[:4])[0]) == ("R", 10), (t, body)
        scram = h.ScramClient(password)
        first = scram.client_first()
        c.send(h.message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!I", len(first)) + first))
        t, body = c.recv_msg()
        assert (t, struct.unpack("!I", body[:4])[0]) == ("R", 11), (t, body)
        server_first = body[4:]
        attrs = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
        c.send(h.message(b"p", scram.client_final(server_first)))
        while True:
            t, body = c.recv_msg()
            if t == "E":
                assert h.parse_error(body).sqlstate == "28P01", h.parse_error(body)
                return int(attrs["i"]), False
            if t == "R" and struct.unpack("!I", body[:4])[0] == 12:
                scram.verify_server_final(body[4:])
            if t == "Z":
                return int(attrs["i"]), True


def test_scram_iterations(pgtide, pg):
    """scram_iterations is the count of the verifiers pgtide makes itself: for a plain secret,
    and for the mock exchange of an unknown user (which must look like a real one). A SCRAM
    secret from the user file keeps its own count (PostgreSQL's 4096 here)."""
    p = pgtide.start({"auth_type": "scram-sha-256", "scram_iterations": 5000,
                      "admin_users": "app"},
                     databases={"app": f"host=127.0.0.1 port={pg.port} dbname=app "
                                       f"user=app password=app"},
                     userlist=[("app", "app"), ("stored", pg.scram_secret("app"))])
    assert _scram_login(p, "app", "app") == (5000, True)
    assert _scram_login(p, "app", "wrong") == (5000, False)
    assert _scram_login(p, "stored", "app") == (4096, True)
    assert _scram_login(p, "ghost", "app") == (5000, False)
    # SET: the kept verifier of the plain secret is made again with the new count
    with h.AdminConsole(p) as a:
        a.rows("SET scram_iterations = 7000")
    assert _scram_login(p, "app", "app") == (7000, True)
    assert _scram_login(p, "ghost", "app") == (7000, False)
    with p.connect() as c:
        assert c.execute("select 1").fetchone() == (1,)
    # back to the default, PgBouncer's and PostgreSQL's 4096, on reload
    p.rewrite({"scram_iterations": None})
    mark = p.log_mark()
    p.reload()
    p.wait_log("configuration reloaded", mark=mark)
    assert _scram_login(p, "app", "app") == (4096, True)
    assert _scram_login(p, "stored", "app") == (4096, True)
