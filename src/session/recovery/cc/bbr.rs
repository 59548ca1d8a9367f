//! A model-based controller after BBR: a bottleneck-bandwidth and minimum-round-trip model steering the pacing rate and the window.

use std::time::{Duration, Instant};

use super::{datagram_size, in_recovery, initial_window, Controller, RateSample};
use crate::session::recovery::rtt::RttEstimator;

/// Startup's pacing gain, 2/ln 2: the smallest gain that doubles the
/// delivery rate every round trip.
const STARTUP_GAIN: f64 = 2.885;
/// Drain's pacing gain: empties in one round trip the queue Startup built.
const DRAIN_GAIN: f64 = 1.0 / STARTUP_GAIN;
/// The window in ProbeBw: two bandwidth-delay products, room for delayed and
/// aggregated acknowledgements.
const CWND_GAIN: f64 = 2.0;
/// ProbeBw's pacing gains, one phase per minimum round trip: probe for more
/// bandwidth, drain the queue the probe made, cruise.
const CYCLE: [f64; 8] = [1.25, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0];
/// Round trips over which the bandwidth estimate is the maximum sample.
const BW_WINDOW_ROUNDS: u64 = 10;
/// How long a minimum round trip stays valid without being seen again.
const MIN_RTT_WINDOW: Duration = Duration::from_secs(10);
/// How long ProbeRtt holds the window at its minimum.
const PROBE_RTT_DURATION: Duration = Duration::from_millis(200);
/// Startup ends when the estimate grew by less than this factor …
const FULL_BW_GROWTH: f64 = 1.25;
/// … for this many round trips in a row.
const FULL_BW_ROUNDS: u32 = 3;
/// The smallest window, in datagrams (also ProbeRtt's window).
const MIN_WINDOW_DATAGRAMS: usize = 4;

/// The phase of the model-based controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BbrState {
    /// Doubling the sending rate each round trip until the bandwidth
    /// estimate stops growing.
    Startup,
    /// Pacing below the estimate to empty the queue Startup built.
    Drain,
    /// Steady state: pacing at the estimate, cycling the gain to probe for
    /// more bandwidth and to drain what the probe queued.
    ProbeBw,
    /// The window held at four datagrams for 200 ms so that the queue
    /// empties and the minimum round trip can be measured again.
    ProbeRtt,
}

/// A windowed maximum over the last [`BW_WINDOW_ROUNDS`] round trips: the
/// largest sample of each round in a ring, exact and allocation-free.
#[derive(Debug, Clone, Copy, Default)]
struct MaxFilter {
    /// `(round, largest sample in that round)`, indexed by round.
    slots: [(u64, u64); BW_WINDOW_ROUNDS as usize],
}

impl MaxFilter {
    fn update(&mut self, round: u64, value: u64) {
        let slot = &mut self.slots[(round % BW_WINDOW_ROUNDS) as usize];
        if slot.0 == round {
            slot.1 = slot.1.max(value);
        } else {
            *slot = (round, value);
        }
    }

    fn get(&self, round: u64) -> u64 {
        self.slots
            .iter()
            .filter(|(r, _)| *r <= round && r.saturating_add(BW_WINDOW_ROUNDS) > round)
            .map(|(_, v)| *v)
            .max()
            .unwrap_or(0)
    }
}

