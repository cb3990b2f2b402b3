"""TLS on both sides (issue 7): clients to pgtide (client_tls_*: SSLRequest, PostgreSQL 17 direct
TLS with ALPN, the modes from disable to verify-full, reload on SIGHUP) and pgtide to PostgreSQL
(server_tls_* and sslmode= in [databases], carried out by libpq, spoken over libpq's SSL object
after takeover). Certificates come from a throwaway CA (conftest's tls_files); the server side
runs against a second cluster with ssl = on (pg_ssl), started only for these tests."""

import hashlib
import os
import re
import socket
import ssl
import subprocess
import threading
import time

import psycopg
import pytest

import pgtide_harness as h

PSQL = h.pg_tool("psql")
TLS_DESC = re.compile(r"^TLSv1\.3/TLS_[A-Z0-9_]+/ECDH=X25519$")
BIG = 10 * 1024 * 1024


def client_tls(tls, mode="require", **extra):
    s = {"client_tls_sslmode": mode, "client_tls_key_file": tls.server_key,
         "client_tls_cert_file": tls.server_crt}
    if mode.startswith("verify"):
        s["client_tls_ca_file"] = tls.ca_crt
    s.update(extra)
    return s


def psql(p, sql, **conn):
    params = dict(host="127.0.0.1", port=p.port, user="app", dbname="app")
    params.update(conn)
    dsn = " ".join(f"{k}={v}" for k, v in params.items())
    return subprocess.run([PSQL, "-X", "-A", "-t", "-d", dsn, "-c", sql], capture_output=True,
                          text=True, timeout=30, env=dict(os.environ, PGPASSWORD="app"))


def show_clients(p):
    with h.AdminConsole(p) as a:
        return a.rows("SHOW CLIENTS")


def peer_fingerprint(p, timeout=5):
    """SHA-256 of the certificate pgtide presents to a new connection (SSLRequest flow)."""
    with h.RawConn(p.host, p.port, timeout=timeout) as c:
        assert c.start_tls(h.client_tls_context()) == b"S"
        return hashlib.sha256(c.sock.getpeercert(binary_form=True)).hexdigest()


def login_refused(res):
    return not res.ok and (res.error is not None or res.closed)


# ---- clients to pgtide -----------------------------------------------------------------------

def test_psql_require_and_verify_full(pgtide, tls_files):
    p = pgtide.start(client_tls(tls_files))
    r = psql(p, "select 'plain-old-psql'", sslmode="require")
    assert r.returncode == 0 and r.stdout.strip() == "plain-old-psql", r.stderr
    for host in ("127.0.0.1", "localhost"):
        r = psql(p, "select 42", host=host, sslmode="verify-full", sslrootcert=tls_files.ca_crt)
        assert r.returncode == 0 and r.stdout.strip() == "42", (host, r.stderr, p.diagnostics())
    # a CA that did not sign pgtide's certificate: libpq refuses it
    r = psql(p, "select 1", sslmode="verify-full", sslrootcert=tls_files.rogue_ca_crt)
    assert r.returncode != 0 and "certificate verify failed" in r.stderr, r.stderr
    # verify-full checks the name: the certificate is for 127.0.0.1 and localhost only
    r = psql(p, "select 1", host="127.0.0.1", hostaddr="127.0.0.1", sslmode="verify-full",
             sslrootcert=tls_files.ca_crt)
    assert r.returncode == 0, r.stderr


def test_psycopg_and_show_clients_tls_column(pgtide, tls_files):
    p = pgtide.start(client_tls(tls_files, "prefer", admin_users="app"))
    with psycopg.connect(p.dsn(sslmode="require", application_name="tls-one"),
                         autocommit=True) as tc, \
            psycopg.connect(p.dsn(sslmode="disable", application_name="plain-one"),
                            autocommit=True) as pc:
        assert tc.info.pgconn.ssl_in_use and not pc.info.pgconn.ssl_in_use
        assert tc.execute("select 1").fetchone() == (1,)
        assert pc.execute("select 2").fetchone() == (2,)
        rows = {r["application_name"]: r for r in show_clients(p)}
        assert TLS_DESC.match(rows["tls-one"]["tls"]), rows["tls-one"]
        assert rows["plain-one"]["tls"] == "", rows["plain-one"]
    assert re.search(r"login attempt: db=app user=app tls=TLSv1\.3/", p.log())
    assert re.search(r"login attempt: db=app user=app tls=no", p.log())


def test_plain_client_refused_under_require(pgtide, tls_files):
    p = pgtide.start(client_tls(tls_files, "require"))
    with pytest.raises(psycopg.OperationalError) as ei:
        psycopg.connect(p.dsn(sslmode="disable"))
    assert "no encryption" in str(ei.value), ei.value  # (libpq keeps no SQLSTATE at connect)
    with p.raw() as c:
        res = c.login("app", "app", "app")
        assert res.error is not None and res.error.sqlstate == "28000", res
        assert res.error.severity == "FATAL"
        assert 'for host "127.0.0.1", user "app", database "app", no encryption' in \
            res.error.message, res.error
    # sslmode=prefer (libpq's default) asks for TLS and gets it
    with psycopg.connect(p.dsn(), autocommit=True) as c:
        assert c.info.pgconn.ssl_in_use
    assert re.search(r"pooler error: pgtide requires TLS .*no encryption \(28000\)", p.log())


