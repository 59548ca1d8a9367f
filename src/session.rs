//! The session state machine (sans-IO).
//!
//! A [`Session`] is one encrypted association between two nodes. It owns no
//! socket and reads no clock: the caller feeds it datagrams and the current
//! [`Instant`], and drains from it datagrams to send, the next deadline and
//! events. The same code runs under both transports and both I/O backends,
//! and is tested over an in-memory pair with virtual time, loss and
//! reordering.
//!
//! ## Driving a session
//!
//! After creating it ([`Session::connect`] or [`Session::accept`]) and after
//! every call that feeds it ([`handle_datagram`](Session::handle_datagram),
//! [`handle_timeout`](Session::handle_timeout), [`send`](Session::send),
//! [`close`](Session::close)), the caller:
//!
//! 1. sends every datagram from [`poll_transmit`](Session::poll_transmit);
//! 2. handles every event from [`poll_event`](Session::poll_event);
//! 3. re-arms its timer to [`poll_timeout`](Session::poll_timeout), and calls
//!    [`handle_timeout`](Session::handle_timeout) when it fires.
//!
//! Application data does not queue inside the session: [`send`](Session::send)
//! seals straight into the caller's [`Transmits`] buffer, where the I/O layer
//! can hand the datagrams to the kernel in one batch.
//!
//! ## Lifecycle
//!
//! ```text
//! Handshaking --(message 3)--> Established --close()/peer close--> Closing --linger--> Closed
//!      |                            |                                               ^
//!      +---- handshake timeout -----+---- idle timeout / fatal error ---------------+
//! ```
//!
//! - The initiator sends message 1 and retransmits it with exponential
//!   backoff from [`SessionConfig::initial_rto`] until message 2 arrives or
//!   [`SessionConfig::handshake_timeout`] passes. It is established as soon as
//!   it sends message 3, and retransmits message 3 until the first
//!   authenticated frame from the responder confirms it.
//! - The responder is created from a valid message 1 (a peer without the
//!   shared seed never gets one made), answers a duplicate message 1 with the
//!   same message 2, never retransmits on its own (it sends nothing to an
//!   address that has not proven it receives), and on message 3 becomes
//!   established and sends a ping, which confirms the initiator.
//! - Established sessions send a ping when either direction has been quiet
//!   for [`SessionConfig::keepalive_interval`], and close when nothing has
//!   arrived for [`SessionConfig::idle_timeout`].
//! - [`close`](Session::close) sends a CLOSE frame and lingers for
//!   [`SessionConfig::close_linger`], answering late frames with CLOSE again
//!   (the first one may have been lost); a CLOSE from the peer ends the
//!   session at once.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use crate::crypto::{
    AeadPreference, Algorithm, CryptoError, Handshake, HandshakeError, HandshakeOutcome, Identity,
    NetworkKey, NodeId, RecvKeys, SendKeys,
};
use crate::frame::{
    close_code, BatchRecords, Control, Flags, FrameError, FrameType, Header, SessionId, HEADER_LEN,
    MAX_PAYLOAD_LEN, TAG_LEN,
};
use crate::stream::{
    self, FragmentHeader, MemoryBudget, Reassembler, ReassemblyConfig, ReassemblyError,
    FRAGMENT_HEADER_LEN,
};

/// Smallest datagram size a session accepts: handshake message 1 must fit.
pub const MIN_DATAGRAM_SIZE: usize = 256;
/// Largest UDP payload over IPv4 (65535 − 20 − 8).
pub const MAX_UDP_DATAGRAM_SIZE: usize = 65_507;
/// Bytes a sealed DATA frame adds to its message.
pub const DATA_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Bytes a sealed STREAM (fragment) frame adds to its chunk.
pub const FRAGMENT_OVERHEAD: usize = HEADER_LEN + TAG_LEN + FRAGMENT_HEADER_LEN;
/// Bytes a record adds inside a batch.
pub const BATCH_RECORD_OVERHEAD: usize = 4;

/// Upper bound of the handshake retransmission timer.
const MAX_RTO: Duration = Duration::from_secs(2);

