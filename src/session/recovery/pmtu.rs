//! Path MTU discovery (DPLPMTUD, RFC 8899): from a safe base size, probes up to what the path carries, and falls back on a black hole.
//!
//! [`Pmtud`] is sans-IO: the session's sender asks it what size to build and
//! when to probe, and tells it which packets were acknowledged or lost.

use std::time::{Duration, Instant};

use crate::frame::{MAX_UDP_DATAGRAM_SIZE, MIN_DATAGRAM_SIZE};

/// Largest [`PmtuConfig::black_hole_threshold`] (bounds the detector's memory).
pub const MAX_BLACK_HOLE_THRESHOLD: u32 = 16;

/// Acknowledgements the black-hole detector remembers.
const ACK_LOG_LEN: usize = 4;

/// Tunables of path MTU discovery (sizes are UDP payload sizes). `Default`
/// gives the values below; each says why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmtuConfig {
    /// What every path is assumed to carry: where a search starts, what a
    /// black hole falls back to. Default 1200: RFC 8899's `BASE_PLPMTU` for
    /// QUIC-like protocols (IPv6's 1280-byte minimum MTU less headers).
    pub base: usize,
    /// Largest size searched for: the interface MTU less IP and UDP headers,
    /// or a user cap. Default 1472 (Ethernet's 1500 less 28); 8972 for jumbo
    /// frames.
    pub max: usize,
    /// Consecutive lost probes that fail a size (RFC 8899 `MAX_PROBES`).
    /// Default 3: one lost probe may be congestion, three rarely are.
    pub probe_timeout_count: u32,
    /// How long a finished search holds before searching above its result
    /// (RFC 8899 `PMTU_RAISE_TIMER`). Default 600 s, the RFC's: paths rarely
    /// grow, and a search costs lost probes.
    pub search_interval: Duration,
    /// Suspicious loss bursts (see [`Pmtud`]) that make a black hole.
    /// Default 4: one more than `probe_timeout_count`, as ordinary packets
    /// are lost for more reasons than probes.
    pub black_hole_threshold: u32,
    /// How long a black hole keeps the base size before searching again.
    /// Default 60 s: a false alarm costs a minute of smaller datagrams, and a
    /// flapping path is not searched back up at once.
    pub black_hole_cooldown: Duration,
    /// A search stops when the sizes known to pass and to fail are this close.
    /// Default 20 bytes: under 2% of 1472, for half the probes of a search
    /// to the byte.
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
        use PmtuConfigError::*;
        let error = if self.base < MIN_DATAGRAM_SIZE {
            BaseTooSmall(self.base)
        } else if self.max > MAX_UDP_DATAGRAM_SIZE {
            MaxTooLarge(self.max)
        } else if self.max < self.base {
            MaxBelowBase(self.max)
        } else if self.probe_timeout_count == 0 {
            NoProbes
        } else if !(1..=MAX_BLACK_HOLE_THRESHOLD).contains(&self.black_hole_threshold) {
            BlackHoleThreshold(self.black_hole_threshold)
        } else if self.search_interval.is_zero() || self.black_hole_cooldown.is_zero() {
            ZeroInterval
        } else {
            return Ok(());
        };
        Err(error)
    }

    /// The nearest configuration that works, so that [`Pmtud::new`] cannot
    /// misbehave on an unvalidated one.
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
    #[error("max {0} is below base")]
    MaxBelowBase(usize),
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

/// Where discovery stands (the states of RFC 8899 §5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmtuState {
    /// A fixed size that never probes ([`Pmtud::disabled`]).
    Disabled,
    /// At the base size; the next [`Pmtud::poll_probe`] starts a search.
    Base,
    /// Probing for a larger size.
    Searching,
    /// A search ended; another starts after the search interval.
    SearchComplete,
    /// A black hole: at the base size until the cooldown, then searching.
    Error,
}

