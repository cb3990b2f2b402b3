// What pgtide's admin console (docs/admin.md) reports about a Prisma application matches
// what the application did: SHOW CLIENTS (transaction state of its connection), SHOW ERRORS
// and SHOW TRANSACTIONS (deltas over known sequences).
//
// Run alone, against a pgtide no other client uses (tests/integration/test_prisma_e2e.py
// gives it its own): the counters are per (database, user) and the tests take deltas. The
// tests of this file run one after another (node:test's default within a file).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import pg from 'pg';
import { Prisma, appName, env, makeClient, rejection, uid, withClient } from './lib.mjs';

let admin; // node-postgres client on the admin console
let DB;
let USER;

before(async () => {
  const u = new URL(env.pgtide);
  DB = decodeURIComponent(u.pathname.slice(1));
  USER = decodeURIComponent(u.username);
  admin = new pg.Client(env.admin);
  await admin.connect();
});

after(async () => {
  await admin?.end();
});

// The console speaks the simple query protocol only: plain text, no values.
const show = async (what) => (await admin.query(`SHOW ${what}`)).rows;

async function waitFor(fn, what, ms = 3000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    last = await fn();
    if (last.ok) return last.value;
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}; last: ${JSON.stringify(last.value)}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

// The SHOW CLIENTS row of the one connection of a max:1 Prisma client.
async function clientRow(prisma) {
  const rows = (await show('CLIENTS')).filter((r) => r.application_name === prisma.applicationName);
  assert.equal(rows.length, 1, `one SHOW CLIENTS row for ${prisma.applicationName}: ${JSON.stringify(rows)}`);
  return rows[0];
}

const txnState = (r) => ({
  txn_status: r.txn_status, txn_depth: r.txn_depth, savepoints: r.savepoints, isolation: r.isolation,
});

// A client with exactly one connection to pgtide, named so SHOW CLIENTS can find it.
function oneConnection(prefix) {
  return makeClient(env.pgtide, { application_name: appName(prefix), max: 1 });
}

const TX = { timeout: 15000, maxWait: 10000 };

test('SHOW CLIENTS: a Prisma interactive transaction is at depth 1, status T; afterwards 0, I', async () => {
  await withClient(env.pgtide, async (prisma) => {
    await prisma.$queryRaw`SELECT 1`;
    const idle = await clientRow(prisma);
    assert.equal(idle.type, 'C');
    assert.equal(idle.user, USER);
    assert.equal(idle.database, DB);
    assert.equal(idle.state, 'active');
    assert.equal(idle.txn_status, 'I');
    assert.equal(idle.txn_depth, 0);

    await prisma.$transaction(async (tx) => {
      await tx.counter.create({ data: { id: uid('rep-clients') } });
      const r = await clientRow(prisma);
      assert.deepEqual(txnState(r), { txn_status: 'T', txn_depth: 1, savepoints: '', isolation: 'default' });
      assert.equal(r.read_only, false);
      assert.notEqual(r.link, '', 'linked to a server for the whole transaction');
    }, TX);

    const done = await waitFor(async () => {
      const r = await clientRow(prisma);
      return { ok: r.txn_depth === 0 && r.link === '', value: r };
    }, 'the client to leave its transaction and its server');
    assert.equal(done.txn_status, 'I');
    assert.equal(done.savepoints, '');
  }, { application_name: appName('rep-clients'), max: 1 });
});

test('SHOW CLIENTS: nested tx.$transaction shows the savepoints Prisma made (prisma_sp_N)', async () => {
  const prisma = oneConnection('rep-nested');
  try {
    await prisma.$transaction(async (tx) => {
      await tx.$transaction(async (inner) => {
        await inner.counter.create({ data: { id: uid('rep-nested') } });
        assert.deepEqual(txnState(await clientRow(prisma)),
          { txn_status: 'T', txn_depth: 2, savepoints: 'prisma_sp_0', isolation: 'default' });
        await inner.$transaction(async (innermost) => {
          await innermost.$queryRaw`SELECT 1`;
          assert.deepEqual(txnState(await clientRow(prisma)),
            { txn_status: 'T', txn_depth: 3, savepoints: 'prisma_sp_0,prisma_sp_1', isolation: 'default' });
        });
        // RELEASE SAVEPOINT prisma_sp_1
        assert.deepEqual(txnState(await clientRow(prisma)),
          { txn_status: 'T', txn_depth: 2, savepoints: 'prisma_sp_0', isolation: 'default' });
      });
      assert.equal((await clientRow(prisma)).txn_depth, 1);

      // a nested transaction that throws: ROLLBACK TO SAVEPOINT + RELEASE SAVEPOINT
      await rejection(tx.$transaction(async (inner) => {
        await inner.$queryRaw`SELECT 1`;
        assert.deepEqual(txnState(await clientRow(prisma)),
          { txn_status: 'T', txn_depth: 2, savepoints: 'prisma_sp_2', isolation: 'default' });
        throw new Error('inner');
      }));
      assert.deepEqual(txnState(await clientRow(prisma)),
        { txn_status: 'T', txn_depth: 1, savepoints: '', isolation: 'default' });
    }, TX);
    const r = await waitFor(async () => {
      const row = await clientRow(prisma);
      return { ok: row.txn_depth === 0, value: row };
    }, 'depth 0 after COMMIT');
    assert.deepEqual(txnState(r).savepoints, '');
  } finally {
    await prisma.$disconnect();
  }
});

