"""The error kind field: every ErrorResponse a client gets through pgtide carries PostgreSQL's
fields unchanged plus one extra field (`error_kind_field`, default K) holding the error as
@prisma/adapter-pg 7 classifies it, as compact JSON in MappedError's shape (facts sheet section
a, include/pgtide/errmap.h); errors pgtide raises itself carry it too; SHOW ERRORS counts them
per (database, user, kind); NoticeResponses are left alone.

Each error is caused twice, on PostgreSQL directly and through pgtide in transaction pooling
mode, and the two ErrorResponses are compared field by field (libpq keeps every field it
receives, so psycopg's pgresult.error_field() reads K as it reads C). The expected MappedError
is derived here from PostgreSQL's own fields, the way adapter-pg derives it (adapter_pg_mapped),
and pinned to a literal for every case.

PostgreSQL 15 facts these tests rest on (checked on 15.18):
- ON DELETE RESTRICT raises 23503 (ForeignKeyConstraintViolation), as NO ACTION does. Core
  PostgreSQL never raises 23001, so RestrictViolation is caused with RAISE ... USING ERRCODE.
- 22001 carries no column field and 23502's DETAIL is "Failing row contains (...)": their
  MappedErrors carry no extra facts.
- CREATE DATABASE checks the CREATEDB privilege (42501) before the name (42P04).
- 28000 is reachable naturally as "role ... is not permitted to log in" (NOLOGIN role, after a
  correct password) and, with a pg_hba.conf `reject` line, as "pg_hba.conf rejects connection
  for host ..., user ..., database "x", ..." (the only form adapter-pg takes a `db` from).
- A login error pgtide raises itself or relays from a server login has PostgreSQL's S, V, C and
  M; the F, L, R source fields are not there (pgtide has the server's login error as libpq text).

With PGTIDE_TEST_DIRECT=1 every PostgreSQL-side expectation here runs (both sides are then
PostgreSQL); checks of the extra field, SHOW ERRORS and pgtide's own errors are skipped.
"""

import json
import os
import re

import psycopg
import pytest

import pgtide_harness as h

DIRECT = os.environ.get("PGTIDE_TEST_DIRECT") == "1"
pgtide_only = pytest.mark.skipif(DIRECT, reason="pgtide's own behaviour")

TX = {"pool_mode": "transaction"}
KIND = "K"
# Every printable field code: what a client could be sent besides PostgreSQL's own.
ALL_CODES = [chr(c) for c in range(0x21, 0x7F)]

ROLES = {  # role: (password, attributes), created for this module
    "ek_creator": ("ek-creator-pw", "LOGIN CREATEDB"),
    "ek_nolog": ("ek-nolog-pw", "NOLOGIN"),
    "ek_nohba": ("ek-nohba-pw", "LOGIN"),
}
EXTRA_USERS = [(r, pw) for r, (pw, _) in ROLES.items()]


# ---- adapter-pg's derivation, from the facts sheet ----------------------------------------------

def adapter_pg_mapped(f):
    """The MappedError adapter-pg 7's convertDriverError makes of an ErrorResponse with fields
    f ({code: text}), members it would leave undefined left out, "kind" first."""
    code, msg, detail = f.get("C"), f.get("M"), f.get("D")

    def quoted(word):  # word?.split('"').at(1)
        if word is None:
            return None
        parts = word.split('"')
        return parts[1] if len(parts) > 1 else None

    def word(i):  # message.split(' ').at(i)
        parts = (msg or "").split(" ")
        return parts[i] if msg is not None and len(parts) > i else None

    def detail_fields():  # detail?.match(/Key \(([^)]+)\)/)?.at(1)?.split(', ')
        m = re.search(r"Key \(([^)]+)\)", detail) if detail is not None else None
        return m.group(1).split(", ") if m else None

    def fk_constraint():
        if f.get("c") is not None:
            return {"fields": [f["c"]]}
        return {"index": f["n"]} if f.get("n") is not None else None

    if code == "22001":
        out = {"kind": "LengthMismatch", "column": f.get("c")}
    elif code == "22003":
        out = {"kind": "ValueOutOfRange", "cause": msg}
    elif code == "22P02":
        out = {"kind": "InvalidInputValue", "message": msg}
    elif code == "23505":
        fields = detail_fields()
        n, t = f.get("n"), f.get("t")
        constraint = {"index": n} if n is not None else ({"fields": fields} if fields else None)
        if t is None and fields and n is not None:
            suffix = "_" + "_".join(fields) + "_key"
            t = n[:-len(suffix)] if n.endswith(suffix) else n
        out = {"kind": "UniqueConstraintViolation", "constraint": constraint, "table": t}
    elif code == "23502":
        fields = detail_fields()
        out = {"kind": "NullConstraintViolation",
               "constraint": {"fields": fields} if fields else None}
    elif code == "23503":
        out = {"kind": "ForeignKeyConstraintViolation", "constraint": fk_constraint()}
    elif code == "23001":
        out = {"kind": "RestrictViolation", "constraint": fk_constraint()}
    elif code == "3D000":
        out = {"kind": "DatabaseDoesNotExist", "db": quoted(word(1))}
    elif code == "28000":
        part = next((s for s in (msg or "").split(",") if s.startswith(" database")), None)
        out = {"kind": "DatabaseAccessDenied", "db": quoted(part)}
    elif code == "28P01":
        out = {"kind": "AuthenticationFailed",
               "user": quoted(msg.split(" ")[-1]) if msg is not None else None}
    elif code in ("40001", "40P01"):
        out = {"kind": "TransactionWriteConflict"}
    elif code == "42P01":
        out = {"kind": "TableDoesNotExist", "table": quoted(word(1))}
    elif code == "42703":
        # /^column (.+) does not exist$/ (JS "." stops at line terminators), then "..."
        # identifiers unquoted with "" inside them turned into "
        m = re.fullmatch(r"column ([^\n\r\u2028\u2029]+) does not exist", msg or "")
        column = None
        if m:
            column, inside, s, i = "", False, m.group(1), 0
            while i < len(s):
                if s[i] != '"':
                    column += s[i]
                elif inside and s[i + 1:i + 2] == '"':
                    column += '"'
                    i += 1
                else:
                    inside = not inside
                i += 1
        out = {"kind": "ColumnNotFound", "column": column}
    elif code == "42P04":
        out = {"kind": "DatabaseAlreadyExists", "db": quoted(word(1))}
    elif code == "53300":
        out = {"kind": "TooManyConnections", "cause": msg}
    else:
        out = {"kind": "postgres", "code": code, "severity": f.get("S") or f.get("V"),
               "message": msg, "detail": detail, "column": f.get("c"), "hint": f.get("H")}
    return {k: v for k, v in out.items() if v is not None}


