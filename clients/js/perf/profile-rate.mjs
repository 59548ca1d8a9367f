// Profiling helper: one stt client pipelining 64-byte echoes against a running
// `stt serve` (URL and TOKEN from argv), for `node --cpu-prof`.
import { connect } from '../dist/index.js';
const [url, token, aead = 'auto', n = '30000'] = process.argv.slice(2);
const s = await connect(url, { token, reconnect: false, aead });
const N = Number(n);
let got = 0;
let sent = 0;
let wake;
s.onmessage = () => {
  got++;
  if (wake) {
    const w = wake;
    wake = undefined;
    w();
  }
};
const t = performance.now();
while (got < N) {
  while (sent < N && sent - got < 256) {
    s.send(new Uint8Array(64));
    sent++;
  }
  await new Promise((r) => (wake = r));
}
const secs = (performance.now() - t) / 1000;
console.log(`${aead}: ${(N / secs).toFixed(0)} msg/s, ${s.getStatistics().aead}`);
await s.close();
