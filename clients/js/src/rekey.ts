// Rekey with fresh X25519 (PROTOCOL.md 6.8): the key schedule and the side's
// state (Idle, Requested, Responded, Switched) for a handshake initiator.

import { concat, text, u64Bytes } from './bytes.js';
import { hkdf32, hkdfExpand32, hkdfExtract, sha256Of } from './kdf.js';
import { dh, KeyPair } from './noise.js';

const LABEL = text('stt v1 rekey');
const CK_INFO = text('stt v1 rekey ck');
const I2R_INFO = text('stt v1 rekey i2r');
const R2I_INFO = text('stt v1 rekey r2i');
const SECRET_INFO = text('stt v1 rekey secret');

export function rekeyCk0(i2r: Uint8Array, r2i: Uint8Array): Uint8Array {
  return hkdf32(LABEL, concat(i2r, r2i), CK_INFO);
}

export interface RekeyOutput {
  ck: Uint8Array;
  mixI2r: Uint8Array;
  mixR2i: Uint8Array;
  th: Uint8Array;
  dh: Uint8Array;
}

/** The schedule of 6.8; undefined when the DH is all zero (low-order key). */
export function rekeySchedule(
  ckPrev: Uint8Array,
  sessionId: Uint8Array,
  seq: bigint,
  eRequest: Uint8Array,
  eResponse: Uint8Array,
  ownPriv: Uint8Array,
  peerPub: Uint8Array,
): RekeyOutput | undefined {
  const shared = dh(ownPriv, peerPub);
  if (shared === undefined) return undefined;
  const th = sha256Of(LABEL, sessionId, u64Bytes(seq), eRequest, eResponse);
  const prk = hkdfExtract(ckPrev, concat(shared, th));
  return {
    ck: hkdfExpand32(prk, CK_INFO),
    mixI2r: hkdfExpand32(prk, I2R_INFO),
    mixR2i: hkdfExpand32(prk, R2I_INFO),
    th,
    dh: shared,
  };
}

/** secret'_(g+1) = HKDF(salt = mix, IKM = secret_(g+1), info "stt v1 rekey secret"). */
export function rekeyedSecret(mix: Uint8Array, ratchetNext: Uint8Array): Uint8Array {
  return hkdf32(mix, ratchetNext, SECRET_INFO);
}

export type RekeyState =
  | { kind: 'idle' }
  | { kind: 'requested'; seq: bigint; e: KeyPair; nextRepeat: number }
  | { kind: 'responded'; seq: bigint; eRequest: Uint8Array; e: KeyPair; pendingCk: Uint8Array; recvGenAtSwitch: number }
  | { kind: 'switched'; seq: bigint; pendingCk: Uint8Array; recvGenAtSwitch: number };
