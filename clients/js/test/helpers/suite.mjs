// The end-to-end checks shared by the token and the network-key runs:
// 10,000 messages both ways, a 1 MiB echo, a server restart ridden out.
import assert from 'node:assert/strict';
import { connect } from '../../dist/index.js';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export async function waitFor(pred, ms, what) {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

/** Sends `n` numbered messages (window-paced) and checks each echo arrives exactly once. */
export async function echoMany(s, n, size = 16) {
  const seen = new Uint8Array(n);
  let received = 0;
  let dups = 0;
  let bad = 0;
  s.onmessage = (m) => {
    if (m.data.length !== size) return void bad++;
    const i = new DataView(m.data.buffer, m.data.byteOffset).getUint32(0);
    if (i >= n || m.data[size - 1] !== (i & 0xff)) return void bad++;
    if (seen[i]) dups++;
    else {
      seen[i] = 1;
      received++;
    }
  };
  const window = 512;
  for (let i = 0; i < n; i++) {
    while (i - received >= window) await sleep(1);
    const b = new Uint8Array(size);
    new DataView(b.buffer).setUint32(0, i);
    b[size - 1] = i & 0xff;
    s.send(b);
  }
  await waitFor(() => received + dups + bad >= n, 20_000, `${n} echoes (have ${received})`);
  await sleep(50);
  return { received, dups, bad };
}

export async function bigEcho(s, size) {
  const big = new Uint8Array(size);
  for (let i = 0; i < size; i++) big[i] = (i * 31 + (i >> 8)) & 0xff;
  const got = new Promise((r) => (s.onmessage = r));
  s.send(big);
  const m = await got;
  assert.equal(m.data.length, size);
  assert.ok(Buffer.from(m.data).equals(Buffer.from(big)), 'echo differs');
}

export { connect };
