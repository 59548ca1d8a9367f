// The public client: `connect()` and `SttSession` (spec: /work/spec/js-api.md).
// Owns tokens (fetching, pre-flight), reconnection with backoff and jitter,
// callbacks and the async iterator, ping(), statistics across sessions.

import { toBytes, hex } from './bytes.js';
import { CAP_HW_AES, CAP_PREFER_AES, CAP_PREFER_CHACHA, HandshakeFixture } from './handshake.js';
import { Connection, ConnectionEnd, WebSocketConstructor } from './connection.js';
import { Counters, Message as CoreMessage, zeroCounters } from './session.js';
import { SessionConfig } from './config.js';
import { SttError } from './errors.js';
import { checkNotExpired, parseToken, Token } from './token.js';
import { isMessageType } from './frame.js';
import * as Ctl from './control.js';
import { SendCoalescer } from './coalesce.js';

export type State = 'connecting' | 'open' | 'reconnecting' | 'closed';

export interface ReconnectOptions {
  initialDelayMs?: number;
  maxDelayMs?: number;
  maxAttempts?: number;
}

export interface ConnectOptions {
  token: string | (() => string | Promise<string>);
  reconnect?: ReconnectOptions | false;
  keepaliveMs?: number;
  handshakeTimeoutMs?: number;
  aead?: 'auto' | 'chacha20-poly1305' | 'aes-256-gcm';
  /**
   * Open sessions only with this server: its node id, 64 hex digits (as
   * `stt serve` prints it). Any holder of the token's issuing key can
   * answer a token; another one fails the handshake (HANDSHAKE_FAILED)
   * before message 3.
   */
  peer?: string;
  WebSocket?: WebSocketConstructor;
  /** Advanced: session timers and limits (PROTOCOL.md 9.3, 7.4). */
  session?: Partial<SessionConfig>;
  /**
   * Pack consecutive messages of one stream and type sent in the same
   * event-loop turn into BATCH frames (default true).
   */
  coalesce?: boolean;
  /** Test only: a network key instead of a token (member handshake, section 5). */
  networkKey?: Uint8Array;
  /** Test only: fixed handshake inputs. */
  fixture?: HandshakeFixture;
}

export interface Message {
  data: Uint8Array;
  streamId: number;
  type: number;
}

export interface CloseEvent {
  code: number;
  reason: string;
  error: SttError | undefined;
}

export interface ReconnectInfo {
  attempt: number;
  sessionId: bigint;
}

export interface Statistics extends Counters {
  rtt_ms: number | null;
  reconnects: number;
  state: State;
  session_id: string | null;
  peer_node: string | null;
  aead: string | null;
  /** Which code sealed the last frame: 'webcrypto' or 'noble' (null before any). */
  aead_engine: string | null;
}

interface Resolved {
  psk: Uint8Array;
  ticket: Uint8Array | undefined;
}

/** Connects, runs the handshake and resolves once the server confirmed it. */
export async function connect(url: string, options: ConnectOptions): Promise<SttSession> {
  const s = new SttSession(url, options);
  await s.start();
  return s;
}

export class SttSession implements AsyncIterable<Message> {
  onmessage: ((m: Message) => void) | null = null;
  onclose: ((ev: CloseEvent) => void) | null = null;
  onreconnect: ((info: ReconnectInfo) => void) | null = null;
  onstatechange: ((state: State) => void) | null = null;

  private _state: State = 'connecting';
  private conn: Connection | undefined;
  private readonly totals: Counters = zeroCounters();
  private reconnects = 0;
  private readonly pings = new Map<bigint, { resolve: (ms: number) => void; reject: (e: Error) => void; at: number }>();
  private readonly iterators = new Set<{ queue: Message[]; wake: (() => void) | undefined }>();
  private readonly WS: WebSocketConstructor;
  private retryTimer: ReturnType<typeof setTimeout> | undefined;
  private closing = false;
  private lastRtt: number | undefined;
  private readonly coalescer = new SendCoalescer(
    () => this.conn?.session,
    () => this.conn?.arm(),
  );

  constructor(
    private readonly url: string,
    private readonly opts: ConnectOptions,
  ) {
    const W = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    if (W === undefined) {
      throw new SttError('CONNECTION_FAILED', 'no WebSocket constructor: pass options.WebSocket (Node 20 needs --experimental-websocket or the ws package)');
    }
    this.WS = W;
  }

  get state(): State {
    return this._state;
  }

  private setState(s: State): void {
    if (this._state === s) return;
    this._state = s;
    this.onstatechange?.(s);
  }

