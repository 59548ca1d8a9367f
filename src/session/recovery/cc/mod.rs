//! Congestion control: the [`Controller`] trait a session's sender consults,
//! the [`Congestion`] choice in the configuration, and the controllers
//! (NewReno, CUBIC, and a model-based one).

use std::fmt;
use std::time::Instant;

use super::rtt::RttEstimator;

mod bbr;
mod cubic;
mod newreno;

pub use bbr::{Bbr, BbrState};
pub use cubic::Cubic;
pub use newreno::NewReno;

/// What a congestion controller learns from the sender, and the window it
/// gives back. Sans-IO: every call carries the time.
pub trait Controller: Send + fmt::Debug {
    /// A packet of `bytes` left at `now`; `in_flight` counts it.
    fn on_sent(&mut self, now: Instant, bytes: usize, in_flight: usize);

    /// A packet of `bytes` sent at `sent` was acknowledged at `now`.
    /// `app_limited` says the sender had nothing more to send when it left
    /// (the window was not the limit, so it must not grow on it).
    fn on_ack(
        &mut self,
        now: Instant,
        sent: Instant,
        bytes: usize,
        app_limited: bool,
        rtt: &RttEstimator,
    );

    /// Packets were declared lost: the newest of them was sent at `sent`,
    /// `lost_bytes` in all. `persistent` is RFC 9002 §7.6 persistent
    /// congestion (collapse to the minimum window).
    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        persistent: bool,
        lost_bytes: usize,
    );

    /// The datagram size changed (path MTU discovery).
    fn on_mtu_update(&mut self, max_datagram_size: usize);

    /// Bytes the sender may have in flight.
    fn window(&self) -> usize;

    /// The controller's own pacing rate in bytes per second, when it has a
    /// model of the path (otherwise the pacer spreads the window over the
    /// smoothed round trip).
    fn pacing_rate(&self) -> Option<u64> {
        None
    }

    /// A delivery-rate sample, taken once per acknowledgement that
    /// acknowledged new data. Controllers without a model ignore it.
    fn on_rate_sample(&mut self, _now: Instant, _sample: &RateSample) {}

    /// The controller's name in statistics.
    fn name(&self) -> &'static str;
}

/// One delivery-rate sample (after draft-cheng-iccrg-delivery-rate-estimation):
/// how fast the path delivered data over the interval that ends with an
/// acknowledgement. Model-based controllers steer by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateSample {
    /// Bytes delivered over the interval, per second.
    pub delivery_rate: u64,
    /// The round trip of the packet whose acknowledgement ends the interval.
    pub rtt: std::time::Duration,
    /// Whether the sender was application-limited when that packet left (the
    /// sample then only bounds the path's rate from below).
    pub app_limited: bool,
    /// Bytes delivered over the whole session so far.
    pub delivered: u64,
    /// Bytes delivered when the packet whose acknowledgement ends the
    /// interval was sent (a round ends when a packet sent after the
    /// previous round's end is acknowledged).
    pub prior_delivered: u64,
}

/// Which congestion controller a session runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Congestion {
    /// NewReno (RFC 9002 §7): halves on loss, one datagram per round trip
    /// in congestion avoidance. Simple, and slow to fill long fat paths.
    NewReno,
    /// CUBIC (RFC 9438): the default, as in Linux; regrows towards the window
    /// of the last loss along a cubic curve of the time since that loss, so
    /// long round trips do not slow it down.
    #[default]
    Cubic,
    /// A model-based controller after BBR v1: paces at the measured
    /// bottleneck rate and keeps about two bandwidth-delay products in
    /// flight. Loss only trims the window for a round trip; it is not the
    /// model's signal: random loss does not slow it down, but neither does
    /// a receiver that cannot keep up (it then keeps losing what it sends;
    /// see `perf/RESULTS.md`, channels).
    Bbr,
}

