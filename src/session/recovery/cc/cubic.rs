//! CUBIC (RFC 9438): window growth as a cubic function of the time since the last congestion event, with the Reno-friendly region.

use std::time::{Duration, Instant};

use super::{
    datagram_size, in_recovery, initial_window, minimum_window, rescale_windows, Controller,
};
use crate::session::recovery::rtt::RttEstimator;

/// RFC 9438 §4.2 C, in segments per second cubed.
const C: f64 = 0.4;
/// RFC 9438 §4.6 β_cubic, the multiplicative decrease factor.
const BETA: f64 = 0.7;
/// RFC 9438 §4.3 α_cubic: the additive increase that makes CUBIC as
/// aggressive as Reno (AIMD with β = 0.5) on average.
const ALPHA: f64 = 3.0 * (1.0 - BETA) / (1.0 + BETA);
/// A ceiling for the window, far above any real path, so that the floating
/// point arithmetic stays exact and finite.
const MAX_WINDOW: usize = 1 << 40;

/// The CUBIC controller of RFC 9438, with the window in bytes and the
/// recovery-period rule of RFC 9002 §7.3.2.
#[derive(Debug, Clone)]
pub struct Cubic {
    max_datagram_size: usize,
    window: usize,
    /// Slow-start threshold; `usize::MAX` until the first loss.
    ssthresh: usize,
    /// When the current (or last) recovery period began.
    recovery_start: Option<Instant>,
    /// W_max in bytes: the window just before the last reduction (lowered by
    /// fast convergence). Zero before any congestion event.
    w_max: f64,
    /// cwnd_prior in bytes: the window just before the last reduction.
    cwnd_prior: f64,
    /// Set by persistent congestion: the next avoidance stage starts its
    /// curve at its own window (RFC 9438 §4.8).
    reset_w_max: bool,
    /// The current congestion-avoidance stage, once its first
    /// acknowledgement arrived.
    epoch: Option<Epoch>,
    /// When the sender became application-limited in this stage; the time
    /// until it is not is kept out of the curve's `t` (RFC 9438 §5.8).
    app_limited_since: Option<Instant>,
    /// Fractions of a byte of growth not yet added to the window.
    credit: f64,
}

/// One congestion-avoidance stage (RFC 9438 §4.2).
#[derive(Debug, Clone, Copy)]
struct Epoch {
    /// t_epoch, moved later by the time spent application-limited.
    start: Instant,
    /// K in seconds: when the curve reaches W_max again.
    k: f64,
    /// W_est in bytes, the Reno-friendly estimate.
    w_est: f64,
    /// α_cubic for W_est: 1 once W_est reached cwnd_prior.
    alpha: f64,
}

impl Cubic {
    /// A controller in slow start with the RFC 9002 initial window.
    pub fn new(_now: Instant, max_datagram_size: usize) -> Self {
        let mds = datagram_size(max_datagram_size);
        Self {
            max_datagram_size: mds,
            window: initial_window(mds),
            ssthresh: usize::MAX,
            recovery_start: None,
            w_max: 0.0,
            cwnd_prior: 0.0,
            reset_w_max: false,
            epoch: None,
            app_limited_since: None,
            credit: 0.0,
        }
    }

    /// The slow-start threshold, once a loss has set one.
    pub fn ssthresh(&self) -> Option<usize> {
        (self.ssthresh != usize::MAX).then_some(self.ssthresh)
    }

    /// W_max in bytes: the window the cubic curve plateaus at (zero before
    /// the first congestion event).
    pub fn w_max(&self) -> usize {
        self.w_max as usize
    }

    /// K, the time from the start of the current congestion-avoidance stage
    /// until the curve is back at W_max; `None` outside avoidance.
    pub fn k(&self) -> Option<Duration> {
        self.epoch
            .map(|e| Duration::try_from_secs_f64(e.k).unwrap_or(Duration::MAX))
    }

    fn minimum_window(&self) -> usize {
        minimum_window(self.max_datagram_size)
    }

    /// W_cubic(t) in bytes (RFC 9438 Eq. 1), `t` in seconds.
    fn w_cubic(&self, k: f64, t: f64) -> f64 {
        let mds = self.max_datagram_size as f64;
        (C * (t - k).powi(3) * mds + self.w_max).clamp(0.0, MAX_WINDOW as f64)
    }

