// Benchmark of the stt JavaScript client against a plain WebSocket client, in
// the same Node.js runtime, side by side and alternately:
//   (a) 64-byte round trip: median and p99 of N sequential echoes;
//   (b) 64-byte messages/s: windowed pipelining, every message numbered and
//       counted (unique echoes, duplicates, missing);
//   (c) one 1 MiB echo (ms), where the AEAD engine matters most.
// stt: `stt serve --ws` (echo) with a connect token from `stt token`;
// plain: `ws_echo` (perf/src/bin/ws_echo.rs, tungstenite). Prints a markdown
// table and writes it to perf/results/js_client.md at the repository's root
// (a section of perf/RESULTS.md, which `stt-perf` gathers).
//
//   npm run bench                       # STT_BIN, WS_ECHO_BIN, ROUNDS, RTT_N, RATE_N, WINDOW
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir, cpus, totalmem, platform, release, loadavg } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect } from '../dist/index.js';
import { aeadTuning } from '../dist/aead.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../../..');
const STT_BIN = process.env.STT_BIN ?? join(root, 'target/release/stt');
const WS_ECHO_BIN = process.env.WS_ECHO_BIN ?? join(root, 'target/release/ws_echo');
const ROUNDS = Number(process.env.ROUNDS ?? 3);
const RTT_N = Number(process.env.RTT_N ?? 2000);
const RATE_N = Number(process.env.RATE_N ?? 50_000);
const WINDOW = Number(process.env.WINDOW ?? 256);
const SIZE = 64;
const BIG = 1 << 20;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function start(bin, args) {
  const child = spawn(bin, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((res, rej) => {
    let out = '';
    const t = setTimeout(() => rej(new Error(`${bin} did not start: ${out}`)), 15_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = /WebSocket listening on (ws:\/\/[^\s]+)/.exec(out);
      if (m) {
        clearTimeout(t);
        res({ url: m[1], stop: () => child.kill('SIGKILL') });
      }
    });
    child.on('exit', (c) => rej(new Error(`${bin} exited ${c}`)));
  });
}

/** A common shape for both clients: send(bytes), onmessage(bytes). */
async function sttClient(url, token, aead, coalesce = true) {
  const s = await connect(url, { token, reconnect: false, aead, coalesce });
  return {
    send: (b) => s.send(b),
    set onmessage(f) {
      s.onmessage = (m) => f(m.data);
    },
    buffered: () => s.bufferedAmount,
    close: () => s.close(),
    stats: () => s.getStatistics(),
  };
}

async function plainClient(url) {
  const ws = new WebSocket(url);
  ws.binaryType = 'arraybuffer';
  await new Promise((res, rej) => {
    ws.onopen = res;
    ws.onerror = () => rej(new Error('plain WebSocket failed'));
  });
  let handler = () => {};
  ws.onmessage = (e) => handler(new Uint8Array(e.data));
  return {
    send: (b) => ws.send(b),
    set onmessage(f) {
      handler = f;
    },
    buffered: () => ws.bufferedAmount,
    close: async () => ws.close(),
    stats: () => null,
  };
}

function msg(i, size = SIZE) {
  const b = new Uint8Array(size);
  new DataView(b.buffer).setUint32(0, i);
  return b;
}

async function rtt(c, n) {
  const samples = [];
  let wake;
  c.onmessage = () => wake();
  for (let i = 0; i < n + 200; i++) {
    const t = performance.now();
    const p = new Promise((r) => (wake = r));
    c.send(msg(i));
    await p;
    if (i >= 200) samples.push((performance.now() - t) * 1000);
  }
  samples.sort((a, b) => a - b);
  return { median: samples[Math.floor(n / 2)], p99: samples[Math.floor(n * 0.99)] };
}

