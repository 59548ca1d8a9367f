//! One WebSocket connection as a state machine over any `Read + Write`
//! stream: the upgrade (server side in `upgrade.rs`, with an HTTP answer to
//! every bad request; client side tungstenite's; both resumed after
//! `WouldBlock`), binary messages both ways, the `blocked` write state,
//! keepalive pings, the handshake, authentication and idle deadlines, and
//! the close.
//!
//! An accepted connection starts *unauthenticated*: its messages may be no
//! larger than `max_message_size_unauthenticated` (tungstenite's own limits
//! are set to it, so it never reserves more), it yields after each message
//! (so that the engine can call [`Conn::authenticate`] before the next one
//! is read under the small limit), and it is closed with code 1008 unless
//! authenticated within `auth_timeout` of its upgrade. Dialled connections
//! are trusted from the start.
//!
//! A [`Conn`] neither polls nor reads the clock: the caller drives it when
//! its stream is ready ([`Conn::drive`]), when its deadline comes
//! ([`Conn::poll_timeout`], [`Conn::handle_timeout`]) and when it writes,
//! each time with `now`. Its tests run two of them over an in-memory pipe in
//! virtual time.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role};
use tungstenite::{Bytes, ClientHandshake, Message, WebSocket};

use super::upgrade::{Rejection, Upgrade, Verdict};
use super::{WsConfig, WsConnectionStats, WsUrl};
use crate::transport::TransportCounters;

/// Messages read from one connection per [`Conn::drive`] before others get
/// a turn.
pub(crate) const READS_PER_TURN: usize = 256;

/// How long a refused upgrade waits, its answer sent and its write side
/// shut, for the client to close (its unread request bytes are dropped
/// meanwhile): closing a socket with unread input sends a reset, which can
/// destroy the answer before the client reads it.
pub(crate) const LINGER: Duration = Duration::from_millis(500);

/// Bytes of a refused request read and dropped while lingering, at most.
const LINGER_BYTES: usize = 64 * 1024;

/// A stream whose write side can be shut while its read side stays open.
pub(crate) trait ShutdownWrite {
    /// Sends end-of-stream to the peer (TCP FIN), best effort.
    fn shutdown_write(&mut self);
}

/// One WebSocket connection over the stream `S`. See the module docs.
pub(crate) struct Conn<S: Read + Write + ShutdownWrite> {
    peer: SocketAddr,
    state: State<S>,
    config: Arc<WsConfig>,
    counters: Arc<TransportCounters>,
    started: Instant,
    was_open: bool,
    last_recv: Instant,
    last_send: Instant,
    /// Until open: when the upgrade must be done (or, refused, when the
    /// lingering ends).
    deadline: Option<Instant>,
    /// An authenticated session runs over it (or this side dialled it): the
    /// full message limit applies and `auth_deadline` is lifted.
    authenticated: bool,
    /// Open and not authenticated: when it is closed for that.
    auth_deadline: Option<Instant>,
    /// The socket took less than tungstenite had to write: what remains
    /// waits in tungstenite's buffer. No more is handed to it until that is
    /// written, so that the buffer stays small — tungstenite moves what
    /// remains to the buffer's front after every partial write, and with
    /// megabytes waiting that copying dominates a sending reactor's time.
    /// Messages meanwhile wait in the reactor, in order.
    blocked: bool,
    stats: WsConnectionStats,
}

enum State<S: Read + Write> {
    /// Reading the client's upgrade request.
    Accepting(S, Upgrade),
    /// Writing the answer to it: `101`, then open; or an HTTP error, then
    /// lingering.
    Answering {
        stream: S,
        out: Vec<u8>,
        written: usize,
        then: Then,
    },
    /// An HTTP error (or a plain HTTP response) is out and the write side
    /// shut; the rest of the request is dropped until the client closes or
    /// [`LINGER`] passes.
    Lingering {
        stream: S,
        answered: Answered,
        drained: usize,
    },
    Upgrading(MidHandshake<ClientHandshake<S>>),
    Open(Box<WebSocket<S>>),
    /// The upgrade failed; the stream is gone.
    Failed,
}

/// What comes after an answer is written.
enum Then {
    /// Open, with the bytes the client sent after its request.
    Open(Vec<u8>),
    /// Linger, then end.
    Linger(Answered),
}

/// What a connection that ends after one HTTP answer was answered.
#[derive(Debug, Clone, Copy)]
enum Answered {
    /// A refused upgrade.
    Refused(Rejection),
    /// A plain request, served by `WsConfig::http` with this status.
    Served(u16),
}

