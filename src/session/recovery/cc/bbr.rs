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
/// Pacing is this fraction of gain × bandwidth: at a gain of one a sender
/// pacing exactly at the bottleneck rate never drains a queue (one that
/// Drain left, or a burst), since the probe and drain phases balance; 1%
/// less drains it (Linux's margin).
const PACING_MARGIN: f64 = 0.99;
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
/// Send quanta the window holds beyond the bandwidth-delay products: room
/// for the pacer's bursts and for acknowledgements that cover several
/// datagrams. Being the same for every flow, this room also moves flows
/// that share a bottleneck towards equal shares: window-limited, each
/// delivers in proportion to its window, and an equal addition narrows
/// their ratio each time the estimates follow.
const QUANTA_IN_WINDOW: usize = 3;
/// A send quantum is this much traffic at the pacing rate …
const QUANTUM_INTERVAL: Duration = Duration::from_millis(1);
/// … and at least this many datagrams (an acknowledgement covers two).
const MIN_QUANTUM_DATAGRAMS: usize = 2;
/// Extra datagrams in flight while probing at a gain above one.
const PROBE_EXTRA_DATAGRAMS: usize = 2;

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

/// A windowed maximum over the last [`BW_WINDOW_ROUNDS`] round trips that
/// had a sample: the largest sample of each round in a ring, exact and
/// allocation-free.
///
/// The window ends at the newest round with a sample, not at the current
/// round: rounds whose samples are all discarded (application-limited, or
/// ProbeRtt's) do not age the estimate, as in Linux's windowed filter.
#[derive(Debug, Clone, Copy, Default)]
struct MaxFilter {
    /// `(round, largest sample in that round)`, indexed by round.
    slots: [(u64, u64); BW_WINDOW_ROUNDS as usize],
    /// The newest round with a sample.
    newest: u64,
}

impl MaxFilter {
    fn update(&mut self, round: u64, value: u64) {
        self.newest = self.newest.max(round);
        let slot = &mut self.slots[(round % BW_WINDOW_ROUNDS) as usize];
        if slot.0 == round {
            slot.1 = slot.1.max(value);
        } else {
            *slot = (round, value);
        }
    }

