#!/usr/bin/python3
"""The soak driver of scripts/soak: N clients (asyncio, psycopg 3) through pgtide for S seconds,
a mix of committed transactions, errors, cancels and clients that vanish, while a thread samples
pgtide's RSS and open descriptors. At the end it checks that both are flat after warm-up, that
every id a client saw committed is in the table and that no id a client saw fail is (a COMMIT
whose reply never came is "unknown", allowed either way), and that no server was left in a
transaction. Exits 1 on any violation.

  soak.py PGTIDE_PID PGTIDE_PORT PG_SOCKET_DIR PG_PORT CLIENTS SECONDS [JSON_OUT]
"""

import asyncio
import json
import os
import random
import resource
import socket
import struct
import sys
import threading
import time

import psycopg
from psycopg import errors as pgerr

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from benchlib import rss_kib  # noqa: E402

# weights of the actions each client picks from, one at a time
ACTIONS = {
    "txn": 40,              # BEGIN; INSERT; COMMIT
    "autocommit": 15,       # INSERT outside a transaction block
    "savepoint": 8,         # BEGIN; INSERT a; SAVEPOINT; INSERT b twice (23505); ROLLBACK TO; COMMIT
    "unique": 8,            # BEGIN; INSERT x twice (23505); ROLLBACK
    "divzero": 8,           # SELECT 1/0, alone or inside a transaction with an INSERT
    "cancel": 4,            # BEGIN; INSERT; pg_sleep cancelled by a CancelRequest (57014); ROLLBACK
    "vanish": 5,            # leave without Terminate: idle in transaction, mid-query, mid-COMMIT
    "reconnect": 2,         # a clean close and a new connection
}


# SOAK_MIX="vanish=0,cancel=10" changes the weights (to find which action a problem follows)
for _kv in filter(None, os.environ.get("SOAK_MIX", "").split(",")):
    _k, _, _v = _kv.partition("=")
    if _k not in ACTIONS:
        sys.exit(f"SOAK_MIX: unknown action {_k} (one of {', '.join(ACTIONS)})")
    ACTIONS[_k] = int(_v)


class Stats:
    def __init__(self):
        self.n = {k: 0 for k in ("commits", "rollbacks", "unique_violation", "division_by_zero",
                                 "cancels", "cancel_retries", "cancel_missed", "vanished_idle_in_txn",
                                 "vanished_mid_query", "vanished_mid_commit", "reconnects",
                                 "connects", "unexpected")}
        self.committed = set()     # ids whose COMMIT (or autocommit INSERT) succeeded
        self.failed = set()        # ids whose transaction a client saw fail or roll back
        self.unknown = set()       # ids whose COMMIT was sent without the reply being read
        self.samples_unexpected = []

    def unexpected(self, what, e):
        self.n["unexpected"] += 1
        if len(self.samples_unexpected) < 20:
            self.samples_unexpected.append(f"{what}: {type(e).__name__}: {e}".strip())


def vanish(conn, rst):
    """Drops the client's TCP connection under libpq, with no Terminate: the socket is closed
    (FIN, or RST with SO_LINGER 0) by putting an unconnected socket on its descriptor, so the
    Terminate that libpq writes when the connection is closed goes nowhere."""
    fd = conn.pgconn.socket
    if rst:
        s = socket.socket(fileno=os.dup(fd))
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        s.close()
    dummy = socket.socket()
    os.dup2(dummy.fileno(), fd)
    dummy.close()


