#!/usr/bin/python3
"""Helpers for scripts/bench: free ports, pgbench / callgrind / strace output parsing, the idle-
client memory probe, and the final report. Results are JSON lines appended to one file.

  benchlib.py freeport START [TAKEN...]
  benchlib.py pgbench RESULTS LOG key=value...        parse one pgbench run and record it
  benchlib.py callgrind RESULTS FILE key=value...     record total Ir (and Ir per object)
  benchlib.py strace RESULTS FILE key=value...        record strace -c call counts
  benchlib.py idle RESULTS PID HOST PORT USER PASSWORD DB N AUTH TIMEOUT key=value...
  benchlib.py note RESULTS key=value...               record anything else (problems, ...)
  benchlib.py report RESULTS META [--out FILE]        print the tables (markdown)
"""

import asyncio
import hashlib
import json
import os
import re
import resource
import socket
import statistics
import struct
import sys
import time


def kv(args):
    out = {}
    for a in args:
        k, _, v = a.partition("=")
        try:
            v = int(v)
        except ValueError:
            pass
        out[k] = v
    return out


def append(results, rec):
    with open(results, "a") as f:
        f.write(json.dumps(rec) + "\n")


# ---------------------------------------------------------------------------------------------
# free port

def freeport(start, taken):
    p = start
    while True:
        if str(p) not in taken:
            s = socket.socket()
            try:
                s.bind(("127.0.0.1", p))
                s.close()
                return p
            except OSError:
                pass
            finally:
                s.close()
        p += 1


# ---------------------------------------------------------------------------------------------
# pgbench

def parse_pgbench(text):
    r = {"tps": None, "failed": None, "processed": None, "aborted": False, "errors": []}
    m = re.search(r"^tps = ([0-9.]+) \((including reconnection times|without initial "
                  r"connection time)\)", text, re.M)
    if m:
        r["tps"] = float(m[1])
        r["tps_kind"] = m[2]
    m = re.search(r"number of failed transactions: (\d+)", text)
    if m:
        r["failed"] = int(m[1])
    m = re.search(r"number of transactions actually processed: (\d+)", text)
    if m:
        r["processed"] = int(m[1])
    if "Run was aborted" in text or re.search(r"client \d+ aborted|aborted in command", text):
        r["aborted"] = True
    for line in text.splitlines():
        if ("error" in line.lower() or "FATAL" in line) and "Run was aborted" not in line:
            line = line.strip()
            if line not in r["errors"]:
                r["errors"].append(line)
    r["errors"] = r["errors"][:5]
    return r


def cmd_pgbench(results, log, extra):
    rec = kv(extra)
    text = open(log, errors="replace").read()
    p = parse_pgbench(text)
    rc = rec.get("rc", 0)
    if rc == 124 or rc == 137:
        status = "timeout"
    elif p["aborted"] or rc != 0 or p["tps"] is None:
        status = "fails"
    else:
        status = "ok"
    rec.update(kind="tps", tps=p["tps"] if status == "ok" else None, failed=p["failed"],
               processed=p["processed"], status=status, errors=p["errors"], log=log)
    append(results, rec)
    shown = f"{p['tps']:.0f} tps" if status == "ok" and p["tps"] is not None else status.upper()
    err = f"  [{p['errors'][0]}]" if status != "ok" and p["errors"] else ""
    print(f"{shown}, failed={p['failed']}{err}")


# ---------------------------------------------------------------------------------------------
# callgrind: totals, and self cost per object (ELF file) from the profile body

def callgrind_parse(path):
    total = None
    per_ob = {}
    names = {"ob": {}, "fl": {}, "fn": {}}
    ob = "???"
    in_call = False
    with open(path, errors="replace") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            c = line[0]
            if c.isdigit() or c in "+-*":
                parts = line.split()
                if in_call:
                    in_call = False  # the inclusive cost of a call: not self cost
                    continue
                if len(parts) >= 2:
                    per_ob[ob] = per_ob.get(ob, 0) + int(parts[1])
                continue
            if line.startswith("totals:") or line.startswith("summary:"):
                v = int(line.split()[1])
                if line.startswith("totals:") or total is None:
                    total = v
                continue
            if line.startswith("calls="):
                in_call = True
                continue
            key, _, val = line.partition("=")
            if key == "ob":
                ob = compressed(names["ob"], val)
            elif key in ("cob",):
                compressed(names["ob"], val)
            elif key in ("fl", "fi", "fe", "cfi", "cfl"):
                compressed(names["fl"], val)
            elif key in ("fn", "cfn"):
                compressed(names["fn"], val)
    return total, per_ob


