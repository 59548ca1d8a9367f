// Byte helpers shared by every layer: big-endian integers, concatenation,
// hex and UTF-8, constant-time comparison and the CSPRNG.

export const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** ASCII/UTF-8 bytes of a label. */
export function text(s: string): Uint8Array {
  return utf8.encode(s);
}

/** UTF-8 decode; undefined when the bytes are not valid UTF-8. */
export function decodeUtf8(b: Uint8Array): string | undefined {
  try {
    return utf8Strict.decode(b);
  } catch {
    return undefined;
  }
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export function hex(b: Uint8Array): string {
  let s = '';
  for (const x of b) s += x.toString(16).padStart(2, '0');
  return s;
}

export function fromHex(s: string): Uint8Array {
  const clean = s.replace(/\s+/g, '');
  if (clean.length % 2 !== 0 || /[^0-9a-fA-F]/.test(clean)) throw new Error('invalid hex');
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.substr(i * 2, 2), 16);
  return out;
}

export function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let d = 0;
  for (let i = 0; i < a.length; i++) d |= a[i]! ^ b[i]!;
  return d === 0;
}

export function view(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Reads a big-endian u64 as a bigint. */
export function readU64(b: Uint8Array, off: number): bigint {
  return view(b).getBigUint64(off, false);
}

export function writeU64(b: Uint8Array, off: number, v: bigint): void {
  view(b).setBigUint64(off, v, false);
}

/**
 * Reads a big-endian u64 as a number, or -1 when it is 2^53 or more (a value
 * no honest peer reaches: callers refuse it).
 */
export function readU64Num(b: Uint8Array, off: number): number {
  const dv = view(b);
  const hi = dv.getUint32(off, false);
  if (hi >= 0x200000) return -1;
  return hi * 0x100000000 + dv.getUint32(off + 4, false);
}

/** Writes a non-negative safe integer as a big-endian u64. */
export function writeU64Num(b: Uint8Array, off: number, v: number): void {
  const dv = view(b);
  dv.setUint32(off, Math.floor(v / 0x100000000), false);
  dv.setUint32(off + 4, v >>> 0, false);
}

export function u64Bytes(v: bigint): Uint8Array {
  const out = new Uint8Array(8);
  writeU64(out, 0, v);
  return out;
}

export function randomBytes(n: number): Uint8Array {
  const out = new Uint8Array(n);
  globalThis.crypto.getRandomValues(out);
  return out;
}

/** Copies any binary input (or a string, as UTF-8) into a Uint8Array view. */
export function toBytes(data: Uint8Array | ArrayBuffer | ArrayBufferView | string): Uint8Array {
  if (typeof data === 'string') return utf8.encode(data);
  if (data instanceof Uint8Array) return data;
  if (data instanceof ArrayBuffer) return new Uint8Array(data);
  if (ArrayBuffer.isView(data)) return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  throw new TypeError('data must be a Uint8Array, ArrayBuffer or string');
}
