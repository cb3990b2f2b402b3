// node-postgres over TLS to pgtide. PGTIDE_URL names a pgtide with client TLS configured and
// PGTIDE_TLS_CA the CA file that signed its certificate (for 127.0.0.1 and localhost);
// tests/integration/test_node_pg.py starts one and sets both.
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import pg from 'pg';

const url = process.env.PGTIDE_URL;
const caPath = process.env.PGTIDE_TLS_CA;
const skip = url && caPath ? false : 'PGTIDE_URL and PGTIDE_TLS_CA are not set';
if (skip) console.log(`# SKIP: ${skip}`);

const withClient = async (config, fn) => {
  const client = new pg.Client({ connectionTimeoutMillis: 10000, ...config });
  await client.connect();
  try {
    return await fn(client);
  } finally {
    await client.end();
  }
};

describe('node-postgres with ssl through pgtide', { skip, timeout: 60000 }, () => {
  const ca = caPath ? fs.readFileSync(caPath, 'utf8') : '';

  test('ssl with the CA: the certificate and the host name are checked', async () => {
    await withClient({ connectionString: url, ssl: { ca } }, async (client) => {
      const stream = client.connection.stream;
      assert.equal(stream.encrypted, true);
      assert.equal(stream.authorized, true);
      assert.equal(stream.getProtocol(), 'TLSv1.3');
      const r = await client.query('select $1::text as t, 40 + 2 as n', ['over tls']);
      assert.deepEqual(r.rows, [{ t: 'over tls', n: 42 }]);
    });
  });

  test('a 5 MB value and 50,000 rows arrive intact', async () => {
    await withClient({ connectionString: url, ssl: { ca } }, async (client) => {
      const big = await client.query("select repeat('abcdefgh', 655360) as v");
      assert.equal(big.rows[0].v.length, 5 * 1024 * 1024);
      assert.equal(big.rows[0].v, 'abcdefgh'.repeat(655360));
      const rows = await client.query('select i from generate_series(1, 50000) i');
      assert.equal(rows.rowCount, 50000);
      assert.equal(rows.rows[49999].i, 50000);
    });
  });

  test('sslmode=verify-full and sslrootcert in the connection string', async () => {
    const u = new URL(url);
    u.searchParams.set('sslmode', 'verify-full');
    u.searchParams.set('sslrootcert', caPath);
    await withClient({ connectionString: u.toString() }, async (client) => {
      assert.equal(client.connection.stream.encrypted, true);
      assert.equal((await client.query('select 1 as one')).rows[0].one, 1);
    });
  });

  test('direct TLS (sslnegotiation=direct, ALPN postgresql)', async () => {
    const u = new URL(url);
    u.searchParams.set('sslnegotiation', 'direct');
    u.searchParams.set('sslmode', 'verify-full');
    u.searchParams.set('sslrootcert', caPath);
    await withClient({ connectionString: u.toString() }, async (client) => {
      assert.equal(client.connection.stream.alpnProtocol, 'postgresql');
      assert.equal((await client.query("select 'direct' as d")).rows[0].d, 'direct');
    });
  });

  test('a pool of TLS clients, in a transaction each', async () => {
    const pool = new pg.Pool({ connectionString: url, ssl: { ca }, max: 8 });
    try {
      const sums = await Promise.all(Array.from({ length: 24 }, async (_, i) => {
        const c = await pool.connect();
        try {
          await c.query('begin');
          const r = await c.query('select $1::int * 2 as d', [i]);
          await c.query('commit');
          return r.rows[0].d;
        } finally {
          c.release();
        }
      }));
      assert.deepEqual(sums, Array.from({ length: 24 }, (_, i) => i * 2));
    } finally {
      await pool.end();
    }
  });

  test('a CA that did not sign the certificate is refused', async () => {
    const rogue = fs.readFileSync(caPath.replace(/ca\.crt$/, 'rogue-ca.crt'), 'utf8');
    await assert.rejects(
      withClient({ connectionString: url, ssl: { ca: rogue } }, async () => {}),
      (e) => /self[- ]signed|unable to verify|unable to get local issuer/i.test(e.message));
  });
});
