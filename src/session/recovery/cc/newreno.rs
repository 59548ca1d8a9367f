//! NewReno (RFC 9002 §7): slow start, congestion avoidance by one datagram per window, halving on loss.

use std::time::Instant;

use super::{
    datagram_size, in_recovery, initial_window, minimum_window, rescale_windows, Controller,
};
use crate::session::recovery::rtt::RttEstimator;

/// RFC 9002 §7.3.2 kLossReductionFactor: the window is halved on loss.
const LOSS_REDUCTION_FACTOR: (usize, usize) = (1, 2);

/// The NewReno controller of RFC 9002 §7 and Appendix B, with the window in
/// bytes and congestion avoidance counted in bytes acknowledged
/// (Appropriate Byte Counting, RFC 3465).
#[derive(Debug, Clone)]
pub struct NewReno {
    max_datagram_size: usize,
    window: usize,
    /// Slow-start threshold; `usize::MAX` until the first loss.
    ssthresh: usize,
    /// Bytes acknowledged in congestion avoidance since the window last grew.
    bytes_acked: usize,
    /// When the current (or last) recovery period began.
    recovery_start: Option<Instant>,
}

impl NewReno {
    /// A controller in slow start with the RFC 9002 initial window.
    pub fn new(_now: Instant, max_datagram_size: usize) -> Self {
        let mds = datagram_size(max_datagram_size);
        Self {
            max_datagram_size: mds,
            window: initial_window(mds),
            ssthresh: usize::MAX,
            bytes_acked: 0,
            recovery_start: None,
        }
    }

    /// The slow-start threshold, once a loss has set one.
    pub fn ssthresh(&self) -> Option<usize> {
        (self.ssthresh != usize::MAX).then_some(self.ssthresh)
    }

    /// Whether the window still grows by every byte acknowledged.
    pub fn in_slow_start(&self) -> bool {
        self.window < self.ssthresh
    }

    fn minimum_window(&self) -> usize {
        minimum_window(self.max_datagram_size)
    }
}

impl Controller for NewReno {
    fn on_sent(&mut self, _now: Instant, _bytes: usize, _in_flight: usize) {}

    fn on_ack(
        &mut self,
        _now: Instant,
        sent: Instant,
        bytes: usize,
        app_limited: bool,
        _rtt: &RttEstimator,
    ) {
        // RFC 9002 B.5: no growth in recovery, nor when the window was not
        // what limited the sender.
        if in_recovery(self.recovery_start, sent) || app_limited {
            return;
        }
        if self.window < self.ssthresh {
            self.window = self.window.saturating_add(bytes);
            if self.window >= self.ssthresh {
                // The bytes past the threshold already count towards the
                // first avoidance increment.
                self.bytes_acked = self.window - self.ssthresh;
            }
            return;
        }
        self.bytes_acked = self.bytes_acked.saturating_add(bytes);
        if self.bytes_acked >= self.window {
            self.bytes_acked -= self.window;
            self.window = self.window.saturating_add(self.max_datagram_size);
        }
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        persistent: bool,
        _lost_bytes: usize,
    ) {
        if !in_recovery(self.recovery_start, sent) {
            // One reduction per recovery period (RFC 9002 B.6).
            self.recovery_start = Some(now);
            let (num, den) = LOSS_REDUCTION_FACTOR;
            self.ssthresh = (self.window / den * num).max(self.minimum_window());
            self.window = self.ssthresh;
            self.bytes_acked = 0;
        }
        if persistent {
            // RFC 9002 B.8: collapse, and end recovery so that the next
            // acknowledgements regrow the window in slow start.
            self.window = self.minimum_window();
            self.bytes_acked = 0;
            self.recovery_start = None;
        }
    }

    fn on_mtu_update(&mut self, max_datagram_size: usize) {
        let old = self.max_datagram_size;
        self.max_datagram_size = datagram_size(max_datagram_size);
        rescale_windows(
            &mut self.window,
            &mut self.ssthresh,
            old,
            self.max_datagram_size,
        );
    }

    fn window(&self) -> usize {
        self.window
    }

    fn name(&self) -> &'static str {
        "newreno"
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::session::recovery::cc::testing::{ack_round, rtt_of};

    const MDS: usize = 1200;
    const RTT: Duration = Duration::from_millis(50);

    #[test]
    fn initial_window_follows_rfc_9002() {
        let now = Instant::now();
        assert_eq!(NewReno::new(now, 1200).window(), 12_000);
        assert_eq!(NewReno::new(now, 1500).window(), 14_720);
        assert_eq!(NewReno::new(now, 9000).window(), 18_000);
    }

    #[test]
    fn slow_start_doubles_per_round_trip() {
        let mut t = Instant::now();
        let mut cc = NewReno::new(t, MDS);
        let mut expected = 12_000;
        for _ in 0..5 {
            assert_eq!(cc.window(), expected);
            t = ack_round(&mut cc, t, RTT, MDS, false);
            expected *= 2;
        }
        assert_eq!(cc.window(), 12_000 * 32);
        assert!(cc.in_slow_start());
    }

