// One WebSocket carrying one stt session (PROTOCOL.md 2.3): opens the socket,
// runs the handshake, keeps datagrams in order when sealing is asynchronous,
// feeds received datagrams to the session one at a time and arms its timers.

import type { MaybePromise } from './aead.js';
import type { SessionConfig } from './config.js';
import type { HandshakeParams } from './handshake.js';
import { EndReason, Message, Session } from './session.js';

/** The subset of the WebSocket API this client uses (browser, Node 20+, or the `ws` package). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  readonly bufferedAmount: number;
  onopen: ((ev: unknown) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketConstructor = new (url: string) => WebSocketLike;

export type ConnectionEnd = EndReason | { kind: 'transport'; code: number; reason: string } | { kind: 'connect_failed'; why: string };

export interface ConnectionEvents {
  message(m: Message): void;
  /** The handshake is confirmed: the session is usable. */
  open(): void;
  pong(token: bigint, rttMs: number | undefined): void;
  ended(r: ConnectionEnd): void;
}

const OPEN = 1;

export class Connection {
  session: Session | undefined;
  private ws: WebSocketLike;
  private txPending = 0;
  private txChain: Promise<void> = Promise.resolve();
  private rxBusy = false;
  private readonly rxQueue: Uint8Array[] = [];
  private timer: ReturnType<typeof setTimeout> | undefined;
  private armedAt = Infinity;
  private connectTimer: ReturnType<typeof setTimeout> | undefined;
  private done = false;
  /** Datagrams that were not valid stt (text messages, wrong types), counted as frames_dropped. */
  droppedBeforeSession = 0;

  constructor(
    url: string,
    Ctor: WebSocketConstructor,
    private readonly params: HandshakeParams,
    private readonly config: Partial<SessionConfig>,
    private readonly ev: ConnectionEvents,
    private readonly clock: () => number = () => performance.now(),
  ) {
    try {
      this.ws = new Ctor(url);
    } catch (e) {
      this.ws = undefined as unknown as WebSocketLike;
      queueMicrotask(() => this.finish({ kind: 'connect_failed', why: String((e as Error)?.message ?? e) }));
      return;
    }
    this.ws.binaryType = 'arraybuffer';
    const timeout = config.handshakeTimeoutMs ?? 10_000;
    this.connectTimer = setTimeout(() => this.finish({ kind: 'connect_failed', why: `no WebSocket connection within ${timeout} ms` }), timeout);
    this.ws.onopen = () => this.onOpen();
    this.ws.onmessage = (e) => this.onMessage(e.data);
    // Some runtimes (Node 20's undici) fire only `error`, never `close`, when
    // the connection cannot be made: treat an error as the end either way.
    this.ws.onerror = (e) => {
      const why = (e as { message?: string })?.message ?? 'WebSocket error';
      if (this.session === undefined) this.finish({ kind: 'connect_failed', why });
      else this.finish({ kind: 'transport', code: 1006, reason: why });
    };
    this.ws.onclose = (e) => {
      if (this.session === undefined) this.finish({ kind: 'connect_failed', why: `WebSocket closed (${e.code}${e.reason ? ' ' + e.reason : ''})` });
      else this.finish({ kind: 'transport', code: e.code, reason: e.reason });
    };
  }

  private onOpen(): void {
    if (this.done) return;
    clearTimeout(this.connectTimer);
    this.session = new Session(
      this.params,
      {
        transmit: (d) => this.transmit(d),
        message: (m) => this.ev.message(m),
        confirmed: () => this.ev.open(),
        pong: (t, r) => this.ev.pong(t, r),
        peerError: () => {},
        ended: (r) => this.finish(r),
      },
      this.clock,
      this.config,
    );
    this.arm();
  }

  get bufferedAmount(): number {
    return this.ws?.bufferedAmount ?? 0;
  }

  private transmit(d: MaybePromise<Uint8Array>): void {
    if (this.ws === undefined || this.ws.readyState !== OPEN) return;
    if (!(d instanceof Promise) && this.txPending === 0) {
      this.ws.send(d);
      return;
    }
    // Keep datagrams in the order their packet numbers were assigned.
    this.txPending++;
    this.txChain = this.txChain.then(async () => {
      try {
        const bytes = await d;
        if (this.ws.readyState === OPEN) this.ws.send(bytes);
      } catch {
        // A seal that failed sends nothing; the session's counters already moved.
      } finally {
        this.txPending--;
      }
    });
  }

  /** Resolves when every datagram handed to the WebSocket so far was passed to it. */
  flushed(): Promise<void> {
    return this.txChain;
  }

  private onMessage(data: unknown): void {
    if (this.session === undefined || this.done) return;
    if (!(data instanceof ArrayBuffer)) {
      // Text (or anything not binary) is not a datagram (2.3): drop and count.
      this.session.stats.frames_dropped++;
      return;
    }
    const d = new Uint8Array(data);
    if (this.rxBusy) {
      this.rxQueue.push(d);
      return;
    }
    this.receive(d);
  }

  private receive(d: Uint8Array): void {
    let r: void | Promise<void>;
    try {
      r = this.session!.handleDatagram(d);
    } catch {
      // Never let bad input escape into the event loop.
      this.session!.stats.frames_dropped++;
      r = undefined;
    }
    if (r instanceof Promise) {
      this.rxBusy = true;
      r.catch(() => {
        if (this.session) this.session.stats.frames_dropped++;
      }).then(() => {
        this.rxBusy = false;
        this.drain();
      });
      return;
    }
    this.arm();
  }

  private drain(): void {
    while (!this.rxBusy && this.rxQueue.length > 0 && !this.done) this.receive(this.rxQueue.shift()!);
    this.arm();
  }

  /** Arms the timer for the session's next deadline (earlier only; a late fire re-arms). */
  arm(): void {
    const s = this.session;
    if (s === undefined || this.done) return;
    const at = s.nextDeadline();
    if (at >= this.armedAt || at === Infinity) return;
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.armedAt = at;
    this.timer = setTimeout(() => this.fire(), Math.max(0, at - this.clock()));
  }

  private fire(): void {
    this.timer = undefined;
    this.armedAt = Infinity;
    if (this.session === undefined || this.done) return;
    try {
      this.session.onTimer();
    } catch {
      this.session.stats.frames_dropped++;
    }
    this.arm();
  }

  /** Ends with a local close: stt CLOSE, then the WebSocket closes once it is written. */
  async close(code: number, reason: string): Promise<void> {
    const s = this.session;
    if (s !== undefined && s.state === 'established') s.close(code, reason);
    await this.flushed();
    this.finish({ kind: 'local', code, reason });
  }

  private finish(r: ConnectionEnd): void {
    if (this.done) return;
    this.done = true;
    clearTimeout(this.connectTimer);
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.session !== undefined && this.session.state !== 'closed') this.session.end(r.kind === 'transport' || r.kind === 'connect_failed' ? { kind: 'local', code: 0, reason: '' } : r, false);
    const ws = this.ws;
    if (ws !== undefined) {
      ws.onmessage = null;
      ws.onclose = null;
      ws.onopen = null;
      ws.onerror = null;
      // A last CLOSE frame may still be sealing: let it out first.
      void this.flushed().then(() => {
        try {
          ws.close(1000);
        } catch {
          /* already closing */
        }
      });
    }
    // Give the session's own ended() (re-entering finish) no second report.
    this.ev.ended(r);
  }
}
