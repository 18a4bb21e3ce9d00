// pusher-js across two nodes sharing a real redis-server (adapter `redis`): presence members,
// HTTP publishes and client events cross nodes. The full cross-node suite is the Rust
// `cluster_suite`; this checks the same paths through the real browser client.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const net = require('node:net');
const { startServer, once, connected, freePort } = require('./helpers');

let redis;
let nodeA;
let nodeB;

async function startRedis() {
  const port = await freePort();
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], { stdio: 'ignore' });
  proc.on('error', (e) => { throw new Error(`redis-server is not installed (tests/setup/install-deps.sh): ${e.message}`); });
  const deadline = Date.now() + 10000;
  while (Date.now() < deadline) {
    const ok = await new Promise((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.end(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return { port, proc };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('redis-server did not start');
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  redis = await startRedis();
  const fleet = (id) => ({
    node_id: id,
    adapter: { driver: 'redis', prefix: 'js', heartbeat_interval_ms: 300, node_timeout_ms: 3000 },
    database: { redis: { url: `redis://127.0.0.1:${redis.port}` } },
  });
  nodeA = await startServer({}, fleet('js-a'));
  nodeB = await startServer({}, fleet('js-b'));
  // Ready means the adapter answers; wait for the nodes to see each other's heartbeats.
  await sleep(1000);
});

after(async () => {
  await nodeA.stop();
  await nodeB.stop();
  redis.proc.kill('SIGKILL');
});

test('presence members and HTTP publishes cross nodes', async () => {
  const alice = nodeA.client('alice');
  await connected(alice);
  const chA = alice.subscribe('presence-cross');
  await once(chA, 'pusher:subscription_succeeded');

  // Node B's HTTP API lists alice once her join is replicated.
  const deadline = Date.now() + 10000;
  for (;;) {
    const r = await nodeB.api.get({ path: '/channels/presence-cross/users' });
    const body = await r.json();
    if (body.users.some((u) => u.id === 'alice')) break;
    assert.ok(Date.now() < deadline, 'alice never listed by node B');
    await sleep(100);
  }

  const added = once(chA, 'pusher:member_added', 10000);
  const bob = nodeB.client('bob');
  const chB = bob.subscribe('presence-cross');
  const members = await once(chB, 'pusher:subscription_succeeded', 10000);
  assert.equal(members.count, 2, 'subscription_succeeded lists the member of node A');
  assert.equal((await added).id, 'bob');

  const got = once(chA, 'news', 10000);
  const res = await nodeB.api.trigger('presence-cross', 'news', { from: 'b' });
  assert.equal(res.status, 200);
  assert.deepEqual(await got, { from: 'b' });

  const typed = once(chA, 'client-typing', 10000);
  chB.trigger('client-typing', { who: 'bob' });
  assert.deepEqual(await typed, { who: 'bob' });

  const removed = once(chA, 'pusher:member_removed', 10000);
  bob.disconnect();
  assert.equal((await removed).id, 'bob');
});
