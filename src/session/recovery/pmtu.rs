//! Path MTU discovery (DPLPMTUD, RFC 8899): from a safe base size, probes up to what the path carries, and falls back on a black hole.
//!
//! [`Pmtud`] is a sans-IO state machine: it reads no clock and sends nothing.
//! The session's sender asks it which datagram size to build for and when to
//! send a probe, and tells it which packets were acknowledged or lost.

use std::time::{Duration, Instant};

use crate::frame::{MAX_UDP_DATAGRAM_SIZE, MIN_DATAGRAM_SIZE};

/// Largest [`PmtuConfig::black_hole_threshold`]: the detector keeps its
/// suspicious loss bursts in a fixed array of this many.
pub const MAX_BLACK_HOLE_THRESHOLD: u32 = 16;

/// Acknowledged sizes the black-hole detector remembers.
const ACK_LOG_LEN: usize = 4;

/// Tunables of path MTU discovery. `Default` gives the values below; each
/// says why. Sizes are UDP payload sizes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmtuConfig {
    /// Size every path is assumed to carry: where a search starts and what a
    /// black hole falls back to. Default 1200 (RFC 8899 `BASE_PLPMTU` for
    /// QUIC-like protocols: IPv6's 1280-byte minimum MTU less headers).
    pub base: usize,
    /// Largest size searched for: the local interface MTU less the IP and UDP
    /// headers, or a user cap. Default 1472 (a 1500-byte Ethernet MTU less 28
    /// bytes of IPv4 and UDP headers); 8972 for jumbo frames.
    pub max: usize,
    /// Consecutive lost probes after which a size is taken as too large
    /// (RFC 8899 `MAX_PROBES`). Default 3: one lost probe may be congestion,
    /// three in a row rarely are.
    pub probe_timeout_count: u32,
    /// How long a finished search holds before searching again above its
    /// result (RFC 8899 `PMTU_RAISE_TIMER`). Default 600 s, the RFC's value:
    /// paths rarely grow, and each search costs a few lost probes.
    pub search_interval: Duration,
    /// Suspicious loss bursts (see [`Pmtud`]) that make a black hole,
    /// `1..=`[`MAX_BLACK_HOLE_THRESHOLD`]. Default 4: one more than
    /// `probe_timeout_count`, since these are ordinary packets, whose loss
    /// has more causes than a probe's.
    pub black_hole_threshold: u32,
    /// How long to stay at `base` after a black hole before searching again.
    /// Default 60 s: a false alarm costs a minute of smaller datagrams, while
    /// a path that keeps shrinking is not searched back up at once.
    pub black_hole_cooldown: Duration,
    /// A search stops when the largest size known to pass and the smallest
    /// known to fail are at most this far apart. Default 20 bytes: under 2%
    /// of a 1472-byte datagram, for about half the probes of a search to the
    /// byte.
    pub search_tolerance: usize,
}

impl Default for PmtuConfig {
    fn default() -> Self {
        PmtuConfig {
            base: 1200,
            max: 1472,
            probe_timeout_count: 3,
            search_interval: Duration::from_secs(600),
            black_hole_threshold: 4,
            black_hole_cooldown: Duration::from_secs(60),
            search_tolerance: 20,
        }
    }
}

impl PmtuConfig {
    /// Checks that the configuration can work.
    pub fn validate(&self) -> Result<(), PmtuConfigError> {
        if self.base < MIN_DATAGRAM_SIZE {
            return Err(PmtuConfigError::BaseTooSmall(self.base));
        }
        if self.max > MAX_UDP_DATAGRAM_SIZE {
            return Err(PmtuConfigError::MaxTooLarge(self.max));
        }
        if self.max < self.base {
            return Err(PmtuConfigError::MaxBelowBase {
                base: self.base,
                max: self.max,
            });
        }
        if self.probe_timeout_count == 0 {
            return Err(PmtuConfigError::NoProbes);
        }
        if !(1..=MAX_BLACK_HOLE_THRESHOLD).contains(&self.black_hole_threshold) {
            return Err(PmtuConfigError::BlackHoleThreshold(
                self.black_hole_threshold,
            ));
        }
        if self.search_interval.is_zero() || self.black_hole_cooldown.is_zero() {
            return Err(PmtuConfigError::ZeroInterval);
        }
        Ok(())
    }

