// Shared helpers of the Prisma end-to-end tests (not a test file: no .test. in its name).
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { PrismaPg } from '@prisma/adapter-pg';
import generated from '../generated/client/index.js';

export const { PrismaClient, Prisma } = generated;

function need(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: run these tests through ` +
      'tests/integration/test_prisma_e2e.py (or set DATABASE_URL, DIRECT_URL, ADMIN_URL, ' +
      'BAD_PASSWORD_URL, BAD_DB_URL yourself)');
  }
  return v;
}

export const env = {
  get pgtide() { return need('DATABASE_URL'); },
  get direct() { return need('DIRECT_URL'); },
  get admin() { return need('ADMIN_URL'); },
  get badPassword() { return need('BAD_PASSWORD_URL'); },
  get badDb() { return need('BAD_DB_URL'); },
};

// The two targets every comparison runs against.
export const targets = () => [
  { name: 'pgtide', url: env.pgtide },
  { name: 'direct', url: env.direct },
];

// A unique application_name per client: reporting.test.mjs finds its connection by it.
export function appName(prefix) {
  return `${prefix}-${process.pid}-${randomUUID().slice(0, 8)}`;
}

// A PrismaClient on the adapter, as an application would build it.
export function makeClient(url, { application_name = appName('prisma-e2e'), max, ...pool } = {},
  clientOptions = {}) {
  const adapter = new PrismaPg({
    connectionString: url,
    application_name,
    ...(max ? { max } : {}),
    ...pool,
  });
  const prisma = new PrismaClient({ adapter, ...clientOptions });
  prisma.applicationName = application_name;
  return prisma;
}

// Runs fn(prisma) with a client on url and always disconnects it.
export async function withClient(url, fn, opts, clientOptions) {
  const prisma = makeClient(url, opts, clientOptions);
  try {
    return await fn(prisma);
  } finally {
    await prisma.$disconnect();
  }
}

export function uid(prefix = 'x') {
  return `${prefix}-${randomUUID()}`;
}

// Awaits p, which must reject; returns the error.
export async function rejection(p, what = 'the operation') {
  try {
    await p;
  } catch (e) {
    return e;
  }
  assert.fail(`${what} succeeded; an error was expected`);
}

// The comparable part of a Prisma error: code, class, and the adapter's MappedError.
export function errorSummary(e) {
  const cause = e?.meta?.driverAdapterError?.cause ?? e?.cause;
  return {
    name: e?.name,
    code: e?.code,
    kind: cause?.kind,
    originalCode: cause?.originalCode,
    constraint: cause?.constraint,
    table: cause?.table,
    db: cause?.db,
    user: cause?.user,
  };
}

// A gate two concurrent transactions use to run in a fixed interleaving.
export function latch() {
  let open;
  const p = new Promise((resolve) => { open = resolve; });
  return { wait: () => p, open: () => open() };
}
