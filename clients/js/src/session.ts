// One stt session, initiator side, without I/O (sans-IO): the handshake,
// sealing and opening frames, control messages, key updates, rekeys, timers
// and statistics (PROTOCOL.md 5-9). Datagrams leave through `transmit` (bytes,
// or a Promise of bytes when WebCrypto seals: the caller keeps the order);
// time comes from `clock`. Bad input from the network is dropped and counted.

import { aeadName, AeadName, frameNonce, MaybePromise } from './aead.js';
import { hex } from './bytes.js';
import { DEFAULT_CONFIG, SessionConfig, WS_MAX_UNFRAGMENTED } from './config.js';
import * as C from './control.js';
import { decodeHeader, F_BATCH, Header, HEADER_LEN, isMessageType, T_CONTROL, T_DATA, T_STREAM, TAG_LEN, writeHeader } from './frame.js';
import { Backoff, HandshakeParams, InitiatorHandshake } from './handshake.js';
import { limitsFor, RecvKeys, SendKeys } from './keys.js';
import { decodeBatch, splitMessage } from './messages.js';
import { Reassembler } from './reassembly.js';
import { ReplayWindow } from './replay.js';
import { RekeyDriver } from './session-rekey.js';
import { sha256Of } from './kdf.js';

export type { SessionState, Message, EndReason, SessionEvents, Counters } from './session-types.js';
export { zeroCounters } from './session-types.js';
import { SessionState, Message, EndReason, SessionEvents, Counters, zeroCounters } from './session-types.js';

const MAX_PN = 2 ** 53 - 1; // below the protocol's 2^62 - 1; unreachable in practice
const MAX_CLOSE_ANSWERS = 8;

export class Session {
  state: SessionState = 'handshaking';
  readonly stats: Counters = zeroCounters();
  readonly config: SessionConfig;
  readonly sessionId: Uint8Array;
  aead = 0;
  peerNode: Uint8Array | undefined;
  srttMs: number | undefined;
  /** Whether the last frame sealed used WebCrypto ('webcrypto') or noble. */
  lastEngine: 'webcrypto' | 'noble' | undefined;

  private hs: InitiatorHandshake | undefined;
  private hsBackoff: Backoff;
  private readonly hsDeadline: number;
  private hsRetransmitted = false;
  private readonly hsStartedAt: number;
  private message3: Uint8Array | undefined;
  private confirmed = false;

  send!: SendKeys;
  recv!: RecvKeys;
  private readonly replay = new ReplayWindow();
  private reassembly: Reassembler;
  private nextPn = 0;
  private fragmentId = 0;
  private authFailures = 0;
  rekey!: RekeyDriver;

  private readonly startedAt: number;
  private lastSend = 0;
  private lastRecv = 0;
  private lastPing = -Infinity;
  private lastToken = 0n;
  private closingUntil = 0;
  private closeAnswers = 0;
  private closeCode = 0;
  private secrets: { i2r: Uint8Array; r2i: Uint8Array } | undefined;
  /** The Noise handshake hash once established (tests, channel binding). */
  handshakeHash: Uint8Array | undefined;

  constructor(
    params: HandshakeParams,
    private readonly ev: SessionEvents,
    private readonly clock: () => number,
    config: Partial<SessionConfig> = {},
  ) {
    this.config = { ...DEFAULT_CONFIG, ...config };
    const now = clock();
    this.startedAt = now;
    this.hsStartedAt = now;
    this.hs = new InitiatorHandshake(params);
    this.sessionId = this.hs.sessionId;
    this.hsBackoff = new Backoff(this.config.initialRtoMs, 2000, now);
    this.hsDeadline = now + this.config.handshakeTimeoutMs;
    this.reassembly = new Reassembler({
      maxMessageSize: this.config.maxMessageSize,
      maxSessionBytes: this.config.maxReassemblyBytes,
      maxPendingMessages: this.config.maxPendingMessages,
      timeoutMs: this.config.reassemblyTimeoutMs,
    });
    this.output(this.hs.message1);
  }

  get aeadName(): AeadName | undefined {
    return this.aead === 0 ? undefined : aeadName(this.aead);
  }

  now(): number {
    return this.clock();
  }

  get isConfirmed(): boolean {
    return this.confirmed;
  }

  /** The whole message-1 datagram (tests). */
  get message1(): Uint8Array | undefined {
    return this.hs?.message1;
  }

