// PROTOCOL.md Appendix A vectors: key schedule (A.4), sealed frames (A.5),
// plaintext encodings (A.6), rekey (A.7) and the handshake transcript (A.3)
// driven through the client's Session with fixed keys.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { fromHex, hex, text, concat } from '../dist/bytes.js';
import { dataKey, nextSecret, hkdf32 } from '../dist/kdf.js';
import { makeCipher, frameNonce, aeadTuning } from '../dist/aead.js';
import { encodeHeader } from '../dist/frame.js';
import * as C from '../dist/control.js';
import { encodeFragment, encodeBatch, decodeBatch } from '../dist/messages.js';
import { rekeyCk0, rekeySchedule, rekeyedSecret } from '../dist/rekey.js';
import { keyPair } from '../dist/noise.js';
import { Session } from '../dist/session.js';
import { SendKeys, limitsFor } from '../dist/keys.js';

const fill = (b) => new Uint8Array(32).fill(b);

test('A.4 key schedule', () => {
  let s = fill(3);
  const keys = [
    'd7d2b1fc34bf445df31e5b401e4ed8b199a7c4d8bd6e7c75b3d44517b7107179',
    'd4f4484862ecb0be81bb41277919acbd068e3ee60a103f085cfd924a1187787a',
    '09d3bf51674dbb056c3f15156a4780de4035616a600ee8306b04b04d2f3d83ee',
  ];
  const secrets = [
    '4faec5a9bcb4d920d30078c855cb682a36a397cc980da2a1a51ddbe21d021baf',
    '19713a1caa44f841e2636ccef980723686410813385806d87087fde3382c83b7',
  ];
  for (let g = 0; g < 3; g++) {
    assert.equal(hex(dataKey(s)), keys[g]);
    s = nextSecret(s);
    if (g < 2) assert.equal(hex(s), secrets[g]);
  }
});

const A5 = [
  ['aes', 1, 0, 0, '53540101000123456789abcdef00000007000000000000000000000015', 'b8109d1aeac7ba5e6ac447cb6f99119281b8521ec9'],
  ['aes', 1, 1, 1, '53540101010123456789abcdef00000007000000000000000100000015', '8263f4cce974f7efa9e3588198fff8e9afa76cfc20'],
  ['chacha', 2, 0, 0, '53540101000123456789abcdef00000007000000000000000000000015', 'd8bd9457d11e87ee2791a0d68068ada910dff0fe7f'],
  ['chacha', 2, 1, 1, '53540101010123456789abcdef00000007000000000000000100000015', '68f088fbd00e4c229c0da2edd63bb09cc4b681ff95'],
];

for (const engine of ['noble', 'webcrypto']) {
  test(`A.5 sealed DATA frames (AES engine ${engine})`, async () => {
    const saved = aeadTuning.aesEngine;
    aeadTuning.aesEngine = engine;
    try {
      const sid = fromHex('0123456789abcdef');
      for (const [, aead, gen, pn, headerHex, payloadHex] of A5) {
        const header = encodeHeader(1, gen, sid, 7, pn, 21);
        assert.equal(hex(header), headerHex);
        const secret = gen === 0 ? fill(3) : nextSecret(fill(3));
        const c = makeCipher(aead, dataKey(secret));
        const sealed = await c.seal(frameNonce(pn), header, text('hello'));
        assert.equal(hex(sealed), payloadHex);
        const opened = await c.open(frameNonce(pn), header, fromHex(payloadHex));
        assert.equal(hex(opened), hex(text('hello')));
        // Any bit flipped in header or payload fails authentication.
        const bad = fromHex(payloadHex);
        bad[3] ^= 1;
        assert.equal(await c.open(frameNonce(pn), header, bad), undefined);
        const badHeader = header.slice();
        badHeader[16] ^= 1;
        assert.equal(await c.open(frameNonce(pn), badHeader, fromHex(payloadHex)), undefined);
      }
      // Through SendKeys: frame 2 is sealed after an update request, generation 1.
      for (const [name, aead] of [['aes', 1], ['chacha', 2]]) {
        const sk = new SendKeys(aead, fill(3), limitsFor(aead));
        const k0 = sk.next(21);
        assert.equal(k0.phase, 0);
        sk.requested = true;
        const k1 = sk.next(21);
        assert.equal(k1.phase, 1);
        assert.equal(k1.started, true);
        const header = encodeHeader(1, k1.phase, sid, 7, 1, 21);
        const expect = A5.find((v) => v[0] === name && v[2] === 1)[5];
        assert.equal(hex(await k1.cipher.seal(frameNonce(1), header, text('hello'))), expect);
        // A second update is not allowed before the peer confirms generation 1.
        sk.requested = true;
        assert.equal(sk.next(21).started, false);
      }
    } finally {
      aeadTuning.aesEngine = saved;
    }
  });
}

