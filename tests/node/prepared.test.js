// node-postgres named queries ({ name, text, values }: Parse once per connection, then only
// Bind/Execute) through pgtide in transaction pooling mode, more clients than servers.
//
// Which server this runs against:
//   PGTIDE_TX_URL         a pgtide in transaction mode with default_pool_size < 10, if set;
//   PGTIDE_TEST_DIRECT=1  PGTIDE_URL, which is then PostgreSQL itself (the tests' self-check);
//   otherwise             a pgtide this file starts (PGTIDE_BIN, else the repository's ./pgtide
//                         or build/pgtide) with pool_mode = transaction, default_pool_size = 3,
//                         in front of the PostgreSQL that the pgtide at PGTIDE_URL uses: the
//                         one test_node_pg.py starts is in session mode, where a client keeps
//                         its server and named statements need nothing from pgtide.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';

const url = process.env.PGTIDE_URL;
const direct = process.env.PGTIDE_TEST_DIRECT === '1';
const skip = url ? false : 'PGTIDE_URL is not set: start pgtide and point PGTIDE_URL at it';
if (!url) console.log(`# SKIP: ${skip}`);

const POOL_SIZE = 3;
const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

// Promise.all that lets every promise finish before it throws the first rejection (so nothing
// runs on after a test has ended).
async function all(promises) {
  const settled = await Promise.allSettled(promises);
  const bad = settled.find((x) => x.status === 'rejected');
  if (bad) throw bad.reason;
  return settled.map((x) => x.value);
}