async function rate(c, n, window) {
  const seen = new Uint8Array(n);
  let unique = 0;
  let dups = 0;
  let wake;
  c.onmessage = (d) => {
    const i = new DataView(d.buffer, d.byteOffset).getUint32(0);
    if (i < n && !seen[i]) {
      seen[i] = 1;
      unique++;
    } else dups++;
    if (wake) {
      const w = wake;
      wake = undefined;
      w();
    }
  };
  const t = performance.now();
  let sent = 0;
  while (sent < n) {
    while (sent < n && sent - unique < window) c.send(msg(sent++));
    if (sent < n) await new Promise((r) => (wake = r));
  }
  const deadline = performance.now() + 10_000;
  while (unique + dups < n && performance.now() < deadline) await new Promise((r) => ((wake = r), setTimeout(r, 50)));
  const secs = (performance.now() - t) / 1000;
  return { perSec: unique / secs, sent, unique, dups, missing: n - unique };
}

async function bigEcho(c) {
  const b = new Uint8Array(BIG).map((_, i) => i & 0xff);
  const times = [];
  for (let k = 0; k < 5; k++) {
    const t = performance.now();
    const got = new Promise((r) => (c.onmessage = r));
    c.send(b);
    const d = await got;
    if (d.length !== BIG || d[12345] !== b[12345]) throw new Error('1 MiB echo differs');
    times.push(performance.now() - t);
  }
  times.sort((a, b) => a - b);
  return times[2];
}

const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const f0 = (x) => x.toFixed(0);
const f1 = (x) => x.toFixed(1);
const f2 = (x) => x.toFixed(2);

