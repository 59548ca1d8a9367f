// Test helper: runs a real `stt serve` (binary from STT_BIN) on 127.0.0.1:0,
// parses its bound port, and stops it. Also makes seed files, tokens and the
// network key of a seed file.
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { argon2idAsync } from '@noble/hashes/argon2.js';
import { hkdf32 } from '../../dist/kdf.js';
import { fromHex, text } from '../../dist/bytes.js';

const here = dirname(fileURLToPath(import.meta.url));
export const STT_BIN = process.env.STT_BIN ?? resolve(here, '../../../../target/release/stt');

export function tempDir() {
  const d = mkdtempSync(join(tmpdir(), 'stt-js-'));
  return { path: d, remove: () => rmSync(d, { recursive: true, force: true }) };
}

export function makeSeeds(dir) {
  const f = join(dir, 'node.seeds');
  execFileSync(STT_BIN, ['seeds', '--out', f], { stdio: 'pipe' });
  return f;
}

/** The network key (PROTOCOL.md 4.2) of a seed file's shared seed. */
export async function networkKey(seedFile) {
  const m = /shared_seed\s*=\s*([0-9a-f]+)/.exec(readFileSync(seedFile, 'utf8'));
  const stretched = await argon2idAsync(fromHex(m[1]), text('stt v2 shared seed stretch'), { m: 65536, t: 3, p: 1, dkLen: 32 });
  return hkdf32(text('stt v1 network psk'), stretched, text('noise psk'));
}

/** Starts `stt serve --ws 127.0.0.1:PORT` (PORT 0 unless given) with extra args. */
export async function startServer(args, port = 0, scheme = 'ws') {
  const child = spawn(STT_BIN, ['serve', '--ws', `127.0.0.1:${port}`, '--stats-every', '0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => (err += d));
  const url = await new Promise((resolveUrl, reject) => {
    const timer = setTimeout(() => reject(new Error(`stt serve did not report its port: ${out} ${err}`)), 15_000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = new RegExp(`WebSocket listening on (${scheme}://127\\.0\\.0\\.1:(\\d+)/)`).exec(out);
      if (m) {
        clearTimeout(timer);
        resolveUrl(m[1]);
      }
    });
    child.on('exit', (code) => reject(new Error(`stt serve exited (${code}): ${err}`)));
  });
  const exited = new Promise((r) => child.on('exit', r));
  return {
    url,
    port: Number(/:(\d+)\//.exec(url)[1]),
    output: () => out + err,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      await exited;
    },
  };
}

/** `stt token ...` → the "stt1." string. */
export function issueToken(args) {
  const out = execFileSync(STT_BIN, ['token', ...args], { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
  const m = /stt1\.[A-Za-z0-9_-]+/.exec(out);
  if (!m) throw new Error(`no token in: ${out}`);
  return m[0];
}
