// Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s, initiator side only (PROTOCOL.md 5.1,
// 5.2): symmetric state, the three messages, Split. Noise's ChaChaPoly nonce
// is 32 zero bits then the 64-bit counter little-endian.

import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { blake2s } from '@noble/hashes/blake2.js';
import { hmac } from '@noble/hashes/hmac.js';
import { x25519 } from '@noble/curves/ed25519.js';
import { concat, text } from './bytes.js';

const PROTOCOL_NAME = text('Noise_XXpsk0_25519_ChaChaPoly_BLAKE2s');
const EMPTY = new Uint8Array(0);

function hmacB(key: Uint8Array, ...data: Uint8Array[]): Uint8Array {
  const h = hmac.create(blake2s, key);
  for (const d of data) h.update(d);
  return h.digest();
}

/** Noise HKDF with HMAC-BLAKE2s: two or three 32-byte outputs. */
function noiseHkdf(ck: Uint8Array, ikm: Uint8Array, n: 2 | 3): Uint8Array[] {
  const temp = hmacB(ck, ikm);
  const o1 = hmacB(temp, Uint8Array.of(1));
  const o2 = hmacB(temp, o1, Uint8Array.of(2));
  if (n === 2) return [o1, o2];
  return [o1, o2, hmacB(temp, o2, Uint8Array.of(3))];
}

function noiseNonce(n: number): Uint8Array {
  const out = new Uint8Array(12);
  new DataView(out.buffer).setUint32(4, n >>> 0, true);
  return out;
}

interface SymState {
  ck: Uint8Array;
  h: Uint8Array;
  k: Uint8Array | undefined;
  n: number;
}

class Symmetric {
  s: SymState;
  constructor(prologue: Uint8Array) {
    const h = blake2s(PROTOCOL_NAME);
    this.s = { ck: h, h, k: undefined, n: 0 };
    this.mixHash(prologue);
  }
  snapshot(): SymState {
    return { ...this.s };
  }
  restore(s: SymState): void {
    this.s = { ...s };
  }
  mixHash(data: Uint8Array): void {
    this.s.h = blake2s(concat(this.s.h, data));
  }
  mixKey(ikm: Uint8Array): void {
    const [ck, k] = noiseHkdf(this.s.ck, ikm, 2);
    this.s.ck = ck!;
    this.s.k = k;
    this.s.n = 0;
  }
  mixKeyAndHash(ikm: Uint8Array): void {
    const [ck, th, k] = noiseHkdf(this.s.ck, ikm, 3);
    this.s.ck = ck!;
    this.mixHash(th!);
    this.s.k = k;
    this.s.n = 0;
  }
  encryptAndHash(pt: Uint8Array): Uint8Array {
    const k = this.s.k!;
    const c = chacha20poly1305(k, noiseNonce(this.s.n++), this.s.h).encrypt(pt);
    this.mixHash(c);
    return c;
  }
  /** Undefined when authentication fails (state then unreliable: restore a snapshot). */
  decryptAndHash(c: Uint8Array): Uint8Array | undefined {
    const k = this.s.k!;
    let p: Uint8Array;
    try {
      p = chacha20poly1305(k, noiseNonce(this.s.n), this.s.h).decrypt(c);
    } catch {
      return undefined;
    }
    this.s.n++;
    this.mixHash(c);
    return p;
  }
  split(): [Uint8Array, Uint8Array] {
    const [a, b] = noiseHkdf(this.s.ck, EMPTY, 2);
    return [a!, b!];
  }
}

export interface KeyPair {
  priv: Uint8Array;
  pub: Uint8Array;
}

export function keyPair(priv?: Uint8Array): KeyPair {
  const p = priv ?? x25519.utils.randomSecretKey();
  return { priv: p, pub: x25519.getPublicKey(p) };
}

/** X25519; undefined for an all-zero result (a low-order point) or a bad key. */
export function dh(priv: Uint8Array, pub: Uint8Array): Uint8Array | undefined {
  try {
    const out = x25519.getSharedSecret(priv, pub);
    let z = 0;
    for (const b of out) z |= b;
    return z === 0 ? undefined : out;
  } catch {
    return undefined;
  }
}

export interface Message2Result {
  /** The responder's AEAD choice (payload2). */
  aead: number;
  /** Responder's static public key. */
  rs: Uint8Array;
}

/** The initiator's Noise state across messages 1-3. */
export class NoiseInitiator {
  private readonly sym: Symmetric;
  private re: Uint8Array | undefined;
  private rs: Uint8Array | undefined;

  constructor(
    prologue: Uint8Array,
    private readonly psk: Uint8Array,
    private readonly s: KeyPair,
    private readonly e: KeyPair,
  ) {
    this.sym = new Symmetric(prologue);
  }

  /** `-> psk, e` with payload1: returns e.pub || ENCRYPT(payload1) (32 + len + 16). */
  writeMessage1(payload1: Uint8Array): Uint8Array {
    this.sym.mixKeyAndHash(this.psk);
    this.sym.mixHash(this.e.pub);
    this.sym.mixKey(this.e.pub);
    return concat(this.e.pub, this.sym.encryptAndHash(payload1));
  }

  /**
   * `<- e, ee, s, es` (97 bytes). Undefined, with the state rolled back, when
   * it fails; the payload must be one byte.
   */
  readMessage2(msg: Uint8Array): Message2Result | undefined {
    if (msg.length !== 97) return undefined;
    const saved = this.sym.snapshot();
    const fail = (): undefined => {
      this.sym.restore(saved);
      return undefined;
    };
    const re = msg.subarray(0, 32);
    this.sym.mixHash(re);
    this.sym.mixKey(re);
    const ee = dh(this.e.priv, re);
    if (ee === undefined) return fail();
    this.sym.mixKey(ee);
    const rs = this.sym.decryptAndHash(msg.subarray(32, 80));
    if (rs === undefined) return fail();
    const es = dh(this.e.priv, rs);
    if (es === undefined) return fail();
    this.sym.mixKey(es);
    const p2 = this.sym.decryptAndHash(msg.subarray(80, 97));
    if (p2 === undefined || p2.length !== 1) return fail();
    this.re = re.slice();
    this.rs = rs;
    return { aead: p2[0]!, rs };
  }

  /** `-> s, se` with an empty payload (64 bytes). Call after readMessage2 succeeded. */
  writeMessage3(): Uint8Array | undefined {
    const c1 = this.sym.encryptAndHash(this.s.pub);
    const se = dh(this.s.priv, this.re!);
    if (se === undefined) return undefined;
    this.sym.mixKey(se);
    return concat(c1, this.sym.encryptAndHash(EMPTY));
  }

  /** (i2r, r2i) traffic secrets (4.3). */
  split(): [Uint8Array, Uint8Array] {
    return this.sym.split();
  }

  handshakeHash(): Uint8Array {
    return this.sym.s.h;
  }

  remoteStatic(): Uint8Array | undefined {
    return this.rs;
  }
}