/// Path MTU discovery for one path (DPLPMTUD, RFC 8899).
///
/// **Search.** From the base size, a binary search between the largest size
/// a probe got through at and the smallest that failed (at first, the upper
/// bound), one probe in flight at a time. A size fails after
/// `probe_timeout_count` consecutive lost probes of it. The search stops when
/// the two are within `search_tolerance`, after probing the upper bound
/// itself if nothing failed (a path that carries it ends at exactly it), and
/// starts again above its result after `search_interval`.
///
/// **Black holes.** A path may stop carrying what it carried (a route
/// change, a tunnel). The evidence is lost ordinary packets, in *bursts*: the
/// losses reported with no acknowledgement in between. A burst is
/// *suspicious* when all its packets are larger than the base (a small one
/// lost too means the loss was not about size) and no packet sent after its
/// first, at least as large as its smallest, has been acknowledged (the path
/// then still carries that size); such an acknowledgement coming later
/// clears it. When `black_hole_threshold` suspicious bursts stand, the size
/// falls back to the base ([`PmtuState::Error`]) and the search resumes after
/// `black_hole_cooldown`. Losses count only while the size is above the
/// base, and only of packets no larger than it (larger ones were built for an
/// abandoned size); losses of packets older than the probe that raised it
/// are cleared by that probe's acknowledgement. Detection needs acknowledgements: in a black hole,
/// packets no larger than the base (pings, probe timeouts) must still go out.
///
/// **Driving it.** The sender, which owns packet numbers and loss detection:
/// 1. builds packets of at most [`current`](Self::current) bytes, and tells
///    its congestion controller when that changes;
/// 2. when it may send, calls [`poll_probe`](Self::poll_probe); on `Some(size)`
///    it sends one ack-eliciting probe padded to exactly `size` bytes and calls
///    [`on_probe_sent`](Self::on_probe_sent) with its packet number;
/// 3. for each acknowledgement it processes, calls [`on_acked`](Self::on_acked)
///    for every newly acknowledged packet, *then* [`on_lost`](Self::on_lost)
///    for every packet that reveals lost (losses found on a timer likewise),
///    probes included;
/// 4. arms a timer for [`poll_timeout`](Self::poll_timeout), and calls
///    [`poll_probe`](Self::poll_probe) when it fires.
///
/// **A lost probe is not congestion**: the sender must not report it to the
/// congestion controller (RFC 9000 §14.4), and has nothing in it to
/// retransmit. Probes count in bytes in flight like any packet.
///
/// No call panics whatever its arguments (unknown packet numbers and
/// unexpected sizes are at most evidence), and none allocates after
/// construction.
#[derive(Debug, Clone)]
pub struct Pmtud {
    /// The configuration, sanitized.
    config: PmtuConfig,
    /// What this path falls back to (the upper bound if below the base).
    base: usize,
    /// The largest size this path may use.
    upper: usize,
    /// The size to build packets for.
    current: usize,
    phase: Phase,
    detector: BlackHoleDetector,
}

impl Pmtud {
    /// Discovery from `config.base` up to `config.max`, searching from `now`
    /// on. An invalid `config` ([`PmtuConfig::validate`]) is clamped.
    pub fn new(config: PmtuConfig, now: Instant) -> Self {
        let config = config.sanitized();
        let (base, upper) = (config.base, config.max);
        Self::build(config, base, upper, Phase::Base { due: now })
    }

    /// A fixed `size` that never probes, whatever the path: for stream paths
    /// (WebSocket), or when discovery is turned off.
    pub fn disabled(size: usize) -> Self {
        Self::build(PmtuConfig::default(), size, size, Phase::Disabled)
    }