/// Tunables of a session. `Default` gives the values below; each says why.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Largest datagram the path carries, or `None` on a stream transport
    /// (WebSocket), where a message travels whole in one frame.
    ///
    /// Default `Some(1472)`: a 1500-byte Ethernet MTU less the IPv4 (20) and
    /// UDP (8) headers, so no datagram is ever fragmented by IP.
    pub max_datagram_size: Option<usize>,
    /// The AEAD to ask for. Default [`AeadPreference::Auto`]: AES-256-GCM with
    /// hardware AES on both sides, ChaCha20-Poly1305 otherwise.
    pub aead: AeadPreference,
    /// Send a ping when either direction has been quiet this long. Default
    /// 5 s: keeps NAT bindings (often 30 s for UDP) open with room to lose a
    /// few pings, and detects a dead peer well inside the idle timeout.
    pub keepalive_interval: Duration,
    /// Close when nothing authenticated arrived for this long. Default 30 s
    /// (six keepalive intervals).
    pub idle_timeout: Duration,
    /// Give up a handshake that has not completed after this long. Default
    /// 10 s: covers several lost messages at the largest backoff.
    pub handshake_timeout: Duration,
    /// First handshake retransmission timeout, doubled at each retry up to
    /// 2 s. Default 250 ms: above most internet round trips, short enough
    /// that one lost message costs little.
    pub initial_rto: Duration,
    /// How long a closing session stays to answer late frames with CLOSE.
    /// Default 1 s.
    pub close_linger: Duration,
    /// Reassembly limits for fragmented messages (also bounds
    /// [`max_message_size`](ReassemblyConfig::max_message_size) on send).
    pub reassembly: ReassemblyConfig,
    /// Packets per sending key before a key update, or `None` for the AEAD's
    /// own limit ([`Algorithm::update_interval`]).
    pub key_update_interval: Option<u64>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            max_datagram_size: Some(1472),
            aead: AeadPreference::Auto,
            keepalive_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            initial_rto: Duration::from_millis(250),
            close_linger: Duration::from_secs(1),
            reassembly: ReassemblyConfig::default(),
            key_update_interval: None,
        }
    }
}

impl SessionConfig {
    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(size) = self.max_datagram_size {
            if !(MIN_DATAGRAM_SIZE..=MAX_UDP_DATAGRAM_SIZE).contains(&size) {
                return Err(ConfigError::DatagramSize(size));
            }
        }
        if self.keepalive_interval.is_zero() || self.idle_timeout <= self.keepalive_interval {
            return Err(ConfigError::Timers(
                "idle_timeout must be longer than a non-zero keepalive_interval",
            ));
        }
        if self.initial_rto.is_zero() || self.handshake_timeout <= self.initial_rto {
            return Err(ConfigError::Timers(
                "handshake_timeout must be longer than a non-zero initial_rto",
            ));
        }
        if self.reassembly.max_message_size == 0
            || self.reassembly.max_message_size > (MAX_PAYLOAD_LEN as usize - 64)
        {
            return Err(ConfigError::MessageSize(self.reassembly.max_message_size));
        }
        if self.key_update_interval == Some(0) {
            return Err(ConfigError::Timers(
                "key_update_interval must be at least 1",
            ));
        }
        Ok(())
    }

    /// Largest message that travels in one DATA frame on this path.
    pub fn max_unfragmented(&self) -> usize {
        match self.max_datagram_size {
            Some(size) => size - DATA_OVERHEAD,
            None => self.reassembly.max_message_size,
        }
    }
}

/// A configuration that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `max_datagram_size` out of range.
    #[error("max_datagram_size {0} is out of range: use {MIN_DATAGRAM_SIZE}..={MAX_UDP_DATAGRAM_SIZE} (1472 for a 1500-byte Ethernet MTU, 8972 for jumbo frames)")]
    DatagramSize(usize),
    /// Inconsistent timers.
    #[error("invalid timers: {0}")]
    Timers(&'static str),
    /// `max_message_size` out of range.
    #[error("max_message_size {0} is out of range: use 1..=16 MiB")]
    MessageSize(usize),
}

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
    /// This side called [`Session::close`].
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
    /// Too many forged frames: the keys are retired.
    IntegrityLimit,
    /// The packet number space ran out.
    PacketNumbersExhausted,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Local { code, reason } => write!(f, "closed locally (code {code}): {reason}"),
            CloseReason::Peer { code, reason } => write!(f, "closed by peer (code {code}): {reason}"),
            CloseReason::IdleTimeout => f.write_str("idle timeout: nothing received from the peer"),
            CloseReason::HandshakeTimeout => f.write_str(
                "handshake timed out: the peer is unreachable, not running, or not in this network (different shared_seed)",
            ),
            CloseReason::IntegrityLimit => f.write_str("too many forged frames: keys retired"),
            CloseReason::PacketNumbersExhausted => f.write_str("packet numbers exhausted"),
        }
    }
}

/// What a session reports to its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// The handshake completed.
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
}

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
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
    /// Key updates on the sending side.
    pub key_updates: u64,
    /// Handshake messages retransmitted.
    pub retransmits: u64,
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
    fn sample(&mut self, rtt: Duration) {
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

/// Datagrams produced by a send, back to back in one buffer.
///
/// Reused across sends, it allocates only while it grows. Consecutive
/// datagrams of one size (the fragments of a large message) can go to the
/// kernel as one GSO segment run; [`Transmits::iter`] yields them one by one.
#[derive(Debug, Default, Clone)]
pub struct Transmits {
    buf: Vec<u8>,
    ends: Vec<usize>,
}

impl Transmits {
    /// An empty buffer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of datagrams.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there is no datagram.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// Total bytes.
    pub fn bytes(&self) -> usize {
        self.buf.len()
    }

    /// Forgets every datagram, keeping the memory.
    pub fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    /// The datagrams, in order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.ends.iter().enumerate().map(move |(i, &end)| {
            let start = if i == 0 { 0 } else { self.ends[i - 1] };
            &self.buf[start..end]
        })
    }

    /// Datagram `i`.
    pub fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        Some(&self.buf[start..end])
    }

    /// Adds a datagram.
    pub fn push(&mut self, datagram: &[u8]) {
        self.buf.extend_from_slice(datagram);
        self.ends.push(self.buf.len());
    }

    /// Removes the datagrams pushed since the buffer held `count` of them
    /// (used to undo a send that failed half way).
    fn truncate(&mut self, count: usize) {
        self.ends.truncate(count);
        let len = self.ends.last().copied().unwrap_or(0);
        self.buf.truncate(len);
    }

    /// Starts a frame at the end of the buffer; returns its offset.
    fn begin_frame(&mut self) -> usize {
        let start = self.buf.len();
        self.buf.resize(start + HEADER_LEN, 0);
        start
    }

    fn end_datagram(&mut self) {
        self.ends.push(self.buf.len());
    }
}

