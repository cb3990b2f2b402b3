"""Prisma 7 (@prisma/adapter-pg) and Lucia v2 through pgtide in transaction pooling mode.

Runs the node --test suite in tests/e2e/prisma against a fresh database (`prisma_e2e`, tables
from tests/e2e/prisma/schema.sql, owned by app) with
  DATABASE_URL      through pgtide (pool_mode transaction, default_pool_size 5)
  DIRECT_URL        PostgreSQL itself, same database (the reference for results and errors)
  ADMIN_URL         pgtide's admin console (dbname pgtide, app is in admin_users)
  BAD_PASSWORD_URL  through pgtide, wrong password
  BAD_DB_URL        through pgtide, a database pgtide does not know
The main files run twice (test_prisma_e2e[plain] and [tls]): the tls run gives pgtide
client_tls_sslmode = require and puts sslmode=require in every pgtide URL, as hosted PostgreSQL
users write it; node-postgres then verifies the certificate (its sslmode=require means
verify-full), so NODE_EXTRA_CA_CERTS names the test CA. DIRECT_URL stays plain.
reporting.test.mjs (what the admin console reports) runs in its own test, against its own
pgtide, so no other client disturbs the counters it takes deltas of. statement-names.test.mjs
(the adapter's statementNameGenerator on: named prepared statements through transaction
pooling) runs in its own test too.

scripts/test installs tests/e2e/prisma (npm ci) and generates the client (generate.sh).
"""

import os
import re
import subprocess

import psycopg
import pytest

import pgtide_harness as h

E2E_DIR = os.path.join(h.REPO_ROOT, "tests", "e2e", "prisma")
TEST_DIR = os.path.join(E2E_DIR, "test")
DB = "prisma_e2e"

# The suite's files and how many tests each must pass (no silent skips or lost tests).
MAIN_FILES = {
    "crud.test.mjs": 8,
    "transactions.test.mjs": 12,
    "errors.test.mjs": 11,
    "lucia.test.mjs": 2,
}
REPORTING_FILES = {
    "reporting.test.mjs": 6,
}
STATEMENT_NAME_FILES = {
    "statement-names.test.mjs": 5,
}


def _require_installed():
    if not os.path.isdir(os.path.join(E2E_DIR, "node_modules", "@prisma", "adapter-pg")):
        pytest.skip("tests/e2e/prisma/node_modules is missing: run `npm ci` there "
                    "(scripts/test does)")
    if not os.path.exists(os.path.join(E2E_DIR, "generated", "client", "index.js")):
        pytest.skip("the Prisma client is not generated: run tests/e2e/prisma/generate.sh "
                    "(scripts/test does)")


@pytest.fixture(scope="module")
def prisma_db(pg):
    """A fresh database with the suite's tables, owned by app."""
    pg.admin_sql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")
    pg.admin_sql(f"CREATE DATABASE {DB} OWNER app")
    with open(os.path.join(E2E_DIR, "schema.sql")) as f:
        ddl = f.read()
    with psycopg.connect(pg.dsn(user="app", db=DB), autocommit=True) as c:
        c.execute(ddl)
    yield DB
    pg.admin_sql(f"DROP DATABASE IF EXISTS {DB} WITH (FORCE)")


def _start_pgtide(pgtide, pg, tls=None):
    settings = {
        "pool_mode": "transaction",
        "default_pool_size": 5,
        "max_client_conn": 500,
        "admin_users": "app",
    }
    if tls:
        settings.update(client_tls_sslmode="require", client_tls_key_file=tls.server_key,
                        client_tls_cert_file=tls.server_crt)
    return pgtide.start(settings, databases={DB: f"host=127.0.0.1 port={pg.port} dbname={DB}"})


def _env(p, pg, tls=None):
    """The suite's URLs; with tls (a TlsFiles) every pgtide URL carries sslmode=require."""
    direct = f"postgresql://app:app@{pg.host}:{pg.port}/{DB}"
    q = "?sslmode=require" if tls else ""
    env = dict(
        os.environ,
        DATABASE_URL=p.url("app", "app", DB) + q,
        DIRECT_URL=direct,
        ADMIN_URL=p.url("app", "app", "pgtide") + q,
        BAD_PASSWORD_URL=p.url("app", "not-the-password", DB) + q,
        BAD_DB_URL=p.url("app", "app", "no_such_database") + q,
        # Node's own output must not depend on the environment pytest runs in.
        NODE_OPTIONS="",
        NO_COLOR="1",
    )
    if tls:
        env["NODE_EXTRA_CA_CERTS"] = tls.ca_crt
    return env


def _run_node(node_bin, files, env, p, timeout):
    paths = [os.path.join(TEST_DIR, f) for f in files]
    try:
        r = subprocess.run([node_bin, "--test", "--test-reporter=tap"] + paths, cwd=E2E_DIR,
                           env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"node --test did not finish in {timeout}s:\n{e.stdout}\n{e.stderr}\n"
                    f"{p.diagnostics()}", pytrace=False)
    out = r.stdout + r.stderr
    expected = sum(files.values())
    passed = re.search(r"^# pass (\d+)", out, re.M)
    skipped = re.search(r"^# skipped (\d+)", out, re.M)
    todo = re.search(r"^# todo (\d+)", out, re.M)
    assert r.returncode == 0, f"node tests failed (exit {r.returncode}):\n{out}\n" \
                              f"{p.diagnostics()}"
    assert passed and int(passed[1]) == expected, \
        f"expected {expected} passing tests, got {passed and passed[1]}:\n{out}"
    assert not skipped or int(skipped[1]) == 0, out
    assert not todo or int(todo[1]) == 0, out
    return out


@pytest.mark.deadline(90)
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_prisma_e2e(pgtide, pg, prisma_db, node_bin, tls, tls_files):
    """CRUD and type round trips, transactions, errors (through pgtide and directly), Lucia;
    [tls]: every client of pgtide with sslmode=require (pgtide refuses plain ones)."""
    _require_installed()
    files = tls_files if tls else None
    p = _start_pgtide(pgtide, pg, files)
    _run_node(node_bin, MAIN_FILES, _env(p, pg, files), p, timeout=80)
    if tls:
        logins = re.findall(r"login attempt: db=prisma_e2e user=app tls=(\S+)", p.log())
        assert logins and all(t.startswith("TLSv1.3/") for t in logins), logins[:5]


@pytest.mark.deadline(60)
def test_prisma_reporting(pgtide, pg, prisma_db, node_bin):
    """SHOW CLIENTS / ERRORS / TRANSACTIONS against what a Prisma app did (its own pgtide)."""
    _require_installed()
    if os.environ.get("PGTIDE_TEST_DIRECT") == "1":
        pytest.skip("PGTIDE_TEST_DIRECT=1: PostgreSQL has no admin console")
    p = _start_pgtide(pgtide, pg)
    _run_node(node_bin, REPORTING_FILES, _env(p, pg), p, timeout=50)


@pytest.mark.deadline(90)
def test_prisma_statement_names(pgtide, pg, prisma_db, node_bin):
    """The adapter's statementNameGenerator on: every query a named prepared statement, reused
    across pooled transactions (pool 5) by adapter pools of 20, results equal to PostgreSQL's."""
    _require_installed()
    p = _start_pgtide(pgtide, pg)
    _run_node(node_bin, STATEMENT_NAME_FILES, _env(p, pg), p, timeout=80)