async def run_client(i, dsn, deadline, st):
    rnd = random.Random(i * 7919 + int(time.time()))
    seq = 0
    conn = None
    names, weights = list(ACTIONS), list(ACTIONS.values())

    def next_id():
        nonlocal seq
        seq += 1
        return i * 100_000_000 + seq

    while time.monotonic() < deadline:
        if conn is None:
            try:
                conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
                st.n["connects"] += 1
            except Exception as e:  # noqa: BLE001
                st.unexpected("connect", e)
                await asyncio.sleep(1)
                continue
        action = rnd.choices(names, weights)[0]
        cur_id = None
        commit_sent = False
        try:
            if action == "txn":
                cur_id = next_id()
                await conn.execute("BEGIN")
                await conn.execute("INSERT INTO soak (id, client) VALUES (%s, %s)", (cur_id, i))
                if rnd.random() < 0.5:
                    await conn.execute("SELECT count(*) FROM soak WHERE client = %s", (i,))
                commit_sent = True
                await conn.execute("COMMIT")
                st.committed.add(cur_id)
                st.n["commits"] += 1
            elif action == "autocommit":
                cur_id = next_id()
                commit_sent = True  # the INSERT is its own transaction
                await conn.execute("INSERT INTO soak (id, client) VALUES (%s, %s)", (cur_id, i))
                st.committed.add(cur_id)
                st.n["commits"] += 1
            elif action == "savepoint":
                a, b = next_id(), next_id()
                cur_id = a
                await conn.execute("BEGIN")
                await conn.execute("INSERT INTO soak (id, client) VALUES (%s, %s)", (a, i))
                await conn.execute("SAVEPOINT s1")
                await conn.execute("INSERT INTO soak (id, client) VALUES (%s, %s)", (b, i))
                try:
                    await conn.execute("INSERT INTO soak (id, client) VALUES (%s, %s)", (b, i))
                    raise AssertionError("duplicate INSERT succeeded")
                except pgerr.UniqueViolation:
                    st.n["unique_violation"] += 1
                st.failed.add(b)
                await conn.execute("ROLLBACK TO SAVEPOINT s1")
                commit_sent = True
                await conn.execute("COMMIT")
                st.committed.add(a)
                st.n["commits"] += 1
            elif action == "unique":
                cur_id = next_id()
                await conn.execute("BEGIN")
                await conn.execute("INSERT INTO soak (id, client) VALUES (%s, %s)", (cur_id, i))
                try:
                    await conn.execute("INSERT INTO soak (id, client) VALUES (%s, %s)", (cur_id, i))
                    raise AssertionError("duplicate INSERT succeeded")
                except pgerr.UniqueViolation:
                    st.n["unique_violation"] += 1
                await conn.execute("ROLLBACK")
                st.failed.add(cur_id)
                st.n["rollbacks"] += 1
            elif action == "divzero":
                if rnd.random() < 0.5:
                    try:
                        await conn.execute("SELECT 1/0")
                        raise AssertionError("1/0 succeeded")
                    except pgerr.DivisionByZero:
                        st.n["division_by_zero"] += 1
                else:
                    cur_id = next_id()
                    await conn.execute("BEGIN")
                    await conn.execute("INSERT INTO soak (id, client) VALUES (%s, %s)", (cur_id, i))
                    try:
                        await conn.execute("SELECT 1/(id - id) FROM soak WHERE id = %s", (cur_id,))
                        raise AssertionError("1/0 succeeded")
                    except pgerr.DivisionByZero:
                        st.n["division_by_zero"] += 1
                    # COMMIT of an aborted transaction is a ROLLBACK
                    await conn.execute("COMMIT")
                    st.failed.add(cur_id)
                    st.n["rollbacks"] += 1
            elif action == "cancel":
                cur_id = next_id()
                await conn.execute("BEGIN")
                await conn.execute("INSERT INTO soak (id, client) VALUES (%s, %s)", (cur_id, i))
                task = asyncio.ensure_future(conn.execute("SELECT pg_sleep(20)"))
                await asyncio.sleep(0.05 + rnd.random() * 0.2)
                # psycopg 3.1's cancel() is PQcancel, blocking: run it off the event loop
                # a CancelRequest that reaches the backend before the query does is ignored
                # (the protocol's own race): try again up to 3 times, 1 s apart
                for attempt in range(4):
                    if attempt:
                        st.n["cancel_retries"] += 1
                    await asyncio.get_running_loop().run_in_executor(None, conn.cancel)
                    done, _ = await asyncio.wait([task], timeout=1.0)
                    if done:
                        break
                try:
                    await asyncio.wait_for(task, 25)
                    st.n["cancel_missed"] += 1
                except pgerr.QueryCanceled:
                    st.n["cancels"] += 1
                await conn.execute("ROLLBACK")
                st.failed.add(cur_id)
                st.n["rollbacks"] += 1
            elif action == "vanish":
                cur_id = next_id()
                await conn.execute("BEGIN")
                await conn.execute("INSERT INTO soak (id, client) VALUES (%s, %s)", (cur_id, i))
                how = rnd.choice(("idle_in_txn", "mid_query", "mid_commit"))
                if how == "mid_query":
                    conn.pgconn.send_query(b"SELECT pg_sleep(2)")
                    conn.pgconn.flush()
                    await asyncio.sleep(rnd.random() * 0.05)
                elif how == "mid_commit":
                    commit_sent = True
                    conn.pgconn.send_query(b"COMMIT")
                    conn.pgconn.flush()
                vanish(conn, rst=rnd.random() < 0.5)
                (st.unknown if how == "mid_commit" else st.failed).add(cur_id)
                cur_id = None
                st.n["vanished_" + how] += 1
                await conn.close()
                conn = None
            elif action == "reconnect":
                await conn.close()
                conn = None
                st.n["reconnects"] += 1
        except Exception as e:  # noqa: BLE001
            st.unexpected(action, e)
            if cur_id is not None:
                (st.unknown if commit_sent else st.failed).add(cur_id)
            try:
                await conn.close()
            except Exception:  # noqa: BLE001
                pass
            conn = None
        await asyncio.sleep(rnd.random() * 0.02)
    if conn is not None:
        try:
            await conn.close()
        except Exception:  # noqa: BLE001
            pass


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def sampler(pid, interval, stop, series, t0):
    while not stop.wait(interval):
        rss, fds = rss_kib(pid), fd_count(pid)
        if rss is None or fds is None:
            series.append((time.monotonic() - t0, None, None))
            return
        with open("/proc/loadavg") as f:
            load = float(f.read().split()[0])
        series.append((round(time.monotonic() - t0, 1), rss, fds, load))


