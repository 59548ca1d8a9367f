//! Pacing: spreads a congestion window over the round trip, in bursts no larger than a GSO batch.

use std::time::{Duration, Instant};

/// Without a rate from the controller, the window is spread over
/// `smoothed_rtt / 1.25` (RFC 9002 §7.7, N = 1.25): pacing then smooths the
/// bursts without becoming the limit itself.
const WINDOW_GAIN: (u128, u128) = (5, 4);
/// A burst carries this much traffic on fast paths: bursts much shorter than
/// the timer's resolution would leave the sender unable to keep the rate.
const TARGET_BURST_INTERVAL: Duration = Duration::from_millis(2);
/// Never more than this much traffic in one burst: on slow paths a full GSO
/// batch would be a long queue spike.
const MAX_BURST_INTERVAL: Duration = Duration::from_millis(10);
/// A burst is at least one GSO batch of this many datagrams (when that is
/// within [`MAX_BURST_INTERVAL`]) …
const BATCH_DATAGRAMS: u64 = 10;
/// … and never fewer than this many, whatever the rate.
const MIN_BURST_DATAGRAMS: u64 = 2;
/// At most this many datagrams in a burst (four full GSO sends): more per
/// wake-up gains nothing and fills queues.
const MAX_BURST_DATAGRAMS: u64 = 256;
/// Rates from here up (about 9 Tbit/s, beyond any interface) are not paced:
/// the window is effectively unlimited.
const UNPACED_RATE: u64 = 1 << 40;
const NANOS_PER_SEC: u128 = 1_000_000_000;

/// A token bucket that spaces a session's packets: it refills at the pacing
/// rate and holds at most one burst.
///
/// Call [`delay`](Self::delay) before a packet leaves, and
/// [`on_sent`](Self::on_sent) when it did. Allocation-free and sans-IO: time
/// comes only from the `now` arguments.
#[derive(Debug, Clone)]
pub struct Pacer {
    max_datagram_size: u64,
    /// Bytes that may leave at once.
    capacity: u64,
    tokens: u64,
    /// When `tokens` was last brought up to date.
    refilled: Instant,
    /// The rate of the last [`delay`](Self::delay) call; zero when pacing
    /// did not apply.
    rate: u64,
}

impl Pacer {
    /// A pacer with a full bucket of one GSO batch.
    pub fn new(now: Instant, max_datagram_size: usize) -> Self {
        let mds = max_datagram_size.max(1) as u64;
        let capacity = mds.saturating_mul(BATCH_DATAGRAMS);
        Self {
            max_datagram_size: mds,
            capacity,
            tokens: capacity,
            refilled: now,
            rate: 0,
        }
    }

    /// Earliest time a packet of `bytes` may leave; `None` means now.
    ///
    /// `rate` is the controller's pacing rate in bytes per second if it has
    /// one; otherwise `window` is spread over `smoothed_rtt` with a gain of
    /// 1.25. A zero round trip or an enormous window does not pace at all.
    pub fn delay(
        &mut self,
        now: Instant,
        bytes: usize,
        window: usize,
        smoothed_rtt: Duration,
        rate: Option<u64>,
    ) -> Option<Instant> {
        let Some(rate) = pacing_rate(window, smoothed_rtt, rate) else {
            // Unpaced: when pacing resumes, the bucket starts full.
            self.rate = 0;
            return None;
        };
        if rate != self.rate {
            self.capacity = burst_capacity(rate, self.max_datagram_size);
            self.tokens = if self.rate == 0 {
                self.capacity
            } else {
                self.tokens.min(self.capacity)
            };
            if self.rate == 0 {
                self.refilled = now;
            }
            self.rate = rate;
        }
        self.refill(now);

        let bytes = bytes as u64;
        // A packet larger than the bucket leaves when the bucket is full.
        if self.tokens >= bytes.min(self.capacity) {
            return None;
        }
        let missing = u128::from(bytes.min(self.capacity) - self.tokens);
        let nanos = (missing * NANOS_PER_SEC).div_ceil(u128::from(rate));
        now.checked_add(Duration::from_nanos(u64::try_from(nanos).ok()?))
    }

    /// A packet of `bytes` left: spends its tokens.
    pub fn on_sent(&mut self, bytes: usize) {
        self.tokens = self.tokens.saturating_sub(bytes as u64);
    }

    /// The datagram size changed (path MTU discovery): the burst is
    /// recomputed for it.
    pub fn on_mtu_update(&mut self, max_datagram_size: usize) {
        self.max_datagram_size = max_datagram_size.max(1) as u64;
        self.capacity = if self.rate == 0 {
            self.max_datagram_size.saturating_mul(BATCH_DATAGRAMS)
        } else {
            burst_capacity(self.rate, self.max_datagram_size)
        };
        self.tokens = self.tokens.min(self.capacity);
    }