test('A.6 plaintext encodings', () => {
  assert.equal(hex(C.encodePing(0x0102030405060708n)), '010102030405060708');
  assert.equal(hex(C.encodePong(0x0102030405060708n)), '020102030405060708');
  assert.equal(hex(C.encodeFlowCredit(65536n)), '030000000000010000');
  assert.equal(hex(C.encodeKeyRotation()), '04');
  assert.equal(hex(C.encodeClose(3, 'idle timeout')), '050003000c69646c652074696d656f7574');
  assert.equal(hex(C.encodeError(2, 'x')), '060002000178');
  assert.equal(
    hex(encodeFragment({ messageId: 5, totalLen: 3000, index: 2, chunkLen: 1412, innerType: 1 }, new Uint8Array(0))),
    '0000000500000bb800000002058401',
  );
  const batch = encodeBatch([text('hi'), new Uint8Array(0), text('abc')]);
  assert.equal(hex(batch), '00000002686900000000000000036162' + '63');
  assert.deepEqual(decodeBatch(batch, 100).map((b) => hex(b)), ['6869', '', '616263']);
  assert.equal(hex(C.encodeRekey(C.C_REKEY_REQUEST, 1n, new Uint8Array(32).fill(0xee))), '090000000000000001' + 'ee'.repeat(32));
  // Decoding round-trips and refuses malformed control messages.
  assert.deepEqual(C.decodeControl(fromHex('050003000c69646c652074696d656f7574')), { kind: 'close', code: 3, reason: 'idle timeout' });
  assert.equal(C.decodeControl(fromHex('0500030001')), undefined);
  assert.equal(C.decodeControl(fromHex('01010203')), undefined);
  assert.equal(C.decodeControl(fromHex('0b')), undefined);
  assert.equal(C.decodeControl(new Uint8Array(0)), undefined);
  assert.equal(C.decodeControl(fromHex('0500000001ff')), undefined); // not UTF-8
});

test('A.7 rekey schedule', () => {
  const i2r = fill(1);
  const r2i = fill(2);
  const ck0 = rekeyCk0(i2r, r2i);
  assert.equal(hex(ck0), '113c7d2466d72140ac4ef9aa10d41a772e50d32bee8ed8244b3fcfb974bd8e11');
  const eq = keyPair(new Uint8Array(32).fill(0x11));
  const ea = keyPair(new Uint8Array(32).fill(0x22));
  assert.equal(hex(eq.pub), '7b4e909bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13');
  assert.equal(hex(ea.pub), '0faa684ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f20');
  const sid = fromHex('0102030405060708');
  const a = rekeySchedule(ck0, sid, 1n, eq.pub, ea.pub, eq.priv, ea.pub);
  const b = rekeySchedule(ck0, sid, 1n, eq.pub, ea.pub, ea.priv, eq.pub);
  for (const o of [a, b]) {
    assert.equal(hex(o.dh), '9e004098efc091d4ec2663b4e9f5cfd4d7064571690b4bea97ab146ab9f35056');
    assert.equal(hex(o.th), '6e760dc6113fdec90bd51214373a54987247927f4500a2f2744bdeb4f021057a');
    assert.equal(hex(o.ck), '0df09d109d22cb36d40466393eb35c48608419fb842890ee3ae60e5a70600278');
    assert.equal(hex(o.mixI2r), 'c34d37bffd9d43c148b1562e93ced4d2725041b93f0acf2199aa545fc6f68551');
    assert.equal(hex(o.mixR2i), '49092fa46e000c012453e49e3935aaa693578da98439bedea8186a31690f1ff3');
  }
  const i2rNext = nextSecret(i2r);
  assert.equal(hex(i2rNext), '0936910f81fb9311e26d986b6eb64806772824339c9d79f3d9eb7b07b3107b93');
  const i2rRekeyed = rekeyedSecret(a.mixI2r, i2rNext);
  assert.equal(hex(i2rRekeyed), 'c29d4309cf3e409d6f9341392e1ca9ae53e8b38b7ec75adc6d9a08f22524b699');
  assert.equal(hex(rekeyedSecret(a.mixR2i, nextSecret(r2i))), '97f37ba62334a6d0219fb4375c5eaea60f659543d04660ff7ec4cb0c907d00fd');
  assert.equal(hex(dataKey(i2rRekeyed)), 'd5ebfd8a56ae1170ed27bbdf201e32f91c943963ead83447e650912995b7742c');
  // A low-order public key (all-zero DH) is refused.
  assert.equal(rekeySchedule(ck0, sid, 1n, eq.pub, new Uint8Array(32), eq.priv, new Uint8Array(32)), undefined);
});

