//! Channels over a session ([`Channels`]), sans-IO: messages queued per
//! channel with a [`Delivery`] mode, packed into CHANNEL packets under
//! congestion control, pacing, flow control and the path's datagram size;
//! acknowledgements and loss recovery; delivery in each mode's order.
//!
//! The session seals what [`Channels::poll_packet`] writes and feeds
//! [`Channels::on_packet`] the plaintext of every CHANNEL frame it opens;
//! it asks [`Channels::poll_timeout`] when to call
//! [`Channels::handle_timeout`].

mod config;
mod incoming;
mod outgoing;
mod stats;
#[cfg(test)]
mod tests;

pub use crate::frame::chunk::Delivery;
pub use config::{
    ChannelConfig, ChannelConfigError, SendPolicy, DEFAULT_CHANNELS, RELIABLE_ORDERED,
    RELIABLE_UNORDERED, UNRELIABLE, UNRELIABLE_SEQUENCED,
};
pub use incoming::{ChannelError, Delivered, IncomingStats};
pub use outgoing::{OutgoingStats, Refused};
pub use stats::ChannelStats;

use std::time::{Duration, Instant};

use crate::frame::chunk::{write_flow_credit, write_ping, Chunk, Chunks};
use crate::frame::{FrameError, HEADER_LEN, TAG_LEN};
use crate::stream::MemoryBudget;

use super::recovery::acks::AckTracker;
use super::recovery::pacer::Pacer;
use super::recovery::pmtu::Pmtud;
use super::recovery::sent::Retransmit;
use super::recovery::{AckError, Outcome, Recovery, Sending, TimeoutAction};
use incoming::{Incoming, IncomingLimits, Taken};
use outgoing::Outgoing;

/// Reliable messages of one channel in flight at most: a receiver refuses a
/// sequence number this far beyond the oldest it still waits for.
pub const MAX_SEQ_WINDOW: u64 = 1 << 16;
/// Credit every receiver grants before its first FLOW_CREDIT: room for one
/// message of the largest size and a little more.
pub const INITIAL_CREDIT: u64 = (16 << 20) + (1 << 20);
/// Plaintext room of a packet on a stream path (WebSocket).
const STREAM_PACKET: usize = 64 * 1024;