    /// The nearest configuration that can work (used by [`Pmtud::new`], so
    /// that an unvalidated configuration cannot make it misbehave).
    fn sanitized(mut self) -> Self {
        self.base = self.base.clamp(MIN_DATAGRAM_SIZE, MAX_UDP_DATAGRAM_SIZE);
        self.max = self.max.clamp(self.base, MAX_UDP_DATAGRAM_SIZE);
        self.probe_timeout_count = self.probe_timeout_count.max(1);
        self.black_hole_threshold = self.black_hole_threshold.clamp(1, MAX_BLACK_HOLE_THRESHOLD);
        self
    }
}

/// A [`PmtuConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PmtuConfigError {
    /// `base` is below the smallest datagram stt can use.
    #[error("base {0} is below the minimum datagram size {MIN_DATAGRAM_SIZE}")]
    BaseTooSmall(usize),
    /// `max` is above the largest UDP payload.
    #[error("max {0} is above the largest UDP payload {MAX_UDP_DATAGRAM_SIZE}")]
    MaxTooLarge(usize),
    /// `max` is below `base`.
    #[error("max {max} is below base {base}")]
    MaxBelowBase {
        /// The configured base.
        base: usize,
        /// The configured max.
        max: usize,
    },
    /// `probe_timeout_count` is zero.
    #[error("probe_timeout_count must be at least 1")]
    NoProbes,
    /// `black_hole_threshold` is out of range.
    #[error("black_hole_threshold {0} is out of range: use 1..={MAX_BLACK_HOLE_THRESHOLD}")]
    BlackHoleThreshold(u32),
    /// `search_interval` or `black_hole_cooldown` is zero.
    #[error("search_interval and black_hole_cooldown must be non-zero")]
    ZeroInterval,
}

/// Where path MTU discovery stands (the states of RFC 8899 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmtuState {
    /// Fixed size, never probes ([`Pmtud::disabled`]).
    Disabled,
    /// At the base size; a search starts at the next [`Pmtud::poll_probe`]
    /// (after [`Pmtud::new`] and [`Pmtud::on_path_change`]).
    Base,
    /// Probing for a larger size.
    Searching,
    /// A search ended; another starts after the search interval.
    SearchComplete,
    /// A black hole was detected: back at the base size until the cooldown
    /// ends, then searching again.
    Error,
}