    /// The current pacing rate in bytes per second (zero when pacing does
    /// not apply), for statistics.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The bytes that may currently leave at once.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Adds the tokens earned since the last refill, up to the capacity.
    fn refill(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.refilled).as_nanos();
        let earned = u128::from(self.rate).saturating_mul(elapsed) / NANOS_PER_SEC;
        if earned == 0 {
            return;
        }
        let room = u128::from(self.capacity.saturating_sub(self.tokens));
        if earned >= room {
            self.tokens = self.capacity;
            self.refilled = now;
            return;
        }
        self.tokens += earned as u64;
        // Advance by the time those tokens took, so that the fraction of a
        // token already earned is not lost.
        let spent = earned * NANOS_PER_SEC / u128::from(self.rate);
        self.refilled += Duration::from_nanos(spent as u64);
    }
}

/// The pacing rate in bytes per second, or `None` when pacing should not
/// limit: the controller's own rate if it has one, else 1.25 × window / rtt.
fn pacing_rate(window: usize, smoothed_rtt: Duration, rate: Option<u64>) -> Option<u64> {
    let rate = match rate {
        Some(rate) if rate > 0 => u128::from(rate),
        _ => {
            let rtt = smoothed_rtt.as_nanos();
            if rtt == 0 {
                return None;
            }
            let (num, den) = WINDOW_GAIN;
            (window as u128).saturating_mul(num * NANOS_PER_SEC) / (den * rtt)
        }
    };
    (rate < u128::from(UNPACED_RATE)).then_some(rate.max(1) as u64)
}

