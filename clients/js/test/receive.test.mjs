// Receiver rules without a server: replay window (6.5), STREAM reassembly and
// its limits (7.4), BATCH limits (7.3), and robustness: bad datagrams are
// dropped and counted, never thrown.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReplayWindow } from '../dist/replay.js';
import { Reassembler } from '../dist/reassembly.js';
import { splitMessage, encodeBatch, decodeBatch, encodeFragment } from '../dist/messages.js';
import { Session } from '../dist/session.js';
import { makeCipher, frameNonce } from '../dist/aead.js';
import { dataKey, nextSecret } from '../dist/kdf.js';
import { encodeHeader } from '../dist/frame.js';
import { concat, fromHex } from '../dist/bytes.js';

test('replay window: duplicates, too old, reordering within 1984', () => {
  const w = new ReplayWindow();
  assert.ok(w.check(0));
  w.commit(0);
  assert.ok(!w.check(0));
  w.commit(5000);
  assert.ok(!w.check(5000 - 1984));
  assert.ok(w.check(5000 - 1983));
  w.commit(4000);
  assert.ok(!w.check(4000));
  assert.ok(w.check(4001));
  w.commit(10_000); // a jump past the whole bitmap clears it
  assert.ok(w.check(9999) && !w.check(10_000) && !w.check(4001));
  assert.ok(!w.check(-1));
});

test('reassembly: any order, duplicates ignored, delivered once', () => {
  const r = new Reassembler();
  const msg = new Uint8Array(3000).map((_, i) => i & 0xff);
  const frags = splitMessage(5, msg, 0x81, 1412);
  assert.equal(frags.length, 3);
  assert.equal(r.handle(9, frags[2], 0), 'pending');
  assert.equal(r.handle(9, frags[2], 0), 'pending');
  assert.equal(r.handle(9, frags[0], 0), 'pending');
  const done = r.handle(9, frags[1], 0);
  assert.equal(done.type, 0x81);
  assert.equal(done.streamId, 9);
  assert.deepEqual(done.data, msg);
  // A late fragment of a completed message is stale.
  assert.equal(r.handle(9, frags[1], 0), 'dropped');
});

test('reassembly refuses bad fragments', () => {
  const r = new Reassembler();
  const h = (o) => ({ messageId: 1, totalLen: 3000, index: 0, chunkLen: 1412, innerType: 1, ...o });
  assert.equal(r.handle(0, new Uint8Array(14), 0), 'dropped');
  assert.equal(r.handle(0, encodeFragment(h({ totalLen: 0 }), new Uint8Array(0)), 0), 'dropped');
  assert.equal(r.handle(0, encodeFragment(h({ index: 3 }), new Uint8Array(1412)), 0), 'dropped');
  assert.equal(r.handle(0, encodeFragment(h({}), new Uint8Array(1411)), 0), 'dropped');
  assert.equal(r.handle(0, encodeFragment(h({ innerType: 2 }), new Uint8Array(1412)), 0), 'dropped');
  assert.equal(r.handle(0, encodeFragment(h({ totalLen: 17 * 1024 * 1024 }), new Uint8Array(1412)), 0), 'dropped');
  assert.equal(r.handle(0, encodeFragment(h({}), new Uint8Array(1412)), 0), 'pending');
  // Disagreeing with the first fragment (stream, total length) is refused.
  assert.equal(r.handle(1, encodeFragment(h({ index: 1 }), new Uint8Array(1412)), 0), 'dropped');
  assert.equal(r.handle(0, encodeFragment(h({ index: 1, totalLen: 3001 }), new Uint8Array(1412)), 0), 'dropped');
});

test('reassembly limits: pending messages, bytes, timeout', () => {
  const r = new Reassembler({ maxMessageSize: 1 << 20, maxSessionBytes: 10_000, maxPendingMessages: 2, timeoutMs: 5000 });
  const first = (id, total) => encodeFragment({ messageId: id, totalLen: total, index: 0, chunkLen: 100, innerType: 1 }, new Uint8Array(100));
  assert.equal(r.handle(0, first(1, 300), 0), 'pending');
  assert.equal(r.handle(0, first(2, 300), 0), 'pending');
  assert.equal(r.handle(0, first(3, 300), 0), 'dropped'); // 2 pending at most
  assert.equal(r.poll(4999), 5000);
  r.poll(5000);
  assert.equal(r.expired, 2);
  assert.equal(r.pendingCount, 0);
  assert.equal(r.handle(0, first(4, 20_000), 5000), 'dropped'); // over the byte budget
  // An expired id is stale afterwards.
  assert.equal(r.handle(0, first(1, 300), 5001), 'dropped');
});

test('reassembly message ids may wrap past 2^32 - 1', () => {
  const r = new Reassembler();
  const one = (id) => splitMessage(id, new Uint8Array(10), 1, 6);
  for (const id of [0xfffffffe, 0xffffffff, 0, 1]) {
    const [a, b] = one(id);
    r.handle(0, a, 0);
    assert.notEqual(r.handle(0, b, 0), 'pending', `id ${id}`);
  }
  assert.equal(r.extend(0), 2 ** 32);
});