/// A model-based controller after BBR v1: the bottleneck bandwidth is the
/// maximum delivery rate of the last ten round trips, the propagation delay
/// the minimum round trip of the last ten seconds; it paces at a gain times
/// the bandwidth and keeps twice their product in flight.
///
/// It steers by [`Controller::on_rate_sample`]; without rate samples it
/// stays in Startup at the initial window.
#[derive(Debug, Clone)]
pub struct Bbr {
    max_datagram_size: usize,
    state: BbrState,
    pacing_gain: f64,
    cwnd_gain: f64,
    bandwidth: MaxFilter,
    min_rtt: Option<Duration>,
    min_rtt_stamp: Instant,
    /// Round trips counted by delivered bytes.
    round_count: u64,
    /// The round ends when the session has delivered this many bytes.
    next_round_delivered: u64,
    /// Bytes delivered in all, from the latest rate sample.
    delivered: u64,
    full_bw: u64,
    full_bw_count: u32,
    full_bw_reached: bool,
    cycle_index: usize,
    cycle_stamp: Instant,
    loss_in_cycle: bool,
    probe_rtt_done: Option<Instant>,
    probe_rtt_round_done: bool,
    cwnd: usize,
    /// The window to restore after recovery or ProbeRtt.
    prior_cwnd: usize,
    pacing_rate: u64,
    /// Bytes in flight: the sender's count at the last send, less what was
    /// acknowledged or lost since.
    in_flight: usize,
    /// Bytes acknowledged since the last rate sample.
    acked: usize,
    recovery_start: Option<Instant>,
    in_recovery: bool,
    /// Packet conservation (send one for each acknowledged) lasts the first
    /// round of recovery, this round.
    conservation_round: Option<u64>,
}

impl Bbr {
    /// A controller in Startup with the RFC 9002 initial window.
    pub fn new(now: Instant, max_datagram_size: usize) -> Self {
        let mds = datagram_size(max_datagram_size);
        let cwnd = initial_window(mds).max(mds.saturating_mul(MIN_WINDOW_DATAGRAMS));
        Self {
            max_datagram_size: mds,
            state: BbrState::Startup,
            pacing_gain: STARTUP_GAIN,
            cwnd_gain: STARTUP_GAIN,
            bandwidth: MaxFilter::default(),
            min_rtt: None,
            min_rtt_stamp: now,
            round_count: 0,
            next_round_delivered: 0,
            delivered: 0,
            full_bw: 0,
            full_bw_count: 0,
            full_bw_reached: false,
            cycle_index: 0,
            cycle_stamp: now,
            loss_in_cycle: false,
            probe_rtt_done: None,
            probe_rtt_round_done: false,
            cwnd,
            prior_cwnd: cwnd,
            pacing_rate: 0,
            in_flight: 0,
            acked: 0,
            recovery_start: None,
            in_recovery: false,
            conservation_round: None,
        }
    }

    /// The current phase.
    pub fn state(&self) -> BbrState {
        self.state
    }

    /// The bottleneck bandwidth estimate in bytes per second (zero before
    /// the first rate sample).
    pub fn bandwidth(&self) -> u64 {
        self.bandwidth.get(self.round_count)
    }

    /// The minimum round trip of the last ten seconds, once sampled.
    pub fn min_rtt(&self) -> Option<Duration> {
        self.min_rtt
    }

    /// The current pacing gain (the factor on the bandwidth estimate).
    pub fn pacing_gain(&self) -> f64 {
        self.pacing_gain
    }

    fn min_window(&self) -> usize {
        self.max_datagram_size.saturating_mul(MIN_WINDOW_DATAGRAMS)
    }

    fn initial_window(&self) -> usize {
        initial_window(self.max_datagram_size).max(self.min_window())
    }

    /// `gain` bandwidth-delay products in bytes, or the initial window while
    /// the model has no bandwidth or round trip yet.
    fn inflight(&self, gain: f64) -> usize {
        let bw = self.bandwidth();
        match self.min_rtt {
            Some(rtt) if bw > 0 => {
                let bdp = bw as f64 * rtt.as_secs_f64();
                ((gain * bdp) as usize).max(self.min_window())
            }
            _ => self.initial_window(),
        }
    }

    /// The round ends once the bytes now in flight have been delivered.
    fn start_round(&mut self, delivered: u64) {
        let outstanding = self.in_flight.max(self.max_datagram_size) as u64;
        self.next_round_delivered = delivered.saturating_add(outstanding);
    }

    fn save_cwnd(&mut self) {
        self.prior_cwnd = if self.in_recovery || self.state == BbrState::ProbeRtt {
            self.prior_cwnd.max(self.cwnd)
        } else {
            self.cwnd
        };
    }