impl Congestion {
    /// A fresh controller of this kind for a path that carries datagrams of
    /// `max_datagram_size` bytes.
    pub fn build(self, now: Instant, max_datagram_size: usize) -> Box<dyn Controller> {
        match self {
            Self::NewReno => Box::new(NewReno::new(now, max_datagram_size)),
            Self::Cubic => Box::new(Cubic::new(now, max_datagram_size)),
            Self::Bbr => Box::new(Bbr::new(now, max_datagram_size)),
        }
    }
}

/// The window a fresh controller starts with (RFC 9002 §7.2):
/// `min(10 × max_datagram_size, max(14720, 2 × max_datagram_size))`.
pub fn initial_window(max_datagram_size: usize) -> usize {
    let mds = datagram_size(max_datagram_size);
    mds.saturating_mul(10).min(14720.max(mds.saturating_mul(2)))
}

/// The smallest window a loss-based controller shrinks to (RFC 9002 §7.2):
/// two datagrams.
pub fn minimum_window(max_datagram_size: usize) -> usize {
    datagram_size(max_datagram_size).saturating_mul(2)
}

/// After the datagram size changed from `old` to `new`: a window in bytes
/// stays a valid measure of the path, except the untouched initial window,
/// which RFC 9002 §7.2 derives from the size; neither goes below the
/// minimum window (`usize::MAX` is a slow-start threshold not yet set).
fn rescale_windows(window: &mut usize, ssthresh: &mut usize, old: usize, new: usize) {
    if *window == initial_window(old) && *ssthresh == usize::MAX {
        *window = initial_window(new);
    }
    *window = (*window).max(minimum_window(new));
    if *ssthresh != usize::MAX {
        *ssthresh = (*ssthresh).max(minimum_window(new));
    }
}

/// A datagram size the arithmetic can rely on: never zero, so that no window
/// computed from it is zero.
fn datagram_size(max_datagram_size: usize) -> usize {
    max_datagram_size.max(1)
}

/// Whether a packet sent at `sent` belongs to the recovery period that began
/// at `recovery_start` (RFC 9002 §7.3.2): its loss must not reduce the window
/// again, and its acknowledgement must not grow it.
fn in_recovery(recovery_start: Option<Instant>, sent: Instant) -> bool {
    recovery_start.is_some_and(|start| sent <= start)
}

#[cfg(test)]
pub(crate) mod testing {
    //! Flows in virtual time for the controllers' tests: a window-limited,
    //! acknowledgement-clocked one, and one through a bottleneck link.

    use std::collections::VecDeque;
    use std::time::{Duration, Instant};

    use super::{Controller, RateSample};
    use crate::session::recovery::rtt::RttEstimator;

    /// An estimator that has seen exactly `rtt`.
    pub(crate) fn rtt_of(rtt: Duration) -> RttEstimator {
        let mut r = RttEstimator::new(rtt);
        r.update(Duration::ZERO, rtt);
        r
    }

    /// One round trip of a flow that always fills the window: the window of
    /// `start` leaves in datagrams of `mds` spread evenly over `rtt`, and each
    /// is acknowledged one `rtt` after it left. Returns when the next round
    /// starts (`start + rtt`).
    pub(crate) fn ack_round(
        cc: &mut dyn Controller,
        start: Instant,
        rtt: Duration,
        mds: usize,
        app_limited: bool,
    ) -> Instant {
        let est = rtt_of(rtt);
        let packets = (cc.window() / mds).max(1);
        let gap = rtt / packets as u32;
        for i in 0..packets {
            let sent = start + gap * i as u32;
            cc.on_sent(sent, mds, (i + 1) * mds);
        }
        for i in 0..packets {
            let sent = start + gap * i as u32;
            cc.on_ack(sent + rtt, sent, mds, app_limited, &est);
        }
        start + rtt
    }

    /// A packet in flight with what delivery-rate estimation remembers of it.
    struct Packet {
        sent: Instant,
        arrives: Instant,
        delivered: u64,
        delivered_time: Instant,
        first_sent_time: Instant,
    }

