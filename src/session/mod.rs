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
//! - Keys have lifetimes: the sending key is updated by volume (packets and
//!   bytes); a key whose update the peer never confirms closes the session
//!   at its limit ([`CloseReason::KeyExhausted`]); the previous receive key
//!   is dropped three probe intervals after the peer's update. Every
//!   [`SessionConfig::rekey_after`] both directions are rekeyed with fresh
//!   X25519 ephemerals (the `rekey` module); a session whose rekey does not
//!   complete within [`SessionConfig::reject_after`] closes
//!   ([`CloseReason::RekeyTimeout`]).
//! - [`close`](Session::close) sends a CLOSE frame and lingers for
//!   [`SessionConfig::close_linger`], answering late frames with CLOSE again
//!   (the first one may have been lost); a CLOSE from the peer ends the
//!   session at once.

pub mod channel;
mod conduit;
mod config;
mod event;
mod ping;
pub mod recovery;
mod recv;
mod rekey;
mod send;
mod timers;
mod transmit;

pub use config::*;
pub use event::*;
pub use transmit::Transmits;

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::crypto::{
    Algorithm, CryptoError, Handshake, Identity, NetworkKey, NodeId, RecvKeys, SendKeys,
};
use crate::frame::{
    close_code, Control, Flags, FrameType, Header, SessionId, HEADER_LEN, MAX_REASON_LEN,
};
use crate::stream::{MemoryBudget, Reassembler};

/// Upper bound of the handshake retransmission timer.
const MAX_RTO: Duration = Duration::from_secs(2);
/// Path responses kept until the caller reads them.
const MAX_PATH_RESPONSES: usize = 8;
/// Bytes of a CLOSE plaintext before its reason: subtype, code, length.
const CLOSE_FIXED_LEN: usize = 5;

/// Handshake progress kept between messages.
enum Pending {
    /// Initiator waiting for message 2.
    Initiator {
        handshake: Handshake,
        msg1: Vec<u8>,
        first_sent: Instant,
        /// The responder's address-validation cookie, once it asked for one:
        /// message 1 then goes out wrapped in a cookie echo.
        cookie: Option<[u8; crate::crypto::cookie::COOKIE_LEN]>,
    },
    /// Responder waiting for message 3.
    Responder {
        handshake: Handshake,
        msg1: Vec<u8>,
        msg2: Vec<u8>,
        sent: Instant,
    },
}

/// Which peer may complete the handshake.
pub(crate) enum PeerGate {
    /// Any member of the network.
    Any,
    /// Only this node (an initiator pinned to its peer).
    Expect(NodeId),
    /// Whoever the check allows (a responder's authorisation).
    Check(Box<dyn Fn(NodeId) -> bool + Send + Sync>),
}

struct Keys {
    send: SendKeys,
    recv: RecvKeys,
    /// The rekey chaining key ([`crate::crypto::rekey`]).
    ck: zeroize::Zeroizing<[u8; 32]>,
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
    /// Responder: the message 3 that established the session, to recognise
    /// its retransmissions.
    msg3_seen: Option<Vec<u8>>,
    /// Control and handshake datagrams waiting for the caller, back to back.
    control: Transmits,
    /// Events for the caller, each with the reliable bytes it releases
    /// from flow control when taken.
    events: VecDeque<(Event, u64)>,
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
    /// After a key update: the token of the first ping sealed under the new
    /// key, and when a ping was last sent for it. Its pong confirms that the
    /// peer follows the update.
    key_probe: Option<(u64, Instant)>,
    /// The last ping token handed out.
    last_token: u64,
    /// After the peer's key update: when the previous receive key goes.
    previous_key_until: Option<Instant>,
    /// Where the rekey with fresh Diffie-Hellman stands.
    rekey: rekey::Rekey,
    /// The number of the last rekey whose Diffie-Hellman this side mixed in.
    rekey_seq: u64,
    /// When the last rekey completed (or the session was established).
    last_rekey: Instant,
    /// The token of the last pong received.
    last_pong: Option<u64>,
    /// Path responses received, oldest first, until the caller takes them.
    path_responses: VecDeque<[u8; 8]>,
    /// Which peer may complete the handshake.
    gate: PeerGate,
    /// The sealed frame just opened carried the highest packet number yet.
    sealed_newest: bool,
    close_reason: Option<CloseReason>,
    rtt: RttStats,
    stats: SessionStats,
    /// Where delivered messages' buffers come from (a node's recycled
    /// buffers); fresh allocations when unset.
    payload_source: Option<Arc<dyn PayloadSource>>,
    /// Channels, once established.
    channels: Option<channel::Channels>,
    /// The node-wide reassembly budget, for the channels.
    budget: Option<MemoryBudget>,
}