    fn build(config: PmtuConfig, base: usize, upper: usize, phase: Phase) -> Self {
        let detector = BlackHoleDetector::new(config.black_hole_threshold);
        let current = base;
        Pmtud {
            config,
            base,
            upper,
            current,
            phase,
            detector,
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

    /// The size of the probe due now, if any (starting a search when one is
    /// due): the same until [`on_probe_sent`](Self::on_probe_sent), then
    /// none while that probe is in flight.
    pub fn poll_probe(&mut self, now: Instant) -> Option<usize> {
        if self.poll_timeout().is_some_and(|due| now >= due) {
            self.advance(self.current, self.upper, false, now);
        }
        match self.phase {
            Phase::Searching(search) if search.in_flight.is_none() => Some(search.next),
            _ => None,
        }
    }

    /// The probe [`poll_probe`](Self::poll_probe) asked for left as packet
    /// `packet_number`; ignored (it is then an ordinary packet) when no probe
    /// of that `size` is due.
    pub fn on_probe_sent(&mut self, packet_number: u64, size: usize) {
        if let Phase::Searching(search) = &mut self.phase {
            if search.in_flight.is_none() && search.next == size {
                search.in_flight = Some(packet_number);
            }
        }
    }

    /// Packet `packet_number` of `size` bytes, probe or not, was acknowledged.
    pub fn on_acked(&mut self, packet_number: u64, size: usize, now: Instant) {
        let mut size = size;
        match self.phase {
            Phase::Disabled => return,
            Phase::Searching(s) if s.in_flight == Some(packet_number) => {
                (size, self.current) = (s.next, s.next);
                self.advance(s.next, s.hi, s.hi_failed, now);
            }
            _ => {}
        }
        if self.detector.on_acked(packet_number, size, self.base) {
            self.current = self.base;
            let due = now.checked_add(self.config.black_hole_cooldown);
            self.phase = Phase::BlackHole { due };
            self.detector.reset();
        }
    }

    /// Packet `packet_number` of `size` bytes, probe or not, was declared
    /// lost. A lost probe only counts against its size.
    pub fn on_lost(&mut self, packet_number: u64, size: usize, now: Instant) {
        let (base, current) = (self.base, self.current);
        match &mut self.phase {
            Phase::Disabled => {}
            Phase::Searching(s) if s.in_flight == Some(packet_number) => {
                s.in_flight = None;
                s.lost = s.lost.saturating_add(1);
                if s.lost >= self.config.probe_timeout_count {
                    let (lo, failed) = (s.lo, s.next);
                    self.advance(lo, failed.saturating_sub(1), true, now);
                }
            }
            _ => self.detector.on_lost(packet_number, size, base, current),
        }
    }

    /// When [`poll_probe`](Self::poll_probe) may next start a search (in
    /// [`PmtuState::Base`], already passed); `None` when disabled or
    /// searching (probes then follow acknowledgements and losses).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Base { due } => Some(due),
            Phase::Complete { due } | Phase::BlackHole { due } => due,
            Phase::Disabled | Phase::Searching(_) => None,
        }
    }

    /// The session moved to a path whose upper bound is `max`: back to the
    /// base (at most `max`), searching from `now` on; a probe in flight is
    /// forgotten. Ignored when disabled.
    pub fn on_path_change(&mut self, max: usize, now: Instant) {
        if self.phase != Phase::Disabled {
            self.upper = max.clamp(MIN_DATAGRAM_SIZE, MAX_UDP_DATAGRAM_SIZE);
            self.base = self.config.base.min(self.upper);
            self.current = self.base;
            self.phase = Phase::Base { due: now };
            self.detector.reset();
        }
    }

    /// Searches on between `lo` (passed) and `hi` (not known to fail; `hi + 1`
    /// failed if `hi_failed`), or ends the search.
    fn advance(&mut self, lo: usize, hi: usize, hi_failed: bool, now: Instant) {
        let gap = hi.saturating_sub(lo);
        let next = if gap > self.config.search_tolerance {
            Some(lo + gap.div_ceil(2))
        } else {
            Some(hi).filter(|_| gap > 0 && !hi_failed)
        };
        self.phase = match next {
            Some(next) => Phase::Searching(Search {
                lo,
                hi,
                hi_failed,
                next,
                in_flight: None,
                lost: 0,
            }),
            None => Phase::Complete {
                due: now.checked_add(self.config.search_interval),
            },
        };
    }
}

/// The state behind [`PmtuState`]; `due` is when a search starts (`None`:
/// never, the interval overflows `Instant`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Disabled,
    Base { due: Instant },
    Searching(Search),
    Complete { due: Option<Instant> },
    BlackHole { due: Option<Instant> },
}

/// A binary search: `lo` passed, `hi` is not known to fail (`hi + 1` failed
/// if `hi_failed`, else `hi` is the untried upper bound), `next` is probed
/// (in flight as `in_flight`) and was lost `lost` times in a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Search {
    lo: usize,
    hi: usize,
    hi_failed: bool,
    next: usize,
    in_flight: Option<u64>,
    lost: u32,
}

/// A packet number and a size: an acknowledged packet, or a loss burst (its
/// first packet number and smallest size).
type Mark = (u64, usize);