def test_unix_socket_is_not_asked_for_tls(pgtide, tls_files):
    """As PostgreSQL: no TLS over the Unix socket (libpq never asks), so require does not
    apply there; SSLRequest on it is answered N."""
    proc = pgtide.prepare(client_tls(tls_files, "require"))
    proc.rewrite({"unix_socket_dir": proc.workdir})
    proc.spawn()
    proc.wait_ready()
    r = psql(proc, "select 'local'", host=proc.workdir, sslmode="prefer")
    assert r.returncode == 0 and r.stdout.strip() == "local", r.stderr
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(os.path.join(proc.workdir, f".s.PGSQL.{proc.port}"))
    try:
        sock.sendall(h.ssl_request())
        assert sock.recv(1) == b"N"
    finally:
        sock.close()
    r = psql(proc, "select 1", sslmode="disable")  # TCP: refused
    assert r.returncode != 0 and "no encryption" in r.stderr, r.stderr


@pytest.mark.parametrize("mode", ["allow", "prefer"])
def test_allow_and_prefer_take_both(pgtide, tls_files, mode):
    p = pgtide.start(client_tls(tls_files, mode))
    for sslmode, want in (("disable", False), ("require", True)):
        with psycopg.connect(p.dsn(sslmode=sslmode), autocommit=True) as c:
            assert c.info.pgconn.ssl_in_use is want
            assert c.execute("select 1").fetchone() == (1,)


def test_disable_answers_n_and_refuses_direct_tls(pgtide, tls_files):
    p = pgtide.start({"client_tls_sslmode": "disable"})
    with p.raw() as c:
        assert c.start_tls(h.client_tls_context()) == b"N"
        assert c.login("app", "app", "app").ok
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        h.RawConn.direct_tls(p.host, p.port, h.client_tls_context(alpn=["postgresql"])).close()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(p.dsn(sslmode="require"))


@pytest.mark.parametrize("mode", ["verify-ca", "verify-full"])
def test_client_certificates(pgtide, tls_files, mode):
    p = pgtide.start(client_tls(tls_files, mode))
    good = dict(sslmode="verify-full", sslrootcert=tls_files.ca_crt,
                sslcert=tls_files.client_crt, sslkey=tls_files.client_key)
    with psycopg.connect(p.dsn(**good), autocommit=True) as c:
        assert c.execute("select current_user").fetchone() == ("app",)
    # no certificate at all (sslcert pointing nowhere: libpq sends none)
    mark = p.log_mark()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(p.dsn(sslmode="require", sslcert="/nonexistent.crt",
                              sslkey="/nonexistent.key"))
    p.wait_log(r"TLS handshake failed: .*certificate", mark=mark)
    # a certificate from another CA
    mark = p.log_mark()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(p.dsn(sslmode="require", sslcert=tls_files.rogue_client_crt,
                              sslkey=tls_files.rogue_client_key))
    p.wait_log(r"TLS handshake failed: certificate verify failed", mark=mark)
    # the same refusal, seen from a raw TLS client
    with h.RawConn(p.host, p.port) as c:
        ctx = h.client_tls_context(cert=tls_files.rogue_client_crt,
                                   key=tls_files.rogue_client_key)
        try:
            c.start_tls(ctx)
            res = c.login("app", "app", "app")
            assert login_refused(res), res
        except (ssl.SSLError, ConnectionError):
            pass
    # a plain client is refused too
    with p.raw() as c:
        res = c.login("app", "app", "app")
        assert res.error is not None and res.error.sqlstate == "28000", res
    assert p.alive()


@pytest.mark.parametrize("mode", ["require", "disable"])
def test_plaintext_after_sslrequest_refused(pgtide, tls_files, mode):
    """CVE-2021-23214: bytes behind the SSLRequest arrived before the answer, so they were sent
    in the clear and may come from a man in the middle. Never a login; 08P01 or a close."""
    p = pgtide.start(client_tls(tls_files, mode) if mode != "disable" else {})
    with p.raw() as c:
        c.send(h.ssl_request() + h.startup_message({"user": "app", "database": "app"}))
        msgs, closed = c.read_until_closed(5)
        assert closed, msgs
        assert c.buf == b"" and not any(t in ("R", "S", "Z") for t, _ in msgs), msgs
        errs = c.errors_in(msgs)
        assert errs and errs[0].sqlstate == "08P01", msgs
        assert "unencrypted data after SSL request" in errs[0].message
    if mode == "require":
        # a client that ignores the 'S' and goes on in the clear: its startup packet is fed to
        # the TLS handshake, which fails; it never reaches the startup parser
        mark = p.log_mark()
        with p.raw() as c:
            c.send(h.ssl_request())
            assert c.recv_exact(1) == b"S"
            c.send(h.startup_message({"user": "app", "database": "app"}))
            msgs, closed = c.read_until_closed(5)
            assert closed and not any(t in ("R", "Z") for t, _ in msgs), msgs
        p.wait_log(r"TLS handshake failed", mark=mark)
        assert "login attempt" not in p.log()[mark[0]:]
    assert p.alive()