/// Where a session takes the buffers of the messages it delivers: a node
/// hands it the buffers its application gave back (`Node::recycle`).
pub(crate) trait PayloadSource: Send + Sync {
    /// A buffer holding a copy of `data`.
    fn copy_out(&self, data: &[u8]) -> Vec<u8>;
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
        Self::connect_inner(config, identity, network, &[], id, now, budget)
    }

    /// Opens a session as a client with a connect token
    /// (`docs/PROTOCOL.md` 14.4): the token's key is the PSK and message 1
    /// carries its ticket. Only a server holding the token's issuing key
    /// can answer.
    pub fn connect_with_token(
        config: SessionConfig,
        identity: &Identity,
        token: &crate::token::ConnectToken,
        id: SessionId,
        now: Instant,
        budget: Option<MemoryBudget>,
    ) -> Result<Self, SessionError> {
        let ticket = token.ticket();
        let mut part = Vec::with_capacity(2 + ticket.len());
        part.extend_from_slice(&(ticket.len() as u16).to_be_bytes());
        part.extend_from_slice(ticket);
        let psk = NetworkKey::from_client_key(token.client_key());
        Self::connect_inner(config, identity, &psk, &part, id, now, budget)
    }

    /// Message 1 after `ticket_part` (empty for a member's handshake).
    fn connect_inner(
        config: SessionConfig,
        identity: &Identity,
        network: &NetworkKey,
        ticket_part: &[u8],
        id: SessionId,
        now: Instant,
        budget: Option<MemoryBudget>,
    ) -> Result<Self, SessionError> {
        config.validate()?;
        let len = ticket_part.len() + crate::crypto::handshake::MSG1_LEN;
        let header = handshake_header(id, 1, len);
        let mut prologue = header.to_bytes().to_vec();
        prologue.extend_from_slice(ticket_part);
        let (handshake, msg) = Handshake::initiate(identity, network, config.aead, &prologue)?;
        let mut msg1 = prologue;
        msg1.extend_from_slice(&msg);
        let mut s = Session::new(Role::Initiator, id, config, now, budget);
        s.queue(&msg1, now);
        s.retransmit_at = Some(now + s.rto);
        s.pending = Some(Pending::Initiator {
            handshake,
            msg1,
            first_sent: now,
            cookie: None,
        });
        Ok(s)
    }

    /// Accepts a session from a datagram whose first frame is handshake
    /// message 1; builds message 2, ready in
    /// [`poll_transmit`](Self::poll_transmit).
    ///
    /// A message 1 from a node without the shared seed fails here with
    /// [`HandshakeError::Authentication`](crate::crypto::HandshakeError::Authentication), before any Diffie-Hellman: no
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
        if frame.header.frame_type != FrameType::Handshake
            || frame.header.packet_number != 1
            || frame.header.flags != Flags::EMPTY
            || frame.header.stream_id != 0
        {
            return Err(SessionError::Unexpected {
                frame_type: frame.header.frame_type,
                state: SessionState::Handshaking,
            });
        }
        // A member's message 1 is the Noise message alone; a client's starts
        // with its token's ticket, which the prologue takes too (14.4).
        let mut prologue = frame.header_bytes.to_vec();
        let noise = if frame.payload.len() == crate::crypto::handshake::MSG1_LEN {
            frame.payload
        } else {
            let (part, _, noise) = crate::token::split_payload(frame.payload).ok_or(
                crate::crypto::HandshakeError::BadLength {
                    position: 1,
                    got: frame.payload.len(),
                    expected: crate::crypto::handshake::MSG1_LEN,
                },
            )?;
            prologue.extend_from_slice(part);
            noise
        };
        let (handshake, msg) =
            Handshake::respond(identity, network, config.aead, &prologue, noise)?;
        let id = frame.header.session_id;
        let mut msg2 = Vec::with_capacity(HEADER_LEN + msg.len());
        handshake_header(id, 2, msg.len()).write(&mut msg2);
        msg2.extend_from_slice(&msg);
        let mut s = Session::new(Role::Responder, id, config, now, budget);
        s.stats.bytes_received += (HEADER_LEN + frame.payload.len()) as u64;
        s.stats.frames_received += 1;
        s.queue(&msg2, now);
        let mut msg1 = frame.header_bytes.to_vec();
        msg1.extend_from_slice(frame.payload);
        s.pending = Some(Pending::Responder {
            handshake,
            msg1,
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
            reassembler: Reassembler::new(config.reassembly.clone(), budget.clone()),
            budget,
            channels: None,
            handshake_deadline: now + config.handshake_timeout,
            rto: config.initial_rto,
            config,
            pending: None,
            keys: None,
            peer: None,
            unconfirmed_msg3: None,
            msg3_seen: None,
            control: Transmits::new(),
            path_responses: VecDeque::new(),
            gate: PeerGate::Any,
            events: VecDeque::new(),
            next_message_id: 0,
            created: now,
            retransmit_at: None,
            last_recv: now,
            last_send: now,
            last_ping: now,
            close_deadline: None,
            close_frame_allowance: 0,
            key_probe: None,
            last_token: 0,
            previous_key_until: None,
            rekey: rekey::Rekey::Idle,
            rekey_seq: 0,
            last_rekey: now,
            last_pong: None,
            sealed_newest: false,
            close_reason: None,
            rtt: RttStats::default(),
            stats: SessionStats::default(),
            payload_source: None,
        }
    }

    /// Takes the buffers of delivered messages from `source`.
    pub(crate) fn set_payload_source(&mut self, source: Arc<dyn PayloadSource>) {
        self.payload_source = Some(source);
    }

    /// A buffer holding a copy of a message to deliver.
    fn payload_of(&self, data: &[u8]) -> Vec<u8> {
        match &self.payload_source {
            Some(source) => source.copy_out(data),
            None => data.to_vec(),
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
        s.rtt = self.rtt.smoothed;
        s.channels = self.channels.as_ref().map(|c| c.stats(c.last_seen()));
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

    /// The next datagram to send: control and handshake datagrams first,
    /// then channel packets due at `now`.
    pub fn poll_transmit_at(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self.control.is_empty() {
            let mut one = std::mem::take(&mut self.control);
            let n = self.poll_channel_packets_limited(now, &mut one, 1);
            self.control = one;
            if n == 0 {
                return None;
            }
        }
        self.control.remove_first()
    }

    /// The next control or handshake datagram to send (channel packets
    /// come from [`poll_transmit_at`](Self::poll_transmit_at) and
    /// [`poll_transmits_at`](Self::poll_transmits_at)).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.control.remove_first()
    }

    /// Moves every control and handshake datagram waiting into `out`, in
    /// order (no allocation per datagram); returns how many.
    pub fn poll_transmits(&mut self, out: &mut Transmits) -> usize {
        let n = self.control.len();
        out.append(&mut self.control);
        n
    }

    /// [`poll_transmits`](Self::poll_transmits), then the channel packets
    /// due at `now` (at most one GSO batch of them).
    pub fn poll_transmits_at(&mut self, now: Instant, out: &mut Transmits) -> usize {
        self.poll_transmits(out) + self.poll_channel_packets(now, out)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<Event> {
        let (event, credit) = self.poll_event_with_credit()?;
        self.release_credit(credit);
        Some(event)
    }

    /// The next event, with the reliable bytes it holds in the channels'
    /// flow-control window: the caller hands them back with
    /// [`release_credit`](Self::release_credit) once the application has
    /// the message, so that a slow application slows the peer down
    /// instead of piling messages up.
    pub fn poll_event_with_credit(&mut self) -> Option<(Event, u64)> {
        self.events.pop_front()
    }

    /// The application took messages holding `credit` reliable bytes.
    pub fn release_credit(&mut self, credit: u64) {
        if credit > 0 {
            if let Some(c) = self.channels.as_mut() {
                c.release(credit);
            }
        }
    }

    /// Draws reassembly memory from `budget` from now on (see
    /// [`Reassembler::set_budget`]), for fragmented messages and channel
    /// messages alike; false while partial messages are held.
    pub fn set_reassembly_budget(&mut self, budget: MemoryBudget) -> bool {
        let channels_free = self.channels.as_ref().is_none_or(|c| c.recv_held() == 0);
        if !channels_free || !self.reassembler.set_budget(budget.clone()) {
            return false;
        }
        if let Some(c) = self.channels.as_mut() {
            c.set_budget(budget.clone());
        }
        self.budget = Some(budget);
        true
    }

    /// Pins an initiator to one peer: a responder with another node id ends
    /// the handshake before message 3 (so it never learns this side's
    /// identity), with [`CloseReason::UnexpectedPeer`]. Call it before
    /// message 2 arrives.
    pub fn expect_peer(&mut self, peer: NodeId) {
        self.gate = PeerGate::Expect(peer);
    }

    /// Makes a responder ask `allow` whether the initiator (its node id,
    /// learnt from message 3) may have the session: refused, it gets a
    /// CLOSE with [`close_code::REFUSED`] instead of a confirmation, the
    /// session ends with [`CloseReason::Refused`], and no `Established`
    /// event is emitted.
    pub(crate) fn check_peer(&mut self, allow: Box<dyn Fn(NodeId) -> bool + Send + Sync>) {
        self.gate = PeerGate::Check(allow);
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
                if self.state == SessionState::Closed {
                    // Nothing could be sealed (keys or packet numbers
                    // exhausted): the session ended with that reason.
                    return;
                }
                self.state = SessionState::Closing;
                self.close_reason = Some(CloseReason::Local {
                    code,
                    reason: reason.to_owned(),
                });
                self.close_deadline = Some(now + self.config.close_linger);
                // Answer at most a few late frames (authenticated ones only,
                // so this never answers an unvalidated address) with a
                // reasonless CLOSE of 50 bytes.
                self.close_frame_allowance = 8;
            }
        }
    }

    fn send_control(&mut self, control: &Control, now: Instant) {
        let Some(keys) = &mut self.keys else { return };
        // Sealed where it will wait: at the end of the control queue.
        let start = self.control.begin_frame();
        control.encode(&mut self.control.buf);
        let header = Header {
            frame_type: FrameType::Control,
            flags: Flags::EMPTY,
            session_id: self.id,
            stream_id: 0,
            packet_number: 0,
            payload_len: 0,
        };
        let sealed = keys.send.seal(&mut self.control.buf, start, header);
        if sealed.is_err() {
            self.control.buf.truncate(start);
        }
        match sealed {
            Ok(_) => {
                self.control.end_datagram();
                self.sent(self.control.buf.len() - start, now);
                self.probe_key_update(now);
            }
            // Nothing can be sealed any more, not even a CLOSE: the peer
            // learns of the end through its idle timeout.
            Err(CryptoError::PacketNumbersExhausted) => {
                self.terminate(CloseReason::PacketNumbersExhausted)
            }
            Err(CryptoError::KeyExhausted) => self.terminate(CloseReason::KeyExhausted),
            // A control message is far below the frame limit.
            Err(_) => {}
        }
    }

    fn send_close_frame(&mut self, code: u16, reason: &str, now: Instant) {
        // The CLOSE must fit one datagram of the path: cut the reason to fit
        // (on a char boundary) rather than lose the frame.
        let room = self
            .config
            .max_datagram_size
            .map_or(MAX_REASON_LEN, |size| {
                size.saturating_sub(DATA_OVERHEAD + CLOSE_FIXED_LEN)
            })
            .min(MAX_REASON_LEN);
        let mut end = reason.len().min(room);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        self.send_control(
            &Control::Close {
                code,
                reason: reason[..end].to_owned(),
            },
            now,
        );
    }

    /// Queues a datagram for the caller.
    fn queue(&mut self, datagram: &[u8], now: Instant) {
        self.control.push(datagram);
        self.sent(datagram.len(), now);
    }

    /// Counts a datagram of `len` bytes queued at `now`.
    fn sent(&mut self, len: usize, now: Instant) {
        self.stats.bytes_sent += len as u64;
        self.stats.frames_sent += 1;
        self.last_send = now;
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
        self.events.push_back((Event::Closed { reason }, 0));
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

/// Two sessions in memory, through the handshake to both established (the
/// session layer's unit tests start from it).
#[cfg(test)]
pub(crate) fn established_pair_for_test(config: SessionConfig) -> (Session, Session, Instant) {
    use crate::crypto::{Identity, NetworkKey};
    let network = NetworkKey::from_seed(&[7u8; 32]).unwrap();
    let alice = Identity::from_seed(&[1u8; 32]).unwrap();
    let bob = Identity::from_seed(&[2u8; 32]).unwrap();
    let now = Instant::now();
    let mut client = Session::connect(config.clone(), &alice, &network, SessionId(1), now).unwrap();
    let msg1 = client.poll_transmit().unwrap();
    let mut server = Session::accept(config, &bob, &network, &msg1, now).unwrap();
    let mut msg2 = server.poll_transmit().unwrap();
    client.handle_datagram(now, &mut msg2).unwrap();
    let mut msg3 = client.poll_transmit().unwrap();
    server.handle_datagram(now, &mut msg3).unwrap();
    assert!(client.is_established() && server.is_established());
    (client, server, now)
}
