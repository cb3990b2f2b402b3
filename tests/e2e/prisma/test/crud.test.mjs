// CRUD on every model and exact round trips of every type Prisma maps, through pgtide
// (DATABASE_URL), compared with PostgreSQL directly (DIRECT_URL).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Prisma, env, makeClient, uid } from './lib.mjs';

let tide; // through pgtide
let direct; // PostgreSQL itself

before(() => {
  tide = makeClient(env.pgtide, { application_name: 'prisma-e2e-crud' });
  direct = makeClient(env.direct, { application_name: 'prisma-e2e-crud-direct' });
});

after(async () => {
  await tide?.$disconnect();
  await direct?.$disconnect();
});

const ALL_BYTES = Uint8Array.from({ length: 256 }, (_, i) => i);

// Values chosen to break anything that is not an exact, byte-transparent relay.
function sampleRows(tag) {
  return [
    {
      tag,
      int: 2147483647,
      bigint: 2n ** 53n + 1n, // not representable as a JS number
      float: 0.1 + 0.2, // 0.30000000000000004: needs all 17 digits
      decimal: new Prisma.Decimal('1234567890.1234567891'), // 20 significant digits
      bool: true,
      datetime: new Date('2024-02-29T23:59:59.123Z'),
      datetimetz: new Date('1999-12-31T23:59:59.999Z'),
      json: {
        nested: { deeper: { deepest: [1, 2, { x: null, y: [true, false] }] } },
        text: 'quote " backslash \\ newline \n tab \t unicode ü 🚀 nul-free',
        number: 1.5,
        big: 12345678901234567890, // JSON numbers are doubles: it comes back as this double
        empty: { obj: {}, arr: [] },
      },
      bytes: ALL_BYTES,
      strings: ['a,b', 'say "hi"', "it's", 'back\\slash', '{braces}', 'NULL', '', 'ünïcødé 🚀',
        ' spaced ', 'multi\nline'],
      mood: 'SO_SO',
      optional: null,
    },
    {
      tag,
      int: -2147483648,
      bigint: 9223372036854775807n, // 2^63 - 1
      float: -1.2345678901234567e-300,
      decimal: new Prisma.Decimal('-98765432109876543210.0000000001'), // 30 digits
      bool: false,
      datetime: new Date('1970-01-01T00:00:00.001Z'),
      datetimetz: new Date('2038-01-19T03:14:07.999Z'),
      json: [1, 'two', { three: [3] }],
      bytes: Uint8Array.from([0, 0, 255, 0]),
      strings: [],
      mood: 'HAPPY',
      optional: 'set',
    },
    {
      tag,
      int: 0,
      bigint: -9223372036854775806n, // near -2^63
      float: 12345.678901234567,
      decimal: new Prisma.Decimal('0.0000000001'),
      bool: true,
      datetime: new Date('2000-01-01T12:00:00.000Z'),
      datetimetz: new Date('2000-01-01T12:00:00.500Z'),
      json: 'just a string',
      bytes: new Uint8Array(0),
      strings: ['single'],
      mood: 'SAD',
      optional: '',
    },
  ];
}

// JSON text with object keys sorted (jsonb stores keys in its own order).
function canonicalJson(v) {
  return JSON.stringify(v, (k, x) => (x && typeof x === 'object' && !Array.isArray(x)
    ? Object.fromEntries(Object.keys(x).sort().map((key) => [key, x[key]])) : x));
}

// A row as comparable plain values (BigInt, Decimal, Date, bytes turned into exact strings).
function plain(row) {
  return {
    tag: row.tag,
    int: row.int,
    bigint: row.bigint.toString(),
    float: Object.is(row.float, -0) ? '-0' : String(row.float),
    decimal: new Prisma.Decimal(row.decimal).toFixed(10),
    bool: row.bool,
    datetime: row.datetime.toISOString(),
    datetimetz: row.datetimetz.toISOString(),
    json: canonicalJson(row.json),
    bytes: Buffer.from(row.bytes).toString('hex'),
    strings: JSON.stringify(row.strings),
    mood: row.mood,
    optional: row.optional,
  };
}

