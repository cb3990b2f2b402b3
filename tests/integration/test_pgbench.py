"""pgbench through pgtide: initialisation (COPY, DDL, VACUUM) and short runs with the simple and
extended protocols, with zero failed transactions."""

import pytest

import pgtide_harness as h


@pytest.mark.deadline(180)
def test_pgbench_init_and_runs(pgtide, pg, pgbench_tables):
    p = pgtide.start({"default_pool_size": 8})
    r = h.pgbench(p.host, p.port, "-i", "-s", "1")
    assert r.returncode == 0, r.stderr
    assert pg.admin_value("select count(*) from pgbench_accounts", db="app") == 100000
    for mode in ("simple", "extended"):
        r = h.pgbench(p.host, p.port, "-c", "4", "-j", "2", "-t", "200", "-M", mode)
        assert r.returncode == 0, f"-M {mode}:\n{r.stdout}\n{r.stderr}"
        done, wanted, failed = h.pgbench_summary(r)
        assert (done, wanted, failed) == (800, 800, 0), f"-M {mode}:\n{r.stdout}\n{r.stderr}"
    # pgbench empties pgbench_history before each run: the last run's rows are there
    assert pg.admin_value("select count(*) from pgbench_history", db="app") == 800


@pytest.mark.deadline(120)
def test_pgbench_connection_per_transaction(pgtide, pg, pgbench_tables):
    p = pgtide.start({"default_pool_size": 4})
    assert h.pgbench(p.host, p.port, "-i", "-s", "1", "-I", "dtg").returncode == 0
    r = h.pgbench(p.host, p.port, "-S", "-C", "-c", "4", "-j", "2", "-t", "50", "-M", "extended")
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}"
    assert h.pgbench_summary(r) == (200, 200, 0), r.stdout
    # the pool kept its servers: PostgreSQL never saw 200 connections
    assert pg.count_backends(user="app", db="app") <= 4