    fn enter_probe_bw(&mut self, now: Instant) {
        self.state = BbrState::ProbeBw;
        self.cwnd_gain = CWND_GAIN;
        // Start at a phase other than the drain one, chosen by the bytes
        // delivered so far: flows that reach ProbeBw together do not probe in
        // step (BBR v1 draws it at random).
        let spread = (self.delivered / self.max_datagram_size as u64) % (CYCLE.len() as u64 - 1);
        self.cycle_index = if spread == 0 { 0 } else { spread as usize + 1 };
        self.pacing_gain = CYCLE[self.cycle_index];
        self.cycle_stamp = now;
        self.loss_in_cycle = false;
    }

    fn advance_cycle(&mut self, now: Instant, prior_in_flight: usize) {
        let full_length =
            now.saturating_duration_since(self.cycle_stamp) > self.min_rtt.unwrap_or_default();
        let next = if self.pacing_gain > 1.0 {
            // Probe until the extra data is actually in flight (or a loss
            // says the queue cannot hold it).
            full_length
                && (self.loss_in_cycle || prior_in_flight >= self.inflight(self.pacing_gain))
        } else if self.pacing_gain < 1.0 {
            // Drain until the queue is gone.
            full_length || prior_in_flight <= self.inflight(1.0)
        } else {
            full_length
        };
        if next {
            self.cycle_index = (self.cycle_index + 1) % CYCLE.len();
            self.pacing_gain = CYCLE[self.cycle_index];
            self.cycle_stamp = now;
            self.loss_in_cycle = false;
        }
    }

    fn check_full_bw(&mut self, round_start: bool, app_limited: bool) {
        if self.full_bw_reached || !round_start || app_limited {
            return;
        }
        let bw = self.bandwidth();
        if bw as f64 >= self.full_bw as f64 * FULL_BW_GROWTH {
            self.full_bw = bw;
            self.full_bw_count = 0;
            return;
        }
        self.full_bw_count += 1;
        self.full_bw_reached = self.full_bw_count >= FULL_BW_ROUNDS;
    }

    fn check_drain(&mut self, now: Instant) {
        if self.state == BbrState::Startup && self.full_bw_reached {
            self.state = BbrState::Drain;
            self.pacing_gain = DRAIN_GAIN;
            self.cwnd_gain = STARTUP_GAIN;
        }
        if self.state == BbrState::Drain && self.in_flight <= self.inflight(1.0) {
            self.enter_probe_bw(now);
        }
    }

    fn probe_rtt(&mut self, now: Instant, round_start: bool, delivered: u64) {
        match self.probe_rtt_done {
            None => {
                // Allow one datagram over the window: senders check the
                // window before a send, not after.
                let target = self.min_window().saturating_add(self.max_datagram_size);
                if self.in_flight <= target {
                    self.probe_rtt_done = Some(now.checked_add(PROBE_RTT_DURATION).unwrap_or(now));
                    self.probe_rtt_round_done = false;
                    self.start_round(delivered);
                }
            }
            Some(done) => {
                self.probe_rtt_round_done |= round_start;
                if self.probe_rtt_round_done && now >= done {
                    self.min_rtt_stamp = now;
                    self.cwnd = self.cwnd.max(self.prior_cwnd);
                    self.probe_rtt_done = None;
                    if self.full_bw_reached {
                        self.enter_probe_bw(now);
                    } else {
                        self.state = BbrState::Startup;
                        self.pacing_gain = STARTUP_GAIN;
                    }
                }
            }
        }
    }

    fn update_pacing_rate(&mut self) {
        let rate = (self.pacing_gain * self.bandwidth() as f64) as u64;
        if self.full_bw_reached {
            if rate > 0 {
                self.pacing_rate = rate;
            }
            return;
        }
        // Until the bottleneck is found the rate only grows, from the
        // initial window over the first round trip.
        let initial = match self.min_rtt {
            Some(rtt) if !rtt.is_zero() => {
                (STARTUP_GAIN * self.initial_window() as f64 / rtt.as_secs_f64()) as u64
            }
            _ => 0,
        };
        self.pacing_rate = self.pacing_rate.max(rate).max(initial);
    }