    /// Starts a congestion-avoidance stage at `now` from the current window.
    fn start_epoch(&mut self, now: Instant) -> Epoch {
        let cwnd = self.window as f64;
        if self.reset_w_max || self.w_max == 0.0 {
            // After persistent congestion (or an exit from slow start without
            // a loss) the curve starts flat at the current window: K = 0.
            self.w_max = cwnd;
            self.cwnd_prior = cwnd;
            self.reset_w_max = false;
        }
        let segments = ((self.w_max - cwnd) / self.max_datagram_size as f64).max(0.0);
        let epoch = Epoch {
            start: now,
            k: (segments / C).cbrt(),
            w_est: cwnd,
            alpha: if cwnd >= self.cwnd_prior { 1.0 } else { ALPHA },
        };
        self.epoch = Some(epoch);
        epoch
    }

    fn grow(&mut self, bytes: f64) {
        self.credit += bytes.max(0.0);
        let whole = self.credit.floor();
        self.credit -= whole;
        self.window = self
            .window
            .saturating_add(whole.min(MAX_WINDOW as f64) as usize)
            .min(MAX_WINDOW);
    }

    fn congestion_avoidance(&mut self, now: Instant, bytes: usize, rtt: &RttEstimator) {
        let mut epoch = match self.epoch {
            Some(epoch) => epoch,
            None => self.start_epoch(now),
        };
        if let Some(since) = self.app_limited_since.take() {
            let paused = now.saturating_duration_since(since);
            epoch.start = epoch.start.checked_add(paused).unwrap_or(now).min(now);
        }
        let cwnd = self.window as f64;
        let acked = bytes as f64;
        let mds = self.max_datagram_size as f64;
        let t = now.saturating_duration_since(epoch.start).as_secs_f64();

        // RFC 9438 §4.3: W_est grows by α_cubic segments per window acked.
        epoch.w_est = (epoch.w_est + epoch.alpha * mds * acked / cwnd).min(MAX_WINDOW as f64);
        if epoch.w_est >= self.cwnd_prior {
            epoch.alpha = 1.0;
        }
        self.epoch = Some(epoch);

        if self.w_cubic(epoch.k, t) < epoch.w_est {
            // Reno-friendly region: follow W_est.
            let target = epoch.w_est.max(cwnd);
            self.grow(target - cwnd);
        } else {
            // Concave and convex regions (RFC 9438 §4.4, §4.5): aim at where
            // the curve is one round trip from now, at most 1.5 × cwnd.
            let ahead = t + rtt.smoothed().as_secs_f64();
            let target = self.w_cubic(epoch.k, ahead).clamp(cwnd, 1.5 * cwnd);
            self.grow((target - cwnd) * acked / cwnd);
        }
    }
}

