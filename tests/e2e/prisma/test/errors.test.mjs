// Errors reach the application through pgtide exactly as they do from PostgreSQL directly:
// the same Prisma code, the same driver-adapter error kind and fields.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Prisma, env, errorSummary, latch, makeClient, rejection, targets, uid, withClient } from './lib.mjs';

const clients = {}; // target name -> PrismaClient

before(() => {
  for (const t of targets()) clients[t.name] = makeClient(t.url, { application_name: `prisma-e2e-errors-${t.name}` });
});

after(async () => {
  await Promise.all(Object.values(clients).map((c) => c.$disconnect()));
});

// A message with the parts that legitimately differ (ports, generated ids) blanked out.
const normalize = (msg) => String(msg)
  .replace(/:\d{2,5}\b/g, ':PORT')
  .replace(/[a-z0-9-]+-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, 'ID');

// Runs make(prisma, target) against both targets, checks each rejection with check(err,
// target), and asserts pgtide's error equals PostgreSQL's (code, kind, fields, message).
async function sameErrorOnBoth(make, check) {
  const seen = {};
  for (const t of targets()) {
    const err = await rejection(make(clients[t.name], t), `${t.name}: the operation`);
    check(err, t.name);
    seen[t.name] = { ...errorSummary(err), message: normalize(err.message) };
  }
  assert.deepEqual(seen.pgtide, seen.direct, 'the error through pgtide equals the direct one');
  return seen.pgtide;
}

function assertPrismaError(err, where, code, kind) {
  assert.ok(err instanceof Prisma.PrismaClientKnownRequestError,
    `${where}: a PrismaClientKnownRequestError, got ${err?.name}: ${err?.message}`);
  assert.equal(err.code, code, `${where}: ${err.message}`);
  const cause = err.meta?.driverAdapterError?.cause;
  if (kind) {
    assert.equal(err.meta?.driverAdapterError?.name, 'DriverAdapterError', where);
    assert.equal(cause?.kind, kind, `${where}: ${JSON.stringify(cause)}`);
  }
  return cause;
}

test('unique violation: P2002 UniqueConstraintViolation on user_email_key', async () => {
  const email = `${uid('dup')}@example.com`;
  await clients.direct.user.create({ data: { id: uid('u'), email } });
  const s = await sameErrorOnBoth(
    (prisma) => prisma.user.create({ data: { id: uid('u'), email } }),
    (err, where) => {
      const cause = assertPrismaError(err, where, 'P2002', 'UniqueConstraintViolation');
      assert.equal(cause.originalCode, '23505');
      assert.deepEqual(cause.constraint, { index: 'user_email_key' });
      assert.match(err.message, /`user_email_key`/);
      assert.equal(err.meta.modelName, 'User');
    },
  );
  assert.equal(s.table, 'user');
});

test('foreign key violation: P2003 ForeignKeyConstraintViolation (insert and RESTRICT delete)', async () => {
  await sameErrorOnBoth(
    (prisma) => prisma.post.create({ data: { title: 't', note: 'n', authorId: 2147483000 } }),
    (err, where) => {
      const cause = assertPrismaError(err, where, 'P2003', 'ForeignKeyConstraintViolation');
      assert.equal(cause.originalCode, '23503');
      assert.deepEqual(cause.constraint, { index: 'Post_authorId_fkey' });
    },
  );
  const author = await clients.direct.author.create({
    data: { name: uid('restrict'), posts: { create: { title: 't', note: 'n' } } },
  });
  await sameErrorOnBoth(
    (prisma) => prisma.author.delete({ where: { id: author.id } }),
    (err, where) => {
      const cause = assertPrismaError(err, where, 'P2003', 'ForeignKeyConstraintViolation');
      assert.deepEqual(cause.constraint, { index: 'Post_authorId_fkey' });
    },
  );
});

test('NOT NULL violation from a model query: P2011 NullConstraintViolation', async () => {
  const author = await clients.direct.author.create({ data: { name: uid('nn') } });
  // Post.note defaults to NULL in the database but is NOT NULL: leaving it out violates it.
  await sameErrorOnBoth(
    (prisma) => prisma.post.create({ data: { title: 'no note', authorId: author.id } }),
    (err, where) => {
      const cause = assertPrismaError(err, where, 'P2011', 'NullConstraintViolation');
      assert.equal(cause.originalCode, '23502');
      assert.match(cause.originalMessage, /null value in column "note" of relation "Post"/);
    },
  );
});

