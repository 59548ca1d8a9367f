//! Loss recovery after RFC 9002 for a session's channel packets
//! ([`Recovery`]): sent packets, acknowledgement processing, packet- and
//! time-threshold loss detection, probe timeouts, persistent congestion,
//! delivery-rate samples; and the parts it drives: the round-trip estimate,
//! congestion control, pacing and path MTU discovery.

pub mod acks;
pub mod cc;
pub mod pacer;
pub mod pmtu;
pub mod ranges;
pub mod rtt;
pub mod sent;

use std::time::{Duration, Instant};

use crate::frame::chunk::AckChunk;

use cc::{Controller, RateSample};
use rtt::RttEstimator;
use sent::{Retransmit, SentPacket, SentPackets, UnreliablePart};

/// Packets a later acknowledgement must pass before an older one counts as
/// lost (RFC 9002 kPacketThreshold).
pub const PACKET_THRESHOLD: u64 = 3;
/// Timer granularity (RFC 9002 kGranularity).
pub const GRANULARITY: Duration = Duration::from_millis(1);
/// Probe timeouts without an acknowledgement spanned by lost packets that
/// make persistent congestion (RFC 9002 kPersistentCongestionThreshold).
pub const PERSISTENT_CONGESTION_THRESHOLD: u32 = 3;
/// Largest probe-timeout backoff exponent.
const MAX_PTO_BACKOFF: u32 = 10;

/// An acknowledgement that cannot be right.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AckError {
    /// It acknowledges a packet number never sent.
    #[error("acknowledgement of packet {largest}, above the highest sent ({sent:?})")]
    Unsent {
        /// The largest acknowledged.
        largest: u64,
        /// The highest packet number sent, if any.
        sent: Option<u64>,
    },
}

/// Counters of the recovery.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecoveryStats {
    /// Channel packets sent.
    pub packets_sent: u64,
    /// Channel packets declared lost.
    pub packets_lost: u64,
    /// Bytes of them.
    pub bytes_lost: u64,
    /// Bytes acknowledged.
    pub bytes_acked: u64,
    /// Congestion events (window reductions).
    pub congestion_events: u64,
    /// Probe timeouts fired.
    pub probe_timeouts: u64,
}

/// What an acknowledgement or a timer found: packets acknowledged and lost,
/// in packet-number order. The caller drains both.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Newly acknowledged packets.
    pub acked: Vec<SentPacket>,
    /// Packets declared lost.
    pub lost: Vec<SentPacket>,
}

impl Outcome {
    /// Empties both lists, keeping their memory.
    pub fn clear(&mut self) {
        self.acked.clear();
        self.lost.clear();
    }
}

/// What the caller must do after [`Recovery::on_timeout`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeoutAction {
    /// Nothing beyond handling the lost packets in the outcome.
    None,
    /// A probe timeout fired: send this many ack-eliciting packets now,
    /// whatever the congestion window (RFC 9002 §6.2.4).
    Probe(u8),
}

/// A packet about to be recorded by [`Recovery::on_sent`].
#[derive(Debug, Clone)]
pub struct Sending {
    /// Packet number.
    pub pn: u64,
    /// Sealed size on the wire.
    pub size: usize,
    /// Carries something besides ACK and padding.
    pub ack_eliciting: bool,
    /// A path MTU probe.
    pub mtu_probe: bool,
    /// The largest packet number its ACK chunk acknowledged.
    pub ack_largest: Option<u64>,
    /// What to resend if it is lost.
    pub retransmit: Vec<Retransmit>,
    /// Unreliable messages it carried parts of.
    pub unreliable: Vec<UnreliablePart>,
}

/// The sender's view of the path: what is in flight, the round trip, the
/// congestion window and when to look again.
#[derive(Debug)]
pub struct Recovery {
    sent: SentPackets,
    in_flight: usize,
    largest_sent: Option<u64>,
    largest_acked: Option<u64>,
    loss_time: Option<Instant>,
    pto_count: u32,
    last_eliciting_sent: Option<Instant>,
    first_sample_at: Option<Instant>,
    rtt: RttEstimator,
    cc: Box<dyn Controller>,
    peer_max_ack_delay: Duration,
    delivered: u64,
    delivered_time: Instant,
    first_sent_time: Instant,
    /// While non-zero: the application left the window unused; samples
    /// until this many bytes are delivered are application-limited.
    app_limited_until: u64,
    latest_rate: u64,
    stats: RecoveryStats,
}