impl Controller for Cubic {
    fn on_sent(&mut self, _now: Instant, _bytes: usize, _in_flight: usize) {}

    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: usize,
        app_limited: bool,
        rtt: &RttEstimator,
    ) {
        if in_recovery(self.recovery_start, sent) {
            return;
        }
        if app_limited {
            // RFC 9438 §5.8: no growth, and the curve's clock stops.
            if self.epoch.is_some() && self.app_limited_since.is_none() {
                self.app_limited_since = Some(now);
            }
            return;
        }
        if self.window < self.ssthresh {
            self.window = self.window.saturating_add(bytes).min(MAX_WINDOW);
            return;
        }
        self.congestion_avoidance(now, bytes, rtt);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        persistent: bool,
        _lost_bytes: usize,
    ) {
        if !in_recovery(self.recovery_start, sent) {
            self.recovery_start = Some(now);
            let cwnd = self.window as f64;
            // Fast convergence (RFC 9438 §4.7): a flow whose window did not
            // reach the last W_max releases bandwidth to newer flows.
            self.w_max = if cwnd < self.w_max {
                cwnd * (1.0 + BETA) / 2.0
            } else {
                cwnd
            };
            self.cwnd_prior = cwnd;
            self.ssthresh = ((cwnd * BETA) as usize).max(self.minimum_window());
            self.window = self.ssthresh;
            self.epoch = None;
            self.app_limited_since = None;
            self.credit = 0.0;
        }
        if persistent {
            // RFC 9438 §4.8 and RFC 9002 §7.6.2: collapse, regrow in slow
            // start up to ssthresh, then start a fresh curve.
            self.window = self.minimum_window();
            self.recovery_start = None;
            self.reset_w_max = true;
            self.epoch = None;
            self.app_limited_since = None;
            self.credit = 0.0;
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
        "cubic"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::recovery::cc::testing::ack_round;

    const MDS: usize = 1000;
    /// The RFC's constants, written out so that the tests check the code's.
    const RFC_C: f64 = 0.4;
    const RFC_BETA: f64 = 0.7;
    /// α_cubic = 3(1 − β)/(1 + β).
    const RFC_ALPHA: f64 = 3.0 * (1.0 - RFC_BETA) / (1.0 + RFC_BETA);

    /// Slow start for `rounds` rounds, then a loss declared at the returned
    /// time (the next round starts just after it).
    fn grown_then_lost(rounds: usize, rtt: Duration) -> (Cubic, Instant) {
        let mut t = Instant::now();
        let mut cc = Cubic::new(t, MDS);
        for _ in 0..rounds {
            t = ack_round(&mut cc, t, rtt, MDS, false);
        }
        cc.on_congestion_event(t, t - rtt / 2, false, MDS);
        (cc, t + Duration::from_micros(1))
    }

    /// RFC 9438 Eq. 1 in segments.
    fn w_cubic(w_max: f64, k: f64, t: f64) -> f64 {
        RFC_C * (t - k).powi(3) + w_max
    }

    #[test]
    fn loss_reduces_to_beta_times_w_max_once_per_recovery() {
        let (mut cc, t) = grown_then_lost(4, Duration::from_millis(100));
        assert_eq!(cc.w_max(), 160_000);
        assert_eq!(cc.window(), 112_000);
        assert_eq!(cc.ssthresh(), Some(112_000));
        cc.on_congestion_event(t, t - Duration::from_millis(50), false, MDS);
        assert_eq!(cc.window(), 112_000);
    }

    #[test]
    fn window_follows_the_cubic_curve_to_w_max_at_k() {
        let rtt = Duration::from_millis(100);
        let (mut cc, mut t) = grown_then_lost(4, rtt);
        // The first round after the loss starts the stage at its first ack.
        let epoch = t + rtt;
        let k = (160.0 * (1.0 - RFC_BETA) / RFC_C).cbrt();
        let mut checked = 0;
        let mut at_k = None;
        let mut above = None;
        for _ in 0..80 {
            t = ack_round(&mut cc, t, rtt, MDS, false);
            assert!((cc.k().unwrap().as_secs_f64() - k).abs() < 1e-9);
            // The window at the end of a round has aimed one round trip ahead
            // of the round's acks: compare to the curve at the last ack.
            let at = (t + rtt).duration_since(epoch).as_secs_f64();
            let expected = w_cubic(160.0, k, at);
            let window = cc.window() as f64 / MDS as f64;
            if (0.5..=7.0).contains(&at) {
                assert!(
                    (window - expected).abs() < 0.25,
                    "t = {at:.2}: window {window:.2}, curve {expected:.2}"
                );
                checked += 1;
            }
            if (at - k).abs() <= 0.05 {
                at_k = Some(window);
            }
            if above.is_none() && window > 160.1 {
                above = Some(at);
            }
        }
        assert!(checked > 60);
        // At K the window is back at W_max, and only then grows beyond it.
        let at_k = at_k.expect("a round ends near K");
        assert!((at_k - 160.0).abs() < 0.1, "window at K {at_k:.2}");
        let above = above.expect("the window grows past W_max");
        assert!(
            above > k && above < k + 1.0,
            "above W_max at {above:.2}, K = {k:.2}"
        );
        // Past K the convex curve is ahead of a Reno flow's 112 + 80 α_cubic.
        let reno = 112.0 + 80.0 * RFC_ALPHA;
        assert!(
            cc.window() as f64 / MDS as f64 > reno + 10.0,
            "{}",
            cc.window()
        );
    }

    #[test]
    fn fast_convergence_lowers_w_max() {
        let rtt = Duration::from_millis(100);
        let (mut cc, mut t) = grown_then_lost(4, rtt);
        for _ in 0..5 {
            t = ack_round(&mut cc, t, rtt, MDS, false);
        }
        let window = cc.window();
        assert!(window < 160_000);
        cc.on_congestion_event(t, t - rtt / 2, false, MDS);
        let expected = window as f64 * (1.0 + RFC_BETA) / 2.0;
        assert!((cc.w_max() as f64 - expected).abs() <= 1.0);
        assert_eq!(cc.window(), (window as f64 * RFC_BETA) as usize);
    }

    #[test]
    fn reno_friendly_region_dominates_at_small_rtt() {
        // W_max of 20 segments over 1 ms: the curve barely moves in 100 ms,
        // while a Reno flow gains about a segment per round trip.
        let rtt = Duration::from_millis(1);
        let mut t = Instant::now();
        let mut cc = Cubic::new(t, MDS);
        t = ack_round(&mut cc, t, rtt, MDS, false);
        cc.on_congestion_event(t, t - rtt / 2, false, MDS);
        t += Duration::from_micros(1);
        assert_eq!((cc.w_max(), cc.window()), (20_000, 14_000));
        let epoch = t + rtt;
        // W_est grows by α_cubic per round trip up to cwnd_prior (20) …
        for _ in 0..10 {
            t = ack_round(&mut cc, t, rtt, MDS, false);
        }
        let window = cc.window() as f64 / MDS as f64;
        let reno = 14.0 + 10.0 * RFC_ALPHA;
        assert!(
            (window - reno).abs() < 0.3,
            "window {window:.2}, reno {reno:.2}"
        );
        // … then by one segment per round trip.
        for _ in 10..100 {
            t = ack_round(&mut cc, t, rtt, MDS, false);
        }
        let at = t.duration_since(epoch).as_secs_f64();
        let k = (20.0 * (1.0 - RFC_BETA) / RFC_C).cbrt();
        assert!(w_cubic(20.0, k, at) < 20.0);
        let reno = 20.0 + (100.0 - (20.0 - 14.0) / RFC_ALPHA);
        let window = cc.window() as f64 / MDS as f64;
        assert!(
            (window - reno).abs() < 0.03 * reno,
            "window {window:.1}, reno {reno:.1}"
        );

        // A window eight times larger over 100 ms follows the curve, well
        // above the Reno estimate.
        let rtt = Duration::from_millis(100);
        let (mut cc, mut t) = grown_then_lost(4, rtt);
        let epoch = t + rtt;
        for _ in 0..10 {
            t = ack_round(&mut cc, t, rtt, MDS, false);
        }
        let at = t.duration_since(epoch).as_secs_f64();
        let k = (160.0 * (1.0 - RFC_BETA) / RFC_C).cbrt();
        let cubic = w_cubic(160.0, k, at);
        let reno = 112.0 + RFC_ALPHA * 10.0;
        let window = cc.window() as f64 / MDS as f64;
        assert!(
            (window - cubic).abs() < 3.0,
            "window {window:.1}, cubic {cubic:.1}"
        );
        assert!(window > reno + 15.0, "window {window:.1}, reno {reno:.1}");
    }

    #[test]
    fn app_limited_time_does_not_count() {
        let rtt = Duration::from_millis(100);
        let (mut cc, mut t) = grown_then_lost(4, rtt);
        t = ack_round(&mut cc, t, rtt, MDS, false);
        let before = cc.window();
        // Ten seconds application-limited: no growth at all.
        for _ in 0..100 {
            t = ack_round(&mut cc, t, rtt, MDS, true);
        }
        assert_eq!(cc.window(), before);
        // Then one round window-limited: the curve continues from where it
        // stopped (near 112 segments), not from t = 10 s (far above W_max).
        ack_round(&mut cc, t, rtt, MDS, false);
        let window = cc.window();
        assert!(
            window > before && window < before + 5 * MDS,
            "{before} -> {window}"
        );
    }

    #[test]
    fn persistent_congestion_collapses_and_restarts_the_curve() {
        let rtt = Duration::from_millis(100);
        let mut t = Instant::now();
        let mut cc = Cubic::new(t, MDS);
        for _ in 0..4 {
            t = ack_round(&mut cc, t, rtt, MDS, false);
        }
        cc.on_congestion_event(t, t - rtt / 2, true, 40 * MDS);
        assert_eq!(cc.window(), 2 * MDS);
        assert_eq!(cc.ssthresh(), Some(112_000));
        // Slow start back to ssthresh: 2, 4, ... 64 segments in 5 rounds; in
        // the sixth it reaches ssthresh, and the avoidance stage that starts
        // there has a flat curve at that window: K = 0.
        t += Duration::from_micros(1);
        for _ in 0..5 {
            t = ack_round(&mut cc, t, rtt, MDS, false);
        }
        assert_eq!(cc.window(), 64_000);
        assert_eq!(cc.k(), None);
        ack_round(&mut cc, t, rtt, MDS, false);
        assert_eq!(cc.k(), Some(Duration::ZERO));
        assert_eq!(cc.w_max(), 112_000);
        assert!((112_000..113_000).contains(&cc.window()), "{}", cc.window());
    }
}