    /// One flow through a single bottleneck of `rate` bytes per second with
    /// an unlimited queue and a fixed propagation round trip, advanced in
    /// ticks of 100 µs. The sender is limited by the window and the pacing
    /// rate only; the delivery rate is estimated as in
    /// draft-cheng-iccrg-delivery-rate-estimation.
    pub(crate) struct Bottleneck<C> {
        pub(crate) cc: C,
        pub(crate) in_flight: usize,
        pub(crate) delivered: u64,
        pub(crate) rtt: RttEstimator,
        pub(crate) now: Instant,
        start: Instant,
        mds: usize,
        rate: u64,
        base_rtt: Duration,
        link_free: Instant,
        next_send: Instant,
        flight: VecDeque<Packet>,
        delivered_time: Instant,
        first_sent_time: Instant,
    }

    impl<C: Controller> Bottleneck<C> {
        const TICK: Duration = Duration::from_micros(100);

        pub(crate) fn new(
            cc: C,
            start: Instant,
            mds: usize,
            rate: u64,
            base_rtt: Duration,
        ) -> Self {
            Self {
                cc,
                in_flight: 0,
                delivered: 0,
                rtt: RttEstimator::new(Duration::from_millis(333)),
                now: start,
                start,
                mds,
                rate,
                base_rtt,
                link_free: start,
                next_send: start,
                flight: VecDeque::new(),
                delivered_time: start,
                first_sent_time: start,
            }
        }

        /// Virtual time since the start.
        pub(crate) fn elapsed(&self) -> Duration {
            self.now - self.start
        }

        /// Runs until `elapsed`, calling `each` after every tick.
        pub(crate) fn run_until(&mut self, elapsed: Duration, mut each: impl FnMut(&Self)) {
            while self.elapsed() < elapsed {
                self.step();
                each(self);
            }
        }

        /// Drops the newest `packets` in flight and reports them lost to the
        /// controller now; returns the bytes lost.
        pub(crate) fn lose(&mut self, packets: usize) -> usize {
            let packets = packets.min(self.flight.len());
            let newest = self.flight.back().map_or(self.now, |p| p.sent);
            self.flight.truncate(self.flight.len() - packets);
            let bytes = packets * self.mds;
            self.in_flight -= bytes;
            self.cc.on_congestion_event(self.now, newest, false, bytes);
            bytes
        }

        fn step(&mut self) {
            self.now += Self::TICK;
            while self.flight.front().is_some_and(|p| p.arrives <= self.now) {
                let p = self.flight.pop_front().unwrap();
                self.acknowledge(p);
            }
            while self.in_flight + self.mds <= self.cc.window() && self.next_send <= self.now {
                self.send();
            }
        }

        fn acknowledge(&mut self, p: Packet) {
            let at = p.arrives;
            self.in_flight -= self.mds;
            self.delivered += self.mds as u64;
            self.delivered_time = at;
            self.first_sent_time = p.sent;
            self.rtt.update(Duration::ZERO, at - p.sent);
            self.cc.on_ack(at, p.sent, self.mds, false, &self.rtt);
            let interval = (p.sent - p.first_sent_time).max(at - p.delivered_time);
            let bytes = u128::from(self.delivered - p.delivered);
            let sample = RateSample {
                delivery_rate: (bytes * 1_000_000_000 / interval.as_nanos().max(1)) as u64,
                rtt: at - p.sent,
                app_limited: false,
                delivered: self.delivered,
                prior_delivered: p.delivered,
            };
            self.cc.on_rate_sample(at, &sample);
        }