impl Answered {
    fn end(self) -> End {
        match self {
            Answered::Refused(r) => End::Rejected(r),
            Answered::Served(status) => End::Served { status },
        }
    }
}

/// What one [`Conn::drive`] did.
#[derive(Debug, Default)]
pub(crate) struct Drive {
    /// The upgrade completed during this call.
    pub(crate) opened: bool,
    /// Binary messages handed over.
    pub(crate) delivered: usize,
    /// [`READS_PER_TURN`] messages were read and more may wait: drive it
    /// again without waiting for readiness.
    pub(crate) more: bool,
    /// The connection ended; the caller removes it.
    pub(crate) ended: Option<End>,
}

/// Why a connection ended.
#[derive(Debug, thiserror::Error)]
pub(crate) enum End {
    /// The upgrade failed: refused by the peer (or its certificate by us),
    /// or a malformed request.
    #[error("WebSocket upgrade failed: {0}")]
    Refused(Box<tungstenite::Error>),
    /// The upgrade request was refused with an HTTP error (sent).
    #[error("WebSocket upgrade refused with {0}")]
    Rejected(Rejection),
    /// A plain HTTP request was answered by the `WsConfig::http` handler,
    /// with this status, and the connection closed.
    #[error("plain HTTP request answered with {status}")]
    Served {
        /// The response's status.
        status: u16,
    },
    /// The upgrade was not done within `handshake_timeout`.
    #[error("WebSocket upgrade not done within handshake_timeout")]
    HandshakeTimeout,
    /// No authenticated session within `auth_timeout` (closed with 1008).
    #[error("no authenticated session on the WebSocket connection within auth_timeout")]
    Unauthenticated,
    /// Nothing came from the peer for `dead_after`.
    #[error("WebSocket peer silent for dead_after")]
    Idle,
    /// This side closed it, with a close frame.
    #[error("WebSocket closed with code {code}: {reason}")]
    ClosedByUs {
        /// The code sent.
        code: CloseCode,
        /// The reason sent.
        reason: &'static str,
    },
    /// The peer closed it.
    #[error("WebSocket closed by the peer")]
    ClosedByPeer,
    /// The stream failed.
    #[error("WebSocket connection failed: {0}")]
    Failed(Box<tungstenite::Error>),
}

/// Why a message was not written; the refused payload comes back.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    /// The upgrade has not completed.
    #[error("the WebSocket connection is not open")]
    NotOpen(Bytes),
    /// tungstenite's write buffer is at `write_buffer_limit`.
    #[error("the WebSocket write buffer is full")]
    Full(Bytes),
    /// The connection failed.
    #[error("writing failed: {0}")]
    Failed(Box<tungstenite::Error>),
}

/// `now + d`, or a moment decades away when that overflows.
pub(crate) fn later(now: Instant, d: Duration) -> Instant {
    const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    now.checked_add(d.min(FAR)).unwrap_or(now)
}

impl<S: Read + Write + ShutdownWrite> Conn<S> {
    /// An accepted stream, waiting for the client's upgrade request; not
    /// authenticated.
    pub(crate) fn accept(
        stream: S,
        peer: SocketAddr,
        config: Arc<WsConfig>,
        counters: Arc<TransportCounters>,
        now: Instant,
    ) -> Self {
        let state = State::Accepting(stream, Upgrade::default());
        Self::new(state, peer, config, counters, now, now)
    }

    /// A connected stream to `url`, about to send the upgrade request;
    /// `started` is when its dial began.
    pub(crate) fn dial(
        stream: S,
        peer: SocketAddr,
        url: &WsUrl,
        config: Arc<WsConfig>,
        counters: Arc<TransportCounters>,
        started: Instant,
        now: Instant,
    ) -> Result<Self, End> {
        use tungstenite::client::IntoClientRequest;
        let request = url
            .to_string()
            .into_client_request()
            .map_err(|e| End::Refused(Box::new(e)))?;
        let ws_config = config.tungstenite(config.max_message_size);
        let mid = ClientHandshake::start(stream, request, Some(ws_config))
            .map_err(|e| End::Refused(Box::new(e)))?;
        let mut conn = Self::new(State::Upgrading(mid), peer, config, counters, started, now);
        conn.stats.dialled = true;
        conn.authenticated = true;
        Ok(conn)
    }

