// Coalescing of sends (as the Rust node does on WebSocket, PROTOCOL.md 10.3):
// consecutive messages of one stream and type sent in the same event-loop
// turn travel as one BATCH frame of up to 16 KiB instead of one frame and
// one WebSocket message each. Order is kept: a change of stream or type, or
// a message too large to share, closes the run.

import { F_BATCH } from './frame.js';
import { encodeBatch, MAX_BATCH_RECORDS } from './messages.js';
import type { Session } from './session.js';

/** Largest BATCH plaintext built (16 KiB, as the Rust node on WebSocket). */
export const BATCH_LIMIT = 16 * 1024;

export class SendCoalescer {
  private run: Uint8Array[] = [];
  private runBytes = 0;
  private streamId = 0;
  private type = 1;
  private scheduled = false;

  constructor(
    private readonly session: () => Session | undefined,
    private readonly afterFlush: () => void,
  ) {}

  push(data: Uint8Array, streamId: number, type: number): void {
    if (this.run.length > 0 && (streamId !== this.streamId || type !== this.type)) this.flush();
    if (4 + data.length > BATCH_LIMIT) {
      this.flush();
      this.session()?.sendMessage(data, streamId, type);
      return;
    }
    if (this.runBytes + 4 + data.length > BATCH_LIMIT || this.run.length === MAX_BATCH_RECORDS) this.flush();
    this.streamId = streamId;
    this.type = type;
    this.run.push(data);
    this.runBytes += 4 + data.length;
    if (!this.scheduled) {
      this.scheduled = true;
      queueMicrotask(() => {
        this.scheduled = false;
        this.flush();
      });
    }
  }

  /** Seals what is queued now. */
  flush(): void {
    const run = this.run;
    if (run.length === 0) return;
    this.run = [];
    this.runBytes = 0;
    const s = this.session();
    if (s === undefined) return;
    if (run.length === 1) s.sendMessage(run[0]!, this.streamId, this.type);
    else if (s.sealFrame(this.type, F_BATCH, this.streamId, encodeBatch(run))) s.stats.messages_sent += run.length;
    this.afterFlush();
  }
}
