// Test-only token issuer written from PROTOCOL.md 14.1-14.3, to build tokens
// and tickets for unit tests without a server.
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { hkdf32, hmacSha256 } from '../../dist/kdf.js';
import { concat, text } from '../../dist/bytes.js';
import { base64urlEncode } from '../../dist/token.js';

function u64(v) {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(v));
  return b;
}

export function issue({ issuingKey = new Uint8Array(32).fill(9), clientId = 42n, issuedAt, expiresAt, audience = ['test'], clientKey = new Uint8Array(32).fill(5), data = new Uint8Array(0), salt = new Uint8Array(16).fill(1) }) {
  const aud = concat(Uint8Array.of(audience.length), ...audience.map((a) => concat(Uint8Array.of(text(a).length), text(a))));
  const plain = concat(u64(clientId), u64(issuedAt), u64(expiresAt), clientKey, aud, Uint8Array.of(data.length >> 8, data.length & 0xff), data);
  const keyId = hmacSha256(issuingKey, text('stt v1 token key id')).subarray(0, 4);
  const head = concat(Uint8Array.of(1), keyId, salt);
  const ticketKey = hkdf32(salt, issuingKey, text('stt v1 ticket'));
  const sealed = chacha20poly1305(ticketKey, new Uint8Array(12), head).encrypt(plain);
  const ticket = concat(head, sealed);
  const body = concat(Uint8Array.of(1), u64(clientId), u64(issuedAt), u64(expiresAt), clientKey, aud, Uint8Array.of(ticket.length >> 8, ticket.length & 0xff), ticket);
  return { token: 'stt1.' + base64urlEncode(body), ticket, clientKey };
}

export const nowSecs = () => Math.floor(Date.now() / 1000);
