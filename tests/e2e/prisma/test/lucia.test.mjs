// Lucia v2 (lucia@2 + @lucia-auth/adapter-prisma@3) on Prisma 7, through pgtide in transaction
// pooling mode, and directly for comparison.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { lucia, LuciaError } from 'lucia';
import { prisma as prismaAdapter } from '@lucia-auth/adapter-prisma';
import { makeClient, rejection, targets, uid } from './lib.mjs';

const clients = {}; // target name -> PrismaClient
const auths = {}; // target name -> Lucia Auth

before(() => {
  for (const t of targets()) {
    clients[t.name] = makeClient(t.url, { application_name: `prisma-e2e-lucia-${t.name}` });
    auths[t.name] = lucia({
      env: 'DEV',
      adapter: prismaAdapter(clients[t.name]),
      getUserAttributes: (u) => ({ email: u.email }),
    });
  }
});

after(async () => {
  await Promise.all(Object.values(clients).map((c) => c.$disconnect()));
});

async function luciaError(p, message) {
  const e = await rejection(p, `a Lucia call expected to fail with ${message}`);
  assert.ok(e instanceof LuciaError, `a LuciaError, got ${e?.name}: ${e?.message}`);
  assert.equal(e.message, message);
}

test('Lucia flow: user with a password key, use the key, session created, validated, invalidated, user deleted', async () => {
  for (const t of targets()) {
    const auth = auths[t.name];
    const db = clients.direct; // check what landed in PostgreSQL, independently of pgtide
    const email = `${uid(`lucia-${t.name}`)}@example.com`;
    const password = 'correct horse battery staple ü';

    // create a user with a password key (one batch transaction: user + key)
    const user = await auth.createUser({
      key: { providerId: 'email', providerUserId: email, password },
      attributes: { email },
    });
    assert.equal(user.email, email);
    const keyRow = await db.key.findUnique({ where: { id: `email:${email}` } });
    assert.equal(keyRow.user_id, user.userId);
    assert.match(keyRow.hashed_password, /^s2:/, 'Lucia v2 scrypt hash');

    // use the key: right password, then wrong password, then unknown key
    const key = await auth.useKey('email', email, password);
    assert.deepEqual(key, {
      userId: user.userId, providerId: 'email', providerUserId: email, passwordDefined: true,
    });
    await luciaError(auth.useKey('email', email, 'wrong'), 'AUTH_INVALID_PASSWORD');
    await luciaError(auth.useKey('email', `nobody-${email}`, password), 'AUTH_INVALID_KEY_ID');

    // create a session and validate it
    const session = await auth.createSession({ userId: key.userId, attributes: {} });
    assert.equal(session.user.userId, user.userId);
    assert.equal(session.state, 'active');
    const sessionRow = await db.session.findUnique({ where: { id: session.sessionId } });
    assert.equal(typeof sessionRow.active_expires, 'bigint');
    assert.equal(Number(sessionRow.active_expires), session.activePeriodExpiresAt.getTime());
    const validated = await auth.validateSession(session.sessionId);
    assert.equal(validated.sessionId, session.sessionId);
    assert.equal(validated.user.email, email);
    assert.equal(validated.fresh, false);
    assert.equal((await auth.getAllUserSessions(user.userId)).length, 1);

    // invalidate it
    await auth.invalidateSession(session.sessionId);
    await luciaError(auth.validateSession(session.sessionId), 'AUTH_INVALID_SESSION_ID');
    assert.equal(await db.session.count({ where: { id: session.sessionId } }), 0);

    // delete the user: key and sessions go with it
    await auth.createSession({ userId: user.userId, attributes: {} });
    await auth.deleteUser(user.userId);
    await luciaError(auth.getUser(user.userId), 'AUTH_INVALID_USER_ID');
    assert.equal(await db.user.count({ where: { id: user.userId } }), 0);
    assert.equal(await db.key.count({ where: { user_id: user.userId } }), 0);
    assert.equal(await db.session.count({ where: { user_id: user.userId } }), 0);
  }
});

test('Lucia sees database errors through pgtide as it does directly', async () => {
  const outcome = {};
  for (const t of targets()) {
    const auth = auths[t.name];
    const db = clients.direct;
    const email = `${uid(`lucia-err-${t.name}`)}@example.com`;
    const user = await auth.createUser({
      key: { providerId: 'email', providerUserId: email, password: 'pw' }, attributes: { email },
    });

    // a session for a user that does not exist: Prisma's P2003 becomes AUTH_INVALID_USER_ID
    await luciaError(auth.createSession({ userId: uid('ghost-user'), attributes: {} }),
      'AUTH_INVALID_USER_ID');

    // a second user with the same email: P2002 on user_email_key from the batch
    // transaction, passed on as is; the batch rolls back (no user, no key left behind)
    const other = `${uid('other')}@example.com`;
    const dupEmail = await rejection(auth.createUser({
      key: { providerId: 'email', providerUserId: other, password: 'pw' }, attributes: { email },
    }));
    assert.equal(dupEmail.code, 'P2002');
    assert.match(dupEmail.message, /`user_email_key`/);
    assert.equal(await db.key.count({ where: { id: `email:${other}` } }), 0);

    // the same key for a new user. Lucia v2 looks for "`id`" in the P2002 message to raise
    // AUTH_DUPLICATE_KEY_ID; Prisma 7 names the constraint instead (`key_pkey`), so the
    // Prisma error comes through unchanged (the same directly and through pgtide).
    const dupKey = await rejection(auth.createUser({
      key: { providerId: 'email', providerUserId: email, password: 'pw' },
      attributes: { email: other },
    }));
    assert.equal(dupKey.code, 'P2002');
    assert.equal(await db.user.count({ where: { email: other } }), 0, 'the batch rolled back');

    await auth.deleteUser(user.userId);
    outcome[t.name] = {
      dupEmail: [dupEmail.code, dupEmail.message.split('\n').at(-1)],
      dupKey: [dupKey.name, dupKey.code, dupKey.message.split('\n').at(-1)],
    };
  }
  assert.deepEqual(outcome.pgtide, outcome.direct);
});