def test_adapter_pg_mapped_matches_errmap_unit_rows():
    """This file's derivation agrees with rows of tests/unit/test_errmap.c (the C classifier's
    table), quirks included, so both test the same thing."""
    rows = [
        ({"C": "23505", "M": "x", "D": "Key (a, b)=(1, 2) already exists.",
          "n": "pair_a_b_key"},
         {"kind": "UniqueConstraintViolation", "constraint": {"index": "pair_a_b_key"},
          "table": "pair"}),
        ({"C": "23505", "M": "x", "D": "Key (email)=(a@b.c) already exists."},
         {"kind": "UniqueConstraintViolation", "constraint": {"fields": ["email"]}}),
        ({"C": "23505", "M": "x", "D": "Key (email)=(a@b.c) already exists.",
          "n": "users_email_uniq"},
         {"kind": "UniqueConstraintViolation", "constraint": {"index": "users_email_uniq"},
          "table": "users_email_uniq"}),
        ({"C": "3D000", "M": 'database "my db" does not exist'},
         {"kind": "DatabaseDoesNotExist", "db": "my"}),
        ({"C": "28P01", "M": 'password authentication failed for user "app user"'},
         {"kind": "AuthenticationFailed", "user": ""}),
        ({"C": "28000", "M": 'pg_hba.conf rejects connection for host "[local]", user "u", '
                             'database "d", no encryption'},
         {"kind": "DatabaseAccessDenied", "db": "d"}),
        ({"C": "42703", "M": 'column "we"ird" does not exist'},
         {"kind": "ColumnNotFound", "column": "weird"}),
        ({"C": "42703", "M": 'column "a""b"."c" does not exist'},
         {"kind": "ColumnNotFound", "column": 'a"b.c'}),
        ({"C": "42703", "M": 'column "nope" of relation "drift_col" does not exist'},
         {"kind": "ColumnNotFound", "column": "nope of relation drift_col"}),
        ({"C": "42703", "M": 'column "a\nb" does not exist'}, {"kind": "ColumnNotFound"}),
        ({"C": "23503", "M": "x", "c": "user_id", "n": "orders_user_id_fkey"},
         {"kind": "ForeignKeyConstraintViolation", "constraint": {"fields": ["user_id"]}}),
        ({"S": "FEHLER", "V": "ERROR", "C": "42601", "M": "m"},
         {"kind": "postgres", "code": "42601", "severity": "FEHLER", "message": "m"}),
        ({"S": "ERROR", "C": "23514", "M": "m", "D": "d", "t": "t", "n": "n"},
         {"kind": "postgres", "code": "23514", "severity": "ERROR", "message": "m",
          "detail": "d"}),
    ]
    for fields, want in rows:
        assert adapter_pg_mapped(fields) == want, fields


# ---- fixtures and helpers -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def roles(pg):
    for role, (pw, attrs) in ROLES.items():
        pg.admin_sql(f"DROP ROLE IF EXISTS {role}")
        pg.admin_sql(f"CREATE ROLE {role} {attrs} PASSWORD '{pw}'")
    yield
    for role in ROLES:
        pg.admin_sql(f"DROP ROLE IF EXISTS {role}")


TABLES = ("ek_len", "ek_user", "ek_nn", "ek_parent", "ek_child", "ek_chk", "ek_skew", "ek_lock")