def test_direct_tls_with_alpn(pgtide, tls_files):
    p = pgtide.start(client_tls(tls_files, "require", admin_users="app"))
    ctx = h.client_tls_context(cafile=tls_files.ca_crt, alpn=["postgresql"])
    with h.RawConn.direct_tls(p.host, p.port, ctx, server_hostname="localhost") as c:
        assert c.sock.selected_alpn_protocol() == "postgresql"
        res = c.login("app", "app", "app", {"application_name": "direct-tls"})
        assert res.ok, res
        qr = c.query("select 'direct'")
        assert qr.results[0][1] == [("direct",)]
        rows = {r["application_name"]: r for r in show_clients(p)}
        assert TLS_DESC.match(rows["direct-tls"]["tls"]), rows
    # ALPN that does not include postgresql: the handshake fails (no_application_protocol)
    with pytest.raises(ssl.SSLError):
        h.RawConn.direct_tls(p.host, p.port, h.client_tls_context(alpn=["http/1.1"])).close()
    # no ALPN at all: refused after the handshake, as PostgreSQL 17 does
    with h.RawConn.direct_tls(p.host, p.port, h.client_tls_context()) as c:
        err, closed, msgs = c.expect_error_then_close(5)
        assert closed, msgs
        assert err is not None and err.sqlstate == "08P01", msgs
        assert "without ALPN" in err.message, err
    # an SSLRequest inside TLS is not a thing
    with h.RawConn.direct_tls(p.host, p.port, h.client_tls_context(alpn=["postgresql"])) as c:
        c.send(h.ssl_request())
        err, closed, msgs = c.expect_error_then_close(5)
        assert closed and err is not None and err.sqlstate == "0A000", msgs
    assert p.alive()


def test_handshake_bounded_by_client_login_timeout(pgtide, tls_files):
    p = pgtide.start(client_tls(tls_files, "require", client_login_timeout="1"))
    t0 = time.monotonic()
    with p.raw(timeout=10) as c, h.RawConn(p.host, p.port, timeout=10) as d:
        c.send(h.ssl_request())
        assert c.recv_exact(1) == b"S"  # ... and then nothing: no ClientHello
        d.send(b"\x16\x03\x01")  # the start of a direct ClientHello, never finished
        for conn in (c, d):
            msgs, closed = conn.read_until_closed(6)
            assert closed, msgs
    assert time.monotonic() - t0 < 5
    with psycopg.connect(p.dsn(sslmode="require"), autocommit=True) as c:
        assert c.execute("select 1").fetchone() == (1,)


def test_client_tls_protocols(pgtide, tls_files):
    p = pgtide.start(client_tls(tls_files, "require", client_tls_protocols="tlsv1.2",
                                admin_users="app"))
    with h.RawConn(p.host, p.port) as c:
        assert c.start_tls(h.client_tls_context()) == b"S"
        assert c.sock.version() == "TLSv1.2"
        assert c.login("app", "app", "app", {"application_name": "tls12"}).ok
        rows = {r["application_name"]: r for r in show_clients(p)}
        assert re.match(r"^TLSv1\.2/ECDHE-ECDSA-[A-Z0-9-]+/ECDH=X25519$",
                        rows["tls12"]["tls"]), rows["tls12"]
    with h.RawConn(p.host, p.port) as c:
        with pytest.raises((ssl.SSLError, ConnectionError)):
            c.start_tls(h.client_tls_context(minimum=ssl.TLSVersion.TLSv1_3))


def test_cancel_and_copy_work_under_require(pgtide, tls_files, table):
    """libpq sends CancelRequest on a new plain connection even when the session uses TLS."""
    p = pgtide.start(client_tls(tls_files, "require"))
    with psycopg.connect(p.dsn(sslmode="require"), autocommit=True) as c:
        t = threading.Timer(0.5, c.cancel)
        t.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("select pg_sleep(20)")
        t.join()
        assert c.execute("select 1").fetchone() == (1,)


