// Public entry point of the stt-client package.

export { connect, SttSession } from './client.js';
export type { ConnectOptions, ReconnectOptions, Message, CloseEvent, ReconnectInfo, Statistics, State } from './client.js';
export type { WebSocketLike, WebSocketConstructor } from './connection.js';
export { SttError } from './errors.js';
export type { SttErrorCode, RefusalReason } from './errors.js';
export { parseToken } from './token.js';
export type { Token } from './token.js';
