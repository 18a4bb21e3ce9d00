// The WebSocket connect rate limit, seen by pusher-js: over the limit the server upgrades and
// answers `pusher:error` 4100, which pusher-js treats as "back off and retry", so the client
// connects by itself once the limit allows it (an HTTP 429 would be a generic failure to it).
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { startServer, connected } = require('./helpers');

test('over the connect rate limit: 4100, then pusher-js backs off and connects', async (t) => {
  const server = await startServer({}, {
    rate_limiter: {
      enabled: true,
      driver: 'memory',
      websocket_rate_limit: { max_requests: 1, window_seconds: 2 },
    },
  });
  t.after(() => server.stop());
  const first = server.client('first');
  await connected(first);
  const second = server.client('second');
  const errors = [];
  second.connection.bind('error', (e) => errors.push(e));
  // One connect per 2 s: the second client is refused at least once, then let in.
  const deadline = Date.now() + 15000;
  while (second.connection.state !== 'connected') {
    assert.ok(Date.now() < deadline, `still ${second.connection.state}; errors ${JSON.stringify(errors)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const codes = errors.map((e) => e.error && e.error.data && e.error.data.code);
  assert.ok(codes.includes(4100), `a 4100 refusal came first: ${JSON.stringify(errors)}`);
});