test('NOT NULL violation from a raw query with an explicit null: P2010 with code 23502', async () => {
  await sameErrorOnBoth(
    (prisma) => prisma.$executeRaw`INSERT INTO "Counter" (id, value) VALUES (${uid('raw')}, ${null})`,
    (err, where) => {
      assertPrismaError(err, where, 'P2010');
      assert.match(err.message, /Code: `23502`/, where);
      assert.equal(err.meta?.driverAdapterError?.cause?.kind, 'NullConstraintViolation', where);
    },
  );
});

test('missing table: P2021 TableDoesNotExist (model Ghost has no table)', async () => {
  await sameErrorOnBoth(
    (prisma) => prisma.ghost.findMany(),
    (err, where) => {
      const cause = assertPrismaError(err, where, 'P2021', 'TableDoesNotExist');
      assert.equal(cause.originalCode, '42P01');
      assert.equal(cause.table, 'public.ghost');
    },
  );
});

// The direct URL with one part changed.
function directWith({ password, database }) {
  const u = new URL(env.direct);
  if (password !== undefined) u.password = password;
  if (database !== undefined) u.pathname = `/${database}`;
  return u.toString();
}

async function connectError(url) {
  return withClient(url, (prisma) => rejection(prisma.counter.count(), `a query on ${url}`));
}

test('wrong password: P1000 AuthenticationFailed', async () => {
  const seen = {};
  const urls = { pgtide: env.badPassword, direct: directWith({ password: new URL(env.badPassword).password }) };
  for (const [where, url] of Object.entries(urls)) {
    const err = await connectError(url);
    const cause = assertPrismaError(err, where, 'P1000', 'AuthenticationFailed');
    assert.equal(cause.originalCode, '28P01', where);
    assert.equal(cause.user, 'app', where);
    seen[where] = { ...errorSummary(err), message: normalize(err.message) };
  }
  assert.deepEqual(seen.pgtide, seen.direct);
});

test('unknown database: P1003 DatabaseDoesNotExist', async () => {
  const seen = {};
  const dbName = new URL(env.badDb).pathname.slice(1);
  const urls = { pgtide: env.badDb, direct: directWith({ database: dbName }) };
  for (const [where, url] of Object.entries(urls)) {
    const err = await connectError(url);
    const cause = assertPrismaError(err, where, 'P1003', 'DatabaseDoesNotExist');
    assert.equal(cause.originalCode, '3D000', where);
    assert.equal(cause.db, dbName, where);
    seen[where] = { ...errorSummary(err), message: normalize(err.message) };
  }
  assert.deepEqual(seen.pgtide, seen.direct);
});

test('write conflict in a Serializable transaction: P2034 TransactionWriteConflict', async () => {
  await sameErrorOnBoth(async (prisma) => {
    const id = uid('p2034');
    await prisma.counter.create({ data: { id } });
    return prisma.$transaction(async (tx) => {
      await tx.counter.findUnique({ where: { id } }); // takes the snapshot
      await prisma.counter.update({ where: { id }, data: { value: 1 } }); // commits outside
      await tx.counter.update({ where: { id }, data: { value: 2 } }); // 40001
    }, { isolationLevel: Prisma.TransactionIsolationLevel.Serializable });
  }, (err, where) => {
    const cause = assertPrismaError(err, where, 'P2034', 'TransactionWriteConflict');
    assert.equal(cause.originalCode, '40001');
  });
});