def _large_result_checks(conn, table):
    """10 MB and more both ways: one 10 MB value, 200,000 rows, COPY out and in."""
    v = conn.execute("select repeat('0123456789abcdef', %s)", (BIG // 16,)).fetchone()[0]
    assert len(v) == BIG and v == "0123456789abcdef" * (BIG // 16)
    rows = conn.execute("select i, md5(i::text) from generate_series(1, 200000) i").fetchall()
    assert len(rows) == 200000 and rows[-1] == (200000, hashlib.md5(b"200000").hexdigest())
    t = table("n int, s text")
    payload = b"".join(b"%d\t%s\n" % (i, hashlib.md5(str(i).encode()).hexdigest().encode() * 4)
                       for i in range(80000))
    assert len(payload) > BIG
    with conn.cursor() as cur:
        with cur.copy(f"COPY {t} FROM STDIN") as cp:
            for off in range(0, len(payload), 1 << 20):
                cp.write(payload[off:off + (1 << 20)])
        assert conn.execute(f"select count(*) from {t}").fetchone() == (80000,)
        out = bytearray()
        with cur.copy(f"COPY (select * from {t} order by n) TO STDOUT") as cp:
            for chunk in cp:
                out += chunk
    assert hashlib.sha256(out).hexdigest() == hashlib.sha256(payload).hexdigest()


@pytest.mark.deadline(120)
def test_large_results_and_copy_over_client_tls(pgtide, tls_files, table):
    p = pgtide.start(client_tls(tls_files, "require"))
    with psycopg.connect(p.dsn(sslmode="require"), autocommit=True) as c:
        _large_result_checks(c, table)


@pytest.mark.deadline(120)
def test_slow_reader_over_tls(pgtide, tls_files):
    """A client that reads a 10 MB result late: pgtide's out-queue to it fills, its server stops
    being read (backpressure), and decrypted bytes OpenSSL holds must still come out."""
    p = pgtide.start(client_tls(tls_files, "require"))
    with h.RawConn(p.host, p.port, timeout=30) as c:
        assert c.start_tls(h.client_tls_context()) == b"S"
        assert c.login("app", "app", "app").ok
        c.send(h.query_message(
            "select i, repeat(md5(i::text), 40) from generate_series(1, 8000) i"))
        time.sleep(1.5)
        qr = c.read_results(timeout=30)
        assert qr.status == "I" and not qr.errors
        rows = qr.results[0][1]
        assert len(rows) == 8000
        assert rows[7999] == ("8000", hashlib.md5(b"8000").hexdigest() * 40)


def test_decrypted_bytes_held_by_openssl_are_read(pgtide, tls_files):
    """OpenSSL decrypts a whole record even when pgtide's buffer has room for only part of it;
    the rest does not make the socket readable. Records of 10,000 + 16,384 + 16,384 bytes
    holding a 30,000-byte Query (inspected whole) and a 12,768-byte one: the third record
    arrives with 2,768 bytes of room left, and the second Query is in the 13,616 bytes
    OpenSSL keeps. The client then waits: without the read pgtide schedules for them, both
    would wait forever."""
    p = pgtide.start(client_tls(tls_files, "require"))

    def query_of(total, tag):
        head = f"select '{tag}' /*"
        pad = total - 5 - len(head) - len("*/") - 1
        return h.query_message(head + "x" * pad + "*/")

    a, b = query_of(30000, "first"), query_of(12768, "second")
    assert len(a) == 30000 and len(b) == 12768
    data = a + b
    with h.RawConn(p.host, p.port, timeout=10) as c:
        assert c.start_tls(h.client_tls_context()) == b"S"
        assert c.login("app", "app", "app").ok
        for chunk in (data[:10000], data[10000:26384], data[26384:]):
            c.sock.sendall(chunk)  # one TLS record each
            time.sleep(0.2)
        first = c.read_results(timeout=5)
        second = c.read_results(timeout=5)
        assert first.results[0][1] == [("first",)], first.messages
        assert second.results[0][1] == [("second",)], second.messages


# ---- SIGHUP -----------------------------------------------------------------------------------

def test_sighup_new_certificate(pgtide, tls_files, tmp_path):
    # pgtide reads its certificate from copies the test can replace in place
    crt, key = str(tmp_path / "live.crt"), str(tmp_path / "live.key")
    for src, dst in ((tls_files.server_crt, crt), (tls_files.server_key, key)):
        with open(src, "rb") as f, open(dst, "wb") as g:
            g.write(f.read())
    p = pgtide.start(client_tls(tls_files, "require", client_tls_cert_file=crt,
                                client_tls_key_file=key))
    first = h.cert_fingerprint(tls_files.server_crt)
    second = h.cert_fingerprint(tls_files.server2_crt)
    assert first != second
    assert peer_fingerprint(p) == first
    old = psycopg.connect(p.dsn(sslmode="require"), autocommit=True)
    try:
        assert old.execute("select 1").fetchone() == (1,)

        # 1. the ini names other files
        mark = p.log_mark()
        p.rewrite({"client_tls_cert_file": tls_files.server2_crt,
                   "client_tls_key_file": tls_files.server2_key})
        p.reload()
        p.wait_log(r"client TLS reloaded", mark=mark)
        assert peer_fingerprint(p) == second
        assert old.execute("select 2").fetchone() == (2,)

        # 2. a renewed certificate at the same path
        p.rewrite({"client_tls_cert_file": crt, "client_tls_key_file": key})
        for src, dst in ((tls_files.server2_crt, crt), (tls_files.server2_key, key)):
            with open(src, "rb") as f, open(dst, "wb") as g:
                g.write(f.read())
        mark = p.log_mark()
        p.reload()
        p.wait_log(r"client TLS reloaded", mark=mark)
        assert peer_fingerprint(p) == second

        # 3. a bad certificate: the previous context stays, and the log says why
        with open(crt, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n")
        mark = p.log_mark()
        p.reload()
        p.wait_log(r"client TLS settings not reloaded, keeping the previous ones: "
                   r"client_tls_cert_file .*live\.crt", mark=mark)
        assert peer_fingerprint(p) == second
        assert old.execute("select 3").fetchone() == (3,)
        with psycopg.connect(p.dsn(sslmode="verify-full", sslrootcert=tls_files.ca_crt),
                             autocommit=True) as c:
            assert c.execute("select 4").fetchone() == (4,)

        # 4. a key that does not match the certificate: refused the same way
        p.rewrite({"client_tls_cert_file": tls_files.server_crt,
                   "client_tls_key_file": tls_files.server2_key})
        mark = p.log_mark()
        p.reload()
        p.wait_log(r"not reloaded.*does not match", mark=mark)
        assert peer_fingerprint(p) == second
        assert old.execute("select 5").fetchone() == (5,)
    finally:
        old.close()


def test_sighup_turns_tls_on_and_off(pgtide, tls_files):
    p = pgtide.start({"client_tls_sslmode": "disable"})
    with psycopg.connect(p.dsn(sslmode="disable"), autocommit=True) as plain:
        p.rewrite(client_tls(tls_files, "require"))
        mark = p.log_mark()
        p.reload()
        p.wait_log(r"client TLS reloaded", mark=mark)
        # the established plain client stays; new ones must use TLS
        assert plain.execute("select 1").fetchone() == (1,)
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(p.dsn(sslmode="disable"))
        with psycopg.connect(p.dsn(sslmode="require"), autocommit=True) as tc:
            p.rewrite({"client_tls_sslmode": "disable"})
            mark = p.log_mark()
            p.reload()
            p.wait_log(r"configuration reloaded", mark=mark)
            assert tc.execute("select 2").fetchone() == (2,)
            with psycopg.connect(p.dsn(sslmode="disable"), autocommit=True) as c:
                assert c.execute("select 3").fetchone() == (3,)


# ---- suites, groups, DHE (client_tls13_ciphers, client_tls_ecdhcurve, client_tls_dheparams) ---

def s_client(p, *args):
    """openssl s_client through pgtide's SSLRequest (-starttls postgres): its -brief summary as
    a dict ("Ciphersuite", "Server Temp Key", ...), empty if no TLS session was made."""
    r = subprocess.run(["openssl", "s_client", "-starttls", "postgres", "-connect",
                        f"{p.host}:{p.port}", "-brief", *args], input="",
                       capture_output=True, text=True, timeout=30)
    out = r.stdout + r.stderr
    if "CONNECTION ESTABLISHED" not in out:
        return {}
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def reload_with(p, **settings):
    p.rewrite(settings)
    mark = p.log_mark()
    p.reload()
    p.wait_log(r"client TLS reloaded", mark=mark)


def test_client_tls13_ciphers(pgtide, tls_files):
    p = pgtide.start(client_tls(tls_files, client_tls13_ciphers="TLS_CHACHA20_POLY1305_SHA256:"
                                                                "TLS_AES_128_GCM_SHA256",
                                admin_users="app"))
    # pgtide's order wins among what the client offers; a suite outside the list is refused
    assert s_client(p)["Ciphersuite"] == "TLS_CHACHA20_POLY1305_SHA256"
    assert s_client(p, "-ciphersuites", "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384")[
        "Ciphersuite"] == "TLS_AES_128_GCM_SHA256"
    assert s_client(p, "-ciphersuites", "TLS_AES_256_GCM_SHA384") == {}
    # TLS 1.2 is not concerned
    assert s_client(p, "-tls1_2")["Protocol version"] == "TLSv1.2"
    # a real client, and what SHOW CLIENTS reports
    with psycopg.connect(p.dsn(sslmode="require", application_name="suite"),
                         autocommit=True) as c:
        assert c.execute("select 1").fetchone() == (1,)
        row = [r for r in show_clients(p) if r["application_name"] == "suite"][0]
        assert row["tls"].startswith("TLSv1.3/TLS_CHACHA20_POLY1305_SHA256/"), row
    # the empty default is OpenSSL's list, in OpenSSL's order
    reload_with(p, client_tls13_ciphers="")
    assert s_client(p)["Ciphersuite"] == "TLS_AES_256_GCM_SHA384"
    assert s_client(p, "-ciphersuites", "TLS_CHACHA20_POLY1305_SHA256")[
        "Ciphersuite"] == "TLS_CHACHA20_POLY1305_SHA256"


def test_client_tls_ecdhcurve(pgtide, tls_files):
    p = pgtide.start(client_tls(tls_files, client_tls_ecdhcurve="secp384r1"))
    assert s_client(p)["Server Temp Key"] == "ECDH, secp384r1, 384 bits"
    assert s_client(p, "-groups", "X25519") == {}
    with psycopg.connect(p.dsn(sslmode="require"), autocommit=True) as c:
        assert c.execute("select 1").fetchone() == (1,)
    # a list, with PgBouncer's commas
    reload_with(p, client_tls_ecdhcurve="P-256, X25519")
    assert s_client(p, "-groups", "prime256v1")["Server Temp Key"] == \
        "ECDH, prime256v1, 256 bits"
    assert s_client(p, "-groups", "secp384r1") == {}
    # auto (the default) and none are OpenSSL's groups
    for value in ("auto", "none"):
        reload_with(p, client_tls_ecdhcurve=value)
        assert s_client(p)["Server Temp Key"] == "X25519, 253 bits"
        assert s_client(p, "-groups", "secp384r1")["Server Temp Key"] == \
            "ECDH, secp384r1, 384 bits"


@pytest.fixture
def rsa3072(tmp_path):
    """A self-signed RSA-3072 certificate: DHE suites need an RSA key, and auto then picks a
    3072-bit group (as strong as the key), which legacy does not."""
    key, crt = str(tmp_path / "rsa.key"), str(tmp_path / "rsa.crt")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:3072", "-nodes", "-keyout", key,
                    "-out", crt, "-days", "2", "-subj", "/CN=localhost"], check=True,
                   capture_output=True, timeout=60)
    return key, crt


def test_client_tls_dheparams(pgtide, rsa3072):
    key, crt = rsa3072
    p = pgtide.start({"client_tls_sslmode": "require", "client_tls_key_file": key,
                      "client_tls_cert_file": crt})
    dhe = ("-tls1_2", "-cipher", "DHE-RSA-AES128-GCM-SHA256")
    # auto, the default: a group as strong as the key
    r = s_client(p, *dhe)
    assert r["Ciphersuite"] == "DHE-RSA-AES128-GCM-SHA256", r
    assert r["Server Temp Key"] == "DH, 3072 bits", r
    # a Python client that offers only DHE gets through as well
    ctx = h.client_tls_context(maximum=ssl.TLSVersion.TLSv1_2)
    ctx.set_ciphers("DHE-RSA-AES256-GCM-SHA384")
    with h.RawConn(p.host, p.port) as c:
        assert c.start_tls(ctx) == b"S"
        assert c.sock.cipher()[0] == "DHE-RSA-AES256-GCM-SHA384"
        assert c.login("app", "app", "app").ok
    # legacy: the weakest group the security level allows
    reload_with(p, client_tls_dheparams="legacy")
    r = s_client(p, *dhe)
    bits = int(re.match(r"DH, (\d+) bits$", r["Server Temp Key"]).group(1))
    assert 1024 <= bits < 3072, r
    # none: no DHE suite at all; ECDHE still works
    reload_with(p, client_tls_dheparams="none")
    assert s_client(p, *dhe) == {}
    assert s_client(p, "-tls1_2")["Ciphersuite"].startswith("ECDHE-RSA-")


def test_bad_tls_settings_on_reload_keep_the_previous_context(pgtide, tls_files):
    p = pgtide.start(client_tls(tls_files, client_tls13_ciphers="TLS_AES_128_GCM_SHA256"))
    for setting, message in (
            ({"client_tls_ecdhcurve": "curve25519x"},
             "client_tls_ecdhcurve curve25519x: unknown group"),
            ({"client_tls13_ciphers": "TLS_AES_128_GCM_SHA256:TLS_NOPE"},
             "client_tls13_ciphers TLS_AES_128_GCM_SHA256:TLS_NOPE: ")):
        p.rewrite(setting)
        mark = p.log_mark()
        p.reload()
        p.wait_log(r"client TLS settings not reloaded, keeping the previous ones: " +
                   re.escape(message), mark=mark)
        assert s_client(p)["Ciphersuite"] == "TLS_AES_128_GCM_SHA256"
        p.rewrite({"client_tls_ecdhcurve": None,
                   "client_tls13_ciphers": "TLS_AES_128_GCM_SHA256"})
    # a value config.c knows is wrong stops the whole reload
    p.rewrite({"client_tls_dheparams": "ffdhe2048"})
    mark = p.log_mark()
    p.reload()
    p.wait_log(r"invalid client_tls_dheparams 'ffdhe2048' \(use none, auto or legacy\)",
               mark=mark)
    p.wait_log(r"reload failed; keeping the previous configuration", mark=mark)
    assert s_client(p)["Ciphersuite"] == "TLS_AES_128_GCM_SHA256"


# ---- configuration ----------------------------------------------------------------------------

BAD_SETTINGS = {
    "no-files": (lambda t: {"client_tls_sslmode": "require"},
                 "client_tls_sslmode = require needs client_tls_key_file and "
                 "client_tls_cert_file"),
    "missing-cert": (lambda t: client_tls(t, client_tls_cert_file="/nonexistent/server.crt"),
                     "client_tls_cert_file /nonexistent/server.crt: "),
    "no-ca": (lambda t: client_tls(t, "verify-ca", client_tls_ca_file=None),
              "client_tls_sslmode = verify-ca needs client_tls_ca_file"),
    "key-mismatch": (lambda t: client_tls(t, client_tls_key_file=t.server2_key),
                     "does not match client_tls_cert_file"),
    "bad-ciphers": (lambda t: client_tls(t, client_tls_ciphers="NOT-A-CIPHER"),
                    "client_tls_ciphers NOT-A-CIPHER: "),
    "bad-protocols": (lambda t: client_tls(t, client_tls_protocols="tlsv1.9"),
                      "invalid TLS protocol list 'tlsv1.9'"),
    "bad-mode": (lambda t: client_tls(t, "verify"), "invalid sslmode 'verify'"),
    "bad-tls13-ciphers": (lambda t: client_tls(t, client_tls13_ciphers="TLS_NOPE"),
                          "client_tls13_ciphers TLS_NOPE: "),
    "unknown-tls13-cipher-in-list": (
        lambda t: client_tls(t, client_tls13_ciphers="TLS_AES_128_GCM_SHA256:TLS_NOPE"),
        "client_tls13_ciphers TLS_AES_128_GCM_SHA256:TLS_NOPE: "),
    "bad-ecdhcurve": (lambda t: client_tls(t, client_tls_ecdhcurve="secp999r1"),
                      "client_tls_ecdhcurve secp999r1: unknown group"),
    "bad-dheparams": (lambda t: {"client_tls_dheparams": "2048"},
                      "invalid client_tls_dheparams '2048' (use none, auto or legacy)"),
}


@pytest.mark.parametrize("case", list(BAD_SETTINGS))
def test_bad_tls_settings_stop_startup(pgtide, tls_files, case):
    make, message = BAD_SETTINGS[case]
    proc = pgtide.prepare(make(tls_files))
    r = pgtide.run([proc.ini_path])
    out = r.stdout + r.stderr + proc.log()
    assert r.returncode != 0, out
    assert message in out, out


def test_relative_certificate_paths(pgtide, tls_files, tmp_path):
    """Paths in the ini are relative to the ini's folder (as auth_file is), not to the cwd."""
    proc = pgtide.prepare(client_tls(tls_files, "require"))
    os.mkdir(os.path.join(proc.workdir, "certs"))
    for name in ("server.crt", "server.key"):
        with open(tls_files.path(name), "rb") as f, \
                open(os.path.join(proc.workdir, "certs", name), "wb") as g:
            g.write(f.read())
    proc.rewrite({"client_tls_cert_file": "certs/server.crt",
                  "client_tls_key_file": "certs/server.key"})
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc.workdir = str(elsewhere)  # the process's cwd
    proc.spawn()
    proc.wait_ready()
    with psycopg.connect(proc.dsn(sslmode="verify-full", sslrootcert=tls_files.ca_crt),
                         autocommit=True) as c:
        assert c.execute("select 1").fetchone() == (1,)


# ---- pgtide to PostgreSQL ---------------------------------------------------------------------

def server_ssl_backends(pg_ssl, user="app"):
    return pg_ssl.admin_sql(
        "select s.ssl, s.version from pg_stat_ssl s join pg_stat_activity a using (pid) "
        "where a.usename = %s and a.backend_type = 'client backend'", (user,))


def ssl_databases(pg_ssl, **conn):
    extra = " ".join(f"{k}={v}" for k, v in conn.items())
    return {"app": f"host=127.0.0.1 port={pg_ssl.port} dbname=app {extra}".strip(),
            "other": None}


def test_server_tls_verify_full(pgtide, pg_ssl, tls_files):
    p = pgtide.start({"server_tls_sslmode": "verify-full",
                      "server_tls_ca_file": tls_files.ca_crt},
                     databases=ssl_databases(pg_ssl))
    with p.connect() as c:
        assert c.execute("select ssl, version from pg_stat_ssl where pid = pg_backend_pid()"
                         ).fetchone() == (True, "TLSv1.3")
    assert server_ssl_backends(pg_ssl) == [(True, "TLSv1.3")]
    assert re.search(r"new server connection tls=TLSv1\.3/", p.log())


def test_server_tls_from_the_database_entry(pgtide, pg_ssl, tls_files):
    """sslmode= and sslrootcert= in the [databases] connection string win over server_tls_*."""
    p = pgtide.start({"server_tls_sslmode": "disable"},
                     databases=ssl_databases(pg_ssl, sslmode="verify-ca",
                                             sslrootcert=tls_files.ca_crt))
    with p.connect() as c:
        assert c.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()"
                         ).fetchone() == (True,)


def test_server_tls_failures_reach_the_client(pgtide, pg_ssl, tls_files):
    # plain TCP to a server that wants TLS for app: PostgreSQL's own refusal
    p = pgtide.start({"server_tls_sslmode": "disable"}, databases=ssl_databases(pg_ssl))
    err, _ = h.login_or_query_error(p.host, p.port, "app", "app", "app")
    assert err is not None and err.sqlstate == "28000" and "no encryption" in err.message, err
    # a CA that did not sign the server's certificate
    p2 = pgtide.start({"server_tls_sslmode": "verify-ca",
                       "server_tls_ca_file": tls_files.rogue_ca_crt},
                      databases=ssl_databases(pg_ssl))
    err, _ = h.login_or_query_error(p2.host, p2.port, "app", "app", "app")
    assert err is not None and err.sqlstate == "08006", err
    assert "certificate verify failed" in err.message, err
    # verify-full checks the host name (the certificate is for 127.0.0.1 and localhost)
    p3 = pgtide.start({"server_tls_sslmode": "verify-full",
                       "server_tls_ca_file": tls_files.ca_crt},
                      databases={"app": f"host=db.invalid hostaddr=127.0.0.1 "
                                        f"port={pg_ssl.port} dbname=app", "other": None})
    err, _ = h.login_or_query_error(p3.host, p3.port, "app", "app", "app")
    assert err is not None and err.sqlstate == "08006", err
    assert "db.invalid" in err.message, err
    # ... which verify-ca does not
    p4 = pgtide.start({"server_tls_sslmode": "verify-ca",
                       "server_tls_ca_file": tls_files.ca_crt},
                      databases={"app": f"host=db.invalid hostaddr=127.0.0.1 "
                                        f"port={pg_ssl.port} dbname=app", "other": None})
    err, _ = h.login_or_query_error(p4.host, p4.port, "app", "app", "app")
    assert err is None, err


def test_server_client_certificate(pgtide, pg_ssl, tls_files):
    """server_tls_cert_file / server_tls_key_file: PostgreSQL's cert authentication."""
    p = pgtide.start({"server_tls_sslmode": "verify-full", "server_tls_ca_file": tls_files.ca_crt,
                      "server_tls_cert_file": tls_files.certuser_crt,
                      "server_tls_key_file": tls_files.certuser_key,
                      "auth_type": "trust"},
                     databases={"app": f"host=127.0.0.1 port={pg_ssl.port} dbname=app "
                                       f"user=certuser", "other": None},
                     userlist=[("app", "")])
    with p.connect(password=None) as c:
        assert c.execute("select current_user").fetchone() == ("certuser",)
        assert c.execute("select client_dn from pg_stat_ssl where pid = pg_backend_pid()"
                         ).fetchone() == ("/CN=certuser",)


@pytest.mark.deadline(150)
def test_tls_on_both_sides_large_and_reused(pgtide, pg_ssl, tls_files):
    """TLS on both legs, transaction pooling: large results and COPY intact, servers reused by
    many clients (takeover with libpq's SSL object, kept across links)."""
    p = pgtide.start({**client_tls(tls_files, "require"), "server_tls_sslmode": "verify-full",
                      "server_tls_ca_file": tls_files.ca_crt, "pool_mode": "transaction",
                      "default_pool_size": 2},
                     databases=ssl_databases(pg_ssl))
    with psycopg.connect(p.dsn(sslmode="require"), autocommit=True) as c:
        v = c.execute("select repeat('z', %s)", (BIG,)).fetchone()[0]
        assert len(v) == BIG and v.count("z") == BIG
        rows = c.execute("select i, md5(i::text) from generate_series(1, 200000) i").fetchall()
        assert len(rows) == 200000 and rows[123456] == (123457, hashlib.md5(b"123457").hexdigest())
    name = "t_tls_" + os.urandom(4).hex()
    pg_ssl.admin_sql(f"create table {name} (n int, s text)", db="app")
    pg_ssl.admin_sql(f"alter table {name} owner to app", db="app")
    try:
        payload = b"".join(b"%d\t%s\n" % (i, b"x" * 120) for i in range(90000))
        with psycopg.connect(p.dsn(sslmode="require"), autocommit=True) as c:
            with c.cursor() as cur:
                with cur.copy(f"COPY {name} FROM STDIN") as cp:
                    cp.write(payload)
                out = bytearray()
                with cur.copy(f"COPY (select * from {name} order by n) TO STDOUT") as cp:
                    for chunk in cp:
                        out += chunk
        assert bytes(out) == payload

        # 20 clients through 2 TLS server connections
        errors = []

        def worker(k):
            try:
                with psycopg.connect(p.dsn(sslmode="require"), autocommit=True) as c:
                    for i in range(20):
                        n = c.execute("select count(*) from generate_series(1, %s)",
                                      (1000 + k * 20 + i,)).fetchone()[0]
                        assert n == 1000 + k * 20 + i
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(20)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors, errors
        backends = server_ssl_backends(pg_ssl)
        assert 1 <= len(backends) <= 2 and all(b == (True, "TLSv1.3") for b in backends), backends
    finally:
        pg_ssl.admin_sql(f"drop table if exists {name}", db="app")


def test_cancel_reaches_a_tls_server(pgtide, pg_ssl, tls_files):
    """pgtide's cancel to a server it reaches over TLS (libpq sends CancelRequest on a plain
    connection, which PostgreSQL takes whatever pg_hba.conf says), and query_timeout too."""
    p = pgtide.start({**client_tls(tls_files, "require"), "server_tls_sslmode": "verify-full",
                      "server_tls_ca_file": tls_files.ca_crt, "query_timeout": "1"},
                     databases=ssl_databases(pg_ssl))
    with psycopg.connect(p.dsn(sslmode="require"), autocommit=True) as c:
        t = threading.Timer(0.3, c.cancel)
        t.start()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("select pg_sleep(20)")
        t.join()
        t0 = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("select pg_sleep(20)")  # query_timeout = 1
        assert time.monotonic() - t0 < 10
        assert c.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()"
                         ).fetchone() == (True,)


