// Every vector of testdata/vectors.json (generated and checked by the Rust
// crate): key schedule, member and token handshakes with fixed keys, sealed
// frames under both AEADs, the token and its ticket, the cookie exchange and
// refusal of a token message 1, and the replay window's decisions.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { fromHex, hex, text, concat } from '../dist/bytes.js';
import { dataKey, nextSecret, hkdf32, hmacSha256 } from '../dist/kdf.js';
import { makeCipher, frameNonce, aeadTuning } from '../dist/aead.js';
import { encodeHeader } from '../dist/frame.js';
import { decodeControl } from '../dist/control.js';
import { Session } from '../dist/session.js';
import { ReplayWindow } from '../dist/replay.js';
import { parseToken, base64urlDecode } from '../dist/token.js';
import { keyPair } from '../dist/noise.js';
import { issue } from './helpers/issuer.mjs';
import { sha256 } from '@noble/hashes/sha2.js';

const V = JSON.parse(readFileSync(fileURLToPath(new URL('../../../testdata/vectors.json', import.meta.url)), 'utf8'));

test('vectors.json: key schedule', () => {
  assert.ok(V.key_schedule.length >= 2);
  for (const k of V.key_schedule) {
    const s0 = fromHex(k.secret_0);
    assert.equal(hex(dataKey(s0)), k.key_0);
    assert.equal(hex(nextSecret(s0)), k.secret_1);
    assert.equal(hex(dataKey(nextSecret(s0))), k.key_1);
  }
});

test('vectors.json: replay window decisions', () => {
  const w = new ReplayWindow();
  for (const { pn, result } of V.replay_window) {
    assert.equal(w.status(pn), result, `pn ${pn}`);
    if (result === 'accepted') w.commit(pn);
  }
});

for (const engine of ['noble', 'webcrypto']) {
  test(`vectors.json: sealed frames (AES engine ${engine})`, async () => {
    const saved = aeadTuning.aesEngine;
    aeadTuning.aesEngine = engine;
    try {
      assert.equal(V.sealed_frames.length, 20);
      for (const f of V.sealed_frames) {
        const frame = fromHex(f.frame);
        const pt = fromHex(f.plaintext);
        let secret = fromHex(f.secret);
        for (let g = 0; g < f.generation; g++) secret = nextSecret(secret);
        const header = encodeHeader(f.frame_type, frame[4], frame.subarray(5, 13), f.stream_id, f.packet_number, pt.length + 16);
        assert.equal(hex(header), hex(frame.subarray(0, 29)), f.name);
        assert.equal(frame[4] & 1, f.generation & 1, `${f.name}: KEY_PHASE`);
        const c = makeCipher(f.aead, dataKey(secret));
        assert.equal(hex(concat(header, await c.seal(frameNonce(f.packet_number), header, pt))), f.frame, `${f.name} aead ${f.aead}`);
        assert.equal(hex(await c.open(frameNonce(f.packet_number), header, frame.subarray(29))), f.plaintext);
        if (f.frame_type === 2) assert.notEqual(decodeControl(pt), undefined, `${f.name} decodes`);
      }
    } finally {
      aeadTuning.aesEngine = saved;
    }
  });
}

test('vectors.json: the token, its ticket and issuing key ids', () => {
  const t = V.token;
  assert.equal(hex(base64urlDecode(t.token_text.slice(5))), t.token_bytes);
  const p = parseToken(t.token_text);
  assert.equal(p.clientId, BigInt(t.client_id));
  assert.equal(p.issuedAt.getTime(), t.issued_at * 1000);
  assert.equal(p.expiresAt.getTime(), t.expires_at * 1000);
  assert.deepEqual(p.audience, t.audience);
  assert.equal(hex(p.clientKey), t.client_key);
  assert.equal(hex(p.ticket), t.ticket);
  const issuingKey = fromHex(t.issuing_key);
  assert.equal(hex(hmacSha256(issuingKey, text('stt v1 token key id')).subarray(0, 4)), t.key_id);
  // The issuing key derived from the shared seed's network key (14.1).
  const psk = fromHex(V.member_handshake.psk);
  const derived = hkdf32(text('stt v1 token issuer'), psk, text('issuing key'));
  assert.equal(hex(hmacSha256(derived, text('stt v1 token key id')).subarray(0, 4)), t.derived_issuing_key_id);
  // The ticket opens under the issuing key and holds what the token says, and the application data.
  const ticket = p.ticket;
  assert.equal(hex(ticket.subarray(5, 21)), t.salt);
  const key = hkdf32(ticket.subarray(5, 21), issuingKey, text('stt v1 ticket'));
  const plain = chacha20poly1305(key, new Uint8Array(12), ticket.subarray(0, 21)).decrypt(ticket.subarray(21));
  assert.equal(hex(plain.subarray(24, 56)), t.client_key);
  assert.equal(hex(plain.subarray(plain.length - t.data.length / 2)), t.data);
  // The test issuer of this package makes the same token from the same inputs.
  const again = issue({
    issuingKey,
    clientId: BigInt(t.client_id),
    issuedAt: t.issued_at,
    expiresAt: t.expires_at,
    audience: t.audience,
    clientKey: fromHex(t.client_key),
    data: fromHex(t.data),
    salt: fromHex(t.salt),
  });
  assert.equal(again.token, t.token_text);
});