test('Serializable write skew: exactly one of two transactions fails with a write conflict', async (ctx) => {
  // Both check that no author with the prefix exists, then create one. Run retry-free: one
  // must fail, at its INSERT (P2034) or at COMMIT (Prisma passes a COMMIT's error on bare:
  // a DriverAdapterError whose cause is TransactionWriteConflict, without a Prisma code).
  const seen = {};
  for (const t of targets()) {
    const prisma = clients[t.name];
    const prefix = uid(`skew-${t.name}`);
    const bothRead = [latch(), latch()];
    const firstCommitted = latch();
    const run = (i) => prisma.$transaction(async (tx) => {
      const n = await tx.author.count({ where: { name: { startsWith: prefix } } });
      bothRead[i].open();
      await bothRead[1 - i].wait();
      if (i === 1) await firstCommitted.wait().catch(() => {});
      if (n === 0) await tx.author.create({ data: { name: `${prefix}-${i}` } });
    }, { isolationLevel: Prisma.TransactionIsolationLevel.Serializable, timeout: 20000 });
    const first = run(0).finally(() => firstCommitted.open());
    const results = await Promise.allSettled([first, run(1)]);
    const failed = results.filter((r) => r.status === 'rejected');
    assert.equal(failed.length, 1, `${t.name}: ${results.map((r) => r.status)} ${failed.map((f) => f.reason)}`);
    const err = failed[0].reason;
    const cause = err.meta?.driverAdapterError?.cause ?? err.cause;
    assert.ok(err.code === 'P2034' || (err.name === 'DriverAdapterError' && err.code === undefined),
      `${t.name}: ${err.name} ${err.code} ${err.message}`);
    assert.equal(cause?.kind, 'TransactionWriteConflict', `${t.name}: ${JSON.stringify(cause)}`);
    assert.equal(cause?.originalCode, '40001');
    assert.equal(await prisma.author.count({ where: { name: { startsWith: prefix } } }), 1);
    seen[t.name] = { ...errorSummary(err), which: results.indexOf(failed[0]) };
    ctx.diagnostic(`${t.name}: transaction ${seen[t.name].which} failed with ${err.name} ${err.code ?? '(no code)'}`);
  }
  assert.deepEqual(seen.pgtide, seen.direct);
});

test('deadlock: P2034 TransactionWriteConflict (40P01), the other transaction commits', async () => {
  const seen = {};
  for (const t of targets()) {
    const prisma = clients[t.name];
    const a = uid(`dl-a-${t.name}`);
    const b = uid(`dl-b-${t.name}`);
    await prisma.counter.createMany({ data: [{ id: a }, { id: b }] });
    const locked = [latch(), latch()];
    const run = (i, first, second) => prisma.$transaction(async (tx) => {
      await tx.counter.update({ where: { id: first }, data: { value: { increment: 1 } } });
      locked[i].open();
      await locked[1 - i].wait();
      await tx.counter.update({ where: { id: second }, data: { value: { increment: 1 } } });
    }, { timeout: 20000 });
    const results = await Promise.allSettled([run(0, a, b), run(1, b, a)]);
    const failed = results.filter((r) => r.status === 'rejected');
    assert.equal(failed.length, 1, `${t.name}: ${failed.map((f) => f.reason)}`);
    const err = failed[0].reason;
    const cause = assertPrismaError(err, t.name, 'P2034', 'TransactionWriteConflict');
    assert.equal(cause.originalCode, '40P01');
    const rows = await prisma.counter.findMany({ where: { id: { in: [a, b] } } });
    assert.deepEqual(rows.map((r) => r.value), [1, 1], `${t.name}: the survivor committed`);
    seen[t.name] = errorSummary(err);
  }
  assert.deepEqual(seen.pgtide, seen.direct);
});

test('errors inside and outside transactions leave pgtide\'s servers clean', async () => {
  // After every failure above, ordinary queries, a transaction and the session defaults are
  // as on a fresh connection (no aborted transaction or leftover state handed to us).
  const prisma = clients.pgtide;
  for (let i = 0; i < 10; i++) {
    await rejection(prisma.$transaction(async (tx) => {
      await tx.$executeRaw`SET LOCAL lock_timeout = '1s'`;
      await tx.ghost.findMany();
    }));
    const [row] = await prisma.$queryRaw`SELECT current_setting('lock_timeout') AS lt,
      current_setting('transaction_isolation') AS iso, now() = statement_timestamp() AS fresh`;
    assert.deepEqual(row, { lt: '0', iso: 'read committed', fresh: true });
  }
});
