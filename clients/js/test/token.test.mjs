// Connect tokens on the client: parsing (14.3), the local pre-flight, token
// message 1 (14.4), refusals (14.6) and the cookie exchange keyed by the
// client key (10.4, 14.4), against a scripted server.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseToken, connect, SttError } from '../dist/index.js';
import { Session } from '../dist/session.js';
import { encodeHeader } from '../dist/frame.js';
import { challengeKey, hmacSha256 } from '../dist/kdf.js';
import { concat, hex } from '../dist/bytes.js';
import { base64urlDecode, base64urlEncode } from '../dist/token.js';
import { issue, nowSecs } from './helpers/issuer.mjs';

test('parseToken reads every field of an issued token', () => {
  const now = nowSecs();
  const { token, ticket, clientKey } = issue({ issuedAt: now, expiresAt: now + 60, audience: ['eu-1', 'ünïcode'], clientId: 0xfedcba9876543210n, data: new Uint8Array(40) });
  const t = parseToken(token);
  assert.equal(t.clientId, 0xfedcba9876543210n);
  assert.equal(t.issuedAt.getTime(), now * 1000);
  assert.equal(t.expiresAt.getTime(), (now + 60) * 1000);
  assert.deepEqual(t.audience, ['eu-1', 'ünïcode']);
  assert.equal(hex(t.clientKey), hex(clientKey));
  assert.equal(hex(t.ticket), hex(ticket));
  assert.ok(t.ticket.length >= 96);
});

test('parseToken refuses malformed tokens with TOKEN_INVALID', () => {
  const now = nowSecs();
  const { token } = issue({ issuedAt: now, expiresAt: now + 60 });
  const body = base64urlDecode(token.slice(5));
  const bad = (b) => 'stt1.' + base64urlEncode(b);
  const cases = {
    'no prefix': token.slice(5),
    'bad base64': 'stt1.@@@@',
    'version 2': bad(concat(Uint8Array.of(2), body.subarray(1))),
    truncated: bad(body.subarray(0, body.length - 1)),
    trailing: bad(concat(body, Uint8Array.of(0))),
    'no audience': bad(concat(body.subarray(0, 57), Uint8Array.of(0), body.subarray(58))),
    'ticket too short': bad(concat(body.subarray(0, 57 + 1 + 5), Uint8Array.of(0, 10), new Uint8Array(10))),
    'expires before issued': issue({ issuedAt: now, expiresAt: now - 1 }).token,
  };
  for (const [name, t] of Object.entries(cases)) {
    assert.throws(() => parseToken(t), (e) => e instanceof SttError && e.code === 'TOKEN_INVALID', name);
  }
});

test('an expired token is refused locally before any connection is attempted', async () => {
  const now = nowSecs();
  const { token } = issue({ issuedAt: now - 120, expiresAt: now - 60 });
  let constructed = 0;
  class NoWs {
    constructor() {
      constructed++;
    }
  }
  await assert.rejects(
    connect('ws://127.0.0.1:9/', { token, WebSocket: NoWs }),
    (e) => e instanceof SttError && e.code === 'TOKEN_EXPIRED' && /expired at/.test(e.message),
  );
  // Through a token function too.
  await assert.rejects(connect('ws://127.0.0.1:9/', { token: async () => token, WebSocket: NoWs }), (e) => e.code === 'TOKEN_EXPIRED');
  assert.equal(constructed, 0);
});

function tokenSession(extra = {}) {
  const now = nowSecs();
  const { ticket, clientKey } = issue({ issuedAt: now, expiresAt: now + 60 });
  const out = [];
  let ended;
  let t = 0;
  const s = new Session(
    { psk: clientKey, ticket, capabilities: 0, fixture: { sessionId: Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8) } },
    { transmit: (d) => out.push(d), message() {}, confirmed() {}, pong() {}, peerError() {}, ended: (r) => (ended = r), ...extra },
    () => t,
  );
  return { s, out, ticket, clientKey, ended: () => ended, advance: (ms) => (t += ms) };
}

test('token message 1 carries T and the ticket before the Noise message', () => {
  const { s, out, ticket } = tokenSession();
  const m1 = out[0];
  const T = ticket.length;
  assert.equal(m1.length, 143 + T);
  assert.equal(hex(m1.subarray(0, 29)), hex(encodeHeader(0x05, 0, Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8), 0, 1, 114 + T)));
  assert.equal((m1[29] << 8) | m1[30], T);
  assert.equal(hex(m1.subarray(31, 31 + T)), hex(ticket));
  assert.equal(m1.length - 31 - T, 112);
  assert.equal(hex(s.message1), hex(m1));
});

function refusal(m1, clientKey, reason, sid = m1.subarray(5, 13)) {
  const head = concat(encodeHeader(0x04, 0, sid, 0, 2, 17), Uint8Array.of(reason));
  const mac = hmacSha256(challengeKey(clientKey), head, m1).subarray(0, 16);
  return concat(head, mac);
}

test('a refusal with a valid MAC ends the handshake with its reason', () => {
  for (const [code, reason] of [[1, 'expired'], [2, 'not_yet_valid'], [3, 'wrong_audience'], [4, 'revoked'], [5, 'unknown'], [200, 'unknown']]) {
    const { s, out, clientKey, ended } = tokenSession();
    const r = refusal(out[0], clientKey, code);
    assert.equal(r.length, 46);
    s.handleDatagram(r);
    assert.equal(s.state, 'closed');
    assert.deepEqual(ended(), { kind: 'refused', reason, code });
  }
});

test('a refusal with a wrong MAC, or for another message 1, is dropped', () => {
  const { s, out, clientKey } = tokenSession();
  const forged = refusal(out[0], new Uint8Array(32).fill(7), 3);
  s.handleDatagram(forged);
  const other = refusal(concat(out[0], Uint8Array.of(0)), clientKey, 3);
  s.handleDatagram(other);
  assert.equal(s.state, 'handshaking');
  assert.equal(s.stats.frames_dropped, 2);
});

test('a cookie challenge keyed by the client key is echoed, then retransmitted as the echo', () => {
  const { s, out, clientKey, ticket, advance } = tokenSession();
  const m1 = out[0];
  const head = concat(encodeHeader(0x04, 0, m1.subarray(5, 13), 0, 0, 32), new Uint8Array(16).fill(0xcc));
  const challenge = concat(head, hmacSha256(challengeKey(clientKey), head, m1).subarray(0, 16));
  assert.equal(challenge.length, 61);
  s.handleDatagram(challenge);
  assert.equal(out.length, 2);
  const echo = out[1];
  assert.equal(echo.length, 45 + 143 + ticket.length);
  assert.equal(hex(echo.subarray(0, 29)), hex(encodeHeader(0x04, 0, m1.subarray(5, 13), 0, 1, 16 + m1.length)));
  assert.equal(hex(echo.subarray(29, 45)), 'cc'.repeat(16));
  assert.equal(hex(echo.subarray(45)), hex(m1));
  // The same challenge again waits for the timer.
  s.handleDatagram(challenge);
  assert.equal(out.length, 2);
  advance(250);
  s.onTimer();
  assert.equal(hex(out[2]), hex(echo));
  // A challenge whose MAC does not verify is dropped.
  const bad = challenge.slice();
  bad[50] ^= 1;
  s.handleDatagram(bad);
  assert.equal(out.length, 3);
  assert.equal(s.stats.frames_dropped, 1);
});