@pytest.fixture(scope="module")
def objs(pg):
    """The tables every case uses, in database app, owned by app."""
    drop = "DROP TABLE IF EXISTS " + ", ".join(TABLES) + " CASCADE"
    pg.admin_sql(drop, db="app")
    pg.admin_sql("""
        CREATE TABLE ek_len (v varchar(5), i int2);
        CREATE TABLE ek_user (id int, email text UNIQUE);
        INSERT INTO ek_user VALUES (1, 'a@b.c');
        CREATE TABLE ek_nn (id int, name text NOT NULL);
        CREATE TABLE ek_parent (id int PRIMARY KEY);
        INSERT INTO ek_parent VALUES (1);
        CREATE TABLE ek_child (id int, pid int REFERENCES ek_parent (id) ON DELETE RESTRICT);
        INSERT INTO ek_child VALUES (1, 1);
        CREATE TABLE ek_chk (n int CHECK (n > 0));
        CREATE TABLE ek_skew (id int, v int);
        CREATE TABLE ek_lock (id int PRIMARY KEY, v int);
    """, db="app")
    for t in TABLES:
        pg.admin_sql(f"ALTER TABLE {t} OWNER TO app", db="app")
    yield
    pg.admin_sql(drop, db="app")


@pytest.fixture
def hba_reject(pg, roles):
    """A pg_hba.conf line rejecting ek_nohba from 127.0.0.1, removed afterwards."""
    path = os.path.join(pg.data, "pg_hba.conf")
    with open(path) as f:
        saved = f.read()

    def refused():
        err = login_error(pg.host, pg.port, "ek_nohba", ROLES["ek_nohba"][0], "app",
                          expect=False)
        return err is not None and err.get("C") == "28000"
    try:
        with open(path, "w") as f:
            f.write("host all ek_nohba 127.0.0.1/32 reject\n" + saved)
        pg.admin_sql("SELECT pg_reload_conf()")
        h.wait_for(refused, 10, what="pg_hba.conf reloaded with the reject line")
        yield
    finally:
        with open(path, "w") as f:
            f.write(saved)
        pg.admin_sql("SELECT pg_reload_conf()")
        h.wait_for(lambda: not refused(), 10, what="pg_hba.conf restored")


def userlist(pgtide, extra=()):
    """The default user list plus this module's roles; extra entries replace same-named ones."""
    entries = dict(pgtide.default_userlist() + EXTRA_USERS)
    entries.update(dict(extra))
    return list(entries.items())


def start(pgtide, settings=None, **kw):
    kw.setdefault("userlist", userlist(pgtide))
    return pgtide.start({**TX, **(settings or {})}, **kw)


def direct_connector(pg):
    def connect(user="app", password="app", dbname="app"):
        return psycopg.connect(pg.dsn(user=user, db=dbname, password=password), autocommit=True)
    return connect


def via_connector(p):
    def connect(user="app", password="app", dbname="app"):
        c = p.connect(user, password, dbname)
        c.prepare_threshold = None  # no named statements across servers
        return c
    return connect


def result_fields(e):
    """Every field of the ErrorResponse behind psycopg error e ({code: text})."""
    res = e.pgresult
    assert res is not None, f"{e!r} has no result to read fields from"
    out = {}
    for code in ALL_CODES:
        v = res.error_field(ord(code))
        if v is not None:
            out[code] = v.decode()
    return out


def error_of(conn, sql):
    """Runs sql on conn, which must fail; returns the error's fields."""
    try:
        conn.execute(sql)
    except psycopg.Error as e:
        return result_fields(e)
    raise AssertionError(f"{sql!r} did not fail")


def login_error(host, port, user, password, database, expect=True):
    """The ErrorResponse (as a PgError) of a login, or of the first query after it (pgtide may
    report a server's login failure at either point)."""
    err, _ = h.login_or_query_error(host, port, user, password, database)
    if expect:
        assert err is not None, f"{user}@{database} logged in and queried without an error"
    return err


def check_kind(via, expected, literal_json=None):
    """via carries the kind field: compact JSON equal to expected (pgtide only)."""
    if DIRECT:
        assert KIND not in via
        return
    assert KIND in via, f"no {KIND} field in {via}"
    text = via[KIND]
    got = json.loads(text)
    assert got == expected, f"{KIND} = {text}"
    assert next(iter(got)) == "kind", f"'kind' is not the first member: {text}"
    assert text == json.dumps(got, separators=(",", ":"), ensure_ascii=False), \
        f"not compact JSON: {text}"
    if literal_json is not None:
        assert text == literal_json


def check_same_error(direct, via, literal, literal_json=None, normalize=()):
    """via is PostgreSQL's ErrorResponse `direct`, unchanged, plus the kind field; the kind is
    derived from direct's fields and equals literal."""
    assert KIND not in direct, "PostgreSQL itself sent the kind field's code"
    expected = adapter_pg_mapped(direct)
    assert expected == literal, f"adapter-pg's MappedError for PostgreSQL's error {direct}"
    pg_part = {k: v for k, v in via.items() if k != KIND}
    d = dict(direct)
    for code in normalize:  # values that differ between two runs (pids, xids)
        for f in (pg_part, d):
            if code in f:
                f[code] = re.sub(r"\d+", "N", f[code])
    assert pg_part == d, "PostgreSQL's fields through pgtide"
    check_kind(via, expected, literal_json)


