// Data-frame AEADs (PROTOCOL.md 6.1, 6.2): AES-256-GCM and ChaCha20-Poly1305
// keyed per generation. ChaCha20-Poly1305 is noble's. AES-256-GCM uses
// WebCrypto (asynchronous, much faster on large frames) when the runtime has
// it, and noble's synchronous GCM for frames under a size threshold, where
// WebCrypto's per-call cost dominates (perf/aead-micro.mjs measures both).

import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { gcm } from '@noble/ciphers/aes.js';

export const AEAD_AES_256_GCM = 1;
export const AEAD_CHACHA20_POLY1305 = 2;

export type AeadName = 'aes-256-gcm' | 'chacha20-poly1305';

export function aeadName(id: number): AeadName {
  return id === AEAD_AES_256_GCM ? 'aes-256-gcm' : 'chacha20-poly1305';
}

/** Result of a seal/open: synchronous when small or noble, a Promise when WebCrypto did it. */
export type MaybePromise<T> = T | Promise<T>;

export interface FrameCipher {
  /** ciphertext || tag */
  seal(nonce: Uint8Array, aad: Uint8Array, plaintext: Uint8Array): MaybePromise<Uint8Array>;
  /** plaintext, or undefined when authentication fails */
  open(nonce: Uint8Array, aad: Uint8Array, sealed: Uint8Array): MaybePromise<Uint8Array | undefined>;
  /** Which implementation seals frames of `len` bytes. */
  engine(len: number): 'webcrypto' | 'noble';
}

/** Options of the AES engine choice; tests and the benchmark may force one. */
export const aeadTuning = {
  /** Frames of at least this many plaintext bytes use WebCrypto (when available). */
  webCryptoThreshold: 2048,
  /** Force: 'auto' (threshold), 'noble' or 'webcrypto'. */
  aesEngine: 'auto' as 'auto' | 'noble' | 'webcrypto',
};

function subtle(): SubtleCrypto | undefined {
  return globalThis.crypto?.subtle;
}

class ChaChaCipher implements FrameCipher {
  constructor(private readonly key: Uint8Array) {}
  seal(nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array): Uint8Array {
    return chacha20poly1305(this.key, nonce, aad).encrypt(pt);
  }
  open(nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): Uint8Array | undefined {
    try {
      return chacha20poly1305(this.key, nonce, aad).decrypt(ct);
    } catch {
      return undefined;
    }
  }
  engine(): 'noble' {
    return 'noble';
  }
}

class AesGcmCipher implements FrameCipher {
  private cryptoKey: Promise<CryptoKey> | undefined;
  constructor(private readonly key: Uint8Array) {
    const s = subtle();
    if (s !== undefined && aeadTuning.aesEngine !== 'noble') {
      this.cryptoKey = s.importKey('raw', key as BufferSource, 'AES-GCM', false, ['encrypt', 'decrypt']);
      // An import failure falls back to noble (engine() checks the flag).
      this.cryptoKey.catch(() => {
        this.cryptoKey = undefined;
      });
    }
  }
  engine(len: number): 'webcrypto' | 'noble' {
    if (this.cryptoKey === undefined) return 'noble';
    if (aeadTuning.aesEngine === 'webcrypto') return 'webcrypto';
    return len >= aeadTuning.webCryptoThreshold ? 'webcrypto' : 'noble';
  }
  seal(nonce: Uint8Array, aad: Uint8Array, pt: Uint8Array): MaybePromise<Uint8Array> {
    if (this.engine(pt.length) === 'noble') return gcm(this.key, nonce, aad).encrypt(pt);
    const ck = this.cryptoKey!;
    return ck.then(async (k) => {
      const r = await subtle()!.encrypt(
        { name: 'AES-GCM', iv: nonce as BufferSource, additionalData: aad as BufferSource, tagLength: 128 },
        k,
        pt as BufferSource,
      );
      return new Uint8Array(r);
    });
  }
  open(nonce: Uint8Array, aad: Uint8Array, ct: Uint8Array): MaybePromise<Uint8Array | undefined> {
    if (this.engine(ct.length) === 'noble') {
      try {
        return gcm(this.key, nonce, aad).decrypt(ct);
      } catch {
        return undefined;
      }
    }
    const ck = this.cryptoKey!;
    return ck.then(async (k) => {
      try {
        const r = await subtle()!.decrypt(
          { name: 'AES-GCM', iv: nonce as BufferSource, additionalData: aad as BufferSource, tagLength: 128 },
          k,
          ct as BufferSource,
        );
        return new Uint8Array(r);
      } catch {
        return undefined;
      }
    });
  }
}

export function makeCipher(aead: number, key: Uint8Array): FrameCipher {
  return aead === AEAD_AES_256_GCM ? new AesGcmCipher(key) : new ChaChaCipher(key);
}

/** 0x00000000 || pn (8 bytes, big-endian): the data-frame nonce (6.2). */
export function frameNonce(pn: number): Uint8Array {
  const n = new Uint8Array(12);
  const dv = new DataView(n.buffer);
  dv.setUint32(4, Math.floor(pn / 0x100000000), false);
  dv.setUint32(8, pn >>> 0, false);
  return n;
}
