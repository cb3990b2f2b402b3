// Interactive, batch and nested transactions and isolation levels, through pgtide in
// transaction pooling mode; every check runs against PostgreSQL directly too.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Prisma, errorSummary, makeClient, rejection, targets, uid } from './lib.mjs';

const clients = {}; // target name -> PrismaClient

before(() => {
  for (const t of targets()) clients[t.name] = makeClient(t.url, { application_name: `prisma-e2e-tx-${t.name}` });
});

after(async () => {
  await Promise.all(Object.values(clients).map((c) => c.$disconnect()));
});

// Runs check(prisma, targetName) against pgtide and against PostgreSQL directly.
async function onBoth(check) {
  for (const t of targets()) await check(clients[t.name], t.name);
}

const backendPid = async (q) => (await q.$queryRaw`SELECT pg_backend_pid() AS pid`)[0].pid;

class Boom extends Error {}

test('interactive $transaction commits, on one server backend throughout', async () => {
  await onBoth(async (prisma, where) => {
    const id = uid(`itx-commit-${where}`);
    const result = await prisma.$transaction(async (tx) => {
      const pid1 = await backendPid(tx);
      await tx.counter.create({ data: { id } });
      await tx.counter.update({ where: { id }, data: { value: { increment: 5 } } });
      const inside = await tx.counter.findUnique({ where: { id } });
      const pid2 = await backendPid(tx);
      const [{ txid }] = await tx.$queryRaw`SELECT txid_current_if_assigned()::text AS txid`;
      return { pid1, pid2, inside, txid };
    });
    assert.equal(result.pid1, result.pid2, `${where}: same backend inside the transaction`);
    assert.notEqual(result.txid, null, `${where}: the writes are in one transaction`);
    assert.equal(result.inside.value, 5);
    assert.equal((await prisma.counter.findUnique({ where: { id } })).value, 5, where);
  });
});

test('interactive $transaction that throws rolls back', async () => {
  await onBoth(async (prisma, where) => {
    const id = uid(`itx-throw-${where}`);
    const err = await rejection(prisma.$transaction(async (tx) => {
      await tx.counter.create({ data: { id } });
      assert.equal(await tx.counter.count({ where: { id } }), 1);
      throw new Boom('abort');
    }));
    assert.ok(err instanceof Boom, `${where}: the callback's own error reaches the caller`);
    assert.equal(await prisma.counter.count({ where: { id } }), 0, `${where}: row absent`);
  });
});

test('a failing query inside an interactive transaction rolls all of it back', async () => {
  await onBoth(async (prisma, where) => {
    const id = uid(`itx-fail-${where}`);
    const err = await rejection(prisma.$transaction(async (tx) => {
      await tx.counter.create({ data: { id: `${id}-a` } });
      await tx.counter.create({ data: { id: `${id}-a` } }); // duplicate key
    }));
    assert.equal(err.code, 'P2002', `${where}: ${err}`);
    assert.equal(await prisma.counter.count({ where: { id: { startsWith: id } } }), 0, where);
    // the connection (and pgtide's server) is usable again
    assert.equal(await prisma.counter.count({ where: { id } }), 0);
  });
});

test('batch $transaction([...]) commits all, and rolls back all on a failure', async () => {
  await onBoth(async (prisma, where) => {
    const id = uid(`batch-${where}`);
    const [a, b, c] = await prisma.$transaction([
      prisma.counter.create({ data: { id: `${id}-1`, value: 1 } }),
      prisma.counter.create({ data: { id: `${id}-2`, value: 2 } }),
      prisma.counter.count({ where: { id: { startsWith: id } } }),
    ]);
    assert.deepEqual([a.value, b.value, c], [1, 2, 2], where);

    const err = await rejection(prisma.$transaction([
      prisma.counter.update({ where: { id: `${id}-1` }, data: { value: 100 } }),
      prisma.counter.create({ data: { id: `${id}-3` } }),
      prisma.counter.create({ data: { id: `${id}-2` } }), // duplicate: fails the batch
    ]));
    assert.equal(err.code, 'P2002', `${where}: ${err}`);
    const rows = await prisma.counter.findMany({ where: { id: { startsWith: id } }, orderBy: { id: 'asc' } });
    assert.deepEqual(rows.map((r) => [r.id.slice(id.length), r.value]), [['-1', 1], ['-2', 2]], where);
  });
});

test('nested tx.$transaction commits with the outer transaction (a savepoint)', async () => {
  await onBoth(async (prisma, where) => {
    const id = uid(`nested-ok-${where}`);
    await prisma.$transaction(async (tx) => {
      const pid = await backendPid(tx);
      await tx.counter.create({ data: { id: `${id}-outer` } });
      await tx.$transaction(async (inner) => {
        await inner.counter.create({ data: { id: `${id}-inner` } });
        assert.equal(await backendPid(inner), pid, `${where}: nested runs on the same backend`);
      });
      assert.equal(await tx.counter.count({ where: { id: { startsWith: id } } }), 2);
    });
    assert.equal(await prisma.counter.count({ where: { id: { startsWith: id } } }), 2, where);
  });
});