    fn update_cwnd(&mut self, acked: usize) {
        let target = self.inflight(self.cwnd_gain);
        if self.conservation_round.is_some() {
            // Packet conservation: as much may leave as was acknowledged.
            self.cwnd = self.cwnd.max(self.in_flight.saturating_add(acked));
        } else if self.full_bw_reached {
            self.cwnd = self.cwnd.saturating_add(acked).min(target);
        } else if self.cwnd < target || self.delivered < self.initial_window() as u64 {
            self.cwnd = self.cwnd.saturating_add(acked);
        }
        self.cwnd = self.cwnd.max(self.min_window());
    }
}

impl Controller for Bbr {
    fn on_sent(&mut self, _now: Instant, _bytes: usize, in_flight: usize) {
        self.in_flight = in_flight;
    }

    fn on_ack(
        &mut self,
        _now: Instant,
        sent: Instant,
        bytes: usize,
        _app_limited: bool,
        _rtt: &RttEstimator,
    ) {
        self.in_flight = self.in_flight.saturating_sub(bytes);
        self.acked = self.acked.saturating_add(bytes);
        if self.in_recovery && !in_recovery(self.recovery_start, sent) {
            // A packet sent after the loss arrived: recovery is over.
            self.in_recovery = false;
            self.conservation_round = None;
            self.cwnd = self.cwnd.max(self.prior_cwnd);
        }
    }

    fn on_rate_sample(&mut self, now: Instant, sample: &RateSample) {
        let acked = std::mem::take(&mut self.acked);
        let prior_in_flight = self.in_flight.saturating_add(acked);
        self.delivered = self.delivered.max(sample.delivered);

        let round_start = sample.delivered >= self.next_round_delivered;
        if round_start {
            self.round_count += 1;
            self.start_round(sample.delivered);
        }
        // An application-limited sample only bounds the rate from below.
        if !sample.app_limited || sample.delivery_rate >= self.bandwidth() {
            self.bandwidth
                .update(self.round_count, sample.delivery_rate);
        }
        let expired = now.saturating_duration_since(self.min_rtt_stamp) > MIN_RTT_WINDOW;
        if self.min_rtt.is_none_or(|min| sample.rtt < min) || expired {
            self.min_rtt = Some(sample.rtt);
            self.min_rtt_stamp = now;
        }
        if self
            .conservation_round
            .is_some_and(|round| round_start && self.round_count > round)
        {
            self.conservation_round = None;
        }

        if self.state == BbrState::ProbeBw {
            self.advance_cycle(now, prior_in_flight);
        }
        self.check_full_bw(round_start, sample.app_limited);
        self.check_drain(now);
        if expired && self.state != BbrState::ProbeRtt {
            self.save_cwnd();
            self.state = BbrState::ProbeRtt;
            self.pacing_gain = 1.0;
            self.probe_rtt_done = None;
        }
        if self.state == BbrState::ProbeRtt {
            self.probe_rtt(now, round_start, sample.delivered);
        }

        self.update_pacing_rate();
        self.update_cwnd(acked);
    }

    fn on_congestion_event(
        &mut self,
        now: Instant,
        sent: Instant,
        persistent: bool,
        lost_bytes: usize,
    ) {
        self.in_flight = self.in_flight.saturating_sub(lost_bytes);
        self.loss_in_cycle = true;
        if persistent {
            // Everything in flight for a long while was lost: restart from
            // the minimum; the model regrows the window within round trips.
            self.cwnd = self.min_window();
            self.prior_cwnd = self.cwnd;
            self.in_recovery = false;
            self.conservation_round = None;
            self.recovery_start = Some(now);
            return;
        }
        if in_recovery(self.recovery_start, sent) {
            self.cwnd = self.cwnd.saturating_sub(lost_bytes).max(self.min_window());
            return;
        }
        self.save_cwnd();
        self.recovery_start = Some(now);
        self.in_recovery = true;
        self.conservation_round = Some(self.round_count);
        self.start_round(self.delivered);
        self.cwnd = self
            .in_flight
            .saturating_add(self.acked)
            .max(self.min_window());
    }

