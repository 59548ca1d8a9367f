// The browser test (see test.html). Writes its result once, into
// window.__sttResult: { ok, mode, … }, and shows it on the page.

/** Where the built JS client is served, relative to this page. */
const CLIENT_URL = '../stt-client/dist/index.js';

const params = new URLSearchParams(location.search);
const MODE = params.get('mode') === 'plain' ? 'plain' : 'client';
const N = Math.max(1, Math.min(10_000, Number(params.get('n')) || 20));
const TIMEOUT_MS = 15_000;
const WS_URL = `ws://${location.host}/`;

/** `value` as plain JSON data (bigints as decimal strings, byte arrays as
 *  hex), so that it crosses to run.mjs and prints. */
function plainData(value) {
  return JSON.parse(
    JSON.stringify(value, (_, v) => {
      if (typeof v === 'bigint') return v.toString();
      if (v instanceof Uint8Array) return Array.from(v, (b) => b.toString(16).padStart(2, '0')).join('');
      return v;
    }),
  );
}

function finish(result) {
  if (window.__sttResult !== undefined) return;
  window.__sttResult = plainData(result);
  document.getElementById('out').textContent = JSON.stringify(window.__sttResult, null, 2);
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Harness check without the client: the page loads, its JS runs, a
 *  WebSocket to the stt port opens and takes a (non-stt) binary message. */
async function plain() {
  const ws = new WebSocket(WS_URL);
  ws.binaryType = 'arraybuffer';
  const opened = await withTimeout(
    new Promise((resolve, reject) => {
      ws.onopen = () => resolve(true);
      ws.onerror = () => reject(new Error('WebSocket error'));
    }),
    TIMEOUT_MS,
    'WebSocket open',
  );
  ws.send(new Uint8Array([0x53, 0x54, 0x00]));
  ws.close();
  return { ok: opened, mode: 'plain', ws_url: WS_URL, user_agent: navigator.userAgent };
}

function median(values) {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

/** The real test: a token from /token, a session, N echoed messages. */
async function client() {
  const { connect } = await import(CLIENT_URL);
  const reply = await fetch('/token', { cache: 'no-store' });
  if (!reply.ok) throw new Error(`GET /token: HTTP ${reply.status}`);
  const { token, expires_at: expiresAt } = await reply.json();
  const session = await withTimeout(
    connect(WS_URL, { token, reconnect: false }),
    TIMEOUT_MS,
    'connect',
  );
  const waiting = [];
  session.onmessage = (m) => {
    const next = waiting.shift();
    if (next) next(m);
  };
  const encoder = new TextEncoder();
  const decoder = new TextDecoder();
  const rtts = [];
  let echoed = 0;
  const mismatches = [];
  for (let i = 0; i < N; i++) {
    const text = `message ${i} from the browser test`;
    const echo = new Promise((resolve) => waiting.push(resolve));
    const start = performance.now();
    session.send(encoder.encode(text));
    const m = await withTimeout(echo, TIMEOUT_MS, `echo of message ${i}`);
    rtts.push(performance.now() - start);
    if (decoder.decode(m.data) === text) echoed++;
    else if (mismatches.length < 5) mismatches.push({ i, got: decoder.decode(m.data).slice(0, 80) });
  }
  const pings = [];
  for (let i = 0; i < 5; i++) pings.push(await withTimeout(session.ping(), TIMEOUT_MS, 'ping'));
  const statistics = session.getStatistics();
  await session.close();
  return {
    ok: echoed === N && mismatches.length === 0,
    mode: 'client',
    sent: N,
    echoed,
    mismatches,
    rtt_ms: rtts,
    rtt_median_ms: median(rtts),
    ping_rtt_ms: pings,
    token_expires_at: expiresAt,
    session_id: statistics.session_id ?? null,
    peer_node: statistics.peer_node ?? null,
    aead: statistics.aead ?? null,
    statistics,
  };
}

(MODE === 'plain' ? plain() : client()).then(finish, (e) =>
  finish({ ok: false, mode: MODE, error: String(e?.stack ?? e) }),
);