test('AllTypes: every type round-trips exactly through pgtide, and PostgreSQL agrees', async () => {
  const tag = uid('types');
  const rows = sampleRows(tag);
  const created = [];
  for (const data of rows) created.push(await tide.allTypes.create({ data }));

  // create's RETURNING values are exact
  assert.deepEqual(created.map(plain), rows.map(plain));
  // JS types are what Prisma documents
  const r0 = created[0];
  assert.equal(typeof r0.bigint, 'bigint');
  assert.equal(r0.bigint, 9007199254740993n);
  assert.ok(Prisma.Decimal.isDecimal(r0.decimal));
  assert.equal(r0.decimal.toString(), '1234567890.1234567891');
  assert.equal(created[1].decimal.toFixed(10), '-98765432109876543210.0000000001');
  assert.ok(r0.datetime instanceof Date);
  assert.equal(r0.datetime.getUTCMilliseconds(), 123);
  assert.ok(r0.bytes instanceof Uint8Array);
  assert.equal(r0.bytes.length, 256);
  assert.deepEqual([...r0.bytes], [...ALL_BYTES]);
  assert.equal(r0.json.nested.deeper.deepest[2].y[1], false);
  assert.equal(created[1].bigint, 2n ** 63n - 1n);

  // read back through pgtide and directly: identical
  const viaTide = await tide.allTypes.findMany({ where: { tag }, orderBy: { id: 'asc' } });
  const viaDirect = await direct.allTypes.findMany({ where: { tag }, orderBy: { id: 'asc' } });
  assert.deepEqual(viaTide.map(plain), rows.map(plain));
  assert.deepEqual(viaDirect.map(plain), rows.map(plain));
  assert.deepEqual(viaTide, viaDirect);

  // filters on each type select the same rows through both
  const filters = [
    { bigint: 2n ** 53n + 1n },
    { bigint: { gt: 2n ** 62n } },
    { decimal: new Prisma.Decimal('1234567890.1234567891') },
    { datetime: new Date('2024-02-29T23:59:59.123Z') },
    { strings: { has: 'a,b' } },
    { strings: { isEmpty: true } },
    { mood: 'SO_SO' },
    { json: { path: ['nested', 'deeper', 'deepest'], array_contains: [1] } },
    { bytes: ALL_BYTES },
    { optional: null },
  ];
  for (const f of filters) {
    const where = { tag, ...f };
    const a = await tide.allTypes.findMany({ where, select: { id: true }, orderBy: { id: 'asc' } });
    const b = await direct.allTypes.findMany({ where, select: { id: true }, orderBy: { id: 'asc' } });
    assert.equal(a.length, 1, `filter ${JSON.stringify(f, (k, v) =>
      (typeof v === 'bigint' ? v.toString() : v))} matches one row`);
    assert.deepEqual(a, b);
  }
});

test('AllTypes: values written directly read back identically through pgtide', async () => {
  const tag = uid('types-direct');
  const rows = sampleRows(tag);
  for (const data of rows) await direct.allTypes.create({ data });
  const viaTide = await tide.allTypes.findMany({ where: { tag }, orderBy: { id: 'asc' } });
  assert.deepEqual(viaTide.map(plain), rows.map(plain));
});

test('AllTypes: update, upsert, aggregate, groupBy, delete', async () => {
  const tag = uid('types-crud');
  const [row] = sampleRows(tag);
  const a = await tide.allTypes.create({ data: row });

  const b = await tide.allTypes.update({
    where: { id: a.id },
    data: {
      int: { increment: -1 },
      bigint: { increment: 1n }, // 2^53 + 2
      decimal: { increment: new Prisma.Decimal('0.0000000009') },
      strings: { push: 'pushed "x"' },
      json: { replaced: true },
      bytes: Uint8Array.from([1, 2, 3]),
      mood: 'HAPPY',
      optional: 'now set',
    },
  });
  assert.equal(b.int, 2147483646);
  assert.equal(b.bigint, 9007199254740994n);
  assert.equal(b.decimal.toString(), '1234567890.12345679'); // + 0.0000000009
  assert.equal(b.strings.at(-1), 'pushed "x"');
  assert.deepEqual(b.json, { replaced: true });
  assert.deepEqual([...b.bytes], [1, 2, 3]);

  const up1 = await tide.allTypes.upsert({
    where: { id: a.id }, update: { optional: 'upserted' }, create: { ...row, optional: 'new' },
  });
  assert.equal(up1.id, a.id);
  assert.equal(up1.optional, 'upserted');
  const up2 = await tide.allTypes.upsert({
    where: { id: -1 }, update: { optional: 'nope' }, create: { ...row, optional: 'created' },
  });
  assert.notEqual(up2.id, a.id);
  assert.equal(up2.optional, 'created');

  const agg = await tide.allTypes.aggregate({
    where: { tag }, _count: true, _sum: { bigint: true, decimal: true }, _max: { datetime: true },
  });
  assert.equal(agg._count, 2);
  assert.equal(agg._sum.bigint, 9007199254740994n + 9007199254740993n);
  assert.equal(agg._sum.decimal.toString(), '2469135780.2469135791');
  assert.deepEqual(agg._max.datetime, new Date('2024-02-29T23:59:59.123Z'));
  assert.deepEqual(agg, await direct.allTypes.aggregate({
    where: { tag }, _count: true, _sum: { bigint: true, decimal: true }, _max: { datetime: true },
  }));

  const groups = await tide.allTypes.groupBy({
    by: ['mood'], where: { tag }, _count: { _all: true }, orderBy: { mood: 'asc' },
  });
  assert.deepEqual(groups.map((g) => [g.mood, g._count._all]), [['HAPPY', 1], ['SO_SO', 1]]);

  const del = await tide.allTypes.delete({ where: { id: a.id } });
  assert.equal(del.id, a.id);
  assert.equal(await tide.allTypes.findUnique({ where: { id: a.id } }), null);
  const dm = await tide.allTypes.deleteMany({ where: { tag } });
  assert.equal(dm.count, 1);
  assert.equal(await direct.allTypes.count({ where: { tag } }), 0);
});