test('nested tx.$transaction that throws rolls back only the inner work', async () => {
  await onBoth(async (prisma, where) => {
    const id = uid(`nested-fail-${where}`);
    await prisma.$transaction(async (tx) => {
      await tx.counter.create({ data: { id: `${id}-outer` } });
      const err = await rejection(tx.$transaction(async (inner) => {
        await inner.counter.create({ data: { id: `${id}-inner` } });
        throw new Boom('inner');
      }));
      assert.ok(err instanceof Boom);
      // a failing query in a nested transaction: its savepoint rollback clears the error state
      const dup = await rejection(tx.$transaction(async (inner) => {
        await inner.counter.create({ data: { id: `${id}-inner2` } });
        await inner.counter.create({ data: { id: `${id}-outer` } });
      }));
      assert.equal(dup.code, 'P2002', `${where}: ${dup}`);
      await tx.counter.create({ data: { id: `${id}-after` } });
    });
    const rows = await prisma.counter.findMany({ where: { id: { startsWith: id } }, orderBy: { id: 'asc' } });
    assert.deepEqual(rows.map((r) => r.id.slice(id.length)), ['-after', '-outer'], where);
  });
});

const LEVELS = [
  ['ReadUncommitted', 'read uncommitted'],
  ['ReadCommitted', 'read committed'],
  ['RepeatableRead', 'repeatable read'],
  ['Serializable', 'serializable'],
];

for (const [level, shown] of LEVELS) {
  test(`isolationLevel ${level} is in force inside the transaction, and only there`, async () => {
    await onBoth(async (prisma, where) => {
      const id = uid(`iso-${level}-${where}`);
      const seen = await prisma.$transaction(async (tx) => {
        const [{ transaction_isolation: iso }] = await tx.$queryRaw`SHOW transaction_isolation`;
        await tx.counter.create({ data: { id } });
        return iso;
      }, { isolationLevel: Prisma.TransactionIsolationLevel[level] });
      assert.equal(seen, shown, where);
      assert.equal(await prisma.counter.count({ where: { id } }), 1, where);
      // the next transaction (likely on the same pooled server) is back at the default
      const after = await prisma.$transaction(async (tx) =>
        (await tx.$queryRaw`SHOW transaction_isolation`)[0].transaction_isolation);
      assert.equal(after, 'read committed', where);
    });
  });
}

test('50 concurrent interactive transactions all commit (5 pooled servers)', async () => {
  const N = 50;
  const byTarget = {};
  for (const t of targets()) {
    const prisma = makeClient(t.url, { application_name: `prisma-e2e-tx50-${t.name}`, max: N });
    try {
      const id = uid(`c50-${t.name}`);
      await prisma.counter.create({ data: { id } });
      const pids = await Promise.all(Array.from({ length: N }, (_, i) => prisma.$transaction(async (tx) => {
        await tx.counter.create({ data: { id: `${id}-${String(i).padStart(2, '0')}`, value: i } });
        await tx.$executeRaw`SELECT pg_sleep(0.005)`;
        await tx.counter.update({ where: { id }, data: { value: { increment: 1 } } });
        return backendPid(tx);
      }, { maxWait: 30000, timeout: 30000 })));
      assert.equal((await prisma.counter.findUnique({ where: { id } })).value, N, t.name);
      const rows = await prisma.counter.findMany({ where: { id: { startsWith: `${id}-` } } });
      assert.equal(rows.length, N, t.name);
      assert.equal(rows.reduce((s, r) => s + r.value, 0), (N * (N - 1)) / 2, t.name);
      byTarget[t.name] = new Set(pids).size;
    } finally {
      await prisma.$disconnect();
    }
  }
  // through pgtide, the 50 client connections shared at most default_pool_size (5) servers
  // (PGTIDE_TEST_DIRECT=1 points DATABASE_URL at PostgreSQL itself: no pool to observe)
  if (process.env.PGTIDE_TEST_DIRECT !== '1') {
    assert.ok(byTarget.pgtide <= 5, `pgtide used ${byTarget.pgtide} backends for ${N} transactions`);
  }
  assert.ok(byTarget.direct > 5, `direct used ${byTarget.direct} backends`);
});

test('an interactive transaction past its timeout is rolled back (P2028), the pool recovers', async () => {
  await onBoth(async (prisma, where) => {
    const id = uid(`timeout-${where}`);
    const err = await rejection(prisma.$transaction(async (tx) => {
      await tx.counter.create({ data: { id } });
      await new Promise((r) => setTimeout(r, 700));
      await tx.counter.update({ where: { id }, data: { value: 1 } });
    }, { timeout: 300 }));
    assert.equal(err.code, 'P2028', `${where}: ${JSON.stringify(errorSummary(err))} ${err}`);
    assert.equal(await prisma.counter.count({ where: { id } }), 0, `${where}: rolled back`);
    const ok = await prisma.$transaction(async (tx) => tx.counter.create({ data: { id } }));
    assert.equal(ok.id, id);
  });
});
