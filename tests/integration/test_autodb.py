"""autodb_idle_timeout: pools made from the "*" entry go once unused for that long."""

import time

import pgtide_harness as h


def names(adm, what):
    return {r["database"] for r in adm.rows(f"SHOW {what}")} if what == "POOLS" else \
        {r["name"] for r in adm.rows(f"SHOW {what}")}


def start(pgtide, pg, **kw):
    base = f"host=127.0.0.1 port={pg.port}"
    return pgtide.start({"admin_users": "app", "server_idle_timeout": 0.3, **kw},
                        databases={"app": f"{base} dbname=app", "*": f"{base} dbname=app"})


def use(p, db):
    with p.connect(dbname=db) as c:
        assert c.execute("select current_database()").fetchone() == ("app",)


def test_unused_autodb_pool_is_removed(pgtide, pg):
    p = start(pgtide, pg, autodb_idle_timeout=1)
    use(p, "auto1")
    use(p, "app")
    with h.AdminConsole(p) as adm:
        assert {"auto1", "app"} <= names(adm, "POOLS")
        assert {"auto1", "app"} <= names(adm, "DATABASES")
        # The server goes after server_idle_timeout, the pool a second after that.
        h.wait_for(lambda: "auto1" not in names(adm, "POOLS"), 15,
                   what="the auto1 pool to be removed")
        assert "auto1" not in names(adm, "DATABASES")
        assert "app" in names(adm, "POOLS")  # a database of its own keeps its pool
        assert "app" in names(adm, "DATABASES")
    p.wait_log(r"auto1.*autodb_idle_timeout reached")
    use(p, "auto1")  # the name works again: a new pool
    with h.AdminConsole(p) as adm:
        assert "auto1" in names(adm, "DATABASES")


def test_autodb_pool_with_a_client_stays(pgtide, pg):
    p = start(pgtide, pg, autodb_idle_timeout=0.5)
    with p.connect(dbname="auto2") as c:
        time.sleep(2.5)  # several janitor rounds past the timeout
        with h.AdminConsole(p) as adm:
            assert "auto2" in names(adm, "POOLS")
        assert c.execute("select 1").fetchone() == (1,)


def test_default_keeps_autodb_pools(pgtide, pg):
    p = start(pgtide, pg)  # autodb_idle_timeout = 3600
    use(p, "auto3")
    with h.AdminConsole(p) as adm:
        h.wait_for(lambda: adm.rows("SHOW SERVERS") == [], 10, what="the server to close")
        time.sleep(1)
        assert "auto3" in names(adm, "DATABASES")
        cfg = {r["key"]: r["value"] for r in adm.rows("SHOW CONFIG")}
        assert cfg["autodb_idle_timeout"] == "3600"