test('Lucia models (user, session, key): create, read, update, cascade delete', async () => {
  const userId = uid('u');
  const email = `${userId}@example.com`;
  const user = await tide.user.create({
    data: {
      id: userId,
      email,
      key: { create: [{ id: `email:${email}`, hashed_password: 's2:salt:hash' }] },
      auth_session: {
        create: [{ id: uid('s'), active_expires: 1700000000000n, idle_expires: 9007199254740993n }],
      },
    },
    include: { key: true, auth_session: true },
  });
  assert.equal(user.email, email);
  assert.equal(user.key.length, 1);
  assert.equal(user.auth_session[0].idle_expires, 9007199254740993n);

  const sessionId = user.auth_session[0].id;
  const s = await tide.session.update({
    where: { id: sessionId }, data: { active_expires: { increment: 1000n } },
  });
  assert.equal(s.active_expires, 1700000001000n);
  const byEmail = await tide.user.findUnique({ where: { email }, include: { key: true } });
  assert.equal(byEmail.id, userId);
  assert.equal(byEmail.key[0].hashed_password, 's2:salt:hash');
  const k = await tide.key.update({
    where: { id: `email:${email}` }, data: { hashed_password: null },
  });
  assert.equal(k.hashed_password, null);
  assert.deepEqual(
    await direct.user.findUnique({ where: { id: userId }, include: { key: true, auth_session: true } }),
    await tide.user.findUnique({ where: { id: userId }, include: { key: true, auth_session: true } }),
  );

  await tide.user.delete({ where: { id: userId } });
  assert.equal(await tide.session.count({ where: { user_id: userId } }), 0); // ON DELETE CASCADE
  assert.equal(await tide.key.count({ where: { user_id: userId } }), 0);
  assert.equal(await direct.user.count({ where: { id: userId } }), 0);
});

test('Author/Post: nested create, include, relation filters, createMany, updateMany', async () => {
  const name = uid('author');
  const author = await tide.author.create({
    data: {
      name,
      posts: { create: [{ title: 'first', note: 'n1' }, { title: 'second', note: 'n2' }] },
    },
    include: { posts: { orderBy: { id: 'asc' } } },
  });
  assert.deepEqual(author.posts.map((p) => p.title), ['first', 'second']);

  const many = await tide.post.createMany({
    data: Array.from({ length: 20 }, (_, i) => ({ title: `bulk ${i}`, authorId: author.id, note: 'b' })),
  });
  assert.equal(many.count, 20);
  const upd = await tide.post.updateMany({
    where: { authorId: author.id, title: { startsWith: 'bulk' } }, data: { note: 'updated' },
  });
  assert.equal(upd.count, 20);

  const withPosts = await tide.author.findMany({
    where: { name, posts: { some: { note: 'updated' } } },
    include: { _count: { select: { posts: true } } },
  });
  assert.equal(withPosts.length, 1);
  assert.equal(withPosts[0]._count.posts, 22);
  const page = await tide.post.findMany({
    where: { authorId: author.id }, orderBy: { id: 'asc' }, skip: 5, take: 3,
    select: { title: true, author: { select: { name: true } } },
  });
  assert.deepEqual(page.map((p) => p.title), ['bulk 3', 'bulk 4', 'bulk 5']);
  assert.equal(page[0].author.name, name);

  await tide.post.deleteMany({ where: { authorId: author.id } });
  await tide.author.delete({ where: { id: author.id } });
  assert.equal(await direct.author.count({ where: { name } }), 0);
});

