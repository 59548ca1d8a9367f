// The session's own behaviour over a virtual clock, with a scripted server
// that holds the A.3 transcript's keys: keepalive, idle timeout, the answer
// to a PathChallenge, and the rekey asked by the server (6.8, answerer side).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Session } from '../dist/session.js';
import { makeCipher, frameNonce } from '../dist/aead.js';
import { dataKey, nextSecret } from '../dist/kdf.js';
import { encodeHeader, decodeHeader } from '../dist/frame.js';
import * as C from '../dist/control.js';
import { concat, fromHex, hex } from '../dist/bytes.js';
import { keyPair } from '../dist/noise.js';
import { rekeyCk0, rekeySchedule, rekeyedSecret } from '../dist/rekey.js';

const SID = fromHex('0123456789abcdef');
const I2R = fromHex('a09c42bc01110defb325b0bc9562191795cb231dd512e62ed09edb2d8af69651');
const R2I = fromHex('bf8c8d564580981009f5ed63d37ecf284d2e592cb991040569750b905767547f');
const D2 = fromHex(
  '53540105000123456789abcdef000000000000000000000002000000610faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f207119b06fd64fb4b7bfb2aa1df59c84fedd98b419c5a9b31cefb8b21429f50f8e7d187b32ea4302fb6eb96142db8b9d02cf86fb76936b4be8500871069efbf6fb3a',
);

/** A client session established and confirmed, and a scripted server. */
function pair() {
  let now = 0;
  const out = [];
  let ended;
  const s = new Session(
    {
      psk: fromHex('95606912f5dcbc535e41991580f6989ac95a7e04194daa77ffe961da574598fc'),
      ticket: undefined,
      capabilities: 4,
      fixture: { sessionId: SID, staticKey: fromHex('37a68a2acffde37606f3c55032d0429c204654eec848b69ba8981240dd6d7806'), ephemeralKey: new Uint8Array(32).fill(0x11), timestamp: 1_800_000_000 },
    },
    { transmit: (d) => out.push(d), message() {}, confirmed() {}, pong() {}, peerError() {}, ended: (r) => (ended = r) },
    () => now,
  );
  s.handleDatagram(D2);
  // The server side: its sending secret (r2i) and what it reads (i2r).
  const srv = { pn: 0, sendSecret: R2I, sendPhase: 0, recvSecrets: [I2R, nextSecret(I2R)] };
  srv.seal = (pt, type = 2) => {
    const h = encodeHeader(type, srv.sendPhase, SID, 0, srv.pn, pt.length + 16);
    const f = concat(h, makeCipher(2, dataKey(srv.sendSecret)).seal(frameNonce(srv.pn), h, pt));
    srv.pn++;
    return f;
  };
  /** Opens a client frame: tries the i2r secrets the test knows. */
  srv.open = (f) => {
    const h = decodeHeader(f, 0);
    for (const sec of srv.recvSecrets) {
      const pt = makeCipher(2, dataKey(sec)).open(frameNonce(h.pn), f.subarray(0, 29), f.subarray(29));
      if (pt) return { h, pt, sec };
    }
    return undefined;
  };
  s.handleDatagram(srv.seal(C.encodePing(1n))); // confirms the handshake
  out.length = 0;
  return { s, out, srv, advance: (ms) => (now += ms), now: () => now, ended: () => ended };
}

test('keepalive Ping after 10 s of quiet, idle timeout CLOSE(3) after 30 s', () => {
  const { s, out, srv, advance, ended } = pair();
  advance(9_999);
  s.onTimer();
  assert.equal(out.length, 0);
  advance(1);
  s.onTimer();
  assert.equal(out.length, 1);
  assert.equal(srv.open(out[0]).pt[0], C.C_PING);
  advance(19_999);
  s.onTimer();
  assert.equal(s.state, 'established');
  advance(1);
  s.onTimer();
  const last = srv.open(out.at(-1));
  assert.deepEqual(C.decodeControl(last.pt), { kind: 'close', code: 3, reason: 'idle timeout' });
  assert.equal(s.state, 'closed');
  assert.deepEqual(ended(), { kind: 'idle_timeout' });
});

