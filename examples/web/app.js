// stt in the browser: the example page's script (see index.html).
//
// It fetches a connect token from /token, opens a session with the JS client
// to the server that served the page, pings it every second, echoes what you
// type, and shows the session and its statistics.

/** Where the built JS client (package stt-client, its dist/) is served. */
const CLIENT_URL = './stt-client/dist/index.js';
/** Where `stt serve --demo-tokens` hands out tokens (demos only). */
const TOKEN_URL = '/token';
/** The stt WebSocket endpoint: the host and port this page came from. */
const WS_URL = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
const PING_EVERY_MS = 1000;
const SPARK_POINTS = 60;
const LIST_POINTS = 12;

const $ = (id) => document.getElementById(id);
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** What the harness (tests/browser/run.mjs) waits for. */
window.__sttExample = { pings: 0, state: 'starting' };

const rtts = [];
let tokenExpiry = null;

function showError(text) {
  const box = $('error');
  box.textContent = text;
  box.hidden = false;
}

function setState(state) {
  window.__sttExample.state = state;
  const pill = $('state');
  pill.textContent = state;
  pill.className = `pill state-${state}`;
  const open = state === 'open';
  $('message').disabled = !open;
  $('send').disabled = !open;
}

/** A fresh token from the page's server; called for every connection
 *  attempt, so that a reconnect never uses an expired one. */
async function fetchToken() {
  const reply = await fetch(TOKEN_URL, { cache: 'no-store' });
  if (!reply.ok) throw new Error(`GET ${TOKEN_URL}: HTTP ${reply.status}`);
  const { token, expires_at: expiresAt } = await reply.json();
  if (typeof token !== 'string') throw new Error(`GET ${TOKEN_URL}: no token in the answer`);
  tokenExpiry = typeof expiresAt === 'number' ? new Date(expiresAt * 1000) : null;
  $('token-expiry').textContent = tokenExpiry ? tokenExpiry.toLocaleTimeString() : 'unknown';
  return token;
}

function text(value) {
  if (value === undefined || value === null) return '–';
  if (typeof value === 'bigint') return value.toString();
  if (value instanceof Uint8Array) return Array.from(value, (b) => b.toString(16).padStart(2, '0')).join('');
  return String(value);
}

function median(values) {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

const ms = (v) => (v < 10 ? v.toFixed(2) : v.toFixed(1));

function showRtts() {
  const latest = rtts[rtts.length - 1];
  $('rtt-latest').textContent = ms(latest);
  $('rtt-median').textContent = ms(median(rtts));
  $('rtt-min').textContent = ms(Math.min(...rtts));
  $('rtt-max').textContent = ms(Math.max(...rtts));
  $('rtt-count').textContent = String(rtts.length);
  const recent = rtts.slice(-SPARK_POINTS);
  const top = Math.max(...recent) * 1.15 || 1;
  const step = 300 / Math.max(1, SPARK_POINTS - 1);
  $('spark-line').setAttribute(
    'points',
    // Newest at the right edge; older ones scroll off to the left.
    recent
      .map((v, i) => {
        const x = 300 - (recent.length - 1 - i) * step;
        return `${x.toFixed(1)},${(60 - (v / top) * 56 - 2).toFixed(1)}`;
      })
      .join(' '),
  );
  const list = $('rtt-list');
  list.replaceChildren(
    ...rtts.slice(-LIST_POINTS).reverse().map((v) => {
      const li = document.createElement('li');
      li.textContent = `${ms(v)} ms`;
      return li;
    }),
  );
}

function showSession(session) {
  const s = session.getStatistics();
  // A session id shows as 16 hex digits, as the server prints it.
  $('session-id').textContent =
    typeof s.session_id === 'bigint' ? s.session_id.toString(16).padStart(16, '0') : text(s.session_id);
  $('peer-node').textContent = text(s.peer_node);
  $('aead').textContent = text(s.aead);
  $('reconnects').textContent = text(s.reconnects ?? 0);
  $('stats').replaceChildren(
    ...Object.entries(s).map(([key, value]) => {
      const tr = document.createElement('tr');
      const k = document.createElement('td');
      const v = document.createElement('td');
      k.textContent = key;
      v.textContent = typeof value === 'number' && !Number.isInteger(value) ? value.toFixed(3) : text(value);
      tr.append(k, v);
      return tr;
    }),
  );
}

function log(direction, body, rtt) {
  const li = document.createElement('li');
  const dir = document.createElement('span');
  const t = document.createElement('span');
  const m = document.createElement('span');
  dir.className = 'dir';
  t.className = 'text';
  m.className = 'ms';
  dir.textContent = direction;
  t.textContent = body;
  m.textContent = rtt === undefined ? '' : `${ms(rtt)} ms`;
  li.append(dir, t, m);
  const ul = $('log');
  ul.prepend(li);
  while (ul.children.length > 100) ul.lastChild.remove();
}

async function main() {
  $('url').textContent = WS_URL;
  let client;
  try {
    client = await import(CLIENT_URL);
  } catch (e) {
    setState('failed');
    showError(`Could not load the stt JS client from ${CLIENT_URL}: ${e.message}\n` +
      'Build clients/js (npm ci && npm run build) and serve its dist/ there.');
    return;
  }
  setState('connecting');
  let session;
  try {
    session = await client.connect(WS_URL, {
      token: fetchToken,
      reconnect: { initialDelayMs: 200, maxDelayMs: 5000, maxAttempts: Infinity },
    });
  } catch (e) {
    setState('failed');
    showError(`Could not open a session with ${WS_URL}: ${e.code ? `${e.code}: ` : ''}${e.message}`);
    return;
  }
  setState('open');
  showSession(session);

  const sentAt = [];
  session.onstatechange = (state) => {
    setState(state);
    showSession(session);
  };
  session.onreconnect = () => showSession(session);
  session.onclose = (ev) => {
    setState('closed');
    showError(`Session closed (code ${ev.code}${ev.reason ? `: ${ev.reason}` : ''})` +
      (ev.error ? `\n${ev.error.code ?? ''} ${ev.error.message}` : ''));
  };
  session.onmessage = (m) => {
    const start = sentAt.shift();
    log('echo', decoder.decode(m.data), start === undefined ? undefined : performance.now() - start);
    showSession(session);
  };

  $('send-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const input = $('message');
    const body = input.value;
    if (!body) return;
    try {
      session.send(encoder.encode(body));
      sentAt.push(performance.now());
      log('sent', body);
      input.value = '';
    } catch (e) {
      showError(`Send failed: ${e.message}`);
    }
  });

  let pinging = false;
  setInterval(async () => {
    if (pinging || window.__sttExample.state !== 'open') return;
    pinging = true;
    try {
      rtts.push(await session.ping());
      window.__sttExample.pings = rtts.length;
      showRtts();
    } catch {
      // A ping lost to a break: the state pill says why.
    } finally {
      pinging = false;
    }
    showSession(session);
  }, PING_EVERY_MS);
}

main();
