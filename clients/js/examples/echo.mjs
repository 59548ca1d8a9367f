// Runnable Node example: connect to `stt serve` with a connect token, send a
// few messages, print the echoes, the round trip and the statistics.
//
//   stt seeds --out node.seeds
//   stt serve --ws 127.0.0.1:8081 --seed-file node.seeds --audience demo &
//   TOKEN=$(stt token --seed-file node.seeds --audience demo --client-id 1)
//   node --experimental-websocket examples/echo.mjs ws://127.0.0.1:8081/ "$TOKEN"
import { connect, parseToken, SttError } from '../dist/index.js';

const [url = 'ws://127.0.0.1:8081/', token = process.env.STT_TOKEN] = process.argv.slice(2);
if (!token) {
  console.error('usage: node --experimental-websocket examples/echo.mjs URL TOKEN   (or STT_TOKEN=...)');
  process.exit(2);
}

const t = parseToken(token);
console.log(`token for client ${t.clientId}, audience ${t.audience.join(', ')}, expires ${t.expiresAt.toISOString()}`);

try {
  const session = await connect(url, {
    token,
    reconnect: { initialDelayMs: 100, maxDelayMs: 5000, maxAttempts: 10 },
  });
  session.onstatechange = (s) => console.log('state:', s);
  session.onreconnect = (i) => console.log(`reconnected (attempt ${i.attempt}), session ${i.sessionId.toString(16)}`);
  session.onclose = (ev) => console.log('closed:', ev.code, ev.reason, ev.error?.code ?? '');

  const echoes = (async () => {
    let n = 0;
    for await (const m of session) {
      console.log(`echo on stream ${m.streamId}, type ${m.type}: ${new TextDecoder().decode(m.data)}`);
      if (++n === 3) return;
    }
  })();
  for (const text of ['hello', 'from', 'stt-client']) session.send(text);
  await echoes;
  console.log(`round trip: ${(await session.ping()).toFixed(2)} ms`);
  console.log(session.getStatistics());
  await session.close();
} catch (e) {
  if (e instanceof SttError) {
    console.error(`stt error ${e.code}${e.reason ? ` (${e.reason})` : ''}: ${e.message}`);
    process.exit(1);
  }
  throw e;
}
