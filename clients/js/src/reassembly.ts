// Receiver side of STREAM fragments (PROTOCOL.md 7.4): checks, message-id
// extension and staleness, memory limits and the reassembly timeout.

import { isMessageType } from './frame.js';
import { decodeFragmentHeader, FRAGMENT_HEADER_LEN } from './messages.js';
import { ReplayWindow } from './replay.js';

export interface ReassemblyLimits {
  maxMessageSize: number;
  maxSessionBytes: number;
  maxPendingMessages: number;
  timeoutMs: number;
}

export const DEFAULT_REASSEMBLY: ReassemblyLimits = {
  maxMessageSize: 16 * 1024 * 1024,
  maxSessionBytes: 34_603_008,
  maxPendingMessages: 256,
  timeoutMs: 5000,
};

interface Partial {
  ext: number;
  streamId: number;
  totalLen: number;
  chunkLen: number;
  innerType: number;
  count: number;
  received: number;
  have: Uint8Array;
  buf: Uint8Array;
  reserved: number;
  deadline: number;
}

export interface Reassembled {
  streamId: number;
  type: number;
  data: Uint8Array;
}

export type FragmentOutcome = Reassembled | 'pending' | 'dropped';

const TWO32 = 0x100000000;

export class Reassembler {
  private readonly pending = new Map<number, Partial>();
  private readonly done = new ReplayWindow();
  private bytes = 0;
  /** Partial messages dropped by the timeout. */
  expired = 0;

  constructor(private readonly limits: ReassemblyLimits = DEFAULT_REASSEMBLY) {}

  /** The 64-bit extension of a 32-bit id nearest to the highest recorded (ties: smaller). */
  extend(id: number): number {
    const hi = this.done.max;
    if (hi < 0 || id >= hi) return id;
    const k = Math.floor((hi - id) / TWO32);
    const lo = id + k * TWO32;
    const up = lo + TWO32;
    return hi - lo <= up - hi ? lo : up;
  }

  /** Handles one STREAM plaintext on `streamId`. */
  handle(streamId: number, p: Uint8Array, now: number): FragmentOutcome {
    const h = decodeFragmentHeader(p);
    if (h === undefined || h.totalLen === 0 || h.chunkLen === 0) return 'dropped';
    const count = Math.ceil(h.totalLen / h.chunkLen);
    if (h.index >= count) return 'dropped';
    const expect = h.index < count - 1 ? h.chunkLen : h.totalLen - (count - 1) * h.chunkLen;
    const chunk = p.subarray(FRAGMENT_HEADER_LEN);
    if (chunk.length !== expect) return 'dropped';
    if (!isMessageType(h.innerType)) return 'dropped';
    if (h.totalLen > this.limits.maxMessageSize) return 'dropped';
    let m = this.pending.get(h.messageId);
    if (m !== undefined) {
      if (m.streamId !== streamId || m.totalLen !== h.totalLen || m.chunkLen !== h.chunkLen || m.innerType !== h.innerType) {
        return 'dropped';
      }
    } else {
      const ext = this.extend(h.messageId);
      if (!this.done.check(ext)) return 'dropped';
      if (count === 1) {
        this.done.commit(ext);
        return { streamId, type: h.innerType, data: chunk.slice() };
      }
      const reserved = h.totalLen + 8 * Math.ceil(count / 64);
      if (this.pending.size >= this.limits.maxPendingMessages) return 'dropped';
      if (this.bytes + reserved > this.limits.maxSessionBytes) return 'dropped';
      m = {
        ext,
        streamId,
        totalLen: h.totalLen,
        chunkLen: h.chunkLen,
        innerType: h.innerType,
        count,
        received: 0,
        have: new Uint8Array(count),
        buf: new Uint8Array(h.totalLen),
        reserved,
        deadline: now + this.limits.timeoutMs,
      };
      this.bytes += reserved;
      this.pending.set(h.messageId, m);
    }
    if (m.have[h.index] === 1) return 'pending';
    m.have[h.index] = 1;
    m.received++;
    m.buf.set(chunk, h.index * h.chunkLen);
    if (m.received < m.count) return 'pending';
    this.finish(h.messageId, m);
    return { streamId: m.streamId, type: m.innerType, data: m.buf };
  }

  private finish(id: number, m: Partial): void {
    this.pending.delete(id);
    this.bytes -= m.reserved;
    this.done.commit(m.ext);
  }

  /** Drops partial messages whose timeout passed; returns the next deadline. */
  poll(now: number): number {
    let next = Infinity;
    for (const [id, m] of this.pending) {
      if (m.deadline <= now) {
        this.finish(id, m);
        this.expired++;
      } else if (m.deadline < next) {
        next = m.deadline;
      }
    }
    return next;
  }

  get pendingCount(): number {
    return this.pending.size;
  }
}