async function main() {
  const loadAtStart = loadavg().map((x) => x.toFixed(2)).join(', ');
  const dir = mkdtempSync(join(tmpdir(), 'stt-bench-'));
  const seeds = join(dir, 'bench.seeds');
  execFileSync(STT_BIN, ['seeds', '--out', seeds], { stdio: 'ignore' });
  const token = () =>
    /stt1\.[A-Za-z0-9_-]+/.exec(execFileSync(STT_BIN, ['token', '--seed-file', seeds, '--audience', 'bench', '--client-id', String(Math.floor(Math.random() * 1e9)), '--lifetime', '3600']).toString())[0];
  const stt = await start(STT_BIN, ['serve', '--ws', '127.0.0.1:0', '--seed-file', seeds, '--audience', 'bench', '--stats-every', '0']);
  const plain = await start(WS_ECHO_BIN, ['127.0.0.1:0']);
  const rows = { stt: [], single: [], plain: [] };
  let aeadInfo = '';
  try {
    for (let r = 1; r <= ROUNDS; r++) {
      for (const side of r % 2 === 1 ? ['stt', 'single', 'plain'] : ['plain', 'single', 'stt']) {
        const c =
          side === 'plain'
            ? await plainClient(plain.url)
            : await sttClient(stt.url, token(), 'auto', side === 'stt');
        const a = await rtt(c, RTT_N);
        const b = await rate(c, RATE_N, WINDOW);
        const big = await bigEcho(c);
        if (side === 'stt') {
          const st = c.stats();
          aeadInfo = `${st.aead}; 64-byte frames sealed by ${aeadTuning.aesEngine === 'auto' && st.aead === 'aes-256-gcm' ? `noble (below ${aeadTuning.webCryptoThreshold} bytes), 1 MiB frames by WebCrypto` : 'noble'}; last frame: ${st.aead_engine}; frames_dropped ${st.frames_dropped}`;
        }
        await c.close();
        rows[side].push({ ...a, ...b, big });
        console.error(`round ${r} ${side}: rtt median ${f1(a.median)} us p99 ${f1(a.p99)} us; ${f0(b.perSec)} msg/s (missing ${b.missing}, dup ${b.dups}); 1 MiB echo ${f1(big)} ms`);
        await sleep(200);
      }
    }
  } finally {
    stt.stop();
    plain.stop();
    rmSync(dir, { recursive: true, force: true });
  }

  // The AEAD choice, measured: the same stt workload with each AEAD/engine.
  const choice = [];
  {
    const dir2 = mkdtempSync(join(tmpdir(), 'stt-bench-'));
    const seeds2 = join(dir2, 'bench.seeds');
    execFileSync(STT_BIN, ['seeds', '--out', seeds2], { stdio: 'ignore' });
    const tok = () =>
      /stt1\.[A-Za-z0-9_-]+/.exec(execFileSync(STT_BIN, ['token', '--seed-file', seeds2, '--audience', 'bench', '--client-id', String(Math.floor(Math.random() * 1e9))]).toString())[0];
    const srv = await start(STT_BIN, ['serve', '--ws', '127.0.0.1:0', '--seed-file', seeds2, '--audience', 'bench', '--stats-every', '0']);
    try {
      const configs = [
        ['ChaCha20-Poly1305 (noble)', 'chacha20-poly1305', 'auto', true],
        ['AES-256-GCM, noble only', 'aes-256-gcm', 'noble', true],
        ['AES-256-GCM, WebCrypto only', 'aes-256-gcm', 'webcrypto', true],
        ['AES-256-GCM, auto (noble < 2 KiB, WebCrypto above)', 'aes-256-gcm', 'auto', true],
        ['AES-256-GCM, auto, coalescing off', 'aes-256-gcm', 'auto', false],
        ['ChaCha20-Poly1305, coalescing off', 'chacha20-poly1305', 'auto', false],
      ];
      const runs = configs.map(() => []);
      for (let r = 0; r < ROUNDS; r++) {
        for (let k = 0; k < configs.length; k++) {
          const [label, aead, engine, coalesce] = configs[k];
          aeadTuning.aesEngine = engine;
          const s = await connect(srv.url, { token: tok(), reconnect: false, aead, coalesce });
          const c = {
            send: (b) => s.send(b),
            set onmessage(f) {
              s.onmessage = (m) => f(m.data);
            },
          };
          const a = await rtt(c, Math.min(RTT_N, 1000));
          const b = await rate(c, Math.min(RATE_N, 20_000), WINDOW);
          const big = await bigEcho(c);
          const st = s.getStatistics();
          await s.close();
          runs[k].push({ aead: st.aead, ...a, ...b, big });
          console.error(`${label}: ${st.aead} rtt ${f1(a.median)} us, ${f0(b.perSec)} msg/s (missing ${b.missing}), 1 MiB ${f1(big)} ms`);
        }
      }
      configs.forEach(([label], k) =>
        choice.push({ label, median: med(runs[k].map((x) => x.median)), perSec: med(runs[k].map((x) => x.perSec)), big: med(runs[k].map((x) => x.big)) }),
      );
    } finally {
      aeadTuning.aesEngine = 'auto';
      srv.stop();
      rmSync(dir2, { recursive: true, force: true });
    }
  }

  const S = rows.stt;
  const O = rows.single;
  const P = rows.plain;
  const lines = [];
  lines.push(`| metric (64-byte messages unless said) | stt client, default (median of ${ROUNDS}) | stt client, one frame per message | plain WebSocket | default / plain, run by run | one frame per message / plain, run by run |`);
  lines.push('|---|---|---|---|---|---|');
  const ratios = (X, key) => X.map((x, i) => f2(x[key] / P[i][key])).join(', ');
  const row = (name, key, fmt) =>
    lines.push(`| ${name} | ${fmt(med(S.map((x) => x[key])))} | ${fmt(med(O.map((x) => x[key])))} | ${fmt(med(P.map((x) => x[key])))} | ${ratios(S, key)} | ${ratios(O, key)} |`);
  row(`round trip, median (us, ${RTT_N} sequential echoes)`, 'median', f1);
  row('round trip, p99 (us)', 'p99', f1);
  row(`messages/s (${RATE_N} echoed, window ${WINDOW})`, 'perSec', f0);
  row('1 MiB echo, median of 5 (ms)', 'big', f1);
  const lost = (X) => `${X.reduce((a, x) => a + x.missing, 0)} / ${X.reduce((a, x) => a + x.dups, 0)}`;
  lines.push(`| lost / duplicated (all rounds) | ${lost(S)} | ${lost(O)} | ${lost(P)} | | |`);
  const table = lines.join('\n');
  const choiceLines = ['| stt session AEAD / engine | round trip, median (us) | messages/s | 1 MiB echo (ms) |', '|---|---|---|---|'];
  for (const c of choice) choiceLines.push(`| ${c.label} | ${f1(c.median)} | ${f0(c.perSec)} | ${f1(c.big)} |`);
  const choiceTable = choiceLines.join('\n');
  console.log(table);
  console.log('\n' + choiceTable);
  console.log('\nstt session: ' + aeadInfo);

  const cpu = cpus()[0]?.model ?? 'unknown';
  const md = `## JavaScript client (clients/js) against a plain WebSocket, in one Node.js runtime

Measured by \`clients/js/perf/bench.mjs\` (\`npm run bench\`), ${new Date().toISOString().slice(0, 10)}.

- Machine: ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${platform()} ${release()}; Node.js ${process.version}.
  Load average at the start: ${loadAtStart} (a shared 2-core machine: other jobs ran at the same time, so single rounds vary); the ratios are per round (both sides run back to back, alternating which goes first).
- stt side: \`stt serve --ws 127.0.0.1:0 --seed-file F --audience bench\` (echo), the client connecting with a token from \`stt token\`.
- Plain side: \`ws_echo 127.0.0.1:0\` (\`perf/src/bin/ws_echo.rs\`, tungstenite, thread per connection, TCP_NODELAY, unsealed), the client Node's global \`WebSocket\`.
- Every message carries its number; echoes are counted per number on the client (unique, duplicates, missing). Round trip: ${RTT_N} sequential 64-byte echoes after 200 of warm-up; rate: ${RATE_N} 64-byte messages with at most ${WINDOW} in flight. The stt client coalesces the messages sent in one event-loop turn into BATCH frames (up to 16 KiB, as the Rust node does; \`coalesce: false\` turns it off, second table), the plain client sends one WebSocket message per message; the stt server coalesces its echoes the same way, ws_echo does not. The middle column turns the client's coalescing off (\`coalesce: false\`): one sealed frame per message, as the plain client sends one WebSocket message per message.
- stt session: ${aeadInfo}.

Commands:

\`\`\`
cargo build --release -p stt-cli -p stt-perf --bin stt --bin ws_echo
cd clients/js && npm ci && npm run build && ROUNDS=${ROUNDS} npm run bench
\`\`\`

${table}

Reading: the stt client pays for sealing and opening in JavaScript on every frame, so its
64-byte round trip is a few times the plain one. With coalescing (the default) it packs the
messages of one event-loop turn into BATCH frames and its message rate is above the plain
client's, which sends one WebSocket message per message; with one frame per message (middle
column) the per-frame cost shows. ChaCha20-Poly1305 is the cheaper cipher in JavaScript for small
frames (noble's AES-GCM sets up its key and GHASH tables on every call), so \`aead: 'auto'\`
announces no hardware AES and a server on its defaults picks ChaCha20-Poly1305; for large
messages WebCrypto's AES-256-GCM is about twice as fast, so \`aead: 'aes-256-gcm'\` (frames of
2 KiB and more sealed by WebCrypto, smaller ones by noble) suits bulk transfers.

How the AEAD was chosen, and what coalescing does (same workload with fewer messages: 1000 round trips, 20 000 messages; median of ${ROUNDS} runs each, configurations interleaved):

${choiceTable}
`;
  writeFileSync(join(root, 'perf/results/js_client.md'), md);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