  get trafficSecrets(): { i2r: Uint8Array; r2i: Uint8Array } | undefined {
    return this.secrets;
  }

  private output(d: MaybePromise<Uint8Array>, len?: number): void {
    this.lastSend = this.clock();
    this.stats.bytes_sent += len ?? (d as Uint8Array).length;
    this.ev.transmit(d);
  }

  // ---- sending -------------------------------------------------------------

  /** Seals one frame and transmits it; false when it could not be sealed. */
  sealFrame(type: number, flags: number, streamId: number, plaintext: Uint8Array): boolean {
    if (this.state !== 'established' && this.state !== 'closing') return false;
    if (this.nextPn > MAX_PN) {
      this.end({ kind: 'key_exhausted' }, false);
      return false;
    }
    const payloadLen = plaintext.length + TAG_LEN;
    const key = this.send.next(payloadLen);
    if (key === undefined) {
      this.end({ kind: 'key_exhausted' }, false);
      return false;
    }
    const pn = this.nextPn++;
    const header = new Uint8Array(HEADER_LEN);
    writeHeader(header, 0, type, flags | key.phase, this.sessionId, streamId, pn, payloadLen);
    this.lastEngine = key.cipher.engine(plaintext.length);
    const sealed = key.cipher.seal(frameNonce(pn), header, plaintext);
    const frame =
      sealed instanceof Promise
        ? sealed.then((s) => join(header, s))
        : join(header, sealed);
    this.stats.frames_sent++;
    this.output(frame, HEADER_LEN + payloadLen);
    if (key.started) {
      this.stats.key_updates++;
      // The probe (6.6): a Ping sealed under the new generation, unless this frame was one.
      if (!(type === T_CONTROL && plaintext[0] === C.C_PING)) this.sendPing();
    }
    return true;
  }

  sendControl(plaintext: Uint8Array): boolean {
    return this.sealFrame(T_CONTROL, 0, 0, plaintext);
  }

  /** A Ping with a fresh, strictly increasing token; returns the token. */
  sendPing(): bigint | undefined {
    const now = this.clock();
    let token = BigInt(Math.round((now - this.startedAt) * 1e6));
    if (token <= this.lastToken) token = this.lastToken + 1n;
    this.lastToken = token;
    this.lastPing = now;
    if (!this.sendControl(C.encodePing(token))) return undefined;
    // Sealing may have started a generation: its first Ping is the probe (6.6).
    if (!this.send.confirmed && this.send.probeToken === undefined) this.send.probeToken = token;
    return token;
  }

  /** Sends one application message: one frame, or STREAM fragments. */
  sendMessage(data: Uint8Array, streamId: number, type: number): boolean {
    const c = this.config;
    const whole = c.fragmentAbove > 0 ? data.length <= c.fragmentAbove : data.length <= WS_MAX_UNFRAGMENTED;
    if (whole) {
      if (!this.sealFrame(type, 0, streamId, data)) return false;
    } else {
      const chunk = c.fragmentAbove > 0 ? c.fragmentChunk : 65535;
      const id = this.fragmentId;
      this.fragmentId = (this.fragmentId + 1) >>> 0;
      for (const frag of splitMessage(id, data, type, chunk)) {
        if (!this.sealFrame(T_STREAM, 0, streamId, frag)) return false;
      }
    }
    this.stats.messages_sent++;
    return true;
  }

  // ---- receiving -----------------------------------------------------------

  /** One received datagram. Returns a Promise only when an open went to WebCrypto. */
  handleDatagram(d: Uint8Array): void | Promise<void> {
    if (this.state === 'closed') return;
    return this.processFrom(d, 0, false);
  }

  private processFrom(d: Uint8Array, off: number, used: boolean): void | Promise<void> {
    while (off < d.length) {
      const h = decodeHeader(d, off);
      if (h === undefined || !bytesEqual8(h.sessionId, this.sessionId)) {
        this.stats.frames_dropped++;
        return this.countDatagram(d, used);
      }
      const end = off + HEADER_LEN + h.payloadLen;
      const frame = d.subarray(off, end);
      if (h.type === 0x05 || h.type === 0x04) {
        const ok = this.handleUnsealed(h, frame);
        if (ok === 'stop') {
          this.stats.frames_dropped++;
          return this.countDatagram(d, used);
        }
        if (ok === 'used') used = true;
        off = end;
        continue;
      }
      const r = this.openSealed(h, frame);
      if (r instanceof Promise) {
        return r.then((pt) => {
          if (pt === undefined) return this.countDatagram(d, used);
          this.afterOpen(h, pt);
          return this.processFrom(d, end, true);
        });
      }
      if (r === undefined) return this.countDatagram(d, used);
      this.afterOpen(h, r);
      used = true;
      off = end;
    }
    this.countDatagram(d, used);
  }

