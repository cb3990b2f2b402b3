#!/usr/bin/env python3
"""Writes the seed corpus under tests/fuzz/corpus/<target>/. Server messages (ErrorResponses,
a login's replies) are captured from a throwaway PostgreSQL 15 (the integration harness's
cluster); the rest is written here. Run by hand when the seeds need refreshing:
    python3 tests/fuzz/make_corpus.py
"""
import hashlib
import os
import shutil
import socket
import struct
import sys

top = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(top, "tests", "integration"))
out = os.path.join(top, "tests", "fuzz", "corpus")


def put(target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def startup(params, version=196608):
    body = struct.pack("!I", version)
    for k, v in params:
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def msg(t, body):
    return t + struct.pack("!I", len(body) + 4) + body


# ---- startup: what psql, libpq, node-postgres and the others send first
put("startup", "ssl_request", struct.pack("!II", 8, 80877103))
put("startup", "gssenc_request", struct.pack("!II", 8, 80877104))
put("startup", "cancel_request", struct.pack("!IIII", 16, 80877102, 4242, 0xDEADBEEF))
put("startup", "psql", startup([("user", "app"), ("database", "app"),
                                ("application_name", "psql"), ("client_encoding", "UTF8")]))
put("startup", "node_pg", startup([("user", "app"), ("database", "app"),
                                   ("client_encoding", "'utf-8'")]))
put("startup", "options", startup([("user", "app"), ("database", "app"),
                                   ("options", "-c search_path=a,b --statement_timeout=5s "
                                               "-c application_name=x\\ y")]))
put("startup", "pq_option", startup([("user", "app"), ("_pq_.protocol_managed_params", "x")],
                                    version=196610))
put("startup", "replication", startup([("user", "app"), ("replication", "database")]))
put("startup", "bad_version", startup([("user", "app")], version=131072))

# ---- sql: Prisma's and psql's statements
sqls = {
    "prisma_select": 'SELECT "public"."User"."id", "public"."User"."email" FROM "public"."User" '
                     'WHERE ("public"."User"."email" = $1 AND 1=1) LIMIT $2 OFFSET $3',
    "prisma_insert": 'INSERT INTO "public"."User" ("email","name") VALUES ($1,$2) RETURNING '
                     '"public"."User"."id"',
    "prisma_txn": "BEGIN; SAVEPOINT prisma_sp_1; RELEASE SAVEPOINT prisma_sp_1; "
                  "ROLLBACK TO SAVEPOINT \"Sp 2\"; COMMIT",
    "begin_iso": "BEGIN ISOLATION LEVEL SERIALIZABLE, READ ONLY, DEFERRABLE",
    "start": "START TRANSACTION ISOLATION LEVEL REPEATABLE READ READ WRITE",
    "chain": "COMMIT AND CHAIN; ROLLBACK AND NO CHAIN; END WORK; ABORT",
    "prepare_txn": "PREPARE TRANSACTION 'gid-1'",
    "dealloc": "DEALLOCATE PREPARE s1; deallocate \"S2\"; DEALLOCATE ALL; DEALLOCATE s3",
    "dollar": "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql; SELECT $1",
    "atomic": "CREATE PROCEDURE p() LANGUAGE sql BEGIN ATOMIC SELECT 1; CASE WHEN true THEN "
              "SELECT 2; END CASE; END; SELECT 3",
    "comments": "/* a /* nested */ comment; */ SELECT 1 -- x; y\n; SELECT E'it\\'s;' ; "
                "SELECT U&'d\\0061t;' UESCAPE '\\'",
    "pin": "LISTEN ch; DECLARE c CURSOR WITH HOLD FOR SELECT 1; SELECT pg_advisory_lock(1); "
           "CREATE TEMP TABLE t AS SELECT 1; SET ROLE app; SET SESSION AUTHORIZATION DEFAULT",
    "psql_describe": "SELECT n.nspname as \"Schema\", c.relname as \"Name\" FROM "
                     "pg_catalog.pg_class c LEFT JOIN pg_catalog.pg_namespace n ON n.oid = "
                     "c.relnamespace WHERE c.relkind IN ('r','p','v','m','S','f','') AND "
                     "n.nspname <> 'pg_catalog' ORDER BY 1,2;",
    "rule": "CREATE RULE r AS ON INSERT TO t DO (INSERT INTO u VALUES (1); DELETE FROM v)",
}
for k, v in sqls.items():
    put("sql", k, v)


# ---- txn: operations as fuzz_txn.c decodes them (opcode % 13, length-prefixed text)
def op(code, text=None):
    b = bytes([code])
    if text is not None:
        t = text.encode()
        assert len(t) < 255
        b += bytes([len(t)]) + t
    return b


Q, P, B, E, C, S, OPAQUE, CC, NOEFF, ERR, RFQ = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10
def rfq(st): return bytes([RFQ, "ITE".index(st)])
put("txn", "simple_block",
    op(Q, "BEGIN") + op(CC, "BEGIN") + rfq("T") + op(Q, "SAVEPOINT a; SELECT 1") +
    op(CC, "SAVEPOINT") + op(CC, "SELECT 1") + rfq("T") + op(Q, "RELEASE a") + op(CC, "RELEASE") +
    rfq("T") + op(Q, "COMMIT") + op(CC, "COMMIT") + rfq("I"))
put("txn", "error_rollback_to",
    op(Q, "BEGIN; SAVEPOINT s1; SAVEPOINT s2; SELECT 1/0") + op(CC, "BEGIN") +
    op(CC, "SAVEPOINT") + op(CC, "SAVEPOINT") + bytes([ERR]) + rfq("E") +
    op(Q, "ROLLBACK TO s1") + op(CC, "ROLLBACK") + rfq("T") + op(Q, "ROLLBACK") +
    op(CC, "ROLLBACK") + rfq("I"))
put("txn", "extended",
    op(P, "|BEGIN") + op(B, "|") + op(E, "") + bytes([S]) + bytes([0x01]) + bytes([0]) +
    op(CC, "BEGIN") + rfq("T") + op(P, "s1|SAVEPOINT x") + op(B, "p1|s1") + op(E, "p1") +
    op(C, "p1") + bytes([S]) + op(CC, "SAVEPOINT") + rfq("T") + op(P, "|COMMIT") + op(B, "|") +
    op(E, "") + bytes([S]) + op(CC, "COMMIT") + rfq("I"))
put("txn", "pipeline",
    op(Q, "BEGIN") + op(Q, "SELECT 1") + op(Q, "COMMIT") + op(CC, "BEGIN") + rfq("T") +
    op(CC, "SELECT 1") + rfq("T") + bytes([NOEFF]) + rfq("I") + bytes([OPAQUE]) + rfq("T") +
    rfq("I"))

# ---- config and userlist: the examples, and a few small ones
put("config", "pgtide.ini", open(os.path.join(top, "config", "pgtide.ini"), "rb").read())
put("config", "small.ini",
    "[databases]\napp = host=127.0.0.1 port=5432 dbname=app pool_size=5\n"
    "* = host=db.internal\n[pgtide]\nlisten_addr = 127.0.0.1\nlisten_port = 6432\n"
    "auth_type = scram-sha-256\nauth_file = userlist.txt\npool_mode = transaction\n"
    "server_tls_sslmode = verify-full\n[users]\napp = pool_mode=session max_user_connections=3\n")
put("config", "pgbouncer.ini",
    "; a pgbouncer.ini\n[pgbouncer]\nlisten_port = 6432\nmax_client_conn = 100\n"
    "ignore_startup_parameters = extra_float_digits\nunknown_key = 1\n")
put("userlist", "userlist.txt", open(os.path.join(top, "config", "userlist.txt"), "rb").read())
put("userlist", "kinds.txt",
    '"app" "secret"\n"md5user" "md5b2d8a4b2c9d1e3f5a7b9c1d3e5f7a9b1"\n; comment\n# another\n'
    '"we""ird" "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy" extra field\n')

# ---- proto and errmap: a real PostgreSQL 15's replies
from pgtide_harness import PgCluster  # noqa: E402


def read_until_ready(s):
    buf = b""
    msgs = []
    while True:
        while len(buf) < 5 or len(buf) < 1 + struct.unpack("!I", buf[1:5])[0]:
            chunk = s.recv(65536)
            if not chunk:
                return msgs
            buf += chunk
        n = 1 + struct.unpack("!I", buf[1:5])[0]
        msgs.append(buf[:n])
        t = buf[:1]
        buf = buf[n:]
        if t == b"Z":
            return msgs


pg = PgCluster()
pg.start()
try:
    pg.admin_sql("CREATE TABLE IF NOT EXISTS parent (id int PRIMARY KEY)", db="app")
    pg.admin_sql("CREATE TABLE IF NOT EXISTS child (id int PRIMARY KEY, p int NOT NULL "
                 "REFERENCES parent ON DELETE RESTRICT, email varchar(5) UNIQUE)", db="app")
    s = socket.create_connection((pg.host, pg.port))
    s.sendall(startup([("user", "postgres"), ("database", "app"), ("application_name", "fuzz")]))
    put("proto", "login_replies", b"".join(read_until_ready(s)))
    queries = {
        "unique": "INSERT INTO parent VALUES (1); INSERT INTO parent VALUES (1)",
        "not_null": "INSERT INTO child (id) VALUES (1)",
        "foreign_key": "INSERT INTO child VALUES (1, 99)",
        "length": "INSERT INTO child VALUES (2, 1, 'toolongvalue')",
        "range": "SELECT 2147483647::int + 1",
        "input": "SELECT 'x'::int",
        "no_table": "SELECT * FROM nope",
        "no_column": "SELECT nope FROM parent",
        "syntax": "SELEC 1",
        "db_exists": "CREATE DATABASE app",
        "division": "SELECT 1/0",
        "notice": "DROP TABLE IF EXISTS nope",
        "set": "SET application_name = 'x'; SET TimeZone = 'UTC'",
        "rows": "SELECT 1 AS a, NULL AS b, 'x' AS c",
        "txn": "BEGIN; SAVEPOINT a; SELECT 1/0",
    }
    for name, q in queries.items():
        s.sendall(msg(b"Q", q.encode() + b"\0"))
        replies = read_until_ready(s)
        put("proto", name, b"".join(replies))
        for r in replies:
            if r[:1] in (b"E", b"N"):
                put("errmap", name + ("" if r[:1] == b"E" else "_notice"), r[5:])
        if name == "txn":
            s.sendall(msg(b"Q", b"ROLLBACK\0"))
            read_until_ready(s)
    s.sendall(msg(b"X", b""))
    s.close()
finally:
    pg.stop()
print("corpus written to", out)