impl Recovery {
    /// A sender with nothing in flight, assuming `initial_rtt`, steered by
    /// `cc`; the peer holds acknowledgements back at most
    /// `peer_max_ack_delay`.
    pub fn new(
        now: Instant,
        initial_rtt: Duration,
        peer_max_ack_delay: Duration,
        cc: Box<dyn Controller>,
    ) -> Self {
        Self {
            sent: SentPackets::default(),
            in_flight: 0,
            largest_sent: None,
            largest_acked: None,
            loss_time: None,
            pto_count: 0,
            last_eliciting_sent: None,
            first_sample_at: None,
            rtt: RttEstimator::new(initial_rtt),
            cc,
            peer_max_ack_delay,
            delivered: 0,
            delivered_time: now,
            first_sent_time: now,
            app_limited_until: 0,
            latest_rate: 0,
            stats: RecoveryStats::default(),
        }
    }

    /// The round-trip estimate.
    pub fn rtt(&self) -> &RttEstimator {
        &self.rtt
    }

    /// The congestion controller.
    pub fn controller(&self) -> &dyn Controller {
        self.cc.as_ref()
    }

    /// Bytes of ack-eliciting packets in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Packets outstanding.
    pub fn outstanding(&self) -> usize {
        self.sent.len()
    }

    /// The congestion window.
    pub fn window(&self) -> usize {
        self.cc.window()
    }

    /// Whether a packet of `bytes` fits the congestion window.
    pub fn fits_window(&self, bytes: usize) -> bool {
        // With nothing in flight one packet always goes, whatever the
        // window: nothing else would ever open it again.
        self.in_flight == 0 || self.in_flight + bytes <= self.cc.window()
    }

    /// The latest delivery-rate sample, bytes per second.
    pub fn delivery_rate(&self) -> u64 {
        self.latest_rate
    }

    /// Counters.
    pub fn stats(&self) -> RecoveryStats {
        self.stats
    }

    /// The application had nothing to send while the window had room:
    /// samples until what is in flight is delivered are
    /// application-limited, and the window does not grow on them.
    pub fn on_app_limited(&mut self) {
        self.app_limited_until = (self.delivered + self.in_flight as u64).max(1);
    }

    /// Tells the controller about a new datagram size.
    pub fn on_mtu_update(&mut self, max_datagram_size: usize) {
        self.cc.on_mtu_update(max_datagram_size);
    }

    /// The probe timeout without backoff.
    pub fn pto(&self) -> Duration {
        self.rtt.pto_base() + self.peer_max_ack_delay
    }

    /// Records a packet that leaves now.
    pub fn on_sent(&mut self, now: Instant, s: Sending) {
        self.stats.packets_sent += 1;
        self.largest_sent = Some(s.pn);
        if s.ack_eliciting {
            if self.sent.is_empty() {
                // Nothing in flight: a new sampling interval starts here.
                self.first_sent_time = now;
                self.delivered_time = now;
            }
            self.in_flight += s.size;
            self.last_eliciting_sent = Some(now);
            self.cc.on_sent(now, s.size, self.in_flight);
        }
        let app_limited = self.app_limited_until != 0;
        self.sent.push(SentPacket {
            pn: s.pn,
            time: now,
            size: s.size,
            ack_eliciting: s.ack_eliciting,
            mtu_probe: s.mtu_probe,
            ack_largest: s.ack_largest,
            app_limited,
            delivered: self.delivered,
            delivered_time: self.delivered_time,
            first_sent_time: self.first_sent_time,
            retransmit: s.retransmit,
            unreliable: s.unreliable,
            done: false,
        });
    }