test('SHOW CLIENTS: the isolation level and READ ONLY of the transaction', async () => {
  const prisma = oneConnection('rep-iso');
  try {
    const levels = [
      ['ReadUncommitted', 'read uncommitted'],
      ['ReadCommitted', 'read committed'],
      ['RepeatableRead', 'repeatable read'],
      ['Serializable', 'serializable'],
    ];
    for (const [level, shown] of levels) {
      await prisma.$transaction(async (tx) => {
        await tx.$queryRaw`SELECT 1`;
        const r = await clientRow(prisma);
        assert.equal(r.isolation, shown, level);
        assert.equal(r.txn_depth, 1, level);
        assert.equal(r.read_only, false, level);
      }, { ...TX, isolationLevel: Prisma.TransactionIsolationLevel[level] });
    }
    await prisma.$transaction(async (tx) => {
      await tx.$executeRaw`SET TRANSACTION READ ONLY`;
      await tx.$queryRaw`SELECT 1`;
      const r = await clientRow(prisma);
      assert.equal(r.read_only, true);
      assert.equal(r.isolation, 'default');
    }, TX);
    // the next transaction starts from the defaults again
    await prisma.$transaction(async (tx) => {
      await tx.$queryRaw`SELECT 1`;
      const r = await clientRow(prisma);
      assert.equal(r.isolation, 'default');
      assert.equal(r.read_only, false);
    }, TX);
  } finally {
    await prisma.$disconnect();
  }
});

test('SHOW CLIENTS: a failed query leaves the transaction in state E until it ends', async () => {
  const prisma = oneConnection('rep-failed');
  try {
    const result = await prisma.$transaction(async (tx) => {
      const err = await rejection(tx.ghost.findMany());
      assert.equal(err.code, 'P2021');
      const r = await clientRow(prisma);
      assert.equal(r.txn_status, 'E');
      assert.equal(r.txn_depth, 1);
      return 'swallowed';
    }, TX); // Prisma then sends COMMIT, which PostgreSQL turns into a rollback
    assert.equal(result, 'swallowed');
    const r = await waitFor(async () => {
      const row = await clientRow(prisma);
      return { ok: row.txn_depth === 0, value: row };
    }, 'depth 0 after the failed transaction ended');
    assert.equal(r.txn_status, 'I');
  } finally {
    await prisma.$disconnect();
  }
});

// SHOW ERRORS as {"database|user|kind": count}.
async function errorCounts() {
  const out = {};
  for (const r of await show('ERRORS')) out[`${r.database}|${r.user}|${r.kind}`] = Number(r.count);
  return out;
}

test('SHOW ERRORS: each error the application got is counted once, under its kind', async () => {
  const before = await errorCounts();
  const expected = {}; // key -> delta
  const expect = (kind, n, database = DB) => {
    const k = `${database}|${USER}|${kind}`;
    expected[k] = (expected[k] ?? 0) + n;
  };

  await withClient(env.pgtide, async (prisma) => {
    const email = `${uid('rep-err')}@example.com`;
    await prisma.user.create({ data: { id: uid('u'), email } });
    for (let i = 0; i < 3; i++) {
      const e = await rejection(prisma.user.create({ data: { id: uid('u'), email } }));
      assert.equal(e.code, 'P2002');
    }
    expect('UniqueConstraintViolation', 3);
    // one more inside an interactive transaction
    await rejection(prisma.$transaction(async (tx) => {
      await tx.counter.create({ data: { id: uid('x') } });
      await tx.user.create({ data: { id: uid('u'), email } });
    }, TX));
    expect('UniqueConstraintViolation', 1);

    for (let i = 0; i < 2; i++) {
      const e = await rejection(prisma.post.create({ data: { title: 't', note: 'n', authorId: 2147483000 } }));
      assert.equal(e.code, 'P2003');
    }
    expect('ForeignKeyConstraintViolation', 2);

    const e = await rejection(prisma.ghost.findMany());
    assert.equal(e.code, 'P2021');
    expect('TableDoesNotExist', 1);

    const author = await prisma.author.create({ data: { name: uid('rep-nn') } });
    const nn = await rejection(prisma.post.create({ data: { title: 'no note', authorId: author.id } }));
    assert.equal(nn.code, 'P2011');
    expect('NullConstraintViolation', 1);
  }, { application_name: appName('rep-errors') });

  const pw = await withClient(env.badPassword, (prisma) => rejection(prisma.counter.count()));
  assert.equal(pw.code, 'P1000');
  expect('AuthenticationFailed', 1);
  const badDb = new URL(env.badDb).pathname.slice(1);
  const nodb = await withClient(env.badDb, (prisma) => rejection(prisma.counter.count()));
  assert.equal(nodb.code, 'P1003');
  expect('DatabaseDoesNotExist', 1, badDb);

  const afterCounts = await errorCounts();
  const delta = {};
  for (const k of new Set([...Object.keys(before), ...Object.keys(afterCounts)])) {
    const d = (afterCounts[k] ?? 0) - (before[k] ?? 0);
    if (d !== 0) delta[k] = d;
  }
  assert.deepEqual(delta, expected);
});

