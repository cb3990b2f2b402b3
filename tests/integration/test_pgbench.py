"""pgbench through pgtide: initialisation (COPY, DDL, VACUUM) and short runs with the simple and
extended protocols, with zero failed transactions."""

import os
import re
import subprocess

import pytest

import pgtide_harness as h


def pgbench(p, *args, timeout=120):
    env = dict(os.environ, PGPASSWORD="app")
    cmd = [h.pg_tool("pgbench"), "-h", p.host, "-p", str(p.port), "-U", "app"] + \
        list(args) + ["app"]
    try:
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"pgbench {args} did not finish in {timeout}s: {e.stdout} {e.stderr}")
    return r


def processed(r):
    m = re.search(r"number of transactions actually processed: (\d+)/(\d+)", r.stdout)
    assert m, f"no summary in pgbench output:\n{r.stdout}\n{r.stderr}"
    failed = re.search(r"number of failed transactions: (\d+)", r.stdout)
    return int(m[1]), int(m[2]), int(failed[1]) if failed else 0


@pytest.fixture
def pgbench_tables(pg):
    yield
    pg.admin_sql("DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_history, "
                 "pgbench_tellers", db="app")


@pytest.mark.deadline(180)
def test_pgbench_init_and_runs(pgtide, pg, pgbench_tables):
    p = pgtide.start({"default_pool_size": 8})
    r = pgbench(p, "-i", "-s", "1")
    assert r.returncode == 0, r.stderr
    assert pg.admin_value("select count(*) from pgbench_accounts", db="app") == 100000
    for mode in ("simple", "extended"):
        r = pgbench(p, "-c", "4", "-j", "2", "-t", "200", "-M", mode)
        assert r.returncode == 0, f"-M {mode}:\n{r.stdout}\n{r.stderr}"
        done, wanted, failed = processed(r)
        assert (done, wanted, failed) == (800, 800, 0), f"-M {mode}:\n{r.stdout}\n{r.stderr}"
    # pgbench empties pgbench_history before each run: the last run's rows are there
    assert pg.admin_value("select count(*) from pgbench_history", db="app") == 800


@pytest.mark.deadline(120)
def test_pgbench_connection_per_transaction(pgtide, pg, pgbench_tables):
    p = pgtide.start({"default_pool_size": 4})
    assert pgbench(p, "-i", "-s", "1", "-I", "dtg").returncode == 0
    r = pgbench(p, "-S", "-C", "-c", "4", "-j", "2", "-t", "50", "-M", "extended")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert processed(r) == (200, 200, 0), r.stdout
    # the pool kept its servers: PostgreSQL never saw 200 connections
    assert pg.count_backends(user="app", db="app") <= 4
