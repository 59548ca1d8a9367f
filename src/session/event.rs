//! What a session reports: states, events, errors, statistics.

use std::fmt;
use std::time::Duration;

use crate::crypto::{Algorithm, CryptoError, HandshakeError, NodeId};
use crate::frame::{FrameError, FrameType, SessionId};
use crate::session::ConfigError;
use crate::stream::ReassemblyError;

/// Which side opened the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    /// Sent handshake message 1.
    Initiator,
    /// Answered it.
    Responder,
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// The handshake is running.
    Handshaking,
    /// Keys are agreed; data flows.
    Established,
    /// Closed locally; lingering to answer late frames with CLOSE.
    Closing,
    /// Over. Nothing more will happen.
    Closed,
}

/// Why a session ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// This side called [`Session::close`](crate::session::Session::close).
    Local {
        /// Close code sent.
        code: u16,
        /// Reason sent.
        reason: String,
    },
    /// The peer sent CLOSE.
    Peer {
        /// The peer's code.
        code: u16,
        /// The peer's reason.
        reason: String,
    },
    /// Nothing arrived within the idle timeout.
    IdleTimeout,
    /// The handshake did not complete in time. For an initiator this is what
    /// a wrong shared seed looks like: a responder answers non-members with
    /// silence, so that they learn nothing.
    HandshakeTimeout,
    /// The peer answered the handshake authentically, but with something
    /// this build cannot follow (e.g. an unknown AEAD).
    HandshakeFailed(String),
    /// Too many forged frames: the keys are retired.
    IntegrityLimit,
    /// The packet number space ran out.
    PacketNumbersExhausted,
    /// The responder was not the peer this side was pinned to
    /// ([`Session::expect_peer`](crate::session::Session::expect_peer)):
    /// the handshake ended before message 3.
    UnexpectedPeer {
        /// The node id this side expected.
        expected: NodeId,
        /// The responder's node id.
        got: NodeId,
    },
    /// This responder's authorisation refused the initiator.
    Refused {
        /// The refused initiator's node id.
        peer: NodeId,
    },
    /// The sending key reached its confidentiality limit before the peer
    /// confirmed the key update (RFC 9001 §6.6).
    KeyExhausted,
    /// No rekey with fresh Diffie-Hellman completed within
    /// [`SessionConfig::reject_after`](crate::session::SessionConfig::reject_after)
    /// (the peer did not answer, or no fresh ephemeral key could be drawn).
    RekeyTimeout,
    /// The server read this side's connect token and refused it, with an
    /// authenticated refusal (`docs/PROTOCOL.md` 14.6).
    TokenRefused(crate::token::TokenRefusal),
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Local { code, reason } => {
                write!(f, "closed locally (code {code}): {}", Escaped(reason))
            }
            CloseReason::Peer { code, reason } => {
                write!(f, "closed by peer (code {code}): {}", Escaped(reason))
            }
            CloseReason::IdleTimeout => f.write_str("idle timeout: nothing received from the peer"),
            CloseReason::HandshakeTimeout => f.write_str(
                "handshake timed out: the peer is unreachable, not running, or not in this network (different shared_seed)",
            ),
            CloseReason::HandshakeFailed(why) => write!(f, "handshake failed: {why}"),
            CloseReason::IntegrityLimit => f.write_str("too many forged frames: keys retired"),
            CloseReason::UnexpectedPeer { expected, got } => write!(
                f,
                "the peer is node {got}, not the expected node {expected}: handshake abandoned"
            ),
            CloseReason::Refused { peer } => write!(f, "node {peer} refused by the authorisation hook"),
            CloseReason::PacketNumbersExhausted => f.write_str("packet numbers exhausted"),
            CloseReason::KeyExhausted => {
                f.write_str("key exhausted: the peer did not confirm a key update in time")
            }
            CloseReason::RekeyTimeout => f.write_str(
                "rekey timeout: no rekey with fresh Diffie-Hellman completed within the key lifetime",
            ),
            CloseReason::TokenRefused(why) => write!(f, "connect token refused by the server: {why}"),
        }
    }
}

