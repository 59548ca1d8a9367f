//! One WebSocket connection as a state machine over any `Read + Write`
//! stream: the upgrade (server or client side, resumed after `WouldBlock`),
//! binary messages both ways, the `blocked` write state, keepalive pings,
//! the handshake and idle deadlines, and the close.
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

use tungstenite::handshake::server::NoCallback;
use tungstenite::handshake::{HandshakeError, MidHandshake};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::CloseFrame;
use tungstenite::{Bytes, ClientHandshake, Message, ServerHandshake, WebSocket};

use super::{WsConfig, WsConnectionStats, WsUrl};
use crate::transport::TransportCounters;

/// Messages read from one connection per [`Conn::drive`] before others get
/// a turn.
pub(crate) const READS_PER_TURN: usize = 256;

/// One WebSocket connection over the stream `S`. See the module docs.
pub(crate) struct Conn<S: Read + Write> {
    peer: SocketAddr,
    state: State<S>,
    config: Arc<WsConfig>,
    counters: Arc<TransportCounters>,
    started: Instant,
    was_open: bool,
    last_recv: Instant,
    last_send: Instant,
    /// Until open: when the upgrade must be done.
    deadline: Option<Instant>,
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
    Accepting(MidHandshake<ServerHandshake<S, NoCallback>>),
    Upgrading(MidHandshake<ClientHandshake<S>>),
    Open(Box<WebSocket<S>>),
    /// The upgrade failed; the stream is gone.
    Failed,
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
    /// The upgrade was not done within `handshake_timeout`.
    #[error("WebSocket upgrade not done within handshake_timeout")]
    HandshakeTimeout,
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

impl<S: Read + Write> Conn<S> {
    /// An accepted stream, waiting for the client's upgrade request.
    pub(crate) fn accept(
        stream: S,
        peer: SocketAddr,
        config: Arc<WsConfig>,
        counters: Arc<TransportCounters>,
        now: Instant,
    ) -> Self {
        let mid = ServerHandshake::start(stream, NoCallback, Some(config.tungstenite()));
        Self::new(State::Accepting(mid), peer, config, counters, now, now)
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
        let mid = ClientHandshake::start(stream, request, Some(config.tungstenite()))
            .map_err(|e| End::Refused(Box::new(e)))?;
        let mut conn = Self::new(State::Upgrading(mid), peer, config, counters, started, now);
        conn.stats.dialled = true;
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

    /// Whether the write side waits for the socket (see `blocked`).
    #[cfg(test)]
    pub(crate) fn is_blocked(&self) -> bool {
        self.blocked
    }

    /// The stream, unless a failed upgrade consumed it.
    pub(crate) fn stream(&self) -> Option<&S> {
        match &self.state {
            State::Accepting(mid) => Some(mid.get_ref().get_ref()),
            State::Upgrading(mid) => Some(mid.get_ref().get_ref()),
            State::Open(ws) => Some(ws.get_ref()),
            State::Failed => None,
        }
    }

    /// The connection's traffic, its age measured at `now`.
    pub(crate) fn stats(&self, now: Instant) -> WsConnectionStats {
        WsConnectionStats {
            open: self.is_open(),
            age_ms: now.saturating_duration_since(self.started).as_millis() as u64,
            ..self.stats
        }
    }

    /// Advances the upgrade as far as the stream allows, then reads up to
    /// [`READS_PER_TURN`] messages, handing each binary one to
    /// `on_message`. Text, oversized and malformed messages close the
    /// connection with 1003, 1009 and 1002.
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
        let state = std::mem::replace(&mut self.state, State::Failed);
        let (state, opened) = match state {
            State::Accepting(mid) => match mid.handshake() {
                Ok(ws) => (State::Open(Box::new(ws)), true),
                Err(HandshakeError::Interrupted(mid)) => (State::Accepting(mid), false),
                Err(HandshakeError::Failure(e)) => return Err(End::Refused(Box::new(e))),
            },
            State::Upgrading(mid) => match mid.handshake() {
                Ok((ws, _response)) => (State::Open(Box::new(ws)), true),
                Err(HandshakeError::Interrupted(mid)) => (State::Upgrading(mid), false),
                Err(HandshakeError::Failure(e)) => return Err(End::Refused(Box::new(e))),
            },
            other => (other, false),
        };
        self.state = state;
        if opened {
            self.was_open = true;
            self.deadline = None;
            self.last_recv = now;
        }
        Ok(opened)
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
    /// deadline, or the next ping or idle check of an open connection.
    pub(crate) fn poll_timeout(&self) -> Instant {
        match self.deadline {
            Some(d) => d,
            None => later(self.last_recv, self.config.dead_after).min(later(
                self.last_recv.max(self.last_send),
                self.config.ping_interval,
            )),
        }
    }

    /// Runs the timers due at `now`: an upgrade past `handshake_timeout` or
    /// a peer silent for `dead_after` ends the connection; one quiet for
    /// `ping_interval` is pinged.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> Result<(), End> {
        if let Some(deadline) = self.deadline {
            return if now >= deadline {
                Err(End::HandshakeTimeout)
            } else {
                Ok(())
            };
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
