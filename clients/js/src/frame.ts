// The 29-byte frame header (PROTOCOL.md 2.1, 3): constants, encoding and the
// receiver's validation steps 1-9. Returns undefined on bad input, never throws.

export const HEADER_LEN = 29;
export const TAG_LEN = 16;
export const OVERHEAD = HEADER_LEN + TAG_LEN;
export const MAX_PAYLOAD = 16 * 1024 * 1024 + 64;

export const T_DATA = 0x01;
export const T_CONTROL = 0x02;
export const T_STREAM = 0x03;
export const T_AUTH = 0x04;
export const T_HANDSHAKE = 0x05;
export const T_CHANNEL = 0x06;

export const F_KEY_PHASE = 0x01;
export const F_BATCH = 0x02;

export function isMessageType(t: number): boolean {
  return t === T_DATA || (t >= 0x80 && t <= 0xff);
}

export function isSealedType(t: number): boolean {
  return t !== T_AUTH && t !== T_HANDSHAKE;
}

export interface Header {
  type: number;
  flags: number;
  /** The 8 session-id bytes as on the wire. */
  sessionId: Uint8Array;
  streamId: number;
  /** Packet number; -1 when it is 2^53 or more (refused by every check). */
  pn: number;
  payloadLen: number;
}

/** Writes a header into `out` at `off`. */
export function writeHeader(
  out: Uint8Array,
  off: number,
  type: number,
  flags: number,
  sessionId: Uint8Array,
  streamId: number,
  pn: number,
  payloadLen: number,
): void {
  out[off] = 0x53;
  out[off + 1] = 0x54;
  out[off + 2] = 1;
  out[off + 3] = type;
  out[off + 4] = flags;
  out.set(sessionId, off + 5);
  const dv = new DataView(out.buffer, out.byteOffset + off, HEADER_LEN);
  dv.setUint32(13, streamId >>> 0, false);
  dv.setUint32(17, Math.floor(pn / 0x100000000), false);
  dv.setUint32(21, pn >>> 0, false);
  dv.setUint32(25, payloadLen >>> 0, false);
}

export function encodeHeader(
  type: number,
  flags: number,
  sessionId: Uint8Array,
  streamId: number,
  pn: number,
  payloadLen: number,
): Uint8Array {
  const out = new Uint8Array(HEADER_LEN);
  writeHeader(out, 0, type, flags, sessionId, streamId, pn, payloadLen);
  return out;
}

/**
 * Decodes the header at `off` and checks steps 1-9 of PROTOCOL.md 2.1.
 * Returns undefined when the frame must be dropped.
 */
export function decodeHeader(d: Uint8Array, off: number): Header | undefined {
  if (d.length - off < HEADER_LEN) return undefined;
  if (d[off] !== 0x53 || d[off + 1] !== 0x54) return undefined;
  if (d[off + 2] !== 1) return undefined;
  const type = d[off + 3]!;
  if (type === 0 || (type > T_CHANNEL && type < 0x80)) return undefined;
  const flags = d[off + 4]!;
  if ((flags & 0xfc) !== 0) return undefined;
  const dv = new DataView(d.buffer, d.byteOffset + off, HEADER_LEN);
  const payloadLen = dv.getUint32(25, false);
  if (payloadLen > MAX_PAYLOAD) return undefined;
  if (isSealedType(type) && payloadLen < TAG_LEN) return undefined;
  if ((flags & F_BATCH) !== 0 && !isMessageType(type)) return undefined;
  if (d.length - off - HEADER_LEN < payloadLen) return undefined;
  const hi = dv.getUint32(17, false);
  const pn = hi >= 0x200000 ? -1 : hi * 0x100000000 + dv.getUint32(21, false);
  return {
    type,
    flags,
    sessionId: d.subarray(off + 5, off + 13),
    streamId: dv.getUint32(13, false),
    pn,
    payloadLen,
  };
}