def check_raw_error(direct_qr, via_qr, literal):
    """The one ErrorResponse of two raw QueryResults: as check_same_error, and byte for byte
    PostgreSQL's message with the field added after its last field."""
    d_body = [b for t, b in direct_qr.messages if t == "E"]
    v_body = [b for t, b in via_qr.messages if t == "E"]
    assert len(d_body) == len(v_body) == 1
    via = dict(h.parse_error(v_body[0]))
    check_same_error(dict(h.parse_error(d_body[0])), via, literal)
    if not DIRECT:
        assert v_body[0] == d_body[0][:-1] + KIND.encode() + via[KIND].encode() + b"\0\0", \
            "PostgreSQL's fields, in their order, then the kind field"


# ---- errors in queries: one case per row of the facts sheet's table ----------------------------

def _sql_case(sql, user=("app", "app")):
    def trigger(connect, pg):
        with connect(*user) as c:
            return error_of(c, sql)
    return trigger


def _serialization_failure(connect, pg):
    """Two SERIALIZABLE transactions that each read what the other writes: the second
    COMMIT fails."""
    pg.admin_sql("TRUNCATE ek_skew; INSERT INTO ek_skew VALUES (1, 1), (2, 1)", db="app")
    with connect() as a, connect() as b:
        a.execute("begin isolation level serializable")
        b.execute("begin isolation level serializable")
        a.execute("select sum(v) from ek_skew where id = 1").fetchall()
        b.execute("select sum(v) from ek_skew where id = 2").fetchall()
        a.execute("update ek_skew set v = v + 1 where id = 2")
        b.execute("update ek_skew set v = v + 1 where id = 1")
        a.execute("commit")
        fields = error_of(b, "commit")
        assert b.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        return fields


def _lock_waiters(pg):
    return pg.admin_value("select count(*) from pg_stat_activity where datname = 'app' "
                          "and wait_event_type = 'Lock'")


def _outcome(conn, sql):
    """The error's fields if sql fails on conn, else None."""
    try:
        conn.execute(sql)
    except psycopg.Error as e:
        return result_fields(e)
    return None


def _deadlock(connect, pg):
    """a and b each hold a row the other wants. The one whose deadlock check runs first
    (deadlock_timeout, 1 s, after it began to wait) fails: usually a, which waits first, but b
    on a slow machine (when b waits only after a's check)."""
    pg.admin_sql("TRUNCATE ek_lock; INSERT INTO ek_lock VALUES (1, 0), (2, 0)", db="app")
    with connect() as a, connect() as b:
        a.execute("begin")
        b.execute("begin")
        a.execute("update ek_lock set v = 1 where id = 1")
        b.execute("update ek_lock set v = 1 where id = 2")
        ja = h.Background(_outcome, a, "update ek_lock set v = 2 where id = 2")
        h.wait_for(lambda: _lock_waiters(pg) >= 1, 5, what="a waiting for b's row")
        jb = h.Background(_outcome, b, "update ek_lock set v = 2 where id = 1")
        errors = [f for f in (ja.result(timeout=15), jb.result(timeout=15)) if f is not None]
        assert len(errors) == 1, f"not one deadlock victim: {errors}"
        b.execute("rollback")
        a.execute("rollback")
        return errors[0]


CREATOR = ("ek_creator", ROLES["ek_creator"][0])
ESCAPES_MSG = 'ek "q" b\\s\nl\tt caf\u00e9 \u2713'