/// Handshake progress kept between messages.
enum Pending {
    /// Initiator waiting for message 2.
    Initiator {
        handshake: Handshake,
        msg1: Vec<u8>,
        first_sent: Instant,
    },
    /// Responder waiting for message 3.
    Responder {
        handshake: Handshake,
        msg1: Vec<u8>,
        msg2: Vec<u8>,
        sent: Instant,
    },
}

struct Keys {
    send: SendKeys,
    recv: RecvKeys,
}

/// One encrypted session. See the [module docs](self) for how to drive it.
pub struct Session {
    id: SessionId,
    role: Role,
    state: SessionState,
    config: SessionConfig,
    pending: Option<Pending>,
    keys: Option<Keys>,
    peer: Option<NodeId>,
    /// Initiator: message 3 to repeat until the responder confirms.
    unconfirmed_msg3: Option<Vec<u8>>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    reassembler: Reassembler,
    next_message_id: u32,
    created: Instant,
    handshake_deadline: Instant,
    rto: Duration,
    retransmit_at: Option<Instant>,
    last_recv: Instant,
    last_send: Instant,
    last_ping: Instant,
    close_deadline: Option<Instant>,
    close_frame_allowance: u32,
    close_reason: Option<CloseReason>,
    rtt: RttStats,
    stats: SessionStats,
}

impl Session {
    /// Opens a session as initiator: builds handshake message 1, ready in
    /// [`poll_transmit`](Self::poll_transmit). `id` must be random (see
    /// [`SessionId`]) and unused on this node.
    pub fn connect(
        config: SessionConfig,
        identity: &Identity,
        network: &NetworkKey,
        id: SessionId,
        now: Instant,
    ) -> Result<Self, SessionError> {
        Self::connect_with_budget(config, identity, network, id, now, None)
    }

    /// [`connect`](Self::connect), sharing a node-wide reassembly budget.
    pub fn connect_with_budget(
        config: SessionConfig,
        identity: &Identity,
        network: &NetworkKey,
        id: SessionId,
        now: Instant,
        budget: Option<MemoryBudget>,
    ) -> Result<Self, SessionError> {
        config.validate()?;
        let header = handshake_header(id, 1, crate::crypto::handshake::MSG1_LEN);
        let header_bytes = header.to_bytes();
        let (handshake, msg) = Handshake::initiate(identity, network, config.aead, &header_bytes)?;
        let mut msg1 = header_bytes.to_vec();
        msg1.extend_from_slice(&msg);
        let mut s = Session::new(Role::Initiator, id, config, now, budget);
        s.queue(msg1.clone(), now);
        s.retransmit_at = Some(now + s.rto);
        s.pending = Some(Pending::Initiator {
            handshake,
            msg1,
            first_sent: now,
        });
        Ok(s)
    }

    /// Accepts a session from a datagram whose first frame is handshake
    /// message 1; builds message 2, ready in
    /// [`poll_transmit`](Self::poll_transmit).
    ///
    /// A message 1 from a node without the shared seed fails here with
    /// [`HandshakeError::Authentication`], before any Diffie-Hellman: no
    /// session exists, nothing is sent back.
    pub fn accept(
        config: SessionConfig,
        identity: &Identity,
        network: &NetworkKey,
        datagram: &[u8],
        now: Instant,
    ) -> Result<Self, SessionError> {
        Self::accept_with_budget(config, identity, network, datagram, now, None)
    }

    /// [`accept`](Self::accept), sharing a node-wide reassembly budget.
    pub fn accept_with_budget(
        config: SessionConfig,
        identity: &Identity,
        network: &NetworkKey,
        datagram: &[u8],
        now: Instant,
        budget: Option<MemoryBudget>,
    ) -> Result<Self, SessionError> {
        config.validate()?;
        let (frame, _) = crate::frame::Frame::decode(datagram)?;
        if frame.header.frame_type != FrameType::Handshake || frame.header.packet_number != 1 {
            return Err(SessionError::Unexpected {
                frame_type: frame.header.frame_type,
                state: SessionState::Handshaking,
            });
        }
        let (handshake, msg) = Handshake::respond(
            identity,
            network,
            config.aead,
            frame.header_bytes,
            frame.payload,
        )?;
        let id = frame.header.session_id;
        let mut msg2 = Vec::with_capacity(HEADER_LEN + msg.len());
        handshake_header(id, 2, msg.len()).write(&mut msg2);
        msg2.extend_from_slice(&msg);
        let mut s = Session::new(Role::Responder, id, config, now, budget);
        s.stats.bytes_received += (HEADER_LEN + frame.payload.len()) as u64;
        s.stats.frames_received += 1;
        s.queue(msg2.clone(), now);
        s.pending = Some(Pending::Responder {
            handshake,
            msg1: frame.payload.to_vec(),
            msg2,
            sent: now,
        });
        Ok(s)
    }