def test_server_tls_connection_killed(pgtide, pg_ssl, tls_files):
    """A TLS server connection that dies (pg_terminate_backend) reaches the client as an error,
    and the next client gets a fresh server."""
    p = pgtide.start({"server_tls_sslmode": "require"}, databases=ssl_databases(pg_ssl))
    with p.connect() as c:
        pid = c.execute("select pg_backend_pid()").fetchone()[0]
        pg_ssl.admin_sql("select pg_terminate_backend(%s)", (pid,))
        with pytest.raises(psycopg.OperationalError):
            c.execute("select 1")
    with p.connect() as c:
        assert c.execute("select ssl from pg_stat_ssl where pid = pg_backend_pid()"
                         ).fetchone() == (True,)
    assert p.alive()


def _read_until(proc, buf, marker, timeout):
    """Reads s_client's stdout (the server's bytes) until marker is in buf."""
    import select as _select
    deadline = time.monotonic() + timeout
    while marker not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {marker!r} from pgtide; got {bytes(buf[-200:])!r}")
        r, _, _ = _select.select([proc.stdout], [], [], left)
        if r:
            chunk = os.read(proc.stdout.fileno(), 65536)
            if not chunk:
                raise AssertionError(f"s_client ended; stderr: {proc.stderr.read()!r}")
            buf += chunk
    return buf


