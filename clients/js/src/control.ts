// CONTROL message plaintexts (PROTOCOL.md 8): encoding and strict decoding.

import { decodeUtf8, utf8 } from './bytes.js';

export const C_PING = 0x01;
export const C_PONG = 0x02;
export const C_FLOW_CREDIT = 0x03;
export const C_KEY_ROTATION = 0x04;
export const C_CLOSE = 0x05;
export const C_ERROR = 0x06;
export const C_PATH_CHALLENGE = 0x07;
export const C_PATH_RESPONSE = 0x08;
export const C_REKEY_REQUEST = 0x09;
export const C_REKEY_RESPONSE = 0x0a;

export const CLOSE_NORMAL = 0;
export const CLOSE_SHUTDOWN = 1;
export const CLOSE_PROTOCOL_ERROR = 2;
export const CLOSE_IDLE_TIMEOUT = 3;
export const CLOSE_INTEGRITY_LIMIT = 4;
export const CLOSE_REFUSED = 6;
export const CLOSE_REKEY_TIMEOUT = 7;
export const CLOSE_REVOKED = 8;
export const CLOSE_REPLACED = 9;

export type Control =
  | { kind: 'ping' | 'pong' | 'flow_credit'; value: bigint }
  | { kind: 'key_rotation' }
  | { kind: 'close' | 'error'; code: number; reason: string }
  | { kind: 'path_challenge' | 'path_response'; data: Uint8Array }
  | { kind: 'rekey_request' | 'rekey_response'; seq: bigint; ephemeral: Uint8Array };

function u64msg(sub: number, v: bigint): Uint8Array {
  const out = new Uint8Array(9);
  out[0] = sub;
  new DataView(out.buffer).setBigUint64(1, v, false);
  return out;
}

export const encodePing = (token: bigint): Uint8Array => u64msg(C_PING, token);
export const encodePong = (token: bigint): Uint8Array => u64msg(C_PONG, token);
export const encodeFlowCredit = (bytes: bigint): Uint8Array => u64msg(C_FLOW_CREDIT, bytes);
export const encodeKeyRotation = (): Uint8Array => Uint8Array.of(C_KEY_ROTATION);

/** Truncates to at most `max` bytes of UTF-8 on a character boundary. */
export function truncateUtf8(s: string, max: number): Uint8Array {
  let b = utf8.encode(s);
  if (b.length <= max) return b;
  let end = max;
  while (end > 0 && (b[end]! & 0xc0) === 0x80) end--;
  return b.slice(0, end);
}

function textMsg(sub: number, code: number, reason: string): Uint8Array {
  const r = truncateUtf8(reason, 1024);
  const out = new Uint8Array(5 + r.length);
  out[0] = sub;
  const dv = new DataView(out.buffer);
  dv.setUint16(1, code, false);
  dv.setUint16(3, r.length, false);
  out.set(r, 5);
  return out;
}

export const encodeClose = (code: number, reason: string): Uint8Array => textMsg(C_CLOSE, code, reason);
export const encodeError = (code: number, message: string): Uint8Array => textMsg(C_ERROR, code, message);

export function encodePath(sub: typeof C_PATH_CHALLENGE | typeof C_PATH_RESPONSE, data: Uint8Array): Uint8Array {
  const out = new Uint8Array(9);
  out[0] = sub;
  out.set(data.subarray(0, 8), 1);
  return out;
}

export function encodeRekey(sub: typeof C_REKEY_REQUEST | typeof C_REKEY_RESPONSE, seq: bigint, e: Uint8Array): Uint8Array {
  const out = new Uint8Array(41);
  out[0] = sub;
  new DataView(out.buffer).setBigUint64(1, seq, false);
  out.set(e, 9);
  return out;
}

/** Decodes a control plaintext; undefined when malformed (drop). */
export function decodeControl(p: Uint8Array): Control | undefined {
  if (p.length === 0) return undefined;
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const sub = p[0]!;
  switch (sub) {
    case C_PING:
    case C_PONG:
    case C_FLOW_CREDIT: {
      if (p.length !== 9) return undefined;
      const kind = sub === C_PING ? 'ping' : sub === C_PONG ? 'pong' : 'flow_credit';
      return { kind, value: dv.getBigUint64(1, false) };
    }
    case C_KEY_ROTATION:
      return p.length === 1 ? { kind: 'key_rotation' } : undefined;
    case C_CLOSE:
    case C_ERROR: {
      if (p.length < 5) return undefined;
      const len = dv.getUint16(3, false);
      if (len > 1024 || p.length !== 5 + len) return undefined;
      const reason = decodeUtf8(p.subarray(5));
      if (reason === undefined) return undefined;
      return { kind: sub === C_CLOSE ? 'close' : 'error', code: dv.getUint16(1, false), reason };
    }
    case C_PATH_CHALLENGE:
    case C_PATH_RESPONSE:
      if (p.length !== 9) return undefined;
      return { kind: sub === C_PATH_CHALLENGE ? 'path_challenge' : 'path_response', data: p.slice(1) };
    case C_REKEY_REQUEST:
    case C_REKEY_RESPONSE:
      if (p.length !== 41) return undefined;
      return {
        kind: sub === C_REKEY_REQUEST ? 'rekey_request' : 'rekey_response',
        seq: dv.getBigUint64(1, false),
        ephemeral: p.slice(9),
      };
    default:
      return undefined;
  }
}