function drive(h, ticket, events = {}) {
  const out = [];
  let ended;
  const s = new Session(
    {
      psk: fromHex(h.psk),
      ticket,
      capabilities: fromHex(h.payload1)[1],
      fixture: {
        sessionId: fromHex(h.session_id),
        staticKey: fromHex(h.initiator_static_private),
        ephemeralKey: fromHex(h.initiator_ephemeral_private),
        timestamp: h.timestamp,
      },
    },
    { transmit: (d) => out.push(d), message() {}, confirmed() {}, pong() {}, peerError() {}, ended: (r) => (ended = r), ...events },
    () => 0,
  );
  return { s, out, ended: () => ended };
}

for (const [name, get] of [
  ['member handshake', () => [V.member_handshake, undefined]],
  ['token handshake', () => [V.token_handshake.handshake, fromHex(V.token.ticket)]],
]) {
  test(`vectors.json: ${name} with fixed keys`, () => {
    const [h, ticket] = get();
    assert.equal(hex(keyPair(fromHex(h.initiator_static_private)).pub), h.initiator_static_public);
    const { s, out } = drive(h, ticket);
    assert.equal(hex(out[0]), h.datagram1);
    // The prologue is "stt v1 handshake" || header1 (|| T || ticket for a token).
    const m1 = out[0];
    const expectPrologue = ticket === undefined ? concat(text('stt v1 handshake'), m1.subarray(0, 29)) : concat(text('stt v1 handshake'), m1.subarray(0, 31 + ticket.length));
    assert.equal(hex(expectPrologue), h.prologue);
    s.handleDatagram(fromHex(h.datagram2));
    assert.equal(s.state, 'established');
    assert.equal(hex(out[1]), h.datagram3);
    assert.equal(hex(s.trafficSecrets.i2r), h.i2r_secret);
    assert.equal(hex(s.trafficSecrets.r2i), h.r2i_secret);
    assert.equal(hex(s.peerNode), h.responder_node_id);
    assert.equal(hex(s.handshakeHash), h.handshake_hash);
    assert.equal(hex(sha256(fromHex(h.initiator_static_public))), h.initiator_node_id);
    assert.equal(hex(sha256(fromHex(h.responder_static_public))), h.responder_node_id);
    assert.equal(hex(fromHex(h.payload1)), hex(concat(Uint8Array.of(2, fromHex(h.payload1)[1]), fromHex('000000006b49d200'), new Uint8Array(54))));
    assert.equal(s.aead, h.aead);
  });
}

test('vectors.json: cookie challenge and echo of a token message 1', () => {
  const h = V.token_handshake.handshake;
  const { s, out } = drive(h, fromHex(V.token.ticket));
  s.handleDatagram(fromHex(V.token_handshake.cookie_challenge));
  assert.equal(out.length, 2);
  assert.equal(hex(out[1]), V.token_handshake.cookie_echo);
});

test('vectors.json: refusal of a token message 1 (wrong audience)', () => {
  const h = V.token_handshake.handshake;
  const { s, ended } = drive(h, fromHex(V.token.ticket));
  s.handleDatagram(fromHex(V.token_handshake.refusal_wrong_audience));
  assert.equal(s.state, 'closed');
  assert.deepEqual(ended(), { kind: 'refused', reason: 'wrong_audience', code: 3 });
});