def compressed(table, val):
    m = re.match(r"\((\d+)\)(?: (.*))?$", val)
    if not m:
        return val
    if m[2] is not None:
        table[m[1]] = m[2]
        return m[2]
    return table.get(m[1], val)


def short_object(name):
    base = os.path.basename(name)
    for key, label in (("pgtide", "pgtide"), ("pgbouncer", "pgbouncer"), ("libevent", "libevent"),
                       ("libc.so", "libc"), ("libssl", "openssl"), ("libcrypto", "openssl"),
                       ("libpq", "libpq"), ("ld-linux", "ld.so"), ("libcares", "c-ares"),
                       ("vgpreload", "valgrind")):
        if key in base:
            return label
    return "other"


def cmd_callgrind(results, path, extra):
    rec = kv(extra)
    total, per_ob = callgrind_parse(path)
    grouped = {}
    for ob, v in per_ob.items():
        k = short_object(ob)
        grouped[k] = grouped.get(k, 0) + v
    rec.update(kind="cpu", ir=total, objects=grouped)
    append(results, rec)
    print(f"Ir={total}")


# ---------------------------------------------------------------------------------------------
# strace -c

def cmd_strace(results, path, extra):
    rec = kv(extra)
    calls = {}
    total = None
    for line in open(path, errors="replace"):
        parts = line.split()
        if not parts or parts[0].startswith("%") or parts[0].startswith("-"):
            continue
        if parts[-1] == "total":
            nums = [p for p in parts[:-1]]
            # % time, seconds, usecs/call (may be empty), calls, errors (may be empty)
            ints = [int(x) for x in nums if x.isdigit()]
            total = ints[0] if ints else None
            continue
        if len(parts) >= 5 and re.match(r"[0-9.]+$", parts[0]):
            name = parts[-1]
            n = int(parts[3])
            calls[name] = calls.get(name, 0) + n
    if total is None or total != sum(calls.values()):
        total = sum(calls.values())
    rec.update(kind="sys", total=total, calls=calls)
    append(results, rec)
    print(f"syscalls={total}")


# ---------------------------------------------------------------------------------------------
# idle clients: log N clients in (trust or md5), keep them, measure the pooler's RSS

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def startup_packet(user, db):
    body = struct.pack("!i", 196608)
    for k, v in (("user", user), ("database", db), ("application_name", "bench-idle")):
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!i", len(body) + 4) + body


async def read_msg(reader):
    hdr = await reader.readexactly(5)
    t, n = hdr[:1], struct.unpack("!i", hdr[1:])[0]
    return t, await reader.readexactly(n - 4)


async def login(host, port, user, password, db, query=False):
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(startup_packet(user, db))
    while True:
        t, body = await read_msg(reader)
        if t == b"R":
            code = struct.unpack("!i", body[:4])[0]
            if code == 5:
                salt = body[4:8]
                inner = hashlib.md5((password + user).encode()).hexdigest()
                outer = "md5" + hashlib.md5(inner.encode() + salt).hexdigest()
                pw = outer.encode() + b"\0"
                writer.write(b"p" + struct.pack("!i", len(pw) + 4) + pw)
            elif code == 3:
                pw = password.encode() + b"\0"
                writer.write(b"p" + struct.pack("!i", len(pw) + 4) + pw)
            elif code != 0:
                raise RuntimeError(f"unsupported auth request {code}")
        elif t == b"E":
            raise RuntimeError("ErrorResponse: " + body.replace(b"\0", b" ").decode(errors="replace"))
        elif t == b"Z":
            break
    if query:
        q = b"SELECT 1\0"
        writer.write(b"Q" + struct.pack("!i", len(q) + 4) + q)
        while True:
            t, body = await read_msg(reader)
            if t == b"E":
                raise RuntimeError("ErrorResponse: " + body.decode(errors="replace"))
            if t == b"Z":
                break
    return reader, writer