# name: (trigger, literal MappedError, literal JSON text or None, fields to normalize)
QUERY_CASES = {
    "22001 LengthMismatch": (
        _sql_case("insert into ek_len (v) values ('abcdefg')"),
        {"kind": "LengthMismatch"}, None, ()),
    "22003 ValueOutOfRange": (
        _sql_case("insert into ek_len (i) values (100000)"),
        {"kind": "ValueOutOfRange", "cause": "smallint out of range"}, None, ()),
    "22P02 InvalidInputValue": (
        _sql_case("select 'abc'::int"),
        {"kind": "InvalidInputValue", "message": 'invalid input syntax for type integer: "abc"'},
        None, ()),
    "23505 UniqueConstraintViolation": (
        _sql_case("insert into ek_user values (2, 'a@b.c')"),
        {"kind": "UniqueConstraintViolation", "constraint": {"index": "ek_user_email_key"},
         "table": "ek_user"},
        '{"kind":"UniqueConstraintViolation","constraint":{"index":"ek_user_email_key"},'
        '"table":"ek_user"}', ()),
    "23502 NullConstraintViolation": (
        _sql_case("insert into ek_nn values (1, null)"),
        {"kind": "NullConstraintViolation"}, '{"kind":"NullConstraintViolation"}', ()),
    "23503 ForeignKeyConstraintViolation": (
        _sql_case("insert into ek_child values (2, 99)"),
        {"kind": "ForeignKeyConstraintViolation", "constraint": {"index": "ek_child_pid_fkey"}},
        None, ()),
    # The spec's way to get 23001: PostgreSQL answers ON DELETE RESTRICT with 23503.
    "23503 from ON DELETE RESTRICT": (
        _sql_case("delete from ek_parent where id = 1"),
        {"kind": "ForeignKeyConstraintViolation", "constraint": {"index": "ek_child_pid_fkey"}},
        None, ()),
    "23001 RestrictViolation with a column": (
        _sql_case("do $$begin raise exception using errcode = 'restrict_violation', "
                  "message = 'ek restrict', table = 'ek_child', column = 'pid', "
                  "constraint = 'ek_child_pid_fkey'; end$$"),
        {"kind": "RestrictViolation", "constraint": {"fields": ["pid"]}}, None, ()),
    "23001 RestrictViolation with a constraint": (
        _sql_case("do $$begin raise exception using errcode = 'restrict_violation', "
                  "message = 'ek restrict', constraint = 'ek_child_pid_fkey'; end$$"),
        {"kind": "RestrictViolation", "constraint": {"index": "ek_child_pid_fkey"}}, None, ()),
    "40001 TransactionWriteConflict": (
        _serialization_failure, {"kind": "TransactionWriteConflict"},
        '{"kind":"TransactionWriteConflict"}', ()),
    "40P01 TransactionWriteConflict": (
        _deadlock, {"kind": "TransactionWriteConflict"}, None, ("D", "W")),
    "42P01 TableDoesNotExist": (
        _sql_case("select * from ek_nope"),
        {"kind": "TableDoesNotExist", "table": "ek_nope"},
        '{"kind":"TableDoesNotExist","table":"ek_nope"}', ()),
    "42P01 TableDoesNotExist qualified": (
        _sql_case("select * from public.ek_nope"),
        {"kind": "TableDoesNotExist", "table": "public.ek_nope"}, None, ()),
    "42703 ColumnNotFound": (
        _sql_case("select nope from ek_user"),
        {"kind": "ColumnNotFound", "column": "nope"}, None, ()),
    "42703 ColumnNotFound qualified": (
        _sql_case("select ek_user.nope from ek_user"),
        {"kind": "ColumnNotFound", "column": "ek_user.nope"}, None, ()),
    "42P04 DatabaseAlreadyExists": (
        _sql_case("create database app", user=CREATOR),
        {"kind": "DatabaseAlreadyExists", "db": "app"}, None, ()),
    "42601 postgres": (
        _sql_case("selec 1"),
        {"kind": "postgres", "code": "42601", "severity": "ERROR",
         "message": 'syntax error at or near "selec"'},
        '{"kind":"postgres","code":"42601","severity":"ERROR",'
        '"message":"syntax error at or near \\"selec\\""}', ()),
    "22012 postgres": (
        _sql_case("select 1/0"),
        {"kind": "postgres", "code": "22012", "severity": "ERROR",
         "message": "division by zero"}, None, ()),
    "23514 postgres with a detail": (
        _sql_case("insert into ek_chk values (-1)"),
        {"kind": "postgres", "code": "23514", "severity": "ERROR",
         "message": 'new row for relation "ek_chk" violates check constraint "ek_chk_n_check"',
         "detail": "Failing row contains (-1)."}, None, ()),
    "P0001 postgres with every member": (
        _sql_case("do $$begin raise exception using message = 'ek boom', "
                  "detail = 'ek detail', hint = 'ek hint', column = 'ek_col'; end$$"),
        {"kind": "postgres", "code": "P0001", "severity": "ERROR", "message": "ek boom",
         "detail": "ek detail", "column": "ek_col", "hint": "ek hint"},
        '{"kind":"postgres","code":"P0001","severity":"ERROR","message":"ek boom",'
        '"detail":"ek detail","column":"ek_col","hint":"ek hint"}', ()),
    "P0001 postgres with characters JSON escapes": (
        _sql_case("do $$begin raise exception using message = "
                  "E'ek \"q\" b\\\\s\\nl\\tt caf\u00e9 \u2713'; end$$"),
        {"kind": "postgres", "code": "P0001", "severity": "ERROR", "message": ESCAPES_MSG},
        '{"kind":"postgres","code":"P0001","severity":"ERROR",'
        '"message":"ek \\"q\\" b\\\\s\\nl\\tt caf\u00e9 \u2713"}', ()),
}


@pytest.mark.parametrize("case", list(QUERY_CASES))
def test_query_error_carries_its_kind(pgtide, pg, objs, roles, case):
    trigger, literal, literal_json, normalize = QUERY_CASES[case]
    p = start(pgtide)
    direct = trigger(direct_connector(pg), pg)
    via = trigger(via_connector(p), pg)
    check_same_error(direct, via, literal, literal_json, normalize)


# ---- errors at login ----------------------------------------------------------------------------

