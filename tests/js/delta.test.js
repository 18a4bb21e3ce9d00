// Delta frames decoded by the JS decoders the realtime clients use: `fossil-delta` (applyDelta with
// checksum verification) and `@ably/vcdiff-decoder`. Every decoded frame must equal, byte for
// byte, the frame a client without deltas receives.
'use strict';
const test = require('node:test');
const assert = require('node:assert');
const WebSocket = require('ws');
const fossil = require('fossil-delta');
const vcdiff = require('@ably/vcdiff-decoder');
const { startServer, APP } = require('./helpers');

function rawClient(port) {
  const ws = new WebSocket(`ws://127.0.0.1:${port}/app/${APP.key}?protocol=7&client=js&version=8.6.0`);
  const frames = [];
  const waiters = [];
  ws.on('message', (buf) => {
    frames.push(buf.toString('utf8'));
    while (waiters.length) waiters.shift()();
  });
  const next = async (pred, ms = 5000) => {
    const deadline = Date.now() + ms;
    for (;;) {
      const i = frames.findIndex(pred);
      if (i >= 0) return frames.splice(i, 1)[0];
      if (Date.now() > deadline) throw new Error('timeout waiting for a frame');
      await new Promise((r) => { waiters.push(r); setTimeout(r, 50); });
    }
  };
  return { ws, next, send: (o) => ws.send(JSON.stringify(o)) };
}

const isEvent = (name) => (f) => JSON.parse(f).event === name;

// What a browser client does: keep the plain frame per stream, strip the metadata of full frames.
function decoder(apply) {
  const bases = new Map();
  return (text) => {
    const msg = JSON.parse(text);
    if (msg.event === 'pusher:delta') {
      const d = msg.data;
      const key = `${msg.channel}\u0000${d.conflation_key ?? ''}`;
      const base = bases.get(key);
      assert.ok(base, 'delta without base');
      assert.strictEqual(base.seq, d.base_index);
      const out = Buffer.from(apply(new Uint8Array(Buffer.from(base.plain)), new Uint8Array(Buffer.from(d.delta, 'base64')))).toString('utf8');
      bases.set(key, { seq: d.seq, plain: out });
      return { plain: out, kind: 'delta', seq: d.seq };
    }
    const at = text.lastIndexOf(',"__delta_seq":');
    assert.ok(at > 0, `full frame without __delta_seq: ${text}`);
    const plain = `${text.slice(0, at)}}`;
    const key = `${msg.channel}\u0000${msg.__conflation_key ?? ''}`;
    bases.set(key, { seq: msg.__delta_seq, plain });
    return { plain, kind: 'full', seq: msg.__delta_seq };
  };
}

test('fossil-delta and @ably/vcdiff-decoder rebuild every frame', async () => {
  const server = await startServer();
  try {
    const plainC = rawClient(server.port);
    const fossilC = rawClient(server.port);
    const vcdiffC = rawClient(server.port);
    for (const c of [plainC, fossilC, vcdiffC]) await c.next(isEvent('pusher:connection_established'));
    fossilC.send({ event: 'pusher:enable_delta_compression', data: {} });
    const enabled = JSON.parse(await fossilC.next(isEvent('pusher:delta_compression_enabled')));
    assert.deepStrictEqual(enabled.data, { enabled: true, algorithm: 'fossil' });
    plainC.send({ event: 'pusher:subscribe', data: { channel: 'prices' } });
    fossilC.send({ event: 'pusher:subscribe', data: { channel: 'prices' } });
    vcdiffC.send({ event: 'pusher:subscribe', data: { channel: 'prices', delta: 'xdelta3' } });
    for (const c of [plainC, fossilC, vcdiffC]) await c.next(isEvent('pusher_internal:subscription_succeeded'));

    const decFossil = decoder((src, d) => fossil.applyDelta(src, d, { verifyChecksum: true }));
    const decVcdiff = decoder((src, d) => vcdiff.decode(d, src));
    const kinds = { fossil: [], vcdiff: [] };
    const isApp = (f) => { const e = JSON.parse(f).event; return e === 'tick' || e === 'pusher:delta'; };
    for (let i = 1; i <= 12; i++) {
      const data = {
        asset: 'BTC', name: 'Bitcoin / US Dollar', exchange: 'loopback', status: 'trading',
        price: (64000 + i * 1.25).toFixed(2), volume: 1000 + i * 7, ts: 1700000000000 + i,
        description: 'A realistic ticker payload with mostly static descriptive fields around a few numbers.',
      };
      await server.api.trigger('prices', 'tick', data);
      const expected = await plainC.next(isApp);
      assert.ok(!expected.includes('__delta_seq'), 'plain clients get plain frames');
      const f = decFossil(await fossilC.next(isApp));
      const v = decVcdiff(await vcdiffC.next(isApp));
      assert.strictEqual(f.plain, expected);
      assert.strictEqual(v.plain, expected);
      kinds.fossil.push(f.kind);
      kinds.vcdiff.push(v.kind);
    }
    // Full first and on seq 10 (full_message_interval 10), deltas otherwise.
    const want = Array.from({ length: 12 }, (_, i) => (i === 0 || i === 9 ? 'full' : 'delta'));
    assert.deepStrictEqual(kinds.fossil, want);
    assert.deepStrictEqual(kinds.vcdiff, want);
    for (const c of [plainC, fossilC, vcdiffC]) c.ws.close();
  } finally {
    await server.stop();
  }
});