/// The burst for `rate`: [`TARGET_BURST_INTERVAL`] of traffic, at least one
/// GSO batch unless that is more than [`MAX_BURST_INTERVAL`] of traffic, at
/// least two datagrams and at most [`MAX_BURST_DATAGRAMS`].
fn burst_capacity(rate: u64, mds: u64) -> u64 {
    let traffic = |interval: Duration| {
        let bytes = u128::from(rate) * interval.as_nanos() / NANOS_PER_SEC;
        u64::try_from(bytes).unwrap_or(u64::MAX)
    };
    let target = traffic(TARGET_BURST_INTERVAL)
        .max(mds.saturating_mul(BATCH_DATAGRAMS))
        .min(mds.saturating_mul(MAX_BURST_DATAGRAMS));
    let ceiling = traffic(MAX_BURST_INTERVAL).max(mds.saturating_mul(MIN_BURST_DATAGRAMS));
    target.min(ceiling)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MDS: usize = 1200;
    const US: Duration = Duration::from_micros(1);

    /// Sends `packets` as early as the pacer lets them; returns their times.
    fn send_paced(
        pacer: &mut Pacer,
        mut now: Instant,
        packets: usize,
        window: usize,
        rtt: Duration,
        rate: Option<u64>,
    ) -> Vec<Instant> {
        let mut times = Vec::with_capacity(packets);
        while times.len() < packets {
            match pacer.delay(now, MDS, window, rtt, rate) {
                None => {
                    pacer.on_sent(MDS);
                    times.push(now);
                }
                Some(at) => {
                    assert!(at > now, "a delay is in the future");
                    now = at;
                }
            }
        }
        times
    }

    fn burst_len(times: &[Instant]) -> usize {
        times.iter().take_while(|t| **t == times[0]).count()
    }

    fn assert_spacing(times: &[Instant], gap: Duration) {
        for w in times.windows(2) {
            let d = w[1] - w[0];
            assert!(d.abs_diff(gap) <= US, "gap {d:?}, expected {gap:?}");
        }
    }

    #[test]
    fn a_burst_then_window_over_rtt_with_gain() {
        // 100 datagrams over 100 ms, × 1.25: 1.5 MB/s, one datagram per 800 µs.
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0, MDS);
        let (window, rtt) = (100 * MDS, Duration::from_millis(100));
        let times = send_paced(&mut pacer, t0, 200, window, rtt, None);
        assert_eq!(pacer.rate(), 1_500_000);
        assert_eq!(pacer.capacity(), 10 * MDS as u64);
        assert_eq!(burst_len(&times), 10);
        assert_spacing(&times[10..], 800 * US);
        assert_eq!(times[199] - t0, 190 * 800 * US);
    }

    #[test]
    fn a_controller_rate_sets_the_spacing() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0, MDS);
        let window = 100 * MDS;
        let rtt = Duration::from_millis(100);
        // 1 MB/s: the burst is 10 ms of traffic (10 000 bytes, 8 datagrams),
        // then one datagram per 1.2 ms, whatever window and rtt say.
        let times = send_paced(&mut pacer, t0, 100, window, rtt, Some(1_000_000));
        assert_eq!(pacer.capacity(), 10_000);
        assert_eq!(burst_len(&times), 8);
        assert_spacing(&times[8..], 1200 * US);
    }

    #[test]
    fn slow_paths_still_burst_two_datagrams() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0, MDS);
        let times = send_paced(&mut pacer, t0, 6, 2 * MDS, Duration::from_secs(1), None);
        assert_eq!(pacer.capacity(), 2 * MDS as u64);
        assert_eq!(burst_len(&times), 2);
        // 3000 B/s: 400 ms per datagram.
        assert_spacing(&times[2..], Duration::from_millis(400));
    }

    #[test]
    fn zero_rtt_huge_windows_and_huge_rates_never_block() {
        let now = Instant::now();
        let mut pacer = Pacer::new(now, MDS);
        for _ in 0..1000 {
            assert_eq!(pacer.delay(now, MDS, 100 * MDS, Duration::ZERO, None), None);
            pacer.on_sent(MDS);
        }
        let rtt = Duration::from_millis(1);
        for _ in 0..1000 {
            assert_eq!(pacer.delay(now, MDS, usize::MAX, rtt, None), None);
            assert_eq!(pacer.delay(now, MDS, MDS, rtt, Some(u64::MAX)), None);
            pacer.on_sent(MDS);
        }
        assert_eq!(pacer.rate(), 0);
    }

    #[test]
    fn microsecond_rtts_give_sub_microsecond_gaps() {
        // Loopback: 12 datagrams over 5 µs is about 3.6 GB/s.
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0, MDS);
        let times = send_paced(&mut pacer, t0, 400, 12 * MDS, 5 * US, None);
        assert_eq!(pacer.rate(), 3_600_000_000);
        assert_eq!(burst_len(&times), 256);
        let gap = times[300] - times[299];
        assert!(gap > Duration::ZERO && gap < US, "{gap:?}");
    }

    #[test]
    fn idle_time_refills_one_burst_only() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0, MDS);
        let (window, rtt) = (100 * MDS, Duration::from_millis(100));
        send_paced(&mut pacer, t0, 50, window, rtt, None);
        let later = t0 + Duration::from_secs(10);
        let times = send_paced(&mut pacer, later, 30, window, rtt, None);
        assert_eq!(burst_len(&times), 10);
        // Time running backwards earns nothing and does not panic.
        assert!(pacer.delay(t0, MDS, window, rtt, None).is_some());
    }

    #[test]
    fn mtu_update_rescales_the_burst() {
        let t0 = Instant::now();
        let mut pacer = Pacer::new(t0, MDS);
        assert_eq!(
            pacer.delay(t0, MDS, 100 * MDS, Duration::from_millis(100), None),
            None
        );
        pacer.on_mtu_update(1500);
        assert_eq!(pacer.capacity(), 15_000);
        pacer.on_mtu_update(600);
        assert_eq!(pacer.capacity(), 6_000);
        let times = send_paced(
            &mut pacer,
            t0,
            20,
            100 * MDS,
            Duration::from_millis(100),
            None,
        );
        assert_eq!(burst_len(&times), 5);
    }

    proptest! {
        /// Any inputs, times out of order included: no panic, and a delay is
        /// never in the past nor more than one burst's worth of time away.
        #[test]
        fn never_panics_nor_waits_absurdly(
            mds in prop_oneof![0..10_000usize, any::<usize>()],
            calls in proptest::collection::vec(
                (0..10_000_000_000u64, any::<usize>(), any::<usize>(), any::<u64>(), any::<Option<u64>>(), any::<bool>()),
                0..100,
            ),
        ) {
            let base = Instant::now();
            let mut pacer = Pacer::new(base, mds);
            for (t, bytes, window, rtt, rate, mtu) in calls {
                let now = base + Duration::from_micros(t);
                if mtu {
                    pacer.on_mtu_update(bytes);
                    continue;
                }
                if let Some(at) = pacer.delay(now, bytes, window, Duration::from_nanos(rtt), rate) {
                    prop_assert!(at > now);
                    let rate = pacer.rate().max(1) as u128;
                    let limit = u128::from(pacer.capacity()) * NANOS_PER_SEC / rate + 1;
                    prop_assert!((at - now).as_nanos() <= limit);
                }
                pacer.on_sent(bytes);
            }
        }
    }
}