  /** First connection: any failure rejects (no reconnection before the first success). */
  async start(): Promise<void> {
    try {
      await this.attempt();
      this.setState('open');
    } catch (e) {
      this.setState('closed');
      this.endIterators();
      throw e;
    }
  }

  private async resolveToken(): Promise<Resolved> {
    if (this.opts.networkKey !== undefined) return { psk: this.opts.networkKey, ticket: undefined };
    let text: string;
    try {
      text = typeof this.opts.token === 'function' ? await this.opts.token() : this.opts.token;
    } catch (e) {
      throw new SttError('TOKEN_INVALID', `the token function failed: ${(e as Error)?.message ?? e}`, { cause: e });
    }
    const t: Token = parseToken(text);
    checkNotExpired(t);
    return { psk: t.clientKey, ticket: t.ticket };
  }

  private capabilities(): number {
    const webCrypto = globalThis.crypto?.subtle !== undefined;
    switch (this.opts.aead ?? 'auto') {
      case 'aes-256-gcm':
        return CAP_PREFER_AES | (webCrypto ? CAP_HW_AES : 0);
      case 'chacha20-poly1305':
        return CAP_PREFER_CHACHA;
      default:
        // Small frames are sealed in JavaScript, where ChaCha20-Poly1305 is
        // faster than AES-GCM (perf/results/js_client.md): announce no
        // hardware AES, so that a server left on its own default picks
        // ChaCha20-Poly1305 (5.3). Bulk senders ask for 'aes-256-gcm', whose
        // large frames WebCrypto seals.
        return 0;
    }
  }

  /** One connection attempt: resolves when the handshake is confirmed. */
  private async attempt(): Promise<void> {
    const { psk, ticket } = await this.resolveToken();
    const config: Partial<SessionConfig> = {
      ...this.opts.session,
      ...(this.opts.keepaliveMs !== undefined ? { keepaliveMs: this.opts.keepaliveMs } : {}),
      ...(this.opts.handshakeTimeoutMs !== undefined ? { handshakeTimeoutMs: this.opts.handshakeTimeoutMs } : {}),
      ...(this.opts.peer !== undefined ? { expectPeer: this.opts.peer.toLowerCase() } : {}),
    };
    await new Promise<void>((resolve, reject) => {
      let opened = false;
      const conn = new Connection(
        this.url,
        this.WS,
        { psk, ticket, capabilities: this.capabilities(), ...(this.opts.fixture ? { fixture: this.opts.fixture } : {}) },
        config,
        {
          message: (m) => this.deliver(m),
          open: () => {
            opened = true;
            this.conn = conn;
            resolve();
          },
          pong: (token, rtt) => this.onPong(token, rtt),
          ended: (r) => {
            const s = conn.session;
            if (s !== undefined) {
              addCounters(this.totals, s.stats);
              if (s.srttMs !== undefined) this.lastRtt = s.srttMs;
            }
            if (this.conn === conn) this.conn = undefined;
            if (!opened) reject(errorOf(r));
            else this.onConnectionEnded(r);
          },
        },
      );
      this.conn = conn;
    });
  }

  private deliver(m: CoreMessage): void {
    const msg: Message = { data: m.data, streamId: m.streamId, type: m.type };
    for (const it of this.iterators) {
      it.queue.push(msg);
      it.wake?.();
    }
    try {
      this.onmessage?.(msg);
    } catch (e) {
      // An application callback's error must not break the session's receive loop.
      queueMicrotask(() => {
        throw e;
      });
    }
  }

  private onPong(token: bigint, rtt: number | undefined): void {
    if (rtt !== undefined) this.lastRtt = this.conn?.session?.srttMs ?? rtt;
    const p = this.pings.get(token);
    if (p !== undefined && rtt !== undefined) {
      this.pings.delete(token);
      p.resolve(rtt);
    }
  }

  private onConnectionEnded(r: ConnectionEnd): void {
    this.rejectPings(new SttError('CLOSED', 'the session ended before the pong'));
    if (this.closing) return this.finalClose(0, 'closed', undefined);
    const err = errorOf(r);
    const rc = this.opts.reconnect;
    const fatal = r.kind === 'peer_close' && [Ctl.CLOSE_NORMAL, Ctl.CLOSE_REFUSED, Ctl.CLOSE_REVOKED, Ctl.CLOSE_REPLACED].includes(r.code);
    if (rc === false || fatal) return this.finalClose(codeOf(r), reasonOf(r), err);
    this.setState('reconnecting');
    this.scheduleReconnect(1, err);
  }

