// Transport choices: an injected WebSocket constructor, and wss:// against
// `stt serve --tls-cert` (a self-signed certificate trusted through
// NODE_EXTRA_CA_CERTS in a child Node process).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, execFile } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, SttError } from '../dist/index.js';
import { tempDir, makeSeeds, startServer, issueToken } from './helpers/server.mjs';

let dir, seeds;
before(() => {
  dir = tempDir();
  seeds = makeSeeds(dir.path);
});
after(() => dir?.remove());

test('an injected WebSocket constructor is used (and none at all is a clear error)', async () => {
  const server = await startServer(['--seed-file', seeds, '--audience', 'inj']);
  try {
    const urls = [];
    class Counting extends WebSocket {
      constructor(url) {
        super(url);
        urls.push(url);
      }
    }
    const token = issueToken(['--seed-file', seeds, '--audience', 'inj', '--client-id', '3']);
    const s = await connect(server.url, { token, WebSocket: Counting, reconnect: false });
    assert.deepEqual(urls, [server.url]);
    const got = new Promise((r) => (s.onmessage = r));
    s.send(new Uint8Array([1, 2, 3]).buffer);
    assert.deepEqual([...(await got).data], [1, 2, 3]);
    await s.close();
    const saved = globalThis.WebSocket;
    globalThis.WebSocket = undefined;
    try {
      await assert.rejects(connect(server.url, { token }), (e) => e instanceof SttError && e.code === 'CONNECTION_FAILED' && /WebSocket constructor/.test(e.message));
    } finally {
      globalThis.WebSocket = saved;
    }
  } finally {
    await server.stop();
  }
});

test('nothing listening: CONNECTION_FAILED at once', async () => {
  const server = await startServer(['--seed-file', seeds, '--audience', 'x']);
  const url = server.url;
  await server.stop();
  const token = issueToken(['--seed-file', seeds, '--audience', 'x', '--client-id', '4']);
  const t = Date.now();
  await assert.rejects(connect(url, { token, reconnect: false }), (e) => e.code === 'CONNECTION_FAILED');
  assert.ok(Date.now() - t < 3000);
});

test('wss:// with a self-signed certificate', async () => {
  const cert = join(dir.path, 'cert.pem');
  const key = join(dir.path, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  const server = await startServer(['--seed-file', seeds, '--audience', 'tls', '--tls-cert', cert, '--tls-key', key], 0, 'wss');
  try {
    const token = issueToken(['--seed-file', seeds, '--audience', 'tls', '--client-id', '5']);
    const script = `
      import { connect } from ${JSON.stringify(fileURLToPath(new URL('../dist/index.js', import.meta.url)))};
      const s = await connect(process.argv[1], { token: process.argv[2], reconnect: false });
      const got = new Promise((r) => (s.onmessage = r));
      s.send('over tls');
      console.log('echo:' + new TextDecoder().decode((await got).data));
      await s.close();`;
    const out = await new Promise((res, rej) =>
      execFile(process.execPath, ['--experimental-websocket', '--input-type=module', '-e', script, server.url, token], { env: { ...process.env, NODE_EXTRA_CA_CERTS: cert }, timeout: 20_000 }, (e, stdout, stderr) => (e ? rej(new Error(stderr || e.message)) : res(stdout))),
    );
    assert.match(out, /echo:over tls/);
  } finally {
    await server.stop();
  }
});