    #[test]
    fn loss_halves_once_per_recovery_period() {
        let t0 = Instant::now();
        let mut cc = NewReno::new(t0, MDS);
        let t1 = ack_round(&mut cc, t0, RTT, MDS, false);
        assert_eq!(cc.window(), 24_000);

        // Loss of a packet sent in the last round, declared at t1.
        cc.on_congestion_event(t1, t1 - RTT / 2, false, MDS);
        assert_eq!(cc.window(), 12_000);
        assert_eq!(cc.ssthresh(), Some(12_000));
        // More losses of packets sent before recovery began: no new cut.
        cc.on_congestion_event(t1 + RTT / 4, t1, false, MDS);
        cc.on_congestion_event(t1 + RTT / 2, t1 - RTT, false, MDS);
        assert_eq!(cc.window(), 12_000);
        // Acks of packets sent before recovery began do not grow it.
        let est = rtt_of(RTT);
        cc.on_ack(t1 + RTT / 2, t1 - RTT / 4, MDS, false, &est);
        assert_eq!(cc.window(), 12_000);

        // A packet sent after recovery began is acknowledged: recovery is
        // over, and the next loss of a later packet cuts again.
        let t2 = t1 + Duration::from_millis(1);
        cc.on_ack(t2 + RTT, t2, MDS, false, &est);
        cc.on_congestion_event(t2 + 2 * RTT, t2 + RTT, false, MDS);
        assert_eq!(cc.window(), 6_000);
        // Halving stops at the minimum window.
        for i in 3..10u32 {
            let at = t0 + RTT * 10 * i;
            cc.on_congestion_event(at, at - Duration::from_millis(1), false, MDS);
        }
        assert_eq!(cc.window(), 2 * MDS);
    }

    #[test]
    fn avoidance_grows_one_datagram_per_round_trip() {
        let t0 = Instant::now();
        let mut cc = NewReno::new(t0, MDS);
        let mut t = ack_round(&mut cc, t0, RTT, MDS, false);
        t = ack_round(&mut cc, t, RTT, MDS, false);
        assert_eq!(cc.window(), 48_000);
        cc.on_congestion_event(t, t - RTT / 2, false, MDS);
        assert_eq!(cc.window(), 24_000);
        assert!(!cc.in_slow_start());
        t += Duration::from_micros(1);
        for round in 1..=20 {
            t = ack_round(&mut cc, t, RTT, MDS, false);
            assert_eq!(cc.window(), 24_000 + round * MDS, "round {round}");
        }
    }

    #[test]
    fn app_limited_acks_do_not_grow() {
        let mut t = Instant::now();
        let mut cc = NewReno::new(t, MDS);
        for _ in 0..3 {
            t = ack_round(&mut cc, t, RTT, MDS, true);
        }
        assert_eq!(cc.window(), 12_000);
        cc.on_congestion_event(t, t - RTT / 2, false, MDS);
        t += Duration::from_micros(1);
        for _ in 0..3 {
            t = ack_round(&mut cc, t, RTT, MDS, true);
        }
        assert_eq!(cc.window(), 6_000);
    }

    #[test]
    fn persistent_congestion_collapses_to_the_minimum() {
        let mut t = Instant::now();
        let mut cc = NewReno::new(t, MDS);
        for _ in 0..4 {
            t = ack_round(&mut cc, t, RTT, MDS, false);
        }
        assert_eq!(cc.window(), 192_000);
        cc.on_congestion_event(t, t - RTT / 2, true, 20 * MDS);
        assert_eq!(cc.window(), 2 * MDS);
        assert_eq!(cc.ssthresh(), Some(96_000));
        // Recovery is over: the next round regrows in slow start.
        t += Duration::from_micros(1);
        ack_round(&mut cc, t, RTT, MDS, false);
        assert_eq!(cc.window(), 4 * MDS);
        assert!(cc.in_slow_start());
    }

    #[test]
    fn mtu_update_rescales_the_initial_window_and_keeps_a_grown_one() {
        let t = Instant::now();
        let mut cc = NewReno::new(t, MDS);
        cc.on_mtu_update(1452);
        assert_eq!(cc.window(), 14_520);
        ack_round(&mut cc, t, RTT, 1452, false);
        assert_eq!(cc.window(), 29_040);
        cc.on_mtu_update(1200);
        assert_eq!(cc.window(), 29_040);
        // The minimum window follows the datagram size.
        cc.on_congestion_event(t + RTT * 2, t + RTT, true, 1200);
        assert_eq!(cc.window(), 2_400);
        cc.on_mtu_update(9000);
        assert_eq!(cc.window(), 18_000);
    }
}