  private scheduleReconnect(attempt: number, lastError: SttError): void {
    const rc = this.opts.reconnect || {};
    const max = rc.maxAttempts ?? Infinity;
    if (attempt > max) return this.finalClose(codeOf(undefined), `gave up after ${max} reconnection attempts`, lastError);
    const initial = rc.initialDelayMs ?? 100;
    const cap = rc.maxDelayMs ?? 5000;
    const base = Math.min(cap, initial * 2 ** (attempt - 1));
    const delay = base / 2 + Math.random() * (base / 2); // "equal jitter"
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      if (this.closing) return;
      this.attempt().then(
        () => {
          if (this.closing) {
            void this.conn?.close(0, '');
            return;
          }
          this.reconnects++;
          this.setState('open');
          const sid = this.conn?.session?.sessionId;
          this.onreconnect?.({ attempt, sessionId: sid ? BigInt('0x' + hex(sid)) : 0n });
        },
        (e: unknown) => {
          const err = e instanceof SttError ? e : new SttError('CONNECTION_FAILED', String(e));
          if (this.closing) return this.finalClose(0, 'closed', undefined);
          // A static token that the server or the clock refuses for good ends it.
          const staticToken = typeof this.opts.token !== 'function';
          const permanent =
            err.code === 'TOKEN_INVALID' ||
            (err.code === 'TOKEN_EXPIRED' && staticToken) ||
            (err.code === 'TOKEN_REFUSED' && (err.reason === 'wrong_audience' || (staticToken && (err.reason === 'expired' || err.reason === 'revoked'))));
          if (permanent) return this.finalClose(codeOf(undefined), err.message, err);
          this.scheduleReconnect(attempt + 1, err);
        },
      );
    }, delay);
  }

  private finalClose(code: number, reason: string, error: SttError | undefined): void {
    if (this._state === 'closed') return;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.setState('closed');
    this.rejectPings(new SttError('CLOSED', 'the session closed'));
    this.endIterators();
    this.onclose?.({ code, reason, error });
  }

  private rejectPings(e: Error): void {
    for (const p of this.pings.values()) p.reject(e);
    this.pings.clear();
  }

  private endIterators(): void {
    for (const it of this.iterators) it.wake?.();
  }

  /** Sends one message (whole in one DATA frame over WebSocket). */
  send(data: Uint8Array | ArrayBuffer | string, opts: { streamId?: number; type?: number } = {}): void {
    const s = this.conn?.session;
    if (this._state !== 'open' || s === undefined || s.state !== 'established') {
      throw new SttError('NOT_OPEN', `cannot send: the session is ${this._state}`);
    }
    const type = opts.type ?? 1;
    const streamId = opts.streamId ?? 0;
    if (!isMessageType(type)) throw new TypeError('type must be 1 (DATA) or 0x80..0xff');
    if (!Number.isInteger(streamId) || streamId < 0 || streamId > 0xffffffff) throw new TypeError('streamId must be a u32');
    const bytes = toBytes(data);
    if (bytes.length > s.config.maxMessageSize) {
      throw new SttError('MESSAGE_TOO_LARGE', `message of ${bytes.length} bytes exceeds the limit of ${s.config.maxMessageSize}`);
    }
    if (this.opts.coalesce === false) {
      if (!s.sendMessage(bytes, streamId, type)) throw new SttError('NOT_OPEN', 'the session could not seal the message');
      this.conn!.arm();
      return;
    }
    this.coalescer.push(bytes, streamId, type);
  }

  /** Bytes queued in the WebSocket (for senders that pace themselves). */
  get bufferedAmount(): number {
    return this.conn?.bufferedAmount ?? 0;
  }

  /** stt Ping/Pong round trip in milliseconds. */
  ping(): Promise<number> {
    const s = this.conn?.session;
    if (this._state !== 'open' || s === undefined) return Promise.reject(new SttError('NOT_OPEN', `cannot ping: the session is ${this._state}`));
    this.coalescer.flush();
    return new Promise((resolve, reject) => {
      const token = s.sendPing();
      if (token === undefined) return reject(new SttError('NOT_OPEN', 'the session could not seal the ping'));
      // A pong that never comes (the connection died quietly) must not hang the caller.
      const limit = this.opts.handshakeTimeoutMs ?? 10_000;
      const timer = setTimeout(() => {
        if (this.pings.delete(token)) reject(new SttError('CLOSED', `no pong within ${limit} ms`));
      }, limit);
      const done = <T>(f: (v: T) => void) => (v: T) => {
        clearTimeout(timer);
        f(v);
      };
      this.pings.set(token, { resolve: done(resolve), reject: done(reject), at: s.now() });
      this.conn!.arm();
    });
  }

  /** Asks for a key update of the sending direction (PROTOCOL.md 6.6). */
  updateKeys(): void {
    this.conn?.session?.updateKeys();
  }

  /** Starts a rekey with fresh X25519 now (PROTOCOL.md 6.8). */
  rekey(): void {
    const s = this.conn?.session;
    if (s?.state === 'established') s.rekey.start(s.now());
    this.conn?.arm();
  }

  getStatistics(): Statistics {
    const s = this.conn?.session;
    const c = { ...this.totals };
    if (s !== undefined) addCounters(c, s.stats);
    return {
      ...c,
      rtt_ms: s?.srttMs ?? this.lastRtt ?? null,
      reconnects: this.reconnects,
      state: this._state,
      session_id: s ? hex(s.sessionId) : null,
      peer_node: s?.peerNode ? hex(s.peerNode) : null,
      aead: s?.aeadName ?? null,
      aead_engine: s?.lastEngine ?? null,
    };
  }

  /** stt CLOSE (code 0), then the WebSocket closes. */
  async close(): Promise<void> {
    if (this._state === 'closed') return;
    this.closing = true;
    if (this.retryTimer !== undefined) clearTimeout(this.retryTimer);
    this.coalescer.flush();
    const c = this.conn;
    if (c !== undefined) await c.close(Ctl.CLOSE_NORMAL, '');
    this.finalClose(Ctl.CLOSE_NORMAL, '', undefined);
  }

  [Symbol.asyncIterator](): AsyncIterator<Message> {
    const it: { queue: Message[]; wake: (() => void) | undefined } = { queue: [], wake: undefined };
    this.iterators.add(it);
    const next = async (): Promise<IteratorResult<Message>> => {
      for (;;) {
        const m = it.queue.shift();
        if (m !== undefined) return { value: m, done: false };
        if (this._state === 'closed') {
          this.iterators.delete(it);
          return { value: undefined, done: true };
        }
        await new Promise<void>((r) => (it.wake = r));
        it.wake = undefined;
      }
    };
    return {
      next,
      return: async () => {
        this.iterators.delete(it);
        return { value: undefined, done: true };
      },
    };
  }
}

