// Message plaintexts (PROTOCOL.md 7): BATCH records and STREAM fragment
// headers, with the sender's splitting rule.

export const MAX_BATCH_RECORDS = 4096;
export const FRAGMENT_HEADER_LEN = 15;

/** Encodes messages as BATCH records (4-byte length, then bytes). */
export function encodeBatch(msgs: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const m of msgs) n += 4 + m.length;
  const out = new Uint8Array(n);
  const dv = new DataView(out.buffer);
  let o = 0;
  for (const m of msgs) {
    dv.setUint32(o, m.length, false);
    out.set(m, o + 4);
    o += 4 + m.length;
  }
  return out;
}

/** Parses all records or none: undefined when malformed or over a limit. */
export function decodeBatch(p: Uint8Array, maxMessage: number): Uint8Array[] | undefined {
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  const out: Uint8Array[] = [];
  let o = 0;
  while (o < p.length) {
    if (p.length - o < 4) return undefined;
    const len = dv.getUint32(o, false);
    o += 4;
    if (len > p.length - o || len > maxMessage) return undefined;
    if (out.length === MAX_BATCH_RECORDS) return undefined;
    out.push(p.subarray(o, o + len));
    o += len;
  }
  return out;
}

export interface FragmentHeader {
  messageId: number;
  totalLen: number;
  index: number;
  chunkLen: number;
  innerType: number;
}

export function encodeFragment(h: FragmentHeader, chunk: Uint8Array): Uint8Array {
  const out = new Uint8Array(FRAGMENT_HEADER_LEN + chunk.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, h.messageId >>> 0, false);
  dv.setUint32(4, h.totalLen, false);
  dv.setUint32(8, h.index, false);
  dv.setUint16(12, h.chunkLen, false);
  out[14] = h.innerType;
  out.set(chunk, FRAGMENT_HEADER_LEN);
  return out;
}

export function decodeFragmentHeader(p: Uint8Array): FragmentHeader | undefined {
  if (p.length < FRAGMENT_HEADER_LEN) return undefined;
  const dv = new DataView(p.buffer, p.byteOffset, p.byteLength);
  return {
    messageId: dv.getUint32(0, false),
    totalLen: dv.getUint32(4, false),
    index: dv.getUint32(8, false),
    chunkLen: dv.getUint16(12, false),
    innerType: p[14]!,
  };
}

/** Splits a message into fragment plaintexts of chunk length `chunkLen` (7.4). */
export function splitMessage(messageId: number, msg: Uint8Array, innerType: number, chunkLen: number): Uint8Array[] {
  const count = Math.ceil(msg.length / chunkLen);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const chunk = msg.subarray(i * chunkLen, Math.min((i + 1) * chunkLen, msg.length));
    out.push(encodeFragment({ messageId, totalLen: msg.length, index: i, chunkLen, innerType }, chunk));
  }
  return out;
}