    fn on_mtu_update(&mut self, max_datagram_size: usize) {
        let untouched = self.cwnd == self.initial_window() && self.bandwidth() == 0;
        self.max_datagram_size = datagram_size(max_datagram_size);
        if untouched {
            self.cwnd = self.initial_window();
            self.prior_cwnd = self.cwnd;
        }
        self.cwnd = self.cwnd.max(self.min_window());
    }

    fn window(&self) -> usize {
        if self.state == BbrState::ProbeRtt {
            self.cwnd.min(self.min_window())
        } else {
            self.cwnd
        }
    }

    fn pacing_rate(&self) -> Option<u64> {
        (self.pacing_rate > 0).then_some(self.pacing_rate)
    }

    fn name(&self) -> &'static str {
        "bbr"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::recovery::cc::testing::Bottleneck;

    const MDS: usize = 1250;
    /// 10 Mbit/s.
    const RATE: u64 = 1_250_000;
    const BASE_RTT: Duration = Duration::from_millis(40);
    /// BBR's min-RTT filter window and ProbeRtt duration, written out so that
    /// the tests check the code's.
    const TEN_S: Duration = Duration::from_secs(10);
    const PROBE_RTT_TIME: Duration = Duration::from_millis(200);

    fn path() -> Bottleneck<Bbr> {
        let start = Instant::now();
        Bottleneck::new(Bbr::new(start, MDS), start, MDS, RATE, BASE_RTT)
    }

    fn ratio(a: u64, b: u64) -> f64 {
        a as f64 / b as f64
    }

    #[test]
    fn estimates_the_bottleneck_and_leaves_startup() {
        let mut path = path();
        let mut left_startup = None;
        path.run_until(Duration::from_secs(3), |p| {
            if left_startup.is_none() && p.cc.state() != BbrState::Startup {
                left_startup = Some(p.elapsed());
            }
        });
        let left = left_startup.expect("Startup ends");
        assert!(left < Duration::from_millis(600), "{left:?}");
        assert_eq!(path.cc.state(), BbrState::ProbeBw);
        let bw = path.cc.bandwidth();
        assert!((0.97..=1.03).contains(&ratio(bw, RATE)), "estimate {bw}");
        // The first packet met an empty queue: base + one serialisation.
        assert_eq!(path.cc.min_rtt(), Some(BASE_RTT + Duration::from_millis(1)));
        // Two bandwidth-delay products in flight, and the queue stays short.
        let bdp = bw as f64 * path.cc.min_rtt().unwrap().as_secs_f64();
        let window = path.cc.window() as f64;
        assert!((window / bdp - 2.0).abs() < 0.05, "{window} {bdp}");
        assert!(path.rtt.latest() < BASE_RTT * 2);
    }

    #[test]
    fn pacing_rate_cycles_around_the_estimate() {
        let mut path = path();
        path.run_until(Duration::from_secs(2), |_| {});
        let mut gains = Vec::new();
        let mut sent_before = path.delivered;
        path.run_until(Duration::from_secs(6), |p| {
            let gain = ratio(p.cc.pacing_rate().unwrap(), p.cc.bandwidth());
            if gains.last().is_none_or(|g: &f64| (g - gain).abs() > 0.01) {
                gains.push(gain);
            }
        });
        // Every probe (1.25) is followed by a drain (0.75), then cruising (1).
        let near = |g: f64, want: f64| (g - want).abs() < 0.01;
        let probes = gains.iter().filter(|g| near(**g, 1.25)).count();
        assert!(probes >= 8, "gains {gains:?}");
        for w in gains.windows(3) {
            if near(w[0], 1.25) {
                assert!(near(w[1], 0.75) && near(w[2], 1.0), "gains {gains:?}");
            }
        }
        assert!(gains
            .iter()
            .all(|g| near(*g, 1.25) || near(*g, 0.75) || near(*g, 1.0)));
        // Over the whole cycle it delivers the bottleneck rate.
        sent_before = path.delivered - sent_before;
        let rate = sent_before as f64 / 4.0;
        assert!((rate / RATE as f64 - 1.0).abs() < 0.03, "{rate} B/s");
    }