test('PathChallenge is answered with a PathResponse echoing its data; Close from the server ends the session', () => {
  const { s, out, srv, ended } = pair();
  s.handleDatagram(srv.seal(C.encodePath(C.C_PATH_CHALLENGE, fromHex('0102030405060708'))));
  assert.equal(hex(srv.open(out[0]).pt), '080102030405060708');
  s.handleDatagram(srv.seal(C.encodeClose(8, 'revoked')));
  assert.equal(s.state, 'closed');
  assert.deepEqual(ended(), { kind: 'peer_close', code: 8, reason: 'revoked' });
});

test('a rekey asked by the server: response, switch after the server switches, fresh keys both ways', () => {
  const { s, out, srv } = pair();
  const eq = keyPair();
  s.handleDatagram(srv.seal(C.encodeRekey(C.C_REKEY_REQUEST, 1n, eq.pub)));
  assert.equal(out.length, 1);
  const resp = C.decodeControl(srv.open(out[0]).pt);
  assert.equal(resp.kind, 'rekey_response');
  assert.equal(resp.seq, 1n);
  // A repeated request gets the same response again.
  s.handleDatagram(srv.seal(C.encodeRekey(C.C_REKEY_REQUEST, 1n, eq.pub)));
  assert.equal(hex(C.decodeControl(srv.open(out[1]).pt).ephemeral), hex(resp.ephemeral));
  // The client holds its updates until the server's rekeyed generation arrives.
  s.updateKeys();
  const held = srv.open(out.at(-1));
  assert.equal(held.h.flags & 1, 0);
  // The server derives the schedule as requester and switches its sending key.
  const o = rekeySchedule(rekeyCk0(I2R, R2I), SID, 1n, eq.pub, resp.ephemeral, eq.priv, resp.ephemeral);
  srv.sendSecret = rekeyedSecret(o.mixR2i, nextSecret(R2I));
  srv.sendPhase = 1;
  const i2rRekeyed = rekeyedSecret(o.mixI2r, nextSecret(I2R));
  srv.recvSecrets = [I2R, i2rRekeyed];
  const before = out.length;
  s.handleDatagram(srv.seal(C.encodePing(2n)));
  assert.equal(s.stats.rekeys, 1);
  // The client answered the Pong and switched: its next frames are sealed under the rekeyed i2r.
  const after = out.slice(before).map((f) => srv.open(f));
  assert.ok(after.every((x) => x !== undefined), 'every frame opens');
  assert.ok(after.some((x) => x.sec === i2rRekeyed && (x.h.flags & 1) === 1), 'a frame under the rekeyed generation');
  assert.equal(s.stats.frames_dropped, 0);
});

test('the client asks for a rekey at 120 s and closes with REKEY_TIMEOUT at 180 s when none completes', () => {
  const { s, out, srv, advance, ended } = pair();
  for (let t = 0; t < 23; t++) {
    advance(5000);
    s.handleDatagram(srv.seal(C.encodePing(BigInt(t + 10))));
    s.onTimer();
  }
  advance(4999);
  s.onTimer();
  const reqsBefore = out.filter((f) => srv.open(f)?.pt[0] === C.C_REKEY_REQUEST).length;
  assert.equal(reqsBefore, 0);
  advance(1);
  s.onTimer();
  const reqs = out.map((f) => srv.open(f)).filter((x) => x?.pt[0] === C.C_REKEY_REQUEST);
  assert.equal(reqs.length, 1);
  // Unanswered: repeated on the probe interval, then the hard limit.
  for (let t = 0; t < 60_000; t += 250) {
    advance(250);
    if (t % 5000 === 0) s.handleDatagram(srv.seal(C.encodePing(BigInt(200_000 + t))));
    s.onTimer();
    if (s.state === 'closed') break;
  }
  assert.deepEqual(ended(), { kind: 'rekey_timeout' });
  const all = out.map((f) => srv.open(f)).filter(Boolean);
  const repeats = all.filter((x) => x.pt[0] === C.C_REKEY_REQUEST);
  assert.ok(repeats.length > 10, `${repeats.length} requests`);
  assert.ok(repeats.every((x) => hex(x.pt) === hex(repeats[0].pt)), 'the same request each time');
  assert.deepEqual(C.decodeControl(all.at(-1).pt), { kind: 'close', code: 7, reason: 'rekey timeout' });
});