# name: (user, password, database through pgtide, database on PostgreSQL, literal,
#        user list replacements, needs the pg_hba.conf reject line)
LOGIN_CASES = {
    "3D000 database pgtide does not know": (
        "app", "app", "ek_nope", "ek_nope",
        {"kind": "DatabaseDoesNotExist", "db": "ek_nope"}, (), False),
    "3D000 database the server does not have": (
        "app", "app", "ek_ghostdb", "ek_missing",
        {"kind": "DatabaseDoesNotExist", "db": "ek_missing"}, (), False),
    "28000 role not permitted to log in": (
        "ek_nolog", ROLES["ek_nolog"][0], "app", "app",
        {"kind": "DatabaseAccessDenied"}, (), False),
    "28000 pg_hba.conf rejects": (
        "ek_nohba", ROLES["ek_nohba"][0], "app", "app",
        {"kind": "DatabaseAccessDenied", "db": "app"}, (), True),
    "28P01 wrong password": (
        "app", "not-app", "app", "app",
        {"kind": "AuthenticationFailed", "user": "app"}, (), False),
    "28P01 wrong password of an unknown user": (
        "ek_ghost", "whatever", "app", "app",
        {"kind": "AuthenticationFailed", "user": "ek_ghost"}, (), False),
    # pgtide accepts the client (its user list has this password), the server does not
    "28P01 from the server": (
        "md5user", "ek-not-md5pw", "app", "app",
        {"kind": "AuthenticationFailed", "user": "md5user"}, (("md5user", "ek-not-md5pw"),),
        False),
}


@pytest.mark.parametrize("case", list(LOGIN_CASES))
def test_login_error_carries_its_kind(pgtide, pg, roles, request, case):
    user, password, db, direct_db, literal, replace, hba = LOGIN_CASES[case]
    if hba:
        request.getfixturevalue("hba_reject")
    p = start(pgtide, databases={"ek_ghostdb": f"host=127.0.0.1 port={pg.port} "
                                               f"dbname=ek_missing"},
              userlist=userlist(pgtide, replace))
    direct = dict(login_error(pg.host, pg.port, user, password, direct_db))
    via = dict(login_error(p.host, p.port, user, password, direct_db if DIRECT else db))
    assert KIND not in direct
    expected = adapter_pg_mapped(direct)
    assert expected == literal, f"adapter-pg's MappedError for PostgreSQL's error {direct}"
    assert direct["S"] == "FATAL"
    for code in "SVCM":
        assert via.get(code) == direct[code], f"field {code}: {via} vs PostgreSQL's {direct}"
    other = {k: v for k, v in via.items() if k != KIND and direct.get(k) != v}
    assert not other, f"fields PostgreSQL does not send: {other}"
    check_kind(via, expected)


@pgtide_only
def test_unknown_user_under_trust_is_access_denied(pgtide):
    """pgtide's own 28000 (auth_type trust still needs an auth_file entry), in PostgreSQL's
    wording for a role that does not exist."""
    p = start(pgtide, {"auth_type": "trust"})
    err = login_error(p.host, p.port, "ek_ghost", None, "app")
    assert {k: err.get(k) for k in "SVCM"} == {
        "S": "FATAL", "V": "FATAL", "C": "28000", "M": 'role "ek_ghost" does not exist'}
    check_kind(err, {"kind": "DatabaseAccessDenied"}, '{"kind":"DatabaseAccessDenied"}')


def _show_errors(p):
    with h.AdminConsole(p) as adm:
        rows = adm.rows("SHOW ERRORS")
    return [(r["database"], r["user"], r["kind"], int(r["count"])) for r in rows]


@pgtide_only
def test_max_client_conn_is_too_many_connections(pgtide):
    """The client over max_client_conn gets PostgreSQL's 53300 text, with the field, counted
    under the database and user of its startup packet. The admin console is connected first
    (so that it is not refused itself); whether it counts as a client is left open."""
    p = start(pgtide, {"max_client_conn": 3, "admin_users": "app"})
    held = []
    with h.AdminConsole(p) as adm:
        try:
            err = None
            for _ in range(4):
                c = p.raw()
                res = c.login("app", "app", "app")
                if not res.ok:
                    err = res.error
                    c.close()
                    break
                held.append(c)
            assert err is not None, "max_client_conn = 3 let 4 clients and the console in"
            assert len(held) in (2, 3)
            assert {k: err.get(k) for k in "SVCM"} == {
                "S": "FATAL", "V": "FATAL", "C": "53300",
                "M": "sorry, too many clients already"}
            check_kind(err, {"kind": "TooManyConnections",
                             "cause": "sorry, too many clients already"},
                       '{"kind":"TooManyConnections","cause":"sorry, too many clients already"}')
            rows = [(r["database"], r["user"], r["kind"], int(r["count"]))
                    for r in adm.rows("SHOW ERRORS")]
            assert rows == [("app", "app", "TooManyConnections", 1)]
        finally:
            for c in held:
                c.close()


@pgtide_only
@pytest.mark.deadline(30)
def test_query_wait_timeout_is_too_many_connections(pgtide):
    p = start(pgtide, {"default_pool_size": 1, "query_wait_timeout": 1,
                       "admin_users": "app"})
    with p.raw() as holder, p.raw() as waiter:
        assert holder.login("app", "app", "app").ok
        assert holder.query("begin").status == "T"
        assert waiter.login("app", "app", "app").ok
        qr = waiter.query("select 1", timeout=10)
        assert qr.errors, f"no error for a client that waited past query_wait_timeout: {qr}"
        err = qr.errors[0]
        assert (err.get("S"), err.get("V"), err.get("C")) == ("FATAL", "FATAL", "53300")
        check_kind(err, {"kind": "TooManyConnections", "cause": err.get("M")})
        assert holder.query("rollback").status == "I"
    assert ("app", "app", "TooManyConnections", 1) in _show_errors(p)


