// Drives the rekey of PROTOCOL.md 6.8 for one session (a handshake initiator):
// when to ask, answering the peer's request, switching keys, the hard
// lifetime (reject_after).

import * as C from './control.js';
import { equal } from './bytes.js';
import { keyPair } from './noise.js';
import { rekeyCk0, rekeyedSecret, rekeySchedule, RekeyState } from './rekey.js';
import type { Session } from './session.js';

export class RekeyDriver {
  private ck: Uint8Array;
  private lastSeq = 0n;
  private lastDone: number;
  state: RekeyState = { kind: 'idle' };
  private response: Uint8Array | undefined;

  constructor(
    private readonly s: Session,
    i2r: Uint8Array,
    r2i: Uint8Array,
    now: number,
  ) {
    this.ck = rekeyCk0(i2r, r2i);
    this.lastDone = now;
  }

  deadline(): number {
    const c = this.s.config;
    let t = this.lastDone + c.rejectAfterMs;
    if (this.state.kind === 'idle') t = Math.min(t, this.lastDone + c.rekeyAfterMs);
    if (this.state.kind === 'requested') t = Math.min(t, this.state.nextRepeat);
    return t;
  }

  onTimer(now: number): void {
    const c = this.s.config;
    if (now >= this.lastDone + c.rejectAfterMs) {
      this.s.sendControl(C.encodeClose(C.CLOSE_REKEY_TIMEOUT, 'rekey timeout'));
      this.s.end({ kind: 'rekey_timeout' }, true);
      return;
    }
    if (this.state.kind === 'idle' && now >= this.lastDone + c.rekeyAfterMs) this.start(now);
    else if (this.state.kind === 'requested' && now >= this.state.nextRepeat) {
      this.s.sendControl(C.encodeRekey(C.C_REKEY_REQUEST, this.state.seq, this.state.e.pub));
      this.state.nextRepeat = now + this.s.probeInterval();
    }
  }

  /** Asks for a rekey now (Idle only). */
  start(now: number): void {
    if (this.state.kind !== 'idle' || this.s.state !== 'established') return;
    const e = keyPair();
    const seq = this.lastSeq + 1n;
    this.s.send.hold = true;
    this.state = { kind: 'requested', seq, e, nextRepeat: now + this.s.probeInterval() };
    this.s.sendControl(C.encodeRekey(C.C_REKEY_REQUEST, seq, e.pub));
  }

  onRequest(seq: bigint, eq: Uint8Array): void {
    const st = this.state;
    if (st.kind === 'responded') {
      if (seq === st.seq && equal(eq, st.eRequest) && this.response !== undefined) this.s.sendControl(this.response);
      return;
    }
    // The handshake initiator's request wins a tie; Switched ignores requests.
    if (st.kind !== 'idle' || seq !== this.lastSeq + 1n) return;
    const e = keyPair();
    const out = rekeySchedule(this.ck, this.s.sessionId, seq, eq, e.pub, e.priv, eq);
    if (out === undefined) {
      this.s.stats.frames_dropped++;
      return;
    }
    this.s.recv.setNextSecret(rekeyedSecret(out.mixR2i, this.s.recv.ratchetNext()));
    this.s.send.setNextSecret(rekeyedSecret(out.mixI2r, this.s.send.ratchetNext()));
    this.s.send.hold = true;
    this.state = { kind: 'responded', seq, eRequest: eq.slice(), e, pendingCk: out.ck, recvGenAtSwitch: this.s.recv.gen };
    this.response = C.encodeRekey(C.C_REKEY_RESPONSE, seq, e.pub);
    this.s.sendControl(this.response);
  }

  onResponse(seq: bigint, ea: Uint8Array): void {
    const st = this.state;
    if (st.kind !== 'requested' || seq !== st.seq) return;
    const out = rekeySchedule(this.ck, this.s.sessionId, seq, st.e.pub, ea, st.e.priv, ea);
    if (out === undefined) {
      this.s.stats.frames_dropped++;
      return;
    }
    this.s.recv.setNextSecret(rekeyedSecret(out.mixR2i, this.s.recv.ratchetNext()));
    this.s.send.setNextSecret(rekeyedSecret(out.mixI2r, this.s.send.ratchetNext()));
    this.state = { kind: 'switched', seq, pendingCk: out.ck, recvGenAtSwitch: this.s.recv.gen };
    this.switchSending();
  }

  /** The receive direction moved to its next generation. */
  onRecvAdvance(): void {
    const st = this.state;
    if (st.kind === 'responded') {
      this.complete(st.seq, st.pendingCk);
      this.switchSending();
    } else if (st.kind === 'switched') {
      this.complete(st.seq, st.pendingCk);
    }
  }

  private switchSending(): void {
    const send = this.s.send;
    send.confirmed = true;
    send.hold = false;
    send.forced = true;
    this.s.sendPing();
  }

  private complete(seq: bigint, ck: Uint8Array): void {
    this.ck = ck;
    this.lastSeq = seq;
    this.lastDone = this.s.now();
    this.s.stats.rekeys++;
    this.state = { kind: 'idle' };
    this.response = undefined;
  }
}
