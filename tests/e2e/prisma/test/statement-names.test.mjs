// Prisma with named (cached) prepared statements: @prisma/adapter-pg's statementNameGenerator
// option (new PrismaPg(poolConfig, { statementNameGenerator })) gives every query a name, which
// node-postgres parses once per connection and then only binds. Through pgtide in transaction
// pooling mode (pool 5, adapter pools of 10-20 connections) each connection's next transaction
// may land on a server that has never seen its statements, or that has another connection's
// statement of the same name. Every workload runs against PostgreSQL directly too, and the
// results must be equal.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient, Prisma, appName, errorSummary, rejection, targets, uid } from './lib.mjs';

// One name per SQL text (node-postgres refuses one name for two texts on a connection).
const generated = new Map(); // name -> sql
let generatorCalls = 0;
function statementNameGenerator(query) {
  generatorCalls += 1;
  const name = `prisma_${createHash('sha256').update(query.sql).digest('hex').slice(0, 24)}`;
  generated.set(name, query.sql);
  return name;
}

function makeNamedClient(url, prefix, max) {
  const adapter = new PrismaPg(
    { connectionString: url, application_name: appName(prefix), max },
    { statementNameGenerator },
  );
  return new PrismaClient({ adapter });
}

const clients = {}; // target name -> PrismaClient (adapter pool of 20)

before(() => {
  for (const t of targets()) clients[t.name] = makeNamedClient(t.url, `prisma-e2e-names-${t.name}`, 20);
});

after(async () => {
  await Promise.all(Object.values(clients).map((c) => c.$disconnect()));
});

// Runs work(prisma, tag) on each target with its own tag; returns { target: result } with the
// tag replaced by '<tag>' in every string, so the results compare equal.
async function onBoth(work) {
  const out = {};
  for (const t of targets()) {
    const tag = uid(`names-${t.name}`);
    const result = await work(clients[t.name], tag, t.name);
    out[t.name] = JSON.parse(JSON.stringify(result, (k, v) => (typeof v === 'bigint'
      ? v.toString() : v)).replaceAll(tag, '<tag>'));
  }
  assert.deepEqual(out.pgtide, out.direct, 'pgtide and PostgreSQL disagree');
  return out.pgtide;
}

class Boom extends Error {}

// One worker's sequence of CRUD on Counter and Author/Post; deterministic for its prefix.
async function crudRound(prisma, p, i) {
  const id = `${p}-${i}`;
  const created = await prisma.counter.create({ data: { id, value: i } });
  await prisma.counter.update({ where: { id }, data: { value: { increment: 5 } } });
  const upserted = await prisma.counter.upsert({
    where: { id: `${id}-u` }, update: { value: { increment: 1 } }, create: { id: `${id}-u`, value: 100 },
  });
  const again = await prisma.counter.upsert({
    where: { id: `${id}-u` }, update: { value: { increment: 1 } }, create: { id: `${id}-u`, value: 100 },
  });
  const one = await prisma.counter.findUnique({ where: { id } });
  const count = await prisma.counter.count({ where: { id: { startsWith: `${p}-` } } });
  const top = await prisma.counter.findMany({
    where: { id: { startsWith: `${p}-` } }, orderBy: [{ value: 'desc' }, { id: 'asc' }], take: 3,
  });
  const author = await prisma.author.create({
    data: { name: `${id}-author`, posts: { create: [{ title: 't1', note: 'n' }, { title: 't2', note: 'n' }] } },
    include: { posts: { orderBy: { id: 'asc' } } },
  });
  const posts = await prisma.post.findMany({
    where: { authorId: author.id }, orderBy: { id: 'asc' },
    select: { title: true, note: true, author: { select: { name: true } } },
  });
  const agg = await prisma.counter.aggregate({
    where: { id: { startsWith: `${p}-` } }, _sum: { value: true }, _max: { value: true },
  });
  await prisma.post.deleteMany({ where: { authorId: author.id } });
  await prisma.author.delete({ where: { id: author.id } });
  return {
    created: created.value, one: one.value, upserted: upserted.value, again: again.value, count,
    top: top.map((r) => [r.id, r.value]), posts, nPosts: author.posts.length, agg,
  };
}

test('CRUD with named statements: 10 concurrent workers x 12 rounds, as on PostgreSQL', async () => {
  await onBoth(async (prisma, tag) => Promise.all(Array.from({ length: 10 }, async (_, w) => {
    const rounds = [];
    for (let i = 0; i < 12; i++) rounds.push(await crudRound(prisma, `${tag}-w${w}`, i));
    return rounds;
  })));
});

