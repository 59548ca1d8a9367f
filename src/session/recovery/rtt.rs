//! Round-trip time estimation after RFC 9002 §5: the latest, minimum and
//! smoothed round trip and its variation, from acknowledgement samples.

use std::time::Duration;

/// Round-trip estimate used by loss detection, probe timeouts, congestion
/// control and pacing.
#[derive(Debug, Clone, Copy)]
pub struct RttEstimator {
    latest: Duration,
    smoothed: Duration,
    variance: Duration,
    min: Duration,
    /// Whether a sample has been taken (before that, `smoothed` is the
    /// initial estimate).
    sampled: bool,
}

impl RttEstimator {
    /// An estimator that assumes `initial` until the first sample
    /// (RFC 9002 §6.2.2: 333 ms when nothing better is known).
    pub fn new(initial: Duration) -> Self {
        Self {
            latest: initial,
            smoothed: initial,
            variance: initial / 2,
            min: initial,
            sampled: false,
        }
    }

    /// Takes a sample: `rtt` measured from sending a packet to its first
    /// acknowledgement, of which the peer says it held the acknowledgement
    /// back for `ack_delay` (capped by the caller at the peer's maximum).
    pub fn update(&mut self, ack_delay: Duration, rtt: Duration) {
        self.latest = rtt;
        if !self.sampled {
            self.sampled = true;
            self.min = rtt;
            self.smoothed = rtt;
            self.variance = rtt / 2;
            return;
        }
        self.min = self.min.min(rtt);
        // The peer's delay is subtracted only when it leaves at least the
        // minimum (RFC 9002 §5.3): a lying or confused peer cannot push the
        // estimate below what was observed.
        let adjusted = if rtt >= self.min + ack_delay {
            rtt - ack_delay
        } else {
            rtt
        };
        self.variance = (self.variance * 3 + self.smoothed.abs_diff(adjusted)) / 4;
        self.smoothed = (self.smoothed * 7 + adjusted) / 8;
    }

    /// The smoothed round trip.
    pub fn smoothed(&self) -> Duration {
        self.smoothed
    }

    /// The round-trip variation.
    pub fn variance(&self) -> Duration {
        self.variance
    }

    /// The smallest sample (the initial estimate before any).
    pub fn min(&self) -> Duration {
        self.min
    }

    /// The latest sample (the initial estimate before any).
    pub fn latest(&self) -> Duration {
        self.latest
    }

    /// Whether any sample has been taken.
    pub fn has_sample(&self) -> bool {
        self.sampled
    }

    /// The probe timeout's base (RFC 9002 §6.2.1), without the peer's
    /// maximum acknowledgement delay: smoothed + max(4 × variation, 1 ms).
    pub fn pto_base(&self) -> Duration {
        self.smoothed + (self.variance * 4).max(Duration::from_millis(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn first_sample_sets_everything() {
        let mut r = RttEstimator::new(333 * MS);
        assert!(!r.has_sample());
        r.update(Duration::ZERO, 100 * MS);
        assert_eq!(
            (r.smoothed(), r.variance(), r.min()),
            (100 * MS, 50 * MS, 100 * MS)
        );
    }

    #[test]
    fn ack_delay_is_subtracted_only_above_the_minimum() {
        let mut r = RttEstimator::new(333 * MS);
        r.update(Duration::ZERO, 100 * MS);
        // 120 - 10 = 110 >= min: adjusted.
        r.update(10 * MS, 120 * MS);
        assert_eq!(r.smoothed(), (100 * MS * 7 + 110 * MS) / 8);
        // A claimed delay that would go below the minimum is ignored.
        let before = r.smoothed();
        r.update(50 * MS, 100 * MS);
        assert_eq!(r.smoothed(), (before * 7 + 100 * MS) / 8);
        assert_eq!(r.min(), 100 * MS);
    }

    #[test]
    fn converges_to_a_steady_round_trip() {
        let mut r = RttEstimator::new(333 * MS);
        for _ in 0..100 {
            r.update(Duration::ZERO, 20 * MS);
        }
        assert!(r.smoothed().abs_diff(20 * MS) < MS / 10);
        assert!(r.variance() < MS);
        assert!(r.pto_base() >= 21 * MS);
    }
}
