// Public entry point of the stt-client package.

export { SttError } from './errors.js';
export type { SttErrorCode, RefusalReason } from './errors.js';
export { parseToken } from './token.js';
export type { Token } from './token.js';
