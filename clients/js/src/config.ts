// Session timers and limits (PROTOCOL.md 9.3, 7.4) with the defaults of the
// Rust implementation; each number says where it comes from.

export interface SessionConfig {
  /** First handshake retransmission timeout; doubled up to 2 s (5.4). */
  initialRtoMs: number;
  /** Handshake deadline from message 1 (5.4). */
  handshakeTimeoutMs: number;
  /** Ping when either direction was quiet this long (9.3). */
  keepaliveMs: number;
  /** Close when nothing authenticated arrived this long (9.3). */
  idleTimeoutMs: number;
  /** Closing state duration (9.4). */
  closeLingerMs: number;
  /** The initiator asks for a rekey this long after the last one (6.8). */
  rekeyAfterMs: number;
  /** Close with REKEY_TIMEOUT when no rekey completed this long (6.8). */
  rejectAfterMs: number;
  /** Largest message sent or received (7.1). */
  maxMessageSize: number;
  /** Send messages larger than this as STREAM fragments (0: never; WebSocket sends whole). */
  fragmentAbove: number;
  /** Chunk length of fragments when fragmenting. */
  fragmentChunk: number;
  /** Reassembly: bytes of partial messages (7.4). */
  maxReassemblyBytes: number;
  /** Reassembly: partial messages at once (7.4). */
  maxPendingMessages: number;
  /** Reassembly timeout (7.4). */
  reassemblyTimeoutMs: number;
  /** The only server node id (hex) the handshake may complete with. */
  expectPeer?: string;
}

export const DEFAULT_CONFIG: SessionConfig = {
  initialRtoMs: 250,
  handshakeTimeoutMs: 10_000,
  keepaliveMs: 10_000,
  idleTimeoutMs: 30_000,
  closeLingerMs: 1000,
  rekeyAfterMs: 120_000,
  rejectAfterMs: 180_000,
  maxMessageSize: 16 * 1024 * 1024,
  fragmentAbove: 0,
  fragmentChunk: 1412,
  maxReassemblyBytes: 34_603_008,
  maxPendingMessages: 256,
  reassemblyTimeoutMs: 5000,
};

/** Largest plaintext of one DATA frame over WebSocket: 16 MiB WebSocket limit less the frame overhead (Open point 6). */
export const WS_MAX_UNFRAGMENTED = 16 * 1024 * 1024 - 45;
