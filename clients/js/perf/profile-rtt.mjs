// Profiling helper: sequential 64-byte echoes against a running `stt serve`
// (URL and TOKEN from argv); prints the median and p99 round trip.
import { connect } from '../dist/index.js';
const [url, token, aead = 'auto', n = '3000'] = process.argv.slice(2);
const s = await connect(url, { token, reconnect: false, aead });
const N = Number(n);
const xs = [];
let wake;
s.onmessage = () => wake();
for (let i = 0; i < N + 300; i++) {
  const t = performance.now();
  const p = new Promise((r) => (wake = r));
  s.send(new Uint8Array(64));
  await p;
  if (i >= 300) xs.push((performance.now() - t) * 1000);
}
xs.sort((a, b) => a - b);
console.log(`${aead} (${s.getStatistics().aead}): median ${xs[N >> 1].toFixed(1)} us, p99 ${xs[Math.floor(N * 0.99)].toFixed(1)} us`);
await s.close();
