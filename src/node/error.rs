//! One error type per node operation.
//!
//! Each says what the caller can do about it; none carries a free-form
//! string. Failover ([`Node::send_with_failover`](super::Node::send_with_failover))
//! is decided by [`SendError::is_path_failure`].

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::frame::{FrameType, SessionId};
use crate::reactor::Failure;
use crate::session::{CloseReason, ConfigError, SessionError};
use crate::transport::ws::UrlError;
use crate::transport::TransportError;

/// Why a session could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The node is stopped.
    #[error("the node is stopped")]
    Stopped,
    /// This node runs no UDP socket ([`NodeConfig::udp`](super::NodeConfig::udp) is `None`).
    #[error("UDP is not enabled on this node")]
    UdpDisabled,
    /// The address could not be resolved.
    #[error("resolving {authority}: {source}")]
    Resolve {
        /// The host and port asked for.
        authority: String,
        /// The resolver's error.
        source: io::Error,
    },
    /// The address resolves to nothing this node can reach: no address at
    /// all, or none of the UDP socket's family.
    #[error("{authority} resolves to no address reachable from {local}")]
    NoAddress {
        /// The host and port asked for.
        authority: String,
        /// The local socket's address.
        local: SocketAddr,
    },
    /// The WebSocket URL is malformed.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// The transport could not open the connection.
    #[error(transparent)]
    Transport(Arc<TransportError>),
    /// The node holds as many sessions as it may.
    #[error("session limit reached ({0} sessions on one reactor): raise max_sessions or close idle sessions")]
    TooManySessions(usize),
    /// The handshake did not complete (the peer refused, did not answer
    /// within the handshake timeout, or closed).
    #[error("the handshake with {peer} failed: {reason}")]
    Handshake {
        /// The address dialled.
        peer: SocketAddr,
        /// Why.
        reason: CloseReason,
    },
    /// The peer is not the node the connect was pinned to
    /// ([`ConnectOptions::with_peer`](super::ConnectOptions::with_peer)).
    #[error("the peer is node {got}, not the expected node {expected}")]
    WrongPeer {
        /// The node id expected.
        expected: crate::crypto::NodeId,
        /// The node id the peer proved.
        got: crate::crypto::NodeId,
    },
    /// The peer's authorisation refused this node.
    #[error("{peer} refused this node")]
    Refused {
        /// The address dialled.
        peer: SocketAddr,
    },
    /// No outcome within the caller's timeout.
    #[error("no handshake outcome within {0:?}")]
    TimedOut(Duration),
    /// The session could not be made (a configuration the path cannot
    /// carry).
    #[error("the session could not be made: {0}")]
    Session(SessionError),
    /// The system's random number generator failed (no session id).
    #[error("no randomness for a session id")]
    NoRandomness,
    /// This node has no shared seed (a connect-token client) and no token
    /// was given ([`ConnectOptions::with_token`](super::ConnectOptions::with_token)).
    #[error(
        "this node has no shared seed: connect with a connect token (ConnectOptions::with_token)"
    )]
    NoCredential,
    /// The token given has expired by this machine's clock: nothing was
    /// sent. Ask the backend for a fresh one.
    #[error("the connect token expired; ask the backend for a fresh one")]
    TokenExpired,
    /// The server read the token and refused it
    /// (`docs/PROTOCOL.md` 14.6).
    #[error("{peer} refused the connect token: {reason}")]
    TokenRefused {
        /// The address dialled.
        peer: SocketAddr,
        /// Why.
        reason: crate::token::TokenRefusal,
    },
}

impl ConnectError {
    /// Maps a reactor's failure of a connect.
    pub(crate) fn from_failure(f: Failure) -> Self {
        match f {
            Failure::Stopped | Failure::NoSuchTransport => ConnectError::Stopped,
            Failure::Full => ConnectError::TimedOut(Duration::ZERO),
            Failure::Transport(e) => ConnectError::Transport(e),
            Failure::TooManySessions(n) => ConnectError::TooManySessions(n),
            Failure::ConnectFailed {
                reason: CloseReason::UnexpectedPeer { expected, got },
                ..
            } => ConnectError::WrongPeer { expected, got },
            Failure::ConnectFailed {
                peer,
                reason:
                    CloseReason::Peer {
                        code: crate::frame::close_code::REFUSED,
                        ..
                    },
            } => ConnectError::Refused { peer },
            Failure::ConnectFailed {
                peer,
                reason: CloseReason::TokenRefused(reason),
            } => ConnectError::TokenRefused { peer, reason },
            Failure::ConnectFailed { peer, reason } => ConnectError::Handshake { peer, reason },
            Failure::TimedOut(d) => ConnectError::TimedOut(d),
            Failure::Session(e) => ConnectError::Session(e),
            Failure::NoRandomness => ConnectError::NoRandomness,
            Failure::NoCredential => ConnectError::NoCredential,
            Failure::UnknownSession(_) => ConnectError::Stopped,
        }
    }
}

