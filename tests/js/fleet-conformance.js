// Conformance of a running fleet (started by `sockudo-fleet`), with the real clients: pusher-js
// over WebSocket and the pusher HTTP SDK. Endpoints and what the configuration promises come from
// the FLEET environment variable (JSON from `Fleet::describe`). Run by
// tests/fleet/tests/conformance.rs; the file name has no `.test.js` so that `node --test tests/js/`
// (the single-server suite) does not pick it up without a fleet.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const http = require('node:http');

const PusherJS = require('pusher-js');
const PusherServer = require('pusher');
const { once } = require('./helpers');

if (!process.env.FLEET) throw new Error('FLEET is not set: run this through `cargo test -p sockudo-fleet`');
const fleet = JSON.parse(process.env.FLEET);
const APP = fleet.apps[0];
const nodes = fleet.nodes;
const n = nodes.length;
// Another node than `i` when there is one: the cross-node half of every check.
const other = (i) => (i + 1) % n;
const unique = (prefix) => `${prefix}-${process.pid}-${Date.now()}`;

function api(node, extra = {}) {
  return new PusherServer({
    appId: APP.id, key: APP.key, secret: APP.secret, host: node.host, port: String(node.port), useTLS: false, ...extra,
  });
}

const clients = [];
after(() => clients.forEach((c) => c.disconnect()));

function client(node, userId = 'u1') {
  const signer = api(node);
  const c = new PusherJS(APP.key, {
    cluster: 'mt1', wsHost: node.host, wsPort: node.port, wssPort: node.port, forceTLS: false, enabledTransports: ['ws'],
    channelAuthorization: {
      customHandler: ({ socketId, channelName }, cb) => {
        try {
          cb(null, channelName.startsWith('presence-')
            ? signer.authorizeChannel(socketId, channelName, { user_id: userId, user_info: { name: userId } })
            : signer.authorizeChannel(socketId, channelName));
        } catch (e) { cb(e, null); }
      },
    },
  });
  clients.push(c);
  return c;
}

test(`delivery: every node gets what any node publishes (${n} node(s), adapter ${fleet.adapter})`, async () => {
  const channel = unique('fleet-delivery');
  const subs = [];
  for (const node of nodes) {
    const ch = client(node).subscribe(channel);
    await once(ch, 'pusher:subscription_succeeded');
    subs.push(ch);
  }
  for (const node of nodes) {
    const got = subs.map((ch) => once(ch, 'hello'));
    const res = await api(node).trigger(channel, 'hello', { from: node.name });
    assert.equal(res.status, 200);
    for (const data of await Promise.all(got)) assert.deepEqual(data, { from: node.name });
  }
});

test('presence: members are the same on every node', async () => {
  const channel = unique('presence-fleet');
  const chA = client(nodes[0], 'alice').subscribe(channel);
  assert.equal((await once(chA, 'pusher:subscription_succeeded')).count, 1);
  // Presence is replicated between nodes: wait (generously) until bob's node has heard of alice.
  const deadline = Date.now() + 10000;
  for (;;) {
    const res = await api(nodes[other(0)]).get({ path: `/channels/${channel}/users` });
    if (res.status === 200 && (await res.json()).users.some((u) => u.id === 'alice')) break;
    assert.ok(Date.now() < deadline, `alice never appeared on ${nodes[other(0)].name}`);
    await new Promise((r) => setTimeout(r, 50));
  }

  const added = once(chA, 'pusher:member_added');
  const bob = client(nodes[other(0)], 'bob');
  const chB = bob.subscribe(channel);
  const members = await once(chB, 'pusher:subscription_succeeded');
  assert.equal(members.count, 2);
  assert.deepEqual(Object.keys(members.members).sort(), ['alice', 'bob']);
  assert.equal((await added).id, 'bob');

  // The HTTP API of yet another node lists both (once bob's join has reached it).
  let ids = [];
  for (const until = Date.now() + 10000; Date.now() < until; await new Promise((r) => setTimeout(r, 50))) {
    const res = await api(nodes[other(other(0))]).get({ path: `/channels/${channel}/users` });
    ids = (await res.json()).users.map((u) => u.id).sort();
    if (ids.length === 2) break;
  }
  assert.deepEqual(ids, ['alice', 'bob']);

  const removed = once(chA, 'pusher:member_removed');
  bob.disconnect();
  assert.equal((await removed).id, 'bob');
});

const cacheWhere = fleet.cache.shared ? 'on another node (shared cache)' : 'on the same node (per-node cache)';
test(`cache channel: the last event is replayed ${cacheWhere}`, { skip: !fleet.cache.enabled && 'cache driver none' }, async () => {
  const channel = unique('cache-fleet');
  const publisher = nodes[0];
  const subscriber = fleet.cache.shared ? nodes[other(0)] : nodes[0];
  assert.equal((await api(publisher).trigger(channel, 'price', { v: 1 })).status, 200);
  assert.equal((await api(publisher).trigger(channel, 'price', { v: 2 })).status, 200);
  const ch = client(subscriber).subscribe(channel);
  const replayed = once(ch, 'price');
  await once(ch, 'pusher:subscription_succeeded');
  assert.deepEqual(await replayed, { v: 2 });
});

// Last: it spends the API budget of its own source address. The Rust side sets a long window, so
// the GCRA bucket does not refill during the burst and the counts are exact.
const rl = fleet.rate_limiter;
const targets = nodes.slice(0, Math.min(2, n));
const perNode = !rl.shared && targets.length > 1;
test(`rate limit: ${targets.length} node(s) together let through ${perNode ? `${targets.length} x ` : ''}${rl.api.max_requests} API requests (${rl.driver} limiter${perNode ? ', per node' : ''})`,
  { skip: !rl.active && 'rate limiter off' }, async () => {
    const expected = perNode ? rl.api.max_requests * targets.length : rl.api.max_requests;
    // A source address no other test used, so its per-IP budget is untouched.
    const agent = new http.Agent({ localAddress: '127.0.0.77', keepAlive: true });
    const apis = targets.map((node) => api(node, { agent }));
    let allowed = 0;
    let limited = 0;
    const total = expected + 10 * targets.length;
    for (let i = 0; i < total; i += 1) {
      try {
        await apis[i % apis.length].get({ path: '/channels' });
        allowed += 1;
      } catch (e) {
        if (e.status !== 429) throw e;
        limited += 1;
      }
    }
    agent.destroy();
    assert.equal(allowed, expected, `${allowed} allowed, ${limited} limited`);
    assert.equal(limited, total - expected);
  });

// Delta compression (synchronised full-message intervals when cluster coordination is on) is
// checked after this file by tests/fleet/tests/common/delta.rs with the decoding client of
// tests/delta-client, since pusher-js does not decode deltas.