@pytest.mark.deadline(60)
def test_tls13_key_updates_from_the_client(pgtide, tls_files):
    """TLS 1.3 KeyUpdate messages from a client, with and without a request that pgtide update
    its own keys too (OpenSSL s_client's K and k commands, sent between queries): every query
    before and after is answered, so pgtide neither stalls nor drops the connection."""
    p = pgtide.start({**client_tls(tls_files), "auth_type": "trust"})
    proc = subprocess.Popen(
        ["openssl", "s_client", "-quiet", "-no_ign_eof", "-tls1_3", "-starttls", "postgres",
         "-connect", f"127.0.0.1:{p.port}"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        buf = bytearray()
        proc.stdin.write(h.startup_message({"user": "app", "database": "app"}))
        proc.stdin.flush()
        buf = _read_until(proc, buf, b"Z\x00\x00\x00\x05I", 15)
        for i, command in enumerate([None, b"K\n", b"k\n", b"K\n", b"K\n"]):
            if command:
                time.sleep(0.2)  # a chunk of its own, so s_client reads it as a command
                proc.stdin.write(command)
                proc.stdin.flush()
                time.sleep(0.2)
            # extended protocol: a chunk starting with Q would be s_client's quit command
            value = str(4000 + i).encode()
            proc.stdin.write(h.parse_msg(f"select {4000 + i}") + h.bind_msg() + h.execute_msg()
                             + h.sync_msg())
            proc.stdin.flush()
            buf = _read_until(proc, buf, value, 15)
            buf = _read_until(proc, buf, b"SELECT 1\x00Z\x00\x00\x00\x05I", 15)
            del buf[:]
        proc.stdin.write(h.terminate_message())
        proc.stdin.close()
        proc.wait(timeout=10)
        err = proc.stderr.read().decode(errors="replace")
        assert err.count("KEYUPDATE") == 4, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