/// Path MTU discovery for one path (DPLPMTUD, RFC 8899).
///
/// # Search
///
/// It starts at the base size and binary-searches between the largest size
/// a probe got through at and the smallest that failed (at first, the
/// configured `max`), one probe in flight at a time. A size fails after
/// `probe_timeout_count` consecutive lost probes of it. The search stops when
/// the two are within `search_tolerance`; the upper bound itself, as long as
/// nothing failed, is probed last, so a path that carries `max` ends at
/// exactly `max`. After `search_interval` it searches again above its result.
///
/// # Black holes
///
/// A path can start dropping datagrams it used to carry (a route change, a
/// tunnel). Ordinary lost packets are the evidence, grouped in *bursts*: the
/// losses reported with no acknowledgement reported in between. A burst is
/// *suspicious* when all its packets are larger than the base size (a lost
/// small packet means the loss is not about size) and no acknowledged packet
/// sent after its first packet is at least as large as its smallest (had the
/// path carried that size since, the loss was not about size either). A
/// later such acknowledgement clears a suspicious burst again. When
/// `black_hole_threshold` suspicious bursts stand at once, the size falls back
/// to the base ([`PmtuState::Error`]) and the search resumes after
/// `black_hole_cooldown`. Only packets sent since the first probe after the
/// last fallback or path change count, and only packets no larger than the
/// current size, so that packets built for an abandoned size are not taken
/// as new evidence. The detector needs acknowledgements to flow: during a
/// black hole, packets no larger than the base (pings, probe timeouts) must
/// still go out.
///
/// # Driving it
///
/// The sender, which owns packet numbers and loss detection:
///
/// 1. builds packets of at most [`current`](Self::current) bytes, and tells
///    its congestion controller when that changes;
/// 2. when it may send, calls [`poll_probe`](Self::poll_probe); on `Some(size)`
///    it sends one ack-eliciting probe padded to exactly `size` bytes and calls
///    [`on_probe_sent`](Self::on_probe_sent) with its packet number;
/// 3. for every ACK it processes, calls [`on_acked`](Self::on_acked) for each
///    newly acknowledged packet (probes included), *then*
///    [`on_lost`](Self::on_lost) for each packet it declares lost (probes
///    included); packets declared lost on a timer are reported the same way;
/// 4. arms a timer for [`poll_timeout`](Self::poll_timeout) and calls
///    [`poll_probe`](Self::poll_probe) when it fires.
///
/// **A lost probe is not congestion**: the sender must not report it to the
/// congestion controller as a loss (RFC 9000 §14.4) and has nothing in it to
/// retransmit. Probes count in bytes in flight like any packet.
///
/// No call panics or allocates, whatever its arguments: unknown packet
/// numbers and unexpected sizes are evidence at most, never errors.
#[derive(Debug, Clone)]
pub struct Pmtud {
    /// The configuration, sanitized.
    config: PmtuConfig,
    /// The size this path falls back to (the configured base, or less when
    /// the path's upper bound is smaller).
    base: usize,
    /// The largest size this path may use.
    upper: usize,
    /// The size to build packets for.
    current: usize,
    phase: Phase,
    detector: BlackHoleDetector,
}

impl Pmtud {
    /// Discovery from `config.base` up to `config.max`, starting with the
    /// first [`poll_probe`](Self::poll_probe) from `now` on. An invalid
    /// `config` (see [`PmtuConfig::validate`]) is clamped to the nearest that
    /// works.
    pub fn new(config: PmtuConfig, now: Instant) -> Self {
        let config = config.sanitized();
        Pmtud {
            base: config.base,
            upper: config.max,
            current: config.base,
            phase: Phase::Base { due: now },
            detector: BlackHoleDetector::new(),
            config,
        }
    }

    /// A fixed `size` that never probes: for stream paths (WebSocket), or
    /// when discovery is turned off. Path changes keep it.
    pub fn disabled(size: usize) -> Self {
        Pmtud {
            config: PmtuConfig::default(),
            base: size,
            upper: size,
            current: size,
            phase: Phase::Disabled,
            detector: BlackHoleDetector::new(),
        }
    }

    /// The datagram size to build packets for now.
    pub fn current(&self) -> usize {
        self.current
    }

    /// Where discovery stands.
    pub fn state(&self) -> PmtuState {
        match self.phase {
            Phase::Disabled => PmtuState::Disabled,
            Phase::Base { .. } => PmtuState::Base,
            Phase::Searching(_) => PmtuState::Searching,
            Phase::Complete { .. } => PmtuState::SearchComplete,
            Phase::BlackHole { .. } => PmtuState::Error,
        }
    }

    /// The size of the probe due now, if any. Starts a search when one is
    /// due. Asking again before [`on_probe_sent`](Self::on_probe_sent) gives
    /// the same size; nothing is due while a probe is in flight.
    pub fn poll_probe(&mut self, now: Instant) -> Option<usize> {
        let due = self.poll_timeout();
        if due.is_some_and(|due| now >= due) {
            let (lo, hi) = (self.current, self.upper);
            self.advance(
                Search {
                    lo,
                    hi,
                    hi_failed: false,
                    next: lo,
                    in_flight: None,
                    lost: 0,
                },
                now,
            );
        }
        match self.phase {
            Phase::Searching(search) if search.in_flight.is_none() => Some(search.next),
            _ => None,
        }
    }

