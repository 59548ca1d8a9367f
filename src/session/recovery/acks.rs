//! The receiving side of acknowledgements: which packet numbers arrived,
//! when an ACK is due (RFC 9000 §13.2: every second ack-eliciting packet, at
//! once on a gap, else after the maximum delay), and writing it.

use std::time::{Duration, Instant};

use super::ranges::RangeSet;
use crate::frame::chunk::write_ack;

/// Packet-number ranges kept for acknowledgement; the oldest go first.
const MAX_KEPT_RANGES: usize = 128;

/// Received packet numbers not yet known to be acknowledged to the peer.
#[derive(Debug, Clone)]
pub struct AckTracker {
    received: RangeSet,
    /// When the largest packet number arrived.
    largest_at: Option<Instant>,
    /// Ack-eliciting packets received since the last ACK was written.
    unacked_eliciting: u32,
    /// Something arrived since the last ACK was written.
    dirty: bool,
    /// An ACK must go at once (a gap, or enough ack-eliciting packets).
    immediate: bool,
    /// When a delayed ACK is due.
    deadline: Option<Instant>,
    max_delay: Duration,
    threshold: u32,
}

impl AckTracker {
    /// A tracker that acknowledges every `threshold` ack-eliciting packets,
    /// holding a lone one back at most `max_delay`.
    pub fn new(max_delay: Duration, threshold: u32) -> Self {
        Self {
            received: RangeSet::new(),
            largest_at: None,
            unacked_eliciting: 0,
            dirty: false,
            immediate: false,
            deadline: None,
            max_delay,
            threshold: threshold.max(1),
        }
    }

    /// Records packet `pn` (authenticated, so never a duplicate).
    pub fn on_packet(&mut self, now: Instant, pn: u64, ack_eliciting: bool) {
        let largest = self.received.max();
        let in_order = largest.is_none_or(|l| pn == l + 1);
        self.received.insert(pn..pn + 1);
        self.received.keep_highest(MAX_KEPT_RANGES);
        if largest.is_none_or(|l| pn > l) {
            self.largest_at = Some(now);
        }
        self.dirty = true;
        if !ack_eliciting {
            return;
        }
        self.unacked_eliciting += 1;
        if !in_order || self.unacked_eliciting >= self.threshold {
            self.immediate = true;
        }
        if self.deadline.is_none() {
            self.deadline = Some(now + self.max_delay);
        }
    }

    /// Whether an ACK must go now (alone if nothing else is sent).
    pub fn ack_due(&self, now: Instant) -> bool {
        self.immediate || self.deadline.is_some_and(|d| now >= d)
    }

    /// Whether an ACK would tell the peer something new (worth adding to a
    /// packet that goes anyway).
    pub fn has_news(&self) -> bool {
        self.dirty
    }

    /// When a delayed ACK falls due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.immediate {
            return None;
        }
        self.deadline
    }

    /// Appends an ACK chunk; returns the largest packet number it
    /// acknowledges (`None` and nothing written when nothing arrived).
    pub fn write(&mut self, now: Instant, out: &mut Vec<u8>) -> Option<u64> {
        let largest = self.received.max()?;
        let delay = self
            .largest_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        write_ack(
            out,
            delay.as_micros().try_into().unwrap_or(u64::MAX),
            self.received.iter().rev().map(|r| (r.start, r.end - 1)),
        );
        self.unacked_eliciting = 0;
        self.dirty = false;
        self.immediate = false;
        self.deadline = None;
        Some(largest)
    }

    /// The peer has received an ACK reaching `largest`: stop repeating what
    /// it covered.
    pub fn on_ack_acked(&mut self, largest: u64) {
        self.received.remove_below(largest.saturating_add(1));
    }

    /// How long an ACK is held back at most.
    pub fn max_delay(&self) -> Duration {
        self.max_delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::chunk::{Chunk, Chunks};

    fn ranges(out: &[u8]) -> Vec<(u64, u64)> {
        match Chunks::new(out).next() {
            Some(Ok(Chunk::Ack(a))) => a.ranges().collect(),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_second_packet_is_acknowledged_at_once() {
        let now = Instant::now();
        let mut t = AckTracker::new(Duration::from_millis(25), 2);
        t.on_packet(now, 0, true);
        assert!(!t.ack_due(now));
        assert_eq!(t.poll_timeout(), Some(now + Duration::from_millis(25)));
        assert!(t.ack_due(now + Duration::from_millis(25)));
        t.on_packet(now, 1, true);
        assert!(t.ack_due(now));
        let mut out = Vec::new();
        assert_eq!(t.write(now, &mut out), Some(1));
        assert_eq!(ranges(&out), [(0, 1)]);
        assert!(!t.ack_due(now) && !t.has_news());
    }

    #[test]
    fn a_gap_is_acknowledged_at_once_and_reported() {
        let now = Instant::now();
        let mut t = AckTracker::new(Duration::from_millis(25), 10);
        t.on_packet(now, 0, true);
        let mut out = Vec::new();
        t.write(now, &mut out);
        t.on_packet(now, 5, true);
        assert!(t.ack_due(now));
        out.clear();
        t.write(now, &mut out);
        assert_eq!(ranges(&out), [(5, 5), (0, 0)]);
        // Once the peer has that ACK, only newer numbers are repeated.
        t.on_ack_acked(5);
        t.on_packet(now, 6, false);
        assert!(!t.ack_due(now) && t.has_news());
        out.clear();
        t.write(now, &mut out);
        assert_eq!(ranges(&out), [(6, 6)]);
    }

    #[test]
    fn ack_delay_is_measured_from_the_largest() {
        let now = Instant::now();
        let mut t = AckTracker::new(Duration::from_millis(25), 2);
        t.on_packet(now, 3, true);
        let mut out = Vec::new();
        t.write(now + Duration::from_millis(7), &mut out);
        let Some(Ok(Chunk::Ack(a))) = Chunks::new(&out).next() else {
            panic!()
        };
        assert_eq!(a.delay_us, 7000);
    }

    #[test]
    fn memory_is_bounded_under_any_pattern() {
        let now = Instant::now();
        let mut t = AckTracker::new(Duration::from_millis(25), 2);
        for pn in (0..100_000).step_by(2) {
            t.on_packet(now, pn, true);
        }
        assert!(t.received.len() <= MAX_KEPT_RANGES);
    }
}
