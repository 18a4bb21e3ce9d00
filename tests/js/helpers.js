// Starts the real `sockudo` binary with a temp config on free loopback ports, and builds
// pusher-js / pusher (HTTP SDK) clients pointed at it.
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const PusherJS = require('pusher-js');
const PusherServer = require('pusher');

const BIN = process.env.SOCKUDO_BIN || path.join(__dirname, '..', '..', 'target', 'debug', 'sockudo');
const APP = { id: '1234', key: 'app-key', secret: 'app-secret' };
// 32 bytes, base64: the HTTP SDK encrypts private-encrypted events with keys derived from it.
const ENCRYPTION_MASTER_KEY = Buffer.alloc(32, 7).toString('base64');

// A free loopback port below the kernel's ephemeral range (as tests/backends' free_port): an
// outgoing connection could take an ephemeral port between this check and the server's bind.
function tryPort(port) {
  return new Promise((resolve) => {
    const srv = net.createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

// Never hand a port out twice: two calls before the server binds could otherwise both find the
// same port free.
const handedOut = new Set();

async function freePort() {
  const start = 10000 + Math.floor(Math.random() * 10000);
  for (let i = 0; i < 10000; i += 1) {
    const port = 10000 + ((start - 10000 + i) % 10000);
    if (!handedOut.has(port) && await tryPort(port)) {
      handedOut.add(port);
      return port;
    }
  }
  throw new Error('no free loopback port in 10000-19999');
}

async function waitReady(port, proc, output) {
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    if (proc.exitCode !== null) throw new Error(`sockudo exited with ${proc.exitCode}:\n${output.join('')}`);
    try {
      const r = await fetch(`http://127.0.0.1:${port}/ready`);
      if (r.status === 200) return;
    } catch (_) { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`sockudo did not become ready:\n${output.join('')}`);
}

/** Starts a server; `appOverrides` are merged into the app's config, `serverOverrides` into the
 *  top level (e.g. `adapter`, `database`, `node_id` for a multi-node test). */
async function startServer(appOverrides = {}, serverOverrides = {}) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`server binary not found at ${BIN}: run \`cargo build -p sockudo-server\` first (or set SOCKUDO_BIN)`);
  }
  const port = await freePort();
  const metricsPort = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sockudo-js-'));
  const config = {
    host: '127.0.0.1',
    port,
    shutdown_grace_period: 0,
    metrics: { host: '127.0.0.1', port: metricsPort },
    rate_limiter: { enabled: false },
    ...serverOverrides,
    apps: [{
      id: APP.id, key: APP.key, secret: APP.secret,
      ...appOverrides,
      features: { enable_client_messages: true, enable_subscription_count: true, ...(appOverrides.features || {}) },
    }],
  };
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  const output = [];
  const proc = spawn(BIN, ['--config', file], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, RUST_LOG: 'warn' } });
  proc.stdout.on('data', (d) => output.push(d.toString()));
  proc.stderr.on('data', (d) => output.push(d.toString()));
  await waitReady(port, proc, output);
  const clients = [];
  return {
    port,
    metricsPort,
    output,
    api: new PusherServer({
      appId: APP.id, key: APP.key, secret: APP.secret, host: '127.0.0.1', port: String(port), useTLS: false,
      encryptionMasterKeyBase64: ENCRYPTION_MASTER_KEY,
    }),
    /** A pusher-js client; `userId` drives presence data and sign-in. */
    client(userId = 'u1', { badAuth = false } = {}) {
      const api = this.api;
      const c = new PusherJS(APP.key, {
        cluster: 'mt1', wsHost: '127.0.0.1', wsPort: port, wssPort: port, forceTLS: false, enabledTransports: ['ws'],
        channelAuthorization: {
          customHandler: ({ socketId, channelName }, cb) => {
            try {
              const auth = channelName.startsWith('presence-')
                ? api.authorizeChannel(socketId, channelName, { user_id: userId, user_info: { name: `user ${userId}` } })
                : api.authorizeChannel(socketId, channelName);
              if (badAuth) auth.auth = `${APP.key}:${'0'.repeat(64)}`;
              cb(null, auth);
            } catch (e) { cb(e, null); }
          },
        },
        userAuthentication: {
          customHandler: ({ socketId }, cb) => cb(null, api.authenticateUser(socketId, { id: userId, watchlist: [] })),
        },
      });
      clients.push(c);
      return c;
    },
    /** SIGTERM and wait, leaving the other nodes of a fleet running. */
    async stop() {
      clients.forEach((c) => c.disconnect());
      proc.kill('SIGTERM');
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.once('exit', r)));
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Resolves with the first `event` on an emitter that has `bind`, or rejects after `ms`. */
function once(emitter, event, ms = 5000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timeout waiting for ${event}`)), ms);
    const handler = (data) => { clearTimeout(t); emitter.unbind(event, handler); resolve(data); };
    emitter.bind(event, handler);
  });
}

function connected(client) {
  return new Promise((resolve, reject) => {
    if (client.connection.state === 'connected') return resolve(client.connection.socket_id);
    const t = setTimeout(() => reject(new Error('timeout connecting')), 5000);
    client.connection.bind('connected', () => { clearTimeout(t); resolve(client.connection.socket_id); });
  });
}

module.exports = { startServer, once, connected, freePort, APP };