    /// The probe [`poll_probe`](Self::poll_probe) asked for left as packet
    /// `packet_number`. A `size` other than the one asked for, or a probe
    /// while another is in flight, is ignored (that packet is then an
    /// ordinary one).
    pub fn on_probe_sent(&mut self, packet_number: u64, size: usize) {
        if let Phase::Searching(search) = &mut self.phase {
            if search.in_flight.is_none() && search.next == size {
                search.in_flight = Some(packet_number);
                self.detector.arm(packet_number);
            }
        }
    }

    /// Packet `packet_number` of `size` bytes, probe or not, was acknowledged.
    pub fn on_acked(&mut self, packet_number: u64, size: usize, now: Instant) {
        let mut size = size;
        match self.phase {
            Phase::Disabled => return,
            Phase::Searching(search) if search.in_flight == Some(packet_number) => {
                size = search.next;
                self.current = search.next;
                let search = Search {
                    lo: search.next,
                    in_flight: None,
                    ..search
                };
                self.advance(search, now);
            }
            _ => {}
        }
        let threshold = self.config.black_hole_threshold;
        if self
            .detector
            .on_acked(packet_number, size, self.base, threshold)
        {
            self.fall_back(now);
        }
    }

    /// Packet `packet_number` of `size` bytes, probe or not, was declared
    /// lost. A lost probe only counts against its size.
    pub fn on_lost(&mut self, packet_number: u64, size: usize, now: Instant) {
        match self.phase {
            Phase::Disabled => {}
            Phase::Searching(search) if search.in_flight == Some(packet_number) => {
                let lost = search.lost.saturating_add(1);
                if lost >= self.config.probe_timeout_count {
                    let search = Search {
                        hi: search.next.saturating_sub(1),
                        hi_failed: true,
                        in_flight: None,
                        ..search
                    };
                    self.advance(search, now);
                } else {
                    self.phase = Phase::Searching(Search {
                        in_flight: None,
                        lost,
                        ..search
                    });
                }
            }
            _ => self
                .detector
                .on_lost(packet_number, size, self.base, self.current),
        }
    }

    /// When [`poll_probe`](Self::poll_probe) may next start a search: the
    /// search interval or the black-hole cooldown (in [`PmtuState::Base`],
    /// a time already passed). `None` while searching (probes follow
    /// acknowledgements and losses) and when disabled.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Base { due } => Some(due),
            Phase::Complete { due } | Phase::BlackHole { due } => due,
            Phase::Disabled | Phase::Searching(_) => None,
        }
    }

    /// The session moved to a new path whose upper bound is `max`: back to
    /// the base size (no more than `max`), searching again from `now` on. A
    /// probe in flight is forgotten. Ignored when disabled.
    pub fn on_path_change(&mut self, max: usize, now: Instant) {
        if let Phase::Disabled = self.phase {
            return;
        }
        self.upper = max.clamp(MIN_DATAGRAM_SIZE, MAX_UDP_DATAGRAM_SIZE);
        self.base = self.config.base.min(self.upper);
        self.current = self.base;
        self.phase = Phase::Base { due: now };
        self.detector = BlackHoleDetector::new();
    }

    /// Moves a search on to its next probe, or ends it.
    fn advance(&mut self, mut search: Search, now: Instant) {
        self.phase = match search.next_size(self.config.search_tolerance) {
            Some(size) => {
                search.next = size;
                search.lost = 0;
                Phase::Searching(search)
            }
            None => Phase::Complete {
                due: now.checked_add(self.config.search_interval),
            },
        };
    }

    /// A black hole: back to the base size, searching again after the
    /// cooldown.
    fn fall_back(&mut self, now: Instant) {
        self.current = self.base;
        self.phase = Phase::BlackHole {
            due: now.checked_add(self.config.black_hole_cooldown),
        };
        self.detector = BlackHoleDetector::new();
    }
}

