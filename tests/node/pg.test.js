// node-postgres (pg@8) through pgtide. PGTIDE_URL names the pgtide to use, e.g.
// postgresql://app:app@127.0.0.1:6432/app; tests/integration/test_node_pg.py starts one and
// sets it.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import pg from 'pg';

const url = process.env.PGTIDE_URL;
const skip = url ? false : 'PGTIDE_URL is not set: start pgtide and point PGTIDE_URL at it';
if (!url) console.log(`# SKIP: ${skip}`);

const connect = async () => {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 10000 });
  await client.connect();
  return client;
};

describe('node-postgres through pgtide', { skip, timeout: 60000 }, () => {
  let client;
  const table = `node_${process.pid}_${crypto.randomBytes(4).toString('hex')}`;

  before(async () => {
    client = await connect();
    await client.query(`create table ${table} (id int primary key, email text unique, b bytea)`);
  });

  after(async () => {
    if (client) {
      await client.query(`drop table if exists ${table}`);
      await client.end();
    }
  });

  test('simple query', async () => {
    const r = await client.query("select 1 as one, 'two' as two");
    assert.deepEqual(r.rows, [{ one: 1, two: 'two' }]);
    // several statements in one simple query: pg returns one result per statement
    const multi = await client.query('select 1 as a; select 2 as b');
    assert.equal(multi.length, 2);
    assert.deepEqual(multi[1].rows, [{ b: 2 }]);
  });

  test('parameterized query (extended protocol)', async () => {
    const r = await client.query('select $1::int + $2::int as sum, $3::text as t',
      [40, 2, 'héllo']);
    assert.deepEqual(r.rows, [{ sum: 42, t: 'héllo' }]);
    const named = { name: 'tide_stmt', text: 'select $1::int * 2 as d', values: [21] };
    assert.equal((await client.query(named)).rows[0].d, 42);
    assert.equal((await client.query({ ...named, values: [5] })).rows[0].d, 10);
  });

  test('many concurrent queries on a pool of 5', async () => {
    const pool = new pg.Pool({ connectionString: url, max: 5, connectionTimeoutMillis: 10000 });
    try {
      const n = 200;
      const results = await Promise.all(
        Array.from({ length: n }, (_, i) =>
          pool.query('select $1::int as i, pg_backend_pid() as pid', [i])),
      );
      assert.deepEqual(results.map((r) => r.rows[0].i), Array.from({ length: n }, (_, i) => i));
      const pids = new Set(results.map((r) => r.rows[0].pid));
      assert.ok(pids.size >= 1 && pids.size <= 5, `used ${pids.size} servers`);
    } finally {
      await pool.end();
    }
  });

  test('unique violation keeps its fields', async () => {
    await client.query(`insert into ${table} (id, email) values (1, 'a@x')`);
    await assert.rejects(
      client.query(`insert into ${table} (id, email) values (2, 'a@x')`),
      (err) => {
        assert.equal(err.code, '23505');
        assert.equal(err.constraint, `${table}_email_key`);
        assert.equal(err.table, table);
        assert.equal(err.schema, 'public');
        assert.equal(err.detail, 'Key (email)=(a@x) already exists.');
        assert.equal(err.severity, 'ERROR');
        return true;
      },
    );
    // the connection is still usable
    assert.equal((await client.query('select 1 as x')).rows[0].x, 1);
  });

  test('transaction BEGIN / COMMIT / ROLLBACK', async () => {
    await client.query('BEGIN');
    await client.query(`insert into ${table} (id, email) values (10, 'tx@x')`);
    await client.query('COMMIT');
    await client.query('BEGIN');
    await client.query(`insert into ${table} (id, email) values (11, 'rolled@x')`);
    await client.query('ROLLBACK');
    const r = await client.query(`select id from ${table} where id in (10, 11) order by id`);
    assert.deepEqual(r.rows, [{ id: 10 }]);
    // an error inside a transaction, then ROLLBACK
    await client.query('BEGIN');
    await assert.rejects(client.query('select 1/0'), { code: '22012' });
    await assert.rejects(client.query('select 1'), { code: '25P02' });
    await client.query('ROLLBACK');
    assert.equal((await client.query('select 2 as y')).rows[0].y, 2);
  });

  test('bytea round trip', async () => {
    const data = crypto.randomBytes(256 * 1024);
    await client.query(`insert into ${table} (id, b) values (100, $1)`, [data]);
    const r = await client.query(`select b, md5(b) as h from ${table} where id = 100`);
    assert.ok(Buffer.isBuffer(r.rows[0].b));
    assert.ok(r.rows[0].b.equals(data));
    assert.equal(r.rows[0].h, crypto.createHash('md5').update(data).digest('hex'));
  });
});
