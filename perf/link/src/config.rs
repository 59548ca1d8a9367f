//! What the emulated link does to datagrams, one direction at a time.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::error::ConfigError;

/// The whole link: one [`LinkDirection`] each way, the seed, and the
/// relay's own limits.
///
/// `forward` is client → upstream (the datagrams the relay receives on its
/// listening address), `backward` is upstream → client.
///
/// ```
/// use std::time::Duration;
/// use stt_link::{LinkConfig, LinkDirection};
///
/// // 20 ms round trip, 1% loss each way.
/// let link = LinkConfig::symmetric(LinkDirection {
///     delay: Duration::from_millis(10),
///     loss: 0.01,
///     ..LinkDirection::default()
/// });
/// assert!(link.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// Client → upstream.
    pub forward: LinkDirection,
    /// Upstream → client.
    pub backward: LinkDirection,
    /// Seeds both directions' random draws (each direction its own stream,
    /// derived from this): the same seed and the same arrival times give
    /// the same losses, duplicates, reorders and jitter.
    pub seed: u64,
    /// Where the relay listens for clients. Default `127.0.0.1:0`: a free
    /// port on loopback, read back with [`Relay::local_addr`](crate::Relay::local_addr).
    pub listen: SocketAddr,
    /// Client addresses the relay will serve, each with an upstream socket
    /// and a receiving thread of its own. Default 1,024; datagrams from
    /// further clients are dropped and counted in
    /// [`RelayStats::refused_clients`](crate::RelayStats::refused_clients).
    pub max_clients: usize,
    /// How long before a delivery time the scheduling thread stops sleeping
    /// and spins (yielding the core between checks). Default 50 µs: Linux
    /// wakes a sleeping thread up to ~60 µs late, so this keeps deliveries
    /// within a few µs of their time; 0 saves the CPU of the spin (on a busy
    /// machine, deliveries may then be late by a scheduler tick).
    pub spin: Duration,
    /// Bytes one direction may hold in flight (delayed, not yet sent on)
    /// beyond which the relay itself drops arrivals, counted in
    /// [`DirectionStats::dropped_overload`](crate::DirectionStats::dropped_overload).
    /// Default 64 MiB: 5 s of 100 Mbit/s. Not part of the emulated link (that
    /// is [`LinkDirection::queue`]); a bound on the relay's memory.
    pub max_in_flight_bytes: usize,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            forward: LinkDirection::default(),
            backward: LinkDirection::default(),
            seed: 0x5EED,
            listen: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            max_clients: 1024,
            spin: Duration::from_micros(50),
            max_in_flight_bytes: 64 << 20,
        }
    }
}

impl LinkConfig {
    /// The same conditions both ways, every other setting at its default.
    pub fn symmetric(direction: LinkDirection) -> Self {
        LinkConfig {
            forward: direction.clone(),
            backward: direction,
            ..LinkConfig::default()
        }
    }

    /// This configuration with another seed.
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks every number; [`Relay::start`](crate::Relay::start) calls it.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.forward.validate()?;
        self.backward.validate()?;
        if self.max_clients == 0 {
            return Err(ConfigError::NoClients);
        }
        if self.max_in_flight_bytes < crate::MAX_DATAGRAM {
            return Err(ConfigError::InFlightTooSmall(self.max_in_flight_bytes));
        }
        Ok(())
    }
}

/// How the jitter of each datagram is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum JitterKind {
    /// Uniform in `[-jitter, +jitter]`.
    #[default]
    Uniform,
    /// Roughly normal with standard deviation `jitter`: the sum of four
    /// uniform draws (Irwin–Hall), so bounded by ±3.46 × `jitter`.
    Normal,
}

/// Gilbert–Elliott burst loss: a two-state Markov chain, stepped once per
/// datagram, each state with its own loss probability (as netem's `loss
/// gemodel p r 1-h 1-k`). The mean burst length in the bad state is `1 / r`
/// datagrams; the long-run share of time in it is `p / (p + r)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Probability of going from the good to the bad state.
    pub p: f64,
    /// Probability of going from the bad back to the good state.
    pub r: f64,
    /// Loss probability in the bad state (netem's `1-h`), typically 1.
    pub loss_bad: f64,
    /// Loss probability in the good state (netem's `1-k`), typically 0.
    pub loss_good: f64,
}

