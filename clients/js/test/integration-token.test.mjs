// Against a real `stt serve --audience` with connect tokens from `stt token`
// (PROTOCOL.md 14): the product's way in.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, parseToken, SttError } from '../dist/index.js';
import { tempDir, makeSeeds, startServer, issueToken } from './helpers/server.mjs';
import { echoMany, bigEcho, waitFor, sleep } from './helpers/suite.mjs';

let dir, seeds, server;
const AUD = 'js-test';
const token = (lifetime = 300) => issueToken(['--seed-file', seeds, '--audience', AUD, '--client-id', String(1 + Math.floor(Math.random() * 1e9)), '--lifetime', String(lifetime)]);

before(async () => {
  dir = tempDir();
  seeds = makeSeeds(dir.path);
  server = await startServer(['--seed-file', seeds, '--audience', AUD]);
});
after(async () => {
  await server?.stop();
  dir?.remove();
});

test('handshake with a token, echo, statistics', async () => {
  const t = token();
  assert.deepEqual(parseToken(t).audience, [AUD]);
  const s = await connect(server.url, { token: t, reconnect: false });
  const got = new Promise((r) => (s.onmessage = r));
  s.send('hello from a token client');
  assert.equal(new TextDecoder().decode((await got).data), 'hello from a token client');
  const st = s.getStatistics();
  assert.equal(st.state, 'open');
  assert.equal(st.frames_dropped, 0);
  assert.equal(st.messages_received, 1);
  assert.ok(st.bytes_sent > 143 + 96);
  await s.close();
});

test('10,000 messages both ways over a token session: none lost, none duplicated', async () => {
  const s = await connect(server.url, { token: token(), reconnect: false });
  const r = await echoMany(s, 10_000);
  assert.deepEqual(r, { received: 10_000, dups: 0, bad: 0 });
  const st = s.getStatistics();
  assert.equal(st.messages_sent, 10_000);
  assert.equal(st.messages_received, 10_000);
  assert.equal(st.frames_dropped, 0);
  await s.close();
});

test('a 1 MiB message echoed intact over a token session', async () => {
  const s = await connect(server.url, { token: token(), reconnect: false });
  await bigEcho(s, 1 << 20);
  await s.close();
});

test('a server restart is ridden out: reconnection with a fresh token from the function', async () => {
  const srv = await startServer(['--seed-file', seeds, '--audience', AUD]);
  let fetched = 0;
  const s = await connect(srv.url, {
    token: async () => {
      fetched++;
      return token();
    },
    reconnect: { initialDelayMs: 50, maxDelayMs: 400 },
  });
  let info;
  s.onreconnect = (i) => (info = i);
  const before = s.getStatistics().session_id;
  await srv.stop();
  await waitFor(() => s.state === 'reconnecting', 5000, 'reconnecting');
  assert.throws(() => s.send('x'), (e) => e instanceof SttError && e.code === 'NOT_OPEN');
  await sleep(300);
  const srv2 = await startServer(['--seed-file', seeds, '--audience', AUD], srv.port);
  try {
    await waitFor(() => info !== undefined, 15_000, 'reconnection');
    assert.equal(s.state, 'open');
    assert.notEqual(s.getStatistics().session_id, before);
    assert.ok(fetched >= 2, `token function called ${fetched} times`);
    const r = await echoMany(s, 1000);
    assert.deepEqual(r, { received: 1000, dups: 0, bad: 0 });
    assert.equal(s.getStatistics().reconnects, 1);
    await s.close();
  } finally {
    await srv2.stop();
  }
});

test('a static token rides out a restart too (the new server has not seen it)', async () => {
  const srv = await startServer(['--seed-file', seeds, '--audience', AUD]);
  const s = await connect(srv.url, { token: token(), reconnect: { initialDelayMs: 50, maxDelayMs: 400 } });
  let info;
  s.onreconnect = (i) => (info = i);
  await srv.stop();
  const srv2 = await startServer(['--seed-file', seeds, '--audience', AUD], srv.port);
  try {
    await waitFor(() => info !== undefined, 15_000, 'reconnection');
    const got = new Promise((r) => (s.onmessage = r));
    s.send('after restart');
    assert.equal(new TextDecoder().decode((await got).data), 'after restart');
    await s.close();
  } finally {
    await srv2.stop();
  }
});

test('an expired token is refused locally with TOKEN_EXPIRED and a clear message', async () => {
  const t = token(1);
  await sleep(1100 + (parseToken(t).expiresAt.getTime() - Date.now()));
  await assert.rejects(connect(server.url, { token: t, reconnect: false }), (e) => {
    assert.ok(e instanceof SttError);
    assert.equal(e.code, 'TOKEN_EXPIRED');
    assert.match(e.message, /expired at .*new one/);
    return true;
  });
});

test('a token for another audience is refused by the server: TOKEN_REFUSED wrong_audience', async () => {
  const t = issueToken(['--seed-file', seeds, '--audience', 'some-other-server', '--client-id', '7']);
  const started = Date.now();
  await assert.rejects(connect(server.url, { token: t, reconnect: false }), (e) => {
    assert.ok(e instanceof SttError);
    assert.equal(e.code, 'TOKEN_REFUSED');
    assert.equal(e.reason, 'wrong_audience');
    return true;
  });
  assert.ok(Date.now() - started < 2000, 'the refusal is immediate, not a timeout');
});

test('a second session with the same token replaces the first: CLOSE 9 REPLACED, and the first does not reconnect', async () => {
  const t = token();
  const first = await connect(server.url, { token: t, reconnect: { initialDelayMs: 20 } });
  const closed = new Promise((r) => (first.onclose = r));
  const second = await connect(server.url, { token: t, reconnect: false });
  const ev = await closed;
  assert.equal(ev.code, 9);
  assert.equal(ev.error.code, 'CLOSED');
  assert.equal(ev.error.closeCode, 9);
  assert.equal(first.state, 'closed');
  assert.equal(first.getStatistics().reconnects, 0);
  const got = new Promise((r) => (second.onmessage = r));
  second.send('still here');
  assert.equal(new TextDecoder().decode((await got).data), 'still here');
  await second.close();
});

test('a token from another network (other issuing key) gets no answer: HANDSHAKE_TIMEOUT', async () => {
  const other = tempDir();
  try {
    const t = issueToken(['--seed-file', makeSeeds(other.path), '--audience', AUD, '--client-id', '9']);
    await assert.rejects(connect(server.url, { token: t, reconnect: false, handshakeTimeoutMs: 1200 }), (e) => e.code === 'HANDSHAKE_TIMEOUT');
  } finally {
    other.remove();
  }
});

test('peer pins the server: its own node id connects, another fails before message 3', async () => {
  const nodeId = /^node ([0-9a-f]{64})$/m.exec(server.output())[1];
  const s = await connect(server.url, { token: token(), reconnect: false, peer: nodeId });
  assert.equal(s.getStatistics().peer_node, nodeId);
  await s.close();
  await assert.rejects(
    connect(server.url, { token: token(), reconnect: false, peer: '00'.repeat(32) }),
    (e) => e instanceof SttError && e.code === 'HANDSHAKE_FAILED' && /not the expected/.test(e.message),
  );
});