async def idle_main(pid, host, port, user, password, db, n, timeout):
    deadline = time.monotonic() + timeout
    out = {"clients": n}
    # one client that runs a query first: the pool and its server connection exist before
    # the baseline RSS is read
    first = await asyncio.wait_for(login(host, port, user, password, db, query=True), 10)
    await asyncio.sleep(0.5)
    out["rss0"] = rss_kib(pid)
    conns = [first]
    errors = []
    sem = asyncio.Semaphore(100)

    async def one():
        async with sem:
            try:
                conns.append(await login(host, port, user, password, db))
            except Exception as e:  # noqa: BLE001 - every failure is reported, not raised
                if len(errors) < 5:
                    errors.append(repr(e))
                else:
                    errors.append(None)

    tasks = [asyncio.ensure_future(one()) for _ in range(n - 1)]
    left = max(1.0, deadline - time.monotonic() - 8)
    done, pending = await asyncio.wait(tasks, timeout=left)
    for t in pending:
        t.cancel()
    out["connected"] = len(conns)
    out["errors"] = len(errors) + len(pending)
    out["error_samples"] = [e for e in errors if e][:5]
    if pending:
        out["error_samples"].append(f"{len(pending)} logins still pending at the time limit")
    await asyncio.sleep(1.0)
    out["rss1"] = rss_kib(pid)
    out["login_seconds"] = round(timeout - (deadline - time.monotonic()), 1)
    for _, w in conns:
        try:
            w.write(b"X\0\0\0\4")
            w.close()
        except Exception:  # noqa: BLE001
            pass
    await asyncio.sleep(2.0)
    out["rss2"] = rss_kib(pid)
    return out


def cmd_idle(results, pid, host, port, user, password, db, n, auth, timeout, extra):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, int(n) + 1000) if hard != resource.RLIM_INFINITY else int(n) + 1000
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
    rec = kv(extra)
    try:
        out = asyncio.run(idle_main(int(pid), host, int(port), user, password, db, int(n),
                                    float(timeout)))
    except Exception as e:  # noqa: BLE001
        out = {"clients": int(n), "connected": 0, "errors": int(n), "error_samples": [repr(e)]}
    rec.update(kind="mem", auth=auth, **out)
    append(results, rec)
    print(json.dumps(out))


# ---------------------------------------------------------------------------------------------
# report

TARGETS = ("direct", "pgbouncer", "pgtide")
WORKLOADS = [
    ("select-simple", "select-only, `-S -M simple`"),
    ("select-extended", "select-only, `-S -M extended`"),
    ("tpcb", "tpcb-like (default script, `-M simple`)"),
    ("select-prepared", "select-only, `-S -M prepared`"),
    ("connect", "select-only, new connection per txn (`-S -C`)"),
    ("connect-trust", "connect + SELECT + disconnect (`-S -C`), auth trust"),
    ("select-tls", "select-only over TLS from the clients (`-S -M simple`, `PGSSLMODE=require`)"),
]
WNAME = dict(WORKLOADS)


def fmt_int(v):
    return "–" if v is None else f"{v:,.0f}"


def fmt_ratio(a, b, suffix=""):
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}{suffix}"


