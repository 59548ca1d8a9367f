// Micro-benchmark: which AEAD implementation seals fastest in this runtime
// (noble ChaCha20-Poly1305, noble AES-256-GCM, WebCrypto AES-256-GCM).
import { chacha20poly1305 } from '@noble/ciphers/chacha.js';
import { gcm } from '@noble/ciphers/aes.js';
const key = new Uint8Array(32).fill(3);
const aad = new Uint8Array(29);
const subtle = globalThis.crypto.subtle;
const ck = await subtle.importKey('raw', key, 'AES-GCM', false, ['encrypt', 'decrypt']);
function nonce(i) { const n = new Uint8Array(12); new DataView(n.buffer).setUint32(8, i); return n; }
for (const round of [1, 2]) for (const size of [64, 1024, 16384, 1 << 20]) {
  const pt = new Uint8Array(size);
  const iters = Math.max(20, Math.floor(4e6 / (size + 200)));
  let t = performance.now();
  for (let i = 0; i < iters; i++) chacha20poly1305(key, nonce(i), aad).encrypt(pt);
  const cc = (performance.now() - t) / iters;
  t = performance.now();
  for (let i = 0; i < iters; i++) gcm(key, nonce(i), aad).encrypt(pt);
  const ng = (performance.now() - t) / iters;
  t = performance.now();
  for (let i = 0; i < iters; i++) await subtle.encrypt({ name: 'AES-GCM', iv: nonce(i), additionalData: aad }, ck, pt);
  const wc = (performance.now() - t) / iters;
  t = performance.now();
  const ps = [];
  for (let i = 0; i < iters; i++) ps.push(subtle.encrypt({ name: 'AES-GCM', iv: nonce(i), additionalData: aad }, ck, pt));
  await Promise.all(ps);
  const wcp = (performance.now() - t) / iters;
  const f = (us) => (us * 1000).toFixed(1).padStart(9) + ' us';
  console.log(`${String(size).padStart(8)} B: noble chacha ${f(cc)}  noble aes-gcm ${f(ng)}  webcrypto aes-gcm seq ${f(wc)}  pipelined ${f(wcp)}`);
}