/// The state behind [`PmtuState`]; `due` is when a search starts (`None`:
/// never, the interval overflowed `Instant`).
#[derive(Debug, Clone, Copy)]
enum Phase {
    Disabled,
    Base { due: Instant },
    Searching(Search),
    Complete { due: Option<Instant> },
    BlackHole { due: Option<Instant> },
}

/// A binary search between sizes known to pass and to fail.
#[derive(Debug, Clone, Copy)]
struct Search {
    /// Largest size known to pass.
    lo: usize,
    /// Largest size not known to fail.
    hi: usize,
    /// Whether a probe of `hi + 1` failed (otherwise `hi` is the untried
    /// upper bound).
    hi_failed: bool,
    /// The size probed next (or in flight).
    next: usize,
    /// Packet number of the probe in flight.
    in_flight: Option<u64>,
    /// Consecutive lost probes of `next`.
    lost: u32,
}

impl Search {
    /// The size to probe after what is known, or `None` when done.
    fn next_size(&self, tolerance: usize) -> Option<usize> {
        let gap = self.hi.checked_sub(self.lo).filter(|&gap| gap > 0)?;
        if gap > tolerance {
            Some(self.lo + gap.div_ceil(2))
        } else if !self.hi_failed {
            Some(self.hi)
        } else {
            None
        }
    }
}

/// Judges from ordinary losses whether the path stopped carrying the
/// current size (the rules are on [`Pmtud`]). Fixed-size state.
#[derive(Debug, Clone)]
struct BlackHoleDetector {
    /// Packets numbered below this were sent before the last reset and are
    /// ignored; `None` (everything ignored) until a probe arms it.
    from_pn: Option<u64>,
    /// Recent acknowledgements of packets larger than the base, as
    /// (packet number, size): none both earlier and smaller than another.
    acks: [(u64, usize); ACK_LOG_LEN],
    ack_count: usize,
    /// Losses reported since the last acknowledgement.
    open: Option<Burst>,
    /// Suspicious bursts not yet cleared.
    suspicious: [Burst; MAX_BLACK_HOLE_THRESHOLD as usize],
    suspicious_count: usize,
}

/// A loss burst: its first packet number and its smallest lost size.
#[derive(Debug, Clone, Copy, Default)]
struct Burst {
    first_pn: u64,
    smallest: usize,
}

impl BlackHoleDetector {
    fn new() -> Self {
        BlackHoleDetector {
            from_pn: None,
            acks: [(0, 0); ACK_LOG_LEN],
            ack_count: 0,
            open: None,
            suspicious: [Burst::default(); MAX_BLACK_HOLE_THRESHOLD as usize],
            suspicious_count: 0,
        }
    }

    /// A probe left as `pn`: evidence counts from there on.
    fn arm(&mut self, pn: u64) {
        self.from_pn.get_or_insert(pn);
    }

    fn counts(&self, pn: u64) -> bool {
        self.from_pn.is_some_and(|from| pn >= from)
    }

    fn on_lost(&mut self, pn: u64, size: usize, base: usize, current: usize) {
        if !self.counts(pn) || size > current || current <= base {
            return;
        }
        let burst = self.open.get_or_insert(Burst {
            first_pn: pn,
            smallest: size,
        });
        burst.first_pn = burst.first_pn.min(pn);
        burst.smallest = burst.smallest.min(size);
    }

    /// Takes an acknowledgement, which also closes the open burst; true when
    /// that makes `threshold` suspicious bursts.
    fn on_acked(&mut self, pn: u64, size: usize, base: usize, threshold: u32) -> bool {
        if self.counts(pn) && size > base {
            self.remember(pn, size);
            let mut kept = 0;
            for i in 0..self.suspicious_count {
                let burst = self.suspicious[i];
                if !(pn > burst.first_pn && size >= burst.smallest) {
                    self.suspicious[kept] = burst;
                    kept += 1;
                }
            }
            self.suspicious_count = kept;
        }
        let Some(burst) = self.open.take() else {
            return false;
        };
        let cleared = self.acks[..self.ack_count]
            .iter()
            .any(|&(acked, acked_size)| acked > burst.first_pn && acked_size >= burst.smallest);
        if burst.smallest <= base || cleared {
            return false;
        }
        if let Some(slot) = self.suspicious.get_mut(self.suspicious_count) {
            *slot = burst;
            self.suspicious_count += 1;
        }
        self.suspicious_count >= threshold as usize
    }

