// HKDF/HMAC-SHA256 (RFC 5869) and the key derivations of PROTOCOL.md 4.4,
// 10.4/14.4 (challenge MAC key), 14.1 (ticket keys, for tests) and 4.2.

import { hmac } from '@noble/hashes/hmac.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { concat, text } from './bytes.js';

export function hmacSha256(key: Uint8Array, ...data: Uint8Array[]): Uint8Array {
  const h = hmac.create(sha256, key);
  for (const d of data) h.update(d);
  return h.digest();
}

export function hkdfExtract(salt: Uint8Array, ikm: Uint8Array): Uint8Array {
  return hmacSha256(salt, ikm);
}

/** HKDF-Expand with a 32-byte output (one block). */
export function hkdfExpand32(prk: Uint8Array, info: Uint8Array): Uint8Array {
  return hmacSha256(prk, info, Uint8Array.of(1));
}

export function hkdf32(salt: Uint8Array, ikm: Uint8Array, info: Uint8Array): Uint8Array {
  return hkdfExpand32(hkdfExtract(salt, ikm), info);
}

const KEY_INFO = text('stt v1 key');
const UPDATE_INFO = text('stt v1 key update');

/** `key_n` from `secret_n` (4.4). */
export function dataKey(secret: Uint8Array): Uint8Array {
  return hkdfExpand32(secret, KEY_INFO);
}

/** `secret_(n+1)` from `secret_n` (4.4). */
export function nextSecret(secret: Uint8Array): Uint8Array {
  return hkdfExpand32(secret, UPDATE_INFO);
}

/** The key of cookie-challenge and refusal MACs (10.4, 14.4). */
export function challengeKey(psk: Uint8Array): Uint8Array {
  return hkdf32(text('stt v2 cookie challenge'), psk, text('challenge mac'));
}

export function sha256Of(...parts: Uint8Array[]): Uint8Array {
  return sha256(concat(...parts));
}