impl GilbertElliott {
    /// Long-run loss probability.
    pub fn mean_loss(&self) -> f64 {
        if self.p + self.r <= 0.0 {
            return self.loss_good;
        }
        let bad = self.p / (self.p + self.r);
        bad * self.loss_bad + (1.0 - bad) * self.loss_good
    }
}

/// What one direction of the link does, applied in this order:
///
/// 1. **rate and queue** ([`rate`](Self::rate), [`queue`](Self::queue)): a
///    datagram of n bytes occupies the link n × 8 / rate seconds after the
///    one before it; one that finds more than `queue` bytes waiting (counted
///    with the one being sent) is dropped (drop-tail). An empty queue always
///    takes one datagram, whatever its size;
/// 2. **loss** ([`loss`](Self::loss), or [`burst_loss`](Self::burst_loss)
///    instead when set): on the wire, after it took its share of the rate;
/// 3. **delay and jitter**: it arrives [`delay`](Self::delay) ± the jitter
///    after it left the queue. Jitter never reorders: a datagram whose draw
///    would land it before the one sent before it is delivered right after
///    that one instead (a FIFO link whose latency wanders). Reordering is
///    only [`reorder`](Self::reorder)'s doing;
/// 4. **reorder**: with probability `reorder` a datagram is held back an
///    extra [`reorder_delay`](Self::reorder_delay), outside the FIFO order,
///    so that the datagrams sent after it within that time overtake it;
/// 5. **duplicate**: with probability `duplicate`, a second copy is
///    delivered right after it (the copy takes no share of the rate).
///
/// The default is a perfect link: no delay, no loss, no limit.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkDirection {
    /// One-way delay added to every datagram.
    pub delay: Duration,
    /// Jitter amplitude: the half-width of the uniform draw, or the standard
    /// deviation of the normal one (see [`jitter_kind`](Self::jitter_kind)).
    pub jitter: Duration,
    /// How the jitter is drawn. Default uniform.
    pub jitter_kind: JitterKind,
    /// Probability that a datagram is lost, 0 to 1 (ignored when
    /// [`burst_loss`](Self::burst_loss) is set).
    pub loss: f64,
    /// Burst loss instead of independent loss.
    pub burst_loss: Option<GilbertElliott>,
    /// Probability that a datagram is delivered twice, 0 to 1.
    pub duplicate: f64,
    /// Probability that a datagram is held back by
    /// [`reorder_delay`](Self::reorder_delay), 0 to 1.
    pub reorder: f64,
    /// The extra delay of a reordered datagram. Default 5 ms.
    pub reorder_delay: Duration,
    /// Link rate in bits per second; `None` (the default) is unlimited, and
    /// then nothing queues.
    pub rate: Option<u64>,
    /// The bottleneck's queue in bytes, with [`rate`](Self::rate) only.
    /// Default 256 KiB (about 21 ms at 100 Mbit/s): a larger queue drops less
    /// and adds more delay under load (bufferbloat), a smaller one the
    /// opposite.
    pub queue: usize,
}

impl Default for LinkDirection {
    fn default() -> Self {
        LinkDirection {
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            jitter_kind: JitterKind::Uniform,
            loss: 0.0,
            burst_loss: None,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(5),
            rate: None,
            queue: 256 << 10,
        }
    }
}

impl LinkDirection {
    /// Checks every probability is in `[0, 1]`, the rate is not zero and
    /// every duration is under an hour.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let probability = |field: &'static str, value: f64| {
            if (0.0..=1.0).contains(&value) {
                Ok(())
            } else {
                Err(ConfigError::Probability { field, value })
            }
        };
        probability("loss", self.loss)?;
        probability("duplicate", self.duplicate)?;
        probability("reorder", self.reorder)?;
        if let Some(ge) = &self.burst_loss {
            probability("burst_loss.p", ge.p)?;
            probability("burst_loss.r", ge.r)?;
            probability("burst_loss.loss_bad", ge.loss_bad)?;
            probability("burst_loss.loss_good", ge.loss_good)?;
        }
        if self.rate == Some(0) {
            return Err(ConfigError::ZeroRate);
        }
        const HOUR: Duration = Duration::from_secs(3600);
        for (field, value) in [
            ("delay", self.delay),
            ("jitter", self.jitter),
            ("reorder_delay", self.reorder_delay),
        ] {
            if value > HOUR {
                return Err(ConfigError::Duration { field, value });
            }
        }
        Ok(())
    }
}
