"""COPY FROM STDIN over the extended protocol under transaction pooling.

libpq's PQexecParams("COPY ... FROM STDIN") sends Parse/Bind/Describe/Execute/Sync in one write;
PostgreSQL ignores that Sync once it is in copy-in mode, and libpq sends another after CopyDone.
pgtide must expect one ReadyForQuery, not two, or the server would never go back to the pool.
"""
import struct
import time

import pgtide_harness as h


def _parse(sql):
    return h.message(b"P", b"\0" + sql.encode() + b"\0" + struct.pack("!h", 0))


def _bind():
    return h.message(b"B", b"\0\0" + struct.pack("!hhh", 0, 0, 0))


def _describe_portal():
    return h.message(b"D", b"P\0")


def _execute():
    return h.message(b"E", b"\0" + struct.pack("!i", 0))


def _read_until(c, mtype, timeout=5):
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        t, body = c.recv_msg(timeout=deadline - time.monotonic())
        seen.append((t, body))
        if t == mtype:
            return seen
    raise AssertionError(f"no {mtype!r} within {timeout}s; got {[m[0] for m in seen]}")


def _copy_in(c, table, data):
    """libpq's PQexecParams("COPY ... FROM STDIN") sequence; returns the messages up to and
    including ReadyForQuery."""
    c.send(_parse(f"COPY {table} FROM STDIN") + _bind() + _describe_portal() + _execute() +
           h.message(b"S"))
    _read_until(c, "G")
    c.send(h.message(b"d", data) + h.message(b"c") + h.message(b"S"))
    return _read_until(c, "Z")


def test_extended_copy_in_releases_server(pgtide):
    p = pgtide.start({"pool_mode": "transaction", "default_pool_size": 1})
    with p.connect() as setup:
        setup.execute("drop table if exists copy_ext")
        setup.execute("create table copy_ext (v int)")
    with p.raw() as c:
        assert c.login("app", "app", "app").ok
        msgs = _copy_in(c, "copy_ext", b"1\n2\n3\n")
        tags = [b for t, b in msgs if t == "C"]
        assert tags == [b"COPY 3\0"], msgs
        assert msgs[-1] == ("Z", b"I")
        # Exactly one ReadyForQuery: nothing more arrives.
        c.sock.settimeout(0.3)
        try:
            extra = c.sock.recv(100)
        except OSError:
            extra = b""
        assert extra == b"", f"unexpected bytes after ReadyForQuery: {extra!r}"
        # With a pool of one, another client gets the server at once: it was released.
        with p.connect() as other:
            t0 = time.monotonic()
            assert other.execute("select count(*) from copy_ext").fetchone() == (3,)
            assert time.monotonic() - t0 < 2


def test_extended_copy_in_then_more_work_same_client(pgtide):
    p = pgtide.start({"pool_mode": "transaction", "default_pool_size": 1})
    with p.connect() as setup:
        setup.execute("drop table if exists copy_ext2")
        setup.execute("create table copy_ext2 (v int)")
    with p.raw() as c:
        assert c.login("app", "app", "app").ok
        for i in range(3):
            assert _copy_in(c, "copy_ext2", f"{i}\n".encode())[-1] == ("Z", b"I")
        r = c.query("select count(*) from copy_ext2")
        assert r.results[0][1] == [("3",)] or r.results[0][1] == [(b"3",)] or \
            str(r.results[0][1][0][0]) == "3", r