def flat(values, tol_rel, tol_abs):
    """(first-third max, last-third max, ok) of the samples after warm-up."""
    k = len(values) // 3
    if k == 0:
        return None, None, True
    first, last = max(values[:k]), max(values[-k:])
    return first, last, last <= first + max(first * tol_rel, tol_abs)


async def main_async(args):
    pid, port, pgdir, pgport, clients, seconds = args[:6]
    pid, clients, seconds = int(pid), int(clients), int(seconds)
    out = args[6] if len(args) > 6 else None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, clients * 2 + 200))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    admin = f"host={pgdir} port={pgport} user=postgres dbname=app"
    with psycopg.connect(admin, autocommit=True) as c:
        c.execute("CREATE TABLE soak (id bigint PRIMARY KEY, client int NOT NULL, "
                  "at timestamptz NOT NULL DEFAULT now())")
        c.execute("GRANT ALL ON soak TO app")
    dsn = f"host=127.0.0.1 port={port} user=app password=app dbname=app connect_timeout=30"

    st = Stats()
    t0 = time.monotonic()
    fds_before, rss_before = fd_count(pid), rss_kib(pid)
    interval = max(1.0, min(5.0, seconds / 60))
    series, stop = [], threading.Event()
    th = threading.Thread(target=sampler, args=(pid, interval, stop, series, t0), daemon=True)
    th.start()
    loop = asyncio.get_running_loop()
    loop.set_default_executor(__import__("concurrent.futures").futures.ThreadPoolExecutor(32))
    deadline = t0 + seconds

    async def staggered(i):
        # spread the logins over the first seconds rather than 1,000 at once
        await asyncio.sleep(min(5.0, seconds / 10) * i / clients)
        await run_client(i, dsn, deadline, st)

    tasks = [asyncio.ensure_future(staggered(i)) for i in range(clients)]
    done, pending = await asyncio.wait(tasks, timeout=seconds + 120)
    for t in pending:
        t.cancel()
        st.unexpected("client", RuntimeError("client did not finish within 120 s of the end"))
    stop.set()
    th.join()
    elapsed = time.monotonic() - t0

    # after the clients: the table against what the clients saw, and the servers' state
    problems = []
    time.sleep(3)
    with psycopg.connect(admin, autocommit=True) as c:
        present = {r[0] for r in c.execute("SELECT id FROM soak")}
        in_txn = c.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app' AND "
                           "state LIKE 'idle in transaction%'").fetchone()[0]
        backends = c.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = 'app'") \
            .fetchone()[0]
    lost = st.committed - present
    phantom_failed = present & st.failed
    phantom_other = present - st.committed - st.unknown - st.failed
    unknown_present = len(st.unknown & present)
    fds_after = fd_count(pid)

    warm = max(10.0, seconds * 0.1)
    post = [s for s in series if s[1] is not None and s[0] >= warm]
    rss_vals = [s[1] for s in post]
    fd_vals = [s[2] for s in post]
    rss_first, rss_last, rss_ok = flat(rss_vals, 0.10, 4096)
    fd_first, fd_last, fd_ok = flat(fd_vals, 0.05, 25)
    loads = [s[3] for s in series if s[1] is not None]

    if any(s[1] is None for s in series) or fds_after is None:
        problems.append("pgtide exited during the soak")
    if lost:
        problems.append(f"{len(lost)} committed ids missing (e.g. {sorted(lost)[:5]})")
    if phantom_failed:
        problems.append(f"{len(phantom_failed)} ids present that a client saw fail or roll back "
                        f"(e.g. {sorted(phantom_failed)[:5]})")
    if phantom_other:
        problems.append(f"{len(phantom_other)} ids present that no client recorded")
    if in_txn:
        problems.append(f"{in_txn} server connections left idle in transaction")
    if st.n["unexpected"]:
        problems.append(f"{st.n['unexpected']} unexpected errors")
    if st.n["cancel_missed"]:
        problems.append(f"{st.n['cancel_missed']} cancel requests did not cancel")
    if not rss_ok:
        problems.append(f"RSS grew: first-third max {rss_first} KiB, last-third max {rss_last} KiB")
    if not fd_ok:
        problems.append(f"open fds grew: first-third max {fd_first}, last-third max {fd_last}")
    # with every client gone, pgtide holds its listeners, the pool's servers and little else
    if fds_after is not None and fds_before is not None and fds_after > fds_before + 20 + 5:
        problems.append(f"{fds_after} fds open after the clients left ({fds_before} before; "
                        f"pool size 20)")

    res = {
        "clients": clients, "seconds": seconds, "elapsed_s": round(elapsed, 1),
        "counts": st.n, "ids_committed": len(st.committed), "ids_failed": len(st.failed),
        "ids_unknown": len(st.unknown), "unknown_present": unknown_present,
        "rows": len(present), "lost_commits": len(lost),
        "phantoms": len(phantom_failed) + len(phantom_other),
        "idle_in_txn_after": in_txn, "app_backends_after": backends,
        "rss_kib": {"before": rss_before, "first": rss_vals[0] if rss_vals else None,
                    "end": rss_vals[-1] if rss_vals else None,
                    "max": max(rss_vals) if rss_vals else None,
                    "first_third_max": rss_first, "last_third_max": rss_last},
        "fds": {"before": fds_before, "first": fd_vals[0] if fd_vals else None,
                "end": fd_vals[-1] if fd_vals else None, "max": max(fd_vals) if fd_vals else None,
                "first_third_max": fd_first, "last_third_max": fd_last, "after": fds_after},
        "load1": {"min": min(loads) if loads else None, "max": max(loads) if loads else None,
                  "mean": round(sum(loads) / len(loads), 2) if loads else None},
        "sample_interval_s": interval, "warmup_s": warm, "samples": len(series),
        "series": series, "unexpected_samples": st.samples_unexpected, "problems": problems,
    }
    if out:
        with open(out, "w") as f:
            json.dump(res, f)
    tps = st.n["commits"] / elapsed if elapsed else 0
    print(f"clients {clients}, {elapsed:.0f} s; commits {st.n['commits']} ({tps:.0f}/s), "
          f"rollbacks {st.n['rollbacks']}")
    print("counts: " + ", ".join(f"{k} {v}" for k, v in st.n.items()))
    print(f"ids: committed {len(st.committed)}, failed/rolled back {len(st.failed)}, unknown "
          f"{len(st.unknown)} ({unknown_present} of them present); rows {len(present)}; "
          f"lost commits {len(lost)}; phantoms {res['phantoms']}; idle in transaction after "
          f"{in_txn}")
    r, fdd = res["rss_kib"], res["fds"]
    print(f"RSS KiB: before {r['before']}, after warm-up {r['first']}, end {r['end']}, "
          f"max {r['max']}; first-third max {rss_first}, last-third max {rss_last}")
    print(f"open fds: before {fdd['before']}, after warm-up {fdd['first']}, end {fdd['end']}, "
          f"max {fdd['max']}; first-third max {fd_first}, last-third max {fd_last}; "
          f"after the clients left {fds_after}")
    print(f"load average (1 min) during the run: {res['load1']['min']}-{res['load1']['max']}, "
          f"mean {res['load1']['mean']} ({os.cpu_count()} CPUs); {len(series)} samples every "
          f"{interval:.0f} s, warm-up {warm:.0f} s")
    step = max(1, len(series) // 12)
    print("series (s: RSS KiB / fds): " + ", ".join(
        f"{s[0]:.0f}: {s[1]}/{s[2]}" for s in series[::step] if s[1] is not None))
    for u in st.samples_unexpected:
        print("unexpected: " + u)
    for p in problems:
        print("VIOLATION: " + p)
    print("soak: " + ("FAILED" if problems else "ok"))
    return 1 if problems else 0


def main():
    if len(sys.argv) < 7:
        print(__doc__)
        sys.exit(2)
    sys.exit(asyncio.run(main_async(sys.argv[1:])))


if __name__ == "__main__":
    main()