/// Whether acknowledgement `ack` shows that `burst` was not about size: a
/// packet sent after the burst began, as large as its smallest, got through.
fn clears(ack: Mark, burst: Mark) -> bool {
    ack.0 > burst.0 && ack.1 >= burst.1
}

/// Judges from ordinary losses whether the path stopped carrying the
/// current size (the rules are on [`Pmtud`]). Its lists never outgrow the
/// capacity they are built with.
#[derive(Debug, Clone)]
struct BlackHoleDetector {
    /// Recent acknowledgements of packets larger than the base, none both
    /// earlier and smaller than another.
    acks: Vec<Mark>,
    /// Losses reported since the last acknowledgement.
    open: Option<Mark>,
    /// Suspicious bursts not cleared yet.
    suspicious: Vec<Mark>,
    threshold: usize,
}

impl BlackHoleDetector {
    fn new(threshold: u32) -> Self {
        let threshold = threshold as usize;
        let (acks, suspicious) = (
            Vec::with_capacity(ACK_LOG_LEN),
            Vec::with_capacity(threshold),
        );
        BlackHoleDetector {
            acks,
            open: None,
            suspicious,
            threshold,
        }
    }

    fn reset(&mut self) {
        self.open = None;
        self.acks.clear();
        self.suspicious.clear();
    }

    fn on_lost(&mut self, pn: u64, size: usize, base: usize, current: usize) {
        if size <= current && current > base {
            let burst = self.open.get_or_insert((pn, size));
            *burst = (burst.0.min(pn), burst.1.min(size));
        }
    }