    fn new(
        role: Role,
        id: SessionId,
        config: SessionConfig,
        now: Instant,
        budget: Option<MemoryBudget>,
    ) -> Self {
        Session {
            id,
            role,
            state: SessionState::Handshaking,
            reassembler: Reassembler::new(config.reassembly.clone(), budget),
            handshake_deadline: now + config.handshake_timeout,
            rto: config.initial_rto,
            config,
            pending: None,
            keys: None,
            peer: None,
            unconfirmed_msg3: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            next_message_id: 0,
            created: now,
            retransmit_at: None,
            last_recv: now,
            last_send: now,
            last_ping: now,
            close_deadline: None,
            close_frame_allowance: 0,
            close_reason: None,
            rtt: RttStats::default(),
            stats: SessionStats::default(),
        }
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Which side opened the session.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The current state.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Whether data can be sent.
    pub fn is_established(&self) -> bool {
        self.state == SessionState::Established
    }

    /// The peer's node id, once the handshake authenticated it.
    pub fn peer(&self) -> Option<NodeId> {
        self.peer
    }

    /// The agreed AEAD, once established.
    pub fn algorithm(&self) -> Option<Algorithm> {
        self.keys.as_ref().map(|k| k.send.algorithm())
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        let mut s = self.stats;
        s.messages_expired = self.reassembler.stats().expired;
        s.key_updates = self.keys.as_ref().map_or(0, |k| k.send.generation());
        s
    }

    /// Round-trip estimate (from the handshake and pings).
    pub fn rtt(&self) -> RttStats {
        self.rtt
    }

    /// Why the session closed, once it is closing or closed.
    pub fn close_reason(&self) -> Option<&CloseReason> {
        self.close_reason.as_ref()
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Bytes held by incomplete fragmented messages.
    pub fn reassembly_bytes(&self) -> usize {
        self.reassembler.bytes_held()
    }

    /// Changes the path's datagram size: `Some(n)` for a datagram path,
    /// `None` for a stream path where messages travel whole. Takes effect
    /// for the next send; fragments in flight still reassemble.
    pub fn set_max_datagram_size(&mut self, size: Option<usize>) -> Result<(), ConfigError> {
        let mut c = self.config.clone();
        c.max_datagram_size = size;
        c.validate()?;
        self.config.max_datagram_size = size;
        Ok(())
    }

    /// Largest message sent unfragmented on the current path.
    pub fn max_unfragmented(&self) -> usize {
        self.config.max_unfragmented()
    }

    /// The next control or handshake datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            SessionState::Closed => None,
            SessionState::Closing => self.close_deadline,
            SessionState::Handshaking => Some(
                self.retransmit_at
                    .map_or(self.handshake_deadline, |r| r.min(self.handshake_deadline)),
            ),
            SessionState::Established => {
                let mut t = (self.last_recv + self.config.idle_timeout).min(self.keepalive_at());
                if let Some(r) = self.retransmit_at {
                    t = t.min(r);
                }
                if let Some(r) = self.reassembler.poll_timeout() {
                    t = t.min(r);
                }
                Some(t)
            }
        }
    }

    fn keepalive_at(&self) -> Instant {
        self.last_ping.max(self.last_send.min(self.last_recv)) + self.config.keepalive_interval
    }