# ---- error_kind_field -------------------------------------------------------------------------

DUP = "insert into ek_user values (2, 'a@b.c')"


@pgtide_only
def test_error_kind_field_empty_turns_it_off(pgtide, pg, objs):
    p = start(pgtide, {"error_kind_field": ""})
    direct = _sql_case(DUP)(direct_connector(pg), pg)
    via = _sql_case(DUP)(via_connector(p), pg)
    assert via == direct, "with error_kind_field empty, PostgreSQL's fields and nothing else"
    err = login_error(p.host, p.port, "app", "wrong", "app")
    assert err.sqlstate == "28P01"
    assert set(err) <= set("SVCMDHPpqWstcdnFLR"), f"a field besides PostgreSQL's: {err}"


@pgtide_only
def test_error_kind_field_other_code(pgtide, pg, objs):
    p = start(pgtide, {"error_kind_field": "X"})
    direct = _sql_case(DUP)(direct_connector(pg), pg)
    via = _sql_case(DUP)(via_connector(p), pg)
    assert KIND not in via
    assert json.loads(via.pop("X")) == adapter_pg_mapped(direct)
    assert via == direct
    err = dict(login_error(p.host, p.port, "app", "wrong", "app"))
    assert KIND not in err
    assert json.loads(err["X"]) == {"kind": "AuthenticationFailed", "user": "app"}


@pgtide_only
@pytest.mark.parametrize("value,why", [
    ("C", "error_kind_field 'C' is an ErrorResponse field code PostgreSQL uses"),
    ("M", "error_kind_field 'M' is an ErrorResponse field code PostgreSQL uses"),
    ("S", "error_kind_field 'S' is an ErrorResponse field code PostgreSQL uses"),
    ("n", "error_kind_field 'n' is an ErrorResponse field code PostgreSQL uses"),
    ("q", "error_kind_field 'q' is an ErrorResponse field code PostgreSQL uses"),
    ("R", "error_kind_field 'R' is an ErrorResponse field code PostgreSQL uses"),
    ("KK", "error_kind_field must be empty or one printable ASCII character, got 'KK'"),
])
def test_error_kind_field_refused_at_startup(pgtide, value, why):
    p = pgtide.prepare({"error_kind_field": value})
    r = pgtide.run([p.ini_path])
    assert r.returncode == 1, (r.returncode, r.stderr)
    assert f"pgtide.ini:{p.where['error_kind_field']}" in r.stderr, r.stderr
    assert why in r.stderr, r.stderr


# ---- what does not get the field, and errors in awkward places ----------------------------------

def _raw_login(target):
    c = h.RawConn(target.host, target.port, timeout=10)
    assert c.login("app", "app", "app").ok
    return c


def test_notices_do_not_get_the_field(pgtide, pg):
    queries = ["do $$begin raise notice 'ek notice'; raise warning 'ek warning'; end$$",
               "set transaction isolation level serializable",  # outside a block: a WARNING
               "do $$begin raise notice 'ek before'; end$$; select 1/0"]
    p = start(pgtide)
    out = {}
    for name, target in (("direct", pg), ("via", p)):
        with _raw_login(target) as c:
            out[name] = [c.query(sql) for sql in queries]
    direct, via = out["direct"], out["via"]
    assert [[(n.severity, n.message) for n in qr.notices] for qr in direct] == [
        [("NOTICE", "ek notice"), ("WARNING", "ek warning")],
        [("WARNING", "SET TRANSACTION can only be used in transaction blocks")],
        [("NOTICE", "ek before")]]
    for d, v in zip(direct, via):
        assert [dict(n) for n in v.notices] == [dict(n) for n in d.notices], \
            "NoticeResponses through pgtide are PostgreSQL's, unchanged"
        assert v.status == d.status == "I"
    assert [len(qr.errors) for qr in direct] == [len(qr.errors) for qr in via] == [0, 0, 1]
    check_raw_error(direct[2], via[2],
                    {"kind": "postgres", "code": "22012", "severity": "ERROR",
                     "message": "division by zero"})


def test_error_in_a_pipelined_batch(pgtide, pg):
    """Parse/Bind/Execute x3 then one Sync, the second failing after its first row:
    PostgreSQL skips the rest up to the Sync; the error arrives whole, with the field, and the
    connection goes on."""
    failing = "select 1 / (2 - g) from generate_series(1, 3) g"
    batch = b"".join(h.parse_msg(sql) + h.bind_msg() + h.execute_msg()
                     for sql in ("select 1", failing, "select 2")) + h.sync_msg()
    p = start(pgtide)
    out = {}
    for name, target in (("direct", pg), ("via", p)):
        with _raw_login(target) as c:
            c.send(batch)
            qr = c.read_results()
            after = c.query("select 3")
        out[name] = qr
        assert after.results[0][1] == [("3",)] and after.status == "I"
    direct, via = out["direct"], out["via"]
    assert [t for t, _ in direct.messages] == ["1", "2", "D", "C", "1", "2", "D", "E", "Z"]
    assert [t for t, _ in via.messages] == [t for t, _ in direct.messages]
    check_raw_error(direct, via,
                    {"kind": "postgres", "code": "22012", "severity": "ERROR",
                     "message": "division by zero"})