def report(results, meta, out):
    recs = [json.loads(l) for l in open(results) if l.strip()]
    m = json.load(open(meta))
    L = []
    L.append(f"Command: `{m['command']}`  ")
    L.append(f"Date: {m['date']}  ")
    L.append(f"Machine: {m['nproc']} cores, {m['cpu']}, {m['mem']}, Linux {m['kernel']}  ")
    L.append(f"Versions: {m['versions']}  ")
    L.append(f"Settings: {m['settings']}")
    L.append("")

    # ---- throughput
    tps = [r for r in recs if r["kind"] == "tps"]
    L.append("### Throughput (pgbench TPS, median of %s round(s))" % m["rounds"])
    L.append("")
    L.append("TPS is pgbench's `tps = ... (without initial connection time)`, except the `-C` rows, "
             "which use `tps = ... (including reconnection times)`: there connecting is the work. "
             "`fails` = pgbench aborted (error below). Failed txns: pgbench's "
             "`number of failed transactions`, summed over rounds (direct / PgBouncer / pgtide).")
    L.append("")
    L.append("| workload | clients | direct TPS | PgBouncer TPS | pgtide TPS | pgtide / PgBouncer "
             "| pgtide / direct | PgBouncer / direct | failed txns |")
    L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    problems = []
    for w, _ in WORKLOADS:
        rows = sorted({r["clients"] for r in tps if r["workload"] == w})
        for c in rows:
            cell, med, fails = {}, {}, {}
            for t in TARGETS:
                rs = [r for r in tps if r["workload"] == w and r["clients"] == c and r["target"] == t]
                if not rs:
                    cell[t], med[t], fails[t] = "skipped" if t == "direct" else "–", None, "–"
                    continue
                oks = [r["tps"] for r in rs if r["status"] == "ok" and r["tps"] is not None]
                bad = [r for r in rs if r["status"] != "ok"]
                fsum = sum((r["failed"] or 0) for r in rs)
                fails[t] = str(fsum)
                if bad:
                    for r in bad:
                        problems.append((w, c, t, r))
                if oks and not bad:
                    med[t] = statistics.median(oks)
                    cell[t] = fmt_int(med[t])
                elif oks:
                    med[t] = None
                    cell[t] = f"fails in {len(bad)} of {len(rs)} rounds"
                else:
                    med[t] = None
                    cell[t] = "fails" if bad[0]["status"] == "fails" else bad[0]["status"]
            L.append(f"| {WNAME[w]} | {c} | {cell['direct']} | {cell['pgbouncer']} | "
                     f"{cell['pgtide']} | {fmt_ratio(med['pgtide'], med['pgbouncer'])} | "
                     f"{fmt_ratio(med['pgtide'], med['direct'])} | "
                     f"{fmt_ratio(med['pgbouncer'], med['direct'])} | "
                     f"{fails['direct']} / {fails['pgbouncer']} / {fails['pgtide']} |")
    L.append("")
    if problems:
        L.append("Runs that failed (distinct error texts, client numbers left out):")
        L.append("")
        groups = {}
        for w, c, t, r in problems:
            g = groups.setdefault((w, c, t), {"rounds": [], "errors": [], "status": set()})
            g["rounds"].append(str(r.get("round")))
            g["status"].add(r["status"])
            for e in r.get("errors") or []:
                e = re.sub(r"^(pgbench: ?)+(error: )?", "", e.strip())
                e = re.sub(r"client \d+ ", "client N ", e)
                if e and e not in g["errors"] and "pgbench:" not in e:
                    g["errors"].append(e)
        for (w, c, t), g in groups.items():
            errs = "; ".join(f"`{e[:160]}`" for e in g["errors"][:3]) or "(no error text)"
            L.append(f"- {WNAME[w]}, {c} clients, {t}, round(s) {', '.join(g['rounds'])} "
                     f"({'/'.join(sorted(g['status']))}): {errs}")
        L.append("")

    # ---- per-round raw values when there is more than one round
    if int(m["rounds"]) > 1:
        L.append("<details><summary>Every round's TPS</summary>")
        L.append("")
        L.append("| workload | clients | target | TPS per round |")
        L.append("| --- | ---: | --- | --- |")
        for w, _ in WORKLOADS:
            for c in sorted({r["clients"] for r in tps if r["workload"] == w}):
                for t in TARGETS:
                    rs = sorted((r for r in tps if r["workload"] == w and r["clients"] == c
                                 and r["target"] == t), key=lambda r: r["round"])
                    if rs:
                        vals = ", ".join(fmt_int(r["tps"]) if r["status"] == "ok" else r["status"]
                                         for r in rs)
                        L.append(f"| {w} | {c} | {t} | {vals} |")
        L.append("")
        L.append("</details>")
        L.append("")

    # ---- CPU
    cpu = [r for r in recs if r["kind"] == "cpu"]
    if cpu:
        L.append("### CPU: instructions per transaction in the pooler (callgrind)")
        L.append("")
        L.append("(Ir(N2) − Ir(N1)) / (N2 − N1) over two runs of the pooler under "
                 "`valgrind --tool=callgrind`, 1 pgbench client, `-t N1` and `-t N2` transactions "
                 f"(N1={m['n1']}, N2={m['n2']}): start-up, log-in and shut-down cancel out. User-space "
                 "instructions only (the kernel's share is in the syscall table).")
        L.append("")
        L.append("| workload | PgBouncer instr/txn | pgtide instr/txn | pgtide / PgBouncer |")
        L.append("| --- | ---: | ---: | ---: |")
        per = {}
        for w in ("select-simple", "select-extended", "tpcb", "connect", "connect-trust",
                  "select-tls"):
            for p in ("pgbouncer", "pgtide"):
                rs = {r["n"]: r for r in cpu if r["workload"] == w and r["pooler"] == p}
                a, b = rs.get(m["n1"]), rs.get(m["n2"])
                if a and b and a.get("ir") is not None and b.get("ir") is not None:
                    d = (b["ir"] - a["ir"]) / (m["n2"] - m["n1"])
                    objs = {}
                    for k in set(a["objects"]) | set(b["objects"]):
                        objs[k] = (b["objects"].get(k, 0) - a["objects"].get(k, 0)) / (
                            m["n2"] - m["n1"])
                    per[(w, p)] = (d, objs)
            if (w, "pgbouncer") in per or (w, "pgtide") in per:
                pb = per.get((w, "pgbouncer"), (None, {}))[0]
                pt = per.get((w, "pgtide"), (None, {}))[0]
                label = WNAME[w]
                if w == "connect":
                    label = f"connect + SELECT + disconnect (`-S -C`), auth {m.get('auth', 'md5')}"
                L.append(f"| {label} | {fmt_int(pb)} | {fmt_int(pt)} | {fmt_ratio(pt, pb)} |")
        L.append("")
        L.append("Where the instructions go (per transaction, self cost by ELF object):")
        L.append("")
        L.append("| workload | pooler | own binary | libevent | libc | openssl | libpq | other |")
        L.append("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        for (w, p), (d, objs) in sorted(per.items()):
            own = objs.get(p, 0)
            other = d - own - sum(objs.get(k, 0) for k in ("libevent", "libc", "openssl", "libpq"))
            L.append(f"| {w} | {p} | {fmt_int(own)} | {fmt_int(objs.get('libevent', 0))} | "
                     f"{fmt_int(objs.get('libc', 0))} | {fmt_int(objs.get('openssl', 0))} | "
                     f"{fmt_int(objs.get('libpq', 0))} | {fmt_int(other)} |")
        L.append("")

    # ---- syscalls
    sysr = [r for r in recs if r["kind"] == "sys"]
    if sysr:
        L.append("### Syscalls per transaction in the pooler (strace -f -c)")
        L.append("")
        L.append("`strace -f -c -p <pooler pid>` attached around two pgbench runs against a warm "
                 "pool; (calls(N2) − calls(N1)) / (N2 − N1) transactions, so client log-ins cancel "
                 "out (except in the `-C` case, where the log-in is the transaction).")
        L.append("")
        L.append("| case | txns (N2 − N1) | PgBouncer syscalls/txn | pgtide syscalls/txn | "
                 "pgtide / PgBouncer |")
        L.append("| --- | ---: | ---: | ---: | ---: |")
        cases = []
        for r in sysr:
            if r["case"] not in cases:
                cases.append(r["case"])
        detail = {}
        for case in cases:
            vals = {}
            for p in ("pgbouncer", "pgtide"):
                rs = sorted((r for r in sysr if r["case"] == case and r["pooler"] == p),
                            key=lambda r: r["n"])
                if len(rs) >= 2:
                    a, b = rs[0], rs[-1]
                    dn = b["n"] - a["n"]
                    vals[p] = (b["total"] - a["total"]) / dn
                    detail[(case, p)] = {k: (b["calls"].get(k, 0) - a["calls"].get(k, 0)) / dn
                                         for k in set(a["calls"]) | set(b["calls"])}
                    txns = dn
            desc = sysr[[r["case"] for r in sysr].index(case)].get("desc", case)
            pb, pt = vals.get("pgbouncer"), vals.get("pgtide")
            L.append(f"| {desc} | {txns} | {'–' if pb is None else f'{pb:.2f}'} | "
                     f"{'–' if pt is None else f'{pt:.2f}'} | {fmt_ratio(pt, pb)} |")
        L.append("")
        L.append("By syscall (per transaction; entries under 0.05 left out):")
        L.append("")
        L.append("| case | pooler | syscalls |")
        L.append("| --- | --- | --- |")
        for (case, p), d in detail.items():
            items = sorted(((v, k) for k, v in d.items() if abs(v) >= 0.05), reverse=True)
            L.append(f"| {case} | {p} | " + ", ".join(f"{k} {v:.2f}" for v, k in items) + " |")
        L.append("")

    # ---- memory
    mem = [r for r in recs if r["kind"] == "mem"]
    if mem:
        L.append("### Memory per idle client")
        L.append("")
        L.append("A fresh pooler; one client logs in and runs `SELECT 1` (so the pool and its server "
                 "connection exist); VmRSS is read (before); then N more clients complete the "
                 "log-in handshake (StartupMessage → ReadyForQuery) and stay idle; VmRSS is read "
                 "again (with N); then all disconnect and VmRSS is read 2 s later (after close).")
        L.append("")
        L.append("| pooler | idle clients logged in | RSS before | RSS with N idle | KiB per idle "
                 "client | RSS after close | failed log-ins |")
        L.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
        per = {}
        for r in mem:
            n = r.get("connected") or 0
            kib = ((r["rss1"] - r["rss0"]) / n) if n and r.get("rss1") and r.get("rss0") else None
            per[r["pooler"]] = kib
            L.append(f"| {r['pooler']} | {n:,} of {r['clients']:,} | {fmt_int(r.get('rss0'))} KiB "
                     f"| {fmt_int(r.get('rss1'))} KiB | "
                     f"{'–' if kib is None else f'{kib:.2f}'} | {fmt_int(r.get('rss2'))} KiB | "
                     f"{r.get('errors', 0)} |")
        L.append("")
        if per.get("pgtide") is not None and per.get("pgbouncer"):
            L.append(f"pgtide / PgBouncer KiB per idle client: "
                     f"{per['pgtide'] / per['pgbouncer']:.2f}")
            L.append("")
        for r in mem:
            if r.get("error_samples"):
                L.append(f"- {r['pooler']} log-in errors: `{'; '.join(r['error_samples'])[:400]}`")
        L.append("")

    notes = [r for r in recs if r["kind"] == "note"]
    if notes:
        L.append("### Pooler problems seen during the run")
        L.append("")
        seen = set()
        for r in notes:
            L.append(f"- {r.get('what', '')}")
            key = r.get("key")
            if key and key in seen:
                L.append("  (same errors as above; details left out)")
                continue
            seen.add(key)
            if r.get("detail"):
                L.append("")
                L.append("  ```")
                for line in str(r["detail"]).splitlines()[-40:]:
                    L.append("  " + line)
                L.append("  ```")
        L.append("")

    text = "\n".join(L)
    print(text)
    if out:
        with open(out, "w") as f:
            f.write(text + "\n")


def main():
    a = sys.argv[1:]
    if not a:
        print(__doc__)
        sys.exit(2)
    cmd = a[0]
    if cmd == "freeport":
        print(freeport(int(a[1]), set(a[2:])))
    elif cmd == "pgbench":
        cmd_pgbench(a[1], a[2], a[3:])
    elif cmd == "callgrind":
        cmd_callgrind(a[1], a[2], a[3:])
    elif cmd == "strace":
        cmd_strace(a[1], a[2], a[3:])
    elif cmd == "idle":
        cmd_idle(*a[1:11], a[11:])
    elif cmd == "note":
        rec = kv(a[2:])
        rec["kind"] = "note"
        if "detail_file" in rec:
            try:
                with open(rec.pop("detail_file"), errors="replace") as f:
                    rec["detail"] = "".join(f.readlines()[-40:])
            except OSError:
                pass
        append(a[1], rec)
    elif cmd == "report":
        out = None
        if "--out" in a:
            out = a[a.index("--out") + 1]
        report(a[1], a[2], out)
    else:
        print(__doc__)
        sys.exit(2)


if __name__ == "__main__":
    main()