    fn new(
        state: State<S>,
        peer: SocketAddr,
        config: Arc<WsConfig>,
        counters: Arc<TransportCounters>,
        started: Instant,
        now: Instant,
    ) -> Self {
        Conn {
            peer,
            state,
            deadline: Some(later(now, config.handshake_timeout)),
            authenticated: false,
            auth_deadline: None,
            config,
            counters,
            started,
            was_open: false,
            last_recv: now,
            last_send: now,
            blocked: false,
            stats: WsConnectionStats::new(peer, false),
        }
    }

    /// The peer's address.
    pub(crate) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether this side dialled the connection.
    pub(crate) fn dialled(&self) -> bool {
        self.stats.dialled
    }

    /// Whether the upgrade is done and the connection usable.
    pub(crate) fn is_open(&self) -> bool {
        matches!(self.state, State::Open(_))
    }

    /// Whether the upgrade ever completed (it counts as open until removed).
    pub(crate) fn was_open(&self) -> bool {
        self.was_open
    }

    /// An authenticated session runs over this connection: it is trusted
    /// from now on (full message limit, no `auth_timeout`). `false` if it
    /// already was.
    pub(crate) fn authenticate(&mut self) -> bool {
        if self.authenticated {
            return false;
        }
        self.authenticated = true;
        self.auth_deadline = None;
        if let State::Open(ws) = &mut self.state {
            let max = Some(self.config.max_message_size);
            ws.set_config(|c| {
                c.max_message_size = max;
                c.max_frame_size = max;
            });
        }
        true
    }

    /// Whether the write side waits for the socket (see `blocked`).
    pub(crate) fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// The stream, unless a failed upgrade consumed it.
    pub(crate) fn stream(&self) -> Option<&S> {
        match &self.state {
            State::Accepting(stream, _)
            | State::Answering { stream, .. }
            | State::Lingering { stream, .. } => Some(stream),
            State::Upgrading(mid) => Some(mid.get_ref().get_ref()),
            State::Open(ws) => Some(ws.get_ref()),
            State::Failed => None,
        }
    }

    /// The connection's traffic, its age measured at `now`.
    pub(crate) fn stats(&self, now: Instant) -> WsConnectionStats {
        WsConnectionStats {
            open: self.is_open(),
            authenticated: self.authenticated,
            age_ms: now.saturating_duration_since(self.started).as_millis() as u64,
            ..self.stats
        }
    }