    /// Runs the timers that are due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            SessionState::Closed => {}
            SessionState::Closing => {
                if self.close_deadline.is_some_and(|d| now >= d) {
                    self.finish_close();
                }
            }
            SessionState::Handshaking => {
                if now >= self.handshake_deadline {
                    self.terminate(CloseReason::HandshakeTimeout);
                    return;
                }
                if self.retransmit_at.is_some_and(|r| now >= r) {
                    if let Some(Pending::Initiator { msg1, .. }) = &self.pending {
                        let msg1 = msg1.clone();
                        self.stats.retransmits += 1;
                        self.queue(msg1, now);
                        self.backoff(now);
                    } else {
                        self.retransmit_at = None;
                    }
                }
            }
            SessionState::Established => {
                if now >= self.last_recv + self.config.idle_timeout {
                    self.send_close_frame(close_code::IDLE_TIMEOUT, "idle timeout", now);
                    self.terminate(CloseReason::IdleTimeout);
                    return;
                }
                if self.retransmit_at.is_some_and(|r| now >= r) {
                    match self.unconfirmed_msg3.clone() {
                        Some(m3) if now < self.handshake_deadline => {
                            self.stats.retransmits += 1;
                            self.queue(m3, now);
                            self.backoff(now);
                        }
                        _ => self.retransmit_at = None,
                    }
                }
                let expired = self.reassembler.handle_timeout(now);
                let _ = expired; // counted by the reassembler's stats
                if now >= self.keepalive_at() {
                    self.send_ping(now);
                }
            }
        }
    }

    fn backoff(&mut self, now: Instant) {
        self.rto = (self.rto * 2).min(MAX_RTO);
        self.retransmit_at = Some(now + self.rto);
    }

    /// Sends a ping now (it also refreshes the round-trip estimate).
    pub fn send_ping(&mut self, now: Instant) {
        if self.state != SessionState::Established {
            return;
        }
        let token = now.saturating_duration_since(self.created).as_nanos() as u64;
        self.last_ping = now;
        self.send_control(&Control::Ping { token }, now);
    }

    /// Asks the peer to update its sending key, and updates ours.
    pub fn update_keys(&mut self, now: Instant) {
        if let Some(k) = &mut self.keys {
            k.send.request_update();
            self.send_control(&Control::KeyRotation, now);
        }
    }

    /// Closes the session: sends CLOSE with `code` and `reason`, then lingers
    /// (see the module docs). Idempotent; closing a session still in its
    /// handshake ends it at once.
    pub fn close(&mut self, now: Instant, code: u16, reason: &str) {
        match self.state {
            SessionState::Closing | SessionState::Closed => {}
            SessionState::Handshaking => self.terminate(CloseReason::Local {
                code,
                reason: reason.to_owned(),
            }),
            SessionState::Established => {
                self.send_close_frame(code, reason, now);
                self.state = SessionState::Closing;
                self.close_reason = Some(CloseReason::Local {
                    code,
                    reason: reason.to_owned(),
                });
                self.close_deadline = Some(now + self.config.close_linger);
                // Answer at most a few late frames: each answer is a CLOSE,
                // no larger than what provoked it.
                self.close_frame_allowance = 8;
            }
        }
    }

    /// Sends one application message of type DATA on `stream_id`, sealed
    /// into `out` (fragmented when it does not fit the path's datagram).
    /// Returns how many datagrams were added.
    pub fn send(
        &mut self,
        now: Instant,
        stream_id: u32,
        payload: &[u8],
        out: &mut Transmits,
    ) -> Result<usize, SessionError> {
        self.send_typed(now, FrameType::Data, stream_id, payload, out)
    }

    /// [`send`](Self::send) with an explicit message type: DATA or an
    /// application type (0x80–0xFF).
    pub fn send_typed(
        &mut self,
        now: Instant,
        frame_type: FrameType,
        stream_id: u32,
        payload: &[u8],
        out: &mut Transmits,
    ) -> Result<usize, SessionError> {
        if !frame_type.is_message() {
            return Err(SessionError::NotAMessageType(frame_type));
        }
        let max = self.config.reassembly.max_message_size;
        if payload.len() > max {
            return Err(SessionError::MessageTooLarge {
                len: payload.len(),
                max,
            });
        }
        let before = out.len();
        let result = self.send_inner(frame_type, stream_id, payload, out);
        self.after_send(now, before, out, result)
    }

    fn send_inner(
        &mut self,
        frame_type: FrameType,
        stream_id: u32,
        payload: &[u8],
        out: &mut Transmits,
    ) -> Result<(), SessionError> {
        let mut header = Header {
            frame_type,
            flags: Flags::EMPTY,
            session_id: self.id,
            stream_id,
            packet_number: 0,
            payload_len: 0,
        };
        let datagram_size = self.config.max_datagram_size;
        let single = match datagram_size {
            None => true,
            Some(size) => payload.len() + DATA_OVERHEAD <= size,
        };
        if single {
            let keys = self.established_keys()?;
            let start = out.begin_frame();
            out.buf.extend_from_slice(payload);
            keys.send.seal(&mut out.buf, start, header)?;
            out.end_datagram();
            return Ok(());
        }
        // Validated: max_datagram_size >= MIN_DATAGRAM_SIZE > FRAGMENT_OVERHEAD.
        let chunk = datagram_size.map_or(0, |s| s - FRAGMENT_OVERHEAD);
        let message_id = self.next_message_id;
        let keys = self.established_keys()?;
        header.frame_type = FrameType::Stream;
        for (fragment, bytes) in stream::fragments(message_id, frame_type.to_u8(), payload, chunk)?
        {
            let start = out.begin_frame();
            out.buf.extend_from_slice(&fragment.encode());
            out.buf.extend_from_slice(bytes);
            keys.send.seal(&mut out.buf, start, header)?;
            out.end_datagram();
        }
        self.next_message_id = message_id.wrapping_add(1);
        Ok(())
    }

    /// Sends several small messages of type DATA on `stream_id`, coalesced
    /// into as few sealed frames as fit the path (on a stream path, frames of
    /// up to `batch_limit` bytes). One seal and one datagram then carry many
    /// messages. A message too large for a batch frame goes alone, as
    /// [`send`](Self::send) would send it. Returns how many datagrams were
    /// added.
    pub fn send_batch(
        &mut self,
        now: Instant,
        stream_id: u32,
        messages: &[&[u8]],
        batch_limit: usize,
        out: &mut Transmits,
    ) -> Result<usize, SessionError> {
        let max = self.config.reassembly.max_message_size;
        if let Some(m) = messages.iter().find(|m| m.len() > max) {
            return Err(SessionError::MessageTooLarge { len: m.len(), max });
        }
        let frame_limit = self
            .config
            .max_datagram_size
            .unwrap_or(batch_limit.max(MIN_DATAGRAM_SIZE))
            .min(MAX_PAYLOAD_LEN as usize);
        let before = out.len();
        let result = self.send_batch_inner(stream_id, messages, frame_limit, out);
        self.after_send(now, before, out, result)
    }

    fn send_batch_inner(
        &mut self,
        stream_id: u32,
        messages: &[&[u8]],
        frame_limit: usize,
        out: &mut Transmits,
    ) -> Result<(), SessionError> {
        let id = self.id;
        let header = Header {
            frame_type: FrameType::Data,
            flags: Flags::BATCH,
            session_id: id,
            stream_id,
            packet_number: 0,
            payload_len: 0,
        };
        let mut open: Option<usize> = None;
        for m in messages {
            let record = BATCH_RECORD_OVERHEAD + m.len();
            if DATA_OVERHEAD + record > frame_limit {
                // Too big to share a frame: flush, then send it on its own.
                if let Some(start) = open.take() {
                    self.established_keys()?
                        .send
                        .seal(&mut out.buf, start, header)?;
                    out.end_datagram();
                }
                self.send_inner(FrameType::Data, stream_id, m, out)?;
                continue;
            }
            if let Some(start) = open {
                if out.buf.len() - start + record + TAG_LEN > frame_limit {
                    self.established_keys()?
                        .send
                        .seal(&mut out.buf, start, header)?;
                    out.end_datagram();
                    open = None;
                }
            }
            let start = match open {
                Some(s) => s,
                None => {
                    self.established_keys()?;
                    let s = out.begin_frame();
                    open = Some(s);
                    s
                }
            };
            let _ = start;
            crate::frame::write_batch_record(&mut out.buf, m);
        }
        if let Some(start) = open {
            self.established_keys()?
                .send
                .seal(&mut out.buf, start, header)?;
            out.end_datagram();
        }
        Ok(())
    }

    fn after_send(
        &mut self,
        now: Instant,
        before: usize,
        out: &mut Transmits,
        result: Result<(), SessionError>,
    ) -> Result<usize, SessionError> {
        match result {
            Ok(()) => {
                let added = out.len() - before;
                let start = if before == 0 { 0 } else { out.ends[before - 1] };
                self.stats.bytes_sent += (out.buf.len() - start) as u64;
                self.stats.frames_sent += added as u64;
                self.stats.messages_sent += 1;
                self.last_send = now;
                Ok(added)
            }
            Err(e) => {
                out.truncate(before);
                if matches!(e, SessionError::Crypto(CryptoError::PacketNumbersExhausted)) {
                    self.send_close_frame(
                        close_code::PACKET_NUMBERS_EXHAUSTED,
                        "packet numbers exhausted",
                        now,
                    );
                    self.terminate(CloseReason::PacketNumbersExhausted);
                }
                Err(e)
            }
        }
    }

    fn established_keys(&mut self) -> Result<&mut Keys, SessionError> {
        match (&mut self.keys, self.state) {
            (Some(k), SessionState::Established) => Ok(k),
            (_, state) => Err(SessionError::NotEstablished(state)),
        }
    }

    /// Feeds a received datagram. The datagram is decrypted in place.
    ///
    /// Every frame in it is processed in order; the first bad frame stops the
    /// datagram and its error is returned (count it as dropped). Frames before
    /// it stay processed.
    pub fn handle_datagram(
        &mut self,
        now: Instant,
        datagram: &mut [u8],
    ) -> Result<(), SessionError> {
        let total = datagram.len();
        let mut rest = datagram;
        let mut used = false;
        let result = loop {
            if rest.is_empty() {
                break Ok(());
            }
            let header = match Header::decode(rest) {
                Ok(h) => h,
                Err(e) => break Err(e.into()),
            };
            let end = HEADER_LEN + header.payload_len as usize;
            if rest.len() < end {
                break Err(FrameError::Truncated {
                    needed: end,
                    got: rest.len(),
                }
                .into());
            }
            let (frame, tail) = std::mem::take(&mut rest).split_at_mut(end);
            rest = tail;
            if header.session_id != self.id {
                break Err(SessionError::WrongSession {
                    expected: self.id,
                    got: header.session_id,
                });
            }
            let (head, payload) = frame.split_at_mut(HEADER_LEN);
            let head: &[u8; HEADER_LEN] = match (&*head).try_into() {
                Ok(h) => h,
                Err(_) => break Err(SessionError::Malformed("header")),
            };
            match self.handle_frame(now, &header, head, payload) {
                Ok(()) => {
                    used = true;
                    self.stats.frames_received += 1;
                }
                Err(e) => break Err(e),
            }
        };
        if used {
            self.stats.bytes_received += total as u64;
        }
        if result.is_err() {
            self.stats.frames_dropped += 1;
        }
        result
    }

    fn handle_frame(
        &mut self,
        now: Instant,
        header: &Header,
        header_bytes: &[u8; HEADER_LEN],
        payload: &mut [u8],
    ) -> Result<(), SessionError> {
        match header.frame_type {
            FrameType::Handshake => self.handle_handshake(now, header, payload),
            // Address validation is between a node and an unvalidated
            // address, never inside a session.
            FrameType::Auth => Err(SessionError::Unexpected {
                frame_type: FrameType::Auth,
                state: self.state,
            }),
            _ => self.handle_sealed(now, header, header_bytes, payload),
        }
    }

    fn handle_handshake(
        &mut self,
        now: Instant,
        header: &Header,
        msg: &[u8],
    ) -> Result<(), SessionError> {
        let unexpected = SessionError::Unexpected {
            frame_type: FrameType::Handshake,
            state: self.state,
        };
        match (header.packet_number, &mut self.pending) {
            // Responder: a duplicate message 1 (its message 2 was lost).
            (1, Some(Pending::Responder { msg1, msg2, .. })) => {
                if msg1.as_slice() != msg {
                    return Err(unexpected);
                }
                let again = msg2.clone();
                self.stats.retransmits += 1;
                self.queue(again, now);
                Ok(())
            }
            // Initiator: message 2.
            (
                2,
                Some(Pending::Initiator {
                    handshake,
                    first_sent,
                    ..
                }),
            ) => {
                let (msg3, outcome) = handshake.finish_initiator(msg)?;
                // Karn: a retransmitted message 1 makes the sample ambiguous.
                if self.stats.retransmits == 0 {
                    self.rtt.sample(now.saturating_duration_since(*first_sent));
                }
                let mut datagram = Vec::with_capacity(HEADER_LEN + msg3.len());
                handshake_header(self.id, 3, msg3.len()).write(&mut datagram);
                datagram.extend_from_slice(&msg3);
                self.queue(datagram.clone(), now);
                self.unconfirmed_msg3 = Some(datagram);
                self.rto = self.config.initial_rto;
                self.retransmit_at = Some(now + self.rto);
                self.establish(outcome, now);
                Ok(())
            }
            // Responder: message 3.
            (
                3,
                Some(Pending::Responder {
                    handshake, sent, ..
                }),
            ) => {
                let outcome = handshake.finish_responder(msg)?;
                if self.stats.retransmits == 0 {
                    self.rtt.sample(now.saturating_duration_since(*sent));
                }
                self.establish(outcome, now);
                // Confirms the handshake to the initiator.
                self.send_ping(now);
                Ok(())
            }
            // Responder, established: message 3 again means our
            // confirmation was lost. Repeat it (a ping is smaller than
            // message 3), once per retransmission interval.
            (3, None)
                if self.role == Role::Responder && self.state == SessionState::Established =>
            {
                if now >= self.last_ping + self.config.initial_rto {
                    self.send_ping(now);
                }
                Ok(())
            }
            // Initiator, established: a late duplicate message 2.
            (2, None) if self.role == Role::Initiator => {
                self.last_recv = now;
                Ok(())
            }
            _ => Err(unexpected),
        }
    }

    fn establish(&mut self, outcome: HandshakeOutcome, now: Instant) {
        let mut send = SendKeys::new(outcome.algorithm, &outcome.send_secret);
        if let Some(n) = self.config.key_update_interval {
            send.set_update_interval(n);
        }
        let recv = RecvKeys::new(outcome.algorithm, &outcome.recv_secret);
        self.keys = Some(Keys { send, recv });
        self.pending = None;
        self.peer = Some(outcome.peer);
        self.state = SessionState::Established;
        self.last_recv = now;
        self.last_ping = now;
        if self.role == Role::Responder {
            self.retransmit_at = None;
        }
        self.events.push_back(Event::Established {
            peer: outcome.peer,
            algorithm: outcome.algorithm,
        });
    }

    fn handle_sealed(
        &mut self,
        now: Instant,
        header: &Header,
        header_bytes: &[u8; HEADER_LEN],
        payload: &mut [u8],
    ) -> Result<(), SessionError> {
        let Some(keys) = &mut self.keys else {
            return Err(SessionError::Unexpected {
                frame_type: header.frame_type,
                state: self.state,
            });
        };
        if matches!(self.state, SessionState::Closed) {
            return Err(SessionError::Unexpected {
                frame_type: header.frame_type,
                state: self.state,
            });
        }
        let opened = keys.recv.open(header, header_bytes, payload);
        let plaintext = match opened {
            Ok(p) => p,
            Err(e) => {
                if keys.recv.integrity_limit_reached() {
                    self.send_close_frame(close_code::INTEGRITY_LIMIT, "integrity limit", now);
                    self.terminate(CloseReason::IntegrityLimit);
                }
                return Err(e.into());
            }
        };
        self.last_recv = now;
        if self.unconfirmed_msg3.take().is_some() {
            self.retransmit_at = None;
        }
        if self.state == SessionState::Closing {
            // Only a CLOSE matters now; anything else is answered with CLOSE.
            if let (FrameType::Control, Ok(Control::Close { .. })) =
                (header.frame_type, Control::decode(plaintext))
            {
                self.finish_close();
            } else if self.close_frame_allowance > 0 {
                self.close_frame_allowance -= 1;
                if let Some(CloseReason::Local { code, reason }) = self.close_reason.clone() {
                    self.send_close_frame(code, &reason, now);
                }
            }
            return Ok(());
        }
        match header.frame_type {
            FrameType::Control => self.handle_control(now, plaintext),
            FrameType::Stream => {
                let (fragment, chunk) = FragmentHeader::decode(plaintext)?;
                if FrameType::from_u8(fragment.inner_type).is_none_or(|t| !t.is_message()) {
                    return Err(SessionError::Malformed("fragment of a non-message type"));
                }
                if let Some(done) =
                    self.reassembler
                        .insert(now, header.stream_id, &fragment, chunk)?
                {
                    // inner_type checked above.
                    let frame_type = FrameType::from_u8(done.inner_type).unwrap_or(FrameType::Data);
                    self.deliver(done.stream_id, frame_type, done.payload);
                }
                Ok(())
            }
            t if header.flags.contains(Flags::BATCH) => {
                // Parse all records before delivering any: a malformed batch
                // delivers nothing.
                let records: Vec<&[u8]> = BatchRecords::new(plaintext).collect::<Result<_, _>>()?;
                for r in records {
                    self.deliver(header.stream_id, t, r.to_vec());
                }
                Ok(())
            }
            t => {
                self.deliver(header.stream_id, t, plaintext.to_vec());
                Ok(())
            }
        }
    }

    fn deliver(&mut self, stream_id: u32, frame_type: FrameType, payload: Vec<u8>) {
        self.stats.messages_received += 1;
        self.events.push_back(Event::Message {
            stream_id,
            frame_type,
            payload,
        });
    }

    fn handle_control(&mut self, now: Instant, plaintext: &[u8]) -> Result<(), SessionError> {
        match Control::decode(plaintext)? {
            Control::Ping { token } => self.send_control(&Control::Pong { token }, now),
            Control::Pong { token } => {
                let sent = self.created + Duration::from_nanos(token);
                if sent <= now {
                    self.rtt.sample(now - sent);
                }
            }
            // Advisory in this version: the node's flow control reads
            // transport backpressure instead.
            Control::FlowCredit { .. } => {}
            Control::KeyRotation => {
                if let Some(k) = &mut self.keys {
                    k.send.request_update();
                }
            }
            Control::Close { code, reason } => self.terminate(CloseReason::Peer { code, reason }),
            Control::Error { code, message } => {
                self.events.push_back(Event::PeerError { code, message })
            }
        }
        Ok(())
    }

    fn send_control(&mut self, control: &Control, now: Instant) {
        let Some(keys) = &mut self.keys else { return };
        let mut buf = Vec::with_capacity(HEADER_LEN + 32 + TAG_LEN);
        buf.resize(HEADER_LEN, 0);
        control.encode(&mut buf);
        let header = Header {
            frame_type: FrameType::Control,
            flags: Flags::EMPTY,
            session_id: self.id,
            stream_id: 0,
            packet_number: 0,
            payload_len: 0,
        };
        match keys.send.seal(&mut buf, 0, header) {
            Ok(_) => self.queue(buf, now),
            Err(CryptoError::PacketNumbersExhausted) => {
                self.terminate(CloseReason::PacketNumbersExhausted)
            }
            // A control message is far below the frame limit.
            Err(_) => {}
        }
    }

    fn send_close_frame(&mut self, code: u16, reason: &str, now: Instant) {
        self.send_control(
            &Control::Close {
                code,
                reason: reason.to_owned(),
            },
            now,
        );
    }

    fn queue(&mut self, datagram: Vec<u8>, now: Instant) {
        self.stats.bytes_sent += datagram.len() as u64;
        self.stats.frames_sent += 1;
        self.last_send = now;
        self.transmits.push_back(datagram);
    }

    /// Ends the session now with `reason`.
    fn terminate(&mut self, reason: CloseReason) {
        if self.state == SessionState::Closed {
            return;
        }
        self.close_reason = Some(reason);
        self.finish_close();
    }

    fn finish_close(&mut self) {
        if self.state == SessionState::Closed {
            return;
        }
        self.state = SessionState::Closed;
        self.pending = None;
        self.retransmit_at = None;
        self.unconfirmed_msg3 = None;
        self.close_deadline = None;
        let reason = self.close_reason.clone().unwrap_or(CloseReason::Local {
            code: close_code::NORMAL,
            reason: String::new(),
        });
        self.events.push_back(Event::Closed { reason });
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("state", &self.state)
            .field("peer", &self.peer)
            .field("algorithm", &self.algorithm())
            .finish_non_exhaustive()
    }
}

fn handshake_header(id: SessionId, position: u64, len: usize) -> Header {
    Header {
        frame_type: FrameType::Handshake,
        flags: Flags::EMPTY,
        session_id: id,
        stream_id: 0,
        packet_number: position,
        // Handshake messages are at most a few hundred bytes.
        payload_len: len as u32,
    }
}