    /// Adds an acknowledgement to the log, dropping what it supersedes (and
    /// the oldest entry when full).
    fn remember(&mut self, pn: u64, size: usize) {
        let log = &self.acks[..self.ack_count];
        if log.iter().any(|&(p, s)| p >= pn && s >= size) {
            return;
        }
        let mut kept = 0;
        for i in 0..self.ack_count {
            let (p, s) = self.acks[i];
            if !(p <= pn && s <= size) {
                self.acks[kept] = (p, s);
                kept += 1;
            }
        }
        if kept == ACK_LOG_LEN {
            let oldest = (0..kept).min_by_key(|&i| self.acks[i].0).unwrap_or(0);
            self.acks[oldest] = self.acks[kept - 1];
            kept -= 1;
        }
        self.acks[kept] = (pn, size);
        self.ack_count = kept + 1;
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const RTT: Duration = Duration::from_millis(50);

    /// A sender over a path that carries datagrams of at most `limit` bytes
    /// and drops one in `loss` at random (0: none).
    struct Sim {
        p: Pmtud,
        now: Instant,
        pn: u64,
        limit: usize,
        probes: usize,
        loss: u64,
        rng: u64,
    }

    impl Sim {
        fn new(config: PmtuConfig, limit: usize) -> Self {
            let now = Instant::now();
            let p = Pmtud::new(config, now);
            let (pn, probes, loss, rng) = (0, 0, 0, 0x9e37_79b9_7f4a_7c15);
            Sim {
                p,
                now,
                pn,
                limit,
                probes,
                loss,
                rng,
            }
        }

        fn send(&mut self, sent: &mut Vec<(u64, usize)>, size: usize) {
            sent.push((self.pn, size));
            self.pn += 1;
        }

        /// One round trip: a probe when one is due, four packets of the
        /// current size and a small ping; then the acks, then the losses.
        fn round(&mut self) {
            let mut sent = Vec::new();
            if let Some(size) = self.p.poll_probe(self.now) {
                self.p.on_probe_sent(self.pn, size);
                self.probes += 1;
                self.send(&mut sent, size);
            }
            for _ in 0..4 {
                self.send(&mut sent, self.p.current());
            }
            self.send(&mut sent, 100);
            self.now += RTT;
            let mut delivered = Vec::new();
            for &(_, size) in &sent {
                self.rng ^= self.rng << 13;
                self.rng ^= self.rng >> 7;
                self.rng ^= self.rng << 17;
                let unlucky = self.loss > 0 && self.rng % self.loss == 0;
                delivered.push(size <= self.limit && !unlucky);
            }
            for (&(pn, size), &ok) in sent.iter().zip(&delivered) {
                if ok {
                    self.p.on_acked(pn, size, self.now);
                }
            }
            for (&(pn, size), &ok) in sent.iter().zip(&delivered) {
                if !ok {
                    self.p.on_lost(pn, size, self.now);
                }
            }
        }

        /// Runs until `state`, for at most `rounds`; false if it never came.
        fn run_until(&mut self, state: PmtuState, rounds: usize) -> bool {
            (0..rounds).any(|_| {
                self.round();
                assert_ne!(self.p.state(), PmtuState::Error, "false black hole");
                self.p.state() == state
            })
        }
    }

    fn jumbo() -> PmtuConfig {
        PmtuConfig {
            max: 9000,
            ..PmtuConfig::default()
        }
    }

    #[test]
    fn ethernet_path_ends_at_exactly_its_size() {
        let mut sim = Sim::new(PmtuConfig::default(), 1472);
        assert_eq!((sim.p.state(), sim.p.current()), (PmtuState::Base, 1200));
        assert!(sim.run_until(PmtuState::SearchComplete, 100));
        assert_eq!(sim.p.current(), 1472);
        // 1336, 1404, 1438, 1455, then the upper bound itself.
        assert_eq!(sim.probes, 5);
        assert_eq!(
            sim.p.poll_timeout(),
            Some(sim.now + Duration::from_secs(600))
        );
    }

    #[test]
    fn jumbo_path_ends_within_tolerance() {
        let mut sim = Sim::new(jumbo(), 8972);
        assert!(sim.run_until(PmtuState::SearchComplete, 200));
        assert!(
            (8952..=8972).contains(&sim.p.current()),
            "{}",
            sim.p.current()
        );
    }

    #[test]
    fn every_path_limit_converges_with_bounded_probes() {
        for config in [PmtuConfig::default(), jumbo()] {
            let (base, max, tol) = (config.base, config.max, config.search_tolerance);
            // Halvings until the gap is within tolerance, plus the upper
            // bound, each at most probe_timeout_count probes.
            let halvings = (0..).find(|&k| (max - base) >> k <= tol).unwrap();
            let bound = (halvings + 1) * config.probe_timeout_count as usize;
            for limit in (base..=max + 50).step_by(7) {
                let mut sim = Sim::new(config.clone(), limit);
                assert!(
                    sim.run_until(PmtuState::SearchComplete, 200),
                    "limit {limit}"
                );
                let got = sim.p.current();
                assert!(
                    got <= limit && got + tol >= limit.min(max),
                    "limit {limit}: {got}"
                );
                assert!(sim.probes <= bound, "limit {limit}: {} probes", sim.probes);
            }
        }
    }

    #[test]
    fn black_hole_falls_back_then_searches_again() {
        let mut sim = Sim::new(PmtuConfig::default(), 1472);
        assert!(sim.run_until(PmtuState::SearchComplete, 100));
        sim.limit = 1300;
        // Each round is one suspicious burst, judged at the next round's ack.
        for _ in 0..5 {
            sim.round();
        }
        assert_eq!((sim.p.state(), sim.p.current()), (PmtuState::Error, 1200));
        let probes = sim.probes;
        for _ in 0..100 {
            sim.round();
        }
        assert_eq!((sim.p.state(), sim.probes), (PmtuState::Error, probes));
        sim.now = sim.p.poll_timeout().unwrap();
        assert!(sim.run_until(PmtuState::SearchComplete, 100));
        assert!(
            (1280..=1300).contains(&sim.p.current()),
            "{}",
            sim.p.current()
        );
    }

    #[test]
    fn random_loss_is_not_a_black_hole() {
        let mut sim = Sim::new(PmtuConfig::default(), 1472);
        sim.loss = 10;
        for _ in 0..20_000 {
            sim.round();
            assert_ne!(sim.p.state(), PmtuState::Error);
        }
        assert!(sim.p.current() > 1400);
    }

    #[test]
    fn disabled_never_probes() {
        let mut p = Pmtud::disabled(1400);
        let mut now = Instant::now();
        for pn in 0..1000u64 {
            now += Duration::from_secs(60);
            assert_eq!(p.poll_probe(now), None);
            p.on_probe_sent(pn, 1500);
            p.on_lost(pn, 1400, now);
            p.on_acked(pn + 1, 9000, now);
            p.on_path_change(9000, now);
        }
        assert_eq!(
            (p.state(), p.current(), p.poll_timeout()),
            (PmtuState::Disabled, 1400, None)
        );
    }

    #[test]
    fn path_change_restarts_from_base() {
        let mut sim = Sim::new(jumbo(), 1472);
        assert!(sim.run_until(PmtuState::SearchComplete, 100));
        assert!(sim.p.current() >= 1452);
        sim.p.on_path_change(9000, sim.now);
        assert_eq!((sim.p.state(), sim.p.current()), (PmtuState::Base, 1200));
        assert_eq!(sim.p.poll_timeout(), Some(sim.now));
        sim.limit = 8972;
        assert!(sim.run_until(PmtuState::SearchComplete, 100));
        assert!(sim.p.current() >= 8952);
        // A path narrower than the base: its bound, and nothing to search.
        sim.p.on_path_change(576, sim.now);
        assert_eq!(sim.p.current(), 576);
        assert_eq!(sim.p.poll_probe(sim.now), None);
        assert_eq!(sim.p.state(), PmtuState::SearchComplete);
    }

    #[test]
    fn one_probe_at_a_time_of_the_size_asked() {
        let now = Instant::now();
        let mut p = Pmtud::new(PmtuConfig::default(), now);
        assert_eq!(p.poll_probe(now), Some(1336));
        assert_eq!(p.poll_probe(now), Some(1336));
        p.on_probe_sent(7, 1400);
        assert_eq!(p.poll_probe(now), Some(1336), "wrong size ignored");
        p.on_probe_sent(8, 1336);
        p.on_probe_sent(9, 1336);
        assert_eq!(p.poll_probe(now), None);
        p.on_acked(9, 1336, now);
        assert_eq!((p.current(), p.poll_probe(now)), (1200, None));
        p.on_lost(8, 1336, now);
        p.on_lost(8, 1336, now);
        assert_eq!(p.poll_probe(now), Some(1336), "one loss is a retry");
    }

    #[test]
    fn validate_names_each_problem() {
        let ok = PmtuConfig::default();
        assert_eq!(ok.validate(), Ok(()));
        let bad = |f: fn(&mut PmtuConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate().unwrap_err()
        };
        use PmtuConfigError::*;
        assert_eq!(bad(|c| c.base = 255), BaseTooSmall(255));
        assert_eq!(bad(|c| c.max = 65_508), MaxTooLarge(65_508));
        assert_eq!(
            bad(|c| c.max = 1000),
            MaxBelowBase {
                base: 1200,
                max: 1000
            }
        );
        assert_eq!(bad(|c| c.probe_timeout_count = 0), NoProbes);
        assert_eq!(bad(|c| c.black_hole_threshold = 17), BlackHoleThreshold(17));
        assert_eq!(bad(|c| c.search_interval = Duration::ZERO), ZeroInterval);
    }

    proptest! {
        #[test]
        fn no_call_sequence_panics(
            (base, max, count, threshold) in (0usize..70_000, 0usize..70_000, 0u32..5, 0u32..20),
            (tol, interval_ms, forever) in (0usize..100_000, 0u64..10_000, any::<bool>()),
            ops in proptest::collection::vec((0u8..7, 0u64..64, 0usize..70_000), 0..300),
        ) {
            let interval = if forever { Duration::MAX } else { Duration::from_millis(interval_ms) };
            let config = PmtuConfig {
                base, max, probe_timeout_count: count, search_interval: interval,
                black_hole_threshold: threshold, black_hole_cooldown: interval / 2, search_tolerance: tol,
            };
            let mut now = Instant::now();
            let mut p = Pmtud::new(config, now);
            let (mut next_pn, mut probe) = (0u64, None);
            for (kind, a, b) in ops {
                match kind {
                    0 => now += Duration::from_millis(a * 100),
                    1 => if let Some(size) = p.poll_probe(now) {
                        prop_assert!(p.current() < size && size <= p.upper);
                        p.on_probe_sent(next_pn, size);
                        probe = Some((next_pn, size));
                        next_pn += 1 + a;
                    },
                    2 => if let Some((pn, size)) = probe { p.on_acked(pn, size, now) },
                    3 => if let Some((pn, size)) = probe { p.on_lost(pn, size, now) },
                    4 => p.on_acked(a, b, now),
                    5 => p.on_lost(a, b, now),
                    _ => p.on_path_change(b, now),
                }
                prop_assert!(p.base <= p.current && p.current <= p.upper);
                if matches!(p.state(), PmtuState::Base | PmtuState::Error) {
                    prop_assert_eq!(p.current, p.base);
                }
            }
        }
    }
}