  private countDatagram(d: Uint8Array, used: boolean): void {
    if (used) this.stats.bytes_received += d.length;
  }

  /** HANDSHAKE and AUTH frames: 'used' (read), 'ignored' (go on) or 'stop' (drop). */
  private handleUnsealed(h: Header, frame: Uint8Array): 'used' | 'ignored' | 'stop' {
    if (this.state !== 'handshaking' || this.hs === undefined) {
      // Established: a late message 2 is ignored (5.4 step 5); anything else drops.
      return h.type === 0x05 && h.pn === 2 && h.flags === 0 && h.streamId === 0 ? 'ignored' : 'stop';
    }
    const out = this.hs.handle(h, frame);
    switch (out.kind) {
      case 'drop':
        return 'stop';
      case 'ignored':
        return 'ignored';
      case 'send':
        this.output(out.datagram);
        return 'ignored';
      case 'refused':
        this.end({ kind: 'refused', reason: out.reason, code: out.code }, false);
        return 'stop';
      case 'failed':
        this.end({ kind: 'handshake_failed', why: out.why }, false);
        return 'stop';
      case 'done': {
        const now = this.clock();
        this.stats.frames_received++;
        if (!this.hsRetransmitted) this.rttSample(now - this.hsStartedAt, true);
        const peer = sha256Of(out.remoteStatic);
        if (this.config.expectPeer !== undefined && hex(peer) !== this.config.expectPeer) {
          // Not the pinned server: no message 3, no session (5.4).
          this.end({ kind: 'handshake_failed', why: `the server is node ${hex(peer)}, not the expected ${this.config.expectPeer}` }, false);
          return 'stop';
        }
        this.aead = out.aead;
        this.peerNode = peer;
        this.secrets = { i2r: out.i2r, r2i: out.r2i };
        this.handshakeHash = out.handshakeHash;
        const limits = limitsFor(out.aead);
        this.send = new SendKeys(out.aead, out.i2r, limits);
        this.recv = new RecvKeys(out.aead, out.r2i);
        this.rekey = new RekeyDriver(this, out.i2r, out.r2i, now);
        this.hs = undefined;
        this.state = 'established';
        this.lastRecv = now;
        this.message3 = out.message3;
        this.stats.frames_sent++;
        this.output(out.message3);
        this.hsBackoff.restart(now);
        return 'used';
      }
    }
  }

  /** Steps 1-4 of 6.4; undefined when refused (counted). */
  private openSealed(h: Header, frame: Uint8Array): MaybePromise<Uint8Array | undefined> {
    if (this.state !== 'established' && this.state !== 'closing') {
      this.stats.frames_dropped++;
      return undefined;
    }
    if (h.pn < 0 || !this.replay.check(h.pn)) {
      this.stats.frames_dropped++;
      return undefined;
    }
    const now = this.clock();
    const sel = this.recv.select(h.pn, h.flags & 1, now);
    if (sel === undefined) return this.authFailed();
    const header = frame.subarray(0, HEADER_LEN);
    const r = sel.cipher.open(frameNonce(h.pn), header, frame.subarray(HEADER_LEN));
    const commit = (pt: Uint8Array | undefined): Uint8Array | undefined => {
      if (pt === undefined) return this.authFailed();
      if (this.state === 'closed') return undefined;
      // A frame opened while another was in flight may have been replayed meanwhile.
      if (!this.replay.check(h.pn)) {
        this.stats.frames_dropped++;
        return undefined;
      }
      this.replay.commit(h.pn);
      // Only advance while the phase still differs (one flip, one advance).
      if (sel.which === 'next' && (h.flags & 1) !== (this.recv.gen & 1)) {
        this.recv.advance(h.pn, this.clock(), 3 * this.probeInterval());
        this.rekey.onRecvAdvance();
      }
      return pt;
    };
    return r instanceof Promise ? r.then(commit) : commit(r);
  }

