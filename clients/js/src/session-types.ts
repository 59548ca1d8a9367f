// Types of the session core shared with the layers above: state, delivered
// messages, end reasons, events and the SessionStats counters.

import type { MaybePromise } from './aead.js';

export type SessionState = 'handshaking' | 'established' | 'closing' | 'closed';

export interface Message {
  data: Uint8Array;
  streamId: number;
  type: number;
}

/** Why a session ended, for the layer above. */
export type EndReason =
  | { kind: 'local'; code: number; reason: string }
  | { kind: 'peer_close'; code: number; reason: string }
  | { kind: 'handshake_timeout' }
  | { kind: 'handshake_failed'; why: string }
  | { kind: 'refused'; reason: string; code: number }
  | { kind: 'idle_timeout' }
  | { kind: 'integrity_limit' }
  | { kind: 'rekey_timeout' }
  | { kind: 'key_exhausted' };

export interface SessionEvents {
  transmit(datagram: MaybePromise<Uint8Array>): void;
  message(m: Message): void;
  /** The first authenticated sealed frame arrived: the handshake is confirmed. */
  confirmed(): void;
  pong(token: bigint, rttMs: number | undefined): void;
  peerError(code: number, message: string): void;
  ended(r: EndReason): void;
}

export interface Counters {
  bytes_sent: number;
  bytes_received: number;
  frames_sent: number;
  frames_received: number;
  messages_sent: number;
  messages_received: number;
  frames_dropped: number;
  messages_expired: number;
  key_updates: number;
  rekeys: number;
  retransmits: number;
}

export function zeroCounters(): Counters {
  return {
    bytes_sent: 0,
    bytes_received: 0,
    frames_sent: 0,
    frames_received: 0,
    messages_sent: 0,
    messages_received: 0,
    frames_dropped: 0,
    messages_expired: 0,
    key_updates: 0,
    rekeys: 0,
    retransmits: 0,
  };
}

