// The client's typed error: `SttError` with a stable `code` string.

export type SttErrorCode =
  | 'TOKEN_INVALID'
  | 'TOKEN_EXPIRED'
  | 'TOKEN_REFUSED'
  | 'HANDSHAKE_TIMEOUT'
  | 'HANDSHAKE_FAILED'
  | 'CONNECTION_FAILED'
  | 'CLOSED'
  | 'MESSAGE_TOO_LARGE'
  | 'NOT_OPEN';

/** Why a server refused a token (PROTOCOL.md 14.6). */
/** Reason codes other than 1-4 are reserved and reported as 'unknown'. */
export type RefusalReason = 'expired' | 'not_yet_valid' | 'wrong_audience' | 'revoked' | 'unknown';

export const REFUSAL_REASONS: Record<number, RefusalReason> = {
  1: 'expired',
  2: 'not_yet_valid',
  3: 'wrong_audience',
  4: 'revoked',
};

export class SttError extends Error {
  readonly code: SttErrorCode;
  /** For TOKEN_REFUSED: the server's reason; for CLOSED: the peer's close reason. */
  readonly reason: string | undefined;
  /** For CLOSED: the stt close code (section 8 of PROTOCOL.md). */
  readonly closeCode: number | undefined;

  constructor(code: SttErrorCode, message: string, opts: { reason?: string; closeCode?: number; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'SttError';
    this.code = code;
    this.reason = opts.reason;
    this.closeCode = opts.closeCode;
  }
}