/// Displays text that came from a peer (a close reason, an error message)
/// so that it cannot forge log lines or terminal output: control characters
/// (newlines, escape sequences), bidirectional-text overrides and
/// zero-width characters are written as `\u{..}`, and a backslash as `\\`;
/// everything else, non-ASCII letters included, as is.
#[derive(Debug, Clone, Copy)]
pub struct Escaped<'a>(pub &'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use fmt::Write;
        for c in self.0.chars() {
            let hidden = matches!(c,
                '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2069}'
                | '\u{feff}' | '\u{061c}');
            if c == '\\' {
                f.write_str("\\\\")?;
            } else if c.is_control() || hidden {
                write!(f, "\\u{{{:x}}}", u32::from(c))?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// What a session reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The handshake completed: for the responder when message 3 arrived,
    /// for the initiator when the responder's first sealed frame confirmed
    /// it (the initiator may send from message 3 on; this event says the
    /// responder is known to hold the keys).
    Established {
        /// The peer's authenticated node id.
        peer: NodeId,
        /// The AEAD the two sides agreed on.
        algorithm: Algorithm,
    },
    /// A whole application message arrived.
    Message {
        /// Stream it was sent on.
        stream_id: u32,
        /// [`FrameType::Data`] or an application type (0x80–0xFF).
        frame_type: FrameType,
        /// The message.
        payload: Vec<u8>,
    },
    /// The peer reported an error without closing.
    PeerError {
        /// The peer's code.
        code: u16,
        /// The peer's message.
        message: String,
    },
    /// The session ended. The last event a session emits.
    Closed {
        /// Why.
        reason: CloseReason,
    },
}

/// Why an input was refused or a send failed. Input errors are for counting
/// and logging: the session stays as it was, except where the error closed it
/// (then a [`Event::Closed`] says so).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The bytes are not a valid frame.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The frame failed authentication or replay checks.
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A handshake message was refused.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// A fragment was refused.
    #[error(transparent)]
    Reassembly(#[from] ReassemblyError),
    /// The configuration cannot work.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The frame carries another session's id.
    #[error("frame for session {got} delivered to session {expected}")]
    WrongSession {
        /// This session.
        expected: SessionId,
        /// The frame's.
        got: SessionId,
    },
    /// A frame that this session cannot take in its current state.
    #[error("unexpected {frame_type:?} frame in state {state:?}")]
    Unexpected {
        /// The frame's type.
        frame_type: FrameType,
        /// The session's state.
        state: SessionState,
    },
    /// A frame whose decrypted content does not parse.
    #[error("malformed frame content: {0}")]
    Malformed(&'static str),
    /// Sending needs an established session.
    #[error("session is {0:?}: send only once established")]
    NotEstablished(SessionState),
    /// The message exceeds `max_message_size`.
    #[error("message of {len} bytes exceeds max_message_size ({max} bytes)")]
    MessageTooLarge {
        /// Message length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// Only DATA and application types (0x80–0xFF) carry messages.
    #[error("frame type {0:?} cannot carry an application message")]
    NotAMessageType(FrameType),
    /// The channel send buffer is full: wait for acknowledgements to free
    /// it ([`Session::has_room`](crate::session::Session::has_room)).
    #[error("send buffer full: wait for the peer to acknowledge")]
    SendBufferFull,
    /// A channel number the configuration does not list.
    #[error("channel {0} is not configured (SessionConfig::channels)")]
    UnknownChannel(u8),
}

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SessionStats {
    /// Bytes of datagrams produced (all frames, handshake included).
    pub bytes_sent: u64,
    /// Bytes of datagrams accepted (at least one frame used).
    pub bytes_received: u64,
    /// Frames sealed or written.
    pub frames_sent: u64,
    /// Frames accepted.
    pub frames_received: u64,
    /// Application messages sent.
    pub messages_sent: u64,
    /// Application messages delivered.
    pub messages_received: u64,
    /// Frames refused (bad format, authentication, replay, state).
    pub frames_dropped: u64,
    /// Fragmented messages dropped incomplete after the reassembly timeout.
    pub messages_expired: u64,
    /// Key updates on the sending side (rekeys included).
    pub key_updates: u64,
    /// Rekeys with fresh Diffie-Hellman completed.
    pub rekeys: u64,
    /// Handshake messages retransmitted.
    pub retransmits: u64,
    /// Smoothed round-trip time, once measured (handshake and pings).
    pub rtt: Option<Duration>,
    /// Its channels (round trip, loss, congestion window, rates, send
    /// queue), once established.
    pub channels: Option<crate::session::channel::ChannelStats>,
}

/// Round-trip time estimate (RFC 6298 smoothing).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RttStats {
    /// Latest sample.
    pub latest: Option<Duration>,
    /// Smallest sample.
    pub min: Option<Duration>,
    /// Smoothed round-trip time.
    pub smoothed: Option<Duration>,
    /// Round-trip time variation.
    pub variance: Duration,
}

impl RttStats {
    pub(crate) fn sample(&mut self, rtt: Duration) {
        self.latest = Some(rtt);
        self.min = Some(self.min.map_or(rtt, |m| m.min(rtt)));
        match self.smoothed {
            None => {
                self.smoothed = Some(rtt);
                self.variance = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.variance = (self.variance * 3 + diff) / 4;
                self.smoothed = Some((srtt * 7 + rtt) / 8);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_text_cannot_forge_log_lines() {
        let reason = CloseReason::Peer {
            code: 1,
            reason: "bye\nINFO session opened admin=true\x1b[2J\u{202e}evil\\".into(),
        };
        let shown = reason.to_string();
        assert_eq!(
            shown,
            "closed by peer (code 1): bye\\u{a}INFO session opened admin=true\\u{1b}[2J\\u{202e}evil\\\\"
        );
        assert!(!shown.chars().any(char::is_control));
        assert_eq!(Escaped("héllo, wörld").to_string(), "héllo, wörld");
    }
}
