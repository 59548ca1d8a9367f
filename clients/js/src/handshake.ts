// The initiator's handshake with a connect token (PROTOCOL.md 5.2-5.4, 10.4,
// 14.4, 14.6): token message 1, retransmission schedule, cookie challenge and
// echo, token refusal, message 2 and message 3.

import { concat, equal, text, writeU64Num } from './bytes.js';
import { encodeHeader, Header, HEADER_LEN, T_AUTH, T_HANDSHAKE } from './frame.js';
import { challengeKey, hmacSha256 } from './kdf.js';
import { KeyPair, keyPair, NoiseInitiator } from './noise.js';
import { REFUSAL_REASONS, RefusalReason } from './errors.js';

export const CAP_HW_AES = 0x01;
export const CAP_PREFER_AES = 0x02;
export const CAP_PREFER_CHACHA = 0x04;

/** Test-only injection of what a handshake normally draws at random. */
export interface HandshakeFixture {
  sessionId?: Uint8Array;
  staticKey?: Uint8Array;
  ephemeralKey?: Uint8Array;
  /** Seconds since the Unix epoch for payload1. */
  timestamp?: number;
}

export interface HandshakeParams {
  /** The Noise PSK: the token's client_key (or a network key in tests). */
  psk: Uint8Array;
  /** The token's ticket; undefined for a member's message 1 (section 5). */
  ticket: Uint8Array | undefined;
  capabilities: number;
  fixture?: HandshakeFixture;
}

export type HandshakeOutcome =
  | { kind: 'ignored' }
  | { kind: 'drop' }
  /** A datagram to send now (a cookie echo). */
  | { kind: 'send'; datagram: Uint8Array }
  | { kind: 'refused'; reason: RefusalReason; code: number }
  | { kind: 'failed'; why: string }
  | {
      kind: 'done';
      message3: Uint8Array;
      aead: number;
      i2r: Uint8Array;
      r2i: Uint8Array;
      remoteStatic: Uint8Array;
      handshakeHash: Uint8Array;
    };

function randomSessionId(): Uint8Array {
  const id = new Uint8Array(8);
  globalThis.crypto.getRandomValues(id);
  return id;
}

export class InitiatorHandshake {
  readonly sessionId: Uint8Array;
  readonly staticKey: KeyPair;
  /** The whole message-1 datagram, byte-identical on every retransmission. */
  readonly message1: Uint8Array;
  private readonly noise: NoiseInitiator;
  private readonly macKey: Uint8Array;
  private cookie: Uint8Array | undefined;
  /** What a retransmission sends: message 1, or its cookie echo. */
  current: Uint8Array;

  constructor(p: HandshakeParams) {
    const f = p.fixture ?? {};
    this.sessionId = f.sessionId ?? randomSessionId();
    this.staticKey = keyPair(f.staticKey);
    const e = keyPair(f.ephemeralKey);
    const t = p.ticket;
    const tokenPart = t === undefined ? new Uint8Array(0) : concat(Uint8Array.of(t.length >> 8, t.length & 0xff), t);
    const payloadLen = 112 + tokenPart.length;
    const header1 = encodeHeader(T_HANDSHAKE, 0, this.sessionId, 0, 1, payloadLen);
    const prologue = concat(text('stt v1 handshake'), header1, tokenPart);
    this.noise = new NoiseInitiator(prologue, p.psk, this.staticKey, e);
    const payload1 = new Uint8Array(64);
    payload1[0] = 0x02;
    payload1[1] = p.capabilities;
    writeU64Num(payload1, 2, f.timestamp ?? Math.floor(Date.now() / 1000));
    const noise1 = this.noise.writeMessage1(payload1);
    this.message1 = concat(header1, tokenPart, noise1);
    this.current = this.message1;
    this.macKey = challengeKey(p.psk);
  }

  /**
   * A frame for this session while Handshaking: HANDSHAKE (pn 2) or AUTH
   * (challenge pn 0, refusal pn 2). `frame` is header + payload.
   */
  handle(h: Header, frame: Uint8Array): HandshakeOutcome {
    if (h.type === T_HANDSHAKE) {
      if (h.flags !== 0 || h.streamId !== 0 || h.pn !== 2) return { kind: 'drop' };
      const m2 = this.noise.readMessage2(frame.subarray(HEADER_LEN));
      if (m2 === undefined) return { kind: 'drop' };
      if (m2.aead !== 1 && m2.aead !== 2) return { kind: 'failed', why: `the server chose an unknown AEAD (${m2.aead})` };
      const m3 = this.noise.writeMessage3();
      if (m3 === undefined) return { kind: 'failed', why: 'low-order key in message 2' };
      const [i2r, r2i] = this.noise.split();
      return {
        kind: 'done',
        message3: concat(encodeHeader(T_HANDSHAKE, 0, this.sessionId, 0, 3, 64), m3),
        aead: m2.aead,
        i2r,
        r2i,
        remoteStatic: m2.rs,
        handshakeHash: this.noise.handshakeHash(),
      };
    }
    if (h.type === T_AUTH && h.flags === 0 && h.streamId === 0) {
      if (h.pn === 0 && h.payloadLen === 32) return this.onChallenge(frame);
      if (h.pn === 2 && h.payloadLen === 17) return this.onRefusal(frame);
    }
    return { kind: 'drop' };
  }

  private onChallenge(frame: Uint8Array): HandshakeOutcome {
    const mac = hmacSha256(this.macKey, frame.subarray(0, 45), this.message1).subarray(0, 16);
    if (!equal(mac, frame.subarray(45, 61))) return { kind: 'drop' };
    const cookie = frame.slice(29, 45);
    if (this.cookie !== undefined && equal(cookie, this.cookie)) return { kind: 'ignored' };
    this.cookie = cookie;
    const echoHeader = encodeHeader(T_AUTH, 0, this.sessionId, 0, 1, 16 + this.message1.length);
    this.current = concat(echoHeader, cookie, this.message1);
    return { kind: 'send', datagram: this.current };
  }

  private onRefusal(frame: Uint8Array): HandshakeOutcome {
    const mac = hmacSha256(this.macKey, frame.subarray(0, 30), this.message1).subarray(0, 16);
    if (!equal(mac, frame.subarray(30, 46))) return { kind: 'drop' };
    const code = frame[29]!;
    return { kind: 'refused', reason: REFUSAL_REASONS[code] ?? 'unknown', code };
  }
}

/** The initiator's retransmission schedule (5.4): 250 ms doubling, capped at 2 s. */
export class Backoff {
  private rto: number;
  next: number;
  constructor(
    private readonly initial: number,
    private readonly cap: number,
    now: number,
  ) {
    this.rto = initial;
    this.next = now + initial;
  }
  restart(now: number): void {
    this.rto = this.initial;
    this.next = now + this.rto;
  }
  fired(now: number): void {
    this.rto = Math.min(this.rto * 2, this.cap);
    this.next = now + this.rto;
  }
}