    /// Takes an acknowledgement, which closes the open burst; true on a
    /// black hole.
    fn on_acked(&mut self, pn: u64, size: usize, base: usize) -> bool {
        let ack = (pn, size);
        let known = self.acks.iter().any(|old| old.0 >= pn && old.1 >= size);
        if size > base && !known {
            self.suspicious.retain(|&burst| !clears(ack, burst));
            self.acks.retain(|old| old.0 > pn || old.1 > size);
            if self.acks.len() == ACK_LOG_LEN {
                // The earliest is the first to become useless: later
                // bursts begin after it.
                let earliest = (0..ACK_LOG_LEN).min_by_key(|&i| self.acks[i].0);
                self.acks.swap_remove(earliest.unwrap_or(0));
            }
            self.acks.push(ack);
        }
        match self.open.take() {
            Some(burst) if burst.1 > base && !self.acks.iter().any(|&ack| clears(ack, burst)) => {
                self.suspicious.push(burst);
                self.suspicious.len() >= self.threshold
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// A sender over a path that carries datagrams of at most `limit` bytes,
    /// and loses one in `loss` more, picked by packet number (0: none).
    struct Sim {
        p: Pmtud,
        now: Instant,
        pn: u64,
        limit: usize,
        loss: u64,
        probes: usize,
    }

    impl Sim {
        fn new(max: usize, limit: usize) -> Self {
            let (now, mut config) = (Instant::now(), PmtuConfig::default());
            config.max = max;
            let (p, pn, loss, probes) = (Pmtud::new(config, now), 0, 0, 0);
            Sim {
                p,
                now,
                pn,
                limit,
                loss,
                probes,
            }
        }

        /// One round trip: a probe when one is due, four packets of the
        /// current size and a small ping; then the acks, then the losses.
        fn round(&mut self) {
            let mut sizes = vec![self.p.current(); 4];
            if let Some(size) = self.p.poll_probe(self.now) {
                self.p.on_probe_sent(self.pn + 4, size);
                sizes.push(size);
                self.probes += 1;
            }
            sizes.push(100);
            self.now += Duration::from_millis(50);
            let sent: Vec<_> = (self.pn..).zip(sizes).collect();
            self.pn += sent.len() as u64;
            let hash = |pn: u64| pn.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 40;
            let gets_through = |&&(pn, size): &&(u64, usize)| {
                size <= self.limit && (self.loss == 0 || hash(pn) % self.loss != 0)
            };
            for &(pn, size) in sent.iter().filter(gets_through) {
                self.p.on_acked(pn, size, self.now);
            }
            for &(pn, size) in sent.iter().filter(|s| !gets_through(s)) {
                self.p.on_lost(pn, size, self.now);
            }
        }

        /// Rounds until `state` (false if it does not come in 200); a black
        /// hole on the way fails the test.
        fn run_until(&mut self, state: PmtuState) -> bool {
            (0..200).any(|_| {
                self.round();
                assert_ne!(self.p.state(), PmtuState::Error, "false black hole");
                self.p.state() == state
            })
        }
    }

    #[test]
    fn ethernet_path_ends_at_exactly_its_size() {
        let mut sim = Sim::new(1472, 1472);
        assert_eq!((sim.p.state(), sim.p.current()), (PmtuState::Base, 1200));
        assert!(sim.run_until(PmtuState::SearchComplete));
        // 1336, 1404, 1438, 1455, then the upper bound itself.
        assert_eq!((sim.p.current(), sim.probes), (1472, 5));
        let again = sim.now + Duration::from_secs(600);
        assert_eq!(sim.p.poll_timeout(), Some(again));
    }

    #[test]
    fn every_path_converges_within_tolerance_in_bounded_probes() {
        for (max, limits) in [(1472, 1200..1530), (9000, 1200..9050)] {
            let (base, tol, count) = (1200, 20, 3);
            // Halvings until the gap is within tolerance, plus the upper
            // bound, each at most `count` probes.
            let halvings = (0..).find(|&k| (max - base) >> k <= tol).unwrap();
            for limit in limits.step_by(7).chain([max, 8972]) {
                let mut sim = Sim::new(max, limit);
                assert!(sim.run_until(PmtuState::SearchComplete), "{limit}");
                let got = sim.p.current();
                assert!(got <= limit && got + tol >= limit.min(max), "{limit}");
                assert!(sim.probes <= (halvings + 1) * count, "{limit}");
            }
        }
    }

    #[test]
    fn black_hole_falls_back_then_searches_again() {
        let mut sim = Sim::new(1472, 1472);
        assert!(sim.run_until(PmtuState::SearchComplete));
        sim.limit = 1300;
        // Each round is a suspicious burst, judged at the next round's acks.
        (0..4).for_each(|_| sim.round());
        assert_eq!(sim.p.state(), PmtuState::SearchComplete);
        sim.round();
        assert_eq!((sim.p.state(), sim.p.current()), (PmtuState::Error, 1200));
        let probes = sim.probes;
        (0..100).for_each(|_| sim.round());
        assert_eq!((sim.p.state(), sim.probes), (PmtuState::Error, probes));
        sim.now = sim.p.poll_timeout().unwrap();
        assert!(sim.run_until(PmtuState::SearchComplete));
        assert!((1280..=1300).contains(&sim.p.current()));
    }

    #[test]
    fn losses_of_sizes_that_still_get_through_are_not_a_black_hole() {
        let mut sim = Sim::new(1472, 1472);
        assert!(sim.run_until(PmtuState::SearchComplete));
        let (p, now, pn) = (&mut sim.p, sim.now, sim.pn);
        for i in 0..10 {
            // A loss reported after a later full-size packet's ack...
            p.on_acked(pn + 10 * i + 5, 1472, now);
            p.on_lost(pn + 10 * i, 1472, now);
            p.on_acked(pn + 10 * i + 6, 100, now);
        }
        for i in 10..20 {
            // ... or before it; or of a size above the current one.
            p.on_lost(pn + 10 * i, 1472, now);
            p.on_acked(pn + 10 * i + 1, 100, now);
            p.on_acked(pn + 10 * i + 2, 1472, now);
            p.on_lost(pn + 10 * i + 3, 1473, now);
            p.on_acked(pn + 10 * i + 4, 100, now);
        }
        assert_eq!((p.state(), p.current()), (PmtuState::SearchComplete, 1472));
        // One packet in ten lost, whatever its size.
        sim.loss = 10;
        for _ in 0..20_000 {
            sim.round();
            assert_ne!(sim.p.state(), PmtuState::Error);
        }
    }

    #[test]
    fn path_change_restarts_from_base() {
        let mut sim = Sim::new(9000, 1472);
        assert!(sim.run_until(PmtuState::SearchComplete));
        sim.p.on_path_change(9000, sim.now);
        assert_eq!((sim.p.state(), sim.p.current()), (PmtuState::Base, 1200));
        assert_eq!(sim.p.poll_timeout(), Some(sim.now));
        sim.limit = 8972;
        assert!(sim.run_until(PmtuState::SearchComplete));
        assert!(sim.p.current() >= 8952);
        // A path narrower than the base: its bound, and nothing to search.
        sim.p.on_path_change(576, sim.now);
        assert_eq!((sim.p.current(), sim.p.poll_probe(sim.now)), (576, None));
    }

    #[test]
    fn one_probe_at_a_time_of_the_size_asked() {
        let now = Instant::now();
        let mut p = Pmtud::new(PmtuConfig::default(), now);
        assert_eq!([p.poll_probe(now), p.poll_probe(now)], [Some(1336); 2]);
        p.on_probe_sent(7, 1400);
        assert_eq!(p.poll_probe(now), Some(1336), "a wrong size is ignored");
        p.on_probe_sent(8, 1336);
        p.on_probe_sent(9, 1336);
        assert_eq!(p.poll_probe(now), None, "one probe in flight");
        p.on_acked(9, 1336, now);
        assert_eq!((p.current(), p.poll_probe(now)), (1200, None));
        p.on_lost(8, 1336, now);
        p.on_lost(8, 1336, now);
        assert_eq!(p.poll_probe(now), Some(1336), "one loss (twice) is a retry");
    }

    #[test]
    fn validate_names_the_problem() {
        let check = |change: fn(&mut PmtuConfig)| {
            let mut config = PmtuConfig::default();
            change(&mut config);
            config.validate()
        };
        use PmtuConfigError::*;
        assert_eq!(check(|_| {}), Ok(()));
        assert_eq!(check(|c| c.base = 255), Err(BaseTooSmall(255)));
        assert_eq!(check(|c| c.max = 1000), Err(MaxBelowBase(1000)));
        assert_eq!(
            check(|c| c.black_hole_threshold = 0),
            Err(BlackHoleThreshold(0))
        );
        assert_eq!(
            check(|c| c.search_interval = Duration::ZERO),
            Err(ZeroInterval)
        );
    }

    proptest! {
        /// Any calls, on any configuration or a disabled instance: no panic,
        /// the size stays in bounds, and a disabled one never probes.
        #[test]
        fn no_call_sequence_panics(
            (base, max, count, threshold) in (0..70_000usize, 0..70_000usize, 0..5u32, 0..20u32),
            (tol, interval_ms) in (0..99_999usize, 0..9999u64),
            (forever, off) in (any::<bool>(), any::<bool>()),
            ops in proptest::collection::vec((0..7u8, 0..64u64, 0..70_000usize), 0..300),
        ) {
            let interval = if forever { Duration::MAX } else { Duration::from_millis(interval_ms) };
            let config = PmtuConfig {
                base, max, probe_timeout_count: count, search_interval: interval,
                black_hole_threshold: threshold, black_hole_cooldown: interval / 2,
                search_tolerance: tol,
            };
            let mut now = Instant::now();
            let mut p = if off { Pmtud::disabled(base) } else { Pmtud::new(config, now) };
            let (mut next_pn, mut probe) = (0, None);
            for (kind, a, b) in ops {
                // Mostly recent packet numbers and sizes around the bounds.
                let (pn, size) = ((next_pn + a).saturating_sub(32), b % (p.upper + 100));
                match kind {
                    0 => now += Duration::from_millis(a * 100),
                    1 => if let Some(size) = p.poll_probe(now) {
                        prop_assert!(!off && p.current() < size && size <= p.upper);
                        p.on_probe_sent(next_pn, size);
                        (probe, next_pn) = (Some((next_pn, size)), next_pn + 1 + a);
                    },
                    2 => if let Some((pn, size)) = probe { p.on_acked(pn, size, now) },
                    3 => if let Some((pn, size)) = probe { p.on_lost(pn, size, now) },
                    4 => p.on_acked(pn, size, now),
                    5 => p.on_lost(pn, size, now),
                    _ => p.on_path_change(b, now),
                }
                prop_assert!(p.base <= p.current && p.current <= p.upper);
                if matches!(p.state(), PmtuState::Base | PmtuState::Error | PmtuState::Disabled) {
                    prop_assert_eq!(p.current, p.base);
                }
                prop_assert_eq!(off, p.state() == PmtuState::Disabled);
            }
        }
    }
}