// This pool's SHOW TRANSACTIONS row as numbers (zeros if it has none yet).
const TXN_COLUMNS = ['transactions', 'commits', 'rollbacks', 'prepared', 'savepoints', 'releases',
  'rollbacks_to_savepoint', 'max_depth', 'in_transaction'];
async function txnCounts() {
  const row = (await show('TRANSACTIONS')).find((r) => r.database === DB && r.user === USER);
  return Object.fromEntries(TXN_COLUMNS.map((c) => [c, Number(row?.[c] ?? 0)]));
}

test('SHOW TRANSACTIONS: commits, rollbacks and savepoints of a known sequence', async () => {
  const before = await txnCounts();
  const want = Object.fromEntries(TXN_COLUMNS.map((c) => [c, 0]));
  const prisma = oneConnection('rep-txn');
  try {
    const id = uid('rep-txn');
    // outside any transaction: nothing counted
    await prisma.counter.create({ data: { id } });
    await prisma.counter.findMany({ where: { id } });

    // 1. interactive, committed
    await prisma.$transaction(async (tx) => {
      await tx.counter.update({ where: { id }, data: { value: { increment: 1 } } });
      assert.equal((await txnCounts()).in_transaction, 1);
    }, TX);
    want.transactions += 1; want.commits += 1;

    // 2. interactive with an isolation level, committed
    await prisma.$transaction(async (tx) => tx.counter.findMany({ where: { id } }),
      { ...TX, isolationLevel: Prisma.TransactionIsolationLevel.Serializable });
    want.transactions += 1; want.commits += 1;

    // 3. interactive that throws: ROLLBACK
    await rejection(prisma.$transaction(async (tx) => {
      await tx.counter.update({ where: { id }, data: { value: 100 } });
      throw new Error('abort');
    }, TX));
    want.transactions += 1; want.rollbacks += 1;

    // 4. batch of two, committed
    await prisma.$transaction([
      prisma.counter.update({ where: { id }, data: { value: { increment: 1 } } }),
      prisma.counter.count(),
    ]);
    want.transactions += 1; want.commits += 1;

    // 5. batch whose second member fails: ROLLBACK
    await rejection(prisma.$transaction([
      prisma.counter.update({ where: { id }, data: { value: { increment: 1 } } }),
      prisma.counter.create({ data: { id } }),
    ]));
    want.transactions += 1; want.rollbacks += 1;

    // 6. nested commit: SAVEPOINT, RELEASE; then a nested one that throws: SAVEPOINT,
    //    ROLLBACK TO SAVEPOINT, RELEASE; then COMMIT
    await prisma.$transaction(async (tx) => {
      await tx.$transaction(async (inner) => inner.counter.findMany({ where: { id } }));
      await rejection(tx.$transaction(async (inner) => {
        await inner.counter.update({ where: { id }, data: { value: 100 } });
        throw new Error('inner');
      }));
    }, TX);
    want.transactions += 1; want.commits += 1;
    want.savepoints += 2; want.releases += 2; want.rollbacks_to_savepoint += 1;

    // 7. a failed query swallowed by the callback: the COMMIT that follows rolls back
    await prisma.$transaction(async (tx) => {
      await rejection(tx.ghost.findMany());
    }, TX);
    want.transactions += 1; want.rollbacks += 1;

    // 8. a nested write: Prisma wraps it in its own BEGIN ... COMMIT
    await prisma.author.create({
      data: { name: uid('rep-txn-author'), posts: { create: { title: 't', note: 'n' } } },
    });
    want.transactions += 1; want.commits += 1;

    // 9. a single-member batch: Prisma sends no BEGIN
    await prisma.$transaction([prisma.counter.count()]);

    assert.equal((await prisma.counter.findUnique({ where: { id } })).value, 2);
  } finally {
    await prisma.$disconnect();
  }

  const afterCounts = await waitFor(async () => {
    const c = await txnCounts();
    return { ok: c.in_transaction === 0, value: c };
  }, 'in_transaction 0');
  const delta = Object.fromEntries(TXN_COLUMNS.filter((c) => c !== 'max_depth' && c !== 'in_transaction')
    .map((c) => [c, afterCounts[c] - before[c]]));
  delete want.max_depth;
  delete want.in_transaction;
  assert.deepEqual(delta, want);
  assert.ok(afterCounts.max_depth >= 2, `max_depth ${afterCounts.max_depth} (a savepoint was taken)`);
  assert.equal(afterCounts.in_transaction, 0);
});