/// Why a CHANNEL packet was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PacketError {
    /// A chunk does not parse.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// An acknowledgement that cannot be right.
    #[error(transparent)]
    Ack(#[from] AckError),
    /// A message broke a channel rule (mode, size, window, credit).
    #[error(transparent)]
    Channel(#[from] ChannelError),
}

/// Channels of one session: both directions.
#[derive(Debug)]
pub struct Channels {
    config: ChannelConfig,
    out: Outgoing,
    inc: Incoming,
    acks: AckTracker,
    recovery: Recovery,
    pacer: Pacer,
    pmtu: Pmtud,
    /// Plaintext room of a full packet; `None` on a stream path.
    datagram: Option<usize>,
    /// Probe packets owed after a probe timeout.
    probes: u8,
    /// The credit must be sent (again).
    credit_pending: bool,
    /// When pacing lets the next packet go.
    paced_until: Option<Instant>,
    outcome: Outcome,
    retransmit_scratch: Vec<Retransmit>,
    /// Messages that arrived but were not yet taken.
    delivered: std::collections::VecDeque<Delivered>,
    /// The latest time any call brought.
    now: Instant,
    /// A message was queued at some point.
    used: bool,
}

impl Channels {
    /// Channels for a session established at `now`; `datagram_size` is the
    /// path's largest datagram (`None` on a stream path); `rtt` the
    /// handshake's round trip, if measured.
    pub fn new(
        config: ChannelConfig,
        now: Instant,
        datagram_size: Option<usize>,
        rtt: Option<Duration>,
        budget: Option<MemoryBudget>,
    ) -> Self {
        let pmtu = path_mtu(&config, now, datagram_size);
        let mds = pmtu.current();
        let initial_rtt = rtt.unwrap_or(config.initial_rtt);
        let recovery = Recovery::new(
            now,
            initial_rtt,
            config.max_ack_delay,
            config.congestion.build(now, mds),
        );
        let limits = IncomingLimits {
            max_message_size: config.max_message_size,
            window: config.recv_window,
            unreliable_bytes: config.unreliable_reassembly_bytes,
            unreliable_messages: config.unreliable_reassembly_messages,
            unreliable_timeout: config.unreliable_reassembly_timeout,
        };
        Self {
            out: Outgoing::new(config.send_buffer, INITIAL_CREDIT),
            inc: Incoming::new(limits, INITIAL_CREDIT, budget),
            acks: AckTracker::new(config.max_ack_delay, config.ack_frequency),
            recovery,
            pacer: Pacer::new(now, mds),
            pmtu,
            datagram: datagram_size.map(|_| mds),
            probes: 0,
            credit_pending: false,
            paced_until: None,
            outcome: Outcome::default(),
            retransmit_scratch: Vec::new(),
            delivered: std::collections::VecDeque::new(),
            now,
            used: false,
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ChannelConfig {
        &self.config
    }

    /// Queues `payload` on `channel` (mode from the configuration) with
    /// message type `msg_type`. `policy` says what a full send buffer does.
    pub fn send(
        &mut self,
        now: Instant,
        channel: u8,
        msg_type: u8,
        payload: Vec<u8>,
        policy: SendPolicy,
    ) -> Result<(), SendRefused> {
        let delivery = self
            .config
            .delivery(channel)
            .ok_or(SendRefused::UnknownChannel(channel))?;
        if payload.len() > self.config.max_message_size {
            return Err(SendRefused::TooLarge {
                len: payload.len(),
                max: self.config.max_message_size,
            });
        }
        self.used = true;
        self.out
            .push(now, channel, delivery, msg_type, payload, policy)
            .map_err(|Refused::Full| SendRefused::Full)
    }

    /// Whether a message of `len` bytes would be queued now.
    pub fn has_room(&self, len: usize) -> bool {
        self.out.has_room(len)
    }

    /// Plaintext bytes of a full packet now.
    fn capacity(&self) -> usize {
        match self.datagram {
            Some(_) => self.pmtu.current() - HEADER_LEN - TAG_LEN,
            None => STREAM_PACKET,
        }
    }

    /// The datagram size packets are built for.
    pub fn datagram_size(&self) -> usize {
        self.pmtu.current()
    }

    /// Writes the plaintext of the next packet to send now into `out`, for
    /// packet number `pn`, if anything is due: acknowledgements, credit,
    /// data the congestion window and pacing allow, a probe. Returns the
    /// sealed size it will have; the caller must seal and send it.
    pub fn poll_packet(&mut self, now: Instant, pn: u64, out: &mut Vec<u8>) -> Option<usize> {
        self.now = self.now.max(now);
        let stream = self.datagram.is_none();
        let mut capacity = self.capacity();
        let mut mtu_probe = false;
        // Only a session whose channels carry messages probes its path: one
        // that sends none (or only raw datagrams) sends no channel packet.
        if !stream && self.probes == 0 && self.used {
            if let Some(size) = self.pmtu.poll_probe(now) {
                if self.recovery.fits_window(size) {
                    capacity = size - HEADER_LEN - TAG_LEN;
                    mtu_probe = true;
                }
            }
        }
        let full = capacity + HEADER_LEN + TAG_LEN;
        let probing = self.probes > 0;
        let window_ok = stream || probing || self.recovery.fits_window(full);
        let pending = self.out.has_pending();
        let mut data_ok = pending && window_ok;
        if data_ok && !stream && !probing && self.config.pacing {
            let rtt = self.recovery.rtt().smoothed();
            let window = self.recovery.window();
            let rate = self.recovery.controller().pacing_rate();
            match self.pacer.delay(now, full, window, rtt, rate) {
                Some(t) if t > now => {
                    self.paced_until = Some(t);
                    data_ok = false;
                }
                _ => self.paced_until = None,
            }
        }
        if !pending && window_ok && !mtu_probe {
            self.recovery.on_app_limited();
        }
        if let Some(c) = self.inc.credit_update() {
            let _ = c;
            self.credit_pending = true;
        }
        let ack_now = self.acks.ack_due(now) || (self.acks.has_news() && (data_ok || probing));
        if !(data_ok || ack_now || self.credit_pending || probing || mtu_probe) {
            return None;
        }
        let start = out.len();
        let ack_largest = if ack_now || self.acks.has_news() {
            self.acks.write(now, out)
        } else {
            None
        };
        let mut retransmit = std::mem::take(&mut self.retransmit_scratch);
        retransmit.clear();
        let mut unreliable = Vec::new();
        if self.credit_pending {
            write_flow_credit(out, self.inc.advertised());
            retransmit.push(Retransmit::FlowCredit);
            self.credit_pending = false;
        }
        if data_ok || probing {
            let room = capacity.saturating_sub(out.len() - start);
            self.out
                .fill(now, out, room, capacity, &mut retransmit, &mut unreliable);
        }
        let written = out.len() - start;
        let mut eliciting = !retransmit.is_empty() || !unreliable.is_empty();
        if (probing || mtu_probe) && !eliciting {
            write_ping(out);
            eliciting = true;
        }
        if mtu_probe {
            crate::frame::chunk::write_padding(out, start + capacity);
        }
        if out.len() == start {
            self.retransmit_scratch = retransmit;
            return None;
        }
        let _ = written;
        let size = out.len() - start + HEADER_LEN + TAG_LEN;
        if probing {
            self.probes -= 1;
        }
        if eliciting {
            if !stream {
                self.pacer.on_sent(size);
            }
            if mtu_probe {
                self.pmtu.on_probe_sent(pn, size);
            }
            self.recovery.on_sent(
                now,
                Sending {
                    pn,
                    size,
                    ack_eliciting: true,
                    mtu_probe,
                    ack_largest,
                    retransmit,
                    unreliable,
                },
            );
        } else {
            self.retransmit_scratch = retransmit;
        }
        Some(size)
    }

    /// Takes the plaintext of a CHANNEL frame with packet number `pn`.
    /// `max_sent` is the highest packet number this side has sealed.
    /// Complete messages wait in [`poll_delivered`](Self::poll_delivered).
    pub fn on_packet(
        &mut self,
        now: Instant,
        pn: u64,
        plaintext: &[u8],
        max_sent: Option<u64>,
    ) -> Result<(), PacketError> {
        self.now = self.now.max(now);
        let mut eliciting = false;
        let mut acknowledge = true;
        for chunk in Chunks::new(plaintext) {
            match chunk? {
                Chunk::Padding(_) => {}
                Chunk::Ack(ack) => {
                    let mut outcome = std::mem::take(&mut self.outcome);
                    let result = self.recovery.on_ack(now, &ack, max_sent, &mut outcome);
                    self.settle(now, &mut outcome);
                    self.outcome = outcome;
                    result?;
                }
                Chunk::Msg(m) => {
                    eliciting = true;
                    let delivered = &mut self.delivered;
                    let taken = self.inc.on_msg(now, &m, &mut |d| delivered.push_back(d))?;
                    if taken == Taken::NoMemory {
                        acknowledge = false;
                    }
                }
                Chunk::FlowCredit { max_data } => {
                    eliciting = true;
                    self.out.on_credit(max_data);
                }
                Chunk::Ping => eliciting = true,
            }
        }
        if acknowledge {
            self.acks.on_packet(now, pn, eliciting);
        }
        Ok(())
    }

    /// Applies what recovery found: acknowledged parts are released, lost
    /// ones queued again, the path MTU search told.
    fn settle(&mut self, now: Instant, outcome: &mut Outcome) {
        for p in outcome.acked.drain(..) {
            self.out.on_acked(&p.retransmit);
            if let Some(l) = p.ack_largest {
                self.acks.on_ack_acked(l);
            }
            self.pmtu.on_acked(p.pn, p.size, now);
        }
        for p in outcome.lost.drain(..) {
            self.out.on_lost(&p.retransmit, &p.unreliable);
            if p.retransmit.contains(&Retransmit::FlowCredit) {
                self.credit_pending = true;
            }
            self.pmtu.on_lost(p.pn, p.size, now);
        }
        // A probe acknowledged (or a black hole found) changed the size:
        // the controller and the pacer learn it.
        let mtu = self.pmtu.current();
        if self.datagram.is_some_and(|d| d != mtu) {
            self.recovery.on_mtu_update(mtu);
            self.pacer.on_mtu_update(mtu);
            self.datagram = Some(mtu);
        }
    }

    /// The next message that arrived, in its channel's order.
    pub fn poll_delivered(&mut self) -> Option<Delivered> {
        self.delivered.pop_front()
    }

    /// The application took a message that carried `credit` reliable bytes
    /// ([`Delivered::credit`]): they leave the flow-control window.
    pub fn release(&mut self, credit: u64) {
        if credit > 0 {
            self.inc.consumed(credit);
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must next be called
    /// (or, for what is due at once, [`poll_packet`](Self::poll_packet)).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let now = self.now;
        let mut t = self.recovery.poll_timeout();
        let mut at = |x: Option<Instant>| {
            if let Some(x) = x {
                t = Some(t.map_or(x, |t| t.min(x)));
            }
        };
        at(self.acks.poll_timeout());
        at(self.inc.poll_timeout());
        if self.datagram.is_some() {
            // A probe already due goes with the next packet the window
            // allows; only a future search needs the timer.
            at(self.pmtu.poll_timeout().filter(|&p| p > now));
        }
        if self.out.has_pending() {
            at(self.paced_until.filter(|&p| p > now));
        }
        if self.acks.ack_due(now) || self.probes > 0 || self.credit_pending {
            at(Some(now));
        }
        t
    }

    /// Runs the timers due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = self.now.max(now);
        let mut outcome = std::mem::take(&mut self.outcome);
        let action = self.recovery.on_timeout(now, &mut outcome);
        self.settle(now, &mut outcome);
        self.outcome = outcome;
        if let TimeoutAction::Probe(n) = action {
            self.probes = n;
            if let Some(p) = self.recovery.oldest_unacked() {
                let parts = p.retransmit.clone();
                self.out.requeue_for_probe(&parts);
            }
        }
        self.inc.handle_timeout(now);
    }

    /// The session moved to another path (address or transport):
    /// everything in flight is sent again on it, with a fresh round-trip
    /// estimate and congestion window. Nothing acknowledged is sent twice;
    /// the receiver drops any copy that both paths deliver.
    pub fn on_path_change(&mut self, now: Instant, datagram_size: Option<usize>) {
        self.pmtu = path_mtu(&self.config, now, datagram_size);
        let mds = self.pmtu.current();
        self.datagram = datagram_size.map(|_| mds);
        let mut outcome = std::mem::take(&mut self.outcome);
        let rtt = self.config.initial_rtt;
        let cc = self.config.congestion.build(now, mds);
        self.recovery.reset_path(now, rtt, cc, &mut outcome);
        for p in outcome.lost.drain(..) {
            self.out.on_lost(&[], &p.unreliable);
            if p.retransmit.contains(&Retransmit::FlowCredit) {
                self.credit_pending = true;
            }
        }
        outcome.clear();
        self.outcome = outcome;
        self.out.requeue_all_sent();
        self.pacer = Pacer::new(now, mds);
        self.paced_until = None;
        self.probes = 0;
    }

    /// Reliable bytes held for the application.
    pub fn recv_held(&self) -> u64 {
        self.inc.held()
    }

    /// Bytes held by the send buffer (queued, or sent and unacknowledged).
    pub fn send_held(&self) -> usize {
        self.out.held()
    }

    /// Draws reliable receive memory from `budget` from now on (call it
    /// while nothing is held).
    pub fn set_budget(&mut self, budget: MemoryBudget) {
        self.inc.set_budget(budget);
    }

    /// Whether anything is waiting to be sent.
    pub fn has_pending(&self) -> bool {
        self.out.has_pending()
    }

    /// Reliable messages not yet acknowledged plus queued messages: zero
    /// once everything sent has arrived.
    pub fn unfinished(&self) -> usize {
        self.out.unacked_messages() + usize::from(self.out.has_pending())
    }

    /// The latest time a call brought.
    pub fn last_seen(&self) -> Instant {
        self.now
    }

    /// Statistics.
    pub fn stats(&self, now: Instant) -> ChannelStats {
        ChannelStats::collect(self, now)
    }
}

/// Path MTU discovery for a path whose datagrams hold `datagram_size`
/// bytes at most (`None`: a stream path, no discovery): from the base size
/// up to it, or that size alone when it is at or below the base.
fn path_mtu(config: &ChannelConfig, now: Instant, datagram_size: Option<usize>) -> Pmtud {
    match datagram_size {
        Some(max) if config.pmtu_discovery && max > config.pmtu.base => {
            let mut c = config.pmtu.clone();
            c.max = max;
            Pmtud::new(c, now)
        }
        Some(size) => Pmtud::disabled(size),
        None => Pmtud::disabled(STREAM_PACKET + HEADER_LEN + TAG_LEN),
    }
}

/// Why [`Channels::send`] did not queue a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SendRefused {
    /// The send buffer is full: wait for acknowledgements.
    #[error("send buffer full")]
    Full,
    /// A channel number the configuration does not list.
    #[error("channel {0} is not configured")]
    UnknownChannel(u8),
    /// Larger than the largest message.
    #[error("message of {len} bytes above the {max}-byte limit")]
    TooLarge {
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
}