function addCounters(into: Counters, c: Counters): void {
  for (const k of Object.keys(into) as (keyof Counters)[]) into[k] += c[k];
}

function codeOf(r: ConnectionEnd | undefined): number {
  if (r === undefined) return Ctl.CLOSE_NORMAL;
  switch (r.kind) {
    case 'local':
    case 'peer_close':
      return r.code;
    case 'idle_timeout':
      return Ctl.CLOSE_IDLE_TIMEOUT;
    case 'integrity_limit':
      return Ctl.CLOSE_INTEGRITY_LIMIT;
    case 'rekey_timeout':
      return Ctl.CLOSE_REKEY_TIMEOUT;
    default:
      return Ctl.CLOSE_NORMAL;
  }
}

function reasonOf(r: ConnectionEnd): string {
  return errorOf(r).message;
}

/** The SttError that describes how a connection ended. */
export function errorOf(r: ConnectionEnd): SttError {
  switch (r.kind) {
    case 'connect_failed':
      return new SttError('CONNECTION_FAILED', `could not connect: ${r.why}`);
    case 'transport':
      return new SttError('CONNECTION_FAILED', `the WebSocket closed (${r.code}${r.reason ? ' ' + r.reason : ''})`);
    case 'handshake_timeout':
      return new SttError('HANDSHAKE_TIMEOUT', 'no answer to the handshake in time (a server that refuses a token silently, a wrong server, or none)');
    case 'handshake_failed':
      return new SttError('HANDSHAKE_FAILED', `handshake failed: ${r.why}`);
    case 'refused':
      return new SttError('TOKEN_REFUSED', `the server refused the connect token: ${r.reason}`, { reason: r.reason });
    case 'peer_close':
      return new SttError('CLOSED', `the server closed the session (code ${r.code}${r.reason ? ', ' + r.reason : ''})`, { closeCode: r.code, reason: r.reason });
    case 'local':
      return new SttError('CLOSED', 'closed locally', { closeCode: r.code, reason: r.reason });
    case 'idle_timeout':
      return new SttError('CLOSED', 'idle timeout: nothing heard from the server', { closeCode: Ctl.CLOSE_IDLE_TIMEOUT, reason: 'idle timeout' });
    case 'integrity_limit':
      return new SttError('CLOSED', 'integrity limit reached', { closeCode: Ctl.CLOSE_INTEGRITY_LIMIT, reason: 'integrity limit' });
    case 'rekey_timeout':
      return new SttError('CLOSED', 'no rekey completed in time', { closeCode: Ctl.CLOSE_REKEY_TIMEOUT, reason: 'rekey timeout' });
    case 'key_exhausted':
      return new SttError('CLOSED', 'the sending key is exhausted', { reason: 'key exhausted' });
  }
}