    #[test]
    fn probes_rtt_after_ten_seconds_without_a_lower_one() {
        let mut path = path();
        let mut entered = None;
        let mut left = None;
        let mut drained_to = usize::MAX;
        path.run_until(Duration::from_secs(12), |p| {
            let probing = p.cc.state() == BbrState::ProbeRtt;
            if probing {
                assert_eq!(p.cc.window(), 4 * MDS);
                drained_to = drained_to.min(p.in_flight);
                entered.get_or_insert(p.elapsed());
            } else if entered.is_some() && left.is_none() {
                left = Some(p.elapsed());
            }
        });
        // The minimum was first (and last) seen with the first ack, 41 ms in.
        let entered = entered.expect("ProbeRtt happens");
        let first_ack = BASE_RTT + Duration::from_millis(1);
        assert!(entered > first_ack + TEN_S, "{entered:?}");
        assert!(entered < first_ack + TEN_S + Duration::from_millis(50));
        assert!(drained_to <= 4 * MDS, "in flight {drained_to}");
        let left = left.expect("ProbeRtt ends");
        let held = left - entered;
        assert!(held >= PROBE_RTT_TIME, "held {held:?}");
        assert!(held < PROBE_RTT_TIME + 4 * BASE_RTT, "held {held:?}");
        assert_eq!(path.cc.state(), BbrState::ProbeBw);
        assert!(path.cc.window() > 50 * MDS);
    }

    #[test]
    fn a_lower_round_trip_postpones_probe_rtt() {
        let t0 = Instant::now();
        let mut cc = Bbr::new(t0, MDS);
        let mut delivered = 0;
        let mut rtt = Duration::from_millis(50);
        for i in 1..=1200u32 {
            let now = t0 + Duration::from_millis(10) * i;
            // A new minimum every 5 s.
            if i % 500 == 0 {
                rtt -= Duration::from_millis(1);
            }
            delivered += 10 * MDS as u64;
            cc.on_sent(now, MDS, 20 * MDS);
            cc.on_ack(now, now - rtt, 10 * MDS, false, &RttEstimator::new(rtt));
            let (delivery_rate, app_limited) = (RATE, false);
            let sample = RateSample {
                delivery_rate,
                rtt,
                app_limited,
                delivered,
                prior_delivered: delivered - 10 * MDS as u64,
            };
            cc.on_rate_sample(now, &sample);
            assert_ne!(cc.state(), BbrState::ProbeRtt, "at {i}");
        }
        assert_eq!(cc.min_rtt(), Some(Duration::from_millis(48)));
    }

    #[test]
    fn loss_conserves_packets_for_a_round_then_restores() {
        let mut path = path();
        path.run_until(Duration::from_secs(2), |_| {});
        let before = path.cc.window();
        path.lose(10);
        assert_eq!(path.cc.window(), path.in_flight.max(4 * MDS));
        // A later loss of a packet sent before recovery: its bytes come off.
        let (now, in_flight) = (path.now, path.in_flight);
        path.cc.on_congestion_event(now, now - BASE_RTT, false, MDS);
        assert_eq!(path.cc.window(), (in_flight - MDS).max(4 * MDS));
        // Once a packet sent after the loss is acknowledged, the window is back.
        path.run_until(Duration::from_secs(2) + BASE_RTT * 3, |_| {});
        assert!(path.cc.window() >= before, "{}", path.cc.window());
        let now = path.now;
        path.cc.on_congestion_event(now, now, true, path.in_flight);
        assert_eq!(path.cc.window(), 4 * MDS);
    }

    #[test]
    fn max_filter_forgets_after_ten_rounds() {
        let mut f = MaxFilter::default();
        f.update(1, 100);
        f.update(2, 50);
        assert_eq!((f.get(2), f.get(10), f.get(11)), (100, 100, 50));
        f.update(11, 70);
        assert_eq!(f.get(12), 70);
    }
}