    /// Processes an ACK chunk received at `now`; `max_pn` is the highest
    /// packet number this side has sealed (control packets included).
    pub fn on_ack(
        &mut self,
        now: Instant,
        ack: &AckChunk<'_>,
        max_pn: Option<u64>,
        out: &mut Outcome,
    ) -> Result<(), AckError> {
        if max_pn.is_none_or(|m| ack.largest > m) {
            return Err(AckError::Unsent {
                largest: ack.largest,
                sent: max_pn,
            });
        }
        let first_new = out.acked.len();
        for (lo, hi) in ack.ranges() {
            let mut i = self.sent.index_at_or_above(lo);
            while i < self.sent.slots() {
                match self.sent.get_live(i) {
                    Some(p) if p.pn > hi => break,
                    Some(_) => out.acked.extend(self.sent.take(i)),
                    None => {}
                }
                i += 1;
            }
        }
        if out.acked.len() == first_new {
            return Ok(());
        }
        // Ranges come largest first: put this acknowledgement's packets in
        // packet-number order.
        out.acked[first_new..].sort_unstable_by_key(|p| p.pn);
        self.largest_acked = Some(
            self.largest_acked
                .map_or(ack.largest, |l| l.max(ack.largest)),
        );
        if let Some(newest) = out.acked.last() {
            if newest.pn == ack.largest && newest.ack_eliciting {
                let delay = Duration::from_micros(ack.delay_us).min(self.peer_max_ack_delay);
                self.rtt
                    .update(delay, now.saturating_duration_since(newest.time));
                self.first_sample_at.get_or_insert(now);
            }
        }
        // The window grows only while it is used (after RFC 7661): what is
        // acknowledged with less than half of it in flight says nothing
        // about a larger one.
        let under_used = self.in_flight < self.cc.window() / 2;
        let mut sample_from: Option<usize> = None;
        for i in first_new..out.acked.len() {
            let p = &out.acked[i];
            if p.ack_eliciting {
                self.in_flight = self.in_flight.saturating_sub(p.size);
            }
            self.stats.bytes_acked += p.size as u64;
            self.delivered += p.size as u64;
            self.delivered_time = now;
            if sample_from.is_none_or(|j| out.acked[j].delivered <= p.delivered) {
                sample_from = Some(i);
            }
            if p.ack_eliciting {
                let limited = p.app_limited || under_used;
                self.cc.on_ack(now, p.time, p.size, limited, &self.rtt);
            }
        }
        if let Some(i) = sample_from {
            self.rate_sample(now, &out.acked[i]);
        }
        if self.app_limited_until != 0 && self.delivered > self.app_limited_until {
            self.app_limited_until = 0;
        }
        self.pto_count = 0;
        self.detect_lost(now, out);
        self.sent.trim();
        Ok(())
    }

    fn rate_sample(&mut self, now: Instant, p: &SentPacket) {
        let send_elapsed = p.time.saturating_duration_since(p.first_sent_time);
        let ack_elapsed = self
            .delivered_time
            .saturating_duration_since(p.delivered_time);
        self.first_sent_time = p.time;
        let interval = send_elapsed.max(ack_elapsed);
        // Shorter than the minimum round trip: compressed acknowledgements,
        // not a rate the path can sustain.
        if interval.is_zero() || interval < self.rtt.min() {
            return;
        }
        let delivered = self.delivered - p.delivered;
        let rate = (u128::from(delivered) * 1_000_000_000 / interval.as_nanos().max(1)) as u64;
        if !p.app_limited || rate > self.latest_rate {
            self.latest_rate = rate;
        }
        let sample = RateSample {
            delivery_rate: rate,
            rtt: now.saturating_duration_since(p.time),
            app_limited: p.app_limited,
            delivered: self.delivered,
            prior_delivered: p.delivered,
        };
        self.cc.on_rate_sample(now, &sample);
    }

    /// Declares lost what the thresholds say is, into `out.lost`, and
    /// tells the controller.
    fn detect_lost(&mut self, now: Instant, out: &mut Outcome) {
        self.loss_time = None;
        let Some(largest) = self.largest_acked else {
            return;
        };
        let loss_delay = (self.rtt.latest().max(self.rtt.smoothed()) * 9 / 8).max(GRANULARITY);
        let lost_before = now.checked_sub(loss_delay);
        let first_lost = out.lost.len();
        let end = self.sent.index_at_or_above(largest);
        for i in 0..end {
            let Some(p) = self.sent.get_live(i) else {
                continue;
            };
            let by_time = lost_before.is_some_and(|t| p.time <= t);
            if by_time || largest >= p.pn + PACKET_THRESHOLD {
                out.lost.extend(self.sent.take(i));
            } else {
                let at = p.time + loss_delay;
                self.loss_time = Some(self.loss_time.map_or(at, |t| t.min(at)));
            }
        }
        self.on_lost(now, first_lost, out);
    }