    fn get(&self) -> u64 {
        let newest = self.newest;
        self.slots
            .iter()
            .filter(|(r, _)| *r <= newest && r.saturating_add(BW_WINDOW_ROUNDS) > newest)
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
    /// A round ends when a packet sent after the session had delivered this
    /// many bytes is acknowledged (its `prior_delivered` reaches it).
    next_round_delivered: u64,
    /// Bytes delivered in all, from the latest rate sample.
    delivered: u64,
    /// Samples of packets sent while the session had delivered at most this
    /// many bytes are treated as application-limited: ProbeRtt's small
    /// window, not the path, limited them (their interval spans it).
    limited_until: Option<u64>,
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
    /// Packet conservation (send one for each acknowledged) during the
    /// first round of recovery.
    conservation: bool,
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
            limited_until: None,
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
            conservation: false,
        }
    }

    /// The current phase.
    pub fn state(&self) -> BbrState {
        self.state
    }

    /// The bottleneck bandwidth estimate in bytes per second (zero before
    /// the first rate sample).
    pub fn bandwidth(&self) -> u64 {
        self.bandwidth.get()
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

    /// `gain` bandwidth-delay products in bytes plus the send quanta, or the
    /// initial window while the model has no bandwidth or round trip yet.
    fn inflight(&self, gain: f64) -> usize {
        let bw = self.bandwidth();
        let bdp = match self.min_rtt {
            Some(rtt) if bw > 0 => (gain * bw as f64 * rtt.as_secs_f64()) as usize,
            _ => return self.initial_window(),
        };
        let quantum = ((self.pacing_rate as f64 * QUANTUM_INTERVAL.as_secs_f64()) as usize)
            .max(self.max_datagram_size.saturating_mul(MIN_QUANTUM_DATAGRAMS));
        let probing = self.state == BbrState::ProbeBw && self.pacing_gain > 1.0;
        let extra = if probing { PROBE_EXTRA_DATAGRAMS } else { 0 };
        bdp.saturating_add(quantum.saturating_mul(QUANTA_IN_WINDOW))
            .saturating_add(self.max_datagram_size.saturating_mul(extra))
    }

    /// A new round starts now: it ends when a packet sent from now on is
    /// acknowledged.
    fn start_round(&mut self) {
        self.next_round_delivered = self.delivered;
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
        // The window check leaves up to a datagram of the window unused: a
        // target within a datagram of the window counts as reached.
        let reached = |target: usize| {
            prior_in_flight.saturating_add(self.max_datagram_size) > target.min(self.cwnd)
        };
        let next = if self.pacing_gain > 1.0 {
            // Probe until the extra data is actually in flight (or a loss
            // says the queue cannot hold it).
            full_length && (self.loss_in_cycle || reached(self.inflight(self.pacing_gain)))
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

    fn probe_rtt(&mut self, now: Instant, round_start: bool) {
        // What is sent now is limited by the small window, not the path.
        let until = self.delivered.saturating_add(self.in_flight as u64);
        self.limited_until = Some(self.limited_until.map_or(until, |u| u.max(until)));
        match self.probe_rtt_done {
            None => {
                // Allow one datagram over the window: senders check the
                // window before a send, not after.
                let target = self.min_window().saturating_add(self.max_datagram_size);
                if self.in_flight <= target {
                    self.probe_rtt_done = Some(now.checked_add(PROBE_RTT_DURATION).unwrap_or(now));
                    self.probe_rtt_round_done = false;
                    self.start_round();
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
                        self.cwnd_gain = STARTUP_GAIN;
                    }
                }
            }
        }
    }

    fn update_pacing_rate(&mut self) {
        let rate = (self.pacing_gain * PACING_MARGIN * self.bandwidth() as f64) as u64;
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
                let window = self.initial_window() as f64;
                (STARTUP_GAIN * PACING_MARGIN * window / rtt.as_secs_f64()) as u64
            }
            _ => 0,
        };
        self.pacing_rate = self.pacing_rate.max(rate).max(initial);
    }

    fn update_cwnd(&mut self, acked: usize) {
        let target = self.inflight(self.cwnd_gain).max(self.min_window());
        if self.conservation {
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
            self.conservation = false;
            self.cwnd = self.cwnd.max(self.prior_cwnd);
        }
    }

    fn on_rate_sample(&mut self, now: Instant, sample: &RateSample) {
        let acked = std::mem::take(&mut self.acked);
        let prior_in_flight = self.in_flight.saturating_add(acked);
        self.delivered = self.delivered.max(sample.delivered);

        let round_start = sample.prior_delivered >= self.next_round_delivered;
        if round_start {
            self.round_count += 1;
            self.start_round();
            self.conservation = false;
        }
        // An application-limited sample only bounds the rate from below.
        let app_limited = sample.app_limited
            || self
                .limited_until
                .is_some_and(|until| sample.prior_delivered <= until);
        if !app_limited || sample.delivery_rate >= self.bandwidth() {
            self.bandwidth
                .update(self.round_count, sample.delivery_rate);
        }
        let expired = now.saturating_duration_since(self.min_rtt_stamp) > MIN_RTT_WINDOW;
        if self.min_rtt.is_none_or(|min| sample.rtt < min) || expired {
            self.min_rtt = Some(sample.rtt);
            self.min_rtt_stamp = now;
        }

        if self.state == BbrState::ProbeBw {
            self.advance_cycle(now, prior_in_flight);
        }
        self.check_full_bw(round_start, app_limited);
        self.check_drain(now);
        if expired && self.state != BbrState::ProbeRtt {
            self.save_cwnd();
            self.state = BbrState::ProbeRtt;
            self.pacing_gain = 1.0;
            self.probe_rtt_done = None;
        }
        if self.state == BbrState::ProbeRtt {
            self.probe_rtt(now, round_start);
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
            self.conservation = false;
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
        self.conservation = true;
        self.start_round();
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
mod tests;