    /// Advances the upgrade as far as the stream allows, then reads up to
    /// [`READS_PER_TURN`] messages (one, while not authenticated), handing
    /// each binary one to `on_message`. Text, oversized and malformed
    /// messages close the connection with 1003, 1009 and 1002.
    pub(crate) fn drive(
        &mut self,
        now: Instant,
        on_message: &mut dyn FnMut(&mut Vec<u8>),
    ) -> Drive {
        let mut out = Drive::default();
        match self.advance_handshake(now) {
            Ok(opened) => out.opened = opened,
            Err(end) => {
                out.ended = Some(end);
                return out;
            }
        }
        let State::Open(ws) = &mut self.state else {
            return out;
        };
        let mut close = None;
        out.more = true;
        for _ in 0..READS_PER_TURN {
            match ws.read() {
                Ok(Message::Binary(bytes)) => {
                    self.last_recv = now;
                    self.stats.messages_received += 1;
                    self.stats.bytes_received += bytes.len() as u64;
                    TransportCounters::add(&self.counters.packets_received, 1);
                    TransportCounters::add(&self.counters.bytes_received, bytes.len() as u64);
                    let mut message: Vec<u8> = bytes.into();
                    on_message(&mut message);
                    out.delivered += 1;
                    if !self.authenticated {
                        // The engine may authenticate it before the next
                        // message is read under the small limit.
                        break;
                    }
                }
                Ok(Message::Text(_)) => {
                    TransportCounters::add(&self.counters.packets_dropped, 1);
                    close = Some((CloseCode::Unsupported, "stt speaks binary messages only"));
                    break;
                }
                // A close frame is answered by tungstenite; the next read
                // reports the end.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_) | Message::Close(_)) => {
                    self.last_recv = now
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    out.more = false;
                    break;
                }
                Err(tungstenite::Error::Capacity(_)) => {
                    TransportCounters::add(&self.counters.packets_dropped, 1);
                    close = Some((CloseCode::Size, "message larger than max_message_size"));
                    break;
                }
                Err(tungstenite::Error::Protocol(_) | tungstenite::Error::Utf8(_)) => {
                    TransportCounters::add(&self.counters.errors_receive, 1);
                    close = Some((CloseCode::Protocol, "protocol error"));
                    break;
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    out.ended = Some(End::ClosedByPeer);
                    break;
                }
                Err(e) => {
                    out.ended = Some(End::Failed(Box::new(e)));
                    break;
                }
            }
        }
        if let Some((code, reason)) = close {
            self.close(code, reason);
            out.ended = Some(End::ClosedByUs { code, reason });
        }
        if out.ended.is_some() {
            out.more = false;
        }
        out
    }

    /// Resumes the upgrade; `Ok(true)` when it completed now.
    fn advance_handshake(&mut self, now: Instant) -> Result<bool, End> {
        loop {
            let state = std::mem::replace(&mut self.state, State::Failed);
            let (state, progress) = match state {
                State::Accepting(mut stream, mut up) => match up.read(&mut stream, &self.config) {
                    Ok(None) => (State::Accepting(stream, up), false),
                    Ok(Some(verdict)) => {
                        let (out, then) = match verdict {
                            Verdict::Accept { response, tail } => (response, Then::Open(tail)),
                            Verdict::Refuse(r) => {
                                TransportCounters::add(&self.counters.errors_receive, 1);
                                (r.response(), Then::Linger(Answered::Refused(r)))
                            }
                            Verdict::Serve { status, response } => {
                                (response, Then::Linger(Answered::Served(status)))
                            }
                        };
                        let answering = State::Answering {
                            stream,
                            out,
                            written: 0,
                            then,
                        };
                        (answering, true)
                    }
                    Err(e) => return Err(End::Refused(Box::new(tungstenite::Error::Io(e)))),
                },
                State::Answering {
                    mut stream,
                    out,
                    mut written,
                    then,
                } => {
                    while written < out.len() {
                        match stream.write(&out[written..]) {
                            Ok(0) => {
                                let e = io::Error::from(io::ErrorKind::WriteZero);
                                return Err(End::Failed(Box::new(e.into())));
                            }
                            Ok(n) => written += n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(End::Failed(Box::new(e.into()))),
                        }
                    }
                    if written < out.len() {
                        let answering = State::Answering {
                            stream,
                            out,
                            written,
                            then,
                        };
                        self.state = answering;
                        return Ok(false);
                    }
                    let _ = stream.flush();
                    match then {
                        Then::Open(tail) => {
                            let limit = if self.authenticated {
                                self.config.max_message_size
                            } else {
                                self.config.unauthenticated_limit()
                            };
                            let ws_config = Some(self.config.tungstenite(limit));
                            let ws = if tail.is_empty() {
                                WebSocket::from_raw_socket(stream, Role::Server, ws_config)
                            } else {
                                WebSocket::from_partially_read(
                                    stream,
                                    tail,
                                    Role::Server,
                                    ws_config,
                                )
                            };
                            self.state = State::Open(Box::new(ws));
                            self.opened(now);
                            return Ok(true);
                        }
                        Then::Linger(answered) => {
                            match answered {
                                Answered::Refused(rejection) => {
                                    tracing::debug!(peer = %self.peer, %rejection, "WebSocket upgrade refused")
                                }
                                Answered::Served(status) => {
                                    tracing::debug!(peer = %self.peer, status, "plain HTTP request answered")
                                }
                            }
                            stream.shutdown_write();
                            self.deadline = Some(later(now, LINGER));
                            let lingering = State::Lingering {
                                stream,
                                answered,
                                drained: 0,
                            };
                            (lingering, true)
                        }
                    }
                }
                State::Lingering {
                    mut stream,
                    answered,
                    mut drained,
                } => {
                    let mut sink = [0u8; 1024];
                    loop {
                        match stream.read(&mut sink) {
                            Ok(0) => return Err(answered.end()),
                            Ok(n) => drained += n,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(_) => return Err(answered.end()),
                        }
                        if drained > LINGER_BYTES {
                            return Err(answered.end());
                        }
                    }
                    let lingering = State::Lingering {
                        stream,
                        answered,
                        drained,
                    };
                    (lingering, false)
                }
                State::Upgrading(mid) => match mid.handshake() {
                    Ok((ws, _response)) => {
                        self.state = State::Open(Box::new(ws));
                        self.opened(now);
                        return Ok(true);
                    }
                    Err(HandshakeError::Interrupted(mid)) => (State::Upgrading(mid), false),
                    Err(HandshakeError::Failure(e)) => return Err(End::Refused(Box::new(e))),
                },
                other => (other, false),
            };
            self.state = state;
            if !progress {
                return Ok(false);
            }
        }
    }

    /// The upgrade completed at `now`.
    fn opened(&mut self, now: Instant) {
        self.was_open = true;
        self.deadline = None;
        self.last_recv = now;
        if !self.authenticated {
            self.auth_deadline = Some(later(now, self.config.auth_timeout));
        }
    }

    /// Whether the connection takes another message now: `false` while it
    /// is `blocked` and its socket still cannot take what tungstenite holds.
    /// A failed connection answers `true`: the write reports the failure.
    pub(crate) fn ready_to_write(&mut self) -> bool {
        let State::Open(ws) = &mut self.state else {
            return true;
        };
        if self.blocked {
            match ws.flush() {
                Ok(()) => self.blocked = false,
                Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                    return false
                }
                Err(_) => {}
            }
        }
        true
    }

    /// Writes one binary message, whatever [`ready_to_write`](Self::ready_to_write)
    /// would say (callers that wait for a blocked connection ask it first).
    /// A message the socket cannot take at once waits in tungstenite's
    /// buffer and marks the connection `blocked`.
    pub(crate) fn write(&mut self, payload: Bytes, now: Instant) -> Result<(), WriteError> {
        let State::Open(ws) = &mut self.state else {
            return Err(WriteError::NotOpen(payload));
        };
        let len = payload.len() as u64;
        match ws.write(Message::Binary(payload)) {
            Ok(()) => {}
            // Taken: it waits in tungstenite's buffer.
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.blocked = true;
            }
            // Not sent, not dropped: the caller keeps it and tries again
            // once the peer has read.
            Err(tungstenite::Error::WriteBufferFull(back)) => {
                let back = match back {
                    Message::Binary(b) => b,
                    Message::Frame(f) => f.into_payload(),
                    _ => Bytes::new(),
                };
                return Err(WriteError::Full(back));
            }
            Err(e) => {
                TransportCounters::add(&self.counters.errors_send, 1);
                return Err(WriteError::Failed(Box::new(e)));
            }
        }
        self.last_send = now;
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += len;
        TransportCounters::add(&self.counters.packets_sent, 1);
        TransportCounters::add(&self.counters.bytes_sent, len);
        Ok(())
    }

    /// Puts what tungstenite holds on the stream; what the stream cannot
    /// take leaves the connection `blocked`.
    pub(crate) fn flush(&mut self) -> Result<(), End> {
        let State::Open(ws) = &mut self.state else {
            return Ok(());
        };
        match ws.flush() {
            Ok(()) => self.blocked = false,
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                self.blocked = true;
            }
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                return Err(End::ClosedByPeer)
            }
            Err(e) => return Err(End::Failed(Box::new(e))),
        }
        Ok(())
    }

    /// Sends a close frame and pushes it out, best effort.
    pub(crate) fn close(&mut self, code: CloseCode, reason: &'static str) {
        if let State::Open(ws) = &mut self.state {
            tracing::debug!(peer = %self.peer, ?code, reason, "closing WebSocket connection");
            let _ = ws.close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }));
            let _ = ws.flush();
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work: the upgrade's
    /// deadline (or a refusal's lingering end), or the next ping, idle or
    /// authentication check of an open connection.
    pub(crate) fn poll_timeout(&self) -> Instant {
        match self.deadline {
            Some(d) => d,
            None => {
                let open = later(self.last_recv, self.config.dead_after).min(later(
                    self.last_recv.max(self.last_send),
                    self.config.ping_interval,
                ));
                self.auth_deadline.map_or(open, |a| a.min(open))
            }
        }
    }

    /// Runs the timers due at `now`: an upgrade past `handshake_timeout`, a
    /// refusal done lingering, an unauthenticated connection past
    /// `auth_timeout` (closed with 1008) or a peer silent for `dead_after`
    /// ends the connection; one quiet for `ping_interval` is pinged.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), End> {
        if let Some(deadline) = self.deadline {
            return match &self.state {
                _ if now < deadline => Ok(()),
                State::Lingering { answered, .. } => Err(answered.end()),
                _ => Err(End::HandshakeTimeout),
            };
        }
        if self.auth_deadline.is_some_and(|a| now >= a) {
            self.close(
                CloseCode::Policy,
                "no authenticated session within auth_timeout",
            );
            return Err(End::Unauthenticated);
        }
        if now >= later(self.last_recv, self.config.dead_after) {
            return Err(End::Idle);
        }
        let quiet_since = self.last_recv.max(self.last_send);
        if now >= later(quiet_since, self.config.ping_interval) {
            if let State::Open(ws) = &mut self.state {
                let _ = ws.write(Message::Ping(Bytes::new()));
                let _ = ws.flush();
                self.last_send = now;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
