// Per-direction key state (PROTOCOL.md 4.4, 6.6): the sending generation with
// its update triggers, confirmation and confidentiality budget; the receiving
// current/next/previous keys chosen by KEY_PHASE.

import { AEAD_AES_256_GCM, FrameCipher, makeCipher } from './aead.js';
import { dataKey, nextSecret } from './kdf.js';

export interface KeyLimits {
  updateInterval: number;
  updateBytes: number;
  confidentialityPackets: number;
  confidentialityBytes: number;
  integrityLimit: number;
}

export function limitsFor(aead: number): KeyLimits {
  return aead === AEAD_AES_256_GCM
    ? { updateInterval: 2 ** 22, updateBytes: 2 ** 36, confidentialityPackets: 2 ** 23, confidentialityBytes: 2 ** 37, integrityLimit: 2 ** 52 }
    : { updateInterval: 2 ** 32, updateBytes: 2 ** 46, confidentialityPackets: 2 ** 33, confidentialityBytes: 2 ** 47, integrityLimit: 2 ** 36 };
}

export interface SealKey {
  cipher: FrameCipher;
  phase: number;
  /** True when this frame is the first of a new generation. */
  started: boolean;
}

export class SendKeys {
  gen = 0;
  private secret: Uint8Array;
  private cipher: FrameCipher;
  private override: Uint8Array | undefined;
  private frames = 0;
  private bytes = 0;
  /** The peer was seen to follow the current generation (generation 0: always). */
  confirmed = true;
  /** An update was asked (locally or by the peer's KeyRotation). */
  requested = false;
  /** A rekey switch forces the next frame onto a new generation. */
  forced = false;
  /** A rekey in flight holds every update back (6.8). */
  hold = false;
  /** The first Ping token sealed under the current unconfirmed generation. */
  probeToken: bigint | undefined;

  constructor(
    private readonly aead: number,
    secret0: Uint8Array,
    readonly limits: KeyLimits,
  ) {
    this.secret = secret0;
    this.cipher = makeCipher(aead, dataKey(secret0));
  }

  /** `secret_(g+1)` by the ratchet alone. */
  ratchetNext(): Uint8Array {
    return nextSecret(this.secret);
  }

  /** The rekeyed next secret (6.8) replaces the ratchet's. */
  setNextSecret(s: Uint8Array): void {
    this.override = s;
  }

  private due(): boolean {
    return this.forced || this.requested || this.frames >= this.limits.updateInterval || this.bytes >= this.limits.updateBytes;
  }

  /**
   * The key for the next frame of `payloadLen` bytes (plaintext + tag),
   * updating first when due and allowed; undefined when the confidentiality
   * budget is spent (the session must end: KeyExhausted).
   */
  next(payloadLen: number): SealKey | undefined {
    let started = false;
    if (this.due() && !this.hold && this.confirmed) {
      this.secret = this.override ?? nextSecret(this.secret);
      this.override = undefined;
      this.cipher = makeCipher(this.aead, dataKey(this.secret));
      this.gen++;
      this.frames = 0;
      this.bytes = 0;
      this.confirmed = false;
      this.requested = false;
      this.forced = false;
      this.probeToken = undefined;
      started = true;
    }
    if (this.frames + 1 > this.limits.confidentialityPackets || this.bytes + payloadLen > this.limits.confidentialityBytes) {
      return undefined;
    }
    this.frames++;
    this.bytes += payloadLen;
    return { cipher: this.cipher, phase: this.gen & 1, started };
  }
}

interface RecvKey {
  secret: Uint8Array;
  cipher: FrameCipher;
}

export class RecvKeys {
  gen = 0;
  private current: RecvKey;
  private nextKey: RecvKey;
  private previous: { cipher: FrameCipher; until: number } | undefined;
  private generationStart = 0;

  constructor(
    private readonly aead: number,
    secret0: Uint8Array,
  ) {
    this.current = this.make(secret0);
    this.nextKey = this.make(nextSecret(secret0));
  }

  private make(secret: Uint8Array): RecvKey {
    return { secret, cipher: makeCipher(this.aead, dataKey(secret)) };
  }

  /** `secret_(g+1)` by the ratchet alone. */
  ratchetNext(): Uint8Array {
    return nextSecret(this.current.secret);
  }

  setNextSecret(s: Uint8Array): void {
    this.nextKey = this.make(s);
  }

  /** Which key opens a frame: 'current', 'previous' or 'next' (6.6 table). */
  select(pn: number, phase: number, now: number): { which: 'current' | 'previous' | 'next'; cipher: FrameCipher } | undefined {
    if (phase === (this.gen & 1)) return { which: 'current', cipher: this.current.cipher };
    if (this.previous !== undefined && pn < this.generationStart) {
      if (now >= this.previous.until) {
        this.previous = undefined;
        return undefined;
      }
      return { which: 'previous', cipher: this.previous.cipher };
    }
    return { which: 'next', cipher: this.nextKey.cipher };
  }

  /** A frame opened with the next key: move one generation on. */
  advance(pn: number, now: number, keepPreviousMs: number): void {
    this.previous = { cipher: this.current.cipher, until: now + keepPreviousMs };
    this.current = this.nextKey;
    this.nextKey = this.make(nextSecret(this.current.secret));
    this.generationStart = pn;
    this.gen++;
  }

  /** When the previous key is due to be dropped (Infinity when none). */
  previousDeadline(): number {
    return this.previous?.until ?? Infinity;
  }

  dropPreviousIfDue(now: number): void {
    if (this.previous !== undefined && now >= this.previous.until) this.previous = undefined;
  }
}