        fn send(&mut self) {
            let now = self.now;
            if self.in_flight == 0 {
                self.delivered_time = now;
                self.first_sent_time = now;
            }
            let serialisation = self.mds as u64 * 1_000_000_000 / self.rate;
            self.link_free = self.link_free.max(now) + Duration::from_nanos(serialisation);
            self.flight.push_back(Packet {
                sent: now,
                arrives: self.link_free + self.base_rtt,
                delivered: self.delivered,
                delivered_time: self.delivered_time,
                first_sent_time: self.first_sent_time,
            });
            self.in_flight += self.mds;
            self.cc.on_sent(now, self.mds, self.in_flight);
            let gap = self.cc.pacing_rate().map_or(Duration::ZERO, |rate| {
                Duration::from_nanos(self.mds as u64 * 1_000_000_000 / rate)
            });
            self.next_send = self.next_send.max(now - Self::TICK) + gap;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn build_gives_each_controller() {
        let now = Instant::now();
        let names = [Congestion::NewReno, Congestion::Cubic, Congestion::Bbr]
            .map(|c| c.build(now, 1200).name());
        assert_eq!(names, ["newreno", "cubic", "bbr"]);
        assert_eq!(Congestion::default(), Congestion::Cubic);
        assert_eq!(Congestion::Cubic.build(now, 1200).window(), 12_000);
        assert_eq!(Congestion::Bbr.build(now, 1200).pacing_rate(), None);
    }

    #[test]
    fn initial_and_minimum_windows() {
        assert_eq!(initial_window(1200), 12_000);
        assert_eq!(initial_window(1472), 14_720);
        assert_eq!(initial_window(9000), 18_000);
        assert_eq!(initial_window(0), 10);
        assert_eq!(initial_window(usize::MAX), usize::MAX);
        assert_eq!(minimum_window(1200), 2_400);
        assert_eq!(minimum_window(0), 2);
    }

    /// One call on a controller, with times as offsets from a base.
    #[derive(Debug, Clone)]
    enum Call {
        Sent(u64, usize, usize),
        Ack(u64, u64, usize, bool, u64),
        Lost(u64, u64, bool, usize),
        Mtu(usize),
        Rate(u64, u64, u64, bool, u64),
    }

    fn call() -> impl Strategy<Value = Call> {
        let t = 0..20_000_000_000u64;
        let bytes = prop_oneof![0..100_000usize, any::<usize>()];
        prop_oneof![
            (t.clone(), bytes.clone(), bytes.clone()).prop_map(|(a, b, c)| Call::Sent(a, b, c)),
            (
                t.clone(),
                t.clone(),
                bytes.clone(),
                any::<bool>(),
                any::<u64>()
            )
                .prop_map(|(a, b, c, d, e)| Call::Ack(a, b, c, d, e)),
            (t.clone(), t.clone(), any::<bool>(), bytes.clone())
                .prop_map(|(a, b, c, d)| Call::Lost(a, b, c, d)),
            prop_oneof![0..10_000usize, any::<usize>()].prop_map(Call::Mtu),
            (t, any::<u64>(), any::<u64>(), any::<bool>(), any::<u64>())
                .prop_map(|(a, b, c, d, e)| Call::Rate(a, b, c, d, e)),
        ]
    }

    proptest! {
        /// Any sequence of calls, with times out of order, absurd sizes and
        /// rates: no panic, and the window never closes.
        #[test]
        fn controllers_never_panic(mds in 0..20_000usize, calls in proptest::collection::vec(call(), 0..200)) {
            let base = Instant::now();
            let at = |ms: u64| base + Duration::from_micros(ms);
            for kind in [Congestion::NewReno, Congestion::Cubic, Congestion::Bbr] {
                let mut cc = kind.build(base, mds);
                for c in &calls {
                    match *c {
                        Call::Sent(t, b, f) => cc.on_sent(at(t), b, f),
                        Call::Ack(t, s, b, app, rtt) => {
                            let mut est = RttEstimator::new(Duration::from_nanos(rtt));
                            est.update(Duration::ZERO, Duration::from_nanos(rtt / 2));
                            cc.on_ack(at(t), at(s), b, app, &est);
                        }
                        Call::Lost(t, s, p, b) => cc.on_congestion_event(at(t), at(s), p, b),
                        Call::Mtu(m) => cc.on_mtu_update(m),
                        Call::Rate(t, rate, rtt, app, delivered) => {
                            let rtt = Duration::from_nanos(rtt);
                            let sample = RateSample { delivery_rate: rate, rtt, app_limited: app, delivered, prior_delivered: delivered };
                            cc.on_rate_sample(at(t), &sample);
                        }
                    }
                    prop_assert!(cc.window() >= 2, "{}: {}", cc.name(), cc.window());
                    prop_assert!(cc.pacing_rate() != Some(0));
                }
            }
        }
    }
}