  private authFailed(): undefined {
    this.stats.frames_dropped++;
    this.authFailures++;
    if (this.authFailures >= this.send.limits.integrityLimit) {
      this.sendControl(C.encodeClose(C.CLOSE_INTEGRITY_LIMIT, 'integrity limit'));
      this.end({ kind: 'integrity_limit' }, false);
    }
    return undefined;
  }

  /** Steps 6-7 of 6.4 for an authenticated frame. */
  private afterOpen(h: Header, pt: Uint8Array): void {
    this.stats.frames_received++;
    this.lastRecv = this.clock();
    if (!this.confirmed) {
      // A REFUSED close as the first sealed frame ends the handshake (9.1).
      if (h.type === T_CONTROL) {
        const c = C.decodeControl(pt);
        if (c !== undefined && c.kind === 'close' && c.code === C.CLOSE_REFUSED) {
          this.end({ kind: 'peer_close', code: c.code, reason: c.reason }, false);
          return;
        }
      }
      this.confirmed = true;
      this.message3 = undefined;
      this.ev.confirmed();
    }
    if (this.state === 'closing') {
      const c = h.type === T_CONTROL ? C.decodeControl(pt) : undefined;
      if (c !== undefined && c.kind === 'close') {
        this.end({ kind: 'local', code: this.closeCode, reason: '' }, false);
      } else if (this.closeAnswers < MAX_CLOSE_ANSWERS) {
        this.closeAnswers++;
        this.sendControl(C.encodeClose(this.closeCode, ''));
      }
      return;
    }
    if (h.type === T_CONTROL) return this.onControl(pt);
    if (isMessageType(h.type)) {
      if ((h.flags & F_BATCH) !== 0) {
        const recs = decodeBatch(pt, this.config.maxMessageSize);
        if (recs === undefined) {
          this.stats.frames_dropped++;
          return;
        }
        for (const r of recs) this.deliver({ data: r, streamId: h.streamId, type: h.type });
        return;
      }
      if (pt.length > this.config.maxMessageSize) {
        this.stats.frames_dropped++;
        return;
      }
      this.deliver({ data: pt, streamId: h.streamId, type: h.type });
      return;
    }
    if (h.type === T_STREAM) {
      const r = this.reassembly.handle(h.streamId, pt, this.clock());
      if (r === 'dropped') this.stats.frames_dropped++;
      else if (r !== 'pending') this.deliver(r);
      return;
    }
    // CHANNEL frames (section 12) are not spoken by this client.
    this.stats.frames_dropped++;
  }

  private deliver(m: Message): void {
    this.stats.messages_received++;
    this.ev.message(m);
  }

  private onControl(pt: Uint8Array): void {
    const c = C.decodeControl(pt);
    if (c === undefined) {
      this.stats.frames_dropped++;
      return;
    }
    switch (c.kind) {
      case 'ping':
        this.sendControl(C.encodePong(c.value));
        return;
      case 'pong': {
        let rtt: number | undefined;
        if (c.value <= this.lastToken) {
          const nowNs = BigInt(Math.round((this.clock() - this.startedAt) * 1e6));
          if (nowNs >= c.value) {
            rtt = Number(nowNs - c.value) / 1e6;
            this.rttSample(rtt);
          }
        }
        if (this.send.probeToken !== undefined && c.value >= this.send.probeToken) {
          this.send.confirmed = true;
          this.send.probeToken = undefined;
        }
        this.ev.pong(c.value, rtt);
        return;
      }
      case 'key_rotation':
        this.send.requested = true;
        return;
      case 'close':
        this.end({ kind: 'peer_close', code: c.code, reason: c.reason }, false);
        return;
      case 'error':
        this.ev.peerError(c.code, c.reason);
        return;
      case 'path_challenge':
        this.sendControl(C.encodePath(C.C_PATH_RESPONSE, c.data));
        return;
      case 'rekey_request':
        this.rekey.onRequest(c.seq, c.ephemeral);
        return;
      case 'rekey_response':
        this.rekey.onResponse(c.seq, c.ephemeral);
        return;
      case 'flow_credit':
      case 'path_response':
        return;
    }
  }

  // The handshake's sample includes the first (cold, unoptimised) runs of
  // the JS crypto, often hundreds of ms: the first Pong replaces it.
  private srttFromHandshake = false;