test('Counter: create, increment, upsert, findMany ordering, delete', async () => {
  const prefix = uid('ctr');
  for (let i = 0; i < 5; i++) await tide.counter.create({ data: { id: `${prefix}-${i}`, value: i } });
  await tide.counter.update({ where: { id: `${prefix}-0` }, data: { value: { increment: 10 } } });
  await tide.counter.upsert({
    where: { id: `${prefix}-9` }, update: {}, create: { id: `${prefix}-9`, value: 99 },
  });
  const rows = await tide.counter.findMany({
    where: { id: { startsWith: prefix } }, orderBy: { value: 'desc' },
  });
  assert.deepEqual(rows.map((r) => r.value), [99, 10, 4, 3, 2, 1]);
  const dm = await tide.counter.deleteMany({ where: { id: { startsWith: prefix } } });
  assert.equal(dm.count, 6);
});

test('a large result set (3000 rows, ~1 MB) arrives complete and identical', async () => {
  const tag = uid('bulk');
  const blob = 'x'.repeat(300);
  const data = Array.from({ length: 3000 }, (_, i) => ({
    tag,
    int: i,
    bigint: BigInt(i) * 1000000000000n,
    float: i / 7,
    decimal: `${i}.${String(i).padStart(10, '0')}`,
    bool: i % 2 === 0,
    datetime: new Date(Date.UTC(2020, 0, 1, 0, 0, 0, i)),
    datetimetz: new Date(Date.UTC(2020, 0, 1, 0, 0, 0, i)),
    json: { i, blob },
    bytes: Uint8Array.from([i & 255, (i >> 8) & 255]),
    strings: [String(i), blob],
    mood: ['HAPPY', 'SAD', 'SO_SO'][i % 3],
  }));
  const c = await tide.allTypes.createMany({ data });
  assert.equal(c.count, 3000);
  const a = await tide.allTypes.findMany({ where: { tag }, orderBy: { int: 'asc' } });
  const b = await direct.allTypes.findMany({ where: { tag }, orderBy: { int: 'asc' } });
  assert.equal(a.length, 3000);
  assert.deepEqual(a.map(plain), b.map(plain));
  assert.equal(a[2999].bigint, 2999000000000000n);
  assert.equal(a[2999].decimal.toFixed(10), '2999.0000002999');
  await tide.allTypes.deleteMany({ where: { tag } });
});

test('raw queries: $queryRaw with typed parameters and $executeRaw agree with PostgreSQL', async () => {
  const sql = (p) => p.$queryRaw`
    SELECT ${2n ** 62n}::int8 AS big, ${'12345678901234567890.1234567891'}::numeric AS num,
           ${Buffer.from(ALL_BYTES)}::bytea AS bytes, ${['a,b', '"q"', 'ü']}::text[] AS arr,
           ${new Date('2024-02-29T23:59:59.123Z')}::timestamptz AS ts,
           current_setting('TimeZone') AS tz, current_setting('DateStyle') AS ds,
           current_setting('client_encoding') AS enc, current_setting('standard_conforming_strings') AS scs,
           current_setting('transaction_isolation') AS iso`;
  const [a] = await sql(tide);
  const [b] = await sql(direct);
  assert.equal(a.big, 2n ** 62n);
  assert.equal(a.num.toString(), '12345678901234567890.1234567891');
  assert.deepEqual([...a.bytes], [...ALL_BYTES]);
  assert.deepEqual(a.arr, ['a,b', '"q"', 'ü']);
  assert.equal(a.ts.toISOString(), '2024-02-29T23:59:59.123Z');
  assert.deepEqual(a, b);

  const tag = uid('raw');
  const n = await tide.$executeRaw`UPDATE "Counter" SET value = value + 1 WHERE id = ${tag}`;
  assert.equal(n, 0);
  await tide.counter.create({ data: { id: tag } });
  assert.equal(await tide.$executeRaw`UPDATE "Counter" SET value = value + 1 WHERE id = ${tag}`, 1);
  assert.equal(await tide.$executeRawUnsafe(`DELETE FROM "Counter" WHERE id = $1`, tag), 1);
});