def test_error_in_a_psycopg_pipeline(pgtide, pg):
    if not psycopg.Pipeline.is_supported():
        pytest.skip("libpq without pipeline mode")

    def trigger(connect, pg):
        with connect() as c:
            try:
                with c.pipeline():
                    c.execute("select %s::int", (1,))
                    c.execute("select 1 / %s::int", (0,))
                    c.execute("select %s::int", (2,))
            except psycopg.errors.DivisionByZero as e:
                fields = result_fields(e)
            else:
                raise AssertionError("the pipeline did not fail")
            assert c.execute("select 3").fetchone() == (3,)
            return fields
    p = start(pgtide)
    check_same_error(trigger(direct_connector(pg), pg), trigger(via_connector(p), pg),
                     {"kind": "postgres", "code": "22012", "severity": "ERROR",
                     "message": "division by zero"})


def test_error_after_many_rows(pgtide, pg):
    """Division by zero at row 50,000 of a result PostgreSQL streams: 49,999 DataRows (about
    11 MB) first, then the ErrorResponse, whole and with the field."""
    sql = "select g, repeat('x', 200), 1 / (50000 - g) from generate_series(1, 60000) g"
    p = start(pgtide)
    out = {}
    for name, target in (("direct", pg), ("via", p)):
        with _raw_login(target) as c:
            qr = c.query(sql, timeout=20)
            out[name] = qr
            assert c.query("select 1").status == "I"
        assert [t for t, _ in qr.messages].count("D") == 49999, name
        assert [t for t, _ in qr.messages][-2:] == ["E", "Z"], name
        assert qr.status == "I", name
    check_raw_error(out["direct"], out["via"],
                    {"kind": "postgres", "code": "22012", "severity": "ERROR",
                     "message": "division by zero"})


# ---- SHOW ERRORS --------------------------------------------------------------------------------

@pgtide_only
def test_show_errors_counts_per_database_user_and_kind(pgtide, pg, objs):
    p = start(pgtide, {"admin_users": "app"})
    with h.AdminConsole(p) as adm:
        assert adm.rows("SHOW ERRORS") == [], "a fresh pgtide has counted nothing"
    connect = via_connector(p)
    with connect() as c:
        for _ in range(2):
            error_of(c, DUP)
        error_of(c, "selec 1")
        c.execute("do $$begin raise warning 'ek warning'; end$$")  # a notice is no error
        assert c.execute("select 1").fetchone() == (1,)
        c.execute("begin")
        error_of(c, "select * from ek_nope")
        c.execute("rollback")
    with connect(dbname="other") as c:
        error_of(c, "select * from ek_nope")
    logins = [("app", "wrong", "app", "28P01"), ("app", "wrong again", "app", "28P01"),
              ("md5user", "wrong", "other", "28P01"), ("ek_ghost", "x", "app", "28P01"),
              ("app", "app", "ek_nope", "3D000")]
    for user, password, db, sqlstate in logins:
        assert login_error(p.host, p.port, user, password, db).sqlstate == sqlstate
    rows = _show_errors(p)
    assert rows == [
        ("app", "app", "AuthenticationFailed", 2),
        ("app", "app", "TableDoesNotExist", 1),
        ("app", "app", "UniqueConstraintViolation", 2),
        ("app", "app", "postgres", 1),
        ("app", "ek_ghost", "AuthenticationFailed", 1),
        ("ek_nope", "app", "DatabaseDoesNotExist", 1),
        ("other", "app", "TableDoesNotExist", 1),
        ("other", "md5user", "AuthenticationFailed", 1),
    ]
    assert _show_errors(p) == rows, "SHOW ERRORS counted itself"


# ---- the log ------------------------------------------------------------------------------------

@pgtide_only
def test_no_password_in_the_log(pgtide, pg):
    right = h.PG_PASSWORDS["secretuser"]
    wrong = "ek-Wrong-Secret-4711"
    p = start(pgtide, {"auth_type": "plain", "verbose": 2, "log_connections": 1,
                       "log_disconnections": 1, "log_pooler_errors": 1},
              userlist=userlist(pgtide, [("secretuser", right)]))
    for _ in range(2):
        with p.raw() as c:  # cleartext password messages
            assert c.login("secretuser", right, "app").ok
            assert c.query("select 1").status == "I"
        with p.raw() as c:
            res = c.login("secretuser", wrong, "app")
            assert res.error is not None and res.error.sqlstate == "28P01"
    with p.connect("secretuser", right, "app") as c:
        c.execute("select 1")
    with pytest.raises(psycopg.OperationalError):
        p.connect("secretuser", wrong, "app")
    p.wait_log(r"secretuser")
    assert p.stop() == 0
    out = p.all_output()
    for secret in (right, wrong):
        assert secret not in out, f"a password is in pgtide's output:\n{out[-3000:]}"