  private rttSample(ms: number, handshake = false): void {
    if (this.srttMs === undefined || this.srttFromHandshake) this.srttMs = ms;
    else this.srttMs = 0.875 * this.srttMs + 0.125 * ms;
    this.srttFromHandshake = handshake;
  }

  probeInterval(): number {
    return Math.max(this.config.initialRtoMs, 2 * (this.srttMs ?? 0));
  }

  // ---- requests from the application ----------------------------------------

  /** Asks for a key update of the own sending key (6.6, KeyRotation). */
  updateKeys(): void {
    if (this.state !== 'established') return;
    this.send.requested = true;
    this.sendControl(C.encodeKeyRotation());
  }

  /** Local close: CLOSE then linger (9.4); while handshaking, ends at once. */
  close(code: number, reason: string): void {
    if (this.state === 'handshaking') return this.end({ kind: 'local', code, reason }, false);
    if (this.state !== 'established') return;
    this.closeCode = code;
    this.sendControl(C.encodeClose(code, reason));
    this.state = 'closing';
    this.closingUntil = this.clock() + this.config.closeLingerMs;
  }

  /** Ends the session at once (no CLOSE unless the caller sent one). */
  end(r: EndReason, _sendClose: boolean): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.ev.ended(r);
  }

  // ---- timers ----------------------------------------------------------------

  /** The earliest moment onTimer has something to do. */
  nextDeadline(): number {
    const c = this.config;
    switch (this.state) {
      case 'closed':
        return Infinity;
      case 'handshaking':
        return Math.min(this.hsBackoff.next, this.hsDeadline);
      case 'closing':
        return this.closingUntil;
      case 'established': {
        let t = Math.min(this.lastRecv + c.idleTimeoutMs, this.keepaliveAt(), this.rekey.deadline());
        if (!this.confirmed) t = Math.min(t, this.hsBackoff.next, this.hsDeadline);
        if (!this.send.confirmed) t = Math.min(t, this.lastPing + this.probeInterval());
        t = Math.min(t, this.recv.previousDeadline(), this.reassembly.poll(-Infinity));
        return t;
      }
    }
  }

  private keepaliveAt(): number {
    return Math.max(this.lastPing, Math.min(this.lastSend, this.lastRecv)) + this.config.keepaliveMs;
  }

  onTimer(): void {
    const now = this.clock();
    const c = this.config;
    if (this.state === 'handshaking') {
      if (now >= this.hsDeadline) return this.end({ kind: 'handshake_timeout' }, false);
      if (now >= this.hsBackoff.next && this.hs !== undefined) {
        this.hsRetransmitted = true;
        this.stats.retransmits++;
        this.output(this.hs.current);
        this.hsBackoff.fired(now);
      }
      return;
    }
    if (this.state === 'closing') {
      if (now >= this.closingUntil) this.end({ kind: 'local', code: this.closeCode, reason: '' }, false);
      return;
    }
    if (this.state !== 'established') return;
    if (!this.confirmed) {
      if (now >= this.hsDeadline) return this.end({ kind: 'handshake_timeout' }, false);
      if (now >= this.hsBackoff.next && this.message3 !== undefined) {
        this.stats.retransmits++;
        this.output(this.message3);
        this.hsBackoff.fired(now);
      }
    }
    if (now >= this.lastRecv + c.idleTimeoutMs) {
      this.sendControl(C.encodeClose(C.CLOSE_IDLE_TIMEOUT, 'idle timeout'));
      return this.end({ kind: 'idle_timeout' }, true);
    }
    this.rekey.onTimer(now);
    if (this.state !== 'established') return;
    const before = this.reassembly.expired;
    this.reassembly.poll(now);
    this.stats.messages_expired += this.reassembly.expired - before;
    this.recv.dropPreviousIfDue(now);
    if (!this.send.confirmed && now >= this.lastPing + this.probeInterval()) this.sendPing();
    else if (this.confirmed && now >= this.keepaliveAt()) this.sendPing();
  }

  describe(): string {
    return `session ${hex(this.sessionId)} (${this.state})`;
  }
}

function join(header: Uint8Array, sealed: Uint8Array): Uint8Array {
  const out = new Uint8Array(header.length + sealed.length);
  out.set(header, 0);
  out.set(sealed, header.length);
  return out;
}

function bytesEqual8(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 8; i++) if (a[i] !== b[i]) return false;
  return true;
}

