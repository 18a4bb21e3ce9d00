// pusher-js 8.6.0 (WebSocket) and pusher 5.3.4 (HTTP SDK) against the real server.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { startServer, once, connected } = require('./helpers');

let server;
before(async () => { server = await startServer(); });
after(async () => { await server.stop(); });

test('public channel receives an HTTP trigger', async () => {
  const c = server.client();
  await connected(c);
  const ch = c.subscribe('public-news');
  await once(ch, 'pusher:subscription_succeeded');
  const got = once(ch, 'update');
  const res = await server.api.trigger('public-news', 'update', { hello: 'world' });
  assert.equal(res.status, 200);
  assert.deepEqual(await got, { hello: 'world' });
});

test('private channel with a valid signature', async () => {
  const c = server.client();
  const ch = c.subscribe('private-orders');
  await once(ch, 'pusher:subscription_succeeded');
  const got = once(ch, 'created');
  await server.api.trigger('private-orders', 'created', { id: 7 });
  assert.deepEqual(await got, { id: 7 });
});

test('a bad signature answers subscription_error 401 and keeps the connection', async () => {
  const c = server.client('u1', { badAuth: true });
  await connected(c);
  for (const name of ['private-x', 'presence-x', 'private-cache-x', 'presence-cache-x', 'private-encrypted-x']) {
    const ch = c.subscribe(name);
    const err = await once(ch, 'pusher:subscription_error');
    assert.equal(err.status, 401, name);
    assert.equal(err.type, 'AuthError', name);
  }
  assert.equal(c.connection.state, 'connected');
  const ok = c.subscribe('public-after-error');
  await once(ok, 'pusher:subscription_succeeded');
});

test('presence: members, member_added once per user, member_removed', async () => {
  const a = server.client('alice');
  const ch = a.subscribe('presence-room');
  const members = await once(ch, 'pusher:subscription_succeeded');
  assert.equal(members.count, 1);
  assert.equal(members.me.id, 'alice');

  const added = once(ch, 'pusher:member_added');
  const b1 = server.client('bob');
  const chB1 = b1.subscribe('presence-room');
  await once(chB1, 'pusher:subscription_succeeded');
  const member = await added;
  assert.equal(member.id, 'bob');
  assert.equal(member.info.name, 'user bob');
  assert.equal(ch.members.count, 2);

  // Bob's second socket: no new member_added.
  let extra = 0;
  ch.bind('pusher:member_added', () => { extra += 1; });
  const b2 = server.client('bob');
  await once(b2.subscribe('presence-room'), 'pusher:subscription_succeeded');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(extra, 0);

  const removed = once(ch, 'pusher:member_removed');
  b1.disconnect();
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(ch.members.count, 2, 'bob still has a socket');
  b2.disconnect();
  assert.equal((await removed).id, 'bob');
  assert.equal(ch.members.count, 1);
});

test('private-encrypted channel: the SDK encrypts, pusher-js decrypts', async () => {
  const c = server.client();
  const ch = c.subscribe('private-encrypted-vault');
  await once(ch, 'pusher:subscription_succeeded');
  const got = once(ch, 'secret');
  await server.api.trigger('private-encrypted-vault', 'secret', { code: 42 });
  assert.deepEqual(await got, { code: 42 });
});

test('cache channel: cache_miss first, then the last event is replayed', async () => {
  const a = server.client();
  const ch = a.subscribe('cache-prices');
  await once(ch, 'pusher:cache_miss');
  await server.api.trigger('cache-prices', 'price', { v: 1 });
  await server.api.trigger('cache-prices', 'price', { v: 2 });
  const b = server.client();
  const chB = b.subscribe('cache-prices');
  assert.deepEqual(await once(chB, 'price'), { v: 2 });
  const p = server.client();
  const chP = p.subscribe('presence-cache-lobby');
  await once(chP, 'pusher:cache_miss');
});

test('client events reach others, not the sender', async () => {
  const a = server.client('a');
  const b = server.client('b');
  const chA = a.subscribe('private-chat');
  const chB = b.subscribe('private-chat');
  await Promise.all([once(chA, 'pusher:subscription_succeeded'), once(chB, 'pusher:subscription_succeeded')]);
  let echoed = false;
  chA.bind('client-typing', () => { echoed = true; });
  const got = once(chB, 'client-typing');
  assert.equal(chA.trigger('client-typing', { who: 'a' }), true);
  assert.deepEqual(await got, { who: 'a' });
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(echoed, false);
});

test('subscription_count reaches subscribers', async () => {
  const a = server.client();
  const ch = a.subscribe('counted');
  const first = await once(ch, 'pusher:subscription_count');
  assert.equal(first.subscription_count, 1);
  const b = server.client();
  const next = once(ch, 'pusher:subscription_count');
  b.subscribe('counted');
  assert.equal((await next).subscription_count, 2);
});

test('HTTP API: batch, channels, channel info, users', async () => {
  const a = server.client('ua');
  const b = server.client('ub');
  const chA = a.subscribe('presence-api');
  await once(chA, 'pusher:subscription_succeeded');
  await once(b.subscribe('presence-api'), 'pusher:subscription_succeeded');
  const pub = a.subscribe('api-public');
  await once(pub, 'pusher:subscription_succeeded');

  const b1 = once(pub, 'b1');
  const b2 = once(pub, 'b2');
  const batch = await server.api.triggerBatch([
    { channel: 'api-public', name: 'b1', data: '1' },
    { channel: 'api-public', name: 'b2', data: '2' },
  ]);
  assert.equal(batch.status, 200);
  await Promise.all([b1, b2]);

  const channels = await (await server.api.get({ path: '/channels' })).json();
  assert.ok(channels.channels['api-public']);
  assert.ok(channels.channels['presence-api']);
  const presence = await (await server.api.get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } })).json();
  assert.equal(presence.channels['presence-api'].user_count, 2);
  const info = await (await server.api.get({ path: '/channels/presence-api', params: { info: 'user_count,subscription_count' } })).json();
  assert.deepEqual(info, { occupied: true, user_count: 2, subscription_count: 2 });
  const users = await (await server.api.get({ path: '/channels/presence-api/users' })).json();
  assert.deepEqual(users.users.map((u) => u.id).sort(), ['ua', 'ub']);
  await assert.rejects(server.api.get({ path: '/channels/api-public/users' }), (e) => e.status === 400);
});

test('signin, sendToUser and terminate_connections', async () => {
  const c = server.client('signed-user');
  await connected(c);
  c.signin();
  await c.user.signinDonePromise;
  // pusher-js subscribes to #server-to-user-<id> after sign-in; give it a moment.
  await new Promise((r) => setTimeout(r, 200));
  const got = once(c.user, 'direct');
  const res = await server.api.sendToUser('signed-user', 'direct', { hi: 1 });
  assert.equal(res.status, 200);
  assert.deepEqual(await got, { hi: 1 });

  const closed = new Promise((resolve) => c.connection.bind('state_change', (s) => {
    if (s.current === 'disconnected' || s.current === 'failed' || s.current === 'unavailable') resolve(s.current);
  }));
  const t = await server.api.terminateUserConnections('signed-user');
  assert.equal(t.status, 200);
  await closed;
});
