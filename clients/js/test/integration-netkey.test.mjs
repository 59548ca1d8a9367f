// Against a real `stt serve` with the network key (a member handshake,
// PROTOCOL.md 5): the protocol core end to end, independent of tokens.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from '../dist/index.js';
import { tempDir, makeSeeds, networkKey, startServer } from './helpers/server.mjs';

let dir, seeds, psk, server;

before(async () => {
  dir = tempDir();
  seeds = makeSeeds(dir.path);
  psk = await networkKey(seeds);
  server = await startServer(['--seed-file', seeds]);
});
after(async () => {
  await server?.stop();
  dir?.remove();
});

test('member handshake, echo, ping, statistics, close', async () => {
  const s = await connect(server.url, { token: 'unused', networkKey: psk, reconnect: false });
  assert.equal(s.state, 'open');
  const got = new Promise((r) => (s.onmessage = r));
  s.send('hello stt');
  const m = await got;
  assert.equal(new TextDecoder().decode(m.data), 'hello stt');
  const rtt = await s.ping();
  assert.ok(rtt > 0 && rtt < 1000, `rtt ${rtt}`);
  const st = s.getStatistics();
  assert.equal(st.messages_sent, 1);
  assert.equal(st.messages_received, 1);
  assert.equal(st.frames_dropped, 0);
  assert.match(st.session_id, /^[0-9a-f]{16}$/);
  assert.match(st.peer_node, /^[0-9a-f]{64}$/);
  assert.ok(st.aead === 'aes-256-gcm' || st.aead === 'chacha20-poly1305');
  await s.close();
  assert.equal(s.state, 'closed');
});

test('key update and rekey with fresh X25519 keep messages flowing', async () => {
  const s = await connect(server.url, { token: 'unused', networkKey: psk, reconnect: false });
  const received = [];
  s.onmessage = (m) => received.push(new TextDecoder().decode(m.data));
  s.send('a');
  s.updateKeys();
  s.send('b');
  await s.ping(); // the pong confirms the new generation
  s.rekey();
  for (let i = 0; i < 50 && s.getStatistics().rekeys === 0; i++) await new Promise((r) => setTimeout(r, 20));
  s.send('c');
  await s.ping();
  s.updateKeys();
  s.send('d');
  await s.ping();
  for (let i = 0; i < 50 && received.length < 4; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(received, ['a', 'b', 'c', 'd']);
  const st = s.getStatistics();
  assert.equal(st.rekeys, 1);
  assert.ok(st.key_updates >= 3, `key_updates ${st.key_updates}`);
  assert.equal(st.frames_dropped, 0);
  await s.close();
});

import { echoMany, bigEcho, waitFor } from './helpers/suite.mjs';

test('10,000 messages both ways, none lost, none duplicated', async () => {
  const s = await connect(server.url, { token: 'unused', networkKey: psk, reconnect: false });
  const r = await echoMany(s, 10_000);
  assert.deepEqual(r, { received: 10_000, dups: 0, bad: 0 });
  const st = s.getStatistics();
  assert.equal(st.messages_sent, 10_000);
  assert.equal(st.messages_received, 10_000);
  assert.equal(st.frames_dropped, 0);
  await s.close();
});

test('a 1 MiB message echoed intact', async () => {
  const s = await connect(server.url, { token: 'unused', networkKey: psk, reconnect: false });
  await bigEcho(s, 1 << 20);
  await s.close();
});

test('a 1 MiB message sent as STREAM fragments is reassembled by the server', async () => {
  const s = await connect(server.url, { token: 'unused', networkKey: psk, reconnect: false, session: { fragmentAbove: 1427, fragmentChunk: 1412 } });
  await bigEcho(s, 1 << 20);
  assert.equal(s.getStatistics().frames_sent > 700, true);
  await s.close();
});

test('a server restart is ridden out by reconnection', async () => {
  const srv = await startServer(['--seed-file', seeds]);
  const s = await connect(srv.url, { token: 'unused', networkKey: psk, reconnect: { initialDelayMs: 50, maxDelayMs: 500 } });
  const states = [];
  s.onstatechange = (st) => states.push(st);
  const first = s.getStatistics().session_id;
  let info;
  s.onreconnect = (i) => (info = i);
  await srv.stop();
  await waitFor(() => s.state === 'reconnecting', 5000, 'reconnecting');
  const srv2 = await startServer(['--seed-file', seeds], srv.port);
  try {
    await waitFor(() => info !== undefined, 15_000, 'reconnect');
    assert.equal(s.state, 'open');
    assert.notEqual(s.getStatistics().session_id, first);
    assert.equal(info.sessionId.toString(16).padStart(16, '0'), s.getStatistics().session_id);
    const r = await echoMany(s, 1000);
    assert.deepEqual(r, { received: 1000, dups: 0, bad: 0 });
    assert.equal(s.getStatistics().reconnects, 1);
    assert.deepEqual(states.slice(0, 2), ['reconnecting', 'open']);
    await s.close();
  } finally {
    await srv2.stop();
  }
});

test('messages sent in one turn travel as BATCH frames; coalesce: false sends one frame each', async () => {
  for (const coalesce of [true, false]) {
    const s = await connect(server.url, { token: 'unused', networkKey: psk, reconnect: false, coalesce });
    const before = s.getStatistics().frames_sent;
    const got = [];
    s.onmessage = (m) => got.push(m.data[0]);
    for (let i = 0; i < 100; i++) s.send(Uint8Array.of(i, 0, 0));
    await waitFor(() => got.length === 100, 5000, '100 echoes');
    assert.deepEqual(got, [...Array(100).keys()]);
    const frames = s.getStatistics().frames_sent - before;
    if (coalesce) assert.ok(frames < 5, `${frames} frames for 100 messages`);
    else assert.ok(frames >= 100, `${frames} frames for 100 messages`);
    assert.equal(s.getStatistics().messages_sent, 100);
    await s.close();
  }
});