const A3 = {
  psk: '95606912f5dcbc535e41991580f6989ac95a7e04194daa77ffe961da574598fc',
  staticPriv: '37a68a2acffde37606f3c55032d0429c204654eec848b69ba8981240dd6d7806',
  d1: `53540105000123456789abcdef000000000000000000000001000000707b4e90
  9bbe7ffe44c465a220037d608ee35897d31ef972f07f74892cb0f73f13a90336
  8c11a7038fcd7cc0480ab53bbcd757136969b3ddbdc91a5e61173ab007c00f95
  553e2c8efcf8ca8c776d34a1b682095f65e357fcbab7ddcb666c352b201b631b
  30688b3fc8d4a13bf88463cb1d`,
  d2: `53540105000123456789abcdef000000000000000000000002000000610faa68
  4ed28867b97f4a6a2dee5df8ce974e76b7018e3f22a1c4cf2678570f207119b0
  6fd64fb4b7bfb2aa1df59c84fedd98b419c5a9b31cefb8b21429f50f8e7d187b
  32ea4302fb6eb96142db8b9d02cf86fb76936b4be8500871069efbf6fb3a`,
  d3: `53540105000123456789abcdef00000000000000000000000300000040a6fdf3
  e2c1fe708ec4991e3ef5bc407a84910c718b028f6a4331cc84fed5015fcc2b73
  f07c50e8e8f20b58a98df66b6d52b12f11c6ce165a209cd541c37082c6`,
  i2r: 'a09c42bc01110defb325b0bc9562191795cb231dd512e62ed09edb2d8af69651',
  r2i: 'bf8c8d564580981009f5ed63d37ecf284d2e592cb991040569750b905767547f',
  ping: `53540102000123456789abcdef000000000000000000000000000000195c4d7a
    51113ac8ca29b73424c7842bcc83d09b961fc4e9b44b`,
  close: `53540102000123456789abcdef00000000000000000000000000000018b70056
    5804b79babce72518906e7bba2304bdea3b26d2eba`,
  nodeId: '0ad8bf1c798bb7592cae00384c85a2897e111fd2a498d3dccf335430e8fbbd57',
};

function vectorSession(events = {}) {
  const out = [];
  let now = 1000;
  const s = new Session(
    {
      psk: fromHex(A3.psk),
      ticket: undefined,
      capabilities: 0x04,
      fixture: {
        sessionId: fromHex('0123456789abcdef'),
        staticKey: fromHex(A3.staticPriv),
        ephemeralKey: new Uint8Array(32).fill(0x11),
        timestamp: 1_800_000_000,
      },
    },
    {
      transmit: (d) => out.push(d),
      message: () => {},
      confirmed: () => {},
      pong: () => {},
      peerError: () => {},
      ended: () => {},
      ...events,
    },
    () => now,
  );
  return { s, out, advance: (ms) => (now += ms) };
}

test('A.3 handshake transcript through the Session (fixed keys)', async () => {
  let confirmed = false;
  const { s, out } = vectorSession({ confirmed: () => (confirmed = true) });
  assert.equal(hex(out[0]), hex(fromHex(A3.d1)));
  // A forged message 2 is dropped and leaves the handshake usable.
  const forged = fromHex(A3.d2);
  forged[100] ^= 1;
  s.handleDatagram(forged);
  assert.equal(s.state, 'handshaking');
  assert.equal(s.stats.frames_dropped, 1);
  s.handleDatagram(fromHex(A3.d2));
  assert.equal(s.state, 'established');
  assert.equal(hex(out[1]), hex(fromHex(A3.d3)));
  assert.equal(hex(s.trafficSecrets.i2r), A3.i2r);
  assert.equal(hex(s.trafficSecrets.r2i), A3.r2i);
  assert.equal(hex(s.peerNode), A3.nodeId);
  assert.equal(s.aeadName, 'chacha20-poly1305');
  // The initiator's first sealed frame: Close 0 "bye" at pn 0.
  s.close(0, 'bye');
  assert.equal(hex(out[2]), hex(fromHex(A3.close)));
  assert.equal(confirmed, false);
});

test('A.3 confirming ping is answered with a Pong and confirms the handshake', () => {
  let confirmed = false;
  const { s, out } = vectorSession({ confirmed: () => (confirmed = true) });
  s.handleDatagram(fromHex(A3.d2));
  s.handleDatagram(fromHex(A3.ping));
  assert.equal(confirmed, true);
  assert.equal(out.length, 3);
  // The Pong: a 54-byte CONTROL frame at pn 0; open it with i2r key_0.
  const pong = out[2];
  assert.equal(pong.length, 54);
  const c = makeCipher(2, dataKey(fromHex(A3.i2r)));
  const pt = c.open(frameNonce(0), pong.subarray(0, 29), pong.subarray(29));
  assert.equal(hex(pt), '0200000000000f4240');
  // A replay of the same ping is refused before decryption.
  s.handleDatagram(fromHex(A3.ping));
  assert.equal(out.length, 3);
  assert.equal(s.stats.frames_dropped, 1);
});

test('A.3 message-1 retransmission schedule is byte-identical with backoff', () => {
  const { s, out, advance } = vectorSession();
  const times = [];
  let t = 0;
  while (s.state === 'handshaking' && t < 11_000) {
    const step = s.nextDeadline() - (1000 + t);
    advance(step);
    t += step;
    const before = out.length;
    s.onTimer();
    if (out.length > before) times.push(t);
  }
  assert.deepEqual(times, [250, 750, 1750, 3750, 5750, 7750, 9750]);
  for (const d of out) assert.equal(hex(d), hex(fromHex(A3.d1)));
  assert.equal(s.state, 'closed');
  assert.equal(s.stats.retransmits, 7);
});