test('interactive transactions with named statements: commit, throw, nested, isolation', async () => {
  await onBoth(async (prisma, tag) => Promise.all(Array.from({ length: 12 }, async (_, w) => {
    const p = `${tag}-t${w}`;
    const log = [];
    for (let i = 0; i < 6; i++) {
      const id = `${p}-${i}`;
      // commits
      log.push(await prisma.$transaction(async (tx) => {
        await tx.counter.create({ data: { id } });
        await tx.counter.update({ where: { id }, data: { value: { increment: i + 1 } } });
        // a nested transaction (savepoint) whose work is rolled back
        const inner = await rejection(tx.$transaction(async (t2) => {
          await t2.counter.create({ data: { id: `${id}-inner` } });
          throw new Boom('inner');
        }));
        assert.ok(inner instanceof Boom);
        const [{ pid: pid1 }] = await tx.$queryRaw`SELECT pg_backend_pid() AS pid`;
        const [{ pid: pid2 }] = await tx.$queryRaw`SELECT pg_backend_pid() AS pid`;
        assert.equal(pid1, pid2, 'one server inside a transaction');
        return (await tx.counter.findUnique({ where: { id } })).value;
      }, {
        maxWait: 20000,
        timeout: 20000,
        ...(i % 3 === 2 ? { isolationLevel: Prisma.TransactionIsolationLevel.RepeatableRead } : {}),
      }));
      // rolls back on a thrown error
      const err = await rejection(prisma.$transaction(async (tx) => {
        await tx.counter.update({ where: { id }, data: { value: { increment: 100 } } });
        throw new Boom('outer');
      }, { maxWait: 20000, timeout: 20000 }));
      log.push(err instanceof Boom ? 'boom' : String(err));
      // rolls back on a database error (P2002) inside the transaction
      const dup = await rejection(prisma.$transaction(async (tx) => {
        await tx.counter.update({ where: { id }, data: { value: { increment: 1000 } } });
        await tx.counter.create({ data: { id } });
      }, { maxWait: 20000, timeout: 20000 }));
      log.push(errorSummary(dup).code);
      log.push(await prisma.counter.count({ where: { id: { startsWith: `${id}-inner` } } }));
      log.push((await prisma.counter.findUnique({ where: { id } })).value);
    }
    return log;
  })));
});

test('batch transactions and errors with named statements, then the same statements again', async () => {
  await onBoth(async (prisma, tag) => {
    const out = [];
    for (let i = 0; i < 15; i++) {
      const id = `${tag}-b${i}`;
      const [a, b, n] = await prisma.$transaction([
        prisma.counter.create({ data: { id: `${id}-1`, value: 1 } }),
        prisma.counter.create({ data: { id: `${id}-2`, value: 2 } }),
        prisma.counter.count({ where: { id: { startsWith: id } } }),
      ]);
      out.push([a.value, b.value, n]);
      const err = await rejection(prisma.$transaction([
        prisma.counter.update({ where: { id: `${id}-1` }, data: { value: 10 } }),
        prisma.counter.create({ data: { id: `${id}-2` } }),
      ]));
      out.push(errorSummary(err).code);
      const email = `${id}@example.com`;
      await prisma.user.create({ data: { id: `${id}-u1`, email } });
      const uerr = await rejection(prisma.user.create({ data: { id: `${id}-u2`, email } }));
      out.push(errorSummary(uerr));
      out.push((await prisma.counter.findMany({
        where: { id: { startsWith: id } }, orderBy: { id: 'asc' },
      })).map((r) => [r.id, r.value]));
      await prisma.user.delete({ where: { id: `${id}-u1` } });
    }
    return out;
  });
});

test('raw queries with named statements: typed parameters, many shapes', async () => {
  await onBoth(async (prisma, tag) => {
    const out = [];
    for (let i = 0; i < 30; i++) {
      out.push(await prisma.$queryRaw`SELECT ${i}::int + 1 AS n, ${`${tag}-${i}`}::text AS t,
        ${BigInt(i) * 10000000000n}::int8 AS big, ${i % 2 === 0} AS even`);
      out.push(await prisma.$queryRawUnsafe(`SELECT $1::int * ${i % 5} AS m`, i));
    }
    out.push(await prisma.$executeRaw`UPDATE "Counter" SET value = value WHERE id = ${tag}`);
    return out;
  });
});

test('statement names: every query was named, names were reused, PostgreSQL has them', async () => {
  assert.ok(generated.size >= 20, `only ${generated.size} statement names were generated`);
  assert.ok(generatorCalls >= 10 * generated.size,
    `${generatorCalls} named executions for ${generated.size} names`);
  assert.ok([...generated.values()].some((sql) => /^BEGIN/i.test(sql)), 'BEGIN is named too');
  // directly, a connection's pg_prepared_statements holds the generated names
  const prisma = clients.direct;
  const names = await prisma.$transaction(async (tx) => {
    await tx.counter.count();
    return (await tx.$queryRaw`SELECT name FROM pg_prepared_statements`).map((r) => r.name);
  });
  assert.ok(names.length >= 2 && names.every((n) => generated.has(n)), JSON.stringify(names));
});
