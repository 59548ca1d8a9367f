// Connect tokens (PROTOCOL.md 14.3): the "stt1." text form, its parsing and
// the client-side validity checks made before anything is sent.

import { decodeUtf8 } from './bytes.js';
import { SttError } from './errors.js';

export interface Token {
  clientId: bigint;
  issuedAt: Date;
  expiresAt: Date;
  audience: string[];
  /** The client's Noise PSK. */
  clientKey: Uint8Array;
  /** The sealed ticket, opaque to the client (96..1000 bytes). */
  ticket: Uint8Array;
}

const PREFIX = 'stt1.';
const B64URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const B64_INDEX = new Map<string, number>([...B64URL].map((c, i) => [c, i]));

export function base64urlDecode(s: string): Uint8Array | undefined {
  if (s.length % 4 === 1) return undefined;
  const out = new Uint8Array(Math.floor((s.length * 3) / 4));
  let acc = 0;
  let bits = 0;
  let o = 0;
  for (const c of s) {
    const v = B64_INDEX.get(c);
    if (v === undefined) return undefined;
    acc = ((acc << 6) | v) & 0xffffff;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out[o++] = (acc >> bits) & 0xff;
    }
  }
  // Unpadded base64url: leftover bits must be zero.
  if ((acc & ((1 << bits) - 1)) !== 0) return undefined;
  return out.subarray(0, o);
}

export function base64urlEncode(b: Uint8Array): string {
  let s = '';
  let i = 0;
  for (; i + 3 <= b.length; i += 3) {
    const v = (b[i]! << 16) | (b[i + 1]! << 8) | b[i + 2]!;
    s += B64URL[v >> 18]! + B64URL[(v >> 12) & 63]! + B64URL[(v >> 6) & 63]! + B64URL[v & 63]!;
  }
  const rest = b.length - i;
  if (rest === 1) {
    const v = b[i]! << 16;
    s += B64URL[v >> 18]! + B64URL[(v >> 12) & 63]!;
  } else if (rest === 2) {
    const v = (b[i]! << 16) | (b[i + 1]! << 8);
    s += B64URL[v >> 18]! + B64URL[(v >> 12) & 63]! + B64URL[(v >> 6) & 63]!;
  }
  return s;
}

function invalid(why: string): SttError {
  return new SttError('TOKEN_INVALID', `invalid connect token: ${why}`);
}

/** Parses a "stt1." token; throws SttError('TOKEN_INVALID') when malformed. */
export function parseToken(token: string): Token {
  if (typeof token !== 'string' || !token.startsWith(PREFIX)) throw invalid('it must be a string starting with "stt1."');
  const b = base64urlDecode(token.slice(PREFIX.length).trim());
  if (b === undefined) throw invalid('not unpadded base64url after "stt1."');
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let o = 0;
  const need = (n: number): void => {
    if (b.length - o < n) throw invalid('truncated');
  };
  need(1 + 24 + 32 + 1);
  if (b[0] !== 1) throw invalid(`unknown token version ${b[0]}`);
  o = 1;
  const clientId = dv.getBigUint64(o, false);
  const issued = dv.getBigUint64(o + 8, false);
  const expires = dv.getBigUint64(o + 16, false);
  o += 24;
  const clientKey = b.slice(o, o + 32);
  o += 32;
  const n = b[o++]!;
  if (n < 1 || n > 8) throw invalid('the audience must have 1 to 8 entries');
  const audience: string[] = [];
  for (let i = 0; i < n; i++) {
    need(1);
    const len = b[o++]!;
    if (len < 1) throw invalid('empty audience entry');
    need(len);
    const name = decodeUtf8(b.subarray(o, o + len));
    if (name === undefined) throw invalid('audience entry is not UTF-8');
    audience.push(name);
    o += len;
  }
  need(2);
  const t = dv.getUint16(o, false);
  o += 2;
  if (t < 96 || t > 1000) throw invalid(`ticket length ${t} outside 96..1000`);
  need(t);
  const ticket = b.slice(o, o + t);
  o += t;
  if (o !== b.length) throw invalid('trailing bytes');
  if (expires <= issued) throw invalid('expires_at is not after issued_at');
  const MAX_SECS = 8_640_000_000_000n; // the largest Date
  if (expires > MAX_SECS) throw invalid('expires_at out of range');
  return {
    clientId,
    issuedAt: new Date(Number(issued) * 1000),
    expiresAt: new Date(Number(expires) * 1000),
    audience,
    clientKey,
    ticket,
  };
}

/** Local pre-flight: throws TOKEN_EXPIRED when the token cannot be valid any more. */
export function checkNotExpired(t: Token, nowMs: number = Date.now()): void {
  if (nowMs >= t.expiresAt.getTime()) {
    throw new SttError(
      'TOKEN_EXPIRED',
      `connect token expired at ${t.expiresAt.toISOString()} (now ${new Date(nowMs).toISOString()}); ask the backend for a new one`,
      { reason: 'expired' },
    );
  }
}