test('batch: all records or none, at most 4096', () => {
  assert.equal(decodeBatch(fromHex('00000005aa'), 100), undefined);
  assert.equal(decodeBatch(fromHex('000000'), 100), undefined);
  assert.equal(decodeBatch(encodeBatch([new Uint8Array(10)]), 9), undefined);
  assert.equal(decodeBatch(encodeBatch(Array(4096).fill(new Uint8Array(0))), 9).length, 4096);
  assert.equal(decodeBatch(encodeBatch(Array(4097).fill(new Uint8Array(0))), 9), undefined);
  assert.deepEqual(decodeBatch(new Uint8Array(0), 9), []);
});

// An established session from the A.3 vector, to feed it frames sealed under r2i.
const A3 = {
  psk: '95606912f5dcbc535e41991580f6989ac95a7e04194daa77ffe961da574598fc',
  d2: '53540105000123456789abcdef000000000000000000000002000000610faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f207119b06fd64fb4b7bfb2aa1df59c84fedd98b419c5a9b31cefb8b21429f50f8e7d187b32ea4302fb6eb96142db8b9d02cf86fb76936b4be8500871069efbf6fb3a',
  r2i: 'bf8c8d564580981009f5ed63d37ecf284d2e592cb991040569750b905767547f',
};
function established() {
  const msgs = [];
  const out = [];
  const s = new Session(
    { psk: fromHex(A3.psk), ticket: undefined, capabilities: 4, fixture: { sessionId: fromHex('0123456789abcdef'), staticKey: fromHex('37a68a2acffde37606f3c55032d0429c204654eec848b69ba8981240dd6d7806'), ephemeralKey: new Uint8Array(32).fill(0x11), timestamp: 1_800_000_000 } },
    { transmit: (d) => out.push(d), message: (m) => msgs.push(m), confirmed() {}, pong() {}, peerError() {}, ended() {} },
    () => 0,
  );
  s.handleDatagram(fromHex(A3.d2));
  return { s, msgs, out };
}
function seal(secret, type, flags, stream, pn, pt) {
  const h = encodeHeader(type, flags, fromHex('0123456789abcdef'), stream, pn, pt.length + 16);
  return concat(h, makeCipher(2, dataKey(secret)).seal(frameNonce(pn), h, pt));
}

test('sealed frames: delivery, BATCH, replay, key phase, bad frames counted', () => {
  const { s, msgs } = established();
  assert.equal(s.state, 'established');
  const r2i = fromHex(A3.r2i);
  s.handleDatagram(seal(r2i, 1, 0, 7, 0, new TextEncoder().encode('hi')));
  assert.equal(msgs.length, 1);
  assert.equal(msgs[0].streamId, 7);
  s.handleDatagram(seal(r2i, 0x90, 2, 3, 1, encodeBatch([Uint8Array.of(1), Uint8Array.of(2)])));
  assert.equal(msgs.length, 3);
  assert.equal(msgs[2].type, 0x90);
  // Two frames in one datagram, the second a replay: the first is kept.
  s.handleDatagram(concat(seal(r2i, 1, 0, 0, 2, Uint8Array.of(9)), seal(r2i, 1, 0, 0, 1, Uint8Array.of(9))));
  assert.equal(msgs.length, 4);
  const dropped = s.stats.frames_dropped;
  // The peer's key update: phase 1 opens with the next key.
  s.handleDatagram(seal(nextSecret(r2i), 1, 1, 0, 4, Uint8Array.of(4)));
  assert.equal(msgs.length, 5);
  assert.equal(s.recv.gen, 1);
  // A frame reordered across the update (pn 3 < 4) still opens with the previous key.
  s.handleDatagram(seal(r2i, 1, 0, 0, 3, Uint8Array.of(3)));
  assert.equal(msgs.length, 6);
  assert.equal(s.recv.gen, 1);
  // A replay is refused before decryption.
  s.handleDatagram(seal(r2i, 1, 0, 0, 0, Uint8Array.of(0)));
  assert.equal(s.stats.frames_dropped, dropped + 1);
  // A bad BATCH is counted, a tampered frame is an authentication failure.
  s.handleDatagram(seal(nextSecret(r2i), 1, 3, 0, 5, fromHex('0000000aff')));
  const t = seal(nextSecret(r2i), 1, 1, 0, 6, Uint8Array.of(1));
  t[40] ^= 1;
  s.handleDatagram(t);
  assert.equal(s.stats.frames_dropped, dropped + 3);
  assert.equal(msgs.length, 6);
});

test('random and mutated datagrams never throw and are counted', () => {
  const { s } = established();
  const r2i = fromHex(A3.r2i);
  let seed = 1;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) & 0xff;
  const good = seal(r2i, 1, 0, 0, 0, new Uint8Array(40));
  for (let i = 0; i < 3000; i++) {
    let d;
    if (i % 3 === 0) d = Uint8Array.from({ length: rnd() }, rnd);
    else if (i % 3 === 1) d = good.subarray(0, rnd() % good.length);
    else {
      d = good.slice();
      d[rnd() % d.length] ^= 1 << (rnd() % 8);
    }
    assert.doesNotThrow(() => s.handleDatagram(d));
  }
  assert.ok(s.stats.frames_dropped >= 2990, `dropped ${s.stats.frames_dropped}`);
  assert.equal(s.state, 'established');
});