function pgtideBin() {
  if (process.env.PGTIDE_BIN) return process.env.PGTIDE_BIN;
  const inTree = path.join(repoRoot, 'pgtide');
  const outOfTree = path.join(repoRoot, 'build', 'pgtide');
  return !fs.existsSync(inTree) && fs.existsSync(outOfTree) ? outOfTree : inTree;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

function canConnect(port) {
  return new Promise((resolve) => {
    const s = net.connect({ host: '127.0.0.1', port }, () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

// A pgtide in transaction mode in front of the PostgreSQL behind `via`; returns { url, stop }.
async function startPgtide(via) {
  const u = new URL(via);
  const probe = new pg.Client({ connectionString: via, connectionTimeoutMillis: 10000 });
  await probe.connect();
  let server;
  try {
    server = (await probe.query(
      'select host(inet_server_addr()) as host, inet_server_port() as port, ' +
      'current_database() as db')).rows[0];
  } finally {
    await probe.end();
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgtide-node-prepared-'));
  const port = await freePort();
  const user = decodeURIComponent(u.username);
  const password = decodeURIComponent(u.password);
  const q = (s) => `"${s.replace(/"/g, '""')}"`;
  fs.writeFileSync(path.join(dir, 'userlist.txt'), `${q(user)} ${q(password)}\n`);
  fs.writeFileSync(path.join(dir, 'pgtide.ini'), [
    '[databases]',
    `${server.db} = host=${server.host} port=${server.port} dbname=${server.db}`,
    '[pgtide]',
    'listen_addr = 127.0.0.1',
    `listen_port = ${port}`,
    'unix_socket_dir =',
    'auth_type = scram-sha-256',
    `auth_file = ${path.join(dir, 'userlist.txt')}`,
    `logfile = ${path.join(dir, 'pgtide.log')}`,
    'pool_mode = transaction',
    `default_pool_size = ${POOL_SIZE}`,
    'max_client_conn = 200',
    '',
  ].join('\n'));
  const stderr = fs.openSync(path.join(dir, 'stderr.txt'), 'w');
  const child = spawn(pgtideBin(), [path.join(dir, 'pgtide.ini')],
    { cwd: dir, stdio: ['ignore', 'ignore', stderr] });
  let exited = null;
  const exitedP = new Promise((resolve) => child.on('exit', (code, sig) => {
    exited = { code, sig };
    resolve(exited);
  }));
  const deadline = Date.now() + 10000;
  while (!(await canConnect(port))) {
    if (exited || Date.now() > deadline) {
      child.kill('SIGKILL');
      const log = fs.readFileSync(path.join(dir, 'stderr.txt'), 'utf8');
      throw new Error(`pgtide (${pgtideBin()}) did not start: ${JSON.stringify(exited)}\n${log}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  const stop = async () => {
    if (!exited) {
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10000);
      await exitedP;
      clearTimeout(t);
    }
    fs.closeSync(stderr);
    fs.rmSync(dir, { recursive: true, force: true });
  };
  const target = new URL(via);
  target.port = String(port);
  target.hostname = '127.0.0.1';
  return { url: target.toString(), stop };
}

describe('node-postgres named queries through transaction pooling', { skip, timeout: 60000 },
  () => {
    let target; // connection string of the pgtide (or PostgreSQL) under test
    let stop = async () => {};

    before(async () => {
      if (process.env.PGTIDE_TX_URL) target = process.env.PGTIDE_TX_URL;
      else if (direct) target = url;
      else ({ url: target, stop } = await startPgtide(url));
    });

    after(async () => {
      await stop();
    });

    const client = async () => {
      const c = new pg.Client({ connectionString: target, connectionTimeoutMillis: 10000 });
      await c.connect();
      return c;
    };

    test('named queries reused across hundreds of pooled transactions, 10 clients', async () => {
      const pool = new pg.Pool({ connectionString: target, max: 10,
        connectionTimeoutMillis: 10000 });
      try {
        const add = (i) => ({ name: 'tide_add', text: 'select $1::int + 1000 as v, ' +
          'pg_backend_pid() as pid', values: [i] });
        const cat = (i) => ({ name: 'tide_cat', text: "select $1::text || '-x' as v, " +
          'pg_backend_pid() as pid', values: [String(i)] });
        // 400 autocommit statements over the pool's 10 connections
        const single = await all(Array.from({ length: 400 }, (_, i) =>
          pool.query(i % 2 ? add(i) : cat(i))));
        single.forEach((r, i) => assert.equal(r.rows[0].v, i % 2 ? i + 1000 : `${i}-x`));
        // 100 explicit transactions, each using both statements twice
        const txs = await all(Array.from({ length: 100 }, async (_, i) => {
          const c = await pool.connect();
          try {
            await c.query('BEGIN');
            const rows = [];
            for (const q of [add(i), cat(i), add(i + 1), cat(i + 1)]) {
              rows.push((await c.query(q)).rows[0]);
            }
            await c.query('COMMIT');
            return rows;
          } finally {
            c.release();
          }
        }));
        txs.forEach((rows, i) => {
          assert.deepEqual(rows.map((r) => r.v), [i + 1000, `${i}-x`, i + 1001, `${i + 1}-x`]);
          assert.equal(new Set(rows.map((r) => r.pid)).size, 1, 'one server per transaction');
        });
        assert.equal(pool.totalCount, 10, 'the pool opened 10 connections');
        const pids = new Set([...single.map((r) => r.rows[0].pid),
          ...txs.flat().map((r) => r.pid)]);
        if (!direct) {
          assert.ok(pids.size >= 2 && pids.size <= POOL_SIZE,
            `10 clients ran on ${pids.size} servers (pool size ${POOL_SIZE})`);
        }
      } finally {
        await pool.end();
      }
    });

    test('the same name with different SQL in two clients', async () => {
      const a = await client();
      const b = await client();
      try {
        const qa = (i) => ({ name: 'tide_same', text: 'select $1::int * 2 as v', values: [i] });
        const qb = (i) => ({ name: 'tide_same', text: "select 'b:' || $1::text as v",
          values: [String(i)] });
        for (let round = 0; round < 50; round++) {
          const [ra, rb] = await all([a.query(qa(round)), b.query(qb(round))]);
          assert.equal(ra.rows[0].v, round * 2);
          assert.equal(rb.rows[0].v, `b:${round}`);
        }
        // inside transactions too, interleaved with the other client's autocommit use
        await a.query('BEGIN');
        assert.equal((await a.query(qa(7))).rows[0].v, 14);
        assert.equal((await b.query(qb(7))).rows[0].v, 'b:7');
        assert.equal((await a.query(qa(8))).rows[0].v, 16);
        await a.query('COMMIT');
      } finally {
        await a.end();
        await b.end();
      }
    });

    test('a named query is usable after an error and a rollback', async () => {
      const c = await client();
      try {
        const named = (i) => ({ name: 'tide_after_error', text: 'select $1::int as v',
          values: [i] });
        assert.equal((await c.query(named(1))).rows[0].v, 1);
        await c.query('BEGIN');
        await assert.rejects(c.query({ name: 'tide_div', text: 'select 1 / $1::int as v',
          values: [0] }), { code: '22012' });
        await assert.rejects(c.query(named(2)), { code: '25P02' });
        await c.query('ROLLBACK');
        for (let i = 0; i < 20; i++) assert.equal((await c.query(named(i))).rows[0].v, i);
        // the statement that failed at execution was prepared all the same
        assert.equal((await c.query({ name: 'tide_div', text: 'select 1 / $1::int as v',
          values: [1] })).rows[0].v, 1);
      } finally {
        await c.end();
      }
    });

    test('250 named statements in one client, used twice over', async () => {
      // more than max_prepared_statements' default (200) on one server connection
      const pool = new pg.Pool({ connectionString: target, max: 4,
        connectionTimeoutMillis: 10000 });
      const c = await client();
      const busy = all(Array.from({ length: 40 }, (_, i) => pool.query(
        { name: 'tide_busy', text: 'select $1::int as v', values: [i] })));
      busy.catch(() => {}); // awaited below
      try {
        for (let round = 0; round < 2; round++) {
          for (let k = 0; k < 250; k++) {
            const r = await c.query({ name: `tide_many_${k}`,
              text: `select $1::int + ${k} as v`, values: [round] });
            assert.equal(r.rows[0].v, round + k);
          }
        }
        (await busy).forEach((r, i) => assert.equal(r.rows[0].v, i));
      } finally {
        await busy.catch(() => {});
        await c.end();
        await pool.end();
      }
    });
  });