    fn on_lost(&mut self, now: Instant, first_lost: usize, out: &Outcome) {
        let lost = &out.lost[first_lost..];
        if lost.is_empty() {
            return;
        }
        let mut newest: Option<Instant> = None;
        let mut oldest: Option<Instant> = None;
        let mut bytes = 0;
        for p in lost {
            self.stats.packets_lost += 1;
            self.stats.bytes_lost += p.size as u64;
            if p.ack_eliciting {
                self.in_flight = self.in_flight.saturating_sub(p.size);
            }
            // A lost MTU probe says the size is too large, not that the
            // path is congested.
            if p.mtu_probe || !p.ack_eliciting {
                continue;
            }
            bytes += p.size;
            newest = Some(newest.map_or(p.time, |t: Instant| t.max(p.time)));
            oldest = Some(oldest.map_or(p.time, |t: Instant| t.min(p.time)));
        }
        let (Some(newest), Some(oldest)) = (newest, oldest) else {
            return;
        };
        let span = self.pto() * PERSISTENT_CONGESTION_THRESHOLD;
        let persistent = self.first_sample_at.is_some_and(|t| t < oldest)
            && newest.saturating_duration_since(oldest) > span;
        self.stats.congestion_events += 1;
        self.cc.on_congestion_event(now, newest, persistent, bytes);
    }

    /// When [`on_timeout`](Self::on_timeout) must next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if let Some(t) = self.loss_time {
            return Some(t);
        }
        if self.in_flight == 0 {
            return None;
        }
        let last = self.last_eliciting_sent?;
        Some(last + self.pto() * (1 << self.pto_count.min(MAX_PTO_BACKOFF)))
    }

    /// Runs the loss timer or the probe timeout, if due.
    pub fn on_timeout(&mut self, now: Instant, out: &mut Outcome) -> TimeoutAction {
        if self.loss_time.is_some_and(|t| now >= t) {
            self.detect_lost(now, out);
            self.sent.trim();
            return TimeoutAction::None;
        }
        match self.poll_timeout() {
            Some(t) if now >= t => {
                self.pto_count = (self.pto_count + 1).min(MAX_PTO_BACKOFF);
                self.stats.probe_timeouts += 1;
                TimeoutAction::Probe(2)
            }
            _ => TimeoutAction::None,
        }
    }

    /// What the oldest outstanding ack-eliciting packet carried, to resend
    /// in a probe (it stays outstanding).
    pub fn oldest_unacked(&self) -> Option<&SentPacket> {
        self.sent.oldest_eliciting()
    }

    /// Forgets every packet in flight as lost (the path is gone), into
    /// `out.lost`, without a congestion event: the caller resends what
    /// they carried on the new path.
    pub fn abandon_all(&mut self, out: &mut Outcome) {
        for i in 0..self.sent.slots() {
            out.lost.extend(self.sent.take(i));
        }
        self.sent.trim();
        self.in_flight = 0;
        self.loss_time = None;
        self.pto_count = 0;
    }

    /// Starts over on a new path: a fresh round-trip estimate and
    /// controller; what is in flight is abandoned (see
    /// [`abandon_all`](Self::abandon_all)).
    pub fn reset_path(
        &mut self,
        now: Instant,
        initial_rtt: Duration,
        cc: Box<dyn Controller>,
        out: &mut Outcome,
    ) {
        self.abandon_all(out);
        self.rtt = RttEstimator::new(initial_rtt);
        self.cc = cc;
        self.first_sample_at = None;
        self.delivered_time = now;
        self.first_sent_time = now;
        self.app_limited_until = 0;
        self.latest_rate = 0;
    }
}

#[cfg(test)]
mod tests;