/// Why a message was not sent.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// No established session with this id on this node: it closed (or is
    /// closing), or was never opened.
    #[error("no established session {0} on this node (closed, or never opened)")]
    SessionClosed(SessionId),
    /// The message is larger than `max_message_size`.
    #[error("message of {len} bytes exceeds max_message_size ({max} bytes)")]
    TooLarge {
        /// The message's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The frame type is not one messages are sent as (DATA or 0x80–0xFF).
    #[error(
        "frame type {0:?} does not carry messages: send DATA or an application type 0x80..=0xFF"
    )]
    NotAMessageType(FrameType),
    /// The session's reactor queue stayed full (at once for `try_send`,
    /// or until the timeout): the network or the peer is slower than the
    /// sender.
    #[error("send queue full: the peer or the network is slower than the sender")]
    QueueFull,
    /// The node is stopped.
    #[error("the node is stopped")]
    Stopped,
    /// A channel number the session configuration does not list.
    #[error("channel {0} is not configured (SessionConfig::channels)")]
    UnknownChannel(u8),
    /// The session refused to seal it (it is closing, or its packet numbers
    /// are exhausted).
    #[error(transparent)]
    Session(SessionError),
    /// The transport refused the datagram (reported by confirmed sends).
    #[error(transparent)]
    Transport(Arc<TransportError>),
    /// No answer from the reactor within the node's call timeout.
    #[error("no answer from the session's reactor within {0:?}")]
    TimedOut(Duration),
}

impl SendError {
    /// Whether the session's path failed (closed session, refused by the
    /// session or its transport): another session to the same peer may
    /// still carry the message. Sending elsewhere does not help against a
    /// message too large, a full queue or a stopped node.
    pub fn is_path_failure(&self) -> bool {
        matches!(
            self,
            SendError::SessionClosed(_) | SendError::Session(_) | SendError::Transport(_)
        )
    }

    pub(crate) fn from_failure(f: Failure) -> Self {
        match f {
            Failure::UnknownSession(id) => SendError::SessionClosed(id),
            Failure::Session(SessionError::MessageTooLarge { len, max }) => {
                SendError::TooLarge { len, max }
            }
            Failure::Session(SessionError::NotAMessageType(t)) => SendError::NotAMessageType(t),
            Failure::Session(SessionError::UnknownChannel(c)) => SendError::UnknownChannel(c),
            Failure::Session(SessionError::SendBufferFull) => SendError::QueueFull,
            Failure::Session(e) => SendError::Session(e),
            Failure::Transport(e) => SendError::Transport(e),
            Failure::TimedOut(d) => SendError::TimedOut(d),
            Failure::Full => SendError::QueueFull,
            Failure::Stopped
            | Failure::NoSuchTransport
            | Failure::ConnectFailed { .. }
            | Failure::TooManySessions(_)
            | Failure::NoCredential
            | Failure::NoRandomness => SendError::Stopped,
        }
    }
}

/// Why a session could not be moved to another path.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MoveError {
    /// No established session with this id on this node.
    #[error("no established session {0} on this node")]
    SessionClosed(SessionId),
    /// The new path could not be opened.
    #[error(transparent)]
    Open(#[from] ConnectError),
    /// The new path cannot carry the session (its datagrams are too small).
    #[error(transparent)]
    Path(#[from] ConfigError),
}

impl MoveError {
    pub(crate) fn from_failure(f: Failure) -> Self {
        match f {
            Failure::UnknownSession(id) => MoveError::SessionClosed(id),
            Failure::Session(SessionError::Config(e)) => MoveError::Path(e),
            other => MoveError::Open(ConnectError::from_failure(other)),
        }
    }
}

/// Why a session could not be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// No established session with this id on this node.
    #[error("no established session {0} on this node")]
    SessionClosed(SessionId),
    /// The node is stopped.
    #[error("the node is stopped")]
    Stopped,
}

/// Why a handler could not be set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandlerError {
    /// The node has a handler already: it is set once.
    #[error("this node already has a message handler (set_handler is called once)")]
    AlreadySet,
}

/// Why a transport could not be added (a WebSocket server started, or a
/// transport of the application's plugged in).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenError {
    /// The node is stopped.
    #[error("the node is stopped")]
    Stopped,
    /// Binding or setting up the transport failed (e.g. the address is in
    /// use).
    #[error(transparent)]
    Transport(Arc<TransportError>),
    /// No answer from the reactor within the node's call timeout.
    #[error("no answer from the reactor within {0:?}")]
    TimedOut(Duration),
}

impl ListenError {
    pub(crate) fn from_failure(f: Failure) -> Self {
        match f {
            Failure::Transport(e) => ListenError::Transport(e),
            Failure::TimedOut(d) => ListenError::TimedOut(d),
            _ => ListenError::Stopped,
        }
    }
}

impl From<TransportError> for ListenError {
    fn from(e: TransportError) -> Self {
        ListenError::Transport(Arc::new(e))
    }
}
